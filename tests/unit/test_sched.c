/*
 * test_sched.c — the scheduler (core/sched/sched.h) with an injected clock:
 * periodic runs, on-demand runs (and the one more after a trigger while
 * running), removal and destruction waiting for a running job, the stored due
 * time of a restart (once, not once per missed period), done from another
 * thread, a changed period, the heap's order over many jobs.
 *
 * No test sleeps: the clock is the test's, and ph_sched_settle returns once
 * the scheduler's thread has started every job due at it, so "did not run"
 * is decided, not waited for.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/sched.h"

typedef struct rec_run {
    ph_sched_run *run;
    char id[PH_SCHED_ID_MAX];
    int64_t at;
    int manual;
} rec_run;

/* What the jobs and the hooks saw; the scheduler's thread writes, the test reads. */
typedef struct world {
    atomic_llong now;
    pthread_mutex_t mu;
    rec_run runs[512];
    size_t nruns;
    /* persist */
    ph_sched_stored stored[64];
    char stored_id[64][PH_SCHED_ID_MAX];
    size_t nstored;
    struct {
        char id[PH_SCHED_ID_MAX];
        int64_t started, ended, next;
        int ok, manual;
        uint32_t runs;
        char outcome[160];
    } ran[512];
    size_t nran;
    int auto_done; /* 1: jobs call ph_sched_done inside their fn */
} world;

static world W;
static ph_logger LOG = {.level = PH_LOG_ERROR + 1, .fd = 2};

static int64_t clock_fn(void *arg)
{
    return atomic_load(&((world *)arg)->now);
}

static void job_fn(void *arg, ph_sched_run *run)
{
    world *w = arg;
    pthread_mutex_lock(&w->mu);
    cr_assert_lt(w->nruns, sizeof w->runs / sizeof w->runs[0]);
    rec_run *r = &w->runs[w->nruns++];
    r->run = run;
    snprintf(r->id, sizeof r->id, "%s", ph_sched_run_id(run));
    r->at = ph_sched_run_at(run);
    r->manual = ph_sched_run_manual(run);
    int autod = w->auto_done;
    pthread_mutex_unlock(&w->mu);
    if (autod)
        ph_sched_done(run, 1, "auto");
}

static int load_fn(void *arg, const char *id, ph_sched_stored *out)
{
    world *w = arg;
    for (size_t i = 0; i < w->nstored; i++)
        if (!strcmp(w->stored_id[i], id)) {
            *out = w->stored[i];
            return 1;
        }
    return 0;
}

static void ran_fn(void *arg, const char *id, int64_t started_at, int64_t ended_at, int ok,
                   const char *outcome, int manual, int64_t next_due, uint32_t runs)
{
    world *w = arg;
    pthread_mutex_lock(&w->mu);
    cr_assert_lt(w->nran, sizeof w->ran / sizeof w->ran[0]);
    size_t i = w->nran++;
    snprintf(w->ran[i].id, sizeof w->ran[i].id, "%s", id);
    w->ran[i].started = started_at;
    w->ran[i].ended = ended_at;
    w->ran[i].next = next_due;
    w->ran[i].ok = ok;
    w->ran[i].manual = manual;
    w->ran[i].runs = runs;
    snprintf(w->ran[i].outcome, sizeof w->ran[i].outcome, "%s", outcome);
    pthread_mutex_unlock(&w->mu);
}

static const ph_sched_persist PERSIST = {.load = load_fn, .ran = ran_fn, .arg = &W};

static void setup(void)
{
    memset(&W, 0, sizeof W);
    pthread_mutex_init(&W.mu, NULL);
    atomic_store(&W.now, 1000000);
}

static void teardown(void)
{
    pthread_mutex_destroy(&W.mu);
}

TestSuite(sched, .init = setup, .fini = teardown);

static ph_sched *start(int persist)
{
    ph_sched *s = NULL;
    ph_err err = {0};
    ph_sched_opts o = {
        .log = &LOG, .persist = persist ? &PERSIST : NULL, .clock_ms = clock_fn, .clock_arg = &W};
    cr_assert_eq(ph_sched_create(&o, &s, &err), PH_OK, "%s", err.msg);
    return s;
}

static void add(ph_sched *s, const char *id, int64_t every)
{
    ph_err err = {0};
    ph_sched_job_def d = {.id = id, .every_ms = every, .fn = job_fn, .arg = &W};
    cr_assert_eq(ph_sched_add(s, &d, &err), PH_OK, "%s", err.msg);
}

static size_t nruns(void)
{
    pthread_mutex_lock(&W.mu);
    size_t n = W.nruns;
    pthread_mutex_unlock(&W.mu);
    return n;
}

