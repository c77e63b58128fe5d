/*
 * test_supply_edges.c — supplier orders at their edges, through perkhubd and the
 * built-in sandbox supplier: local stock first, codes a supplier delivers that
 * we already hold (rule 1), the wait limit, a client waiting through a SIGTERM,
 * and the ops views that ask a supplier directly (catalog, balance).
 */
#include <criterion/criterion.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

static h_daemon d;

static const char *body =
    "suppliers:\n"
    "  - id: sbx\n    plugin: sandbox\n    priority: 10\n"
    "    config: {seed: edge-seed, settle_ms: 1500, slow_ms: 1500}\n"
    "    query_max_delay_ms: 300\n"
    "  - id: acme\n    plugin: manual\n"
    "products:\n"
    "  - sku: card.sbx\n    name: Card\n    brand: b\n    category: c\n    delivery: card_code\n"
    "    face_value: \"30.00\"\n"
    "    offers:\n      - {supplier: sbx, supplier_sku: sandbox.card, cost: \"28.00\"}\n"
    "  - sku: card.local\n    name: Local only\n    brand: b\n    category: c\n"
    "    delivery: card_code\n    face_value: \"30.00\"\n"
    "  - sku: topup\n    name: Top-up\n    brand: b\n    category: t\n    delivery: recharge\n"
    "    face_value: \"50.00\"\n"
    "    offers:\n      - {supplier: sbx, supplier_sku: sandbox.recharge, cost: \"49.00\"}\n";

static void teardown(void)
{
    h_leftover(&d);
}

TestSuite(supply_edges, .fini = teardown);

static h_resp order_json(const char *json)
{
    return h_post_json(&d, "/v1/orders", "mall-token", json);
}

/* What the sandbox derives for attempt `ref`, code i (docs/sandbox.md):
 * "SBX-" + the first 8 bytes of HMAC-SHA256(seed, ref ":" i) in upper hex. */
static void sandbox_code(const char *seed, const char *ref, int i, char out[21])
{
    char msg[128];
    int n = snprintf(msg, sizeof msg, "%s:%d", ref, i);
    unsigned char mac[32];
    unsigned int len = 0;
    HMAC(EVP_sha256(), seed, (int)strlen(seed), (const unsigned char *)msg, (size_t)n, mac, &len);
    strcpy(out, "SBX-");
    for (int k = 0; k < 8; k++)
        sprintf(out + 4 + 2 * k, "%02X", mac[k]);
}

static long long place(const char *coid, const char *sku, int wait_s, h_resp *out)
{
    char json[256];
    snprintf(json, sizeof json, "{\"client_order_id\":\"%s\",\"sku\":\"%s\",\"wait\":%d}", coid,
             sku, wait_s);
    *out = order_json(json);
    return h_int(h_order_of(out), "id");
}

Test(supply_edges, stock_first_then_the_supplier)
{
    h_setup_custom(&d, body, NULL);
    cr_assert_eq(h_start(&d), 0);
    h_resp r = h_import(&d, "card.sbx", "code\nLOCAL-ONE-1\n", 201);
    h_resp_free(&r);
    place("S-1", "card.sbx", 0, &r);
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert_str_eq(h_str(h_order_of(&r), "source"), "stock", "%s", r.body);
    h_resp_free(&r);
    place("S-2", "card.sbx", 5, &r);
    cr_assert_eq(r.status, 201, "stock is gone: the supplier delivers within the wait: %s", r.body);
    json_t *o = h_order_of(&r);
    cr_assert_str_eq(h_str(o, "source"), "supplier");
    cr_assert_str_eq(h_str(o, "state"), "succeeded");
    cr_assert_eq(json_array_size(json_object_get(o, "codes")), 1, "%s", r.body);
    /* a code bought from a supplier is sealed at rest exactly like an imported one */
    char code[64], path[400];
    snprintf(code, sizeof code, "%s",
             h_str(json_array_get(json_object_get(o, "codes"), 0), "code"));
    h_resp_free(&r);
    snprintf(path, sizeof path, "%s/data.mdb", d.data);
    cr_assert_eq(h_file_count(path, code), 0, "supplier code %s in plain text in data.mdb", code);
    cr_assert_eq(h_file_count(d.log, code), 0, "supplier code in the log");
    /* a product without offers still answers out_of_stock, naming the sku */
    r = order_json("{\"client_order_id\":\"S-3\",\"sku\":\"card.local\"}");
    cr_assert_eq(r.status, 409, "%s", r.body);
    cr_assert_str_eq(h_str(r.json, "error"), "out_of_stock");
    cr_assert(strstr(h_str(r.json, "message"), "card.local"), "%s", r.body);
    h_resp_free(&r);
    h_stop_clean(&d);
    h_cleanup(&d);
}

