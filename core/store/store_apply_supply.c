/*
 * store_apply_supply.c — supplier-fulfilled orders inside the writer's
 * transaction (store_apply.c says how commands run): creating one with its
 * first attempt, recording each attempt and the codes it delivered, and the
 * order events, written as text.
 */
#include "store/store_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "base/util.h"

/* ---- supplier-fulfilled orders -------------------------------------------- */

/* Text that may reach an event or the API: 1..max printable ASCII bytes (or
 * empty when empty_ok). Plugins' reasons are snake_case; anything else is a
 * bug upstream and is refused rather than stored. */
int store_text_ok(const char *s, size_t max, int empty_ok)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= max || (unsigned char)s[n] < 0x20 || (unsigned char)s[n] > 0x7e)
            return 0;
    return n > 0 || empty_ok;
}

/* A failover or first target; its cost for the whole order must fit in fen. */
static int target_ok(const ph_attempt_target *t, uint32_t quantity, ph_err *err, const char *what)
{
    int64_t total;
    if (!ph_ident_valid(t->supplier, PH_SKU_MAX) || !t->product_id ||
        !store_text_ok(t->product_id, PH_SUPPLIER_ORDER_MAX, 0))
        return ph_err_set(err, PH_EINVAL, "%s: supplier or product_id malformed", what);
    if (t->unit_cost < 0 || __builtin_mul_overflow(t->unit_cost, (int64_t)quantity, &total))
        return ph_err_set(err, PH_EINVAL, "%s: unit_cost out of range", what);
    return PH_OK;
}

/* Appends attempt no = nattempts + 1 at t, in SENDING, referenced by
 * "<store uid>-<order id>-<no>" so no two stores or attempts share one. */
static int add_attempt(ph_wtxn *w, ph_order *o, const ph_attempt_target *t, int64_t now,
                       ph_err *err)
{
    if (o->nattempts >= UINT16_MAX)
        return ph_err_set(err, PH_ELIMIT, "order %llu: too many attempts",
                          (unsigned long long)o->id);
    ph_attempt *g = realloc(o->attempts, (o->nattempts + 1) * sizeof *g);
    if (!g)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    o->attempts = g;
    ph_attempt *a = &g[o->nattempts++];
    memset(a, 0, sizeof *a);
    a->no = (uint32_t)o->nattempts;
    a->state = PH_ATTEMPT_SENDING;
    a->unit_cost = t->unit_cost;
    a->charged = -1;
    a->delivered = -1;
    a->created_at = a->updated_at = now;
    snprintf(a->supplier, sizeof a->supplier, "%s", t->supplier);
    snprintf(a->product_id, sizeof a->product_id, "%s", t->product_id);
    snprintf(a->ref, sizeof a->ref, "%s-%llu-%u", w->s->uid, (unsigned long long)o->id, a->no);
    return PH_OK;
}

static int put_supply(ph_wtxn *w, const ph_order *o, unsigned put_flags, ph_err *err)
{
    size_t len;
    /* the attempt index first: it reads the record this one replaces */
    int rc = store_satt_put_supply(w, o, (put_flags & MDB_APPEND) != 0, err);
    if (rc)
        return rc;
    uint8_t *buf = ph_supply_encode(o, &len);
    if (!buf)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    uint64_t id = o->id;
    MDB_val k = {8, &id}, v = {len, buf};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_SUPPLY], &k, &v, put_flags);
    free(buf);
    return mrc ? ph_store_lmdb_err(err, mrc, "write supply record") : PH_OK;
}

/* Keeps `pending` listing exactly the orders with an attempt still open, its
 * value marking those that are stuck (PH_PENDING_STUCK). */
static int set_pending(ph_wtxn *w, uint64_t id, int was, int is, int was_stuck, int is_stuck,
                       unsigned put_flags, ph_err *err)
{
    static const char stuck_mark = PH_PENDING_STUCK;
    MDB_val k = {8, &id}, v = {is_stuck ? 1 : 0, is_stuck ? (void *)&stuck_mark : ""};
    int mrc = 0;
    if (is && (!was || was_stuck != is_stuck))
        mrc = mdb_put(w->txn, w->s->dbi[DB_PENDING], &k, &v, was ? 0 : put_flags);
    else if (was && !is)
        mrc = mdb_del(w->txn, w->s->dbi[DB_PENDING], &k, NULL);
    return mrc ? ph_store_lmdb_err(err, mrc, "write pending") : PH_OK;
}

static int has_open_attempt(const ph_order *o)
{
    return o->nattempts && ph_attempt_state_open(o->attempts[o->nattempts - 1].state);
}

