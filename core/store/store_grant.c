/*
 * store_grant.c — grants (issue 16): an order that reserves its unit for an
 * end user until it is claimed, gifted on, extended or expired. The record
 * (`grants`, keyed by the order id), the token index (`grant_tokens`: keyed
 * hash of the claim token -> grant id), the expiry index (`grant_expiry`),
 * PH_CMD_GRANT, the reads and the invariants.
 *
 * Secrets: the claim token reaches the writer only as its keyed hash (the HTTP
 * thread computed it), so nothing here can write a token anywhere; the holder
 * is a subject key and a masked id; events carry ids, counts and times only.
 * Idempotency: each transition's request key (a keyed hash of the caller's
 * request_id) is kept in the record as "op:hex", so the same request again is
 * answered from the record and changes nothing.
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "config/config.h"

#define KEY_HEX 16 /* hex digits of a request key kept in the record */

const char *ph_grant_state_name(int state)
{
    static const char *const names[] = {"?", "active", "claimed", "expired"};
    return state >= PH_GRANT_ACTIVE && state <= PH_GRANT_EXPIRED ? names[state] : "?";
}

int ph_grant_state_parse(const char *name)
{
    for (int i = PH_GRANT_ACTIVE; name && i <= PH_GRANT_EXPIRED; i++)
        if (!strcmp(name, ph_grant_state_name(i)))
            return i;
    return 0;
}

/* ---- the record and its indexes ------------------------------------------------ */

static int rec_state(const json_t *rec)
{
    return ph_grant_state_parse(json_string_value(json_object_get(rec, "state")));
}

static int64_t rec_int(const json_t *rec, const char *k)
{
    return (int64_t)json_integer_value(json_object_get(rec, k));
}

static int grant_read(ph_store *s, MDB_txn *txn, uint64_t id, json_t **out, ph_err *err)
{
    MDB_val k = {8, &id}, v;
    int mrc = mdb_get(txn, s->dbi[DB_GRANTS], &k, &v);
    if (mrc == MDB_NOTFOUND)
        return ph_err_set(err, PH_ENOTFOUND, "grant %llu: not found", (unsigned long long)id);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read grant");
    json_t *rec = json_loadb(v.mv_data, v.mv_size, 0, NULL);
    if (!json_is_object(rec) || !rec_state(rec)) {
        json_decref(rec);
        return ph_err_set(err, PH_EIO, "grant %llu: malformed record", (unsigned long long)id);
    }
    *out = rec;
    return PH_OK;
}

static int grant_write(ph_wtxn *w, ph_cmd *c, uint64_t id, const json_t *rec)
{
    char *txt = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!txt)
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    size_t len = strlen(txt);
    int rc = PH_OK;
    if (len > PH_GRANT_RECORD_MAX)
        rc = ph_err_set(&c->err, PH_ELIMIT, "grant %llu: record over %d bytes (too many gifts)",
                        (unsigned long long)id, PH_GRANT_RECORD_MAX);
    else {
        MDB_val k = {8, &id}, v = {len, txt};
        int mrc = mdb_put(w->txn, w->s->dbi[DB_GRANTS], &k, &v, 0);
        if (mrc)
            rc = ph_store_lmdb_err(&c->err, mrc, "write grant");
    }
    /* the command's result: the record as written */
    if (rc == PH_OK) {
        free(c->record);
        c->record = strdup(txt);
        if (!c->record)
            rc = ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    }
    ph_json_free(txt);
    return rc;
}

static void expiry_key(uint8_t key[16], int64_t at, uint64_t id)
{
    for (int i = 0; i < 8; i++) {
        key[i] = (uint8_t)((uint64_t)at >> (56 - 8 * i));
        key[8 + i] = (uint8_t)(id >> (56 - 8 * i));
    }
}

static void expiry_key_decode(const uint8_t key[16], int64_t *at, uint64_t *id)
{
    uint64_t a = 0, b = 0;
    for (int i = 0; i < 8; i++) {
        a = a << 8 | key[i];
        b = b << 8 | key[8 + i];
    }
    *at = (int64_t)a;
    *id = b;
}

static int expiry_set(ph_wtxn *w, ph_cmd *c, uint64_t id, int64_t at, int add)
{
    uint8_t key[16];
    expiry_key(key, at, id);
    MDB_val k = {16, key}, v = {0, ""};
    int mrc = add ? mdb_put(w->txn, w->s->dbi[DB_GRANT_EXPIRY], &k, &v, MDB_NOOVERWRITE)
                  : mdb_del(w->txn, w->s->dbi[DB_GRANT_EXPIRY], &k, NULL);
    if (mrc == MDB_NOTFOUND && !add)
        return ph_err_set(&c->err, PH_EIO, "grant %llu: active but not in grant_expiry",
                          (unsigned long long)id);
    return mrc ? ph_store_lmdb_err(&c->err, mrc, "write grant expiry") : PH_OK;
}

static int token_put(ph_wtxn *w, ph_cmd *c, const uint8_t hash[32], uint64_t id)
{
    MDB_val k = {32, (void *)hash}, v = {8, &id};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_GRANT_TOKENS], &k, &v, MDB_NOOVERWRITE);
    if (mrc == MDB_KEYEXIST) /* 256 random bits: a replayed token, never chance */
        return ph_err_set(&c->err, PH_ECONFLICT, "token: already names a grant");
    return mrc ? ph_store_lmdb_err(&c->err, mrc, "write grant token") : PH_OK;
}

/* The grant a token hash names; PH_ENOTFOUND when none. */
static int token_find(ph_wtxn *w, ph_cmd *c, const uint8_t hash[32], uint64_t *id)
{
    MDB_val k = {32, (void *)hash}, v;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_GRANT_TOKENS], &k, &v);
    if (mrc == MDB_NOTFOUND)
        return ph_err_set(&c->err, PH_ENOTFOUND, "token: no such grant");
    if (mrc || v.mv_size != 8)
        return mrc ? ph_store_lmdb_err(&c->err, mrc, "read grant token")
                   : ph_err_set(&c->err, PH_EIO, "grant_tokens: malformed entry");
    memcpy(id, v.mv_data, 8);
    return PH_OK;
}

static int key_given(const uint8_t key[32])
{
    for (int i = 0; i < 32; i++)
        if (key[i])
            return 1;
    return 0;
}

/* "op:hex" of a request key. */
static void key_name(const char *op, const uint8_t key[32], char out[48])
{
    char hex[KEY_HEX + 1];
    ph_hex_encode(key, KEY_HEX / 2, hex);
    snprintf(out, 48, "%s:%s", op, hex);
}

static int key_seen(const json_t *rec, const char *op, const uint8_t key[32])
{
    char name[48];
    size_t i;
    json_t *x;
    if (!key_given(key))
        return 0;
    key_name(op, key, name);
    json_array_foreach(
        json_object_get(rec, "keys"), i,
        x) if (!strcmp(json_string_value(x) ? json_string_value(x) : "", name)) return 1;
    return 0;
}

static void key_note(json_t *rec, const char *op, const uint8_t key[32])
{
    char name[48];
    if (!key_given(key))
        return;
    key_name(op, key, name);
    json_t *keys = json_object_get(rec, "keys");
    if (!json_is_array(keys)) {
        keys = json_array();
        json_object_set_new(rec, "keys", keys);
    }
    json_array_append_new(keys, json_string(name));
}

static json_t *holder_json(const ph_grant_holder *h)
{
    char hex[17];
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(h->key >> (56 - 8 * i));
    ph_hex_encode(b, 8, hex);
    return json_pack("{s:s,s:s}", "key", hex, "masked", h->masked);
}

static int holder_ok(ph_cmd *c, const ph_grant_holder *h, const char *what)
{
    if (!h->masked || !store_text_ok(h->masked, PH_GRANT_HOLDER_MASKED - 1, 0))
        return ph_err_set(&c->err, PH_EINVAL, "%s.masked: expected a masked id", what);
    if (h->tags) {
        json_t *t = strlen(h->tags) <= PH_GRANT_TAGS_MAX ? json_loads(h->tags, 0, NULL) : NULL;
        int ok = json_is_array(t);
        size_t i;
        json_t *x;
        json_array_foreach(t, i, x) ok = ok && json_is_string(x);
        json_decref(t);
        if (!ok)
            return ph_err_set(&c->err, PH_EINVAL, "%s.tags: expected a JSON array of strings",
                              what);
    }
    return PH_OK;
}

int store_grant_input_ok(ph_cmd *c, const ph_grant_in *gi)
{
    if (!gi)
        return PH_OK;
    if (gi->expires_at <= c->now || gi->expires_at - c->now > PH_GRANT_TTL_MAX_MS)
        return ph_err_set(&c->err, PH_EINVAL, "grant.expires_at: out of range");
    return holder_ok(c, &gi->holder, "grant.holder");
}

