/*
 * store_sync.c — the offer state and the listing it drives (docs/store.md,
 * "Offer state"): PH_CMD_SYNC compares what a supplier said with what the
 * store knew and writes the differences as events in the same transaction;
 * a product with no usable offer and no local stock is delisted, and
 * relisted when an offer returns, unless ops pinned it (PH_CMD_PIN).
 *
 * The listing lives in the stored product object: a "delisted" member
 * ({"reason": "upstream"|"ops"}) next to the configured "listed", so every
 * reader of the product sees it without a second lookup (ph_product_listed),
 * and PUT_PRODUCTS puts it back after a reload (store_sync_overlay). The
 * pin and the auto-delisted flag live in db product_state.
 *
 * Writer functions run on the writer thread inside w->txn; readers on any
 * thread in their own snapshot.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "crypto/wipe_alloc.h"
#include "store/store_int.h"

_Static_assert(sizeof(ph_offer_state_rec) == 40, "offer state record is 40 bytes without padding");
_Static_assert(sizeof(ph_product_state_rec) == 8, "product state record is 8 bytes");

/* ---- pure answers ---------------------------------------------------------- */

int ph_offer_state_usable(const ph_offer_state *st)
{
    return !st || (st->on_sale != 0 && !st->over_max && st->stock != 0);
}

int ph_product_listed(const struct json_t *product)
{
    const json_t *p = (const json_t *)product;
    return json_is_true(json_object_get(p, "listed")) && !json_object_get(p, "delisted");
}

const char *ph_product_delisted_why(const struct json_t *product)
{
    const json_t *p = (const json_t *)product;
    json_t *d = json_object_get(p, "delisted");
    if (!d || !json_is_true(json_object_get(p, "listed")))
        return NULL;
    const char *why = json_string_value(json_object_get(d, "reason"));
    return why && !strcmp(why, "ops")
               ? "by ops"
               : "upstream: no supplier offer can deliver it and there is no local stock";
}

static const char *const pin_names[] = {"none", "listed", "delisted"};

const char *ph_pin_name(int pin)
{
    return pin >= PH_PIN_NONE && pin <= PH_PIN_DELISTED ? pin_names[pin] : "?";
}

int ph_pin_parse(const char *name)
{
    for (int i = PH_PIN_NONE; name && i <= PH_PIN_DELISTED; i++)
        if (!strcmp(name, pin_names[i]))
            return i;
    return -1;
}

/* ---- records ----------------------------------------------------------------- */

#define KEY_MAX (2 * PH_SKU_MAX + 2)

static size_t offer_key(char *buf, const char *sku, const char *supplier)
{
    size_t a = strlen(sku), b = strlen(supplier);
    assert(a <= PH_SKU_MAX && b <= PH_SKU_MAX);
    memcpy(buf, sku, a);
    buf[a] = 0;
    memcpy(buf + a + 1, supplier, b);
    return a + 1 + b;
}

static const ph_offer_state UNKNOWN_STATE = {-1, -1, 0, -1, 0, 0};

/* The stored state of (sku, supplier): 1 found, 0 not (out = unknown), -1 malformed. */
static int offer_get(ph_store *s, MDB_txn *txn, const char *sku, const char *supplier,
                     ph_offer_state *out)
{
    char kb[KEY_MAX];
    *out = UNKNOWN_STATE;
    if (strlen(sku) > PH_SKU_MAX || strlen(supplier) > PH_SKU_MAX)
        return 0;
    MDB_val k = {offer_key(kb, sku, supplier), kb}, v;
    if (mdb_get(txn, s->dbi[DB_OFFER_STATE], &k, &v) != 0)
        return 0;
    ph_offer_state_rec r;
    if (v.mv_size != sizeof r)
        return -1;
    memcpy(&r, v.mv_data, sizeof r);
    if (r.version != 1)
        return -1;
    *out =
        (ph_offer_state){r.upstream_cost, r.stock, r.stock_at, r.on_sale, r.over_max, r.synced_at};
    return 1;
}

