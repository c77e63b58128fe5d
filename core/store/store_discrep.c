/*
 * store_discrep.c — discrepancies (store.h, "discrepancies"; docs/store.md):
 * the comparison of a supplier's figures with ours, the one function that
 * raises a discrepancy, the two commands about final attempts (a supplier's
 * late word, an ops resolution), the late re-query schedule and the reads.
 *
 * A discrepancy is a JSON record in `discrep` under an id that only grows
 * (the last key + 1, inside the writer's transaction: deterministic), indexed
 * under its attempt in `discrep_att` (so the same word is not raised twice)
 * and counted while open in `meta` ("discrep_open"), so health reads one
 * value. They are rare: nothing here is on the order path unless an attempt
 * succeeds with amounts that are not the agreed ones.
 */
#include "store/store_int.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "config/config.h"
#include "crypto/wipe_alloc.h"

#define OPEN_KEY "discrep_open"

/* ---- names and the comparisons (pure) ------------------------------------------ */

const char *ph_discrep_source_name(int source)
{
    static const char *const names[] = {"?", "callback", "query", "statement", "amount"};
    return source >= 1 && source <= 4 ? names[source] : "?";
}

const char *ph_discrep_status_name(int status)
{
    static const char *const names[] = {"?", "open", "accepted", "disputed"};
    return status >= 1 && status <= 3 ? names[status] : "?";
}

int ph_discrep_status_parse(const char *name)
{
    for (int i = PH_DISCREP_OPEN; name && i <= PH_DISCREP_DISPUTED; i++)
        if (!strcmp(name, ph_discrep_status_name(i)))
            return i;
    return 0;
}

unsigned ph_amount_mismatch(int64_t unit_cost, uint32_t quantity, int64_t charged,
                            int64_t tolerance, int64_t face_value, int64_t delivered)
{
    unsigned bad = 0;
    int64_t agreed;
    if (charged >= 0) {
        /* a product that overflows fen cannot be what we agreed to pay */
        if (__builtin_mul_overflow(unit_cost, (int64_t)quantity, &agreed))
            bad |= PH_AMOUNT_CHARGE;
        else if ((charged > agreed ? charged - agreed : agreed - charged) >
                 (tolerance > 0 ? tolerance : 0))
            bad |= PH_AMOUNT_CHARGE;
    }
    if (delivered > 0 && face_value > 0 && delivered != face_value)
        bad |= PH_AMOUNT_DELIVERED;
    return bad;
}

int ph_final_word_contradicts(const ph_attempt *a, uint32_t quantity, int claim, int64_t charged,
                              int64_t tolerance)
{
    if (ph_attempt_state_open(a->state))
        return 0;
    if ((claim == PH_ATTEMPT_SUCCEEDED || claim == PH_ATTEMPT_FAILED) && claim != a->state)
        return 1;
    if (claim == PH_ATTEMPT_SUCCEEDED && a->state == PH_ATTEMPT_SUCCEEDED && charged >= 0) {
        int64_t ours = a->charged;
        if (ours < 0 && __builtin_mul_overflow(a->unit_cost, (int64_t)quantity, &ours))
            return 1;
        return (charged > ours ? charged - ours : ours - charged) > (tolerance > 0 ? tolerance : 0);
    }
    return 0;
}

/* ---- keys and the counter --------------------------------------------------------- */

static void put_be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = v << 8 | p[i];
    return v;
}

static void att_key(uint8_t k[12], uint64_t order_id, uint32_t no)
{
    put_be(k, order_id, 8);
    put_be(k + 8, no, 4);
}

/* be64(due) be64(order) be32(no): earliest first. due > 0. */
static void late_key(uint8_t k[20], int64_t due, uint64_t order_id, uint32_t no)
{
    put_be(k, (uint64_t)due, 8);
    put_be(k + 8, order_id, 8);
    put_be(k + 16, no, 4);
}

static uint64_t open_count(MDB_txn *txn, MDB_dbi meta)
{
    MDB_val k = {sizeof OPEN_KEY - 1, OPEN_KEY}, v;
    uint64_t n = 0;
    if (mdb_get(txn, meta, &k, &v) == 0 && v.mv_size == sizeof n)
        memcpy(&n, v.mv_data, sizeof n);
    return n;
}

