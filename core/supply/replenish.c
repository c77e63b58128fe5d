/*
 * replenish.c — the "replenish" job (replenish.h): reads the stock of rule
 * products, submits PH_CMD_REPLENISH for those below their threshold, and
 * hands each purchase the writer started to fulfil.
 */
#include "supply/replenish.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <perkhub/plugin.h>

#include "base/util.h"
#include "store/store.h"

/* A product's purchase being submitted: the command and the offers it names. */
typedef struct want {
    ph_cmd cmd;
    ph_attempt_target offers[PH_REPLENISH_SUPPLIERS_MAX];
} want;

/* The usable offers of p's rule suppliers, in the rule's order. */
static size_t usable_offers(ph_fulfil *f, const ph_config *cfg, const ph_product_conf *p,
                            ph_attempt_target *out)
{
    const ph_replenish_conf *r = &p->replenish;
    size_t n = 0;
    for (size_t j = 0; j < r->nsuppliers && n < PH_REPLENISH_SUPPLIERS_MAX; j++) {
        const ph_supplier_conf *sc = ph_config_supplier(cfg, r->suppliers[j]);
        if (!sc || !ph_fulfil_supplier_usable(f, sc, PH_DELIVERY_CARD_CODE))
            continue;
        for (size_t k = 0; k < p->noffers; k++)
            if (strcmp(p->offers[k].supplier, sc->id) == 0) {
                out[n++] = (ph_attempt_target){p->offers[k].supplier, p->offers[k].supplier_sku,
                                               p->offers[k].cost};
                break;
            }
    }
    return n;
}

/* Is p worth a command now: stock below its threshold and nothing in flight?
 * Reads only; the writer decides again. */
static int worth_asking(ph_store *s, const ph_product_conf *p, int64_t now)
{
    char *json = NULL;
    uint64_t available = 0, flying = 0;
    int64_t spent = 0;
    ph_err err = {0};
    int rc = ph_store_product_get_at(s, p->sku, now, &json, &available, &err);
    free(json);
    if (rc != PH_OK || available >= p->replenish.below)
        return 0;
    return ph_store_replenish_state(s, p->sku, now, &spent, &flying, &err) == PH_OK && !flying;
}

int ph_replenish_check(ph_fulfil *f, const ph_config *cfg, int64_t now, unsigned *started,
                       ph_err *err)
{
    const ph_fulfil_opts *o = ph_fulfil_options(f);
    *started = 0;
    size_t n = 0;
    for (size_t i = 0; i < cfg->nproducts; i++)
        n += cfg->products[i].replenish.set;
    if (!n)
        return PH_OK;
    want *w = calloc(n, sizeof *w);
    if (!w)
        return ph_err_set(err, PH_ENOMEM, "replenish: out of memory");
    ph_cmd *first = NULL, **tail = &first;
    size_t used = 0;
    for (size_t i = 0; i < cfg->nproducts; i++) {
        const ph_product_conf *p = &cfg->products[i];
        if (!p->replenish.set || !worth_asking(o->store, p, now))
            continue;
        want *x = &w[used++];
        ph_cmd *c = &x->cmd;
        c->type = PH_CMD_REPLENISH;
        c->now = now;
        c->in.replenish.sku = p->sku;
        c->in.replenish.below = p->replenish.below;
        c->in.replenish.to = p->replenish.to;
        c->in.replenish.max_unit_cost = p->replenish.max_unit_cost;
        c->in.replenish.max_per_day = p->replenish.max_per_day;
        c->in.replenish.offers = x->offers;
        c->in.replenish.noffers = usable_offers(f, cfg, p, x->offers);
        *tail = c;
        tail = &c->next;
    }
    int rc = first ? ph_store_exec_list(o->store, first) : PH_OK;
    if (rc != PH_OK)
        *err = first->err;
    for (size_t i = 0; rc == PH_OK && i < used; i++) {
        ph_cmd *c = &w[i].cmd;
        const char *sku = c->in.replenish.sku;
        if (c->rc == PH_OK) {
            ph_err e = {0};
            /* on PH_ENOMEM the order stays SENDING: the restart's resume queries it */
            if (ph_fulfil_begin(f, c->order, NULL, &e) == PH_OK)
                (*started)++;
            ph_log(o->log, PH_LOG_INFO, NULL, "replenish.started",
                   "sku=%s replenishment=%llu order=%llu quantity=%u supplier=%s", sku,
                   (unsigned long long)c->replenish_id, (unsigned long long)c->order->id,
                   c->order->quantity, c->order->attempts[0].supplier);
        } else if (c->repl_why == PH_REPL_NO_OFFER || c->repl_why == PH_REPL_BUDGET) {
            ph_log(o->log, PH_LOG_WARN, NULL, "replenish.not_started", "sku=%s why=%s", sku,
                   ph_repl_why_name(c->repl_why));
        } else if (!c->repl_why) { /* not a decision: the store refused (product gone, I/O) */
            ph_log(o->log, PH_LOG_WARN, NULL, "replenish.refused", "sku=%s rc=%s", sku,
                   ph_strerror(c->rc));
        }
        ph_cmd_clear(c);
    }
    free(w);
    return rc;
}

