/*
 * store_check.c — counting codes by state, and checking every invariant the
 * rest of the store promises (docs/store.md, "Invariants"). The crash tests
 * run this after every kill -9; `perkhubd --check-store` runs it by hand.
 *
 * One read snapshot, linear scans only: a million codes take well under a
 * second and never block the writer. GET /v1/stats does not come here: it
 * reads the counts the writer keeps (store_tally.c), which the check proves
 * equal to what it counts (invariant 38).
 */
#include "store/store_int.h"

#include <stdatomic.h>
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
    uint64_t held_orders;      /* held for review (each in `reviews`) */
    uint64_t granted_orders;   /* granted (each with a grant) */
    uint64_t repl_markers;     /* repl.leader epoch markers among the events */
    uint64_t repl_after;       /* the last marker's after_seq */
    uint64_t repl_marker_ev;   /* and its event */
    int full;                  /* checking invariants, not just counting */
    ph_check_progress *prog;   /* may be NULL */
    ph_err *err;
} scan;

/* Notes the stage and sub-database the check is in (ph_check_progress). The
 * fence keeps the compiler from holding the bytes back: the process may die
 * in the next LMDB call. */
static void at_stage(scan *sc, const char *stage, int db)
{
    ph_check_progress *p = sc->prog;
    if (!p)
        return;
    snprintf(p->stage, sizeof p->stage, "%s", stage);
    snprintf(p->db, sizeof p->db, "%s", db >= 0 ? ph_store_db_name(db) : "");
    p->key = p->read = 0;
    atomic_signal_fence(memory_order_seq_cst);
}

static void at_key(scan *sc, uint64_t key, uint64_t read)
{
    ph_check_progress *p = sc->prog;
    if (!p)
        return;
    p->key = key;
    p->read = read;
    atomic_signal_fence(memory_order_seq_cst);
}

/* ---- the walk of every sub-database, before anything relies on them ------- */

/* Walks one database whole through a cursor: the walk must end with
 * MDB_NOTFOUND (any other LMDB error is a damaged tree), keys must ascend in
 * the database's own order (duplicates by their values), integer keys and the
 * duplicate ids of the DUPFIXED databases are 8 bytes, and the entries found
 * equal the count in the database's header (a lost page or subtree shows
 * here even when the walk itself ends cleanly). */
static int walk_db(scan *sc, int db)
{
    const char *name = ph_store_db_name(db);
    unsigned flags = ph_store_db_flags(db);
    int intkey = (flags & MDB_INTEGERKEY) != 0, dup = (flags & MDB_DUPSORT) != 0;
    MDB_dbi dbi = sc->s->dbi[db];
    MDB_stat ms;
    MDB_cursor *c;
    MDB_val k, v, pk = {0, NULL}, pv = {0, NULL};
    uint64_t n = 0, key = 0;
    at_stage(sc, "walking every sub-database", db);
    int mrc = mdb_stat(sc->txn, dbi, &ms);
    if (mrc == 0)
        mrc = mdb_cursor_open(sc->txn, dbi, &c);
    if (mrc)
        return ph_err_set(sc->err, PH_EIO, "corrupted: sub-database %s: %s", name,
                          mdb_strerror(mrc));
    int rc = PH_OK;
    for (int op = MDB_FIRST; rc == PH_OK && (mrc = mdb_cursor_get(c, &k, &v, op)) == 0;
         op = MDB_NEXT) {
        int kc = n ? mdb_cmp(sc->txn, dbi, &pk, &k) : -1;
        if (intkey && k.mv_size != 8)
            rc = ph_err_set(sc->err, PH_EIO,
                            "corrupted: sub-database %s: entry %llu has a %zu-byte key, not 8",
                            name, (unsigned long long)n + 1, k.mv_size);
        else if (dup && v.mv_size != 8)
            rc = ph_err_set(sc->err, PH_EIO,
                            "corrupted: sub-database %s: entry %llu has a %zu-byte value, not 8",
                            name, (unsigned long long)n + 1, v.mv_size);
        else if (kc > 0 || (kc == 0 && (!dup || mdb_dcmp(sc->txn, dbi, &pv, &v) >= 0)))
            rc = ph_err_set(sc->err, PH_EIO,
                            "corrupted: sub-database %s: entry %llu is out of order (after key "
                            "%llu)",
                            name, (unsigned long long)n + 1, (unsigned long long)key);
        if (rc)
            break;
        if (intkey)
            memcpy(&key, k.mv_data, 8);
        pk = k;
        pv = v;
        at_key(sc, key, ++n);
    }
    mdb_cursor_close(c);
    if (rc)
        return rc;
    if (mrc != MDB_NOTFOUND)
        return ph_err_set(sc->err, PH_EIO,
                          "corrupted: sub-database %s: the walk failed after %llu entries%s%llu): "
                          "%s",
                          name, (unsigned long long)n, intkey ? " (last key " : " (entry ",
                          (unsigned long long)(intkey ? key : n), mdb_strerror(mrc));
    if (n != ms.ms_entries)
        return ph_err_set(sc->err, PH_EIO,
                          "corrupted: sub-database %s: its header counts %zu entries, a walk "
                          "finds %llu (pages lost%s%llu)",
                          name, ms.ms_entries, (unsigned long long)n,
                          intkey ? "; last key " : "; entries walked ",
                          (unsigned long long)(intkey ? key : n));
    return PH_OK;
}

