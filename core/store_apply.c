/*
 * store_apply.c — what each command does inside the writer's transaction.
 *
 * Each apply_* function runs in its own nested transaction: it may fail at
 * any point and the writer throws its changes away, so these functions check
 * as they go instead of validating everything up front. They are
 * deterministic (the time is cmd->now; ids come from w->ids) and write their
 * events in the same transaction as the change (transactional outbox).
 *
 * Page economy (DESIGN.md rule 6): new codes, orders, batches and events get
 * increasing integer keys and are appended at the right edge of their trees;
 * issuing takes the first available code of the SKU (the left edge of its
 * duplicate list) and rewrites a code record next to the previous one.
 */
#include "store_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Appends an event: seq, at and type first, then the fields of `fields` (stolen). */
/* Appends one event's JSON text under the next sequence number. */
static int append_event(ph_wtxn *w, const char *txt, size_t len, ph_err *err)
{
    uint64_t seq = w->ids.event;
    MDB_val k = {8, &seq}, v = {len, (void *)txt};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_EVENTS], &k, &v, MDB_APPEND);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "append event");
    w->ids.event++;
    return PH_OK;
}

static int emit(ph_wtxn *w, int64_t now, const char *type, json_t *fields, ph_err *err)
{
    char at[32];
    json_t *ev = json_pack("{s:I,s:s,s:s}", "seq", (json_int_t)w->ids.event, "at",
                           ph_time_format(now, at, sizeof at), "type", type);
    if (!ev || !fields) {
        json_decref(ev);
        json_decref(fields);
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    json_object_update(ev, fields);
    json_decref(fields);
    char *txt = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(ev);
    if (!txt)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    int rc = append_event(w, txt, strlen(txt), err);
    free(txt);
    return rc;
}

/* order.succeeded, the hot path's event, formatted directly: the same text emit()
 * would produce (its strings are identifiers checked by apply_order, so they
 * need no escaping), without building a JSON tree per order. */
static int emit_order_succeeded(ph_wtxn *w, int64_t now, const ph_order *o, ph_err *err)
{
    char at[32], txt[512];
    int n = snprintf(txt, sizeof txt,
                     "{\"seq\":%llu,\"at\":\"%s\",\"type\":\"order.succeeded\",\"order_id\":%llu,"
                     "\"client\":\"%s\",\"client_order_id\":\"%s\",\"sku\":\"%s\",\"quantity\":%u,"
                     "\"cost_fen\":%lld}",
                     (unsigned long long)w->ids.event, ph_time_format(now, at, sizeof at),
                     (unsigned long long)o->id, o->client, o->client_order_id, o->sku,
                     o->quantity, (long long)o->cost);
    if (n < 0 || (size_t)n >= sizeof txt)
        return ph_err_set(err, PH_EIO, "order %llu: event too long", (unsigned long long)o->id);
    return append_event(w, txt, (size_t)n, err);
}

static int put_code(ph_wtxn *w, uint64_t id, const ph_code_rec *rec, const uint8_t *sealed,
                    unsigned flags, ph_err *err)
{
    MDB_val k = {8, &id}, v = {sizeof *rec + rec->sealed_len, NULL};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_CODES], &k, &v, flags | MDB_RESERVE);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "write code");
    memcpy(v.mv_data, rec, sizeof *rec);
    memcpy((uint8_t *)v.mv_data + sizeof *rec, sealed, rec->sealed_len);
    return PH_OK;
}

/* Reads a code record into rec and points *sealed at its blob (valid in this txn). */
static int get_code(ph_wtxn *w, uint64_t id, ph_code_rec *rec, const uint8_t **sealed, ph_err *err)
{
    MDB_val k = {8, &id}, v;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_CODES], &k, &v);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read code");
    if (v.mv_size < sizeof *rec)
        return ph_err_set(err, PH_EIO, "code %llu: malformed record", (unsigned long long)id);
    memcpy(rec, v.mv_data, sizeof *rec);
    *sealed = (const uint8_t *)v.mv_data + sizeof *rec;
    return PH_OK;
}

/* Loads the stored product; PH_ESKU when there is none. *out is the caller's. */
static int get_product(ph_wtxn *w, const char *sku, json_t **out, ph_err *err)
{
    MDB_val k = {strlen(sku), (void *)sku}, v;
    int mrc = k.mv_size ? mdb_get(w->txn, w->s->dbi[DB_PRODUCTS], &k, &v) : MDB_NOTFOUND;
    if (mrc == MDB_NOTFOUND)
        return ph_err_set(err, PH_ESKU, "sku: no such product in the catalog");
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read product");
    if (!(*out = json_loadb(v.mv_data, v.mv_size, 0, NULL)))
        return ph_err_set(err, PH_EIO, "product '%s': malformed record", sku);
    return PH_OK;
}

