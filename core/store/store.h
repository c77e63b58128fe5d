/*
 * store.h — perkhub's state in LMDB, and the one writer that changes it.
 *
 * Every state change is a *command* (ph_cmd) handed to the store's writer
 * thread. The writer takes all commands that queued up while the previous
 * commit was flushing and applies them in one write transaction, each with its
 * events, then commits the batch durably with one fsync: group commit
 * (docs/design.md rule 6). A command that fails changes nothing and does not
 * disturb its neighbours: most commands run in a nested transaction that is
 * thrown away on failure; orders and supplier commands (the hot path) skip the
 * nested transaction, and when one of them fails after its first write the
 * writer aborts the batch and applies it again with every command nested
 * (docs/store.md, "The write path"). A command completes — its `done` callback
 * runs, or ph_store_exec() returns — only after that commit, so anything
 * acknowledged to a client survives kill -9.
 *
 * Applying a command is a deterministic function of the database and the
 * command: the time is the command's `now`, nonces and keyed hashes are
 * computed before submission. A replica replaying the same commands reaches
 * the same state.
 *
 * Reads (ph_store_*_get/list/find) run on the calling thread in their own
 * read-only snapshot and never wait for the writer.
 *
 * The on-disk layout is documented in docs/store.md; PH_SCHEMA_VERSION
 * (store_int.h) is checked at open: the previous version is migrated when the
 * keys are given (below), any other refuses to start.
 *
 * Keys. The store depends on the key file: its codes and accounts are sealed
 * under its keys and its code index is keyed with its index key. So the store
 * keeps, in `meta`, a check value (ph_keyring_check_value) for the index key
 * and for every key id its data was sealed with, and an open with keys refuses
 * a key file that lacks one of those keys or holds another key under the same
 * id — naming the key id and the file — before anything is issued. A store
 * without check values (written by an older perkhubd, or opened without keys)
 * gets them at its first open with keys, derived from the data itself: one
 * stored item per key id is unsealed to prove the key right first. Opening
 * with keys also lets the writer refuse to issue a code it cannot unseal.
 *
 * Thread safety: every function may be called from any thread, except that
 * ph_store_open and ph_store_close belong to the thread that owns the store (the
 * main thread: they start and join the writer), ph_store_close must not race
 * with any other call, and ph_store_exec must not run on the writer itself (in a
 * `done` callback it would wait for itself).
 */
#ifndef PH_STORE_H
#define PH_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "crypto/code.h"
#include "crypto/crypto.h"

#define PH_SKU_MAX            64       /* bytes of a SKU, supplier id or client name */
#define PH_ORDER_ID_MAX       128      /* bytes of a client order id */
#define PH_NOTE_MAX           256      /* bytes of a batch note or void reason */
#define PH_ORDER_QUANTITY_MAX 10000000 /* codes in one order, whatever the config says */

enum ph_code_state {
    PH_CODE_AVAILABLE = 1,
    PH_CODE_RESERVED = 2, /* never written yet: a unit held for a grant arrives with
                             issue 16; read paths already treat it as taken */
    PH_CODE_ISSUED = 3,
    PH_CODE_REDEEMED = 4, /* never written yet: arrives with redemption status (issue 12) */
    PH_CODE_VOIDED = 5,
    PH_CODE_EXPIRED = 6,
};

/* The values are stored: never renumber. 1 (accepted) is not used: an order is
 * stored processing, or final, by the command that accepts it. */
enum ph_order_state {
    PH_ORDER_PROCESSING = 2,
    PH_ORDER_SUCCEEDED = 3,
    PH_ORDER_FAILED = 4,
    PH_ORDER_UNKNOWN = 5,
};

/* "available", "issued", ...; "?" for an unknown value. Static strings. */
const char *ph_code_state_name(int state);
const char *ph_order_state_name(int state);

/* Is an order in this state final (succeeded or failed: nothing will change
 * it again)? The one answer for views, waiters, fulfilment and the checker. */
int ph_order_state_final(int state);

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

/* One try at one supplier for a supplier-fulfilled order (docs/design.md, "The model").
 * Attempts only move forward: SENDING -> PROCESSING | UNKNOWN | SUCCEEDED |
 * FAILED (or SENDING again, to record a step), PROCESSING -> UNKNOWN |
 * SUCCEEDED | FAILED (or PROCESSING again, to record a check), UNKNOWN ->
 * PROCESSING | SUCCEEDED | FAILED (or UNKNOWN again); SUCCEEDED and FAILED are
 * final. Nothing ever goes back to SENDING. */
