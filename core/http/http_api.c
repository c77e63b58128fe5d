/*
 * http_api.c — libmicrohttpd server: routing, auth, bodies, responses, logs.
 *
 * Threading: a pool of MHD threads, each running its own epoll loop. Reads
 * are answered on the pool thread. Orders and batch voids hand their command
 * to the store and suspend the connection; the writer's completion callback
 * resumes it after the durable commit, so a few pool threads keep hundreds of
 * orders in one group commit instead of one per thread. A CSV import still
 * parses, seals and waits for its commit on the pool thread (rare, ops only).
 * One more thread, the sweeper, shuts down connections whose request header
 * is overdue (conn_track), and is the listener's timer: it resumes the
 * connections whose 401 the auth guard holds back (auth_guard.h) when each is
 * due, and ends the guard's blocks once a second. An offline request
 * (ph_http_serve_offline) runs on its caller's thread and waits for its wakes
 * on a condition variable; it has no peer address, so the guard never sees it.
 */
#include "http/http_api.h"

#include <arpa/inet.h>
#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http/api.h"
#include "repl/repl.h"
#include "http/bundles.h"
#include "http/auth_guard.h"
#include "http/tls.h"
#include "base/util.h"
#include "metrics/metrics.h"

struct ph_http {
    struct MHD_Daemon *mhd;
    ph_http_env env;       /* the services handlers may call, borrowed from the starter */
    ph_http_opts opts;     /* as started (defaults filled in); address borrowed */
    ph_tls_files tls;      /* listen.tls's PEM texts for MHD (cert NULL: plain HTTP) */
    atomic_int open_conns; /* TCP connections MHD holds now (NOTIFY_CONNECTION) */
    uint32_t reqid_prefix; /* random per listener: request ids stay unique across restarts */
    atomic_uint_fast64_t reqid_next;
    atomic_int inflight;
    /* Set when the daemon stops: new requests get 503 while those already
     * received finish. (MHD_quiesce_daemon is not used: with epoll and a thread
     * pool, libmicrohttpd 0.9.75 can abort removing the listen socket.) */
    atomic_int stopping;
    /* The header deadline (conn_track below): every open connection, and the
     * thread that closes those whose header is overdue. */
    pthread_mutex_t track_mu; /* guards tracked, held and sweep_stop; a leaf lock */
    pthread_cond_t sweep_cv;  /* on CLOCK_MONOTONIC: wakes the sweeper (a stop, a new hold) */
    struct conn_track *tracked;
    int sweep_stop;
    pthread_t sweeper;
    /* Failed authentications per peer address (auth_guard.h), and the 401s it
     * holds back: a min-heap by due time of suspended requests the sweeper
     * resumes (hold_answer). */
    ph_auth_guard *guard;
    struct held *held;
    size_t nheld, capheld;
};

/* A 401 held back: its request is suspended until due_ms (monotonic). */
typedef struct held {
    int64_t due_ms;
    ph_req *r;
} held;

/* One connection as the header deadline sees it. libmicrohttpd's timeout is
 * one of inactivity: a client that trickles a header byte every few seconds
 * would hold its connection forever. So a connection must complete its
 * request header within header_timeout_s of opening, or of the end of its
 * previous response (keep-alive); the sweeper shuts the socket down when it
 * does not, and MHD then closes it. Created at NOTIFY_CONNECTION STARTED,
 * freed at CLOSED, which MHD calls before it closes the socket: under
 * track_mu, fd is always this connection's. */
typedef struct conn_track {
    struct conn_track *prev, *next; /* guarded by track_mu */
    int fd;                         /* immutable */
    atomic_int waiting;             /* 1 while no complete request header arrived */
    atomic_llong since_ms;          /* monotonic; set before waiting becomes 1 */
} conn_track;

typedef struct ph_route {
    const char *method;
    const char *pattern; /* '*' matches one path segment */
    unsigned scopes;     /* any of these; 0 = no authentication */
    ph_handler_fn fn;
    /* The query parameters the route reads, space-separated; NULL = none. Any
     * other one is refused with a 400 naming it (a misspelt filter such as
     * ?state=failed must not silently answer "everything"). PARAMS_ANY: the
     * query belongs to someone else's protocol. */
    const char *params;
} ph_route;

#define ANY_SCOPE  (PH_SCOPE_FULFILL | PH_SCOPE_SUPPORT | PH_SCOPE_OPS)
#define PARAMS_ANY "*"
/* Not a scope: whoever config's metrics.access lets in (authenticate). */
#define SCOPE_METRICS 0x80000000u

#define LEDGER_PARAMS "from to supplier client sku after limit format"

