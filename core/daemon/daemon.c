/*
 * daemon.c — starting, reloading and stopping everything the context owns.
 */
#include "daemon/daemon.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "http/http_api.h"
#include "metrics/metrics.h"
#include "notify/notify.h"
#include "repl/repl.h"
#include "repl/snap.h"
#include "risk/risk.h"
#include "sched/sched.h"
#include "supply/redeem.h"
#include "supply/sync.h"
#include "supply/balance.h"
#include "supply/fulfil.h"
#include "supply/replenish.h"
#include "supply/supplier_io.h"
#include "supply/suppliers.h"
#include "base/util.h"
#include "crypto/wipe_alloc.h"
#include "http/views.h"
#include "daemon/keys.h"

/* Replaces the current snapshot (taking cfg, also on failure); requests
 * holding the old one finish with it. */
static int cfg_install(ph_daemon *d, ph_config *cfg, ph_err *err)
{
    int level = cfg->log_level;
    int rc = ph_cfg_install(&d->cfg, cfg, err);
    if (rc == PH_OK)
        ph_log_set_level(&d->log, level); /* read by every thread */
    return rc;
}

int ph_daemon_sync_products(ph_daemon *d, const ph_config *cfg, const ph_audit *audit, ph_err *err)
{
    char **json = calloc(cfg->nproducts + 1, sizeof *json);
    if (!json)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    int rc = PH_OK;
    for (size_t i = 0; i < cfg->nproducts && rc == PH_OK; i++) {
        json_t *p = ph_view_product_stored(&cfg->products[i]);
        if (!p || !(json[i] = json_dumps(p, JSON_COMPACT)))
            rc = ph_err_set(err, PH_ENOMEM, "out of memory");
        json_decref(p);
    }
    if (rc == PH_OK) {
        ph_cmd cmd = {.type = PH_CMD_PUT_PRODUCTS, .now = ph_now_ms()};
        cmd.in.products.json = (const char *const *)json;
        cmd.in.products.n = cfg->nproducts;
        cmd.audit = audit;
        if ((rc = ph_store_exec(d->store, &cmd)) != PH_OK && err)
            *err = cmd.err;
        ph_cmd_clear(&cmd);
    }
    for (size_t i = 0; i < cfg->nproducts; i++)
        ph_json_free(json[i]);
    free(json);
    return rc;
}

/* Writes the bound port for whoever started us on port 0 (tests, scripts):
 * to a temporary name first, so a reader never sees a half-written file. */
static int write_port_file(const char *path, uint16_t port, ph_err *err)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%u\n", port) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
        return ph_err_set(err, PH_EIO, "listen.port_file: cannot write %s: %s", path,
                          strerror(errno));
    return PH_OK;
}

/* pid_file: taken before anything else starts, so that two daemons given the
 * same file never both run (and never both drive the same supplier orders).
 * The lock, not the pid written in the file, says whether its owner lives: a
 * file left by a killed daemon is taken over, one held by a running daemon is
 * refused naming its pid. Emptied at once, so nobody reads a stale pid as
 * ours; the pid goes in once the listener is bound (pid_file_write). */
static int pid_file_lock(ph_daemon *d, const char *path, ph_err *err)
{
    int rc = ph_mkdir_parents(path, err); /* var/ of a fresh directory, as the key file's */
    if (rc)
        return rc;
    for (int tries = 0; tries < 5; tries++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            return ph_err_set(err, PH_EIO, "pid_file: cannot open %s: %s", path, strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            char pid[24] = "";
            ssize_t n = e == EWOULDBLOCK ? pread(fd, pid, sizeof pid - 1, 0) : -1;
            close(fd);
            if (e != EWOULDBLOCK)
                return ph_err_set(err, PH_EIO, "pid_file: cannot lock %s: %s", path, strerror(e));
            pid[n > 0 ? n : 0] = 0;
            pid[strcspn(pid, "\n")] = 0;
            return ph_err_set(err, PH_ESTATE,
                              "pid_file: %s is held by a running perkhubd (pid %s); stop it "
                              "first (kill -TERM $(cat %s)) or give this one another pid_file",
                              path, pid[0] ? pid : "not yet written", path);
        }
        /* the owner we waited out may have removed the file: lock the one at path */
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino) {
            if (ftruncate(fd, 0) != 0 || !(d->pid_path = strdup(path))) {
                close(fd);
                return ph_err_set(err, PH_EIO, "pid_file: cannot write %s", path);
            }
            d->pid_fd = fd;
            return PH_OK;
        }
        close(fd);
    }
    return ph_err_set(err, PH_EIO, "pid_file: %s keeps changing under us", path);
}

static int pid_file_write(ph_daemon *d, ph_err *err)
{
    char line[24];
    int n = snprintf(line, sizeof line, "%d\n", (int)getpid());
    if (pwrite(d->pid_fd, line, (size_t)n, 0) != n || fsync(d->pid_fd) != 0)
        return ph_err_set(err, PH_EIO, "pid_file: cannot write %s: %s", d->pid_path,
                          strerror(errno));
    return PH_OK;
}

/* Removed before the lock goes, so a file that exists always has an owner or
 * is a leftover of a daemon that did not stop cleanly. */
