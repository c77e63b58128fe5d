/*
 * Reconciliation's pieces without the daemon: the statement mapping in the
 * configuration, reading a statement (money/recon.h: per-line errors naming
 * line, column and field), the classification of one line (each outcome),
 * and the RECON command in the store (the writer re-checks every hint, the
 * same statement is the same run, the command survives its encoding).
 */
#include "store_fixture.h"

#include "config/config.h"
#include "base/util.h"
#include "money/recon.h"
#include "store/cmd_codec.h"

#define ACCOUNT_SEALED "sealed-account"
#define ACCOUNT_MASKED "138****0001"

TestSuite(recon, .init = fixture_setup, .fini = fixture_teardown);

/* ---- the mapping in the configuration -------------------------------------------- */

static const char *const CFG_HEAD = "data_dir: /tmp/x\nmaster_key_file: /tmp/k\n"
                                    "suppliers:\n"
                                    "  - id: gw\n    plugin: gateway\n";

static int load(const char *tail, ph_config **cfg, ph_err *err)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml, "%s%s", CFG_HEAD, tail);
    return ph_config_load_string(yaml, strlen(yaml), "t.yaml", cfg, err);
}

Test(recon, mapping_parses_with_defaults)
{
    ph_config *cfg = NULL;
    ph_err err = {0};
    cr_assert_eq(load("    statement:\n"
                      "      columns: {ref: our_ref, amount: amt, status: st}\n"
                      "      success_values: [SUCCESS, \"1\"]\n",
                      &cfg, &err),
                 PH_OK, "%s", err.msg);
    const ph_statement_conf *st = &cfg->suppliers[0].statement;
    cr_assert(ph_statement_configured(st));
    cr_assert_str_eq(st->ref, "our_ref");
    cr_assert_str_eq(st->amount, "amt");
    cr_assert_null(st->supplier_order_id);
    cr_assert_eq(st->nsuccess_values, 2);
    cr_assert_eq(st->amount_unit, PH_STMT_YUAN);
    cr_assert_eq(st->time_format, PH_STMT_RFC3339);
    cr_assert_eq(st->utc_offset_min, 480);
    ph_config_free(cfg);

    cr_assert_eq(load("    priority: 1\n", &cfg, &err), PH_OK, "%s", err.msg);
    cr_assert(!ph_statement_configured(&cfg->suppliers[0].statement));
    ph_config_free(cfg);
}

Test(recon, mapping_errors_name_file_line_and_column)
{
    ph_config *cfg = NULL;
    ph_err err = {0};
    cr_assert_eq(load("    statement:\n      columns: {ref: r}\n", &cfg, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "t.yaml:7:7: suppliers[0].statement: expected columns.amount"), "%s",
              err.msg);
    cr_assert_eq(load("    statement:\n      columns: {amount: a}\n", &cfg, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "columns.ref or columns.supplier_order_id"), "%s", err.msg);
    cr_assert_eq(
        load("    statement:\n      columns: {ref: r, amount: a, status: s}\n", &cfg, &err),
        PH_EINVAL);
    cr_assert(strstr(err.msg, "success_values"), "%s", err.msg);
    cr_assert_eq(load("    statement:\n      columns: {ref: r, amount: a}\n"
                      "      time_format: iso\n",
                      &cfg, &err),
                 PH_EINVAL);
    cr_assert(strstr(err.msg, "t.yaml:8:20: suppliers[0].statement.time_format"), "%s", err.msg);
    cr_assert_eq(load("    statement:\n      colums: {ref: r, amount: a}\n", &cfg, &err),
                 PH_EINVAL);
    cr_assert(strstr(err.msg, "did you mean \"columns\""), "%s", err.msg);
}

/* ---- reading a statement ------------------------------------------------------------ */

static ph_statement_conf mapping(void)
{
    static char *const ok[] = {"SUCCESS"};
    return (ph_statement_conf){.ref = "our_ref",
                               .supplier_order_id = "order_no",
                               .amount = "amount",
                               .time = "paid_at",
                               .status = "status",
                               .success_values = (char **)ok,
                               .nsuccess_values = 1,
                               .amount_unit = PH_STMT_YUAN,
                               .time_format = PH_STMT_LOCAL,
                               .utc_offset_min = 480};
}

#define FROM 1764518400000LL /* 2025-12-01T00:00:00+08:00 */
#define TO   1764604800000LL /* 2025-12-02T00:00:00+08:00 */

Test(recon, statement_lines_are_read_under_the_mapping)
{
    ph_statement_conf m = mapping();
    const char *csv = "\xEF\xBB\xBFmemo, Amount ,our_ref,status,order_no,paid_at\r\n"
                      "a,49.40,u-1-1,SUCCESS,S1,2025-12-01 09:30:00\r\n"
                      "\r\n"
                      "\"b,c\",5,,failed,S2,2025-12-01 23:59:59\r\n";
    ph_statement *st;
    ph_err err = {0};
    cr_assert_eq(ph_statement_parse(&m, csv, strlen(csv), FROM, TO, 10, &st, &err), PH_OK, "%s",
                 err.msg);
    cr_assert_eq(st->error_count, 0, "%s", st->nerrors ? st->errors[0].reason : "");
    cr_assert_eq(st->nlines, 2);
    cr_assert_eq(st->lines[0].line, 2);
    cr_assert_str_eq(st->lines[0].ref, "u-1-1");
    cr_assert_str_eq(st->lines[0].supplier_order_id, "S1");
    cr_assert_eq(st->lines[0].amount, 4940);
    cr_assert_eq(st->lines[0].time, FROM + 9 * 3600000LL + 30 * 60000LL);
    cr_assert_eq(st->lines[0].charged, 1);
    cr_assert_eq(st->lines[1].line, 4);
    cr_assert_str_eq(st->lines[1].ref, "");
    cr_assert_eq(st->lines[1].amount, 500);
    cr_assert_eq(st->lines[1].charged, 0);
    uint8_t sha[32];
    ph_sha256(csv, strlen(csv), sha);
    cr_assert_arr_eq(st->sha256, sha, 32);
    ph_statement_free(st);
}