/* ---- order events, written as text -------------------------------------------
 * Byte for byte what store_emit() would write (jansson, compact, keys in this order),
 * without a JSON tree per event: these are written for every order and every
 * attempt. Strings are identifiers or printable ASCII (text_ok); they are
 * escaped anyway. */

/* ph_time_format(now), remembered from the previous command (writer only). */
static const char *event_time(ph_wtxn *w, int64_t now)
{
    ph_store *s = w->s;
    if (!s->at_set || s->at_ms != now) {
        ph_time_format(now, s->at, sizeof s->at);
        s->at_ms = now;
        s->at_set = 1;
    }
    return s->at;
}

typedef struct evtext {
    char buf[1024];
    size_t len;
    int overflow;
} evtext;

static void ev_raw(evtext *e, const char *s, size_t n)
{
    if (e->len + n >= sizeof e->buf) {
        e->overflow = 1;
        return;
    }
    memcpy(e->buf + e->len, s, n);
    e->len += n;
}

static void ev_key(evtext *e, const char *key)
{
    ev_raw(e, ",\"", 2);
    ev_raw(e, key, strlen(key));
    ev_raw(e, "\":", 2);
}

static void ev_sink(void *e, const char *s, size_t n)
{
    ev_raw(e, s, n);
}

/* A JSON string as jansson escapes it (one that jansson would refuse, not
 * UTF-8, makes the event unwritable). */
static void ev_str(evtext *e, const char *key, const char *v)
{
    ev_key(e, key);
    if (ph_json_str(v, ev_sink, e))
        e->overflow = 1;
}

static void ev_int(evtext *e, const char *key, long long v)
{
    char n[24];
    ev_key(e, key);
    ev_raw(e, n, (size_t)snprintf(n, sizeof n, "%lld", v));
}

/* seq, at, type, then the fields every order event starts with. Never the
 * account, masked or not. */
static void ev_begin(evtext *e, ph_wtxn *w, int64_t now, const char *type, const ph_order *o)
{
    e->len = 0;
    e->overflow = 0;
    char n[24];
    ev_raw(e, "{\"seq\":", 7);
    ev_raw(e, n, (size_t)snprintf(n, sizeof n, "%llu", (unsigned long long)w->ids.event));
    ev_str(e, "at", event_time(w, now));
    ev_str(e, "type", type);
    ev_int(e, "order_id", (long long)o->id);
    ev_str(e, "client", o->client);
    ev_str(e, "client_order_id", o->client_order_id);
    ev_str(e, "sku", o->sku);
    uint64_t parent; /* a bundle's component names its bundle (issue 16) */
    if (ph_order_component_of(o, &parent))
        ev_int(e, "parent", (long long)parent);
}

static int ev_end(evtext *e, ph_wtxn *w, const ph_order *o, ph_err *err)
{
    ev_raw(e, "}", 1);
    if (e->overflow)
        return ph_err_set(err, PH_EIO, "order %llu: event too long or not UTF-8",
                          (unsigned long long)o->id);
    return store_append_event(w, e->buf, e->len, err);
}

static int emit_accepted(ph_wtxn *w, int64_t now, const ph_order *o, ph_err *err)
{
    evtext e;
    ev_begin(&e, w, now, "order.accepted", o);
    ev_int(&e, "quantity", o->quantity);
    ev_str(&e, "delivery", ph_delivery_name(o->delivery));
    ev_str(&e, "state", ph_order_state_name(o->state));
    if (o->nattempts) { /* the claim again of a grant given back: its new attempt */
        ev_str(&e, "supplier", o->attempts[o->nattempts - 1].supplier);
        ev_int(&e, "attempt", o->nattempts);
    }
    return ev_end(&e, w, o, err);
}

static int emit_attempt(ph_wtxn *w, int64_t now, const ph_order *o, const ph_attempt *a,
                        ph_err *err)
{
    evtext e;
    ev_begin(&e, w, now, "order.attempt", o);
    ev_int(&e, "attempt", a->no);
    ev_str(&e, "supplier", a->supplier);
    ev_str(&e, "state", ph_attempt_state_name(a->state));
    ev_str(&e, "reason", a->reason);
    return ev_end(&e, w, o, err);
}

/* order.succeeded / order.failed / order.unknown: a stock order (no attempt,
 * no batch) or a supplier order. */
int store_emit_outcome(ph_wtxn *w, int64_t now, const ph_order *o, uint64_t batch_id, ph_err *err)
{
    const ph_attempt *a = o->nattempts ? &o->attempts[o->nattempts - 1] : NULL;
    char type[32];
    snprintf(type, sizeof type, "order.%s", ph_order_state_name(o->state));
    evtext e;
    ev_begin(&e, w, now, type, o);
    ev_int(&e, "quantity", o->quantity);
    if (o->state == PH_ORDER_SUCCEEDED)
        ev_int(&e, "cost_fen", o->cost);
    else
        ev_str(&e, "reason", o->reason);
    if (a) {
        ev_str(&e, "supplier", a->supplier);
        ev_int(&e, "attempt", a->no);
    }
    if (batch_id)
        ev_int(&e, "batch_id", (long long)batch_id);
    return ev_end(&e, w, o, err);
}

