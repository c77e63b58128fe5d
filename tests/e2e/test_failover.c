/*
 * test_failover.c — routing between two suppliers by docs/design.md rule 2: fail over
 * only after a definite failure, never after an ambiguous one.
 *
 * Supplier A ("gwa", the gateway protocol, priority 20) and supplier B ("rwb",
 * the rewards protocol, priority 10) offer the same recharge product (A 20001,
 * B U20001) and the same card product (A 10001, or the out-of-stock 10002;
 * B U10001), both at one supsim — or A at a closed port.
 *
 *   (a) A refuses definitively (out of stock): the order succeeds at B; the ops
 *       view shows attempts [A failed with a reason, B succeeded]; A's truth has
 *       no order, B's has it with the codes the owner sees.
 *   (b) A times out after taking the order: the order waits in unknown and B is
 *       never called; once the faults are cleared it succeeds at A.
 *   (c) A's port refuses the connection: nothing was sent, the order fails over
 *       to B.
 *   (d) breaker_failures 3: after three not-sent failures A's breaker is open and
 *       new orders go straight to B (one attempt).
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define ACCOUNT "13800000001" /* supsim completes it succeeded */
#define WAIT_MS 20000

static h_daemon D;
static h_sim S;
static char BODY[4096]; /* the config body: h_setup_custom borrows it */

static void teardown(void)
{
    h_leftover(&D);
    if (S.pid > 0)
        h_sim_stop(&S);
}

TestSuite(failover, .fini = teardown);

/* ---- helpers ------------------------------------------------------------------ */

