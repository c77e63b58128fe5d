/*
 * test_metrics.c — the metrics registry and the exposition writer
 * (core/metrics/metrics.h): the text format's rules (HELP and TYPE, label
 * escaping, cumulative histogram buckets ending in +Inf, _count and _sum),
 * checked by parsing the output back with tests/prom_parse.h; the name slots;
 * what a committed batch counts as order outcomes.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../prom_parse.h"
#include "config/config.h"
#include "metrics/metrics.h"
#include "store/store.h"

static void parse_ok(prom_doc *d, const ph_mx *mx)
{
    cr_assert(!mx->oom);
    cr_assert(mx->buf);
    int rc = prom_parse(d, mx->buf);
    cr_assert_eq(rc, 0, "%s\n---\n%s", d->err, mx->buf);
}

Test(metrics, label_values_and_help_are_escaped)
{
    ph_mx mx = {0};
    ph_mx_family(&mx, "perkhub_x_total", "counter", "a help with \\ and\na line feed");
    ph_label l[] = {{"client", "a\\b\"c\nd"}, {"source", "stock"}};
    ph_mx_sample(&mx, "perkhub_x_total", l, 2, 3);
    cr_assert(strstr(mx.buf, "# HELP perkhub_x_total a help with \\\\ and\\na line feed\n"), "%s",
              mx.buf);
    cr_assert(strstr(mx.buf, "perkhub_x_total{client=\"a\\\\b\\\"c\\nd\",source=\"stock\"} 3\n"),
              "%s", mx.buf);
    prom_doc d;
    parse_ok(&d, &mx);
    /* the parser gives the value back unescaped */
    cr_assert_eq(prom_get(&d, "perkhub_x_total", "client=a\\b\"c\nd,source=stock", NULL), 3);
    prom_free(&d);
    ph_mx_free(&mx);
}

Test(metrics, histogram_buckets_are_cumulative_with_inf_sum_and_count)
{
    static const int64_t bounds[] = {10, 100, 1000};
    ph_hist h = {.bounds = bounds, .nbounds = 3};
    int64_t obs[] = {5, 10, 11, 100, 999, 5000, -3};
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++)
        ph_hist_observe(&h, obs[i]);
    ph_mx mx = {0};
    ph_mx_family(&mx, "perkhub_t_seconds", "histogram", "test");
    ph_mx_hist(&mx, "perkhub_t_seconds", (ph_label[]){{"route", "/v1/x"}}, 1, &h, 1e-3, 0);
    prom_doc d;
    parse_ok(&d, &mx);
    /* le is inclusive: 10 counts in le=0.01 (5, 10 and -3 as 0) */
    cr_assert_eq(prom_get(&d, "perkhub_t_seconds_bucket", "route=/v1/x", "0.01"), 3, "%s", mx.buf);
    cr_assert_eq(prom_get(&d, "perkhub_t_seconds_bucket", "route=/v1/x", "0.1"), 5);
    cr_assert_eq(prom_get(&d, "perkhub_t_seconds_bucket", "route=/v1/x", "1"), 6);
    cr_assert_eq(prom_get(&d, "perkhub_t_seconds_bucket", "route=/v1/x", "+Inf"), 7);
    cr_assert_eq(prom_get(&d, "perkhub_t_seconds_count", "route=/v1/x", NULL), 7);
    double sum = prom_get(&d, "perkhub_t_seconds_sum", "route=/v1/x", NULL);
    cr_assert(fabs(sum - 6.125) < 1e-9, "sum %g", sum);
    prom_free(&d);
    ph_mx_free(&mx);
}

Test(metrics, an_empty_histogram_is_skipped_only_when_asked)
{
    static const int64_t bounds[] = {1};
    ph_hist h = {.bounds = bounds, .nbounds = 1};
    ph_mx mx = {0};
    ph_mx_family(&mx, "perkhub_e", "histogram", "empty");
    ph_mx_hist(&mx, "perkhub_e", NULL, 0, &h, 1, 1);
    cr_assert_eq(mx.len, strlen("# HELP perkhub_e empty\n# TYPE perkhub_e histogram\n"));
    ph_mx_hist(&mx, "perkhub_e", NULL, 0, &h, 1, 0);
    prom_doc d;
    parse_ok(&d, &mx);
    cr_assert_eq(prom_get(&d, "perkhub_e_count", NULL, NULL), 0);
    cr_assert_eq(prom_get(&d, "perkhub_e_bucket", NULL, "+Inf"), 0);
    prom_free(&d);
    ph_mx_free(&mx);
}

