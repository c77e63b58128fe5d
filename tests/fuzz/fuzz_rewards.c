/*
 * fuzz_rewards.c — the REST rewards plugin (plugins/rewards, compiled in) on
 * what a supplier or a forger can send it: replies to each operation under
 * every status the protocol knows, webhooks with their signature header, and
 * the account and product id a client's order puts into a request.
 *
 * Input: byte 0 the mode, byte 1 the operation (fuzz_plugin.h: fzp_op), byte 2
 * the quantity and product, then the payload:
 *   mode 0  a reply body; byte 1 also picks the HTTP status among those the
 *           protocol gives a meaning (200, 201, 400, 401, 402, 404, 409, 422,
 *           429) and a few it does not;
 *   mode 1  "X-Rewards-Signature value\nbody": a raw webhook (the header as
 *           sent, so the header parser is fuzzed too);
 *   mode 2  a webhook body the harness signs (t=<now + skew>,v1=HMAC-SHA256(
 *           secret, "<t>." + body)), skew from byte 2, so the claim parser is
 *           reached and the freshness window tested both ways;
 *   mode 3  "account\nproduct id" for build_request of the operation.
 * Checks: fuzz_plugin.h's, plus for mode 2: a signature made by the protocol's
 * rule is never refused as "bad_signature", and a timestamp outside the
 * tolerance (300 s either way) is never accepted.
 */
#include <inttypes.h>
#include <openssl/hmac.h>

#include "fuzz_plugin.h"

#define FZ_API_KEY   "k-LIVE-7f3a9c"
#define FZ_WH_SECRET "whsec-test-1" /* the fixtures' (gen_vectors.py) */
#define FZ_REF       "A-20261124-0001"

static const char *const fz_kv[] = {"base_url",
                                    "http://127.0.0.1:9100/rewards/",
                                    "api_key",
                                    FZ_API_KEY,
                                    "webhook_secret",
                                    FZ_WH_SECRET,
                                    NULL};
static const char *const fz_secrets[] = {FZ_API_KEY,       FZ_WH_SECRET, "QX7F-K2M9-TT41",
                                         "ZP3R-8WNV-LC06", "6200001",    NULL};
static const char *const fz_products[] = {"U10001", "U20001", "utid/../x?y"};
static const int fz_statuses[] = {200, 201, 400, 401, 402, 403, 404, 409, 422, 429, 302, 418};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static void fz_webhook(fzp_kit *k, const char *sig, size_t siglen, const char *body, size_t len,
                       struct perkhub_result *res, int *st)
{
    char header[600];
    snprintf(header, sizeof header, "X-Rewards-Signature: %.*s", (int)(siglen < 560 ? siglen : 560),
             sig);
    const char *headers[] = {"Content-Type: application/json", header};
    struct perkhub_callback cb = {.method = "POST",
                                  .query = "",
                                  .content_type = "application/json",
                                  .body = body,
                                  .body_len = len,
                                  .headers = headers,
                                  .nheaders = 2};
    *st = phtk_verify(k->tk, &cb, res);
    fzp_check_result(NULL, *st, res, 1);
}

static void fz_signed_webhook(fzp_kit *k, int skew_s, const char *body, size_t len)
{
    int64_t t = FZP_NOW_MS / 1000 + skew_s;
    char sig[160];
    char *text = malloc(32 + len);
    FZ_CHECK(text, "out of memory");
    int tlen = snprintf(text, 32, "%" PRId64 ".", t);
    if (len)
        memcpy(text + tlen, body, len);
    unsigned char mac[32];
    unsigned maclen = 0;
    FZ_CHECK(HMAC(EVP_sha256(), FZ_WH_SECRET, (int)strlen(FZ_WH_SECRET), (unsigned char *)text,
                  (size_t)tlen + len, mac, &maclen),
             "hmac");
    free(text);
    int at = snprintf(sig, sizeof sig, "t=%" PRId64 ",v1=", t);
    for (unsigned i = 0; i < maclen; i++)
        at += snprintf(sig + at, sizeof sig - (size_t)at, "%02x", mac[i]);
    struct perkhub_result res;
    int st;
    fz_webhook(k, sig, (size_t)at, body, len, &res, &st);
    int fresh = skew_s >= -300 && skew_s <= 300;
    FZ_CHECK(st != PERKHUB_DEFINITE_FAILURE || !res.reason || strcmp(res.reason, "bad_signature"),
             "a webhook signed by the protocol's rule refused as bad_signature");
    FZ_CHECK(fresh || st != PERKHUB_OK, "a webhook %d s off our clock accepted", skew_s);
    FZ_CHECK(st != PERKHUB_OK || res.timestamp_ms == t * 1000,
             "timestamp %" PRId64 " for t %" PRId64, res.timestamp_ms, t);
    phtk_result_clear(k->tk, &res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_cursor c = {data, size};
    unsigned mode = fz_byte(&c), sel = fz_byte(&c), qty = fz_byte(&c);
    struct perkhub_op op = fzp_op(sel, qty, fz_products, 3);
    op.order_ref = FZ_REF;
    fzp_kit k;
    fzp_open(&k, fz_kv, fz_secrets);
    switch (mode % 4) {
    case 0: {
        size_t n = sizeof fz_statuses / sizeof *fz_statuses;
        fzp_parse(&k, &op, fz_statuses[(sel / 6) % n], (const char *)c.p, c.left);
        break;
    }
    case 1: {
        size_t siglen;
        const char *sig = fz_part(&c, '\n', &siglen);
        struct perkhub_result res;
        int st;
        fz_webhook(&k, sig, siglen, (const char *)c.p, c.left, &res, &st);
        phtk_result_clear(k.tk, &res);
        break;
    }
    case 2:
        fz_signed_webhook(&k, ((int)qty - 128) * 5, (const char *)c.p, c.left);
        break;
    default:
        fzp_build(&k, &op, &c);
        break;
    }
    fzp_close(&k);
    return 0;
}
