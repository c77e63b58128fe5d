/*
 * sync.h — catalog, price and stock sync (issue 12 item 2): scheduler jobs
 * that ask each supplier what it sells, at what cost and how much of it, and
 * hand the whole answer to the store as one PH_CMD_SYNC (store.h), whose
 * writer compares it with the stored offer state and writes the events.
 *
 * Jobs, per supplier (sched.h ids):
 *   "sync.catalog/<supplier>"  PERKHUB_OP_CATALOG, every suppliers[].sync.catalog_every_s
 *                              (on demand only when 0); a multi-step exchange pages
 *                              through the catalog (result->next, next_state);
 *   "sync.stock/<supplier>"    PERKHUB_OP_STOCK_CHECK for each configured offer of the
 *                              supplier, every sync.stock_every_s (on demand when 0).
 * A job exists for a supplier whose running plugin has the capability, or whose
 * config schedules it (then a run without the capability fails, saying so).
 * A run that fails anywhere (a page, a parse, one stock check) submits nothing:
 * a failed sync changes nothing; the job's outcome (GET /v1/jobs, and the
 * supplier's `sync` in GET /v1/suppliers) says what failed.
 *
 * Threads: ph_sync_jobs_apply and ph_sync_destroy on the daemon's main thread;
 * runs start on the scheduler's thread, go on in the I/O engine's callbacks
 * (short: copy the page, submit the next) and end in the store command's done
 * callback on the writer thread, which calls ph_sched_done. No thread waits
 * for another. The sync owns the job arguments it registered; everything a
 * run uses hangs off the run.
 */
#ifndef PH_SYNC_H
#define PH_SYNC_H

#include <stddef.h>

#include "base/log.h"
#include "base/status.h"
#include "config/config.h"
#include "config/current.h"
#include "store/store.h"

struct ph_sched;
struct ph_sio;
struct ph_suppliers;

typedef struct ph_sync ph_sync;

/* What runs use; every pointer borrowed and outliving the sync. */
typedef struct ph_sync_opts {
    const ph_logger *log;
    ph_store *store;
    struct ph_sio *sio;
    struct ph_suppliers *suppliers;
    ph_cfg_current *cfg; /* each run reads the configuration it starts with */
    /* the most items one catalog may have, pages the most pages: a plugin that
     * never stops paging fails the run instead; 0 = 1,000,000 and 10,000 */
    size_t max_items, max_pages;
} ph_sync_opts;

/* Errors: PH_EINVAL (missing opts), PH_ENOMEM. */
int ph_sync_create(const ph_sync_opts *opts, ph_sync **out, ph_err *err);

/* Makes sched's sync jobs match cfg: adds, replaces (a new period) and removes
 * jobs by id. Call at start and after every reload that installed cfg. A job
 * the scheduler refuses (an id it does not take) is logged (sync.job_refused)
 * and left out: the supplier runs without that sync. Errors: PH_ENOMEM only
 * (the jobs added before stay). */
int ph_sync_jobs_apply(ph_sync *sy, struct ph_sched *sched, const ph_config *cfg, ph_err *err);

/* The job id of a sync of `supplier`: what "catalog" or "stock"; buf of at
 * least 96 bytes (PH_SCHED_ID_MAX). Returns buf. */
char *ph_sync_job_id(char *buf, size_t len, const char *what, const char *supplier);

/* Removes its jobs from sched (waiting for runs in progress) and frees. Call
 * before the scheduler, the engine and the store stop. NULL is a no-op. */
void ph_sync_destroy(ph_sync *sy, struct ph_sched *sched);

#endif