/* The parser itself refuses what the format forbids: the test above would
 * prove nothing with a parser that accepts anything. */
Test(metrics, the_test_parser_refuses_broken_text)
{
    static const char *const bad[] = {
        "perkhub_a 1\n",                                               /* no TYPE */
        "# HELP perkhub_a x\n# TYPE perkhub_a counter\nperkhub_a 1\n", /* counter without _total */
        "# HELP a x\n# TYPE a gauge\na{l=\"x\\t\"} 1\n",               /* bad escape */
        "# HELP a x\n# TYPE a gauge\na{l=\"x} 1\n",                    /* unterminated */
        "# HELP a x\n# TYPE a gauge\na one\n",                         /* value */
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
        "h_sum 1\nh_count 1\n", /* not cumulative */
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", /* no +Inf */
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n", /* count */
        "# HELP a x\n# TYPE a gauge\na 1\n# HELP a x\n# TYPE a gauge\na 2\n",            /* twice */
        "# HELP a x\n# TYPE a gauge\na 1", /* no final LF */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        prom_doc d;
        cr_assert_neq(prom_parse(&d, bad[i]), 0, "accepted case %zu: %s", i, bad[i]);
        prom_free(&d);
    }
}

Test(metrics, slots_keep_one_per_name_and_overflow_to_other)
{
    ph_metrics *m = ph_metrics_create();
    cr_assert(m);
    unsigned a = ph_metrics_slot(m->sup_slot, "acme");
    cr_assert_lt(a, PH_METRICS_SLOTS);
    cr_assert_eq(ph_metrics_slot(m->sup_slot, "acme"), a);
    cr_assert_str_eq(m->sup_slot[a].name, "acme");
    unsigned seen_other = 0;
    for (int i = 0; i < PH_METRICS_SLOTS + 5; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", i);
        seen_other += ph_metrics_slot(m->sup_slot, name) == PH_METRICS_SLOTS;
    }
    cr_assert_eq(seen_other, 6, "64 slots: acme and 63 others, the rest in _other");
    cr_assert_eq(ph_metrics_slot(m->sup_slot, "acme"), a);
    ph_metrics_free(m);
}

/* Orders count once, when the command that makes them final commits: a stock
 * order stored, a supplier order failed at creation or by its last attempt;
 * not a replay, a refusal, a failover or a step that leaves the order open. */
