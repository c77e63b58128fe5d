/*
 * config.h — the daemon's YAML configuration, parsed and validated as a whole.
 *
 * A ph_config is immutable once loaded. SIGHUP builds a new one next to the old;
 * only a new config that validated completely replaces the running one, so a typo
 * never takes effect halfway. Every error names file:line:column and what was
 * expected there, e.g.
 *
 *   conf/perkhub.yaml:14:12: products[0].delivery: expected card_code or recharge, got "cardcode"
 *
 * The full reference is docs/config.md. Relative paths in the file are taken
 * relative to the working directory of perkhubd.
 */
#ifndef PH_CONFIG_H
#define PH_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "base/netaddr.h"
#include "base/status.h"

enum { PH_SCOPE_FULFILL = 1, PH_SCOPE_SUPPORT = 2, PH_SCOPE_OPS = 4 };
/* metrics.access: GET /metrics without a token from a loopback peer only (the
 * default); with a token of an ops client from anywhere; or without a token
 * from anywhere. */
enum { PH_METRICS_LOOPBACK = 0, PH_METRICS_OPS = 1, PH_METRICS_PUBLIC = 2 };
/* PH_DELIVERY_BUNDLE (issue 16): a product made of other products
 * (products[].components), each delivered as an order of its own. */
enum { PH_DELIVERY_CARD_CODE = 1, PH_DELIVERY_RECHARGE = 2, PH_DELIVERY_BUNDLE = 3 };

/* The one spelling of a delivery kind, in config, the store's product JSON,
 * events and views: "card_code" or "recharge"; NULL for any other value.
 * Static strings; any thread. */
const char *ph_delivery_name(int delivery);
/* PH_DELIVERY_* for its name; 0 for any other text (NULL included). */
int ph_delivery_parse(const char *name);

/* Where a node starts in the file: 1-based line and column; 0 when not from a
 * file (a test's literal). Messages about a setting checked after loading (a
 * plugin's key, a secret, the plugin file) name it as source:line:col. */
typedef struct ph_conf_mark {
    unsigned line, col;
} ph_conf_mark;

typedef struct ph_kv {
    char *key;   /* plugin config key, [A-Za-z0-9_.-]+ */
    char *value; /* scalar as written (a secret is a reference like "env:NAME" or "file:PATH") */
    ph_conf_mark mark; /* of the key */
} ph_kv;

/* One webhook endpoint of a client (clients[].webhooks; core/notify). The
 * marks say where each value is, for the problems only the delivery module
 * finds (an unknown event type, a secret that does not resolve). */
#define PH_WEBHOOK_EVENTS_MAX 32
typedef struct ph_webhook_conf {
    char *id;       /* ident, unique across every client */
    char *url;      /* http:// or https:// (checked at load) */
    char **secrets; /* 1 or 2 references, "env:NAME" or "file:PATH" (both sign) */
    size_t nsecrets;
    char **events; /* event types or "<family>.*" patterns, 1..PH_WEBHOOK_EVENTS_MAX */
    size_t nevents;
    int enabled;
    ph_conf_mark mark, url_mark;
    ph_conf_mark secret_mark[2];
    ph_conf_mark event_mark[PH_WEBHOOK_EVENTS_MAX];
} ph_webhook_conf;

typedef struct ph_client_conf {
    char *name;             /* ident, unique */
    uint8_t token_hash[32]; /* SHA-256 of the bearer token; the token itself is never stored */
    unsigned scopes;        /* PH_SCOPE_* bits */
    int loopback_only;      /* 1: requests with this token are refused unless the peer is
                               a loopback address (the published demo tokens) */
    /* cert_sha256: requests with this token must come over TLS with a client
     * certificate that chains to listen.tls.client_ca and whose DER SHA-256 is
     * this (cert_required 1); checked at load: only with a client_ca. */
    uint8_t cert_sha256[32];
    int cert_required;
    ph_webhook_conf *webhooks; /* where this client's events are pushed (core/notify) */
    size_t nwebhooks;
} ph_client_conf;

/* How a supplier's statement CSV is read (suppliers[].statement; money/recon.h). */
enum { PH_STMT_YUAN = 1, PH_STMT_FEN = 2 };                                   /* amount_unit */
enum { PH_STMT_RFC3339 = 1, PH_STMT_LOCAL, PH_STMT_UNIX_S, PH_STMT_UNIX_MS }; /* time_format */

