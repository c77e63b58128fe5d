/*
 * test_testkit.c — the plugin test kit (sdk/testkit) and the ABI 1.1 host
 * functions, driven through a tiny 1.1 plugin defined below ("tiny").
 *
 * tiny speaks a made-up protocol, just enough to use every kit entry point:
 *   order    POST <base_url>/order, form body app=..&ref=..&product=..&ts=..,
 *            header X-Sign: hex HMAC-SHA256(api_key, body)
 *   query    GET <base_url>/query?ref=<url-encoded ref>
 *   answer   "ok <base64 of AES-256-CBC(code)>" -> succeeded with that code,
 *            "busy" -> retryable, "nostock" -> definite failure,
 *            "pending" -> processing, with a follow-up query step, else ambiguous
 *   notify   body "<ref>|<ok|failed>", query "sign=<hex HMAC of the body>"
 *   local    answers an order with "ok <base64(AES(CODE-<ref>))>"
 * The AES key is SHA-256(api_key), the IV the MD5 of it.
 *
 * The unit tests link only the core (tests/CMakeLists.txt), so the kit's source
 * is compiled in here; plugin tests get it from perkhub_testkit instead.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/status.h"
#include <perkhub/testkit.h>

/* ---- the tiny plugin ------------------------------------------------------------ */

struct tiny {
    const struct perkhub_host *host;
    const char *base_url; /* config strings live until shutdown */
    const char *app;
    const char *api_key;
    uint8_t aes_key[32];
    uint8_t aes_iv[16];
};

static const struct perkhub_config_key tiny_config[] = {
    {.key = "base_url", .type = PERKHUB_CONF_STRING, .required = 1, .description = "Where."},
    {.key = "app", .type = PERKHUB_CONF_STRING, .default_value = "app0", .description = "Who."},
    {.key = "api_key", .type = PERKHUB_CONF_SECRET, .required = 1, .description = "Signs."},
    {.key = NULL},
};

static void hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static int tiny_init(const struct perkhub_host *host, const struct perkhub_config *config,
                     void **instance, char *errbuf, size_t errlen)
{
    struct tiny *t = host->mem_alloc(host, sizeof *t);
    if (!t)
        return PERKHUB_ERR_NOMEM;
    t->host = host;
    t->base_url = host->config_string(host, config, "base_url");
    t->app = host->config_string(host, config, "app");
    t->api_key = host->config_string(host, config, "api_key");
    if (strncmp(t->base_url, "http", 4) != 0) {
        snprintf(errbuf, errlen, "config key 'base_url': not an http(s) URL");
        host->mem_free(host, t);
        return PERKHUB_ERR_CONFIG;
    }
    uint8_t md[16];
    host->sha256(host, t->api_key, strlen(t->api_key), t->aes_key);
    host->md5(host, t->api_key, strlen(t->api_key), md);
    memcpy(t->aes_iv, md, 16);
    host->log_msg(host, PERKHUB_LOG_INFO, "init", "app=%s", t->app);
    *instance = t;
    return PERKHUB_OK;
}

static void tiny_shutdown(void *instance)
{
    struct tiny *t = instance;
    t->host->mem_free(t->host, t);
}

static char *tiny_sprintf(const struct perkhub_host *h, const char *a, const char *b, const char *c,
                          const char *d)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + strlen(d) + 1;
    char *s = h->mem_alloc(h, n);
    if (s)
        snprintf(s, n, "%s%s%s%s", a, b, c, d);
    return s;
}

static int tiny_build_order(struct tiny *t, const struct perkhub_op *op,
                            struct perkhub_request *req)
{
    const struct perkhub_host *h = t->host;
    char *ref = h->url_encode(h, op->order_ref), *prod = h->url_encode(h, op->product_id);
    char ts[32], mac_hex[65];
    snprintf(ts, sizeof ts, "%lld", (long long)h->now_ms(h));
    size_t n = strlen(t->app) + strlen(ref) + strlen(prod) + strlen(ts) + 32;
    req->body = h->mem_alloc(h, n);
    snprintf(req->body, n, "app=%s&ref=%s&product=%s&ts=%s", t->app, ref, prod, ts);
    req->body_len = strlen(req->body);
    uint8_t mac[32];
    h->hmac_sha256(h, t->api_key, strlen(t->api_key), req->body, req->body_len, mac);
    hex(mac, 32, mac_hex);
    req->method = "POST";
    req->url = tiny_sprintf(h, t->base_url, "/order", "", "");
    req->headers[0] = h->mem_strdup(h, "Content-Type: application/x-www-form-urlencoded");
    req->headers[1] = tiny_sprintf(h, "X-Sign: ", mac_hex, "", "");
    req->nheaders = 2;
    h->log_msg(h, PERKHUB_LOG_INFO, "order.build", "ref=%s", op->order_ref);
    h->mem_free(h, ref);
    h->mem_free(h, prod);
    return PERKHUB_OK;
}

