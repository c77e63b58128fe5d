/* sim_notify.c — callbacks: a queue of notifies (a min-heap on due time),
 * sender threads that each drive many POSTs at once through a libcurl multi
 * handle on their own epoll, over kept-alive connections, and retry; the
 * ticker that completes due recharges; and the commanded bursts of
 * POST /_sim/callback (libcurl too).
 *
 * Why event-driven: one blocking POST at a time per thread, each on a fresh
 * connection, could not keep up with thousands of completions a second; the
 * queue backed up, and inserting into it (a sorted list) walked the backlog
 * under the lock, so the simulator cost more CPU per recharge than perkhubd. */
#include "supsim.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NOTIFY_ATTEMPTS   5
#define NOTIFY_BACKOFF_MS 200
#define NOTIFY_TIMEOUT_MS 3000
#define NOTIFY_MAX_COPIES 64
#define SENDER_MAX_JOBS   64 /* notifies in flight per sender thread */
#define SENDER_IDLE_MS    1000
#define SENDER_BUSY_MS    1 /* how often a sender with POSTs in flight looks at the queue */
#define SENDER_EVENTS     64
#define SENDER_KEEP_CONNS 128 /* kept-alive connections per sender: 2 per notify in flight */
#define TICK_MS           10

/* A socket of curl's in a sender's epoll. */
typedef struct sock_state {
    uint8_t in_ep;   /* registered in the epoll (until curl closes it, see on_close) */
    uint8_t watched; /* curl wants its events (between its CURL_POLL_IN/OUT and REMOVE) */
    uint32_t events; /* what it is registered for */
} sock_state;

typedef struct sim_job {
    sim_proto proto;
    char order_id[32];
    char *url, *body, *header;
    int copies, attempt;
    int64_t due_ms;
    uint64_t seq;  /* ties on due_ms go in queueing order */
    int left, oks; /* while sent: copies still in flight, copies answered with success */
    struct sim_sender *sender; /* while sent: the thread sending it */
} sim_job;

/* One sender thread, its epoll and its curl multi handle. The fields marked
 * n->mu are shared with job_insert; the rest belong to the thread. */
typedef struct sim_sender {
    struct sim_notifier *n;
    sim *s;
    pthread_t th;
    int started;
    CURLM *m;
    struct sim_xfer *all_x, *free_x; /* its transfers (easy handles), and the idle ones */
    int64_t timer_at;         /* monotonic ms when curl wants CURL_SOCKET_TIMEOUT; -1: never */
    struct sock_state *socks; /* by descriptor: how curl's sockets stand in ep */
    size_t nsocks;
    int ep;       /* epoll: curl's sockets and wake (data.fd each) */
    int wake;     /* eventfd: job_insert and stop wake the thread */
    int starved;  /* due notifies were left queued for want of room */
    int polling;  /* n->mu: idle in epoll_wait (nothing in flight), not yet woken */
    int room;     /* n->mu: notifies it may still take */
    int finished; /* notifies done since it last gave their room back */
} sim_sender;

struct sim_notifier {
    pthread_mutex_t mu;
    sim_job **heap; /* min-heap on (due_ms, seq) */
    size_t n, cap;
    uint64_t seq;
    atomic_int stop;
    sim_sender *senders;
    int nsenders;
    pthread_t ticker;
    int ticker_started;
};

static int job_copies(const sim_job *j)
{
    return j->copies > NOTIFY_MAX_COPIES ? NOTIFY_MAX_COPIES : j->copies;
}

static void job_free(sim_job *j)
{
    if (!j)
        return;
    free(j->url);
    free(j->body);
    free(j->header);
    free(j);
}

/* ---- the queue (n->mu held) -------------------------------------------------------- */

static int job_before(const sim_job *a, const sim_job *b)
{
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->seq < b->seq);
}

static void heap_up(struct sim_notifier *n, size_t i)
{
    sim_job *j = n->heap[i];
    while (i > 0 && job_before(j, n->heap[(i - 1) / 2])) {
        n->heap[i] = n->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    n->heap[i] = j;
}

static void heap_down(struct sim_notifier *n, size_t i)
{
    sim_job *j = n->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n->n)
            break;
        if (c + 1 < n->n && job_before(n->heap[c + 1], n->heap[c]))
            c++;
        if (!job_before(n->heap[c], j))
            break;
        n->heap[i] = n->heap[c];
        i = c;
    }
    n->heap[i] = j;
}

