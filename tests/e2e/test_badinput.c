/*
 * Bad input end to end (docs/design.md rule 4): every malformed request gets a clear
 * error naming the field, line or column, and changes nothing: GET /v1/stats
 * (counts per SKU, orders, last event) is the same before and after. Also the
 * config checker's file:line:column messages.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static h_daemon D;

static void teardown(void)
{
    h_leftover(&D);
}

TestSuite(badinput, .fini = teardown);

/* A daemon with some state to keep: a batch and an order. */
static h_daemon *start(const char *extra)
{
    h_setup(&D, extra);
    cr_assert_eq(h_start(&D), 0);
    h_resp r = h_import(&D, "test.card", "code\nBI-1\nBI-2\nBI-3\n", 201);
    h_resp_free(&r);
    r = h_order(&D, "mall-token", "BI-O1", "test.card", 1);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    return &D;
}

static void finish(void)
{
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    h_cleanup(&D);
}

/* Checks an error answer: status, error code, a message mentioning each of the
 * needles (NULL-terminated), the request id, and that it does not echo secret
 * (may be NULL). */
static void check_error(const h_resp *r, long status, const char *code, const char *secret,
                        const char *const *needles)
{
    cr_assert_eq(r->status, status, "expected %ld %s, got %ld: %s", status, code, r->status,
                 r->body);
    cr_assert(json_is_object(r->json), "error bodies are JSON: %s", r->body);
    cr_assert_str_eq(h_str(r->json, "error"), code, "%s", r->body);
    const char *msg = h_str(r->json, "message");
    for (size_t i = 0; needles && needles[i]; i++)
        cr_assert(strstr(msg, needles[i]), "message '%s' does not mention '%s'", msg, needles[i]);
    char hv[64];
    cr_assert(h_header(r, "X-Request-Id", hv, sizeof hv), "no X-Request-Id");
    cr_assert_str_eq(h_str(r->json, "request_id"), hv);
    if (secret)
        cr_assert_null(strstr(r->body, secret), "the error echoes '%s': %s", secret, r->body);
}

#define NEEDLES(...) ((const char *const[]){__VA_ARGS__, NULL})

/* One request that must fail and change nothing. */
static void refused(const char *method, const char *path, const char *token, const char *ctype,
                    const char *body, size_t len, long status, const char *code, const char *secret,
                    const char *const *needles)
{
    json_t *before = h_stats(&D);
    h_resp r;
    cr_assert_eq(h_http(&D, method, path, token, ctype, body, len, &r), 0, "%s %s: no answer",
                 method, path);
    check_error(&r, status, code, secret, needles);
    h_resp_free(&r);
    json_t *after = h_stats(&D);
    char *a = json_dumps(before, JSON_SORT_KEYS), *b = json_dumps(after, JSON_SORT_KEYS);
    cr_assert(json_equal(before, after), "%s %s changed the store:\nbefore %s\nafter  %s", method,
              path, a, b);
    free(a);
    free(b);
    json_decref(before);
    json_decref(after);
}

static void bad_order(const char *body, long status, const char *code, const char *secret,
                      const char *const *needles)
{
    refused("POST", "/v1/orders", "mall-token", "application/json", body, strlen(body), status,
            code, secret, needles);
}

Test(badinput, malformed_json_names_the_position_and_never_echoes)
{
    start(NULL);
    bad_order("{\"client_order_id\":\"SECRET-XYZ-1\",\"sku\":\"test.card\",", 400,
              "invalid_request", "SECRET-XYZ-1", NEEDLES("malformed JSON", "line 1", "column"));
    bad_order("{\n  \"client_order_id\": \"SECRET-XYZ-2\",\n  \"sku\": \"test.card\"\n"
              "  \"quantity\": 1\n}\n",
              400, "invalid_request", "SECRET-XYZ-2", NEEDLES("line 4, column"));
    bad_order(
        "{\"client_order_id\":\"A\",\"client_order_id\":\"SECRET-XYZ-3\",\"sku\":\"test.card\"}",
        400, "invalid_request", "SECRET-XYZ-3", NEEDLES("line 1"));
    bad_order("[\"SECRET-XYZ-4\"]", 400, "invalid_request", "SECRET-XYZ-4",
              NEEDLES("expected a JSON object"));
    bad_order("\"SECRET-XYZ-5\"", 400, "invalid_request", "SECRET-XYZ-5", NEEDLES("body"));
    /* a lookup body holds a code: a syntax error must not give it back */
    refused("POST", "/v1/codes/lookup", "mall-token", "application/json",
            "{\"code\": \"BI-1\" \"x\"}", 20, 400, "invalid_request", "BI-1",
            NEEDLES("line 1, column"));
    /* nor write it to the log */
    cr_assert_eq(h_file_count(D.log, "SECRET-XYZ"), 0, "a body reached the log");
    finish();
}

