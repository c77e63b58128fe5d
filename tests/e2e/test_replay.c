/*
 * test_replay.c — the write path is a deterministic function of (store, batch
 * of commands): perkhubd records every committed batch (PERKHUB_JOURNAL), a
 * realistic run goes through it, and `perkhubd --replay-journal` applies the
 * journal to an empty directory. Both stores must hold the same data:
 * `mdb_dump -a` of each, equal line for line (only the map size, which grows
 * by itself, is left out).
 *
 * The run: a catalog sync at start (and again after a restart), an import, an
 * import refused for a code already stored, stock orders with a replay, a
 * conflict and an out-of-stock refusal, a void of the batch, a card order that
 * fails over from the gateway supplier (out of stock) to the rewards one, and a
 * recharge left unknown by a timeout that a query settles once the faults clear.
 * The ops actions among them (imports, the void, a reload) carry audit records,
 * which the journal keeps and the replay writes again.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define WAIT_MS 20000

static h_daemon D;
static h_sim S;
static char BODY[4096];

static void teardown(void)
{
    unsetenv("PERKHUB_JOURNAL");
    h_leftover(&D);
    if (S.pid > 0)
        h_sim_stop(&S);
}

TestSuite(replay, .fini = teardown);

#define TIMEOUTS "    timeout_ms: 1500\n    connect_timeout_ms: 1000\n    query_max_delay_ms: 500\n"

static void start_all(void)
{
    cr_assert(h_sim_start(&S, NULL) == 0, "supsim did not start");
    char a[1024], b[1024];
    h_sim_supplier_yaml(&S, "gwa", "gateway", "    priority: 20\n" TIMEOUTS, NULL, a, sizeof a);
    h_sim_supplier_yaml(&S, "rwb", "rewards", "    priority: 10\n" TIMEOUTS, NULL, b, sizeof b);
    snprintf(BODY, sizeof BODY,
             "suppliers:\n%s%s"
             "  - id: acme\n    plugin: manual\n"
             "products:\n"
             "  - sku: rp.card\n    name: Stock card\n    brand: b\n    category: c\n"
             "    delivery: card_code\n    face_value: \"30.00\"\n"
             "  - sku: fo.card\n    name: Failover card\n    brand: sim\n    category: video\n"
             "    delivery: card_code\n    face_value: \"30.00\"\n    offers:\n"
             "      - {supplier: gwa, supplier_sku: \"10002\", cost: \"28.50\"}\n"
             "      - {supplier: rwb, supplier_sku: \"U10001\", cost: \"28.50\"}\n"
             "  - sku: fo.topup\n    name: Top-up\n    brand: sim\n    category: telecom\n"
             "    delivery: recharge\n    face_value: \"50.00\"\n    offers:\n"
             "      - {supplier: gwa, supplier_sku: \"20001\", cost: \"49.00\"}\n"
             "      - {supplier: rwb, supplier_sku: \"U20001\", cost: \"49.00\"}\n"
             "  - sku: rp.pack\n    name: Pack\n    brand: b\n    category: c\n"
             "    delivery: bundle\n    face_value: \"80.00\"\n    components:\n"
             "      - {sku: rp.card, quantity: 1}\n      - {sku: fo.topup}\n",
             a, b);
    h_setup_custom(&D, BODY, NULL);
}

static void sim_post(const char *path, const char *json)
{
    h_resp r = h_sim_req(&S, "POST", path, json);
    cr_assert(r.status < 300, "POST %s %s: %ld %s", path, json, r.status, r.body);
    h_resp_free(&r);
}

static long long order_expect(const char *json, long status, const char *state)
{
    h_resp r = h_post_json(&D, "/v1/orders", "mall-token", json);
    cr_assert_eq(r.status, status, "POST /v1/orders %s: %ld %s", json, r.status, r.body);
    long long id = -1;
    if (state) {
        cr_assert_str_eq(h_str(h_order_of(&r), "state"), state, "%s", r.body);
        id = h_int(h_order_of(&r), "id");
    }
    h_resp_free(&r);
    return id;
}

static int answered(json_t *o, void *arg)
{
    (void)arg;
    json_t *a = json_array_get(json_object_get(o, "attempts"), 0);
    return a && strcmp(h_str(a, "state"), "sending") != 0;
}

static int is_final(json_t *o, void *arg)
{
    (void)arg;
    return !strcmp(h_str(o, "state"), "succeeded") || !strcmp(h_str(o, "state"), "failed");
}

static int bundle_settled(json_t *o, void *arg)
{
    (void)arg;
    return strcmp(h_str(o, "state"), "processing") && strcmp(h_str(o, "state"), "unknown");
}

/* Bundles (issue 16): one delivered whole, one partial (the top-up fails at
 * both suppliers) and its retry, which fails again: BUNDLE new and retry in
 * the journal, and component orders moved by ATTEMPT with their parent. */
