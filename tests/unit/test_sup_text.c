/*
 * test_sup_text.c — the rules for text a supplier chose (core/supply/sup_text.h)
 * and the gate that applies them to a plugin's result (ph_op_result_clean,
 * plugin_ops.h): table-driven, each row one string and what the rule says.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "supply/plugin_ops.h"
#include "supply/sup_text.h"

#define ACCOUNT "13971234567"

Test(sup_text, reasons)
{
    static const struct {
        const char *s;
        int ok;
    } cases[] = {
        {"out_of_stock", 1},
        {"invalid_account", 1},
        {"stale", 1},
        {"a_b_c_d_e_f", 1},                                       /* six words */
        {"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuv", 1},  /* 48 bytes */
        {"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvw", 0}, /* 49 */
        {"a_b_c_d_e_f_g", 0},                                     /* seven words */
        {"account_13971234567_suspended", 0},                     /* the issue's */
        {"http_404", 0},
        {"a1", 0},
        {"acct_1_3_9", 0},
        {"Out_of_stock", 0},
        {"out of stock", 0},
        {"out-of-stock", 0},
        {"_stale", 0},
        {"stale_", 0},
        {"out__of", 0},
        {"", 0},
        {"\xe7\xbc\xba\xe8\xb4\xa7", 0}, /* UTF-8 text */
        {NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_assert_eq(ph_suptext_reason_ok(cases[i].s), cases[i].ok, "'%s'",
                     cases[i].s ? cases[i].s : "(null)");
}

