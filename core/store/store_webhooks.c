/*
 * store_webhooks.c — webhook deliveries in the store (docs/store.md,
 * "Webhooks"): each endpoint's state (cursor, disabled by a 410, counters),
 * its deliveries keyed by (endpoint, event seq), the pending index the
 * delivery thread resumes from, the last delivery of each order (`previous`),
 * and the attempt log. PH_CMD_WH_* apply here; CREATE and RESULT, one per
 * delivery pass, carry structs (store.h, in.wh), REPLAY JSON text parsed here:
 * applying stays a function of the data and the command (times are the command's `now` and the
 * submitter's next_at, never a clock read here).
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "crypto/wipe_alloc.h"
#include "store/store_int.h"

#define WH_KEY_MAX    (PH_SKU_MAX + 1 + 8 + 4)
#define WH_REPLAY_MAX 10000
#define WH_SCAN_MAX   10000

const char *ph_wh_state_name(int state)
{
    static const char *const names[] = {"?", "pending", "delivered", "dead"};
    return state >= 1 && state <= 3 ? names[state] : "?";
}

int ph_wh_state_parse(const char *name)
{
    for (int i = 1; name && i <= 3; i++)
        if (!strcmp(name, ph_wh_state_name(i)))
            return i;
    return 0;
}

void ph_wh_delivery_id(const char *endpoint, uint64_t seq, char out[PH_WH_ID_MAX])
{
    snprintf(out, PH_WH_ID_MAX, "wh_%s_%" PRIu64, endpoint, seq);
}

uint64_t ph_wh_delivery_seq(const char *endpoint, const char *id)
{
    size_t n = strlen(endpoint);
    if (!id || strncmp(id, "wh_", 3) || strncmp(id + 3, endpoint, n) || id[3 + n] != '_')
        return 0;
    const char *p = id + 4 + n;
    uint64_t v = 0;
    if (!*p || *p == '0')
        return 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
            return 0;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    return v;
}

/* ---- keys and records ---------------------------------------------------------- */

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t rd_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* endpoint NUL be64(n) [be32(no)]; returns its length (0: endpoint too long). */
static size_t wh_key(uint8_t *buf, const char *endpoint, uint64_t n, int with_no, uint32_t no)
{
    size_t el = strlen(endpoint);
    if (el == 0 || el > PH_SKU_MAX)
        return 0;
    memcpy(buf, endpoint, el);
    buf[el] = 0;
    be64(buf + el + 1, n);
    if (!with_no)
        return el + 9;
    for (int i = 3; i >= 0; i--, no >>= 8)
        buf[el + 9 + i] = (uint8_t)no;
    return el + 13;
}

static void ep_decode(json_t *j, ph_wh_endpoint_state *e)
{
    memset(e, 0, sizeof *e);
    e->cursor = (uint64_t)json_integer_value(json_object_get(j, "cursor"));
    e->disabled = json_is_true(json_object_get(j, "disabled"));
    e->disabled_at = json_integer_value(json_object_get(j, "disabled_at"));
    e->gen = (uint64_t)json_integer_value(json_object_get(j, "gen"));
    e->pending = (uint64_t)json_integer_value(json_object_get(j, "pending"));
    e->failing = (uint64_t)json_integer_value(json_object_get(j, "failing"));
    e->dead = (uint64_t)json_integer_value(json_object_get(j, "dead"));
    e->delivered = (uint64_t)json_integer_value(json_object_get(j, "delivered"));
    e->last_success_at = json_integer_value(json_object_get(j, "last_success_at"));
    e->last_failure_at = json_integer_value(json_object_get(j, "last_failure_at"));
}

/* The endpoint record's text: byte for byte what jansson wrote for it
 * (compact, keys in this order), printed and scanned by hand because the
 * writer reads and writes it once per delivery command. */
#define EP_TEXT_MAX 400
static const char *const ep_keys[] = {
    "cursor",    "disabled",        "disabled_at",    "gen", "pending", "failing", "dead",
    "delivered", "last_success_at", "last_failure_at"};

static size_t ep_format(const ph_wh_endpoint_state *e, char out[EP_TEXT_MAX])
{
    int n =
        snprintf(out, EP_TEXT_MAX,
                 "{\"cursor\":%" PRId64 ",\"disabled\":%s,\"disabled_at\":%" PRId64
                 ",\"gen\":%" PRId64 ",\"pending\":%" PRId64 ",\"failing\":%" PRId64
                 ",\"dead\":%" PRId64 ",\"delivered\":%" PRId64 ",\"last_success_at\":%" PRId64
                 ",\"last_failure_at\":%" PRId64 "}",
                 (int64_t)e->cursor, e->disabled ? "true" : "false", (int64_t)e->disabled_at,
                 (int64_t)e->gen, (int64_t)e->pending, (int64_t)e->failing, (int64_t)e->dead,
                 (int64_t)e->delivered, (int64_t)e->last_success_at, (int64_t)e->last_failure_at);
    assert(n > 0 && n < EP_TEXT_MAX);
    return (size_t)n;
}