Test(badinput, wrong_types_and_values_name_the_field)
{
    start(NULL);
    bad_order("{\"client_order_id\":\"W-1\",\"sku\":\"test.card\",\"quantity\":\"1\"}", 400,
              "invalid_request", NULL, NEEDLES("quantity"));
    bad_order("{\"client_order_id\":\"W-1\",\"sku\":5,\"quantity\":1}", 400, "invalid_request",
              NULL, NEEDLES("sku"));
    bad_order("{\"client_order_id\":\"W-1\",\"sku\":\"test.card\",\"quantity\":1.5}", 400,
              "invalid_request", NULL, NEEDLES("quantity"));
    bad_order("{\"client_order_id\":\"W-1\",\"sku\":\"test.card\",\"quantity\":0}", 400,
              "invalid_request", NULL, NEEDLES("quantity"));
    bad_order("{\"client_order_id\":\"W-1\",\"sku\":\"test.card\",\"quantity\":-3}", 400,
              "invalid_request", NULL, NEEDLES("quantity"));
    bad_order("{\"client_order_id\":\"W-1\",\"sku\":\"test.card\",\"quantity\":null}", 400,
              "invalid_request", NULL, NEEDLES("quantity"));
    bad_order("{\"client_order_id\":7,\"sku\":\"test.card\",\"quantity\":1}", 400,
              "invalid_request", NULL, NEEDLES("client_order_id"));
    bad_order("{\"client_order_id\":\"has space\",\"sku\":\"test.card\",\"quantity\":1}", 400,
              "invalid_request", NULL, NEEDLES("client_order_id"));
    char body[512], coid[200];
    memset(coid, 'x', 129);
    coid[129] = 0;
    snprintf(body, sizeof body, "{\"client_order_id\":\"%s\",\"sku\":\"test.card\"}", coid);
    bad_order(body, 400, "invalid_request", NULL, NEEDLES("client_order_id", "128"));
    finish();
}

Test(badinput, unknown_and_missing_fields)
{
    start(NULL);
    /* an unknown key is named by its position: a caller may paste a code as a key */
    bad_order(
        "{\"client_order_id\":\"F-1\",\"sku\":\"test.card\",\"quantity\":1,\"colour\":\"red\"}",
        400, "invalid_request", "colour",
        NEEDLES("unknown field (key 4 of the object", "client_order_id, sku, quantity"));
    bad_order("{\"BI-2\":1,\"client_order_id\":\"F-1\",\"sku\":\"test.card\"}", 400,
              "invalid_request", "BI-2", NEEDLES("unknown field (key 1 of the object"));
    bad_order("{\"sku\":\"test.card\",\"quantity\":1}", 400, "invalid_request", NULL,
              NEEDLES("client_order_id"));
    bad_order("{\"client_order_id\":\"F-1\",\"quantity\":1}", 400, "invalid_request", NULL,
              NEEDLES("sku"));
    bad_order("{}", 400, "invalid_request", NULL, NEEDLES("client_order_id"));
    refused("POST", "/v1/orders", "mall-token", "application/json", NULL, 0, 400, "invalid_request",
            NULL, NEEDLES("body"));
    refused("POST", "/v1/orders", "mall-token", "application/json", "", 0, 400, "invalid_request",
            NULL, NEEDLES("body"));
    refused("POST", "/v1/batches/1/void", "ops-token", "application/json", "{\"reason\":5}", 12,
            400, "invalid_request", NULL, NEEDLES("reason"));
    /* the void endpoint refuses unknown fields as orders do (it used to void the
     * batch and ignore them) */
    const char *v = "{\"reason\":\"supplier recall\",\"SECRET-KEY-9\":true}";
    refused("POST", "/v1/batches/1/void", "ops-token", "application/json", v, strlen(v), 400,
            "invalid_request", "SECRET-KEY-9",
            NEEDLES("unknown field (key 2 of the object", "takes reason"));
    finish();
}

/* A repeated key or a number jansson cannot hold names the field when it is one
 * of the endpoint's, and only its position otherwise. */
