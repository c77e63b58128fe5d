/*
 * test_sandbox.c — the sandbox supplier tested alone, through the plugin test
 * kit (sdk/testkit): the core's real host table, sandbox.c compiled into this
 * binary, no daemon.
 *
 * Every magic value goes end to end the way perkhubd drives it:
 * build_request -> serve_local -> parse_response, at chosen host clocks before
 * and after settle_ms. A reply with http_status 0 (no answer) never reaches
 * parse_response in the core: the tests take it, like the core, as AMBIGUOUS.
 * Each test also checks that no host block leaks and that the recharge account
 * never reaches a log line, a reply body or a result string.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <perkhub/plugin.h>
#include <perkhub/testkit.h>

#define T0          INT64_C(1795000000000) /* the attempts' creation time */
#define SETTLE_MS   3000                   /* the defaults, as docs/sandbox.md says */
#define SLOW_MS     2000
#define NO_ANSWER   (-1)  /* sbx_run: the connection dropped without a reply */
#define SUP_TIMEOUT 10000 /* the core's default total timeout per exchange */

/* ======================= HELPERS ========================================== */

static phtk *sbx_open(const char *const *kv)
{
    char err[256] = "";
    phtk *tk = phtk_open(perkhub_plugin_entry(), kv, err, sizeof err);
    cr_assert_not_null(tk, "phtk_open: %s", err);
    return tk;
}

/* What one exchange did, as the core would see it. */
struct sbx_run {
    int build_st;
    int serve_st;
    int http_status; /* the reply's; 0: no answer */
    int64_t delay_ms;
    char body[4096]; /* the reply body (truncated copy), for secret checks */
    int outcome;     /* parse_response's status, or NO_ANSWER */
    struct perkhub_result res;
};

/* build -> serve -> parse at host clock now. r->res is the caller's
 * (sbx_run_clear, which checks that every host block came back). */
static void sbx_run(phtk *tk, const struct perkhub_op *op, int64_t now, struct sbx_run *r)
{
    memset(r, 0, sizeof *r);
    size_t blocks = phtk_blocks(tk);
    phtk_set_now(tk, now);
    struct perkhub_request req;
    struct perkhub_local_reply reply;
    r->build_st = phtk_build(tk, op, &req);
    cr_assert_eq(r->build_st, PERKHUB_OK, "build_request: %d", r->build_st);
    r->serve_st = phtk_serve(tk, &req, &reply);
    cr_assert_eq(r->serve_st, PERKHUB_OK, "serve_local: %d", r->serve_st);
    r->http_status = reply.http_status;
    r->delay_ms = reply.delay_ms;
    if (reply.body)
        snprintf(r->body, sizeof r->body, "%.*s", (int)reply.body_len, reply.body);
    if (reply.http_status == 0) {
        cr_assert_null(reply.body, "no answer carries no body");
        r->outcome = NO_ANSWER;
    } else {
        cr_assert_not_null(reply.body);
        cr_assert_eq(strlen(reply.body), reply.body_len, "body_len must match the body");
        r->outcome = phtk_parse(tk, op, reply.http_status, reply.body, reply.body_len, &r->res);
    }
    phtk_reply_clear(tk, &reply);
    phtk_request_clear(tk, &req);
    if (!r->res.codes && !r->res.items && !r->res.reason && !r->res.order_ref &&
        !r->res.supplier_order_id && !r->res.product_id && !r->res.statement)
        cr_assert_eq(phtk_blocks(tk), blocks, "the exchange leaked host blocks");
}

/* Frees r->res and asserts that the instance holds exactly `blocks` again. */
static void sbx_run_clear(phtk *tk, struct sbx_run *r, size_t blocks)
{
    phtk_result_clear(tk, &r->res);
    cr_assert_eq(phtk_blocks(tk), blocks, "blocks still held after the clear");
}

static int str_has(const char *s, const char *needle)
{
    return s && needle && *needle && strstr(s, needle) != NULL;
}

/* Does any string of res contain needle? */
static int res_mentions(const struct perkhub_result *res, const char *needle)
{
    if (str_has(res->reason, needle) || str_has(res->order_ref, needle) ||
        str_has(res->supplier_order_id, needle) || str_has(res->product_id, needle) ||
        str_has(res->next_state, needle) || str_has(res->reply_body, needle))
        return 1;
    for (size_t i = 0; i < res->ncodes; i++)
        if (str_has(res->codes[i].code, needle) || str_has(res->codes[i].card_no, needle))
            return 1;
    for (size_t i = 0; i < res->nitems; i++)
        if (str_has(res->items[i].product_id, needle) || str_has(res->items[i].name, needle))
            return 1;
    return 0;
}

/* "SBX-" followed by 16 upper-case hex digits. */
static int code_well_formed(const char *c)
{
    return c && strlen(c) == 20 && strncmp(c, "SBX-", 4) == 0 &&
           strspn(c + 4, "0123456789ABCDEF") == 16;
}

static struct perkhub_op recharge_op(const char *ref, const char *account)
{
    return (struct perkhub_op){.kind = PERKHUB_OP_RECHARGE,
                               .order_ref = ref,
                               .product_id = "sandbox.recharge",
                               .quantity = 1,
                               .account = account,
                               .face_value = 5000,
                               .created_at_ms = T0};
}

static struct perkhub_op card_op(const char *ref, const char *product, uint32_t qty)
{
    return (struct perkhub_op){.kind = PERKHUB_OP_CARD_ORDER,
                               .order_ref = ref,
                               .product_id = product,
                               .quantity = qty,
                               .created_at_ms = T0};
}

/* The query the core sends about the attempt `order`. */
static struct perkhub_op query_of(const struct perkhub_op *order)
{
    struct perkhub_op q = *order;
    q.kind = PERKHUB_OP_ORDER_QUERY;
    q.order_kind = order->kind;
    return q;
}

/* The expected outcome of one exchange. */
struct expect {
    int outcome;        /* PERKHUB_* or NO_ANSWER */
    int state;          /* PERKHUB_STATE_* (ignored for NO_ANSWER) */
    const char *reason; /* or NULL: none expected */
    int64_t delay_ms;
};

static void expect_run(const struct sbx_run *r, const struct expect *e, const char *what)
{
    cr_assert_eq(r->outcome, e->outcome, "%s: outcome %d, want %d (body %s)", what, r->outcome,
                 e->outcome, r->body);
    cr_assert_eq(r->delay_ms, e->delay_ms, "%s: delay %lld", what, (long long)r->delay_ms);
    if (e->outcome == NO_ANSWER)
        return;
    cr_assert_eq(r->res.state, e->state, "%s: state %d, want %d", what, r->res.state, e->state);
    if (e->reason)
        cr_assert(r->res.reason && strcmp(r->res.reason, e->reason) == 0, "%s: reason %s", what,
                  r->res.reason ? r->res.reason : "(null)");
    else
        cr_assert_null(r->res.reason, "%s: unexpected reason %s", what, r->res.reason);
}

