/*
 * Risk rules and lists as data, against a real perkhubd (issue 15, item 3):
 *   - rules: create (201; 409 when it exists), read, replace with and without
 *     the version it replaces (409 on a stale one, 404 when missing), versions
 *     (the history survives a removal), remove (404 the second time);
 *   - bad input: an unknown variable, a negative window, an unknown member, a
 *     negative limit, a body id other than the path's: 400 naming the field,
 *     nothing stored;
 *   - lists: add (the value hashed and masked, never echoed), list, filter,
 *     remove by key; bad list / variable / value refused naming the field;
 *   - every change audited (risk.rule_create, ...) and evented
 *     (risk.rule_changed, risk.list_changed), ops scope only;
 *   - the metrics show the rules in force; a restart keeps rules and lists.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static h_daemon D;

static void teardown(void)
{
    h_leftover(&D);
}

TestSuite(risk_rules, .fini = teardown, .timeout = 120);

static h_resp req(const char *method, const char *path, const char *body)
{
    h_resp r;
    cr_assert_eq(h_http(&D, method, path, "ops-token", body ? "application/json" : NULL, body,
                        body ? strlen(body) : 0, &r),
                 0, "%s %s", method, path);
    return r;
}

static void expect(const char *method, const char *path, const char *body, long status,
                   const char *needle)
{
    h_resp r = req(method, path, body);
    cr_assert_eq(r.status, status, "%s %s: %ld %s", method, path, r.status, r.body);
    if (needle)
        cr_assert(strstr(r.body, needle), "%s %s: no '%s' in %s", method, path, needle, r.body);
    h_resp_free(&r);
}

static long count_events(const char *type)
{
    h_resp r = h_get(&D, "/v1/events?after=0&limit=1000", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    long n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(r.json, "events"), i, e)
    {
        const char *t = json_string_value(json_object_get(e, "type"));
        n += t && !strcmp(t, type);
    }
    h_resp_free(&r);
    return n;
}

static long count_audit(const char *action)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/audit?action=%s&limit=1000", action);
    h_resp r = h_get(&D, path, "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    long n = (long)json_array_size(json_object_get(r.json, "audit"));
    h_resp_free(&r);
    return n;
}

#define RULE5                                                                                      \
    "{\"id\":\"newuser.5\",\"variable\":\"user\",\"scope\":{\"tag\":\"campaign=newuser\"},"        \
    "\"limit\":5,\"window_s\":43200,\"action\":\"deny\",\"note\":\"new-user gift\"}"

Test(risk_rules, crud_versions_conflicts_audit_events_and_restart)
{
    h_setup(&D, NULL);
    cr_assert_eq(h_start(&D), 0);

    /* ops scope only */
    h_resp m = h_post_json(&D, "/v1/risk/rules", "mall-token", RULE5);
    cr_assert_eq(m.status, 403, "%s", m.body);
    h_resp_free(&m);

    expect("GET", "/v1/risk/rules", NULL, 200, "\"rules\":[]");
    expect("POST", "/v1/risk/rules", RULE5, 201, "\"version\":1");
    expect("POST", "/v1/risk/rules", RULE5, 409, "exists");
    expect("GET", "/v1/risk/rules", NULL, 200, "\"id\":\"newuser.5\"");

    /* replace: with the version it replaces, then a stale one, then none */
    const char *v2 = "{\"variable\":\"user\",\"scope\":{\"tag\":\"campaign=newuser\"},"
                     "\"limit\":3,\"window_s\":43200,\"action\":\"review\",\"version\":1}";
    expect("PUT", "/v1/risk/rules/newuser.5", v2, 200, "\"version\":2");
    expect("PUT", "/v1/risk/rules/newuser.5", v2, 409, "version 2, not 1");
    const char *v3 = "{\"id\":\"newuser.5\",\"variable\":\"user\",\"limit\":4,\"window_s\":60,"
                     "\"action\":\"deny\",\"mode\":\"dry_run\"}";
    expect("PUT", "/v1/risk/rules/newuser.5", v3, 200, "\"mode\":\"dry_run\"");
    expect("PUT", "/v1/risk/rules/nope", v3, 400, "id: the body names another rule");
    const char *v4 = "{\"variable\":\"ip\",\"limit\":4,\"window_s\":60,\"action\":\"deny\"}";
    expect("PUT", "/v1/risk/rules/nope", v4, 404, "no risk rule nope");

    /* bad input names the field and stores nothing */
    expect("POST", "/v1/risk/rules",
           "{\"id\":\"bad\",\"variable\":\"foo\",\"limit\":1,\"window_s\":60,\"action\":\"deny\"}",
           400,
           "variable: unknown 'foo' (expected user, ip, ip24, device, account, phone, client)");
    expect(
        "POST", "/v1/risk/rules",
        "{\"id\":\"bad\",\"variable\":\"user\",\"limit\":1,\"window_s\":-60,\"action\":\"deny\"}",
        400, "window_s: expected 1..2592000 seconds");
    expect(
        "POST", "/v1/risk/rules",
        "{\"id\":\"bad\",\"variable\":\"user\",\"limit\":-1,\"window_s\":60,\"action\":\"deny\"}",
        400, "limit: expected an integer >= 0");
    expect("POST", "/v1/risk/rules",
           "{\"id\":\"bad\",\"variable\":\"user\",\"limit\":1,\"window_s\":60,\"action\":\"deny\","
           "\"13800138000\":1}",
           400, "body: unknown field");
    expect("POST", "/v1/risk/rules",
           "{\"id\":\"bad\",\"variable\":\"user\",\"limit\":1,\"window_s\":60,\"action\":\"deny\","
           "\"version\":3}",
           400, "version:");
    h_resp r = req("POST", "/v1/risk/rules",
                   "{\"id\":\"bad\",\"variable\":\"user\",\"limit\":1,\"window_s\":60,\"action\":"
                   "\"deny\",\"13800138000\":1}");
    cr_assert_null(strstr(r.body, "13800138000"), "an unknown field is never quoted: %s", r.body);
    h_resp_free(&r);
    expect("GET", "/v1/risk/rules/bad/versions", NULL, 404, NULL);

    /* a related rule, and the versions of the first */
    expect("POST", "/v1/risk/rules",
           "{\"id\":\"rel\",\"kind\":\"related\",\"variables\":[\"device\",\"ip\",\"account\"],"
           "\"window_s\":86400,\"action\":\"review\",\"priority\":50}",
           201, "\"variables\":[\"ip\",\"device\",\"account\"]");
    r = req("GET", "/v1/risk/rules/newuser.5/versions", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *vs = json_object_get(r.json, "versions");
    cr_assert_eq(json_array_size(vs), 3);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(vs, 0), "limit")), 5);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(vs, 2), "version")), 3);
    h_resp_free(&r);

    /* lists: the value is hashed and masked, never echoed */
    r = req("POST", "/v1/risk/lists",
            "{\"list\":\"block\",\"variable\":\"phone\",\"value\":\"+8613800138000\","
            "\"ttl_s\":3600,\"note\":\"farm\"}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert_null(strstr(r.body, "13800138000"), "%s", r.body);
    json_t *entry = json_object_get(r.json, "entry");
    cr_assert_str_eq(json_string_value(json_object_get(entry, "masked")), "861****8000");
    char key[17];
    snprintf(key, sizeof key, "%s", json_string_value(json_object_get(entry, "key")));
    cr_assert_eq(strlen(key), 16);
    h_resp_free(&r);
    expect("POST", "/v1/risk/lists",
           "{\"list\":\"allow\",\"variable\":\"ip\",\"value\":\"203.0.113.9\"}", 201,
           "\"masked\":\"203.0.113.*\"");
    expect("POST", "/v1/risk/lists",
           "{\"list\":\"grey\",\"variable\":\"ip\",\"value\":\"1.2.3.4\"}", 400,
           "list: expected block or allow");
    expect("POST", "/v1/risk/lists",
           "{\"list\":\"block\",\"variable\":\"email\",\"value\":\"a@b.c\"}", 400, "variable:");
    r = req("POST", "/v1/risk/lists",
            "{\"list\":\"block\",\"variable\":\"phone\",\"value\":\"12ab5678901\"}");
    cr_assert_eq(r.status, 400, "%s", r.body);
    cr_assert(strstr(r.body, "value: phone: expected 5-20 digits"), "%s", r.body);
    cr_assert_null(strstr(r.body, "12ab5678901"), "%s", r.body);
    h_resp_free(&r);
    expect("POST", "/v1/risk/lists",
           "{\"list\":\"block\",\"variable\":\"ip\",\"value\":\"1.2.3.4\",\"ttl_s\":0}", 400,
           "ttl_s:");
    expect("GET", "/v1/risk/lists?list=block", NULL, 200, "\"variable\":\"phone\"");
    r = req("GET", "/v1/risk/lists?list=allow", NULL);
    cr_assert_eq(json_array_size(json_object_get(r.json, "entries")), 1, "%s", r.body);
    h_resp_free(&r);
    expect("GET", "/v1/risk/lists?list=grey", NULL, 400, "list:");
    expect("DELETE", "/v1/risk/lists/block/phone/XYZ", NULL, 400, "key:");
    expect("DELETE", "/v1/risk/lists/block/phone/0000000000000001", NULL, 404, NULL);

    /* the metrics show what is in force */
    r = h_get(&D, "/metrics", "ops-token");
    cr_assert(strstr(r.body, "perkhub_risk_rules 2"), "%s", r.body);
    cr_assert(strstr(r.body, "perkhub_risk_list_entries 2"));
    h_resp_free(&r);

    /* a restart keeps rules and lists */
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    cr_assert_eq(h_start(&D), 0);
    expect("GET", "/v1/risk/rules", NULL, 200, "\"id\":\"rel\"");
    r = h_get(&D, "/metrics", "ops-token");
    cr_assert(strstr(r.body, "perkhub_risk_rules 2"), "the rules were loaded at start");
    cr_assert(strstr(r.body, "perkhub_risk_list_entries 2"));
    h_resp_free(&r);
    char path[96];
    snprintf(path, sizeof path, "/v1/risk/lists/block/phone/%s", key);
    expect("DELETE", path, NULL, 200, "\"removed\":true");
    expect("DELETE", path, NULL, 404, NULL);

    /* remove a rule: gone, its history kept, gone twice is a 404 */
    expect("DELETE", "/v1/risk/rules/newuser.5?version=2", NULL, 409, "version 3, not 2");
    expect("DELETE", "/v1/risk/rules/newuser.5", NULL, 200, "\"removed\":true");
    expect("DELETE", "/v1/risk/rules/newuser.5", NULL, 404, NULL);
    expect("GET", "/v1/risk/rules/newuser.5/versions", NULL, 200, "\"removed\":true");
    r = h_get(&D, "/metrics", "ops-token");
    cr_assert(strstr(r.body, "perkhub_risk_rules 1"), "the removal is in force at once");
    h_resp_free(&r);

    /* audited and evented: every applied change, nothing for refusals */
    cr_assert_eq(count_audit("risk.rule_create"), 2);
    cr_assert_eq(count_audit("risk.rule_update"), 2);
    cr_assert_eq(count_audit("risk.rule_remove"), 1);
    cr_assert_eq(count_audit("risk.list_add"), 2);
    cr_assert_eq(count_audit("risk.list_remove"), 1);
    cr_assert_eq(count_events("risk.rule_changed"), 5);
    cr_assert_eq(count_events("risk.list_changed"), 3);
    /* the mall's feed has none of them */
    r = h_get(&D, "/v1/events?after=0&limit=1000", "mall-token");
    cr_assert_null(strstr(r.body, "risk."), "%s", r.body);
    h_resp_free(&r);

    /* nothing personal in the log or the store */
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    char file[400];
    snprintf(file, sizeof file, "%s/data.mdb", D.data);
    cr_assert_eq(h_file_count(file, "13800138000"), 0);
    cr_assert_eq(h_file_count(file, "203.0.113.9"), 0);
    cr_assert_eq(h_file_count(D.log, "13800138000"), 0);
    cr_assert_eq(h_file_count(D.log, "203.0.113.9"), 0);
    h_cleanup(&D);
}

