/*
 * test_audit.c — the audit trail end to end: every ops action that exists
 * (a CSV import, a batch void, a config reload on SIGHUP) leaves exactly one
 * record naming the token's client, the peer and the request id the response
 * carried; a refused action leaves none; the record is in the same commit as
 * the change, so it survives kill -9; GET /v1/audit filters and pages, and
 * refuses a bad filter naming it; perkctl audit prints it.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static h_daemon D;

static void teardown(void)
{
    h_leftover(&D);
}

TestSuite(audit, .fini = teardown);

/* GET /v1/audit?query as ops: the "audit" array (caller json_decref's); asserts 200. */
static json_t *audit_get(const char *query)
{
    char path[512];
    snprintf(path, sizeof path, "/v1/audit%s%s", query && *query ? "?" : "", query ? query : "");
    h_resp r = h_get(&D, path, "ops-token");
    cr_assert_eq(r.status, 200, "GET %s: %ld %s", path, r.status, r.body);
    cr_assert_null(strstr(r.body, "AUD-"), "the trail holds a code: %s", r.body);
    cr_assert_null(strstr(r.body, "ops-token"), "the trail holds a token: %s", r.body);
    json_t *list = json_incref(json_object_get(r.json, "audit"));
    cr_assert(json_is_array(list), "%s", r.body);
    h_resp_free(&r);
    return list;
}

static size_t audit_count(const char *query)
{
    json_t *l = audit_get(query);
    size_t n = json_array_size(l);
    json_decref(l);
    return n;
}

/* The record is the ops client's, from loopback, with the request id the
 * response carried. */
static void assert_who(json_t *rec, const h_resp *r, const char *action)
{
    char reqid[64];
    cr_assert_not_null(h_header(r, "X-Request-Id", reqid, sizeof reqid));
    cr_assert_str_eq(h_str(rec, "action"), action);
    cr_assert_str_eq(h_str(rec, "client"), "ops");
    cr_assert_str_eq(h_str(rec, "peer"), "127.0.0.1");
    cr_assert_str_eq(h_str(rec, "request_id"), reqid, "the response's X-Request-Id");
    cr_assert_str_eq(h_str(rec, "via"), "http");
}

Test(audit, each_ops_action_leaves_one_record_that_survives_kill_9)
{
    h_setup(&D, NULL);
    cr_assert_eq(h_start(&D), 0);
    cr_assert_eq(audit_count(NULL), 0, "a start is no ops action");

    /* an import: one record; a refused import (a code stored before): none */
    h_resp imp = h_import(&D, "test.card", "code\nAUD-1\nAUD-2\nAUD-3\n", 201);
    long long batch = h_int(json_object_get(imp.json, "batch"), "id");
    h_resp r = h_import(&D, "test.card", "code\nAUD-9\nAUD-2\n", 422);
    h_resp_free(&r);
    json_t *list = audit_get(NULL);
    cr_assert_eq(json_array_size(list), 1);
    json_t *rec = json_array_get(list, 0);
    assert_who(rec, &imp, "batch.import");
    json_t *what = json_object_get(rec, "what");
    cr_assert_str_eq(h_str(what, "supplier"), "acme");
    cr_assert_str_eq(h_str(what, "sku"), "test.card");
    cr_assert_eq(h_int(json_object_get(rec, "result"), "batch_id"), batch);
    cr_assert_eq(h_int(json_object_get(rec, "result"), "codes"), 3);
    /* the events it wrote are the feed's batch.imported */
    long long ev = h_int(json_object_get(rec, "events"), "first");
    char path[128];
    snprintf(path, sizeof path, "/v1/events?after=%lld&limit=1", ev - 1);
    r = h_get(&D, path, "ops-token");
    cr_assert_str_eq(h_str(json_array_get(json_object_get(r.json, "events"), 0), "type"),
                     "batch.imported");
    h_resp_free(&r);
    json_decref(list);
    h_resp_free(&imp);

    /* a void with the caller's own request id; voiding again is refused: no record */
    snprintf(path, sizeof path, "/v1/batches/%lld/void", batch);
    h_resp vd;
    const char *reason = "{\"reason\":\"AUD-1 recalled\"}";
    cr_assert_eq(h_http_hdr(&D, "POST", path, "ops-token", "application/json",
                            "X-Request-Id: my-void-1", reason, strlen(reason), &vd),
                 0);
    cr_assert_eq(vd.status, 200, "%s", vd.body);
    r = h_post_json(&D, path, "ops-token", "{}");
    cr_assert_eq(r.status, 409, "%s", r.body);
    h_resp_free(&r);
    snprintf(path, sizeof path, "/v1/batches/%lld/void", batch + 100);
    r = h_post_json(&D, path, "ops-token", "{}");
    cr_assert_eq(r.status, 404, "%s", r.body);
    h_resp_free(&r);
    list = audit_get("action=batch.void");
    cr_assert_eq(json_array_size(list), 1, "one void applied");
    rec = json_array_get(list, 0);
    assert_who(rec, &vd, "batch.void");
    cr_assert_str_eq(h_str(rec, "request_id"), "my-void-1");
    cr_assert_eq(h_int(json_object_get(rec, "what"), "batch_id"), batch);
    cr_assert_eq(h_int(json_object_get(rec, "result"), "voided_codes"), 3);
    json_decref(list);
    h_resp_free(&vd);

    /* kill -9 right after the answer: the record was in the change's commit */
    cr_assert_eq(kill(D.pid, SIGKILL), 0);
    waitpid(D.pid, NULL, 0);
    D.pid = 0;
    cr_assert_eq(h_start(&D), 0, "restart after kill -9");
    list = audit_get(NULL);
    cr_assert_eq(json_array_size(list), 2);
    cr_assert_str_eq(h_str(json_array_get(list, 1), "action"), "batch.void");
    cr_assert_eq(h_int(json_array_get(list, 1), "id"), 2);
    json_decref(list);
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    char *out = NULL;
    cr_assert_eq(h_check_store(&D, &out), 0, "%s", out);
    free(out);
    h_cleanup(&D);
}