static sim_job *heap_pop(struct sim_notifier *n)
{
    sim_job *top = n->heap[0];
    if (--n->n) {
        n->heap[0] = n->heap[n->n];
        heap_down(n, 0);
    }
    return top;
}

/* Picks the idle sender with the most room to wake, if any (its eventfd, or
 * -1): the new job may be due before the end of its wait. At most one wake
 * per wait, so a burst of inserts costs one write. */
static int wake_sender_locked(struct sim_notifier *n)
{
    sim_sender *best = NULL;
    for (int i = 0; i < n->nsenders; i++) {
        sim_sender *sd = &n->senders[i];
        if (sd->polling && sd->room > 0 && (!best || sd->room > best->room))
            best = sd;
    }
    if (!best)
        return -1;
    best->polling = 0;
    return best->wake;
}

/* Wakes the sender whose eventfd job_insert returned (-1: none); after n->mu
 * is released, so the woken thread does not find the lock still held. */
static void wake_fd(int fd)
{
    uint64_t one = 1;
    if (fd >= 0)
        (void)!write(fd, &one, sizeof one);
}

/* Queues j by due time (n->mu held); frees it when out of memory (a notify
 * lost, as when its body could not be built). Returns the eventfd of the
 * sender to wake with wake_fd once n->mu is released, or -1. */
static int job_insert(struct sim_notifier *n, sim_job *j)
{
    if (n->n == n->cap) {
        size_t cap = n->cap ? n->cap * 2 : 1024;
        sim_job **g = realloc(n->heap, cap * sizeof *g);
        if (!g) {
            job_free(j);
            return -1;
        }
        n->heap = g;
        n->cap = cap;
    }
    j->seq = n->seq++;
    n->heap[n->n++] = j;
    heap_up(n, n->n - 1);
    return wake_sender_locked(n);
}

void sim_notify_queue_locked(sim *s, sim_order *o)
{
    struct sim_notifier *n = s->notifier;
    if (!o->notify_url || !n)
        return;
    sim_job *j = calloc(1, sizeof *j);
    int64_t now = (int64_t)time(NULL);
    if (!j)
        return;
    j->proto = o->proto;
    snprintf(j->order_id, sizeof j->order_id, "%s", o->order_id);
    j->url = strdup(o->notify_url);
    if (o->proto == SIM_GATEWAY)
        j->body = sim_gw_notify_locked(s, o, now, SIM_N_LEGIT);
    else if (sim_rw_notify_locked(s, o, now, SIM_N_LEGIT, &j->body, &j->header))
        j->body = j->header = NULL;
    j->copies = sim_fault_copies_locked(s, o->proto);
    j->due_ms = sim_mono_ms();
    if (!j->url || !j->body) {
        job_free(j);
        return;
    }
    /* what "replay" re-sends: exactly this body (and signature) */
    free(o->last_body);
    free(o->last_header);
    o->last_body = strdup(j->body);
    o->last_header = j->header ? strdup(j->header) : NULL;
    /* counted as sent now, under the lock already held, rather than by the
     * sender a moment later at the price of taking this busy lock per notify
     * (a reset drops the queue and the counts together) */
    s->counts.callbacks_sent += job_copies(j);
    o->callbacks += job_copies(j);
    pthread_mutex_lock(&n->mu);
    int fd = job_insert(n, j);
    pthread_mutex_unlock(&n->mu);
    wake_fd(fd);
}

void sim_notify_drop(sim *s)
{
    struct sim_notifier *n = s->notifier;
    if (!n)
        return;
    pthread_mutex_lock(&n->mu);
    while (n->n)
        job_free(n->heap[--n->n]);
    pthread_mutex_unlock(&n->mu);
}

/* ---- curl transfers (the senders' and the commanded bursts') ----------------------------- */

#define XFER_BODY_MAX 4096 /* a receiver's answer is a word; the rest is ignored */

/* One POST: an easy handle kept for the next one (a sender pools them, so a
 * notify costs no handle setup), its request headers and the answer's body. */