/* perkctl risk with the ops token; stdin from in; arguments up to NULL. */
static int pk(const char *in, char **out, char **err, ...)
{
    const char *argv[16] = {h_bin("PH_PERKCTL"), "risk"};
    size_t n = 2;
    va_list ap;
    va_start(ap, err);
    for (const char *a; (a = va_arg(ap, const char *));)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    char env_url[128];
    snprintf(env_url, sizeof env_url, "PERKHUB_URL=http://127.0.0.1:%u", D.port);
    const char *env[] = {env_url, "PERKHUB_TOKEN=ops-token", NULL};
    return h_run(argv, env, in, in ? strlen(in) : 0, out, err);
}

Test(risk_rules, perkctl_risk)
{
    h_setup(&D, NULL);
    cr_assert_eq(h_start(&D), 0);
    char *out = NULL, *err = NULL;
    /* set creates, then replaces; a stale --version is refused */
    cr_assert_eq(pk(RULE5, &out, &err, "set", "-", NULL), 0, "%s", err);
    cr_assert(strstr(out, "rule newuser.5 created (version 1)"), "%s", out);
    free(out), free(err);
    cr_assert_eq(pk("{\"id\":\"newuser.5\",\"variable\":\"user\",\"limit\":2,\"window_s\":600,"
                    "\"action\":\"review\"}",
                    &out, &err, "set", "-", "--version", "1", NULL),
                 0, "%s", err);
    cr_assert(strstr(out, "updated (version 2)"), "%s", out);
    free(out), free(err);
    cr_assert_eq(pk(RULE5, &out, &err, "set", "-", "--version", "1", NULL), 1);
    cr_assert(strstr(err, "version 2, not 1"), "%s", err);
    free(out), free(err);
    cr_assert_eq(pk("{\"id\":\"x\",\"variable\":\"foo\",\"limit\":1,\"window_s\":1,\"action\":"
                    "\"deny\"}",
                    &out, &err, "set", "-", NULL),
                 1);
    cr_assert(strstr(err, "variable: unknown 'foo'"), "%s", err);
    free(out), free(err);
    cr_assert_eq(pk(NULL, &out, &err, "rules", NULL), 0, "%s", err);
    cr_assert(strstr(out, "newuser.5") && strstr(out, "2 orders / 600s"), "%s", out);
    free(out), free(err);
    cr_assert_eq(pk(NULL, &out, &err, "versions", "newuser.5", NULL), 0, "%s", err);
    cr_assert(strstr(out, "5 orders / 43200s"), "%s", out);
    free(out), free(err);
    /* lists: the value from stdin, shown masked only */
    cr_assert_eq(pk("13800138000\n", &out, &err, "block", "phone", "-", "--ttl", "3600", NULL), 0,
                 "%s", err);
    cr_assert(strstr(out, "block list: phone 138****8000 (key "), "%s", out);
    cr_assert_null(strstr(out, "13800138000"));
    char key[17] = "";
    const char *k = strstr(out, "(key ");
    cr_assert(k);
    memcpy(key, k + 5, 16);
    free(out), free(err);
    cr_assert_eq(pk(NULL, &out, &err, "lists", "--list", "block", NULL), 0, "%s", err);
    cr_assert(strstr(out, key) && strstr(out, "138****8000"), "%s", out);
    free(out), free(err);
    cr_assert_eq(pk(NULL, &out, &err, "unlist", "block", "phone", key, NULL), 0, "%s", err);
    free(out), free(err);
    cr_assert_eq(pk(NULL, &out, &err, "unlist", "block", "phone", key, NULL), 1);
    free(out), free(err);
    cr_assert_eq(pk(NULL, &out, &err, "unlist", "block", "phone", "xyz", NULL), 2);
    free(out), free(err);
    cr_assert_eq(pk(NULL, &out, &err, "remove", "newuser.5", "--version", "2", NULL), 0, "%s", err);
    cr_assert(strstr(out, "rule newuser.5 removed"), "%s", out);
    free(out), free(err);
    cr_assert_eq(pk(NULL, &out, &err, "frobnicate", NULL), 2);
    free(out), free(err);
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    h_cleanup(&D);
}
