/*
 * store.h — perkhub's state in LMDB, and the one writer that changes it.
 *
 * Every state change is a *command* (ph_cmd) handed to the store's writer
 * thread. The writer takes all commands that queued up while the previous
 * commit was flushing, applies each in a nested transaction (so one failing
 * command changes nothing and does not disturb its neighbours), appends their
 * events, and commits the batch durably with one fsync: group commit
 * (DESIGN.md rule 6). A command completes — its `done` callback runs, or
 * ph_store_exec() returns — only after that commit, so anything acknowledged
 * to a client survives kill -9.
 *
 * Applying a command is a deterministic function of the database and the
 * command: the time is the command's `now`, nonces and keyed hashes are
 * computed before submission. A replica replaying the same commands reaches
 * the same state.
 *
 * Reads (ph_store_*_get/list/find) run on the calling thread in their own
 * read-only snapshot and never wait for the writer.
 *
 * The on-disk layout is documented in docs/store.md; SCHEMA_VERSION in store.c
 * is checked at open and a mismatch refuses to start.
 *
 * Thread safety: every function may be called from any thread, except that
 * ph_store_close must not race with any other call.
 */
#ifndef PH_STORE_H
#define PH_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define PH_SKU_MAX            64       /* bytes of a SKU, supplier id or client name */
#define PH_ORDER_ID_MAX       128      /* bytes of a client order id */
#define PH_NOTE_MAX           256      /* bytes of a batch note or void reason */
#define PH_ORDER_QUANTITY_MAX 10000000 /* codes in one order, whatever the config says */

enum ph_code_state {
    PH_CODE_AVAILABLE = 1,
    PH_CODE_RESERVED = 2, /* held for an order still at a supplier (next issue) */
    PH_CODE_ISSUED = 3,
    PH_CODE_REDEEMED = 4,
    PH_CODE_VOIDED = 5,
    PH_CODE_EXPIRED = 6,
};

enum ph_order_state {
    PH_ORDER_ACCEPTED = 1,
    PH_ORDER_PROCESSING = 2,
    PH_ORDER_SUCCEEDED = 3,
    PH_ORDER_FAILED = 4,
    PH_ORDER_UNKNOWN = 5,
};

/* "available", "issued", ...; "?" for an unknown value. Static strings. */
const char *ph_code_state_name(int state);
const char *ph_order_state_name(int state);

/* One card code as stored: the secret itself only as a sealed blob (crypto.h). */
typedef struct ph_code {
    uint64_t id; /* assigned at import, ascending within a batch */
    int state;   /* PH_CODE_* */
    uint64_t batch_id;
    uint64_t order_id;  /* 0 unless issued (kept when voided after issue) */
    int64_t expires_at; /* ms; 0 = never */
    int64_t changed_at; /* ms of the last state change (issue, void, expiry) */
    uint32_t sealed_len;
    uint8_t *sealed; /* owned by the object that holds this ph_code */
} ph_code;

typedef struct ph_order {
    uint64_t id;
    char client[PH_SKU_MAX + 1];
    char client_order_id[PH_ORDER_ID_MAX + 1];
    char sku[PH_SKU_MAX + 1];
    uint32_t quantity;
    int state; /* PH_ORDER_* */
    int64_t created_at, updated_at;
    int64_t cost;            /* fen: sum of the issued codes' unit costs */
    uint8_t fingerprint[32]; /* SHA-256 of the request's defining fields (idempotency) */
    size_t ncodes;
    ph_code *codes; /* the issued codes when loaded with codes, else NULL */
} ph_order;

/* Frees an order returned by the store, including its codes. NULL is a no-op. */
void ph_order_free(ph_order *o);

typedef struct ph_batch {
    uint64_t id;
    char supplier[PH_SKU_MAX + 1];
    char sku[PH_SKU_MAX + 1];
    char note[PH_NOTE_MAX + 1];
    int64_t unit_cost; /* fen */
    uint32_t count;
    uint64_t first_code; /* codes first_code .. first_code+count-1 */
    int64_t created_at;
    int voided;
    int64_t voided_at;
    char void_reason[PH_NOTE_MAX + 1];
} ph_batch;

/* ---- opening ---------------------------------------------------------- */

typedef struct ph_store ph_store;