/* ======================= DESCRIPTOR AND CONFIG ============================ */

Test(sandbox, descriptor)
{
    static const struct phtk_descriptor_want want = {
        .name = "sandbox",
        .abi_major = 1,
        .abi_minor = 3,
        .capabilities = PERKHUB_CAP_CATALOG | PERKHUB_CAP_STOCK_CHECK | PERKHUB_CAP_CARD_ORDER |
                        PERKHUB_CAP_RECHARGE | PERKHUB_CAP_ORDER_QUERY | PERKHUB_CAP_BALANCE |
                        PERKHUB_CAP_LOCAL | PERKHUB_CAP_STATEMENT | PERKHUB_CAP_REDEMPTION,
        .processing_window_s = 30,
        .query_delay_ms = 200,
        .build_request = 1,
        .parse_response = 1,
        .verify_callback = 0, /* no CALLBACK capability */
        .serve_local = 1,
    };
    const struct perkhub_plugin *d = perkhub_plugin_entry();
    char err[256] = "";
    cr_assert_eq(phtk_expect_descriptor(d, &want, err, sizeof err), 0, "descriptor: %s", err);
    cr_assert_eq(perkhub_plugin_entry(), d);
    cr_assert_eq(d->struct_size, sizeof(struct perkhub_plugin));

    static const struct {
        const char *key;
        int type;
        const char *def;
    } schema[] = {{"seed", PERKHUB_CONF_STRING, "sandbox"},
                  {"settle_ms", PERKHUB_CONF_INT, "3000"},
                  {"slow_ms", PERKHUB_CONF_INT, "2000"},
                  {"statement", PERKHUB_CONF_STRING, ""}};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_str_eq(d->config[i].key, schema[i].key);
        cr_assert_eq(d->config[i].type, schema[i].type);
        cr_assert_str_eq(d->config[i].default_value, schema[i].def);
        cr_assert_eq(d->config[i].required, 0);
        cr_assert_not_null(d->config[i].description);
    }
    cr_assert_null(d->config[4].key);
}

Test(sandbox, config)
{
    static const char *const dflt[] = {NULL};
    static const char *const tuned[] = {"seed",    "s2",       "settle_ms", "0",
                                        "slow_ms", "86400000", NULL};
    static const char *const neg[] = {"settle_ms", "-1", NULL};
    static const char *const huge[] = {"slow_ms", "86400001", NULL};
    static const char *const empty[] = {"seed", "", NULL};
    static const char *const notint[] = {"slow_ms", "fast", NULL};
    static const char *const typo[] = {"setle_ms", "10", NULL};
    static const struct {
        const char *const *kv;
        const char *logged; /* in the init line when it starts, else NULL */
        const char *err;    /* in the refusal */
    } cases[] = {
        {dflt, "settle_ms=3000 slow_ms=2000", NULL},
        /* the host masks runs of 7 digits or more in a plugin's log line
         * (core/supply/sup_text.h): a day in ms looks like a phone number */
        {tuned, "settle_ms=0 slow_ms=********", NULL},
        {neg, NULL, "settle_ms"},
        {huge, NULL, "slow_ms"},
        {empty, NULL, "seed"},
        {notint, NULL, "slow_ms"},
        {typo, NULL, "setle_ms"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256] = "";
        if (!cases[i].logged) {
            cr_assert_eq(phtk_expect_refused(perkhub_plugin_entry(), cases[i].kv, cases[i].err,
                                             NULL, err, sizeof err),
                         0, "case %zu: %s", i, err);
            continue;
        }
        phtk *tk = phtk_open(perkhub_plugin_entry(), cases[i].kv, err, sizeof err);
        cr_assert_not_null(tk, "case %zu: %s", i, err);
        cr_assert(strstr(phtk_log(tk), cases[i].logged), "case %zu: log %s", i, phtk_log(tk));
        cr_assert(!strstr(phtk_log(tk), "s2"), "the seed is not logged");
        phtk_close(tk);
    }
}

/* ======================= RECHARGE MAGIC ACCOUNTS ========================== */

static const struct {
    const char *account;
    struct expect order;
    struct expect query_before; /* at created + settle_ms - 1 */
    struct expect query_after;  /* at created + settle_ms */
} recharge_cases[] = {
    {"13800000001",
     {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, 0},
     {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, 0},
     {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, 0}},
    {"13800000002",
     {PERKHUB_DEFINITE_FAILURE, PERKHUB_STATE_FAILED, "invalid_account", 0},
     {PERKHUB_OK, PERKHUB_STATE_FAILED, "invalid_account", 0},
     {PERKHUB_OK, PERKHUB_STATE_FAILED, "invalid_account", 0}},
    {"13800000003",
     {NO_ANSWER, 0, NULL, SLOW_MS},
     {PERKHUB_OK, PERKHUB_STATE_PROCESSING, NULL, 0},
     {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, 0}},
    {"13800000004",
     {NO_ANSWER, 0, NULL, SLOW_MS},
     {PERKHUB_OK, PERKHUB_STATE_PROCESSING, NULL, 0},
     {PERKHUB_OK, PERKHUB_STATE_FAILED, "order_failed", 0}},
    {"13800000005",
     {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, SLOW_MS},
     {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, 0},
     {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, 0}},
    {"13800000006",
     {PERKHUB_OK, PERKHUB_STATE_PROCESSING, NULL, 0},
     {PERKHUB_OK, PERKHUB_STATE_PROCESSING, NULL, 0},
     {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, 0}},
    {"13800000007",
     {PERKHUB_OK, PERKHUB_STATE_PROCESSING, NULL, 0},
     {PERKHUB_OK, PERKHUB_STATE_NOT_FOUND, NULL, 0},
     {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, 0}},
    /* any other 11-digit account starting with 1 */
    {"13912345678",
     {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, 0},
     {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, 0},
     {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, 0}},
    {"13800000008",
     {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, 0},
     {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, 0},
     {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, 0}},
    /* anything else */
    {"1380000000",
     {PERKHUB_DEFINITE_FAILURE, PERKHUB_STATE_FAILED, "invalid_account", 0},
     {PERKHUB_OK, PERKHUB_STATE_FAILED, "invalid_account", 0},
     {PERKHUB_OK, PERKHUB_STATE_FAILED, "invalid_account", 0}},
    {"238000000017",
     {PERKHUB_DEFINITE_FAILURE, PERKHUB_STATE_FAILED, "invalid_account", 0},
     {PERKHUB_OK, PERKHUB_STATE_FAILED, "invalid_account", 0},
     {PERKHUB_OK, PERKHUB_STATE_FAILED, "invalid_account", 0}},
    {"23800000001",
     {PERKHUB_DEFINITE_FAILURE, PERKHUB_STATE_FAILED, "invalid_account", 0},
     {PERKHUB_OK, PERKHUB_STATE_FAILED, "invalid_account", 0},
     {PERKHUB_OK, PERKHUB_STATE_FAILED, "invalid_account", 0}},
    {"1380000000a",
     {PERKHUB_DEFINITE_FAILURE, PERKHUB_STATE_FAILED, "invalid_account", 0},
     {PERKHUB_OK, PERKHUB_STATE_FAILED, "invalid_account", 0},
     {PERKHUB_OK, PERKHUB_STATE_FAILED, "invalid_account", 0}},
    {"138 0000 0001&account=13800000001",
     {PERKHUB_DEFINITE_FAILURE, PERKHUB_STATE_FAILED, "invalid_account", 0},
     {PERKHUB_OK, PERKHUB_STATE_FAILED, "invalid_account", 0},
     {PERKHUB_OK, PERKHUB_STATE_FAILED, "invalid_account", 0}},
};

