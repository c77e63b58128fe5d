/*
 * api_grants.c — grants (issue 16): POST /v1/grants/claim, POST
 * /v1/grants/{id}/gift, POST /v1/grants/{id}/extend (ops, audited),
 * GET /v1/grants/{id}, GET /v1/grants; and what the order handler shares
 * about tokens, holders and the grant's view (grants.h).
 *
 * The writer decides every transition (store_grant.c): two claims racing on
 * one token are serialized there, the second finds the grant claimed (409
 * already_claimed, or the first answer again when it carries the same
 * request_id). A claim of a recharge is routed here like a review release
 * (ph_fulfil_route, then ph_fulfil_begin once the attempt is durable).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "codes/csv.h"
#include "crypto/wipe_alloc.h"
#include "http/api.h"
#include "http/bundles.h"
#include "http/grants.h"
#include "http/views.h"
#include "risk/risk.h"
#include "supply/fulfil.h"

/* ---- tokens, keys, holders, the view (grants.h) ------------------------------- */

static void base64url(const uint8_t *b, size_t n, char *out)
{
    size_t len = ph_base64_encode(b, n, out);
    while (len && out[len - 1] == '=')
        out[--len] = 0;
    for (size_t i = 0; i < len; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
}

int ph_grant_token_new(const ph_keyring *kr, char out[PH_GRANT_TOKEN_LEN + 1], uint8_t hash[32])
{
    uint8_t raw[32];
    char b64[64];
    if (ph_random_bytes(raw, sizeof raw) != PH_OK) {
        memset(out, 0, PH_GRANT_TOKEN_LEN + 1);
        memset(hash, 0, 32);
        return PH_ECRYPTO;
    }
    base64url(raw, sizeof raw, b64);
    snprintf(out, PH_GRANT_TOKEN_LEN + 1, "pg_%.43s", b64);
    ph_crypto_index(kr, out, strlen(out), hash);
    ph_wipe(raw, sizeof raw);
    ph_wipe(b64, sizeof b64);
    return PH_OK;
}

int ph_grant_token_hash(const ph_keyring *kr, const char *token, uint8_t hash[32])
{
    if (!token || strlen(token) != PH_GRANT_TOKEN_LEN || strncmp(token, "pg_", 3))
        return PH_EINVAL;
    for (const char *p = token + 3; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            return PH_EINVAL;
    ph_crypto_index(kr, token, PH_GRANT_TOKEN_LEN, hash);
    return PH_OK;
}

void ph_grant_request_key(const ph_keyring *kr, const char *client, const char *request_id,
                          uint8_t key[32])
{
    memset(key, 0, 32);
    if (!request_id)
        return;
    char buf[PH_SKU_MAX + PH_ORDER_ID_MAX + 16];
    int n = snprintf(buf, sizeof buf, "grant-request\n%s\n%s", client, request_id);
    ph_crypto_index(kr, buf, (size_t)n, key);
}

int ph_grant_holder_of(const ph_end_user *eu, const ph_keyring *kr, ph_grant_holder *h,
                       char masked[PH_GRANT_HOLDER_MASKED], char *tags, size_t size)
{
    h->key = ph_risk_key(kr, PH_RISK_USER, eu->id, strlen(eu->id));
    snprintf(masked, PH_GRANT_HOLDER_MASKED, "%s", eu->id_m);
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < eu->ntags; i++)
        json_array_append_new(arr, json_string(eu->tags[i]));
    char *txt = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    int rc = !txt ? PH_ENOMEM : strlen(txt) >= size ? PH_ELIMIT : PH_OK;
    if (rc == PH_OK)
        snprintf(tags, size, "%s", txt);
    ph_json_free(txt);
    h->masked = masked;
    h->tags = tags;
    return rc;
}

static void view_ms(json_t *view, const char *key, const json_t *ms)
{
    if (json_is_integer(ms))
        ph_view_time(view, key, (int64_t)json_integer_value(ms));
}

json_t *ph_grant_view(const char *record)
{
    json_t *rec = json_loads(record, 0, NULL);
    if (!json_is_object(rec)) {
        json_decref(rec);
        return NULL;
    }
    json_t *v = json_pack("{s:O,s:O,s:O,s:O,s:O,s:O}", "id", json_object_get(rec, "id"), "order_id",
                          json_object_get(rec, "id"), "client", json_object_get(rec, "client"),
                          "sku", json_object_get(rec, "sku"), "quantity",
                          json_object_get(rec, "quantity"), "state", json_object_get(rec, "state"));
    if (!v) {
        json_decref(rec);
        return NULL;
    }
    view_ms(v, "created_at", json_object_get(rec, "created_at"));
    view_ms(v, "expires_at", json_object_get(rec, "expires_at"));
    view_ms(v, "claimed_at", json_object_get(rec, "claimed_at"));
    view_ms(v, "expired_at", json_object_get(rec, "expired_at"));
    json_object_set(v, "holder", json_object_get(json_object_get(rec, "holder"), "masked"));
    json_object_set(v, "tags", json_object_get(rec, "tags"));
    if (json_object_get(rec, "batch"))
        json_object_set(v, "batch", json_object_get(rec, "batch"));
    json_t *gifts = json_array(), *g;
    size_t i;
    json_array_foreach(json_object_get(rec, "gifts"), i, g)
    {
        json_t *x = json_pack("{s:O,s:O}", "from", json_object_get(g, "from"), "to",
                              json_object_get(g, "to"));
        view_ms(x, "at", json_object_get(g, "at"));
        json_array_append_new(gifts, x);
    }
    json_object_set_new(v, "gifted", json_integer((json_int_t)json_array_size(gifts)));
    json_object_set_new(v, "gifts", gifts);
    json_t *ext = json_array(), *e;
    json_array_foreach(json_object_get(rec, "extended"), i, e)
    {
        json_t *x = json_pack("{s:O}", "by", json_object_get(e, "by"));
        view_ms(x, "at", json_object_get(e, "at"));
        view_ms(x, "from", json_object_get(e, "from"));
        view_ms(x, "to", json_object_get(e, "to"));
        json_array_append_new(ext, x);
    }
    json_object_set_new(v, "extended", ext);
    /* each claim given back when its supplier order failed for good (a
     * bundle's: every component, nothing delivered): when it was claimed,
     * when it came back, the attempt and the supplier's reason */
    json_t *rets = json_array(), *x;
    json_array_foreach(json_object_get(rec, "returns"), i, x)
    {
        json_t *y = json_pack("{s:O,s:O}", "attempt", json_object_get(x, "attempt"), "reason",
                              json_object_get(x, "reason"));
        view_ms(y, "claimed_at", json_object_get(x, "claimed_at"));
        view_ms(y, "at", json_object_get(x, "at"));
        /* a bundle's: the component order whose failure ended the claim */
        if (json_is_integer(json_object_get(x, "order_id")))
            json_object_set(y, "order_id", json_object_get(x, "order_id"));
        json_array_append_new(rets, y);
    }
    json_object_set_new(v, "returned", json_integer((json_int_t)json_array_size(rets)));
    json_object_set_new(v, "returns", rets);
    json_decref(rec);
    return v;
}

/* ---- the request's state across its suspension ------------------------------------- */

typedef struct grant_req {
    uint8_t token_hash[32], key[32], new_hash[32];
    char token[PH_GRANT_TOKEN_LEN + 1]; /* a gift's new token: shown once, wiped */
    char masked[PH_GRANT_HOLDER_MASKED];
    char tags[PH_GRANT_TAGS_MAX + 1];
    char request_id[PH_ORDER_ID_MAX + 1];
} grant_req;

static void grant_req_free(void *p)
{
    grant_req *g = p;
    ph_wipe(g, sizeof *g);
    free(g);
}

static grant_req *grant_req_new(ph_req *r)
{
    grant_req *g = calloc(1, sizeof *g);
    if (g) {
        r->ext = g;
        r->ext_free = grant_req_free;
    }
    return g;
}

/* request_id (optional) -> g->key; -1 with a 400 set. */
static int read_request_id(ph_req *r, json_t *b, grant_req *g)
{
    json_t *rv = json_object_get(b, "request_id");
    const char *rid = json_string_value(rv);
    if (rv && !ph_ident_valid(rid, PH_ORDER_ID_MAX))
        return ph_req_error(r, 400, "invalid_request",
                            "request_id: expected 1-128 characters [A-Za-z0-9._:-]"),
               -1;
    if (rid)
        snprintf(g->request_id, sizeof g->request_id, "%s", rid);
    ph_grant_request_key(r->env->keys, r->client->name, rid, g->key);
    return 0;
}

static int read_token(ph_req *r, json_t *b, grant_req *g)
{
    if (ph_grant_token_hash(r->env->keys, json_string_value(json_object_get(b, "token")),
                            g->token_hash) != PH_OK)
        return ph_req_error(r, 400, "invalid_request", "token: expected a grant token (pg_...)"),
               -1;
    return 0;
}

/* The answer to a refused transition: the writer's word as the API's. */
static int grant_refused(ph_req *r)
{
    const ph_cmd *c = &r->cmd;
    if (c->rc == PH_ENOTFOUND)
        return ph_req_error(r, 404, "not_found", "grant: not found");
    if (c->rc == PH_ECONFLICT && c->grant_state == PH_GRANT_CLAIMED)
        return ph_req_error(r, 409, "already_claimed", "%s", c->err.msg);
    if (c->rc == PH_ESTATE && c->grant_state == PH_GRANT_EXPIRED)
        return ph_req_error(r, 410, "grant_expired", "%s", c->err.msg);
    if (c->rc == PH_ESTATE)
        return ph_req_error(r, 409, "grant_held", "%s", c->err.msg);
    if (c->rc == PH_ENOSTOCK) /* a bundle none of whose units a supplier can take now */
        return ph_req_error(r, 503, "no_supplier_available", "%s", c->err.msg);
    return ph_req_fail(r, c->rc, &c->err);
}

/* A bundle grant's view lists its components (sku, quantity, order_id,
 * state; never a code): one grant, one token, several units. */
static void grant_components(ph_req *r, json_t *view)
{
    json_t *id = json_object_get(view, "id");
    json_t *c = json_is_integer(id)
                    ? ph_bundle_brief(r->env->store, (uint64_t)json_integer_value(id))
                    : NULL;
    if (c)
        json_object_set_new(view, "components", c);
}

/* {"grant": view, ...extra} */
static int reply_grant(ph_req *r, unsigned status, json_t *extra)
{
    json_t *view = r->cmd.record ? ph_grant_view(r->cmd.record) : NULL;
    if (view)
        grant_components(r, view);
    if (!view) {
        json_decref(extra);
        return ph_req_fail(r, PH_ENOMEM, NULL);
    }
    json_t *body = json_pack("{s:o}", "grant", view);
    if (extra) {
        json_object_update(body, extra);
        json_decref(extra);
    }
    if (r->cmd.replayed)
        r->replay_header = "true";
    return ph_req_json(r, status, body);
}

/* ---- POST /v1/grants/claim ---------------------------------------------------------- */

static int claimed(ph_req *r)
{
    grant_req *g = r->ext;
    if (r->cmd.rc != PH_OK) {
        ph_wipe(r->account, sizeof r->account);
        return grant_refused(r);
    }
    const ph_order *o = r->cmd.order;
    if (!r->cmd.replayed && o->delivery == PH_DELIVERY_BUNDLE) {
        uint64_t failed = 0; /* not begun: SENDING until the next start queries it */
        if (ph_bundle_begin(r->env->fulfil, r->env->store, o->id, &failed) != PH_OK)
            ph_log(r->env->log, PH_LOG_WARN, r->reqid, "bundle.begin_failed",
                   "order=%llu component=%llu", (unsigned long long)o->id,
                   (unsigned long long)failed);
    } else if (!r->cmd.replayed && o->state == PH_ORDER_PROCESSING) {
        ph_err err = {0};
        int rc = ph_fulfil_begin(r->env->fulfil, o, r->account[0] ? r->account : NULL, &err);
        if (rc) {
            ph_wipe(r->account, sizeof r->account);
            return ph_req_fail(r, rc, &err);
        }
    }
    ph_wipe(r->account, sizeof r->account);
    ph_log(r->env->log, PH_LOG_INFO, r->reqid, r->cmd.replayed ? "grant.replayed" : "grant.claimed",
           "grant=%llu state=%s", (unsigned long long)o->id, ph_order_state_name(o->state));
    (void)g;
    json_t *view = ph_view_order(o, r->cfg->cfg, r->env->keys, 1, 0);
    /* the order's masked end user (the one it was granted to), as GET
     * /v1/orders/{id} and the order's own replies show it */
    char *risk = NULL;
    ph_err rerr = {0};
    if (ph_store_order_risk_get(r->env->store, o->id, &risk, &rerr) == PH_OK) {
        json_t *rec = json_loads(risk, 0, NULL);
        free(risk);
        ph_view_end_user(view, rec);
        json_decref(rec);
    }
    if (o->delivery == PH_DELIVERY_BUNDLE) /* each component's codes or recharge */
        ph_bundle_view_components(r, view, o->id, 1, 0);
    return reply_grant(r, 200, json_pack("{s:o}", "order", view));
}

/* The claim's account, sealed onto the command; -1 with a 400 set. */
static int claim_account(ph_req *r, const char *acc)
{
    if (!acc || !ph_ident_valid(acc, PH_ACCOUNT_MAX) || strlen(acc) < 3)
        return ph_req_error(r, 400, "invalid_request",
                            "account: a recharge grant is claimed with an account (3-64 "
                            "characters [A-Za-z0-9._:-])"),
               -1;
    snprintf(r->account, sizeof r->account, "%s", acc);
    if (ph_fulfil_seal_account(r->env->fulfil, r->account, r->account_sealed,
                               &r->account_sealed_len, r->account_masked) != PH_OK)
        return ph_req_fail(r, PH_ECRYPTO, NULL), -1;
    r->cmd.in.grant.account_sealed = r->account_sealed;
    r->cmd.in.grant.account_sealed_len = r->account_sealed_len;
    r->cmd.in.grant.account_masked = r->account_masked;
    return 0;
}

/* A bundle grant's claim: each component that goes to a supplier (a
 * recharge, a card code bought upstream) is routed now, as a new bundle's
 * would be; none can take one now: 503 and the grant stays the holder's.
 * One account serves every recharge component. */
static int claim_route_bundle(ph_req *r, json_t *b, const ph_order *o)
{
    ph_order *comp[PH_BUNDLE_COMPONENTS_MAX];
    size_t n = 0;
    const char *acc = json_string_value(json_object_get(b, "account"));
    /* claimed (a replay?), held, expired: the writer answers */
    if (o->state != PH_ORDER_GRANTED ||
        ph_bundle_components(r->env->store, o->id, comp, &n) != PH_OK)
        return 0;
    int only[PH_BUNDLE_COMPONENTS_MAX] = {0}, recharge = 0;
    for (size_t j = 0; j < n; j++) {
        only[j] = ph_order_via_supplier(comp[j]) && comp[j]->state == PH_ORDER_GRANTED;
        recharge |= only[j] && comp[j]->delivery == PH_DELIVERY_RECHARGE;
        ph_order_free(comp[j]);
    }
    const ph_product_conf *p = ph_config_product(r->cfg->cfg, o->sku);
    if (p && p->delivery == PH_DELIVERY_BUNDLE && p->ncomponents == n) {
        int j = ph_bundle_route(r->env->fulfil, r->cfg->cfg, r->env->store, p, o->quantity, only, 0,
                                r->cmd.in.grant.targets);
        if (j >= 0)
            return ph_req_error(r, 503, "no_supplier_available",
                                "components[%d]: no supplier can deliver this grant now; claim "
                                "it later",
                                j),
                   -1;
        r->cmd.in.grant.ntargets = (uint32_t)n;
    }
    if (recharge)
        return claim_account(r, acc);
    if (acc)
        return ph_req_error(r, 400, "invalid_request", "account: only for grants with a recharge"),
               -1;
    return 0;
}

/* A supplier grant's claim is routed now, as a review release is: the
 * first attempt (or the reason none can take it) rides on the command. */
static int claim_route(ph_req *r, json_t *b, grant_req *g)
{
    uint64_t id;
    ph_order *o = NULL;
    ph_err err = {0};
    if (ph_store_grant_by_token(r->env->store, g->token_hash, &id, &err) != PH_OK ||
        ph_store_order_get(r->env->store, id, 0, &o, &err) != PH_OK)
        return 0; /* the writer answers for a token that names nothing */
    int rc = 0;
    if (strcmp(o->client, r->client->name)) { /* another's: the writer's 404, nothing said here */
        ph_order_free(o);
        return 0;
    }
    if (o->delivery == PH_DELIVERY_BUNDLE) {
        rc = claim_route_bundle(r, b, o);
    } else if (ph_order_via_supplier(o) && o->state == PH_ORDER_GRANTED) {
        const ph_product_conf *p = ph_config_product(r->cfg->cfg, o->sku);
        ph_attempt_target t = {0};
        /* no supplier now: the claim is refused and the grant stays the holder's */
        if (p && ph_fulfil_route(r->env->fulfil, r->cfg->cfg, p, &t) == PH_OK)
            r->cmd.in.grant.first = t;
        else
            rc = (ph_req_error(r, 503, "no_supplier_available",
                               "sku: no supplier can deliver this grant now; claim it later"),
                  -1);
        const char *acc = json_string_value(json_object_get(b, "account"));
        if (rc) {
            /* answered: no supplier */
        } else if (o->delivery == PH_DELIVERY_RECHARGE) {
            if (!acc || !ph_ident_valid(acc, PH_ACCOUNT_MAX) || strlen(acc) < 3)
                rc = (ph_req_error(r, 400, "invalid_request",
                                   "account: a recharge grant is claimed with an account (3-64 "
                                   "characters [A-Za-z0-9._:-])"),
                      -1);
            else {
                snprintf(r->account, sizeof r->account, "%s", acc);
                if (ph_fulfil_seal_account(r->env->fulfil, r->account, r->account_sealed,
                                           &r->account_sealed_len, r->account_masked) != PH_OK)
                    rc = (ph_req_fail(r, PH_ECRYPTO, NULL), -1);
                r->cmd.in.grant.account_sealed = r->account_sealed;
                r->cmd.in.grant.account_sealed_len = r->account_sealed_len;
                r->cmd.in.grant.account_masked = r->account_masked;
            }
        } else if (acc) {
            rc = (ph_req_error(r, 400, "invalid_request", "account: only for recharge grants"), -1);
        }
    } else if (json_object_get(b, "account") && !ph_order_via_supplier(o))
        rc = (ph_req_error(r, 400, "invalid_request", "account: only for recharge grants"), -1);
    ph_order_free(o);
    return rc;
}

int ph_api_grant_claim(ph_req *r)
{
    json_t *b;
    grant_req *g = grant_req_new(r);
    if (!g)
        return ph_req_fail(r, PH_ENOMEM, NULL);
    if (ph_req_body_fields(r, "token account request_id", &b))
        return PH_REQ_DONE;
    r->cmd.type = PH_CMD_GRANT;
    r->cmd.now = ph_now_ms();
    r->cmd.in.grant.op = PH_GRANT_CLAIM;
    r->cmd.in.grant.client = r->client->name;
    int bad = read_token(r, b, g) || read_request_id(r, b, g) || claim_route(r, b, g);
    json_decref(b);
    if (bad) {
        ph_wipe(r->account, sizeof r->account);
        return PH_REQ_DONE;
    }
    memcpy(r->cmd.in.grant.token_hash, g->token_hash, 32);
    memcpy(r->cmd.in.grant.key, g->key, 32);
    return ph_req_submit(r, claimed);
}

/* ---- POST /v1/grants/{id}/gift --------------------------------------------------------- */

static int gifted(ph_req *r)
{
    grant_req *g = r->ext;
    if (r->cmd.rc != PH_OK)
        return grant_refused(r);
    ph_log(r->env->log, PH_LOG_INFO, r->reqid, r->cmd.replayed ? "grant.replayed" : "grant.gifted",
           "grant=%llu", (unsigned long long)r->cmd.order->id);
    /* the new token once; a replay cannot show it again (it is not kept) */
    json_t *extra = r->cmd.replayed ? json_pack("{s:b}", "token_shown", 0)
                                    : json_pack("{s:s,s:b}", "token", g->token, "token_shown", 1);
    ph_wipe(g->token, sizeof g->token);
    return reply_grant(r, 200, extra);
}

int ph_api_grant_gift(ph_req *r)
{
    uint64_t id;
    json_t *b;
    ph_end_user eu;
    char msg[PH_EU_MSG_MAX];
    grant_req *g = grant_req_new(r);
    if (!g)
        return ph_req_fail(r, PH_ENOMEM, NULL);
    if (ph_u64_parse(r->seg[0], &id) || !id)
        return ph_req_error(r, 400, "invalid_request", "grant id: expected a number");
    if (ph_req_body_fields(r, "token to request_id", &b))
        return PH_REQ_DONE;
    int bad = read_token(r, b, g) || read_request_id(r, b, g);
    if (!bad && ph_end_user_parse(json_object_get(b, "to"), &eu, msg) != PH_OK)
        bad = (ph_req_error(r, 400, "invalid_request", "to: %s", msg), 1);
    else if (!bad && (!eu.given || !eu.id[0]))
        bad = (ph_req_error(r, 400, "invalid_request", "to.id: the new holder's end user id"), 1);
    json_decref(b);
    if (bad)
        return PH_REQ_DONE;
    r->cmd.type = PH_CMD_GRANT;
    r->cmd.now = ph_now_ms();
    r->cmd.in.grant.op = PH_GRANT_GIFT;
    r->cmd.in.grant.grant_id = id;
    r->cmd.in.grant.client = r->client->name;
    int rc = ph_grant_holder_of(&eu, r->env->keys, &r->cmd.in.grant.to, g->masked, g->tags,
                                sizeof g->tags);
    ph_end_user_wipe(&eu);
    if (rc == PH_OK)
        rc = ph_grant_token_new(r->env->keys, g->token, g->new_hash);
    if (rc)
        return ph_req_fail(r, rc, NULL);
    memcpy(r->cmd.in.grant.token_hash, g->token_hash, 32);
    memcpy(r->cmd.in.grant.new_token_hash, g->new_hash, 32);
    memcpy(r->cmd.in.grant.key, g->key, 32);
    return ph_req_submit(r, gifted);
}

/* ---- POST /v1/grants/{id}/extend (ops) ------------------------------------------------- */

static int extended(ph_req *r)
{
    if (r->cmd.rc != PH_OK)
        return grant_refused(r);
    ph_log(r->env->log, PH_LOG_INFO, r->reqid, "grant.extended", "grant=%llu by=%s",
           (unsigned long long)r->cmd.in.grant.grant_id, r->client->name);
    return reply_grant(r, 200, NULL);
}

int ph_api_grant_extend(ph_req *r)
{
    uint64_t id;
    json_t *b;
    grant_req *g = grant_req_new(r);
    if (!g)
        return ph_req_fail(r, PH_ENOMEM, NULL);
    if (ph_u64_parse(r->seg[0], &id) || !id)
        return ph_req_error(r, 400, "invalid_request", "grant id: expected a number");
    if (ph_req_body_fields(r, "expires_at request_id", &b))
        return PH_REQ_DONE;
    const char *at = json_string_value(json_object_get(b, "expires_at"));
    int64_t ms = 0, now = ph_now_ms();
    int bad = read_request_id(r, b, g);
    if (!bad && (!at || !strchr(at, 'T') || ph_time_parse(at, strlen(at), &ms) || ms <= now ||
                 ms - now > PH_GRANT_TTL_MAX_MS))
        bad = (ph_req_error(r, 400, "invalid_request",
                            "expires_at: expected an RFC 3339 time in the future, within 3 years"),
               1);
    json_decref(b);
    if (bad)
        return PH_REQ_DONE;
    r->cmd.type = PH_CMD_GRANT;
    r->cmd.now = now;
    r->cmd.in.grant.op = PH_GRANT_EXTEND;
    r->cmd.in.grant.grant_id = id;
    r->cmd.in.grant.expires_at = ms;
    r->cmd.in.grant.who = r->client->name;
    memcpy(r->cmd.in.grant.key, g->key, 32);
    ph_req_audit(r, &r->cmd, "grant.extend",
                 json_pack("{s:I,s:I}", "grant_id", (json_int_t)id, "expires_at", (json_int_t)ms));
    return ph_req_submit(r, extended);
}

/* ---- GET /v1/grants/{id}, GET /v1/grants ------------------------------------------------ */

/* A client sees its own grants; ops any (a grant of another client is a 404,
 * as for one that does not exist). */
static int grant_visible(ph_req *r, const json_t *view)
{
    const char *client = json_string_value(json_object_get(view, "client"));
    return ph_req_has_scope(r, PH_SCOPE_OPS) || (client && !strcmp(client, r->client->name));
}

int ph_api_grant_get(ph_req *r)
{
    uint64_t id;
    char *txt = NULL;
    ph_err err = {0};
    if (ph_u64_parse(r->seg[0], &id))
        return ph_req_error(r, 400, "invalid_request", "grant id: expected a number");
    int rc = ph_store_grant_get(r->env->store, id, &txt, &err);
    if (rc == PH_ENOTFOUND)
        return ph_req_error(r, 404, "not_found", "grant: not found");
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *view = ph_grant_view(txt);
    free(txt);
    if (!view || !grant_visible(r, view)) {
        json_decref(view);
        return view ? ph_req_error(r, 404, "not_found", "grant: not found")
                    : ph_req_fail(r, PH_EIO, NULL);
    }
    grant_components(r, view);
    return ph_req_json(r, 200, json_pack("{s:o}", "grant", view));
}

int ph_api_grant_list(ph_req *r)
{
    uint64_t after = 0, limit = 100, next = 0;
    if (ph_req_page(r, &after, &limit, 1000))
        return PH_REQ_DONE;
    const char *st = ph_req_query(r, "state");
    int state = st ? ph_grant_state_parse(st) : 0;
    if (st && !state)
        return ph_req_error(r, 400, "invalid_request",
                            "state: expected active, claimed or expired");
    const char *client = ph_req_query(r, "client");
    if (client && !ph_ident_valid(client, PH_SKU_MAX))
        return ph_req_error(r, 400, "invalid_request", "client: expected a client name");
    if (!ph_req_has_scope(r, PH_SCOPE_OPS)) {
        if (client && strcmp(client, r->client->name))
            return ph_req_error(r, 403, "forbidden",
                                "client: only an ops token lists another client's grants");
        client = r->client->name;
    }
    char **list;
    size_t n;
    ph_err err = {0};
    int rc =
        ph_store_grant_list(r->env->store, client, state, after, limit, &list, &n, &next, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *v = ph_grant_view(list[i]);
        if (v)
            json_array_append_new(arr, v);
    }
    ph_store_event_list_free(list, n);
    return ph_req_json(r, 200,
                       json_pack("{s:o,s:o}", "grants", arr, "next_after",
                                 next ? json_integer((json_int_t)next) : json_null()));
}

/* ---- POST /v1/batches/grants: a welfare batch (text/csv) ---------------------------- */

#define BATCH_ERRORS_MAX 100 /* bad lines listed in a refusal; all are counted */

typedef struct batch_req {
    size_t n, cap;
    ph_grant_line *lines;
    struct batch_text {
        char user[PH_EU_ID_MAX + 1]; /* the caller's own, echoed in the answer; wiped */
        char masked[PH_GRANT_HOLDER_MASKED];
        char tags[PH_RISK_TAG_MAX + 8];
        char token[PH_GRANT_TOKEN_LEN + 1];
        char sku[PH_SKU_MAX + 1];
        uint32_t line;
    } * text;
    int tag_col, dept; /* column of the tag (department: its value is "department=<v>") */
    int user_col, sku_col;
    json_t *errors;
    size_t nerrors;
    const ph_config *cfg;
    const ph_keyring *kr;
    char batch_id[PH_GRANT_BATCH_ID_MAX + 1];
} batch_req;

static void batch_req_free(void *p)
{
    batch_req *b = p;
    if (b->text)
        ph_wipe(b->text, b->cap * sizeof *b->text);
    free(b->text);
    free(b->lines);
    json_decref(b->errors);
    free(b);
}

static void bad_line(batch_req *b, uint32_t line, const char *field, const char *msg)
{
    if (b->nerrors++ < BATCH_ERRORS_MAX)
        json_array_append_new(b->errors, json_pack("{s:i,s:s,s:s}", "line", (int)line, "field",
                                                   field, "message", msg));
}

/* The header: user_id, tag or department, sku, in any order, each once. */
static int batch_header(batch_req *b, const ph_csv_record *rec)
{
    b->user_col = b->tag_col = b->sku_col = -1;
    for (size_t i = 0; i < rec->nfields && i < PH_CSV_FIELDS_MAX; i++) {
        const char *f = rec->field[i];
        int *col = !strcmp(f, "user_id")      ? &b->user_col
                   : !strcmp(f, "sku")        ? &b->sku_col
                   : !strcmp(f, "tag")        ? &b->tag_col
                   : !strcmp(f, "department") ? (b->dept = 1, &b->tag_col)
                                              : NULL;
        if (!col || *col >= 0)
            return -1;
        *col = (int)i;
    }
    return b->user_col >= 0 && b->sku_col >= 0 ? 0 : -1;
}

static int batch_record(void *arg, const ph_csv_record *rec, ph_err *err)
{
    batch_req *b = arg;
    if (rec->line == 1 || b->user_col < 0) {
        if (batch_header(b, rec))
            return ph_err_set(err, PH_EINVAL,
                              "line %u: expected the header user_id,tag,sku (or "
                              "user_id,department,sku)",
                              rec->line);
        return PH_OK;
    }
    if (rec->fault) {
        bad_line(b, rec->line, "line", rec->fault);
        return PH_OK;
    }
    size_t ncols = (size_t)(b->tag_col > b->sku_col ? b->tag_col : b->sku_col);
    ncols = (size_t)((int)ncols > b->user_col ? (int)ncols : b->user_col) + 1;
    if (rec->nfields > ncols) {
        bad_line(b, rec->line, "line", "more fields than the header names");
        return PH_OK;
    }
    if (b->n == PH_GRANT_BATCH_MAX)
        return ph_err_set(err, PH_ELIMIT, "batch: more than %d lines", PH_GRANT_BATCH_MAX);
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        void *l = realloc(b->lines, cap * sizeof *b->lines);
        if (l)
            b->lines = l;
        void *t = l ? realloc(b->text, cap * sizeof *b->text) : NULL;
        if (!l || !t)
            return ph_err_set(err, PH_ENOMEM, "out of memory");
        b->text = t;
        b->cap = cap;
    }
    const char *user = (size_t)b->user_col < rec->nfields ? rec->field[b->user_col] : "";
    const char *sku = (size_t)b->sku_col < rec->nfields ? rec->field[b->sku_col] : "";
    const char *tag =
        b->tag_col >= 0 && (size_t)b->tag_col < rec->nfields ? rec->field[b->tag_col] : "";
    /* the end user is read as an order's would be: the same checks and masks */
    json_t *eu = json_pack("{s:s}", "id", user);
    if (tag[0]) {
        const char *eq = b->dept ? NULL : strchr(tag, '=');
        char key[40];
        snprintf(key, sizeof key, "%.*s", eq ? (int)(eq - tag) : 10, eq ? tag : "department");
        json_object_set_new(eu, "tags", json_pack("{s:s}", key, eq ? eq + 1 : tag));
        if (!b->dept && !eq) {
            json_decref(eu);
            bad_line(b, rec->line, "tag", "expected key=value");
            return PH_OK;
        }
    }
    ph_end_user e;
    char msg[PH_EU_MSG_MAX];
    int rc = eu ? ph_end_user_parse(eu, &e, msg) : PH_ENOMEM;
    json_decref(eu);
    const ph_product_conf *p = ph_config_product(b->cfg, sku);
    if (rc == PH_ENOMEM)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    if (rc)
        bad_line(b, rec->line,
                 strstr(msg, "end_user.id") ? "user_id"
                 : b->dept                  ? "department"
                                            : "tag",
                 strstr(msg, "end_user.id") ? "expected 1-128 printable ASCII bytes"
                                            : "expected a key of 1-32 [a-z0-9_.-] and a value of "
                                              "1-64 printable bytes without '='");
    else if (!p)
        bad_line(b, rec->line, "sku", "no such product in the catalog");
    if (rc || !p) {
        ph_end_user_wipe(&e);
        return PH_OK;
    }
    struct batch_text *t = &b->text[b->n];
    ph_grant_line *l = &b->lines[b->n];
    memset(l, 0, sizeof *l);
    t->line = rec->line;
    snprintf(t->user, sizeof t->user, "%s", e.id);
    snprintf(t->sku, sizeof t->sku, "%s", p->sku);
    rc = ph_grant_holder_of(&e, b->kr, &l->holder, t->masked, t->tags, sizeof t->tags);
    ph_end_user_wipe(&e);
    if (rc == PH_OK)
        rc = ph_grant_token_new(b->kr, t->token, l->token_hash);
    if (rc)
        return ph_err_set(err, rc, "line %u: no token could be made", rec->line);
    l->sku = t->sku;
    l->delivery = p->delivery;
    l->supply_ok = p->delivery == PH_DELIVERY_RECHARGE || p->noffers > 0;
    b->n++;
    return PH_OK;
}