static int open_add(ph_wtxn *w, int delta, ph_err *err)
{
    uint64_t n = open_count(w->txn, w->s->dbi[DB_META]);
    assert(delta > 0 || n > 0);
    n = delta > 0 ? n + 1 : (n ? n - 1 : 0);
    MDB_val k = {sizeof OPEN_KEY - 1, OPEN_KEY}, v = {sizeof n, &n};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_META], &k, &v, 0);
    return mrc ? ph_store_lmdb_err(err, mrc, "write discrepancy count") : PH_OK;
}

int store_late_set(ph_wtxn *w, uint64_t id, uint32_t no, int64_t due, int add, ph_err *err)
{
    uint8_t key[20];
    late_key(key, due, id, no);
    MDB_val k = {sizeof key, key}, v = {0, ""};
    int mrc = add ? mdb_put(w->txn, w->s->dbi[DB_LATE], &k, &v, 0)
                  : mdb_del(w->txn, w->s->dbi[DB_LATE], &k, NULL);
    if (mrc == MDB_NOTFOUND && !add)
        return PH_OK; /* removed already (a second word for the same due time) */
    return mrc ? ph_store_lmdb_err(err, mrc, "write late re-query") : PH_OK;
}

/* ---- records ----------------------------------------------------------------------- */

static json_t *fen_or_null(int64_t v)
{
    return v >= 0 ? json_integer(v) : json_null();
}

static json_t *state_or_null(int state)
{
    return state ? json_string(ph_attempt_state_name(state)) : json_null();
}

static int get_record(MDB_txn *txn, MDB_dbi dbi, uint64_t id, json_t **out, ph_err *err)
{
    MDB_val k = {8, &id}, v;
    int mrc = mdb_get(txn, dbi, &k, &v);
    if (mrc == MDB_NOTFOUND)
        return ph_err_set(err, PH_ENOTFOUND, "discrepancy %llu: not found", (unsigned long long)id);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read discrepancy");
    *out = json_loadb(v.mv_data, v.mv_size, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(*out)) {
        json_decref(*out);
        return ph_err_set(err, PH_EIO, "discrepancy %llu: malformed record",
                          (unsigned long long)id);
    }
    return PH_OK;
}

static int put_record(ph_wtxn *w, uint64_t id, json_t *rec, unsigned flags, ph_err *err)
{
    char *txt = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!txt)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    MDB_val k = {8, &id}, v = {strlen(txt), txt};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_DISCREP], &k, &v, flags);
    ph_json_free(txt);
    return mrc ? ph_store_lmdb_err(err, mrc, "write discrepancy") : PH_OK;
}

static int64_t jint(json_t *o, const char *key, int64_t dflt)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* An open discrepancy of attempt (id, no) saying what d says: 1, else 0. */
static int said_before(ph_wtxn *w, const ph_discrepancy *d, int *dup, ph_err *err)
{
    uint8_t key[12];
    att_key(key, d->order_id, d->attempt);
    MDB_cursor *cur;
    MDB_val k = {sizeof key, key}, v;
    *dup = 0;
    int mrc = mdb_cursor_open(w->txn, w->s->dbi[DB_DISCREP_ATT], &cur);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read discrepancy index");
    int rc = PH_OK;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY); !mrc && !*dup && rc == PH_OK;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
        uint64_t id;
        memcpy(&id, v.mv_data, 8);
        json_t *rec;
        if ((rc = get_record(w->txn, w->s->dbi[DB_DISCREP], id, &rec, err)) != PH_OK)
            break;
        json_t *t = json_object_get(rec, "theirs");
        const char *st = json_string_value(json_object_get(t, "state"));
        *dup = !strcmp(jstr(rec, "status"), "open") &&
               !strcmp(st ? st : "", d->their_state ? ph_attempt_state_name(d->their_state) : "") &&
               jint(t, "charged_fen", -1) == (d->their_charged >= 0 ? d->their_charged : -1) &&
               jint(t, "delivered_fen", -1) == (d->their_delivered > 0 ? d->their_delivered : -1);
        json_decref(rec);
    }
    mdb_cursor_close(cur);
    if (rc == PH_OK && mrc && mrc != MDB_NOTFOUND)
        rc = ph_store_lmdb_err(err, mrc, "read discrepancy index");
    return rc;
}