enum ph_attempt_state {
    PH_ATTEMPT_SENDING = 1,    /* stored before the request leaves: after a crash it
                                  becomes UNKNOWN, never "not sent" (rule 2) */
    PH_ATTEMPT_PROCESSING = 2, /* the supplier accepted it and is working on it */
    PH_ATTEMPT_UNKNOWN = 3,    /* it may or may not have happened: queried until settled */
    PH_ATTEMPT_SUCCEEDED = 4,
    PH_ATTEMPT_FAILED = 5,
};

/* "sending", "processing", ...; "?" otherwise. Static strings. */
const char *ph_attempt_state_name(int state);

/* Does an attempt in this state still wait for the supplier (sending,
 * processing, unknown)? Not open means final: succeeded or failed. */
int ph_attempt_state_open(int state);

#define PH_REF_MAX            64  /* bytes of an attempt reference */
#define PH_REASON_MAX         128 /* bytes of a machine reason ("out_of_stock") */
#define PH_SUPPLIER_ORDER_MAX 128

typedef struct ph_attempt {
    uint32_t no; /* 1, 2, ...: the order's attempts in the order they were made */
    char supplier[PH_SKU_MAX + 1];
    char product_id[PH_SUPPLIER_ORDER_MAX + 1];        /* the supplier's product id (offer) */
    char ref[PH_REF_MAX + 1];                          /* our reference at the supplier */
    char supplier_order_id[PH_SUPPLIER_ORDER_MAX + 1]; /* the supplier's, once known */
    int state;                                         /* PH_ATTEMPT_* */
    char reason[PH_REASON_MAX + 1];                    /* why failed/unknown; "" otherwise */
    int64_t unit_cost; /* fen: the offer's cost when the attempt was made */
    int64_t charged;   /* fen the supplier says it charged; -1 unknown */
    int64_t created_at, updated_at;
    int64_t next_check_at;              /* ms: when the core queries it next; 0 = not scheduled */
    uint32_t checks;                    /* order queries made so far */
    char step_state[PH_REASON_MAX + 1]; /* the plugin's next_state for a follow-up step */
    uint32_t step; /* the exchange step the attempt is at (0 = the order itself) */
} ph_attempt;

typedef struct ph_order {
    uint64_t id;
    char client[PH_SKU_MAX + 1];
    char client_order_id[PH_ORDER_ID_MAX + 1];
    char sku[PH_SKU_MAX + 1];
    uint32_t quantity;
    int state; /* PH_ORDER_* */
    int64_t created_at, updated_at;
    int64_t cost;            /* fen: sum of the issued codes' unit costs; a supplier
                                order: what the supplier charged, else unit_cost x
                                quantity (0 until succeeded) */
    uint8_t fingerprint[32]; /* SHA-256 of the request's defining fields (idempotency) */
    size_t ncodes;
    ph_code *codes; /* the issued codes when loaded with codes, else NULL */

    /* Supplier-fulfilled orders (PH_CMD_SUPPLY_CREATE); zero/NULL for orders
     * fulfilled from local stock. */
    int delivery;                   /* PH_DELIVERY_* of config.h; 0 = local card codes */
    char reason[PH_REASON_MAX + 1]; /* why failed or unknown; "" otherwise */
    char account_masked[32];        /* recharge: "138****8000"; "" otherwise */
    uint32_t account_sealed_len;    /* recharge: the account, ph_crypto_seal()ed */
    uint8_t *account_sealed;        /* owned by the order */
    size_t nattempts;
    ph_attempt *attempts; /* owned by the order; loaded with every read */
} ph_order;

/* Was o stored for a supplier (PH_CMD_SUPPLY_CREATE: a recharge, or card codes
 * bought upstream), whether or not an attempt began? The one answer behind a
 * view's "source": an order no supplier could take is still a supplier order. */
int ph_order_via_supplier(const ph_order *o);

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
    char lookalikes[PH_LOOKALIKES_MAX + 1]; /* the rule its codes were hashed with (code.h) */
} ph_batch;

/* ---- opening ---------------------------------------------------------- */

typedef struct ph_store ph_store;

