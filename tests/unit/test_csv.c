/*
 * test_csv.c — the card-code CSV parser (core/codes/csv.c).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codes/csv.h"

/* 2027-01-31 end of day in UTC+08:00, i.e. 2027-01-31T15:59:59.999Z */
#define EOD_2027_01_31 1801411199999LL

/* Parses a C string through an exactly-sized heap copy, so ASan catches any read
 * past len (the parser must not rely on a terminating NUL). */
static ph_csv *parse_n(const char *text, size_t len, size_t max_errors, int want_rc, ph_err *err)
{
    char *copy = malloc(len ? len : 1);
    cr_assert_not_null(copy);
    memcpy(copy, text, len);
    ph_csv *csv = (ph_csv *)1;
    int rc = ph_csv_parse(copy, len, max_errors, &csv, err);
    free(copy);
    cr_assert_eq(rc, want_rc, "rc %d, want %d (%s)", rc, want_rc, err ? err->msg : "");
    if (rc != PH_OK)
        cr_assert_null(csv);
    return csv;
}

static ph_csv *parse(const char *text, size_t max_errors)
{
    ph_err err = {0};
    ph_csv *csv = parse_n(text, strlen(text), max_errors, PH_OK, &err);
    cr_assert_not_null(csv);
    return csv;
}

/* Checks row i: its line, code, card number (NULL = absent) and expiry. */
static void expect_row(const ph_csv *csv, size_t i, uint32_t line, const char *code,
                       const char *card, int64_t expires)
{
    cr_assert_lt(i, csv->nrows, "row %zu missing (%zu rows)", i, csv->nrows);
    const ph_csv_row *r = &csv->rows[i];
    cr_expect_eq(r->line, line, "row %zu: line %u, want %u", i, r->line, line);
    cr_expect_str_eq(r->code, code, "row %zu", i);
    cr_expect_eq(r->code_len, strlen(code), "row %zu", i);
    if (card) {
        cr_expect_not_null(r->card_no, "row %zu", i);
        if (r->card_no) {
            cr_expect_str_eq(r->card_no, card, "row %zu", i);
            cr_expect_eq(r->card_len, strlen(card), "row %zu", i);
        }
    } else {
        cr_expect_null(r->card_no, "row %zu", i);
        cr_expect_eq(r->card_len, 0);
    }
    cr_expect_eq(r->expires_at, expires, "row %zu: expires %lld, want %lld", i,
                 (long long)r->expires_at, (long long)expires);
}

static void expect_error(const ph_csv *csv, size_t i, uint32_t line, const char *reason)
{
    cr_assert_lt(i, csv->nerrors, "error %zu missing (%zu errors)", i, csv->nerrors);
    cr_expect_eq(csv->errors[i].line, line, "error %zu: line %u, want %u (%s)", i,
                 csv->errors[i].line, line, csv->errors[i].reason);
    cr_expect_str_eq(csv->errors[i].reason, reason, "error %zu", i);
}

Test(csv, headerless_positional)
{
    ph_csv *csv = parse("A1\n"
                        "A2,CN2\n"
                        "A3,CN3,2027-01-31\n"
                        "A4,,2027-01-31\n"
                        "A5,\n"
                        "A6",
                        10);
    cr_assert_eq(csv->nrows, 6);
    cr_assert_eq(csv->error_count, 0);
    expect_row(csv, 0, 1, "A1", NULL, 0);
    expect_row(csv, 1, 2, "A2", "CN2", 0);
    expect_row(csv, 2, 3, "A3", "CN3", EOD_2027_01_31);
    expect_row(csv, 3, 4, "A4", NULL, EOD_2027_01_31);
    expect_row(csv, 4, 5, "A5", NULL, 0);
    expect_row(csv, 5, 6, "A6", NULL, 0);
    ph_csv_free(csv);
}

