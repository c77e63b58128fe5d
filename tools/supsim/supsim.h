/*
 * supsim.h — the supplier simulator's shared model: the catalog, the orders it
 * keeps, the faults it injects, what it counts, and the replies its protocol
 * handlers hand to the HTTP glue.
 *
 * Threads: MHD's polling threads, the scheduler's timer and job threads, the
 * completion ticker and the notify senders share one `sim`. Everything mutable
 * in it is guarded by sim.mu unless a field says otherwise; functions named
 * sim_*_locked expect the caller to hold it, all others take it themselves.
 *
 * Ownership: a sim_reply owns its body (malloc'd, freed by sim_reply_free).
 * Orders belong to the sim and live until sim_reset or sim_free.
 */
#ifndef SUPSIM_H
#define SUPSIM_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef enum sim_proto { SIM_GATEWAY = 0, SIM_REWARDS = 1 } sim_proto;

/* What a request does, for fault matching: "order", "query", "catalog",
 * "redeem" (is this code redeemed?); the account call and anything unparseable
 * is OTHER, matched only by "*". */
typedef enum sim_op {
    SIM_OP_ORDER,
    SIM_OP_QUERY,
    SIM_OP_CATALOG,
    SIM_OP_REDEEM,
    SIM_OP_OTHER
} sim_op;

typedef enum sim_fault_kind {
    SIM_F_NONE = 0,
    SIM_F_LATENCY,
    SIM_F_HTTP_500,
    SIM_F_HTTP_502_AFTER,
    SIM_F_RESET_BEFORE,
    SIM_F_RESET_AFTER,
    SIM_F_TIMEOUT_AFTER,
    SIM_F_TRUNCATED,
    SIM_F_MALFORMED,
    SIM_F_BAD_SIGNATURE,
    SIM_F_NOT_FOUND,
    SIM_F_DUP_CALLBACK,
    SIM_F_BUSY,
    SIM_F_ECHO_ACCOUNT,
    SIM_F_UNAUTHORIZED,
    SIM_F_LATE_RECORD,     /* issue 11: answer 500, take the order latency_ms later */
    SIM_F_OTHER_CHARGE,    /* issue 11: the order is charged value_fen in all */
    SIM_F_OTHER_DELIVERED, /* issue 11: the order reports delivering value_fen per unit */
} sim_fault_kind;
#define SIM_F_LAST SIM_F_OTHER_DELIVERED

typedef enum sim_state { SIM_PROCESSING, SIM_SUCCESS, SIM_FAILED } sim_state;

typedef struct sim_product {
    sim_proto proto;
    const char *id; /* "10001" / "U10001" */
    const char *name;
    const char *brand;
    int is_card;      /* 1: card codes, 0: recharge */
    long face_fen;    /* face value */
    long price_fen;   /* what the merchant pays per unit */
    long long stock0; /* initial stock; -1 = unlimited */
} sim_product;

#define SIM_NPRODUCTS 6
/* The fixed catalog of both protocols (see README.md). */
extern const sim_product sim_catalog[SIM_NPRODUCTS];

typedef struct sim_code {
    char code[48];
    char card_number[24];
    int64_t redeemed_unix; /* when it was redeemed (POST /_sim/redeem); 0 = not */
} sim_code;

typedef struct sim_order {
    sim_proto proto;
    char ref[128];     /* customer_order_no / external_ref_id */
    char order_id[32]; /* the supplier's id */
    int product;       /* index into sim_catalog */
    int quantity;
    sim_state state;
    char account[32];       /* recharge account, "" for cards */
    char *notify_url;       /* NULL when none */
    int64_t created_unix;   /* wall clock seconds */
    int64_t created_ms;     /* monotonic ms, for not_found's age */
    int64_t complete_at_ms; /* monotonic ms when a processing recharge completes */
    long long amount_fen;
    long long delivered_fen; /* other_delivered: the face value per unit it reports; 0 = none */
    sim_code *codes;         /* quantity entries for card orders, else NULL */
    int callbacks;           /* notify POSTs sent for this order (copies and retries included) */
    int echo;        /* echo_account: every answer and notify about it carries the account */
    char *last_body; /* last legit notify body and signature header, for "replay" */
    char *last_header;
} sim_order;

