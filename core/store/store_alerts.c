/*
 * store_alerts.c — low-stock and low-balance alerts, judged inside the
 * writer (store.h, "alerts"; docs/store.md, "Alerts"), and the products'
 * min_validity_days that decides which local codes are issuable.
 *
 * Cost: the check runs in the transaction of every order, so it reads no
 * JSON and scans nothing. The products' rules (low_stock, min_validity_days)
 * sit in a hash table built from `products` once per catalog change (and
 * after a failed batch, when the memo is cleared); a product without a rule
 * costs one lookup. With a rule: the stock list's count (LMDB keeps it in the
 * duplicate tree's header), the due-but-not-swept codes (one seek in the
 * expiry index, normally finding none), then, unless the table knows both
 * alerts armed and the local codes alone keep them so, the offers' stock sum
 * and the (kind, subject) states; writes happen only when an alert fires or
 * re-arms.
 *
 * Alert record (DB_ALERTS, JSON): {id, kind, subject, state, fired_at, value,
 * threshold, margin, local_only?, local?, suppliers?, cleared_at?,
 * cleared_value?, acked_by?, acked_at?, note?}; times in ms.
 * Open counters: `meta` "alerts_open" holds PH_ALERT_KINDS uint64 (alerts in
 * state open per kind).
 */
#include "store/store_int.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "crypto/wipe_alloc.h"

#define OPEN_KEY "alerts_open"

/* ---- names and the discipline (pure) --------------------------------------------- */

const char *ph_alert_kind_name(int kind)
{
    static const char *const names[] = {"?", "stock.low", "stock.out", "supplier.balance_low"};
    return kind >= 1 && kind <= PH_ALERT_KINDS ? names[kind] : "?";
}

const char *ph_alert_state_name(int state)
{
    static const char *const names[] = {"?", "open", "acknowledged", "cleared"};
    return state >= 1 && state <= 3 ? names[state] : "?";
}

int ph_alert_state_parse(const char *name)
{
    for (int i = PH_ALERT_OPEN; name && i <= PH_ALERT_CLEARED; i++)
        if (!strcmp(name, ph_alert_state_name(i)))
            return i;
    return 0;
}

static int kind_parse(const char *name)
{
    for (int i = 1; name && i <= PH_ALERT_KINDS; i++)
        if (!strcmp(name, ph_alert_kind_name(i)))
            return i;
    return 0;
}

int ph_alert_next(int fired, int64_t value, int64_t below, int64_t margin)
{
    if (margin < 1)
        margin = 1;
    if (!fired)
        return value < below ? PH_ALERT_FIRE : PH_ALERT_KEEP;
    return value >= below + margin ? PH_ALERT_REARM : PH_ALERT_KEEP;
}

int64_t ph_alert_default_margin(int64_t below)
{
    return below / 10 > 1 ? below / 10 : 1;
}

int64_t ph_min_validity_ms(int64_t days)
{
    return days > 0 ? days * 86400000 : 0;
}

int ph_code_retire_due(int64_t expires_at, int64_t min_validity_ms, int64_t now)
{
    return expires_at > 0 && expires_at - min_validity_ms <= now;
}

/* ---- the rule table (writer only) ------------------------------------------------ */

#define PH_RULE_SUP_MAX 8 /* offers whose suppliers a rule keeps */

typedef struct ph_rule {
    char sku[PH_SKU_MAX + 1]; /* "" = empty slot */
    uint8_t len;
    /* What alert_state says of (stock.low, sku) and (stock.out, sku), as last
     * read: -1 not known, 0 armed, 1 fired. Filled by reads only and forgotten
     * by the writer's own fire and re-arm, so a command rolled back after
     * writing leaves nothing wrong here; a failed batch clears the table. */
    int8_t fired[2];
    int64_t below, margin; /* below 0: no low_stock rule */
    int64_t min_validity;  /* ms */
    /* The suppliers of its offers, as the stored product names them, so the
     * order path reads their offer states without parsing the product (the
     * table is rebuilt whenever the catalog changes). nsup PH_RULE_SUP_MAX + 1:
     * more than fit, the product is read whole. */
    uint8_t nsup;
    char sup[PH_RULE_SUP_MAX][PH_SKU_MAX + 1];
} ph_rule;