static const ph_route routes[] = {
    {"GET", "/v1/health", 0, ph_api_health, NULL},
    {"GET", "/v1/ready", 0, ph_api_ready, NULL},
    {"GET", "/v1/products", ANY_SCOPE, ph_api_products_list, "brand tag category"},
    {"GET", "/v1/products/*", ANY_SCOPE, ph_api_product_get, NULL},
    {"POST", "/v1/batches", PH_SCOPE_OPS, ph_api_batch_import, "supplier sku unit_cost note"},
    /* welfare batches of grants (issue 16; api_grants.c) */
    {"POST", "/v1/batches/grants", PH_SCOPE_FULFILL, ph_api_grant_batch,
     "batch_id ttl_s expires_at"},
    {"GET", "/v1/batches/grants/*", PH_SCOPE_FULFILL | PH_SCOPE_OPS, ph_api_grant_batch_csv,
     "client"},
    {"GET", "/v1/batches", PH_SCOPE_OPS, ph_api_batch_list, "after limit"},
    {"GET", "/v1/batches/*", PH_SCOPE_OPS, ph_api_batch_get, NULL},
    {"POST", "/v1/batches/*/void", PH_SCOPE_OPS, ph_api_batch_void, NULL},
    {"POST", "/v1/orders", PH_SCOPE_FULFILL, ph_api_order_create, NULL},
    {"GET", "/v1/orders", ANY_SCOPE, ph_api_order_list,
     "after limit client_order_id client stuck state sku since components"},
    {"GET", "/v1/orders/*", ANY_SCOPE, ph_api_order_get, NULL},
    {"POST", "/v1/orders/*/settle", PH_SCOPE_OPS, ph_api_order_settle, NULL},
    {"POST", "/v1/orders/*/retry", PH_SCOPE_FULFILL, ph_api_order_retry, NULL},
    {"POST", "/v1/codes/lookup", PH_SCOPE_SUPPORT | PH_SCOPE_OPS, ph_api_code_lookup, NULL},
    /* a mall's own order events (issue 13); support is not an integration */
    {"GET", "/v1/events", PH_SCOPE_FULFILL | PH_SCOPE_OPS, ph_api_events, "after limit"},
    {"GET", "/v1/suppliers", PH_SCOPE_OPS, ph_api_suppliers, NULL},
    {"GET", "/v1/suppliers/*/catalog", PH_SCOPE_OPS, ph_api_supplier_catalog, NULL},
    {"GET", "/v1/suppliers/*/balance", PH_SCOPE_OPS, ph_api_supplier_balance, NULL},
    {"POST", "/v1/suppliers/*/sync", PH_SCOPE_OPS, ph_api_supplier_sync, NULL},
    {"POST", "/v1/products/*/pin", PH_SCOPE_OPS, ph_api_product_pin, NULL},
    {"GET", "/v1/stats", PH_SCOPE_OPS, ph_api_stats, NULL},
    {"GET", "/v1/audit", PH_SCOPE_OPS, ph_api_audit, "after limit from to client action"},
    {"GET", "/v1/ledger", PH_SCOPE_OPS, ph_api_ledger, LEDGER_PARAMS},
    {"GET", "/v1/ledger.csv", PH_SCOPE_OPS, ph_api_ledger, LEDGER_PARAMS},
    {"GET", "/v1/reports", PH_SCOPE_OPS, ph_api_reports, "from to by format"},
    {"GET", "/v1/reports.csv", PH_SCOPE_OPS, ph_api_reports, "from to by format"},
    /* analytics (issue 16; api_analytics.c): a mall reads its own figures */
    {"GET", "/v1/analytics/top", PH_SCOPE_FULFILL | PH_SCOPE_OPS, ph_api_analytics_top,
     "by period from to n"},
    {"GET", "/v1/analytics/hours", PH_SCOPE_FULFILL | PH_SCOPE_OPS, ph_api_analytics_hours,
     "from to"},
    {"GET", "/v1/analytics/claims", PH_SCOPE_FULFILL | PH_SCOPE_OPS, ph_api_analytics_claims,
     "by from to"},
    {"GET", "/v1/analytics/co", PH_SCOPE_OPS, ph_api_analytics_co, "a b within_d from to"},
    {"POST", "/v1/suppliers/*/statements", PH_SCOPE_OPS, ph_api_statement_import, "from to"},
    {"POST", "/v1/suppliers/*/statements/fetch", PH_SCOPE_OPS, ph_api_statement_fetch, "from to"},
    {"GET", "/v1/reconciliations", PH_SCOPE_OPS, ph_api_recon_list, "after limit"},
    {"GET", "/v1/reconciliations/*", PH_SCOPE_OPS, ph_api_recon_get, "after limit"},
    {"GET", "/v1/reconciliations/*/lines.csv", PH_SCOPE_OPS, ph_api_recon_csv, NULL},
    {"GET", "/v1/discrepancies", PH_SCOPE_OPS, ph_api_discrep_list, "status supplier after limit"},
    {"GET", "/v1/discrepancies/*", PH_SCOPE_OPS, ph_api_discrep_get, NULL},
    {"GET", "/v1/replenishments", PH_SCOPE_OPS, ph_api_replenish_list, "sku state after limit"},
    {"POST", "/v1/discrepancies/*/accept", PH_SCOPE_OPS, ph_api_discrep_accept, NULL},
    {"POST", "/v1/discrepancies/*/dispute", PH_SCOPE_OPS, ph_api_discrep_dispute, NULL},
    {"GET", "/v1/stats/orders", PH_SCOPE_OPS, ph_api_order_stats, "since top"},
    /* a job id may hold one '/' (api_jobs.c) */
    {"GET", "/v1/jobs", PH_SCOPE_OPS, ph_api_jobs, NULL},
    {"POST", "/v1/jobs/*/run", PH_SCOPE_OPS, ph_api_job_run, NULL},
    {"POST", "/v1/jobs/*/*/run", PH_SCOPE_OPS, ph_api_job_run, NULL},
    /* snapshots of the store (api_snapshots.c); a take is the job snapshots.take */
    {"GET", "/v1/snapshots", PH_SCOPE_OPS, ph_api_snapshots, NULL},
    {"GET", "/v1/snapshots/latest", PH_SCOPE_OPS, ph_api_snapshot_latest, NULL},
    {"GET", "/v1/alerts", PH_SCOPE_OPS, ph_api_alert_list, "state after limit"},
    {"POST", "/v1/alerts/*/ack", PH_SCOPE_OPS, ph_api_alert_ack, NULL},
    /* webhooks (issue 13): a mall reads its own endpoints, ops act on them */
    {"GET", "/v1/webhooks", PH_SCOPE_FULFILL | PH_SCOPE_OPS, ph_api_webhooks, NULL},
    {"GET", "/v1/webhooks/*/deliveries", PH_SCOPE_FULFILL | PH_SCOPE_OPS, ph_api_webhook_deliveries,
     "state after limit"},
    {"POST", "/v1/webhooks/*/replay", PH_SCOPE_OPS, ph_api_webhook_replay, NULL},
    {"POST", "/v1/webhooks/*/enable", PH_SCOPE_OPS, ph_api_webhook_enable, NULL},
    /* the review queue of held orders (issue 15) */
    {"GET", "/v1/reviews", PH_SCOPE_OPS, ph_api_review_list, "after limit"},
    {"POST", "/v1/reviews/*/release", PH_SCOPE_OPS, ph_api_review_release, NULL},
    {"POST", "/v1/reviews/*/block", PH_SCOPE_OPS, ph_api_review_block, NULL},
    /* grants (issue 16; api_grants.c) */
    {"POST", "/v1/grants/claim", PH_SCOPE_FULFILL, ph_api_grant_claim, NULL},
    {"GET", "/v1/grants", PH_SCOPE_FULFILL | PH_SCOPE_OPS, ph_api_grant_list,
     "state client after limit"},
    {"GET", "/v1/grants/*", PH_SCOPE_FULFILL | PH_SCOPE_OPS, ph_api_grant_get, NULL},
    {"POST", "/v1/grants/*/gift", PH_SCOPE_FULFILL, ph_api_grant_gift, NULL},
    {"POST", "/v1/grants/*/extend", PH_SCOPE_OPS, ph_api_grant_extend, NULL},
    /* risk rules and lists (issue 15; api_risk.c) */
    {"GET", "/v1/risk/rules", PH_SCOPE_OPS, ph_api_risk_rules, NULL},
    {"POST", "/v1/risk/rules", PH_SCOPE_OPS, ph_api_risk_rule_create, NULL},
    {"PUT", "/v1/risk/rules/*", PH_SCOPE_OPS, ph_api_risk_rule_replace, NULL},
    {"DELETE", "/v1/risk/rules/*", PH_SCOPE_OPS, ph_api_risk_rule_remove, "version"},
    {"GET", "/v1/risk/rules/*/versions", PH_SCOPE_OPS, ph_api_risk_rule_versions, NULL},
    {"GET", "/v1/risk/lists", PH_SCOPE_OPS, ph_api_risk_lists, "list"},
    {"POST", "/v1/risk/lists", PH_SCOPE_OPS, ph_api_risk_list_add, NULL},
    {"DELETE", "/v1/risk/lists/*/*/*", PH_SCOPE_OPS, ph_api_risk_list_remove, NULL},
    /* suppliers authenticate by signature, checked by their plugin; their
     * notify URLs may carry the supplier's own parameters */
    {"POST", "/v1/callbacks/*", 0, ph_api_callback, PARAMS_ANY},
    {"GET", "/v1/callbacks/*", 0, ph_api_callback, PARAMS_ANY}, /* suppliers that notify so */
    {"GET", "/metrics", SCOPE_METRICS, ph_api_metrics, NULL},
    /* the page holds no data: it reads the API with the token its user types */
    {"GET", "/ops", 0, ph_api_ops_page, NULL},
};
#define NROUTES (sizeof routes / sizeof routes[0])
_Static_assert(NROUTES < PH_METRICS_ROUTES, "raise PH_METRICS_ROUTES (one more: unmatched)");

const char *ph_http_route_name(size_t i, const char **method)
{
    *method = i < NROUTES ? routes[i].method : "";
    return i < NROUTES ? routes[i].pattern : i == NROUTES ? "unmatched" : NULL;
}

static void str_copy(char *dst, size_t cap, const char *src);
static int64_t mono_ms(void);

/* ---- responses ------------------------------------------------------------ */

static void text_drop(ph_req *r)
{
    if (r->file.fd) {
        close(r->file.fd - 1);
        r->file.fd = 0;
    }
    if (r->text) {
        ph_wipe(r->text, r->text_len);
        free(r->text);
        r->text = NULL;
        r->text_len = 0;
    }
}

int ph_req_json(ph_req *r, unsigned status, json_t *body)
{
    json_decref(r->resp);
    text_drop(r);
    r->status = status;
    r->resp = body;
    return PH_REQ_DONE;
}

int ph_req_text(ph_req *r, unsigned status, char *text, size_t len, const char *content_type)
{
    ph_req_json(r, status, NULL);
    r->text = text;
    r->text_len = len;
    r->raw_content_type = content_type;
    return PH_REQ_DONE;
}

int ph_req_file(ph_req *r, unsigned status, int fd, uint64_t len, const char *name,
                const char *repl_seq)
{
    ph_req_json(r, status, NULL);
    r->file.fd = fd + 1;
    r->file.len = len;
    snprintf(r->file.name, sizeof r->file.name, "%s", name ? name : "");
    snprintf(r->file.repl_seq, sizeof r->file.repl_seq, "%s", repl_seq ? repl_seq : "");
    return PH_REQ_DONE;
}

int ph_req_error(ph_req *r, unsigned status, const char *code, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ph_req_json(
        r, status,
        json_pack("{s:s,s:s,s:s}", "error", code, "message", msg, "request_id", r->reqid));
}

/* A standby's 503 (not_leader, stale) names the leader, in X-Perkhub-Leader and
 * the body's "leader", when one is known: r->leader_url is looked up unless the
 * caller already did (to name it in its message too). */
static void name_leader(ph_req *r)
{
    if (!r->env->repl)
        return;
    if (!r->leader_url[0])
        ph_repl_leader_url(r->env->repl, r->leader_url, sizeof r->leader_url);
    if (r->leader_url[0] && r->resp)
        json_object_set_new(r->resp, "leader", json_string(r->leader_url));
}

int ph_req_fail(ph_req *r, int rc, const ph_err *err)
{
    unsigned status;
    switch (rc) {
    case PH_EINVAL:
        status = 400;
        break;
    case PH_ENOTFOUND:
        status = 404;
        break;
    case PH_ECONFLICT:
    case PH_ENOSTOCK:
    case PH_ESTATE:
    case PH_EDUP:
        status = 409;
        break;
    case PH_ESKU:
    case PH_ELIMIT:
        status = 422;
        break;
    case PH_ESHUTDOWN:
    case PH_EUNAVAIL: /* replication: not the leader, or the stream did not take it */
        status = 503;
        break;
    case PH_ENOSPC:
        status = 507; /* Insufficient Storage: the store's disk is full (docs/api.md) */
        break;
    default:
        status = 500;
        break;
    }
    const char *msg = err && err->msg[0] ? err->msg : ph_strerror(rc);
    if (status == 500 || status == 507)
        ph_log(r->env->log, PH_LOG_ERROR, r->reqid,
               status == 507 ? "store.disk_full" : "http.internal_error", "error=\"%s\"", msg);
    ph_req_error(r, status, ph_strerror(rc), "%s", msg);
    if (rc == PH_EUNAVAIL) /* where to write instead (docs/replication.md) */
        name_leader(r);
    return PH_REQ_DONE;
}

/* ---- the request's values: from MHD, or from an offline request ----------- */

/* An offline request (ph_http_serve_offline): what MHD would hold for a
 * connection, and the condition a suspended request waits on instead of
 * MHD_suspend_connection. Owned by the caller's stack frame. */
struct ph_offline {
    char **hk, **hv; /* header names and values, as given */
    size_t nh;
    char **qk, **qv; /* query keys and values, URL-decoded (a value may be NULL) */
    size_t nq;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int woken; /* guarded by mu */
};

/* Calls it for each value of kind (MHD_HEADER_KIND or MHD_GET_ARGUMENT_KIND),
 * with each key's and value's length (MHD's _n form), until it says MHD_NO;
 * returns how many it was called for. An offline request's text holds no NUL
 * (url_decode hands %00 on as C0 80, as url_unescape does), so its lengths are
 * strlen's. */
