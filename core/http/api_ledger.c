/*
 * api_ledger.c — GET /v1/ledger and GET /v1/reports (ops), as JSON or CSV
 * (docs/api.md, "Ledger" and "Reports"). Both only read: the ledger is
 * written by the store with every order (store_ledger.c).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "http/api.h"
#include "store/cmd_codec.h"

#define LEDGER_PAGE_MAX 1000   /* entries per JSON page */
#define LEDGER_CSV_MAX  100000 /* rows per CSV export */

static json_t *money_json(int64_t fen)
{
    char buf[32];
    return json_string(ph_money_format(fen, buf, sizeof buf));
}

/* format=csv, or a path ending in .csv: the same answer as CSV. -1 (answered)
 * on a bad format. */
static int want_csv(ph_req *r)
{
    const char *f = ph_req_query(r, "format");
    size_t pl = strlen(r->path);
    if (f && strcmp(f, "csv") && strcmp(f, "json"))
        return ph_req_error(r, 400, "invalid_request", "format: expected csv or json"), -1;
    return (f && !strcmp(f, "csv")) || (pl > 4 && !strcmp(r->path + pl - 4, ".csv"));
}

/* A growing text buffer for CSV; on out of memory `bad` is set. */
typedef struct text {
    char *p;
    size_t len, cap;
    int bad;
} text;

static void text_add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(text *t, const char *fmt, ...)
{
    for (int tries = 0; !t->bad && tries < 2; tries++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->bad = 1;
            return;
        }
        if (t->p && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap ? t->cap : 4096);
        while (cap <= t->len + (size_t)n)
            cap *= 2;
        char *g = realloc(t->p, cap);
        if (!g) {
            t->bad = 1;
            return;
        }
        t->p = g;
        t->cap = cap;
    }
}

static int text_reply(ph_req *r, text *t)
{
    if (t->bad || !t->p) {
        free(t->p);
        return ph_req_error(r, 500, "internal_error", "out of memory");
    }
    return ph_req_text(r, 200, t->p, t->len, "text/csv; charset=utf-8");
}

/* A bound of the ledger: an RFC 3339 time, or a day (YYYY-MM-DD) in the
 * store's business time zone — its start, or for `to` its end. 0 on success;
 * answered otherwise. */
static int parse_bound(ph_req *r, const char *name, int is_to, int64_t *ms)
{
    const char *v = ph_req_query(r, name);
    *ms = 0;
    if (!v)
        return 0;
    int32_t day = ph_report_day_parse(v);
    if (day >= 0) {
        int off = ph_store_report_offset(r->env->store);
        *ms = ((int64_t)day + (is_to ? 1 : 0)) * 86400000 - (int64_t)off * 60000;
        return 0;
    }
    if (ph_time_parse(v, strlen(v), ms) != PH_OK)
        return ph_req_error(r, 400, "invalid_request",
                            "%s: expected a day (YYYY-MM-DD) or a time (RFC 3339)", name),
               -1;
    return 0;
}

/* supplier, client, sku: identifiers, or absent. */
static int parse_ident(ph_req *r, const char *name, const char **out)
{
    *out = ph_req_query(r, name);
    if (*out && !ph_ident_valid(*out, PH_SKU_MAX))
        return ph_req_error(r, 400, "invalid_request", "%s: expected an identifier", name), -1;
    return 0;
}