static rec_run run_no(size_t i)
{
    pthread_mutex_lock(&W.mu);
    cr_assert_lt(i, W.nruns);
    rec_run r = W.runs[i];
    pthread_mutex_unlock(&W.mu);
    return r;
}

/* Moves the clock to t and lets the scheduler start what is due. */
static void at(ph_sched *s, int64_t t)
{
    atomic_store(&W.now, t);
    cr_assert_eq(ph_sched_settle(s), PH_OK);
}

static ph_sched_info info(ph_sched *s, const char *id)
{
    ph_sched_info i;
    cr_assert_eq(ph_sched_get(s, id, &i), PH_OK, "job %s listed", id);
    return i;
}

Test(sched, periodic_runs_on_its_period_from_each_start)
{
    ph_sched *s = start(0);
    add(s, "a", 100);
    at(s, 1000000); /* nothing stored: due at once */
    cr_assert_eq(nruns(), 1);
    cr_assert_eq(run_no(0).at, 1000000);
    cr_assert_eq(run_no(0).manual, 0);
    cr_assert_eq(info(s, "a").running, 1);
    cr_assert_eq(info(s, "a").next_due, 1000100, "running: its start + the period");
    at(s, 1000250); /* running: never twice at the same time, whatever the clock */
    cr_assert_eq(nruns(), 1);
    atomic_store(&W.now, 1000030);
    ph_sched_done(run_no(0).run, 1, "3 things");
    ph_sched_info i = info(s, "a");
    cr_assert_eq(i.running, 0);
    cr_assert_eq(i.next_due, 1000100, "one period after the start, not after the end");
    cr_assert_eq(i.last_started_at, 1000000);
    cr_assert_eq(i.last_ended_at, 1000030);
    cr_assert_eq(i.last_ok, 1);
    cr_assert_str_eq(i.last_outcome, "3 things");
    cr_assert_eq(i.runs, 1);
    at(s, 1000099);
    cr_assert_eq(nruns(), 1);
    at(s, 1000100);
    cr_assert_eq(nruns(), 2);
    cr_assert_eq(run_no(1).at, 1000100);
    ph_sched_done(run_no(1).run, 0, "supplier x: timeout\n");
    i = info(s, "a");
    cr_assert_eq(i.last_ok, 0);
    cr_assert_str_eq(i.last_outcome, "supplier x: timeout_", "kept printable");
    /* the clock jumps ten periods: one run, not ten */
    at(s, 1001150);
    cr_assert_eq(nruns(), 3);
    cr_assert_eq(run_no(2).at, 1001150);
    ph_sched_done(run_no(2).run, 1, NULL);
    at(s, 1001249);
    cr_assert_eq(nruns(), 3);
    cr_assert_eq(info(s, "a").next_due, 1001250);
    cr_assert_eq(info(s, "a").runs, 3);
    ph_sched_destroy(s);
}

Test(sched, on_demand_job_runs_only_when_asked_and_once_more_after_a_trigger_while_running)
{
    ph_sched *s = start(0);
    ph_err err = {0};
    add(s, "ondemand", 0);
    at(s, 2000000);
    cr_assert_eq(nruns(), 0);
    cr_assert_eq(info(s, "ondemand").next_due, 0);
    cr_assert_eq(ph_sched_trigger(s, "ondemand", &err), PH_OK);
    at(s, 2000000);
    cr_assert_eq(nruns(), 1);
    cr_assert_eq(run_no(0).manual, 1);
    /* asked twice more while it runs: one more run, right after, not two */
    cr_assert_eq(ph_sched_trigger(s, "ondemand", &err), PH_OK);
    cr_assert_eq(ph_sched_trigger(s, "ondemand", &err), PH_OK);
    cr_assert_eq(info(s, "ondemand").manual, 1);
    at(s, 2000500);
    cr_assert_eq(nruns(), 1, "not twice at the same time");
    atomic_store(&W.now, 2000600);
    ph_sched_done(run_no(0).run, 1, "first");
    at(s, 2000600);
    cr_assert_eq(nruns(), 2);
    cr_assert_eq(run_no(1).at, 2000600, "right after the end of the run");
    cr_assert_eq(run_no(1).manual, 1);
    ph_sched_done(run_no(1).run, 1, "second");
    at(s, 9000000);
    cr_assert_eq(nruns(), 2, "once more, not once per trigger");
    cr_assert_eq(info(s, "ondemand").runs, 2);

    /* a periodic job asked for: at once, and its period restarts from that run */
    add(s, "p", 1000);
    at(s, 9000000);
    cr_assert_eq(nruns(), 3);
    ph_sched_done(run_no(2).run, 1, NULL);
    at(s, 9000400);
    cr_assert_eq(ph_sched_trigger(s, "p", &err), PH_OK);
    at(s, 9000400);
    cr_assert_eq(nruns(), 4);
    cr_assert_eq(run_no(3).manual, 1);
    ph_sched_done(run_no(3).run, 1, NULL);
    cr_assert_eq(info(s, "p").next_due, 9001400);
    at(s, 9001399);
    cr_assert_eq(nruns(), 4);

    cr_assert_eq(ph_sched_trigger(s, "nosuch", &err), PH_ENOTFOUND);
    cr_assert(strstr(err.msg, "nosuch"), "%s", err.msg);
    ph_sched_destroy(s);
}

