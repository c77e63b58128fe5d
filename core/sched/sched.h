/*
 * sched.h — the scheduler: jobs that run on a period or on demand (catalog
 * and stock sync, balance checks, replenishment checks, ...), due times in a
 * min-heap driven by one thread.
 *
 * A job is a function and an argument under a unique id ("sync.stock/simA").
 * When it is due, the scheduler thread calls it with a run; the job starts
 * its work (submits supplier I/O, a store command) and returns at once; it
 * calls ph_sched_done exactly once, on any thread, when the work is over.
 * A job never runs twice at the same time: a trigger while it runs makes it
 * run once more right after. Every change a job makes goes through the store's
 * writer as a command whose time is ph_sched_run_at(run): the write path stays
 * a deterministic function of its commands (docs/design.md).
 *
 * Due times: a job runs every `every_ms` after the start of its previous run
 * (a slow run does not make the next one run at once twice; a manual run
 * counts as a run). The next due time is stored with each run's outcome, so a
 * restart neither skips nor doubles a run: a job whose stored due time passed
 * while the daemon was down runs once at start, not once per missed period.
 * A changed period (a reload, or a restart with another config) applies from
 * the last run's start when that makes the job due sooner: the due time is
 * min(the one it had, last start + the new period).
 *
 * The due jobs are a min-heap on (due time, id) driven by one thread that
 * sleeps until the earliest; running jobs and on-demand jobs not asked for
 * are outside the heap. Adding, triggering and removing are O(log n) plus an
 * O(log n) search of the table sorted by id.
 *
 * Threads and ownership: the scheduler's thread calls the jobs; its one
 * mutex (a leaf: never held while a job runs or a persist hook is called)
 * guards the table and the heap, which other threads reach (adding, removing,
 * triggering, done, the list). The scheduler copies a definition's id; `arg`
 * is the caller's and must stay valid until ph_sched_remove returned or the
 * scheduler is destroyed.
 */
#ifndef PH_SCHED_H
#define PH_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "base/log.h"
#include "base/status.h"

typedef struct ph_sched ph_sched;
typedef struct ph_sched_run ph_sched_run;

/* A job's body: start the work and return; ph_sched_done(run, ...) once when
 * it is over (inside fn or later, from any thread). Scheduler thread. */
typedef void (*ph_sched_fn)(void *arg, ph_sched_run *run);

#define PH_SCHED_ID_MAX 96 /* bytes of a job id, NUL included */

typedef struct ph_sched_job_def {
    const char *id;   /* unique; [A-Za-z0-9._/:-], shorter than PH_SCHED_ID_MAX; copied */
    int64_t every_ms; /* the period; 0 = on demand only */
    ph_sched_fn fn;
    void *arg;
} ph_sched_job_def;

/* 1 when id is a well-formed job id (as ph_sched_job_def says), else 0: the
 * one answer, also for whoever names a caller's id in a message. Pure. */
int ph_sched_id_valid(const char *id);

/* The run's time (ms since the epoch): the `now` of every command it submits. */
int64_t ph_sched_run_at(const ph_sched_run *run);
/* The job's id. */
const char *ph_sched_run_id(const ph_sched_run *run);
/* 1 when the run was asked for (ph_sched_trigger), 0 when it was due. */
int ph_sched_run_manual(const ph_sched_run *run);
/* 1 once the scheduler is being destroyed: a job doing its work in steps
 * stops after the current one and calls ph_sched_done (the rest is left for
 * the next start). Any thread, during the run. */
int ph_sched_stopping(const ph_sched_run *run);

/* Ends a run: ok 1 or 0, and a one-line outcome for GET /v1/jobs ("12 items,
 * 2 prices changed", "supplier simA: timeout"; never a secret; may be NULL;
 * kept as printable ASCII, other bytes as '_', cut at 159 bytes). Calls the
 * persist hook `ran`. Exactly once per run; the run is gone after it. Any
 * thread, also inside the job's fn. */
void ph_sched_done(ph_sched_run *run, int ok, const char *outcome);

/* Ends a run that was ok and changed nothing (an expiry sweep with nothing
 * due): as ph_sched_done(run, 1, outcome), but the persist hook is called
 * only when the store would learn something from it — the job's first run
 * since start, a manual run, the first ok run after a failure, or the first
 * one PH_SCHED_IDLE_KEEP_MS after the last run it kept — so a job due every
 * second does not cost a commit every second. GET /v1/jobs shows every run
 * either way; after a restart a job whose kept due time passed runs once at
 * start, which an idle job does at no cost. Any thread, exactly once per run
 * (instead of ph_sched_done). */
#define PH_SCHED_IDLE_KEEP_MS 600000
void ph_sched_done_idle(ph_sched_run *run, const char *outcome);