/* Scans text in ep_format's form; -1 for anything else (then jansson reads it). */
static int ep_scan(const char *p, size_t len, ph_wh_endpoint_state *e)
{
    const char *end = p + len;
    int64_t v[10];
    if (p == end || *p++ != '{')
        return -1;
    for (size_t i = 0; i < 10; i++) {
        size_t kl = strlen(ep_keys[i]);
        if ((size_t)(end - p) < kl + 4 || p[0] != '"' || memcmp(p + 1, ep_keys[i], kl) ||
            p[kl + 1] != '"' || p[kl + 2] != ':')
            return -1;
        p += kl + 3;
        if (i == 1) {
            if (end - p >= 4 && !memcmp(p, "true", 4))
                v[i] = 1, p += 4;
            else if (end - p >= 5 && !memcmp(p, "false", 5))
                v[i] = 0, p += 5;
            else
                return -1;
        } else {
            int neg = p < end && *p == '-';
            p += neg;
            uint64_t x = 0;
            const char *d0 = p;
            while (p < end && *p >= '0' && *p <= '9' && p - d0 < 19)
                x = x * 10 + (uint64_t)(*p++ - '0');
            if (p == d0 || (p < end && *p >= '0' && *p <= '9'))
                return -1;
            v[i] = neg ? -(int64_t)x : (int64_t)x;
        }
        if (p == end || *p++ != (i == 9 ? '}' : ','))
            return -1;
    }
    if (p != end)
        return -1;
    *e = (ph_wh_endpoint_state){.cursor = (uint64_t)v[0],
                                .disabled = (int)v[1],
                                .disabled_at = v[2],
                                .gen = (uint64_t)v[3],
                                .pending = (uint64_t)v[4],
                                .failing = (uint64_t)v[5],
                                .dead = (uint64_t)v[6],
                                .delivered = (uint64_t)v[7],
                                .last_success_at = v[8],
                                .last_failure_at = v[9]};
    return 0;
}

/* The endpoint record's state; -1 when it is not a JSON object. */
static int ep_read(const MDB_val *v, ph_wh_endpoint_state *e)
{
    if (ep_scan(v->mv_data, v->mv_size, e) == 0)
        return 0;
    json_t *j = json_loadb(v->mv_data, v->mv_size, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return -1;
    }
    ep_decode(j, e);
    json_decref(j);
    return 0;
}

/* Delivery record (wh_deliveries): this header, then the type and the last
 * error (no NULs). Binary: the writer handles one per delivery created and
 * per answer, next to the orders it commits with. Every byte a named field. */
typedef struct wh_del_rec {
    uint8_t version; /* 1 */
    uint8_t state;
    uint8_t type_len;
    uint8_t err_len;
    uint32_t attempts;
    int32_t last_status;
    uint32_t reserved; /* 0 */
    uint64_t order_id, previous;
    int64_t next_at, created_at, delivered_at, retry_from;
} wh_del_rec;
_Static_assert(sizeof(wh_del_rec) == 64, "delivery record header is 64 bytes without padding");

/* Attempt record (wh_attempts): this header, then the error. */
typedef struct wh_att_rec {
    int64_t at;
    int32_t status;
    uint8_t outcome; /* PH_WH_* of wh_policy.h: 1 delivered, 2 retry, 3 dead, 4 gone */
    uint8_t err_len;
    uint16_t reserved; /* 0 */
} wh_att_rec;
_Static_assert(sizeof(wh_att_rec) == 16, "attempt record header is 16 bytes without padding");

static int del_decode(const MDB_val *v, uint64_t seq, ph_wh_delivery *d)
{
    wh_del_rec r;
    if (v->mv_size < sizeof r)
        return PH_EIO;
    memcpy(&r, v->mv_data, sizeof r);
    if (r.version != 1 || v->mv_size != sizeof r + r.type_len + r.err_len ||
        r.type_len > PH_SKU_MAX || r.err_len >= sizeof d->last_error)
        return PH_EIO;
    memset(d, 0, sizeof *d);
    const char *p = (const char *)v->mv_data + sizeof r;
    d->seq = seq;
    memcpy(d->type, p, r.type_len);
    memcpy(d->last_error, p + r.type_len, r.err_len);
    d->order_id = r.order_id;
    d->previous = r.previous;
    d->state = r.state;
    d->attempts = r.attempts;
    d->next_at = r.next_at;
    d->created_at = r.created_at;
    d->delivered_at = r.delivered_at;
    d->retry_from = r.retry_from;
    d->last_status = r.last_status;
    return PH_OK;
}