/* ---- events and analytics ---------------------------------------------------------- */

static int emit_grant(ph_wtxn *w, ph_cmd *c, const ph_order *o, const char *type, json_t *extra)
{
    json_t *f = json_pack("{s:I,s:I,s:s,s:s,s:s}", "grant_id", (json_int_t)o->id, "order_id",
                          (json_int_t)o->id, "client", o->client, "client_order_id",
                          o->client_order_id, "sku", o->sku);
    if (f && extra)
        json_object_update(f, extra);
    json_decref(extra);
    return store_emit(w, c->now, type, f, &c->err);
}

/* The analytics of grants (issue 16 item 4, store_agg.c) are written in the
 * same transaction as each transition: the tags the grant was made with (a
 * department keeps its grants when they are gifted), the current holder's key. */
enum {
    AGG_GRANTED = PH_AGG_GRANTED,
    AGG_CLAIMED = PH_AGG_CLAIMED,
    AGG_EXPIRED = PH_AGG_EXPIRED,
    AGG_GIFTED = PH_AGG_GIFTED
};
/* The record's holder tags (borrowed from rec), at most PH_AGG_TAGS_MAX; how many. */
static size_t rec_tags(const json_t *rec, const char *tags[PH_AGG_TAGS_MAX])
{
    size_t n = 0, i;
    json_t *t;
    json_array_foreach(json_object_get(rec, "tags"), i, t)
    {
        if (n < PH_AGG_TAGS_MAX && json_string_value(t))
            tags[n++] = json_string_value(t);
    }
    return n;
}

static int agg_note(ph_wtxn *w, ph_cmd *c, int what, const ph_order *o, const json_t *rec)
{
    const char *tags[PH_AGG_TAGS_MAX];
    size_t n = rec_tags(rec, tags);
    uint8_t key[8];
    const char *hex = json_string_value(json_object_get(json_object_get(rec, "holder"), "key"));
    int have = hex && strlen(hex) == 16 && ph_hex_decode(hex, key, 8) == 0;
    return store_agg_grant(w, what, o->client, tags, n, have ? key : NULL, o->sku, c->now, &c->err);
}

/* store_agg_grant_add: delta to `what` on the day of `at`, no co-redemption. */
static int agg_add(ph_wtxn *w, ph_cmd *c, int what, int delta, const ph_order *o, const json_t *rec,
                   int64_t at)
{
    const char *tags[PH_AGG_TAGS_MAX];
    size_t n = rec_tags(rec, tags);
    return store_agg_grant_add(w, what, delta, o->client, tags, n, o->sku, at, &c->err);
}

/* store_agg_grant for a new grant, from its input (no record parsed). */
static int agg_granted(ph_wtxn *w, ph_cmd *c, const ph_order *o, const ph_grant_in *gi)
{
    json_t *rec = json_pack("{s:o}", "tags",
                            gi->holder.tags ? json_loads(gi->holder.tags, 0, NULL) : json_array());
    int rc =
        rec ? agg_note(w, c, AGG_GRANTED, o, rec) : ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    json_decref(rec);
    return rc;
}

/* ---- a new grant ------------------------------------------------------------------ */

/* A new grant's record as text, written without a JSON tree (a welfare batch
 * writes 100,000 at once): the same members grant_read parses. Client and sku
 * are identifiers, tags a JSON array the input check parsed, the masked id
 * escaped. 0, or -1 when it does not fit. */
typedef struct rectext {
    char buf[PH_GRANT_TAGS_MAX + 512];
    size_t len;
    int overflow;
} rectext;

static void rt_put(void *arg, const char *p, size_t n)
{
    rectext *t = arg;
    if (t->len + n >= sizeof t->buf) {
        t->overflow = 1;
        return;
    }
    memcpy(t->buf + t->len, p, n);
    t->len += n;
}

static void rt_fmt(rectext *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rt_fmt(rectext *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, sizeof t->buf - t->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof t->buf - t->len)
        t->overflow = 1;
    else
        t->len += (size_t)n;
}

static int grant_new_text(rectext *t, const ph_order *o, const ph_grant_in *gi, int64_t now)
{
    char hex[17];
    uint8_t kb[8];
    for (int i = 0; i < 8; i++)
        kb[i] = (uint8_t)(gi->holder.key >> (56 - 8 * i));
    ph_hex_encode(kb, 8, hex);
    t->len = 0;
    t->overflow = 0;
    rt_fmt(t,
           "{\"v\":1,\"id\":%llu,\"client\":\"%s\",\"sku\":\"%s\",\"quantity\":%u,"
           "\"state\":\"active\",\"created_at\":%lld,\"expires_at\":%lld,\"holder\":{\"key\":"
           "\"%s\",\"masked\":",
           (unsigned long long)o->id, o->client, o->sku, o->quantity, (long long)now,
           (long long)gi->expires_at, hex);
    if (ph_json_str(gi->holder.masked, rt_put, t))
        return -1;
    rt_fmt(t, "},\"tags\":%s,\"gifts\":[],\"extended\":[],\"keys\":[]",
           gi->holder.tags ? gi->holder.tags : "[]");
    if (gi->batch)
        rt_fmt(t, ",\"batch\":%llu", (unsigned long long)gi->batch);
    rt_put(t, "}", 1);
    return t->overflow ? -1 : 0;
}

int store_grant_new(ph_wtxn *w, ph_cmd *c, ph_order *o, const ph_grant_in *gi)
{
    rectext *t = malloc(sizeof *t);
    if (!t)
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    int rc = PH_OK;
    if (grant_new_text(t, o, gi, c->now))
        rc = ph_err_set(&c->err, PH_EINVAL, "grant: record over %zu bytes", sizeof t->buf);
    uint64_t id = o->id;
    MDB_val k = {8, &id}, v = {t->len, t->buf};
    int mrc = rc ? 0 : mdb_put(w->txn, w->s->dbi[DB_GRANTS], &k, &v, 0);
    if (mrc)
        rc = ph_store_lmdb_err(&c->err, mrc, "write grant");
    if (rc == PH_OK) { /* the command's result: the record as written */
        free(c->record);
        if (!(c->record = malloc(t->len + 1)))
            rc = ph_err_set(&c->err, PH_ENOMEM, "out of memory");
        else {
            memcpy(c->record, t->buf, t->len);
            c->record[t->len] = 0;
        }
    }
    if (rc == PH_OK)
        rc = token_put(w, c, gi->token_hash, o->id);
    if (rc == PH_OK)
        rc = expiry_set(w, c, o->id, gi->expires_at, 1);
    if (rc == PH_OK && o->state == PH_ORDER_GRANTED &&
        (rc = store_emit_granted(w, c->now, o, gi->expires_at, &c->err)) == PH_OK)
        rc = agg_granted(w, c, o, gi);
    free(t);
    return rc;
}

int store_grant_exists(ph_wtxn *w, uint64_t id)
{
    MDB_val k = {8, &id}, v;
    return mdb_get(w->txn, w->s->dbi[DB_GRANTS], &k, &v) == 0;
}

/* ---- the moves of an order ------------------------------------------------------- */

/* The reserved codes of o go back to stock: available again under their SKU
 * (with their expiry entry: the sweep retires one whose time passed). */
static int codes_back(ph_wtxn *w, ph_cmd *c, ph_order *o)
{
    int rc = PH_OK;
    for (size_t i = 0; rc == PH_OK && i < o->ncodes; i++) {
        uint64_t id = o->codes[i].id;
        ph_code_rec rec;
        const uint8_t *sealed;
        if ((rc = store_get_code(w, id, &rec, &sealed, &c->err)) != PH_OK)
            break;
        if (rec.state != PH_CODE_RESERVED || rec.order_id != o->id) {
            rc = ph_err_set(&c->err, PH_EIO, "grant %llu: code %llu is %s, not reserved to it",
                            (unsigned long long)o->id, (unsigned long long)id,
                            ph_code_state_name(rec.state));
            break;
        }
        uint8_t *blob = malloc(rec.sealed_len ? rec.sealed_len : 1);
        if (!blob)
            return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
        memcpy(blob, sealed, rec.sealed_len);
        rec.state = PH_CODE_AVAILABLE;
        rec.order_id = 0;
        rec.changed_at = c->now;
        rc = store_put_code(w, id, &rec, blob, 0, &c->err);
        free(blob);
        MDB_val k = {strlen(o->sku), o->sku}, v = {8, &id};
        int mrc = rc ? 0 : mdb_put(w->txn, w->s->dbi[DB_AVAIL], &k, &v, 0);
        if (mrc)
            rc = ph_store_lmdb_err(&c->err, mrc, "return stock");
        if (rc == PH_OK && rec.expires_at &&
            !ph_expiry_has(w->txn, w->s->dbi[DB_EXPIRY], o->sku, id, rec.expires_at))
            rc = ph_expiry_add(w->txn, w->s->dbi[DB_EXPIRY], o->sku, id, rec.expires_at, &c->err);
    }
    if (rc == PH_OK) {
        for (size_t i = 0; i < o->ncodes; i++)
            free(o->codes[i].sealed);
        free(o->codes);
        o->codes = NULL;
        o->ncodes = 0;
        o->cost = 0;
        rc = store_alerts_stock(w, o->sku, &c->err);
    }
    return rc;
}

