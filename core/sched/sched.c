/*
 * sched.c — the scheduler's thread and its job table (sched.h).
 *
 * First cut: the due job is found by a scan of the table (tens of jobs);
 * the min-heap, the stored history and GET /v1/jobs come next.
 */
#include "sched/sched.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/util.h"

typedef struct job {
    char id[PH_SCHED_ID_MAX];
    int64_t every_ms;
    ph_sched_fn fn;
    void *arg;
    int64_t next_due; /* 0 = not due (on demand only) */
    int running, again, removed;
    int64_t last_started_at, last_ended_at;
    int last_ok;
    char last_outcome[160];
    uint64_t runs;
} job;

struct ph_sched_run {
    ph_sched *s;
    job *j;
    int64_t at;
    int manual;
};

struct ph_sched {
    ph_sched_opts opts;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* the thread waits on it; done and remove signal it */
    job **jobs;
    size_t n, cap;
    int stop;
};

static int64_t now_of(const ph_sched *s)
{
    return s->opts.clock_ms ? s->opts.clock_ms() : ph_now_ms();
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

static int id_ok(const char *id)
{
    size_t len = id ? strlen(id) : 0;
    if (!len || len >= PH_SCHED_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("._/:-", c)))
            return 0;
    }
    return 1;
}

static job *find(ph_sched *s, const char *id)
{
    for (size_t i = 0; i < s->n; i++)
        if (!s->jobs[i]->removed && !strcmp(s->jobs[i]->id, id))
            return s->jobs[i];
    return NULL;
}

void ph_sched_done(ph_sched_run *run, int ok, const char *outcome)
{
    ph_sched *s = run->s;
    job *j = run->j;
    int64_t end = now_of(s);
    pthread_mutex_lock(&s->mu);
    j->last_started_at = run->at;
    j->last_ended_at = end;
    j->last_ok = ok ? 1 : 0;
    snprintf(j->last_outcome, sizeof j->last_outcome, "%s", outcome ? outcome : "");
    j->runs++;
    if (j->again) {
        j->again = 0;
        j->next_due = end;
    } else {
        j->next_due = j->every_ms ? run->at + j->every_ms : 0;
    }
    int64_t next = j->next_due;
    pthread_mutex_unlock(&s->mu);
    if (s->opts.persist && s->opts.persist->ran)
        s->opts.persist->ran(s->opts.persist->arg, j->id, run->at, end, ok ? 1 : 0, outcome, next);
    /* running drops only now: ph_sched_remove frees j once it sees 0 */
    pthread_mutex_lock(&s->mu);
    j->running = 0;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    free(run);
}

