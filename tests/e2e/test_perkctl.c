/*
 * perkctl against a real perkhubd: the ops flow (import, order, lookup with the
 * code on stdin, events, status), --help for every command, and the exit
 * statuses scripts rely on: 0 done, 1 refused, 2 usage error, 3 unreachable.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static h_daemon D;

static void teardown(void)
{
    h_leftover(&D);
}

TestSuite(perkctl, .fini = teardown);

static void start(void)
{
    h_setup(&D, NULL);
    cr_assert_eq(h_start(&D), 0);
}

static void finish(void)
{
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    h_cleanup(&D);
}

/* Runs perkctl with PERKHUB_URL=url (NULL: this daemon) and PERKHUB_TOKEN=token
 * (NULL: none), stdin from in (may be NULL), arguments up to NULL. */
static int pk_url(const char *url, const char *token, const char *in, char **out, char **err, ...)
{
    const char *argv[32] = {h_bin("PH_PERKCTL")};
    size_t n = 1;
    va_list ap;
    va_start(ap, err);
    for (const char *a; (a = va_arg(ap, const char *));) {
        cr_assert_lt(n, 31);
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    char env_url[128], env_token[128];
    if (url)
        snprintf(env_url, sizeof env_url, "PERKHUB_URL=%s", url);
    else
        snprintf(env_url, sizeof env_url, "PERKHUB_URL=http://127.0.0.1:%u", D.port);
    snprintf(env_token, sizeof env_token, "PERKHUB_TOKEN=%s", token ? token : "");
    const char *env[] = {env_url, env_token, NULL};
    return h_run(argv, env, in, in ? strlen(in) : 0, out, err);
}

#define PK(token, in, out, err, ...) pk_url(NULL, token, in, out, err, __VA_ARGS__, NULL)

static void has(const char *text, const char *needle)
{
    cr_assert(strstr(text, needle), "'%s' not in:\n%s", needle, text);
}

/* Asserts text has the line "label:" padded as perkctl pads it, then value. */
static void has_kv(const char *text, const char *label, const char *value)
{
    char line[512];
    size_t n = strlen(label);
    snprintf(line, sizeof line, "\n%s:%*s%s\n", label, (int)(n < 14 ? 14 - n : 1), "", value);
    cr_assert(strncmp(text, line + 1, strlen(line + 1)) == 0 || strstr(text, line),
              "line '%.*s' not in:\n%s", (int)strlen(line) - 2, line + 1, text);
}

static void lacks(const char *text, const char *needle)
{
    cr_assert_null(strstr(text, needle), "'%s' should not be in:\n%s", needle, text);
}

static char *write_file(const char *name, const char *text)
{
    static char path[400];
    snprintf(path, sizeof path, "%s/%s", D.dir, name);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
    return path;
}

Test(perkctl, ops_flow_import_order_lookup_events_status)
{
    start();
    char *out, *err;
    const char *file = write_file("codes.csv", "code\nPKC-1\nPKC-2\nPKC-3\n");
    int rc = PK("ops-token", NULL, &out, &err, "import", file, "--supplier", "acme", "--sku",
                "test.card", "--cost", "19.80", "--note", "invoice 7");
    cr_assert_eq(rc, 0, "import: exit %d\n%s%s", rc, out, err);
    cr_assert_str_eq(out, "imported batch 1: 3 codes of test.card from acme\n");
    cr_assert_str_eq(err, "");
    free(out), free(err);
    h_resp r = h_get(&D, "/v1/batches/1", "ops-token");
    cr_assert_eq(r.status, 200);
    json_t *b = json_object_get(r.json, "batch");
    cr_assert_str_eq(json_string_value(json_object_get(b, "note")), "invoice 7");
    cr_assert_str_eq(json_string_value(json_object_get(b, "unit_cost")), "19.80");
    h_resp_free(&r);

    rc = PK("mall-token", NULL, &out, &err, "order", "--sku", "test.card", "--id", "PK-1", "--qty",
            "2");
    cr_assert_eq(rc, 0, "order: exit %d\n%s%s", rc, out, err);
    has_kv(out, "client order", "PK-1");
    has_kv(out, "state", "succeeded");
    has_kv(out, "product", "test.card (Test card)");
    has_kv(out, "quantity", "2");
    has(out, "\ncodes:\nPKC-1\nPKC-2\n");
    lacks(err, "PKC-");
    free(out), free(err);

    /* the same command again: the same order, said to be a replay */
    rc = PK("mall-token", NULL, &out, &err, "order", "--sku", "test.card", "--id", "PK-1", "--qty",
            "2");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    has_kv(out, "state", "succeeded (replayed: the order already existed)");
    has(out, "\ncodes:\nPKC-1\nPKC-2\n");
    free(out), free(err);

    /* --json: exactly the server's answer */
    rc = pk_url(NULL, "mall-token", NULL, &out, &err, "--json", "order", "--sku", "test.card",
                "--id", "PK-2", NULL);
    cr_assert_eq(rc, 0, "%s%s", out, err);
    json_t *j = json_loads(out, 0, NULL);
    cr_assert(j, "--json prints JSON: %s", out);
    json_t *code = json_array_get(json_object_get(json_object_get(j, "order"), "codes"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(code, "code")), "PKC-3");
    json_decref(j);
    free(out), free(err);

    /* the code comes on stdin, never in argv */
    rc = PK("mall-token", "  PKC-1  \n", &out, &err, "lookup", "--code-stdin");
    cr_assert_eq(rc, 0, "lookup: exit %d\n%s%s", rc, out, err);
    has_kv(out, "diagnosis", "issued");
    has_kv(out, "state", "issued");
    has_kv(out, "product", "test.card (Test card)");
    has_kv(out, "batch", "1");
    has(out, "(client order PK-1)\n");
    has(out, "\nissued at:");
    has(out, "\nadvice:");
    has(out, "\nredemption guide:\n  Open the app and enter the code.\n");
    cr_assert_str_eq(err, "");
    free(out), free(err);
    rc = PK("other-token", "PKC-1\n", &out, &err, "lookup", "--code-stdin");
    cr_assert_eq(rc, 0, "not_found is an answer, not a refusal: %s%s", out, err);
    has(out, "diagnosis:     not_found\n");
    lacks(out, "PK-1");
    free(out), free(err);
    rc = PK("mall-token", "", &out, &err, "lookup", "--code-stdin");
    cr_assert_eq(rc, 2, "no code on stdin: %s%s", out, err);
    has(err, "--code-stdin");
    free(out), free(err);
    rc = PK("mall-token", NULL, &out, &err, "lookup", "--client-order-id", "PK-1");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    has(out, "-- 1 of 2\n");
    has_kv(out, "code", "PKC-1");
    has_kv(out, "code", "PKC-2");
    lacks(out, "more codes");
    free(out), free(err);
    /* a page of the order: the rest is never left unsaid */
    rc = PK("mall-token", NULL, &out, &err, "lookup", "--client-order-id", "PK-1", "--limit", "1");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    has_kv(out, "code", "PKC-1");
    lacks(out, "PKC-2");
    has(out, "\n-- more codes: perkctl lookup --client-order-id PK-1 --after 1 --limit 1\n");
    free(out), free(err);
    rc = PK("mall-token", NULL, &out, &err, "lookup", "--client-order-id", "PK-1", "--after", "1",
            "--limit", "1");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    has_kv(out, "code", "PKC-2");
    lacks(out, "PKC-1");
    lacks(out, "more codes");
    free(out), free(err);

    rc = PK("ops-token", NULL, &out, &err, "events");
    cr_assert_eq(rc, 0, "events: exit %d\n%s%s", rc, out, err);
    has(out,
        "  batch.imported  batch_id=1 supplier=acme sku=test.card count=3 unit_cost_fen=1980\n");
    has(out, "  order.succeeded  order_id=1 client=mall client_order_id=PK-1 sku=test.card "
             "quantity=2 cost_fen=3960\n");
    lacks(out, "PKC-");
    free(out), free(err);
    char after[32];
    snprintf(after, sizeof after, "%lld", h_last_event(&D) - 1);
    rc = PK("ops-token", NULL, &out, &err, "events", "--after", after, "--limit", "5");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    has(out, "  order.succeeded  order_id=2 ");
    char *nl = strchr(out, '\n');
    cr_assert(nl && nl[1] == 0, "exactly one event after %s:\n%s", after, out);
    free(out), free(err);

    rc = PK("ops-token", NULL, &out, &err, "status");
    cr_assert_eq(rc, 0, "status: exit %d\n%s%s", rc, out, err);
    has(out, "health:        ok\n");
    has_kv(out, "ready", "ready");
    has_kv(out, "orders", "2");
    has_kv(out, "suppliers", "2 (2 ready)");
    has(out, "\nSKU        IMPORTED  AVAILABLE  ISSUED  REDEEMED  VOIDED  EXPIRED\n"
             "test.card  3         0          3       0         0       0\n");
    has(out, "\nacme  manual");
    free(out), free(err);
    rc = PK(NULL, NULL, &out, &err, "status");
    cr_assert_eq(rc, 0, "status without a token: %s%s", out, err);
    has(out, "skipped: no token");
    free(out), free(err);
    finish();
}

/* Every command of perkctl: help_for_every_command checks that `perkctl
 * --help` lists no other, so a new command cannot go without its test. */
static const char *commands[] = {
    "batches",   "stats",          "supplier", "import", "void",          "order",
    "orders",    "order-get",      "settle",   "lookup", "events",        "status",
    "reconcile", "suppliers",      "ledger",   "report", "discrepancies", "discrepancy",
    "products",  "audit",          "webhooks", "jobs",   "sync",          "pin",
    "alerts",    "replenishments", "reviews",  "risk",   "grants",        "snapshot"};

Test(perkctl, help_for_every_command)
{
    /* --help needs no server: point at one that does not exist */
    char *out, *err;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        char want[64];
        snprintf(want, sizeof want, "usage: perkctl %s", commands[i]);
        int rc = pk_url("http://127.0.0.1:1", NULL, NULL, &out, &err, commands[i], "--help", NULL);
        cr_assert_eq(rc, 0, "%s --help: exit %d\n%s", commands[i], rc, err);
        cr_assert(strncmp(out, want, strlen(want)) == 0, "%s --help:\n%s", commands[i], out);
        cr_assert_str_eq(err, "");
        char *first = strdup(out);
        free(out), free(err);
        rc = pk_url("http://127.0.0.1:1", NULL, NULL, &out, &err, "help", commands[i], NULL);
        cr_assert_eq(rc, 0);
        cr_assert_str_eq(out, first, "'help %s' and '%s --help' agree", commands[i], commands[i]);
        free(first);
        free(out), free(err);
    }
    int rc = pk_url("http://127.0.0.1:1", NULL, NULL, &out, &err, "--help", NULL);
    cr_assert_eq(rc, 0);
    has(out, "usage: perkctl");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        char line[32];
        snprintf(line, sizeof line, "\n  %s ", commands[i]);
        has(out, line);
    }
    /* and it lists no command this test does not know */
    const char *at = strstr(out, "\ncommands:\n");
    cr_assert(at, "%s", out);
    size_t listed = 0;
    for (const char *l = at + 11; *l == ' ' && l[1] == ' ' && l[2] != ' '; listed++) {
        char name[32] = "";
        cr_assert(sscanf(l, " %31s", name) == 1);
        int known = 0;
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
            known |= !strcmp(name, commands[i]);
        cr_assert(known, "perkctl --help lists '%s', which this test's command list lacks", name);
        l = strchr(l, '\n');
        cr_assert(l);
        l++;
    }
    cr_assert_eq(listed, sizeof commands / sizeof commands[0], "%s", out);
    free(out), free(err);
}