typedef struct sim_fault {
    int id;
    int proto; /* -1 = any */
    int op;    /* -1 = any */
    sim_fault_kind kind;
    long count; /* hits left; -1 = until cleared. For dup_callback: copies. */
    long latency_ms;
    long jitter_ms;
    long duration_ms;
    int64_t expires_ms;  /* monotonic; 0 = never */
    long long hits;      /* requests it hit so far (this one included, in a taken copy) */
    long long value_fen; /* other_charge, other_delivered: the amount */
} sim_fault;

/* A fault's first SIM_FAULT_LOG_ALL hits are logged on stderr, then every
 * 1000th: a latency fault hits every order of a load run, and a line per
 * request would cost more than the request. */
#define SIM_FAULT_LOG_ALL 10

typedef struct sim_counts {
    long long recharges_performed, card_orders, codes_issued, order_requests, query_requests,
        catalog_requests, callbacks_sent, faults_hit;
    long long redeem_requests; /* "was this code redeemed?" questions received */
} sim_counts;

typedef struct sim_config {
    unsigned port;
    const char *port_file;
    uint64_t seed;
    const char *gw_key, *gw_secret, *rw_key, *rw_whsec;
    long complete_ms;
    int threads;              /* notify sender threads */
    unsigned max_connections; /* MHD's connection limit (held ones included) */
    long long balance_fen;    /* our prepaid balance at start and after reset; 0 = 1,000,000.00 */
} sim_config;

typedef struct sim_map sim_map; /* string -> pointer, see sim_core.c */
typedef struct sim_notifier sim_notifier;

typedef struct sim {
    sim_config cfg;
    pthread_mutex_t mu;
    uint64_t rng;
    sim_map *refs; /* "<proto>:<ref>" -> sim_refrec */
    sim_map *ids;  /* order_id -> sim_order */
    sim_order **orders;
    size_t norders, cap_orders;
    sim_order **pending; /* recharges that were processing when last looked at */
    size_t npending, cap_pending;
    long long stock[SIM_NPRODUCTS];
    /* what the catalog says now (POST /_sim/catalog changes it mid-run): the
     * price per unit, listed (0: gone from the catalog, orders refused as
     * unknown), on sale (0: listed "off"/"inactive") */
    long price_fen[SIM_NPRODUCTS];
    int listed[SIM_NPRODUCTS], on_sale[SIM_NPRODUCTS];
    long extra_items; /* a large catalog: this many more card items "E00001".., list only */
    long long balance_fen;
    long seq[2];
    sim_counts counts;
    sim_fault *faults;
    size_t nfaults, cap_faults;
    int next_fault_id;
    struct sim_deferred *deferred; /* late_record: order requests to act upon later */
    /* other_charge / other_delivered: the shape the order of shape_ref takes
     * when it is created (sim_order_shape, then sim_order_create_locked) */
    sim_fault shape;
    char shape_ref[128];
    int shape_proto;
    sim_notifier *notifier; /* its own lock */
    atomic_int stopping;    /* set once at shutdown; read without the lock */
} sim;

/* What a handler answers; the HTTP glue carries out `action`. */
typedef enum sim_action {
    SIM_ACT_SEND,       /* send status + body */
    SIM_ACT_CLOSE,      /* close the connection, answer nothing */
    SIM_ACT_HOLD_CLOSE, /* hold until the client gives up, then close */
    SIM_ACT_TRUNCATE,   /* announce len bytes, send half, then close */
} sim_action;

typedef struct sim_reply {
    unsigned status;
    char *body; /* owned */
    size_t len;
    const char *ctype;  /* static string */
    char *extra_header; /* owned, "Name: value" or NULL */
    sim_action action;
    long delay_ms;
} sim_reply;

/* A request as the handlers see it: everything borrowed for the call. */
typedef struct sim_request {
    const char *method;
    const char *path; /* URL path without the query */
    const char *body;
    size_t len;
    const char *authorization; /* header value or NULL */
    const char *arg_ref;       /* ?external_ref_id= or NULL */
    json_t *json;              /* the body as classify parsed it, or NULL: parse body */
} sim_request;

