/*
 * fulfil.c — supplier orders: one small state machine per attempt (fulfil.h).
 *
 * A track is an attempt in flight. It is always in exactly one phase:
 *   T_IDLE  waiting in the timer heap for its next exchange (due);
 *   T_JOB   an exchange with the supplier is running (t->job, I/O engine);
 *   T_CMD   a store command recording the result is running (t->cmd, writer).
 *
 * One owner: fulfil's own thread (fulfil_main) is the only thread that reads
 * or writes a track once it is registered, the registry, the heap and the
 * waiters. Other threads only post events to its queue (f->mu, a leaf lock
 * held for a few pointer moves): the I/O thread "exchange finished", the
 * writer "command durable", HTTP threads "begin", "wait" and "confirm", the
 * main thread "resume". The I/O engine and the store only hold the job and
 * the command between submission and their done callback, which touches
 * nothing but the queue. PH_ASSERT_OWNER checks the rule where it matters.
 *
 * Memory: a track lives as long as its attempt is in flight, so with thousands
 * of exchanges on the wire its size is the daemon's size. It holds what every
 * phase needs; the store command and what only it reads (a reason, a fail-over
 * target, sealed codes) are a track_cmd allocated when an exchange ends and
 * freed when the command completed, and the strings of variable length (the
 * callback URL, the suppliers tried) are allocated to their length.
 */
#include "supply/fulfil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supply/attempt.h"
#include "codes/import.h"
#include "supply/plugin_ops.h"
#include "supply/route.h"
#include "base/lockcheck.h"
#include "base/util.h"

#define ACCOUNT_AAD "perkhub/account/v1"
#define NBUCKETS    4096

enum { T_IDLE = 1, T_JOB, T_CMD };

/* What other threads tell fulfil's thread (the queue). A node is embedded in
 * what it carries, so posting never allocates, except a confirm's. */
enum { EV_BEGIN = 1, EV_RESUME, EV_JOB_DONE, EV_CMD_DONE, EV_WAIT, EV_CONFIRM };
typedef struct fev {
    int kind;
    struct fev *next;
} fev;

#define EV_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

typedef struct track track;
struct track {
    ph_fulfil *f;
    uint64_t order_id;
    uint32_t no;
    int card;  /* 1 card codes, 0 recharge */
    int state; /* PH_ATTEMPT_* as last stored */
    int phase;
    int send_order;  /* 1 until the order request itself has been sent */
    int follow_step; /* 1: the next exchange is the plugin's follow-up step */
    int confirm;     /* a verified callback asked for a query as soon as possible */
    uint64_t gen;    /* heap entries with another gen are stale */
    ph_supplier *sup;
    ph_sio_limits limits;
    int64_t window_ms, query_delay_ms, query_max_ms;
    char supplier[PH_SKU_MAX + 1];
    char sku[PH_SKU_MAX + 1];
    char product_id[PH_SUPPLIER_ORDER_MAX + 1];
    char ref[PH_REF_MAX + 1];
    char supplier_order_id[PH_SUPPLIER_ORDER_MAX + 1];
    char step_state[PH_REASON_MAX + 1];
    char *account; /* plaintext recharge account; wiped */
    uint32_t quantity, step, checks;
    int64_t unit_cost, face_value, created_at;
    char *tried; /* suppliers this order already went to, each NUL-ended */
    size_t ntried, tried_len;
    char *callback_url; /* for the exchange's op; rebuilt when the base changes */
    ph_sio_job job;
    struct track_cmd *cmd; /* T_CMD only */
    track *hnext;          /* registry chain */
    int64_t resume_due;    /* EV_RESUME: when to query */
    fev ev;                /* EV_BEGIN, EV_RESUME, then EV_JOB_DONE: one at a time */
};

/* A track's store command and what only the command reads (T_CMD). */
typedef struct track_cmd {
    ph_cmd cmd; /* first: on_cmd_done gets the track_cmd back */
    track *t;
    char reason[PH_REASON_MAX + 1];
    char next_supplier[PH_SKU_MAX + 1]; /* a fail-over target */
    char next_product[PH_SUPPLIER_ORDER_MAX + 1];
    ph_supplied_code *codes; /* sealed codes the command stores */
    uint8_t *blobs;
    fev ev; /* EV_CMD_DONE */
} track_cmd;

#define TRIED_MAX 8 /* suppliers a track remembers (fail-over skips them) */

/* A due time for attempt (order_id, no). It names the attempt rather than
 * pointing at its track: a track can end (and be freed) while an older entry
 * for it still waits in the heap, e.g. after a callback asked for an early
 * query. Entries whose gen is not the track's current one are stale. */
typedef struct heap_ent {
    int64_t due;
    uint64_t gen;
    uint64_t order_id;
    uint32_t no;
} heap_ent;

typedef struct waiter {
    uint64_t id;
    int64_t deadline;
    void (*cb)(void *);
    void *arg;
    struct waiter *next;
    fev ev; /* EV_WAIT */
} waiter;

typedef struct confirm_ev {
    fev ev; /* EV_CONFIRM */
    uint64_t id;
    uint32_t no;
} confirm_ev;

struct ph_fulfil {
    ph_fulfil_opts o;
    pthread_t thread;

    /* shared, under mu (a leaf: nothing is called with it held) */
    ph_mutex mu;
    pthread_cond_t cv;      /* fulfil's thread sleeps on it: an event, stop, exit */
    pthread_cond_t idle_cv; /* ph_fulfil_flush and ph_fulfil_stop wait on it */
    fev *qhead, *qtail;
    uint64_t posted, handled; /* events queued / handled so far (flush) */
    int stopping;             /* ph_fulfil_stop: no new exchanges */
    int stop_seen;            /* the thread has seen stopping: it calls the I/O engine no more */
    int exiting;              /* ph_fulfil_destroy: drain the queue and end */
    char callback_base[256];