static void pid_file_remove(ph_daemon *d)
{
    if (d->pid_fd >= 0) {
        unlink(d->pid_path);
        close(d->pid_fd);
    }
    d->pid_fd = -1;
    free(d->pid_path);
    d->pid_path = NULL;
}

static const ph_config *fulfil_cfg_acquire(void *ctx, void **ref)
{
    ph_cfg_ref *r = ph_cfg_acquire(ctx);
    *ref = r;
    return r->cfg;
}

static void fulfil_cfg_release(void *ref)
{
    ph_cfg_release(ref);
}

/* The scheduler's hooks into the store (below, with the expiry job). */
static int job_load(void *arg, const char *id, ph_sched_stored *out);
static void job_ran(void *arg, const char *id, int64_t started_at, int64_t ended_at, int ok,
                    const char *outcome, int manual, int64_t next_due, uint32_t runs);
/* A webhook body's order: the view its client sees, without codes (views.c:
 * the account masked), as text. Handed to notify, which includes nothing of
 * http/. A stock order's text is written without a tree (view_text.c:
 * {"order": VIEW}, whose VIEW is this view when o holds no codes); any other
 * order's tree is dumped. */
static int webhook_order_view(void *arg, const ph_order *o, const ph_config *cfg,
                              void (*put)(void *sink, const char *p, size_t n), void *sink)
{
    (void)arg;
    assert(!o->codes);
    size_t len;
    char *t = ph_view_stock_order_text(o, cfg, NULL, &len);
    if (t) {
        assert(len > 10 && !memcmp(t, "{\"order\":", 9) && t[len - 1] == '}');
        put(sink, t + 9, len - 10);
        free(t);
        return 0;
    }
    json_t *v = ph_view_order(o, cfg, NULL, 0, 0);
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!s)
        return -1;
    put(sink, s, strlen(s));
    ph_json_free(s);
    return 0;
}

static int start_notify(ph_daemon *d, ph_err *err)
{
    ph_notify_opts no = {.store = d->store,
                         .sio = d->sio,
                         .log = &d->log,
                         .cfg = &d->cfg,
                         .render = webhook_order_view};
    return ph_notify_create(&no, &d->notify, err);
}

/* The supplier I/O engine and the fulfilment of supplier orders. */
static int start_supply(ph_daemon *d, ph_err *err)
{
    ph_sio_opts so = {.log = &d->log};
    int rc = ph_sio_create(&so, &d->sio, err);
    if (rc)
        return rc;
    ph_sio_metrics_set(d->sio, d->metrics);
    ph_fulfil_opts fo = {.store = d->store,
                         .sio = d->sio,
                         .suppliers = d->suppliers,
                         .keys = d->keys,
                         .log = &d->log,
                         .cfg = {&d->cfg, fulfil_cfg_acquire, fulfil_cfg_release},
                         .may_send = d->repl ? ph_repl_may_send : NULL,
                         .may_send_arg = d->repl};
    if ((rc = ph_fulfil_create(&fo, &d->fulfil, err)))
        return rc;
    ph_redeem_opts ro = {.sio = d->sio, .store = d->store, .log = &d->log};
    if ((rc = ph_redeem_create(&ro, &d->redeem, err)))
        return rc;
    d->sched_persist = (ph_sched_persist){.load = job_load, .ran = job_ran, .arg = d};
    ph_sched_opts sch = {.log = &d->log, .persist = &d->sched_persist};
    if ((rc = ph_sched_create(&sch, &d->sched, err)))
        return rc;
    ph_sync_opts syo = {.log = &d->log,
                        .store = d->store,
                        .sio = d->sio,
                        .suppliers = d->suppliers,
                        .cfg = &d->cfg};
    if ((rc = ph_sync_create(&syo, &d->sync, err)))
        return rc;
    ph_balance_opts bo = {.sched = d->sched,
                          .sio = d->sio,
                          .suppliers = d->suppliers,
                          .store = d->store,
                          .cfg = &d->cfg};
    return ph_balance_create(&bo, &d->balance, err);
}

static int grant_expire_job_apply(ph_daemon *d, const ph_config *cfg, ph_err *err);

/* The scheduler's jobs of each module, made to match cfg (start and reload). */
static int jobs_apply(ph_daemon *d, const ph_config *cfg, ph_err *err)
{
    int rc = ph_sync_jobs_apply(d->sync, d->sched, cfg, err);
    if (rc == PH_OK)
        rc = ph_balance_jobs_apply(d->balance, cfg, err);
    if (rc == PH_OK)
        rc = ph_daemon_reviews_apply(d, cfg, err);
    if (rc == PH_OK)
        rc = grant_expire_job_apply(d, cfg, err);
    return rc ? rc : ph_replenish_jobs_apply(d->sched, cfg, d->fulfil, err);
}

/* ---- the scheduler's store hooks, and the expiry job ---------------------
 * The scheduler keeps each job's last run, next due time and run count in the
 * store's `jobs` (store_jobs.c): read when a job is added, written by
 * PH_CMD_JOB_RAN when a run ends. `ran` may be called on the supplier I/O
 * thread (a sync job's done), which must never wait for a commit: the command
 * is submitted and freed by its done callback. */