/* Issue 14 item 9: orders with a client column and server-side filters, a
 * mall's order by client and client order id, batches, stats, a supplier's
 * catalog and balance, --version. */
Test(perkctl, orders_filters_batches_stats_supplier_version)
{
    start();
    char *out, *err;
    const char *file = write_file("codes.csv", "code\nFLT-1\nFLT-2\nFLT-3\n");
    int rc = PK("ops-token", NULL, &out, &err, "import", file, "--supplier", "acme", "--sku",
                "test.card", "--cost", "19.80", "--note", "po 9");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    free(out), free(err);
    h_resp r = h_order(&D, "mall-token", "M-1", "test.card", 1);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    r = h_order(&D, "other-token", "O-1", "test.card", 1);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    r = h_post_json(&D, "/v1/orders", "mall-token",
                    "{\"client_order_id\":\"M-2\",\"sku\":\"test.topup\",\"quantity\":1,"
                    "\"account\":\"13800000002\",\"wait\":10}"); /* sandbox: refused */
    cr_assert_eq(h_int(h_order_of(&r), "id"), 3, "%s", r.body);
    cr_assert_str_eq(h_str(h_order_of(&r), "state"), "failed", "%s", r.body);
    h_resp_free(&r);
    r = h_order(&D, "mall-token", "M-3", "test.card", 1);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);

    /* the client column, every client's for ops */
    rc = PK("ops-token", NULL, &out, &err, "orders");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    has(out, "ID  CLIENT     CLIENT_ORDER_ID  SKU         QTY  STATE      CREATED\n");
    has(out, "\n1   mall       M-1 ");
    has(out, "\n2   othermall  O-1 ");
    has(out, "\n3   mall       M-2              test.topup  1    failed ");
    free(out), free(err);
    /* each filter, done by the server */
    rc = PK("ops-token", NULL, &out, &err, "orders", "--client", "othermall");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    has(out, "O-1");
    lacks(out, "M-1"), lacks(out, "M-2"), lacks(out, "M-3");
    free(out), free(err);
    rc = PK("ops-token", NULL, &out, &err, "orders", "--state", "failed");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    has(out, "M-2");
    lacks(out, "M-1"), lacks(out, "O-1"), lacks(out, "M-3");
    free(out), free(err);
    rc = PK("ops-token", NULL, &out, &err, "orders", "--sku", "test.card", "--state", "succeeded",
            "--client", "mall");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    has(out, "M-1"), has(out, "M-3");
    lacks(out, "M-2"), lacks(out, "O-1");
    free(out), free(err);
    rc = PK("ops-token", NULL, &out, &err, "orders", "--since", "2999-01-01T00:00:00Z");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    cr_assert_str_eq(out, "no orders\n");
    free(out), free(err);
    rc = PK("ops-token", NULL, &out, &err, "orders", "--since", "2020-01-01T00:00:00+08:00",
            "--client", "mall");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    has(out, "M-1"), has(out, "M-2"), has(out, "M-3");
    free(out), free(err);
    /* a filtered page goes on from the last order it showed */
    rc = PK("ops-token", NULL, &out, &err, "orders", "--client", "mall", "--state", "succeeded",
            "--limit", "1");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    has(out, "M-1"), lacks(out, "M-3");
    has(out, "more: --after 1\n");
    free(out), free(err);
    rc = PK("ops-token", NULL, &out, &err, "orders", "--client", "mall", "--state", "succeeded",
            "--limit", "1", "--after", "1");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    has(out, "M-3"), lacks(out, "M-1"), lacks(out, "more:");
    free(out), free(err);
    /* the server says what is wrong with a filter */
    rc = PK("ops-token", NULL, &out, &err, "orders", "--state", "done");
    cr_assert_eq(rc, 1, "%s%s", out, err);
    has(err, "invalid_request: state: expected processing, succeeded, failed, unknown, held, "
             "granted or partial");
    free(out), free(err);
    rc = PK("ops-token", NULL, &out, &err, "orders", "--since", "2026-12-01");
    cr_assert_eq(rc, 1, "%s%s", out, err);
    has(err, "since: expected an RFC 3339 time");
    free(out), free(err);
    /* a mall sees only its own: naming another client is refused */
    rc = PK("mall-token", NULL, &out, &err, "orders");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    lacks(out, "O-1"), has(out, "M-1");
    free(out), free(err);
    rc = PK("mall-token", NULL, &out, &err, "orders", "--client", "othermall");
    cr_assert_eq(rc, 1, "%s%s", out, err);
    has(err, "forbidden: client: only an ops token lists another client's orders");
    free(out), free(err);

    /* ops find a mall's order by the mall's own id */
    rc = PK("ops-token", NULL, &out, &err, "order-get", "--client", "othermall",
            "--client-order-id", "O-1");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    has_kv(out, "order", "2");
    has_kv(out, "client order", "O-1");
    lacks(out, "FLT-"); /* ops never sees codes */
    free(out), free(err);
    rc = PK("mall-token", NULL, &out, &err, "order-get", "--client", "othermall",
            "--client-order-id", "O-1");
    cr_assert_eq(rc, 1, "%s%s", out, err);
    has(err, "forbidden");
    free(out), free(err);
    rc = PK("ops-token", NULL, &out, &err, "order-get", "--client", "mall", "--client-order-id",
            "O-1");
    cr_assert_eq(rc, 1, "%s%s", out, err);
    has(err, "not_found");
    free(out), free(err);

    /* batches */
    rc = PK("ops-token", NULL, &out, &err, "batches");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    has(out, "ID  SUPPLIER  SKU        COUNT  UNIT_COST  STATE   CREATED");
    has(out, "\n1   acme      test.card  3      19.80      active  ");
    has(out, "  po 9\n");
    free(out), free(err);
    rc = PK("ops-token", NULL, &out, &err, "batches", "show", "1");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    has_kv(out, "batch", "1");
    has_kv(out, "count", "3");
    has_kv(out, "codes available", "0");
    has_kv(out, "codes issued", "3");
    lacks(out, "FLT-");
    free(out), free(err);
    rc = PK("ops-token", NULL, &out, &err, "batches", "show", "9");
    cr_assert_eq(rc, 1, "%s%s", out, err);
    has(err, "not_found");
    free(out), free(err);

    /* stats */
    rc = PK("ops-token", NULL, &out, &err, "stats", "--since", "2020-01-01T00:00:00Z");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    has_kv(out, "codes", "3");
    has_kv(out, "orders", "4");
    has(out, "orders since 2020-01-01T00:00:00.000Z: 4\n");
    has(out, "  succeeded 3, failed 1, processing 0, unknown 0\n");
    has(out, "\ntest.card  3         0          3       0       0\n");
    has(out, "\nTOP_SKU ");
    free(out), free(err);

    /* a supplier's own catalog and our balance with it */
    rc = PK("ops-token", NULL, &out, &err, "supplier", "balance", "sbx");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    has(out, "balance with sbx: ");
    free(out), free(err);
    rc = PK("ops-token", NULL, &out, &err, "supplier", "catalog", "sbx");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    has(out, "SUPPLIER_SKU ");
    has(out, "sandbox.recharge ");
    has(out, "test.topup"); /* our offer of it */
    free(out), free(err);
    rc = PK("ops-token", NULL, &out, &err, "supplier", "balance", "acme");
    cr_assert_eq(rc, 1, "the manual plugin has no balance: %s%s", out, err);
    has(err, "unsupported");
    free(out), free(err);
    rc = PK("ops-token", NULL, &out, &err, "supplier", "balance", "../x");
    cr_assert_eq(rc, 2, "%s%s", out, err);
    free(out), free(err);

    /* --version: ours, and the server's when it answers */
    rc = PK(NULL, NULL, &out, &err, "--version");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    char want[160];
    snprintf(want, sizeof want, "perkctl 0.1.0\nperkhubd 0.1.0 (http://127.0.0.1:%u)\n", D.port);
    cr_assert_str_eq(out, want);
    free(out), free(err);
    rc = pk_url("http://127.0.0.1:1", NULL, NULL, &out, &err, "--version", NULL);
    cr_assert_eq(rc, 0, "%s%s", out, err);
    cr_assert_str_eq(out, "perkctl 0.1.0\nperkhubd: not reachable at http://127.0.0.1:1\n");
    free(out), free(err);
    finish();
}