static int offer_put(ph_wtxn *w, const char *sku, const char *supplier, const ph_offer_state *st,
                     ph_err *err)
{
    char kb[KEY_MAX];
    ph_offer_state_rec r;
    memset(&r, 0, sizeof r);
    r.version = 1;
    r.on_sale = (int8_t)st->on_sale;
    r.over_max = (uint8_t)(st->over_max != 0);
    r.upstream_cost = st->upstream_cost;
    r.stock = st->stock;
    r.stock_at = st->stock_at;
    r.synced_at = st->synced_at;
    MDB_val k = {offer_key(kb, sku, supplier), kb}, v = {sizeof r, &r};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_OFFER_STATE], &k, &v, 0);
    return mrc ? ph_store_lmdb_err(err, mrc, "write offer state") : PH_OK;
}

static void product_state_get(ph_store *s, MDB_txn *txn, const char *sku, ph_product_state_rec *r)
{
    memset(r, 0, sizeof *r);
    MDB_val k = {strlen(sku), (void *)sku}, v;
    if (k.mv_size && mdb_get(txn, s->dbi[DB_PRODUCT_STATE], &k, &v) == 0 && v.mv_size == sizeof *r)
        memcpy(r, v.mv_data, sizeof *r);
    if (r->version != 1)
        memset(r, 0, sizeof *r);
}

static int product_state_put(ph_wtxn *w, const char *sku, const ph_product_state_rec *r,
                             ph_err *err)
{
    ph_product_state_rec old;
    product_state_get(w->s, w->txn, sku, &old);
    if (old.version == 1 && old.pin == r->pin && old.auto_delisted == r->auto_delisted)
        return PH_OK;
    ph_product_state_rec n = {.version = 1, .pin = r->pin, .auto_delisted = r->auto_delisted};
    MDB_val k = {strlen(sku), (void *)sku}, v = {sizeof n, &n};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_PRODUCT_STATE], &k, &v, 0);
    return mrc ? ph_store_lmdb_err(err, mrc, "write product state") : PH_OK;
}

/* Codes of sku in the available stock (expired ones the sweep has not retired
 * yet count: the listing is about whether stock exists). */
static uint64_t local_stock(ph_store *s, MDB_txn *txn, const char *sku)
{
    MDB_cursor *cur;
    MDB_val k = {strlen(sku), (void *)sku}, v;
    size_t n = 0;
    if (!k.mv_size || mdb_cursor_open(txn, s->dbi[DB_AVAIL], &cur))
        return 0;
    if (mdb_cursor_get(cur, &k, &v, MDB_SET) == 0)
        mdb_cursor_count(cur, &n);
    mdb_cursor_close(cur);
    return n;
}

/* ---- the stock sum ------------------------------------------------------------ */

/* Adds what the offer of sku at `sup` holds to *sum (usable offers only);
 * *known 0 when its stock is unknown. PH_EIO when its state cannot be read. */
static int stock_add(ph_store *s, MDB_txn *txn, const char *sku, const char *sup, int64_t *sum,
                     int *known)
{
    ph_offer_state st;
    if (!sup || offer_get(s, txn, sku, sup, &st) < 0)
        return PH_EIO;
    if (st.on_sale == 0 || st.over_max)
        return PH_OK; /* not usable: whatever it has is not ours to sell */
    if (st.stock < 0)
        *known = 0;
    else
        *sum += st.stock;
    return PH_OK;
}

static int stock_sum_txn(ph_store *s, MDB_txn *txn, const char *sku, json_t *product, int64_t *sum,
                         int *known)
{
    size_t i;
    json_t *of;
    int rc = PH_OK;
    *sum = 0;
    *known = 1;
    json_array_foreach(json_object_get(product, "offers"), i, of)
    {
        if ((rc = stock_add(s, txn, sku, json_string_value(json_object_get(of, "supplier")), sum,
                            known)) != PH_OK)
            return rc;
    }
    if (!*known)
        *sum = 0;
    return PH_OK;
}

int store_offer_stock_sum(ph_wtxn *w, const char *sku, int64_t *sum, int *known)
{
    json_t *p;
    ph_err err;
    *sum = 0;
    *known = 0;
    int rc = store_get_product(w, sku, &p, &err);
    if (rc)
        return rc;
    rc = stock_sum_txn(w->s, w->txn, sku, p, sum, known);
    json_decref(p);
    return rc;
}

int store_offer_stock_sum_of(ph_wtxn *w, const char *sku, const char *const *suppliers, size_t n,
                             int64_t *sum, int *known)
{
    *sum = 0;
    *known = 1;
    for (size_t i = 0; i < n; i++) {
        int rc = stock_add(w->s, w->txn, sku, suppliers[i], sum, known);
        if (rc != PH_OK)
            return rc;
    }
    if (!*known)
        *sum = 0;
    return PH_OK;
}