Test(recon, bad_lines_are_named_by_line_column_and_field)
{
    ph_statement_conf m = mapping();
    const char *csv = "our_ref,order_no,amount,paid_at,status\n"
                      "u-1-1,S1,49.401,2025-12-01 09:30:00,SUCCESS\n" /* 2: three decimals */
                      "u-1-2,S2,-1,2025-12-01 09:30:00,SUCCESS\n"     /* 3: negative */
                      ",,1.00,2025-12-01 09:30:00,SUCCESS\n"          /* 4: names nothing */
                      "u 1,S4,1.00,2025-12-01 09:30:00,SUCCESS\n"     /* 5: not a reference */
                      "u-1-5,S5,1.00,2025-12-02 00:00:00,SUCCESS\n"   /* 6: outside */
                      "u-1-6,S6,1.00,tomorrow,SUCCESS\n"              /* 7: not a time */
                      "u-1-7,S\"7,1.00,2025-12-01 09:30:00,SUCCESS\n" /* 8: stray quote */
                      "u-1-8,S8,1.00,2025-12-01 10:00:00,SUCCESS\n";  /* 9: fine */
    ph_statement *st;
    ph_err err = {0};
    cr_assert_eq(ph_statement_parse(&m, csv, strlen(csv), FROM, TO, 100, &st, &err), PH_OK);
    cr_assert_eq(st->error_count, 7);
    struct {
        uint32_t line, column;
        const char *field;
    } want[] = {
        {2, 3, "amount"}, {3, 3, "amount"},           {4, 1, "ref"}, {5, 1, "ref"}, {6, 4, "time"},
        {7, 4, "time"},   {8, 2, "supplier_order_id"}};
    for (size_t i = 0; i < 7; i++) {
        cr_assert_eq(st->errors[i].line, want[i].line, "error %zu", i);
        cr_assert_eq(st->errors[i].column, want[i].column, "error %zu: %s", i,
                     st->errors[i].reason);
        cr_assert_str_eq(st->errors[i].field, want[i].field, "error %zu", i);
        cr_assert(!strstr(st->errors[i].reason, "tomorrow") &&
                      !strstr(st->errors[i].reason, "49.401"),
                  "a reason quotes the file: %s", st->errors[i].reason);
    }
    cr_assert_eq(st->nlines, 1);
    ph_statement_free(st);

    /* fatal: a header without a mapped column, no header at all */
    cr_assert_eq(ph_statement_parse(&m, "our_ref,amount\n", 15, FROM, TO, 10, &st, &err),
                 PH_EINVAL);
    cr_assert(strstr(err.msg, "line 1: header: no column \"order_no\""), "%s", err.msg);
    cr_assert_eq(ph_statement_parse(&m, "\n\n", 2, FROM, TO, 10, &st, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "no header"), "%s", err.msg);
}

Test(recon, fen_and_unix_time_formats)
{
    ph_statement_conf m = {.supplier_order_id = "id",
                           .amount = "fen",
                           .time = "t",
                           .amount_unit = PH_STMT_FEN,
                           .time_format = PH_STMT_UNIX_S};
    const char *csv = "id,fen,t\nS1,4940,1764550000\nS2,49.40,1764550000\n";
    ph_statement *st;
    ph_err err = {0};
    cr_assert_eq(ph_statement_parse(&m, csv, strlen(csv), FROM, TO, 10, &st, &err), PH_OK);
    cr_assert_eq(st->nlines, 1);
    cr_assert_eq(st->lines[0].amount, 4940);
    cr_assert_eq(st->lines[0].time, 1764550000000LL);
    cr_assert_eq(st->lines[0].charged, 1); /* no status column: every line is a charge */
    cr_assert_eq(st->error_count, 1);
    cr_assert_eq(st->errors[0].line, 3);
    cr_assert_str_eq(st->errors[0].field, "amount");
    ph_statement_free(st);
}

/* A period's date is the start of the supplier's own day: 2026-12-01 at
 * +08:00 is 2026-11-30T16:00Z; at +00:00, midnight UTC; a time stays as given. */
Test(recon, a_period_date_is_the_start_of_the_suppliers_day)
{
    int64_t ms, utc;
    cr_assert_eq(ph_time_parse("2026-12-01T00:00:00Z", 20, &utc), 0);
    cr_assert_eq(ph_statement_bound("2026-12-01", 480, &ms), 0);
    cr_assert_eq(ms, utc - 8 * 3600 * 1000);
    cr_assert_eq(ph_statement_bound("2026-12-01", 0, &ms), 0);
    cr_assert_eq(ms, utc);
    cr_assert_eq(ph_statement_bound("2026-12-01", -300, &ms), 0);
    cr_assert_eq(ms, utc + 5 * 3600 * 1000);
    cr_assert_eq(ph_statement_bound("2026-12-01T00:00:00+08:00", 0, &ms), 0);
    cr_assert_eq(ms, utc - 8 * 3600 * 1000);
    cr_assert_eq(ph_statement_bound("2026-02-30", 480, &ms), -1);
    cr_assert_eq(ph_statement_bound("yesterday!", 480, &ms), -1);
    cr_assert_eq(ph_statement_bound(NULL, 480, &ms), -1);
}

