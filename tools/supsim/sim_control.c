/* sim_control.c — the test-facing control API under /_sim (no auth). */
#include "supsim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CB_MAX_COPIES 64

static void ctl_error(sim_reply *out, unsigned status, const char *msg)
{
    sim_reply_json(out, status, json_pack("{s:s}", "error", msg));
}

static void faults_post(sim *s, const sim_request *rq, sim_reply *out)
{
    json_t *d = json_loadb(rq->body ? rq->body : "", rq->len, 0, NULL);
    char msg[160];
    int id = 0;
    if (sim_fault_add(s, d, &id, msg, sizeof msg))
        ctl_error(out, 400, msg);
    else
        sim_reply_json(out, 201, json_pack("{s:i}", "id", id));
    json_decref(d);
}

/* A prepared callback: what to send where. Owned strings. */
typedef struct cb_plan {
    sim_proto proto;
    char order_id[32];
    char *url, *body, *header;
} cb_plan;

/* Builds the notify of mode for o; 0, or an HTTP status with msg. s->mu held. */
static unsigned plan_locked(sim *s, sim_order *o, const char *mode, cb_plan *p)
{
    int64_t now = (int64_t)time(NULL);
    int replay = !strcmp(mode, "replay"), stale = !strcmp(mode, "stale");
    sim_nmode m = !strcmp(mode, "forged")       ? SIM_N_FORGED
                  : !strcmp(mode, "tampered")   ? SIM_N_TAMPERED
                  : !strcmp(mode, "contradict") ? SIM_N_CONTRADICT
                                                : SIM_N_LEGIT;
    if (!replay && !stale && m == SIM_N_LEGIT && strcmp(mode, "legit"))
        return 400;
    sim_order_settle_locked(s, o);
    p->proto = o->proto;
    snprintf(p->order_id, sizeof p->order_id, "%s", o->order_id);
    if (replay) {
        if (!o->last_body)
            return 409;
        p->body = strdup(o->last_body);
        p->header = o->last_header ? strdup(o->last_header) : NULL;
        return 0;
    }
    int64_t t = stale ? now - 3600 : now;
    if (o->proto == SIM_GATEWAY)
        p->body = sim_gw_notify_locked(s, o, t, m);
    else
        sim_rw_notify_locked(s, o, t, m, &p->body, &p->header);
    if (p->body && !strcmp(mode, "legit")) {
        free(o->last_body);
        free(o->last_header);
        o->last_body = strdup(p->body);
        o->last_header = p->header ? strdup(p->header) : NULL;
    }
    return 0;
}

/* Finds the order and prepares the callback; 0 or an HTTP status with msg. */
static unsigned callback_prepare(sim *s, json_t *d, cb_plan *p, const char **msg)
{
    const char *ref = json_string_value(json_object_get(d, "ref"));
    const char *mode = json_string_value(json_object_get(d, "mode"));
    const char *proto = json_string_value(json_object_get(d, "protocol"));
    const char *url = json_string_value(json_object_get(d, "url"));
    if (!ref || !mode)
        return *msg = "fields ref and mode are required", 400;
    pthread_mutex_lock(&s->mu);
    sim_order *o = NULL;
    if (!proto || !strcmp(proto, "gateway"))
        o = sim_order_find_locked(s, SIM_GATEWAY, ref);
    if (!o && (!proto || !strcmp(proto, "rewards")))
        o = sim_order_find_locked(s, SIM_REWARDS, ref);
    unsigned st = !o ? 404 : (!url && !o->notify_url) ? 409 : plan_locked(s, o, mode, p);
    if (!st && !(p->url = strdup(url ? url : o->notify_url)))
        st = 500;
    pthread_mutex_unlock(&s->mu);
    *msg = st == 404   ? "no order with this ref"
           : st == 409 ? "the order has no notify_url (give url) or no notify to replay"
           : st == 400 ? "mode: legit, forged, tampered, contradict, stale or replay"
                       : "out of memory";
    if (!st && !p->body)
        return *msg = "out of memory", 500;
    return st;
}