/* ---- import --------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Lists the lines whose code is already stored; PH_EDUP when there are any. */
static int find_stored_dups(ph_wtxn *w, ph_cmd *c, ph_err *err)
{
    const ph_import_code *codes = c->in.import.codes;
    for (size_t i = 0; i < c->in.import.ncodes; i++) {
        const ph_import_code *ic = &codes[c->in.import.by_hash[i]];
        MDB_val k = {32, (void *)ic->hash}, v;
        int mrc = mdb_get(w->txn, w->s->dbi[DB_CODE_HASH], &k, &v);
        if (mrc == MDB_NOTFOUND)
            continue;
        if (mrc)
            return ph_store_lmdb_err(err, mrc, "read code index");
        if (c->ndup % 256 == 0) {
            uint32_t *grown = realloc(c->dup_lines, (c->ndup + 256) * sizeof *grown);
            if (!grown)
                return ph_err_set(err, PH_ENOMEM, "out of memory");
            c->dup_lines = grown;
        }
        c->dup_lines[c->ndup++] = ic->line;
    }
    if (!c->ndup)
        return PH_OK;
    qsort(c->dup_lines, c->ndup, sizeof *c->dup_lines, cmp_u32);
    return ph_err_set(err, PH_EDUP, "%zu codes were imported before (first at line %u)", c->ndup,
                      c->dup_lines[0]);
}

static int put_batch(ph_wtxn *w, const ph_batch *b, ph_err *err)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:s}", "supplier", b->supplier, "sku",
                          b->sku, "note", b->note, "unit_cost_fen", (json_int_t)b->unit_cost,
                          "count", (json_int_t)b->count, "first_code", (json_int_t)b->first_code,
                          "created_at", (json_int_t)b->created_at, "voided_at",
                          (json_int_t)b->voided_at, "void_reason", b->void_reason);
    char *txt = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!txt)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    uint64_t id = b->id;
    MDB_val k = {8, &id}, v = {strlen(txt), txt};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_BATCHES], &k, &v, 0);
    free(txt);
    return mrc ? ph_store_lmdb_err(err, mrc, "write batch") : PH_OK;
}

