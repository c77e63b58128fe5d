/*
 * harness.h — end-to-end test kit: a temporary data directory and config, a real
 * perkhubd on an ephemeral loopback port, and a small HTTP client. Tests wait
 * on conditions (the port file, /v1/health), never on fixed sleeps.
 *
 * Tokens in the generated config: "mall-token" (client mall: fulfill+support),
 * "other-token" (client othermall: fulfill+support), "ops-token" (client ops:
 * ops), "support-token" (client cs: support only, sees only its own orders).
 * Products: test.card and test.card2 (card_code), test.topup (recharge, offered by
 * the sandbox supplier sbx), test.hidden (card_code, listed: false); suppliers acme
 * (plugin manual: no operations, so it never takes an order) and sbx (plugin sandbox).
 */
#ifndef PH_HARNESS_H
#define PH_HARNESS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct h_daemon {
    pid_t pid;
    char dir[256];    /* temporary directory holding everything below */
    char config[320]; /* dir/perkhub.yaml */
    char log[320];    /* dir/perkhubd.log: the daemon's stderr */
    char data[320];   /* dir/data: the LMDB environment */
    char port_file[320];
    uint16_t port;
    const char *custom; /* h_setup_custom: the config body after the clients */
    /* set (a CA file) when the daemon listens with TLS: h_http and h_start speak
     * https to 127.0.0.1, verifying against it (tests/e2e/test_tls.c) */
    const char *tls_ca;
} h_daemon;

typedef struct h_resp {
    long status;
    char *body; /* NUL-terminated */
    size_t len;
    json_t *json;  /* parsed body or NULL */
    char *headers; /* raw response headers */
} h_resp;

/* Creates a temporary directory and writes the standard test config into it;
 * `extra` (may be NULL) is appended to the YAML verbatim (e.g. a limits: block). */
void h_setup(h_daemon *d, const char *extra);
/* As h_setup, but the config is the standard head (listener, data, key file,
 * plugin_dir, the four clients) followed by `body` — your own suppliers: and
 * products: blocks — and then `extra`. body is borrowed: keep it alive while d
 * is used (h_write_config reuses it). */
void h_setup_custom(h_daemon *d, const char *body, const char *extra);
/* Rewrites the config (for SIGHUP tests), same standard part plus `extra`. */
void h_write_config(h_daemon *d, const char *extra);
/* Starts perkhubd -c config and waits until it answers /v1/health (10 s at most).
 * Returns 0, or -1 (the log is printed to stderr). */
int h_start(h_daemon *d);
/* Sends sig and waits for exit; returns the exit status (or 128+signal). */
int h_stop(h_daemon *d, int sig);
/* Removes the temporary directory (after the daemon stopped). */
void h_cleanup(h_daemon *d);

/* A growing NUL-terminated byte buffer (start it {0}; caller frees p), and the
 * curl write callback that fills it (CURLOPT_WRITEFUNCTION, with
 * CURLOPT_WRITEDATA an h_buf *). Returns 0 (curl's error) when out of memory. */
typedef struct h_buf {
    char *p;
    size_t n;
} h_buf;
size_t h_buf_append(char *ptr, size_t size, size_t nmemb, void *buf);

/* One HTTP request to the daemon. token may be NULL (no Authorization). body may
 * be NULL. Returns 0 when an HTTP response arrived (any status), -1 otherwise. */
int h_http(const h_daemon *d, const char *method, const char *path, const char *token,
           const char *content_type, const char *body, size_t len, h_resp *out);
void h_resp_free(h_resp *r);

/* The first IPv4 address of this machine that is not loopback, into out;
 * 1 when there is one, else 0 (tests that need one then run only their
 * loopback side). */
int h_non_loopback_ipv4(char *out, size_t n);
/* GET http://host:port/path from this process, for a request that must come
 * from (and go to) an address other than the harness's 127.0.0.1. token may be
 * NULL (no Authorization); body may be NULL, else it gets the body (caller
 * frees). Returns the status; asserts on transport failure. */
long h_get_via(const char *host, uint16_t port, const char *path, const char *token, char **body);

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

/* Runs `perkhubd --check-store data` (with `--key-file dir/master.key` when that file
 * exists); returns its exit status, output in out (caller frees). */
int h_check_store(const h_daemon *d, char **out);
/* Path of a built binary from the environment (PH_PERKHUBD, PH_PERKCTL). */
const char *h_bin(const char *env_name);