static int job_load(void *arg, const char *id, ph_sched_stored *out)
{
    ph_daemon *d = arg;
    ph_job_record r;
    ph_err err = {0};
    int rc = ph_store_job_get(d->store, id, &r, &err);
    if (rc == PH_ENOTFOUND)
        return 0;
    if (rc != PH_OK) {
        ph_log(&d->log, PH_LOG_WARN, NULL, "job.load_failed",
               "job=%s detail=\"%s\" effect=\"the job starts as if it never ran\"", id, err.msg);
        return 0;
    }
    out->next_due = r.next_due;
    out->last_started_at = r.last_started_at;
    out->last_ended_at = r.last_ended_at;
    out->last_ok = r.last_ok;
    snprintf(out->last_outcome, sizeof out->last_outcome, "%s", r.last_outcome);
    out->runs = r.runs;
    out->asked_at = r.asked_at;
    return 1;
}

typedef struct job_ran_cmd {
    ph_cmd cmd;
    const ph_logger *log;
    char id[PH_JOB_ID_MAX];
    char outcome[PH_JOB_OUTCOME_MAX + 1];
} job_ran_cmd;

/* The writer thread, after the commit: the command is ours to free. */
static void job_ran_done(ph_cmd *c)
{
    job_ran_cmd *j = c->arg;
    if (c->rc != PH_OK)
        ph_log(j->log, PH_LOG_ERROR, NULL, "job.record_failed",
               "job=%s detail=\"%s\" effect=\"a restart runs it by its previous record\"", j->id,
               c->err.msg);
    ph_cmd_clear(c);
    free(j);
}

static void job_ran(void *arg, const char *id, int64_t started_at, int64_t ended_at, int ok,
                    const char *outcome, int manual, int64_t next_due, uint32_t runs)
{
    ph_daemon *d = arg;
    /* a standby's store is the leader's (replication): its runs of the jobs
     * every node runs (snapshots.take, risk.sweep) are not recorded there */
    if (d->repl && ph_repl_role(d->repl) != PH_REPL_LEADER)
        return;
    job_ran_cmd *j = calloc(1, sizeof *j);
    if (!j) {
        ph_log(&d->log, PH_LOG_ERROR, NULL, "job.record_failed",
               "job=%s detail=\"out of memory\" effect=\"a restart runs it by its previous "
               "record\"",
               id);
        return;
    }
    snprintf(j->id, sizeof j->id, "%s", id);
    snprintf(j->outcome, sizeof j->outcome, "%s", outcome ? outcome : "");
    j->log = &d->log;
    j->cmd.type = PH_CMD_JOB_RAN;
    j->cmd.now = ended_at;
    j->cmd.in.job.id = j->id;
    j->cmd.in.job.started_at = started_at;
    j->cmd.in.job.ended_at = ended_at;
    j->cmd.in.job.ok = ok;
    j->cmd.in.job.outcome = j->outcome;
    j->cmd.in.job.manual = manual;
    j->cmd.in.job.runs = runs;
    j->cmd.in.job.next_due = next_due;
    j->cmd.done = job_ran_done;
    j->cmd.arg = j;
    if (ph_store_submit(d->store, &j->cmd) != PH_OK) /* closing: done will not run */
        free(j);
}

/* codes.expire: retires every code due at the run's time, in bounded steps
 * (each its own commit and event) with that one `now`, until none is left or
 * the scheduler stops. It waits for each commit: it runs on the scheduler's
 * thread, never on the I/O thread. */
static void expire_job(void *arg, ph_sched_run *run)
{
    ph_daemon *d = arg;
    int64_t now = ph_sched_run_at(run);
    uint64_t total = 0;
    int ok = 1, more = ph_store_expiry_due(d->store, now);
    char outcome[PH_JOB_OUTCOME_MAX + 1] = "";
    while (more && !ph_sched_stopping(run)) {
        ph_cmd cmd = {.type = PH_CMD_EXPIRE, .now = now};
        cmd.in.expire.limit = PH_EXPIRE_LIMIT;
        int rc = ph_store_exec(d->store, &cmd);
        if (rc != PH_OK) {
            ph_log(&d->log, PH_LOG_ERROR, NULL, "codes.expiry_failed",
                   "detail=\"%s\" effect=\"retried at the next run\"", cmd.err.msg);
            snprintf(outcome, sizeof outcome, "failed: %.140s", cmd.err.msg);
            ok = 0;
        }
        total += cmd.expired_codes;
        more = rc == PH_OK && cmd.more;
        ph_cmd_clear(&cmd);
    }
    if (total)
        ph_log(&d->log, PH_LOG_INFO, NULL, "codes.expired", "codes=%llu",
               (unsigned long long)total);
    if (ok)
        snprintf(outcome, sizeof outcome, "%llu codes expired%s", (unsigned long long)total,
                 more ? "; more left for the next run" : "");
    if (ok && !total && !more)
        ph_sched_done_idle(run, outcome); /* nothing was due: no commit for the record */
    else
        ph_sched_done(run, ok, outcome);
}

#define PH_EXPIRE_JOB "codes.expire"

