/*
 * Low-stock and balance alerts against a real perkhubd (issue 12, items 3
 * and 4):
 *   - stock.low fires once on crossing below, stays quiet while the stock
 *     hovers between `below` and below + margin, and re-arms (stock.recovered)
 *     only at below + margin; stock.out at zero;
 *   - acknowledging is audited and evented; acknowledging an alert twice or
 *     one that does not exist is a clear error;
 *   - codes expiring within min_validity_days are never issued nor counted
 *     issuable, and codes crossing expires_at - min_validity_days leave the
 *     stock (short expiries: the sweep runs every second);
 *   - supplier.balance_low from the simulator's balance, and its recovery;
 *   - --check-config refuses bad rules with file:line:column.
 * Every wait polls a condition with a generous deadline.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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

TestSuite(alerts, .fini = teardown, .timeout = 180);

#define SKU "alert.card"

static const char *BODY = "suppliers:\n"
                          "  - id: acme\n    plugin: manual\n"
                          "products:\n"
                          "  - sku: " SKU "\n    name: Alert card\n    brand: b\n    category: c\n"
                          "    delivery: card_code\n    face_value: \"10.00\"\n"
                          "    min_validity_days: 1\n"
                          "    low_stock: {below: 5, margin: 2}\n";

static int n_import;

/* Imports n codes of SKU, expiring at `expires` (0 = never). */
static void import(int n, int64_t expires)
{
    char *csv = malloc(64 + (size_t)n * 80), when[40] = "";
    size_t len = (size_t)sprintf(csv, expires ? "code,expires_at\n" : "code\n");
    if (expires)
        h_rfc3339(expires, when, sizeof when);
    for (int i = 0; i < n; i++)
        len += (size_t)sprintf(csv + len, "ALX-%d-%d%s%s\n", n_import, i, expires ? "," : "", when);
    n_import++;
    h_resp r = h_import(&D, SKU, csv, 201);
    h_resp_free(&r);
    free(csv);
}

static int n_order;

static long order(int qty)
{
    char coid[32];
    snprintf(coid, sizeof coid, "ALO-%d", n_order++);
    h_resp r = h_order(&D, "mall-token", coid, SKU, qty);
    long st = r.status;
    h_resp_free(&r);
    return st;
}

