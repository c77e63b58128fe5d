/*
 * http_api.c — libmicrohttpd server: routing, auth, bodies, responses, logs.
 *
 * Threading: a pool of MHD threads, each running its own epoll loop. Reads
 * are answered on the pool thread. Orders and batch voids hand their command
 * to the store and suspend the connection; the writer's completion callback
 * resumes it after the durable commit, so a few pool threads keep hundreds of
 * orders in one group commit instead of one per thread. A CSV import still
 * parses, seals and waits for its commit on the pool thread (rare, ops only).
 */
#include "http/http_api.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http/api.h"
#include "base/util.h"

struct ph_http {
    struct MHD_Daemon *mhd;
    ph_http_env env;       /* the services handlers may call, borrowed from the starter */
    uint32_t reqid_prefix; /* random per listener: request ids stay unique across restarts */
    atomic_uint_fast64_t reqid_next;
    atomic_int inflight;
    /* Set when the daemon stops: new requests get 503 while those already
     * received finish. (MHD_quiesce_daemon is not used: with epoll and a thread
     * pool, libmicrohttpd 0.9.75 can abort removing the listen socket.) */
    atomic_int stopping;
};

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

static const ph_route routes[] = {
    {"GET", "/v1/health", 0, ph_api_health, NULL},
    {"GET", "/v1/ready", 0, ph_api_ready, NULL},
    {"GET", "/v1/products", ANY_SCOPE, ph_api_products_list, "brand tag category"},
    {"GET", "/v1/products/*", ANY_SCOPE, ph_api_product_get, NULL},
    {"POST", "/v1/batches", PH_SCOPE_OPS, ph_api_batch_import, "supplier sku unit_cost note"},
    {"GET", "/v1/batches/*", PH_SCOPE_OPS, ph_api_batch_get, NULL},
    {"POST", "/v1/batches/*/void", PH_SCOPE_OPS, ph_api_batch_void, NULL},
    {"POST", "/v1/orders", PH_SCOPE_FULFILL, ph_api_order_create, NULL},
    {"GET", "/v1/orders", ANY_SCOPE, ph_api_order_list, "after limit client_order_id"},
    {"GET", "/v1/orders/*", ANY_SCOPE, ph_api_order_get, NULL},
    {"POST", "/v1/codes/lookup", PH_SCOPE_SUPPORT | PH_SCOPE_OPS, ph_api_code_lookup, NULL},
    {"GET", "/v1/events", PH_SCOPE_OPS, ph_api_events, "after limit"},
    {"GET", "/v1/suppliers", PH_SCOPE_OPS, ph_api_suppliers, NULL},
    {"GET", "/v1/suppliers/*/catalog", PH_SCOPE_OPS, ph_api_supplier_catalog, NULL},
    {"GET", "/v1/suppliers/*/balance", PH_SCOPE_OPS, ph_api_supplier_balance, NULL},
    {"GET", "/v1/stats", PH_SCOPE_OPS, ph_api_stats, NULL},
    /* suppliers authenticate by signature, checked by their plugin; their
     * notify URLs may carry the supplier's own parameters */
    {"POST", "/v1/callbacks/*", 0, ph_api_callback, PARAMS_ANY},
};

static void str_copy(char *dst, size_t cap, const char *src);

/* ---- responses ------------------------------------------------------------ */

static void text_drop(ph_req *r)
{
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
        status = 503;
        break;
    default:
        status = 500;
        break;
    }
    const char *msg = err && err->msg[0] ? err->msg : ph_strerror(rc);
    if (status == 500)
        ph_log(r->env->log, PH_LOG_ERROR, r->reqid, "http.internal_error", "error=\"%s\"", msg);
    return ph_req_error(r, status, ph_strerror(rc), "%s", msg);
}

const char *ph_req_query(ph_req *r, const char *key)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

int ph_req_body_json(ph_req *r, json_t **out)
{
    json_error_t je;
    json_t *j = json_loadb(r->body ? r->body : "", r->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        /* je.text may quote the input; report position only, bodies can hold codes */
        ph_req_error(r, 400, "invalid_request", "body: malformed JSON at line %d, column %d",
                     je.line, je.column);
        return -1;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        ph_req_error(r, 400, "invalid_request", "body: expected a JSON object");
        return -1;
    }
    *out = j;
    return 0;
}

int ph_req_has_scope(const ph_req *r, unsigned scope)
{
    return r->client && (r->client->scopes & scope);
}

/* ---- suspend / resume ----------------------------------------------------- */

int ph_req_suspend(ph_req *r, ph_handler_fn resume)
{
    r->resume = resume;
    MHD_suspend_connection(r->conn);
    return PH_REQ_SUSPENDED;
}

void ph_req_wake(ph_req *r)
{
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
                                   const char *value)
{
    (void)kind;
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
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, hdr_collect, &a);
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
            if (n == 0 || n >= sizeof r->seg[0] || nseg == 2)
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

