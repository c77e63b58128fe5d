/*
 * store_replenish.c — replenishments inside the writer (store.h,
 * "replenishment"; docs/store.md, "Replenishment"): the decision
 * (ph_replenish_decide, pure), starting one (PH_CMD_REPLENISH: the record, the
 * in-flight mark, the day's spend and the supplier card order, in one
 * transaction), ending one when its order becomes final (store_replenish_end,
 * called from store_write_attempt), and their reads.
 *
 * Three databases: `replenish` (id -> the record, JSON as the API lists it),
 * `replenish_sku` (sku -> the id in flight: the one answer to "is one in
 * flight", so a second start is refused by the writer, whatever the callers
 * raced) and `replenish_day` (sku NUL be32(day) -> fen spent that business
 * day, reports.utc_offset's day: held at start, given back by a failure,
 * set to the supplier's charge by a success).
 */
#include "store/store_int.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "config/config.h"

#define COID_PREFIX "replenish-"

static const char *str_or(const char *s, const char *dflt)
{
    return s ? s : dflt;
}

int ph_order_is_replenish(const ph_order *o)
{
    return o && strcmp(o->client, PH_REPLENISH_CLIENT) == 0;
}

const char *ph_repl_why_name(int why)
{
    switch (why) {
    case PH_REPL_BUY:
        return "buy";
    case PH_REPL_STOCK_OK:
        return "stock_ok";
    case PH_REPL_IN_FLIGHT:
        return "in_flight";
    case PH_REPL_NO_OFFER:
        return "no_offer";
    case PH_REPL_BUDGET:
        return "budget";
    case PH_REPL_INVALID:
        return "invalid";
    default:
        return "?";
    }
}

static const char *const state_names[] = {NULL, "in_flight", "succeeded", "failed"};

const char *ph_repl_state_name(int state)
{
    return state >= PH_RS_IN_FLIGHT && state <= PH_RS_FAILED ? state_names[state] : "?";
}

int ph_repl_state_parse(const char *name)
{
    for (int i = PH_RS_IN_FLIGHT; name && i <= PH_RS_FAILED; i++)
        if (strcmp(name, state_names[i]) == 0)
            return i;
    return 0;
}

void ph_replenish_decide(uint64_t available, const ph_replenish_rule *r, int64_t spent,
                         int in_flight, const ph_attempt_target *offers, size_t noffers,
                         ph_replenish_decision *out)
{
    *out = (ph_replenish_decision){0};
    if (r->to <= r->below || r->max_unit_cost < 0 || r->max_per_day < 0 || spent < 0) {
        out->why = PH_REPL_INVALID;
        return;
    }
    if (available >= r->below) {
        out->why = PH_REPL_STOCK_OK;
        return;
    }
    if (in_flight) {
        out->why = PH_REPL_IN_FLIGHT;
        return;
    }
    size_t best = noffers;
    for (size_t i = 0; i < noffers; i++)
        if (offers[i].unit_cost >= 0 && offers[i].unit_cost <= r->max_unit_cost &&
            (best == noffers || offers[i].unit_cost < offers[best].unit_cost))
            best = i;
    if (best == noffers) {
        out->why = PH_REPL_NO_OFFER;
        return;
    }
    /* available < below < to, so the difference is positive and fits */
    uint64_t want = r->to - available, fit = want;
    int64_t left = r->max_per_day > spent ? r->max_per_day - spent : 0;
    if (offers[best].unit_cost > 0 && (uint64_t)(left / offers[best].unit_cost) < fit)
        fit = (uint64_t)(left / offers[best].unit_cost);
    if (!fit) {
        out->why = PH_REPL_BUDGET;
        return;
    }
    out->why = PH_REPL_BUY;
    out->quantity = (uint32_t)fit;
    out->offer = best;
}

/* ---- the small records ------------------------------------------------------ */

static size_t day_key(const char *sku, int32_t day, uint8_t *buf)
{
    size_t n = strlen(sku);
    memcpy(buf, sku, n);
    buf[n] = 0;
    uint32_t d = (uint32_t)day;
    for (int i = 0; i < 4; i++)
        buf[n + 1 + i] = (uint8_t)(d >> (24 - 8 * i));
    return n + 5;
}

