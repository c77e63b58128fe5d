/*
 * store_apply.c — what each command does inside the writer's transaction.
 *
 * Each apply_* function runs in its own nested transaction: it may fail at
 * any point and the writer throws its changes away, so these functions check
 * as they go instead of validating everything up front. The hot paths —
 * apply_order, apply_supply_create and apply_attempt — run directly in the
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "base/util.h"

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

/* Order events are written as text (below, with the supplier commands). */
static int emit_outcome(ph_wtxn *w, int64_t now, const ph_order *o, uint64_t batch_id, ph_err *err);

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

/* order_id names the order a supplier batch came with; 0 for an imported batch
 * (the key is then left out, so imported batches keep their bytes). */
static int put_batch(ph_wtxn *w, const ph_batch *b, uint64_t order_id, ph_err *err)
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
    int mrc = mdb_put(w->txn, w->s->dbi[DB_BATCHES], &k, &v, 0);
    free(txt);
    return mrc ? ph_store_lmdb_err(err, mrc, "write batch") : PH_OK;
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
        if ((rc = put_code(w, id, &rec, ic->sealed, MDB_APPEND, &c->err)) != PH_OK)
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
    if ((rc = put_batch(w, &b, 0, &c->err)) != PH_OK || (rc = note_rule(w, rule, &c->err)))
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
static int replay_order(ph_wtxn *w, ph_cmd *c, const MDB_val *ref, const uint8_t fingerprint[32],
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
static int listed_delivery(ph_wtxn *w, ph_cmd *c, const char *sku, int *out, char kind[32])
{
    ph_memo *m = &w->s->memo;
    if ((*out = memo_delivery(m, sku)) != 0)
        return PH_OK;
    json_t *p;
    int rc = get_product(w, sku, &p, &c->err);
    if (rc)
        return rc;
    const char *delivery = json_string_value(json_object_get(p, "delivery"));
    snprintf(kind, 32, "%s", delivery ? delivery : "?");
    *out = ph_delivery_parse(delivery);
    if (!json_is_true(json_object_get(p, "listed")))
        rc = ph_err_set(&c->err, PH_ESKU, "sku: '%s' is not listed", sku);
    json_decref(p);
    if (rc == PH_OK && *out)
        memo_note(m, sku, *out);
    return rc;
}

static int check_orderable(ph_wtxn *w, ph_cmd *c)
{
    char kind[32] = "card_code";
    int delivery;
    int rc = listed_delivery(w, c, c->in.order.sku, &delivery, kind);
    if (rc == PH_OK && delivery != PH_DELIVERY_CARD_CODE)
        rc = ph_err_set(&c->err, PH_ESKU, "sku: '%s' is delivered by %s, not from card-code stock",
                        c->in.order.sku, delivery ? ph_delivery_name(delivery) : kind);
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
    if (ph_batch_decode(&v, batch_id, &b, NULL))
        return ph_err_set(err, PH_EIO, "batch %llu: malformed record",
                          (unsigned long long)batch_id);
    m->cost_batch[slot] = batch_id;
    *cost = m->cost[slot] = b.unit_cost;
    return PH_OK;
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
    return emit(w, now, "code.expired", fields, err); /* NULL fields: out of memory */
}

/* Rewrites code id as expired at now (its record keeps its size); rec and
 * sealed as get_code gave them. */
static int retire_code(ph_wtxn *w, uint64_t id, ph_code_rec *rec, const uint8_t *sealed,
                       int64_t now, ph_err *err)
{
    rec->state = PH_CODE_EXPIRED;
    rec->order_id = 0;
    rec->changed_at = now;
    /* put_code may move the record: copy the blob out of the old one first */
    uint8_t *blob = malloc(rec->sealed_len ? rec->sealed_len : 1);
    if (!blob)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    memcpy(blob, sealed, rec->sealed_len);
    int rc = put_code(w, id, rec, blob, 0, err);
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
static int check_unseals(ph_wtxn *w, ph_cmd *c, uint64_t id, const uint8_t *sealed, uint32_t len)
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
                      c->in.order.sku, (unsigned long long)id,
                      (unsigned)ph_sealed_key_id(sealed, len));
}

/* Takes the SKU's first available code, retiring expired ones on the way (into
 * t: the caller reports them in one event). On PH_OK the code is issued to
 * order_id and copied into out. An expired code is never issued, nor one that
 * does not unseal (check_unseals). */