/* Adds the expiry job, or gives it the period of cfg (a reload). */
static int expire_job_apply(ph_daemon *d, const ph_config *cfg, ph_err *err)
{
    ph_sched_job_def def = {.id = PH_EXPIRE_JOB,
                            .every_ms = (int64_t)cfg->expiry_every_s * 1000,
                            .fn = expire_job,
                            .arg = d};
    return ph_sched_add(d->sched, &def, err);
}

/* grants.expire (issue 16): expires every grant due at the run's time, in
 * bounded steps with that one `now` (store.h, PH_CMD_GRANT), as codes.expire
 * does; idle (no commit) when none is due. */
static void grant_expire_job(void *arg, ph_sched_run *run)
{
    ph_daemon *d = arg;
    int64_t now = ph_sched_run_at(run), due = ph_store_grant_next_due(d->store);
    uint64_t total = 0;
    int ok = 1, more = due && due <= now;
    char outcome[PH_JOB_OUTCOME_MAX + 1] = "";
    while (more && !ph_sched_stopping(run)) {
        ph_cmd cmd = {.type = PH_CMD_GRANT, .now = now};
        cmd.in.grant.op = PH_GRANT_EXPIRE;
        cmd.in.grant.limit = PH_EXPIRE_LIMIT;
        int rc = ph_store_exec(d->store, &cmd);
        if (rc != PH_OK) {
            ph_log(&d->log, PH_LOG_ERROR, NULL, "grants.expiry_failed",
                   "detail=\"%s\" effect=\"retried at the next run\"", cmd.err.msg);
            snprintf(outcome, sizeof outcome, "failed: %.140s", cmd.err.msg);
            ok = 0;
        }
        total += cmd.expired_codes; /* grants, for this op */
        more = rc == PH_OK && cmd.more;
        ph_cmd_clear(&cmd);
    }
    if (total)
        ph_log(&d->log, PH_LOG_INFO, NULL, "grants.expired", "grants=%llu",
               (unsigned long long)total);
    if (ok)
        snprintf(outcome, sizeof outcome, "%llu grants expired%s", (unsigned long long)total,
                 more ? "; more left for the next run" : "");
    if (ok && !total && !more)
        ph_sched_done_idle(run, outcome);
    else
        ph_sched_done(run, ok, outcome);
}

#define PH_GRANT_EXPIRE_JOB "grants.expire"

static int grant_expire_job_apply(ph_daemon *d, const ph_config *cfg, ph_err *err)
{
    ph_sched_job_def def = {.id = PH_GRANT_EXPIRE_JOB,
                            .every_ms = (int64_t)cfg->grant_expire_every_s * 1000,
                            .fn = grant_expire_job,
                            .arg = d};
    return ph_sched_add(d->sched, &def, err);
}

/* risk.sweep: drops the counters, blocks and list entries whose windows
 * ended (checks never depend on it: it keeps memory to what is in force). */
static void risk_sweep_job(void *arg, ph_sched_run *run)
{
    ph_daemon *d = arg;
    ph_risk_sweep(d->risk, ph_sched_run_at(run));
    ph_risk_stats st;
    ph_risk_stats_get(d->risk, &st);
    char outcome[PH_JOB_OUTCOME_MAX + 1];
    snprintf(outcome, sizeof outcome, "%zu rules, %zu list entries, %zu subject windows held",
             st.rules, st.entries, st.counters);
    ph_sched_done_idle(run, outcome); /* memory only: nothing for the store to keep */
}

#define PH_RISK_SWEEP_JOB "risk.sweep"
#define PH_RISK_SWEEP_MS  60000

/* The risk engine with the rules and lists the store holds, in force before
 * the listener takes an order; and its sweep job. */
static int start_risk(ph_daemon *d, ph_err *err)
{
    int rc = ph_risk_new(d->metrics, &d->risk, err);
    if (rc)
        return rc;
    ph_risk_rule *rules;
    ph_risk_entry *entries;
    size_t nr, ne;
    uint64_t gen;
    if ((rc = ph_store_risk_load(d->store, &rules, &nr, &entries, &ne, &gen, err)))
        return rc;
    rc = ph_risk_load(d->risk, gen, rules, nr, entries, ne, err);
    free(rules);
    free(entries);
    if (rc < 0)
        return rc;
    ph_log(&d->log, PH_LOG_INFO, NULL, "risk.loaded", "rules=%zu list_entries=%zu", nr, ne);
    ph_sched_job_def def = {
        .id = PH_RISK_SWEEP_JOB, .every_ms = PH_RISK_SWEEP_MS, .fn = risk_sweep_job, .arg = d};
    return ph_sched_add(d->sched, &def, err);
}

/* A supplier's last reference went on another thread: the main thread
 * (sigwait in main.c) stops it. Any thread, no lock held. */
static void wake_main(void *arg)
{
    ph_daemon *d = arg;
    pthread_kill(d->main_thread, PH_SIGNAL_WAKE);
}

/* 1 when this node may write: no replication, or it holds the lease. */
static int leads(ph_daemon *d)
{
    return !d->repl || ph_repl_role(d->repl) == PH_REPL_LEADER;
}

/* Replication: connected, the stream and the lease bucket there, before the
 * store opens (a new store takes the stream's uid). */