static int apply_import(ph_wtxn *w, ph_cmd *c)
{
    const char *sku = c->in.import.sku;
    json_t *product;
    if (!ph_ident_valid(c->in.import.supplier, PH_SKU_MAX) || !ph_ident_valid(sku, PH_SKU_MAX) ||
        (c->in.import.note && strlen(c->in.import.note) > PH_NOTE_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "import: supplier, sku or note malformed");
    int rc = get_product(w, sku, &product, &c->err);
    if (rc)
        return rc;
    json_decref(product);
    if ((rc = find_stored_dups(w, c, &c->err)) != PH_OK)
        return rc;

    ph_batch b = {.id = w->ids.batch++,
                  .unit_cost = c->in.import.unit_cost,
                  .count = (uint32_t)c->in.import.ncodes,
                  .first_code = w->ids.code,
                  .created_at = c->now};
    snprintf(b.supplier, sizeof b.supplier, "%s", c->in.import.supplier);
    snprintf(b.sku, sizeof b.sku, "%s", sku);
    snprintf(b.note, sizeof b.note, "%s", c->in.import.note ? c->in.import.note : "");
    MDB_val sk = {strlen(sku), (void *)sku};
    for (size_t i = 0; i < c->in.import.ncodes; i++) {
        const ph_import_code *ic = &c->in.import.codes[i];
        uint64_t id = w->ids.code++;
        ph_code_rec rec = {.version = 1,
                           .state = PH_CODE_AVAILABLE,
                           .sealed_len = ic->sealed_len,
                           .batch_id = b.id,
                           .expires_at = ic->expires_at,
                           .changed_at = c->now};
        if ((rc = put_code(w, id, &rec, ic->sealed, MDB_APPEND, &c->err)) != PH_OK)
            return rc;
        MDB_val v = {8, &id};
        int mrc = mdb_put(w->txn, w->s->dbi[DB_AVAIL], &sk, &v, MDB_APPENDDUP);
        if (mrc)
            return ph_store_lmdb_err(&c->err, mrc, "write stock");
    }
    /* the hash index is random by nature: insert in hash order to touch each page once */
    for (size_t i = 0; i < c->in.import.ncodes; i++) {
        uint32_t idx = c->in.import.by_hash[i];
        uint64_t id = b.first_code + idx;
        MDB_val k = {32, (void *)c->in.import.codes[idx].hash}, v = {8, &id};
        int mrc = mdb_put(w->txn, w->s->dbi[DB_CODE_HASH], &k, &v, MDB_NOOVERWRITE);
        if (mrc == MDB_KEYEXIST)
            return ph_err_set(&c->err, PH_EDUP, "line %u: duplicate code in the file",
                              c->in.import.codes[idx].line);
        if (mrc)
            return ph_store_lmdb_err(&c->err, mrc, "write code index");
    }
    if ((rc = put_batch(w, &b, &c->err)) != PH_OK)
        return rc;
    c->batch_id = b.id;
    c->batch = b;
    return emit(w, c->now, "batch.imported",
                json_pack("{s:I,s:s,s:s,s:I,s:I}", "batch_id", (json_int_t)b.id, "supplier",
                          b.supplier, "sku", b.sku, "count", (json_int_t)b.count, "unit_cost_fen",
                          (json_int_t)b.unit_cost),
                &c->err);
}

/* ---- orders --------------------------------------------------------------- */

/* The same client order id again: the stored order, or a conflict. */
static int replay_order(ph_wtxn *w, ph_cmd *c, const MDB_val *ref)
{
    uint64_t id;
    memcpy(&id, ref->mv_data, 8);
    int rc = ph_order_load(w->s, w->txn, id, 1, &c->order, &c->err);
    if (rc)
        return rc;
    if (memcmp(c->order->fingerprint, c->in.order.fingerprint, 32) != 0) {
        ph_order_free(c->order);
        c->order = NULL;
        return ph_err_set(&c->err, PH_ECONFLICT,
                          "client_order_id: '%s' already names order %llu with a different sku "
                          "or quantity",
                          c->in.order.client_order_id, (unsigned long long)id);
    }
    c->replayed = 1;
    return PH_OK;
}

static int memo_orderable(ph_memo *m, const char *sku)
{
    for (unsigned i = 0; i < PH_MEMO_SKUS; i++)
        if (strcmp(m->orderable[i], sku) == 0)
            return 1;
    return 0;
}

static int check_orderable(ph_wtxn *w, ph_cmd *c)
{
    ph_memo *m = &w->s->memo;
    if (memo_orderable(m, c->in.order.sku))
        return PH_OK;
    json_t *p;
    int rc = get_product(w, c->in.order.sku, &p, &c->err);
    if (rc)
        return rc;
    const char *delivery = json_string_value(json_object_get(p, "delivery"));
    int listed = json_is_true(json_object_get(p, "listed"));
    int card = delivery && strcmp(delivery, "card_code") == 0;
    /* delivery points into p: release p only after the messages are written */
    if (!listed)
        rc = ph_err_set(&c->err, PH_ESKU, "sku: '%s' is not listed", c->in.order.sku);
    else if (!card)
        rc = ph_err_set(&c->err, PH_ESKU, "sku: '%s' is delivered by %s, not from card-code stock",
                        c->in.order.sku, delivery ? delivery : "?");
    json_decref(p);
    if (rc == PH_OK) {
        snprintf(m->orderable[m->next_sku], sizeof m->orderable[0], "%s", c->in.order.sku);
        m->next_sku = (m->next_sku + 1) % PH_MEMO_SKUS;
    }
    return rc;
}

/* Cost of one code of batch id, remembered per batch (a batch's cost never changes). */
static int unit_cost(ph_wtxn *w, uint64_t batch_id, int64_t *cost, ph_err *err)
{
    ph_memo *m = &w->s->memo;
    unsigned slot = (unsigned)(batch_id % PH_MEMO_COSTS);
    if (m->cost_batch[slot] == batch_id) {
        *cost = m->cost[slot];
        return PH_OK;
    }
    MDB_val k = {8, &batch_id}, v;
    ph_batch b;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_BATCHES], &k, &v);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read batch");
    if (ph_batch_decode(&v, batch_id, &b))
        return ph_err_set(err, PH_EIO, "batch %llu: malformed record",
                          (unsigned long long)batch_id);
    m->cost_batch[slot] = batch_id;
    *cost = m->cost[slot] = b.unit_cost;
    return PH_OK;
}