Test(audit, a_reload_records_what_changed_by_name)
{
    h_setup(&D, NULL);
    cr_assert_eq(h_start(&D), 0);
    char *base = h_config_text(&D, NULL);
    char *off = h_replace(base, "  - id: acme\n    plugin: manual\n    priority: 10\n",
                          "  - id: acme\n    plugin: manual\n    priority: 10\n"
                          "    enabled: false\n");
    char *cheaper = h_replace(off, "cost: \"49.00\"", "cost: \"48.00\"");
    size_t n = strlen(cheaper) + 256;
    char *text = malloc(n);
    snprintf(text, n,
             "%s  - sku: test.new\n    name: New card\n    brand: b\n    category: c\n"
             "    delivery: card_code\n    face_value: \"20.00\"\n",
             cheaper);
    h_write_config_text(&D, text);
    free(text), free(cheaper), free(off), free(base);

    cr_assert_eq(kill(D.pid, SIGHUP), 0);
    cr_assert_eq(h_log_wait(&D, "msg=config.reloaded", 1, 10000), 0);
    json_t *list = audit_get("action=config.reload");
    cr_assert_eq(json_array_size(list), 1);
    json_t *rec = json_array_get(list, 0);
    cr_assert_str_eq(h_str(rec, "via"), "signal");
    cr_assert(json_is_null(json_object_get(rec, "client")), "a signal has no client");
    cr_assert(json_is_null(json_object_get(rec, "peer")));
    cr_assert(json_is_null(json_object_get(rec, "request_id")));
    json_t *what = json_object_get(rec, "what");
    char b[2048];
    json_t *sup = json_object_get(what, "suppliers"), *prod = json_object_get(what, "products");
    cr_assert_eq(json_array_size(json_object_get(sup, "disabled")), 1, "%s", h_dump(what, b, 2048));
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(sup, "disabled"), 0)),
                     "acme");
    cr_assert_null(json_object_get(sup, "changed"), "only enabled moved: %s",
                   h_dump(what, b, 2048));
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(prod, "added"), 0)),
                     "test.new");
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(prod, "changed"), 0)),
                     "test.topup", "%s", h_dump(what, b, 2048));
    cr_assert_null(json_object_get(what, "clients"));
    cr_assert_null(strstr(h_dump(what, b, 2048), "48.00"), "names only, never values");
    json_decref(list);

    /* the same file again: a reload that changed nothing is still recorded */
    cr_assert_eq(kill(D.pid, SIGHUP), 0);
    cr_assert_eq(h_log_wait(&D, "msg=config.reloaded", 2, 10000), 0);
    list = audit_get("action=config.reload");
    cr_assert_eq(json_array_size(list), 2);
    cr_assert_eq(json_object_size(json_object_get(json_array_get(list, 1), "what")), 0);
    json_decref(list);
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    h_cleanup(&D);
}

