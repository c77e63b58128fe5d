/*
 * log.c — one line per event, every value escaped by construction.
 *
 * The tail is formatted here, not by vsnprintf: a %s (or %c) value is text
 * from anywhere (a URL path, a supplier's reason, a library's message), so it
 * is written quoted and escaped whenever it holds anything outside a small
 * safe set; a value can therefore never end its field, start another, or end
 * the line. Numbers are formatted by snprintf one conversion at a time.
 */
#include "base/log.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int ph_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

void ph_log_set_level(ph_logger *lg, int level)
{
    atomic_store_explicit(&lg->level, level, memory_order_relaxed);
}

int ph_log_enabled(const ph_logger *lg, int level)
{
    return lg && level >= atomic_load_explicit(&lg->level, memory_order_relaxed);
}

/* ---- the formatter ---------------------------------------------------------- */

/* Output into a fixed buffer; what does not fit is dropped (len keeps counting
 * what would have been written, as snprintf does). */
typedef struct out {
    char *p;
    size_t cap, len;
} out;

static void put(out *o, char ch)
{
    if (o->len + 1 < o->cap)
        o->p[o->len] = ch;
    o->len++;
}

static void put_n(out *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put(o, s[i]);
}

/* Bytes a value may hold and still be written bare: a field ends at a space,
 * so a value never needs anything else to be read back. '=' and '"' are not
 * in it (a bare value could then pass for a field or a quote). */
static int safe_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == ':' || c == '/' || c == '@' || c == '+' || c == ',';
}

/* The inside of a quoted value: '"' and '\' escaped with a backslash, control
 * and non-ASCII bytes and '=' as \xNN — so "key=" appears in a line only where
 * the format wrote it, and even a grep for "level=error" cannot be fooled. */
static void put_escaped(out *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            put(o, '\\');
            put(o, (char)c);
        } else if (c < 0x20 || c >= 0x7f || c == '=') {
            put(o, '\\');
            put(o, 'x');
            put(o, hex[c >> 4]);
            put(o, hex[c & 15]);
        } else {
            put(o, (char)c);
        }
    }
}

/* A value: bare when every byte is safe, else quoted (an empty value is ""). A
 * value the format already quotes (key=\"%s\") is only escaped. */
static void put_value(out *o, const char *s, size_t n, int quoted_by_format)
{
    if (quoted_by_format) {
        put_escaped(o, s, n);
        return;
    }
    size_t i = 0;
    while (i < n && safe_byte((unsigned char)s[i]))
        i++;
    if (n && i == n) {
        put_n(o, s, n);
        return;
    }
    put(o, '"');
    put_escaped(o, s, n);
    put(o, '"');
}

/* One numeric or pointer conversion through snprintf, its spec rebuilt from
 * the format (flags, width, precision and length are digits and letters only). */