Test(supply_edges, codes_we_already_hold_are_never_issued_twice)
{
    h_setup_custom(&d, body, NULL);
    cr_assert_eq(h_start(&d), 0);
    /* order 1 teaches us the store's uid: its ref is "<uid>-1-1" */
    h_resp r;
    long long id = place("K-1", "card.sbx", 5, &r);
    h_resp_free(&r);
    char path[64];
    snprintf(path, sizeof path, "/v1/orders/%lld", id);
    r = h_get(&d, path, "ops-token");
    const char *ref = h_str(json_array_get(json_object_get(h_order_of(&r), "attempts"), 0), "ref");
    char uid[16] = {0};
    cr_assert(strlen(ref) > 9 && ref[8] == '-', "ref %s", ref);
    memcpy(uid, ref, 8);
    h_resp_free(&r);

    /* the code the sandbox will deliver for order 2 is already in our stock (of
     * another product, so stock-first does not serve it) */
    char next_ref[64], code[21], csv[64];
    snprintf(next_ref, sizeof next_ref, "%s-%lld-1", uid, id + 1);
    sandbox_code("edge-seed", next_ref, 0, code);
    snprintf(csv, sizeof csv, "code\n%s\n", code);
    r = h_import(&d, "card.local", csv, 201);
    h_resp_free(&r);

    long long id2 = place("K-2", "card.sbx", 5, &r);
    cr_assert_eq(id2, id + 1);
    json_t *o = h_order_of(&r);
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert_str_eq(h_str(o, "state"), "failed", "%s", r.body);
    cr_assert_str_eq(h_str(o, "reason"), "supplier_delivered_known_codes", "%s", r.body);
    cr_assert_null(json_object_get(o, "codes"), "no code shown: %s", r.body);
    h_resp_free(&r);
    /* the held code is still in stock, issued to nobody */
    char lookup[96];
    snprintf(lookup, sizeof lookup, "{\"code\":\"%s\"}", code);
    r = h_post_json(&d, "/v1/codes/lookup", "ops-token", lookup);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(strstr(r.body, "\"available\""), "%s", r.body);
    h_resp_free(&r);
    char *out = NULL;
    cr_assert_eq(h_check_store(&d, &out), 0, "%s", out);
    free(out);
    h_stop_clean(&d);
    h_cleanup(&d);
}

/* Succeeded, and at every look one attempt: never resent. */
static int succeeded_once(json_t *o, void *arg)
{
    (void)arg;
    cr_assert_eq(json_array_size(json_object_get(o, "attempts")), 1, "one attempt, never resent");
    return !strcmp(h_str(o, "state"), "succeeded");
}

/* POST of W-2 with a 20 s wait, on its own thread and connection. */
typedef struct waiting_post {
    h_conn *c;
    h_resp r;
    int rc;
} waiting_post;

static void *post_waiting(void *arg)
{
    waiting_post *wp = arg;
    const char *w = "{\"client_order_id\":\"W-2\",\"sku\":\"topup\","
                    "\"account\":\"13800000006\",\"wait\":20}";
    wp->rc = h_conn_http(wp->c, "POST", "/v1/orders", "mall-token", "application/json", w,
                         strlen(w), &wp->r);
    return NULL;
}