static void callback_post(sim *s, const sim_request *rq, sim_reply *out)
{
    json_t *d = json_loadb(rq->body ? rq->body : "", rq->len, 0, NULL);
    cb_plan p = {0};
    const char *msg = "";
    json_int_t copies = json_integer_value(json_object_get(d, "copies"));
    copies = copies < 1 ? 1 : copies > CB_MAX_COPIES ? CB_MAX_COPIES : copies;
    unsigned st = callback_prepare(s, d, &p, &msg);
    if (st) {
        ctl_error(out, st, msg);
    } else {
        long statuses[CB_MAX_COPIES];
        char *bodies[CB_MAX_COPIES];
        int ok = sim_notify_send_now(s, p.proto, p.order_id, p.url, p.body, p.header, (int)copies,
                                     statuses, bodies);
        json_t *sa = json_array(), *ba = json_array();
        for (int i = 0; i < copies; i++) {
            json_array_append_new(sa, json_integer(statuses[i]));
            json_array_append_new(ba, json_string(bodies[i] ? bodies[i] : ""));
            free(bodies[i]);
        }
        sim_reply_json(out, 200,
                       json_pack("{s:o,s:o,s:i}", "statuses", sa, "bodies", ba, "accepted", ok));
    }
    free(p.url);
    free(p.body);
    free(p.header);
    json_decref(d);
}

/* POST /_sim/complete {"ref", "state": "success"|"failed", "protocol"?}: the
 * supplier decides a processing order's fate now (the late answer about an
 * order that stayed processing: account 13900000003). */
static void complete_post(sim *s, const sim_request *rq, sim_reply *out)
{
    json_t *d = json_loadb(rq->body ? rq->body : "", rq->len, 0, NULL);
    const char *ref = json_string_value(json_object_get(d, "ref"));
    const char *state = json_string_value(json_object_get(d, "state"));
    const char *proto = json_string_value(json_object_get(d, "protocol"));
    if (!ref || !state || (strcmp(state, "success") && strcmp(state, "failed"))) {
        ctl_error(out, 400, "fields ref and state (success or failed) are required");
        json_decref(d);
        return;
    }
    pthread_mutex_lock(&s->mu);
    sim_order *o = NULL;
    if (!proto || !strcmp(proto, "gateway"))
        o = sim_order_find_locked(s, SIM_GATEWAY, ref);
    if (!o && (!proto || !strcmp(proto, "rewards")))
        o = sim_order_find_locked(s, SIM_REWARDS, ref);
    int rc = o ? sim_order_complete_locked(s, o, !strcmp(state, "success")) : 0;
    pthread_mutex_unlock(&s->mu);
    if (!o)
        ctl_error(out, 404, "no order with this ref");
    else if (rc)
        ctl_error(out, 409, "the order is not processing");
    else
        sim_reply_json(out, 200, json_pack("{s:s}", "state", state));
    json_decref(d);
}

/* POST /_sim/redeem {"code", "protocol"?, "at"?}: a customer redeemed a code
 * we issued (at: unix seconds, default now). 404 when no order of ours holds
 * it; a code redeemed already keeps its first time. */
static void redeem_post(sim *s, const sim_request *rq, sim_reply *out)
{
    json_t *d = json_loadb(rq->body ? rq->body : "", rq->len, 0, NULL);
    const char *code = json_string_value(json_object_get(d, "code"));
    const char *proto = json_string_value(json_object_get(d, "protocol"));
    json_t *at = json_object_get(d, "at");
    if (!code || (at && !json_is_integer(at))) {
        ctl_error(out, 400, "field code is required (at: unix seconds)");
        json_decref(d);
        return;
    }
    pthread_mutex_lock(&s->mu);
    sim_code *c = NULL;
    if (!proto || !strcmp(proto, "gateway"))
        c = sim_code_find_locked(s, SIM_GATEWAY, code, NULL);
    if (!c && (!proto || !strcmp(proto, "rewards")))
        c = sim_code_find_locked(s, SIM_REWARDS, code, NULL);
    if (c && !c->redeemed_unix)
        c->redeemed_unix = at ? (int64_t)json_integer_value(at) : (int64_t)time(NULL);
    int64_t when = c ? c->redeemed_unix : 0;
    pthread_mutex_unlock(&s->mu);
    if (!c)
        ctl_error(out, 404, "no order of ours holds this code");
    else
        sim_reply_json(out, 200, json_pack("{s:b,s:I}", "redeemed", 1, "at", (json_int_t)when));
    json_decref(d);
}

/* POST /_sim/catalog: the supplier's catalog changes mid-run.
 *   {"product_id": "10001", "price": 2950, "stock": 0, "listed": false, "on_sale": false}
 * sets what is given of one product (either protocol's id; price in fen; stock
 * -1 = unlimited); {"extra_items": N} makes the gateway's catalog N synthetic
 * items longer (a large catalog, served in pages). Answers the product as it
 * now is. POST /_sim/reset undoes it all. */
