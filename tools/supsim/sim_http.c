/* sim_http.c — the libmicrohttpd glue: routes a request, applies the fault it
 * hits, and carries out the reply (send, delay, close, hold, truncate).
 *
 * A late answer (latency, timeout_after's hold, a blocking control call) never
 * keeps a thread: the connection is suspended with its reply prepared and
 * resumed by sim_sched, and the handler queues the reply on the resumed call. */
#include "supsim.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BODY_MAX     (1u << 20)
#define HOLD_MAX_MS  (300 * 1000)
#define POOL_THREADS 2u

struct sim_http {
    sim *s;
    struct MHD_Daemon *d;
    sim_sched *sched;
};

/* Where a request stands: reading its body, suspended until woken, answered. */
typedef enum conn_phase { PH_READ, PH_WAIT, PH_DONE } conn_phase;

/* One per request (MHD's con_cls); freed by on_completed. */
typedef struct conn_ctx {
    char *body;
    size_t len, cap;
    int too_big;
    conn_phase phase;
    sim_reply reply; /* prepared before suspending, carried out on resume */
    sim_request rq;  /* for a spawned control call: borrows MHD's strings */
    sim_waiter w;    /* while suspended */
    atomic_int why;  /* sim_wake, set by the waker before it resumes */
    struct MHD_Connection *conn;
    sim *s;
} conn_ctx;

static int body_append(conn_ctx *x, const char *data, size_t n)
{
    if (x->len + n > BODY_MAX) {
        x->too_big = 1;
        return 0;
    }
    if (x->len + n + 1 > x->cap) {
        size_t cap = (x->len + n + 1) * 2;
        char *g = realloc(x->body, cap);
        if (!g)
            return -1;
        x->body = g;
        x->cap = cap;
    }
    memcpy(x->body + x->len, data, n);
    x->len += n;
    x->body[x->len] = 0;
    return 0;
}

/* ---- routing and faults -------------------------------------------------------- */

/* Carries out the "after" part of fault f on a reply the handler produced. */
static void fault_after(const sim_fault *f, sim_reply *r)
{
    switch (f->kind) {
    case SIM_F_HTTP_502_AFTER:
        sim_reply_text(r, 502, "text/html", "<html><body>502 Bad Gateway</body></html>\n");
        break;
    case SIM_F_RESET_AFTER:
        r->action = SIM_ACT_CLOSE;
        break;
    case SIM_F_TIMEOUT_AFTER:
        r->action = SIM_ACT_HOLD_CLOSE;
        break;
    case SIM_F_TRUNCATED:
        r->action = SIM_ACT_TRUNCATE;
        break;
    case SIM_F_MALFORMED:
        /* half of a JSON object never parses: its closing brace is gone */
        r->status = 200;
        r->len /= 2;
        if (r->body)
            r->body[r->len] = 0;
        break;
    case SIM_F_LATENCY:
        r->delay_ms = f->latency_ms;
        break;
    default:
        break;
    }
}

/* What a test log needs to explain an odd answer. */
static void log_fault(const sim_fault *f, sim_proto p, const sim_request *rq)
{
    char note[64] = "";
    if (f->hits == SIM_FAULT_LOG_ALL)
        snprintf(note, sizeof note, " (from now on every 1000th hit of it is logged)");
    else if (f->hits > SIM_FAULT_LOG_ALL)
        snprintf(note, sizeof note, " (hit %lld)", f->hits);
    fprintf(stderr, "supsim: fault %s hit %s %s %s%s\n", sim_fault_name(f->kind),
            p == SIM_GATEWAY ? "gateway" : "rewards", rq->method, rq->path, note);
}

/* Answers a protocol request after its fault (if any) acted; cl's parsed body
 * is handed to the handler so it is parsed once. */
static void handle_classified(sim *s, sim_proto p, const sim_request *rq, const sim_class *cl,
                              sim_reply *r)
{
    sim_fault f = sim_request_begin(s, p, cl);
    if (f.kind != SIM_F_NONE && sim_fault_log_due(&f))
        log_fault(&f, p, rq);
    if (f.kind == SIM_F_HTTP_500) {
        sim_reply_text(r, 500, "text/html",
                       "<html><body>500 Internal Server Error</body></html>\n");
        return;
    }
    if (f.kind == SIM_F_RESET_BEFORE) {
        r->action = SIM_ACT_CLOSE;
        return;
    }
    if (f.kind == SIM_F_LATE_RECORD) { /* acted upon later, as if it arrived then */
        if (sim_defer(s, p, rq, f.latency_ms))
            fprintf(stderr, "supsim: late_record: out of memory, request dropped\n");
        sim_reply_text(r, 500, "text/html",
                       "<html><body>500 Internal Server Error</body></html>\n");
        return;
    }
    if (f.kind == SIM_F_OTHER_CHARGE || f.kind == SIM_F_OTHER_DELIVERED)
        sim_order_shape(s, p, cl->ref, &f);
    sim_request prq = *rq;
    prq.json = cl->body;
    if (p == SIM_GATEWAY)
        sim_gw_handle(s, &prq, f.kind, r);
    else
        sim_rw_handle(s, &prq, f.kind, r);
    fault_after(&f, r);
}

