/*
 * store_apply_order.c — card-code orders inside the writer's transaction
 * (store_apply.c says how commands run): whether a SKU can be ordered, issuing
 * codes and retiring the expired ones met, tallied into code.expired events,
 * the order records, and the expiry sweep (PH_CMD_EXPIRE).
 */
#include "store/store_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "base/util.h"

/* ---- orders --------------------------------------------------------------- */

/* The same client order id again: the stored order, or a conflict. */
int store_replay_order(ph_wtxn *w, ph_cmd *c, const MDB_val *ref, const uint8_t fingerprint[32],
                       const char *coid)
{
    uint64_t id;
    memcpy(&id, ref->mv_data, 8);
    int rc = ph_order_load(w->s, w->txn, id, 1, &c->order, &c->err);
    if (rc)
        return rc;
    if (memcmp(c->order->fingerprint, fingerprint, 32) != 0) {
        ph_order_free(c->order);
        c->order = NULL;
        return ph_err_set(&c->err, PH_ECONFLICT,
                          "client_order_id: '%s' already names order %llu with a different sku "
                          "or quantity",
                          coid, (unsigned long long)id);
    }
    c->replayed = 1;
    return PH_OK;
}

/* PH_DELIVERY_* of a listed sku the memo holds, else 0. */
static int memo_delivery(const ph_memo *m, const char *sku)
{
    for (unsigned i = 0; i < PH_MEMO_SKUS; i++)
        if (m->delivery[i] && strcmp(m->sku[i], sku) == 0)
            return m->delivery[i];
    return 0;
}

static void memo_note(ph_memo *m, const char *sku, int delivery)
{
    snprintf(m->sku[m->next_sku], sizeof m->sku[0], "%s", sku);
    m->delivery[m->next_sku] = delivery;
    m->next_sku = (m->next_sku + 1) % PH_MEMO_SKUS;
}

/* How a listed product is delivered: *out is PH_DELIVERY_*, or 0 for a kind
 * neither of ours (whose name `kind` then gets, for the caller's message),
 * from the memo or the stored product. PH_ESKU (message set) for a product
 * that is missing or not listed. */
int store_listed_delivery(ph_wtxn *w, ph_cmd *c, const char *sku, int *out, char kind[32])
{
    ph_memo *m = &w->s->memo;
    if ((*out = memo_delivery(m, sku)) != 0)
        return PH_OK;
    json_t *p;
    int rc = store_get_product(w, sku, &p, &c->err);
    if (rc)
        return rc;
    const char *delivery = json_string_value(json_object_get(p, "delivery"));
    snprintf(kind, 32, "%s", delivery ? delivery : "?");
    *out = ph_delivery_parse(delivery);
    const char *why = ph_product_delisted_why(p);
    if (why)
        rc = ph_err_set(&c->err, PH_ESKU, "sku: '%s' is delisted (%s)", sku, why);
    else if (!ph_product_listed(p))
        rc = ph_err_set(&c->err, PH_ESKU, "sku: '%s' is not listed", sku);
    json_decref(p);
    if (rc == PH_OK && *out)
        memo_note(m, sku, *out);
    return rc;
}

static int check_orderable(ph_wtxn *w, ph_cmd *c)
{
    char kind[32] = "?"; /* set by store_listed_delivery whenever it is read */
    int delivery;
    int rc = store_listed_delivery(w, c, c->in.order.sku, &delivery, kind);
    if (rc == PH_OK && delivery != PH_DELIVERY_CARD_CODE)
        rc = ph_err_set(&c->err, PH_ESKU, "sku: '%s' is delivered by %s, not from card-code stock",
                        c->in.order.sku, delivery ? ph_delivery_name(delivery) : kind);
    return rc;
}

/* ---- expiry tallies: what one code.expired event reports ------------------ */

/* Codes a command retired as expired, counted per batch in the order met. */
typedef struct expiry_tally {
    struct tally_row {
        uint64_t batch_id;
        char sku[PH_SKU_MAX + 1];
        uint64_t count;
    } * rows;
    size_t n;
    uint64_t total;
} expiry_tally;

static int tally_add(expiry_tally *t, uint64_t batch_id, const char *sku, ph_err *err)
{
    for (size_t i = t->n; i > 0; i--) /* consecutive codes share their batch: look back */
        if (t->rows[i - 1].batch_id == batch_id) {
            t->rows[i - 1].count++;
            t->total++;
            return PH_OK;
        }
    if (t->n % 16 == 0) {
        struct tally_row *g = realloc(t->rows, (t->n + 16) * sizeof *g);
        if (!g)
            return ph_err_set(err, PH_ENOMEM, "out of memory");
        t->rows = g;
    }
    struct tally_row *r = &t->rows[t->n++];
    r->batch_id = batch_id;
    snprintf(r->sku, sizeof r->sku, "%s", sku);
    r->count = 1;
    t->total++;
    return PH_OK;
}

