/*
 * suppliers.h — the set of configured suppliers and their running plugin instances.
 *
 * A ph_suppliers owns one entry per configured supplier: for an enabled
 * supplier, a loaded plugin (ph_plugin) and one initialized instance of it; for a
 * disabled one, just its listing. ph_suppliers_apply moves the set to a new
 * configuration all-or-nothing (SIGHUP), and GET /v1/suppliers lists it.
 *
 * Running suppliers are reference-counted (ph_supplier): the set holds one
 * reference per entry, and a caller that needs an instance for a while (the I/O
 * engine, from ABI 1.1 on) acquires its own. A supplier removed or changed by a
 * reload is shut down when its last reference goes, so a reload never pulls an
 * instance from under a request in flight.
 *
 * Threads and state (who owns what):
 *   - the slots (the listing and which instance each id maps to): written only
 *     by apply on the main thread, under `mu` only to swap; list and acquire
 *     read them under `mu` from any thread;
 *   - a supplier's reference count: atomic, any thread;
 *   - a plugin's shutdown and dlclose: the main thread only (plugin_loader.h).
 *     The thread that created the set is "the main thread". When the last
 *     reference goes on another thread (fulfil's thread finishing an attempt,
 *     the I/O thread, an HTTP thread), the supplier is handed to the reaper: a list
 *     under its own mutex, and a wake function (ph_suppliers_set_wake) that
 *     tells the main thread to call ph_suppliers_reap. apply and destroy reap
 *     too, so nothing waits longer than the next of them.
 * Lock order: apply_mu -> mu; the reaper's mutex is a leaf (no call is made
 * under it, the wake function included). No lock of this module is held while
 * calling a plugin, dlopen or dlclose; callers (fulfil, the I/O engine, the
 * HTTP handlers) call in holding no lock of their own.
 */
#ifndef PH_SUPPLIERS_H
#define PH_SUPPLIERS_H

#include <stddef.h>
#include <stdint.h>

#include <perkhub/plugin.h>

#include "config/config.h"
#include "base/log.h"
#include "base/status.h"

typedef struct ph_suppliers ph_suppliers;
typedef struct ph_supplier ph_supplier; /* one running supplier, reference-counted */

/* States in ph_supplier_info.state (static strings). */
#define PH_SUPPLIER_READY    "ready"    /* instance initialized */
#define PH_SUPPLIER_DISABLED "disabled" /* enabled: false in the config; nothing loaded */
/* Shown instead of ready while the supplier refuses our credentials (the I/O
 * engine's mark, supplier_io.h "Credentials"; GET /v1/suppliers puts why in
 * error). */
#define PH_SUPPLIER_AUTH_FAILED "auth_failed"
/* Enabled, but it could not start (its plugin, its config, a secret, init):
 * nothing runs, acquire answers PH_ESTATE so orders route around it, and
 * error says why. The next apply (a reload) tries again. */
#define PH_SUPPLIER_ERROR     "error"
#define PH_SUPPLIER_ERROR_MAX 512

/* A snapshot of one supplier for GET /v1/suppliers. Plain data: no pointer into the
 * set, nothing to free. Strings longer than their buffer are truncated. */
typedef struct ph_supplier_info {
    char id[128];
    char plugin[128];        /* plugin name */
    char plugin_version[64]; /* the plugin's own version; "" when not loaded (disabled) */
    unsigned abi_major;      /* the SDK ABI the plugin was built for; 0.0 when not loaded */
    unsigned abi_minor;
    uint64_t capabilities; /* PERKHUB_CAP_* */
    int enabled;
    int priority;                      /* higher first */
    const char *state;                 /* PH_SUPPLIER_READY / _DISABLED / _ERROR; static */
    char error[PH_SUPPLIER_ERROR_MAX]; /* why the supplier is out of service: the first
                          problem of an error one, "source:line:col: suppliers[i].KEY: what";
                          else "" (the API adds an auth_failed supplier's why) */
} ph_supplier_info;

/* Creates an empty set. lg is borrowed: it must outlive the set and every
 * reference acquired from it. On PH_OK *out is owned by the caller
 * (ph_suppliers_destroy). Errors: PH_ENOMEM. */
int ph_suppliers_create(ph_logger *lg, ph_suppliers **out, ph_err *err);