typedef struct remover {
    ph_sched *s;
    const char *id;
    atomic_int returned;
    int rc;
} remover;

static void *remove_main(void *arg)
{
    remover *r = arg;
    r->rc = ph_sched_remove(r->s, r->id);
    atomic_store(&r->returned, 1);
    return NULL;
}

Test(sched, remove_waits_for_the_running_job_and_frees_its_id)
{
    atomic_store(&W.now, 3000000); /* before the adds: they are due at once */
    ph_sched *s = start(0);
    add(s, "busy", 50);
    add(s, "idle", 0);
    at(s, 3000000);
    cr_assert_eq(nruns(), 1);
    cr_assert_str_eq(run_no(0).id, "busy");

    remover r = {.s = s, .id = "busy"};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, remove_main, &r), 0);
    ph_sched_info i;
    while (ph_sched_get(s, "busy", &i) == PH_OK) /* the remover took it out of the table */
        sched_yield();
    cr_assert_eq(atomic_load(&r.returned), 0, "the run has not called done: remove waits");
    at(s, 3000100); /* out of the table: it never starts again */
    cr_assert_eq(nruns(), 1);
    ph_sched_done(run_no(0).run, 1, NULL);
    pthread_join(t, NULL);
    cr_assert_eq(r.rc, PH_OK);
    cr_assert_eq(atomic_load(&r.returned), 1);
    at(s, 3000200);
    cr_assert_eq(nruns(), 1, "a removed job does not come back after its done");

    add(s, "busy", 50); /* the id is free again */
    at(s, 3000200);
    cr_assert_eq(nruns(), 2);
    ph_sched_done(run_no(1).run, 1, NULL);
    cr_assert_eq(ph_sched_remove(s, "idle"), PH_OK); /* not running: at once */
    cr_assert_eq(ph_sched_remove(s, "idle"), PH_ENOTFOUND);
    ph_sched_info *all;
    size_t n;
    cr_assert_eq(ph_sched_list(s, &all, &n), PH_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(all[0].id, "busy");
    free(all);
    ph_sched_destroy(s);
}

Test(sched, a_stored_due_time_that_passed_runs_once_at_start)
{
    /* down from 1,000,500 to 5,000,000 with a 100 ms period: 40,000 periods missed */
    W.nstored = 3;
    snprintf(W.stored_id[0], PH_SCHED_ID_MAX, "late");
    W.stored[0] = (ph_sched_stored){.next_due = 1000500,
                                    .last_started_at = 1000400,
                                    .last_ended_at = 1000410,
                                    .last_ok = 1,
                                    .runs = 7};
    snprintf(W.stored[0].last_outcome, sizeof W.stored[0].last_outcome, "fine");
    snprintf(W.stored_id[1], PH_SCHED_ID_MAX, "future");
    W.stored[1] =
        (ph_sched_stored){.next_due = 5000300, .last_started_at = 4999300, .last_ok = 1, .runs = 2};
    snprintf(W.stored_id[2], PH_SCHED_ID_MAX, "asked");
    W.stored[2] = (ph_sched_stored){
        .next_due = 0, .last_started_at = 4000000, .last_ok = 1, .runs = 1, .asked_at = 4500000};
    atomic_store(&W.now, 5000000);
    ph_sched *s = start(1);
    add(s, "late", 100);
    add(s, "future", 1000);
    add(s, "asked", 0);
    ph_sched_info i = info(s, "late");
    cr_assert_eq(i.runs, 7, "the stored history is shown");
    cr_assert_eq(i.last_started_at, 1000400);
    cr_assert_str_eq(i.last_outcome, "fine");
    cr_assert_eq(info(s, "future").next_due, 5000300, "the stored due time is kept");
    at(s, 5000000);
    cr_assert_eq(nruns(), 2, "late and asked, once each");
    rec_run a = run_no(0), b = run_no(1);
    rec_run *late = !strcmp(a.id, "late") ? &a : &b, *asked = late == &a ? &b : &a;
    cr_assert_str_eq(late->id, "late");
    cr_assert_eq(late->at, 5000000);
    cr_assert_eq(late->manual, 0);
    cr_assert_str_eq(asked->id, "asked");
    cr_assert_eq(asked->manual, 1, "an ask that did not start before the restart stands");
    ph_sched_done(late->run, 1, "caught up");
    ph_sched_done(asked->run, 1, NULL);
    cr_assert_eq(info(s, "late").runs, 8);
    cr_assert_eq(info(s, "late").next_due, 5000100);
    at(s, 5000099);
    cr_assert_eq(nruns(), 2, "once, not once per missed period");
    pthread_mutex_lock(&W.mu);
    cr_assert_eq(W.nran, 2);
    int li = strcmp(W.ran[0].id, "late") ? 1 : 0;
    cr_assert_str_eq(W.ran[li].id, "late");
    cr_assert_eq(W.ran[li].started, 5000000);
    cr_assert_eq(W.ran[li].next, 5000100, "the next due time is stored with the run");
    cr_assert_str_eq(W.ran[li].outcome, "caught up");
    cr_assert_eq(W.ran[1 - li].manual, 1);
    cr_assert_eq(W.ran[1 - li].next, 0, "on demand: no next due time");
    pthread_mutex_unlock(&W.mu);
    W.auto_done = 1;
    at(s, 5000299); /* late, once more (its period is 100) */
    cr_assert_eq(nruns(), 3);
    cr_assert_str_eq(run_no(2).id, "late");
    at(s, 5000300);
    cr_assert_eq(nruns(), 4);
    cr_assert_str_eq(run_no(3).id, "future");
    ph_sched_destroy(s);
}

