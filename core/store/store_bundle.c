/*
 * store_bundle.c — bundles (issue 16) inside the writer's transaction: a
 * bundle order is a parent order (delivery bundle: no codes, no money of its
 * own) with one component order per component of the product, each an
 * ordinary order of the same client (card codes from stock, or a supplier
 * order with its own attempts, rule 2 per component) whose client order id
 * "#<parent>.<j>[.<retry>]" no client can send ('#' is not an identifier
 * character). The bundle record (DB_BUNDLES, parent id -> JSON) lists each
 * component's orders, oldest first; the latest is the one that counts.
 *
 * The parent's state is stored and follows its components in the same
 * transaction as every component write: store_put_order calls
 * store_bundle_follow for each component order it writes, so no command
 * that moves a component (ATTEMPT, SETTLE, RESOLVE, ...) can forget it. The
 * one exception is a bundle grant given back (every component failed, nothing
 * delivered): the command that fails its last component holds the parent
 * (w->bundle_back) until store_bundle_grant_back has reserved every unit
 * again, so the parent goes from processing to granted, never failed.
 */
#include "store/store_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "base/util.h"

int ph_bundle_state(const int *states, size_t n)
{
    size_t ok = 0, held = 0, granted = 0;
    int open = 0, unknown = 0;
    for (size_t i = 0; i < n; i++) {
        ok += states[i] == PH_ORDER_SUCCEEDED;
        held += states[i] == PH_ORDER_HELD;
        granted += states[i] == PH_ORDER_GRANTED;
        unknown |= states[i] == PH_ORDER_UNKNOWN;
        open |= !ph_order_state_final(states[i]) && states[i] != PH_ORDER_PARTIAL;
    }
    if (n && held == n)
        return PH_ORDER_HELD;
    if (n && granted == n)
        return PH_ORDER_GRANTED;
    if (unknown)
        return PH_ORDER_UNKNOWN;
    if (open)
        return PH_ORDER_PROCESSING;
    if (n && ok == n)
        return PH_ORDER_SUCCEEDED;
    return ok ? PH_ORDER_PARTIAL : PH_ORDER_FAILED;
}

int ph_order_component_of(const ph_order *o, uint64_t *parent)
{
    const char *s = o->client_order_id;
    if (s[0] != '#')
        return 0;
    uint64_t v = 0;
    size_t i = 1;
    for (; s[i] >= '0' && s[i] <= '9' && i < 21; i++)
        v = v * 10 + (uint64_t)(s[i] - '0');
    if (i == 1 || s[i] != '.')
        return 0;
    if (parent)
        *parent = v;
    return 1;
}

/* ---- the bundle record ------------------------------------------------------ */

static int record_get(ph_store *s, MDB_txn *txn, uint64_t id, json_t **out, ph_err *err)
{
    MDB_val k = {8, &id}, v;
    int mrc = mdb_get(txn, s->dbi[DB_BUNDLES], &k, &v);
    if (mrc == MDB_NOTFOUND)
        return PH_ENOTFOUND;
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "read bundle");
    json_t *j = json_loadb(v.mv_data, v.mv_size, 0, NULL);
    if (!json_is_array(json_object_get(j, "components"))) {
        json_decref(j);
        return ph_err_set(err, PH_EIO, "bundle %llu: malformed record", (unsigned long long)id);
    }
    *out = j;
    return PH_OK;
}

static int record_put(ph_wtxn *w, uint64_t id, const json_t *rec, ph_err *err)
{
    char *txt = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!txt)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    MDB_val k = {8, &id}, v = {strlen(txt), txt};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_BUNDLES], &k, &v, 0);
    ph_json_free(txt);
    return mrc ? ph_store_lmdb_err(err, mrc, "write bundle") : PH_OK;
}

/* The latest order of component j. */
static uint64_t latest_of(const json_t *comp)
{
    json_t *orders = json_object_get(comp, "orders");
    size_t n = json_array_size(orders);
    return n ? (uint64_t)json_integer_value(json_array_get(orders, n - 1)) : 0;
}

/* The state of each component's latest order into st (n of them); `fresh`
 * (may be NULL) is an order just written, read from memory. */
static int component_states(ph_store *s, MDB_txn *txn, const json_t *rec, const ph_order *fresh,
                            int *st, size_t *n, ph_err *err)
{
    json_t *comps = json_object_get(rec, "components");
    *n = json_array_size(comps);
    if (*n > PH_BUNDLE_COMPONENTS_MAX)
        return ph_err_set(err, PH_EIO, "bundle: too many components");
    for (size_t j = 0; j < *n; j++) {
        uint64_t id = latest_of(json_array_get(comps, j));
        if (fresh && id == fresh->id) {
            st[j] = fresh->state;
            continue;
        }
        ph_order *o = NULL;
        int rc = ph_order_load(s, txn, id, 0, &o, err);
        if (rc)
            return rc == PH_ENOTFOUND ? ph_err_set(err, PH_EIO,
                                                   "bundle: component order %llu "
                                                   "missing",
                                                   (unsigned long long)id)
                                      : rc;
        st[j] = o->state;
        ph_order_free(o);
    }
    return PH_OK;
}

/* The parent's event for a state it moved to (none for processing, which a
 * retry announces with order.retried; none for held or granted, whose events
 * their writers send: order.held with its rule, order.granted with its
 * expiry). A failed parent names its reason when it has one (expired,
 * blocked). */
static int emit_parent(ph_wtxn *w, int64_t now, const ph_order *p, ph_err *err)
{
    if (p->state == PH_ORDER_PROCESSING || p->state == PH_ORDER_HELD ||
        p->state == PH_ORDER_GRANTED)
        return PH_OK;
    char type[32];
    snprintf(type, sizeof type, "order.%s", ph_order_state_name(p->state));
    json_t *f = json_pack("{s:I,s:s,s:s,s:s,s:I,s:s}", "order_id", (json_int_t)p->id, "client",
                          p->client, "client_order_id", p->client_order_id, "sku", p->sku,
                          "quantity", (json_int_t)p->quantity, "delivery", "bundle");
    if (f && p->state == PH_ORDER_FAILED && p->reason[0])
        json_object_set_new(f, "reason", json_string(p->reason));
    return store_emit(w, now, type, f, err);
}

/* Sets parent id's state to what its components make it; *p (may be NULL)
 * gets the parent as written. */