/* The fields of order.discrepancy and order.corrected every such event starts with. */
static json_t *order_fields(const ph_order *o, uint64_t id, const ph_attempt *a)
{
    return json_pack("{s:I,s:s,s:s,s:s,s:I,s:I,s:s}", "order_id", (json_int_t)o->id, "client",
                     o->client, "client_order_id", o->client_order_id, "sku", o->sku,
                     "discrepancy_id", (json_int_t)id, "attempt", (json_int_t)a->no, "supplier",
                     a->supplier);
}

int store_raise_discrepancy(ph_wtxn *w, ph_cmd *c, const ph_order *o, const ph_discrepancy *d,
                            uint64_t *out_id)
{
    if (out_id)
        *out_id = 0;
    if (d->source < PH_DISCREP_CALLBACK || d->source > PH_DISCREP_AMOUNT ||
        (d->their_state && d->their_state != PH_ATTEMPT_SUCCEEDED &&
         d->their_state != PH_ATTEMPT_FAILED))
        return ph_err_set(&c->err, PH_EINVAL, "discrepancy: source or state out of range");
    ph_order *loaded = NULL;
    int rc;
    if (!o) {
        if ((rc = ph_order_load(w->s, w->txn, d->order_id, 0, &loaded, &c->err)) != PH_OK)
            return rc;
        o = loaded;
    }
    const ph_attempt *a = d->attempt >= 1 && d->attempt <= o->nattempts && o->id == d->order_id
                              ? &o->attempts[d->attempt - 1]
                              : NULL;
    int dup = 0;
    if (!a)
        rc = ph_err_set(&c->err, PH_ENOTFOUND, "order %llu: no attempt %u",
                        (unsigned long long)d->order_id, d->attempt);
    else
        rc = said_before(w, d, &dup, &c->err);
    if (rc || dup) {
        ph_order_free(loaded);
        return rc;
    }
    uint64_t id = ph_store_last_key(w->txn, w->s->dbi[DB_DISCREP]) + 1;
    char at[32];
    ph_time_format(c->now, at, sizeof at);
    int64_t agreed = a->unit_cost * (int64_t)o->quantity; /* target_ok: no overflow */
    json_t *rec = json_pack(
        "{s:I,s:I,s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:s,s:{s:s,s:o,s:o,s:I},s:{s:o,s:o,s:o},"
        "s:n,s:n,s:n}",
        "id", (json_int_t)id, "order_id", (json_int_t)o->id, "client", o->client, "client_order_id",
        o->client_order_id, "sku", o->sku, "attempt", (json_int_t)a->no, "supplier", a->supplier,
        "source", ph_discrep_source_name(d->source), "status", "open", "raised_at", at, "ours",
        "state", ph_attempt_state_name(a->state), "charged_fen", fen_or_null(a->charged),
        "delivered_fen", fen_or_null(a->delivered > 0 ? a->delivered : -1), "agreed_cost_fen",
        (json_int_t)agreed, "theirs", "state", state_or_null(d->their_state), "charged_fen",
        fen_or_null(d->their_charged), "delivered_fen",
        fen_or_null(d->their_delivered > 0 ? d->their_delivered : -1), "resolver", "note",
        "resolved_at");
    json_t *ev = order_fields(o, id, a);
    if (!rec || !ev) {
        rc = ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    } else {
        json_object_set(ev, "source", json_object_get(rec, "source"));
        json_object_set(ev, "ours", json_object_get(rec, "ours"));
        json_object_set(ev, "theirs", json_object_get(rec, "theirs"));
        uint8_t key[12];
        att_key(key, o->id, a->no);
        MDB_val k = {sizeof key, key}, v = {8, &id};
        int mrc;
        if ((rc = put_record(w, id, rec, MDB_APPEND, &c->err)) == PH_OK &&
            (mrc = mdb_put(w->txn, w->s->dbi[DB_DISCREP_ATT], &k, &v, 0)) != 0)
            rc = ph_store_lmdb_err(&c->err, mrc, "write discrepancy index");
        if (rc == PH_OK && (rc = open_add(w, 1, &c->err)) == PH_OK) {
            rc = store_emit(w, c->now, "order.discrepancy", ev, &c->err);
            ev = NULL; /* stolen */
        }
    }
    json_decref(ev);
    json_decref(rec);
    ph_order_free(loaded);
    if (rc == PH_OK && out_id)
        *out_id = id;
    return rc;
}

