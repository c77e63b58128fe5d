/*
 * plugin_ops.h — the core's side of the SDK's operation structs: setting them
 * up before a plugin call and giving back what the plugin put in them.
 *
 * The SDK's ownership rule (perkhub/plugin.h, OPERATIONS): every pointer a
 * plugin stores in a perkhub_request, perkhub_result or perkhub_local_reply
 * comes from that instance's host allocator, and the core frees it. These
 * functions are the one place that knows the list of such pointers, so a field
 * added in a later ABI is freed in one place. Card codes are wiped before they
 * are freed.
 */
#ifndef PH_PLUGIN_OPS_H
#define PH_PLUGIN_OPS_H

#include <perkhub/plugin.h>

/* Zeroes res and sets the fields whose "unknown" is -1 (quantity, amount, stock,
 * price, balance, timestamp_ms, delivered_value), as the SDK promises before
 * each call. */
void ph_op_result_init(struct perkhub_result *res);

/* Frees every pointer in res with host->mem_free (wiping codes first) and
 * re-initializes it (ph_op_result_init). */
void ph_op_result_clear(const struct perkhub_host *host, struct perkhub_result *res);

/* The one gate for what a plugin says about its supplier (sup_text.h): every
 * string of res is held to the rule of its kind, and what fails is dropped
 * (freed with host->mem_free, NULL) or, for res->reason, replaced by
 * PH_SUPTEXT_REFUSED: reason; order_ref, supplier_order_id, product_id and
 * next_state (identifiers; a dropped next_state also clears res->next, so the
 * attempt is queried instead of followed with a state the plugin did not
 * give); reply_body (free text, at most 1024 bytes; without it the supplier
 * is answered "ok"), reply_content_type (free text, at most 100 bytes: no
 * line break reaches a header; else "text/plain"); each catalog item's
 * product_id (an item without a usable one is removed) and name (free text,
 * at most 128 bytes). account: the recharge account of the
 * exchange, or NULL; no string that contains it is kept. Codes are the
 * supplier's delivery, sealed by fulfil and never shown: their text is not
 * touched; an expiry before 1970 (negative: 0 is "never or unknown") is read
 * as PH_EXPIRED_LONG_AGO, an expiry long past, never as "never expires".
 * Called where plugin output enters the core: the I/O engine right after
 * parse_response (supplier_io_exchange.c) and callbacks.c right after
 * verify_callback, before anything reads res. Returns how many values were
 * dropped or replaced (for a log line; never the values). Any thread. */
#define PH_EXPIRED_LONG_AGO 1 /* ms since the epoch: expired, and not 0 (never) */
unsigned ph_op_result_clean(const struct perkhub_host *host, struct perkhub_result *res,
                            const char *account);

/* Frees url, headers and body with host->mem_free and zeroes req. */
void ph_op_request_clear(const struct perkhub_host *host, struct perkhub_request *req);

/* Frees the body with host->mem_free and zeroes reply. */
void ph_op_reply_clear(const struct perkhub_host *host, struct perkhub_local_reply *reply);

/* "catalog", "stock_check", "card_order", "recharge", "order_query", "balance";
 * "?" otherwise. Static strings. */
const char *ph_op_kind_name(int kind);

/* The name of a perkhub_status ("ok", "retryable", "definite_failure",
 * "ambiguous", "config", ...; "unknown" otherwise): the host table's
 * status_str, and the engine's log lines. Static strings. */
const char *ph_op_status_name(int status);

#endif