/* Events of `type` in the feed (as ops) whose `key` is `value` (key NULL: any). */
static int count_events(const char *type, const char *key, const char *value)
{
    h_resp r = h_get(&D, "/v1/events?after=0&limit=1000", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_null(strstr(r.body, "ALX-"), "an event holds a code: %s", r.body);
    size_t i;
    json_t *e;
    int n = 0;
    json_array_foreach(json_object_get(r.json, "events"), i, e)
    {
        const char *t = json_string_value(json_object_get(e, "type"));
        const char *v = key ? json_string_value(json_object_get(e, key)) : NULL;
        n += t && !strcmp(t, type) && (!key || (v && !strcmp(v, value)));
    }
    h_resp_free(&r);
    return n;
}

/* The alerts listed with ?state=... (a new reference). */
static json_t *alerts(const char *state)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/alerts?state=%s", state);
    h_resp r = h_get(&D, path, "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *a = json_incref(json_object_get(r.json, "alerts"));
    h_resp_free(&r);
    return a;
}

static json_t *local_stock(void)
{
    h_resp r = h_get(&D, "/v1/products/" SKU, "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *l =
        json_object_get(json_object_get(json_object_get(r.json, "product"), "stock"), "local");
    cr_assert(json_is_object(l), "no stock.local: %s", r.body);
    json_incref(l);
    h_resp_free(&r);
    return l;
}

/* perkctl ARGS... (NULL-terminated) as ops against this daemon: its exit status. */
static int perkctl(char **out, char **err, ...)
{
    const char *argv[16] = {h_bin("PH_PERKCTL")};
    size_t n = 1;
    va_list ap;
    va_start(ap, err);
    for (const char *a; n < 15 && (a = va_arg(ap, const char *)) != NULL;)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    char env_url[128];
    snprintf(env_url, sizeof env_url, "PERKHUB_URL=http://127.0.0.1:%u", D.port);
    const char *env[] = {env_url, "PERKHUB_TOKEN=ops-token", NULL};
    return h_run(argv, env, NULL, 0, out, err);
}

static int second_out(void *arg)
{
    (void)arg;
    return count_events("stock.out", "sku", SKU) == 2;
}

static void assert_store_ok(void)
{
    char *out = NULL;
    int rc = h_check_store(&D, &out);
    cr_assert_eq(rc, 0, "--check-store: %s", out);
    free(out);
}

Test(alerts, stock_low_fires_once_stays_quiet_while_hovering_and_rearms)
{
    h_setup_custom(&D, BODY, NULL);
    cr_assert_eq(h_start(&D), 0);
    /* the catalog's command judged the empty product: low and out at start */
    cr_assert_eq(count_events("stock.low", "sku", SKU), 1, "0 < 5 at start");
    cr_assert_eq(count_events("stock.out", "sku", SKU), 1, "0 at start");
    import(10, 0);
    cr_assert_eq(count_events("stock.recovered", "sku", SKU), 2, "10: both re-armed");
    cr_assert_eq(count_events("stock.low", "sku", SKU), 1, "10 >= 5: no new alert");
    cr_assert_eq(order(6), 201);
    cr_assert_eq(count_events("stock.low", "sku", SKU), 2, "4 < 5: stock.low once");
    json_t *open = alerts("open");
    cr_assert_eq(json_array_size(open), 1);
    json_t *a = json_array_get(open, 0);
    cr_assert_str_eq(h_str(a, "kind"), "stock.low");
    cr_assert_str_eq(h_str(a, "subject"), SKU);
    cr_assert_eq(h_int(a, "value"), 4);
    cr_assert_eq(h_int(a, "threshold"), 5);
    json_decref(open);

    /* hovering: 6, 4, 6 stay under below + margin = 7: quiet */
    import(2, 0);
    cr_assert_eq(order(2), 201);
    import(2, 0);
    cr_assert_eq(count_events("stock.low", "sku", SKU), 2, "hovering fired again");
    cr_assert_eq(count_events("stock.recovered", "sku", SKU), 2, "re-armed below the margin");
    /* 7 = below + margin: re-armed, the alert cleared */
    import(1, 0);
    cr_assert_eq(count_events("stock.recovered", "sku", SKU), 3);
    json_t *all = alerts("all");
    cr_assert_eq(json_array_size(all), 3);
    for (size_t i = 0; i < 3; i++)
        cr_assert_str_eq(h_str(json_array_get(all, i), "state"), "cleared");
    json_decref(all);
    open = alerts("open");
    cr_assert_eq(json_array_size(open), 0);
    json_decref(open);

    /* perkctl alerts lists it, by kind and subject */
    char *out = NULL, *err = NULL;
    cr_assert_eq(perkctl(&out, &err, "alerts", "--state", "all", NULL), 0, "%s%s", out, err);
    cr_assert(strstr(out, "stock.low") && strstr(out, SKU) && strstr(out, "cleared"), "%s", out);
    free(out), free(err);

    /* fires again once re-armed; ops acknowledge it (audited, evented) */
    cr_assert_eq(order(3), 201);
    cr_assert_eq(count_events("stock.low", "sku", SKU), 3);
    open = alerts("open");
    cr_assert_eq(json_array_size(open), 1);
    long long id = h_int(json_array_get(open, 0), "id");
    json_decref(open);
    h_resp r = h_get(&D, "/v1/health", "ops-token");
    cr_assert_eq(h_int(json_object_get(r.json, "alerts"), "open"), 1, "%s", r.body);
    h_resp_free(&r);
    char path[64];
    snprintf(path, sizeof path, "/v1/alerts/%lld/ack", id);
    r = h_post_json(&D, path, "ops-token", "{\"note\":\"reordering from sbx\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    r = h_post_json(&D, path, "ops-token", "{}");
    cr_assert_eq(r.status, 409, "a second ack: %s", r.body);
    cr_assert(strstr(r.body, "already acknowledged"), "%s", r.body);
    h_resp_free(&r);
    char idtxt[24];
    snprintf(idtxt, sizeof idtxt, "%lld", id);
    cr_assert_eq(perkctl(&out, &err, "alerts", "ack", idtxt, NULL), 1, "perkctl acked twice");
    cr_assert(strstr(err, "already acknowledged"), "%s", err);
    free(out), free(err);
    cr_assert_eq(perkctl(&out, &err, "alerts", "ack", "x", NULL), 2, "a usage error");
    free(out), free(err);
    r = h_post_json(&D, "/v1/alerts/999/ack", "ops-token", "{}");
    cr_assert_eq(r.status, 404, "an unknown alert: %s", r.body);
    h_resp_free(&r);
    r = h_post_json(&D, path, "mall-token", "{}");
    cr_assert_eq(r.status, 403, "a mall acks: %s", r.body);
    h_resp_free(&r);
    cr_assert_eq(count_events("alert.acknowledged", "by", "ops"), 1);
    r = h_get(&D, "/v1/audit?action=alert.ack", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(json_array_size(json_object_get(r.json, "records")) +
                     json_array_size(json_object_get(r.json, "audit")),
                 1, "one audit record: %s", r.body);
    cr_assert_null(strstr(r.body, "reordering"), "the audit holds the note text: %s", r.body);
    h_resp_free(&r);
    r = h_get(&D, "/v1/health", "ops-token");
    cr_assert_eq(h_int(json_object_get(r.json, "alerts"), "open"), 0, "%s", r.body);
    h_resp_free(&r);
    r = h_get(&D, "/v1/alerts?state=acknowledged", "ops-token");
    cr_assert_eq(json_array_size(json_object_get(r.json, "alerts")), 1, "%s", r.body);
    cr_assert_str_eq(h_str(json_array_get(json_object_get(r.json, "alerts"), 0), "acked_by"),
                     "ops");
    h_resp_free(&r);

    /* zero: stock.out */
    cr_assert_eq(order(4), 201);
    cr_assert_eq(count_events("stock.out", "sku", SKU), 2);
    r = h_get(&D, "/metrics", NULL);
    cr_assert(strstr(r.body, "perkhub_alerts_open{kind=\"stock.out\"} 1"), "%s", r.body);
    h_resp_free(&r);
    assert_store_ok();
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    assert_store_ok();
    h_cleanup(&D);
}

Test(alerts, codes_within_min_validity_are_never_issued_and_leave_the_stock)
{
    h_setup_custom(&D, BODY, NULL);
    cr_assert_eq(h_start(&D), 0);
    /* expiring in 12 hours, the product wants a day: never issuable */
    import(2, h_wall_ms() + 12 * 3600 * 1000LL);
    json_t *l = local_stock();
    cr_assert_eq(h_int(l, "issuable"), 0, "codes within min_validity_days count as issuable");
    json_decref(l);
    cr_assert_eq(order(1), 409, "a code within min_validity_days was issued");
    cr_assert_eq(count_events("stock.out", "sku", SKU), 1, "0 issuable: stock.out");

    /* a day and 4 s: issuable now, retired 4 s from now by the sweep */
    int64_t t0 = h_wall_ms();
    import(3, t0 + 86400000LL + 4000);
    l = local_stock();
    if (h_wall_ms() < t0 + 3000)
        cr_assert_eq(h_int(l, "issuable"), 3, "%lld", h_int(l, "issuable"));
    json_decref(l);
    cr_assert_eq(count_events("stock.recovered", "alert", "stock.out"), 1,
                 "3 >= margin 2: stock.out re-armed");
    cr_assert_eq(h_wait_for(second_out, NULL, 30000), 0, "the codes never left the stock");
    cr_assert_geq(h_wall_ms(), t0 + 4000, "retired before expires_at - min_validity_days");
    l = local_stock();
    cr_assert_eq(h_int(l, "issuable"), 0);
    json_decref(l);
    cr_assert_eq(order(1), 409);
    assert_store_ok();
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    assert_store_ok();
    h_cleanup(&D);
}

static char SIMBODY[4096];

static int balance_events(void *arg)
{
    const char **want = arg;
    return count_events(want[0], "supplier", "gateway") >= 1;
}

Test(alerts, balance_low_from_the_simulator_and_its_recovery)
{
    cr_assert(h_sim_start(&S, NULL) == 0, "supsim did not start (log %s)", S.log);
    char gw[1024];
    h_sim_supplier_yaml(&S, "gateway", "gateway",
                        "    balance_below: \"500.00\"\n    balance_every_s: 1\n", NULL, gw,
                        sizeof gw);
    snprintf(SIMBODY, sizeof SIMBODY,
             "suppliers:\n%s"
             "products:\n"
             "  - sku: gw.topup\n    name: Top-up\n    brand: telco\n"
             "    category: telecom\n    delivery: recharge\n    face_value: \"50.00\"\n"
             "    offers:\n      - {supplier: gateway, supplier_sku: \"20001\", cost: \"49.00\"}\n",
             gw);
    h_setup_custom(&D, SIMBODY, NULL);
    cr_assert_eq(h_start(&D), 0);
    h_resp r = h_sim_req(&S, "POST", "/_sim/balance", "{\"fen\": 10000}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    const char *low[] = {"supplier.balance_low"}, *rec[] = {"supplier.balance_recovered"};
    cr_assert_eq(h_wait_for(balance_events, low, 30000), 0, "no supplier.balance_low");
    r = h_get(&D, "/v1/suppliers", "ops-token");
    json_t *b = json_object_get(json_array_get(json_object_get(r.json, "suppliers"), 0), "balance");
    cr_assert(json_is_object(b), "no balance in GET /v1/suppliers: %s", r.body);
    cr_assert(h_str(b, "at"));
    h_resp_free(&r);
    /* 520.00 is under 500.00 + the margin (50.00): still low, no second event */
    r = h_sim_req(&S, "POST", "/_sim/balance", "{\"fen\": 52000}");
    h_resp_free(&r);
    r = h_sim_req(&S, "POST", "/_sim/balance", "{\"fen\": 100000}");
    h_resp_free(&r);
    cr_assert_eq(h_wait_for(balance_events, rec, 30000), 0, "no supplier.balance_recovered");
    cr_assert_eq(count_events("supplier.balance_low", "supplier", "gateway"), 1,
                 "balance_low fired twice");
    json_t *all = alerts("all");
    cr_assert_str_eq(h_str(json_array_get(all, 0), "kind"), "supplier.balance_low");
    cr_assert_str_eq(h_str(json_array_get(all, 0), "state"), "cleared");
    json_decref(all);
    h_stop_clean(&D);
    assert_store_ok();
    h_cleanup(&D);
}

Test(alerts, a_reload_adds_the_balance_job)
{
    cr_assert(h_sim_start(&S, NULL) == 0, "supsim did not start (log %s)", S.log);
    char gw[1024];
    h_sim_supplier_yaml(&S, "gateway", "gateway", "    priority: 1\n", NULL, gw, sizeof gw);
    snprintf(SIMBODY, sizeof SIMBODY,
             "suppliers:\n%s"
             "products:\n"
             "  - sku: gw.topup\n    name: Top-up\n    brand: telco\n"
             "    category: telecom\n    delivery: recharge\n    face_value: \"50.00\"\n"
             "    offers:\n      - {supplier: gateway, supplier_sku: \"20001\", cost: \"49.00\"}\n",
             gw);
    h_setup_custom(&D, SIMBODY, NULL);
    cr_assert_eq(h_start(&D), 0);
    h_resp r = h_sim_req(&S, "POST", "/_sim/balance", "{\"fen\": 10000}");
    h_resp_free(&r);
    r = h_get(&D, "/v1/suppliers", "ops-token");
    cr_assert(json_is_null(json_object_get(json_array_get(json_object_get(r.json, "suppliers"), 0),
                                           "balance")),
              "a balance without a job: %s", r.body);
    h_resp_free(&r);
    /* the rule comes with a reload: its job starts, the low balance fires */
    char *edited = h_replace(SIMBODY, "    priority: 1\n",
                             "    priority: 1\n    balance_below: \"500.00\"\n"
                             "    balance_every_s: 1\n");
    snprintf(SIMBODY, sizeof SIMBODY, "%s", edited);
    free(edited);
    h_write_config(&D, NULL);
    cr_assert_eq(kill(D.pid, SIGHUP), 0);
    cr_assert_eq(h_log_wait(&D, "config.reloaded", 1, 10000), 0);
    const char *low[] = {"supplier.balance_low"};
    cr_assert_eq(h_wait_for(balance_events, low, 30000), 0, "no supplier.balance_low after reload");
    h_stop_clean(&D);
    assert_store_ok();
    h_cleanup(&D);
}

/* --check-config on a config with `extra` products or suppliers: exit 1 and a
 * line naming file:line:column and `want`. */
static void refused(const char *body, const char *want)
{
    h_setup_custom(&D, body, NULL);
    const char *argv[] = {h_bin("PH_PERKHUBD"), "--check-config", D.config, NULL};
    char *out = NULL, *err = NULL;
    int rc = h_run(argv, NULL, NULL, 0, &out, &err);
    cr_assert_eq(rc, 1, "check-config accepted: %s", err);
    char needle[512];
    snprintf(needle, sizeof needle, "%s:", D.config);
    cr_assert(strstr(err, needle), "no file:line:column: %s", err);
    cr_assert(strstr(err, want), "no '%s' in: %s", want, err);
    free(out);
    free(err);
    h_cleanup(&D);
}

Test(alerts, check_config_refuses_bad_rules)
{
    refused("products:\n  - sku: a.b\n    name: A\n    brand: b\n    category: c\n"
            "    delivery: card_code\n    face_value: \"1.00\"\n    low_stock: {margin: 3}\n",
            "low_stock");
    refused("products:\n  - sku: a.b\n    name: A\n    brand: b\n    category: c\n"
            "    delivery: card_code\n    face_value: \"1.00\"\n    min_validity_days: 5000\n",
            "min_validity_days");
    refused("suppliers:\n  - id: sbx\n    plugin: sandbox\n    balance_every_s: 60\n",
            "balance_every_s");
    refused("suppliers:\n  - id: ex\n    plugin: manual\n    balance_below: \"10.00\"\n",
            "balance_below");
}