static int cmp_tally_row(const void *a, const void *b)
{
    uint64_t x = ((const struct tally_row *)a)->batch_id,
             y = ((const struct tally_row *)b)->batch_id;
    return x < y ? -1 : x > y;
}

/* One code.expired event for everything the command retired (none when it
 * retired nothing): counts per batch, never a code or a code id (rule 3). */
static int emit_expired(ph_wtxn *w, int64_t now, expiry_tally *t, ph_err *err)
{
    if (!t->total)
        return PH_OK;
    qsort(t->rows, t->n, sizeof *t->rows, cmp_tally_row);
    json_t *batches = json_array();
    for (size_t i = 0; batches && i < t->n; i++) {
        const struct tally_row *r = &t->rows[i];
        if (json_array_append_new(batches,
                                  json_pack("{s:I,s:s,s:I}", "batch_id", (json_int_t)r->batch_id,
                                            "sku", r->sku, "count", (json_int_t)r->count))) {
            json_decref(batches);
            batches = NULL;
        }
    }
    json_t *fields =
        batches ? json_pack("{s:I,s:o}", "count", (json_int_t)t->total, "batches", batches) : NULL;
    return store_emit(w, now, "code.expired", fields, err); /* NULL fields: out of memory */
}

/* Rewrites code id as expired at now (its record keeps its size); rec and
 * sealed as store_get_code gave them. */
static int retire_code(ph_wtxn *w, uint64_t id, ph_code_rec *rec, const uint8_t *sealed,
                       int64_t now, ph_err *err)
{
    rec->state = PH_CODE_EXPIRED;
    rec->order_id = 0;
    rec->changed_at = now;
    /* store_put_code may move the record: copy the blob out of the old one first */
    uint8_t *blob = malloc(rec->sealed_len ? rec->sealed_len : 1);
    if (!blob)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    memcpy(blob, sealed, rec->sealed_len);
    int rc = store_put_code(w, id, rec, blob, 0, err);
    free(blob);
    return rc;
}

/*
 * The second line of defence behind the key checks at open (store_keys.c): a
 * code that does not unseal is never issued. The check belongs here, inside
 * the apply, and not before submission: only the writer knows which code an
 * order takes (the first of the SKU's stock at the moment the command runs),
 * and a check before would race with every other order. It keeps the write
 * path deterministic: opening a sealed blob with the keyring is a pure
 * function of the stored blob and the keys, which every replica holds (the
 * key checks refuse a node with other keys), and it reads no clock and draws
 * no random number. The order then fails as a whole (PH_ECRYPTO, nothing
 * written: the check runs before this code's first write, and a failure after
 * an earlier pop of the same order is rolled back by the writer's redo), so
 * the code stays available for ops to look at. Without keys (tests and tools
 * that keep blobs opaque) there is nothing to open with.
 */
static int check_unseals(ph_wtxn *w, ph_cmd *c, const char *sku, uint64_t id, const uint8_t *sealed,
                         uint32_t len)
{
    const ph_keyring *kr = w->s->keys;
    if (!kr)
        return PH_OK;
    char code[PH_CODE_MAX + 1], card[PH_CODE_MAX + 1];
    int rc = ph_code_unseal(kr, sealed, len, code, card);
    ph_wipe(code, sizeof code);
    ph_wipe(card, sizeof card);
    if (rc == PH_OK)
        return PH_OK;
    /* no path in it: the message reaches the client (the key file is named at start) */
    return ph_err_set(&c->err, PH_ECRYPTO,
                      "sku '%s': code %llu (key %u) does not unseal with the key file; nothing "
                      "was issued and the code stays available: check the store (perkhubd "
                      "--check-store DIR --key-file FILE)",
                      sku, (unsigned long long)id, (unsigned)ph_sealed_key_id(sealed, len));
}

/* Takes the SKU's first available code, retiring expired ones on the way (into
 * t: the caller reports them in one event). On PH_OK the code is issued to
 * order_id and copied into out. An expired code is never issued, nor one that
 * does not unseal (check_unseals). */
