/*
 * store_records.c — the record codecs: codes, orders and batches as LMDB
 * values, the supply record (an order's attempts) both ways, and loading an
 * order whole. Used by the writer and the reads, inside their transactions.
 */
#include "store/store_int.h"

#include "config/config.h"

#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crypto/crypto.h"
#include "base/util.h"
#include "store/cmd_codec.h"

/* ---- record codecs ---------------------------------------------------- */

int ph_code_decode(const MDB_val *v, uint64_t id, int copy_sealed, ph_code *out)
{
    ph_code_rec r;
    if (v->mv_size < sizeof r)
        return PH_EIO;
    memcpy(&r, v->mv_data, sizeof r);
    if (r.version != 1 || v->mv_size != sizeof r + r.sealed_len)
        return PH_EIO;
    *out = (ph_code){.id = id,
                     .state = r.state,
                     .batch_id = r.batch_id,
                     .order_id = r.order_id,
                     .expires_at = r.expires_at,
                     .changed_at = r.changed_at,
                     .sealed_len = r.sealed_len};
    if (copy_sealed) {
        out->sealed = malloc(r.sealed_len ? r.sealed_len : 1);
        if (!out->sealed)
            return PH_ENOMEM;
        memcpy(out->sealed, (const uint8_t *)v->mv_data + sizeof r, r.sealed_len);
    }
    return PH_OK;
}

