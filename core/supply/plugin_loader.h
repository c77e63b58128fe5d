/*
 * plugin_loader.h — opening supplier plugins, checking their ABI, validating a
 * supplier's config against the plugin's schema, and running init/shutdown.
 *
 * This is the only part of perkhub that calls dlopen (RTLD_NOW | RTLD_LOCAL).
 * The public side of the contract is sdk/include/perkhub/plugin.h; this header
 * is the core's side. Three objects, each with an explicit owner:
 *
 *   ph_plugin           an opened <dir>/<name>.so whose descriptor passed every
 *                       check (ABI, size, name, capabilities and ops, schema).
 *                       Holds one dlopen reference; closing it dlcloses. Or a
 *                       descriptor linked into the program (ph_plugin_wrap).
 *   ph_plugin_conf      one supplier's config resolved against a plugin's schema:
 *                       defaults applied, types checked, secrets resolved. This is
 *                       the `struct perkhub_config` the plugin reads.
 *   ph_plugin_instance  one initialized instance plus its host table (the
 *                       per-instance `struct perkhub_host` that attributes log
 *                       lines and memory to the supplier).
 *
 * Every error names the plugin (and the supplier, where one is involved) and
 * what was wrong, e.g.
 *
 *   plugin 'wrong_abi' (build/fixture-plugins/wrong_abi.so) is built for SDK ABI 2.0;
 *   this perkhubd provides 1.1
 *   plugin 'acme' (plugins/acme.so) claims recharge but not order_query: an ambiguous
 *   order could never be settled (docs/design.md rule 2); add PERKHUB_CAP_ORDER_QUERY
 *   supplier 'acme': config key 'greting' is not known to plugin 'manual' (known: greeting)
 *
 * Messages never contain a SECRET value.
 */
#ifndef PH_PLUGIN_LOADER_H
#define PH_PLUGIN_LOADER_H

#include <stddef.h>
#include <stdio.h>

#include <perkhub/plugin.h>

#include "config/config.h"
#include "base/log.h"
#include "base/status.h"

typedef struct ph_plugin ph_plugin;
typedef struct perkhub_config ph_plugin_conf;
typedef struct ph_plugin_instance ph_plugin_instance;

/* Opens <dir>/<name>.so with dlopen(RTLD_NOW | RTLD_LOCAL), looks up
 * PERKHUB_ENTRY_SYMBOL, and checks the descriptor: ABI major equal to ours and
 * minor not newer, struct_size at least the 1.0 size, name equal to `name`,
 * version/init/shutdown present, a well-formed config schema, and the
 * capability rules:
 *   - no bit outside PERKHUB_CAP_DEFINED;
 *   - ABI 1.0: capabilities 0 and ops NULL;
 *   - ABI 1.1+: capabilities != 0 exactly when ops != NULL, and then
 *     ops->struct_size at least the 1.1 table; any of CATALOG, STOCK_CHECK,
 *     CARD_ORDER, RECHARGE, ORDER_QUERY, BALANCE needs build_request and
 *     parse_response; CALLBACK needs verify_callback; LOCAL needs serve_local;
 *     CARD_ORDER or RECHARGE needs ORDER_QUERY (docs/design.md rule 2).
 * Only the first struct_size bytes of the descriptor and ops->struct_size bytes
 * of the ops table are read (see ph_plugin_descriptor, ph_plugin_ops).
 * On PH_OK *out is owned by the caller (ph_plugin_close). On error nothing is
 * left open and *out is untouched.
 * Errors: PH_EINVAL (bad name, not a perkhub plugin: no entry symbol, bad
 * descriptor, name mismatch, a capability rule broken, an ops table smaller
 * than 1.1's, bad schema, dlopen failure), PH_ENOTFOUND (no such file),
 * PH_EVERSION (another ABI major, a newer minor, a descriptor smaller than
 * 1.0's), PH_ENOMEM. Every message names the plugin, its file and what is
 * missing.
 * @note Main thread (dlopen runs the library's constructors). */
int ph_plugin_open(const char *dir, const char *name, ph_plugin **out, ph_err *err);

/* Makes a ph_plugin of a descriptor linked into the running program (a
 * built-in plugin, or a plugin compiled into its unit test), with exactly the
 * checks of ph_plugin_open but no file: messages say "plugin '<name>' (linked
 * in)" and ph_plugin_path returns "linked in". desc is borrowed and must
 * outlive *out (it normally has static storage). `name` must equal desc->name.
 * On PH_OK *out is owned by the caller (ph_plugin_close, which dlcloses
 * nothing). On error *out is untouched.
 * Errors: as ph_plugin_open, without PH_ENOTFOUND.
 * @note Thread-safe (touches nothing but its arguments). */
int ph_plugin_wrap(const struct perkhub_plugin *desc, const char *name, ph_plugin **out,
                   ph_err *err);

/* Drops the dlopen reference. Every instance started from p must have been
 * stopped first. NULL is a no-op. @note Main thread. */
void ph_plugin_close(ph_plugin *p);

/* The plugin's descriptor, as read by the core: a copy of the plugin's first
 * struct_size bytes with every later member zero (members beyond the 1.0
 * descriptor are zero for an ABI 1.0 plugin), except `ops`, which points at the
 * core's copy (ph_plugin_ops) or is NULL. Valid until ph_plugin_close.
 * @note Thread-safe (read-only). */
const struct perkhub_plugin *ph_plugin_descriptor(const ph_plugin *p);

/* The plugin's operations table as the core keeps it: a copy of the plugin's
 * first ops->struct_size bytes with every later member zero, so callbacks added
 * by later minors read as NULL. NULL when the plugin has no operations
 * (capabilities 0). Owned by p, valid until ph_plugin_close.
 * @note Thread-safe (read-only). */