static int tiny_build(void *instance, const struct perkhub_op *op, struct perkhub_request *req)
{
    struct tiny *t = instance;
    const struct perkhub_host *h = t->host;
    if (op->kind == PERKHUB_OP_CARD_ORDER)
        return tiny_build_order(t, op, req);
    if (op->kind != PERKHUB_OP_ORDER_QUERY)
        return PERKHUB_ERR_UNSUPPORTED;
    char *ref = h->url_encode(h, op->order_ref);
    req->method = "GET";
    req->url = tiny_sprintf(h, t->base_url, "/query?ref=", ref, "");
    h->mem_free(h, ref);
    return PERKHUB_OK;
}

/* "ok <base64>" -> one code, decrypted. */
static int tiny_take_code(struct tiny *t, const char *b64, struct perkhub_result *res)
{
    const struct perkhub_host *h = t->host;
    uint8_t *ct = NULL, *pt = NULL;
    size_t ctlen = 0, ptlen = 0;
    if (h->base64_decode(h, b64, strlen(b64), &ct, &ctlen) != PERKHUB_OK)
        return PERKHUB_AMBIGUOUS;
    int st = h->cipher(h, "aes-256-cbc", 0, t->aes_key, 32, t->aes_iv, 16, ct, ctlen, &pt, &ptlen);
    h->mem_free(h, ct);
    if (st != PERKHUB_OK)
        return PERKHUB_AMBIGUOUS;
    res->codes = h->mem_alloc(h, sizeof *res->codes);
    res->codes[0].code = (char *)pt; /* cipher NUL-terminates */
    res->ncodes = 1;
    res->state = PERKHUB_STATE_SUCCEEDED;
    return PERKHUB_OK;
}

static int tiny_parse(void *instance, const struct perkhub_op *op,
                      const struct perkhub_response *resp, struct perkhub_result *res)
{
    struct tiny *t = instance;
    const struct perkhub_host *h = t->host;
    (void)op;
    const char *b = resp->body;
    if (resp->http_status != 200)
        return PERKHUB_AMBIGUOUS;
    if (strncmp(b, "ok ", 3) == 0)
        return tiny_take_code(t, b + 3, res);
    if (strcmp(b, "busy") == 0)
        return PERKHUB_RETRYABLE;
    if (strcmp(b, "nostock") == 0) {
        res->reason = h->mem_strdup(h, "out_of_stock");
        return PERKHUB_DEFINITE_FAILURE;
    }
    if (strcmp(b, "pending") == 0) {
        res->state = PERKHUB_STATE_PROCESSING;
        res->next = 1;
        res->next_state = h->mem_strdup(h, "query");
        res->next_delay_ms = 500;
        return PERKHUB_OK;
    }
    return PERKHUB_AMBIGUOUS;
}

static int tiny_verify(void *instance, const struct perkhub_callback *cb,
                       struct perkhub_result *res)
{
    struct tiny *t = instance;
    const struct perkhub_host *h = t->host;
    uint8_t mac[32];
    char want[65];
    h->hmac_sha256(h, t->api_key, strlen(t->api_key), cb->body, cb->body_len, mac);
    hex(mac, 32, want);
    const char *sig = strncmp(cb->query, "sign=", 5) == 0 ? cb->query + 5 : "";
    const char *bar = strchr(cb->body, '|');
    if (strlen(sig) != 64 || !h->ct_equal(h, sig, want, 64)) {
        res->reason = h->mem_strdup(h, "bad_signature");
        return PERKHUB_DEFINITE_FAILURE;
    }
    if (!bar) {
        res->reason = h->mem_strdup(h, "malformed");
        return PERKHUB_DEFINITE_FAILURE;
    }
    res->order_ref = h->mem_alloc(h, (size_t)(bar - cb->body) + 1);
    memcpy(res->order_ref, cb->body, (size_t)(bar - cb->body));
    res->state = strcmp(bar + 1, "ok") == 0 ? PERKHUB_STATE_SUCCEEDED : PERKHUB_STATE_FAILED;
    res->reply_body = h->mem_strdup(h, "success");
    return PERKHUB_OK;
}

static int tiny_serve(void *instance, const struct perkhub_request *req,
                      struct perkhub_local_reply *reply)
{
    struct tiny *t = instance;
    const struct perkhub_host *h = t->host;
    const char *ref = req->body ? strstr(req->body, "ref=") : NULL;
    if (!ref)
        return reply->http_status = 404, PERKHUB_OK;
    char code[96];
    snprintf(code, sizeof code, "CODE-%.*s", (int)strcspn(ref + 4, "&"), ref + 4);
    uint8_t *ct = NULL;
    size_t ctlen = 0;
    int st = h->cipher(h, "aes-256-cbc", 1, t->aes_key, 32, t->aes_iv, 16, (const uint8_t *)code,
                       strlen(code), &ct, &ctlen);
    if (st != PERKHUB_OK)
        return st;
    char *b64 = h->base64_encode(h, ct, ctlen);
    h->mem_free(h, ct);
    reply->body = tiny_sprintf(h, "ok ", b64, "", "");
    reply->body_len = strlen(reply->body);
    reply->http_status = 200;
    h->mem_free(h, b64);
    return PERKHUB_OK;
}