/* A loopback port nothing listens on: bound, read, closed. */
static unsigned closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    cr_assert(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    cr_assert(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
    close(fd);
    return ntohs(sa.sin_port);
}

#define TIMEOUTS "    timeout_ms: 1500\n    connect_timeout_ms: 1000\n    query_max_delay_ms: 500\n"

/* Starts supsim and perkhubd: A at the simulator, or at a closed port when
 * a_dead; A's card offer is a_card_sku. */
static void start(int a_dead, const char *a_card_sku, int a_breaker_failures)
{
    cr_assert(h_sim_start(&S, NULL) == 0, "supsim did not start");
    char a_fields[256], a[1024], b[1024];
    snprintf(a_fields, sizeof a_fields,
             "    priority: 20\n" TIMEOUTS
             "    breaker_failures: %d\n    breaker_open_ms: 600000\n",
             a_breaker_failures);
    h_sim at = S; /* A's address: the simulator's, or a port nothing listens on */
    if (a_dead)
        at.port = (uint16_t)closed_port();
    h_sim_supplier_yaml(&at, "gwa", "gateway", a_fields, NULL, a, sizeof a);
    h_sim_supplier_yaml(&S, "rwb", "rewards", "    priority: 10\n" TIMEOUTS, NULL, b, sizeof b);
    snprintf(BODY, sizeof BODY,
             "suppliers:\n%s%s"
             "products:\n"
             "  - sku: fo.card\n    name: Failover card\n    brand: sim\n    category: video\n"
             "    delivery: card_code\n    face_value: \"30.00\"\n    offers:\n"
             "      - {supplier: gwa, supplier_sku: \"%s\", cost: \"28.50\"}\n"
             "      - {supplier: rwb, supplier_sku: \"U10001\", cost: \"28.50\"}\n"
             "  - sku: fo.topup\n    name: Failover top-up\n    brand: sim\n    category: telecom\n"
             "    delivery: recharge\n    face_value: \"50.00\"\n    offers:\n"
             "      - {supplier: gwa, supplier_sku: \"20001\", cost: \"49.00\"}\n"
             "      - {supplier: rwb, supplier_sku: \"U20001\", cost: \"49.00\"}\n",
             a, b, a_card_sku);
    h_setup_custom(&D, BODY, NULL);
    cr_assert(h_start(&D) == 0, "perkhubd did not start");
}

static void stop(void)
{
    h_ledger_matches_sim(&D, &S);
    h_stop_clean(&D);
    h_cleanup(&D);
    h_sim_stop(&S);
}

static void sim_post(const char *path, const char *json)
{
    h_resp r = h_sim_req(&S, "POST", path, json);
    cr_assert(r.status < 300, "POST %s %s: %ld %s", path, json, r.status, r.body);
    h_resp_free(&r);
}

static json_t *truth(void)
{
    return h_sim_truth(&S);
}

/* Entries of truth list `list` made by protocol proto (NULL: any) for perkhub
 * order id (-1: any order); the first into *first (may be NULL). */
static size_t truth_count(json_t *t, const char *list, const char *proto, long long id,
                          json_t **first)
{
    size_t n;
    json_t *o = h_sim_truth_find(t, list, proto, id, &n);
    if (first)
        *first = o;
    return n;
}

/* POST /v1/orders; asserts the status and returns the order (caller decrefs). */
static json_t *order_post(const char *coid, const char *sku, int wait, long want_status)
{
    char body[320];
    if (!strcmp(sku, "fo.topup"))
        snprintf(body, sizeof body,
                 "{\"client_order_id\":\"%s\",\"sku\":\"%s\",\"account\":\"%s\",\"wait\":%d}", coid,
                 sku, ACCOUNT, wait);
    else
        snprintf(body, sizeof body,
                 "{\"client_order_id\":\"%s\",\"sku\":\"%s\",\"quantity\":1,\"wait\":%d}", coid,
                 sku, wait);
    h_resp r = h_post_json(&D, "/v1/orders", "mall-token", body);
    cr_assert_eq(r.status, want_status, "POST /v1/orders %s: %ld %s", body, r.status, r.body);
    json_t *o = json_incref(json_object_get(r.json, "order"));
    cr_assert(json_is_object(o), "POST /v1/orders: %s", r.body);
    h_resp_free(&r);
    return o;
}

static json_t *order_get(long long id, const char *token)
{
    return h_order_get(&D, id, token);
}

/* Attempt i of an ops view: supplier and state as given, a reason when failed. */
static void check_attempt(json_t *o, size_t i, const char *supplier, const char *state)
{
    char b[2048];
    json_t *a = json_array_get(json_object_get(o, "attempts"), i);
    cr_assert(a, "no attempt %zu: %s", i + 1, h_dump(o, b, sizeof b));
    cr_assert(!strcmp(h_str(a, "supplier"), supplier) && !strcmp(h_str(a, "state"), state),
              "attempt %zu should be %s %s: %s", i + 1, supplier, state, h_dump(o, b, sizeof b));
    if (!strcmp(state, "failed")) {
        const char *reason = json_string_value(json_object_get(a, "reason"));
        cr_assert(reason && *reason, "a failed attempt without a reason: %s",
                  h_dump(o, b, sizeof b));
        fprintf(stderr, "order %lld attempt %zu at %s failed: %s\n", h_int(o, "id"), i + 1,
                supplier, reason);
    }
}

static size_t nattempts(json_t *o)
{
    return json_array_size(json_object_get(o, "attempts"));
}

/* Polls the ops view of order id until done(o, arg), WAIT_MS at most. */
static json_t *poll_order(long long id, int (*done)(json_t *, void *), void *arg, const char *what)
{
    return h_order_poll(&D, id, "ops-token", done, arg, WAIT_MS, what);
}

static int answered(json_t *o, void *arg)
{
    (void)arg;
    json_t *a = json_array_get(json_object_get(o, "attempts"), 0);
    return a && strcmp(h_str(a, "state"), "sending") != 0;
}

/* *(long *)min queries made, or the order left unknown. */
static int checks_reached(json_t *o, void *min)
{
    json_t *a = json_array_get(json_object_get(o, "attempts"), 0);
    return strcmp(h_str(o, "state"), "unknown") || (a && h_int(a, "checks") >= *(long *)min);
}

static int is_final(json_t *o, void *arg)
{
    (void)arg;
    return !strcmp(h_str(o, "state"), "succeeded") || !strcmp(h_str(o, "state"), "failed");
}

/* Supplier id's entry of GET /v1/suppliers (caller decrefs). */
static json_t *supplier(const char *id)
{
    h_resp r = h_get(&D, "/v1/suppliers", "ops-token");
    cr_assert_eq(r.status, 200, "GET /v1/suppliers: %ld %s", r.status, r.body);
    size_t i;
    json_t *s, *found = NULL;
    json_array_foreach(json_object_get(r.json, "suppliers"), i, s) if (!strcmp(h_str(s, "id"), id))
        found = json_incref(s);
    cr_assert(found, "supplier %s not listed: %s", id, r.body);
    h_resp_free(&r);
    return found;
}

static long long health(json_t *s, const char *key)
{
    json_t *h = json_object_get(s, "health");
    json_t *v = json_object_get(h, key);
    return v ? json_integer_value(v)
             : json_integer_value(json_object_get(json_object_get(h, "exchanges"), key));
}

/* Places an order answered at once succeeded, after A failed and B took it:
 * the ops view shows attempts [A failed, B succeeded]. Returns its id. */
static long long expect_failed_over(const char *coid, const char *sku)
{
    json_t *o = order_post(coid, sku, 10, 201);
    cr_assert_str_eq(h_str(o, "state"), "succeeded");
    long long id = h_int(o, "id");
    json_decref(o);

    o = order_get(id, "ops-token");
    char b[2048];
    cr_assert_eq(nattempts(o), 2, "order %s: %s", coid, h_dump(o, b, sizeof b));
    check_attempt(o, 0, "gwa", "failed");
    check_attempt(o, 1, "rwb", "succeeded");
    json_decref(o);
    return id;
}

/* ---- the tests -------------------------------------------------------------- */

Test(failover, definite_refusal_goes_to_b)
{
    start(0, "10002", 5);
    long long id = expect_failed_over("fo-a", "fo.card");
    json_t *o;

    json_t *t = truth(), *at_b;
    char b[4096];
    cr_assert_eq(truth_count(t, "orders", "gateway", id, NULL), 0, "A has an order: %s",
                 h_dump(t, b, sizeof b));
    cr_assert_eq(truth_count(t, "orders", "rewards", id, &at_b), 1, "B has no order: %s",
                 h_dump(t, b, sizeof b));
    cr_assert_str_eq(h_str(at_b, "state"), "success");
    cr_assert_eq(h_int(at_b, "creates"), 1);
    cr_assert_eq(h_int(json_object_get(t, "counts"), "double_creates"), 0);

    /* the owner's code is the one B issued */
    o = order_get(id, "mall-token");
    json_t *codes = json_object_get(o, "codes");
    cr_assert_eq(json_array_size(codes), 1);
    cr_assert_str_eq(h_str(json_array_get(codes, 0), "code"),
                     json_string_value(json_array_get(json_object_get(at_b, "codes"), 0)),
                     "the owner's code is not the one B issued");
    json_decref(o);
    json_decref(t);
    stop();
}

Test(failover, timeout_waits_and_never_calls_b)
{
    start(0, "10001", 5);
    sim_post("/_sim/faults",
             "{\"protocol\":\"gateway\",\"op\":\"order\",\"fault\":\"timeout_after\","
             "\"count\":1}");
    /* queries fail until cleared: the order must sit in unknown meanwhile */
    sim_post("/_sim/faults", "{\"protocol\":\"gateway\",\"op\":\"query\",\"fault\":\"http_500\","
                             "\"count\":-1}");
    json_t *o = order_post("fo-b", "fo.topup", 0, 202);
    long long id = h_int(o, "id");
    json_decref(o);

    o = poll_order(id, answered, NULL, "the order's timeout");
    char b[4096];
    cr_assert_str_eq(h_str(o, "state"), "unknown", "%s", h_dump(o, b, sizeof b));
    cr_assert(json_string_length(json_object_get(o, "reason")) > 0, "%s", h_dump(o, b, sizeof b));
    cr_assert(json_is_string(json_object_get(o, "next_check_at")), "%s", h_dump(o, b, sizeof b));
    long checks = (long)h_int(json_array_get(json_object_get(o, "attempts"), 0), "checks");
    json_decref(o);
    long target = checks + 3;
    o = poll_order(id, checks_reached, &target, "three more queries");
    cr_assert_str_eq(h_str(o, "state"), "unknown", "%s", h_dump(o, b, sizeof b));
    cr_assert_eq(nattempts(o), 1, "another supplier was tried: %s", h_dump(o, b, sizeof b));
    json_decref(o);

    json_t *t = truth(), *at_a;
    cr_assert_eq(truth_count(t, "orders", "gateway", id, &at_a), 1, "A did not take it: %s",
                 h_dump(t, b, sizeof b));
    cr_assert_eq(h_int(at_a, "creates"), 1);
    cr_assert_eq(truth_count(t, "orders", "rewards", -1, NULL) +
                     truth_count(t, "refs_without_order", "rewards", -1, NULL),
                 0, "B was called: %s", h_dump(t, b, sizeof b));
    json_decref(t);
    json_t *s = supplier("rwb");
    cr_assert_eq(health(s, "sent") + health(s, "not_sent"), 0, "B had exchanges: %s",
                 h_dump(s, b, sizeof b));
    json_decref(s);

    h_resp r = h_sim_req(&S, "DELETE", "/_sim/faults", NULL);
    h_resp_free(&r);
    o = poll_order(id, is_final, NULL, "the final state");
    cr_assert_str_eq(h_str(o, "state"), "succeeded", "%s", h_dump(o, b, sizeof b));
    cr_assert_eq(nattempts(o), 1, "%s", h_dump(o, b, sizeof b));
    check_attempt(o, 0, "gwa", "succeeded");
    json_decref(o);

    t = truth();
    cr_assert_eq(truth_count(t, "orders", "rewards", -1, NULL) +
                     truth_count(t, "refs_without_order", "rewards", -1, NULL),
                 0, "B was called: %s", h_dump(t, b, sizeof b));
    json_t *counts = json_object_get(t, "counts");
    cr_assert_eq(h_int(counts, "recharges_performed"), 1);
    cr_assert_eq(h_int(counts, "double_creates"), 0);
    json_decref(t);
    stop();
}

Test(failover, connection_refused_goes_to_b)
{
    start(1, "10001", 5);
    long long id = expect_failed_over("fo-c", "fo.topup");

    char b[4096];
    json_t *s = supplier("gwa");
    cr_assert(health(s, "not_sent") == 1 && health(s, "sent") == 0, "A's health: %s",
              h_dump(s, b, sizeof b));
    cr_assert_str_eq(h_str(json_object_get(s, "health"), "breaker"), "closed");
    json_decref(s);

    json_t *t = truth(), *at_b;
    cr_assert_eq(truth_count(t, "orders", "gateway", -1, NULL) +
                     truth_count(t, "refs_without_order", "gateway", -1, NULL),
                 0, "the gateway was reached: %s", h_dump(t, b, sizeof b));
    cr_assert_eq(truth_count(t, "orders", "rewards", id, &at_b), 1, "%s", h_dump(t, b, sizeof b));
    cr_assert_str_eq(h_str(at_b, "state"), "success");
    cr_assert_eq(h_int(json_object_get(t, "counts"), "recharges_performed"), 1);
    cr_assert_eq(h_int(json_object_get(t, "counts"), "double_creates"), 0);
    json_decref(t);
    stop();
}

Test(failover, breaker_opens_after_three_not_sent)
{
    start(1, "10001", 3);
    char coid[32], b[4096];
    for (int i = 0; i < 3; i++) {
        snprintf(coid, sizeof coid, "fo-d-%d", i);
        json_t *o = order_post(coid, "fo.topup", 10, 201);
        long long id = h_int(o, "id");
        json_decref(o);
        o = order_get(id, "ops-token");
        cr_assert_eq(nattempts(o), 2, "order %d: %s", i, h_dump(o, b, sizeof b));
        check_attempt(o, 0, "gwa", "failed");
        check_attempt(o, 1, "rwb", "succeeded");
        json_decref(o);
    }
    json_t *s = supplier("gwa");
    json_t *h = json_object_get(s, "health");
    cr_assert_str_eq(h_str(h, "breaker"), "open", "%s", h_dump(s, b, sizeof b));
    cr_assert(health(s, "consecutive_failures") >= 3 && health(s, "not_sent") == 3, "%s",
              h_dump(s, b, sizeof b));
    json_decref(s);

    /* a recharge and a card order now go straight to B */
    const char *skus[] = {"fo.topup", "fo.card"};
    for (int i = 0; i < 2; i++) {
        snprintf(coid, sizeof coid, "fo-d-open-%d", i);
        json_t *o = order_post(coid, skus[i], 10, 201);
        long long id = h_int(o, "id");
        cr_assert_str_eq(h_str(o, "state"), "succeeded");
        json_decref(o);
        o = order_get(id, "ops-token");
        cr_assert_eq(nattempts(o), 1, "%s: A was tried with its breaker open: %s", skus[i],
                     h_dump(o, b, sizeof b));
        check_attempt(o, 0, "rwb", "succeeded");
        json_decref(o);
    }
    s = supplier("gwa");
    cr_assert_eq(health(s, "not_sent"), 3, "A was called with its breaker open: %s",
                 h_dump(s, b, sizeof b));
    json_decref(s);

    json_t *t = truth();
    json_t *counts = json_object_get(t, "counts");
    cr_assert_eq(h_int(counts, "recharges_performed"), 4);
    cr_assert_eq(h_int(counts, "double_creates"), 0);
    cr_assert_eq(truth_count(t, "orders", "gateway", -1, NULL), 0);
    json_decref(t);
    stop();
}
