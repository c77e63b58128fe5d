/*
 * current.c — the running configuration snapshot and its references
 * (current.h).
 */
#include "config/current.h"

#include <stdlib.h>

static ph_cfg_ref *ref_new(ph_config *cfg)
{
    ph_cfg_ref *ref = calloc(1, sizeof *ref);
    if (!ref)
        return NULL;
    ref->cfg = cfg;
    atomic_init(&ref->refs, 1);
    return ref;
}

int ph_cfg_current_init(ph_cfg_current *c, ph_config *cfg, ph_err *err)
{
    if (!(c->ref = ref_new(cfg))) {
        ph_config_free(cfg);
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&c->mu, NULL);
    return PH_OK;
}

ph_cfg_ref *ph_cfg_acquire(ph_cfg_current *c)
{
    pthread_mutex_lock(&c->mu);
    ph_cfg_ref *ref = c->ref;
    atomic_fetch_add(&ref->refs, 1);
    pthread_mutex_unlock(&c->mu);
    return ref;
}

void ph_cfg_release(ph_cfg_ref *ref)
{
    if (ref && atomic_fetch_sub(&ref->refs, 1) == 1) {
        ph_config_free(ref->cfg);
        free(ref);
    }
}

int ph_cfg_install(ph_cfg_current *c, ph_config *cfg, ph_err *err)
{
    ph_cfg_ref *ref = ref_new(cfg);
    if (!ref) {
        ph_config_free(cfg);
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    pthread_mutex_lock(&c->mu);
    ph_cfg_ref *old = c->ref;
    c->ref = ref;
    pthread_mutex_unlock(&c->mu);
    ph_cfg_release(old);
    return PH_OK;
}

void ph_cfg_current_destroy(ph_cfg_current *c)
{
    if (!c->ref)
        return;
    ph_cfg_release(c->ref);
    c->ref = NULL;
    pthread_mutex_destroy(&c->mu);
}
