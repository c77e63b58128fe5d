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
 * The durable mode (--durable DIR) also fulfils the SKU the bench sells (bench.card, quantity
 * 1): after the same checks the request goes to ONE writer thread (a queue under a mutex and a
 * condition variable, as perkhubd's store), which takes everything queued as one batch and, in
 * one durable LMDB write transaction (MDB_NOTLS, fsync on commit), does per request what
 * `lmdb_limit --full` does per issuance (bench/lmdb_issue.h: pop a code, rewrite it, append the
 * order and its event, order_ref and client_orders; a client_order_id already stored is
 * answered 200 with its order, as a replay). After the commit the writer hands each answer back:
 *   mhd: the handler suspended the connection (MHD_ALLOW_SUSPEND_RESUME, as perkhubd) and the
 *        writer calls MHD_resume_connection per request (an eventfd write each);
 *   h2o: each loop thread registered an h2o_multithread_receiver on its context's queue; the
 *        writer sends the request to its loop as a message (h2o wakes a loop once per batch of
 *        messages, not once per request) and the loop sends the 201 naming the order.
 * GET /stats answers {"orders": N, "commits": C, "commands": K}: N the orders the store holds
 * (a read transaction), C the writer's durable commits, K the requests they carried. The writer
 * thread is named proto-writer, so its CPU can be read apart (/proc/PID/task/TID/comm).
 * Codes: --codes N (default 200000) pre-filled at start into the empty DIR.
 *
 * --commit-in loop (h2o only): no writer thread; each loop gathers the orders one pass of its
 * event loop read and commits them itself after that pass's I/O (h2o's zero timeout), then
 * answers them: no hand-off between threads at all, the loop waiting for the flush. A lower
 * bound for the hand-off's cost, not a design (a loop serves nothing while it flushes).
 *
 * Usage: proto --lib mhd|h2o --threads N --port-file FILE --token-sha256 HEX
 *              [--durable DIR [--codes N] [--commit-in writer|loop]] [--lifetime S]
 *   mhd: libmicrohttpd 0.9.75 as perkhubd runs it (internal polling threads, epoll, a thread
 *        pool of N);
 *   h2o: libh2o-evloop 2.2 (Debian's libh2o-evloop-dev), N threads, each its own event loop
 *        and its own listening socket on the same port (SO_REUSEPORT).
 * Listens on 127.0.0.1, an ephemeral port written to FILE; runs until killed, at most S seconds
 * (default 1800: SIGALRM ends it), and dies with its parent (PR_SET_PDEATHSIG).
 * Not done: TLS, HTTP/2 (h2o would speak it with TLS), timeouts of idle connections, logging,
 * metrics, any route but the two.
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
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <strings.h>
#include <unistd.h>

#include "../lmdb_issue.h"
#include "h2o.h"
#include "h2o/http1.h"
#include "h2o/multithread.h"

#define BODY_MAX   65536
#define RID_MAX    64
#define ANSWER_MAX 512
#define COID_MAX   128
#define SKU        "bench.card"
#define CLIENT     "mall"

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

/* ---- the writer: one thread, group commit, as perkhubd's store ------------------------ */

typedef struct job job;
/* Called on the writer thread after the commit that decided the job; the job may be freed (or
 * reused by another thread) as soon as it is called. */
typedef void (*job_done_fn)(job *j);

struct job {
    job *next; /* the writer's queue, under writer.mu */
    job_done_fn done;
    size_t coid_len;
    char coid[COID_MAX + 1];
    unsigned status; /* set by the writer before done: 201, 200 (a replay), 409, 500 */
    uint64_t order_id;
};

typedef struct writer {
    li_store st;              /* under apply_mu, but for li_count_orders (a read transaction) */
    pthread_mutex_t apply_mu; /* one batch at a time: the writer thread's, or the loops' */
    int in_loop; /* --commit-in loop: each h2o loop commits its own orders, no thread */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail; /* under mu */
    pthread_t thread;
    atomic_ullong commits, commands; /* durable commits, the requests they carried */
} writer;

/* Any thread: queues J for the writer's next batch. */
static void writer_submit(writer *w, job *j)
{
    j->next = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->tail) {
        w->tail->next = j;
    } else {
        w->head = j;
        pthread_cond_signal(&w->cv); /* the writer waits only on an empty queue */
    }
    w->tail = j;
    pthread_mutex_unlock(&w->mu);
}