typedef struct finisher {
    ph_sched_run *run;
    pthread_t thread;
} finisher;

static void *finish_main(void *arg)
{
    finisher *f = arg;
    ph_sched_done(f->run, 1, "from another thread");
    return NULL;
}

Test(sched, done_from_another_thread)
{
    atomic_store(&W.now, 6000000);
    ph_sched *s = start(1);
    for (int k = 0; k < 20; k++) {
        char id[16];
        snprintf(id, sizeof id, "j%02d", k);
        add(s, id, 10);
    }
    int64_t t = 6000000;
    size_t seen = 0;
    for (int round = 0; round < 5; round++, t += 10) {
        at(s, t);
        size_t n = nruns();
        cr_assert_eq(n, seen + 20, "round %d: every job once", round);
        finisher f[20];
        for (size_t k = 0; k < 20; k++) {
            f[k].run = run_no(seen + k).run;
            cr_assert_eq(pthread_create(&f[k].thread, NULL, finish_main, &f[k]), 0);
        }
        for (size_t k = 0; k < 20; k++)
            pthread_join(f[k].thread, NULL);
        seen = n;
    }
    ph_sched_info *all;
    size_t n;
    cr_assert_eq(ph_sched_list(s, &all, &n), PH_OK);
    cr_assert_eq(n, 20);
    for (size_t k = 0; k < n; k++) {
        cr_assert_eq(all[k].runs, 5);
        cr_assert_eq(all[k].running, 0);
        cr_assert_str_eq(all[k].last_outcome, "from another thread");
        if (k)
            cr_assert_lt(strcmp(all[k - 1].id, all[k].id), 0, "sorted by id");
    }
    free(all);
    pthread_mutex_lock(&W.mu);
    cr_assert_eq(W.nran, 100);
    pthread_mutex_unlock(&W.mu);
    ph_sched_destroy(s);
}

typedef struct late_done {
    ph_sched_run *run;
    atomic_int called;
} late_done;

/* Ends the run only once destroy has begun (the run sees the scheduler stopping). */
static void *late_done_main(void *arg)
{
    late_done *l = arg;
    while (!ph_sched_stopping(l->run))
        sched_yield();
    atomic_store(&l->called, 1);
    ph_sched_done(l->run, 1, "finished during destroy");
    return NULL;
}

Test(sched, destroy_waits_for_a_running_job)
{
    atomic_store(&W.now, 7000000);
    ph_sched *s = start(1);
    add(s, "slow", 1000);
    at(s, 7000000);
    cr_assert_eq(nruns(), 1);
    late_done l = {.run = run_no(0).run};
    cr_assert_eq(ph_sched_stopping(l.run), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, late_done_main, &l), 0);
    ph_sched_destroy(s);
    cr_assert_eq(atomic_load(&l.called), 1, "destroy returned before the run ended");
    pthread_join(t, NULL);
    pthread_mutex_lock(&W.mu);
    cr_assert_eq(W.nran, 1, "the run's record reached the persist hook");
    cr_assert_str_eq(W.ran[0].outcome, "finished during destroy");
    pthread_mutex_unlock(&W.mu);
}