Test(badinput, repeated_keys_and_huge_numbers_name_our_fields)
{
    start(NULL);
    bad_order(
        "{\"client_order_id\":\"A\",\"client_order_id\":\"SECRET-D-1\",\"sku\":\"test.card\"}", 400,
        "invalid_request", "SECRET-D-1",
        NEEDLES("client_order_id: given more than once", "line 1, column 40"));
    bad_order(
        "{\"client_order_id\":\"D-2\",\"sku\":\"test.card\",\n \"quantity\": 1, \"quantity\" : 2}",
        400, "invalid_request", NULL, NEEDLES("quantity: given more than once", "line 2"));
    bad_order("{\"SECRET-KEY-1\":1,\"SECRET-KEY-1\":2}", 400, "invalid_request", "SECRET-KEY-1",
              NEEDLES("body: a key given more than once", "line 1, column"));
    bad_order(
        "{\"client_order_id\":\"D-3\",\"sku\":\"test.card\",\"quantity\":99999999999999999999}",
        400, "invalid_request", "99999", NEEDLES("quantity: number out of range", "line 1"));
    bad_order(
        "{\"client_order_id\":\"D-4\",\"sku\":\"test.card\",\"wait\" :\n -99999999999999999999}",
        400, "invalid_request", "99999", NEEDLES("wait: number out of range", "line 2"));
    bad_order("{\"SECRET-KEY-2\":123456789012345678901234,\"sku\":\"test.card\"}", 400,
              "invalid_request", "SECRET-KEY-2", NEEDLES("body: number out of range", "line 1"));
    bad_order("{\"client_order_id\":\"D-5\",\"sku\":\"test\xff\"}", 400, "invalid_request", NULL,
              NEEDLES("body: not valid UTF-8", "line 1"));
    bad_order("{\"client_order_id\":\"D-6\\u0000SECRET-D-7\",\"sku\":\"test.card\"}", 400,
              "invalid_request", "SECRET-D-7", NEEDLES("body: a NUL (\\u0000) at line 1"));
    /* the lookup names its own field given twice, never the value (a code) */
    refused("POST", "/v1/codes/lookup", "mall-token", "application/json",
            "{\"code\":\"BI-1\",\"code\":\"BI-2\"}", 29, 400, "invalid_request", "BI-",
            NEEDLES("code: given more than once"));
    /* and an unknown key by its position: a caller may paste a code as a key */
    refused("POST", "/v1/codes/lookup", "mall-token", "application/json", "{\"BI-SECRET-3\":\"x\"}",
            19, 400, "invalid_request", "BI-SECRET",
            NEEDLES("body: unknown field (key 1 of the object"));
    const char *v = "{\"reason\":\"a\",\"reason\":\"SECRET-D-6\"}";
    refused("POST", "/v1/batches/1/void", "ops-token", "application/json", v, strlen(v), 400,
            "invalid_request", "SECRET-D-6", NEEDLES("reason: given more than once"));
    finish();
}

Test(badinput, authentication_and_scopes)
{
    start(NULL);
    const char *order = "{\"client_order_id\":\"AU-1\",\"sku\":\"test.card\",\"quantity\":1}";
    size_t n = strlen(order);
    refused("POST", "/v1/orders", NULL, "application/json", order, n, 401, "unauthorized", NULL,
            NEEDLES("Authorization"));
    refused("POST", "/v1/orders", "not-a-token", "application/json", order, n, 401, "unauthorized",
            "not-a-token", NEEDLES("unknown token"));
    refused("GET", "/v1/products", NULL, NULL, NULL, 0, 401, "unauthorized", NULL,
            NEEDLES("Authorization"));
    refused("GET", "/v1/stats", "", NULL, NULL, 0, 401, "unauthorized", NULL, NULL);
    /* right token, wrong scope */
    refused("GET", "/v1/stats", "mall-token", NULL, NULL, 0, 403, "forbidden", NULL,
            NEEDLES("mall", "ops"));
    /* the events feed is a mall's (fulfill) and ops': support is not an integration */
    refused("GET", "/v1/events", "support-token", NULL, NULL, 0, 403, "forbidden", NULL,
            NEEDLES("cs", "fulfill or ops"));
    refused("POST", "/v1/orders", "ops-token", "application/json", order, n, 403, "forbidden", NULL,
            NEEDLES("ops", "fulfill"));
    refused("POST", "/v1/orders", "support-token", "application/json", order, n, 403, "forbidden",
            NULL, NEEDLES("cs"));
    const char *csv = "code\nSCOPE-1\n";
    refused("POST", "/v1/batches?supplier=acme&sku=test.card&unit_cost=1.00", "mall-token",
            "text/csv", csv, strlen(csv), 403, "forbidden", NULL, NEEDLES("ops"));
    finish();
}

Test(badinput, unknown_endpoints_and_methods)
{
    start(NULL);
    refused("GET", "/v1/nope", "mall-token", NULL, NULL, 0, 404, "not_found", "/v1/nope",
            NEEDLES("endpoint"));
    refused("GET", "/v2/orders", NULL, NULL, NULL, 0, 404, "not_found", NULL, NULL);
    refused("GET", "/v1/orders/1/extra", "mall-token", NULL, NULL, 0, 404, "not_found", NULL, NULL);
    refused("DELETE", "/v1/orders", "mall-token", NULL, NULL, 0, 405, "method_not_allowed", NULL,
            NEEDLES("DELETE", "/v1/orders"));
    refused("GET", "/v1/codes/lookup", "mall-token", NULL, NULL, 0, 405, "method_not_allowed", NULL,
            NEEDLES("GET"));
    refused("PUT", "/v1/batches", "ops-token", "text/csv", "code\nX-1\n", 9, 405,
            "method_not_allowed", NULL, NULL);
    refused("POST", "/v1/health", NULL, "application/json", "{}", 2, 405, "method_not_allowed",
            NULL, NULL);
    refused("GET", "/v1/orders/abc", "mall-token", NULL, NULL, 0, 400, "invalid_request", NULL,
            NEEDLES("order id"));
    refused("GET", "/v1/orders?limit=0", "mall-token", NULL, NULL, 0, 400, "invalid_request", NULL,
            NEEDLES("limit"));
    refused("GET", "/v1/orders?after=x", "mall-token", NULL, NULL, 0, 400, "invalid_request", NULL,
            NEEDLES("after"));
    refused("GET", "/v1/events?limit=5000", "ops-token", NULL, NULL, 0, 400, "invalid_request",
            NULL, NEEDLES("limit"));
    refused("GET", "/v1/batches/x", "ops-token", NULL, NULL, 0, 400, "invalid_request", NULL,
            NEEDLES("batch id"));
    refused("GET", "/v1/products/no.such", "mall-token", NULL, NULL, 0, 404, "not_found", "no.such",
            NEEDLES("sku"));
    finish();
}

