/*
 * supplier_io.c — the supplier I/O engine: one thread, libcurl multi handles
 * driven through their socket interface. This file: the loop, the timer heap
 * and the API; one exchange's start and finish are in supplier_io_exchange.c,
 * the per-supplier records (health, breaker) in supplier_io_breaker.c.
 *
 * Life of a job, all on the I/O thread once submitted:
 *   incoming (mutex) -> timer heap while not_before is ahead -> admit: the
 *   supplier's FIFO while max_in_flight exchanges are out -> start: the
 *   plugin's build_request, then curl (or serve_local and a timer) -> finish:
 *   classify, update health and breaker, recycle the exchange, call done.
 * Starting and finishing never call each other: a finished job's successor is
 * put on the launch list and started by the dispatch loop (sio_dispatch), so a run of jobs
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/lockcheck.h"
#include "base/util.h"
#include "crypto/crypto.h"
#include "supply/plugin_ops.h"

/* ---- small helpers ---------------------------------------------------------- */

static int64_t clock_ms(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sio_mono_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

int64_t sio_wall_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

unsigned sio_or_default(unsigned v, unsigned d)
{
    return v ? v : d;
}

void sio_list_push(job_list *l, ph_sio_job *job)
{
    job->next_ = NULL;
    if (l->tail)
        l->tail->next_ = job;
    else
        l->head = job;
    l->tail = job;
}

ph_sio_job *sio_list_pop(job_list *l)
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

const char *sio_breaker_name(int state)
{
    return state == BR_OPEN ? "open" : state == BR_HALF_OPEN ? "half_open" : "closed";
}

/* ---- the timer heap (I/O thread only) -------------------------------------- */

static int timer_less(const timer_ent *a, const timer_ent *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

int sio_timer_push(ph_sio *io, ph_sio_job *job, int kind, int64_t due)
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
    unsigned tmo = sio_or_default(job->limits.timeout_ms, SIO_DEF_TIMEOUT_MS);
    long status = 0;
    curl_easy_getinfo(x->ex->easy, CURLINFO_RESPONSE_CODE, &status);
    if (x->ex->too_large)
        return sio_finish(io, job, CL_FAILURE, PERKHUB_AMBIGUOUS, 1, "reply too large");
    if (rc == CURLE_OK)
        return sio_on_reply(io, job, status);
    const char *why = not_sent_reason(rc);
    if (why && x->prereqs == 0)
        return sio_finish(io, job, CL_FAILURE, PERKHUB_DEFINITE_FAILURE, 0, "%s", why);
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        long reqsize = 0;
        curl_easy_getinfo(x->ex->easy, CURLINFO_REQUEST_SIZE, &reqsize);
        if (x->prereqs == 0 && reqsize == 0)
            return sio_finish(io, job, CL_FAILURE, PERKHUB_DEFINITE_FAILURE, 0,
                              "connect timeout (%u ms)", tmo);
        return sio_finish(io, job, CL_FAILURE, PERKHUB_AMBIGUOUS, 1,
                          "timeout after sending (%u ms)", tmo);
    }
    if (x->prereqs > 1 || why)
        return sio_finish(io, job, CL_FAILURE, PERKHUB_AMBIGUOUS, 1,
                          "connection lost after sending (not resent)");
    why = after_sending_reason(rc);
    if (why)
        return sio_finish(io, job, CL_FAILURE, PERKHUB_AMBIGUOUS, 1, "%s", why);
    sio_finish(io, job, CL_FAILURE, PERKHUB_AMBIGUOUS, 1, "transport error: %s",
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
    int64_t wall = sio_wall_ms(), now = sio_mono_ms();
    ph_sio_job *job;
    while ((job = sio_list_pop(&in))) {
        int64_t ahead = job->not_before_ms ? job->not_before_ms - wall : 0;
        if (stopping || ahead <= 0)
            sio_list_push(&io->ready, job);
        else if (sio_timer_push(io, job, T_START, now + ahead) != PH_OK)
            sio_finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0, "out of memory");
    }
    return stopping;
}

static void fire_timers(ph_sio *io)
{
    int64_t now = sio_mono_ms();
    while (io->nheap && io->heap[0].due <= now) {
        ph_sio_job *job = timer_pop(io);
        sio_x *x = job->priv_;
        int kind = x->timer;
        x->timer = 0;
        if (kind == T_START)
            sio_list_push(&io->ready, job);
        else
            sio_on_local_timer(io, job, kind);
    }
}