static int parent_follow(ph_wtxn *w, int64_t now, uint64_t id, const json_t *rec,
                         const ph_order *fresh, ph_order **pout, ph_err *err)
{
    int st[PH_BUNDLE_COMPONENTS_MAX];
    size_t n;
    ph_order *p = NULL;
    int rc = component_states(w->s, w->txn, rec, fresh, st, &n, err);
    if (rc == PH_OK)
        rc = ph_order_load(w->s, w->txn, id, 0, &p, err);
    if (rc == PH_OK && p->delivery != PH_DELIVERY_BUNDLE)
        rc = ph_err_set(err, PH_EIO, "order %llu: not a bundle", (unsigned long long)id);
    if (rc == PH_OK) {
        int want = ph_bundle_state(st, n);
        /* its grant is being given back: it never ends failed on the way */
        if (want == PH_ORDER_FAILED && id == w->bundle_back)
            want = p->state;
        if (want != p->state) {
            p->state = want;
            p->updated_at = now;
            w->wrote = 1;
            if ((rc = store_put_order(w, p, 0, err)) == PH_OK)
                rc = emit_parent(w, now, p, err);
        }
    }
    if (rc == PH_OK && pout)
        *pout = p;
    else
        ph_order_free(p);
    return rc;
}

int store_bundle_follow(ph_wtxn *w, const ph_order *o, ph_err *err)
{
    uint64_t parent;
    json_t *rec = NULL;
    if (!ph_order_component_of(o, &parent))
        return PH_OK;
    int rc = record_get(w->s, w->txn, parent, &rec, err);
    if (rc == PH_ENOTFOUND) /* being created: its creator sets the state */
        return PH_OK;
    if (rc == PH_OK)
        rc = parent_follow(w, w->cmd ? w->cmd->now : o->updated_at, parent, rec, o, NULL, err);
    json_decref(rec);
    return rc;
}

/* ---- buying a component --------------------------------------------------------- */

/* Codes of sku available now (expired ones the pop would retire included:
 * then the take fails and the whole command with it). */
static int stock_count(ph_wtxn *w, const char *sku, size_t *n, ph_err *err)
{
    MDB_cursor *cur;
    MDB_val k = {strlen(sku), (void *)sku}, v;
    int mrc = mdb_cursor_open(w->txn, w->s->dbi[DB_AVAIL], &cur);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "open stock");
    *n = 0;
    mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
    if (mrc == 0)
        mrc = mdb_cursor_count(cur, n);
    mdb_cursor_close(cur);
    return mrc && mrc != MDB_NOTFOUND ? ph_store_lmdb_err(err, mrc, "count stock") : PH_OK;
}

/* How component j of sku is delivered (its listed kind, card code or
 * recharge: else PH_ESKU naming it). */
static int component_kind(ph_wtxn *w, ph_cmd *c, size_t j, const char *sku, int *delivery)
{
    char kind[32] = "?";
    int rc = store_listed_delivery(w, c, sku, delivery, kind);
    if (rc == PH_OK && *delivery != PH_DELIVERY_CARD_CODE && *delivery != PH_DELIVERY_RECHARGE)
        rc = ph_err_set(&c->err, PH_ESKU, "components[%zu]: sku '%s' is delivered by %s", j, sku,
                        *delivery ? ph_delivery_name(*delivery) : kind);
    return rc;
}

/* How component j will be bought: 1 from stock, 2 by a supplier (t: the
 * routed one; a grant's recharge needs none now, it is routed when claimed);
 * PH_ENOSTOCK naming it when neither can. */
static int plan_component(ph_wtxn *w, ph_cmd *c, size_t j, const char *sku, uint32_t qty,
                          const ph_attempt_target *t, int grant, int *how, int *delivery)
{
    int rc = component_kind(w, c, j, sku, delivery);
    if (rc)
        return rc;
    if (*delivery == PH_DELIVERY_CARD_CODE) {
        size_t avail;
        if ((rc = stock_count(w, sku, &avail, &c->err)) != PH_OK)
            return rc;
        if (avail >= qty) {
            *how = 1;
            return PH_OK;
        }
        if (!t->supplier)
            return ph_err_set(&c->err, PH_ENOSTOCK,
                              "components[%zu]: sku '%s' has %zu codes available, %u needed, and "
                              "no supplier can take it now; nothing was reserved",
                              j, sku, avail, qty);
    } else if (!t->supplier && !grant) {
        return ph_err_set(&c->err, PH_ENOSTOCK,
                          "components[%zu]: no supplier can take sku '%s' now; nothing was "
                          "reserved",
                          j, sku);
    }
    *how = 2;
    return PH_OK;
}

/* A new component order of slot j (retry 0: the first; back k: the k-th
 * return of a bundle grant), not yet written. */
static ph_order *component_new(ph_wtxn *w, ph_cmd *c, const ph_order *parent, size_t j,
                               uint32_t retry, uint32_t back, const char *sku, uint32_t qty)
{
    ph_order *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->id = w->ids.order++;
    snprintf(o->client, sizeof o->client, "%s", parent->client);
    if (back)
        snprintf(o->client_order_id, sizeof o->client_order_id, "#%llu.%zu.r%u",
                 (unsigned long long)parent->id, j, back);
    else if (retry)
        snprintf(o->client_order_id, sizeof o->client_order_id, "#%llu.%zu.%u",
                 (unsigned long long)parent->id, j, retry);
    else
        snprintf(o->client_order_id, sizeof o->client_order_id, "#%llu.%zu",
                 (unsigned long long)parent->id, j);
    snprintf(o->sku, sizeof o->sku, "%s", sku);
    o->quantity = qty;
    o->created_at = o->updated_at = c->now;
    memcpy(o->fingerprint, parent->fingerprint, 32);
    return o;
}

/* Gives component o (j) the sealed account when it is a recharge that has
 * none yet (a held one kept the one it was ordered with). */
static int component_account(ph_cmd *c, ph_order *o, size_t j, const uint8_t *sealed,
                             uint32_t sealed_len, const char *masked)
{
    if (o->account_sealed)
        return PH_OK;
    if (!sealed || !sealed_len || !masked || strlen(masked) >= sizeof o->account_masked)
        return ph_err_set(&c->err, PH_EINVAL, "account: required for components[%zu]", j);
    if (!(o->account_sealed = malloc(sealed_len)))
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    memcpy(o->account_sealed, sealed, sealed_len);
    o->account_sealed_len = sealed_len;
    snprintf(o->account_masked, sizeof o->account_masked, "%s", masked);
    return PH_OK;
}

/* order.accepted for a component held or reserved with its bundle (its state
 * and its parent): every order has its events, a unit that is only held or
 * reserved too; the bundle's own order.held or order.granted is the
 * parent's. */
