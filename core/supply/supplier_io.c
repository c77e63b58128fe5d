/*
 * supplier_io.c — the supplier I/O engine: one thread, libcurl multi handles
 * driven through their socket interface.
 *
 * Life of a job, all on the I/O thread once submitted:
 *   incoming (mutex) -> timer heap while not_before is ahead -> admit: the
 *   supplier's FIFO while max_in_flight exchanges are out -> start: the
 *   plugin's build_request, then curl (or serve_local and a timer) -> finish:
 *   classify, update health and breaker, recycle the exchange, call done.
 * Starting and finishing never call each other: a finished job's successor is
 * put on the launch list and started by the dispatch loop, so a run of jobs
 * that fail at once (build refused) cannot recurse.
 *
 * The loop: one epoll set owned by the I/O thread holds curl's sockets
 * (CURLMOPT_SOCKETFUNCTION keeps it in step) and an eventfd that submitters
 * and ph_sio_destroy write. epoll_wait sleeps until the earliest of curl's
 * timer (CURLMOPT_TIMERFUNCTION), the engine's timer heap (not_before, local
 * reply delays) and a 1 s safety cap; each ready socket gets one
 * curl_multi_socket_action, so a turn costs O(sockets with events), not
 * O(connections) as curl_multi_poll + curl_multi_perform did.
 *
 * Exchanges are recycled: a finished curl exchange's easy handle (reset, so
 * no option or pointer of the old job survives) goes on a bounded free list
 * for the next one, so the hot path allocates little besides what curl and
 * the plugin allocate per request. Reply buffers are allocated when a reply
 * arrives and wiped and freed when the exchange ends (replies carry card
 * codes, and thousands of exchanges waiting on the wire should not each keep
 * one).
 *
 * The exchanges are spread over SIO_SHARDS curl multi handles, all on the one
 * thread and epoll set (an epoll entry carries its shard): curl 7.88 walks a
 * multi handle's whole connection cache about twice per transfer, so with
 * thousands of connections one multi handle made every exchange cost O(N).
 *
 * The one mutex guards the incoming list, the stopping flag and the
 * per-supplier records (health, breaker, FIFO). It is never held while a
 * plugin, curl or a done callback runs, so done may submit, allow or read
 * health.
 *
 * docs/design.md rule 2 and curl: on a reused keep-alive connection that dies
 * before any reply byte, libcurl silently resends the request on a fresh
 * connection. For an order that would be a second recharge when the supplier
 * did receive the first one. The pre-request callback counts how often a
 * request is about to go out; for CARD_ORDER and RECHARGE the second time
 * aborts the transfer, which then ends AMBIGUOUS like any loss after sending.
 * Queries, catalog, stock and balance are safe to repeat and keep curl's
 * retry.
 */
#include "supply/supplier_io.h"

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
#include "supply/plugin_ops.h"

#define SIO_DEF_MAX_IN_FLIGHT 64u
#define SIO_DEF_CONNECT_MS    3000u
#define SIO_DEF_TIMEOUT_MS    10000u
#define SIO_DEF_BREAKER_FAILS 5u
#define SIO_DEF_BREAKER_MS    10000u
#define SIO_MAX_REPLY         (8u << 20) /* bigger replies are AMBIGUOUS, never parsed */
#define SIO_MAX_HEADER_LINES  100        /* further reply headers are dropped */
#define SIO_MAX_HEADER_BYTES  (64u << 10)
#define SIO_MAX_WAIT_MS       1000 /* wake at least this often (a safety net) */
#define SIO_EVENTS            512  /* epoll events taken per wait */
/* curl's receive buffer per easy handle (default 16 KB), allocated from the
 * heap once the transfer starts, so resident for every exchange on the wire
 * (heaptrack: 4 KB of the ~21 KB each at 4096). Replies are small JSON; a
 * larger one just takes more reads. 1024 is curl's minimum. */
#define SIO_RECV_BUFFER 1024L
#define SIO_POOL_MAX    4096u /* idle exchanges kept for reuse */
/* Multi handles the exchanges are spread over (the least busy takes the next
 * one). libcurl 7.88 walks every connection of its multi handle's cache twice
 * per transfer (looking for an idle connection to reuse, and again in
 * curl_multi_remove_handle), so one multi with N connections costs O(N) per
 * exchange; each shard has its own cache, which divides the walks by SIO_SHARDS. */
#define SIO_SHARDS   16
#define SIO_WAKE_TAG UINT64_MAX /* epoll data of the eventfd */

enum { T_START = 1, T_LOCAL_REPLY, T_LOCAL_TIMEOUT };
enum { BR_CLOSED = 0, BR_OPEN, BR_HALF_OPEN };
/* How a finished job counts for the breaker. */
enum { CL_NEUTRAL = 0, CL_BUSINESS, CL_FAILURE };

/* One supplier id's record. Created at its first submission, freed with the
 * engine (so health survives a reload that re-creates the supplier). */
typedef struct sio_sup {
    struct sio_sup *next;
    char *id;
    /* latest limits seen at submission (defaults applied) */
    unsigned breaker_failures, breaker_open_ms, timeout_ms;
    /* breaker */
    int state;
    unsigned failures;
    int64_t opened_mono, opened_wall;
    int probe_out;
    int64_t probe_mono;
    /* health */
    unsigned in_flight, queued;
    uint64_t sent, ok, definite, retryable, ambiguous, not_sent;
    /* jobs waiting for room under max_in_flight, in submission order */
    ph_sio_job *wait_head, *wait_tail;
} sio_sup;