/* ---- curl's sockets and timer on the epoll set (I/O thread) --------------------- */

/* The record of descriptor s, grown to hold it; NULL when out of memory. */
static sio_sock *sock_grow(ph_sio *io, curl_socket_t s)
{
    if (s < 0)
        return NULL;
    if ((size_t)s >= io->nsocks) {
        size_t n = io->nsocks ? io->nsocks : 1024;
        while (n <= (size_t)s)
            n *= 2;
        sio_sock *p = realloc(io->socks, n * sizeof *p);
        if (!p)
            return NULL;
        memset(p + io->nsocks, 0, (n - io->nsocks) * sizeof *p);
        io->socks = p;
        io->nsocks = n;
    }
    return &io->socks[s];
}

/* The record of a managed socket (sio_sock), else NULL. */
static sio_sock *sock_managed(ph_sio *io, curl_socket_t s)
{
    return s >= 0 && (size_t)s < io->nsocks && io->socks[s].managed ? &io->socks[s] : NULL;
}

/* CURLOPT_OPENSOCKETFUNCTION: what curl's default does (socket()), and the
 * socket is managed from here to sio_close_socket. Out of memory for the
 * record, it is simply not managed. */
curl_socket_t sio_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)purpose;
    ph_sio *io = ud;
    curl_socket_t s = socket(a->family, a->socktype, a->protocol);
    sio_sock *st = s == CURL_SOCKET_BAD ? NULL : sock_grow(io, s);
    if (st)
        *st = (sio_sock){.managed = 1};
    return s;
}

/* CURLOPT_CLOSESOCKETFUNCTION: the descriptor's record is forgotten before its
 * number can be reused; closing it also takes it out of the epoll set (curl
 * never duplicates it). */
int sio_close_socket(void *ud, curl_socket_t s)
{
    ph_sio *io = ud;
    if (s >= 0 && (size_t)s < io->nsocks)
        io->socks[s] = (sio_sock){0};
    return close(s);
}

/* CURLMOPT_SOCKETFUNCTION: keeps the epoll set in step with what curl waits
 * for. A managed socket (sio_sock) stays registered after CURL_POLL_REMOVE,
 * only marked as not watched, so the next transfer on its connection asking
 * for the same events costs nothing. Otherwise curl_multi_assign marks a
 * socket as already in the set (curl forgets the mark with CURL_POLL_REMOVE);
 * ADD/MOD fall back on each other so a descriptor number reused after a close
 * without REMOVE still works. A failure is logged and the transfer left to its
 * own timeout: returning an error would make curl abort every transfer of the
 * multi handle. */
static int on_socket(CURL *e, curl_socket_t s, int what, void *ud, void *sockp)
{
    (void)e;
    sio_shard *sh = ud;
    ph_sio *io = sh->io;
    sio_sock *st = sock_managed(io, s);
    if (what == CURL_POLL_REMOVE) {
        if (st)
            st->watched = 0;
        else /* the descriptor may be closed already; nothing to undo then */
            epoll_ctl(io->ep, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    uint32_t want = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
    if (st && st->in_ep && st->events == want && st->shard == sh->index) {
        st->watched = 1;
        return 0;
    }
    struct epoll_event ev = {.events = want, .data.u64 = (uint64_t)sh->index << 32 | (uint32_t)s};
    int op = (st ? st->in_ep : sockp != NULL) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    int rc = epoll_ctl(io->ep, op, s, &ev);
    if (rc != 0 && (errno == EEXIST || errno == ENOENT))
        rc = epoll_ctl(io->ep, errno == EEXIST ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev);
    if (rc != 0) {
        ph_log(io->log, PH_LOG_ERROR, NULL, "sio.epoll", "fd=%d error=\"%s\"", (int)s,
               strerror(errno));
        if (st)
            st->in_ep = 0;
        return 0;
    }
    if (st)
        *st = (sio_sock){
            .managed = 1, .in_ep = 1, .watched = 1, .shard = (uint8_t)sh->index, .events = want};
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
    sh->curl_due = timeout_ms < 0 ? -1 : sio_mono_ms() + timeout_ms;
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
    int64_t now = sio_mono_ms();
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
            sh->curl_due = sio_mono_ms() + ms;
    }
}

static int wait_ms(const ph_sio *io)
{
    if (io->launch.head || io->ready.head)
        return 0;
    int64_t now = sio_mono_ms(), due = now + SIO_MAX_WAIT_MS;
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
        sio_sock *st = sock_managed(io, (curl_socket_t)(uint32_t)tag);
        if (st && !st->watched) {
            /* an idle kept connection curl waits for nothing on (the supplier
             * closed it, say): out of the set, or level-triggered epoll would
             * report it every turn; curl finds it dead when it next looks */
            epoll_ctl(io->ep, EPOLL_CTL_DEL, (int)(uint32_t)tag, NULL);
            st->in_ep = 0;
            continue;
        }
        int running = 0;
        curl_multi_socket_action(sh->multi, (curl_socket_t)(uint32_t)tag, curl_bits(evs[i].events),
                                 &running);
        read_messages(io, sh);
        if (io->nfinished >= SIO_DONE_BATCH)
            sio_run_done(io);
    }
    curl_timeouts(io);
    sio_run_done(io);
}