/* ---- the commands ------------------------------------------------------------------ */

int store_apply_final_word(ph_wtxn *w, ph_cmd *c)
{
    int src = c->in.word.source, st = c->in.word.state;
    if (src != PH_DISCREP_CALLBACK && src != PH_DISCREP_QUERY)
        return ph_err_set(&c->err, PH_EINVAL, "source: a callback or a query");
    if (st && st != PH_ATTEMPT_SUCCEEDED && st != PH_ATTEMPT_FAILED)
        return ph_err_set(&c->err, PH_EINVAL, "state: succeeded, failed or none");
    if (c->in.word.tolerance < 0 || c->in.word.late_due < 0)
        return ph_err_set(&c->err, PH_EINVAL, "tolerance or late_due < 0");
    ph_order *o = NULL;
    int rc = ph_order_load(w->s, w->txn, c->in.word.order_id, 0, &o, &c->err);
    if (rc)
        return rc;
    uint32_t no = c->in.word.no;
    const ph_attempt *a = no >= 1 && no <= o->nattempts ? &o->attempts[no - 1] : NULL;
    if (!a)
        rc = ph_err_set(&c->err, PH_ENOTFOUND, "order %llu: no attempt %u",
                        (unsigned long long)o->id, no);
    else if (ph_attempt_state_open(a->state))
        rc = ph_err_set(&c->err, PH_ESTATE, "order %llu attempt %u: still %s",
                        (unsigned long long)o->id, no, ph_attempt_state_name(a->state));
    else if (c->in.word.late_due > 0)
        rc = store_late_set(w, o->id, no, c->in.word.late_due, 0, &c->err);
    if (rc == PH_OK &&
        ph_final_word_contradicts(a, o->quantity, st, c->in.word.charged, c->in.word.tolerance)) {
        ph_discrepancy d = {.order_id = o->id,
                            .attempt = no,
                            .source = src,
                            .their_state = st,
                            .their_charged = c->in.word.charged,
                            .their_delivered = c->in.word.delivered};
        rc = store_raise_discrepancy(w, c, o, &d, &c->discrepancy_id);
    }
    ph_order_free(o);
    return rc;
}

static int note_ok(const char *s, int required)
{
    size_t n = 0;
    for (; s && s[n]; n++)
        if (n >= PH_NOTE_MAX || (unsigned char)s[n] < 0x20 || (unsigned char)s[n] == 0x7f)
            return 0;
    return n > 0 || !required;
}

/* The facts of an attempt and its order a correction changes. */
static json_t *side(const ph_order *o, const ph_attempt *a)
{
    return json_pack("{s:s,s:o,s:o,s:s,s:I}", "attempt_state", ph_attempt_state_name(a->state),
                     "charged_fen", fen_or_null(a->charged), "delivered_fen",
                     fen_or_null(a->delivered > 0 ? a->delivered : -1), "order_state",
                     ph_order_state_name(o->state), "cost_fen", (json_int_t)o->cost);
}

