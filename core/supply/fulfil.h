/*
 * fulfil.h — orders that go to suppliers: attempts, their exchanges, queries,
 * callbacks, fail-over, and clients waiting for the outcome.
 *
 * Data flows one way: the HTTP handler stores the order (PH_CMD_SUPPLY_CREATE),
 * then hands it here (ph_fulfil_begin). From then on every attempt is a small
 * state machine driven by events, all handled on fulfil's own thread:
 *
 *     exchange finished (posted by the I/O thread) -> decide (attempt.h) ->
 *                                                     store command
 *     store command durable (posted by the writer) -> final? wake waiters :
 *                                                     schedule next
 *     due time reached (fulfil's thread)           -> next exchange (a query, or
 *                                        the follow-up step the plugin asked for)
 *     begin, wait, confirm (posted by HTTP threads), resume (main thread)
 *
 * An attempt is persisted as SENDING before its order request leaves, and the
 * request is never sent twice: an ambiguous end makes it UNKNOWN, and only the
 * supplier's order query (or a verified callback, confirmed by a query) settles
 * it (docs/design.md rule 2). After a restart, ph_fulfil_resume picks every
 * unfinished attempt up from the store: SENDING becomes UNKNOWN, then queried.
 *
 * The late re-query (issue 11): an attempt failed as not found after the
 * processing window is queried once more the supplier's late_check_s later,
 * from the store's schedule (ph_store_late_due), read by fulfil's thread only
 * when its earliest entry is due; the answer goes to the store as the
 * supplier's word about a final attempt (PH_CMD_FINAL_WORD, source query),
 * which raises a discrepancy when it contradicts ours — never a move.
 *
 * Each attempt holds a reference to its supplier's running instance until it
 * is final, so disabling a supplier (SIGHUP) stops new orders going to it
 * without dropping its attempts in flight.
 *
 * Threads, and who owns what:
 *   - fulfil's thread (started by ph_fulfil_create) is the only one that
 *     touches the attempts in flight (tracks), their registry, the timer heap
 *     and the waiters. It decides, seals delivered codes, submits store
 *     commands and I/O jobs, and fires waiters' callbacks.
 *   - every other thread only posts an event to its queue: the I/O thread
 *     (an exchange finished), the store's writer (a command is durable), HTTP
 *     threads (begin, wait, confirm), the main thread (resume, the callback
 *     base on reload). Posting takes fulfil's mutex for a few pointer moves.
 *   - fulfil's mutex guards the queue, the stop flags and the callback base,
 *     and is a leaf: nothing is called while it is held, so there is no lock
 *     order to keep with the daemon's config lock, the supplier set, the I/O
 *     engine or the store (whose locks fulfil's thread takes, one at a time,
 *     through their own calls).
 *   - a supplier reference a track drops may be the last one: the plugin's
 *     shutdown and dlclose then wait for the main thread (suppliers.h).
 * Every function below may be called from any thread unless it says
 * otherwise.
 */
#ifndef PH_FULFIL_H
#define PH_FULFIL_H

#include <stddef.h>
#include <stdint.h>

#include <perkhub/plugin.h>

#include "config/config.h"
#include "crypto/crypto.h"
#include "base/log.h"
#include "base/status.h"
#include "store/store.h"
#include "supply/supplier_io.h"
#include "supply/suppliers.h"

typedef struct ph_fulfil ph_fulfil;

/* How fulfil reads the current configuration: a snapshot with a reference
 * (config/current.h). acquire and release are called from fulfil's thread
 * and from the threads that call in (never with fulfil's mutex held). */
typedef struct ph_fulfil_cfg_ops {
    void *ctx;
    const ph_config *(*acquire)(void *ctx, void **ref);
    void (*release)(void *ref);
} ph_fulfil_cfg_ops;

/* The I/O engine as fulfil uses it: zeroed, ph_sio_submit and ph_sio_allow on
 * opts.sio; a test gives a fake engine instead (tests/unit/test_fulfil.c),
 * which must keep ph_sio_submit's contract (done called exactly once unless
 * submit failed; any thread, fulfil's own included). */
typedef struct ph_fulfil_io_ops {
    void *ctx;
    int (*submit)(void *ctx, ph_sio_job *job);        /* as ph_sio_submit */
    int (*allow)(void *ctx, const char *supplier_id); /* as ph_sio_allow */
} ph_fulfil_io_ops;

