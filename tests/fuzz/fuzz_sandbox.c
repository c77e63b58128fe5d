/*
 * fuzz_sandbox.c — the built-in sandbox supplier (plugins/sandbox, compiled in):
 * both of its halves. The supplier half (serve_local) answers any request the
 * core hands it; the plugin half (parse_response) reads any reply; build_request
 * takes the account and product id a client's order carries.
 *
 * Input: byte 0 the mode, byte 1 the operation (fuzz_plugin.h: fzp_op), byte 2
 * the quantity and product, then the payload:
 *   mode 0  a reply body to the operation, status 200 (or 400/404/405 when
 *           byte 1 says so);
 *   mode 1  "METHOD\npath?query\nbody": a request for serve_local (the URL is
 *           sandbox://local/ + path), whose reply then goes through
 *           parse_response as the core would send it;
 *   mode 2  "account\nproduct id": build_request, serve_local of what it built,
 *           parse_response of the reply: the whole exchange in process.
 * Checks: fuzz_plugin.h's, plus: serve_local answers with a status the sandbox
 * uses (0 = no answer, 200, 400, 404, 405) and a non-negative delay; in mode 2
 * with a real card product ("sandbox.card") and a quantity the sandbox allows,
 * a card order succeeds at once with exactly that many codes.
 */
#include "fuzz_plugin.h"

static const char *const fz_kv[] = {NULL};
static const char *const fz_secrets[] = {NULL};
static const char *const fz_products[] = {"sandbox.card", "sandbox.recharge", "sandbox.card.out",
                                          "sandbox.card.timeout"};
static const int fz_statuses[] = {200, 400, 404, 405};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

/* serve_local of req, checked; then parse_response of its reply for op. Returns
 * parse_response's outcome, or -1 when there was no reply to parse. */
static int fz_serve_then_parse(fzp_kit *k, const struct perkhub_op *op,
                               const struct perkhub_request *req, struct perkhub_result *res)
{
    struct perkhub_local_reply reply;
    int st = phtk_serve(k->tk, req, &reply);
    FZ_CHECK(st >= PERKHUB_OK && st <= PERKHUB_ERR_INTERNAL, "serve status %d", st);
    int out = -1;
    if (st == PERKHUB_OK) {
        int s = reply.http_status;
        FZ_CHECK(s == 0 || s == 200 || s == 400 || s == 404 || s == 405, "serve answered %d", s);
        FZ_CHECK(reply.delay_ms >= 0, "negative delay");
        FZ_CHECK(!reply.body_len || reply.body, "body_len without a body");
        if (s != 0) {
            out = phtk_parse(k->tk, op, s, reply.body, reply.body_len, res);
            fzp_check_result(op, out, res, 0);
        }
    }
    phtk_reply_clear(k->tk, &reply);
    return out;
}

static void fz_serve(fzp_kit *k, const struct perkhub_op *op, fz_cursor *c)
{
    size_t mlen, plen;
    const char *m = fz_part(c, '\n', &mlen);
    const char *p = fz_part(c, '\n', &plen);
    char *method = fz_strndup(m, mlen), *url = malloc(sizeof "sandbox://local/" + plen);
    FZ_CHECK(url, "out of memory");
    memcpy(url, "sandbox://local/", sizeof "sandbox://local/" - 1);
    memcpy(url + sizeof "sandbox://local/" - 1, p, plen);
    url[sizeof "sandbox://local/" - 1 + plen] = '\0';
    /* the sandbox logs the path it was asked for; its own requests never put the
     * account there (sbx_request_post), so an input that does proves nothing */
    if (memmem(p, plen, FZP_ACCOUNT, strlen(FZP_ACCOUNT))) {
        free(method);
        free(url);
        return;
    }
    char *body = fz_strndup((const char *)c->p, c->left);
    struct perkhub_request req = {.method = method, .url = url, .body = body, .body_len = c->left};
    struct perkhub_result res;
    memset(&res, 0, sizeof res);
    if (fz_serve_then_parse(k, op, &req, &res) >= 0)
        phtk_result_clear(k->tk, &res);
    free(method);
    free(url);
    free(body);
}

static void fz_exchange(fzp_kit *k, struct perkhub_op *op, fz_cursor *c)
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
    if (st == PERKHUB_OK) {
        fzp_check_request(&req);
        struct perkhub_result res;
        int out = fz_serve_then_parse(k, op, &req, &res);
        if (op->kind == PERKHUB_OP_CARD_ORDER && op->step == 0 &&
            strcmp(product, "sandbox.card") == 0)
            FZ_CHECK(out == PERKHUB_OK && res.state == PERKHUB_STATE_SUCCEEDED &&
                         res.ncodes == op->quantity,
                     "sandbox.card x%u: outcome %d, state %d, %zu codes", op->quantity, out,
                     res.state, res.ncodes);
        if (out >= 0)
            phtk_result_clear(k->tk, &res);
    }
    phtk_request_clear(k->tk, &req);
    free(account);
    free(product);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_cursor c = {data, size};
    unsigned mode = fz_byte(&c), sel = fz_byte(&c), qty = fz_byte(&c);
    struct perkhub_op op = fzp_op(sel, qty, fz_products, 4);
    fzp_kit k;
    fzp_open(&k, fz_kv, fz_secrets);
    switch (mode % 3) {
    case 0:
        fzp_parse(&k, &op, fz_statuses[(sel / 6) % 4], (const char *)c.p, c.left);
        break;
    case 1:
        fz_serve(&k, &op, &c);
        break;
    default:
        fz_exchange(&k, &op, &c);
        break;
    }
    fzp_close(&k);
    return 0;
}
