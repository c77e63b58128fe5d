#include "http/views.h"

#include <stdio.h>
#include <string.h>

#include "codes/import.h"
#include "base/util.h"

void ph_view_time(json_t *o, const char *key, int64_t ms)
{
    char buf[32];
    if (ms)
        json_object_set_new(o, key, json_string(ph_time_format(ms, buf, sizeof buf)));
}

static json_t *money(int64_t fen)
{
    char buf[32];
    return json_string(ph_money_format(fen, buf, sizeof buf));
}

static json_t *view_code(const ph_code *c, const ph_keyring *kr)
{
    char code[PH_CODE_MAX + 1], card[PH_CODE_MAX + 1];
    json_t *o = json_object();
    if (ph_code_unseal(kr, c->sealed, c->sealed_len, code, card) != PH_OK) {
        json_object_set_new(o, "error", json_string("unreadable"));
        return o;
    }
    json_object_set_new(o, "code", json_string(code));
    if (card[0])
        json_object_set_new(o, "card_no", json_string(card));
    ph_view_time(o, "expires_at", c->expires_at);
    json_object_set_new(o, "state", json_string(ph_code_state_name(c->state)));
    ph_wipe(code, sizeof code);
    ph_wipe(card, sizeof card);
    return o;
}

static json_t *view_attempt(const ph_attempt *a)
{
    json_t *j = json_pack("{s:I,s:s,s:s,s:s,s:o}", "attempt", (json_int_t)a->no, "supplier",
                          a->supplier, "supplier_sku", a->product_id, "state",
                          ph_attempt_state_name(a->state), "unit_cost", money(a->unit_cost));
    if (!j)
        return NULL;
    json_object_set_new(j, "ref", json_string(a->ref)); /* our order number at the supplier */
    if (a->supplier_order_id[0])
        json_object_set_new(j, "supplier_order_id", json_string(a->supplier_order_id));
    if (a->reason[0])
        json_object_set_new(j, "reason", json_string(a->reason));
    if (a->charged >= 0)
        json_object_set_new(j, "charged", money(a->charged));
    if (a->delivered > 0) /* the face value the supplier says it delivered (issue 11) */
        json_object_set_new(j, "delivered", money(a->delivered));
    json_object_set_new(j, "checks", json_integer(a->checks));
    ph_view_time(j, "created_at", a->created_at);
    ph_view_time(j, "updated_at", a->updated_at);
    ph_view_time(j, "next_check_at", a->next_check_at);
    ph_view_time(j, "stuck_at", a->stuck_at);
    if (a->settled_at) {
        ph_view_time(j, "settled_at", a->settled_at);
        json_object_set_new(j, "settled_by", json_string(a->settled_by));
        json_object_set_new(j, "settle_note", json_string(a->settle_note));
    }
    return j;
}

/* What a supplier order adds: why it failed or is unknown, when perkhub looks
 * again, the masked account; the attempts themselves for ops. */
static void view_supply(json_t *j, const ph_order *o, const ph_config *cfg, int with_cost)
{
    if (o->reason[0])
        json_object_set_new(j, "reason", json_string(o->reason));
    if (o->account_masked[0])
        json_object_set_new(j, "account", json_string(o->account_masked));
    const ph_attempt *last = o->nattempts ? &o->attempts[o->nattempts - 1] : NULL;
    /* a granted order with attempts is a grant given back: nothing to look at */
    if (last && !ph_order_state_final(o->state) && o->state != PH_ORDER_GRANTED) {
        /* No query is scheduled while the request is on the wire: its answer,
         * or the supplier's timeout, comes by then, which is when a client
         * (holding the first 202) should look again. */
        const ph_supplier_conf *s = ph_config_supplier(cfg, last->supplier);
        int64_t next = last->next_check_at;
        if (!next && s)
            next = last->updated_at + (int64_t)s->timeout_ms;
        ph_view_time(j, "next_check_at", next);
    }
    /* stuck and settled by hand (issue 11): every reader of the order sees
     * it, the mall included (who settled it and why) */
    ph_view_time(j, "stuck_since", ph_order_stuck_since(o));
    if (last && last->settled_at) {
        ph_view_time(j, "settled_at", last->settled_at);
        json_object_set_new(j, "settled_by", json_string(last->settled_by));
        json_object_set_new(j, "settle_note", json_string(last->settle_note));
    }
    if (!with_cost || !o->nattempts)
        return;
    json_t *arr = json_array();
    for (size_t i = 0; i < o->nattempts; i++)
        json_array_append_new(arr, view_attempt(&o->attempts[i]));
    json_object_set_new(j, "attempts", arr);
}

