/*
 * suppliers.c — the supplier set. See suppliers.h.
 *
 * The set is an array of slots sorted for listing. A slot of an enabled
 * supplier points to a reference-counted ph_supplier (plugin + instance). apply
 * builds a complete new array next to the old one, sharing the ph_supplier of
 * every unchanged entry (one more reference), and only then swaps it in under
 * the mutex. Failing halfway means dropping the new array's references: the
 * shared entries survive through the old array's references, the new ones shut
 * down. That is the whole all-or-nothing mechanism.
 */
#include "supply/suppliers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/lockcheck.h"
#include "supply/plugin_loader.h"

/* Where released suppliers wait for the main thread (suppliers.h: the
 * reaper). Shared by the set and every supplier it started, so a reference
 * released after ph_suppliers_destroy still finds it. */
typedef struct reaper {
    pthread_mutex_t mu; /* guards dead, closed, wake; a leaf: nothing is called under it */
    atomic_uint refs;   /* the set's, plus one per supplier alive */
    pthread_t main;     /* the thread that created the set: plugins stop and close there */
    int closed;         /* the set is destroyed: the last release stops where it runs */
    struct ph_supplier *dead;
    void (*wake)(void *arg);
    void *wake_arg;
} reaper;

struct ph_supplier {
    atomic_uint refs;
    char *id;
    ph_plugin *plugin;
    ph_plugin_instance *inst;
    const ph_logger *lg;
    reaper *rp;               /* NULL until started */
    struct ph_supplier *next; /* in rp->dead */
};

typedef struct slot {
    char *id;
    char *plugin;
    int enabled;
    int priority;
    size_t order;     /* index in the config: ties in priority keep config order */
    ph_supplier *sup; /* NULL when disabled or failed */
    char *error;      /* enabled but not started: the first problem (state error) */
} slot;

struct ph_suppliers {
    ph_logger *lg;
    reaper *rp;
    ph_mutex apply_mu; /* one apply at a time; held for the whole apply */
    ph_mutex mu;       /* guards slots/nslots; held only to copy or swap */
    slot *slots;
    size_t nslots;
};

static void copy_str(char *dst, size_t n, const char *src)
{
    size_t len = src ? strlen(src) : 0;
    if (len >= n)
        len = n - 1;
    if (len)
        memcpy(dst, src, len);
    dst[len] = '\0';
}

/* ---- running suppliers ------------------------------------------------------- */

static void reaper_unref(reaper *rp)
{
    if (rp && atomic_fetch_sub(&rp->refs, 1) == 1) {
        pthread_mutex_destroy(&rp->mu);
        free(rp);
    }
}

static void supplier_free(ph_supplier *sup)
{
    ph_plugin_stop(sup->inst);
    ph_plugin_close(sup->plugin);
    reaper_unref(sup->rp);
    free(sup->id);
    free(sup);
}

/* The plugin's shutdown, the core's line, dlclose: main thread (or after the
 * set is gone). */
static void supplier_stop(ph_supplier *sup)
{
    ph_plugin_stop(sup->inst);
    sup->inst = NULL;
    ph_log(sup->lg, PH_LOG_INFO, NULL, "supplier.stopped", "supplier=%s plugin=%s", sup->id,
           ph_plugin_name(sup->plugin));
    supplier_free(sup);
}

void ph_supplier_release(ph_supplier *sup)
{
    if (!sup || atomic_fetch_sub(&sup->refs, 1) != 1)
        return;
    reaper *rp = sup->rp;
    pthread_mutex_lock(&rp->mu);
    int here = rp->closed || pthread_equal(pthread_self(), rp->main);
    void (*wake)(void *) = here ? NULL : rp->wake;
    void *wake_arg = rp->wake_arg;
    if (!here) {
        sup->next = rp->dead;
        rp->dead = sup;
    }
    pthread_mutex_unlock(&rp->mu);
    if (here)
        supplier_stop(sup);
    else if (wake)
        wake(wake_arg);
}

/* Detaches the suppliers waiting for the main thread; closes the reaper to
 * later ones when close is set (in the same critical section, so none is
 * left behind). */
static ph_supplier *reaper_take(reaper *rp, int close)
{
    pthread_mutex_lock(&rp->mu);
    ph_supplier *dead = rp->dead;
    rp->dead = NULL;
    if (close)
        rp->closed = 1;
    pthread_mutex_unlock(&rp->mu);
    return dead;
}