    /* fulfil's thread only (owner) */
    ph_owner owner;
    track *buckets[NBUCKETS];
    heap_ent *heap;
    size_t nheap, capheap;
    waiter *waiters;
    atomic_size_t active; /* written by the owner, read by anyone (stats) */
};

static void on_job_done(ph_sio_job *job);
static void on_cmd_done(ph_cmd *cmd);

/* ---- the queue (any thread) ------------------------------------------------ */

/* Hands an event to fulfil's thread. Never fails: the node is the caller's. */
static void post(ph_fulfil *f, fev *e, int kind)
{
    e->kind = kind;
    e->next = NULL;
    ph_mutex_lock(&f->mu);
    if (f->qtail)
        f->qtail->next = e;
    else
        f->qhead = e;
    f->qtail = e;
    f->posted++;
    pthread_cond_signal(&f->cv);
    ph_mutex_unlock(&f->mu);
}

/* ---- registry, heap, waiters (fulfil's thread) -------------------------------- */

static track **bucket(ph_fulfil *f, uint64_t id)
{
    PH_ASSERT_OWNER(&f->owner);
    return &f->buckets[id % NBUCKETS];
}

static void reg_add(ph_fulfil *f, track *t)
{
    track **b = bucket(f, t->order_id);
    t->hnext = *b;
    *b = t;
    atomic_fetch_add_explicit(&f->active, 1, memory_order_relaxed);
}

static void reg_del(ph_fulfil *f, track *t)
{
    for (track **p = bucket(f, t->order_id); *p; p = &(*p)->hnext)
        if (*p == t) {
            *p = t->hnext;
            atomic_fetch_sub_explicit(&f->active, 1, memory_order_relaxed);
            return;
        }
}

static track *reg_find(ph_fulfil *f, uint64_t id, uint32_t no)
{
    for (track *t = *bucket(f, id); t; t = t->hnext)
        if (t->order_id == id && t->no == no)
            return t;
    return NULL;
}

static void heap_swap(ph_fulfil *f, size_t a, size_t b)
{
    heap_ent x = f->heap[a];
    f->heap[a] = f->heap[b];
    f->heap[b] = x;
}

static int heap_push(ph_fulfil *f, track *t, int64_t due)
{
    PH_ASSERT_OWNER(&f->owner);
    if (f->nheap == f->capheap) {
        heap_ent *h = ph_grow(f->heap, &f->capheap, sizeof *h, 256);
        if (!h)
            return PH_ENOMEM;
        f->heap = h;
    }
    size_t i = f->nheap++;
    f->heap[i] = (heap_ent){due, ++t->gen, t->order_id, t->no};
    while (i && f->heap[(i - 1) / 2].due > f->heap[i].due) {
        heap_swap(f, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    t->phase = T_IDLE;
    return PH_OK;
}

static heap_ent heap_pop(ph_fulfil *f)
{
    PH_ASSERT_OWNER(&f->owner);
    heap_ent top = f->heap[0];
    f->heap[0] = f->heap[--f->nheap];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < f->nheap && f->heap[l].due < f->heap[m].due)
            m = l;
        if (r < f->nheap && f->heap[r].due < f->heap[m].due)
            m = r;
        if (m == i)
            break;
        heap_swap(f, i, m);
        i = m;
    }
    return top;
}

/* Detaches the waiters of order id (every one when id is 0), or with now > 0
 * those whose deadline passed, into a list the caller fires. */
static waiter *waiters_take(ph_fulfil *f, uint64_t id, int64_t now)
{
    PH_ASSERT_OWNER(&f->owner);
    waiter *fired = NULL;
    for (waiter **p = &f->waiters; *p;) {
        waiter *w = *p;
        if (now ? w->deadline <= now : (!id || w->id == id)) {
            *p = w->next;
            w->next = fired;
            fired = w;
        } else {
            p = &w->next;
        }
    }
    return fired;
}

static void waiters_fire(waiter *w)
{
    while (w) {
        waiter *n = w->next;
        w->cb(w->arg);
        free(w);
        w = n;
    }
}

/* ---- tracks ----------------------------------------------------------------- */

static void cmd_free(track_cmd *b)
{
    if (!b)
        return;
    free(b->codes);
    free(b->blobs);
    free(b);
}

static void track_free(track *t)
{
    if (t->account) {
        ph_wipe(t->account, strlen(t->account));
        free(t->account);
    }
    ph_supplier_release(t->sup);
    cmd_free(t->cmd);
    free(t->tried);
    free(t->callback_url);
    free(t);
}

/* Remembers supplier id as tried (up to TRIED_MAX; beyond, fail-over stops). */
static void tried_add(track *t, const char *id)
{
    size_t n = strlen(id) + 1;
    char *p = t->ntried < TRIED_MAX ? realloc(t->tried, t->tried_len + n) : NULL;
    if (!p)
        return;
    memcpy(p + t->tried_len, id, n);
    t->tried = p;
    t->tried_len += n;
    t->ntried++;
}

typedef struct route_ctx {
    ph_fulfil *f;
    uint64_t cap;
} route_ctx;

static int usable_for(void *ctx, const ph_supplier_conf *sc);

