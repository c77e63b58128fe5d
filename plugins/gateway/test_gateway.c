/*
 * test_gateway.c — the gateway plugin against docs/protocols/gateway.md, through
 * the SDK test kit (the core's real host table, allocator and log format).
 *
 * The expected signatures, encrypted cards and timestamps come from
 * fixtures/sign_vectors.json and the recorded bodies next to it, made by
 * fixtures/make_fixtures.py with hashlib and `openssl enc`, never by this
 * plugin: a test passes only when the plugin agrees with the spec, not merely
 * with itself.
 *
 * Every test goes through kit_open/kit_close, which also check the two things
 * no test may break: the instance holds no more host blocks than right after
 * init (every request and result was given back), and nothing secret (the app
 * secret, a card code, a card number, a recharge account) reached a log line.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <perkhub/testkit.h>

#define NOW_MS       INT64_C(1795525200000) /* 2026-11-24 21:00:00 Beijing */
#define NOTIFY_TS_MS INT64_C(1795525170000) /* notify_good.json's timestamp */
#define REF          "PH-20261124-0001"

struct kit {
    phtk *tk;
    json_t *vec; /* sign_vectors.json */
    size_t baseline;
};

static json_t *vectors_load(void)
{
    json_error_t e;
    json_t *v = json_load_file(FIXTURE_DIR "/sign_vectors.json", 0, &e);
    cr_assert(v, "sign_vectors.json: %s (line %d)", e.text, e.line);
    return v;
}

static const char *vec_str(const json_t *v, const char *key)
{
    const char *s = json_string_value(json_object_get(v, key));
    cr_assert(s, "sign_vectors.json: no string '%s'", key);
    return s;
}

static phtk *open_with(const char *const *kv, char *err, size_t errlen)
{
    return phtk_open(perkhub_plugin_entry(), kv, err, errlen);
}

static struct kit kit_open(void)
{
    struct kit k = {.vec = vectors_load()};
    const char *kv[] = {
        "gateway_url", vec_str(k.vec, "gateway_url"), "app_key", vec_str(k.vec, "app_key"),
        "app_secret",  vec_str(k.vec, "app_secret"),  NULL};
    char err[256] = "";
    k.tk = open_with(kv, err, sizeof err);
    cr_assert(k.tk, "phtk_open: %s", err);
    phtk_set_now(k.tk, NOW_MS);
    k.baseline = phtk_blocks(k.tk);
    return k;
}

/* Nothing that must stay secret appears in the instance's log. */
static void log_assert_clean(struct kit *k)
{
    const char *log = phtk_log(k->tk);
    static const char *const secrets[] = {
        "S3cr3t-gw-0123456789", "GOLD-7Q2M-9XKD-41PZ", "GOLD-88AA-ZZ01-KP3M",
        "8800123456789012",     "13800138000",         "13900139000",
    };
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
        cr_assert(!strstr(log, secrets[i]), "a secret reached the log: %s", log);
    cr_assert(!strstr(log, "card_pwd") && !strstr(log, "biz_content"), "a body reached the log: %s",
              log);
}

static void kit_close(struct kit *k)
{
    cr_assert_eq(phtk_blocks(k->tk), k->baseline, "leak: %zu host blocks, %zu after init",
                 phtk_blocks(k->tk), k->baseline);
    log_assert_clean(k);
    phtk_close(k->tk);
    json_decref(k->vec);
}

static char *fixture(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", FIXTURE_DIR, name);
    char *body = phtk_fixture(path, len);
    cr_assert(body, "cannot read fixture %s", path);
    return body;
}

/* Parses fixture `name` as the answer to op; the caller clears res. */
static int parse_fixture(struct kit *k, const struct perkhub_op *op, const char *name,
                         struct perkhub_result *res)
{
    size_t len;
    char *body = fixture(name, &len);
    int st = phtk_parse(k->tk, op, 200, body, len, res);
    free(body);
    return st;
}

static int verify_fixture(struct kit *k, const char *name, struct perkhub_result *res)
{
    size_t len;
    char *body = fixture(name, &len);
    struct perkhub_callback cb = {
        .method = "POST", .content_type = "application/json", .body = body, .body_len = len};
    int st = phtk_verify(k->tk, &cb, res);
    free(body);
    return st;
}

static void assert_reason(const struct perkhub_result *res, const char *want)
{
    cr_assert(res->reason, "no reason, wanted %s", want);
    cr_assert_str_eq(res->reason, want);
}

static const struct perkhub_op CARD_OP = {.kind = PERKHUB_OP_CARD_ORDER,
                                          .order_ref = REF,
                                          .product_id = "10001",
                                          .quantity = 2,
                                          .unit_price = 2850};
static const struct perkhub_op CARD_STEP1 = {.kind = PERKHUB_OP_CARD_ORDER,
                                             .step = 1,
                                             .state = "query",
                                             .order_ref = REF,
                                             .product_id = "10001",
                                             .quantity = 2};
static const struct perkhub_op RECHARGE_OP = {.kind = PERKHUB_OP_RECHARGE,
                                              .order_ref = REF,
                                              .product_id = "20001",
                                              .quantity = 1,
                                              .account = "13800138000"};
static const struct perkhub_op QUERY_CARD = {
    .kind = PERKHUB_OP_ORDER_QUERY, .order_ref = REF, .order_kind = PERKHUB_OP_CARD_ORDER};
static const struct perkhub_op QUERY_DIRECT = {
    .kind = PERKHUB_OP_ORDER_QUERY, .order_ref = REF, .order_kind = PERKHUB_OP_RECHARGE};

/* ======================= descriptor and config ============================ */

Test(gateway, conformance_and_descriptor)
{
    static const struct phtk_descriptor_want want = {
        .name = "gateway",
        .abi_major = 1,
        .abi_minor = PERKHUB_ABI_MINOR, /* built with the header: 1.4 */
        .capabilities = PERKHUB_CAP_CATALOG | PERKHUB_CAP_STOCK_CHECK | PERKHUB_CAP_CARD_ORDER |
                        PERKHUB_CAP_RECHARGE | PERKHUB_CAP_ORDER_QUERY | PERKHUB_CAP_CALLBACK |
                        PERKHUB_CAP_BALANCE | PERKHUB_CAP_REDEMPTION,
        .processing_window_s = 120,
        .query_delay_ms = 500,
        .build_request = 1,
        .parse_response = 1,
        .verify_callback = 1,
        .serve_local = 0,
    };
    char err[256] = "";
    const struct perkhub_plugin *d = perkhub_plugin_entry();
    cr_assert_eq(phtk_expect_descriptor(d, &want, err, sizeof err), 0, "%s", err);
    cr_assert_eq(perkhub_plugin_entry(), d, "the entry must return one descriptor");
}