int store_emit_granted(ph_wtxn *w, int64_t now, const ph_order *o, int64_t expires_at, ph_err *err)
{
    evtext e;
    ev_begin(&e, w, now, "order.granted", o);
    ev_int(&e, "grant_id", (long long)o->id);
    ev_int(&e, "quantity", o->quantity);
    ev_str(&e, "delivery", ph_delivery_name(o->delivery ? o->delivery : PH_DELIVERY_CARD_CODE));
    ev_int(&e, "expires_at", (long long)expires_at);
    return ev_end(&e, w, o, err);
}

static int check_supply_input(ph_cmd *c)
{
    const char *masked = c->in.supply.account_masked;
    if (!ph_ident_valid(c->in.supply.client, PH_SKU_MAX) ||
        !ph_ident_valid(c->in.supply.client_order_id, PH_ORDER_ID_MAX) ||
        !ph_ident_valid(c->in.supply.sku, PH_SKU_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "order: client, client_order_id or sku malformed");
    if (c->in.supply.quantity < 1 || c->in.supply.quantity > PH_ORDER_QUANTITY_MAX)
        return ph_err_set(&c->err, PH_EINVAL, "quantity: expected 1 to %d", PH_ORDER_QUANTITY_MAX);
    if (c->in.supply.delivery == PH_DELIVERY_RECHARGE && c->in.supply.grant) {
        /* a granted recharge gets its account when it is claimed */
        if (c->in.supply.account_sealed || masked)
            return ph_err_set(&c->err, PH_EINVAL, "account: a granted recharge takes none yet");
    } else if (c->in.supply.delivery == PH_DELIVERY_RECHARGE) {
        if (!c->in.supply.account_sealed || !c->in.supply.account_sealed_len || !masked ||
            !store_text_ok(masked, sizeof(((ph_order *)0)->account_masked) - 1, 0))
            return ph_err_set(&c->err, PH_EINVAL, "account: a recharge needs an account");
    } else if (c->in.supply.delivery == PH_DELIVERY_CARD_CODE) {
        if (c->in.supply.account_sealed || masked)
            return ph_err_set(&c->err, PH_EINVAL, "account: card codes take no account");
    } else {
        return ph_err_set(&c->err, PH_EINVAL, "delivery: %d is not a delivery kind",
                          c->in.supply.delivery);
    }
    if (c->in.supply.first.supplier)
        return target_ok(&c->in.supply.first, c->in.supply.quantity, &c->err, "first");
    if (c->in.supply.fail_reason && !store_text_ok(c->in.supply.fail_reason, PH_REASON_MAX, 1))
        return ph_err_set(&c->err, PH_EINVAL, "fail_reason: malformed");
    return PH_OK;
}

/* The product exists, is listed and is delivered the way the order says. */
static int check_suppliable(ph_wtxn *w, ph_cmd *c)
{
    const char *sku = c->in.supply.sku;
    char kind[32] = "?";
    int delivery;
    int rc = store_listed_delivery(w, c, sku, &delivery, kind);
    if (rc == PH_OK && delivery != c->in.supply.delivery)
        rc = ph_err_set(&c->err, PH_ESKU, "sku: '%s' is delivered by %s, not %s", sku,
                        delivery ? ph_delivery_name(delivery) : kind,
                        ph_delivery_name(c->in.supply.delivery));
    return rc;
}

static ph_order *new_supply_order(ph_wtxn *w, ph_cmd *c)
{
    ph_order *o = calloc(1, sizeof *o);
    uint32_t alen = c->in.supply.account_sealed_len;
    if (!o || (c->in.supply.account_sealed && !(o->account_sealed = malloc(alen)))) {
        free(o);
        return NULL;
    }
    o->id = w->ids.order++;
    snprintf(o->client, sizeof o->client, "%s", c->in.supply.client);
    snprintf(o->client_order_id, sizeof o->client_order_id, "%s", c->in.supply.client_order_id);
    snprintf(o->sku, sizeof o->sku, "%s", c->in.supply.sku);
    o->quantity = c->in.supply.quantity;
    o->delivery = c->in.supply.delivery;
    o->created_at = o->updated_at = c->now;
    memcpy(o->fingerprint, c->in.supply.fingerprint, 32);
    if (c->in.supply.account_sealed) {
        memcpy(o->account_sealed, c->in.supply.account_sealed, alen);
        o->account_sealed_len = alen;
        snprintf(o->account_masked, sizeof o->account_masked, "%s", c->in.supply.account_masked);
    }
    return o;
}

int store_apply_supply_create(ph_wtxn *w, ph_cmd *c)
{
    const ph_order_risk *risk = c->in.supply.risk;
    const ph_grant_in *grant = c->in.supply.grant;
    int rc = check_supply_input(c);
    if (rc || (rc = store_risk_input_ok(c, risk)) != PH_OK ||
        (rc = store_grant_input_ok(c, grant)) != PH_OK)
        return rc;
    char key[PH_SKU_MAX + PH_ORDER_ID_MAX + 2];
    MDB_val k = {ph_store_ref_key(c->in.supply.client, c->in.supply.client_order_id, key), key}, v;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_ORDER_REF], &k, &v);
    if (mrc == 0)
        return store_replay_order(w, c, &v, c->in.supply.fingerprint, c->in.supply.client_order_id);
    if (mrc != MDB_NOTFOUND)
        return ph_store_lmdb_err(&c->err, mrc, "read order index");
    if ((rc = check_suppliable(w, c)) != PH_OK)
        return rc;
    ph_order *o = new_supply_order(w, c);
    if (!o)
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    int decided = risk && risk->verdict != PH_VERDICT_FULFIL; /* held or denied: no attempt */
    if (decided) {
        store_risk_decide(o, risk);
    } else if (grant) { /* the right only: no attempt until it is claimed */
        o->state = PH_ORDER_GRANTED;
    } else if (c->in.supply.first.supplier) {
        o->state = PH_ORDER_PROCESSING;
        rc = add_attempt(w, o, &c->in.supply.first, c->now, &c->err);
    } else {
        o->state = PH_ORDER_FAILED;
        snprintf(o->reason, sizeof o->reason, "%s",
                 c->in.supply.fail_reason ? c->in.supply.fail_reason : "");
    }
    if (rc == PH_OK)
        w->wrote = 1; /* every failure above left the database untouched */
    if (rc == PH_OK && (rc = store_put_order(w, o, MDB_APPEND, &c->err)) == PH_OK &&
        (rc = put_supply(w, o, MDB_APPEND, &c->err)) == PH_OK &&
        (rc = store_index_order(w, o, &c->err)) == PH_OK &&
        (rc = set_pending(w, o->id, 0, has_open_attempt(o), 0, 0, MDB_APPEND, &c->err)) == PH_OK &&
        (decided || grant || (rc = emit_accepted(w, c->now, o, &c->err)) == PH_OK) &&
        (rc = store_risk_record(w, c, o, risk)) == PH_OK) {
        if (grant && o->state != PH_ORDER_FAILED) /* granted or held (denied: no grant) */
            rc = store_grant_new(w, c, o, grant);
        else if (!decided && o->state == PH_ORDER_FAILED)
            rc = store_emit_outcome(w, c->now, o, 0, &c->err);
    }
    if (rc) {
        ph_order_free(o);
        return rc;
    }
    c->order = o;
    return PH_OK;
}