/* ---- the listing ----------------------------------------------------------- */

static int put_product_json(ph_wtxn *w, const char *sku, json_t *p, ph_err *err)
{
    char *txt = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
    if (!txt)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    MDB_val k = {strlen(sku), (void *)sku}, v = {strlen(txt), txt};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_PRODUCTS], &k, &v, 0);
    ph_json_free(txt);
    return mrc ? ph_store_lmdb_err(err, mrc, "write product") : PH_OK;
}

/* The reason sku is delisted for ("ops", "upstream"), or NULL when listed. */
static const char *delisted_reason(const ph_product_state_rec *st)
{
    if (st->pin == PH_PIN_DELISTED)
        return "ops";
    if (st->pin != PH_PIN_LISTED && st->auto_delisted)
        return "upstream";
    return NULL;
}

/* Decides the listing of product p (sku) again: auto-delisted when it has
 * offers, none usable, and no local stock; then the pin decides. Writes the
 * product state, and the product with its events when its listing changed
 * (product.delisted says why it is delisted; product.relisted says `why`:
 * what made this command relist it). *changed 1 then. */
static int relist(ph_wtxn *w, ph_cmd *c, const char *sku, json_t *p, const char *why, int *changed)
{
    ph_product_state_rec st;
    product_state_get(w->s, w->txn, sku, &st);
    json_t *offers = json_object_get(p, "offers"), *of;
    size_t i;
    int usable = 0;
    json_array_foreach(offers, i, of)
    {
        const char *sup = json_string_value(json_object_get(of, "supplier"));
        ph_offer_state os;
        int got = sup ? offer_get(w->s, w->txn, sku, sup, &os) : -1;
        if (got < 0)
            return ph_err_set(&c->err, PH_EIO, "offer state of '%s': malformed record", sku);
        usable |= ph_offer_state_usable(got ? &os : NULL);
    }
    st.auto_delisted = json_array_size(offers) > 0 && !usable && !local_stock(w->s, w->txn, sku);
    const char *reason = delisted_reason(&st);
    int rc = product_state_put(w, sku, &st, &c->err);
    json_t *cur = json_object_get(p, "delisted");
    const char *cur_reason = json_string_value(json_object_get(cur, "reason"));
    *changed = 0;
    if (rc || (!cur && !reason) || (cur && reason && cur_reason && !strcmp(cur_reason, reason)))
        return rc;
    int was_listed = ph_product_listed(p);
    if (reason)
        json_object_set_new(p, "delisted", json_pack("{s:s}", "reason", reason));
    else
        json_object_del(p, "delisted");
    if ((rc = put_product_json(w, sku, p, &c->err)) != PH_OK)
        return rc;
    memset(&w->s->memo, 0, sizeof w->s->memo); /* orderability changed */
    *changed = 1;
    int now_listed = ph_product_listed(p);
    if (was_listed == now_listed)
        return PH_OK; /* configured unlisted, or only the reason moved */
    const char *ev_reason = reason ? reason : why;
    return store_emit(w, c->now, now_listed ? "product.relisted" : "product.delisted",
                      json_pack("{s:s,s:s}", "sku", sku, "reason", ev_reason), &c->err);
}

int store_sync_stock_added(ph_wtxn *w, ph_cmd *c, const char *sku)
{
    ph_product_state_rec st;
    product_state_get(w->s, w->txn, sku, &st);
    if (!st.auto_delisted)
        return PH_OK; /* the common case: one read, nothing written */
    json_t *p;
    int changed, rc = store_get_product(w, sku, &p, &c->err);
    if (rc)
        return rc;
    rc = relist(w, c, sku, p, "stock", &changed);
    json_decref(p);
    return rc;
}

int store_sync_overlay(ph_wtxn *w, const char *sku, json_t *p, ph_err *err)
{
    (void)err;
    ph_product_state_rec st;
    product_state_get(w->s, w->txn, sku, &st);
    const char *reason = delisted_reason(&st);
    if (reason)
        json_object_set_new(p, "delisted", json_pack("{s:s}", "reason", reason));
    return PH_OK;
}

/* ---- PH_CMD_SYNC ------------------------------------------------------------- */

static int item_cmp(const void *a, const void *b)
{
    const ph_sync_item *x = a, *y = b;
    return strcmp(x->product_id, y->product_id);
}

