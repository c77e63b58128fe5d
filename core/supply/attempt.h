/*
 * attempt.h — what one supplier exchange means for an attempt: the money-safety
 * decisions of docs/design.md rule 2, as one pure function.
 *
 * fulfil.c runs the exchanges; this file decides what each finished exchange
 * does to the attempt. It reads no clock and does no I/O, so every row of the
 * table below has a unit test (tests/unit/test_attempt.c).
 *
 *   exchange                outcome / answer                 attempt becomes
 *   ----------------------  -------------------------------  -----------------------------
 *   the order (step 0)      OK, succeeded                    SUCCEEDED
 *                           OK, processing                   PROCESSING, query later
 *                           definite failure, retryable      FAILED, may fail over
 *                           ambiguous (or not understood)    UNKNOWN, query later
 *   a query, or a follow-   OK, succeeded                    SUCCEEDED
 *   up step of the order    OK, failed                       FAILED, no fail-over
 *                           OK, processing                   stays, query later
 *                           OK, not found, within window     stays, query later
 *                           OK, not found, window passed     FAILED ("not_found_at_supplier")
 *                           anything else                    stays, query later (backing off)
 *
 * Queries back off (ph_attempt_backoff): the plugin's first delay, doubled
 * per query up to query_max; once the attempt is older than stuck_after it is
 * stuck, and the delay keeps doubling — it is the time since it became stuck
 * — up to stuck_max, where it stays: an attempt is queried for ever, never
 * faster than before. Every exchange that leaves an overdue attempt open asks
 * the store to mark it stuck (mark_stuck), so escalation rides on the query
 * timer and happens whether or not the supplier answers.
 *
 * Fail-over happens only from a definite refusal of the order itself: once the
 * supplier may have acted, the order ends with that supplier's answer.
 */
#ifndef PH_ATTEMPT_H
#define PH_ATTEMPT_H

#include <stdint.h>

#include <perkhub/plugin.h>

/* The attempt as the decision needs it. */
typedef struct ph_attempt_ctx {
    int is_order;           /* 1: the exchange was the order request itself (step 0) */
    int card;               /* 1: a card-code order (codes expected), 0: a recharge */
    uint32_t quantity;      /* codes expected on success */
    int state;              /* the attempt's PH_ATTEMPT_* before the exchange */
    int64_t created_at;     /* ms */
    uint32_t checks;        /* queries made before this one */
    int64_t window_ms;      /* the plugin's processing window */
    int64_t query_delay_ms; /* first query delay */
    int64_t query_max_ms;   /* backoff ceiling */
    int64_t stuck_after_ms; /* age at which an open attempt is stuck; 0 = never */
    int64_t stuck_max_ms;   /* the ceiling once stuck (never below query_max_ms) */
} ph_attempt_ctx;

/* What the exchange came to (from ph_sio_job). */
typedef struct ph_exchange {
    int outcome; /* PERKHUB_OK / _RETRYABLE / _DEFINITE_FAILURE / _AMBIGUOUS */
    int parsed;  /* 1 when res is meaningful */
    const struct perkhub_result *res;
    const char *detail; /* the engine's description */
} ph_exchange;

/* The decision. */
typedef struct ph_attempt_move {
    int state;             /* the new PH_ATTEMPT_* (may equal the old one) */
    int failover;          /* 1: the order may go to the next offer */
    int take_codes;        /* 1: store res->codes with the success */
    int follow_step;       /* 1: the next exchange is res->next's step, not a query */
    int count_check;       /* 1: this exchange was a query */
    int late_check;        /* 1: FAILED as not found after the window: worth one more
                              look much later (the late re-query, issue 11) */
    int64_t next_check_at; /* ms; 0 when the attempt is final */
    char reason[128];      /* "" for none */
    int mark_stuck;        /* 1: the attempt stays open and is overdue (store.h, mark_stuck) */
} ph_attempt_move;

/* Decides. `now` is the caller's clock. Never fails. */
void ph_attempt_decide(const ph_attempt_ctx *a, const ph_exchange *x, int64_t now,
                       ph_attempt_move *out);

/* What a supplier's word claims about a final attempt: PH_ATTEMPT_SUCCEEDED
 * or PH_ATTEMPT_FAILED for those perkhub_order_state values, 0 (no claim) for
 * any other. The one mapping for callbacks and the late re-query. */
int ph_attempt_claim(int perkhub_state);

/* The delay before the next query after `checks` queries, at `now`:
 * query_delay doubled per check, at most query_max; once the attempt is stuck
 * (now - created_at >= stuck_after), the time since it became stuck when that
 * is longer, at most stuck_max. Never shorter than the first form. */
int64_t ph_attempt_backoff(const ph_attempt_ctx *a, uint32_t checks, int64_t now);

/* 1 when an attempt made at a->created_at is stuck at `now` (stuck_after set
 * and passed). */
int ph_attempt_overdue(const ph_attempt_ctx *a, int64_t now);

#endif
