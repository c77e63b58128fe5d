/*
 * store_recon.c — reconciliation runs: a supplier's statement matched against
 * our attempts, stored as a run header and one record per line
 * (docs/store.md, "Reconciliation").
 *
 * The submitter finds, in a read snapshot, which attempt each line names and
 * which successes of the period no line names (ph_store_recon_prepare); the
 * writer checks every one of those hints against the attempts as they are in
 * its own transaction and decides each outcome with ph_recon_classify, so what
 * is stored is a deterministic function of the command and the database. A
 * hint that no longer holds is not trusted: the line becomes unknown_ref, the
 * unbilled attempt is dropped.
 */
#include "store/store_int.h"

#include <assert.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "crypto/wipe_alloc.h"

/* ---- outcomes ---------------------------------------------------------------- */

const char *ph_recon_outcome_name(int outcome)
{
    static const char *const names[] = {"?",          "matched",         "charged_not_succeeded",
                                        "not_billed", "amount_mismatch", "unknown_ref",
                                        "duplicate"};
    return outcome >= 1 && outcome <= PH_RECON_OUTCOMES ? names[outcome] : "?";
}

int ph_recon_outcome_discrepancy(int outcome)
{
    /* The supplier's word contradicts what we stored: it charged for an
     * attempt we hold as not succeeded, charged another amount, or charged
     * twice. A success it did not bill costs us nothing and is only reported;
     * a line naming nothing of ours has no record to contradict. */
    return outcome == PH_RECON_CHARGED_NOT_SUCCEEDED || outcome == PH_RECON_AMOUNT_MISMATCH ||
           outcome == PH_RECON_DUPLICATE;
}

int64_t ph_attempt_cost(const ph_attempt *a, uint32_t quantity)
{
    return a->charged >= 0 ? a->charged : a->unit_cost * (int64_t)quantity;
}

int ph_recon_classify(const ph_recon_line *l, const ph_attempt *a, uint32_t quantity, int billed,
                      int64_t *ours)
{
    *ours = -1;
    if (!a)
        return PH_RECON_UNKNOWN_REF;
    int succeeded = a->state == PH_ATTEMPT_SUCCEEDED;
    if (succeeded)
        *ours = ph_attempt_cost(a, quantity);
    if (!l->charged) /* the supplier says it did not charge */
        return succeeded ? PH_RECON_NOT_BILLED : PH_RECON_MATCHED;
    if (billed)
        return PH_RECON_DUPLICATE;
    if (!succeeded)
        return PH_RECON_CHARGED_NOT_SUCCEEDED;
    return *ours == l->amount ? PH_RECON_MATCHED : PH_RECON_AMOUNT_MISMATCH;
}

/* ---- keys ---------------------------------------------------------------------- */

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

#define DIGEST_KEY_MAX (PH_SKU_MAX + 1 + 16 + 32)

static size_t digest_key(const char *supplier, int64_t from, int64_t to, const uint8_t sha[32],
                         uint8_t *buf)
{
    size_t n = strlen(supplier);
    memcpy(buf, supplier, n);
    buf[n++] = 0;
    be64(buf + n, (uint64_t)from);
    be64(buf + n + 8, (uint64_t)to);
    memcpy(buf + n + 16, sha, 32);
    return n + 48;
}

static void line_key(uint64_t run, uint64_t index, uint8_t key[16])
{
    be64(key, run);
    be64(key + 8, index);
}

/* ---- the writer ------------------------------------------------------------------ */

static int ref_cmp(const void *pa, const void *pb)
{
    const ph_recon_ref *a = pa, *b = pb;
    if (a->order_id != b->order_id)
        return a->order_id < b->order_id ? -1 : 1;
    return (a->no > b->no) - (a->no < b->no);
}

/* A billing: which attempt line `idx` names, for finding the charged lines
 * that bill one attempt twice, in file order. */
typedef struct billing {
    ph_recon_ref at;
    size_t idx;
} billing;

static int billing_cmp(const void *pa, const void *pb)
{
    const billing *a = pa, *b = pb;
    int r = ref_cmp(&a->at, &b->at);
    return r ? r : (a->idx > b->idx) - (a->idx < b->idx);
}

/* The attempt `ref` of supplier, when the order exists and has it; *o is then
 * the loaded order (the caller's), else NULL. */
