/*
 * test_metrics.c — GET /metrics end to end: a real perkhubd with stock orders
 * and supplier orders (the gateway protocol at supsim), scraped before and
 * after; every line of each scrape is valid exposition text (tests/prom_parse.h:
 * syntax, HELP/TYPE, _total counters, cumulative histograms whose _count is
 * their +Inf bucket); the counters moved by exactly what was done; a route's
 * latency histogram counted exactly its requests; the series read at scrape
 * time agree with the API (stock, suppliers); and who may scrape follows
 * config metrics.access (loopback by default, ops, public), reloaded on SIGHUP.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "../prom_parse.h"
#include "harness.h"

#define ACCOUNT "13800000001" /* supsim completes it succeeded */

static h_daemon D;
static h_sim S;
static char BODY[4096]; /* the config body: h_setup_custom borrows it */

static void teardown(void)
{
    h_leftover(&D);
    if (S.pid > 0)
        h_sim_stop(&S);
}

TestSuite(metrics, .fini = teardown);

/* Scrapes /metrics (token may be NULL), asserts 200 and valid text, and parses
 * it into *doc. */
static void scrape(prom_doc *doc, const char *token)
{
    h_resp r = h_get(&D, "/metrics", token);
    cr_assert_eq(r.status, 200, "GET /metrics: %ld %s", r.status, r.body);
    char ct[128];
    cr_assert(h_header(&r, "Content-Type", ct, sizeof ct));
    cr_assert(!strncmp(ct, "text/plain; version=0.0.4", 25), "Content-Type: %s", ct);
    int rc = prom_parse(doc, r.body);
    cr_assert_eq(rc, 0, "invalid exposition text: %s\n---\n%s", doc->err, r.body);
    h_resp_free(&r);
}

/* A sample's value, 0 when the series is absent (a counter not yet seen). */
static double val(const prom_doc *d, const char *name, const char *labels)
{
    double v = prom_get(d, name, labels, NULL);
    return isnan(v) ? 0 : v;
}

/* The config: gwa (gateway at supsim) offers a top-up and a card it has none
 * of; m.card is sold from stock only (imported as acme's). Listening on every address so a
 * request can come from a non-loopback one. access: the metrics block. */
static void write_config(const char *access)
{
    char *text = h_config_text(&D, access);
    /* ops tokens come from another address over plain HTTP below */
    char *allowed = h_replace(text, "data_dir:", "http:\n  allow_plain_tokens: true\ndata_dir:");
    char *wide = h_replace(allowed, "  address: 127.0.0.1\n", "  address: 0.0.0.0\n");
    free(allowed);
    h_write_config_text(&D, wide);
    free(text);
    free(wide);
}

static void start(void)
{
    cr_assert(h_sim_start(&S, NULL) == 0, "supsim did not start");
    char gwa[1024];
    h_sim_supplier_yaml(&S, "gwa", "gateway", NULL, NULL, gwa, sizeof gwa);
    snprintf(BODY, sizeof BODY,
             "suppliers:\n%s"
             "  - id: acme\n    plugin: manual\n" /* h_import's supplier */
             "products:\n"
             "  - sku: m.card\n    name: Stock card\n    brand: sim\n    category: video\n"
             "    delivery: card_code\n    face_value: \"30.00\"\n"
             "  - sku: m.oos\n    name: Card nobody has\n    brand: sim\n    category: video\n"
             "    delivery: card_code\n    face_value: \"30.00\"\n    offers:\n"
             "      - {supplier: gwa, supplier_sku: \"10002\", cost: \"28.00\"}\n"
             "  - sku: m.topup\n    name: Top-up\n    brand: sim\n    category: telecom\n"
             "    delivery: recharge\n    face_value: \"50.00\"\n    offers:\n"
             "      - {supplier: gwa, supplier_sku: \"20001\", cost: \"49.00\"}\n",
             gwa);
    h_setup_custom(&D, BODY, NULL);
    write_config(NULL);
    cr_assert(h_start(&D) == 0, "perkhubd did not start");
}

static int is_final(json_t *o, void *arg)
{
    (void)arg;
    return !strcmp(h_str(o, "state"), "succeeded") || !strcmp(h_str(o, "state"), "failed");
}

/* A supplier order with wait; polled to its end. Returns its final state. */
static char *supplier_order(const char *coid, const char *sku, int topup)
{
    char body[256];
    if (topup)
        snprintf(body, sizeof body,
                 "{\"client_order_id\":\"%s\",\"sku\":\"%s\",\"account\":\"%s\",\"wait\":10}", coid,
                 sku, ACCOUNT);
    else
        snprintf(body, sizeof body,
                 "{\"client_order_id\":\"%s\",\"sku\":\"%s\",\"quantity\":1,\"wait\":10}", coid,
                 sku);
    h_resp r = h_post_json(&D, "/v1/orders", "mall-token", body);
    cr_assert(r.status == 201 || r.status == 202, "POST /v1/orders %s: %ld %s", body, r.status,
              r.body);
    long long id = h_int(h_order_of(&r), "id");
    h_resp_free(&r);
    json_t *o = h_order_poll(&D, id, "ops-token", is_final, NULL, 20000, "a supplier order");
    char *state = strdup(h_str(o, "state"));
    json_decref(o);
    return state;
}