/* Asserts the account is in no result string, no reply body and no log line. */
static void assert_account_hidden(phtk *tk, const struct sbx_run *r, const char *account)
{
    cr_assert(!res_mentions(&r->res, account), "account in a result string");
    cr_assert(!str_has(r->body, account), "account in the reply body: %s", r->body);
    cr_assert(!str_has(phtk_log(tk), account), "account in the log");
}

Test(sandbox, recharge_magic_accounts)
{
    phtk *tk = sbx_open(NULL);
    size_t blocks = phtk_blocks(tk);
    for (size_t i = 0; i < sizeof recharge_cases / sizeof recharge_cases[0]; i++) {
        char ref[32], what[96];
        snprintf(ref, sizeof ref, "R-%zu", i);
        struct perkhub_op op = recharge_op(ref, recharge_cases[i].account);
        struct perkhub_op q = query_of(&op);
        struct sbx_run r;

        snprintf(what, sizeof what, "recharge case %zu order", i);
        sbx_run(tk, &op, T0, &r);
        expect_run(&r, &recharge_cases[i].order, what);
        assert_account_hidden(tk, &r, recharge_cases[i].account);
        cr_assert_eq(r.res.ncodes, 0, "%s: a recharge delivers no code", what);
        if (r.outcome == PERKHUB_OK) {
            char want[48];
            snprintf(want, sizeof want, "SBXO-%s", ref);
            cr_assert_str_eq(r.res.supplier_order_id, want, "%s", what);
        }
        if (r.res.state == PERKHUB_STATE_SUCCEEDED)
            cr_assert_eq(r.res.amount, 4900, "%s: amount %lld", what, (long long)r.res.amount);
        sbx_run_clear(tk, &r, blocks);

        snprintf(what, sizeof what, "recharge case %zu query before settle", i);
        sbx_run(tk, &q, T0 + SETTLE_MS - 1, &r);
        expect_run(&r, &recharge_cases[i].query_before, what);
        assert_account_hidden(tk, &r, recharge_cases[i].account);
        cr_assert_str_eq(r.res.order_ref, ref, "%s: the query names our reference", what);
        sbx_run_clear(tk, &r, blocks);

        snprintf(what, sizeof what, "recharge case %zu query after settle", i);
        sbx_run(tk, &q, T0 + SETTLE_MS, &r);
        expect_run(&r, &recharge_cases[i].query_after, what);
        assert_account_hidden(tk, &r, recharge_cases[i].account);
        sbx_run_clear(tk, &r, blocks);
    }
    phtk_close(tk);
}

/* ======================= CARD PRODUCTS ==================================== */

/* The codes `qty` codes of order ref would get: read from a sandbox.card order,
 * which delivers at once. Caller frees each and the array. */
static char **codes_of(phtk *tk, const char *ref, uint32_t qty)
{
    struct perkhub_op op = card_op(ref, "sandbox.card", qty);
    struct sbx_run r;
    size_t blocks = phtk_blocks(tk);
    sbx_run(tk, &op, T0, &r);
    cr_assert_eq(r.outcome, PERKHUB_OK);
    cr_assert_eq(r.res.ncodes, qty);
    char **codes = calloc(qty, sizeof *codes);
    cr_assert_not_null(codes);
    for (uint32_t i = 0; i < qty; i++) {
        codes[i] = strdup(r.res.codes[i].code);
        cr_assert_not_null(codes[i]);
    }
    sbx_run_clear(tk, &r, blocks);
    return codes;
}

static void codes_free(char **codes, uint32_t qty)
{
    for (uint32_t i = 0; i < qty; i++)
        free(codes[i]);
    free(codes);
}

/* The codes in r are well formed, pairwise distinct and equal to want. */
static void expect_codes(const struct sbx_run *r, char *const *want, uint32_t qty, const char *what)
{
    cr_assert_eq(r->res.ncodes, qty, "%s: %zu codes", what, r->res.ncodes);
    for (uint32_t i = 0; i < qty; i++) {
        const char *c = r->res.codes[i].code;
        cr_assert(code_well_formed(c), "%s: code %u malformed", what, i);
        cr_assert_str_eq(c, want[i], "%s: code %u differs from the order's", what, i);
        cr_assert_null(r->res.codes[i].card_no);
        for (uint32_t j = 0; j < i; j++)
            cr_assert_str_neq(c, r->res.codes[j].code, "%s: codes %u and %u equal", what, i, j);
    }
}

static const struct {
    const char *product;
    struct expect order;
    struct expect query_before;
    struct expect query_after;
} card_cases[] = {
    {"sandbox.card",
     {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, 0},
     {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, 0},
     {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, 0}},
    {"sandbox.card.out",
     {PERKHUB_DEFINITE_FAILURE, PERKHUB_STATE_FAILED, "out_of_stock", 0},
     {PERKHUB_OK, PERKHUB_STATE_FAILED, "out_of_stock", 0},
     {PERKHUB_OK, PERKHUB_STATE_FAILED, "out_of_stock", 0}},
    {"sandbox.card.timeout",
     {NO_ANSWER, 0, NULL, SLOW_MS},
     {PERKHUB_OK, PERKHUB_STATE_PROCESSING, NULL, 0},
     {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, 0}},
    {"sandbox.card.timeout.fail",
     {NO_ANSWER, 0, NULL, SLOW_MS},
     {PERKHUB_OK, PERKHUB_STATE_PROCESSING, NULL, 0},
     {PERKHUB_OK, PERKHUB_STATE_FAILED, "order_failed", 0}},
    {"sandbox.card.slow",
     {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, SLOW_MS},
     {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, 0},
     {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, 0}},
};

