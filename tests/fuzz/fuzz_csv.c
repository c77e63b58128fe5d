/*
 * fuzz_csv.c — a card-code file as POST /v1/batches receives it: the CSV parser
 * (core/codes/csv.c) and, for every row it accepts, what the import does with it
 * before the store (core/codes/import.c: normalize, hash and seal under the
 * product's look-alike rule, crypto/code.c). The store write itself is left out:
 * it is the store's and the crash test's (tests/e2e/test_crash.c).
 *
 * Input: the file's bytes as they are. The first byte also picks a look-alike
 * rule (none, or a real one), so normalization is covered both ways.
 *
 * Invariants beyond "no crash, no leak":
 *   - every row holds a code (and card number, when any) of 1..128 printable
 *     non-space ASCII bytes, NUL-terminated at its length; an expiry is 0 or
 *     after the epoch; rows and bad lines are in line order; no more bad lines
 *     listed than asked, error_count >= listed; every reason is one of csv.h's;
 *   - the rows written back out as CSV (quoted, with a header, expiries as RFC
 *     3339) parse again to exactly the same rows, without a bad line;
 *   - normalizing a code twice changes nothing the second time, and its output
 *     is upper case without spaces, tabs or dashes;
 *   - sealing a row and unsealing it gives the code and card number back, and
 *     the seal's lookup hash is the one a lookup computes (ph_code_hash).
 */
#include <string.h>

#include "base/util.h"
#include "codes/csv.h"
#include "crypto/code.h"
#include "crypto/crypto.h"
#include "fuzz.h"

#define FZ_MAX_ERRORS 8

static ph_keyring *fz_keys; /* built once: sealing is what is under test, not key loading */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    uint8_t index_key[PH_KEY_LEN], key[PH_KEY_LEN];
    memset(index_key, 0x11, sizeof index_key);
    memset(key, 0x22, sizeof key);
    ph_err err;
    if (ph_keyring_from_raw(index_key, 7, key, &fz_keys, &err) != PH_OK) {
        fprintf(stderr, "fuzz_csv: keyring: %s\n", err.msg);
        abort();
    }
    return 0;
}

