/*
 * test_views.c — the order view written as text for the hot path
 * (ph_view_stock_order_text) must be byte for byte what jansson prints of the
 * tree view (ph_view_order): escapes, control bytes, CJK and emoji, a product
 * missing from the config, codes that do not unseal, expiry present or not,
 * updated_at present or not. Where jansson would refuse a string (invalid
 * UTF-8) and for supplier orders, the text renderer must decline (NULL) so the
 * caller renders the tree. The same for a lookup by code's answer
 * (ph_view_lookup_text against ph_view_lookup / ph_view_not_found).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "crypto/crypto.h"
#include "codes/import.h"
#include "base/util.h"
#include "http/views.h"

static ph_config *cfg;
static ph_keyring *kr;

static void setup(void)
{
    const char *yaml =
        "data_dir: var/data\nmaster_key_file: var/master.key\n"
        "products:\n"
        "  - {sku: a.plain, name: Plain card, brand: b, category: video, delivery: card_code, "
        "face_value: \"30.00\"}\n"
        "  - {sku: a.esc, name: \"q\\\"uo\\\\te /slash \\t tab \\u0001 ctl \\u007f del\", brand: "
        "b, category: video, delivery: card_code, face_value: \"30.00\"}\n"
        "  - {sku: a.cjk, name: \"爱奇艺黄金会员月卡 😀\", brand: b, category: video, delivery: "
        "card_code, face_value: \"30.00\"}\n"
        "  - {sku: a.guide, name: Guided, brand: b, category: video, delivery: card_code, "
        "face_value: \"30.00\", redemption_guide: \"Open the app \\\"VIP\\\" tab\\n兑换\"}\n";
    ph_err err = {0};
    cr_assert_eq(ph_config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, &err), PH_OK, "%s",
                 err.msg);
    uint8_t k1[PH_KEY_LEN] = {1}, k2[PH_KEY_LEN] = {2};
    cr_assert_eq(ph_keyring_from_raw(k1, 7, k2, &kr, &err), PH_OK, "%s", err.msg);
}

static void teardown(void)
{
    ph_config_free(cfg);
    ph_keyring_free(kr);
}

TestSuite(views, .init = setup, .fini = teardown);

/* 1 when the text equals the tree's dump; 0 when the text renderer declined. */
static int same_as_tree(const ph_order *o)
{
    json_t *j = json_pack("{s:o}", "order", ph_view_order(o, cfg, kr, 1, 0));
    char *want = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    size_t len = 0;
    char *got = ph_view_stock_order_text(o, cfg, kr, &len);
    if (got) {
        cr_assert_not_null(want);
        cr_expect_str_eq(got, want, "order %s", o->client_order_id);
        cr_expect_eq(len, strlen(got));
    }
    free(want);
    free(got);
    return got != NULL;
}

static ph_code seal(const char *code, const char *card, int64_t expires, int tamper)
{
    uint8_t *sealed = malloc(512), h[32];
    size_t sl = 0;
    cr_assert_eq(ph_code_seal(kr, code, strlen(code), card, strlen(card), sealed, &sl, h), PH_OK);
    if (tamper)
        sealed[sl - 1] ^= 1; /* does not unseal: rendered {"error":"unreadable"} */
    return (ph_code){.id = 50,
                     .state = PH_CODE_ISSUED,
                     .expires_at = expires,
                     .sealed_len = (uint32_t)sl,
                     .sealed = sealed};
}

Test(views, text_equals_the_tree_byte_for_byte)
{
    const char *codes[][2] = {{"ABC-123", ""},
                              {"q\"b\\s/", "CARD-1"},
                              {"tab\tnl\nbs\bff\fcr\r", ""},
                              {"ctl\x01\x1f\x7f", "c\x02"},
                              {"中文码", "卡号"},
                              {"emoji😀", ""}};
    const char *skus[] = {"a.plain", "a.esc", "a.cjk", "no.such"};
    int compared = 0;
    for (size_t si = 0; si < 4; si++)
        for (size_t n = 0; n <= 6; n++) {
            ph_order o = {0};
            o.id = 1000 + n;
            snprintf(o.client, sizeof o.client, "mall");
            snprintf(o.client_order_id, sizeof o.client_order_id, "x-%zu:%zu", si, n);
            snprintf(o.sku, sizeof o.sku, "%s", skus[si]);
            o.quantity = (uint32_t)(n ? n : 1);
            o.state = n == 3 ? PH_ORDER_FAILED : PH_ORDER_SUCCEEDED;
            o.created_at = 1795000000123LL;
            o.updated_at = n == 2 ? 0 : 1795000000456LL;
            ph_code cs[6];
            for (size_t i = 0; i < n; i++)
                cs[i] =
                    seal(codes[i][0], codes[i][1], i % 2 ? 1800000000000LL : 0, i == 5 && si == 1);
            o.codes = n == 6 && si == 3 ? NULL : cs;
            o.ncodes = n;
            compared += same_as_tree(&o);
            for (size_t i = 0; i < n; i++)
                free(cs[i].sealed);
        }
    cr_expect_eq(compared, 28, "every plain stock order is rendered as text");
}