/* At stop: what is on the wire may have reached the supplier (AMBIGUOUS);
 * what never started definitely did not. */
static void drain(ph_sio *io)
{
    io->draining = 1;
    while (io->active)
        sio_finish(io, io->active->job, CL_NEUTRAL, PERKHUB_AMBIGUOUS, 1, "abandoned at shutdown");
    ph_sio_job *job;
    while ((job = timer_pop(io))) {
        sio_x *x = job->priv_;
        if (x->timer == T_START)
            sio_list_push(&io->ready, job);
        else
            sio_finish(io, job, CL_NEUTRAL, PERKHUB_AMBIGUOUS, 1, "abandoned at shutdown");
    }
    take_incoming(io);
    for (sio_sup *ss = io->sups; ss; ss = ss->next) {
        ph_mutex_lock(&io->mu);
        job_list w = {ss->wait_head, ss->wait_tail};
        ss->wait_head = ss->wait_tail = NULL;
        ph_mutex_unlock(&io->mu);
        while ((job = sio_list_pop(&w)))
            sio_list_push(&io->ready, job);
    }
    while ((job = sio_list_pop(&io->launch)) || (job = sio_list_pop(&io->ready)))
        sio_finish(io, job, CL_NEUTRAL, PERKHUB_DEFINITE_FAILURE, 0, "shutting down");
    while (io->pool) {
        sio_ex *ex = io->pool;
        io->pool = ex->next_free;
        sio_ex_free(ex);
    }
    io->npool = 0;
}

static void *io_main(void *arg)
{
    ph_sio *io = arg;
    while (!take_incoming(io)) {
        fire_timers(io);
        sio_dispatch(io);
        sio_run_done(io); /* what failed at start, or was served locally */
        wait_events(io);
    }
    drain(io);
    sio_run_done(io);
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
    free(io->socks); /* after the multis: their cleanup closes sockets through it */
    io->socks = NULL;
    io->nsocks = 0;
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
    if (!io || !job || !job->done || (!job->sup && !(job->raw && job->raw->key && job->raw->url)))
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
    job->auth_change = 0;
    job->auth_why[0] = '\0';
    ph_op_result_init(&job->res);

    ph_mutex_lock(&io->mu);
    const char *key = job->raw ? job->raw->key : ph_supplier_id(job->sup);
    sio_sup *ss = io->stopping ? NULL : sio_sup_get(io, key);
    if (!ss) {
        int rc = io->stopping ? PH_ESHUTDOWN : PH_ENOMEM;
        ph_mutex_unlock(&io->mu);
        free(x);
        return rc;
    }
    ss->breaker_failures = sio_or_default(job->limits.breaker_failures, SIO_DEF_BREAKER_FAILS);
    ss->breaker_open_ms = sio_or_default(job->limits.breaker_open_ms, SIO_DEF_BREAKER_MS);
    ss->timeout_ms = sio_or_default(job->limits.timeout_ms, SIO_DEF_TIMEOUT_MS);
    ss->auth_retry_ms = sio_or_default(job->limits.auth_retry_ms, SIO_DEF_AUTH_RETRY_MS);
    ss->auth_retry_max_ms =
        sio_or_default(job->limits.auth_retry_max_ms, SIO_DEF_AUTH_RETRY_MAX_MS);
    if (ss->auth_retry_max_ms < ss->auth_retry_ms)
        ss->auth_retry_max_ms = ss->auth_retry_ms;
    ss->queued++;
    x->ss = ss;
    job->priv_ = x;
    /* one wake per batch: the loop takes the whole list when it wakes */
    int was_empty = !io->incoming.head;
    sio_list_push(&io->incoming, job);
    ph_mutex_unlock(&io->mu);
    if (was_empty)
        wake_up(io);
    return PH_OK;
}