static int fz_token_ok(const char *s, size_t len)
{
    if (len < 1 || len > PH_CODE_MAX || strlen(s) != len)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

/* The reasons csv.h documents, and only those: a reason never quotes a field. */
static int fz_reason_ok(const char *r)
{
    static const char *const cols[] = {"code: ", "card_no: "};
    static const char *const whys[] = {
        "empty", "longer than 128 bytes", "contains a space or non-printable byte",
        "quote inside an unquoted field", "text after a closing quote"};
    for (size_t c = 0; c < 2; c++)
        if (strncmp(r, cols[c], strlen(cols[c])) == 0)
            for (size_t w = 0; w < sizeof whys / sizeof *whys; w++)
                if (strcmp(r + strlen(cols[c]), whys[w]) == 0)
                    return 1;
    if (strcmp(r, "expires_at: not a date (YYYY-MM-DD or RFC 3339)") == 0 ||
        strcmp(r, "expires_at: not after 1970-01-01") == 0 ||
        strcmp(r, "expires_at: quote inside an unquoted field") == 0 ||
        strcmp(r, "expires_at: text after a closing quote") == 0)
        return 1;
    unsigned n, m;
    char tail[8];
    return sscanf(r, "%u fields, expected at most %u%7s", &n, &m, tail) == 2 && n > m;
}

static void fz_put_quoted(char **o, const char *s)
{
    *(*o)++ = '"';
    for (; *s; s++) {
        if (*s == '"')
            *(*o)++ = '"';
        *(*o)++ = *s;
    }
    *(*o)++ = '"';
}

/* The rows as a file of our own: header, every field quoted. Caller frees. */
static char *fz_write_back(const ph_csv *csv, size_t *len)
{
    size_t cap = 32;
    for (size_t i = 0; i < csv->nrows; i++)
        cap += 2 * (csv->rows[i].code_len + csv->rows[i].card_len) + 32 + 8;
    char *out = malloc(cap), *o = out;
    if (!out)
        abort();
    o += sprintf(o, "code,card_no,expires_at\r\n");
    for (size_t i = 0; i < csv->nrows; i++) {
        const ph_csv_row *r = &csv->rows[i];
        fz_put_quoted(&o, r->code);
        *o++ = ',';
        if (r->card_no)
            fz_put_quoted(&o, r->card_no);
        *o++ = ',';
        if (r->expires_at) {
            char t[40];
            o += sprintf(o, "%s", ph_time_format(r->expires_at, t, sizeof t));
        }
        *o++ = '\n';
    }
    *len = (size_t)(o - out);
    FZ_CHECK(*len <= cap, "write-back overflow");
    return out;
}

static void fz_check_rows(const ph_csv *csv)
{
    FZ_CHECK(csv->nerrors <= FZ_MAX_ERRORS && csv->error_count >= csv->nerrors, "%zu listed, %zu",
             csv->nerrors, csv->error_count);
    for (size_t i = 0; i < csv->nrows; i++) {
        const ph_csv_row *r = &csv->rows[i];
        FZ_CHECK(fz_token_ok(r->code, r->code_len), "row %zu: bad code accepted", i);
        FZ_CHECK(r->card_no ? fz_token_ok(r->card_no, r->card_len) : r->card_len == 0,
                 "row %zu: bad card number accepted", i);
        FZ_CHECK(r->expires_at >= 0, "row %zu: expiry %lld", i, (long long)r->expires_at);
        FZ_CHECK(r->line >= 1 && (i == 0 || r->line > csv->rows[i - 1].line), "row %zu: line %u", i,
                 r->line);
    }
    for (size_t i = 0; i < csv->nerrors; i++) {
        FZ_CHECK(fz_reason_ok(csv->errors[i].reason), "reason not in csv.h: %s",
                 csv->errors[i].reason);
        FZ_CHECK(i == 0 || csv->errors[i].line > csv->errors[i - 1].line, "errors out of order");
    }
}

static void fz_check_same(const ph_csv *a, const ph_csv *b)
{
    FZ_CHECK(b->error_count == 0, "write-back has a bad line: %s", b->errors[0].reason);
    FZ_CHECK(a->nrows == b->nrows, "%zu rows, %zu after write-back", a->nrows, b->nrows);
    for (size_t i = 0; i < a->nrows; i++) {
        const ph_csv_row *x = &a->rows[i], *y = &b->rows[i];
        FZ_CHECK(x->code_len == y->code_len && memcmp(x->code, y->code, x->code_len) == 0,
                 "row %zu: code changed by write-back", i);
        FZ_CHECK(x->card_len == y->card_len && (x->card_no == NULL) == (y->card_no == NULL) &&
                     (!x->card_no || memcmp(x->card_no, y->card_no, x->card_len) == 0),
                 "row %zu: card number changed by write-back", i);
        FZ_CHECK(x->expires_at == y->expires_at, "row %zu: expiry %lld, then %lld", i,
                 (long long)x->expires_at, (long long)y->expires_at);
    }
}

static void fz_check_code(const ph_csv_row *r, const char *rule)
{
    char norm[PH_CODE_MAX + 1], again[PH_CODE_MAX + 1];
    size_t nlen = 0, alen = 0;
    if (ph_code_normalize(r->code, r->code_len, rule, norm, &nlen) == PH_OK) {
        FZ_CHECK(nlen >= 1 && nlen <= r->code_len, "normalized length %zu of %u", nlen,
                 r->code_len);
        for (size_t i = 0; i < nlen; i++)
            FZ_CHECK(norm[i] != ' ' && norm[i] != '\t' && norm[i] != '-' &&
                         !(norm[i] >= 'a' && norm[i] <= 'z'),
                     "normalized code keeps byte 0x%02x", (unsigned char)norm[i]);
        FZ_CHECK(ph_code_normalize(norm, nlen, rule, again, &alen) == PH_OK && alen == nlen &&
                     memcmp(norm, again, nlen) == 0,
                 "normalization is not idempotent");
    }

    uint8_t sealed[1 + 2 * PH_CODE_MAX + PH_SEAL_OVERHEAD], hash[32], lookup[32];
    size_t slen = 0;
    int rc = ph_code_seal_rule(fz_keys, rule, r->code, r->code_len, r->card_no, r->card_len, sealed,
                               &slen, hash);
    if (rc != PH_OK) {
        /* only a code of nothing but dashes and spaces may be refused */
        FZ_CHECK(rc == PH_EINVAL && strspn(r->code, "- \t") == r->code_len, "seal refused: %d", rc);
        return;
    }
    char code[PH_CODE_MAX + 1], card[PH_CODE_MAX + 1];
    FZ_CHECK(ph_code_unseal(fz_keys, sealed, slen, code, card) == PH_OK, "sealed code won't open");
    FZ_CHECK(strcmp(code, r->code) == 0 && strcmp(card, r->card_no ? r->card_no : "") == 0,
             "unsealed code differs");
    FZ_CHECK(ph_code_hash(fz_keys, r->code, r->code_len, rule, lookup) == PH_OK &&
                 memcmp(hash, lookup, 32) == 0,
             "seal's lookup hash differs from ph_code_hash");
    ph_wipe(code, sizeof code);
    ph_wipe(card, sizeof card);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *rule = size && (data[0] & 1) ? "I1L1O0" : NULL;
    ph_csv *csv = NULL;
    ph_err err;
    int rc = ph_csv_parse((const char *)data, size, FZ_MAX_ERRORS, &csv, &err);
    if (rc != PH_OK) {
        FZ_CHECK(csv == NULL && (rc == PH_EINVAL || rc == PH_ENOMEM) && err.msg[0],
                 "failed parse: rc %d, out %p", rc, (void *)csv);
        return 0;
    }
    fz_check_rows(csv);

    size_t blen;
    char *back = fz_write_back(csv, &blen);
    ph_csv *again = NULL;
    rc = ph_csv_parse(back, blen, FZ_MAX_ERRORS, &again, &err);
    FZ_CHECK(rc == PH_OK, "write-back does not parse: %s", err.msg);
    fz_check_same(csv, again);
    ph_csv_free(again);
    free(back);

    for (size_t i = 0; i < csv->nrows; i++)
        fz_check_code(&csv->rows[i], rule);
    ph_csv_free(csv);
    return 0;
}
