/*
 * plugin_text.c — the host table's text helpers (ABI 1.4: form_encode,
 * kv_parse, url_decode, hex_encode, hex_decode; perkhub/plugin.h documents
 * them). Pure functions over the instance's allocator, reached through the
 * host table itself, so their blocks are accounted like any other.
 */
#include <stdlib.h>
#include <string.h>

#include "supply/loader_int.h"

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes s[0..len) into out (room for len bytes); returns the length, or -1
 * for a bad escape, a %00 or a NUL byte. */
static long text_decode(const char *s, size_t len, int plus_space, char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -1;
            int hi = hex_val(s[i + 1]);
            int lo = hex_val(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            out[n++] = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '\0') {
            return -1;
        } else {
            out[n++] = plus_space && c == '+' ? ' ' : c;
        }
    }
    return (long)n;
}

int ph_host_url_decode(const struct perkhub_host *host, const char *s, size_t len, int plus_space,
                       char **out)
{
    if (!s || !out)
        return PERKHUB_ERR_INTERNAL;
    char *buf = host->mem_alloc(host, len + 1);
    if (!buf)
        return PERKHUB_ERR_NOMEM;
    long n = text_decode(s, len, plus_space, buf);
    if (n < 0) {
        host->mem_free(host, buf);
        return PERKHUB_DEFINITE_FAILURE;
    }
    buf[n] = '\0';
    *out = buf;
    return PERKHUB_OK;
}

char *ph_host_hex_encode(const struct perkhub_host *host, const void *data, size_t len, int upper)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    if (len > (SIZE_MAX - 1) / 2 || (!data && len))
        return NULL;
    char *out = host->mem_alloc(host, 2 * len + 1);
    if (!out)
        return NULL;
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * len] = '\0';
    return out;
}

int ph_host_hex_decode(const struct perkhub_host *host, const char *text, size_t len, uint8_t **out,
                       size_t *outlen)
{
    if (!text || !out || !outlen)
        return PERKHUB_ERR_INTERNAL;
    if (len % 2)
        return PERKHUB_DEFINITE_FAILURE;
    uint8_t *buf = host->mem_alloc(host, len / 2 + 1);
    if (!buf)
        return PERKHUB_ERR_NOMEM;
    for (size_t i = 0; i < len; i += 2) {
        int hi = hex_val(text[i]), lo = hex_val(text[i + 1]);
        if (hi < 0 || lo < 0) {
            host->mem_free(host, buf);
            return PERKHUB_DEFINITE_FAILURE;
        }
        buf[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    *out = buf;
    *outlen = len / 2;
    return PERKHUB_OK;
}

/* The number of fields of text (non-empty runs between seps). */
static size_t fields_count(const char *text, size_t len, char sep)
{
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && text[j] != sep)
            j++;
        n += j > i;
        i = j + 1;
    }
    return n;
}

int ph_host_kv_parse(const struct perkhub_host *host, const char *text, size_t len, char sep,
                     int decode, char ***kv, size_t *npairs)
{
    if ((!text && len) || !kv || sep == '=' || sep == '\0')
        return PERKHUB_ERR_INTERNAL;
    if (text && memchr(text, '\0', len))
        return PERKHUB_DEFINITE_FAILURE;
    size_t n = fields_count(text, len, sep);
    /* One block: the pointer array, then every string (each field decodes
     * to at most its own length, and gets a NUL per key and value). */
    size_t head = (2 * n + 1) * sizeof(char *);
    char **a = host->mem_alloc(host, head + len + 2 * n + 1);
    if (!a)
        return PERKHUB_ERR_NOMEM;
    char *w = (char *)a + head;
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && text[j] != sep)
            j++;
        if (j > i) {
            const char *eq = memchr(text + i, '=', j - i);
            size_t kl = eq ? (size_t)(eq - (text + i)) : j - i;
            const char *v = eq ? eq + 1 : text + j;
            size_t vl = eq ? (size_t)(text + j - v) : 0;
            if (kl == 0)
                goto bad;
            for (int part = 0; part < 2; part++) {
                const char *src = part ? v : text + i;
                size_t sl = part ? vl : kl;
                long m = decode ? text_decode(src, sl, 1, w) : (memcpy(w, src, sl), (long)sl);
                if (m < 0)
                    goto bad;
                a[k++] = w;
                w[m] = '\0';
                w += m + 1;
            }
        }
        i = j + 1;
    }
    a[k] = NULL;
    *kv = a;
    if (npairs)
        *npairs = n;
    return PERKHUB_OK;
bad:
    host->mem_free(host, a);
    return PERKHUB_DEFINITE_FAILURE;
}

static int pair_cmp(const void *a, const void *b)
{
    const char *const *x = a, *const *y = b;
    int c = strcmp(x[0], y[0]);
    /* stable for equal keys: the pairs' own order */
    return c ? c : (x < y ? -1 : x > y);
}

char *ph_host_form_encode(const struct perkhub_host *host, const char *const *kv, unsigned flags)
{
    if (!kv)
        return NULL;
    size_t n = 0;
    while (kv[2 * n] && kv[2 * n + 1])
        n++;
    const char **pairs = malloc((2 * n + 1) * sizeof *pairs);
    if (!pairs)
        return NULL;
    memcpy(pairs, kv, 2 * n * sizeof *pairs);
    if (flags & PERKHUB_FORM_SORTED)
        qsort(pairs, n, 2 * sizeof *pairs, pair_cmp);
    char *out = NULL;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if ((flags & PERKHUB_FORM_SKIP_EMPTY) && !pairs[2 * i + 1][0])
            continue;
        char *part[2];
        for (int j = 0; j < 2; j++)
            part[j] = (flags & PERKHUB_FORM_RAW) ? host->mem_strdup(host, pairs[2 * i + j])
                                                 : host->url_encode(host, pairs[2 * i + j]);
        size_t need = len + (len ? 1 : 0) + (part[0] ? strlen(part[0]) : 0) + 1 +
                      (part[1] ? strlen(part[1]) : 0) + 1;
        char *grown = part[0] && part[1] ? host->mem_realloc(host, out, need) : NULL;
        if (grown) {
            out = grown;
            if (len)
                out[len++] = '&';
            strcpy(out + len, part[0]);
            strcat(out + len, "=");
            strcat(out + len, part[1]);
            len += strlen(out + len);
        }
        host->mem_free(host, part[0]);
        host->mem_free(host, part[1]);
        if (!grown) {
            host->mem_free(host, out);
            free(pairs);
            return NULL;
        }
    }
    free(pairs);
    return out ? out : host->mem_strdup(host, "");
}