static int start_repl(ph_daemon *d, const ph_config *cfg, ph_store_opts *so, ph_err *err)
{
    if (!cfg->repl_enabled)
        return PH_OK;
    ph_repl_opts ro = {
        .cfg = cfg, .log = &d->log, .on_change = wake_main, .arg = d, .snaps = d->snaps};
    int rc = ph_repl_create(&ro, &d->repl, err);
    /* without NATS, a node whose store exists starts as a standby that serves
     * reads; a new store cannot (it would take a uid the stream's is not) */
    if (rc == PH_OK && !ph_store_exists(cfg->data_dir))
        rc = ph_repl_needs_nats(d->repl, err);
    if (rc == PH_OK) {
        so->repl_hook = ph_repl_hook;
        so->repl_arg = d->repl;
        so->uid = ph_repl_uid(d->repl);
    }
    return rc;
}

static int jobs_apply(ph_daemon *d, const ph_config *cfg, ph_err *err);
static int expire_job_apply(ph_daemon *d, const ph_config *cfg, ph_err *err);

/* What only the leader does, at its start or when a standby takes over: the
 * catalog of its configuration written, the supplier attempts in flight taken
 * up by query (never sent again: SENDING becomes UNKNOWN, fulfil.h), the
 * jobs that write, the re-sealer. */
static int lead_start(ph_daemon *d, const ph_config *cfg, ph_err *err)
{
    int rc = ph_daemon_sync_products(d, cfg, NULL, err);
    if (rc == PH_OK)
        rc = expire_job_apply(d, cfg, err);
    if (rc == PH_OK)
        rc = ph_fulfil_resume(d->fulfil, err);
    if (rc == PH_OK)
        rc = jobs_apply(d, cfg, err);
    if (rc == PH_OK)
        rc = ph_reseal_start(d, err);
    if (rc == PH_OK)
        d->led = 1;
    if (rc == PH_OK && d->repl)
        d->led_epoch = ph_repl_epoch(d->repl);
    return rc;
}

/* A standby the replicator promoted starts the leader's work; a leader that
 * lost the lease is refused every write by the store's hook from then on. */
static void repl_poll(ph_daemon *d)
{
    if (!d->repl || !d->fulfil || !atomic_load(&d->ready))
        return;
    int role = ph_repl_role(d->repl);
    if (role == PH_REPL_LEADER && !d->led) {
        ph_cfg_ref *ref = ph_cfg_acquire(&d->cfg);
        ph_err err = {0};
        int rc = ph_daemon_risk_take_over(d, &err);
        if (rc == PH_OK)
            rc = lead_start(d, ref->cfg, &err);
        ph_cfg_release(ref);
        if (rc != PH_OK)
            ph_log(&d->log, PH_LOG_ERROR, NULL, "repl.lead_failed",
                   "detail=\"%s\" effect=\"this leader's jobs or resumed attempts may be missing; "
                   "restart it\"",
                   err.msg);
        else
            ph_log(&d->log, PH_LOG_INFO, NULL, "repl.leading", "detail=\"standby promoted\"");
    } else if (role == PH_REPL_LEADER && d->led && ph_repl_epoch(d->repl) != d->led_epoch) {
        /* led anew after catching up: supplier orders the stream brought (a
         * batch whose acknowledgement never came) are taken up by query */
        d->led_epoch = ph_repl_epoch(d->repl);
        ph_err err = {0};
        if (ph_fulfil_resume(d->fulfil, &err) != PH_OK)
            ph_log(&d->log, PH_LOG_ERROR, NULL, "repl.resume_failed",
                   "detail=\"%s\" effect=\"attempts applied from the stream wait for a restart\"",
                   err.msg);
    }
}

int ph_daemon_deposed(ph_daemon *d)
{
    return d->repl && d->led && ph_repl_role(d->repl) == PH_REPL_STANDBY;
}

void ph_daemon_reap(ph_daemon *d)
{
    if (d->suppliers)
        ph_suppliers_reap(d->suppliers);
    repl_poll(d);
}

/* The key file. master_key_create makes one only for a store that does not
 * exist yet: a store with data was sealed with keys a new file cannot hold, so
 * a missing file there is a mistake to report (restore it), not a key to make —
 * making it would leave a useless key file behind a refused start. */
static int load_keys(ph_daemon *d, const ph_config *cfg, ph_err *err)
{
    char mdb[4096];
    int create = cfg->master_key_create;
    snprintf(mdb, sizeof mdb, "%s/data.mdb", cfg->data_dir);
    if (create && access(cfg->master_key_file, F_OK) != 0 && access(mdb, F_OK) == 0)
        return ph_err_set(err, PH_ECRYPTO,
                          "master_key_file: %s does not exist, and the store at %s holds data "
                          "sealed with the keys of another file: restore that key file "
                          "(master_key_create makes a key only for a new store)",
                          cfg->master_key_file, cfg->data_dir);
    return ph_keyring_load(cfg->master_key_file, create, &d->keys, err);
}

/* Descriptors kept aside for everything but connections: the store, the
 * plugins, logs, the pid and port files, epoll and event fds. */
#define PH_FD_RESERVE 1024

/* The connection budget as configured, made to fit RLIMIT_NOFILE: the soft
 * limit is raised as far as the hard one allows (the supplier I/O engine may
 * have raised it already), and then HTTP connections get at most half of what
 * is left beyond PH_FD_RESERVE — the other half is the supplier I/O engine's
 * (its connection cache grows up to half the descriptors). Logged, with what
 * was configured. */