Test(csv, header_any_order)
{
    static const struct {
        const char *text;
        const char *card;
        int64_t exp;
    } cases[] = {
        {"code,card_no,expires_at\nX1,C1,2027-01-31\n", "C1", EOD_2027_01_31},
        {"code,expires_at,card_no\nX1,2027-01-31,C1\n", "C1", EOD_2027_01_31},
        {"code,expires_at\nX1,2027-01-31\n", NULL, EOD_2027_01_31},
        {"code,card_no\nX1,C1\n", "C1", 0},
        {"code\nX1\n", NULL, 0},
        {"\"code\",\"card_no\"\nX1,C1\n", "C1", 0},
        {"Code , Card_No\nX1,C1\n", "C1", 0},
        {"code,card_no,expires_at\nX1\n", NULL, 0}, /* missing trailing fields are empty */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ph_csv *csv = parse(cases[i].text, 10);
        cr_assert_eq(csv->error_count, 0, "case %zu: %s", i,
                     csv->nerrors ? csv->errors[0].reason : "");
        cr_assert_eq(csv->nrows, 1, "case %zu", i);
        expect_row(csv, 0, 2, "X1", cases[i].card, cases[i].exp);
        ph_csv_free(csv);
    }
}

Test(csv, bad_headers_are_fatal)
{
    static const struct {
        const char *text;
        const char *msg;
    } cases[] = {
        {"code,pin\nX1,1\n",
         "line 1: header column 2: unknown name (expected code, card_no, expires_at)"},
        {"\n\ncode,card_no,serial\nX1,1\n",
         "line 3: header column 3: unknown name (expected code, card_no, expires_at)"},
        {"code,card_no,card_no\nX1\n", "line 1: header column 3: names card_no again (column 2)"},
        {"code,code\nX1\n", "line 1: header column 2: names code again (column 1)"},
        {"code, CARD_NO ,Card_No\nX1\n", "line 1: header column 3: names card_no again (column 2)"},
        {"code,,expires_at\nX1\n", "line 1: header column 2 has no name"},
        {"code,card_no,expires_at,x\nX1\n", "line 1: header has 4 columns, expected at most 3"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ph_err err = {0};
        parse_n(cases[i].text, strlen(cases[i].text), 10, PH_EINVAL, &err);
        cr_expect_not_null(strstr(err.msg, cases[i].msg), "case %zu: got \"%s\", want \"%s\"", i,
                           err.msg, cases[i].msg);
    }
}

/* Issue 10 (11): a header is the caller's text and may hold a code. The old
 * message quoted an unknown name of up to 32 printable bytes. */
Test(csv, a_header_error_never_quotes_the_header)
{
    static const char *const texts[] = {
        "code,IQY-SECRET-0001\nX1,1\n",
        "code,card_no,\"IQY-SECRET-0001\"\nX1,1\n",
        "code,IQY-SECRET-0001-IQY-SECRET-0001-IQY-SECRET-0001\nX1\n",
        "code,\"IQY SECRET 0001\"\nX1\n",
        "code,\"IQY-SECRET-0001\"x\nX1\n",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        ph_err err = {0};
        ph_csv *csv = NULL;
        int rc = ph_csv_parse(texts[i], strlen(texts[i]), 10, &csv, &err);
        cr_expect_null(strstr(err.msg, "SECRET"), "case %zu: %s", i, err.msg);
        cr_expect_eq(rc, PH_EINVAL, "case %zu", i);
        ph_csv_free(csv);
    }
}

Test(csv, quoted_fields)
{
    ph_csv *csv = parse("\"A,1\",\"C\"\"2\"\"\"\n"
                        "\"\"\"Q\"\"\"\n"
                        "\"B1\",,\"2027-01-31\"\n"
                        "plain,\"\"\n",
                        10);
    cr_assert_eq(csv->error_count, 0, "%s", csv->nerrors ? csv->errors[0].reason : "");
    cr_assert_eq(csv->nrows, 4);
    expect_row(csv, 0, 1, "A,1", "C\"2\"", 0);
    expect_row(csv, 1, 2, "\"Q\"", NULL, 0);
    expect_row(csv, 2, 3, "B1", NULL, EOD_2027_01_31);
    expect_row(csv, 3, 4, "plain", NULL, 0);
    ph_csv_free(csv);
}

Test(csv, quoted_newline_keeps_line_numbers)
{
    /* a quoted line break is part of the field (and not allowed in a code), but
     * the lines after it must still be numbered right */
    ph_csv *csv = parse("A1\n\"two\nlines\",C2\nA3\n", 10);
    cr_assert_eq(csv->nrows, 2);
    expect_row(csv, 0, 1, "A1", NULL, 0);
    expect_row(csv, 1, 4, "A3", NULL, 0);
    cr_assert_eq(csv->error_count, 1);
    expect_error(csv, 0, 2, "code: contains a space or non-printable byte");
    ph_csv_free(csv);
}

Test(csv, crlf_bom_and_blank_lines)
{
    ph_csv *csv = parse("\xEF\xBB\xBF"
                        "code,card_no\r\n"
                        "\r\n"
                        "A1,C1\r\n"
                        "\n"
                        "\n"
                        "A2,C2\r\n"
                        "A3\r\n"
                        "\r\n",
                        10);
    cr_assert_eq(csv->error_count, 0, "%s", csv->nerrors ? csv->errors[0].reason : "");
    cr_assert_eq(csv->nrows, 3);
    expect_row(csv, 0, 3, "A1", "C1", 0);
    expect_row(csv, 1, 6, "A2", "C2", 0);
    expect_row(csv, 2, 7, "A3", NULL, 0);
    ph_csv_free(csv);

    /* a final CR without LF ends the line too */
    csv = parse("A1,C1\r", 10);
    cr_assert_eq(csv->nrows, 1);
    expect_row(csv, 0, 1, "A1", "C1", 0);
    ph_csv_free(csv);

    /* BOM without a header */
    csv = parse("\xEF\xBB\xBF"
                "A1\n",
                10);
    cr_assert_eq(csv->nrows, 1);
    expect_row(csv, 0, 1, "A1", NULL, 0);
    ph_csv_free(csv);
}

Test(csv, empty_inputs)
{
    static const char *const cases[] = {"", "\xEF\xBB\xBF", "\n\n\r\n", "code,card_no\n", "code"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ph_csv *csv = parse(cases[i], 10);
        cr_expect_eq(csv->nrows, 0, "case %zu", i);
        cr_expect_eq(csv->error_count, 0, "case %zu", i);
        ph_csv_free(csv);
    }
    ph_csv_free(NULL);
}

/* Every way a line can be bad. SECRET is the text that must never appear in a reason. */
#define S "SECRETk9"
static const struct {
    const char *line;
    const char *reason;
} bad_lines[] = {
    {",C" S, "code: empty"},
    {"\"\"," S, "code: empty"},
    {S " 1", "code: contains a space or non-printable byte"},
    {S "\t1", "code: contains a space or non-printable byte"},
    {S "\xc3\xa4", "code: contains a space or non-printable byte"},
    {" " S, "code: contains a space or non-printable byte"},
    {S "\x7f", "code: contains a space or non-printable byte"},
    {S "\rX", "code: contains a space or non-printable byte"},
    {S "x\"y", "code: quote inside an unquoted field"},
    {"\"" S "\"x", "code: text after a closing quote"},
    {"A1,\"" S "\"x", "card_no: text after a closing quote"},
    {"A1," S " x", "card_no: contains a space or non-printable byte"},
    {"A1,,tomorrow" S, "expires_at: not a date (YYYY-MM-DD or RFC 3339)"},
    {"A1,,2027-13-01", "expires_at: not a date (YYYY-MM-DD or RFC 3339)"},
    {"A1,,2027-02-29", "expires_at: not a date (YYYY-MM-DD or RFC 3339)"},
    {"A1,," S, "expires_at: not a date (YYYY-MM-DD or RFC 3339)"},
    {"A1,,2027-01-31T23:59:59", "expires_at: not a date (YYYY-MM-DD or RFC 3339)"},
    {"A1,, 2027-01-31", "expires_at: not a date (YYYY-MM-DD or RFC 3339)"},
    {"A1,,1970-01-01T00:00:00Z", "expires_at: not after 1970-01-01"},
    {S ",C1,2027-01-31,x", "4 fields, expected at most 3"},
    {S ",,,,,,", "7 fields, expected at most 3"},
};

Test(csv, bad_lines_reported_good_rows_kept)
{
    size_t n = sizeof bad_lines / sizeof bad_lines[0];
    /* good line, bad line, good line, ... : bad line i sits on line 2i + 2 */
    size_t cap = 64 * (2 * n + 1);
    char *text = malloc(cap), *p = text;
    p += sprintf(p, "GOOD0\n");
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s\nGOOD%zu,C%zu\n", bad_lines[i].line, i + 1, i + 1);
    ph_csv *csv = parse(text, 1000);
    free(text);

    cr_assert_eq(csv->error_count, n, "%zu bad lines, want %zu", csv->error_count, n);
    cr_assert_eq(csv->nerrors, n);
    cr_assert_eq(csv->nrows, n + 1);
    expect_row(csv, 0, 1, "GOOD0", NULL, 0);
    for (size_t i = 0; i < n; i++) {
        char code[16], card[16];
        snprintf(code, sizeof code, "GOOD%zu", i + 1);
        snprintf(card, sizeof card, "C%zu", i + 1);
        expect_row(csv, i + 1, (uint32_t)(2 * i + 3), code, card, 0);
        expect_error(csv, i, (uint32_t)(2 * i + 2), bad_lines[i].reason);
        cr_expect_null(strstr(csv->errors[i].reason, "SECRET"), "reason quotes the field: %s",
                       csv->errors[i].reason);
    }
    ph_csv_free(csv);
}

Test(csv, length_limits)
{
    char line[512];
    memset(line, 'Z', 128);
    line[128] = 0;
    ph_csv *csv = parse(line, 10);
    cr_assert_eq(csv->nrows, 1, "a 128-byte code is allowed");
    cr_assert_eq(csv->rows[0].code_len, 128);
    ph_csv_free(csv);

    memset(line, 'Z', 129);
    line[129] = 0;
    csv = parse(line, 10);
    cr_assert_eq(csv->nrows, 0);
    expect_error(csv, 0, 1, "code: longer than 128 bytes");
    cr_expect_null(strstr(csv->errors[0].reason, "ZZZZ"));
    ph_csv_free(csv);

    /* card_no: 128 fine, 129 not */
    memcpy(line, "A1,", 3);
    memset(line + 3, 'Y', 128);
    line[131] = 0;
    csv = parse(line, 10);
    cr_assert_eq(csv->nrows, 1);
    cr_assert_eq(csv->rows[0].card_len, 128);
    ph_csv_free(csv);
    line[131] = 'Y';
    line[132] = 0;
    csv = parse(line, 10);
    cr_assert_eq(csv->nrows, 0);
    expect_error(csv, 0, 1, "card_no: longer than 128 bytes");
    ph_csv_free(csv);
}

Test(csv, field_count_follows_header)
{
    ph_csv *csv = parse("code,card_no\nA1,C1\nA2,C2,2027-01-31\n", 10);
    cr_assert_eq(csv->nrows, 1);
    expect_error(csv, 0, 3, "3 fields, expected at most 2");
    ph_csv_free(csv);

    csv = parse("code,expires_at\nA1,x\n", 10);
    expect_error(csv, 0, 2, "expires_at: not a date (YYYY-MM-DD or RFC 3339)");
    ph_csv_free(csv);
}

Test(csv, max_errors_caps_list_not_count)
{
    static const size_t caps[] = {0, 1, 3, 10, 50};
    char text[1024], *p = text;
    for (int i = 1; i <= 40; i++)
        p += sprintf(p, i % 4 == 0 ? "OK%d\n" : "BAD %d\n", i); /* 30 bad, 10 good */
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        ph_csv *csv = parse(text, caps[c]);
        size_t listed = caps[c] < 30 ? caps[c] : 30;
        cr_expect_eq(csv->error_count, 30, "cap %zu", caps[c]);
        cr_expect_eq(csv->nerrors, listed, "cap %zu", caps[c]);
        cr_expect_eq(csv->nrows, 10, "cap %zu", caps[c]);
        /* the first bad lines, in file order */
        uint32_t want = 1;
        for (size_t i = 0; i < csv->nerrors; i++, want++) {
            if (want % 4 == 0)
                want++;
            cr_expect_eq(csv->errors[i].line, want, "cap %zu, error %zu", caps[c], i);
        }
        ph_csv_free(csv);
    }
}