static size_t reap_list(ph_supplier *dead)
{
    size_t n = 0;
    for (ph_supplier *next; dead; dead = next, n++) {
        next = dead->next;
        supplier_stop(dead);
    }
    return n;
}

size_t ph_suppliers_reap(ph_suppliers *s)
{
    return reap_list(reaper_take(s->rp, 0));
}

void ph_suppliers_set_wake(ph_suppliers *s, void (*wake)(void *arg), void *arg)
{
    pthread_mutex_lock(&s->rp->mu);
    s->rp->wake = wake;
    s->rp->wake_arg = arg;
    pthread_mutex_unlock(&s->rp->mu);
}

static ph_supplier *supplier_ref(ph_supplier *sup)
{
    atomic_fetch_add(&sup->refs, 1);
    return sup;
}

/* ---- problems starting a supplier -------------------------------------------
 * Every problem is said once, as "source:line:col: suppliers[i].KEY: what",
 * the config module's form, at the node it is about: the plugin key for a
 * plugin that does not load, a config key for a key or secret problem, the
 * config mapping for a missing key or init's refusal. The first one is kept
 * for the slot (GET /v1/suppliers shows it); all go to the caller's report
 * (--check-config). */
typedef struct problems {
    const ph_config *cfg;
    const ph_supplier_conf *sc;
    ph_suppliers_report_fn report;
    void *arg;
    char first[PH_SUPPLIER_ERROR_MAX];
    size_t n;
} problems;

static void problem_at(problems *pb, ph_conf_mark m, const char *where, const char *what)
{
    char line[PH_SUPPLIER_ERROR_MAX];
    size_t i = (size_t)(pb->sc - pb->cfg->suppliers);
    if (m.line)
        snprintf(line, sizeof line, "%s:%u:%u: suppliers[%zu]%s: %s", pb->cfg->source, m.line,
                 m.col, i, where, what);
    else
        snprintf(line, sizeof line, "suppliers[%zu]%s: %s", i, where, what);
    if (pb->n++ == 0)
        snprintf(pb->first, sizeof pb->first, "%s", line);
    if (pb->report)
        pb->report(pb->arg, pb->sc, line);
}

/* ph_conf_report_fn: a problem with one config key, at that key. */
static void problem_key(void *arg, size_t at, const ph_err *e)
{
    problems *pb = arg;
    char where[96];
    if (at == PH_CONF_NO_KEY) {
        problem_at(pb, pb->sc->config_mark, ".config", e->msg);
        return;
    }
    snprintf(where, sizeof where, ".config.%.64s", pb->sc->config[at].key);
    problem_at(pb, pb->sc->config[at].mark, where, e->msg);
}

/* sync: a schedule the plugin cannot serve (no catalog or stock-check
 * capability) is refused at the key that asks for it. */
static int sync_capable(const ph_supplier_conf *sc, const struct perkhub_plugin *d, problems *pb,
                        ph_err *err)
{
    if (sc->sync_catalog_every_s && !(d->capabilities & PERKHUB_CAP_CATALOG)) {
        ph_err_set(err, PH_EINVAL,
                   "supplier '%s': plugin %s has no catalog capability: nothing to sync every "
                   "%u s",
                   sc->id, sc->plugin, sc->sync_catalog_every_s);
        problem_at(pb, sc->sync_catalog_mark, ".sync.catalog_every_s", err->msg);
        return PH_EINVAL;
    }
    if (sc->sync_stock_every_s && !(d->capabilities & PERKHUB_CAP_STOCK_CHECK)) {
        ph_err_set(err, PH_EINVAL,
                   "supplier '%s': plugin %s has no stock_check capability: nothing to sync "
                   "every %u s",
                   sc->id, sc->plugin, sc->sync_stock_every_s);
        problem_at(pb, sc->sync_stock_mark, ".sync.stock_every_s", err->msg);
        return PH_EINVAL;
    }
    return PH_OK;
}

/* Opens the plugin, resolves the config and runs init for one supplier: the
 * one path of a start, a reload and --check-config. Every problem goes to pb. */
