/*
 * csv.c — card-code CSV parser (see csv.h).
 *
 * One pass over the input with a byte-class table. Unquoted field contents
 * are copied (quoted ones unescaped) into a single buffer of len + 1 bytes
 * allocated up front. It never needs to grow: a field's content is never longer
 * than its raw bytes, and its NUL terminator takes the place of the separator
 * (comma, CR or LF) that ended it, or of the + 1 for the file's last field.
 * Rows point into that buffer, so they stay valid until ph_csv_free, which
 * wipes it: it holds codes in plaintext.
 *
 * Error reasons are built from our column names, positions and fixed text
 * only. A malformed line may be a code in the wrong column, and a header may
 * hold one too, so no reason or message ever echoes a field of the file.
 */
#include "codes/csv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crypto/crypto.h"
#include "base/util.h"

enum { COL_CODE, COL_CARD, COL_EXPIRES, NCOLS };
static const char *const col_names[NCOLS] = {"code", "card_no", "expires_at"};

/* Byte classes for the field scanner. */
enum {
    B_OK = 0,  /* printable ASCII, allowed in a code */
    B_BAD = 1, /* space, control or non-ASCII: fine in a field, not in a code */
    B_SEP = 2, /* ',' '\n' '\r' '"' NUL: the scanner has to look at it */
};

static void classes_init(unsigned char t[256])
{
    for (int c = 0; c < 256; c++)
        t[c] = (c >= 0x21 && c <= 0x7e) ? B_OK : B_BAD;
    t[','] = t['\n'] = t['\r'] = t['"'] = t[0] = B_SEP;
}

struct field {
    size_t off;   /* content offset in the buffer */
    size_t len;   /* content length, without the NUL */
    int bad_byte; /* holds a byte outside 0x21..0x7e */
};

struct parser {
    const char *p, *end;
    unsigned char cls[256]; /* byte classes; per parse, so no shared mutable state */
    uint32_t line;          /* line of p, 1-based */
    char *buf;
    size_t pos; /* next free byte of buf */
    size_t hwm; /* bytes of buf ever written: what ph_csv_free must wipe */
    ph_csv *csv;
    size_t max_errors, rowcap, errcap;

    /* column layout: from the header, or positional */
    int ncols;           /* columns a line may have */
    int col_of[NCOLS];   /* field index -> column (COL_*) */
    int field_of[NCOLS]; /* column -> field index, -1 when the header lacks it */

    /* the record being read: the first `keep` fields are kept */
    uint32_t rec_line;
    size_t nfields, keep;
    struct field f[PH_CSV_FIELDS_MAX];
    const char *fault;  /* structural problem in the record, fixed text */
    size_t fault_field; /* the field it was found in */
};

static int line_overflow(struct parser *ps, ph_err *err)
{
    return ph_err_set(err, PH_EINVAL, "line %u: too many lines (at most %u)", ps->line,
                      UINT32_MAX - 1);
}

static void set_fault(struct parser *ps, size_t field, const char *what)
{
    if (!ps->fault) {
        ps->fault = what;
        ps->fault_field = field;
    }
}

/* Reads one field starting at ps->p into the buffer. Stops at the comma or line
 * end that follows it (not consumed). Returns PH_OK or a fatal error. */
