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

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 2048

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

/* ---- conversions -------------------------------------------------------------- */

/* One conversion of the format, its argument taken: both line formats read
 * the format through this, so they consume the va_list alike. */
typedef struct conv {
    char kind; /* 's' text (%s %c), 'i' signed, 'u' unsigned, 'f' floating, 'p' pointer */
    char letter;
    const char *s; /* 's': the value, n bytes (ch holds a %c) */
    size_t n;
    char ch;
    long long i;
    unsigned long long u;
    long double f;
    void *ptr;
    char spec[48]; /* 'i' 'u' 'f' 'p': a printf spec for the value as stored above */
} conv;

enum { LEN_NONE, LEN_HH, LEN_H, LEN_L, LEN_LL, LEN_Z, LEN_J, LEN_T, LEN_BIG_L };

/* Decimal digits of v at q (at most 10); returns the end. */
static char *put_uint(char *q, unsigned v)
{
    char d[10];
    size_t n = 0;
    do
        d[n++] = (char)('0' + v % 10);
    while ((v /= 10) && n < sizeof d);
    while (n)
        *q++ = d[--n];
    return q;
}

/* Reads the conversion that starts at *pp (a '%' not followed by '%') and
 * takes its argument; *pp moves past it. Width and precision apply to
 * numbers; on %s a precision cuts the value (a width is ignored: values are
 * never padded). Returns 0 at the end of the format or at %n and anything
 * unknown (the format attribute refuses them at compile time; here they end
 * the line rather than misread ap). */
