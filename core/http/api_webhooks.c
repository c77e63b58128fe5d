/*
 * api_webhooks.c — webhook endpoints and their deliveries (docs/api.md,
 * "Webhooks"): GET /v1/webhooks, GET /v1/webhooks/{id}/deliveries, POST
 * /v1/webhooks/{id}/replay and /enable (ops, audited), and the webhook
 * families of GET /metrics. The configuration says which endpoints exist;
 * the store what became of them (store.h, "webhooks"); the delivery thread
 * (notify/notify.h) is woken after an ops action so it takes effect at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "http/api.h"
#include "http/views.h"
#include "metrics/metrics.h"
#include "notify/notify.h"

/* The endpoint id's configuration and its client, or NULL. */
static const ph_webhook_conf *find_conf(const ph_config *cfg, const char *id,
                                        const ph_client_conf **client)
{
    for (size_t i = 0; i < cfg->nclients; i++)
        for (size_t j = 0; j < cfg->clients[i].nwebhooks; j++)
            if (!strcmp(cfg->clients[i].webhooks[j].id, id)) {
                *client = &cfg->clients[i];
                return &cfg->clients[i].webhooks[j];
            }
    return NULL;
}

/* The URL without userinfo, query or fragment: a mall may put a token there. */
static json_t *url_shown(const char *url)
{
    const char *rest = strstr(url, "://");
    if (!rest)
        return json_string("");
    rest += 3;
    size_t auth = strcspn(rest, "/?#");
    const char *at = memchr(rest, '@', auth);
    const char *host = at ? at + 1 : rest;
    size_t keep = strcspn(host, "?#");
    char buf[1024];
    snprintf(buf, sizeof buf, "%.*s%.*s", (int)(rest - url), url, (int)keep, host);
    return json_string(buf);
}

static json_t *endpoint_view(ph_req *r, const ph_client_conf *cc, const ph_webhook_conf *w)
{
    ph_wh_endpoint_state st = {0};
    ph_err err = {0};
    int rc = ph_store_wh_endpoint_get(r->env->store, w->id, &st, &err);
    if (rc && rc != PH_ENOTFOUND)
        memset(&st, 0, sizeof st);
    const char *reason = st.disabled ? "gone" : !w->enabled ? "config" : NULL;
    json_t *j = json_pack("{s:s,s:s,s:o,s:b,s:s?,s:I,s:I,s:I,s:I,s:I}", "id", w->id, "client",
                          cc->name, "url", url_shown(w->url), "enabled", w->enabled && !st.disabled,
                          "disabled_reason", reason, "cursor", (json_int_t)st.cursor, "pending",
                          (json_int_t)st.pending, "failing", (json_int_t)st.failing, "dead",
                          (json_int_t)st.dead, "delivered", (json_int_t)st.delivered);
    if (!j)
        return NULL;
    if (!reason)
        json_object_set_new(j, "disabled_reason", json_null());
    json_object_set_new(j, "last_success_at", json_null());
    json_object_set_new(j, "last_failure_at", json_null());
    ph_view_time(j, "last_success_at", st.last_success_at);
    ph_view_time(j, "last_failure_at", st.last_failure_at);
    ph_view_time(j, "disabled_at", st.disabled_at);
    return j;
}

int ph_api_webhooks(ph_req *r)
{
    const ph_config *cfg = r->cfg->cfg;
    int ops = ph_req_has_scope(r, PH_SCOPE_OPS);
    json_t *arr = json_array();
    for (size_t i = 0; i < cfg->nclients; i++) {
        const ph_client_conf *cc = &cfg->clients[i];
        if (!ops && strcmp(cc->name, r->client->name))
            continue; /* a mall sees its own endpoints only */
        for (size_t j = 0; j < cc->nwebhooks; j++)
            json_array_append_new(arr, endpoint_view(r, cc, &cc->webhooks[j]));
    }
    return ph_req_json(r, 200, json_pack("{s:o}", "endpoints", arr));
}

/* The endpoint of the path for this caller: 404 for one that is not
 * configured, or (not ops) not the caller's. */
