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
 * One more thread of h enforces the request-header deadline and is its timer:
 * it resumes the connections whose 401 failed-authentication throttling holds
 * back (http/auth_guard.h, config http.auth_failures) and ends its blocks.
 * The functions below are for the main thread (start, stop) or any thread
 * (quiesce, inflight).
 */
#ifndef PH_HTTP_API_H
#define PH_HTTP_API_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "base/log.h"
#include "base/status.h"
#include "config/current.h"
#include "crypto/crypto.h"
#include "store/store.h"

struct ph_fulfil;
struct ph_suppliers;
struct ph_sio;
struct ph_sched;
struct ph_metrics;
struct ph_redeem;
struct ph_notify;
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
    struct ph_metrics *metrics;     /* request latencies go here; GET /metrics; NULL = none */
    struct ph_sched *sched; /* the jobs: GET /v1/jobs, POST run, supplier sync; NULL = none (503) */
    struct ph_redeem *redeem; /* code lookups ask suppliers (supply/redeem.h); NULL = never */
    struct ph_notify *notify; /* webhook delivery: woken after an ops action; NULL = none */
    struct ph_risk *risk;     /* issuance protection (risk/risk.h); NULL = no rules, no lists */
    struct ph_repl *repl;     /* replication (repl/repl.h): health, the leader's URL; NULL = none */
    struct ph_snaps *snaps;   /* the snapshot directory (repl/snap.h); NULL = none (503) */
} ph_http_env;

/* The listener's settings (config's listen: and http: sections). */
typedef struct ph_http_opts {
    const char *address; /* IPv4 address to bind; borrowed for the call */
    uint16_t port;       /* 0 = an ephemeral port, reported in *bound */
    unsigned threads;    /* pool threads; 0 = 4 */
    /* Connections held at once (MHD's limit; beyond it the kernel's backlog
     * holds them); 0 = PH_HTTP_MAX_CONNECTIONS. The caller makes it fit the
     * descriptor limit (daemon.c). */
    unsigned max_connections;
    unsigned max_per_address; /* connections from one IP address; 0 = no limit */
    /* The last reserved_connections of max_connections are headroom: with more
     * connections open, only GET /v1/health, /v1/ready and ops clients are
     * served, anything else gets 503 overloaded with Connection: close.
     * Must be below max_connections. */
    unsigned reserved_connections;
    /* header_timeout_s: a connection must complete its request header within
     * this of opening, or of the end of its previous response (keep-alive),
     * else it is shut down (a thread of h checks once a second); it is also
     * MHD's inactivity timeout between requests and while an answer is
     * written. request_timeout_s: MHD's inactivity timeout once a header is
     * complete (the body). 0 = the defaults below. A suspended request
     * (waiting for a commit or a supplier) is never timed out. */
    unsigned header_timeout_s;
    unsigned request_timeout_s;
    /* TLS (config listen.tls; http/tls.h): PEM files read at start; NULL = plain
     * HTTP. tls_client_ca (optional): clients are asked for a certificate signed
     * by it (clients[].cert_sha256). Borrowed for the call. */
    const char *tls_cert;
    const char *tls_key;
    const char *tls_client_ca;
} ph_http_opts;

#define PH_HTTP_MAX_CONNECTIONS   10000u
#define PH_HTTP_HEADER_TIMEOUT_S  10u
#define PH_HTTP_REQUEST_TIMEOUT_S 120u

/* Listens as opts say, with a pool of threads. env is copied; what it points
 * to is borrowed and must outlive h. Requests may arrive before this returns,
 * so every service in env must be running already. Request ids are unique
 * across restarts: they start with a random per-listener prefix. On PH_OK *out
 * is owned by the caller (ph_http_stop); on error nothing is left running and
 * *out is untouched. Errors: PH_EINVAL (address is not an IPv4 address,
 * reserved_connections not below max_connections, a TLS file that is not PEM
 * or a key that is not the certificate's), PH_ENOMEM, PH_EIO (cannot listen:
 * the message names address:port; cannot read a TLS file: names it).
 * @note Main thread. */
int ph_http_start(const ph_http_env *env, const ph_http_opts *opts, ph_http **out, uint16_t *bound,
                  ph_err *err);

/* Serves one request without a socket, through the same path as one from the
 * network: framing and body limits, routing, authentication (the request
 * counts as coming from loopback), query parameters, the handler, its
 * suspensions (waited for on a condition variable here instead of MHD's
 * suspend/resume) and the response. For tests and fuzzing (tests/fuzz/
 * fuzz_http.c). method is e.g. "GET"; url is the path with its query, URL
 * encoded as on the wire (decoded here as libmicrohttpd does); header_lines
 * are "Name: value" strings, NULL-terminated (NULL: none); body[0..len) the
 * body (NULL when len is 0). The headroom does not apply (no connection).
 * On PH_OK *status is the HTTP status and *resp_body a malloc'd,
 * NUL-terminated body of *resp_len bytes that the caller wipes and frees (it
 * may hold codes). Errors (nothing served): PH_EINVAL (a header line without
 * a name and ':'), PH_ENOMEM.
 * @note Any thread but a pool thread; blocks while the request is suspended.
 * As ph_http_stop: no offline request may be running when h stops. */
int ph_http_serve_offline(ph_http *h, const char *method, const char *url,
                          const char *const *header_lines, const char *body, size_t len,
                          unsigned *status, char **resp_body, size_t *resp_len);

/* From now on new requests get 503 shutting_down (with Connection: close);
 * requests already received go on, and the 401s held back are sent now.
 * NULL is a no-op.
 * @note Any thread (an atomic flag, and a wake of h's timer thread). */
void ph_http_quiesce(ph_http *h);

/* Requests received and not yet completed, suspended ones included; 0 for NULL.
 * @note Any thread (an atomic counter). */
int ph_http_inflight(ph_http *h);

/* Is sa a loopback address (IPv4 127.0.0.0/8, IPv6 ::1 or ::ffff:127.x.y.z)?
 * NULL is not. The check behind a client's `loopback_only`: a request with such
 * a client's token from any other peer gets 403. Pure; any thread. */
int ph_http_peer_is_loopback(const struct sockaddr *sa);

/* The route table's entry i: its pattern (a star stands for one segment) and in *method
 * its method, the labels of its request metrics; NULL past the end. i == the
 * number of routes stands for requests that matched no route (404, 405):
 * "unmatched" with method "". Static strings; any thread. */
const char *ph_http_route_name(size_t i, const char **method);

/* Stops the pool (joining its threads), closes every connection, frees each
 * remaining request and frees h. No request may be suspended then:
 * libmicrohttpd aborts the process when stopped with a suspended connection,
 * and a ph_req_wake after this would touch a freed request. So quiesce, let
 * ph_http_inflight() reach 0 (ph_fulfil_stop first: it wakes every waiting
 * order), then stop. NULL is a no-op.
 * @note Main thread; never from a pool thread. */
void ph_http_stop(ph_http *h);

#endif