Test(metrics, counters_move_by_exactly_what_was_done)
{
    start();
    prom_doc a, b;
    scrape(&a, NULL); /* loopback, no token: the default access */

    h_resp r = h_import(&D, "m.card", "code\nMC-1\nMC-2\nMC-3\nMC-4\nMC-5\n", 201);
    h_resp_free(&r);
    int posts_2xx = 0, posts_4xx = 0;
    for (int i = 1; i <= 3; i++) {
        char coid[32];
        snprintf(coid, sizeof coid, "M-%d", i);
        r = h_order(&D, "mall-token", coid, "m.card", 1);
        cr_assert_eq(r.status, 201, "%s", r.body);
        h_resp_free(&r);
        posts_2xx++;
    }
    r = h_order(&D, "mall-token", "M-1", "m.card", 1); /* a replay: no new order */
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    posts_2xx++;
    r = h_order(&D, "other-token", "O-1", "m.card", 1);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    posts_2xx++;
    r = h_order(&D, "mall-token", "M-9", "m.card", 5); /* 1 left: refused, nothing stored */
    cr_assert_eq(r.status, 409, "%s", r.body);
    h_resp_free(&r);
    posts_4xx++;
    char *st;
    for (int i = 1; i <= 2; i++) {
        char coid[32];
        snprintf(coid, sizeof coid, "T-%d", i);
        st = supplier_order(coid, "m.topup", 1);
        cr_assert_str_eq(st, "succeeded");
        free(st);
        posts_2xx++;
    }
    st = supplier_order("X-1", "m.oos", 0); /* supsim is out of it: a definite failure */
    cr_assert_str_eq(st, "failed");
    free(st);
    posts_2xx++;

    /* a request is counted when libmicrohttpd reports it complete, a moment
     * after its answer reached us (slow under TSan): scraped again, up to 10 s,
     * until every order request above is counted */
#define DELTA(name, labels) (val(&b, name, labels) - val(&a, name, labels))
    int rescrapes = 0;
    for (scrape(&b, NULL); (DELTA("perkhub_http_request_duration_seconds_count",
                                  "method=POST,route=/v1/orders,code=2xx") < posts_2xx ||
                            DELTA("perkhub_http_request_duration_seconds_count",
                                  "method=POST,route=/v1/orders,code=4xx") < posts_4xx) &&
                           rescrapes < 500;
         rescrapes++) {
        prom_free(&b);
        usleep(20000);
        scrape(&b, NULL);
    }
    cr_assert_eq(DELTA("perkhub_orders_total", "client=mall,source=stock,outcome=succeeded"), 3);
    cr_assert_eq(DELTA("perkhub_orders_total", "client=othermall,source=stock,outcome=succeeded"),
                 1);
    cr_assert_eq(DELTA("perkhub_orders_total", "client=mall,source=stock,outcome=failed"), 0);
    cr_assert_eq(DELTA("perkhub_orders_total", "client=mall,source=supplier,outcome=succeeded"), 2);
    cr_assert_eq(DELTA("perkhub_orders_total", "client=mall,source=supplier,outcome=failed"), 1);
    cr_assert_eq(val(&b, "perkhub_stock_available", "sku=m.card"), 1);
    cr_assert_eq(val(&b, "perkhub_orders_open", "state=unknown"), 0);
    cr_assert_eq(val(&b, "perkhub_orders_open", "state=processing"), 0);

    /* each route's histogram counted exactly its requests */
    cr_assert_eq(DELTA("perkhub_http_request_duration_seconds_count",
                       "method=POST,route=/v1/orders,code=2xx"),
                 posts_2xx);
    cr_assert_eq(DELTA("perkhub_http_request_duration_seconds_count",
                       "method=POST,route=/v1/orders,code=4xx"),
                 posts_4xx);
    cr_assert_eq(DELTA("perkhub_http_request_duration_seconds_count",
                       "method=POST,route=/v1/batches,code=2xx"),
                 1);
    /* a scrape is counted when it completes: b saw a's (and those of the
     * scrapes above that had completed), never itself */
    cr_assert_eq(val(&a, "perkhub_http_request_duration_seconds_count",
                     "method=GET,route=/metrics,code=2xx"),
                 0);
    double scrapes = val(&b, "perkhub_http_request_duration_seconds_count",
                         "method=GET,route=/metrics,code=2xx");
    cr_assert(scrapes >= 1 && scrapes <= 1 + rescrapes, "%g scrapes counted, %d made before b",
              scrapes, 1 + rescrapes);

    /* the writer: one batch observation per durable commit */
    cr_assert_eq(val(&b, "perkhub_store_batch_commands_count", ""),
                 val(&b, "perkhub_store_commits_total", ""));
    cr_assert_eq(val(&b, "perkhub_store_batch_commands_sum", ""),
                 val(&b, "perkhub_store_commands_total", ""));
    cr_assert_gt(val(&b, "perkhub_store_map_used_bytes", ""), 0);
    cr_assert_geq(val(&b, "perkhub_store_map_size_bytes", ""),
                  val(&b, "perkhub_store_map_used_bytes", ""));

    /* the supplier: its exchanges timed as often as the engine counted them */
    double ex = 0;
    static const char *const outs[] = {"ok", "definite_failure", "retryable", "ambiguous"};
    for (size_t i = 0; i < 4; i++) {
        char l[64];
        snprintf(l, sizeof l, "supplier=gwa,outcome=%s", outs[i]);
        ex += val(&b, "perkhub_supplier_exchanges_total", l);
    }
    cr_assert_geq(ex, 3, "three orders, at least one exchange each");
    cr_assert_eq(val(&b, "perkhub_supplier_exchange_duration_seconds_count", "supplier=gwa"), ex);
    cr_assert_geq(
        val(&b, "perkhub_supplier_exchanges_total", "supplier=gwa,outcome=definite_failure"), 1);
    cr_assert_eq(val(&b, "perkhub_supplier_breaker_state", "supplier=gwa,state=closed"), 1);
    cr_assert_eq(val(&b, "perkhub_supplier_in_flight", "supplier=gwa"), 0);
    /* the codes and the account were sealed with the harness's key 1 */
    cr_assert_eq(val(&b, "perkhub_store_key_id_in_use", "key_id=1"), 1);
    cr_assert_eq(val(&b, "perkhub_keyring_active_key_id", ""), 1);
#undef DELTA
    prom_free(&a);
    prom_free(&b);

    /* rule 3: nothing secret in the text (codes, the account, tokens) */
    r = h_get(&D, "/metrics", NULL);
    cr_assert(!strstr(r.body, "MC-"), "a code in /metrics");
    cr_assert(!strstr(r.body, ACCOUNT), "an account in /metrics");
    cr_assert(!strstr(r.body, "token"), "a token in /metrics");
    h_resp_free(&r);
    h_ledger_matches_sim(&D, &S);
    h_stop_clean(&D);
    h_cleanup(&D);
    h_sim_stop(&S);
}

