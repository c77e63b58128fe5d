/*
 * api_bundles.c — bundle orders (issue 16): POST /v1/orders of a bundle
 * product (called by api_orders.c once the request is read, fingerprinted
 * and past risk), POST /v1/orders/{id}/retry, and the components of a
 * bundle's view. The store decides everything in one command (PH_CMD_BUNDLE,
 * store_bundle.c); this file routes each component that may need a supplier
 * before submission, hands the new supplier components to fulfil after the
 * commit, and shows a bundle with its components.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "http/bundles.h"
#include "supply/fulfil.h"
#include "base/util.h"
#include "http/views.h"

/* What the command points to, alive until the request ends; the request's
 * previous handler state (the order's risk state) is kept and freed with it. */
typedef struct bundle_ext {
    ph_attempt_target t[PH_BUNDLE_COMPONENTS_MAX];
    void *inner;
    void (*inner_free)(void *);
    int (*after)(ph_req *r); /* the order handler's: the command completed; -1 or
                                its answer's PH_REQ_* */
    uint64_t waited;         /* the component the last wait was for (0: none yet) */
} bundle_ext;

static void bundle_ext_free(void *p)
{
    bundle_ext *b = p;
    if (b->inner_free)
        b->inner_free(b->inner);
    free(b);
}

static bundle_ext *bundle_ext_take(ph_req *r)
{
    bundle_ext *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->inner = r->ext;
    b->inner_free = r->ext_free;
    r->ext = b;
    r->ext_free = bundle_ext_free;
    return b;
}

int ph_bundle_needs_account(const ph_config *cfg, const ph_product_conf *p)
{
    for (size_t j = 0; j < p->ncomponents; j++) {
        const ph_product_conf *q = ph_config_product(cfg, p->components[j].sku);
        if (q && q->delivery == PH_DELIVERY_RECHARGE)
            return 1;
    }
    return 0;
}

/* The bundle record of parent id, parsed; NULL when unreadable. */
static json_t *bundle_record(ph_req *r, uint64_t id)
{
    char *txt = NULL;
    ph_err err = {0};
    if (ph_store_bundle_get(r->env->store, id, &txt, &err) != PH_OK)
        return NULL;
    json_t *j = json_loads(txt, 0, NULL);
    free(txt);
    return j;
}

static uint64_t latest_of(const json_t *comp)
{
    json_t *orders = json_object_get(comp, "orders");
    size_t n = json_array_size(orders);
    return n ? (uint64_t)json_integer_value(json_array_get(orders, n - 1)) : 0;
}

void ph_bundle_view_components(ph_req *r, json_t *view, uint64_t id, int owner, int ops)
{
    json_t *rec = view ? bundle_record(r, id) : NULL;
    json_t *comps = json_object_get(rec, "components"), *out = json_array();
    for (size_t j = 0; out && j < json_array_size(comps); j++) {
        json_t *cj = json_array_get(comps, j);
        ph_order *o = NULL;
        ph_err err = {0};
        json_t *cv = NULL;
        if (ph_store_order_get(r->env->store, latest_of(cj), owner, &o, &err) == PH_OK) {
            cv = ph_view_order(o, r->cfg->cfg, r->env->keys, owner, ops);
            ph_order_free(o);
        }
        if (!cv)
            cv = json_pack("{s:O?,s:s}", "sku", json_object_get(cj, "sku"), "state", "?");
        /* the component's orders, oldest first: more than one after a retry */
        json_object_set(cv, "orders", json_object_get(cj, "orders"));
        json_array_append_new(out, cv);
    }
    if (rec)
        json_object_set_new(view, "retries", json_incref(json_object_get(rec, "retries")));
    json_object_set_new(view, "components", out);
    json_decref(rec);
}

/* The bundle's view as its owner sees it (codes of its components), with
 * its masked end user as GET shows it (its risk record, stored by now). */
