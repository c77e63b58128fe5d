/*
 * Reconciliation end to end (issue 11 item 6): orders through the sandbox,
 * then the supplier's statement — a CSV under the supplier's column mapping,
 * or the lines its plugin fetches (ABI 1.2) — matched against our attempts:
 * every outcome on the line it belongs to, the same statement twice is the
 * same run and writes nothing, a statement with bad lines names each (line,
 * column, field) and stores nothing.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static h_daemon D;

static void teardown(void)
{
    h_leftover(&D);
}

TestSuite(recon, .fini = teardown);

#define STATEMENT_MAPPING                                                                          \
    "    statement:\n"                                                                             \
    "      columns: {ref: our_ref, supplier_order_id: order_no, amount: amount, time: paid_at, "   \
    "status: status}\n"                                                                            \
    "      success_values: [SUCCESS]\n"

static const char *const BODY_HEAD = "suppliers:\n"
                                     "  - id: sandbox\n    plugin: sandbox\n    priority: 10\n"
                                     "    breaker_failures: 1000\n" STATEMENT_MAPPING
                                     "    config:\n      settle_ms: 1500\n      slow_ms: 800\n";

static const char *const BODY_PRODUCTS =
    "products:\n"
    "  - sku: sbx.topup\n    name: Sandbox top-up\n    brand: sandbox\n    category: telecom\n"
    "    delivery: recharge\n    face_value: \"50.00\"\n"
    "    offers:\n      - {supplier: sandbox, supplier_sku: sandbox.recharge, cost: \"49.00\"}\n";

static char body_text[4096];

static void start_daemon(const char *sandbox_statement)
{
    snprintf(body_text, sizeof body_text, "%s%s%s%s%s", BODY_HEAD,
             sandbox_statement ? "      statement: \"" : "",
             sandbox_statement ? sandbox_statement : "", sandbox_statement ? "\"\n" : "",
             BODY_PRODUCTS);
    h_setup_custom(&D, body_text, NULL);
    cr_assert(h_start(&D) == 0, "perkhubd did not start");
}

/* A recharge order, waited for: its final view as ops (with its attempts). */
static json_t *recharge(const char *coid, const char *account)
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"client_order_id\":\"%s\",\"sku\":\"sbx.topup\",\"quantity\":1,"
             "\"account\":\"%s\",\"wait\":10}",
             coid, account);
    h_resp r = h_post_json(&D, "/v1/orders", "mall-token", body);
    cr_assert(r.status == 200 || r.status == 201, "order %s: %ld %s", coid, r.status, r.body);
    long long id = h_int(h_order_of(&r), "id");
    h_resp_free(&r);
    json_t *o = h_order_get(&D, id, "ops-token");
    cr_assert(json_is_array(json_object_get(o, "attempts")), "no attempts for ops");
    return o;
}

static json_t *attempt1(json_t *order)
{
    return json_array_get(json_object_get(order, "attempts"), 0);
}

/* POST a statement for [from, to); the response (caller frees). */
static h_resp post_statement(const char *csv, const char *from, const char *to)
{
    char path[256];
    h_resp r;
    snprintf(path, sizeof path, "/v1/suppliers/sandbox/statements?from=%s&to=%s", from, to);
    cr_assert(h_http(&D, "POST", path, "ops-token", "text/csv", csv, strlen(csv), &r) == 0);
    return r;
}

/* The lines of run `id`, whole. */
static json_t *run_lines(long long id)
{
    char path[96];
    snprintf(path, sizeof path, "/v1/reconciliations/%lld?limit=1000", id);
    h_resp r = h_get(&D, path, "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *lines =
        json_incref(json_object_get(json_object_get(r.json, "reconciliation"), "lines_page"));
    h_resp_free(&r);
    return lines;
}

/* The first line of the run naming `ref` (or, for not_billed, the attempt ref). */
static json_t *line_of(json_t *lines, const char *key, const char *value, int nth)
{
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l)
    {
        const char *v = json_string_value(json_object_get(l, key));
        if (v && !strcmp(v, value) && nth-- == 0)
            return l;
    }
    return NULL;
}