/* Forward only (store.h): a final attempt never moves, SENDING is never
 * re-entered, and the same state again only records a check. */
static int transition_ok(int from, int to)
{
    if (!ph_attempt_state_open(from) || to < PH_ATTEMPT_SENDING || to > PH_ATTEMPT_FAILED)
        return 0;
    return to != PH_ATTEMPT_SENDING || from == PH_ATTEMPT_SENDING;
}

static int check_attempt_input(ph_cmd *c)
{
    if (c->in.attempt.reason && !store_text_ok(c->in.attempt.reason, PH_REASON_MAX, 1))
        return ph_err_set(&c->err, PH_EINVAL, "reason: at most %d printable ASCII bytes",
                          PH_REASON_MAX);
    if (c->in.attempt.supplier_order_id &&
        !store_text_ok(c->in.attempt.supplier_order_id, PH_SUPPLIER_ORDER_MAX, 1))
        return ph_err_set(&c->err, PH_EINVAL, "supplier_order_id: at most %d printable ASCII bytes",
                          PH_SUPPLIER_ORDER_MAX);
    if (c->in.attempt.step_state && strlen(c->in.attempt.step_state) > PH_REASON_MAX)
        return ph_err_set(&c->err, PH_EINVAL, "step_state: at most %d bytes", PH_REASON_MAX);
    if (c->in.attempt.step < -1 || c->in.attempt.step > UINT32_MAX || c->in.attempt.charged < -1 ||
        c->in.attempt.next_check_at < -1)
        return ph_err_set(&c->err, PH_EINVAL, "attempt: step, charged or next_check_at < -1");
    if (c->in.attempt.tolerance < 0 || c->in.attempt.face_value < 0 ||
        c->in.attempt.late_check_at < 0)
        return ph_err_set(&c->err, PH_EINVAL,
                          "attempt: tolerance, face_value or late_check_at < 0");
    if (c->in.attempt.next.supplier && c->in.attempt.state != PH_ATTEMPT_FAILED)
        return ph_err_set(&c->err, PH_EINVAL, "next: only a failed attempt fails over");
    for (size_t i = 0; i < c->in.attempt.ncodes; i++)
        if (!c->in.attempt.codes[i].sealed || !c->in.attempt.codes[i].sealed_len)
            return ph_err_set(&c->err, PH_EINVAL, "codes[%zu]: no sealed code", i);
    return PH_OK;
}

