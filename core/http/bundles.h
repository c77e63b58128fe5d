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

struct ph_fulfil;

/* 1 when bundle p has a recharge component (the order then takes an
 * `account`, for every recharge component, and is one unit). */
int ph_bundle_needs_account(const ph_config *cfg, const ph_product_conf *p);

/* Places the bundle order read into r (r->arg[0] the client order id,
 * r->arg[1] the sku, r->cmd.in.order.fingerprint and now set, r->account
 * when needed, past risk): routes its components (none when risk holds or
 * denies it; a grant's card components only), submits PH_CMD_BUNDLE with
 * risk and grant (NULL: goods), hands its supplier components to fulfil once
 * durable and answers 201 / 202 / 200 (a replay) with the bundle and its
 * components, or the error (409 out_of_stock naming components[j], 503
 * no_supplier_available). `after` (may be NULL) runs first when the command
 * completed, with r->ext the caller's again: it returns its answer's
 * PH_REQ_* when it answered (a denial, a grant with its token), else -1.
 * Returns PH_REQ_DONE or PH_REQ_SUSPENDED. r->ext keeps its previous value
 * (freed with the request). */
int ph_api_bundle_submit(ph_req *r, const ph_product_conf *p, uint32_t qty,
                         const ph_order_risk *risk, const ph_grant_in *grant,
                         int (*after)(ph_req *r));

/* Routes the components of bundle p (only[j] nonzero, or all when only is
 * NULL) into t[j]: a recharge always; a card-code component, when
 * stock_first, only when its local stock (ph_store_product_get) is short of
 * `times` x its quantity and it has offers, else always. Returns -1 when
 * every component that needs a supplier got one, else the first j that
 * needs one and none can take now (a card component short of stock without
 * offers is left to the store's out_of_stock). t's strings point into cfg. */
int ph_bundle_route(struct ph_fulfil *f, const ph_config *cfg, ph_store *s,
                    const ph_product_conf *p, uint32_t times, const int *only, int stock_first,
                    ph_attempt_target *t);

/* The latest order of each component of bundle `id` into o[] (at most
 * PH_BUNDLE_COMPONENTS_MAX; the caller frees each), *n of them: PH_OK,
 * PH_ENOTFOUND (no record: not a bundle, or a denied one), PH_EIO, PH_ENOMEM. */
int ph_bundle_components(ph_store *s, uint64_t id, ph_order **o, size_t *n);

/* A bundle's components as a grant shows them: [{sku, quantity, order_id,
 * state}] of each latest order, never a code. NULL when it has none. The
 * caller owns the result. */
json_t *ph_bundle_brief(ph_store *s, uint64_t id);

/* Hands every supplier component of bundle `id` that a command just made
 * processing (attempt 1 SENDING) to fulfil, its account unsealed from its
 * supply record. PH_OK, or PH_ENOMEM with *failed the last component fulfil
 * could not take (it stays SENDING until the next start's resume queries
 * it: never sent twice). Any thread. */
int ph_bundle_begin(struct ph_fulfil *f, ph_store *s, uint64_t id, uint64_t *failed);

/* Adds "components" (each the latest order's view, with "orders": its ids,
 * oldest first) and "retries" to view, the order view of bundle `id`; codes
 * only when owner. Nothing when view is NULL or the record is unreadable. */
void ph_bundle_view_components(ph_req *r, json_t *view, uint64_t id, int owner, int ops);

/* POST /v1/orders/{id}/retry {"retry": n, "wait"?}: buys again the failed
 * components of the caller's partial bundle (PH_CMD_BUNDLE retry). */
int ph_api_order_retry(ph_req *r);

#endif
