/*
 * attempt.c — the decision table of attempt.h.
 */
#include "supply/attempt.h"

#include <stdio.h>
#include <string.h>

#include "store/store.h"

int ph_attempt_overdue(const ph_attempt_ctx *a, int64_t now)
{
    return a->stuck_after_ms > 0 && now - a->created_at >= a->stuck_after_ms;
}

int64_t ph_attempt_backoff(const ph_attempt_ctx *a, uint32_t checks, int64_t now)
{
    int64_t d = a->query_delay_ms > 0 ? a->query_delay_ms : 1000;
    int64_t max = a->query_max_ms > 0 ? a->query_max_ms : 60000;
    for (uint32_t i = 0; i < checks && d < max; i++)
        d *= 2;
    if (d > max)
        d = max;
    if (!ph_attempt_overdue(a, now))
        return d;
    /* stuck: the delay is the time since it became stuck, so queries land at
     * doubling distances from that moment, up to the stuck ceiling */
    int64_t since = now - a->created_at - a->stuck_after_ms;
    int64_t cap = a->stuck_max_ms > d ? a->stuck_max_ms : d;
    if (since > d)
        d = since;
    return d < cap ? d : cap;
}

int ph_attempt_claim(int perkhub_state)
{
    return perkhub_state == PERKHUB_STATE_SUCCEEDED ? PH_ATTEMPT_SUCCEEDED
           : perkhub_state == PERKHUB_STATE_FAILED  ? PH_ATTEMPT_FAILED
                                                    : 0;
}

static void set_reason(ph_attempt_move *m, const char *r)
{
    snprintf(m->reason, sizeof m->reason, "%s", r ? r : "");
}

/* The supplier's own reason when it gave one; for an answer the plugin parsed
 * without one, the fallback word (the engine's detail then says only "http
 * 200", which is no reason); else (nothing parsed: not sent, lost, 5xx) the
 * engine's account of the transport. */
static const char *why(const ph_exchange *x, const char *fallback)
{
    if (x->parsed && x->res)
        return x->res->reason && *x->res->reason ? x->res->reason : fallback;
    return x->detail && *x->detail ? x->detail : fallback;
}

/* A success must carry exactly the codes ordered; anything else is not
 * understood, which for money means ambiguous. */
static int success_complete(const ph_attempt_ctx *a, const ph_exchange *x)
{
    if (!a->card)
        return 1;
    return x->res->ncodes == a->quantity && x->res->codes;
}

static void stay(const ph_attempt_ctx *a, int64_t now, int state, const char *reason,
                 ph_attempt_move *m)
{
    m->state = state;
    set_reason(m, reason);
    m->next_check_at = now + ph_attempt_backoff(a, a->checks + (uint32_t)m->count_check, now);
}

static void decide_order(const ph_attempt_ctx *a, const ph_exchange *x, int64_t now,
                         ph_attempt_move *m)
{
    switch (x->outcome) {
    case PERKHUB_OK:
        if (x->res->state == PERKHUB_STATE_SUCCEEDED && success_complete(a, x)) {
            m->state = PH_ATTEMPT_SUCCEEDED;
            m->take_codes = a->card;
            return;
        }
        if (x->res->state == PERKHUB_STATE_PROCESSING) {
            m->state = PH_ATTEMPT_PROCESSING;
            if (x->res->next) {
                m->follow_step = 1;
                m->next_check_at = now + (x->res->next_delay_ms > 0 ? x->res->next_delay_ms : 0);
            } else {
                m->next_check_at = now + ph_attempt_backoff(a, 0, now);
            }
            return;
        }
        /* OK with a state an order cannot have, or a short success */
        stay(a, now, PH_ATTEMPT_UNKNOWN, "unexpected_answer", m);
        return;
    case PERKHUB_DEFINITE_FAILURE:
    case PERKHUB_RETRYABLE:
        m->state = PH_ATTEMPT_FAILED;
        m->failover = 1;
        set_reason(m, why(x, "supplier_failed"));
        return;
    default:
        stay(a, now, PH_ATTEMPT_UNKNOWN, why(x, "ambiguous"), m);
        return;
    }
}

static void decide_query(const ph_attempt_ctx *a, const ph_exchange *x, int64_t now,
                         ph_attempt_move *m)
{
    /* SENDING only survives a restart; whatever the query says, it was sent. */
    int pending = a->state == PH_ATTEMPT_SENDING ? PH_ATTEMPT_UNKNOWN : a->state;
    m->count_check = 1;
    if (x->outcome != PERKHUB_OK || !x->parsed) {
        stay(a, now, pending, why(x, "query_failed"), m);
        return;
    }
    switch (x->res->state) {
    case PERKHUB_STATE_SUCCEEDED:
        if (success_complete(a, x)) {
            m->state = PH_ATTEMPT_SUCCEEDED;
            m->take_codes = a->card;
        } else {
            stay(a, now, pending, "bad_codes_in_answer", m);
        }
        return;
    case PERKHUB_STATE_FAILED:
        m->state = PH_ATTEMPT_FAILED;
        set_reason(m, why(x, "supplier_failed"));
        return;
    case PERKHUB_STATE_PROCESSING:
        stay(a, now, pending == PH_ATTEMPT_UNKNOWN ? PH_ATTEMPT_PROCESSING : pending, "", m);
        return;
    case PERKHUB_STATE_NOT_FOUND:
        if (now - a->created_at > a->window_ms) {
            m->state = PH_ATTEMPT_FAILED;
            m->late_check = 1;
            set_reason(m, "not_found_at_supplier");
        } else {
            stay(a, now, pending, "not_found_yet", m);
        }
        return;
    default:
        stay(a, now, pending, "unexpected_answer", m);
        return;
    }
}

void ph_attempt_decide(const ph_attempt_ctx *a, const ph_exchange *x, int64_t now,
                       ph_attempt_move *out)
{
    memset(out, 0, sizeof *out);
    if (a->is_order)
        decide_order(a, x, now, out);
    else
        decide_query(a, x, now, out);
    out->mark_stuck = ph_attempt_state_open(out->state) && ph_attempt_overdue(a, now);
}
