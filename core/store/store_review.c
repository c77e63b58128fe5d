/*
 * store_review.c — the store's side of issuance protection (issue 15): an
 * order's risk record, written in the order's own transaction; held and
 * denied orders; the review queue (`reviews`) and ops' release or block of a
 * held order (PH_CMD_REVIEW); their reads and invariants.
 *
 * The store never evaluates a rule: the HTTP thread decided (risk/risk.h) and
 * wrote the record (http/end_user.c); the writer acts on the verdict and keeps
 * the record, byte for byte, under the order id. Order ids only grow, so each
 * record is appended at the right edge of `order_risk` (MDB_APPEND). The
 * record holds subject keys and masked values only, the phone sealed
 * (docs/store.md, "Order risk"): nothing here reads or writes a plaintext
 * personal value, and no event carries one, masked or not.
 */
#include "store/store_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "config/config.h"

/* Every record starts so (end_user.c writes the members in a fixed order):
 * the scan reads "at" without parsing the record. */
#define RECORD_PREFIX     "{\"v\":1,\"at\":"
#define RECORD_PREFIX_LEN (sizeof RECORD_PREFIX - 1)
#define SCAN_SLACK_MS     60000 /* an order's time may lag its id (store.h) */

/* ---- the record as the writer takes it -------------------------------------- */

static int record_ok(const char *rec, size_t len)
{
    return rec && len > RECORD_PREFIX_LEN && len <= PH_RISK_RECORD_MAX &&
           memcmp(rec, RECORD_PREFIX, RECORD_PREFIX_LEN) == 0 && rec[len - 1] == '}' &&
           !memchr(rec, 0, len);
}

int store_risk_input_ok(ph_cmd *c, const ph_order_risk *risk)
{
    if (!risk)
        return PH_OK;
    if (risk->verdict < PH_VERDICT_FULFIL || risk->verdict > PH_VERDICT_DENY)
        return ph_err_set(&c->err, PH_EINVAL, "risk: verdict: %d is not a verdict", risk->verdict);
    if (risk->verdict != PH_VERDICT_FULFIL &&
        (!risk->rule || !store_text_ok(risk->rule, PH_REASON_MAX, 0)))
        return ph_err_set(&c->err, PH_EINVAL, "risk: rule: a hold or deny names its rule");
    if (risk->verdict == PH_VERDICT_HOLD && risk->hold_until <= 0)
        return ph_err_set(&c->err, PH_EINVAL, "risk: hold_until: expected a time");
    if (risk->record && !record_ok(risk->record, risk->record_len))
        return ph_err_set(&c->err, PH_EINVAL,
                          "risk: record: expected a risk record of at most %d bytes",
                          PH_RISK_RECORD_MAX);
    return PH_OK;
}

void store_risk_decide(ph_order *o, const ph_order_risk *risk)
{
    if (risk->verdict == PH_VERDICT_HOLD) {
        o->state = PH_ORDER_HELD;
        o->reason[0] = 0;
    } else {
        o->state = PH_ORDER_FAILED;
        snprintf(o->reason, sizeof o->reason, "denied_by_risk");
    }
}

/* An order event's first members, then the caller's. */
static json_t *order_fields(const ph_order *o)
{
    return json_pack("{s:I,s:s,s:s,s:s}", "order_id", (json_int_t)o->id, "client", o->client,
                     "client_order_id", o->client_order_id, "sku", o->sku);
}

static int emit_order(ph_wtxn *w, ph_cmd *c, const ph_order *o, const char *type, json_t *extra)
{
    json_t *f = order_fields(o);
    if (f && extra)
        json_object_update(f, extra);
    json_decref(extra);
    return store_emit(w, c->now, type, f, &c->err); /* NULL f: out of memory */
}

/* order.flagged: an allowed order some rule fired on (dry-run or an allow
 * rule); its hits as the record has them (rule ids and actions only). */