static void catalog_post(sim *s, const sim_request *rq, sim_reply *out)
{
    json_t *d = json_loadb(rq->body ? rq->body : "", rq->len, 0, NULL);
    json_t *extra = json_object_get(d, "extra_items");
    const char *pid = json_string_value(json_object_get(d, "product_id"));
    json_t *price = json_object_get(d, "price"), *stock = json_object_get(d, "stock");
    json_t *listed = json_object_get(d, "listed"), *sale = json_object_get(d, "on_sale");
    int i = -1;
    if (pid && (i = sim_product_find(SIM_GATEWAY, pid)) < 0)
        i = sim_product_find(SIM_REWARDS, pid);
    if (!json_is_object(d) ||
        (extra && (!json_is_integer(extra) || json_integer_value(extra) < 0 ||
                   json_integer_value(extra) > SIM_EXTRA_MAX)) ||
        (!extra && i < 0) ||
        (price && (!json_is_integer(price) || json_integer_value(price) < 1)) ||
        (stock && (!json_is_integer(stock) || json_integer_value(stock) < -1)) ||
        (listed && !json_is_boolean(listed)) || (sale && !json_is_boolean(sale))) {
        ctl_error(out, 400,
                  "expected {product_id, price?, stock?, listed?, on_sale?} or {extra_items: "
                  "0..1000000}");
        json_decref(d);
        return;
    }
    pthread_mutex_lock(&s->mu);
    if (extra)
        s->extra_items = (long)json_integer_value(extra);
    if (i >= 0) {
        if (price)
            s->price_fen[i] = (long)json_integer_value(price);
        if (stock)
            s->stock[i] = (long long)json_integer_value(stock);
        if (listed)
            s->listed[i] = json_is_true(listed);
        if (sale)
            s->on_sale[i] = json_is_true(sale);
    }
    json_t *r = i < 0 ? json_pack("{s:I}", "extra_items", (json_int_t)s->extra_items)
                      : json_pack("{s:s,s:I,s:I,s:b,s:b}", "product_id", sim_catalog[i].id, "price",
                                  (json_int_t)s->price_fen[i], "stock", (json_int_t)s->stock[i],
                                  "listed", s->listed[i], "on_sale", s->on_sale[i]);
    pthread_mutex_unlock(&s->mu);
    sim_reply_json(out, 200, r);
    json_decref(d);
}

/* POST /_sim/balance {"fen": N}: the balance both protocols report (and
 * orders spend) from now on (issue 12: a balance that drops and recovers). */
static void balance_post(sim *s, const sim_request *rq, sim_reply *out)
{
    json_t *d = json_loadb(rq->body ? rq->body : "", rq->len, 0, NULL);
    json_t *fen = json_object_get(d, "fen");
    if (!json_is_integer(fen) || json_integer_value(fen) < 0) {
        ctl_error(out, 400, "field fen (an integer >= 0) is required");
        json_decref(d);
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->balance_fen = json_integer_value(fen);
    pthread_mutex_unlock(&s->mu);
    sim_reply_json(out, 200, json_pack("{s:I}", "fen", json_integer_value(fen)));
    json_decref(d);
}

void sim_control_handle(sim *s, const sim_request *rq, sim_reply *out)
{
    const char *m = rq->method, *path = rq->path;
    if (!strcmp(path, "/_sim/faults") && !strcmp(m, "POST"))
        faults_post(s, rq, out);
    else if (!strcmp(path, "/_sim/faults") && !strcmp(m, "DELETE"))
        sim_reply_json(out, 200, json_pack("{s:i}", "cleared", sim_fault_clear(s)));
    else if (!strcmp(path, "/_sim/faults") && !strcmp(m, "GET"))
        sim_reply_json(out, 200, sim_faults_json(s));
    else if (!strcmp(path, "/_sim/truth") && !strcmp(m, "GET"))
        sim_reply_json(out, 200, sim_truth(s));
    else if (!strcmp(path, "/_sim/reset") && !strcmp(m, "POST")) {
        sim_reset(s);
        sim_reply_json(out, 200, json_pack("{s:b}", "reset", 1));
    } else if (!strcmp(path, "/_sim/callback") && !strcmp(m, "POST"))
        callback_post(s, rq, out);
    else if (!strcmp(path, "/_sim/complete") && !strcmp(m, "POST"))
        complete_post(s, rq, out);
    else if (!strcmp(path, "/_sim/catalog") && !strcmp(m, "POST"))
        catalog_post(s, rq, out);
    else if (!strcmp(path, "/_sim/balance") && !strcmp(m, "POST"))
        balance_post(s, rq, out);
    else if (!strcmp(path, "/_sim/statement") && !strcmp(m, "POST"))
        sim_statement_post(s, rq, out);
    else if (!strcmp(path, "/_sim/redeem") && !strcmp(m, "POST"))
        redeem_post(s, rq, out);
    else
        ctl_error(out, 404, "no such control endpoint");
}
