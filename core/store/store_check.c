/*
 * store_check.c — counting codes by state, and checking every invariant the
 * rest of the store promises (docs/store.md, "Invariants"). The crash tests
 * run this after every kill -9; `perkhubd --check-store` runs it by hand.
 *
 * One read snapshot, linear scans only: a million codes take well under a
 * second and never block the writer.
 */
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "config/config.h"

/* What a scan needs to know per batch. Batch ids are dense and ascending. */
typedef struct batch_ref {
    uint64_t id, first, count;
    size_t sku;                       /* index into stats->skus */
    uint64_t order_id;                /* a supplier's delivery for this order; 0 = imported */
    char rule[PH_LOOKALIKES_MAX + 1]; /* the look-alike rule its codes were hashed with */
} batch_ref;

typedef struct scan {
    ph_store *s;
    MDB_txn *txn;
    ph_store_stats *st;
    batch_ref *batches;
    size_t nbatches;
    uint64_t issued_to_orders; /* codes whose record names an order */
    uint64_t supply_orders;    /* orders fulfilled by a supplier */
    uint64_t open_orders;      /* of those, with an attempt not final */
    int full;                  /* checking invariants, not just counting */
    int64_t now;               /* counting: available codes due at now count as expired */
    ph_err *err;
} scan;

static size_t sku_index(ph_store_stats *st, const char *sku)
{
    for (size_t i = 0; i < st->nskus; i++)
        if (strcmp(st->skus[i].sku, sku) == 0)
            return i;
    if (st->nskus % 16 == 0) {
        ph_sku_stats *g = realloc(st->skus, (st->nskus + 16) * sizeof *g);
        if (!g)
            return (size_t)-1;
        st->skus = g;
    }
    ph_sku_stats *n = &st->skus[st->nskus];
    memset(n, 0, sizeof *n);
    snprintf(n->sku, sizeof n->sku, "%s", sku);
    return st->nskus++;
}

static int rule_listed(scan *sc, const char *rule)
{
    char key[5 + PH_LOOKALIKES_MAX + 1];
    MDB_val k = {(size_t)snprintf(key, sizeof key, "rule:%s", rule), key}, v;
    return mdb_get(sc->txn, sc->s->dbi[DB_META], &k, &v) == 0;
}

static int load_batches(scan *sc)
{
    MDB_cursor *c;
    MDB_val k, v;
    MDB_stat ms;
    mdb_stat(sc->txn, sc->s->dbi[DB_BATCHES], &ms);
    sc->batches = calloc(ms.ms_entries + 1, sizeof *sc->batches);
    if (!sc->batches || mdb_cursor_open(sc->txn, sc->s->dbi[DB_BATCHES], &c))
        return ph_err_set(sc->err, PH_ENOMEM, "out of memory");
    int rc = PH_OK;
    for (int op = MDB_FIRST; sc->nbatches < ms.ms_entries && mdb_cursor_get(c, &k, &v, op) == 0;
         op = MDB_NEXT) {
        uint64_t id, order_id = 0;
        ph_batch b;
        memcpy(&id, k.mv_data, 8);
        if (ph_batch_decode(&v, id, &b, &order_id)) {
            rc =
                ph_err_set(sc->err, PH_EIO, "batch %llu: malformed record", (unsigned long long)id);
            break;
        }
        if (b.lookalikes[0] && !rule_listed(sc, b.lookalikes)) {
            rc = ph_err_set(sc->err, PH_EIO,
                            "batch %llu: its look-alike rule is not listed in meta (lookups would "
                            "not find its codes by it)",
                            (unsigned long long)id);
            break;
        }
        size_t si = sku_index(sc->st, b.sku);
        if (si == (size_t)-1) {
            rc = ph_err_set(sc->err, PH_ENOMEM, "out of memory");
            break;
        }
        sc->st->skus[si].imported += b.count;
        batch_ref *r = &sc->batches[sc->nbatches++];
        *r = (batch_ref){id, b.first_code, b.count, si, order_id, ""};
        memcpy(r->rule, b.lookalikes, sizeof r->rule);
    }
    mdb_cursor_close(c);
    return rc;
}