/* Decides every job of BATCH in one write transaction; 0 or an LMDB error (nothing stored). */
static int writer_apply(writer *w, job *batch)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(w->st.env, NULL, 0, &txn);
    if (rc)
        return rc;
    uint64_t id0 = w->st.order_id, seq0 = w->st.seq;
    for (job *j = batch; j && rc == 0; j = j->next) {
        int r = li_ref_find(&w->st, txn, CLIENT, j->coid, j->coid_len, &j->order_id);
        if (r == 0)
            j->status = 200;
        else if (r != MDB_NOTFOUND)
            rc = r;
        else if ((r = li_issue(&w->st, txn, SKU, CLIENT, j->coid, j->coid_len, 1, &j->order_id)) ==
                 0)
            j->status = 201;
        else if (r == MDB_NOTFOUND)
            j->status = 409;
        else
            rc = r;
    }
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    if (rc) { /* nothing of the batch is stored: its ids will be given again */
        w->st.order_id = id0;
        w->st.seq = seq0;
    }
    return rc;
}

/* Commits BATCH (one durable transaction) and completes each of its jobs. */
static void writer_run_batch(writer *w, job *batch)
{
    pthread_mutex_lock(&w->apply_mu);
    int rc = writer_apply(w, batch);
    pthread_mutex_unlock(&w->apply_mu);
    if (rc)
        fprintf(stderr, "proto: writer: %s\n", mdb_strerror(rc));
    else
        atomic_fetch_add(&w->commits, 1);
    unsigned long long n = 0;
    for (job *j = batch, *next; j; j = next, n++) {
        next = j->next; /* j is not ours once done is called */
        if (rc)
            j->status = 500;
        j->done(j);
    }
    atomic_fetch_add(&w->commands, n);
}

static void *writer_main(void *arg)
{
    writer *w = arg;
    pthread_setname_np(pthread_self(), "proto-writer"); /* http_proto.sh reads its CPU apart */
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->head)
            pthread_cond_wait(&w->cv, &w->mu);
        job *batch = w->head;
        w->head = w->tail = NULL;
        pthread_mutex_unlock(&w->mu);
        writer_run_batch(w, batch);
    }
    return NULL;
}

/* Opens and pre-fills the store in DIR (empty) and starts the writer thread (none when IN_LOOP);
 * NULL on error (said). */
static writer *writer_start(const char *dir, uint64_t codes, int in_loop)
{
    writer *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    int rc = li_open(&w->st, dir);
    if (rc == 0)
        rc = li_prefill(&w->st, SKU, codes);
    if (rc) {
        fprintf(stderr, "proto: store %s: %s\n", dir, mdb_strerror(rc));
        return NULL;
    }
    pthread_mutex_init(&w->apply_mu, NULL);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->in_loop = in_loop;
    if (!in_loop && pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        fprintf(stderr, "proto: cannot start the writer\n");
        return NULL;
    }
    return w;
}

/* ---- the route ------------------------------------------------------------------------ */

enum { HANDLED, TO_WRITER };

/* The ceiling route's work: authenticate, parse, check, look up. HANDLED with the answer in *a;
 * TO_WRITER (only when J is given: the durable mode) with the order's client_order_id in *J. */