static int emit_flagged(ph_wtxn *w, ph_cmd *c, const ph_order *o, const ph_order_risk *risk)
{
    static const char mark[] = "\"hits\":[{";
    if (!risk->record || !memmem(risk->record, risk->record_len, mark, sizeof mark - 1))
        return PH_OK;
    json_t *rec = json_loadb(risk->record, risk->record_len, 0, NULL);
    json_t *hits = json_object_get(json_object_get(rec, "decision"), "hits");
    int rc = PH_OK;
    if (json_is_array(hits) && json_array_size(hits))
        rc = emit_order(w, c, o, "order.flagged", json_pack("{s:O}", "hits", hits));
    json_decref(rec);
    return rc;
}

static int put_review(ph_wtxn *w, ph_cmd *c, uint64_t id, int64_t hold_until)
{
    MDB_val k = {8, &id}, v = {8, &hold_until};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_REVIEWS], &k, &v, MDB_APPEND);
    return mrc ? ph_store_lmdb_err(&c->err, mrc, "write review") : PH_OK;
}

int store_risk_record(ph_wtxn *w, ph_cmd *c, const ph_order *o, const ph_order_risk *risk)
{
    if (!risk)
        return PH_OK;
    int rc = PH_OK;
    if (risk->record) {
        uint64_t id = o->id;
        MDB_val k = {8, &id}, v = {risk->record_len, (void *)risk->record};
        int mrc = mdb_put(w->txn, w->s->dbi[DB_ORDER_RISK], &k, &v, MDB_APPEND);
        if (mrc)
            return ph_store_lmdb_err(&c->err, mrc, "write order risk");
    }
    switch (risk->verdict) {
    case PH_VERDICT_HOLD:
        if ((rc = put_review(w, c, o->id, risk->hold_until)) == PH_OK)
            rc = emit_order(w, c, o, "order.held",
                            json_pack("{s:s,s:I}", "rule", risk->rule, "hold_until",
                                      (json_int_t)risk->hold_until));
        return rc;
    case PH_VERDICT_DENY:
        if ((rc = emit_order(w, c, o, "order.denied", json_pack("{s:s}", "rule", risk->rule))) ==
            PH_OK)
            rc = store_emit_outcome(w, c->now, o, 0, &c->err);
        return rc;
    default:
        return emit_flagged(w, c, o, risk);
    }
}

/* ---- PH_CMD_REVIEW ---------------------------------------------------------- */

static int check_review_input(ph_cmd *c)
{
    const char *note = c->in.review.note;
    if (!ph_ident_valid(c->in.review.who, PH_SKU_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "who: expected a client name or \"timeout\"");
    if (note && note[0] && !store_note_ok(note))
        return ph_err_set(&c->err, PH_EINVAL,
                          "note: expected 1 to %d bytes of text without control characters",
                          PH_NOTE_MAX);
    return PH_OK;
}

/* The record gets the review's outcome (rewritten in place: same key). */
static int record_outcome(ph_wtxn *w, ph_cmd *c, uint64_t id)
{
    MDB_val k = {8, &id}, v;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_ORDER_RISK], &k, &v);
    if (mrc == MDB_NOTFOUND)
        return PH_OK; /* a verdict without a record */
    if (mrc)
        return ph_store_lmdb_err(&c->err, mrc, "read order risk");
    json_t *rec = json_loadb(v.mv_data, v.mv_size, 0, NULL);
    if (!json_is_object(rec)) {
        json_decref(rec);
        return ph_err_set(&c->err, PH_EIO, "order %llu: malformed risk record",
                          (unsigned long long)id);
    }
    const char *note = c->in.review.note;
    json_t *r = json_pack("{s:s,s:s,s:I}", "outcome", c->in.review.release ? "released" : "blocked",
                          "by", c->in.review.who, "at", (json_int_t)c->now);
    if (r && note && note[0])
        json_object_set_new(r, "note", json_string(note));
    json_object_set_new(rec, "review", r);
    char *txt = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(rec);
    if (!txt || !r)
        return ph_json_free(txt), ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    MDB_val nv = {strlen(txt), txt};
    mrc = mdb_put(w->txn, w->s->dbi[DB_ORDER_RISK], &k, &nv, 0);
    ph_json_free(txt);
    return mrc ? ph_store_lmdb_err(&c->err, mrc, "write order risk") : PH_OK;
}

