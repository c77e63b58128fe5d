/* sim_gateway.c — protocol 1 (docs/protocols/gateway.md) at POST /gateway. */
#include "supsim.h"

#include <limits.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GW_WINDOW_S        600
#define GW_BAD_REQUEST     4000 /* docs/protocols/gateway.md: definite failures */
#define GW_UNKNOWN_METHOD  4004
#define GW_PRICE_ABOVE_MAX 2007
#define GW_UNKNOWN_CARD    2008

/* Parsed, verified request. */
typedef struct gw_req {
    json_t *params; /* owned */
    json_t *biz;    /* owned */
    const char *method;
} gw_req;

static json_t *parse_biz(json_t *params)
{
    const char *txt = json_string_value(json_object_get(params, "biz_content"));
    json_t *biz = txt ? json_loads(txt, 0, NULL) : NULL;
    if (biz && !json_is_object(biz)) {
        json_decref(biz);
        biz = NULL;
    }
    return biz;
}

void sim_gw_classify(const sim_request *rq, sim_class *c)
{
    memset(c, 0, sizeof *c);
    c->op = SIM_OP_OTHER;
    json_t *params = json_loadb(rq->body ? rq->body : "", rq->len, 0, NULL);
    const char *m = json_string_value(json_object_get(params, "method"));
    if (m && (!strcmp(m, "gw.order.card.add") || !strcmp(m, "gw.order.direct.add"))) {
        c->op = SIM_OP_ORDER;
        c->is_create = 1;
    } else if (m && !strcmp(m, "gw.order.info")) {
        c->op = SIM_OP_QUERY;
    } else if (m && !strncmp(m, "gw.goods.", 9)) {
        c->op = SIM_OP_CATALOG;
    } else if (m && !strcmp(m, "gw.card.status")) {
        c->op = SIM_OP_REDEEM;
    }
    if (c->is_create) {
        json_t *biz = parse_biz(params);
        const char *ref = json_string_value(json_object_get(biz, "customer_order_no"));
        snprintf(c->ref, sizeof c->ref, "%s", ref ? ref : "");
        json_decref(biz);
    }
    c->body = params;
}

/* ---- answers ---------------------------------------------------------------- */

static void gw_error(sim_reply *out, int code, const char *message)
{
    sim_reply_json(out, 200, json_pack("{s:i,s:s}", "code", code, "message", message));
}

static void gw_ok(sim *s, sim_reply *out, json_t *result, int bad_sign)
{
    char *txt = json_dumps(result, JSON_COMPACT);
    json_decref(result);
    if (!txt) {
        gw_error(out, 5000, "system busy");
        return;
    }
    size_t n = strlen(txt), sn = strlen(s->cfg.gw_secret);
    char *msg = malloc(n + sn + 2), sign[33] = "";
    if (msg) {
        memcpy(msg, txt, n);
        memcpy(msg + n, s->cfg.gw_secret, sn);
        msg[n + sn] = 'x'; /* bad_signature: a key the merchant does not have */
        sim_md5_hex(msg, n + sn + (bad_sign ? 1 : 0), sign);
    }
    free(msg);
    sim_reply_json(out, 200,
                   json_pack("{s:i,s:s,s:s,s:s}", "code", 0, "message", "success", "result", txt,
                             "sign", sign));
    free(txt);
}

/* Reads an integer given as a number or a numeric string. 0 or -1. */
static int get_int(json_t *obj, const char *key, long *v)
{
    json_t *j = json_object_get(obj, key);
    if (json_is_integer(j)) {
        *v = (long)json_integer_value(j);
        return 0;
    }
    const char *s = json_string_value(j);
    char *end;
    if (!s || !*s)
        return -1;
    *v = strtol(s, &end, 10);
    return *end ? -1 : 0;
}