static int handle(const char *auth, size_t auth_len, const char *body, size_t body_len,
                  const char *rid, answer *a, job *j)
{
    static const char bearer[] = "Bearer ";
    uint8_t h[32];
    if (auth_len <= sizeof bearer - 1 || memcmp(auth, bearer, sizeof bearer - 1) != 0) {
        answer_error(a, 401, "unauthorized", "a bearer token is required", rid);
        return HANDLED;
    }
    SHA256((const unsigned char *)auth + sizeof bearer - 1, auth_len - (sizeof bearer - 1), h);
    if (CRYPTO_memcmp(h, token_hash, sizeof h) != 0) {
        answer_error(a, 401, "unauthorized", "unknown token", rid);
        return HANDLED;
    }
    json_error_t err;
    json_t *js = json_loadb(body, body_len, JSON_REJECT_DUPLICATES, &err);
    if (!js || !json_is_object(js)) {
        json_decref(js);
        answer_error(a, 400, "invalid_request", "the body is not a JSON object", rid);
        return HANDLED;
    }
    int out = HANDLED;
    json_t *coid = json_object_get(js, "client_order_id"), *sku = json_object_get(js, "sku");
    json_t *qty = json_object_get(js, "quantity");
    if (!json_is_string(coid) || json_string_length(coid) == 0 ||
        json_string_length(coid) > COID_MAX) {
        answer_error(a, 400, "invalid_request", "client_order_id: 1 to 128 bytes", rid);
    } else if (!json_is_string(sku) || json_string_length(sku) == 0 ||
               json_string_length(sku) > 64) {
        answer_error(a, 400, "invalid_request", "sku: 1 to 64 bytes", rid);
    } else if (!json_is_integer(qty) || json_integer_value(qty) < 1) {
        answer_error(a, 400, "invalid_request", "quantity: a positive integer", rid);
    } else if (strcmp(json_string_value(sku), SKU) != 0) {
        answer_error(a, 422, "unknown_sku", "no product with this sku", rid);
    } else if (!j) {
        answer_error(a, 501, "not_implemented", "the prototype fulfils with --durable only", rid);
    } else if (json_integer_value(qty) != 1) {
        answer_error(a, 422, "invalid_request", "quantity: the prototype issues one code", rid);
    } else {
        j->coid_len = json_string_length(coid);
        memcpy(j->coid, json_string_value(coid), j->coid_len);
        j->coid[j->coid_len] = '\0';
        out = TO_WRITER;
    }
    json_decref(js);
    return out;
}

/* The answer to an order the writer decided. */
static void answer_order(answer *a, const job *j, const char *rid)
{
    if (j->status == 409) {
        answer_error(a, 409, "out_of_stock", "no code left for this sku", rid);
        return;
    }
    if (j->status != 200 && j->status != 201) {
        answer_error(a, 500, "internal", "the store failed", rid);
        return;
    }
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)j->order_id);
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:i, s:s, s:s}", "order_id", id, "client_order_id", j->coid,
                  "sku", SKU, "quantity", 1, "status", "succeeded", "request_id", rid);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    a->status = j->status;
    a->len = s ? strlen(s) : 0;
    if (a->len >= sizeof a->body)
        a->len = 0;
    memcpy(a->body, s ? s : "", a->len);
    free(s);
}

/* GET /stats: what the store holds and what the writer did (all 0 without --durable). */
static void answer_stats(answer *a, writer *w, const char *rid)
{
    uint64_t n = 0;
    if (w && li_count_orders(&w->st, &n) != 0) {
        answer_error(a, 500, "internal", "the store cannot be read", rid);
        return;
    }
    int len =
        snprintf(a->body, sizeof a->body, "{\"orders\":%llu,\"commits\":%llu,\"commands\":%llu}",
                 (unsigned long long)n, w ? (unsigned long long)atomic_load(&w->commits) : 0ull,
                 w ? (unsigned long long)atomic_load(&w->commands) : 0ull);
    a->status = 200;
    a->len = (size_t)len;
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
    job j;                    /* the writer's part */
    struct MHD_Connection *c; /* set when handed to the writer */
    int at_writer;            /* suspended for the writer: the next call answers */
    char rid[RID_MAX + 1];
    size_t len;
    char body[BODY_MAX];
} mhd_req;

/* Writer thread: the order is decided, the connection's thread answers it. */
static void mhd_job_done(job *j)
{
    MHD_resume_connection(((mhd_req *)j)->c);
}

