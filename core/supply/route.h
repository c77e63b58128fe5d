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
 * What sync knows of each offer upstream (store.h, ph_offer_state) is an
 * input too: an offer delisted upstream, known out of stock, or over its max
 * cost is skipped (ph_offer_state_usable), and an offer's upstream cost, when
 * known, ranks it instead of the configured cost (ph_route_cost).
 *
 * A pure function of its arguments: no clock, no lock, no allocation of its own;
 * any thread, while the caller holds the configuration snapshot cfg belongs to.
 * Whatever state "usable" needs (the supplier set, breakers) is the predicate's.
 */
#ifndef PH_ROUTE_H
#define PH_ROUTE_H

#include <stddef.h>

#include "config/config.h"
#include "store/store.h"

/* Answers 1 when supplier sup may take a new order now, else 0. Called on the
 * caller's thread, in rank order, and no more once it answers 1: a predicate
 * that claims something (a half-open breaker's single probe) claims it only for
 * the offer returned. */
typedef int (*ph_route_usable_fn)(void *ctx, const ph_supplier_conf *sup);

/* Returns the chosen offer (a pointer into cfg, valid while cfg lives), or NULL
 * when no offer is usable. `tried` holds ntried supplier ids to skip (may be
 * NULL when ntried is 0). Offers of a supplier missing from cfg or disabled
 * there are skipped, and only the first 64 offers of p are considered. */
/* `up` holds the upstream state of p->offers[i] at up[i] (an unknown state:
 * cost -1, stock -1, on_sale -1, over_max 0), or is NULL when none is known. */
const ph_offer_conf *ph_route_pick(const ph_config *cfg, const ph_product_conf *p,
                                   const ph_offer_state *up, const char *const *tried,
                                   size_t ntried, ph_route_usable_fn usable, void *ctx);

/* What an offer costs now: its upstream cost when sync knows it (st non-NULL,
 * upstream_cost >= 0), else the configured cost. The one answer for ranking
 * and for the attempt's unit cost (a price ceiling below the supplier's price
 * would be refused). Pure. */
int64_t ph_route_cost(const ph_offer_conf *o, const ph_offer_state *st);

#endif