static int req_values_n(ph_req *r, enum MHD_ValueKind kind, MHD_KeyValueIteratorN it, void *cls)
{
    if (r->conn)
        return MHD_get_connection_values_n(r->conn, kind, it, cls);
    const ph_offline *o = r->off;
    char **k = kind == MHD_HEADER_KIND ? o->hk : o->qk;
    char **v = kind == MHD_HEADER_KIND ? o->hv : o->qv;
    size_t n = kind == MHD_HEADER_KIND ? o->nh : o->nq;
    int called = 0;
    for (size_t i = 0; i < n; i++) {
        called++;
        if (it && it(cls, kind, k[i], strlen(k[i]), v[i], v[i] ? strlen(v[i]) : 0) != MHD_YES)
            break;
    }
    return called;
}

/* The first header of that name (any case), or NULL. */
static const char *req_header(ph_req *r, const char *name)
{
    if (r->conn)
        return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
    for (size_t i = 0; i < r->off->nh; i++)
        if (strcasecmp(r->off->hk[i], name) == 0)
            return r->off->hv[i];
    return NULL;
}

const char *ph_req_header(ph_req *r, const char *name)
{
    return req_header(r, name);
}

const char *ph_req_query(ph_req *r, const char *key)
{
    if (r->conn)
        return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
    for (size_t i = 0; i < r->off->nq; i++)
        if (strcmp(r->off->qk[i], key) == 0)
            return r->off->qv[i];
    return NULL;
}

/* ph_req_query_string's buffer: grows by doubling; nomem once it cannot. */
typedef struct {
    char *buf;
    size_t len, cap;
    int nomem;
} query_text;

static void query_put(query_text *q, const char *s, size_t n, int encode)
{
    for (size_t i = 0; i < n && !q->nomem; i++) {
        unsigned char c = (unsigned char)s[i];
        int plain = !encode || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
        if (q->len + 4 > q->cap) {
            size_t cap = q->cap ? q->cap * 2 : 256;
            char *b = realloc(q->buf, cap);
            if (!b) {
                q->nomem = 1;
                return;
            }
            q->buf = b, q->cap = cap;
        }
        if (plain) {
            q->buf[q->len++] = (char)c;
        } else {
            q->len += (size_t)snprintf(q->buf + q->len, 4, "%%%02X", c);
        }
    }
}

static enum MHD_Result query_visit(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    query_text *q = cls;
    if (q->len)
        query_put(q, "&", 1, 0);
    query_put(q, key, key_size, 1);
    if (value) {
        query_put(q, "=", 1, 0);
        query_put(q, value, value_size, 1);
    }
    return q->nomem ? MHD_NO : MHD_YES;
}

char *ph_req_query_string(ph_req *r)
{
    query_text q = {0};
    req_values_n(r, MHD_GET_ARGUMENT_KIND, query_visit, &q);
    query_put(&q, "", 0, 0);
    if (!q.nomem && !q.buf)
        q.buf = malloc(1);
    if (q.nomem || !q.buf) {
        free(q.buf);
        return NULL;
    }
    q.buf[q.len] = '\0';
    return q.buf;
}

int ph_req_page(ph_req *r, uint64_t *after, uint64_t *limit, uint64_t max)
{
    const char *a = ph_req_query(r, "after"), *l = ph_req_query(r, "limit");
    if (a && ph_u64_parse(a, after))
        return ph_req_error(r, 400, "invalid_request", "after: expected a number"), -1;
    if (l && (ph_u64_parse(l, limit) || *limit < 1 || *limit > max))
        return ph_req_error(r, 400, "invalid_request", "limit: expected 1 to %llu",
                            (unsigned long long)max),
               -1;
    return 0;
}

/* Where the n bytes of key are one of the space-separated names in list: that
 * name in the list (ending at a space or the list's end), else NULL. */
static const char *name_find(const char *list, const char *key, size_t n)
{
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ' ');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && memcmp(p, key, n) == 0)
            return p;
        p = end ? end + 1 : p + len;
    }
    return NULL;
}

/* "a b c" as "a, b, c" into out (cut to fit). */
static void list_commas(const char *list, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = list; p && *p && n + 3 < cap; p++) {
        if (*p == ' ')
            out[n++] = ',';
        out[n++] = *p;
    }
    out[n] = 0;
}

/* "1st", "2nd", "3rd", "4th", ..., "11th", "12th", "13th", "21st" into buf. */
static const char *ordinal(size_t n, char *buf, size_t cap)
{
    const char *sfx = "th";
    if (n % 100 < 11 || n % 100 > 13)
        sfx = n % 10 == 1 ? "st" : n % 10 == 2 ? "nd" : n % 10 == 3 ? "rd" : "th";
    snprintf(buf, cap, "%zu%s", n, sfx);
    return buf;
}

/* The name of the key whose token ends at body[end] (its closing quote at
 * end - 1) when that name is one of fields, written plainly; else NULL. Only
 * a listed name is ever returned: a key the caller made up is never quoted. */
static const char *key_ending_at(const char *body, size_t end, const char *fields)
{
    if (!fields || end < 2 || body[end - 1] != '"')
        return NULL;
    size_t b = end - 1;
    while (b > 0 && ((body[b - 1] >= 'a' && body[b - 1] <= 'z') || body[b - 1] == '_'))
        b--;
    if (b == 0 || body[b - 1] != '"' || b == end - 1)
        return NULL;
    return name_find(fields, body + b, end - 1 - b);
}

/* Is c one of set's bytes? (strchr alone would say yes for a NUL) */
static int byte_in(char c, const char *set)
{
    return c && strchr(set, c) != NULL;
}

/* The listed field whose value is the number ending at body[end], else NULL. */
static const char *key_of_number_at(const char *body, size_t end, const char *fields)
{
    size_t i = end;
    while (i > 0 && byte_in(body[i - 1], "0123456789+-.eE"))
        i--;
    while (i > 0 && byte_in(body[i - 1], " \t\r\n"))
        i--;
    if (i == 0 || body[i - 1] != ':')
        return NULL;
    i--;
    while (i > 0 && byte_in(body[i - 1], " \t\r\n"))
        i--;
    return key_ending_at(body, i, fields);
}

/* Length of a listed name (it ends at a space or the list's end). */
static int name_len(const char *name)
{
    const char *e = strchr(name, ' ');
    return (int)(e ? (size_t)(e - name) : strlen(name));
}

/* Parses the body as an object; fields (space-separated, NULL = any) are the
 * names this endpoint takes, named in errors; any other key is refused by its
 * position, never quoted (a caller may paste a code or an account as a key). */
static int body_parse(ph_req *r, const char *fields, json_t **out)
{
    json_error_t je;
    const char *body = r->body ? r->body : "";
    json_t *j = json_loadb(body, r->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        /* je.text quotes the input (a duplicate key, a number): report the
         * position, and the field only when it is one of ours */
        size_t pos = je.position > 0 ? (size_t)je.position : 0;
        const char *f;
        int ln = je.line, col = je.column;
        if (pos > r->body_len)
            pos = r->body_len;
        switch (json_error_code(&je)) {
        case json_error_duplicate_key:
            if ((f = key_ending_at(body, pos, fields)))
                return ph_req_error(r, 400, "invalid_request",
                                    "%.*s: given more than once (line %d, column %d)", name_len(f),
                                    f, ln, col),
                       -1;
            return ph_req_error(r, 400, "invalid_request",
                                "body: a key given more than once at line %d, column %d", ln, col),
                   -1;
        case json_error_numeric_overflow:
            if ((f = key_of_number_at(body, pos, fields)))
                return ph_req_error(r, 400, "invalid_request",
                                    "%.*s: number out of range (line %d, column %d)", name_len(f),
                                    f, ln, col),
                       -1;
            return ph_req_error(r, 400, "invalid_request",
                                "body: number out of range at line %d, column %d", ln, col),
                   -1;
        case json_error_invalid_utf8:
            return ph_req_error(r, 400, "invalid_request",
                                "body: not valid UTF-8 at line %d, column %d", ln, col),
                   -1;
        case json_error_null_character:
            return ph_req_error(r, 400, "invalid_request",
                                "body: a NUL (\\u0000) at line %d, column %d", ln, col),
                   -1;
        default:
            return ph_req_error(r, 400, "invalid_request",
                                "body: malformed JSON at line %d, column %d", ln, col),
                   -1;
        }
    }
    if (!json_is_object(j)) {
        json_decref(j);
        ph_req_error(r, 400, "invalid_request", "body: expected a JSON object");
        return -1;
    }
    if (fields) {
        const char *key;
        json_t *v;
        size_t nth = 0;
        json_object_foreach(j, key, v)
        {
            nth++;
            if (name_find(fields, key, strlen(key)))
                continue;
            char list[160];
            list_commas(fields, list, sizeof list);
            json_decref(j);
            ph_req_error(r, 400, "invalid_request",
                         "body: unknown field (key %zu of the object; this endpoint takes %s)", nth,
                         list);
            return -1;
        }
    }
    *out = j;
    return 0;
}

int ph_req_body_json(ph_req *r, json_t **out)
{
    return body_parse(r, NULL, out);
}

int ph_req_body_fields(ph_req *r, const char *fields, json_t **out)
{
    assert(fields);
    return body_parse(r, fields, out);
}

int ph_req_has_scope(const ph_req *r, unsigned scope)
{
    return r->client && (r->client->scopes & scope);
}

