/*
 * recon.c — reading a supplier's statement (recon.h).
 */
#include "money/recon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/util.h"
#include "codes/csv.h"
#include "crypto/crypto.h"
#include "supply/sup_text.h"

enum { C_REF, C_SOID, C_AMOUNT, C_TIME, C_STATUS, NCOL };
static const char *const col_field[NCOL] = {"ref", "supplier_order_id", "amount", "time", "status"};

typedef struct reader {
    const ph_statement_conf *st;
    int64_t from, to;
    size_t max_errors, cap, errcap;
    ph_statement *out;
    int header_seen;
    int field_of[NCOL]; /* column -> field index of the file, -1 when not mapped */
} reader;

static int add_error(reader *rd, uint32_t line, int col, const char *reason, ph_err *err)
{
    ph_statement *s = rd->out;
    s->error_count++;
    if (s->nerrors == rd->max_errors)
        return PH_OK;
    if (s->nerrors == rd->errcap) {
        ph_stmt_error *g = ph_grow(s->errors, &rd->errcap, sizeof *g, 16);
        if (!g)
            return ph_err_set(err, PH_ENOMEM, "out of memory reading the statement");
        s->errors = g;
    }
    ph_stmt_error *e = &s->errors[s->nerrors++];
    memset(e, 0, sizeof *e);
    e->line = line;
    if (col >= 0) {
        e->column = rd->field_of[col] >= 0 ? (uint32_t)rd->field_of[col] + 1 : 0;
        snprintf(e->field, sizeof e->field, "%s", col_field[col]);
    }
    snprintf(e->reason, sizeof e->reason, "%s", reason);
    return PH_OK;
}

