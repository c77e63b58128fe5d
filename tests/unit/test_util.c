/*
 * test_util.c — util's money and time parsers and formatters (core/base/util.c),
 * table-driven: every form they accept with its value, every form they refuse.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <string.h>

#include <jansson.h>

#include "base/util.h"

/* ---- money ------------------------------------------------------------------- */

typedef struct money_row {
    const char *in;
    int64_t fen; /* when accepted */
} money_row;

static const money_row MONEY_OK[] = {
    {"0", 0},
    {"0.0", 0},
    {"0.00", 0},
    {"0.5", 50},
    {"0.05", 5},
    {"30", 3000},
    {"19.8", 1980},
    {"19.80", 1980},
    {"19.81", 1981},
    {"007.05", 705},                       /* leading zeros are only zeros */
    {"000000000000000000000001", 100},     /* however many */
    {"9999999999999.99", 999999999999999}, /* just under the limit */
    {"10000000000000", 1000000000000000},  /* the limit itself: 10^13 yuan */
    {"10000000000000.00", 1000000000000000},
};

static const char *const MONEY_BAD[] = {
    "",                      /* empty */
    "-1",                    /* negative */
    "-0.01",                 /* negative */
    "+1",                    /* a sign at all */
    "1.234",                 /* three decimals */
    "0.001",                 /* three decimals */
    "1.",                    /* a point without decimals */
    ".5",                    /* decimals without a whole part */
    ".",                     /* nothing but the point */
    "1e3",                   /* exponent */
    "1E3",                   /* exponent */
    " 1",                    /* space before */
    "1 ",                    /* space after */
    "1,50",                  /* decimal comma */
    "1.2.3",                 /* two points */
    "abc",                   /* junk */
    "19.8x",                 /* junk after */
    "0x10",                  /* hex */
    "10000000000000.01",     /* over 10^13 yuan by a fen */
    "10000000000001",        /* over 10^13 yuan */
    "99999999999999",        /* over */
    "99999999999999999999",  /* would overflow int64 */
    "922337203685477580.80", /* INT64_MAX fen and beyond */
};

Test(util, money_parse_accepts)
{
    for (size_t i = 0; i < sizeof MONEY_OK / sizeof MONEY_OK[0]; i++) {
        int64_t fen = -1;
        cr_expect_eq(ph_money_parse(MONEY_OK[i].in, &fen), 0, "'%s' refused", MONEY_OK[i].in);
        cr_expect_eq(fen, MONEY_OK[i].fen, "'%s' -> %lld, want %lld", MONEY_OK[i].in,
                     (long long)fen, (long long)MONEY_OK[i].fen);
    }
}

Test(util, money_parse_refuses_and_leaves_the_output_alone)
{
    for (size_t i = 0; i < sizeof MONEY_BAD / sizeof MONEY_BAD[0]; i++) {
        int64_t fen = 12345;
        cr_expect_eq(ph_money_parse(MONEY_BAD[i], &fen), -1, "'%s' accepted as %lld", MONEY_BAD[i],
                     (long long)fen);
        cr_expect_eq(fen, 12345, "'%s' wrote the output", MONEY_BAD[i]);
    }
    int64_t fen;
    cr_expect_eq(ph_money_parse(NULL, &fen), -1, "NULL");
}

Test(util, money_format_round_trips)
{
    static const struct {
        int64_t fen;
        const char *out;
    } rows[] = {{0, "0.00"},
                {5, "0.05"},
                {50, "0.50"},
                {1980, "19.80"},
                {-5, "-0.05"},
                {-1980, "-19.80"},
                {1000000000000000, "10000000000000.00"}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char buf[32];
        cr_expect_str_eq(ph_money_format(rows[i].fen, buf, sizeof buf), rows[i].out);
        int64_t back;
        if (rows[i].fen >= 0) {
            cr_expect_eq(ph_money_parse(buf, &back), 0, "%s", buf);
            cr_expect_eq(back, rows[i].fen, "%s", buf);
        }
    }
}

/* ---- time ------------------------------------------------------------------------- */

typedef struct time_row {
    const char *in;
    int64_t ms;
} time_row;

/* 2026-01-01T00:00:00Z */
#define Y2026 1767225600000LL
#define DAY   86400000LL
#define HOUR  3600000LL

