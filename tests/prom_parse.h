/*
 * prom_parse.h — a small, strict reader of the Prometheus text exposition
 * format 0.0.4 for the tests (tests/unit/test_metrics.c,
 * tests/e2e/test_metrics.c): it checks every line's syntax and the rules the
 * format and Prometheus' naming conventions set, and keeps every sample for
 * lookups. Header-only: static functions, one user per test file.
 *
 * Checked: each line is "# HELP name text", "# TYPE name type" or a sample
 * "name{l="v",...} value"; names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
 * [a-zA-Z_][a-zA-Z0-9_]*; label values use only the escapes \\, \" and \n;
 * values parse as floats (+Inf, -Inf, NaN too); a family's HELP and TYPE come
 * once, before its samples, and its samples are contiguous; a counter's name
 * ends in _total; a histogram's samples are name_bucket (with le), name_sum,
 * name_count, its buckets ascending in le, cumulative (non-decreasing), ending
 * with le="+Inf", whose count equals name_count.
 * Labels of a sample are kept unescaped as "k=v,k=v" in the order written.
 */
#ifndef PH_PROM_PARSE_H
#define PH_PROM_PARSE_H

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct prom_sample {
    char name[128];
    char labels[512]; /* unescaped "k=v,k=v" without le */
    char le[32];      /* a bucket's le, else "" */
    double value;
} prom_sample;

typedef struct prom_doc {
    prom_sample *s;
    size_t n, cap;
    char err[256]; /* the first violation, with its line number; "" when valid */
} prom_doc;

static int prom_fail(prom_doc *d, int line, const char *what)
{
    if (!d->err[0])
        snprintf(d->err, sizeof d->err, "line %d: %s", line, what);
    return -1;
}

static size_t prom_name_len(const char *p, int label)
{
    size_t i = 0;
    while (isalpha((unsigned char)p[i]) || p[i] == '_' || (!label && p[i] == ':') ||
           (i && isdigit((unsigned char)p[i])))
        i++;
    return i;
}

static int prom_value(const char *p, double *v)
{
    if (strcmp(p, "+Inf") == 0) {
        *v = INFINITY;
        return 0;
    }
    if (strcmp(p, "-Inf") == 0) {
        *v = -INFINITY;
        return 0;
    }
    if (strcmp(p, "NaN") == 0) {
        *v = NAN;
        return 0;
    }
    char *end;
    *v = strtod(p, &end);
    return *p && !*end && !isspace((unsigned char)*p) ? 0 : -1;
}

/* One sample line; the name, labels and value go to *out. */
static int prom_sample_line(prom_doc *d, int ln, char *line, prom_sample *out)
{
    memset(out, 0, sizeof *out);
    size_t n = prom_name_len(line, 0);
    if (!n || n >= sizeof out->name)
        return prom_fail(d, ln, "bad metric name");
    memcpy(out->name, line, n);
    char *p = line + n;
    size_t lo = 0;
    if (*p == '{') {
        p++;
        while (*p != '}') {
            size_t ln2 = prom_name_len(p, 1);
            if (!ln2 || p[ln2] != '=' || p[ln2 + 1] != '"')
                return prom_fail(d, ln, "bad label");
            char lname[64] = "", val[256] = "";
            if (ln2 >= sizeof lname)
                return prom_fail(d, ln, "label name too long");
            memcpy(lname, p, ln2);
            p += ln2 + 2;
            size_t vl = 0;
            while (*p != '"') {
                if (!*p || *p == '\n')
                    return prom_fail(d, ln, "unterminated label value");
                char c = *p++;
                if (c == '\\') {
                    c = *p++;
                    if (c == 'n')
                        c = '\n';
                    else if (c != '\\' && c != '"')
                        return prom_fail(d, ln, "bad escape in a label value");
                }
                if (vl + 1 >= sizeof val)
                    return prom_fail(d, ln, "label value too long");
                val[vl++] = c;
            }
            p++;
            if (strcmp(lname, "le") == 0) {
                if (vl >= sizeof out->le)
                    return prom_fail(d, ln, "le too long");
                memcpy(out->le, val, vl + 1);
            } else
                lo += (size_t)snprintf(out->labels + lo, sizeof out->labels - lo, "%s%s=%s",
                                       lo ? "," : "", lname, val);
            if (lo >= sizeof out->labels)
                return prom_fail(d, ln, "labels too long");
            if (*p == ',')
                p++;
            else if (*p != '}')
                return prom_fail(d, ln, "expected , or } after a label");
        }
        p++;
    }
    if (*p != ' ')
        return prom_fail(d, ln, "expected one space before the value");
    p++;
    char *sp = strchr(p, ' '); /* an optional timestamp: an integer */
    if (sp) {
        *sp = 0;
        char *end;
        strtoll(sp + 1, &end, 10);
        if (*end || end == sp + 1)
            return prom_fail(d, ln, "bad timestamp");
    }
    if (prom_value(p, &out->value))
        return prom_fail(d, ln, "bad value");
    return 0;
}