static int load_attempt_of(ph_wtxn *w, ph_cmd *c, const ph_recon_ref *ref, const char *supplier,
                           ph_order **o, const ph_attempt **a)
{
    *o = NULL;
    *a = NULL;
    if (!ref->order_id)
        return PH_OK;
    int rc = ph_order_load(w->s, w->txn, ref->order_id, 0, o, &c->err);
    if (rc == PH_ENOTFOUND) {
        c->err.code = 0;
        c->err.msg[0] = 0;
        return PH_OK;
    }
    if (rc)
        return rc;
    if (ref->no >= 1 && ref->no <= (*o)->nattempts &&
        !strcmp((*o)->attempts[ref->no - 1].supplier, supplier))
        *a = &(*o)->attempts[ref->no - 1];
    return PH_OK;
}

/* Does line l name attempt a: by reference when it has one, else by the
 * supplier's order id? */
static int names_attempt(const ph_recon_line *l, const ph_attempt *a)
{
    if (l->ref[0] && !strcmp(l->ref, a->ref))
        return 1;
    return l->supplier_order_id[0] && !strcmp(l->supplier_order_id, a->supplier_order_id);
}

static json_t *money_json(int64_t fen)
{
    char buf[32];
    return fen < 0 ? json_null() : json_string(ph_money_format(fen, buf, sizeof buf));
}

/* THE one place where a statement line becomes a discrepancy (docs/design.md
 * rule 7), raised like any other (store_raise_discrepancy, source
 * "statement"): the supplier says it charged l->amount for attempt a. A
 * second charged line for an attempt already billed says it charged twice:
 * what it claims in all is then what we hold plus this line (an earlier line
 * at another amount is a discrepancy of its own). The run's line keeps the
 * outcome; the discrepancy is what ops resolve. */
static int recon_discrepancy(ph_wtxn *w, ph_cmd *c, const ph_recon_line *l, const ph_order *o,
                             const ph_attempt *a, int outcome, int64_t ours)
{
    assert(o && a); /* ph_recon_outcome_discrepancy: only outcomes about an attempt */
    int64_t theirs = l->amount;
    if (outcome == PH_RECON_DUPLICATE && ours >= 0 &&
        __builtin_add_overflow(ours, l->amount, &theirs))
        return ph_err_set(&c->err, PH_EINVAL, "line %u: amount out of range", l->line);
    ph_discrepancy d = {.order_id = o->id,
                        .attempt = a->no,
                        .source = PH_DISCREP_STATEMENT,
                        .their_state = PH_ATTEMPT_SUCCEEDED,
                        .their_charged = theirs,
                        .their_delivered = -1};
    return store_raise_discrepancy(w, c, o, &d, NULL);
}

static int put_json(ph_wtxn *w, ph_cmd *c, int db, MDB_val *k, json_t *j, unsigned flags)
{
    char *txt = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    if (!txt)
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    MDB_val v = {strlen(txt), txt};
    int mrc = mdb_put(w->txn, w->s->dbi[db], k, &v, flags);
    ph_json_free(txt);
    return mrc ? ph_store_lmdb_err(&c->err, mrc, "write reconciliation") : PH_OK;
}

static json_t *line_json(uint64_t index, const ph_recon_line *l, const ph_order *o,
                         const ph_attempt *a, int outcome, int64_t ours)
{
    json_t *j = json_pack(
        "{s:I,s:s,s:o,s:o}", "index", (json_int_t)index, "outcome", ph_recon_outcome_name(outcome),
        "theirs", l && l->charged ? money_json(l->amount) : json_null(), "ours", money_json(ours));
    if (l) {
        json_object_set_new(j, "line", json_integer(l->line));
        json_object_set_new(j, "charged", json_boolean(l->charged));
        if (l->ref[0])
            json_object_set_new(j, "ref", json_string(l->ref));
        if (l->supplier_order_id[0])
            json_object_set_new(j, "supplier_order_id", json_string(l->supplier_order_id));
        if (!l->charged)
            json_object_set_new(j, "amount", money_json(l->amount));
        if (l->time >= 0)
            json_object_set_new(j, "time_ms", json_integer(l->time));
    }
    if (a) {
        json_object_set_new(j, "order_id", json_integer((json_int_t)o->id));
        json_object_set_new(j, "attempt", json_integer(a->no));
        json_object_set_new(j, "attempt_state", json_string(ph_attempt_state_name(a->state)));
        if (!l) {
            json_object_set_new(j, "ref", json_string(a->ref));
            if (a->supplier_order_id[0])
                json_object_set_new(j, "supplier_order_id", json_string(a->supplier_order_id));
        }
    }
    return j;
}

