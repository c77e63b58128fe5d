/*
 * metrics.h — the metrics registry (counters, fixed-bucket histograms) and the
 * Prometheus text exposition writer (format 0.0.4).
 *
 * Ownership: the daemon creates one ph_metrics (ph_metrics_create) and frees it
 * after everything that observes into it stopped (HTTP listener, store writer,
 * I/O engine). Observers borrow the pointer; NULL everywhere means "not
 * measured" and every ph_metrics_* observation is then a no-op.
 *
 * Threads: every observation is lock-free (relaxed atomics on fixed storage)
 * and may run on any thread at once. A scrape reads the same atomics without
 * stopping observers: a histogram's buckets are read one by one, so its _count
 * is the sum of the buckets read (always equal to the +Inf bucket), and _sum
 * may be an observation ahead or behind.
 */
#ifndef PH_METRICS_H
#define PH_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct ph_cmd;

#define PH_HIST_MAX_BUCKETS 16 /* finite upper bounds per histogram */
#define PH_METRICS_ROUTES   96 /* route indices 0..95; more are counted in the last one */
#define PH_METRICS_SLOTS    64 /* distinct suppliers or clients kept per family */
#define PH_METRICS_NAME_MAX 63 /* bytes of a slot's name; longer ones are cut */

/* A fixed-bucket histogram. bounds are ascending finite upper bounds (le) in
 * the unit the observer counts in (microseconds for latencies, 1 for sizes);
 * buckets are not cumulative here (the writer accumulates). */
typedef struct ph_hist {
    const int64_t *bounds;                                /* static */
    unsigned nbounds;                                     /* <= PH_HIST_MAX_BUCKETS */
    atomic_uint_fast64_t bucket[PH_HIST_MAX_BUCKETS + 1]; /* the last one is +Inf */
    atomic_uint_fast64_t sum;
} ph_hist;

/* Records v (in the histogram's unit; negative counts as 0). Lock-free. */
void ph_hist_observe(ph_hist *h, int64_t v);

/* The order outcomes counted (perkhub_orders_total{outcome}). */
enum {
    PH_MX_OUT_SUCCEEDED = 0, /* the order became succeeded */
    PH_MX_OUT_FAILED,        /* the order became failed */
    PH_MX_OUT_COUNT
};
enum { PH_MX_SRC_STOCK = 0, PH_MX_SRC_SUPPLIER, PH_MX_SRC_COUNT };
/* What failed-authentication throttling did to a request
 * (perkhub_auth_throttled_total{action}; http/auth_guard.h). */
enum {
    PH_MX_AUTH_DELAYED = 0, /* a 401 held back before it was sent */
    PH_MX_AUTH_REFUSED,     /* a 429 too_many_failures: the address is blocked */
    PH_MX_AUTH_COUNT
};
/* HTTP status classes 1xx..5xx as index 0..4 */
#define PH_MX_STATUS_CLASSES 5

/* A series family keyed by a configured name (supplier id, client name). A
 * slot is claimed once (state 0 -> 1 -> 2) and never freed: names come from the
 * configuration, so the table stays small; names past PH_METRICS_SLOTS go to
 * the "_other" slot. */
typedef struct ph_mslot {
    atomic_int state; /* 0 free, 1 being claimed, 2 name set */
    char name[PH_METRICS_NAME_MAX + 1];
} ph_mslot;