/* What one started exchange needs beyond the job, recycled through the free
 * list (I/O thread only): the easy handle (NULL until a curl exchange needs
 * one; reset while idle), the request header list curl reads (nodes point at
 * the plugin's strings: nothing copied), and the reply. */
typedef struct sio_ex {
    struct sio_ex *next_free;
    CURL *easy;
    struct curl_slist hdr[PERKHUB_MAX_HEADERS + 1];
    int too_large; /* the reply passed SIO_MAX_REPLY */
    char *body;    /* len bytes and a NUL */
    size_t len, cap;
    char *hbuf; /* nh "Name: value" lines, each ended by a NUL */
    size_t hlen, hcap, hbytes, nh;
} sio_ex;

/* One multi handle and what the loop keeps for it (I/O thread only). */
typedef struct sio_shard {
    struct ph_sio *io;
    CURLM *multi;
    unsigned index;   /* in io->shard, for the epoll data of its sockets */
    int64_t curl_due; /* monotonic ms of its curl timer; -1 none */
    unsigned running; /* easy handles added to it */
} sio_shard;

/* The engine's private state of one job (job->priv_). */
typedef struct sio_x {
    sio_sup *ss;
    int admitted;  /* counted in ss->in_flight (else in ss->queued) */
    int timer;     /* T_* while in the heap */
    int on_wire;   /* in the active list: the easy handle is in the multi */
    int set_easy;  /* options of this job were set on the easy handle */
    int64_t start; /* monotonic ms when the exchange started; 0 before */
    struct perkhub_request req;
    struct perkhub_local_reply reply;
    sio_ex *ex;                /* from start to finish */
    sio_shard *sh;             /* while on_wire: the multi handle holding ex->easy */
    int prereqs;               /* times curl was about to send the request */
    struct sio_x *prev, *next; /* the active list (curl exchanges) */
    ph_sio_job *job;
} sio_x;

typedef struct timer_ent {
    int64_t due; /* monotonic ms */
    uint64_t seq;
    ph_sio_job *job;
} timer_ent;

typedef struct job_list {
    ph_sio_job *head, *tail;
} job_list;

struct ph_sio {
    const ph_logger *log;
    sio_shard shard[SIO_SHARDS];
    CURLSH *share; /* DNS and TLS sessions, shared by every shard */
    int ep;        /* epoll set: curl's sockets and wake */
    int wake;      /* eventfd: incoming jobs, stopping */
    pthread_t thread;
    ph_mutex mu;
    /* guarded by mu */
    int stopping;
    job_list incoming;
    sio_sup *sups;
    /* I/O thread only (and ph_sio_destroy after the join) */
    int draining;
    job_list ready;  /* due, not yet admitted */
    job_list launch; /* admitted (slot taken), not yet started */
    timer_ent *heap;
    size_t nheap, capheap;
    uint64_t seq;
    sio_x *active;
    sio_ex *pool; /* idle exchanges */
    unsigned npool;
};

/* ---- small helpers ---------------------------------------------------------- */

