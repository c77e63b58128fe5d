/*
 * sup_text.c — the rules of sup_text.h.
 */
#include "supply/sup_text.h"

#include <string.h>

#include "base/util.h"

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_lower(char c)
{
    return c >= 'a' && c <= 'z';
}

int ph_suptext_reason_ok(const char *s)
{
    if (!s)
        return 0;
    size_t n = strlen(s), words = 0;
    if (n == 0 || n > PH_SUPTEXT_REASON_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '_') {
            /* a separator between two words: not first, not last, not doubled */
            if (i == 0 || i + 1 == n || s[i + 1] == '_')
                return 0;
            continue;
        }
        if (!is_lower(s[i]))
            return 0;
        if (i == 0 || s[i - 1] == '_')
            words++;
    }
    return words >= 1 && words <= PH_SUPTEXT_REASON_WORDS;
}

int ph_suptext_id_ok(const char *s, size_t max)
{
    if (!s)
        return 0;
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!(is_digit(c) || is_lower(c) || (c >= 'A' && c <= 'Z') || strchr("._:-/+=", c)))
            return 0;
        if (n >= max)
            return 0;
    }
    return n >= 1;
}

/* A digit separator inside a run: one of these between two digits. */
static int run_sep(char c)
{
    return c == ' ' || c == '-' || c == '.' || c == '/';
}

/* The run starting at s[i] (a digit): its digits and its end (one past the
 * last digit). */
static size_t run_at(const char *s, size_t i, size_t *end)
{
    size_t digits = 0;
    for (;;) {
        while (is_digit(s[i])) {
            digits++;
            i++;
        }
        if (run_sep(s[i]) && is_digit(s[i + 1])) {
            i++;
            continue;
        }
        *end = i;
        return digits;
    }
}

size_t ph_suptext_digit_run(const char *s)
{
    size_t best = 0;
    for (size_t i = 0; s && s[i];) {
        if (!is_digit(s[i])) {
            i++;
            continue;
        }
        size_t end, d = run_at(s, i, &end);
        if (d > best)
            best = d;
        i = end;
    }
    return best;
}

void ph_suptext_mask_runs(char *s)
{
    for (size_t i = 0; s && s[i];) {
        if (!is_digit(s[i])) {
            i++;
            continue;
        }
        size_t end, d = run_at(s, i, &end);
        for (; d >= PH_SUPTEXT_DIGIT_RUN && i < end; i++)
            if (is_digit(s[i]))
                s[i] = '*';
        i = end;
    }
}

static void put_none(void *sink, const char *p, size_t n)
{
    (void)sink, (void)p, (void)n;
}

int ph_suptext_text_ok(const char *s, size_t max)
{
    if (!s)
        return 0;
    size_t n = strlen(s);
    if (n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    /* the one UTF-8 check of the core: what jansson would accept */
    if (ph_json_str(s, put_none, NULL) != 0)
        return 0;
    return ph_suptext_digit_run(s) < PH_SUPTEXT_DIGIT_RUN;
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* The digits of account, in order, into d (at most cap - 1 of them). */
static size_t digits_of(const char *account, char *d, size_t cap)
{
    size_t n = 0;
    for (; *account && n + 1 < cap; account++)
        if (is_digit(*account))
            d[n++] = *account;
    d[n] = 0;
    return n;
}

/* Do the digits of s, everything else left out, hold d[0..n)? */
static int digits_hold(const char *s, const char *d, size_t n)
{
    for (; *s; s++) {
        if (*s != d[0])
            continue;
        size_t k = 0;
        for (const char *p = s; *p && k < n; p++) {
            if (!is_digit(*p))
                continue;
            if (*p != d[k])
                break;
            k++;
        }
        if (k == n)
            return 1;
    }
    return 0;
}

static int holds_nocase(const char *s, const char *needle, size_t n)
{
    for (; *s; s++) {
        size_t k = 0;
        while (k < n && s[k] && lower(s[k]) == lower(needle[k]))
            k++;
        if (k == n)
            return 1;
    }
    return 0;
}

int ph_suptext_has_account(const char *s, const char *account)
{
    if (!s || !account)
        return 0;
    char d[128];
    size_t nd = digits_of(account, d, sizeof d);
    if (nd >= PH_SUPTEXT_ACCOUNT_MIN && digits_hold(s, d, nd))
        return 1;
    size_t na = strlen(account);
    return na >= PH_SUPTEXT_ACCOUNT_MIN && holds_nocase(s, account, na);
}