/* Every route declares the query parameters it reads (http_api.c's route
 * table); any other one is a 400 naming it, so a misspelt filter cannot
 * quietly answer "everything". */
Test(badinput, unknown_query_parameters_are_refused)
{
    start(NULL);
    static const struct {
        const char *method, *path, *token;
    } routes[] = {
        {"GET", "/v1/health", NULL},
        {"GET", "/v1/ready", NULL},
        {"GET", "/v1/products", "mall-token"},
        {"GET", "/v1/products/test.card", "mall-token"},
        {"POST", "/v1/batches?supplier=acme&sku=test.card&unit_cost=1.00", "ops-token"},
        {"GET", "/v1/batches", "ops-token"},
        {"GET", "/v1/batches/1", "ops-token"},
        {"POST", "/v1/batches/1/void", "ops-token"},
        {"POST", "/v1/orders", "mall-token"},
        {"GET", "/v1/orders", "mall-token"},
        {"GET", "/v1/orders/1", "mall-token"},
        {"POST", "/v1/codes/lookup", "mall-token"},
        {"GET", "/v1/events", "ops-token"},
        {"GET", "/v1/suppliers", "ops-token"},
        {"GET", "/v1/suppliers/sbx/catalog", "ops-token"},
        {"GET", "/v1/suppliers/sbx/balance", "ops-token"},
        {"GET", "/v1/stats", "ops-token"},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s%cbogus=1", routes[i].path,
                 strchr(routes[i].path, '?') ? '&' : '?');
        const char *body = routes[i].method[0] == 'P' ? "{}" : NULL;
        /* named by position, never quoted: a caller may paste a code as a name */
        refused(routes[i].method, path, routes[i].token, "application/json", body, body ? 2 : 0,
                400, "invalid_request", "bogus",
                NEEDLES(strchr(routes[i].path, '?') ? "unknown parameter (the 4th"
                                                    : "unknown parameter (the 1st"));
    }
    /* the case: a filter that does not exist does not list every order */
    refused("GET", "/v1/orders?status=failed", "mall-token", NULL, NULL, 0, 400, "invalid_request",
            "status", NEEDLES("unknown parameter (the 1st", "after, limit", "client_order_id"));
    /* and a real filter's bad value is refused naming it, not read as "any" */
    refused(
        "GET", "/v1/orders?state=done", "mall-token", NULL, NULL, 0, 400, "invalid_request", NULL,
        NEEDLES(
            "state: expected processing, succeeded, failed, unknown, held, granted or partial"));
    refused("GET", "/v1/products?brand=testbrand&Brand=x", "mall-token", NULL, NULL, 0, 400,
            "invalid_request", "Brand", NEEDLES("unknown parameter (the 2nd"));
    refused("GET", "/v1/orders?limit=1&BI-1=1", "mall-token", NULL, NULL, 0, 400, "invalid_request",
            "BI-1", NEEDLES("unknown parameter (the 2nd"));
    /* a repeated parameter is one the route takes: that name is ours to say */
    refused("GET", "/v1/orders?limit=1&limit=500", "mall-token", NULL, NULL, 0, 400,
            "invalid_request", NULL, NEEDLES("'limit'", "more than once"));
    /* an unknown parameter is refused before anyone's value is read */
    refused("POST", "/v1/orders?wait=5", "mall-token", "application/json",
            "{\"client_order_id\":\"QP-1\",\"sku\":\"test.card\"}", 44, 400, "invalid_request",
            "wait", NEEDLES("unknown parameter (the 1st", "takes no query parameters"));
    /* the declared ones still work */
    h_resp r = h_get(&D, "/v1/orders?after=0&limit=5", "mall-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    r = h_get(&D, "/v1/orders?client_order_id=BI-O1", "mall-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    r = h_get(&D, "/v1/products?brand=testbrand&tag=video&category=video", "mall-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    r = h_get(&D, "/v1/events?after=0&limit=1", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    finish();
}

/* A client marked loopback_only (the embedded default marks its published
 * demo tokens so) is refused from any other address, with a 403 saying why;
 * other clients are not. Needs an address other than loopback to send from:
 * without one only the allowed side runs here (the address check itself is
 * tests/unit/test_http_api.c). */
Test(badinput, loopback_only_clients_are_refused_from_elsewhere)
{
    h_setup(&D, NULL);
    char *text = h_config_text(&D, NULL);
    /* tokens come from another address over plain HTTP below */
    char *allowed = h_replace(text, "data_dir:", "http:\n  allow_plain_tokens: true\ndata_dir:");
    char *wide = h_replace(allowed, "  address: 127.0.0.1\n", "  address: 0.0.0.0\n");
    free(allowed);
    /* SHA-256 of "demo-mall-token", as in the embedded default */
    char *cfg = h_replace(wide, "clients:\n",
                          "clients:\n  - name: demo\n    token_sha256: "
                          "c8e0aa386ce8862223ef2a674bf01fac0afeb83fcf4738400864098d6b80a0fd\n"
                          "    scopes: [fulfill, support]\n    loopback_only: true\n");
    h_write_config_text(&D, cfg);
    free(text);
    free(wide);
    free(cfg);
    cr_assert_eq(h_start(&D), 0);

    h_resp r = h_get(&D, "/v1/products", "demo-mall-token");
    cr_assert_eq(r.status, 200, "loopback peer: %s", r.body);
    h_resp_free(&r);

    char addr[INET_ADDRSTRLEN];
    if (!h_non_loopback_ipv4(addr, sizeof addr)) {
        h_stop_clean(&D);
        h_cleanup(&D);
        cr_skip_test("no non-loopback IPv4 address on this machine");
    }
    char *body;
    long st = h_get_via(addr, D.port, "/v1/products", "demo-mall-token", &body);
    cr_assert_eq(st, 403, "from %s: %ld %s", addr, st, body);
    json_t *j = json_loads(body, 0, NULL);
    cr_assert(j, "%s", body);
    cr_assert_str_eq(h_str(j, "error"), "forbidden");
    cr_assert(strstr(h_str(j, "message"), "loopback_only"), "%s", body);
    cr_assert(strstr(h_str(j, "message"), "'demo'"), "%s", body);
    json_decref(j);
    free(body);
    /* the same from there with a token that is not loopback_only */
    st = h_get_via(addr, D.port, "/v1/products", "mall-token", &body);
    cr_assert_eq(st, 200, "from %s: %ld %s", addr, st, body);
    free(body);
    h_stop_clean(&D);
    h_cleanup(&D);
}

Test(badinput, oversize_body_is_413)
{
    start("limits:\n  max_body_mb: 1\n");
    size_t n = 2u << 20;
    char *big = malloc(n + 1);
    cr_assert(big);
    /* a CSV of 2 MB of well-formed codes: refused for its size alone */
    size_t off = (size_t)snprintf(big, n + 1, "code\n");
    for (int i = 0; off + 16 < n; i++)
        off += (size_t)snprintf(big + off, n + 1 - off, "BIG-%010d\n", i);
    while (off < n)
        big[off++] = '\n';
    refused("POST", "/v1/batches?supplier=acme&sku=test.card&unit_cost=1.00", "ops-token",
            "text/csv", big, n, 413, "payload_too_large", NULL, NEEDLES("body"));
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    refused("POST", "/v1/orders", "mall-token", "application/json", big, n, 413,
            "payload_too_large", NULL, NULL);
    free(big);
    /* still serving, and a body under the limit is fine */
    h_resp r = h_import(&D, "test.card", "code\nSMALL-1\n", 201);
    h_resp_free(&r);
    finish();
}

Test(badinput, import_over_max_import_codes)
{
    start("limits:\n  max_import_codes: 5\n");
    json_t *before = h_stats(&D);
    h_resp r = h_import(&D, "test.card", "code\nMX-1\nMX-2\nMX-3\nMX-4\nMX-5\nMX-6\n", 422);
    check_error(&r, 422, "limit_exceeded", "MX-1", NEEDLES("6", "5"));
    h_resp_free(&r);
    json_t *after = h_stats(&D);
    cr_assert(json_equal(before, after), "an import over the limit changed the store");
    json_decref(before);
    json_decref(after);
    r = h_import(&D, "test.card", "code\nMX-1\nMX-2\nMX-3\nMX-4\nMX-5\n", 201);
    h_resp_free(&r);
    finish();
}

/* The lines of an invalid_csv answer, as "line: reason" strings joined by '\n'. */
static char *bad_lines(const h_resp *r)
{
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(r->json, "lines"), i, l)
    {
        fprintf(f, "%lld: %s\n", (long long)json_integer_value(json_object_get(l, "line")),
                json_string_value(json_object_get(l, "reason")));
    }
    fclose(f);
    return s;
}