typedef struct ph_store_opts {
    const char *dir;    /* LMDB environment directory, created (0700) if missing */
    uint64_t map_size;  /* initial map size in bytes; grows by doubling when full */
    unsigned max_batch; /* most commands per group commit; 0 = 4096 */
    /* The daemon's keyring (borrowed: it must outlive the store), or NULL for
     * tests and tools that treat sealed blobs as opaque: then no key is
     * checked, no migration needing keys runs, nothing is unsealed, and a
     * writable open forgets that the key checks were complete. */
    const ph_keyring *keys;
    /* 1: open an existing store for reading only (perkhubd --check-store):
     * nothing is created or written, no writer runs (commands get PH_EINVAL),
     * and a missing store is PH_ENOTFOUND "no store at DIR". */
    int read_only;
    /* Test and debugging hook, NULL = off (no cost): every committed batch is
     * appended to this file (cmd_codec.h) before its commands complete, so
     * ph_journal_replay can apply the same batches to an empty store. */
    const char *journal_file;
    /* The store uid (8 lowercase hex) a new environment gets instead of a
     * random one, and an existing one must have: a replay (or, later, a
     * standby) takes its origin's, so attempt references come out the same.
     * NULL = random at creation, anything at open. */
    const char *uid;
    /* The daemon's metrics registry (borrowed: it must outlive the store), or
     * NULL: the writer observes each committed batch into it (size, duration,
     * the order outcomes it decided) with atomics only. */
    struct ph_metrics *metrics;
} ph_store_opts;

/* Opens (creating if needed, unless read_only) the environment, migrates a
 * store of the previous schema version (needs keys), checks or records the key
 * checks (with keys) and starts the writer thread.
 * *out is owned by the caller (ph_store_close).
 * Errors: PH_ENOTFOUND (read_only, and no store at dir), PH_EIO (directory,
 * LMDB, not a perkhub store), PH_EVERSION (the data was written by another
 * schema version, or needs a migration this open cannot do: the message names
 * both versions), PH_ECRYPTO (the key file lacks a key the data needs or holds
 * another one under its id: the message names the key id and the file; or
 * a migration found a code it cannot unseal), PH_EDUP (a migration found two
 * stored codes that are equal once normalized: it names both ids), PH_EINVAL
 * (opts.uid malformed or not the store's; a journal_file ph_journal_open
 * refuses). On error nothing was changed. */
int ph_store_open(const ph_store_opts *opts, ph_store **out, ph_err *err);

/* The schema version this open migrated the store from, 0 when it did not. */
uint32_t ph_store_migrated_from(ph_store *s);

/* Stops taking commands, lets the writer finish every queued one, joins it and
 * closes the environment. NULL is a no-op. */
void ph_store_close(ph_store *s);

/* Current LMDB map size in bytes (it grows by itself). */
uint64_t ph_store_map_size(ph_store *s);

/* Bytes of the map in use: up to the last page the newest commit used (pages
 * freed inside it are reused before the map grows). Any thread. */
uint64_t ph_store_map_used(ph_store *s);

/* The sealing key ids the data has been sealed with: those with a key check
 * recorded in `meta` (docs/store.md, "Keys"), ascending, the first max of them
 * into out; returns how many there are (0 also when the read fails). A few
 * meta entries: cheap. Any thread. */
size_t ph_store_key_ids(ph_store *s, uint16_t *out, size_t max);

/* What the writer did since open: durable commits, commands applied in them
 * (commands / commits is the group-commit factor) and map growths. */
typedef struct ph_writer_stats {
    uint64_t commits;
    uint64_t commands;
    uint64_t map_grows;
} ph_writer_stats;

void ph_store_writer_stats(ph_store *s, ph_writer_stats *out);

/* Can the store write? Set by the writer when a batch fails to commit for want
 * of space, cleared by the next batch that commits (docs/store.md, "A full
 * disk"). Either way a failed batch changed nothing. */
enum {
    PH_STORE_WRITABLE = 0,
    PH_STORE_DISK_FULL = 1, /* the data directory's file system (or quota) is full: every
                               command of the failed batch got PH_ENOSPC */
    PH_STORE_MAP_FULL = 2,  /* LMDB's map is full and could not grow (address space or
                               memory, not the disk): the commands got PH_EIO */
};
typedef struct ph_store_health {
    int condition;           /* PH_STORE_* above */
    uint64_t failed_batches; /* batches refused since the condition began */
    uint64_t free_bytes;     /* free space of the data directory at the last failure */
    char detail[512];        /* one line, no secret (a ph_err message); "" when writable */
} ph_store_health;