struct ph_rules {
    size_t cap; /* a power of two, at least twice the rules */
    size_t n;
    ph_rule *slot;
};

static uint64_t hash_sku(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static ph_rule *rule_slot(struct ph_rules *t, const char *sku, size_t len)
{
    for (size_t i = hash_sku(sku, len) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        ph_rule *r = &t->slot[i];
        if (!r->len || (r->len == len && !memcmp(r->sku, sku, len)))
            return r;
    }
}

void store_alerts_free(ph_store *s)
{
    if (s->rules)
        free(s->rules->slot);
    free(s->rules);
    s->rules = NULL;
}

/* Reads low_stock and min_validity_days from a stored product: 1 when it has either. */
static int product_rule(json_t *p, ph_rule *r)
{
    json_t *ls = json_object_get(p, "low_stock");
    json_int_t days = json_integer_value(json_object_get(p, "min_validity_days"));
    r->below = -1;
    r->margin = 0;
    if (json_is_object(ls) && json_is_integer(json_object_get(ls, "below"))) {
        r->below = json_integer_value(json_object_get(ls, "below"));
        json_t *m = json_object_get(ls, "margin");
        r->margin = json_is_integer(m) ? json_integer_value(m) : ph_alert_default_margin(r->below);
    }
    r->min_validity = ph_min_validity_ms(days);
    json_t *offers = json_object_get(p, "offers"), *of;
    size_t i;
    r->nsup = json_array_size(offers) > PH_RULE_SUP_MAX ? PH_RULE_SUP_MAX + 1 : 0;
    json_array_foreach(offers, i, of)
    {
        const char *sup = json_string_value(json_object_get(of, "supplier"));
        if (r->nsup > PH_RULE_SUP_MAX)
            break;
        if (!sup || strlen(sup) > PH_SKU_MAX) {
            r->nsup = PH_RULE_SUP_MAX + 1; /* let the whole product speak */
            break;
        }
        snprintf(r->sup[r->nsup++], sizeof r->sup[0], "%s", sup);
    }
    return r->below >= 0 || r->min_validity > 0;
}

int64_t store_product_min_validity(const MDB_val *v)
{
    if (!memmem(v->mv_data, v->mv_size, "min_validity_days", 17))
        return 0; /* most products: no parse */
    json_t *p = json_loadb(v->mv_data, v->mv_size, 0, NULL);
    ph_rule r = {0};
    product_rule(p, &r);
    json_decref(p);
    return r.min_validity;
}

/* Builds the table from `products` as this transaction sees it. */
static int rules_build(ph_wtxn *w, ph_err *err)
{
    ph_store *s = w->s;
    MDB_stat st;
    MDB_cursor *cur;
    MDB_val k, v;
    int mrc = mdb_stat(w->txn, s->dbi[DB_PRODUCTS], &st);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read products");
    size_t cap = 16;
    while (cap < 2 * st.ms_entries + 16)
        cap *= 2;
    struct ph_rules *t = calloc(1, sizeof *t);
    if (!t || !(t->slot = calloc(cap, sizeof *t->slot))) {
        free(t);
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    t->cap = cap;
    if ((mrc = mdb_cursor_open(w->txn, s->dbi[DB_PRODUCTS], &cur)) != 0) {
        free(t->slot);
        free(t);
        return ph_store_lmdb_err(err, mrc, "read products");
    }
    for (int op = MDB_FIRST; mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
        if (k.mv_size > PH_SKU_MAX || !k.mv_size ||
            (!memmem(v.mv_data, v.mv_size, "low_stock", 9) &&
             !memmem(v.mv_data, v.mv_size, "min_validity_days", 17)))
            continue; /* most products have no rule: no parse */
        json_t *p = json_loadb(v.mv_data, v.mv_size, 0, NULL);
        ph_rule r = {0};
        if (p && product_rule(p, &r)) {
            ph_rule *slot = rule_slot(t, k.mv_data, k.mv_size);
            memcpy(slot->sku, k.mv_data, k.mv_size);
            slot->sku[k.mv_size] = 0;
            slot->len = (uint8_t)k.mv_size;
            slot->below = r.below;
            slot->margin = r.margin;
            slot->fired[0] = slot->fired[1] = -1;
            slot->min_validity = r.min_validity;
            slot->nsup = r.nsup;
            memcpy(slot->sup, r.sup, sizeof r.sup);
            t->n++;
        }
        json_decref(p);
    }
    mdb_cursor_close(cur);
    store_alerts_free(s);
    s->rules = t;
    s->memo.rules_ok = 1;
    return PH_OK;
}

/* The product's rule, or NULL; *rc an error building the table. */
static ph_rule *rule_find(ph_wtxn *w, const char *sku, size_t len, int *rc, ph_err *err)
{
    *rc = PH_OK;
    if (!w->s->memo.rules_ok && (*rc = rules_build(w, err)) != PH_OK)
        return NULL;
    if (!len || len > PH_SKU_MAX)
        return NULL;
    ph_rule *r = rule_slot(w->s->rules, sku, len);
    return r->len ? r : NULL;
}

int64_t store_min_validity(ph_wtxn *w, const char *sku, size_t len)
{
    int rc;
    ph_err ignored;
    const ph_rule *r = rule_find(w, sku, len, &rc, &ignored);
    /* out of memory building the table: no margin (the sweep's next step retries) */
    return r ? r->min_validity : 0;
}

/* ---- records ------------------------------------------------------------------ */

static size_t state_key(uint8_t *buf, int kind, const char *subject)
{
    size_t len = strlen(subject);
    buf[0] = (uint8_t)kind;
    memcpy(buf + 1, subject, len);
    return len + 1;
}

static void open_counts(MDB_txn *txn, MDB_dbi meta, uint64_t out[PH_ALERT_KINDS])
{
    MDB_val k = {sizeof OPEN_KEY - 1, OPEN_KEY}, v;
    memset(out, 0, PH_ALERT_KINDS * sizeof *out);
    if (mdb_get(txn, meta, &k, &v) == 0 && v.mv_size == PH_ALERT_KINDS * sizeof *out)
        memcpy(out, v.mv_data, v.mv_size);
}

static int open_add(ph_wtxn *w, int kind, int delta, ph_err *err)
{
    uint64_t n[PH_ALERT_KINDS];
    open_counts(w->txn, w->s->dbi[DB_META], n);
    assert(delta > 0 || n[kind - 1] > 0);
    n[kind - 1] += (uint64_t)(int64_t)delta;
    MDB_val k = {sizeof OPEN_KEY - 1, OPEN_KEY}, v = {sizeof n, n};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_META], &k, &v, 0);
    return mrc ? ph_store_lmdb_err(err, mrc, "write alert counters") : PH_OK;
}

