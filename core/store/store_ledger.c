/*
 * store_ledger.c — the ledger, derived from the orders (store.h, "the ledger
 * and the daily reports"; docs/store.md, "The ledger").
 *
 * One function, store_ledger_book, runs inside store_put_order for every
 * write of an order record. It computes the order's money facts from the
 * order alone (and, once, the client's price from the stored product),
 * compares them with the order's summary in `ledger_orders`, and appends an
 * entry for each difference; the same differences go into the daily
 * aggregates (`report_days`) the reports read. So a command that changes an
 * order — today's orders and attempts, tomorrow's corrections and settlements
 * — books itself, and nothing books twice: a second write with the same facts
 * finds nothing to book and writes nothing.
 *
 * A fact is (side, attempt, supplier) -> amount: the cost of each succeeded
 * attempt (its charge, else unit_cost x quantity), the cost of codes issued
 * from local stock per supplier of their batches, and the sale (the unit
 * price captured when the order was first booked, x the units) credited to
 * the supplier that delivered. Deterministic: the time is the command's, the
 * price comes from the database.
 *
 * Also here: the schema 4 migration (every order booked once), the report
 * offset kept in `meta`, the rebuild of the aggregates, and the invariants
 * --check-store proves (ph_ledger_check).
 */
#include "store/store_int.h"

#include "config/config.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

_Static_assert(sizeof(ph_ledger_rec) == 40, "ledger record header is 40 bytes");

const char *ph_ledger_kind_name(int kind)
{
    static const char *const names[] = {"?", "sale", "supplier_cost", "sale_correction",
                                        "cost_correction"};
    return kind >= 1 && kind <= 4 ? names[kind] : "?";
}

int ph_ledger_kind_revenue(int kind)
{
    return kind == PH_LEDGER_SALE || kind == PH_LEDGER_SALE_CORRECTION;
}

int32_t ph_ledger_day(int64_t ms, int offset_min)
{
    int64_t t = ms + (int64_t)offset_min * 60000, d = t / 86400000;
    if (t % 86400000 < 0)
        d--; /* floor, also before 1970 */
    return (int32_t)d;
}

/* ---- facts ------------------------------------------------------------------ */

enum { SIDE_REVENUE = 1, SIDE_COST = 2 };

typedef struct fact {
    uint8_t side;
    uint32_t attempt;
    uint32_t quantity;
    int64_t amount;
    char supplier[PH_SKU_MAX + 1];
} fact;

typedef struct facts {
    fact *v;
    size_t n, cap;
} facts;

static fact *facts_find(facts *f, int side, uint32_t attempt, const char *supplier)
{
    for (size_t i = 0; i < f->n; i++)
        if (f->v[i].side == side && f->v[i].attempt == attempt &&
            strcmp(f->v[i].supplier, supplier) == 0)
            return &f->v[i];
    return NULL;
}

/* Adds amount and quantity to the fact (side, attempt, supplier), creating it. */
static int facts_add(facts *f, int side, uint32_t attempt, const char *supplier, int64_t amount,
                     uint32_t quantity)
{
    fact *x = facts_find(f, side, attempt, supplier);
    if (!x) {
        if (f->n == f->cap) {
            size_t cap = f->cap ? f->cap * 2 : 4;
            fact *g = realloc(f->v, cap * sizeof *g);
            if (!g)
                return PH_ENOMEM;
            f->v = g;
            f->cap = cap;
        }
        x = &f->v[f->n++];
        memset(x, 0, sizeof *x);
        x->side = (uint8_t)side;
        x->attempt = attempt;
        snprintf(x->supplier, sizeof x->supplier, "%s", supplier);
    }
    x->amount += amount;
    x->quantity += quantity;
    return PH_OK;
}

/* What the order's summary says (or will say). */
typedef struct summary {
    int priced;
    int64_t unit_price;
    int counted;         /* the order state counted in the aggregates, 0 none */
    int32_t counted_day; /* the order's creation day at the offset (recomputed, not trusted) */
    char counted_supplier[PH_SKU_MAX + 1];
    uint32_t entries;
    facts f;
} summary;

/* Summary record (DB_LEDGER_ORDERS): this header, the counted supplier, then
 * nfacts x (sum_fact_rec, supplier). */
typedef struct sum_rec {
    uint8_t version; /* 1 */
    uint8_t priced;
    uint8_t counted;
    uint8_t counted_sup_len;
    int32_t counted_day;
    int64_t unit_price;
    uint32_t entries;
    uint16_t nfacts;
    uint16_t reserved; /* 0 */
} sum_rec;
typedef struct sum_fact_rec {
    uint8_t side;
    uint8_t supplier_len;
    uint16_t reserved; /* 0 */
    uint32_t attempt;
    int64_t amount;
    uint32_t quantity;
    uint32_t reserved2; /* 0 */
} sum_fact_rec;
_Static_assert(sizeof(sum_rec) == 24, "summary header is 24 bytes");
_Static_assert(sizeof(sum_fact_rec) == 24, "summary fact is 24 bytes");

static int sum_decode(const MDB_val *v, summary *out)
{
    sum_rec r;
    const uint8_t *p = v->mv_data, *end = p + v->mv_size;
    memset(out, 0, sizeof *out);
    if (v->mv_size < sizeof r)
        return PH_EIO;
    memcpy(&r, p, sizeof r);
    p += sizeof r;
    if (r.version != 1 || (size_t)(end - p) < r.counted_sup_len || r.counted_sup_len > PH_SKU_MAX)
        return PH_EIO;
    out->priced = r.priced;
    out->unit_price = r.unit_price;
    out->counted = r.counted;
    out->counted_day = r.counted_day;
    out->entries = r.entries;
    memcpy(out->counted_supplier, p, r.counted_sup_len);
    p += r.counted_sup_len;
    for (uint16_t i = 0; i < r.nfacts; i++) {
        sum_fact_rec fr;
        if ((size_t)(end - p) < sizeof fr)
            return PH_EIO;
        memcpy(&fr, p, sizeof fr);
        p += sizeof fr;
        if ((size_t)(end - p) < fr.supplier_len || fr.supplier_len > PH_SKU_MAX)
            return PH_EIO;
        char sup[PH_SKU_MAX + 1];
        memcpy(sup, p, fr.supplier_len);
        sup[fr.supplier_len] = 0;
        p += fr.supplier_len;
        if (facts_add(&out->f, fr.side, fr.attempt, sup, fr.amount, fr.quantity))
            return PH_ENOMEM;
    }
    return p == end ? PH_OK : PH_EIO;
}

