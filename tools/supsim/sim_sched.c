/* sim_sched.c — late answers without a thread per connection: one timer thread
 * keeps the waiters in a min-heap of due times and watches held connections for
 * the peer's hang-up with epoll; blocking control work runs on a thread of its
 * own. Each waiter is woken exactly once, outside the scheduler's lock. */
#include "supsim.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define SLOT_NONE  ((size_t)-1)
#define EVENTS_MAX 64

typedef struct sched_job {
    pthread_t thread;
    atomic_int done;
    sim_waiter *w;
    void (*fn)(void *);
    void *arg;
    struct sched_job *next;
} sched_job;

struct sim_sched {
    pthread_mutex_t mu;
    sim_waiter **heap; /* min-heap on (due_ms, seq) */
    size_t n, cap;
    uint64_t seq;
    int closed; /* set once by sim_sched_stop: no more waiters accepted */
    int ep;     /* epoll: the wakeup eventfd (data NULL) and held connections */
    int evfd;
    pthread_t timer;
    sched_job *jobs; /* spawned, joined on the next spawn once done, or at stop */
};

/* ---- the heap (q->mu held) ------------------------------------------------------ */

static int before(const sim_waiter *a, const sim_waiter *b)
{
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->seq < b->seq);
}

static void heap_set(sim_sched *q, size_t i, sim_waiter *w)
{
    q->heap[i] = w;
    w->slot = i;
}

static void heap_up(sim_sched *q, size_t i)
{
    sim_waiter *w = q->heap[i];
    while (i > 0 && before(w, q->heap[(i - 1) / 2])) {
        heap_set(q, i, q->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(q, i, w);
}

static void heap_down(sim_sched *q, size_t i)
{
    sim_waiter *w = q->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->n)
            break;
        if (c + 1 < q->n && before(q->heap[c + 1], q->heap[c]))
            c++;
        if (!before(q->heap[c], w))
            break;
        heap_set(q, i, q->heap[c]);
        i = c;
    }
    heap_set(q, i, w);
}

static void heap_remove(sim_sched *q, sim_waiter *w)
{
    size_t i = w->slot;
    w->slot = SLOT_NONE;
    if (--q->n == i)
        return;
    sim_waiter *last = q->heap[q->n];
    heap_set(q, i, last);
    heap_up(q, i);
    if (last->slot == i)
        heap_down(q, i);
}

/* ---- the timer thread ---------------------------------------------------------- */

/* Takes w out of the heap and the epoll set and chains it on *wake. q->mu held. */
static void detach(sim_sched *q, sim_waiter *w, sim_wake why, sim_waiter **wake)
{
    heap_remove(q, w);
    if (w->fd >= 0)
        epoll_ctl(q->ep, EPOLL_CTL_DEL, w->fd, NULL);
    w->why = why;
    w->next = *wake;
    *wake = w;
}

/* Wakes a chain; the scheduler forgets each waiter before its wake runs. */
static void wake_all(sim_waiter *w)
{
    while (w) {
        sim_waiter *next = w->next;
        w->wake(w, w->why);
        w = next;
    }
}

/* Detaches what is due (everything once closed) and returns the epoll timeout. */
static int collect_due(sim_sched *q, sim_waiter **wake)
{
    int64_t now = sim_mono_ms();
    while (q->n && (q->closed || q->heap[0]->due_ms <= now))
        detach(q, q->heap[0], q->closed ? SIM_WAKE_STOP : SIM_WAKE_DUE, wake);
    if (!q->n)
        return -1;
    int64_t wait = q->heap[0]->due_ms - now;
    return wait > 60000 ? 60000 : (int)wait;
}