/* Reserved codes -> issued; the order succeeds (booked now, store_ledger.c). */
static int codes_issue(ph_wtxn *w, ph_cmd *c, ph_order *o)
{
    int rc = PH_OK;
    for (size_t i = 0; rc == PH_OK && i < o->ncodes; i++) {
        uint64_t id = o->codes[i].id;
        ph_code_rec rec;
        const uint8_t *sealed;
        if ((rc = store_get_code(w, id, &rec, &sealed, &c->err)) != PH_OK)
            break;
        if (rec.state != PH_CODE_RESERVED || rec.order_id != o->id)
            return ph_err_set(&c->err, PH_EIO, "grant %llu: code %llu is %s, not reserved to it",
                              (unsigned long long)o->id, (unsigned long long)id,
                              ph_code_state_name(rec.state));
        uint8_t *blob = malloc(rec.sealed_len ? rec.sealed_len : 1);
        if (!blob)
            return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
        memcpy(blob, sealed, rec.sealed_len);
        rec.state = PH_CODE_ISSUED;
        rec.changed_at = c->now;
        rc = store_put_code(w, id, &rec, blob, 0, &c->err);
        free(blob);
        o->codes[i].state = PH_CODE_ISSUED;
        o->codes[i].changed_at = c->now;
    }
    if (rc)
        return rc;
    o->state = PH_ORDER_SUCCEEDED;
    o->updated_at = c->now;
    if ((rc = store_put_order(w, o, 0, &c->err)) == PH_OK)
        rc = store_emit_outcome(w, c->now, o, 0, &c->err);
    return rc;
}

int store_grant_unit_dies(ph_wtxn *w, ph_cmd *c, ph_order *o, const char *reason)
{
    int rc = PH_OK;
    if (o->state != PH_ORDER_GRANTED && o->state != PH_ORDER_HELD)
        return PH_OK;
    if (o->state == PH_ORDER_HELD) {
        uint64_t id = o->id;
        MDB_val k = {8, &id};
        int mrc = mdb_del(w->txn, w->s->dbi[DB_REVIEWS], &k, NULL);
        if (mrc && mrc != MDB_NOTFOUND)
            return ph_store_lmdb_err(&c->err, mrc, "write review");
    }
    if (!ph_order_via_supplier(o) && o->ncodes && (rc = codes_back(w, c, o)) != PH_OK)
        return rc;
    o->state = PH_ORDER_FAILED;
    o->updated_at = c->now;
    snprintf(o->reason, sizeof o->reason, "%s", reason);
    rc = ph_order_via_supplier(o) ? store_put_supply_order(w, o, 0, &c->err)
                                  : store_put_order(w, o, 0, &c->err);
    return rc ? rc : store_emit_outcome(w, c->now, o, 0, &c->err);
}

/* The order of a grant that dies (expired, or its held order blocked): the
 * reserved unit back, the order failed with `reason` (none: already final);
 * a bundle's every unit. */
static int order_dies(ph_wtxn *w, ph_cmd *c, ph_order *o, const char *reason)
{
    if (o->state != PH_ORDER_GRANTED && o->state != PH_ORDER_HELD)
        return PH_OK;
    if (o->delivery == PH_DELIVERY_BUNDLE)
        return store_bundle_dies(w, c, o, reason);
    return store_grant_unit_dies(w, c, o, reason);
}

/* The grant expires: its record, its expiry entry (token kept: a claim then
 * answers "expired", not "unknown"), grant.expired, then the order dies. */
static int grant_expires(ph_wtxn *w, ph_cmd *c, ph_order *o, json_t *rec, const char *reason)
{
    int counted = o->state == PH_ORDER_GRANTED; /* a held one was never counted granted */
    int rc = expiry_set(w, c, o->id, rec_int(rec, "expires_at"), 0);
    json_object_set_new(rec, "state", json_string("expired"));
    json_object_set_new(rec, "expired_at", json_integer((json_int_t)c->now));
    if (rc == PH_OK)
        rc = grant_write(w, c, o->id, rec);
    if (rc == PH_OK)
        rc = emit_grant(w, c, o, "grant.expired", json_pack("{s:s}", "reason", reason));
    if (rc == PH_OK && counted)
        rc = agg_note(w, c, AGG_EXPIRED, o, rec);
    if (rc == PH_OK)
        rc = order_dies(w, c, o, "grant_expired");
    return rc;
}

/* A held grant the stock could not serve when released: its order failed
 * out_of_stock (a bundle's already by store_bundle_release), the grant
 * expired. */
static int release_short(ph_wtxn *w, ph_cmd *c, ph_order *o, json_t *rec)
{
    int bundle = o->delivery == PH_DELIVERY_BUNDLE;
    if (!bundle)
        o->state = PH_ORDER_HELD; /* the event below sees the grant's order as it was */
    int rc = expiry_set(w, c, o->id, rec_int(rec, "expires_at"), 0);
    json_object_set_new(rec, "state", json_string("expired"));
    json_object_set_new(rec, "expired_at", json_integer((json_int_t)c->now));
    if (rc == PH_OK && (rc = grant_write(w, c, o->id, rec)) == PH_OK)
        rc = emit_grant(w, c, o, "grant.expired", json_pack("{s:s}", "reason", "out_of_stock"));
    if (bundle)
        return rc;
    o->state = PH_ORDER_FAILED;
    snprintf(o->reason, sizeof o->reason, "out_of_stock");
    if (rc == PH_OK && (rc = store_put_order(w, o, 0, &c->err)) == PH_OK)
        rc = store_emit_outcome(w, c->now, o, 0, &c->err);
    return rc;
}

int store_grant_release(ph_wtxn *w, ph_cmd *c, ph_order *o)
{
    json_t *rec = NULL;
    int rc = grant_read(w->s, w->txn, o->id, &rec, &c->err);
    if (rc)
        return rc;
    if (o->delivery == PH_DELIVERY_BUNDLE) {
        /* every component reserved (all or none), the parent granted */
        rc = store_bundle_release(w, c, o, 1);
        if (rc == PH_OK && o->state == PH_ORDER_FAILED)
            rc = release_short(w, c, o, rec);
        else if (rc == PH_OK && o->state != PH_ORDER_GRANTED)
            rc = ph_err_set(&c->err, PH_EIO, "bundle %llu: released as a grant but %s",
                            (unsigned long long)o->id, ph_order_state_name(o->state));
        else if (rc == PH_OK && (rc = store_emit_granted(w, c->now, o, rec_int(rec, "expires_at"),
                                                         &c->err)) == PH_OK)
            rc = agg_note(w, c, AGG_GRANTED, o, rec);
        json_decref(rec);
        return rc;
    }
    o->state = PH_ORDER_GRANTED;
    o->updated_at = c->now;
    if (ph_order_via_supplier(o)) {
        rc = store_put_supply_order(w, o, 0, &c->err);
    } else {
        /* in a nested transaction: short of stock takes nothing */
        MDB_txn *parent = w->txn, *child;
        ph_ids ids = w->ids;
        int mrc = mdb_txn_begin(mdb_txn_env(parent), parent, 0, &child);
        if (mrc) {
            json_decref(rec);
            return ph_store_lmdb_err(&c->err, mrc, "begin nested");
        }
        w->txn = child;
        rc = store_take_codes(w, c, o->sku, o);
        w->txn = parent;
        if (rc == PH_OK && (mrc = mdb_txn_commit(child)) != 0)
            rc = ph_store_lmdb_err(&c->err, mrc, "commit nested");
        else if (rc == PH_ENOSTOCK) {
            mdb_txn_abort(child);
            w->ids = ids;
            for (size_t i = 0; i < o->ncodes; i++)
                free(o->codes[i].sealed);
            free(o->codes);
            o->codes = NULL;
            o->ncodes = 0;
            o->cost = 0;
            memset(&c->err, 0, sizeof c->err);
            rc = release_short(w, c, o, rec);
            json_decref(rec);
            return rc;
        } else if (rc) {
            mdb_txn_abort(child);
            w->ids = ids;
        }
        if (rc == PH_OK)
            rc = store_put_order(w, o, 0, &c->err);
        if (rc == PH_OK)
            rc = store_alerts_stock(w, o->sku, &c->err);
    }
    if (rc == PH_OK)
        rc = store_emit_granted(w, c->now, o, rec_int(rec, "expires_at"), &c->err);
    if (rc == PH_OK)
        rc = agg_note(w, c, AGG_GRANTED, o, rec);
    json_decref(rec);
    return rc;
}

