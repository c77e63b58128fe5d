/*
 * supplier_io_exchange.c — one exchange of the I/O engine (supplier_io.c has
 * the life of a job): starting it (the plugin's request, curl or a local
 * reply), the reply buffers, finishing and classifying it, and recycling its
 * easy handle through the free list. I/O thread only.
 */
#include "supply/supplier_io.h"
#include "supply/sio_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "base/lockcheck.h"
#include "base/util.h"
#include "crypto/crypto.h"
#include "metrics/metrics.h"
#include "supply/plugin_ops.h"

static int is_outcome(int rc)
{
    return rc == PERKHUB_OK || rc == PERKHUB_RETRYABLE || rc == PERKHUB_DEFINITE_FAILURE ||
           rc == PERKHUB_AMBIGUOUS;
}

/* The plugin's ops table, read up to its own struct_size so a plugin built
 * against an older 1.x never has members read past its end. 0: no table. */
static int ops_of(const ph_supplier *sup, struct perkhub_ops *out)
{
    const struct perkhub_plugin *d = ph_supplier_plugin(sup);
    memset(out, 0, sizeof *out);
    if (!d || !d->ops)
        return 0;
    size_t n = d->ops->struct_size < sizeof *out ? d->ops->struct_size : sizeof *out;
    memcpy(out, d->ops, n);
    out->struct_size = (uint32_t)n;
    return 1;
}

static const char *status_name(const ph_supplier *sup, int rc)
{
    const struct perkhub_host *h = ph_supplier_host(sup);
    return h && h->status_str ? h->status_str(rc) : "error";
}

/* ---- exchanges: the free list (I/O thread only) ------------------------------- */

static sio_ex *ex_get(ph_sio *io)
{
    sio_ex *ex = io->pool;
    if (ex) {
        io->pool = ex->next_free;
        io->npool--;
        ex->next_free = NULL;
        return ex;
    }
    return calloc(1, sizeof(sio_ex));
}

/* The reply's buffers go as the exchange ends, wiped (a reply may hold card
 * codes): an exchange on the wire holds none until its reply arrives, which
 * with thousands waiting on slow suppliers is ~2 KB each not kept resident. */
static void ex_drop_reply(sio_ex *ex)
{
    if (ex->body)
        explicit_bzero(ex->body, ex->len);
    if (ex->hbuf)
        explicit_bzero(ex->hbuf, ex->hlen);
    free(ex->body);
    free(ex->hbuf);
    ex->body = ex->hbuf = NULL;
    ex->cap = ex->hcap = 0;
    ex->len = ex->hlen = ex->hbytes = ex->nh = 0;
    ex->too_large = 0;
}

void sio_ex_free(sio_ex *ex)
{
    if (ex->easy)
        curl_easy_cleanup(ex->easy);
    ex_drop_reply(ex);
    free(ex);
}

/* Back on the free list with its easy handle, its reply dropped. */
static void ex_put(ph_sio *io, sio_ex *ex)
{
    if (io->draining || io->npool >= SIO_POOL_MAX)
        return sio_ex_free(ex);
    ex_drop_reply(ex);
    ex->next_free = io->pool;
    io->pool = ex;
    io->npool++;
}

/* ---- finishing -------------------------------------------------------------- */

static void x_free(ph_sio *io, ph_sio_job *job)
{
    sio_x *x = job->priv_;
    /* a raw request's strings are the submitter's: nothing to free */
    const struct perkhub_host *host = job->raw ? NULL : ph_supplier_host(job->sup);
    if (x->on_wire) {
        curl_multi_remove_handle(x->sh->multi, x->ex->easy);
        x->sh->running--;
        if (x->prev)
            x->prev->next = x->next;
        else
            io->active = x->next;
        if (x->next)
            x->next->prev = x->prev;
    }
    if (x->set_easy)
        /* no option of this job (URL, body, header list, callbacks) survives */
        curl_easy_reset(x->ex->easy);
    if (x->ex)
        ex_put(io, x->ex);
    if (host) {
        ph_op_request_clear(host, &x->req);
        ph_op_reply_clear(host, &x->reply);
    }
    memset(&x->req, 0, sizeof x->req);
    free(x);
    job->priv_ = NULL;
}