static const batch_ref *find_batch(const scan *sc, uint64_t id)
{
    size_t lo = 0, hi = sc->nbatches;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (sc->batches[mid].id == id)
            return &sc->batches[mid];
        if (sc->batches[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Is available code id in the stock list of its batch's SKU? */
static int in_stock(scan *sc, const batch_ref *b, uint64_t id)
{
    const char *sku = sc->st->skus[b->sku].sku;
    MDB_val k = {strlen(sku), (void *)sku}, v = {8, &id};
    MDB_cursor *c;
    if (mdb_cursor_open(sc->txn, sc->s->dbi[DB_AVAIL], &c))
        return 0;
    int found = mdb_cursor_get(c, &k, &v, MDB_GET_BOTH) == 0;
    mdb_cursor_close(c);
    return found;
}

/* An available code that expires is in the expiry index under its SKU and
 * time (else the sweep would never retire it); an expired code had an expiry
 * that had passed when it was retired. */
static int check_code_expiry(scan *sc, const batch_ref *b, uint64_t id, const ph_code *code)
{
    const char *sku = sc->st->skus[b->sku].sku;
    if (code->state == PH_CODE_EXPIRED &&
        (!code->expires_at || code->expires_at > code->changed_at))
        return ph_err_set(sc->err, PH_EIO, "code %llu: expired but its expiry had not passed",
                          (unsigned long long)id);
    if (code->state != PH_CODE_AVAILABLE || !code->expires_at)
        return PH_OK;
    int found = ph_expiry_has(sc->txn, sc->s->dbi[DB_EXPIRY], sku, id, code->expires_at);
    return found ? PH_OK
                 : ph_err_set(sc->err, PH_EIO,
                              "code %llu: available and expiring but not in the expiry index of %s",
                              (unsigned long long)id, sku);
}

/* With keys: the code unseals and the index finds it by the hash of its
 * normalized form (with the count check in check_orders: the index holds
 * exactly these hashes). */
static int check_indexed(scan *sc, uint64_t id, const MDB_val *v, const batch_ref *b)
{
    ph_code_rec r;
    char code[PH_CODE_MAX + 1], card[PH_CODE_MAX + 1];
    uint8_t hash[32];
    uint64_t found = 0;
    memcpy(&r, v->mv_data, sizeof r);
    int rc = ph_code_unseal(sc->s->keys, (const uint8_t *)v->mv_data + sizeof r, r.sealed_len, code,
                            card);
    if (rc == PH_OK)
        rc = ph_code_hash(sc->s->keys, code, strlen(code), b->rule, hash);
    ph_wipe(code, sizeof code);
    ph_wipe(card, sizeof card);
    if (rc)
        return ph_err_set(
            sc->err, PH_EIO, "code %llu: does not unseal with key %u of the key file",
            (unsigned long long)id,
            (unsigned)ph_sealed_key_id((const uint8_t *)v->mv_data + sizeof r, r.sealed_len));
    MDB_val k = {32, hash}, hv;
    if (mdb_get(sc->txn, sc->s->dbi[DB_CODE_HASH], &k, &hv) == 0 && hv.mv_size == 8)
        memcpy(&found, hv.mv_data, 8);
    if (found != id)
        return ph_err_set(sc->err, PH_EIO,
                          "code %llu: the code index does not find it by its normalized form",
                          (unsigned long long)id);
    return PH_OK;
}

static int scan_codes(scan *sc)
{
    MDB_cursor *c;
    MDB_val k, v;
    if (mdb_cursor_open(sc->txn, sc->s->dbi[DB_CODES], &c))
        return ph_err_set(sc->err, PH_EIO, "store: cannot open codes");
    int rc = PH_OK;
    for (int op = MDB_FIRST; rc == PH_OK && mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT) {
        uint64_t id;
        ph_code code;
        memcpy(&id, k.mv_data, 8);
        const batch_ref *b;
        if (ph_code_decode(&v, id, 0, &code) || code.state < 1 || code.state > 6)
            rc = ph_err_set(sc->err, PH_EIO, "code %llu: malformed record or state",
                            (unsigned long long)id);
        else if (!(b = find_batch(sc, code.batch_id)) || id < b->first || id >= b->first + b->count)
            rc = ph_err_set(sc->err, PH_EIO, "code %llu: not inside its batch %llu",
                            (unsigned long long)id, (unsigned long long)code.batch_id);
        else if ((code.state == PH_CODE_ISSUED || code.state == PH_CODE_RESERVED) && !code.order_id)
            rc = ph_err_set(sc->err, PH_EIO, "code %llu: %s but names no order",
                            (unsigned long long)id, ph_code_state_name(code.state));
        else if (code.state == PH_CODE_AVAILABLE && code.order_id)
            rc = ph_err_set(sc->err, PH_EIO, "code %llu: available but names order %llu",
                            (unsigned long long)id, (unsigned long long)code.order_id);
        else if (b->order_id && (code.state == PH_CODE_AVAILABLE ||
                                 code.state == PH_CODE_RESERVED || code.order_id != b->order_id))
            rc = ph_err_set(sc->err, PH_EIO,
                            "code %llu: %s for order %llu, but its batch %llu was delivered for "
                            "order %llu",
                            (unsigned long long)id, ph_code_state_name(code.state),
                            (unsigned long long)code.order_id, (unsigned long long)b->id,
                            (unsigned long long)b->order_id);
        else if (sc->full && code.state == PH_CODE_AVAILABLE && !in_stock(sc, b, id))
            rc = ph_err_set(sc->err, PH_EIO, "code %llu: available but not in the stock of %s",
                            (unsigned long long)id, sc->st->skus[b->sku].sku);
        else if (sc->full && (rc = check_code_expiry(sc, b, id, &code)) != PH_OK)
            break;
        else if (sc->full && sc->s->keys && (rc = check_indexed(sc, id, &v, b)) != PH_OK)
            break;
        else {
            int due = sc->now && code.state == PH_CODE_AVAILABLE && code.expires_at &&
                      code.expires_at <= sc->now;
            sc->st->skus[b->sku].by_state[due ? PH_CODE_EXPIRED : code.state]++;
            sc->st->codes++;
            sc->issued_to_orders += code.order_id != 0;
        }
    }
    mdb_cursor_close(c);
    return rc;
}

/* Every available code is in its SKU's stock list, and the list holds nothing else. */
static int check_stock(scan *sc)
{
    MDB_cursor *c;
    MDB_val k, v;
    uint64_t listed = 0, available = 0;
    int rc = PH_OK;
    if (mdb_cursor_open(sc->txn, sc->s->dbi[DB_AVAIL], &c))
        return ph_err_set(sc->err, PH_EIO, "store: cannot open stock");
    for (int op = MDB_FIRST; rc == PH_OK && mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT) {
        uint64_t id;
        memcpy(&id, v.mv_data, 8);
        MDB_val ck = {8, &id}, cv;
        ph_code code;
        const batch_ref *b;
        char sku[PH_SKU_MAX + 1];
        snprintf(sku, sizeof sku, "%.*s", (int)k.mv_size, (const char *)k.mv_data);
        if (mdb_get(sc->txn, sc->s->dbi[DB_CODES], &ck, &cv) || ph_code_decode(&cv, id, 0, &code))
            rc = ph_err_set(sc->err, PH_EIO, "stock of %s lists missing code %llu", sku,
                            (unsigned long long)id);
        else if (code.state != PH_CODE_AVAILABLE)
            rc = ph_err_set(sc->err, PH_EIO, "stock of %s lists code %llu, which is %s", sku,
                            (unsigned long long)id, ph_code_state_name(code.state));
        else if (!(b = find_batch(sc, code.batch_id)) || strcmp(sc->st->skus[b->sku].sku, sku))
            rc = ph_err_set(sc->err, PH_EIO, "stock of %s lists code %llu of another sku", sku,
                            (unsigned long long)id);
        listed++;
    }
    mdb_cursor_close(c);
    for (size_t i = 0; i < sc->st->nskus; i++)
        available += sc->st->skus[i].by_state[PH_CODE_AVAILABLE];
    if (rc == PH_OK && listed != available)
        rc = ph_err_set(sc->err, PH_EIO, "%llu codes are available but stock lists %llu",
                        (unsigned long long)available, (unsigned long long)listed);
    return rc;
}

/* Every entry of the expiry index names a code of its SKU with that expiry.
 * Entries of codes no longer available are allowed: the sweep removes them
 * when they are due (the order path does not write to the index). */
static int check_expiry_index(scan *sc)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc = PH_OK;
    if (mdb_cursor_open(sc->txn, sc->s->dbi[DB_EXPIRY], &c))
        return ph_err_set(sc->err, PH_EIO, "store: cannot open the expiry index");
    for (int op = MDB_FIRST; rc == PH_OK && mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT) {
        size_t n;
        int64_t at;
        uint64_t id;
        memcpy(&id, v.mv_data, 8);
        MDB_val ck = {8, &id}, cv;
        ph_code code;
        const batch_ref *b;
        if (ph_expiry_key_decode(&k, &n, &at))
            rc = ph_err_set(sc->err, PH_EIO, "expiry index: malformed key for code %llu",
                            (unsigned long long)id);
        else if (mdb_get(sc->txn, sc->s->dbi[DB_CODES], &ck, &cv) ||
                 ph_code_decode(&cv, id, 0, &code) || !(b = find_batch(sc, code.batch_id)))
            rc = ph_err_set(sc->err, PH_EIO, "expiry index lists missing code %llu",
                            (unsigned long long)id);
        else if (strlen(sc->st->skus[b->sku].sku) != n ||
                 memcmp(sc->st->skus[b->sku].sku, k.mv_data, n) || code.expires_at != at)
            rc = ph_err_set(sc->err, PH_EIO,
                            "expiry index lists code %llu under another sku or time than its own",
                            (unsigned long long)id);
    }
    mdb_cursor_close(c);
    return rc;
}

/* The order state its attempts imply: every attempt but the last failed (a new
 * one is made only after a definite failure) and the order follows the last. */
static int attempts_consistent(const ph_order *o, const char **why)
{
    static const int follows[] = {0,
                                  PH_ORDER_PROCESSING,
                                  PH_ORDER_PROCESSING,
                                  PH_ORDER_UNKNOWN,
                                  PH_ORDER_SUCCEEDED,
                                  PH_ORDER_FAILED};
    for (size_t i = 0; i < o->nattempts; i++) {
        const ph_attempt *a = &o->attempts[i];
        if (a->no != i + 1)
            return *why = "attempt numbers are not 1, 2, 3, ...", 0;
        if (a->state < PH_ATTEMPT_SENDING || a->state > PH_ATTEMPT_FAILED)
            return *why = "an attempt has no valid state", 0;
        if (i + 1 < o->nattempts && a->state != PH_ATTEMPT_FAILED)
            return *why = "an attempt other than the last is not failed", 0;
    }
    int expect = o->nattempts ? follows[o->attempts[o->nattempts - 1].state] : PH_ORDER_FAILED;
    if (o->state != expect)
        return *why = "its state does not follow its last attempt", 0;
    return 1;
}

static int has_pending(scan *sc, uint64_t id)
{
    MDB_val k = {8, &id}, v;
    return mdb_get(sc->txn, sc->s->dbi[DB_PENDING], &k, &v) == 0;
}

/* A supplier order: its supply record, its attempts, and `pending` agreeing. */
static int check_supply(scan *sc, const ph_order *rec)
{
    ph_order *o = calloc(1, sizeof *o);
    const char *why = NULL;
    MDB_val k = {8, (void *)&rec->id}, v;
    unsigned long long id = rec->id;
    if (!o)
        return ph_err_set(sc->err, PH_ENOMEM, "out of memory");
    *o = *rec;
    int rc = PH_OK;
    if (rec->delivery != PH_DELIVERY_CARD_CODE && rec->delivery != PH_DELIVERY_RECHARGE)
        rc = ph_err_set(sc->err, PH_EIO, "order %llu: delivery %d is not a delivery kind", id,
                        rec->delivery);
    else if (mdb_get(sc->txn, sc->s->dbi[DB_SUPPLY], &k, &v) || ph_supply_decode(&v, o) != PH_OK)
        rc = ph_err_set(sc->err, PH_EIO, "order %llu: supply record missing or malformed", id);
    else if (!attempts_consistent(o, &why))
        rc = ph_err_set(sc->err, PH_EIO, "order %llu (%s): %s", id, ph_order_state_name(o->state),
                        why);
    else {
        int open = o->nattempts && ph_attempt_state_open(o->attempts[o->nattempts - 1].state);
        if (open != has_pending(sc, rec->id))
            rc = ph_err_set(sc->err, PH_EIO, "order %llu: %s but %s pending", id,
                            open ? "has an open attempt" : "has no open attempt",
                            open ? "not" : "still");
        sc->open_orders += open;
        sc->supply_orders++;
    }
    ph_order_free(o);
    return rc;
}

static int check_order(scan *sc, uint64_t id, const MDB_val *v, uint64_t *codes)
{
    ph_order o;
    const uint8_t *ids;
    if (ph_order_decode(v, id, &o, &ids))
        return ph_err_set(sc->err, PH_EIO, "order %llu: malformed record", (unsigned long long)id);
    int via_supplier = ph_order_via_supplier(&o);
    int delivery = via_supplier ? o.delivery : PH_DELIVERY_CARD_CODE;
    size_t want = o.state == PH_ORDER_SUCCEEDED && delivery == PH_DELIVERY_CARD_CODE ? o.quantity
                  : via_supplier                                                     ? 0
                                                                                     : o.ncodes;
    if (o.ncodes != want)
        return ph_err_set(sc->err, PH_EIO, "order %llu: %s %s order with %zu codes, not %zu",
                          (unsigned long long)id, ph_order_state_name(o.state),
                          ph_delivery_name(delivery), o.ncodes, want);
    int rc = via_supplier ? check_supply(sc, &o) : PH_OK;
    if (rc)
        return rc;
    for (size_t i = 0; i < o.ncodes; i++) {
        uint64_t cid;
        memcpy(&cid, ids + 8 * i, 8);
        MDB_val ck = {8, &cid}, cv;
        ph_code code;
        if (mdb_get(sc->txn, sc->s->dbi[DB_CODES], &ck, &cv) || ph_code_decode(&cv, cid, 0, &code))
            return ph_err_set(sc->err, PH_EIO, "order %llu: code %llu missing",
                              (unsigned long long)id, (unsigned long long)cid);
        if (code.order_id != id)
            return ph_err_set(sc->err, PH_EIO, "order %llu: code %llu belongs to order %llu",
                              (unsigned long long)id, (unsigned long long)cid,
                              (unsigned long long)code.order_id);
    }
    char key[PH_SKU_MAX + PH_ORDER_ID_MAX + 2];
    MDB_val rk = {ph_store_ref_key(o.client, o.client_order_id, key), key}, rv;
    uint64_t ref = 0;
    if (mdb_get(sc->txn, sc->s->dbi[DB_ORDER_REF], &rk, &rv) == 0 && rv.mv_size == 8)
        memcpy(&ref, rv.mv_data, 8);
    if (ref != id)
        return ph_err_set(sc->err, PH_EIO, "order %llu: idempotency index points to %llu",
                          (unsigned long long)id, (unsigned long long)ref);
    *codes += o.ncodes;
    return PH_OK;
}

/* Each order's codes name it back, so no code can be in two orders. */
static int check_orders(scan *sc)
{
    MDB_cursor *c;
    MDB_val k, v;
    MDB_stat ms;
    uint64_t codes = 0;
    int rc = PH_OK;
    if (mdb_cursor_open(sc->txn, sc->s->dbi[DB_ORDERS], &c))
        return ph_err_set(sc->err, PH_EIO, "store: cannot open orders");
    for (int op = MDB_FIRST; rc == PH_OK && mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT) {
        uint64_t id;
        memcpy(&id, k.mv_data, 8);
        rc = check_order(sc, id, &v, &codes);
        sc->st->orders++;
    }
    mdb_cursor_close(c);
    if (rc)
        return rc;
    if (codes != sc->issued_to_orders)
        return ph_err_set(sc->err, PH_EIO, "orders list %llu codes but %llu codes name an order",
                          (unsigned long long)codes, (unsigned long long)sc->issued_to_orders);
    mdb_stat(sc->txn, sc->s->dbi[DB_ORDER_REF], &ms);
    if (ms.ms_entries != sc->st->orders)
        return ph_err_set(sc->err, PH_EIO, "%llu orders but %zu idempotency keys",
                          (unsigned long long)sc->st->orders, ms.ms_entries);
    mdb_stat(sc->txn, sc->s->dbi[DB_SUPPLY], &ms);
    if (ms.ms_entries != sc->supply_orders)
        return ph_err_set(sc->err, PH_EIO, "%llu supplier orders but %zu supply records",
                          (unsigned long long)sc->supply_orders, ms.ms_entries);
    mdb_stat(sc->txn, sc->s->dbi[DB_PENDING], &ms);
    if (ms.ms_entries != sc->open_orders)
        return ph_err_set(sc->err, PH_EIO, "%llu orders wait for a supplier but %zu are pending",
                          (unsigned long long)sc->open_orders, ms.ms_entries);
    mdb_stat(sc->txn, sc->s->dbi[DB_CODE_HASH], &ms);
    if (ms.ms_entries != sc->st->codes)
        return ph_err_set(sc->err, PH_EIO, "%llu codes but %zu entries in the code index",
                          (unsigned long long)sc->st->codes, ms.ms_entries);
    return PH_OK;
}

static int check_totals(scan *sc)
{
    for (size_t i = 0; i < sc->st->nskus; i++) {
        ph_sku_stats *k = &sc->st->skus[i];
        uint64_t sum = 0;
        for (int s = 1; s <= 6; s++)
            sum += k->by_state[s];
        if (sum != k->imported)
            return ph_err_set(sc->err, PH_EIO, "sku %s: %llu imported but %llu codes stored",
                              k->sku, (unsigned long long)k->imported, (unsigned long long)sum);
    }
    return PH_OK;
}

static int check_events(scan *sc)
{
    MDB_cursor *c;
    MDB_val k, v;
    uint64_t expect = 1;
    if (mdb_cursor_open(sc->txn, sc->s->dbi[DB_EVENTS], &c))
        return ph_err_set(sc->err, PH_EIO, "store: cannot open events");
    int rc = PH_OK;
    for (int op = MDB_FIRST; mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT, expect++) {
        uint64_t seq;
        memcpy(&seq, k.mv_data, 8);
        if (seq != expect) {
            rc = ph_err_set(sc->err, PH_EIO, "events: expected seq %llu, found %llu",
                            (unsigned long long)expect, (unsigned long long)seq);
            break;
        }
    }
    mdb_cursor_close(c);
    sc->st->last_event = expect - 1;
    return rc;
}

static int run_scan(ph_store *s, ph_store_stats *st, int full, int64_t now, ph_err *err)
{
    memset(st, 0, sizeof *st);
    scan sc = {.s = s, .st = st, .err = err, .full = full, .now = full ? 0 : now};
    int rc = ph_store_read_begin(s, &sc.txn, err);
    if (rc)
        return rc;
    if ((rc = load_batches(&sc)) == PH_OK && (rc = scan_codes(&sc)) == PH_OK && full &&
        (rc = check_stock(&sc)) == PH_OK && (rc = check_expiry_index(&sc)) == PH_OK &&
        (rc = check_orders(&sc)) == PH_OK && (rc = check_totals(&sc)) == PH_OK &&
        (rc = check_events(&sc)) == PH_OK)
        rc = ph_store_keys_complete(s, sc.txn, err);
    if (rc == PH_OK && !full) {
        MDB_stat ms;
        mdb_stat(sc.txn, s->dbi[DB_ORDERS], &ms);
        st->orders = ms.ms_entries;
        mdb_stat(sc.txn, s->dbi[DB_EVENTS], &ms);
        st->last_event = ms.ms_entries; /* events are numbered 1..n without gaps */
    }
    ph_store_read_end(s, sc.txn);
    free(sc.batches);
    if (rc)
        ph_store_stats_clear(st);
    return rc;
}

int ph_store_stats_at(ph_store *s, int64_t now, ph_store_stats *out, ph_err *err)
{
    return run_scan(s, out, 0, now, err);
}

int ph_store_stats_get(ph_store *s, ph_store_stats *out, ph_err *err)
{
    return run_scan(s, out, 0, ph_now_ms(), err);
}

int ph_store_check(ph_store *s, ph_store_stats *stats, ph_err *err)
{
    ph_store_stats local;
    int rc = run_scan(s, stats ? stats : &local, 1, 0, err);
    if (rc == PH_OK && !stats)
        ph_store_stats_clear(&local);
    return rc;
}

void ph_store_stats_clear(ph_store_stats *st)
{
    free(st->skus);
    memset(st, 0, sizeof *st);
}
