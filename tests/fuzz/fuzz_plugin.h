/*
 * fuzz_plugin.h — what the plugin harnesses (fuzz_gateway.c, fuzz_rewards.c,
 * fuzz_sandbox.c, fuzz_manual.c) share: a plugin instance opened through the
 * SDK test kit (the core's real host table and allocator accounting), the
 * normalized operation a fuzz input describes, and the checks every reply,
 * callback and request must pass whatever the plugin.
 *
 * Each input gets a fresh instance (phtk_open ... phtk_close): nothing carries
 * over from one input to the next, so every crash reproduces from its file
 * alone, and the kit's log (a memfd) stays small.
 *
 * The checks, on top of ASan, UBSan and LeakSanitizer:
 *   - the outcome is one of the SDK's status codes, the state one of its order
 *     states; a result's quantity, amount, stock and price are -1 (unknown) or
 *     >= 0;
 *   - a card order that SUCCEEDED carries exactly op->quantity codes, none
 *     empty; a verified callback names an order reference;
 *   - a reason is short snake_case ([a-z0-9_], at most 64 bytes);
 *   - a request has a URL and header lines without CR, LF or NUL, at most
 *     PERKHUB_MAX_HEADERS of them;
 *   - after the clear, the instance holds exactly the host blocks it held
 *     after init (a plugin leak is invisible to LeakSanitizer: the kit
 *     reclaims it at close);
 *   - no secret of the configuration, no account and none of the codes the
 *     seeds deliver (each harness lists them; mutations keep them often
 *     enough) reaches the instance's log.
 */
#ifndef PH_FUZZ_PLUGIN_H
#define PH_FUZZ_PLUGIN_H

#include <perkhub/plugin.h>
#include <perkhub/testkit.h>

#include "fuzz.h"

#define FZP_NOW_MS  INT64_C(1795525200000) /* 2026-11-24 21:00 Beijing: the fixtures' clock */
#define FZP_ACCOUNT "13971234567"
#define FZP_REF     "REF-0001"

/* One instance for one input. */
typedef struct fzp_kit {
    phtk *tk;
    size_t baseline;            /* host blocks the instance holds after init */
    const char *const *secrets; /* NULL-terminated; never in the log */
    char codes[4][64];          /* long delivered codes, checked at close */
    size_t ncodes;
} fzp_kit;

static inline void fzp_open(fzp_kit *k, const char *const *kv, const char *const *secrets)
{
    char err[256] = "";
    memset(k, 0, sizeof *k);
    k->tk = phtk_open(perkhub_plugin_entry(), kv, err, sizeof err);
    FZ_CHECK(k->tk != NULL, "phtk_open: %s", err);
    phtk_set_now(k->tk, FZP_NOW_MS);
    k->baseline = phtk_blocks(k->tk);
    k->secrets = secrets;
}

static inline void fzp_close(fzp_kit *k)
{
    FZ_CHECK(phtk_blocks(k->tk) == k->baseline, "plugin leak: %zu host blocks, %zu after init",
             phtk_blocks(k->tk), k->baseline);
    const char *log = phtk_log(k->tk);
    for (size_t i = 0; k->secrets && k->secrets[i]; i++)
        FZ_CHECK(!strstr(log, k->secrets[i]), "secret #%zu in the log", i);
    FZ_CHECK(!strstr(log, FZP_ACCOUNT), "the account in the log");
    phtk_close(k->tk);
}

/* The operation an input describes: sel picks the kind and step, qty the
 * quantity; strings come from the harness's own tables (real product ids reach
 * deeper than random ones). */
static inline struct perkhub_op fzp_op(unsigned sel, unsigned qty, const char *const *products,
                                       size_t nproducts)
{
    static const char *const states[] = {NULL, "query", "1", ""};
    struct perkhub_op op = {
        .struct_size = sizeof op,
        .kind = PERKHUB_OP_CATALOG + (int)(sel % 6),
        .step = (int)((sel / 6) % 3),
        .order_ref = FZP_REF,
        .supplier_order_id = (sel / 18) % 2 ? "SUP-77" : NULL,
        .order_kind = (sel / 36) % 2 ? PERKHUB_OP_RECHARGE : PERKHUB_OP_CARD_ORDER,
        .product_id = products[(qty / 8) % nproducts],
        .quantity = 1 + qty % 8,
        .account = FZP_ACCOUNT,
        .unit_price = 2850,
        .face_value = 3000,
        .created_at_ms = FZP_NOW_MS - 1000,
        .callback_url = "http://127.0.0.1:8080/v1/callbacks/test",
    };
    op.state = op.step ? states[(sel / 72) % 4] : NULL;
    return op;
}

static inline int fzp_reason_ok(const char *r)
{
    size_t n = 0;
    for (; r[n]; n++)
        if (!((r[n] >= 'a' && r[n] <= 'z') || (r[n] >= '0' && r[n] <= '9') || r[n] == '_'))
            return 0;
    return n >= 1 && n <= 64;
}

static inline int fzp_line_ok(const char *s)
{
    return s && !strpbrk(s, "\r\n");
}

