/*
 * view_text.c — the hot path's order view as text (views.h,
 * ph_view_stock_order_text): a stock order's response written straight into a
 * buffer, byte for byte what json_dumps(JSON_COMPACT | JSON_PRESERVE_ORDER)
 * makes of {"order": ph_view_order(o, cfg, kr, 1, 0)}. Building and dumping the
 * jansson tree cost about 13 % of perkhubd's CPU per order (bench/README.md,
 * "Where an order's CPU goes"). tests/unit/test_views.c holds the two
 * renderings equal over escapes, UTF-8, missing products and unreadable codes.
 * A lookup by code (ph_view_lookup_text) is written the same way: it is the
 * support bots' hot path (bench/run.sh's lookups).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codes/import.h"
#include "base/util.h"
#include "http/views.h"

/* ---- the stock order's response, written as text ------------------------------
 * POST /v1/orders answers every stock order with {"order": ph_view_order(o, with
 * codes, without cost)}. Building that as a jansson tree and dumping it cost more
 * than the rest of the request's user-space work, so a stock order is written
 * here directly, byte for byte what json_dumps(JSON_COMPACT | JSON_PRESERVE_ORDER)
 * makes of the tree. Anything that is not a plain stock order (a supplier's
 * order, a string that is not valid UTF-8) takes the tree. */

typedef ph_wbuf txt_buf; /* crypto.h: grown with the old blocks wiped (codes) */

static void txt_put(txt_buf *b, const char *s, size_t n)
{
    ph_wbuf_put(b, s, n);
}

static void txt_lit(txt_buf *b, const char *s)
{
    txt_put(b, s, strlen(s));
}

static void txt_int(txt_buf *b, long long v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%lld", v);
    txt_put(b, num, (size_t)n);
}

static void txt_sink(void *b, const char *s, size_t n)
{
    txt_put(b, s, n);
}

/* A JSON string as jansson dumps it; -1 when s is not valid UTF-8 (jansson
 * would refuse the string). */
static int txt_str(txt_buf *b, const char *s)
{
    return ph_json_str(s, txt_sink, b);
}

/* ,"key":"value" (key a literal without escapes). */
static int txt_field(txt_buf *b, const char *key, const char *value)
{
    txt_put(b, ",\"", 2);
    txt_lit(b, key);
    txt_put(b, "\":", 2);
    return txt_str(b, value);
}

static int txt_time(txt_buf *b, const char *key, int64_t ms)
{
    char at[32];
    return ms ? txt_field(b, key, ph_time_format(ms, at, sizeof at)) : 0;
}

/* view_code() of views.c: the code opened for its owner. */
static int txt_code(txt_buf *b, const ph_code *c, const ph_keyring *kr)
{
    char code[PH_CODE_MAX + 1], card[PH_CODE_MAX + 1];
    int rc = 0;
    if (ph_code_unseal(kr, c->sealed, c->sealed_len, code, card) != PH_OK) {
        txt_lit(b, "{\"error\":\"unreadable\"}");
        return 0;
    }
    txt_lit(b, "{\"code\":");
    if (txt_str(b, code) || (card[0] && txt_field(b, "card_no", card)) ||
        txt_time(b, "expires_at", c->expires_at) ||
        txt_field(b, "state", ph_code_state_name(c->state)))
        rc = -1;
    txt_put(b, "}", 1);
    ph_wipe(code, sizeof code);
    ph_wipe(card, sizeof card);
    return rc;
}

/* created_at and updated_at: a new order has both at the same instant, formatted once. */
static int txt_times(txt_buf *b, const ph_order *o)
{
    char at[32] = "";
    if (o->created_at && txt_field(b, "created_at", ph_time_format(o->created_at, at, sizeof at)))
        return -1;
    if (o->updated_at && o->updated_at == o->created_at)
        return txt_field(b, "updated_at", at);
    return txt_time(b, "updated_at", o->updated_at);
}

static int txt_codes(txt_buf *b, const ph_order *o, const ph_keyring *kr)
{
    if (!o->codes)
        return 0;
    txt_lit(b, ",\"codes\":[");
    for (size_t i = 0; i < o->ncodes; i++) {
        if (i)
            txt_put(b, ",", 1);
        if (txt_code(b, &o->codes[i], kr))
            return -1;
    }
    txt_put(b, "]", 1);
    return 0;
}