/* The answer: line,user_id,grant_id,token (a replay: the token column empty). */
static int batch_answer(ph_req *r, batch_req *b, unsigned status)
{
    size_t cap = 64 + b->n * (PH_EU_ID_MAX + PH_GRANT_TOKEN_LEN + 48), len = 0;
    char *out = malloc(cap);
    if (!out)
        return ph_req_fail(r, PH_ENOMEM, NULL);
    len += (size_t)snprintf(out, cap, "line,user_id,grant_id,token\n");
    for (size_t i = 0; i < b->n; i++) {
        struct batch_text *t = &b->text[i];
        /* a user id with a comma or quote is written quoted, quotes doubled */
        int quote = strpbrk(t->user, ",\"") != NULL;
        len += (size_t)snprintf(out + len, cap - len, "%u,%s", t->line, quote ? "\"" : "");
        for (const char *c = t->user; *c; c++) {
            if (*c == '"')
                out[len++] = '"';
            out[len++] = *c;
        }
        len += (size_t)snprintf(out + len, cap - len, "%s,%llu,%s\n", quote ? "\"" : "",
                                (unsigned long long)r->cmd.grant_ids[i],
                                r->cmd.replayed ? "" : t->token);
        ph_wipe(t->token, sizeof t->token);
    }
    if (r->cmd.replayed)
        r->replay_header = "true";
    return ph_req_text(r, status, out, len, "text/csv; charset=utf-8");
}