Test(views, text_declines_what_jansson_would_refuse_and_supplier_orders)
{
    const char *bad[] = {"\xff",       "\xc0\x80",    "\xed\xa0\x80", "\xf4\x90\x80\x80",
                         "ab\xe4\xb8", "\xe0\x80\xaf"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ph_order o = {.id = 1, .quantity = 1, .state = PH_ORDER_SUCCEEDED};
        snprintf(o.client, sizeof o.client, "mall");
        snprintf(o.client_order_id, sizeof o.client_order_id, "bad-%zu", i);
        snprintf(o.sku, sizeof o.sku, "a.plain");
        ph_code c = seal(bad[i], "", 0, 0);
        o.codes = &c;
        o.ncodes = 1;
        cr_expect_eq(same_as_tree(&o), 0, "invalid UTF-8 %zu must fall back to the tree", i);
        free(c.sealed);
    }
    ph_order s = {.id = 2, .quantity = 1, .delivery = PH_DELIVERY_RECHARGE};
    snprintf(s.sku, sizeof s.sku, "a.plain");
    cr_expect_eq(same_as_tree(&s), 0, "a supplier order takes the tree");
}

/* ph_json_str, the escaper both hand-written texts (this view, the store's
 * supplier events) go through: the same bytes as jansson for every byte class,
 * and a refusal exactly where jansson refuses the string. */
typedef struct sbuf {
    char b[256];
    size_t n;
} sbuf;

static void sbuf_put(void *s, const char *p, size_t n)
{
    sbuf *sb = s;
    cr_assert(sb->n + n < sizeof sb->b);
    memcpy(sb->b + sb->n, p, n);
    sb->n += n;
    sb->b[sb->n] = 0;
}

Test(views, json_str_is_jansson_byte_for_byte)
{
    const char *ok[] = {"", "plain", "q\"b\\s/", "\b\f\n\r\t", "\x01\x1f\x7f", "中文 ✓ 😀"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        sbuf sb = {.n = 0};
        cr_assert_eq(ph_json_str(ok[i], sbuf_put, &sb), 0, "case %zu", i);
        json_t *j = json_string(ok[i]);
        cr_assert_not_null(j);
        char *want = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
        cr_assert_str_eq(sb.b, want, "case %zu", i);
        free(want);
        json_decref(j);
    }
    const char *bad[] = {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "ab\xe4\xb8"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sbuf sb = {.n = 0};
        cr_assert_eq(ph_json_str(bad[i], sbuf_put, &sb), -1, "bad case %zu", i);
        cr_assert_null(json_string(bad[i]), "jansson accepts bad case %zu", i);
    }
}

/* stock.available of ph_view_product for a stored product and a local count. */
static json_t *stock_available(const char *stored, uint64_t available)
{
    json_t *p = ph_view_product(stored, available, 0);
    cr_assert_not_null(p);
    json_t *a = json_object_get(json_object_get(p, "stock"), "available");
    cr_assert_not_null(a, "stock.available missing");
    json_incref(a);
    json_decref(p);
    return a;
}

/* Unknown stock is null, never 0 (issue 9, defect 6); a known count is a number. */
Test(views, product_stock_is_null_where_perkhub_does_not_know_it)
{
#define P_COMMON                                                                                   \
    "\"name\":\"n\",\"brand\":\"b\",\"category\":\"c\",\"tags\":[],\"redemption_guide\":\"\","
    static const char *const recharge =
        "{" P_COMMON
        "\"sku\":\"t.r\",\"delivery\":\"recharge\",\"listed\":true,\"face_value_fen\":5000,"
        "\"offers\":[{\"supplier\":\"s\",\"supplier_sku\":\"x\",\"cost_fen\":4900}]}";
    static const char *const card_offer =
        "{" P_COMMON
        "\"sku\":\"t.c\",\"delivery\":\"card_code\",\"listed\":true,\"face_value_fen\":3000,"
        "\"offers\":[{\"supplier\":\"s\",\"supplier_sku\":\"y\",\"cost_fen\":1900}]}";
    static const char *const card_stock =
        "{" P_COMMON
        "\"sku\":\"t.s\",\"delivery\":\"card_code\",\"listed\":true,\"face_value_fen\":3000,"
        "\"offers\":[]}";
    struct {
        const char *stored;
        uint64_t available;
        json_int_t want; /* -1: null */
    } cases[] = {
        {recharge, 0, -1},   /* no local stock at all */
        {recharge, 3, -1},   /* whatever the store says: recharges have no codes */
        {card_offer, 0, -1}, /* nothing local; the supplier's stock is not known here */
        {card_offer, 4, 4},  /* local codes: known, what stock can issue now */
        {card_stock, 0, 0},  /* stock only: sold out is a known 0 */
        {card_stock, 7, 7},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *a = stock_available(cases[i].stored, cases[i].available);
        if (cases[i].want < 0)
            cr_expect(json_is_null(a), "case %zu: want null", i);
        else
            cr_expect(json_is_integer(a) && json_integer_value(a) == cases[i].want,
                      "case %zu: want %lld", i, (long long)cases[i].want);
        json_decref(a);
    }
}