static const ph_webhook_conf *path_endpoint(ph_req *r, const ph_client_conf **cc)
{
    const ph_webhook_conf *w = find_conf(r->cfg->cfg, r->seg[0], cc);
    if (!w || (!ph_req_has_scope(r, PH_SCOPE_OPS) && strcmp((*cc)->name, r->client->name))) {
        ph_req_error(r, 404, "not_found", "no webhook endpoint with that id");
        return NULL;
    }
    return w;
}

int ph_api_webhook_deliveries(ph_req *r)
{
    const ph_client_conf *cc;
    const ph_webhook_conf *w = path_endpoint(r, &cc);
    if (!w)
        return PH_REQ_DONE;
    uint64_t after = 0, limit = 100;
    if (ph_req_page(r, &after, &limit, 1000))
        return PH_REQ_DONE;
    const char *sv = ph_req_query(r, "state");
    int state = 0;
    if (sv && !(state = ph_wh_state_parse(sv)))
        return ph_req_error(r, 400, "invalid_request",
                            "state: expected pending, delivered or dead");
    ph_wh_delivery *list;
    size_t n;
    uint64_t next;
    int more;
    ph_err err = {0};
    int rc = ph_store_wh_deliveries(r->env->store, w->id, state, after, limit, &list, &n, &next,
                                    &more, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        const ph_wh_delivery *d = &list[i];
        char id[PH_WH_ID_MAX];
        ph_wh_delivery_id(w->id, d->seq, id);
        json_t *j = json_pack(
            "{s:s,s:I,s:s,s:o,s:s,s:i,s:o,s:o,s:o,s:o,s:o}", "id", id, "seq", (json_int_t)d->seq,
            "type", d->type, "order_id",
            d->order_id ? json_integer((json_int_t)d->order_id) : json_null(), "state",
            ph_wh_state_name(d->state), "attempts", (int)d->attempts, "next_at", json_null(),
            "last_status", d->last_status ? json_integer(d->last_status) : json_null(),
            "last_error", d->last_error[0] ? json_string(d->last_error) : json_null(), "created_at",
            json_null(), "delivered_at", json_null());
        if (j && d->state == PH_WH_PENDING)
            ph_view_time(j, "next_at", d->next_at);
        if (j) {
            ph_view_time(j, "created_at", d->created_at);
            ph_view_time(j, "delivered_at", d->delivered_at);
        }
        json_array_append_new(arr, j);
    }
    free(list);
    return ph_req_json(r, 200,
                       json_pack("{s:o,s:I,s:b}", "deliveries", arr, "next_after", (json_int_t)next,
                                 "more", more));
}

static int replayed(ph_req *r)
{
    if (r->cmd.rc != PH_OK)
        return ph_req_fail(r, r->cmd.rc, &r->cmd.err);
    ph_notify_kick(r->env->notify);
    ph_log(r->env->log, PH_LOG_INFO, r->reqid, "webhook.replayed", "endpoint=%s deliveries=%llu",
           r->seg[0], (unsigned long long)r->cmd.wh_count);
    return ph_req_json(r, 202, json_pack("{s:I}", "replayed", (json_int_t)r->cmd.wh_count));
}