/* The supplier settings of the current config (defaults if it is gone). */
static void track_limits(ph_fulfil *f, track *t)
{
    void *ref;
    const ph_config *cfg = f->o.cfg.acquire(f->o.cfg.ctx, &ref);
    const ph_supplier_conf *sc = ph_config_supplier(cfg, t->supplier);
    t->limits = (ph_sio_limits){.tls_verify = 1};
    t->query_max_ms = 30000;
    unsigned window_s = 0;
    if (sc) {
        t->limits = ph_sio_limits_of(sc);
        t->query_max_ms = sc->query_max_delay_ms;
        window_s = sc->processing_window_s;
    }
    const ph_product_conf *p = ph_config_product(cfg, t->sku);
    t->face_value = p ? p->face_value : 0;
    f->o.cfg.release(ref);
    if (t->sup) {
        const struct perkhub_plugin *pl = ph_supplier_plugin(t->sup);
        if (!window_s)
            window_s = pl->processing_window_s ? pl->processing_window_s : 300;
        t->query_delay_ms = pl->query_delay_ms ? pl->query_delay_ms : 1000;
    } else {
        t->query_delay_ms = 1000;
    }
    t->window_ms = (int64_t)(window_s ? window_s : 300) * 1000;
}

/* A track for attempt a of order o (which lists the suppliers tried so far). */
static track *track_new(ph_fulfil *f, const ph_order *o, const ph_attempt *a, ph_err *err)
{
    track *t = calloc(1, sizeof *t);
    if (!t) {
        ph_err_set(err, PH_ENOMEM, "fulfil: out of memory");
        return NULL;
    }
    t->f = f;
    t->order_id = o->id;
    t->no = a->no;
    t->card = o->delivery != PH_DELIVERY_RECHARGE;
    t->state = a->state;
    t->quantity = o->quantity;
    t->unit_cost = a->unit_cost;
    t->created_at = a->created_at;
    t->checks = a->checks;
    snprintf(t->supplier, sizeof t->supplier, "%s", a->supplier);
    snprintf(t->sku, sizeof t->sku, "%s", o->sku);
    snprintf(t->product_id, sizeof t->product_id, "%s", a->product_id);
    snprintf(t->ref, sizeof t->ref, "%s", a->ref);
    snprintf(t->supplier_order_id, sizeof t->supplier_order_id, "%s", a->supplier_order_id);
    for (size_t i = 0; i < o->nattempts; i++)
        tried_add(t, o->attempts[i].supplier);
    if (ph_suppliers_acquire(f->o.suppliers, t->supplier, &t->sup) != PH_OK)
        t->sup = NULL; /* disabled or gone: retried when due */
    track_limits(f, t);
    return t;
}

/* Unseals the order's recharge account into the track (queries of some
 * suppliers name it; the sandbox needs it to answer). */
static void track_account(ph_fulfil *f, track *t, const ph_order *o, const char *plain)
{
    if (plain) {
        t->account = strdup(plain);
        return;
    }
    if (!o->account_sealed_len || o->account_sealed_len <= PH_SEAL_OVERHEAD)
        return;
    size_t n = o->account_sealed_len - PH_SEAL_OVERHEAD;
    char *acc = calloc(1, n + 1);
    size_t len = 0;
    if (acc && ph_crypto_open(f->o.keys, o->account_sealed, o->account_sealed_len,
                              (const uint8_t *)ACCOUNT_AAD, strlen(ACCOUNT_AAD), (uint8_t *)acc,
                              &len) == PH_OK) {
        acc[len] = 0;
        t->account = acc;
        return;
    }
    free(acc);
}

/* ---- exchanges ---------------------------------------------------------------- */

static int io_submit(ph_fulfil *f, ph_sio_job *job)
{
    return f->o.io.submit ? f->o.io.submit(f->o.io.ctx, job) : ph_sio_submit(f->o.sio, job);
}

static void job_setup(track *t)
{
    ph_sio_job *j = &t->job;
    memset(j, 0, sizeof *j);
    j->sup = t->sup;
    j->limits = t->limits;
    j->done = on_job_done;
    j->arg = t;
    struct perkhub_op *op = &j->op;
    op->order_ref = t->ref;
    op->supplier_order_id = t->supplier_order_id[0] ? t->supplier_order_id : NULL;
    op->product_id = t->product_id;
    op->quantity = t->card ? t->quantity : 1;
    op->account = t->account;
    op->unit_price = t->unit_cost;
    op->face_value = t->face_value;
    op->created_at_ms = t->created_at;
    op->callback_url = t->callback_url;
    int kind = t->card ? PERKHUB_OP_CARD_ORDER : PERKHUB_OP_RECHARGE;
    if (t->send_order || t->follow_step) {
        op->kind = kind;
        op->step = t->send_order ? 0 : (int)t->step;
        op->state = t->send_order ? NULL : t->step_state;
    } else {
        op->kind = PERKHUB_OP_ORDER_QUERY;
        op->order_kind = kind;
    }
}

/* The URL suppliers call back for this track, built again only when the base
 * changed. Fulfil's thread. PH_ENOMEM leaves the track without one. */
static int track_callback_url(ph_fulfil *f, track *t)
{
    char base[sizeof f->callback_base];
    ph_mutex_lock(&f->mu); /* the base changes on the main thread (reload) */
    memcpy(base, f->callback_base, sizeof base);
    ph_mutex_unlock(&f->mu);
    char url[sizeof base + PH_SKU_MAX + 16];
    int n = snprintf(url, sizeof url, "%s/v1/callbacks/%s", base, t->supplier);
    if (t->callback_url && strcmp(t->callback_url, url) == 0)
        return PH_OK;
    char *p = realloc(t->callback_url, (size_t)n + 1);
    if (!p)
        return PH_ENOMEM;
    memcpy(p, url, (size_t)n + 1);
    t->callback_url = p;
    return PH_OK;
}

