/*
 * The example adapter end to end (issue 17): perkhubd with a supplier on
 * plugins/example (form-encoded, MD5-signed) against supsim's form protocol
 * (tools/supsim/sim_form.c, POST /form/<op>). A recharge is accepted
 * processing; a notify signed as the supplier signs, sent by GET with its
 * fields in the query string, is verified, matched to the attempt and answered
 * "success"; the order query settles the recharge once the simulator completes
 * it. A card order's codes come from the query. The simulator holds one order
 * per reference: each was sent once.
 */
#include <openssl/evp.h>
#include <time.h>
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

static int attempt_processing(json_t *o, void *arg)
{
    (void)arg;
    json_t *a = json_array_get(json_object_get(o, "attempts"), 0);
    const char *st = json_string_value(json_object_get(a, "state"));
    return st && !strcmp(st, "processing");
}

/* GET /v1/callbacks/ex1 with a notify about ref, signed with key as the
 * example protocol signs. */
static h_resp notify_by_get(const char *ref, const char *key)
{
    char ts[24], text[512], path[768], hex[33];
    snprintf(ts, sizeof ts, "%lld", (long long)time(NULL));
    snprintf(text, sizeof text, "amount=49.00&order_no=%s&state=success&timestamp=%s&key=%s", ref,
             ts, key);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    cr_assert(EVP_Digest(text, strlen(text), md, &mdlen, EVP_md5(), NULL) == 1);
    for (unsigned i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02X", md[i]);
    snprintf(path, sizeof path,
             "/v1/callbacks/ex1?order_no=%s&state=success&amount=49.00&timestamp=%s&sign=%s", ref,
             ts, hex);
    h_resp r;
    cr_assert(h_http(&D, "GET", path, NULL, NULL, NULL, 0, &r) == 0, "no answer to the notify");
    return r;
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
    const char *args[] = {"--complete-ms", "2500", NULL};
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
    json_t *v = h_order_poll(&D, rid, "ops-token", attempt_processing, NULL, 10000,
                             "the recharge's attempt becoming processing");
    char ref[80];
    snprintf(ref, sizeof ref, "%s",
             h_str(json_array_get(json_object_get(v, "attempts"), 0), "ref"));
    json_decref(v);
    h_resp n = notify_by_get(ref, "gw-secret");
    cr_assert_eq(n.status, 200, "the GET notify: %ld %s", n.status, n.body);
    cr_assert_str_eq(n.body, "success", "the answer the supplier expects");
    h_resp_free(&n);
    n = notify_by_get(ref, "not-the-key");
    cr_assert_eq(n.status, 401, "a notify signed with another key: %ld %s", n.status, n.body);
    h_resp_free(&n);
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
