/*
 * daemon.h — the daemon's context: the one struct that owns every piece of
 * running state (no global mutable state lives anywhere else), and its
 * lifecycle: start, reload on SIGHUP, log file reopen on SIGUSR1, graceful stop
 * on SIGTERM.
 *
 * Calls run one way (core/daemon/README.md, docs/design.md "Layout"): HTTP
 * handlers (http/) → supplier orders and imports (supply/fulfil.c, codes/) →
 * the store's writer and the supplier I/O engine → events in the store. This
 * module wires them and is called by none of them: it hands the HTTP layer
 * the services it may use (ph_http_env) and fulfilment its own, so nothing
 * below includes this header.
 *
 * Threads: ph_daemon_start, _reap, _reload and _stop run on the main thread,
 * one at a time (main.c's signal loop).
 *
 * The daemon starts no thread of its own besides the modules': its periodic
 * work runs as jobs of the scheduler (sched/sched.h), whose records it keeps
 * in the store through the persist hooks (daemon.c): the expiry sweep is the
 * job "codes.expire", every expiry.every_s (PH_CMD_EXPIRE steps when codes
 * are due).
 */
#ifndef PH_DAEMON_H
#define PH_DAEMON_H

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

#include "config/config.h"
#include "config/current.h"
#include "crypto/crypto.h"
#include "base/log.h"
#include "base/status.h"
#include "sched/sched.h"
#include "store/store.h"

struct ph_suppliers;
struct ph_http;
struct ph_risk;
struct ph_sio;
struct ph_fulfil;
struct ph_resealer;
struct ph_sched;
struct ph_redeem;
struct ph_sync;
struct ph_balance;
struct ph_notify;
struct ph_risk;

typedef struct ph_daemon {
    ph_logger log;
    ph_cfg_current cfg; /* the running configuration; a reload swaps it whole */
    char *config_path;  /* NULL when running on the embedded default */
    ph_store *store;
    ph_keyring *keys;
    struct ph_suppliers *suppliers;
    struct ph_sio *sio;       /* the supplier I/O engine */
    struct ph_fulfil *fulfil; /* supplier orders in flight */
    struct ph_redeem *redeem; /* code lookups asking suppliers about redemption */
    struct ph_http *http;
    /* the registry every observer above writes into (metrics/metrics.h) */
    struct ph_metrics *metrics;
    uint16_t port;         /* the bound port (config port 0 = ephemeral) */
    int pid_fd;            /* pid_file, locked while we run; -1 = none */
    char *pid_path;        /* pid_file as at start (a reload does not move it) */
    atomic_int ready;      /* 1 once serving, 0 again when stopping */
    pthread_t main_thread; /* ph_daemon_start's caller: reloads, plugin shutdowns and dlclose */
    /* periodic and on-demand jobs: expiry, sync, balance, replenishment (sched/sched.h) */
    struct ph_sched *sched;
    /* the scheduler's hooks into the store (daemon.c): borrowed by sched */
    ph_sched_persist sched_persist;
    /* catalog and stock sync: its jobs on sched (supply/sync.h) */
    struct ph_sync *sync;
    struct ph_balance *balance; /* the balance jobs' arguments (supply/balance.h) */
    /* the key rotation's re-sealer thread (reseal.c, keys.h) */
    struct ph_resealer *resealer;
    /* webhook delivery from the outbox (notify/notify.h) */
    struct ph_notify *notify;
    /* issuance protection: rules, lists and counters in force (risk/risk.h) */
    struct ph_risk *risk;
    const char *journal_file; /* set before ph_daemon_start: ph_store_opts.journal_file */
    /* replication (repl/repl.h), NULL unless configured: the store's hook, the
     * lease; `led` is 1 once this node started its leader's work (the catalog
     * write, in-flight attempts resumed by query, the jobs): at start when it
     * leads, else when a standby is promoted (ph_daemon_reap) */
    struct ph_repl *repl;
    int led;
    uint64_t led_epoch; /* ph_repl_epoch when the leader's work last started or resumed */
    /* the snapshot directory (repl/snap.h, snapshots.c): every node's, made
     * before the replicator (which reports its newest), freed after it */
    struct ph_snaps *snaps;
    /* the thread of the snapshot being copied (snapshots.c): started by the
     * job on the scheduler's thread, joined by the next run or, after the
     * scheduler is gone, by ph_daemon_snaps_join */
    pthread_t snap_thread;
    int snap_thread_live;
    struct ph_sched_run *snap_run;
    /* the newest order the risk counters counted at a rebuild (risk_reviews.c) */
    uint64_t risk_counted_upto;
} ph_daemon;

/* Starts everything from cfg (owned by the daemon from now on, also on failure):
 * key file, store, catalog sync, suppliers, HTTP listener. config_path (may be
 * NULL) is remembered for reloads. On failure everything started is stopped. */