static int emit_component(ph_wtxn *w, ph_cmd *c, const ph_order *o)
{
    uint64_t parent = 0;
    ph_order_component_of(o, &parent);
    return store_emit(w, c->now, "order.accepted",
                      json_pack("{s:I,s:s,s:s,s:s,s:I,s:s,s:s,s:I}", "order_id", (json_int_t)o->id,
                                "client", o->client, "client_order_id", o->client_order_id, "sku",
                                o->sku, "quantity", (json_int_t)o->quantity, "delivery",
                                ph_delivery_name(o->delivery ? o->delivery : PH_DELIVERY_CARD_CODE),
                                "state", ph_order_state_name(o->state), "parent",
                                (json_int_t)parent),
                      &c->err);
}

/* What buying a component takes: its plan (how, delivery), the route, the
 * account (a recharge of a new bundle), and whether it is reserved for a
 * grant instead. */
typedef struct buy_how {
    int how, delivery, grant;
    const ph_attempt_target *target;
    const uint8_t *sealed;
    uint32_t sealed_len;
    const char *masked;
} buy_how;

/* Buys component order o (j): fresh (a new order, written here first) or a
 * held one being released. From stock: its codes taken, succeeded (a grant:
 * reserved, granted). By a supplier: attempt 1 at b->target, processing (a
 * grant: the right only, granted, no attempt; its account comes with the
 * claim). */
static int component_buy(ph_wtxn *w, ph_cmd *c, ph_order *o, size_t j, const buy_how *b, int fresh)
{
    int rc = PH_OK;
    w->wrote = 1;
    o->updated_at = c->now;
    o->reason[0] = 0;
    if (b->how == 1) {
        o->delivery = 0; /* from local stock */
        o->state = b->grant ? PH_ORDER_GRANTED : PH_ORDER_SUCCEEDED;
        if ((rc = store_take_codes(w, c, o->sku, o)) == PH_OK &&
            (rc = store_put_order(w, o, fresh ? MDB_APPEND : 0, &c->err)) == PH_OK &&
            (!fresh || (rc = store_index_order(w, o, &c->err)) == PH_OK) &&
            (rc = b->grant ? emit_component(w, c, o)
                           : store_emit_outcome(w, c->now, o, 0, &c->err)) == PH_OK)
            rc = store_alerts_stock(w, o->sku, &c->err);
        return rc;
    }
    o->delivery = b->delivery;
    if (b->delivery == PH_DELIVERY_RECHARGE && !b->grant)
        rc = component_account(c, o, j, b->sealed, b->sealed_len, b->masked);
    if (rc == PH_OK && b->grant) {
        o->state = PH_ORDER_GRANTED;
        if ((rc = store_put_supply_order(w, o, 0, &c->err)) == PH_OK)
            rc = emit_component(w, c, o);
    } else if (rc == PH_OK) {
        rc = store_supply_release(w, c, o, b->target, NULL);
    }
    if (rc == PH_OK && fresh)
        rc = store_index_order(w, o, &c->err);
    return rc;
}

/* A new component order held with its bundle (a risk rule's hold): nothing
 * taken, no attempt; a recharge keeps its sealed account in its supply
 * record until it is released (none for a grant: it comes with the claim). */
static int component_hold(ph_wtxn *w, ph_cmd *c, ph_order *o, size_t j, const buy_how *b)
{
    int rc = PH_OK;
    w->wrote = 1;
    o->state = PH_ORDER_HELD;
    if (b->delivery == PH_DELIVERY_RECHARGE) {
        o->delivery = PH_DELIVERY_RECHARGE;
        if (!b->grant)
            rc = component_account(c, o, j, b->sealed, b->sealed_len, b->masked);
        if (rc == PH_OK)
            rc = store_put_supply_order(w, o, 0, &c->err);
    } else {
        rc = store_put_order(w, o, MDB_APPEND, &c->err);
    }
    if (rc == PH_OK)
        rc = store_index_order(w, o, &c->err);
    return rc ? rc : emit_component(w, c, o);
}

/* Appends order id to component comp's orders. */
static int comp_append(ph_cmd *c, json_t *comp, uint64_t id)
{
    if (json_array_append_new(json_object_get(comp, "orders"), json_integer((json_int_t)id)))
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    return PH_OK;
}

/* Moves src's contents into dst (the caller's order becomes the one read
 * back), freeing what dst had. */
static void order_take(ph_order *dst, ph_order *src)
{
    ph_order old = *dst;
    *dst = *src;
    *src = old;
    ph_order_free(src);
}

/* ---- BUNDLE: a new bundle order ------------------------------------------------- */

/* No targets at all (a welfare batch's bundle line): no component goes to a
 * supplier now. */
static const ph_attempt_target no_targets[PH_BUNDLE_COMPONENTS_MAX];

_Static_assert(PH_CMD_TARGETS_MAX == PH_BUNDLE_COMPONENTS_MAX,
               "a command's targets are one per component of a bundle");

static int input_ok(ph_cmd *c, size_t ncomp)
{
    if (!c->in.bundle.ntargets && !c->in.bundle.targets) {
        c->in.bundle.targets = no_targets;
        c->in.bundle.ntargets = ncomp;
    }
    if (c->in.bundle.ntargets != ncomp || (ncomp && !c->in.bundle.targets))
        return ph_err_set(&c->err, PH_EINVAL, "targets: %zu given for a bundle of %zu components",
                          c->in.bundle.ntargets, ncomp);
    return PH_OK;
}

/* The components of the stored bundle product: each {sku, quantity}. */
static int bundle_product(ph_wtxn *w, ph_cmd *c, const char *sku, json_t **comps)
{
    char kind[32] = "?";
    int delivery;
    int rc = store_listed_delivery(w, c, sku, &delivery, kind);
    if (rc)
        return rc;
    if (delivery != PH_DELIVERY_BUNDLE)
        return ph_err_set(&c->err, PH_ESKU, "sku: '%s' is not a bundle", sku);
    json_t *p;
    if ((rc = store_get_product(w, sku, &p, &c->err)) != PH_OK)
        return rc;
    json_t *cs = json_object_get(p, "components");
    size_t n = json_array_size(cs);
    if (!n || n > PH_BUNDLE_COMPONENTS_MAX) {
        json_decref(p);
        return ph_err_set(&c->err, PH_EIO, "product '%s': a bundle without components", sku);
    }
    *comps = json_incref(cs);
    json_decref(p);
    return PH_OK;
}