static int spent_get(MDB_txn *txn, ph_store *s, const char *sku, int32_t day, int64_t *out,
                     ph_err *err)
{
    uint8_t key[PH_SKU_MAX + 6];
    MDB_val k = {day_key(sku, day, key), key}, v;
    int mrc = mdb_get(txn, s->dbi[DB_REPLENISH_DAY], &k, &v);
    *out = 0;
    if (mrc == MDB_NOTFOUND)
        return PH_OK;
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read replenish_day");
    if (v.mv_size != 8)
        return ph_err_set(err, PH_EIO, "replenish_day %s: malformed", sku);
    memcpy(out, v.mv_data, 8);
    return PH_OK;
}

static int spent_add(ph_wtxn *w, const char *sku, int32_t day, int64_t delta, ph_err *err)
{
    int64_t cur;
    int rc = spent_get(w->txn, w->s, sku, day, &cur, err);
    if (rc)
        return rc;
    cur += delta;
    if (cur < 0)
        cur = 0; /* a charge below what was held gives back no more than was held */
    uint8_t key[PH_SKU_MAX + 6];
    MDB_val k = {day_key(sku, day, key), key}, v = {8, &cur};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_REPLENISH_DAY], &k, &v, 0);
    return mrc ? ph_store_lmdb_err(err, mrc, "write replenish_day") : PH_OK;
}

static int in_flight_get(MDB_txn *txn, ph_store *s, const char *sku, uint64_t *id, ph_err *err)
{
    MDB_val k = {strlen(sku), (void *)sku}, v;
    int mrc = mdb_get(txn, s->dbi[DB_REPLENISH_SKU], &k, &v);
    *id = 0;
    if (mrc == MDB_NOTFOUND)
        return PH_OK;
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read replenish_sku");
    if (v.mv_size != 8)
        return ph_err_set(err, PH_EIO, "replenish_sku %s: malformed", sku);
    memcpy(id, v.mv_data, 8);
    return PH_OK;
}

static int record_put(ph_wtxn *w, uint64_t id, json_t *rec, ph_err *err)
{
    char *txt = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!txt)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    MDB_val k = {8, &id}, v = {strlen(txt), txt};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_REPLENISH], &k, &v, 0);
    ph_json_free(txt);
    return mrc ? ph_store_lmdb_err(err, mrc, "write replenish") : PH_OK;
}

/* Issuable codes of sku at now, as the product view counts them. */
static uint64_t issuable(ph_wtxn *w, const char *sku, int64_t now)
{
    MDB_cursor *cur;
    size_t n = 0, len = strlen(sku);
    MDB_val k = {len, (void *)sku}, v;
    if (mdb_cursor_open(w->txn, w->s->dbi[DB_AVAIL], &cur))
        return 0;
    if (mdb_cursor_get(cur, &k, &v, MDB_SET) == 0)
        mdb_cursor_count(cur, &n);
    mdb_cursor_close(cur);
    uint64_t due = ph_expiry_due_available(w->s, w->txn, sku, len, now);
    return n > due ? n - due : 0;
}

