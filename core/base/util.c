#include "base/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int ph_money_parse(const char *s, int64_t *fen)
{
    if (!s || !*s)
        return -1;
    int64_t whole = 0;
    const char *p = s;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (whole > PH_MONEY_MAX_YUAN) /* stays far from overflow; the bound is below */
            return -1;
        whole = whole * 10 + (*p - '0');
    }
    if (digits == 0)
        return -1;
    int64_t frac = 0;
    if (*p == '.') {
        p++;
        int fd = 0;
        for (; *p >= '0' && *p <= '9'; p++, fd++) {
            if (fd == 2)
                return -1;
            frac = frac * 10 + (*p - '0');
        }
        if (fd == 0)
            return -1;
        if (fd == 1)
            frac *= 10;
    }
    if (*p || whole * 100 + frac > PH_MONEY_MAX_YUAN * 100)
        return -1;
    *fen = whole * 100 + frac;
    return 0;
}

char *ph_money_format(int64_t fen, char *buf, size_t len)
{
    const char *sign = fen < 0 ? "-" : "";
    int64_t a = fen < 0 ? -fen : fen;
    snprintf(buf, len, "%s%lld.%02lld", sign, (long long)(a / 100), (long long)(a % 100));
    return buf;
}

int64_t ph_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Writes v as n digits, zero-padded, at p. */
static void put_digits(char *p, unsigned v, int n)
{
    while (n--) {
        p[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* A stock order's answer carries three or four times (created, updated, each
 * code's expiry): gmtime_r (which takes glibc's time zone lock) and snprintf
 * were ~1.5 % of an order's CPU. Years 1970-9999 are written from the day
 * number directly (Howard Hinnant's civil_from_days); anything else, or a short
 * buffer, takes the general path below, whose output is the same. */
char *ph_time_format(int64_t ms, char *buf, size_t len)
{
    if (ms >= 0 && ms < 253402300800000LL && len >= 25) { /* up to 9999-12-31T23:59:59.999Z */
        int64_t days = ms / 86400000;
        unsigned in_day = (unsigned)(ms % 86400000);
        int64_t z = days + 719468, era = z / 146097;
        unsigned doe = (unsigned)(z - era * 146097);
        unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
        unsigned d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
        unsigned y = (unsigned)(yoe + era * 400) + (m <= 2);
        put_digits(buf, y, 4);
        buf[4] = '-';
        put_digits(buf + 5, m, 2);
        buf[7] = '-';
        put_digits(buf + 8, d, 2);
        buf[10] = 'T';
        put_digits(buf + 11, in_day / 3600000, 2);
        buf[13] = ':';
        put_digits(buf + 14, in_day / 60000 % 60, 2);
        buf[16] = ':';
        put_digits(buf + 17, in_day / 1000 % 60, 2);
        buf[19] = '.';
        put_digits(buf + 20, in_day % 1000, 3);
        buf[23] = 'Z';
        buf[24] = '\0';
        return buf;
    }
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    return buf;
}

static int num(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int ph_time_parse(const char *s, size_t len, int64_t *ms)
{
    int y, mo, d, h = 23, mi = 59, se = 59, off_min = 8 * 60, frac = 999;
    if (len < 10 || num(s, 4, &y) || s[4] != '-' || num(s + 5, 2, &mo) || s[7] != '-' ||
        num(s + 8, 2, &d))
        return -1;
    if (len > 10) {
        if (len < 20 || (s[10] != 'T' && s[10] != ' ') || num(s + 11, 2, &h) || s[13] != ':' ||
            num(s + 14, 2, &mi) || s[16] != ':' || num(s + 17, 2, &se))
            return -1;
        /* RFC 3339 time-secfrac, as ph_time_format writes it: ms kept, finer dropped */
        size_t i = 19, digits = 0;
        frac = 0;
        if (s[i] == '.')
            for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, digits++)
                frac = digits < 3 ? frac * 10 + (s[i] - '0') : frac;
        if (i > 19 && digits == 0)
            return -1;
        for (; digits < 3; digits++)
            frac *= 10;
        if (len == i + 1 && (s[i] == 'Z' || s[i] == 'z')) {
            off_min = 0;
        } else if (len == i + 6 && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
            int oh, om;
            if (num(s + i + 1, 2, &oh) || num(s + i + 4, 2, &om) || oh > 14 || om > 59)
                return -1;
            off_min = (oh * 60 + om) * (s[i] == '-' ? -1 : 1);
        } else {
            return -1;
        }
    }
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 60)
        return -1;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] + (mo == 2 && leap))
        return -1;
    /* days from civil (Howard Hinnant's algorithm), avoids timegm's TZ games */
    int yy = y - (mo <= 2);
    int era = yy / 400;
    int yoe = yy - era * 400;
    int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = (int64_t)era * 146097 + doe - 719468;
    int64_t sec = days * 86400 + h * 3600 + mi * 60 + se - (int64_t)off_min * 60;
    if (sec * 1000 + frac > PH_TIME_MAX_MS)
        return -1;
    *ms = sec * 1000 + frac;
    return 0;
}