int ph_api_ledger(ph_req *r)
{
    ph_ledger_filter f = {0};
    int csv = want_csv(r);
    uint64_t after = 0, limit = csv ? LEDGER_CSV_MAX : 100;
    if (csv < 0 || parse_bound(r, "from", 0, &f.from) || parse_bound(r, "to", 1, &f.to) ||
        parse_ident(r, "supplier", &f.supplier) || parse_ident(r, "client", &f.client) ||
        parse_ident(r, "sku", &f.sku))
        return PH_REQ_DONE;
    if (f.from && f.to && f.from >= f.to)
        return ph_req_error(r, 400, "invalid_request", "from: not before to");
    if (ph_req_page(r, &after, &limit, csv ? LEDGER_CSV_MAX : LEDGER_PAGE_MAX))
        return PH_REQ_DONE;
    ph_ledger_entry *list;
    size_t n;
    ph_err err = {0};
    /* one more than asked tells whether another page exists */
    int rc = ph_store_ledger_list(r->env->store, &f, after, (size_t)limit + 1, &list, &n, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    size_t shown = n > limit ? (size_t)limit : n;
    char at[32], amt[32];
    if (csv) {
        text t = {0};
        text_add(&t, "seq,at,order_id,attempt,kind,supplier,client,sku,quantity,amount,"
                     "amount_fen,command\r\n");
        for (size_t i = 0; i < shown; i++) {
            const ph_ledger_entry *e = &list[i];
            text_add(&t, "%llu,%s,%llu,%u,%s,%s,%s,%s,%u,%s,%lld,%s\r\n",
                     (unsigned long long)e->seq, ph_time_format(e->at, at, sizeof at),
                     (unsigned long long)e->order_id, e->attempt, ph_ledger_kind_name(e->kind),
                     e->supplier, e->client, e->sku, e->quantity,
                     ph_money_format(e->amount, amt, sizeof amt), (long long)e->amount,
                     e->command ? ph_cmd_type_name(e->command) : "migration");
        }
        free(list);
        return text_reply(r, &t);
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < shown; i++) {
        const ph_ledger_entry *e = &list[i];
        json_array_append_new(
            arr, json_pack("{s:I,s:s,s:I,s:I,s:s,s:s,s:s,s:s,s:I,s:o,s:I,s:s}", "seq",
                           (json_int_t)e->seq, "at", ph_time_format(e->at, at, sizeof at),
                           "order_id", (json_int_t)e->order_id, "attempt", (json_int_t)e->attempt,
                           "kind", ph_ledger_kind_name(e->kind), "supplier", e->supplier, "client",
                           e->client, "sku", e->sku, "quantity", (json_int_t)e->quantity, "amount",
                           money_json(e->amount), "amount_fen", (json_int_t)e->amount, "command",
                           e->command ? ph_cmd_type_name(e->command) : "migration"));
    }
    json_t *next = n > limit ? json_integer((json_int_t)list[shown - 1].seq) : json_null();
    free(list);
    return ph_req_json(r, 200, json_pack("{s:o,s:o}", "entries", arr, "next_after", next));
}

static const char *const by_names[] = {NULL, "day", "supplier", "client", "sku"};

static void offset_text(int min, char buf[8])
{
    int a = min < 0 ? -min : min;
    snprintf(buf, 8, "%c%02d:%02d", min < 0 ? '-' : '+', a / 60 % 100, a % 60);
}

static const char *row_key(const ph_report_row *x, int by)
{
    return by == PH_REPORT_BY_DAY        ? x->day
           : by == PH_REPORT_BY_SUPPLIER ? x->supplier
           : by == PH_REPORT_BY_CLIENT   ? x->client
                                         : x->sku;
}

static json_t *row_json(const char *key, const char *val, const ph_report_row *x)
{
    json_t *j = json_pack("{s:o,s:I,s:o,s:I,s:o,s:I,s:{s:I,s:I,s:I,s:I}}", "revenue",
                          money_json(x->revenue), "revenue_fen", (json_int_t)x->revenue, "cost",
                          money_json(x->cost), "cost_fen", (json_int_t)x->cost, "margin",
                          money_json(x->revenue - x->cost), "margin_fen",
                          (json_int_t)(x->revenue - x->cost), "orders", "succeeded",
                          (json_int_t)x->succeeded, "failed", (json_int_t)x->failed, "unknown",
                          (json_int_t)x->unknown, "unpriced", (json_int_t)x->unpriced);
    if (j && key)
        json_object_set_new(j, key, json_string(val));
    return j;
}

int ph_api_reports(ph_req *r)
{
    const char *from = ph_req_query(r, "from"), *to = ph_req_query(r, "to"),
               *by = ph_req_query(r, "by");
    int csv = want_csv(r), b = 0;
    if (csv < 0)
        return PH_REQ_DONE;
    int32_t d0 = from ? ph_report_day_parse(from) : -1, d1 = to ? ph_report_day_parse(to) : -1;
    if (d0 < 0)
        return ph_req_error(r, 400, "invalid_request", "from: expected a day (YYYY-MM-DD)");
    if (d1 < 0)
        return ph_req_error(r, 400, "invalid_request", "to: expected a day (YYYY-MM-DD)");
    if (d0 > d1)
        return ph_req_error(r, 400, "invalid_request", "from: after to");
    for (int i = 1; i <= PH_REPORT_BY_SKU; i++)
        if (by && !strcmp(by, by_names[i]))
            b = i;
    if (!by)
        b = PH_REPORT_BY_DAY;
    if (!b)
        return ph_req_error(r, 400, "invalid_request", "by: expected supplier, client, sku or day");
    ph_report_row *rows;
    size_t n;
    ph_err err = {0};
    int rc = ph_store_report(r->env->store, d0, d1, b, &rows, &n, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    ph_report_row total = {0};
    for (size_t i = 0; i < n; i++) {
        total.revenue += rows[i].revenue;
        total.cost += rows[i].cost;
        total.succeeded += rows[i].succeeded;
        total.failed += rows[i].failed;
        total.unknown += rows[i].unknown;
        total.unpriced += rows[i].unpriced;
    }
    char off[8], amt[3][32];
    offset_text(ph_store_report_offset(r->env->store), off);
    if (csv) {
        text t = {0};
        text_add(&t,
                 "%s,revenue,cost,margin,revenue_fen,cost_fen,margin_fen,succeeded,failed,"
                 "unknown,unpriced\r\n",
                 by_names[b]);
        for (size_t i = 0; i < n; i++) {
            const ph_report_row *x = &rows[i];
            text_add(&t, "%s,%s,%s,%s,%lld,%lld,%lld,%llu,%llu,%llu,%llu\r\n", row_key(x, b),
                     ph_money_format(x->revenue, amt[0], sizeof amt[0]),
                     ph_money_format(x->cost, amt[1], sizeof amt[1]),
                     ph_money_format(x->revenue - x->cost, amt[2], sizeof amt[2]),
                     (long long)x->revenue, (long long)x->cost, (long long)(x->revenue - x->cost),
                     (unsigned long long)x->succeeded, (unsigned long long)x->failed,
                     (unsigned long long)x->unknown, (unsigned long long)x->unpriced);
        }
        free(rows);
        return text_reply(r, &t);
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, row_json(by_names[b], row_key(&rows[i], b), &rows[i]));
    free(rows);
    return ph_req_json(r, 200,
                       json_pack("{s:s,s:s,s:s,s:s,s:o,s:o}", "from", from, "to", to, "by",
                                 by_names[b], "utc_offset", off, "rows", arr, "totals",
                                 row_json(NULL, NULL, &total)));
}