const struct perkhub_ops *ph_plugin_ops(const ph_plugin *p);

/* The plugin name and the file it was loaded from ("<dir>/<name>.so"). Owned by
 * p, valid until ph_plugin_close. @note Thread-safe (read-only). */
const char *ph_plugin_name(const ph_plugin *p);
const char *ph_plugin_path(const ph_plugin *p);

/* Prints the plugin's name, version, ABI, capabilities and config schema as
 * human-readable documentation. Returns PH_OK or PH_EIO.
 * @note Thread-safe (read-only p; the caller serializes use of `out`). */
int ph_plugin_describe(const ph_plugin *p, FILE *out);

/* Resolves a supplier's config (kv, nkv: from ph_supplier_conf) against p's
 * schema: refuses an unknown key, a duplicate key, a missing required key and a
 * value of the wrong type; applies defaults; resolves SECRET references
 * ("env:NAME": set and not empty; "file:PATH": a regular file of mode 0600 or
 * stricter, not empty; an inline secret is refused). `supplier_id` names
 * the supplier in messages. kv is only read.
 * On PH_OK *out is owned by the caller (ph_plugin_conf_free, or hand it to
 * ph_plugin_start). Errors: PH_EINVAL (the message names supplier and key, never
 * a secret), PH_EIO (a secret file cannot be read), PH_ENOMEM.
 * @note Main thread (reads the environment). */
int ph_plugin_conf_resolve(const ph_plugin *p, const char *supplier_id, const ph_kv *kv, size_t nkv,
                           ph_plugin_conf **out, ph_err *err);

/* One problem ph_plugin_conf_resolve_all found: `problem` names the supplier
 * and the key (never a secret); kv_index is the entry of kv at fault, or
 * PH_CONF_NO_KEY when it is about the mapping (a required key is missing).
 * problem is valid only during the call. */
#define PH_CONF_NO_KEY ((size_t)-1)
typedef void (*ph_conf_report_fn)(void *arg, size_t kv_index, const ph_err *problem);

/* As ph_plugin_conf_resolve, except that with a non-NULL report every problem
 * (each unknown, duplicate or bad key, each secret that does not resolve, each
 * missing required key) is passed to report(arg, ...) in kv order and
 * resolution goes on, so that one run names them all (perkhubd
 * --check-config). On error err holds the first problem (also reported) and
 * nothing is returned; PH_ENOMEM ends it at once. Ownership as
 * ph_plugin_conf_resolve. @note Main thread (reads the environment). */
int ph_plugin_conf_resolve_all(const ph_plugin *p, const char *supplier_id, const ph_kv *kv,
                               size_t nkv, ph_conf_report_fn report, void *arg,
                               ph_plugin_conf **out, ph_err *err);

/* As ph_plugin_conf_resolve, except that a SECRET value in kv is the secret
 * itself rather than a reference (it must not be empty). For test harnesses
 * only (sdk/testkit), where a secret is a literal in the test; perkhubd never
 * calls it, because an inline secret in YAML is refused. Defaults are still
 * resolved as references. Ownership and errors as ph_plugin_conf_resolve.
 * @note Main thread (reads the environment for defaults). */
int ph_plugin_conf_resolve_plain(const ph_plugin *p, const char *supplier_id, const ph_kv *kv,
                                 size_t nkv, ph_plugin_conf **out, ph_err *err);

/* 1 when two resolved configs give the plugin the same values (secrets
 * included, compared after resolution), else 0. @note Thread-safe (read-only). */
int ph_plugin_conf_equal(const ph_plugin_conf *a, const ph_plugin_conf *b);

/* Wipes resolved secrets and frees. NULL is a no-op. */
void ph_plugin_conf_free(ph_plugin_conf *conf);

/* Creates the instance's host table (bound to supplier_id and lg) and calls the
 * plugin's init with it and conf. `conf` is consumed in every case: owned by the
 * instance on success, freed on failure. p is borrowed and must outlive the
 * instance; lg must outlive the instance.
 * On PH_OK *out is owned by the caller (ph_plugin_stop). On error, whatever init
 * allocated through the host is reclaimed and *out is untouched.
 * Errors: PH_EINVAL (init refused: the message names the supplier and plugin and
 * carries the plugin's own explanation), PH_ENOMEM.
 * @note Main thread; one call at a time per plugin. */
int ph_plugin_start(ph_plugin *p, const char *supplier_id, ph_plugin_conf *conf,
                    const ph_logger *lg, ph_plugin_instance **out, ph_err *err);

/* Calls the plugin's shutdown, reclaims (and logs as plugin.leak) every host
 * allocation the instance still holds, and frees the instance. Does not close
 * the plugin. NULL is a no-op.
 * @note Any thread, once, after every other call on the instance returned. */
void ph_plugin_stop(ph_plugin_instance *inst);

/* Accessors. The pointers are owned by the instance and valid until
 * ph_plugin_stop. @note Thread-safe (read-only). */
void *ph_plugin_instance_data(const ph_plugin_instance *inst); /* what init returned */
const struct perkhub_host *ph_plugin_instance_host(const ph_plugin_instance *inst);
const ph_plugin_conf *ph_plugin_instance_conf(const ph_plugin_instance *inst);

/* Freezes the instance's host->now_ms at now_ms (milliseconds since the
 * epoch); 0 returns it to the real clock. For tests of time-dependent signing
 * and expiry (sdk/testkit); the daemon never calls it.
 * @note Thread-safe (an atomic store). */
void ph_plugin_instance_set_now(ph_plugin_instance *inst, int64_t now_ms);

/* The number of host allocations the instance currently holds (for tests and
 * metrics). @note Thread-safe. */
size_t ph_plugin_instance_blocks(const ph_plugin_instance *inst);

#endif