/* Moves the set to cfg->suppliers. For each configured supplier:
 *   - disabled: listed with state "disabled"; its plugin is not loaded (so a
 *     supplier with a broken plugin can be switched off), a running instance is
 *     shut down;
 *   - enabled, same id, plugin and resolved config as a running entry: the running
 *     instance is kept as it is (only the priority is updated);
 *   - enabled and new, changed or in state error: cfg->plugin_dir/<plugin>.so is
 *     opened and checked, the config validated against its schema (secrets
 *     resolved) and init called — the one path of a start, a reload and
 *     --check-config (ph_suppliers_check).
 * An enabled supplier that cannot start is listed in state "error" with its
 * first problem (file:line:column, the key, what), logged as
 * supplier.start_failed, and the apply goes on; except that the apply fails
 * when such a supplier is `required: true`, or runs now (a reload never takes a
 * running supplier down: fix its config and reload again). Running suppliers
 * that are no longer configured are shut down. When the apply fails, every
 * instance started by this call is shut down again, the previous set stays
 * fully in force, and err names the supplier and what was wrong. cfg is only
 * read and may be freed after the call. The listing is ordered by priority,
 * highest first, then config order.
 * Errors: PH_EINVAL, PH_ENOTFOUND (no plugin file), PH_EVERSION (plugin ABI),
 * PH_EIO (secret file), PH_ENOMEM.
 * @note Main thread (no two applies at a time); concurrent list and acquire
 * are safe and see either the old set or the new one, never a mix. */
int ph_suppliers_apply(ph_suppliers *s, const ph_config *cfg, ph_err *err);

/* One problem of supplier sc, as ph_suppliers_apply keeps the first: "source:
 * line:col: suppliers[i].KEY: what". Valid only during the call. */
typedef void (*ph_suppliers_report_fn)(void *arg, const ph_supplier_conf *sc, const char *problem);

/* What a start would do with cfg's suppliers, done and undone: a set of its
 * own is applied (every enabled plugin opened, its config resolved, init
 * called) and destroyed (every instance shut down), with every problem of
 * every supplier passed to report, several per supplier when its config has
 * several. *nfailed (may be NULL) is the number of suppliers that would be
 * in state error. Returns what ph_suppliers_apply would at start: PH_OK,
 * or the error naming the first required supplier that cannot start. lg is
 * where the plugins' own lines go.
 * @note Main thread (dlopen, the plugins' init). */
int ph_suppliers_check(const ph_config *cfg, ph_logger *lg, ph_suppliers_report_fn report,
                       void *arg, size_t *nfailed, ph_err *err);

/* ph_suppliers_check, and then(then_arg, set) on the set applied from cfg,
 * before it is destroyed: for checks that need the loaded plugins (a replenish
 * rule's supplier must take card orders, supply/replenish.h). then may be
 * NULL. @note Main thread. */
int ph_suppliers_check_with(const ph_config *cfg, ph_logger *lg, ph_suppliers_report_fn report,
                            void *arg, size_t *nfailed, void (*then)(void *, ph_suppliers *),
                            void *then_arg, ph_err *err);

/* Copies up to max entries, in listing order, into out (caller-owned; may be
 * NULL when max is 0). Returns the number of suppliers in the set, which may be
 * more than max: call again with a larger array to see them all.
 * @note Thread-safe. */
size_t ph_suppliers_list(ph_suppliers *s, ph_supplier_info *out, size_t max);

/* Takes a reference to the running supplier `id`. On PH_OK *out stays valid,
 * instance included, until ph_supplier_release, across any number of reloads.
 * Errors: PH_ENOTFOUND (no such supplier), PH_ESTATE (disabled, or in state error).
 * @note Thread-safe. */
int ph_suppliers_acquire(ph_suppliers *s, const char *id, ph_supplier **out);

/* Drops a reference. The last one shuts the instance down and closes the
 * plugin: at once when called on the main thread (or after
 * ph_suppliers_destroy), else on the main thread at its next
 * ph_suppliers_reap (the wake function says when). NULL is a no-op.
 * @note Thread-safe. */
void ph_supplier_release(ph_supplier *sup);

/* Shuts down and closes every supplier whose last reference went on another
 * thread; returns how many. @note Main thread (the set's creator). */
size_t ph_suppliers_reap(ph_suppliers *s);

/* wake(arg) is called, on the releasing thread and with no lock held, each
 * time a supplier starts waiting for ph_suppliers_reap; it must only signal
 * the main thread (the daemon sends itself SIGUSR2, main.c). NULL (the
 * default) relies on the next apply or destroy. @note Thread-safe. */
void ph_suppliers_set_wake(ph_suppliers *s, void (*wake)(void *arg), void *arg);

/* Accessors on an acquired supplier; owned by it, valid until released.
 * @note Thread-safe (read-only). */
const char *ph_supplier_id(const ph_supplier *sup);
const struct perkhub_plugin *ph_supplier_plugin(const ph_supplier *sup); /* the descriptor */
const struct perkhub_host *ph_supplier_host(const ph_supplier *sup);     /* its host table */
void *ph_supplier_instance(const ph_supplier *sup); /* what the plugin's init returned */

/* Drops the set's references (shutting down every supplier nobody else holds,
 * and every one waiting for the reaper) and frees the set. References still
 * held stay valid until released; the last release then shuts down on the
 * thread it runs on. NULL is a no-op. @note Main thread, after the last
 * concurrent list/acquire returned. */
void ph_suppliers_destroy(ph_suppliers *s);

#endif