void ph_sio_metrics_set(ph_sio *io, struct ph_metrics *m)
{
    atomic_store_explicit(&io->metrics, m, memory_order_release);
}

/* Records the outcome, updates the supplier's record, frees the exchange and
 * queues the job for its done (sio_run_done). The job must not be touched
 * afterwards: done may free it. */
void sio_finish(ph_sio *io, ph_sio_job *job, int cls, int outcome, int sent, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

void sio_finish(ph_sio *io, ph_sio_job *job, int cls, int outcome, int sent, const char *fmt, ...)
{
    sio_x *x = job->priv_;
    sio_sup *ss = x->ss;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(job->detail, sizeof job->detail, fmt, ap);
    va_end(ap);
    job->outcome = outcome;
    job->sent = sent;
    int64_t now = sio_mono_ms();
    int64_t elapsed = x->start ? now - x->start : 0;

    ph_mutex_lock(&io->mu);
    if (x->admitted)
        ss->in_flight--;
    else
        ss->queued--;
    sio_health_note(ss, job);
    sio_breaker_note(io, ss, cls, now);
    sio_auth_note(io, ss, job, cls, now);
    unsigned max = sio_or_default(job->limits.max_in_flight, SIO_DEF_MAX_IN_FLIGHT);
    ph_sio_job *nx = NULL;
    if (!io->draining && ss->wait_head && ss->in_flight < max) {
        nx = ss->wait_head;
        ss->wait_head = nx->next_;
        if (!ss->wait_head)
            ss->wait_tail = NULL;
        ss->in_flight++;
        ss->queued--;
        ((sio_x *)nx->priv_)->admitted = 1;
    }
    ph_mutex_unlock(&io->mu);
    if (nx)
        sio_list_push(&io->launch, nx);

    /* detail never holds a secret; the URL, headers and bodies are not logged */
    if (!job->raw) /* a raw exchange is not a supplier's: its owner counts it */
        ph_metrics_supplier_observe(atomic_load_explicit(&io->metrics, memory_order_acquire),
                                    ss->id, elapsed * 1000);
    ph_log(io->log, PH_LOG_DEBUG, NULL, "sio.exchange",
           "supplier=%s op=%s step=%d outcome=%s sent=%d http=%d elapsed_ms=%" PRId64
           " detail=\"%s\"",
           ss->id, ph_op_kind_name(job->op.kind), job->op.step, ph_op_status_name(outcome), sent,
           job->http_status, elapsed, job->detail);
    x_free(io, job);
    sio_list_push(&io->finished, job);
    io->nfinished++;
}

void sio_run_done(ph_sio *io)
{
    ph_sio_job *job;
    io->nfinished = 0;
    while ((job = sio_list_pop(&io->finished)))
        job->done(job);
}

/* A complete reply (network or local): 5xx and nonsense statuses are the
 * core's AMBIGUOUS; anything else is the plugin's to classify. */
void sio_on_reply(ph_sio *io, ph_sio_job *job, long status)
{
    sio_x *x = job->priv_;
    job->http_status = (int)status;
    if (job->raw) /* the submitter reads the status; no plugin, no breaker */
        return sio_finish(io, job, CL_NEUTRAL, status >= 100 ? PERKHUB_OK : PERKHUB_AMBIGUOUS, 1,
                          "http %ld", status);
    if (status >= 500)
        return sio_finish(io, job, CL_FAILURE, PERKHUB_AMBIGUOUS, 1, "http %ld", status);
    if (status < 100) {
        job->http_status = 0;
        return sio_finish(io, job, CL_FAILURE, PERKHUB_AMBIGUOUS, 1, "no valid http status (%ld)",
                          status);
    }
    struct perkhub_ops ops;
    ops_of(job->sup, &ops);
    sio_ex *ex = x->ex;
    /* the lines were packed into one buffer as they came; point at them now
     * that it no longer moves */
    const char *hv[SIO_MAX_HEADER_LINES + 1];
    size_t nh = 0;
    for (size_t off = 0; nh < ex->nh && off < ex->hlen; off += strlen(ex->hbuf + off) + 1)
        hv[nh++] = ex->hbuf + off;
    hv[nh] = NULL;
    struct perkhub_response resp = {.http_status = (int)status,
                                    .body = ex->body ? ex->body : "",
                                    .body_len = ex->len,
                                    .headers = hv,
                                    .nheaders = nh};
    ph_op_result_init(&job->res);
    int rc = ops.parse_response(ph_supplier_instance(job->sup), &job->op, &resp, &job->res);
    if (!is_outcome(rc)) {
        ph_op_result_clear(ph_supplier_host(job->sup), &job->res);
        return sio_finish(io, job, ph_sio_reply_class(status, rc, NULL, job->auth_why),
                          PERKHUB_AMBIGUOUS, 1, "plugin: %s", status_name(job->sup, rc));
    }
    job->parsed = 1;
    /* the plugin's words enter the core here: held to sup_text.h's rules
     * before anything (the detail below included) reads them */
    /* a redemption question carries a card code instead of an account: no
     * string that holds it (or its card number) is kept either */
    int redeem = job->op.kind == PERKHUB_OP_REDEMPTION;
    unsigned dropped = ph_op_result_clean(ph_supplier_host(job->sup), &job->res,
                                          redeem ? job->op.code : job->op.account);
    if (redeem && job->op.card_no)
        dropped += ph_op_result_clean(ph_supplier_host(job->sup), &job->res, job->op.card_no);
    if (dropped)
        ph_log(io->log, PH_LOG_WARN, NULL, "sio.supplier_text",
               "supplier=%s op=%s dropped=%u detail=\"values the supplier chose failed the "
               "supplier text rules and were dropped\"",
               x->ss->id, ph_op_kind_name(job->op.kind), dropped);
    int cls = ph_sio_reply_class(status, rc, job->res.reason, job->auth_why);
    const char *why = job->res.reason;
    sio_finish(io, job, cls, rc, 1, "http %ld%s%s", status, why ? ": " : "", why ? why : "");
}

/* ---- reply buffers ---------------------------------------------------------- */

/* Appends to the reply body, keeping a NUL after it. 0 when over the cap. */
static int body_append(sio_ex *ex, const char *p, size_t n)
{
    if (ex->len + n > SIO_MAX_REPLY) {
        ex->too_large = 1;
        return 0;
    }
    if (ph_buf_reserve(&ex->body, &ex->cap, ex->len, ex->len + n + 1, 1024))
        return 0;
    memcpy(ex->body + ex->len, p, n);
    ex->len += n;
    ex->body[ex->len] = '\0';
    return 1;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    return body_append(ud, p, size * n) ? size * n : 0;
}

/* Keeps "Name: value" lines of the final response (a 100 Continue or other
 * interim status line starts the list again), packed NUL-ended into one
 * buffer. Excess lines are dropped. */
static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    sio_ex *ex = ud;
    size_t len = size * n;
    size_t l = len;
    while (l > 0 && (p[l - 1] == '\r' || p[l - 1] == '\n'))
        l--;
    if (l >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        ex->nh = ex->hlen = ex->hbytes = 0;
        return len;
    }
    if (l == 0 || ex->nh >= SIO_MAX_HEADER_LINES || ex->hbytes + l > SIO_MAX_HEADER_BYTES)
        return len;
    if (ph_buf_reserve(&ex->hbuf, &ex->hcap, ex->hlen, ex->hlen + l + 1, 512))
        return 0;
    size_t kept = strnlen(p, l); /* a NUL inside the line ends it, as before */
    memcpy(ex->hbuf + ex->hlen, p, kept);
    ex->hbuf[ex->hlen + kept] = '\0';
    ex->hlen += kept + 1;
    ex->hbytes += l;
    ex->nh++;
    return len;
}

