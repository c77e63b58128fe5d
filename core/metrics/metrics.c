/*
 * metrics.c — the registry's observations (relaxed atomics, no lock) and the
 * Prometheus text exposition writer (format 0.0.4).
 */
#include "metrics/metrics.h"

#include <assert.h>
#include <math.h> /* isinf, isnan: macros */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

/* Latencies in microseconds: 1 ms .. 10 s, roughly 1-2.5-5 per decade. */
static const int64_t latency_us[] = {500,    1000,   2500,   5000,    10000,   25000,   50000,
                                     100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
/* Commands per group commit: 1 .. the writer's default limit (4096). */
static const int64_t batch_cmds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};

static void hist_init(ph_hist *h, const int64_t *bounds, unsigned n)
{
    assert(n <= PH_HIST_MAX_BUCKETS);
    h->bounds = bounds;
    h->nbounds = n;
}

#define NB(a) ((unsigned)(sizeof(a) / sizeof((a)[0])))

ph_metrics *ph_metrics_create(void)
{
    ph_metrics *m = calloc(1, sizeof *m); /* all-zero bytes are zero atomics */
    if (!m)
        return NULL;
    for (unsigned i = 0; i < PH_METRICS_ROUTES; i++)
        for (unsigned c = 0; c < PH_MX_STATUS_CLASSES; c++)
            hist_init(&m->http[i][c], latency_us, NB(latency_us));
    hist_init(&m->batch_size, batch_cmds, NB(batch_cmds));
    hist_init(&m->batch_seconds, latency_us, NB(latency_us));
    for (unsigned i = 0; i <= PH_METRICS_SLOTS; i++)
        hist_init(&m->sup_seconds[i], latency_us, NB(latency_us));
    return m;
}

void ph_metrics_free(ph_metrics *m)
{
    free(m);
}

void ph_hist_observe(ph_hist *h, int64_t v)
{
    if (v < 0)
        v = 0;
    unsigned i = 0;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, (uint_fast64_t)v, memory_order_relaxed);
}

unsigned ph_metrics_slot(ph_mslot *slots, const char *name)
{
    /* start at the name's hash so a lookup usually meets its slot first */
    uint32_t hash = 2166136261u;
    for (const char *p = name; *p; p++)
        hash = (hash ^ (uint8_t)*p) * 16777619u;
    for (unsigned k = 0; k < PH_METRICS_SLOTS; k++) {
        unsigned i = (hash + k) % PH_METRICS_SLOTS;
        int st = atomic_load_explicit(&slots[i].state, memory_order_acquire);
        if (st == 0) {
            int zero = 0;
            if (atomic_compare_exchange_strong_explicit(
                    &slots[i].state, &zero, 1, memory_order_acquire, memory_order_acquire)) {
                snprintf(slots[i].name, sizeof slots[i].name, "%s", name);
                atomic_store_explicit(&slots[i].state, 2, memory_order_release);
                return i;
            }
            st = zero;
        }
        /* another thread is writing this slot's name: a few stores away */
        while (st == 1)
            st = atomic_load_explicit(&slots[i].state, memory_order_acquire);
        if (strncmp(slots[i].name, name, PH_METRICS_NAME_MAX) == 0)
            return i;
    }
    return PH_METRICS_SLOTS;
}

static unsigned status_class(unsigned status)
{
    unsigned c = status / 100;
    return c >= 1 && c <= 5 ? c - 1 : 4; /* a status outside 1xx..5xx is the server's fault */
}

void ph_metrics_http_observe(ph_metrics *m, unsigned route, unsigned status, int64_t us)
{
    if (!m || status < 100) /* no answer was set: the client went away first */
        return;
    if (route >= PH_METRICS_ROUTES)
        route = PH_METRICS_ROUTES - 1;
    ph_hist_observe(&m->http[route][status_class(status)], us);
}

void ph_metrics_supplier_observe(ph_metrics *m, const char *supplier, int64_t us)
{
    if (!m)
        return;
    ph_hist_observe(&m->sup_seconds[ph_metrics_slot(m->sup_slot, supplier)], us);
}