/* ---- writer helpers ---------------------------------------------------------------- */

/* *found 0 and a zero state when the endpoint was never seen. */
static int ep_load(ph_wtxn *w, const char *endpoint, ph_wh_endpoint_state *e, int *found,
                   ph_err *err)
{
    memset(e, 0, sizeof *e);
    *found = 0;
    MDB_val k = {strlen(endpoint), (void *)endpoint}, v;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_WH_ENDPOINTS], &k, &v);
    if (mrc == MDB_NOTFOUND)
        return PH_OK;
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read webhook endpoint");
    if (ep_read(&v, e))
        return ph_err_set(err, PH_EIO, "store: wh_endpoints: malformed record of %s", endpoint);
    *found = 1;
    return PH_OK;
}

static int ep_save(ph_wtxn *w, const char *endpoint, const ph_wh_endpoint_state *e, ph_err *err)
{
    char txt[EP_TEXT_MAX];
    MDB_val k = {strlen(endpoint), (void *)endpoint}, v = {ep_format(e, txt), txt};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_WH_ENDPOINTS], &k, &v, 0);
    return mrc ? ph_store_lmdb_err(err, mrc, "write webhook endpoint") : PH_OK;
}

static int del_load(ph_wtxn *w, const char *endpoint, uint64_t seq, ph_wh_delivery *d, ph_err *err)
{
    uint8_t kb[WH_KEY_MAX];
    MDB_val k = {wh_key(kb, endpoint, seq, 0, 0), kb}, v;
    if (!k.mv_size)
        return ph_err_set(err, PH_EINVAL, "webhook: endpoint: not 1..%d bytes", PH_SKU_MAX);
    int mrc = mdb_get(w->txn, w->s->dbi[DB_WH_DELIVERIES], &k, &v);
    if (mrc == MDB_NOTFOUND)
        return ph_err_set(err, PH_ENOTFOUND, "webhook %s has no delivery of event %" PRIu64,
                          endpoint, seq);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read webhook delivery");
    if (del_decode(&v, seq, d))
        return ph_err_set(err, PH_EIO, "store: wh_deliveries: malformed record %s/%" PRIu64,
                          endpoint, seq);
    return PH_OK;
}

static int del_save(ph_wtxn *w, const char *endpoint, const ph_wh_delivery *d, ph_err *err)
{
    uint8_t kb[WH_KEY_MAX];
    size_t kl = wh_key(kb, endpoint, d->seq, 0, 0);
    size_t tl = strnlen(d->type, PH_SKU_MAX), el = strnlen(d->last_error, 120);
    wh_del_rec r = {.version = 1,
                    .state = (uint8_t)d->state,
                    .type_len = (uint8_t)tl,
                    .err_len = (uint8_t)el,
                    .attempts = d->attempts,
                    .last_status = d->last_status,
                    .order_id = d->order_id,
                    .previous = d->previous,
                    .next_at = d->next_at,
                    .created_at = d->created_at,
                    .delivered_at = d->delivered_at,
                    .retry_from = d->retry_from};
    MDB_val k = {kl, kb}, v = {sizeof r + tl + el, NULL};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_WH_DELIVERIES], &k, &v, MDB_RESERVE);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "write webhook delivery");
    memcpy(v.mv_data, &r, sizeof r);
    memcpy((char *)v.mv_data + sizeof r, d->type, tl);
    memcpy((char *)v.mv_data + sizeof r + tl, d->last_error, el);
    v = (MDB_val){0, ""};
    mrc = d->state == PH_WH_PENDING ? mdb_put(w->txn, w->s->dbi[DB_WH_PENDING], &k, &v, 0)
                                    : mdb_del(w->txn, w->s->dbi[DB_WH_PENDING], &k, NULL);
    if (mrc && mrc != MDB_NOTFOUND)
        return ph_store_lmdb_err(err, mrc, "write webhook pending index");
    return PH_OK;
}

/* ---- the commands -------------------------------------------------------------- */

/* One row of the attempt log (wh_attempts). */
static int att_put(ph_wtxn *w, const char *endpoint, uint64_t seq, uint32_t no, int64_t at,
                   int32_t status, int outcome, const char *error, ph_err *err)
{
    uint8_t kb[WH_KEY_MAX];
    size_t kl = wh_key(kb, endpoint, seq, 1, no);
    wh_att_rec ar = {.at = at,
                     .status = status,
                     .outcome = (uint8_t)outcome,
                     .err_len = (uint8_t)strnlen(error, 120)};
    MDB_val ak = {kl, kb}, av = {sizeof ar + ar.err_len, NULL};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_WH_ATTEMPTS], &ak, &av, MDB_RESERVE);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "write webhook attempt");
    memcpy(av.mv_data, &ar, sizeof ar);
    memcpy((char *)av.mv_data + sizeof ar, error, ar.err_len);
    return PH_OK;
}