/* See the top of the file: an order request goes out at most once. */
static int on_prereq(void *ud, char *ip, char *local_ip, int port, int local_port)
{
    (void)ip, (void)local_ip, (void)port, (void)local_port;
    sio_x *x = ud;
    int kind = x->job->op.kind;
    int once = !x->job->raw && (kind == PERKHUB_OP_CARD_ORDER || kind == PERKHUB_OP_RECHARGE);
    return ++x->prereqs > 1 && once ? CURL_PREREQFUNC_ABORT : CURL_PREREQFUNC_OK;
}

/* ---- starting --------------------------------------------------------------- */

static void start_local(ph_sio *io, ph_sio_job *job, const struct perkhub_ops *ops)
{
    sio_x *x = job->priv_;
    if (!ops->serve_local)
        return sio_finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0,
                          "plugin is local but has no serve_local");
    int rc = ops->serve_local(ph_supplier_instance(job->sup), &x->req, &x->reply);
    if (rc != PERKHUB_OK)
        return sio_finish(io, job, CL_FAILURE, PERKHUB_DEFINITE_FAILURE, 0, "serve_local: %s",
                          status_name(job->sup, rc));
    int64_t delay = x->reply.delay_ms > 0 ? x->reply.delay_ms : 0;
    int64_t timeout = sio_or_default(job->limits.timeout_ms, SIO_DEF_TIMEOUT_MS);
    int kind = delay > timeout ? T_LOCAL_TIMEOUT : T_LOCAL_REPLY;
    if (sio_timer_push(io, job, kind, x->start + (delay > timeout ? timeout : delay)) != PH_OK)
        return sio_finish(io, job, CL_NEUTRAL, PERKHUB_AMBIGUOUS, 1, "out of memory after sending");
}