static int check_recon_input(ph_cmd *c)
{
    const char *src = c->in.recon.source;
    if (!c->in.recon.supplier || !ph_ident_valid(c->in.recon.supplier, PH_SKU_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "recon: supplier: not an identifier");
    if (!c->in.recon.client || !ph_ident_valid(c->in.recon.client, PH_SKU_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "recon: client: not an identifier");
    if (!src || (strcmp(src, "csv") && strcmp(src, "plugin")))
        return ph_err_set(&c->err, PH_EINVAL, "recon: source: expected csv or plugin");
    if (c->in.recon.from >= c->in.recon.to || c->in.recon.from < 0)
        return ph_err_set(&c->err, PH_EINVAL, "recon: period: from must be before to");
    if (c->in.recon.nlines && (!c->in.recon.lines || !c->in.recon.cand))
        return ph_err_set(&c->err, PH_EINVAL, "recon: lines: missing");
    for (size_t i = 0; i < c->in.recon.nlines; i++) {
        const ph_recon_line *l = &c->in.recon.lines[i];
        if (!memchr(l->ref, 0, sizeof l->ref) ||
            !memchr(l->supplier_order_id, 0, sizeof l->supplier_order_id) ||
            (!l->ref[0] && !l->supplier_order_id[0]) || l->amount < 0)
            return ph_err_set(&c->err, PH_EINVAL, "recon: lines[%zu]: malformed", i);
    }
    return PH_OK;
}

int store_apply_recon(ph_wtxn *w, ph_cmd *c)
{
    int rc = check_recon_input(c);
    if (rc)
        return rc;
    uint8_t dkey[DIGEST_KEY_MAX];
    MDB_val dk = {digest_key(c->in.recon.supplier, c->in.recon.from, c->in.recon.to,
                             c->in.recon.sha256, dkey),
                  dkey},
            dv;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_RECON_DIGEST], &dk, &dv);
    if (mrc == 0 && dv.mv_size == 8) { /* the same statement again: the same run */
        memcpy(&c->recon_run, dv.mv_data, 8);
        c->replayed = 1;
        return PH_OK;
    }
    if (mrc != MDB_NOTFOUND)
        return mrc ? ph_store_lmdb_err(&c->err, mrc, "read reconciliation digest")
                   : ph_err_set(&c->err, PH_EIO, "recon_digest: malformed value");

    const size_t n = c->in.recon.nlines;
    const char *sup = c->in.recon.supplier;
    uint64_t run = ph_store_last_key(w->txn, w->s->dbi[DB_RECON_RUNS]) + 1;
    billing *bills = calloc(n + 1, sizeof *bills);
    uint8_t *billed = calloc(n + 1, 1);
    ph_recon_ref *named = calloc(n + 1, sizeof *named);
    uint64_t counts[PH_RECON_OUTCOMES + 1] = {0};
    size_t nbills = 0, nnamed = 0, index = 0;
    json_t *lines_sum = NULL;
    if (!bills || !billed || !named) {
        rc = ph_err_set(&c->err, PH_ENOMEM, "out of memory");
        goto out;
    }

    /* Which checked attempt each line names; charged lines sorted by attempt
     * then file order, so every one but the first of an attempt is billed again. */
    for (size_t i = 0; i < n && rc == PH_OK; i++) {
        ph_order *o;
        const ph_attempt *a;
        if ((rc = load_attempt_of(w, c, &c->in.recon.cand[i], sup, &o, &a)) != PH_OK)
            break;
        if (a && names_attempt(&c->in.recon.lines[i], a)) {
            named[nnamed++] = c->in.recon.cand[i];
            if (c->in.recon.lines[i].charged)
                bills[nbills++] = (billing){c->in.recon.cand[i], i};
        }
        ph_order_free(o);
    }
    if (rc)
        goto out;
    qsort(bills, nbills, sizeof *bills, billing_cmp);
    for (size_t i = 1; i < nbills; i++)
        if (!ref_cmp(&bills[i].at, &bills[i - 1].at))
            billed[bills[i].idx] = 1;
    qsort(named, nnamed, sizeof *named, ref_cmp);

    for (size_t i = 0; i < n && rc == PH_OK; i++, index++) {
        const ph_recon_line *l = &c->in.recon.lines[i];
        ph_order *o;
        const ph_attempt *a;
        if ((rc = load_attempt_of(w, c, &c->in.recon.cand[i], sup, &o, &a)) != PH_OK)
            break;
        if (a && !names_attempt(l, a))
            a = NULL;
        int64_t ours;
        int out = ph_recon_classify(l, a, o ? o->quantity : 0, billed[i], &ours);
        counts[out]++;
        if (ph_recon_outcome_discrepancy(out))
            rc = recon_discrepancy(w, c, l, o, a, out, ours);
        uint8_t key[16];
        line_key(run, index + 1, key);
        MDB_val k = {16, key};
        if (rc == PH_OK)
            rc = put_json(w, c, DB_RECON_LINES, &k, line_json(index + 1, l, o, a, out, ours),
                          MDB_APPEND);
        ph_order_free(o);
    }
    /* Successes of the period that no line names: their own lines, after the file's. */
    for (size_t i = 0; i < c->in.recon.nunbilled && rc == PH_OK; i++) {
        const ph_recon_ref *u = &c->in.recon.unbilled[i];
        ph_order *o;
        const ph_attempt *a;
        if (i && !ref_cmp(u, &c->in.recon.unbilled[i - 1]))
            continue;
        if ((rc = load_attempt_of(w, c, u, sup, &o, &a)) != PH_OK)
            break;
        if (a && a->state == PH_ATTEMPT_SUCCEEDED && a->created_at >= c->in.recon.from &&
            a->created_at < c->in.recon.to && !bsearch(u, named, nnamed, sizeof *named, ref_cmp)) {
            index++;
            counts[PH_RECON_NOT_BILLED]++;
            uint8_t key[16];
            line_key(run, index, key);
            MDB_val k = {16, key};
            rc = put_json(
                w, c, DB_RECON_LINES, &k,
                line_json(index, NULL, o, a, PH_RECON_NOT_BILLED, ph_attempt_cost(a, o->quantity)),
                MDB_APPEND);
        }
        ph_order_free(o);
    }
    if (rc)
        goto out;

    char sha[65], from[32], to[32];
    ph_hex_encode(c->in.recon.sha256, 32, sha);
    ph_time_format(c->in.recon.from, from, sizeof from);
    ph_time_format(c->in.recon.to, to, sizeof to);
    lines_sum = json_object();
    uint64_t disc = 0;
    for (int k = 1; k <= PH_RECON_OUTCOMES; k++) {
        json_object_set_new(lines_sum, ph_recon_outcome_name(k),
                            json_integer((json_int_t)counts[k]));
        if (ph_recon_outcome_discrepancy(k))
            disc += counts[k];
    }
    json_t *hdr =
        json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:O}", "id", (json_int_t)run, "supplier",
                  sup, "source", c->in.recon.source, "client", c->in.recon.client, "from", from,
                  "to", to, "sha256", sha, "lines", (json_int_t)index, "discrepancies",
                  (json_int_t)disc, "counts", lines_sum);
    char at[32];
    json_object_set_new(hdr, "created_at", json_string(ph_time_format(c->now, at, sizeof at)));
    MDB_val rk = {8, &run};
    if ((rc = put_json(w, c, DB_RECON_RUNS, &rk, hdr, MDB_APPEND)) != PH_OK)
        goto out;
    MDB_val rv = {8, &run};
    if ((mrc = mdb_put(w->txn, w->s->dbi[DB_RECON_DIGEST], &dk, &rv, MDB_NOOVERWRITE))) {
        rc = ph_store_lmdb_err(&c->err, mrc, "write reconciliation digest");
        goto out;
    }
    /* the event carries ids and counts only, never a line's text */
    rc = store_emit(w, c->now, "recon.completed",
                    json_pack("{s:I,s:s,s:s,s:s,s:I,s:I,s:O}", "run", (json_int_t)run, "supplier",
                              sup, "from", from, "to", to, "lines", (json_int_t)index,
                              "discrepancies", (json_int_t)disc, "counts", lines_sum),
                    &c->err);
    if (rc == PH_OK)
        c->recon_run = run;