Test(csv, expiry_parsing)
{
    static const struct {
        const char *text;
        int64_t ms;
    } cases[] = {
        {"A,,2027-01-31", EOD_2027_01_31},
        {"A,,2027-01-31T23:59:59+08:00", 1801411199000LL},
        {"A,,2027-01-31T15:59:59Z", 1801411199000LL},
        {"A,,2027-01-31T07:59:59-08:00", 1801411199000LL},
        {"A,,\"2027-01-31\"", EOD_2027_01_31},
        {"A,,", 0},
        {"A,,1970-01-01", 57599999LL}, /* end of that day in UTC+08:00 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ph_csv *csv = parse(cases[i].text, 10);
        cr_assert_eq(csv->nrows, 1, "case %zu: %s", i, csv->nerrors ? csv->errors[0].reason : "");
        cr_expect_eq(csv->rows[0].expires_at, cases[i].ms, "case %zu: %lld", i,
                     (long long)csv->rows[0].expires_at);
        ph_csv_free(csv);
    }
}

Test(csv, fatal_inputs_name_the_line)
{
    static const struct {
        const char *text;
        size_t len; /* 0: strlen; explicit where the text holds a NUL */
        const char *msg;
    } cases[] = {
        {"A1\nA2\n\"A3,C3\nA4\n", 0, "line 3: unterminated quote"},
        {"A1\n\"", 4, "line 2: unterminated quote"},
        {"A1\nA\0002\n", 7, "line 2: NUL byte"},
        {"A1\n\n\"a\0\"\n", 9, "line 3: NUL byte"},
        {"\"A\"\0\n", 5, "line 1: NUL byte"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ph_err err = {0};
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);
        parse_n(cases[i].text, len, 10, PH_EINVAL, &err);
        cr_expect_eq(err.code, PH_EINVAL);
        cr_expect_not_null(strstr(err.msg, cases[i].msg), "case %zu: got \"%s\", want \"%s\"", i,
                           err.msg, cases[i].msg);
    }
}