static json_t *bundle_view(ph_req *r, const ph_order *o)
{
    json_t *j = ph_view_order(o, r->cfg->cfg, r->env->keys, 1, 0);
    char *txt = NULL;
    ph_err err = {0};
    if (ph_store_order_risk_get(r->env->store, o->id, &txt, &err) == PH_OK) {
        json_t *rec = json_loads(txt, 0, NULL);
        free(txt);
        ph_view_end_user(j, rec);
        json_decref(rec);
    }
    ph_bundle_view_components(r, j, o->id, 1, 0);
    return j;
}

int ph_bundle_components(ph_store *s, uint64_t id, ph_order **o, size_t *n)
{
    char *txt = NULL;
    ph_err err = {0};
    *n = 0;
    int rc = ph_store_bundle_get(s, id, &txt, &err);
    if (rc)
        return rc;
    json_t *rec = json_loads(txt, 0, NULL);
    free(txt);
    json_t *comps = json_object_get(rec, "components");
    for (size_t j = 0; rc == PH_OK && j < json_array_size(comps); j++) {
        if (j == PH_BUNDLE_COMPONENTS_MAX)
            rc = PH_EIO;
        else if ((rc = ph_store_order_get(s, latest_of(json_array_get(comps, j)), 0, &o[j],
                                          &err)) == PH_OK)
            (*n)++;
    }
    json_decref(rec);
    if (rc) {
        for (size_t j = 0; j < *n; j++)
            ph_order_free(o[j]);
        *n = 0;
    }
    return rc;
}

json_t *ph_bundle_brief(ph_store *s, uint64_t id)
{
    ph_order *o[PH_BUNDLE_COMPONENTS_MAX];
    size_t n;
    if (ph_bundle_components(s, id, o, &n) != PH_OK)
        return NULL;
    json_t *out = json_array();
    for (size_t j = 0; j < n; j++) {
        json_array_append_new(out, json_pack("{s:s,s:I,s:I,s:s}", "sku", o[j]->sku, "quantity",
                                             (json_int_t)o[j]->quantity, "order_id",
                                             (json_int_t)o[j]->id, "state",
                                             ph_order_state_name(o[j]->state)));
        ph_order_free(o[j]);
    }
    return out;
}

int ph_bundle_begin(struct ph_fulfil *f, ph_store *s, uint64_t id, uint64_t *failed)
{
    char *txt = NULL;
    ph_err err = {0};
    int rc = PH_OK;
    *failed = 0;
    if (ph_store_bundle_get(s, id, &txt, &err) != PH_OK)
        return PH_OK; /* a denied bundle has no record, nothing to begin */
    json_t *rec = json_loads(txt, 0, NULL);
    free(txt);
    json_t *comps = json_object_get(rec, "components");
    for (size_t j = 0; j < json_array_size(comps); j++) {
        ph_order *o = NULL;
        if (ph_store_order_get(s, latest_of(json_array_get(comps, j)), 0, &o, &err) != PH_OK)
            continue;
        /* the account, when any, is unsealed from the component itself */
        if (ph_order_via_supplier(o) && o->state == PH_ORDER_PROCESSING &&
            ph_fulfil_begin(f, o, NULL, &err) != PH_OK) {
            rc = PH_ENOMEM;
            *failed = o->id;
        }
        ph_order_free(o);
    }
    json_decref(rec);
    return rc;
}

/* Hands every new supplier component (its attempt SENDING) to fulfil; an
 * order it cannot take now stays SENDING in the store, and the next start's
 * resume makes it unknown and queries it (fulfil.h): never sent twice. */
static void begin_components(ph_req *r, uint64_t id)
{
    uint64_t failed = 0;
    if (ph_bundle_begin(r->env->fulfil, r->env->store, id, &failed) != PH_OK)
        ph_log(r->env->log, PH_LOG_WARN, r->reqid, "bundle.begin_failed",
               "order=%llu component=%llu", (unsigned long long)id, (unsigned long long)failed);
}

