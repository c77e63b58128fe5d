/*
 * supplier_io_breaker.c — the I/O engine's per-supplier records: the
 * supplier's FIFO slot, its health counters and its circuit breaker
 * (closed, open, half-open). Called with the engine's mutex held.
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
    if (cls == CL_NEUTRAL)
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