static int64_t clock_ms(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

static int64_t wall_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

static unsigned or_default(unsigned v, unsigned d)
{
    return v ? v : d;
}

static void list_push(job_list *l, ph_sio_job *job)
{
    job->next_ = NULL;
    if (l->tail)
        l->tail->next_ = job;
    else
        l->head = job;
    l->tail = job;
}

static ph_sio_job *list_pop(job_list *l)
{
    ph_sio_job *job = l->head;
    if (job) {
        l->head = job->next_;
        if (!l->head)
            l->tail = NULL;
        job->next_ = NULL;
    }
    return job;
}

static const char *breaker_name(int state)
{
    return state == BR_OPEN ? "open" : state == BR_HALF_OPEN ? "half_open" : "closed";
}

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

/* ---- the timer heap (I/O thread only) -------------------------------------- */

static int timer_less(const timer_ent *a, const timer_ent *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static int timer_push(ph_sio *io, ph_sio_job *job, int kind, int64_t due)
{
    if (io->nheap == io->capheap) {
        timer_ent *h = ph_grow(io->heap, &io->capheap, sizeof *h, 64);
        if (!h)
            return PH_ENOMEM;
        io->heap = h;
    }
    ((sio_x *)job->priv_)->timer = kind;
    size_t i = io->nheap++;
    io->heap[i] = (timer_ent){.due = due, .seq = io->seq++, .job = job};
    while (i > 0 && timer_less(&io->heap[i], &io->heap[(i - 1) / 2])) {
        timer_ent t = io->heap[i];
        io->heap[i] = io->heap[(i - 1) / 2];
        io->heap[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
    return PH_OK;
}

static ph_sio_job *timer_pop(ph_sio *io)
{
    if (io->nheap == 0)
        return NULL;
    ph_sio_job *job = io->heap[0].job;
    io->heap[0] = io->heap[--io->nheap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < io->nheap && timer_less(&io->heap[l], &io->heap[m]))
            m = l;
        if (r < io->nheap && timer_less(&io->heap[r], &io->heap[m]))
            m = r;
        if (m == i)
            break;
        timer_ent t = io->heap[i];
        io->heap[i] = io->heap[m];
        io->heap[m] = t;
        i = m;
    }
    return job;
}

/* ---- per-supplier records (mu held) ---------------------------------------- */

static sio_sup *sup_find(ph_sio *io, const char *id)
{
    PH_ASSERT_HELD(&io->mu);
    for (sio_sup *s = io->sups; s; s = s->next)
        if (strcmp(s->id, id) == 0)
            return s;
    return NULL;
}

static sio_sup *sup_get(ph_sio *io, const char *id)
{
    sio_sup *s = sup_find(io, id);
    if (s)
        return s;
    s = calloc(1, sizeof *s);
    if (!s || !(s->id = strdup(id))) {
        free(s);
        return NULL;
    }
    s->next = io->sups;
    io->sups = s;
    return s;
}

static void breaker_set(ph_sio *io, sio_sup *ss, int state, int64_t now)
{
    PH_ASSERT_HELD(&io->mu);
    ph_log(io->log, PH_LOG_WARN, NULL, "sio.breaker", "supplier=%s from=%s to=%s failures=%u",
           ss->id, breaker_name(ss->state), breaker_name(state), ss->failures);
    ss->state = state;
    ss->probe_out = 0;
    if (state == BR_OPEN) {
        ss->opened_mono = now;
        ss->opened_wall = wall_ms();
    } else if (state == BR_CLOSED) {
        ss->opened_mono = ss->opened_wall = 0;
    }
}

/* An open breaker half-opens once breaker_open_ms have passed. */
static void breaker_tick(ph_sio *io, sio_sup *ss, int64_t now)
{
    if (ss->state == BR_OPEN && now - ss->opened_mono >= (int64_t)ss->breaker_open_ms)
        breaker_set(io, ss, BR_HALF_OPEN, now);
}

/* Any business answer closes the breaker: the supplier demonstrably answers,
 * whether the job was the probe or an order query submitted while open. */
static void breaker_note(ph_sio *io, sio_sup *ss, int cls, int64_t now)
{
    if (cls == CL_NEUTRAL)
        return;
    breaker_tick(io, ss, now);
    if (cls == CL_BUSINESS) {
        if (ss->state != BR_CLOSED)
            breaker_set(io, ss, BR_CLOSED, now);
        ss->failures = 0;
        return;
    }
    ss->failures++;
    if (ss->state == BR_HALF_OPEN ||
        (ss->state == BR_CLOSED && ss->failures >= ss->breaker_failures))
        breaker_set(io, ss, BR_OPEN, now);
}

static void health_note(sio_sup *ss, const ph_sio_job *job)
{
    if (job->sent)
        ss->sent++;
    else
        ss->not_sent++;
    switch (job->outcome) {
    case PERKHUB_OK:
        ss->ok++;
        break;
    case PERKHUB_RETRYABLE:
        ss->retryable++;
        break;
    case PERKHUB_DEFINITE_FAILURE:
        ss->definite++;
        break;
    default:
        ss->ambiguous++;
    }
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

static void ex_free(sio_ex *ex)
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
        return ex_free(ex);
    ex_drop_reply(ex);
    ex->next_free = io->pool;
    io->pool = ex;
    io->npool++;
}

/* ---- finishing -------------------------------------------------------------- */

static void x_free(ph_sio *io, ph_sio_job *job)
{
    sio_x *x = job->priv_;
    const struct perkhub_host *host = ph_supplier_host(job->sup);
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
    free(x);
    job->priv_ = NULL;
}

/* Records the outcome, updates the supplier's record, frees the exchange and
 * runs done. The job must not be touched afterwards: done may free it. */
static void finish(ph_sio *io, ph_sio_job *job, int cls, int outcome, int sent, const char *fmt,
                   ...) __attribute__((format(printf, 6, 7)));

static void finish(ph_sio *io, ph_sio_job *job, int cls, int outcome, int sent, const char *fmt,
                   ...)
{
    sio_x *x = job->priv_;
    sio_sup *ss = x->ss;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(job->detail, sizeof job->detail, fmt, ap);
    va_end(ap);
    job->outcome = outcome;
    job->sent = sent;
    int64_t now = mono_ms();
    int64_t elapsed = x->start ? now - x->start : 0;

    ph_mutex_lock(&io->mu);
    if (x->admitted)
        ss->in_flight--;
    else
        ss->queued--;
    health_note(ss, job);
    breaker_note(io, ss, cls, now);
    unsigned max = or_default(job->limits.max_in_flight, SIO_DEF_MAX_IN_FLIGHT);
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
        list_push(&io->launch, nx);

    /* detail never holds a secret; the URL, headers and bodies are not logged */
    ph_log(io->log, PH_LOG_DEBUG, NULL, "sio.exchange",
           "supplier=%s op=%s step=%d outcome=%s sent=%d http=%d elapsed_ms=%" PRId64
           " detail=\"%s\"",
           ss->id, ph_op_kind_name(job->op.kind), job->op.step, ph_op_status_name(outcome), sent,
           job->http_status, elapsed, job->detail);
    x_free(io, job);
    job->next_ = NULL;
    job->done(job);
}

/* A complete reply (network or local): 5xx and nonsense statuses are the
 * core's AMBIGUOUS; anything else is the plugin's to classify. */
static void on_reply(ph_sio *io, ph_sio_job *job, long status)
{
    sio_x *x = job->priv_;
    job->http_status = (int)status;
    if (status >= 500)
        return finish(io, job, CL_FAILURE, PERKHUB_AMBIGUOUS, 1, "http %ld", status);
    if (status < 100) {
        job->http_status = 0;
        return finish(io, job, CL_FAILURE, PERKHUB_AMBIGUOUS, 1, "no valid http status (%ld)",
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
        return finish(io, job, CL_FAILURE, PERKHUB_AMBIGUOUS, 1, "plugin: %s",
                      status_name(job->sup, rc));
    }
    job->parsed = 1;
    int cls = rc == PERKHUB_OK || rc == PERKHUB_DEFINITE_FAILURE ? CL_BUSINESS : CL_FAILURE;
    const char *why = job->res.reason;
    finish(io, job, cls, rc, 1, "http %ld%s%s", status, why ? ": " : "", why ? why : "");
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
    int once = kind == PERKHUB_OP_CARD_ORDER || kind == PERKHUB_OP_RECHARGE;
    return ++x->prereqs > 1 && once ? CURL_PREREQFUNC_ABORT : CURL_PREREQFUNC_OK;
}

/* ---- starting --------------------------------------------------------------- */

static void start_local(ph_sio *io, ph_sio_job *job, const struct perkhub_ops *ops)
{
    sio_x *x = job->priv_;
    if (!ops->serve_local)
        return finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0,
                      "plugin is local but has no serve_local");
    int rc = ops->serve_local(ph_supplier_instance(job->sup), &x->req, &x->reply);
    if (rc != PERKHUB_OK)
        return finish(io, job, CL_FAILURE, PERKHUB_DEFINITE_FAILURE, 0, "serve_local: %s",
                      status_name(job->sup, rc));
    int64_t delay = x->reply.delay_ms > 0 ? x->reply.delay_ms : 0;
    int64_t timeout = or_default(job->limits.timeout_ms, SIO_DEF_TIMEOUT_MS);
    int kind = delay > timeout ? T_LOCAL_TIMEOUT : T_LOCAL_REPLY;
    if (timer_push(io, job, kind, x->start + (delay > timeout ? timeout : delay)) != PH_OK)
        return finish(io, job, CL_NEUTRAL, PERKHUB_AMBIGUOUS, 1, "out of memory after sending");
}

static void on_local_timer(ph_sio *io, ph_sio_job *job, int kind)
{
    sio_x *x = job->priv_;
    if (kind == T_LOCAL_TIMEOUT)
        return finish(io, job, CL_FAILURE, PERKHUB_AMBIGUOUS, 1, "timeout after sending (%u ms)",
                      or_default(job->limits.timeout_ms, SIO_DEF_TIMEOUT_MS));
    if (x->reply.http_status == 0)
        return finish(io, job, CL_FAILURE, PERKHUB_AMBIGUOUS, 1, "dropped after sending");
    if (x->reply.body_len && !body_append(x->ex, x->reply.body ? x->reply.body : "",
                                          x->reply.body ? x->reply.body_len : 0))
        return finish(io, job, CL_FAILURE, PERKHUB_AMBIGUOUS, 1,
                      x->ex->too_large ? "reply too large" : "out of memory after sending");
    on_reply(io, job, x->reply.http_status);
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

static CURLcode set_options(sio_x *x, const ph_sio_limits *lim, CURLSH *share)
{
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
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)or_default(lim->connect_timeout_ms, SIO_DEF_CONNECT_MS));
    SET(CURLOPT_TIMEOUT_MS, (long)or_default(lim->timeout_ms, SIO_DEF_TIMEOUT_MS));
    SET(CURLOPT_SSL_VERIFYPEER, verify);
    SET(CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)x->ex);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)x->ex);
    SET(CURLOPT_PREREQFUNCTION, on_prereq);
    SET(CURLOPT_PREREQDATA, (void *)x);
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
        return finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0, "out of memory");
    x->set_easy = 1;
    CURLcode rc = set_options(x, &job->limits, io->share);
    if (rc == CURLE_BAD_FUNCTION_ARGUMENT && recycled) {
        /* libcurl 7.88 keeps the receive buffer of a handle whose exchange
         * ended before connecting (refused, unsupported protocol) across
         * curl_easy_reset, and then refuses CURLOPT_BUFFERSIZE on it: that
         * handle is replaced by a fresh one, nothing was sent on it */
        curl_easy_cleanup(x->ex->easy);
        if (!(x->ex->easy = curl_easy_init()))
            return finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0, "out of memory");
        rc = set_options(x, &job->limits, io->share);
    }
    if (rc != CURLE_OK)
        return finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0, "curl setup: %s",
                      curl_easy_strerror(rc));
    sio_shard *sh = least_busy(io);
    CURLMcode mrc = curl_multi_add_handle(sh->multi, x->ex->easy);
    if (mrc != CURLM_OK)
        return finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0, "curl: %s",
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