/* Every card product, quantity 3: a success carries exactly the codes derived
 * from the reference, whether it comes from the order or from a later query
 * (a timed-out order delivers its codes through the query). */
Test(sandbox, card_products)
{
    phtk *tk = sbx_open(NULL);
    size_t blocks = phtk_blocks(tk);
    for (size_t i = 0; i < sizeof card_cases / sizeof card_cases[0]; i++) {
        char ref[32], what[96];
        snprintf(ref, sizeof ref, "C-%zu", i);
        char **want = codes_of(tk, ref, 3);
        struct perkhub_op op = card_op(ref, card_cases[i].product, 3);
        struct perkhub_op q = query_of(&op);
        struct sbx_run r;
        const struct expect *steps[] = {&card_cases[i].order, &card_cases[i].query_before,
                                        &card_cases[i].query_after};
        const int64_t at[] = {T0, T0 + SETTLE_MS - 1, T0 + SETTLE_MS};
        for (size_t s = 0; s < 3; s++) {
            snprintf(what, sizeof what, "%s step %zu", card_cases[i].product, s);
            sbx_run(tk, s == 0 ? &op : &q, at[s], &r);
            expect_run(&r, steps[s], what);
            if (r.outcome != NO_ANSWER && r.res.state == PERKHUB_STATE_SUCCEEDED) {
                expect_codes(&r, want, 3, what);
                cr_assert_eq(r.res.amount, 3 * 2800, "%s: amount", what);
            } else
                cr_assert_eq(r.res.ncodes, 0, "%s: codes without success", what);
            if (s > 0) {
                cr_assert_str_eq(r.res.order_ref, ref, "%s", what);
                if (r.res.state != PERKHUB_STATE_NOT_FOUND)
                    cr_assert_str_eq(r.res.product_id, card_cases[i].product, "%s", what);
            }
            sbx_run_clear(tk, &r, blocks);
        }
        codes_free(want, 3);
    }
    cr_assert(!strstr(phtk_log(tk), "SBX-"), "a code reached the log");
    phtk_close(tk);
}

/* Codes are a function of (seed, ref, index): the same on every instance with
 * the same seed, different for another reference or another seed. */
Test(sandbox, codes_are_deterministic)
{
    static const char *const other_seed[] = {"seed", "another", NULL};
    phtk *a = sbx_open(NULL), *b = sbx_open(NULL), *c = sbx_open(other_seed);
    char **a1 = codes_of(a, "D-1", 5), **b1 = codes_of(b, "D-1", 5);
    char **a2 = codes_of(a, "D-2", 5), **c1 = codes_of(c, "D-1", 5);
    char **one = codes_of(a, "D-1", 1);
    char **x1 = codes_of(a, "A1", 1), **x2 = codes_of(a, "A", 11);
    for (size_t i = 0; i < 5; i++) {
        cr_assert_str_eq(a1[i], b1[i], "same seed, same ref: same code %zu", i);
        for (size_t j = 0; j < 5; j++) {
            cr_assert_str_neq(a1[i], a2[j], "another ref must give other codes");
            cr_assert_str_neq(a1[i], c1[j], "another seed must give other codes");
        }
    }
    cr_assert_str_eq(one[0], a1[0], "the i-th code does not depend on the quantity");

    /* The documented derivation, pinned (docs/sandbox.md quotes these values):
     * printf 'A-1:0' | openssl dgst -sha256 -hmac sandbox */
    char **pinned = codes_of(a, "A-1", 2);
    cr_assert_str_eq(pinned[0], "SBX-4FC7BF9939C88B75");
    cr_assert_str_eq(pinned[1], "SBX-B00619700D89BB9F");
    codes_free(pinned, 2);
    cr_assert_str_neq(x1[0], x2[10], "(A1, 0) and (A, 10) must not collide");
    codes_free(a1, 5), codes_free(b1, 5), codes_free(a2, 5), codes_free(c1, 5);
    codes_free(one, 1), codes_free(x1, 1), codes_free(x2, 11);
    phtk_close(a), phtk_close(b), phtk_close(c);
}

/* ======================= ORDERS AND QUERIES THE SANDBOX CANNOT KNOW ======= */

Test(sandbox, orders_refused)
{
    phtk *tk = sbx_open(NULL);
    size_t blocks = phtk_blocks(tk);
    struct perkhub_op ops[] = {
        card_op("U-1", "no.such.product", 1),
        card_op("U-2", "sandbox.recharge", 1), /* a recharge product bought as codes */
        card_op("U-3", "sandbox.card", 0),
        card_op("U-4", "sandbox.card", 100001),
        recharge_op("U-5", "13800000001"),
    };
    ops[4].product_id = "sandbox.card"; /* a card product recharged */
    const char *reasons[] = {"unknown_product", "unknown_product", "invalid_quantity",
                             "invalid_quantity", "unknown_product"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        struct sbx_run r;
        sbx_run(tk, &ops[i], T0, &r);
        const struct expect e = {PERKHUB_DEFINITE_FAILURE, PERKHUB_STATE_FAILED, reasons[i], 0};
        expect_run(&r, &e, ops[i].order_ref);
        sbx_run_clear(tk, &r, blocks);
    }
    /* An order whose reference the sandbox cannot read is refused outright. */
    struct perkhub_op bad = card_op("not a ref!", "sandbox.card", 1);
    struct sbx_run r;
    sbx_run(tk, &bad, T0, &r);
    cr_assert_eq(r.http_status, 400);
    const struct expect e = {PERKHUB_DEFINITE_FAILURE, 0, "bad_request", 0};
    expect_run(&r, &e, "malformed ref");
    sbx_run_clear(tk, &r, blocks);
    phtk_close(tk);
}

Test(sandbox, queries_not_found)
{
    phtk *tk = sbx_open(NULL);
    size_t blocks = phtk_blocks(tk);
    char long_ref[80];
    memset(long_ref, 'a', 65);
    long_ref[65] = '\0';
    struct perkhub_op orders[] = {
        card_op("Q-1", "no.such.product", 1), card_op("bad ref", "sandbox.card", 1),
        card_op(long_ref, "sandbox.card", 1), card_op("", "sandbox.card", 1),
        recharge_op("Q-5", "13800000001"),
    };
    orders[4].product_id = "sandbox.card"; /* kind and product disagree */
    for (size_t i = 0; i < sizeof orders / sizeof orders[0]; i++) {
        struct perkhub_op q = query_of(&orders[i]);
        struct sbx_run r;
        sbx_run(tk, &q, T0 + 10 * SETTLE_MS, &r);
        cr_assert_eq(r.http_status, 404, "case %zu: %d", i, r.http_status);
        const struct expect e = {PERKHUB_OK, PERKHUB_STATE_NOT_FOUND, NULL, 0};
        expect_run(&r, &e, "not found");
        sbx_run_clear(tk, &r, blocks);
    }
    phtk_close(tk);
}

