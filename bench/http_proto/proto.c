/*
 * proto.c — issue 18, point 4: the HTTP ceiling route served by two HTTP libraries with the
 * same handler, so bench/http_proto.sh can set their CPU per request side by side in one run
 * (and beside perkhubd's own ceiling). Not part of perkhub: a measuring instrument.
 *
 * The route is bench/run.sh's "HTTP ceiling": POST /v1/orders with a bearer token, a JSON body
 * {client_order_id, sku, quantity} for a SKU the catalog lacks. The handler does what perkhubd
 * does before its writer: the token's SHA-256 compared in constant time with the one client's,
 * the body parsed with jansson and its three fields checked, the SKU looked up, and a JSON
 * answer 422 unknown_sku built with jansson, the caller's X-Request-Id echoed. Nothing else:
 * no log line, no metrics, no request table. perkhubd does a little more per request (its
 * access counters, the request id check, the route table), which is why it is measured too.
 *
 * Usage: proto --lib mhd|h2o --threads N --port-file FILE --token-sha256 HEX
 *   mhd: libmicrohttpd 0.9.75 as perkhubd runs it (internal polling threads, epoll, a thread
 *        pool of N);
 *   h2o: libh2o-evloop 2.2 (Debian's libh2o-evloop-dev), N threads, each its own event loop
 *        and its own listening socket on the same port (SO_REUSEPORT).
 * Listens on 127.0.0.1, an ephemeral port written to FILE; runs until killed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "h2o.h"
#include "h2o/http1.h"

#define BODY_MAX   65536
#define RID_MAX    64
#define ANSWER_MAX 512

static uint8_t token_hash[32]; /* set once in main, read-only afterwards */

typedef struct answer {
    unsigned status;
    char body[ANSWER_MAX];
    size_t len;
} answer;

static void answer_error(answer *a, unsigned status, const char *error, const char *message,
                         const char *rid)
{
    json_t *j = json_pack("{s:s, s:s, s:s}", "error", error, "message", message, "request_id", rid);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    a->status = status;
    a->len = s ? strlen(s) : 0;
    if (a->len >= sizeof a->body)
        a->len = 0;
    memcpy(a->body, s ? s : "", a->len);
    free(s);
}

/* The ceiling route's work: authenticate, parse, check, look up, answer. */
static void handle(const char *auth, size_t auth_len, const char *body, size_t body_len,
                   const char *rid, answer *a)
{
    static const char bearer[] = "Bearer ";
    uint8_t h[32];
    if (auth_len <= sizeof bearer - 1 || memcmp(auth, bearer, sizeof bearer - 1) != 0) {
        answer_error(a, 401, "unauthorized", "a bearer token is required", rid);
        return;
    }
    SHA256((const unsigned char *)auth + sizeof bearer - 1, auth_len - (sizeof bearer - 1), h);
    if (CRYPTO_memcmp(h, token_hash, sizeof h) != 0) {
        answer_error(a, 401, "unauthorized", "unknown token", rid);
        return;
    }
    json_error_t err;
    json_t *j = json_loadb(body, body_len, JSON_REJECT_DUPLICATES, &err);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        answer_error(a, 400, "invalid_request", "the body is not a JSON object", rid);
        return;
    }
    json_t *coid = json_object_get(j, "client_order_id"), *sku = json_object_get(j, "sku");
    json_t *qty = json_object_get(j, "quantity");
    if (!json_is_string(coid) || json_string_length(coid) == 0 || json_string_length(coid) > 128) {
        answer_error(a, 400, "invalid_request", "client_order_id: 1 to 128 bytes", rid);
    } else if (!json_is_string(sku) || json_string_length(sku) == 0 ||
               json_string_length(sku) > 64) {
        answer_error(a, 400, "invalid_request", "sku: 1 to 64 bytes", rid);
    } else if (!json_is_integer(qty) || json_integer_value(qty) < 1) {
        answer_error(a, 400, "invalid_request", "quantity: a positive integer", rid);
    } else if (strcmp(json_string_value(sku), "bench.card") == 0) {
        answer_error(a, 501, "not_implemented", "the prototype does not fulfil", rid);
    } else {
        answer_error(a, 422, "unknown_sku", "no product with this sku", rid);
    }
    json_decref(j);
}

/* The caller's request id when printable and short, else "-". */
static void pick_rid(const char *v, size_t n, char out[RID_MAX + 1])
{
    if (!v || n == 0 || n > RID_MAX) {
        strcpy(out, "-");
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (v[i] < 0x21 || v[i] > 0x7e) {
            strcpy(out, "-");
            return;
        }
    memcpy(out, v, n);
    out[n] = '\0';
}

/* ---- libmicrohttpd ------------------------------------------------------------------ */

typedef struct mhd_req {
    size_t len;
    char body[BODY_MAX];
} mhd_req;

static enum MHD_Result mhd_on_request(void *cls, struct MHD_Connection *c, const char *url,
                                      const char *method, const char *version, const char *upload,
                                      size_t *upload_size, void **con_cls)
{
    (void)cls;
    (void)version;
    mhd_req *r = *con_cls;
    if (!r) {
        r = malloc(sizeof *r);
        if (!r)
            return MHD_NO;
        r->len = 0;
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_size) {
        if (r->len + *upload_size > BODY_MAX)
            return MHD_NO;
        memcpy(r->body + r->len, upload, *upload_size);
        r->len += *upload_size;
        *upload_size = 0;
        return MHD_YES;
    }
    char rid[RID_MAX + 1];
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Id");
    pick_rid(v, v ? strlen(v) : 0, rid);
    answer a;
    if (strcmp(method, "POST") != 0 || strcmp(url, "/v1/orders") != 0) {
        answer_error(&a, 404, "not_found", "no such route", rid);
    } else {
        const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        handle(auth ? auth : "", auth ? strlen(auth) : 0, r->body, r->len, rid, &a);
    }
    struct MHD_Response *res =
        MHD_create_response_from_buffer(a.len, a.body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(res, "Content-Type", "application/json");
    MHD_add_response_header(res, "X-Request-Id", rid);
    enum MHD_Result ret = MHD_queue_response(c, a.status, res);
    MHD_destroy_response(res);
    return ret;
}

static void mhd_on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                             enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    free(*con_cls);
    *con_cls = NULL;
}

static int run_mhd(unsigned threads, const char *port_file)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        mhd_on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_NOTIFY_COMPLETED, mhd_on_completed, NULL,
        MHD_OPTION_CONNECTION_LIMIT, 20000u, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "proto: MHD_start_daemon failed\n");
        return 1;
    }
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    FILE *f = fopen(port_file, "w");
    if (!f || !i)
        return 1;
    fprintf(f, "%u\n", (unsigned)i->port);
    fclose(f);
    for (;;)
        pause();
}