static int pop_code(ph_wtxn *w, ph_cmd *c, const char *sku, MDB_cursor *cur, uint64_t order_id,
                    int state, ph_code *out, expiry_tally *t)
{
    int64_t mv = store_min_validity(w, sku, strlen(sku));
    for (;;) {
        MDB_val k = {strlen(sku), (void *)sku}, v;
        int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
        if (mrc == MDB_NOTFOUND)
            return PH_ENOSTOCK;
        if (mrc)
            return ph_store_lmdb_err(&c->err, mrc, "read stock");
        uint64_t id;
        memcpy(&id, v.mv_data, 8);
        ph_code_rec rec;
        const uint8_t *sealed;
        int rc = store_get_code(w, id, &rec, &sealed, &c->err);
        if (rc)
            return rc;
        /* retired at its expiry less the product's min_validity_days */
        int expired = ph_code_retire_due(rec.expires_at, mv, c->now);
        if (!expired && (rc = check_unseals(w, c, sku, id, sealed, rec.sealed_len)) != PH_OK)
            return rc;
        /* the writes below may move records: copy the blob out first */
        uint8_t *blob = malloc(rec.sealed_len ? rec.sealed_len : 1);
        if (!blob)
            return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
        memcpy(blob, sealed, rec.sealed_len);
        w->wrote = 1; /* every later write of the order follows a pop */
        if ((mrc = mdb_cursor_del(cur, 0)) != 0) {
            free(blob);
            return ph_store_lmdb_err(&c->err, mrc, "take stock");
        }
        rec.state = expired ? PH_CODE_EXPIRED : (uint8_t)state;
        rec.order_id = expired ? 0 : order_id;
        rec.changed_at = c->now;
        if ((rc = store_put_code(w, id, &rec, blob, 0, &c->err)) != PH_OK) {
            free(blob);
            return rc;
        }
        if (expired) {
            /* its expiry index entry stays: the sweep removes it when it gets there */
            free(blob);
            if ((rc = tally_add(t, rec.batch_id, sku, &c->err)) != PH_OK)
                return rc;
            continue;
        }
        *out = (ph_code){.id = id,
                         .state = rec.state,
                         .batch_id = rec.batch_id,
                         .order_id = order_id,
                         .expires_at = rec.expires_at,
                         .changed_at = rec.changed_at,
                         .sealed_len = rec.sealed_len,
                         .sealed = blob};
        return PH_OK;
    }
}

/* Writes the order record: put_flags MDB_APPEND for a new order, 0 to rewrite.
 * Every write of an order comes here, so here the ledger books it. */
int store_put_order(ph_wtxn *w, const ph_order *o, unsigned put_flags, ph_err *err)
{
    size_t cl = strlen(o->client), ol = strlen(o->client_order_id), sl = strlen(o->sku);
    /* a bundle's parent keeps its reason too (denied, blocked, expired) */
    uint8_t reason = (uint8_t)(ph_order_local_reason(o->reason) << PH_ORDER_F_REASON_SHIFT);
    uint8_t flags = ph_order_via_supplier(o)            ? PH_ORDER_F_SUPPLY
                    : o->delivery == PH_DELIVERY_BUNDLE ? (uint8_t)(PH_ORDER_F_BUNDLE | reason)
                                                        : reason;
    ph_order_rec r = {.version = 1,
                      .state = (uint8_t)o->state,
                      .delivery = o->delivery ? (uint8_t)o->delivery : 1 /* card_code */,
                      .flags = flags,
                      .client_len = (uint8_t)cl,
                      .quantity = o->quantity,
                      .created_at = o->created_at,
                      .updated_at = o->updated_at,
                      .cost = o->cost,
                      .sku_len = (uint8_t)sl,
                      .coid_len = (uint16_t)ol,
                      .ncodes = (uint32_t)o->ncodes};
    memcpy(r.fingerprint, o->fingerprint, 32);
    uint64_t id = o->id;
    MDB_val k = {8, &id}, v = {sizeof r + cl + ol + sl + 8 * o->ncodes, NULL};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_ORDERS], &k, &v, put_flags | MDB_RESERVE);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "write order");
    uint8_t *p = v.mv_data;
    memcpy(p, &r, sizeof r);
    p += sizeof r;
    memcpy(p, o->client, cl);
    memcpy(p + cl, o->client_order_id, ol);
    memcpy(p + cl + ol, o->sku, sl);
    p += cl + ol + sl;
    for (size_t i = 0; i < o->ncodes; i++)
        memcpy(p + 8 * i, &o->codes[i].id, 8);
    int rc = store_agg_order(w, o, err); /* first: it reads what the ledger counted so far */
    if (rc == PH_OK)
        rc = store_ledger_book(w, o, err);
    /* a bundle's component: its parent follows in this transaction */
    if (rc == PH_OK && ph_order_component_of(o, NULL))
        rc = store_bundle_follow(w, o, err);
    return rc;
}