/* A query that leaves the order kind to the product (order_kind 0) and one
 * sent with created_at 0 (taken as long ago: the final outcome). */
Test(sandbox, query_defaults)
{
    phtk *tk = sbx_open(NULL);
    size_t blocks = phtk_blocks(tk);
    struct perkhub_op op = recharge_op("K-1", "13800000006");
    struct perkhub_op q = query_of(&op);
    q.order_kind = 0;
    struct sbx_run r;
    sbx_run(tk, &q, T0, &r);
    const struct expect processing = {PERKHUB_OK, PERKHUB_STATE_PROCESSING, NULL, 0};
    expect_run(&r, &processing, "order_kind 0");
    sbx_run_clear(tk, &r, blocks);

    q.created_at_ms = 0;
    sbx_run(tk, &q, T0, &r);
    const struct expect done = {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, 0};
    expect_run(&r, &done, "created 0");
    sbx_run_clear(tk, &r, blocks);

    /* A recharge query without the account is refused (the core repeats it),
     * never answered with a state the sandbox cannot know. */
    q.account = NULL;
    sbx_run(tk, &q, T0, &r);
    cr_assert_eq(r.http_status, 400);
    const struct expect refused = {PERKHUB_DEFINITE_FAILURE, 0, "bad_request", 0};
    expect_run(&r, &refused, "no account");
    sbx_run_clear(tk, &r, blocks);
    q.account = "13800000006";

    /* The host clock before the attempt's creation: not settled yet. */
    q.created_at_ms = T0;
    sbx_run(tk, &q, T0 - 5000, &r);
    expect_run(&r, &processing, "clock behind");
    sbx_run_clear(tk, &r, blocks);
    phtk_close(tk);
}

/* settle_ms and slow_ms come from the config. */
Test(sandbox, timing_from_config)
{
    static const char *const kv[] = {"settle_ms", "500", "slow_ms", "50", NULL};
    phtk *tk = sbx_open(kv);
    size_t blocks = phtk_blocks(tk);
    struct perkhub_op op = card_op("T-1", "sandbox.card.timeout", 1);
    struct perkhub_op q = query_of(&op);
    struct sbx_run r;
    sbx_run(tk, &op, T0, &r);
    const struct expect hang = {NO_ANSWER, 0, NULL, 50};
    expect_run(&r, &hang, "hang");
    sbx_run_clear(tk, &r, blocks);
    sbx_run(tk, &q, T0 + 499, &r);
    const struct expect processing = {PERKHUB_OK, PERKHUB_STATE_PROCESSING, NULL, 0};
    expect_run(&r, &processing, "before");
    sbx_run_clear(tk, &r, blocks);
    sbx_run(tk, &q, T0 + 500, &r);
    const struct expect done = {PERKHUB_OK, PERKHUB_STATE_SUCCEEDED, NULL, 0};
    expect_run(&r, &done, "after");
    sbx_run_clear(tk, &r, blocks);
    struct perkhub_op slow = recharge_op("T-2", "13800000005");
    sbx_run(tk, &slow, T0, &r);
    cr_assert_eq(r.delay_ms, 50);
    cr_assert(r.delay_ms < SUP_TIMEOUT, "a slow answer still beats the default timeout");
    sbx_run_clear(tk, &r, blocks);
    phtk_close(tk);
}

/* ======================= CATALOG, STOCK, BALANCE ========================== */

Test(sandbox, catalog)
{
    static const struct {
        const char *id;
        int kind;
        int64_t stock;
    } want[] = {
        {"sandbox.card", PERKHUB_OP_CARD_ORDER, -1},
        {"sandbox.card.out", PERKHUB_OP_CARD_ORDER, 0},
        {"sandbox.card.timeout", PERKHUB_OP_CARD_ORDER, -1},
        {"sandbox.card.timeout.fail", PERKHUB_OP_CARD_ORDER, -1},
        {"sandbox.card.slow", PERKHUB_OP_CARD_ORDER, -1},
        {"sandbox.recharge", PERKHUB_OP_RECHARGE, -1},
    };
    phtk *tk = sbx_open(NULL);
    size_t blocks = phtk_blocks(tk);
    /* two pages of a multi-step exchange: 4 products, then 2 */
    struct perkhub_op op = {.kind = PERKHUB_OP_CATALOG};
    struct sbx_run r;
    sbx_run(tk, &op, T0, &r);
    cr_assert_eq(r.outcome, PERKHUB_OK);
    cr_assert_eq(r.res.nitems, 4);
    cr_assert_eq(r.res.next, 1, "a second page follows");
    cr_assert_str_eq(r.res.next_state, "next_page");
    for (size_t i = 0; i < 4; i++)
        cr_assert_str_eq(r.res.items[i].product_id, want[i].id);
    sbx_run_clear(tk, &r, blocks);
    op.step = 1;
    op.state = "next_page";
    sbx_run(tk, &op, T0, &r);
    cr_assert_eq(r.outcome, PERKHUB_OK);
    cr_assert_eq(r.res.nitems, 2);
    cr_assert_eq(r.res.next, 0, "the last page");
    for (size_t k = 0; k < 2; k++) {
        size_t i = k + 4;
        const struct perkhub_item *it = &r.res.items[k];
        cr_assert_str_eq(it->product_id, want[i].id);
        cr_assert_eq(it->kind, want[i].kind, "%s", it->product_id);
        cr_assert_eq(it->stock, want[i].stock, "%s", it->product_id);
        cr_assert_eq(it->face_value, it->kind == PERKHUB_OP_RECHARGE ? 5000 : 3000);
        cr_assert_eq(it->price, it->kind == PERKHUB_OP_RECHARGE ? 4900 : 2800);
        cr_assert_eq(it->on_sale, 1);
        cr_assert(it->name && *it->name);
    }
    sbx_run_clear(tk, &r, blocks);
    phtk_close(tk);
}