out:
    json_decref(lines_sum);
    free(bills);
    free(billed);
    free(named);
    return rc;
}

/* ---- reads -------------------------------------------------------------------------- */

/* The attempts of one supply record, read in the prepare's snapshot: only the
 * records a line names or the period's index keys point at are decoded. */
static int supply_get(ph_store *s, MDB_txn *txn, uint64_t id, ph_order **out, ph_err *err)
{
    *out = NULL;
    MDB_val k = {8, &id}, v;
    int mrc = mdb_get(txn, s->dbi[DB_SUPPLY], &k, &v);
    if (mrc == MDB_NOTFOUND)
        return PH_OK;
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read supply");
    ph_order *o = calloc(1, sizeof *o);
    if (!o)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    if (ph_supply_decode(&v, o) != PH_OK) {
        ph_order_free(o);
        return ph_err_set(err, PH_EIO, "supply: malformed record");
    }
    o->id = id;
    *out = o;
    return PH_OK;
}

/* The order and attempt numbers a reference of ours ends with
 * ("<uid>-<order id>-<no>", store_apply_supply.c); 0 when it cannot be one.
 * The attempt found must still carry the reference itself. */
static int ref_parse(const char *ref, ph_recon_ref *at)
{
    const char *dash = strrchr(ref, '-');
    if (!dash || dash == ref)
        return 0;
    const char *prev = dash - 1;
    while (prev > ref && *prev != '-')
        prev--;
    if (*prev != '-')
        return 0;
    char *end;
    if (prev[1] < '0' || prev[1] > '9' || dash[1] < '0' || dash[1] > '9')
        return 0;
    unsigned long long id = strtoull(prev + 1, &end, 10);
    if (end != dash)
        return 0;
    unsigned long long no = strtoull(dash + 1, &end, 10);
    if (*end || !id || !no || no > UINT32_MAX)
        return 0;
    *at = (ph_recon_ref){id, (uint32_t)no};
    return 1;
}

