/*
 * example_suite.h — the conformance spec of the example adapter (perkhub/testkit.h,
 * "THE CONFORMANCE SUITE"): its fixtures, made by fixtures/make_fixtures.py,
 * whose signatures Python computes independently of example.c. Shared by
 * test_example.c and the planted-bug plugins of tests/kit.
 */
#ifndef EXAMPLE_SUITE_H
#define EXAMPLE_SUITE_H

#include <perkhub/testkit.h>

#ifndef EXAMPLE_FIXTURES
#define EXAMPLE_FIXTURES FIXTURE_DIR
#endif

#define EX_KEY "ex-Secret-key-42"
#define EX_NOW INT64_C(1795000000000)

static const char *const example_kv[] = {
    "base_url", "https://sup.example.test/api", "merchant_id", "m100", "key", EX_KEY, NULL};

static const struct phtk_suite_order example_orders[] = {
    {.op = {.kind = PERKHUB_OP_RECHARGE,
            .order_ref = "PH-1",
            .product_id = "P10",
            .quantity = 1,
            .account = "13800138000"},
     .now_ms = EX_NOW,
     .good = {.fixture = EXAMPLE_FIXTURES "/recharge_ok.txt"},
     .unknown_code = {.fixture = EXAMPLE_FIXTURES "/unknown_code.txt"}},
    {.op = {.kind = PERKHUB_OP_CARD_ORDER, .order_ref = "PH-2", .product_id = "P20", .quantity = 2},
     .now_ms = EX_NOW,
     .good = {.fixture = EXAMPLE_FIXTURES "/card_ok.txt"},
     .unknown_code = {.fixture = EXAMPLE_FIXTURES "/unknown_code.txt"}},
};

/* fixtures/vector_recharge.txt, from make_fixtures.py */
static const struct phtk_suite_vector example_vectors[] = {
    {.op = {.kind = PERKHUB_OP_RECHARGE,
            .order_ref = "PH-1",
            .product_id = "P10",
            .quantity = 1,
            .account = "13800138000",
            .callback_url = "http://127.0.0.1:8080/v1/callbacks/ex1"},
     .now_ms = EX_NOW,
     .want = "sign=A9408B4D5C4F23EB464697212031385C"},
};

static const struct phtk_suite_callback example_callbacks[] = {
    {.body_fixture = EXAMPLE_FIXTURES "/callback_success.txt", .now_ms = EX_NOW + 5000},
    {.body_fixture = EXAMPLE_FIXTURES "/callback_failed.txt", .now_ms = EX_NOW + 100000},
};

static const struct phtk_suite example_suite = {
    .config = example_kv,
    .orders = example_orders,
    .norders = PHTK_N(example_orders),
    .vectors = example_vectors,
    .nvectors = PHTK_N(example_vectors),
    .query = {.kind = PERKHUB_OP_ORDER_QUERY,
              .order_ref = "PH-1",
              .order_kind = PERKHUB_OP_RECHARGE},
    .query_now_ms = EX_NOW,
    .query_not_found = {.fixture = EXAMPLE_FIXTURES "/query_not_found.txt"},
    .query_unknown_code = {.fixture = EXAMPLE_FIXTURES "/unknown_code.txt"},
    .callbacks = example_callbacks,
    .ncallbacks = PHTK_N(example_callbacks),
    .sign_field = "sign",
};

#endif