static int sum_put(ph_wtxn *w, uint64_t order_id, const summary *sm, unsigned flags, ph_err *err)
{
    size_t cl = strlen(sm->counted_supplier), len = sizeof(sum_rec) + cl;
    for (size_t i = 0; i < sm->f.n; i++)
        len += sizeof(sum_fact_rec) + strlen(sm->f.v[i].supplier);
    MDB_val k = {8, &order_id}, v = {len, NULL};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_LEDGER_ORDERS], &k, &v, flags | MDB_RESERVE);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "write ledger summary");
    sum_rec r = {.version = 1,
                 .priced = (uint8_t)sm->priced,
                 .counted = (uint8_t)sm->counted,
                 .counted_sup_len = (uint8_t)cl,
                 .counted_day = sm->counted_day,
                 .unit_price = sm->unit_price,
                 .entries = sm->entries,
                 .nfacts = (uint16_t)sm->f.n};
    uint8_t *p = v.mv_data;
    memcpy(p, &r, sizeof r);
    p += sizeof r;
    memcpy(p, sm->counted_supplier, cl);
    p += cl;
    for (size_t i = 0; i < sm->f.n; i++) {
        const fact *x = &sm->f.v[i];
        size_t sl = strlen(x->supplier);
        sum_fact_rec fr = {.side = x->side,
                           .supplier_len = (uint8_t)sl,
                           .attempt = x->attempt,
                           .amount = x->amount,
                           .quantity = x->quantity};
        memcpy(p, &fr, sizeof fr);
        memcpy(p + sizeof fr, x->supplier, sl);
        p += sizeof fr + sl;
    }
    return PH_OK;
}

/* ---- prices ------------------------------------------------------------------ */

/* The client's unit price for sku from the stored product: "price_fen", or
 * its client's entry in "prices" (fen by client name). -1: none configured. */
static int64_t product_price(json_t *p, const char *client)
{
    json_t *cp = json_object_get(json_object_get(p, "prices"), client);
    if (json_is_integer(cp) && json_integer_value(cp) >= 0)
        return json_integer_value(cp);
    json_t *pr = json_object_get(p, "price_fen");
    return json_is_integer(pr) && json_integer_value(pr) >= 0 ? json_integer_value(pr) : -1;
}

/* Memoised per SKU (cleared with the memo when the catalog changes); only a
 * product with per-client prices is read again for each order. */
static int sale_price(ph_wtxn *w, const char *sku, const char *client, int64_t *price, ph_err *err)
{
    ph_memo *m = &w->s->memo;
    for (unsigned i = 0; i < PH_MEMO_SKUS; i++)
        if (m->price_state[i] && m->price_state[i] != 3 && strcmp(m->price_sku[i], sku) == 0) {
            *price = m->price_state[i] == 2 ? m->price[i] : -1;
            return PH_OK;
        }
    json_t *p = NULL;
    ph_err e2 = {0};
    int rc = store_get_product(w, sku, &p, &e2);
    if (rc == PH_ESKU) { /* an order of a product no longer stored: no price */
        *price = -1;
        return PH_OK;
    }
    if (rc)
        return ph_err_set(err, rc, "%s", e2.msg);
    *price = product_price(p, client);
    int per_client = json_object_size(json_object_get(p, "prices")) > 0;
    json_decref(p);
    unsigned slot = m->next_price;
    m->next_price = (m->next_price + 1) % PH_MEMO_SKUS;
    snprintf(m->price_sku[slot], sizeof m->price_sku[0], "%s", sku);
    m->price_state[slot] = per_client ? 3 : *price >= 0 ? 2 : 1;
    m->price[slot] = *price;
    return PH_OK;
}

/* store_batch_cost with the memo m (the check keeps its own: the writer's
 * memo belongs to the writer thread); *booked (may be NULL) 1 for a
 * replenishment's batch, whose cost its purchase booked already. */
static int batch_cost_of(ph_store *s, MDB_txn *txn, ph_memo *m, uint64_t batch_id, int64_t *cost,
                         const char **supplier, int *booked, ph_err *err)
{
    unsigned slot = (unsigned)(batch_id % PH_MEMO_COSTS);
    if (m->cost_batch[slot] != batch_id) {
        MDB_val k = {8, &batch_id}, v;
        ph_batch b;
        int mrc = mdb_get(txn, s->dbi[DB_BATCHES], &k, &v);
        if (mrc)
            return ph_store_lmdb_err(err, mrc, "read batch");
        if (ph_batch_decode(&v, batch_id, &b, NULL))
            return ph_err_set(err, PH_EIO, "batch %llu: malformed record",
                              (unsigned long long)batch_id);
        json_t *j = json_loadb(v.mv_data, v.mv_size, 0, NULL);
        m->cost_booked[slot] = json_object_get(j, "replenishment_order") != NULL;
        json_decref(j);
        m->cost_batch[slot] = batch_id;
        m->cost[slot] = b.unit_cost;
        snprintf(m->cost_supplier[slot], sizeof m->cost_supplier[0], "%s", b.supplier);
    }
    *cost = m->cost[slot];
    *supplier = m->cost_supplier[slot];
    if (booked)
        *booked = m->cost_booked[slot];
    return PH_OK;
}

static int batch_cost(ph_store *s, MDB_txn *txn, ph_memo *m, uint64_t batch_id, int64_t *cost,
                      const char **supplier, ph_err *err)
{
    return batch_cost_of(s, txn, m, batch_id, cost, supplier, NULL, err);
}

int store_batch_cost(ph_wtxn *w, uint64_t batch_id, int64_t *cost, const char **supplier,
                     ph_err *err)
{
    return batch_cost(w->s, w->txn, &w->s->memo, batch_id, cost, supplier, err);
}

/* ---- what an order's facts are ---------------------------------------------------- */

/* The facts order o carries at unit price `price` (-1 none), and the state
 * and supplier it is counted under. Local orders need o->codes. */
