/*
 * redeem.h — "was this card code redeemed?", asked of the code's supplier
 * within a bounded wait (issue 12 item 6; plugin ABI 1.3, PERKHUB_OP_REDEMPTION).
 *
 * A customer-service lookup of an issued code whose supplier's plugin has
 * PERKHUB_CAP_REDEMPTION asks through here (core/http/api_codes.c). One ask is
 * one exchange of the I/O engine (the plugin builds the request, the engine
 * sends it with the supplier's limits, the plugin parses the answer), raced
 * against a deadline kept by this module's own timer thread, so the asker
 * hears back within its wait whatever the supplier does — and no thread waits
 * for the supplier meanwhile (the HTTP request is suspended).
 *
 * What the answer does: when the supplier says "redeemed", this module
 * submits PH_CMD_CODE_REDEEMED (the code's index hash, the supplier's time,
 * the asker's `now`) — also when that answer comes after the deadline (the
 * supplier's truth is kept, never dropped: docs/design.md rule 7). "Not
 * redeemed", "cannot tell" and every failure (timeout, ambiguous reply,
 * refusal) change nothing.
 *
 * Secrets: the code and card number are copied into the ask, handed to the
 * plugin as op->code/op->card_no, and wiped when the ask is freed. They reach
 * no log line, no event and no command (the command names the code by its
 * keyed hash). The engine drops any result string of the plugin that holds
 * them (supplier_io_exchange.c).
 *
 * Threads, and who owns what:
 *   - an ask belongs to the module from ph_redeem_ask until its three holders
 *     let go: the exchange (done on the I/O thread), the deadline (the timer
 *     thread) and, when the supplier said redeemed, the command (its done on
 *     the writer thread). The module's mutex guards the deadline list and
 *     every ask's flags; it is a leaf: never held while calling the engine,
 *     the store or the asker's callback.
 *   - the asker's `done` runs exactly once, on the I/O thread, the writer or
 *     the timer thread, with no lock held: keep it short (wake a request).
 * Every function may be called from any thread unless it says otherwise.
 */
#ifndef PH_REDEEM_H
#define PH_REDEEM_H

#include <stdint.h>

#include "base/log.h"
#include "base/status.h"
#include "store/store.h"
#include "supply/supplier_io.h"
#include "supply/suppliers.h"

typedef struct ph_redeem ph_redeem;

typedef struct ph_redeem_opts {
    ph_sio *sio;          /* borrowed; the asks' exchanges go here */
    ph_store *store;      /* borrowed; PH_CMD_CODE_REDEEMED goes here */
    const ph_logger *log; /* borrowed */
} ph_redeem_opts;

/* Starts the deadline thread. On PH_OK *out is the caller's (ph_redeem_destroy).
 * Errors: PH_EINVAL (a missing option), PH_ENOMEM, PH_EIO (no thread). */
int ph_redeem_create(const ph_redeem_opts *opts, ph_redeem **out, ph_err *err);

/* One question. Every string is copied; sup is a reference the module takes
 * over in every case (released once the exchange is over, or at once when the
 * ask is refused). */
typedef struct ph_redeem_question {
    ph_supplier *sup;       /* its plugin has PERKHUB_CAP_REDEMPTION */
    ph_sio_limits limits;   /* the supplier's settings now */
    const char *product_id; /* the supplier's product id of the code, or NULL */
    const char *code;       /* the code as delivered (a secret) */
    const char *card_no;    /* its card number, or NULL (a secret) */
    uint8_t hash[32];       /* the code's index hash (store.h, CODE_REDEEMED) */
    int64_t now;            /* the asker's time: the command's now */
    const char *request_id; /* for the log line; may be NULL; copied */
} ph_redeem_question;

enum { PH_REDEEM_UNKNOWN = -1, PH_REDEEM_NO = 0, PH_REDEEM_YES = 1 };

/* What the asker hears. */
typedef struct ph_redeem_answer {
    int redeemed; /* PH_REDEEM_YES (and the command completed), _NO, or _UNKNOWN: the
                     deadline came first, the supplier could not tell, or the exchange
                     failed */
    char why[96]; /* for a log line: "timeout after 1500 ms", "ambiguous: http 502";
                     never a secret */
} ph_redeem_answer;

typedef void (*ph_redeem_done_fn)(void *arg, const ph_redeem_answer *a);

/* Asks q's supplier, and calls done(arg, answer) exactly once: when the
 * supplier said "not redeemed" or could not tell, or the exchange failed, at
 * once; when it said "redeemed", once PH_CMD_CODE_REDEEMED completed (its rc
 * does not matter: the store may have found the code voided meanwhile);
 * and at the latest wait_ms (> 0) after this call, with PH_REDEEM_UNKNOWN.
 * done may run before this returns. Returns PH_OK, or (done will not run;
 * q->sup released) PH_EINVAL (no code, no supplier), PH_ESHUTDOWN (the module
 * or the engine is stopping), PH_ENOMEM. */
int ph_redeem_ask(ph_redeem *rd, const ph_redeem_question *q, unsigned wait_ms,
                  ph_redeem_done_fn done, void *arg);

/* Asks started and not yet let go by all their holders (for tests). */
unsigned ph_redeem_pending(ph_redeem *rd);

/* Stops the deadline thread (an ask still waiting is answered PH_REDEEM_UNKNOWN
 * first) and frees the module. Call it after ph_sio_destroy and
 * ph_store_close: every exchange and command of an ask has completed then, so
 * nothing refers to the module any more. NULL is a no-op. Main thread. */
void ph_redeem_destroy(ph_redeem *rd);

#endif
