/*
 * api_analytics.c — GET /v1/analytics/top, /claims, /co and /hours (docs/api.md,
 * "Analytics"): read-only views of the aggregates the store writes with every
 * order and grant change (store_agg.c). Days are UTC days. Ops see every
 * client's figures; a client's token (fulfill) sees its own only, and not
 * co-redemption (its holders' claims span clients).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "http/api.h"

#define DAY_MS        86400000LL
#define DEFAULT_DAYS  30 /* from defaults to this many days up to `to` */
#define DEFAULT_TOP_N 10

static void day_text(int32_t day, char out[11])
{
    char buf[40];
    ph_time_format((int64_t)day * DAY_MS, buf, sizeof buf);
    snprintf(out, 11, "%.10s", buf);
}

/* from and to (days, UTC; to defaults to today, from to DEFAULT_DAYS days up
 * to to). -1 (answered) when one is not a day. */
static int day_range(ph_req *r, int32_t *from, int32_t *to)
{
    const char *f = ph_req_query(r, "from"), *t = ph_req_query(r, "to");
    *to = t ? ph_report_day_parse(t) : (int32_t)(ph_now_ms() / DAY_MS);
    if (*to < 0)
        return ph_req_error(r, 400, "invalid_request", "to: expected a day (YYYY-MM-DD)"), -1;
    *from = f ? ph_report_day_parse(f) : *to - (DEFAULT_DAYS - 1);
    if (*from < 0)
        return ph_req_error(r, 400, "invalid_request", "from: expected a day (YYYY-MM-DD)"), -1;
    return 0;
}

/* The client whose figures the caller may read: NULL (all) for ops. */
static const char *scope_client(ph_req *r)
{
    return ph_req_has_scope(r, PH_SCOPE_OPS) ? NULL : r->client->name;
}

/* A small whole-number parameter: def when absent; -1 (answered) when bad. */
static long small_param(ph_req *r, const char *name, long def, long lo, long hi)
{
    const char *s = ph_req_query(r, name);
    if (!s)
        return def;
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || s[0] == '+' || s[0] == '-' || v < lo || v > hi) {
        ph_req_error(r, 400, "invalid_request", "%s: expected a whole number %ld-%ld", name, lo,
                     hi);
        return -1;
    }
    return v;
}

static json_t *range_json(int32_t from, int32_t to, const char *client)
{
    char f[11], t[11];
    day_text(from, f);
    day_text(to, t);
    json_t *j = json_pack("{s:s,s:s}", "from", f, "to", t);
    if (j && client)
        json_object_set_new(j, "client", json_string(client));
    return j;
}