static void put_spec(out *o, const char *spec, size_t speclen, ...)
{
    char f[48], buf[128];
    if (speclen >= sizeof f)
        return;
    memcpy(f, spec, speclen);
    f[speclen] = 0;
    va_list ap;
    va_start(ap, speclen);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    int n = vsnprintf(buf, sizeof buf, f, ap);
#pragma GCC diagnostic pop
    va_end(ap);
    if (n > 0)
        put_n(o, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

enum { LEN_NONE, LEN_HH, LEN_H, LEN_L, LEN_LL, LEN_Z, LEN_J, LEN_T, LEN_BIG_L };

/* The format's literal text is the caller's own and copied as is; it toggles
 * "inside quotes" at each '"' so that key=\"%s\" is escaped, not quoted twice.
 * Width and precision apply to numbers; on %s a precision cuts the value (a
 * width is ignored: values are never padded). */
static void vformat(out *o, const char *fmt, va_list ap)
{
    int inq = 0;
    for (const char *p = fmt; *p;) {
        if (*p != '%') {
            if (*p == '"')
                inq = !inq;
            put(o, *p++);
            continue;
        }
        const char *spec = p++;
        if (*p == '%') {
            put(o, '%');
            p++;
            continue;
        }
        while (*p && strchr("-+ #0'", *p))
            p++;
        int have_prec = 0, prec = 0, wv = 0;
        if (*p == '*') {
            p++;
            wv = va_arg(ap, int);
        }
        while (*p >= '0' && *p <= '9')
            p++;
        if (*p == '.') {
            have_prec = 1;
            p++;
            if (*p == '*') {
                p++;
                prec = va_arg(ap, int);
                if (prec < 0)
                    have_prec = 0;
            } else {
                while (*p >= '0' && *p <= '9')
                    prec = prec * 10 + (*p++ - '0');
            }
        }
        int len = LEN_NONE;
        if (p[0] == 'h' && p[1] == 'h')
            len = LEN_HH, p += 2;
        else if (p[0] == 'l' && p[1] == 'l')
            len = LEN_LL, p += 2;
        else if (*p == 'h')
            len = LEN_H, p++;
        else if (*p == 'l')
            len = LEN_L, p++;
        else if (*p == 'z')
            len = LEN_Z, p++;
        else if (*p == 'j')
            len = LEN_J, p++;
        else if (*p == 't')
            len = LEN_T, p++;
        else if (*p == 'L')
            len = LEN_BIG_L, p++;
        char conv = *p;
        if (!conv)
            break;
        p++;
        if (conv == 's' || conv == 'c') {
            char ch;
            const char *s;
            size_t n;
            if (conv == 'c') {
                ch = (char)va_arg(ap, int);
                s = &ch;
                n = 1;
            } else {
                s = va_arg(ap, const char *);
                if (!s)
                    s = "(null)";
                n = have_prec ? strnlen(s, (size_t)prec) : strlen(s);
            }
            put_value(o, s, n, inq);
            continue;
        }
        /* the spec again, each '*' replaced by its value: "%-*.*d" -> "%-5.3d" */
        char f[48];
        size_t fl = 0;
        for (const char *q = spec; q < p && fl + 12 < sizeof f; q++) {
            if (*q == '*')
                fl += (size_t)snprintf(f + fl, sizeof f - fl, "%d", q[-1] == '.' ? prec : wv);
            else
                f[fl++] = *q;
        }
        switch (conv) {
        case 'd':
        case 'i':
            switch (len) {
            case LEN_L:
                put_spec(o, f, fl, va_arg(ap, long));
                break;
            case LEN_LL:
                put_spec(o, f, fl, va_arg(ap, long long));
                break;
            case LEN_Z:
                put_spec(o, f, fl, va_arg(ap, ssize_t));
                break;
            case LEN_J:
                put_spec(o, f, fl, va_arg(ap, intmax_t));
                break;
            case LEN_T:
                put_spec(o, f, fl, va_arg(ap, ptrdiff_t));
                break;
            default: /* hh, h and int are promoted to int */
                put_spec(o, f, fl, va_arg(ap, int));
                break;
            }
            break;
        case 'u':
        case 'x':
        case 'X':
        case 'o':
            switch (len) {
            case LEN_L:
                put_spec(o, f, fl, va_arg(ap, unsigned long));
                break;
            case LEN_LL:
                put_spec(o, f, fl, va_arg(ap, unsigned long long));
                break;
            case LEN_Z:
                put_spec(o, f, fl, va_arg(ap, size_t));
                break;
            case LEN_J:
                put_spec(o, f, fl, va_arg(ap, uintmax_t));
                break;
            case LEN_T:
                put_spec(o, f, fl, va_arg(ap, ptrdiff_t));
                break;
            default:
                put_spec(o, f, fl, va_arg(ap, unsigned));
                break;
            }
            break;
        case 'f':
        case 'F':
        case 'e':
        case 'E':
        case 'g':
        case 'G':
        case 'a':
        case 'A':
            if (len == LEN_BIG_L)
                put_spec(o, f, fl, va_arg(ap, long double));
            else
                put_spec(o, f, fl, va_arg(ap, double));
            break;
        case 'p':
            put_spec(o, f, fl, va_arg(ap, void *));
            break;
        default:
            /* %n and anything unknown: the format attribute refuses them at
             * compile time; here they end the line rather than misread ap */
            return;
        }
    }
}

size_t ph_log_vformat(char *buf, size_t cap, const char *fmt, va_list ap)
{
    out o = {buf, cap, 0};
    if (fmt)
        vformat(&o, fmt, ap);
    if (cap)
        buf[o.len < cap ? o.len : cap - 1] = 0;
    return o.len;
}

size_t ph_log_format(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t n = ph_log_vformat(buf, cap, fmt, ap);
    va_end(ap);
    return n;
}

/* ---- the line --------------------------------------------------------------- */

#define LINE_MAX_BYTES 2048

/* The tail is fmt with *ap, or else the preformatted tail (NULL: none). */
static void write_line(const ph_logger *lg, int level, const char *req, const char *msg,
                       const char *fmt, va_list *ap, const char *tail)
{
    char line[LINE_MAX_BYTES];
    out o = {line, sizeof line - 1, 0}; /* one byte kept for the newline */
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char head[64];
    int hn = snprintf(head, sizeof head, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s",
                      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                      tm.tm_sec, ts.tv_nsec / 1000000, level_names[level]);
    put_n(&o, head, hn > 0 ? (size_t)hn : 0);
    if (req) {
        put_n(&o, " req=", 5);
        put_value(&o, req, strlen(req), 0);
    }
    put_n(&o, " msg=", 5);
    put_value(&o, msg ? msg : "", msg ? strlen(msg) : 0, 0);
    if (fmt || (tail && *tail))
        put(&o, ' ');
    if (fmt)
        vformat(&o, fmt, *ap);
    else if (tail)
        put_n(&o, tail, strlen(tail));
    size_t n = o.len < o.cap ? o.len : o.cap - 1;
    /* the tail's literal text is the caller's; a newline there still must not
     * split the line */
    for (size_t i = 0; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[n++] = '\n';
    ssize_t w = write(lg->fd, line, n);
    (void)w; /* a log line that cannot be written is dropped, never fatal */
}

void ph_log(const ph_logger *lg, int level, const char *req, const char *msg, const char *fmt, ...)
{
    if (!ph_log_enabled(lg, level) || level < 0 || level > PH_LOG_ERROR)
        return;
    va_list ap;
    va_start(ap, fmt);
    write_line(lg, level, req, msg, fmt, &ap, NULL);
    va_end(ap);
}

void ph_log_tail(const ph_logger *lg, int level, const char *req, const char *msg, const char *tail)
{
    if (!ph_log_enabled(lg, level) || level < 0 || level > PH_LOG_ERROR)
        return;
    write_line(lg, level, req, msg, NULL, NULL, tail);
}