static void refused_csv(const char *csv, long error_count, const char *want_lines,
                        const char *const *secrets)
{
    json_t *before = h_stats(&D);
    h_resp r = h_import(&D, "test.card", csv, 422);
    check_error(&r, 422, "invalid_csv", NULL, NEEDLES("nothing imported"));
    cr_assert_eq(json_integer_value(json_object_get(r.json, "error_count")), error_count, "%s",
                 r.body);
    char *got = bad_lines(&r);
    cr_assert_str_eq(got, want_lines, "bad lines:\n%s\nexpected:\n%s", got, want_lines);
    free(got);
    for (size_t i = 0; secrets && secrets[i]; i++)
        cr_assert_null(strstr(r.body, secrets[i]), "the answer echoes %s: %s", secrets[i], r.body);
    h_resp_free(&r);
    json_t *after = h_stats(&D);
    cr_assert(json_equal(before, after), "a refused CSV changed the store");
    json_decref(before);
    json_decref(after);
}

Test(badinput, broken_csv_lists_every_bad_line_and_imports_nothing)
{
    start(NULL);
    char long_code[200];
    memset(long_code, 'L', 150);
    long_code[150] = 0;
    char csv[2048];
    snprintf(csv, sizeof csv,
             "code,card_no,expires_at\n" /* 1 */
             "GOOD-1\n"                  /* 2 */
             ",CARD-NO-CODE\n"           /* 3 */
             "%s\n"                      /* 4 */
             "BADEXP-1,,2026-13-45\n"    /* 5 */
             "F-1,F-2,2030-01-01,F-4\n"  /* 6 */
             "GOOD-1\n"                  /* 7 */
             "GOOD-2\n"                  /* 8 */
             "PAST-1,,2020-01-01\n"      /* 9 */
             "SP ACE\n",                 /* 10 */
             long_code);
    refused_csv(csv, 7,
                "3: code: empty\n"
                "4: code: longer than 128 bytes\n"
                "5: expires_at: not a date (YYYY-MM-DD or RFC 3339)\n"
                "6: 4 fields, expected at most 3\n"
                "7: duplicate of line 2\n"
                "9: expires_at: already expired\n"
                "10: code: contains a space or non-printable byte\n",
                NEEDLES("GOOD-1", "LLLLLLLL", "BADEXP", "PAST-1", "SP ACE"));

    /* codes already in the store, alone and among other bad lines */
    refused_csv("code\nNEW-1\nBI-2\nNEW-2\nBI-3\n", 2,
                "3: code already imported\n"
                "5: code already imported\n",
                NEEDLES("BI-2", "BI-3"));
    refused_csv("code,card_no\nNEW-1\nBI-2\n,x\nNEW-1\n", 3,
                "3: code already imported\n"
                "4: code: empty\n"
                "5: duplicate of line 2\n",
                NEEDLES("BI-2", "NEW-1"));

    /* whole-file problems */
    json_t *before = h_stats(&D);
    h_resp r = h_import(&D, "test.card", "code\n", 422);
    check_error(&r, 422, "invalid_csv", NULL, NEEDLES("no codes"));
    h_resp_free(&r);
    r = h_import(&D, "test.card", "code,IQY-HEADER-0001\nX-1,red\n", 422); /* a code as a name */
    check_error(&r, 422, "invalid_csv", "IQY-HEADER", NEEDLES("line 1", "header column 2"));
    h_resp_free(&r);
    r = h_import(&D, "test.card", "code\n\"UNTERMINATED-1\n", 422);
    check_error(&r, 422, "invalid_csv", "UNTERMINATED", NEEDLES("line 2", "quote"));
    h_resp_free(&r);
    json_t *after = h_stats(&D);
    cr_assert(json_equal(before, after));
    json_decref(before);
    json_decref(after);
    finish();
}