static void expect_400(const char *query, const char *field)
{
    char path[512];
    snprintf(path, sizeof path, "/v1/audit?%s", query);
    h_resp r = h_get(&D, path, "ops-token");
    cr_assert_eq(r.status, 400, "%s: %ld %s", query, r.status, r.body);
    const char *msg = h_str(r.json, "message");
    cr_assert(!strncmp(msg, field, strlen(field)), "%s: '%s' does not name %s", query, msg, field);
    h_resp_free(&r);
}

Test(audit, filters_pages_and_bad_filters)
{
    h_setup(&D, NULL);
    cr_assert_eq(h_start(&D), 0);
    for (int i = 0; i < 3; i++) {
        char csv[64];
        snprintf(csv, sizeof csv, "code\nAUD-F%d\n", i);
        h_resp r = h_import(&D, "test.card", csv, 201);
        h_resp_free(&r);
    }
    cr_assert_eq(audit_count("client=ops"), 3);
    cr_assert_eq(audit_count("client=mall"), 0);
    cr_assert_eq(audit_count("action=batch.import&from=2000-01-01T00:00:00Z"), 3);
    cr_assert_eq(audit_count("to=2000-01-01T00:00:00Z"), 0);
    cr_assert_eq(audit_count("after=1"), 2);

    h_resp r = h_get(&D, "/v1/audit?limit=2", "ops-token");
    cr_assert_eq(r.status, 200);
    cr_assert_eq(json_array_size(json_object_get(r.json, "audit")), 2);
    cr_assert_eq(h_int(r.json, "next_after"), 2);
    cr_assert(json_is_true(json_object_get(r.json, "more")));
    h_resp_free(&r);

    expect_400("from=yesterday", "from:");
    expect_400("from=2026-12-06", "from:"); /* a date alone is not an instant */
    expect_400("to=2026-13-01T00:00:00Z", "to:");
    expect_400("from=2026-12-06T10:00:00Z&to=2026-12-06T09:00:00Z", "to:");
    expect_400("client=a%20b", "client:");
    expect_400("action=Batch.Void", "action:");
    expect_400("limit=0", "limit:");
    expect_400("after=x", "after:");
    expect_400("actor=ops", "query:");
    r = h_get(&D, "/v1/audit", "mall-token");
    cr_assert_eq(r.status, 403, "ops scope only: %ld %s", r.status, r.body);
    h_resp_free(&r);

    /* perkctl audit: the same filters, one line per record */
    char url[64], tok[64] = "PERKHUB_TOKEN=ops-token";
    snprintf(url, sizeof url, "PERKHUB_URL=http://127.0.0.1:%u", D.port);
    const char *env[] = {url, tok, NULL};
    const char *argv[] = {h_bin("PH_PERKCTL"), "audit", "--action", "batch.import",
                          "--limit",           "2",     NULL};
    char *out = NULL, *err = NULL;
    cr_assert_eq(h_run(argv, env, NULL, 0, &out, &err), 0, "%s%s", out, err);
    cr_assert(strstr(out, "1  ") == out, "%s", out);
    cr_assert(strstr(out, "batch.import  client=ops peer=127.0.0.1 request_id="), "%s", out);
    cr_assert_eq(h_mem_count(out, strlen(out), "\n"), 2, "--limit 2: %s", out);
    free(out), free(err);
    const char *bad[] = {h_bin("PH_PERKCTL"), "audit", "--from", "yesterday", NULL};
    cr_assert_eq(h_run(bad, env, NULL, 0, &out, &err), 1, "%s%s", out, err);
    cr_assert(strstr(err, "from:"), "%s", err);
    free(out), free(err);
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    h_cleanup(&D);
}
