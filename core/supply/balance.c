/*
 * balance.c — the balance jobs (balance.h): one scheduler job per supplier
 * with a balance rule; a run is one PERKHUB_OP_BALANCE exchange and one
 * PH_CMD_BALANCE, chained by callbacks so no thread waits.
 */
#include "supply/balance.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "sched/sched.h"
#include "store/store.h"
#include "supply/supplier_io.h"
#include "supply/suppliers.h"

#define JOB_PREFIX "balance/"

/* A job's argument: which supplier. */
typedef struct entry {
    ph_balance *b;
    char supplier[PH_SKU_MAX + 1];
    int live; /* in cfg at the last apply */
} entry;

struct ph_balance {
    ph_balance_opts o;
    entry **jobs; /* owned; main thread only */
    size_t n;
};

/* One run in flight: the exchange, then the command. */
typedef struct bal_run {
    ph_sio_job job;
    ph_cmd cmd;
    ph_sched_run *run;
    ph_store *store;
    char supplier[PH_SKU_MAX + 1];
    int64_t below;
} bal_run;

static void run_end(bal_run *br, int ok, const char *outcome)
{
    ph_sched_done(br->run, ok, outcome);
    ph_cmd_clear(&br->cmd);
    free(br);
}

/* Writer thread, after the commit: the run is over. */
static void cmd_done(ph_cmd *cmd)
{
    bal_run *br = cmd->arg;
    char outcome[160], money[32];
    if (cmd->rc == PH_OK)
        snprintf(outcome, sizeof outcome, "balance %s%s",
                 ph_money_format(br->cmd.in.balance.balance, money, sizeof money),
                 cmd->alert_id ? ", alert fired" : "");
    else
        snprintf(outcome, sizeof outcome, "store: %.140s", cmd->err.msg);
    run_end(br, cmd->rc == PH_OK, outcome);
}

/* I/O thread: the supplier answered (or not). Never waits for the writer. */
static void io_done(ph_sio_job *job)
{
    bal_run *br = job->arg;
    int ok = job->outcome == PERKHUB_OK && job->parsed && job->res.balance >= 0;
    int64_t balance = job->res.balance;
    char outcome[160];
    if (!ok)
        snprintf(outcome, sizeof outcome, "supplier %.64s: %.80s", br->supplier,
                 job->detail[0] ? job->detail : "no balance in the answer");
    ph_sio_job_clear(job);
    ph_supplier_release(job->sup);
    job->sup = NULL;
    if (!ok) {
        run_end(br, 0, outcome);
        return;
    }
    br->cmd.type = PH_CMD_BALANCE;
    br->cmd.now = ph_sched_run_at(br->run);
    br->cmd.in.balance.supplier = br->supplier;
    br->cmd.in.balance.balance = balance;
    br->cmd.in.balance.below = br->below;
    br->cmd.done = cmd_done;
    br->cmd.arg = br;
    if (ph_store_submit(br->store, &br->cmd) != PH_OK)
        run_end(br, 0, "store: shutting down");
}

/* Scheduler thread: start one reading. */
static void job_run(void *arg, ph_sched_run *run)
{
    entry *e = arg;
    ph_balance *b = e->b;
    ph_cfg_ref *ref = ph_cfg_acquire(b->o.cfg);
    const ph_supplier_conf *sc = ph_config_supplier(ref->cfg, e->supplier);
    ph_sio_limits limits = sc ? ph_sio_limits_of(sc) : (ph_sio_limits){0};
    int64_t below = sc && sc->balance_below_set ? sc->balance_below : -1;
    ph_cfg_release(ref);
    ph_supplier *sup;
    char outcome[160];
    if (!sc || ph_suppliers_acquire(b->o.suppliers, e->supplier, &sup) != PH_OK) {
        snprintf(outcome, sizeof outcome, "supplier %s is not running", e->supplier);
        ph_sched_done(run, 0, outcome);
        return;
    }
    if (!(ph_supplier_plugin(sup)->capabilities & PERKHUB_CAP_BALANCE)) {
        ph_supplier_release(sup);
        snprintf(outcome, sizeof outcome, "supplier %s: its plugin cannot read a balance",
                 e->supplier);
        ph_sched_done(run, 0, outcome);
        return;
    }
    bal_run *br = calloc(1, sizeof *br);
    if (!br) {
        ph_supplier_release(sup);
        ph_sched_done(run, 0, "out of memory");
        return;
    }
    br->run = run;
    br->below = below;
    snprintf(br->supplier, sizeof br->supplier, "%s", e->supplier);
    br->store = b->o.store;
    br->job.sup = sup;
    br->job.op.kind = PERKHUB_OP_BALANCE;
    br->job.limits = limits;
    br->job.done = io_done;
    br->job.arg = br;
    if (ph_sio_submit(b->o.sio, &br->job) != PH_OK) {
        ph_supplier_release(sup);
        run_end(br, 0, "supplier I/O: shutting down");
    }
}

int ph_balance_create(const ph_balance_opts *opts, ph_balance **out, ph_err *err)
{
    ph_balance *b = calloc(1, sizeof *b);
    if (!b)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    b->o = *opts;
    *out = b;
    return PH_OK;
}

static void job_id(const entry *e, char *buf, size_t size)
{
    snprintf(buf, size, JOB_PREFIX "%s", e->supplier);
}

int ph_balance_jobs_apply(ph_balance *b, const ph_config *cfg, ph_err *err)
{
    for (size_t i = 0; i < b->n; i++)
        b->jobs[i]->live = 0;
    int rc = PH_OK;
    for (size_t i = 0; rc == PH_OK && i < cfg->nsuppliers; i++) {
        const ph_supplier_conf *sc = &cfg->suppliers[i];
        if (!sc->balance_every_s || !sc->enabled)
            continue;
        entry *e = NULL;
        for (size_t j = 0; j < b->n && !e; j++)
            if (!strcmp(b->jobs[j]->supplier, sc->id))
                e = b->jobs[j];
        if (!e) {
            entry **g = realloc(b->jobs, (b->n + 1) * sizeof *g);
            if (!g || !(e = calloc(1, sizeof *e))) {
                if (g)
                    b->jobs = g;
                return ph_err_set(err, PH_ENOMEM, "out of memory");
            }
            b->jobs = g;
            e->b = b;
            snprintf(e->supplier, sizeof e->supplier, "%s", sc->id);
            b->jobs[b->n++] = e;
        }
        e->live = 1;
        char id[PH_SCHED_ID_MAX];
        job_id(e, id, sizeof id);
        rc = ph_sched_add(b->o.sched,
                          &(ph_sched_job_def){id, (int64_t)sc->balance_every_s * 1000, job_run, e},
                          err);
    }
    /* suppliers that lost their rule: their job goes, then its argument */
    size_t kept = 0;
    for (size_t i = 0; i < b->n; i++) {
        entry *e = b->jobs[i];
        if (e->live || rc != PH_OK) {
            b->jobs[kept++] = e;
            continue;
        }
        char id[PH_SCHED_ID_MAX];
        job_id(e, id, sizeof id);
        ph_sched_remove(b->o.sched, id); /* waits for a run in progress */
        free(e);
    }
    b->n = kept;
    return rc;
}

void ph_balance_destroy(ph_balance *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        free(b->jobs[i]);
    free(b->jobs);
    free(b);
}
