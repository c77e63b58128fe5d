/*
 * replenish.h — auto-replenishment (issue 12.5): the scheduler job
 * "replenish" that looks at the stock of every product with a replenish rule
 * (config.h, ph_replenish_conf) and starts the purchases that are needed.
 *
 * The job decides nothing itself: for each rule product whose issuable stock
 * is below `below` and that has no replenishment in flight (a cheap read that
 * spares the writer a refusal), it lists the offers of the rule's suppliers
 * that could take a card order now (ph_fulfil_supplier_usable: running, card
 * orders and order queries, breaker closed) and submits PH_CMD_REPLENISH.
 * The writer decides (ph_replenish_decide, store.h) in the command's
 * transaction: stock, one in flight per product, the day's budget, the
 * cheapest offer within max_unit_cost. A started purchase is an ordinary
 * supplier card order handed to fulfil (ph_fulfil_begin), so it is sent once,
 * queried when ambiguous and resumed after a restart like any order
 * (docs/design.md rule 2); its codes land in a new batch of stock. A failed
 * purchase is tried again at the next check, not before.
 *
 * Threads: the job runs on the scheduler's thread. When it starts purchases
 * it waits there for their commit (ph_store_exec_list: one group commit), so
 * that the orders reach fulfil from a thread that may take the config and
 * supplier locks; a check that buys nothing reads only.
 */
#ifndef PH_REPLENISH_H
#define PH_REPLENISH_H

#include "base/status.h"
#include "config/config.h"
#include "sched/sched.h"
#include "supply/fulfil.h"

#define PH_REPLENISH_JOB "replenish"

/* Makes the scheduler's "replenish" job match cfg: added (or its period
 * replaced) every cfg->replenish_check_s when a product has a rule, removed
 * when none has. The job uses f's store, suppliers, config and log
 * (ph_fulfil_options); f must outlive the job (the daemon destroys the
 * scheduler before fulfil). Errors: those of ph_sched_add.
 * @note Main thread (start and reload). */
int ph_replenish_jobs_apply(ph_sched *sched, const ph_config *cfg, ph_fulfil *f, ph_err *err);

/* One check, as the job runs it, at `now` (ms): for the caller's own loop
 * and tests. *started gets the purchases started. Returns PH_OK, or the
 * first store error (the other products are still checked).
 * @note Not on fulfil's or the writer's thread. */
int ph_replenish_check(ph_fulfil *f, const ph_config *cfg, int64_t now, unsigned *started,
                       ph_err *err);

/* A problem of a replenish rule that only the loaded plugins show: a rule
 * supplier whose plugin has no card orders (PERKHUB_CAP_CARD_ORDER) or no
 * order query. report(arg, "file:line:col: products[i].replenish.suppliers[j]:
 * ...") once per problem; returns how many. Suppliers not running
 * (disabled, in error) are not judged here: their own problem is reported by
 * the supplier set. @note Main thread. */
size_t ph_replenish_check_plugins(const ph_config *cfg, ph_suppliers *set,
                                  void (*report)(void *arg, const char *problem), void *arg);

#endif