typedef struct ph_statement_conf {
    /* Header names of the supplier's columns; NULL = the file has none. With a
     * statement configured, amount and at least one of ref / supplier_order_id
     * are set (checked at load). */
    char *ref;               /* our attempt reference, as we sent it */
    char *supplier_order_id; /* the supplier's order id */
    char *amount;            /* what it charged for the line */
    char *time;              /* when; optional */
    char *status;            /* optional: without it every line is a charge */
    char **success_values;   /* status values that mean "charged" (any case); set with status */
    size_t nsuccess_values;
    int amount_unit;    /* PH_STMT_YUAN ("49.40", default) or PH_STMT_FEN ("4940") */
    int time_format;    /* PH_STMT_*: rfc3339 (default), local, unix_s, unix_ms */
    int utc_offset_min; /* local: "YYYY-MM-DD HH:MM:SS" at this offset; default +480 */
} ph_statement_conf;

/* 1 when the supplier has a statement mapping in its configuration. */
int ph_statement_configured(const ph_statement_conf *st);

typedef struct ph_supplier_conf {
    char *id;     /* ident, unique */
    char *plugin; /* plugin name: <plugin_dir>/<plugin>.so */
    int enabled;
    int priority; /* higher first */
    /* 1: a start or reload that cannot start this (enabled) supplier fails;
     * 0 (default): the daemon runs with it in state error (suppliers.h). */
    int required;
    ph_kv *config;
    size_t nconfig;
    /* Where the supplier's mapping, its plugin key and its config mapping (the
     * supplier's own mark when absent) start: for the supplier set's messages. */
    ph_conf_mark mark, plugin_mark, config_mark;
    /* Network settings for the supplier I/O engine (supplier_io.h). */
    unsigned max_in_flight;       /* exchanges on the wire at once; default 256 */
    unsigned connect_timeout_ms;  /* default 3000 */
    unsigned timeout_ms;          /* whole exchange; default 10000 */
    int tls_verify;               /* default true */
    unsigned breaker_failures;    /* consecutive failures that open the breaker; default 5 */
    unsigned breaker_open_ms;     /* how long it stays open before a probe; default 10000 */
    unsigned auth_retry_ms;       /* auth_failed: wait before the first probe; default 30000 */
    unsigned auth_retry_max_ms;   /* the ceiling that wait doubles to; default 600000 */
    unsigned query_max_delay_ms;  /* ceiling of the order-query backoff; default 30000 */
    unsigned processing_window_s; /* overrides the plugin's processing window; 0 = the plugin's */
    unsigned stuck_after_s;       /* an open attempt this old is stuck; default 3600 */
    unsigned stuck_query_max_delay_s; /* the query backoff's ceiling once stuck; default 3600 */
    ph_statement_conf statement;      /* its statement CSV's columns (reconciliation) */
    int64_t amount_tolerance;         /* fen a charge may differ from cost x quantity; default 0 */
    unsigned late_check_s;            /* an attempt failed as not found is queried once more this
                                         long after; default 86400, 0 = never */
    /* sync: {catalog_every_s, stock_every_s} (supply/sync.h); 0 = not scheduled */
    unsigned sync_catalog_every_s, sync_stock_every_s;
    ph_conf_mark sync_catalog_mark, sync_stock_mark; /* where they are set; line 0 = absent */
    /* Balance alert (docs/config.md, "Alerts"): balance_below in fen, set when
     * balance_below_set; the job "balance/<id>" reads the balance every
     * balance_every_s (default 300 with balance_below; 0 = no job). The
     * plugin must have PERKHUB_CAP_BALANCE (checked when it starts). */
    int64_t balance_below;
    int balance_below_set;
    unsigned balance_every_s;
    ph_conf_mark balance_mark; /* of balance_below (or balance_every_s) */
} ph_supplier_conf;

typedef struct ph_offer_conf {
    char *supplier;     /* must name a configured supplier */
    char *supplier_sku; /* the supplier's own product id */
    int64_t cost;       /* fen */
    int64_t max_cost;   /* fen: the most its upstream cost may be to route to it; 0 = none
                           (the product's sale price then, when it has one) */
} ph_offer_conf;