Test(sched, a_changed_period_applies_from_the_last_start_when_sooner)
{
    atomic_store(&W.now, 8000000);
    ph_sched *s = start(0);
    W.auto_done = 1;
    add(s, "r", 1000);
    at(s, 8000000);
    cr_assert_eq(nruns(), 1);
    cr_assert_eq(info(s, "r").next_due, 8001000);
    at(s, 8000500);
    add(s, "r", 200); /* a reload: due 8,000,200, passed: at once */
    at(s, 8000500);
    cr_assert_eq(nruns(), 2);
    cr_assert_eq(run_no(1).at, 8000500);
    cr_assert_eq(info(s, "r").next_due, 8000700);
    add(s, "r", 60000); /* longer: the due time it has stays */
    cr_assert_eq(info(s, "r").next_due, 8000700);
    at(s, 8000700);
    cr_assert_eq(nruns(), 3);
    cr_assert_eq(info(s, "r").next_due, 8060700);
    add(s, "r", 0); /* on demand only now */
    cr_assert_eq(info(s, "r").next_due, 0);
    at(s, 9000000);
    cr_assert_eq(nruns(), 3);
    cr_assert_eq(info(s, "r").every_ms, 0);
    ph_sched_destroy(s);
}

static int due_of(int i)
{
    return 10000000 + ((i * 37) % 64) * 10; /* 64 jobs, dues spread and shuffled */
}

Test(sched, many_jobs_start_in_due_order_each_when_due)
{
    W.auto_done = 1;
    W.nstored = 64;
    for (int i = 0; i < 64; i++) {
        snprintf(W.stored_id[i], PH_SCHED_ID_MAX, "sync.stock/sup%02d", i);
        W.stored[i] = (ph_sched_stored){
            .next_due = due_of(i), .last_started_at = due_of(i) - 100000, .last_ok = 1};
    }
    atomic_store(&W.now, 9999999);
    ph_sched *s = start(1);
    for (int i = 0; i < 64; i++)
        add(s, W.stored_id[i], 100000);
    at(s, 9999999);
    cr_assert_eq(nruns(), 0);
    /* remove a few and ask for one of them early */
    cr_assert_eq(ph_sched_remove(s, "sync.stock/sup05"), PH_OK);
    cr_assert_eq(ph_sched_remove(s, "sync.stock/sup40"), PH_OK);
    for (int64_t t = 10000000; t < 10000640; t += 10) {
        at(s, t);
        size_t n = nruns();
        size_t want = 0;
        for (int i = 0; i < 64; i++)
            want += i != 5 && i != 40 && due_of(i) <= t;
        cr_assert_eq(n, want, "at %lld", (long long)t);
        if (n && run_no(n - 1).at == t) {
            rec_run r = run_no(n - 1);
            int i = atoi(r.id + strlen("sync.stock/sup"));
            cr_assert_eq(due_of(i), t, "%s started when due", r.id);
        }
    }
    cr_assert_eq(nruns(), 62);
    for (int i = 0; i < 64; i++)
        if (i != 5 && i != 40)
            cr_assert_eq(info(s, W.stored_id[i]).next_due, due_of(i) + 100000);
    ph_sched_destroy(s);
}

Test(sched, refuses_malformed_definitions)
{
    ph_sched *s = start(0);
    ph_err err = {0};
    char longid[PH_SCHED_ID_MAX + 1];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = 0;
    const char *bad[] = {"", "with space", "a\nb", "é", longid};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ph_sched_job_def d = {.id = bad[i], .every_ms = 10, .fn = job_fn, .arg = &W};
        cr_assert_eq(ph_sched_add(s, &d, &err), PH_EINVAL, "id %zu", i);
    }
    ph_sched_job_def nofn = {.id = "x", .every_ms = 10};
    cr_assert_eq(ph_sched_add(s, &nofn, &err), PH_EINVAL);
    ph_sched_job_def neg = {.id = "x", .every_ms = -1, .fn = job_fn};
    cr_assert_eq(ph_sched_add(s, &neg, &err), PH_EINVAL);
    cr_assert_eq(ph_sched_remove(s, "x"), PH_ENOTFOUND);
    ph_sched_info i;
    cr_assert_eq(ph_sched_get(s, "x", &i), PH_ENOTFOUND);
    add(s, "sync.catalog/simA", 0); /* supplier ids keep their case */
    cr_assert_eq(info(s, "sync.catalog/simA").every_ms, 0);
    ph_sched_destroy(s);
}

/* ---- the store's side: PH_CMD_JOB_RAN, PH_CMD_JOB_ASK, ph_store_job_get ---- */

#include "store/cmd_codec.h"
#include "store_fixture.h"

TestSuite(store_jobs, .init = fixture_setup, .fini = fixture_teardown);