int ph_daemon_start(ph_daemon *d, ph_config *cfg, const char *config_path, ph_err *err);

/* The signal the daemon sends its own main thread (pthread_kill) to have it
 * reap: SIGUSR2, so that SIGUSR1 stays what logrotate setups send to reopen
 * log files (nginx's convention). Harmless if sent from outside. */
#define PH_SIGNAL_WAKE SIGUSR2

/* Shuts down and closes the plugins of suppliers whose last reference went on
 * another thread (suppliers.h, the reaper); and, with replication, starts the
 * leader's work when this standby became the leader. The daemon asks for it by
 * sending PH_SIGNAL_WAKE to main_thread, so the caller of ph_daemon_start must
 * keep it blocked and call this when sigwait returns it (main.c). Main thread. */
void ph_daemon_reap(ph_daemon *d);

/* 1 when this node led and lost the lease (replication): its running state
 * (attempts in flight, jobs, the catalog it wrote) is a leader's, so main.c
 * stops the daemon and starts it again, as a standby that follows the new
 * leader. Main thread, after ph_daemon_reap. */
int ph_daemon_deposed(ph_daemon *d);

/* SIGUSR1: opens log.file again after logrotate renamed it, while other
 * threads keep logging (ph_log_reopen); a failure is logged to the old file
 * and changes nothing. Nothing without log.file. Main thread. */
void ph_daemon_reopen_log(ph_daemon *d);

/* Re-reads the configuration file. A file that does not validate, or whose
 * suppliers fail to start, changes nothing; err says why. Settings that need a
 * restart (listen address, data directory, key file) are kept and logged. */
int ph_daemon_reload(ph_daemon *d, ph_err *err);

/* Stops accepting connections, lets in-flight requests finish (at most
 * grace_ms), drains the store's writer and frees everything. */
void ph_daemon_stop(ph_daemon *d, int grace_ms);

/* Writes the catalog of cfg into the store (PH_CMD_PUT_PRODUCTS), with
 * `audit` (store.h; NULL = none: the start) stored in the same transaction. */
int ph_daemon_sync_products(ph_daemon *d, const ph_config *cfg, const ph_audit *audit, ph_err *err);

/* risk_reviews.c: adds the risk.reviews job (held orders whose review timed
 * out get cfg's risk.review_default), or gives it cfg's period (a reload).
 * Main thread. PH_EINVAL, PH_ENOMEM. */
int ph_daemon_reviews_apply(ph_daemon *d, const ph_config *cfg, ph_err *err);
/* The engine's counters rebuilt from the stored orders' risk records of its
 * longest window, oldest first (ph_risk_replay; denied and blocked orders
 * noted for the related rules), before the daemon takes orders. rk NULL or
 * without a rule: nothing. Main thread, at start. PH_EIO, PH_ENOMEM. */
int ph_daemon_risk_rebuild(ph_daemon *d, struct ph_risk *rk, int64_t now, ph_err *err);
/* Replication: a standby promoted to leader puts the rules and lists the
 * store holds now in force (the leader's changes came through the stream)
 * and counts the orders stored since its start's rebuild (by order id, past
 * d->risk_counted_upto), so its limits see what the old leader counted.
 * Main thread. PH_EIO, PH_ENOMEM, PH_EINVAL. */
int ph_daemon_risk_take_over(ph_daemon *d, ph_err *err);

/* snapshots.c: the snapshot directory of cfg (snapshots.dir, else
 * <data_dir>/snapshots) into d->snaps. Main thread, at start, before the
 * replicator. PH_EIO, PH_ENOMEM. */
int ph_daemon_snaps_open(ph_daemon *d, const ph_config *cfg, ph_err *err);
/* Adds the job snapshots.take (every node), or gives it cfg's period and
 * keep (a reload). Main thread. PH_EINVAL, PH_ENOMEM. */
int ph_daemon_snaps_job_apply(ph_daemon *d, const ph_config *cfg, ph_err *err);
/* Joins the thread of the last snapshot copy, if any. Main thread, after the
 * scheduler was destroyed (which waited for that copy's end). */
void ph_daemon_snaps_join(ph_daemon *d);

/* What a reload from old to neu changes, by name (config_changes.c): a JSON
 * object with, when not empty, "suppliers" {added, removed, changed, enabled,
 * disabled}, "products" and "clients" {added, removed, changed} as lists of
 * ids, SKUs and client names, and "settings" (the reloadable keys that
 * changed, "log.level", "limits.max_body_mb", ...). A supplier's plugin
 * settings and a client's token count as a change but are never written.
 * Longer than PH_AUDIT_WHAT_MAX as text, every list becomes its length and
 * "counts_only" is true. A new reference, or NULL when out of memory. Any
 * thread (pure). */
json_t *ph_config_changes(const ph_config *old, const ph_config *neu);

#endif
