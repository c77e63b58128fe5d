/*
 * api_orders.c — POST /v1/orders, GET /v1/orders/{id}, GET /v1/orders.
 *
 * Placing an order is idempotent on (client, client_order_id): the store
 * decides, inside the writer, whether the id is new, a replay of the same
 * request (same order and codes back, 200) or a conflict (409). Codes are
 * rendered only for the client that owns the order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "supply/fulfil.h"
#include "codes/import.h"
#include "base/util.h"
#include "http/views.h"
#include "http/end_user.h"
#include "http/grants.h"
#include "http/bundles.h"
#include "risk/risk.h"

/* ---- the risk side of a new order (issue 15) ----------------------------------
 * Read with the body (end_user), decided by the engine just before the
 * command is submitted, handed to the store as the command's risk input. The
 * check counts the order at once (exact under concurrency, risk.h); when the
 * command then stores nothing new (a replay, a conflict, an error) the count
 * is taken back when the request ends (risk_free): one place, whatever path
 * the request took. */
typedef struct order_risk {
    ph_end_user eu; /* plaintext wiped before submission */
    ph_risk_subject subject;
    ph_risk_decision decision;
    ph_risk *engine; /* the engine that checked (NULL: none) */
    int stored;      /* a command stored the order new */
    ph_order_risk in;
    char *record;
    /* "deliver": "grant" (issue 16): the grant input; the token shown once */
    int is_grant;
    ph_grant_in grant;
    char token[PH_GRANT_TOKEN_LEN + 1];
    char masked[PH_GRANT_HOLDER_MASKED];
    char tags[PH_GRANT_TAGS_MAX + 1];
} order_risk;

static void risk_free(void *p)
{
    order_risk *x = p;
    if (x->engine && !x->stored)
        ph_risk_release(x->engine, &x->subject, &x->decision);
    ph_end_user_wipe(&x->eu);
    ph_wipe(x->token, sizeof x->token);
    free(x->record);
    free(x);
}

static order_risk *risk_of(ph_req *r)
{
    return r->ext_free == risk_free ? r->ext : NULL;
}

/* The command completed: a new order (not a replay) counts for good (a
 * denied one was noted for the related rules by the check itself); anything
 * else is released here, before the answer leaves, not when the request is
 * freed after it: the client's next order must not meet what this one counted
 * (a replay's fresh denial would make its device a suspect meanwhile). */
static void risk_done(ph_req *r)
{
    order_risk *x = risk_of(r);
    if (!x)
        return;
    if (r->cmd.rc == PH_OK && !r->cmd.replayed && r->cmd.order) {
        x->stored = 1;
    } else if (x->engine && !x->stored) {
        ph_risk_release(x->engine, &x->subject, &x->decision);
        x->engine = NULL; /* released: risk_free must not release it again */
    }
}

/* The rule that denied order id, from its risk record ("" when unreadable). */
static void denied_rule(ph_req *r, uint64_t id, char *rule, size_t size)
{
    char *txt = NULL;
    ph_err err = {0};
    rule[0] = 0;
    if (ph_store_order_risk_get(r->env->store, id, &txt, &err) != PH_OK)
        return;
    json_t *j = json_loads(txt, 0, NULL);
    free(txt);
    const char *s = json_string_value(json_object_get(json_object_get(j, "decision"), "rule"));
    snprintf(rule, size, "%s", s ? s : "");
    json_decref(j);
}

/* 403 for an order the rules denied, new or replayed: the rule, never counts. */
static int reply_denied(ph_req *r, const ph_order *o, int replayed)
{
    char rule[PH_RISK_ID_MAX + 16];
    order_risk *x = risk_of(r);
    if (!replayed && x && x->in.rule)
        snprintf(rule, sizeof rule, "%s", x->in.rule);
    else
        denied_rule(r, o->id, rule, sizeof rule);
    if (replayed)
        r->replay_header = "true";
    ph_log(r->env->log, PH_LOG_INFO, r->reqid, "order.denied", "order=%llu sku=%s rule=%s",
           (unsigned long long)o->id, o->sku, rule);
    ph_req_error(r, 403, "denied_by_risk", "order %llu: refused by risk rule %s",
                 (unsigned long long)o->id, rule);
    json_object_set_new(r->resp, "rule", json_string(rule));
    json_object_set_new(r->resp, "order_id", json_integer((json_int_t)o->id));
    return PH_REQ_DONE;
}

static int is_denied(const ph_order *o)
{
    return o->state == PH_ORDER_FAILED && !strcmp(o->reason, "denied_by_risk");
}

/* The request's defining fields; a replay must match them exactly. A recharge
 * account is a person's phone number: it goes into the fingerprint through the
 * keyed index hash, never a plain SHA-256 that a table of numbers would undo. */