static enum MHD_Result mhd_on_request(void *cls, struct MHD_Connection *c, const char *url,
                                      const char *method, const char *version, const char *upload,
                                      size_t *upload_size, void **con_cls)
{
    (void)version;
    writer *w = cls; /* NULL: the ceiling only */
    mhd_req *r = *con_cls;
    if (!r) {
        r = malloc(sizeof *r);
        if (!r)
            return MHD_NO;
        r->len = 0;
        r->at_writer = 0;
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
    answer a;
    if (r->at_writer) {
        answer_order(&a, &r->j, r->rid);
    } else {
        const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Id");
        pick_rid(v, v ? strlen(v) : 0, r->rid);
        if (strcmp(method, "GET") == 0 && strcmp(url, "/stats") == 0) {
            answer_stats(&a, w, r->rid);
        } else if (strcmp(method, "POST") != 0 || strcmp(url, "/v1/orders") != 0) {
            answer_error(&a, 404, "not_found", "no such route", r->rid);
        } else {
            const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
            if (handle(auth ? auth : "", auth ? strlen(auth) : 0, r->body, r->len, r->rid, &a,
                       w ? &r->j : NULL) == TO_WRITER) {
                r->c = c;
                r->at_writer = 1;
                r->j.done = mhd_job_done;
                MHD_suspend_connection(c); /* before the writer can resume it */
                writer_submit(w, &r->j);
                return MHD_YES;
            }
        }
    }
    struct MHD_Response *res =
        MHD_create_response_from_buffer(a.len, a.body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(res, "Content-Type", "application/json");
    MHD_add_response_header(res, "X-Request-Id", r->rid);
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

static int run_mhd(unsigned threads, const char *port_file, writer *w)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* the durable mode suspends connections as perkhubd does; the ceiling keeps the flags its
       first figures were taken with */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
                     (w ? MHD_ALLOW_SUSPEND_RESUME : 0);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, mhd_on_request, w, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
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
    h2o_multithread_receiver_t receiver; /* the writer's answers to this loop's requests */
    job *batch_head, *batch_tail;        /* --commit-in loop: this pass's orders (loop's) */
    h2o_timeout_entry_t batch_entry;     /* their commit, after the pass's I/O events */
    writer *w;
} h2o_worker;

typedef struct proto_handler {
    h2o_handler_t super;
    writer *w; /* NULL: the ceiling only */
} proto_handler;

/* An order at the writer. Freed on its loop's thread by whichever comes last: the answer (the
 * message from the writer) or h2o's disposal of the request (the client went away first). */
typedef struct h2o_job {
    job j;
    h2o_multithread_message_t msg;
    h2o_worker *wk;
    h2o_req_t *req; /* NULL once h2o disposed of the request (loop thread's) */
    int answered;   /* the answer was sent (loop thread's) */
    char rid[RID_MAX + 1];
} h2o_job;

static const char *h2o_reason(unsigned status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 404:
        return "Not Found";
    case 409:
        return "Conflict";
    case 422:
        return "Unprocessable Entity";
    default:
        return "Error";
    }
}

static void h2o_send_answer(h2o_req_t *req, const answer *a, const char *rid)
{
    req->res.status = (int)a->status;
    req->res.reason = h2o_reason(a->status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/json"));
    size_t rlen = strlen(rid);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL,
                          h2o_strdup(&req->pool, rid, rlen).base, rlen);
    req->res.content_length = a->len; /* h2o_send_inline leaves it unset: the connection
                                         would close after every answer */
    h2o_send_inline(req, a->body, a->len);
}

/* Writer thread: hand the decided order to its loop (h2o writes the loop's wake-up pipe only
 * when its receiver had no message pending: one wake-up per batch). */
static void h2o_job_done(job *j)
{
    h2o_job *hj = H2O_STRUCT_FROM_MEMBER(h2o_job, j, j);
    h2o_multithread_send_message(&hj->wk->receiver, &hj->msg);
}

/* Loop thread: the request's pool is being freed. */
static void h2o_job_dispose(void *p)
{
    h2o_job *hj = *(h2o_job **)p;
    if (hj->answered)
        free(hj);
    else
        hj->req = NULL; /* the message frees it */
}

/* Loop thread: answers a decided order (or frees it when its client went away). */
static void h2o_job_answer(h2o_job *hj)
{
    if (!hj->req) {
        free(hj);
        return;
    }
    hj->answered = 1; /* before sending: the request may be disposed of inside */
    answer a;
    answer_order(&a, &hj->j, hj->rid);
    h2o_send_answer(hj->req, &a, hj->rid);
}

/* Loop thread: the writer's answers, as many as arrived since the last wake-up. */
static void h2o_on_messages(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    (void)receiver;
    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *m =
            H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        h2o_linklist_unlink(&m->link);
        h2o_job_answer(H2O_STRUCT_FROM_MEMBER(h2o_job, msg, m));
    }
}