static const struct perkhub_ops tiny_ops = {
    .struct_size = sizeof(struct perkhub_ops),
    .build_request = tiny_build,
    .parse_response = tiny_parse,
    .verify_callback = tiny_verify,
    .serve_local = tiny_serve,
};

static const struct perkhub_plugin tiny_plugin = {
    .struct_size = sizeof(struct perkhub_plugin),
    .abi_major = PERKHUB_ABI_MAJOR,
    .abi_minor = PERKHUB_ABI_MINOR,
    .name = "tiny",
    .version = "0.1.0",
    .description = "Test kit fixture: a made-up signed protocol.",
    .capabilities =
        PERKHUB_CAP_CARD_ORDER | PERKHUB_CAP_ORDER_QUERY | PERKHUB_CAP_CALLBACK | PERKHUB_CAP_LOCAL,
    .config = tiny_config,
    .init = tiny_init,
    .shutdown = tiny_shutdown,
    .ops = &tiny_ops,
    .processing_window_s = 60,
};

static const char *const tiny_kv[] = {"base_url", "https://sup.example/api", "api_key",
                                      "k3y-s3cr3t", NULL};

static phtk *tiny_open(void)
{
    char err[256] = "";
    phtk *tk = phtk_open(&tiny_plugin, tiny_kv, err, sizeof err);
    cr_assert_not_null(tk, "%s", err);
    return tk;
}