static const time_row TIME_OK[] = {
    /* a date alone is the end of that day in China Standard Time (UTC+08:00) */
    {"2026-01-01", Y2026 + DAY - 8 * HOUR - 1},
    {"2024-02-29", 1709222399999LL},   /* leap day (divisible by 4) */
    {"2000-02-29", 951839999999LL},    /* leap day (divisible by 400) */
    {"1970-01-01", 16 * HOUR - 1},     /* the first day there is */
    {"9999-12-31", 253402271999999LL}, /* the last */
    /* a timestamp needs a zone */
    {"2026-01-01T00:00:00Z", Y2026},
    {"2026-01-01T00:00:00z", Y2026},
    {"2026-01-01 00:00:00Z", Y2026}, /* RFC 3339 allows a space */
    {"2026-01-01T08:00:00+08:00", Y2026},
    {"2025-12-31T19:00:00-05:00", Y2026},
    {"2026-01-01T00:00:00-00:00", Y2026},
    {"2026-01-01T00:00:00+00:00", Y2026},
    {"2026-01-01T14:00:00+14:00", Y2026}, /* the widest offsets in use */
    {"2025-12-31T10:01:00-13:59", Y2026},
    {"2026-01-01T00:00:00.5Z", Y2026 + 500},
    {"2026-01-01T00:00:00.05Z", Y2026 + 50},
    {"2026-01-01T00:00:00.123Z", Y2026 + 123},
    {"2026-01-01T00:00:00.123999999Z", Y2026 + 123}, /* finer than ms: dropped */
    {"2026-01-01T23:59:59.999Z", Y2026 + DAY - 1},
    {"2026-06-30T23:59:60Z", 1782864000000LL}, /* a leap second: the next instant */
    {"1970-01-01T00:00:00.001Z", 1},           /* the first instant after the epoch */
    /* an offset reaches the epoch and before: the callers for whom 0 means
     * "never" refuse those (csv.c, "expires_at: not after 1970-01-01") */
    {"1970-01-01T00:00:00Z", 0},
    {"1970-01-01T08:00:00+08:00", 0},
    {"1970-01-01T00:00:00+01:00", -HOUR},
};

static const char *const TIME_BAD[] = {
    "",
    "2026",
    "2026-01",
    "2026-1-01",
    "26-01-01",
    "2026/01/01",
    "2026-01-01x",
    "2026-01-01Z",              /* a date with a zone */
    "2026-01-01T00:00:00",      /* a timestamp without a zone */
    "2026-01-01T00:00Z",        /* no seconds */
    "2026-01-01T00:00:00.Z",    /* a point without digits */
    "2026-01-01T00:00:00ZZ",    /* junk after the zone */
    "2026-01-01T00:00:00+0800", /* offset without a colon */
    "2026-01-01T00:00:00+08",   /* offset without minutes */
    "2026-01-01T00:00:00+15:00",
    "2026-01-01T00:00:00+08:60",
    "2026-01-01T00:00:00 +08:00",
    "2026-01-01X00:00:00Z",
    "2026-01-01T24:00:00Z",
    "2026-01-01T23:60:00Z",
    "2026-01-01T23:59:61Z",
    "2026-00-01",
    "2026-13-01",
    "2026-01-00",
    "2026-01-32",
    "2026-04-31",
    "2026-02-29", /* not a leap year */
    "2100-02-29", /* divisible by 100, not by 400 */
    "1969-12-31",
    "1969-12-31T23:59:59Z",
    "+2026-01-01",
    "2026-0a-01",
    " 2026-01-01",
};

Test(util, time_parse_accepts)
{
    for (size_t i = 0; i < sizeof TIME_OK / sizeof TIME_OK[0]; i++) {
        int64_t ms = -1;
        const char *s = TIME_OK[i].in;
        cr_expect_eq(ph_time_parse(s, strlen(s), &ms), 0, "'%s' refused", s);
        cr_expect_eq(ms, TIME_OK[i].ms, "'%s' -> %lld, want %lld", s, (long long)ms,
                     (long long)TIME_OK[i].ms);
    }
}

Test(util, time_parse_refuses_and_leaves_the_output_alone)
{
    for (size_t i = 0; i < sizeof TIME_BAD / sizeof TIME_BAD[0]; i++) {
        int64_t ms = 12345;
        const char *s = TIME_BAD[i];
        cr_expect_eq(ph_time_parse(s, strlen(s), &ms), -1, "'%s' accepted as %lld", s,
                     (long long)ms);
        cr_expect_eq(ms, 12345, "'%s' wrote the output", s);
    }
}

/* The parser reads len bytes and not one more: a CSV field is not NUL-terminated. */
Test(util, time_parse_reads_only_len_bytes)
{
    const char *s = "2026-01-01T00:00:00Z,2026-...";
    int64_t ms;
    cr_expect_eq(ph_time_parse(s, 20, &ms), 0);
    cr_expect_eq(ms, Y2026);
    cr_expect_eq(ph_time_parse("2026-01-01,x", 10, &ms), 0);
    cr_expect_eq(ph_time_parse("2026-01-01T00:00:00.123Zjunk", 23, &ms), -1, "cut before the zone");
}

Test(util, time_format_round_trips)
{
    static const struct {
        int64_t ms;
        const char *out;
    } rows[] = {{1, "1970-01-01T00:00:00.001Z"},
                {1700000000000LL, "2023-11-14T22:13:20.000Z"},
                {Y2026 + 123, "2026-01-01T00:00:00.123Z"},
                {1709222399999LL, "2024-02-29T15:59:59.999Z"}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char buf[32];
        cr_expect_str_eq(ph_time_format(rows[i].ms, buf, sizeof buf), rows[i].out);
        int64_t back;
        cr_expect_eq(ph_time_parse(buf, strlen(buf), &back), 0, "%s", buf);
        cr_expect_eq(back, rows[i].ms, "%s", buf);
    }
}

