/* sim_rewards.c — protocol 2 (docs/protocols/rewards.md) under /rewards. */
#include "supsim.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sim_rw_classify(const sim_request *rq, sim_class *c)
{
    memset(c, 0, sizeof *c);
    c->op = SIM_OP_OTHER;
    int get = !strcmp(rq->method, "GET"), post = !strcmp(rq->method, "POST");
    if (get && (!strcmp(rq->path, "/v1/catalog") || !strncmp(rq->path, "/v1/catalog/", 12)))
        c->op = SIM_OP_CATALOG;
    else if (get && (!strcmp(rq->path, "/v1/orders") || !strncmp(rq->path, "/v1/orders/", 11)))
        c->op = SIM_OP_QUERY;
    else if (post && !strcmp(rq->path, "/v1/orders")) {
        c->op = SIM_OP_ORDER;
        c->is_create = 1;
        json_t *b = json_loadb(rq->body ? rq->body : "", rq->len, 0, NULL);
        const char *ref = json_string_value(json_object_get(b, "external_ref_id"));
        snprintf(c->ref, sizeof c->ref, "%s", ref ? ref : "");
        c->body = b;
    }
}

static void rw_error(sim_reply *out, unsigned status, const char *error, const char *message)
{
    sim_reply_json(out, status, json_pack("{s:s,s:s}", "error", error, "message", message));
}

/* Bearer <key>, or Basic base64(<key>:<anything>): the key as the user name. */
static int rw_authorized(sim *s, const char *h)
{
    if (!h)
        return 0;
    if (!strncmp(h, "Bearer ", 7))
        return !strcmp(h + 7, s->cfg.rw_key);
    if (strncmp(h, "Basic ", 6))
        return 0;
    size_t n = 0;
    char *dec = sim_base64_decode(h + 6, &n);
    size_t kn = strlen(s->cfg.rw_key);
    int ok = dec && n > kn && !memcmp(dec, s->cfg.rw_key, kn) && dec[kn] == ':';
    free(dec);
    return ok;
}

static const char *rw_status(sim_state st)
{
    return st == SIM_SUCCESS ? "completed" : st == SIM_FAILED ? "failed" : "pending";
}

static json_t *item_locked(sim *s, int i)
{
    const sim_product *p = &sim_catalog[i];
    json_t *stock = s->stock[i] < 0 ? json_null() : json_integer(s->stock[i]);
    return json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:o,s:s}", "utid", p->id, "name", p->name, "brand",
                     p->brand, "type", p->is_card ? "code" : "recharge", "value",
                     (json_int_t)p->face_fen, "cost", (json_int_t)s->price_fen[i], "stock", stock,
                     "status", s->on_sale[i] ? "active" : "inactive");
}

/* The order object; with_rewards = 0 for webhooks. st overrides o->state. An
 * echo_account order carries its account in its id, reason and a message. */
static json_t *order_json_locked(const sim_order *o, sim_state st, int with_rewards)
{
    char created[32], id[sizeof o->order_id + sizeof o->account + 1], reason[96];
    sim_iso_time(o->created_unix, created, sizeof created);
    snprintf(id, sizeof id, "%s%s%s", o->order_id, o->echo ? "-" : "", o->echo ? o->account : "");
    snprintf(reason, sizeof reason, o->echo ? "account_%s_suspended" : "account_suspended",
             o->account);
    json_t *j =
        json_pack("{s:s,s:s,s:s,s:i,s:s,s:o,s:I,s:s}", "order_id", id, "external_ref_id", o->ref,
                  "utid", sim_catalog[o->product].id, "quantity", o->quantity, "status",
                  rw_status(st), "reason", st == SIM_FAILED ? json_string(reason) : json_null(),
                  "amount_charged", (json_int_t)o->amount_fen, "created_at", created);
    if (j && o->echo) {
        snprintf(reason, sizeof reason, "account %s is suspended", o->account);
        json_object_set_new(j, "message", json_string(reason));
    }
    if (!j || !with_rewards || st != SIM_SUCCESS || !o->codes)
        return j;
    char exp[32];
    sim_iso_time(o->created_unix + 365 * 86400, exp, sizeof exp);
    json_t *a = json_array();
    for (int i = 0; i < o->quantity; i++)
        json_array_append_new(a, json_pack("{s:s,s:s,s:s}", "code", o->codes[i].code, "card_number",
                                           o->codes[i].card_number, "expires_at", exp));
    json_object_set_new(j, "rewards", a);
    return j;
}