static int order_facts(ph_store *s, MDB_txn *txn, ph_memo *memo, const ph_order *o, int64_t price,
                       facts *f, int *counted, char counted_supplier[PH_SKU_MAX + 1], ph_err *err)
{
    int succeeded = o->state == PH_ORDER_SUCCEEDED;
    counted_supplier[0] = 0;
    /* a bundle's parent carries no money and is not counted: its components
     * are booked and counted as the orders they are (issue 16) */
    if (o->delivery == PH_DELIVERY_BUNDLE) {
        *counted = 0;
        return PH_OK;
    }
    *counted =
        (succeeded || o->state == PH_ORDER_FAILED || o->state == PH_ORDER_UNKNOWN) ? o->state : 0;
    if (ph_order_via_supplier(o)) {
        const ph_attempt *won = NULL;
        for (size_t i = 0; i < o->nattempts; i++) {
            const ph_attempt *a = &o->attempts[i];
            if (a->state != PH_ATTEMPT_SUCCEEDED)
                continue;
            int64_t c = ph_attempt_cost(a, o->quantity);
            if (facts_add(f, SIDE_COST, a->no, a->supplier, c, o->quantity))
                return ph_err_set(err, PH_ENOMEM, "out of memory");
            won = a;
        }
        if (o->nattempts)
            snprintf(counted_supplier, PH_SKU_MAX + 1, "%s",
                     o->attempts[o->nattempts - 1].supplier);
        if (succeeded && price >= 0 && won &&
            facts_add(f, SIDE_REVENUE, 0, won->supplier, price * (int64_t)o->quantity, o->quantity))
            return ph_err_set(err, PH_ENOMEM, "out of memory");
        return PH_OK;
    }
    /* a grant's reserved codes are still ours: booked when it is claimed */
    if (o->state == PH_ORDER_GRANTED)
        return PH_OK;
    for (size_t i = 0; i < o->ncodes; i++) {
        int64_t c;
        const char *sup;
        int booked;
        int rc = batch_cost_of(s, txn, memo, o->codes[i].batch_id, &c, &sup, &booked, err);
        if (rc)
            return rc;
        if (i == 0)
            snprintf(counted_supplier, PH_SKU_MAX + 1, "%s", sup);
        /* a replenished code's cost left with its purchase: booked once, there */
        if ((!booked && facts_add(f, SIDE_COST, 0, sup, c, 1)) ||
            (succeeded && price >= 0 && facts_add(f, SIDE_REVENUE, 0, sup, price, 1)))
            return ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    return PH_OK;
}

/* ---- daily aggregates ------------------------------------------------------------- */

/* Aggregate value (DB_REPORT_DAYS). */
typedef struct agg_rec {
    int64_t revenue, cost;
    uint64_t succeeded, failed, unknown, unpriced;
} agg_rec;

/* be32(day + 2^31) supplier NUL client NUL sku; buf >= 4 + 3 * (PH_SKU_MAX + 1). */
static size_t agg_key(int32_t day, const char *supplier, const char *client, const char *sku,
                      uint8_t *buf)
{
    uint32_t d = (uint32_t)day ^ 0x80000000u;
    buf[0] = (uint8_t)(d >> 24), buf[1] = (uint8_t)(d >> 16), buf[2] = (uint8_t)(d >> 8),
    buf[3] = (uint8_t)d;
    size_t n = 4, l;
    l = strlen(supplier), memcpy(buf + n, supplier, l), n += l, buf[n++] = 0;
    l = strlen(client), memcpy(buf + n, client, l), n += l, buf[n++] = 0;
    l = strlen(sku), memcpy(buf + n, sku, l), n += l;
    return n;
}

#define AGG_KEY_MAX (4 + 3 * (PH_SKU_MAX + 1))

static int agg_zero(const agg_rec *a)
{
    return !a->revenue && !a->cost && !a->succeeded && !a->failed && !a->unknown && !a->unpriced;
}

/* Adds d to the aggregate of (day, supplier, client, sku); a row that comes
 * to all zeros is removed, so every stored row says something. */
static int agg_add(ph_wtxn *w, int32_t day, const char *supplier, const char *client,
                   const char *sku, const agg_rec *d, ph_err *err)
{
    uint8_t key[AGG_KEY_MAX];
    MDB_val k = {agg_key(day, supplier, client, sku, key), key}, v;
    agg_rec a = {0};
    int mrc = mdb_get(w->txn, w->s->dbi[DB_REPORT_DAYS], &k, &v);
    if (mrc == 0 && v.mv_size == sizeof a)
        memcpy(&a, v.mv_data, sizeof a);
    else if (mrc == 0)
        return ph_err_set(err, PH_EIO, "report_days: malformed aggregate");
    else if (mrc != MDB_NOTFOUND)
        return ph_store_lmdb_err(err, mrc, "read aggregate");
    a.revenue += d->revenue;
    a.cost += d->cost;
    a.succeeded += d->succeeded;
    a.failed += d->failed;
    a.unknown += d->unknown;
    a.unpriced += d->unpriced;
    if (agg_zero(&a))
        mrc = mrc == 0 ? mdb_del(w->txn, w->s->dbi[DB_REPORT_DAYS], &k, NULL) : 0;
    else
        mrc = mdb_put(w->txn, w->s->dbi[DB_REPORT_DAYS], &k, &(MDB_val){sizeof a, &a}, 0);
    return mrc ? ph_store_lmdb_err(err, mrc, "write aggregate") : PH_OK;
}

/* The count of one order in its state: +1 or -1 (sign). */
static void agg_count(agg_rec *a, int state, int priced, int64_t sign)
{
    if (state == PH_ORDER_SUCCEEDED) {
        a->succeeded += (uint64_t)sign;
        if (!priced)
            a->unpriced += (uint64_t)sign;
    } else if (state == PH_ORDER_FAILED) {
        a->failed += (uint64_t)sign;
    } else if (state == PH_ORDER_UNKNOWN) {
        a->unknown += (uint64_t)sign;
    }
}

/* ---- booking ----------------------------------------------------------------- */

static int append_entry(ph_wtxn *w, const ph_order *o, const fact *x, int kind, int64_t amount,
                        uint32_t quantity, int64_t at, int command, ph_err *err)
{
    size_t sl = strlen(x->supplier), cl = strlen(o->client), kl = strlen(o->sku);
    ph_ledger_rec r = {.version = 1,
                       .kind = (uint8_t)kind,
                       .command = (uint8_t)command,
                       .supplier_len = (uint8_t)sl,
                       .client_len = (uint8_t)cl,
                       .sku_len = (uint8_t)kl,
                       .attempt = x->attempt,
                       .quantity = quantity,
                       .at = at,
                       .order_id = o->id,
                       .amount = amount};
    uint64_t seq = w->ids.ledger;
    MDB_val k = {8, &seq}, v = {sizeof r + sl + cl + kl, NULL};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_LEDGER], &k, &v, MDB_APPEND | MDB_RESERVE);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "append ledger entry");
    uint8_t *p = v.mv_data;
    memcpy(p, &r, sizeof r);
    memcpy(p + sizeof r, x->supplier, sl);
    memcpy(p + sizeof r + sl, o->client, cl);
    memcpy(p + sizeof r + sl + cl, o->sku, kl);
    w->ids.ledger++;
    return PH_OK;
}

/* Books the difference of one fact: target `t` (NULL: none now) against
 * booked `b` (NULL: none yet). */
static int book_fact(ph_wtxn *w, const ph_order *o, const fact *t, const fact *b, int64_t at,
                     int command, int32_t day, int *moved, ph_err *err)
{
    const fact *x = t ? t : b;
    int64_t diff = (t ? t->amount : 0) - (b ? b->amount : 0);
    if (!diff)
        return PH_OK;
    int first = !b || !b->amount;
    int kind = x->side == SIDE_REVENUE
                   ? (first ? PH_LEDGER_SALE : PH_LEDGER_SALE_CORRECTION)
                   : (first ? PH_LEDGER_SUPPLIER_COST : PH_LEDGER_COST_CORRECTION);
    uint32_t qty = t ? t->quantity : b->quantity;
    int rc = append_entry(w, o, x, kind, diff, qty, at, command, err);
    if (rc)
        return rc;
    agg_rec d = {0};
    if (x->side == SIDE_REVENUE)
        d.revenue = diff;
    else
        d.cost = diff;
    *moved += 1;
    return agg_add(w, day, x->supplier, o->client, o->sku, &d, err);
}