static int put_alert(ph_wtxn *w, uint64_t id, json_t *rec, unsigned flags, ph_err *err)
{
    char *txt = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!txt)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    MDB_val k = {8, &id}, v = {strlen(txt), txt};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_ALERTS], &k, &v, flags);
    ph_json_free(txt);
    return mrc ? ph_store_lmdb_err(err, mrc, "write alert") : PH_OK;
}

static int get_alert(MDB_txn *txn, MDB_dbi dbi, uint64_t id, json_t **out, ph_err *err)
{
    MDB_val k = {8, &id}, v;
    int mrc = mdb_get(txn, dbi, &k, &v);
    if (mrc == MDB_NOTFOUND)
        return ph_err_set(err, PH_ENOTFOUND, "alert %llu: no such alert", (unsigned long long)id);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read alert");
    if (!(*out = json_loadb(v.mv_data, v.mv_size, 0, NULL)))
        return ph_err_set(err, PH_EIO, "alert %llu: malformed record", (unsigned long long)id);
    return PH_OK;
}

/* What one judgement saw: the value and its parts (stock), for record and event. */
typedef struct judged {
    int64_t value, below, margin;
    int64_t local, suppliers; /* stock: local issuable, supplier sum (-1 unknown) */
    int stock;                /* 1: a product's stock, 0: a balance */
} judged;