/* A copy of the store's write health. Any thread. */
void ph_store_health_get(ph_store *s, ph_store_health *out);

/* 1 when a read-only open found the directory (or its lock file) not writable
 * and opened the environment without LMDB's lock file (MDB_NOLOCK): its reads
 * are then safe only while nothing writes to the store (a copy). */
int ph_store_lockless(ph_store *s);

/* ---- commands: the only way to change state ---------------------------- */

enum ph_cmd_type {
    PH_CMD_IMPORT = 1,    /* store a batch of sealed codes */
    PH_CMD_ORDER,         /* fulfil a card-code order from local stock (idempotent); with
                             keys, a code that does not unseal is never issued: PH_ECRYPTO,
                             nothing changes, the code stays available */
    PH_CMD_VOID_BATCH,    /* the supplier voided a batch upstream */
    PH_CMD_PUT_PRODUCTS,  /* make the catalog match the configuration */
    PH_CMD_SUPPLY_CREATE, /* accept an order to be fulfilled by a supplier (idempotent) */
    PH_CMD_ATTEMPT,       /* record what an attempt at a supplier came to */
    PH_CMD_EXPIRE,        /* the expiry sweep: retire available codes that are due */
    PH_CMD_NOTE_EVENT,    /* an event about something the store keeps no record of */
};

/* The event names PH_CMD_NOTE_EVENT accepts: a closed list, so the feed's
 * vocabulary is reviewed here. Append a name (never reuse one) when a new
 * kind of note is needed: offer.price_changed, stock.low, supplier.balance_low
 * are meant to come this way. */
#define PH_NOTE_EVENTS     "supplier.auth_failed", "supplier.auth_restored"
#define PH_NOTE_FIELDS_MAX 1024 /* bytes of a note's fields (JSON text) */

#define PH_EXPIRE_LIMIT 1024 /* expiry index entries one PH_CMD_EXPIRE visits by default */

/* A card code a supplier delivered, sealed before submission (ph_crypto_seal,
 * exactly like an imported code) with its keyed hash. */
typedef struct ph_supplied_code {
    uint8_t hash[32];
    int64_t expires_at; /* ms; 0 = never */
    uint32_t sealed_len;
    const uint8_t *sealed;
} ph_supplied_code;

/* The first or next attempt an order goes to. The store names the attempt's
 * reference itself: "<store uid>-<order id>-<attempt no>" (ph_store_uid). */