static void summary_free(summary *sm)
{
    free(sm->f.v);
    sm->f.v = NULL;
    sm->f.n = sm->f.cap = 0;
}

static int book(ph_wtxn *w, const ph_order *o, int64_t at, int command, ph_err *err)
{
    summary sm = {0};
    facts target = {0};
    uint64_t id = o->id;
    MDB_val k = {8, &id}, v;
    int rc = PH_OK, fresh = 0, mrc = mdb_get(w->txn, w->s->dbi[DB_LEDGER_ORDERS], &k, &v);
    if (mrc == MDB_NOTFOUND) {
        fresh = 1;
        if ((rc = store_ledger_price(w, o, &sm.unit_price, err)) != PH_OK)
            return rc;
        sm.priced = sm.unit_price >= 0;
    } else if (mrc) {
        return ph_store_lmdb_err(err, mrc, "read ledger summary");
    } else if ((rc = sum_decode(&v, &sm)) != PH_OK) {
        summary_free(&sm);
        return rc == PH_ENOMEM ? ph_err_set(err, rc, "out of memory")
                               : ph_err_set(err, PH_EIO, "order %llu: malformed ledger summary",
                                            (unsigned long long)id);
    }
    /* orders count on the day they were created, in the offset now kept (a
     * rebuild after the offset changed moves them: never the stored day) */
    sm.counted_day = ph_ledger_day(o->created_at, w->s->report_offset);
    int counted;
    char counted_sup[PH_SKU_MAX + 1];
    rc = order_facts(w->s, w->txn, &w->s->memo, o, sm.priced ? sm.unit_price : -1, &target,
                     &counted, counted_sup, err);
    int moved = 0;
    int32_t day = ph_ledger_day(at, w->s->report_offset);
    for (size_t i = 0; rc == PH_OK && i < target.n; i++) {
        const fact *t = &target.v[i];
        rc = book_fact(w, o, t, facts_find(&sm.f, t->side, t->attempt, t->supplier), at, command,
                       day, &moved, err);
    }
    for (size_t i = 0; rc == PH_OK && i < sm.f.n; i++) {
        const fact *b = &sm.f.v[i];
        if (!facts_find(&target, b->side, b->attempt, b->supplier))
            rc = book_fact(w, o, NULL, b, at, command, day, &moved, err);
    }
    int recount = counted != sm.counted || strcmp(counted_sup, sm.counted_supplier) != 0;
    if (rc == PH_OK && recount && sm.counted) {
        agg_rec d = {0};
        agg_count(&d, sm.counted, sm.priced, -1);
        rc = agg_add(w, sm.counted_day, sm.counted_supplier, o->client, o->sku, &d, err);
    }
    if (rc == PH_OK && recount && counted) {
        agg_rec d = {0};
        agg_count(&d, counted, sm.priced, 1);
        rc = agg_add(w, sm.counted_day, counted_sup, o->client, o->sku, &d, err);
    }
    if (rc == PH_OK && (fresh || moved || recount)) {
        /* the summary now holds exactly the target's non-zero facts */
        facts keep = {0};
        for (size_t i = 0; rc == PH_OK && i < target.n; i++)
            if (target.v[i].amount &&
                facts_add(&keep, target.v[i].side, target.v[i].attempt, target.v[i].supplier,
                          target.v[i].amount, target.v[i].quantity))
                rc = ph_err_set(err, PH_ENOMEM, "out of memory");
        summary_free(&sm);
        sm.f = keep;
        sm.entries += (uint32_t)moved;
        sm.counted = counted;
        snprintf(sm.counted_supplier, sizeof sm.counted_supplier, "%s", counted_sup);
        if (rc == PH_OK)
            rc = sum_put(w, id, &sm, 0, err);
    }
    summary_free(&sm);
    free(target.v);
    return rc;
}

int store_ledger_counted(ph_wtxn *w, uint64_t id, int *counted, int64_t *unit_price, ph_err *err)
{
    MDB_val k = {8, &id}, v;
    sum_rec r;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_LEDGER_ORDERS], &k, &v);
    if (mrc == MDB_NOTFOUND)
        return PH_ENOTFOUND;
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read ledger summary");
    if (v.mv_size < sizeof r)
        return ph_err_set(err, PH_EIO, "order %llu: malformed ledger summary",
                          (unsigned long long)id);
    memcpy(&r, v.mv_data, sizeof r);
    *counted = r.counted;
    *unit_price = r.priced ? r.unit_price : -1;
    return PH_OK;
}

/* A bundle's price for client: its own, else the sum of its components'. */
static int bundle_price(ph_wtxn *w, const char *sku, const char *client, int64_t *price,
                        ph_err *err)
{
    int rc = sale_price(w, sku, client, price, err);
    if (rc || *price >= 0)
        return rc;
    json_t *p = NULL;
    ph_err e2 = {0};
    if (store_get_product(w, sku, &p, &e2) != PH_OK) /* no longer stored: unpriced */
        return PH_OK;
    json_t *comps = json_object_get(p, "components"), *cj;
    size_t j;
    int64_t sum = 0;
    json_array_foreach(comps, j, cj)
    {
        const char *cs = json_string_value(json_object_get(cj, "sku"));
        json_int_t q = json_integer_value(json_object_get(cj, "quantity"));
        int64_t each = -1;
        if (!cs || q < 1 || (rc = sale_price(w, cs, client, &each, err)) != PH_OK || each < 0 ||
            __builtin_mul_overflow(each, (int64_t)q, &each) ||
            __builtin_add_overflow(sum, each, &sum)) {
            sum = -1;
            break;
        }
    }
    *price = json_array_size(comps) ? sum : -1;
    json_decref(p);
    return rc;
}

int store_ledger_price(ph_wtxn *w, const ph_order *o, int64_t *price, ph_err *err)
{
    /* a replenishment buys stock: a supplier cost, never a sale */
    if (ph_order_is_replenish(o)) {
        *price = -1;
        return PH_OK;
    }
    if (o->delivery == PH_DELIVERY_BUNDLE)
        return bundle_price(w, o->sku, o->client, price, err);
    return sale_price(w, o->sku, o->client, price, err);
}

int store_ledger_book(ph_wtxn *w, const ph_order *o, ph_err *err)
{
    const ph_cmd *c = w->cmd;
    return book(w, o, c ? c->now : o->updated_at, c ? c->type : 0, err);
}

/* ---- at open ------------------------------------------------------------------- */

