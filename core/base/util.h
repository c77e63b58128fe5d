/*
 * util.h — small pure helpers shared by several modules: money, time, hex and
 * identifier checks, and the one file-system helper the key file and the pid
 * file share (ph_mkdir_parents). No allocation except where stated; all
 * thread-safe.
 */
#ifndef PH_UTIL_H
#define PH_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

/* Money is held as an integer number of fen (0.01 CNY) everywhere inside perkhub;
 * it crosses the API and the config as a decimal string ("19.80", "30", "0.5").
 * Parses a non-negative decimal with at most two fraction digits into *fen.
 * Returns 0, or -1 on anything else (sign, exponent, three decimals, more than
 * PH_MONEY_MAX_YUAN); *fen is then untouched. */
#define PH_MONEY_MAX_YUAN 10000000000000LL /* 10^13 */
int ph_money_parse(const char *s, int64_t *fen);
/* Formats fen as "19.80" into buf (at least 24 bytes). Returns buf. */
char *ph_money_format(int64_t fen, char *buf, size_t len);

/* Wall clock in milliseconds since the Unix epoch. Called only outside the
 * store's write path: commands carry the time they were created at. */
int64_t ph_now_ms(void);
/* Formats ms-since-epoch as RFC 3339 UTC ("2026-11-24T19:42:00.123Z"); buf >= 32. */
char *ph_time_format(int64_t ms, char *buf, size_t len);
/* Parses "YYYY-MM-DD" (end of that day in China Standard Time, UTC+08:00, the
 * suppliers' convention) or "YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)" into ms
 * (digits past milliseconds are dropped). Reads exactly len bytes. An offset
 * can put the result at or before the epoch (0 or negative): callers for whom
 * 0 means "never" refuse it (csv.c). An instant after PH_TIME_MAX_MS (a
 * negative offset on 9999-12-31) is refused: ph_time_format could not write it
 * back with a four-digit year. 0, or -1 (*ms untouched). */
#define PH_TIME_MAX_MS INT64_C(253402300799999) /* 9999-12-31T23:59:59.999Z */
int ph_time_parse(const char *s, size_t len, int64_t *ms);

/* Lowercase hex of n bytes into out (2n+1 bytes, NUL-terminated). */
void ph_hex_encode(const uint8_t *in, size_t n, char *out);
/* Decodes exactly 2n hex digits into n bytes. Returns 0, or -1. */
int ph_hex_decode(const char *hex, uint8_t *out, size_t n);

/* True when s is a usable identifier (SKU, supplier id, client name, client
 * order id): 1..max bytes of [A-Za-z0-9._:-]. Such names can be put in logs,
 * keys and URLs without escaping. */
int ph_ident_valid(const char *s, size_t max);

/* Copies src (NULL = "") into dst (n bytes, NUL-terminated), replacing every
 * byte that is not printable ASCII with '_', truncated: for text a supplier
 * chose (its order ids, its reasons) before it goes into events and JSON. */
void ph_text_clean(char *dst, size_t n, const char *src);

/* Grows a full array of elem-byte items: to twice *cap items, or to first
 * items when *cap is 0. Returns the array (realloc'd; *cap updated), or NULL
 * when out of memory, with v still valid and *cap unchanged. The caller
 * stores the result; allocation with malloc, so free() releases it. */
void *ph_grow(void *v, size_t *cap, size_t elem, size_t first);

/* Parses a decimal uint64 with no sign, spaces or trailing bytes. 0 or -1. */
int ph_u64_parse(const char *s, uint64_t *out);

/* Writes s as a JSON string (quotes included) through put, escaped exactly as
 * jansson's json_dumps does it: '"', '\\' and control bytes (\b \f \n \r \t,
 * else \u00XX), everything else as is. The hand-written event and view texts
 * must be byte-equal to what jansson would print (their tests compare). Returns
 * 0, or -1 when s is not valid UTF-8 as jansson checks it (overlong forms,
 * surrogates and code points above U+10FFFF refused); part of it may have been
 * written then. */
int ph_json_str(const char *s, void (*put)(void *sink, const char *p, size_t n), void *sink);

/* Why len bytes of text a caller sent (a query parameter, a path segment)
 * cannot be kept or put into JSON: "contains a NUL byte (%00)" (a NUL, or its
 * overlong form C0 80) or "not valid UTF-8" (as jansson checks it, so text
 * that passes never makes json_string fail); NULL when it is fine. The reason
 * is static text, never a quote of s. The one such check: the query, the path
 * and anything else from the wire go through it. */
const char *ph_text_invalid(const char *s, size_t len);

/* mkdir -p for the directory part of path (a file about to be created there:
 * the key file, the pid file); new directories get mode 0700. PH_OK, or PH_EIO
 * naming the directory, PH_ENOMEM. */
int ph_mkdir_parents(const char *path, ph_err *err);

#endif