/* "28.50" -> 2850; -1 when malformed. */
static long long parse_yuan(const char *s)
{
    long long y = 0;
    int dec = -1;
    if (!s || !*s)
        return -1;
    for (; *s; s++) {
        if (*s == '.' && dec < 0) {
            dec = 0;
            continue;
        }
        if (!isdigit((unsigned char)*s) || dec >= 2 || y > 1000000000000LL)
            return -1;
        y = y * 10 + (*s - '0');
        if (dec >= 0)
            dec++;
    }
    for (dec = dec < 0 ? 0 : dec; dec < 2; dec++)
        y *= 10;
    return y;
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

/* ---- verification --------------------------------------------------------- */

/* Parses and checks the envelope; 0, or an error code with msg set. */
static int gw_verify(sim *s, const sim_request *rq, gw_req *g, const char **msg)
{
    g->params =
        rq->json ? json_incref(rq->json) : json_loadb(rq->body ? rq->body : "", rq->len, 0, NULL);
    if (!json_is_object(g->params))
        return *msg = "request body is not a JSON object", GW_BAD_REQUEST;
    const char *key = json_string_value(json_object_get(g->params, "app_key"));
    if (!key || strcmp(key, s->cfg.gw_key))
        return *msg = "unknown app_key", 1003;
    const char *sign = json_string_value(json_object_get(g->params, "sign"));
    char want[33];
    if (sim_gw_sign(g->params, s->cfg.gw_secret, want))
        return *msg = "every parameter must be a string", GW_BAD_REQUEST;
    if (!sign || strcmp(sign, want))
        return *msg = "bad signature", 1001;
    const char *ts = json_string_value(json_object_get(g->params, "timestamp"));
    int64_t t;
    if (!ts || sim_parse_beijing(ts, &t) || llabs((long long)(t - time(NULL))) > GW_WINDOW_S)
        return *msg = "timestamp out of window", 1002;
    g->method = json_string_value(json_object_get(g->params, "method"));
    if (!g->method)
        return *msg = "missing method", GW_UNKNOWN_METHOD;
    if (!(g->biz = parse_biz(g->params)))
        return *msg = "biz_content is not a JSON object", GW_BAD_REQUEST;
    return 0;
}

/* ---- methods ------------------------------------------------------------------ */

static json_t *goods_locked(sim *s, int i)
{
    const sim_product *p = &sim_catalog[i];
    char face[24], price[24];
    sim_yuan(p->face_fen, face, sizeof face);
    sim_yuan(s->price_fen[i], price, sizeof price);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:s}", "product_id", p->id, "product_name", p->name,
                     "product_type", p->is_card ? "card" : "direct", "face_value", face,
                     "purchase_price", price, "stock", (json_int_t)s->stock[i], "sales_status",
                     s->on_sale[i] ? "on" : "off");
}

/* Item k of the large catalog (supsim.h, extra_items). */
static json_t *extra_goods(long k)
{
    char id[24];
    snprintf(id, sizeof id, "E%05ld", k + 1);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:s}", "product_id", id, "product_name",
                     "Catalog filler", "product_type", "card", "face_value", "10.00",
                     "purchase_price", "9.50", "stock", 100, "sales_status", "on");
}

/* gw.goods.list: every listed product, then the large catalog's items; with
 * biz page_no (1-based) and page_size (1..1000, default 500) one page of them
 * as {"page_no", "page_size", "total", "goods"}, else the whole list as an
 * array (the original answer). */
static json_t *goods_list_locked(sim *s, gw_req *g)
{
    long page = 0, size = 500;
    int paged = !get_int(g->biz, "page_no", &page);
    get_int(g->biz, "page_size", &size);
    if (size < 1 || size > 1000)
        size = 500;
    json_t *all = json_array();
    long total = 0, from = paged ? (page - 1) * size : 0, to = paged ? from + size : LONG_MAX;
    for (int k = 0; k < SIM_NPRODUCTS; k++) {
        if (sim_catalog[k].proto != SIM_GATEWAY || !s->listed[k])
            continue;
        if (total >= from && total < to)
            json_array_append_new(all, goods_locked(s, k));
        total++;
    }
    for (long k = 0; k < s->extra_items; k++, total++)
        if (total >= from && total < to)
            json_array_append_new(all, extra_goods(k));
    if (!paged)
        return all;
    return json_pack("{s:i,s:i,s:I,s:o}", "page_no", (int)page, "page_size", (int)size, "total",
                     (json_int_t)total, "goods", all);
}