static void job_run(void *arg, ph_sched_run *run)
{
    ph_fulfil *f = arg;
    const ph_fulfil_opts *o = ph_fulfil_options(f);
    void *ref;
    const ph_config *cfg = o->cfg.acquire(o->cfg.ctx, &ref);
    unsigned started = 0;
    ph_err err = {0};
    int rc = ph_replenish_check(f, cfg, ph_sched_run_at(run), &started, &err);
    o->cfg.release(ref);
    char outcome[96];
    if (rc == PH_OK)
        snprintf(outcome, sizeof outcome, "%u replenishment%s started", started,
                 started == 1 ? "" : "s");
    else
        snprintf(outcome, sizeof outcome, "store: %s", ph_strerror(rc));
    ph_sched_done(run, rc == PH_OK, outcome);
}

int ph_replenish_jobs_apply(ph_sched *sched, const ph_config *cfg, ph_fulfil *f, ph_err *err)
{
    int any = 0;
    for (size_t i = 0; i < cfg->nproducts && !any; i++)
        any = cfg->products[i].replenish.set;
    if (!any) {
        ph_sched_remove(sched, PH_REPLENISH_JOB); /* PH_ENOTFOUND: there was none */
        return PH_OK;
    }
    ph_sched_job_def def = {PH_REPLENISH_JOB, (int64_t)cfg->replenish_check_s * 1000, job_run, f};
    return ph_sched_add(sched, &def, err);
}

size_t ph_replenish_check_plugins(const ph_config *cfg, ph_suppliers *set,
                                  void (*report)(void *arg, const char *problem), void *arg)
{
    size_t problems = 0;
    for (size_t i = 0; i < cfg->nproducts; i++) {
        const ph_replenish_conf *r = &cfg->products[i].replenish;
        for (size_t j = 0; r->set && j < r->nsuppliers; j++) {
            ph_supplier *sup;
            if (ph_suppliers_acquire(set, r->suppliers[j], &sup) != PH_OK)
                continue;
            const struct perkhub_plugin *pl = ph_supplier_plugin(sup);
            uint64_t caps = pl->capabilities;
            char problem[512];
            const char *lacks = !(caps & PERKHUB_CAP_CARD_ORDER)    ? "card orders"
                                : !(caps & PERKHUB_CAP_ORDER_QUERY) ? "order queries"
                                                                    : NULL;
            if (lacks) {
                snprintf(problem, sizeof problem,
                         "%s:%u:%u: products[%zu].replenish.suppliers[%zu]: supplier \"%s\" "
                         "cannot replenish: its plugin %s has no %s",
                         cfg->source, r->supplier_marks[j].line, r->supplier_marks[j].col, i, j,
                         r->suppliers[j], pl->name, lacks);
                report(arg, problem);
                problems++;
            }
            ph_supplier_release(sup);
        }
    }
    return problems;
}