/* An admitted job: build the request, then hand it to curl or serve_local. */
static void start(ph_sio *io, ph_sio_job *job)
{
    sio_x *x = job->priv_;
    x->start = mono_ms();
    if (!(x->ex = ex_get(io)))
        return finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0, "out of memory");
    struct perkhub_ops ops;
    if (!ops_of(job->sup, &ops) || !ops.build_request || !ops.parse_response)
        return finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0, "plugin has no operations");
    int rc = ops.build_request(ph_supplier_instance(job->sup), &job->op, &x->req);
    if (rc == PERKHUB_DEFINITE_FAILURE)
        return finish(io, job, CL_NEUTRAL, rc, 0, "refused by plugin");
    if (rc != PERKHUB_OK)
        return finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0, "build_request: %s",
                      status_name(job->sup, rc));
    if (!x->req.url || x->req.nheaders > PERKHUB_MAX_HEADERS) {
        x->req.nheaders =
            x->req.nheaders > PERKHUB_MAX_HEADERS ? PERKHUB_MAX_HEADERS : x->req.nheaders;
        return finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0,
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
    while ((job = list_pop(&r))) {
        sio_x *x = job->priv_;
        sio_sup *ss = x->ss;
        unsigned max = or_default(job->limits.max_in_flight, SIO_DEF_MAX_IN_FLIGHT);
        if (!ss->wait_head && ss->in_flight < max) {
            ss->in_flight++;
            ss->queued--;
            x->admitted = 1;
            list_push(&io->launch, job);
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

static void dispatch(ph_sio *io)
{
    for (;;) {
        ph_sio_job *job = list_pop(&io->launch);
        if (job) {
            start(io, job);
            continue;
        }
        if (!io->ready.head)
            return;
        admit_ready(io);
    }
}

/* ---- the I/O thread ---------------------------------------------------------- */

/* Codes after which nothing can have reached the supplier, as long as curl
 * never got as far as sending (no pre-request call): on a reused connection
 * a refused reconnect still follows a request that went out. */
static const char *not_sent_reason(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
        return "connect refused";
    case CURLE_COULDNT_RESOLVE_HOST:
        return "dns failure";
    case CURLE_COULDNT_RESOLVE_PROXY:
        return "proxy dns failure";
    case CURLE_SSL_CONNECT_ERROR:
        return "tls handshake failed";
    case CURLE_PEER_FAILED_VERIFICATION:
        return "tls peer verification failed";
    case CURLE_URL_MALFORMAT:
        return "malformed url";
    case CURLE_UNSUPPORTED_PROTOCOL:
        return "unsupported protocol";
    default:
        return NULL;
    }
}

static const char *after_sending_reason(CURLcode rc)
{
    switch (rc) {
    case CURLE_GOT_NOTHING:
        return "empty reply after sending";
    case CURLE_RECV_ERROR:
        return "connection reset after sending";
    case CURLE_SEND_ERROR:
        return "send failed";
    case CURLE_PARTIAL_FILE:
        return "truncated reply";
    default:
        return NULL;
    }
}

static void on_curl_done(ph_sio *io, ph_sio_job *job, CURLcode rc)
{
    sio_x *x = job->priv_;
    unsigned tmo = or_default(job->limits.timeout_ms, SIO_DEF_TIMEOUT_MS);
    long status = 0;
    curl_easy_getinfo(x->ex->easy, CURLINFO_RESPONSE_CODE, &status);
    if (x->ex->too_large)
        return finish(io, job, CL_FAILURE, PERKHUB_AMBIGUOUS, 1, "reply too large");
    if (rc == CURLE_OK)
        return on_reply(io, job, status);
    const char *why = not_sent_reason(rc);
    if (why && x->prereqs == 0)
        return finish(io, job, CL_FAILURE, PERKHUB_DEFINITE_FAILURE, 0, "%s", why);
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        long reqsize = 0;
        curl_easy_getinfo(x->ex->easy, CURLINFO_REQUEST_SIZE, &reqsize);
        if (x->prereqs == 0 && reqsize == 0)
            return finish(io, job, CL_FAILURE, PERKHUB_DEFINITE_FAILURE, 0,
                          "connect timeout (%u ms)", tmo);
        return finish(io, job, CL_FAILURE, PERKHUB_AMBIGUOUS, 1, "timeout after sending (%u ms)",
                      tmo);
    }
    if (x->prereqs > 1 || why)
        return finish(io, job, CL_FAILURE, PERKHUB_AMBIGUOUS, 1,
                      "connection lost after sending (not resent)");
    why = after_sending_reason(rc);
    if (why)
        return finish(io, job, CL_FAILURE, PERKHUB_AMBIGUOUS, 1, "%s", why);
    finish(io, job, CL_FAILURE, PERKHUB_AMBIGUOUS, 1, "transport error: %s",
           curl_easy_strerror(rc));
}

static void read_messages(ph_sio *io, sio_shard *sh)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(sh->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        on_curl_done(io, (ph_sio_job *)(void *)priv, m->data.result);
    }
}

