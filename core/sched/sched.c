/*
 * sched.c — the scheduler's thread, its job table and its heap of due jobs
 * (sched.h).
 *
 * State under s->mu: the table (jobs sorted by id, binary search), the heap
 * (the jobs with a due time that are not running, a min-heap on (next_due,
 * id); each job knows its slot, so a change of due time or a removal is
 * O(log n)), and each job's fields. The heap's array has the table's capacity,
 * so a push never allocates. A run lives in its job (a job runs once at a
 * time): ph_sched_done touches the job until it clears `running` under the
 * lock, never after, which is what ph_sched_remove and ph_sched_destroy wait
 * for before they free it.
 */
#include "sched/sched.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/lockcheck.h"
#include "base/util.h"

#define NOHEAP ((size_t)-1)
/* The longest sleep: the heap's times are wall-clock times and the sleep is
 * on the monotonic clock, so a wall-clock step is noticed within this. */
#define MAX_SLEEP_MS 60000

struct ph_sched_run {
    ph_sched *s;
    struct job *j;
    int64_t at;
    int manual;
};

typedef struct job {
    char id[PH_SCHED_ID_MAX]; /* never changes: read without the lock by a run */
    int64_t every_ms;
    ph_sched_fn fn;
    void *arg;
    int64_t next_due; /* 0 = not due (on demand only, or being decided by done) */
    size_t hix;       /* slot in the heap, NOHEAP when not in it */
    int running;
    int manual;  /* a run was asked for: the next one is manual (also while running) */
    int removed; /* out of the table; freed by ph_sched_remove once not running */
    int64_t last_started_at, last_ended_at;
    int last_ok;
    char last_outcome[160];
    uint64_t runs;
    int64_t kept_at;  /* ms the last run handed to persist.ran ended; 0 = none yet */
    uint32_t unkept;  /* idle runs since then that persist.ran has not seen */
    ph_sched_run run; /* the run in progress */
} job;

struct ph_sched {
    ph_sched_opts opts;
    pthread_t thread;
    ph_mutex mu;
    pthread_cond_t cv;   /* the thread sleeps on it: add, trigger, done, settle, stop */
    pthread_cond_t idle; /* a run ended, or the thread looked (settle): remove, destroy, settle */
    job **jobs;          /* sorted by id */
    size_t n, cap;
    job **heap; /* cap slots */
    size_t hn;
    size_t running;                    /* runs in progress, removed jobs' included */
    uint64_t settle_want, settle_seen; /* ph_sched_settle's tickets */
    int stop;
};

static int64_t now_of(const ph_sched *s)
{
    return s->opts.clock_ms ? s->opts.clock_ms(s->opts.clock_arg) : ph_now_ms();
}

int64_t ph_sched_run_at(const ph_sched_run *run)
{
    return run->at;
}
const char *ph_sched_run_id(const ph_sched_run *run)
{
    return run->j->id;
}
int ph_sched_run_manual(const ph_sched_run *run)
{
    return run->manual;
}
int ph_sched_stopping(const ph_sched_run *run)
{
    ph_sched *s = run->s;
    ph_mutex_lock(&s->mu);
    int stop = s->stop;
    ph_mutex_unlock(&s->mu);
    return stop;
}

int ph_sched_id_valid(const char *id)
{
    size_t len = id ? strlen(id) : 0;
    if (!len || len >= PH_SCHED_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("._/:-", c)))
            return 0;
    }
    return 1;
}

/* ---- the heap ------------------------------------------------------------ */

static int before(const job *a, const job *b)
{
    return a->next_due < b->next_due || (a->next_due == b->next_due && strcmp(a->id, b->id) < 0);
}

static void heap_place(ph_sched *s, size_t i, job *j)
{
    s->heap[i] = j;
    j->hix = i;
}