/* --commit-in loop, loop thread: the order was committed by its own loop, answer it now. */
static void h2o_job_done_in_loop(job *j)
{
    h2o_job_answer(H2O_STRUCT_FROM_MEMBER(h2o_job, j, j));
}

/* --commit-in loop, loop thread: the orders this pass of the loop read, in one commit (the loop
 * waits for the flush meanwhile: no hand-off to another thread and back). */
static void h2o_on_batch(h2o_timeout_entry_t *e)
{
    h2o_worker *wk = H2O_STRUCT_FROM_MEMBER(h2o_worker, batch_entry, e);
    job *batch = wk->batch_head;
    wk->batch_head = wk->batch_tail = NULL;
    if (batch)
        writer_run_batch(wk->w, batch);
}

static int h2o_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    writer *w = ((proto_handler *)self)->w;
    char rid[RID_MAX + 1];
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-request-id"), -1);
    pick_rid(i >= 0 ? req->headers.entries[i].value.base : NULL,
             i >= 0 ? req->headers.entries[i].value.len : 0, rid);
    answer a;
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/stats"))) {
        answer_stats(&a, w, rid);
    } else if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST")) ||
               !h2o_memis(req->path_normalized.base, req->path_normalized.len,
                          H2O_STRLIT("/v1/orders"))) {
        answer_error(&a, 404, "not_found", "no such route", rid);
    } else {
        ssize_t k = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
        h2o_job *hj = w ? calloc(1, sizeof *hj) : NULL;
        if (w && !hj) {
            answer_error(&a, 500, "internal", "out of memory", rid);
        } else if (handle(k >= 0 ? req->headers.entries[k].value.base : "",
                          k >= 0 ? req->headers.entries[k].value.len : 0, req->entity.base,
                          req->entity.len, rid, &a, hj ? &hj->j : NULL) == TO_WRITER) {
            hj->req = req;
            hj->wk = H2O_STRUCT_FROM_MEMBER(h2o_worker, ctx, req->conn->ctx);
            memcpy(hj->rid, rid, sizeof rid);
            h2o_job **slot = h2o_mem_alloc_shared(&req->pool, sizeof *slot, h2o_job_dispose);
            *slot = hj;
            if (!w->in_loop) {
                hj->j.done = h2o_job_done;
                writer_submit(w, &hj->j);
                return 0;
            }
            h2o_worker *wk = hj->wk;
            hj->j.done = h2o_job_done_in_loop;
            hj->j.next = NULL;
            if (wk->batch_tail) {
                wk->batch_tail->next = &hj->j;
            } else {
                wk->batch_head = &hj->j;
                /* the zero timeout runs after every I/O event of this pass */
                h2o_timeout_link(wk->ctx.loop, &wk->ctx.zero_timeout, &wk->batch_entry);
            }
            wk->batch_tail = &hj->j;
            return 0;
        }
        free(hj);
    }
    h2o_send_answer(req, &a, rid);
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
    h2o_multithread_register_receiver(w->ctx.queue, &w->receiver, h2o_on_messages);
    w->batch_entry.cb = h2o_on_batch;
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