typedef struct ph_metrics {
    /* HTTP: by route index (ph_http_route_name) and status class */
    ph_hist http[PH_METRICS_ROUTES][PH_MX_STATUS_CLASSES];
    /* the writer: commands per durable batch; apply + durable commit time */
    ph_hist batch_size;
    ph_hist batch_seconds;
    /* the risk engine (risk/risk.c): checks, decisions by action (index
     * PH_RISK_ALLOW..PH_RISK_DENY, 0 unused), dry-run rules that fired, checks
     * decided without memory for a counter (fail closed) */
    atomic_uint_fast64_t risk_checks, risk_decisions[4], risk_dry_run_hits, risk_fail_closed;
    /* supplier exchanges: latency per supplier slot; [PH_METRICS_SLOTS] = "_other" */
    ph_mslot sup_slot[PH_METRICS_SLOTS];
    ph_hist sup_seconds[PH_METRICS_SLOTS + 1];
    /* orders by client slot, source and outcome */
    ph_mslot client_slot[PH_METRICS_SLOTS];
    atomic_uint_fast64_t orders[PH_METRICS_SLOTS + 1][PH_MX_SRC_COUNT][PH_MX_OUT_COUNT];
    /* failed authentications (missing, malformed or unknown bearer token), what
     * throttling did, and the addresses refused now: a gauge the auth guard
     * owns and stores here whenever it changes (http/auth_guard.h) */
    atomic_uint_fast64_t auth_failures;
    atomic_uint_fast64_t auth_throttled[PH_MX_AUTH_COUNT];
    atomic_uint_fast64_t auth_blocked;
} ph_metrics;

/* A zeroed registry with its bucket bounds set. NULL when out of memory.
 * Free with ph_metrics_free (NULL is a no-op). @note Main thread. */
ph_metrics *ph_metrics_create(void);
void ph_metrics_free(ph_metrics *m);

/* One HTTP request completed: route index (>= PH_METRICS_ROUTES counts in the
 * last), HTTP status, microseconds from its header to its completion. A
 * status below 100 (none was set: the client went away first) is not counted. */
void ph_metrics_http_observe(ph_metrics *m, unsigned route, unsigned status, int64_t us);

/* One batch committed durably: its commands and microseconds of apply +
 * commit; and the order outcomes its commands decided (read from each
 * command's results, before any `done` runs). @note The writer thread. */
void ph_metrics_batch_observe(ph_metrics *m, const struct ph_cmd *batch, int64_t us);

/* One supplier exchange finished after us microseconds (from its start on the
 * wire or in the plugin to its outcome). @note The I/O thread (any thread). */
void ph_metrics_supplier_observe(ph_metrics *m, const char *supplier, int64_t us);

/* One failed authentication; `action` PH_MX_AUTH_* when throttling delayed or
 * refused it, -1 when it did neither. A refusal is not a failure (no token was
 * looked at): ph_metrics_auth(m, 0, PH_MX_AUTH_REFUSED). Lock-free; any thread. */
void ph_metrics_auth(ph_metrics *m, int failed, int action);

/* The slot index of name in slots (claiming a free one), or PH_METRICS_SLOTS
 * when the table is full. Lock-free; any thread. */
unsigned ph_metrics_slot(ph_mslot *slots, const char *name);

/* ---- the exposition writer ------------------------------------------------ */

/* A growing text buffer. A failed allocation sets oom and drops the rest:
 * check it once at the end. Owned by its user: ph_mx_free. */
typedef struct ph_mx {
    char *buf;
    size_t len, cap;
    int oom;
} ph_mx;

/* A label pair for a sample; value is escaped (\\, \", \n) when written. */
typedef struct ph_label {
    const char *name;
    const char *value;
} ph_label;

/* "# HELP name help\n# TYPE name type\n" (help escaped: \\ and \n). type is
 * "counter", "gauge" or "histogram". */
void ph_mx_family(ph_mx *mx, const char *name, const char *type, const char *help);
/* "name{labels} value\n"; value printed as an integer when it is one. */
void ph_mx_sample(ph_mx *mx, const char *name, const ph_label *labels, size_t nlabels,
                  double value);
/* name_bucket{labels,le="..."} cumulative for each bound and +Inf, name_sum,
 * name_count; bounds and sum scaled by `scale` (1e-6: microseconds as
 * seconds). Skipped when nothing was observed and skip_empty is 1. */
void ph_mx_hist(ph_mx *mx, const char *name, const ph_label *labels, size_t nlabels,
                const ph_hist *h, double scale, int skip_empty);
/* Appends a label value escaped as the format wants. */
void ph_mx_escape(ph_mx *mx, const char *value);
void ph_mx_free(ph_mx *mx);

#endif