/* ---- suspend / resume ----------------------------------------------------- */

int ph_req_suspend(ph_req *r, ph_handler_fn resume)
{
    r->resume = resume;
    if (r->conn)
        MHD_suspend_connection(r->conn);
    return PH_REQ_SUSPENDED;
}

void ph_req_wake(ph_req *r)
{
    if (!r->conn) {
        /* the offline caller waits on cv; it may free r as soon as mu is free */
        ph_offline *o = r->off;
        pthread_mutex_lock(&o->mu);
        o->woken = 1;
        pthread_cond_signal(&o->cv);
        pthread_mutex_unlock(&o->mu);
        return;
    }
    r->resumed = 1;
    MHD_resume_connection(r->conn);
}

static void cmd_done(ph_cmd *cmd)
{
    ph_req_wake(cmd->arg);
}

int ph_req_submit(ph_req *r, ph_handler_fn resume)
{
    r->cmd.done = cmd_done;
    r->cmd.arg = r;
    ph_req_suspend(r, resume);
    r->pending = 1;
    int rc = ph_store_submit(r->env->store, &r->cmd);
    if (rc != PH_OK) {
        r->pending = 0;
        if (r->conn)
            MHD_resume_connection(r->conn);
        return ph_req_fail(r, rc, &r->cmd.err);
    }
    return PH_REQ_SUSPENDED;
}

typedef struct hdr_acc {
    char **lines;
    size_t n, cap;
    int oom;
} hdr_acc;

static enum MHD_Result hdr_collect(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    (void)key_size;
    (void)value_size;
    hdr_acc *a = cls;
    if (a->n + 2 > a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        char **l = realloc(a->lines, cap * sizeof *l);
        if (!l) {
            a->oom = 1;
            return MHD_NO;
        }
        a->lines = l;
        a->cap = cap;
    }
    if (asprintf(&a->lines[a->n], "%s: %s", key, value ? value : "") < 0) {
        a->oom = 1;
        return MHD_NO;
    }
    a->n++;
    return MHD_YES;
}

char **ph_req_headers(ph_req *r, size_t *n)
{
    hdr_acc a = {0};
    req_values_n(r, MHD_HEADER_KIND, hdr_collect, &a);
    if (a.oom || !a.lines) {
        for (size_t i = 0; i < a.n; i++)
            free(a.lines[i]);
        free(a.lines);
        *n = 0;
        return a.oom ? NULL : calloc(1, sizeof(char *));
    }
    a.lines[a.n] = NULL;
    *n = a.n;
    return a.lines;
}

void ph_req_headers_free(char **lines)
{
    for (size_t i = 0; lines && lines[i]; i++)
        free(lines[i]);
    free(lines);
}

/* ---- routing -------------------------------------------------------------- */

/* Matches path against pattern, copying '*' segments into r->seg. */
static int match(const char *pattern, const char *path, ph_req *r)
{
    int nseg = 0;
    while (*pattern && *path) {
        if (*pattern == '*') {
            const char *end = strchr(path, '/');
            size_t n = end ? (size_t)(end - path) : strlen(path);
            if (n == 0 || n >= sizeof r->seg[0] || nseg == (int)(sizeof r->seg / sizeof r->seg[0]))
                return 0;
            memcpy(r->seg[nseg], path, n);
            r->seg[nseg++][n] = 0;
            path += n;
            pattern++;
        } else if (*pattern++ != *path++) {
            return 0;
        }
    }
    return *pattern == 0 && *path == 0;
}

/* The route for the request, or NULL; *path_route is the last route whose
 * pattern matched the path, whatever its method (NULL when none did). */
static const ph_route *route_find(ph_req *r, const ph_route **path_route)
{
    *path_route = NULL;
    for (size_t i = 0; i < NROUTES; i++) {
        if (!match(routes[i].pattern, r->path, r))
            continue;
        *path_route = &routes[i];
        if (strcmp(routes[i].method, r->method) == 0) {
            r->route_ix = (unsigned)i;
            return &routes[i];
        }
    }
    return NULL;
}

int ph_http_peer_is_loopback(const struct sockaddr *sa)
{
    if (!sa)
        return 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127; /* 127.0.0.0/8 */
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return 0;
}

/* Did the request come from a loopback peer? An offline request comes from
 * this process. The one answer behind loopback_only and metrics.access. */
static int req_from_loopback(ph_req *r)
{
    if (!r->conn)
        return 1;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    return ci && ph_http_peer_is_loopback(ci->client_addr);
}

/* The peer's address into *a: 0, or -1 when there is none (an offline
 * request) or it is neither IPv4 nor IPv6. */
static int req_peer(ph_req *r, ph_ipaddr *a)
{
    if (!r->conn)
        return -1;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    return ci ? ph_ipaddr_from_sockaddr(ci->client_addr, a) : -1;
}

/* ---- failed authentications (auth_guard.h, docs/api.md) --------------------- */