/* Takes the SKU's first available code, marking expired ones on the way.
 * On PH_OK the code is issued to order_id and copied into out. */
static int pop_code(ph_wtxn *w, ph_cmd *c, MDB_cursor *cur, uint64_t order_id, ph_code *out)
{
    const char *sku = c->in.order.sku;
    for (;;) {
        MDB_val k = {strlen(sku), (void *)sku}, v;
        int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
        if (mrc == MDB_NOTFOUND)
            return PH_ENOSTOCK;
        if (mrc)
            return ph_store_lmdb_err(&c->err, mrc, "read stock");
        uint64_t id;
        memcpy(&id, v.mv_data, 8);
        if ((mrc = mdb_cursor_del(cur, 0)) != 0)
            return ph_store_lmdb_err(&c->err, mrc, "take stock");
        ph_code_rec rec;
        const uint8_t *sealed;
        int rc = get_code(w, id, &rec, &sealed, &c->err);
        if (rc)
            return rc;
        int expired = rec.expires_at && rec.expires_at <= c->now;
        rec.state = expired ? PH_CODE_EXPIRED : PH_CODE_ISSUED;
        rec.order_id = expired ? 0 : order_id;
        rec.changed_at = c->now;
        /* put_code may move the record: copy the blob out of the old one first */
        uint8_t *blob = malloc(rec.sealed_len ? rec.sealed_len : 1);
        if (!blob)
            return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
        memcpy(blob, sealed, rec.sealed_len);
        if ((rc = put_code(w, id, &rec, blob, 0, &c->err)) != PH_OK) {
            free(blob);
            return rc;
        }
        if (expired) {
            free(blob);
            rc = emit(w, c->now, "code.expired",
                      json_pack("{s:I,s:I,s:s}", "code_id", (json_int_t)id, "batch_id",
                                (json_int_t)rec.batch_id, "sku", sku),
                      &c->err);
            if (rc)
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

static int put_order(ph_wtxn *w, const ph_order *o, ph_err *err)
{
    size_t cl = strlen(o->client), ol = strlen(o->client_order_id), sl = strlen(o->sku);
    ph_order_rec r = {.version = 1,
                      .state = (uint8_t)o->state,
                      .delivery = 1 /* card_code */,
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
    int mrc = mdb_put(w->txn, w->s->dbi[DB_ORDERS], &k, &v, MDB_APPEND | MDB_RESERVE);
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
    return PH_OK;
}

static int index_order(ph_wtxn *w, const ph_order *o, ph_err *err)
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

static int new_order(ph_wtxn *w, ph_cmd *c, ph_order **out)
{
    ph_order *o = calloc(1, sizeof *o);
    if (!o || !(o->codes = calloc(c->in.order.quantity, sizeof *o->codes))) {
        free(o);
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    }
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

static int apply_order(ph_wtxn *w, ph_cmd *c)
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
        return replay_order(w, c, &v);
    if (mrc != MDB_NOTFOUND)
        return ph_store_lmdb_err(&c->err, mrc, "read order index");
    int rc = check_orderable(w, c);
    if (rc)
        return rc;
    ph_order *o = NULL;
    if ((rc = new_order(w, c, &o)) != PH_OK)
        return rc;
    MDB_cursor *cur;
    if ((mrc = mdb_cursor_open(w->txn, w->s->dbi[DB_AVAIL], &cur)) != 0) {
        ph_order_free(o);
        return ph_store_lmdb_err(&c->err, mrc, "open stock");
    }
    int64_t cost = 0;
    while (o->ncodes < o->quantity) {
        rc = pop_code(w, c, cur, o->id, &o->codes[o->ncodes]);
        if (rc == PH_OK) {
            o->ncodes++;
            rc = unit_cost(w, o->codes[o->ncodes - 1].batch_id, &cost, &c->err);
            o->cost += cost;
        }
        if (rc)
            break;
    }
    mdb_cursor_close(cur);
    if (rc == PH_ENOSTOCK)
        rc = ph_err_set(&c->err, PH_ENOSTOCK,
                        "sku: '%s' has %zu codes available, %u requested; nothing was reserved",
                        c->in.order.sku, o->ncodes, o->quantity);
    if (rc == PH_OK && (rc = put_order(w, o, &c->err)) == PH_OK &&
        (rc = index_order(w, o, &c->err)) == PH_OK)
        rc = emit_order_succeeded(w, c->now, o, &c->err);
    if (rc) {
        ph_order_free(o);
        return rc;
    }
    c->order = o;
    return PH_OK;
}

/* ---- voiding a batch ------------------------------------------------------ */

static int note_affected(ph_cmd *c, uint64_t order_id)
{
    for (size_t i = c->naffected; i > 0; i--)
        if (c->affected[i - 1].id == order_id) {
            c->affected[i - 1].voided_codes++;
            return PH_OK;
        }
    if (c->naffected % 64 == 0) {
        ph_affected_order *g = realloc(c->affected, (c->naffected + 64) * sizeof *g);
        if (!g)
            return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
        c->affected = g;
    }
    c->affected[c->naffected++] = (ph_affected_order){.id = order_id, .voided_codes = 1};
    return PH_OK;
}

static int void_code(ph_wtxn *w, ph_cmd *c, const ph_batch *b, uint64_t id)
{
    ph_code_rec rec;
    const uint8_t *sealed;
    int rc = get_code(w, id, &rec, &sealed, &c->err);
    if (rc)
        return rc;
    if (rec.state == PH_CODE_AVAILABLE) {
        MDB_val k = {strlen(b->sku), (void *)b->sku}, v = {8, &id};
        int mrc = mdb_del(w->txn, w->s->dbi[DB_AVAIL], &k, &v);
        if (mrc)
            return ph_store_lmdb_err(&c->err, mrc, "remove stock");
    } else if (rec.state == PH_CODE_ISSUED || rec.state == PH_CODE_RESERVED) {
        if ((rc = note_affected(c, rec.order_id)) != PH_OK)
            return rc;
    } else {
        return PH_OK; /* expired, redeemed or voided already: nothing to take back */
    }
    rec.state = PH_CODE_VOIDED;
    rec.changed_at = c->now;
    /* the record keeps its size: write it in place through MDB_RESERVE */
    uint8_t *blob = malloc(rec.sealed_len ? rec.sealed_len : 1);
    if (!blob)
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    memcpy(blob, sealed, rec.sealed_len);
    rc = put_code(w, id, &rec, blob, 0, &c->err);
    free(blob);
    c->voided_codes++;
    return rc;
}

static int report_affected(ph_wtxn *w, ph_cmd *c, const ph_batch *b)
{
    for (size_t i = 0; i < c->naffected; i++) {
        ph_affected_order *a = &c->affected[i];
        ph_order *o;
        int rc = ph_order_load(w->s, w->txn, a->id, 0, &o, &c->err);
        if (rc)
            return rc;
        snprintf(a->client, sizeof a->client, "%s", o->client);
        snprintf(a->client_order_id, sizeof a->client_order_id, "%s", o->client_order_id);
        ph_order_free(o);
        rc = emit(w, c->now, "order.codes_voided",
                  json_pack("{s:I,s:s,s:s,s:I,s:I}", "order_id", (json_int_t)a->id, "client",
                            a->client, "client_order_id", a->client_order_id, "batch_id",
                            (json_int_t)b->id, "codes", (json_int_t)a->voided_codes),
                  &c->err);
        if (rc)
            return rc;
    }
    return PH_OK;
}

static int apply_void(ph_wtxn *w, ph_cmd *c)
{
    uint64_t id = c->in.void_batch.batch_id;
    MDB_val k = {8, &id}, v;
    ph_batch b;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_BATCHES], &k, &v);
    if (mrc == MDB_NOTFOUND)
        return ph_err_set(&c->err, PH_ENOTFOUND, "batch %llu: not found", (unsigned long long)id);
    if (mrc)
        return ph_store_lmdb_err(&c->err, mrc, "read batch");
    if (ph_batch_decode(&v, id, &b))
        return ph_err_set(&c->err, PH_EIO, "batch %llu: malformed record", (unsigned long long)id);
    if (b.voided)
        return ph_err_set(&c->err, PH_ESTATE, "batch %llu: already voided", (unsigned long long)id);
    int rc = PH_OK;
    for (uint32_t i = 0; i < b.count && rc == PH_OK; i++)
        rc = void_code(w, c, &b, b.first_code + i);
    if (rc)
        return rc;
    b.voided = 1;
    b.voided_at = c->now;
    snprintf(b.void_reason, sizeof b.void_reason, "%s",
             c->in.void_batch.reason ? c->in.void_batch.reason : "");
    if ((rc = put_batch(w, &b, &c->err)) != PH_OK || (rc = report_affected(w, c, &b)) != PH_OK)
        return rc;
    c->batch = b;
    return emit(w, c->now, "batch.voided",
                json_pack("{s:I,s:s,s:s,s:I,s:I}", "batch_id", (json_int_t)b.id, "supplier",
                          b.supplier, "sku", b.sku, "voided_codes", (json_int_t)c->voided_codes,
                          "affected_orders", (json_int_t)c->naffected),
                &c->err);
}

/* ---- catalog -------------------------------------------------------------- */

static int put_product(ph_wtxn *w, ph_cmd *c, const char *sku, json_t *p, const char *event)
{
    char *txt = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
    if (!txt)
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    MDB_val k = {strlen(sku), (void *)sku}, v;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_PRODUCTS], &k, &v);
    int same = mrc == 0 && v.mv_size == strlen(txt) && memcmp(v.mv_data, txt, v.mv_size) == 0;
    if (!same) {
        v = (MDB_val){strlen(txt), txt};
        mrc = mdb_put(w->txn, w->s->dbi[DB_PRODUCTS], &k, &v, 0);
    } else {
        mrc = 0;
    }
    free(txt);
    if (mrc)
        return ph_store_lmdb_err(&c->err, mrc, "write product");
    if (same)
        return PH_OK;
    return emit(w, c->now, event, json_pack("{s:s}", "sku", sku), &c->err);
}

