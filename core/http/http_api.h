/*
 * http_api.h — the HTTP/JSON front door (libmicrohttpd): routing, bearer-token
 * authentication and scopes (and loopback_only clients), the query parameters
 * each route declares (any other is a 400 naming it, checked once in the
 * router), body limits, request ids, access logs, and suspending a connection
 * while its command waits for the group commit.
 *
 * Handlers live in api_*.c and see only ph_req (api.h); this module never
 * interprets a request body.
 */
#ifndef PH_HTTP_API_H
#define PH_HTTP_API_H

#include <stdint.h>

#include "base/status.h"

struct ph_daemon;
struct sockaddr;
typedef struct ph_http ph_http;

/* Listens on address:port (0 = an ephemeral port, reported in *bound) with a pool
 * of `threads` threads. *out is owned by the caller (ph_http_stop).
 * Errors: PH_EINVAL (address), PH_EIO (cannot bind: the message names address:port). */
int ph_http_start(struct ph_daemon *d, const char *address, uint16_t port, unsigned threads,
                  ph_http **out, uint16_t *bound, ph_err *err);

/* From now on new requests get 503 shutting_down (with Connection: close);
 * requests already received go on. */
void ph_http_quiesce(ph_http *h);

/* Requests received and not yet completed. */
int ph_http_inflight(ph_http *h);

/* Is sa a loopback address (IPv4 127.0.0.0/8, IPv6 ::1 or ::ffff:127.x.y.z)?
 * NULL is not. The check behind a client's `loopback_only`: a request with such
 * a client's token from any other peer gets 403. Pure; any thread. */
int ph_http_peer_is_loopback(const struct sockaddr *sa);

/* Closes every connection and frees h. NULL is a no-op. */
void ph_http_stop(ph_http *h);

#endif