static ph_http_opts http_opts(ph_daemon *d, const ph_config *cfg)
{
    ph_http_opts o = {.address = cfg->listen_address,
                      .port = cfg->port,
                      .threads = cfg->http_threads,
                      .max_connections = cfg->http_max_connections,
                      .max_per_address = cfg->http_max_per_address,
                      .reserved_connections = cfg->http_reserved_connections,
                      .header_timeout_s = cfg->http_header_timeout_s,
                      .request_timeout_s = cfg->http_request_timeout_s,
                      .tls_cert = cfg->tls_cert,
                      .tls_key = cfg->tls_key,
                      .tls_client_ca = cfg->tls_client_ca};
    struct rlimit rl;
    rlim_t need = (rlim_t)o.max_connections * 2 + PH_FD_RESERVE, nofile = need;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        if (rl.rlim_cur < need) {
            rlim_t to = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need ? rl.rlim_max : need;
            struct rlimit nr = {.rlim_cur = to, .rlim_max = rl.rlim_max};
            if (setrlimit(RLIMIT_NOFILE, &nr) == 0)
                rl.rlim_cur = to;
        }
        nofile = rl.rlim_cur;
        if (nofile < need) {
            rlim_t fit = nofile > 4 * PH_FD_RESERVE ? (nofile - PH_FD_RESERVE) / 2 : nofile / 4;
            o.max_connections = fit < 16 ? 16 : (unsigned)fit;
            if (o.reserved_connections >= o.max_connections / 2)
                o.reserved_connections = o.max_connections / 8;
        }
    }
    ph_log(&d->log, o.max_connections < cfg->http_max_connections ? PH_LOG_WARN : PH_LOG_INFO, NULL,
           "http.limits",
           "nofile=%llu max_connections=%u configured=%u per_address=%u reserved=%u "
           "header_timeout_s=%u request_timeout_s=%u",
           (unsigned long long)nofile, o.max_connections, cfg->http_max_connections,
           o.max_per_address, o.reserved_connections, o.header_timeout_s, o.request_timeout_s);
    return o;
}

/* The listener, handed exactly the services its handlers may call. */
static int start_http(ph_daemon *d, const ph_config *cfg, ph_err *err)
{
    ph_http_env env = {.log = &d->log,
                       .cfg = &d->cfg,
                       .store = d->store,
                       .keys = d->keys,
                       .fulfil = d->fulfil,
                       .suppliers = d->suppliers,
                       .sio = d->sio,
                       .ready = &d->ready,
                       .metrics = d->metrics,
                       .sched = d->sched,
                       .redeem = d->redeem,
                       .notify = d->notify,
                       .risk = d->risk,
                       .repl = d->repl,
                       .snaps = d->snaps};
    ph_http_opts o = http_opts(d, cfg);
    return ph_http_start(&env, &o, &d->http, &d->port, err);
}

/* Where suppliers send callbacks: public_url, else our own listener. */
static void set_callback_base(ph_daemon *d, const ph_config *cfg)
{
    char base[256];
    if (cfg->public_url)
        snprintf(base, sizeof base, "%s", cfg->public_url);
    else
        snprintf(base, sizeof base, "%s://%s:%u", cfg->tls_cert ? "https" : "http",
                 cfg->listen_address, d->port);
    size_t n = strlen(base);
    if (n && base[n - 1] == '/')
        base[n - 1] = 0;
    ph_fulfil_set_callback_base(d->fulfil, base);
}

/* A store of the previous schema was migrated at open (store.h): say so once. */
static int log_migration(ph_daemon *d, const ph_config *cfg)
{
    uint32_t from = ph_store_migrated_from(d->store);
    if (from)
        ph_log(&d->log, PH_LOG_INFO, NULL, "store.migrated",
               "data_dir=%s from_schema=%u detail=\"code index rebuilt from normalized codes, key "
               "checks recorded\"",
               cfg->data_dir, (unsigned)from);
    return PH_OK;
}