Test(gateway, config_refusals_name_the_key)
{
    static const struct {
        const char *kv[9];
        const char *key;
    } cases[] = {
        {{"gateway_url", "ftp://gw", "app_key", "k", "app_secret", "S3cr3t-gw-0123456789", NULL},
         "gateway_url"},
        {{"gateway_url", "gw.example.test", "app_key", "k", "app_secret", "S3cr3t-gw-0123456789",
          NULL},
         "gateway_url"},
        {{"gateway_url", "https://gw", "app_key", "k", NULL}, "app_secret"},
        {{"gateway_url", "https://gw", "app_key", "", "app_secret", "S3cr3t-gw-0123456789", NULL},
         "app_key"},
        {{"gateway_url", "https://gw", "app_key", "k", "app_secret", "S3cr3t-gw-0123456789",
          "callback_stale_s", "0", NULL},
         "callback_stale_s"},
    };
    static const char *const secrets[] = {"S3cr3t", NULL};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256] = "";
        cr_assert_eq(phtk_expect_refused(perkhub_plugin_entry(), cases[i].kv, cases[i].key, secrets,
                                         err, sizeof err),
                     0, "case %zu: %s", i, err);
    }
    const char *kv[] = {"gateway_url", "http://127.0.0.1:9", "app_key", "k", "app_secret",
                        "s",           "callback_stale_s",   "30",      NULL};
    char err[256] = "";
    phtk *tk = open_with(kv, err, sizeof err);
    cr_assert(tk, "a plain http:// URL is fine: %s", err);
    phtk_close(tk);
}

/* ======================= requests ========================================= */

static int kind_of(const char *name)
{
    static const char *const names[] = {"",         "catalog",     "stock_check", "card_order",
                                        "recharge", "order_query", "balance"};
    for (int i = 1; i <= PERKHUB_OP_BALANCE; i++)
        if (name && !strcmp(name, names[i]))
            return i;
    cr_assert_fail("sign_vectors.json: unknown kind %s", name ? name : "(none)");
    return 0;
}

/* A perkhub_op from a vector's "op" object; strings borrowed from it. */
static struct perkhub_op op_from_json(const json_t *j)
{
    struct perkhub_op op = {
        .kind = kind_of(json_string_value(json_object_get(j, "kind"))),
        .step = (int)json_integer_value(json_object_get(j, "step")),
        .state = json_string_value(json_object_get(j, "state")),
        .order_ref = json_string_value(json_object_get(j, "order_ref")),
        .product_id = json_string_value(json_object_get(j, "product_id")),
        .quantity = (uint32_t)json_integer_value(json_object_get(j, "quantity")),
        .account = json_string_value(json_object_get(j, "account")),
        .unit_price = json_integer_value(json_object_get(j, "unit_price")),
        .callback_url = json_string_value(json_object_get(j, "callback_url")),
    };
    const char *ok = json_string_value(json_object_get(j, "order_kind"));
    op.order_kind = ok ? kind_of(ok) : 0;
    return op;
}

/* The body of req as JSON, checking what every request shares. */
static json_t *request_body(struct kit *k, const struct perkhub_request *req)
{
    cr_assert_str_eq(req->method, "POST");
    cr_assert_str_eq(req->url, vec_str(k->vec, "gateway_url"));
    const char *ct = phtk_header(req, "Content-Type");
    cr_assert(ct && !strcmp(ct, "application/json"), "Content-Type: %s", ct ? ct : "(none)");
    cr_assert(req->body && req->body_len == strlen(req->body));
    json_error_t e;
    json_t *body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &e);
    cr_assert(json_is_object(body), "request body is not a JSON object: %s", e.text);
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        cr_assert(json_is_string(v), "param %s is not a string", key);
    }
    cr_assert_eq(json_object_size(body), 9, "params: %zu", json_object_size(body));
    cr_assert_str_eq(json_string_value(json_object_get(body, "app_key")),
                     vec_str(k->vec, "app_key"));
    cr_assert_str_eq(json_string_value(json_object_get(body, "version")), "2.0");
    cr_assert_str_eq(json_string_value(json_object_get(body, "format")), "json");
    cr_assert_str_eq(json_string_value(json_object_get(body, "charset")), "utf-8");
    cr_assert_str_eq(json_string_value(json_object_get(body, "sign_type")), "md5");
    return body;
}

Test(gateway, requests_match_independent_signature_vectors)
{
    struct kit k = kit_open();
    const json_t *reqs = json_object_get(k.vec, "requests");
    cr_assert(json_array_size(reqs) >= 9);
    size_t i;
    const json_t *vec;
    json_array_foreach(reqs, i, vec)
    {
        struct perkhub_op op = op_from_json(json_object_get(vec, "op"));
        struct perkhub_request req;
        cr_assert_eq(phtk_build(k.tk, &op, &req), PERKHUB_OK, "vector %zu", i);
        json_t *body = request_body(&k, &req);
        cr_assert_str_eq(json_string_value(json_object_get(body, "method")), vec_str(vec, "method"),
                         "vector %zu", i);
        cr_assert_str_eq(json_string_value(json_object_get(body, "biz_content")),
                         vec_str(vec, "biz_content"), "vector %zu", i);
        cr_assert_str_eq(json_string_value(json_object_get(body, "timestamp")),
                         vec_str(k.vec, "timestamp"), "vector %zu", i);
        cr_assert_str_eq(json_string_value(json_object_get(body, "sign")), vec_str(vec, "sign"),
                         "vector %zu: the sign differs from hashlib's", i);
        json_decref(body);
        phtk_request_clear(k.tk, &req);
    }
    kit_close(&k);
}

Test(gateway, timestamp_is_beijing_time)
{
    struct kit k = kit_open();
    static const struct {
        int64_t ms;
        const char *want;
    } cases[] = {
        {1, "1970-01-01 08:00:00"},
        {INT64_C(1835452799999), "2028-02-29 23:59:59"}, /* leap day, ms floored */
        {INT64_C(1798732799000), "2026-12-31 23:59:59"},
        {INT64_C(1798732800000), "2027-01-01 00:00:00"},
    };
    const struct perkhub_op op = {.kind = PERKHUB_OP_BALANCE};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        phtk_set_now(k.tk, cases[i].ms);
        struct perkhub_request req;
        cr_assert_eq(phtk_build(k.tk, &op, &req), PERKHUB_OK);
        json_t *body = request_body(&k, &req);
        cr_assert_str_eq(json_string_value(json_object_get(body, "timestamp")), cases[i].want);
        json_decref(body);
        phtk_request_clear(k.tk, &req);
    }
    kit_close(&k);
}