/* Codes may come only with the success of a card order, exactly as many as ordered. */
static int check_attempt_codes(const ph_order *o, ph_cmd *c)
{
    size_t n = c->in.attempt.ncodes;
    int card_success =
        c->in.attempt.state == PH_ATTEMPT_SUCCEEDED && o->delivery == PH_DELIVERY_CARD_CODE;
    if (!card_success && n)
        return ph_err_set(&c->err, PH_EINVAL, "codes: only a succeeded card order has codes");
    if (card_success && n != o->quantity)
        return ph_err_set(&c->err, PH_EINVAL, "codes: %zu delivered for a quantity of %u", n,
                          o->quantity);
    return PH_OK;
}

/* The attempt's fields the command sets; NULL / -1 keep. */
static void update_attempt(ph_attempt *a, const ph_cmd *c)
{
    if (c->in.attempt.reason)
        snprintf(a->reason, sizeof a->reason, "%s", c->in.attempt.reason);
    if (c->in.attempt.supplier_order_id)
        snprintf(a->supplier_order_id, sizeof a->supplier_order_id, "%s",
                 c->in.attempt.supplier_order_id);
    if (c->in.attempt.step_state)
        snprintf(a->step_state, sizeof a->step_state, "%s", c->in.attempt.step_state);
    if (c->in.attempt.step >= 0)
        a->step = (uint32_t)c->in.attempt.step;
    if (c->in.attempt.charged >= 0)
        a->charged = c->in.attempt.charged;
    if (c->in.attempt.delivered > 0)
        a->delivered = c->in.attempt.delivered;
    if (c->in.attempt.next_check_at >= 0)
        a->next_check_at = c->in.attempt.next_check_at;
    a->checks += c->in.attempt.count_check ? 1 : 0;
    a->state = c->in.attempt.state;
    a->updated_at = c->now;
    if (!ph_attempt_state_open(a->state))
        a->next_check_at = 0; /* settled: nothing left to ask */
}

typedef struct hash_sort {
    const ph_supplied_code *codes;
} hash_sort;

static int cmp_code_hash(const void *a, const void *b, void *arg)
{
    const ph_supplied_code *codes = ((const hash_sort *)arg)->codes;
    return memcmp(codes[*(const uint32_t *)a].hash, codes[*(const uint32_t *)b].hash, 32);
}

/* Indexes the new codes by hash, in hash order (each index page dirtied once);
 * a hash stored before, or twice in the delivery, is PH_EDUP. */
static int index_supplied(ph_wtxn *w, ph_cmd *c, uint64_t first, uint64_t order_id)
{
    size_t n = c->in.attempt.ncodes;
    uint32_t *idx = malloc(n * sizeof *idx);
    if (!idx)
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        idx[i] = (uint32_t)i;
    hash_sort hs = {c->in.attempt.codes};
    qsort_r(idx, n, sizeof *idx, cmp_code_hash, &hs);
    int rc = PH_OK;
    for (size_t i = 0; i < n && rc == PH_OK; i++) {
        uint64_t id = first + idx[i];
        MDB_val k = {32, (void *)c->in.attempt.codes[idx[i]].hash}, v = {8, &id};
        int mrc = mdb_put(w->txn, w->s->dbi[DB_CODE_HASH], &k, &v, MDB_NOOVERWRITE);
        if (mrc == MDB_KEYEXIST)
            rc = ph_err_set(&c->err, PH_EDUP,
                            "order %llu: delivered code %u of %zu is stored already",
                            (unsigned long long)order_id, idx[i] + 1, n);
        else if (mrc)
            rc = ph_store_lmdb_err(&c->err, mrc, "write code index");
    }
    free(idx);
    return rc;
}

/* A supplier's codes for order o: a new batch of attempt a, issued to o at once
 * (never in stock), and o->codes filled; or, for a replenishment's order
 * (ph_order_is_replenish), available in stock like an imported batch (the
 * batch names no order, o gets no codes). *batch_id gets the batch. */
