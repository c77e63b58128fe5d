/*
 * sync.c — catalog, price and stock sync jobs (sync.h).
 *
 * A run's life: job_run (scheduler thread) reads the configuration, takes a
 * reference on the supplier and submits the first exchange; each exchange's
 * done callback (I/O thread) keeps what it needs — copies of the items — and
 * submits the next page or, once the whole answer is in, ONE PH_CMD_SYNC with
 * a done callback; that callback (writer thread) ends the run with
 * ph_sched_done and frees it. Nothing blocks: the I/O thread never waits for a
 * commit.
 */
#include "supply/sync.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "sched/sched.h"
#include "supply/supplier_io.h"
#include "supply/suppliers.h"

enum { KIND_CATALOG = 0, KIND_STOCK = 1 };
static const char *const kind_names[] = {"catalog", "stock"};

/* One registered job: its id and what it syncs. Owned by the sync. */
typedef struct job_arg {
    ph_sync *sy;
    int kind;
    char supplier[PH_SKU_MAX + 1];
    char id[PH_SCHED_ID_MAX];
    struct job_arg *next;
} job_arg;

struct ph_sync {
    ph_sync_opts o;
    job_arg *jobs; /* main thread only (apply, destroy) */
};

/* One run in progress. */
typedef struct run {
    ph_sync *sy;
    ph_sched_run *sched_run;
    int kind;
    char supplier[PH_SKU_MAX + 1];
    ph_supplier *sup; /* a reference held until the run ends */
    ph_sio_limits limits;

    /* catalog: one exchange reused page after page (I/O thread) */
    ph_sio_job page;
    char *state;  /* the next page's op.state (a copy of next_state) */
    size_t pages; /* pages received */

    /* stock: one exchange per offer; the last to finish ends the run */
    ph_sio_job *checks;
    char **ids; /* the supplier product ids asked, nids of them */
    size_t nids;
    atomic_size_t left;
    atomic_int failed; /* 1 once a check failed: its message is in why */

    ph_sync_item *items;
    char **strs; /* the items' product ids, owned */
    size_t n, cap, dropped;

    char why[200]; /* the failure, for the job's outcome */
    ph_cmd cmd;
} run;

char *ph_sync_job_id(char *buf, size_t len, const char *what, const char *supplier)
{
    snprintf(buf, len, "sync.%s/%s", what, supplier);
    return buf;
}

/* ---- ending a run ------------------------------------------------------------ */

static void run_free(run *r)
{
    ph_sio_job_clear(&r->page);
    for (size_t i = 0; r->checks && i < r->nids; i++)
        ph_sio_job_clear(&r->checks[i]);
    free(r->checks);
    for (size_t i = 0; r->ids && i < r->nids; i++)
        free(r->ids[i]);
    free(r->ids);
    for (size_t i = 0; i < r->n; i++)
        free(r->strs[i]);
    free(r->strs);
    free(r->items);
    free(r->state);
    ph_cmd_clear(&r->cmd);
    if (r->sup)
        ph_supplier_release(r->sup);
    free(r);
}

/* Ends the run with ok and outcome (any thread) and frees it. */
static void run_end(run *r, int ok, const char *outcome)
{
    ph_sched_run *sr = r->sched_run;
    if (!ok)
        ph_log(r->sy->o.log, PH_LOG_WARN, NULL, "sync.failed", "supplier=%s kind=%s detail=\"%s\"",
               r->supplier, kind_names[r->kind], outcome);
    char copy[256];
    snprintf(copy, sizeof copy, "%s", outcome);
    run_free(r);
    ph_sched_done(sr, ok, copy);
}

static void run_fail(run *r, const char *fmt, const char *a, const char *b)
{
    char msg[256], aa[64], bb[160];
    snprintf(aa, sizeof aa, "%s", a);
    snprintf(bb, sizeof bb, "%s", b);
    snprintf(msg, sizeof msg, fmt, aa, bb);
    run_end(r, 0, msg);
}

/* The store's answer (writer thread). */
static void cmd_done(ph_cmd *cmd)
{
    run *r = cmd->arg;
    char out[256];
    if (cmd->rc != PH_OK) {
        snprintf(out, sizeof out, "%s: store refused the answer: %.200s", kind_names[r->kind],
                 cmd->err.msg);
        run_end(r, 0, out);
        return;
    }
    snprintf(out, sizeof out, "%s: %zu items, %u offers, %u changes%s", kind_names[r->kind], r->n,
             cmd->sync_offers, cmd->sync_changes,
             r->dropped ? " (some ids too long, skipped)" : "");
    ph_log(r->sy->o.log, PH_LOG_INFO, NULL, "sync.done",
           "supplier=%s kind=%s items=%zu offers=%u changes=%u", r->supplier, kind_names[r->kind],
           r->n, cmd->sync_offers, cmd->sync_changes);
    run_end(r, 1, out);
}