static int run_h2o(unsigned threads, const char *port_file, writer *wr)
{
    h2o_config_init(&h2o_config);
    h2o_hostconf_t *host =
        h2o_config_register_host(&h2o_config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    proto_handler *handler = (proto_handler *)h2o_create_handler(path, sizeof *handler);
    handler->super.on_req = h2o_on_req;
    handler->w = wr;
    h2o_worker *w = calloc(threads, sizeof *w);
    uint16_t port = 0;
    for (unsigned i = 0; i < threads; i++) {
        if ((w[i].fd = listen_reuseport(port, &port)) < 0)
            return 1;
        w[i].w = wr;
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

/* ---- raw: a hand-written HTTP/1.1 loop --------------------------------------------------- */

/* What a server of our own would cost: N threads, each an epoll loop (level-triggered) on its
 * own SO_REUSEPORT listener; a connection reads into one buffer, a request is framed by its
 * header's end and Content-Length only (no chunked bodies, no header folding: a measuring
 * instrument), the answer goes out in one write. An order at the writer comes back through its
 * loop's queue (a mutex-held list; an eventfd written only when the list was empty, so one
 * wake-up per batch as h2o). Pipelined requests are answered in order (one at a time). */

#include <sys/epoll.h>
#include <sys/eventfd.h>

#define RAW_IN (BODY_MAX + 8192)

typedef struct raw_loop raw_loop;

typedef struct raw_conn {
    job j; /* first: the writer hands back &j */
    raw_loop *loop;
    struct raw_conn *qnext; /* the loop's answer queue */
    int fd;
    int at_writer;
    int closing;
    size_t in_len, req_len; /* bytes read; bytes of the request at the writer */
    char rid[RID_MAX + 1];
    char in[RAW_IN];
} raw_conn;

struct raw_loop {
    pthread_t thread;
    int lfd, ep, efd;
    writer *w;
    pthread_mutex_t mu;
    raw_conn *qhead; /* under mu: answers the writer decided */
};

static const char *raw_reason(unsigned status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 409:
        return "Conflict";
    case 422:
        return "Unprocessable Entity";
    default:
        return "Error";
    }
}

static void raw_close(raw_conn *c)
{
    close(c->fd); /* leaves the epoll set */
    free(c);
}

/* Sends A; -1 when the connection must close. The answer is small: one write (a short write on
 * a socket with room for 2 MB would mean a client that stopped reading: closed). */
static int raw_send(raw_conn *c, const answer *a)
{
    char out[ANSWER_MAX + 256];
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\nX-Request-Id: %s\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     a->status, raw_reason(a->status), c->rid, a->len);
    memcpy(out + n, a->body, a->len);
    ssize_t w = send(c->fd, out, (size_t)n + a->len, MSG_NOSIGNAL);
    return w == (ssize_t)((size_t)n + a->len) ? 0 : -1;
}

/* Finds header NAME (lower case given, matched without case) in [h, end); its value or NULL. */
static const char *raw_header(const char *h, const char *end, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    for (const char *p = h; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            break;
        if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            *len = (size_t)(ve - v);
            return v;
        }
        p = eol + 1;
    }
    return NULL;
}