static int batch_done(ph_req *r)
{
    batch_req *b = r->ext;
    if (r->cmd.rc != PH_OK)
        return ph_req_fail(r, r->cmd.rc, &r->cmd.err);
    ph_log(r->env->log, PH_LOG_INFO, r->reqid,
           r->cmd.replayed ? "grant_batch.replayed" : "grant_batch.created", "batch=%s lines=%zu",
           b->batch_id, b->n);
    return batch_answer(r, b, r->cmd.replayed ? 200 : 201);
}

int ph_api_grant_batch(ph_req *r)
{
    const char *bid = ph_req_query(r, "batch_id"), *ttl = ph_req_query(r, "ttl_s"),
               *at = ph_req_query(r, "expires_at");
    if (!ph_ident_valid(bid, PH_GRANT_BATCH_ID_MAX))
        return ph_req_error(r, 400, "invalid_request",
                            "batch_id: expected 1-%d characters [A-Za-z0-9._:-]",
                            PH_GRANT_BATCH_ID_MAX);
    int64_t now = ph_now_ms(), ms = 0;
    uint64_t s = 0;
    if ((ttl != NULL) == (at != NULL))
        return ph_req_error(r, 400, "invalid_request", "ttl_s, expires_at: expected one of them");
    if (ttl && (ph_u64_parse(ttl, &s) || s < 1 || s > (uint64_t)(PH_GRANT_TTL_MAX_MS / 1000)))
        return ph_req_error(r, 400, "invalid_request", "ttl_s: expected seconds, up to 3 years");
    if (at && (!strchr(at, 'T') || ph_time_parse(at, strlen(at), &ms)))
        return ph_req_error(r, 400, "invalid_request", "expires_at: expected an RFC 3339 time");
    if (ttl)
        ms = now + (int64_t)s * 1000;
    if (ms - now < (int64_t)r->cfg->cfg->grant_min_ttl_s * 1000 || ms - now > PH_GRANT_TTL_MAX_MS)
        return ph_req_error(r, 400, "invalid_request",
                            "expires %u seconds to 3 years from now, not sooner or later",
                            r->cfg->cfg->grant_min_ttl_s);
    batch_req *b = calloc(1, sizeof *b);
    if (!b || !(b->errors = json_array())) {
        free(b);
        return ph_req_fail(r, PH_ENOMEM, NULL);
    }
    r->ext = b;
    r->ext_free = batch_req_free;
    b->user_col = -1;
    b->cfg = r->cfg->cfg;
    b->kr = r->env->keys;
    snprintf(b->batch_id, sizeof b->batch_id, "%s", bid);
    ph_err err = {0};
    int rc = ph_csv_records(r->body ? r->body : "", r->body_len, batch_record, b, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    if (b->nerrors) {
        ph_req_error(r, 400, "invalid_request", "%zu bad lines; nothing was created", b->nerrors);
        json_object_set(r->resp, "errors", b->errors);
        return PH_REQ_DONE;
    }
    if (!b->n)
        return ph_req_error(r, 400, "invalid_request", "body: no line after the header");
    for (size_t i = 0; i < b->n; i++) { /* b->text moved as it grew: point at it now */
        b->lines[i].line = b->text[i].line;
        b->lines[i].sku = b->text[i].sku;
        b->lines[i].holder.masked = b->text[i].masked;
        b->lines[i].holder.tags = b->text[i].tags;
    }
    r->cmd.type = PH_CMD_GRANT_BATCH;
    r->cmd.now = now;
    r->cmd.in.grant_batch.client = r->client->name;
    r->cmd.in.grant_batch.batch_id = b->batch_id;
    ph_crypto_sha256(r->env->keys, r->body, r->body_len, r->cmd.in.grant_batch.fingerprint);
    r->cmd.in.grant_batch.expires_at = ms;
    r->cmd.in.grant_batch.lines = b->lines;
    r->cmd.in.grant_batch.n = b->n;
    return ph_req_submit(r, batch_done);
}

/* ---- GET /v1/batches/grants/{batch_id}.csv: the claim status for HR ----------------- */

int ph_api_grant_batch_csv(ph_req *r)
{
    char bid[PH_GRANT_BATCH_ID_MAX + 8];
    size_t l = strlen(r->seg[0]);
    if (l < 5 || strcmp(r->seg[0] + l - 4, ".csv") || l - 4 > PH_GRANT_BATCH_ID_MAX)
        return ph_req_error(r, 404, "not_found", "batch: expected /v1/batches/grants/ID.csv");
    snprintf(bid, sizeof bid, "%.*s", (int)(l - 4), r->seg[0]);
    const char *client = ph_req_query(r, "client");
    if (!client || !ph_req_has_scope(r, PH_SCOPE_OPS))
        client = r->client->name;
    char *txt = NULL;
    ph_err err = {0};
    int rc = ph_store_grant_batch_get(r->env->store, client, bid, &txt, &err);
    if (rc == PH_ENOTFOUND)
        return ph_req_error(r, 404, "not_found", "batch_id: no such batch");
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *rec = json_loads(txt, 0, NULL);
    free(txt);
    size_t n = (size_t)json_integer_value(json_object_get(rec, "count"));
    json_decref(rec);
    size_t cap = 128 + n * 160, len = 0;
    char *out = malloc(cap);
    if (!out)
        return ph_req_fail(r, PH_ENOMEM, NULL);
    len +=
        (size_t)snprintf(out, cap, "row,grant_id,sku,state,holder,gifted,claimed_at,expires_at\n");
    for (size_t i = 0; i < n; i++) {
        char coid[PH_ORDER_ID_MAX + 1], *g = NULL;
        ph_order *o = NULL;
        snprintf(coid, sizeof coid, "%s:%zu", bid, i + 1);
        json_t *v = NULL;
        if (ph_store_order_find(r->env->store, client, coid, 0, &o, &err) == PH_OK &&
            ph_store_grant_get(r->env->store, o->id, &g, &err) == PH_OK)
            v = ph_grant_view(g);
        free(g);
        const char *st = v ? json_string_value(json_object_get(v, "state")) : NULL;
        const char *h = v ? json_string_value(json_object_get(v, "holder")) : NULL;
        const char *ca = v ? json_string_value(json_object_get(v, "claimed_at")) : NULL;
        const char *ex = v ? json_string_value(json_object_get(v, "expires_at")) : NULL;
        if (len + 400 > cap) {
            char *g2 = realloc(out, cap * 2);
            if (!g2) {
                free(out);
                json_decref(v);
                ph_order_free(o);
                return ph_req_fail(r, PH_ENOMEM, NULL);
            }
            out = g2;
            cap *= 2;
        }
        len += (size_t)snprintf(out + len, cap - len, "%zu,%llu,%s,%s,%s,%lld,%s,%s\n", i + 1,
                                o ? (unsigned long long)o->id : 0ULL, o ? o->sku : "",
                                st ? st : "?", h ? h : "",
                                v ? (long long)json_integer_value(json_object_get(v, "gifted")) : 0,
                                ca ? ca : "", ex ? ex : "");
        json_decref(v);
        ph_order_free(o);
    }
    return ph_req_text(r, 200, out, len, "text/csv; charset=utf-8");
}