static int read_field(struct parser *ps, size_t idx, struct field *f, ph_err *err)
{
    const char *p = ps->p, *end = ps->end;
    const unsigned char *cls = ps->cls;
    char *o = ps->buf + ps->pos;
    int bad = 0;

    if (p < end && *p == '"') {
        uint32_t qline = ps->line;
        for (p++;; p++) {
            if (p == end)
                return ph_err_set(err, PH_EINVAL, "line %u: unterminated quote", qline);
            unsigned char c = (unsigned char)*p;
            if (c == '"') {
                if (p + 1 < end && p[1] == '"') {
                    *o++ = '"';
                    p++;
                    continue;
                }
                p++;
                break;
            }
            if (c == 0)
                return ph_err_set(err, PH_EINVAL, "line %u: NUL byte; not a text file", ps->line);
            if (c == '\n' && ++ps->line == UINT32_MAX)
                return line_overflow(ps, err);
            bad |= c < 0x21 || c > 0x7e; /* ',' and '"' are fine in a code */
            *o++ = (char)c;
        }
        /* After the closing quote only a separator may follow. Skip the junk so
         * the rest of the line still splits into the right fields. */
        int junk = 0;
        for (; p < end && *p != ',' && *p != '\n'; p++) {
            if (*p == '\r' && (p + 1 == end || p[1] == '\n'))
                break;
            if (*p == 0)
                return ph_err_set(err, PH_EINVAL, "line %u: NUL byte; not a text file", ps->line);
            junk = 1;
        }
        if (junk)
            set_fault(ps, idx, "text after a closing quote");
    } else {
        for (; p < end; p++) {
            unsigned char c = (unsigned char)*p;
            unsigned char k = cls[c];
            if (k == B_SEP) {
                if (c == ',' || c == '\n' || (c == '\r' && (p + 1 == end || p[1] == '\n')))
                    break;
                if (c == 0)
                    return ph_err_set(err, PH_EINVAL, "line %u: NUL byte; not a text file",
                                      ps->line);
                if (c == '"')
                    set_fault(ps, idx, "quote inside an unquoted field");
                k = B_BAD; /* a lone CR, or the stray quote */
            }
            bad |= k;
            *o++ = (char)c;
        }
    }
    *o++ = 0;
    f->off = ps->pos;
    f->len = (size_t)(o - (ps->buf + ps->pos)) - 1;
    f->bad_byte = bad;
    ps->pos += f->len + 1;
    if (ps->pos > ps->hwm)
        ps->hwm = ps->pos;
    ps->p = p;
    return PH_OK;
}

/* Reads one record (ps->p is at its first byte, which does not end a line) and
 * consumes its line end. Fields past ps->keep are counted, not kept. */
static int read_record(struct parser *ps, ph_err *err)
{
    ps->rec_line = ps->line;
    ps->nfields = 0;
    ps->fault = NULL;
    for (;;) {
        struct field scratch;
        size_t idx = ps->nfields;
        size_t mark = ps->pos;
        int rc = read_field(ps, idx, idx < ps->keep ? &ps->f[idx] : &scratch, err);
        if (rc != PH_OK)
            return rc;
        if (idx >= ps->keep)
            ps->pos = mark; /* not kept: give the space back */
        ps->nfields++;
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        break;
    }
    /* at a line end or at the end of the data */
    if (ps->p < ps->end && *ps->p == '\r')
        ps->p++;
    if (ps->p < ps->end && *ps->p == '\n') {
        ps->p++;
        if (++ps->line == UINT32_MAX)
            return line_overflow(ps, err);
    }
    return PH_OK;
}

static const char *field_text(const struct parser *ps, const struct field *f)
{
    return ps->buf + f->off;
}