/* The direct path (1970-9999) writes what gmtime_r and the format string write,
 * day boundaries, leap days and the last millisecond of 9999 included. */
Test(util, time_format_matches_gmtime)
{
    int64_t edges[] = {0,
                       86399999,
                       86400000,
                       951782400000LL /* 2000-02-29 */,
                       4107542399999LL,
                       253402300799999LL /* 9999-12-31T23:59:59.999 */};
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < 200000; i++) {
        int64_t ms;
        if (i < (int)(sizeof edges / sizeof edges[0]))
            ms = edges[i];
        else {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            ms = (int64_t)(x % 253402300800000ULL);
        }
        time_t sec = (time_t)(ms / 1000);
        struct tm tm;
        gmtime_r(&sec, &tm);
        char want[64], got[32];
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
        cr_assert_str_eq(ph_time_format(ms, got, sizeof got), want, "ms %lld", (long long)ms);
    }
    char shortbuf[10];
    cr_expect_str_eq(ph_time_format(1700000000000LL, shortbuf, sizeof shortbuf), "2023-11-1",
                     "a short buffer is cut as snprintf cuts");
}

/* ---- text a caller sent ------------------------------------------------------ */

typedef struct text_row {
    const char *in;
    size_t len;
    const char *why; /* NULL: fine */
} text_row;

#define T(s, why)                                                                                  \
    {                                                                                              \
        s, sizeof s - 1, why                                                                       \
    }
static const text_row TEXT[] = {
    T("", NULL),
    T("plain ascii, spaces and \t\n controls", NULL),
    T("\xe5\x9b\x9e\xe6\x94\xb6", NULL),  /* 回收: three-byte forms */
    T("\xc2\xa9 \xf0\x9f\x98\x80", NULL), /* two and four bytes */
    T("\xf4\x8f\xbf\xbf", NULL),          /* U+10FFFF, the last */
    T("ab\0cd", "contains a NUL byte (%00)"),
    T("\0", "contains a NUL byte (%00)"),
    T("ab\xc0\x80", "contains a NUL byte (%00)"), /* the overlong NUL, how %00 arrives */
    T("\xff", "not valid UTF-8"),
    T("\xc3\x28", "not valid UTF-8"),         /* a lead byte without its continuation */
    T("\xc1\xbf", "not valid UTF-8"),         /* overlong two-byte */
    T("\xe0\x80\xaf", "not valid UTF-8"),     /* overlong three-byte */
    T("\xed\xa0\x80", "not valid UTF-8"),     /* a surrogate */
    T("\xf4\x90\x80\x80", "not valid UTF-8"), /* above U+10FFFF */
    T("ok\xe5\x9b", "not valid UTF-8"),       /* cut inside a character */
    T("\xc0", "not valid UTF-8"),             /* C0 alone is no NUL */
};
#undef T

Test(util, text_invalid_says_why_and_reads_only_len_bytes)
{
    for (size_t i = 0; i < sizeof TEXT / sizeof TEXT[0]; i++) {
        const char *why = ph_text_invalid(TEXT[i].in, TEXT[i].len);
        if (TEXT[i].why)
            cr_assert(why && !strcmp(why, TEXT[i].why), "row %zu: got %s, want %s", i,
                      why ? why : "fine", TEXT[i].why);
        else
            cr_assert_null(why, "row %zu: refused as %s", i, why);
    }
    /* the length is the end: a valid prefix of a longer buffer is fine, a
     * character cut by it is not */
    cr_assert_null(ph_text_invalid("abc\xff", 3));
    cr_assert_str_eq(ph_text_invalid("\xe5\x9b\x9e", 2), "not valid UTF-8");
    cr_assert_null(ph_text_invalid(NULL, 0));
}

/* What it passes, jansson takes (json_string never fails on it: the 500 of
 * issue 10 defect 6), and ph_json_str writes. */
static void put_nothing(void *sink, const char *p, size_t n)
{
    (void)sink;
    (void)p;
    (void)n;
}

Test(util, text_invalid_agrees_with_jansson)
{
    for (size_t i = 0; i < sizeof TEXT / sizeof TEXT[0]; i++) {
        if (memchr(TEXT[i].in, 0, TEXT[i].len))
            continue; /* a C string cannot carry it to jansson */
        json_t *j = json_stringn(TEXT[i].in, TEXT[i].len);
        int ours = ph_text_invalid(TEXT[i].in, TEXT[i].len) == NULL;
        cr_assert_eq(ours, j != NULL, "row %zu: ours %d, jansson %d", i, ours, j != NULL);
        cr_assert_eq(ours, ph_json_str(TEXT[i].in, put_nothing, NULL) == 0, "row %zu", i);
        json_decref(j);
    }
}