/* The greatest attempt (order id, no) of supplier whose supplier order id is
 * soid, into *at (order_id 0: none): the one a walk of every attempt in key
 * order would have met last. */
static int soid_last(MDB_cursor *cur, const char *supplier, const char *soid, ph_recon_ref *at,
                     ph_err *err)
{
    uint8_t key[SATT_KEY_MAX];
    size_t plen = store_satt_soid_key(supplier, soid, 0, 0, key);
    MDB_val k = {plen, key}, v;
    int mrc;
    *at = (ph_recon_ref){0, 0};
    for (int op = MDB_SET_RANGE; (mrc = mdb_cursor_get(cur, &k, &v, op)) == 0; op = MDB_NEXT) {
        if (k.mv_size != plen + 12 || memcmp(k.mv_data, key, plen))
            break;
        store_satt_ref_of((const uint8_t *)k.mv_data + plen, at);
    }
    return mrc && mrc != MDB_NOTFOUND ? ph_store_lmdb_err(err, mrc, "read supply_att") : PH_OK;
}

/* Which attempt of supplier each line names: by reference (one read of the
 * order it names), else by supplier order id (supply_att). The same answer
 * as a walk of every attempt: a reference names at most one attempt, and a
 * supplier order id the last attempt carrying it. */
static int prepare_named(ph_store *s, MDB_txn *txn, const char *supplier,
                         const ph_recon_line *lines, size_t n, ph_recon_ref *cand, ph_err *err)
{
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(txn, s->dbi[DB_SUPPLY_ATT], &cur), rc = PH_OK;
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "open supply_att");
    for (size_t i = 0; i < n && rc == PH_OK; i++) {
        const ph_recon_line *l = &lines[i];
        ph_recon_ref at;
        cand[i] = (ph_recon_ref){0, 0};
        if (l->ref[0] && ref_parse(l->ref, &at)) {
            ph_order *o;
            if ((rc = supply_get(s, txn, at.order_id, &o, err)) != PH_OK)
                break;
            const ph_attempt *a = o && at.no <= o->nattempts ? &o->attempts[at.no - 1] : NULL;
            if (a && a->no == at.no && !strcmp(a->supplier, supplier) && !strcmp(a->ref, l->ref))
                cand[i] = at;
            ph_order_free(o);
            if (cand[i].order_id)
                continue;
        }
        if (l->supplier_order_id[0])
            rc = soid_last(cur, supplier, l->supplier_order_id, &cand[i], err);
    }
    mdb_cursor_close(cur);
    return rc;
}

