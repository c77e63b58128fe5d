/*
 * store_apply.c — what each command does inside the writer's transaction:
 * the event and record helpers, import, voiding a batch, the catalog and the
 * dispatch. Card-code orders and the expiry sweep are in store_apply_order.c,
 * supplier-fulfilled orders in store_apply_supply.c.
 *
 * Each apply_* function runs in its own nested transaction: it may fail at
 * any point and the writer throws its changes away, so these functions check
 * as they go instead of validating everything up front. The hot paths —
 * store_apply_order, store_apply_supply_create and store_apply_attempt — run directly in the
 * batch's transaction instead (a nested one costs LMDB a dirty list per
 * command): each sets w->wrote before its first write, so the writer knows
 * when a failure left changes behind and redoes the batch with nested
 * transactions (store.c, run_batch). These functions are
 * deterministic (the time is cmd->now; ids come from w->ids) and write their
 * events in the same transaction as the change (transactional outbox).
 *
 * Page economy (docs/design.md rule 6): new codes, orders, batches and events get
 * increasing integer keys and are appended at the right edge of their trees;
 * issuing takes the first available code of the SKU (the left edge of its
 * duplicate list) and rewrites a code record next to the previous one.
 */
#include "store/store_int.h"

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "base/util.h"

/* Appends an event: seq, at and type first, then the fields of `fields` (stolen). */
/* Appends one event's JSON text under the next sequence number. */
int store_append_event(ph_wtxn *w, const char *txt, size_t len, ph_err *err)
{
    uint64_t seq = w->ids.event;
    MDB_val k = {8, &seq}, v = {len, (void *)txt};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_EVENTS], &k, &v, MDB_APPEND);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "append event");
    w->ids.event++;
    return PH_OK;
}

int store_emit(ph_wtxn *w, int64_t now, const char *type, json_t *fields, ph_err *err)
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
    int rc = store_append_event(w, txt, strlen(txt), err);
    ph_json_free(txt);
    return rc;
}

/* Every write of a code record comes here, so its SKU's counts follow every
 * change of state whatever command made it (store_code_counted). */
int store_put_code(ph_wtxn *w, uint64_t id, const ph_code_rec *rec, const uint8_t *sealed,
                   unsigned flags, ph_err *err)
{
    MDB_val k = {8, &id}, v = {sizeof *rec + rec->sealed_len, NULL}, old;
    uint8_t from = 0; /* a new code */
    int mrc = flags & MDB_APPEND ? MDB_NOTFOUND : mdb_get(w->txn, w->s->dbi[DB_CODES], &k, &old);
    if (mrc == 0 && old.mv_size >= sizeof *rec)
        memcpy(&from, (const uint8_t *)old.mv_data + offsetof(ph_code_rec, state), 1);
    else if (mrc != MDB_NOTFOUND)
        return mrc ? ph_store_lmdb_err(err, mrc, "read code")
                   : ph_err_set(err, PH_EIO, "code %llu: malformed record", (unsigned long long)id);
    mrc = mdb_put(w->txn, w->s->dbi[DB_CODES], &k, &v, flags | MDB_RESERVE);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "write code");
    memcpy(v.mv_data, rec, sizeof *rec);
    memcpy((uint8_t *)v.mv_data + sizeof *rec, sealed, rec->sealed_len);
    return store_code_counted(w, rec->batch_id, from, rec->state, err);
}

/* Reads a code record into rec and points *sealed at its blob (valid in this txn). */
int store_get_code(ph_wtxn *w, uint64_t id, ph_code_rec *rec, const uint8_t **sealed, ph_err *err)
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
int store_get_product(ph_wtxn *w, const char *sku, json_t **out, ph_err *err)
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

/* order_id names the order a supplier batch came with; 0 for an imported batch
 * (the key is then left out, so imported batches keep their bytes). */
int store_put_batch(ph_wtxn *w, const ph_batch *b, uint64_t order_id, ph_err *err)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:s}", "supplier", b->supplier, "sku",
                          b->sku, "note", b->note, "unit_cost_fen", (json_int_t)b->unit_cost,
                          "count", (json_int_t)b->count, "first_code", (json_int_t)b->first_code,
                          "created_at", (json_int_t)b->created_at, "voided_at",
                          (json_int_t)b->voided_at, "void_reason", b->void_reason);
    if (o && order_id)
        json_object_set_new(o, "order_id", json_integer((json_int_t)order_id));
    if (o && b->lookalikes[0]) /* left out when empty: batches without a rule keep their bytes */
        json_object_set_new(o, "code_lookalikes", json_string(b->lookalikes));
    char *txt = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!txt)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    uint64_t id = b->id;
    MDB_val k = {8, &id}, v = {strlen(txt), txt};
    /* a new batch is counted under its SKU (store_code_counts_batch); a
     * rewrite (a void) keeps its count */
    int mrc = mdb_put(w->txn, w->s->dbi[DB_BATCHES], &k, &v, MDB_NOOVERWRITE), fresh = !mrc;
    if (mrc == MDB_KEYEXIST) {
        v = (MDB_val){strlen(txt), txt}; /* LMDB pointed v at the stored record */
        mrc = mdb_put(w->txn, w->s->dbi[DB_BATCHES], &k, &v, 0);
    }
    ph_json_free(txt);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "write batch");
    return fresh ? store_code_counts_batch(w, b, err) : PH_OK;
}