/* The log row a delivery delivered at its first attempt kept in its record,
 * written before a replay overwrites that record. */
static int att_from_record(ph_wtxn *w, const char *endpoint, const ph_wh_delivery *d, ph_err *err)
{
    if (d->state != PH_WH_DELIVERED_STATE || d->attempts != 1)
        return PH_OK;
    return att_put(w, endpoint, d->seq, 1, d->delivered_at, d->last_status, PH_WH_OUT_DELIVERED,
                   d->last_error, err);
}

static int wh_create(ph_wtxn *w, ph_cmd *c)
{
    const char *ep = c->in.wh.endpoint;
    uint64_t from = c->in.wh.cursor_from, to = c->in.wh.cursor_to;
    if (to < from || (c->in.wh.ndels && !c->in.wh.dels))
        return ph_err_set(&c->err, PH_EINVAL,
                          "wh_create: expected cursor_from <= cursor_to and deliveries");
    ph_wh_endpoint_state e;
    int found, rc = ep_load(w, ep, &e, &found, &c->err);
    if (rc)
        return rc;
    if (e.cursor != from)
        return ph_err_set(&c->err, PH_ECONFLICT,
                          "wh_create: endpoint %s is at event %" PRIu64 ", not %" PRIu64, ep,
                          e.cursor, from);
    uint64_t last = from;
    for (size_t i = 0; i < c->in.wh.ndels; i++) {
        const ph_wh_new *n = &c->in.wh.dels[i];
        size_t tl = strnlen(n->type, sizeof n->type);
        if (n->seq <= last || n->seq > to || !tl || tl > PH_SKU_MAX)
            return ph_err_set(&c->err, PH_EINVAL,
                              "wh_create: deliveries[%zu]: expected [seq ascending within the "
                              "cursors, type, order id]",
                              i);
        last = n->seq;
        ph_wh_delivery d = {.seq = n->seq,
                            .order_id = n->order_id,
                            .state = PH_WH_PENDING,
                            .next_at = c->now,
                            .created_at = c->now,
                            .retry_from = c->now};
        memcpy(d.type, n->type, tl);
        if (d.order_id) {
            uint8_t kb[WH_KEY_MAX], sv[8];
            MDB_val k = {wh_key(kb, ep, d.order_id, 0, 0), kb}, v;
            int mrc = mdb_get(w->txn, w->s->dbi[DB_WH_LAST], &k, &v);
            if (mrc == 0 && v.mv_size == 8)
                d.previous = rd_be64(v.mv_data);
            else if (mrc && mrc != MDB_NOTFOUND)
                return ph_store_lmdb_err(&c->err, mrc, "read webhook last");
            be64(sv, d.seq);
            v = (MDB_val){8, sv};
            if ((mrc = mdb_put(w->txn, w->s->dbi[DB_WH_LAST], &k, &v, 0)))
                return ph_store_lmdb_err(&c->err, mrc, "write webhook last");
        }
        if ((rc = del_save(w, ep, &d, &c->err)))
            return rc;
        e.pending++;
    }
    e.cursor = to;
    c->wh_count = c->in.wh.ndels;
    return ep_save(w, ep, &e, &c->err);
}

/* The endpoint a run of results belongs to, loaded once and written once
 * when the run ends (a pass's answers are mostly one endpoint's). */
typedef struct ep_cache {
    char id[PH_SKU_MAX + 1];
    ph_wh_endpoint_state e;
    int loaded;
} ep_cache;

static int ep_cache_flush(ph_wtxn *w, ph_cmd *c, ep_cache *ec)
{
    int rc = ec->loaded ? ep_save(w, ec->id, &ec->e, &c->err) : PH_OK;
    ec->loaded = 0;
    return rc;
}

static int ep_cache_get(ph_wtxn *w, ph_cmd *c, ep_cache *ec, const char *ep,
                        ph_wh_endpoint_state **out)
{
    if (!ec->loaded || strcmp(ec->id, ep)) {
        int found, rc = ep_cache_flush(w, c, ec);
        if (rc || (rc = ep_load(w, ep, &ec->e, &found, &c->err)))
            return rc;
        snprintf(ec->id, sizeof ec->id, "%s", ep);
        ec->loaded = 1;
    }
    *out = &ec->e;
    return PH_OK;
}

