/*
 * test_example.c — the example adapter through the SDK test kit
 * (<perkhub/testkit.h>): example.c is compiled into this binary and runs
 * against the core's real host table. First the conformance suite over the
 * fixtures (example_suite.h), then what the suite cannot know: that each
 * documented reply means what the protocol says.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <perkhub/plugin.h>
#include <perkhub/testkit.h>

#include "example_suite.h"

PHTK_CONFORMANCE(example, example_suite)

static phtk *open_kit(void)
{
    char err[256] = "";
    phtk *tk = phtk_open(perkhub_plugin_entry(), example_kv, err, sizeof err);
    cr_assert_not_null(tk, "%s", err);
    phtk_set_now(tk, EX_NOW);
    return tk;
}

/* Parses a fixture for op; returns the status, res filled (caller clears). */
static int parse_fixture(phtk *tk, const struct perkhub_op *op, const char *name,
                         struct perkhub_result *res)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", EXAMPLE_FIXTURES, name);
    size_t len;
    char *body = phtk_fixture(path, &len);
    cr_assert_not_null(body, "%s", path);
    int st = phtk_parse(tk, op, 200, body, len, res);
    free(body);
    return st;
}

Test(example, key_is_required_and_never_quoted)
{
    static const char *const no_key[] = {"base_url", "u", "merchant_id", "m", NULL};
    char err[256];
    cr_assert_eq(phtk_expect_refused(perkhub_plugin_entry(), no_key, "key", NULL, err, sizeof err),
                 0, "%s", err);
}

Test(example, recharge_request)
{
    phtk *tk = open_kit();
    /* the vector of fixtures/make_fixtures.py, on its own */
    char err[256];
    const struct phtk_suite_vector *v = &example_vectors[0];
    cr_assert_eq(phtk_expect_request_text(tk, &v->op, v->now_ms, v->want, err, sizeof err), 0, "%s",
                 err);
    cr_assert_eq(phtk_expect_request_text(tk, &v->op, v->now_ms + 1000, v->want, err, sizeof err),
                 -1, "another second, another signature");
    cr_assert(strstr(err, "does not contain"), "%s", err);
    struct perkhub_request req;
    cr_assert_eq(phtk_build(tk, &example_vectors[0].op, &req), PERKHUB_OK);
    cr_assert_str_eq(req.url, "https://sup.example.test/api/recharge");
    cr_assert_str_eq(phtk_header(&req, "Content-Type"), "application/x-www-form-urlencoded");
    cr_assert(strstr(req.body, "notify_url=http%3A%2F%2F127.0.0.1%3A8080%2Fv1%2Fcallbacks%2Fex1"),
              "%s", req.body);
    phtk_request_clear(tk, &req);
    phtk_close(tk);
}

Test(example, documented_replies)
{
    phtk *tk = open_kit();
    const struct perkhub_op *recharge = &example_orders[0].op, *card = &example_orders[1].op;
    struct perkhub_result res;

    cr_assert_eq(parse_fixture(tk, card, "card_ok.txt", &res), PERKHUB_OK);
    cr_assert_eq(res.state, PERKHUB_STATE_SUCCEEDED);
    cr_assert_eq(res.ncodes, 2);
    cr_assert_str_eq(res.codes[1].card_no, "C0002");
    cr_assert_str_eq(res.codes[1].code, "Pw-card-0002");
    phtk_result_clear(tk, &res);

    cr_assert_eq(parse_fixture(tk, recharge, "recharge_processing.txt", &res), PERKHUB_OK);
    cr_assert_eq(res.state, PERKHUB_STATE_PROCESSING);
    cr_assert_str_eq(res.supplier_order_id, "S001");
    phtk_result_clear(tk, &res);

    cr_assert_eq(parse_fixture(tk, recharge, "out_of_stock.txt", &res), PERKHUB_DEFINITE_FAILURE);
    cr_assert_str_eq(res.reason, "out_of_stock");
    phtk_result_clear(tk, &res);

    cr_assert_eq(parse_fixture(tk, &example_suite.query, "query_ok.txt", &res), PERKHUB_OK);
    cr_assert_eq(res.state, PERKHUB_STATE_SUCCEEDED);
    phtk_result_clear(tk, &res);

    struct perkhub_op bal = {.kind = PERKHUB_OP_BALANCE};
    cr_assert_eq(parse_fixture(tk, &bal, "balance.txt", &res), PERKHUB_OK);
    cr_assert_eq(res.balance, 123450);
    phtk_result_clear(tk, &res);
    phtk_close(tk);
}

/* A supplier that notifies by GET puts the same fields in the query string. */
Test(example, callback_by_post_and_by_get)
{
    phtk *tk = open_kit();
    phtk_set_now(tk, EX_NOW + 5000);
    size_t len;
    char *body = phtk_fixture(EXAMPLE_FIXTURES "/callback_success.txt", &len);
    cr_assert_not_null(body);
    const struct perkhub_callback posted = {.body = body, .body_len = len};
    const struct perkhub_callback got = {.method = "GET", .query = body};
    const struct perkhub_callback *cbs[] = {&posted, &got};
    for (size_t i = 0; i < 2; i++) {
        struct perkhub_result res;
        cr_assert_eq(phtk_verify(tk, cbs[i], &res), PERKHUB_OK, "%s", phtk_log(tk));
        cr_assert_str_eq(res.order_ref, "PH-1");
        cr_assert_eq(res.state, PERKHUB_STATE_SUCCEEDED);
        cr_assert_eq(res.amount, 3000);
        cr_assert_str_eq(res.reply_body, "success");
        phtk_result_clear(tk, &res);
    }
    free(body);
    phtk_close(tk);
}
