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
 * price, balance, timestamp_ms), as the SDK promises before each call. */
void ph_op_result_init(struct perkhub_result *res);

/* Frees every pointer in res with host->mem_free (wiping codes first) and
 * re-initializes it (ph_op_result_init). */
void ph_op_result_clear(const struct perkhub_host *host, struct perkhub_result *res);

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