static json_t *money_json(int64_t fen)
{
    char buf[32];
    return fen < 0 ? json_null() : json_string(ph_money_format(fen, buf, sizeof buf));
}

/* The cost an offer may have upstream: its max_cost, else the product's sale
 * price; -1 when neither is configured. */
static int64_t offer_cap(json_t *p, json_t *of)
{
    json_t *m = json_object_get(of, "max_cost_fen");
    if (json_is_integer(m))
        return json_integer_value(m);
    m = json_object_get(p, "price_fen");
    return json_is_integer(m) ? json_integer_value(m) : -1;
}

/* The events of one offer moving from o to n. */
static int offer_events(ph_wtxn *w, ph_cmd *c, const char *sku, const char *sup,
                        const ph_offer_state *o, const ph_offer_state *n, int64_t cap)
{
    int rc = PH_OK;
#define EMIT(name, obj)                                                                            \
    do {                                                                                           \
        if (rc == PH_OK) {                                                                         \
            rc = store_emit(w, c->now, name, obj, &c->err);                                        \
            c->sync_changes++;                                                                     \
        }                                                                                          \
    } while (0)
    if (o->upstream_cost >= 0 && n->upstream_cost >= 0 && o->upstream_cost != n->upstream_cost)
        EMIT("offer.price_changed",
             json_pack("{s:s,s:s,s:o,s:o}", "sku", sku, "supplier", sup, "old_cost",
                       money_json(o->upstream_cost), "new_cost", money_json(n->upstream_cost)));
    if (o->on_sale != 0 && n->on_sale == 0)
        EMIT("offer.delisted_upstream", json_pack("{s:s,s:s}", "sku", sku, "supplier", sup));
    if (o->on_sale == 0 && n->on_sale == 1)
        EMIT("offer.relisted_upstream", json_pack("{s:s,s:s}", "sku", sku, "supplier", sup));
    if (o->stock != 0 && n->stock == 0)
        EMIT("offer.out_of_stock", json_pack("{s:s,s:s}", "sku", sku, "supplier", sup));
    if (o->stock == 0 && n->stock != 0)
        EMIT("offer.back_in_stock",
             json_pack("{s:s,s:s,s:o}", "sku", sku, "supplier", sup, "stock",
                       n->stock < 0 ? json_null() : json_integer((json_int_t)n->stock)));
    if (!o->over_max && n->over_max)
        EMIT("offer.over_max_cost",
             json_pack("{s:s,s:s,s:o,s:o}", "sku", sku, "supplier", sup, "cost",
                       money_json(n->upstream_cost), "max_cost", money_json(cap)));
#undef EMIT
    return rc;
}

/* Applies the items to every offer of `supplier` in product p (sku).
 * *touched 1 when p has such an offer. */
static int sync_product(ph_wtxn *w, ph_cmd *c, const ph_sync_item *items, size_t n, const char *sku,
                        json_t *p, int *touched)
{
    const char *supplier = c->in.sync.supplier;
    size_t i;
    json_t *of;
    *touched = 0;
    json_array_foreach(json_object_get(p, "offers"), i, of)
    {
        const char *sup = json_string_value(json_object_get(of, "supplier"));
        const char *psku = json_string_value(json_object_get(of, "supplier_sku"));
        if (!sup || !psku || strcmp(sup, supplier))
            continue;
        if (strlen(psku) > PH_SKU_MAX)
            continue; /* no item can name it (sync drops longer ids): never "missing" */
        *touched = 1;
        c->sync_offers++;
        ph_sync_item key = {.product_id = psku};
        const ph_sync_item *it = n ? bsearch(&key, items, n, sizeof *items, item_cmp) : NULL;
        if (!it && c->in.sync.kind == PH_SYNC_STOCK)
            continue; /* a stock check answers for what it names only */
        ph_offer_state o, nw;
        if (offer_get(w->s, w->txn, sku, sup, &o) < 0)
            return ph_err_set(&c->err, PH_EIO, "offer state of '%s' at '%s': malformed record", sku,
                              sup);
        nw = o;
        nw.synced_at = c->now;
        if (!it) { /* missing from a whole catalog: delisted upstream */
            nw.on_sale = 0;
        } else {
            if (it->cost >= 0 || c->in.sync.kind == PH_SYNC_CATALOG)
                nw.upstream_cost = it->cost;
            nw.stock = it->stock;
            nw.stock_at = c->now;
            if (it->on_sale >= 0)
                nw.on_sale = it->on_sale ? 1 : 0;
            else if (nw.on_sale < 0)
                nw.on_sale = -1;
        }
        int64_t cap = offer_cap(p, of);
        nw.over_max = nw.upstream_cost >= 0 && cap >= 0 && nw.upstream_cost > cap;
        int rc = offer_events(w, c, sku, sup, &o, &nw, cap);
        if (rc == PH_OK)
            rc = offer_put(w, sku, sup, &nw, &c->err);
        if (rc)
            return rc;
    }
    return PH_OK;
}