static int prom_ends(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The family a sample belongs to under type (the histogram suffixes taken off). */
static int prom_in_family(const char *sample, const char *family, const char *type)
{
    if (strcmp(type, "histogram") != 0)
        return strcmp(sample, family) == 0;
    size_t n = strlen(family);
    return strncmp(sample, family, n) == 0 &&
           (!strcmp(sample + n, "_bucket") || !strcmp(sample + n, "_sum") ||
            !strcmp(sample + n, "_count"));
}

static double prom_le(const char *le)
{
    double v;
    return prom_value(le, &v) ? NAN : v;
}

/* The histogram rules over samples [from, to) of family fam. */
static int prom_check_hist(prom_doc *d, size_t from, size_t to, const char *fam, int ln)
{
    char bucket[160], count[160];
    snprintf(bucket, sizeof bucket, "%s_bucket", fam);
    snprintf(count, sizeof count, "%s_count", fam);
    for (size_t i = from; i < to; i++) {
        if (strcmp(d->s[i].name, bucket) != 0 || (i > from && !strcmp(d->s[i - 1].name, bucket) &&
                                                  !strcmp(d->s[i - 1].labels, d->s[i].labels)))
            continue;
        /* the first bucket of a label set */
        double prev_le = -INFINITY, prev = 0;
        size_t j = i;
        for (; j < to && !strcmp(d->s[j].name, bucket) && !strcmp(d->s[j].labels, d->s[i].labels);
             j++) {
            double le = prom_le(d->s[j].le);
            if (isnan(le) || le <= prev_le)
                return prom_fail(d, ln, "histogram buckets not ascending in le");
            if (d->s[j].value < prev)
                return prom_fail(d, ln, "histogram buckets not cumulative");
            prev_le = le;
            prev = d->s[j].value;
        }
        if (!isinf(prev_le))
            return prom_fail(d, ln, "histogram without a +Inf bucket");
        int found = 0;
        for (size_t k = from; k < to; k++)
            if (!strcmp(d->s[k].name, count) && !strcmp(d->s[k].labels, d->s[i].labels)) {
                found = 1;
                if (d->s[k].value != prev)
                    return prom_fail(d, ln, "histogram _count differs from its +Inf bucket");
            }
        if (!found)
            return prom_fail(d, ln, "histogram without _count");
    }
    return 0;
}

/* Parses text; 0 when every rule holds, else -1 with d->err. Free with
 * prom_free either way. */
static int prom_parse(prom_doc *d, const char *text)
{
    memset(d, 0, sizeof *d);
    char *copy = strdup(text), *save = NULL;
    char fam[128] = "", type[16] = "", seen[256][128];
    size_t nseen = 0, fam_from = 0;
    int ln = 0, rc = 0, have_help = 0;
    size_t tl = strlen(text);
    if (tl && text[tl - 1] != '\n')
        rc = prom_fail(d, 0, "the text does not end with a line feed");
    for (char *line = strtok_r(copy, "\n", &save); line && !rc;
         line = strtok_r(NULL, "\n", &save)) {
        ln++;
        if (!strncmp(line, "# HELP ", 7) || !strncmp(line, "# TYPE ", 7)) {
            int help = line[2] == 'H';
            char *name = line + 7;
            size_t n = prom_name_len(name, 0);
            if (!n || name[n] != ' ' || n >= sizeof fam) {
                rc = prom_fail(d, ln, "bad HELP or TYPE line");
                break;
            }
            name[n] = 0;
            if (help) {
                /* a new family: the previous one is complete */
                if (!strcmp(type, "histogram") &&
                    (rc = prom_check_hist(d, fam_from, d->n, fam, ln)))
                    break;
                for (size_t i = 0; i < nseen && !rc; i++)
                    if (!strcmp(seen[i], name))
                        rc = prom_fail(d, ln, "family described twice");
                if (rc)
                    break;
                snprintf(fam, sizeof fam, "%s", name);
                if (nseen < 256)
                    snprintf(seen[nseen++], sizeof seen[0], "%s", name);
                type[0] = 0;
                fam_from = d->n;
                have_help = 1;
                for (const char *q = name + n + 1; *q; q++)
                    if (*q == '\\' && q[1] != '\\' && q[1] != 'n') {
                        rc = prom_fail(d, ln, "bad escape in HELP");
                        break;
                    } else if (*q == '\\')
                        q++;
            } else {
                if (!have_help || strcmp(name, fam) != 0 || type[0]) {
                    rc = prom_fail(d, ln, "TYPE without its HELP just before");
                    break;
                }
                const char *t = name + n + 1;
                if (strcmp(t, "counter") && strcmp(t, "gauge") && strcmp(t, "histogram") &&
                    strcmp(t, "summary") && strcmp(t, "untyped")) {
                    rc = prom_fail(d, ln, "unknown TYPE");
                    break;
                }
                if (!strcmp(t, "counter") && !prom_ends(name, "_total")) {
                    rc = prom_fail(d, ln, "a counter's name must end in _total");
                    break;
                }
                snprintf(type, sizeof type, "%s", t);
            }
            continue;
        }
        if (line[0] == '#') {
            rc = prom_fail(d, ln, "a comment other than HELP and TYPE");
            break;
        }
        prom_sample smp;
        if ((rc = prom_sample_line(d, ln, line, &smp)))
            break;
        if (!type[0] || !prom_in_family(smp.name, fam, type)) {
            rc = prom_fail(d, ln, "a sample outside its family (no TYPE just before)");
            break;
        }
        if (smp.le[0] && strcmp(type, "histogram") != 0) {
            rc = prom_fail(d, ln, "le outside a histogram");
            break;
        }
        if (d->n == d->cap) {
            d->cap = d->cap ? d->cap * 2 : 256;
            d->s = realloc(d->s, d->cap * sizeof *d->s);
        }
        d->s[d->n++] = smp;
    }
    if (!rc && !strcmp(type, "histogram"))
        rc = prom_check_hist(d, fam_from, d->n, fam, ln);
    free(copy);
    return rc;
}

/* The value of sample name{labels} (unescaped "k=v,k=v", le excluded; a
 * bucket: le as written), or NAN when absent. */
static double prom_get(const prom_doc *d, const char *name, const char *labels, const char *le)
{
    for (size_t i = 0; i < d->n; i++)
        if (!strcmp(d->s[i].name, name) && !strcmp(d->s[i].labels, labels ? labels : "") &&
            !strcmp(d->s[i].le, le ? le : ""))
            return d->s[i].value;
    return NAN;
}

static void prom_free(prom_doc *d)
{
    free(d->s);
    d->s = NULL;
    d->n = d->cap = 0;
}

#endif
