/* sim_http.c — the libmicrohttpd glue: routes a request, applies the fault it
 * hits, and carries out the reply (send, delay, close, hold, truncate). */
#include "supsim.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BODY_MAX    (1u << 20)
#define HOLD_MAX_MS (300 * 1000)
#define SLICE_MS    20

typedef struct conn_ctx {
    char *body;
    size_t len, cap;
    int too_big;
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

static void handle_protocol(sim *s, sim_proto p, const sim_request *rq, sim_reply *r)
{
    sim_class cl;
    if (p == SIM_GATEWAY)
        sim_gw_classify(rq, &cl);
    else
        sim_rw_classify(rq, &cl);
    sim_note_request(s, cl.op);
    if (cl.is_create)
        sim_note_create(s, p, cl.ref);
    sim_fault f = sim_fault_take(s, p, cl.op);
    if (f.kind != SIM_F_NONE) /* what a test log needs to explain an odd answer */
        fprintf(stderr, "supsim: fault %s hit %s %s %s\n", sim_fault_name(f.kind),
                p == SIM_GATEWAY ? "gateway" : "rewards", rq->method, rq->path);
    if (f.kind == SIM_F_HTTP_500) {
        sim_reply_text(r, 500, "text/html",
                       "<html><body>500 Internal Server Error</body></html>\n");
        return;
    }
    if (f.kind == SIM_F_RESET_BEFORE) {
        r->action = SIM_ACT_CLOSE;
        return;
    }
    if (p == SIM_GATEWAY)
        sim_gw_handle(s, rq, f.kind, r);
    else
        sim_rw_handle(s, rq, f.kind, r);
    fault_after(&f, r);
}

static void route(sim *s, const sim_request *rq, sim_reply *r)
{
    if (!strncmp(rq->path, "/_sim/", 6)) {
        sim_control_handle(s, rq, r);
    } else if (!strcmp(rq->path, "/gateway")) {
        handle_protocol(s, SIM_GATEWAY, rq, r);
    } else if (!strncmp(rq->path, "/rewards/", 9)) {
        sim_request sub = *rq;
        sub.path = rq->path + 8;
        handle_protocol(s, SIM_REWARDS, &sub, r);
    } else {
        sim_reply_text(r, 404, "application/json", "{\"error\":\"not_found\"}");
    }
}

/* ---- carrying out a reply ---------------------------------------------------------- */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Sleeps ms in slices so a shutdown is not held up. */
static void delay(sim *s, long ms)
{
    int64_t end = sim_mono_ms() + ms;
    for (int64_t now; !atomic_load(&s->stopping) && (now = sim_mono_ms()) < end;)
        sleep_ms(end - now < SLICE_MS ? (long)(end - now) : SLICE_MS);
}

/* Keeps the connection open, answering nothing, until the client hangs up. */
static void hold(sim *s, struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    int64_t end = sim_mono_ms() + HOLD_MAX_MS;
    while (ci && !atomic_load(&s->stopping) && sim_mono_ms() < end) {
        struct pollfd pf = {.fd = ci->connect_fd, .events = POLLIN | POLLRDHUP};
        if (poll(&pf, 1, SLICE_MS) > 0) {
            char b;
            if (pf.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
                return;
            if (recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
                return;
            sleep_ms(SLICE_MS); /* pipelined bytes: not a hang-up, keep waiting */
        }
    }
}

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
    if (r->action != SIM_ACT_TRUNCATE)
        return MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_COPY);
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

static enum MHD_Result carry_out(sim *s, struct MHD_Connection *c, sim_reply *r)
{
    if (r->delay_ms > 0)
        delay(s, r->delay_ms);
    if (r->action == SIM_ACT_CLOSE)
        return MHD_NO;
    if (r->action == SIM_ACT_HOLD_CLOSE) {
        hold(s, c);
        return MHD_NO;
    }
    struct MHD_Response *resp = make_response(r);
    if (!resp)
        return MHD_NO;
    if (r->ctype)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->ctype);
    enum MHD_Result ok = MHD_queue_response(c, r->status ? r->status : 500, resp);
    MHD_destroy_response(resp);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    sim *s = cls;
    conn_ctx *x = *con_cls;
    (void)version;
    if (!x) {
        if (!(x = calloc(1, sizeof *x)))
            return MHD_NO;
        *con_cls = x;
        return MHD_YES;
    }
    if (*upload_size) {
        int rc = body_append(x, upload_data, *upload_size);
        *upload_size = 0;
        return rc ? MHD_NO : MHD_YES;
    }
    sim_reply r = {0};
    if (x->too_big) {
        sim_reply_text(&r, 413, "application/json", "{\"error\":\"body too large\"}");
    } else {
        sim_request rq = {
            .method = method,
            .path = url,
            .body = x->body,
            .len = x->len,
            .authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
            .arg_ref = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "external_ref_id"),
        };
        route(s, &rq, &r);
    }
    enum MHD_Result ok = carry_out(s, c, &r);
    sim_reply_free(&r);
    return ok;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    conn_ctx *x = *con_cls;
    (void)cls, (void)c, (void)toe;
    if (x) {
        free(x->body);
        free(x);
        *con_cls = NULL;
    }
}

struct MHD_Daemon *sim_http_start(sim *s, unsigned port, unsigned *bound)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL, 0, NULL,
        NULL, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_LIMIT, 4000u,
        MHD_OPTION_CONNECTION_TIMEOUT, 120u, MHD_OPTION_END);
    if (!d)
        return NULL;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    *bound = di ? di->port : port;
    return d;
}