static void copy_str(char *dst, size_t cap, const uint8_t *src, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

static const char *const local_reasons[] = {
    "", "denied_by_risk", "blocked_by_review", "out_of_stock", "grant_expired", "", "", ""};

unsigned ph_order_local_reason(const char *reason)
{
    for (unsigned i = 1; i < 5; i++)
        if (!strcmp(reason, local_reasons[i]))
            return i;
    return 0;
}

const char *ph_order_local_reason_name(unsigned ix)
{
    return ix < 8 ? local_reasons[ix] : "";
}

int ph_order_decode(const MDB_val *v, uint64_t id, ph_order *out, const uint8_t **ids)
{
    ph_order_rec r;
    if (v->mv_size < sizeof r)
        return PH_EIO;
    memcpy(&r, v->mv_data, sizeof r);
    size_t strs = (size_t)r.client_len + r.coid_len + r.sku_len;
    if (r.version != 1 || v->mv_size != sizeof r + strs + (size_t)r.ncodes * 8)
        return PH_EIO;
    const uint8_t *p = (const uint8_t *)v->mv_data + sizeof r;
    memset(out, 0, sizeof *out);
    out->id = id;
    copy_str(out->client, sizeof out->client, p, r.client_len);
    p += r.client_len;
    copy_str(out->client_order_id, sizeof out->client_order_id, p, r.coid_len);
    p += r.coid_len;
    copy_str(out->sku, sizeof out->sku, p, r.sku_len);
    p += r.sku_len;
    out->quantity = r.quantity;
    out->state = r.state;
    out->created_at = r.created_at;
    out->updated_at = r.updated_at;
    out->cost = r.cost;
    memcpy(out->fingerprint, r.fingerprint, 32);
    out->ncodes = r.ncodes;
    out->delivery = (r.flags & PH_ORDER_F_SUPPLY)   ? r.delivery
                    : (r.flags & PH_ORDER_F_BUNDLE) ? PH_DELIVERY_BUNDLE
                                                    : 0;
    if (!(r.flags & PH_ORDER_F_SUPPLY))
        snprintf(out->reason, sizeof out->reason, "%s",
                 ph_order_local_reason_name((r.flags & PH_ORDER_F_REASON_MASK) >>
                                            PH_ORDER_F_REASON_SHIFT));
    if (ids)
        *ids = p;
    return PH_OK;
}

static void json_str(json_t *o, const char *k, char *dst, size_t cap)
{
    const char *s = json_string_value(json_object_get(o, k));
    snprintf(dst, cap, "%s", s ? s : "");
}

int ph_batch_decode(const MDB_val *v, uint64_t id, ph_batch *out, uint64_t *order_id)
{
    json_t *o = json_loadb(v->mv_data, v->mv_size, 0, NULL);
    if (!o)
        return PH_EIO;
    memset(out, 0, sizeof *out);
    out->id = id;
    json_str(o, "supplier", out->supplier, sizeof out->supplier);
    json_str(o, "sku", out->sku, sizeof out->sku);
    json_str(o, "note", out->note, sizeof out->note);
    json_str(o, "void_reason", out->void_reason, sizeof out->void_reason);
    json_str(o, "code_lookalikes", out->lookalikes, sizeof out->lookalikes);
    out->unit_cost = json_integer_value(json_object_get(o, "unit_cost_fen"));
    out->count = (uint32_t)json_integer_value(json_object_get(o, "count"));
    out->first_code = (uint64_t)json_integer_value(json_object_get(o, "first_code"));
    out->created_at = json_integer_value(json_object_get(o, "created_at"));
    out->voided_at = json_integer_value(json_object_get(o, "voided_at"));
    out->voided = out->voided_at != 0;
    if (order_id)
        *order_id = (uint64_t)json_integer_value(json_object_get(o, "order_id"));
    json_decref(o);
    return PH_OK;
}

/* ---- supply records ------------------------------------------------------ */

typedef struct reader {
    const uint8_t *p;
    size_t left;
} reader;

static const uint8_t *take(reader *r, size_t n)
{
    if (n > r->left)
        return NULL;
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

/* Copies n bytes of r into a cap-byte string; fails when they do not fit. */
static int take_str(reader *r, size_t n, char *dst, size_t cap)
{
    const uint8_t *p = take(r, n);
    if (!p || n >= cap)
        return PH_EIO;
    memcpy(dst, p, n);
    dst[n] = 0;
    return PH_OK;
}

/* Version 2's tail of an attempt: when it was escalated and settled by hand. */
static int decode_tail(reader *r, ph_attempt *a)
{
    ph_attempt_tail t;
    const uint8_t *p = take(r, sizeof t);
    if (!p)
        return PH_EIO;
    memcpy(&t, p, sizeof t);
    a->stuck_at = t.stuck_at;
    a->settled_at = t.settled_at;
    return take_str(r, t.by_len, a->settled_by, sizeof a->settled_by) ||
                   take_str(r, t.note_len, a->settle_note, sizeof a->settle_note)
               ? PH_EIO
               : PH_OK;
}

static int decode_attempt(reader *r, ph_attempt *a, int version)
{
    ph_attempt_rec ar;
    const uint8_t *p = take(r, sizeof ar);
    if (!p)
        return PH_EIO;
    memcpy(&ar, p, sizeof ar);
    *a = (ph_attempt){.no = ar.no,
                      .state = ar.state,
                      .unit_cost = ar.unit_cost,
                      .charged = ar.charged,
                      .created_at = ar.created_at,
                      .updated_at = ar.updated_at,
                      .next_check_at = ar.next_check_at,
                      .checks = ar.checks,
                      .step = ar.step};
    if (take_str(r, ar.supplier_len, a->supplier, sizeof a->supplier) ||
        take_str(r, ar.product_len, a->product_id, sizeof a->product_id) ||
        take_str(r, ar.ref_len, a->ref, sizeof a->ref) ||
        take_str(r, ar.sorder_len, a->supplier_order_id, sizeof a->supplier_order_id) ||
        take_str(r, ar.reason_len, a->reason, sizeof a->reason) ||
        take_str(r, ar.step_state_len, a->step_state, sizeof a->step_state))
        return PH_EIO;
    if (version >= 2 && decode_tail(r, a))
        return PH_EIO;
    a->delivered = -1; /* before version 3: unknown */
    if (version >= 3) {
        const uint8_t *d = take(r, sizeof a->delivered);
        if (!d)
            return PH_EIO;
        memcpy(&a->delivered, d, sizeof a->delivered);
    }
    return PH_OK;
}

static int supply_decode(const MDB_val *v, ph_order *o)
{
    reader r = {v->mv_data, v->mv_size};
    ph_supply_rec h;
    const uint8_t *p = take(&r, sizeof h), *sealed;
    if (!p)
        return PH_EIO;
    memcpy(&h, p, sizeof h);
    if (h.version < 1 || h.version > PH_SUPPLY_VERSION ||
        take_str(&r, h.reason_len, o->reason, sizeof o->reason) ||
        take_str(&r, h.masked_len, o->account_masked, sizeof o->account_masked) ||
        !(sealed = take(&r, h.sealed_len)))
        return PH_EIO;
    if (h.sealed_len) {
        if (!(o->account_sealed = malloc(h.sealed_len)))
            return PH_ENOMEM;
        memcpy(o->account_sealed, sealed, h.sealed_len);
        o->account_sealed_len = h.sealed_len;
    }
    if (h.nattempts && !(o->attempts = calloc(h.nattempts, sizeof *o->attempts)))
        return PH_ENOMEM;
    for (o->nattempts = 0; o->nattempts < h.nattempts; o->nattempts++)
        if (decode_attempt(&r, &o->attempts[o->nattempts], h.version))
            return PH_EIO;
    return r.left ? PH_EIO : PH_OK;
}

int ph_supply_decode(const MDB_val *v, ph_order *o)
{
    int rc = supply_decode(v, o);
    if (rc) { /* a malformed record leaves nothing allocated behind in o */
        free(o->account_sealed);
        free(o->attempts);
        o->account_sealed = NULL;
        o->account_sealed_len = 0;
        o->attempts = NULL;
        o->nattempts = 0;
    }
    return rc;
}

/* Appends n bytes at *p and advances it. */
static void put_bytes(uint8_t **p, const void *src, size_t n)
{
    memcpy(*p, src, n);
    *p += n;
}

static uint8_t slen(const char *s, size_t cap)
{
    return (uint8_t)strnlen(s, cap - 1);
}

static size_t attempt_size(const ph_attempt *a)
{
    return sizeof(ph_attempt_rec) + slen(a->supplier, sizeof a->supplier) +
           slen(a->product_id, sizeof a->product_id) + slen(a->ref, sizeof a->ref) +
           slen(a->supplier_order_id, sizeof a->supplier_order_id) +
           slen(a->reason, sizeof a->reason) + slen(a->step_state, sizeof a->step_state) +
           sizeof(ph_attempt_tail) + slen(a->settled_by, sizeof a->settled_by) +
           strnlen(a->settle_note, sizeof a->settle_note - 1) + sizeof a->delivered;
}

static void encode_attempt(uint8_t **p, const ph_attempt *a)
{
    ph_attempt_rec ar;
    memset(&ar, 0, sizeof ar);
    ar.unit_cost = a->unit_cost;
    ar.charged = a->charged;
    ar.created_at = a->created_at;
    ar.updated_at = a->updated_at;
    ar.next_check_at = a->next_check_at;
    ar.no = a->no;
    ar.checks = a->checks;
    ar.step = a->step;
    ar.state = (uint8_t)a->state;
    ar.supplier_len = slen(a->supplier, sizeof a->supplier);
    ar.product_len = slen(a->product_id, sizeof a->product_id);
    ar.ref_len = slen(a->ref, sizeof a->ref);
    ar.sorder_len = slen(a->supplier_order_id, sizeof a->supplier_order_id);
    ar.reason_len = slen(a->reason, sizeof a->reason);
    ar.step_state_len = slen(a->step_state, sizeof a->step_state);
    put_bytes(p, &ar, sizeof ar);
    put_bytes(p, a->supplier, ar.supplier_len);
    put_bytes(p, a->product_id, ar.product_len);
    put_bytes(p, a->ref, ar.ref_len);
    put_bytes(p, a->supplier_order_id, ar.sorder_len);
    put_bytes(p, a->reason, ar.reason_len);
    put_bytes(p, a->step_state, ar.step_state_len);
    ph_attempt_tail t;
    memset(&t, 0, sizeof t);
    t.stuck_at = a->stuck_at;
    t.settled_at = a->settled_at;
    t.by_len = slen(a->settled_by, sizeof a->settled_by);
    t.note_len = (uint16_t)strnlen(a->settle_note, sizeof a->settle_note - 1);
    put_bytes(p, &t, sizeof t);
    put_bytes(p, a->settled_by, t.by_len);
    put_bytes(p, a->settle_note, t.note_len);
    put_bytes(p, &a->delivered, sizeof a->delivered); /* version 3 */
}

uint8_t *ph_supply_encode(const ph_order *o, size_t *len)
{
    ph_supply_rec h = {.version = PH_SUPPLY_VERSION,
                       .reason_len = slen(o->reason, sizeof o->reason),
                       .masked_len = slen(o->account_masked, sizeof o->account_masked),
                       .nattempts = (uint16_t)o->nattempts,
                       .sealed_len = o->account_sealed_len};
    size_t n = sizeof h + h.reason_len + h.masked_len + h.sealed_len;
    for (size_t i = 0; i < o->nattempts; i++)
        n += attempt_size(&o->attempts[i]);
    uint8_t *buf = malloc(n), *p = buf;
    if (!buf)
        return NULL;
    put_bytes(&p, &h, sizeof h); /* h.version: PH_SUPPLY_VERSION */
    put_bytes(&p, o->reason, h.reason_len);
    put_bytes(&p, o->account_masked, h.masked_len);
    if (h.sealed_len)
        put_bytes(&p, o->account_sealed, h.sealed_len);
    for (size_t i = 0; i < o->nattempts; i++)
        encode_attempt(&p, &o->attempts[i]);
    *len = n;
    return buf;
}

void ph_order_free(ph_order *o)
{
    if (!o)
        return;
    for (size_t i = 0; o->codes && i < o->ncodes; i++)
        free(o->codes[i].sealed);
    free(o->codes);
    if (o->account_sealed)
        ph_wipe(o->account_sealed, o->account_sealed_len);
    free(o->account_sealed);
    free(o->attempts);
    free(o);
}

/* A supplier order's reason, account and attempts, from DB_SUPPLY. */
static int load_supply(ph_store *s, MDB_txn *txn, ph_order *o, ph_err *err)
{
    MDB_val k = {sizeof o->id, &o->id}, v;
    int mrc = mdb_get(txn, s->dbi[DB_SUPPLY], &k, &v);
    if (mrc == MDB_NOTFOUND)
        return ph_err_set(err, PH_EIO, "order %llu: supply record missing",
                          (unsigned long long)o->id);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read supply record");
    int rc = ph_supply_decode(&v, o);
    if (rc == PH_ENOMEM)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    if (rc)
        return ph_err_set(err, PH_EIO, "order %llu: malformed supply record",
                          (unsigned long long)o->id);
    return PH_OK;
}

int ph_order_load(ph_store *s, MDB_txn *txn, uint64_t id, int with_codes, ph_order **out,
                  ph_err *err)
{
    MDB_val k = {sizeof id, &id}, v;
    int mrc = mdb_get(txn, s->dbi[DB_ORDERS], &k, &v);
    if (mrc == MDB_NOTFOUND)
        return ph_err_set(err, PH_ENOTFOUND, "order %llu: not found", (unsigned long long)id);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read order");
    ph_order *o = calloc(1, sizeof *o);
    const uint8_t *ids;
    if (!o)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    if (ph_order_decode(&v, id, o, &ids) != PH_OK) {
        free(o);
        return ph_err_set(err, PH_EIO, "order %llu: malformed record", (unsigned long long)id);
    }
    if (ph_order_via_supplier(o)) {
        int rc = load_supply(s, txn, o, err);
        if (rc) {
            ph_order_free(o);
            return rc;
        }
    }
    if (with_codes && o->ncodes) {
        o->codes = calloc(o->ncodes, sizeof *o->codes);
        if (!o->codes)
            goto nomem;
        for (size_t i = 0; i < o->ncodes; i++) {
            uint64_t cid;
            memcpy(&cid, ids + 8 * i, 8);
            MDB_val ck = {sizeof cid, &cid}, cv;
            if (mdb_get(txn, s->dbi[DB_CODES], &ck, &cv) ||
                ph_code_decode(&cv, cid, 1, &o->codes[i]) != PH_OK) {
                ph_order_free(o);
                return ph_err_set(err, PH_EIO, "order %llu: code %llu unreadable",
                                  (unsigned long long)id, (unsigned long long)cid);
            }
        }
    }
    *out = o;
    return PH_OK;
nomem:
    ph_order_free(o);
    return ph_err_set(err, PH_ENOMEM, "out of memory");
}