static int supplier_start(const ph_logger *lg, reaper *rp, problems *pb, ph_supplier **out,
                          ph_err *err)
{
    const ph_supplier_conf *sc = pb->sc;
    ph_err inner = {0};
    ph_plugin_conf *conf = NULL;
    int rc;
    ph_supplier *sup = calloc(1, sizeof *sup);
    if (!sup || !(sup->id = strdup(sc->id))) {
        free(sup);
        return ph_err_set(err, PH_ENOMEM, "supplier '%s': out of memory", sc->id);
    }
    sup->lg = lg;
    atomic_init(&sup->refs, 1);
    rc = ph_plugin_open(pb->cfg->plugin_dir, sc->plugin, &sup->plugin, &inner);
    if (rc != PH_OK) {
        ph_err_set(err, rc, "supplier '%s': %s", sc->id, inner.msg);
        problem_at(pb, sc->plugin_mark, ".plugin", err->msg);
        goto fail;
    }
    if ((rc = sync_capable(sc, ph_plugin_descriptor(sup->plugin), pb, err)) != PH_OK)
        goto fail;
    if (sc->balance_below_set &&
        !(ph_plugin_descriptor(sup->plugin)->capabilities & PERKHUB_CAP_BALANCE)) {
        /* the balance job could never read it: refuse rather than never alert */
        rc = ph_err_set(err, PH_EINVAL,
                        "supplier '%s': balance_below needs a plugin that reads the balance "
                        "(PERKHUB_CAP_BALANCE); plugin '%s' does not",
                        sc->id, sc->plugin);
        problem_at(pb, sc->balance_mark, ".balance_below", err->msg);
        goto fail;
    }
    rc = ph_plugin_conf_resolve_all(sup->plugin, sc->id, sc->config, sc->nconfig, problem_key, pb,
                                    &conf, err);
    if (rc != PH_OK)
        goto fail;
    rc = ph_plugin_start(sup->plugin, sc->id, conf, lg, &sup->inst, err); /* consumes conf */
    if (rc != PH_OK) {
        problem_at(pb, sc->config_mark, ".config", err->msg);
        goto fail;
    }
    const struct perkhub_plugin *d = ph_plugin_descriptor(sup->plugin);
    ph_log(lg, PH_LOG_INFO, NULL, "supplier.started", "supplier=%s plugin=%s version=%s abi=%u.%u",
           sc->id, sc->plugin, d->version, (unsigned)d->abi_major, (unsigned)d->abi_minor);
    atomic_fetch_add(&rp->refs, 1);
    sup->rp = rp;
    *out = sup;
    return PH_OK;
fail:
    supplier_free(sup);
    return rc;
}

/* 1 when the running supplier would get exactly the config sc asks for. On a
 * config that does not resolve, returns the error instead (through rc), each
 * problem reported to pb. */
static int supplier_unchanged(const ph_supplier *sup, problems *pb, int *rc, ph_err *err)
{
    const ph_supplier_conf *sc = pb->sc;
    ph_plugin_conf *conf = NULL;
    *rc = ph_plugin_conf_resolve_all(sup->plugin, sc->id, sc->config, sc->nconfig, problem_key, pb,
                                     &conf, err);
    if (*rc != PH_OK)
        return 0;
    int same = ph_plugin_conf_equal(conf, ph_plugin_instance_conf(sup->inst));
    ph_plugin_conf_free(conf);
    return same;
}

/* ---- the set ----------------------------------------------------------------- */

static void slots_free(slot *v, size_t n)
{
    for (size_t i = n; i-- > 0;) { /* newest first */
        ph_supplier_release(v[i].sup);
        free(v[i].error);
        free(v[i].id);
        free(v[i].plugin);
    }
    free(v);
}

static slot *slot_find(slot *v, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].id, id) == 0)
            return &v[i];
    return NULL;
}