/* ---- for the rules tests (concurrency, crash, secrets) ----------------------- */

/* Monotonic milliseconds. */
int64_t h_now_ms(void);
/* Wall-clock milliseconds since the epoch (what perkhubd stamps and expires by). */
int64_t h_wall_ms(void);
/* ms since the epoch as RFC 3339 UTC with milliseconds, as a CSV's expires_at
 * takes it ("2026-12-06T18:40:00.123Z"); buf holds at least 32 bytes. */
void h_rfc3339(int64_t ms, char *buf, size_t n);
/* Polls cond(arg) every few ms until it returns non-zero or timeout_ms passes:
 * 0 when it held, -1 on timeout. */
int h_wait_for(int (*cond)(void *), void *arg, int timeout_ms);
/* How many times needle occurs in hay[0..n) (binary-safe). */
long h_mem_count(const char *hay, size_t n, const char *needle);
/* Value of response header `name` (case-insensitive) copied into buf, or NULL. */
const char *h_header(const h_resp *r, const char *name, char *buf, size_t len);

/* A client connection for one thread: one curl handle, kept alive across
 * requests. Bound to the daemon's port at creation (create it after h_start).
 * Not thread-safe: one h_conn per thread. */
typedef struct h_conn h_conn;
h_conn *h_conn_new(const h_daemon *d);
void h_conn_free(h_conn *c);
/* As h_http, on the connection. Never asserts: 0 when a response arrived, -1
 * on a transport failure (daemon killed, refused, timed out); out is valid
 * (empty body) either way and must be freed. */
int h_conn_http(h_conn *c, const char *method, const char *path, const char *token,
                const char *content_type, const char *body, size_t len, h_resp *out);
/* POST /v1/orders {"client_order_id","sku","quantity"} on the connection. */
int h_conn_order(h_conn *c, const char *token, const char *coid, const char *sku, int qty,
                 h_resp *out);

/* ---- for the API tests (orders, lookup, bad input, ops, perkctl) ---------------- */

/* The whole generated config (standard part + extra) as text, for tests that
 * edit it before a SIGHUP (h_replace). Caller frees. */
char *h_config_text(const h_daemon *d, const char *extra);
/* Writes text as d->config (atomically: a temporary file, then rename). */
void h_write_config_text(h_daemon *d, const char *text);
/* A copy of s with the first occurrence of from replaced by to; asserts that
 * from occurs. Caller frees. */
char *h_replace(const char *s, const char *from, const char *to);
/* GET /v1/stats as ops, without what moves by itself ("map_size", the writer's
 * counters "writer"): equal before and after a request that must change
 * nothing. Caller json_decref's. */
json_t *h_stats(const h_daemon *d);
/* The row of sku in the "skus" array of a /v1/stats body, or NULL when there
 * is none. Borrowed from stats. */
json_t *h_stats_sku(json_t *stats, const char *sku);
/* "last_event" of /v1/stats: the sequence number of the newest event. */
long long h_last_event(const h_daemon *d);
/* Waits until needle occurs at least count times in the daemon's log:
 * 0, or -1 after timeout_ms. */
int h_log_wait(const h_daemon *d, const char *needle, long count, int timeout_ms);
/* Runs the program argv[0] (a path) with env (NAME=VALUE entries added to this
 * process's environment, NULL-terminated; may be NULL), standard input from
 * in[0..in_len) (in NULL: empty), and captures stdout and stderr into *out and
 * *err (NUL-terminated; caller frees; either pointer may be NULL to discard).
 * Returns the exit status, or 128 + signal when it was killed. */
int h_run(const char *const *argv, const char *const *env, const char *in, size_t in_len,
          char **out, char **err);
/* `mdb_dump -a` of the LMDB environment in dir without its mapsize line (the map
 * grows by itself): two stores hold the same data exactly when their dumps are
 * equal. Asserts that mdb_dump ran; the caller frees. */
char *h_mdb_dump(const char *dir);
/* Fills the file system of dir with dir/filler until it refuses (a small
 * tmpfs: a full disk); returns the bytes written. Remove dir/filler to free it. */
long long h_fs_fill(const char *dir);
/* Copies from's key file to `to` (replication: every node holds the key its
 * data is sealed with), mode kept. Asserts it was copied. */