static int job_cmd(int type, const char *id, int64_t now, int64_t started, int64_t ended, int ok,
                   const char *outcome, int manual, int64_t next, ph_err *err)
{
    ph_cmd c = {.type = type, .now = now};
    c.in.job.id = id;
    c.in.job.started_at = started;
    c.in.job.ended_at = ended;
    c.in.job.ok = ok;
    c.in.job.outcome = outcome;
    c.in.job.manual = manual;
    c.in.job.next_due = next;
    int rc = ph_store_exec(g_s, &c);
    if (err)
        *err = c.err;
    ph_cmd_clear(&c);
    return rc;
}

static ph_job_record job_rec(const char *id)
{
    ph_job_record r;
    ph_err err = {0};
    cr_assert_eq(ph_store_job_get(g_s, id, &r, &err), PH_OK, "%s", err.msg);
    return r;
}

Test(store_jobs, a_run_is_stored_counted_and_kept_across_a_restart)
{
    g_s = open_at(g_dir, 0);
    ph_job_record r;
    ph_err err = {0};
    cr_assert_eq(ph_store_job_get(g_s, "codes.expire", &r, &err), PH_ENOTFOUND);
    cr_assert_eq(job_cmd(PH_CMD_JOB_RAN, "codes.expire", NOW + 5, NOW, NOW + 5, 1, "3 codes", 0,
                         NOW + 1000, &err),
                 PH_OK, "%s", err.msg);
    cr_assert_eq(job_cmd(PH_CMD_JOB_RAN, "sync.stock/simA", NOW + 9, NOW + 2, NOW + 9, 0,
                         "supplier simA: timeout", 0, NOW + 60002, &err),
                 PH_OK, "%s", err.msg);
    r = job_rec("codes.expire");
    cr_assert_eq(r.last_started_at, NOW);
    cr_assert_eq(r.last_ended_at, NOW + 5);
    cr_assert_eq(r.last_ok, 1);
    cr_assert_str_eq(r.last_outcome, "3 codes");
    cr_assert_eq(r.next_due, NOW + 1000);
    cr_assert_eq(r.runs, 1);
    cr_assert_eq(job_cmd(PH_CMD_JOB_RAN, "codes.expire", NOW + 1003, NOW + 1000, NOW + 1003, 1,
                         NULL, 0, NOW + 2000, &err),
                 PH_OK);
    reopen();
    r = job_rec("codes.expire");
    cr_assert_eq(r.runs, 2);
    cr_assert_eq(r.next_due, NOW + 2000);
    cr_assert_str_eq(r.last_outcome, "");
    r = job_rec("sync.stock/simA");
    cr_assert_eq(r.last_ok, 0);
    cr_assert_str_eq(r.last_outcome, "supplier simA: timeout");
    assert_check();
}

Test(store_jobs, an_ask_stands_until_a_run_answers_it)
{
    g_s = open_at(g_dir, 0);
    ph_err err = {0};
    cr_assert_eq(job_cmd(PH_CMD_JOB_RAN, "j", NOW, NOW - 10, NOW, 1, "", 0, NOW + 500, &err),
                 PH_OK);
    cr_assert_eq(job_cmd(PH_CMD_JOB_ASK, "j", NOW + 100, 0, 0, 0, NULL, 0, 0, &err), PH_OK, "%s",
                 err.msg);
    ph_job_record r = job_rec("j");
    cr_assert_eq(r.asked_at, NOW + 100);
    cr_assert_eq(r.runs, 1, "an ask is not a run");
    cr_assert_eq(r.next_due, NOW + 500);
    /* a run that started before the ask does not answer it */
    cr_assert_eq(
        job_cmd(PH_CMD_JOB_RAN, "j", NOW + 150, NOW + 90, NOW + 150, 1, "", 0, NOW + 590, &err),
        PH_OK);
    cr_assert_eq(job_rec("j").asked_at, NOW + 100);
    cr_assert_eq(
        job_cmd(PH_CMD_JOB_RAN, "j", NOW + 160, NOW + 150, NOW + 160, 1, "", 1, NOW + 650, &err),
        PH_OK);
    r = job_rec("j");
    cr_assert_eq(r.asked_at, 0);
    cr_assert_eq(r.runs, 3);
    /* an ask of a job never stored makes its record */
    cr_assert_eq(job_cmd(PH_CMD_JOB_ASK, "fresh", NOW, 0, 0, 0, NULL, 0, 0, &err), PH_OK);
    r = job_rec("fresh");
    cr_assert_eq(r.asked_at, NOW);
    cr_assert_eq(r.last_ok, -1);
    cr_assert_eq(r.runs, 0);
}