json_t *ph_view_order(const ph_order *o, const ph_config *cfg, const ph_keyring *kr, int with_codes,
                      int with_cost)
{
    const ph_product_conf *p = ph_config_product(cfg, o->sku);
    json_t *j =
        json_pack("{s:I,s:s,s:s,s:s,s:s?,s:I,s:s,s:s}", "id", (json_int_t)o->id, "client",
                  o->client, "client_order_id", o->client_order_id, "sku", o->sku, "product_name",
                  p ? p->name : NULL, "quantity", (json_int_t)o->quantity, "delivery",
                  ph_delivery_name(o->delivery ? o->delivery : PH_DELIVERY_CARD_CODE), "state",
                  ph_order_state_name(o->state));
    if (!j)
        return NULL;
    json_object_set_new(j, "source",
                        json_string(o->delivery == PH_DELIVERY_BUNDLE ? "bundle"
                                    : ph_order_via_supplier(o)        ? "supplier"
                                                                      : "stock"));
    ph_view_time(j, "created_at", o->created_at);
    ph_view_time(j, "updated_at", o->updated_at);
    if (with_cost)
        json_object_set_new(j, "cost", money(o->cost));
    view_supply(j, o, cfg, with_cost);
    /* a grant's reserved codes are the holder's only once claimed (issue 16) */
    if (with_codes && o->codes && o->state != PH_ORDER_GRANTED) {
        json_t *codes = json_array();
        for (size_t i = 0; i < o->ncodes; i++)
            json_array_append_new(codes, view_code(&o->codes[i], kr));
        json_object_set_new(j, "codes", codes);
    }
    return j;
}

void ph_view_end_user(json_t *view, const json_t *record)
{
    static const char *const shown[] = {"id", "ip", "device", "phone", "tags"};
    json_t *eu = json_object_get(record, "end_user"), *out = NULL;
    for (size_t i = 0; view && eu && i < sizeof shown / sizeof shown[0]; i++) {
        json_t *v = json_object_get(eu, shown[i]);
        if (v && (out || (out = json_object())))
            json_object_set(out, shown[i], v);
    }
    if (out)
        json_object_set_new(view, "end_user", out);
}

json_t *ph_view_batch(const ph_batch *b, const uint64_t *counts)
{
    json_t *j =
        json_pack("{s:I,s:s,s:s,s:o,s:s,s:I,s:s}", "id", (json_int_t)b->id, "supplier", b->supplier,
                  "sku", b->sku, "unit_cost", money(b->unit_cost), "note", b->note, "count",
                  (json_int_t)b->count, "state", b->voided ? "voided" : "active");
    if (!j)
        return NULL;
    ph_view_time(j, "created_at", b->created_at);
    if (b->voided) {
        ph_view_time(j, "voided_at", b->voided_at);
        json_object_set_new(j, "void_reason", json_string(b->void_reason));
    }
    if (counts)
        json_object_set_new(j, "codes",
                            json_pack("{s:I,s:I,s:I,s:I,s:I}", "available",
                                      (json_int_t)counts[PH_CODE_AVAILABLE], "issued",
                                      (json_int_t)counts[PH_CODE_ISSUED], "redeemed",
                                      (json_int_t)counts[PH_CODE_REDEEMED], "voided",
                                      (json_int_t)counts[PH_CODE_VOIDED], "expired",
                                      (json_int_t)counts[PH_CODE_EXPIRED]));
    return j;
}