typedef struct ph_attempt_target {
    const char *supplier, *product_id;
    int64_t unit_cost;
} ph_attempt_target;

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
            const char *lookalikes;  /* the rule the hashes were made with (code.h); NULL = none */
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
        /*
         * SUPPLY_CREATE: a new order in PROCESSING with attempt 1 in SENDING at
         * `first` — or, when first.supplier is NULL, directly FAILED with
         * fail_reason (no offer could take it; nothing was sent). Idempotent like
         * ORDER: an existing (client, client_order_id) with the same fingerprint
         * is returned with replayed = 1 and nothing changes; with another
         * fingerprint PH_ECONFLICT. Events: order.accepted (+ order.failed).
         */
        struct {
            const char *client, *client_order_id, *sku;
            uint32_t quantity;
            uint8_t fingerprint[32];
            int delivery;                  /* PH_DELIVERY_* */
            const uint8_t *account_sealed; /* recharge, else NULL */
            uint32_t account_sealed_len;
            const char *account_masked; /* recharge, else NULL */
            ph_attempt_target first;
            const char *fail_reason;
        } supply;
        /*
         * ATTEMPT: attempt `no` of order `order_id` moves to `state` (a forward
         * move only; anything else is PH_ESTATE and changes nothing, which is how
         * a late or duplicate result is ignored). Fields set here overwrite the
         * attempt's when non-NULL / >= 0. The order follows:
         *   SUCCEEDED -> order SUCCEEDED; card orders store `codes` (exactly the
         *     order's quantity, else PH_EINVAL) as a new batch of the supplier
         *     (note "order <id> attempt <no>") issued to the order at once; a code
         *     whose hash is already stored fails the command with PH_EDUP;
         *   FAILED + next.supplier -> attempt no+1 in SENDING at `next`, order
         *     PROCESSING; FAILED without next -> order FAILED with the reason;
         *   UNKNOWN -> order UNKNOWN; PROCESSING/SENDING -> order PROCESSING.
         * Events: order.attempt (supplier, attempt, state, reason) when the
         * attempt's state changes (and for the new failover attempt) and, when the
         * order's state changes, order.succeeded / order.failed / order.unknown; a
         * same-state update (a check) writes no event.
         * Refusals (nothing changes): PH_ENOTFOUND no such order or attempt;
         * PH_EINVAL reason or supplier_order_id not printable ASCII within
         * PH_REASON_MAX / PH_SUPPLIER_ORDER_MAX, step_state over PH_REASON_MAX
         * bytes, next without FAILED, codes other than as above.
         */
        struct {
            uint64_t order_id;
            uint32_t no;
            int state;                     /* PH_ATTEMPT_* */
            const char *reason;            /* NULL keeps */
            const char *supplier_order_id; /* NULL keeps */
            const char *step_state;        /* NULL keeps */
            int64_t step;                  /* -1 keeps */
            int64_t charged;               /* -1 keeps */
            int64_t next_check_at;         /* -1 keeps; 0 clears */
            int count_check;               /* 1: checks += 1 */
            const ph_supplied_code *codes;
            size_t ncodes;
            ph_attempt_target next; /* failover target, or supplier NULL */
        } attempt;
        /*
         * EXPIRE: the expiry sweep, one bounded step of it. Visits at most
         * `limit` entries of the expiry index that are due at cmd->now
         * (expires_at <= now; 0 = PH_EXPIRE_LIMIT), oldest first within each
         * SKU, SKUs in byte order, and removes each. A due code still
         * available becomes expired (changed_at = now) and leaves the stock;
         * an entry whose code was issued, voided or already expired is only
         * removed. One `code.expired` event for the whole command (counts per
         * batch, never a code or a code id), none when no code expired.
         * Results: expired_codes, and more = 1 when due entries remain (submit
         * another EXPIRE with the same now). The time is the command's: the
         * writer reads no clock. Never refused (only PH_EIO, PH_ENOMEM).
         */
        struct {
            uint32_t limit;
        } expire;
        /*
         * NOTE_EVENT: appends one event `name` carrying the members of `fields`
         * and changes no other record — a fact the core observed about
         * something the store keeps no record of (a supplier refused our
         * credentials: supplier.auth_failed, then supplier.auth_restored).
         * Generic on purpose: a new note is a name added to PH_NOTE_EVENTS,
         * not a new command. `fields` is a JSON object text the core built
         * from values it owns (ids, numbers, words of a fixed list — never
         * supplier text), at most PH_NOTE_FIELDS_MAX bytes, without the
         * event's own keys seq, at and type. Refusals (nothing written):
         * PH_EINVAL naming `name` (not in PH_NOTE_EVENTS) or `fields` (not a
         * JSON object, too long, a reserved key).
         */
        struct {
            const char *name;
            const char *fields;
        } note;
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
    /* SUPPLY_CREATE and ATTEMPT also set `order` (with its attempts, and its codes
     * once succeeded) and SUPPLY_CREATE sets `replayed`. */
    uint64_t expired_codes; /* EXPIRE: codes that became expired */
    int more;               /* EXPIRE: due entries remain after this step */

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

/* Queues cmd, cmd->next, ... (a list the caller linked) at once, so the writer
 * takes them together (up to max_batch): how a replay applies a journal's
 * batch as one. As ph_store_submit for each; on PH_ESHUTDOWN none is queued. */
int ph_store_submit_list(ph_store *s, ph_cmd *first);

/* Submits cmd and waits for its completion; returns cmd->rc. cmd->done must be NULL. */
int ph_store_exec(ph_store *s, ph_cmd *cmd);

/* Submits the list first, first->next, ... as ph_store_submit_list does and
 * waits until the writer has completed every command (each one's rc, err and
 * results are then set); sets each command's done and arg. Returns PH_OK, or
 * PH_ESHUTDOWN (in first->err) when none was queued. Not from the writer. */
int ph_store_exec_list(ph_store *s, ph_cmd *first);