static void r_catalog(sim *s, const sim_request *rq, sim_reply *out)
{
    const char *utid = rq->path[11] == '/' ? rq->path + 12 : NULL;
    int i = utid ? sim_product_find(SIM_REWARDS, utid) : -1;
    if (utid && i < 0) {
        rw_error(out, 404, "unknown_utid", "no such item");
        return;
    }
    pthread_mutex_lock(&s->mu);
    json_t *r;
    if (utid && !s->listed[i]) {
        pthread_mutex_unlock(&s->mu);
        rw_error(out, 404, "unknown_utid", "no such item");
        return;
    }
    if (utid) {
        r = item_locked(s, i);
    } else {
        json_t *a = json_array();
        for (int k = 0; k < SIM_NPRODUCTS; k++)
            if (sim_catalog[k].proto == SIM_REWARDS && s->listed[k])
                json_array_append_new(a, item_locked(s, k));
        r = json_pack("{s:o}", "items", a);
    }
    pthread_mutex_unlock(&s->mu);
    sim_reply_json(out, 200, r);
}

static int is_account(const char *a)
{
    if (!a || strlen(a) != 11)
        return 0;
    for (; *a; a++)
        if (!isdigit((unsigned char)*a))
            return 0;
    return 1;
}

/* Validates a new order; 0, or the HTTP status with error and message set. */
static unsigned order_check_locked(sim *s, json_t *b, int *prod, const char **err, const char **msg)
{
    json_t *q = json_object_get(b, "quantity"), *max = json_object_get(b, "max_unit_cost");
    const char *utid = json_string_value(json_object_get(b, "utid"));
    if (!utid || !json_is_integer(q) || json_integer_value(q) < 1 || json_integer_value(q) > 1000 ||
        (max && !json_is_integer(max)))
        return *err = "invalid_request", *msg = "utid and quantity (1..1000) are required", 400;
    if ((*prod = sim_product_find(SIM_REWARDS, utid)) < 0 || !s->listed[*prod] ||
        !s->on_sale[*prod])
        return *err = "unknown_utid", *msg = "no such item", 404;
    const sim_product *p = &sim_catalog[*prod];
    const char *acct =
        json_string_value(json_object_get(json_object_get(b, "recipient"), "account"));
    if (!p->is_card && !is_account(acct))
        return *err = "invalid_account", *msg = "recipient.account is not a valid account", 422;
    json_int_t qty = json_integer_value(q);
    if (s->stock[*prod] >= 0 && s->stock[*prod] < qty)
        return *err = "out_of_stock", *msg = "not enough stock", 409;
    if (max && json_integer_value(max) < s->price_fen[*prod])
        return *err = "price_above_max", *msg = "unit cost above max_unit_cost", 422;
    if (s->balance_fen < s->price_fen[*prod] * qty)
        return *err = "insufficient_funds", *msg = "balance too low", 402;
    return 0;
}

static void r_order_create(sim *s, const sim_request *rq, sim_fault_kind fault, sim_reply *out)
{
    json_t *b =
        rq->json ? json_incref(rq->json) : json_loadb(rq->body ? rq->body : "", rq->len, 0, NULL);
    const char *ref = json_string_value(json_object_get(b, "external_ref_id"));
    if (!json_is_object(b) || !ref || !*ref || strlen(ref) >= 128) {
        json_decref(b);
        rw_error(out, 400, "invalid_request", "a JSON object with external_ref_id is required");
        return;
    }
    const char *err = NULL, *msg = NULL;
    unsigned status = 0;
    int prod = -1;
    json_t *r = NULL;
    pthread_mutex_lock(&s->mu);
    sim_order *o = sim_order_find_locked(s, SIM_REWARDS, ref);
    if (o) {
        sim_order_settle_locked(s, o);
        status = 200; /* idempotent: the existing order, nothing new happens */
    } else if (!(status = order_check_locked(s, b, &prod, &err, &msg))) {
        const char *url = json_string_value(json_object_get(b, "notify_url"));
        const char *acct =
            json_string_value(json_object_get(json_object_get(b, "recipient"), "account"));
        o = sim_order_create_locked(s, SIM_REWARDS, ref, prod,
                                    (int)json_integer_value(json_object_get(b, "quantity")),
                                    sim_catalog[prod].is_card ? NULL : acct,
                                    url && *url ? url : NULL, fault == SIM_F_ECHO_ACCOUNT);
        status = 201;
    }
    if (o)
        r = order_json_locked(o, o->state, 1);
    pthread_mutex_unlock(&s->mu);
    json_decref(b);
    if (err)
        rw_error(out, status, err, msg);
    else if (!r)
        rw_error(out, 500, "internal", "out of memory");
    else
        sim_reply_json(out, status, r);
}