static int store_supplied(ph_wtxn *w, ph_cmd *c, ph_order *o, const ph_attempt *a,
                          uint64_t *batch_id)
{
    size_t n = c->in.attempt.ncodes;
    int stock = ph_order_is_replenish(o);
    ph_batch b = {.id = w->ids.batch++,
                  .unit_cost = a->unit_cost,
                  .count = (uint32_t)n,
                  .first_code = w->ids.code,
                  .created_at = c->now};
    snprintf(b.supplier, sizeof b.supplier, "%s", a->supplier);
    snprintf(b.sku, sizeof b.sku, "%s", o->sku);
    snprintf(b.note, sizeof b.note, "%sorder %llu attempt %u", stock ? "replenishment " : "",
             (unsigned long long)o->id, a->no);
    if (!stock && !(o->codes = calloc(n, sizeof *o->codes)))
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    w->wrote = 1; /* a duplicate code is found only after the codes are written */
    MDB_val sku = {strlen(o->sku), o->sku};
    for (size_t i = 0; i < n; i++) {
        const ph_supplied_code *sc = &c->in.attempt.codes[i];
        uint64_t id = w->ids.code++;
        ph_code_rec rec = {.version = 1,
                           .state = stock ? PH_CODE_AVAILABLE : PH_CODE_ISSUED,
                           .sealed_len = sc->sealed_len,
                           .batch_id = b.id,
                           .order_id = stock ? 0 : o->id,
                           .expires_at = sc->expires_at,
                           .changed_at = c->now};
        int rc = store_put_code(w, id, &rec, sc->sealed, MDB_APPEND, &c->err);
        if (rc)
            return rc;
        if (stock) { /* into the SKU's stock list, as an import puts its codes */
            MDB_val v = {8, &id};
            int mrc = mdb_put(w->txn, w->s->dbi[DB_AVAIL], &sku, &v, MDB_APPENDDUP);
            if (mrc)
                return ph_store_lmdb_err(&c->err, mrc, "write stock");
            if (sc->expires_at > 0 && (rc = ph_expiry_add(w->txn, w->s->dbi[DB_EXPIRY], o->sku, id,
                                                          sc->expires_at, &c->err)))
                return rc;
            continue;
        }
        o->ncodes++;
        ph_code *code = &o->codes[i];
        *code = (ph_code){.id = id,
                          .state = PH_CODE_ISSUED,
                          .batch_id = b.id,
                          .order_id = o->id,
                          .expires_at = sc->expires_at,
                          .changed_at = c->now,
                          .sealed_len = sc->sealed_len,
                          .sealed = malloc(sc->sealed_len)};
        if (!code->sealed)
            return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
        memcpy(code->sealed, sc->sealed, sc->sealed_len);
    }
    int rc = index_supplied(w, c, b.first_code, o->id);
    if (rc == PH_OK)
        rc = store_put_batch(w, &b, stock ? 0 : o->id, &c->err);
    if (rc == PH_OK && stock)
        rc = store_replenish_mark_batch(w, b.id, o->id, &c->err);
    *batch_id = b.id;
    return rc;
}

int64_t store_supply_cost(const ph_order *o)
{
    int64_t cost = 0;
    for (size_t i = 0; i < o->nattempts; i++)
        if (o->attempts[i].state == PH_ATTEMPT_SUCCEEDED)
            cost += ph_attempt_cost(&o->attempts[i], o->quantity);
    return cost;
}

void store_order_follow(ph_order *o, const ph_attempt *a)
{
    o->reason[0] = 0;
    switch (a->state) {
    case PH_ATTEMPT_SUCCEEDED:
        o->state = PH_ORDER_SUCCEEDED;
        o->cost = store_supply_cost(o);
        break;
    case PH_ATTEMPT_FAILED:
        o->state = PH_ORDER_FAILED;
        snprintf(o->reason, sizeof o->reason, "%s", a->reason);
        break;
    case PH_ATTEMPT_UNKNOWN:
        o->state = PH_ORDER_UNKNOWN;
        snprintf(o->reason, sizeof o->reason, "%s", a->reason);
        break;
    default:
        o->state = PH_ORDER_PROCESSING;
    }
}

/* The order follows its attempt (store.h, PH_CMD_ATTEMPT): a fail-over adds
 * the next attempt, a succeeded card order stores its codes. */
