/*
 * The example adapter end to end (issue 17): perkhubd with a supplier on
 * plugins/example (form-encoded, MD5-signed) against supsim's form protocol
 * (tools/supsim/sim_form.c, POST /form/<op>). A recharge is accepted
 * processing, then settled succeeded by the order query once the simulator
 * completes it; a card order's codes come from the query. The simulator holds
 * one order per reference: each was sent once.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

static h_daemon D;
static h_sim S;

static void teardown(void)
{
    h_leftover(&D);
    if (S.pid > 0)
        h_sim_stop(&S);
}

TestSuite(example_adapter, .fini = teardown);

static int state_is(json_t *o, void *arg)
{
    return !strcmp(h_str(o, "state"), arg);
}

static long long place(const char *coid, const char *sku, int qty, const char *account)
{
    char body[256];
    snprintf(body, sizeof body, "{\"client_order_id\":\"%s\",\"sku\":\"%s\",\"quantity\":%d%s%s%s}",
             coid, sku, qty, account ? ",\"account\":\"" : "", account ? account : "",
             account ? "\"" : "");
    h_resp r = h_post_json(&D, "/v1/orders", "mall-token", body);
    cr_assert(r.status == 202 || r.status == 201 || r.status == 200, "%ld %s", r.status, r.body);
    long long id = h_int(h_order_of(&r), "id");
    h_resp_free(&r);
    return id;
}

Test(example_adapter, recharge_and_card_through_supsim)
{
    const char *args[] = {"--complete-ms", "1500", NULL};
    cr_assert(h_sim_start(&S, args) == 0, "supsim did not start (log %s)", S.log);
    h_write_file(S.dir, "form.key", "gw-secret");
    static char body[2048];
    snprintf(body, sizeof body,
             "suppliers:\n"
             "  - id: ex1\n    plugin: example\n    priority: 10\n"
             "    query_max_delay_ms: 500\n"
             "    config:\n      base_url: http://127.0.0.1:%u/form\n      merchant_id: gw-app\n"
             "      key: file:%s/form.key\n"
             "products:\n"
             "  - sku: ex.topup\n    name: Example top-up\n    brand: telco\n"
             "    category: telecom\n    delivery: recharge\n    face_value: \"50.00\"\n"
             "    offers:\n      - {supplier: ex1, supplier_sku: \"20001\", cost: \"49.00\"}\n"
             "  - sku: ex.card\n    name: Example card\n    brand: video\n"
             "    category: video\n    delivery: card_code\n    face_value: \"30.00\"\n"
             "    offers:\n      - {supplier: ex1, supplier_sku: \"10001\", cost: \"29.00\"}\n",
             S.port, S.dir);
    h_setup_custom(&D, body, NULL);
    cr_assert(h_start(&D) == 0, "perkhubd did not start");

    long long rid = place("ex-r-1", "ex.topup", 1, "13900000001");
    json_decref(h_order_poll(&D, rid, "ops-token", state_is, "succeeded", 20000,
                             "the recharge through the example adapter succeeding"));
    long long cid = place("ex-c-1", "ex.card", 1, NULL);
    json_t *o = h_order_poll(&D, cid, "ops-token", state_is, "succeeded", 20000,
                             "the card order through the example adapter succeeding");
    json_decref(o);

    json_t *t = h_sim_truth(&S);
    cr_assert_not_null(t);
    for (int i = 0; i < 2; i++) {
        long long id = i ? cid : rid;
        size_t n = 0;
        json_t *so = h_sim_truth_find(t, "orders", "gateway", id, &n);
        cr_assert_not_null(so, "the simulator has no order for %lld", id);
        cr_assert_eq(n, 1, "order %lld reached the simulator %zu times", id, n);
        cr_assert_str_eq(h_str(so, "state"), "success");
    }
    json_decref(t);
    h_stop_clean(&D);
    h_cleanup(&D);
    h_sim_stop(&S);
}
