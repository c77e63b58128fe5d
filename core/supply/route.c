/*
 * route.c — offer selection (route.h).
 */
#include "supply/route.h"

#include <string.h>

static int was_tried(const char *id, const char *const *tried, size_t ntried)
{
    for (size_t i = 0; i < ntried; i++)
        if (!strcmp(id, tried[i]))
            return 1;
    return 0;
}

int64_t ph_route_cost(const ph_offer_conf *o, const ph_offer_state *st)
{
    return st && st->upstream_cost >= 0 ? st->upstream_cost : o->cost;
}

/* 1 when an offer of supplier sa costing ca ranks before one of sb costing cb.
 * Ties keep the config order (the sort below is stable). */
static int before(int64_t ca, const ph_supplier_conf *sa, int64_t cb, const ph_supplier_conf *sb)
{
    if (sa->priority != sb->priority)
        return sa->priority > sb->priority;
    return ca < cb;
}

#define ROUTE_MAX 64 /* offers considered per product */

const ph_offer_conf *ph_route_pick(const ph_config *cfg, const ph_product_conf *p,
                                   const ph_offer_state *up, const char *const *tried,
                                   size_t ntried, ph_route_usable_fn usable, void *ctx)
{
    const ph_offer_conf *cand[ROUTE_MAX];
    const ph_supplier_conf *sup[ROUTE_MAX];
    int64_t cost[ROUTE_MAX];
    size_t n = 0;
    for (size_t i = 0; i < p->noffers && i < ROUTE_MAX; i++) {
        const ph_supplier_conf *s = ph_config_supplier(cfg, p->offers[i].supplier);
        const ph_offer_state *st = up ? &up[i] : NULL;
        if (!s || !s->enabled || was_tried(s->id, tried, ntried) || !ph_offer_state_usable(st))
            continue;
        int64_t c = ph_route_cost(&p->offers[i], st);
        /* insertion sort: stable, and n is small */
        size_t j = n++;
        for (; j > 0 && before(c, s, cost[j - 1], sup[j - 1]); j--) {
            cand[j] = cand[j - 1];
            sup[j] = sup[j - 1];
            cost[j] = cost[j - 1];
        }
        cand[j] = &p->offers[i];
        sup[j] = s;
        cost[j] = c;
    }
    /* Ask in rank order and stop at the first yes: asking may claim a
     * half-open breaker's single probe. */
    for (size_t i = 0; i < n; i++)
        if (usable(ctx, sup[i]))
            return cand[i];
    return NULL;
}