/* "Is this a supplier order?" has one answer (ph_order_via_supplier): a supplier
 * order that no supplier could take (failed at creation, no attempt) is still
 * a supplier order, and a stock order is never one. */
Test(views, source_is_supplier_for_every_supplier_order)
{
    static const struct {
        int delivery;
        size_t nattempts;
        int state;
        const char *source, *delivery_name;
    } cases[] = {
        {0, 0, PH_ORDER_SUCCEEDED, "stock", "card_code"},
        {PH_DELIVERY_CARD_CODE, 0, PH_ORDER_FAILED, "supplier", "card_code"},
        {PH_DELIVERY_RECHARGE, 0, PH_ORDER_FAILED, "supplier", "recharge"},
        {PH_DELIVERY_RECHARGE, 1, PH_ORDER_SUCCEEDED, "supplier", "recharge"},
    };
    ph_attempt a = {.no = 1, .state = PH_ATTEMPT_SUCCEEDED};
    snprintf(a.supplier, sizeof a.supplier, "sbx");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ph_order o = {.id = 9,
                      .quantity = 1,
                      .state = cases[i].state,
                      .delivery = cases[i].delivery,
                      .nattempts = cases[i].nattempts,
                      .attempts = cases[i].nattempts ? &a : NULL};
        snprintf(o.sku, sizeof o.sku, "a.plain");
        json_t *j = ph_view_order(&o, cfg, kr, 0, 0);
        cr_assert_not_null(j);
        cr_expect_str_eq(json_string_value(json_object_get(j, "source")), cases[i].source,
                         "case %zu", i);
        cr_expect_str_eq(json_string_value(json_object_get(j, "delivery")), cases[i].delivery_name,
                         "case %zu", i);
        json_decref(j);
    }
}

/* The lookup answer as text equals jansson's dump of the tree, shown or not. */
static int lookup_same(const ph_lookup_view *v, int shown)
{
    json_t *res = shown ? ph_view_lookup(v) : ph_view_not_found();
    json_t *j = json_pack("{s:[o]}", "results", res);
    char *want = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    size_t len = 0;
    char *got = ph_view_lookup_text(v, shown, &len);
    if (got) {
        cr_assert_not_null(want);
        cr_expect_str_eq(got, want);
        cr_expect_eq(len, strlen(got));
    }
    free(want);
    free(got);
    return got != NULL;
}

Test(views, lookup_text_equals_the_tree_byte_for_byte)
{
    const char *skus[] = {"a.plain", "a.esc", "a.cjk", "a.guide", "no.such"};
    const char *coids[] = {"plain-1", "q\"uote\\back\x01", "#77.2", "中文-😀"};
    int compared = 0, cases = 0;
    for (int state = PH_CODE_AVAILABLE; state <= PH_CODE_EXPIRED; state++)
        for (size_t si = 0; si < 5; si++)
            for (size_t oi = 0; oi <= 4; oi++)
                for (int shown = 0; shown <= 1; shown++) {
                    ph_code c = {.id = 9,
                                 .state = state,
                                 .changed_at = 1795000000123LL,
                                 .expires_at = (oi % 2) ? 1800000000000LL : 0};
                    ph_batch b = {.id = 3, .voided = oi == 3, .voided_at = 1796000000000LL};
                    snprintf(b.sku, sizeof b.sku, "%s", skus[si]);
                    snprintf(b.supplier, sizeof b.supplier, "acme");
                    ph_order o = {.id = 41 + oi, .created_at = 1795000000999LL};
                    if (oi < 4)
                        snprintf(o.client_order_id, sizeof o.client_order_id, "%s", coids[oi]);
                    ph_lookup_view v = {.code = &c,
                                        .batch = &b,
                                        .order = oi < 4 ? &o : NULL,
                                        .product = ph_config_product(cfg, b.sku),
                                        .owner_code = oi == 1 ? "OWN-\"1\"" : NULL,
                                        .ops = (int)(oi % 2),
                                        .now = 1797000000000LL};
                    compared += lookup_same(&v, shown);
                    cases++;
                }
    cr_expect_eq(compared, cases, "every lookup answer is rendered as text");
}

Test(views, lookup_text_declines_invalid_utf8)
{
    ph_code c = {.id = 9, .state = PH_CODE_ISSUED};
    ph_batch b = {.id = 3};
    snprintf(b.sku, sizeof b.sku, "a.plain");
    ph_order o = {.id = 5};
    snprintf(o.client_order_id, sizeof o.client_order_id, "bad\xff");
    ph_lookup_view v = {
        .code = &c, .batch = &b, .order = &o, .product = ph_config_product(cfg, b.sku)};
    /* shown or dropped, the result is rendered: a string jansson would refuse
     * sends both answers to the tree (which refuses the same way) */
    cr_expect_eq(lookup_same(&v, 1), 0);
    cr_expect_eq(lookup_same(&v, 0), 0);
}