static json_t *event_fields(int kind, const char *subject, const judged *j, uint64_t id, int fire)
{
    json_t *f;
    if (!j->stock)
        f = fire ? json_pack("{s:s,s:I,s:I,s:I}", "supplier", subject, "balance",
                             (json_int_t)j->value, "below", (json_int_t)j->below, "alert_id",
                             (json_int_t)id)
                 : json_pack("{s:s,s:I,s:I}", "supplier", subject, "balance", (json_int_t)j->value,
                             "alert_id", (json_int_t)id);
    else if (fire && kind == PH_ALERT_STOCK_OUT)
        f = json_pack("{s:s,s:I}", "sku", subject, "alert_id", (json_int_t)id);
    else if (fire)
        f = json_pack("{s:s,s:I,s:I,s:I}", "sku", subject, "available", (json_int_t)j->value,
                      "below", (json_int_t)j->below, "alert_id", (json_int_t)id);
    else
        f = json_pack("{s:s,s:I,s:s,s:I}", "sku", subject, "available", (json_int_t)j->value,
                      "alert", ph_alert_kind_name(kind), "alert_id", (json_int_t)id);
    if (f && j->stock) {
        /* which part was known: a judgement on local stock alone says so */
        json_object_set_new(f, "local", json_integer(j->local));
        json_object_set_new(f, "suppliers",
                            j->suppliers < 0 ? json_null() : json_integer(j->suppliers));
        if (j->suppliers < 0)
            json_object_set_new(f, "local_only", json_true());
    }
    return f;
}

static int fire(ph_wtxn *w, int kind, const char *subject, const judged *j, const MDB_val *sk,
                uint64_t *id_out, ph_err *err)
{
    uint64_t id = ph_store_last_key(w->txn, w->s->dbi[DB_ALERTS]) + 1;
    json_t *rec = json_pack("{s:I,s:s,s:s,s:s,s:I,s:I,s:I,s:I}", "id", (json_int_t)id, "kind",
                            ph_alert_kind_name(kind), "subject", subject, "state", "open",
                            "fired_at", (json_int_t)w->cmd->now, "value", (json_int_t)j->value,
                            "threshold", (json_int_t)j->below, "margin", (json_int_t)j->margin);
    if (rec && j->stock) {
        json_object_set_new(rec, "local", json_integer(j->local));
        json_object_set_new(rec, "suppliers",
                            j->suppliers < 0 ? json_null() : json_integer(j->suppliers));
        json_object_set_new(rec, "local_only", json_boolean(j->suppliers < 0));
    }
    if (!rec)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    int rc = put_alert(w, id, rec, MDB_APPEND, err);
    json_decref(rec);
    ph_alert_state_rec st = {.version = 1, .alert_id = id};
    MDB_val sv = {sizeof st, &st};
    int mrc;
    if (rc == PH_OK && (mrc = mdb_put(w->txn, w->s->dbi[DB_ALERT_STATE], (MDB_val *)sk, &sv, 0)))
        rc = ph_store_lmdb_err(err, mrc, "write alert state");
    if (rc == PH_OK)
        rc = open_add(w, kind, 1, err);
    static const char *const fire_events[] = {"?", "stock.low", "stock.out",
                                              "supplier.balance_low"};
    if (rc == PH_OK)
        rc = store_emit(w, w->cmd->now, fire_events[kind], event_fields(kind, subject, j, id, 1),
                        err);
    if (rc == PH_OK && id_out)
        *id_out = id;
    return rc;
}