static int slot_cmp(const void *a, const void *b)
{
    const slot *x = a, *y = b;
    if (x->priority != y->priority)
        return x->priority > y->priority ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

int ph_suppliers_create(ph_logger *lg, ph_suppliers **out, ph_err *err)
{
    ph_suppliers *s = calloc(1, sizeof *s);
    reaper *rp = calloc(1, sizeof *rp);
    if (!s || !rp) {
        free(s);
        free(rp);
        return ph_err_set(err, PH_ENOMEM, "suppliers: out of memory");
    }
    pthread_mutex_init(&rp->mu, NULL);
    atomic_init(&rp->refs, 1);
    rp->main = pthread_self();
    s->rp = rp;
    s->lg = lg;
    ph_mutex_init(&s->apply_mu);
    ph_mutex_init(&s->mu);
    *out = s;
    return PH_OK;
}

/* The apply: see ph_suppliers_apply; report, when set, hears every problem. */
static int apply(ph_suppliers *s, const ph_config *cfg, ph_suppliers_report_fn report, void *arg,
                 size_t *nfailed, ph_err *err)
{
    size_t n = cfg->nsuppliers, nn = 0, started = 0, kept = 0, stopped = 0, disabled = 0,
           failed = 0;
    int rc = PH_OK, fatal = PH_OK;
    ph_mutex_lock(&s->apply_mu);
    slot *ns = calloc(n ? n : 1, sizeof *ns);
    if (!ns) {
        rc = ph_err_set(err, PH_ENOMEM, "suppliers: out of memory");
        goto fail;
    }
    /* Cheap checks first, so a typo never costs a dlopen and an init. */
    for (size_t i = 0; i < n; i++) {
        const ph_supplier_conf *sc = &cfg->suppliers[i];
        if (!sc->id || !sc->plugin) {
            rc = ph_err_set(err, PH_EINVAL, "suppliers[%zu]: id and plugin are required", i);
            goto fail;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->suppliers[j].id, sc->id) == 0) {
                rc = ph_err_set(err, PH_EINVAL, "supplier '%s' is configured twice", sc->id);
                goto fail;
            }
    }
    for (size_t i = 0; i < n; i++) {
        const ph_supplier_conf *sc = &cfg->suppliers[i];
        slot *sl = &ns[nn];
        *sl = (slot){.enabled = sc->enabled, .priority = sc->priority, .order = i};
        sl->id = strdup(sc->id);
        sl->plugin = strdup(sc->plugin);
        nn++;
        if (!sl->id || !sl->plugin) {
            rc = ph_err_set(err, PH_ENOMEM, "supplier '%s': out of memory", sc->id);
            goto fail;
        }
        if (!sc->enabled) {
            disabled++;
            continue;
        }
        /* Only apply writes s->slots, and apply_mu is held: reading without mu is
         * safe. */
        PH_ASSERT_HELD(&s->apply_mu);
        slot *old = slot_find(s->slots, s->nslots, sc->id);
        int running = old && old->sup;
        problems pb = {.cfg = cfg, .sc = sc, .report = report, .arg = arg};
        ph_err one = {0};
        rc = PH_OK;
        if (running && strcmp(old->plugin, sc->plugin) == 0) {
            int same = supplier_unchanged(old->sup, &pb, &rc, &one);
            if (rc == PH_OK && same)
                rc = sync_capable(sc, ph_plugin_descriptor(old->sup->plugin), &pb, &one);
            if (rc == PH_OK && same) {
                sl->sup = supplier_ref(old->sup);
                kept++;
                continue;
            }
        }
        if (rc == PH_OK)
            rc = supplier_start(s->lg, s->rp, &pb, &sl->sup, &one);
        if (rc == PH_ENOMEM) {
            *err = one;
            goto fail;
        }
        if (rc == PH_OK) {
            started++;
            continue;
        }
        /* It cannot start: in state error, unless the daemon must not run without
         * it, or it runs now and a reload would take it down (the running
         * configuration stays in force: docs/design.md rule 4). */
        failed++;
        if (!(sl->error = strdup(pb.n ? pb.first : one.msg))) {
            rc = ph_err_set(err, PH_ENOMEM, "supplier '%s': out of memory", sc->id);
            goto fail;
        }
        ph_log(s->lg, PH_LOG_WARN, NULL, "supplier.start_failed",
               "supplier=%s required=%s effect=\"%s\" detail=\"%s\"", sc->id,
               sc->required ? "true" : "false",
               sc->required ? "refused: the supplier is required"
               : running    ? "refused: the supplier runs with its previous configuration"
                            : "state error; orders route around it",
               sl->error);
        if ((sc->required || running) && fatal == PH_OK) {
            fatal = rc;
            ph_err_set(err, rc,
                       sc->required ? "supplier '%s' is required and cannot start: %s"
                                    : "supplier '%s' runs, and its new configuration cannot "
                                      "start: %s",
                       sc->id, sl->error);
        }
    }
    if (fatal != PH_OK) {
        rc = fatal;
        goto fail;
    }
    qsort(ns, nn, sizeof *ns, slot_cmp);

    ph_mutex_lock(&s->mu);
    slot *old = s->slots;
    size_t nold = s->nslots;
    s->slots = ns;
    s->nslots = nn;
    ph_mutex_unlock(&s->mu);

    for (size_t i = 0; i < nold; i++) {
        slot *o = &old[i];
        slot *now = slot_find(ns, nn, o->id);
        if (o->sup && (!now || now->sup != o->sup))
            stopped++;
    }
    slots_free(old, nold); /* outside mu: shutdowns may take a while */
    ph_suppliers_reap(s);  /* and those other threads released meanwhile */
    ph_log(s->lg, failed ? PH_LOG_WARN : PH_LOG_INFO, NULL, "suppliers.applied",
           "suppliers=%zu started=%zu kept=%zu stopped=%zu disabled=%zu failed=%zu", nn, started,
           kept, stopped, disabled, failed);
    ph_mutex_unlock(&s->apply_mu);
    if (nfailed)
        *nfailed = failed;
    return PH_OK;
fail:
    slots_free(ns, nn); /* shuts down what this call started; kept entries live on */
    ph_log(s->lg, PH_LOG_WARN, NULL, "suppliers.apply_failed", "error=%s",
           err ? ph_strerror(err->code) : ph_strerror(rc));
    ph_mutex_unlock(&s->apply_mu);
    if (nfailed)
        *nfailed = failed;
    return rc;
}