static int wh_result_one(ph_wtxn *w, ph_cmd *c, const ph_wh_answer *r, size_t i, ep_cache *ec)
{
    const char *ep = r->endpoint, *error = r->error ? r->error : "";
    int kind = r->outcome;
    if (!ep || !ep[0] || strlen(ep) > PH_SKU_MAX || kind < PH_WH_OUT_DELIVERED ||
        kind > PH_WH_OUT_GONE || strlen(error) > 120)
        return ph_err_set(&c->err, PH_EINVAL,
                          "wh_result: results[%zu]: expected endpoint, seq, outcome", i);
    uint64_t seq = r->seq;
    ph_wh_delivery d;
    int rc = del_load(w, ep, seq, &d, &c->err);
    if (rc == PH_ENOTFOUND || (rc == PH_OK && d.state != PH_WH_PENDING))
        return PH_OK; /* replayed meanwhile, or a duplicate: nothing to record */
    if (rc)
        return rc;
    ph_wh_endpoint_state *ep_state;
    if ((rc = ep_cache_get(w, c, ec, ep, &ep_state)))
        return rc;
    ph_wh_endpoint_state e = *ep_state;
    int was_failing = d.attempts > 0;
    d.attempts++;
    d.last_status = r->status;
    snprintf(d.last_error, sizeof d.last_error, "%s", error);
    /* a first attempt that delivered (the common case) is the delivery
     * record's own (attempts 1, last_status, delivered_at): its log row is
     * written only if a replay re-opens the delivery (att_from_record) */
    if (!(kind == PH_WH_OUT_DELIVERED && d.attempts == 1) &&
        (rc = att_put(w, ep, seq, d.attempts, c->now, d.last_status, kind, d.last_error, &c->err)))
        return rc;
    switch (kind) {
    case PH_WH_OUT_DELIVERED:
        d.state = PH_WH_DELIVERED_STATE;
        d.delivered_at = c->now;
        e.pending--, e.delivered++;
        e.failing -= was_failing && e.failing;
        e.last_success_at = c->now;
        break;
    case PH_WH_OUT_DEAD:
        d.state = PH_WH_DEAD_STATE;
        e.pending--, e.dead++;
        e.failing -= was_failing && e.failing;
        e.last_failure_at = c->now;
        break;
    default: /* retry, gone */
        d.next_at = r->next_at;
        if (d.next_at < c->now)
            d.next_at = c->now;
        e.failing += !was_failing;
        e.last_failure_at = c->now;
        if (kind == PH_WH_OUT_GONE && !e.disabled) {
            e.disabled = 1;
            e.disabled_at = c->now;
        }
        break;
    }
    if ((rc = del_save(w, ep, &d, &c->err)))
        return rc;
    c->wh_count++;
    *ep_state = e;
    return PH_OK;
}

static int wh_result(ph_wtxn *w, ph_cmd *c)
{
    if (c->in.wh.nanswers && !c->in.wh.answers)
        return ph_err_set(&c->err, PH_EINVAL, "wh_result: expected results");
    ep_cache ec = {0};
    for (size_t i = 0; i < c->in.wh.nanswers; i++) {
        int rc = wh_result_one(w, c, &c->in.wh.answers[i], i, &ec);
        if (rc)
            return rc;
    }
    return ep_cache_flush(w, c, &ec);
}

static int wh_enable(ph_wtxn *w, ph_cmd *c)
{
    const char *ep = c->in.wh.endpoint;
    ph_wh_endpoint_state e;
    int found, rc = ep_load(w, ep, &e, &found, &c->err);
    if (rc)
        return rc;
    if (!found)
        return ph_err_set(&c->err, PH_ENOTFOUND, "no webhook endpoint %s has state yet", ep);
    e.disabled = 0;
    e.disabled_at = 0;
    e.gen++;
    return ep_save(w, ep, &e, &c->err);
}

