/*
 * Customer-service lookups end to end: by code and by order, what each kind of
 * client may see (owner, another client, a support-only client, ops), and the
 * diagnoses a bot acts on: issued, expired, voided_upstream, not_found.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "harness.h"

/* The test's daemon. A failed assertion skips the rest of the test, so the
 * suite's fini stops a daemon still running (and keeps its directory, log
 * included, for a look). */
static h_daemon D;

static void teardown(void)
{
    h_leftover(&D);
}

TestSuite(lookup, .fini = teardown);

static void start(h_daemon *d)
{
    h_setup(d, NULL);
    cr_assert_eq(h_start(d), 0);
}

static void finish(h_daemon *d)
{
    cr_assert_eq(h_stop(d, SIGTERM), 0);
    h_cleanup(d);
}

/* POST /v1/codes/lookup {"code": code} as token; asserts 200. */
static h_resp lookup_code(const h_daemon *d, const char *token, const char *code)
{
    char body[256];
    snprintf(body, sizeof body, "{\"code\":\"%s\"}", code);
    h_resp r = h_post_json(d, "/v1/codes/lookup", token, body);
    cr_assert_eq(r.status, 200, "lookup as %s: %ld %s", token, r.status, r.body);
    cr_assert(json_is_array(json_object_get(r.json, "results")), "%s", r.body);
    return r;
}

static json_t *result(const h_resp *r, size_t i)
{
    json_t *res = json_array_get(json_object_get(r->json, "results"), i);
    cr_assert(json_is_object(res), "no result %zu in %s", i, r->body);
    return res;
}

static const char *diagnosis(const h_resp *r)
{
    cr_assert_eq(json_array_size(json_object_get(r->json, "results")), 1, "%s", r->body);
    return h_str(result(r, 0), "diagnosis");
}

static h_resp place(const h_daemon *d, const char *token, const char *coid, int qty)
{
    h_resp r = h_order(d, token, coid, "test.card", qty);
    cr_assert_eq(r.status, 201, "%s", r.body);
    return r;
}

static long long batch_id(const h_resp *r)
{
    return h_int(json_object_get(r->json, "batch"), "id");
}

Test(lookup, issued_code_is_explained_to_its_owner_only)
{
    h_daemon *d = &D;
    start(d);
    h_resp imp = h_import(d, "test.card", "code\nLK-1\nLK-2\n", 201);
    long long batch = batch_id(&imp);
    h_resp_free(&imp);
    h_resp o = place(d, "mall-token", "LK-O1", 1);
    json_t *order = json_object_get(o.json, "order");

    h_resp r = lookup_code(d, "mall-token", "LK-1");
    json_t *res = result(&r, 0);
    cr_assert_str_eq(diagnosis(&r), "issued");
    cr_assert_str_eq(h_str(res, "state"), "issued");
    cr_assert_str_eq(h_str(res, "sku"), "test.card");
    cr_assert_str_eq(h_str(res, "product_name"), "Test card");
    cr_assert_eq(h_int(res, "batch_id"), batch);
    cr_assert_eq(h_int(res, "order_id"), h_int(order, "id"));
    cr_assert_str_eq(h_str(res, "client_order_id"), "LK-O1");
    cr_assert_str_eq(h_str(res, "issued_at"), h_str(order, "created_at"));
    cr_assert_str_eq(h_str(res, "redemption_guide"), "Open the app and enter the code.");
    cr_assert_gt(strlen(h_str(res, "advice")), 10);
    cr_assert_null(json_object_get(res, "expires_at"), "no expiry was imported");
    cr_assert_null(json_object_get(res, "voided_at"));
    cr_assert_null(json_object_get(res, "supplier"), "the supplier is ops' business");
    h_resp_free(&r);

    /* another client, a support-only client, a code in stock and a code that
     * never existed all get the very same answer: nothing to probe */
    h_resp never = lookup_code(d, "other-token", "NEVER-EXISTED-1");
    cr_assert_str_eq(diagnosis(&never), "not_found");
    cr_assert_gt(strlen(h_str(result(&never, 0), "advice")), 10);
    const char *who[][2] = {
        {"other-token", "LK-1"},
        {"support-token", "LK-1"},
        {"mall-token", "LK-2"}, /* available, issued to nobody */
        {"mall-token", "NEVER-EXISTED-2"},
    };
    for (size_t i = 0; i < sizeof who / sizeof who[0]; i++) {
        r = lookup_code(d, who[i][0], who[i][1]);
        cr_assert(json_equal(r.json, never.json), "%s looking up %s: %s, expected %s", who[i][0],
                  who[i][1], r.body, never.body);
        cr_assert_null(strstr(r.body, "LK-O1"));
        h_resp_free(&r);
    }
    h_resp_free(&never);

    /* ops sees the state of any code, never the code */
    r = lookup_code(d, "ops-token", "LK-1");
    res = result(&r, 0);
    cr_assert_str_eq(diagnosis(&r), "issued");
    cr_assert_str_eq(h_str(res, "supplier"), "acme");
    cr_assert_eq(h_int(res, "order_id"), h_int(order, "id"));
    cr_assert_null(json_object_get(res, "code"), "%s", r.body);
    cr_assert_null(strstr(r.body, "LK-1"), "%s", r.body);
    h_resp_free(&r);
    r = lookup_code(d, "ops-token", "LK-2");
    res = result(&r, 0);
    cr_assert_str_eq(diagnosis(&r), "available");
    cr_assert_str_eq(h_str(res, "state"), "available");
    cr_assert_null(json_object_get(res, "code"));
    cr_assert_null(json_object_get(res, "order_id"));
    cr_assert_null(strstr(r.body, "LK-2"), "%s", r.body);
    h_resp_free(&r);

    h_resp_free(&o);
    finish(d);
}