static int check_input(ph_cmd *c)
{
    if (!ph_ident_valid(c->in.replenish.sku, PH_SKU_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "replenish: sku malformed");
    if (c->in.replenish.to > PH_ORDER_QUANTITY_MAX)
        return ph_err_set(&c->err, PH_EINVAL, "replenish: to above %d", PH_ORDER_QUANTITY_MAX);
    for (size_t i = 0; i < c->in.replenish.noffers; i++) {
        const ph_attempt_target *t = &c->in.replenish.offers[i];
        int64_t total;
        if (!ph_ident_valid(t->supplier, PH_SKU_MAX) || !t->product_id ||
            !store_text_ok(t->product_id, PH_SUPPLIER_ORDER_MAX, 0) || t->unit_cost < 0 ||
            __builtin_mul_overflow(t->unit_cost, (int64_t)PH_ORDER_QUANTITY_MAX, &total))
            return ph_err_set(&c->err, PH_EINVAL, "replenish: offers[%zu] malformed", i);
    }
    return PH_OK;
}

static int refuse(ph_cmd *c, int why)
{
    const char *sku = c->in.replenish.sku;
    c->repl_why = why;
    switch (why) {
    case PH_REPL_STOCK_OK:
        return ph_err_set(&c->err, PH_ESTATE, "replenish %s: stock is not below %u", sku,
                          c->in.replenish.below);
    case PH_REPL_IN_FLIGHT:
        return ph_err_set(&c->err, PH_ESTATE, "replenish %s: a replenishment is in flight", sku);
    case PH_REPL_NO_OFFER:
        return ph_err_set(&c->err, PH_ENOTFOUND,
                          "replenish %s: no usable offer at or under max_unit_cost", sku);
    case PH_REPL_BUDGET:
        return ph_err_set(&c->err, PH_ELIMIT,
                          "replenish %s: not one unit fits the day's budget max_per_day", sku);
    default:
        return ph_err_set(&c->err, PH_EINVAL, "replenish %s: to must be above below", sku);
    }
}

int store_apply_replenish(ph_wtxn *w, ph_cmd *c)
{
    int rc = check_input(c);
    if (rc)
        return rc;
    const char *sku = c->in.replenish.sku;
    int delivery;
    char kind[32] = "?";
    if ((rc = store_listed_delivery(w, c, sku, &delivery, kind)) != PH_OK)
        return rc;
    if (delivery != PH_DELIVERY_CARD_CODE)
        return ph_err_set(&c->err, PH_ESKU, "sku: '%s' is not a card-code product", sku);
    int32_t day = ph_ledger_day(c->now, w->s->report_offset);
    int64_t spent;
    uint64_t flying;
    if ((rc = spent_get(w->txn, w->s, sku, day, &spent, &c->err)) != PH_OK ||
        (rc = in_flight_get(w->txn, w->s, sku, &flying, &c->err)) != PH_OK)
        return rc;
    ph_replenish_rule rule = {c->in.replenish.below, c->in.replenish.to,
                              c->in.replenish.max_unit_cost, c->in.replenish.max_per_day};
    ph_replenish_decision d;
    ph_replenish_decide(issuable(w, sku, c->now), &rule, spent, flying != 0, c->in.replenish.offers,
                        c->in.replenish.noffers, &d);
    if (d.why != PH_REPL_BUY)
        return refuse(c, d.why);
    const ph_attempt_target *t = &c->in.replenish.offers[d.offer];
    uint64_t id = ph_store_last_key(w->txn, w->s->dbi[DB_REPLENISH]) + 1;
    char coid[sizeof COID_PREFIX + 24];
    snprintf(coid, sizeof coid, COID_PREFIX "%" PRIu64, id);

    /* the purchase is an ordinary supplier card order, created the one way */
    ph_cmd sub = {.type = PH_CMD_SUPPLY_CREATE, .now = c->now};
    sub.in.supply.client = PH_REPLENISH_CLIENT;
    sub.in.supply.client_order_id = coid;
    sub.in.supply.sku = sku;
    sub.in.supply.quantity = d.quantity;
    sub.in.supply.delivery = PH_DELIVERY_CARD_CODE;
    sub.in.supply.first = *t;
    if ((rc = store_apply_supply_create(w, &sub)) != PH_OK) {
        c->err = sub.err;
        ph_cmd_clear(&sub);
        return rc;
    }
    ph_order *o = sub.order;
    sub.order = NULL;
    int64_t held = t->unit_cost * (int64_t)d.quantity;
    char at[32], dayname[32];
    ph_time_format(c->now, at, sizeof at);
    ph_time_format((int64_t)day * 86400000, dayname, sizeof dayname);
    dayname[10] = 0;
    json_t *rec = json_pack("{s:I,s:s,s:s,s:s,s:I,s:I,s:s,s:I,s:n,s:s,s:n,s:n,s:s,s:I,s:n}", "id",
                            (json_int_t)id, "sku", sku, "supplier", t->supplier, "product_id",
                            t->product_id, "quantity", (json_int_t)d.quantity, "unit_cost_fen",
                            (json_int_t)t->unit_cost, "state", ph_repl_state_name(PH_RS_IN_FLIGHT),
                            "order_id", (json_int_t)o->id, "batch_id", "started_at", at, "ended_at",
                            "reason", "day", dayname, "held_fen", (json_int_t)held, "cost_fen");
    MDB_val k = {strlen(sku), (void *)sku}, v = {8, &id};
    int mrc = 0;
    if (!rec)
        rc = ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    else if ((rc = record_put(w, id, rec, &c->err)) == PH_OK &&
             (mrc = mdb_put(w->txn, w->s->dbi[DB_REPLENISH_SKU], &k, &v, 0)) != 0)
        rc = ph_store_lmdb_err(&c->err, mrc, "write replenish_sku");
    json_decref(rec);
    if (rc == PH_OK && (rc = spent_add(w, sku, day, held, &c->err)) == PH_OK)
        rc = store_emit(w, c->now, "replenish.started",
                        json_pack("{s:s,s:I,s:s,s:I,s:I,s:I}", "sku", sku, "replenishment_id",
                                  (json_int_t)id, "supplier", t->supplier, "quantity",
                                  (json_int_t)d.quantity, "unit_cost", (json_int_t)t->unit_cost,
                                  "order_id", (json_int_t)o->id),
                        &c->err);
    if (rc) {
        ph_order_free(o);
        return rc;
    }
    c->order = o;
    c->replenish_id = id;
    c->repl_why = PH_REPL_BUY;
    return PH_OK;
}

int store_replenish_end(ph_wtxn *w, ph_cmd *c, const ph_order *o, uint64_t batch_id)
{
    uint64_t id = 0;
    if (strncmp(o->client_order_id, COID_PREFIX, strlen(COID_PREFIX)) != 0 ||
        sscanf(o->client_order_id + strlen(COID_PREFIX), "%" SCNu64, &id) != 1)
        return ph_err_set(&c->err, PH_EIO, "order %llu: not a replenishment's order id",
                          (unsigned long long)o->id);
    MDB_val k = {8, &id}, v;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_REPLENISH], &k, &v);
    if (mrc)
        return mrc == MDB_NOTFOUND ? ph_err_set(&c->err, PH_EIO, "replenishment %llu: missing",
                                                (unsigned long long)id)
                                   : ph_store_lmdb_err(&c->err, mrc, "read replenish");
    json_t *rec = json_loadb(v.mv_data, v.mv_size, 0, NULL);
    const char *dayname = json_string_value(json_object_get(rec, "day"));
    int32_t day = dayname ? ph_report_day_parse(dayname) : -1;
    if (!rec || day < 0 ||
        strcmp(str_or(json_string_value(json_object_get(rec, "state")), ""), "in_flight") != 0) {
        json_decref(rec);
        return ph_err_set(&c->err, PH_EIO, "replenishment %llu: malformed or not in flight",
                          (unsigned long long)id);
    }
    int ok = o->state == PH_ORDER_SUCCEEDED;
    int64_t held = json_integer_value(json_object_get(rec, "held_fen"));
    int64_t delta = ok ? o->cost - held : -held;
    char at[32];
    ph_time_format(c->now, at, sizeof at);
    json_object_set_new(rec, "state",
                        json_string(ph_repl_state_name(ok ? PH_RS_SUCCEEDED : PH_RS_FAILED)));
    json_object_set_new(rec, "ended_at", json_string(at));
    if (ok) {
        json_object_set_new(rec, "batch_id", json_integer((json_int_t)batch_id));
        json_object_set_new(rec, "cost_fen", json_integer((json_int_t)o->cost));
    } else {
        json_object_set_new(rec, "reason", json_string(o->reason[0] ? o->reason : "failed"));
    }
    int rc = record_put(w, id, rec, &c->err);
    json_decref(rec);
    uint64_t flying;
    MDB_val sk = {strlen(o->sku), (void *)o->sku};
    if (rc == PH_OK && (rc = in_flight_get(w->txn, w->s, o->sku, &flying, &c->err)) == PH_OK &&
        flying == id && (mrc = mdb_del(w->txn, w->s->dbi[DB_REPLENISH_SKU], &sk, NULL)) != 0)
        rc = ph_store_lmdb_err(&c->err, mrc, "write replenish_sku");
    if (rc == PH_OK && delta)
        rc = spent_add(w, o->sku, day, delta, &c->err);
    const char *sup = o->nattempts ? o->attempts[o->nattempts - 1].supplier : "";
    if (rc == PH_OK && ok)
        rc = store_emit(w, c->now, "replenish.succeeded",
                        json_pack("{s:s,s:I,s:s,s:I,s:I,s:I,s:I}", "sku", o->sku,
                                  "replenishment_id", (json_int_t)id, "supplier", sup, "quantity",
                                  (json_int_t)o->quantity, "batch_id", (json_int_t)batch_id,
                                  "cost_fen", (json_int_t)o->cost, "order_id", (json_int_t)o->id),
                        &c->err);
    else if (rc == PH_OK)
        rc = store_emit(w, c->now, "replenish.failed",
                        json_pack("{s:s,s:I,s:s,s:s,s:I}", "sku", o->sku, "replenishment_id",
                                  (json_int_t)id, "supplier", sup, "reason",
                                  o->reason[0] ? o->reason : "failed", "order_id",
                                  (json_int_t)o->id),
                        &c->err);
    return rc;
}