Test(metrics, batch_counts_order_outcomes_once)
{
    ph_metrics *m = ph_metrics_create();
    cr_assert(m);
    ph_order ok = {.state = PH_ORDER_SUCCEEDED}, failed = {.state = PH_ORDER_FAILED},
             open = {.state = PH_ORDER_PROCESSING};
    snprintf(ok.client, sizeof ok.client, "mall");
    snprintf(failed.client, sizeof failed.client, "mall");
    snprintf(open.client, sizeof open.client, "mall");
    ph_cmd c[8];
    memset(c, 0, sizeof c);
    c[0] = (ph_cmd){.type = PH_CMD_ORDER, .order = &ok};                /* stock succeeded */
    c[1] = (ph_cmd){.type = PH_CMD_ORDER, .order = &ok, .replayed = 1}; /* replay */
    c[2] = (ph_cmd){.type = PH_CMD_ORDER, .rc = PH_ENOSTOCK};           /* refused */
    c[3] = (ph_cmd){.type = PH_CMD_SUPPLY_CREATE, .order = &open};      /* accepted, open */
    c[4] = (ph_cmd){.type = PH_CMD_SUPPLY_CREATE, .order = &failed};    /* no offer */
    c[5] = (ph_cmd){.type = PH_CMD_ATTEMPT, .order = &ok};
    c[5].in.attempt.state = PH_ATTEMPT_SUCCEEDED;
    c[6] = (ph_cmd){.type = PH_CMD_ATTEMPT, .order = &open}; /* failover to the next */
    c[6].in.attempt.state = PH_ATTEMPT_FAILED;
    c[6].in.attempt.next.supplier = "sbx2";
    c[7] = (ph_cmd){.type = PH_CMD_ATTEMPT, .order = &failed};
    c[7].in.attempt.state = PH_ATTEMPT_FAILED;
    for (int i = 0; i < 7; i++)
        c[i].next = &c[i + 1];
    ph_metrics_batch_observe(m, c, 1234);

    unsigned s = ph_metrics_slot(m->client_slot, "mall");
    cr_assert_eq(m->orders[s][PH_MX_SRC_STOCK][PH_MX_OUT_SUCCEEDED], 1);
    cr_assert_eq(m->orders[s][PH_MX_SRC_STOCK][PH_MX_OUT_FAILED], 0);
    cr_assert_eq(m->orders[s][PH_MX_SRC_SUPPLIER][PH_MX_OUT_SUCCEEDED], 1);
    cr_assert_eq(m->orders[s][PH_MX_SRC_SUPPLIER][PH_MX_OUT_FAILED], 2);
    /* the batch: 8 commands in the le=8 bucket, its duration in microseconds */
    cr_assert_eq(m->batch_size.bucket[3], 1);
    cr_assert_eq(m->batch_size.sum, 8);
    cr_assert_eq(m->batch_seconds.sum, 1234);
    ph_metrics_free(m);
}

Test(metrics, http_observations_go_by_route_and_status_class)
{
    ph_metrics *m = ph_metrics_create();
    cr_assert(m);
    ph_metrics_http_observe(m, 3, 201, 100);
    ph_metrics_http_observe(m, 3, 404, 100);
    ph_metrics_http_observe(m, 3, 999, 100); /* not a status: counted as 5xx */
    ph_metrics_http_observe(m, 1000, 200, 100);
    ph_metrics_http_observe(NULL, 3, 200, 100); /* no registry: a no-op */
    ph_metrics_http_observe(m, 3, 0, 100);      /* never answered: not counted */
    cr_assert_eq(m->http[3][1].sum, 100);
    cr_assert_eq(m->http[3][3].sum, 100);
    cr_assert_eq(m->http[3][4].sum, 100); /* the 999 alone */
    cr_assert_eq(m->http[PH_METRICS_ROUTES - 1][1].sum, 100);
    ph_metrics_free(m);
}

/* config metrics.access: loopback by default; ops and public; anything else is
 * refused naming the key and the choices. */
Test(metrics, config_access_key)
{
    static const char head[] = "data_dir: d\nmaster_key_file: k\n";
    struct {
        const char *extra;
        int rc, access;
    } cases[] = {
        {"", PH_OK, PH_METRICS_LOOPBACK},
        {"metrics:\n  access: loopback\n", PH_OK, PH_METRICS_LOOPBACK},
        {"metrics:\n  access: ops\n", PH_OK, PH_METRICS_OPS},
        {"metrics:\n  access: public\n", PH_OK, PH_METRICS_PUBLIC},
        {"metrics:\n  access: everyone\n", PH_EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char yaml[256];
        int n = snprintf(yaml, sizeof yaml, "%s%s", head, cases[i].extra);
        ph_config *cfg = NULL;
        ph_err err = {0};
        int rc = ph_config_load_string(yaml, (size_t)n, "t.yaml", &cfg, &err);
        cr_assert_eq(rc, cases[i].rc, "case %zu: %s", i, err.msg);
        if (rc == PH_OK) {
            cr_assert_eq(cfg->metrics_access, cases[i].access, "case %zu", i);
            ph_config_free(cfg);
        } else {
            cr_assert(strstr(err.msg, "t.yaml:4:11"), "%s", err.msg);
            cr_assert(strstr(err.msg, "access"), "%s", err.msg);
            cr_assert(strstr(err.msg, "loopback"), "%s", err.msg);
        }
    }
}