void ph_metrics_auth(ph_metrics *m, int failed, int action)
{
    if (!m)
        return;
    if (failed)
        atomic_fetch_add_explicit(&m->auth_failures, 1, memory_order_relaxed);
    if (action >= 0 && action < PH_MX_AUTH_COUNT)
        atomic_fetch_add_explicit(&m->auth_throttled[action], 1, memory_order_relaxed);
}

static void order_count(ph_metrics *m, const char *client, int src, int outcome)
{
    unsigned c = ph_metrics_slot(m->client_slot, client);
    atomic_fetch_add_explicit(&m->orders[c][src][outcome], 1, memory_order_relaxed);
}

/* What a committed command decided about an order, counted once: a stock
 * order when it is stored; a supplier order failed at creation (no offer),
 * or made final by the attempt result that ends it. Replays count nothing
 * (they decide nothing), nor do refused commands: a stock order refused for
 * want of stock may go on to a supplier (api_orders.c), so a refusal is not
 * an outcome here (the HTTP histogram counts the 4xx answers). */
static void order_observe(ph_metrics *m, const ph_cmd *c)
{
    if (c->rc != PH_OK)
        return;
    if (c->type == PH_CMD_ORDER) {
        if (!c->replayed && c->order)
            order_count(m, c->order->client, PH_MX_SRC_STOCK,
                        c->order->state == PH_ORDER_SUCCEEDED ? PH_MX_OUT_SUCCEEDED
                                                              : PH_MX_OUT_FAILED);
        return;
    }
    if (c->type == PH_CMD_SUPPLY_CREATE) {
        if (!c->replayed && c->order && c->order->state == PH_ORDER_FAILED)
            order_count(m, c->order->client, PH_MX_SRC_SUPPLIER, PH_MX_OUT_FAILED);
        return;
    }
    if (c->type == PH_CMD_SETTLE && c->order) { /* a stuck order settled by hand ends it */
        order_count(m, c->order->client, PH_MX_SRC_SUPPLIER,
                    c->order->state == PH_ORDER_SUCCEEDED ? PH_MX_OUT_SUCCEEDED : PH_MX_OUT_FAILED);
        return;
    }
    if (c->type != PH_CMD_ATTEMPT || !c->order)
        return;
    /* an attempt's state only moves forward, so the result that makes it
     * succeeded, or failed with no next attempt, is the order's last word */
    if (c->in.attempt.state == PH_ATTEMPT_SUCCEEDED && c->order->state == PH_ORDER_SUCCEEDED)
        order_count(m, c->order->client, PH_MX_SRC_SUPPLIER, PH_MX_OUT_SUCCEEDED);
    else if (c->in.attempt.state == PH_ATTEMPT_FAILED && !c->in.attempt.next.supplier &&
             c->order->state == PH_ORDER_FAILED)
        order_count(m, c->order->client, PH_MX_SRC_SUPPLIER, PH_MX_OUT_FAILED);
}

void ph_metrics_batch_observe(ph_metrics *m, const ph_cmd *batch, int64_t us)
{
    if (!m)
        return;
    int64_t n = 0;
    for (const ph_cmd *c = batch; c; c = c->next) {
        n++;
        order_observe(m, c);
    }
    ph_hist_observe(&m->batch_size, n);
    ph_hist_observe(&m->batch_seconds, us);
}

/* ---- the exposition writer ------------------------------------------------ */

static void mx_put(ph_mx *mx, const char *s, size_t n)
{
    if (mx->oom)
        return;
    if (mx->len + n + 1 > mx->cap) {
        size_t cap = mx->cap ? mx->cap : 4096;
        while (cap < mx->len + n + 1)
            cap *= 2;
        char *b = realloc(mx->buf, cap);
        if (!b) {
            mx->oom = 1;
            return;
        }
        mx->buf = b;
        mx->cap = cap;
    }
    memcpy(mx->buf + mx->len, s, n);
    mx->len += n;
    mx->buf[mx->len] = 0;
}

static void mx_str(ph_mx *mx, const char *s)
{
    mx_put(mx, s, strlen(s));
}

/* Label values escape backslash, double quote and line feed; HELP text only
 * backslash and line feed (the format's two rules). */