typedef struct ph_fulfil_opts {
    ph_store *store;         /* borrowed; outlives fulfil */
    ph_sio *sio;             /* borrowed; unused when io is set */
    ph_fulfil_io_ops io;     /* zeroed: the real engine, sio */
    ph_suppliers *suppliers; /* borrowed */
    const ph_keyring *keys;  /* borrowed */
    const ph_logger *log;    /* borrowed */
    ph_fulfil_cfg_ops cfg;
    const char *callback_base; /* e.g. "http://127.0.0.1:8080"; copied */
    /* Replication (repl/repl.h, ph_repl_may_send): asked on fulfil's thread
     * before every exchange; 0 holds the exchange back and asks again a little
     * later, so a leader that lost its lease sends nothing (rule 2 across
     * nodes: the next leader takes the attempt up by query). NULL = always. */
    int (*may_send)(void *arg);
    void *may_send_arg;
} ph_fulfil_opts;

/* Copies opts (callback_base included) and starts fulfil's thread. On PH_OK
 * *out is the caller's (ph_fulfil_stop, then ph_fulfil_destroy); on error nothing
 * is left running and *out is untouched.
 * Errors: PH_ENOMEM, PH_EIO (the thread cannot start).
 * @note Main thread. */
int ph_fulfil_create(const ph_fulfil_opts *opts, ph_fulfil **out, ph_err *err);

/* Where suppliers send callbacks ("http://host:port", no trailing slash); set
 * once the bound port is known, and again when a reload changes public_url.
 * Copied (at most 255 bytes); exchanges started afterwards use it. */
void ph_fulfil_set_callback_base(ph_fulfil *f, const char *base);

/* The offer a new order of product p goes to, in cfg (route.h): a supplier that
 * is running, can deliver p's kind and be queried, and whose breaker lets a new
 * order through (asking may claim a half-open breaker's probe). Fills *out with
 * pointers into cfg, valid while the caller holds that snapshot.
 * Returns PH_OK, or PH_ENOTFOUND when no supplier can take it now (*out
 * untouched). */
int ph_fulfil_route(ph_fulfil *f, const ph_config *cfg, const ph_product_conf *p,
                    ph_attempt_target *out);

/* Could supplier sc take a new order of this delivery kind (PH_DELIVERY_*)
 * now: running, with that capability and order queries, and its breaker lets
 * a new order through (asking may claim a half-open breaker's probe)? The
 * predicate routing uses, for a caller that picks among offers itself (the
 * replenishment, supply/replenish.h). */
int ph_fulfil_supplier_usable(ph_fulfil *f, const ph_supplier_conf *sc, int delivery);

/* Seals a recharge account for the store (ph_crypto_seal, its own AAD) and
 * masks it for display ("138****8000"; masked is written in every case). out
 * must hold strlen(account) + PH_SEAL_OVERHEAD bytes. Returns PH_OK or
 * PH_ECRYPTO (nothing usable in out). */
int ph_fulfil_seal_account(ph_fulfil *f, const char *account, uint8_t *out, uint32_t *outlen,
                           char masked[32]);

/* Takes over a freshly created supplier order (the result of a durable
 * PH_CMD_SUPPLY_CREATE): its last attempt is SENDING and its request is sent now.
 * An order failed at creation (no attempt) or whose last attempt is no longer
 * SENDING (a replay) is left alone. account is the plaintext recharge account
 * (NULL for card orders): copied, and wiped when the attempt ends. o is only read.
 * Returns PH_OK, or PH_ENOMEM (err set): nothing was sent and the order stays
 * SENDING in the store until ph_fulfil_resume after a restart makes it UNKNOWN
 * and queries it. */
int ph_fulfil_begin(ph_fulfil *f, const ph_order *o, const char *account, ph_err *err);

/* Picks up every unfinished attempt from the store: a SENDING one is recorded
 * UNKNOWN first (it may have left), then every one is queried when due. An
 * attempt that cannot be taken up for want of memory is skipped until the next
 * start; one fulfil tracks already is left to its track. Returns PH_OK, or the
 * store's PH_EIO / PH_ENOMEM (err set) from listing the pending orders.
 * @note Main thread: at start-up, and again when a replicated leader leads
 * anew after catching up from the stream (orders applied from it have no
 * track here). */
int ph_fulfil_resume(ph_fulfil *f, ph_err *err);

/* Calls cb(arg) once: when order `id` reaches a final state, or at deadline_ms
 * (wall clock), or at shutdown, whichever is first; at once when no attempt of
 * the order is in flight. cb runs on fulfil's thread (possibly before this
 * returns, when the caller is that thread); keep it short. Waits posted after
 * ph_fulfil_begin on the same thread see that order's attempt. PH_ENOMEM. */
int ph_fulfil_wait(ph_fulfil *f, uint64_t id, int64_t deadline_ms, void (*cb)(void *arg),
                   void *arg);

/* What POST /v1/callbacks/{supplier} answers. */
typedef struct ph_callback_reply {
    unsigned status;          /* HTTP status */
    const char *content_type; /* static */
    char *body;               /* malloc'd; the caller frees */
    char error[64];           /* set on refusal: "bad_signature", "callback_mismatch", ...;
                                 a reason fits (sup_text.h, PH_SUPTEXT_REASON_MAX) */
    char message[200];        /* on refusal, for the JSON error; never a secret */
} ph_callback_reply;

