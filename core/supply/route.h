/*
 * route.h — which supplier an order goes to.
 *
 * The best offer among the product's offers whose supplier is usable now
 * (enabled, running, able to deliver this kind of product and to be queried,
 * breaker not open, credentials not refused (auth_failed) — the caller's
 * predicate says so, through ph_sio_allow): highest supplier
 * priority first, then the lowest cost, then the order of the offers in the
 * config. Suppliers already tried for this order are skipped, so a fail-over
 * never returns to a supplier that refused it.
 *
 * A pure function of its arguments: no clock, no lock, no allocation of its own;
 * any thread, while the caller holds the configuration snapshot cfg belongs to.
 * Whatever state "usable" needs (the supplier set, breakers) is the predicate's.
 */
#ifndef PH_ROUTE_H
#define PH_ROUTE_H

#include <stddef.h>

#include "config/config.h"

/* Answers 1 when supplier sup may take a new order now, else 0. Called on the
 * caller's thread, in rank order, and no more once it answers 1: a predicate
 * that claims something (a half-open breaker's single probe) claims it only for
 * the offer returned. */
typedef int (*ph_route_usable_fn)(void *ctx, const ph_supplier_conf *sup);

/* Returns the chosen offer (a pointer into cfg, valid while cfg lives), or NULL
 * when no offer is usable. `tried` holds ntried supplier ids to skip (may be
 * NULL when ntried is 0). Offers of a supplier missing from cfg or disabled
 * there are skipped, and only the first 64 offers of p are considered. */
const ph_offer_conf *ph_route_pick(const ph_config *cfg, const ph_product_conf *p,
                                   const char *const *tried, size_t ntried,
                                   ph_route_usable_fn usable, void *ctx);

#endif