/* A held card order released: its codes from stock, tried in a nested
 * transaction so a short stock takes nothing (then a supplier, or failed). */
static int release_from_stock(ph_wtxn *w, ph_cmd *c, ph_order *o)
{
    MDB_txn *parent = w->txn, *child;
    ph_ids ids = w->ids;
    int mrc = mdb_txn_begin(mdb_txn_env(parent), parent, 0, &child);
    if (mrc)
        return ph_store_lmdb_err(&c->err, mrc, "begin nested");
    w->txn = child;
    int rc = store_take_codes(w, c, o->sku, o);
    w->txn = parent;
    if (rc == PH_OK) {
        if ((mrc = mdb_txn_commit(child)) != 0)
            return ph_store_lmdb_err(&c->err, mrc, "commit nested");
        o->state = PH_ORDER_SUCCEEDED;
        o->updated_at = c->now;
        if ((rc = store_put_order(w, o, 0, &c->err)) == PH_OK &&
            (rc = store_emit_outcome(w, c->now, o, 0, &c->err)) == PH_OK)
            rc = store_alerts_stock(w, o->sku, &c->err);
        return rc;
    }
    mdb_txn_abort(child);
    w->ids = ids;
    if (rc != PH_ENOSTOCK)
        return rc;
    for (size_t i = 0; i < o->ncodes; i++)
        free(o->codes[i].sealed);
    free(o->codes);
    o->codes = NULL;
    o->ncodes = 0;
    o->cost = 0;
    memset(&c->err, 0, sizeof c->err);
    if (c->in.review.first.supplier) {
        o->delivery = PH_DELIVERY_CARD_CODE; /* now a supplier order */
        return store_supply_release(w, c, o, &c->in.review.first, NULL);
    }
    o->state = PH_ORDER_FAILED;
    o->updated_at = c->now;
    snprintf(o->reason, sizeof o->reason, "%s",
             c->in.review.fail_reason ? c->in.review.fail_reason : "out_of_stock");
    if ((rc = store_put_order(w, o, 0, &c->err)) == PH_OK)
        rc = store_emit_outcome(w, c->now, o, 0, &c->err);
    return rc;
}

static int review_write(ph_wtxn *w, ph_cmd *c, ph_order *o)
{
    uint64_t id = o->id;
    MDB_val k = {8, &id};
    int mrc = mdb_del(w->txn, w->s->dbi[DB_REVIEWS], &k, NULL);
    if (mrc)
        return mrc == MDB_NOTFOUND ? ph_err_set(&c->err, PH_EIO, "order %llu: held, not in reviews",
                                                (unsigned long long)id)
                                   : ph_store_lmdb_err(&c->err, mrc, "write review");
    int rc = record_outcome(w, c, id);
    if (rc)
        return rc;
    const char *by = c->in.review.who;
    if (!c->in.review.release) {
        if ((rc = emit_order(w, c, o, "order.blocked", json_pack("{s:s}", "by", by))) != PH_OK)
            return rc;
        if (o->delivery == PH_DELIVERY_BUNDLE) { /* every held component with it, nothing bought */
            rc = store_bundle_dies(w, c, o, "blocked_by_review");
            if (rc == PH_OK && store_grant_exists(w, o->id))
                rc = store_grant_blocked(w, c, o);
            return rc;
        }
        o->state = PH_ORDER_FAILED;
        o->updated_at = c->now;
        snprintf(o->reason, sizeof o->reason, "blocked_by_review");
        rc = ph_order_via_supplier(o) ? store_put_supply_order(w, o, 0, &c->err)
                                      : store_put_order(w, o, 0, &c->err);
        if (rc == PH_OK && store_grant_exists(w, o->id)) /* its grant dies with it */
            rc = store_grant_blocked(w, c, o);
        return rc ? rc : store_emit_outcome(w, c->now, o, 0, &c->err);
    }
    if ((rc = emit_order(w, c, o, "order.released", json_pack("{s:s}", "by", by))) != PH_OK)
        return rc;
    if (store_grant_exists(w, o->id)) /* granted now: reserved, not delivered */
        return store_grant_release(w, c, o);
    if (o->delivery == PH_DELIVERY_BUNDLE) /* bought now as a new bundle would be */
        return store_bundle_release(w, c, o, 0);
    if (ph_order_via_supplier(o))
        return store_supply_release(w, c, o, &c->in.review.first, c->in.review.fail_reason);
    return release_from_stock(w, c, o);
}