/* Starts the track's next exchange. Fulfil's thread. */
static void track_run(ph_fulfil *f, track *t)
{
    PH_ASSERT_OWNER(&f->owner);
    if (!t->sup && ph_suppliers_acquire(f->o.suppliers, t->supplier, &t->sup) != PH_OK) {
        t->sup = NULL;
        ph_log(f->o.log, PH_LOG_WARN, NULL, "fulfil.supplier_unavailable",
               "order=%llu attempt=%u supplier=%s", (unsigned long long)t->order_id, t->no,
               t->supplier);
        heap_push(f, t, ph_now_ms() + (t->query_max_ms > 0 ? t->query_max_ms : 30000));
        return;
    }
    if (track_callback_url(f, t) != PH_OK) {
        heap_push(f, t, ph_now_ms() + (t->query_max_ms > 0 ? t->query_max_ms : 30000));
        return;
    }
    job_setup(t);
    t->phase = T_JOB;
    if (io_submit(f, &t->job) != PH_OK)
        t->phase = T_IDLE; /* shutting down: the store keeps the attempt for the restart */
}

/* ---- from an exchange to a store command --------------------------------------- */

/* Seals the delivered codes exactly like imported ones, into the command. */
static int seal_codes(ph_fulfil *f, track_cmd *b, const struct perkhub_result *res)
{
    size_t n = res->ncodes, total = 0;
    for (size_t i = 0; i < n; i++) {
        const struct perkhub_code *c = &res->codes[i];
        size_t cl = c->code ? strlen(c->code) : 0, kl = c->card_no ? strlen(c->card_no) : 0;
        if (!cl || cl > PH_CODE_MAX || kl > PH_CODE_MAX)
            return PH_EINVAL;
        total += 1 + cl + kl + PH_SEAL_OVERHEAD;
    }
    b->codes = calloc(n, sizeof *b->codes);
    b->blobs = malloc(total ? total : 1);
    if (!b->codes || !b->blobs)
        return PH_ENOMEM;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const struct perkhub_code *c = &res->codes[i];
        size_t len = 0;
        int rc = ph_code_seal(f->o.keys, c->code, strlen(c->code), c->card_no,
                              c->card_no ? strlen(c->card_no) : 0, b->blobs + off, &len,
                              b->codes[i].hash);
        if (rc)
            return rc;
        b->codes[i].sealed = b->blobs + off;
        b->codes[i].sealed_len = (uint32_t)len;
        b->codes[i].expires_at = c->expires_at_ms > 0 ? c->expires_at_ms : 0;
        off += len;
    }
    return PH_OK;
}

static int pick_target(ph_fulfil *f, const ph_config *cfg, const ph_product_conf *p,
                       const char *const *tried, size_t ntried, ph_attempt_target *out);

/* Picks the next offer for a fail-over, skipping every supplier tried (at most
 * as many as the track remembers). */
static int failover_target(ph_fulfil *f, track *t, ph_attempt_target *out, void **ref)
{
    const ph_config *cfg = f->o.cfg.acquire(f->o.cfg.ctx, ref);
    const ph_product_conf *p = ph_config_product(cfg, t->sku);
    const char *tried[TRIED_MAX];
    const char *name = t->tried;
    for (size_t i = 0; i < t->ntried; i++, name += strlen(name) + 1)
        tried[i] = name;
    return p && t->ntried < TRIED_MAX && pick_target(f, cfg, p, tried, t->ntried, out) == PH_OK;
}

/* The track's command, zeroed; NULL when out of memory. */
static track_cmd *cmd_new(track *t)
{
    track_cmd *b = calloc(1, sizeof *b);
    if (b)
        b->t = t;
    return b;
}

static void fill_cmd(track_cmd *b, const ph_attempt_move *m, const struct perkhub_result *res)
{
    track *t = b->t;
    ph_cmd *c = &b->cmd;
    memset(c, 0, sizeof *c);
    c->type = PH_CMD_ATTEMPT;
    c->now = ph_now_ms();
    c->done = on_cmd_done;
    c->arg = b;
    c->in.attempt.order_id = t->order_id;
    c->in.attempt.no = t->no;
    c->in.attempt.state = m->state;
    ph_text_clean(b->reason, sizeof b->reason, m->reason);
    c->in.attempt.reason = b->reason;
    c->in.attempt.step = -1;
    c->in.attempt.charged = res && res->amount >= 0 ? res->amount : -1;
    c->in.attempt.next_check_at = m->next_check_at;
    c->in.attempt.count_check = m->count_check;
    if (res && res->supplier_order_id && *res->supplier_order_id) {
        ph_text_clean(t->supplier_order_id, sizeof t->supplier_order_id, res->supplier_order_id);
        c->in.attempt.supplier_order_id = t->supplier_order_id;
    }
    if (m->follow_step && res) {
        ph_text_clean(t->step_state, sizeof t->step_state, res->next_state);
        c->in.attempt.step_state = t->step_state;
        c->in.attempt.step = t->step + 1;
    }
}

/* No memory for the command that would record the exchange: nothing durable
 * changed, so the attempt is asked about again later (a query, never the order
 * again: it may have gone out). */
static void record_later(ph_fulfil *f, track *t, const ph_attempt_ctx *a)
{
    ph_log(f->o.log, PH_LOG_ERROR, NULL, "fulfil.record_failed",
           "order=%llu attempt=%u rc=out_of_memory", (unsigned long long)t->order_id, t->no);
    t->send_order = 0;
    t->follow_step = 0;
    ph_sio_job_clear(&t->job);
    heap_push(f, t, ph_now_ms() + ph_attempt_backoff(a, t->checks));
}