/* Accepting the supplier's truth: the one move of a final attempt. */
static int correct(ph_wtxn *w, ph_cmd *c, json_t *rec)
{
    uint64_t id = (uint64_t)jint(rec, "order_id", 0);
    uint32_t no = (uint32_t)jint(rec, "attempt", 0);
    ph_order *o = NULL;
    int rc = ph_order_load(w->s, w->txn, id, 0, &o, &c->err);
    if (rc)
        return rc;
    json_t *t = json_object_get(rec, "theirs");
    const char *st = json_string_value(json_object_get(t, "state"));
    int claim = !st                                                        ? 0
                : !strcmp(st, ph_attempt_state_name(PH_ATTEMPT_SUCCEEDED)) ? PH_ATTEMPT_SUCCEEDED
                                                                           : PH_ATTEMPT_FAILED;
    ph_attempt *a = no >= 1 && no <= o->nattempts ? &o->attempts[no - 1] : NULL;
    int was_open = o->nattempts && ph_attempt_state_open(o->attempts[o->nattempts - 1].state);
    json_t *before = NULL, *after = NULL, *ev = NULL;
    if (!a)
        rc = ph_err_set(&c->err, PH_EIO, "discrepancy: order %llu has no attempt %u",
                        (unsigned long long)id, no);
    else if (was_open)
        rc = ph_err_set(&c->err, PH_ESTATE,
                        "order %llu: an attempt is still in flight; accept once it is final",
                        (unsigned long long)id);
    else if (claim && claim != a->state && o->delivery != PH_DELIVERY_RECHARGE)
        rc = ph_err_set(&c->err, PH_ESTATE,
                        "order %llu: a card-code order's outcome cannot be corrected (the "
                        "supplier's codes are not ours to issue); dispute it",
                        (unsigned long long)id);
    /* a late success on a component of a bundle grant given back (claimable
     * again, its components granted anew) would deliver that unit twice:
     * ops dispute it, or accept it once the grant is claimed or expired */
    uint64_t parent = 0;
    int gst = 0;
    if (rc == PH_OK && claim == PH_ATTEMPT_SUCCEEDED && a->state != claim &&
        ph_order_component_of(o, &parent) &&
        (rc = store_grant_state_of(w, parent, &gst, &c->err)) == PH_OK && gst == PH_GRANT_ACTIVE)
        rc = ph_err_set(&c->err, PH_ESTATE,
                        "order %llu: its bundle grant %llu was given back and is claimable "
                        "again; dispute it, or accept once the grant is claimed",
                        (unsigned long long)id, (unsigned long long)parent);
    if (rc)
        goto out;
    before = side(o, a);
    if (claim && claim != a->state) {
        a->state = claim;
        snprintf(a->reason, sizeof a->reason, "%s",
                 claim == PH_ATTEMPT_SUCCEEDED ? "" : "corrected_failed_by_supplier");
    }
    int64_t charged = jint(t, "charged_fen", -1), delivered = jint(t, "delivered_fen", -1);
    if (charged >= 0)
        a->charged = charged;
    if (delivered > 0)
        a->delivered = delivered;
    a->updated_at = c->now;
    int succeeded = 0;
    for (size_t i = 0; i < o->nattempts; i++)
        succeeded |= o->attempts[i].state == PH_ATTEMPT_SUCCEEDED;
    /* the order of a grant given back stays granted (claimable) while no
     * attempt succeeded; one that did is the grant claimed after all
     * (store_grant_corrected, below) */
    int given_back = o->state == PH_ORDER_GRANTED, back = 0;
    o->state = succeeded ? PH_ORDER_SUCCEEDED : given_back ? PH_ORDER_GRANTED : PH_ORDER_FAILED;
    /* a claimed grant's order corrected to failed for good gives the grant
     * back, as its failure would have when it happened */
    if (o->state == PH_ORDER_FAILED && (rc = store_grant_takes_back(w, o, &back, &c->err)) != PH_OK)
        goto out;
    if (back)
        o->state = PH_ORDER_GRANTED;
    /* a bundle grant's component corrected failed: the bundle given back when
     * that leaves nothing of it delivered (store_bundle_grant_back, below) */
    uint64_t bundle = 0;
    if (o->state == PH_ORDER_FAILED &&
        (rc = store_bundle_takes_back(w, o, &bundle, &c->err)) != PH_OK)
        goto out;
    w->bundle_back = bundle;
    if (succeeded || given_back || back)
        o->reason[0] = 0;
    else
        snprintf(o->reason, sizeof o->reason, "%s", o->attempts[o->nattempts - 1].reason);
    o->cost = store_supply_cost(o);
    o->updated_at = c->now;
    after = side(o, a);
    ev = order_fields(o, (uint64_t)jint(rec, "id", 0), a);
    if (!before || !after || !ev) {
        rc = ph_err_set(&c->err, PH_ENOMEM, "out of memory");
        goto out;
    }
    json_object_set(rec, "before", before);
    json_object_set(rec, "after", after);
    json_object_set(ev, "before", before);
    json_object_set(ev, "after", after);
    if ((rc = store_put_supply_order(w, o, 0, &c->err)) == PH_OK) {
        rc = store_emit(w, c->now, "order.corrected", ev, &c->err);
        ev = NULL;
    }
    if (rc == PH_OK && succeeded)
        rc = store_grant_corrected(w, c, o);
    if (rc == PH_OK && back)
        rc = store_grant_back(w, c, o, o);
    if (rc == PH_OK && bundle)
        rc = store_bundle_grant_back(w, c, bundle, o);
out:
    w->bundle_back = 0;
    json_decref(before);
    json_decref(after);
    json_decref(ev);
    ph_order_free(o);
    return rc;
}