static int apply_new(ph_wtxn *w, ph_cmd *c)
{
    const char *client = c->in.bundle.client, *coid = c->in.bundle.client_order_id,
               *sku = c->in.bundle.sku;
    if (!ph_ident_valid(client, PH_SKU_MAX) || !ph_ident_valid(coid, PH_ORDER_ID_MAX) ||
        !ph_ident_valid(sku, PH_SKU_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "order: client, client_order_id or sku malformed");
    if (c->in.bundle.quantity < 1 || c->in.bundle.quantity > PH_BUNDLE_QUANTITY_MAX)
        return ph_err_set(&c->err, PH_EINVAL, "quantity: expected 1 to %d for a bundle",
                          PH_BUNDLE_QUANTITY_MAX);
    char key[PH_SKU_MAX + PH_ORDER_ID_MAX + 2];
    MDB_val k = {ph_store_ref_key(client, coid, key), key}, v;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_ORDER_REF], &k, &v);
    if (mrc == 0)
        return store_replay_order(w, c, &v, c->in.bundle.fingerprint, coid);
    if (mrc != MDB_NOTFOUND)
        return ph_store_lmdb_err(&c->err, mrc, "read order index");
    const ph_order_risk *risk = c->in.bundle.risk;
    const ph_grant_in *grant = c->in.bundle.grant;
    int verdict = risk ? risk->verdict : PH_VERDICT_FULFIL;
    int rc = store_risk_input_ok(c, risk);
    if (rc || (rc = store_grant_input_ok(c, grant)) != PH_OK)
        return rc;
    json_t *comps = NULL;
    rc = bundle_product(w, c, sku, &comps);
    size_t n = json_array_size(comps);
    if (rc || (rc = input_ok(c, n)) != PH_OK) {
        json_decref(comps);
        return rc;
    }
    /* plan every component before the first write: all or none (a held one
     * is planned when it is released; its kinds are checked now) */
    buy_how b[PH_BUNDLE_COMPONENTS_MAX];
    uint32_t qty[PH_BUNDLE_COMPONENTS_MAX];
    for (size_t j = 0; rc == PH_OK && j < n; j++) {
        json_t *cj = json_array_get(comps, j);
        json_int_t q = json_integer_value(json_object_get(cj, "quantity"));
        const char *cs = json_string_value(json_object_get(cj, "sku"));
        b[j] = (buy_how){.grant = grant != NULL,
                         .target = &c->in.bundle.targets[j],
                         .sealed = c->in.bundle.account_sealed,
                         .sealed_len = c->in.bundle.account_sealed_len,
                         .masked = c->in.bundle.account_masked};
        if (!cs || q < 1 || q > PH_BUNDLE_QUANTITY_MAX)
            rc = ph_err_set(&c->err, PH_EIO, "product '%s': components[%zu] malformed", sku, j);
        else if ((qty[j] = (uint32_t)q * c->in.bundle.quantity), verdict == PH_VERDICT_FULFIL)
            rc = plan_component(w, c, j, cs, qty[j], b[j].target, b[j].grant, &b[j].how,
                                &b[j].delivery);
        else
            rc = component_kind(w, c, j, cs, &b[j].delivery);
    }
    ph_order *p = NULL;
    json_t *rec = NULL;
    if (rc == PH_OK && !(p = calloc(1, sizeof *p)))
        rc = ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    if (rc == PH_OK) {
        p->id = w->ids.order++;
        snprintf(p->client, sizeof p->client, "%s", client);
        snprintf(p->client_order_id, sizeof p->client_order_id, "%s", coid);
        snprintf(p->sku, sizeof p->sku, "%s", sku);
        p->quantity = c->in.bundle.quantity;
        p->state = grant ? PH_ORDER_GRANTED : PH_ORDER_PROCESSING;
        if (verdict != PH_VERDICT_FULFIL) /* held (every component with it) or denied (none) */
            store_risk_decide(p, risk);
        p->delivery = PH_DELIVERY_BUNDLE;
        p->created_at = p->updated_at = c->now;
        memcpy(p->fingerprint, c->in.bundle.fingerprint, 32);
        w->wrote = 1;
        if ((rc = store_put_order(w, p, MDB_APPEND, &c->err)) == PH_OK &&
            (rc = store_index_order(w, p, &c->err)) == PH_OK && verdict == PH_VERDICT_FULFIL &&
            !grant) /* as for any order: a held, denied or granted one has its own events */
            rc = store_emit(w, c->now, "order.accepted",
                            json_pack("{s:I,s:s,s:s,s:s,s:I,s:s,s:s,s:I}", "order_id",
                                      (json_int_t)p->id, "client", client, "client_order_id", coid,
                                      "sku", sku, "quantity", (json_int_t)p->quantity, "delivery",
                                      "bundle", "state", ph_order_state_name(p->state),
                                      "components", (json_int_t)n),
                            &c->err);
        if (rc == PH_OK)
            rc = store_risk_record(w, c, p, risk);
        if (rc == PH_OK && verdict != PH_VERDICT_DENY &&
            !(rec = json_pack("{s:I,s:[]}", "retries", 0, "components")))
            rc = ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    }
    for (size_t j = 0; rc == PH_OK && rec && j < n; j++) {
        const char *cs = json_string_value(json_object_get(json_array_get(comps, j), "sku"));
        json_t *comp =
            json_pack("{s:s,s:I,s:[]}", "sku", cs, "quantity", (json_int_t)qty[j], "orders");
        ph_order *o = comp ? component_new(w, c, p, j, 0, 0, cs, qty[j]) : NULL;
        if (!o || json_array_append_new(json_object_get(rec, "components"), comp))
            rc = ph_err_set(&c->err, PH_ENOMEM, "out of memory");
        else if ((rc = verdict == PH_VERDICT_HOLD ? component_hold(w, c, o, j, &b[j])
                                                  : component_buy(w, c, o, j, &b[j], 1)) == PH_OK)
            rc = comp_append(c, comp, o->id);
        ph_order_free(o);
    }
    json_decref(comps);
    if (rc == PH_OK && rec && (rc = record_put(w, p->id, rec, &c->err)) == PH_OK)
        rc = parent_follow(w, c->now, p->id, rec, NULL, &c->order, &c->err);
    else if (rc == PH_OK) { /* denied: the parent alone */
        c->order = p;
        p = NULL;
    }
    /* a bundle grant: one grant on the parent (its token, expiry, order.granted) */
    if (rc == PH_OK && grant && c->order->state != PH_ORDER_FAILED)
        rc = store_grant_new(w, c, c->order, grant);
    json_decref(rec);
    ph_order_free(p);
    return rc;
}

/* ---- a held bundle released ------------------------------------------------------ */

/* The latest order of each component of bundle rec (n of them) into o[],
 * read with codes; each must be in state `want`. */
static int load_components(ph_wtxn *w, ph_cmd *c, uint64_t id, const json_t *rec, int want,
                           ph_order **o, size_t *n)
{
    json_t *comps = json_object_get(rec, "components");
    *n = json_array_size(comps);
    if (*n > PH_BUNDLE_COMPONENTS_MAX)
        return ph_err_set(&c->err, PH_EIO, "bundle %llu: too many components",
                          (unsigned long long)id);
    for (size_t j = 0; j < *n; j++) {
        int rc =
            ph_order_load(w->s, w->txn, latest_of(json_array_get(comps, j)), 1, &o[j], &c->err);
        if (rc)
            return rc;
        if (want && o[j]->state != want)
            return ph_err_set(&c->err, PH_EIO, "bundle %llu: components[%zu] is %s, not %s",
                              (unsigned long long)id, j, ph_order_state_name(o[j]->state),
                              ph_order_state_name(want));
    }
    return PH_OK;
}