int ph_api_webhook_replay(ph_req *r)
{
    const ph_client_conf *cc;
    const ph_webhook_conf *w = path_endpoint(r, &cc);
    json_t *b;
    if (!w || ph_req_body_fields(r, "delivery from_seq to_seq", &b))
        return PH_REQ_DONE;
    const char *did = json_string_value(json_object_get(b, "delivery"));
    json_t *jf = json_object_get(b, "from_seq"), *jt = json_object_get(b, "to_seq");
    json_t *args = NULL, *what = NULL;
    if (did && !jf && !jt) {
        uint64_t seq = ph_wh_delivery_seq(w->id, did);
        if (!seq) {
            json_decref(b);
            return ph_req_error(r, 400, "invalid_request",
                                "delivery: expected the id of one of this endpoint's deliveries "
                                "(wh_<endpoint>_<seq>)");
        }
        args = json_pack("{s:I}", "seq", (json_int_t)seq);
        what = json_pack("{s:s,s:I}", "endpoint", w->id, "seq", (json_int_t)seq);
    } else if (!json_object_get(b, "delivery") && json_is_integer(jf) && json_is_integer(jt) &&
               json_integer_value(jf) > 0 && json_integer_value(jt) >= json_integer_value(jf)) {
        args = json_pack("{s:O,s:O}", "from_seq", jf, "to_seq", jt);
        what = json_pack("{s:s,s:O,s:O}", "endpoint", w->id, "from_seq", jf, "to_seq", jt);
    } else {
        json_decref(b);
        return ph_req_error(r, 400, "invalid_request",
                            "body: expected {\"delivery\": id} or {\"from_seq\": a, \"to_seq\": b} "
                            "with 0 < a <= b");
    }
    json_decref(b);
    char *txt = args ? json_dumps(args, JSON_COMPACT) : NULL;
    json_decref(args);
    if (!txt) {
        json_decref(what);
        return ph_req_fail(r, PH_ENOMEM, NULL);
    }
    snprintf(r->arg[0], sizeof r->arg[0], "%s", txt);
    ph_json_free(txt);
    r->cmd.type = PH_CMD_WH_REPLAY;
    r->cmd.now = ph_now_ms();
    r->cmd.in.wh.endpoint = w->id; /* the snapshot r holds keeps it alive */
    r->cmd.in.wh.json = r->arg[0];
    ph_req_audit(r, &r->cmd, "webhooks.replay", what);
    return ph_req_submit(r, replayed);
}

static int enabled(ph_req *r)
{
    if (r->cmd.rc != PH_OK && r->cmd.rc != PH_ENOTFOUND)
        return ph_req_fail(r, r->cmd.rc, &r->cmd.err);
    ph_notify_kick(r->env->notify);
    const ph_client_conf *cc;
    const ph_webhook_conf *w = find_conf(r->cfg->cfg, r->seg[0], &cc);
    ph_log(r->env->log, PH_LOG_INFO, r->reqid, "webhook.enabled", "endpoint=%s", r->seg[0]);
    return ph_req_json(r, 200, json_pack("{s:o}", "endpoint", endpoint_view(r, cc, w)));
}

int ph_api_webhook_enable(ph_req *r)
{
    const ph_client_conf *cc;
    const ph_webhook_conf *w = path_endpoint(r, &cc);
    if (!w)
        return PH_REQ_DONE;
    r->cmd.type = PH_CMD_WH_ENABLE;
    r->cmd.now = ph_now_ms();
    r->cmd.in.wh.endpoint = w->id;
    ph_req_audit(r, &r->cmd, "webhooks.enable", json_pack("{s:s}", "endpoint", w->id));
    return ph_req_submit(r, enabled);
}

void ph_api_webhook_metrics(ph_mx *mx, ph_req *r)
{
    ph_notify_stat st[256];
    size_t n = ph_notify_stats(r->env->notify, st, 256);
    if (n > 256)
        n = 256;
    ph_mx_family(mx, "perkhub_webhook_deliveries_total", "counter",
                 "Webhook delivery attempts since start, by endpoint and result");
    static const char *const results[] = {"delivered", "retry", "dead", "gone"};
    for (size_t i = 0; i < n; i++) {
        uint64_t v[] = {st[i].delivered, st[i].retried, st[i].dead, st[i].gone};
        for (size_t k = 0; k < 4; k++)
            ph_mx_sample(mx, "perkhub_webhook_deliveries_total",
                         (ph_label[]){{"endpoint", st[i].id}, {"result", results[k]}}, 2,
                         (double)v[k]);
    }
    ph_mx_family(mx, "perkhub_webhook_pending", "gauge",
                 "Webhook deliveries waiting to be delivered, by endpoint");
    for (size_t i = 0; i < n; i++)
        ph_mx_sample(mx, "perkhub_webhook_pending", (ph_label[]){{"endpoint", st[i].id}}, 1,
                     (double)st[i].pending);
}
