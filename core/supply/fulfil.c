/*
 * fulfil.c — supplier orders: one small state machine per attempt (fulfil.h).
 * This file holds the queue, the tracks, the thread and the API; what a
 * finished exchange or a durable command leads to is in fulfil_decide.c.
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
#include "supply/fulfil_int.h"

#include <assert.h>
#include <jansson.h>
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

/* ---- the queue (any thread) ------------------------------------------------ */

/* Queues an event for fulfil's thread, waking it when wake is set; without,
 * the event waits for the thread's next wake-up (another event, a due time,
 * a flush). Never fails: the node is the caller's. */
static void post(ph_fulfil *f, fev *e, int kind, int wake)
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
    if (wake)
        pthread_cond_signal(&f->cv);
    ph_mutex_unlock(&f->mu);
}

void ful_post(ph_fulfil *f, fev *e, int kind)
{
    post(f, e, kind, 1);
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

void ful_reg_del(ph_fulfil *f, track *t)
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

int ful_heap_push(ph_fulfil *f, track *t, int64_t due)
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
waiter *ful_waiters_take(ph_fulfil *f, uint64_t id, int64_t now)
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

void ful_waiters_fire(waiter *w)
{
    while (w) {
        waiter *n = w->next;
        w->cb(w->arg);
        free(w);
        w = n;
    }
}

/* ---- tracks ----------------------------------------------------------------- */

void ful_cmd_free(track_cmd *b)
{
    if (!b)
        return;
    free(b->codes);
    free(b->blobs);
    free(b);
}

void ful_track_free(track *t)
{
    if (t->account) {
        ph_wipe(t->account, strlen(t->account));
        free(t->account);
    }
    ph_supplier_release(t->sup);
    ful_cmd_free(t->cmd);
    free(t->tried);
    free(t->callback_url);
    free(t);
}

/* The first attempt of o's current claim: a grant's order given back
 * (store_grant_back) keeps the failed attempts of the claims before, each
 * return naming the attempt that ended its claim; 1 for any other order (and
 * when the grant cannot be read: the fail-over then skips more, never less
 * than a first claim would). Read only when o has attempts before its last. */
static uint32_t claim_first_attempt(ph_fulfil *f, const ph_order *o)
{
    if (o->nattempts < 2 || !f || !f->o.store)
        return 1;
    char *txt = NULL;
    ph_err err = {0};
    if (ph_store_grant_get(f->o.store, o->id, &txt, &err) != PH_OK)
        return 1;
    json_t *rec = json_loads(txt, 0, NULL), *x;
    free(txt);
    uint32_t first = 1;
    size_t i;
    json_array_foreach(json_object_get(rec, "returns"), i, x)
    {
        json_int_t no = json_integer_value(json_object_get(x, "attempt"));
        if (no >= first && no < (json_int_t)o->nattempts)
            first = (uint32_t)no + 1;
    }
    json_decref(rec);
    return first;
}

void ful_tried_refresh(track *t, const ph_order *o)
{
    t->ntried = 0;
    t->tried_len = 0;
    /* a claim again of a grant given back fails over afresh: the supplier a
     * refused claim went to may take the corrected account */
    uint32_t first = claim_first_attempt(t->f, o);
    for (size_t i = first - 1; i < o->nattempts && t->ntried < TRIED_MAX; i++) {
        const char *id = o->attempts[i].supplier;
        size_t n = strlen(id) + 1;
        char *p = realloc(t->tried, t->tried_len + n);
        if (!p) {
            t->ntried = TRIED_MAX; /* out of memory: no fail-over rather than a wrong one */
            return;
        }
        memcpy(p + t->tried_len, id, n);
        t->tried = p;
        t->tried_len += n;
        t->ntried++;
    }
}

typedef struct route_ctx {
    ph_fulfil *f;
    uint64_t cap;
} route_ctx;

static int usable_for(void *ctx, const ph_supplier_conf *sc);

/* The supplier settings of the current config (defaults if it is gone). */
void ful_track_limits(ph_fulfil *f, track *t)
{
    void *ref;
    const ph_config *cfg = f->o.cfg.acquire(f->o.cfg.ctx, &ref);
    const ph_supplier_conf *sc = ph_config_supplier(cfg, t->supplier);
    t->limits = (ph_sio_limits){.tls_verify = 1};
    t->query_max_ms = 30000;
    t->stuck_after_ms = t->stuck_max_ms = 3600000; /* config.c's defaults */
    unsigned window_s = 0;
    t->tolerance = 0;
    t->late_check_ms = 86400 * 1000LL;
    if (sc) {
        t->limits = ph_sio_limits_of(sc);
        t->query_max_ms = sc->query_max_delay_ms;
        window_s = sc->processing_window_s;
        t->stuck_after_ms = (int64_t)sc->stuck_after_s * 1000;
        t->stuck_max_ms = (int64_t)sc->stuck_query_max_delay_s * 1000;
        t->tolerance = sc->amount_tolerance;
        t->late_check_ms = (int64_t)sc->late_check_s * 1000;
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

ph_attempt_ctx ful_track_ctx(const track *t)
{
    return (ph_attempt_ctx){.is_order = t->send_order,
                            .card = t->card,
                            .quantity = t->quantity,
                            .state = t->state,
                            .created_at = t->created_at,
                            .checks = t->checks,
                            .window_ms = t->window_ms,
                            .query_delay_ms = t->query_delay_ms,
                            .query_max_ms = t->query_max_ms,
                            .stuck_after_ms = t->stuck_after_ms,
                            .stuck_max_ms = t->stuck_max_ms};
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
    t->replenish = ph_order_is_replenish(o);
    t->state = a->state;
    t->quantity = o->quantity;
    t->unit_cost = a->unit_cost;
    t->created_at = a->created_at;
    t->checks = a->checks;
    t->stuck_at = a->stuck_at;
    snprintf(t->supplier, sizeof t->supplier, "%s", a->supplier);
    snprintf(t->sku, sizeof t->sku, "%s", o->sku);
    snprintf(t->product_id, sizeof t->product_id, "%s", a->product_id);
    snprintf(t->ref, sizeof t->ref, "%s", a->ref);
    snprintf(t->supplier_order_id, sizeof t->supplier_order_id, "%s", a->supplier_order_id);
    ful_tried_refresh(t, o);
    if (ph_suppliers_acquire(f->o.suppliers, t->supplier, &t->sup) != PH_OK)
        t->sup = NULL; /* disabled or gone: retried when due */
    ful_track_limits(f, t);
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
    j->done = ful_on_job_done;
    j->arg = t;
    j->track_auth = 1; /* ful_job_done stores the credential events */
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

/* No exchange can start (the supplier is disabled or gone): an overdue
 * attempt is escalated all the same, by a check that changes nothing else
 * (store.h, mark_stuck), so a stuck order is never hidden by its supplier's
 * absence. 1 when that command went to the store (its end schedules the next
 * look), 0 when nothing was due or it could not be submitted. */
static int escalate_idle(ph_fulfil *f, track *t, int64_t due)
{
    ph_attempt_ctx a = ful_track_ctx(t);
    int64_t now = ph_now_ms();
    track_cmd *b = !t->stuck_at && !t->send_order && ph_attempt_state_open(t->state) &&
                           ph_attempt_overdue(&a, now)
                       ? ful_cmd_new(t)
                       : NULL;
    if (!b)
        return 0;
    ph_attempt_move m = {.state = t->state, .next_check_at = due, .mark_stuck = 1};
    ful_fill_cmd(b, &m, NULL);
    b->cmd.now = now;
    b->cmd.in.attempt.reason = NULL; /* keeps the attempt's */
    t->phase = T_CMD;
    t->cmd = b;
    if (ph_store_submit(f->o.store, &b->cmd) != PH_OK) {
        t->phase = T_IDLE;
        t->cmd = NULL;
        ful_cmd_free(b);
        return 0;
    }
    return 1;
}

/* How long an exchange held back by opts.may_send waits to ask again. */
#define PH_FULFIL_HOLD_MS 200

/* Starts the track's next exchange. Fulfil's thread. */
void ful_track_run(ph_fulfil *f, track *t)
{
    PH_ASSERT_OWNER(&f->owner);
    if (!t->sup && ph_suppliers_acquire(f->o.suppliers, t->supplier, &t->sup) != PH_OK) {
        t->sup = NULL;
        ph_log(f->o.log, PH_LOG_WARN, NULL, "fulfil.supplier_unavailable",
               "order=%llu attempt=%u supplier=%s", (unsigned long long)t->order_id, t->no,
               t->supplier);
        int64_t due = ph_now_ms() + (t->query_max_ms > 0 ? t->query_max_ms : 30000);
        if (!escalate_idle(f, t, due))
            ful_heap_push(f, t, due);
        return;
    }
    if (track_callback_url(f, t) != PH_OK) {
        ful_heap_push(f, t, ph_now_ms() + (t->query_max_ms > 0 ? t->query_max_ms : 30000));
        return;
    }
    if (f->o.may_send && !f->o.may_send(f->o.may_send_arg)) {
        ful_heap_push(f, t, ph_now_ms() + PH_FULFIL_HOLD_MS); /* not the leader now */
        return;
    }
    job_setup(t);
    if (t->job.op.kind == PERKHUB_OP_ORDER_QUERY)
        t->confirm = 0; /* this query confirms every claim asked for so far */
    t->phase = T_JOB;
    if (io_submit(f, &t->job) != PH_OK)
        t->phase = T_IDLE; /* shutting down: the store keeps the attempt for the restart */
}

/* ---- fulfil's thread ------------------------------------------------------------- */

/* A new order's first attempt (EV_BEGIN) or an unfinished one found at start
 * (EV_RESUME). After a restart a SENDING attempt may have reached the
 * supplier: it is recorded UNKNOWN first (never resent), then queried. */
static void track_start(ph_fulfil *f, track *t, int resume, int stopping)
{
    if (stopping) { /* the store keeps the attempt; the restart resumes it */
        ful_track_free(t);
        return;
    }
    if (reg_find(f, t->order_id, t->no)) {
        /* tracked already (a resume again after a replicated leader caught up,
         * racing the begin of the same attempt): one track, one request */
        ful_track_free(t);
        return;
    }
    reg_add(f, t);
    if (!resume) {
        ful_track_run(f, t);
        return;
    }
    track_cmd *b = t->state == PH_ATTEMPT_SENDING ? ful_cmd_new(t) : NULL;
    if (!b) {
        /* a SENDING attempt without memory to record it UNKNOWN is queried
         * all the same: whatever the query says, it was sent */
        ful_heap_push(f, t, t->resume_due);
        return;
    }
    ph_attempt_move m = {.state = PH_ATTEMPT_UNKNOWN, .next_check_at = ph_now_ms()};
    snprintf(m.reason, sizeof m.reason, "interrupted_while_sending");
    ful_fill_cmd(b, &m, NULL);
    t->phase = T_CMD;
    t->cmd = b;
    if (ph_store_submit(f->o.store, &b->cmd) != PH_OK) {
        t->phase = T_IDLE;
        t->cmd = NULL;
        ful_cmd_free(b);
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
        ful_waiters_fire(w);
        return;
    }
    w->next = f->waiters;
    f->waiters = w;
}

/* A verified callback claiming `claim` for attempt (id, no): query now, or
 * right after the exchange or command in progress, unless a confirming query
 * not yet started covers it or this claim was confirmed already (fulfil.h,
 * ph_fulfil_confirm). A follow-up step due goes first: the query comes once
 * its answer is stored. */
static void confirm(ph_fulfil *f, uint64_t id, uint32_t no, int claim, int stopping)
{
    track *t = reg_find(f, id, no);
    if (!t || stopping)
        return;
    unsigned bit = claim > 0 && claim < 16 ? 1u << claim : 1u;
    if (t->asked & bit)
        return; /* a replay, or a supplier's retry: its query was asked for */
    t->asked |= bit;
    if (t->confirm)
        return; /* the query asked for has not started: it sees this claim too */
    t->confirm = 1;
    if (t->phase == T_IDLE && !t->follow_step)
        ful_heap_push(f, t, ph_now_ms());
}

/* Attempt of order id settled by another command (ops): an idle track has
 * nothing left to ask and goes, waking whoever waits; one with an exchange or
 * a command running goes when its command is refused (PH_ESTATE). */
static void forget(ph_fulfil *f, uint64_t id)
{
    track *t = *bucket(f, id);
    while (t && t->order_id != id)
        t = t->hnext;
    if (!t || t->phase != T_IDLE)
        return;
    ful_reg_del(f, t);
    ful_track_free(t);
    ful_waiters_fire(ful_waiters_take(f, id, 0));
}

static void handle(ph_fulfil *f, fev *e, int stopping)
{
    switch (e->kind) {
    case EV_BEGIN:
    case EV_RESUME:
        track_start(f, EV_OF(e, track, ev), e->kind == EV_RESUME, stopping);
        break;
    case EV_JOB_DONE:
        ful_job_done(f, EV_OF(e, track, ev), stopping);
        break;
    case EV_CMD_DONE:
        ful_cmd_done(f, EV_OF(e, track_cmd, ev), stopping);
        break;
    case EV_WAIT:
        wait_add(f, EV_OF(e, waiter, ev), stopping);
        break;
    case EV_CONFIRM: {
        confirm_ev *c = EV_OF(e, confirm_ev, ev);
        confirm(f, c->id, c->no, c->claim, stopping);
        free(c);
        break;
    }
    case EV_FORGET: {
        forget_ev *g = EV_OF(e, forget_ev, ev);
        forget(f, g->id);
        free(g);
        break;
    }
    }
}

#define LATE_BATCH   32
#define LATE_IDLE_MS (600 * 1000) /* the schedule is looked at this often when empty */

void ful_late_end(ph_fulfil *f, track *t, int retry)
{
    PH_ASSERT_OWNER(&f->owner);
    assert(f->late_inflight > 0);
    /* one that got no answer, or whose word the store refused, waits out its
     * backoff behind the others (late_defer.h) */
    ph_late_check lc = {t->order_id, t->no, t->late_due};
    if (retry)
        f->late_retry |= !ph_late_defer_failed(&f->late_bad, &lc, ph_now_ms());
    else
        ph_late_defer_done(&f->late_bad, &lc);
    ful_track_free(t);
    if (--f->late_inflight == 0) {
        /* look again at once (what failed is passed over), or later when one
         * that failed could not be remembered (out of memory): not in a loop */
        f->late_next = f->late_retry ? ph_now_ms() + PH_LATE_DEFER_BASE_MS : 0;
        f->late_retry = 0;
    }
}

/* One late re-query: attempt (id, no), failed as not found, asked once more. */
static void late_start(ph_fulfil *f, const ph_late_check *lc)
{
    ph_order *o = NULL;
    ph_err err = {0};
    const ph_attempt *a = NULL;
    if (ph_store_order_get(f->o.store, lc->order_id, 0, &o, &err) == PH_OK)
        a = lc->no >= 1 && lc->no <= o->nattempts ? &o->attempts[lc->no - 1] : NULL;
    track *t = a && !ph_attempt_state_open(a->state) ? track_new(f, o, a, &err) : NULL;
    if (!t) /* cannot start: behind the others, with a backoff */
        f->late_retry |= !ph_late_defer_failed(&f->late_bad, lc, ph_now_ms());
    if (t) {
        track_account(f, t, o, NULL);
        t->late = 1;
        t->late_due = lc->due;
        f->late_inflight++;
        ful_track_run(f, t);
        if (t->phase != T_JOB)
            ful_late_end(f, t, 1); /* shutting down: the schedule keeps it */
    }
    ph_order_free(o);
}

/* The late schedule, when its time has come and no earlier round is running.
 * One read of the store's index when something may be due: nothing on the
 * order path. */
static void late_poll(ph_fulfil *f, int64_t now)
{
    if (f->late_inflight || now < f->late_next)
        return;
    ph_late_check due[LATE_BATCH];
    int64_t next = 0;
    size_t n = ph_late_defer_pick(&f->late_bad, f->o.store, now, due, LATE_BATCH, &next);
    f->late_next = next ? next : now + LATE_IDLE_MS;
    for (size_t i = 0; i < n; i++)
        late_start(f, &due[i]);
    if (n && !f->late_inflight) {
        /* none could start: each waits out its backoff, look past them at once */
        f->late_next = f->late_retry ? now + PH_LATE_DEFER_BASE_MS : 0;
        f->late_retry = 0;
    }
}

/* Due exchanges and expired waiters; returns when to look again. */
static int64_t run_due(ph_fulfil *f)
{
    int64_t now = ph_now_ms(), next = now + 1000;
    late_poll(f, now);
    while (f->nheap && f->heap[0].due <= now) {
        heap_ent e = heap_pop(f);
        track *t = reg_find(f, e.order_id, e.no);
        if (t && e.gen == t->gen && t->phase == T_IDLE)
            ful_track_run(f, t);
    }
    if (f->nheap && f->heap[0].due < next)
        next = f->heap[0].due;
    ful_waiters_fire(ful_waiters_take(f, 0, now));
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
            ful_waiters_fire(ful_waiters_take(f, 0, 0)); /* clients get the order as it is now */
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

#define ROUTE_UP_MAX 64 /* offers route.c considers */

/* The best usable offer of p for its kind of delivery (route.h), as a target
 * whose strings point into cfg. */
int ful_pick_target(ph_fulfil *f, const ph_config *cfg, const ph_product_conf *p,
                    const char *const *tried, size_t ntried, ph_attempt_target *out)
{
    route_ctx rc = {f, p->delivery == PH_DELIVERY_RECHARGE ? PERKHUB_CAP_RECHARGE
                                                           : PERKHUB_CAP_CARD_ORDER};
    /* what sync knows of the offers upstream (route.h); unknown when unreadable */
    ph_offer_state up[ROUTE_UP_MAX];
    int found[ROUTE_UP_MAX];
    const char *sups[ROUTE_UP_MAX];
    size_t n = p->noffers < ROUTE_UP_MAX ? p->noffers : ROUTE_UP_MAX;
    for (size_t i = 0; i < n; i++)
        sups[i] = p->offers[i].supplier;
    ph_err ignored;
    int have = f->o.store &&
               ph_store_offer_states(f->o.store, p->sku, sups, n, up, found, &ignored) == PH_OK;
    ph_product_conf q = *p; /* at most ROUTE_UP_MAX offers, each with its state */
    q.noffers = n;
    const ph_offer_conf *o =
        ph_route_pick(cfg, &q, have ? up : NULL, tried, ntried, usable_for, &rc);
    if (!o)
        return PH_ENOTFOUND;
    *out = (ph_attempt_target){o->supplier, o->supplier_sku,
                               ph_route_cost(o, have ? &up[o - p->offers] : NULL)};
    return PH_OK;
}

int ph_fulfil_supplier_usable(ph_fulfil *f, const ph_supplier_conf *sc, int delivery)
{
    route_ctx rc = {f, delivery == PH_DELIVERY_RECHARGE ? PERKHUB_CAP_RECHARGE
                                                        : PERKHUB_CAP_CARD_ORDER};
    return usable_for(&rc, sc);
}

int ph_fulfil_route(ph_fulfil *f, const ph_config *cfg, const ph_product_conf *p,
                    ph_attempt_target *out)
{
    return ful_pick_target(f, cfg, p, NULL, 0, out);
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
    ful_post(f, &t->ev, EV_BEGIN); /* from here on the track is fulfil's thread's */
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
    ful_post(f, &t->ev, EV_RESUME);
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
    ful_post(f, &w->ev, EV_WAIT);
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

void ph_fulfil_confirm(ph_fulfil *f, uint64_t id, uint32_t no, int claim, int sending)
{
    confirm_ev *c = calloc(1, sizeof *c);
    if (!c) { /* a hint lost: the attempt's scheduled query still settles it */
        ph_log(f->o.log, PH_LOG_WARN, NULL, "fulfil.confirm_dropped",
               "order=%llu attempt=%u rc=out_of_memory", (unsigned long long)id, no);
        return;
    }
    c->id = id;
    c->no = no;
    c->claim = claim;
    /* an attempt the store has SENDING has its exchange or the command
     * recording its answer running, and fulfil's thread wakes when that ends:
     * the confirmation is read then, before that event (the queue is FIFO), as
     * if it had woken the thread now (fulfil.h) */
    post(f, &c->ev, EV_CONFIRM, !sending);
}

void ph_fulfil_forget(ph_fulfil *f, uint64_t id)
{
    forget_ev *g = calloc(1, sizeof *g);
    if (!g) /* its next query is refused by the store, which ends the track then */
        return;
    g->id = id;
    ful_post(f, &g->ev, EV_FORGET);
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
    ph_late_defer_init(&f->late_bad, 0);
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
    if (f->handled < target) /* events queued without a wake-up (ph_fulfil_confirm) */
        pthread_cond_signal(&f->cv);
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
            ful_track_free(t);
        }
    free(f->heap);
    ph_late_defer_free(&f->late_bad);
    pthread_cond_destroy(&f->idle_cv);
    pthread_cond_destroy(&f->cv);
    ph_mutex_destroy(&f->mu);
    free(f);
}