static void order_fingerprint(ph_req *r, const ph_product_conf *p, uint32_t quantity, int grant,
                              uint8_t out[32])
{
    char buf[PH_SKU_MAX + PH_ACCOUNT_MAX + 32];
    if (grant) { /* the holder and expiry are the grant's, not the order's defining fields */
        int n = snprintf(buf, sizeof buf, "grant\n%s\n%u", p->sku, quantity);
        ph_crypto_sha256(r->env->keys, buf, (size_t)n, out);
        return;
    }
    if (p->delivery == PH_DELIVERY_RECHARGE || r->account[0]) {
        int n =
            snprintf(buf, sizeof buf, "%s\n%s\n%s",
                     p->delivery == PH_DELIVERY_BUNDLE ? "bundle" : "recharge", p->sku, r->account);
        ph_crypto_index(r->env->keys, buf, (size_t)n, out);
        ph_wipe(buf, sizeof buf);
        return;
    }
    int n = snprintf(buf, sizeof buf, "%s\n%s\n%u",
                     p->delivery == PH_DELIVERY_BUNDLE ? "bundle" : "card_code", p->sku, quantity);
    ph_crypto_sha256(r->env->keys, buf, (size_t)n, out);
}

/* The risk record of order o, parsed (NULL: none), for the reply to its
 * POST: a new order's is the one this request stored (x->record, no read); a
 * replay's is read (the stored one, whatever this request carried). */
static json_t *reply_record(ph_req *r, const ph_order *o, int replayed)
{
    order_risk *x = risk_of(r);
    if (!replayed)
        return x && x->record ? json_loads(x->record, 0, NULL) : NULL;
    char *txt = NULL;
    ph_err err = {0};
    if (ph_store_order_risk_get(r->env->store, o->id, &txt, &err) != PH_OK)
        return NULL; /* none, or unreadable: the reply goes without it, as GET's */
    json_t *rec = json_loads(txt, 0, NULL);
    free(txt);
    return rec;
}

/* Answers with the order's view, its masked end user included as GET shows
 * it: as text when ph_view_stock_order_text can write it (handed to the
 * response without a copy; an order without an end user, the hot path), else
 * as a tree. */
static int order_reply(ph_req *r, unsigned status, const ph_order *o, int replayed)
{
    json_t *rec = reply_record(r, o, replayed);
    size_t len = 0;
    char *txt = json_object_size(json_object_get(rec, "end_user"))
                    ? NULL
                    : ph_view_stock_order_text(o, r->cfg->cfg, r->env->keys, &len);
    if (txt) {
        json_decref(rec);
        return ph_req_text(r, status, txt, len, "application/json");
    }
    json_t *view = ph_view_order(o, r->cfg->cfg, r->env->keys, 1, 0);
    ph_view_end_user(view, rec);
    json_decref(rec);
    return ph_req_json(r, status, json_pack("{s:o}", "order", view));
}

/* A grant order (issue 16): 201 with the order and its grant, the token shown
 * this once; a replay 200 with the grant as stored, without the token. */
static int reply_grant_order(ph_req *r, const ph_order *o, int replayed)
{
    order_risk *x = risk_of(r);
    char *txt = NULL;
    ph_err err = {0};
    if (!replayed && r->cmd.record)
        txt = strdup(r->cmd.record);
    else if (ph_store_grant_get(r->env->store, o->id, &txt, &err) != PH_OK)
        return ph_req_fail(r, err.code ? err.code : PH_ENOMEM, &err);
    json_t *g = txt ? ph_grant_view(txt) : NULL;
    free(txt);
    if (!g)
        return ph_req_fail(r, PH_ENOMEM, NULL);
    int shown = !replayed && x && x->token[0];
    if (shown)
        json_object_set_new(g, "token", json_string(x->token));
    json_object_set_new(g, "token_shown", json_boolean(shown));
    if (x)
        ph_wipe(x->token, sizeof x->token);
    if (replayed)
        r->replay_header = "true";
    ph_log(r->env->log, PH_LOG_INFO, r->reqid, replayed ? "order.replayed" : "order.granted",
           "order=%llu sku=%s quantity=%u state=%s", (unsigned long long)o->id, o->sku, o->quantity,
           ph_order_state_name(o->state));
    json_t *view = ph_view_order(o, r->cfg->cfg, r->env->keys, 1, 0);
    json_t *rec = reply_record(r, o, replayed);
    ph_view_end_user(view, rec);
    json_decref(rec);
    if (o->delivery == PH_DELIVERY_BUNDLE) /* each component reserved: its state, no code yet */
        ph_bundle_view_components(r, view, o->id, 1, 0);
    return ph_req_json(r, replayed ? 200 : 201, json_pack("{s:o,s:o}", "order", view, "grant", g));
}