/* Lists a batch's look-alike rule in `meta` (a lookup tries each listed rule). */
static int note_rule(ph_wtxn *w, const char *rule, ph_err *err)
{
    char key[5 + PH_LOOKALIKES_MAX + 1];
    if (!rule[0])
        return PH_OK;
    MDB_val k = {(size_t)snprintf(key, sizeof key, "rule:%s", rule), key}, v = {0, ""};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_META], &k, &v, 0);
    return mrc ? ph_store_lmdb_err(err, mrc, "write meta") : PH_OK;
}

static int apply_import(ph_wtxn *w, ph_cmd *c)
{
    const char *sku = c->in.import.sku;
    json_t *product;
    const char *rule = c->in.import.lookalikes ? c->in.import.lookalikes : "";
    if (!ph_ident_valid(c->in.import.supplier, PH_SKU_MAX) || !ph_ident_valid(sku, PH_SKU_MAX) ||
        (c->in.import.note && strlen(c->in.import.note) > PH_NOTE_MAX) ||
        strlen(rule) > PH_LOOKALIKES_MAX)
        return ph_err_set(&c->err, PH_EINVAL, "import: supplier, sku, note or rule malformed");
    int rc = store_get_product(w, sku, &product, &c->err);
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
    snprintf(b.lookalikes, sizeof b.lookalikes, "%s", rule);
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
        if ((rc = store_put_code(w, id, &rec, ic->sealed, MDB_APPEND, &c->err)) != PH_OK)
            return rc;
        MDB_val v = {8, &id};
        int mrc = mdb_put(w->txn, w->s->dbi[DB_AVAIL], &sk, &v, MDB_APPENDDUP);
        if (mrc)
            return ph_store_lmdb_err(&c->err, mrc, "write stock");
        if (ic->expires_at > 0 &&
            (rc = ph_expiry_add(w->txn, w->s->dbi[DB_EXPIRY], sku, id, ic->expires_at, &c->err)))
            return rc;
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
    if ((rc = store_put_batch(w, &b, 0, &c->err)) != PH_OK || (rc = note_rule(w, rule, &c->err)))
        return rc;
    c->batch_id = b.id;
    c->batch = b;
    if ((rc = store_emit(w, c->now, "batch.imported",
                         json_pack("{s:I,s:s,s:s,s:I,s:I}", "batch_id", (json_int_t)b.id,
                                   "supplier", b.supplier, "sku", b.sku, "count",
                                   (json_int_t)b.count, "unit_cost_fen", (json_int_t)b.unit_cost),
                         &c->err)) != PH_OK)
        return rc;
    return store_sync_stock_added(w, c, sku); /* an auto-delisted product has stock again */
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
    int rc = store_get_code(w, id, &rec, &sealed, &c->err);
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
    rc = store_put_code(w, id, &rec, blob, 0, &c->err);
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
        rc = store_emit(w, c->now, "order.codes_voided",
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
    uint64_t supply_order = 0;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_BATCHES], &k, &v);
    if (mrc == MDB_NOTFOUND)
        return ph_err_set(&c->err, PH_ENOTFOUND, "batch %llu: not found", (unsigned long long)id);
    if (mrc)
        return ph_store_lmdb_err(&c->err, mrc, "read batch");
    if (ph_batch_decode(&v, id, &b, &supply_order))
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
    if ((rc = store_put_batch(w, &b, supply_order, &c->err)) != PH_OK ||
        (rc = report_affected(w, c, &b)) != PH_OK)
        return rc;
    c->batch = b;
    return store_emit(w, c->now, "batch.voided",
                      json_pack("{s:I,s:s,s:s,s:I,s:I}", "batch_id", (json_int_t)b.id, "supplier",
                                b.supplier, "sku", b.sku, "voided_codes",
                                (json_int_t)c->voided_codes, "affected_orders",
                                (json_int_t)c->naffected),
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
    ph_json_free(txt);
    if (mrc)
        return ph_store_lmdb_err(&c->err, mrc, "write product");
    if (same)
        return PH_OK;
    return store_emit(w, c->now, event, json_pack("{s:s}", "sku", sku), &c->err);
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
        if (!gone[i] || (rc = store_get_product(w, gone[i], &p, &c->err)) != PH_OK)
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
        else if ((rc = store_sync_overlay(w, sku, list[i], &c->err)) == PH_OK)
            rc = put_product(w, c, sku, list[i], "product.updated");
    }
    if (rc == PH_OK)
        rc = delist_missing(w, c, list, n);
    for (size_t i = 0; list && i < n; i++)
        json_decref(list[i]);
    free(list);
    return rc;
}