void h_share_key(const h_daemon *from, const h_daemon *to);
/* The "replication" object of d's GET /v1/health (a new reference), or NULL
 * when d does not answer 200 (starting, restarting) or has none. */
json_t *h_health_repl(const h_daemon *d);
/* From that object: is d's role `role` ("leader", "standby")? 0 without an answer. */
int h_repl_role_is(const h_daemon *d, const char *role);
/* From that object: d's applied_seq, -1 without an answer. */
long long h_repl_applied(const h_daemon *d);
/* The bytes free for an unprivileged writer on dir's file system. */
unsigned long long h_fs_free(const char *dir);
/* meta's repl_seq in such a dump (replication, issue 19): the key "repl_seq"
 * (hex 7265706c5f736571), its u64 value little-endian in hex on the next
 * line. Asserts that it is there. */
long long h_mdb_dump_repl_seq(const char *dump_text);

/* ---- for the rules tests, continued ---------------------------------------- */

/* Starts perkhubd -c config and returns at once, without waiting for it to
 * listen (to kill it in the middle of starting). d->port stays 0. */
void h_spawn(h_daemon *d);

/* Field accessors that fail the test when the field is missing or of another type. */
const char *h_str(json_t *obj, const char *key);
long long h_int(json_t *obj, const char *key);
/* Suite teardown: a failed assertion skips the rest of a test, so SIGKILL a daemon
 * still running and keep its directory (log included) for a look. NULL is a no-op. */
void h_leftover(h_daemon *d);

/* ---- the supplier simulator (tools/supsim, PH_SUPSIM) ----------------------- */

typedef struct h_sim {
    pid_t pid;
    char dir[256];
    char port_file[320];
    char log[320];
    uint16_t port;
} h_sim;

/* Starts supsim --port 0 --port-file <dir>/port --seed 42 plus args
 * (NULL-terminated, may be NULL) and waits for its port: 0 or -1. */
int h_sim_start(h_sim *s, const char *const *args);
/* SIGTERM, wait, remove its directory. Returns supsim's exit status (128 +
 * signal when killed), -1 when it was not running. */
int h_sim_stop(h_sim *s);
/* One request to the simulator (control API /_sim/..., or its protocols);
 * asserts that it answered. */
h_resp h_sim_req(const h_sim *s, const char *method, const char *path, const char *json);
/* GET /_sim/truth, parsed (caller json_decref's). Asserts a 200 JSON answer. */
json_t *h_sim_truth(const h_sim *s);
/* The first entry of the truth's list `list` ("orders", "refs_without_order")
 * made by `protocol` (NULL: any) for perkhub order id (-1: any), borrowed from
 * t, or NULL; *count (may be NULL) gets how many entries match. */
json_t *h_sim_truth_find(json_t *t, const char *list, const char *protocol, long long id,
                         size_t *count);
/* The perkhub order id in an attempt reference "<8 hex>-<order id>-<attempt>",
 * or -1 when ref has another form. */
long long h_ref_order(const char *ref);
/* One entry of a suppliers: list for supplier `id` speaking `protocol`
 * ("gateway" or "rewards", also its plugin) at the simulator, into out[0..n):
 * "  - id: <id>\n    plugin: <protocol>\n", then `fields` (supplier lines
 * such as "    priority: 10\n"; may be NULL), then the config: block (URL, key
 * and secrets as file: references), then `config_extra` (lines indented six,
 * inside config:; may be NULL). Writes the protocol's secrets into s->dir
 * (gw.secret "gw-secret"; rw.key "rw-key", rw.whsec "rw-whsec"), which supsim
 * also uses. Returns out; asserts that it fits. */
const char *h_sim_supplier_yaml(const h_sim *s, const char *id, const char *protocol,
                                const char *fields, const char *config_extra, char *out, size_t n);

/* The ledger against the simulator's own charges (issue 11: every e2e test that
 * moves money ends with it): for every order of this daemon (its references'
 * prefix) that supsim holds, the ledger's supplier cost at the suppliers whose
 * plugin speaks supsim's protocols (gateway, rewards) -- supplier_cost plus
 * cost_correction entries of attempts, not codes from local stock -- equals
 * supsim's charged_fen; an order supsim never charged has none. Polls for up to
 * 10 s (a recharge supsim completes late is booked when perkhub hears of it),
 * then fails naming the orders. The daemon must be running. Returns how many
 * of its orders supsim charged. */