typedef struct sim_xfer {
    CURL *c;
    /* Content-Type and the signature line, as list nodes of our own: curl
     * only reads the list, and this spares two allocations per POST */
    struct curl_slist hdr[2];
    char *buf; /* the answer's body so far, NUL-terminated (NULL: none yet) */
    size_t n, cap;
    sim *s;
    sim_job *job;              /* a sender's POST: the notify it is a copy of (NULL: idle) */
    struct sim_xfer *next_all; /* every transfer of the sender */
    struct sim_xfer *next_free;
} sim_xfer;

static size_t on_body(char *p, size_t sz, size_t nm, void *arg)
{
    sim_xfer *x = arg;
    size_t k = sz * nm;
    if (x->n > XFER_BODY_MAX)
        return k;
    if (x->n + k + 1 > x->cap) {
        size_t cap = x->cap * 2 > x->n + k + 1 ? x->cap * 2 : x->n + k + 64;
        char *g = realloc(x->buf, cap);
        if (!g)
            return 0;
        x->buf = g;
        x->cap = cap;
    }
    memcpy(x->buf + x->n, p, k);
    x->n += k;
    x->buf[x->n] = 0;
    return k;
}

static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    sim_xfer *x = arg;
    /* a held-up receiver must not delay shutdown by the whole timeout */
    return atomic_load(&x->s->stopping);
}

