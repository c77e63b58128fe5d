/*
 * notify.h — webhook delivery from the outbox (docs/api.md, "Webhooks";
 * docs/store.md, "Webhooks").
 *
 * One thread owns every endpoint's deliveries. For each configured, enabled
 * endpoint it reads the events after the endpoint's stored cursor (its
 * client's own order events, and the product events it subscribed), creates
 * their deliveries through the writer (PH_CMD_WH_CREATE: the cursor moves in
 * the same transaction, one command per endpoint and pass), sends each one
 * signed (Standard Webhooks, wh_policy.h) through the I/O engine as a raw job
 * (supplier_io.h; keyed "webhook:<id>", so never on the writer's or the HTTP
 * threads), and records every attempt (PH_CMD_WH_RESULT, one command for all
 * the answers of a pass). At least once: a delivery is pending in the store
 * until an answer recorded it delivered or dead, so a kill -9 at any moment
 * re-sends, never loses. In order per order: a delivery waits while the
 * previous delivery of its order to the endpoint (`previous`) is pending;
 * deliveries of other orders go concurrently up to webhooks.max_in_flight.
 * Endpoints are independent: one that fails or was disabled by a 410 holds
 * back no other.
 * At peak (orders flowing and the cores short: wh_policy.h, ph_wh_busy) at
 * most webhooks.peak_rate deliveries a second go, and the thread runs at nice
 * 19: deliveries lag and catch up after (docs/webhooks.md, "At peak").
 *
 * Bodies carry the event cut to the mall's allow-list (store/event_view.h)
 * and the order's view as its client sees it without codes, rendered by the
 * function the daemon hands over at creation (this module includes nothing
 * of http/).
 *
 * Threads: ph_notify_create, _stop and _destroy on the daemon's main thread;
 * ph_notify_kick and ph_notify_stats from any thread. The engine's done
 * callbacks post to the module's list under its mutex (a leaf: never held
 * while calling the store or the engine).
 */
#ifndef PH_NOTIFY_H
#define PH_NOTIFY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "base/log.h"
#include "base/status.h"
#include "config/config.h"
#include "config/current.h"
#include "store/store.h"

struct ph_sio;
struct ph_metrics;
typedef struct ph_notify ph_notify;

/* The order's view for its client, without codes (the daemon's wrapper of
 * http/views.c), written as compact JSON text through put, byte for byte what
 * json_dumps prints of the tree. 0, or -1 when it could not be rendered (part
 * of it may have been written: the caller drops it). Called on the notify
 * thread. */
typedef int (*ph_notify_render_fn)(void *arg, const ph_order *o, const ph_config *cfg,
                                   void (*put)(void *sink, const char *p, size_t n), void *sink);

typedef struct ph_notify_opts {
    ph_store *store;      /* borrowed; outlives the module */
    struct ph_sio *sio;   /* borrowed; destroyed after ph_notify_stop */
    const ph_logger *log; /* borrowed */
    ph_cfg_current *cfg;  /* the running configuration (a reload is picked up) */
    ph_notify_render_fn render;
    void *render_arg;
    unsigned poll_ms; /* how often new events are looked for; 0 = 50 */
} ph_notify_opts;

/* What only this module checks of a configuration: every webhook's event
 * patterns name types a webhook carries (wh_policy.h), and every secret
 * reference resolves (env:NAME set, file:PATH readable) to a usable key.
 * PH_OK, or PH_EINVAL with "source:line:col: clients[i].webhooks[j]...: what"
 * (never the secret). Reads the environment and files; any thread. */
int ph_notify_check(const ph_config *cfg, ph_err *err);

/* Starts the delivery thread. *out is the caller's (ph_notify_stop, then
 * ph_notify_destroy). Errors: PH_EINVAL (missing options), PH_ENOMEM, PH_EIO. */
int ph_notify_create(const ph_notify_opts *opts, ph_notify **out, ph_err *err);

/* Wakes the thread now (a reload, a replay, an enable took effect). */
void ph_notify_kick(ph_notify *n);

/* One endpoint's counters since start, for GET /metrics. */
typedef struct ph_notify_stat {
    char id[PH_SKU_MAX + 1];
    uint64_t delivered, retried, dead, gone; /* attempts by result */
    uint64_t pending;                        /* deliveries pending now */
} ph_notify_stat;
/* Copies up to max endpoints' counters; returns how many there are. Any thread. */
size_t ph_notify_stats(ph_notify *n, ph_notify_stat *out, size_t max);

/* Stops the thread (joins it); exchanges still on the wire complete later
 * through the engine, unrecorded: their deliveries stay pending and go again
 * after the restart. Call before the I/O engine and the store go. NULL no-op. */
void ph_notify_stop(ph_notify *n);

/* Frees everything; after ph_notify_stop and after the I/O engine is
 * destroyed (its last done callbacks reach this module). NULL is a no-op. */
void ph_notify_destroy(ph_notify *n);

#endif
