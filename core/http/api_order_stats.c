/*
 * api_order_stats.c — GET /v1/stats/orders: the orders since a moment by
 * outcome and the SKUs most ordered, the orders still with a supplier, and
 * the newest event's number: what the ops page (GET /ops) shows, in one read.
 */
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "http/api.h"
#include "http/views.h"

#define TALLY_MAX_ORDERS 200000 /* orders counted per request (docs/api.md) */
#define OPEN_READ_MAX    1000   /* open orders read from the pending index */
#define OPEN_SHOWN_MAX   50     /* of which listed */
#define TOP_DEFAULT      10
#define TOP_MAX          100
#define CST_OFFSET_MS    (8LL * 3600 * 1000) /* China Standard Time, UTC+08:00 */
#define DAY_MS           (24LL * 3600 * 1000)

/* The states an order can be in, in the order they are shown. */
static const int shown_states[] = {PH_ORDER_HELD, PH_ORDER_PROCESSING, PH_ORDER_UNKNOWN,
                                   PH_ORDER_SUCCEEDED, PH_ORDER_FAILED};
#define NSHOWN (sizeof shown_states / sizeof shown_states[0])

static json_t *by_state_object(const uint64_t *by_state)
{
    json_t *o = json_object();
    for (size_t i = 0; i < NSHOWN; i++)
        json_object_set_new(o, ph_order_state_name(shown_states[i]),
                            json_integer((json_int_t)by_state[shown_states[i]]));
    return o;
}

/* Most orders first, then by SKU (the tally's order: a stable answer). */
static int sku_cmp(const void *a, const void *b)
{
    const ph_order_tally_sku *x = a, *y = b;
    if (x->orders != y->orders)
        return x->orders < y->orders ? 1 : -1;
    return strcmp(x->sku, y->sku);
}

static json_t *top_skus(ph_order_tally *t, size_t top)
{
    if (t->nskus) /* skus is NULL then, and qsort's base must not be */
        qsort(t->skus, t->nskus, sizeof *t->skus, sku_cmp);
    json_t *arr = json_array();
    for (size_t i = 0; i < t->nskus && i < top; i++) {
        const ph_order_tally_sku *s = &t->skus[i];
        json_t *row = json_pack("{s:s,s:I,s:I}", "sku", s->sku, "orders", (json_int_t)s->orders,
                                "quantity", (json_int_t)s->quantity);
        json_t *st = by_state_object(s->by_state);
        json_object_update(row, st);
        json_decref(st);
        json_array_append_new(arr, row);
    }
    return arr;
}

/* The orders still with a supplier (the pending index), counted by state, the
 * oldest listed as ops sees them. NULL with the error response set. */
static json_t *open_orders(ph_req *r)
{
    ph_order **list;
    size_t n;
    ph_err err = {0};
    int rc = ph_store_pending_list(r->env->store, 0, OPEN_READ_MAX, &list, &n, &err);
    if (rc) {
        ph_req_fail(r, rc, &err);
        return NULL;
    }
    uint64_t by_state[PH_ORDER_TALLY_STATES] = {0};
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        int st = list[i]->state;
        if (st >= 0 && st < PH_ORDER_TALLY_STATES)
            by_state[st]++;
        if (i < OPEN_SHOWN_MAX)
            json_array_append_new(arr, ph_view_order(list[i], r->cfg->cfg, r->env->keys, 0, 1));
    }
    ph_order_list_free(list, n);
    return json_pack("{s:I,s:I,s:b,s:o}", "processing", (json_int_t)by_state[PH_ORDER_PROCESSING],
                     "unknown", (json_int_t)by_state[PH_ORDER_UNKNOWN], "complete",
                     n < OPEN_READ_MAX, "orders", arr);
}

/* since: an RFC 3339 instant (a date alone is refused: ph_time_parse reads it
 * as the end of that day); absent: the start of today in UTC+08:00. */
static int parse_since(ph_req *r, int64_t *since)
{
    const char *s = ph_req_query(r, "since");
    if (!s) {
        int64_t now = ph_now_ms() + CST_OFFSET_MS;
        *since = now - now % DAY_MS - CST_OFFSET_MS;
        return 0;
    }
    if (!strchr(s, 'T') || ph_time_parse(s, strlen(s), since))
        return ph_req_error(r, 400, "invalid_request",
                            "since: expected an RFC 3339 time (2026-12-06T00:00:00+08:00)"),
               -1;
    return 0;
}

int ph_api_order_stats(ph_req *r)
{
    int64_t since;
    uint64_t top = TOP_DEFAULT;
    const char *t = ph_req_query(r, "top");
    if (parse_since(r, &since))
        return PH_REQ_DONE;
    if (t && (ph_u64_parse(t, &top) || top < 1 || top > TOP_MAX))
        return ph_req_error(r, 400, "invalid_request", "top: expected 1 to %d", TOP_MAX);
    ph_order_tally tally;
    ph_err err = {0};
    int rc = ph_store_order_tally(r->env->store, since, TALLY_MAX_ORDERS, &tally, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *open = open_orders(r);
    if (!open) {
        ph_order_tally_clear(&tally);
        return PH_REQ_DONE;
    }
    json_t *body = json_object();
    ph_view_time(body, "since", since);
    ph_view_time(body, "counted_from", tally.counted_from);
    json_object_set_new(body, "complete", json_boolean(tally.complete));
    json_object_set_new(body, "orders", json_integer((json_int_t)tally.orders));
    json_object_set_new(body, "by_state", by_state_object(tally.by_state));
    json_object_set_new(body, "skus", json_integer((json_int_t)tally.nskus));
    json_object_set_new(body, "top_skus", top_skus(&tally, (size_t)top));
    json_object_set_new(body, "open", open);
    json_object_set_new(body, "last_event", json_integer((json_int_t)tally.last_event));
    ph_order_tally_clear(&tally);
    return ph_req_json(r, 200, body);
}