static int in_list(json_t **list, size_t n, const char *sku, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_object_get(list[i], "sku"));
        if (s && strlen(s) == len && memcmp(s, sku, len) == 0)
            return 1;
    }
    return 0;
}

/* Products no longer configured stay stored (their codes and orders refer to
 * them) but are delisted. */
static int delist_missing(ph_wtxn *w, ph_cmd *c, json_t **list, size_t n)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = PH_OK, mrc = mdb_cursor_open(w->txn, w->s->dbi[DB_PRODUCTS], &cur);
    if (mrc)
        return ph_store_lmdb_err(&c->err, mrc, "open products");
    size_t cap = 16, cnt = 0;
    char **gone = malloc(cap * sizeof *gone);
    for (int op = MDB_FIRST; gone && mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
        if (in_list(list, n, k.mv_data, k.mv_size))
            continue;
        if (cnt == cap) {
            char **g = realloc(gone, (cap *= 2) * sizeof *g);
            if (!g)
                break;
            gone = g;
        }
        gone[cnt++] = strndup(k.mv_data, k.mv_size);
    }
    mdb_cursor_close(cur);
    for (size_t i = 0; i < cnt && rc == PH_OK; i++) {
        json_t *p = NULL;
        if (!gone[i] || (rc = get_product(w, gone[i], &p, &c->err)) != PH_OK)
            break;
        if (json_is_true(json_object_get(p, "listed"))) {
            json_object_set_new(p, "listed", json_false());
            rc = put_product(w, c, gone[i], p, "product.delisted");
        }
        json_decref(p);
    }
    for (size_t i = 0; i < cnt; i++)
        free(gone[i]);
    free(gone);
    return rc;
}

