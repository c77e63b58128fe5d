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
#include "crypto/wipe_alloc.h"
#include "http/api.h"
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
    return ph_req_fail(r, c->rc, &c->err);
}

/* {"grant": view, ...extra} */
static int reply_grant(ph_req *r, unsigned status, json_t *extra)
{
    json_t *view = r->cmd.record ? ph_grant_view(r->cmd.record) : NULL;
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
    if (!r->cmd.replayed && o->state == PH_ORDER_PROCESSING) {
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
    return reply_grant(
        r, 200, json_pack("{s:o}", "order", ph_view_order(o, r->cfg->cfg, r->env->keys, 1, 0)));
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
    if (ph_order_via_supplier(o) && o->state == PH_ORDER_GRANTED) {
        const ph_product_conf *p = ph_config_product(r->cfg->cfg, o->sku);
        ph_attempt_target t = {0};
        if (p && ph_fulfil_route(r->env->fulfil, r->cfg->cfg, p, &t) == PH_OK)
            r->cmd.in.grant.first = t;
        else
            r->cmd.in.grant.fail_reason = "no_supplier_available";
        const char *acc = json_string_value(json_object_get(b, "account"));
        if (o->delivery == PH_DELIVERY_RECHARGE) {
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
        } else if (acc)
            rc = (ph_req_error(r, 400, "invalid_request", "account: only for recharge grants"), -1);
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