static int take_conv(const char **pp, va_list *ap, conv *c)
{
    const char *p = *pp + 1;
    char flags[8];
    size_t nf = 0;
    while (*p && strchr("-+ #0'", *p)) {
        if (nf < sizeof flags - 1)
            flags[nf++] = *p;
        p++;
    }
    flags[nf] = 0;
    int width = -1, have_prec = 0, prec = 0;
    if (*p == '*') {
        p++;
        width = va_arg(*ap, int);
        if (width < 0) { /* printf: a negative width is '-' and its magnitude */
            if (nf < sizeof flags - 1)
                flags[nf++] = '-';
            width = width == INT_MIN ? 0 : -width;
        }
    } else if (*p >= '0' && *p <= '9') {
        width = 0;
        while (*p >= '0' && *p <= '9')
            width = width * 10 + (*p++ - '0');
    }
    if (*p == '.') {
        have_prec = 1;
        p++;
        if (*p == '*') {
            p++;
            prec = va_arg(*ap, int);
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
    char letter = *p;
    if (!letter)
        return 0;
    *pp = p + 1;
    c->letter = letter;
    const char *lm = "ll";
    switch (letter) {
    case 'c':
        c->kind = 's';
        c->ch = (char)va_arg(*ap, int);
        c->s = &c->ch;
        c->n = 1;
        return 1;
    case 's':
        c->kind = 's';
        c->s = va_arg(*ap, const char *);
        if (!c->s)
            c->s = "(null)";
        c->n = have_prec ? strnlen(c->s, (size_t)prec) : strlen(c->s);
        return 1;
    case 'd':
    case 'i':
        c->kind = 'i';
        switch (len) {
        case LEN_HH:
            c->i = (signed char)va_arg(*ap, int);
            break;
        case LEN_H:
            c->i = (short)va_arg(*ap, int);
            break;
        case LEN_L:
            c->i = va_arg(*ap, long);
            break;
        case LEN_LL:
            c->i = va_arg(*ap, long long);
            break;
        case LEN_Z:
            c->i = va_arg(*ap, ssize_t);
            break;
        case LEN_J:
            c->i = (long long)va_arg(*ap, intmax_t);
            break;
        case LEN_T:
            c->i = va_arg(*ap, ptrdiff_t);
            break;
        default:
            c->i = va_arg(*ap, int);
            break;
        }
        break;
    case 'u':
    case 'x':
    case 'X':
    case 'o':
        c->kind = 'u';
        switch (len) {
        case LEN_HH:
            c->u = (unsigned char)va_arg(*ap, unsigned);
            break;
        case LEN_H:
            c->u = (unsigned short)va_arg(*ap, unsigned);
            break;
        case LEN_L:
            c->u = va_arg(*ap, unsigned long);
            break;
        case LEN_LL:
            c->u = va_arg(*ap, unsigned long long);
            break;
        case LEN_Z:
            c->u = va_arg(*ap, size_t);
            break;
        case LEN_J:
            c->u = (unsigned long long)va_arg(*ap, uintmax_t);
            break;
        case LEN_T:
            c->u = (unsigned long long)va_arg(*ap, ptrdiff_t);
            break;
        default:
            c->u = va_arg(*ap, unsigned);
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
        c->kind = 'f';
        lm = "L";
        c->f = len == LEN_BIG_L ? va_arg(*ap, long double) : va_arg(*ap, double);
        break;
    case 'p':
        c->kind = 'p';
        lm = "";
        c->ptr = va_arg(*ap, void *);
        break;
    default:
        return 0;
    }
    /* the spec again for the value as stored: "%-*.*hd" -> "%-5.3lld" (by
     * hand: this runs for every number of every line) */
    char *q = c->spec;
    *q++ = '%';
    memcpy(q, flags, nf);
    q += nf;
    if (width >= 0)
        q = put_uint(q, (unsigned)width);
    if (have_prec) {
        *q++ = '.';
        q = put_uint(q, (unsigned)prec);
    }
    size_t ln = strlen(lm);
    memcpy(q, lm, ln);
    q += ln;
    *q++ = letter;
    *q = 0;
    return 1;
}

/* A numeric or pointer conversion as printf prints it, into buf. */
static size_t conv_text(const conv *c, char *buf, size_t cap)
{
    int n = 0;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    switch (c->kind) {
    case 'i':
        n = snprintf(buf, cap, c->spec, c->i);
        break;
    case 'u':
        n = snprintf(buf, cap, c->spec, c->u);
        break;
    case 'f':
        n = snprintf(buf, cap, c->spec, c->f);
        break;
    case 'p':
        n = snprintf(buf, cap, c->spec, c->ptr);
        break;
    }
#pragma GCC diagnostic pop
    if (n < 0)
        return 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

/* The format's literal text is the caller's own and copied as is; it toggles
 * "inside quotes" at each '"' so that key=\"%s\" is escaped, not quoted twice. */
static void vformat(out *o, const char *fmt, va_list *ap)
{
    int inq = 0;
    for (const char *p = fmt; *p;) {
        if (*p != '%') {
            if (*p == '"')
                inq = !inq;
            put(o, *p++);
            continue;
        }
        if (p[1] == '%') {
            put(o, '%');
            p += 2;
            continue;
        }
        conv c;
        if (!take_conv(&p, ap, &c))
            return;
        if (c.kind == 's') {
            put_value(o, c.s, c.n, inq);
            continue;
        }
        char buf[128];
        put_n(o, buf, conv_text(&c, buf, sizeof buf));
    }
}

/* ---- the JSON line ------------------------------------------------------------- */

/* Room kept at the end of a JSON line for ,"truncated":true} and the newline:
 * a line too long is cut between members or inside a string, never invalid. */
#define JSON_RESERVE 24

/* The length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one
 * (overlong forms, surrogates and code points above U+10FFFF are not). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    unsigned cp = c & (0x3f >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* The inside of a JSON string: '"' and '\' escaped, control bytes as \u00XX,
 * a byte that is not valid UTF-8 as U+FFFD (a JSON parser refuses raw ones).
 * Stops before o->lim and marks the line cut. */
static void put_json_text(out *o, const char *s, size_t n, size_t lim, int *cut)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        char esc[8];
        const char *w = esc;
        size_t wn, adv = 1;
        unsigned char c = u[i];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c, wn = 2;
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4], esc[5] = hex[c & 15], wn = 6;
        } else if (c < 0x80) {
            esc[0] = (char)c, wn = 1;
        } else if ((adv = utf8_len(u + i, n - i)) != 0) {
            w = s + i, wn = adv;
        } else {
            w = "\\ufffd", wn = 6, adv = 1;
        }
        if (o->len + wn > lim) {
            *cut = 1;
            return;
        }
        put_n(o, w, wn);
        i += adv;
    }
}

/* A JSON line under construction: members are added whole or not at all. */
typedef struct jline {
    out *o;
    size_t lim; /* o->len stays at or below this */
    int cut;    /* something was left out: "truncated":true at the end */
} jline;

/* The members the line itself writes: a field of that name is written as
 * "_name", so that no object has a key twice (a parser may keep either). */
static int head_key(const char *key, size_t kn)
{
    static const char *const names[] = {"time", "level", "req", "event", "truncated"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strlen(names[i]) == kn && memcmp(names[i], key, kn) == 0)
            return 1;
    return 0;
}

/* ,"key": — returns the length before it, for member_end. */
static size_t member_begin(jline *j, const char *key, size_t kn, int field)
{
    size_t mark = j->o->len;
    put_n(j->o, ",\"", 2);
    if (field && head_key(key, kn))
        put(j->o, '_');
    put_json_text(j->o, key, kn, j->lim, &j->cut);
    put_n(j->o, "\":", 2);
    return mark;
}