static int pop_code(ph_wtxn *w, ph_cmd *c, MDB_cursor *cur, uint64_t order_id, ph_code *out,
                    expiry_tally *t)
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
        ph_code_rec rec;
        const uint8_t *sealed;
        int rc = get_code(w, id, &rec, &sealed, &c->err);
        if (rc)
            return rc;
        int expired = rec.expires_at && rec.expires_at <= c->now;
        if (!expired && (rc = check_unseals(w, c, id, sealed, rec.sealed_len)) != PH_OK)
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
        rec.state = expired ? PH_CODE_EXPIRED : PH_CODE_ISSUED;
        rec.order_id = expired ? 0 : order_id;
        rec.changed_at = c->now;
        if ((rc = put_code(w, id, &rec, blob, 0, &c->err)) != PH_OK) {
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

/* Writes the order record: put_flags MDB_APPEND for a new order, 0 to rewrite. */
static int put_order(ph_wtxn *w, const ph_order *o, unsigned put_flags, ph_err *err)
{
    size_t cl = strlen(o->client), ol = strlen(o->client_order_id), sl = strlen(o->sku);
    ph_order_rec r = {.version = 1,
                      .state = (uint8_t)o->state,
                      .delivery = o->delivery ? (uint8_t)o->delivery : 1 /* card_code */,
                      .flags = ph_order_via_supplier(o) ? PH_ORDER_F_SUPPLY : 0,
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
        return replay_order(w, c, &v, c->in.order.fingerprint, c->in.order.client_order_id);
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
    expiry_tally expired = {0};
    while (o->ncodes < o->quantity) {
        rc = pop_code(w, c, cur, o->id, &o->codes[o->ncodes], &expired);
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
    if (rc == PH_OK && (rc = emit_expired(w, c->now, &expired, &c->err)) == PH_OK &&
        (rc = put_order(w, o, MDB_APPEND, &c->err)) == PH_OK &&
        (rc = index_order(w, o, &c->err)) == PH_OK)
        rc = emit_outcome(w, c->now, o, 0, &c->err);
    free(expired.rows);
    if (rc) {
        ph_order_free(o);
        return rc;
    }
    c->order = o;
    return PH_OK;
}

/* ---- supplier-fulfilled orders -------------------------------------------- */

/* Text that may reach an event or the API: 1..max printable ASCII bytes (or
 * empty when empty_ok). Plugins' reasons are snake_case; anything else is a
 * bug upstream and is refused rather than stored. */
static int text_ok(const char *s, size_t max, int empty_ok)
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
        !text_ok(t->product_id, PH_SUPPLIER_ORDER_MAX, 0))
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
    a->created_at = a->updated_at = now;
    snprintf(a->supplier, sizeof a->supplier, "%s", t->supplier);
    snprintf(a->product_id, sizeof a->product_id, "%s", t->product_id);
    snprintf(a->ref, sizeof a->ref, "%s-%llu-%u", w->s->uid, (unsigned long long)o->id, a->no);
    return PH_OK;
}

static int put_supply(ph_wtxn *w, const ph_order *o, unsigned put_flags, ph_err *err)
{
    size_t len;
    uint8_t *buf = ph_supply_encode(o, &len);
    if (!buf)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    uint64_t id = o->id;
    MDB_val k = {8, &id}, v = {len, buf};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_SUPPLY], &k, &v, put_flags);
    free(buf);
    return mrc ? ph_store_lmdb_err(err, mrc, "write supply record") : PH_OK;
}

/* Keeps `pending` listing exactly the orders with an attempt still open. */
static int set_pending(ph_wtxn *w, uint64_t id, int was, int is, unsigned put_flags, ph_err *err)
{
    MDB_val k = {8, &id}, v = {0, ""};
    int mrc = 0;
    if (is && !was)
        mrc = mdb_put(w->txn, w->s->dbi[DB_PENDING], &k, &v, put_flags);
    else if (was && !is)
        mrc = mdb_del(w->txn, w->s->dbi[DB_PENDING], &k, NULL);
    return mrc ? ph_store_lmdb_err(err, mrc, "write pending") : PH_OK;
}

static int has_open_attempt(const ph_order *o)
{
    return o->nattempts && ph_attempt_state_open(o->attempts[o->nattempts - 1].state);
}

/* ---- order events, written as text -------------------------------------------
 * Byte for byte what emit() would write (jansson, compact, keys in this order),
 * without a JSON tree per event: these are written for every order and every
 * attempt. Strings are identifiers or printable ASCII (text_ok); they are
 * escaped anyway. */

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
}