Test(csv, not_nul_terminated)
{
    /* only the first len bytes count */
    const char *text = "A1,C1\nA2,C2-and-more";
    ph_err err = {0};
    ph_csv *csv = parse_n(text, 10, 10, PH_OK, &err);
    cr_assert_eq(csv->nrows, 2);
    expect_row(csv, 0, 1, "A1", "C1", 0);
    expect_row(csv, 1, 2, "A2", "C", 0);
    ph_csv_free(csv);
}

Test(csv, million_lines)
{
    const size_t n = 1000000;
    size_t cap = n * 40 + 64;
    char *text = malloc(cap), *p = text;
    cr_assert_not_null(text);
    p += sprintf(p, "code,card_no,expires_at\n");
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "CODE%07zu,CARD%07zu,2027-01-31\n", i, i);
    ph_err err = {0};
    ph_csv *csv = NULL;
    cr_assert_eq(ph_csv_parse(text, (size_t)(p - text), 0, &csv, &err), PH_OK, "%s", err.msg);
    free(text);
    cr_assert_eq(csv->nrows, n);
    cr_assert_eq(csv->error_count, 0);
    expect_row(csv, 0, 2, "CODE0000000", "CARD0000000", EOD_2027_01_31);
    expect_row(csv, 123456, 123458, "CODE0123456", "CARD0123456", EOD_2027_01_31);
    expect_row(csv, n - 1, (uint32_t)n + 1, "CODE0999999", "CARD0999999", EOD_2027_01_31);
    ph_csv_free(csv);
}

