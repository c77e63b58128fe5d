/*
 * http_api.h — the HTTP/JSON front door (libmicrohttpd): routing, bearer-token
 * authentication and scopes (and loopback_only clients), the query parameters
 * each route declares (any other is a 400 naming it, checked once in the
 * router), body limits, request ids, access logs, and suspending a connection
 * while its command waits for the group commit.
 *
 * Handlers live in api_*.c and see only ph_req (api.h); this module never
 * interprets a request body.
 *
 * Threads: libmicrohttpd runs a pool of threads, each with its own epoll loop;
 * every request is read, authenticated, handled and answered on them (api.h).
 * The functions below are for the main thread (start, stop) or any thread
 * (quiesce, inflight).
 */
#ifndef PH_HTTP_API_H
#define PH_HTTP_API_H

#include <stdatomic.h>
#include <stdint.h>

#include "base/log.h"
#include "base/status.h"
#include "config/current.h"
#include "crypto/crypto.h"
#include "store/store.h"

struct ph_fulfil;
struct ph_suppliers;
struct ph_sio;
struct sockaddr;
typedef struct ph_http ph_http;

/* The services the HTTP layer and its handlers may call: handed down by
 * whoever starts the listener (the daemon), so this layer never reaches up into
 * its owner. Every pointer is borrowed and must outlive the listener. */
typedef struct ph_http_env {
    const ph_logger *log;
    ph_cfg_current *cfg; /* a request holds one snapshot from first byte to last */
    ph_store *store;
    const ph_keyring *keys;
    struct ph_fulfil *fulfil;       /* supplier orders */
    struct ph_suppliers *suppliers; /* the running supplier set */
    struct ph_sio *sio;             /* the supplier I/O engine (ops asking a supplier) */
    const atomic_int *ready;        /* 1 while serving: GET /v1/ready */
} ph_http_env;

/* Listens on address:port (0 = an ephemeral port, reported in *bound) with a pool
 * of `threads` threads (0 = 4). env is copied; what it points to is borrowed and
 * must outlive h. Requests may arrive before this returns, so every service in
 * env must be running already. Request ids are unique across restarts: they
 * start with a random per-listener prefix. On PH_OK *out is owned by the caller
 * (ph_http_stop); on error nothing is left running and *out is untouched.
 * Errors: PH_EINVAL (address is not an IPv4 address), PH_ENOMEM, PH_EIO (cannot
 * listen: the message names address:port).
 * @note Main thread. */
int ph_http_start(const ph_http_env *env, const char *address, uint16_t port, unsigned threads,
                  ph_http **out, uint16_t *bound, ph_err *err);

/* From now on new requests get 503 shutting_down (with Connection: close);
 * requests already received go on. NULL is a no-op.
 * @note Any thread (an atomic flag). */
void ph_http_quiesce(ph_http *h);

/* Requests received and not yet completed, suspended ones included; 0 for NULL.
 * @note Any thread (an atomic counter). */
int ph_http_inflight(ph_http *h);

/* Is sa a loopback address (IPv4 127.0.0.0/8, IPv6 ::1 or ::ffff:127.x.y.z)?
 * NULL is not. The check behind a client's `loopback_only`: a request with such
 * a client's token from any other peer gets 403. Pure; any thread. */
int ph_http_peer_is_loopback(const struct sockaddr *sa);

/* Stops the pool (joining its threads), closes every connection, frees each
 * remaining request and frees h. No request may be suspended then:
 * libmicrohttpd aborts the process when stopped with a suspended connection,
 * and a ph_req_wake after this would touch a freed request. So quiesce, let
 * ph_http_inflight() reach 0 (ph_fulfil_stop first: it wakes every waiting
 * order), then stop. NULL is a no-op.
 * @note Main thread; never from a pool thread. */
void ph_http_stop(ph_http *h);

#endif