static void bundle_run(void)
{
    char *csv = h_codes_csv("BNDL", 2);
    h_resp r = h_import(&D, "rp.card", csv, 201);
    free(csv);
    h_resp_free(&r);
    order_expect("{\"client_order_id\":\"bp-1\",\"sku\":\"rp.pack\","
                 "\"account\":\"13800000001\",\"wait\":10}",
                 201, "succeeded");
    r = h_post_json(&D, "/v1/orders", "mall-token",
                    "{\"client_order_id\":\"bp-2\",\"sku\":\"rp.pack\","
                    "\"account\":\"13900000002\"}");
    cr_assert_eq(r.status, 202, "%s", r.body);
    long long id = h_int(h_order_of(&r), "id");
    h_resp_free(&r);
    char b[4096], path[64];
    json_t *o = h_order_poll(&D, id, "mall-token", bundle_settled, NULL, WAIT_MS, "bundle");
    cr_assert_str_eq(h_str(o, "state"), "partial", "%s", h_dump(o, b, sizeof b));
    json_decref(o);
    snprintf(path, sizeof path, "/v1/orders/%lld/retry", id);
    r = h_post_json(&D, path, "mall-token", "{\"retry\":1}");
    cr_assert(r.status == 201 || r.status == 202, "%ld %s", r.status, r.body);
    h_resp_free(&r);
    o = h_order_poll(&D, id, "mall-token", bundle_settled, NULL, WAIT_MS, "bundle retry");
    cr_assert_str_eq(h_str(o, "state"), "partial", "%s", h_dump(o, b, sizeof b));
    cr_assert_eq(h_int(o, "retries"), 1);
    json_decref(o);
}

/* One client of the burst, on its own connection: 11 orders of one code, then
 * one of three (which may find fewer: a failure after writing, which makes
 * the writer redo its batch with nested transactions). */
typedef struct burst {
    int no, ok, refused;
    h_conn *c;
} burst;

static void *burst_main(void *arg)
{
    burst *b = arg;
    for (int i = 0; i < 12; i++) {
        char coid[32];
        snprintf(coid, sizeof coid, "burst-%d-%d", b->no, i);
        h_resp r;
        if (h_conn_order(b->c, "mall-token", coid, "rp.card", i == 11 ? 3 : 1, &r) == 0)
            r.status == 201 ? b->ok++ : r.status == 409 ? b->refused++ : 0;
        h_resp_free(&r);
    }
    return NULL;
}

/* 4 clients order 56 codes of 40 at once: group commits with several orders,
 * and out-of-stock refusals in the middle of a batch. */
static void concurrent_burst(void)
{
    char *csv = h_codes_csv("RB", 40);
    h_resp r = h_import(&D, "rp.card", csv, 201);
    free(csv);
    h_resp_free(&r);
    burst b[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        b[i] = (burst){.no = i, .c = h_conn_new(&D)};
        cr_assert_eq(pthread_create(&th[i], NULL, burst_main, &b[i]), 0);
    }
    int ok = 0, refused = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        h_conn_free(b[i].c);
        ok += b[i].ok;
        refused += b[i].refused;
    }
    cr_assert(ok + refused == 48 && ok >= 14 && refused >= 2,
              "%d orders succeeded, %d refused (out of stock), of 48", ok, refused);
}