/* The whole answer is in: one command (any thread but the writer). */
static void submit_answer(run *r)
{
    r->cmd.type = PH_CMD_SYNC;
    r->cmd.now = ph_sched_run_at(r->sched_run);
    r->cmd.in.sync.supplier = r->supplier;
    r->cmd.in.sync.kind = r->kind == KIND_CATALOG ? PH_SYNC_CATALOG : PH_SYNC_STOCK;
    r->cmd.in.sync.items = r->items;
    r->cmd.in.sync.n = r->n;
    r->cmd.done = cmd_done;
    r->cmd.arg = r;
    if (ph_store_submit(r->sy->o.store, &r->cmd) != PH_OK)
        run_end(r, 0, "the store is closing");
}

/* Keeps a copy of one item. 0, or -1 out of memory. */
static int add_item(run *r, const char *id, int64_t cost, int64_t stock, int on_sale)
{
    if (!id || !id[0] || strlen(id) > PH_SKU_MAX) {
        r->dropped++; /* no offer can name it (supplier_sku is at most that long) */
        return 0;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap;
        ph_sync_item *ni = ph_grow(r->items, &cap, sizeof *ni, 256);
        if (!ni)
            return -1;
        r->items = ni;
        size_t cap2 = r->cap;
        char **ns = ph_grow(r->strs, &cap2, sizeof *ns, 256);
        if (!ns)
            return -1;
        r->strs = ns;
        r->cap = cap;
    }
    if (!(r->strs[r->n] = strdup(id)))
        return -1;
    r->items[r->n] =
        (ph_sync_item){r->strs[r->n], cost < 0 ? -1 : cost, stock < 0 ? -1 : stock, on_sale};
    r->n++;
    return 0;
}

/* Why an exchange failed, in words for the outcome. */
static const char *failure(const ph_sio_job *job)
{
    if (job->outcome == PERKHUB_OK && !job->parsed)
        return "no answer parsed";
    return job->detail[0] ? job->detail : "failed";
}

/* ---- catalog -------------------------------------------------------------------- */

static void page_done(ph_sio_job *job);

static int page_submit(run *r, int step, int64_t not_before)
{
    ph_sio_job *j = &r->page;
    memset(j, 0, sizeof *j);
    j->sup = r->sup;
    j->op.kind = PERKHUB_OP_CATALOG;
    j->op.step = step;
    j->op.state = r->state;
    j->limits = r->limits;
    j->not_before_ms = not_before;
    j->done = page_done;
    j->arg = r;
    return ph_sio_submit(r->sy->o.sio, j);
}

static void page_done(ph_sio_job *job)
{
    run *r = job->arg;
    char page[32];
    snprintf(page, sizeof page, "%zu", r->pages + 1);
    if (job->outcome != PERKHUB_OK || !job->parsed) {
        run_fail(r, "catalog: page %s: %s", page, failure(job));
        return;
    }
    const struct perkhub_result *res = &job->res;
    for (size_t i = 0; i < res->nitems; i++) {
        const struct perkhub_item *it = &res->items[i];
        if (add_item(r, it->product_id, it->price, it->stock, it->on_sale ? 1 : 0)) {
            run_fail(r, "catalog: page %s: %s", page, "out of memory");
            return;
        }
    }
    r->pages++;
    if (r->n > r->sy->o.max_items || (res->next && r->pages >= r->sy->o.max_pages)) {
        run_fail(r, "catalog: over %s items or pages: %s", page, "the plugin does not stop");
        return;
    }
    if (!res->next) {
        ph_sio_job_clear(job);
        submit_answer(r);
        return;
    }
    char *st = res->next_state ? strdup(res->next_state) : NULL;
    if (res->next_state && !st) {
        run_fail(r, "catalog: page %s: %s", page, "out of memory");
        return;
    }
    int64_t delay = res->next_delay_ms > 0 ? res->next_delay_ms : 0;
    int step = job->op.step + 1;
    ph_sio_job_clear(job);
    free(r->state);
    r->state = st;
    if (page_submit(r, step, delay ? ph_now_ms() + delay : 0) != PH_OK)
        run_fail(r, "catalog: page %s: %s", page, "the I/O engine is stopping");
}

/* ---- stock ---------------------------------------------------------------------- */