static inline void fzp_check_result(const struct perkhub_op *op, int st,
                                    const struct perkhub_result *res, int callback)
{
    FZ_CHECK(st >= PERKHUB_OK && st <= PERKHUB_ERR_INTERNAL, "status %d", st);
    FZ_CHECK(res->state >= PERKHUB_STATE_NONE && res->state <= PERKHUB_STATE_NOT_FOUND, "state %d",
             res->state);
    FZ_CHECK(!res->reason || fzp_reason_ok(res->reason), "reason is not snake_case");
    /* the balance may be negative (an overdrawn prepaid account: the gateway reads
     * "-12.30"), so it is the one int64 field not checked here */
    FZ_CHECK(res->quantity >= -1 && res->amount >= -1 && res->stock >= -1 && res->price >= -1,
             "a negative count or amount other than -1 (unknown)");
    FZ_CHECK(!res->next || res->next_delay_ms >= 0, "negative next delay");
    /* items and codes count only with PERKHUB_OK: on a failure the core frees
     * whatever a plugin left half-filled there, and reads nothing */
    for (size_t i = 0; st == PERKHUB_OK && i < res->nitems; i++)
        FZ_CHECK(res->items[i].product_id, "catalog item %zu without a product id", i);
    for (size_t i = 0; st == PERKHUB_OK && i < res->ncodes; i++) {
        const struct perkhub_code *c = &res->codes[i];
        /* lengths are the core's to bound (fulfil_decide.c refuses over PH_CODE_MAX) */
        FZ_CHECK(c->code && c->code[0], "code %zu missing or empty", i);
    }
    if (callback) {
        FZ_CHECK(st != PERKHUB_OK || (res->order_ref && res->order_ref[0]),
                 "a verified callback without an order reference");
        FZ_CHECK(st == PERKHUB_OK || st == PERKHUB_DEFINITE_FAILURE || st == PERKHUB_ERR_NOMEM,
                 "callback outcome %d", st);
        return;
    }
    if (st == PERKHUB_OK && op->kind == PERKHUB_OP_CARD_ORDER &&
        res->state == PERKHUB_STATE_SUCCEEDED)
        FZ_CHECK(res->ncodes == op->quantity, "%zu codes for quantity %u", res->ncodes,
                 op->quantity);
    /* a first step only: a follow-up step (step >= 1, e.g. the gateway's
     * fetch of the codes) may be a query under the hood and say NOT_FOUND */
    if (st == PERKHUB_OK && op->step == 0 &&
        (op->kind == PERKHUB_OP_CARD_ORDER || op->kind == PERKHUB_OP_RECHARGE))
        FZ_CHECK(res->state == PERKHUB_STATE_SUCCEEDED || res->state == PERKHUB_STATE_PROCESSING,
                 "an order answered OK in state %d", res->state);
}

/* parse_response for op with this status and body, checked and cleared. */
static inline int fzp_parse(fzp_kit *k, const struct perkhub_op *op, int status, const char *body,
                            size_t len)
{
    struct perkhub_result res;
    int st = phtk_parse(k->tk, op, status, body, len, &res);
    fzp_check_result(op, st, &res, 0);
    phtk_result_clear(k->tk, &res);
    return st;
}

/* verify_callback, checked and cleared. */
static inline int fzp_verify(fzp_kit *k, const struct perkhub_callback *cb)
{
    struct perkhub_result res;
    int st = phtk_verify(k->tk, cb, &res);
    fzp_check_result(NULL, st, &res, 1);
    phtk_result_clear(k->tk, &res);
    return st;
}

static inline void fzp_check_request(const struct perkhub_request *req)
{
    FZ_CHECK(req->url && req->url[0], "request without a URL");
    FZ_CHECK(!strpbrk(req->url, " \r\n"), "URL with a space or line break");
    FZ_CHECK(req->nheaders <= PERKHUB_MAX_HEADERS, "%zu headers", req->nheaders);
    for (size_t i = 0; i < req->nheaders; i++)
        FZ_CHECK(fzp_line_ok(req->headers[i]), "header %zu missing or with a line break", i);
    FZ_CHECK(!req->body_len || req->body, "body_len without a body");
}

/* build_request for op with the account and product id an input gives
 * ("account\nproduct id"): what a client's order puts into a request. */
static inline void fzp_build(fzp_kit *k, struct perkhub_op *op, fz_cursor *c)
{
    size_t alen, plen;
    const char *a = fz_part(c, '\n', &alen);
    const char *p = fz_part(c, '\n', &plen);
    char *account = fz_strndup(a, alen), *product = fz_strndup(p, plen);
    op->account = account;
    op->product_id = product;
    struct perkhub_request req;
    int st = phtk_build(k->tk, op, &req);
    FZ_CHECK(st >= PERKHUB_OK && st <= PERKHUB_ERR_INTERNAL, "build status %d", st);
    if (st == PERKHUB_OK)
        fzp_check_request(&req);
    phtk_request_clear(k->tk, &req);
    free(account);
    free(product);
}

#endif
