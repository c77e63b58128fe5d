/*
 * harness.h — end-to-end test kit: a temporary data directory and config, a real
 * perkhubd on an ephemeral loopback port, and a small HTTP client. Tests wait
 * on conditions (the port file, /v1/health), never on fixed sleeps.
 *
 * Tokens in the generated config: "mall-token" (client mall: fulfill+support),
 * "other-token" (client othermall: fulfill+support), "ops-token" (client ops:
 * ops), "support-token" (client cs: support only, sees only its own orders).
 * Products: test.card and test.card2 (card_code), test.topup (recharge), test.hidden
 * (card_code, listed: false); supplier acme (plugin example).
 */
#ifndef PH_HARNESS_H
#define PH_HARNESS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct h_daemon {
    pid_t pid;
    char dir[256];      /* temporary directory holding everything below */
    char config[320];   /* dir/perkhub.yaml */
    char log[320];      /* dir/perkhubd.log: the daemon's stderr */
    char data[320];     /* dir/data: the LMDB environment */
    char port_file[320];
    uint16_t port;
} h_daemon;

typedef struct h_resp {
    long status;
    char *body;       /* NUL-terminated */
    size_t len;
    json_t *json;     /* parsed body or NULL */
    char *headers;    /* raw response headers */
} h_resp;

/* Creates a temporary directory and writes the standard test config into it;
 * `extra` (may be NULL) is appended to the YAML verbatim (e.g. a limits: block). */
void h_setup(h_daemon *d, const char *extra);
/* Rewrites the config (for SIGHUP tests), same standard part plus `extra`. */
void h_write_config(h_daemon *d, const char *extra);
/* Starts perkhubd -c config and waits until it answers /v1/health (10 s at most).
 * Returns 0, or -1 (the log is printed to stderr). */
int h_start(h_daemon *d);
/* Sends sig and waits for exit; returns the exit status (or 128+signal). */
int h_stop(h_daemon *d, int sig);
/* Removes the temporary directory (after the daemon stopped). */
void h_cleanup(h_daemon *d);

/* One HTTP request to the daemon. token may be NULL (no Authorization). body may
 * be NULL. Returns 0 when an HTTP response arrived (any status), -1 otherwise. */
int h_http(const h_daemon *d, const char *method, const char *path, const char *token,
           const char *content_type, const char *body, size_t len, h_resp *out);
void h_resp_free(h_resp *r);

/* Shortcuts that assert on transport failure. */
h_resp h_get(const h_daemon *d, const char *path, const char *token);
h_resp h_post_json(const h_daemon *d, const char *path, const char *token, const char *json);
/* POST /v1/orders {"client_order_id":coid,"sku":sku,"quantity":qty}. */
h_resp h_order(const h_daemon *d, const char *token, const char *coid, const char *sku, int qty);
/* POST /v1/batches with csv as the body; asserts 201 unless expect_status says otherwise. */
h_resp h_import(const h_daemon *d, const char *sku, const char *csv, long expect_status);

/* Generates n unique codes "<prefix>-<i>" as CSV (header line included). Caller frees. */
char *h_codes_csv(const char *prefix, int n);

/* Reads a whole file (binary); caller frees. NULL if missing. */
char *h_read_file(const char *path, size_t *len);
/* How many times needle occurs in the file (binary-safe); -1 if unreadable. */
long h_file_count(const char *path, const char *needle);

/* Runs `perkhubd --check-store data`; returns its exit status, output in out (caller frees). */
int h_check_store(const h_daemon *d, char **out);
/* Path of a built binary from the environment (PH_PERKHUBD, PH_PERKCTL). */
const char *h_bin(const char *env_name);

#endif