static int rearm(ph_wtxn *w, int kind, const char *subject, const judged *j, const MDB_val *sk,
                 uint64_t id, ph_err *err)
{
    int mrc = mdb_del(w->txn, w->s->dbi[DB_ALERT_STATE], (MDB_val *)sk, NULL);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "write alert state");
    json_t *rec;
    int rc = get_alert(w->txn, w->s->dbi[DB_ALERTS], id, &rec, err);
    if (rc)
        return rc == PH_ENOTFOUND ? ph_err_set(err, PH_EIO, "alert %llu: fired but missing",
                                               (unsigned long long)id)
                                  : rc;
    int was = ph_alert_state_parse(json_string_value(json_object_get(rec, "state")));
    json_object_set_new(rec, "state", json_string("cleared"));
    json_object_set_new(rec, "cleared_at", json_integer(w->cmd->now));
    json_object_set_new(rec, "cleared_value", json_integer(j->value));
    rc = put_alert(w, id, rec, 0, err);
    json_decref(rec);
    if (rc == PH_OK && was == PH_ALERT_OPEN)
        rc = open_add(w, kind, -1, err);
    if (rc == PH_OK && (kind == PH_ALERT_STOCK_LOW || kind == PH_ALERT_BALANCE_LOW))
        rc = store_emit(w, w->cmd->now,
                        kind == PH_ALERT_STOCK_LOW ? "stock.recovered"
                                                   : "supplier.balance_recovered",
                        event_fields(kind, subject, j, id, 0), err);
    else if (rc == PH_OK) /* stock.out clears with its own stock.recovered, naming it */
        rc = store_emit(w, w->cmd->now, "stock.recovered", event_fields(kind, subject, j, id, 0),
                        err);
    return rc;
}

/* One (kind, subject) judged: reads its state, fires or re-arms. known (may
 * be NULL) is the rule table's memo of the state: a value that changes nothing
 * is judged without a read. */
static int judge(ph_wtxn *w, int kind, const char *subject, const judged *j, uint64_t *fired,
                 int8_t *known, ph_err *err)
{
    if (known && *known >= 0 &&
        ph_alert_next(*known, j->value, j->below, j->margin) == PH_ALERT_KEEP)
        return PH_OK;
    uint8_t key[PH_SKU_MAX + 2];
    MDB_val sk = {state_key(key, kind, subject), key}, sv;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_ALERT_STATE], &sk, &sv);
    if (mrc && mrc != MDB_NOTFOUND)
        return ph_store_lmdb_err(err, mrc, "read alert state");
    ph_alert_state_rec st = {0};
    if (!mrc) {
        if (sv.mv_size != sizeof st)
            return ph_err_set(err, PH_EIO, "alert state of %s: malformed", subject);
        memcpy(&st, sv.mv_data, sizeof st);
    }
    int step = ph_alert_next(!mrc, j->value, j->below, j->margin);
    if (known)
        *known = step == PH_ALERT_KEEP ? (int8_t)!mrc : -1; /* a write: read it again */
    switch (step) {
    case PH_ALERT_FIRE:
        return fire(w, kind, subject, j, &sk, fired, err);
    case PH_ALERT_REARM:
        return rearm(w, kind, subject, j, &sk, st.alert_id, err);
    default:
        return PH_OK;
    }
}

/* ---- the stock check ---------------------------------------------------------- */

/* Codes of sku in stock, and those of them issuable at now (store.h, "local stock"). */
static void local_counts(ph_store *s, MDB_txn *txn, const char *sku, size_t len, int64_t now,
                         int64_t min_validity, uint64_t *avail, uint64_t *issuable)
{
    MDB_cursor *cur;
    MDB_val k = {len, (void *)sku}, v;
    size_t n = 0;
    *avail = *issuable = 0;
    if (mdb_cursor_open(txn, s->dbi[DB_AVAIL], &cur))
        return;
    if (mdb_cursor_get(cur, &k, &v, MDB_SET_KEY) == 0)
        mdb_cursor_count(cur, &n);
    mdb_cursor_close(cur);
    /* the codes the sweep has not retired yet but would: the index is due at now + margin */
    uint64_t due = n ? ph_expiry_due_available(s, txn, sku, len, now + min_validity) : 0;
    *avail = n;
    *issuable = n > due ? n - due : 0;
}