static int settle_order(ph_wtxn *w, ph_cmd *c, ph_order *o, uint32_t no, uint64_t *batch_id)
{
    ph_attempt *a = &o->attempts[no - 1];
    if (a->state == PH_ATTEMPT_FAILED && c->in.attempt.next.supplier) {
        o->reason[0] = 0;
        o->state = PH_ORDER_PROCESSING;
        return add_attempt(w, o, &c->in.attempt.next, c->now, &c->err);
    }
    store_order_follow(o, a);
    if (a->state == PH_ATTEMPT_SUCCEEDED && o->delivery == PH_DELIVERY_CARD_CODE)
        return store_supplied(w, c, o, a, batch_id);
    return PH_OK;
}

/* Loads the order and finds attempt `no`; PH_ENOTFOUND for either. */
static int load_attempt(ph_wtxn *w, ph_cmd *c, ph_order **out)
{
    uint64_t id = c->in.attempt.order_id;
    uint32_t no = c->in.attempt.no;
    int rc = ph_order_load(w->s, w->txn, id, 0, out, &c->err);
    if (rc)
        return rc;
    if (no < 1 || no > (*out)->nattempts) {
        ph_order_free(*out);
        *out = NULL;
        return ph_err_set(&c->err, PH_ENOTFOUND, "order %llu: no attempt %u",
                          (unsigned long long)id, no);
    }
    return PH_OK;
}

/* What an attempt that just became final leaves behind: a success whose
 * amounts are not the agreed ones raises a discrepancy (the attempt keeps the
 * supplier's figures: a recharge that happened, happened); a failure as not
 * found gets its late re-query. ATTEMPT only: ops settling by hand bring their
 * own evidence. */
static int attempt_settled(ph_wtxn *w, ph_cmd *c, const ph_order *o, const ph_attempt *a)
{
    if (a->state == PH_ATTEMPT_SUCCEEDED &&
        ph_amount_mismatch(a->unit_cost, o->quantity, a->charged, c->in.attempt.tolerance,
                           c->in.attempt.face_value, a->delivered)) {
        ph_discrepancy d = {.order_id = o->id,
                            .attempt = a->no,
                            .source = PH_DISCREP_AMOUNT,
                            .their_state = PH_ATTEMPT_SUCCEEDED,
                            .their_charged = a->charged,
                            .their_delivered = a->delivered};
        return store_raise_discrepancy(w, c, o, &d, &c->discrepancy_id);
    }
    if (a->state == PH_ATTEMPT_FAILED && c->in.attempt.late_check_at > 0)
        return store_late_set(w, o->id, a->no, c->in.attempt.late_check_at, 1, &c->err);
    return PH_OK;
}

void store_attempt_before(const ph_order *o, uint32_t no, ph_attempt_before *b)
{
    *b = (ph_attempt_before){.order_state = o->state,
                             .attempt_state = o->attempts[no - 1].state,
                             .open = has_open_attempt(o),
                             .stuck = ph_order_stuck_since(o),
                             .nattempts = o->nattempts};
    snprintf(b->reason, sizeof b->reason, "%s", o->reason);
}

int store_write_attempt(ph_wtxn *w, ph_cmd *c, ph_order *o, uint32_t no, const ph_attempt_before *b,
                        uint64_t batch_id)
{
    /* a claimed grant's order that failed for good gives its grant back in
     * this same transaction: the order is granted again (no order.failed: it
     * did not end), the grant active (store_grant_back, below) */
    int back = 0;
    uint64_t bundle = 0;
    int rc = b->order_state != PH_ORDER_FAILED && o->state == PH_ORDER_FAILED
                 ? store_grant_takes_back(w, o, &back, &c->err)
                 : PH_OK;
    /* a bundle grant's component: the whole bundle given back when nothing of
     * it was delivered (store_bundle_grant_back, below); the component itself
     * failed for good, its order.failed told */
    if (rc == PH_OK && b->order_state != PH_ORDER_FAILED && o->state == PH_ORDER_FAILED)
        rc = store_bundle_takes_back(w, o, &bundle, &c->err);
    if (rc)
        return rc;
    w->bundle_back = bundle;
    if (back) {
        o->state = PH_ORDER_GRANTED;
        o->reason[0] = 0;
    }
    int attempt_moved = b->attempt_state != o->attempts[no - 1].state;
    int order_moved = b->order_state != o->state;
    int added = o->nattempts != b->nattempts;
    int64_t stuck = ph_order_stuck_since(o);
    w->wrote = 1;
    /* a check that changes nothing but the attempt's bookkeeping leaves the order be */
    if (order_moved || added || attempt_moved || strcmp(b->reason, o->reason)) {
        o->updated_at = c->now;
        rc = store_put_order(w, o, 0, &c->err);
    }
    if (rc == PH_OK && (rc = put_supply(w, o, 0, &c->err)) == PH_OK)
        rc = set_pending(w, o->id, b->open, has_open_attempt(o), b->stuck != 0, stuck != 0, 0,
                         &c->err);
    if (rc == PH_OK && attempt_moved)
        rc = emit_attempt(w, c->now, o, &o->attempts[no - 1], &c->err);
    if (rc == PH_OK && added)
        rc = emit_attempt(w, c->now, o, &o->attempts[o->nattempts - 1], &c->err);
    if (rc == PH_OK && order_moved && o->state != PH_ORDER_PROCESSING && !back)
        rc = store_emit_outcome(w, c->now, o, batch_id, &c->err);
    if (rc == PH_OK && back)
        rc = store_grant_back(w, c, o, o);
    if (rc == PH_OK && stuck && !b->stuck)
        rc = store_emit_stuck(w, c->now, o, &o->attempts[o->nattempts - 1], &c->err);
    if (rc == PH_OK && order_moved && ph_order_state_final(o->state) && ph_order_is_replenish(o))
        rc = store_replenish_end(w, c, o, batch_id);
    if (rc == PH_OK && bundle)
        rc = store_bundle_grant_back(w, c, bundle, o);
    w->bundle_back = 0;
    return rc;
}