Test(store_jobs, refusals_name_the_field_and_change_nothing)
{
    g_s = open_at(g_dir, 0);
    ph_err err = {0};
    cr_assert_eq(job_cmd(PH_CMD_JOB_RAN, "j", NOW, NOW, NOW, 1, "ok", 0, NOW + 10, &err), PH_OK);
    struct {
        const char *id, *outcome, *field;
        int ok;
        int64_t started, ended, next;
    } bad[] = {
        {"", "x", "id", 1, NOW, NOW, 0},
        {"with space", "x", "id", 1, NOW, NOW, 0},
        {"j", "line\nbreak", "outcome", 1, NOW, NOW, 0},
        {"j", "\xc3\xa9", "outcome", 1, NOW, NOW, 0},
        {"j", "x", "ok", 2, NOW, NOW, 0},
        {"j", "x", "ended_at", 1, NOW + 5, NOW, 0},
        {"j", "x", "next_due", 1, NOW, NOW, -1},
    };
    char longer[PH_JOB_OUTCOME_MAX + 2];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = job_cmd(PH_CMD_JOB_RAN, bad[i].id, NOW + 50, bad[i].started, bad[i].ended,
                         bad[i].ok, bad[i].outcome, 0, bad[i].next, &err);
        cr_assert_eq(rc, PH_EINVAL, "case %zu", i);
        cr_assert(strstr(err.msg, bad[i].field), "case %zu: %s", i, err.msg);
    }
    cr_assert_eq(job_cmd(PH_CMD_JOB_RAN, "j", NOW, NOW, NOW, 1, longer, 0, 0, &err), PH_EINVAL);
    cr_assert_eq(job_cmd(PH_CMD_JOB_ASK, "a b", NOW, 0, 0, 0, NULL, 0, 0, &err), PH_EINVAL);
    ph_job_record r = job_rec("j");
    cr_assert_eq(r.runs, 1);
    cr_assert_str_eq(r.last_outcome, "ok");
    ph_job_record none;
    cr_assert_eq(ph_store_job_get(g_s, "a b", &none, &err), PH_ENOTFOUND);
}

