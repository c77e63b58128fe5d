/*
 * test_store_risk.c — risk rules and lists as data (store_risk_rules.c):
 * RISK_RULE create / update / remove with versions and history, expect_version
 * conflicts, refusals that change nothing, RISK_LIST add / replace / remove,
 * the events and audit records, the load the engine is fed from (with its
 * generation), the journal codec round trip, and a reopen keeping it all.
 */
#include "store_fixture.h"

#include "risk/risk.h"
#include "store/cmd_codec.h"

TestSuite(store_risk, .init = fixture_setup, .fini = fixture_teardown);

static const ph_audit OPS = {.action = "risk.rule_create",
                             .client = "ops",
                             .peer = "127.0.0.1",
                             .request_id = "req-1",
                             .via = "api",
                             .what = "{\"rule\":\"five\"}"};

static const char *const RULE5 = "{\"id\":\"five\",\"variable\":\"user\",\"limit\":5,"
                                 "\"window_s\":43200,\"action\":\"deny\"}";

static int rule_cmd(const char *id, const char *json, int remove, uint32_t expect, int64_t now,
                    uint32_t *version, ph_err *err)
{
    ph_cmd c = {.type = PH_CMD_RISK_RULE, .now = now, .audit = &OPS};
    c.in.risk_rule.id = id;
    c.in.risk_rule.json = json;
    c.in.risk_rule.remove = remove;
    c.in.risk_rule.expect_version = expect;
    int rc = ph_store_exec(g_s, &c);
    if (version)
        *version = c.rule_version;
    if (err)
        *err = c.err;
    ph_cmd_clear(&c);
    return rc;
}

static int list_cmd(int remove, int list, int var, uint64_t key, int64_t expires_at,
                    const char *masked, ph_err *err)
{
    ph_cmd c = {.type = PH_CMD_RISK_LIST, .now = NOW};
    c.in.risk_list.remove = remove;
    c.in.risk_list.list = list;
    c.in.risk_list.var = var;
    c.in.risk_list.key = key;
    c.in.risk_list.expires_at = expires_at;
    c.in.risk_list.masked = masked;
    c.in.risk_list.note = "promo abuse";
    int rc = ph_store_exec(g_s, &c);
    if (err)
        *err = c.err;
    ph_cmd_clear(&c);
    return rc;
}