/* The items sorted by product id, checked: each named, none twice. */
static int sorted_items(ph_cmd *c, ph_sync_item **out)
{
    size_t n = c->in.sync.n;
    *out = NULL;
    if (!n)
        return PH_OK;
    ph_sync_item *v = malloc(n * sizeof *v);
    if (!v)
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    memcpy(v, c->in.sync.items, n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        if (!v[i].product_id || !v[i].product_id[0] || strlen(v[i].product_id) > PH_SKU_MAX) {
            free(v);
            return ph_err_set(&c->err, PH_EINVAL,
                              "sync: items[%zu]: product_id: missing or over %d bytes", i,
                              PH_SKU_MAX);
        }
    qsort(v, n, sizeof *v, item_cmp);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(v[i - 1].product_id, v[i].product_id)) {
            free(v);
            return ph_err_set(&c->err, PH_EINVAL, "sync: items: a product_id given twice");
        }
    *out = v;
    return PH_OK;
}

int store_apply_sync(ph_wtxn *w, ph_cmd *c)
{
    if (!ph_ident_valid(c->in.sync.supplier, PH_SKU_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "sync: supplier: not an identifier");
    if (c->in.sync.kind != PH_SYNC_CATALOG && c->in.sync.kind != PH_SYNC_STOCK)
        return ph_err_set(&c->err, PH_EINVAL, "sync: kind: expected catalog or stock");
    ph_sync_item *items;
    int rc = sorted_items(c, &items);
    if (rc)
        return rc;
    /* The products first, then each one's changes: writing inside the cursor
     * walk of the same database would move under it. */
    MDB_cursor *cur;
    MDB_val k, v;
    size_t cap = 0, cnt = 0;
    char **skus = NULL;
    int mrc = mdb_cursor_open(w->txn, w->s->dbi[DB_PRODUCTS], &cur);
    if (mrc) {
        free(items);
        return ph_store_lmdb_err(&c->err, mrc, "open products");
    }
    for (int op = MDB_FIRST; rc == PH_OK && mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
        /* a cheap look for the supplier's name before parsing */
        if (!memmem(v.mv_data, v.mv_size, c->in.sync.supplier, strlen(c->in.sync.supplier)))
            continue;
        if (cnt == cap) {
            char **g = ph_grow(skus, &cap, sizeof *g, 16);
            if (!g) {
                rc = ph_err_set(&c->err, PH_ENOMEM, "out of memory");
                break;
            }
            skus = g;
        }
        if (!(skus[cnt] = strndup(k.mv_data, k.mv_size)))
            rc = ph_err_set(&c->err, PH_ENOMEM, "out of memory");
        else
            cnt++;
    }
    mdb_cursor_close(cur);
    for (size_t i = 0; i < cnt && rc == PH_OK; i++) {
        json_t *p;
        int touched = 0, changed = 0;
        if ((rc = store_get_product(w, skus[i], &p, &c->err)) != PH_OK)
            break;
        rc = sync_product(w, c, items, c->in.sync.n, skus[i], p, &touched);
        if (rc == PH_OK && touched)
            rc = relist(w, c, skus[i], p, "upstream", &changed);
        if (rc == PH_OK && touched) /* the supplier's stock is part of what alerts judge */
            rc = store_alerts_stock(w, skus[i], &c->err);
        json_decref(p);
    }
    for (size_t i = 0; i < cnt; i++)
        free(skus[i]);
    free(skus);
    free(items);
    return rc;
}

/* ---- PH_CMD_PIN ------------------------------------------------------------- */

int store_apply_pin(ph_wtxn *w, ph_cmd *c)
{
    const char *sku = c->in.pin.sku;
    if (!ph_ident_valid(sku, PH_SKU_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "pin: sku: not a SKU");
    if (c->in.pin.pin < PH_PIN_NONE || c->in.pin.pin > PH_PIN_DELISTED)
        return ph_err_set(&c->err, PH_EINVAL, "pin: expected listed, delisted or none");
    json_t *p;
    int rc = store_get_product(w, sku, &p, &c->err), changed = 0;
    if (rc)
        return rc;
    ph_product_state_rec st;
    product_state_get(w->s, w->txn, sku, &st);
    st.pin = (uint8_t)c->in.pin.pin;
    if ((rc = product_state_put(w, sku, &st, &c->err)) == PH_OK)
        rc = relist(w, c, sku, p, "ops", &changed);
    json_decref(p);
    c->sync_changes = (uint32_t)changed;
    return rc;
}

/* ---- reads ------------------------------------------------------------------ */

int ph_store_offer_states(ph_store *s, const char *sku, const char *const *suppliers, size_t n,
                          ph_offer_state *out, int *found, ph_err *err)
{
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < n && rc == PH_OK; i++) {
        int got = offer_get(s, txn, sku, suppliers[i], &out[i]);
        if (got < 0)
            rc = ph_err_set(err, PH_EIO, "offer state of '%s': malformed record", sku);
        found[i] = got > 0;
    }
    ph_store_read_end(s, txn);
    return rc;
}

/* 1 when sku has any offer state or product state stored. */
static int has_state(ph_store *s, MDB_txn *txn, const char *sku)
{
    size_t len = strlen(sku);
    MDB_val k = {len, (void *)sku}, v;
    if (mdb_get(txn, s->dbi[DB_PRODUCT_STATE], &k, &v) == 0)
        return 1;
    MDB_cursor *cur;
    int any = 0;
    if (mdb_cursor_open(txn, s->dbi[DB_OFFER_STATE], &cur))
        return 0;
    char kb[PH_SKU_MAX + 1];
    memcpy(kb, sku, len);
    kb[len] = 0;
    k = (MDB_val){len + 1, kb};
    if (mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) == 0)
        any = k.mv_size > len && memcmp(k.mv_data, kb, len + 1) == 0;
    mdb_cursor_close(cur);
    return any;
}