static void m_goods(sim *s, gw_req *g, sim_reply *out, int bad_sign)
{
    const char *pid = json_string_value(json_object_get(g->biz, "product_id"));
    int list = !strcmp(g->method, "gw.goods.list");
    int i = pid ? sim_product_find(SIM_GATEWAY, pid) : -1;
    pthread_mutex_lock(&s->mu);
    if (i >= 0 && !s->listed[i])
        i = -1; /* delisted: the supplier no longer knows it */
    pthread_mutex_unlock(&s->mu);
    if (!list && i < 0) {
        gw_error(out, 2001, "product not found");
        return;
    }
    json_t *r;
    pthread_mutex_lock(&s->mu);
    if (list) {
        r = goods_list_locked(s, g);
    } else if (!strcmp(g->method, "gw.goods.info")) {
        r = goods_locked(s, i);
    } else {
        long n = 1;
        get_int(g->biz, "buy_num", &n);
        char price[24];
        sim_yuan(s->price_fen[i], price, sizeof price);
        int ok = s->stock[i] < 0 || s->stock[i] >= n;
        r = json_pack("{s:s,s:s,s:I,s:s}", "product_id", pid, "stock_status",
                      ok ? "sufficient" : "insufficient", "stock", (json_int_t)s->stock[i],
                      "purchase_price", price);
    }
    pthread_mutex_unlock(&s->mu);
    gw_ok(s, out, r, bad_sign);
}

static const char *gw_state(const sim_order *o)
{
    return o->state == SIM_PROCESSING ? "processing" : sim_state_name(o->state);
}

static json_t *order_result_locked(const sim_order *o, const char *state)
{
    char price[24], created[24], dv[24];
    sim_yuan(o->amount_fen, price, sizeof price);
    sim_beijing_time(o->created_unix, created, sizeof created);
    json_t *j =
        json_pack("{s:s,s:s,s:s,s:s,s:i,s:s,s:s}", "order_id", o->order_id, "customer_order_no",
                  o->ref, "order_state", state, "product_id", sim_catalog[o->product].id, "buy_num",
                  o->quantity, "order_price", price, "create_time", created);
    if (j && o->delivered_fen > 0) { /* other_delivered */
        sim_yuan(o->delivered_fen, dv, sizeof dv);
        json_object_set_new(j, "delivered_value", json_string(dv));
    }
    return j;
}

/* Checks an order request against the catalog; 0 or an error code with msg. */
static int order_check_locked(sim *s, gw_req *g, int card, int *prod, long *qty, const char **msg)
{
    const char *ref = json_string_value(json_object_get(g->biz, "customer_order_no"));
    const char *pid = json_string_value(json_object_get(g->biz, "product_id"));
    if (!ref || !*ref || strlen(ref) >= 128 || !pid)
        return *msg = "customer_order_no and product_id are required", GW_BAD_REQUEST;
    if (get_int(g->biz, "buy_num", qty) || *qty < 1 || *qty > 1000)
        return *msg = "buy_num must be 1..1000", GW_BAD_REQUEST;
    if (sim_order_find_locked(s, SIM_GATEWAY, ref))
        return *msg = "customer_order_no already used", 2004;
    *prod = sim_product_find(SIM_GATEWAY, pid);
    if (*prod < 0 || sim_catalog[*prod].is_card != card || !s->listed[*prod] || !s->on_sale[*prod])
        return *msg = "product not found", 2001;
    if (!card && !is_account(json_string_value(json_object_get(g->biz, "charge_account"))))
        return *msg = "invalid charge account", 2003;
    if (s->stock[*prod] >= 0 && s->stock[*prod] < *qty)
        return *msg = "out of stock", 2002;
    const char *maxp = json_string_value(json_object_get(g->biz, "max_price"));
    if (maxp && *maxp && parse_yuan(maxp) < s->price_fen[*prod])
        return *msg = "price above max_price", GW_PRICE_ABOVE_MAX;
    if (s->balance_fen < s->price_fen[*prod] * *qty)
        return *msg = "balance insufficient", 2006;
    return 0;
}