typedef struct ph_store_opts {
    const char *dir;    /* LMDB environment directory, created (0700) if missing */
    uint64_t map_size;  /* initial map size in bytes; grows by doubling when full */
    unsigned max_batch; /* most commands per group commit; 0 = 4096 */
} ph_store_opts;

/* Opens (creating if needed) the environment and starts the writer thread.
 * *out is owned by the caller (ph_store_close).
 * Errors: PH_EIO (directory, LMDB), PH_EVERSION (the data was written by another
 * schema version: the message names both). */
int ph_store_open(const ph_store_opts *opts, ph_store **out, ph_err *err);

/* Stops taking commands, lets the writer finish every queued one, joins it and
 * closes the environment. NULL is a no-op. */
void ph_store_close(ph_store *s);

/* Current LMDB map size in bytes (it grows by itself). */
uint64_t ph_store_map_size(ph_store *s);

/* What the writer did since open: durable commits, commands applied in them
 * (commands / commits is the group-commit factor) and map growths. */
typedef struct ph_writer_stats {
    uint64_t commits;
    uint64_t commands;
    uint64_t map_grows;
} ph_writer_stats;

void ph_store_writer_stats(ph_store *s, ph_writer_stats *out);

/* ---- commands: the only way to change state ---------------------------- */

enum ph_cmd_type {
    PH_CMD_IMPORT = 1,   /* store a batch of sealed codes */
    PH_CMD_ORDER,        /* fulfil a card-code order from local stock (idempotent) */
    PH_CMD_VOID_BATCH,   /* the supplier voided a batch upstream */
    PH_CMD_PUT_PRODUCTS, /* make the catalog match the configuration */
};

typedef struct ph_import_code {
    uint32_t line;      /* line in the source file, for error reports */
    uint8_t hash[32];   /* ph_crypto_index() of the code */
    int64_t expires_at; /* ms; 0 = never */
    uint32_t sealed_len;
    const uint8_t *sealed; /* ph_crypto_seal() of the code (and card number) */
} ph_import_code;

typedef struct ph_affected_order {
    uint64_t id;
    char client[PH_SKU_MAX + 1];
    char client_order_id[PH_ORDER_ID_MAX + 1];
    uint32_t voided_codes;
} ph_affected_order;

typedef struct ph_cmd ph_cmd;
typedef void (*ph_cmd_done_fn)(ph_cmd *cmd);

/*
 * A command and, after completion, its result. The submitter owns the struct
 * and everything its inputs point to, and keeps them alive until completion;
 * results are owned by the command and released by ph_cmd_clear().
 */
struct ph_cmd {
    int type;    /* PH_CMD_* */
    int64_t now; /* ms; the command's time, used for every timestamp it writes */
    union {
        struct {
            const char *supplier, *sku, *note;
            int64_t unit_cost;
            const ph_import_code *codes;
            size_t ncodes;
            const uint32_t *by_hash; /* indices into codes, sorted by hash, no duplicates */
        } import;
        struct {
            const char *client, *client_order_id, *sku;
            uint32_t quantity;
            uint8_t fingerprint[32];
        } order;
        struct {
            uint64_t batch_id;
            const char *reason;
        } void_batch;
        struct {
            const char *const *json; /* one product object each, as docs/store.md */
            size_t n;
        } products;
    } in;

    /* ---- results, valid once the command completed ---- */
    int rc; /* PH_OK or PH_E*; err holds the message */
    ph_err err;
    uint64_t batch_id;   /* IMPORT: the new batch */
    uint32_t *dup_lines; /* IMPORT with PH_EDUP: lines whose code was already stored */
    size_t ndup;
    ph_order *order;             /* ORDER: the order with its codes (new or replayed) */
    int replayed;                /* ORDER: 1 when the client order id already existed */
    ph_batch batch;              /* VOID_BATCH: the batch after voiding */
    uint32_t voided_codes;       /* VOID_BATCH */
    ph_affected_order *affected; /* VOID_BATCH: orders that had codes of the batch */
    size_t naffected;

    /* ---- completion ---- */
    ph_cmd_done_fn
        done;     /* called once, on the writer thread, after the durable commit; may be NULL */
    void *arg;    /* for the submitter */
    ph_cmd *next; /* private to the store */
};