/* 201 for a new order that is final, 202 for one still with a supplier,
 * 200 (Idempotent-Replay) for a replay whatever its state. */
static int reply_new_order(ph_req *r, const ph_order *o, int replayed)
{
    if (is_denied(o))
        return reply_denied(r, o, replayed);
    order_risk *x = risk_of(r);
    if (x && x->is_grant)
        return reply_grant_order(r, o, replayed);
    int final = ph_order_state_final(o->state);
    if (replayed)
        r->replay_header = "true";
    ph_log(r->env->log, PH_LOG_INFO, r->reqid, replayed ? "order.replayed" : "order.created",
           "order=%llu sku=%s quantity=%u state=%s", (unsigned long long)o->id, o->sku, o->quantity,
           ph_order_state_name(o->state));
    return order_reply(r, replayed ? 200 : final ? 201 : 202, o, replayed);
}

/* The wait is over (final state, deadline or shutdown): answer with the order
 * as it is now. */
static int order_waited(ph_req *r)
{
    ph_order *o;
    ph_err err = {0};
    int rc = ph_store_order_get(r->env->store, r->order_id, 1, &o, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    rc = reply_new_order(r, o, r->replay_header != NULL);
    ph_order_free(o);
    return rc;
}

static void wake(void *arg)
{
    ph_req_wake(arg);
}

/* Answers now, or suspends until the order is final or wait_s has passed. */
static int reply_or_wait(ph_req *r, const ph_order *o, int replayed)
{
    int final = ph_order_state_final(o->state);
    /* a held order waits for ops, a granted one for its holder: answered now */
    if (final || !r->wait_s || o->state == PH_ORDER_HELD || o->state == PH_ORDER_GRANTED)
        return reply_new_order(r, o, replayed);
    r->order_id = o->id;
    if (replayed)
        r->replay_header = "true";
    ph_req_suspend(r, order_waited);
    ph_fulfil_wait(r->env->fulfil, o->id, ph_now_ms() + (int64_t)r->wait_s * 1000, wake, r);
    return PH_REQ_SUSPENDED;
}

static int supply_created(ph_req *r)
{
    risk_done(r);
    if (r->cmd.rc != PH_OK)
        return ph_req_fail(r, r->cmd.rc, &r->cmd.err);
    const ph_order *o = r->cmd.order;
    if (!r->cmd.replayed && o->state == PH_ORDER_PROCESSING) {
        ph_err err = {0};
        int rc = ph_fulfil_begin(r->env->fulfil, o, r->account[0] ? r->account : NULL, &err);
        if (rc)
            return ph_req_fail(r, rc, &err);
    }
    ph_wipe(r->account, sizeof r->account);
    return reply_or_wait(r, o, r->cmd.replayed);
}

static int order_exists(ph_req *r)
{
    ph_order *o = NULL;
    ph_err err = {0};
    int found =
        ph_store_order_find(r->env->store, r->client->name, r->arg[0], 0, &o, &err) == PH_OK;
    ph_order_free(o);
    return found;
}

/* 1 when p is delisted (by sync or ops), with r->cmd's error saying so as an
 * order of it would be refused (store_listed_delivery). */
static int delisted(ph_req *r, const ph_product_conf *p)
{
    char *json = NULL;
    uint64_t avail;
    ph_err err = {0};
    if (ph_store_product_get(r->env->store, p->sku, &json, &avail, &err) != PH_OK)
        return 0;
    json_t *j = json_loads(json, 0, NULL);
    free(json);
    const char *why = j ? ph_product_delisted_why(j) : NULL;
    if (why)
        r->cmd.rc = ph_err_set(&r->cmd.err, PH_ESKU, "sku: '%s' is delisted (%s)", p->sku, why);
    json_decref(j);
    return why != NULL;
}

/* Hands the order to the best supplier offer: stored first (the attempt is
 * SENDING before anything leaves), sent by fulfil once durable. */
static int supply_submit(ph_req *r, const ph_product_conf *p)
{
    ph_attempt_target t = {0};
    /* a replay must get its order back even when no supplier could take a new
     * one: only then is the id looked up (the store answers replays itself) */
    order_risk *x = risk_of(r);
    int grant = x && x->is_grant;
    /* a held, denied or granted order goes to no supplier now: none is needed */
    if (!grant && ph_fulfil_route(r->env->fulfil, r->cfg->cfg, p, &t) != PH_OK &&
        !(x && x->in.verdict) && !order_exists(r)) {
        if (p->delivery == PH_DELIVERY_CARD_CODE) /* the stock's own answer, naming the sku */
            return ph_req_fail(r, r->cmd.rc, &r->cmd.err);
        if (delisted(r, p)) /* the store's answer, naming the sku and why */
            return ph_req_fail(r, r->cmd.rc, &r->cmd.err);
        return ph_req_error(r, 503, "no_supplier_available",
                            "sku: no enabled, healthy supplier offers this product now");
    }
    uint8_t fp[32];
    memcpy(fp, r->cmd.in.order.fingerprint, sizeof fp);
    uint32_t qty = r->cmd.in.order.quantity;
    ph_cmd_clear(&r->cmd);
    memset(&r->cmd, 0, sizeof r->cmd);
    r->cmd.type = PH_CMD_SUPPLY_CREATE;
    r->cmd.now = ph_now_ms();
    r->cmd.in.supply.client = r->client->name;
    r->cmd.in.supply.client_order_id = r->arg[0];
    r->cmd.in.supply.sku = r->arg[1];
    r->cmd.in.supply.quantity = qty;
    memcpy(r->cmd.in.supply.fingerprint, fp, sizeof fp);
    r->cmd.in.supply.delivery = p->delivery;
    r->cmd.in.supply.first = t;
    r->cmd.in.supply.fail_reason = t.supplier ? NULL : "no_supplier_available";
    r->cmd.in.supply.risk = x && (x->in.record || x->in.verdict) ? &x->in : NULL;
    if (grant) {
        r->cmd.in.supply.grant = &x->grant;
        r->cmd.in.supply.first = (ph_attempt_target){0};
        r->cmd.in.supply.fail_reason = NULL; /* routed when it is claimed */
    } else if (p->delivery == PH_DELIVERY_RECHARGE) {
        if (ph_fulfil_seal_account(r->env->fulfil, r->account, r->account_sealed,
                                   &r->account_sealed_len, r->account_masked) != PH_OK)
            return ph_req_fail(r, PH_ECRYPTO, NULL);
        r->cmd.in.supply.account_sealed = r->account_sealed;
        r->cmd.in.supply.account_sealed_len = r->account_sealed_len;
        r->cmd.in.supply.account_masked = r->account_masked;
    }
    return ph_req_submit(r, supply_created);
}

/* Local stock first; when it is short, a supplier. */
static int stock_ordered(ph_req *r)
{
    const ph_product_conf *p = ph_config_product(r->cfg->cfg, r->arg[1]);
    if (r->cmd.rc == PH_ENOSTOCK && p && p->noffers)
        return supply_submit(r, p); /* the same check counts for the supplier's order */
    risk_done(r);
    if (r->cmd.rc != PH_OK)
        return ph_req_fail(r, r->cmd.rc, &r->cmd.err);
    return reply_or_wait(r, r->cmd.order, r->cmd.replayed);
}

static int bad(ph_req *r, unsigned status, const char *code, const char *msg)
{
    ph_req_error(r, status, code, "%s", msg);
    return -1;
}

/* The fields POST /v1/orders takes (ph_req_body_fields refuses any other). */
#define ORDER_FIELDS "client_order_id sku quantity account wait end_user deliver grant"

/* account (recharge only) and wait; r->account / r->wait_s. */
static int supply_fields(ph_req *r, json_t *b, const ph_product_conf *p, json_int_t qty)
{
    json_t *acc = json_object_get(b, "account"), *w = json_object_get(b, "wait");
    if (w && (!json_is_integer(w) || json_integer_value(w) < 0))
        return bad(r, 400, "invalid_request", "wait: expected seconds, 0 or more");
    json_int_t ws = w ? json_integer_value(w) : 0;
    if (ws > (json_int_t)r->cfg->cfg->max_order_wait_s)
        return ph_req_error(r, 422, "limit_exceeded", "wait: over the maximum of %u seconds",
                            r->cfg->cfg->max_order_wait_s),
               -1;
    r->wait_s = (unsigned)ws;
    if (p->delivery == PH_DELIVERY_CARD_CODE ||
        (p->delivery == PH_DELIVERY_BUNDLE && !ph_bundle_needs_account(r->cfg->cfg, p))) {
        if (acc)
            return bad(r, 400, "invalid_request",
                       "account: only for recharge products (and bundles with one)");
        return 0;
    }
    const char *deliver = json_string_value(json_object_get(b, "deliver"));
    if (deliver && !strcmp(deliver, "grant")) { /* the account comes with the claim */
        if (acc)
            return bad(r, 400, "invalid_request",
                       "account: a granted recharge is given its account when claimed");
        if (qty != 1)
            return bad(r, 400, "invalid_request", "quantity: a recharge is one unit");
        return 0;
    }
    const char *a = json_string_value(acc);
    if (!a)
        return bad(r, 400, "invalid_request", "account: required for a recharge product");
    if (!ph_ident_valid(a, PH_ACCOUNT_MAX) || strlen(a) < 3)
        return bad(r, 400, "invalid_request",
                   "account: expected 3-64 characters [A-Za-z0-9._:-] (a phone number, a user id)");
    if (qty != 1)
        return bad(r, 400, "invalid_request", "quantity: a recharge is one unit");
    snprintf(r->account, sizeof r->account, "%s", a);
    return 0;
}

/* Reads and checks the body's fields into r->arg / *qty; sets a 4xx on failure. */
static int order_fields(ph_req *r, json_t *b, uint32_t *qty, const ph_product_conf **prod)
{
    const char *coid = json_string_value(json_object_get(b, "client_order_id"));
    const char *sku = json_string_value(json_object_get(b, "sku"));
    json_t *q = json_object_get(b, "quantity");
    if (!ph_ident_valid(coid, PH_ORDER_ID_MAX))
        return bad(r, 400, "invalid_request",
                   "client_order_id: expected a string of 1-128 characters [A-Za-z0-9._:-]");
    if (!ph_ident_valid(sku, PH_SKU_MAX))
        return bad(r, 400, "invalid_request", "sku: expected a product SKU string");
    if (q && !json_is_integer(q))
        return bad(r, 400, "invalid_request", "quantity: expected an integer");
    json_int_t n = q ? json_integer_value(q) : 1;
    if (n < 1)
        return bad(r, 400, "invalid_request", "quantity: must be at least 1");
    if (n > (json_int_t)r->cfg->cfg->max_order_quantity)
        return ph_req_error(r, 422, "limit_exceeded", "quantity: over the maximum of %u",
                            r->cfg->cfg->max_order_quantity),
               -1;
    const ph_product_conf *p = ph_config_product(r->cfg->cfg, sku);
    if (!p)
        return bad(r, 422, "unknown_sku", "sku: no such product in the catalog");
    if (supply_fields(r, b, p, n))
        return -1;
    snprintf(r->arg[0], sizeof r->arg[0], "%s", coid);
    snprintf(r->arg[1], sizeof r->arg[1], "%s", sku);
    *qty = (uint32_t)n;
    *prod = p;
    return 0;
}

/* end_user read (400 naming the member, nothing placed); r->ext gets the
 * order's risk state when there is an end user or an engine to ask. */
static int risk_intake(ph_req *r, json_t *b)
{
    ph_end_user eu;
    char msg[PH_EU_MSG_MAX];
    if (ph_end_user_parse(json_object_get(b, "end_user"), &eu, msg) != PH_OK)
        return bad(r, 400, "invalid_request", msg);
    if (!eu.given && !r->env->risk)
        return 0;
    order_risk *x = calloc(1, sizeof *x);
    if (!x) {
        ph_end_user_wipe(&eu);
        return ph_req_fail(r, PH_ENOMEM, NULL), -1;
    }
    x->eu = eu;
    ph_end_user_wipe(&eu);
    r->ext = x;
    r->ext_free = risk_free;
    return 0;
}

/* "deliver" and "grant" (issue 16): a grant needs an end user with an id
 * (its holder) and one of expires_at (RFC 3339) or ttl_s, within
 * grants.min_ttl_s .. 3 years. 400 naming the field, nothing placed. */
static int grant_intake(ph_req *r, json_t *b)
{
    json_t *dv = json_object_get(b, "deliver"), *gv = json_object_get(b, "grant");
    const char *deliver = json_string_value(dv);
    if (dv && (!deliver || (strcmp(deliver, "grant") && strcmp(deliver, "goods"))))
        return bad(r, 400, "invalid_request", "deliver: expected \"goods\" or \"grant\"");
    if (!deliver || strcmp(deliver, "grant"))
        return gv ? bad(r, 400, "invalid_request", "grant: only with \"deliver\": \"grant\"") : 0;
    order_risk *x = risk_of(r);
    if (!x || !x->eu.given || !x->eu.id[0])
        return bad(r, 400, "invalid_request", "end_user.id: a grant needs its holder");
    if (!json_is_object(gv))
        return bad(r, 400, "invalid_request", "grant: expected an object with expires_at or ttl_s");
    json_t *at = json_object_get(gv, "expires_at"), *ttl = json_object_get(gv, "ttl_s");
    const char *k;
    json_t *v;
    size_t pos = 0;
    json_object_foreach(gv, k, v)
    {
        pos++;
        if (strcmp(k, "expires_at") && strcmp(k, "ttl_s")) {
            ph_req_error(r, 400, "invalid_request",
                         "grant: member %zu is unknown (expected expires_at or ttl_s)", pos);
            return -1;
        }
    }
    int64_t now = ph_now_ms(), ms = 0;
    if ((at != NULL) == (ttl != NULL))
        return bad(r, 400, "invalid_request", "grant: expected one of expires_at and ttl_s");
    if (ttl) {
        json_int_t s = json_is_integer(ttl) ? json_integer_value(ttl) : -1;
        if (s < 1 || s > PH_GRANT_TTL_MAX_MS / 1000)
            return bad(r, 400, "invalid_request", "grant.ttl_s: expected seconds, up to 3 years");
        ms = now + (int64_t)s * 1000;
    } else {
        const char *t = json_string_value(at);
        if (!t || !strchr(t, 'T') || ph_time_parse(t, strlen(t), &ms))
            return bad(r, 400, "invalid_request",
                       "grant.expires_at: expected an RFC 3339 time (2027-01-31T23:59:59+08:00)");
    }
    int64_t min = (int64_t)r->cfg->cfg->grant_min_ttl_s * 1000;
    if (ms - now < min || ms - now > PH_GRANT_TTL_MAX_MS) {
        ph_req_error(r, 400, "invalid_request",
                     "grant: expires %u seconds to 3 years from now, not sooner or later",
                     r->cfg->cfg->grant_min_ttl_s);
        return -1;
    }
    x->is_grant = 1;
    x->grant.expires_at = ms;
    int rc = ph_grant_holder_of(&x->eu, r->env->keys, &x->grant.holder, x->masked, x->tags,
                                sizeof x->tags);
    if (rc == PH_OK)
        rc = ph_grant_token_new(r->env->keys, x->token, x->grant.token_hash);
    if (rc)
        return ph_req_fail(r, rc, NULL), -1;
    return 0;
}

/* A bundle's command completed (api_bundles.c): its risk count settles as
 * any order's; a denied bundle and a bundle grant (its token shown once) are
 * answered here like any order, anything else by the bundle's own answer. */
static int bundle_after(ph_req *r)
{
    risk_done(r);
    order_risk *x = risk_of(r);
    const ph_order *o = r->cmd.order;
    if (r->cmd.rc != PH_OK || !o || !(is_denied(o) || (x && x->is_grant)))
        return -1;
    return reply_new_order(r, o, r->cmd.replayed);
}

/* Decides (risk.h) and writes the order's risk input just before the first
 * submission; the plaintext is wiped here. -1 with the response set. */
static int risk_decide(ph_req *r, const ph_product_conf *p, uint32_t qty)
{
    order_risk *x = risk_of(r);
    if (!x)
        return 0;
    int in_force = 0;
    /* with an end user the engine is asked anyway (one lock per order): only
     * an order without one asks first whether anything is in force */
    if (r->env->risk && !x->eu.given) {
        ph_risk_stats st;
        ph_risk_stats_get(r->env->risk, &st);
        in_force = st.rules || st.entries;
    }
    if (!x->eu.given && !in_force) { /* nothing to decide, nothing to record: no cost */
        r->ext_free = NULL;
        risk_free(x);
        r->ext = NULL;
        return 0;
    }
    int64_t amount = 0, now = r->cmd.now;
    if (__builtin_mul_overflow(p->face_value, (int64_t)qty, &amount))
        amount = INT64_MAX;
    ph_end_user_subject(&x->eu, r->env->keys, r->client->name,
                        p->delivery == PH_DELIVERY_RECHARGE ? r->account : NULL, p->sku, p->brand,
                        amount, now, &x->subject);
    x->decision.action = PH_RISK_ALLOW;
    if (r->env->risk) {
        ph_risk_check(r->env->risk, &x->subject, &x->decision);
        x->engine = r->env->risk;
    }
    if (x->decision.action == PH_RISK_DENY)
        x->in.verdict = PH_VERDICT_DENY;
    else if (x->decision.action == PH_RISK_REVIEW) {
        x->in.verdict = PH_VERDICT_HOLD;
        x->in.hold_until = now + (int64_t)r->cfg->cfg->risk_review_timeout_s * 1000;
    }
    x->in.rule = x->decision.rule[0] ? x->decision.rule : NULL;
    int rc = PH_OK;
    if (x->eu.given || in_force) {
        if ((rc = ph_end_user_seal_phone(&x->eu, r->env->keys)) == PH_OK &&
            !(x->record = ph_end_user_record(&x->eu, &x->subject, &x->decision, &x->in.record_len)))
            rc = PH_ENOMEM;
        x->in.record = x->record;
    }
    ph_end_user_wipe(&x->eu);
    if (rc)
        return ph_req_fail(r, rc, NULL), -1;
    return 0;
}

int ph_api_order_create(ph_req *r)
{
    json_t *b;
    uint32_t qty;
    const ph_product_conf *p = NULL;
    if (ph_req_body_fields(r, ORDER_FIELDS, &b))
        return PH_REQ_DONE;
    int bad_fields = order_fields(r, b, &qty, &p) || risk_intake(r, b) || grant_intake(r, b);
    json_decref(b);
    if (bad_fields)
        return PH_REQ_DONE;
    r->cmd.type = PH_CMD_ORDER;
    r->cmd.now = ph_now_ms();
    r->cmd.in.order.client = r->client->name;
    r->cmd.in.order.client_order_id = r->arg[0];
    r->cmd.in.order.sku = r->arg[1];
    r->cmd.in.order.quantity = qty;
    order_risk *x = risk_of(r);
    order_fingerprint(r, p, qty, x && x->is_grant, r->cmd.in.order.fingerprint);
    if (risk_decide(r, p, qty))
        return PH_REQ_DONE;
    x = risk_of(r);
    r->cmd.in.order.risk = x && (x->in.record || x->in.verdict) ? &x->in : NULL;
    r->cmd.in.order.grant = x && x->is_grant ? &x->grant : NULL;
    if (p->delivery == PH_DELIVERY_BUNDLE) /* held, denied and granted like any order */
        return ph_api_bundle_submit(r, p, qty, r->cmd.in.order.risk, r->cmd.in.order.grant,
                                    bundle_after);
    if (p->delivery == PH_DELIVERY_RECHARGE)
        return supply_submit(r, p);
    return ph_req_submit(r, stock_ordered);
}

/* The order's end user, masked, for its owner and ops; the decision (and its
 * review) for ops only. Nothing when the order has no risk record. */
static void view_risk(ph_req *r, json_t *view, uint64_t id, int ops)
{
    char *txt = NULL;
    ph_err err = {0};
    if (!view || ph_store_order_risk_get(r->env->store, id, &txt, &err) != PH_OK)
        return;
    json_t *rec = json_loads(txt, 0, NULL);
    free(txt);
    ph_view_end_user(view, rec);
    if (ops) {
        json_t *risk = json_pack("{s:O?,s:O?}", "decision", json_object_get(rec, "decision"),
                                 "review", json_object_get(rec, "review"));
        json_object_set_new(view, "risk", risk);
    }
    json_decref(rec);
}

/* An order the caller may see: its owner sees the codes, ops sees the cost.
 * Anyone else gets the same 404 as for an order that does not exist. */
static int reply_order(ph_req *r, ph_order *o)
{
    int owner = strcmp(o->client, r->client->name) == 0;
    int ops = ph_req_has_scope(r, PH_SCOPE_OPS);
    if (!owner && !ops) {
        ph_order_free(o);
        return ph_req_error(r, 404, "not_found", "order: not found");
    }
    json_t *j = ph_view_order(o, r->cfg->cfg, r->env->keys, owner, ops);
    view_risk(r, j, o->id, ops);
    if (o->delivery == PH_DELIVERY_BUNDLE)
        ph_bundle_view_components(r, j, o->id, owner, ops);
    ph_order_free(o);
    return ph_req_json(r, 200, json_pack("{s:o}", "order", j));
}

int ph_api_order_get(ph_req *r)
{
    uint64_t id;
    ph_order *o;
    ph_err err = {0};
    if (ph_u64_parse(r->seg[0], &id))
        return ph_req_error(r, 400, "invalid_request", "order id: expected a number");
    int rc = ph_store_order_get(r->env->store, id, 1, &o, &err);
    if (rc == PH_ENOTFOUND)
        return ph_req_error(r, 404, "not_found", "order: not found");
    if (rc)
        return ph_req_fail(r, rc, &err);
    return reply_order(r, o);
}

/* The filters of GET /v1/orders (state, client, sku, since); zero/NULL = any. */
typedef struct order_filter {
    int state; /* PH_ORDER_* */
    const char *client, *sku;
    int64_t since; /* created at or after, ms */
} order_filter;

static int order_matches(const ph_order *o, const order_filter *f)
{
    return (!f->state || o->state == f->state) && (!f->client || !strcmp(o->client, f->client)) &&
           (!f->sku || !strcmp(o->sku, f->sku)) && o->created_at >= f->since;
}

/* Reads the filters; refuses what cannot match anything by mistake. A client
 * without ops scope lists only its own orders: naming another is refused. */
static int parse_filter(ph_req *r, order_filter *f)
{
    const char *st = ph_req_query(r, "state"), *since = ph_req_query(r, "since");
    memset(f, 0, sizeof *f);
    f->client = ph_req_query(r, "client");
    f->sku = ph_req_query(r, "sku");
    for (int i = PH_ORDER_PROCESSING; st && i <= PH_ORDER_PARTIAL && !f->state; i++)
        if (!strcmp(st, ph_order_state_name(i)))
            f->state = i;
    if (st && !f->state)
        return ph_req_error(r, 400, "invalid_request",
                            "state: expected processing, succeeded, failed, unknown, held, "
                            "granted or partial"),
               -1;
    if (f->client && !ph_ident_valid(f->client, PH_SKU_MAX))
        return ph_req_error(r, 400, "invalid_request", "client: expected a client name"), -1;
    if (f->sku && !ph_ident_valid(f->sku, PH_SKU_MAX))
        return ph_req_error(r, 400, "invalid_request", "sku: expected a SKU"), -1;
    /* a date alone would read as the end of that day (ph_time_parse): refused */
    if (since && (!strchr(since, 'T') || ph_time_parse(since, strlen(since), &f->since)))
        return ph_req_error(r, 400, "invalid_request",
                            "since: expected an RFC 3339 time (2026-12-06T00:00:00+08:00)"),
               -1;
    if (!ph_req_has_scope(r, PH_SCOPE_OPS)) {
        if (f->client && strcmp(f->client, r->client->name))
            return ph_req_error(r, 403, "forbidden",
                                "client: only an ops token lists another client's orders"),
                   -1;
        f->client = r->client->name;
    }
    return 0;
}

/* Orders read per step, and at most per request when filters skip most: a
 * page then ends early, its next_after the last order looked at, so a request
 * costs a bounded read whatever the filters (the client pages on). */
#define LIST_STEP     256
#define LIST_SCAN_MAX 20000

typedef int (*order_source_fn)(ph_store *s, const char *client, uint64_t after, size_t limit,
                               ph_order ***out, size_t *n, ph_err *err);

/* One client's order by its client order id: its own, or for ops any client's
 * (client=NAME&client_order_id=ID, how ops find a mall's order). */
static int find_by_client_order_id(ph_req *r, const char *coid)
{
    ph_err err = {0};
    const char *client = ph_req_query(r, "client");
    if (!client || !ph_req_has_scope(r, PH_SCOPE_OPS))
        client = client && strcmp(client, r->client->name) ? NULL : r->client->name;
    if (!client)
        return ph_req_error(r, 403, "forbidden",
                            "client: only an ops token finds another client's orders");
    ph_order *o;
    int rc = ph_store_order_find(r->env->store, client, coid, 1, &o, &err);
    if (rc == PH_ENOTFOUND)
        return ph_req_error(r, 404, "not_found", "client_order_id: no such order");
    return rc ? ph_req_fail(r, rc, &err) : reply_order(r, o);
}

int ph_api_order_list(ph_req *r)
{
    ph_err err = {0};
    const char *coid = ph_req_query(r, "client_order_id");
    if (coid)
        return find_by_client_order_id(r, coid);
    uint64_t after = 0, limit = 100;
    order_filter f;
    if (ph_req_page(r, &after, &limit, 1000) || parse_filter(r, &f))
        return PH_REQ_DONE;
    const char *stuck = ph_req_query(r, "stuck"), *comp = ph_req_query(r, "components");
    if (stuck && strcmp(stuck, "true"))
        return ph_req_error(r, 400, "invalid_request", "stuck: expected true");
    if (comp && strcmp(comp, "true"))
        return ph_req_error(r, 400, "invalid_request", "components: expected true");
    int ops = ph_req_has_scope(r, PH_SCOPE_OPS);
    order_source_fn source = stuck ? ph_store_stuck_list : ph_store_order_list;
    json_t *arr = json_array();
    size_t shown = 0, scanned = 0;
    uint64_t cursor = after, last_shown = 0;
    int more = 0, end = 0;
    /* one match more than asked tells whether another page exists */
    while (!end && !more && scanned < LIST_SCAN_MAX) {
        ph_order **list;
        size_t n;
        int rc = source(r->env->store, f.client, cursor, LIST_STEP, &list, &n, &err);
        if (rc) {
            json_decref(arr);
            return ph_req_fail(r, rc, &err);
        }
        end = n < LIST_STEP;
        for (size_t i = 0; i < n && !more; i++) {
            scanned++;
            cursor = list[i]->id;
            /* a bundle's component orders show in its view, and here only when asked */
            if (!order_matches(list[i], &f) || (!comp && ph_order_component_of(list[i], NULL)))
                continue;
            if (shown == limit) {
                more = 1;
                break;
            }
            json_array_append_new(arr, ph_view_order(list[i], r->cfg->cfg, r->env->keys, 0, ops));
            last_shown = list[i]->id;
            shown++;
        }
        ph_order_list_free(list, n);
    }
    json_t *next = more   ? json_integer((json_int_t)last_shown)
                   : !end ? json_integer((json_int_t)cursor) /* the scan budget ran out */
                          : json_null();
    return ph_req_json(r, 200, json_pack("{s:o,s:o}", "orders", arr, "next_after", next));
}