int ph_ledger_migrate(ph_store *s, MDB_txn *txn, ph_err *err)
{
    ph_wtxn w = {.s = s, .txn = txn};
    w.ids.ledger = ph_store_last_key(txn, s->dbi[DB_LEDGER]) + 1;
    uint64_t last = ph_store_last_key(txn, s->dbi[DB_ORDERS]);
    int rc = PH_OK;
    for (uint64_t id = 1; rc == PH_OK && id <= last; id++) {
        ph_order *o = NULL;
        rc = ph_order_load(s, txn, id, 1, &o, err);
        if (rc == PH_ENOTFOUND) {
            rc = PH_OK;
            continue;
        }
        if (rc == PH_OK)
            rc = store_ledger_book(&w, o, err);
        ph_order_free(o);
    }
    memset(&s->memo, 0, sizeof s->memo);
    uint32_t ver = PH_SCHEMA_VERSION;
    MDB_val k = {6, "schema"}, v = {sizeof ver, &ver};
    int mrc = rc ? 0 : mdb_put(txn, s->dbi[DB_META], &k, &v, 0);
    if (mrc)
        rc = ph_store_lmdb_err(err, mrc, "write meta");
    return rc;
}

/* ---- recomputing the aggregates (the rebuild and the check) -------------------------- */

typedef struct agg_slot {
    uint8_t *key; /* NULL: empty */
    size_t len;
    agg_rec a;
    int seen;
} agg_slot;

typedef struct agg_map {
    agg_slot *v;
    size_t cap, n;
} agg_map;

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static agg_slot *map_get(agg_map *m, const uint8_t *key, size_t len)
{
    if (2 * (m->n + 1) > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        agg_slot *g = calloc(cap, sizeof *g);
        if (!g)
            return NULL;
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->v[i].key)
                continue;
            size_t j = hash_bytes(m->v[i].key, m->v[i].len) & (cap - 1);
            while (g[j].key)
                j = (j + 1) & (cap - 1);
            g[j] = m->v[i];
        }
        free(m->v);
        m->v = g;
        m->cap = cap;
    }
    size_t j = hash_bytes(key, len) & (m->cap - 1);
    while (m->v[j].key && (m->v[j].len != len || memcmp(m->v[j].key, key, len)))
        j = (j + 1) & (m->cap - 1);
    if (!m->v[j].key) {
        if (!(m->v[j].key = malloc(len)))
            return NULL;
        memcpy(m->v[j].key, key, len);
        m->v[j].len = len;
        m->n++;
    }
    return &m->v[j];
}

static void map_free(agg_map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->v[i].key);
    free(m->v);
}

int ph_ledger_decode(const MDB_val *k, const MDB_val *v, ph_ledger_entry *out)
{
    ph_ledger_rec r;
    if (k->mv_size != 8 || v->mv_size < sizeof r)
        return PH_EIO;
    memcpy(&r, v->mv_data, sizeof r);
    if (r.version != 1 || r.kind < 1 || r.kind > 4 || r.supplier_len > PH_SKU_MAX ||
        r.client_len > PH_SKU_MAX || r.sku_len > PH_SKU_MAX ||
        v->mv_size != sizeof r + r.supplier_len + r.client_len + r.sku_len)
        return PH_EIO;
    const char *p = (const char *)v->mv_data + sizeof r;
    memset(out, 0, sizeof *out);
    memcpy(&out->seq, k->mv_data, 8);
    out->at = r.at;
    out->order_id = r.order_id;
    out->attempt = r.attempt;
    out->kind = r.kind;
    out->command = r.command;
    out->quantity = r.quantity;
    out->amount = r.amount;
    memcpy(out->supplier, p, r.supplier_len);
    memcpy(out->client, p + r.supplier_len, r.client_len);
    memcpy(out->sku, p + r.supplier_len + r.client_len, r.sku_len);
    return PH_OK;
}

/* Per order, what its entries add up to (the check). */
typedef struct order_sums {
    int64_t revenue, cost;
    uint32_t entries;
} order_sums;

/* The aggregates as the entries and summaries say they should be, into m;
 * sums (may be NULL) gets each order's entry totals, indexed by order id
 * (nsums slots). */
static int aggs_compute(ph_store *s, MDB_txn *txn, int offset, agg_map *m, order_sums *sums,
                        uint64_t nsums, ph_err *err)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = PH_OK, mrc = mdb_cursor_open(txn, s->dbi[DB_LEDGER], &cur);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "open ledger");
    for (int op = MDB_FIRST; rc == PH_OK && (mrc = mdb_cursor_get(cur, &k, &v, op)) == 0;
         op = MDB_NEXT) {
        ph_ledger_entry e;
        uint8_t key[AGG_KEY_MAX];
        if (ph_ledger_decode(&k, &v, &e)) {
            uint64_t seq = 0;
            if (k.mv_size == 8)
                memcpy(&seq, k.mv_data, 8);
            rc = ph_err_set(err, PH_EIO, "ledger %llu: malformed entry", (unsigned long long)seq);
            break;
        }
        agg_slot *a =
            map_get(m, key, agg_key(ph_ledger_day(e.at, offset), e.supplier, e.client, e.sku, key));
        if (!a) {
            rc = ph_err_set(err, PH_ENOMEM, "out of memory");
            break;
        }
        if (ph_ledger_kind_revenue(e.kind))
            a->a.revenue += e.amount;
        else
            a->a.cost += e.amount;
        if (sums && (e.order_id == 0 || e.order_id >= nsums)) {
            rc = ph_err_set(err, PH_EIO, "ledger %llu: names order %llu, which does not exist",
                            (unsigned long long)e.seq, (unsigned long long)e.order_id);
        } else if (sums) {
            order_sums *os = &sums[e.order_id];
            if (ph_ledger_kind_revenue(e.kind))
                os->revenue += e.amount;
            else
                os->cost += e.amount;
            os->entries++;
        }
    }
    mdb_cursor_close(cur);
    if (rc == PH_OK && mrc != MDB_NOTFOUND)
        return ph_store_lmdb_err(err, mrc, "read ledger");
    if (rc)
        return rc;
    if ((mrc = mdb_cursor_open(txn, s->dbi[DB_LEDGER_ORDERS], &cur)) != 0)
        return ph_store_lmdb_err(err, mrc, "open ledger_orders");
    for (int op = MDB_FIRST; rc == PH_OK && (mrc = mdb_cursor_get(cur, &k, &v, op)) == 0;
         op = MDB_NEXT) {
        uint64_t id;
        summary sm;
        memcpy(&id, k.mv_data, 8);
        if (k.mv_size != 8 || sum_decode(&v, &sm)) {
            summary_free(&sm);
            rc = ph_err_set(err, PH_EIO, "ledger_orders %llu: malformed summary",
                            (unsigned long long)id);
            break;
        }
        summary_free(&sm);
        if (!sm.counted)
            continue;
        MDB_val ok = {8, &id}, ov;
        ph_order o;
        if (mdb_get(txn, s->dbi[DB_ORDERS], &ok, &ov) || ph_order_decode(&ov, id, &o, NULL)) {
            rc = ph_err_set(err, PH_EIO, "ledger_orders %llu: no such order",
                            (unsigned long long)id);
            break;
        }
        uint8_t key[AGG_KEY_MAX];
        agg_slot *a = map_get(m, key,
                              agg_key(ph_ledger_day(o.created_at, offset), sm.counted_supplier,
                                      o.client, o.sku, key));
        if (!a)
            rc = ph_err_set(err, PH_ENOMEM, "out of memory");
        else
            agg_count(&a->a, sm.counted, sm.priced, 1);
    }
    mdb_cursor_close(cur);
    if (rc == PH_OK && mrc != MDB_NOTFOUND)
        rc = ph_store_lmdb_err(err, mrc, "read ledger_orders");
    return rc;
}

