/*
 * event_view.c — what of a stored event a mall may see (event_view.h).
 */
#include "store/event_view.h"

#include <stddef.h>

static const char *const mall_event_keys[] = {
    "seq",     "at",       "type",     "order_id", "client", "client_order_id",
    "sku",     "quantity", "delivery", "state",    "reason", "attempt",
    "outcome", "by",       "codes",    "checks",   "rule",   "hold_until"};

static const char *const product_event_keys[] = {"seq",       "at",    "type",  "sku",
                                                 "available", "below", "reason"};

static json_t *cut(json_t *ev, const char *const *keys, size_t n)
{
    json_t *out = json_object();
    for (size_t i = 0; out && ev && i < n; i++) {
        json_t *v = json_object_get(ev, keys[i]);
        if (v)
            json_object_set(out, keys[i], v);
    }
    json_decref(ev);
    return out;
}

json_t *ph_event_mall_cut(json_t *ev)
{
    return cut(ev, mall_event_keys, sizeof mall_event_keys / sizeof *mall_event_keys);
}

json_t *ph_event_product_cut(json_t *ev)
{
    return cut(ev, product_event_keys, sizeof product_event_keys / sizeof *product_event_keys);
}
