/*
 * store_stuck.c — stuck orders inside the store (issue 11, item 3): the event
 * of an attempt escalated as stuck, ops settling a stuck order by hand
 * (PH_CMD_SETTLE, in the writer's transaction), and the reads of the stuck
 * list and count from the `pending` index.
 *
 * An attempt is marked stuck by the ATTEMPT command that records a check once
 * fulfil's clock says it is overdue (store.h, mark_stuck): the mark (stuck_at)
 * lives in the attempt record and in the order's `pending` value, both written
 * in that command's transaction, so order.stuck is written exactly once, kill
 * -9 or not. Settling moves the open attempt forward to its final state
 * through the same write as an ATTEMPT (store_write_attempt), so whatever
 * follows an order's write follows a settle too.
 */
#include "store/store_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "config/config.h"

int store_emit_stuck(ph_wtxn *w, int64_t now, const ph_order *o, const ph_attempt *a, ph_err *err)
{
    json_t *f = json_pack("{s:I,s:s,s:s,s:s,s:I,s:s,s:s,s:I}", "order_id", (json_int_t)o->id,
                          "client", o->client, "client_order_id", o->client_order_id, "sku", o->sku,
                          "attempt", (json_int_t)a->no, "supplier", a->supplier, "state",
                          ph_attempt_state_name(a->state), "checks", (json_int_t)a->checks);
    if (!f)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    return store_emit(w, now, "order.stuck", f, err);
}

static int emit_settled(ph_wtxn *w, int64_t now, const ph_order *o, const ph_attempt *a,
                        ph_err *err)
{
    json_t *f = json_pack("{s:I,s:s,s:s,s:s,s:I,s:s,s:s,s:s}", "order_id", (json_int_t)o->id,
                          "client", o->client, "client_order_id", o->client_order_id, "sku", o->sku,
                          "attempt", (json_int_t)a->no, "supplier", a->supplier, "outcome",
                          ph_attempt_state_name(a->state), "by", a->settled_by);
    if (f && a->state == PH_ATTEMPT_SUCCEEDED)
        json_object_set_new(f, "cost_fen", json_integer(o->cost));
    if (!f)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    return store_emit(w, now, "order.settled", f, err);
}

/* The note: 1..PH_NOTE_MAX bytes of UTF-8 without control characters (it is
 * shown in the order view as ops wrote it). */