Test(store_jobs, the_commands_round_trip_through_the_codec)
{
    ph_cmd c[2] = {{.type = PH_CMD_JOB_RAN, .now = NOW + 7}, {.type = PH_CMD_JOB_ASK, .now = NOW}};
    c[0].in.job.id = "sync.catalog/simA";
    c[0].in.job.started_at = NOW;
    c[0].in.job.ended_at = NOW + 7;
    c[0].in.job.ok = 1;
    c[0].in.job.outcome = "12 items";
    c[0].in.job.manual = 1;
    c[0].in.job.next_due = NOW + 60000;
    c[1].in.job.id = "codes.expire";
    c[0].next = &c[1];
    uint8_t *p;
    size_t len;
    ph_err err = {0};
    cr_assert_eq(ph_cmd_batch_encode(&c[0], &p, &len, &err), PH_OK, "%s", err.msg);
    ph_cmd_batch b;
    cr_assert_eq(ph_cmd_batch_decode(p, len, &b, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(b.n, 2);
    cr_assert_eq(b.cmds[0].type, PH_CMD_JOB_RAN);
    cr_assert_str_eq(b.cmds[0].in.job.id, "sync.catalog/simA");
    cr_assert_eq(b.cmds[0].in.job.started_at, NOW);
    cr_assert_eq(b.cmds[0].in.job.ended_at, NOW + 7);
    cr_assert_eq(b.cmds[0].in.job.ok, 1);
    cr_assert_str_eq(b.cmds[0].in.job.outcome, "12 items");
    cr_assert_eq(b.cmds[0].in.job.manual, 1);
    cr_assert_eq(b.cmds[0].in.job.next_due, NOW + 60000);
    cr_assert_eq(b.cmds[1].type, PH_CMD_JOB_ASK);
    cr_assert_str_eq(b.cmds[1].in.job.id, "codes.expire");
    cr_assert_null(b.cmds[1].in.job.outcome);
    cr_assert_str_eq(ph_cmd_type_name(PH_CMD_JOB_RAN), "job_ran");
    ph_cmd_batch_free(&b);
    free(p);
}

/* Writes text as job id's record behind the store's back (g_s closed). */
static void raw_job(const char *id, const char *text)
{
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi dbi = raw_dbi(txn, "jobs", 0);
    MDB_val k = {strlen(id), (void *)id}, v = {strlen(text), (void *)text};
    cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    raw_commit(env, txn);
}

Test(store_jobs, check_store_names_a_malformed_or_inconsistent_record)
{
    g_s = open_at(g_dir, 0);
    ph_err err = {0};
    cr_assert_eq(job_cmd(PH_CMD_JOB_RAN, "good", NOW, NOW, NOW, 1, "", 0, NOW + 10, &err), PH_OK);
    assert_check();
    const char *bad[][2] = {
        {"broken", "{\"last_started_at\":1"},
        {"missing", "{\"last_started_at\":1,\"last_ended_at\":1,\"last_ok\":1}"},
        {"ended.first",
         "{\"last_started_at\":5,\"last_ended_at\":4,\"last_ok\":1,\"last_outcome\":\"\","
         "\"next_due\":0,\"runs\":1,\"asked_at\":0}"},
        {"never.ran.ok",
         "{\"last_started_at\":0,\"last_ended_at\":0,\"last_ok\":1,\"last_outcome\":\"\","
         "\"next_due\":0,\"runs\":0,\"asked_at\":0}"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ph_store_close(g_s);
        g_s = NULL;
        raw_job(bad[i][0], bad[i][1]);
        g_s = open_at(g_dir, 0);
        ph_store_stats st;
        cr_assert_eq(ph_store_check(g_s, &st, &err), PH_EIO, "case %zu", i);
        cr_assert(strstr(err.msg, bad[i][0]), "case %zu: %s", i, err.msg);
        ph_job_record r;
        if (i < 2)
            cr_assert_eq(ph_store_job_get(g_s, bad[i][0], &r, &err), PH_EIO);
        /* put it right: the next case starts from a store that passes */
        ph_store_close(g_s);
        g_s = NULL;
        raw_job(bad[i][0], "{\"last_started_at\":0,\"last_ended_at\":0,\"last_ok\":-1,"
                           "\"last_outcome\":\"\",\"next_due\":0,\"runs\":0,\"asked_at\":0}");
        g_s = open_at(g_dir, 0);
        assert_check();
    }
}

static size_t nran(void)
{
    pthread_mutex_lock(&W.mu);
    size_t n = W.nran;
    pthread_mutex_unlock(&W.mu);
    return n;
}

/* A job due every second that finds nothing to do must not cost a commit a
 * second: idle runs are kept only when they tell the store something. */
Test(sched, idle_runs_are_kept_only_when_they_say_something_new)
{
    ph_sched *s = start(1);
    add(s, "sweep", 1000);
    int64_t t = 1000000;
    at(s, t);
    ph_sched_done_idle(run_no(0).run, "nothing due");
    cr_assert_eq(nran(), 1, "the first run since start is kept");
    for (int i = 1; i <= 5; i++) {
        at(s, t + i * 1000);
        ph_sched_done_idle(run_no((size_t)i).run, "nothing due");
    }
    cr_assert_eq(nruns(), 6, "every run ran");
    cr_assert_eq(nran(), 1, "idle runs within the interval are not kept");
    cr_assert_eq(info(s, "sweep").runs, 6, "GET /v1/jobs still counts every run");
    at(s, t + 6000);
    ph_sched_done(run_no(6).run, 0, "failed");
    cr_assert_eq(nran(), 2, "a failure is kept");
    at(s, t + 7000);
    ph_sched_done_idle(run_no(7).run, "nothing due");
    cr_assert_eq(nran(), 3, "the first ok run after a failure is kept");
    at(s, t + 8000);
    ph_sched_done_idle(run_no(8).run, "nothing due");
    cr_assert_eq(nran(), 3);
    ph_err err = {0};
    cr_assert_eq(ph_sched_trigger(s, "sweep", &err), PH_OK, "%s", err.msg);
    at(s, t + 8100);
    ph_sched_done_idle(run_no(9).run, "nothing due");
    cr_assert_eq(nran(), 4, "a manual run is kept");
    pthread_mutex_lock(&W.mu);
    cr_assert_eq(W.ran[3].runs, 2, "the manual run stands for the idle one before it too");
    pthread_mutex_unlock(&W.mu);
    /* the interval passes (one run: the clock jumped) */
    at(s, t + 8100 + PH_SCHED_IDLE_KEEP_MS);
    ph_sched_done_idle(run_no(nruns() - 1).run, "nothing due");
    cr_assert_eq(nran(), 5, "one idle run is kept per interval");
    at(s, t + 9100 + PH_SCHED_IDLE_KEEP_MS);
    ph_sched_done_idle(run_no(nruns() - 1).run, "nothing due");
    cr_assert_eq(nran(), 5);
    ph_sched_destroy(s);
    /* a clean stop keeps the last idle run not kept yet, due time and all */
    pthread_mutex_lock(&W.mu);
    cr_assert_eq(W.nran, 6, "destroy keeps the unkept run");
    cr_assert_eq(W.ran[5].started, t + 9100 + PH_SCHED_IDLE_KEEP_MS);
    cr_assert_eq(W.ran[5].next, W.ran[5].started + 1000, "with its next due time");
    cr_assert_eq(W.ran[5].runs, 1);
    size_t total = 0;
    for (size_t i = 0; i < W.nran; i++)
        total += W.ran[i].runs;
    cr_assert_eq(total, W.nruns, "the kept records account for every run");
    pthread_mutex_unlock(&W.mu);
}
