/*
 * supplier_io.h — the core's supplier I/O engine: every byte perkhub sends to a
 * supplier goes through here (docs/design.md rule 5).
 *
 * One thread runs libcurl multi handles: thousands of exchanges in flight, no
 * thread per request. A job is ONE exchange: the engine asks the supplier's
 * plugin to build the request, sends it (or, for a PERKHUB_CAP_LOCAL plugin,
 * hands it to ops->serve_local), classifies what happened, and lets the
 * plugin parse a complete reply. Multi-step exchanges and everything that
 * needs persistence (attempt states, routing, failover) belong to the caller
 * (fulfil.c): the engine remembers nothing across jobs except per-supplier
 * health.
 *
 * Classification (the outcome of a job):
 *   - not sent: connect refused or timed out, DNS failure, TLS handshake
 *     failure, build_request refused  -> PERKHUB_DEFINITE_FAILURE, sent = 0;
 *   - sent, then timeout, reset, empty or truncated reply, HTTP 5xx
 *                                       -> PERKHUB_AMBIGUOUS, sent = 1;
 *   - a complete reply with status < 500 -> whatever parse_response returns.
 * The engine never resends a request, and keeps libcurl from doing so for
 * CARD_ORDER and RECHARGE: when a reused keep-alive connection dies before
 * any reply byte, curl would silently send the order again on a fresh one;
 * the engine aborts that and the job ends AMBIGUOUS, sent = 1.
 *
 * Per supplier: a limit on exchanges in flight (more wait in a FIFO queue), a
 * connect timeout and a total timeout, TLS verification (on unless the
 * supplier's config turns it off), keep-alive connection reuse, and a circuit
 * breaker: after `breaker_failures` consecutive transport failures it opens
 * for `breaker_open_ms`; then it half-opens and lets one probe through; the
 * probe's success closes it, a failure opens it again. What counts is
 * ph_sio_reply_class's answer (PH_SIO_CL_*): transport failures are not sent,
 * sent and then lost (timeout, reset, empty or truncated reply), HTTP 5xx, and
 * a plugin's RETRYABLE (the supplier said it is busy). Business answers (OK,
 * or a parsed DEFINITE_FAILURE: out of stock, invalid account) are not
 * failures of the supplier: any of them resets the count and closes the
 * breaker. A complete reply the plugin did not understand (AMBIGUOUS, or a
 * parse error, on a status under 500) and a refusal of our credentials count
 * for neither: the supplier is reachable; build_request refusals and shutdown
 * count for nothing either.
 *
 * Credentials: a refusal of our credentials or signature (PH_SIO_CL_AUTH: HTTP
 * 401 or 403, or a plugin reason of the class ph_sio_auth_reason names) marks
 * the supplier auth_failed — but only from a job whose submitter reports the
 * transition (job->track_auth; fulfil's order exchanges), so the stored event
 * feed never misses one. While marked, ph_sio_allow refuses new orders until
 * `auth_retry_ms` (default 30000) have passed; then it lets one order through
 * as the probe (a refusal is definite, so the probe order fails over safely
 * and tests the very path orders use). A refused probe doubles the wait up to
 * `auth_retry_max_ms` (default 600000); a business answer to a tracked order
 * exchange (the probe, or an order sent before the mark) clears it — a
 * query's does not: a supplier that answers queries but refuses orders must
 * not flip with every query. The mark lives
 * in memory like the breaker: after a restart the first refusal marks again. A probe handed out by
 * ph_sio_allow that has not finished after timeout_ms + breaker_open_ms expires, and the next
 * caller gets the probe. The breaker only informs routing (ph_sio_allow); jobs submitted anyway are
 * still sent (an order query must go out even to a sick supplier).
 *
 * Threads, and who owns what:
 *   - the I/O thread (started by ph_sio_create) owns the curl handles, the
 *     exchanges on the wire, their timers and reply buffers, and a job from
 *     the moment it leaves the incoming list until its done callback returns;
 *   - the engine's one mutex guards what other threads reach: the incoming
 *     list, the stopping flag and the per-supplier records (health, breaker,
 *     the FIFO of jobs over the in-flight limit). It is a leaf: never held
 *     while a plugin, curl or a done callback runs;
 *   - a job belongs to its submitter until ph_sio_submit and again once done
 *     has been called; in between the submitter must not touch it (fulfil
 *     posts the end to its own thread and reads the results there).
 * Every function may be called from any thread. Job callbacks run on the I/O
 * thread with no engine lock held: keep them short (post an event, signal,
 * return); they may call ph_sio_submit, ph_sio_allow and ph_sio_health_get.
 * Lock order across the core: a caller never holds one of its own locks when
 * it calls into the engine (fulfil.h), so the engine's mutex nests under
 * nothing.
 */