/* Trims spaces and tabs around a header name, in place in the buffer. */
static const char *header_name(struct parser *ps, struct field *f, size_t *len)
{
    char *s = ps->buf + f->off;
    size_t n = f->len;
    while (n && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    *len = n;
    return s;
}

static int is_header(struct parser *ps)
{
    size_t n;
    const char *s = header_name(ps, &ps->f[0], &n);
    return n == 4 && strncasecmp(s, "code", 4) == 0;
}

/* Sets the column layout from the header record. A bad header is fatal: with
 * columns unknown, no line after it can be read correctly. */
static int apply_header(struct parser *ps, ph_err *err)
{
    uint32_t line = ps->rec_line;
    if (ps->nfields > NCOLS)
        return ph_err_set(err, PH_EINVAL,
                          "line %u: header has %zu columns, expected at most %d (code, "
                          "card_no, expires_at)",
                          line, ps->nfields, NCOLS);
    if (ps->fault)
        return ph_err_set(err, PH_EINVAL, "line %u: header column %zu: %s", line,
                          ps->fault_field + 1, ps->fault);
    for (int c = 0; c < NCOLS; c++)
        ps->field_of[c] = -1;
    for (size_t i = 0; i < ps->nfields; i++) {
        size_t n;
        const char *s = header_name(ps, &ps->f[i], &n);
        int col = -1;
        for (int c = 0; c < NCOLS; c++)
            if (strlen(col_names[c]) == n && strncasecmp(s, col_names[c], n) == 0)
                col = c;
        if (col < 0) {
            if (n == 0)
                return ph_err_set(err, PH_EINVAL, "line %u: header column %zu has no name", line,
                                  i + 1);
            /* A caller may put anything in a header, a code included: the name is
             * never quoted, its position says which one. */
            return ph_err_set(err, PH_EINVAL,
                              "line %u: header column %zu: unknown name (expected code, "
                              "card_no, expires_at)",
                              line, i + 1);
        }
        if (ps->field_of[col] >= 0)
            return ph_err_set(err, PH_EINVAL,
                              "line %u: header column %zu: names %s again (column %d)", line, i + 1,
                              col_names[col], ps->field_of[col] + 1);
        ps->field_of[col] = (int)i;
        ps->col_of[i] = col;
    }
    ps->ncols = (int)ps->nfields;
    ps->pos = 0; /* the header's bytes are not needed any more */
    return PH_OK;
}

static int add_error(struct parser *ps, const char *reason, ph_err *err)
{
    ph_csv *csv = ps->csv;
    csv->error_count++;
    if (csv->nerrors == ps->max_errors)
        return PH_OK;
    if (csv->nerrors == ps->errcap) {
        size_t cap = ps->errcap ? ps->errcap * 2 : 16;
        if (cap > ps->max_errors)
            cap = ps->max_errors;
        ph_csv_error *e = realloc(csv->errors, cap * sizeof *e);
        if (!e)
            return ph_err_set(err, PH_ENOMEM, "out of memory parsing CSV");
        csv->errors = e;
        ps->errcap = cap;
    }
    ph_csv_error *e = &csv->errors[csv->nerrors++];
    e->line = ps->rec_line;
    snprintf(e->reason, sizeof e->reason, "%s", reason);
    return PH_OK;
}

/* Checks a code or card number; on a problem writes "<col>: <why>" to reason
 * and returns 1. */
static int token_bad(const struct field *f, const char *col, char *reason, size_t size)
{
    if (f->len == 0)
        snprintf(reason, size, "%s: empty", col);
    else if (f->len > PH_CODE_MAX)
        snprintf(reason, size, "%s: longer than %d bytes", col, PH_CODE_MAX);
    else if (f->bad_byte)
        snprintf(reason, size, "%s: contains a space or non-printable byte", col);
    else
        return 0;
    return 1;
}

/* Validates the record just read as a data line; appends a row or an error. */
static int take_record(struct parser *ps, ph_err *err)
{
    char reason[sizeof((ph_csv_error *)0)->reason];
    size_t start = ps->f[0].off; /* where this record's bytes begin in buf */
    struct field none = {0, 0, 0};
    const struct field *fc = NULL, *fn = NULL, *fe = NULL;

    if (ps->nfields > (size_t)ps->ncols) {
        snprintf(reason, sizeof reason, "%zu fields, expected at most %d", ps->nfields, ps->ncols);
        goto bad;
    }
    if (ps->fault) {
        snprintf(reason, sizeof reason, "%s: %s", col_names[ps->col_of[ps->fault_field]],
                 ps->fault);
        goto bad;
    }
    fc = ps->field_of[COL_CODE] < (int)ps->nfields ? &ps->f[ps->field_of[COL_CODE]] : &none;
    fn = ps->field_of[COL_CARD] >= 0 && ps->field_of[COL_CARD] < (int)ps->nfields
             ? &ps->f[ps->field_of[COL_CARD]]
             : &none;
    fe = ps->field_of[COL_EXPIRES] >= 0 && ps->field_of[COL_EXPIRES] < (int)ps->nfields
             ? &ps->f[ps->field_of[COL_EXPIRES]]
             : &none;

    if (token_bad(fc, "code", reason, sizeof reason))
        goto bad;
    if (fn->len && token_bad(fn, "card_no", reason, sizeof reason))
        goto bad;
    int64_t expires = 0;
    if (fe->len) {
        if (ph_time_parse(field_text(ps, fe), fe->len, &expires) != 0) {
            snprintf(reason, sizeof reason, "expires_at: not a date (YYYY-MM-DD or RFC 3339)");
            goto bad;
        }
        if (expires <= 0) { /* 0 means "never expires" in a row */
            snprintf(reason, sizeof reason, "expires_at: not after 1970-01-01");
            goto bad;
        }
    }

    ph_csv *csv = ps->csv;
    if (csv->nrows == ps->rowcap) {
        ph_csv_row *r = ph_grow(csv->rows, &ps->rowcap, sizeof *r, 256);
        if (!r)
            return ph_err_set(err, PH_ENOMEM, "out of memory parsing CSV");
        csv->rows = r;
    }
    ph_csv_row *row = &csv->rows[csv->nrows++];
    row->line = ps->rec_line;
    row->code = field_text(ps, fc);
    row->code_len = (uint16_t)fc->len;
    row->card_no = fn->len ? field_text(ps, fn) : NULL;
    row->card_len = (uint16_t)fn->len;
    row->expires_at = expires;
    return PH_OK;

bad:
    ph_wipe(ps->buf + start, ps->pos - start); /* a rejected line's bytes are not kept */
    ps->pos = start;
    return add_error(ps, reason, err);
}

/* Skips blank lines (LF, CRLF, or a CR that ends the data) and reads the next
 * record: *got 1, or 0 at the end of the data. */
static int next_record(struct parser *ps, int *got, ph_err *err)
{
    *got = 0;
    while (ps->p < ps->end) {
        if (*ps->p == '\n' || (*ps->p == '\r' && (ps->p + 1 == ps->end || ps->p[1] == '\n'))) {
            if (*ps->p == '\r')
                ps->p++;
            if (ps->p < ps->end) { /* at the LF */
                ps->p++;
                if (++ps->line == UINT32_MAX)
                    return line_overflow(ps, err);
            }
            continue;
        }
        int rc = read_record(ps, err);
        *got = rc == PH_OK;
        return rc;
    }
    return PH_OK;
}

void ph_csv_free(ph_csv *csv)
{
    if (!csv)
        return;
    ph_wipe(csv->buf, csv->buflen);
    free(csv->buf);
    free(csv->rows);
    free(csv->errors);
    free(csv);
}

int ph_csv_parse(const char *data, size_t len, size_t max_errors, ph_csv **out, ph_err *err)
{
    *out = NULL;
    if (len == SIZE_MAX)
        return ph_err_set(err, PH_EINVAL, "CSV too large");
    struct parser ps = {
        .p = data,
        .end = data + len,
        .line = 1,
        .max_errors = max_errors,
        .ncols = NCOLS,
        .keep = NCOLS,
        .col_of = {COL_CODE, COL_CARD, COL_EXPIRES},
        .field_of = {0, 1, 2},
    };
    int rc = PH_OK;
    ph_csv *csv = ps.csv = calloc(1, sizeof *csv);
    if (!csv || !(ps.buf = csv->buf = malloc(len + 1))) {
        free(csv);
        return ph_err_set(err, PH_ENOMEM, "out of memory parsing CSV (%zu bytes)", len);
    }
    classes_init(ps.cls);
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
        ps.p += 3;

    int first = 1, got;
    while ((rc = next_record(&ps, &got, err)) == PH_OK && got) {
        if (first && is_header(&ps))
            rc = apply_header(&ps, err);
        else
            rc = take_record(&ps, err);
        first = 0;
        if (rc != PH_OK)
            break;
    }
    csv->buflen = ps.hwm;
    if (rc != PH_OK) {
        ph_csv_free(csv);
        return rc;
    }
    *out = csv;
    return PH_OK;
}

int ph_csv_records(const char *data, size_t len, ph_csv_record_fn fn, void *arg, ph_err *err)
{
    if (len == SIZE_MAX)
        return ph_err_set(err, PH_EINVAL, "CSV too large");
    struct parser ps = {.p = data, .end = data + len, .line = 1, .keep = PH_CSV_FIELDS_MAX};
    if (!(ps.buf = malloc(len + 1)))
        return ph_err_set(err, PH_ENOMEM, "out of memory parsing CSV (%zu bytes)", len);
    classes_init(ps.cls);
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
        ps.p += 3;
    int rc, got;
    ph_csv_record rec;
    while ((rc = next_record(&ps, &got, err)) == PH_OK && got) {
        memset(&rec, 0, sizeof rec);
        rec.line = ps.rec_line;
        rec.nfields = ps.nfields;
        for (size_t i = 0; i < ps.nfields && i < PH_CSV_FIELDS_MAX; i++) {
            rec.field[i] = field_text(&ps, &ps.f[i]);
            rec.len[i] = ps.f[i].len;
        }
        rec.fault = ps.fault;
        rec.fault_field = ps.fault_field;
        rc = fn(arg, &rec, err);
        ph_wipe(ps.buf, ps.pos); /* the callback copied what it keeps */
        ps.pos = 0;
        if (rc != PH_OK)
            break;
    }
    ph_wipe(ps.buf, ps.hwm);
    free(ps.buf);
    return rc;
}