static void free_components(ph_order **o, size_t n)
{
    for (size_t j = 0; j < n; j++)
        ph_order_free(o[j]);
}

/* The parent as written into *p, its reason set first when it fails (a
 * bundle keeps its reason in its record's flags, like a stock order). */
static int parent_reread(ph_wtxn *w, ph_cmd *c, ph_order *p, const json_t *rec)
{
    ph_order *np = NULL;
    int rc = parent_follow(w, c->now, p->id, rec, NULL, &np, &c->err);
    if (rc == PH_OK)
        order_take(p, np);
    return rc;
}

/* Sets the stored parent's reason now (its state follows its components):
 * the order.failed its components lead to names it. */
static int parent_reason(ph_wtxn *w, ph_cmd *c, ph_order *p, const char *reason)
{
    snprintf(p->reason, sizeof p->reason, "%s", reason);
    p->updated_at = c->now;
    w->wrote = 1;
    return store_put_order(w, p, 0, &c->err);
}

int store_bundle_release(ph_wtxn *w, ph_cmd *c, ph_order *p, int grant)
{
    json_t *rec = NULL;
    ph_order *o[PH_BUNDLE_COMPONENTS_MAX] = {0};
    buy_how b[PH_BUNDLE_COMPONENTS_MAX];
    size_t n = 0;
    int rc = record_get(w->s, w->txn, p->id, &rec, &c->err);
    if (rc == PH_ENOTFOUND)
        return ph_err_set(&c->err, PH_EIO, "bundle %llu: held without its record",
                          (unsigned long long)p->id);
    if (rc == PH_OK)
        rc = load_components(w, c, p->id, rec, PH_ORDER_HELD, o, &n);
    if (rc == PH_OK && c->in.review.ntargets != n)
        rc = ph_err_set(&c->err, PH_EINVAL, "targets: %u given for a bundle of %zu components",
                        c->in.review.ntargets, n);
    /* planned before the first write, as a new bundle is */
    int refused = 0;
    for (size_t j = 0; rc == PH_OK && !refused && j < n; j++) {
        b[j] = (buy_how){.grant = grant, .target = &c->in.review.targets[j]};
        rc = plan_component(w, c, j, o[j]->sku, o[j]->quantity, b[j].target, grant, &b[j].how,
                            &b[j].delivery);
        if (rc == PH_ENOSTOCK || rc == PH_ESKU) { /* a new bundle would be refused: it fails */
            refused = 1;
            rc = PH_OK;
            memset(&c->err, 0, sizeof c->err);
        }
    }
    if (rc == PH_OK && refused) {
        if ((rc = parent_reason(w, c, p, "out_of_stock")) == PH_OK)
            for (size_t j = 0; rc == PH_OK && j < n; j++)
                rc = store_grant_unit_dies(w, c, o[j], "out_of_stock");
    } else if (rc == PH_OK) {
        /* in a nested transaction: a take the count did not foresee (a code
         * that expired on the way) takes nothing, and the bundle fails */
        MDB_txn *parent = w->txn, *child;
        ph_ids ids = w->ids;
        int mrc = mdb_txn_begin(mdb_txn_env(parent), parent, 0, &child);
        if (mrc)
            rc = ph_store_lmdb_err(&c->err, mrc, "begin nested");
        else {
            w->txn = child;
            for (size_t j = 0; rc == PH_OK && j < n; j++)
                rc = component_buy(w, c, o[j], j, &b[j], 0);
            w->txn = parent;
            if (rc == PH_OK && (mrc = mdb_txn_commit(child)) != 0)
                rc = ph_store_lmdb_err(&c->err, mrc, "commit nested");
            else if (rc) {
                mdb_txn_abort(child);
                w->ids = ids;
            }
        }
        if (rc == PH_ENOSTOCK) {
            memset(&c->err, 0, sizeof c->err);
            free_components(o, n);
            memset(o, 0, sizeof o);
            if ((rc = load_components(w, c, p->id, rec, PH_ORDER_HELD, o, &n)) == PH_OK &&
                (rc = parent_reason(w, c, p, "out_of_stock")) == PH_OK)
                for (size_t j = 0; rc == PH_OK && j < n; j++)
                    rc = store_grant_unit_dies(w, c, o[j], "out_of_stock");
        }
    }
    if (rc == PH_OK)
        rc = parent_reread(w, c, p, rec);
    free_components(o, n);
    json_decref(rec);
    return rc;
}

int store_bundle_grant_claim(ph_wtxn *w, ph_cmd *c, ph_order *p)
{
    json_t *rec = NULL;
    ph_order *o[PH_BUNDLE_COMPONENTS_MAX] = {0};
    size_t n = 0;
    int rc = record_get(w->s, w->txn, p->id, &rec, &c->err);
    if (rc == PH_ENOTFOUND)
        return ph_err_set(&c->err, PH_EIO, "bundle %llu: granted without its record",
                          (unsigned long long)p->id);
    if (rc == PH_OK)
        rc = load_components(w, c, p->id, rec, PH_ORDER_GRANTED, o, &n);
    if (rc == PH_OK && c->in.grant.ntargets && c->in.grant.ntargets != n)
        rc = ph_err_set(&c->err, PH_EINVAL, "targets: %u given for a bundle of %zu components",
                        c->in.grant.ntargets, n);
    static const ph_attempt_target none = {0};
    /* no component would reach the holder now (every one a supplier unit no
     * supplier was routed for: the catalog changed since the grant): the
     * claim is refused and the grant stays claimable, rather than claimed
     * with its bundle failed at once */
    size_t unrouted = 0;
    for (size_t j = 0; rc == PH_OK && j < n; j++)
        unrouted += ph_order_via_supplier(o[j]) &&
                    (j >= c->in.grant.ntargets || !c->in.grant.targets[j].supplier);
    if (rc == PH_OK && n && unrouted == n)
        rc = ph_err_set(&c->err, PH_ENOSTOCK,
                        "no supplier can deliver this grant now; claim it later");
    for (size_t j = 0; rc == PH_OK && j < n; j++)
        rc = store_grant_unit_claim(w, c, o[j],
                                    j < c->in.grant.ntargets ? &c->in.grant.targets[j] : &none,
                                    "no_supplier_available");
    if (rc == PH_OK)
        rc = parent_reread(w, c, p, rec);
    free_components(o, n);
    json_decref(rec);
    return rc;
}