/* The sweeper's heap of held answers, under track_mu. */
static void held_sift_up(held *v, size_t i)
{
    while (i > 0 && v[(i - 1) / 2].due_ms > v[i].due_ms) {
        held t = v[i];
        v[i] = v[(i - 1) / 2];
        v[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

static ph_req *held_pop(ph_http *h)
{
    assert(h->nheld > 0);
    ph_req *r = h->held[0].r;
    h->held[0] = h->held[--h->nheld];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < h->nheld && h->held[l].due_ms < h->held[m].due_ms)
            m = l;
        if (l + 1 < h->nheld && h->held[l + 1].due_ms < h->held[m].due_ms)
            m = l + 1;
        if (m == i)
            break;
        held t = h->held[i];
        h->held[i] = h->held[m];
        h->held[m] = t;
        i = m;
    }
    return r;
}

/* The answer is set already: nothing to do once the timer resumed it. */
static int held_resume(ph_req *r)
{
    (void)r;
    return PH_REQ_DONE;
}

/* Holds r's answer (set) back `ms`: the connection is suspended and queued
 * for the sweeper, which resumes it when due, so no pool thread waits.
 * Returns 0, or -1 when there is no memory to queue it (then it is sent at
 * once, as ph_req_submit does with a command the store refused). */
static int hold_answer(ph_http *h, ph_req *r, unsigned ms)
{
    ph_req_suspend(r, held_resume);
    int64_t due = mono_ms() + ms;
    int rc = 0;
    pthread_mutex_lock(&h->track_mu);
    if (h->nheld == h->capheld) {
        held *v = ph_grow(h->held, &h->capheld, sizeof *v, 64);
        if (v)
            h->held = v;
        else
            rc = -1;
    }
    if (!rc) {
        h->held[h->nheld] = (held){due, r};
        held_sift_up(h->held, h->nheld++);
        if (h->held[0].r == r) /* a new earliest: the sweeper sleeps past it */
            pthread_cond_signal(&h->sweep_cv);
    }
    pthread_mutex_unlock(&h->track_mu);
    if (rc)
        MHD_resume_connection(r->conn);
    return rc;
}

/* The 401 r carries is a failed authentication: the guard counts it against
 * the peer's address and says whether to hold it back; the failure that
 * blocks the address is logged (the address is not secret; the token never
 * is written). Returns -1 (send it now) or 1 (held: the request is suspended). */
static int auth_failed(ph_http *h, ph_req *r)
{
    ph_ipaddr a;
    if (req_peer(r, &a))
        return -1;
    const ph_auth_failures_conf *c = &r->cfg->cfg->auth_failures;
    ph_auth_verdict v;
    ph_auth_guard_fail(h->guard, c, &a, r->started_us / 1000, &v);
    if (v.blocked) {
        char peer[PH_IPADDR_TEXT];
        ph_log(h->env.log, PH_LOG_WARN, r->reqid, "http.auth_blocked",
               "peer=%s failures=%u window_s=%u block_s=%u",
               ph_ipaddr_format(&a, peer, sizeof peer), v.failures, c->window_s, c->block_s);
    }
    return v.delay_ms && hold_answer(h, r, v.delay_ms) == 0 ? 1 : -1;
}

/* A peer blocked for its failed authentications gets 429 before anything of
 * its request, its token above all, is looked at; the probes are always
 * answered. The common case costs a keyed hash of the address and one
 * relaxed load (ph_auth_guard_refused). Returns 1 with the 429 set, else 0. */
static int auth_refused(ph_http *h, ph_req *r, const ph_route *rt)
{
    ph_ipaddr a;
    if ((rt && (rt->fn == ph_api_health || rt->fn == ph_api_ready)) || req_peer(r, &a))
        return 0;
    unsigned left =
        ph_auth_guard_refused(h->guard, &r->cfg->cfg->auth_failures, &a, r->started_us / 1000);
    if (!left)
        return 0;
    snprintf(r->retry_after, sizeof r->retry_after, "%u", left);
    ph_req_error(r, 429, "too_many_failures",
                 "too many failed authentications from this address: refused for %u more "
                 "seconds (Retry-After)",
                 left);
    return 1;
}

/* Bearer authentication against the request's configuration snapshot.
 * Returns 0 (authenticated, or no token needed), -1 (the answer is set) or 1
 * (a 401 held back: the request is suspended). */
static int authenticate(ph_http *h, ph_req *r, const ph_route *rt)
{
    unsigned need = rt->scopes;
    if (need == SCOPE_METRICS) {
        int access = r->cfg->cfg->metrics_access;
        if (access == PH_METRICS_PUBLIC)
            return 0;
        if (access == PH_METRICS_LOOPBACK) {
            if (req_from_loopback(r))
                return 0;
            ph_req_error(r, 403, "forbidden",
                         "GET /metrics is served to loopback peers only (config metrics.access: "
                         "loopback)");
            return -1;
        }
        need = PH_SCOPE_OPS; /* metrics.access: ops */
    }
    if (!need)
        return 0;
    const char *hv = req_header(r, "Authorization");
    if (!hv || strncasecmp(hv, "Bearer ", 7) != 0) {
        ph_req_error(r, 401, "unauthorized", "Authorization: expected 'Bearer <token>'");
        return auth_failed(h, r);
    }
    /* a token that crossed a network in clear text may have been read on the
     * way: refused whatever it is, so that a misconfigured client finds out
     * before it is used in production (docs/api.md) */
    if (!h->tls.cert && !r->cfg->cfg->http_allow_plain_tokens && !req_from_loopback(r)) {
        ph_req_error(r, 403, "plain_http_token",
                     "bearer tokens over plain HTTP are refused from non-loopback peers: enable "
                     "listen.tls or set http.allow_plain_tokens");
        return -1;
    }
    /* the keyring's SHA-256, fetched once: ph_sha256's fetch per call was ~3 %
     * of an order's CPU */
    const char *tok = hv + 7;
    uint8_t hash[PH_HASH_LEN];
    ph_crypto_sha256(h->env.keys, tok, strlen(tok), hash);
    r->client = *tok ? ph_config_client_by_hash(r->cfg->cfg, hash) : NULL;
    ph_wipe(hash, sizeof hash);
    if (!r->client) {
        ph_req_error(r, 401, "unauthorized", "Authorization: unknown token");
        return auth_failed(h, r);
    }
    if (r->client->loopback_only && !req_from_loopback(r)) {
        ph_req_error(r, 403, "forbidden",
                     "client '%s' is loopback_only (its token is published, e.g. a demo "
                     "token): refused from a non-loopback address",
                     r->client->name);
        return -1;
    }
    if (r->client->cert_required && !ph_tls_peer_matches(r->conn, r->client->cert_sha256)) {
        ph_req_error(r, 403, "client_certificate",
                     "client '%s' must present its TLS client certificate (clients[].cert_sha256, "
                     "signed by listen.tls.client_ca): none, another one or not verified",
                     r->client->name);
        return -1;
    }
    if (!(r->client->scopes & need)) {
        ph_req_error(r, 403, "forbidden", "client '%s' lacks the scope %s needs", r->client->name,
                     need == (PH_SCOPE_FULFILL | PH_SCOPE_OPS)           ? "fulfill or ops"
                     : need & PH_SCOPE_OPS && !(need & PH_SCOPE_SUPPORT) ? "ops"
                     : need & PH_SCOPE_SUPPORT                           ? "support or ops"
                                                                         : "fulfill");
        return -1;
    }
    return 0;
}

typedef struct param_check {
    const char *allowed;
    size_t nth;       /* parameters visited so far */
    size_t bad_nth;   /* the refused one's position, 1-based */
    char bad[32];     /* its name, only when it is one the route takes */
    const char *why;  /* "unknown", "repeated", or ph_text_invalid's reason */
    char seen[8][32]; /* allowed parameters met so far (routes take at most four) */
    size_t nseen;
} param_check;

/* The _n form: MHD gives each key's and value's decoded length, so a NUL
 * inside shows (length beyond strlen) instead of cutting the text short. */
static enum MHD_Result param_visit(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    param_check *pc = cls;
    pc->nth++;
    /* a name is quoted back only when it is one the route takes: any other
     * could be a code or an account pasted by mistake */
    if (strlen(key) != key_size || !name_find(pc->allowed, key, key_size))
        pc->why = "unknown";
    for (size_t i = 0; !pc->why && i < pc->nseen; i++)
        if (strcmp(pc->seen[i], key) == 0)
            pc->why = "repeated";
    if (!pc->why)
        pc->why = ph_text_invalid(value, value ? value_size : 0); /* values are never quoted */
    if (pc->why) {
        pc->bad_nth = pc->nth;
        if (strcmp(pc->why, "unknown") != 0)
            str_copy(pc->bad, sizeof pc->bad, key);
        return MHD_NO;
    }
    if (pc->nseen < sizeof pc->seen / sizeof pc->seen[0])
        str_copy(pc->seen[pc->nseen++], sizeof pc->seen[0], key);
    return MHD_YES;
}

/* Every '*' segment of the path must be text we can keep (URL decoding hands
 * a %00 on as C0 80, see url_unescape). */
static int check_path(ph_req *r, const ph_route *rt)
{
    size_t nseg = 0, at = 0;
    for (const char *p = rt->pattern; *p; p++) {
        if (*p == '/')
            at++;
        if (*p != '*')
            continue;
        const char *why = ph_text_invalid(r->seg[nseg], strlen(r->seg[nseg]));
        nseg++;
        if (why) {
            char nb[24];
            ph_req_error(r, 400, "invalid_request", "path: the %s segment of %s: %s",
                         ordinal(at, nb, sizeof nb), rt->pattern, why);
            return -1;
        }
    }
    return 0;
}

/* The path's segments and every query parameter: each parameter one the route
 * declares, at most once, its value text we can keep. */
static int check_params(ph_req *r, const ph_route *rt)
{
    if (check_path(r, rt))
        return -1;
    if (rt->params && strcmp(rt->params, PARAMS_ANY) == 0)
        return 0;
    param_check pc = {.allowed = rt->params};
    req_values_n(r, MHD_GET_ARGUMENT_KIND, param_visit, &pc);
    if (!pc.why)
        return 0;
    char takes[160], list[96], nb[24];
    list_commas(rt->params, list, sizeof list);
    if (!rt->params)
        snprintf(takes, sizeof takes, "%s %s takes no query parameters", rt->method, rt->pattern);
    else
        snprintf(takes, sizeof takes, "%s %s takes %s", rt->method, rt->pattern, list);
    if (strcmp(pc.why, "unknown") == 0)
        ph_req_error(r, 400, "invalid_request", "query: unknown parameter (the %s; %s)",
                     ordinal(pc.bad_nth, nb, sizeof nb), takes);
    else if (strcmp(pc.why, "repeated") == 0)
        ph_req_error(r, 400, "invalid_request", "query: parameter '%s' given more than once",
                     pc.bad);
    else
        ph_req_error(r, 400, "invalid_request", "%s: %s", pc.bad, pc.why);
    return -1;
}

/* The request's method as it may be quoted in an error: one of HTTP's own,
 * else a description (the method is text the caller chose). */
static const char *method_shown(const char *method)
{
    static const char *const known[] = {"GET",     "HEAD",  "POST",  "PUT",    "DELETE",
                                        "OPTIONS", "PATCH", "TRACE", "CONNECT"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(method, known[i]) == 0)
            return known[i];
    return "this method";
}

/* MHD's URL decoding (path and query), except that %00 becomes C0 80, the
 * overlong NUL: MHD cuts the path at a decoded NUL and tells nobody, so the
 * NUL is handed on in a form ph_text_invalid refuses wherever it lands. C0 80
 * is two bytes for three, as MHD requires (never longer). */
static size_t url_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    char *w = s;
    for (const char *p = s; *p;) {
        if (p[0] == '%' && p[1] == '0' && p[2] == '0') {
            *w++ = (char)0xC0;
            *w++ = (char)0x80;
            p += 3;
        } else {
            *w++ = *p++;
        }
    }
    *w = 0;
    return MHD_http_unescape(s);
}

/* ---- framing and the connection budget ------------------------------------- */

typedef struct framing {
    int ncl, nte;   /* Content-Length and Transfer-Encoding header lines */
    const char *cl; /* the first of each */
    const char *te;
} framing;

static enum MHD_Result framing_visit(void *cls, enum MHD_ValueKind kind, const char *key,
                                     size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    (void)key_size;
    (void)value_size;
    framing *f = cls;
    if (strcasecmp(key, "Content-Length") == 0 && f->ncl++ == 0)
        f->cl = value ? value : "";
    else if (strcasecmp(key, "Transfer-Encoding") == 0 && f->nte++ == 0)
        f->te = value ? value : "";
    return MHD_YES;
}

/* A body's length must have one reading: a proxy in front that frames the
 * request another way than we do would let a client smuggle a second request
 * inside the first (RFC 9112 section 6.3). libmicrohttpd 0.9.75 frames by
 * Transfer-Encoding when both are given, reads the first of two
 * Content-Lengths, and waits forever for the end of a body in an unknown
 * coding; it answers a malformed Content-Length itself (400, before any
 * handler). So the handler refuses, on the header alone and with the
 * connection closed: Transfer-Encoding other than one "chunked", both
 * headers, and Content-Length more than once. Header names only are quoted
 * back, never values. Returns 0, or -1 with the 400 set. */
static int check_framing(ph_req *r)
{
    framing f = {0};
    req_values_n(r, MHD_HEADER_KIND, framing_visit, &f);
    const char *why = NULL;
    if (f.nte > 1)
        why = "Transfer-Encoding: given more than once";
    else if (f.nte && strcasecmp(f.te, "chunked") != 0)
        why = "Transfer-Encoding: only chunked is supported";
    else if (f.nte && f.ncl)
        why = "Content-Length together with Transfer-Encoding: the body's length would be "
              "ambiguous";
    else if (f.ncl > 1)
        why = "Content-Length: given more than once";
    else if (f.ncl && (!*f.cl || strspn(f.cl, "0123456789") != strlen(f.cl)))
        why = "Content-Length: expected a decimal number";
    if (!why)
        return 0;
    r->closing = 1; /* whatever follows on this connection cannot be framed */
    ph_req_error(r, 400, "invalid_request", "%s", why);
    return -1;
}

