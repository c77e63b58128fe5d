/*
 * wh_policy.c — the pure decisions of webhook delivery (wh_policy.h).
 */
#include "notify/wh_policy.h"

#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WHSEC "whsec_"

int ph_wh_secret_key(const char *secret, uint8_t key[PH_WH_KEY_MAX], size_t *len, ph_err *err)
{
    if (!secret || !secret[0])
        return ph_err_set(err, PH_EINVAL, "the secret is empty");
    size_t n = strlen(secret);
    if (strncmp(secret, WHSEC, strlen(WHSEC)) != 0) {
        if (n > PH_WH_KEY_MAX)
            return ph_err_set(err, PH_EINVAL, "the secret is longer than %d bytes", PH_WH_KEY_MAX);
        memcpy(key, secret, n);
        *len = n;
        return PH_OK;
    }
    const char *b64 = secret + strlen(WHSEC);
    size_t bn = n - strlen(WHSEC);
    uint8_t out[(PH_WH_KEY_MAX + 2) / 3 * 3 + 3];
    if (bn == 0 || bn % 4 || bn / 4 * 3 > sizeof out)
        return ph_err_set(err, PH_EINVAL, "the whsec_ secret is not base64 of 1..%d bytes",
                          PH_WH_KEY_MAX);
    int got = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)bn);
    if (got < 0)
        return ph_err_set(err, PH_EINVAL, "the whsec_ secret is not base64");
    /* EVP_DecodeBlock counts the padding's zero bytes: take them off */
    if (bn >= 1 && b64[bn - 1] == '=')
        got--;
    if (bn >= 2 && b64[bn - 2] == '=')
        got--;
    if (got <= 0 || got > PH_WH_KEY_MAX) {
        OPENSSL_cleanse(out, sizeof out);
        return ph_err_set(err, PH_EINVAL, "the whsec_ secret is not base64 of 1..%d bytes",
                          PH_WH_KEY_MAX);
    }
    memcpy(key, out, (size_t)got);
    *len = (size_t)got;
    OPENSSL_cleanse(out, sizeof out);
    return PH_OK;
}

struct ph_wh_signer {
    EVP_MAC_CTX *ctx; /* keyed: each signature starts from it again */
};

ph_wh_signer *ph_wh_signer_new(const uint8_t *key, size_t key_len)
{
    ph_wh_signer *s = calloc(1, sizeof *s);
    EVP_MAC *mac = s ? EVP_MAC_fetch(NULL, "HMAC", NULL) : NULL;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0),
                           OSSL_PARAM_construct_end()};
    if (mac && (s->ctx = EVP_MAC_CTX_new(mac)) && EVP_MAC_init(s->ctx, key, key_len, params)) {
        EVP_MAC_free(mac);
        return s;
    }
    EVP_MAC_free(mac);
    ph_wh_signer_free(s);
    return NULL;
}

void ph_wh_signer_free(ph_wh_signer *s)
{
    if (!s)
        return;
    EVP_MAC_CTX_free(s->ctx);
    free(s);
}

int ph_wh_sign_with(ph_wh_signer *s, const char *id, int64_t ts, const char *body, size_t body_len,
                    char out[PH_WH_SIG_MAX])
{
    char tsbuf[32];
    int tn = snprintf(tsbuf, sizeof tsbuf, ".%lld.", (long long)ts);
    uint8_t mac[32];
    size_t mlen = 0;
    /* a NULL key starts again from the key the context holds */
    int ok = EVP_MAC_init(s->ctx, NULL, 0, NULL) &&
             EVP_MAC_update(s->ctx, (const unsigned char *)id, strlen(id)) &&
             EVP_MAC_update(s->ctx, (const unsigned char *)tsbuf, (size_t)tn) &&
             (!body_len || EVP_MAC_update(s->ctx, (const unsigned char *)body, body_len)) &&
             EVP_MAC_final(s->ctx, mac, &mlen, sizeof mac) && mlen == sizeof mac;
    if (!ok)
        return PH_EIO;
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)sizeof mac); /* 44 chars and a NUL */
    return PH_OK;
}