int store_note_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (!n || n > PH_NOTE_MAX || ph_text_invalid(s, n))
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static int check_settle_input(ph_cmd *c)
{
    int out = c->in.settle.outcome;
    if (out != PH_ATTEMPT_SUCCEEDED && out != PH_ATTEMPT_FAILED)
        return ph_err_set(&c->err, PH_EINVAL, "outcome: expected succeeded or failed");
    if (!ph_ident_valid(c->in.settle.by, PH_SKU_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "by: expected a client name");
    if (!store_note_ok(c->in.settle.note))
        return ph_err_set(&c->err, PH_EINVAL,
                          "note: expected 1 to %d bytes of text without control characters",
                          PH_NOTE_MAX);
    if (c->in.settle.charged < -1)
        return ph_err_set(&c->err, PH_EINVAL, "charged: must not be negative");
    if (c->in.settle.charged >= 0 && out != PH_ATTEMPT_SUCCEEDED)
        return ph_err_set(&c->err, PH_EINVAL, "charged: only a succeeded order has a charge");
    if (c->in.settle.supplier_order_id &&
        !store_text_ok(c->in.settle.supplier_order_id, PH_SUPPLIER_ORDER_MAX, 0))
        return ph_err_set(&c->err, PH_EINVAL,
                          "supplier_order_id: expected 1 to %d printable ASCII bytes",
                          PH_SUPPLIER_ORDER_MAX);
    return PH_OK;
}

/* Only a stuck order is settled by hand; a card order's codes come from its
 * supplier only, so it settles as failed. */
static int settleable(const ph_order *o, ph_cmd *c)
{
    unsigned long long id = o->id;
    if (!ph_order_stuck_since(o))
        return ph_err_set(&c->err, PH_ESTATE, "order %llu is %s, not stuck", id,
                          ph_order_state_name(o->state));
    if (c->in.settle.outcome == PH_ATTEMPT_SUCCEEDED && o->delivery != PH_DELIVERY_RECHARGE)
        return ph_err_set(&c->err, PH_ESTATE,
                          "order %llu is a card-code order: its codes never reached perkhub, "
                          "so it can be settled failed only",
                          id);
    return PH_OK;
}

int store_apply_settle(ph_wtxn *w, ph_cmd *c)
{
    ph_order *o = NULL;
    int rc = check_settle_input(c);
    if (rc || (rc = ph_order_load(w->s, w->txn, c->in.settle.order_id, 0, &o, &c->err)) != PH_OK)
        return rc;
    if ((rc = settleable(o, c)) != PH_OK) {
        ph_order_free(o);
        return rc;
    }
    uint32_t no = (uint32_t)o->nattempts;
    ph_attempt_before b;
    store_attempt_before(o, no, &b);
    ph_attempt *a = &o->attempts[no - 1];
    a->state = c->in.settle.outcome;
    snprintf(a->reason, sizeof a->reason, "%s",
             a->state == PH_ATTEMPT_FAILED ? "settled_by_ops" : "");
    if (c->in.settle.charged >= 0)
        a->charged = c->in.settle.charged;
    if (c->in.settle.supplier_order_id)
        snprintf(a->supplier_order_id, sizeof a->supplier_order_id, "%s",
                 c->in.settle.supplier_order_id);
    a->updated_at = a->settled_at = c->now;
    a->next_check_at = 0;
    snprintf(a->settled_by, sizeof a->settled_by, "%s", c->in.settle.by);
    snprintf(a->settle_note, sizeof a->settle_note, "%s", c->in.settle.note);
    store_order_follow(o, a);
    if ((rc = store_write_attempt(w, c, o, no, &b, 0)) == PH_OK)
        rc = emit_settled(w, c->now, o, a, &c->err);
    if (rc) {
        ph_order_free(o);
        return rc;
    }
    c->order = o;
    return PH_OK;
}

/* ---- reads ------------------------------------------------------------------ */

static int is_stuck_value(const MDB_val *v)
{
    return v->mv_size == 1 && *(const char *)v->mv_data == PH_PENDING_STUCK;
}

int ph_store_stuck_list(ph_store *s, const char *client, uint64_t after, size_t limit,
                        ph_order ***out, size_t *n, ph_err *err)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    int mrc = mdb_cursor_open(txn, s->dbi[DB_PENDING], &cur);
    if (mrc) {
        ph_store_read_end(s, txn);
        return ph_store_lmdb_err(err, mrc, "read pending");
    }
    ph_order **list = NULL;
    size_t cnt = 0, cap = 0;
    uint64_t from = after + 1;
    MDB_val k = {8, &from}, v;
    for (MDB_cursor_op op = MDB_SET_RANGE;
         cnt < limit && after < UINT64_MAX && (mrc = mdb_cursor_get(cur, &k, &v, op)) == 0;
         op = MDB_NEXT) {
        uint64_t id;
        ph_order *o = NULL;
        if (k.mv_size != 8 || !is_stuck_value(&v))
            continue;
        memcpy(&id, k.mv_data, 8);
        if ((rc = ph_order_load(s, txn, id, 0, &o, err)) != PH_OK)
            break;
        if (client && strcmp(o->client, client)) {
            ph_order_free(o);
            continue;
        }
        if (cnt == cap) {
            ph_order **g = ph_grow(list, &cap, sizeof *g, 16);
            if (!g) {
                ph_order_free(o);
                rc = ph_err_set(err, PH_ENOMEM, "out of memory");
                break;
            }
            list = g;
        }
        list[cnt++] = o;
    }
    if (rc == PH_OK && mrc && mrc != MDB_NOTFOUND)
        rc = ph_store_lmdb_err(err, mrc, "read pending");
    mdb_cursor_close(cur);
    ph_store_read_end(s, txn);
    if (rc) {
        ph_order_list_free(list, cnt);
        return rc;
    }
    *out = list;
    *n = cnt;
    return PH_OK;
}

int ph_store_stuck_count(ph_store *s, uint64_t *n, ph_err *err)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    int mrc = mdb_cursor_open(txn, s->dbi[DB_PENDING], &cur);
    uint64_t cnt = 0;
    MDB_val k, v;
    if (mrc == 0) {
        for (MDB_cursor_op op = MDB_FIRST; (mrc = mdb_cursor_get(cur, &k, &v, op)) == 0;
             op = MDB_NEXT)
            cnt += is_stuck_value(&v);
        mdb_cursor_close(cur);
    }
    ph_store_read_end(s, txn);
    if (mrc && mrc != MDB_NOTFOUND)
        return ph_store_lmdb_err(err, mrc, "read pending");
    *n = cnt;
    return PH_OK;
}