static void r_order_get(sim *s, const sim_request *rq, sim_reply *out)
{
    const char *id = rq->path[10] == '/' ? rq->path + 11 : NULL;
    if (!id && (!rq->arg_ref || !*rq->arg_ref)) {
        rw_error(out, 400, "invalid_request", "external_ref_id is required");
        return;
    }
    json_t *r = NULL;
    pthread_mutex_lock(&s->mu);
    sim_order *o =
        id ? sim_order_by_id_locked(s, id) : sim_order_find_locked(s, SIM_REWARDS, rq->arg_ref);
    if (o && o->proto == SIM_REWARDS && !sim_fault_hides_locked(s, o)) {
        sim_order_settle_locked(s, o);
        r = order_json_locked(o, o->state, 1);
    }
    pthread_mutex_unlock(&s->mu);
    if (!r)
        rw_error(out, 404, "not_found", "no such order");
    else
        sim_reply_json(out, 200, r);
}

void sim_rw_handle(sim *s, const sim_request *rq, sim_fault_kind fault, sim_reply *out)
{
    int get = !strcmp(rq->method, "GET"), post = !strcmp(rq->method, "POST");
    if (fault == SIM_F_BUSY) {
        rw_error(out, 429, "rate_limited", "try later");
    } else if (fault == SIM_F_UNAUTHORIZED || !rw_authorized(s, rq->authorization)) {
        rw_error(out, 401, "unauthorized", "missing or wrong credentials");
    } else if (get &&
               (!strcmp(rq->path, "/v1/catalog") || !strncmp(rq->path, "/v1/catalog/", 12))) {
        r_catalog(s, rq, out);
    } else if (post && !strcmp(rq->path, "/v1/orders")) {
        r_order_create(s, rq, fault, out);
    } else if (get && (!strcmp(rq->path, "/v1/orders") || !strncmp(rq->path, "/v1/orders/", 11))) {
        r_order_get(s, rq, out);
    } else if (get && !strcmp(rq->path, "/v1/account")) {
        pthread_mutex_lock(&s->mu);
        json_t *r =
            json_pack("{s:I,s:s}", "balance", (json_int_t)s->balance_fen, "currency", "CNY");
        pthread_mutex_unlock(&s->mu);
        sim_reply_json(out, 200, r);
    } else {
        rw_error(out, 404, "not_found", "no such resource");
    }
}

int sim_rw_notify_locked(sim *s, const sim_order *o, int64_t t, sim_nmode m, char **body,
                         char **header)
{
    sim_state flipped = o->state == SIM_SUCCESS ? SIM_FAILED : SIM_SUCCESS;
    char *bodies[2] = {NULL, NULL};
    /* the signed body and the one sent differ only when tampered */
    for (int k = 0; k < (m == SIM_N_TAMPERED ? 2 : 1); k++) {
        sim_state st =
            (k == 1 && m == SIM_N_TAMPERED) || m == SIM_N_CONTRADICT ? flipped : o->state;
        json_t *j = json_pack("{s:s,s:o}", "event",
                              st == SIM_SUCCESS  ? "order.completed"
                              : st == SIM_FAILED ? "order.failed"
                                                 : "order.pending",
                              "order", order_json_locked(o, st, 0));
        bodies[k] = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
    }
    char secret[256];
    snprintf(secret, sizeof secret, "%s%s", s->cfg.rw_whsec, m == SIM_N_FORGED ? "-forged" : "");
    /* tampered: the signature of the true body over the flipped one */
    *header = bodies[0] ? sim_rw_header(secret, bodies[0], t) : NULL;
    if (m == SIM_N_TAMPERED) {
        *body = bodies[1];
        free(bodies[0]);
    } else {
        *body = bodies[0];
    }
    if (!*body || !*header) {
        free(*body);
        free(*header);
        *body = *header = NULL;
        return -1;
    }
    return 0;
}