static void check_done(ph_sio_job *job)
{
    run *r = job->arg;
    if (job->outcome != PERKHUB_OK || !job->parsed) {
        int expect = 0;
        if (atomic_compare_exchange_strong(&r->failed, &expect, 1))
            snprintf(r->why, sizeof r->why, "stock: product %.64s: %.100s", job->op.product_id,
                     failure(job));
    }
    /* every check is kept until the last one ends: the last one decides */
    if (atomic_fetch_sub(&r->left, 1) != 1)
        return;
    if (atomic_load(&r->failed)) {
        run_end(r, 0, r->why);
        return;
    }
    for (size_t i = 0; i < r->nids; i++) {
        const struct perkhub_result *res = &r->checks[i].res;
        if (add_item(r, r->ids[i], res->price, res->stock, -1)) {
            run_end(r, 0, "stock: out of memory");
            return;
        }
    }
    submit_answer(r);
}

/* The supplier product ids of sup's offers, each once. */
static int offer_ids(run *r, const ph_config *cfg)
{
    for (size_t i = 0; i < cfg->nproducts; i++)
        for (size_t j = 0; j < cfg->products[i].noffers; j++) {
            const ph_offer_conf *o = &cfg->products[i].offers[j];
            if (strcmp(o->supplier, r->supplier))
                continue;
            int seen = 0;
            for (size_t k = 0; k < r->nids && !seen; k++)
                seen = !strcmp(r->ids[k], o->supplier_sku);
            if (seen)
                continue;
            char **g = realloc(r->ids, (r->nids + 1) * sizeof *g);
            if (!g)
                return -1;
            r->ids = g;
            if (!(r->ids[r->nids] = strdup(o->supplier_sku)))
                return -1;
            r->nids++;
        }
    return 0;
}

static void stock_start(run *r, const ph_config *cfg)
{
    if (offer_ids(r, cfg)) {
        run_end(r, 0, "stock: out of memory");
        return;
    }
    if (!r->nids) {
        submit_answer(r); /* nothing to ask: an empty answer changes nothing */
        return;
    }
    if (!(r->checks = calloc(r->nids, sizeof *r->checks))) {
        run_end(r, 0, "stock: out of memory");
        return;
    }
    /* +1 held by this function, so no callback ends the run while it submits */
    atomic_store(&r->left, r->nids + 1);
    for (size_t i = 0; i < r->nids; i++) {
        ph_sio_job *j = &r->checks[i];
        j->sup = r->sup;
        j->op.kind = PERKHUB_OP_STOCK_CHECK;
        j->op.product_id = r->ids[i];
        j->limits = r->limits;
        j->done = check_done;
        j->arg = r;
        if (ph_sio_submit(r->sy->o.sio, j) != PH_OK) {
            j->outcome = PERKHUB_DEFINITE_FAILURE;
            snprintf(j->detail, sizeof j->detail, "the I/O engine is stopping");
            check_done(j);
        }
    }
    ph_sio_job dummy = {.outcome = PERKHUB_OK, .parsed = 1, .arg = r};
    check_done(&dummy); /* drops the hold: a no-op check that succeeded */
}

/* ---- the job ---------------------------------------------------------------------- */

static void job_run(void *arg, ph_sched_run *sr)
{
    job_arg *ja = arg;
    ph_sync *sy = ja->sy;
    run *r = calloc(1, sizeof *r);
    if (!r) {
        ph_sched_done(sr, 0, "out of memory");
        return;
    }
    r->sy = sy;
    r->sched_run = sr;
    r->kind = ja->kind;
    snprintf(r->supplier, sizeof r->supplier, "%s", ja->supplier);
    atomic_init(&r->left, 0);
    atomic_init(&r->failed, 0);
    ph_cfg_ref *ref = ph_cfg_acquire(sy->o.cfg);
    const ph_supplier_conf *sc = ph_config_supplier(ref->cfg, r->supplier);
    uint64_t cap = r->kind == KIND_CATALOG ? PERKHUB_CAP_CATALOG : PERKHUB_CAP_STOCK_CHECK;
    if (!sc) {
        ph_cfg_release(ref);
        run_fail(r, "%s: supplier %s is not configured", kind_names[r->kind], r->supplier);
        return;
    }
    if (ph_suppliers_acquire(sy->o.suppliers, r->supplier, &r->sup) != PH_OK) {
        r->sup = NULL;
        ph_cfg_release(ref);
        run_fail(r, "%s: supplier %s is not running", kind_names[r->kind], r->supplier);
        return;
    }
    if (!(ph_supplier_plugin(r->sup)->capabilities & cap)) {
        ph_cfg_release(ref);
        run_fail(r, "%s: the plugin of supplier %s cannot do this", kind_names[r->kind],
                 r->supplier);
        return;
    }
    r->limits = ph_sio_limits_of(sc);
    if (r->kind == KIND_STOCK) {
        stock_start(r, ref->cfg);
        ph_cfg_release(ref);
        return;
    }
    ph_cfg_release(ref);
    if (page_submit(r, 0, 0) != PH_OK)
        run_end(r, 0, "catalog: the I/O engine is stopping");
}

