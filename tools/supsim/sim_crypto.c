/* sim_crypto.c — the hashes, MACs and card encryption both protocols need. */
#include "supsim.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void to_hex(const unsigned char *d, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[2 * n] = 0;
}

void sim_md5_hex(const char *data, size_t n, char out[33])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dn = 0;
    EVP_Digest(data, n, d, &dn, EVP_md5(), NULL);
    to_hex(d, 16, out);
}

void sim_hmac_hex(const char *key, const char *data, size_t n, char out[65])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dn = 0;
    HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)data, n, d, &dn);
    to_hex(d, 32, out);
}

char *sim_card_encrypt(const char *secret, const uint8_t iv[16], const char *pt)
{
    unsigned char key[32];
    unsigned int kn = 0;
    EVP_Digest(secret, strlen(secret), key, &kn, EVP_sha256(), NULL);
    size_t ptn = strlen(pt);
    unsigned char *raw = malloc(16 + ptn + 32);
    char *out = NULL;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n1 = 0, n2 = 0;
    if (!raw || !ctx)
        goto done;
    memcpy(raw, iv, 16);
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, iv) != 1 ||
        EVP_EncryptUpdate(ctx, raw + 16, &n1, (const unsigned char *)pt, (int)ptn) != 1 ||
        EVP_EncryptFinal_ex(ctx, raw + 16 + n1, &n2) != 1)
        goto done;
    size_t rn = 16 + (size_t)n1 + (size_t)n2;
    out = malloc(4 * ((rn + 2) / 3) + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, raw, (int)rn);
done:
    EVP_CIPHER_CTX_free(ctx);
    free(raw);
    return out;
}

char *sim_card_decrypt(const char *secret, const char *text)
{
    unsigned char key[32];
    unsigned int kn = 0;
    EVP_Digest(secret, strlen(secret), key, &kn, EVP_sha256(), NULL);
    size_t rn = 0;
    char *raw = sim_base64_decode(text, &rn);
    char *out = NULL;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n1 = 0, n2 = 0;
    if (!raw || !ctx || rn <= 16 || (rn - 16) % 16)
        goto done;
    out = malloc(rn + 1);
    if (!out || EVP_DecryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, (unsigned char *)raw) != 1 ||
        EVP_DecryptUpdate(ctx, (unsigned char *)out, &n1, (unsigned char *)raw + 16,
                          (int)(rn - 16)) != 1 ||
        EVP_DecryptFinal_ex(ctx, (unsigned char *)out + n1, &n2) != 1) {
        free(out);
        out = NULL;
        goto done;
    }
    out[n1 + n2] = 0;
done:
    EVP_CIPHER_CTX_free(ctx);
    free(raw);
    return out;
}

char *sim_base64_decode(const char *in, size_t *n)
{
    size_t len = strlen(in);
    if (len % 4)
        return NULL;
    char *out = malloc(len / 4 * 3 + 1);
    if (!out)
        return NULL;
    int got = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)in, (int)len);
    if (got < 0) {
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes */
    while (len && in[len - 1] == '=') {
        len--;
        got--;
    }
    out[got] = 0;
    *n = (size_t)got;
    return out;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int sim_gw_sign(json_t *params, const char *secret, char out[33])
{
    size_t nkeys = json_object_size(params), k = 0, total = strlen(secret) + 1;
    const char **keys = calloc(nkeys + 1, sizeof *keys);
    const char *key;
    json_t *v;
    if (!keys)
        return -1;
    json_object_foreach(params, key, v)
    {
        if (!json_is_string(v)) {
            free(keys);
            return -1;
        }
        if (strcmp(key, "sign") == 0 || json_string_length(v) == 0)
            continue;
        keys[k++] = key;
        total += strlen(key) + json_string_length(v) + 2;
    }
    qsort(keys, k, sizeof *keys, cmp_str);
    char *buf = malloc(total);
    size_t at = 0;
    if (!buf) {
        free(keys);
        return -1;
    }
    for (size_t i = 0; i < k; i++) {
        json_t *val = json_object_get(params, keys[i]);
        at += (size_t)sprintf(buf + at, "%s%s=%s", i ? "&" : "", keys[i], json_string_value(val));
    }
    at += (size_t)sprintf(buf + at, "%s", secret);
    sim_md5_hex(buf, at, out);
    free(buf);
    free(keys);
    return 0;
}

char *sim_rw_header(const char *secret, const char *body, int64_t t)
{
    char ts[24], mac[65];
    snprintf(ts, sizeof ts, "%lld", (long long)t);
    size_t n = strlen(ts) + 1 + strlen(body);
    char *msg = malloc(n + 1);
    if (!msg)
        return NULL;
    sprintf(msg, "%s.%s", ts, body);
    sim_hmac_hex(secret, msg, n, mac);
    free(msg);
    char *h = NULL;
    if (asprintf(&h, "X-Rewards-Signature: t=%s,v1=%s", ts, mac) < 0)
        return NULL;
    return h;
}