Test(sandbox, stock_and_balance)
{
    phtk *tk = sbx_open(NULL);
    size_t blocks = phtk_blocks(tk);
    static const struct {
        const char *product;
        int outcome;
        int64_t stock, price;
    } cases[] = {
        {"sandbox.card", PERKHUB_OK, -1, 2800},
        {"sandbox.card.out", PERKHUB_OK, 0, 2800},
        {"sandbox.recharge", PERKHUB_OK, -1, 4900},
        {"no.such.product", PERKHUB_DEFINITE_FAILURE, -1, -1},
        {"a&product=sandbox.card", PERKHUB_DEFINITE_FAILURE, -1, -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct perkhub_op op = {.kind = PERKHUB_OP_STOCK_CHECK, .product_id = cases[i].product};
        struct sbx_run r;
        sbx_run(tk, &op, T0, &r);
        cr_assert_eq(r.outcome, cases[i].outcome, "%s", cases[i].product);
        cr_assert_eq(r.res.stock, cases[i].stock, "%s", cases[i].product);
        cr_assert_eq(r.res.price, cases[i].price, "%s", cases[i].product);
        if (cases[i].outcome != PERKHUB_OK)
            cr_assert_str_eq(r.res.reason, "unknown_product");
        sbx_run_clear(tk, &r, blocks);
    }
    struct perkhub_op op = {.kind = PERKHUB_OP_BALANCE};
    struct sbx_run r;
    sbx_run(tk, &op, T0, &r);
    cr_assert_eq(r.outcome, PERKHUB_OK);
    cr_assert_eq(r.res.balance, 100000000);
    sbx_run_clear(tk, &r, blocks);
    phtk_close(tk);
}

/* ABI 1.2: the statement is the configured one, for any period; entries that do
 * not read REF:FEN[:free] are left out. */
Test(sandbox, statement)
{
    static const char *const kv[] = {"statement",
                                     "ab12cd34-1-1:4900 ab12cd34-2-1:0:free bad ab12cd34-3-1:x "
                                     "ab12cd34-4-1:5100:maybe  ab12cd34-5-1:5000",
                                     NULL};
    phtk *tk = sbx_open(kv);
    size_t blocks = phtk_blocks(tk);
    struct perkhub_op op = {
        .kind = PERKHUB_OP_STATEMENT, .period_from_ms = T0, .period_to_ms = T0 + 86400000};
    struct sbx_run r;
    sbx_run(tk, &op, T0, &r);
    cr_assert_eq(r.http_status, 200);
    cr_assert_eq(r.outcome, PERKHUB_OK);
    cr_assert_eq(r.res.nstatement, 3, "%s", r.body);
    const struct perkhub_statement_line *l = r.res.statement;
    cr_assert_str_eq(l[0].order_ref, "ab12cd34-1-1");
    cr_assert_str_eq(l[0].supplier_order_id, "SBXO-ab12cd34-1-1");
    cr_assert_eq(l[0].amount, 4900);
    cr_assert_eq(l[0].charged, 1);
    cr_assert_eq(l[0].time_ms, -1);
    cr_assert_str_eq(l[1].order_ref, "ab12cd34-2-1");
    cr_assert_eq(l[1].charged, 0);
    cr_assert_str_eq(l[2].order_ref, "ab12cd34-5-1");
    cr_assert_eq(l[2].amount, 5000);
    sbx_run_clear(tk, &r, blocks);
    phtk_close(tk);

    /* without the setting: an empty statement */
    tk = sbx_open(NULL);
    blocks = phtk_blocks(tk);
    sbx_run(tk, &op, T0, &r);
    cr_assert_eq(r.outcome, PERKHUB_OK);
    cr_assert_eq(r.res.nstatement, 0);
    sbx_run_clear(tk, &r, blocks);
    phtk_close(tk);
}

/* ======================= THE REQUEST AND THE WIRE ========================= */

/* The account travels in the body only, percent-encoded; never in the URL. */
Test(sandbox, request_shape)
{
    phtk *tk = sbx_open(NULL);
    size_t blocks = phtk_blocks(tk);
    struct perkhub_op op = recharge_op("S-1", "13800000001");
    struct perkhub_request req;
    cr_assert_eq(phtk_build(tk, &op, &req), PERKHUB_OK);
    cr_assert_str_eq(req.method, "POST");
    cr_assert_str_eq(req.url, "sandbox://local/order");
    cr_assert_str_eq(phtk_header(&req, "content-type"), "application/x-www-form-urlencoded");
    cr_assert_eq(strlen(req.body), req.body_len);
    cr_assert_str_eq(req.body, "kind=recharge&product=sandbox.recharge&qty=1&ref=S-1"
                               "&created=1795000000000&account=13800000001");
    phtk_request_clear(tk, &req);

    struct perkhub_op q = query_of(&op);
    q.account = "138 0000&x=1";
    cr_assert_eq(phtk_build(tk, &q, &req), PERKHUB_OK);
    cr_assert_str_eq(req.url, "sandbox://local/query");
    cr_assert(strstr(req.body, "&account=138%200000%26x%3D1"), "%s", req.body);
    phtk_request_clear(tk, &req);

    struct perkhub_op card = card_op("S-2", "sandbox.card", 2);
    cr_assert_eq(phtk_build(tk, &card, &req), PERKHUB_OK);
    cr_assert(!strstr(req.body, "account"), "no account field for card orders");
    phtk_request_clear(tk, &req);

    struct perkhub_op stock = {.kind = PERKHUB_OP_STOCK_CHECK, .product_id = "a b"};
    cr_assert_eq(phtk_build(tk, &stock, &req), PERKHUB_OK);
    cr_assert_str_eq(req.method, "GET");
    cr_assert_str_eq(req.url, "sandbox://local/stock?product=a%20b");
    phtk_request_clear(tk, &req);

    struct perkhub_op weird = {.kind = 99};
    cr_assert_eq(phtk_build(tk, &weird, &req), PERKHUB_ERR_UNSUPPORTED);
    phtk_request_clear(tk, &req);
    cr_assert_eq(phtk_blocks(tk), blocks, "the requests were not all given back");
    phtk_close(tk);
}

/* Requests the sandbox does not serve get the answers a web server would give. */
Test(sandbox, serve_odd_requests)
{
    phtk *tk = sbx_open(NULL);
    size_t blocks = phtk_blocks(tk);
    static const struct {
        const char *method, *url, *body;
        int status;
        const char *error;
    } cases[] = {
        {"GET", "http://example.com/catalog", NULL, 404, "no_such_endpoint"},
        {"GET", "sandbox://local/nothing", NULL, 404, "no_such_endpoint"},
        {"POST", "sandbox://local/catalog", NULL, 405, "method_not_allowed"},
        {"GET", "sandbox://local/order", NULL, 405, "method_not_allowed"},
        {"POST", "sandbox://local/order", "kind=card&product=sandbox.card&qty=1&ref=%zz", 400,
         "bad_request"},
        {"POST", "sandbox://local/order", "kind=gift&product=sandbox.card&qty=1&ref=A", 400,
         "bad_request"},
        {"POST", "sandbox://local/query", "kind=card&product=sandbox.card&qty=1&ref=A", 400,
         "bad_request"},
        {"POST", "sandbox://local/query", "kind=card&product=sandbox.card&qty=1&ref=A&created=-5",
         400, "bad_request"},
        {"POST", "sandbox://local/query", "kind=card&product=sandbox.card&qty=0&ref=A&created=5",
         400, "bad_request"},
        {"POST", "sandbox://local/order", "kind=card&product=sandbox.card&qty=1&ref=A%00B", 400,
         "bad_request"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char url[128], body[256];
        snprintf(url, sizeof url, "%s", cases[i].url);
        struct perkhub_request req = {.method = cases[i].method, .url = url};
        if (cases[i].body) {
            req.body = strcpy(body, cases[i].body);
            req.body_len = strlen(body);
        }
        struct perkhub_local_reply reply;
        cr_assert_eq(phtk_serve(tk, &req, &reply), PERKHUB_OK);
        cr_assert_eq(reply.http_status, cases[i].status, "case %zu: %d", i, reply.http_status);
        cr_assert(strstr(reply.body, cases[i].error), "case %zu: %s", i, reply.body);
        phtk_reply_clear(tk, &reply);
        cr_assert_eq(phtk_blocks(tk), blocks);
    }
    /* A body is read as body_len bytes: what follows is not part of it. */
    char body[] = "kind=card&product=sandbox.card&qty=1&ref=L-1XXXX";
    char url[] = "sandbox://local/order";
    struct perkhub_request req = {
        .method = "POST", .url = url, .body = body, .body_len = strlen(body) - 4};
    struct perkhub_local_reply reply;
    cr_assert_eq(phtk_serve(tk, &req, &reply), PERKHUB_OK);
    cr_assert_eq(reply.http_status, 200);
    cr_assert(strstr(reply.body, "\"ref\":\"L-1\""), "%s", reply.body);
    phtk_reply_clear(tk, &reply);
    phtk_close(tk);
}

/* parse_response on replies the sandbox would never send: when in doubt,
 * AMBIGUOUS for orders, and a query that did not work is not a state. */
Test(sandbox, parse_doubtful_replies)
{
    phtk *tk = sbx_open(NULL);
    size_t blocks = phtk_blocks(tk);
    struct perkhub_op card = card_op("P-1", "sandbox.card", 2);
    struct perkhub_op q = query_of(&card);
    static const struct {
        int query;
        int status;
        const char *body;
        int outcome;
        const char *reason;
    } cases[] = {
        {0, 200, "not json", PERKHUB_AMBIGUOUS, NULL},
        {0, 200, "[1,2]", PERKHUB_AMBIGUOUS, NULL},
        {0, 200, "{\"ref\":\"P-2\",\"status\":\"success\",\"codes\":[\"a\",\"b\"]}",
         PERKHUB_AMBIGUOUS, NULL},
        {0, 200, "{\"ref\":\"P-1\",\"status\":\"success\",\"codes\":[\"a\"]}", PERKHUB_AMBIGUOUS,
         NULL},
        {0, 200, "{\"ref\":\"P-1\",\"status\":\"success\",\"codes\":[\"a\",\"\"]}",
         PERKHUB_AMBIGUOUS, NULL},
        {0, 200, "{\"ref\":\"P-1\",\"status\":\"success\"}", PERKHUB_AMBIGUOUS, NULL},
        {0, 200, "{\"ref\":\"P-1\",\"status\":\"weird\"}", PERKHUB_AMBIGUOUS, NULL},
        {0, 404, "{\"error\":\"order_not_found\"}", PERKHUB_AMBIGUOUS, NULL},
        {0, 405, "{\"error\":\"method_not_allowed\"}", PERKHUB_AMBIGUOUS, NULL},
        {0, 400, "{\"error\":\"bad_request\"}", PERKHUB_DEFINITE_FAILURE, "bad_request"},
        {0, 200, "{\"ref\":\"P-1\",\"status\":\"failed\",\"error\":\"Account 13800000001\"}",
         PERKHUB_DEFINITE_FAILURE, "failed"},
        {1, 200, "garbage", PERKHUB_AMBIGUOUS, NULL},
        {1, 404, "{\"error\":\"no_such_endpoint\"}", PERKHUB_AMBIGUOUS, NULL},
        {1, 404, "{\"error\":\"order_not_found\"}", PERKHUB_OK, NULL},
        {1, 200, "{\"ref\":\"P-1\",\"status\":\"failed\"}", PERKHUB_OK, "failed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct perkhub_result res;
        int st = phtk_parse(tk, cases[i].query ? &q : &card, cases[i].status, cases[i].body,
                            strlen(cases[i].body), &res);
        cr_assert_eq(st, cases[i].outcome, "case %zu: %d", i, st);
        if (cases[i].reason)
            cr_assert_str_eq(res.reason, cases[i].reason, "case %zu", i);
        cr_assert(!res_mentions(&res, "13800000001"), "case %zu: foreign text passed on", i);
        phtk_result_clear(tk, &res);
        cr_assert_eq(phtk_blocks(tk), blocks, "case %zu leaked", i);
    }
    phtk_close(tk);
}

/* The serve answer depends only on (instance, request, now): asking twice at
 * the same clock gives the same bytes. */
Test(sandbox, serve_is_pure)
{
    phtk *tk = sbx_open(NULL);
    static const char *const accounts[] = {"13800000003", "13800000007", "13800000004"};
    for (size_t i = 0; i < 3; i++) {
        struct perkhub_op op = recharge_op("Z-1", accounts[i]);
        struct perkhub_op q = query_of(&op);
        struct perkhub_request req;
        cr_assert_eq(phtk_build(tk, &q, &req), PERKHUB_OK);
        for (int64_t at = T0; at <= T0 + SETTLE_MS; at += SETTLE_MS) {
            struct perkhub_local_reply a, b;
            phtk_set_now(tk, at);
            cr_assert_eq(phtk_serve(tk, &req, &a), PERKHUB_OK);
            cr_assert_eq(phtk_serve(tk, &req, &b), PERKHUB_OK);
            cr_assert_eq(a.http_status, b.http_status);
            cr_assert_eq(a.body_len, b.body_len);
            cr_assert_eq(memcmp(a.body, b.body, a.body_len), 0);
            phtk_reply_clear(tk, &a);
            phtk_reply_clear(tk, &b);
        }
        phtk_request_clear(tk, &req);
    }
    cr_assert(!strstr(phtk_log(tk), "1380000000"), "an account reached the log");
    phtk_close(tk);
}

/* ======================= REDEMPTION STATUS (ABI 1.3) ====================== */

static struct perkhub_op redemption_op(const char *code, const char *card)
{
    return (struct perkhub_op){.kind = PERKHUB_OP_REDEMPTION,
                               .product_id = "sandbox.card",
                               .code = code,
                               .card_no = card,
                               .created_at_ms = T0};
}

/* The documented rule (docs/sandbox.md): the code's text decides, in any case;
 * the code travels in the request body only and never comes back. */
Test(sandbox, redemption_status)
{
    static const struct {
        const char *code, *card;
        int outcome, redeemed;
        int64_t delay_ms;
    } cases[] = {
        {"MT-REDEEMED-0001", NULL, PERKHUB_OK, 1, 0},
        {"mt-redeemed-0002", "6200000000000001", PERKHUB_OK, 1, 0},
        {"MT-UNKNOWN-0003", NULL, PERKHUB_OK, -1, 0},
        {"MT-HANG-0004", NULL, NO_ANSWER, -1, SLOW_MS},
        {"SBX-0123456789ABCDEF", NULL, PERKHUB_OK, 0, 0},
        {"IQY-15D7-2D61-C76F", NULL, PERKHUB_OK, 0, 0},
    };
    phtk *tk = sbx_open(NULL);
    size_t base = phtk_blocks(tk);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct perkhub_op op = redemption_op(cases[i].code, cases[i].card);
        struct perkhub_request req;
        cr_assert_eq(phtk_build(tk, &op, &req), PERKHUB_OK);
        cr_assert_str_eq(req.method, "POST");
        cr_assert(!str_has(req.url, cases[i].code), "case %zu: the code is in the URL", i);
        cr_assert(req.body && memmem(req.body, req.body_len, "code=", 5), "case %zu: no code", i);
        phtk_request_clear(tk, &req);

        struct sbx_run r;
        sbx_run(tk, &op, T0 + 1000, &r);
        cr_assert_eq(r.outcome, cases[i].outcome, "case %zu: outcome %d (body %s)", i, r.outcome,
                     r.body);
        cr_assert_eq(r.delay_ms, cases[i].delay_ms, "case %zu", i);
        if (r.outcome == PERKHUB_OK) {
            cr_assert_eq(r.res.redeemed, cases[i].redeemed, "case %zu: redeemed %d", i,
                         r.res.redeemed);
            cr_assert_eq(r.res.redeemed_at_ms, 0, "the sandbox does not know when");
        }
        /* canary: the code and card number never come back */
        cr_assert(!str_has(r.body, cases[i].code), "case %zu: the reply echoes the code", i);
        cr_assert(!res_mentions(&r.res, cases[i].code), "case %zu: a result holds the code", i);
        cr_assert(!cases[i].card || !str_has(r.body, cases[i].card), "case %zu: card echoed", i);
        sbx_run_clear(tk, &r, base);
        cr_assert(!str_has(phtk_log(tk), cases[i].code), "case %zu: the code reached the log", i);
    }
    phtk_close(tk);
}

/* A reply the plugin does not know is AMBIGUOUS (the core reads "cannot tell"),
 * never a "not redeemed". */
Test(sandbox, redemption_unclear_reply)
{
    phtk *tk = sbx_open(NULL);
    struct perkhub_op op = redemption_op("MT-REDEEMED-0001", NULL);
    static const struct {
        int status;
        const char *body;
    } cases[] = {
        {200, "{\"status\":\"maybe\"}"},
        {200, "{}"},
        {404, "{\"error\":\"no_such_endpoint\"}"},
        {200, "not json"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct perkhub_result res;
        int st = phtk_parse(tk, &op, cases[i].status, cases[i].body, strlen(cases[i].body), &res);
        cr_assert_eq(st, PERKHUB_AMBIGUOUS, "case %zu: %d", i, st);
        phtk_result_clear(tk, &res);
    }
    phtk_close(tk);
}

/* ---- the conformance suite (perkhub/testkit.h) ----------------------------
 * The sandbox is its own upstream, so its "fixtures" are what serve_local
 * answers (a pure function of the request and the clock): the good replies of
 * a recharge and a card order, the query's not-found reply (13800000007 is
 * hidden from queries until it settles), and one reply with a status the
 * protocol does not have. A LOCAL plugin signs nothing: no request vector.
 * Its protocol documents one 4xx: 400 bad_request, an order refused unread. */
static char *sbx_served(phtk *tk, const struct perkhub_op *op, int *status)
{
    struct perkhub_request req;
    struct perkhub_local_reply reply;
    cr_assert_eq(phtk_build(tk, op, &req), PERKHUB_OK);
    cr_assert_eq(phtk_serve(tk, &req, &reply), PERKHUB_OK);
    *status = reply.http_status;
    char *body = strndup(reply.body ? reply.body : "", reply.body_len);
    cr_assert_not_null(body);
    phtk_reply_clear(tk, &reply);
    phtk_request_clear(tk, &req);
    return body;
}

Test(sandbox, conformance)
{
    static const char *const kv[] = {NULL};
    phtk *tk = sbx_open(kv);
    phtk_set_now(tk, T0);
    struct perkhub_op recharge = recharge_op("SUITE-R1", "13800000001");
    struct perkhub_op card = card_op("SUITE-C1", "sandbox.card", 2);
    struct perkhub_op hidden = query_of(&(const struct perkhub_op){.kind = PERKHUB_OP_RECHARGE,
                                                                   .order_ref = "SUITE-H1",
                                                                   .product_id = "sandbox.recharge",
                                                                   .quantity = 1,
                                                                   .account = "13800000007",
                                                                   .created_at_ms = T0});
    int rs, cs, qs;
    char *r_body = sbx_served(tk, &recharge, &rs), *c_body = sbx_served(tk, &card, &cs);
    char *q_body = sbx_served(tk, &hidden, &qs);
    phtk_close(tk);
    cr_assert_eq(qs, 404, "the hidden order is not found before it settles: %s", q_body);

    static const int documented_4xx[] = {400, 0};
    const struct phtk_suite_order orders[] = {
        {.op = recharge,
         .now_ms = T0,
         .good = {.http_status = rs, .body = r_body},
         .unknown_code = {.body = "{\"ref\":\"SUITE-R1\",\"status\":\"on_hold\"}"},
         .documented_4xx = documented_4xx},
        {.op = card,
         .now_ms = T0,
         .good = {.http_status = cs, .body = c_body},
         .unknown_code = {.body = "{\"ref\":\"SUITE-C1\",\"status\":\"on_hold\"}"},
         .documented_4xx = documented_4xx},
    };
    const struct phtk_suite spec = {
        .desc = perkhub_plugin_entry(),
        .config = kv,
        .orders = orders,
        .norders = PHTK_N(orders),
        .query = hidden,
        .query_now_ms = T0,
        .query_not_found = {.http_status = qs, .body = q_body},
        .query_unknown_code = {.body = "{\"ref\":\"SUITE-H1\",\"status\":\"on_hold\"}"},
    };
    static char report[16384];
    int failed = phtk_suite_run(&spec, report, sizeof report);
    cr_assert_eq(failed, 0, "%d conformance check(s) failed:\n%s", failed, report);
    free(r_body);
    free(c_body);
    free(q_body);
}