int store_apply_review(ph_wtxn *w, ph_cmd *c)
{
    ph_order *o = NULL;
    int rc = check_review_input(c);
    if (rc || (rc = ph_order_load(w->s, w->txn, c->in.review.order_id, 0, &o, &c->err)) != PH_OK)
        return rc;
    if (o->state != PH_ORDER_HELD)
        rc = ph_err_set(&c->err, PH_ESTATE, "order %llu is %s, not held", (unsigned long long)o->id,
                        ph_order_state_name(o->state));
    else
        rc = review_write(w, c, o);
    if (rc) {
        ph_order_free(o);
        return rc;
    }
    c->order = o;
    return PH_OK;
}

/* ---- reads -------------------------------------------------------------------- */

int ph_store_order_risk_get(ph_store *s, uint64_t order_id, char **json, ph_err *err)
{
    MDB_val k = {8, &order_id};
    int rc = store_read_text(s, DB_ORDER_RISK, &k, "read order risk", json, err);
    return rc == PH_ENOTFOUND ? ph_err_set(err, PH_ENOTFOUND, "order %llu: no risk record",
                                           (unsigned long long)order_id)
                              : rc;
}

static int review_row(const MDB_val *k, const MDB_val *v, ph_review_row *row)
{
    if (k->mv_size != 8 || v->mv_size != 8)
        return 0;
    memcpy(&row->order_id, k->mv_data, 8);
    memcpy(&row->hold_until, v->mv_data, 8);
    return 1;
}

int ph_store_review_list(ph_store *s, uint64_t after, size_t limit, ph_review_row **out, size_t *n,
                         uint64_t *next_after, ph_err *err)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    *out = NULL;
    *n = 0;
    *next_after = 0;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    ph_review_row *rows = calloc(limit ? limit : 1, sizeof *rows);
    if (!rows || mdb_cursor_open(txn, s->dbi[DB_REVIEWS], &cur)) {
        ph_store_read_end(s, txn);
        free(rows);
        return rows ? ph_err_set(err, PH_EIO, "store: cannot open reviews")
                    : ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    uint64_t from = after + 1;
    MDB_val k = {8, &from}, v;
    for (int mrc = after == UINT64_MAX ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (*n == limit) {
            *next_after = *n ? rows[*n - 1].order_id : 0;
            break;
        }
        if (!review_row(&k, &v, &rows[*n])) {
            rc = ph_err_set(err, PH_EIO, "reviews: malformed entry");
            break;
        }
        (*n)++;
    }
    mdb_cursor_close(cur);
    ph_store_read_end(s, txn);
    if (rc) {
        free(rows);
        *n = 0;
        return rc;
    }
    *out = rows;
    return PH_OK;
}

int ph_store_review_due(ph_store *s, int64_t now, uint64_t *ids, size_t max, size_t *n, ph_err *err)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    *n = 0;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    if (mdb_cursor_open(txn, s->dbi[DB_REVIEWS], &cur)) {
        ph_store_read_end(s, txn);
        return ph_err_set(err, PH_EIO, "store: cannot open reviews");
    }
    for (int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && *n < max;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        ph_review_row row;
        if (!review_row(&k, &v, &row)) {
            rc = ph_err_set(err, PH_EIO, "reviews: malformed entry");
            break;
        }
        if (row.hold_until <= now)
            ids[(*n)++] = row.order_id;
    }
    mdb_cursor_close(cur);
    ph_store_read_end(s, txn);
    return rc;
}