/* The response headers without those that differ between any two answers (the
 * date, the request id). Caller frees. */
static char *stable_headers(const h_resp *r)
{
    char *out = calloc(1, strlen(r->headers) + 1);
    cr_assert_not_null(out);
    for (const char *l = r->headers; *l;) {
        const char *e = strchr(l, '\n');
        size_t n = e ? (size_t)(e - l + 1) : strlen(l);
        if (strncasecmp(l, "Date:", 5) != 0 && strncasecmp(l, "X-Request-Id:", 13) != 0)
            strncat(out, l, n);
        l += n;
    }
    return out;
}

/* Issue 10, defect 3: a code that never existed, one in stock and one issued to
 * another client answer with the same bytes (the timing is bench/lookup_timing.sh's).
 * The asking client owns most orders, so the decoy order a miss reads is mostly
 * its own: that must never make a miss look like its code. */
Test(lookup, absent_in_stock_and_others_codes_answer_the_same_bytes)
{
    h_daemon *d = &D;
    start(d);
    h_resp imp = h_import(d, "test.card", "code\nSB-1\nSB-2\nSB-3\nSB-4\nSB-5\nSB-6\nSB-7\n", 201);
    h_resp_free(&imp);
    h_resp o = place(d, "other-token", "SB-OTHER", 1); /* SB-1 */
    h_resp_free(&o);
    for (int i = 0; i < 5; i++) { /* SB-2 .. SB-6 to the mall */
        char coid[16];
        snprintf(coid, sizeof coid, "SB-M%d", i);
        o = place(d, "mall-token", coid, 1);
        h_resp_free(&o);
    }
    h_resp ref = lookup_code(d, "mall-token", "SB-NEVER-0");
    cr_assert_str_eq(diagnosis(&ref), "not_found");
    char *ref_headers = stable_headers(&ref);
    const char *probes[] = {"SB-1",       "SB-7",       "sb-7",       "SB-1 ",      "SB-NEVER-1",
                            "SB-NEVER-2", "SB-NEVER-3", "SB-NEVER-4", "SB-NEVER-5", "SB-NEVER-6",
                            "SB-NEVER-7", "SB-NEVER-8", "SB-NEVER-9", "X",          "----"};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        h_resp r = lookup_code(d, "mall-token", probes[i]);
        cr_assert_eq(r.len, ref.len, "%s: %s, expected %s", probes[i], r.body, ref.body);
        cr_assert(memcmp(r.body, ref.body, r.len) == 0, "%s: %s, expected %s", probes[i], r.body,
                  ref.body);
        char *hd = stable_headers(&r);
        cr_assert_str_eq(hd, ref_headers, "%s: the headers differ", probes[i]);
        free(hd);
        h_resp_free(&r);
    }
    /* and the mall's own code is still its own */
    h_resp mine = lookup_code(d, "mall-token", "SB-2");
    cr_assert_str_eq(diagnosis(&mine), "issued", "%s", mine.body);
    h_resp_free(&mine);
    free(ref_headers);
    h_resp_free(&ref);
    finish(d);
}