/* Answers every complete request buffered (until one goes to the writer); -1: close. */
static int raw_serve(raw_conn *c)
{
    while (!c->at_writer && c->in_len > 0) {
        char *hend = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (!hend)
            return c->in_len >= RAW_IN ? -1 : 0;
        size_t hlen = (size_t)(hend - c->in) + 4, clen = 0, n;
        const char *v = raw_header(c->in, hend + 2, "content-length", &n);
        if (v)
            clen = strtoul(v, NULL, 10);
        if (clen > BODY_MAX)
            return -1;
        if (c->in_len < hlen + clen)
            return 0;
        const char *sp = memchr(c->in, ' ', hlen), *sp2 = sp ? memchr(sp + 1, ' ', hlen) : NULL;
        if (!sp || !sp2)
            return -1;
        v = raw_header(c->in, hend + 2, "x-request-id", &n);
        pick_rid(v, v ? n : 0, c->rid);
        size_t mlen = (size_t)(sp - c->in), ulen = (size_t)(sp2 - sp - 1);
        answer a;
        if (mlen == 3 && memcmp(c->in, "GET", 3) == 0 && ulen == 6 &&
            memcmp(sp + 1, "/stats", 6) == 0) {
            answer_stats(&a, c->loop->w, c->rid);
        } else if (mlen != 4 || memcmp(c->in, "POST", 4) != 0 || ulen != 10 ||
                   memcmp(sp + 1, "/v1/orders", 10) != 0) {
            answer_error(&a, 404, "not_found", "no such route", c->rid);
        } else {
            const char *auth = raw_header(c->in, hend + 2, "authorization", &n);
            if (handle(auth ? auth : "", auth ? n : 0, c->in + hlen, clen, c->rid, &a,
                       c->loop->w ? &c->j : NULL) == TO_WRITER) {
                c->at_writer = 1;
                c->req_len = hlen + clen;
                writer_submit(c->loop->w, &c->j);
                return 0;
            }
        }
        memmove(c->in, c->in + hlen + clen, c->in_len - hlen - clen);
        c->in_len -= hlen + clen;
        if (raw_send(c, &a) != 0)
            return -1;
    }
    return 0;
}

/* Writer thread: queue the decided order on its loop; wake the loop when the queue was empty. */
static void raw_job_done(job *j)
{
    raw_conn *c = (raw_conn *)j;
    raw_loop *l = c->loop;
    pthread_mutex_lock(&l->mu);
    int was_empty = !l->qhead;
    c->qnext = l->qhead;
    l->qhead = c;
    pthread_mutex_unlock(&l->mu);
    if (was_empty) {
        uint64_t one = 1;
        ssize_t w = write(l->efd, &one, sizeof one);
        (void)w;
    }
}

static void raw_answer_queued(raw_loop *l)
{
    uint64_t v;
    ssize_t r = read(l->efd, &v, sizeof v);
    (void)r;
    pthread_mutex_lock(&l->mu);
    raw_conn *c = l->qhead;
    l->qhead = NULL;
    pthread_mutex_unlock(&l->mu);
    while (c) {
        raw_conn *next = c->qnext;
        answer a;
        answer_order(&a, &c->j, c->rid);
        c->at_writer = 0;
        memmove(c->in, c->in + c->req_len, c->in_len - c->req_len);
        c->in_len -= c->req_len;
        if (c->closing || raw_send(c, &a) != 0 || raw_serve(c) != 0)
            raw_close(c);
        c = next;
    }
}

static void *raw_main(void *arg)
{
    raw_loop *l = arg;
    struct epoll_event ev[128];
    for (;;) {
        int n = epoll_wait(l->ep, ev, 128, -1);
        for (int i = 0; i < n; i++) {
            void *p = ev[i].data.ptr;
            if (p == &l->lfd) {
                for (;;) {
                    int fd = accept4(l->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0)
                        break;
                    raw_conn *c = malloc(sizeof *c);
                    if (!c) {
                        close(fd);
                        continue;
                    }
                    c->loop = l;
                    c->fd = fd;
                    c->at_writer = c->closing = 0;
                    c->in_len = 0;
                    c->j.done = raw_job_done;
                    struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
                    if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &e) != 0)
                        raw_close(c);
                }
                continue;
            }
            if (p == &l->efd) {
                raw_answer_queued(l);
                continue;
            }
            raw_conn *c = p;
            ssize_t r = c->in_len < RAW_IN ? read(c->fd, c->in + c->in_len, RAW_IN - c->in_len) : 0;
            if (r <= 0 && !(r < 0 && errno == EAGAIN)) {
                if (c->at_writer) { /* the writer still holds it: close once answered */
                    c->closing = 1;
                    epoll_ctl(l->ep, EPOLL_CTL_DEL, c->fd, NULL);
                } else {
                    raw_close(c);
                }
                continue;
            }
            if (r > 0)
                c->in_len += (size_t)r;
            if (raw_serve(c) != 0 && !c->at_writer)
                raw_close(c);
        }
    }
    return NULL;
}