/* Past the soft limit (max_connections - reserved_connections open at once)
 * only probes (the unauthenticated reads: health, readiness) and ops clients
 * are served: the rest get 503 with Connection: close, which also frees their
 * connection for those. An offline request holds no connection. */
static int over_budget(ph_http *h, ph_req *r, const ph_route *rt)
{
    /* a scrape is a probe too: metrics matter most when the daemon is busy */
    int probe = (!rt->scopes || rt->scopes == SCOPE_METRICS) && strcmp(rt->method, "GET") == 0;
    if (!r->conn || probe || ph_req_has_scope(r, PH_SCOPE_OPS))
        return 0;
    unsigned open = (unsigned)atomic_load(&h->open_conns);
    if (open <= h->opts.max_connections - h->opts.reserved_connections)
        return 0;
    r->closing = 1;
    ph_req_error(r, 503, "overloaded",
                 "perkhubd is near its connection limit; retry in a moment (health, readiness "
                 "and ops requests are still served)");
    return 1;
}

/* On a standby (replication), every answer states how old its data may be;
 * a read by a client without the ops scope is refused (503 stale, naming the
 * leader) while that is over replication.max_staleness_ms or unknown: a mall
 * or a support bot told "not issued yet" by a node cut off from the stream
 * would tell its customer something false. Ops see the standby as it is. */
static int standby_stale(ph_req *r, const ph_route *rt)
{
    if (!r->env->repl || ph_repl_role(r->env->repl) == PH_REPL_LEADER)
        return 0;
    uint64_t last;
    r->repl_standby = 1;
    r->stale_ms = ph_repl_staleness_ms(r->env->repl);
    ph_repl_seqs(r->env->repl, &r->applied_seq, &last);
    int64_t bound = r->cfg->cfg->repl_max_staleness_ms;
    int read = !strcmp(rt->method, "GET") || rt->fn == ph_api_code_lookup;
    if (!bound || !read || !rt->scopes || rt->scopes == SCOPE_METRICS ||
        ph_req_has_scope(r, PH_SCOPE_OPS) || (r->stale_ms >= 0 && r->stale_ms <= bound))
        return 0;
    ph_repl_leader_url(r->env->repl, r->leader_url, sizeof r->leader_url);
    char age[64];
    if (r->stale_ms < 0)
        snprintf(age, sizeof age, "of unknown age (it has not reached the stream's end yet)");
    else
        snprintf(age, sizeof age, "%lld ms old", (long long)r->stale_ms);
    ph_req_error(r, 503, "stale",
                 "replication: this standby's data is %s, over replication.max_staleness_ms "
                 "(%lld): read from the leader%s%s",
                 age, (long long)bound, r->leader_url[0] ? " at " : " (none known now)",
                 r->leader_url);
    name_leader(r);
    return 1;
}

static int dispatch(ph_http *h, ph_req *r)
{
    const ph_route *known;
    const ph_route *rt = route_find(r, &known);
    if (auth_refused(h, r, rt))
        return PH_REQ_DONE;
    if (!rt && known) /* the pattern, not the path: the path is the caller's text */
        return ph_req_error(r, 405, "method_not_allowed", "%s is not allowed on %s",
                            method_shown(r->method), known->pattern);
    if (!rt)
        return ph_req_error(r, 404, "not_found", "no such endpoint (see docs/api.md)");
    if (r->too_large)
        return ph_req_error(r, 413, "payload_too_large", "body: larger than %llu bytes",
                            (unsigned long long)r->cfg->cfg->max_body_bytes);
    int auth = authenticate(h, r, rt);
    if (auth > 0)
        return PH_REQ_SUSPENDED; /* a 401 held back (auth_failed) */
    if (auth || over_budget(h, r, rt) || check_params(r, rt) || standby_stale(r, rt))
        return PH_REQ_DONE;
    return rt->fn(r);
}

/* ---- the request's life ------------------------------------------------------ */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Marks the connection waiting for a request header (from now) or not. */
static void track_waiting(struct MHD_Connection *conn, int waiting)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn_track *t = ci ? ci->socket_context : NULL;
    if (!t)
        return;
    if (waiting)
        atomic_store(&t->since_ms, mono_ms());
    atomic_store(&t->waiting, waiting);
}

/* MHD frees a response's buffer when it is done with it: wiped first, as any
 * body may hold codes. Every body is NUL-terminated text. */
static void body_free(void *buf)
{
    ph_wipe(buf, strlen(buf));
    free(buf);
}

/* body_free for the text json_dumps returned: jansson's memory goes back to
 * jansson's free (the daemon's wipes too: crypto/wipe_alloc.h). */
static void body_free_json(void *buf)
{
    ph_wipe(buf, strlen(buf));
    ph_json_free(buf);
}

/* The response's body as NUL-terminated text for MHD to free with *release:
 * r->text as is (no copy), else the JSON printed (a raw body travels as a JSON
 * string). */