/* Moves submitted jobs to the ready list or, when not_before is ahead, the
 * timer heap. Returns 1 when stopping. */
static int take_incoming(ph_sio *io)
{
    ph_mutex_lock(&io->mu);
    job_list in = io->incoming;
    io->incoming = (job_list){0};
    int stopping = io->stopping;
    ph_mutex_unlock(&io->mu);
    int64_t wall = wall_ms(), now = mono_ms();
    ph_sio_job *job;
    while ((job = list_pop(&in))) {
        int64_t ahead = job->not_before_ms ? job->not_before_ms - wall : 0;
        if (stopping || ahead <= 0)
            list_push(&io->ready, job);
        else if (timer_push(io, job, T_START, now + ahead) != PH_OK)
            finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0, "out of memory");
    }
    return stopping;
}

static void fire_timers(ph_sio *io)
{
    int64_t now = mono_ms();
    while (io->nheap && io->heap[0].due <= now) {
        ph_sio_job *job = timer_pop(io);
        sio_x *x = job->priv_;
        int kind = x->timer;
        x->timer = 0;
        if (kind == T_START)
            list_push(&io->ready, job);
        else
            on_local_timer(io, job, kind);
    }
}

/* ---- curl's sockets and timer on the epoll set (I/O thread) --------------------- */