static void *sched_main(void *arg)
{
    ph_sched *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        int64_t now = now_of(s), soonest = 0;
        job *due = NULL;
        for (size_t i = 0; i < s->n; i++) {
            job *j = s->jobs[i];
            if (j->removed || j->running || !j->next_due)
                continue;
            if (j->next_due <= now && (!due || j->next_due < due->next_due))
                due = j;
            if (!soonest || j->next_due < soonest)
                soonest = j->next_due;
        }
        if (due) {
            ph_sched_run *run = calloc(1, sizeof *run);
            if (!run) {
                due->next_due = now + 1000; /* try again in a second */
                continue;
            }
            *run = (ph_sched_run){.s = s, .j = due, .at = now, .manual = due->again == 2};
            due->running = 1;
            due->again = 0;
            pthread_mutex_unlock(&s->mu);
            due->fn(due->arg, run);
            pthread_mutex_lock(&s->mu);
            continue;
        }
        if (soonest) {
            int64_t wait = soonest - now;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += wait / 1000;
            ts.tv_nsec += (long)(wait % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        } else {
            pthread_cond_wait(&s->cv, &s->mu);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

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
    pthread_mutex_init(&s->mu, NULL);
    if (pthread_create(&s->thread, NULL, sched_main, s)) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return ph_err_set(err, PH_EIO, "sched: cannot start the scheduler thread");
    }
    *out = s;
    return PH_OK;
}

int ph_sched_add(ph_sched *s, const ph_sched_job_def *def, ph_err *err)
{
    if (!def || !def->fn || !id_ok(def->id) || def->every_ms < 0)
        return ph_err_set(err, PH_EINVAL, "sched: job id '%s' malformed or no function",
                          def && def->id && id_ok(def->id) ? def->id : "?");
    int64_t stored = s->opts.persist && s->opts.persist->next_due
                         ? s->opts.persist->next_due(s->opts.persist->arg, def->id)
                         : 0;
    pthread_mutex_lock(&s->mu);
    if (s->stop) {
        pthread_mutex_unlock(&s->mu);
        return ph_err_set(err, PH_ESHUTDOWN, "sched: stopping");
    }
    job *j = find(s, def->id);
    if (j) {
        j->fn = def->fn;
        j->arg = def->arg;
        if (j->every_ms != def->every_ms && !j->running)
            j->next_due = def->every_ms ? (j->last_started_at ? j->last_started_at : now_of(s)) +
                                              def->every_ms
                                        : 0;
        j->every_ms = def->every_ms;
    } else {
        if (s->n == s->cap) {
            size_t cap = s->cap ? 2 * s->cap : 16;
            job **nj = realloc(s->jobs, cap * sizeof *nj);
            if (!nj) {
                pthread_mutex_unlock(&s->mu);
                return ph_err_set(err, PH_ENOMEM, "out of memory");
            }
            s->jobs = nj;
            s->cap = cap;
        }
        j = calloc(1, sizeof *j);
        if (!j) {
            pthread_mutex_unlock(&s->mu);
            return ph_err_set(err, PH_ENOMEM, "out of memory");
        }
        snprintf(j->id, sizeof j->id, "%s", def->id);
        j->every_ms = def->every_ms;
        j->fn = def->fn;
        j->arg = def->arg;
        j->last_ok = -1;
        j->next_due = stored ? stored : def->every_ms ? now_of(s) : 0;
        s->jobs[s->n++] = j;
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return PH_OK;
}

int ph_sched_remove(ph_sched *s, const char *id)
{
    pthread_mutex_lock(&s->mu);
    job *j = id ? find(s, id) : NULL;
    if (!j) {
        pthread_mutex_unlock(&s->mu);
        return PH_ENOTFOUND;
    }
    j->removed = 1;
    while (j->running)
        pthread_cond_wait(&s->cv, &s->mu);
    for (size_t i = 0; i < s->n; i++)
        if (s->jobs[i] == j) {
            s->jobs[i] = s->jobs[--s->n];
            break;
        }
    pthread_mutex_unlock(&s->mu);
    free(j);
    return PH_OK;
}

int ph_sched_trigger(ph_sched *s, const char *id, ph_err *err)
{
    pthread_mutex_lock(&s->mu);
    job *j = id && !s->stop ? find(s, id) : NULL;
    if (!j) {
        int stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        return stop ? ph_err_set(err, PH_ESHUTDOWN, "sched: stopping")
                    : ph_err_set(err, PH_ENOTFOUND, "sched: no job '%s'", id ? id : "");
    }
    if (j->running)
        j->again = 1;
    else {
        j->next_due = now_of(s);
        j->again = 2; /* the next run is a manual one */
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return PH_OK;
}

static int by_id(const void *a, const void *b)
{
    return strcmp(((const ph_sched_info *)a)->id, ((const ph_sched_info *)b)->id);
}

int ph_sched_list(ph_sched *s, ph_sched_info **out, size_t *n)
{
    pthread_mutex_lock(&s->mu);
    ph_sched_info *v = calloc(s->n ? s->n : 1, sizeof *v);
    if (!v) {
        pthread_mutex_unlock(&s->mu);
        return PH_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
        const job *j = s->jobs[i];
        if (j->removed)
            continue;
        ph_sched_info *e = &v[k++];
        snprintf(e->id, sizeof e->id, "%s", j->id);
        e->every_ms = j->every_ms;
        e->running = j->running;
        e->last_started_at = j->last_started_at;
        e->last_ended_at = j->last_ended_at;
        e->last_ok = j->last_ok;
        snprintf(e->last_outcome, sizeof e->last_outcome, "%s", j->last_outcome);
        e->next_due = j->next_due;
        e->runs = j->runs;
    }
    pthread_mutex_unlock(&s->mu);
    qsort(v, k, sizeof *v, by_id);
    *out = v;
    *n = k;
    return PH_OK;
}

void ph_sched_destroy(ph_sched *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    for (;;) {
        int busy = 0;
        for (size_t i = 0; i < s->n; i++)
            busy |= s->jobs[i]->running;
        if (!busy)
            break;
        pthread_cond_wait(&s->cv, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    for (size_t i = 0; i < s->n; i++)
        free(s->jobs[i]);
    free(s->jobs);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