/* ---- registration ----------------------------------------------------------------- */

int ph_sync_create(const ph_sync_opts *opts, ph_sync **out, ph_err *err)
{
    if (!opts || !opts->log || !opts->store || !opts->sio || !opts->suppliers || !opts->cfg)
        return ph_err_set(err, PH_EINVAL, "sync: missing options");
    ph_sync *sy = calloc(1, sizeof *sy);
    if (!sy)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    sy->o = *opts;
    if (!sy->o.max_items)
        sy->o.max_items = 1000000;
    if (!sy->o.max_pages)
        sy->o.max_pages = 10000;
    *out = sy;
    return PH_OK;
}

/* The period of job kind for sc, in ms: -1 when there is to be no job. */
static int64_t period_of(ph_sync *sy, const ph_supplier_conf *sc, int kind)
{
    unsigned every = kind == KIND_CATALOG ? sc->sync_catalog_every_s : sc->sync_stock_every_s;
    if (every)
        return (int64_t)every * 1000;
    uint64_t cap = kind == KIND_CATALOG ? PERKHUB_CAP_CATALOG : PERKHUB_CAP_STOCK_CHECK;
    ph_supplier *sup;
    if (ph_suppliers_acquire(sy->o.suppliers, sc->id, &sup) != PH_OK)
        return -1;
    int can = (ph_supplier_plugin(sup)->capabilities & cap) != 0;
    ph_supplier_release(sup);
    return can ? 0 : -1; /* on demand only */
}

int ph_sync_jobs_apply(ph_sync *sy, ph_sched *sched, const ph_config *cfg, ph_err *err)
{
    job_arg *keep = NULL, *j;
    int rc = PH_OK;
    for (size_t i = 0; i < cfg->nsuppliers && rc == PH_OK; i++) {
        const ph_supplier_conf *sc = &cfg->suppliers[i];
        for (int kind = KIND_CATALOG; kind <= KIND_STOCK && rc == PH_OK; kind++) {
            int64_t every = period_of(sy, sc, kind);
            if (every < 0)
                continue;
            char id[PH_SCHED_ID_MAX];
            ph_sync_job_id(id, sizeof id, kind_names[kind], sc->id);
            job_arg **pp = &sy->jobs;
            while (*pp && strcmp((*pp)->id, id))
                pp = &(*pp)->next;
            if ((j = *pp) != NULL) {
                *pp = j->next; /* moved to keep below */
            } else if (!(j = calloc(1, sizeof *j))) {
                rc = ph_err_set(err, PH_ENOMEM, "out of memory");
                break;
            } else {
                j->sy = sy;
                j->kind = kind;
                snprintf(j->supplier, sizeof j->supplier, "%s", sc->id);
                snprintf(j->id, sizeof j->id, "%s", id);
            }
            j->next = keep;
            keep = j;
            ph_err aerr = {0};
            int arc = ph_sched_add(sched, &(ph_sched_job_def){j->id, every, job_run, j}, &aerr);
            if (arc == PH_ENOMEM)
                rc = ph_err_set(err, arc, "%s", aerr.msg);
            else if (arc != PH_OK) /* the supplier runs without this sync; say so */
                ph_log(sy->o.log, PH_LOG_WARN, NULL, "sync.job_refused",
                       "supplier=%s job=%s detail=\"%s\"", sc->id, j->id, aerr.msg);
        }
    }
    /* what is left in sy->jobs is no longer wanted */
    while ((j = sy->jobs) != NULL) {
        sy->jobs = j->next;
        ph_sched_remove(sched, j->id); /* returns once it does not run */
        free(j);
    }
    sy->jobs = keep;
    return rc;
}

void ph_sync_destroy(ph_sync *sy, ph_sched *sched)
{
    if (!sy)
        return;
    for (job_arg *j = sy->jobs, *next; j; j = next) {
        next = j->next;
        if (sched)
            ph_sched_remove(sched, j->id);
        free(j);
    }
    free(sy);
}