static void m_order_add(sim *s, gw_req *g, sim_reply *out, int bad_sign)
{
    int card = !strcmp(g->method, "gw.order.card.add"), prod = -1;
    long qty = 0;
    const char *msg = "";
    pthread_mutex_lock(&s->mu);
    int code = order_check_locked(s, g, card, &prod, &qty, &msg);
    sim_order *o = NULL;
    if (!code) {
        const char *url = json_string_value(json_object_get(g->biz, "notify_url"));
        o = sim_order_create_locked(
            s, SIM_GATEWAY, json_string_value(json_object_get(g->biz, "customer_order_no")), prod,
            (int)qty, json_string_value(json_object_get(g->biz, "charge_account")),
            url && *url ? url : NULL, 0);
    }
    /* card orders answer untreated: their codes come only from gw.order.info */
    json_t *r = o ? order_result_locked(o, card ? "untreated" : gw_state(o)) : NULL;
    pthread_mutex_unlock(&s->mu);
    if (code)
        gw_error(out, code, msg);
    else if (!r)
        gw_error(out, 5000, "system busy");
    else
        gw_ok(s, out, r, bad_sign);
}

static json_t *cards_locked(sim *s, const sim_order *o)
{
    json_t *a = json_array();
    char deadline[24];
    sim_beijing_time(o->created_unix + 365 * 86400, deadline, sizeof deadline);
    for (int i = 0; i < o->quantity; i++) {
        uint8_t iv[2][16];
        for (int k = 0; k < 2; k++) {
            uint64_t a1 = sim_rand_locked(s), a2 = sim_rand_locked(s);
            memcpy(iv[k], &a1, 8);
            memcpy(iv[k] + 8, &a2, 8);
        }
        char *num = sim_card_encrypt(s->cfg.gw_secret, iv[0], o->codes[i].card_number);
        char *pwd = sim_card_encrypt(s->cfg.gw_secret, iv[1], o->codes[i].code);
        json_array_append_new(a, json_pack("{s:s?,s:s?,s:s}", "card_number", num, "card_pwd", pwd,
                                           "card_deadline", deadline));
        free(num);
        free(pwd);
    }
    return a;
}

static void m_order_info(sim *s, gw_req *g, sim_reply *out, int bad_sign)
{
    const char *ref = json_string_value(json_object_get(g->biz, "customer_order_no"));
    json_t *r = NULL;
    pthread_mutex_lock(&s->mu);
    sim_order *o = ref ? sim_order_find_locked(s, SIM_GATEWAY, ref) : NULL;
    if (o && !sim_fault_hides_locked(s, o)) {
        sim_order_settle_locked(s, o);
        r = order_result_locked(o, gw_state(o));
        int card = sim_catalog[o->product].is_card;
        json_object_set_new(r, "order_type", json_string(card ? "card" : "direct"));
        if (card && o->state == SIM_SUCCESS)
            json_object_set_new(r, "cards", cards_locked(s, o));
    }
    pthread_mutex_unlock(&s->mu);
    if (!r)
        gw_error(out, 2005, "order not found");
    else
        gw_ok(s, out, r, bad_sign);
}

/* gw.card.status: was this card (a code we issued) used? The code comes
 * encrypted like the cards we deliver; it is never echoed. */
static void m_card_status(sim *s, gw_req *g, sim_reply *out, int bad_sign)
{
    const char *pwd = json_string_value(json_object_get(g->biz, "card_pwd"));
    char *code = pwd ? sim_card_decrypt(s->cfg.gw_secret, pwd) : NULL;
    if (!code) {
        gw_error(out, GW_BAD_REQUEST, "card_pwd must be an encrypted card");
        return;
    }
    json_t *r = NULL;
    pthread_mutex_lock(&s->mu);
    sim_code *c = sim_code_find_locked(s, SIM_GATEWAY, code, NULL);
    if (c) {
        char used[24] = "";
        if (c->redeemed_unix)
            sim_beijing_time(c->redeemed_unix, used, sizeof used);
        r = json_pack("{s:s,s:s?}", "card_status", c->redeemed_unix ? "used" : "unused",
                      "used_time", c->redeemed_unix ? used : NULL);
    }
    pthread_mutex_unlock(&s->mu);
    memset(code, 0, strlen(code));
    free(code);
    if (!r)
        gw_error(out, GW_UNKNOWN_CARD, "card not found");
    else
        gw_ok(s, out, r, bad_sign);
}

