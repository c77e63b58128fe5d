/*
 * auth_guard.h — failed-authentication throttling per peer address (issue 15
 * item 6; config http.auth_failures, docs/api.md "Failed authentications").
 *
 * The HTTP layer tells the guard of every failed authentication (no bearer
 * token, a malformed one, an unknown one: a 401; a valid token without the
 * scope is a 403 of a known client and is not a failure) and asks it, before
 * it looks at any token, whether the peer's address is refused. Per address
 * it keeps a sliding count of failures over window_s:
 *   - up to slow_after failures: the 401 goes at once;
 *   - each further one: the 401 is held back delay_ms, doubled per failure up
 *     to delay_max_ms (the caller suspends the connection and a timer resumes
 *     it: no thread sleeps);
 *   - the failure that brings the count to block_after blocks the address
 *     for block_s: every request from it (but the probes /v1/health and
 *     /v1/ready, the caller's rule) gets 429 too_many_failures with
 *     Retry-After, before any token is looked at, so guessing stops. A failure
 *     after the block ended while the window still holds block_after blocks
 *     it again.
 * An address inside one of the `exempt` networks is never counted nor refused.
 * A successful authentication does not reset an address's count: an attacker
 * holding one good token must not launder guesses between them.
 *
 * Counting: a window is kept as 11 buckets of window_s / 10, so a failure
 * counts for at least window_s and at most window_s + a tenth of it. A
 * configuration whose window_s differs from the one the counts were kept with
 * (a reload) restarts every count; blocks keep their end.
 *
 * Memory is bounded: a fixed table of `capacity` addresses (the HTTP layer
 * uses PH_AUTH_GUARD_ADDRESSES) allocated at create. An address not in the
 * table takes a free entry or, once the table is full, the one whose last
 * failure or refusal is the oldest — its count and its block go with it (an
 * attacker needs that many fresh failing addresses to free one; IPv6 peers
 * are counted per full address, as the connection reports it).
 *
 * Cost for a good request: ph_auth_guard_refused takes no lock unless the
 * address may be blocked (one relaxed load of a per-hash-slot count of blocked
 * addresses, 4096 slots, after a keyed hash of the address); a good token
 * never calls ph_auth_guard_fail. With thousands of addresses blocked at once
 * most slots count one, and the check takes the lock for a short lookup.
 *
 * Ownership: the HTTP listener creates one guard (ph_http_start) and frees it
 * after its threads stopped; no global state. The settings are read from the
 * configuration snapshot each call is given (so a reload applies to the next
 * request), the clock is the caller's `now_ms` (monotonic milliseconds: unit
 * tests drive it by hand).
 *
 * Threads: every function may be called from any thread at once (pool threads
 * for requests, the listener's timer thread for ph_auth_guard_tick), except
 * create and free (the owner's). One mutex guards the table; it is a leaf:
 * nothing is called while it is held but atomics (the metrics registry's
 * counters are added after it is released; the blocked-addresses gauge is
 * stored under it, so the last store is the last change).
 *
 * Metrics (the registry given at create; NULL = none): perkhub_auth_failures_total
 * for each ph_auth_guard_fail, perkhub_auth_throttled_total{action="delayed"}
 * for each delayed 401 and {action="refused"} for each refusal, and
 * perkhub_auth_blocked_addresses.
 */
#ifndef PH_AUTH_GUARD_H
#define PH_AUTH_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include "base/netaddr.h"
#include "base/status.h"
#include "config/config.h"

struct ph_metrics;
typedef struct ph_auth_guard ph_auth_guard;

#define PH_AUTH_GUARD_ADDRESSES 65536u /* addresses the listener's guard tracks at once */

/* A guard for up to `capacity` addresses (at least 1). On PH_OK *out is the
 * caller's (ph_auth_guard_free). Errors: PH_EINVAL (capacity 0 or above
 * 2^24), PH_ENOMEM (the table: about 90 bytes per address), PH_ECRYPTO (no
 * random bytes for the hash key). @note Owner. */
int ph_auth_guard_create(size_t capacity, struct ph_metrics *m, ph_auth_guard **out, ph_err *err);
/* Frees g (NULL is a no-op). No call may be running. @note Owner. */
void ph_auth_guard_free(ph_auth_guard *g);

/* Is address a refused now? 0: no, go on (also for an exempt address, and
 * after a block's end, which this notices); else the seconds left of its
 * block, rounded up (at least 1: the Retry-After), counted as a refusal. */
unsigned ph_auth_guard_refused(ph_auth_guard *g, const ph_auth_failures_conf *c, const ph_ipaddr *a,
                               int64_t now_ms);

/* What to do with one failed authentication's 401. */
typedef struct ph_auth_verdict {
    unsigned failures; /* the address's failures in the window, this one included;
                          0 for an exempt address (not counted) */
    unsigned delay_ms; /* hold the 401 back this long; 0: send it now */
    int blocked;       /* 1: this failure blocked the address (log it: once per block) */
} ph_auth_verdict;

/* Counts a failed authentication from a at now_ms and says how to answer it
 * (*v). Never fails: an address the full table has no room for takes the
 * oldest entry's place. */
void ph_auth_guard_fail(ph_auth_guard *g, const ph_auth_failures_conf *c, const ph_ipaddr *a,
                        int64_t now_ms, ph_auth_verdict *v);

/* Ends every block whose time is up at now_ms (so the gauge and the lock-free
 * check do not wait for the address's next request). Returns the addresses
 * blocked after it. The listener's timer thread calls it once a second. */
unsigned ph_auth_guard_tick(ph_auth_guard *g, int64_t now_ms);

/* Addresses blocked now, as of the last change or tick (relaxed read). */
unsigned ph_auth_guard_blocked(ph_auth_guard *g);

#endif