/* One component of a bundle (products[].components; issue 16): `quantity`
 * units of product `sku` (a product of the same configuration that is not a
 * bundle) per unit of the bundle. Checked at load. */
#define PH_BUNDLE_COMPONENTS_MAX 16
#define PH_BUNDLE_QUANTITY_MAX   100
typedef struct ph_component_conf {
    char *sku;
    uint32_t quantity; /* 1..PH_BUNDLE_QUANTITY_MAX */
} ph_component_conf;

/* A client's own sale price for a product (products[].prices). */
typedef struct ph_price_conf {
    char *client;  /* must name a configured client */
    int64_t price; /* fen */
} ph_price_conf;

/* A product's auto-replenishment rule (products[].replenish; supply/replenish.h):
 * when its issuable stock falls below `below`, buy to - available codes from
 * the cheapest of `suppliers` offering it at or under max_unit_cost, within
 * max_per_day fen a business day (reports.utc_offset). Checked at load: to >
 * below, each supplier configured and offering the product, the product card
 * codes; --check-config also checks each supplier's plugin has card orders. */
#define PH_REPLENISH_SUPPLIERS_MAX 8
typedef struct ph_replenish_conf {
    int set; /* 0: the product has no rule */
    uint32_t below, to;
    char **suppliers;
    size_t nsuppliers;
    int64_t max_unit_cost, max_per_day;                      /* fen */
    ph_conf_mark mark;                                       /* of the replenish mapping */
    ph_conf_mark supplier_marks[PH_REPLENISH_SUPPLIERS_MAX]; /* of suppliers[j] */
} ph_replenish_conf;

enum { PH_REVIEW_BLOCK = 0, PH_REVIEW_RELEASE = 1 }; /* risk.review_default */

typedef struct ph_product_conf {
    char *sku; /* ident, unique, e.g. "iqiyi.gold.1m" */
    char *name;
    char *brand;
    char *category;
    char **tags;
    size_t ntags;
    int delivery;       /* PH_DELIVERY_* */
    int64_t face_value; /* fen */
    char *redemption_guide;
    char *code_lookalikes; /* look-alike rule of its codes, canonical ("I1L1O0"; "" none):
                              crypto/code.h */
    int listed;
    ph_offer_conf *offers;
    size_t noffers;
    /* The client's price for one unit, what the ledger books as the sale
     * (docs/config.md, "Sale prices"): `price` for every client (price_set 0:
     * none configured, the sale is booked as 0 and reports count the order as
     * unpriced), a client's entry in `prices` before it. */
    int64_t price; /* fen */
    int price_set;
    ph_price_conf *prices;
    size_t nprices;
    /* Codes expiring within this many days are never issued and do not count
     * as available: the expiry index retires them that long before their
     * expiry (docs/store.md, "Alerts"). 0 = none. */
    unsigned min_validity_days;
    /* low_stock: {below, margin}: stock.low fires below `low_below`, re-arms
     * at low_below + low_margin (default max(1, below / 10)); low_below 0 = no
     * rule. */
    int64_t low_below, low_margin;
    ph_replenish_conf replenish;
    /* delivery bundle only: 1..PH_BUNDLE_COMPONENTS_MAX components (else none) */
    ph_component_conf *components;
    size_t ncomponents;
} ph_product_conf;

/* http.auth_failures: how failed authentications from one peer address are
 * slowed and then refused (http/auth_guard.h says how each is used; checked
 * at load: block_after above slow_after, delay_max_ms at least delay_ms, each
 * exempt entry a network). */
#define PH_AUTH_EXEMPT_MAX 64
typedef struct ph_auth_failures_conf {
    unsigned window_s;     /* failures are counted over this sliding window; default 60 */
    unsigned slow_after;   /* past this many, each further 401 is delayed; default 5 */
    unsigned delay_ms;     /* the first delay, doubled per further failure; default 250 */
    unsigned delay_max_ms; /* the delay's ceiling; default 2000 */
    unsigned block_after;  /* at this many the address is refused (429); default 20 */
    unsigned block_s;      /* ... for this long; default 300 */
    char **exempt;         /* networks never throttled, as written ("10.0.0.0/8") */
    size_t nexempt;        /* <= PH_AUTH_EXEMPT_MAX */
    ph_cidr exempt_nets[PH_AUTH_EXEMPT_MAX]; /* exempt[i], parsed at load */
} ph_auth_failures_conf;