static void expect_line(json_t *lines, const char *key, const char *value, int nth,
                        const char *outcome, const char *theirs, const char *ours)
{
    char buf[512];
    json_t *l = line_of(lines, key, value, nth);
    cr_assert(l, "no line %s=%s (#%d) in %s", key, value, nth, h_dump(lines, buf, sizeof buf));
    cr_assert_str_eq(h_str(l, "outcome"), outcome, "%s", h_dump(l, buf, sizeof buf));
    json_t *t = json_object_get(l, "theirs"), *o = json_object_get(l, "ours");
    if (theirs)
        cr_assert(json_is_string(t) && !strcmp(json_string_value(t), theirs), "theirs: %s",
                  h_dump(l, buf, sizeof buf));
    else
        cr_assert(json_is_null(t), "theirs: %s", h_dump(l, buf, sizeof buf));
    if (ours)
        cr_assert(json_is_string(o) && !strcmp(json_string_value(o), ours), "ours: %s",
                  h_dump(l, buf, sizeof buf));
    else
        cr_assert(json_is_null(o), "ours: %s", h_dump(l, buf, sizeof buf));
}

static long long count_of(json_t *run, const char *outcome)
{
    return h_int(json_object_get(run, "counts"), outcome);
}

static long long runs_listed(void)
{
    h_resp r = h_get(&D, "/v1/reconciliations", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    long long n = (long long)json_array_size(json_object_get(r.json, "reconciliations"));
    h_resp_free(&r);
    return n;
}

Test(recon, statement_with_every_outcome_then_the_same_again_then_bad_lines)
{
    start_daemon(NULL);
    json_t *a = recharge("rc-a", "13800000001"), *b = recharge("rc-b", "13800000001"),
           *c = recharge("rc-c", "13800000001"), *d = recharge("rc-d", "13800000002");
    cr_assert_str_eq(h_str(a, "state"), "succeeded");
    cr_assert_str_eq(h_str(d, "state"), "failed");
    const char *ref_a = h_str(attempt1(a), "ref"), *ref_d = h_str(attempt1(d), "ref");
    const char *soid_b = h_str(attempt1(b), "supplier_order_id");
    const char *ref_c = h_str(attempt1(c), "ref");

    char from[40], to[40], paid[40], csv[2048];
    h_rfc3339(h_wall_ms() - 3600 * 1000, from, sizeof from);
    h_rfc3339(h_wall_ms() + 3600 * 1000, to, sizeof to);
    h_rfc3339(h_wall_ms(), paid, sizeof paid);
    /* columns in the supplier's order, with one we do not map */
    snprintf(csv, sizeof csv,
             "order_no,our_ref,amount,status,paid_at,memo\n"
             "SBXO-%s,%s,49.00,SUCCESS,%s,ok\n"   /* line 2: matched */
             "%s,,51.00,SUCCESS,%s,by their id\n" /* line 3: amount_mismatch */
             ",%s,49.00,SUCCESS,%s,\n"            /* line 4: charged, failed with us */
             "X-1,zz-404-1,49.00,SUCCESS,%s,\n"   /* line 5: nothing of ours */
             ",%s,49.00,success,%s,again\n"       /* line 6: billed twice */
             ",%s,0.00,FAILED,%s,\n",             /* line 7: their failure, ours too */
             ref_a, ref_a, paid, soid_b, paid, ref_d, paid, paid, ref_a, paid, ref_d, paid);

    long long ev0 = h_last_event(&D);
    h_resp r = post_statement(csv, from, to);
    cr_assert_eq(r.status, 201, "%s", r.body);
    json_t *run = json_object_get(r.json, "reconciliation");
    long long id = h_int(run, "id");
    cr_assert_eq(count_of(run, "matched"), 2, "%s", r.body);
    cr_assert_eq(count_of(run, "amount_mismatch"), 1, "%s", r.body);
    cr_assert_eq(count_of(run, "charged_not_succeeded"), 1, "%s", r.body);
    cr_assert_eq(count_of(run, "unknown_ref"), 1, "%s", r.body);
    cr_assert_eq(count_of(run, "duplicate"), 1, "%s", r.body);
    cr_assert_eq(count_of(run, "not_billed"), 1, "%s", r.body); /* c */
    cr_assert_eq(h_int(run, "lines"), 7, "%s", r.body);
    cr_assert_eq(h_int(run, "discrepancies"), 3, "%s", r.body);
    cr_assert_str_eq(h_str(run, "client"), "ops");
    cr_assert_str_eq(h_str(run, "source"), "csv");
    h_resp_free(&r);
    cr_assert(h_last_event(&D) > ev0, "no recon.completed event");

    json_t *lines = run_lines(id);
    expect_line(lines, "ref", ref_a, 0, "matched", "49.00", "49.00");
    expect_line(lines, "supplier_order_id", soid_b, 0, "amount_mismatch", "51.00", "49.00");
    expect_line(lines, "ref", ref_d, 0, "charged_not_succeeded", "49.00", NULL);
    expect_line(lines, "ref", "zz-404-1", 0, "unknown_ref", "49.00", NULL);
    expect_line(lines, "ref", ref_a, 1, "duplicate", "49.00", "49.00");
    expect_line(lines, "ref", ref_d, 1, "matched", NULL, NULL);
    expect_line(lines, "ref", ref_c, 0, "not_billed", NULL, "49.00");
    cr_assert_eq(h_int(line_of(lines, "ref", ref_d, 0), "line"), 4);
    json_decref(lines);

    /* the CSV export: a header and one row per line */
    char path[96];
    snprintf(path, sizeof path, "/v1/reconciliations/%lld/lines.csv", id);
    r = h_get(&D, path, "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(!strncmp(r.body, "index,line,outcome,", 19), "%s", r.body);
    cr_assert_eq(h_mem_count(r.body, r.len, "\n"), 8, "%s", r.body);
    cr_assert_eq(h_mem_count(r.body, r.len, ",amount_mismatch,"), 1, "%s", r.body);
    h_resp_free(&r);

    /* the same statement again: the same run, nothing written */
    long long ev1 = h_last_event(&D);
    r = post_statement(csv, from, to);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(h_int(json_object_get(r.json, "reconciliation"), "id"), id, "%s", r.body);
    char hv[16];
    cr_assert(h_header(&r, "Idempotent-Replay", hv, sizeof hv) && !strcmp(hv, "true"));
    h_resp_free(&r);
    cr_assert_eq(h_last_event(&D), ev1, "a replayed import wrote an event");
    cr_assert_eq(runs_listed(), 1);
    /* audited once, with who: the replay submitted nothing */
    r = h_get(&D, "/v1/audit?action=statement.import", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(json_array_size(json_object_get(r.json, "audit")), 1, "%s", r.body);
    cr_assert_str_eq(h_str(json_array_get(json_object_get(r.json, "audit"), 0), "client"), "ops");
    h_resp_free(&r);

    /* bad lines: each named, nothing stored */
    snprintf(csv, sizeof csv,
             "order_no,our_ref,amount,status,paid_at\n"
             ",%s,49.001,SUCCESS,%s\n"       /* line 2: three decimals */
             ",%s,49.00,SUCCESS,yesterday\n" /* line 3: not a time */
             ",,49.00,SUCCESS,%s\n"          /* line 4: names nothing */
             ",%s,49.00,SUCCESS,%s\n",       /* line 5: fine */
             ref_a, paid, ref_a, paid, ref_c, paid);
    r = post_statement(csv, from, to);
    cr_assert_eq(r.status, 422, "%s", r.body);
    cr_assert_str_eq(h_str(r.json, "error"), "invalid_csv");
    json_t *errs = json_object_get(r.json, "lines");
    cr_assert_eq(json_array_size(errs), 3, "%s", r.body);
    json_t *e0 = json_array_get(errs, 0), *e1 = json_array_get(errs, 1),
           *e2 = json_array_get(errs, 2);
    cr_assert_eq(h_int(e0, "line"), 2);
    cr_assert_eq(h_int(e0, "column"), 3);
    cr_assert_str_eq(h_str(e0, "field"), "amount");
    cr_assert_eq(h_int(e1, "line"), 3);
    cr_assert_eq(h_int(e1, "column"), 5);
    cr_assert_str_eq(h_str(e1, "field"), "time");
    cr_assert_eq(h_int(e2, "line"), 4);
    cr_assert(!strstr(r.body, "yesterday") && !strstr(r.body, "49.001"), "echoes: %s", r.body);
    h_resp_free(&r);
    cr_assert_eq(h_last_event(&D), ev1, "a refused import wrote an event");
    cr_assert_eq(runs_listed(), 1);

    /* a header without a mapped column is refused whole */
    r = post_statement("our_ref,amount\nx,1.00\n", from, to);
    cr_assert_eq(r.status, 422, "%s", r.body);
    cr_assert(strstr(h_str(r.json, "message"), "order_no"), "%s", r.body);
    h_resp_free(&r);
    cr_assert_eq(runs_listed(), 1);

    json_decref(a), json_decref(b), json_decref(c), json_decref(d);
    h_stop_clean(&D);
    h_cleanup(&D);
}

Test(recon, statement_fetched_by_the_plugin)
{
    start_daemon(NULL);
    json_t *a = recharge("pf-a", "13800000001"), *b = recharge("pf-b", "13800000001"),
           *d = recharge("pf-d", "13800000002");
    char ref_a[80], ref_b[80], ref_d[80], statement[320];
    snprintf(ref_a, sizeof ref_a, "%s", h_str(attempt1(a), "ref"));
    snprintf(ref_b, sizeof ref_b, "%s", h_str(attempt1(b), "ref"));
    snprintf(ref_d, sizeof ref_d, "%s", h_str(attempt1(d), "ref"));
    json_decref(a), json_decref(b), json_decref(d);
    h_stop_clean(&D);

    /* the sandbox now bills a at its price, b at another, and d that failed with us */
    snprintf(statement, sizeof statement, "%s:4900 %s:5000 %s:4900", ref_a, ref_b, ref_d);
    snprintf(body_text, sizeof body_text, "%s      statement: \"%s\"\n%s", BODY_HEAD, statement,
             BODY_PRODUCTS);
    h_write_config(&D, NULL);
    cr_assert(h_start(&D) == 0, "perkhubd did not restart");

    char path[256];
    h_resp r;
    snprintf(path, sizeof path,
             "/v1/suppliers/sandbox/statements/fetch?from=2000-01-01&to=2100-01-01");
    cr_assert(h_http(&D, "POST", path, "ops-token", NULL, NULL, 0, &r) == 0);
    cr_assert_eq(r.status, 201, "%s", r.body);
    json_t *run = json_object_get(r.json, "reconciliation");
    long long id = h_int(run, "id");
    cr_assert_str_eq(h_str(run, "source"), "plugin");
    cr_assert_eq(count_of(run, "matched"), 1, "%s", r.body);
    cr_assert_eq(count_of(run, "amount_mismatch"), 1, "%s", r.body);
    cr_assert_eq(count_of(run, "charged_not_succeeded"), 1, "%s", r.body);
    h_resp_free(&r);
    json_t *lines = run_lines(id);
    expect_line(lines, "ref", ref_b, 0, "amount_mismatch", "50.00", "49.00");
    json_decref(lines);

    /* fetched again, the same answer: the same run */
    cr_assert(h_http(&D, "POST", path, "ops-token", NULL, NULL, 0, &r) == 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(h_int(json_object_get(r.json, "reconciliation"), "id"), id);
    h_resp_free(&r);

    h_stop_clean(&D);
    h_cleanup(&D);
}

/* ---- the simulator's statement: every mismatch kind ------------------------------- */

static void accept(long long did)
{
    char path[96];
    snprintf(path, sizeof path, "/v1/discrepancies/%lld/accept", did);
    h_resp r = h_post_json(&D, path, "ops-token", "{\"note\":\"statement\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
}

/* How many audit records of `action` there are. */
static size_t audits(const char *action)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/audit?action=%s&limit=1000", action);
    h_resp r = h_get(&D, path, "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    size_t n = json_array_size(json_object_get(r.json, "audit"));
    h_resp_free(&r);
    return n;
}

static h_sim S;

static void stop_sim(void)
{
    h_sim_stop(&S);
}

Test(recon, supsim_statement_with_every_mismatch_kind, .fini = stop_sim)
{
    cr_assert(h_sim_start(&S, NULL) == 0, "supsim did not start");
    static char gw[2048], body[4096];
    h_sim_supplier_yaml(&S, "gw", "gateway", "    priority: 10\n" STATEMENT_MAPPING, NULL, gw,
                        sizeof gw);
    snprintf(body, sizeof body,
             "suppliers:\n%s"
             "products:\n"
             "  - sku: gw.topup\n    name: Top-up\n    brand: sim\n    category: telecom\n"
             "    delivery: recharge\n    face_value: \"50.00\"\n"
             "    offers:\n      - {supplier: gw, supplier_sku: \"20001\", cost: \"49.00\"}\n",
             gw);
    h_setup_custom(&D, body, NULL);
    cr_assert(h_start(&D) == 0, "perkhubd did not start");

    /* four successes and one failure at the supplier */
    const char *accounts[] = {"13900000011", "13900000012", "13900000013", "13900000014",
                              "13900000002"};
    for (int i = 0; i < 5; i++) {
        char req[256], coid[16];
        snprintf(coid, sizeof coid, "sim-%d", i);
        snprintf(req, sizeof req,
                 "{\"client_order_id\":\"%s\",\"sku\":\"gw.topup\",\"quantity\":1,"
                 "\"account\":\"%s\",\"wait\":10}",
                 coid, accounts[i]);
        h_resp r = h_post_json(&D, "/v1/orders", "mall-token", req);
        cr_assert(r.status == 201, "order %d: %ld %s", i, r.status, r.body);
        cr_assert_str_eq(h_str(h_order_of(&r), "state"), i < 4 ? "succeeded" : "failed", "%s",
                         r.body);
        h_resp_free(&r);
    }

    long long now_s = h_wall_ms() / 1000;
    char ask[160], from[40], to[40];
    snprintf(ask, sizeof ask,
             "{\"protocol\":\"gateway\",\"from\":%lld,\"to\":%lld,\"mismatches\":true}",
             now_s - 3600, now_s + 3600);
    h_resp st = h_sim_req(&S, "POST", "/_sim/statement", ask);
    cr_assert_eq(st.status, 200, "%s", st.body);
    h_rfc3339((now_s - 3600) * 1000, from, sizeof from);
    h_rfc3339((now_s + 3600) * 1000, to, sizeof to);

    char path[256];
    h_resp r;
    snprintf(path, sizeof path, "/v1/suppliers/gw/statements?from=%s&to=%s", from, to);
    cr_assert(h_http(&D, "POST", path, "ops-token", "text/csv", st.body, st.len, &r) == 0);
    cr_assert_eq(r.status, 201, "%s\n%s", r.body, st.body);
    json_t *run = json_object_get(r.json, "reconciliation");
    cr_assert_eq(count_of(run, "matched"), 2, "%s\n%s", r.body, st.body);
    cr_assert_eq(count_of(run, "amount_mismatch"), 1, "%s", r.body);
    cr_assert_eq(count_of(run, "not_billed"), 1, "%s", r.body);
    cr_assert_eq(count_of(run, "duplicate"), 1, "%s", r.body);
    cr_assert_eq(count_of(run, "charged_not_succeeded"), 1, "%s", r.body);
    cr_assert_eq(count_of(run, "unknown_ref"), 1, "%s", r.body);
    long long id = h_int(run, "id");
    h_resp_free(&r);

    /* the amount mismatch carries both amounts: theirs 50.00, ours 49.00 */
    json_t *lines = run_lines(id);
    json_t *mm = line_of(lines, "outcome", "amount_mismatch", 0);
    cr_assert(mm);
    cr_assert_str_eq(h_str(mm, "theirs"), "50.00");
    cr_assert_str_eq(h_str(mm, "ours"), "49.00");
    json_decref(lines);

    /* the ledger books what supsim really charged (49.00 for each of the four
     * successes), whatever its statement says */
    json_t *truth = h_sim_truth(&S);
    cr_assert_eq(h_int(json_object_get(truth, "counts"), "recharges_performed"), 4);
    json_decref(truth);
    cr_assert_eq(h_ledger_matches_sim(&D, &S), 4);

    /* perkctl: the same statement from a file is the same run; a bad one names its lines */
    h_write_file(D.dir, "statement.csv", st.body);
    h_write_file(D.dir, "bad.csv", "our_ref,order_no,amount,paid_at,status\nx,y,1.005,,SUCCESS\n");
    char file[400], bad[400], env_url[64];
    snprintf(file, sizeof file, "%s/statement.csv", D.dir);
    snprintf(bad, sizeof bad, "%s/bad.csv", D.dir);
    snprintf(env_url, sizeof env_url, "PERKHUB_URL=http://127.0.0.1:%u", D.port);
    const char *env[] = {env_url, "PERKHUB_TOKEN=ops-token", NULL};
    const char *argv1[] = {
        h_bin("PH_PERKCTL"), "reconcile", "gw", file, "--from", from, "--to", to, NULL};
    char *pout = NULL, *perr = NULL;
    cr_assert_eq(h_run(argv1, env, NULL, 0, &pout, &perr), 0, "%s%s", pout, perr);
    char want[96];
    snprintf(want, sizeof want, "reconciliation %lld of gw: 7 lines, 3 discrepancies (", id);
    cr_assert(strstr(pout, want), "%s", pout);
    cr_assert(strstr(pout, "amount_mismatch"), "%s", pout);
    free(pout), free(perr);
    const char *argv2[] = {
        h_bin("PH_PERKCTL"), "reconcile", "gw", bad, "--from", from, "--to", to, NULL};
    cr_assert_eq(h_run(argv2, env, NULL, 0, &pout, &perr), 1, "%s%s", pout, perr);
    cr_assert(strstr(perr, "line 2, column 3 (amount): "), "%s", perr);
    free(pout), free(perr);
    cr_assert_eq(runs_listed(), 1);

    /* each contradicting line is a discrepancy with source statement, listed
     * for ops; accepting one corrects the order and the ledger */
    h_resp dr = h_get(&D, "/v1/discrepancies?status=open&supplier=gw", "ops-token");
    cr_assert_eq(dr.status, 200, "%s", dr.body);
    long long charged_id = 0, charged_order = 0, more_id = 0, more_order = 0;
    int from_statement = 0;
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(dr.json, "discrepancies"), i, d)
    {
        if (strcmp(h_str(d, "source"), "statement"))
            continue;
        from_statement++;
        json_t *ours = json_object_get(d, "ours"), *theirs = json_object_get(d, "theirs");
        if (!strcmp(h_str(ours, "state"), "failed")) {
            charged_id = h_int(d, "id");
            charged_order = h_int(d, "order_id");
        } else if (json_integer_value(json_object_get(theirs, "charged_fen")) == 5000) {
            more_id = h_int(d, "id");
            more_order = h_int(d, "order_id");
        }
    }
    cr_assert_eq(from_statement, 3, "charged_not_succeeded, amount_mismatch, duplicate: %s",
                 dr.body);
    cr_assert(charged_id && more_id, "%s", dr.body);
    h_resp_free(&dr);
    char led[256];
    h_ledger_words(&D, charged_order, led, sizeof led);
    cr_assert_str_eq(led, "", "a failed order books nothing");
    accept(charged_id);
    json_t *o = h_order_get(&D, charged_order, "ops-token");
    cr_assert_str_eq(h_str(o, "state"), "succeeded");
    json_decref(o);
    h_ledger_words(&D, charged_order, led, sizeof led);
    cr_assert_str_eq(led, "supplier_cost:4900 ");
    h_ledger_words(&D, more_order, led, sizeof led);
    cr_assert_str_eq(led, "supplier_cost:4900 ");
    accept(more_id);
    o = h_order_get(&D, more_order, "ops-token");
    cr_assert_str_eq(h_str(o, "cost"), "50.00");
    json_decref(o);
    h_ledger_words(&D, more_order, led, sizeof led);
    cr_assert_str_eq(led, "supplier_cost:4900 cost_correction:100 ");
    cr_assert_eq(audits("discrepancy.accept"), 2);
    cr_assert_eq(audits("statement.import"), 1, "the same statement again, and a bad one");

    h_resp_free(&st);
    h_stop_clean(&D);
    char *out = NULL;
    cr_assert_eq(h_check_store(&D, &out), 0, "--check-store: %s", out ? out : "");
    free(out);
    h_cleanup(&D);
}