/* The run itself: every kind of command, refusals included. */
static void realistic_run(void)
{
    /* an import, and one refused for a code stored before */
    char *csv = h_codes_csv("RP", 5);
    h_resp r = h_import(&D, "rp.card", csv, 201);
    free(csv);
    long long batch = h_int(json_object_get(r.json, "batch"), "id");
    h_resp_free(&r);
    r = h_import(&D, "rp.card", "code\nRP-NEW-1\nRP-0000003\n", 422);
    h_resp_free(&r);

    /* stock orders: new, replayed, conflicting, out of stock */
    const char *o1 = "{\"client_order_id\":\"rp-1\",\"sku\":\"rp.card\",\"quantity\":2}";
    order_expect(o1, 201, "succeeded");
    order_expect(o1, 200, "succeeded");
    order_expect("{\"client_order_id\":\"rp-1\",\"sku\":\"rp.card\",\"quantity\":1}", 409, NULL);
    order_expect("{\"client_order_id\":\"rp-2\",\"sku\":\"rp.card\",\"quantity\":9}", 409, NULL);
    order_expect("{\"client_order_id\":\"rp-3\",\"sku\":\"rp.card\"}", 201, "succeeded");

    /* the supplier voids the batch: two codes still in stock, three issued */
    char path[96];
    snprintf(path, sizeof path, "/v1/batches/%lld/void", batch);
    r = h_post_json(&D, path, "ops-token", "{\"reason\":\"recalled upstream\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    /* a reload: its audit record rides on the catalog's command */
    cr_assert_eq(kill(D.pid, SIGHUP), 0);
    cr_assert_eq(h_log_wait(&D, "msg=config.reloaded", 1, WAIT_MS), 0, "no reload");
    concurrent_burst();

    /* a card order: A is out of stock (definite), B delivers */
    long long id = order_expect(
        "{\"client_order_id\":\"fo-a\",\"sku\":\"fo.card\",\"quantity\":1,\"wait\":10}", 201,
        "succeeded");
    json_t *o = h_order_get(&D, id, "ops-token");
    char b[2048];
    cr_assert_eq(json_array_size(json_object_get(o, "attempts")), 2, "%s", h_dump(o, b, sizeof b));
    json_decref(o);

    /* a recharge A takes and times out on: unknown until a query settles it */
    sim_post("/_sim/faults", "{\"protocol\":\"gateway\",\"op\":\"order\",\"fault\":"
                             "\"timeout_after\",\"count\":1}");
    sim_post("/_sim/faults", "{\"protocol\":\"gateway\",\"op\":\"query\",\"fault\":\"http_500\","
                             "\"count\":-1}");
    id = order_expect("{\"client_order_id\":\"fo-b\",\"sku\":\"fo.topup\","
                      "\"account\":\"13800000001\",\"wait\":0}",
                      202, "processing");
    o = h_order_poll(&D, id, "ops-token", answered, NULL, WAIT_MS, "the timeout");
    cr_assert_str_eq(h_str(o, "state"), "unknown", "%s", h_dump(o, b, sizeof b));
    json_decref(o);
    r = h_sim_req(&S, "DELETE", "/_sim/faults", NULL);
    h_resp_free(&r);
    o = h_order_poll(&D, id, "ops-token", is_final, NULL, WAIT_MS, "the settlement");
    cr_assert_str_eq(h_str(o, "state"), "succeeded", "%s", h_dump(o, b, sizeof b));
    json_decref(o);

    /* codes that expire: the daemon's sweep retires them (PH_CMD_EXPIRE) */
    char when[40], exp_csv[160];
    h_rfc3339(h_wall_ms() + 1200, when, sizeof when);
    snprintf(exp_csv, sizeof exp_csv, "code,expires_at\nRP-EXP-1,%s\nRP-EXP-2,%s\n", when, when);
    r = h_import(&D, "rp.card", exp_csv, 201);
    h_resp_free(&r);
    cr_assert_eq(h_log_wait(&D, "msg=codes.expired", 1, WAIT_MS), 0, "the sweep did not run");
}

/* Equal dumps, or the first differing line of each. */
static void assert_same(const char *a, const char *b)
{
    if (!strcmp(a, b))
        return;
    size_t line = 1, i = 0;
    for (; a[i] && a[i] == b[i]; i++)
        line += a[i] == '\n';
    size_t s = i;
    while (s && a[s - 1] != '\n')
        s--;
    cr_assert_fail("the replayed store differs from the original at dump line %zu:\n"
                   "  original: %.200s\n  replayed: %.200s",
                   line, a + s, b + s);
}

/* A replay holds the key file of the store that wrote the journal, as every
 * node does: the key checks it records at open are then the same. */
static int replay(const char *journal, const char *dir, char **out, char **err)
{
    char keys[320];
    snprintf(keys, sizeof keys, "%s/master.key", D.dir);
    const char *argv[] = {
        h_bin("PH_PERKHUBD"), "--replay-journal", journal, "--data", dir, "--key-file", keys, NULL};
    return h_run(argv, NULL, NULL, 0, out, err);
}

Test(replay, a_journal_replayed_into_an_empty_store_gives_the_same_data)
{
    start_all();
    char journal[300], copy[320], target[300];
    snprintf(journal, sizeof journal, "%s/journal", D.dir);
    snprintf(target, sizeof target, "%s/replayed", D.dir);
    cr_assert_eq(setenv("PERKHUB_JOURNAL", journal, 1), 0);
    cr_assert(h_start(&D) == 0, "perkhubd did not start");
    realistic_run();
    /* a restart: the journal goes on (the catalog sync again, then one more order) */
    h_stop_clean(&D);
    cr_assert(h_start(&D) == 0, "perkhubd did not restart");
    char *csv = h_codes_csv("RQ", 2);
    h_resp r = h_import(&D, "rp.card", csv, 201);
    free(csv);
    h_resp_free(&r);
    order_expect("{\"client_order_id\":\"rp-4\",\"sku\":\"rp.card\"}", 201, "succeeded");
    bundle_run();
    h_ledger_matches_sim(&D, &S);
    h_stop_clean(&D);
    unsetenv("PERKHUB_JOURNAL");

    char *out = NULL, *err = NULL;
    int rc = replay(journal, target, &out, &err);
    cr_assert_eq(rc, 0, "replay: %s%s", out, err);
    cr_assert(strstr(out, "replayed"), "%s", out);
    fprintf(stderr, "%s", out);
    free(out);
    free(err);

    char *a = h_mdb_dump(D.data), *b = h_mdb_dump(target);
    cr_assert(strstr(a, "database=orders") && strstr(a, "database=events"), "%.300s", a);
    /* the audit trail (imports, the void, the reload) replays to the same bytes */
    /* (mdb_dump writes values in hex: "batch.void", "config.reload") */
    cr_assert(strstr(a, "database=audit") && strstr(a, "62617463682e766f6964") &&
                  strstr(a, "636f6e6669672e72656c6f6164"),
              "no audit records in the original");
    assert_same(a, b);
    free(a);
    free(b);
    h_daemon rd = D;
    snprintf(rd.data, sizeof rd.data, "%s", target);
    cr_assert_eq(h_check_store(&rd, &out), 0, "%s", out);
    free(out);

    /* a replay never lands on a store, nor takes a journal that was not closed */
    rc = replay(journal, target, NULL, &err);
    cr_assert_neq(rc, 0);
    cr_assert(strstr(err, "holds a store already"), "%s", err);
    free(err);
    size_t len;
    char *bytes = h_read_file(journal, &len);
    cr_assert(bytes && len > 12);
    snprintf(copy, sizeof copy, "%s.torn", journal);
    FILE *f = fopen(copy, "wb");
    cr_assert(f && fwrite(bytes, 1, len - 12, f) == len - 12); /* without its close record */
    fclose(f);
    free(bytes);
    snprintf(target, sizeof target, "%s/replayed-torn", D.dir);
    rc = replay(copy, target, NULL, &err);
    cr_assert_neq(rc, 0);
    cr_assert(strstr(err, "without a close record"), "%s", err);
    free(err);

    h_cleanup(&D);
    h_sim_stop(&S);
}