/* Frees a completed command's results (not its inputs). */
void ph_cmd_clear(ph_cmd *cmd);

/* ---- reads: consistent snapshots, any thread ----------------------------
 *
 * Each call opens its own read-only LMDB snapshot on the calling thread, sees
 * the last durable commit as a whole, and never waits for the writer (except
 * while the map grows). Two calls are two snapshots: they may see different
 * commits. Results are copies the caller owns (freed as each call says); on an
 * error there is nothing to free and out parameters are untouched unless said.
 * Every read can fail with PH_EIO (LMDB failure, or a malformed record: the
 * message names it; see --check-store) and PH_ENOMEM; others are listed below.
 */

/* Loads an order with its attempts; with_codes also loads its codes (sealed).
 * On PH_OK *out is the caller's (ph_order_free). Errors: PH_ENOTFOUND (no such
 * order), PH_EIO, PH_ENOMEM. */
int ph_store_order_get(ph_store *s, uint64_t id, int with_codes, ph_order **out, ph_err *err);

/* Finds a client's order by the client's own order id. As ph_store_order_get;
 * PH_ENOTFOUND also for ids longer than the store accepts. */
int ph_store_order_find(ph_store *s, const char *client, const char *client_order_id,
                        int with_codes, ph_order **out, ph_err *err);

/* Lists orders with id > after, ascending, at most limit, without codes; only
 * client's when client is non-NULL. On PH_OK *out is an array of *n orders
 * (possibly 0) the caller frees with ph_order_list_free. Errors: PH_EIO,
 * PH_ENOMEM. */
int ph_store_order_list(ph_store *s, const char *client, uint64_t after, size_t limit,
                        ph_order ***out, size_t *n, ph_err *err);
void ph_order_list_free(ph_order **list, size_t n);

/* What a customer-service lookup needs about one code. */
typedef struct ph_code_info {
    ph_code code; /* code.sealed is owned by the info: ph_code_info_clear */
    ph_batch batch;
    ph_order *order; /* the order it was issued to, without codes, or NULL */
    /* ph_store_code_find_typed only: 0 when the code typed was not found, and
     * code, batch and decoy then hold other records read in its place (never to
     * be shown); decoy is another order read when `order` is NULL, so that every
     * lookup reads one. Both owned by the info. */
    int found;
    ph_order *decoy;
} ph_code_info;

/* Finds a code by its keyed hash (ph_crypto_index), with its batch and the
 * order it was issued to. On PH_OK *out is the caller's (ph_code_info_clear); on
 * an error there is nothing to clear. Errors: PH_ENOTFOUND (no such code),
 * PH_EIO, PH_ENOMEM. */
int ph_store_code_find(ph_store *s, const uint8_t hash[32], ph_code_info *out, ph_err *err);

/* Which of an import's codes are stored already (the question the writer asks
 * again at commit), for an import that is refused anyway and names them. For
 * each i < n, stored[order[i]] is set to 1 when the code index holds
 * codes[order[i]].hash, else 0 (order NULL: stored[i] for codes[i]); stored,
 * one byte per code, is the caller's and nothing else is allocated. One read
 * snapshot and one cursor for the whole pass, and only the index is read (no
 * code record, batch or order). Any order is answered right; in hash order
 * (the IMPORT command's by_hash) consecutive lookups land on the same index
 * pages and a hash repeated, or not past the last key sought, costs no seek.
 * The snapshot is held for the whole pass (some 0.3 s for a million codes, all
 * stored): a map growth waits that long. Any thread. Errors: PH_EIO (LMDB;
 * stored then partly set). */
int ph_store_codes_stored(ph_store *s, const ph_import_code *codes, const uint32_t *order, size_t n,
                          uint8_t *stored, ph_err *err);

/* The lookup hash of what a person typed, under a look-alike rule ("" = none;
 * crypto/code.h, ph_code_hash): 0, or non-zero when nothing is left to hash. */
typedef int (*ph_code_hash_fn)(void *arg, const char *rule, uint8_t hash[32]);

