/*
 * risk_reviews.c — the daemon's side of the review queue (issue 15): the
 * scheduled job risk.reviews, which applies the configured default
 * (risk.review_default) to held orders whose review timed out, as "timeout".
 *
 * It runs on the scheduler's thread and waits for each commit (ph_store_exec),
 * like codes.expire; a review ops applied first is refused by the writer
 * (PH_ESTATE) and skipped. The release goes the way ops' would (http/reviews.h).
 */
#include <stdio.h>
#include <stdlib.h>

#include "base/util.h"
#include "daemon/daemon.h"
#include "http/end_user.h"
#include "http/reviews.h"
#include "risk/risk.h"
#include "sched/sched.h"

#define REVIEWS_JOB      "risk.reviews"
#define REVIEWS_PER_STEP 256 /* due reviews read per step */

static void reviews_job(void *arg, ph_sched_run *run)
{
    ph_daemon *d = arg;
    int64_t now = ph_sched_run_at(run);
    uint64_t ids[REVIEWS_PER_STEP];
    size_t n = 0, done = 0, failed = 0;
    ph_err err = {0};
    ph_cfg_ref *ref = ph_cfg_acquire(&d->cfg);
    int release = ref->cfg->risk_review_default == PH_REVIEW_RELEASE;
    int rc = ph_store_review_due(d->store, now, ids, REVIEWS_PER_STEP, &n, &err);
    for (size_t i = 0; rc == PH_OK && i < n && !ph_sched_stopping(run); i++) {
        ph_cmd cmd;
        ph_review_cmd(d->fulfil, ref->cfg, d->store, ids[i], release, "timeout", NULL, now, &cmd);
        /* audited like ops' decision, by the job: who is "timeout", how is "job" */
        char what[64];
        snprintf(what, sizeof what, "{\"order_id\":%llu,\"by\":\"timeout\"}",
                 (unsigned long long)ids[i]);
        ph_audit audit = {
            .action = release ? "review.release" : "review.block", .via = "job", .what = what};
        cmd.audit = &audit;
        int xrc = ph_store_exec(d->store, &cmd);
        ph_err aerr = {0};
        if (xrc == PH_OK) {
            done++;
            if (ph_review_after(d->fulfil, d->risk, d->store, &cmd, &aerr) != PH_OK)
                ph_log(&d->log, PH_LOG_ERROR, NULL, "review.fulfil_failed",
                       "order=%llu detail=\"%s\" effect=\"queried after the next restart\"",
                       (unsigned long long)ids[i], aerr.msg);
        } else if (xrc != PH_ESTATE) {
            failed++;
            ph_log(&d->log, PH_LOG_ERROR, NULL, "review.timeout_failed",
                   "order=%llu detail=\"%s\" effect=\"retried at the next run\"",
                   (unsigned long long)ids[i], cmd.err.msg);
        }
        ph_cmd_clear(&cmd);
    }
    ph_cfg_release(ref);
    char outcome[PH_JOB_OUTCOME_MAX + 1];
    if (rc != PH_OK)
        snprintf(outcome, sizeof outcome, "failed: %.140s", err.msg);
    else
        snprintf(outcome, sizeof outcome, "%zu timed-out reviews %s, %zu failed%s", done,
                 release ? "released" : "blocked", failed,
                 n == REVIEWS_PER_STEP ? "; more left for the next run" : "");
    if (done)
        ph_log(&d->log, PH_LOG_INFO, NULL, "review.timed_out", "orders=%zu default=%s", done,
               release ? "release" : "block");
    if (rc == PH_OK && !n)
        ph_sched_done_idle(run, outcome); /* nothing timed out: no commit for the record */
    else
        ph_sched_done(run, rc == PH_OK && !failed, outcome);
}

/* ---- the counters' rebuild at start ------------------------------------------ */

typedef struct rebuild {
    struct ph_risk *rk;
    uint64_t after_id, max_id; /* replays orders after after_id; the last one replayed */
    size_t orders, unreadable;
} rebuild;

static int replay_one(void *arg, uint64_t id, const char *json, size_t len)
{
    rebuild *rb = arg;
    ph_risk_record rec;
    if (id <= rb->after_id)
        return PH_OK; /* counted by an earlier rebuild */
    if (id > rb->max_id)
        rb->max_id = id;
    if (ph_risk_record_read(json, len, &rec) != PH_OK) {
        rb->unreadable++; /* --check-store says which; the rest still counts */
        return PH_OK;
    }
    ph_risk_replay(rb->rk, &rec.subject, rec.action); /* notes a denied one itself */
    if (rec.blocked)
        ph_risk_note_blocked(rb->rk, &rec.subject, rec.blocked_at);
    ph_risk_record_clear(&rec);
    rb->orders++;
    return PH_OK;
}

int ph_daemon_risk_rebuild(ph_daemon *d, struct ph_risk *rk, int64_t now, ph_err *err)
{
    int64_t reach = rk ? ph_risk_reach_ms(rk) : 0;
    if (reach <= 0)
        return PH_OK;
    rebuild rb = {.rk = rk, .after_id = d->risk_counted_upto, .max_id = d->risk_counted_upto};
    int rc = ph_store_order_risk_scan(d->store, now - reach, replay_one, &rb, err);
    if (rc == PH_OK) {
        d->risk_counted_upto = rb.max_id;
        ph_log(&d->log, PH_LOG_INFO, NULL, "risk.rebuilt", "orders=%zu unreadable=%zu reach_s=%lld",
               rb.orders, rb.unreadable, (long long)(reach / 1000));
    }
    return rc;
}

int ph_daemon_risk_take_over(ph_daemon *d, ph_err *err)
{
    ph_risk_rule *rules;
    ph_risk_entry *entries;
    size_t nr, ne;
    uint64_t gen;
    int rc = ph_store_risk_load(d->store, &rules, &nr, &entries, &ne, &gen, err);
    if (rc)
        return rc;
    rc = ph_risk_load(d->risk, gen, rules, nr, entries, ne, err);
    free(rules);
    free(entries);
    if (rc < 0)
        return rc;
    return ph_daemon_risk_rebuild(d, d->risk, ph_now_ms(), err);
}

int ph_daemon_reviews_apply(ph_daemon *d, const ph_config *cfg, ph_err *err)
{
    ph_sched_job_def def = {.id = REVIEWS_JOB,
                            .every_ms = (int64_t)cfg->risk_review_check_s * 1000,
                            .fn = reviews_job,
                            .arg = d};
    return ph_sched_add(d->sched, &def, err);
}