int store_grant_blocked(ph_wtxn *w, ph_cmd *c, const ph_order *o)
{
    json_t *rec = NULL;
    int rc = grant_read(w->s, w->txn, o->id, &rec, &c->err);
    if (rc)
        return rc;
    if (rec_state(rec) == PH_GRANT_ACTIVE) {
        rc = expiry_set(w, c, o->id, rec_int(rec, "expires_at"), 0);
        json_object_set_new(rec, "state", json_string("expired"));
        json_object_set_new(rec, "expired_at", json_integer((json_int_t)c->now));
        if (rc == PH_OK && (rc = grant_write(w, c, o->id, rec)) == PH_OK)
            rc = emit_grant(w, c, o, "grant.expired",
                            json_pack("{s:s}", "reason", "blocked_by_review"));
    }
    json_decref(rec);
    return rc;
}

/* ---- a claim whose supplier order failed for good -------------------------------- */

/* Nothing of o reached the holder: every attempt failed. A failed attempt
 * costs nothing (the ledger books supplier cost for succeeded attempts only,
 * whatever amount a supplier names in a refusal; money it kept anyway is a
 * reconciliation discrepancy, not a delivery). */
static int nothing_delivered(const ph_order *o)
{
    for (size_t i = 0; i < o->nattempts; i++)
        if (o->attempts[i].state != PH_ATTEMPT_FAILED)
            return 0;
    return o->nattempts > 0;
}

int store_grant_takes_back(ph_wtxn *w, const ph_order *o, int *yes, ph_err *err)
{
    *yes = 0;
    /* a bundle grant's component has no grant of its own (invariant 34): its
     * bundle is partial or failed, and a partial one is retried */
    if (o->state != PH_ORDER_FAILED || !ph_order_via_supplier(o) ||
        o->delivery == PH_DELIVERY_BUNDLE || ph_order_component_of(o, NULL) ||
        ph_order_is_replenish(o) || !nothing_delivered(o))
        return PH_OK;
    json_t *rec = NULL;
    int rc = grant_read(w->s, w->txn, o->id, &rec, err);
    if (rc == PH_ENOTFOUND) {
        memset(err, 0, sizeof *err);
        return PH_OK;
    }
    if (rc)
        return rc;
    *yes = rec_state(rec) == PH_GRANT_CLAIMED;
    json_decref(rec);
    return PH_OK;
}

int store_grant_state_of(ph_wtxn *w, uint64_t id, int *state, ph_err *err)
{
    json_t *rec = NULL;
    *state = 0;
    int rc = grant_read(w->s, w->txn, id, &rec, err);
    if (rc == PH_ENOTFOUND) {
        memset(err, 0, sizeof *err);
        return PH_OK;
    }
    if (rc == PH_OK)
        *state = rec_state(rec);
    json_decref(rec);
    return rc;
}

int store_grant_back(ph_wtxn *w, ph_cmd *c, ph_order *o, const ph_order *failed)
{
    json_t *rec = NULL;
    int rc = grant_read(w->s, w->txn, o->id, &rec, &c->err);
    if (rc)
        return rc;
    /* grant_write leaves the record as the command's result: not this one's */
    char *result = c->record;
    c->record = NULL;
    /* the attempt that ended it (a bundle's component failed before it was
     * sent has none: its reason then) */
    const ph_attempt *a = failed->nattempts ? &failed->attempts[failed->nattempts - 1] : NULL;
    const char *reason = a ? a->reason : failed->reason;
    int64_t claimed_at = rec_int(rec, "claimed_at");
    json_t *back = json_pack("{s:I,s:I,s:i,s:s,s:s}", "at", (json_int_t)c->now, "claimed_at",
                             (json_int_t)claimed_at, "attempt", a ? (int)a->no : 0, "supplier",
                             a ? a->supplier : "", "reason", reason);
    if (back && failed != o) /* a bundle's: the component order whose failure ended it */
        json_object_set_new(back, "order_id", json_integer((json_int_t)failed->id));
    json_t *returns = json_object_get(rec, "returns");
    if (!json_is_array(returns)) {
        returns = json_array();
        json_object_set_new(rec, "returns", returns);
    }
    if (!back || !returns || json_array_append_new(returns, back))
        rc = ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    json_object_set_new(rec, "state", json_string("active"));
    json_object_del(rec, "claimed_at");
    /* the claim is taken out of the day it was counted on: a grant counts as
     * claimed once it is claimed for good, or again */
    if (rc == PH_OK)
        rc = agg_add(w, c, AGG_CLAIMED, -1, o, rec, claimed_at);
    if (rc == PH_OK)
        rc = expiry_set(w, c, o->id, rec_int(rec, "expires_at"), 1);
    if (rc == PH_OK)
        rc = grant_write(w, c, o->id, rec);
    if (rc == PH_OK)
        rc = emit_grant(w, c, o, "grant.returned",
                        json_pack("{s:i,s:s,s:s,s:i}", "attempt", a ? (int)a->no : 0, "reason",
                                  reason, "order_state", ph_order_state_name(o->state), "returns",
                                  (int)json_array_size(returns)));
    /* its time ran out while the supplier had it: expired as the job would */
    if (rc == PH_OK && rec_int(rec, "expires_at") <= c->now)
        rc = grant_expires(w, c, o, rec, "expired");
    json_decref(rec);
    free(c->record);
    c->record = result;
    return rc;
}

/* ---- at open: grants the previous release left claimed ---------------------------- */

/* The ids of every claimed grant into *out (the caller frees), *n of them:
 * read before the first write, which moves the cursor's pages. */
static int claimed_ids(ph_store *s, MDB_txn *txn, uint64_t **out, size_t *n, ph_err *err)
{
    MDB_cursor *cur;
    MDB_val k, v;
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    int mrc = mdb_cursor_open(txn, s->dbi[DB_GRANTS], &cur), rc = PH_OK;
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "open grants");
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == PH_OK;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t id = 0;
        json_t *rec = k.mv_size == 8 ? json_loadb(v.mv_data, v.mv_size, 0, NULL) : NULL;
        if (k.mv_size == 8)
            memcpy(&id, k.mv_data, 8);
        if (!json_is_object(rec) || !rec_state(rec))
            rc = ph_err_set(err, PH_EIO, "grant %llu: malformed record", (unsigned long long)id);
        else if (rec_state(rec) == PH_GRANT_CLAIMED && *n == cap) {
            uint64_t *m = realloc(*out, (cap = cap ? 2 * cap : 64) * sizeof *m);
            if (!m)
                rc = ph_err_set(err, PH_ENOMEM, "out of memory");
            else
                *out = m;
        }
        if (rc == PH_OK && rec_state(rec) == PH_GRANT_CLAIMED)
            (*out)[(*n)++] = id;
        json_decref(rec);
    }
    mdb_cursor_close(cur);
    if (rc == PH_OK && mrc != MDB_NOTFOUND)
        rc = ph_store_lmdb_err(err, mrc, "read grants");
    return rc;
}

/* Claimed grant id given back when its order failed for good, as
 * store_write_attempt would have done at that failure: c->now is the time
 * the failure was written (the order that ended it, its updated_at). */
static int migrate_one(ph_wtxn *w, ph_cmd *c, uint64_t id)
{
    ph_order *o = NULL, *last = NULL;
    uint64_t parent = 0;
    int yes = 0;
    int rc = ph_order_load(w->s, w->txn, id, 1, &o, &c->err);
    if (rc == PH_OK && o->state == PH_ORDER_FAILED && o->delivery == PH_DELIVERY_BUNDLE &&
        (rc = store_bundle_last_component(w->s, w->txn, id, &last, &c->err)) == PH_OK &&
        (rc = store_bundle_takes_back(w, last, &parent, &c->err)) == PH_OK && parent == id) {
        c->now = last->updated_at;
        rc = store_bundle_grant_back(w, c, parent, last);
    } else if (rc == PH_OK && o->state == PH_ORDER_FAILED && !last &&
               (rc = store_grant_takes_back(w, o, &yes, &c->err)) == PH_OK && yes) {
        c->now = o->updated_at;
        o->state = PH_ORDER_GRANTED;
        o->reason[0] = 0;
        /* its reason is kept in its supply record: both written */
        if ((rc = store_put_supply_order(w, o, 0, &c->err)) == PH_OK)
            rc = store_grant_back(w, c, o, o);
    }
    ph_order_free(last);
    ph_order_free(o);
    return rc;
}

