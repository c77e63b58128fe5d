/*
 * balance.h — the balance jobs: "balance/<supplier>" on the scheduler for
 * every supplier with `balance_below` (docs/config.md, "Alerts"). A run asks
 * the supplier its balance through the I/O engine (PERKHUB_OP_BALANCE) and
 * submits PH_CMD_BALANCE with the run's time; the writer stores the reading
 * and judges the alert (store_alerts.c). Nothing waits for a commit on the
 * I/O thread: the command's done callback ends the run.
 *
 * Ownership and threads: the daemon owns one ph_balance (ph_balance_create
 * at start, ph_balance_destroy after the scheduler is destroyed);
 * ph_balance_jobs_apply runs on the main thread (start and reload). A job's
 * argument lives in the ph_balance until its job is removed.
 */
#ifndef PH_BALANCE_H
#define PH_BALANCE_H

#include "base/status.h"
#include "config/config.h"
#include "config/current.h"

struct ph_sched;
struct ph_sio;
struct ph_suppliers;
typedef struct ph_store ph_store;
typedef struct ph_balance ph_balance;

typedef struct ph_balance_opts {
    struct ph_sched *sched;
    struct ph_sio *sio;
    struct ph_suppliers *suppliers;
    ph_store *store;
    ph_cfg_current *cfg; /* the running configuration: a run reads its threshold from it */
} ph_balance_opts;

/* PH_OK or PH_ENOMEM. Everything in opts is borrowed and outlives it. */
int ph_balance_create(const ph_balance_opts *opts, ph_balance **out, ph_err *err);

/* Makes the scheduler's balance jobs match cfg: adds or replaces
 * "balance/<id>" for each supplier with balance_every_s > 0 (every that
 * many seconds), removes those of suppliers that lost it. Errors from the
 * scheduler (PH_ENOMEM, PH_ESHUTDOWN); the jobs already applied stay. */
int ph_balance_jobs_apply(ph_balance *b, const ph_config *cfg, ph_err *err);

/* Frees it; the scheduler must be destroyed (no run in progress). NULL no-op. */
void ph_balance_destroy(ph_balance *b);

#endif