void sio_on_local_timer(ph_sio *io, ph_sio_job *job, int kind)
{
    sio_x *x = job->priv_;
    if (kind == T_LOCAL_TIMEOUT)
        return sio_finish(io, job, CL_FAILURE, PERKHUB_AMBIGUOUS, 1,
                          "timeout after sending (%u ms)",
                          sio_or_default(job->limits.timeout_ms, SIO_DEF_TIMEOUT_MS));
    if (x->reply.http_status == 0)
        return sio_finish(io, job, CL_FAILURE, PERKHUB_AMBIGUOUS, 1, "dropped after sending");
    if (x->reply.body_len && !body_append(x->ex, x->reply.body ? x->reply.body : "",
                                          x->reply.body ? x->reply.body_len : 0))
        return sio_finish(io, job, CL_FAILURE, PERKHUB_AMBIGUOUS, 1,
                          x->ex->too_large ? "reply too large" : "out of memory after sending");
    sio_on_reply(io, job, x->reply.http_status);
}

/* Sets the method and body; the body stays in x->req until the exchange ends
 * (no copy inside curl, and ph_op_request_clear wipes it). */
static CURLcode set_method(CURL *e, const struct perkhub_request *req)
{
    const char *m = req->method ? req->method : req->body ? "POST" : "GET";
    CURLcode rc = CURLE_OK;
    if (strcmp(m, "GET") == 0 && !req->body)
        return curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    if (strcmp(m, "HEAD") == 0 && !req->body)
        return curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    if (strcmp(m, "POST") != 0)
        rc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
    if (rc == CURLE_OK && (req->body || strcmp(m, "POST") == 0)) {
        rc = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                              (curl_off_t)(req->body ? req->body_len : 0));
        if (rc == CURLE_OK)
            rc = curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body ? req->body : "");
    }
    return rc;
}

/* The header list curl reads is the exchange's own array of nodes pointing at
 * the plugin's strings (alive in x->req until the exchange ends): curl never
 * copies or frees a CURLOPT_HTTPHEADER list, so none is allocated per request. */