/* The attempts of supplier created in [from, to) that succeeded, in (order
 * id, no) order, from supply_att's time keys: only the period is read. */
static int prepare_period(ph_store *s, MDB_txn *txn, const char *supplier, int64_t from, int64_t to,
                          ph_recon_ref **out, size_t *nout, ph_err *err)
{
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(txn, s->dbi[DB_SUPPLY_ATT], &cur), rc = PH_OK;
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "open supply_att");
    uint8_t key[SATT_KEY_MAX];
    size_t plen =
        store_satt_time_key(supplier, from < 0 ? 0 : from, 0, 0, key) - 8; /* 't' supplier NUL */
    MDB_val k = {plen + 8, key}, v;
    ph_recon_ref *ub = NULL;
    size_t nub = 0, cap = 0;
    for (int op = MDB_SET_RANGE; rc == PH_OK && (mrc = mdb_cursor_get(cur, &k, &v, op)) == 0;
         op = MDB_NEXT) {
        const uint8_t *p = k.mv_data;
        if (k.mv_size != plen + 20 || memcmp(p, key, plen))
            break;
        int64_t at = 0;
        for (int b = 0; b < 8; b++)
            at = (int64_t)((uint64_t)at << 8 | p[plen + b]);
        if (at >= to)
            break;
        ph_recon_ref r;
        store_satt_ref_of(p + plen + 8, &r);
        ph_order *o;
        if ((rc = supply_get(s, txn, r.order_id, &o, err)) != PH_OK)
            break;
        const ph_attempt *a =
            o && r.no >= 1 && r.no <= o->nattempts ? &o->attempts[r.no - 1] : NULL;
        if (a && a->state == PH_ATTEMPT_SUCCEEDED && !strcmp(a->supplier, supplier) &&
            a->created_at >= from && a->created_at < to) {
            if (nub == cap) {
                ph_recon_ref *g = ph_grow(ub, &cap, sizeof *g, 64);
                if (!g)
                    rc = ph_err_set(err, PH_ENOMEM, "out of memory");
                else
                    ub = g;
            }
            if (rc == PH_OK)
                ub[nub++] = r;
        }
        ph_order_free(o);
    }
    if (rc == PH_OK && mrc && mrc != MDB_NOTFOUND)
        rc = ph_store_lmdb_err(err, mrc, "read supply_att");
    mdb_cursor_close(cur);
    if (rc) {
        free(ub);
        return rc;
    }
    /* the writer meets them in attempt order, as a walk of `supply` gave them */
    if (nub > 1)
        qsort(ub, nub, sizeof *ub, ref_cmp);
    *out = ub;
    *nout = nub;
    return PH_OK;
}