/* CURLMOPT_SOCKETFUNCTION: keeps the epoll set in step with what curl waits
 * for. curl_multi_assign marks a socket as already in the set (curl forgets
 * the mark with CURL_POLL_REMOVE); ADD/MOD fall back on each other so a
 * descriptor number reused after a close without REMOVE still works. A
 * failure is logged and the transfer left to its own timeout: returning an
 * error would make curl abort every transfer of the multi handle. */
static int on_socket(CURL *e, curl_socket_t s, int what, void *ud, void *sockp)
{
    (void)e;
    sio_shard *sh = ud;
    ph_sio *io = sh->io;
    if (what == CURL_POLL_REMOVE) {
        /* the descriptor may be closed already; nothing to undo then */
        epoll_ctl(io->ep, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    struct epoll_event ev = {.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) |
                                       (what & CURL_POLL_OUT ? EPOLLOUT : 0u),
                             .data.u64 = (uint64_t)sh->index << 32 | (uint32_t)s};
    int op = sockp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    int rc = epoll_ctl(io->ep, op, s, &ev);
    if (rc != 0 && (errno == EEXIST || errno == ENOENT))
        rc = epoll_ctl(io->ep, errno == EEXIST ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev);
    if (rc != 0) {
        ph_log(io->log, PH_LOG_ERROR, NULL, "sio.epoll", "fd=%d error=\"%s\"", (int)s,
               strerror(errno));
        return 0;
    }
    if (!sockp)
        curl_multi_assign(sh->multi, s, sh);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: only records the deadline; the loop acts on it
 * (curl must not be called from inside its callbacks). */
static int on_timer(CURLM *m, long timeout_ms, void *ud)
{
    (void)m;
    sio_shard *sh = ud;
    sh->curl_due = timeout_ms < 0 ? -1 : mono_ms() + timeout_ms;
    return 0;
}

/* What epoll saw, as curl's event bits. An error or hang-up counts as both
 * readable and writable, so curl's own read or write meets the error and
 * ends the transfer with the code its poll-based path gave (a reset while
 * waiting for the reply is a receive error); level-triggered epoll would
 * otherwise report it on every turn. */
static int curl_bits(uint32_t ev)
{
    int bits = 0;
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
        bits |= CURL_CSELECT_IN;
    if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))
        bits |= CURL_CSELECT_OUT;
    return bits;
}

/* Runs curl's timer when due. curl calls the timer callback only when its
 * deadline changes, so after an action that left it unchanged (a deadline
 * met a moment early) the next one is asked for explicitly. */
static void curl_timeouts(ph_sio *io)
{
    int64_t now = mono_ms();
    for (unsigned i = 0; i < SIO_SHARDS; i++) {
        sio_shard *sh = &io->shard[i];
        if (sh->curl_due < 0 || now < sh->curl_due)
            continue;
        sh->curl_due = -1;
        int running = 0;
        curl_multi_socket_action(sh->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        read_messages(io, sh);
        long ms = -1;
        if (sh->curl_due < 0 && curl_multi_timeout(sh->multi, &ms) == CURLM_OK && ms >= 0)
            sh->curl_due = mono_ms() + ms;
    }
}

static int wait_ms(const ph_sio *io)
{
    if (io->launch.head || io->ready.head)
        return 0;
    int64_t now = mono_ms(), due = now + SIO_MAX_WAIT_MS;
    if (io->nheap && io->heap[0].due < due)
        due = io->heap[0].due;
    for (unsigned i = 0; i < SIO_SHARDS; i++)
        if (io->shard[i].curl_due >= 0 && io->shard[i].curl_due < due)
            due = io->shard[i].curl_due;
    return due <= now ? 0 : (int)(due - now);
}

/* One wait: curl's ready sockets get their action (and their finished
 * transfers are read at once), a write on wake only ends the wait. */
static void wait_events(ph_sio *io)
{
    struct epoll_event evs[SIO_EVENTS];
    int n = epoll_wait(io->ep, evs, SIO_EVENTS, wait_ms(io));
    for (int i = 0; i < n; i++) {
        uint64_t tag = evs[i].data.u64;
        if (tag == SIO_WAKE_TAG) {
            uint64_t v;
            if (read(io->wake, &v, sizeof v) < 0 && errno != EAGAIN)
                ph_log(io->log, PH_LOG_ERROR, NULL, "sio.wake", "error=\"%s\"", strerror(errno));
            continue;
        }
        sio_shard *sh = &io->shard[(tag >> 32) % SIO_SHARDS];
        int running = 0;
        curl_multi_socket_action(sh->multi, (curl_socket_t)(uint32_t)tag, curl_bits(evs[i].events),
                                 &running);
        read_messages(io, sh);
    }
    curl_timeouts(io);
}

/* At stop: what is on the wire may have reached the supplier (AMBIGUOUS);
 * what never started definitely did not. */
static void drain(ph_sio *io)
{
    io->draining = 1;
    while (io->active)
        finish(io, io->active->job, CL_NEUTRAL, PERKHUB_AMBIGUOUS, 1, "abandoned at shutdown");
    ph_sio_job *job;
    while ((job = timer_pop(io))) {
        sio_x *x = job->priv_;
        if (x->timer == T_START)
            list_push(&io->ready, job);
        else
            finish(io, job, CL_NEUTRAL, PERKHUB_AMBIGUOUS, 1, "abandoned at shutdown");
    }
    take_incoming(io);
    for (sio_sup *ss = io->sups; ss; ss = ss->next) {
        ph_mutex_lock(&io->mu);
        job_list w = {ss->wait_head, ss->wait_tail};
        ss->wait_head = ss->wait_tail = NULL;
        ph_mutex_unlock(&io->mu);
        while ((job = list_pop(&w)))
            list_push(&io->ready, job);
    }
    while ((job = list_pop(&io->launch)) || (job = list_pop(&io->ready)))
        finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0, "shutting down");
    while (io->pool) {
        sio_ex *ex = io->pool;
        io->pool = ex->next_free;
        ex_free(ex);
    }
    io->npool = 0;
}