/* Classification of a request before it is acted upon. ref is "" when none. */
typedef struct sim_class {
    sim_op op;
    int is_create; /* an order-creation request */
    char ref[128];
    json_t *body; /* the body parsed (owned: json_decref), so the handler parses it
                     only once; NULL when not parsed */
} sim_class;

/* ---- sim_core.c ---------------------------------------------------------- */

/* Initialises s from cfg (borrowed strings must outlive s). 0, or -1 on ENOMEM. */
int sim_init(sim *s, const sim_config *cfg);
/* Frees every order, fault and map; the notifier must be stopped first. */
void sim_free(sim *s);
/* Drops orders, creates, counts and queued notifies; reseeds the generator. */
void sim_reset(sim *s);

uint64_t sim_rand_locked(sim *s);

int64_t sim_mono_ms(void);
/* "yyyy-MM-dd HH:mm:ss" in UTC+8 for unix time t. out >= 20 bytes. */
void sim_beijing_time(int64_t t, char *out, size_t n);
/* Parses the above back; -1 when malformed. */
int sim_parse_beijing(const char *s, int64_t *t);
/* "2026-11-24T13:00:00Z". */
void sim_iso_time(int64_t t, char *out, size_t n);
/* "28.50" for 2850. */
void sim_yuan(long long fen, char *out, size_t n);

/* A synthetic item k (0-based) of a large catalog: id "E%05ld", 10.00 face,
 * 9.50 price, stock 100. */
#define SIM_EXTRA_MAX 1000000

/* Index of the product with this id in protocol p, or -1. */
int sim_product_find(sim_proto p, const char *id);

sim_order *sim_order_find_locked(sim *s, sim_proto p, const char *ref);
sim_order *sim_order_by_id_locked(sim *s, const char *order_id);
/* Creates an order (stock, balance, codes, completion) and answers it, or NULL
 * on ENOMEM. The caller validated the request and checked the ref is unused.
 * echo (echo_account): a recharge fails at once, refunded, its notify queued,
 * and every answer about it echoes its account. */
sim_order *sim_order_create_locked(sim *s, sim_proto p, const char *ref, int product, int qty,
                                   const char *account, const char *notify_url, int echo);
/* Completes due recharges (queues their notifies). */
void sim_tick_locked(sim *s);
/* Completes o if it is a recharge whose time has come, so a query never sees
 * it processing after complete_ms even if the ticker lags. */
void sim_order_settle_locked(sim *s, sim_order *o);
/* Completes a processing order now, succeeded or failed (refunded), queuing
 * its notify: 0, or -1 when it is not processing. POST /_sim/complete. */
int sim_order_complete_locked(sim *s, sim_order *o, int success);
/* "processing" / "success" / "failed". */
const char *sim_state_name(sim_state st);
/* 1 when a not_found fault hides this order from a query now (consumes a hit). */
int sim_fault_hides_locked(sim *s, const sim_order *o);

/* Adds a fault from its JSON description; 0 with *id, or -1 with msg. */
int sim_fault_add(sim *s, json_t *desc, int *id, char *msg, size_t msglen);
int sim_fault_clear(sim *s);
/* A classified request arrived: counts it by op and, when it creates an
 * order, against its ref (any outcome), then returns the fault that hits it
 * now (consumed), or kind NONE. Never returns not_found or dup_callback (those
 * act elsewhere). */
sim_fault sim_request_begin(sim *s, sim_proto p, const sim_class *cl);
/* Copies for each notify of protocol p: 1, or the dup_callback count. */
int sim_fault_copies_locked(sim *s, sim_proto p);
json_t *sim_faults_json(sim *s);
/* 1 when this hit of f (a copy from sim_request_begin) goes to the log. */
int sim_fault_log_due(const sim_fault *f);
/* "latency", "http_500", ...: a static string. */
const char *sim_fault_name(sim_fault_kind k);

/* late_record: keeps a copy of order request rq of protocol p, to be handled
 * (as if it arrived then) delay_ms from now. 0, or -1 on ENOMEM. */
int sim_defer(sim *s, sim_proto p, const sim_request *rq, long delay_ms);
/* Handles the deferred requests whose time has come (the ticker; takes s->mu
 * itself, not held). */