/* Creates x's easy handle with the options every POST shares. 0, or -1. */
static int xfer_init(sim_xfer *x, sim *s)
{
    x->s = s;
    if (!(x->c = curl_easy_init()))
        return -1;
    curl_easy_setopt(x->c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->c, CURLOPT_TIMEOUT_MS, (long)NOTIFY_TIMEOUT_MS);
    curl_easy_setopt(x->c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(x->c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->c, CURLOPT_PRIVATE, x);
    curl_easy_setopt(x->c, CURLOPT_HTTPHEADER, x->hdr);
    /* webhooks go straight to the receiver (on loopback, as a rule), never
     * through a proxy from the environment; this also spares curl reading
     * the proxy variables for every transfer */
    curl_easy_setopt(x->c, CURLOPT_NOPROXY, "*");
    return 0;
}

/* Aims x at POSTing body (plus header, a "Name: value" line or NULL; both
 * borrowed until the transfer ends) to url. fresh: on a connection of its own,
 * closed after, so concurrent copies really arrive on separate connections;
 * else on a kept-alive one when the multi handle has one. */
static void xfer_aim(sim_xfer *x, const char *url, const char *body, const char *header, int fresh)
{
    x->hdr[0].data = (char *)"Content-Type: application/json";
    x->hdr[0].next = header ? &x->hdr[1] : NULL;
    x->hdr[1].data = (char *)header;
    x->hdr[1].next = NULL;
    x->n = 0;
    if (x->buf)
        x->buf[0] = 0;
    curl_easy_setopt(x->c, CURLOPT_URL, url);
    curl_easy_setopt(x->c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(x->c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(x->c, CURLOPT_FRESH_CONNECT, (long)fresh);
    curl_easy_setopt(x->c, CURLOPT_FORBID_REUSE, (long)fresh);
}

static void xfer_free(sim_xfer *x)
{
    curl_easy_cleanup(x->c);
    free(x->buf);
}

static int answer_ok(sim_proto p, long status, const char *body)
{
    if (p == SIM_REWARDS)
        return status >= 200 && status < 300;
    if (status != 200 || !body)
        return 0;
    while (*body == ' ' || *body == '\n' || *body == '\r' || *body == '\t')
        body++;
    size_t n = strlen(body);
    while (n && (body[n - 1] == ' ' || body[n - 1] == '\n' || body[n - 1] == '\r'))
        n--;
    return n == 7 && !strncmp(body, "success", 7);
}

static void count_sent(sim *s, const char *order_id, int copies)
{
    pthread_mutex_lock(&s->mu);
    s->counts.callbacks_sent += copies;
    sim_order *o = order_id ? sim_order_by_id_locked(s, order_id) : NULL;
    if (o)
        o->callbacks += copies;
    pthread_mutex_unlock(&s->mu);
}

/* ---- one concurrent burst of POSTs, now (POST /_sim/callback) ---------------------------- */

/* Sends copies POSTs at once, each on a fresh connection, and waits for them
 * all; as sim_notify_send_now, without counting them. */
static int send_burst(sim *s, sim_proto p, const char *url, const char *body, const char *header,
                      int copies, long *statuses, char **bodies)
{
    sim_xfer *x = calloc((size_t)copies, sizeof *x);
    CURLM *m = curl_multi_init();
    int ok = 0, running = 0;
    if (!x || !m)
        goto done;
    for (int i = 0; i < copies; i++) {
        if (xfer_init(&x[i], s))
            continue;
        xfer_aim(&x[i], url, body, header, 1);
        curl_easy_setopt(x[i].c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(x[i].c, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(x[i].c, CURLOPT_XFERINFODATA, &x[i]);
        curl_multi_add_handle(m, x[i].c);
    }
    do {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 50, NULL);
    } while (running);
    for (int i = 0; i < copies; i++) {
        statuses[i] = 0;
        if (x[i].c)
            curl_easy_getinfo(x[i].c, CURLINFO_RESPONSE_CODE, &statuses[i]);
        ok += answer_ok(p, statuses[i], x[i].buf);
        if (bodies) {
            bodies[i] = x[i].buf ? x[i].buf : strdup("");
            x[i].buf = NULL;
        }
    }
done:
    for (int i = 0; x && i < copies; i++) {
        if (x[i].c)
            curl_multi_remove_handle(m, x[i].c);
        xfer_free(&x[i]);
    }
    curl_multi_cleanup(m);
    free(x);
    return ok;
}

int sim_notify_send_now(sim *s, sim_proto p, const char *order_id, const char *url,
                        const char *body, const char *header, int copies, long *statuses,
                        char **bodies)
{
    count_sent(s, order_id, copies);
    return send_burst(s, p, url, body, header, copies, statuses, bodies);
}

/* ---- the sender threads: their notifies ------------------------------------------------- */

/* Its last copy answered: done, or queued again after the backoff. */
static void job_done(sim_job *j)
{
    sim_sender *sd = j->sender;
    struct sim_notifier *n = sd->n;
    sd->finished++;
    if (j->oks || ++j->attempt >= NOTIFY_ATTEMPTS || atomic_load(&n->stop)) {
        job_free(j);
        return;
    }
    j->due_ms = sim_mono_ms() + ((int64_t)NOTIFY_BACKOFF_MS << (j->attempt - 1));
    pthread_mutex_lock(&n->mu);
    int fd = job_insert(n, j);
    pthread_mutex_unlock(&n->mu);
    wake_fd(fd);
}

/* One copy of j ended, with a success answer or not. */
static void copy_done(sim_job *j, int ok)
{
    j->oks += ok;
    if (--j->left == 0)
        job_done(j);
}

/* Counts the copies of the retries among the k notifies about to go as sent
 * (first attempts were counted when queued), under one hold of the lock. */
static void count_taken(sim *s, sim_job **take, int k)
{
    int retries = 0;
    for (int i = 0; i < k; i++)
        retries += take[i]->attempt > 0;
    if (!retries)
        return;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < k; i++) {
        if (take[i]->attempt == 0)
            continue;
        int copies = job_copies(take[i]);
        sim_order *o = sim_order_by_id_locked(s, take[i]->order_id);
        s->counts.callbacks_sent += copies;
        if (o)
            o->callbacks += copies;
    }
    pthread_mutex_unlock(&s->mu);
}

static int on_close(void *arg, curl_socket_t fd);

/* Hands one copy of j to the sender's multi handle, on a pooled transfer.
 * 0, or -1 when it cannot start (no memory). */
static int copy_start(sim_sender *sd, sim_job *j, int fresh)
{
    sim_xfer *x = sd->free_x;
    if (x) {
        sd->free_x = x->next_free;
    } else {
        if (!(x = calloc(1, sizeof *x)))
            return -1;
        if (xfer_init(x, sd->s)) {
            free(x);
            return -1;
        }
        curl_easy_setopt(x->c, CURLOPT_CLOSESOCKETFUNCTION, on_close);
        curl_easy_setopt(x->c, CURLOPT_CLOSESOCKETDATA, sd);
        x->next_all = sd->all_x;
        sd->all_x = x;
    }
    xfer_aim(x, j->url, j->body, j->header, fresh);
    x->job = j;
    if (curl_multi_add_handle(sd->m, x->c) == CURLM_OK)
        return 0;
    x->job = NULL;
    x->next_free = sd->free_x;
    sd->free_x = x;
    return -1;
}

/* Starts every copy of j (counted as sent already, by count_taken). */
static void job_start(sim_sender *sd, sim_job *j)
{
    if (j->attempt > 0 && j->proto == SIM_REWARDS) {
        /* a retry is signed anew, as a real sender would */
        char *h = sim_rw_header(sd->s->cfg.rw_whsec, j->body, (int64_t)time(NULL));
        if (h) {
            free(j->header);
            j->header = h;
        }
    }
    int copies = job_copies(j);
    j->sender = sd;
    j->oks = 0;
    j->left = copies + 1; /* + 1 while starting */
    for (int i = 0; i < copies; i++)
        if (copy_start(sd, j, copies > 1))
            j->left--; /* a copy that could not start: a transport error */
    if (--j->left == 0)
        job_done(j);
}

/* Takes the due notifies it has room for (n->mu held); returns how many, and
 * in *wait how long it may then sleep. */
static int take_due_locked(sim_sender *sd, sim_job **take, int *wait)
{
    struct sim_notifier *n = sd->n;
    int64_t now = sim_mono_ms();
    int k = 0;
    sd->room += sd->finished;
    sd->finished = 0;
    while (sd->room > 0 && n->n && n->heap[0]->due_ms <= now) {
        take[k++] = heap_pop(n);
        sd->room--;
    }
    /* busy (POSTs in flight): it wakes for their answers anyway, and looks at
     * the queue every SENDER_BUSY_MS, so an insert need not wake it (a write
     * and a wakeup per notify); idle, it sleeps long and inserts wake it */
    int busy = sd->room < SENDER_MAX_JOBS;
    int64_t w = busy ? SENDER_BUSY_MS : SENDER_IDLE_MS;
    if (sd->room > 0 && n->n && n->heap[0]->due_ms - now < w)
        w = n->heap[0]->due_ms - now;
    *wait = w < 0 ? 0 : (int)w;
    sd->starved = sd->room == 0 && n->n && n->heap[0]->due_ms <= now;
    sd->polling = !busy;
    return k;
}

/* ---- the sender threads: curl's sockets on the sender's epoll ---------------------------- */

/* The state of socket fd, the table grown to hold it; NULL on ENOMEM. */
static sock_state *sock_at(sim_sender *sd, curl_socket_t fd)
{
    if ((size_t)fd >= sd->nsocks) {
        size_t n = (size_t)fd * 2 + 64;
        sock_state *g = realloc(sd->socks, n * sizeof *g);
        if (!g)
            return NULL;
        memset(g + sd->nsocks, 0, (n - sd->nsocks) * sizeof *g);
        sd->socks = g;
        sd->nsocks = n;
    }
    return &sd->socks[fd];
}

/* Registers fd in the epoll for events, unless it already is (an entry the
 * table misses or wrongly holds is mended). 0, or -1. */
static int sock_arm(sim_sender *sd, sock_state *st, curl_socket_t fd, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (st->in_ep && st->events == events)
        return 0;
    int op = st->in_ep ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(sd->ep, op, fd, &ev) &&
        (op == EPOLL_CTL_MOD ? errno != ENOENT || epoll_ctl(sd->ep, EPOLL_CTL_ADD, fd, &ev)
                             : errno != EEXIST || epoll_ctl(sd->ep, EPOLL_CTL_MOD, fd, &ev)))
        return -1;
    st->in_ep = 1;
    st->events = events;
    return 0;
}

/* CURLMOPT_SOCKETFUNCTION: curl wants (or no longer wants) a socket's events.
 * Why a socket curl lets go of stays in the epoll: it is a kept-alive
 * connection back in curl's cache, taken again by the next notify; taking it
 * out and putting it back cost two epoll_ctl per notify. It leaves the epoll
 * when curl closes it (on_close), and is disarmed if it stirs while idle. */
static int on_socket(CURL *e, curl_socket_t fd, int what, void *arg, void *sockp)
{
    sim_sender *sd = arg;
    sock_state *st = sock_at(sd, fd);
    (void)e, (void)sockp;
    /* never -1: that would make curl give up on every transfer of the
     * sender; a socket not watched leaves its transfer to the 3 s timeout */
    if (!st)
        return 0;
    if (what == CURL_POLL_REMOVE) {
        st->watched = 0;
        return 0;
    }
    st->watched = 1;
    sock_arm(sd, st, fd,
             ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u));
    return 0;
}

/* CURLOPT_CLOSESOCKETFUNCTION: closing a socket takes it out of the epoll. */
static int on_close(void *arg, curl_socket_t fd)
{
    sim_sender *sd = arg;
    if ((size_t)fd < sd->nsocks)
        sd->socks[fd] = (sock_state){0};
    return close(fd);
}

/* An event on fd: to curl when it watches it; otherwise an idle kept-alive
 * connection stirred (the receiver closed it): disarmed, so the
 * level-triggered epoll does not report it again until curl takes it back. */
static void sock_event(sim_sender *sd, curl_socket_t fd, uint32_t events)
{
    int running;
    sock_state *st = (size_t)fd < sd->nsocks ? &sd->socks[fd] : NULL;
    if (st && !st->watched) {
        sock_arm(sd, st, fd, 0);
        return;
    }
    int fl = ((events & (EPOLLIN | EPOLLHUP)) ? CURL_CSELECT_IN : 0) |
             ((events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
             ((events & EPOLLERR) ? CURL_CSELECT_ERR : 0);
    curl_multi_socket_action(sd->m, fd, fl, &running);
}

/* CURLMOPT_TIMERFUNCTION: when curl next wants CURL_SOCKET_TIMEOUT. */
static int on_timer(CURLM *m, long ms, void *arg)
{
    sim_sender *sd = arg;
    (void)m;
    sd->timer_at = ms < 0 ? -1 : sim_mono_ms() + ms;
    return 0;
}

/* Ends the transfers curl has finished: each back to the pool, its copy
 * done (a success only when the whole answer came and says so). */
static void sender_reap(sim_sender *sd)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(sd->m, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *c = msg->easy_handle;
        CURLcode res = msg->data.result; /* msg dies with the removal */
        sim_xfer *x = NULL;
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_PRIVATE, (char **)&x);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_multi_remove_handle(sd->m, c);
        sim_job *j = x->job;
        x->job = NULL;
        x->next_free = sd->free_x;
        sd->free_x = x;
        copy_done(j, res == CURLE_OK && answer_ok(j->proto, status, x->buf));
    }
}

/* Waits up to wait ms (shortened to curl's timer) and hands curl what is ready. */
static void sender_wait(sim_sender *sd, int wait)
{
    struct epoll_event ev[SENDER_EVENTS];
    int running;
    if (sd->timer_at >= 0) {
        int64_t t = sd->timer_at - sim_mono_ms();
        if (t < wait)
            wait = t < 0 ? 0 : (int)t;
    }
    int k = epoll_wait(sd->ep, ev, SENDER_EVENTS, wait);
    for (int i = 0; i < k; i++) {
        if (ev[i].data.fd == sd->wake) {
            uint64_t v;
            (void)!read(sd->wake, &v, sizeof v);
            continue;
        }
        sock_event(sd, ev[i].data.fd, ev[i].events);
    }
    if (sd->timer_at >= 0 && sd->timer_at <= sim_mono_ms()) {
        sd->timer_at = -1; /* before the call: it may set the next one */
        curl_multi_socket_action(sd->m, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    sender_reap(sd);
}

/* Ends what is still in flight as failed (stop is set, so its notifies are
 * dropped rather than queued again) and frees the multi handle and the pool. */
static void sender_close(sim_sender *sd)
{
    for (sim_xfer *x = sd->all_x; x; x = x->next_all) {
        if (!x->job)
            continue;
        curl_multi_remove_handle(sd->m, x->c);
        sim_job *j = x->job;
        x->job = NULL;
        copy_done(j, 0);
    }
    while (sd->all_x) {
        sim_xfer *x = sd->all_x;
        sd->all_x = x->next_all;
        xfer_free(x);
        free(x);
    }
    sd->free_x = NULL;
    curl_multi_cleanup(sd->m);
    sd->m = NULL;
    free(sd->socks); /* after the cleanup: it closes the cached connections */
    sd->socks = NULL;
    sd->nsocks = 0;
}

static void *sender_main(void *arg)
{
    sim_sender *sd = arg;
    struct sim_notifier *n = sd->n;
    sim_job *take[SENDER_MAX_JOBS];
    for (;;) {
        int wait = 0;
        pthread_mutex_lock(&n->mu);
        if (atomic_load(&n->stop)) {
            pthread_mutex_unlock(&n->mu);
            break;
        }
        int k = take_due_locked(sd, take, &wait);
        pthread_mutex_unlock(&n->mu);
        count_taken(sd->s, take, k);
        for (int i = 0; i < k; i++)
            job_start(sd, take[i]);
        if (sd->starved && sd->finished)
            continue; /* room given back to queued notifies: take them first */
        sender_wait(sd, k ? 0 : wait);
    }
    sender_close(sd);
    return NULL;
}

/* ---- the ticker and the lifecycle ------------------------------------------------------- */

static void *ticker_main(void *arg)
{
    sim *s = arg;
    struct timespec ts = {0, TICK_MS * 1000000L};
    while (!atomic_load(&s->notifier->stop)) {
        pthread_mutex_lock(&s->mu);
        sim_tick_locked(s);
        pthread_mutex_unlock(&s->mu);
        sim_deferred_run(s);
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* A multi handle driving its sockets through sd's epoll, keeping a
 * connection alive for every notify that may be in flight. NULL on ENOMEM. */
static CURLM *sender_multi(sim_sender *sd)
{
    CURLM *m = curl_multi_init();
    if (!m)
        return NULL;
    curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(m, CURLMOPT_SOCKETDATA, sd);
    curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(m, CURLMOPT_TIMERDATA, sd);
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)SENDER_KEEP_CONNS);
    return m;
}

/* Allocates the notifier and each sender's epoll, eventfd and multi handle;
 * NULL on ENOMEM (a sender that lacks one has m NULL). */
static struct sim_notifier *notifier_new(sim *s, int want)
{
    struct sim_notifier *n = calloc(1, sizeof *n);
    if (!n || !(n->senders = calloc((size_t)want, sizeof *n->senders))) {
        free(n);
        return NULL;
    }
    pthread_mutex_init(&n->mu, NULL);
    n->nsenders = want;
    for (int i = 0; i < want; i++) {
        sim_sender *sd = &n->senders[i];
        sd->n = n;
        sd->s = s;
        sd->room = SENDER_MAX_JOBS;
        sd->timer_at = -1;
        sd->ep = epoll_create1(EPOLL_CLOEXEC);
        sd->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = sd->wake};
        if (sd->ep >= 0 && sd->wake >= 0 && epoll_ctl(sd->ep, EPOLL_CTL_ADD, sd->wake, &ev) == 0)
            sd->m = sender_multi(sd); /* NULL: sim_notifier_start gives up */
    }
    return n;
}

int sim_notifier_start(sim *s)
{
    int want = s->cfg.threads > 0 ? s->cfg.threads : 2;
    struct sim_notifier *n = notifier_new(s, want);
    if (!n)
        return -1;
    s->notifier = n;
    int ok = 1;
    for (int i = 0; i < want && ok; i++) {
        sim_sender *sd = &n->senders[i];
        ok = sd->m && pthread_create(&sd->th, NULL, sender_main, sd) == 0;
        sd->started = ok;
    }
    n->ticker_started = ok && pthread_create(&n->ticker, NULL, ticker_main, s) == 0;
    if (!n->ticker_started) {
        sim_notifier_stop(s);
        return -1;
    }
    return 0;
}

void sim_notifier_stop(sim *s)
{
    struct sim_notifier *n = s->notifier;
    if (!n)
        return;
    pthread_mutex_lock(&n->mu);
    atomic_store(&n->stop, 1);
    for (int i = 0; i < n->nsenders; i++) {
        uint64_t one = 1;
        if (n->senders[i].wake >= 0)
            (void)!write(n->senders[i].wake, &one, sizeof one);
    }
    pthread_mutex_unlock(&n->mu);
    for (int i = 0; i < n->nsenders; i++) {
        sim_sender *sd = &n->senders[i];
        if (sd->started)
            pthread_join(sd->th, NULL);
        else if (sd->m)
            sender_close(sd); /* a sender that never started still has its own */
        if (sd->ep >= 0)
            close(sd->ep);
        if (sd->wake >= 0)
            close(sd->wake);
    }
    if (n->ticker_started)
        pthread_join(n->ticker, NULL);
    pthread_mutex_lock(&s->mu);
    sim_notify_drop(s);
    s->notifier = NULL;
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_destroy(&n->mu);
    free(n->heap);
    free(n->senders);
    free(n);
}
