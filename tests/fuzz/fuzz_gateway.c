/*
 * fuzz_gateway.c — the signed-gateway plugin (plugins/gateway, compiled in) on
 * everything a supplier or a forger can send it: replies to each operation,
 * notify callbacks, and the account and product id a client's order puts into
 * a request.
 *
 * Input: byte 0 the mode, byte 1 the operation (fuzz_plugin.h: fzp_op), byte 2
 * the quantity and product, then the payload:
 *   mode 0  a raw reply body to the operation (status 200, or another one
 *           when byte 1 says so);
 *   mode 1  the `result` text of a code-0 reply: the harness signs it with the
 *           app secret (sign = md5(result + secret)) and, when it is a JSON
 *           object with `cards`, encrypts each card_pwd / card_number as the
 *           gateway does (base64(iv || AES-256-CBC under SHA-256(secret))), so
 *           the result parser and the card reader behind the signature are
 *           reached, not only the refusal;
 *   mode 2  a raw notify body (unsigned, or signed by the seed);
 *   mode 3  a notify body the harness signs (md5 over the sorted non-empty
 *           params "k=v&..." + secret, the protocol's rule) when it is a JSON
 *           object of strings, so the claim parser is reached;
 *   mode 4  "account\nproduct id" for build_request of the operation.
 * Checks: fuzz_plugin.h's, plus: a signed notify with a fresh timestamp and a
 * valid reference is never refused as "bad_signature" (the harness's signing is
 * the protocol's: a disagreement is a bug on one side).
 */
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "fuzz_plugin.h"

#define FZ_SECRET "S3cr3t-gw-0123456789" /* the fixtures' secret: they are seeds */

static const char *const fz_kv[] = {
    "gateway_url", "https://gw.example.test/api", "app_key", "gwtest_key", "app_secret", FZ_SECRET,
    NULL};
static const char *const fz_secrets[] = {FZ_SECRET, "GOLD-7Q2M-9XKD-41PZ", "GOLD-88AA-ZZ01-KP3M",
                                         "8800123412341234", NULL};
static const char *const fz_products[] = {"10001", "20001", "P-1"};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static void fz_md5_hex(const char *text, size_t len, char hex[33])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    FZ_CHECK(ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) && EVP_DigestUpdate(ctx, text, len) &&
                 EVP_DigestUpdate(ctx, FZ_SECRET, strlen(FZ_SECRET)) &&
                 EVP_DigestFinal_ex(ctx, d, &n),
             "md5");
    EVP_MD_CTX_free(ctx);
    for (unsigned i = 0; i < n; i++)
        sprintf(hex + 2 * i, "%02x", d[i]);
}

/* base64(iv || AES-256-CBC(SHA-256(secret), iv, plain)) as a new jansson string. */
static json_t *fz_card_seal(const char *plain)
{
    unsigned char key[32], buf[16 + 512 + 32];
    int n1 = 0, n2 = 0;
    size_t len = strlen(plain);
    if (len > 512)
        return NULL;
    SHA256((const unsigned char *)FZ_SECRET, strlen(FZ_SECRET), key);
    memset(buf, 0x5a, 16); /* a fixed iv: determinism beats realism here */
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    FZ_CHECK(ctx && EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, buf) &&
                 EVP_EncryptUpdate(ctx, buf + 16, &n1, (const unsigned char *)plain, (int)len) &&
                 EVP_EncryptFinal_ex(ctx, buf + 16 + n1, &n2),
             "aes");
    EVP_CIPHER_CTX_free(ctx);
    char b64[4 * (sizeof buf + 2) / 3 + 4];
    EVP_EncodeBlock((unsigned char *)b64, buf, 16 + n1 + n2);
    return json_string(b64);
}

/* The result text with its cards sealed (or as it is when it has none). Caller frees. */
static char *fz_seal_cards(const char *text, size_t len)
{
    json_t *r = json_loadb(text, len, 0, NULL);
    json_t *cards = json_object_get(r, "cards"), *card;
    size_t i;
    if (!json_is_array(cards)) {
        json_decref(r);
        return NULL;
    }
    json_array_foreach(cards, i, card)
    {
        static const char *const keys[] = {"card_pwd", "card_number"};
        for (size_t k = 0; k < 2; k++) {
            const char *plain = json_string_value(json_object_get(card, keys[k]));
            json_t *sealed = plain && plain[0] ? fz_card_seal(plain) : NULL;
            if (sealed)
                json_object_set_new(card, keys[k], sealed);
        }
    }
    char *out = json_dumps(r, JSON_COMPACT);
    json_decref(r);
    return out;
}

