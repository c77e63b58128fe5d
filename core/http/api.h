/*
 * api.h — what an HTTP handler sees: one request, its authenticated client and
 * configuration snapshot, its body, and the helpers that set the response.
 * Shared by http_api.c (which owns ph_req) and the api_*.c handlers.
 *
 * Ownership: http_api.c creates a ph_req when a request's header is complete
 * (or ph_http_serve_offline is called) and frees it, with everything it owns (body, resp, text, cmd
 * results, ext), when libmicrohttpd reports the request completed. A handler borrows it and keeps
 * no pointer to it past the request; whatever a suspended request hands to another thread (r
 * itself, r->cmd) must not be touched by that thread after it called ph_req_wake.
 *
 * Threads: a request runs on one libmicrohttpd pool thread at a time — the
 * handler, and after a wake its `resume`, possibly on another pool thread (an
 * offline request: on the caller's thread, which waits for the wake). Every
 * function here is for that thread only, except ph_req_wake (any thread).
 *
 * A handler returns PH_REQ_DONE with a response set (ph_req_json, _text, _error,
 * _fail), or PH_REQ_SUSPENDED after ph_req_submit or ph_req_suspend; its
 * `resume` returns the same way. A request whose handler sets no response is
 * answered 500 internal_error.
 */
#ifndef PH_API_H
#define PH_API_H

#include <jansson.h>
#include <microhttpd.h>

#include "http/http_api.h"

enum { PH_REQ_DONE = 0, PH_REQ_SUSPENDED = 1 };

typedef struct ph_req ph_req;
typedef int (*ph_handler_fn)(ph_req *r);
typedef struct ph_offline ph_offline; /* http_api.c: a request without a socket */

struct ph_req {
    const ph_http_env *env;       /* the services a handler may call (the listener's copy) */
    struct MHD_Connection *conn;  /* NULL for an offline request (ph_http_serve_offline) */
    ph_offline *off;              /* its headers, query and wake-up; NULL with a connection */
    ph_cfg_ref *cfg;              /* held for the whole request */
    const ph_client_conf *client; /* NULL on unauthenticated routes */
    char method[8];
    char path[256];
    char reqid[48];
    char seg[3][160]; /* the path's '*' segments, URL-decoded, checked by ph_text_invalid */
    char arg[2][264]; /* handler scratch that must outlive a suspension */
    char *body;       /* the request body, NUL-terminated; owned here */
    size_t body_len, body_cap;
    int too_large;
    int64_t started_ms;
    int64_t started_us; /* monotonic, for the request latency metric */
    unsigned route_ix;  /* index of its route (metrics); the route count when none matched */

    /* response */
    unsigned status;
    json_t *resp;                 /* owned; sent and freed by http_api.c */
    const char *replay_header;    /* "true" adds Idempotent-Replay */
    int closing;                  /* 1 adds Connection: close (the daemon is stopping) */
    int raw_body;                 /* 1: resp is a JSON string sent as is (callback answers) */
    const char *raw_content_type; /* static; with raw_body or text */
    char *text;      /* set by ph_req_text: the body as is, NUL-terminated; owned, wiped */
    size_t text_len; /* bytes of text, without the NUL */
    /* set by ph_req_file: a body streamed from an open file (a snapshot);
     * fd is 1 + the descriptor (0 = none), owned, closed once sent */
    struct {
        int fd;
        uint64_t len;
        char name[64];     /* Content-Disposition's filename; "" = none */
        char repl_seq[24]; /* X-Perkhub-Repl-Seq; "" = none */
    } file;
    const char *const *headers; /* static: more header lines, name then value, NULL-ended */
    char retry_after[12];       /* non-empty: a Retry-After header (seconds; a 429) */
    char leader_url[256];       /* non-empty: an X-Perkhub-Leader header (503 not_leader) */
    /* a standby's answer states how old its data may be (dispatch):
     * X-Perkhub-Staleness-Ms ("unknown" when -1) and X-Perkhub-Applied-Seq */
    int repl_standby;
    int64_t stale_ms;
    uint64_t applied_seq;

    /* a handler that suspends sets `resume`, called when it is resumed */
    ph_handler_fn resume;
    int resumed;
    ph_cmd cmd;      /* the command a suspended request waits for */
    uint8_t pending; /* 1 while the command is with the writer */

    /* POST /v1/orders to a supplier (api_orders.c); the account is wiped */
    char account[72];
    uint8_t account_sealed[128];
    uint32_t account_sealed_len;
    char account_masked[32];
    unsigned wait_s;
    uint64_t order_id;