static void bad_import(const char *query, long status, const char *code, const char *const *needles)
{
    char path[600];
    snprintf(path, sizeof path, "/v1/batches?%s", query);
    const char *csv = "code\nARG-1\nARG-2\n";
    refused("POST", path, "ops-token", "text/csv", csv, strlen(csv), status, code, NULL, needles);
}

/* bad_import, also checking the answer does not echo secret */
static void bad_import_secret(const char *query, const char *secret, const char *const *needles)
{
    char path[600];
    snprintf(path, sizeof path, "/v1/batches?%s", query);
    const char *csv = "code\nARG-1\nARG-2\n";
    refused("POST", path, "ops-token", "text/csv", csv, strlen(csv), 400, "invalid_request", secret,
            needles);
}

Test(badinput, import_arguments)
{
    start(NULL);
    bad_import("supplier=nobody&sku=test.card&unit_cost=19.80", 400, "invalid_request",
               NEEDLES("supplier"));
    bad_import("sku=test.card&unit_cost=19.80", 400, "invalid_request", NEEDLES("supplier"));
    bad_import("supplier=acme&sku=no.such&unit_cost=19.80", 422, "unknown_sku", NEEDLES("sku"));
    bad_import("supplier=acme&unit_cost=19.80", 422, "unknown_sku", NEEDLES("sku"));
    bad_import("supplier=acme&sku=test.topup&unit_cost=19.80", 422, "unknown_sku",
               NEEDLES("test.topup", "card code"));
    bad_import("supplier=acme&sku=test.card&unit_cost=abc", 400, "invalid_request",
               NEEDLES("unit_cost"));
    bad_import("supplier=acme&sku=test.card&unit_cost=19.999", 400, "invalid_request",
               NEEDLES("unit_cost"));
    bad_import("supplier=acme&sku=test.card&unit_cost=-1", 400, "invalid_request",
               NEEDLES("unit_cost"));
    bad_import("supplier=acme&sku=test.card", 400, "invalid_request", NEEDLES("unit_cost"));
    char q[512], note[300];
    memset(note, 'n', 257);
    note[257] = 0;
    snprintf(q, sizeof q, "supplier=acme&sku=test.card&unit_cost=1&note=%s", note);
    bad_import(q, 400, "invalid_request", NEEDLES("note"));
    /* the same codes import fine with good arguments */
    h_resp r = h_import(&D, "test.card", "code\nARG-1\nARG-2\n", 201);
    h_resp_free(&r);
    finish();
}