/* {"order": ph_view_order(o, cfg, kr, 1, 0)} of a stock order, as text in *b
 * (the caller frees b->p, wiping it: it holds codes). -1 when o is not a plain
 * stock order or a string is not valid UTF-8: the caller renders the tree. */
static int txt_stock_order(txt_buf *b, const ph_order *o, const ph_config *cfg,
                           const ph_keyring *kr)
{
    if (ph_order_via_supplier(o) || o->state == PH_ORDER_GRANTED) /* reserved codes: never shown */
        return -1;
    const ph_product_conf *p = ph_config_product(cfg, o->sku);
    txt_lit(b, "{\"order\":{\"id\":");
    txt_int(b, (long long)o->id);
    if (txt_field(b, "client", o->client) || txt_field(b, "client_order_id", o->client_order_id) ||
        txt_field(b, "sku", o->sku))
        return -1;
    if (!p)
        txt_lit(b, ",\"product_name\":null");
    else if (txt_field(b, "product_name", p->name))
        return -1;
    txt_lit(b, ",\"quantity\":");
    txt_int(b, (long long)o->quantity);
    if (txt_field(b, "delivery", ph_delivery_name(PH_DELIVERY_CARD_CODE)) ||
        txt_field(b, "state", ph_order_state_name(o->state)) || txt_field(b, "source", "stock"))
        return -1;
    if (txt_times(b, o) || txt_codes(b, o, kr))
        return -1;
    txt_lit(b, "}}");
    return b->oom ? -1 : 0;
}

char *ph_view_stock_order_text(const ph_order *o, const ph_config *cfg, const ph_keyring *kr,
                               size_t *len)
{
    txt_buf b = {0};
    if (txt_stock_order(&b, o, cfg, kr) != 0) {
        ph_wbuf_free(&b);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

/* ---- a lookup by code's answer, written as text -------------------------------- */

/* ,"key":v (as jansson prints a json_integer of it). */
static void txt_u64(txt_buf *b, const char *key, uint64_t v)
{
    txt_put(b, ",\"", 2);
    txt_lit(b, key);
    txt_put(b, "\":", 2);
    txt_int(b, (long long)v);
}

/* ph_view_lookup(v) as text. */
static int txt_lookup(txt_buf *b, const ph_lookup_view *v)
{
    char advice[320];
    const char *name = ph_view_diagnose(v->code, v->batch, v->now, advice, sizeof advice);
    const ph_product_conf *p = v->product;
    const ph_order *o = v->order;
    uint64_t parent;
    txt_lit(b, "{\"diagnosis\":");
    if (txt_str(b, name) || txt_field(b, "state", ph_code_state_name(v->code->state)) ||
        txt_field(b, "sku", v->batch->sku))
        return -1;
    if (!p)
        txt_lit(b, ",\"product_name\":null");
    else if (txt_field(b, "product_name", p->name))
        return -1;
    txt_u64(b, "batch_id", v->batch->id);
    if ((v->owner_code && txt_field(b, "code", v->owner_code)) ||
        (v->ops && txt_field(b, "supplier", v->batch->supplier)))
        return -1;
    if (o) {
        txt_u64(b, "order_id", o->id);
        if (txt_field(b, "client_order_id", o->client_order_id))
            return -1;
        if (ph_order_component_of(o, &parent))
            txt_u64(b, "parent", parent);
        if (txt_time(b, "issued_at", o->created_at))
            return -1;
    }
    if (txt_time(b, "expires_at", v->code->expires_at) ||
        (v->batch->voided && txt_time(b, "voided_at", v->batch->voided_at)) ||
        txt_field(b, "redemption_guide", p && p->redemption_guide ? p->redemption_guide : "") ||
        txt_field(b, "advice", advice))
        return -1;
    txt_put(b, "}", 1);
    return 0;
}

char *ph_view_lookup_text(const ph_lookup_view *v, int shown, size_t *len)
{
    txt_buf b = {0}, dropped = {0};
    txt_lit(&b, "{\"results\":[");
    /* the result is written whether it is shown or not: the same work either way */
    int rc = txt_lookup(shown ? &b : &dropped, v);
    ph_wbuf_free(&dropped);
    if (!shown)
        txt_lit(&b, "{\"diagnosis\":\"not_found\",\"advice\":\"" PH_VIEW_NOT_FOUND_ADVICE "\"}");
    txt_lit(&b, "]}");
    if (rc != 0 || b.oom) {
        ph_wbuf_free(&b);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