int store_grant_migrate(ph_store *s, MDB_txn *txn, ph_ids *ids, ph_err *err)
{
    uint64_t *id = NULL;
    size_t n = 0;
    ph_cmd *c = calloc(1, sizeof *c); /* type 0: the migration, as the ledger's */
    int rc = c ? claimed_ids(s, txn, &id, &n, err) : ph_err_set(err, PH_ENOMEM, "out of memory");
    ph_wtxn w = {.s = s, .txn = txn, .ids = *ids, .cmd = c};
    for (size_t i = 0; rc == PH_OK && i < n; i++) {
        if ((rc = migrate_one(&w, c, id[i])) != PH_OK)
            *err = c->err;
    }
    if (rc == PH_OK)
        *ids = w.ids;
    if (c)
        free(c->record);
    free(c);
    free(id);
    /* what the writes memoized was read in this transaction only */
    memset(&s->memo, 0, sizeof s->memo);
    return rc;
}

int store_grant_corrected(ph_wtxn *w, ph_cmd *c, const ph_order *o)
{
    json_t *rec = NULL;
    int rc = grant_read(w->s, w->txn, o->id, &rec, &c->err);
    if (rc == PH_ENOTFOUND) {
        memset(&c->err, 0, sizeof c->err);
        return PH_OK;
    }
    if (rc)
        return rc;
    int st = rec_state(rec);
    if (st == PH_GRANT_CLAIMED || o->state != PH_ORDER_SUCCEEDED) {
        json_decref(rec);
        return PH_OK;
    }
    char *result = c->record;
    c->record = NULL;
    if (st == PH_GRANT_ACTIVE)
        rc = expiry_set(w, c, o->id, rec_int(rec, "expires_at"), 0);
    else /* expired after its return: the expiry counted is taken out */
        rc = agg_add(w, c, AGG_EXPIRED, -1, o, rec, rec_int(rec, "expired_at"));
    json_object_set_new(rec, "state", json_string("claimed"));
    json_object_set_new(rec, "claimed_at", json_integer((json_int_t)c->now));
    json_object_del(rec, "expired_at");
    if (rc == PH_OK)
        rc = grant_write(w, c, o->id, rec);
    if (rc == PH_OK)
        rc = emit_grant(w, c, o, "grant.claimed",
                        json_pack("{s:s,s:s}", "order_state", ph_order_state_name(o->state),
                                  "reason", "corrected"));
    if (rc == PH_OK)
        rc = agg_add(w, c, AGG_CLAIMED, 1, o, rec, c->now);
    json_decref(rec);
    free(c->record);
    c->record = result;
    return rc;
}

/* ---- PH_CMD_GRANT -------------------------------------------------------------- */

/* The grant the command names (token, or id), its record and order (with
 * codes); a token of another client is no grant at all. */
static int grant_open(ph_wtxn *w, ph_cmd *c, json_t **rec, ph_order **o)
{
    uint64_t id = c->in.grant.grant_id;
    int rc = PH_OK;
    int by_key = 0; /* a gift replayed: its old token is gone, its key is kept */
    if (c->in.grant.op == PH_GRANT_CLAIM || c->in.grant.op == PH_GRANT_GIFT)
        rc = token_find(w, c, c->in.grant.token_hash, &id);
    if (rc == PH_ENOTFOUND && c->in.grant.op == PH_GRANT_GIFT && c->in.grant.grant_id &&
        key_given(c->in.grant.key)) {
        id = c->in.grant.grant_id;
        by_key = 1;
        rc = PH_OK;
    }
    if (rc == PH_OK)
        rc = grant_read(w->s, w->txn, id, rec, &c->err);
    if (rc == PH_ENOTFOUND && by_key)
        rc = ph_err_set(&c->err, PH_ENOTFOUND, "token: no such grant");
    if (rc)
        return rc;
    /* the path's grant must be the one the token names */
    if ((by_key && !key_seen(*rec, "gift", c->in.grant.key)) ||
        (c->in.grant.op == PH_GRANT_GIFT && c->in.grant.grant_id != id)) {
        json_decref(*rec);
        *rec = NULL;
        return ph_err_set(&c->err, PH_ENOTFOUND, "token: no such grant");
    }
    const char *client = json_string_value(json_object_get(*rec, "client"));
    if (c->in.grant.client && (!client || strcmp(client, c->in.grant.client))) {
        json_decref(*rec);
        *rec = NULL;
        return ph_err_set(&c->err, PH_ENOTFOUND, "token: no such grant");
    }
    c->grant_state = rec_state(*rec);
    if ((rc = ph_order_load(w->s, w->txn, id, 1, o, &c->err)) != PH_OK) {
        json_decref(*rec);
        *rec = NULL;
    }
    return rc;
}

static const char *op_name(int op)
{
    return op == PH_GRANT_CLAIM ? "claim" : op == PH_GRANT_GIFT ? "gift" : "extend";
}

/* Claimed already, expired, or held: the refusal (PH_OK when it may move). */
static int grant_movable(ph_cmd *c, const json_t *rec, const ph_order *o)
{
    unsigned long long id = o->id;
    switch (rec_state(rec)) {
    case PH_GRANT_CLAIMED:
        return ph_err_set(&c->err, PH_ECONFLICT, "grant %llu: already claimed", id);
    case PH_GRANT_EXPIRED:
        return ph_err_set(&c->err, PH_ESTATE, "grant %llu: expired", id);
    default:
        break;
    }
    if (o->state == PH_ORDER_HELD && c->in.grant.op == PH_GRANT_CLAIM)
        return ph_err_set(&c->err, PH_ESTATE, "grant %llu: its order is held for review", id);
    if (o->state != PH_ORDER_GRANTED && o->state != PH_ORDER_HELD)
        return ph_err_set(&c->err, PH_EIO, "grant %llu: active but its order is %s", id,
                          ph_order_state_name(o->state));
    return PH_OK;
}

int store_grant_unit_claim(ph_wtxn *w, ph_cmd *c, ph_order *o, const ph_attempt_target *first,
                           const char *fail_reason)
{
    if (!ph_order_via_supplier(o))
        return codes_issue(w, c, o);
    if (o->delivery == PH_DELIVERY_RECHARGE) {
        const char *m = c->in.grant.account_masked;
        uint32_t len = c->in.grant.account_sealed_len;
        if (!c->in.grant.account_sealed || !len || !m ||
            !store_text_ok(m, sizeof o->account_masked - 1, 0))
            return ph_err_set(&c->err, PH_EINVAL, "account: a recharge needs an account");
        free(o->account_sealed);
        if (!(o->account_sealed = malloc(len)))
            return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
        memcpy(o->account_sealed, c->in.grant.account_sealed, len);
        o->account_sealed_len = len;
        snprintf(o->account_masked, sizeof o->account_masked, "%s", m);
    }
    return store_supply_release(w, c, o, first, fail_reason);
}

static int grant_claim(ph_wtxn *w, ph_cmd *c, ph_order *o, json_t *rec)
{
    int rc = o->delivery == PH_DELIVERY_BUNDLE
                 ? store_bundle_grant_claim(w, c, o)
                 : store_grant_unit_claim(w, c, o, &c->in.grant.first, c->in.grant.fail_reason);
    json_object_set_new(rec, "state", json_string("claimed"));
    json_object_set_new(rec, "claimed_at", json_integer((json_int_t)c->now));
    if (rc == PH_OK)
        rc = expiry_set(w, c, o->id, rec_int(rec, "expires_at"), 0);
    key_note(rec, "claim", c->in.grant.key);
    if (rc == PH_OK && (rc = grant_write(w, c, o->id, rec)) == PH_OK)
        rc = emit_grant(w, c, o, "grant.claimed",
                        json_pack("{s:s}", "order_state", ph_order_state_name(o->state)));
    /* the claim of a grant given back counts again (its return took the first
     * out), its co-redemption pairs only once: they were counted at the first */
    if (rc == PH_OK && json_array_size(json_object_get(rec, "returns")))
        rc = agg_add(w, c, AGG_CLAIMED, 1, o, rec, c->now);
    else if (rc == PH_OK)
        rc = agg_note(w, c, AGG_CLAIMED, o, rec);
    return rc;
}