int h_ledger_matches_sim(const h_daemon *d, const h_sim *s);
/* The ledger's entries of order id, oldest first, as "kind:amount_fen " words
 * ("supplier_cost:4900 sale:5500 ") in out[0..n); asserts that they fit.
 * Returns out. */
const char *h_ledger_words(const h_daemon *d, long long id, char *out, size_t n);

/* ---- small shared pieces of the supplier tests ------------------------------ */

/* Writes text to dir/name (replacing it); asserts that it could. */
void h_write_file(const char *dir, const char *name, const char *text);
/* The compact JSON text of j (NULL: "") in buf[0..n), cut to fit, for failure
 * messages. Returns buf. */
const char *h_dump(const json_t *j, char *buf, size_t n);
/* SIGTERM and wait: asserts a clean exit (0). Under the sanitizers a memory
 * error makes perkhubd exit non-zero; the failure then shows the SUMMARY line
 * of its log. */
void h_stop_clean(h_daemon *d);
/* As h_http, with one extra request header line (e.g. "X-Sig: v"; NULL: none). */
int h_http_hdr(const h_daemon *d, const char *method, const char *path, const char *token,
               const char *content_type, const char *header, const char *body, size_t len,
               h_resp *out);
/* The "order" object of an answer of /v1/orders (borrowed from r); asserts
 * that there is one. */
json_t *h_order_of(const h_resp *r);
/* How many events of a GET /v1/events answer (its parsed body) have type
 * `type` and name order id. */
int h_events_count(json_t *feed, long long id, const char *type);
/* GET /v1/orders/{id} as token: the "order" object (caller json_decref's).
 * Asserts 200 and an object. */
json_t *h_order_get(const h_daemon *d, long long id, const char *token);
/* Polls h_order_get(d, id, token) every 10 ms until done(order, arg) holds and
 * returns that view (caller json_decref's). done may assert (it runs on the
 * test's thread). Fails the test after timeout_ms, naming `what` and showing
 * the last view. */
json_t *h_order_poll(const h_daemon *d, long long id, const char *token,
                     int (*done)(json_t *order, void *arg), void *arg, int timeout_ms,
                     const char *what);

/* ---- NATS servers for replication (issue 19; /usr/sbin/nats-server) --------- */

#define H_NATS_MAX 3

typedef struct h_nats {
    int n;
    pid_t pid[H_NATS_MAX];
    uint16_t port[H_NATS_MAX];    /* clients */
    uint16_t cluster[H_NATS_MAX]; /* routes between the servers */
    uint16_t http[H_NATS_MAX];    /* monitoring: /healthz, /jsz */
    char dir[256];                /* configs, JetStream stores, logs */
} h_nats;

/* A free loopback TCP port, found by binding port 0 and closing (free when
 * asked; the caller binds it soon). */
uint16_t h_free_port(void);
/* Starts n (1..H_NATS_MAX) nats-server processes with JetStream on loopback
 * ports in a temporary directory, clustered when n > 1 (JetStream needs 3 for
 * R3), and waits until each answers /healthz with 200 (JetStream ready).
 * Each dies with the test process (PDEATHSIG). A start where a server could
 * not come up (a port taken meanwhile by another process) is tried again on
 * new ports, three times in all. 0, or -1 with their logs on stderr. */
int h_nats_start(h_nats *ns, int n);
/* h_nats_start with the servers' max_payload ("8MB" for h_nats_start; a
 * small one makes a large batch travel in parts). */
int h_nats_start_with(h_nats *ns, int n, const char *max_payload);
/* Starts again every server killed (h_nats_kill), on its ports and its
 * JetStream store, and waits until all answer /healthz. 0, or -1 (logs on
 * stderr). */
int h_nats_restart(h_nats *ns);
/* SIGKILL server i and wait for it. */
void h_nats_kill(h_nats *ns, int i);
/* SIGKILL every server still running, remove the directory. Safe to call
 * again and on a zeroed h_nats (teardown after a failure). */
void h_nats_stop(h_nats *ns);
/* The YAML list of the running servers' URLs ("[nats://127.0.0.1:p, ...]")
 * into out[0..n). Returns out. */
const char *h_nats_urls(const h_nats *ns, char *out, size_t n);
/* The stream's last sequence as server i's monitoring endpoint (/jsz) reports
 * it, -1 when the stream is not there. */
long long h_nats_stream_last(const h_nats *ns, int i, const char *stream);

#endif
