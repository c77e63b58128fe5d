/*
 * current.h — the running configuration: one immutable ph_config at a time,
 * replaced whole by a reload. A reader (a request, an attempt's step) takes a
 * reference for as long as it works, so a reload never changes the rules under
 * it; the old snapshot is freed when its last reader lets go.
 *
 * Ownership: a ph_cfg_current is embedded in its owner (the daemon) and owns
 * the snapshot it holds; a ph_cfg_ref belongs to whoever acquired it until
 * ph_cfg_release.
 *
 * Threads: ph_cfg_current_init, _install and _destroy on the owner's thread
 * (the main thread), one at a time; ph_cfg_acquire and ph_cfg_release from any
 * thread. The mutex guards only the pointer and is a leaf: nothing else is
 * called while it is held.
 */
#ifndef PH_CONFIG_CURRENT_H
#define PH_CONFIG_CURRENT_H

#include <pthread.h>
#include <stdatomic.h>

#include "base/status.h"
#include "config/config.h"

/* One snapshot and its readers. cfg is immutable while referenced. */
typedef struct ph_cfg_ref {
    ph_config *cfg;
    atomic_int refs;
} ph_cfg_ref;

typedef struct ph_cfg_current {
    pthread_mutex_t mu; /* guards ref (the pointer, not the snapshot) */
    ph_cfg_ref *ref;
} ph_cfg_current;

/* Starts c holding cfg, which c owns from now on (freed on failure too).
 * Errors: PH_ENOMEM. */
int ph_cfg_current_init(ph_cfg_current *c, ph_config *cfg, ph_err *err);

/* The current snapshot with a reference the caller releases. Never NULL
 * between ph_cfg_current_init and ph_cfg_current_destroy. */
ph_cfg_ref *ph_cfg_acquire(ph_cfg_current *c);

/* Drops a reference; the last one frees its snapshot. NULL is a no-op. */
void ph_cfg_release(ph_cfg_ref *ref);

/* Makes cfg (owned by c from now on, freed on failure too) the current
 * snapshot; readers holding the old one finish with it. Errors: PH_ENOMEM,
 * and then the old snapshot stays current. */
int ph_cfg_install(ph_cfg_current *c, ph_config *cfg, ph_err *err);

/* Drops c's own reference (readers must be gone) and destroys the mutex. A
 * zeroed, never initialized c is a no-op. */
void ph_cfg_current_destroy(ph_cfg_current *c);

#endif
