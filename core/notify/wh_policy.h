/*
 * wh_policy.h — the pure decisions of webhook delivery (core/notify): the
 * Standard Webhooks signature, the retry backoff, what an attempt's answer
 * means, whether a delivery may go now (per-order order), and which event
 * types an endpoint's patterns take. No clock, no I/O, no state: every
 * function is a function of its arguments, any thread, unit-tested alone
 * (tests/unit/test_webhook_policy.c).
 */
#ifndef PH_WH_POLICY_H
#define PH_WH_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

#define PH_WH_KEY_MAX 256 /* bytes of a signing key */
#define PH_WH_SIG_MAX 64  /* "v1," + base64 of 32 bytes + NUL */

/* The signing key of a secret as Standard Webhooks has it: "whsec_<base64>"
 * is the base64-decoded part; anything else is used as raw bytes. key gets
 * PH_WH_KEY_MAX bytes at most; *len its length. PH_OK, or PH_EINVAL when the
 * whsec_ part is not base64, or the key is empty or too long (the message
 * never quotes the secret). */
int ph_wh_secret_key(const char *secret, uint8_t key[PH_WH_KEY_MAX], size_t *len, ph_err *err);

/* "v1,<base64 HMAC-SHA256(key, id "." ts "." body)>" into out[PH_WH_SIG_MAX].
 * PH_OK, or PH_EIO when OpenSSL fails, PH_ENOMEM. */
int ph_wh_sign(const uint8_t *key, size_t key_len, const char *id, int64_t ts, const char *body,
               size_t body_len, char out[PH_WH_SIG_MAX]);

/* A key made ready once for many signatures (the HMAC's fetch and key
 * schedule are most of a one-shot's cost). Owned by the caller; used by one
 * thread at a time. ph_wh_signer_new: NULL when OpenSSL fails or out of
 * memory. ph_wh_signer_free(NULL) does nothing. ph_wh_sign_with: what
 * ph_wh_sign writes, with the same returns. */
typedef struct ph_wh_signer ph_wh_signer;
ph_wh_signer *ph_wh_signer_new(const uint8_t *key, size_t key_len);
void ph_wh_signer_free(ph_wh_signer *s);
int ph_wh_sign_with(ph_wh_signer *s, const char *id, int64_t ts, const char *body, size_t body_len,
                    char out[PH_WH_SIG_MAX]);

/* The wait before attempt `attempt` + 1 after `attempt` failed (1-based):
 * base_ms x 2^(attempt - 1), capped at max_ms, then scaled into [1/2, 1] of
 * itself by a jitter drawn from the delivery id and the attempt (the same id
 * and attempt always wait the same: a test can bound it, a replica agrees). */
int64_t ph_wh_backoff_ms(const char *id, uint32_t attempt, int64_t base_ms, int64_t max_ms);

/* What one attempt's answer does to a delivery. */
enum {
    PH_WH_DELIVERED = 1, /* 2xx */
    PH_WH_RETRY = 2,     /* anything else, timeouts included: try again at next_at */
    PH_WH_DEAD = 3,      /* failed and the next try would fall after created + retry_for */
    PH_WH_GONE = 4,      /* 410: the endpoint is disabled; the delivery stays pending */
};
/* "delivered", "retry", "dead", "gone"; "?" otherwise. Static strings. */
const char *ph_wh_outcome_name(int outcome);

/* The outcome of an attempt that got http_status (0: no reply) at `now` for a
 * delivery created at created_at; *next_at gets now + delay for PH_WH_RETRY
 * (0 otherwise). retry_for_ms: how long after creation a delivery is tried. */
int ph_wh_outcome(int http_status, int64_t now, int64_t created_at, int64_t delay_ms,
                  int64_t retry_for_ms, int64_t *next_at);

/* Where the previous delivery of the same order to the same endpoint is. */
enum {
    PH_WH_PREV_NONE = 0,    /* the first of its order (previous null) */
    PH_WH_PREV_SETTLED = 1, /* delivered or dead */
    PH_WH_PREV_OPEN = 2,    /* pending or on the wire */
};
/* May a delivery go now? Not while on the wire already, not before next_at,
 * not while the endpoint is disabled, not while the previous delivery of its
 * order is open (deliveries of one order arrive in order), and not when
 * in_flight has reached max_in_flight. 1 yes, 0 not now. */
int ph_wh_may_send(int on_wire, int64_t next_at, int64_t now, int prev, int disabled,
                   unsigned in_flight, unsigned max_in_flight);

/* Are orders short of CPU, so that deliveries should wait? 1 when an event
 * was written within the last PH_WH_BUSY_WINDOW_MS before now (orders are
 * flowing; last_event_at 0: none seen) and the delivery thread waited for a
 * core for at least a tenth of the wall time it last measured (wait_ns of
 * wall_ns; 0 wall: unknown, not short) — a fortieth once it was busy
 * (was_busy), so that waking less often while busy does not read as a free
 * CPU. Then deliveries go at most webhooks.peak_rate a second and catch up when
 * either stops (docs/webhooks.md, "At peak"). */
#define PH_WH_BUSY_WINDOW_MS 250
int ph_wh_busy(int64_t now, int64_t last_event_at, uint64_t wait_ns, uint64_t wall_ns,
               int was_busy);

/* 1 when type matches pattern: the type itself, or "<prefix>.*" for every
 * type that starts with "<prefix>.". */
int ph_wh_event_match(const char *pattern, const char *type);

/* 1 when pattern names event types a webhook can carry: one of
 * PH_WH_EVENT_TYPES, or "<family>.*" for one of their families. */
int ph_wh_event_known(const char *pattern);

/* The event types an endpoint may subscribe: its client's order events, and
 * product events without an order (cut to their SKU and numbers). */
#define PH_WH_ORDER_EVENTS                                                                         \
    "order.accepted", "order.attempt", "order.succeeded", "order.failed", "order.unknown",         \
        "order.stuck", "order.settled", "order.corrected", "order.discrepancy",                    \
        "order.codes_voided", "order.held", "order.denied", "order.released", "order.blocked",     \
        "order.flagged", "order.granted", "grant.claimed", "grant.gifted", "grant.expired",        \
        "grant.extended", "grant.returned", "order.partial", "order.retried"
#define PH_WH_PRODUCT_EVENTS "stock.low", "stock.out", "product.delisted", "product.relisted"

/* 1 for a product event type (PH_WH_PRODUCT_EVENTS): it goes to every
 * subscribed endpoint, without an order. */
int ph_wh_product_event(const char *type);

#endif