/* Verifies a callback with the supplier's plugin (its verify_callback runs on
 * the calling thread), checks it matches our attempt (supplier, our reference,
 * product, quantity, amount), and asks for a confirming order query
 * (ph_fulfil_confirm: coalesced per attempt); the query's answer, not the
 * callback, moves the attempt. Forged, tampered, stale or mismatched callbacks
 * change nothing. Duplicates are acknowledged and change nothing; one for an
 * attempt already final is answered from the store at once, and when it
 * contradicts that attempt (another final state, another charge) it is kept
 * first as a discrepancy (PH_CMD_FINAL_WORD, source callback: waits for its
 * commit; the attempt does not move). The amount is no reason to refuse: the
 * confirming query's charge is compared by the store (ph_amount_mismatch).
 * cb is only read.
 * Returns PH_OK when a reply was prepared: on acceptance out->status and
 * out->body (malloc'd, the caller frees it) are what the plugin says the supplier
 * expects; on refusal out->error and out->message are set and out->body is NULL:
 * 404 not_found (no such running supplier, or it takes no callbacks), 401 the
 * plugin's reason or bad_signature, 400 malformed, 400 callback_mismatch.
 * PH_ENOMEM when the accepted callback's reply could not be allocated.
 * @note An HTTP thread. */
int ph_fulfil_callback(ph_fulfil *f, const char *supplier_id, const struct perkhub_callback *cb,
                       ph_callback_reply *out);

/* A verified callback for attempt `no` of order `id`, claiming the supplier's
 * order is in `claim` (a PERKHUB_STATE_*): query it now, or right after the
 * exchange or store command in progress (callbacks.c). `sending`: the store has
 * the attempt SENDING, so its exchange (or the command recording the answer)
 * is running and fulfil's thread will wake when it ends: the confirmation is
 * queued without waking the thread, and read at that wake-up, before the
 * exchange's event, with the same effect (a SENDING attempt idle after a
 * restart that could not record it UNKNOWN is read at its own query time). Confirmations are
 * coalesced per attempt (issue 10, defect 10: 500 replays of one notify made
 * 211 queries): a callback starts no query while a confirming query is asked
 * for and not yet started, and each claim of an attempt is confirmed by one
 * query only — a callback repeating a claim already confirmed (a replay, a
 * supplier's retry) leaves the attempt to its own scheduled queries. A new
 * claim that comes while a confirming query is on the wire is confirmed by
 * one more query after it (that query may have left before the change). So
 * an attempt gets at most one confirming query per state a supplier can
 * claim. Unknown or finished attempts, and a stopping fulfil, make it a
 * no-op. */
void ph_fulfil_confirm(ph_fulfil *f, uint64_t id, uint32_t no, int claim, int sending);

/* Order `id` was settled by hand (PH_CMD_SETTLE, durable): its attempt is
 * final, so fulfil drops the track it holds for it — at once when idle, else
 * when the exchange or command running ends (the store refuses its record
 * with PH_ESTATE, changing nothing) — and wakes whoever waits for the order.
 * Nothing is sent to the supplier for it. A no-op for an order fulfil does
 * not hold. */
void ph_fulfil_forget(ph_fulfil *f, uint64_t id);

/* The services fulfil was created with (borrowed, as in opts); valid until
 * ph_fulfil_destroy. */
const ph_fulfil_opts *ph_fulfil_options(const ph_fulfil *f);

/* Attempts in flight now (for stats and tests). */
size_t ph_fulfil_active(ph_fulfil *f);

/* Stops scheduling: returns once fulfil's thread has seen it, so it submits
 * no further I/O job; waiters are woken (on that thread) right after.
 * Exchanges and commands still running finish through their events: destroy
 * the I/O engine, ph_fulfil_flush, close the store, then ph_fulfil_destroy.
 * Main thread. */
void ph_fulfil_stop(ph_fulfil *f);

/* Returns when fulfil's thread has handled every event posted before the
 * call. After ph_sio_destroy, it turns the last exchange ends into store
 * commands before the store closes (after ph_fulfil_stop, handling a command's
 * end submits nothing, so closing the store is then safe). Not on fulfil's
 * thread. NULL is a no-op. */
void ph_fulfil_flush(ph_fulfil *f);

/* Drains the queue, ends fulfil's thread and frees everything (after
 * ph_fulfil_stop, ph_sio_destroy, ph_fulfil_flush and ph_store_close). NULL is
 * a no-op. Main thread. */
void ph_fulfil_destroy(ph_fulfil *f);

#endif