static int apply_products(ph_wtxn *w, ph_cmd *c)
{
    size_t n = c->in.products.n;
    json_t **list = calloc(n + 1, sizeof *list);
    int rc = list ? PH_OK : ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    for (size_t i = 0; i < n && rc == PH_OK; i++) {
        list[i] = json_loads(c->in.products.json[i], 0, NULL);
        const char *sku = json_string_value(json_object_get(list[i], "sku"));
        if (!sku || !ph_ident_valid(sku, PH_SKU_MAX))
            rc = ph_err_set(&c->err, PH_EINVAL, "products[%zu]: not a product object", i);
        else
            rc = put_product(w, c, sku, list[i], "product.updated");
    }
    if (rc == PH_OK)
        rc = delist_missing(w, c, list, n);
    for (size_t i = 0; list && i < n; i++)
        json_decref(list[i]);
    free(list);
    return rc;
}

int ph_store_apply(ph_wtxn *w, ph_cmd *c)
{
    switch (c->type) {
    case PH_CMD_IMPORT:
        return apply_import(w, c);
    case PH_CMD_ORDER:
        return apply_order(w, c);
    case PH_CMD_VOID_BATCH:
        return apply_void(w, c);
    case PH_CMD_PUT_PRODUCTS:
        memset(&w->s->memo, 0, sizeof w->s->memo); /* orderability may change */
        return apply_products(w, c);
    default:
        return ph_err_set(&c->err, PH_EINVAL, "store: unknown command type %d", c->type);
    }
}