    /* the audit record of an ops action (ph_req_audit, api_audit.c), NULL
     * until then: lives as long as r, so as long as the command it is handed
     * to; freed with r (ph_req_audit_free) */
    struct ph_req_audit *audit;

    /* handler state that outlives a suspension; freed with ext_free at the end */
    void *ext;
    void (*ext_free)(void *ext);
};

#define PH_ACCOUNT_MAX 64 /* bytes of a recharge account */

/* Sets a JSON error response {"error": code, "message": the formatted text,
 * "request_id"}, replacing any response set before; returns PH_REQ_DONE. The
 * message is sent to the client as is: never format a code, an account or a
 * token into it (docs/design.md rule 3). */
int ph_req_error(ph_req *r, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Sets the error response for a PH_E* status: "error" is ph_strerror(rc), the
 * message err->msg (or the name when err is NULL or empty), and the HTTP status
 * PH_EINVAL 400, PH_ENOTFOUND 404, PH_ECONFLICT / PH_ENOSTOCK / PH_ESTATE /
 * PH_EDUP 409, PH_ESKU / PH_ELIMIT 422, PH_ESHUTDOWN 503, anything else 500
 * (also logged as http.internal_error). Returns PH_REQ_DONE. */
int ph_req_fail(ph_req *r, int rc, const ph_err *err);
/* Sets a JSON response, replacing any set before. Takes body in every case; a
 * NULL body (jansson out of memory) is answered 500. Returns PH_REQ_DONE. */
int ph_req_json(ph_req *r, unsigned status, json_t *body);
/* Sets a response whose body is text (len bytes, NUL-terminated, malloc'd),
 * sent as is with content_type (static). Takes ownership of text in every
 * case: it is wiped and freed once sent or when the request ends (it may hold
 * codes). Returns PH_REQ_DONE. */
int ph_req_text(ph_req *r, unsigned status, char *text, size_t len, const char *content_type);
/* Sets a response whose body is len bytes of the open file fd, streamed by
 * libmicrohttpd from the file (never read whole into memory; an offline
 * request reads it), application/octet-stream, with Content-Disposition
 * naming `name` and X-Perkhub-Repl-Seq `repl_seq` when not NULL. Takes fd in
 * every case (closed once sent, or when the request ends). PH_REQ_DONE. */
int ph_req_file(ph_req *r, unsigned status, int fd, uint64_t len, const char *name,
                const char *repl_seq);
/* A query argument, URL-decoded, or NULL when absent (also for a key given
 * without '='). Owned by libmicrohttpd (or the offline request), valid for the
 * request's life (across a suspension too). On a route that declares its
 * parameters, every value was checked before the handler ran: no NUL (a %00 is
 * refused, not cut off) and valid UTF-8 (ph_text_invalid). */
const char *ph_req_query(ph_req *r, const char *key);
/* The query string rebuilt from its parameters as received, in their order:
 * keys and values URL-decoded, then percent-encoded again (RFC 3986
 * unreserved characters as they are), "key" alone for a key given without
 * '='; "" when there is none. So a signature over the decoded values checks
 * as it would over the original text (the raw text is not kept by
 * libmicrohttpd). A new string the caller frees (free), or NULL when out of
 * memory. */
char *ph_req_query_string(ph_req *r);
/* A paged list's `after` (a number; *after keeps its default when absent) and
 * `limit` (1..max; *limit keeps its default when absent). Returns 0, or sets
 * a 400 naming the parameter and returns -1 (the handler returns PH_REQ_DONE). */
int ph_req_page(ph_req *r, uint64_t *after, uint64_t *limit, uint64_t max);
/* The first request header of that name (any case), or NULL; same lifetime. */
const char *ph_req_header(ph_req *r, const char *name);
/* Parses the body as a JSON object (duplicate keys refused) into *out, a new
 * reference the caller decrefs, and returns 0. On failure sets a 400
 * invalid_request naming the line and column (never quoting the body, which may
 * hold a code; a repeated key, a number out of range, invalid UTF-8 and a
 * \u0000 are said as such), leaves *out untouched and returns -1. */
int ph_req_body_json(ph_req *r, json_t **out);
/* ph_req_body_json for an endpoint that takes the fields named in `fields`
 * (space-separated, static): a key given twice or a number out of range names
 * the field when it is one of them; any other key is refused as "body: unknown
 * field (key N of the object; ...)", by its position, never quoted. */
int ph_req_body_fields(ph_req *r, const char *fields, json_t **out);
/* 1 when the request's client has any of the scopes (PH_SCOPE_*), else 0 (also on
 * an unauthenticated route, where r->client is NULL). */
int ph_req_has_scope(const ph_req *r, unsigned scope);

/* Suspends the connection and hands r->cmd (type, now and inputs filled by the
 * handler; its done and arg are set here) to the store's writer. Once the
 * command's batch is durable the writer wakes the request and `resume` runs on a
 * pool thread with the results in r->cmd (rc may be an error: resume answers
 * it). Returns PH_REQ_SUSPENDED, or PH_REQ_DONE with the error response when the
 * store takes no command (PH_ESHUTDOWN: 503). r->cmd's results are cleared when
 * the request ends. */
int ph_req_submit(ph_req *r, ph_handler_fn resume);

/* Marks cmd as the ops action `action` (store.h, ph_audit: [a-z0-9_.], e.g.
 * "batch.void") done by this request: the token's client, the peer's address,
 * the request id (the X-Request-Id of the response) and `what`, a JSON object
 * of ids and counts (taken in every case; never a code, an account, a token or
 * text the caller typed). The writer stores the record in the command's own
 * transaction when the command applies. One line per ops handler, before the
 * command is submitted:
 *
 *     ph_req_audit(r, &r->cmd, "orders.settle", json_pack("{s:I}", "order_id", id));
 *
 * cmd may be NULL for a command built elsewhere (an import): the return value
 * is then handed to it. Returns the record, valid for the request's life
 * (action must be static). A `what` that is NULL (jansson out of memory) or
 * over PH_AUDIT_WHAT_MAX bytes, or no memory for the record, makes the writer
 * refuse the command (PH_EINVAL naming audit.what or audit.action): an ops
 * action is never done unaudited. One audit per request (a second call
 * replaces the first). */
const ph_audit *ph_req_audit(ph_req *r, ph_cmd *cmd, const char *action, json_t *what);
/* Frees r->audit (http_api.c, when the request ends). NULL is a no-op. */
void ph_req_audit_free(struct ph_req_audit *a);

/* Suspends the connection until ph_req_wake(r); `resume` then builds the
 * response on a pool thread. Suspend first, then hand r to whoever will wake it:
 * the wake may come at once, even before the handler returns. Returns
 * PH_REQ_SUSPENDED. */
int ph_req_suspend(ph_req *r, ph_handler_fn resume);

/* Resumes a suspended request. Exactly once per suspension, from any thread
 * (the writer, the I/O thread, fulfil's threads); keep no pointer to r after it. */
void ph_req_wake(ph_req *r);

/* The request's header lines as "Name: value", in a NULL-terminated array the
 * caller owns and frees with ph_req_headers_free (an empty array when there are
 * none); *n gets their number. NULL (and *n = 0) when out of memory. */
char **ph_req_headers(ph_req *r, size_t *n);
void ph_req_headers_free(char **lines);

/* Handlers (api_*.c), one per route of http_api.c, each on the request's pool
 * thread: authentication and scopes are checked before the handler runs. */
int ph_api_health(ph_req *r);
/* api_risk.c: risk rules and lists (issue 15) */
int ph_api_risk_rules(ph_req *r);
int ph_api_risk_rule_create(ph_req *r);
int ph_api_risk_rule_replace(ph_req *r);
int ph_api_risk_rule_remove(ph_req *r);
int ph_api_risk_rule_versions(ph_req *r);
int ph_api_risk_lists(ph_req *r);
int ph_api_risk_list_add(ph_req *r);
int ph_api_risk_list_remove(ph_req *r);
int ph_api_ready(ph_req *r);
int ph_api_products_list(ph_req *r);
int ph_api_product_get(ph_req *r);
int ph_api_batch_import(ph_req *r);
int ph_api_batch_get(ph_req *r);
int ph_api_batch_list(ph_req *r);
int ph_api_batch_void(ph_req *r);
int ph_api_order_create(ph_req *r);
int ph_api_order_get(ph_req *r);
int ph_api_order_list(ph_req *r);
int ph_api_order_settle(ph_req *r);
/* api_reviews.c: the review queue of held orders (issue 15) */
int ph_api_review_list(ph_req *r);
int ph_api_review_release(ph_req *r);
int ph_api_review_block(ph_req *r);
/* grants (issue 16; api_grants.c) */
int ph_api_grant_claim(ph_req *r);
int ph_api_grant_gift(ph_req *r);
int ph_api_grant_extend(ph_req *r);
int ph_api_grant_get(ph_req *r);
int ph_api_grant_list(ph_req *r);
int ph_api_grant_batch(ph_req *r);
int ph_api_grant_batch_csv(ph_req *r);
int ph_api_code_lookup(ph_req *r);
int ph_api_events(ph_req *r);
int ph_api_suppliers(ph_req *r);
/* The state a supplier is shown in (GET /v1/suppliers, /metrics): its
 * listing's, except auth_failed for a ready one whose credentials are refused
 * (then error[] gets why). Static string. api_ops.c. */
struct ph_supplier_info;
struct ph_sio_health;
const char *ph_api_supplier_state(struct ph_supplier_info *info, const struct ph_sio_health *h);
int ph_api_stats(ph_req *r);
int ph_api_callback(ph_req *r);
int ph_api_supplier_catalog(ph_req *r);
/* api_sync.c: POST /v1/suppliers/{id}/sync (ops; body optional {"what":
 * "catalog"|"stock"|"all"}): triggers the supplier's sync jobs, 202 with the
 * job ids queued; audited. POST /v1/products/{sku}/pin (ops; {"pin":
 * "listed"|"delisted"|"none"}): PH_CMD_PIN; audited. */
int ph_api_supplier_sync(ph_req *r);
int ph_api_product_pin(ph_req *r);
/* The `sync` member of a supplier in GET /v1/suppliers: its catalog and stock
 * jobs' period, last run (at, ok, error or outcome) and next run, null for a
 * job it does not have. A new reference. */
json_t *ph_api_supplier_sync_view(ph_req *r, const char *supplier);
int ph_api_supplier_balance(ph_req *r);
int ph_api_metrics(ph_req *r);
int ph_api_audit(ph_req *r);
int ph_api_ledger(ph_req *r);  /* api_ledger.c: GET /v1/ledger, /v1/ledger.csv */
int ph_api_reports(ph_req *r); /* api_ledger.c: GET /v1/reports, /v1/reports.csv */
/* api_analytics.c: GET /v1/analytics/{top,hours,claims,co} */
int ph_api_analytics_top(ph_req *r);
int ph_api_analytics_hours(ph_req *r);
int ph_api_analytics_claims(ph_req *r);
int ph_api_analytics_co(ph_req *r);
/* api_recon.c: statements and reconciliation runs */
int ph_api_statement_import(ph_req *r);
int ph_api_statement_fetch(ph_req *r);
int ph_api_recon_list(ph_req *r);
int ph_api_recon_get(ph_req *r);
int ph_api_recon_csv(ph_req *r);
/* api_alerts.c (issue 12): the list and the acknowledgement; the open count
 * ({open, by_kind}) health shows; a supplier's last balance ({balance, at},
 * or JSON null when none was read) GET /v1/suppliers shows. */
int ph_api_alert_list(ph_req *r);
int ph_api_alert_ack(ph_req *r);
json_t *ph_api_alerts_open(ph_store *s);
json_t *ph_api_supplier_balance_view(ph_store *s, const char *supplier);
/* api_replenish.c (issue 12): GET /v1/replenishments */
int ph_api_replenish_list(ph_req *r);

/* api_discrep.c (issue 11) */
int ph_api_discrep_list(ph_req *r);
int ph_api_discrep_get(ph_req *r);
int ph_api_discrep_accept(ph_req *r);
int ph_api_discrep_dispute(ph_req *r);
int ph_api_ops_page(ph_req *r);
int ph_api_order_stats(ph_req *r);
/* api_jobs.c: the scheduler's jobs */
int ph_api_jobs(ph_req *r);
int ph_api_job_run(ph_req *r);
/* api_snapshots.c: the snapshot directory (repl/snap.h) */
int ph_api_snapshots(ph_req *r);
int ph_api_snapshot_latest(ph_req *r);
/* api_webhooks.c (issue 13): endpoints, deliveries, replay, enable, and the
 * webhook families of GET /metrics */
int ph_api_webhooks(ph_req *r);
int ph_api_webhook_deliveries(ph_req *r);
int ph_api_webhook_replay(ph_req *r);
int ph_api_webhook_enable(ph_req *r);
struct ph_mx;
void ph_api_webhook_metrics(struct ph_mx *mx, ph_req *r);

#endif