static int cmp_slot(const void *a, const void *b)
{
    const agg_slot *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Drops the aggregates and writes them again from the ledger at `offset`. */
static int aggs_rebuild(ph_store *s, MDB_txn *txn, int offset, ph_err *err)
{
    agg_map m = {0};
    int rc = aggs_compute(s, txn, offset, &m, NULL, 0, err);
    int mrc = rc ? 0 : mdb_drop(txn, s->dbi[DB_REPORT_DAYS], 0);
    agg_slot *rows = rc || mrc ? NULL : malloc((m.n ? m.n : 1) * sizeof *rows);
    if (rc == PH_OK && !mrc && !rows)
        rc = ph_err_set(err, PH_ENOMEM, "out of memory");
    if (rows) {
        size_t n = 0;
        for (size_t i = 0; i < m.cap; i++)
            if (m.v[i].key && !agg_zero(&m.v[i].a))
                rows[n++] = m.v[i]; /* keys still owned by the map */
        qsort(rows, n, sizeof *rows, cmp_slot);
        for (size_t i = 0; !mrc && i < n; i++)
            mrc = mdb_put(txn, s->dbi[DB_REPORT_DAYS], &(MDB_val){rows[i].len, rows[i].key},
                          &(MDB_val){sizeof rows[i].a, &rows[i].a}, MDB_APPEND);
        free(rows);
    }
    map_free(&m);
    if (rc == PH_OK && mrc)
        rc = ph_store_lmdb_err(err, mrc, "rebuild report_days");
    return rc;
}

int ph_ledger_open(ph_store *s, MDB_txn *txn, const ph_store_opts *opts, ph_err *err)
{
    MDB_val k = {13, "report_offset"}, v;
    int32_t stored = PH_REPORT_OFFSET_DEFAULT, want;
    int mrc = mdb_get(txn, s->dbi[DB_META], &k, &v), have = mrc == 0 && v.mv_size == 4;
    if (mrc && mrc != MDB_NOTFOUND)
        return ph_store_lmdb_err(err, mrc, "read meta");
    if (have)
        memcpy(&stored, v.mv_data, 4);
    want = opts->report_offset_given ? opts->report_utc_offset_min : stored;
    if (want < -720 || want > 840)
        return ph_err_set(err, PH_EINVAL,
                          "store: report offset %d minutes is outside -12:00..+14:00", (int)want);
    s->report_offset = s->read_only ? stored : want;
    if (s->read_only || (have && want == stored))
        return PH_OK;
    int rc = have ? aggs_rebuild(s, txn, want, err) : PH_OK;
    if (rc)
        return rc;
    v = (MDB_val){4, &want};
    mrc = mdb_put(txn, s->dbi[DB_META], &k, &v, 0);
    return mrc ? ph_store_lmdb_err(err, mrc, "write meta") : PH_OK;
}

int ph_store_report_offset(ph_store *s)
{
    return s->report_offset;
}

/* ---- the check ------------------------------------------------------------------ */

static const char *side_name(int side)
{
    return side == SIDE_REVENUE ? "sale" : "supplier cost";
}

/* One order's summary against what the order says (its facts) and what its
 * entries add up to. */
static int check_order(ph_store *s, MDB_txn *txn, ph_memo *memo, const ph_order *o,
                       const order_sums *os, ph_err *err)
{
    uint64_t id = o->id;
    MDB_val k = {8, &id}, v;
    summary sm;
    if (mdb_get(txn, s->dbi[DB_LEDGER_ORDERS], &k, &v))
        return ph_err_set(err, PH_EIO, "ledger: order %llu has no ledger summary",
                          (unsigned long long)id);
    if (sum_decode(&v, &sm)) {
        summary_free(&sm);
        return ph_err_set(err, PH_EIO, "ledger_orders %llu: malformed summary",
                          (unsigned long long)id);
    }
    facts target = {0};
    int counted;
    char sup[PH_SKU_MAX + 1];
    int rc =
        order_facts(s, txn, memo, o, sm.priced ? sm.unit_price : -1, &target, &counted, sup, err);
    int64_t booked[3] = {0};
    for (size_t i = 0; rc == PH_OK && i < target.n; i++) {
        const fact *t = &target.v[i];
        const fact *b = facts_find(&sm.f, t->side, t->attempt, t->supplier);
        if ((b ? b->amount : 0) != t->amount)
            rc = ph_err_set(err, PH_EIO,
                            "ledger: order %llu: %s of attempt %u (%s) booked %lld fen, the order "
                            "says %lld",
                            (unsigned long long)id, side_name(t->side), t->attempt, t->supplier,
                            (long long)(b ? b->amount : 0), (long long)t->amount);
    }
    for (size_t i = 0; rc == PH_OK && i < sm.f.n; i++) {
        const fact *b = &sm.f.v[i];
        booked[b->side] += b->amount;
        if (b->amount && !facts_find(&target, b->side, b->attempt, b->supplier))
            rc = ph_err_set(err, PH_EIO,
                            "ledger: order %llu: %s of attempt %u (%s) booked %lld fen, the order "
                            "has none",
                            (unsigned long long)id, side_name(b->side), b->attempt, b->supplier,
                            (long long)b->amount);
    }
    if (rc == PH_OK && (booked[SIDE_REVENUE] != os->revenue || booked[SIDE_COST] != os->cost ||
                        sm.entries != os->entries))
        rc = ph_err_set(err, PH_EIO,
                        "ledger: order %llu: summary says sale %lld, cost %lld in %u entries; its "
                        "entries add up to sale %lld, cost %lld in %u",
                        (unsigned long long)id, (long long)booked[SIDE_REVENUE],
                        (long long)booked[SIDE_COST], sm.entries, (long long)os->revenue,
                        (long long)os->cost, os->entries);
    if (rc == PH_OK && (counted != sm.counted || strcmp(sup, sm.counted_supplier)))
        rc = ph_err_set(err, PH_EIO, "ledger: order %llu: counted as %s, the order is %s",
                        (unsigned long long)id,
                        sm.counted ? ph_order_state_name(sm.counted) : "nothing",
                        ph_order_state_name(o->state));
    summary_free(&sm);
    free(target.v);
    return rc;
}

int ph_ledger_check(ph_store *s, MDB_txn *txn, ph_err *err)
{
    uint64_t last = ph_store_last_key(txn, s->dbi[DB_ORDERS]);
    order_sums *sums = calloc(last + 1, sizeof *sums);
    ph_memo *memo = calloc(1, sizeof *memo);
    agg_map m = {0};
    if (!sums || !memo) {
        free(sums);
        free(memo);
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    int rc = aggs_compute(s, txn, s->report_offset, &m, sums, last + 1, err);
    /* every order against its summary and entries */
    for (uint64_t id = 1; rc == PH_OK && id <= last; id++) {
        ph_order *o = NULL;
        rc = ph_order_load(s, txn, id, 1, &o, err);
        if (rc == PH_ENOTFOUND) {
            rc = sums[id].entries ? ph_err_set(err, PH_EIO,
                                               "ledger: entries name order %llu, which does "
                                               "not exist",
                                               (unsigned long long)id)
                                  : PH_OK;
            continue;
        }
        if (rc == PH_OK)
            rc = check_order(s, txn, memo, o, &sums[id], err);
        ph_order_free(o);
    }
    /* the stored aggregates against the recomputed ones, both ways */
    MDB_cursor *cur;
    MDB_val k, v;
    int mrc = rc ? 0 : mdb_cursor_open(txn, s->dbi[DB_REPORT_DAYS], &cur);
    if (mrc)
        rc = ph_store_lmdb_err(err, mrc, "open report_days");
    if (rc == PH_OK) {
        for (int op = MDB_FIRST; rc == PH_OK && (mrc = mdb_cursor_get(cur, &k, &v, op)) == 0;
             op = MDB_NEXT) {
            agg_slot *a = map_get(&m, k.mv_data, k.mv_size);
            agg_rec st;
            if (!a) {
                rc = ph_err_set(err, PH_ENOMEM, "out of memory");
                break;
            }
            a->seen = 1;
            if (v.mv_size != sizeof st || k.mv_size < 4) {
                rc = ph_err_set(err, PH_EIO, "report_days: malformed aggregate");
                break;
            }
            memcpy(&st, v.mv_data, sizeof st);
            if (memcmp(&st, &a->a, sizeof st)) {
                const uint8_t *kb = k.mv_data;
                int32_t day = (int32_t)(((uint32_t)kb[0] << 24 | (uint32_t)kb[1] << 16 |
                                         (uint32_t)kb[2] << 8 | kb[3]) ^
                                        0x80000000u);
                char when[32];
                ph_time_format((int64_t)day * 86400000, when, sizeof when);
                when[10] = 0;
                rc = ph_err_set(err, PH_EIO,
                                "report_days: %s (%s): stored revenue %lld, cost %lld, %llu "
                                "succeeded, %llu failed, %llu unknown; the ledger says %lld, "
                                "%lld, %llu, %llu, %llu",
                                when, (const char *)kb + 4, (long long)st.revenue,
                                (long long)st.cost, (unsigned long long)st.succeeded,
                                (unsigned long long)st.failed, (unsigned long long)st.unknown,
                                (long long)a->a.revenue, (long long)a->a.cost,
                                (unsigned long long)a->a.succeeded, (unsigned long long)a->a.failed,
                                (unsigned long long)a->a.unknown);
            }
        }
        mdb_cursor_close(cur);
        if (rc == PH_OK && mrc != MDB_NOTFOUND)
            rc = ph_store_lmdb_err(err, mrc, "read report_days");
    }
    for (size_t i = 0; rc == PH_OK && i < m.cap; i++)
        if (m.v[i].key && !m.v[i].seen && !agg_zero(&m.v[i].a))
            rc = ph_err_set(err, PH_EIO,
                            "report_days: no aggregate for a day the ledger has entries or "
                            "orders on (%s)",
                            (const char *)m.v[i].key + 4);
    map_free(&m);
    free(sums);
    free(memo);
    return rc;
}

/* ---- reads --------------------------------------------------------------------- */

static int filter_pass(const ph_ledger_filter *f, const ph_ledger_entry *e)
{
    return (!f->from || e->at >= f->from) && (!f->to || e->at < f->to) &&
           (!f->supplier || !strcmp(f->supplier, e->supplier)) &&
           (!f->client || !strcmp(f->client, e->client)) && (!f->sku || !strcmp(f->sku, e->sku));
}

int ph_store_ledger_list(ph_store *s, const ph_ledger_filter *f, uint64_t after, size_t limit,
                         ph_ledger_entry **out, size_t *n, ph_err *err)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    ph_ledger_entry *list = malloc((limit ? limit : 1) * sizeof *list);
    size_t cnt = 0;
    int mrc = list ? mdb_cursor_open(txn, s->dbi[DB_LEDGER], &cur) : 0;
    if (!list)
        rc = ph_err_set(err, PH_ENOMEM, "out of memory");
    else if (mrc)
        rc = ph_store_lmdb_err(err, mrc, "open ledger");
    if (rc == PH_OK) {
        uint64_t start = after + 1;
        MDB_val k = {8, &start}, v;
        for (int op = MDB_SET_RANGE; cnt < limit && (mrc = mdb_cursor_get(cur, &k, &v, op)) == 0;
             op = MDB_NEXT) {
            if (ph_ledger_decode(&k, &v, &list[cnt])) {
                rc = ph_err_set(err, PH_EIO, "ledger: malformed entry (see --check-store)");
                break;
            }
            if (filter_pass(f, &list[cnt]))
                cnt++;
        }
        mdb_cursor_close(cur);
        if (rc == PH_OK && mrc && mrc != MDB_NOTFOUND)
            rc = ph_store_lmdb_err(err, mrc, "read ledger");
    }
    ph_store_read_end(s, txn);
    if (rc) {
        free(list);
        return rc;
    }
    *out = list;
    *n = cnt;
    return PH_OK;
}

int ph_store_ledger_order(ph_store *s, uint64_t order_id, ph_ledger_order *out, ph_err *err)
{
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    MDB_val k = {8, &order_id}, v;
    summary sm = {0};
    int mrc = mdb_get(txn, s->dbi[DB_LEDGER_ORDERS], &k, &v);
    if (mrc == MDB_NOTFOUND)
        rc = ph_err_set(err, PH_ENOTFOUND, "order %llu: nothing booked",
                        (unsigned long long)order_id);
    else if (mrc)
        rc = ph_store_lmdb_err(err, mrc, "read ledger summary");
    else if (sum_decode(&v, &sm))
        rc = ph_err_set(err, PH_EIO, "ledger_orders %llu: malformed summary",
                        (unsigned long long)order_id);
    ph_store_read_end(s, txn);
    if (rc == PH_OK) {
        memset(out, 0, sizeof *out);
        for (size_t i = 0; i < sm.f.n; i++)
            *(sm.f.v[i].side == SIDE_REVENUE ? &out->revenue : &out->cost) += sm.f.v[i].amount;
        out->unit_price = sm.priced ? sm.unit_price : -1;
        out->entries = sm.entries;
    }
    summary_free(&sm);
    return rc;
}

int32_t ph_report_day_parse(const char *t)
{
    char buf[32];
    int64_t ms;
    if (!t || strlen(t) != 10 || t[4] != '-' || t[7] != '-')
        return -1;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (t[i] < '0' || t[i] > '9'))
            return -1;
    snprintf(buf, sizeof buf, "%sT00:00:00Z", t);
    if (ph_time_parse(buf, strlen(buf), &ms) != PH_OK || ms < 0)
        return -1;
    /* ph_time_parse normalises nothing: format it back to refuse 2026-02-30 */
    char back[32];
    ph_time_format(ms, back, sizeof back);
    if (strncmp(back, t, 10) != 0)
        return -1;
    return (int32_t)(ms / 86400000);
}