static int wh_replay(ph_wtxn *w, ph_cmd *c, json_t *a)
{
    const char *ep = c->in.wh.endpoint;
    json_t *one = json_object_get(a, "seq");
    json_t *jf = json_object_get(a, "from_seq"), *jt = json_object_get(a, "to_seq");
    uint64_t from, to;
    if (json_is_integer(one) && json_integer_value(one) > 0)
        from = to = (uint64_t)json_integer_value(one);
    else if (json_is_integer(jf) && json_is_integer(jt) && json_integer_value(jf) > 0 &&
             json_integer_value(jt) >= json_integer_value(jf))
        from = (uint64_t)json_integer_value(jf), to = (uint64_t)json_integer_value(jt);
    else
        return ph_err_set(&c->err, PH_EINVAL, "wh_replay: expected seq, or from_seq <= to_seq");
    ph_wh_endpoint_state e;
    int found, rc = ep_load(w, ep, &e, &found, &c->err);
    if (rc)
        return rc;
    if (!found)
        return ph_err_set(&c->err, PH_ENOTFOUND, "no webhook endpoint %s has state yet", ep);
    if (json_is_integer(one)) {
        ph_wh_delivery d;
        if ((rc = del_load(w, ep, from, &d, &c->err)))
            return rc;
    }
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(w->txn, w->s->dbi[DB_WH_DELIVERIES], &cur);
    if (mrc)
        return ph_store_lmdb_err(&c->err, mrc, "open webhook deliveries");
    uint8_t kb[WH_KEY_MAX];
    size_t el = strlen(ep);
    MDB_val k = {wh_key(kb, ep, from, 0, 0), kb}, v;
    size_t seen = 0;
    /* the records to change are collected first: writing under an open cursor
     * of the same database would move it */
    ph_wh_delivery *todo = NULL;
    size_t n = 0, cap = 0;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); mrc == 0 && seen < WH_REPLAY_MAX;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), seen++) {
        if (k.mv_size != el + 9 || memcmp(k.mv_data, ep, el) || ((uint8_t *)k.mv_data)[el])
            break;
        uint64_t seq = rd_be64((uint8_t *)k.mv_data + el + 1);
        if (seq > to)
            break;
        ph_wh_delivery d;
        if (del_decode(&v, seq, &d)) {
            rc = ph_err_set(&c->err, PH_EIO, "store: wh_deliveries: malformed record");
            break;
        }
        if (d.state == PH_WH_PENDING)
            continue;
        ph_wh_delivery *g = n == cap ? ph_grow(todo, &cap, sizeof *g, 64) : todo;
        if (!g) {
            rc = ph_err_set(&c->err, PH_ENOMEM, "out of memory");
            break;
        }
        todo = g;
        todo[n++] = d;
    }
    mdb_cursor_close(cur);
    if (rc == PH_OK && mrc && mrc != MDB_NOTFOUND)
        rc = ph_store_lmdb_err(&c->err, mrc, "read webhook deliveries");
    for (size_t i = 0; rc == PH_OK && i < n; i++) {
        ph_wh_delivery *d = &todo[i];
        if (d->state == PH_WH_DELIVERED_STATE)
            e.delivered -= e.delivered > 0;
        else
            e.dead -= e.dead > 0;
        e.pending++;
        if (d->attempts)
            e.failing++;
        if ((rc = att_from_record(w, ep, d, &c->err)))
            break;
        d->state = PH_WH_PENDING;
        d->next_at = c->now;
        d->retry_from = c->now;
        rc = del_save(w, ep, d, &c->err);
    }
    free(todo);
    if (rc)
        return rc;
    e.gen++;
    c->wh_count = n;
    return ep_save(w, ep, &e, &c->err);
}