static int grant_gift(ph_wtxn *w, ph_cmd *c, ph_order *o, json_t *rec)
{
    int rc = holder_ok(c, &c->in.grant.to, "to");
    if (rc)
        return rc;
    MDB_val k = {32, c->in.grant.token_hash};
    int mrc = mdb_del(w->txn, w->s->dbi[DB_GRANT_TOKENS], &k, NULL);
    if (mrc)
        return ph_store_lmdb_err(&c->err, mrc, "write grant token");
    if ((rc = token_put(w, c, c->in.grant.new_token_hash, o->id)) != PH_OK)
        return rc;
    json_t *from = json_object_get(json_object_get(rec, "holder"), "masked");
    json_t *gift = json_pack("{s:I,s:O,s:s}", "at", (json_int_t)c->now, "from", from, "to",
                             c->in.grant.to.masked);
    json_t *gifts = json_object_get(rec, "gifts");
    if (!gift || !json_is_array(gifts) || json_array_append_new(gifts, gift))
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    json_object_set_new(rec, "holder", holder_json(&c->in.grant.to));
    key_note(rec, "gift", c->in.grant.key);
    if ((rc = grant_write(w, c, o->id, rec)) == PH_OK)
        rc = emit_grant(w, c, o, "grant.gifted",
                        json_pack("{s:i}", "gifts", (int)json_array_size(gifts)));
    if (rc == PH_OK)
        rc = agg_note(w, c, AGG_GIFTED, o, rec);
    return rc;
}