int ph_suppliers_apply(ph_suppliers *s, const ph_config *cfg, ph_err *err)
{
    return apply(s, cfg, NULL, NULL, NULL, err);
}

int ph_suppliers_check_with(const ph_config *cfg, ph_logger *lg, ph_suppliers_report_fn report,
                            void *arg, size_t *nfailed, void (*then)(void *, ph_suppliers *),
                            void *then_arg, ph_err *err)
{
    ph_suppliers *s;
    int rc = ph_suppliers_create(lg, &s, err);
    if (rc != PH_OK)
        return rc;
    rc = apply(s, cfg, report, arg, nfailed, err);
    if (then)
        then(then_arg, s);
    ph_suppliers_destroy(s); /* every plugin started here is shut down and closed */
    return rc;
}

int ph_suppliers_check(const ph_config *cfg, ph_logger *lg, ph_suppliers_report_fn report,
                       void *arg, size_t *nfailed, ph_err *err)
{
    return ph_suppliers_check_with(cfg, lg, report, arg, nfailed, NULL, NULL, err);
}

size_t ph_suppliers_list(ph_suppliers *s, ph_supplier_info *out, size_t max)
{
    ph_mutex_lock(&s->mu);
    size_t n = s->nslots;
    for (size_t i = 0; i < n && i < max; i++) {
        const slot *sl = &s->slots[i];
        ph_supplier_info *o = &out[i];
        memset(o, 0, sizeof *o);
        copy_str(o->id, sizeof o->id, sl->id);
        copy_str(o->plugin, sizeof o->plugin, sl->plugin);
        o->enabled = sl->enabled;
        o->priority = sl->priority;
        o->state = sl->sup       ? PH_SUPPLIER_READY
                   : sl->enabled ? PH_SUPPLIER_ERROR
                                 : PH_SUPPLIER_DISABLED;
        copy_str(o->error, sizeof o->error, sl->error);
        if (sl->sup) {
            const struct perkhub_plugin *d = ph_plugin_descriptor(sl->sup->plugin);
            copy_str(o->plugin_version, sizeof o->plugin_version, d->version);
            o->abi_major = d->abi_major;
            o->abi_minor = d->abi_minor;
            o->capabilities = d->capabilities;
        }
    }
    ph_mutex_unlock(&s->mu);
    return n;
}

int ph_suppliers_acquire(ph_suppliers *s, const char *id, ph_supplier **out)
{
    int rc = PH_ENOTFOUND;
    ph_mutex_lock(&s->mu);
    slot *sl = id ? slot_find(s->slots, s->nslots, id) : NULL;
    if (sl && sl->sup) {
        *out = supplier_ref(sl->sup);
        rc = PH_OK;
    } else if (sl) {
        rc = PH_ESTATE;
    }
    ph_mutex_unlock(&s->mu);
    return rc;
}

const char *ph_supplier_id(const ph_supplier *sup)
{
    return sup->id;
}

const struct perkhub_plugin *ph_supplier_plugin(const ph_supplier *sup)
{
    return ph_plugin_descriptor(sup->plugin);
}

const struct perkhub_host *ph_supplier_host(const ph_supplier *sup)
{
    return ph_plugin_instance_host(sup->inst);
}

void *ph_supplier_instance(const ph_supplier *sup)
{
    return ph_plugin_instance_data(sup->inst);
}

void ph_suppliers_destroy(ph_suppliers *s)
{
    if (!s)
        return;
    slots_free(s->slots, s->nslots);
    reap_list(reaper_take(s->rp, 1));
    reaper_unref(s->rp);
    ph_mutex_destroy(&s->mu);
    ph_mutex_destroy(&s->apply_mu);
    free(s);
}
