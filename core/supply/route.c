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

/* 1 when offer a (of supplier sa) ranks before b (of sb). Ties keep the config
 * order (the sort below is stable). */
static int before(const ph_offer_conf *a, const ph_supplier_conf *sa, const ph_offer_conf *b,
                  const ph_supplier_conf *sb)
{
    if (sa->priority != sb->priority)
        return sa->priority > sb->priority;
    return a->cost < b->cost;
}

#define ROUTE_MAX 64 /* offers considered per product */

const ph_offer_conf *ph_route_pick(const ph_config *cfg, const ph_product_conf *p,
                                   const char *const *tried, size_t ntried,
                                   ph_route_usable_fn usable, void *ctx)
{
    const ph_offer_conf *cand[ROUTE_MAX];
    const ph_supplier_conf *sup[ROUTE_MAX];
    size_t n = 0;
    for (size_t i = 0; i < p->noffers && n < ROUTE_MAX; i++) {
        const ph_supplier_conf *s = ph_config_supplier(cfg, p->offers[i].supplier);
        if (!s || !s->enabled || was_tried(s->id, tried, ntried))
            continue;
        /* insertion sort: stable, and n is small */
        size_t j = n++;
        for (; j > 0 && before(&p->offers[i], s, cand[j - 1], sup[j - 1]); j--) {
            cand[j] = cand[j - 1];
            sup[j] = sup[j - 1];
        }
        cand[j] = &p->offers[i];
        sup[j] = s;
    }
    /* Ask in rank order and stop at the first yes: asking may claim a
     * half-open breaker's single probe. */
    for (size_t i = 0; i < n; i++)
        if (usable(ctx, sup[i]))
            return cand[i];
    return NULL;
}