static void unhex(const char *s, uint8_t *out)
{
    for (size_t i = 0; s[2 * i]; i++) {
        unsigned v;
        sscanf(s + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

/* ---- the host functions of ABI 1.1 --------------------------------------------- */

Test(host11, md5_rfc1321)
{
    phtk *tk = tiny_open();
    const struct perkhub_host *h = phtk_host(tk);
    uint8_t d[16];
    char x[33];
    h->md5(h, "abc", 3, d);
    hex(d, 16, x);
    cr_assert_str_eq(x, "900150983cd24fb0d6963f7d28e17f72");
    h->md5(h, "", 0, d);
    hex(d, 16, x);
    cr_assert_str_eq(x, "d41d8cd98f00b204e9800998ecf8427e");
    phtk_close(tk);
}

/* NIST SP 800-38A F.2.5 (CBC-AES256), first block, plus the PKCS#7 padding
 * block (checked with `openssl enc -aes-256-cbc`); F.1.1 (ECB-AES128). */
Test(host11, cipher_vectors_and_round_trip)
{
    phtk *tk = tiny_open();
    const struct perkhub_host *h = phtk_host(tk);
    size_t base = phtk_blocks(tk);
    uint8_t key[32], iv[16], pt[16], want[32], k128[16], want_ecb[16];
    unhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", key);
    unhex("000102030405060708090a0b0c0d0e0f", iv);
    unhex("6bc1bee22e409f96e93d7e117393172a", pt);
    unhex("f58c4c04d6e5f1ba779eabfb5f7bfbd6485a5c81519cf378fa36d42b8547edc0", want);
    unhex("2b7e151628aed2a6abf7158809cf4f3c", k128);
    unhex("3ad77bb40d7a3660a89ecaf32466ef97", want_ecb);

    uint8_t *ct = NULL, *back = NULL;
    size_t ctlen = 0, backlen = 0;
    cr_assert_eq(h->cipher(h, "aes-256-cbc", 1, key, 32, iv, 16, pt, 16, &ct, &ctlen), PERKHUB_OK);
    cr_assert_eq(ctlen, 32);
    cr_assert_eq(memcmp(ct, want, 32), 0);
    cr_assert_eq(h->cipher(h, "AES-256-CBC", 0, key, 32, iv, 16, ct, ctlen, &back, &backlen),
                 PERKHUB_OK);
    cr_assert_eq(backlen, 16);
    cr_assert_eq(memcmp(back, pt, 16), 0);
    cr_assert_eq(back[16], 0, "decrypted text is NUL-terminated");
    h->mem_free(h, ct);
    h->mem_free(h, back);

    /* a text round trip of odd length */
    const char *text = "card-code 0123456789 abcdefghij";
    cr_assert_eq(h->cipher(h, "aes-256-cbc", 1, key, 32, iv, 16, (const uint8_t *)text,
                           strlen(text), &ct, &ctlen),
                 PERKHUB_OK);
    cr_assert_eq(ctlen, 32);
    cr_assert_eq(h->cipher(h, "aes-256-cbc", 0, key, 32, iv, 16, ct, ctlen, &back, &backlen),
                 PERKHUB_OK);
    cr_assert_str_eq((char *)back, text);
    h->mem_free(h, back);

    /* ECB has no IV */
    uint8_t *e = NULL;
    size_t elen = 0;
    cr_assert_eq(h->cipher(h, "aes-128-ecb", 1, k128, 16, NULL, 0, pt, 16, &e, &elen), PERKHUB_OK);
    cr_assert_eq(elen, 32);
    cr_assert_eq(memcmp(e, want_ecb, 16), 0);
    h->mem_free(h, e);

    /* 3DES, still common at Chinese gateways (checked with `openssl enc -des-ede3-cbc`) */
    uint8_t k3[24], iv8[8], want3[8];
    unhex("000102030405060708090a0b0c0d0e0f1011121314151617", k3);
    unhex("0001020304050607", iv8);
    unhex("c311aed614f98231", want3);
    cr_assert_eq(
        h->cipher(h, "des-ede3-cbc", 1, k3, 24, iv8, 8, (const uint8_t *)"hi", 2, &e, &elen),
        PERKHUB_OK);
    cr_assert_eq(elen, 8);
    cr_assert_eq(memcmp(e, want3, 8), 0);
    h->mem_free(h, e);

    /* refusals: out stays NULL and nothing is held */
    uint8_t *none = (uint8_t *)"x";
    size_t nlen = 7;
    cr_assert_eq(h->cipher(h, "aes-257-cbc", 1, key, 32, iv, 16, pt, 16, &none, &nlen),
                 PERKHUB_ERR_UNSUPPORTED);
    cr_assert_null(none);
    cr_assert_eq(nlen, 0);
    cr_assert_eq(h->cipher(h, "aes-256-gcm", 1, key, 32, iv, 12, pt, 16, &none, &nlen),
                 PERKHUB_ERR_UNSUPPORTED, "AEAD without its tag is refused");
    cr_assert_eq(h->cipher(h, "aes-256-cbc", 1, key, 16, iv, 16, pt, 16, &none, &nlen),
                 PERKHUB_ERR_CONFIG, "wrong key length");
    cr_assert_eq(h->cipher(h, "aes-256-cbc", 1, key, 32, iv, 8, pt, 16, &none, &nlen),
                 PERKHUB_ERR_CONFIG, "wrong iv length");
    cr_assert_eq(h->cipher(h, "aes-256-cbc", 0, key, 32, iv, 16, ct, 15, &none, &nlen),
                 PERKHUB_DEFINITE_FAILURE, "not whole blocks");
    uint8_t other[32] = {1};
    cr_assert_eq(h->cipher(h, "aes-256-cbc", 0, other, 32, iv, 16, want, 16, &none, &nlen),
                 PERKHUB_DEFINITE_FAILURE, "the data block under another key: bad padding");
    cr_assert_null(none);
    h->mem_free(h, ct);
    cr_assert_eq(phtk_blocks(tk), base, "every block given back");
    phtk_close(tk);
}

Test(host11, base64_rfc4648)
{
    phtk *tk = tiny_open();
    const struct perkhub_host *h = phtk_host(tk);
    size_t base = phtk_blocks(tk);
    static const char *const v[][3] = {
        {"", "", ""},
        {"f", "Zg==", "Zg"},
        {"fo", "Zm8=", "Zm8"},
        {"foo", "Zm9v", "Zm9v"},
        {"foob", "Zm9vYg==", "Zm9vYg"},
        {"fooba", "Zm9vYmE=", "Zm9vYmE"},
        {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char *enc = h->base64_encode(h, v[i][0], strlen(v[i][0]));
        cr_assert_str_eq(enc, v[i][1]);
        h->mem_free(h, enc);
        for (int j = 1; j <= 2; j++) {
            uint8_t *dec = NULL;
            size_t n = 99;
            cr_assert_eq(h->base64_decode(h, v[i][j], strlen(v[i][j]), &dec, &n), PERKHUB_OK, "%s",
                         v[i][j]);
            cr_assert_eq(n, strlen(v[i][0]));
            cr_assert_str_eq((char *)dec, v[i][0], "NUL-terminated");
            h->mem_free(h, dec);
        }
    }
    /* binary bytes, including a NUL and the characters + and / */
    static const uint8_t bin[] = {0xfb, 0xff, 0x00, 0x3e, 0x3f};
    char *enc = h->base64_encode(h, bin, sizeof bin);
    cr_assert_str_eq(enc, "+/8APj8=");
    uint8_t *dec = NULL;
    size_t n = 0;
    cr_assert_eq(h->base64_decode(h, enc, strlen(enc), &dec, &n), PERKHUB_OK);
    cr_assert_eq(n, sizeof bin);
    cr_assert_eq(memcmp(dec, bin, n), 0);
    h->mem_free(h, enc);
    h->mem_free(h, dec);

    static const char *const bad[] = {"Zm9v!", "Zg=",   "Z",       "Zm9v\n", " Zm9v", "Zg==Zg==",
                                      "=Zg=",  "Zm9vY", "Zm9v===", "Zm=v",   "Zm9v-_"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dec = (uint8_t *)"junk";
        cr_assert_eq(h->base64_decode(h, bad[i], strlen(bad[i]), &dec, &n),
                     PERKHUB_DEFINITE_FAILURE, "'%s' is not base64", bad[i]);
        cr_assert_null(dec);
    }
    cr_assert_eq(phtk_blocks(tk), base);
    phtk_close(tk);
}

Test(host11, url_encode_ct_equal_random_clock)
{
    phtk *tk = tiny_open();
    const struct perkhub_host *h = phtk_host(tk);
    char *u = h->url_encode(h, "a b&c=d/\xc3\xa9~-._+%");
    cr_assert_str_eq(u, "a%20b%26c%3Dd%2F%C3%A9~-._%2B%25");
    h->mem_free(h, u);
    u = h->url_encode(h, "");
    cr_assert_str_eq(u, "");
    h->mem_free(h, u);
    cr_assert_null(h->url_encode(h, NULL));

    cr_assert_eq(h->ct_equal(h, "signature", "signature", 9), 1);
    cr_assert_eq(h->ct_equal(h, "signature", "signaturE", 9), 0);
    cr_assert_eq(h->ct_equal(h, "a", "b", 0), 1, "nothing to compare is equal");

    uint8_t r1[32] = {0}, r2[32] = {0}, zero[32] = {0};
    cr_assert_eq(h->random(h, r1, sizeof r1), PERKHUB_OK);
    cr_assert_eq(h->random(h, r2, sizeof r2), PERKHUB_OK);
    cr_assert_neq(memcmp(r1, r2, 32), 0);
    cr_assert_neq(memcmp(r1, zero, 32), 0);
    cr_assert_eq(h->random(h, r1, 0), PERKHUB_OK);

    phtk_set_now(tk, INT64_C(1764000000123));
    cr_assert_eq(h->now_ms(h), INT64_C(1764000000123));
    phtk_set_now(tk, 0);
    cr_assert_gt(h->now_ms(h), INT64_C(1764000000123), "the real clock again (after 2025-11)");
    cr_assert_eq(h->abi_minor, PERKHUB_ABI_MINOR);
    cr_assert_eq(h->struct_size, sizeof(struct perkhub_host));
    phtk_close(tk);
}

/* ---- the kit -------------------------------------------------------------------- */

Test(testkit, open_refusals)
{
    char err[256];
    static const char *const missing[] = {"api_key", "k", NULL};
    cr_assert_null(phtk_open(&tiny_plugin, missing, err, sizeof err));
    cr_assert_str_eq(err, "supplier 'test': config key 'base_url' is required by plugin 'tiny'");

    static const char *const unknown[] = {"base_url", "https://x", "api_key", "k",
                                          "apikey",   "k",         NULL};
    cr_assert_null(phtk_open(&tiny_plugin, unknown, err, sizeof err));
    cr_assert(strstr(err, "config key 'apikey' is not known to plugin 'tiny' (known: base_url, "
                          "app, api_key)"),
              "%s", err);

    static const char *const odd[] = {"base_url", NULL};
    cr_assert_null(phtk_open(&tiny_plugin, odd, err, sizeof err));
    cr_assert(strstr(err, "config key 'base_url' has no value"), "%s", err);

    static const char *const empty_secret[] = {"base_url", "https://x", "api_key", "", NULL};
    cr_assert_null(phtk_open(&tiny_plugin, empty_secret, err, sizeof err));
    cr_assert(strstr(err, "config key 'api_key': secret is empty"), "%s", err);

    static const char *const bad_url[] = {"base_url", "ftp://x", "api_key", "k3y-s3cr3t", NULL};
    cr_assert_null(phtk_open(&tiny_plugin, bad_url, err, sizeof err));
    cr_assert_str_eq(err, "supplier 'test': plugin 'tiny' init failed (config): config key "
                          "'base_url': not an http(s) URL");

    struct perkhub_plugin broken = tiny_plugin;
    broken.capabilities &= ~PERKHUB_CAP_ORDER_QUERY;
    cr_assert_null(phtk_open(&broken, tiny_kv, err, sizeof err));
    cr_assert(strstr(err, "plugin 'tiny' (linked in) claims card_order but not order_query"), "%s",
              err);
    cr_assert_null(phtk_open(NULL, tiny_kv, err, sizeof err));
    cr_assert_null(phtk_open(&broken, tiny_kv, NULL, 0), "no error buffer is fine");
}

Test(testkit, conformance)
{
    char err[256] = "x";
    cr_assert_eq(phtk_conformance(&tiny_plugin, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(err, "");

    struct perkhub_ops ops = tiny_ops;
    struct perkhub_plugin d = tiny_plugin;
    d.ops = &ops;
    ops.verify_callback = NULL;
    cr_assert_eq(phtk_conformance(&d, err, sizeof err), PH_EINVAL);
    cr_assert(strstr(err, "claims callback but its ops table lacks verify_callback"), "%s", err);
    ops = tiny_ops;
    ops.parse_response = NULL;
    cr_assert_eq(phtk_conformance(&d, err, sizeof err), PH_EINVAL);
    cr_assert(strstr(err, "claims card_order but its ops table lacks parse_response"), "%s", err);
    ops = tiny_ops;
    ops.struct_size = 8;
    cr_assert_eq(phtk_conformance(&d, err, sizeof err), PH_EINVAL);
    cr_assert(strstr(err, "its ops table is 8 bytes, less than the"), "%s", err);
    d = tiny_plugin;
    d.abi_minor = PERKHUB_ABI_MINOR + 1;
    cr_assert_eq(phtk_conformance(&d, err, sizeof err), PH_EVERSION);
    cr_assert(strstr(err, "is built for SDK ABI 1.5; this perkhubd provides 1.4"), "%s", err);
    d = tiny_plugin;
    d.capabilities |= UINT64_C(1) << 10;
    cr_assert_eq(phtk_conformance(&d, err, sizeof err), PH_EINVAL);
    cr_assert(strstr(err, "claims capability bits 0x400"), "%s", err);
}

static const struct phtk_descriptor_want tiny_want = {
    .name = "tiny",
    .abi_major = PERKHUB_ABI_MAJOR,
    .abi_minor = PERKHUB_ABI_MINOR,
    .capabilities =
        PERKHUB_CAP_CARD_ORDER | PERKHUB_CAP_ORDER_QUERY | PERKHUB_CAP_CALLBACK | PERKHUB_CAP_LOCAL,
    .processing_window_s = 60,
    .query_delay_ms = 0,
    .build_request = 1,
    .parse_response = 1,
    .verify_callback = 1,
    .serve_local = 1,
};

Test(testkit, expect_descriptor)
{
    char err[256] = "x";
    cr_assert_eq(phtk_expect_descriptor(&tiny_plugin, &tiny_want, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(err, "");

    struct phtk_descriptor_want w = tiny_want;
    w.name = "tinyx";
    cr_assert_eq(phtk_expect_descriptor(&tiny_plugin, &w, err, sizeof err), -1);
    cr_assert_str_eq(err, "name is 'tiny', want 'tinyx'");
    w = tiny_want;
    w.capabilities &= ~PERKHUB_CAP_LOCAL;
    cr_assert_eq(phtk_expect_descriptor(&tiny_plugin, &w, err, sizeof err), -1);
    char want_msg[128];
    snprintf(want_msg, sizeof want_msg, "capabilities are 0x%" PRIx64 ", want 0x%" PRIx64,
             tiny_plugin.capabilities, w.capabilities);
    cr_assert_str_eq(err, want_msg);
    w = tiny_want;
    w.query_delay_ms = 1000; /* the core's default for 0 is not what the plugin set */
    cr_assert_eq(phtk_expect_descriptor(&tiny_plugin, &w, err, sizeof err), -1);
    cr_assert_str_eq(err, "query_delay_ms is 0, want 1000");
    w = tiny_want;
    w.serve_local = 0;
    w.processing_window_s = 61; /* the first difference is the one named */
    cr_assert_eq(phtk_expect_descriptor(&tiny_plugin, &w, err, sizeof err), -1);
    cr_assert_str_eq(err, "processing_window_s is 60, want 61");
    w.processing_window_s = 60;
    cr_assert_eq(phtk_expect_descriptor(&tiny_plugin, &w, err, sizeof err), -1);
    cr_assert_str_eq(err, "ops->serve_local is set, want NULL");

    /* The loader's copy is compared: a descriptor too short for the 1.1
     * members has none, whatever lies beyond its struct_size. */
    struct perkhub_plugin d = tiny_plugin;
    d.struct_size = PERKHUB_PLUGIN_SIZE_1_0;
    cr_assert_eq(phtk_expect_descriptor(&d, &tiny_want, err, sizeof err), -1);
    cr_assert_str_eq(err, "processing_window_s is 0, want 60");

    struct perkhub_ops ops = tiny_ops;
    d = tiny_plugin;
    d.ops = &ops;
    ops.verify_callback = NULL;
    cr_assert_eq(phtk_expect_descriptor(&d, &tiny_want, err, sizeof err), -1);
    cr_assert(strstr(err, "conformance: ") == err, "%s", err);
    cr_assert(strstr(err, "claims callback but its ops table lacks verify_callback"), "%s", err);
    cr_assert_eq(phtk_expect_descriptor(NULL, &tiny_want, err, sizeof err), -1);
    cr_assert_eq(phtk_expect_descriptor(&tiny_plugin, NULL, NULL, 0), -1, "no error buffer");
}

Test(testkit, expect_refused)
{
    static const char *const secrets[] = {"", "k3y-s3cr3t", NULL};
    static const char *const bad_url[] = {"base_url", "ftp://x", "api_key", "k3y-s3cr3t", NULL};
    char err[256] = "";
    cr_assert_eq(phtk_expect_refused(&tiny_plugin, bad_url, "'base_url'", secrets, err, sizeof err),
                 0, "%s", err);
    cr_assert(strstr(err, "config key 'base_url': not an http(s) URL"), "err is the refusal: %s",
              err);
    cr_assert_eq(phtk_expect_refused(&tiny_plugin, bad_url, "'base_url'", NULL, err, sizeof err), 0,
                 "%s", err);

    cr_assert_eq(phtk_expect_refused(&tiny_plugin, tiny_kv, "'base_url'", secrets, err, sizeof err),
                 -1);
    cr_assert_str_eq(err, "the config was accepted, want a refusal naming 'base_url'");
    cr_assert_eq(phtk_expect_refused(&tiny_plugin, bad_url, "'api_key'", secrets, err, sizeof err),
                 -1);
    cr_assert(strstr(err, "does not name 'api_key'") && strstr(err, "not an http(s) URL"), "%s",
              err);

    /* A refusal that quotes a listed string fails without copying it. */
    static const char *const unknown[] = {"base_url", "https://x", "api_key", "k",
                                          "apikey",   "Zq9-leak",  NULL};
    static const char *const quoted[] = {"k3y-s3cr3t", "apikey", NULL};
    cr_assert_eq(phtk_expect_refused(&tiny_plugin, unknown, "apikey", quoted, err, sizeof err), -1);
    cr_assert_str_eq(err, "the refusal quotes secret #1");
    cr_assert_eq(phtk_expect_refused(&tiny_plugin, unknown, NULL, NULL, err, sizeof err), -1);
    cr_assert_str_eq(err, "phtk_expect_refused: needle is NULL");
}

/* An order built at a frozen clock: exact body, header lookup, signature checked
 * independently, the log says what the plugin logged and never the key. */
Test(testkit, build_request)
{
    phtk *tk = tiny_open();
    const struct perkhub_host *h = phtk_host(tk);
    size_t base = phtk_blocks(tk);
    phtk_set_now(tk, INT64_C(1764000000000));
    struct perkhub_op op = {.kind = PERKHUB_OP_CARD_ORDER,
                            .order_ref = "A-1",
                            .product_id = "iqiyi gold/1m",
                            .quantity = 1};
    struct perkhub_request req;
    cr_assert_eq(phtk_build(tk, &op, &req), PERKHUB_OK);
    cr_assert_str_eq(req.method, "POST");
    cr_assert_str_eq(req.url, "https://sup.example/api/order");
    cr_assert_str_eq(req.body, "app=app0&ref=A-1&product=iqiyi%20gold%2F1m&ts=1764000000000");
    cr_assert_eq(req.body_len, strlen(req.body));
    cr_assert_str_eq(phtk_header(&req, "content-type"), "application/x-www-form-urlencoded");
    uint8_t mac[32];
    char want[65];
    h->hmac_sha256(h, "k3y-s3cr3t", 10, req.body, req.body_len, mac);
    hex(mac, 32, want);
    cr_assert_str_eq(phtk_header(&req, "X-SIGN"), want);
    cr_assert_null(phtk_header(&req, "X-Sig"), "a prefix of a name is not the name");
    cr_assert_null(phtk_header(&req, "Authorization"));
    cr_assert_gt(phtk_blocks(tk), base);
    phtk_request_clear(tk, &req);
    cr_assert_eq(phtk_blocks(tk), base, "the request's blocks are given back");
    cr_assert_null(req.url);

    op.kind = PERKHUB_OP_BALANCE;
    cr_assert_eq(phtk_build(tk, &op, &req), PERKHUB_ERR_UNSUPPORTED);
    op.kind = PERKHUB_OP_ORDER_QUERY;
    op.order_ref = "A 2";
    cr_assert_eq(phtk_build(tk, &op, &req), PERKHUB_OK);
    cr_assert_str_eq(req.url, "https://sup.example/api/query?ref=A%202");
    cr_assert_null(req.body);
    phtk_request_clear(tk, &req);

    const char *log = phtk_log(tk);
    cr_assert(strstr(log, "level=info msg=plugin.init supplier=test plugin=tiny app=app0"), "%s",
              log);
    cr_assert(strstr(log, "msg=plugin.order.build supplier=test plugin=tiny ref=A-1"), "%s", log);
    cr_assert_null(strstr(log, "k3y-s3cr3t"), "the secret never reaches a log line");
    phtk_close(tk);
}

/* Every outcome class of parse_response, from recorded bodies; the "ok" body is
 * what serve_local answers, so the code round-trips AES + base64. */
Test(testkit, serve_then_parse)
{
    phtk *tk = tiny_open();
    size_t base = phtk_blocks(tk);
    struct perkhub_op op = {.kind = PERKHUB_OP_CARD_ORDER, .order_ref = "R7", .product_id = "p"};
    struct perkhub_request req;
    struct perkhub_local_reply reply;
    struct perkhub_result res;
    cr_assert_eq(phtk_build(tk, &op, &req), PERKHUB_OK);
    cr_assert_eq(phtk_serve(tk, &req, &reply), PERKHUB_OK);
    cr_assert_eq(reply.http_status, 200);
    cr_assert_eq(strncmp(reply.body, "ok ", 3), 0, "%s", reply.body);
    cr_assert_eq(phtk_parse(tk, &op, 200, reply.body, reply.body_len, &res), PERKHUB_OK);
    cr_assert_eq(res.state, PERKHUB_STATE_SUCCEEDED);
    cr_assert_eq(res.ncodes, 1);
    cr_assert_str_eq(res.codes[0].code, "CODE-R7");
    cr_assert_eq(res.amount, -1, "unknown int64 fields start at -1");
    phtk_result_clear(tk, &res);
    cr_assert_null(res.codes);
    phtk_reply_clear(tk, &reply);
    phtk_request_clear(tk, &req);

    static const struct {
        int http;
        const char *body;
        int st, state;
        const char *reason;
    } cases[] = {
        {200, "busy", PERKHUB_RETRYABLE, PERKHUB_STATE_NONE, NULL},
        {200, "nostock", PERKHUB_DEFINITE_FAILURE, PERKHUB_STATE_NONE, "out_of_stock"},
        {200, "pending", PERKHUB_OK, PERKHUB_STATE_PROCESSING, NULL},
        {200, "ok !!!", PERKHUB_AMBIGUOUS, PERKHUB_STATE_NONE, NULL},
        {200, "ok Zm9vYmFy", PERKHUB_AMBIGUOUS, PERKHUB_STATE_NONE, NULL},
        {200, "<html>", PERKHUB_AMBIGUOUS, PERKHUB_STATE_NONE, NULL},
        {404, "busy", PERKHUB_AMBIGUOUS, PERKHUB_STATE_NONE, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int st = phtk_parse(tk, &op, cases[i].http, cases[i].body, strlen(cases[i].body), &res);
        cr_assert_eq(st, cases[i].st, "%s: %d", cases[i].body, st);
        cr_assert_eq(res.state, cases[i].state, "%s", cases[i].body);
        if (cases[i].reason)
            cr_assert_str_eq(res.reason, cases[i].reason);
        else
            cr_assert_null(res.reason);
        if (cases[i].state == PERKHUB_STATE_PROCESSING) {
            cr_assert_eq(res.next, 1);
            cr_assert_str_eq(res.next_state, "query");
            cr_assert_eq(res.next_delay_ms, 500);
        }
        phtk_result_clear(tk, &res);
    }
    /* the kit hands the plugin a NUL-terminated copy of exactly len bytes */
    cr_assert_eq(phtk_parse(tk, &op, 200, "busyXXXX", 4, &res), PERKHUB_RETRYABLE);
    phtk_result_clear(tk, &res);
    cr_assert_eq(phtk_blocks(tk), base, "no leak across every outcome");
    phtk_close(tk);
}

Test(testkit, verify_callback)
{
    phtk *tk = tiny_open();
    const struct perkhub_host *h = phtk_host(tk);
    const char *body = "R9|ok";
    uint8_t mac[32];
    char q[80] = "sign=";
    h->hmac_sha256(h, "k3y-s3cr3t", 10, body, strlen(body), mac);
    hex(mac, 32, q + 5);
    struct perkhub_callback cb = {.query = q, .body = body, .body_len = strlen(body)};
    struct perkhub_result res;
    cr_assert_eq(phtk_verify(tk, &cb, &res), PERKHUB_OK);
    cr_assert_str_eq(res.order_ref, "R9");
    cr_assert_eq(res.state, PERKHUB_STATE_SUCCEEDED);
    cr_assert_str_eq(res.reply_body, "success");
    phtk_result_clear(tk, &res);

    q[10] = q[10] == '0' ? '1' : '0'; /* one hex digit off */
    cr_assert_eq(phtk_verify(tk, &cb, &res), PERKHUB_DEFINITE_FAILURE);
    cr_assert_str_eq(res.reason, "bad_signature");
    cr_assert_null(res.order_ref);
    phtk_result_clear(tk, &res);

    cb.query = NULL; /* read as "" */
    cr_assert_eq(phtk_verify(tk, &cb, &res), PERKHUB_DEFINITE_FAILURE);
    phtk_result_clear(tk, &res);
    phtk_close(tk);
}

Test(testkit, fixture_files_and_leaks)
{
    char path[] = "/tmp/phtk-fixture-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    static const char content[] = "nostock\n\0tail";
    cr_assert_eq(write(fd, content, sizeof content - 1), (ssize_t)(sizeof content - 1));
    close(fd);
    size_t len = 0;
    char *f = phtk_fixture(path, &len);
    cr_assert_not_null(f);
    cr_assert_eq(len, sizeof content - 1, "binary content, NUL included");
    cr_assert_eq(memcmp(f, content, len), 0);
    cr_assert_eq(f[len], '\0');
    free(f);
    unlink(path);
    cr_assert_null(phtk_fixture(path, &len));

    /* a plugin that forgets a block: counted by phtk_blocks, reclaimed and
     * reported at close (ASan would see it otherwise) */
    phtk *tk = tiny_open();
    size_t base = phtk_blocks(tk);
    void *forgotten = phtk_host(tk)->mem_alloc(phtk_host(tk), 10);
    cr_assert_not_null(forgotten);
    cr_assert_eq(phtk_blocks(tk), base + 1);
    cr_assert_not_null(phtk_instance(tk));
    phtk_close(tk);
}