int store_bundle_dies(ph_wtxn *w, ph_cmd *c, ph_order *p, const char *reason)
{
    json_t *rec = NULL;
    ph_order *o[PH_BUNDLE_COMPONENTS_MAX] = {0};
    size_t n = 0;
    uint64_t id = p->id;
    MDB_val k = {8, &id};
    int rc = PH_OK, mrc = p->state == PH_ORDER_HELD
                              ? mdb_del(w->txn, w->s->dbi[DB_REVIEWS], &k, NULL)
                              : MDB_NOTFOUND;
    if (mrc && mrc != MDB_NOTFOUND)
        return ph_store_lmdb_err(&c->err, mrc, "write review");
    rc = record_get(w->s, w->txn, p->id, &rec, &c->err);
    if (rc == PH_ENOTFOUND) /* nothing of it was ever bought (denied): the parent alone */
        rc = PH_OK;
    else if (rc == PH_OK)
        rc = load_components(w, c, p->id, rec, 0, o, &n);
    if (rc == PH_OK)
        rc = parent_reason(w, c, p, reason);
    for (size_t j = 0; rc == PH_OK && j < n; j++)
        rc = store_grant_unit_dies(w, c, o[j], reason);
    if (rc == PH_OK && rec)
        rc = parent_reread(w, c, p, rec);
    else if (rc == PH_OK) {
        p->state = PH_ORDER_FAILED;
        if ((rc = store_put_order(w, p, 0, &c->err)) == PH_OK)
            rc = emit_parent(w, c->now, p, &c->err);
    }
    free_components(o, n);
    json_decref(rec);
    return rc;
}

/* ---- a bundle grant given back ---------------------------------------------------- */

/* Every order of bundle rec failed as a supplier unit: no code, no attempt
 * but failed ones (a supplier order with none failed before it was sent). */
static int undelivered(ph_store *s, MDB_txn *txn, const json_t *rec, const ph_order *fresh,
                       int *yes, ph_err *err)
{
    json_t *comps = json_object_get(rec, "components");
    *yes = json_array_size(comps) > 0;
    for (size_t j = 0; *yes && j < json_array_size(comps); j++) {
        json_t *orders = json_object_get(json_array_get(comps, j), "orders");
        *yes = json_array_size(orders) > 0;
        for (size_t i = 0; *yes && i < json_array_size(orders); i++) {
            uint64_t cid = (uint64_t)json_integer_value(json_array_get(orders, i));
            ph_order *ld = NULL;
            if (!fresh || fresh->id != cid) {
                int rc = ph_order_load(s, txn, cid, 0, &ld, err);
                if (rc)
                    return rc;
            }
            const ph_order *o = ld ? ld : fresh;
            *yes = o->state == PH_ORDER_FAILED && !o->ncodes && ph_order_via_supplier(o);
            for (size_t a = 0; *yes && a < o->nattempts; a++)
                *yes = o->attempts[a].state == PH_ATTEMPT_FAILED;
            ph_order_free(ld);
        }
    }
    return PH_OK;
}

int store_bundle_undelivered(ph_store *s, MDB_txn *txn, uint64_t id, const ph_order *fresh,
                             int *yes, ph_err *err)
{
    json_t *rec = NULL;
    *yes = 0;
    int rc = record_get(s, txn, id, &rec, err);
    if (rc == PH_ENOTFOUND) {
        memset(err, 0, sizeof *err);
        return PH_OK;
    }
    if (rc == PH_OK)
        rc = undelivered(s, txn, rec, fresh, yes, err);
    json_decref(rec);
    return rc;
}

int store_bundle_returns(ph_store *s, MDB_txn *txn, uint64_t id, size_t *n, ph_err *err)
{
    json_t *rec = NULL;
    *n = 0;
    int rc = record_get(s, txn, id, &rec, err);
    if (rc == PH_OK)
        *n = (size_t)json_integer_value(json_object_get(rec, "returns"));
    json_decref(rec);
    return rc;
}

int store_bundle_last_component(ph_store *s, MDB_txn *txn, uint64_t id, ph_order **out, ph_err *err)
{
    json_t *rec = NULL;
    *out = NULL;
    int rc = record_get(s, txn, id, &rec, err);
    json_t *comps = json_object_get(rec, "components");
    for (size_t j = 0; rc == PH_OK && j < json_array_size(comps); j++) {
        ph_order *o = NULL;
        rc = ph_order_load(s, txn, latest_of(json_array_get(comps, j)), 0, &o, err);
        /* the latest written; of two written at once, the later id */
        if (rc == PH_OK && (!*out || o->updated_at > (*out)->updated_at ||
                            (o->updated_at == (*out)->updated_at && o->id > (*out)->id))) {
            ph_order_free(*out);
            *out = o;
        } else {
            ph_order_free(o);
        }
    }
    json_decref(rec);
    if (rc == PH_OK && !*out)
        rc = ph_err_set(err, PH_EIO, "bundle %llu: no component", (unsigned long long)id);
    if (rc) {
        ph_order_free(*out);
        *out = NULL;
    }
    return rc;
}

int store_bundle_takes_back(ph_wtxn *w, const ph_order *o, uint64_t *parent, ph_err *err)
{
    uint64_t id = 0;
    int st = 0, yes = 0, rc = PH_OK;
    *parent = 0;
    if (o->state != PH_ORDER_FAILED || !ph_order_component_of(o, &id))
        return PH_OK;
    if ((rc = store_grant_state_of(w, id, &st, err)) != PH_OK || st != PH_GRANT_CLAIMED)
        return rc;
    /* a code issued at the claim, or a recharge done, is a bundle partly
     * delivered: partial, and its retry buys the rest */
    if ((rc = store_bundle_undelivered(w->s, w->txn, id, o, &yes, err)) == PH_OK && yes)
        *parent = id;
    return rc;
}