/* The first component of bundle id still with a supplier, 0 when none. */
static uint64_t open_component(ph_req *r, uint64_t id)
{
    json_t *rec = bundle_record(r, id);
    json_t *comps = json_object_get(rec, "components");
    uint64_t open = 0;
    for (size_t j = 0; !open && j < json_array_size(comps); j++) {
        ph_order *o = NULL;
        ph_err err = {0};
        uint64_t cid = latest_of(json_array_get(comps, j));
        if (ph_store_order_get(r->env->store, cid, 0, &o, &err) != PH_OK)
            continue;
        if (!ph_order_state_final(o->state))
            open = cid;
        ph_order_free(o);
    }
    json_decref(rec);
    return open;
}

static int bundle_reply(ph_req *r, const ph_order *o, int replayed, int retry)
{
    int final = ph_order_state_final(o->state) || o->state == PH_ORDER_PARTIAL;
    if (replayed)
        r->replay_header = "true";
    ph_log(r->env->log, PH_LOG_INFO, r->reqid,
           retry      ? "bundle.retried"
           : replayed ? "order.replayed"
                      : "order.created",
           "order=%llu sku=%s quantity=%u state=%s", (unsigned long long)o->id, o->sku, o->quantity,
           ph_order_state_name(o->state));
    return ph_req_json(r,
                       replayed ? 200
                       : final  ? 201
                                : 202,
                       json_pack("{s:o}", "order", bundle_view(r, o)));
}

static void wake(void *arg)
{
    ph_req_wake(arg);
}

static int bundle_waited(ph_req *r);

/* Answers now, or waits for the components one after another until the
 * bundle is settled (final or partial) or wait_s has passed. */
static int bundle_reply_or_wait(ph_req *r, const ph_order *o, int replayed)
{
    int64_t deadline = r->started_ms + (int64_t)r->wait_s * 1000;
    uint64_t open = 0;
    if (replayed)
        r->replay_header = "true";
    bundle_ext *b = r->ext;
    /* held waits for ops, granted for its holder: answered now */
    if (r->wait_s && ph_now_ms() < deadline && !ph_order_state_final(o->state) &&
        o->state != PH_ORDER_PARTIAL && o->state != PH_ORDER_HELD && o->state != PH_ORDER_GRANTED)
        open = open_component(r, o->id);
    /* the same component still open after its wait ended: fulfil holds no
     * attempt of it to wait for (ph_fulfil_wait answers at once), so answer */
    if (!open || open == b->waited)
        return bundle_reply(r, o, r->replay_header != NULL, 0);
    b->waited = open;
    r->order_id = o->id;
    ph_req_suspend(r, bundle_waited);
    ph_fulfil_wait(r->env->fulfil, open, deadline, wake, r);
    return PH_REQ_SUSPENDED;
}