static void *io_main(void *arg)
{
    ph_sio *io = arg;
    while (!take_incoming(io)) {
        fire_timers(io);
        dispatch(io);
        wait_events(io);
    }
    drain(io);
    return NULL;
}

/* ---- public API --------------------------------------------------------------- */

/* Thousands of exchanges need thousands of descriptors; the soft limit is
 * often 1024 while the hard one is far higher. Returns the soft limit now. */
static rlim_t raise_nofile(const ph_logger *log)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max == RLIM_INFINITY ? (rlim_t)1 << 20 : rl.rlim_max;
        struct rlimit nr = {.rlim_cur = want, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &nr) == 0) {
            ph_log(log, PH_LOG_INFO, NULL, "sio.nofile", "soft=%llu hard=%llu",
                   (unsigned long long)want, (unsigned long long)rl.rlim_max);
            rl.rlim_cur = want;
        }
    }
    return rl.rlim_cur == RLIM_INFINITY ? (rlim_t)1 << 20 : rl.rlim_cur;
}

/* One shard's multi handle on the socket interface. curl counts every open
 * connection (busy or idle) against CURLMOPT_MAXCONNECTS and, above it, closes
 * the oldest idle one at the end of each transfer (walking the whole cache to
 * find it): the limit must stay above the exchanges a shard holds. */
static int shard_setup(ph_sio *io, unsigned i, long maxconn)
{
    sio_shard *sh = &io->shard[i];
    *sh = (sio_shard){.io = io, .index = i, .curl_due = -1, .multi = curl_multi_init()};
    if (!sh->multi)
        return PH_EIO;
    if (curl_multi_setopt(sh->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L) != CURLM_OK ||
        curl_multi_setopt(sh->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L) != CURLM_OK ||
        curl_multi_setopt(sh->multi, CURLMOPT_MAXCONNECTS, maxconn) != CURLM_OK ||
        curl_multi_setopt(sh->multi, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
        curl_multi_setopt(sh->multi, CURLMOPT_SOCKETDATA, (void *)sh) != CURLM_OK ||
        curl_multi_setopt(sh->multi, CURLMOPT_TIMERFUNCTION, on_timer) != CURLM_OK ||
        curl_multi_setopt(sh->multi, CURLMOPT_TIMERDATA, (void *)sh) != CURLM_OK)
        return PH_EIO;
    return PH_OK;
}

/* The shards, the share, the epoll set curl reports its sockets into and the
 * eventfd other threads wake the loop with. */
static int multi_setup(ph_sio *io)
{
    rlim_t nofile = raise_nofile(io->log);
    /* Connections, busy and idle, each shard may keep: half the descriptors.
     * Not divided among the shards: a shard keeps about as many connections as
     * the exchanges it ever held at once, and the shards are kept level, so
     * together they keep about the peak in flight; a per-shard share under its
     * load (10,000 in flight, 20,000 descriptors, 16 shards) would close a
     * connection after every exchange and open a new one for the next. */
    rlim_t half = nofile / 2 > 65536 ? 65536 : nofile / 2;
    long maxconn = half < 16 ? 16 : (long)half;
    for (unsigned i = 0; i < SIO_SHARDS; i++)
        io->shard[i].curl_due = -1;
    io->ep = epoll_create1(EPOLL_CLOEXEC);
    io->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (io->ep < 0 || io->wake < 0)
        return PH_EIO;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = SIO_WAKE_TAG};
    if (epoll_ctl(io->ep, EPOLL_CTL_ADD, io->wake, &ev) != 0)
        return PH_EIO;
    /* one thread uses the share: no lock callbacks needed */
    io->share = curl_share_init();
    if (!io->share || curl_share_setopt(io->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) ||
        curl_share_setopt(io->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION))
        return PH_EIO;
    for (unsigned i = 0; i < SIO_SHARDS; i++)
        if (shard_setup(io, i, maxconn) != PH_OK)
            return PH_EIO;
    return PH_OK;
}

/* Frees what multi_setup made; the multis first, since their cleanup reports
 * the sockets of cached connections to on_socket (the epoll set), and the
 * share after every handle that used it. */
static void multi_teardown(ph_sio *io)
{
    for (unsigned i = 0; i < SIO_SHARDS; i++)
        if (io->shard[i].multi)
            curl_multi_cleanup(io->shard[i].multi);
    if (io->share)
        curl_share_cleanup(io->share);
    if (io->wake >= 0)
        close(io->wake);
    if (io->ep >= 0)
        close(io->ep);
}

static void wake_up(ph_sio *io)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is already non-zero: the loop wakes anyway */
    if (write(io->wake, &one, sizeof one) < 0 && errno != EAGAIN)
        ph_log(io->log, PH_LOG_ERROR, NULL, "sio.wake", "error=\"%s\"", strerror(errno));
}