static int ev_end(evtext *e, ph_wtxn *w, const ph_order *o, ph_err *err)
{
    ev_raw(e, "}", 1);
    if (e->overflow)
        return ph_err_set(err, PH_EIO, "order %llu: event too long or not UTF-8",
                          (unsigned long long)o->id);
    return append_event(w, e->buf, e->len, err);
}

static int emit_accepted(ph_wtxn *w, int64_t now, const ph_order *o, ph_err *err)
{
    evtext e;
    ev_begin(&e, w, now, "order.accepted", o);
    ev_int(&e, "quantity", o->quantity);
    ev_str(&e, "delivery", ph_delivery_name(o->delivery));
    ev_str(&e, "state", ph_order_state_name(o->state));
    if (o->nattempts) {
        ev_str(&e, "supplier", o->attempts[0].supplier);
        ev_int(&e, "attempt", 1);
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
static int emit_outcome(ph_wtxn *w, int64_t now, const ph_order *o, uint64_t batch_id, ph_err *err)
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

static int check_supply_input(ph_cmd *c)
{
    const char *masked = c->in.supply.account_masked;
    if (!ph_ident_valid(c->in.supply.client, PH_SKU_MAX) ||
        !ph_ident_valid(c->in.supply.client_order_id, PH_ORDER_ID_MAX) ||
        !ph_ident_valid(c->in.supply.sku, PH_SKU_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "order: client, client_order_id or sku malformed");
    if (c->in.supply.quantity < 1 || c->in.supply.quantity > PH_ORDER_QUANTITY_MAX)
        return ph_err_set(&c->err, PH_EINVAL, "quantity: expected 1 to %d", PH_ORDER_QUANTITY_MAX);
    if (c->in.supply.delivery == PH_DELIVERY_RECHARGE) {
        if (!c->in.supply.account_sealed || !c->in.supply.account_sealed_len || !masked ||
            !text_ok(masked, sizeof(((ph_order *)0)->account_masked) - 1, 0))
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
    if (c->in.supply.fail_reason && !text_ok(c->in.supply.fail_reason, PH_REASON_MAX, 1))
        return ph_err_set(&c->err, PH_EINVAL, "fail_reason: malformed");
    return PH_OK;
}

/* The product exists, is listed and is delivered the way the order says. */
static int check_suppliable(ph_wtxn *w, ph_cmd *c)
{
    const char *sku = c->in.supply.sku;
    char kind[32] = "?";
    int delivery;
    int rc = listed_delivery(w, c, sku, &delivery, kind);
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

static int apply_supply_create(ph_wtxn *w, ph_cmd *c)
{
    int rc = check_supply_input(c);
    if (rc)
        return rc;
    char key[PH_SKU_MAX + PH_ORDER_ID_MAX + 2];
    MDB_val k = {ph_store_ref_key(c->in.supply.client, c->in.supply.client_order_id, key), key}, v;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_ORDER_REF], &k, &v);
    if (mrc == 0)
        return replay_order(w, c, &v, c->in.supply.fingerprint, c->in.supply.client_order_id);
    if (mrc != MDB_NOTFOUND)
        return ph_store_lmdb_err(&c->err, mrc, "read order index");
    if ((rc = check_suppliable(w, c)) != PH_OK)
        return rc;
    ph_order *o = new_supply_order(w, c);
    if (!o)
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    if (c->in.supply.first.supplier) {
        o->state = PH_ORDER_PROCESSING;
        rc = add_attempt(w, o, &c->in.supply.first, c->now, &c->err);
    } else {
        o->state = PH_ORDER_FAILED;
        snprintf(o->reason, sizeof o->reason, "%s",
                 c->in.supply.fail_reason ? c->in.supply.fail_reason : "");
    }
    if (rc == PH_OK)
        w->wrote = 1; /* every failure above left the database untouched */
    if (rc == PH_OK && (rc = put_order(w, o, MDB_APPEND, &c->err)) == PH_OK &&
        (rc = put_supply(w, o, MDB_APPEND, &c->err)) == PH_OK &&
        (rc = index_order(w, o, &c->err)) == PH_OK &&
        (rc = set_pending(w, o->id, 0, has_open_attempt(o), MDB_APPEND, &c->err)) == PH_OK &&
        (rc = emit_accepted(w, c->now, o, &c->err)) == PH_OK && o->state == PH_ORDER_FAILED)
        rc = emit_outcome(w, c->now, o, 0, &c->err);
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
    if (c->in.attempt.reason && !text_ok(c->in.attempt.reason, PH_REASON_MAX, 1))
        return ph_err_set(&c->err, PH_EINVAL, "reason: at most %d printable ASCII bytes",
                          PH_REASON_MAX);
    if (c->in.attempt.supplier_order_id &&
        !text_ok(c->in.attempt.supplier_order_id, PH_SUPPLIER_ORDER_MAX, 1))
        return ph_err_set(&c->err, PH_EINVAL, "supplier_order_id: at most %d printable ASCII bytes",
                          PH_SUPPLIER_ORDER_MAX);
    if (c->in.attempt.step_state && strlen(c->in.attempt.step_state) > PH_REASON_MAX)
        return ph_err_set(&c->err, PH_EINVAL, "step_state: at most %d bytes", PH_REASON_MAX);
    if (c->in.attempt.step < -1 || c->in.attempt.step > UINT32_MAX || c->in.attempt.charged < -1 ||
        c->in.attempt.next_check_at < -1)
        return ph_err_set(&c->err, PH_EINVAL, "attempt: step, charged or next_check_at < -1");
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
 * (never in stock). Fills o->codes; *batch_id gets the batch. */
static int store_supplied(ph_wtxn *w, ph_cmd *c, ph_order *o, const ph_attempt *a,
                          uint64_t *batch_id)
{
    size_t n = c->in.attempt.ncodes;
    ph_batch b = {.id = w->ids.batch++,
                  .unit_cost = a->unit_cost,
                  .count = (uint32_t)n,
                  .first_code = w->ids.code,
                  .created_at = c->now};
    snprintf(b.supplier, sizeof b.supplier, "%s", a->supplier);
    snprintf(b.sku, sizeof b.sku, "%s", o->sku);
    snprintf(b.note, sizeof b.note, "order %llu attempt %u", (unsigned long long)o->id, a->no);
    if (!(o->codes = calloc(n, sizeof *o->codes)))
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    w->wrote = 1; /* a duplicate code is found only after the codes are written */
    for (size_t i = 0; i < n; i++, o->ncodes++) {
        const ph_supplied_code *sc = &c->in.attempt.codes[i];
        uint64_t id = w->ids.code++;
        ph_code_rec rec = {.version = 1,
                           .state = PH_CODE_ISSUED,
                           .sealed_len = sc->sealed_len,
                           .batch_id = b.id,
                           .order_id = o->id,
                           .expires_at = sc->expires_at,
                           .changed_at = c->now};
        int rc = put_code(w, id, &rec, sc->sealed, MDB_APPEND, &c->err);
        if (rc)
            return rc;
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
        rc = put_batch(w, &b, o->id, &c->err);
    *batch_id = b.id;
    return rc;
}

/* The order follows its attempt (store.h, PH_CMD_ATTEMPT). */
static int settle_order(ph_wtxn *w, ph_cmd *c, ph_order *o, uint32_t no, uint64_t *batch_id)
{
    ph_attempt *a = &o->attempts[no - 1];
    int rc = PH_OK;
    o->reason[0] = 0;
    switch (a->state) {
    case PH_ATTEMPT_SUCCEEDED:
        o->state = PH_ORDER_SUCCEEDED;
        o->cost = a->charged >= 0 ? a->charged : a->unit_cost * (int64_t)o->quantity;
        if (o->delivery == PH_DELIVERY_CARD_CODE)
            rc = store_supplied(w, c, o, a, batch_id);
        break;
    case PH_ATTEMPT_FAILED:
        if (c->in.attempt.next.supplier) {
            o->state = PH_ORDER_PROCESSING;
            rc = add_attempt(w, o, &c->in.attempt.next, c->now, &c->err);
        } else {
            o->state = PH_ORDER_FAILED;
            snprintf(o->reason, sizeof o->reason, "%s", a->reason);
        }
        break;
    case PH_ATTEMPT_UNKNOWN:
        o->state = PH_ORDER_UNKNOWN;
        snprintf(o->reason, sizeof o->reason, "%s", a->reason);
        break;
    default:
        o->state = PH_ORDER_PROCESSING;
    }
    return rc;
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

/* What an ATTEMPT compares against to decide what to write and announce. */
typedef struct attempt_before {
    int order_state, attempt_state, open;
    size_t nattempts;
    char reason[PH_REASON_MAX + 1];
} attempt_before;

static int write_attempt(ph_wtxn *w, ph_cmd *c, ph_order *o, const attempt_before *b,
                         uint64_t batch_id)
{
    uint32_t no = c->in.attempt.no;
    int attempt_moved = b->attempt_state != o->attempts[no - 1].state;
    int order_moved = b->order_state != o->state;
    int added = o->nattempts != b->nattempts;
    int rc = PH_OK;
    w->wrote = 1;
    /* a check that changes nothing but the attempt's bookkeeping leaves the order be */
    if (order_moved || added || attempt_moved || strcmp(b->reason, o->reason)) {
        o->updated_at = c->now;
        rc = put_order(w, o, 0, &c->err);
    }
    if (rc == PH_OK && (rc = put_supply(w, o, 0, &c->err)) == PH_OK)
        rc = set_pending(w, o->id, b->open, has_open_attempt(o), 0, &c->err);
    if (rc == PH_OK && attempt_moved)
        rc = emit_attempt(w, c->now, o, &o->attempts[no - 1], &c->err);
    if (rc == PH_OK && added)
        rc = emit_attempt(w, c->now, o, &o->attempts[o->nattempts - 1], &c->err);
    if (rc == PH_OK && order_moved && o->state != PH_ORDER_PROCESSING)
        rc = emit_outcome(w, c->now, o, batch_id, &c->err);
    return rc;
}

static int apply_attempt(ph_wtxn *w, ph_cmd *c)
{
    uint32_t no = c->in.attempt.no;
    ph_order *o = NULL;
    int rc = check_attempt_input(c);
    if (rc || (rc = load_attempt(w, c, &o)) != PH_OK)
        return rc;
    attempt_before b = {.order_state = o->state,
                        .attempt_state = o->attempts[no - 1].state,
                        .open = has_open_attempt(o),
                        .nattempts = o->nattempts};
    snprintf(b.reason, sizeof b.reason, "%s", o->reason);
    uint64_t batch_id = 0;
    if (!transition_ok(b.attempt_state, c->in.attempt.state))
        rc = ph_err_set(&c->err, PH_ESTATE, "order %llu attempt %u: cannot go from %s to %s",
                        (unsigned long long)o->id, no, ph_attempt_state_name(b.attempt_state),
                        ph_attempt_state_name(c->in.attempt.state));
    else if ((rc = check_attempt_codes(o, c)) == PH_OK &&
             (!c->in.attempt.next.supplier ||
              (rc = target_ok(&c->in.attempt.next, o->quantity, &c->err, "next")) == PH_OK)) {
        update_attempt(&o->attempts[no - 1], c);
        if ((rc = settle_order(w, c, o, no, &batch_id)) == PH_OK)
            rc = write_attempt(w, c, o, &b, batch_id);
    }
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
    if ((rc = put_batch(w, &b, supply_order, &c->err)) != PH_OK ||
        (rc = report_affected(w, c, &b)) != PH_OK)
        return rc;
    c->batch = b;
    return emit(w, c->now, "batch.voided",
                json_pack("{s:I,s:s,s:s,s:I,s:I}", "batch_id", (json_int_t)b.id, "supplier",
                          b.supplier, "sku", b.sku, "voided_codes", (json_int_t)c->voided_codes,
                          "affected_orders", (json_int_t)c->naffected),
                &c->err);
}

/* ---- the expiry sweep ------------------------------------------------------ */

/* One bounded step of the sweep (store.h, PH_CMD_EXPIRE): the due entries of
 * the expiry index, SKU by SKU, each removed; a code still available is
 * retired. Reads no clock: "due" is relative to cmd->now. */
static int apply_expire(ph_wtxn *w, ph_cmd *c)
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
        if ((mrc = ph_expiry_seek_due(cur, sku, len, c->now, &k, &v)) != 0)
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
        if ((rc = get_code(w, id, &rec, &sealed, &c->err)) != PH_OK ||
            rec.state != PH_CODE_AVAILABLE || !rec.expires_at || rec.expires_at > c->now)
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
    free(t.rows);
    return rc;
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
    case PH_CMD_SUPPLY_CREATE:
        return apply_supply_create(w, c);
    case PH_CMD_ATTEMPT:
        return apply_attempt(w, c);
    case PH_CMD_EXPIRE:
        return apply_expire(w, c);
    case PH_CMD_PUT_PRODUCTS:
        memset(&w->s->memo, 0, sizeof w->s->memo); /* orderability may change */
        return apply_products(w, c);
    default:
        return ph_err_set(&c->err, PH_EINVAL, "store: unknown command type %d", c->type);
    }
}