int store_index_order(ph_wtxn *w, const ph_order *o, ph_err *err)
{
    char key[PH_SKU_MAX + PH_ORDER_ID_MAX + 2];
    uint64_t id = o->id;
    MDB_val k = {ph_store_ref_key(o->client, o->client_order_id, key), key}, v = {8, &id};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_ORDER_REF], &k, &v, MDB_NOOVERWRITE);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "write order index");
    k = (MDB_val){strlen(o->client), (void *)o->client};
    v = (MDB_val){8, &id};
    mrc = mdb_put(w->txn, w->s->dbi[DB_CLIENT_ORDERS], &k, &v, 0);
    return mrc ? ph_store_lmdb_err(err, mrc, "write client index") : PH_OK;
}

int store_take_codes(ph_wtxn *w, ph_cmd *c, const char *sku, ph_order *o)
{
    MDB_cursor *cur;
    int rc = PH_OK, mrc = mdb_cursor_open(w->txn, w->s->dbi[DB_AVAIL], &cur);
    if (mrc)
        return ph_store_lmdb_err(&c->err, mrc, "open stock");
    if (!o->codes && !(o->codes = calloc(o->quantity, sizeof *o->codes))) {
        mdb_cursor_close(cur);
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    }
    int64_t cost = 0;
    expiry_tally expired = {0};
    while (o->ncodes < o->quantity) {
        rc = pop_code(w, c, sku, cur, o->id,
                      o->state == PH_ORDER_GRANTED ? PH_CODE_RESERVED : PH_CODE_ISSUED,
                      &o->codes[o->ncodes], &expired);
        if (rc == PH_OK) {
            o->ncodes++;
            const char *supplier;
            rc = store_batch_cost(w, o->codes[o->ncodes - 1].batch_id, &cost, &supplier, &c->err);
            o->cost += cost;
        }
        if (rc)
            break;
    }
    mdb_cursor_close(cur);
    if (rc == PH_ENOSTOCK)
        rc = ph_err_set(&c->err, PH_ENOSTOCK,
                        "sku: '%s' has %zu codes available, %u requested; nothing was reserved",
                        sku, o->ncodes, o->quantity);
    if (rc == PH_OK)
        rc = emit_expired(w, c->now, &expired, &c->err);
    free(expired.rows);
    return rc;
}

static int new_order(ph_wtxn *w, ph_cmd *c, ph_order **out)
{
    ph_order *o = calloc(1, sizeof *o);
    if (!o)
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    o->id = w->ids.order++;
    snprintf(o->client, sizeof o->client, "%s", c->in.order.client);
    snprintf(o->client_order_id, sizeof o->client_order_id, "%s", c->in.order.client_order_id);
    snprintf(o->sku, sizeof o->sku, "%s", c->in.order.sku);
    o->quantity = c->in.order.quantity;
    o->state = PH_ORDER_SUCCEEDED;
    o->created_at = o->updated_at = c->now;
    memcpy(o->fingerprint, c->in.order.fingerprint, 32);
    *out = o;
    return PH_OK;
}

int store_apply_order(ph_wtxn *w, ph_cmd *c)
{
    if (!ph_ident_valid(c->in.order.client, PH_SKU_MAX) ||
        !ph_ident_valid(c->in.order.client_order_id, PH_ORDER_ID_MAX) ||
        !ph_ident_valid(c->in.order.sku, PH_SKU_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "order: client, client_order_id or sku malformed");
    if (c->in.order.quantity < 1 || c->in.order.quantity > PH_ORDER_QUANTITY_MAX)
        return ph_err_set(&c->err, PH_EINVAL, "quantity: expected 1 to %d", PH_ORDER_QUANTITY_MAX);
    char key[PH_SKU_MAX + PH_ORDER_ID_MAX + 2];
    MDB_val k = {ph_store_ref_key(c->in.order.client, c->in.order.client_order_id, key), key}, v;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_ORDER_REF], &k, &v);
    if (mrc == 0)
        return store_replay_order(w, c, &v, c->in.order.fingerprint, c->in.order.client_order_id);
    if (mrc != MDB_NOTFOUND)
        return ph_store_lmdb_err(&c->err, mrc, "read order index");
    int rc = check_orderable(w, c);
    if (rc)
        return rc;
    const ph_order_risk *risk = c->in.order.risk;
    const ph_grant_in *grant = c->in.order.grant;
    if ((rc = store_risk_input_ok(c, risk)) != PH_OK ||
        (rc = store_grant_input_ok(c, grant)) != PH_OK)
        return rc;
    ph_order *o = NULL;
    if ((rc = new_order(w, c, &o)) != PH_OK)
        return rc;
    if (grant)
        o->state = PH_ORDER_GRANTED; /* its codes reserved, not issued (store_grant.c) */
    if (risk && risk->verdict != PH_VERDICT_FULFIL) {
        /* held or denied: no code taken (store_review.c) */
        store_risk_decide(o, risk);
        w->wrote = 1;
        if ((rc = store_put_order(w, o, MDB_APPEND, &c->err)) == PH_OK &&
            (rc = store_index_order(w, o, &c->err)) == PH_OK)
            rc = store_risk_record(w, c, o, risk);
        if (rc == PH_OK && grant && o->state == PH_ORDER_HELD)
            rc = store_grant_new(w, c, o, grant);
    } else if ((rc = store_take_codes(w, c, o->sku, o)) == PH_OK &&
               (rc = store_put_order(w, o, MDB_APPEND, &c->err)) == PH_OK &&
               (rc = store_index_order(w, o, &c->err)) == PH_OK &&
               (rc = store_risk_record(w, c, o, risk)) == PH_OK)
        rc = grant ? store_grant_new(w, c, o, grant) : store_emit_outcome(w, c->now, o, 0, &c->err);
    if (rc) {
        ph_order_free(o);
        return rc;
    }
    c->order = o;
    return PH_OK;
}