static void fz_signed_reply(fzp_kit *k, const struct perkhub_op *op, const char *text, size_t len)
{
    char *sealed = fz_seal_cards(text, len);
    if (sealed) {
        text = sealed;
        len = strlen(sealed);
    }
    char hex[33];
    fz_md5_hex(text, len, hex);
    json_t *root = json_pack("{s:i,s:s,s:s%,s:s}", "code", 0, "message", "success", "result", text,
                             len, "sign", hex);
    char *body = root ? json_dumps(root, JSON_COMPACT) : NULL;
    if (body) /* NULL: the result is not UTF-8, so it cannot be a JSON string */
        fzp_parse(k, op, 200, body, strlen(body));
    free(body);
    json_decref(root);
    free(sealed);
}

static int fz_param_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Signs a notify that is a JSON object of strings; NULL otherwise. Caller frees. */
static char *fz_sign_notify(const char *text, size_t len)
{
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    const char *key;
    json_t *v;
    size_t n = json_object_size(o), at = 0, total = 1;
    const char **keys = n ? calloc(n, sizeof *keys) : NULL;
    if (!json_is_object(o) || !keys) {
        free(keys);
        json_decref(o);
        return NULL;
    }
    json_object_del(o, "sign");
    n = 0;
    json_object_foreach(o, key, v)
    {
        if (!json_is_string(v)) {
            free(keys);
            json_decref(o);
            return NULL;
        }
        /* values as C strings, as the plugin reads them (a \u0000 ends one) */
        if (json_string_value(v)[0]) {
            keys[n++] = key;
            total += strlen(key) + strlen(json_string_value(v)) + 2;
        }
    }
    qsort(keys, n, sizeof *keys, fz_param_cmp);
    char *joined = malloc(total);
    FZ_CHECK(joined, "out of memory");
    for (size_t i = 0; i < n; i++)
        at += (size_t)sprintf(joined + at, "%s%s=%s", i ? "&" : "", keys[i],
                              json_string_value(json_object_get(o, keys[i])));
    char hex[33];
    fz_md5_hex(joined, at, hex);
    json_object_set_new(o, "sign", json_string(hex));
    char *out = json_dumps(o, JSON_COMPACT);
    free(joined);
    free(keys);
    json_decref(o);
    return out;
}

static void fz_signed_notify(fzp_kit *k, const char *text, size_t len)
{
    char *body = fz_sign_notify(text, len);
    if (!body)
        return;
    struct perkhub_callback cb = {.method = "POST",
                                  .query = "",
                                  .content_type = "application/json",
                                  .body = body,
                                  .body_len = strlen(body)};
    struct perkhub_result res;
    int st = phtk_verify(k->tk, &cb, &res);
    fzp_check_result(NULL, st, &res, 1);
    FZ_CHECK(st != PERKHUB_DEFINITE_FAILURE || !res.reason || strcmp(res.reason, "bad_signature"),
             "a notify signed by the protocol's rule refused as bad_signature");
    phtk_result_clear(k->tk, &res);
    free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_cursor c = {data, size};
    unsigned mode = fz_byte(&c), sel = fz_byte(&c), qty = fz_byte(&c);
    struct perkhub_op op = fzp_op(sel, qty, fz_products, 3);
    fzp_kit k;
    fzp_open(&k, fz_kv, fz_secrets);
    switch (mode % 5) {
    case 0:
        fzp_parse(&k, &op, sel >= 240 ? 100 + (int)(qty % 4) * 100 + (int)(sel % 10) : 200,
                  (const char *)c.p, c.left);
        break;
    case 1:
        fz_signed_reply(&k, &op, (const char *)c.p, c.left);
        break;
    case 2: {
        struct perkhub_callback cb = {.method = "POST",
                                      .query = "",
                                      .content_type = "application/json",
                                      .body = (const char *)c.p,
                                      .body_len = c.left};
        fzp_verify(&k, &cb);
        break;
    }
    case 3:
        fz_signed_notify(&k, (const char *)c.p, c.left);
        break;
    default:
        fzp_build(&k, &op, &c);
        break;
    }
    fzp_close(&k);
    return 0;
}