/* Finds a code as customer service types it, in one snapshot: hashed without
 * look-alikes and under each look-alike rule a stored batch was hashed with
 * (listed in `meta`, so a rule a product no longer has still finds its codes),
 * keeping a hit only when the code's own batch has that rule: look-alikes never
 * match a product that does not declare them. hash_fn runs on the calling
 * thread inside the read.
 *
 * The work does not depend on whether the code exists or whose it is, so that
 * the time of a lookup does not tell (docs/store.md, "Lookups in constant
 * work"): every rule is hashed and looked up, and for each one a code record
 * and its batch are read and decoded — the one found or, on a miss, a real code
 * picked by the keyed hash — and then one order: the code's own, or (in
 * out->decoy) one picked by the hash. On PH_OK out->found says whether the
 * code was found; either way *out is the caller's (ph_code_info_clear), and a
 * caller that does not show the result runs its same steps over the decoys.
 * Errors (nothing to clear): PH_EIO (a found code's records unreadable),
 * PH_ENOMEM. */
int ph_store_code_find_typed(ph_store *s, ph_code_hash_fn hash_fn, void *arg, ph_code_info *out,
                             ph_err *err);
void ph_code_info_clear(ph_code_info *info);

/* Loads a batch and counts its codes by state (counts[PH_CODE_*], 7 slots).
 * Plain data: nothing to free. Errors: PH_ENOTFOUND (no such batch; counts all
 * 0), PH_EIO. */
int ph_store_batch_get(ph_store *s, uint64_t id, ph_batch *out, uint64_t counts[7], ph_err *err);

/* The stored product object (JSON text, as written by PH_CMD_PUT_PRODUCTS) and
 * its available stock: the codes in the SKU's stock that can be issued at
 * `now` (ms), i.e. not counting available codes whose expiry has passed but
 * that the expiry sweep has not retired yet. On PH_OK *json is the caller's
 * (free). Errors: PH_ENOTFOUND (no such product), PH_EIO, PH_ENOMEM. The count
 * is O(log n) plus the due entries of the SKU's expiry index (those the sweep
 * has not reached: few while it runs). */
int ph_store_product_get_at(ph_store *s, const char *sku, int64_t now, char **json,
                            uint64_t *available, ph_err *err);
/* ph_store_product_get_at at the wall clock. */
int ph_store_product_get(ph_store *s, const char *sku, char **json, uint64_t *available,
                         ph_err *err);

/* Every stored product (delisted ones included), in SKU order: on PH_OK arrays
 * of *n JSON strings and stock counts (as ph_store_product_get_at), the
 * caller's (ph_store_product_list_free). Errors: PH_EIO, PH_ENOMEM. */
int ph_store_product_list_at(ph_store *s, int64_t now, char ***json, uint64_t **available,
                             size_t *n, ph_err *err);
/* ph_store_product_list_at at the wall clock. */
int ph_store_product_list(ph_store *s, char ***json, uint64_t **available, size_t *n, ph_err *err);
void ph_store_product_list_free(char **json, uint64_t *available, size_t n);

/* 1 when the expiry index holds an entry due at `now` (a PH_CMD_EXPIRE would
 * do something), 0 when not or on a read error. One index seek per SKU that
 * has entries: the daemon's sweep timer asks this before it bothers the writer. */
int ph_store_expiry_due(ph_store *s, int64_t now);

/* Events with seq > after, ascending, at most limit, as JSON texts (each has
 * "seq"); on PH_OK an array of *n (possibly 0) the caller frees with
 * ph_store_event_list_free. Errors: PH_EIO, PH_ENOMEM. */
int ph_store_event_list(ph_store *s, uint64_t after, size_t limit, char ***out, size_t *n,
                        ph_err *err);
void ph_store_event_list_free(char **list, size_t n);

/* Orders with an attempt not final (SENDING, PROCESSING, UNKNOWN), ascending
 * by id, with id > after, at most limit, with their attempts (no codes): what
 * the core must resume after a restart. Kept in the `pending` database, written
 * in the same transaction as the attempt. On PH_OK the caller frees the list
 * (ph_order_list_free). Errors: PH_EIO, PH_ENOMEM. */
int ph_store_pending_list(ph_store *s, uint64_t after, size_t limit, ph_order ***out, size_t *n,
                          ph_err *err);

/* Orders counted by state and by SKU (store_tally.c), for the ops page. */
#define PH_ORDER_TALLY_STATES 6 /* by_state slots: index PH_ORDER_* (0, 1 unused) */
typedef struct ph_order_tally_sku {
    char sku[PH_SKU_MAX + 1];
    uint64_t orders, quantity;
    uint64_t by_state[PH_ORDER_TALLY_STATES];
} ph_order_tally_sku;