int ph_api_analytics_top(ph_req *r)
{
    const char *by = ph_req_query(r, "by"), *period = ph_req_query(r, "period");
    int b = !by || !strcmp(by, "orders") ? PH_AGG_BY_ORDERS
            : !strcmp(by, "value")       ? PH_AGG_BY_VALUE
                                         : 0;
    int pd = !period || !strcmp(period, "day") ? 1 : !strcmp(period, "week") ? 7 : 0;
    if (!b)
        return ph_req_error(r, 400, "invalid_request", "by: expected orders or value");
    if (!pd)
        return ph_req_error(r, 400, "invalid_request", "period: expected day or week");
    long n = small_param(r, "n", DEFAULT_TOP_N, 1, 100);
    int32_t from, to;
    if (n < 0 || day_range(r, &from, &to))
        return PH_REQ_DONE;
    const char *client = scope_client(r);
    ph_agg_top_row *rows;
    size_t nrows;
    ph_err err = {0};
    int rc =
        ph_store_agg_top(r->env->store, from, to, pd, b, (size_t)n, client, &rows, &nrows, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *periods = json_array(), *top = NULL;
    int32_t cur = INT32_MIN;
    int rank = 0;
    for (size_t i = 0; i < nrows; i++) {
        const ph_agg_top_row *x = &rows[i];
        if (x->period != cur) {
            char d[11];
            cur = x->period;
            day_text(cur, d);
            top = json_array();
            rank = 0;
            json_array_append_new(periods, json_pack("{s:s,s:o}", "period", d, "top", top));
        }
        char money[32];
        json_array_append_new(
            top, json_pack("{s:i,s:s,s:I,s:I,s:s,s:I,s:I}", "rank", ++rank, "sku", x->sku, "orders",
                           (json_int_t)x->orders, "units", (json_int_t)x->units, "value",
                           ph_money_format(x->value, money, sizeof money), "value_fen",
                           (json_int_t)x->value, "unpriced", (json_int_t)x->unpriced));
    }
    free(rows);
    json_t *j = range_json(from, to, client);
    json_object_set_new(j, "by", json_string(b == PH_AGG_BY_VALUE ? "value" : "orders"));
    json_object_set_new(j, "period", json_string(pd == 7 ? "week" : "day"));
    json_object_set_new(j, "n", json_integer(n));
    json_object_set_new(j, "periods", periods);
    return ph_req_json(r, 200, j);
}

int ph_api_analytics_hours(ph_req *r)
{
    int32_t from, to;
    if (day_range(r, &from, &to))
        return PH_REQ_DONE;
    const char *client = scope_client(r);
    uint64_t h[24], total = 0;
    ph_err err = {0};
    int rc = ph_store_agg_hours(r->env->store, from, to, client, h, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *arr = json_array();
    for (int i = 0; i < 24; i++) {
        total += h[i];
        json_array_append_new(arr, json_pack("{s:i,s:I}", "hour", i, "orders", (json_int_t)h[i]));
    }
    json_t *j = range_json(from, to, client);
    json_object_set_new(j, "hours", arr);
    json_object_set_new(j, "total", json_integer((json_int_t)total));
    return ph_req_json(r, 200, j);
}

/* claimed / granted, rounded to 4 places; null without grants. */
static json_t *rate_json(uint64_t part, uint64_t whole)
{
    return whole ? json_real((double)(part * 10000 / whole) / 10000.0) : json_null();
}

int ph_api_analytics_claims(ph_req *r)
{
    static const char *const names[] = {"", "client", "tag", "sku"};
    const char *by = ph_req_query(r, "by");
    int b = 0;
    for (int i = PH_AGG_BY_CLIENT; i <= PH_AGG_BY_SKU; i++)
        if (!by || !strcmp(by, names[i])) {
            b = i;
            break;
        }
    if (!b)
        return ph_req_error(r, 400, "invalid_request", "by: expected client, tag or sku");
    int32_t from, to;
    if (day_range(r, &from, &to))
        return PH_REQ_DONE;
    const char *client = scope_client(r);
    if (client && b == PH_AGG_BY_SKU)
        return ph_req_error(r, 403, "forbidden", "by: sku is for ops (it counts every client)");
    ph_agg_claim_row *rows;
    size_t n;
    ph_err err = {0};
    int rc = ph_store_agg_claims(r->env->store, from, to, b, client, &rows, &n, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *arr = json_array();
    ph_agg_claim_row tot = {.name = ""};
    for (size_t i = 0; i < n; i++) {
        const ph_agg_claim_row *x = &rows[i];
        tot.granted += x->granted, tot.claimed += x->claimed, tot.expired += x->expired,
            tot.gifted += x->gifted;
        json_array_append_new(
            arr, json_pack("{s:s,s:I,s:I,s:I,s:I,s:o,s:o}", names[b], x->name, "granted",
                           (json_int_t)x->granted, "claimed", (json_int_t)x->claimed, "expired",
                           (json_int_t)x->expired, "gifted", (json_int_t)x->gifted, "claim_rate",
                           rate_json(x->claimed, x->granted), "settled_claim_rate",
                           rate_json(x->claimed, x->claimed + x->expired)));
    }
    free(rows);
    json_t *j = range_json(from, to, client);
    json_object_set_new(j, "by", json_string(names[b]));
    json_object_set_new(j, "rows", arr);
    if (b == PH_AGG_BY_CLIENT || b == PH_AGG_BY_SKU) /* a grant has many tags: no total */
        json_object_set_new(j, "totals",
                            json_pack("{s:I,s:I,s:I,s:I,s:o}", "granted", (json_int_t)tot.granted,
                                      "claimed", (json_int_t)tot.claimed, "expired",
                                      (json_int_t)tot.expired, "gifted", (json_int_t)tot.gifted,
                                      "claim_rate", rate_json(tot.claimed, tot.granted)));
    return ph_req_json(r, 200, j);
}

int ph_api_analytics_co(ph_req *r)
{
    const char *a = ph_req_query(r, "a"), *b = ph_req_query(r, "b");
    if (!a || !*a)
        return ph_req_error(r, 400, "invalid_request", "a: expected a sku");
    if (!b || !*b)
        return ph_req_error(r, 400, "invalid_request", "b: expected a sku");
    long within = small_param(r, "within_d", PH_AGG_CO_DAYS, 0, PH_AGG_CO_DAYS);
    int32_t from, to;
    if (within < 0 || day_range(r, &from, &to))
        return PH_REQ_DONE;
    ph_agg_co co;
    ph_err err = {0};
    int rc = ph_store_agg_co(r->env->store, from, to, a, b, (int)within, &co, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *j = range_json(from, to, NULL);
    json_object_set_new(j, "a", json_string(a));
    json_object_set_new(j, "b", json_string(b));
    json_object_set_new(j, "within_d", json_integer(within));
    json_object_set_new(j, "claims_a", json_integer((json_int_t)co.claims_a));
    json_object_set_new(j, "claims_b", json_integer((json_int_t)co.claims_b));
    json_object_set_new(j, "a_then_b", json_integer((json_int_t)co.a_then_b));
    json_object_set_new(j, "b_then_a", json_integer((json_int_t)co.b_then_a));
    return ph_req_json(r, 200, j);
}