static char *body_take(ph_req *r, size_t *len, const char **type,
                       MHD_ContentReaderFreeCallback *release)
{
    *type = "application/json";
    *release = body_free;
    if (r->file.fd) { /* offline (tests): the file read whole */
        char *t = r->file.len < ((uint64_t)1 << 31) ? malloc(r->file.len + 1) : NULL;
        ssize_t got = t ? pread(r->file.fd - 1, t, r->file.len, 0) : -1;
        if (got != (ssize_t)r->file.len) {
            free(t);
            ph_req_error(r, 500, "internal_error", "cannot read the file");
        } else {
            t[got] = 0;
            *len = (size_t)got;
            *type = "application/octet-stream";
            text_drop(r);
            return t;
        }
    }
    if (r->text) {
        char *t = r->text;
        *len = r->text_len;
        *type = r->raw_content_type ? r->raw_content_type : *type;
        r->text = NULL;
        r->text_len = 0;
        return t;
    }
    if (!r->resp)
        ph_req_error(r, 500, "internal_error", "no response");
    int raw = r->raw_body && json_is_string(r->resp);
    char *t = raw ? strdup(json_string_value(r->resp))
                  : json_dumps(r->resp, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (raw && r->raw_content_type)
        *type = r->raw_content_type;
    if (!raw)
        *release = body_free_json;
    *len = t ? strlen(t) : 0;
    return t;
}

static enum MHD_Result send_response(ph_http *h, ph_req *r)
{
    size_t len;
    const char *type;
    MHD_ContentReaderFreeCallback release;
    struct MHD_Response *resp = NULL;
    char *txt = NULL;
    release = NULL;
    if (r->file.fd) { /* streamed from the file: MHD closes it */
        type = "application/octet-stream";
        resp = MHD_create_response_from_fd64(r->file.len, r->file.fd - 1);
        if (resp)
            r->file.fd = 0;
    } else {
        txt = body_take(r, &len, &type, &release);
        resp = txt ? MHD_create_response_from_buffer_with_free_callback_cls(len, txt, release, txt)
                   : MHD_create_response_from_buffer(0, (char *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (!resp) {
        if (txt)
            release(txt);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", type);
    if (r->file.name[0]) {
        char cd[128];
        snprintf(cd, sizeof cd, "attachment; filename=\"%s\"", r->file.name);
        MHD_add_response_header(resp, "Content-Disposition", cd);
    }
    if (r->file.repl_seq[0])
        MHD_add_response_header(resp, "X-Perkhub-Repl-Seq", r->file.repl_seq);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Request-Id", r->reqid);
    if (r->replay_header)
        MHD_add_response_header(resp, "Idempotent-Replay", r->replay_header);
    for (const char *const *hl = r->headers; hl && hl[0] && hl[1]; hl += 2)
        MHD_add_response_header(resp, hl[0], hl[1]);
    if (r->closing)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (r->leader_url[0])
        MHD_add_response_header(resp, "X-Perkhub-Leader", r->leader_url);
    if (r->repl_standby) {
        char v[24];
        snprintf(v, sizeof v, "%llu", (unsigned long long)r->applied_seq);
        MHD_add_response_header(resp, "X-Perkhub-Applied-Seq", v);
        if (r->stale_ms >= 0)
            snprintf(v, sizeof v, "%lld", (long long)r->stale_ms);
        MHD_add_response_header(resp, "X-Perkhub-Staleness-Ms", r->stale_ms >= 0 ? v : "unknown");
    }
    if (r->retry_after[0])
        MHD_add_response_header(resp, "Retry-After", r->retry_after);
    else if (r->status == 503 && r->closing) /* overloaded or stopping: try again soon */
        MHD_add_response_header(resp, "Retry-After", "1");
    /* The answer is queued: writing it and then waiting for the next request's
     * header (keep-alive) run on the short timeout again. */
    MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, h->opts.header_timeout_s);
    enum MHD_Result ret = MHD_queue_response(r->conn, r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* snprintf(dst, cap, "%s", src) without the format machinery (every request). */
static void str_copy(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = 0;
}

static void set_reqid(ph_http *h, ph_req *r)
{
    const char *given = req_header(r, "X-Request-Id");
    if (given && ph_ident_valid(given, 40)) {
        str_copy(r->reqid, sizeof r->reqid, given);
        return;
    }
    uint64_t n = atomic_fetch_add(&h->reqid_next, 1);
    snprintf(r->reqid, sizeof r->reqid, "%08x%08llx", h->reqid_prefix, (unsigned long long)n);
}

/* A request whose header is complete: from MHD's connection, or offline. */
static ph_req *req_new(ph_http *h, struct MHD_Connection *conn, ph_offline *off, const char *url,
                       const char *method)
{
    ph_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->env = &h->env;
    r->conn = conn;
    r->off = off;
    r->started_ms = ph_now_ms();
    r->started_us = mono_us();
    r->route_ix = (unsigned)NROUTES; /* "unmatched" until route_find finds one */
    r->cfg = ph_cfg_acquire(h->env.cfg);
    str_copy(r->method, sizeof r->method, method);
    str_copy(r->path, sizeof r->path, url);
    set_reqid(h, r);
    atomic_fetch_add(&h->inflight, 1);
    const char *cl = req_header(r, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > r->cfg->cfg->max_body_bytes)
        r->too_large = 1;
    return r;
}

/* Answers a request before its body is read, or returns 0: the daemon is
 * stopping, the framing is ambiguous, or the body will be too large (MHD drops
 * the rest). Returns 1 with the response set. */
static int req_refused_early(ph_http *h, ph_req *r)
{
    if (atomic_load(&h->stopping)) {
        r->closing = 1;
        ph_req_error(r, 503, "shutting_down", "perkhubd is stopping; retry on another node");
        return 1;
    }
    if (check_framing(r))
        return 1;
    return r->too_large && dispatch(h, r) == PH_REQ_DONE;
}

static int body_append(ph_req *r, const char *data, size_t n)
{
    if (r->too_large || r->body_len + n > r->cfg->cfg->max_body_bytes) {
        r->too_large = 1;
        return 0;
    }
    if (ph_buf_reserve(&r->body, &r->body_cap, r->body_len, r->body_len + n + 1, 4096))
        return -1;
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = 0;
    return 0;
}

/* The access log line, and everything the request owned freed. */
static void req_end(ph_http *h, ph_req *r, int aborted)
{
    /* method and path are the client's text: log.h escapes them */
    ph_metrics_http_observe(h->env.metrics, r->route_ix, r->status, mono_us() - r->started_us);
    ph_log(h->env.log, PH_LOG_INFO, r->reqid, "http.request",
           aborted ? "method=%s path=%s status=%u client=%s ms=%lld aborted=1"
                   : "method=%s path=%s status=%u client=%s ms=%lld",
           r->method, r->path, r->status, r->client ? r->client->name : "-",
           (long long)(ph_now_ms() - r->started_ms));
    json_decref(r->resp);
    text_drop(r);
    ph_cmd_clear(&r->cmd);
    ph_req_audit_free(r->audit);
    if (r->ext_free)
        r->ext_free(r->ext);
    if (r->body) {
        ph_wipe(r->body, r->body_len); /* bodies may hold codes */
        free(r->body);
    }
    ph_wipe(r->account, sizeof r->account);
    ph_cfg_release(r->cfg);
    free(r);
    atomic_fetch_sub(&h->inflight, 1);
}

/* ---- MHD callbacks ------------------------------------------------------ */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **con_cls)
{
    (void)version;
    ph_http *h = cls;
    ph_req *r = *con_cls;
    if (!r) {
        if (!(r = req_new(h, conn, NULL, url, method)))
            return MHD_NO;
        *con_cls = r;
        track_waiting(conn, 0);
        /* The header is complete: the body and the answer get the long timeout
         * (send_response sets the short one back). A suspended connection is
         * never timed out by MHD. */
        MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, h->opts.request_timeout_s);
        if (req_refused_early(h, r))
            return send_response(h, r);
        return MHD_YES;
    }
    if (r->resumed) {
        r->resumed = 0;
        r->pending = 0;
        if (r->resume(r) == PH_REQ_SUSPENDED)
            return MHD_YES; /* the handler went on to another command or a wait */
        return send_response(h, r);
    }
    if (*data_size) {
        if (body_append(r, data, *data_size))
            return MHD_NO;
        *data_size = 0;
        return MHD_YES;
    }
    if (dispatch(h, r) == PH_REQ_SUSPENDED)
        return MHD_YES;
    return send_response(h, r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    ph_http *h = cls;
    ph_req *r = *con_cls;
    if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        track_waiting(conn, 1); /* kept alive: the next header is due in time too */
    if (!r)
        return;
    req_end(h, r, toe != MHD_REQUEST_TERMINATED_COMPLETED_OK);
    *con_cls = NULL;
}

/* Open connections, for the headroom (over_budget), and their tracks for the
 * header deadline. A track that cannot be allocated leaves the connection
 * with MHD's own timeouts only. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code)
{
    ph_http *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        atomic_fetch_add(&h->open_conns, 1);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn_track *t = ci ? calloc(1, sizeof *t) : NULL;
        if (!t)
            return;
        t->fd = ci->connect_fd;
        atomic_store(&t->since_ms, mono_ms());
        atomic_store(&t->waiting, 1);
        pthread_mutex_lock(&h->track_mu);
        t->next = h->tracked;
        if (h->tracked)
            h->tracked->prev = t;
        h->tracked = t;
        pthread_mutex_unlock(&h->track_mu);
        *socket_ctx = t;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        atomic_fetch_sub(&h->open_conns, 1);
        conn_track *t = *socket_ctx;
        if (!t)
            return;
        pthread_mutex_lock(&h->track_mu);
        if (t->prev)
            t->prev->next = t->next;
        else
            h->tracked = t->next;
        if (t->next)
            t->next->prev = t->prev;
        pthread_mutex_unlock(&h->track_mu);
        free(t);
        *socket_ctx = NULL;
    }
}

#define HELD_BATCH 64 /* held answers resumed per pass, outside track_mu */

/* The listener's timer. Once a second: shuts down every connection whose
 * request header is overdue (conn_track; the walk holds track_mu, so no
 * connection closes under it) and ends the auth guard's blocks whose time is
 * up. In between, it sleeps until the earliest held 401 is due (hold_answer
 * signals a new earliest) and resumes the due ones — every one at once when
 * the listener is stopping. Resuming and the guard run with track_mu
 * released: it stays a leaf. */
static void *sweeper_main(void *arg)
{
    ph_http *h = arg;
    int64_t limit = (int64_t)h->opts.header_timeout_s * 1000, next_sweep = 0;
    pthread_mutex_lock(&h->track_mu);
    while (!h->sweep_stop) {
        int64_t now = mono_ms();
        int tick = now >= next_sweep;
        if (tick) {
            for (conn_track *t = h->tracked; t; t = t->next)
                if (atomic_load(&t->waiting) && now - atomic_load(&t->since_ms) >= limit) {
                    atomic_store(&t->waiting, 0); /* once is enough: MHD closes it */
                    shutdown(t->fd, SHUT_RDWR);
                }
            next_sweep = now + 1000;
        }
        ph_req *due[HELD_BATCH];
        size_t n = 0;
        int flush = atomic_load(&h->stopping);
        while (n < HELD_BATCH && h->nheld && (flush || h->held[0].due_ms <= now))
            due[n++] = held_pop(h);
        if (tick || n) {
            pthread_mutex_unlock(&h->track_mu);
            for (size_t i = 0; i < n; i++)
                ph_req_wake(due[i]);
            if (tick)
                ph_auth_guard_tick(h->guard, now);
            pthread_mutex_lock(&h->track_mu);
            continue; /* the time moved on: look again before sleeping */
        }
        int64_t wake = next_sweep;
        if (h->nheld && h->held[0].due_ms < wake)
            wake = h->held[0].due_ms;
        struct timespec ts = {.tv_sec = wake / 1000, .tv_nsec = (wake % 1000) * 1000000};
        pthread_cond_timedwait(&h->sweep_cv, &h->track_mu, &ts);
    }
    pthread_mutex_unlock(&h->track_mu);
    return NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    ph_http *h = cls;
    char msg[256];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    while (n > 0 && (size_t)n < sizeof msg && msg[n - 1] == '\n')
        msg[--n] = 0; /* MHD ends its messages with a newline */
    ph_log(h->env.log, PH_LOG_WARN, NULL, "http.server", "detail=%s", msg);
}

/* Each connection's memory pool: its request line and headers, the read buffer
 * and the response's header lines. MHD zeroes the whole pool after every
 * request (memset of MHD's default 32 KB was ~2.5 % of an order's CPU); an
 * order uses under 2 KB. 16 KB still takes 8 KB of request headers (tested in
 * tests/e2e/test_orders.c); bodies stream through the read buffer. */
#define CONN_MEMORY (16u * 1024u)

/* Frees h once MHD is stopped (its CLOSED notifications freed the tracks;
 * any left are freed here). */
static void http_free(ph_http *h)
{
    while (h->tracked) {
        conn_track *t = h->tracked;
        h->tracked = t->next;
        free(t);
    }
    pthread_cond_destroy(&h->sweep_cv);
    pthread_mutex_destroy(&h->track_mu);
    ph_tls_files_clear(&h->tls);
    ph_auth_guard_free(h->guard);
    free(h->held);
    free(h);
}

int ph_http_start(const ph_http_env *env, const ph_http_opts *opts, ph_http **out, uint16_t *bound,
                  ph_err *err)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(opts->port)};
    if (inet_pton(AF_INET, opts->address, &sa.sin_addr) != 1)
        return ph_err_set(err, PH_EINVAL, "listen.address: '%s' is not an IPv4 address",
                          opts->address);
    ph_http_opts o = *opts;
    if (!o.threads)
        o.threads = 4;
    if (!o.max_connections)
        o.max_connections = PH_HTTP_MAX_CONNECTIONS;
    if (!o.header_timeout_s)
        o.header_timeout_s = PH_HTTP_HEADER_TIMEOUT_S;
    if (!o.request_timeout_s)
        o.request_timeout_s = PH_HTTP_REQUEST_TIMEOUT_S;
    if (o.reserved_connections >= o.max_connections)
        return ph_err_set(err, PH_EINVAL,
                          "http.reserved_connections: expected fewer than max_connections (%u), "
                          "got %u",
                          o.max_connections, o.reserved_connections);
    ph_http *h = calloc(1, sizeof *h);
    if (!h)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    int rc;
    assert(!o.tls_cert == !o.tls_key); /* config.c checks listen.tls so */
    if (o.tls_cert &&
        (rc = ph_tls_files_read(o.tls_cert, o.tls_key, o.tls_client_ca, &h->tls, err))) {
        free(h);
        return rc;
    }
    h->env = *env;
    h->opts = o;
    if ((rc = ph_auth_guard_create(PH_AUTH_GUARD_ADDRESSES, env->metrics, &h->guard, err))) {
        ph_tls_files_clear(&h->tls);
        free(h);
        return rc;
    }
    ph_random_bytes(&h->reqid_prefix, sizeof h->reqid_prefix);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->sweep_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&h->track_mu, NULL);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    /* TLS through libmicrohttpd's GnuTLS; with a client CA it asks every client
     * for a certificate (optional for the handshake: authenticate decides per
     * client) */
    struct MHD_OptionItem tls_opts[4] = {{MHD_OPTION_END, 0, NULL}};
    if (h->tls.cert) {
        flags |= MHD_USE_TLS;
        size_t n = 0;
        tls_opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, h->tls.cert};
        tls_opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, h->tls.key};
        if (h->tls.ca)
            tls_opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, h->tls.ca};
        tls_opts[n] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    }

    /* The daemon-wide timeout is the short one, for a connection that has not
     * sent a complete header (a new one, or a kept-alive one between
     * requests); on_request lengthens it per request. */
    h->mhd = MHD_start_daemon(
        flags, o.port, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE, o.threads,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        h, MHD_OPTION_CONNECTION_TIMEOUT, o.header_timeout_s, MHD_OPTION_CONNECTION_LIMIT,
        o.max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT, o.max_per_address,
        MHD_OPTION_UNESCAPE_CALLBACK, url_unescape, NULL, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY, MHD_OPTION_ARRAY, tls_opts,
        MHD_OPTION_END);
    if (!h->mhd) {
        http_free(h);
        return ph_err_set(err, PH_EIO, "listen: cannot listen on %s:%u (in use, or not allowed)",
                          o.address, o.port);
    }
    if (pthread_create(&h->sweeper, NULL, sweeper_main, h)) {
        MHD_stop_daemon(h->mhd);
        http_free(h);
        return ph_err_set(err, PH_EIO, "listen: cannot start the header deadline's thread");
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    *bound = info ? info->port : o.port;
    *out = h;
    return PH_OK;
}