typedef struct ph_order_tally {
    uint64_t orders;
    uint64_t by_state[PH_ORDER_TALLY_STATES];
    ph_order_tally_sku *skus; /* sorted by SKU; the caller's (ph_order_tally_clear) */
    size_t nskus;
    int complete;         /* 0: max_orders was reached before the orders older than since */
    int64_t counted_from; /* ms: since, or when incomplete the oldest order counted */
    uint64_t last_event;  /* the newest event's seq in the same snapshot (0: none) */
} ph_order_tally;

/* The orders created at or after `since` (ms), counted by state and SKU, from
 * one snapshot: read backwards from the newest order, at most max_orders of
 * them (then out->complete is 0 and the counts are those of the newest ones).
 * Cost: the orders since then (plus a minute's worth: created_at may lag an
 * order's id by as long as its command waited for the writer), each decoded
 * without its supply record; an ops read, not a hot path. On PH_OK the caller
 * clears *out (ph_order_tally_clear). Errors: PH_EIO (a malformed order record,
 * named), PH_ENOMEM. */
int ph_store_order_tally(ph_store *s, int64_t since, size_t max_orders, ph_order_tally *out,
                         ph_err *err);
void ph_order_tally_clear(ph_order_tally *t);

/* This data directory's identity: 8 lowercase hex characters generated when
 * the environment was created and stored in `meta`. Attempt references start
 * with it, so two perkhub stores never send the same reference to a supplier.
 * Owned by the store, valid until ph_store_close. */
const char *ph_store_uid(ph_store *s);

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

/* Counts by SKU and state as of `now` (ms), from one snapshot: an available
 * code whose expiry has passed counts as expired even before the sweep retires
 * it, so `available` is what can be issued now and imported = the sum over
 * states still holds. Reads every code (cost grows with the store: an ops call,
 * not a hot path). On PH_OK the caller clears *out (ph_store_stats_clear).
 * Errors: PH_EIO, PH_ENOMEM. */
int ph_store_stats_at(ph_store *s, int64_t now, ph_store_stats *out, ph_err *err);
/* ph_store_stats_at at the wall clock. */
int ph_store_stats_get(ph_store *s, ph_store_stats *out, ph_err *err);
void ph_store_stats_clear(ph_store_stats *st);

/* Checks every invariant of the data (docs/store.md, "Invariants"): each code in
 * exactly one state and indexed accordingly (stock list, expiry index),
 * imported = sum over states, no code
 * in two orders, every order's codes issued to it, the idempotency index and the
 * event sequence whole, a key check for every key id the data is sealed with.
 * When the store was opened with keys, also: every code unseals and its index
 * entry is the hash of its normalized form under its batch's rule. PH_OK (stats,
 * when non-NULL, filled: the caller clears it), or PH_EIO with the first
 * violation in err, or PH_ENOMEM. Reads one snapshot; safe while the
 * daemon runs. */
int ph_store_check(ph_store *s, ph_store_stats *stats, ph_err *err);

/* Where a check has got to, written as it goes, for a caller that runs it
 * where a crash is contained and wants to say where it happened: perkhubd
 * --check-store runs the check in a child process with this in shared memory
 * and reads it after the child died (an LMDB assertion or a bad pointer in a
 * damaged file). Plain bytes, each update followed by a compiler fence. */
typedef struct ph_check_progress {
    char stage[64]; /* "opening", "walking every sub-database", "codes", ... */
    char db[16];    /* the sub-database being read, "" when none */
    uint64_t key;   /* the last integer key read there (0: none yet or not an integer) */
    uint64_t read;  /* entries read there so far */
    int finished;   /* 1 once the check returned and its verdict was printed */
} ph_check_progress;

/* ph_store_check, first walking every sub-database whole (each walk must end
 * cleanly, give ascending well-formed keys and as many entries as the
 * database's header counts), then the invariants, and cross-checking counts
 * that must agree: every event's seq is its key and each event names orders
 * and batches that exist, every order and every batch has an event,
 * `client_orders` lists each order once under its client. The messages name the
 * sub-database and the key. progress (may be NULL) is updated throughout. */
int ph_store_check_watched(ph_store *s, ph_store_stats *stats, ph_check_progress *progress,
                           ph_err *err);

#endif