/* What the store holds of a job (ph_sched_persist.load). */
typedef struct ph_sched_stored {
    int64_t next_due;                       /* ms; 0 = none stored */
    int64_t last_started_at, last_ended_at; /* 0 = never ran */
    int last_ok;                            /* -1 = never ran */
    char last_outcome[160];
    uint64_t runs;    /* runs stored so far */
    int64_t asked_at; /* a run ops asked for that has not started yet (ms); 0 = none */
} ph_sched_stored;

/* What the scheduler keeps across restarts: hooks into the store. NULL =
 * nothing kept (unit tests). */
typedef struct ph_sched_persist {
    /* The stored state of job `id` into *out: 1, or 0 when nothing is stored
     * (or it cannot be read: the job then starts afresh). Called by
     * ph_sched_add, on its caller's thread, without the scheduler's lock. */
    int (*load)(void *arg, const char *id, ph_sched_stored *out);
    /* Stores a finished run: start, end, ok, outcome (printable ASCII, at most
     * 159 bytes), and the next due time (0 = on demand only). Called by
     * ph_sched_done on its caller's thread — possibly the supplier I/O thread
     * — without the scheduler's lock, in run order for each job: it must not
     * block (submit, do not wait for the commit). `runs` is how many runs the
     * record stands for: 1, or more when idle runs before it were not kept
     * (ph_sched_done_idle); ph_sched_destroy hands over the last idle run
     * not kept yet of each job, on its caller's thread. */
    void (*ran)(void *arg, const char *id, int64_t started_at, int64_t ended_at, int ok,
                const char *outcome, int manual, int64_t next_due, uint32_t runs);
    void *arg;
} ph_sched_persist;

typedef struct ph_sched_opts {
    const ph_logger *log;            /* borrowed; outlives the scheduler */
    const ph_sched_persist *persist; /* borrowed; NULL = none */
    /* The wall clock in ms; NULL = ph_now_ms. Tests pass their own and call
     * ph_sched_settle after moving it. */
    int64_t (*clock_ms)(void *clock_arg);
    void *clock_arg;
} ph_sched_opts;

/* Starts the scheduler's thread. Errors: PH_EINVAL, PH_ENOMEM, PH_EIO. */
int ph_sched_create(const ph_sched_opts *opts, ph_sched **out, ph_err *err);

/* Adds a job, or replaces the definition of the job with the same id (a
 * reload: its due time and history stay; a changed period as said above). A
 * new job takes what the store holds of it (persist.load): due at its stored
 * due time — or at once when ops asked for a run that did not start before a
 * restart, or when nothing is stored (every_ms 0: only when triggered) — with
 * its last run and run count. Errors: PH_EINVAL (id malformed, no fn,
 * every_ms < 0), PH_ENOMEM, PH_ESHUTDOWN. Any thread. */
int ph_sched_add(ph_sched *s, const ph_sched_job_def *def, ph_err *err);

/* Removes a job at once (it is not listed and never starts again; its id may
 * be added anew) and returns once it is not running (a run in progress is
 * waited for: its ph_sched_done), so arg may be freed then. Never call it
 * from inside the job. PH_ENOTFOUND when no such job. Any thread but the
 * scheduler's. */
int ph_sched_remove(ph_sched *s, const char *id);

/* Runs a job as soon as possible (on demand); if it is running, once more
 * right after. PH_ENOTFOUND, PH_ESHUTDOWN. Any thread. */
int ph_sched_trigger(ph_sched *s, const char *id, ph_err *err);

/* One job as GET /v1/jobs shows it. */
typedef struct ph_sched_info {
    char id[PH_SCHED_ID_MAX];
    int64_t every_ms;
    int running;
    int64_t last_started_at, last_ended_at; /* 0 = never ran in this process or stored */
    int last_ok;                            /* -1 = never ran */
    char last_outcome[160];
    int64_t next_due; /* 0 = on demand only; running: its start + the period */
    uint64_t runs;    /* runs finished, the stored ones included (persist.load) */
    int manual;       /* 1: a run was asked for (ph_sched_trigger) and has not started */
} ph_sched_info;

/* Every job, sorted by id; *out is the caller's (free()). PH_ENOMEM. Any thread. */
int ph_sched_list(ph_sched *s, ph_sched_info **out, size_t *n);

/* One job into *out: PH_OK, or PH_ENOTFOUND. Any thread. */
int ph_sched_get(ph_sched *s, const char *id, ph_sched_info *out);

/* Returns once the scheduler's thread has read its clock after this call and
 * started (called the fn of) every job due then that is not running. For
 * tests that move an injected clock: afterwards, what did not start was not
 * due. Any thread but the scheduler's; not inside a job's fn. PH_OK, or
 * PH_ESHUTDOWN when the scheduler is stopping. */
int ph_sched_settle(ph_sched *s);

/* Stops the thread: no new run starts; returns once running jobs called
 * ph_sched_done (their work must be able to finish: stop the scheduler before
 * the I/O engine and the writer). No other call may run at the same time or
 * follow, but the ph_sched_done of runs in progress. NULL is a no-op. */
void ph_sched_destroy(ph_sched *s);

#endif