int ph_sio_create(const ph_sio_opts *opts, ph_sio **out, ph_err *err)
{
    if (!opts || !opts->log || !out)
        return ph_err_set(err, PH_EINVAL, "supplier io: no options or logger");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return ph_err_set(err, PH_EIO, "supplier io: curl_global_init failed");
    ph_sio *io = calloc(1, sizeof *io);
    if (!io) {
        curl_global_cleanup();
        return ph_err_set(err, PH_ENOMEM, "supplier io: out of memory");
    }
    io->log = opts->log;
    io->ep = io->wake = -1;
    ph_mutex_init(&io->mu);
    if (multi_setup(io) != PH_OK) {
        ph_err_set(err, PH_EIO, "supplier io: cannot set up a curl multi handle");
        goto fail;
    }
    int rc = pthread_create(&io->thread, NULL, io_main, io);
    if (rc != 0) {
        ph_err_set(err, PH_EIO, "supplier io: cannot start the I/O thread: %s", strerror(rc));
        goto fail;
    }
    *out = io;
    return PH_OK;
fail:
    multi_teardown(io);
    ph_mutex_destroy(&io->mu);
    free(io);
    curl_global_cleanup();
    return err ? err->code : PH_EIO;
}

int ph_sio_submit(ph_sio *io, ph_sio_job *job)
{
    if (!io || !job || !job->sup || !job->done)
        return PH_EINVAL;
    sio_x *x = calloc(1, sizeof *x);
    if (!x)
        return PH_ENOMEM;
    x->job = job;
    job->op.struct_size = sizeof job->op;
    job->outcome = PERKHUB_AMBIGUOUS;
    job->sent = 0;
    job->http_status = 0;
    job->detail[0] = '\0';
    job->parsed = 0;
    ph_op_result_init(&job->res);

    ph_mutex_lock(&io->mu);
    sio_sup *ss = io->stopping ? NULL : sup_get(io, ph_supplier_id(job->sup));
    if (!ss) {
        int rc = io->stopping ? PH_ESHUTDOWN : PH_ENOMEM;
        ph_mutex_unlock(&io->mu);
        free(x);
        return rc;
    }
    ss->breaker_failures = or_default(job->limits.breaker_failures, SIO_DEF_BREAKER_FAILS);
    ss->breaker_open_ms = or_default(job->limits.breaker_open_ms, SIO_DEF_BREAKER_MS);
    ss->timeout_ms = or_default(job->limits.timeout_ms, SIO_DEF_TIMEOUT_MS);
    ss->queued++;
    x->ss = ss;
    job->priv_ = x;
    /* one wake per batch: the loop takes the whole list when it wakes */
    int was_empty = !io->incoming.head;
    list_push(&io->incoming, job);
    ph_mutex_unlock(&io->mu);
    if (was_empty)
        wake_up(io);
    return PH_OK;
}

int ph_sio_allow(ph_sio *io, const char *id)
{
    if (!io || !id)
        return 1;
    int64_t now = mono_ms();
    int r = 1;
    ph_mutex_lock(&io->mu);
    sio_sup *ss = sup_find(io, id);
    if (ss) {
        breaker_tick(io, ss, now);
        if (ss->state == BR_OPEN) {
            r = 0;
        } else if (ss->state == BR_HALF_OPEN) {
            /* a probe that never came back (never submitted, say) expires */
            int64_t expiry = (int64_t)ss->timeout_ms + ss->breaker_open_ms;
            r = !ss->probe_out || now - ss->probe_mono > expiry;
            if (r) {
                ss->probe_out = 1;
                ss->probe_mono = now;
            }
        }
    }
    ph_mutex_unlock(&io->mu);
    return r;
}

void ph_sio_health_get(ph_sio *io, const char *id, ph_sio_health *out)
{
    memset(out, 0, sizeof *out);
    out->breaker = breaker_name(BR_CLOSED);
    if (!io || !id)
        return;
    ph_mutex_lock(&io->mu);
    sio_sup *ss = sup_find(io, id);
    if (ss) {
        breaker_tick(io, ss, mono_ms());
        out->breaker = breaker_name(ss->state);
        out->consecutive_failures = ss->failures;
        out->opened_at = ss->state == BR_CLOSED ? 0 : ss->opened_wall;
        out->in_flight = ss->in_flight;
        out->queued = ss->queued;
        out->sent = ss->sent;
        out->ok = ss->ok;
        out->definite = ss->definite;
        out->retryable = ss->retryable;
        out->ambiguous = ss->ambiguous;
        out->not_sent = ss->not_sent;
    }
    ph_mutex_unlock(&io->mu);
}

void ph_sio_job_clear(ph_sio_job *job)
{
    if (!job || !job->sup)
        return;
    const struct perkhub_host *host = ph_supplier_host(job->sup);
    if (host)
        ph_op_result_clear(host, &job->res);
}

void ph_sio_destroy(ph_sio *io)
{
    if (!io)
        return;
    ph_mutex_lock(&io->mu);
    io->stopping = 1;
    ph_mutex_unlock(&io->mu);
    wake_up(io);
    pthread_join(io->thread, NULL);
    multi_teardown(io);
    while (io->sups) {
        sio_sup *s = io->sups;
        io->sups = s->next;
        free(s->id);
        free(s);
    }
    free(io->heap);
    ph_mutex_destroy(&io->mu);
    free(io);
    curl_global_cleanup();
}

ph_sio_limits ph_sio_limits_of(const ph_supplier_conf *sc)
{
    return (ph_sio_limits){sc->max_in_flight, sc->connect_timeout_ms, sc->timeout_ms,
                           sc->tls_verify,    sc->breaker_failures,   sc->breaker_open_ms};
}