json_t *ph_view_product_stored(const ph_product_conf *p)
{
    json_t *tags = json_array(), *offers = json_array();
    for (size_t i = 0; i < p->ntags; i++)
        json_array_append_new(tags, json_string(p->tags[i]));
    for (size_t i = 0; i < p->noffers; i++) {
        json_t *o = json_pack("{s:s,s:s,s:I}", "supplier", p->offers[i].supplier, "supplier_sku",
                              p->offers[i].supplier_sku, "cost_fen", (json_int_t)p->offers[i].cost);
        /* only when configured, so offers without one keep their stored bytes */
        if (o && p->offers[i].max_cost > 0)
            json_object_set_new(o, "max_cost_fen", json_integer((json_int_t)p->offers[i].max_cost));
        json_array_append_new(offers, o);
    }
    json_t *j = json_pack(
        "{s:s,s:s,s:s,s:s,s:o,s:s,s:I,s:s,s:b,s:o}", "sku", p->sku, "name", p->name, "brand",
        p->brand, "category", p->category, "tags", tags, "delivery", ph_delivery_name(p->delivery),
        "face_value_fen", (json_int_t)p->face_value, "redemption_guide",
        p->redemption_guide ? p->redemption_guide : "", "listed", p->listed, "offers", offers);
    /* sale prices (the ledger reads them, store_ledger.c): left out when not
     * configured, so products without prices keep their stored bytes */
    if (j && p->price_set)
        json_object_set_new(j, "price_fen", json_integer((json_int_t)p->price));
    if (j && p->nprices) {
        json_t *pr = json_object();
        for (size_t i = 0; i < p->nprices; i++)
            json_object_set_new(pr, p->prices[i].client,
                                json_integer((json_int_t)p->prices[i].price));
        json_object_set_new(j, "prices", pr);
    }
    /* the writer's rules (store_alerts.c): left out when not configured, so
     * products without them keep their stored bytes */
    if (j && p->min_validity_days)
        json_object_set_new(j, "min_validity_days", json_integer(p->min_validity_days));
    if (j && p->low_below)
        json_object_set_new(j, "low_stock",
                            json_pack("{s:I,s:I}", "below", (json_int_t)p->low_below, "margin",
                                      (json_int_t)p->low_margin));
    /* a bundle's components (issue 16): the writer builds a bundle order from these */
    if (j && p->ncomponents) {
        json_t *cs = json_array();
        for (size_t i = 0; i < p->ncomponents; i++)
            json_array_append_new(cs, json_pack("{s:s,s:I}", "sku", p->components[i].sku,
                                                "quantity", (json_int_t)p->components[i].quantity));
        json_object_set_new(j, "components", cs);
    }
    return j;
}

/* What perkhub knows of a product's stock: the local count, or null when it
 * does not know (docs/api.md, "stock"). A recharge has no local stock; a
 * card-code product with supplier offers and nothing issuable locally may
 * still be delivered by a supplier, whose stock is not known here. */
static json_t *stock_available(json_t *stored, uint64_t available)
{
    const char *delivery = json_string_value(json_object_get(stored, "delivery"));
    int card = ph_delivery_parse(delivery) == PH_DELIVERY_CARD_CODE;
    int offers = json_array_size(json_object_get(stored, "offers")) > 0;
    if (!card || (offers && available == 0))
        return json_null();
    return json_integer((json_int_t)available);
}

/* An offer's upstream state as sync last saw it (store.h, ph_offer_state;
 * the store's read adds it as offers[i].upstream): unknown members are null,
 * never 0. */