typedef struct ph_config {
    char *source;         /* file path, or "<embedded>" */
    char *listen_address; /* default "127.0.0.1" */
    uint16_t port;        /* 0 = ephemeral (the bound port goes to port_file) */
    char *port_file;      /* NULL, or where to write the bound port once listening */
    /* listen.tls: PEM files read at start (http/tls.h); NULL = plain HTTP. cert and
     * key are set together; the key file is mode 0600 (checked at load, as is
     * that each file is a regular file). client_ca (optional, needs cert): clients
     * are asked for a certificate signed by it (clients[].cert_sha256). */
    char *tls_cert;
    char *tls_key;
    char *tls_client_ca;
    char *pid_file;        /* NULL, or where perkhubd writes its pid once listening (locked
                              while it runs, removed on a clean stop) */
    char *data_dir;        /* LMDB environment directory; created if missing */
    uint64_t map_size;     /* initial LMDB map size in bytes (it grows by itself) */
    char *master_key_file; /* see crypto.h */
    int master_key_create; /* generate the key file when missing (demo only) */
    char *plugin_dir;      /* where <plugin>.so files are found */
    int log_level;         /* PH_LOG_* */
    int log_format;        /* PH_LOG_FORMAT_* (log.h); default text */
    char *log_file;        /* NULL (stderr), or the file lines are appended to (reopened
                              on SIGUSR1 for logrotate) */
    unsigned http_threads; /* libmicrohttpd thread pool size */
    /* The connection budget and timeouts (http_api.h, ph_http_opts, says what
     * each does; docs/config.md the defaults). reserved < max_connections. */
    unsigned http_max_connections;
    unsigned http_max_per_address;
    unsigned http_reserved_connections;
    unsigned http_header_timeout_s;
    unsigned http_request_timeout_s;
    /* http.allow_plain_tokens: 1 lets a bearer token come over plain HTTP from a
     * non-loopback peer (default 0: refused, http_api.c) */
    int http_allow_plain_tokens;
    /* http.auth_failures: failed authentications throttled per peer address */
    ph_auth_failures_conf auth_failures;
    uint32_t max_order_quantity; /* default 100000 */
    uint64_t max_body_bytes;     /* default 64 MiB */
    uint32_t max_import_codes;   /* codes per import request; default 1000000 */
    uint32_t max_order_wait_s;   /* longest "wait" a client may ask on POST /v1/orders; 30 */
    char *public_url;            /* how suppliers reach our callbacks, e.g.
                                    "https://perkhub.example.com"; NULL = http://<listen
                                    address>:<bound port> (loopback setups and tests) */
    /* reports.utc_offset: the business day of the daily aggregates, minutes
     * east of UTC (-720..840; default +08:00 = 480). */
    int report_utc_offset_min;
    /* Who may read GET /metrics (config `metrics.access`): PH_METRICS_* above. */
    int metrics_access;
    /* expiry.every_s: the period of the scheduler's job codes.expire, which
     * retires expired codes (1..86400; default 1). */
    uint32_t expiry_every_s;
    /* redemption.wait_ms: how long a code lookup waits for a supplier's answer
     * to "was this code redeemed?" before it answers without (1..60000; 1500) */
    uint32_t redemption_wait_ms;
    /* replenish_check_s: how often the "replenish" job looks at the stock of
     * products with a replenish rule (s; default 5). */
    unsigned replenish_check_s;
    /* webhooks: delivery settings of every endpoint (core/notify) */
    unsigned webhook_retry_for_s;   /* a delivery is tried this long; default 259200 (3 days) */
    unsigned webhook_timeout_ms;    /* per attempt; default 5000 */
    unsigned webhook_max_in_flight; /* per endpoint; default 32 */
    unsigned webhook_retry_base_ms; /* the first retry's wait before jitter; default 1000 */
    unsigned webhook_retry_max_ms;  /* the ceiling the wait doubles to; default 3600000 */
    unsigned webhook_peak_rate;     /* deliveries a second at peak (docs/webhooks.md, "At
                                       peak"); 0 = no limit; default 1000 */
    /* risk: the review queue of held orders (http/api_reviews.c, the daemon's
     * risk.reviews job) */
    unsigned risk_review_timeout_s; /* a held order's review times out after; default 3600 */
    int risk_review_default;        /* what a timed-out review does: PH_REVIEW_BLOCK (default)
                                       or PH_REVIEW_RELEASE */
    unsigned risk_review_check_s;   /* the risk.reviews job's period; default 5 */
    /* grants (issue 16; http/api_grants.c, the daemon's grants.expire job) */
    unsigned grant_min_ttl_s;      /* the shortest grant a request may ask for; default 60 */
    unsigned grant_expire_every_s; /* the grants.expire job's period; default 5 */
    /* replication: (core/repl, docs/replication.md): off unless enabled; then
     * node_id, urls and advertise_url are required (check_replication) */
    int repl_enabled;
    char *repl_node_id; /* this node's name in the lease (an identifier) */
    char **repl_urls;   /* the NATS servers, "nats://127.0.0.1:4222" */
    size_t nrepl_urls;
    char *repl_stream;          /* the JetStream stream of batches; default "PERKHUB" */
    char *repl_subject;         /* its subject; default "perkhub.batches" */
    char *repl_lease_bucket;    /* the KV bucket of the leader's lease; "perkhub_lease" */
    uint32_t repl_lease_ttl_ms; /* the lease's life without a renewal; default 3000 */
    uint32_t repl_replicas;     /* copies of the stream and the bucket; default 3 */
    uint32_t repl_ack_wait_ms;  /* the longest wait for the stream's ack; default 2000 */
    char *repl_advertise_url;   /* how the others reach this node's HTTP API */
    /* a node's report (applied, newest snapshot) holds the stream's trimming
     * back for this many lease TTLs after it was made; default 20 */
    uint32_t repl_hold_ttls;
    /* batches the stream keeps before the newest snapshot's sequence when it
     * is trimmed: a node that pulled an older snapshot still finds its
     * batches; default 1000 */
    uint32_t repl_trim_margin;
    /* a standby refuses the reads of non-ops clients (503 stale, naming the
     * leader) while its data may be older than this (ms; ph_repl_staleness_ms),
     * or of unknown age; 0 = never. Default 30000. Reloadable. */
    uint32_t repl_max_staleness_ms;
    /* snapshots: (repl/snap.h, docs/replication.md "Snapshots"): the job
     * snapshots.take copies the store into snap_dir every snap_every_s (0 =
     * only when asked) and keeps the newest snap_keep */
    char *snap_dir; /* NULL: <data_dir>/snapshots */
    unsigned snap_every_s;
    unsigned snap_keep;
    ph_client_conf *clients;
    size_t nclients;
    ph_supplier_conf *suppliers;
    size_t nsuppliers;
    ph_product_conf *products;
    size_t nproducts;
} ph_config;

