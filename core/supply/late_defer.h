/*
 * late_defer.h — the late re-queries fulfil could not finish, waiting out a
 * backoff so that they never hide the schedule entries behind them.
 *
 * The `late` schedule is the store's (ph_store_late_due): earliest due first.
 * An entry whose re-query gets no answer, or whose word the store refuses, or
 * that cannot start at all, stays in the schedule (it is the durable truth);
 * without this table it would come first again at every round, and 32 of them
 * would take every place of a round forever. Here such an entry is passed
 * over until its retry time: 1 minute after the first failure, doubling up to
 * an hour. The table is bounded (max entries; when full, the entry due back
 * soonest is dropped from it, to be tried again at once) and in memory: after
 * a restart every entry is tried once more, then deferred again.
 *
 * Ownership: the table is its owner's (fulfil's thread); no locking.
 */
#ifndef PH_LATE_DEFER_H
#define PH_LATE_DEFER_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define PH_LATE_DEFER_BASE_MS (60 * 1000LL)   /* the first backoff */
#define PH_LATE_DEFER_CAP_MS  (3600 * 1000LL) /* the longest */
#define PH_LATE_DEFER_MAX     4096            /* entries remembered */

typedef struct ph_late_deferred {
    uint64_t order_id;
    uint32_t no;
    uint32_t failures;
    int64_t due;      /* the schedule entry's due time (its key) */
    int64_t retry_at; /* ms: passed over until then */
} ph_late_deferred;

typedef struct ph_late_defer {
    ph_late_deferred *v; /* sorted by order id, no, due */
    size_t n, cap, max;
} ph_late_defer;

/* An empty table of at most max entries (0: PH_LATE_DEFER_MAX). */
void ph_late_defer_init(ph_late_defer *d, size_t max);
void ph_late_defer_free(ph_late_defer *d);

/* Entry lc could not be finished at now: passed over until now plus its
 * backoff (PH_LATE_DEFER_BASE_MS doubled per failure, at most _CAP_MS). Out
 * of memory: not remembered, and 0 (else 1): the caller must not look again at once. */
int ph_late_defer_failed(ph_late_defer *d, const ph_late_check *lc, int64_t now);
/* Entry lc is done (its word is stored, the schedule entry removed): forgotten. */
void ph_late_defer_done(ph_late_defer *d, const ph_late_check *lc);
/* The entry's record, or NULL. */
const ph_late_deferred *ph_late_defer_find(const ph_late_defer *d, const ph_late_check *lc);

/* Up to max schedule entries due at now that are not waiting out a backoff
 * (ph_store_late_due_skip); *next gets when to look again: the earliest of the
 * next entry due and the next backoff to end (0 when neither). */
size_t ph_late_defer_pick(ph_late_defer *d, ph_store *s, int64_t now, ph_late_check *out,
                          size_t max, int64_t *next);

#endif