/* A fail-over target for the command; its strings are copied out of the
 * config snapshot they live in. */
static void set_failover(ph_fulfil *f, track_cmd *b)
{
    void *ref = NULL;
    ph_attempt_target *next = &b->cmd.in.attempt.next;
    if (failover_target(f, b->t, next, &ref)) {
        snprintf(b->next_supplier, sizeof b->next_supplier, "%s", next->supplier);
        snprintf(b->next_product, sizeof b->next_product, "%s", next->product_id);
        next->supplier = b->next_supplier;
        next->product_id = b->next_product;
    }
    if (ref)
        f->o.cfg.release(ref);
}

/* I/O thread: the exchange is over; everything else happens on fulfil's. */
static void on_job_done(ph_sio_job *job)
{
    track *t = job->arg;
    post(t->f, &t->ev, EV_JOB_DONE);
}

/* An exchange ended: decide (attempt.h) and record the move in the store. */
static void job_done(ph_fulfil *f, track *t, int stopping)
{
    PH_ASSERT_OWNER(&f->owner);
    ph_sio_job *job = &t->job;
    ph_attempt_ctx a = {t->send_order, t->card,           t->quantity,
                        t->state,      t->created_at,     t->checks,
                        t->window_ms,  t->query_delay_ms, t->query_max_ms};
    ph_exchange x = {job->outcome, job->parsed, &job->res, job->detail};
    ph_attempt_move m;
    ph_attempt_decide(&a, &x, ph_now_ms(), &m);
    track_cmd *b = cmd_new(t);
    if (!b)
        return record_later(f, t, &a);
    if (m.take_codes && seal_codes(f, b, &job->res) != PH_OK) {
        m.state = PH_ATTEMPT_UNKNOWN;
        m.take_codes = 0;
        snprintf(m.reason, sizeof m.reason, "codes_not_storable");
        m.next_check_at = ph_now_ms() + ph_attempt_backoff(&a, t->checks);
    }
    fill_cmd(b, &m, job->parsed ? &job->res : NULL);
    if (m.take_codes) {
        b->cmd.in.attempt.codes = b->codes;
        b->cmd.in.attempt.ncodes = job->res.ncodes;
    }
    if (m.failover && !stopping)
        set_failover(f, b);
    ph_log(f->o.log, PH_LOG_INFO, NULL, "fulfil.exchange",
           "order=%llu attempt=%u supplier=%s op=%s outcome=%s state=%s%s%s",
           (unsigned long long)t->order_id, t->no, t->supplier, ph_op_kind_name(job->op.kind),
           ph_supplier_host(t->sup)->status_str(job->outcome), ph_attempt_state_name(m.state),
           m.reason[0] ? " reason=" : "", m.reason);
    t->send_order = 0;
    t->follow_step = m.follow_step;
    if (m.follow_step)
        t->step++;
    ph_sio_job_clear(job);
    t->phase = T_CMD;
    t->cmd = b;
    if (ph_store_submit(f->o.store, &b->cmd) != PH_OK) {
        t->phase = T_IDLE; /* closing: the store keeps the last durable state */
        t->cmd = NULL;
        cmd_free(b);
    }
}

/* ---- from a durable command to what comes next ---------------------------------- */

static int order_final(int s)
{
    return s == PH_ORDER_SUCCEEDED || s == PH_ORDER_FAILED;
}

/* Moves the track to the failover attempt the command created. Fulfil's
 * thread. */
static void track_next_attempt(ph_fulfil *f, track *t, const ph_order *o)
{
    PH_ASSERT_OWNER(&f->owner);
    const ph_attempt *a = &o->attempts[o->nattempts - 1];
    ph_supplier_release(t->sup);
    t->sup = NULL;
    t->no = a->no;
    t->state = a->state;
    t->created_at = a->created_at;
    t->checks = 0;
    t->unit_cost = a->unit_cost;
    t->step = 0;
    t->follow_step = 0;
    t->supplier_order_id[0] = 0;
    snprintf(t->supplier, sizeof t->supplier, "%s", a->supplier);
    snprintf(t->product_id, sizeof t->product_id, "%s", a->product_id);
    snprintf(t->ref, sizeof t->ref, "%s", a->ref);
    tried_add(t, a->supplier);
    if (ph_suppliers_acquire(f->o.suppliers, t->supplier, &t->sup) != PH_OK)
        t->sup = NULL;
    track_limits(f, t);
    t->send_order = 1;
}

/* The supplier delivered codes we already hold (PH_EDUP): storing them would
 * issue a code twice (rule 1), and asking again brings the same codes. The
 * supplier acted and charged, so the attempt fails without fail-over, with a
 * reason ops reconcile with the supplier. 1 when the command was resubmitted. */
static int refuse_known_codes(ph_fulfil *f, track_cmd *b)
{
    track *t = b->t;
    if (b->cmd.rc != PH_EDUP || !b->cmd.in.attempt.ncodes)
        return 0;
    ph_log(f->o.log, PH_LOG_ERROR, NULL, "fulfil.known_codes",
           "order=%llu attempt=%u supplier=%s detail=\"the supplier delivered codes already "
           "stored; the attempt fails for reconciliation\"",
           (unsigned long long)t->order_id, t->no, t->supplier);
    ph_attempt_move m = {.state = PH_ATTEMPT_FAILED};
    snprintf(m.reason, sizeof m.reason, "supplier_delivered_known_codes");
    ph_cmd_clear(&b->cmd);
    fill_cmd(b, &m, NULL);
    return ph_store_submit(f->o.store, &b->cmd) == PH_OK;
}