int ph_store_recon_prepare(ph_store *s, const char *supplier, int64_t from, int64_t to,
                           const ph_recon_line *lines, size_t n, ph_recon_ref *cand,
                           ph_recon_ref **unbilled, size_t *nunbilled, ph_err *err)
{
    ph_recon_ref *ub = NULL;
    size_t nub = 0;
    *unbilled = NULL;
    *nunbilled = 0;
    if (strnlen(supplier, PH_SKU_MAX + 1) > PH_SKU_MAX) { /* no attempt has such a supplier */
        for (size_t i = 0; i < n; i++)
            cand[i] = (ph_recon_ref){0, 0};
        return PH_OK;
    }
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    rc = prepare_named(s, txn, supplier, lines, n, cand, err);
    if (rc == PH_OK)
        rc = prepare_period(s, txn, supplier, from, to, &ub, &nub, err);
    ph_store_read_end(s, txn);
    if (rc)
        return rc;
    /* drop the successes a line names: what remains is not billed */
    size_t kept = 0;
    ph_recon_ref *named = calloc(n + 1, sizeof *named);
    if (!named) {
        free(ub);
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    size_t nnamed = 0;
    for (size_t i = 0; i < n; i++)
        if (cand[i].order_id)
            named[nnamed++] = cand[i];
    qsort(named, nnamed, sizeof *named, ref_cmp);
    for (size_t i = 0; i < nub; i++)
        if (!bsearch(&ub[i], named, nnamed, sizeof *named, ref_cmp))
            ub[kept++] = ub[i];
    free(named);
    *unbilled = ub;
    *nunbilled = kept;
    return PH_OK;
}

int ph_store_recon_find(ph_store *s, const char *supplier, int64_t from, int64_t to,
                        const uint8_t sha256[32], uint64_t *run, ph_err *err)
{
    *run = 0;
    if (!ph_ident_valid(supplier, PH_SKU_MAX))
        return PH_OK;
    uint8_t dkey[DIGEST_KEY_MAX];
    MDB_val k = {digest_key(supplier, from, to, sha256, dkey), dkey}, v;
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    int mrc = mdb_get(txn, s->dbi[DB_RECON_DIGEST], &k, &v);
    if (mrc == 0 && v.mv_size == 8)
        memcpy(run, v.mv_data, 8);
    else if (mrc != MDB_NOTFOUND)
        rc = mrc ? ph_store_lmdb_err(err, mrc, "read reconciliation digest")
                 : ph_err_set(err, PH_EIO, "recon_digest: malformed value");
    ph_store_read_end(s, txn);
    return rc;
}

static char *val_text(const MDB_val *v)
{
    char *t = malloc(v->mv_size + 1);
    if (t) {
        memcpy(t, v->mv_data, v->mv_size);
        t[v->mv_size] = 0;
    }
    return t;
}

/* Collects up to limit values of db from the cursor position op onward while
 * `more` says the key still belongs. */
typedef int (*key_ok_fn)(const MDB_val *k, const void *arg);

static int collect(ph_store *s, int db, MDB_val *start, key_ok_fn ok, const void *arg, size_t limit,
                   char ***out, size_t *n, ph_err *err)
{
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    MDB_cursor *cur;
    MDB_val k = *start, v;
    char **list = calloc(limit + 1, sizeof *list);
    size_t cnt = 0;
    int mrc = list ? mdb_cursor_open(txn, s->dbi[db], &cur) : 0;
    if (!list)
        rc = ph_err_set(err, PH_ENOMEM, "out of memory");
    else if (mrc)
        rc = ph_store_lmdb_err(err, mrc, "open reconciliation");
    else {
        for (int op = MDB_SET_RANGE; cnt < limit && (mrc = mdb_cursor_get(cur, &k, &v, op)) == 0;
             op = MDB_NEXT) {
            if (!ok(&k, arg))
                break;
            if (!(list[cnt] = val_text(&v))) {
                rc = ph_err_set(err, PH_ENOMEM, "out of memory");
                break;
            }
            cnt++;
        }
        if (rc == PH_OK && mrc && mrc != MDB_NOTFOUND)
            rc = ph_store_lmdb_err(err, mrc, "read reconciliation");
        mdb_cursor_close(cur);
    }
    ph_store_read_end(s, txn);
    if (rc) {
        ph_store_event_list_free(list, cnt);
        return rc;
    }
    *out = list;
    *n = cnt;
    return PH_OK;
}

static int any_key(const MDB_val *k, const void *arg)
{
    (void)arg;
    return k->mv_size == 8;
}

int ph_store_recon_list(ph_store *s, uint64_t after, size_t limit, char ***out, size_t *n,
                        ph_err *err)
{
    uint64_t first = after + 1;
    MDB_val k = {8, &first};
    return collect(s, DB_RECON_RUNS, &k, any_key, NULL, limit, out, n, err);
}

int ph_store_recon_get(ph_store *s, uint64_t id, char **out, ph_err *err)
{
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    MDB_val k = {8, &id}, v;
    int mrc = mdb_get(txn, s->dbi[DB_RECON_RUNS], &k, &v);
    if (mrc == MDB_NOTFOUND)
        rc =
            ph_err_set(err, PH_ENOTFOUND, "reconciliation %llu: not found", (unsigned long long)id);
    else if (mrc)
        rc = ph_store_lmdb_err(err, mrc, "read reconciliation");
    else if (!(*out = val_text(&v)))
        rc = ph_err_set(err, PH_ENOMEM, "out of memory");
    ph_store_read_end(s, txn);
    return rc;
}

static int same_run(const MDB_val *k, const void *arg)
{
    return k->mv_size == 16 && !memcmp(k->mv_data, arg, 8);
}

int ph_store_recon_lines(ph_store *s, uint64_t id, uint64_t after, size_t limit, char ***out,
                         size_t *n, ph_err *err)
{
    char *hdr;
    int rc = ph_store_recon_get(s, id, &hdr, err);
    if (rc)
        return rc;
    free(hdr);
    uint8_t key[16];
    line_key(id, after == UINT64_MAX ? after : after + 1, key);
    MDB_val k = {16, key};
    return collect(s, DB_RECON_LINES, &k, same_run, key, limit, out, n, err);
}

/* ---- the invariant (--check-store) ------------------------------------------------ */

static uint64_t be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

int store_check_recon(ph_store *s, MDB_txn *txn, ph_err *err)
{
    MDB_cursor *runs, *lines, *dig;
    MDB_val k, v, lk, lv;
    int rc = PH_OK, mrc;
    uint64_t nruns = 0;
    if ((mrc = mdb_cursor_open(txn, s->dbi[DB_RECON_RUNS], &runs)))
        return ph_store_lmdb_err(err, mrc, "open recon_runs");
    if ((mrc = mdb_cursor_open(txn, s->dbi[DB_RECON_LINES], &lines))) {
        mdb_cursor_close(runs);
        return ph_store_lmdb_err(err, mrc, "open recon_lines");
    }
    /* every run's lines are its keys 1..lines, each with a known outcome */
    int lop = MDB_FIRST, lmrc = mdb_cursor_get(lines, &lk, &lv, lop);
    for (int op = MDB_FIRST; rc == PH_OK && mdb_cursor_get(runs, &k, &v, op) == 0; op = MDB_NEXT) {
        uint64_t id;
        memcpy(&id, k.mv_data, 8);
        json_t *run = k.mv_size == 8 ? json_loadb(v.mv_data, v.mv_size, 0, NULL) : NULL;
        json_t *n = json_object_get(run, "lines");
        if (!json_is_integer(n) || json_integer_value(json_object_get(run, "id")) != (json_int_t)id)
            rc = ph_err_set(err, PH_EIO, "recon_runs: run %llu: malformed", (unsigned long long)id);
        uint64_t want = rc == PH_OK ? (uint64_t)json_integer_value(n) : 0;
        json_decref(run);
        nruns++;
        for (uint64_t i = 1; rc == PH_OK && i <= want; i++) {
            if (lmrc || lk.mv_size != 16 || be64_get(lk.mv_data) != id ||
                be64_get((const uint8_t *)lk.mv_data + 8) != i) {
                rc = ph_err_set(err, PH_EIO, "recon_lines: run %llu lacks line %llu",
                                (unsigned long long)id, (unsigned long long)i);
                break;
            }
            json_t *l = json_loadb(lv.mv_data, lv.mv_size, 0, NULL);
            const char *o = json_string_value(json_object_get(l, "outcome"));
            int known = 0;
            for (int x = 1; o && x <= PH_RECON_OUTCOMES; x++)
                known |= !strcmp(o, ph_recon_outcome_name(x));
            json_decref(l);
            if (!known)
                rc = ph_err_set(err, PH_EIO, "recon_lines: run %llu line %llu: malformed",
                                (unsigned long long)id, (unsigned long long)i);
            lmrc = mdb_cursor_get(lines, &lk, &lv, lop = MDB_NEXT);
        }
    }
    if (rc == PH_OK && lmrc == 0)
        rc = ph_err_set(err, PH_EIO, "recon_lines: a line of run %llu beyond its run's lines",
                        (unsigned long long)(lk.mv_size == 16 ? be64_get(lk.mv_data) : 0));
    mdb_cursor_close(lines);
    /* every digest names a run, and every run has its digest */
    uint64_t ndig = 0;
    if (rc == PH_OK && (mrc = mdb_cursor_open(txn, s->dbi[DB_RECON_DIGEST], &dig)))
        rc = ph_store_lmdb_err(err, mrc, "open recon_digest");
    else if (rc == PH_OK) {
        for (int op = MDB_FIRST; rc == PH_OK && mdb_cursor_get(dig, &k, &v, op) == 0;
             op = MDB_NEXT, ndig++) {
            MDB_val rv;
            if (v.mv_size != 8 || mdb_cursor_get(runs, &v, &rv, MDB_SET) != 0)
                rc = ph_err_set(err, PH_EIO, "recon_digest: entry %llu names no run",
                                (unsigned long long)ndig + 1);
        }
        mdb_cursor_close(dig);
        if (rc == PH_OK && ndig != nruns)
            rc = ph_err_set(err, PH_EIO, "%llu reconciliation runs but %llu statement digests",
                            (unsigned long long)nruns, (unsigned long long)ndig);
    }
    mdb_cursor_close(runs);
    return rc;
}