static void handle_protocol(sim *s, sim_proto p, const sim_request *rq, sim_reply *r)
{
    sim_class cl;
    if (p == SIM_GATEWAY)
        sim_gw_classify(rq, &cl);
    else
        sim_rw_classify(rq, &cl);
    handle_classified(s, p, rq, &cl, r);
    json_decref(cl.body);
}

static void route(sim *s, const sim_request *rq, sim_reply *r)
{
    if (!strncmp(rq->path, "/_sim/", 6)) {
        sim_control_handle(s, rq, r);
    } else if (!strcmp(rq->path, "/gateway")) {
        handle_protocol(s, SIM_GATEWAY, rq, r);
    } else if (!strncmp(rq->path, "/form/", 6)) {
        sim_request sub = *rq;
        sub.path = rq->path + 5;
        sim_form_handle(s, &sub, r);
    } else if (!strncmp(rq->path, "/rewards/", 9)) {
        sim_request sub = *rq;
        sub.path = rq->path + 8;
        handle_protocol(s, SIM_REWARDS, &sub, r);
    } else {
        sim_reply_text(r, 404, "application/json", "{\"error\":\"not_found\"}");
    }
}

/* ---- carrying out a reply ---------------------------------------------------------- */

typedef struct trunc_ctx {
    char *body;
    size_t sent, cut;
} trunc_ctx;

static ssize_t trunc_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    trunc_ctx *t = cls;
    (void)pos;
    if (t->sent >= t->cut)
        return MHD_CONTENT_READER_END_WITH_ERROR; /* close short of Content-Length */
    size_t n = t->cut - t->sent < max ? t->cut - t->sent : max;
    memcpy(buf, t->body + t->sent, n);
    t->sent += n;
    return (ssize_t)n;
}

static void trunc_free(void *cls)
{
    trunc_ctx *t = cls;
    free(t->body);
    free(t);
}

static struct MHD_Response *make_response(sim_reply *r)
{
    if (r->action != SIM_ACT_TRUNCATE && (r->len == 0 || !r->body))
        return MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (r->action != SIM_ACT_TRUNCATE) {
        /* MHD takes the body over (and frees it): no copy per answer */
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
        if (resp)
            r->body = NULL;
        return resp;
    }
    trunc_ctx *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->body = r->body;
    t->cut = r->len / 2;
    r->body = NULL;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(r->len, 4096, trunc_read, t, trunc_free);
    if (!resp)
        trunc_free(t);
    return resp;
}

/* Answers now: send, truncate, or close (MHD_NO). */
static enum MHD_Result carry_out(struct MHD_Connection *c, sim_reply *r)
{
    if (r->action == SIM_ACT_CLOSE || r->action == SIM_ACT_HOLD_CLOSE)
        return MHD_NO;
    struct MHD_Response *resp = make_response(r);
    if (!resp)
        return MHD_NO;
    if (r->ctype)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->ctype);
    enum MHD_Result ok = MHD_queue_response(c, r->status ? r->status : 500, resp);
    MHD_destroy_response(resp);
    return ok;
}

/* ---- suspending until the answer is due ------------------------------------------- */

/* The scheduler's wake: record why, then hand the connection back to MHD. The
 * resume is the last touch: MHD may finish and free x right after it. */
static void on_wake(sim_waiter *w, sim_wake why)
{
    conn_ctx *x = (conn_ctx *)((char *)w - offsetof(conn_ctx, w));
    atomic_store(&x->why, (int)why);
    MHD_resume_connection(x->conn);
}

/* Suspends c until x->w is woken: by time, by the peer's hang-up when fd is
 * watched, or by the spawned fn when given. A refusal (stopping, no memory)
 * resumes at once as a stop, so the resumed call closes the connection. */
static enum MHD_Result suspend_until(sim_http *h, conn_ctx *x, void (*fn)(void *))
{
    x->phase = PH_WAIT;
    x->w.wake = on_wake;
    MHD_suspend_connection(x->conn);
    int rc = fn ? sim_sched_spawn(h->sched, &x->w, fn, x) : sim_sched_add(h->sched, &x->w);
    if (rc) {
        atomic_store(&x->why, (int)SIM_WAKE_STOP);
        MHD_resume_connection(x->conn);
    }
    return MHD_YES;
}