/* The track's command is over: its results and memory go. */
static void cmd_end(track *t, track_cmd *b)
{
    t->cmd = NULL;
    ph_cmd_clear(&b->cmd);
    cmd_free(b);
}

/* Writer thread: the command is durable (or refused); fulfil's thread goes on. */
static void on_cmd_done(ph_cmd *cmd)
{
    track_cmd *b = (track_cmd *)cmd;
    post(b->t->f, &b->ev, EV_CMD_DONE);
}

/* A track's command completed: the track follows the stored order (final,
 * fail-over, next check). When stopping, nothing new goes to the store or the
 * I/O engine: the store may be closing. */
static void cmd_done(ph_fulfil *f, track_cmd *b, int stopping)
{
    PH_ASSERT_OWNER(&f->owner);
    ph_cmd *cmd = &b->cmd;
    track *t = b->t;
    free(b->codes);
    free(b->blobs);
    b->codes = NULL;
    b->blobs = NULL;
    if (!stopping && refuse_known_codes(f, b))
        return;
    const ph_order *o = cmd->order;
    if (cmd->rc != PH_OK || !o) {
        /* PH_ESTATE: the attempt moved on already (a late duplicate); anything
         * else: keep the durable state and look again later. */
        ph_log(f->o.log, PH_LOG_WARN, NULL, "fulfil.record_failed", "order=%llu attempt=%u rc=%s",
               (unsigned long long)t->order_id, t->no, ph_strerror(cmd->rc));
        if (cmd->rc == PH_ESTATE || stopping) {
            reg_del(f, t);
            cmd_end(t, b);
            track_free(t);
            return;
        }
        ph_attempt_ctx ac = {.query_delay_ms = t->query_delay_ms, .query_max_ms = t->query_max_ms};
        cmd_end(t, b);
        heap_push(f, t, ph_now_ms() + ph_attempt_backoff(&ac, t->checks));
        return;
    }
    const ph_attempt *a = NULL;
    for (size_t i = 0; i < o->nattempts; i++)
        if (o->attempts[i].no == t->no)
            a = &o->attempts[i];
    if (order_final(o->state)) {
        reg_del(f, t);
        waiters_fire(waiters_take(f, o->id, 0));
        cmd_end(t, b);
        track_free(t);
        return;
    }
    if (o->nattempts && o->attempts[o->nattempts - 1].no != t->no) {
        track_next_attempt(f, t, o); /* fail-over: send the new attempt now */
        cmd_end(t, b);
        if (!stopping)
            track_run(f, t);
        else
            t->phase = T_IDLE; /* the store has it SENDING: resumed after the restart */
        return;
    }
    if (a) {
        t->state = a->state;
        t->checks = a->checks;
    }
    int64_t due = a && a->next_check_at ? a->next_check_at : ph_now_ms();
    if (t->confirm) {
        t->confirm = 0;
        due = ph_now_ms();
    }
    cmd_end(t, b);
    heap_push(f, t, due);
}

/* ---- fulfil's thread ------------------------------------------------------------- */

/* A new order's first attempt (EV_BEGIN) or an unfinished one found at start
 * (EV_RESUME). After a restart a SENDING attempt may have reached the
 * supplier: it is recorded UNKNOWN first (never resent), then queried. */
static void track_start(ph_fulfil *f, track *t, int resume, int stopping)
{
    if (stopping) { /* the store keeps the attempt; the restart resumes it */
        track_free(t);
        return;
    }
    reg_add(f, t);
    if (!resume) {
        track_run(f, t);
        return;
    }
    track_cmd *b = t->state == PH_ATTEMPT_SENDING ? cmd_new(t) : NULL;
    if (!b) {
        /* a SENDING attempt without memory to record it UNKNOWN is queried
         * all the same: whatever the query says, it was sent */
        heap_push(f, t, t->resume_due);
        return;
    }
    ph_attempt_move m = {.state = PH_ATTEMPT_UNKNOWN, .next_check_at = ph_now_ms()};
    snprintf(m.reason, sizeof m.reason, "interrupted_while_sending");
    fill_cmd(b, &m, NULL);
    t->phase = T_CMD;
    t->cmd = b;
    if (ph_store_submit(f->o.store, &b->cmd) != PH_OK) {
        t->phase = T_IDLE;
        t->cmd = NULL;
        cmd_free(b);
    }
}

/* A client waits for order w->id: fired now when no track holds the order (it
 * is final already, or not ours to wait for), else when it ends. */
static void wait_add(ph_fulfil *f, waiter *w, int stopping)
{
    track *t = *bucket(f, w->id);
    while (t && t->order_id != w->id)
        t = t->hnext;
    if (stopping || !t) {
        w->next = NULL;
        waiters_fire(w);
        return;
    }
    w->next = f->waiters;
    f->waiters = w;
}

/* A verified callback for attempt (id, no): query now, or right after the
 * exchange or command in progress. */
static void confirm(ph_fulfil *f, uint64_t id, uint32_t no, int stopping)
{
    track *t = reg_find(f, id, no);
    if (t && t->phase == T_IDLE && !stopping)
        heap_push(f, t, ph_now_ms());
    else if (t)
        t->confirm = 1;
}

static void handle(ph_fulfil *f, fev *e, int stopping)
{
    switch (e->kind) {
    case EV_BEGIN:
    case EV_RESUME:
        track_start(f, EV_OF(e, track, ev), e->kind == EV_RESUME, stopping);
        break;
    case EV_JOB_DONE:
        job_done(f, EV_OF(e, track, ev), stopping);
        break;
    case EV_CMD_DONE:
        cmd_done(f, EV_OF(e, track_cmd, ev), stopping);
        break;
    case EV_WAIT:
        wait_add(f, EV_OF(e, waiter, ev), stopping);
        break;
    case EV_CONFIRM: {
        confirm_ev *c = EV_OF(e, confirm_ev, ev);
        confirm(f, c->id, c->no, stopping);
        free(c);
        break;
    }
    }
}