/* ---- h2o ------------------------------------------------------------------------------ */

static h2o_globalconf_t h2o_config;

typedef struct h2o_worker {
    pthread_t thread;
    int fd;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept;
} h2o_worker;

static int h2o_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    char rid[RID_MAX + 1];
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-request-id"), -1);
    pick_rid(i >= 0 ? req->headers.entries[i].value.base : NULL,
             i >= 0 ? req->headers.entries[i].value.len : 0, rid);
    answer a;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST")) ||
        !h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/v1/orders"))) {
        answer_error(&a, 404, "not_found", "no such route", rid);
    } else {
        ssize_t k = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
        handle(k >= 0 ? req->headers.entries[k].value.base : "",
               k >= 0 ? req->headers.entries[k].value.len : 0, req->entity.base, req->entity.len,
               rid, &a);
    }
    req->res.status = (int)a.status;
    req->res.reason = a.status == 422 ? "Unprocessable Entity" : "Error";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/json"));
    size_t rlen = strlen(rid);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL,
                          h2o_strdup(&req->pool, rid, rlen).base, rlen);
    req->res.content_length = a.len; /* h2o_send_inline leaves it unset: the connection
                                        would close after every answer */
    h2o_send_inline(req, a.body, a.len);
    return 0;
}

static void h2o_on_accept(h2o_socket_t *listener, const char *err)
{
    if (err)
        return;
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock)
        h2o_accept(listener->data, sock);
}

static void *h2o_worker_main(void *arg)
{
    h2o_worker *w = arg;
    h2o_context_init(&w->ctx, h2o_evloop_create(), &h2o_config);
    w->accept.ctx = &w->ctx;
    w->accept.hosts = h2o_config.hosts;
    h2o_socket_t *ls = h2o_evloop_socket_create(w->ctx.loop, w->fd, H2O_SOCKET_FLAG_DONT_READ);
    ls->data = &w->accept;
    h2o_socket_read_start(ls, h2o_on_accept);
    while (h2o_evloop_run(w->ctx.loop, INT32_MAX) == 0)
        ;
    return NULL;
}

static int listen_reuseport(uint16_t port, uint16_t *bound)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 1024) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        fprintf(stderr, "proto: listen: %s\n", strerror(errno));
        return -1;
    }
    *bound = ntohs(sa.sin_port);
    return fd;
}

static int run_h2o(unsigned threads, const char *port_file)
{
    h2o_config_init(&h2o_config);
    h2o_hostconf_t *host =
        h2o_config_register_host(&h2o_config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(path, sizeof *handler);
    handler->on_req = h2o_on_req;
    h2o_worker *w = calloc(threads, sizeof *w);
    uint16_t port = 0;
    for (unsigned i = 0; i < threads; i++) {
        if ((w[i].fd = listen_reuseport(port, &port)) < 0)
            return 1;
    }
    FILE *f = fopen(port_file, "w");
    if (!f)
        return 1;
    fprintf(f, "%u\n", (unsigned)port);
    fclose(f);
    for (unsigned i = 0; i < threads; i++)
        pthread_create(&w[i].thread, NULL, h2o_worker_main, &w[i]);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(w[i].thread, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    const char *lib = NULL, *port_file = NULL, *hex = NULL;
    unsigned threads = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--lib") == 0)
            lib = argv[i + 1];
        else if (strcmp(argv[i], "--threads") == 0)
            threads = (unsigned)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--port-file") == 0)
            port_file = argv[i + 1];
        else if (strcmp(argv[i], "--token-sha256") == 0)
            hex = argv[i + 1];
    }
    if (!lib || !port_file || !hex || strlen(hex) != 64 || threads < 1 || threads > 64) {
        fprintf(stderr, "usage: proto --lib mhd|h2o --threads N --port-file FILE "
                        "--token-sha256 HEX\n");
        return 2;
    }
    for (int i = 0; i < 32; i++) {
        unsigned b;
        if (sscanf(hex + 2 * i, "%2x", &b) != 1)
            return 2;
        token_hash[i] = (uint8_t)b;
    }
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(lib, "mhd") == 0)
        return run_mhd(threads, port_file);
    if (strcmp(lib, "h2o") == 0)
        return run_h2o(threads, port_file);
    fprintf(stderr, "proto: --lib is mhd or h2o\n");
    return 2;
}