/* Trims spaces and tabs around a header name. */
static void trimmed(const char *s, size_t n, const char **out, size_t *len)
{
    while (n && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    *out = s;
    *len = n;
}

static int take_header(reader *rd, const ph_csv_record *rec, ph_err *err)
{
    const char *names[NCOL] = {rd->st->ref, rd->st->supplier_order_id, rd->st->amount, rd->st->time,
                               rd->st->status};
    if (rec->fault)
        return ph_err_set(err, PH_EINVAL, "line %u: header column %zu: %s", rec->line,
                          rec->fault_field + 1, rec->fault);
    for (int c = 0; c < NCOL; c++) {
        rd->field_of[c] = -1;
        if (!names[c])
            continue;
        for (size_t i = 0; i < rec->nfields && i < PH_CSV_FIELDS_MAX; i++) {
            const char *h;
            size_t n;
            trimmed(rec->field[i], rec->len[i], &h, &n);
            if (n != strlen(names[c]) || strncasecmp(h, names[c], n))
                continue;
            if (rd->field_of[c] >= 0)
                return ph_err_set(err, PH_EINVAL,
                                  "line %u: header columns %d and %zu both name columns.%s",
                                  rec->line, rd->field_of[c] + 1, i + 1, col_field[c]);
            rd->field_of[c] = (int)i;
        }
        /* the name is ours (the configuration's), never the file's */
        if (rd->field_of[c] < 0)
            return ph_err_set(err, PH_EINVAL,
                              "line %u: header: no column \"%s\" (the supplier's "
                              "statement.columns.%s)",
                              rec->line, names[c], col_field[c]);
    }
    rd->header_seen = 1;
    return PH_OK;
}

/* A time field under the mapping's format into ms; 0 or -1. */
static int parse_time(const ph_statement_conf *st, const char *s, size_t n, int64_t *ms)
{
    uint64_t v;
    switch (st->time_format) {
    case PH_STMT_UNIX_S:
        if (ph_u64_parse(s, &v) || v > (uint64_t)PH_TIME_MAX_MS / 1000)
            return -1;
        *ms = (int64_t)v * 1000;
        return 0;
    case PH_STMT_UNIX_MS:
        if (ph_u64_parse(s, &v) || v > (uint64_t)PH_TIME_MAX_MS)
            return -1;
        *ms = (int64_t)v;
        return 0;
    case PH_STMT_LOCAL: { /* "YYYY-MM-DD HH:MM:SS" at the configured offset */
        char buf[40];
        int off = st->utc_offset_min, neg = off < 0;
        if (n != 19 || s[10] != ' ')
            return -1;
        if (neg)
            off = -off;
        snprintf(buf, sizeof buf, "%.10sT%.8s%c%02d:%02d", s, s + 11, neg ? '-' : '+', off / 60,
                 off % 60);
        return ph_time_parse(buf, strlen(buf), ms);
    }
    default:
        return ph_time_parse(s, n, ms);
    }
}

static int value_is(const char *s, size_t n, char *const *values, size_t nvalues)
{
    const char *t;
    size_t len;
    trimmed(s, n, &t, &len);
    for (size_t i = 0; i < nvalues; i++)
        if (strlen(values[i]) == len && !strncasecmp(t, values[i], len))
            return 1;
    return 0;
}

/* Checks one line and appends it, or records why it is bad. text[c] is the
 * line's value of column c, "" when the line is short or c is not mapped. */
static int check_line(reader *rd, uint32_t line, const char *const text[NCOL],
                      const size_t len[NCOL], ph_err *err)
{
    ph_recon_line l = {.line = line, .time = -1, .charged = 1};
    const ph_statement_conf *st = rd->st;
    if (len[C_REF] && !ph_suptext_id_ok(text[C_REF], PH_REF_MAX))
        return add_error(rd, line, C_REF, "not a reference (1-64 bytes of A-Z a-z 0-9 ._:-/+=)",
                         err);
    if (len[C_SOID] && !ph_suptext_id_ok(text[C_SOID], PH_SUPPLIER_ORDER_MAX))
        return add_error(rd, line, C_SOID, "not an order id (1-128 bytes of A-Z a-z 0-9 ._:-/+=)",
                         err);
    if (!len[C_REF] && !len[C_SOID])
        return add_error(rd, line, rd->field_of[C_REF] >= 0 ? C_REF : C_SOID,
                         "empty: a line names an order by ref or supplier_order_id", err);
    if (!len[C_AMOUNT])
        return add_error(rd, line, C_AMOUNT, "empty", err);
    if (st->amount_unit == PH_STMT_FEN) {
        uint64_t v;
        if (ph_u64_parse(text[C_AMOUNT], &v) || v > (uint64_t)PH_MONEY_MAX_YUAN * 100)
            return add_error(rd, line, C_AMOUNT, "not an amount in fen (a whole number)", err);
        l.amount = (int64_t)v;
    } else if (ph_money_parse(text[C_AMOUNT], &l.amount))
        return add_error(rd, line, C_AMOUNT,
                         "not an amount like 49.40 (not negative, at most two decimals)", err);
    if (rd->field_of[C_TIME] >= 0) {
        if (!len[C_TIME] || parse_time(st, text[C_TIME], len[C_TIME], &l.time))
            return add_error(rd, line, C_TIME, "not a time in the configured time_format", err);
        if (l.time < rd->from || l.time >= rd->to)
            return add_error(rd, line, C_TIME, "outside the statement's period", err);
    }
    if (st->status)
        l.charged =
            value_is(text[C_STATUS], len[C_STATUS], st->success_values, st->nsuccess_values);
    if (len[C_REF])
        memcpy(l.ref, text[C_REF], len[C_REF] + 1);
    if (len[C_SOID])
        memcpy(l.supplier_order_id, text[C_SOID], len[C_SOID] + 1);
    ph_statement *s = rd->out;
    if (s->nlines == PH_STMT_LINES_MAX)
        return ph_err_set(err, PH_EINVAL, "line %u: more than %d lines in one statement", line,
                          PH_STMT_LINES_MAX);
    if (s->nlines == rd->cap) {
        ph_recon_line *g = ph_grow(s->lines, &rd->cap, sizeof *g, 64);
        if (!g)
            return ph_err_set(err, PH_ENOMEM, "out of memory reading the statement");
        s->lines = g;
    }
    s->lines[s->nlines++] = l;
    return PH_OK;
}

static int take_record(void *arg, const ph_csv_record *rec, ph_err *err)
{
    reader *rd = arg;
    if (!rd->header_seen)
        return take_header(rd, rec, err);
    if (rec->fault) {
        int col = -1;
        for (int c = 0; c < NCOL; c++)
            if (rd->field_of[c] == (int)rec->fault_field)
                col = c;
        if (col >= 0)
            return add_error(rd, rec->line, col, rec->fault, err);
        char why[96];
        snprintf(why, sizeof why, "column %zu: %s", rec->fault_field + 1, rec->fault);
        return add_error(rd, rec->line, -1, why, err);
    }
    const char *text[NCOL];
    size_t len[NCOL];
    for (int c = 0; c < NCOL; c++) {
        int f = rd->field_of[c];
        int have = f >= 0 && (size_t)f < rec->nfields;
        text[c] = have ? rec->field[f] : "";
        len[c] = have ? rec->len[f] : 0;
        if (have && c != C_STATUS) { /* a value with spaces around is the value */
            while (len[c] && (text[c][0] == ' ' || text[c][0] == '\t'))
                text[c]++, len[c]--;
            if (len[c] && (text[c][len[c] - 1] == ' ' || text[c][len[c] - 1] == '\t')) {
                /* the record's buffer is ours during the call: cut in place */
                char *t = (char *)text[c];
                while (len[c] && (t[len[c] - 1] == ' ' || t[len[c] - 1] == '\t'))
                    t[--len[c]] = 0;
            }
        }
        if (have && memchr(text[c], 0, len[c])) /* a quoted NUL cannot occur, but be sure */
            len[c] = strlen(text[c]);
    }
    return check_line(rd, rec->line, text, len, err);
}

void ph_statement_free(ph_statement *s)
{
    if (!s)
        return;
    free(s->lines);
    free(s->errors);
    free(s);
}

int ph_statement_parse(const ph_statement_conf *st, const char *data, size_t len, int64_t from,
                       int64_t to, size_t max_errors, ph_statement **out, ph_err *err)
{
    *out = NULL;
    if (!ph_statement_configured(st))
        return ph_err_set(err, PH_EINVAL,
                          "the supplier has no statement mapping in the "
                          "configuration (suppliers[].statement)");
    reader rd = {.st = st, .from = from, .to = to, .max_errors = max_errors};
    if (!(rd.out = calloc(1, sizeof *rd.out)))
        return ph_err_set(err, PH_ENOMEM, "out of memory reading the statement");
    int rc = ph_csv_records(data, len, take_record, &rd, err);
    if (rc == PH_OK && !rd.header_seen)
        rc = ph_err_set(err, PH_EINVAL, "line 1: no header line (the statement is empty)");
    if (rc) {
        ph_statement_free(rd.out);
        return rc;
    }
    ph_sha256(data, len, rd.out->sha256);
    *out = rd.out;
    return PH_OK;
}

int ph_statement_from_lines(const ph_stmt_input *in, size_t n, int64_t from, int64_t to,
                            size_t max_errors, ph_statement **out, ph_err *err)
{
    *out = NULL;
    /* the same checks as a file whose columns are all mapped, time as ms */
    static char *const charged_values[] = {"1"};
    ph_statement_conf st = {.ref = "ref",
                            .supplier_order_id = "supplier_order_id",
                            .amount = "amount",
                            .time = "time",
                            .status = "status",
                            .success_values = (char **)charged_values,
                            .nsuccess_values = 1,
                            .amount_unit = PH_STMT_FEN,
                            .time_format = PH_STMT_UNIX_MS};
    reader rd = {.st = &st, .from = from, .to = to, .max_errors = max_errors};
    if (!(rd.out = calloc(1, sizeof *rd.out)))
        return ph_err_set(err, PH_ENOMEM, "out of memory reading the statement");
    for (int c = 0; c < NCOL; c++)
        rd.field_of[c] = c;
    ph_wbuf canon = {0}; /* the digest's input: every line's fields, length-prefixed */
    int rc = PH_OK;
    for (size_t i = 0; i < n && rc == PH_OK; i++) {
        char amount[24], time[24];
        snprintf(amount, sizeof amount, "%lld", (long long)(in[i].amount < 0 ? -1 : in[i].amount));
        snprintf(time, sizeof time, "%lld", (long long)in[i].time);
        const char *text[NCOL] = {
            in[i].ref ? in[i].ref : "", in[i].supplier_order_id ? in[i].supplier_order_id : "",
            in[i].amount < 0 ? "" : amount, in[i].time < 0 ? "" : time, in[i].charged ? "1" : "0"};
        size_t len[NCOL];
        for (int c = 0; c < NCOL; c++) {
            len[c] = strlen(text[c]);
            uint32_t l32 = (uint32_t)len[c];
            ph_wbuf_put(&canon, &l32, sizeof l32);
            ph_wbuf_put(&canon, text[c], len[c]);
        }
        /* the time column is optional for a plugin: -1 is "not given" */
        st.time = in[i].time < 0 ? NULL : "time";
        rd.field_of[C_TIME] = in[i].time < 0 ? -1 : C_TIME;
        rc = check_line(&rd, (uint32_t)(i + 1), text, len, err);
        rd.field_of[C_TIME] = C_TIME;
    }
    if (rc == PH_OK && canon.oom)
        rc = ph_err_set(err, PH_ENOMEM, "out of memory reading the statement");
    if (rc == PH_OK)
        ph_sha256(canon.p ? canon.p : "", canon.len, rd.out->sha256);
    ph_wbuf_free(&canon);
    if (rc) {
        ph_statement_free(rd.out);
        return rc;
    }
    *out = rd.out;
    return PH_OK;
}

int ph_statement_bound(const char *s, int offset_min, int64_t *ms)
{
    char buf[40];
    if (!s)
        return -1;
    if (strlen(s) != 10)
        return ph_time_parse(s, strlen(s), ms);
    snprintf(buf, sizeof buf, "%sT00:00:00Z", s);
    if (ph_time_parse(buf, strlen(buf), ms))
        return -1;
    *ms -= (int64_t)offset_min * 60000;
    return 0;
}