#ifndef PH_SUPPLIER_IO_H
#define PH_SUPPLIER_IO_H

#include <stddef.h>
#include <stdint.h>

#include <perkhub/plugin.h>

#include "base/log.h"
#include "base/status.h"
#include "supply/suppliers.h"

typedef struct ph_sio ph_sio;
typedef struct ph_sio_job ph_sio_job;
typedef void (*ph_sio_done_fn)(ph_sio_job *job);

/* Network settings of one supplier (config: suppliers[].io). */
typedef struct ph_sio_limits {
    unsigned max_in_flight;      /* 0 = 64 */
    unsigned connect_timeout_ms; /* 0 = 3000 */
    unsigned timeout_ms;         /* total, per exchange; 0 = 10000 */
    int tls_verify;              /* 1 = verify peer and host (the default) */
    unsigned breaker_failures;   /* 0 = 5 */
    unsigned breaker_open_ms;    /* 0 = 10000 */
    unsigned auth_retry_ms;      /* 0 = 30000: first wait before a probe after auth_failed */
    unsigned auth_retry_max_ms;  /* 0 = 600000: the ceiling the wait doubles to */
} ph_sio_limits;

/* How a finished exchange counts for the supplier's health. */
enum {
    PH_SIO_CL_NEUTRAL = 0, /* counts for nothing */
    PH_SIO_CL_BUSINESS,    /* the supplier answered: closes the breaker (an order's answer
                              also clears auth_failed) */
    PH_SIO_CL_FAILURE,     /* a transport failure: counts toward the breaker */
    PH_SIO_CL_AUTH         /* our credentials or signature were refused: auth_failed */
};

#define PH_SIO_WHY_MAX 32 /* "http 401" or a reason word of the auth class, NUL included */

/* 1 when `reason` (a plugin's reason word; NULL = none) says the supplier
 * refused our credentials or signature: auth_failed, bad_credentials,
 * unauthorized, unknown_app_key, signature_invalid, bad_request_signature,
 * ip_not_allowed (docs/sdk.md). Pure, any thread. */
int ph_sio_auth_reason(const char *reason);

/* How a complete reply with HTTP `status` counts (PH_SIO_CL_*), given what
 * parse_response returned (`plugin_rc`: a PERKHUB_* outcome, or anything else
 * for a parse error) and the plugin's reason (NULL = none). On PH_SIO_CL_AUTH
 * writes why ("http 401", or the reason word) into why[PH_SIO_WHY_MAX]; never
 * supplier text beyond a word of the fixed list. Pure, any thread. */
int ph_sio_reply_class(long status, int plugin_rc, const char *reason, char *why);

/* The settings of a configured supplier (config.h's suppliers[] keys). */
ph_sio_limits ph_sio_limits_of(const ph_supplier_conf *sc);

/* A plugin-less exchange (a webhook delivery): the engine sends exactly this
 * request and reports the reply's status; no plugin builds or parses it. The
 * submitter keeps every string alive until done ran. `key` names the record
 * the in-flight limit (limits.max_in_flight) and health are kept under, like
 * a supplier id ("webhook:<endpoint id>"). A complete reply of any status ends
 * PERKHUB_OK with http_status set (the caller decides what the status means);
 * no reply (refused, timeout, reset) ends as for a supplier exchange, with
 * http_status 0 and detail saying why. Raw exchanges never move a breaker or
 * the credential mark, and curl may resend them on a dead keep-alive
 * connection (their receivers deduplicate by id). */
typedef struct ph_sio_raw {
    const char *key;            /* required */
    const char *url;            /* required: http or https */
    const char *method;         /* NULL = POST */
    const char *const *headers; /* "Name: value" lines */
    size_t nheaders;            /* at most PERKHUB_MAX_HEADERS */
    const char *body;           /* may be NULL */
    size_t body_len;
} ph_sio_raw;

typedef struct ph_sio_opts {
    const ph_logger *log; /* borrowed; outlives the engine */
} ph_sio_opts;

/*
 * One exchange. The submitter fills the inputs, keeps the struct and every
 * string op points to alive until `done` has run, and then owns the results
 * (ph_sio_job_clear frees them).
 */
struct ph_sio_job {
    /* ---- inputs ---- */
    ph_supplier *sup;      /* a reference the submitter holds until done ran; NULL for raw */
    const ph_sio_raw *raw; /* non-NULL: a plugin-less exchange (above); sup and op unused */
    struct perkhub_op op;  /* op.struct_size is set by the engine */
    ph_sio_limits limits;  /* the supplier's settings at submission */
    int64_t not_before_ms; /* do not start before this wall-clock time; 0 = now */
    ph_sio_done_fn done;   /* required; called once, on the I/O thread */
    int track_auth;        /* 1: the submitter reports auth_change (stores the event);
                              only such jobs move the supplier's credential state */
    void *arg;             /* for the submitter */

