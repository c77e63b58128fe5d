/*
 * bundles.h — bundle orders at the front door (issue 16; api_bundles.c).
 * Every function runs on the request's pool thread, like any handler.
 */
#ifndef PH_HTTP_BUNDLES_H
#define PH_HTTP_BUNDLES_H

#include <jansson.h>
#include <stdint.h>

#include "config/config.h"
#include "http/api.h"

/* 1 when bundle p has a recharge component (the order then takes an
 * `account`, for every recharge component, and is one unit). */
int ph_bundle_needs_account(const ph_config *cfg, const ph_product_conf *p);

/* Places the bundle order read into r (r->arg[0] the client order id,
 * r->arg[1] the sku, r->cmd.in.order.fingerprint and now set, r->account
 * when needed, past risk): routes its components, submits PH_CMD_BUNDLE,
 * hands its supplier components to fulfil once durable and answers 201 / 202
 * / 200 (a replay) with the bundle and its components, or the error (409
 * out_of_stock naming components[j], 503 no_supplier_available). Returns
 * PH_REQ_DONE or PH_REQ_SUSPENDED. r->ext keeps its previous value (freed
 * with the request). */
int ph_api_bundle_submit(ph_req *r, const ph_product_conf *p, uint32_t qty,
                         const ph_order_risk *risk, void (*stored)(ph_req *r));

/* Adds "components" (each the latest order's view, with "orders": its ids,
 * oldest first) and "retries" to view, the order view of bundle `id`; codes
 * only when owner. Nothing when view is NULL or the record is unreadable. */
void ph_bundle_view_components(ph_req *r, json_t *view, uint64_t id, int owner, int ops);

/* POST /v1/orders/{id}/retry {"retry": n, "wait"?}: buys again the failed
 * components of the caller's partial bundle (PH_CMD_BUNDLE retry). */
int ph_api_order_retry(ph_req *r);

#endif