/* The record's "at" (ms), read from its fixed prefix; -1 when malformed. */
static int64_t record_at(const MDB_val *v)
{
    if (v->mv_size <= RECORD_PREFIX_LEN || memcmp(v->mv_data, RECORD_PREFIX, RECORD_PREFIX_LEN))
        return -1;
    const char *p = (const char *)v->mv_data + RECORD_PREFIX_LEN,
               *end = (const char *)v->mv_data + v->mv_size;
    int64_t at = 0;
    if (p == end || *p < '0' || *p > '9')
        return -1;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (at > (INT64_MAX - 9) / 10)
            return -1;
        at = at * 10 + (*p - '0');
    }
    return at;
}

int ph_store_order_risk_scan(ph_store *s, int64_t since, ph_order_risk_fn fn, void *arg,
                             ph_err *err)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    if (mdb_cursor_open(txn, s->dbi[DB_ORDER_RISK], &cur)) {
        ph_store_read_end(s, txn);
        return ph_err_set(err, PH_EIO, "store: cannot open order risk");
    }
    /* back from the newest to the first record older than since (and the
     * slack), then forward: the records of the window, oldest first */
    int64_t at = 0;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    while (mrc == 0 && (at = record_at(&v)) >= since - SCAN_SLACK_MS)
        mrc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    if (mrc == MDB_NOTFOUND) /* walked past the first (or none at all) */
        mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    else if (mrc == 0 && at >= 0) /* v is older than the window: start after it */
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    for (; mrc == 0 && rc == PH_OK; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        int64_t at = record_at(&v);
        uint64_t id;
        if (at < 0 || k.mv_size != 8) {
            rc = ph_err_set(err, PH_EIO, "order risk: malformed record");
            break;
        }
        memcpy(&id, k.mv_data, 8);
        if (at >= since)
            rc = fn(arg, id, v.mv_data, v.mv_size);
    }
    mdb_cursor_close(cur);
    ph_store_read_end(s, txn);
    return rc;
}

/* ---- invariants ----------------------------------------------------------------- */

int store_review_has(ph_store *s, MDB_txn *txn, uint64_t order_id)
{
    MDB_val k = {8, &order_id}, v;
    return mdb_get(txn, s->dbi[DB_REVIEWS], &k, &v) == 0;
}

int store_check_reviews(ph_store *s, MDB_txn *txn, uint64_t held, ph_err *err)
{
    MDB_cursor *cur;
    MDB_val k, v;
    uint64_t n = 0;
    int rc = PH_OK;
    if (mdb_cursor_open(txn, s->dbi[DB_REVIEWS], &cur))
        return ph_err_set(err, PH_EIO, "store: cannot open reviews");
    for (int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == PH_OK;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), n++) {
        ph_review_row row;
        ph_order o;
        const uint8_t *ids;
        MDB_val ok, ov;
        if (!review_row(&k, &v, &row)) {
            rc = ph_err_set(err, PH_EIO, "reviews: malformed entry");
            break;
        }
        ok = (MDB_val){8, &row.order_id};
        if (mdb_get(txn, s->dbi[DB_ORDERS], &ok, &ov) ||
            ph_order_decode(&ov, row.order_id, &o, &ids) != PH_OK)
            rc = ph_err_set(err, PH_EIO, "reviews: order %llu missing",
                            (unsigned long long)row.order_id);
        else if (o.state != PH_ORDER_HELD)
            rc = ph_err_set(err, PH_EIO, "reviews: order %llu is %s, not held",
                            (unsigned long long)row.order_id, ph_order_state_name(o.state));
    }
    mdb_cursor_close(cur);
    if (rc == PH_OK && n != held)
        rc = ph_err_set(err, PH_EIO, "%llu held orders but %llu reviews entries",
                        (unsigned long long)held, (unsigned long long)n);
    return rc;
}
