/*
 * api.h — what an HTTP handler sees: one request, its authenticated client and
 * configuration snapshot, its body, and the helpers that set the response.
 * Shared by http_api.c (which owns ph_req) and the api_*.c handlers.
 */
#ifndef PH_API_H
#define PH_API_H

#include <jansson.h>
#include <microhttpd.h>

#include "daemon.h"

enum { PH_REQ_DONE = 0, PH_REQ_SUSPENDED = 1 };

typedef struct ph_req ph_req;
typedef int (*ph_handler_fn)(ph_req *r);

struct ph_req {
    ph_daemon *d;
    struct MHD_Connection *conn;
    ph_cfg_ref *cfg;              /* held for the whole request */
    const ph_client_conf *client; /* NULL on unauthenticated routes */
    char method[8];
    char path[256];
    char reqid[48];
    char seg[2][160]; /* the path's '*' segments, URL-decoded by MHD */
    char arg[2][264]; /* handler scratch that must outlive a suspension */
    char *body;       /* the request body, NUL-terminated; owned here */
    size_t body_len, body_cap;
    int too_large;
    int64_t started_ms;

    /* response */
    unsigned status;
    json_t *resp;              /* owned; sent and freed by http_api.c */
    const char *replay_header; /* "true" adds Idempotent-Replay */
    int closing;               /* 1 adds Connection: close (the daemon is stopping) */

    /* a handler that suspends sets `resume`, called when it is resumed */
    ph_handler_fn resume;
    int resumed;
    ph_cmd cmd;      /* the command a suspended request waits for */
    uint8_t pending; /* 1 while the command is with the writer */
};

/* Sets a JSON error response {"error","message","request_id"}; returns PH_REQ_DONE. */
int ph_req_error(ph_req *r, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Maps a PH_E* status (and its message) to the HTTP error; returns PH_REQ_DONE. */
int ph_req_fail(ph_req *r, int rc, const ph_err *err);
/* Sets a JSON response (steals body); returns PH_REQ_DONE. */
int ph_req_json(ph_req *r, unsigned status, json_t *body);
/* A query argument, or NULL. Valid for the request's life. */
const char *ph_req_query(ph_req *r, const char *key);
/* Parses the body as a JSON object into *out (caller decrefs). On failure sets a
 * 400 naming line and column and returns -1. */
int ph_req_body_json(ph_req *r, json_t **out);
/* Has the client this scope (PH_SCOPE_*)? */
int ph_req_has_scope(const ph_req *r, unsigned scope);

/* Suspends the connection and hands r->cmd to the writer; `resume` builds the
 * response once the command is durable. Returns PH_REQ_SUSPENDED, or
 * PH_REQ_DONE with an error response when the store refuses the command. */
int ph_req_submit(ph_req *r, ph_handler_fn resume);

/* Handlers (api_*.c). */
int ph_api_health(ph_req *r);
int ph_api_ready(ph_req *r);
int ph_api_products_list(ph_req *r);
int ph_api_product_get(ph_req *r);
int ph_api_batch_import(ph_req *r);
int ph_api_batch_get(ph_req *r);
int ph_api_batch_void(ph_req *r);
int ph_api_order_create(ph_req *r);
int ph_api_order_get(ph_req *r);
int ph_api_order_list(ph_req *r);
int ph_api_code_lookup(ph_req *r);
int ph_api_events(ph_req *r);
int ph_api_suppliers(ph_req *r);
int ph_api_stats(ph_req *r);

#endif
