/*
 * snapshots.c — the daemon's side of snapshots (repl/snap.h): the directory,
 * made at start on every node (leader, standby or single), and the job
 * snapshots.take, which copies the store there every snapshots.every_s and
 * keeps the newest snapshots.keep.
 *
 * The job runs on every node, standbys included: a standby's snapshot is what
 * a new node pulls without loading the leader, and each node's newest
 * snapshot bounds the stream's retention (repl/retain.h). It writes nothing to
 * the store but its run's record (the scheduler's persist hook, which a
 * standby skips: its store is the leader's). The copy runs on a thread of its
 * own: a large store takes minutes to copy, and the scheduler's other jobs
 * (expiry, sync, alerts) must not wait that long behind it. One copy at a
 * time: the scheduler never starts a job while its last run is not done.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "daemon/daemon.h"
#include "repl/snap.h"
#include "sched/sched.h"

#define SNAP_JOB "snapshots.take"

int ph_daemon_snaps_open(ph_daemon *d, const ph_config *cfg, ph_err *err)
{
    char dir[4096];
    if (cfg->snap_dir)
        snprintf(dir, sizeof dir, "%s", cfg->snap_dir);
    else
        snprintf(dir, sizeof dir, "%s/snapshots", cfg->data_dir);
    return ph_snaps_create(dir, cfg->snap_keep, &d->log, &d->snaps, err);
}

static void *snap_copy(void *arg)
{
    ph_daemon *d = arg;
    ph_sched_run *run = d->snap_run;
    ph_snap_info info;
    ph_err err = {0};
    char outcome[PH_JOB_OUTCOME_MAX + 1];
    int rc = ph_snaps_take(d->snaps, d->store, ph_sched_run_at(run), &info, &err);
    if (rc == PH_OK)
        snprintf(outcome, sizeof outcome, "%s: repl_seq %llu, %llu bytes", info.file,
                 (unsigned long long)info.repl_seq, (unsigned long long)info.bytes);
    else {
        snprintf(outcome, sizeof outcome, "failed: %.140s", err.msg);
        ph_log(&d->log, PH_LOG_ERROR, NULL, "snapshot.failed",
               "detail=\"%s\" effect=\"the previous snapshots stay; tried again at the next run\"",
               err.msg);
    }
    ph_sched_done(run, rc == PH_OK, outcome); /* the last touch of d here */
    return NULL;
}

void ph_daemon_snaps_join(ph_daemon *d)
{
    if (d->snap_thread_live)
        pthread_join(d->snap_thread, NULL);
    d->snap_thread_live = 0;
}

/* Scheduler thread. The previous run's thread called ph_sched_done before
 * this run could start, so the join below waits for its exit only. */
static void snap_job(void *arg, ph_sched_run *run)
{
    ph_daemon *d = arg;
    ph_daemon_snaps_join(d);
    d->snap_run = run;
    int e = pthread_create(&d->snap_thread, NULL, snap_copy, d);
    if (e) {
        ph_log(
            &d->log, PH_LOG_ERROR, NULL, "snapshot.failed",
            "detail=\"no thread for the copy (errno %d)\" effect=\"tried again at the next run\"",
            e);
        ph_sched_done(run, 0, "failed: no thread for the copy");
        return;
    }
    d->snap_thread_live = 1;
}

int ph_daemon_snaps_job_apply(ph_daemon *d, const ph_config *cfg, ph_err *err)
{
    ph_snaps_set_keep(d->snaps, cfg->snap_keep);
    ph_sched_job_def def = {
        .id = SNAP_JOB, .every_ms = (int64_t)cfg->snap_every_s * 1000, .fn = snap_job, .arg = d};
    return ph_sched_add(d->sched, &def, err);
}
