/*
 * supplier_io_breaker.c — the I/O engine's per-supplier records: the
 * supplier's FIFO slot, its health counters, its circuit breaker (closed,
 * open, half-open) and its credential mark (auth_failed, supplier_io.h
 * "Credentials"). Called with the engine's mutex held.
 */
#include "supply/supplier_io.h"
#include "supply/sio_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "base/lockcheck.h"
#include "base/util.h"
#include "crypto/crypto.h"
#include "supply/plugin_ops.h"

/* ---- per-supplier records (mu held) ---------------------------------------- */

sio_sup *sio_sup_find(ph_sio *io, const char *id)
{
    PH_ASSERT_HELD(&io->mu);
    for (sio_sup *s = io->sups; s; s = s->next)
        if (strcmp(s->id, id) == 0)
            return s;
    return NULL;
}

sio_sup *sio_sup_get(ph_sio *io, const char *id)
{
    sio_sup *s = sio_sup_find(io, id);
    if (s)
        return s;
    s = calloc(1, sizeof *s);
    if (!s || !(s->id = strdup(id))) {
        free(s);
        return NULL;
    }
    s->next = io->sups;
    io->sups = s;
    return s;
}

static void breaker_set(ph_sio *io, sio_sup *ss, int state, int64_t now)
{
    PH_ASSERT_HELD(&io->mu);
    ph_log(io->log, PH_LOG_WARN, NULL, "sio.breaker", "supplier=%s from=%s to=%s failures=%u",
           ss->id, sio_breaker_name(ss->state), sio_breaker_name(state), ss->failures);
    ss->state = state;
    ss->probe_out = 0;
    if (state == BR_OPEN) {
        ss->opened_mono = now;
        ss->opened_wall = sio_wall_ms();
    } else if (state == BR_CLOSED) {
        ss->opened_mono = ss->opened_wall = 0;
    }
}

/* An open breaker half-opens once breaker_open_ms have passed. */
void sio_breaker_tick(ph_sio *io, sio_sup *ss, int64_t now)
{
    if (ss->state == BR_OPEN && now - ss->opened_mono >= (int64_t)ss->breaker_open_ms)
        breaker_set(io, ss, BR_HALF_OPEN, now);
}

/* Any business answer closes the breaker: the supplier demonstrably answers,
 * whether the job was the probe or an order query submitted while open. */
void sio_breaker_note(ph_sio *io, sio_sup *ss, int cls, int64_t now)
{
    /* refused credentials are sio_auth_note's: the supplier is reachable */
    if (cls == CL_NEUTRAL || cls == CL_AUTH)
        return;
    sio_breaker_tick(io, ss, now);
    if (cls == CL_BUSINESS) {
        if (ss->state != BR_CLOSED)
            breaker_set(io, ss, BR_CLOSED, now);
        ss->failures = 0;
        return;
    }
    ss->failures++;
    if (ss->state == BR_HALF_OPEN ||
        (ss->state == BR_CLOSED && ss->failures >= ss->breaker_failures))
        breaker_set(io, ss, BR_OPEN, now);
}

/* Refusals and order answers of tracked jobs move the credential state;
 * exactly the job that makes a transition carries it (auth_change) to its
 * submitter, who stores the event. A refusal while marked pushes the next probe out, doubled
 * when it answers a probe (up to the ceiling); an order sent before the mark
 * and refused after it only restarts the wait. */
void sio_auth_note(ph_sio *io, sio_sup *ss, ph_sio_job *job, int cls, int64_t now)
{
    PH_ASSERT_HELD(&io->mu);
    if (!job->track_auth)
        return;
    if (cls == CL_AUTH) {
        if (!ss->auth_failed) {
            ss->auth_failed = 1;
            snprintf(ss->auth_why, sizeof ss->auth_why, "%s", job->auth_why);
            ss->auth_since_wall = sio_wall_ms();
            ss->auth_backoff_ms = ss->auth_retry_ms;
            job->auth_change = PH_SIO_AUTH_FAILED;
            ph_log(io->log, PH_LOG_WARN, NULL, "sio.auth_failed", "supplier=%s why=%s retry_ms=%u",
                   ss->id, ss->auth_why, ss->auth_backoff_ms);
        } else if (ss->auth_probe_out) {
            unsigned b = ss->auth_backoff_ms;
            ss->auth_backoff_ms = b > ss->auth_retry_max_ms / 2 ? ss->auth_retry_max_ms : b * 2;
            ph_log(io->log, PH_LOG_WARN, NULL, "sio.auth_probe_refused",
                   "supplier=%s why=%s retry_ms=%u", ss->id, job->auth_why, ss->auth_backoff_ms);
        }
        ss->auth_retry_mono = now + ss->auth_backoff_ms;
        ss->auth_probe_out = 0;
        return;
    }
    /* only an order exchange clears it: it is what routing asks about, and a
     * supplier whose queries pass while orders are refused must not flip
     * between the two states with every query */
    int order = job->op.kind == PERKHUB_OP_CARD_ORDER || job->op.kind == PERKHUB_OP_RECHARGE;
    if (cls == CL_BUSINESS && order && ss->auth_failed) {
        ss->auth_failed = 0;
        ss->auth_why[0] = '\0';
        ss->auth_since_wall = ss->auth_retry_mono = 0;
        ss->auth_backoff_ms = 0;
        ss->auth_probe_out = 0;
        job->auth_change = PH_SIO_AUTH_RESTORED;
        ph_log(io->log, PH_LOG_INFO, NULL, "sio.auth_restored", "supplier=%s", ss->id);
    }
}

void sio_health_note(sio_sup *ss, const ph_sio_job *job)
{
    if (job->sent)
        ss->sent++;
    else
        ss->not_sent++;
    switch (job->outcome) {
    case PERKHUB_OK:
        ss->ok++;
        break;
    case PERKHUB_RETRYABLE:
        ss->retryable++;
        break;
    case PERKHUB_DEFINITE_FAILURE:
        ss->definite++;
        break;
    default:
        ss->ambiguous++;
    }
}