static CURLcode set_headers(sio_x *x)
{
    struct curl_slist *h = x->ex->hdr;
    size_t n = 0;
    for (size_t i = 0; i < x->req.nheaders; i++)
        if (x->req.headers[i])
            h[n++].data = x->req.headers[i];
    /* curl's default Expect: 100-continue would add a round trip per POST */
    h[n++].data = "Expect:";
    for (size_t i = 0; i < n; i++)
        h[i].next = i + 1 < n ? &h[i + 1] : NULL;
    return curl_easy_setopt(x->ex->easy, CURLOPT_HTTPHEADER, h);
}

static CURLcode set_options(ph_sio *io, sio_x *x, const ph_sio_limits *lim)
{
    CURLSH *share = io->share;
    CURL *e = x->ex->easy;
    long verify = lim->tls_verify ? 1L : 0L;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(e, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, x->req.url);
    SET(CURLOPT_PRIVATE, (void *)x->job);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_BUFFERSIZE, SIO_RECV_BUFFER);
    SET(CURLOPT_CONNECTTIMEOUT_MS,
        (long)sio_or_default(lim->connect_timeout_ms, SIO_DEF_CONNECT_MS));
    SET(CURLOPT_TIMEOUT_MS, (long)sio_or_default(lim->timeout_ms, SIO_DEF_TIMEOUT_MS));
    SET(CURLOPT_SSL_VERIFYPEER, verify);
    SET(CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)x->ex);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)x->ex);
    SET(CURLOPT_PREREQFUNCTION, on_prereq);
    SET(CURLOPT_PREREQDATA, (void *)x);
    /* a connection keeps the callbacks of the handle that opened it */
    SET(CURLOPT_OPENSOCKETFUNCTION, sio_open_socket);
    SET(CURLOPT_OPENSOCKETDATA, (void *)io);
    SET(CURLOPT_CLOSESOCKETFUNCTION, sio_close_socket);
    SET(CURLOPT_CLOSESOCKETDATA, (void *)io);
    if (share)
        SET(CURLOPT_SHARE, share);
#undef SET
    if (rc == CURLE_OK)
        rc = set_method(e, &x->req);
    if (rc == CURLE_OK)
        rc = set_headers(x);
    return rc;
}

/* The shard with the fewest exchanges (the lowest index on a tie, so a
 * light load keeps reusing the first shard's connections). */
static sio_shard *least_busy(ph_sio *io)
{
    sio_shard *best = &io->shard[0];
    for (unsigned i = 1; i < SIO_SHARDS && best->running; i++)
        if (io->shard[i].running < best->running)
            best = &io->shard[i];
    return best;
}

/* A recycled easy handle was reset when its last exchange ended: it carries
 * no option over, only what curl keeps per handle (buffers). */
static void start_curl(ph_sio *io, ph_sio_job *job)
{
    sio_x *x = job->priv_;
    int recycled = x->ex->easy != NULL;
    if (!x->ex->easy && !(x->ex->easy = curl_easy_init()))
        return sio_finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0, "out of memory");
    x->set_easy = 1;
    CURLcode rc = set_options(io, x, &job->limits);
    if (rc == CURLE_BAD_FUNCTION_ARGUMENT && recycled) {
        /* libcurl 7.88 keeps the receive buffer of a handle whose exchange
         * ended before connecting (refused, unsupported protocol) across
         * curl_easy_reset, and then refuses CURLOPT_BUFFERSIZE on it: that
         * handle is replaced by a fresh one, nothing was sent on it */
        curl_easy_cleanup(x->ex->easy);
        if (!(x->ex->easy = curl_easy_init()))
            return sio_finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0, "out of memory");
        rc = set_options(io, x, &job->limits);
    }
    if (rc != CURLE_OK)
        return sio_finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0, "curl setup: %s",
                          curl_easy_strerror(rc));
    sio_shard *sh = least_busy(io);
    CURLMcode mrc = curl_multi_add_handle(sh->multi, x->ex->easy);
    if (mrc != CURLM_OK)
        return sio_finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0, "curl: %s",
                          curl_multi_strerror(mrc));
    sh->running++;
    x->sh = sh;
    x->on_wire = 1;
    x->prev = NULL;
    x->next = io->active;
    if (io->active)
        io->active->prev = x;
    io->active = x;
}