/* ---- offline requests ---------------------------------------------------------- */

static int hex_value(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* %xx decoded in place as libmicrohttpd's default unescaper does (an invalid
 * escape stays as written), '+' as a space when plus, and %00 as C0 80 (see
 * url_unescape); returns the new length. */
static size_t url_decode(char *s, int plus)
{
    char *w = s;
    for (const char *p = s; *p; p++) {
        int hi, lo;
        if (*p == '%' && (hi = hex_value(p[1])) >= 0 && (lo = hex_value(p[2])) >= 0) {
            if (hi == 0 && lo == 0) { /* the overlong NUL, as url_unescape */
                *w++ = (char)0xC0;
                *w++ = (char)0x80;
            } else {
                *w++ = (char)(hi << 4 | lo);
            }
            p += 2;
        } else {
            *w++ = plus && *p == '+' ? ' ' : *p;
        }
    }
    *w = 0;
    return (size_t)(w - s);
}

static void offline_clear(ph_offline *o)
{
    for (size_t i = 0; i < o->nh; i++) {
        free(o->hk[i]);
        free(o->hv[i]);
    }
    for (size_t i = 0; i < o->nq; i++) {
        free(o->qk[i]);
        free(o->qv[i]);
    }
    free(o->hk);
    free(o->hv);
    free(o->qk);
    free(o->qv);
}

/* "Name: value" lines into names and values (value trimmed as MHD does). */
static int offline_headers(ph_offline *o, const char *const *lines)
{
    size_t n = 0;
    while (lines && lines[n])
        n++;
    o->hk = calloc(n + 1, sizeof *o->hk);
    o->hv = calloc(n + 1, sizeof *o->hv);
    if (!o->hk || !o->hv)
        return PH_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *colon = strchr(lines[i], ':');
        if (!colon || colon == lines[i])
            return PH_EINVAL;
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t vl = strlen(v);
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        o->hk[o->nh] = strndup(lines[i], (size_t)(colon - lines[i]));
        o->hv[o->nh] = strndup(v, vl);
        if (!o->hk[o->nh] || !o->hv[o->nh]) {
            free(o->hk[o->nh]);
            free(o->hv[o->nh]);
            return PH_ENOMEM;
        }
        o->nh++;
    }
    return PH_OK;
}

/* The query after '?' split at '&' and '=' and decoded, as MHD does: "a" and
 * "a&" give a key with a NULL value. */
static int offline_query(ph_offline *o, const char *q)
{
    size_t n = 1;
    for (const char *p = q; *p; p++)
        n += *p == '&';
    o->qk = calloc(n, sizeof *o->qk);
    o->qv = calloc(n, sizeof *o->qv);
    if (!o->qk || !o->qv)
        return PH_ENOMEM;
    while (*q) {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        char *k = strndup(q, eq ? (size_t)(eq - q) : len);
        char *v = eq ? strndup(eq + 1, len - (size_t)(eq + 1 - q)) : NULL;
        if (!k || (eq && !v)) {
            free(k);
            free(v);
            return PH_ENOMEM;
        }
        url_decode(k, 1);
        if (v)
            url_decode(v, 1);
        o->qk[o->nq] = k;
        o->qv[o->nq++] = v;
        q += len;
        if (*q == '&')
            q++;
    }
    return PH_OK;
}

int ph_http_serve_offline(ph_http *h, const char *method, const char *url,
                          const char *const *header_lines, const char *body, size_t len,
                          unsigned *status, char **resp_body, size_t *resp_len)
{
    ph_offline o = {0};
    char *path = strdup(url);
    if (!path)
        return PH_ENOMEM;
    char *q = strchr(path, '?');
    if (q)
        *q++ = 0;
    int rc = offline_headers(&o, header_lines);
    if (rc == PH_OK && q)
        rc = offline_query(&o, q);
    if (rc != PH_OK) {
        offline_clear(&o);
        free(path);
        return rc;
    }
    url_decode(path, 0);
    pthread_mutex_init(&o.mu, NULL);
    pthread_cond_init(&o.cv, NULL);
    ph_req *r = req_new(h, NULL, &o, path, method);
    free(path);
    if (!r) {
        rc = PH_ENOMEM;
        goto done;
    }
    int step = PH_REQ_DONE;
    if (!req_refused_early(h, r)) {
        if (body_append(r, body ? body : "", len)) {
            req_end(h, r, 1);
            rc = PH_ENOMEM;
            goto done;
        }
        step = dispatch(h, r);
    }
    while (step == PH_REQ_SUSPENDED) {
        pthread_mutex_lock(&o.mu);
        while (!o.woken)
            pthread_cond_wait(&o.cv, &o.mu);
        o.woken = 0;
        pthread_mutex_unlock(&o.mu);
        r->pending = 0;
        step = r->resume(r);
    }
    const char *type;
    size_t n = 0;
    MHD_ContentReaderFreeCallback release;
    char *txt = body_take(r, &n, &type, &release);
    if (txt && release != body_free) { /* jansson's memory: the caller frees with free() */
        char *copy = malloc(n + 1);
        if (copy)
            memcpy(copy, txt, n + 1);
        release(txt);
        txt = copy;
    }
    *status = txt ? r->status : 500;
    *resp_body = txt;
    *resp_len = n;
    rc = txt ? PH_OK : PH_ENOMEM;
    req_end(h, r, 0);
done:
    pthread_cond_destroy(&o.cv);
    pthread_mutex_destroy(&o.mu);
    offline_clear(&o);
    return rc;
}

void ph_http_quiesce(ph_http *h)
{
    if (!h)
        return;
    atomic_store(&h->stopping, 1);
    pthread_mutex_lock(&h->track_mu); /* the held 401s go now (sweeper_main) */
    pthread_cond_signal(&h->sweep_cv);
    pthread_mutex_unlock(&h->track_mu);
}

int ph_http_inflight(ph_http *h)
{
    return h ? atomic_load(&h->inflight) : 0;
}

void ph_http_stop(ph_http *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->track_mu);
    h->sweep_stop = 1;
    pthread_cond_signal(&h->sweep_cv);
    pthread_mutex_unlock(&h->track_mu);
    pthread_join(h->sweeper, NULL);
    /* a held 401 left (stopped without quiescing first) is answered now:
     * libmicrohttpd must not be stopped with a connection suspended */
    while (h->nheld)
        ph_req_wake(held_pop(h));
    if (h->mhd)
        MHD_stop_daemon(h->mhd);
    http_free(h);
}