#define HSLOTS 8192 /* groups of one report: at most half of it (suppliers, clients, skus) */

/* The grouped key's text of a row (its day for PH_REPORT_BY_DAY). */
static const char *row_key(const ph_report_row *x, int by)
{
    return by == PH_REPORT_BY_DAY        ? x->day
           : by == PH_REPORT_BY_SUPPLIER ? x->supplier
           : by == PH_REPORT_BY_CLIENT   ? x->client
                                         : x->sku;
}

/* Rows in their key's order. */
static int cmp_row(const void *a, const void *b)
{
    const ph_report_row *x = a, *y = b;
    int c = strcmp(x->day, y->day);
    if (!c)
        c = strcmp(x->supplier, y->supplier);
    if (!c)
        c = strcmp(x->client, y->client);
    return c ? c : strcmp(x->sku, y->sku);
}

int ph_store_report(ph_store *s, int32_t from_day, int32_t to_day, int by, ph_report_row **rows,
                    size_t *n, ph_err *err)
{
    if (by < PH_REPORT_BY_DAY || by > PH_REPORT_BY_SKU)
        return ph_err_set(err, PH_EINVAL, "by: expected supplier, client, sku or day");
    if (from_day > to_day)
        return ph_err_set(err, PH_EINVAL, "from: after to");
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    size_t cnt = 0, cap = 0;
    ph_report_row *list = NULL;
    int mrc = mdb_cursor_open(txn, s->dbi[DB_REPORT_DAYS], &cur);
    if (mrc) {
        cur = NULL;
        rc = ph_store_lmdb_err(err, mrc, "open report_days");
    }
    uint8_t start[4];
    uint32_t d0 = (uint32_t)from_day ^ 0x80000000u;
    start[0] = (uint8_t)(d0 >> 24), start[1] = (uint8_t)(d0 >> 16), start[2] = (uint8_t)(d0 >> 8),
    start[3] = (uint8_t)d0;
    MDB_val k = {4, start}, v;
    int32_t last_day = 0;
    uint32_t *hslot = by == PH_REPORT_BY_DAY ? NULL : calloc(HSLOTS, sizeof *hslot);
    if (by != PH_REPORT_BY_DAY && !hslot && rc == PH_OK)
        rc = ph_err_set(err, PH_ENOMEM, "out of memory");
    for (int op = MDB_SET_RANGE; rc == PH_OK && (mrc = mdb_cursor_get(cur, &k, &v, op)) == 0;
         op = MDB_NEXT) {
        const uint8_t *kb = k.mv_data;
        agg_rec a;
        if (k.mv_size < 6 || v.mv_size != sizeof a) {
            rc = ph_err_set(err, PH_EIO, "report_days: malformed aggregate (see --check-store)");
            break;
        }
        int32_t day = (int32_t)(((uint32_t)kb[0] << 24 | (uint32_t)kb[1] << 16 |
                                 (uint32_t)kb[2] << 8 | kb[3]) ^
                                0x80000000u);
        if (day > to_day)
            break;
        memcpy(&a, v.mv_data, sizeof a);
        const char *sup = (const char *)kb + 4;
        size_t sl = strnlen(sup, k.mv_size - 4);
        const char *cl = sup + sl + 1;
        size_t cll = sl + 1 < k.mv_size - 4 ? strnlen(cl, k.mv_size - 4 - sl - 1) : 0;
        const char *sk = cl + cll + 1;
        size_t skl = sl + cll + 2 <= k.mv_size - 4 ? k.mv_size - 4 - sl - cll - 2 : 0;
        if (sl > PH_SKU_MAX || cll > PH_SKU_MAX || skl > PH_SKU_MAX) {
            rc = ph_err_set(err, PH_EIO, "report_days: malformed key (see --check-store)");
            break;
        }
        /* the row this aggregate folds into: by day, the last one (days
         * ascend); otherwise its key's slot in a small hash of the groups */
        const char *gk = by == PH_REPORT_BY_SUPPLIER ? sup : by == PH_REPORT_BY_CLIENT ? cl : sk;
        size_t gl = by == PH_REPORT_BY_SUPPLIER ? sl : by == PH_REPORT_BY_CLIENT ? cll : skl;
        ph_report_row *into = NULL;
        size_t slot = 0;
        if (by == PH_REPORT_BY_DAY) {
            if (cnt && day == last_day)
                into = &list[cnt - 1];
        } else {
            slot = hash_bytes((const uint8_t *)gk, gl) & (HSLOTS - 1);
            while (hslot[slot]) {
                ph_report_row *g = &list[hslot[slot] - 1];
                const char *gs = row_key(g, by);
                if (strlen(gs) == gl && !memcmp(gs, gk, gl)) {
                    into = g;
                    break;
                }
                slot = (slot + 1) & (HSLOTS - 1);
            }
        }
        if (!into) {
            if (cnt == cap) {
                size_t nc = cap ? cap * 2 : 64;
                ph_report_row *g = realloc(list, nc * sizeof *g);
                if (!g) {
                    rc = ph_err_set(err, PH_ENOMEM, "out of memory");
                    break;
                }
                list = g;
                cap = nc;
            }
            if (by != PH_REPORT_BY_DAY && cnt >= HSLOTS / 2) {
                rc = ph_err_set(err, PH_ELIMIT, "by: more than %d groups", HSLOTS / 2);
                break;
            }
            into = &list[cnt++];
            memset(into, 0, sizeof *into);
            if (by == PH_REPORT_BY_DAY) {
                char when[32];
                ph_time_format((int64_t)day * 86400000, when, sizeof when);
                memcpy(into->day, when, 10);
                last_day = day;
            } else {
                memcpy((char *)row_key(into, by), gk, gl);
                hslot[slot] = (uint32_t)cnt;
            }
        }
        into->revenue += a.revenue;
        into->cost += a.cost;
        into->succeeded += a.succeeded;
        into->failed += a.failed;
        into->unknown += a.unknown;
        into->unpriced += a.unpriced;
    }
    if (rc == PH_OK && mrc && mrc != MDB_NOTFOUND)
        rc = ph_store_lmdb_err(err, mrc, "read report_days");
    if (cur)
        mdb_cursor_close(cur);
    ph_store_read_end(s, txn);
    free(hslot);
    if (rc) {
        free(list);
        return rc;
    }
    if (by != PH_REPORT_BY_DAY && cnt > 1)
        qsort(list, cnt, sizeof *list, cmp_row);
    *rows = list;
    *n = cnt;
    return PH_OK;
}