int store_bundle_grant_back(ph_wtxn *w, ph_cmd *c, uint64_t id, const ph_order *failed)
{
    json_t *rec = NULL;
    ph_order *p = NULL;
    int rc = record_get(w->s, w->txn, id, &rec, &c->err);
    if (rc == PH_OK)
        rc = ph_order_load(w->s, w->txn, id, 0, &p, &c->err);
    json_t *comps = json_object_get(rec, "components");
    uint32_t k = (uint32_t)json_integer_value(json_object_get(rec, "returns")) + 1;
    for (size_t j = 0; rc == PH_OK && j < json_array_size(comps); j++) {
        json_t *comp = json_array_get(comps, j);
        ph_order *last = NULL, *o = NULL;
        if ((rc = ph_order_load(w->s, w->txn, latest_of(comp), 0, &last, &c->err)) != PH_OK)
            break;
        /* the unit reserved again as it was granted: a supplier's right of the
         * same kind (a recharge, or a card bought upstream) */
        buy_how b = {.how = 2, .delivery = last->delivery, .grant = 1};
        if (!(o = component_new(w, c, p, j, 0, k, last->sku, last->quantity)))
            rc = ph_err_set(&c->err, PH_ENOMEM, "out of memory");
        else if ((rc = component_buy(w, c, o, j, &b, 1)) == PH_OK)
            rc = comp_append(c, comp, o->id);
        ph_order_free(o);
        ph_order_free(last);
    }
    if (rc == PH_OK) {
        json_object_set_new(rec, "returns", json_integer(k));
        rc = record_put(w, id, rec, &c->err);
    }
    w->bundle_back = 0; /* its components are granted now, or the command fails */
    if (rc == PH_OK)
        rc = parent_reread(w, c, p, rec);
    if (rc == PH_OK && p->state != PH_ORDER_GRANTED)
        rc = ph_err_set(&c->err, PH_EIO, "bundle %llu: given back but %s", (unsigned long long)id,
                        ph_order_state_name(p->state));
    if (rc == PH_OK)
        rc = store_grant_back(w, c, p, failed);
    ph_order_free(p);
    json_decref(rec);
    return rc;
}

/* ---- BUNDLE: a retry of the failed components ------------------------------------ */

static int apply_retry(ph_wtxn *w, ph_cmd *c)
{
    uint64_t id = c->in.bundle.retry_of;
    uint32_t no = c->in.bundle.retry_no;
    ph_order *p = NULL;
    json_t *rec = NULL;
    if (!no || no > 1000)
        return ph_err_set(&c->err, PH_EINVAL, "retry: expected 1 to 1000");
    int rc = ph_order_load(w->s, w->txn, id, 0, &p, &c->err);
    if (rc == PH_OK && (p->delivery != PH_DELIVERY_BUNDLE || !c->in.bundle.client ||
                        strcmp(p->client, c->in.bundle.client)))
        rc = PH_ENOTFOUND;
    if (rc == PH_OK)
        rc = record_get(w->s, w->txn, id, &rec, &c->err);
    if (rc == PH_ENOTFOUND) {
        ph_order_free(p);
        json_decref(rec);
        return ph_err_set(&c->err, PH_ENOTFOUND, "order: not found");
    }
    json_t *comps = json_object_get(rec, "components");
    size_t n = json_array_size(comps);
    uint32_t done = (uint32_t)json_integer_value(json_object_get(rec, "retries"));
    if (rc == PH_OK && no <= done) { /* the same retry again: the bundle as it is */
        c->order = p;
        c->replayed = 1;
        json_decref(rec);
        return PH_OK;
    }
    if (rc == PH_OK && no != done + 1)
        rc = ph_err_set(&c->err, PH_ECONFLICT, "retry: expected %u (retries so far: %u)", done + 1,
                        done);
    if (rc == PH_OK && p->state != PH_ORDER_PARTIAL)
        rc = ph_err_set(&c->err, PH_ESTATE, "order %llu is %s, not partial: nothing to retry",
                        (unsigned long long)id, ph_order_state_name(p->state));
    if (rc == PH_OK)
        rc = input_ok(c, n);
    /* the failed components, planned before the first write: all or none */
    ph_order *failed[PH_BUNDLE_COMPONENTS_MAX] = {0};
    buy_how b[PH_BUNDLE_COMPONENTS_MAX];
    size_t nfailed = 0;
    for (size_t j = 0; rc == PH_OK && j < n; j++) {
        json_t *comp = json_array_get(comps, j);
        if ((rc = ph_order_load(w->s, w->txn, latest_of(comp), 0, &failed[j], &c->err)) != PH_OK)
            break;
        if (failed[j]->state != PH_ORDER_FAILED) {
            ph_order_free(failed[j]);
            failed[j] = NULL;
            continue;
        }
        nfailed++;
        /* a recharge reuses the failed order's sealed account */
        b[j] = (buy_how){.target = &c->in.bundle.targets[j],
                         .sealed = failed[j]->account_sealed,
                         .sealed_len = failed[j]->account_sealed_len,
                         .masked = failed[j]->account_masked};
        rc = plan_component(w, c, j, failed[j]->sku, failed[j]->quantity, b[j].target, 0, &b[j].how,
                            &b[j].delivery);
    }
    for (size_t j = 0; rc == PH_OK && j < n; j++) {
        if (!failed[j])
            continue;
        ph_order *o = component_new(w, c, p, j, no, 0, failed[j]->sku, failed[j]->quantity);
        if (!o)
            rc = ph_err_set(&c->err, PH_ENOMEM, "out of memory");
        else if ((rc = component_buy(w, c, o, j, &b[j], 1)) == PH_OK)
            rc = comp_append(c, json_array_get(comps, j), o->id);
        ph_order_free(o);
    }
    for (size_t j = 0; j < n; j++)
        ph_order_free(failed[j]);
    if (rc == PH_OK) {
        json_object_set_new(rec, "retries", json_integer(no));
        w->wrote = 1;
        if ((rc = record_put(w, id, rec, &c->err)) == PH_OK)
            rc = store_emit(w, c->now, "order.retried",
                            json_pack("{s:I,s:s,s:s,s:s,s:I,s:I}", "order_id", (json_int_t)id,
                                      "client", p->client, "client_order_id", p->client_order_id,
                                      "sku", p->sku, "retry", (json_int_t)no, "components",
                                      (json_int_t)nfailed),
                            &c->err);
        if (rc == PH_OK)
            rc = parent_follow(w, c->now, id, rec, NULL, &c->order, &c->err);
    }
    ph_order_free(p);
    json_decref(rec);
    return rc;
}

int store_apply_bundle(ph_wtxn *w, ph_cmd *c)
{
    return c->in.bundle.retry_of ? apply_retry(w, c) : apply_new(w, c);
}

/* ---- reads ---------------------------------------------------------------------- */

int ph_store_bundle_get(ph_store *s, uint64_t id, char **json, ph_err *err)
{
    MDB_txn *txn;
    json_t *rec = NULL;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    rc = record_get(s, txn, id, &rec, err);
    ph_store_read_end(s, txn);
    if (rc == PH_ENOTFOUND)
        return ph_err_set(err, PH_ENOTFOUND, "bundle: not found");
    if (rc)
        return rc;
    char *txt = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(rec);
    if (!txt)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    *json = strdup(txt);
    ph_json_free(txt);
    return *json ? PH_OK : ph_err_set(err, PH_ENOMEM, "out of memory");
}

/* ---- --check-store -------------------------------------------------------------- */

