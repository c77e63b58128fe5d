/*
 * code.c — sealing, unsealing and normalizing one card code (code.h).
 */
#include "crypto/code.h"

#include <string.h>

static int lookalike_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z');
}

static char upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

int ph_code_lookalikes_parse(const char *text, size_t len, char *out, const char **why)
{
    char to[128] = {0}; /* to[FROM] = TO, 0 = not mapped */
    size_t i = 0;
    while (i < len) {
        if (text[i] == ' ' || text[i] == ',' || text[i] == '\t') {
            i++;
            continue;
        }
        if (i + 3 > len || text[i + 1] != '=' ||
            (i + 3 < len && text[i + 3] != ' ' && text[i + 3] != ',' && text[i + 3] != '\t'))
            return *why = "pairs are written FROM=TO, e.g. \"O=0 I=1 L=1\"", PH_EINVAL;
        char from = upper(text[i]), dst = upper(text[i + 2]);
        if (!lookalike_char(from) || !lookalike_char(dst))
            return *why = "FROM and TO are letters or digits", PH_EINVAL;
        if (from == dst)
            return *why = "a pair maps a character to itself", PH_EINVAL;
        if (to[(int)from])
            return *why = "a character is mapped twice", PH_EINVAL;
        to[(int)from] = dst;
        i += 3;
    }
    size_t n = 0;
    for (int c = 0; c < 128; c++) {
        if (!to[c])
            continue;
        if (to[(int)to[c]])
            return *why = "a TO is also a FROM (write the final character instead)", PH_EINVAL;
        out[n++] = (char)c;
        out[n++] = to[c];
    }
    out[n] = 0;
    return PH_OK;
}

int ph_code_normalize(const char *code, size_t len, const char *rule, char *out, size_t *outlen)
{
    char map[128];
    for (int c = 0; c < 128; c++)
        map[c] = upper((char)c);
    for (size_t i = 0; rule && rule[i] && rule[i + 1]; i += 2)
        map[(unsigned char)rule[i] & 127] = rule[i + 1];
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)code[i];
        if (c == ' ' || c == '\t' || c == '-')
            continue;
        out[n++] = c < 128 ? map[(unsigned char)upper((char)c)] : (char)c;
    }
    *outlen = n;
    return n ? PH_OK : PH_EINVAL;
}

int ph_code_hash(const ph_keyring *kr, const char *code, size_t len, const char *rule,
                 uint8_t hash[32])
{
    char norm[PH_CODE_MAX];
    size_t n = 0;
    if (!len || len > PH_CODE_MAX || ph_code_normalize(code, len, rule, norm, &n) != PH_OK)
        return PH_EINVAL;
    ph_crypto_index(kr, norm, n, hash);
    ph_wipe(norm, sizeof norm);
    return PH_OK;
}

int ph_code_seal_rule(const ph_keyring *kr, const char *rule, const char *code, size_t code_len,
                      const char *card, size_t card_len, uint8_t *out, size_t *outlen,
                      uint8_t hash[32])
{
    if (!code_len || code_len > PH_CODE_MAX || card_len > PH_CODE_MAX ||
        ph_code_hash(kr, code, code_len, rule, hash) != PH_OK)
        return PH_EINVAL;
    uint8_t pt[1 + 2 * PH_CODE_MAX];
    pt[0] = (uint8_t)code_len;
    memcpy(pt + 1, code, code_len);
    if (card_len)
        memcpy(pt + 1 + code_len, card, card_len);
    int rc = ph_crypto_seal(kr, pt, 1 + code_len + card_len, (const uint8_t *)PH_CODE_AAD,
                            strlen(PH_CODE_AAD), out, outlen);
    ph_wipe(pt, sizeof pt);
    return rc;
}

int ph_code_seal(const ph_keyring *kr, const char *code, size_t code_len, const char *card,
                 size_t card_len, uint8_t *out, size_t *outlen, uint8_t hash[32])
{
    return ph_code_seal_rule(kr, NULL, code, code_len, card, card_len, out, outlen, hash);
}

int ph_code_unseal(const ph_keyring *kr, const uint8_t *sealed, size_t len, char *code, char *card)
{
    uint8_t pt[1 + 2 * PH_CODE_MAX + 1];
    size_t n = 0;
    code[0] = card[0] = 0;
    if (len < PH_SEAL_OVERHEAD || len - PH_SEAL_OVERHEAD > sizeof pt)
        return PH_ECRYPTO;
    int rc =
        ph_crypto_open(kr, sealed, len, (const uint8_t *)PH_CODE_AAD, strlen(PH_CODE_AAD), pt, &n);
    if (rc == PH_OK && (n < 1 || pt[0] > n - 1 || n - 1 - pt[0] > PH_CODE_MAX))
        rc = PH_ECRYPTO;
    if (rc == PH_OK) {
        memcpy(code, pt + 1, pt[0]);
        code[pt[0]] = 0;
        memcpy(card, pt + 1 + pt[0], n - 1 - pt[0]);
        card[n - 1 - pt[0]] = 0;
    }
    ph_wipe(pt, sizeof pt);
    return rc;
}