Test(lookup, by_order_lists_every_code_with_the_code_for_the_owner)
{
    h_daemon *d = &D;
    start(d);
    h_resp imp = h_import(d, "test.card", "code\nBO-1\nBO-2\nBO-3\n", 201);
    h_resp_free(&imp);
    h_resp o = place(d, "mall-token", "BO-O1", 2);
    long long id = h_int(json_object_get(o.json, "order"), "id");
    char by_id[64];
    snprintf(by_id, sizeof by_id, "{\"order_id\":%lld}", id);

    const char *bodies[] = {by_id, "{\"client_order_id\":\"BO-O1\"}"};
    for (size_t b = 0; b < 2; b++) {
        h_resp r = h_post_json(d, "/v1/codes/lookup", "mall-token", bodies[b]);
        cr_assert_eq(r.status, 200, "%s", r.body);
        cr_assert_eq(json_array_size(json_object_get(r.json, "results")), 2, "%s", r.body);
        for (size_t i = 0; i < 2; i++) {
            json_t *res = result(&r, i);
            char want[16];
            snprintf(want, sizeof want, "BO-%zu", i + 1);
            cr_assert_str_eq(h_str(res, "code"), want, "%s", r.body);
            cr_assert_str_eq(h_str(res, "diagnosis"), "issued");
            cr_assert_eq(h_int(res, "order_id"), id);
            cr_assert_str_eq(h_str(res, "client_order_id"), "BO-O1");
            cr_assert_str_eq(h_str(res, "product_name"), "Test card");
        }
        h_resp_free(&r);
    }

    /* ops: every code's state, no code */
    h_resp r = h_post_json(d, "/v1/codes/lookup", "ops-token", by_id);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(json_array_size(json_object_get(r.json, "results")), 2, "%s", r.body);
    for (size_t i = 0; i < 2; i++) {
        cr_assert_null(json_object_get(result(&r, i), "code"), "%s", r.body);
        cr_assert_str_eq(h_str(result(&r, i), "diagnosis"), "issued");
    }
    cr_assert_null(strstr(r.body, "BO-1"), "%s", r.body);
    cr_assert_null(strstr(r.body, "BO-2"), "%s", r.body);
    h_resp_free(&r);

    /* anyone else: not_found, as for an order that does not exist */
    h_resp never = h_post_json(d, "/v1/codes/lookup", "other-token", "{\"order_id\":424242}");
    cr_assert_eq(never.status, 200, "%s", never.body);
    cr_assert_str_eq(diagnosis(&never), "not_found");
    const char *who[][2] = {
        {"other-token", by_id},
        {"support-token", by_id},
        {"other-token", "{\"client_order_id\":\"BO-O1\"}"},
        {"support-token", "{\"client_order_id\":\"BO-O1\"}"},
    };
    for (size_t i = 0; i < sizeof who / sizeof who[0]; i++) {
        r = h_post_json(d, "/v1/codes/lookup", who[i][0], who[i][1]);
        cr_assert_eq(r.status, 200, "%s", r.body);
        cr_assert(json_equal(r.json, never.json), "%s %s: %s", who[i][0], who[i][1], r.body);
        h_resp_free(&r);
    }
    h_resp_free(&never);
    h_resp_free(&o);
    finish(d);
}

/* An order of more codes than a lookup answers at once (100): the first page
 * says where the rest starts (`next_after`), the next one ends with null, and
 * every code comes exactly once, in the order's order; a page past the end is
 * empty, and nobody else learns anything from the paging fields. */