/* A raw job's request is the submitter's, pointed at (x_free frees nothing of it). */
static void start_raw(ph_sio *io, ph_sio_job *job)
{
    sio_x *x = job->priv_;
    const ph_sio_raw *r = job->raw;
    if (r->nheaders > PERKHUB_MAX_HEADERS)
        return sio_finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0, "too many headers");
    x->req.url = (char *)(uintptr_t)r->url;
    x->req.method = r->method ? r->method : "POST";
    x->req.body = (char *)(uintptr_t)r->body;
    x->req.body_len = r->body ? r->body_len : 0;
    for (size_t i = 0; i < r->nheaders; i++)
        x->req.headers[i] = (char *)(uintptr_t)r->headers[i];
    x->req.nheaders = r->nheaders;
    start_curl(io, job);
}

/* An admitted job: build the request, then hand it to curl or serve_local. */
static void start(ph_sio *io, ph_sio_job *job)
{
    sio_x *x = job->priv_;
    x->start = sio_mono_ms();
    if (!(x->ex = ex_get(io)))
        return sio_finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0, "out of memory");
    if (job->raw)
        return start_raw(io, job);
    struct perkhub_ops ops;
    if (!ops_of(job->sup, &ops) || !ops.build_request || !ops.parse_response)
        return sio_finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0,
                          "plugin has no operations");
    int rc = ops.build_request(ph_supplier_instance(job->sup), &job->op, &x->req);
    if (rc == PERKHUB_DEFINITE_FAILURE)
        return sio_finish(io, job, CL_NEUTRAL, rc, 0, "refused by plugin");
    if (rc != PERKHUB_OK)
        return sio_finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0, "build_request: %s",
                          status_name(job->sup, rc));
    if (!x->req.url || x->req.nheaders > PERKHUB_MAX_HEADERS) {
        x->req.nheaders =
            x->req.nheaders > PERKHUB_MAX_HEADERS ? PERKHUB_MAX_HEADERS : x->req.nheaders;
        return sio_finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0,
                          "build_request: no url or too many headers");
    }
    if (ph_supplier_plugin(job->sup)->capabilities & PERKHUB_CAP_LOCAL)
        start_local(io, job, &ops);
    else
        start_curl(io, job);
}

/* Due jobs take a slot, or wait behind their supplier's FIFO: the whole
 * ready list under one lock. */
static void admit_ready(ph_sio *io)
{
    job_list r = io->ready;
    io->ready = (job_list){0};
    ph_sio_job *job;
    ph_mutex_lock(&io->mu);
    while ((job = sio_list_pop(&r))) {
        sio_x *x = job->priv_;
        sio_sup *ss = x->ss;
        unsigned max = sio_or_default(job->limits.max_in_flight, SIO_DEF_MAX_IN_FLIGHT);
        if (!ss->wait_head && ss->in_flight < max) {
            ss->in_flight++;
            ss->queued--;
            x->admitted = 1;
            sio_list_push(&io->launch, job);
        } else {
            if (ss->wait_tail)
                ss->wait_tail->next_ = job;
            else
                ss->wait_head = job;
            ss->wait_tail = job;
        }
    }
    ph_mutex_unlock(&io->mu);
}

void sio_dispatch(ph_sio *io)
{
    for (;;) {
        ph_sio_job *job = sio_list_pop(&io->launch);
        if (job) {
            start(io, job);
            continue;
        }
        if (!io->ready.head)
            return;
        admit_ready(io);
    }
}