/* ---- the expiry sweep ------------------------------------------------------ */

/* One bounded step of the sweep (store.h, PH_CMD_EXPIRE): the due entries of
 * the expiry index, SKU by SKU, each removed; a code still available is
 * retired. Reads no clock: "due" is relative to cmd->now. */
static int64_t sweep_margin(void *arg, const char *sku, size_t len)
{
    return store_min_validity(arg, sku, len);
}

int store_apply_expire(ph_wtxn *w, ph_cmd *c)
{
    uint32_t limit = c->in.expire.limit ? c->in.expire.limit : PH_EXPIRE_LIMIT;
    expiry_tally t = {0};
    MDB_cursor *cur;
    MDB_val k, v;
    char sku[PH_SKU_MAX + 1] = "";
    size_t len = 0;
    int rc = PH_OK, mrc = mdb_cursor_open(w->txn, w->s->dbi[DB_EXPIRY], &cur);
    if (mrc)
        return ph_store_lmdb_err(&c->err, mrc, "open expiry index");
    c->expired_codes = 0;
    c->more = 0;
    for (uint32_t n = 0; rc == PH_OK; n++) {
        /* the SKU's first entry is the oldest: after a delete, seek again */
        if ((mrc = ph_expiry_seek_due(cur, sku, len, c->now, sweep_margin, w, &k, &v)) != 0)
            break;
        if (n == limit) {
            c->more = 1;
            break;
        }
        uint64_t id;
        int64_t at;
        ph_expiry_key_decode(&k, &len, &at); /* seek_due decoded it already */
        memcpy(sku, k.mv_data, len);
        sku[len] = 0;
        memcpy(&id, v.mv_data, 8);
        if ((mrc = mdb_cursor_del(cur, 0)) != 0)
            break;
        ph_code_rec rec;
        const uint8_t *sealed;
        if ((rc = store_get_code(w, id, &rec, &sealed, &c->err)) != PH_OK ||
            rec.state != PH_CODE_AVAILABLE ||
            !ph_code_retire_due(rec.expires_at, store_min_validity(w, sku, len), c->now))
            continue; /* issued or voided since: the entry was all that was left */
        MDB_val sk = {len, sku}, sv = {8, &id};
        if ((mrc = mdb_del(w->txn, w->s->dbi[DB_AVAIL], &sk, &sv)) != 0)
            break;
        if ((rc = retire_code(w, id, &rec, sealed, c->now, &c->err)) == PH_OK)
            rc = tally_add(&t, rec.batch_id, sku, &c->err);
    }
    mdb_cursor_close(cur);
    if (rc == PH_OK && mrc && mrc != MDB_NOTFOUND)
        rc = ph_store_lmdb_err(&c->err, mrc, "expiry sweep");
    if (rc == PH_OK) {
        c->expired_codes = t.total;
        rc = emit_expired(w, c->now, &t, &c->err);
    }
    /* each SKU that lost codes is judged once (its rows are consecutive) */
    for (size_t i = 0; rc == PH_OK && i < t.n; i++)
        if (i == 0 || strcmp(t.rows[i].sku, t.rows[i - 1].sku))
            rc = store_alerts_stock(w, t.rows[i].sku, &c->err);
    free(t.rows);
    return rc;
}