int ph_wh_sign(const uint8_t *key, size_t key_len, const char *id, int64_t ts, const char *body,
               size_t body_len, char out[PH_WH_SIG_MAX])
{
    ph_wh_signer *s = ph_wh_signer_new(key, key_len);
    if (!s)
        return PH_EIO;
    int rc = ph_wh_sign_with(s, id, ts, body, body_len, out);
    ph_wh_signer_free(s);
    return rc;
}

/* FNV-1a over the id and the attempt: a stable draw, not a secret. */
static uint64_t draw(const char *id, uint32_t attempt)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    for (int i = 0; i < 4; i++)
        h = (h ^ ((attempt >> (8 * i)) & 0xff)) * 1099511628211ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

int64_t ph_wh_backoff_ms(const char *id, uint32_t attempt, int64_t base_ms, int64_t max_ms)
{
    if (attempt < 1)
        attempt = 1;
    if (base_ms < 1)
        base_ms = 1;
    if (max_ms < base_ms)
        max_ms = base_ms;
    int64_t d = base_ms;
    for (uint32_t i = 1; i < attempt && d < max_ms; i++)
        d = d > max_ms / 2 ? max_ms : d * 2;
    if (d > max_ms)
        d = max_ms;
    /* [d/2, d]: half fixed, half drawn */
    uint64_t span = (uint64_t)(d - d / 2) + 1;
    return d / 2 + (int64_t)(draw(id ? id : "", attempt) % span);
}

const char *ph_wh_outcome_name(int outcome)
{
    static const char *const names[] = {"?", "delivered", "retry", "dead", "gone"};
    return outcome >= 1 && outcome <= 4 ? names[outcome] : "?";
}

int ph_wh_outcome(int http_status, int64_t now, int64_t created_at, int64_t delay_ms,
                  int64_t retry_for_ms, int64_t *next_at)
{
    *next_at = 0;
    if (http_status >= 200 && http_status <= 299)
        return PH_WH_DELIVERED;
    if (http_status == 410)
        return PH_WH_GONE;
    if (now + delay_ms > created_at + retry_for_ms)
        return PH_WH_DEAD;
    *next_at = now + delay_ms;
    return PH_WH_RETRY;
}

int ph_wh_may_send(int on_wire, int64_t next_at, int64_t now, int prev, int disabled,
                   unsigned in_flight, unsigned max_in_flight)
{
    return !on_wire && !disabled && next_at <= now && prev != PH_WH_PREV_OPEN &&
           in_flight < max_in_flight;
}

int ph_wh_event_match(const char *pattern, const char *type)
{
    size_t n = strlen(pattern);
    if (n >= 2 && pattern[n - 1] == '*' && pattern[n - 2] == '.')
        return strncmp(pattern, type, n - 1) == 0 && type[n - 1] != '\0';
    return strcmp(pattern, type) == 0;
}

static const char *const known_types[] = {PH_WH_ORDER_EVENTS, PH_WH_PRODUCT_EVENTS};
static const char *const product_types[] = {PH_WH_PRODUCT_EVENTS};

int ph_wh_event_known(const char *pattern)
{
    if (!pattern || !pattern[0])
        return 0;
    size_t n = strlen(pattern);
    int wild = n >= 2 && pattern[n - 1] == '*' && pattern[n - 2] == '.';
    for (size_t i = 0; i < sizeof known_types / sizeof *known_types; i++)
        if (wild ? ph_wh_event_match(pattern, known_types[i]) : !strcmp(pattern, known_types[i]))
            return 1;
    return 0;
}

int ph_wh_product_event(const char *type)
{
    for (size_t i = 0; i < sizeof product_types / sizeof *product_types; i++)
        if (!strcmp(type, product_types[i]))
            return 1;
    return 0;
}

int ph_wh_busy(int64_t now, int64_t last_event_at, uint64_t wait_ns, uint64_t wall_ns, int was_busy)
{
    if (!last_event_at || now - last_event_at > PH_WH_BUSY_WINDOW_MS || !wall_ns)
        return 0;
    return wait_ns * (was_busy ? 40 : 10) >= wall_ns;
}