/* A member that does not fit whole goes (a string value was cut to fit). */
static int member_end(jline *j, size_t mark)
{
    if (j->o->len > j->lim) {
        j->o->len = mark;
        j->cut = 1;
        return 0;
    }
    return 1;
}

static void member_str(jline *j, const char *key, const char *v, size_t vn, int field)
{
    if (j->cut)
        return;
    size_t mark = member_begin(j, key, strlen(key), field);
    put(j->o, '"');
    put_json_text(j->o, v, vn, j->lim - 1, &j->cut);
    put(j->o, '"');
    member_end(j, mark);
}

/* A value that is one %d %i %u (any length) or floating conversion and
 * nothing else is a JSON number; %x %o %p and text are strings. */
static int sole_number(const char *p)
{
    if (p[0] != '%' || p[1] == '%')
        return 0;
    p++;
    while (*p && !strchr("diuxXofFeEgGaAscpn ", *p))
        p++;
    return *p && strchr("diufFeEgGaA", *p) && (p[1] == ' ' || p[1] == 0);
}

/* The format as JSON members: each space-separated key=value of the format
 * becomes "key": value. A value the format builds from text and conversions
 * (detail=\"no %s here\") is one string, the format's own quotes dropped; a
 * word without '=' is a member "text". */
static void jformat(jline *j, const char *fmt, va_list *ap)
{
    const char *p = fmt;
    while (*p && !j->cut) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        const char *k = p;
        while (*p && *p != '=' && *p != ' ' && *p != '%' && *p != '"')
            p++;
        const char *key = "text";
        size_t kn = 4;
        if (*p == '=' && p > k)
            key = k, kn = (size_t)(p++ - k);
        else
            p = k;
        size_t mark = member_begin(j, key, kn, 1);
        if (sole_number(p)) {
            conv c;
            if (!take_conv(&p, ap, &c))
                return;
            /* in JSON's grammar: no padding, sign flag or %e %a forms */
            char buf[128];
            int n = c.kind == 'i'           ? snprintf(buf, sizeof buf, "%lld", c.i)
                    : c.kind == 'u'         ? snprintf(buf, sizeof buf, "%llu", c.u)
                    : isfinite((double)c.f) ? snprintf(buf, sizeof buf, "%.17Lg", c.f)
                                            : 0;
            if (n > 0)
                put_n(j->o, buf, (size_t)n);
            else
                put_n(j->o, "null", 4);
            member_end(j, mark);
            continue;
        }
        put(j->o, '"');
        int inq = 0;
        while (*p && (inq || *p != ' ')) {
            if (*p == '"') {
                inq = !inq;
                p++;
            } else if (*p != '%') {
                put_json_text(j->o, p++, 1, j->lim - 1, &j->cut);
            } else if (p[1] == '%') {
                put_json_text(j->o, "%", 1, j->lim - 1, &j->cut);
                p += 2;
            } else {
                conv c;
                if (!take_conv(&p, ap, &c)) {
                    p = "";
                    break;
                }
                char buf[128];
                const char *v = c.s;
                size_t vn = c.n;
                if (c.kind != 's')
                    v = buf, vn = conv_text(&c, buf, sizeof buf);
                put_json_text(j->o, v, vn, j->lim - 1, &j->cut);
            }
        }
        put(j->o, '"');
        member_end(j, mark);
    }
}

/* A tail already in key=value form (ph_log_format's output) as JSON members:
 * it is read back by the grammar the formatter writes (a bare value, or a
 * quoted one with \" \\ and \xNN), so every value comes back byte for byte.
 * Their types are gone by then: these members are strings. */
static void jtail(jline *j, const char *t)
{
    char v[LINE_MAX_BYTES];
    while (*t && !j->cut) {
        while (*t == ' ')
            t++;
        if (!*t)
            break;
        const char *k = t;
        while (*t && *t != '=' && *t != ' ')
            t++;
        const char *key = "text";
        size_t kn = 4;
        if (*t == '=' && t > k)
            key = k, kn = (size_t)(t++ - k);
        else
            t = k;
        size_t vn = 0;
        int inq = 0;
        /* a value longer than a line is cut (member_str would cut it anyway),
         * and the rest of it skipped, not read as more fields */
        while (*t && (inq || *t != ' ')) {
            char ch;
            if (*t == '"') {
                inq = !inq;
                t++;
                continue;
            } else if (inq && t[0] == '\\' && t[1] == 'x' && isxdigit((unsigned char)t[2]) &&
                       isxdigit((unsigned char)t[3])) {
                char h[3] = {t[2], t[3], 0};
                ch = (char)strtoul(h, NULL, 16);
                t += 4;
            } else if (inq && t[0] == '\\' && t[1]) {
                ch = t[1];
                t += 2;
            } else {
                ch = *t++;
            }
            if (vn < sizeof v)
                v[vn++] = ch;
        }
        char kb[128];
        size_t kl = kn < sizeof kb - 1 ? kn : sizeof kb - 1;
        memcpy(kb, key, kl);
        kb[kl] = 0;
        member_str(j, kb, v, vn, 1);
    }
}