static int component_has(ph_store *s, MDB_txn *txn, int db, uint64_t id)
{
    MDB_val k = {8, &id}, v;
    return mdb_get(txn, s->dbi[db], &k, &v) == 0;
}

/* One bundle record against its parent and components. */
static int check_one(ph_store *s, MDB_txn *txn, uint64_t id, const MDB_val *v, ph_err *err)
{
    unsigned long long pid = id;
    json_t *rec = json_loadb(v->mv_data, v->mv_size, 0, NULL);
    json_t *comps = json_object_get(rec, "components");
    ph_order *p = NULL;
    int rc = PH_OK;
    if (!json_is_array(comps) || !json_array_size(comps))
        rc = ph_err_set(err, PH_EIO, "bundle %llu: malformed record", pid);
    else if (ph_order_load(s, txn, id, 0, &p, err) != PH_OK || p->delivery != PH_DELIVERY_BUNDLE)
        rc = ph_err_set(err, PH_EIO, "bundle %llu: its parent is not a bundle order", pid);
    for (size_t j = 0; rc == PH_OK && j < json_array_size(comps); j++) {
        json_t *orders = json_object_get(json_array_get(comps, j), "orders");
        for (size_t i = 0; rc == PH_OK && i < json_array_size(orders); i++) {
            uint64_t cid = (uint64_t)json_integer_value(json_array_get(orders, i)), back = 0;
            ph_order *o = NULL;
            if (ph_order_load(s, txn, cid, 0, &o, err) != PH_OK)
                rc = ph_err_set(err, PH_EIO, "bundle %llu: component order %llu missing", pid,
                                (unsigned long long)cid);
            else if (!ph_order_component_of(o, &back) || back != id || strcmp(o->client, p->client))
                rc = ph_err_set(err, PH_EIO,
                                "bundle %llu: order %llu is listed as its component but names "
                                "bundle %llu",
                                pid, (unsigned long long)cid, (unsigned long long)back);
            /* an earlier order of a component was failed when it was bought
             * again; ops accepting a supplier's word (RESOLVE) may have made it
             * succeeded since, but never open again */
            else if (i + 1 < json_array_size(orders) && !ph_order_state_final(o->state))
                rc = ph_err_set(err, PH_EIO,
                                "bundle %llu: components[%zu] was bought again while order "
                                "%llu is %s",
                                pid, j, (unsigned long long)cid, ph_order_state_name(o->state));
            /* 33: a held or granted component is so with its whole bundle (a
             * release or a claim moves every one in its transaction) */
            else if ((o->state == PH_ORDER_HELD || o->state == PH_ORDER_GRANTED) &&
                     p->state != o->state)
                rc = ph_err_set(err, PH_EIO,
                                "bundle %llu: components[%zu] (order %llu) is %s but "
                                "the bundle is %s",
                                pid, j, (unsigned long long)cid, ph_order_state_name(o->state),
                                ph_order_state_name(p->state));
            /* 34: the bundle's grant and review are its parent's, never a component's */
            else if (component_has(s, txn, DB_GRANTS, cid) ||
                     component_has(s, txn, DB_REVIEWS, cid))
                rc = ph_err_set(err, PH_EIO,
                                "bundle %llu: component order %llu has a grant or review of its "
                                "own",
                                pid, (unsigned long long)cid);
            ph_order_free(o);
        }
    }
    int st[PH_BUNDLE_COMPONENTS_MAX];
    size_t n = 0;
    if (rc == PH_OK && (rc = component_states(s, txn, rec, NULL, st, &n, err)) == PH_OK &&
        ph_bundle_state(st, n) != p->state)
        rc = ph_err_set(err, PH_EIO,
                        "bundle %llu: its state %s is not what its components make (%s)", pid,
                        ph_order_state_name(p->state), ph_order_state_name(ph_bundle_state(st, n)));
    ph_order_free(p);
    json_decref(rec);
    return rc;
}

int store_check_bundles(ph_store *s, MDB_txn *txn, ph_err *err)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = PH_OK, mrc = mdb_cursor_open(txn, s->dbi[DB_BUNDLES], &cur);
    if (mrc)
        return ph_store_lmdb_err(err, mrc, "open bundles");
    uint64_t listed = 0;
    for (int op = MDB_FIRST; rc == PH_OK && (mrc = mdb_cursor_get(cur, &k, &v, op)) == 0;
         op = MDB_NEXT) {
        uint64_t id;
        memcpy(&id, k.mv_data, 8);
        rc = check_one(s, txn, id, &v, err);
        json_t *rec = json_loadb(v.mv_data, v.mv_size, 0, NULL);
        json_t *comps = json_object_get(rec, "components");
        for (size_t j = 0; j < json_array_size(comps); j++)
            listed += json_array_size(json_object_get(json_array_get(comps, j), "orders"));
        json_decref(rec);
    }
    mdb_cursor_close(cur);
    if (rc)
        return rc;
    if (mrc != MDB_NOTFOUND)
        return ph_store_lmdb_err(err, mrc, "read bundles");
    /* every component order is listed by its bundle: each names one bundle
     * (its client order id) and each record's orders name it back, so the
     * counts agree exactly when no order is a component of two */
    uint64_t components = 0, last = ph_store_last_key(txn, s->dbi[DB_ORDERS]);
    MDB_cursor *oc;
    if ((mrc = mdb_cursor_open(txn, s->dbi[DB_ORDERS], &oc)) != 0)
        return ph_store_lmdb_err(err, mrc, "open orders");
    for (int op = MDB_FIRST; last && (mrc = mdb_cursor_get(oc, &k, &v, op)) == 0; op = MDB_NEXT) {
        ph_order o;
        uint64_t id, parent;
        memcpy(&id, k.mv_data, 8);
        if (ph_order_decode(&v, id, &o, NULL) != PH_OK)
            continue;
        if (ph_order_component_of(&o, &parent))
            components++;
        /* 35: a bundle order has its record unless risk denied it (then
         * nothing of it was bought: the parent alone, failed) */
        else if (o.delivery == PH_DELIVERY_BUNDLE && !component_has(s, txn, DB_BUNDLES, id) &&
                 (o.state != PH_ORDER_FAILED || strcmp(o.reason, "denied_by_risk"))) {
            mdb_cursor_close(oc);
            return ph_err_set(err, PH_EIO, "bundle %llu: %s without its bundle record",
                              (unsigned long long)id, ph_order_state_name(o.state));
        }
    }
    mdb_cursor_close(oc);
    if (components != listed)
        return ph_err_set(err, PH_EIO,
                          "bundles: %llu component orders, but bundle records list %llu",
                          (unsigned long long)components, (unsigned long long)listed);
    return PH_OK;
}
