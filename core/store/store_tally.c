/*
 * store_tally.c — orders counted by state and by SKU since a moment, for the
 * ops page (GET /v1/stats/orders): the newest orders read backwards from the
 * end of the `orders` database, in one snapshot. Any thread.
 */
#include "store/store_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Order ids are handed out by the writer in the order commands reach it, and
 * created_at is the command's time, taken by its submitter before that: an
 * order can carry an older time than an order before it by as long as a
 * command waits to be applied. The walk backwards goes on this far past the
 * first order older than `since`, so such an order is still counted. */
#define TALLY_SLACK_MS 60000

/* The slot of sku in t->skus (sorted by SKU), inserted with zero counts when
 * absent; NULL when out of memory. */
static ph_order_tally_sku *sku_slot(ph_order_tally *t, size_t *cap, const char *sku)
{
    size_t lo = 0, hi = t->nskus;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->skus[mid].sku, sku);
        if (c == 0)
            return &t->skus[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (t->nskus == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        ph_order_tally_sku *g = realloc(t->skus, ncap * sizeof *g);
        if (!g)
            return NULL;
        t->skus = g;
        *cap = ncap;
    }
    memmove(&t->skus[lo + 1], &t->skus[lo], (t->nskus - lo) * sizeof *t->skus);
    t->nskus++;
    ph_order_tally_sku *s = &t->skus[lo];
    memset(s, 0, sizeof *s);
    memcpy(s->sku, sku, strlen(sku) + 1); /* a decoded order's sku fits PH_SKU_MAX */
    return s;
}

/* Counts one decoded order into t. */
static int tally_add(ph_order_tally *t, size_t *cap, const ph_order *o)
{
    ph_order_tally_sku *s = sku_slot(t, cap, o->sku);
    if (!s)
        return PH_ENOMEM;
    unsigned st = o->state >= 0 && o->state < PH_ORDER_TALLY_STATES ? (unsigned)o->state : 0;
    t->orders++;
    t->by_state[st]++;
    s->orders++;
    s->quantity += o->quantity;
    s->by_state[st]++;
    return PH_OK;
}

int ph_store_order_tally(ph_store *s, int64_t since, size_t max_orders, ph_order_tally *out,
                         ph_err *err)
{
    MDB_txn *txn;
    MDB_cursor *c;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    ph_order_tally t = {.complete = 1};
    size_t cap = 0, visited = 0;
    int64_t oldest = INT64_MAX; /* of the orders counted */
    MDB_stat ms;
    if (mdb_stat(txn, s->dbi[DB_EVENTS], &ms) == 0)
        t.last_event = ms.ms_entries; /* events are numbered 1..n without gaps */
    if (mdb_cursor_open(txn, s->dbi[DB_ORDERS], &c)) {
        ph_store_read_end(s, txn);
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    MDB_val k, v;
    for (int mrc = mdb_cursor_get(c, &k, &v, MDB_LAST); mrc == 0;
         mrc = mdb_cursor_get(c, &k, &v, MDB_PREV)) {
        uint64_t id;
        ph_order o;
        memcpy(&id, k.mv_data, sizeof id);
        if (ph_order_decode(&v, id, &o, NULL) != PH_OK) {
            rc = ph_err_set(err, PH_EIO, "order %llu: malformed record", (unsigned long long)id);
            break;
        }
        if (o.created_at < since - TALLY_SLACK_MS)
            break;
        if (visited == max_orders) {
            t.complete = 0; /* the counts cover the newest orders only */
            break;
        }
        visited++;
        /* the mall's orders, as analytics count them: not a replenishment,
         * not a bundle's component (its bundle counts once) */
        if (o.created_at < since || !store_agg_counts(&o))
            continue;
        if (o.created_at < oldest)
            oldest = o.created_at;
        if ((rc = tally_add(&t, &cap, &o)) != PH_OK) {
            ph_err_set(err, rc, "out of memory");
            break;
        }
    }
    mdb_cursor_close(c);
    ph_store_read_end(s, txn);
    if (rc) {
        free(t.skus);
        return rc;
    }
    t.counted_from = t.complete || oldest == INT64_MAX ? since : oldest;
    *out = t;
    return PH_OK;
}

void ph_order_tally_clear(ph_order_tally *t)
{
    free(t->skus);
    memset(t, 0, sizeof *t);
}