size_t ph_log_vformat(char *buf, size_t cap, const char *fmt, va_list ap)
{
    out o = {buf, cap, 0};
    if (fmt) {
        va_list aq;
        va_copy(aq, ap);
        vformat(&o, fmt, &aq);
        va_end(aq);
    }
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
    char time[64];
    snprintf(time, sizeof time, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    if (!msg)
        msg = "";
    size_t n;
    if (lg->format == PH_LOG_FORMAT_JSON) {
        /* the head is ours and short: it always fits */
        jline j = {&o, o.cap - JSON_RESERVE, 0};
        put_n(&o, "{\"time\":\"", 9);
        put_n(&o, time, strlen(time));
        put_n(&o, "\",\"level\":\"", 11);
        put_n(&o, level_names[level], strlen(level_names[level]));
        put(&o, '"');
        if (req)
            member_str(&j, "req", req, strlen(req), 0);
        member_str(&j, "event", msg, strlen(msg), 0);
        if (fmt)
            jformat(&j, fmt, ap);
        else if (tail)
            jtail(&j, tail);
        if (j.cut)
            put_n(&o, ",\"truncated\":true", 17);
        put(&o, '}');
        n = o.len;
    } else {
        put_n(&o, "ts=", 3);
        put_n(&o, time, strlen(time));
        put_n(&o, " level=", 7);
        put_n(&o, level_names[level], strlen(level_names[level]));
        if (req) {
            put_n(&o, " req=", 5);
            put_value(&o, req, strlen(req), 0);
        }
        put_n(&o, " msg=", 5);
        put_value(&o, msg, strlen(msg), 0);
        if (fmt || (tail && *tail))
            put(&o, ' ');
        if (fmt)
            vformat(&o, fmt, ap);
        else if (tail)
            put_n(&o, tail, strlen(tail));
        n = o.len < o.cap ? o.len : o.cap - 1;
    }
    /* the tail's literal text is the caller's; a newline there still must not
     * split the line */
    for (size_t i = 0; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[n++] = '\n';
    /* one write(2) per line: lines of threads never interleave, and a reopen
     * (dup2 onto this descriptor) sends it whole to the old file or the new */
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

int ph_log_format_parse(const char *name)
{
    if (name && strcmp(name, "text") == 0)
        return PH_LOG_FORMAT_TEXT;
    if (name && strcmp(name, "json") == 0)
        return PH_LOG_FORMAT_JSON;
    return -1;
}

/* O_APPEND: logrotate's copytruncate and other writers keep working, and each
 * line lands at the end whatever the offset. */
static int open_log(const char *path, ph_err *err)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        ph_err_set(err, PH_EIO, "log.file: cannot open %s: %s", path, strerror(errno));
    return fd;
}

int ph_log_open_file(ph_logger *lg, const char *path, ph_err *err)
{
    assert(lg->path == NULL);
    char *copy = strdup(path);
    if (!copy)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    int fd = open_log(path, err);
    if (fd < 0) {
        free(copy);
        return PH_EIO;
    }
    lg->fd = fd;
    lg->path = copy;
    return PH_OK;
}

int ph_log_reopen(ph_logger *lg, ph_err *err)
{
    if (!lg->path)
        return PH_OK;
    int fd = open_log(lg->path, err);
    if (fd < 0)
        return PH_EIO;
    /* dup2 swaps the file behind lg->fd in one step: a thread writing now
     * writes its whole line to the old file or the new one, never to a closed
     * or reused descriptor number; the old file is closed by it */
    int rc = dup2(fd, lg->fd) < 0 ? ph_err_set(err, PH_EIO, "log.file: cannot reopen %s: %s",
                                               lg->path, strerror(errno))
                                  : PH_OK;
    close(fd);
    return rc;
}

void ph_log_close(ph_logger *lg)
{
    if (!lg->path)
        return;
    close(lg->fd);
    lg->fd = 2;
    free(lg->path);
    lg->path = NULL;
}