static int raw_add(raw_loop *l, int *fdp)
{
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = fdp};
    return epoll_ctl(l->ep, EPOLL_CTL_ADD, *fdp, &e);
}

static int run_raw(unsigned threads, const char *port_file, writer *wr)
{
    raw_loop *l = calloc(threads, sizeof *l);
    uint16_t port = 0;
    for (unsigned i = 0; i < threads; i++) {
        if ((l[i].lfd = listen_reuseport(port, &port)) < 0)
            return 1;
        int fl = 1;
        ioctl(l[i].lfd, FIONBIO, &fl);
        l[i].w = wr;
        l[i].ep = epoll_create1(EPOLL_CLOEXEC);
        l[i].efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        pthread_mutex_init(&l[i].mu, NULL);
        if (l[i].ep < 0 || l[i].efd < 0 || raw_add(&l[i], &l[i].lfd) != 0 ||
            raw_add(&l[i], &l[i].efd) != 0)
            return 1;
    }
    FILE *f = fopen(port_file, "w");
    if (!f)
        return 1;
    fprintf(f, "%u\n", (unsigned)port);
    fclose(f);
    for (unsigned i = 0; i < threads; i++)
        pthread_create(&l[i].thread, NULL, raw_main, &l[i]);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(l[i].thread, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    const char *lib = NULL, *port_file = NULL, *hex = NULL, *dir = NULL, *commit_in = "writer";
    unsigned threads = 2, lifetime = 1800;
    uint64_t codes = 200000;
    int bad = argc % 2 == 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--lib") == 0)
            lib = argv[i + 1];
        else if (strcmp(argv[i], "--threads") == 0)
            threads = (unsigned)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--port-file") == 0)
            port_file = argv[i + 1];
        else if (strcmp(argv[i], "--token-sha256") == 0)
            hex = argv[i + 1];
        else if (strcmp(argv[i], "--durable") == 0)
            dir = argv[i + 1];
        else if (strcmp(argv[i], "--codes") == 0)
            codes = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--commit-in") == 0)
            commit_in = argv[i + 1];
        else if (strcmp(argv[i], "--lifetime") == 0)
            lifetime = (unsigned)atoi(argv[i + 1]);
        else
            bad = 1;
    }
    int in_loop = strcmp(commit_in, "loop") == 0;
    if (bad || !lib || !port_file || !hex || strlen(hex) != 64 || threads < 1 || threads > 64 ||
        codes < 1 || lifetime < 1 || (!in_loop && strcmp(commit_in, "writer") != 0) ||
        (in_loop && (!dir || strcmp(lib, "h2o") != 0))) {
        fprintf(stderr, "usage: proto --lib mhd|h2o|raw --threads N --port-file FILE "
                        "--token-sha256 HEX [--durable DIR [--codes N] [--commit-in writer|loop]] "
                        "[--lifetime S]\n");
        return 2;
    }
    for (int i = 0; i < 32; i++) {
        unsigned b;
        if (sscanf(hex + 2 * i, "%2x", &b) != 1)
            return 2;
        token_hash[i] = (uint8_t)b;
    }
    /* a measuring instrument must not outlive its run: not its parent, not its time */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(lifetime);
    signal(SIGPIPE, SIG_IGN);
    writer *w = NULL;
    if (dir && !(w = writer_start(dir, codes, in_loop)))
        return 1;
    if (strcmp(lib, "mhd") == 0)
        return run_mhd(threads, port_file, w);
    if (strcmp(lib, "h2o") == 0)
        return run_h2o(threads, port_file, w);
    if (strcmp(lib, "raw") == 0)
        return run_raw(threads, port_file, w);
    fprintf(stderr, "proto: --lib is mhd, h2o or raw\n");
    return 2;
}