Test(store_risk, rules_are_created_versioned_and_removed_with_history)
{
    g_s = open_at(g_dir, 0);
    uint64_t ev0 = last_event();
    uint32_t ver = 0;
    ph_err err = {0};
    cr_assert_eq(rule_cmd("five", RULE5, 0, 0, NOW, &ver, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ver, 1);
    /* an update: version 2, created_at kept; a caller's version/times are not kept */
    const char *v2 = "{\"id\":\"five\",\"variable\":\"user\",\"limit\":3,\"window_s\":43200,"
                     "\"action\":\"review\",\"version\":77,\"created_at\":5}";
    cr_assert_eq(rule_cmd("five", v2, 0, 1, NOW + 1000, &ver, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ver, 2);
    ph_risk_rule r;
    cr_assert_eq(ph_store_risk_rule_get(g_s, "five", &r, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(r.version, 2);
    cr_assert_eq(r.limit, 3);
    cr_assert_eq(r.created_at, NOW);
    cr_assert_eq(r.updated_at, NOW + 1000);
    /* a stale expect_version: a conflict naming both versions, nothing changed */
    cr_assert_eq(rule_cmd("five", RULE5, 0, 1, NOW + 2000, NULL, &err), PH_ECONFLICT);
    cr_assert(strstr(err.msg, "version 2, not 1"), "%s", err.msg);
    /* refusals change nothing */
    cr_assert_eq(rule_cmd("five", "{\"id\":\"five\",\"variable\":\"foo\"}", 0, 0, NOW, NULL, &err),
                 PH_EINVAL);
    cr_assert(strstr(err.msg, "variable: unknown 'foo'"), "%s", err.msg);
    cr_assert_eq(rule_cmd("other", RULE5, 0, 0, NOW, NULL, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "id:"), "%s", err.msg);
    cr_assert_eq(rule_cmd("five", "[]", 0, 0, NOW, NULL, &err), PH_EINVAL);
    cr_assert_eq(rule_cmd("Bad Id", RULE5, 0, 0, NOW, NULL, &err), PH_EINVAL);
    cr_assert_eq(rule_cmd("nope", NULL, 1, 0, NOW, NULL, &err), PH_ENOTFOUND);
    cr_assert_eq(ph_store_risk_rule_get(g_s, "five", &r, &err), PH_OK);
    cr_assert_eq(r.version, 2);
    /* remove: gone from the rules, its history stays; created again it goes on */
    cr_assert_eq(rule_cmd("five", NULL, 1, 2, NOW + 3000, &ver, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ver, 2);
    cr_assert_eq(ph_store_risk_rule_get(g_s, "five", &r, &err), PH_ENOTFOUND);
    cr_assert_eq(rule_cmd("five", RULE5, 0, 0, NOW + 4000, &ver, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ver, 3, "versions are never reused");
    ph_risk_rule *vs = NULL;
    size_t n = 0;
    cr_assert_eq(ph_store_risk_rule_versions(g_s, "five", &vs, &n, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(n, 3);
    cr_assert_eq(vs[0].version, 1);
    cr_assert_eq(vs[0].limit, 5);
    cr_assert_eq(vs[1].limit, 3);
    cr_assert_eq(vs[2].created_at, NOW + 4000, "a new rule after a removal starts counting anew");
    free(vs);
    cr_assert_eq(ph_store_risk_rule_versions(g_s, "fiv", &vs, &n, &err), PH_ENOTFOUND);

    /* the events: one per change, in order */
    json_t *evs = events_after_without(ev0, NULL);
    cr_assert_eq(json_array_size(evs), 4);
    static const char *const changes[] = {"created", "updated", "removed", "created"};
    for (size_t i = 0; i < 4; i++) {
        json_t *e = json_array_get(evs, i);
        cr_assert_str_eq(ev_str(e, "type"), "risk.rule_changed");
        cr_assert_str_eq(ev_str(e, "rule"), "five");
        cr_assert_str_eq(ev_str(e, "change"), changes[i]);
    }
    json_decref(evs);
    /* the audit records: only the applied commands */
    ph_audit_filter f = {0};
    char **recs = NULL;
    size_t nrec = 0;
    uint64_t next = 0;
    int more = 0;
    cr_assert_eq(ph_store_audit_list(g_s, &f, 0, 100, 0, &recs, &nrec, &next, &more, &err), PH_OK,
                 "%s", err.msg);
    cr_assert_eq(nrec, 4);
    ph_store_event_list_free(recs, nrec);
    assert_check();
}

Test(store_risk, lists_add_replace_remove_and_load_with_generation)
{
    g_s = open_at(g_dir, 0);
    ph_err err = {0};
    uint64_t ev0 = last_event();
    cr_assert_eq(
        list_cmd(0, PH_RISK_BLOCK, PH_RISK_DEVICE, 0xabcdef0123456789ULL, 0, "ab****yz", &err),
        PH_OK, "%s", err.msg);
    cr_assert_eq(list_cmd(0, PH_RISK_ALLOWLIST, PH_RISK_PHONE, 42, NOW + 5000, "138****8000", &err),
                 PH_OK, "%s", err.msg);
    cr_assert_eq(list_cmd(0, PH_RISK_ALLOWLIST, PH_RISK_PHONE, 42, NOW + 9000, "138****8000", &err),
                 PH_OK, "%s", err.msg);
    cr_assert_eq(list_cmd(0, 7, PH_RISK_PHONE, 42, 0, "x", &err), PH_EINVAL);
    cr_assert_eq(list_cmd(0, PH_RISK_BLOCK, 9, 42, 0, "x", &err), PH_EINVAL);
    cr_assert_eq(list_cmd(0, PH_RISK_BLOCK, PH_RISK_IP, 0, 0, "x", &err), PH_EINVAL);
    cr_assert_eq(list_cmd(1, PH_RISK_BLOCK, PH_RISK_IP, 5, 0, NULL, &err), PH_ENOTFOUND);
    cr_assert_eq(rule_cmd("five", RULE5, 0, 0, NOW, NULL, &err), PH_OK, "%s", err.msg);

    ph_risk_rule *rules;
    ph_risk_entry *entries;
    size_t nr, ne;
    uint64_t gen1, gen2;
    cr_assert_eq(ph_store_risk_load(g_s, &rules, &nr, &entries, &ne, &gen1, &err), PH_OK, "%s",
                 err.msg);
    cr_assert_eq(nr, 1);
    cr_assert_eq(ne, 2);
    cr_assert_eq(entries[0].list, PH_RISK_BLOCK);
    cr_assert_eq(entries[0].key, 0xabcdef0123456789ULL);
    cr_assert_str_eq(entries[0].masked, "ab****yz");
    cr_assert_eq(entries[1].expires_at, NOW + 9000, "replaced");
    cr_assert_str_eq(entries[1].note, "promo abuse");
    cr_assert_eq(gen1, last_event());
    free(rules);
    free(entries);
    /* the engine takes them as loaded */
    ph_risk *rk = NULL;
    cr_assert_eq(ph_risk_new(NULL, &rk, &err), PH_OK);
    cr_assert_eq(ph_store_risk_load(g_s, &rules, &nr, &entries, &ne, &gen1, &err), PH_OK);
    cr_assert_eq(ph_risk_rules_set(rk, rules, nr, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ph_risk_list_set(rk, entries, ne, &err), PH_OK, "%s", err.msg);
    ph_risk_subject s = {.now = NOW, .sku = "x"};
    s.keys[PH_RISK_DEVICE] = 0xabcdef0123456789ULL;
    ph_risk_decision d;
    ph_risk_check(rk, &s, &d);
    cr_assert_eq(d.action, PH_RISK_DENY);
    cr_assert_str_eq(d.rule, "block:device");
    ph_risk_free(rk);
    free(rules);
    free(entries);

    cr_assert_eq(list_cmd(1, PH_RISK_BLOCK, PH_RISK_DEVICE, 0xabcdef0123456789ULL, 0, NULL, &err),
                 PH_OK, "%s", err.msg);
    cr_assert_eq(ph_store_risk_load(g_s, &rules, &nr, &entries, &ne, &gen2, &err), PH_OK);
    cr_assert_eq(ne, 1);
    cr_assert_gt(gen2, gen1, "a later change reads a later generation");
    free(rules);
    free(entries);

    json_t *evs = events_after_without(ev0, NULL);
    cr_assert_eq(json_array_size(evs), 5);
    json_t *e = json_array_get(evs, 0);
    cr_assert_str_eq(ev_str(e, "type"), "risk.list_changed");
    cr_assert_str_eq(ev_str(e, "list"), "block");
    cr_assert_str_eq(ev_str(e, "variable"), "device");
    cr_assert_str_eq(ev_str(e, "masked"), "ab****yz");
    cr_assert_str_eq(ev_str(e, "change"), "added");
    cr_assert_str_eq(ev_str(json_array_get(evs, 2), "change"), "replaced");
    e = json_array_get(evs, 4);
    cr_assert_str_eq(ev_str(e, "change"), "removed");
    cr_assert_str_eq(ev_str(e, "masked"), "ab****yz");
    json_decref(evs);

    /* a restart keeps it all */
    reopen();
    cr_assert_eq(ph_store_risk_load(g_s, &rules, &nr, &entries, &ne, &gen1, &err), PH_OK);
    cr_assert_eq(nr, 1);
    cr_assert_str_eq(rules[0].id, "five");
    cr_assert_eq(ne, 1);
    cr_assert_eq(gen1, gen2);
    free(rules);
    free(entries);
    assert_check();
}

Test(store_risk, commands_round_trip_through_the_codec)
{
    ph_cmd a = {.type = PH_CMD_RISK_RULE, .now = NOW, .audit = &OPS};
    a.in.risk_rule.id = "five";
    a.in.risk_rule.json = RULE5;
    a.in.risk_rule.expect_version = 4;
    ph_cmd b = {.type = PH_CMD_RISK_LIST, .now = NOW + 1};
    b.in.risk_list.remove = 0;
    b.in.risk_list.list = PH_RISK_ALLOWLIST;
    b.in.risk_list.var = PH_RISK_IP24;
    b.in.risk_list.key = 0x8877665544332211ULL;
    b.in.risk_list.expires_at = NOW + 60000;
    b.in.risk_list.masked = "203.0.113.*";
    b.in.risk_list.note = "office";
    a.next = &b;
    uint8_t *bytes = NULL;
    size_t len = 0;
    ph_err err = {0};
    cr_assert_eq(ph_cmd_batch_encode(&a, &bytes, &len, &err), PH_OK, "%s", err.msg);
    ph_cmd_batch out;
    cr_assert_eq(ph_cmd_batch_decode(bytes, len, &out, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(out.n, 2);
    ph_cmd *x = &out.cmds[0], *y = &out.cmds[1];
    cr_assert_eq(x->type, PH_CMD_RISK_RULE);
    cr_assert_str_eq(x->in.risk_rule.id, "five");
    cr_assert_str_eq(x->in.risk_rule.json, RULE5);
    cr_assert_eq(x->in.risk_rule.remove, 0);
    cr_assert_eq(x->in.risk_rule.expect_version, 4);
    cr_assert_str_eq(x->audit->action, "risk.rule_create");
    cr_assert_eq(y->type, PH_CMD_RISK_LIST);
    cr_assert_eq(y->in.risk_list.list, PH_RISK_ALLOWLIST);
    cr_assert_eq(y->in.risk_list.var, PH_RISK_IP24);
    cr_assert_eq(y->in.risk_list.key, 0x8877665544332211ULL);
    cr_assert_eq(y->in.risk_list.expires_at, NOW + 60000);
    cr_assert_str_eq(y->in.risk_list.masked, "203.0.113.*");
    cr_assert_str_eq(y->in.risk_list.note, "office");
    cr_assert_str_eq(ph_cmd_type_name(PH_CMD_RISK_LIST), "risk_list");
    ph_cmd_batch_free(&out);
    free(bytes);
}