static const ph_route *route_find(ph_req *r, int *path_known)
{
    *path_known = 0;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (!match(routes[i].pattern, r->path, r))
            continue;
        *path_known = 1;
        if (strcmp(routes[i].method, r->method) == 0)
            return &routes[i];
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

/* Bearer authentication against the request's configuration snapshot. */
static int authenticate(ph_http *h, ph_req *r, const ph_route *rt)
{
    if (!rt->scopes)
        return 0;
    const char *hv = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    if (!hv || strncasecmp(hv, "Bearer ", 7) != 0) {
        ph_req_error(r, 401, "unauthorized", "Authorization: expected 'Bearer <token>'");
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
        return -1;
    }
    if (r->client->loopback_only) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (!ci || !ph_http_peer_is_loopback(ci->client_addr)) {
            ph_req_error(r, 403, "forbidden",
                         "client '%s' is loopback_only (its token is published, e.g. a demo "
                         "token): refused from a non-loopback address",
                         r->client->name);
            return -1;
        }
    }
    if (!(r->client->scopes & rt->scopes)) {
        ph_req_error(r, 403, "forbidden", "client '%s' lacks the scope %s needs", r->client->name,
                     rt->scopes & PH_SCOPE_OPS && !(rt->scopes & PH_SCOPE_SUPPORT) ? "ops"
                     : rt->scopes & PH_SCOPE_SUPPORT ? "support or ops"
                                                     : "fulfill");
        return -1;
    }
    return 0;
}

/* Is key one of the space-separated names in list? */
static int param_listed(const char *list, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ' ');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && memcmp(p, key, n) == 0)
            return 1;
        p = end ? end + 1 : p + len;
    }
    return 0;
}

typedef struct param_check {
    const char *allowed;
    char bad[64];     /* the first refused parameter, cut */
    const char *why;  /* "unknown" or "repeated" */
    char seen[8][32]; /* allowed parameters met so far (routes take at most four) */
    size_t nseen;
} param_check;

static enum MHD_Result param_visit(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    (void)value; /* values may be anything a client typed: never quoted back */
    param_check *pc = cls;
    if (!param_listed(pc->allowed, key))
        pc->why = "unknown";
    for (size_t i = 0; !pc->why && i < pc->nseen; i++)
        if (strcmp(pc->seen[i], key) == 0)
            pc->why = "repeated";
    if (pc->why) {
        str_copy(pc->bad, sizeof pc->bad, key);
        return MHD_NO;
    }
    if (pc->nseen < sizeof pc->seen / sizeof pc->seen[0])
        str_copy(pc->seen[pc->nseen++], sizeof pc->seen[0], key);
    return MHD_YES;
}

/* Every query parameter must be one the route declares, each at most once. */
static int check_params(ph_req *r, const ph_route *rt)
{
    if (rt->params && strcmp(rt->params, PARAMS_ANY) == 0)
        return 0;
    param_check pc = {.allowed = rt->params};
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, param_visit, &pc);
    if (!pc.why)
        return 0;
    for (char *p = pc.bad; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '"' || *p == '\\')
            *p = '?'; /* the message stays one clean line */
    char takes[160], list[96] = "";
    size_t n = 0;
    for (const char *p = rt->params; p && *p && n + 3 < sizeof list; p++) { /* "a, b, c" */
        if (*p == ' ')
            list[n++] = ',';
        list[n++] = *p;
    }
    list[n] = 0;
    if (!rt->params)
        snprintf(takes, sizeof takes, "%s %s takes no query parameters", rt->method, rt->pattern);
    else
        snprintf(takes, sizeof takes, "%s %s takes %s", rt->method, rt->pattern, list);
    if (strcmp(pc.why, "repeated") == 0)
        ph_req_error(r, 400, "invalid_request", "query: parameter '%s' given more than once",
                     pc.bad);
    else
        ph_req_error(r, 400, "invalid_request", "query: unknown parameter '%s' (%s)", pc.bad,
                     takes);
    return -1;
}

static int dispatch(ph_http *h, ph_req *r)
{
    int known;
    const ph_route *rt = route_find(r, &known);
    if (!rt && known)
        return ph_req_error(r, 405, "method_not_allowed", "%s is not allowed on %s", r->method,
                            r->path);
    if (!rt)
        return ph_req_error(r, 404, "not_found", "no such endpoint (see docs/api.md)");
    if (r->too_large)
        return ph_req_error(r, 413, "payload_too_large", "body: larger than %llu bytes",
                            (unsigned long long)r->cfg->cfg->max_body_bytes);
    if (authenticate(h, r, rt) || check_params(r, rt))
        return PH_REQ_DONE;
    return rt->fn(r);
}

/* ---- MHD callbacks ------------------------------------------------------ */

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