Test(lookup, by_order_pages_through_a_large_order)
{
    h_daemon *d = &D;
    start(d);
    enum { N = 130 };
    char *csv = h_codes_csv("PG", N);
    h_resp imp = h_import(d, "test.card", csv, 201);
    h_resp_free(&imp);
    free(csv);
    h_resp o = place(d, "mall-token", "PG-O1", N);
    long long id = h_int(json_object_get(o.json, "order"), "id");
    h_resp_free(&o);

    h_resp r = h_post_json(d, "/v1/codes/lookup", "mall-token", "{\"client_order_id\":\"PG-O1\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(json_array_size(json_object_get(r.json, "results")), 100, "the cap: %s", r.body);
    cr_assert_eq(json_integer_value(json_object_get(r.json, "next_after")), 100,
                 "the cap is stated: %.300s", r.body);
    for (size_t i = 0; i < 100; i++) {
        char want[16];
        snprintf(want, sizeof want, "PG-%07zu", i);
        cr_assert_str_eq(h_str(result(&r, i), "code"), want);
    }
    h_resp_free(&r);
    char body[96];
    snprintf(body, sizeof body, "{\"order_id\":%lld,\"after\":100}", id);
    r = h_post_json(d, "/v1/codes/lookup", "mall-token", body);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(json_array_size(json_object_get(r.json, "results")), N - 100, "%s", r.body);
    cr_assert(json_is_null(json_object_get(r.json, "next_after")), "the end: %s", r.body);
    for (size_t i = 0; i < N - 100; i++) {
        char want[16];
        snprintf(want, sizeof want, "PG-%07zu", i + 100);
        cr_assert_str_eq(h_str(result(&r, i), "code"), want);
        cr_assert_str_eq(h_str(result(&r, i), "diagnosis"), "issued");
    }
    h_resp_free(&r);
    /* a smaller page, for ops too (no code); past the end: nothing more */
    snprintf(body, sizeof body, "{\"order_id\":%lld,\"after\":125,\"limit\":3}", id);
    r = h_post_json(d, "/v1/codes/lookup", "ops-token", body);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(json_array_size(json_object_get(r.json, "results")), 3, "%s", r.body);
    cr_assert_eq(json_integer_value(json_object_get(r.json, "next_after")), 128, "%s", r.body);
    cr_assert_null(json_object_get(result(&r, 0), "code"), "%s", r.body);
    h_resp_free(&r);
    snprintf(body, sizeof body, "{\"order_id\":%lld,\"after\":%d}", id, N);
    r = h_post_json(d, "/v1/codes/lookup", "mall-token", body);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(json_array_size(json_object_get(r.json, "results")), 0, "%s", r.body);
    cr_assert(json_is_null(json_object_get(r.json, "next_after")), "%s", r.body);
    h_resp_free(&r);
    /* another client: the answer of an order that does not exist, paging or not */
    h_resp never = h_post_json(d, "/v1/codes/lookup", "other-token", "{\"order_id\":424242}");
    snprintf(body, sizeof body, "{\"order_id\":%lld,\"after\":100,\"limit\":5}", id);
    r = h_post_json(d, "/v1/codes/lookup", "other-token", body);
    cr_assert(json_equal(r.json, never.json), "%s / %s", r.body, never.body);
    h_resp_free(&r);
    h_resp_free(&never);
    finish(d);
}

struct diag_wait {
    const h_daemon *d;
    const char *code;
    const char *want;
};

static int diagnosis_is(void *arg)
{
    struct diag_wait *w = arg;
    char body[256];
    snprintf(body, sizeof body, "{\"code\":\"%s\"}", w->code);
    h_resp r = h_post_json(w->d, "/v1/codes/lookup", "mall-token", body);
    const char *got = json_string_value(
        json_object_get(json_array_get(json_object_get(r.json, "results"), 0), "diagnosis"));
    int ok = r.status == 200 && got && strcmp(got, w->want) == 0;
    h_resp_free(&r);
    return ok;
}

Test(lookup, a_code_past_its_expiry_is_diagnosed_expired)
{
    h_daemon *d = &D;
    start(d);
    /* RFC 3339 UTC, a few seconds ahead: valid at import and order time */
    char exp[32], csv[160];
    time_t t = time(NULL) + 4;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(exp, sizeof exp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(csv, sizeof csv, "code,card_no,expires_at\nEXP-1,CARD-1,%s\nEXP-2,CARD-2,%s\n", exp,
             exp);
    h_resp imp = h_import(d, "test.card", csv, 201);
    h_resp_free(&imp);
    h_resp o = place(d, "mall-token", "EXP-O1", 1);
    json_t *code = json_array_get(json_object_get(json_object_get(o.json, "order"), "codes"), 0);
    cr_assert_str_eq(h_str(code, "code"), "EXP-1");
    cr_assert_str_eq(h_str(code, "card_no"), "CARD-1");
    cr_assert(strncmp(h_str(code, "expires_at"), exp, 19) == 0, "expires_at %s, imported %s",
              h_str(code, "expires_at"), exp);

    h_resp r = lookup_code(d, "mall-token", "EXP-1");
    cr_assert_str_eq(diagnosis(&r), "issued", "not expired yet: %s", r.body);
    cr_assert(strncmp(h_str(result(&r, 0), "expires_at"), exp, 19) == 0);
    h_resp_free(&r);

    struct diag_wait w = {d, "EXP-1", "expired"};
    cr_assert_eq(h_wait_for(diagnosis_is, &w, 20000), 0, "EXP-1 never became expired");
    r = lookup_code(d, "mall-token", "EXP-1");
    json_t *res = result(&r, 0);
    cr_assert(strstr(h_str(res, "advice"), "expired"), "%s", r.body);
    cr_assert_str_eq(h_str(res, "client_order_id"), "EXP-O1");
    h_resp_free(&r);

    /* the expired code left in stock is never issued */
    json_t *before = h_stats(d);
    r = h_order(d, "mall-token", "EXP-O2", "test.card", 1);
    cr_assert_eq(r.status, 409, "an expired code must not be issued: %s", r.body);
    cr_assert_str_eq(h_str(r.json, "error"), "out_of_stock");
    h_resp_free(&r);
    json_t *after = h_stats(d);
    cr_assert(json_equal(before, after), "a refused order changes nothing");
    json_decref(before);
    json_decref(after);
    h_resp_free(&o);
    finish(d);
}

Test(lookup, voided_batch_finds_affected_orders_and_leaves_stock)
{
    h_daemon *d = &D;
    start(d);
    h_resp imp = h_import(d, "test.card", "code\nVD-1\nVD-2\nVD-3\n", 201);
    long long batch = batch_id(&imp);
    h_resp_free(&imp);
    imp = h_import(d, "test.card", "code\nKEEP-1\n", 201); /* another batch, untouched */
    h_resp_free(&imp);
    h_resp o = place(d, "mall-token", "VD-O1", 1);
    long long order_id = h_int(json_object_get(o.json, "order"), "id");
    /* looked up once before the void: the readers' batch memo (store_int.h) holds the
     * batch as it was, and the lookup after the void must still see it voided */
    h_resp pre = lookup_code(d, "mall-token", "VD-1");
    cr_assert_str_eq(diagnosis(&pre), "issued", "%s", pre.body);
    h_resp_free(&pre);

    char path[64];
    snprintf(path, sizeof path, "/v1/batches/%lld/void", batch);
    json_t *before = h_stats(d);
    h_resp r = h_post_json(d, path, "mall-token", "{\"reason\":\"supplier voided\"}");
    cr_assert_eq(r.status, 403, "voiding needs ops: %s", r.body);
    h_resp_free(&r);
    json_t *after = h_stats(d);
    cr_assert(json_equal(before, after));
    json_decref(before);
    json_decref(after);

    r = h_post_json(d, path, "ops-token", "{\"reason\":\"supplier voided\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *b = json_object_get(r.json, "batch");
    cr_assert_eq(h_int(b, "id"), batch);
    cr_assert_str_eq(h_str(b, "state"), "voided");
    cr_assert_eq(h_int(r.json, "voided_codes"), 3);
    json_t *aff = json_object_get(r.json, "affected_orders");
    cr_assert_eq(json_array_size(aff), 1, "%s", r.body);
    cr_assert_eq(h_int(json_array_get(aff, 0), "id"), order_id);
    cr_assert_str_eq(h_str(json_array_get(aff, 0), "client"), "mall");
    cr_assert_str_eq(h_str(json_array_get(aff, 0), "client_order_id"), "VD-O1");
    cr_assert_null(strstr(r.body, "VD-1"), "no code in the answer: %s", r.body);
    h_resp_free(&r);

    r = lookup_code(d, "mall-token", "VD-1");
    json_t *res = result(&r, 0);
    cr_assert_str_eq(diagnosis(&r), "voided_upstream", "%s", r.body);
    cr_assert_str_eq(h_str(res, "state"), "voided");
    cr_assert_gt(strlen(h_str(res, "voided_at")), 10);
    cr_assert_eq(h_int(res, "order_id"), order_id);
    cr_assert(strstr(h_str(res, "advice"), "replacement"), "%s", r.body);
    h_resp_free(&r);

    /* the batch's two available codes left stock; the other batch's stayed */
    json_t *st = h_stats(d);
    json_t *s = h_stats_sku(st, "test.card");
    cr_assert(s, "no stats for test.card");
    cr_assert_eq(h_int(s, "available"), 1, "%s", json_dumps(st, 0));
    cr_assert_eq(h_int(s, "voided"), 3);
    cr_assert_eq(h_int(s, "issued"), 0);
    json_decref(st);
    snprintf(path, sizeof path, "/v1/batches/%lld", batch);
    r = h_get(d, path, "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *counts = json_object_get(json_object_get(r.json, "batch"), "codes");
    cr_assert_eq(h_int(counts, "voided"), 3);
    cr_assert_eq(h_int(counts, "available"), 0);
    h_resp_free(&r);
    r = h_order(d, "mall-token", "VD-O2", "test.card", 1);
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert_str_eq(
        h_str(json_array_get(json_object_get(json_object_get(r.json, "order"), "codes"), 0),
              "code"),
        "KEEP-1", "a voided code is never issued");
    h_resp_free(&r);

    /* voiding twice is refused and changes nothing */
    snprintf(path, sizeof path, "/v1/batches/%lld/void", batch);
    before = h_stats(d);
    r = h_post_json(d, path, "ops-token", "{\"reason\":\"again\"}");
    cr_assert_eq(r.status, 409, "%s", r.body);
    cr_assert(strstr(h_str(r.json, "message"), "already voided"), "%s", r.body);
    h_resp_free(&r);
    r = h_post_json(d, "/v1/batches/999/void", "ops-token", "{\"reason\":\"x\"}");
    cr_assert_eq(r.status, 404, "%s", r.body);
    cr_assert_str_eq(h_str(r.json, "error"), "not_found");
    h_resp_free(&r);
    after = h_stats(d);
    cr_assert(json_equal(before, after));
    json_decref(before);
    json_decref(after);

    /* the feed tells the mall which order to make good, without the code */
    r = h_get(d, "/v1/events?limit=1000", "ops-token");
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "\"type\":\"order.codes_voided\""), "%s", r.body);
    cr_assert(strstr(r.body, "\"type\":\"batch.voided\""), "%s", r.body);
    cr_assert_null(strstr(r.body, "VD-1"), "%s", r.body);
    cr_assert_null(strstr(r.body, "VD-2"), "%s", r.body);
    cr_assert_null(strstr(r.body, "VD-3"), "%s", r.body);
    h_resp_free(&r);
    h_resp_free(&o);
    finish(d);
}

Test(lookup, malformed_lookups_are_refused)
{
    h_daemon *d = &D;
    start(d);
    const char *bad[] = {
        "{}",
        "{\"code\":\"A\",\"order_id\":1}",
        "{\"code\":5}",
        "{\"code\":\"\"}",
        "{\"order_id\":\"7\"}",
        "{\"order_id\":0}",
        "{\"client_order_id\":\"has space\"}",
        "{\"sku\":\"test.card\"}",
        "{\"code\":\"A\",\"after\":0}",
        "{\"code\":\"A\",\"limit\":5}",
        "{\"after\":0}",
        "{\"order_id\":1,\"after\":-1}",
        "{\"order_id\":1,\"after\":\"8\"}",
        "{\"client_order_id\":\"A-1\",\"limit\":0}",
        "{\"client_order_id\":\"A-1\",\"limit\":101}",
        "{\"order_id\":1,\"limit\":2.5}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        h_resp r = h_post_json(d, "/v1/codes/lookup", "mall-token", bad[i]);
        cr_assert_eq(r.status, 400, "%s: %ld %s", bad[i], r.status, r.body);
        cr_assert_str_eq(h_str(r.json, "error"), "invalid_request");
        h_resp_free(&r);
    }
    h_resp r = h_post_json(d, "/v1/codes/lookup", NULL, "{\"code\":\"X\"}");
    cr_assert_eq(r.status, 401, "%s", r.body);
    h_resp_free(&r);
    finish(d);
}