/* ---- the record reader underneath (ph_csv_records) ---------------------------- */

typedef struct seen_records {
    size_t n;
    uint32_t line[8];
    size_t nfields[8];
    char first[8][64], last[8][64];
    const char *fault[8];
} seen_records;

static int take(void *arg, const ph_csv_record *rec, ph_err *err)
{
    (void)err;
    seen_records *s = arg;
    cr_assert_lt(s->n, 8);
    s->line[s->n] = rec->line;
    s->nfields[s->n] = rec->nfields;
    size_t kept = rec->nfields < PH_CSV_FIELDS_MAX ? rec->nfields : PH_CSV_FIELDS_MAX;
    snprintf(s->first[s->n], sizeof s->first[0], "%s", rec->field[0]);
    snprintf(s->last[s->n], sizeof s->last[0], "%s", rec->field[kept - 1]);
    s->fault[s->n] = rec->fault;
    s->n++;
    return PH_OK;
}

Test(csv, records_of_any_shape)
{
    char wide[256] = "";
    for (int i = 0; i < 40; i++) /* 40 fields: 32 kept, all counted */
        snprintf(wide + strlen(wide), sizeof wide - strlen(wide), "%s%d", i ? "," : "", i);
    char data[512];
    snprintf(data, sizeof data,
             "\xEF\xBB\xBF"
             "a,\"b,c\",\"d\"\"e\"\r\n"
             "\n"
             "%s\n"
             "x,y\"z\n"
             "\"multi\nline\",end",
             wide);
    seen_records s = {0};
    ph_err err = {0};
    cr_assert_eq(ph_csv_records(data, strlen(data), take, &s, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(s.n, 4);
    cr_assert_eq(s.line[0], 1);
    cr_assert_str_eq(s.first[0], "a");
    cr_assert_str_eq(s.last[0], "d\"e");
    cr_assert_eq(s.nfields[0], 3);
    cr_assert_eq(s.line[1], 3);
    cr_assert_eq(s.nfields[1], 40);
    cr_assert_str_eq(s.last[1], "31");
    cr_assert_eq(s.line[2], 4);
    cr_assert_str_eq(s.fault[2], "quote inside an unquoted field");
    cr_assert_eq(s.line[3], 5);
    cr_assert_str_eq(s.first[3], "multi\nline");
    cr_assert_null(s.fault[3]);

    /* not CSV: stops with the line */
    memset(&s, 0, sizeof s);
    cr_assert_eq(ph_csv_records("a\n\"open", 7, take, &s, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "line 2: unterminated quote"), "%s", err.msg);
}

static int stop_at_second(void *arg, const ph_csv_record *rec, ph_err *err)
{
    int *n = arg;
    if (++*n == 2)
        return ph_err_set(err, PH_EINVAL, "line %u: stop", rec->line);
    return PH_OK;
}

Test(csv, records_stop_when_the_callback_says)
{
    int n = 0;
    ph_err err = {0};
    cr_assert_eq(ph_csv_records("a\nb\nc\n", 6, stop_at_second, &n, &err), PH_EINVAL);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(err.msg, "line 2: stop");
}