int store_supply_release(ph_wtxn *w, ph_cmd *c, ph_order *o, const ph_attempt_target *first,
                         const char *fail_reason)
{
    int rc = PH_OK;
    if (first->supplier && (rc = target_ok(first, o->quantity, &c->err, "first")) != PH_OK)
        return rc;
    if (!first->supplier && fail_reason && !store_text_ok(fail_reason, PH_REASON_MAX, 1))
        return ph_err_set(&c->err, PH_EINVAL, "fail_reason: malformed");
    o->reason[0] = 0;
    if (first->supplier) {
        o->state = PH_ORDER_PROCESSING;
        rc = add_attempt(w, o, first, c->now, &c->err);
    } else {
        o->state = PH_ORDER_FAILED;
        snprintf(o->reason, sizeof o->reason, "%s", fail_reason ? fail_reason : "");
    }
    o->updated_at = c->now;
    if (rc == PH_OK && (rc = store_put_supply_order(w, o, 0, &c->err)) == PH_OK &&
        (rc = emit_accepted(w, c->now, o, &c->err)) == PH_OK && o->state == PH_ORDER_FAILED)
        rc = store_emit_outcome(w, c->now, o, 0, &c->err);
    return rc;
}

int store_put_supply_order(ph_wtxn *w, const ph_order *o, int was_open, ph_err *err)
{
    int64_t stuck = ph_order_stuck_since(o);
    int rc = store_put_order(w, o, 0, err);
    if (rc == PH_OK && (rc = put_supply(w, o, 0, err)) == PH_OK)
        rc = set_pending(w, o->id, was_open, has_open_attempt(o), stuck != 0, stuck != 0, 0, err);
    return rc;
}

/* mark_stuck (store.h): the attempt still open after this command, and the
 * order's last, becomes stuck now unless it is already. */
static void mark_stuck(ph_order *o, uint32_t no, const ph_cmd *c)
{
    ph_attempt *a = &o->attempts[no - 1];
    if (c->in.attempt.mark_stuck && no == o->nattempts && ph_attempt_state_open(a->state) &&
        !a->stuck_at)
        a->stuck_at = c->now;
}

int store_apply_attempt(ph_wtxn *w, ph_cmd *c)
{
    uint32_t no = c->in.attempt.no;
    ph_order *o = NULL;
    int rc = check_attempt_input(c);
    if (rc || (rc = load_attempt(w, c, &o)) != PH_OK)
        return rc;
    ph_attempt_before b;
    store_attempt_before(o, no, &b);
    uint64_t batch_id = 0;
    if (!transition_ok(b.attempt_state, c->in.attempt.state))
        rc = ph_err_set(&c->err, PH_ESTATE, "order %llu attempt %u: cannot go from %s to %s",
                        (unsigned long long)o->id, no, ph_attempt_state_name(b.attempt_state),
                        ph_attempt_state_name(c->in.attempt.state));
    else if ((rc = check_attempt_codes(o, c)) == PH_OK &&
             (!c->in.attempt.next.supplier ||
              (rc = target_ok(&c->in.attempt.next, o->quantity, &c->err, "next")) == PH_OK)) {
        update_attempt(&o->attempts[no - 1], c);
        mark_stuck(o, no, c);
        if ((rc = settle_order(w, c, o, no, &batch_id)) == PH_OK &&
            (rc = store_write_attempt(w, c, o, no, &b, batch_id)) == PH_OK &&
            o->attempts[no - 1].state != b.attempt_state)
            rc = attempt_settled(w, c, o, &o->attempts[no - 1]);
    }
    if (rc) {
        ph_order_free(o);
        return rc;
    }
    c->order = o;
    return PH_OK;
}