/* Text from the URL (every query value, every '*' path segment) must be UTF-8
 * without a NUL: invalid UTF-8 used to reach jansson and answer 500
 * out_of_memory, and MHD's decoding of %00 cut the text short without a word
 * (note=ab%00x stored "ab"; /v1/orders/1%00x answered order 1). Each is a 400
 * naming the parameter or the segment, quoting nothing, changing nothing. */
Test(badinput, url_text_must_be_utf8_without_nul)
{
    start(NULL);
    static const char *const import_args[] = {"supplier=acme", "sku=test.card", "unit_cost=1.00",
                                              "note=n"};
    static const char *const bad[][2] = {{"%00SECRET-N", "NUL"},
                                         {"%FF%FE", "UTF-8"},
                                         {"%C3%28", "UTF-8"},
                                         {"%C0%80", "NUL"},
                                         {"%ED%A0%80", "UTF-8"}}; /* a surrogate */
    for (size_t a = 0; a < 4; a++)
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            char q[256] = "", name[16];
            for (size_t i = 0; i < 4; i++)
                snprintf(q + strlen(q), sizeof q - strlen(q), "%s%s%s", i ? "&" : "",
                         import_args[i], i == a ? bad[b][0] : "");
            snprintf(name, sizeof name, "%.*s:", (int)strcspn(import_args[a], "="), import_args[a]);
            bad_import_secret(q, "SECRET-N", NEEDLES(name, bad[b][1]));
        }
    /* the two cases, and a note that is fine */
    bad_import_secret("supplier=acme&sku=test.card&unit_cost=1&note=%FF", NULL,
                      NEEDLES("note: not valid UTF-8"));
    bad_import_secret("supplier=acme&sku=test.card&unit_cost=1&note=ab%00SECRET-N", "SECRET-N",
                      NEEDLES("note: contains a NUL byte (%00)"));
    h_resp r;
    cr_assert_eq(h_http(&D, "POST",
                        "/v1/batches?supplier=acme&sku=test.card&unit_cost=1&note=%E5%9B%9E%20ok",
                        "ops-token", "text/csv", "code\nUTF-1\n", 11, &r),
                 0);
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert_str_eq(h_str(json_object_get(r.json, "batch"), "note"), "\xe5\x9b\x9e ok");
    h_resp_free(&r);

    static const struct {
        const char *path, *token, *needle;
    } gets[] = {
        {"/v1/orders?client_order_id=BI-O1%00SECRET-N", "mall-token", "client_order_id: contains"},
        {"/v1/orders?client_order_id=%FFSECRET-N", "mall-token", "client_order_id: not valid"},
        {"/v1/orders?after=0%00SECRET-N", "mall-token", "after: contains a NUL"},
        {"/v1/orders?limit=5%00SECRET-N", "mall-token", "limit: contains a NUL"},
        {"/v1/events?after=%FF", "ops-token", "after: not valid UTF-8"},
        {"/v1/events?limit=1%00SECRET-N", "ops-token", "limit: contains a NUL"},
        {"/v1/products?brand=testbrand%00SECRET-N", "mall-token", "brand: contains a NUL"},
        {"/v1/products?tag=%FF", "mall-token", "tag: not valid UTF-8"},
        {"/v1/products?category=video%00SECRET-N", "mall-token", "category: contains a NUL"},
        /* a NUL in a name: not cut to a known one ("limit"), and not quoted */
        {"/v1/orders?limit%00SECRET-N=5", "mall-token", "unknown parameter (the 1st"},
        /* path segments */
        {"/v1/orders/1%00SECRET-N", "mall-token", "the 3rd segment of /v1/orders/*: contains"},
        {"/v1/orders/%FF", "mall-token", "the 3rd segment of /v1/orders/*: not valid UTF-8"},
        {"/v1/products/test.card%00SECRET-N", "mall-token", "/v1/products/*: contains a NUL"},
        {"/v1/products/%FF", "mall-token", "/v1/products/*: not valid UTF-8"},
        {"/v1/batches/1%00SECRET-N", "ops-token", "/v1/batches/*: contains a NUL"},
        {"/v1/suppliers/sbx%00SECRET-N/catalog", "ops-token", "/v1/suppliers/*/catalog: contains"},
        {"/v1/suppliers/%FF/balance", "ops-token", "/v1/suppliers/*/balance: not valid UTF-8"},
    };
    for (size_t i = 0; i < sizeof gets / sizeof gets[0]; i++)
        refused("GET", gets[i].path, gets[i].token, NULL, NULL, 0, 400, "invalid_request",
                "SECRET-N", NEEDLES(gets[i].needle));
    const char *v = "{\"reason\":\"x\"}";
    refused("POST", "/v1/batches/1%00SECRET-N/void", "ops-token", "application/json", v, strlen(v),
            400, "invalid_request", "SECRET-N", NEEDLES("/v1/batches/*/void: contains"));
    refused("POST", "/v1/callbacks/%FF", NULL, "application/json", "{}", 2, 400, "invalid_request",
            NULL, NEEDLES("/v1/callbacks/*: not valid UTF-8"));
    /* a 405 names the route, not the caller's path (whose bytes made it a 500) */
    refused("DELETE", "/v1/orders/%FFSECRET-N", "mall-token", NULL, NULL, 0, 405,
            "method_not_allowed", "SECRET-N", NEEDLES("DELETE is not allowed on /v1/orders/*"));
    /* what stays fine: a real order id, a real filter */
    r = h_get(&D, "/v1/orders?client_order_id=BI-O1", "mall-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    finish();
}