Test(gateway, build_refusals_send_nothing)
{
    struct kit k = kit_open();
    static const struct {
        struct perkhub_op op;
        int want;
    } cases[] = {
        {{.kind = 99}, PERKHUB_ERR_UNSUPPORTED},
        {{.kind = PERKHUB_OP_RECHARGE, .order_ref = REF, .product_id = "20001", .quantity = 1},
         PERKHUB_DEFINITE_FAILURE},
        {{.kind = PERKHUB_OP_RECHARGE,
          .order_ref = REF,
          .product_id = "20001",
          .quantity = 1,
          .account = ""},
         PERKHUB_DEFINITE_FAILURE},
        {{.kind = PERKHUB_OP_CARD_ORDER, .product_id = "10001", .quantity = 1},
         PERKHUB_ERR_INTERNAL},
        {{.kind = PERKHUB_OP_ORDER_QUERY}, PERKHUB_ERR_INTERNAL},
        {{.kind = PERKHUB_OP_STOCK_CHECK}, PERKHUB_ERR_INTERNAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct perkhub_request req;
        cr_assert_eq(phtk_build(k.tk, &cases[i].op, &req), cases[i].want, "case %zu", i);
        cr_assert(!req.url && !req.body && req.nheaders == 0, "case %zu filled req", i);
        phtk_request_clear(k.tk, &req);
    }
    kit_close(&k);
}

/* ======================= response codes =================================== */

Test(gateway, every_code_maps_to_its_class)
{
    struct kit k = kit_open();
    static const struct {
        const char *file;
        int order_st; /* for a card order or a recharge, step 0 */
        const char *reason;
    } cases[] = {
        {"code_1001.json", PERKHUB_DEFINITE_FAILURE, "bad_request_signature"},
        {"code_1002.json", PERKHUB_DEFINITE_FAILURE, "clock_skew"},
        {"code_1003.json", PERKHUB_DEFINITE_FAILURE, "unknown_app_key"},
        {"code_2001.json", PERKHUB_DEFINITE_FAILURE, "unknown_product"},
        {"code_2002.json", PERKHUB_DEFINITE_FAILURE, "out_of_stock"},
        {"code_2003.json", PERKHUB_DEFINITE_FAILURE, "invalid_account"},
        {"code_2004.json", PERKHUB_AMBIGUOUS, "duplicate_order"},
        {"code_2005.json", PERKHUB_AMBIGUOUS, "unexpected_code"}, /* not an order.info */
        {"code_2006.json", PERKHUB_DEFINITE_FAILURE, "insufficient_balance"},
        {"code_2007.json", PERKHUB_DEFINITE_FAILURE, "price_above_max"},
        {"code_4000.json", PERKHUB_DEFINITE_FAILURE, "bad_request"},
        {"code_4004.json", PERKHUB_DEFINITE_FAILURE, "unknown_method"},
        {"code_5000.json", PERKHUB_RETRYABLE, "supplier_busy"},
        {"code_9999.json", PERKHUB_AMBIGUOUS, "unexpected_code"},
    };
    const struct perkhub_op *ops[] = {&CARD_OP, &RECHARGE_OP};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (size_t o = 0; o < 2; o++) {
            struct perkhub_result res;
            cr_assert_eq(parse_fixture(&k, ops[o], cases[i].file, &res), cases[i].order_st,
                         "%s op %zu", cases[i].file, o);
            assert_reason(&res, cases[i].reason);
            cr_assert_eq(res.ncodes, 0);
            phtk_result_clear(k.tk, &res);
        }
    kit_close(&k);
}

Test(gateway, query_codes)
{
    struct kit k = kit_open();
    struct perkhub_result res;
    /* 2005 is the one code that answers a query: no such order. */
    cr_assert_eq(parse_fixture(&k, &QUERY_CARD, "code_2005.json", &res), PERKHUB_OK);
    cr_assert_eq(res.state, PERKHUB_STATE_NOT_FOUND);
    phtk_result_clear(k.tk, &res);
    cr_assert_eq(parse_fixture(&k, &CARD_STEP1, "code_2005.json", &res), PERKHUB_OK);
    cr_assert_eq(res.state, PERKHUB_STATE_NOT_FOUND);
    phtk_result_clear(k.tk, &res);
    /* Any refusal of a query is a failed query, never an answer about the order. */
    cr_assert_eq(parse_fixture(&k, &QUERY_CARD, "code_5000.json", &res), PERKHUB_RETRYABLE);
    cr_assert_eq(res.state, PERKHUB_STATE_NONE);
    phtk_result_clear(k.tk, &res);
    /* A card order's query step reads an order that exists: a refusal there must
     * never pass for a definite failure of the order (that would fail over). */
    static const char *const refusals[] = {"code_1002.json", "code_2002.json", "code_5000.json",
                                           "code_9999.json"};
    for (size_t i = 0; i < sizeof refusals / sizeof refusals[0]; i++) {
        cr_assert_eq(parse_fixture(&k, &CARD_STEP1, refusals[i], &res), PERKHUB_AMBIGUOUS, "%s",
                     refusals[i]);
        phtk_result_clear(k.tk, &res);
    }
    kit_close(&k);
}

/* ======================= orders =========================================== */

Test(gateway, card_order_accepted_asks_for_the_codes)
{
    struct kit k = kit_open();
    static const char *const files[] = {"card_add_untreated.json", "card_add_success.json"};
    for (size_t i = 0; i < 2; i++) {
        struct perkhub_result res;
        cr_assert_eq(parse_fixture(&k, &CARD_OP, files[i], &res), PERKHUB_OK, "%s", files[i]);
        cr_assert_eq(res.state, PERKHUB_STATE_PROCESSING);
        cr_assert_str_eq(res.supplier_order_id, "G2026112400000001");
        cr_assert_eq(res.next, 1);
        cr_assert_str_eq(res.next_state, "query");
        cr_assert_eq(res.next_delay_ms, 200);
        cr_assert_eq(res.amount, 5700);
        cr_assert_eq(res.ncodes, 0);
        phtk_result_clear(k.tk, &res);
    }
    struct perkhub_result res;
    cr_assert_eq(parse_fixture(&k, &CARD_OP, "card_add_failed.json", &res),
                 PERKHUB_DEFINITE_FAILURE);
    assert_reason(&res, "supplier_failed");
    cr_assert_eq(res.next, 0);
    phtk_result_clear(k.tk, &res);
    cr_assert_eq(parse_fixture(&k, &CARD_OP, "card_add_weird_state.json", &res), PERKHUB_AMBIGUOUS);
    phtk_result_clear(k.tk, &res);
    kit_close(&k);
}

Test(gateway, recharge_outcomes)
{
    struct kit k = kit_open();
    static const struct {
        const char *file;
        int st, state;
    } cases[] = {
        {"direct_add_processing.json", PERKHUB_OK, PERKHUB_STATE_PROCESSING},
        {"direct_add_untreated.json", PERKHUB_OK, PERKHUB_STATE_PROCESSING},
        {"direct_add_success.json", PERKHUB_OK, PERKHUB_STATE_SUCCEEDED},
        {"direct_add_failed.json", PERKHUB_DEFINITE_FAILURE, PERKHUB_STATE_FAILED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct perkhub_result res;
        cr_assert_eq(parse_fixture(&k, &RECHARGE_OP, cases[i].file, &res), cases[i].st, "%s",
                     cases[i].file);
        cr_assert_eq(res.state, cases[i].state, "%s", cases[i].file);
        cr_assert_str_eq(res.supplier_order_id, "G2026112400000002");
        cr_assert_eq(res.amount, 2970);
        cr_assert_eq(res.next, 0, "a recharge has no follow-up step");
        if (cases[i].st != PERKHUB_OK)
            assert_reason(&res, "supplier_failed");
        phtk_result_clear(k.tk, &res);
    }
    kit_close(&k);
}

static void assert_cards(struct kit *k, const struct perkhub_result *res)
{
    const json_t *plain = json_object_get(k->vec, "cards_plain");
    cr_assert_eq(res->ncodes, json_array_size(plain));
    for (size_t i = 0; i < res->ncodes; i++) {
        const json_t *p = json_array_get(plain, i);
        cr_assert_str_eq(res->codes[i].code, vec_str(p, "card_pwd"), "card %zu", i);
        const char *num = vec_str(p, "card_number");
        if (num[0])
            cr_assert(res->codes[i].card_no && !strcmp(res->codes[i].card_no, num), "card %zu", i);
        else
            cr_assert_null(res->codes[i].card_no, "card %zu: \"\" means no card number", i);
        cr_assert_eq(res->codes[i].expires_at_ms,
                     json_integer_value(json_object_get(p, "expires_at_ms")), "card %zu", i);
    }
}

Test(gateway, card_codes_decrypt_as_openssl_encrypted_them)
{
    struct kit k = kit_open();
    const struct perkhub_op *ops[] = {&QUERY_CARD, &CARD_STEP1};
    const struct perkhub_op untyped = {.kind = PERKHUB_OP_ORDER_QUERY, .order_ref = REF};
    const struct perkhub_op *all[] = {ops[0], ops[1], &untyped};
    for (size_t o = 0; o < 3; o++) {
        struct perkhub_result res;
        cr_assert_eq(parse_fixture(&k, all[o], "order_info_card_success.json", &res), PERKHUB_OK);
        cr_assert_eq(res.state, PERKHUB_STATE_SUCCEEDED);
        assert_cards(&k, &res);
        cr_assert_eq(res.amount, 5700);
        cr_assert_eq(res.quantity, 2);
        cr_assert_str_eq(res.product_id, "10001");
        cr_assert_str_eq(res.supplier_order_id, "G2026112400000001");
        cr_assert_str_eq(res.order_ref, REF);
        cr_assert_eq(res.next, 0);
        phtk_result_clear(k.tk, &res);
    }
    kit_close(&k);
}

Test(gateway, unreadable_cards_are_ambiguous)
{
    struct kit k = kit_open();
    static const char *const files[] = {
        "order_info_card_count_mismatch.json", "order_info_card_wrong_key.json",
        "order_info_card_bad_base64.json", "order_info_card_bad_deadline.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        for (int o = 0; o < 2; o++) {
            struct perkhub_result res;
            cr_assert_eq(parse_fixture(&k, o ? &CARD_STEP1 : &QUERY_CARD, files[i], &res),
                         PERKHUB_AMBIGUOUS, "%s", files[i]);
            assert_reason(&res, "bad_cards");
            cr_assert_eq(res.ncodes, 0);
            cr_assert_null(res.codes);
            phtk_result_clear(k.tk, &res);
        }
    /* An order of 3 codes the supplier says it filled with 2: not ours to accept. */
    struct perkhub_op three = CARD_STEP1;
    three.quantity = 3;
    struct perkhub_result res;
    cr_assert_eq(parse_fixture(&k, &three, "order_info_card_success.json", &res),
                 PERKHUB_AMBIGUOUS);
    phtk_result_clear(k.tk, &res);
    kit_close(&k);
}

Test(gateway, query_states)
{
    struct kit k = kit_open();
    static const struct {
        const char *file;
        int state;
    } cases[] = {
        {"order_info_processing.json", PERKHUB_STATE_PROCESSING},
        {"order_info_untreated.json", PERKHUB_STATE_PROCESSING},
        {"order_info_failed.json", PERKHUB_STATE_FAILED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct perkhub_result res;
        cr_assert_eq(parse_fixture(&k, &QUERY_CARD, cases[i].file, &res), PERKHUB_OK, "%s",
                     cases[i].file);
        cr_assert_eq(res.state, cases[i].state, "%s", cases[i].file);
        cr_assert_eq(res.amount, 5700);
        cr_assert_str_eq(res.order_ref, REF);
        phtk_result_clear(k.tk, &res);
    }
    struct perkhub_result res;
    cr_assert_eq(parse_fixture(&k, &QUERY_DIRECT, "order_info_direct_success.json", &res),
                 PERKHUB_OK);
    cr_assert_eq(res.state, PERKHUB_STATE_SUCCEEDED);
    cr_assert_eq(res.ncodes, 0);
    cr_assert_eq(res.amount, 2970);
    cr_assert_eq(res.quantity, 1);
    cr_assert_str_eq(res.product_id, "20001");
    phtk_result_clear(k.tk, &res);
    /* An answer about another order settles nothing about ours. */
    cr_assert_eq(parse_fixture(&k, &QUERY_CARD, "order_info_other_ref.json", &res),
                 PERKHUB_AMBIGUOUS);
    assert_reason(&res, "order_mismatch");
    cr_assert_eq(res.state, PERKHUB_STATE_NONE);
    phtk_result_clear(k.tk, &res);
    kit_close(&k);
}

/* ======================= signatures and garbage =========================== */

Test(gateway, response_signature_is_checked)
{
    struct kit k = kit_open();
    static const char *const files[] = {"card_add_bad_sign.json", "card_add_no_sign.json"};
    const struct perkhub_op *ops[] = {&CARD_OP, &QUERY_CARD, &RECHARGE_OP};
    for (size_t i = 0; i < 2; i++)
        for (size_t o = 0; o < 3; o++) {
            struct perkhub_result res;
            cr_assert_eq(parse_fixture(&k, ops[o], files[i], &res), PERKHUB_AMBIGUOUS, "%s",
                         files[i]);
            assert_reason(&res, "bad_response_signature");
            cr_assert_eq(res.state, PERKHUB_STATE_NONE, "%s: the tampered state leaked", files[i]);
            phtk_result_clear(k.tk, &res);
        }
    /* The same body under another app's secret does not verify either. */
    const char *kv[] = {"gateway_url", "https://gw.example.test/api",
                        "app_key",     "gwtest_key",
                        "app_secret",  "another-secret",
                        NULL};
    phtk *other = open_with(kv, NULL, 0);
    cr_assert(other);
    size_t len;
    char *body = fixture("card_add_untreated.json", &len);
    struct perkhub_result res;
    cr_assert_eq(phtk_parse(other, &CARD_OP, 200, body, len, &res), PERKHUB_AMBIGUOUS);
    phtk_result_clear(other, &res);
    free(body);
    phtk_close(other);
    kit_close(&k);
}

Test(gateway, malformed_answers_are_ambiguous)
{
    struct kit k = kit_open();
    static const char *const files[] = {"truncated.json", "not_json.txt", "wrong_shape.json",
                                        "result_not_json.json"};
    const struct perkhub_op *ops[] = {&CARD_OP, &RECHARGE_OP, &QUERY_CARD};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        for (size_t o = 0; o < 3; o++) {
            struct perkhub_result res;
            cr_assert_eq(parse_fixture(&k, ops[o], files[i], &res), PERKHUB_AMBIGUOUS, "%s",
                         files[i]);
            cr_assert(res.reason, "%s: no reason", files[i]);
            phtk_result_clear(k.tk, &res);
        }
    struct perkhub_result res;
    cr_assert_eq(phtk_parse(k.tk, &RECHARGE_OP, 200, "", 0, &res), PERKHUB_AMBIGUOUS);
    phtk_result_clear(k.tk, &res);
    /* A good body under a status the gateway never uses is not its answer. */
    size_t len;
    char *body = fixture("direct_add_success.json", &len);
    cr_assert_eq(phtk_parse(k.tk, &RECHARGE_OP, 404, body, len, &res), PERKHUB_AMBIGUOUS);
    assert_reason(&res, "unexpected_http_status");
    phtk_result_clear(k.tk, &res);
    /* Every prefix of a good answer: never a crash, never a success. */
    for (size_t n = 0; n < len - 1; n++) {
        int st = phtk_parse(k.tk, &RECHARGE_OP, 200, body, n, &res);
        cr_assert_eq(st, PERKHUB_AMBIGUOUS, "prefix of %zu bytes gave %d", n, st);
        phtk_result_clear(k.tk, &res);
    }
    free(body);
    kit_close(&k);
}

/* ======================= catalog, stock, balance ========================== */

Test(gateway, catalog_stock_balance)
{
    struct kit k = kit_open();
    struct perkhub_result res;
    const struct perkhub_op cat = {.kind = PERKHUB_OP_CATALOG};
    cr_assert_eq(parse_fixture(&k, &cat, "goods_list_ok.json", &res), PERKHUB_OK);
    cr_assert_eq(res.nitems, 2);
    cr_assert_str_eq(res.items[0].product_id, "10001");
    cr_assert_str_eq(res.items[0].name, "iQiyi Gold 1 month");
    cr_assert_eq(res.items[0].kind, PERKHUB_OP_CARD_ORDER);
    cr_assert_eq(res.items[0].face_value, 3000);
    cr_assert_eq(res.items[0].price, 2850);
    cr_assert_eq(res.items[0].stock, 120);
    cr_assert_eq(res.items[0].on_sale, 1);
    cr_assert_eq(res.items[1].kind, PERKHUB_OP_RECHARGE);
    cr_assert_eq(res.items[1].price, 2970); /* "29.7" */
    cr_assert_eq(res.items[1].stock, -1);
    cr_assert_eq(res.items[1].on_sale, 0);
    phtk_result_clear(k.tk, &res);
    cr_assert_eq(parse_fixture(&k, &cat, "goods_list_bad_price.json", &res), PERKHUB_AMBIGUOUS);
    phtk_result_clear(k.tk, &res);

    const struct perkhub_op stock = {.kind = PERKHUB_OP_STOCK_CHECK, .product_id = "10001"};
    cr_assert_eq(parse_fixture(&k, &stock, "goods_stock_ok.json", &res), PERKHUB_OK);
    cr_assert_eq(res.stock, 120);
    cr_assert_eq(res.price, 2850);
    phtk_result_clear(k.tk, &res);
    cr_assert_eq(parse_fixture(&k, &stock, "code_2001.json", &res), PERKHUB_DEFINITE_FAILURE);
    assert_reason(&res, "unknown_product");
    phtk_result_clear(k.tk, &res);

    const struct perkhub_op bal = {.kind = PERKHUB_OP_BALANCE};
    cr_assert_eq(parse_fixture(&k, &bal, "account_info_ok.json", &res), PERKHUB_OK);
    cr_assert_eq(res.balance, 1234567);
    phtk_result_clear(k.tk, &res);
    cr_assert_eq(parse_fixture(&k, &bal, "account_info_bad_money.json", &res), PERKHUB_AMBIGUOUS);
    cr_assert_eq(res.balance, -1);
    phtk_result_clear(k.tk, &res);
    kit_close(&k);
}

/* A code-0 answer around result_text, signed as the spec says (the md5
 * composition itself is proven by the vectors above). Caller frees. */
static char *signed_answer(struct kit *k, const char *result_text)
{
    const struct perkhub_host *host = phtk_host(k->tk);
    const char *secret = vec_str(k->vec, "app_secret");
    size_t n = strlen(result_text) + strlen(secret);
    char *joined = malloc(n + 1);
    cr_assert(joined);
    snprintf(joined, n + 1, "%s%s", result_text, secret);
    uint8_t d[16];
    host->md5(host, joined, n, d);
    free(joined);
    char hex[33];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    json_t *env = json_pack("{s:i, s:s, s:s, s:s}", "code", 0, "message", "success", "result",
                            result_text, "sign", hex);
    char *out = json_dumps(env, JSON_COMPACT);
    json_decref(env);
    return out;
}

Test(gateway, money_is_parsed_exactly)
{
    struct kit k = kit_open();
    static const struct {
        const char *text;
        int64_t fen; /* -2: refused */
    } cases[] = {
        {"28.50", 2850},
        {"28.5", 2850},
        {"28", 2800},
        {"0.01", 1},
        {"0.10", 10},
        {"0", 0},
        {"12345.67", 1234567},
        {"-1.50", -150}, /* an overdrawn balance */
        {"99999999999.99", INT64_C(9999999999999)},
        {"28.505", -2},
        {"28.", -2},
        {".5", -2},
        {"1e3", -2},
        {" 28", -2},
        {"28 ", -2},
        {"+28", -2},
        {"28,50", -2},
        {"", -2},
        {"abc", -2},
        {"--1", -2},
        {"99999999999999999999", -2},
    };
    const struct perkhub_op bal = {.kind = PERKHUB_OP_BALANCE};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *r = json_pack("{s:s}", "balance", cases[i].text);
        char *text = json_dumps(r, JSON_COMPACT);
        char *answer = signed_answer(&k, text);
        struct perkhub_result res;
        int st = phtk_parse(k.tk, &bal, 200, answer, strlen(answer), &res);
        if (cases[i].fen == -2) {
            cr_assert_eq(st, PERKHUB_AMBIGUOUS, "'%s' accepted as %lld", cases[i].text,
                         (long long)res.balance);
        } else {
            cr_assert_eq(st, PERKHUB_OK, "'%s' refused", cases[i].text);
            cr_assert_eq(res.balance, cases[i].fen, "'%s' -> %lld", cases[i].text,
                         (long long)res.balance);
        }
        phtk_result_clear(k.tk, &res);
        free(answer);
        free(text);
        json_decref(r);
    }
    kit_close(&k);
}

/* ======================= callbacks ======================================== */

Test(gateway, good_notify_is_accepted)
{
    struct kit k = kit_open();
    struct perkhub_result res;
    cr_assert_eq(verify_fixture(&k, "notify_good.json", &res), PERKHUB_OK, "%s",
                 res.reason ? res.reason : "");
    cr_assert_str_eq(res.order_ref, REF);
    cr_assert_str_eq(res.supplier_order_id, "G2026112400000002");
    cr_assert_eq(res.state, PERKHUB_STATE_SUCCEEDED);
    cr_assert_eq(res.amount, 3000);
    cr_assert_str_eq(res.product_id, "20001");
    cr_assert_eq(res.quantity, 1);
    cr_assert_eq(res.timestamp_ms,
                 json_integer_value(json_object_get(k.vec, "notify_timestamp_ms")));
    cr_assert_eq(res.timestamp_ms, NOTIFY_TS_MS);
    cr_assert_str_eq(res.reply_body, "success");
    cr_assert_str_eq(res.reply_content_type, "text/plain");
    cr_assert(res.reply_status == 0 || res.reply_status == 200);
    phtk_result_clear(k.tk, &res);
    /* An empty value is not part of the signing string (hashlib left it out). */
    cr_assert_eq(verify_fixture(&k, "notify_empty_param.json", &res), PERKHUB_OK, "%s",
                 res.reason ? res.reason : "");
    cr_assert_str_eq(res.order_ref, REF);
    phtk_result_clear(k.tk, &res);
    kit_close(&k);
}

Test(gateway, forged_and_tampered_notifies_are_refused)
{
    struct kit k = kit_open();
    static const struct {
        const char *file;
        const char *reason;
    } cases[] = {
        {"notify_bad_sign.json", "bad_signature"},
        {"notify_no_sign.json", "bad_signature"},
        {"notify_flipped.json", "bad_signature"}, /* success -> failed, old sign */
        {"notify_other_secret.json", "bad_signature"},
        {"notify_non_string.json", "malformed"},
        {"not_json.txt", "malformed"},
        {"truncated.json", "malformed"},
        {"notify_stale.json", "stale"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct perkhub_result res;
        cr_assert_eq(verify_fixture(&k, cases[i].file, &res), PERKHUB_DEFINITE_FAILURE, "%s",
                     cases[i].file);
        assert_reason(&res, cases[i].reason);
        cr_assert_null(res.order_ref, "%s: a refused notify claims nothing", cases[i].file);
        cr_assert_eq(res.state, PERKHUB_STATE_NONE);
        phtk_result_clear(k.tk, &res);
    }
    kit_close(&k);
}

Test(gateway, notify_staleness_boundary)
{
    struct kit k = kit_open();
    static const struct {
        int64_t now;
        int st;
    } cases[] = {
        {NOTIFY_TS_MS + 600000, PERKHUB_OK}, /* exactly callback_stale_s old */
        {NOTIFY_TS_MS + 600001, PERKHUB_DEFINITE_FAILURE},
        {NOTIFY_TS_MS - 5000, PERKHUB_OK},   /* our clock a little behind theirs */
        {NOTIFY_TS_MS - 600000, PERKHUB_OK}, /* exactly callback_stale_s ahead */
        {NOTIFY_TS_MS - 600001, PERKHUB_DEFINITE_FAILURE},
        /* dated ten years ahead of our clock: a signature kept for later replays */
        {NOTIFY_TS_MS - INT64_C(10) * 365 * 86400 * 1000, PERKHUB_DEFINITE_FAILURE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        phtk_set_now(k.tk, cases[i].now);
        struct perkhub_result res;
        cr_assert_eq(verify_fixture(&k, "notify_good.json", &res), cases[i].st, "case %zu", i);
        if (cases[i].st != PERKHUB_OK) {
            assert_reason(&res, "stale");
            cr_assert_null(res.order_ref, "case %zu: a refused notify claims nothing", i);
        }
        phtk_result_clear(k.tk, &res);
    }
    kit_close(&k);

    /* A shorter window from config. */
    const char *kv[] = {
        "gateway_url", "https://gw.example.test/api", "app_key",          "gwtest_key",
        "app_secret",  "S3cr3t-gw-0123456789",        "callback_stale_s", "10",
        NULL};
    struct kit s = {.vec = vectors_load()};
    s.tk = open_with(kv, NULL, 0);
    cr_assert(s.tk);
    s.baseline = phtk_blocks(s.tk);
    phtk_set_now(s.tk, NOTIFY_TS_MS + 11000);
    struct perkhub_result res;
    cr_assert_eq(verify_fixture(&s, "notify_good.json", &res), PERKHUB_DEFINITE_FAILURE);
    assert_reason(&res, "stale");
    phtk_result_clear(s.tk, &res);
    kit_close(&s);
}

/* ======================= secrets and memory =============================== */

Test(gateway, a_full_exchange_leaves_no_secret_and_no_block)
{
    struct kit k = kit_open();
    /* Every path that logs: bad signatures, refusals, unreadable cards. */
    static const char *const files[] = {"card_add_bad_sign.json", "code_2002.json",
                                        "order_info_card_wrong_key.json",
                                        "order_info_card_success.json"};
    struct perkhub_request req;
    cr_assert_eq(phtk_build(k.tk, &RECHARGE_OP, &req), PERKHUB_OK);
    cr_assert(strstr(req.body, "13800138000"), "the account goes to the supplier");
    phtk_request_clear(k.tk, &req);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        struct perkhub_result res;
        parse_fixture(&k, &QUERY_CARD, files[i], &res);
        phtk_result_clear(k.tk, &res);
    }
    struct perkhub_result res;
    verify_fixture(&k, "notify_bad_sign.json", &res);
    phtk_result_clear(k.tk, &res);
    cr_assert(strlen(phtk_log(k.tk)) > 0, "the refusals above should be logged");
    kit_close(&k); /* asserts: baseline blocks, clean log */
}

/* ======================= redemption status (ABI 1.3) ======================= */

#define R_CODE "GOLD-7Q2M-9XKD-41PZ"
#define R_CARD "8800123456789012"

static const struct perkhub_op REDEEM_OP = {
    .kind = PERKHUB_OP_REDEMPTION, .product_id = "10001", .code = R_CODE, .card_no = R_CARD};

/* Decrypts a card field of a request as the gateway would: base64(iv ||
 * AES-256-CBC) under SHA-256(app secret), through the host's own primitives. */
static char *card_open(struct kit *k, const char *text)
{
    const struct perkhub_host *h = phtk_host(k->tk);
    const char *secret = vec_str(k->vec, "app_secret");
    uint8_t key[32], *raw = NULL, *plain = NULL;
    size_t rawlen = 0, plainlen = 0;
    h->sha256(h, secret, strlen(secret), key);
    cr_assert_eq(h->base64_decode(h, text, strlen(text), &raw, &rawlen), PERKHUB_OK);
    cr_assert_gt(rawlen, 16);
    cr_assert_eq(
        h->cipher(h, "aes-256-cbc", 0, key, 32, raw, 16, raw + 16, rawlen - 16, &plain, &plainlen),
        PERKHUB_OK);
    h->mem_free(h, raw);
    char *out = strdup((char *)plain);
    h->mem_free(h, plain);
    return out;
}

/* gw.card.status carries the code and card number encrypted, each with a fresh
 * IV, and the product; the code never appears in the clear in the body. */
Test(gateway, redemption_request)
{
    struct kit k = kit_open();
    struct perkhub_request req[2];
    const char *pwd[2];
    json_t *body[2], *biz[2];
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(phtk_build(k.tk, &REDEEM_OP, &req[i]), PERKHUB_OK);
        cr_assert_str_eq(req[i].method, "POST");
        cr_assert(!memmem(req[i].body, req[i].body_len, R_CODE, strlen(R_CODE)), "code in clear");
        cr_assert(!memmem(req[i].body, req[i].body_len, R_CARD, strlen(R_CARD)), "card in clear");
        cr_assert(!strstr(req[i].url, R_CODE));
        body[i] = json_loadb(req[i].body, req[i].body_len, 0, NULL);
        cr_assert_str_eq(json_string_value(json_object_get(body[i], "method")), "gw.card.status");
        biz[i] = json_loads(json_string_value(json_object_get(body[i], "biz_content")), 0, NULL);
        cr_assert_str_eq(json_string_value(json_object_get(biz[i], "product_id")), "10001");
        pwd[i] = json_string_value(json_object_get(biz[i], "card_pwd"));
        cr_assert_not_null(pwd[i]);
        char *code = card_open(&k, pwd[i]);
        char *card = card_open(&k, json_string_value(json_object_get(biz[i], "card_number")));
        cr_assert_str_eq(code, R_CODE);
        cr_assert_str_eq(card, R_CARD);
        free(code);
        free(card);
    }
    cr_assert_str_neq(pwd[0], pwd[1], "each request has its own IV");
    for (int i = 0; i < 2; i++) {
        json_decref(biz[i]);
        json_decref(body[i]);
        phtk_request_clear(k.tk, &req[i]);
    }
    /* without a card number or a product, neither is sent */
    struct perkhub_op op = REDEEM_OP;
    op.card_no = NULL;
    op.product_id = NULL;
    cr_assert_eq(phtk_build(k.tk, &op, &req[0]), PERKHUB_OK);
    body[0] = json_loadb(req[0].body, req[0].body_len, 0, NULL);
    biz[0] = json_loads(json_string_value(json_object_get(body[0], "biz_content")), 0, NULL);
    cr_assert_null(json_object_get(biz[0], "card_number"));
    cr_assert_null(json_object_get(biz[0], "product_id"));
    json_decref(biz[0]);
    json_decref(body[0]);
    phtk_request_clear(k.tk, &req[0]);
    kit_close(&k);
}

/* Every answer of gw.card.status, from independently made fixtures: used (with
 * or without its time), unused, unknown; anything unclear is AMBIGUOUS (the
 * core reads "cannot tell"), never "not redeemed". */
Test(gateway, redemption_answers)
{
    static const struct {
        const char *fixture;
        int status, redeemed;
        int64_t at;
        const char *reason;
    } cases[] = {
        {"card_status_used.json", PERKHUB_OK, 1, INT64_C(1795523400000), NULL},
        {"card_status_used_no_time.json", PERKHUB_OK, 1, 0, NULL},
        {"card_status_unused.json", PERKHUB_OK, 0, 0, NULL},
        {"card_status_unknown.json", PERKHUB_OK, -1, 0, NULL},
        {"card_status_weird.json", PERKHUB_AMBIGUOUS, -1, 0, "unknown_card_status"},
        {"card_status_bad_time.json", PERKHUB_AMBIGUOUS, -1, 0, "malformed_result"},
        {"card_status_bad_sign.json", PERKHUB_AMBIGUOUS, -1, 0, "bad_response_signature"},
        {"code_2008.json", PERKHUB_DEFINITE_FAILURE, -1, 0, "unknown_card"},
    };
    struct kit k = kit_open();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct perkhub_result res;
        int st = parse_fixture(&k, &REDEEM_OP, cases[i].fixture, &res);
        cr_assert_eq(st, cases[i].status, "%s: status %d", cases[i].fixture, st);
        cr_assert_eq(res.redeemed, cases[i].redeemed, "%s: redeemed %d", cases[i].fixture,
                     res.redeemed);
        cr_assert_eq(res.redeemed_at_ms, cases[i].at, "%s", cases[i].fixture);
        if (cases[i].reason)
            assert_reason(&res, cases[i].reason);
        phtk_result_clear(k.tk, &res);
    }
    kit_close(&k);
}

/* The catalog in pages (docs/protocols/gateway.md, "Paging"): a page that is
 * not the last asks for the next step; the last does not; a page other than
 * the one asked for, or without its numbers, is not understood. */
Test(gateway, catalog_pages)
{
    struct kit k = kit_open();
    static const char *const goods = "[{\"product_id\":\"E00001\",\"product_name\":\"F\","
                                     "\"product_type\":\"card\",\"face_value\":\"10.00\","
                                     "\"purchase_price\":\"9.50\",\"stock\":100,"
                                     "\"sales_status\":\"on\"}]";
    static const struct {
        int step;
        const char *page; /* the result object's numbers */
        int outcome, next;
    } cases[] = {
        {0, "\"page_no\":1,\"page_size\":1,\"total\":3", PERKHUB_OK, 1},
        {1, "\"page_no\":2,\"page_size\":1,\"total\":3", PERKHUB_OK, 1},
        {2, "\"page_no\":3,\"page_size\":1,\"total\":3", PERKHUB_OK, 0},
        {0, "\"page_no\":1,\"page_size\":500,\"total\":1", PERKHUB_OK, 0},
        {1, "\"page_no\":1,\"page_size\":1,\"total\":3", PERKHUB_AMBIGUOUS, 0},
        {0, "\"page_no\":1,\"total\":3", PERKHUB_AMBIGUOUS, 0},
        {0, "\"page_no\":1,\"page_size\":0,\"total\":3", PERKHUB_AMBIGUOUS, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512];
        snprintf(text, sizeof text, "{%s,\"goods\":%s}", cases[i].page, goods);
        char *answer = signed_answer(&k, text);
        struct perkhub_op op = {.kind = PERKHUB_OP_CATALOG, .step = cases[i].step};
        struct perkhub_result res;
        int st = phtk_parse(k.tk, &op, 200, answer, strlen(answer), &res);
        free(answer);
        cr_assert_eq(st, cases[i].outcome, "case %zu: %d", i, st);
        if (st == PERKHUB_OK) {
            cr_assert_eq(res.nitems, 1, "case %zu", i);
            cr_assert_eq(res.next, cases[i].next, "case %zu", i);
            if (res.next)
                cr_assert_str_eq(res.next_state, "next_page");
        }
        phtk_result_clear(k.tk, &res);
    }
    kit_close(&k);
}

/* ---- the conformance suite (perkhub/testkit.h) ---------------------------
 * Over the fixtures of make_fixtures.py, whose signatures Python's hashlib
 * computes: sign_vectors.json's first card order and first recharge as request
 * vectors, card_add / direct_add successes as good replies, code 9999 as the
 * undocumented code, code 2005 as the query's "order not found", notify_good
 * and notify_good_other as the two good callbacks. The gateway answers HTTP
 * 200 to everything it reads, so no 4xx is documented. */
static const char *const suite_kv[] = {
    "gateway_url", "https://gw.example.test/api", "app_key", "gwtest_key",
    "app_secret",  "S3cr3t-gw-0123456789",        NULL};

static const struct perkhub_op suite_card = {.kind = PERKHUB_OP_CARD_ORDER,
                                             .order_ref = REF,
                                             .product_id = "10001",
                                             .quantity = 2,
                                             .unit_price = 2850};
static const struct perkhub_op suite_recharge = {.kind = PERKHUB_OP_RECHARGE,
                                                 .order_ref = "PH-20261124-0002",
                                                 .product_id = "20001",
                                                 .quantity = 1,
                                                 .account = "13800138000",
                                                 .callback_url =
                                                     "http://127.0.0.1:8080/v1/callbacks/gw1"};

static const struct phtk_suite_order suite_orders[] = {
    {.op = suite_card,
     .now_ms = NOW_MS,
     .good = {.fixture = FIXTURE_DIR "/card_add_success.json"},
     .unknown_code = {.fixture = FIXTURE_DIR "/code_9999.json"}},
    {.op = {.kind = PERKHUB_OP_RECHARGE,
            .order_ref = REF,
            .product_id = "20001",
            .quantity = 1,
            .account = "13800138000"},
     .now_ms = NOW_MS,
     .good = {.fixture = FIXTURE_DIR "/direct_add_success.json"},
     .unknown_code = {.fixture = FIXTURE_DIR "/code_9999.json"}},
};

static const struct phtk_suite_vector suite_vectors[] = {
    {.op = suite_card, .now_ms = NOW_MS, .want = "\"sign\":\"9cfa415ab4ef9d63234681ffe918942c\""},
    {.op = suite_recharge,
     .now_ms = NOW_MS,
     .want = "\"sign\":\"c627e005efcfc879ae0c5fb3ded1f49b\""},
};

static const char *const suite_json_headers[] = {"Content-Type: application/json"};

static const struct phtk_suite_callback suite_callbacks[] = {
    {.cb = {.content_type = "application/json", .headers = suite_json_headers, .nheaders = 1},
     .body_fixture = FIXTURE_DIR "/notify_good.json",
     .now_ms = NOTIFY_TS_MS + 30000},
    {.cb = {.content_type = "application/json", .headers = suite_json_headers, .nheaders = 1},
     .body_fixture = FIXTURE_DIR "/notify_good_other.json",
     .now_ms = NOTIFY_TS_MS + 30000},
};

static const char *const suite_canaries[] = {"GOLD-7Q2M-9XKD-41PZ", "GOLD-88AA-ZZ01-KP3M", NULL};

PHTK_CONFORMANCE(gateway, ((struct phtk_suite){
                              .config = suite_kv,
                              .canaries = suite_canaries,
                              .orders = suite_orders,
                              .norders = PHTK_N(suite_orders),
                              .vectors = suite_vectors,
                              .nvectors = PHTK_N(suite_vectors),
                              .query = {.kind = PERKHUB_OP_ORDER_QUERY,
                                        .order_ref = REF,
                                        .order_kind = PERKHUB_OP_CARD_ORDER},
                              .query_now_ms = NOW_MS,
                              .query_not_found = {.fixture = FIXTURE_DIR "/code_2005.json"},
                              .query_unknown_code = {.fixture = FIXTURE_DIR "/code_9999.json"},
                              .callbacks = suite_callbacks,
                              .ncallbacks = PHTK_N(suite_callbacks),
                              .sign_field = "sign",
                          }))