int store_apply_webhook(ph_wtxn *w, ph_cmd *c)
{
    const char *ep = c->in.wh.endpoint;
    if (c->type != PH_CMD_WH_RESULT && (!ep || !ep[0] || strlen(ep) > PH_SKU_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "webhook: endpoint: not 1..%d bytes", PH_SKU_MAX);
    if (c->type == PH_CMD_WH_ENABLE)
        return wh_enable(w, c);
    if (c->type == PH_CMD_WH_CREATE)
        return wh_create(w, c);
    if (c->type == PH_CMD_WH_RESULT)
        return wh_result(w, c);
    json_t *a = c->in.wh.json ? json_loads(c->in.wh.json, JSON_REJECT_DUPLICATES, NULL) : NULL;
    if (!json_is_object(a)) {
        json_decref(a);
        return ph_err_set(&c->err, PH_EINVAL, "webhook: json: not a JSON object");
    }
    int rc = wh_replay(w, c, a);
    json_decref(a);
    return rc;
}

/* ---- reads ------------------------------------------------------------------------ */

int ph_store_wh_endpoint_get(ph_store *s, const char *endpoint, ph_wh_endpoint_state *out,
                             ph_err *err)
{
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    MDB_val k = {strlen(endpoint), (void *)endpoint}, v;
    int mrc = k.mv_size ? mdb_get(txn, s->dbi[DB_WH_ENDPOINTS], &k, &v) : MDB_NOTFOUND;
    if (mrc == MDB_NOTFOUND)
        rc = ph_err_set(err, PH_ENOTFOUND, "webhook endpoint %s has no state yet", endpoint);
    else if (mrc)
        rc = ph_err_set(err, PH_EIO, "store: read webhook endpoint: %s", mdb_strerror(mrc));
    else if (ep_read(&v, out))
        rc = ph_err_set(err, PH_EIO, "store: wh_endpoints: malformed record of %s", endpoint);
    ph_store_read_end(s, txn);
    return rc;
}

/* Walks db (wh_pending or wh_deliveries) from the endpoint's seq after + 1;
 * pending: load each delivery's record from wh_deliveries. */
static int wh_walk(ph_store *s, int db, const char *endpoint, int state, uint64_t after,
                   size_t limit, size_t scan, ph_wh_delivery **out, size_t *n, uint64_t *next_after,
                   int *more, ph_err *err)
{
    *out = NULL;
    *n = 0;
    *next_after = after;
    *more = 0;
    uint8_t kb[WH_KEY_MAX];
    size_t el = strlen(endpoint);
    MDB_val k = {wh_key(kb, endpoint, after + 1, 0, 0), kb}, v;
    if (!k.mv_size || after == UINT64_MAX)
        return PH_OK;
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    int mrc = mdb_cursor_open(txn, s->dbi[db], &cur);
    if (mrc) {
        ph_store_read_end(s, txn);
        return ph_err_set(err, PH_EIO, "store: read webhook deliveries: %s", mdb_strerror(mrc));
    }
    ph_wh_delivery *list = NULL;
    size_t cap = 0, seen = 0;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != el + 9 || memcmp(k.mv_data, endpoint, el) || ((uint8_t *)k.mv_data)[el])
            break;
        if (*n == limit || seen == scan) {
            *more = 1;
            break;
        }
        uint64_t seq = rd_be64((uint8_t *)k.mv_data + el + 1);
        *next_after = seq;
        seen++;
        MDB_val dv = v;
        if (db == DB_WH_PENDING) {
            MDB_val dk = k;
            int g = mdb_get(txn, s->dbi[DB_WH_DELIVERIES], &dk, &dv);
            if (g) {
                rc = ph_err_set(err, PH_EIO,
                                "store: wh_pending names delivery %s/%" PRIu64
                                " that wh_deliveries lacks",
                                endpoint, seq);
                break;
            }
        }
        ph_wh_delivery d;
        if (del_decode(&dv, seq, &d)) {
            rc = ph_err_set(err, PH_EIO, "store: wh_deliveries: malformed record %s/%" PRIu64,
                            endpoint, seq);
            break;
        }
        if (state && d.state != state)
            continue;
        ph_wh_delivery *g = *n == cap ? ph_grow(list, &cap, sizeof *g, 64) : list;
        if (!g) {
            rc = ph_err_set(err, PH_ENOMEM, "out of memory");
            break;
        }
        list = g;
        list[(*n)++] = d;
    }
    if (rc == PH_OK && mrc && mrc != MDB_NOTFOUND)
        rc = ph_err_set(err, PH_EIO, "store: read webhook deliveries: %s", mdb_strerror(mrc));
    mdb_cursor_close(cur);
    ph_store_read_end(s, txn);
    if (rc) {
        free(list);
        *n = 0;
        *next_after = after;
        *more = 0;
        return rc;
    }
    *out = list;
    return PH_OK;
}

int ph_store_wh_pending(ph_store *s, const char *endpoint, uint64_t after, size_t limit,
                        ph_wh_delivery **out, size_t *n, ph_err *err)
{
    uint64_t next;
    int more;
    return wh_walk(s, DB_WH_PENDING, endpoint, 0, after, limit, SIZE_MAX, out, n, &next, &more,
                   err);
}

int ph_store_wh_deliveries(ph_store *s, const char *endpoint, int state, uint64_t after,
                           size_t limit, ph_wh_delivery **out, size_t *n, uint64_t *next_after,
                           int *more, ph_err *err)
{
    return wh_walk(s, DB_WH_DELIVERIES, endpoint, state, after, limit, WH_SCAN_MAX, out, n,
                   next_after, more, err);
}

uint64_t ph_store_event_last(ph_store *s)
{
    MDB_txn *txn;
    ph_err err = {0};
    if (ph_store_read_begin(s, &txn, &err))
        return 0;
    uint64_t last = ph_store_last_key(txn, s->dbi[DB_EVENTS]);
    ph_store_read_end(s, txn);
    return last;
}

/* ---- --check-store ------------------------------------------------------------------ */