/* The order with client order id coid exists (never asserts: h_wait_for's). */
static int order_stored(void *coid)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/orders?client_order_id=%s", (const char *)coid);
    h_resp r;
    int found = h_http(&d, "GET", path, "mall-token", NULL, NULL, 0, &r) == 0 && r.status == 200;
    h_resp_free(&r);
    return found;
}

Test(supply_edges, wait_is_bounded_and_survives_a_sigterm)
{
    h_setup_custom(&d, body, "limits:\n  max_order_wait_s: 20\n");
    cr_assert_eq(h_start(&d), 0);
    h_resp r = order_json("{\"client_order_id\":\"W-1\",\"sku\":\"topup\","
                          "\"account\":\"13800000001\",\"wait\":21}");
    cr_assert_eq(r.status, 422, "%s", r.body);
    cr_assert(strstr(h_str(r.json, "message"), "wait"), "%s", r.body);
    h_resp_free(&r);

    /* 13800000006 stays processing for settle_ms: a client waiting 20 s gets
     * its answer at once when the daemon is told to stop. The request runs on
     * its own thread; the stop comes once the order is stored (the handler
     * then registers its wait, or finds the daemon stopping and answers). */
    waiting_post wp = {.c = h_conn_new(&d)};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, post_waiting, &wp), 0);
    cr_assert_eq(h_wait_for(order_stored, "W-2", 15000), 0, "order W-2 was never stored");
    int64_t t0 = h_now_ms();
    kill(d.pid, SIGTERM);
    pthread_join(th, NULL);
    r = wp.r;
    cr_assert_eq(wp.rc, 0, "no answer to the waiting request");
    cr_assert_eq(r.status, 202, "%s", r.body);
    cr_assert_str_eq(h_str(h_order_of(&r), "state"), "processing", "%s", r.body);
    cr_assert_lt(h_now_ms() - t0, 10000, "the wait ended with the stop, not its 20 s");
    h_resp_free(&r);
    h_conn_free(wp.c);
    h_stop_clean(&d);

    /* after the restart the attempt is picked up and settles */
    cr_assert_eq(h_start(&d), 0);
    r = h_get(&d, "/v1/orders?client_order_id=W-2", "mall-token");
    long long id = h_int(h_order_of(&r), "id");
    h_resp_free(&r);
    json_decref(h_order_poll(&d, id, "ops-token", succeeded_once, NULL, 20000, "succeeding"));
    h_stop_clean(&d);
    h_cleanup(&d);
}

Test(supply_edges, ops_ask_a_supplier_directly)
{
    h_setup_custom(&d, body, NULL);
    cr_assert_eq(h_start(&d), 0);
    h_resp r = h_get(&d, "/v1/suppliers/sbx/catalog", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *items = json_object_get(r.json, "items"), *it;
    size_t i;
    int found = 0;
    json_array_foreach(items, i, it)
    {
        if (strcmp(h_str(it, "supplier_sku"), "sandbox.recharge"))
            continue;
        found = 1;
        json_t *offer = json_array_get(json_object_get(it, "offers"), 0);
        cr_assert_str_eq(h_str(offer, "sku"), "topup", "%s", r.body);
        cr_assert(json_is_boolean(json_object_get(offer, "price_above_cost")), "%s", r.body);
    }
    cr_assert(found, "%s", r.body);
    h_resp_free(&r);
    r = h_get(&d, "/v1/suppliers/sbx/balance", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(json_is_string(json_object_get(r.json, "balance")), "%s", r.body);
    h_resp_free(&r);
    r = h_get(&d, "/v1/suppliers/acme/balance", "ops-token");
    cr_assert_eq(r.status, 422, "the manual plugin has no balance: %s", r.body);
    h_resp_free(&r);
    r = h_get(&d, "/v1/suppliers/nope/catalog", "ops-token");
    cr_assert_eq(r.status, 404, "%s", r.body);
    h_resp_free(&r);
    r = h_get(&d, "/v1/suppliers/sbx/catalog", "mall-token");
    cr_assert_eq(r.status, 403, "ops only: %s", r.body);
    h_resp_free(&r);
    h_stop_clean(&d);
    h_cleanup(&d);
}