static int check_rule(ph_wtxn *w, ph_rule *r, ph_err *err)
{
    if (r->below < 0)
        return PH_OK;
    uint64_t avail, issuable;
    local_counts(w->s, w->txn, r->sku, r->len, w->cmd->now, r->min_validity, &avail, &issuable);
    /* Both armed as last read, and the local codes alone reach both thresholds:
     * the suppliers' stock only adds to them, so neither can fire and their
     * offer states need not be read (an order's usual case). */
    if (r->fired[0] == 0 && r->fired[1] == 0 && (int64_t)issuable >= (r->below > 1 ? r->below : 1))
        return PH_OK;
    int64_t sum = 0;
    int known = 0;
    const char *sups[PH_RULE_SUP_MAX];
    for (size_t i = 0; i < r->nsup && i < PH_RULE_SUP_MAX; i++)
        sups[i] = r->sup[i];
    int rc = r->nsup > PH_RULE_SUP_MAX
                 ? store_offer_stock_sum(w, r->sku, &sum, &known)
                 : store_offer_stock_sum_of(w, r->sku, sups, r->nsup, &sum, &known);
    if (rc)
        return rc;
    judged j = {.value = (int64_t)issuable + (known ? sum : 0),
                .below = r->below,
                .margin = r->margin,
                .local = (int64_t)issuable,
                .suppliers = known ? sum : -1,
                .stock = 1};
    if ((rc = judge(w, PH_ALERT_STOCK_LOW, r->sku, &j, NULL, &r->fired[0], err)) != PH_OK)
        return rc;
    judged out = j;
    out.below = 1; /* stock.out: fires at 0, re-arms with the rule's margin */
    return judge(w, PH_ALERT_STOCK_OUT, r->sku, &out, NULL, &r->fired[1], err);
}

int store_alerts_stock(ph_wtxn *w, const char *sku, ph_err *err)
{
    int rc;
    ph_rule *r = rule_find(w, sku, strlen(sku), &rc, err);
    return r ? check_rule(w, r, err) : rc;
}

int store_alerts_catalog(ph_wtxn *w, ph_err *err)
{
    int rc = rules_build(w, err); /* from the catalog this command wrote */
    for (size_t i = 0; rc == PH_OK && i < w->s->rules->cap; i++)
        if (w->s->rules->slot[i].len)
            rc = check_rule(w, &w->s->rules->slot[i], err);
    /* this command's nested transaction may still be thrown away (its audit
     * record fails): the next user rebuilds from what its own transaction sees */
    w->s->memo.rules_ok = 0;
    return rc;
}

/* ---- commands ----------------------------------------------------------------- */

int store_apply_balance(ph_wtxn *w, ph_cmd *c)
{
    const char *sup = c->in.balance.supplier;
    if (!sup || !ph_ident_valid(sup, PH_SKU_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "balance: supplier: not a supplier id");
    if (c->in.balance.balance < 0 && c->in.balance.balance != -1)
        return ph_err_set(&c->err, PH_EINVAL, "balance: balance: negative");
    ph_balance_rec rec = {.balance = c->in.balance.balance, .at = c->now};
    MDB_val k = {strlen(sup), (void *)sup}, v = {sizeof rec, &rec};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_BALANCE], &k, &v, 0);
    if (mrc)
        return ph_store_lmdb_err(&c->err, mrc, "write balance");
    c->alert_id = 0;
    if (c->in.balance.below < 0)
        return PH_OK;
    judged j = {.value = c->in.balance.balance,
                .below = c->in.balance.below,
                .margin = ph_alert_default_margin(c->in.balance.below)};
    return judge(w, PH_ALERT_BALANCE_LOW, sup, &j, &c->alert_id, NULL, &c->err);
}