static json_t *upstream_view(json_t *u)
{
    json_int_t cost = json_integer_value(json_object_get(u, "cost_fen"));
    json_int_t stock = json_integer_value(json_object_get(u, "stock"));
    json_int_t at = json_integer_value(json_object_get(u, "stock_at"));
    json_int_t on = json_integer_value(json_object_get(u, "on_sale"));
    json_t *v =
        json_pack("{s:o,s:o,s:o,s:o}", "cost", u && cost >= 0 ? money(cost) : json_null(), "stock",
                  u && stock >= 0 ? json_integer(stock) : json_null(), "on_sale",
                  !u || on < 0 ? json_null() : json_boolean(on), "over_max",
                  u ? json_boolean(json_is_true(json_object_get(u, "over_max"))) : json_null());
    if (v && u && at > 0) {
        ph_view_time(v, "stock_at", at);
        int64_t age = ph_now_ms() - at;
        json_object_set_new(v, "age_s", json_integer(age > 0 ? age / 1000 : 0));
    } else if (v) {
        json_object_set_new(v, "stock_at", json_null());
        json_object_set_new(v, "age_s", json_null());
    }
    return v;
}

/* What sync added to a product: stock.suppliers (the supplier stock of its
 * usable offers, null when unknown), why it is delisted, and its pin (ops). */
static void sync_view(json_t *j, json_t *s, int ops)
{
    if (!j)
        return;
    /* no offer: nothing to come from suppliers, known; else what the read added */
    json_t *ss = json_object_get(s, "supplier_stock");
    int none = json_array_size(json_object_get(s, "offers")) == 0;
    json_object_set_new(json_object_get(j, "stock"), "suppliers",
                        none                  ? json_integer(0)
                        : json_is_integer(ss) ? json_integer(json_integer_value(ss))
                                              : json_null());
    json_t *why = json_object_get(json_object_get(s, "delisted"), "reason");
    if (why)
        json_object_set(j, "delisted_reason", why);
    if (ops) {
        json_t *pin = json_object_get(s, "pin");
        json_object_set_new(j, "pin", pin ? json_incref(pin) : json_string("none"));
    }
}

json_t *ph_view_product(const char *stored_json, uint64_t available, int with_offers)
{
    json_t *s = json_loads(stored_json, 0, NULL);
    if (!s)
        return NULL;
    json_t *fv = json_object_get(s, "face_value_fen");
    json_t *j =
        json_pack("{s:O,s:O,s:O,s:O,s:O,s:O,s:o,s:O,s:O,s:{s:o}}", "sku", json_object_get(s, "sku"),
                  "name", json_object_get(s, "name"), "brand", json_object_get(s, "brand"),
                  "category", json_object_get(s, "category"), "tags", json_object_get(s, "tags"),
                  "delivery", json_object_get(s, "delivery"), "face_value",
                  money(json_integer_value(fv)), "listed", json_boolean(ph_product_listed(s)),
                  "redemption_guide", json_object_get(s, "redemption_guide"), "stock", "available",
                  stock_available(s, available));
    sync_view(j, s, with_offers);
    json_t *comps = json_object_get(s, "components"); /* a bundle's, as configured */
    if (j && comps)
        json_object_set(j, "components", comps);
    if (j && with_offers) {
        json_t *offers = json_array(), *of;
        size_t i;
        json_array_foreach(json_object_get(s, "offers"), i, of)
        {
            json_t *o = json_pack("{s:O,s:O,s:o}", "supplier", json_object_get(of, "supplier"),
                                  "supplier_sku", json_object_get(of, "supplier_sku"), "cost",
                                  money(json_integer_value(json_object_get(of, "cost_fen"))));
            json_t *mc = json_object_get(of, "max_cost_fen");
            if (o && mc)
                json_object_set_new(o, "max_cost", money(json_integer_value(mc)));
            if (o)
                json_object_set_new(o, "upstream", upstream_view(json_object_get(of, "upstream")));
            json_array_append_new(offers, o);
        }
        json_object_set_new(j, "offers", offers);
    }
    json_decref(s);
    return j;
}