/* ---- notes ------------------------------------------------------------------ */

static const char *const note_events[] = {PH_NOTE_EVENTS};

/* One event and nothing else (store.h, PH_CMD_NOTE_EVENT). */
static int apply_note(ph_wtxn *w, ph_cmd *c)
{
    const char *name = c->in.note.name, *txt = c->in.note.fields;
    int known = 0;
    for (size_t i = 0; name && i < sizeof note_events / sizeof *note_events; i++)
        known |= !strcmp(name, note_events[i]);
    if (!known)
        return ph_err_set(&c->err, PH_EINVAL, "note: name: not a note event");
    if (!txt || strlen(txt) > PH_NOTE_FIELDS_MAX)
        return ph_err_set(&c->err, PH_EINVAL, "note: fields: missing or over %d bytes",
                          PH_NOTE_FIELDS_MAX);
    json_t *f = json_loads(txt, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(f) || json_object_get(f, "seq") || json_object_get(f, "at") ||
        json_object_get(f, "type")) {
        json_decref(f);
        return ph_err_set(&c->err, PH_EINVAL,
                          "note: fields: not a JSON object without seq, at and type");
    }
    return store_emit(w, c->now, name, f, &c->err);
}

/* The command proper; ph_store_apply adds the checks derived from it. */
static int apply_cmd(ph_wtxn *w, ph_cmd *c)
{
    switch (c->type) {
    case PH_CMD_IMPORT:
        return apply_import(w, c);
    case PH_CMD_ORDER:
        return store_apply_order(w, c);
    case PH_CMD_VOID_BATCH:
        return apply_void(w, c);
    case PH_CMD_SUPPLY_CREATE:
        return store_apply_supply_create(w, c);
    case PH_CMD_ATTEMPT:
        return store_apply_attempt(w, c);
    case PH_CMD_EXPIRE:
        return store_apply_expire(w, c);
    case PH_CMD_NOTE_EVENT:
        return apply_note(w, c);
    case PH_CMD_SETTLE:
        return store_apply_settle(w, c);
    case PH_CMD_RECON:
        return store_apply_recon(w, c);
    case PH_CMD_FINAL_WORD:
        return store_apply_final_word(w, c);
    case PH_CMD_RESOLVE:
        return store_apply_resolve(w, c);
    case PH_CMD_RESEAL:
        return store_apply_reseal(w, c);
    case PH_CMD_JOB_RAN:
    case PH_CMD_JOB_ASK:
        return store_apply_job(w, c);
    case PH_CMD_CODE_REDEEMED:
        return store_apply_code_redeemed(w, c);
    case PH_CMD_BALANCE:
        return store_apply_balance(w, c);
    case PH_CMD_ALERT_ACK:
        return store_apply_alert_ack(w, c);
    case PH_CMD_REPLENISH:
        return store_apply_replenish(w, c);
    case PH_CMD_WH_CREATE:
    case PH_CMD_WH_RESULT:
    case PH_CMD_WH_ENABLE:
    case PH_CMD_WH_REPLAY:
        return store_apply_webhook(w, c);
    case PH_CMD_PUT_PRODUCTS:
        memset(&w->s->memo, 0, sizeof w->s->memo); /* orderability may change */
        return apply_products(w, c);
    case PH_CMD_SYNC:
        return store_apply_sync(w, c);
    case PH_CMD_PIN:
        return store_apply_pin(w, c);
    case PH_CMD_REVIEW:
        return store_apply_review(w, c);
    case PH_CMD_RISK_RULE:
        return store_apply_risk_rule(w, c);
    case PH_CMD_RISK_LIST:
        return store_apply_risk_list(w, c);
    case PH_CMD_GRANT:
        return store_apply_grant(w, c);
    case PH_CMD_GRANT_BATCH:
        return store_apply_grant_batch(w, c);
    case PH_CMD_BUNDLE:
        return store_apply_bundle(w, c);
    default:
        return ph_err_set(&c->err, PH_EINVAL, "store: unknown command type %d", c->type);
    }
}

/* Every command that changes a product's local stock is judged by the alert
 * check here, in its transaction, so none can forget it (store_alerts.c; the
 * sweep judges each SKU it retired codes of itself). */
int ph_store_apply(ph_wtxn *w, ph_cmd *c)
{
    int rc = apply_cmd(w, c);
    if (rc != PH_OK)
        return rc;
    switch (c->type) {
    case PH_CMD_ORDER:
        return c->replayed ? PH_OK : store_alerts_stock(w, c->in.order.sku, &c->err);
    case PH_CMD_IMPORT:
        return store_alerts_stock(w, c->in.import.sku, &c->err);
    case PH_CMD_VOID_BATCH:
        return store_alerts_stock(w, c->batch.sku, &c->err);
    case PH_CMD_PUT_PRODUCTS:
        return store_alerts_catalog(w, &c->err);
    default:
        return PH_OK;
    }
}