/* Suspends for the reply's delay, or holds until the client hangs up (at most
 * HOLD_MAX_MS); returns -1 when the reply is due now. */
static int defer_reply(sim_http *h, conn_ctx *x)
{
    sim_reply *r = &x->reply;
    x->w.fd = -1;
    if (r->action == SIM_ACT_HOLD_CLOSE) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(x->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci)
            return -1; /* cannot watch it: close now rather than hold blind */
        x->w.fd = ci->connect_fd;
        x->w.due_ms = sim_mono_ms() + (r->delay_ms > 0 ? r->delay_ms : 0) + HOLD_MAX_MS;
    } else if (r->delay_ms > 0) {
        x->w.due_ms = sim_mono_ms() + r->delay_ms;
    } else {
        return -1;
    }
    suspend_until(h, x, NULL);
    return 0;
}

/* A control call that blocks (POST /_sim/callback waits for its receiver):
 * runs on a spawned thread so no polling thread waits with it. */
static void control_job(void *arg)
{
    conn_ctx *x = arg;
    sim_control_handle(x->s, &x->rq, &x->reply);
}

/* The resumed call: answer what was prepared, or close when the wait ended in
 * a hang-up, a stop, or the end of a hold. */
static enum MHD_Result on_resumed(conn_ctx *x)
{
    x->phase = PH_DONE;
    if (atomic_load(&x->why) != SIM_WAKE_DUE)
        return MHD_NO;
    enum MHD_Result ok = carry_out(x->conn, &x->reply);
    sim_reply_free(&x->reply);
    return ok;
}

/* ---- the MHD callbacks ----------------------------------------------------------- */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    sim_http *h = cls;
    conn_ctx *x = *con_cls;
    (void)version;
    if (!x) {
        if (!(x = calloc(1, sizeof *x)))
            return MHD_NO;
        x->conn = c;
        x->s = h->s;
        *con_cls = x;
        return MHD_YES;
    }
    if (*upload_size) {
        int rc = body_append(x, upload_data, *upload_size);
        *upload_size = 0;
        return rc ? MHD_NO : MHD_YES;
    }
    if (x->phase == PH_WAIT)
        return on_resumed(x);
    if (x->phase == PH_DONE)
        return MHD_NO; /* answered already: nothing more to do for this request */
    if (x->too_big) {
        sim_reply_text(&x->reply, 413, "application/json", "{\"error\":\"body too large\"}");
    } else {
        x->rq = (sim_request){
            .method = method,
            .path = url,
            .body = x->body,
            .len = x->len,
            .authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
            .arg_ref = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "external_ref_id"),
        };
        if (!strcmp(url, "/_sim/callback"))
            return suspend_until(h, x, control_job);
        route(h->s, &x->rq, &x->reply);
        if (defer_reply(h, x) == 0)
            return MHD_YES;
    }
    x->phase = PH_DONE;
    enum MHD_Result ok = carry_out(c, &x->reply);
    sim_reply_free(&x->reply);
    return ok;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    conn_ctx *x = *con_cls;
    (void)cls, (void)c, (void)toe;
    if (x) {
        sim_reply_free(&x->reply);
        free(x->body);
        free(x);
        *con_cls = NULL;
    }
}

sim_http *sim_http_start(sim *s, unsigned port, unsigned *bound)
{
    sim_http *h = calloc(1, sizeof *h);
    if (!h || !(h->sched = sim_sched_start())) {
        free(h);
        return NULL;
    }
    h->s = s;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    unsigned limit = s->cfg.max_connections ? s->cfg.max_connections : 1;
    /* no MHD_OPTION_PER_IP_CONNECTION_LIMIT: every client is 127.0.0.1 */
    h->d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL, on_request, h,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_THREAD_POOL_SIZE, limit < POOL_THREADS ? 1u : POOL_THREADS,
        MHD_OPTION_CONNECTION_LIMIT, limit, MHD_OPTION_CONNECTION_TIMEOUT, 120u, MHD_OPTION_END);
    if (!h->d) {
        sim_sched_stop(h->sched);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    *bound = di ? di->port : port;
    return h;
}

void sim_http_stop(sim_http *h)
{
    if (!h)
        return;
    /* MHD must not be stopped with suspended connections: wake them all first */
    sim_sched_stop(h->sched);
    MHD_stop_daemon(h->d);
    free(h);
}