static int walk_all(scan *sc)
{
    for (int db = 0; db < DB_COUNT; db++) {
        int rc = walk_db(sc, db);
        if (rc)
            return rc;
    }
    return PH_OK;
}

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
 * that had passed when it was retired, or was within the longest
 * min_validity_days a product may have (store_alerts.c). */
static int check_code_expiry(scan *sc, const batch_ref *b, uint64_t id, const ph_code *code)
{
    const char *sku = sc->st->skus[b->sku].sku;
    if (code->state == PH_CODE_EXPIRED &&
        (!code->expires_at ||
         !ph_code_retire_due(code->expires_at, ph_min_validity_ms(PH_MIN_VALIDITY_DAYS_MAX),
                             code->changed_at)))
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
        else if ((code.state == PH_CODE_ISSUED || code.state == PH_CODE_RESERVED ||
                  code.state == PH_CODE_REDEEMED) &&
                 !code.order_id)
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
            sc->st->skus[b->sku].by_state[code.state]++;
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
    /* no attempt: failed before one began, or held (a held order never has one) */
    int expect = o->nattempts                   ? follows[o->attempts[o->nattempts - 1].state]
                 : o->state == PH_ORDER_HELD    ? PH_ORDER_HELD
                 : o->state == PH_ORDER_GRANTED ? PH_ORDER_GRANTED
                                                : PH_ORDER_FAILED;
    /* a grant's order whose claim failed for good is granted again, its grant
     * given back (store_check_grants checks the grant's side) */
    if (expect == PH_ORDER_FAILED && o->nattempts && o->state == PH_ORDER_GRANTED)
        expect = PH_ORDER_GRANTED;
    if (o->state != expect)
        return *why = "its state does not follow its last attempt", 0;
    return 1;
}

/* 0: not in `pending`; 1: in it, not stuck; 2: in it, marked stuck; -1: a
 * value that is neither. */