void sim_deferred_run(sim *s);
/* other_charge / other_delivered: the order of ref, about to be created by
 * this request, takes f's amount from its first answer on. */
void sim_order_shape(sim *s, sim_proto p, const char *ref, const sim_fault *f);

/* The code c of an order of protocol p, or NULL (a linear scan: a test's
 * handful of orders). *order gets its order when not NULL. Needs s->mu. */
sim_code *sim_code_find_locked(sim *s, sim_proto p, const char *c, sim_order **order);

/* GET /_sim/truth. Caller json_decref's. */
json_t *sim_truth(sim *s);
/* POST /_sim/statement (sim_statement.c): the statement CSV of a period. */
void sim_statement_post(sim *s, const sim_request *rq, sim_reply *out);

/* ---- sim_crypto.c -------------------------------------------------------- */

/* Lowercase hex MD5 of data; out >= 33. */
void sim_md5_hex(const char *data, size_t n, char out[33]);
/* Lowercase hex HMAC-SHA256; out >= 65. */
void sim_hmac_hex(const char *key, const char *data, size_t n, char out[65]);
/* base64(iv || AES-256-CBC(SHA-256(secret), iv, pt)). Caller frees; NULL on error. */
char *sim_card_encrypt(const char *secret, const uint8_t iv[16], const char *pt);
/* The inverse of sim_card_encrypt: the plaintext (malloc'd, NUL-terminated), or
 * NULL when text does not decode or decrypt under secret. */
char *sim_card_decrypt(const char *secret, const char *text);
/* Decodes base64 into a malloc'd NUL-terminated buffer, *n its length. NULL if invalid. */
char *sim_base64_decode(const char *in, size_t *n);
/* Gateway signature of a JSON object of string values, skipping "sign" and
 * empty values; out >= 33. -1 when a value is not a string. */
int sim_gw_sign(json_t *params, const char *secret, char out[33]);

/* ---- sim_gateway.c / sim_rewards.c ---------------------------------------- */

/* How a notify is built: truthfully and signed, with a wrong signature, or
 * with the state flipped (success <-> failed) under the original's signature. */
typedef enum sim_nmode { SIM_N_LEGIT, SIM_N_FORGED, SIM_N_TAMPERED, SIM_N_CONTRADICT } sim_nmode;
/* SIM_N_CONTRADICT (issue 11): the state flipped (success <-> failed;
 * processing -> success) and signed correctly: a supplier contradicting itself. */

void sim_gw_classify(const sim_request *rq, sim_class *c);
/* fault: SIM_F_BUSY answers busy, SIM_F_BAD_SIGNATURE signs wrongly, else none. */
void sim_gw_handle(sim *s, const sim_request *rq, sim_fault_kind fault, sim_reply *out);
/* The notify body of o with timestamp t (caller frees; NULL on ENOMEM). Needs s->mu. */
char *sim_gw_notify_locked(sim *s, const sim_order *o, int64_t t, sim_nmode m);

void sim_rw_classify(const sim_request *rq, sim_class *c);
/* fault: SIM_F_BUSY answers rate_limited, SIM_F_ECHO_ACCOUNT makes a new
 * recharge an echoing refusal (sim_order_create_locked), else none. */
void sim_rw_handle(sim *s, const sim_request *rq, sim_fault_kind fault, sim_reply *out);
/* The webhook of o: body and X-Rewards-Signature header line, signed at t
 * (caller frees both; -1 on ENOMEM). Needs s->mu. */
int sim_rw_notify_locked(sim *s, const sim_order *o, int64_t t, sim_nmode m, char **body,
                         char **header);
/* "X-Rewards-Signature: t=..,v1=.." over body; caller frees. */
char *sim_rw_header(const char *secret, const char *body, int64_t t);

/* ---- sim_control.c -------------------------------------------------------- */

void sim_control_handle(sim *s, const sim_request *rq, sim_reply *out);

/* ---- sim_notify.c --------------------------------------------------------- */