/* Due exchanges and expired waiters; returns when to look again. */
static int64_t run_due(ph_fulfil *f)
{
    int64_t now = ph_now_ms(), next = now + 1000;
    while (f->nheap && f->heap[0].due <= now) {
        heap_ent e = heap_pop(f);
        track *t = reg_find(f, e.order_id, e.no);
        if (t && e.gen == t->gen && t->phase == T_IDLE)
            track_run(f, t);
    }
    if (f->nheap && f->heap[0].due < next)
        next = f->heap[0].due;
    waiters_fire(waiters_take(f, 0, now));
    for (waiter *w = f->waiters; w; w = w->next)
        if (w->deadline < next)
            next = w->deadline;
    return next;
}

static void *fulfil_main(void *arg)
{
    ph_fulfil *f = arg;
    ph_owner_set(&f->owner);
    int waiters_done = 0;
    ph_mutex_lock(&f->mu);
    for (;;) {
        fev *q = f->qhead;
        f->qhead = f->qtail = NULL;
        int stopping = f->stopping;
        if (stopping && !f->stop_seen) {
            f->stop_seen = 1; /* from here on, no call to the I/O engine */
            pthread_cond_broadcast(&f->idle_cv);
        }
        ph_mutex_unlock(&f->mu);

        uint64_t n = 0;
        for (fev *next; q; q = next, n++) {
            next = q->next;
            handle(f, q, stopping);
        }
        int64_t wake = 0;
        if (!stopping) {
            wake = run_due(f);
        } else if (!waiters_done) {
            waiters_fire(waiters_take(f, 0, 0)); /* clients get the order as it is now */
            waiters_done = 1;
        }

        ph_mutex_lock(&f->mu);
        f->handled += n;
        if (n)
            pthread_cond_broadcast(&f->idle_cv);
        if (f->qhead || f->stopping != stopping)
            continue;
        if (f->exiting)
            break;
        if (stopping) {
            ph_mutex_wait(&f->mu, &f->cv, NULL);
        } else {
            struct timespec ts = {(time_t)(wake / 1000), (long)(wake % 1000) * 1000000L};
            ph_mutex_wait(&f->mu, &f->cv, &ts);
        }
    }
    ph_mutex_unlock(&f->mu);
    return NULL;
}

/* ---- public ------------------------------------------------------------------------ */

static int usable_for(void *ctx, const ph_supplier_conf *sc)
{
    route_ctx *rc = ctx;
    ph_supplier *sup;
    if (ph_suppliers_acquire(rc->f->o.suppliers, sc->id, &sup) != PH_OK)
        return 0;
    uint64_t caps = ph_supplier_plugin(sup)->capabilities;
    ph_supplier_release(sup);
    if (!(caps & PERKHUB_CAP_ORDER_QUERY) || !(caps & rc->cap))
        return 0;
    return rc->f->o.io.allow ? rc->f->o.io.allow(rc->f->o.io.ctx, sc->id)
                             : ph_sio_allow(rc->f->o.sio, sc->id);
}

/* The best usable offer of p for its kind of delivery (route.h), as a target
 * whose strings point into cfg. */
static int pick_target(ph_fulfil *f, const ph_config *cfg, const ph_product_conf *p,
                       const char *const *tried, size_t ntried, ph_attempt_target *out)
{
    route_ctx rc = {f, p->delivery == PH_DELIVERY_RECHARGE ? PERKHUB_CAP_RECHARGE
                                                           : PERKHUB_CAP_CARD_ORDER};
    const ph_offer_conf *o = ph_route_pick(cfg, p, tried, ntried, usable_for, &rc);
    if (!o)
        return PH_ENOTFOUND;
    *out = (ph_attempt_target){o->supplier, o->supplier_sku, o->cost};
    return PH_OK;
}

int ph_fulfil_route(ph_fulfil *f, const ph_config *cfg, const ph_product_conf *p,
                    ph_attempt_target *out)
{
    return pick_target(f, cfg, p, NULL, 0, out);
}

int ph_fulfil_seal_account(ph_fulfil *f, const char *account, uint8_t *out, uint32_t *outlen,
                           char masked[32])
{
    size_t n = strlen(account), len = 0;
    int rc = ph_crypto_seal(f->o.keys, (const uint8_t *)account, n, (const uint8_t *)ACCOUNT_AAD,
                            strlen(ACCOUNT_AAD), out, &len);
    *outlen = (uint32_t)len;
    /* keep the first 3 and the last 4 characters of long accounts, else 1 and 1 */
    size_t head = n >= 11 ? 3 : 1, tail = n >= 11 ? 4 : (n > 2 ? 1 : 0);
    if (n <= head + tail)
        snprintf(masked, 32, "****");
    else
        snprintf(masked, 32, "%.*s****%s", (int)head, account, account + n - tail);
    return rc;
}

int ph_fulfil_begin(ph_fulfil *f, const ph_order *o, const char *account, ph_err *err)
{
    if (!o->nattempts)
        return PH_OK; /* failed at creation: nothing to send */
    const ph_attempt *a = &o->attempts[o->nattempts - 1];
    if (a->state != PH_ATTEMPT_SENDING)
        return PH_OK;
    track *t = track_new(f, o, a, err);
    if (!t)
        return PH_ENOMEM;
    track_account(f, t, o, account);
    t->send_order = 1;
    post(f, &t->ev, EV_BEGIN); /* from here on the track is fulfil's thread's */
    return PH_OK;
}

