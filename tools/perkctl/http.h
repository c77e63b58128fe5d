/*
 * http.h — perkctl's only way to talk to perkhubd: one blocking HTTP request
 * over a fresh libcurl easy handle, answered with the status, the parsed JSON
 * body and the request id.
 *
 * Why a fresh handle per request: perkctl sends one to four requests per run
 * (or one a second with `events --follow`), so connection reuse buys nothing
 * and a handle that lives only inside pkh_send() cannot leak state (headers,
 * a half-read body) from one request into the next.
 *
 * Thread safety: pkh_send() may be called from any one thread at a time after
 * curl_global_init() has run (main.c does that once, before anything else).
 */
#ifndef PK_HTTP_H
#define PK_HTTP_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

/* Where and as whom to connect. Everything is borrowed from the caller and
 * must outlive the pkh_send() call. */
typedef struct pkh_conf {
    const char *base_url; /* "http://127.0.0.1:8080", without trailing '/' */
    const char *token;    /* bearer token, or NULL to send no Authorization */
    long timeout_s;       /* limit for the whole exchange, seconds; 0 = none */
    /* https: the CA file the server's certificate is verified against (NULL:
     * the system's), and a client certificate and its key (PEM; NULL: none) */
    const char *cacert;
    const char *cert;
    const char *key;
} pkh_conf;

/* One query parameter. A NULL value leaves the parameter out, so optional
 * options can be listed unconditionally. Both are escaped by pkh_send(). */
typedef struct pkh_param {
    const char *key;
    const char *value;
} pkh_param;

/* What to send. All pointers are borrowed for the duration of the call. */
typedef struct pkh_request {
    const char *method;       /* "GET" or "POST" */
    const char *path;         /* "/v1/orders/7": must already be URL-safe */
    const pkh_param *query;   /* nquery parameters, or NULL */
    size_t nquery;            /* number of entries in query */
    const char *body;         /* body bytes, or NULL */
    size_t body_len;          /* length of body */
    FILE *body_file;          /* or: a stream sent as the body up to EOF */
    long long body_file_size; /* its length, or -1 to send it chunked */
    const char *content_type; /* of the body; NULL when there is none */
    FILE *out_file;           /* non-NULL: a 200's body is written here, not kept
                                 (a snapshot download); other answers as usual */
} pkh_request;

/* What came back. Owned by the caller once pkh_send() returns (whatever it
 * returns): release with pkh_response_free(). */
typedef struct pkh_response {
    long status;          /* HTTP status; 0 when no response arrived */
    json_t *json;         /* the body parsed as a JSON object or array, or NULL */
    char *body;           /* the raw body, NUL-terminated (NULL when empty) */
    size_t body_len;      /* its length without the NUL */
    char request_id[128]; /* X-Request-Id header; "" when absent */
    char repl_seq[24];    /* X-Perkhub-Repl-Seq header (a snapshot's); "" when absent */
    long long out_bytes;  /* bytes written to req->out_file */
    int out_failed;       /* writing to req->out_file failed (errno kept in out_errno) */
    int out_errno;
    int replayed;    /* 1 when the server sent "Idempotent-Replay: true" */
    char error[256]; /* why no response arrived (curl's text), when failed */
} pkh_response;

enum {
    PKH_OK = 0,         /* a response arrived (any status: check ->status) */
    PKH_ETRANSFER = -1, /* no usable response: connect failure, timeout, reset */
    PKH_EINTR = -2,     /* a blocked SIGINT/SIGTERM became pending; aborted */
    PKH_ENOMEM = -3,    /* out of memory before or while sending */
};

/* Sends req to conf->base_url + req->path (+ "?" + query) with
 * "Authorization: Bearer <token>" when conf->token is set, and reads the whole
 * answer into *resp, which is zeroed first.
 *
 * Returns PKH_OK when an HTTP response arrived, whatever its status — except
 * that a transfer which broke after the server had already sent a complete
 * JSON error (a 413 or 401 sent before the whole upload was read) also counts
 * as a response. Otherwise returns PKH_ETRANSFER with resp->error set, or
 * PKH_ENOMEM, or PKH_EINTR: a caller that blocks SIGINT/SIGTERM (events
 * --follow, to stop cleanly between polls) still gets a request in flight
 * aborted when one of them arrives. Signals that are not blocked are never
 * pending, so other callers are unaffected.
 *
 * Redirects are not followed and only http/https URLs are allowed. The body
 * buffer may hold card codes: pkh_response_free() wipes it. */
int pkh_send(const pkh_conf *conf, const pkh_request *req, pkh_response *resp);

/* Releases what *resp owns and zeroes it. Safe on a zeroed response and safe
 * to call twice. */
void pkh_response_free(pkh_response *resp);

#endif