/* Queues cmd for the writer; returns at once. cmd->done runs later on the
 * writer thread (keep it short: signal and return). Returns PH_OK, or
 * PH_ESHUTDOWN when the store is closing (done is then not called). */
int ph_store_submit(ph_store *s, ph_cmd *cmd);

/* Submits cmd and waits for its completion; returns cmd->rc. cmd->done must be NULL. */
int ph_store_exec(ph_store *s, ph_cmd *cmd);

/* Frees a completed command's results (not its inputs). */
void ph_cmd_clear(ph_cmd *cmd);

/* ---- reads: consistent snapshots, any thread ---------------------------- */

/* Loads an order; with_codes also loads its codes. *out is the caller's
 * (ph_order_free). PH_ENOTFOUND when there is no such order. */
int ph_store_order_get(ph_store *s, uint64_t id, int with_codes, ph_order **out, ph_err *err);

/* Finds a client's order by the client's own order id. As ph_store_order_get. */
int ph_store_order_find(ph_store *s, const char *client, const char *client_order_id,
                        int with_codes, ph_order **out, ph_err *err);

/* Lists orders with id > after, ascending, at most limit, without codes; only
 * client's when client is non-NULL. *out is an array of *n orders the caller
 * frees with ph_order_list_free. */
int ph_store_order_list(ph_store *s, const char *client, uint64_t after, size_t limit,
                        ph_order ***out, size_t *n, ph_err *err);
void ph_order_list_free(ph_order **list, size_t n);

/* What a customer-service lookup needs about one code. */
typedef struct ph_code_info {
    ph_code code; /* code.sealed is owned by the info: ph_code_info_clear */
    ph_batch batch;
    ph_order *order; /* the order it was issued to, without codes, or NULL */
} ph_code_info;

/* Finds a code by its keyed hash. PH_ENOTFOUND when no such code exists. */
int ph_store_code_find(ph_store *s, const uint8_t hash[32], ph_code_info *out, ph_err *err);
void ph_code_info_clear(ph_code_info *info);

/* Loads a batch and counts its codes by state (counts[PH_CODE_*], 7 slots). */
int ph_store_batch_get(ph_store *s, uint64_t id, ph_batch *out, uint64_t counts[7], ph_err *err);

/* The stored product object (JSON text, as written by PH_CMD_PUT_PRODUCTS) and
 * its available stock. *json is the caller's (free). PH_ENOTFOUND. */
int ph_store_product_get(ph_store *s, const char *sku, char **json, uint64_t *available,
                         ph_err *err);

/* Every stored product, in SKU order: arrays of n JSON strings and stock counts,
 * the caller's (ph_store_product_list_free). */
int ph_store_product_list(ph_store *s, char ***json, uint64_t **available, size_t *n, ph_err *err);
void ph_store_product_list_free(char **json, uint64_t *available, size_t n);

/* Events with seq > after, ascending, at most limit, as JSON texts (each has
 * "seq"); the caller frees with ph_store_event_list_free. */
int ph_store_event_list(ph_store *s, uint64_t after, size_t limit, char ***out, size_t *n,
                        ph_err *err);
void ph_store_event_list_free(char **list, size_t n);

/* Per-SKU code counts by state, and totals. */
typedef struct ph_sku_stats {
    char sku[PH_SKU_MAX + 1];
    uint64_t imported;    /* sum of the SKU's batch sizes */
    uint64_t by_state[7]; /* index PH_CODE_* */
} ph_sku_stats;

typedef struct ph_store_stats {
    ph_sku_stats *skus; /* the caller's: ph_store_stats_clear */
    size_t nskus;
    uint64_t orders;
    uint64_t last_event;
    uint64_t codes;
} ph_store_stats;

int ph_store_stats_get(ph_store *s, ph_store_stats *out, ph_err *err);
void ph_store_stats_clear(ph_store_stats *st);

/* Checks every invariant of the data (docs/store.md, "Invariants"): each code in
 * exactly one state and indexed accordingly, imported = sum over states, no code
 * in two orders, every order's codes issued to it, the idempotency index and the
 * event sequence whole. PH_OK, or PH_EIO with the first violation in err. Reads
 * one snapshot; safe while the daemon runs. */
int ph_store_check(ph_store *s, ph_store_stats *stats, ph_err *err);

#endif