/* The last unfinished attempt of o, handed to fulfil's thread. */
static void resume_one(ph_fulfil *f, const ph_order *o, ph_err *err)
{
    const ph_attempt *a = NULL;
    for (size_t i = 0; i < o->nattempts; i++)
        if (o->attempts[i].state != PH_ATTEMPT_SUCCEEDED &&
            o->attempts[i].state != PH_ATTEMPT_FAILED)
            a = &o->attempts[i];
    if (!a)
        return;
    track *t = track_new(f, o, a, err);
    if (!t)
        return;
    track_account(f, t, o, NULL);
    t->resume_due = a->next_check_at ? a->next_check_at : ph_now_ms();
    post(f, &t->ev, EV_RESUME);
}

int ph_fulfil_resume(ph_fulfil *f, ph_err *err)
{
    uint64_t after = 0;
    size_t total = 0;
    for (;;) {
        ph_order **list;
        size_t n;
        int rc = ph_store_pending_list(f->o.store, after, 512, &list, &n, err);
        if (rc)
            return rc;
        for (size_t i = 0; i < n; i++) {
            resume_one(f, list[i], err);
            after = list[i]->id;
        }
        ph_order_list_free(list, n);
        total += n;
        if (n < 512)
            break;
    }
    if (total)
        ph_log(f->o.log, PH_LOG_INFO, NULL, "fulfil.resumed", "attempts=%zu", total);
    return PH_OK;
}

int ph_fulfil_wait(ph_fulfil *f, uint64_t id, int64_t deadline_ms, void (*cb)(void *), void *arg)
{
    waiter *w = calloc(1, sizeof *w);
    if (!w)
        return PH_ENOMEM;
    w->id = id;
    w->deadline = deadline_ms;
    w->cb = cb;
    w->arg = arg;
    /* queued behind this order's EV_BEGIN when the same thread just posted it,
     * so the track is registered by the time the wait is looked at */
    post(f, &w->ev, EV_WAIT);
    return PH_OK;
}

void ph_fulfil_set_callback_base(ph_fulfil *f, const char *base)
{
    ph_mutex_lock(&f->mu);
    snprintf(f->callback_base, sizeof f->callback_base, "%s", base ? base : "");
    ph_mutex_unlock(&f->mu);
}

const ph_fulfil_opts *ph_fulfil_options(const ph_fulfil *f)
{
    return &f->o;
}

size_t ph_fulfil_active(ph_fulfil *f)
{
    return atomic_load_explicit(&f->active, memory_order_relaxed);
}

void ph_fulfil_confirm(ph_fulfil *f, uint64_t id, uint32_t no)
{
    confirm_ev *c = calloc(1, sizeof *c);
    if (!c) { /* a hint lost: the attempt's scheduled query still settles it */
        ph_log(f->o.log, PH_LOG_WARN, NULL, "fulfil.confirm_dropped",
               "order=%llu attempt=%u rc=out_of_memory", (unsigned long long)id, no);
        return;
    }
    c->id = id;
    c->no = no;
    post(f, &c->ev, EV_CONFIRM);
}

int ph_fulfil_create(const ph_fulfil_opts *opts, ph_fulfil **out, ph_err *err)
{
    ph_fulfil *f = calloc(1, sizeof *f);
    if (!f)
        return ph_err_set(err, PH_ENOMEM, "fulfil: out of memory");
    f->o = *opts;
    snprintf(f->callback_base, sizeof f->callback_base, "%s",
             opts->callback_base ? opts->callback_base : "");
    ph_mutex_init(&f->mu);
    atomic_init(&f->active, 0);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_cond_init(&f->cv, &ca); /* CLOCK_REALTIME: deadlines are wall-clock ms */
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&f->idle_cv, NULL);
    if (pthread_create(&f->thread, NULL, fulfil_main, f)) {
        pthread_cond_destroy(&f->idle_cv);
        pthread_cond_destroy(&f->cv);
        ph_mutex_destroy(&f->mu);
        free(f);
        return ph_err_set(err, PH_EIO, "fulfil: cannot start its thread");
    }
    *out = f;
    return PH_OK;
}

void ph_fulfil_stop(ph_fulfil *f)
{
    if (!f)
        return;
    ph_mutex_lock(&f->mu);
    f->stopping = 1;
    pthread_cond_signal(&f->cv);
    while (!f->stop_seen)
        ph_mutex_wait(&f->mu, &f->idle_cv, NULL);
    ph_mutex_unlock(&f->mu);
}

void ph_fulfil_flush(ph_fulfil *f)
{
    if (!f)
        return;
    ph_mutex_lock(&f->mu);
    uint64_t target = f->posted;
    while (f->handled < target)
        ph_mutex_wait(&f->mu, &f->idle_cv, NULL);
    ph_mutex_unlock(&f->mu);
}

void ph_fulfil_destroy(ph_fulfil *f)
{
    if (!f)
        return;
    ph_fulfil_stop(f);
    ph_mutex_lock(&f->mu);
    f->exiting = 1;
    pthread_cond_signal(&f->cv);
    ph_mutex_unlock(&f->mu);
    pthread_join(f->thread, NULL); /* it drains the queue first */
    ph_owner_set(&f->owner);       /* what it owned is ours to free now */
    for (size_t b = 0; b < NBUCKETS; b++)
        for (track *t = f->buckets[b], *n; t; t = n) {
            n = t->hnext;
            track_free(t);
        }
    free(f->heap);
    pthread_cond_destroy(&f->idle_cv);
    pthread_cond_destroy(&f->cv);
    ph_mutex_destroy(&f->mu);
    free(f);
}
