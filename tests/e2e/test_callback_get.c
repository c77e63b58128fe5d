/*
 * Callbacks by GET and with a query string (issue 17): plugin.h promises that a
 * supplier may notify by GET, its fields in the query string, and that
 * verify_callback sees the query. perkhubd with a supplier on the example
 * adapter (plugins/example: form fields, MD5-signed, read from the body or,
 * when the body is empty, from the query): a notify signed here, for a
 * reference that is not one of ours, is verified and then refused as
 * 400 callback_mismatch — by POST with a form body, by GET with a query
 * string and by POST with the query string; the same with one altered field is
 * 401 bad_signature. Before the change GET had no route and the query
 * reached no plugin.
 */
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "harness.h"

static h_daemon D;

static void teardown(void)
{
    h_leftover(&D);
}

TestSuite(callback_get, .fini = teardown);

#define EX_KEY "cb-get-key-0042"

/* A notify for order_no, signed as the example protocol signs (fields sorted,
 * "&key=" appended, MD5 in upper-case hex), into out. */
static void notify_text(const char *order_no, char *out, size_t n)
{
    char ts[24], text[512];
    snprintf(ts, sizeof ts, "%lld", (long long)time(NULL));
    /* remark's decoded text is signed: the query string must reach the plugin
     * with every value as sent (a space, '/', '+', '&', '=', UTF-8) */
    snprintf(text, sizeof text,
             "amount=30.00&order_no=%s&remark=a b/c+d&e=f \xe4\xb8\xad&state=success"
             "&supplier_order_no=S9&timestamp=%s&key=%s",
             order_no, ts, EX_KEY);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    cr_assert(EVP_Digest(text, strlen(text), md, &mdlen, EVP_md5(), NULL) == 1);
    char hex[33];
    for (unsigned i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02X", md[i]);
    snprintf(out, n,
             "order_no=%s&supplier_order_no=S9&state=success&amount=30.00"
             "&remark=a%%20b%%2Fc%%2Bd%%26e%%3Df%%20%%E4%%B8%%AD&timestamp=%s&sign=%s",
             order_no, ts, hex);
}

static h_resp call(const char *method, const char *query, const char *body)
{
    char path[1024];
    snprintf(path, sizeof path, "/v1/callbacks/ex1%s%s", query ? "?" : "", query ? query : "");
    h_resp r;
    cr_assert(h_http(&D, method, path, NULL, body ? "application/x-www-form-urlencoded" : NULL,
                     body, body ? strlen(body) : 0, &r) == 0,
              "no answer to %s", method);
    return r;
}

static void expect(h_resp r, long status, const char *error, const char *how)
{
    cr_assert_eq(r.status, status, "%s: %ld %s", how, r.status, r.body);
    cr_assert(strstr(r.body, error), "%s: %s", how, r.body);
    h_resp_free(&r);
}

Test(callback_get, get_and_query_reach_the_plugin)
{
    static char body[2048];
    snprintf(body, sizeof body,
             "suppliers:\n"
             "  - id: ex1\n    plugin: example\n    priority: 10\n"
             "    config:\n      base_url: http://127.0.0.1:9/api\n      merchant_id: m1\n"
             "      key: env:PH_TEST_EX_KEY\n"
             "products:\n"
             "  - sku: ex.topup\n    name: Example top-up\n    brand: telco\n"
             "    category: telecom\n    delivery: recharge\n    face_value: \"30.00\"\n"
             "    offers:\n      - {supplier: ex1, supplier_sku: P10, cost: \"29.00\"}\n");
    setenv("PH_TEST_EX_KEY", EX_KEY, 1);
    h_setup_custom(&D, body, NULL);
    cr_assert(h_start(&D) == 0, "perkhubd did not start");

    char good[512], bad[512];
    notify_text("PH-NOT-OURS", good, sizeof good);
    snprintf(bad, sizeof bad, "%s", good);
    bad[strlen("order_no=PH-NOT-OURS&supplier_order_no=S")] = '8'; /* S9 -> S8 */

    expect(call("POST", NULL, good), 400, "callback_mismatch", "POST, form body");
    expect(call("GET", good, NULL), 400, "callback_mismatch", "GET, query string");
    expect(call("POST", good, NULL), 400, "callback_mismatch", "POST, query string");
    /* a space may come as '+' in a query string, as in a form */
    char *plus = h_replace(good, "a%20b", "a+b");
    expect(call("GET", plus, NULL), 400, "callback_mismatch", "GET, a space written '+'");
    free(plus);
    expect(call("GET", bad, NULL), 401, "bad_signature", "GET, one field altered");
    expect(call("POST", NULL, bad), 401, "bad_signature", "POST, one field altered");

    h_stop_clean(&D);
    h_cleanup(&D);
}