int store_apply_alert_ack(ph_wtxn *w, ph_cmd *c)
{
    const char *by = c->in.alert_ack.by, *note = c->in.alert_ack.note ? c->in.alert_ack.note : "";
    uint64_t id = c->in.alert_ack.id;
    size_t nl = strlen(note);
    if (!by || !ph_ident_valid(by, PH_SKU_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "by: not a client name");
    int bad = nl > PH_NOTE_MAX || (nl && ph_text_invalid(note, nl));
    for (size_t i = 0; i < nl && !bad; i++)
        bad = (unsigned char)note[i] < 0x20 || note[i] == 0x7f;
    if (bad)
        return ph_err_set(&c->err, PH_EINVAL,
                          "note: at most %d bytes of UTF-8 without control characters",
                          PH_NOTE_MAX);
    json_t *rec;
    int rc = get_alert(w->txn, w->s->dbi[DB_ALERTS], id, &rec, &c->err);
    if (rc)
        return rc;
    int state = ph_alert_state_parse(json_string_value(json_object_get(rec, "state")));
    int kind = kind_parse(json_string_value(json_object_get(rec, "kind")));
    if (state != PH_ALERT_OPEN || !kind) {
        const char *who = json_string_value(json_object_get(rec, "acked_by"));
        rc = state == PH_ALERT_ACKED
                 ? ph_err_set(&c->err, PH_ESTATE, "alert %llu is already acknowledged by %s",
                              (unsigned long long)id, who ? who : "?")
             : state == PH_ALERT_CLEARED
                 ? ph_err_set(&c->err, PH_ESTATE,
                              "alert %llu is cleared (its condition is over): nothing to "
                              "acknowledge",
                              (unsigned long long)id)
                 : ph_err_set(&c->err, PH_EIO, "alert %llu: malformed record",
                              (unsigned long long)id);
        json_decref(rec);
        return rc;
    }
    json_object_set_new(rec, "state", json_string("acknowledged"));
    json_object_set_new(rec, "acked_by", json_string(by));
    json_object_set_new(rec, "acked_at", json_integer(c->now));
    if (nl)
        json_object_set_new(rec, "note", json_string(note));
    rc = put_alert(w, id, rec, 0, &c->err);
    json_decref(rec);
    if (rc == PH_OK)
        rc = open_add(w, kind, -1, &c->err);
    if (rc == PH_OK)
        rc = store_emit(w, c->now, "alert.acknowledged",
                        json_pack("{s:I,s:s}", "alert_id", (json_int_t)id, "by", by), &c->err);
    return rc;
}

/* ---- reads -------------------------------------------------------------------- */

static int state_matches(const MDB_val *v, int state)
{
    if (!state)
        return 1;
    /* the records are ours and compact: the state is a fixed substring */
    char want[32];
    int n = snprintf(want, sizeof want, "\"state\":\"%s\"", ph_alert_state_name(state));
    return memmem(v->mv_data, v->mv_size, want, (size_t)n) != NULL;
}

static int keep_alert(const MDB_val *v, const void *arg)
{
    return state_matches(v, *(const int *)arg);
}

int ph_store_alert_list(ph_store *s, int state, uint64_t after, size_t limit, char ***out,
                        size_t *n, uint64_t *next_after, ph_err *err)
{
    return store_json_list(s, DB_ALERTS, after, limit, state ? keep_alert : NULL, &state,
                           "read alerts", out, n, next_after, err);
}

void ph_store_alerts_open(ph_store *s, uint64_t out[PH_ALERT_KINDS])
{
    MDB_txn *txn;
    ph_err err;
    memset(out, 0, PH_ALERT_KINDS * sizeof *out);
    if (ph_store_read_begin(s, &txn, &err))
        return;
    open_counts(txn, s->dbi[DB_META], out);
    ph_store_read_end(s, txn);
}

int ph_store_balance_get(ph_store *s, const char *supplier, int64_t *balance, int64_t *at,
                         ph_err *err)
{
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    MDB_val k = {strlen(supplier), (void *)supplier}, v;
    int mrc = k.mv_size ? mdb_get(txn, s->dbi[DB_BALANCE], &k, &v) : MDB_NOTFOUND;
    ph_balance_rec rec;
    if (mrc == MDB_NOTFOUND)
        rc = ph_err_set(err, PH_ENOTFOUND, "supplier: no balance read yet");
    else if (mrc)
        rc = ph_store_lmdb_err(err, mrc, "read balance");
    else if (v.mv_size != sizeof rec)
        rc = ph_err_set(err, PH_EIO, "balance of %s: malformed", supplier);
    else {
        memcpy(&rec, v.mv_data, sizeof rec);
        *balance = rec.balance;
        *at = rec.at;
    }
    ph_store_read_end(s, txn);
    return rc;
}

int ph_store_product_local(ph_store *s, const char *sku, int64_t now, ph_local_stock *out,
                           ph_err *err)
{
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    MDB_val k = {strlen(sku), (void *)sku}, v;
    int mrc = k.mv_size && k.mv_size <= PH_SKU_MAX ? mdb_get(txn, s->dbi[DB_PRODUCTS], &k, &v)
                                                   : MDB_NOTFOUND;
    if (mrc == MDB_NOTFOUND)
        rc = ph_err_set(err, PH_ENOTFOUND, "sku: no such product");
    else if (mrc)
        rc = ph_store_lmdb_err(err, mrc, "read product");
    else
        local_counts(s, txn, sku, k.mv_size, now, store_product_min_validity(&v), &out->available,
                     &out->issuable);
    ph_store_read_end(s, txn);
    return rc;
}

/* ---- the invariants (--check-store) ------------------------------------------- */

int store_check_alerts(ph_store *s, MDB_txn *txn, ph_err *err)
{
    MDB_cursor *cur;
    MDB_val k, v;
    uint64_t open[PH_ALERT_KINDS] = {0}, counted[PH_ALERT_KINDS];
    int rc = PH_OK, mrc = mdb_cursor_open(txn, s->dbi[DB_ALERTS], &cur);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read alerts");
    for (int op = MDB_FIRST; rc == PH_OK && mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
        uint64_t id;
        memcpy(&id, k.mv_data, 8);
        json_t *rec = json_loadb(v.mv_data, v.mv_size, JSON_REJECT_DUPLICATES, NULL);
        int kind = kind_parse(json_string_value(json_object_get(rec, "kind")));
        int state = ph_alert_state_parse(json_string_value(json_object_get(rec, "state")));
        const char *subject = json_string_value(json_object_get(rec, "subject"));
        if (!kind || !state || !subject || !ph_ident_valid(subject, PH_SKU_MAX) ||
            (uint64_t)json_integer_value(json_object_get(rec, "id")) != id) {
            rc =
                ph_err_set(err, PH_EIO, "alerts: record %llu is malformed", (unsigned long long)id);
        } else {
            open[kind - 1] += state == PH_ALERT_OPEN;
            uint8_t key[PH_SKU_MAX + 2];
            MDB_val sk = {state_key(key, kind, subject), key}, sv;
            ph_alert_state_rec st = {0};
            int fired = mdb_get(txn, s->dbi[DB_ALERT_STATE], &sk, &sv) == 0 &&
                        sv.mv_size == sizeof st && (memcpy(&st, sv.mv_data, sizeof st), 1);
            /* not cleared <=> its (kind, subject) is fired and names it */
            if ((state != PH_ALERT_CLEARED) != (fired && st.alert_id == id))
                rc = ph_err_set(err, PH_EIO,
                                "alerts: alert %llu is %s but alert_state %s it (kind %s, "
                                "subject %s)",
                                (unsigned long long)id, ph_alert_state_name(state),
                                fired && st.alert_id == id ? "names" : "does not name",
                                ph_alert_kind_name(kind), subject);
        }
        json_decref(rec);
    }
    mdb_cursor_close(cur);
    open_counts(txn, s->dbi[DB_META], counted);
    for (int i = 0; rc == PH_OK && i < PH_ALERT_KINDS; i++)
        if (open[i] != counted[i])
            rc = ph_err_set(err, PH_EIO, "meta: %s[%s] is %llu, but %llu alerts are open", OPEN_KEY,
                            ph_alert_kind_name(i + 1), (unsigned long long)counted[i],
                            (unsigned long long)open[i]);
    return rc;
}