static void mx_escaped(ph_mx *mx, const char *v, int quote)
{
    for (const char *p = v; *p; p++) {
        if (*p == '\\')
            mx_put(mx, "\\\\", 2);
        else if (*p == '\n')
            mx_put(mx, "\\n", 2);
        else if (*p == '"' && quote)
            mx_put(mx, "\\\"", 2);
        else
            mx_put(mx, p, 1);
    }
}

void ph_mx_escape(ph_mx *mx, const char *value)
{
    mx_escaped(mx, value, 1);
}

void ph_mx_family(ph_mx *mx, const char *name, const char *type, const char *help)
{
    mx_str(mx, "# HELP ");
    mx_str(mx, name);
    mx_str(mx, " ");
    mx_escaped(mx, help, 0);
    mx_str(mx, "\n# TYPE ");
    mx_str(mx, name);
    mx_str(mx, " ");
    mx_str(mx, type);
    mx_str(mx, "\n");
}

static void mx_num(ph_mx *mx, double v)
{
    char b[40];
    if (isinf(v))
        snprintf(b, sizeof b, v > 0 ? "+Inf" : "-Inf");
    else if (isnan(v))
        snprintf(b, sizeof b, "NaN");
    else if (v > -9.0e15 && v < 9.0e15 && v == (double)(int64_t)v)
        snprintf(b, sizeof b, "%.0f", v);
    else
        snprintf(b, sizeof b, "%.15g", v);
    mx_str(mx, b);
}

static void mx_labels(ph_mx *mx, const ph_label *labels, size_t n, const char *le)
{
    if (!n && !le)
        return;
    mx_str(mx, "{");
    for (size_t i = 0; i < n; i++) {
        if (i)
            mx_str(mx, ",");
        mx_str(mx, labels[i].name);
        mx_str(mx, "=\"");
        ph_mx_escape(mx, labels[i].value);
        mx_str(mx, "\"");
    }
    if (le) {
        mx_str(mx, n ? ",le=\"" : "le=\"");
        mx_str(mx, le);
        mx_str(mx, "\"");
    }
    mx_str(mx, "}");
}

void ph_mx_sample(ph_mx *mx, const char *name, const ph_label *labels, size_t nlabels, double value)
{
    mx_str(mx, name);
    mx_labels(mx, labels, nlabels, NULL);
    mx_str(mx, " ");
    mx_num(mx, value);
    mx_str(mx, "\n");
}

static void mx_suffixed(ph_mx *mx, const char *name, const char *suffix)
{
    mx_str(mx, name);
    mx_str(mx, suffix);
}

void ph_mx_hist(ph_mx *mx, const char *name, const ph_label *labels, size_t nlabels,
                const ph_hist *h, double scale, int skip_empty)
{
    uint64_t b[PH_HIST_MAX_BUCKETS + 1];
    uint64_t total = 0;
    for (unsigned i = 0; i <= h->nbounds; i++) {
        b[i] = atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        total += b[i];
    }
    if (!total && skip_empty)
        return;
    uint64_t cum = 0;
    char le[40];
    for (unsigned i = 0; i <= h->nbounds; i++) {
        cum += b[i];
        if (i < h->nbounds)
            snprintf(le, sizeof le, "%.6g", (double)h->bounds[i] * scale);
        else
            snprintf(le, sizeof le, "+Inf");
        mx_suffixed(mx, name, "_bucket");
        mx_labels(mx, labels, nlabels, le);
        mx_str(mx, " ");
        mx_num(mx, (double)cum);
        mx_str(mx, "\n");
    }
    mx_suffixed(mx, name, "_sum");
    mx_labels(mx, labels, nlabels, NULL);
    mx_str(mx, " ");
    mx_num(mx, (double)atomic_load_explicit(&h->sum, memory_order_relaxed) * scale);
    mx_str(mx, "\n");
    mx_suffixed(mx, name, "_count");
    mx_labels(mx, labels, nlabels, NULL);
    mx_str(mx, " ");
    mx_num(mx, (double)cum);
    mx_str(mx, "\n");
}

void ph_mx_free(ph_mx *mx)
{
    free(mx->buf);
    mx->buf = NULL;
    mx->len = mx->cap = 0;
}