void ph_view_product_local(json_t *product, const ph_local_stock *l)
{
    json_t *stock = json_object_get(product, "stock");
    if (json_is_object(stock))
        json_object_set_new(stock, "local",
                            json_pack("{s:I,s:I}", "available", (json_int_t)l->available,
                                      "issuable", (json_int_t)l->issuable));
}

/* ---- a code lookup's result ---------------------------------------------------- */

static void fmt_day(int64_t ms, char *buf, size_t len)
{
    char t[32];
    snprintf(buf, len, "%.10s", ph_time_format(ms, t, sizeof t));
}

const char *ph_view_diagnose(const ph_code *c, const ph_batch *b, int64_t now, char *advice,
                             size_t len)
{
    char day[16], exp[16];
    fmt_day(c->changed_at, day, sizeof day);
    fmt_day(c->expires_at, exp, sizeof exp);
    int past = c->expires_at && c->expires_at <= now;
    if (c->state == PH_CODE_VOIDED) {
        snprintf(advice, len,
                 "The supplier voided this code's batch on %s; it cannot be redeemed. Offer the "
                 "customer a replacement.",
                 b->voided ? day : "an unknown date");
        return "voided_upstream";
    }
    if (c->state == PH_CODE_EXPIRED || (past && c->state != PH_CODE_REDEEMED)) {
        snprintf(advice, len, "The code expired on %s and can no longer be redeemed.", exp);
        return "expired";
    }
    if (c->state == PH_CODE_ISSUED) {
        snprintf(advice, len,
                 "Issued on %s and valid%s%s. Follow the redemption guide; if the platform "
                 "rejects it, escalate with a screenshot of the error.",
                 day, c->expires_at ? " until " : "", c->expires_at ? exp : "");
        return "issued";
    }
    if (c->state == PH_CODE_REDEEMED) {
        snprintf(advice, len, "The code was already redeemed on %s.", day);
        return "already_redeemed";
    }
    if (c->state == PH_CODE_RESERVED) {
        snprintf(advice, len, "The order holding this code is still processing.");
        return "processing";
    }
    snprintf(advice, len, "In stock; not issued to any order yet.");
    return "available";
}

json_t *ph_view_not_found(void)
{
    return json_pack("{s:s,s:s}", "diagnosis", "not_found", "advice", PH_VIEW_NOT_FOUND_ADVICE);
}

json_t *ph_view_lookup(const ph_lookup_view *v)
{
    char advice[320];
    const char *name = ph_view_diagnose(v->code, v->batch, v->now, advice, sizeof advice);
    const ph_product_conf *p = v->product;
    json_t *j = json_pack("{s:s,s:s,s:s,s:s?,s:I}", "diagnosis", name, "state",
                          ph_code_state_name(v->code->state), "sku", v->batch->sku, "product_name",
                          p ? p->name : NULL, "batch_id", (json_int_t)v->batch->id);
    if (!j)
        return NULL;
    if (v->owner_code)
        json_object_set_new(j, "code", json_string(v->owner_code));
    if (v->ops)
        json_object_set_new(j, "supplier", json_string(v->batch->supplier));
    const ph_order *o = v->order;
    if (o) {
        uint64_t parent;
        json_object_set_new(j, "order_id", json_integer((json_int_t)o->id));
        json_object_set_new(j, "client_order_id", json_string(o->client_order_id));
        if (ph_order_component_of(o, &parent)) /* a bundle's component (issue 16) */
            json_object_set_new(j, "parent", json_integer((json_int_t)parent));
        ph_view_time(j, "issued_at", o->created_at);
    }
    ph_view_time(j, "expires_at", v->code->expires_at);
    if (v->batch->voided)
        ph_view_time(j, "voided_at", v->batch->voided_at);
    json_object_set_new(j, "redemption_guide",
                        json_string(p && p->redemption_guide ? p->redemption_guide : ""));
    json_object_set_new(j, "advice", json_string(advice));
    return j;
}