int ph_daemon_start(ph_daemon *d, ph_config *cfg, const char *config_path, ph_err *err)
{
    d->main_thread = pthread_self();
    d->log.fd = 2;
    d->pid_fd = -1;
    if (config_path && !(d->config_path = strdup(config_path))) {
        ph_config_free(cfg);
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    int level = cfg->log_level;
    if (ph_cfg_current_init(&d->cfg, cfg, err) != PH_OK) {
        free(d->config_path);
        d->config_path = NULL;
        return PH_ENOMEM;
    }
    ph_log_set_level(&d->log, level);
    /* before any thread exists: format and fd are read by all of them */
    d->log.format = cfg->log_format;
    /* the registry first: the store, the I/O engine and the listener observe into it */
    if (!(d->metrics = ph_metrics_create())) {
        ph_cfg_current_destroy(&d->cfg);
        free(d->config_path);
        d->config_path = NULL;
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    ph_store_opts so = {.dir = cfg->data_dir,
                        .map_size = cfg->map_size,
                        .journal_file = d->journal_file,
                        .metrics = d->metrics,
                        .report_utc_offset_min = cfg->report_utc_offset_min,
                        .report_offset_given = 1};
    int rc;
    /* The store checks the keys against the data (store.h, "Keys"): a wrong key
     * file stops the start here, naming the key id and the file. */
    if ((cfg->pid_file && (rc = pid_file_lock(d, cfg->pid_file, err))) ||
        (cfg->log_file && (rc = ph_log_open_file(&d->log, cfg->log_file, err))) ||
        (rc = ph_notify_check(cfg, err)) || (rc = load_keys(d, cfg, err)) ||
        (rc = ph_daemon_snaps_open(d, cfg, err)) || (rc = start_repl(d, cfg, &so, err)) ||
        (so.keys = d->keys, rc = ph_store_open(&so, &d->store, err)) ||
        (rc = log_migration(d, cfg)) || (d->repl && (rc = ph_repl_start(d->repl, d->store, err))) ||
        (rc = ph_suppliers_create(&d->log, &d->suppliers, err)) ||
        (rc = ph_suppliers_apply(d->suppliers, cfg, err)) || (rc = start_supply(d, err)) ||
        (rc = ph_daemon_snaps_job_apply(d, cfg, err)) || (rc = start_risk(d, err)) ||
        (rc = ph_daemon_risk_rebuild(d, d->risk, ph_now_ms(), err)) ||
        (rc = start_notify(d, err)) || (rc = start_http(d, cfg, err)))
        goto fail;
    ph_suppliers_set_wake(d->suppliers, wake_main, d); /* earlier releases: the next wake */
    set_callback_base(d, cfg);
    if ((leads(d) && (rc = lead_start(d, cfg, err))) ||
        (cfg->port_file && (rc = write_port_file(cfg->port_file, d->port, err))) ||
        (d->pid_fd >= 0 && (rc = pid_file_write(d, err))))
        goto fail;
    atomic_store(&d->ready, 1);
    repl_poll(d); /* promoted while starting as a standby */
    ph_log(&d->log, PH_LOG_INFO, NULL, "daemon.started",
           "pid=%d listen=%s:%u data_dir=%s config=%s products=%zu suppliers=%zu", (int)getpid(),
           cfg->listen_address, d->port, cfg->data_dir, cfg->source, cfg->nproducts,
           cfg->nsuppliers);
    return PH_OK;
fail:
    ph_daemon_stop(d, 0);
    return rc;
}

/* Settings the running daemon cannot change; a reload keeps the old value. */
static void warn_restart_needed(ph_daemon *d, const ph_config *old, const ph_config *neu)
{
    const char *what = NULL;
    if (strcmp(old->listen_address, neu->listen_address) || old->port != neu->port)
        what = "listen";
    else if (strcmp(old->tls_cert ? old->tls_cert : "", neu->tls_cert ? neu->tls_cert : "") ||
             strcmp(old->tls_key ? old->tls_key : "", neu->tls_key ? neu->tls_key : "") ||
             strcmp(old->tls_client_ca ? old->tls_client_ca : "",
                    neu->tls_client_ca ? neu->tls_client_ca : ""))
        what = "listen.tls"; /* the files are read at start */
    else if (strcmp(old->data_dir, neu->data_dir))
        what = "data_dir";
    else if (strcmp(old->master_key_file, neu->master_key_file))
        what = "master_key_file";
    else if (strcmp(old->pid_file ? old->pid_file : "", neu->pid_file ? neu->pid_file : ""))
        what = "pid_file";
    else if (old->log_format != neu->log_format)
        what = "log.format";
    else if (strcmp(old->log_file ? old->log_file : "", neu->log_file ? neu->log_file : ""))
        what = "log.file";
    else if (strcmp(old->snap_dir ? old->snap_dir : "", neu->snap_dir ? neu->snap_dir : ""))
        what = "snapshots.dir"; /* the directory is opened at start */
    else if (old->repl_enabled != neu->repl_enabled ||
             (old->repl_enabled && (strcmp(old->repl_node_id, neu->repl_node_id) ||
                                    strcmp(old->repl_advertise_url, neu->repl_advertise_url) ||
                                    old->nrepl_urls != neu->nrepl_urls ||
                                    old->repl_lease_ttl_ms != neu->repl_lease_ttl_ms)))
        what = "replication"; /* the replicator is made at start */
    if (what)
        ph_log(&d->log, PH_LOG_WARN, NULL, "config.restart_needed",
               "setting=%s detail=\"changed in the file; the running value stays until restart\"",
               what);
}

int ph_daemon_reload(ph_daemon *d, ph_err *err)
{
    if (!d->config_path)
        return ph_err_set(err, PH_EINVAL, "running on the embedded default: no file to reload");
    ph_config *neu;
    int rc = ph_config_load_file(d->config_path, &neu, err);
    if (rc)
        return rc;
    if ((rc = ph_notify_check(neu, err)) != PH_OK) {
        ph_config_free(neu);
        return rc;
    }
    ph_cfg_ref *old = ph_cfg_acquire(&d->cfg);
    warn_restart_needed(d, old->cfg, neu);
    if ((rc = ph_suppliers_apply(d->suppliers, neu, err)) != PH_OK)
        goto fail;
    /* the audit record rides on the catalog's command: one commit holds the
     * catalog change and the record of the whole reload (docs/store.md, "Audit") */
    json_t *changes = ph_config_changes(old->cfg, neu);
    char *what = changes ? json_dumps(changes, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(changes);
    ph_audit audit = {.action = "config.reload", .via = "signal", .what = what ? what : ""};
    /* a standby's catalog is the leader's, from the stream */
    rc = leads(d) ? ph_daemon_sync_products(d, neu, &audit, err) : PH_OK;
    ph_json_free(what);
    if (rc != PH_OK) {
        ph_err ignored;
        ph_suppliers_apply(d->suppliers, old->cfg, &ignored); /* back to the running set */
        goto fail;
    }
    ph_cfg_release(old);
    if (neu->public_url)
        set_callback_base(d, neu);
    ph_err jerr = {0};
    if (d->led && expire_job_apply(d, neu, &jerr) != PH_OK)
        ph_log(&d->log, PH_LOG_ERROR, NULL, "config.job_failed",
               "job=" PH_EXPIRE_JOB " detail=\"%s\" effect=\"the job keeps its period\"", jerr.msg);
    if ((rc = cfg_install(d, neu, err)) != PH_OK)
        return rc;
    ph_cfg_ref *now = ph_cfg_acquire(&d->cfg);
    rc = d->led ? jobs_apply(d, now->cfg, err) : PH_OK; /* a standby's start at promotion */
    if (rc == PH_OK) /* every node's, standbys too (snapshots.c) */
        rc = ph_daemon_snaps_job_apply(d, now->cfg, err);
    ph_cfg_release(now);
    if (rc != PH_OK)
        return rc;
    ph_notify_kick(d->notify); /* endpoints added, removed, changed: at once */
    ph_log(&d->log, PH_LOG_INFO, NULL, "config.reloaded", "config=%s", d->config_path);
    return PH_OK;
fail:
    ph_cfg_release(old);
    ph_config_free(neu);
    return rc;
}

void ph_daemon_stop(ph_daemon *d, int grace_ms)
{
    atomic_store(&d->ready, 0);
    if (d->http) {
        ph_http_quiesce(d->http);
        ph_fulfil_stop(d->fulfil); /* clients waiting for an order get its state now */
        int64_t deadline = ph_now_ms() + grace_ms;
        while (ph_http_inflight(d->http) > 0 && ph_now_ms() < deadline)
            usleep(10 * 1000); /* a bounded wait for requests to finish, not a test sleep */
        ph_log(&d->log, PH_LOG_INFO, NULL, "daemon.stopping", "unfinished_requests=%d",
               ph_http_inflight(d->http));
        ph_http_stop(d->http);
        d->http = NULL;
    }
    ph_fulfil_stop(d->fulfil);
    ph_sched_destroy(d->sched); /* waits for running jobs: before the engine and the writer */
    d->sched = NULL;
    ph_daemon_snaps_join(d);        /* its copy ended (ph_sched_done): the thread's exit */
    ph_sync_destroy(d->sync, NULL); /* its jobs went with the scheduler */
    d->sync = NULL;
    ph_balance_destroy(d->balance); /* its jobs' arguments: no job runs any more */
    d->balance = NULL;
    ph_risk_free(d->risk); /* the listener and the jobs that check orders are gone */
    d->risk = NULL;
    ph_notify_stop(d->notify); /* before the engine: no new exchange; before the writer */
    ph_reseal_stop(d);
    /* Exchanges on the wire end ambiguous and are recorded unknown (queried
     * after the restart); then the writer finishes every queued command. */
    ph_sio_destroy(d->sio);
    d->sio = NULL;
    ph_notify_destroy(d->notify); /* the engine's last answers reached it */
    d->notify = NULL;
    ph_fulfil_flush(d->fulfil); /* those ends become store commands before the store closes */
    ph_repl_stop(d->repl); /* no more applying or renewing; the writer's last batches still go */
    ph_store_close(d->store);
    d->store = NULL;
    ph_repl_free(d->repl);
    d->repl = NULL;
    ph_snaps_free(d->snaps); /* the job, the listener and the replicator are gone */
    d->snaps = NULL;
    d->led = 0;
    ph_fulfil_destroy(d->fulfil);
    d->fulfil = NULL;
    ph_redeem_destroy(d->redeem); /* its exchanges and commands ended with the engine and store */
    d->redeem = NULL;
    ph_suppliers_destroy(d->suppliers);
    d->suppliers = NULL;
    ph_keyring_free(d->keys);
    d->keys = NULL;
    ph_metrics_free(d->metrics); /* after everything that observes into it stopped */
    d->metrics = NULL;
    ph_cfg_current_destroy(&d->cfg);
    free(d->config_path);
    d->config_path = NULL;
    pid_file_remove(d);
    ph_log_close(&d->log); /* every thread that logs has stopped */
}

void ph_daemon_reopen_log(ph_daemon *d)
{
    ph_err err = {0};
    if (ph_log_reopen(&d->log, &err) != PH_OK)
        ph_log(&d->log, PH_LOG_ERROR, NULL, "log.reopen_failed",
               "detail=\"%s\" effect=\"lines keep going to the file open before\"", err.msg);
    else if (d->log.path)
        ph_log(&d->log, PH_LOG_INFO, NULL, "log.reopened", "file=%s", d->log.path);
}