void ph_hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ph_hex_decode(const char *hex, uint8_t *out, size_t n)
{
    if (!hex || strlen(hex) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int a = hexval(hex[2 * i]), b = hexval(hex[2 * i + 1]);
        if (a < 0 || b < 0)
            return -1;
        out[i] = (uint8_t)(a << 4 | b);
    }
    return 0;
}

int ph_ident_valid(const char *s, size_t max)
{
    if (!s)
        return 0;
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return 0;
        if (n >= max)
            return 0;
    }
    return n > 0;
}

void *ph_grow(void *v, size_t *cap, size_t elem, size_t first)
{
    size_t n = *cap ? *cap * 2 : first;
    void *g = realloc(v, n * elem);
    if (g)
        *cap = n;
    return g;
}

int ph_u64_parse(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!s || !*s || strlen(s) > 19)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

void ph_text_clean(char *dst, size_t n, const char *src)
{
    size_t i = 0;
    for (; src && src[i] && i + 1 < n; i++)
        dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '_';
    if (n)
        dst[i] = 0;
}

/* Length of the UTF-8 sequence at s that jansson accepts (no overlong form, no
 * surrogate, nothing above U+10FFFF), or 0. Reads at most avail bytes (at
 * least 1); a NUL-terminated caller may pass SIZE_MAX, as a NUL is never a
 * continuation byte. */
static size_t utf8_seq(const unsigned char *s, size_t avail)
{
    unsigned c = s[0], n, cp;
    if (c < 0x80)
        return 1;
    if (c < 0xC2 || c > 0xF4)
        return 0;
    n = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (n > avail)
        return 0;
    cp = c & (0x3F >> (n - 1));
    for (unsigned i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

int ph_json_str(const char *s, void (*put)(void *sink, const char *p, size_t n), void *sink)
{
    static const char hex[] = "0123456789ABCDEF"; /* jansson writes \u%04X */
    const unsigned char *p = (const unsigned char *)s, *run = p;
    put(sink, "\"", 1);
    while (*p) {
        size_t n = utf8_seq(p, SIZE_MAX);
        if (!n)
            return -1;
        if (n > 1 || (*p >= 0x20 && *p != '"' && *p != '\\')) {
            p += n;
            continue;
        }
        put(sink, (const char *)run, (size_t)(p - run));
        const char *esc = *p == '"'    ? "\\\""
                          : *p == '\\' ? "\\\\"
                          : *p == '\b' ? "\\b"
                          : *p == '\f' ? "\\f"
                          : *p == '\n' ? "\\n"
                          : *p == '\r' ? "\\r"
                          : *p == '\t' ? "\\t"
                                       : NULL;
        char u[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
        if (esc)
            put(sink, esc, 2);
        else
            put(sink, u, sizeof u);
        run = ++p;
    }
    put(sink, (const char *)run, (size_t)(p - run));
    put(sink, "\"", 1);
    return 0;
}

const char *ph_text_invalid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        /* C0 80, the overlong NUL, is how the HTTP layer's URL decoding hands
         * on a %00 (http_api.c): the same fault as a NUL byte */
        if (!p[i] || (p[i] == 0xC0 && i + 1 < len && p[i + 1] == 0x80))
            return "contains a NUL byte (%00)";
        size_t n = utf8_seq(p + i, len - i);
        if (!n)
            return "not valid UTF-8";
        i += n;
    }
    return NULL;
}

int ph_mkdir_parents(const char *path, ph_err *err)
{
    char *dir = strdup(path);
    if (!dir)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    int rc = PH_OK;
    if (slash && slash != dir) {
        *slash = 0;
        for (char *p = dir + 1; rc == PH_OK; p++) {
            if (*p != '/' && *p != 0)
                continue;
            char c = *p;
            *p = 0;
            if (mkdir(dir, 0700) != 0 && errno != EEXIST)
                rc = ph_err_set(err, PH_EIO, "%s: cannot create directory: %s", dir,
                                strerror(errno));
            *p = c;
            if (!c)
                break;
        }
    }
    free(dir);
    return rc;
}