static void m_account(sim *s, sim_reply *out, int bad_sign)
{
    char bal[32];
    pthread_mutex_lock(&s->mu);
    sim_yuan(s->balance_fen, bal, sizeof bal);
    pthread_mutex_unlock(&s->mu);
    gw_ok(s, out, json_pack("{s:s}", "balance", bal), bad_sign);
}

void sim_gw_handle(sim *s, const sim_request *rq, sim_fault_kind fault, sim_reply *out)
{
    if (fault == SIM_F_BUSY) {
        gw_error(out, 5000, "system busy, try later");
        return;
    }
    if (fault == SIM_F_UNAUTHORIZED) {
        /* the protocol's answer to a key it does not accept: code 1001 on HTTP 200 */
        gw_error(out, 1001, "bad signature");
        return;
    }
    if (strcmp(rq->method, "POST")) {
        sim_reply_text(out, 405, "text/plain", "method not allowed\n");
        return;
    }
    gw_req g = {0};
    const char *msg = "";
    int bad = fault == SIM_F_BAD_SIGNATURE;
    int code = gw_verify(s, rq, &g, &msg);
    if (code)
        gw_error(out, code, msg);
    else if (!strcmp(g.method, "gw.goods.list") || !strcmp(g.method, "gw.goods.info") ||
             !strcmp(g.method, "gw.goods.stock"))
        m_goods(s, &g, out, bad);
    else if (!strcmp(g.method, "gw.order.card.add") || !strcmp(g.method, "gw.order.direct.add"))
        m_order_add(s, &g, out, bad);
    else if (!strcmp(g.method, "gw.order.info"))
        m_order_info(s, &g, out, bad);
    else if (!strcmp(g.method, "gw.account.info"))
        m_account(s, out, bad);
    else if (!strcmp(g.method, "gw.card.status"))
        m_card_status(s, &g, out, bad);
    else
        gw_error(out, GW_UNKNOWN_METHOD, "unknown method");
    json_decref(g.params);
    json_decref(g.biz);
}

/* ---- notify ------------------------------------------------------------------ */

char *sim_gw_notify_locked(sim *s, const sim_order *o, int64_t t, sim_nmode m)
{
    char price[24], ts[24], qty[16], sign[33];
    sim_yuan(o->amount_fen, price, sizeof price);
    sim_beijing_time(t, ts, sizeof ts);
    snprintf(qty, sizeof qty, "%d", o->quantity);
    json_t *p =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "order_id", o->order_id, "customer_order_no",
                  o->ref, "order_state", gw_state(o), "product_id", sim_catalog[o->product].id,
                  "buy_num", qty, "order_price", price, "timestamp", ts);
    if (!p)
        return NULL;
    if (o->delivered_fen > 0) { /* other_delivered: signed like every value */
        char dv[24];
        sim_yuan(o->delivered_fen, dv, sizeof dv);
        json_object_set_new(p, "delivered_value", json_string(dv));
    }
    if (m == SIM_N_CONTRADICT) /* flipped, then signed: the supplier says so itself */
        json_object_set_new(p, "order_state",
                            json_string(o->state == SIM_SUCCESS ? "failed" : "success"));
    char secret[256];
    snprintf(secret, sizeof secret, "%s%s", s->cfg.gw_secret, m == SIM_N_FORGED ? "-forged" : "");
    sim_gw_sign(p, secret, sign);
    json_object_set_new(p, "sign", json_string(sign));
    if (m == SIM_N_TAMPERED)
        json_object_set_new(p, "order_state",
                            json_string(o->state == SIM_SUCCESS ? "failed" : "success"));
    char *body = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    return body;
}