Test(recon, plugin_lines_digest_is_their_content)
{
    ph_stmt_input in[2] = {{"u-1-1", NULL, 4940, -1, 1}, {NULL, "S2", 100, FROM + 5, 0}};
    ph_statement *a, *b;
    ph_err err = {0};
    cr_assert_eq(ph_statement_from_lines(in, 2, FROM, TO, 10, &a, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(a->error_count, 0, "%s", a->nerrors ? a->errors[0].reason : "");
    cr_assert_eq(a->nlines, 2);
    cr_assert_eq(a->lines[1].charged, 0);
    in[1].amount = 101;
    cr_assert_eq(ph_statement_from_lines(in, 2, FROM, TO, 10, &b, &err), PH_OK);
    cr_assert(memcmp(a->sha256, b->sha256, 32) != 0, "another amount, the same digest");
    ph_statement_free(b);
    in[1].time = TO; /* outside */
    in[0].ref = NULL;
    cr_assert_eq(ph_statement_from_lines(in, 2, FROM, TO, 10, &b, &err), PH_OK);
    cr_assert_eq(b->error_count, 2);
    ph_statement_free(a);
    ph_statement_free(b);
}

/* ---- one line's outcome ----------------------------------------------------------------- */

Test(recon, classify_gives_each_outcome)
{
    ph_recon_line charged = {.amount = 4940, .charged = 1}, free_line = {.amount = 0};
    ph_attempt ok = {.state = PH_ATTEMPT_SUCCEEDED, .unit_cost = 4940, .charged = -1};
    ph_attempt failed = {.state = PH_ATTEMPT_FAILED, .unit_cost = 4940, .charged = -1};
    ph_attempt unknown = {.state = PH_ATTEMPT_UNKNOWN, .unit_cost = 4940, .charged = -1};
    int64_t ours;
    cr_assert_eq(ph_recon_classify(&charged, &ok, 1, 0, &ours), PH_RECON_MATCHED);
    cr_assert_eq(ours, 4940);
    cr_assert_eq(ph_recon_classify(&charged, &ok, 2, 0, &ours), PH_RECON_AMOUNT_MISMATCH);
    cr_assert_eq(ours, 9880); /* unit cost x quantity when the supplier gave no charge */
    ok.charged = 5100;
    cr_assert_eq(ph_recon_classify(&charged, &ok, 1, 0, &ours), PH_RECON_AMOUNT_MISMATCH);
    cr_assert_eq(ours, 5100); /* what it charged us, when it said */
    ok.charged = 4940;
    cr_assert_eq(ph_recon_classify(&charged, &ok, 1, 1, &ours), PH_RECON_DUPLICATE);
    cr_assert_eq(ph_recon_classify(&charged, &failed, 1, 0, &ours), PH_RECON_CHARGED_NOT_SUCCEEDED);
    cr_assert_eq(ours, -1);
    cr_assert_eq(ph_recon_classify(&charged, &unknown, 1, 0, &ours),
                 PH_RECON_CHARGED_NOT_SUCCEEDED);
    cr_assert_eq(ph_recon_classify(&free_line, &ok, 1, 0, &ours), PH_RECON_NOT_BILLED);
    cr_assert_eq(ph_recon_classify(&free_line, &failed, 1, 0, &ours), PH_RECON_MATCHED);
    cr_assert_eq(ph_recon_classify(&charged, NULL, 1, 0, &ours), PH_RECON_UNKNOWN_REF);
    cr_assert_eq(ours, -1);

    cr_assert(ph_recon_outcome_discrepancy(PH_RECON_CHARGED_NOT_SUCCEEDED));
    cr_assert(ph_recon_outcome_discrepancy(PH_RECON_AMOUNT_MISMATCH));
    cr_assert(!ph_recon_outcome_discrepancy(PH_RECON_MATCHED));
    cr_assert(!ph_recon_outcome_discrepancy(PH_RECON_NOT_BILLED));
    cr_assert_str_eq(ph_recon_outcome_name(PH_RECON_NOT_BILLED), "not_billed");
    cr_assert_str_eq(ph_recon_outcome_name(99), "?");
}

/* ---- the RECON command ---------------------------------------------------------------------- */

static uint64_t supply_order(const char *coid, const char *supplier, int state)
{
    ph_cmd c = {.type = PH_CMD_SUPPLY_CREATE, .now = NOW};
    c.in.supply.client = "mall";
    c.in.supply.client_order_id = coid;
    c.in.supply.sku = TOPUP;
    c.in.supply.quantity = 1;
    fingerprint(TOPUP, 1, c.in.supply.fingerprint);
    c.in.supply.delivery = PH_DELIVERY_RECHARGE;
    c.in.supply.account_sealed = (const uint8_t *)ACCOUNT_SEALED;
    c.in.supply.account_sealed_len = (uint32_t)strlen(ACCOUNT_SEALED);
    c.in.supply.account_masked = ACCOUNT_MASKED;
    c.in.supply.first = (ph_attempt_target){supplier, "P-100", 4940};
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    uint64_t id = c.order->id;
    ph_cmd_clear(&c);
    ph_cmd a = {.type = PH_CMD_ATTEMPT, .now = NOW + 10};
    a.in.attempt.order_id = id;
    a.in.attempt.no = 1;
    a.in.attempt.state = state;
    a.in.attempt.step = -1;
    a.in.attempt.charged = -1;
    a.in.attempt.next_check_at = -1;
    a.in.attempt.reason = state == PH_ATTEMPT_FAILED ? "out_of_stock" : NULL;
    char soid[32];
    snprintf(soid, sizeof soid, "S-%s", coid);
    a.in.attempt.supplier_order_id = soid;
    cr_assert_eq(ph_store_exec(g_s, &a), PH_OK, "%s", a.err.msg);
    ph_cmd_clear(&a);
    return id;
}

static void ref_of(uint64_t order, char *out, size_t n)
{
    snprintf(out, n, "%s-%llu-1", ph_store_uid(g_s), (unsigned long long)order);
}

/* A RECON of supplier gw for [from, to) with the statement digest 07 07 ..., no lines. */
static void recon_cmd(ph_cmd *c, int64_t from, int64_t to)
{
    memset(c, 0, sizeof *c);
    c->type = PH_CMD_RECON;
    c->now = NOW + 5000;
    c->in.recon.supplier = "gw";
    c->in.recon.client = "ops";
    c->in.recon.source = "csv";
    c->in.recon.from = from;
    c->in.recon.to = to;
    memset(c->in.recon.sha256, 7, 32);
}

static json_t *line_json(uint64_t run, uint64_t index)
{
    char **list;
    size_t n;
    ph_err err = {0};
    cr_assert_eq(ph_store_recon_lines(g_s, run, index - 1, 1, &list, &n, &err), PH_OK);
    cr_assert_eq(n, 1);
    json_t *j = json_loads(list[0], 0, NULL);
    ph_store_event_list_free(list, n);
    return j;
}

Test(recon, the_writer_decides_and_the_same_statement_is_the_same_run)
{
    g_s = open_at(g_dir, 0);
    const char *const all[] = {P_TOPUP};
    ph_err err = {0};
    cr_assert_eq(put_products(all, 1, &err), PH_OK, "%s", err.msg);
    uint64_t a = supply_order("a", "gw", PH_ATTEMPT_SUCCEEDED);
    uint64_t b = supply_order("b", "gw", PH_ATTEMPT_FAILED);
    uint64_t c = supply_order("c", "gw", PH_ATTEMPT_SUCCEEDED);
    uint64_t x = supply_order("x", "other", PH_ATTEMPT_SUCCEEDED);

    ph_recon_line lines[4] = {{.line = 2, .amount = 4940, .time = -1, .charged = 1},
                              {.line = 3, .amount = 4940, .time = -1, .charged = 1},
                              {.line = 4, .amount = 4940, .time = -1, .charged = 1},
                              {.line = 5, .amount = 4940, .time = -1, .charged = 1}};
    ref_of(a, lines[0].ref, sizeof lines[0].ref);
    snprintf(lines[1].supplier_order_id, sizeof lines[1].supplier_order_id, "S-b");
    ref_of(x, lines[2].ref, sizeof lines[2].ref); /* another supplier's attempt */
    ref_of(a, lines[3].ref, sizeof lines[3].ref);
    ph_recon_ref cand[4], *ub;
    size_t nub;
    cr_assert_eq(
        ph_store_recon_prepare(g_s, "gw", NOW - 1000, NOW + 1000, lines, 4, cand, &ub, &nub, &err),
        PH_OK, "%s", err.msg);
    cr_assert_eq(cand[0].order_id, a);
    cr_assert_eq(cand[1].order_id, b);
    cr_assert_eq(cand[2].order_id, 0, "an attempt of another supplier is not a candidate");
    cr_assert_eq(nub, 1);
    cr_assert_eq(ub[0].order_id, c);
    /* a hint the writer must not trust: line 3 told it names x */
    cand[2] = (ph_recon_ref){x, 1};

    ph_cmd cmd;
    recon_cmd(&cmd, NOW - 1000, NOW + 1000);
    cmd.in.recon.lines = lines;
    cmd.in.recon.cand = cand;
    cmd.in.recon.nlines = 4;
    cmd.in.recon.unbilled = ub;
    cmd.in.recon.nunbilled = nub;

    /* the command's encoding gives the same command back */
    uint8_t *bytes;
    size_t blen;
    cr_assert_eq(ph_cmd_batch_encode(&cmd, &bytes, &blen, &err), PH_OK, "%s", err.msg);
    ph_cmd_batch dec;
    cr_assert_eq(ph_cmd_batch_decode(bytes, blen, &dec, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(dec.n, 1);
    cr_assert_eq(dec.cmds[0].in.recon.nlines, 4);
    cr_assert_str_eq(dec.cmds[0].in.recon.lines[1].supplier_order_id, "S-b");
    cr_assert_eq(dec.cmds[0].in.recon.cand[2].order_id, x);
    cr_assert_eq(dec.cmds[0].in.recon.unbilled[0].order_id, c);
    cr_assert_arr_eq(dec.cmds[0].in.recon.sha256, cmd.in.recon.sha256, 32);
    ph_cmd_batch_free(&dec);
    free(bytes);

    uint64_t ev0 = last_event();
    cr_assert_eq(ph_store_exec(g_s, &cmd), PH_OK, "%s", cmd.err.msg);
    uint64_t run = cmd.recon_run;
    cr_assert_eq(run, 1);
    cr_assert_eq(cmd.replayed, 0);
    ph_cmd_clear(&cmd);
    /* recon.completed, and one order.discrepancy per line that contradicts
     * us: the charge for an attempt that failed, and the second charge */
    cr_assert_eq(last_event(), ev0 + 3);
    cr_assert_eq(ph_store_discrep_open(g_s), 2);
    char **dl;
    size_t dn;
    uint64_t dnext;
    ph_err derr = {0};
    cr_assert_eq(ph_store_discrep_list(g_s, 0, NULL, 0, 10, &dl, &dn, &dnext, &derr), PH_OK, "%s",
                 derr.msg);
    cr_assert_eq(dn, 2);
    for (size_t i = 0; i < dn; i++) {
        json_t *d = json_loads(dl[i], 0, NULL);
        cr_assert_str_eq(json_string_value(json_object_get(d, "source")), "statement", "%s", dl[i]);
        json_decref(d);
    }
    ph_store_event_list_free(dl, dn);

    const char *want[] = {"matched", "charged_not_succeeded", "unknown_ref", "duplicate",
                          "not_billed"};
    for (uint64_t i = 1; i <= 5; i++) {
        json_t *l = line_json(run, i);
        cr_assert_str_eq(json_string_value(json_object_get(l, "outcome")), want[i - 1], "line %llu",
                         (unsigned long long)i);
        json_decref(l);
    }
    json_t *l5 = line_json(run, 5);
    cr_assert_eq(json_integer_value(json_object_get(l5, "order_id")), (json_int_t)c);
    json_decref(l5);

    /* the same statement again: the same run, nothing written */
    recon_cmd(&cmd, NOW - 1000, NOW + 1000);
    cmd.in.recon.lines = lines;
    cmd.in.recon.cand = cand;
    cmd.in.recon.nlines = 4;
    cr_assert_eq(ph_store_exec(g_s, &cmd), PH_OK, "%s", cmd.err.msg);
    cr_assert_eq(cmd.recon_run, run);
    cr_assert_eq(cmd.replayed, 1);
    ph_cmd_clear(&cmd);
    cr_assert_eq(last_event(), ev0 + 3);
    cr_assert_eq(ph_store_discrep_open(g_s), 2);
    uint64_t found;
    uint8_t sha[32];
    memset(sha, 7, 32);
    cr_assert_eq(ph_store_recon_find(g_s, "gw", NOW - 1000, NOW + 1000, sha, &found, &err), PH_OK);
    cr_assert_eq(found, run);
    char **list;
    size_t n;
    cr_assert_eq(ph_store_recon_list(g_s, 0, 10, &list, &n, &err), PH_OK);
    cr_assert_eq(n, 1);
    ph_store_event_list_free(list, n);

    /* refused input changes nothing */
    recon_cmd(&cmd, NOW, NOW);
    cr_assert_eq(ph_store_exec(g_s, &cmd), PH_EINVAL);
    cr_assert(strstr(cmd.err.msg, "period"), "%s", cmd.err.msg);
    ph_cmd_clear(&cmd);
    cr_assert_eq(last_event(), ev0 + 3);
    free(ub);
    assert_check();

    /* --check-store: a run that lost a line, or its digest, is named */
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    uint8_t key[16] = {0};
    key[7] = 1;  /* run 1 */
    key[15] = 3; /* line 3 */
    MDB_val k = {16, key};
    cr_assert_eq(mdb_del(txn, raw_dbi(txn, "recon_lines", 0), &k, NULL), 0);
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
    ph_err cerr = {0};
    cr_assert_eq(ph_store_check(g_s, NULL, &cerr), PH_EIO);
    cr_assert(strstr(cerr.msg, "recon_lines: run 1 lacks line 3"), "%s", cerr.msg);
}

/* ---- the attempt index (supply_att): only what a statement names, and its period ----------- */

/* A supplier order of `supplier` created at `at`, its attempt 1 then in `state`
 * with the supplier order id soid. */
static uint64_t supply_order_at(const char *coid, const char *supplier, int state, int64_t at,
                                const char *soid)
{
    ph_cmd c = {.type = PH_CMD_SUPPLY_CREATE, .now = at};
    c.in.supply.client = "mall";
    c.in.supply.client_order_id = coid;
    c.in.supply.sku = TOPUP;
    c.in.supply.quantity = 1;
    fingerprint(TOPUP, 1, c.in.supply.fingerprint);
    c.in.supply.delivery = PH_DELIVERY_RECHARGE;
    c.in.supply.account_sealed = (const uint8_t *)ACCOUNT_SEALED;
    c.in.supply.account_sealed_len = (uint32_t)strlen(ACCOUNT_SEALED);
    c.in.supply.account_masked = ACCOUNT_MASKED;
    c.in.supply.first = (ph_attempt_target){supplier, "P-100", 4940};
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    uint64_t id = c.order->id;
    ph_cmd_clear(&c);
    ph_cmd a = {.type = PH_CMD_ATTEMPT, .now = at + 10};
    a.in.attempt.order_id = id;
    a.in.attempt.no = 1;
    a.in.attempt.state = state;
    a.in.attempt.step = -1;
    a.in.attempt.charged = -1;
    a.in.attempt.next_check_at = -1;
    a.in.attempt.reason = state == PH_ATTEMPT_FAILED ? "out_of_stock" : NULL;
    a.in.attempt.supplier_order_id = soid;
    cr_assert_eq(ph_store_exec(g_s, &a), PH_OK, "%s", a.err.msg);
    ph_cmd_clear(&a);
    return id;
}

/* Overwrites order id's supply record with bytes no decoder accepts. */
static void damage_supply(uint64_t id)
{
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_val k = {8, &id}, v = {3, "bad"};
    cr_assert_eq(mdb_put(txn, raw_dbi(txn, "supply", MDB_INTEGERKEY), &k, &v, 0), 0);
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
}

#define P0 (NOW + 3600000LL) /* the period [P0, P1) */
#define P1 (NOW + 7200000LL)

Test(recon, a_statement_matches_across_its_period_and_reads_nothing_else)
{
    g_s = open_at(g_dir, 0);
    const char *const all[] = {P_TOPUP};
    ph_err err = {0};
    cr_assert_eq(put_products(all, 1, &err), PH_OK, "%s", err.msg);
    /* created before the period, billed in it: by our reference, and by the
     * supplier's order id (two attempts carry S-dup: the later one is named) */
    uint64_t late_ref = supply_order_at("r", "gw", PH_ATTEMPT_SUCCEEDED, P0 - 1, "S-r");
    uint64_t dup1 = supply_order_at("d1", "gw", PH_ATTEMPT_FAILED, NOW, "S-dup");
    uint64_t dup2 = supply_order_at("d2", "gw", PH_ATTEMPT_SUCCEEDED, NOW + 5, "S-dup");
    uint64_t before = supply_order_at("b", "gw", PH_ATTEMPT_SUCCEEDED, P0 - 2, "S-b");
    uint64_t first = supply_order_at("f", "gw", PH_ATTEMPT_SUCCEEDED, P0, "S-f");
    uint64_t named = supply_order_at("n", "gw", PH_ATTEMPT_SUCCEEDED, P0 + 100, "S-n");
    uint64_t failed = supply_order_at("x", "gw", PH_ATTEMPT_FAILED, P0 + 200, "S-x");
    uint64_t other = supply_order_at("o", "other", PH_ATTEMPT_SUCCEEDED, P0 + 300, "S-o");
    uint64_t last = supply_order_at("l", "gw", PH_ATTEMPT_SUCCEEDED, P1 - 1, "S-l");
    uint64_t after = supply_order_at("a", "gw", PH_ATTEMPT_SUCCEEDED, P1, "S-a");
    uint64_t billed_after = supply_order_at("ba", "gw", PH_ATTEMPT_SUCCEEDED, P1 + 5, "S-ba");
    (void)failed;
    (void)other;

    ph_recon_line lines[5] = {{.line = 2, .amount = 4940, .time = -1, .charged = 1},
                              {.line = 3, .amount = 4940, .time = -1, .charged = 1},
                              {.line = 4, .amount = 4940, .time = -1, .charged = 1},
                              {.line = 5, .amount = 4940, .time = -1, .charged = 1},
                              {.line = 6, .amount = 4940, .time = -1, .charged = 1}};
    ref_of(late_ref, lines[0].ref, sizeof lines[0].ref);
    snprintf(lines[1].supplier_order_id, sizeof lines[1].supplier_order_id, "S-dup");
    ref_of(named, lines[2].ref, sizeof lines[2].ref);
    snprintf(lines[2].supplier_order_id, sizeof lines[2].supplier_order_id, "S-b");
    /* a reference that names nothing of ours falls back to the supplier order id */
    snprintf(lines[3].ref, sizeof lines[3].ref, "%s-%llu-7", ph_store_uid(g_s),
             (unsigned long long)billed_after);
    snprintf(lines[3].supplier_order_id, sizeof lines[3].supplier_order_id, "S-ba");
    snprintf(lines[4].supplier_order_id, sizeof lines[4].supplier_order_id, "S-o");

    /* Nothing but the orders the lines name and the attempts of the period
     * is read: the records of the others no decoder accepts any more. */
    damage_supply(before);
    damage_supply(after);
    damage_supply(dup1);
    ph_recon_ref cand[5], *ub;
    size_t nub;
    cr_assert_eq(ph_store_recon_prepare(g_s, "gw", P0, P1, lines, 5, cand, &ub, &nub, &err), PH_OK,
                 "%s", err.msg);
    cr_assert_eq(cand[0].order_id, late_ref, "named before the period, billed in it");
    cr_assert_eq(cand[0].no, 1);
    cr_assert_eq(cand[1].order_id, dup2, "a supplier order id names the latest attempt with it");
    cr_assert_eq(cand[2].order_id, named, "a reference wins over a supplier order id");
    cr_assert_eq(cand[3].order_id, billed_after);
    cr_assert_eq(cand[4].order_id, 0, "another supplier's order id names nothing");
    /* the period's successes no line names, in attempt order; P0 is in, P1 out */
    cr_assert_eq(nub, 2);
    cr_assert_eq(ub[0].order_id, first);
    cr_assert_eq(ub[1].order_id, last);
    free(ub);
}

/* --check-store, invariant 39: the index equals what a walk of `supply` finds. */
Test(recon, check_store_names_a_damaged_attempt_index)
{
    g_s = open_at(g_dir, 0);
    const char *const all[] = {P_TOPUP};
    ph_err err = {0};
    cr_assert_eq(put_products(all, 1, &err), PH_OK, "%s", err.msg);
    uint64_t a = supply_order_at("a", "gw", PH_ATTEMPT_SUCCEEDED, P0, "S-a");
    supply_order_at("b", "gw", PH_ATTEMPT_SUCCEEDED, P0 + 1, "S-b");
    assert_check();

    /* an entry lost */
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi dbi = raw_dbi(txn, "supply_att", 0);
    uint8_t key[16 + 8 + 12];
    size_t n = 0;
    key[n++] = 'o';
    memcpy(key + n, "gw", 3);
    n += 3;
    memcpy(key + n, "S-a", 4);
    n += 4;
    for (int i = 7; i >= 0; i--)
        key[n++] = (uint8_t)(a >> (8 * i));
    key[n++] = 0, key[n++] = 0, key[n++] = 0, key[n++] = 1;
    MDB_val k = {n, key}, v = {0, ""};
    cr_assert_eq(mdb_del(txn, dbi, &k, NULL), 0);
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
    ph_err cerr = {0};
    cr_assert_eq(ph_store_check(g_s, NULL, &cerr), PH_EIO);
    cr_assert(
        strstr(cerr.msg, "supply_att: order 1 attempt 1 has no entry by its supplier order id"),
        "%s", cerr.msg);

    /* back, and one entry too many: it names an attempt that is not there */
    ph_store_close(g_s);
    g_s = NULL;
    env = raw_open(&txn);
    dbi = raw_dbi(txn, "supply_att", 0);
    cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    key[n - 1] = 2;
    cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
    cr_assert_eq(ph_store_check(g_s, NULL, &cerr), PH_EIO);
    cr_assert(strstr(cerr.msg, "supply_att: 5 entries but the attempts in supply call for 4"), "%s",
              cerr.msg);
}

/* A version 8 store (code counts, no attempt index) gets its index at the
 * open that migrates it. */
Test(recon, the_attempt_index_is_built_for_a_version_8_store)
{
    g_s = open_at(g_dir, 0);
    const char *const all[] = {P_TOPUP};
    ph_err err = {0};
    cr_assert_eq(put_products(all, 1, &err), PH_OK, "%s", err.msg);
    uint64_t a = supply_order_at("a", "gw", PH_ATTEMPT_SUCCEEDED, P0, "S-a");
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    cr_assert_eq(mdb_drop(txn, raw_dbi(txn, "supply_att", 0), 1), 0);
    uint32_t ver = 8;
    MDB_val k = {6, "schema"}, v = {sizeof ver, &ver};
    cr_assert_eq(mdb_put(txn, raw_dbi(txn, "meta", 0), &k, &v, 0), 0);
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
    cr_assert_eq(ph_store_migrated_from(g_s), 8);
    assert_check();
    ph_recon_line line = {.line = 2, .amount = 4940, .time = -1, .charged = 1};
    snprintf(line.supplier_order_id, sizeof line.supplier_order_id, "S-a");
    ph_recon_ref cand[1], *ub;
    size_t nub;
    cr_assert_eq(ph_store_recon_prepare(g_s, "gw", P0, P1, &line, 1, cand, &ub, &nub, &err), PH_OK,
                 "%s", err.msg);
    cr_assert_eq(cand[0].order_id, a);
    cr_assert_eq(nub, 0);
    free(ub);
}

/* ---- the same answers as a walk of every attempt ------------------------------------------ */

/* What ph_store_recon_prepare answered before supply_att: every attempt of
 * every supplier order walked in (order id, no) order, a reference always
 * naming its attempt, a supplier order id only where no reference did (the
 * last attempt carrying it); the period's successes no line names. */
static void walk_prepare(const uint64_t *ids, size_t nids, const char *sup, int64_t from,
                         int64_t to, const ph_recon_line *lines, size_t n, ph_recon_ref *cand,
                         ph_recon_ref *ub, size_t *nub)
{
    uint8_t by_ref[64] = {0};
    cr_assert(n <= 64);
    for (size_t i = 0; i < n; i++)
        cand[i] = (ph_recon_ref){0, 0};
    *nub = 0;
    ph_err err = {0};
    for (size_t k = 0; k < nids; k++) { /* ascending: the order of `supply` */
        uint64_t id = ids[k];
        ph_order *o = NULL;
        cr_assert_eq(ph_store_order_get(g_s, id, 0, &o, &err), PH_OK, "%s", err.msg);
        for (size_t j = 0; j < o->nattempts; j++) {
            const ph_attempt *a = &o->attempts[j];
            if (strcmp(a->supplier, sup))
                continue;
            ph_recon_ref at = {id, a->no};
            for (size_t i = 0; i < n; i++) {
                if (lines[i].ref[0] && !strcmp(lines[i].ref, a->ref)) {
                    cand[i] = at;
                    by_ref[i] = 1;
                } else if (!by_ref[i] && a->supplier_order_id[0] &&
                           !strcmp(lines[i].supplier_order_id, a->supplier_order_id)) {
                    cand[i] = at;
                }
            }
            if (a->state == PH_ATTEMPT_SUCCEEDED && a->created_at >= from && a->created_at < to)
                ub[(*nub)++] = at;
        }
        ph_order_free(o);
    }
    size_t kept = 0;
    for (size_t u = 0; u < *nub; u++) {
        int named = 0;
        for (size_t i = 0; i < n; i++)
            named |= cand[i].order_id == ub[u].order_id && cand[i].no == ub[u].no;
        if (!named)
            ub[kept++] = ub[u];
    }
    *nub = kept;
}

Test(recon, the_index_answers_as_a_walk_of_every_attempt)
{
    g_s = open_at(g_dir, 0);
    const char *const all[] = {P_TOPUP};
    ph_err err = {0};
    cr_assert_eq(put_products(all, 1, &err), PH_OK, "%s", err.msg);
    static const char *const sups[] = {"gw", "other", "third"};
    unsigned seed = 12345;
    uint64_t ids[120];
    for (int k = 0; k < 120; k++) {
        seed = seed * 1103515245u + 12345u;
        const char *sup = sups[(seed >> 8) % 3];
        int64_t at = NOW + (int64_t)((seed >> 12) % 7200000);
        char coid[16], soid[16];
        snprintf(coid, sizeof coid, "w%d", k);
        snprintf(soid, sizeof soid, "S%u", (seed >> 4) % 40); /* shared by several */
        int state = (seed >> 20) % 3 == 0 ? PH_ATTEMPT_FAILED : PH_ATTEMPT_SUCCEEDED;
        if (state == PH_ATTEMPT_FAILED && (seed >> 16) % 2) {
            /* failed over: attempt 1 failed at sup, attempt 2 succeeded elsewhere */
            ph_cmd c = {.type = PH_CMD_SUPPLY_CREATE, .now = at};
            c.in.supply.client = "mall";
            c.in.supply.client_order_id = coid;
            c.in.supply.sku = TOPUP;
            c.in.supply.quantity = 1;
            fingerprint(TOPUP, 1, c.in.supply.fingerprint);
            c.in.supply.delivery = PH_DELIVERY_RECHARGE;
            c.in.supply.account_sealed = (const uint8_t *)ACCOUNT_SEALED;
            c.in.supply.account_sealed_len = (uint32_t)strlen(ACCOUNT_SEALED);
            c.in.supply.account_masked = ACCOUNT_MASKED;
            c.in.supply.first = (ph_attempt_target){sup, "P-100", 4940};
            cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
            ids[k] = c.order->id;
            ph_cmd_clear(&c);
            for (uint32_t no = 1; no <= 2; no++) {
                ph_cmd a = {.type = PH_CMD_ATTEMPT, .now = at + 10 * no};
                a.in.attempt.order_id = ids[k];
                a.in.attempt.no = no;
                a.in.attempt.state = no == 1 ? PH_ATTEMPT_FAILED : PH_ATTEMPT_SUCCEEDED;
                a.in.attempt.step = -1;
                a.in.attempt.charged = -1;
                a.in.attempt.next_check_at = -1;
                a.in.attempt.reason = no == 1 ? "out_of_stock" : NULL;
                a.in.attempt.supplier_order_id = soid;
                if (no == 1)
                    a.in.attempt.next =
                        (ph_attempt_target){sups[((seed >> 8) + 1) % 3], "P-1", 4940};
                cr_assert_eq(ph_store_exec(g_s, &a), PH_OK, "%s", a.err.msg);
                ph_cmd_clear(&a);
            }
            continue;
        }
        if (state == PH_ATTEMPT_SUCCEEDED && (seed >> 28) % 3 == 0) {
            /* processing under one supplier order id, succeeded under another:
             * the index drops the first */
            char first[16];
            snprintf(first, sizeof first, "S%u", (seed >> 5) % 40);
            ids[k] = supply_order_at(coid, sup, PH_ATTEMPT_PROCESSING, at, first);
            ph_cmd a = {.type = PH_CMD_ATTEMPT, .now = at + 20};
            a.in.attempt.order_id = ids[k];
            a.in.attempt.no = 1;
            a.in.attempt.state = PH_ATTEMPT_SUCCEEDED;
            a.in.attempt.step = -1;
            a.in.attempt.charged = -1;
            a.in.attempt.next_check_at = -1;
            a.in.attempt.supplier_order_id = soid;
            cr_assert_eq(ph_store_exec(g_s, &a), PH_OK, "%s", a.err.msg);
            ph_cmd_clear(&a);
            continue;
        }
        ids[k] = supply_order_at(coid, sup, state, at, (seed >> 24) % 5 ? soid : NULL);
    }
    size_t by_soid = 0, by_ref = 0, unbilled = 0; /* the walk's answers are not all empty */
    for (int round = 0; round < 20; round++) {
        ph_recon_line lines[24] = {0};
        int soid_only[24] = {0}; /* the line's reference names nothing of ours, or it has none */
        size_t n = 0;
        for (; n < 24; n++) {
            seed = seed * 1103515245u + 12345u;
            ph_recon_line *l = &lines[n];
            l->line = (uint32_t)n + 2;
            l->amount = 4940;
            l->time = -1;
            l->charged = 1;
            uint64_t id = ids[(seed >> 8) % 120];
            switch ((seed >> 16) % 4) {
            case 0: /* ours */
                ref_of(id, l->ref, sizeof l->ref);
                break;
            case 1: /* ours, with a supplier order id too */
                ref_of(id, l->ref, sizeof l->ref);
                snprintf(l->supplier_order_id, sizeof l->supplier_order_id, "S%u",
                         (seed >> 4) % 40);
                break;
            case 2: /* a reference of nothing, and a supplier order id */
                soid_only[n] = 1;
                snprintf(l->ref, sizeof l->ref, "%s-%llu-9", ph_store_uid(g_s),
                         (unsigned long long)id);
                snprintf(l->supplier_order_id, sizeof l->supplier_order_id, "S%u",
                         (seed >> 4) % 40);
                break;
            default:
                soid_only[n] = 1;
                snprintf(l->supplier_order_id, sizeof l->supplier_order_id, "S%u",
                         (seed >> 4) % 44);
            }
        }
        const char *sup = sups[round % 3];
        int64_t from = NOW + (int64_t)(round * 300000), to = from + 3600000;
        ph_recon_ref cand[24], want[24], want_ub[200], *ub;
        size_t nub, nwant;
        cr_assert_eq(ph_store_recon_prepare(g_s, sup, from, to, lines, n, cand, &ub, &nub, &err),
                     PH_OK, "%s", err.msg);
        walk_prepare(ids, 120, sup, from, to, lines, n, want, want_ub, &nwant);
        for (size_t i = 0; i < n; i++)
            cr_assert(cand[i].order_id == want[i].order_id && cand[i].no == want[i].no,
                      "round %d line %zu: %llu/%u, the walk found %llu/%u", round, i,
                      (unsigned long long)cand[i].order_id, cand[i].no,
                      (unsigned long long)want[i].order_id, want[i].no);
        cr_assert_eq(nub, nwant, "round %d: %zu unbilled, the walk found %zu", round, nub, nwant);
        unbilled += nub;
        for (size_t i = 0; i < n; i++)
            if (cand[i].order_id && soid_only[i])
                by_soid++;
            else if (cand[i].order_id)
                by_ref++;
        for (size_t u = 0; u < nub; u++)
            cr_assert(ub[u].order_id == want_ub[u].order_id && ub[u].no == want_ub[u].no,
                      "round %d unbilled %zu", round, u);
        free(ub);
    }
    cr_assert(by_ref && by_soid && unbilled,
              "by reference %zu, by supplier order id %zu, unbilled %zu", by_ref, by_soid,
              unbilled);
    assert_check();
}