static int grant_extend(ph_wtxn *w, ph_cmd *c, ph_order *o, json_t *rec)
{
    int64_t to = c->in.grant.expires_at, from = rec_int(rec, "expires_at");
    if (to <= c->now || to - c->now > PH_GRANT_TTL_MAX_MS)
        return ph_err_set(&c->err, PH_EINVAL, "expires_at: out of range");
    if (!ph_ident_valid(c->in.grant.who, PH_SKU_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "who: expected a client name");
    int rc = expiry_set(w, c, o->id, from, 0);
    if (rc == PH_OK)
        rc = expiry_set(w, c, o->id, to, 1);
    json_t *x = json_pack("{s:s,s:I,s:I,s:I}", "by", c->in.grant.who, "at", (json_int_t)c->now,
                          "from", (json_int_t)from, "to", (json_int_t)to);
    json_t *ext = json_object_get(rec, "extended");
    if (!x || !json_is_array(ext) || json_array_append_new(ext, x))
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    json_object_set_new(rec, "expires_at", json_integer((json_int_t)to));
    key_note(rec, "extend", c->in.grant.key);
    if (rc == PH_OK && (rc = grant_write(w, c, o->id, rec)) == PH_OK)
        rc = emit_grant(
            w, c, o, "grant.extended",
            json_pack("{s:I,s:I}", "from", (json_int_t)from, "expires_at", (json_int_t)to));
    return rc;
}

/* One bounded step of the expiry: the due entries, oldest first. */
static int grant_expire_due(ph_wtxn *w, ph_cmd *c)
{
    uint32_t limit = c->in.grant.limit ? c->in.grant.limit : PH_EXPIRE_LIMIT;
    c->expired_codes = 0;
    c->more = 0;
    for (uint32_t n = 0;; n++) {
        MDB_cursor *cur;
        MDB_val k, v;
        int mrc = mdb_cursor_open(w->txn, w->s->dbi[DB_GRANT_EXPIRY], &cur);
        if (mrc)
            return ph_store_lmdb_err(&c->err, mrc, "open grant expiry");
        mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        int64_t at = 0;
        uint64_t id = 0;
        if (mrc == 0 && k.mv_size == 16)
            expiry_key_decode(k.mv_data, &at, &id);
        mdb_cursor_close(cur);
        if (mrc == MDB_NOTFOUND || (mrc == 0 && at > c->now))
            return PH_OK;
        if (mrc)
            return ph_store_lmdb_err(&c->err, mrc, "read grant expiry");
        if (!id)
            return ph_err_set(&c->err, PH_EIO, "grant_expiry: malformed key");
        if (n == limit) {
            c->more = 1;
            return PH_OK;
        }
        json_t *rec = NULL;
        ph_order *o = NULL;
        int rc = grant_read(w->s, w->txn, id, &rec, &c->err);
        if (rc == PH_OK)
            rc = ph_order_load(w->s, w->txn, id, 1, &o, &c->err);
        if (rc == PH_OK && rec_state(rec) != PH_GRANT_ACTIVE)
            rc = ph_err_set(&c->err, PH_EIO, "grant %llu: %s but in grant_expiry",
                            (unsigned long long)id, ph_grant_state_name(rec_state(rec)));
        if (rc == PH_OK)
            rc = grant_expires(w, c, o, rec, "expired");
        json_decref(rec);
        ph_order_free(o);
        if (rc)
            return rc;
        c->expired_codes++;
    }
}

int store_apply_grant(ph_wtxn *w, ph_cmd *c)
{
    int op = c->in.grant.op;
    if (op == PH_GRANT_EXPIRE)
        return grant_expire_due(w, c);
    if (op != PH_GRANT_CLAIM && op != PH_GRANT_GIFT && op != PH_GRANT_EXTEND)
        return ph_err_set(&c->err, PH_EINVAL, "op: %d is not a grant operation", op);
    if (c->in.grant.client && !ph_ident_valid(c->in.grant.client, PH_SKU_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "client: expected a client name");
    json_t *rec = NULL;
    ph_order *o = NULL;
    int rc = grant_open(w, c, &rec, &o);
    if (rc)
        return rc;
    if (key_seen(rec, op_name(op), c->in.grant.key)) {
        c->replayed = 1; /* the same request again: the grant as it is */
        char *txt = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
        c->record = txt ? strdup(txt) : NULL;
        ph_json_free(txt);
        rc = c->record ? PH_OK : ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    } else if ((rc = grant_movable(c, rec, o)) == PH_OK) {
        rc = op == PH_GRANT_CLAIM  ? grant_claim(w, c, o, rec)
             : op == PH_GRANT_GIFT ? grant_gift(w, c, o, rec)
                                   : grant_extend(w, c, o, rec);
    }
    json_decref(rec);
    if (rc) {
        ph_order_free(o);
        return rc;
    }
    c->order = o;
    return PH_OK;
}

/* ---- reads ------------------------------------------------------------------------ */

int ph_store_grant_get(ph_store *s, uint64_t id, char **json, ph_err *err)
{
    MDB_val k = {8, &id};
    int rc = store_read_text(s, DB_GRANTS, &k, "read grant", json, err);
    return rc == PH_ENOTFOUND
               ? ph_err_set(err, PH_ENOTFOUND, "grant %llu: not found", (unsigned long long)id)
               : rc;
}

typedef struct list_filter {
    const char *client;
    int state;
} list_filter;

static int list_keep(const MDB_val *v, const void *arg)
{
    const list_filter *f = arg;
    if (!f->client && !f->state)
        return 1;
    json_t *rec = json_loadb(v->mv_data, v->mv_size, 0, NULL);
    const char *client = json_string_value(json_object_get(rec, "client"));
    int keep = (!f->client || (client && !strcmp(client, f->client))) &&
               (!f->state || rec_state(rec) == f->state);
    json_decref(rec);
    return keep;
}

int ph_store_grant_list(ph_store *s, const char *client, int state, uint64_t after, size_t limit,
                        char ***out, size_t *n, uint64_t *next_after, ph_err *err)
{
    list_filter f = {client, state};
    return store_json_list(s, DB_GRANTS, after, limit, list_keep, &f, "read grants", out, n,
                           next_after, err);
}

int ph_store_grant_by_token(ph_store *s, const uint8_t hash[32], uint64_t *id, ph_err *err)
{
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    MDB_val k = {32, (void *)hash}, v;
    int mrc = mdb_get(txn, s->dbi[DB_GRANT_TOKENS], &k, &v);
    if (mrc == MDB_NOTFOUND)
        rc = ph_err_set(err, PH_ENOTFOUND, "token: no such grant");
    else if (mrc || v.mv_size != 8)
        rc = mrc ? ph_store_lmdb_err(err, mrc, "read grant token")
                 : ph_err_set(err, PH_EIO, "grant_tokens: malformed entry");
    else
        memcpy(id, v.mv_data, 8);
    ph_store_read_end(s, txn);
    return rc;
}

int64_t ph_store_grant_next_due(ph_store *s)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    ph_err err = {0};
    int64_t at = 0;
    uint64_t id;
    if (ph_store_read_begin(s, &txn, &err))
        return 0;
    if (mdb_cursor_open(txn, s->dbi[DB_GRANT_EXPIRY], &cur) == 0) {
        if (mdb_cursor_get(cur, &k, &v, MDB_FIRST) == 0 && k.mv_size == 16)
            expiry_key_decode(k.mv_data, &at, &id);
        mdb_cursor_close(cur);
    }
    ph_store_read_end(s, txn);
    return at;
}

/* ---- invariants --------------------------------------------------------------------- */

static uint64_t db_entries(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_stat st;
    return mdb_stat(txn, dbi, &st) ? 0 : st.ms_entries;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Invariant 31's bundle side for grant id (state st, its parent o). */
static int bundle_grant_ok(ph_store *s, MDB_txn *txn, unsigned long long id, int st,
                           const ph_order *o, const json_t *rec, ph_err *err)
{
    size_t backs = 0, returns = json_array_size(json_object_get(rec, "returns"));
    int undelivered = 0;
    int rc = store_bundle_returns(s, txn, o->id, &backs, err);
    if (rc == PH_ENOTFOUND) { /* denied, or held: nothing bought yet */
        memset(err, 0, sizeof *err);
        rc = PH_OK;
    }
    if (rc == PH_OK && backs != returns)
        rc = ph_err_set(err, PH_EIO,
                        "grant %llu: %zu returns recorded but its bundle was given back %zu times",
                        id, returns, backs);
    if (rc == PH_OK && st == PH_GRANT_CLAIMED && o->state == PH_ORDER_FAILED &&
        (rc = store_bundle_undelivered(s, txn, o->id, NULL, &undelivered, err)) == PH_OK &&
        undelivered)
        rc = ph_err_set(err, PH_EIO,
                        "grant %llu: claimed, its bundle failed with nothing delivered, but not "
                        "given back",
                        id);
    return rc;
}

int store_check_grants(ph_store *s, MDB_txn *txn, uint64_t granted, ph_err *err)
{
    MDB_cursor *cur;
    MDB_val k, v;
    uint64_t grants = 0, active = 0, order_granted = 0;
    int rc = PH_OK;
    if (mdb_cursor_open(txn, s->dbi[DB_GRANTS], &cur))
        return ph_err_set(err, PH_EIO, "store: cannot open grants");
    for (int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == PH_OK;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t id;
        memcpy(&id, k.mv_data, 8);
        json_t *rec = json_loadb(v.mv_data, v.mv_size, 0, NULL);
        int st = rec_state(rec);
        ph_order *o = NULL;
        unsigned long long uid = id;
        grants++;
        if (!st || (uint64_t)json_integer_value(json_object_get(rec, "id")) != id)
            rc = ph_err_set(err, PH_EIO, "grant %llu: malformed record", uid);
        else if (ph_order_load(s, txn, id, 0, &o, err) != PH_OK)
            rc = ph_err_set(err, PH_EIO, "grant %llu: its order is missing", uid);
        else if (st == PH_GRANT_ACTIVE && o->state != PH_ORDER_GRANTED && o->state != PH_ORDER_HELD)
            rc = ph_err_set(err, PH_EIO, "grant %llu: active but its order is %s", uid,
                            ph_order_state_name(o->state));
        else if (st != PH_GRANT_ACTIVE &&
                 (o->state == PH_ORDER_GRANTED || o->state == PH_ORDER_HELD))
            rc = ph_err_set(err, PH_EIO, "grant %llu: %s but its order is %s", uid,
                            ph_grant_state_name(st), ph_order_state_name(o->state));
        else if (st == PH_GRANT_EXPIRED && o->state != PH_ORDER_FAILED)
            rc = ph_err_set(err, PH_EIO, "grant %llu: expired but its order is %s", uid,
                            ph_order_state_name(o->state));
        /* an active grant's order has attempts only when claims of it failed
         * for good and gave it back: each recorded, the last attempt failed */
        else if (st == PH_GRANT_ACTIVE && o->nattempts &&
                 o->attempts[o->nattempts - 1].state != PH_ATTEMPT_FAILED)
            rc = ph_err_set(err, PH_EIO, "grant %llu: active but its last attempt is %s", uid,
                            ph_attempt_state_name(o->attempts[o->nattempts - 1].state));
        else if (st == PH_GRANT_ACTIVE && o->nattempts &&
                 (json_array_size(json_object_get(rec, "returns")) == 0 ||
                  json_array_size(json_object_get(rec, "returns")) > o->nattempts))
            rc = ph_err_set(err, PH_EIO,
                            "grant %llu: active with %zu attempts but %zu returns recorded", uid,
                            o->nattempts, json_array_size(json_object_get(rec, "returns")));
        /* a bundle grant: given back as many times as its bundle record says
         * (store_bundle_grant_back), and never claimed with its bundle failed
         * and nothing of it delivered: that claim would have been given back */
        else if (o->delivery == PH_DELIVERY_BUNDLE &&
                 (rc = bundle_grant_ok(s, txn, uid, st, o, rec, err)) != PH_OK)
            ;
        else if (st == PH_GRANT_ACTIVE) {
            uint8_t key[16];
            expiry_key(key, rec_int(rec, "expires_at"), id);
            MDB_val ek = {16, key}, ev;
            if (mdb_get(txn, s->dbi[DB_GRANT_EXPIRY], &ek, &ev))
                rc = ph_err_set(err, PH_EIO, "grant %llu: active but not in grant_expiry", uid);
            active++;
        }
        if (rc == PH_OK && o && o->state == PH_ORDER_GRANTED)
            order_granted++;
        ph_order_free(o);
        json_decref(rec);
    }
    mdb_cursor_close(cur);
    if (rc)
        return rc;
    if (order_granted != granted)
        return ph_err_set(err, PH_EIO, "%llu granted orders but %llu have a grant",
                          (unsigned long long)granted, (unsigned long long)order_granted);
    if (db_entries(txn, s->dbi[DB_GRANT_EXPIRY]) != active)
        return ph_err_set(err, PH_EIO, "%llu active grants but %llu grant_expiry entries",
                          (unsigned long long)active,
                          (unsigned long long)db_entries(txn, s->dbi[DB_GRANT_EXPIRY]));
    /* every token names a grant, and no two name the same one: with as many
     * tokens as grants, each grant has exactly one */
    if (db_entries(txn, s->dbi[DB_GRANT_TOKENS]) != grants)
        return ph_err_set(err, PH_EIO, "%llu grants but %llu grant_tokens entries",
                          (unsigned long long)grants,
                          (unsigned long long)db_entries(txn, s->dbi[DB_GRANT_TOKENS]));
    uint64_t nseen = 0;
    if (mdb_cursor_open(txn, s->dbi[DB_GRANT_TOKENS], &cur))
        return ph_err_set(err, PH_EIO, "store: cannot open grant_tokens");
    uint64_t *ids = calloc(grants ? grants : 1, sizeof *ids);
    if (!ids) {
        mdb_cursor_close(cur);
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    for (int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == PH_OK;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t id;
        MDB_val gk = {8, &id}, gv;
        if (k.mv_size != 32 || v.mv_size != 8) {
            rc = ph_err_set(err, PH_EIO, "grant_tokens: malformed entry");
            break;
        }
        memcpy(&id, v.mv_data, 8);
        if (mdb_get(txn, s->dbi[DB_GRANTS], &gk, &gv))
            rc = ph_err_set(err, PH_EIO, "grant_tokens: names grant %llu, which is missing",
                            (unsigned long long)id);
        else if (nseen < grants)
            ids[nseen++] = id;
    }
    mdb_cursor_close(cur);
    qsort(ids, nseen, sizeof *ids, cmp_u64);
    for (uint64_t i = 1; rc == PH_OK && i < nseen; i++)
        if (ids[i] == ids[i - 1])
            rc = ph_err_set(err, PH_EIO, "grant %llu: two tokens", (unsigned long long)ids[i]);
    free(ids);
    return rc;
}

/* ---- PH_CMD_GRANT_BATCH: a welfare batch ---------------------------------------- */

static size_t batch_key(const char *client, const char *batch_id, char *buf)
{
    return ph_store_ref_key(client, batch_id, buf);
}

/* The grant order of each line of a batch stored already (a replay). */
static int batch_ids(ph_wtxn *w, ph_cmd *c, size_t n)
{
    char coid[PH_ORDER_ID_MAX + 1], key[PH_SKU_MAX + PH_ORDER_ID_MAX + 2];
    for (size_t i = 0; i < n; i++) {
        snprintf(coid, sizeof coid, "%s:%zu", c->in.grant_batch.batch_id, i + 1);
        MDB_val k = {ph_store_ref_key(c->in.grant_batch.client, coid, key), key}, v;
        int mrc = mdb_get(w->txn, w->s->dbi[DB_ORDER_REF], &k, &v);
        if (mrc || v.mv_size != 8)
            return mrc && mrc != MDB_NOTFOUND
                       ? ph_store_lmdb_err(&c->err, mrc, "read order index")
                       : ph_err_set(&c->err, PH_EIO, "batch: line %zu has no order", i + 1);
        memcpy(&c->grant_ids[i], v.mv_data, 8);
    }
    return PH_OK;
}

/* Line i as the order command that stores it (ORDER, or SUPPLY_CREATE). */
static int batch_line(ph_wtxn *w, ph_cmd *c, size_t i, const char *coid, const ph_grant_in *gin,
                      uint64_t *id)
{
    const ph_grant_line *l = &c->in.grant_batch.lines[i];
    ph_cmd sub;
    int rc = PH_ENOSTOCK;
    memset(&sub, 0, sizeof sub);
    sub.now = c->now;
    if (l->delivery == PH_DELIVERY_CARD_CODE) {
        ph_ids ids = w->ids;
        sub.type = PH_CMD_ORDER;
        sub.in.order.client = c->in.grant_batch.client;
        sub.in.order.client_order_id = coid;
        sub.in.order.sku = l->sku;
        sub.in.order.quantity = 1;
        memcpy(sub.in.order.fingerprint, c->in.grant_batch.fingerprint, 32);
        sub.in.order.grant = gin;
        rc = store_apply_order(w, &sub);
        if (rc == PH_ENOSTOCK && l->supply_ok) {
            w->ids = ids; /* nothing of it was kept: its order id is the next one's */
            memset(&sub.err, 0, sizeof sub.err);
        }
    }
    if (l->delivery == PH_DELIVERY_BUNDLE) {
        /* a bundle grant: every component from stock, reserved, or a
         * recharge's right (no supplier is routed for a batch: a component
         * short of stock refuses the line) */
        sub.type = PH_CMD_BUNDLE;
        sub.in.bundle.client = c->in.grant_batch.client;
        sub.in.bundle.client_order_id = coid;
        sub.in.bundle.sku = l->sku;
        sub.in.bundle.quantity = 1;
        memcpy(sub.in.bundle.fingerprint, c->in.grant_batch.fingerprint, 32);
        sub.in.bundle.grant = gin;
        rc = store_apply_bundle(w, &sub);
    } else if (rc == PH_ENOSTOCK && (l->delivery != PH_DELIVERY_CARD_CODE || l->supply_ok)) {
        sub.type = PH_CMD_SUPPLY_CREATE;
        memset(&sub.in, 0, sizeof sub.in);
        sub.in.supply.client = c->in.grant_batch.client;
        sub.in.supply.client_order_id = coid;
        sub.in.supply.sku = l->sku;
        sub.in.supply.quantity = 1;
        memcpy(sub.in.supply.fingerprint, c->in.grant_batch.fingerprint, 32);
        sub.in.supply.delivery = l->delivery;
        sub.in.supply.grant = gin;
        rc = store_apply_supply_create(w, &sub);
    }
    if (rc == PH_OK && sub.replayed)
        rc = ph_err_set(&sub.err, PH_ECONFLICT, "client_order_id %s already names order %llu", coid,
                        (unsigned long long)sub.order->id);
    if (rc == PH_OK)
        *id = sub.order->id;
    else
        ph_err_set(&c->err, rc, "line %u: %s", l->line ? l->line : (unsigned)(i + 1), sub.err.msg);
    ph_order_free(sub.order);
    free(sub.record);
    return rc;
}

int store_apply_grant_batch(ph_wtxn *w, ph_cmd *c)
{
    const char *client = c->in.grant_batch.client, *bid = c->in.grant_batch.batch_id;
    size_t n = c->in.grant_batch.n;
    if (!ph_ident_valid(client, PH_SKU_MAX) || !ph_ident_valid(bid, PH_GRANT_BATCH_ID_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "batch_id: expected 1-%d characters [A-Za-z0-9._:-]",
                          PH_GRANT_BATCH_ID_MAX);
    if (n < 1 || n > PH_GRANT_BATCH_MAX)
        return ph_err_set(&c->err, PH_EINVAL, "batch: 1 to %d lines", PH_GRANT_BATCH_MAX);
    if (c->in.grant_batch.expires_at <= c->now ||
        c->in.grant_batch.expires_at - c->now > PH_GRANT_TTL_MAX_MS)
        return ph_err_set(&c->err, PH_EINVAL, "expires_at: out of range");
    char key[PH_SKU_MAX + PH_ORDER_ID_MAX + 2];
    MDB_val k = {batch_key(client, bid, key), key}, v;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_GRANT_BATCHES], &k, &v);
    if (mrc && mrc != MDB_NOTFOUND)
        return ph_store_lmdb_err(&c->err, mrc, "read grant batch");
    if (!(c->grant_ids = calloc(n, sizeof *c->grant_ids)))
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    c->ngrant_ids = n;
    if (mrc == 0) { /* the same batch again? */
        json_t *rec = json_loadb(v.mv_data, v.mv_size, 0, NULL);
        const char *fp = json_string_value(json_object_get(rec, "fingerprint"));
        char hex[65];
        ph_hex_encode(c->in.grant_batch.fingerprint, 32, hex);
        int same = fp && !strcmp(fp, hex) &&
                   (size_t)json_integer_value(json_object_get(rec, "count")) == n;
        json_decref(rec);
        if (!same)
            return ph_err_set(&c->err, PH_ECONFLICT,
                              "batch_id: '%s' already names another batch of this client", bid);
        c->replayed = 1;
        c->record = malloc(v.mv_size + 1);
        if (!c->record)
            return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
        memcpy(c->record, v.mv_data, v.mv_size);
        c->record[v.mv_size] = 0;
        return batch_ids(w, c, n);
    }
    char coid[PH_ORDER_ID_MAX + 1];
    const char *last_sku = NULL;
    int rc = PH_OK;
    for (size_t i = 0; i < n && rc == PH_OK; i++) {
        const ph_grant_line *l = &c->in.grant_batch.lines[i];
        ph_grant_in gin = {.expires_at = c->in.grant_batch.expires_at, .holder = l->holder};
        memcpy(gin.token_hash, l->token_hash, 32);
        snprintf(coid, sizeof coid, "%s:%zu", bid, i + 1);
        rc = batch_line(w, c, i, coid, &gin, &c->grant_ids[i]);
        if (i == 0 || !l->sku || !last_sku || strcmp(l->sku, last_sku)) {
            /* each run of one sku's lines is judged once (ORDER's own check is its caller's) */
            if (rc == PH_OK && last_sku)
                rc = store_alerts_stock(w, last_sku, &c->err);
            last_sku = l->sku;
        }
    }
    if (rc == PH_OK && last_sku)
        rc = store_alerts_stock(w, last_sku, &c->err);
    if (rc)
        return rc;
    char hex[65];
    ph_hex_encode(c->in.grant_batch.fingerprint, 32, hex);
    json_t *rec =
        json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:s}", "batch_id", bid, "client", client, "count",
                  (json_int_t)n, "first_grant", (json_int_t)c->grant_ids[0], "last_grant",
                  (json_int_t)c->grant_ids[n - 1], "created_at", (json_int_t)c->now, "expires_at",
                  (json_int_t)c->in.grant_batch.expires_at, "fingerprint", hex);
    char *txt = rec ? json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(rec);
    if (!txt)
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    MDB_val nv = {strlen(txt), txt};
    mrc = mdb_put(w->txn, w->s->dbi[DB_GRANT_BATCHES], &k, &nv, MDB_NOOVERWRITE);
    if (!mrc && !(c->record = strdup(txt)))
        mrc = ENOMEM;
    ph_json_free(txt);
    if (mrc)
        return mrc == ENOMEM ? ph_err_set(&c->err, PH_ENOMEM, "out of memory")
                             : ph_store_lmdb_err(&c->err, mrc, "write grant batch");
    return store_emit(
        w, c->now, "grant.batch_created",
        json_pack("{s:s,s:s,s:I}", "client", client, "grant_batch", bid, "count", (json_int_t)n),
        &c->err);
}

int ph_store_grant_batch_get(ph_store *s, const char *client, const char *batch_id, char **json,
                             ph_err *err)
{
    if (!ph_ident_valid(client, PH_SKU_MAX) || !ph_ident_valid(batch_id, PH_GRANT_BATCH_ID_MAX))
        return ph_err_set(err, PH_ENOTFOUND, "batch_id: no such batch");
    char key[PH_SKU_MAX + PH_ORDER_ID_MAX + 2];
    MDB_val k = {batch_key(client, batch_id, key), key};
    int rc = store_read_text(s, DB_GRANT_BATCHES, &k, "read grant batch", json, err);
    return rc == PH_ENOTFOUND ? ph_err_set(err, PH_ENOTFOUND, "batch_id: no such batch") : rc;
}