int store_sync_decorate(ph_store *s, MDB_txn *txn, const char *sku, char **json, ph_err *err)
{
    if (strlen(sku) > PH_SKU_MAX || !has_state(s, txn, sku))
        return PH_OK;
    json_t *p = json_loads(*json, 0, NULL);
    if (!p)
        return ph_err_set(err, PH_EIO, "product '%s': malformed record", sku);
    size_t i;
    json_t *of;
    int rc = PH_OK;
    json_array_foreach(json_object_get(p, "offers"), i, of)
    {
        const char *sup = json_string_value(json_object_get(of, "supplier"));
        ph_offer_state st;
        int got = sup ? offer_get(s, txn, sku, sup, &st) : -1;
        if (got < 0) {
            rc = ph_err_set(err, PH_EIO, "offer state of '%s': malformed record", sku);
            break;
        }
        if (!got)
            continue;
        json_object_set_new(
            of, "upstream",
            json_pack("{s:I,s:I,s:I,s:i,s:b,s:I}", "cost_fen", (json_int_t)st.upstream_cost,
                      "stock", (json_int_t)st.stock, "stock_at", (json_int_t)st.stock_at, "on_sale",
                      st.on_sale, "over_max", st.over_max, "synced_at", (json_int_t)st.synced_at));
    }
    int64_t sum;
    int known;
    if (rc == PH_OK && (rc = stock_sum_txn(s, txn, sku, p, &sum, &known)) != PH_OK)
        ph_err_set(err, rc, "offer state of '%s': malformed record", sku);
    ph_product_state_rec ps;
    product_state_get(s, txn, sku, &ps);
    char *txt = NULL;
    if (rc == PH_OK) {
        json_object_set_new(p, "supplier_stock",
                            known ? json_integer((json_int_t)sum) : json_null());
        json_object_set_new(p, "pin", json_string(ph_pin_name(ps.pin)));
        txt = json_dumps(p, JSON_COMPACT);
        if (!txt)
            rc = ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    json_decref(p);
    if (rc)
        return rc;
    char *dup = strdup(txt);
    ph_json_free(txt);
    if (!dup)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    free(*json);
    *json = dup;
    return PH_OK;
}