static int has_pending(scan *sc, uint64_t id)
{
    MDB_val k = {8, &id}, v;
    if (mdb_get(sc->txn, sc->s->dbi[DB_PENDING], &k, &v))
        return 0;
    if (!v.mv_size)
        return 1;
    return v.mv_size == 1 && *(const char *)v.mv_data == PH_PENDING_STUCK ? 2 : -1;
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
        int pending = has_pending(sc, rec->id), stuck = ph_order_stuck_since(o) != 0;
        if (open != (pending > 0))
            rc = ph_err_set(sc->err, PH_EIO, "order %llu: %s but %s pending", id,
                            open ? "has an open attempt" : "has no open attempt",
                            open ? "not" : "still");
        else if (open && stuck != (pending == 2))
            rc = ph_err_set(sc->err, PH_EIO, "order %llu: %s but %s marked stuck in pending", id,
                            stuck ? "is stuck" : "is not stuck", stuck ? "not" : "still");
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
    int delivery = o.delivery ? o.delivery : PH_DELIVERY_CARD_CODE; /* bundle: no codes */
    /* a replenishment's codes went to stock, not to its order */
    /* a granted order from stock holds its reserved codes (a supplier one none);
     * a bundle's parent holds none (its components do) */
    size_t want =
        (o.state == PH_ORDER_SUCCEEDED || (o.state == PH_ORDER_GRANTED && !via_supplier)) &&
                delivery == PH_DELIVERY_CARD_CODE && !ph_order_is_replenish(&o)
            ? o.quantity
        : via_supplier || o.state == PH_ORDER_HELD || delivery == PH_DELIVERY_BUNDLE ? 0
                                                                                     : o.ncodes;
    if (o.ncodes != want)
        return ph_err_set(sc->err, PH_EIO, "order %llu: %s %s order with %zu codes, not %zu",
                          (unsigned long long)id, ph_order_state_name(o.state),
                          ph_delivery_name(delivery), o.ncodes, want);
    int rc = via_supplier ? check_supply(sc, &o) : PH_OK;
    if (rc)
        return rc;
    /* a held or granted bundle's components are held or granted with it:
     * its parent is the one in review and the one with a grant (their
     * invariants 33 and 34: store_check_bundles) */
    int component = ph_order_component_of(&o, NULL);
    if (o.state == PH_ORDER_HELD && !component) { /* exactly one reviews entry (the count:
                                                     store_check_reviews) */
        if (!store_review_has(sc->s, sc->txn, id))
            return ph_err_set(sc->err, PH_EIO, "order %llu: held but not in reviews",
                              (unsigned long long)id);
        sc->held_orders++;
    }
    sc->granted_orders += o.state == PH_ORDER_GRANTED && !component;
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
        /* a reserved code belongs to a granted order, and a granted order's codes are reserved */
        if ((code.state == PH_CODE_RESERVED) != (o.state == PH_ORDER_GRANTED))
            return ph_err_set(sc->err, PH_EIO, "order %llu (%s): code %llu is %s",
                              (unsigned long long)id, ph_order_state_name(o.state),
                              (unsigned long long)cid, ph_code_state_name(code.state));
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

/* Marks id in seen[1..n]: PH_OK, or PH_EIO when the event names an id that
 * does not exist (0 for "absent" is fine). */
static int mark_ref(scan *sc, uint64_t seq, const char *what, json_t *j, uint8_t *seen, uint64_t n)
{
    if (!j)
        return PH_OK;
    json_int_t id = json_is_integer(j) ? json_integer_value(j) : -1;
    if (id < 1 || (uint64_t)id > n || !seen)
        return ph_err_set(sc->err, PH_EIO,
                          "events: event %llu names %s %lld, which does not exist (sub-database "
                          "events or %ss damaged)",
                          (unsigned long long)seq, what, (long long)id, what);
    seen[id] |= 2;
    return PH_OK;
}

/* The ids of a database keyed by dense uint64 ids, as seen[id] = 1 for each
 * present; *n the last. NULL (with *n 0) for an empty database or no memory
 * (*oom set). */
static uint8_t *ids_present(scan *sc, int db, uint64_t *n, int *oom)
{
    MDB_cursor *c;
    MDB_val k, v;
    *n = ph_store_last_key(sc->txn, sc->s->dbi[db]);
    uint8_t *seen = *n ? calloc(*n + 1, 1) : NULL;
    if (*n && !seen)
        *oom = 1;
    if (!seen || mdb_cursor_open(sc->txn, sc->s->dbi[db], &c))
        return seen;
    for (int op = MDB_FIRST; mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT) {
        uint64_t id;
        memcpy(&id, k.mv_data, 8);
        if (id <= *n)
            seen[id] = 1;
    }
    mdb_cursor_close(c);
    return seen;
}

/* 37, in event order: a replication epoch marker (repl.leader) names its
 * node and the stream sequence it followed, and each follows the one before
 * it (a new leader's marker is published after everything the stream held,
 * the previous marker included). */
static int note_marker(scan *sc, uint64_t seq, json_t *ev)
{
    if (strcmp(json_string_value(json_object_get(ev, "type")), "repl.leader"))
        return PH_OK;
    json_t *after = json_object_get(ev, "after_seq");
    if (!json_is_integer(after) || json_integer_value(after) < 0 ||
        !json_is_string(json_object_get(ev, "node")))
        return ph_err_set(sc->err, PH_EIO,
                          "events: event %llu: a repl.leader marker without its node and after_seq",
                          (unsigned long long)seq);
    uint64_t a = (uint64_t)json_integer_value(after);
    if (sc->repl_markers && a <= sc->repl_after)
        return ph_err_set(sc->err, PH_EIO,
                          "events: the repl.leader marker of event %llu follows stream sequence "
                          "%llu, not after the one of event %llu (%llu)",
                          (unsigned long long)seq, (unsigned long long)a,
                          (unsigned long long)sc->repl_marker_ev,
                          (unsigned long long)sc->repl_after);
    sc->repl_markers++;
    sc->repl_after = a;
    sc->repl_marker_ev = seq;
    return PH_OK;
}

/* 36: meta repl_seq, when there, is a u64 of at least 1, and it is there
 * exactly when the store holds an epoch marker (a replicated store's first
 * batch follows one; a single node's store has neither). 37: it is past the
 * last marker's after_seq (the marker itself was committed after it). */
static int check_repl(scan *sc)
{
    MDB_val k = {sizeof PH_META_REPL_SEQ - 1, PH_META_REPL_SEQ}, v;
    int mrc = mdb_get(sc->txn, sc->s->dbi[DB_META], &k, &v);
    if (mrc && mrc != MDB_NOTFOUND)
        return ph_store_lmdb_err(sc->err, mrc, "read meta repl_seq");
    uint64_t rs = 0;
    if (!mrc && v.mv_size == sizeof rs)
        memcpy(&rs, v.mv_data, sizeof rs);
    if (!mrc && !rs)
        return ph_err_set(sc->err, PH_EIO,
                          "meta: repl_seq is not a stream sequence (%zu bytes, value 0 or "
                          "malformed)",
                          v.mv_size);
    if (!mrc != !!sc->repl_markers)
        return ph_err_set(sc->err, PH_EIO,
                          mrc ? "meta: no repl_seq, but %llu repl.leader markers among the events"
                              : "meta: repl_seq %llu, but no repl.leader marker among the events",
                          mrc ? (unsigned long long)sc->repl_markers : (unsigned long long)rs);
    if (!mrc && rs <= sc->repl_after)
        return ph_err_set(sc->err, PH_EIO,
                          "meta: repl_seq %llu is not past the last repl.leader marker's "
                          "after_seq %llu (event %llu)",
                          (unsigned long long)rs, (unsigned long long)sc->repl_after,
                          (unsigned long long)sc->repl_marker_ev);
    return PH_OK;
}

/* Events are numbered 1, 2, ... without a gap, each is a JSON object whose seq
 * is its key, the orders and batches it names exist, and every order and
 * every batch is named by at least one event (each was written with one:
 * order.succeeded or order.accepted, batch.imported or the order.succeeded
 * that delivered it): events lost with their pages show here even when the
 * numbering left is whole. */
static int check_events(scan *sc)
{
    MDB_cursor *c;
    MDB_val k, v;
    uint64_t expect = 1, norders = 0, nbatches = 0;
    int oom = 0, rc = PH_OK;
    uint8_t *orders = ids_present(sc, DB_ORDERS, &norders, &oom),
            *batches = ids_present(sc, DB_BATCHES, &nbatches, &oom);
    if (oom || mdb_cursor_open(sc->txn, sc->s->dbi[DB_EVENTS], &c)) {
        free(orders);
        free(batches);
        return oom ? ph_err_set(sc->err, PH_ENOMEM, "out of memory")
                   : ph_err_set(sc->err, PH_EIO, "store: cannot open events");
    }
    at_stage(sc, "events against orders and batches", DB_EVENTS);
    for (int op = MDB_FIRST; rc == PH_OK && mdb_cursor_get(c, &k, &v, op) == 0;
         op = MDB_NEXT, expect++) {
        uint64_t seq;
        memcpy(&seq, k.mv_data, 8);
        at_key(sc, seq, expect);
        if (seq != expect) {
            rc = ph_err_set(sc->err, PH_EIO, "events: expected seq %llu, found %llu",
                            (unsigned long long)expect, (unsigned long long)seq);
            break;
        }
        json_t *ev = json_loadb(v.mv_data, v.mv_size, 0, NULL);
        json_t *jseq = json_object_get(ev, "seq");
        if (!json_is_integer(jseq) || (uint64_t)json_integer_value(jseq) != seq ||
            !json_is_string(json_object_get(ev, "type")))
            rc = ph_err_set(sc->err, PH_EIO,
                            "corrupted: sub-database events: event %llu is not an event record "
                            "(JSON, seq, type)",
                            (unsigned long long)seq);
        if (rc == PH_OK)
            rc = note_marker(sc, seq, ev);
        if (rc == PH_OK)
            rc = mark_ref(sc, seq, "order", json_object_get(ev, "order_id"), orders, norders);
        if (rc == PH_OK)
            rc = mark_ref(sc, seq, "batch", json_object_get(ev, "batch_id"), batches, nbatches);
        size_t i;
        json_t *b;
        json_array_foreach(json_object_get(ev, "batches"), i, b)
        {
            if (rc == PH_OK)
                rc = mark_ref(sc, seq, "batch", json_object_get(b, "batch_id"), batches, nbatches);
        }
        json_decref(ev);
    }
    mdb_cursor_close(c);
    sc->st->last_event = expect - 1;
    for (uint64_t id = 1; rc == PH_OK && id <= norders; id++)
        if (orders[id] == 1)
            rc = ph_err_set(sc->err, PH_EIO,
                            "events: order %llu has no event (%llu events; events lost?)",
                            (unsigned long long)id, (unsigned long long)sc->st->last_event);
    for (uint64_t id = 1; rc == PH_OK && id <= nbatches; id++)
        if (batches[id] == 1)
            rc = ph_err_set(sc->err, PH_EIO,
                            "events: batch %llu has no event (%llu events; events lost?)",
                            (unsigned long long)id, (unsigned long long)sc->st->last_event);
    free(orders);
    free(batches);
    return rc;
}

/* `client_orders` lists every order exactly once, under its own client. */
static int check_client_orders(scan *sc)
{
    MDB_cursor *c;
    MDB_val k, v;
    uint64_t listed = 0;
    int rc = PH_OK;
    if (mdb_cursor_open(sc->txn, sc->s->dbi[DB_CLIENT_ORDERS], &c))
        return ph_err_set(sc->err, PH_EIO, "store: cannot open client_orders");
    at_stage(sc, "client_orders against orders", DB_CLIENT_ORDERS);
    for (int op = MDB_FIRST; rc == PH_OK && mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT) {
        uint64_t id;
        memcpy(&id, v.mv_data, 8);
        at_key(sc, id, ++listed);
        MDB_val ok = {8, &id}, ov;
        ph_order o;
        const uint8_t *ids;
        if (mdb_get(sc->txn, sc->s->dbi[DB_ORDERS], &ok, &ov) ||
            ph_order_decode(&ov, id, &o, &ids) != PH_OK)
            rc = ph_err_set(sc->err, PH_EIO, "client_orders lists order %llu, which is missing",
                            (unsigned long long)id);
        else if (strlen(o.client) != k.mv_size || memcmp(o.client, k.mv_data, k.mv_size))
            rc = ph_err_set(sc->err, PH_EIO,
                            "client_orders lists order %llu under another client than its own",
                            (unsigned long long)id);
    }
    mdb_cursor_close(c);
    if (rc == PH_OK && listed != sc->st->orders)
        rc = ph_err_set(sc->err, PH_EIO, "%llu orders but client_orders lists %llu",
                        (unsigned long long)sc->st->orders, (unsigned long long)listed);
    return rc;
}

/* The first batch of each SKU of sc->st, in its order (malloc'd; NULL when
 * out of memory or there is none). */
static uint64_t *first_batches(const scan *sc)
{
    uint64_t *first = sc->st->nskus ? calloc(sc->st->nskus, sizeof *first) : NULL;
    for (size_t i = 0; first && i < sc->nbatches; i++)
        if (!first[sc->batches[i].sku])
            first[sc->batches[i].sku] = sc->batches[i].id;
    return first;
}

/* 38: the code counts the writer keeps (store_tally.c) give, SKU for SKU and
 * state for state, what the codes say: so GET /v1/stats, which reads only
 * them, answers what a scan would. */
static int check_code_counts(scan *sc)
{
    ph_store_stats kept;
    int rc = store_code_counts_read(sc->s, sc->txn, 0, &kept, sc->err);
    if (rc)
        return rc;
    const ph_store_stats *st = sc->st;
    uint64_t *first = first_batches(sc);
    if (st->nskus && !first)
        rc = ph_err_set(sc->err, PH_ENOMEM, "out of memory");
    for (size_t j = 0; rc == PH_OK && j < kept.nskus; j++) {
        size_t i = 0;
        while (i < st->nskus && strcmp(kept.skus[j].sku, st->skus[i].sku))
            i++;
        if (i == st->nskus)
            rc = ph_err_set(sc->err, PH_EIO, "code_counts: sku %s is counted but has no batch",
                            kept.skus[j].sku);
    }
    for (size_t i = 0; rc == PH_OK && i < st->nskus; i++) {
        const ph_sku_stats *k = &st->skus[i], *c = NULL;
        for (size_t j = 0; j < kept.nskus && !c; j++)
            if (strcmp(kept.skus[j].sku, k->sku) == 0)
                c = &kept.skus[j];
        if (!c) {
            rc = ph_err_set(sc->err, PH_EIO,
                            "code_counts: sku %s has batches (the first %llu) but no counts",
                            k->sku, (unsigned long long)first[i]);
            break;
        }
        if ((size_t)(c - kept.skus) != i) {
            rc = ph_err_set(sc->err, PH_EIO,
                            "code_counts: sku %s is not listed in the order of its first batch "
                            "%llu",
                            k->sku, (unsigned long long)first[i]);
            break;
        }
        if (c->imported != k->imported) {
            rc = ph_err_set(sc->err, PH_EIO,
                            "code_counts: sku %s: imported %llu, but its batches hold %llu", k->sku,
                            (unsigned long long)c->imported, (unsigned long long)k->imported);
            break;
        }
        /* the kept counts first, then the two derived from them (store_int.h):
         * a drifted count is named as itself, not as the issued it skews */
        static const int order[] = {PH_CODE_RESERVED, PH_CODE_REDEEMED,  PH_CODE_VOIDED,
                                    PH_CODE_EXPIRED,  PH_CODE_AVAILABLE, PH_CODE_ISSUED};
        for (size_t o = 0; o < sizeof order / sizeof order[0]; o++) {
            int state = order[o];
            if (c->by_state[state] != k->by_state[state]) {
                rc = ph_err_set(sc->err, PH_EIO,
                                "code_counts: sku %s: %llu %s, but the codes say %llu", k->sku,
                                (unsigned long long)c->by_state[state], ph_code_state_name(state),
                                (unsigned long long)k->by_state[state]);
                break;
            }
        }
    }
    free(first);
    ph_store_stats_clear(&kept);
    return rc;
}

int store_check_count(ph_store *s, MDB_txn *txn, ph_store_stats *out, uint64_t **first, ph_err *err)
{
    memset(out, 0, sizeof *out);
    scan sc = {.s = s, .txn = txn, .st = out, .err = err};
    int rc = load_batches(&sc);
    if (rc == PH_OK)
        rc = scan_codes(&sc);
    if (rc == PH_OK && !(*first = first_batches(&sc)) && out->nskus)
        rc = ph_err_set(err, PH_ENOMEM, "out of memory");
    free(sc.batches);
    if (rc)
        ph_store_stats_clear(out);
    return rc;
}

static int run_scan(ph_store *s, ph_store_stats *st, ph_check_progress *prog, ph_err *err)
{
    memset(st, 0, sizeof *st);
    scan sc = {.s = s, .st = st, .err = err, .full = 1, .prog = prog};
    int rc = ph_store_read_begin(s, &sc.txn, err);
    if (rc)
        return rc;
    rc = walk_all(&sc);
    if (rc == PH_OK && (at_stage(&sc, "batches", DB_BATCHES), rc = load_batches(&sc)) == PH_OK &&
        (at_stage(&sc, "codes", DB_CODES), rc = scan_codes(&sc)) == PH_OK &&
        (at_stage(&sc, "stock against codes", DB_AVAIL), rc = check_stock(&sc)) == PH_OK &&
        (at_stage(&sc, "the expiry index", DB_EXPIRY), rc = check_expiry_index(&sc)) == PH_OK &&
        (at_stage(&sc, "orders and their codes", DB_ORDERS), rc = check_orders(&sc)) == PH_OK &&
        (rc = check_client_orders(&sc)) == PH_OK &&
        (at_stage(&sc, "totals per sku", -1), rc = check_totals(&sc)) == PH_OK &&
        (rc = check_events(&sc)) == PH_OK &&
        (at_stage(&sc, "replication's sequence", DB_META), rc = check_repl(&sc)) == PH_OK &&
        (at_stage(&sc, "the audit trail", DB_AUDIT), rc = store_audit_check(s, sc.txn, err)) ==
            PH_OK &&
        (at_stage(&sc, "the ledger and the daily aggregates", DB_LEDGER),
         rc = ph_ledger_check(s, sc.txn, err)) == PH_OK &&
        (at_stage(&sc, "reconciliation runs", DB_RECON_RUNS),
         rc = store_check_recon(s, sc.txn, err)) == PH_OK &&
        (at_stage(&sc, "discrepancies", DB_DISCREP), rc = store_check_discrep(s, sc.txn, err)) ==
            PH_OK &&
        (at_stage(&sc, "scheduled jobs", DB_JOBS), rc = store_check_jobs(s, sc.txn, err)) ==
            PH_OK &&
        (at_stage(&sc, "alerts", DB_ALERTS), rc = store_check_alerts(s, sc.txn, err)) == PH_OK &&
        (at_stage(&sc, "the review queue", DB_REVIEWS),
         rc = store_check_reviews(s, sc.txn, sc.held_orders, err)) == PH_OK &&
        (at_stage(&sc, "replenishments", DB_REPLENISH),
         rc = store_replenish_check(s, sc.txn, err)) == PH_OK &&
        (at_stage(&sc, "webhook deliveries", DB_WH_DELIVERIES),
         rc = store_check_webhooks(s, sc.txn, err)) == PH_OK &&
        (at_stage(&sc, "grants", DB_GRANTS),
         rc = store_check_grants(s, sc.txn, sc.granted_orders, err)) == PH_OK &&
        (at_stage(&sc, "bundles", DB_BUNDLES), rc = store_check_bundles(s, sc.txn, err)) == PH_OK &&
        (at_stage(&sc, "the supplier attempt index", DB_SUPPLY_ATT),
         rc = store_satt_check(s, sc.txn, err)) == PH_OK &&
        /* last: the code counts and the analytics are figures derived from the
         * records above, so a damaged record is named as itself before the
         * figure it skews */
        (at_stage(&sc, "the code counts", DB_CODE_COUNTS), rc = check_code_counts(&sc)) == PH_OK &&
        (at_stage(&sc, "the analytics aggregates", DB_AGG_SKU),
         rc = store_agg_check(s, sc.txn, err)) == PH_OK) {
        at_stage(&sc, "key checks", DB_META);
        rc = ph_store_keys_complete(s, sc.txn, err);
    }
    ph_store_read_end(s, sc.txn);
    free(sc.batches);
    if (rc)
        ph_store_stats_clear(st);
    return rc;
}

int ph_store_check_watched(ph_store *s, ph_store_stats *stats, ph_check_progress *progress,
                           ph_err *err)
{
    ph_store_stats local;
    int rc = run_scan(s, stats ? stats : &local, progress, err);
    if (rc == PH_OK && !stats)
        ph_store_stats_clear(&local);
    return rc;
}

int ph_store_check(ph_store *s, ph_store_stats *stats, ph_err *err)
{
    return ph_store_check_watched(s, stats, NULL, err);
}

void ph_store_stats_clear(ph_store_stats *st)
{
    free(st->skus);
    memset(st, 0, sizeof *st);
}