static void sift_up(ph_sched *s, size_t i)
{
    job *j = s->heap[i];
    while (i > 0 && before(j, s->heap[(i - 1) / 2])) {
        heap_place(s, i, s->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_place(s, i, j);
}

static void sift_down(ph_sched *s, size_t i)
{
    job *j = s->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->hn)
            break;
        if (c + 1 < s->hn && before(s->heap[c + 1], s->heap[c]))
            c++;
        if (!before(s->heap[c], j))
            break;
        heap_place(s, i, s->heap[c]);
        i = c;
    }
    heap_place(s, i, j);
}

static void heap_del(ph_sched *s, job *j)
{
    PH_ASSERT_HELD(&s->mu);
    if (j->hix == NOHEAP)
        return;
    size_t i = j->hix;
    j->hix = NOHEAP;
    job *last = s->heap[--s->hn];
    if (last == j)
        return;
    heap_place(s, i, last);
    sift_up(s, i);
    sift_down(s, last->hix);
}

/* Puts j at due time `due` (0: out of the heap). Never for a running job. */
static void set_due(ph_sched *s, job *j, int64_t due)
{
    PH_ASSERT_HELD(&s->mu);
    assert(!j->running && !j->removed);
    heap_del(s, j);
    j->next_due = due;
    if (!due)
        return;
    assert(s->hn < s->cap);
    heap_place(s, s->hn++, j);
    sift_up(s, j->hix);
}

/* The due time of a job whose period becomes every_ms (> 0): the one it has
 * (0: none), or its last start + the period when that is sooner (never ran:
 * now). The one rule for a reload and for a restart (sched.h). */
static int64_t due_with_period(int64_t due, int64_t last_started, int64_t every_ms, int64_t now)
{
    int64_t cand = last_started ? last_started + every_ms : now;
    return due && due < cand ? due : cand;
}

/* ---- the table ----------------------------------------------------------- */

/* The slot of id in the table, or where it would go (*found 0). */
static size_t find_slot(const ph_sched *s, const char *id, int *found)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->jobs[mid]->id, id);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static job *find(const ph_sched *s, const char *id)
{
    int found;
    size_t i = id ? find_slot(s, id, &found) : 0;
    return id && found ? s->jobs[i] : NULL;
}

/* Room for one more job in the table and the heap. */
static int reserve(ph_sched *s)
{
    if (s->n < s->cap)
        return 0;
    size_t cap = s->cap ? 2 * s->cap : 16;
    job **nj = realloc(s->jobs, cap * sizeof *nj);
    if (!nj)
        return -1;
    s->jobs = nj;
    job **nh = realloc(s->heap, cap * sizeof *nh);
    if (!nh)
        return -1; /* the table's growth is kept; cap is the smaller of the two */
    s->heap = nh;
    s->cap = cap;
    return 0;
}

/* ---- runs ---------------------------------------------------------------- */

/* Ends a run; idle: it was ok and changed nothing (ph_sched_done_idle). */
static void run_end(ph_sched_run *run, int ok, const char *outcome, int idle)
{
    ph_sched *s = run->s;
    job *j = run->j;
    char text[sizeof j->last_outcome];
    ph_text_clean(text, sizeof text, outcome);
    int64_t end = now_of(s);
    ph_mutex_lock(&s->mu);
    assert(j->running);
    /* an idle run is kept only when it tells the store something new: the
     * job's first run, a manual one, one after a failure, or one past the
     * interval since the last kept run */
    int keep = !idle || !j->kept_at || run->manual || j->last_ok != 1 ||
               end - j->kept_at >= PH_SCHED_IDLE_KEEP_MS;
    uint32_t runs = j->unkept + 1; /* what the kept record stands for */
    if (keep) {
        j->kept_at = end;
        j->unkept = 0;
    } else {
        j->unkept++;
    }
    j->last_started_at = run->at;
    j->last_ended_at = end;
    j->last_ok = ok ? 1 : 0;
    memcpy(j->last_outcome, text, sizeof text);
    j->runs++;
    /* asked for while it ran: once more right after; else one period after
     * this run's start (a manual run counts as a run) */
    j->next_due = j->manual ? end : j->every_ms ? run->at + j->every_ms : 0;
    int64_t next = j->next_due;
    ph_mutex_unlock(&s->mu);
    if (!ok)
        ph_log(s->opts.log, PH_LOG_WARN, NULL, "job.failed", "job=%s manual=%d outcome=\"%s\"",
               j->id, run->manual, text);
    /* still running: no other run of j, so the records of one job are
     * submitted in run order, and j cannot be freed under us */
    if (keep && s->opts.persist && s->opts.persist->ran)
        s->opts.persist->ran(s->opts.persist->arg, j->id, run->at, end, ok ? 1 : 0, text,
                             run->manual, next, runs);
    ph_mutex_lock(&s->mu);
    j->running = 0;
    s->running--;
    /* a reload may have changed next_due meanwhile (ph_sched_add): take it */
    if (!j->removed && !s->stop && j->next_due)
        set_due(s, j, j->next_due);
    pthread_cond_signal(&s->cv);
    pthread_cond_broadcast(&s->idle);
    ph_mutex_unlock(&s->mu); /* j and s may be freed from here on */
}