    /* ---- results, valid in and after done ---- */
    int outcome;               /* PERKHUB_OK / _RETRYABLE / _DEFINITE_FAILURE / _AMBIGUOUS */
    int sent;                  /* 1: the request (or part of it) may have reached the supplier */
    int http_status;           /* 0 when no complete reply */
    char detail[256];          /* what happened, for logs and reasons; never a secret:
                                  "connect refused", "timeout after sending (10000 ms)",
                                  "http 502", "truncated reply", "plugin: bad signature" */
    struct perkhub_result res; /* what parse_response said (only when a reply was parsed) */
    int parsed;                /* 1 when parse_response ran and res is meaningful */
    int auth_change;           /* track_auth jobs: PH_SIO_AUTH_FAILED when this job marked the
                                  supplier auth_failed, PH_SIO_AUTH_RESTORED when it cleared
                                  the mark, else 0 (exactly one job sees each transition) */
    char auth_why[PH_SIO_WHY_MAX]; /* PH_SIO_CL_AUTH: "http 401" or the reason word */

    ph_sio_job *next_; /* private to the engine */
    void *priv_;       /* private to the engine */
};

enum { PH_SIO_AUTH_FAILED = 1, PH_SIO_AUTH_RESTORED = 2 };

/* Starts the I/O thread. *out is the caller's (ph_sio_destroy).
 * Process-wide effects: calls curl_global_init (balanced in ph_sio_destroy), and
 * raises the RLIMIT_NOFILE soft limit to the hard limit, since every exchange in
 * flight holds a socket (the multi handle keeps at most half that many idle
 * keep-alive connections).
 * Errors: PH_EINVAL (no opts or logger), PH_ENOMEM, PH_EIO (curl or thread start). */
int ph_sio_create(const ph_sio_opts *opts, ph_sio **out, ph_err *err);

/* Queues a job; returns at once. Errors: PH_ESHUTDOWN (stopping; done will not
 * run), PH_EINVAL (no supplier and no raw request, or no done), PH_ENOMEM; on
 * any error done will not run. */
int ph_sio_submit(ph_sio *io, ph_sio_job *job);

/* Routing's question: may a NEW order go to supplier `id` now? 0 while its
 * breaker is open or it is auth_failed within its wait, 1 otherwise (closed,
 * or half-open, or auth_failed past its wait, with no probe out: the caller's
 * order becomes the probe). */
int ph_sio_allow(ph_sio *io, const char *id);

/* A supplier's health, for GET /v1/suppliers. Suppliers never seen are closed
 * with zero counts. Plain data. */
typedef struct ph_sio_health {
    const char *breaker; /* "closed", "open", "half_open"; static */
    unsigned consecutive_failures;
    int64_t opened_at;  /* ms; 0 when closed */
    unsigned in_flight; /* exchanges on the wire now */
    unsigned queued;    /* waiting for the in-flight limit or not_before */
    uint64_t sent, ok, definite, retryable, ambiguous, not_sent;
    int auth_failed;               /* 1: our credentials were refused (see "Credentials") */
    char auth_why[PH_SIO_WHY_MAX]; /* "http 401" or the reason word; "" when not */
    int64_t auth_failed_at;        /* ms, wall; 0 when not */
    int64_t auth_probe_at;         /* ms, wall: a probe may go from then; 0 when not */
} ph_sio_health;

void ph_sio_health_get(ph_sio *io, const char *id, ph_sio_health *out);

struct ph_metrics;
/* From now on each finished exchange's duration goes to m (metrics.h; borrowed:
 * it must outlive io). NULL stops it. @note Any thread (an atomic pointer); the
 * daemon sets it once after ph_sio_create. */
void ph_sio_metrics_set(ph_sio *io, struct ph_metrics *m);

/* Frees a finished job's results (res and its strings, with the supplier's host
 * allocator: call it before releasing job->sup); the inputs stay. NULL is a no-op. */
void ph_sio_job_clear(ph_sio_job *job);

/* Stops: jobs not started complete at once with PERKHUB_DEFINITE_FAILURE,
 * sent 0, detail "shutting down"; exchanges on the wire are abandoned and
 * complete with PERKHUB_AMBIGUOUS (sent 1): the caller keeps them unknown and
 * queries them after the restart. Joins the thread and frees. NULL is a no-op. */
void ph_sio_destroy(ph_sio *io);

#endif