/* ---- the config checker ----------------------------------------------------- */

/* 1-based line of the first occurrence of needle in text. */
static int line_of(const char *text, const char *needle)
{
    const char *at = strstr(text, needle);
    cr_assert(at, "'%s' not in the config", needle);
    int line = 1;
    for (const char *p = text; p < at; p++)
        line += *p == '\n';
    return line;
}

static int check_config(const char *path, char **out)
{
    const char *argv[] = {h_bin("PH_PERKHUBD"), "--check-config", path, NULL};
    char *o, *e;
    int rc = h_run(argv, NULL, NULL, 0, &o, &e);
    size_t n = strlen(o) + strlen(e) + 1;
    *out = malloc(n);
    snprintf(*out, n, "%s%s", o, e);
    free(o);
    free(e);
    return rc;
}

Test(badinput, check_config_points_at_file_line_column)
{
    h_setup(&D, NULL); /* no daemon: the checker alone */
    char *good = h_config_text(&D, NULL);
    struct {
        const char *from, *to; /* an edit of the good file */
        const char *mark;      /* text on the offending line, after the edit */
        const char *says;
    } cases[] = {
        {"  port: 0\n", "  prot: 0\n", "prot:", "prot"},
        {"delivery: card_code\n", "delivery: cardcode\n", "cardcode", "delivery"},
        {"map_size_mb: 16\n", "map_size_mb: \"16\"\n", "map_size_mb", "map_size_mb"},
        {"{supplier: acme,", "{supplier: acem,", "acem", "acme"},
        {"scopes: [ops]", "scopes: [ops, admin]", "admin", "scopes"},
        {"face_value: \"15.00\"", "face_value: \"15.001\"", "15.001", "face_value"},
        {"  - sku: test.card2\n", "  - sku: test.card\n    sku: again\n", "    sku: again",
         "duplicate"},
        /* libyaml notices the unclosed flow sequence on the next line */
        {"clients:\n", "clients:\n  - name: [oops\n", "  - name: mall", "invalid YAML"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *bad = h_replace(good, cases[i].from, cases[i].to);
        char path[400];
        snprintf(path, sizeof path, "%s/broken-%zu.yaml", D.dir, i);
        FILE *f = fopen(path, "w");
        cr_assert(f);
        fputs(bad, f);
        fclose(f);
        char *out;
        int rc = check_config(path, &out);
        cr_assert_eq(rc, 1, "case %zu: exit %d: %s", i, rc, out);
        char want[480];
        snprintf(want, sizeof want, "%s:%d:", path, line_of(bad, cases[i].mark));
        cr_assert(strncmp(out, want, strlen(want)) == 0, "case %zu: '%s' does not start with '%s'",
                  i, out, want);
        const char *col = out + strlen(want);
        cr_assert(*col >= '1' && *col <= '9', "case %zu: no column in '%s'", i, out);
        cr_assert(strstr(out, cases[i].says), "case %zu: '%s' does not mention '%s'", i, out,
                  cases[i].says);
        free(out);
        free(bad);
    }
    char *out;
    cr_assert_eq(check_config(D.config, &out), 0, "the good file: %s", out);
    cr_assert(strstr(out, "ok"), "%s", out);
    free(out);
    char missing[400];
    snprintf(missing, sizeof missing, "%s/missing.yaml", D.dir);
    cr_assert_eq(check_config(missing, &out), 1, "%s", out);
    cr_assert(strstr(out, "missing.yaml"), "%s", out);
    free(out);
    free(good);
    h_cleanup(&D);
}