void ph_sched_done(ph_sched_run *run, int ok, const char *outcome)
{
    run_end(run, ok, outcome, 0);
}

void ph_sched_done_idle(ph_sched_run *run, const char *outcome)
{
    run_end(run, 1, outcome, 1);
}

static void sleep_until(ph_sched *s, int64_t now)
{
    PH_ASSERT_HELD(&s->mu);
    if (!s->hn) {
        ph_mutex_wait(&s->mu, &s->cv, NULL);
        return;
    }
    int64_t wait = s->heap[0]->next_due - now;
    if (wait > MAX_SLEEP_MS)
        wait = MAX_SLEEP_MS;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += wait / 1000;
    ts.tv_nsec += (long)(wait % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    ph_mutex_wait(&s->mu, &s->cv, &ts);
}

static void *sched_main(void *arg)
{
    ph_sched *s = arg;
    ph_mutex_lock(&s->mu);
    while (!s->stop) {
        uint64_t want = s->settle_want; /* the tickets this clock reading answers */
        int64_t now = now_of(s);
        if (s->hn && s->heap[0]->next_due <= now) {
            job *j = s->heap[0];
            heap_del(s, j);
            j->next_due = 0;
            j->running = 1;
            s->running++;
            j->run = (ph_sched_run){.s = s, .j = j, .at = now, .manual = j->manual};
            j->manual = 0;
            ph_sched_fn fn = j->fn;
            void *farg = j->arg;
            ph_mutex_unlock(&s->mu);
            fn(farg, &j->run); /* j may be done, removed and freed by the time it returns */
            ph_mutex_lock(&s->mu);
            continue;
        }
        if (s->settle_seen < want) {
            s->settle_seen = want;
            pthread_cond_broadcast(&s->idle);
        }
        if (s->settle_want != want)
            continue; /* asked again meanwhile: look again before sleeping */
        sleep_until(s, now);
    }
    ph_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- the interface ------------------------------------------------------- */

int ph_sched_create(const ph_sched_opts *opts, ph_sched **out, ph_err *err)
{
    if (!opts || !opts->log || !out)
        return ph_err_set(err, PH_EINVAL, "sched: no options");
    ph_sched *s = calloc(1, sizeof *s);
    if (!s)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    s->opts = *opts;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&s->idle, NULL);
    ph_mutex_init(&s->mu);
    if (pthread_create(&s->thread, NULL, sched_main, s)) {
        pthread_cond_destroy(&s->cv);
        pthread_cond_destroy(&s->idle);
        ph_mutex_destroy(&s->mu);
        free(s);
        return ph_err_set(err, PH_EIO, "sched: cannot start the scheduler thread");
    }
    *out = s;
    return PH_OK;
}

/* A new job from its definition and what the store holds of it (st, or NULL). */
static job *job_new(const ph_sched_job_def *def, const ph_sched_stored *st, int64_t now)
{
    job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    snprintf(j->id, sizeof j->id, "%s", def->id);
    j->every_ms = def->every_ms;
    j->fn = def->fn;
    j->arg = def->arg;
    j->hix = NOHEAP;
    j->last_ok = -1;
    int64_t due = 0;
    if (st) {
        j->last_started_at = st->last_started_at;
        j->last_ended_at = st->last_ended_at;
        j->last_ok = st->last_ok;
        snprintf(j->last_outcome, sizeof j->last_outcome, "%s", st->last_outcome);
        j->runs = st->runs;
        due = st->next_due;
        /* asked for by ops before a restart and not started: the ask stands */
        if (st->asked_at && st->asked_at >= st->last_started_at) {
            j->manual = 1;
            due = due && due < now ? due : now;
        }
    }
    if (def->every_ms)
        due = due_with_period(due, j->last_started_at, def->every_ms, now);
    else if (!j->manual)
        due = 0;
    j->next_due = due;
    return j;
}

int ph_sched_add(ph_sched *s, const ph_sched_job_def *def, ph_err *err)
{
    if (!def || !def->fn || !ph_sched_id_valid(def->id) || def->every_ms < 0)
        return ph_err_set(err, PH_EINVAL,
                          "sched: job id '%s' malformed, no function or a negative period",
                          def && ph_sched_id_valid(def->id) ? def->id : "?");
    ph_sched_stored st;
    int have = 0;
    if (s->opts.persist && s->opts.persist->load) {
        memset(&st, 0, sizeof st);
        have = s->opts.persist->load(s->opts.persist->arg, def->id, &st) == 1;
    }
    ph_mutex_lock(&s->mu);
    if (s->stop) {
        ph_mutex_unlock(&s->mu);
        return ph_err_set(err, PH_ESHUTDOWN, "sched: stopping");
    }
    int64_t now = now_of(s);
    int found;
    size_t slot = find_slot(s, def->id, &found);
    if (found) {
        job *j = s->jobs[slot];
        j->fn = def->fn;
        j->arg = def->arg;
        if (j->every_ms != def->every_ms) {
            j->every_ms = def->every_ms;
            int64_t due = def->every_ms
                              ? due_with_period(j->next_due, j->last_started_at, def->every_ms, now)
                          : j->manual ? j->next_due
                                      : 0;
            /* a running job gets its due time from ph_sched_done, with the new period */
            if (j->running)
                j->next_due = j->next_due ? due : 0;
            else
                set_due(s, j, due);
        }
    } else {
        job *j = reserve(s) ? NULL : job_new(def, have ? &st : NULL, now);
        if (!j) {
            ph_mutex_unlock(&s->mu);
            return ph_err_set(err, PH_ENOMEM, "out of memory");
        }
        memmove(&s->jobs[slot + 1], &s->jobs[slot], (s->n - slot) * sizeof *s->jobs);
        s->jobs[slot] = j;
        s->n++;
        int64_t due = j->next_due;
        j->next_due = 0;
        set_due(s, j, due);
    }
    pthread_cond_signal(&s->cv);
    ph_mutex_unlock(&s->mu);
    return PH_OK;
}

int ph_sched_remove(ph_sched *s, const char *id)
{
    ph_mutex_lock(&s->mu);
    int found = 0;
    size_t slot = id ? find_slot(s, id, &found) : 0;
    if (!found) {
        ph_mutex_unlock(&s->mu);
        return PH_ENOTFOUND;
    }
    job *j = s->jobs[slot];
    memmove(&s->jobs[slot], &s->jobs[slot + 1], (s->n - slot - 1) * sizeof *s->jobs);
    s->n--;
    heap_del(s, j);
    j->removed = 1;
    while (j->running)
        ph_mutex_wait(&s->mu, &s->idle, NULL);
    pthread_cond_signal(&s->cv);
    ph_mutex_unlock(&s->mu);
    free(j);
    return PH_OK;
}

int ph_sched_trigger(ph_sched *s, const char *id, ph_err *err)
{
    ph_mutex_lock(&s->mu);
    job *j = !s->stop ? find(s, id) : NULL;
    if (!j) {
        int stop = s->stop;
        ph_mutex_unlock(&s->mu);
        return stop ? ph_err_set(err, PH_ESHUTDOWN, "sched: stopping")
                    : ph_err_set(err, PH_ENOTFOUND, "no job '%s'",
                                 ph_sched_id_valid(id) ? id : "(malformed id)");
    }
    j->manual = 1;
    if (!j->running) {
        int64_t now = now_of(s);
        set_due(s, j, j->next_due && j->next_due < now ? j->next_due : now);
    }
    pthread_cond_signal(&s->cv);
    ph_mutex_unlock(&s->mu);
    return PH_OK;
}

static void info_of(const job *j, ph_sched_info *e)
{
    memset(e, 0, sizeof *e);
    memcpy(e->id, j->id, sizeof e->id);
    e->every_ms = j->every_ms;
    e->running = j->running;
    e->last_started_at = j->last_started_at;
    e->last_ended_at = j->last_ended_at;
    e->last_ok = j->last_ok;
    memcpy(e->last_outcome, j->last_outcome, sizeof e->last_outcome);
    e->next_due = j->next_due;
    /* running: the due time its done will give it, unless it is asked for meanwhile */
    if (j->running && !e->next_due && j->every_ms)
        e->next_due = j->run.at + j->every_ms;
    e->runs = j->runs;
    e->manual = j->manual;
}

int ph_sched_list(ph_sched *s, ph_sched_info **out, size_t *n)
{
    ph_mutex_lock(&s->mu);
    ph_sched_info *v = malloc((s->n ? s->n : 1) * sizeof *v);
    if (!v) {
        ph_mutex_unlock(&s->mu);
        return PH_ENOMEM;
    }
    for (size_t i = 0; i < s->n; i++) /* the table is sorted by id */
        info_of(s->jobs[i], &v[i]);
    *n = s->n;
    ph_mutex_unlock(&s->mu);
    *out = v;
    return PH_OK;
}

int ph_sched_get(ph_sched *s, const char *id, ph_sched_info *out)
{
    ph_mutex_lock(&s->mu);
    job *j = find(s, id);
    if (j)
        info_of(j, out);
    ph_mutex_unlock(&s->mu);
    return j ? PH_OK : PH_ENOTFOUND;
}

int ph_sched_settle(ph_sched *s)
{
    ph_mutex_lock(&s->mu);
    uint64_t ticket = ++s->settle_want;
    pthread_cond_signal(&s->cv);
    while (!s->stop && s->settle_seen < ticket)
        ph_mutex_wait(&s->mu, &s->idle, NULL);
    int stop = s->stop;
    ph_mutex_unlock(&s->mu);
    return stop ? PH_ESHUTDOWN : PH_OK;
}

void ph_sched_destroy(ph_sched *s)
{
    if (!s)
        return;
    ph_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->cv);
    pthread_cond_broadcast(&s->idle);
    while (s->running)
        ph_mutex_wait(&s->mu, &s->idle, NULL);
    ph_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    /* a clean stop keeps the idle runs not kept yet (the last one stands for
     * them), so a restart sees every run and the due time after the last */
    for (size_t i = 0; i < s->n; i++) {
        job *j = s->jobs[i];
        if (j->unkept && s->opts.persist && s->opts.persist->ran)
            s->opts.persist->ran(s->opts.persist->arg, j->id, j->last_started_at, j->last_ended_at,
                                 j->last_ok, j->last_outcome, 0, j->next_due, j->unkept);
    }
    for (size_t i = 0; i < s->n; i++)
        free(s->jobs[i]);
    free(s->jobs);
    free(s->heap);
    pthread_cond_destroy(&s->cv);
    pthread_cond_destroy(&s->idle);
    ph_mutex_destroy(&s->mu);
    free(s);
}