static enum MHD_Result send_response(ph_req *r)
{
    size_t len;
    const char *type;
    MHD_ContentReaderFreeCallback release;
    char *txt = body_take(r, &len, &type, &release);
    struct MHD_Response *resp =
        txt ? MHD_create_response_from_buffer_with_free_callback_cls(len, txt, release, txt)
            : MHD_create_response_from_buffer(0, (char *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        if (txt)
            release(txt);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", type);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Request-Id", r->reqid);
    if (r->replay_header)
        MHD_add_response_header(resp, "Idempotent-Replay", r->replay_header);
    if (r->closing)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
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
    const char *given = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Request-Id");
    if (given && ph_ident_valid(given, 40)) {
        str_copy(r->reqid, sizeof r->reqid, given);
        return;
    }
    uint64_t n = atomic_fetch_add(&h->reqid_next, 1);
    snprintf(r->reqid, sizeof r->reqid, "%08x%08llx", h->reqid_prefix, (unsigned long long)n);
}

static ph_req *req_new(ph_http *h, struct MHD_Connection *conn, const char *url, const char *method)
{
    ph_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->env = &h->env;
    r->conn = conn;
    r->started_ms = ph_now_ms();
    r->cfg = ph_cfg_acquire(h->env.cfg);
    str_copy(r->method, sizeof r->method, method);
    str_copy(r->path, sizeof r->path, url);
    set_reqid(h, r);
    atomic_fetch_add(&h->inflight, 1);
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > r->cfg->cfg->max_body_bytes)
        r->too_large = 1;
    return r;
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

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **con_cls)
{
    (void)version;
    ph_http *h = cls;
    ph_req *r = *con_cls;
    if (!r) {
        if (!(r = req_new(h, conn, url, method)))
            return MHD_NO;
        *con_cls = r;
        if (atomic_load(&h->stopping)) {
            r->closing = 1;
            ph_req_error(r, 503, "shutting_down", "perkhubd is stopping; retry on another node");
            return send_response(r);
        }
        /* refuse an oversize upload before reading it; MHD drops the rest */
        if (r->too_large)
            return dispatch(h, r) == PH_REQ_DONE ? send_response(r) : MHD_NO;
        return MHD_YES;
    }
    if (r->resumed) {
        r->resumed = 0;
        r->pending = 0;
        if (r->resume(r) == PH_REQ_SUSPENDED)
            return MHD_YES; /* the handler went on to another command or a wait */
        return send_response(r);
    }
    if (*data_size) {
        if (body_append(r, data, *data_size))
            return MHD_NO;
        *data_size = 0;
        return MHD_YES;
    }
    if (dispatch(h, r) == PH_REQ_SUSPENDED)
        return MHD_YES;
    return send_response(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    ph_http *h = cls;
    ph_req *r = *con_cls;
    if (!r)
        return;
    ph_log(h->env.log, PH_LOG_INFO, r->reqid, "http.request",
           "method=%s path=%s status=%u client=%s ms=%lld%s", r->method, r->path, r->status,
           r->client ? r->client->name : "-", (long long)(ph_now_ms() - r->started_ms),
           toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=1");
    json_decref(r->resp);
    text_drop(r);
    ph_cmd_clear(&r->cmd);
    if (r->ext_free)
        r->ext_free(r->ext);
    if (r->body) {
        ph_wipe(r->body, r->body_len); /* bodies may hold codes */
        free(r->body);
    }
    ph_wipe(r->account, sizeof r->account);
    ph_cfg_release(r->cfg);
    free(r);
    *con_cls = NULL;
    atomic_fetch_sub(&h->inflight, 1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    ph_http *h = cls;
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    for (char *p = msg; *p; p++)
        if (*p == '"')
            *p = '\'';
    ph_log(h->env.log, PH_LOG_WARN, NULL, "http.server", "detail=\"%s\"", msg);
}

/* Each connection's memory pool: its request line and headers, the read buffer
 * and the response's header lines. MHD zeroes the whole pool after every
 * request (memset of MHD's default 32 KB was ~2.5 % of an order's CPU); an
 * order uses under 2 KB. 16 KB still takes 8 KB of request headers (tested in
 * tests/e2e/test_orders.c); bodies stream through the read buffer. */
#define CONN_MEMORY (16u * 1024u)

int ph_http_start(const ph_http_env *env, const char *address, uint16_t port, unsigned threads,
                  ph_http **out, uint16_t *bound, ph_err *err)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, address, &sa.sin_addr) != 1)
        return ph_err_set(err, PH_EINVAL, "listen.address: '%s' is not an IPv4 address", address);
    ph_http *h = calloc(1, sizeof *h);
    if (!h)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    h->env = *env;
    ph_random_bytes(&h->reqid_prefix, sizeof h->reqid_prefix);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;

    h->mhd = MHD_start_daemon(
        flags, port, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE,
        threads ? threads : 4, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_CONNECTION_TIMEOUT, 120u, MHD_OPTION_CONNECTION_LIMIT, 10000u,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)CONN_MEMORY, MHD_OPTION_END);
    if (!h->mhd) {
        free(h);
        return ph_err_set(err, PH_EIO, "listen: cannot listen on %s:%u (in use, or not allowed)",
                          address, port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    *bound = info ? info->port : port;
    *out = h;
    return PH_OK;
}

void ph_http_quiesce(ph_http *h)
{
    if (h)
        atomic_store(&h->stopping, 1);
}

int ph_http_inflight(ph_http *h)
{
    return h ? atomic_load(&h->inflight) : 0;
}

void ph_http_stop(ph_http *h)
{
    if (!h)
        return;
    if (h->mhd)
        MHD_stop_daemon(h->mhd);
    free(h);
}