static int bundle_waited(ph_req *r)
{
    ph_order *o;
    ph_err err = {0};
    int rc = ph_store_order_get(r->env->store, r->order_id, 0, &o, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    rc = bundle_reply_or_wait(r, o, r->replay_header != NULL);
    ph_order_free(o);
    return rc;
}

static int bundle_created(ph_req *r)
{
    bundle_ext *b = r->ext;
    if (b->after) { /* the risk state is the previous handler state's: put it back for it */
        r->ext = b->inner;
        r->ext_free = b->inner_free;
        int answered = b->after(r);
        r->ext = b;
        r->ext_free = bundle_ext_free;
        if (answered >= 0) /* it answered (a denial, a grant) */
            return answered;
    }
    if (r->cmd.rc != PH_OK)
        return ph_req_fail(r, r->cmd.rc, &r->cmd.err);
    if (!r->cmd.replayed)
        begin_components(r, r->cmd.order->id);
    ph_wipe(r->account, sizeof r->account);
    return bundle_reply_or_wait(r, r->cmd.order, r->cmd.replayed);
}

int ph_bundle_route(struct ph_fulfil *f, const ph_config *cfg, ph_store *s,
                    const ph_product_conf *p, uint32_t times, const int *only, int stock_first,
                    ph_attempt_target *t)
{
    for (size_t j = 0; j < p->ncomponents && j < PH_BUNDLE_COMPONENTS_MAX; j++) {
        const ph_product_conf *q = ph_config_product(cfg, p->components[j].sku);
        if (!q || (only && !only[j]))
            continue;
        if (q->delivery == PH_DELIVERY_CARD_CODE && stock_first) {
            char *json = NULL;
            uint64_t avail = 0;
            ph_err err = {0};
            if (ph_store_product_get(s, q->sku, &json, &avail, &err) == PH_OK)
                free(json);
            if (avail >= (uint64_t)p->components[j].quantity * times || !q->noffers)
                continue; /* stock, or the store's own out_of_stock naming it */
        }
        if (ph_fulfil_route(f, cfg, q, &t[j]) != PH_OK &&
            (q->delivery == PH_DELIVERY_RECHARGE || !stock_first))
            return (int)j;
    }
    return -1;
}

/* ph_bundle_route for a new order or a retry; -1 with a 503 naming the
 * component no supplier can take now. */
static int route_components(ph_req *r, const ph_product_conf *p, uint32_t times, const int *only,
                            ph_attempt_target *t)
{
    int j = ph_bundle_route(r->env->fulfil, r->cfg->cfg, r->env->store, p, times, only, 1, t);
    if (j >= 0)
        return ph_req_error(r, 503, "no_supplier_available",
                            "components[%d]: no enabled, healthy supplier offers %s now", j,
                            p->components[j].sku),
               -1;
    return 0;
}

int ph_api_bundle_submit(ph_req *r, const ph_product_conf *p, uint32_t qty,
                         const ph_order_risk *risk, const ph_grant_in *grant,
                         int (*after)(ph_req *r))
{
    bundle_ext *b = bundle_ext_take(r);
    if (!b)
        return ph_req_fail(r, PH_ENOMEM, NULL);
    b->after = after;
    if (qty > PH_BUNDLE_QUANTITY_MAX)
        return ph_req_error(r, 422, "limit_exceeded",
                            "quantity: over the maximum of %d for a bundle",
                            PH_BUNDLE_QUANTITY_MAX);
    /* held or denied: nothing is bought now (a release routes it then); a
     * grant's recharge is routed when it is claimed */
    int only[PH_BUNDLE_COMPONENTS_MAX];
    for (size_t j = 0; j < p->ncomponents && j < PH_BUNDLE_COMPONENTS_MAX; j++) {
        const ph_product_conf *q = ph_config_product(r->cfg->cfg, p->components[j].sku);
        only[j] = !(risk && risk->verdict != PH_VERDICT_FULFIL) &&
                  !(grant && q && q->delivery == PH_DELIVERY_RECHARGE);
    }
    if (route_components(r, p, qty, only, b->t))
        return PH_REQ_DONE;
    uint8_t fp[32];
    memcpy(fp, r->cmd.in.order.fingerprint, sizeof fp);
    int64_t now = r->cmd.now;
    memset(&r->cmd, 0, sizeof r->cmd);
    r->cmd.type = PH_CMD_BUNDLE;
    r->cmd.now = now;
    r->cmd.in.bundle.client = r->client->name;
    r->cmd.in.bundle.client_order_id = r->arg[0];
    r->cmd.in.bundle.sku = r->arg[1];
    r->cmd.in.bundle.quantity = qty;
    memcpy(r->cmd.in.bundle.fingerprint, fp, sizeof fp);
    r->cmd.in.bundle.targets = b->t;
    r->cmd.in.bundle.ntargets = p->ncomponents;
    r->cmd.in.bundle.risk = risk;
    r->cmd.in.bundle.grant = grant;
    if (r->account[0]) {
        if (ph_fulfil_seal_account(r->env->fulfil, r->account, r->account_sealed,
                                   &r->account_sealed_len, r->account_masked) != PH_OK)
            return ph_req_fail(r, PH_ECRYPTO, NULL);
        r->cmd.in.bundle.account_sealed = r->account_sealed;
        r->cmd.in.bundle.account_sealed_len = r->account_sealed_len;
        r->cmd.in.bundle.account_masked = r->account_masked;
    }
    return ph_req_submit(r, bundle_created);
}

/* ---- POST /v1/orders/{id}/retry ------------------------------------------------ */

static int retried(ph_req *r)
{
    if (r->cmd.rc != PH_OK)
        return ph_req_fail(r, r->cmd.rc, &r->cmd.err);
    if (!r->cmd.replayed)
        begin_components(r, r->cmd.order->id);
    return bundle_reply_or_wait(r, r->cmd.order, r->cmd.replayed);
}

#define RETRY_FIELDS "retry wait"

int ph_api_order_retry(ph_req *r)
{
    uint64_t id;
    json_t *b;
    ph_order *o = NULL;
    ph_err err = {0};
    if (ph_u64_parse(r->seg[0], &id))
        return ph_req_error(r, 400, "invalid_request", "order id: expected a number");
    if (ph_req_body_fields(r, RETRY_FIELDS, &b))
        return PH_REQ_DONE;
    json_t *n = json_object_get(b, "retry"), *w = json_object_get(b, "wait");
    json_int_t no = json_is_integer(n) ? json_integer_value(n) : -1,
               ws = json_is_integer(w) ? json_integer_value(w)
                    : w                ? -1
                                       : 0;
    json_decref(b);
    if (no < 1 || no > 1000)
        return ph_req_error(r, 400, "invalid_request",
                            "retry: expected the retry's number, 1 to 1000 (1 for the first)");
    if (ws < 0 || ws > (json_int_t)r->cfg->cfg->max_order_wait_s)
        return ph_req_error(r, 400, "invalid_request", "wait: expected 0 to %u seconds",
                            r->cfg->cfg->max_order_wait_s);
    r->wait_s = (unsigned)ws;
    /* only the owner's bundles: anyone else's is not found, as for GET */
    int rc = ph_store_order_get(r->env->store, id, 0, &o, &err);
    if (rc == PH_ENOTFOUND || (rc == PH_OK && (strcmp(o->client, r->client->name) ||
                                               o->delivery != PH_DELIVERY_BUNDLE))) {
        ph_order_free(o);
        return ph_req_error(r, 404, "not_found", "order: no bundle order of yours with this id");
    }
    if (rc)
        return ph_req_fail(r, rc, &err);
    const ph_product_conf *p = ph_config_product(r->cfg->cfg, o->sku);
    uint32_t qty = o->quantity;
    ph_order_free(o);
    if (!p || p->delivery != PH_DELIVERY_BUNDLE)
        return ph_req_error(r, 422, "unknown_sku", "sku: the bundle is no longer in the catalog");
    bundle_ext *x = bundle_ext_take(r);
    if (!x)
        return ph_req_fail(r, PH_ENOMEM, NULL);
    /* route only the components that failed (a routing may claim a breaker's probe) */
    int only[PH_BUNDLE_COMPONENTS_MAX] = {0};
    json_t *rec = bundle_record(r, id);
    json_t *comps = json_object_get(rec, "components");
    for (size_t j = 0; j < json_array_size(comps) && j < PH_BUNDLE_COMPONENTS_MAX; j++) {
        ph_order *c = NULL;
        if (ph_store_order_get(r->env->store, latest_of(json_array_get(comps, j)), 0, &c, &err) ==
            PH_OK)
            only[j] = c->state == PH_ORDER_FAILED;
        ph_order_free(c);
    }
    json_decref(rec);
    if (route_components(r, p, qty, only, x->t))
        return PH_REQ_DONE;
    r->cmd.type = PH_CMD_BUNDLE;
    r->cmd.now = ph_now_ms();
    r->cmd.in.bundle.client = r->client->name;
    r->cmd.in.bundle.retry_of = id;
    r->cmd.in.bundle.retry_no = (uint32_t)no;
    r->cmd.in.bundle.targets = x->t;
    r->cmd.in.bundle.ntargets = p->ncomponents;
    return ph_req_submit(r, retried);
}