/* Starts `threads` sender threads and the completion ticker. 0, or -1. */
int sim_notifier_start(sim *s);
/* Stops and joins them; drops what is still queued. */
void sim_notifier_stop(sim *s);
/* Queues the notify of a just-completed order (called with s->mu held). */
void sim_notify_queue_locked(sim *s, sim_order *o);
/* Drops every queued notify (reset). */
void sim_notify_drop(sim *s);
/* Sends body (plus header, a "Name: value" line or NULL) to url `copies` times
 * concurrently, now; fills statuses[0..copies) (0 = transport error) and, when
 * bodies is not NULL, bodies[0..copies) (caller frees each). Counts the POSTs
 * (and against order_id when not NULL). Returns how many got a success answer
 * (gateway: 200 "success"; rewards: 2xx). Blocks up to a few seconds. */
int sim_notify_send_now(sim *s, sim_proto p, const char *order_id, const char *url,
                        const char *body, const char *header, int copies, long *statuses,
                        char **bodies);

/* ---- sim_sched.c ---------------------------------------------------------- */

/* Why a waiter woke: its time came, the peer hung up (watched fd), or the
 * scheduler is stopping. */
typedef enum sim_wake { SIM_WAKE_DUE, SIM_WAKE_HANGUP, SIM_WAKE_STOP } sim_wake;

typedef struct sim_waiter sim_waiter;
/* Called exactly once per accepted waiter, on a scheduler thread and without
 * any scheduler lock held; the scheduler never touches w after calling it, so
 * the callee may free w (or let another thread free it). */
typedef void (*sim_wake_fn)(sim_waiter *w, sim_wake why);

/* Embedded by the caller, who owns the memory; it must stay valid until wake. */
struct sim_waiter {
    int64_t due_ms; /* monotonic (sim_mono_ms) */
    int fd;         /* >= 0: also woken (HANGUP) when this socket's peer hangs up */
    sim_wake_fn wake;
    /* the scheduler's own */
    size_t slot;
    uint64_t seq;
    sim_wake why;
    sim_waiter *next;
};

typedef struct sim_sched sim_sched;

/* Starts the timer thread. NULL on failure (out of memory, fds or threads). */
sim_sched *sim_sched_start(void);
/* Queues w until w->due_ms (or the hang-up of w->fd). 0, or -1 when stopping
 * or out of memory: then w is not queued and its wake is never called. */
int sim_sched_add(sim_sched *q, sim_waiter *w);
/* Runs fn(arg) on a thread of its own (for work that blocks), then wakes w
 * with SIM_WAKE_DUE from that thread. 0, or -1 (stopping, no memory or no
 * thread): then nothing runs and wake is never called. */
int sim_sched_spawn(sim_sched *q, sim_waiter *w, void (*fn)(void *), void *arg);
/* Refuses new waiters, wakes every queued one with SIM_WAKE_STOP, joins the
 * timer and the spawned threads, frees q. NULL is a no-op. */
void sim_sched_stop(sim_sched *q);

/* ---- sim_http.c ----------------------------------------------------------- */

typedef struct sim_http sim_http;
/* Listens on 127.0.0.1:port (0 = ephemeral) with a small pool of epoll
 * threads; a delayed or held answer suspends its connection (see sim_sched),
 * so it costs no thread and blocks no other request. At most
 * s->cfg.max_connections connections at once (no per-IP limit). Returns the
 * server with *bound set, or NULL. Free it with sim_http_stop. */
sim_http *sim_http_start(sim *s, unsigned port, unsigned *bound);
/* Wakes every suspended connection (held ones are closed), then stops the
 * daemon and frees h. Set s->stopping first so blocking control work gives up.
 * NULL is a no-op. */
void sim_http_stop(sim_http *h);

/* ---- replies --------------------------------------------------------------- */

/* Sets a JSON reply (steals j). */
/* sim_form.c: protocol 3 (plugins/example's form/MD5 protocol) at POST /form/<op>,
 * rq->path being "/<op>"; orders kept with the gateway's. */
void sim_form_handle(sim *s, const sim_request *rq, sim_reply *out);
void sim_reply_json(sim_reply *r, unsigned status, json_t *j);
void sim_reply_text(sim_reply *r, unsigned status, const char *ctype, const char *text);
void sim_reply_free(sim_reply *r);

#endif