/* Parses and validates the YAML file at path. On PH_OK *out is owned by the caller
 * (ph_config_free). On error *out is untouched and err says file:line:column: what.
 * Errors: PH_EIO (cannot read), PH_EINVAL (syntax or validation). */
int ph_config_load_file(const char *path, ph_config **out, ph_err *err);

/* The same from a buffer; `name` stands for the file name in messages. */
int ph_config_load_string(const char *yaml, size_t len, const char *name, ph_config **out,
                          ph_err *err);

/* The embedded default used by `perkhubd` without -c and by `make demo`: data
 * under var/, a generated key file, demo API clients, the sample products.
 * Static storage; never free it. */
const char *ph_config_default_yaml(void);

/* Frees a config and everything it owns. NULL is a no-op. */
void ph_config_free(ph_config *cfg);

/* Finds the client whose token hashes to a configured token_hash, comparing in
 * constant time. Returns a pointer into cfg (valid while cfg lives) or NULL. */
const ph_client_conf *ph_config_client_by_token(const ph_config *cfg, const char *token,
                                                size_t len);
/* The same, from the token's SHA-256 (the HTTP path hashes with the keyring's
 * digest, fetched once). */
const ph_client_conf *ph_config_client_by_hash(const ph_config *cfg, const uint8_t hash[32]);

/* Lookups by name; pointers into cfg, or NULL. */
const ph_product_conf *ph_config_product(const ph_config *cfg, const char *sku);
const ph_supplier_conf *ph_config_supplier(const ph_config *cfg, const char *id);

#endif