int store_apply_resolve(ph_wtxn *w, ph_cmd *c)
{
    const char *who = c->in.resolve.who, *note = c->in.resolve.note;
    if (!ph_ident_valid(who, PH_SKU_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "who: a client name");
    if (!note_ok(note, !c->in.resolve.accept))
        return ph_err_set(&c->err, PH_EINVAL,
                          c->in.resolve.accept
                              ? "note: at most %d bytes of text without control characters"
                              : "note: required to dispute (at most %d bytes of text)",
                          PH_NOTE_MAX);
    json_t *rec;
    int rc = get_record(w->txn, w->s->dbi[DB_DISCREP], c->in.resolve.id, &rec, &c->err);
    if (rc)
        return rc;
    const char *status = jstr(rec, "status");
    if (strcmp(status, "open"))
        rc = ph_err_set(&c->err, PH_ESTATE, "discrepancy %llu: already %s",
                        (unsigned long long)c->in.resolve.id, status);
    else if (c->in.resolve.accept)
        rc = correct(w, c, rec);
    char at[32];
    ph_time_format(c->now, at, sizeof at);
    if (rc == PH_OK &&
        (json_object_set_new(rec, "status",
                             json_string(c->in.resolve.accept ? "accepted" : "disputed")) ||
         json_object_set_new(rec, "resolver", json_string(who)) ||
         json_object_set_new(rec, "note", note && *note ? json_string(note) : json_null()) ||
         json_object_set_new(rec, "resolved_at", json_string(at))))
        rc = ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    if (rc == PH_OK && (rc = put_record(w, c->in.resolve.id, rec, 0, &c->err)) == PH_OK &&
        (rc = open_add(w, -1, &c->err)) == PH_OK) {
        char *txt = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
        c->record = txt ? strdup(txt) : NULL;
        ph_json_free(txt);
        if (!c->record)
            rc = ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    }
    json_decref(rec);
    return rc;
}

/* ---- reads --------------------------------------------------------------------------- */

/* Does the record (JSON text) pass the filters? */
static int matches(const MDB_val *v, int status, const char *supplier)
{
    if (!status && !supplier)
        return 1;
    json_t *rec = json_loadb(v->mv_data, v->mv_size, 0, NULL);
    int ok = json_is_object(rec) &&
             (!status || !strcmp(jstr(rec, "status"), ph_discrep_status_name(status))) &&
             (!supplier || !strcmp(jstr(rec, "supplier"), supplier));
    json_decref(rec);
    return ok;
}

typedef struct discrep_filter {
    int status;
    const char *supplier;
} discrep_filter;

static int keep_discrep(const MDB_val *v, const void *arg)
{
    const discrep_filter *f = arg;
    return matches(v, f->status, f->supplier);
}

int ph_store_discrep_list(ph_store *s, int status, const char *supplier, uint64_t after,
                          size_t limit, char ***out, size_t *n, uint64_t *next_after, ph_err *err)
{
    discrep_filter f = {status, supplier};
    return store_json_list(s, DB_DISCREP, after, limit, status || supplier ? keep_discrep : NULL,
                           &f, "read discrepancies", out, n, next_after, err);
}

int ph_store_discrep_get(ph_store *s, uint64_t id, char **json, ph_err *err)
{
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    MDB_val k = {8, &id}, v;
    int mrc = mdb_get(txn, s->dbi[DB_DISCREP], &k, &v);
    if (mrc == MDB_NOTFOUND)
        rc = ph_err_set(err, PH_ENOTFOUND, "discrepancy %llu: not found", (unsigned long long)id);
    else if (mrc)
        rc = ph_store_lmdb_err(err, mrc, "read discrepancy");
    else if (!(*json = strndup(v.mv_data, v.mv_size)))
        rc = ph_err_set(err, PH_ENOMEM, "out of memory");
    ph_store_read_end(s, txn);
    return rc;
}

uint64_t ph_store_discrep_open(ph_store *s)
{
    MDB_txn *txn;
    ph_err err;
    if (ph_store_read_begin(s, &txn, &err))
        return 0;
    uint64_t n = open_count(txn, s->dbi[DB_META]);
    ph_store_read_end(s, txn);
    return n;
}

size_t ph_store_late_due(ph_store *s, int64_t now, ph_late_check *out, size_t max, int64_t *next)
{
    return ph_store_late_due_skip(s, now, NULL, NULL, out, max, next);
}

size_t ph_store_late_due_skip(ph_store *s, int64_t now, ph_late_skip_fn skip, void *arg,
                              ph_late_check *out, size_t max, int64_t *next)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    ph_err err;
    size_t n = 0;
    *next = 0;
    if (ph_store_read_begin(s, &txn, &err))
        return 0;
    if (mdb_cursor_open(txn, s->dbi[DB_LATE], &cur) == 0) {
        MDB_val k, v;
        for (int op = MDB_FIRST; mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
            if (k.mv_size != 20)
                continue; /* --check-store names it; here it is skipped */
            const uint8_t *p = k.mv_data;
            int64_t due = (int64_t)get_be(p, 8);
            if (due > now || n == max) {
                *next = due;
                break;
            }
            ph_late_check lc = {get_be(p + 8, 8), (uint32_t)get_be(p + 16, 4), due};
            if (!skip || !skip(arg, &lc))
                out[n++] = lc;
        }
        mdb_cursor_close(cur);
    }
    ph_store_read_end(s, txn);
    return n;
}