int store_replenish_mark_batch(ph_wtxn *w, uint64_t batch_id, uint64_t order_id, ph_err *err)
{
    MDB_val k = {8, &batch_id}, v;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_BATCHES], &k, &v);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read batch");
    json_t *b = json_loadb(v.mv_data, v.mv_size, 0, NULL);
    if (!b)
        return ph_err_set(err, PH_EIO, "batch %llu: malformed record",
                          (unsigned long long)batch_id);
    json_object_set_new(b, "replenishment_order", json_integer((json_int_t)order_id));
    char *txt = json_dumps(b, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(b);
    if (!txt)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    MDB_val nv = {strlen(txt), txt};
    mrc = mdb_put(w->txn, w->s->dbi[DB_BATCHES], &k, &nv, 0);
    ph_json_free(txt);
    return mrc ? ph_store_lmdb_err(err, mrc, "write batch") : PH_OK;
}

/* ---- reads -------------------------------------------------------------------- */

/* The record's sku and state against the filters (NULL / 0 = any). */
static int matches(const MDB_val *v, const char *sku, int state)
{
    if (!sku && !state)
        return 1;
    json_t *rec = json_loadb(v->mv_data, v->mv_size, 0, NULL);
    int ok =
        rec &&
        (!sku || strcmp(str_or(json_string_value(json_object_get(rec, "sku")), ""), sku) == 0) &&
        (!state || ph_repl_state_parse(json_string_value(json_object_get(rec, "state"))) == state);
    json_decref(rec);
    return ok;
}