/* Waits for the n-th reload of the config to be applied. */
static void reload(const char *access, long n)
{
    write_config(access);
    cr_assert_eq(kill(D.pid, SIGHUP), 0);
    cr_assert_eq(h_log_wait(&D, "msg=config.reloaded", n, 10000), 0, "no reload");
}

Test(metrics, access_follows_the_config)
{
    start();
    char addr[INET_ADDRSTRLEN];
    int other = h_non_loopback_ipv4(addr, sizeof addr);
    prom_doc d;

    /* loopback (default): no token needed here; refused from elsewhere */
    scrape(&d, NULL);
    prom_free(&d);
    if (other)
        cr_assert_eq(h_get_via(addr, D.port, "/metrics", NULL, NULL), 403,
                     "loopback access from %s", addr);
    /* an ops token does not open the loopback-only door either */
    if (other)
        cr_assert_eq(h_get_via(addr, D.port, "/metrics", "ops-token", NULL), 403,
                     "loopback access from %s", addr);

    /* ops: a token with the ops scope, from anywhere */
    reload("metrics:\n  access: ops\n", 1);
    h_resp r = h_get(&D, "/metrics", NULL);
    cr_assert_eq(r.status, 401, "%s", r.body);
    h_resp_free(&r);
    r = h_get(&D, "/metrics", "mall-token");
    cr_assert_eq(r.status, 403, "%s", r.body);
    cr_assert(strstr(r.body, "ops"), "%s", r.body);
    h_resp_free(&r);
    scrape(&d, "ops-token");
    prom_free(&d);
    if (other)
        cr_assert_eq(h_get_via(addr, D.port, "/metrics", "ops-token", NULL), 200,
                     "ops access from %s", addr);

    /* public: anyone */
    reload("metrics:\n  access: public\n", 2);
    if (other)
        cr_assert_eq(h_get_via(addr, D.port, "/metrics", NULL, NULL), 200, "public access from %s",
                     addr);
    scrape(&d, NULL);
    /* the refusals above were counted under their route */
    cr_assert_eq(val(&d, "perkhub_http_request_duration_seconds_count",
                     "method=GET,route=/metrics,code=4xx"),
                 2 + (other ? 2 : 0));
    prom_free(&d);
    h_stop_clean(&D);
    h_cleanup(&D);
    h_sim_stop(&S);
    if (!other)
        cr_skip_test("no non-loopback IPv4 address: only the loopback side ran");
}