int store_check_webhooks(ph_store *s, MDB_txn *txn, ph_err *err)
{
    MDB_cursor *ec;
    int mrc = mdb_cursor_open(txn, s->dbi[DB_WH_ENDPOINTS], &ec);
    if (mrc)
        return ph_err_set(err, PH_EIO, "store: wh_endpoints: %s", mdb_strerror(mrc));
    MDB_val ek, ev;
    int rc = PH_OK;
    uint64_t listed = 0;
    for (mrc = mdb_cursor_get(ec, &ek, &ev, MDB_FIRST); mrc == 0 && rc == PH_OK;
         mrc = mdb_cursor_get(ec, &ek, &ev, MDB_NEXT)) {
        char ep[PH_SKU_MAX + 1];
        if (ek.mv_size == 0 || ek.mv_size > PH_SKU_MAX)
            return mdb_cursor_close(ec),
                   ph_err_set(err, PH_EIO, "store: wh_endpoints: a malformed key");
        memcpy(ep, ek.mv_data, ek.mv_size);
        ep[ek.mv_size] = 0;
        ph_wh_endpoint_state e;
        if (ep_read(&ev, &e)) {
            rc = ph_err_set(err, PH_EIO, "store: wh_endpoints: %s: malformed", ep);
            break;
        }
        uint64_t n[4] = {0};
        MDB_cursor *dc;
        if ((mrc = mdb_cursor_open(txn, s->dbi[DB_WH_DELIVERIES], &dc)))
            break;
        uint8_t kb[WH_KEY_MAX];
        size_t el = strlen(ep);
        MDB_val k = {wh_key(kb, ep, 0, 0, 0), kb}, v;
        int dm;
        for (dm = mdb_cursor_get(dc, &k, &v, MDB_SET_RANGE); dm == 0 && rc == PH_OK;
             dm = mdb_cursor_get(dc, &k, &v, MDB_NEXT)) {
            if (k.mv_size != el + 9 || memcmp(k.mv_data, ep, el) || ((uint8_t *)k.mv_data)[el])
                break;
            uint64_t seq = rd_be64((uint8_t *)k.mv_data + el + 1);
            ph_wh_delivery d;
            MDB_val pv;
            if (del_decode(&v, seq, &d) || d.state < 1 || d.state > 3) {
                rc = ph_err_set(err, PH_EIO, "store: wh_deliveries: %s/%" PRIu64 ": malformed", ep,
                                seq);
                break;
            }
            n[d.state]++;
            int in_pending = mdb_get(txn, s->dbi[DB_WH_PENDING], &k, &pv) == 0;
            if (in_pending != (d.state == PH_WH_PENDING))
                rc = ph_err_set(err, PH_EIO,
                                "store: wh_deliveries: %s/%" PRIu64 " is %s but %s wh_pending", ep,
                                seq, ph_wh_state_name(d.state), in_pending ? "in" : "not in");
            else if (seq > e.cursor)
                rc =
                    ph_err_set(err, PH_EIO,
                               "store: wh_deliveries: %s/%" PRIu64 " is past the endpoint's cursor "
                               "%" PRIu64,
                               ep, seq, e.cursor);
            else if (d.previous) {
                ph_wh_delivery p;
                uint8_t pb[WH_KEY_MAX];
                MDB_val pk = {wh_key(pb, ep, d.previous, 0, 0), pb}, pvv;
                if (d.previous >= seq || mdb_get(txn, s->dbi[DB_WH_DELIVERIES], &pk, &pvv) ||
                    del_decode(&pvv, d.previous, &p) || p.order_id != d.order_id)
                    rc = ph_err_set(err, PH_EIO,
                                    "store: wh_deliveries: %s/%" PRIu64 ": previous %" PRIu64
                                    " is not an earlier delivery of order %" PRIu64,
                                    ep, seq, d.previous, d.order_id);
            }
        }
        mdb_cursor_close(dc);
        listed += n[1];
        if (rc == PH_OK && (n[1] != e.pending || n[2] != e.delivered || n[3] != e.dead))
            rc = ph_err_set(err, PH_EIO,
                            "store: wh_endpoints: %s counts pending %" PRIu64 ", delivered %" PRIu64
                            ", dead %" PRIu64 "; its deliveries say %" PRIu64 ", %" PRIu64
                            ", %" PRIu64,
                            ep, e.pending, e.delivered, e.dead, n[1], n[2], n[3]);
    }
    mdb_cursor_close(ec);
    if (rc == PH_OK && mrc && mrc != MDB_NOTFOUND)
        rc = ph_err_set(err, PH_EIO, "store: wh_endpoints: %s", mdb_strerror(mrc));
    MDB_stat ms;
    if (rc == PH_OK && mdb_stat(txn, s->dbi[DB_WH_PENDING], &ms) == 0 && ms.ms_entries != listed)
        rc = ph_err_set(err, PH_EIO,
                        "store: wh_pending holds %zu entries; the endpoints' pending deliveries "
                        "are %" PRIu64,
                        (size_t)ms.ms_entries, listed);
    return rc;
}