typedef struct repl_filter {
    const char *sku;
    int state;
} repl_filter;

static int keep_repl(const MDB_val *v, const void *arg)
{
    const repl_filter *f = arg;
    return matches(v, f->sku, f->state);
}

int ph_store_replenish_list(ph_store *s, const char *sku, int state, uint64_t after, size_t limit,
                            char ***out, size_t *n, uint64_t *next_after, ph_err *err)
{
    repl_filter f = {sku, state};
    return store_json_list(s, DB_REPLENISH, after, limit, sku || state ? keep_repl : NULL, &f,
                           "read replenishments", out, n, next_after, err);
}

int ph_store_replenish_state(ph_store *s, const char *sku, int64_t at, int64_t *spent,
                             uint64_t *in_flight, ph_err *err)
{
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    rc = spent_get(txn, s, sku, ph_ledger_day(at, s->report_offset), spent, err);
    if (rc == PH_OK)
        rc = in_flight_get(txn, s, sku, in_flight, err);
    ph_store_read_end(s, txn);
    return rc;
}

/* ---- --check-store ------------------------------------------------------------------ */

/* One record against its order and the in-flight mark; its share of its
 * day's spend is added to *day_sum when it is of (sku, day). */
static int check_record(ph_store *s, MDB_txn *txn, uint64_t id, json_t *rec, ph_err *err)
{
    const char *sku = json_string_value(json_object_get(rec, "sku"));
    int state = ph_repl_state_parse(json_string_value(json_object_get(rec, "state")));
    json_t *oid = json_object_get(rec, "order_id");
    if (!sku || !state || !json_is_integer(oid))
        return ph_err_set(err, PH_EIO, "replenishment %llu: malformed record",
                          (unsigned long long)id);
    ph_order *o = NULL;
    int rc = ph_order_load(s, txn, (uint64_t)json_integer_value(oid), 0, &o, err);
    if (rc)
        return ph_err_set(err, PH_EIO, "replenishment %llu: its order %lld is missing",
                          (unsigned long long)id, (long long)json_integer_value(oid));
    char coid[sizeof COID_PREFIX + 24];
    snprintf(coid, sizeof coid, COID_PREFIX "%llu", (unsigned long long)id);
    int want = !ph_order_state_final(o->state)  ? PH_RS_IN_FLIGHT
               : o->state == PH_ORDER_SUCCEEDED ? PH_RS_SUCCEEDED
                                                : PH_RS_FAILED;
    if (!ph_order_is_replenish(o) || strcmp(o->client_order_id, coid) || strcmp(o->sku, sku))
        rc = ph_err_set(err, PH_EIO, "replenishment %llu: order %llu is not its purchase",
                        (unsigned long long)id, (unsigned long long)o->id);
    else if (state != want)
        rc = ph_err_set(err, PH_EIO, "replenishment %llu is %s, but its order %llu is %s",
                        (unsigned long long)id, ph_repl_state_name(state),
                        (unsigned long long)o->id, ph_order_state_name(o->state));
    ph_order_free(o);
    uint64_t flying = 0;
    if (rc == PH_OK && (rc = in_flight_get(txn, s, sku, &flying, err)) == PH_OK &&
        (flying == id) != (state == PH_RS_IN_FLIGHT))
        rc = ph_err_set(err, PH_EIO, "replenishment %llu is %s, but %s's in-flight mark names %llu",
                        (unsigned long long)id, ph_repl_state_name(state), sku,
                        (unsigned long long)flying);
    return rc;
}