static void *timer_main(void *arg)
{
    sim_sched *q = arg;
    struct epoll_event ev[EVENTS_MAX];
    for (;;) {
        sim_waiter *wake = NULL;
        pthread_mutex_lock(&q->mu);
        int timeout = collect_due(q, &wake);
        int closed = q->closed;
        pthread_mutex_unlock(&q->mu);
        wake_all(wake);
        if (closed)
            return NULL;
        int k = epoll_wait(q->ep, ev, EVENTS_MAX, timeout);
        wake = NULL;
        pthread_mutex_lock(&q->mu);
        for (int i = 0; i < k; i++) {
            sim_waiter *w = ev[i].data.ptr;
            if (!w) {
                uint64_t v;
                (void)!read(q->evfd, &v, sizeof v);
            } else if (w->slot != SLOT_NONE) {
                detach(q, w, SIM_WAKE_HANGUP, &wake);
            }
        }
        pthread_mutex_unlock(&q->mu);
        wake_all(wake);
    }
}

static void poke(sim_sched *q)
{
    uint64_t one = 1;
    (void)!write(q->evfd, &one, sizeof one);
}

/* ---- the API ---------------------------------------------------------------------- */

sim_sched *sim_sched_start(void)
{
    sim_sched *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    pthread_mutex_init(&q->mu, NULL);
    q->ep = epoll_create1(EPOLL_CLOEXEC);
    q->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (q->ep < 0 || q->evfd < 0 || epoll_ctl(q->ep, EPOLL_CTL_ADD, q->evfd, &ev) ||
        pthread_create(&q->timer, NULL, timer_main, q)) {
        if (q->ep >= 0)
            close(q->ep);
        if (q->evfd >= 0)
            close(q->evfd);
        pthread_mutex_destroy(&q->mu);
        free(q);
        return NULL;
    }
    return q;
}

int sim_sched_add(sim_sched *q, sim_waiter *w)
{
    int rc = -1;
    pthread_mutex_lock(&q->mu);
    if (q->closed)
        goto out;
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 1024;
        sim_waiter **g = realloc(q->heap, cap * sizeof *g);
        if (!g)
            goto out;
        q->heap = g;
        q->cap = cap;
    }
    /* only the hang-up matters: pipelined bytes must not wake the timer */
    struct epoll_event ev = {.events = EPOLLRDHUP, .data.ptr = w};
    if (w->fd >= 0 && epoll_ctl(q->ep, EPOLL_CTL_ADD, w->fd, &ev))
        goto out;
    w->seq = q->seq++;
    w->next = NULL;
    heap_set(q, q->n++, w);
    heap_up(q, q->n - 1);
    if (w->slot == 0)
        poke(q); /* the new earliest: the timer must shorten its wait */
    rc = 0;
out:
    pthread_mutex_unlock(&q->mu);
    return rc;
}

static void *job_main(void *arg)
{
    sched_job *j = arg;
    j->fn(j->arg);
    j->w->wake(j->w, SIM_WAKE_DUE);
    atomic_store(&j->done, 1);
    return NULL;
}

/* Joins the finished jobs (all of them when all is set). q->mu held, or stopped. */
static void jobs_reap(sim_sched *q, int all)
{
    for (sched_job **at = &q->jobs; *at;) {
        sched_job *j = *at;
        if (!all && !atomic_load(&j->done)) {
            at = &j->next;
            continue;
        }
        pthread_join(j->thread, NULL);
        *at = j->next;
        free(j);
    }
}

int sim_sched_spawn(sim_sched *q, sim_waiter *w, void (*fn)(void *), void *arg)
{
    sched_job *j = calloc(1, sizeof *j);
    if (!j)
        return -1;
    j->w = w;
    j->fn = fn;
    j->arg = arg;
    pthread_mutex_lock(&q->mu);
    jobs_reap(q, 0);
    int rc = q->closed || pthread_create(&j->thread, NULL, job_main, j) ? -1 : 0;
    if (rc == 0) {
        j->next = q->jobs;
        q->jobs = j;
    }
    pthread_mutex_unlock(&q->mu);
    if (rc)
        free(j);
    return rc;
}

void sim_sched_stop(sim_sched *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->mu);
    q->closed = 1;
    poke(q);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->timer, NULL); /* it wakes every waiter left with SIM_WAKE_STOP */
    jobs_reap(q, 1);
    close(q->ep);
    close(q->evfd);
    pthread_mutex_destroy(&q->mu);
    free(q->heap);
    free(q);
}