/* ---- the invariants (--check-store) ------------------------------------------------ */

/* Is id among the duplicates of key k? */
static int dup_listed(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *id)
{
    MDB_cursor *c;
    if (mdb_cursor_open(txn, dbi, &c))
        return 0;
    MDB_val kk = *k, vv = *id;
    int found = mdb_cursor_get(c, &kk, &vv, MDB_GET_BOTH) == 0;
    mdb_cursor_close(c);
    return found;
}

int store_check_discrep(ph_store *s, MDB_txn *txn, ph_err *err)
{
    MDB_cursor *cur;
    MDB_val k, v;
    uint64_t open = 0;
    int rc = PH_OK, mrc = mdb_cursor_open(txn, s->dbi[DB_DISCREP], &cur);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read discrepancies");
    for (int op = MDB_FIRST; rc == PH_OK && mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
        uint64_t id;
        memcpy(&id, k.mv_data, 8);
        json_t *rec = json_loadb(v.mv_data, v.mv_size, JSON_REJECT_DUPLICATES, NULL);
        uint64_t order = (uint64_t)jint(rec, "order_id", 0);
        int status = ph_discrep_status_parse(jstr(rec, "status"));
        uint8_t ak[12];
        att_key(ak, order, (uint32_t)jint(rec, "attempt", 0));
        MDB_val ok = {8, &order}, akv = {sizeof ak, ak}, idv = {8, &id}, ov;
        if (!json_is_object(rec) || (uint64_t)jint(rec, "id", 0) != id || !status)
            rc = ph_err_set(err, PH_EIO, "discrep: record %llu is malformed",
                            (unsigned long long)id);
        else if (mdb_get(txn, s->dbi[DB_ORDERS], &ok, &ov))
            rc = ph_err_set(err, PH_EIO, "discrep: record %llu names order %llu, which is none",
                            (unsigned long long)id, (unsigned long long)order);
        else if (!dup_listed(txn, s->dbi[DB_DISCREP_ATT], &akv, &idv))
            rc = ph_err_set(err, PH_EIO, "discrep_att does not list discrepancy %llu",
                            (unsigned long long)id);
        open += status == PH_DISCREP_OPEN;
        json_decref(rec);
    }
    mdb_cursor_close(cur);
    if (rc == PH_OK && open != open_count(txn, s->dbi[DB_META]))
        rc = ph_err_set(err, PH_EIO, "meta: %s is %llu, but %llu discrepancies are open", OPEN_KEY,
                        (unsigned long long)open_count(txn, s->dbi[DB_META]),
                        (unsigned long long)open);
    return rc;
}