Test(sup_text, identifiers)
{
    static const struct {
        const char *s;
        size_t max;
        int ok;
    } cases[] = {
        {"G2026112400000002", 64, 1},
        {"R00000001", 9, 1},
        {"R00000001", 8, 0},
        {"a.b_c:d-e/f+g=", 64, 1},
        {"has space", 64, 0},
        {"quote\"", 64, 0},
        {"new\nline", 64, 0},
        {"\xe8\xae\xa2\xe5\x8d\x95", 64, 0},
        {"", 64, 0},
        {NULL, 64, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_assert_eq(ph_suptext_id_ok(cases[i].s, cases[i].max), cases[i].ok, "'%s' max %zu",
                     cases[i].s ? cases[i].s : "(null)", cases[i].max);
}

Test(sup_text, digit_runs_and_text)
{
    static const struct {
        const char *s;
        size_t run;
        int text_ok; /* at most 64 bytes */
    } cases[] = {
        {"Mobile top-up 50 CNY", 2, 1},
        {"iQiyi Gold 12 months", 2, 1},
        {"123456", 6, 1},
        {"1234567", 7, 0},
        {"call 13971234567", 11, 0},
        {"139-7123-4567", 11, 0},
        {"139 7123 4567", 11, 0},
        {"139.7123.4567", 11, 0},
        {"139--7123--4567", 4, 1}, /* a double separator ends a run */
        {"12 34 56 7", 7, 0},
        {"\xe7\x88\xb1\xe5\xa5\x87\xe8\x89\xba 1 \xe4\xb8\xaa\xe6\x9c\x88", 1, 1}, /* UTF-8 */
        {"bad \xff utf8", 1, 0},
        {"tab\there", 0, 0},
        {"", 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(ph_suptext_digit_run(cases[i].s), cases[i].run, "'%s'", cases[i].s);
        cr_assert_eq(ph_suptext_text_ok(cases[i].s, 64), cases[i].text_ok, "'%s'", cases[i].s);
    }
    cr_assert_eq(ph_suptext_text_ok("abcdef", 5), 0, "longer than max");
    cr_assert_eq(ph_suptext_text_ok(NULL, 5), 0);
}

Test(sup_text, account_inside)
{
    static const struct {
        const char *s;
        const char *account;
        int has;
    } cases[] = {
        {"G" ACCOUNT, ACCOUNT, 1},
        {"acct 139-7123-4567 held", ACCOUNT, 1},
        {"a1b3c9d7e1f2g3h4i5j6k7", ACCOUNT, 1}, /* interleaved */
        {"G2026112400000002", ACCOUNT, 0},
        {"1397123456", ACCOUNT, 0}, /* one digit short */
        {"user-Alice.Smith", "alice.smith", 1},
        {"out_of_stock", "alice.smith", 0},
        {"12345", "12345", 0}, /* too short an account to look for */
        {"x", NULL, 0},
        {NULL, ACCOUNT, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_assert_eq(ph_suptext_has_account(cases[i].s, cases[i].account), cases[i].has,
                     "'%s' / '%s'", cases[i].s ? cases[i].s : "(null)",
                     cases[i].account ? cases[i].account : "(null)");
}

Test(sup_text, masking_runs)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"reason=x account=13971234567", "reason=x account=***********"},
        {"msg=call 139-7123-4567 now", "msg=call ***-****-**** now"},
        {"http_status=422 items=12", "http_status=422 items=12"},
        {"slow_ms=86400000", "slow_ms=********"},
        {"123456 x 12", "123456 x 12"},
        {"123456 1", "****** *"}, /* one run: a space between digits */
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[128];
        snprintf(buf, sizeof buf, "%s", cases[i].in);
        ph_suptext_mask_runs(buf);
        cr_assert_str_eq(buf, cases[i].out);
    }
}

/* ---- the gate: ph_op_result_clean on a result a plugin filled --------------- */

static int live_blocks;

static void *t_alloc(const struct perkhub_host *h, size_t n)
{
    (void)h;
    live_blocks++;
    return calloc(1, n);
}

static void t_free(const struct perkhub_host *h, void *p)
{
    (void)h;
    if (p)
        live_blocks--;
    free(p);
}

static char *t_strdup(const struct perkhub_host *h, const char *s)
{
    char *p = s ? t_alloc(h, strlen(s) + 1) : NULL;
    if (p)
        memcpy(p, s, strlen(s) + 1);
    return p;
}

static const struct perkhub_host HOST = {
    .struct_size = sizeof(struct perkhub_host),
    .mem_alloc = t_alloc,
    .mem_free = t_free,
    .mem_strdup = t_strdup,
};

static char *hdup(const char *s)
{
    return t_strdup(&HOST, s);
}

static const char *str_or(const char *s)
{
    return s ? s : "(null)";
}

/* A supplier that echoes the account in every field a result has. */
Test(sup_text, the_gate_drops_every_echo_of_the_account)
{
    live_blocks = 0;
    struct perkhub_result res;
    ph_op_result_init(&res);
    res.reason = hdup("account_" ACCOUNT "_suspended");
    res.order_ref = hdup("ref-" ACCOUNT);
    res.supplier_order_id = hdup("R" ACCOUNT);
    res.product_id = hdup("U" ACCOUNT);
    res.next = 1;
    res.next_state = hdup("q:" ACCOUNT);
    res.reply_body = hdup("ok " ACCOUNT);
    res.reply_content_type = "text/plain\r\nX-Account: " ACCOUNT;
    res.items = t_alloc(&HOST, 3 * sizeof *res.items);
    res.nitems = 3;
    res.items[0] =
        (struct perkhub_item){.product_id = hdup("U20001"), .name = hdup("Top-up for " ACCOUNT)};
    res.items[1] = (struct perkhub_item){.product_id = hdup("U" ACCOUNT), .name = hdup("x")};
    res.items[2] =
        (struct perkhub_item){.product_id = hdup("U10001"), .name = hdup("iQiyi Gold 1 month")};

    unsigned n = ph_op_result_clean(&HOST, &res, ACCOUNT);
    cr_assert_eq(n, 9, "%u values dropped or replaced", n);
    cr_assert_str_eq(str_or(res.reason), "supplier_refused");
    cr_assert_null(res.order_ref);
    cr_assert_null(res.supplier_order_id);
    cr_assert_null(res.product_id);
    cr_assert_null(res.next_state);
    cr_assert_eq(res.next, 0, "a follow-up step without its state");
    cr_assert_null(res.reply_body);
    cr_assert_str_eq(res.reply_content_type, "text/plain");
    cr_assert_eq(res.nitems, 2, "the item with the account as its id is gone");
    cr_assert_str_eq(res.items[0].product_id, "U20001");
    cr_assert_null(res.items[0].name);
    cr_assert_str_eq(res.items[1].product_id, "U10001");
    cr_assert_str_eq(str_or(res.items[1].name), "iQiyi Gold 1 month");
    ph_op_result_clear(&HOST, &res);
    cr_assert_eq(live_blocks, 0, "%d blocks leaked or freed twice", live_blocks);
}

/* What an honest supplier says goes through untouched, and the rules that
 * need no account hold without one (callbacks: the core does not know it). */
Test(sup_text, the_gate_keeps_clean_values)
{
    live_blocks = 0;
    struct perkhub_result res;
    ph_op_result_init(&res);
    res.reason = hdup("out_of_stock");
    res.order_ref = hdup("0a1b2c3d-17-1");
    res.supplier_order_id = hdup("G2026112400000002");
    res.product_id = hdup("20001");
    res.next = 1;
    res.next_state = hdup("query");
    res.reply_body = hdup("{\"code\":0,\"msg\":\"ok\"}");
    res.reply_content_type = "application/json; charset=utf-8";
    cr_assert_eq(ph_op_result_clean(&HOST, &res, ACCOUNT), 0);
    cr_assert_str_eq(res.reason, "out_of_stock");
    cr_assert_str_eq(res.order_ref, "0a1b2c3d-17-1");
    cr_assert_str_eq(res.supplier_order_id, "G2026112400000002");
    cr_assert_str_eq(res.product_id, "20001");
    cr_assert_str_eq(res.next_state, "query");
    cr_assert_eq(res.next, 1);
    cr_assert_str_eq(res.reply_body, "{\"code\":0,\"msg\":\"ok\"}");
    ph_op_result_clear(&HOST, &res);

    ph_op_result_init(&res);
    res.reason = hdup("Card 13800138000 was declined!");
    res.supplier_order_id = hdup("has space");
    cr_assert_eq(ph_op_result_clean(&HOST, &res, NULL), 2);
    cr_assert_str_eq(str_or(res.reason), "supplier_refused");
    cr_assert_null(res.supplier_order_id);
    ph_op_result_clear(&HOST, &res);

    ph_op_result_init(&res);
    res.reason = hdup(""); /* no reason: not one to replace */
    cr_assert_eq(ph_op_result_clean(&HOST, &res, NULL), 0);
    cr_assert_null(res.reason);
    ph_op_result_clear(&HOST, &res);
    cr_assert_eq(live_blocks, 0, "%d blocks leaked or freed twice", live_blocks);
}

/* A code dated before 1970 has expired; it must not become one that never
 * expires (0), which is what fulfil stored for any negative expiry before. */
Test(sup_text, an_expiry_before_1970_stays_expired)
{
    live_blocks = 0;
    struct perkhub_code codes[3] = {
        {.code = "C-1", .expires_at_ms = -86400000},
        {.code = "C-2", .expires_at_ms = 0},
        {.code = "C-3", .expires_at_ms = 1767225600000},
    };
    struct perkhub_result res;
    ph_op_result_init(&res);
    res.codes = codes;
    res.ncodes = 3;
    cr_assert_eq(ph_op_result_clean(&HOST, &res, NULL), 1);
    cr_expect_eq(codes[0].expires_at_ms, PH_EXPIRED_LONG_AGO);
    cr_expect_eq(codes[1].expires_at_ms, 0, "never or unknown stays");
    cr_expect_eq(codes[2].expires_at_ms, 1767225600000);
    cr_assert_eq(live_blocks, 0);
}