/* Log lines of requests to path, e.g. "path=/v1/orders ". */
static long requests_to(const char *path)
{
    char needle[96];
    snprintf(needle, sizeof needle, "msg=http.request method=%s", path);
    return h_file_count(D.log, needle);
}

Test(perkctl, usage_errors_exit_2_and_send_nothing)
{
    start();
    struct {
        const char *args[12];
        const char *says;
    } cases[] = {
        {{NULL}, "usage: perkctl"},
        {{"frobnicate"}, "unknown command 'frobnicate'"},
        {{"help", "frobnicate"}, "unknown command"},
        {{"order", "--sku", "test.card"}, "--id is required"},
        {{"order", "--id", "U-1"}, "--sku is required"},
        {{"order", "--sku", "test.card", "--id", "U-1", "--qty", "zero"}, "--qty"},
        {{"order", "--sku", "test.card", "--id", "U-1", "--qty", "0"}, "--qty"},
        {{"order", "--sku", "test.card", "--id", "U-1", "extra"}, "unexpected argument 'extra'"},
        {{"order", "--sku", "test.card", "--id", "U-1", "--json"}, "global option"},
        {{"import", "--supplier", "acme", "--sku", "test.card", "--cost", "1"}, "FILE"},
        {{"import", "/nonexistent/codes.csv", "--supplier", "acme", "--sku", "test.card", "--cost",
          "1"},
         "cannot open"},
        {{"import", "f.csv", "--supplier", "acme", "--sku", "test.card", "--cost", "19.999"},
         "--cost"},
        {{"import", "f.csv", "--sku", "test.card", "--cost", "1"}, "--supplier is required"},
        {{"lookup"}, "exactly one of"},
        {{"lookup", "--order", "1", "--code-stdin"}, "exactly one of"},
        {{"lookup", "SECRET-POSITIONAL-CODE"}, "unexpected argument"},
        {{"lookup", "--order", "x"}, "--order"},
        {{"lookup", "--code-stdin", "--after", "1"}, "--after: only with --order"},
        {{"lookup", "--order", "1", "--limit", "101"}, "--limit: expected 1 to 100"},
        {{"events", "--limit", "0"}, "--limit"},
        {{"events", "--after"}, "--after needs a value"},
        {{"orders", "--bogus"}, "unknown option --bogus"},
        {{"void", "1"}, "--reason is required"},
        {{"void", "abc", "--reason", "x"}, "BATCH_ID"},
        {{"order-get"}, "either an order ID or --client-order-id"},
        {{"status", "now"}, "unexpected argument"},
        /* every command's options come from one table (pk_parse): each kind of value
         * is checked and named the same way */
        {{"alerts", "--state", "bogus"},
         "--state: expected open, acknowledged or all, got 'bogus'"},
        {{"reviews", "--limit", "0"}, "--limit: expected 1 to 1000, got '0'"},
        {{"webhooks", "deliveries", "--from", "x"},
         "--from: expected an event sequence number, got 'x'"},
        {{"risk", "rules", "--version", "0"}, "--version: expected a rule version, got '0'"},
        {{"grants", "show", "1", "2", "3"}, "unexpected argument '3'"},
        {{"void", "--reason", "x", "--", "1", "2"}, "unexpected argument '2': give one BATCH_ID"},
        {{"lookup", "--", "SECRET-POSITIONAL-CODE"}, "unexpected argument (use --code-stdin"},
        {{"ledger", "--csv=yes"}, "--csv"},
        {{"--timeout", "soon", "status"}, "--timeout"},
        {{"--url", "ftp://example", "status"}, "--url"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *argv[16] = {h_bin("PH_PERKCTL")};
        size_t n = 1;
        for (size_t k = 0; cases[i].args[k]; k++)
            argv[n++] = cases[i].args[k];
        argv[n] = NULL;
        char env_url[128];
        snprintf(env_url, sizeof env_url, "PERKHUB_URL=http://127.0.0.1:%u", D.port);
        const char *env[] = {env_url, "PERKHUB_TOKEN=ops-token", NULL};
        char *out, *err;
        int rc = h_run(argv, env, NULL, 0, &out, &err);
        cr_assert_eq(rc, 2, "case %zu (%s): exit %d\n%s%s", i, cases[i].says, rc, out, err);
        has(err, cases[i].says);
        cr_assert(strncmp(err, "perkctl", 7) == 0 || strncmp(err, "usage:", 6) == 0,
                  "case %zu: diagnostics start with perkctl:\n%s", i, err);
        lacks(err, "ops-token");
        lacks(err, "SECRET-POSITIONAL-CODE");
        free(out), free(err);
    }
    /* none of them reached the server: a real request shows up in the log */
    char *out, *err;
    int rc = PK("ops-token", NULL, &out, &err, "orders");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    free(out), free(err);
    cr_assert_eq(h_log_wait(&D, "msg=http.request method=GET path=/v1/orders ", 1, 5000), 0);
    cr_assert_eq(requests_to("POST"), 0, "a usage error sent a POST");
    cr_assert_eq(requests_to("GET path=/v1/events"), 0);
    cr_assert_eq(requests_to("GET path=/v1/stats"), 0);
    finish();
}

Test(perkctl, server_refusals_exit_1_with_the_error_code)
{
    start();
    char *out, *err;
    h_resp r = h_import(&D, "test.card", "code\nREF-1\n", 201);
    h_resp_free(&r);
    struct {
        const char *token;
        const char *args[12];
        const char *code;
    } cases[] = {
        {"mall-token", {"order", "--sku", "no.such", "--id", "R-1"}, "unknown_sku"},
        {"mall-token",
         {"order", "--sku", "test.card", "--id", "R-2", "--qty", "5"},
         "out_of_stock"},
        {"ops-token", {"order", "--sku", "test.card", "--id", "R-3"}, "forbidden"},
        {"support-token", {"events"}, "forbidden"}, /* a mall's own: fulfill (issue 13) */
        {"wrong-token", {"orders"}, "unauthorized"},
        {NULL, {"suppliers"}, "unauthorized"},
        {"ops-token", {"void", "99", "--reason", "x"}, "not_found"},
        {"mall-token", {"order-get", "12345"}, "not_found"},
        {"ops-token",
         {"import", "-", "--supplier", "nobody", "--sku", "test.card", "--cost", "1"},
         "invalid_request"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *argv[16] = {h_bin("PH_PERKCTL")};
        size_t n = 1;
        for (size_t k = 0; cases[i].args[k]; k++)
            argv[n++] = cases[i].args[k];
        argv[n] = NULL;
        char env_url[128], env_token[128];
        snprintf(env_url, sizeof env_url, "PERKHUB_URL=http://127.0.0.1:%u", D.port);
        snprintf(env_token, sizeof env_token, "PERKHUB_TOKEN=%s",
                 cases[i].token ? cases[i].token : "");
        const char *env[] = {env_url, env_token, NULL};
        const char *in = "code\nREF-9\n";
        int rc = h_run(argv, env, in, strlen(in), &out, &err);
        cr_assert_eq(rc, 1, "case %zu (%s): exit %d\n%s%s", i, cases[i].code, rc, out, err);
        char want[64];
        snprintf(want, sizeof want, "perkctl: %s: ", cases[i].code);
        cr_assert(strncmp(err, want, strlen(want)) == 0, "case %zu: stderr:\n%s", i, err);
        has(err, " (request ");
        if (cases[i].token)
            lacks(err, cases[i].token);
        free(out), free(err);
    }

    /* a replay with other arguments is a conflict */
    int rc = PK("mall-token", NULL, &out, &err, "order", "--sku", "test.card", "--id", "R-9");
    cr_assert_eq(rc, 0, "%s%s", out, err);
    free(out), free(err);
    rc = PK("mall-token", NULL, &out, &err, "order", "--sku", "test.card2", "--id", "R-9");
    cr_assert_eq(rc, 1, "%s%s", out, err);
    has(err, "perkctl: conflict: ");
    free(out), free(err);

    /* a bad CSV: every bad line on stderr, never a code */
    const char *file = write_file("bad.csv", "code,card_no\nREF-2\n,NOCODE-CARD\nREF-2\nREF-1\n");
    json_t *before = h_stats(&D);
    rc = PK("ops-token", NULL, &out, &err, "import", file, "--supplier", "acme", "--sku",
            "test.card", "--cost", "19.80");
    cr_assert_eq(rc, 1, "%s%s", out, err);
    const char *head = "perkctl: invalid_csv: 3 bad lines, nothing imported (request ";
    cr_assert(strncmp(err, head, strlen(head)) == 0, "%s", err);
    has(err, "\nline 3: code: empty\nline 4: duplicate of line 2\nline 5: code already "
             "imported\n3 bad lines in total\n");
    lacks(err, "REF-");
    lacks(err, "NOCODE");
    cr_assert_str_eq(out, "");
    free(out), free(err);
    json_t *after = h_stats(&D);
    cr_assert(json_equal(before, after), "a refused import changed the store");
    json_decref(before);
    json_decref(after);
    finish();
}

Test(perkctl, oversize_import_from_stdin_is_refused)
{
    h_setup(&D, "limits:\n  max_body_mb: 1\n");
    cr_assert_eq(h_start(&D), 0);
    /* stdin goes chunked, without a length: the server must count as it reads */
    size_t cap = (2u << 20) + 64, off = 0;
    char *csv = malloc(cap);
    cr_assert(csv);
    off += (size_t)snprintf(csv, cap, "code\n");
    for (int i = 0; off < (2u << 20); i++)
        off += (size_t)snprintf(csv + off, cap - off, "OVER-%010d\n", i);
    json_t *before = h_stats(&D);
    const char *argv[] = {h_bin("PH_PERKCTL"), "import", "-", "--supplier", "acme", "--sku",
                          "test.card",         "--cost", "1", NULL};
    char env_url[128];
    snprintf(env_url, sizeof env_url, "PERKHUB_URL=http://127.0.0.1:%u", D.port);
    const char *env[] = {env_url, "PERKHUB_TOKEN=ops-token", NULL};
    char *out, *err;
    int rc = h_run(argv, env, csv, off, &out, &err);
    free(csv);
    cr_assert_eq(rc, 1, "exit %d\n%s%s", rc, out, err);
    cr_assert(strncmp(err, "perkctl: payload_too_large: ", 28) == 0, "%s", err);
    lacks(err, "OVER-");
    free(out), free(err);
    json_t *after = h_stats(&D);
    cr_assert(json_equal(before, after), "an oversize import changed the store");
    json_decref(before);
    json_decref(after);
    finish();
}

static unsigned free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    cr_assert(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    cr_assert(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    close(fd); /* nobody listens there now */
    return ntohs(sa.sin_port);
}

Test(perkctl, unreachable_server_exits_3)
{
    char url[64], *out, *err;
    snprintf(url, sizeof url, "http://127.0.0.1:%u", free_port());
    int rc = pk_url(url, "mall-token", NULL, &out, &err, "order", "--sku", "test.card", "--id",
                    "UR-1", NULL);
    cr_assert_eq(rc, 3, "exit %d\n%s%s", rc, out, err);
    char want[96];
    snprintf(want, sizeof want, "perkctl: cannot reach %s: ", url);
    cr_assert(strncmp(err, want, strlen(want)) == 0, "%s", err);
    has(err, "run the same command again, with the same --id");
    lacks(err, "mall-token");
    free(out), free(err);

    const char *cmds[][2] = {{"status", NULL}, {"events", NULL}, {"lookup", "--code-stdin"}};
    for (size_t i = 0; i < 3; i++) {
        rc = pk_url(url, "ops-token", "SOME-CODE\n", &out, &err, cmds[i][0], cmds[i][1], NULL);
        cr_assert_eq(rc, 3, "%s: exit %d\n%s%s", cmds[i][0], rc, out, err);
        has(err, "cannot reach");
        lacks(err, "SOME-CODE");
        free(out), free(err);
    }
    /* a user:password in the URL is never shown */
    char secret_url[96];
    snprintf(secret_url, sizeof secret_url, "http://admin:hunter2@%s", url + 7);
    rc = pk_url(secret_url, NULL, NULL, &out, &err, "status", NULL);
    cr_assert_eq(rc, 3, "%s", err);
    lacks(err, "hunter2");
    free(out), free(err);
}

/* The cell of table text under header `col` in the row starting with `row `
 * (copied into buf). Columns are left-aligned under their headers. */
static const char *table_cell(const char *text, const char *row, const char *col, char *buf,
                              size_t n)
{
    const char *hdr_end = strchr(text, '\n');
    cr_assert_not_null(hdr_end, "no table:\n%s", text);
    const char *h = strstr(text, col);
    cr_assert(h && h < hdr_end, "no column %s:\n%s", col, text);
    size_t off = (size_t)(h - text);
    char start[96];
    snprintf(start, sizeof start, "\n%s ", row);
    const char *line = strstr(text, start);
    cr_assert_not_null(line, "no row %s:\n%s", row, text);
    line++;
    const char *c = line + off, *e = c;
    while (*e && *e != ' ' && *e != '\n')
        e++;
    snprintf(buf, n, "%.*s", (int)(e - c), c);
    return buf;
}

/* Unknown stock is null in the API and `-` in the table, never 0 (issue 9, defect 6). */
Test(perkctl, products_show_unknown_stock_as_a_dash)
{
    start();
    char *out, *err, cell[32];
    const char *file = write_file("codes.csv", "code\nPKD-1\n");
    int rc = PK("ops-token", NULL, &out, &err, "import", file, "--supplier", "acme", "--sku",
                "test.card2", "--cost", "5.00");
    cr_assert_eq(rc, 0, "import: exit %d\n%s%s", rc, out, err);
    free(out), free(err);
    rc = PK("mall-token", NULL, &out, &err, "products");
    cr_assert_eq(rc, 0, "products: exit %d\n%s%s", rc, out, err);
    cr_assert_str_eq(table_cell(out, "test.topup", "AVAILABLE", cell, sizeof cell), "-",
                     "a recharge's stock is unknown:\n%s", out);
    cr_assert_str_eq(table_cell(out, "test.card", "AVAILABLE", cell, sizeof cell), "-",
                     "served by a supplier, no local code:\n%s", out);
    cr_assert_str_eq(table_cell(out, "test.card2", "AVAILABLE", cell, sizeof cell), "1",
                     "local stock is counted:\n%s", out);
    free(out), free(err);
    finish();
}

/* Supplier orders from perkctl (issue 13 item 6): --wait holds the request for
 * the supplier's final answer, so a supplier-served card SKU comes back with
 * its codes and the documented `--json order ... | jq '.order.codes[]'`
 * recipe has them; --account places a recharge, shown masked, never echoed. */
static const char *const SUPPLY_BODY =
    "suppliers:\n"
    "  - id: sandbox\n    plugin: sandbox\n    priority: 10\n    breaker_failures: 1000\n"
    "    config:\n      settle_ms: 1500\n      slow_ms: 800\n"
    "products:\n"
    "  - sku: sbx.topup\n    name: Sandbox top-up\n    brand: sandbox\n    category: telecom\n"
    "    delivery: recharge\n    face_value: \"50.00\"\n"
    "    offers:\n      - {supplier: sandbox, supplier_sku: sandbox.recharge, cost: \"49.00\"}\n"
    "  - sku: sbx.card.slow\n    name: Sandbox card (slow)\n    brand: sandbox\n"
    "    category: test\n    delivery: card_code\n    face_value: \"30.00\"\n"
    "    offers:\n      - {supplier: sandbox, supplier_sku: sandbox.card.slow, cost: \"28.00\"}\n";

Test(perkctl, order_wait_and_account_for_supplier_orders)
{
    h_setup_custom(&D, SUPPLY_BODY, NULL);
    cr_assert_eq(h_start(&D), 0);
    char *out, *err;
    /* without --wait the slow supplier has not answered: processing, no codes */
    int rc = PK("mall-token", NULL, &out, &err, "--json", "order", "--sku", "sbx.card.slow", "--id",
                "W-0");
    cr_assert_eq(rc, 0, "exit %d\n%s%s", rc, out, err);
    json_t *j = json_loads(out, 0, NULL);
    cr_assert_str_eq(h_str(json_object_get(j, "order"), "state"), "processing", "%s", out);
    cr_assert_null(json_object_get(json_object_get(j, "order"), "codes"), "%s", out);
    has(err, "order-get");
    json_decref(j);
    free(out), free(err);

    /* with --wait: the final answer and its codes, as the recipe reads them */
    rc = PK("mall-token", NULL, &out, &err, "--json", "order", "--sku", "sbx.card.slow", "--id",
            "W-1", "--wait", "10");
    cr_assert_eq(rc, 0, "exit %d\n%s%s", rc, out, err);
    j = json_loads(out, 0, NULL);
    json_t *o = json_object_get(j, "order");
    cr_assert_str_eq(h_str(o, "state"), "succeeded", "%s", out);
    cr_assert_eq(json_array_size(json_object_get(o, "codes")), 1, "%s", out);
    cr_assert(strlen(h_str(json_array_get(json_object_get(o, "codes"), 0), "code")) > 0);
    cr_assert_str_eq(err, "");
    json_decref(j);
    free(out), free(err);

    /* a recharge: --account, shown masked; the account never printed */
    rc = PK("mall-token", NULL, &out, &err, "order", "--sku", "sbx.topup", "--id", "T-1",
            "--account", "13800000001", "--wait", "10");
    cr_assert_eq(rc, 0, "exit %d\n%s%s", rc, out, err);
    has_kv(out, "state", "succeeded");
    has_kv(out, "delivery", "recharge");
    has(out, "\naccount:");
    lacks(out, "13800000001");
    lacks(err, "13800000001");
    free(out), free(err);
    /* refused by the supplier: exit 1 with the reason */
    rc = PK("mall-token", NULL, &out, &err, "order", "--sku", "sbx.topup", "--id", "T-2",
            "--account", "13800000002", "--wait", "10");
    cr_assert_eq(rc, 1, "exit %d\n%s%s", rc, out, err);
    has_kv(out, "state", "failed");
    has_kv(out, "reason", "invalid_account");
    lacks(out, "13800000002");
    lacks(err, "13800000002");
    free(out), free(err);

    /* usage errors exit 2 and never echo the account */
    struct {
        const char *args[12];
        const char *says;
    } bad[] = {
        {{"order", "--sku", "sbx.topup", "--id", "U-1", "--wait", "-1"}, "--wait: expected"},
        {{"order", "--sku", "sbx.topup", "--id", "U-2", "--wait", "soon"}, "--wait: expected"},
        {{"--timeout", "5", "order", "--sku", "sbx.topup", "--id", "U-3", "--wait", "5"},
         "raise --timeout"},
        {{"order", "--sku", "sbx.topup", "--id", "U-4", "--account", ""}, "--account: must not"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *argv[16] = {h_bin("PH_PERKCTL")};
        size_t n = 1;
        for (size_t k = 0; bad[i].args[k]; k++)
            argv[n++] = bad[i].args[k];
        argv[n] = NULL;
        char env_url[128];
        snprintf(env_url, sizeof env_url, "PERKHUB_URL=http://127.0.0.1:%u", D.port);
        const char *env[] = {env_url, "PERKHUB_TOKEN=mall-token", NULL};
        rc = h_run(argv, env, NULL, 0, &out, &err);
        cr_assert_eq(rc, 2, "case %zu: exit %d\n%s%s", i, rc, out, err);
        has(err, bad[i].says);
        free(out), free(err);
    }
    /* the server's bounds: a wait over limits.max_order_wait_s, a recharge
     * without an account; each named, exit 1 */
    rc = PK("mall-token", NULL, &out, &err, "--timeout", "120", "order", "--sku", "sbx.topup",
            "--id", "S-1", "--account", "13800000001", "--wait", "100");
    cr_assert_eq(rc, 1, "exit %d\n%s%s", rc, out, err);
    has(err, "wait");
    lacks(err, "13800000001");
    free(out), free(err);
    rc = PK("mall-token", NULL, &out, &err, "order", "--sku", "sbx.topup", "--id", "S-2");
    cr_assert_eq(rc, 1, "exit %d\n%s%s", rc, out, err);
    has(err, "account");
    free(out), free(err);
    /* the mall reads its own orders' events, without supplier or cost */
    rc = PK("mall-token", NULL, &out, &err, "events");
    cr_assert_eq(rc, 0, "exit %d\n%s%s", rc, out, err);
    has(out, "order.succeeded  order_id=");
    has(out, "client_order_id=T-1");
    lacks(out, "supplier=");
    lacks(out, "cost_fen=");
    lacks(out, "product.updated");
    free(out), free(err);
    finish();
}