/* What a record holds of its day's spend: held while in flight, the charge
 * once succeeded, nothing once failed. */
static int64_t record_spend(json_t *rec)
{
    int state = ph_repl_state_parse(json_string_value(json_object_get(rec, "state")));
    return state == PH_RS_IN_FLIGHT   ? json_integer_value(json_object_get(rec, "held_fen"))
           : state == PH_RS_SUCCEEDED ? json_integer_value(json_object_get(rec, "cost_fen"))
                                      : 0;
}

int store_replenish_check(ph_store *s, MDB_txn *txn, ph_err *err)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int mrc = mdb_cursor_open(txn, s->dbi[DB_REPLENISH], &cur), rc = PH_OK;
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read replenish");
    /* every record: its order and mark agree; each (sku, day)'s spend is
     * summed from its records, then compared with replenish_day */
    json_t *sums = json_object();
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !mrc && rc == PH_OK;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t id;
        memcpy(&id, k.mv_data, 8);
        json_t *rec = json_loadb(v.mv_data, v.mv_size, 0, NULL);
        if (!rec) {
            rc = ph_err_set(err, PH_EIO, "replenishment %llu: not JSON", (unsigned long long)id);
            break;
        }
        rc = check_record(s, txn, id, rec, err);
        const char *day = json_string_value(json_object_get(rec, "day"));
        if (rc == PH_OK && (!day || ph_report_day_parse(day) < 0))
            rc = ph_err_set(err, PH_EIO, "replenishment %llu: malformed day",
                            (unsigned long long)id);
        if (rc == PH_OK) {
            char key[PH_SKU_MAX + 16];
            snprintf(key, sizeof key, "%s|%d", json_string_value(json_object_get(rec, "sku")),
                     (int)ph_report_day_parse(day));
            json_int_t sum = json_integer_value(json_object_get(sums, key)) + record_spend(rec);
            json_object_set_new(sums, key, json_integer(sum));
        }
        json_decref(rec);
    }
    mdb_cursor_close(cur);
    if (rc == PH_OK && mdb_cursor_open(txn, s->dbi[DB_REPLENISH_DAY], &cur) == 0) {
        for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !mrc && rc == PH_OK;
             mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            const uint8_t *p = k.mv_data;
            size_t n = k.mv_size;
            int64_t spent;
            if (n < 6 || n > PH_SKU_MAX + 5 || p[n - 5] != 0 || v.mv_size != 8) {
                rc = ph_err_set(err, PH_EIO, "replenish_day: malformed entry");
                break;
            }
            memcpy(&spent, v.mv_data, 8);
            int32_t day = (int32_t)((uint32_t)p[n - 4] << 24 | (uint32_t)p[n - 3] << 16 |
                                    (uint32_t)p[n - 2] << 8 | p[n - 1]);
            char key[PH_SKU_MAX + 16];
            snprintf(key, sizeof key, "%.*s|%d", (int)(n - 5), (const char *)p, (int)day);
            json_int_t want = json_integer_value(json_object_get(sums, key));
            if (spent != want)
                rc = ph_err_set(err, PH_EIO,
                                "replenish_day %s: %lld fen spent, its replenishments hold %lld",
                                key, (long long)spent, (long long)want);
        }
        mdb_cursor_close(cur);
    }
    json_decref(sums);
    return rc;
}