int ph_sio_allow(ph_sio *io, const char *id)
{
    if (!io || !id)
        return 1;
    int64_t now = sio_mono_ms();
    int r = 1;
    ph_mutex_lock(&io->mu);
    sio_sup *ss = sio_sup_find(io, id);
    int auth_probe = 0;
    if (ss && ss->auth_failed) {
        /* a probe that never came back expires like the breaker's */
        int64_t expiry = (int64_t)ss->timeout_ms + ss->auth_backoff_ms;
        int out = ss->auth_probe_out && now - ss->auth_probe_mono <= expiry;
        if (now < ss->auth_retry_mono || out)
            r = 0;
        else
            auth_probe = 1;
    }
    if (ss && r) {
        sio_breaker_tick(io, ss, now);
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
    /* claimed only once the breaker agreed: the order returned is the probe */
    if (r && auth_probe) {
        ss->auth_probe_out = 1;
        ss->auth_probe_mono = now;
    }
    ph_mutex_unlock(&io->mu);
    return r;
}

void ph_sio_health_get(ph_sio *io, const char *id, ph_sio_health *out)
{
    memset(out, 0, sizeof *out);
    out->breaker = sio_breaker_name(BR_CLOSED);
    if (!io || !id)
        return;
    ph_mutex_lock(&io->mu);
    sio_sup *ss = sio_sup_find(io, id);
    if (ss) {
        sio_breaker_tick(io, ss, sio_mono_ms());
        out->breaker = sio_breaker_name(ss->state);
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
        if (ss->auth_failed) {
            int64_t now = sio_mono_ms(), wall = sio_wall_ms();
            out->auth_failed = 1;
            snprintf(out->auth_why, sizeof out->auth_why, "%s", ss->auth_why);
            out->auth_failed_at = ss->auth_since_wall;
            out->auth_probe_at = wall + (ss->auth_retry_mono > now ? ss->auth_retry_mono - now : 0);
        }
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
                           sc->tls_verify,    sc->breaker_failures,   sc->breaker_open_ms,
                           sc->auth_retry_ms, sc->auth_retry_max_ms};
}

/* The reason words of docs/sdk.md, "Refused credentials": one list, so the
 * engine and the documentation agree on what marks a supplier auth_failed.
 * bad_request_signature and unknown_app_key are the gateway plugin's words
 * for its codes 1001 and 1003, unauthorized the rewards plugin's for HTTP 401. */
static const char *const auth_reasons[] = {
    "auth_failed",       "bad_credentials",       "unauthorized",   "unknown_app_key",
    "signature_invalid", "bad_request_signature", "ip_not_allowed",
};

int ph_sio_auth_reason(const char *reason)
{
    if (!reason)
        return 0;
    for (size_t i = 0; i < sizeof auth_reasons / sizeof *auth_reasons; i++)
        if (!strcmp(reason, auth_reasons[i]))
            return 1;
    return 0;
}

int ph_sio_reply_class(long status, int plugin_rc, const char *reason, char *why)
{
    if (status >= 500 || status < 100)
        return PH_SIO_CL_FAILURE;
    if (status == 401 || status == 403) {
        snprintf(why, PH_SIO_WHY_MAX, "http %ld", status);
        return PH_SIO_CL_AUTH;
    }
    int refused = plugin_rc == PERKHUB_DEFINITE_FAILURE || plugin_rc == PERKHUB_RETRYABLE;
    if (refused && ph_sio_auth_reason(reason)) {
        snprintf(why, PH_SIO_WHY_MAX, "%s", reason);
        return PH_SIO_CL_AUTH;
    }
    if (plugin_rc == PERKHUB_OK || plugin_rc == PERKHUB_DEFINITE_FAILURE)
        return PH_SIO_CL_BUSINESS;
    if (plugin_rc == PERKHUB_RETRYABLE)
        return PH_SIO_CL_FAILURE; /* the supplier said it is busy: back off */
    /* AMBIGUOUS or a parse error on a complete reply: the supplier is
     * reachable and answered; what we did not understand says nothing about
     * its transport (an order query stuck on one odd answer must not open
     * the breaker for every order) */
    return PH_SIO_CL_NEUTRAL;
}
