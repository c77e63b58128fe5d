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
    PH_CODE_RESERVED = 2, /* held for a grant (issue 16): order_id is the grant's order;
                             read paths treat it as taken, stock does not count it */
    PH_CODE_ISSUED = 3,
    PH_CODE_REDEEMED = 4, /* an issued code its supplier says was redeemed (PH_CMD_CODE_REDEEMED);
                             final, like voided and expired */
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
    PH_ORDER_HELD = 6,    /* a risk rule said review: no code taken, no supplier called, until
                             ops release or block it, or its review times out (PH_CMD_REVIEW) */
    PH_ORDER_GRANTED = 7, /* a grant (issue 16): its unit reserved (quantity codes of local
                             stock, or the right to one supplier order with no attempt),
                             until the holder claims it or it expires (PH_CMD_GRANT). Like
                             held: nothing in flight, not final */
    PH_ORDER_PARTIAL = 8, /* a bundle (issue 16) some of whose components were delivered and
                             the rest failed, none open: not final, a retry may buy the
                             failed ones again (PH_CMD_BUNDLE). 7 is the grant's */
};

/* A bundle's state from its components' (issue 16), each the state of the
 * component's latest order: held when every one is held (a bundle a risk rule
 * holds: nothing taken or bought yet), granted when every one is granted (a
 * bundle grant: every unit reserved), else unknown while any is unknown, else
 * processing while any is open (processing, or held / granted next to
 * another state: a release or a claim in the middle of its transaction),
 * else succeeded when all succeeded, partial when some did, failed when none
 * did. The one answer for the writer, the checker and the views. n 0 is
 * failed. */
int ph_bundle_state(const int *states, size_t n);

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
    /* Stuck orders (issue 11): kept in the attempt record's version-2 tail. */
    int64_t stuck_at;                  /* ms it was escalated as stuck (order.stuck); 0 = never */
    int64_t settled_at;                /* ms ops settled it by hand (PH_CMD_SETTLE); 0 = not */
    char settled_by[PH_SKU_MAX + 1];   /* the client name of the token that settled it */
    char settle_note[PH_NOTE_MAX + 1]; /* the supplier's evidence, as ops wrote it */
    int64_t delivered; /* fen per unit the supplier says it delivered (ABI 1.2); -1 unknown.
                          Supply record version 3; an older record reads -1 */
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

/* 1 when o is a bundle's component order (issue 16: its client order id
 * "#<parent>.<j>[.<retry>]" starts with '#', which no client's can), with
 * *parent (may be NULL) its bundle's order id; else 0. The one answer for the
 * writer, the checker, events and lists. Pure. */
int ph_order_component_of(const ph_order *o, uint64_t *parent);

/* Since when o is stuck: its last attempt is still open and was escalated
 * (stuck_at), else 0. The one answer for views, the stuck list, settling and
 * the checker. */
int64_t ph_order_stuck_since(const ph_order *o);

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

struct ph_cmd;

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
    /* The business day of the daily aggregates: minutes east of UTC
     * (-720..840), taken when report_offset_given is 1, else the store keeps
     * what it has (a new store: PH_REPORT_OFFSET_DEFAULT, +08:00). A writable
     * open that changes it rebuilds the aggregates from the ledger
     * (docs/store.md, "The ledger"); a read-only one ignores it. */
    int report_utc_offset_min;
    int report_offset_given;
    /* Replication's one seam (core/repl/repl.h), NULL = a single node (no cost).
     * Called on the writer with every batch after it was applied and before
     * its commit, prev_seq being the stream sequence the store held (meta
     * "repl_seq", 0 = none). PH_OK only when the batch is in the stream and
     * ends at *seq (> prev_seq): published by this leader and acknowledged, or
     * being applied from there by a standby. A batch may take several stream
     * messages (parts of a batch over the servers' max_payload), and parts of
     * a batch never completed may lie between prev_seq and the batch, so *seq
     * is the sequence of its LAST message, not always prev_seq + 1; the store
     * writes *seq to "repl_seq" in the batch's transaction (the value's room
     * is taken before the call, so that write needs no new page). Any other
     * rc aborts the batch: nothing of it is committed and every command of it
     * fails with that rc and err (PH_EUNAVAIL, "replication: not stored:
     * ..."). The hook must not submit commands or call back into the store. */
    int (*repl_hook)(void *arg, const struct ph_cmd *batch, uint64_t prev_seq, uint64_t *seq,
                     ph_err *err);
    void *repl_arg; /* borrowed: must outlive the store */
} ph_store_opts;
#define PH_REPORT_OFFSET_DEFAULT 480

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

/* 1 when dir holds a store (its data file), 0 when not: what a replicated
 * node started without NATS asks (a new store cannot know the stream's uid;
 * core/repl/repl.h). Any thread. */
int ph_store_exists(const char *dir);

/* The schema version this open migrated the store from, 0 when it did not. */
uint32_t ph_store_migrated_from(ph_store *s);

/* Stops taking commands, lets the writer finish every queued one, joins it and
 * closes the environment. NULL is a no-op. */
void ph_store_close(ph_store *s);

/* The stream sequence of the last batch this store committed through a
 * repl_hook (meta "repl_seq"; docs/replication.md), 0 when none (a single
 * node's store, or a new one). One read; any thread. */
uint64_t ph_store_repl_seq(ph_store *s);

/* store_snapshot.c: a consistent, compacted copy of the store at `path` (a
 * file: what data.mdb of a new data_dir is), as of one read transaction —
 * the writer keeps committing meanwhile. Written to "<path>.tmp" first,
 * fsynced, renamed over path and the directory fsynced, so path is either
 * absent or whole; the temporary is removed on every failure. *repl_seq (may
 * be NULL) gets the meta "repl_seq" the copy holds, read from the copy itself
 * (the copy's transaction is LMDB's own, not one of ours), *bytes (may be
 * NULL) its size. Holds off a map growth for the copy's length (as any
 * reader). Any thread but the writer; callers serialize copies to one path.
 * Not taken (PH_ENOSPC) when the copy — up to the store's used pages — would
 * leave less than a quarter of that, or 16 MiB, free where it goes: the
 * snapshots usually share the store's disk, which must keep room to grow.
 * Errors: PH_EIO (the copy, the write, the rename: err names the file),
 * PH_ENOSPC (the disk is full, or would be too full), PH_EINVAL (path too long). */
int ph_store_snapshot(ph_store *s, const char *path, uint64_t *repl_seq, uint64_t *bytes,
                      ph_err *err);

/* The meta "repl_seq" of the store file at path (a snapshot: not open as a
 * store), opened read-only without a lock file. *seq is 0 when the file holds
 * none. Any thread. Errors: PH_EIO (not an LMDB file, no `meta`; err names
 * the file). */
int ph_store_file_repl_seq(const char *path, uint64_t *seq, ph_err *err);

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

/* ---- key rotation (store_reseal.c; docs/store.md, "Key rotation") ---- */

/* How many sealed items a key id protects. */
typedef struct ph_key_use {
    uint16_t id;
    uint64_t codes, accounts;
} ph_key_use;
#define PH_KEY_USE_MAX 64 /* key ids counted; more are an error */

/* Counts every code and recharge account by the key id it is sealed with, in
 * one snapshot (a walk of codes and supply records: for the CLI and the
 * re-sealer's start, not for a scrape). out gets up to PH_KEY_USE_MAX ids,
 * ascending; *n how many. Needs no keys. PH_OK, PH_EIO (a malformed record,
 * named), PH_ELIMIT (more key ids). Any thread. */
int ph_store_key_use(ph_store *s, ph_key_use *out, size_t *n, ph_err *err);

struct ph_audit;

/* Where a re-seal walk is: codes, then supply records, by id. Zero = start. */
typedef struct ph_reseal_pos {
    int phase; /* 0 codes, 1 accounts, 2 the walk is done */
    uint64_t next;
} ph_reseal_pos;

/* What one step did. */
typedef struct ph_reseal_step_result {
    uint64_t moved;      /* committed under the newest key */
    uint64_t skipped;    /* changed since read: the next pass takes them */
    uint64_t unreadable; /* did not unseal under key `from` (damaged): left as they are */
} ph_reseal_step_result;

/* One bounded step of moving data sealed with key `from` to the newest key of
 * the store's keyring: reads up to `limit` such items from *pos on (one
 * snapshot, at most 64 x limit records looked at), unseals and reseals them
 * on this thread, and submits one PH_CMD_RESEAL carrying `audit` (may be
 * NULL), waiting for its commit; *pos moves on. Needs the keys (PH_EINVAL
 * without). PH_OK, PH_ESHUTDOWN, PH_EIO, PH_ENOMEM. Not on the writer. */
int ph_store_reseal_step(ph_store *s, uint16_t from, ph_reseal_pos *pos, size_t limit,
                         const struct ph_audit *audit, ph_reseal_step_result *res, ph_err *err);

/* The re-sealer's progress as its owner (the daemon) publishes it, for
 * GET /v1/stats and /metrics. */
enum { PH_RESEAL_IDLE = 0, PH_RESEAL_RUNNING = 1, PH_RESEAL_DONE = 2, PH_RESEAL_FAILED = 3 };
typedef struct ph_reseal_status {
    int state;       /* PH_RESEAL_*: idle (nothing older than the newest key), ... */
    uint16_t key_id; /* the newest key, where data moves to */
    size_t nold;
    ph_key_use old[8]; /* items still under older keys (counted at start, minus moved) */
    uint64_t moved, skipped, unreadable;
    char detail[200]; /* why it failed; "" */
} ph_reseal_status;
void ph_store_reseal_status_set(ph_store *s, const ph_reseal_status *st);
void ph_store_reseal_status_get(ph_store *s, ph_reseal_status *out);

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
    PH_CMD_SETTLE,        /* ops settle a stuck order by hand with the supplier's evidence */
    PH_CMD_RECON,         /* store a reconciliation run of a supplier statement (idempotent) */
    PH_CMD_FINAL_WORD,    /* what a supplier says about a final attempt (a discrepancy?) */
    PH_CMD_RESOLVE,       /* ops resolve a discrepancy: accept (a correction) or dispute */
    PH_CMD_RESEAL,        /* key rotation: sealed items moved to the newest key; the check
                             values of retired keys dropped (store_reseal.c) */
    PH_CMD_JOB_RAN,       /* a scheduled job's run ended: its record in `jobs` (store_jobs.c) */
    PH_CMD_JOB_ASK,       /* ops asked for a run of a job (POST /v1/jobs/{id}/run) */
    PH_CMD_CODE_REDEEMED, /* a supplier says an issued code was redeemed (store_redeem.c) */
    PH_CMD_SYNC,          /* one supplier's catalog or stock answer (store_sync.c) */
    PH_CMD_PIN,           /* ops pin a product listed or delisted, or unpin it (store_sync.c) */
    PH_CMD_BALANCE,       /* a supplier balance reading; its alert (store_alerts.c) */
    PH_CMD_ALERT_ACK,     /* ops acknowledge an alert (store_alerts.c) */
    PH_CMD_REPLENISH,     /* start a replenishment of a product's stock (store_replenish.c) */
    /* webhooks (store_webhooks.c; docs/store.md, "Webhooks"): in.wh */
    PH_CMD_WH_CREATE, /* an endpoint's new deliveries, its cursor advanced with them */
    PH_CMD_WH_RESULT, /* attempts' outcomes (a batch, any endpoints): the attempt log */
    PH_CMD_WH_ENABLE, /* ops re-enable an endpoint a 410 disabled */
    PH_CMD_WH_REPLAY, /* ops send deliveries again (one, or a seq range) */
    /* issuance protection (issue 15; docs/store.md, "Risk") */
    PH_CMD_RISK_RULE, /* ops create, change or remove a risk rule (store_risk_rules.c) */
    PH_CMD_RISK_LIST, /* ops add or remove a block or allow list entry (store_risk_rules.c) */
    PH_CMD_REVIEW,    /* a held order released or blocked (store_review.c) */
    /* grants (issue 16; store_grant.c, docs/store.md "Grants") */
    PH_CMD_GRANT,       /* claim, gift, expire or extend a grant (in.grant.op) */
    PH_CMD_GRANT_BATCH, /* a welfare batch: one grant per line, all or none (store_grant.c) */
    PH_CMD_BUNDLE,      /* a bundle order, or a retry of its failed components (store_bundle.c) */
};

/* The event names PH_CMD_NOTE_EVENT accepts: a closed list, so the feed's
 * vocabulary is reviewed here. Append a name (never reuse one) when a new
 * kind of note is needed: offer.price_changed, stock.low, supplier.balance_low
 * are meant to come this way. */
#define PH_NOTE_EVENTS                                                                             \
    "supplier.auth_failed", "supplier.auth_restored", "supplier.sync_requested",                   \
        "repl.leader",          /* replication's epoch marker (core/repl) */                       \
        "repl.trimmed"          /* the stream trimmed below a snapshot (repl/retain.h) */
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

/* One target per component of a bundle (REVIEW of a held bundle, CLAIM of a
 * bundle grant): config.h's PH_BUNDLE_COMPONENTS_MAX (store_bundle.c checks). */
#define PH_CMD_TARGETS_MAX 16

typedef struct ph_import_code {
    uint32_t line;      /* line in the source file, for error reports */
    uint8_t hash[32];   /* ph_crypto_index() of the code */
    int64_t expires_at; /* ms; 0 = never */
    uint32_t sealed_len;
    const uint8_t *sealed; /* ph_crypto_seal() of the code (and card number) */
} ph_import_code;

/* One sealed item moved to another key by PH_CMD_RESEAL: what the re-sealer
 * read (old) and the same plaintext sealed under the newest key (new, the same
 * length). Sealed before submission, like an import. */
enum { PH_SEALED_CODE = 1, PH_SEALED_ACCOUNT = 2 };
typedef struct ph_reseal_item {
    int kind; /* PH_SEALED_CODE (id: the code) or PH_SEALED_ACCOUNT (id: its order) */
    uint64_t id;
    uint32_t len; /* bytes of old and of new */
    const uint8_t *old_sealed, *new_sealed;
} ph_reseal_item;

typedef struct ph_affected_order {
    uint64_t id;
    char client[PH_SKU_MAX + 1];
    char client_order_id[PH_ORDER_ID_MAX + 1];
    uint32_t voided_codes;
} ph_affected_order;

/*
 * Who did an ops action, and what: the audit record a command carries
 * (docs/store.md, "Audit"). The writer appends it to `audit` in the same
 * transaction as the command's change, only when the command applies: a
 * refused command changes nothing, so it leaves no audit record either (the
 * access log keeps the request). Its time is the command's `now`. Every
 * string is borrowed from the submitter until completion, like the inputs.
 * Never a code, an account, a token or text a caller typed: names, ids and
 * counts only.
 */
#define PH_AUDIT_ACTION_MAX 64   /* bytes of an action name ("batch.void") */
#define PH_AUDIT_PEER_MAX   64   /* bytes of a peer address ("127.0.0.1", "::1") */
#define PH_AUDIT_REQID_MAX  48   /* bytes of a request id */
#define PH_AUDIT_WHAT_MAX   4096 /* bytes of `what` (JSON object text) */
typedef struct ph_audit {
    const char *action;     /* [a-z0-9_.]+: "batch.import", "config.reload", ... */
    const char *client;     /* the token's client name; NULL: not over HTTP (a signal) */
    const char *peer;       /* the peer's address; NULL: none (a signal, an offline request) */
    const char *request_id; /* the HTTP request id (X-Request-Id); NULL: none */
    const char *via;        /* NULL = "http"; else how it came: "signal" (SIGHUP) */
    const char *what;       /* JSON object text: ids and counts; NULL = {} */
} ph_audit;
/* ---- reconciliation (store_recon.c; docs/store.md, "Reconciliation") ---- */

/* One line of a supplier's statement, as money/recon.h read it. */
typedef struct ph_recon_line {
    uint32_t line;                                     /* in the file; 0 when a plugin gave it */
    char ref[PH_REF_MAX + 1];                          /* our attempt reference, "" none */
    char supplier_order_id[PH_SUPPLIER_ORDER_MAX + 1]; /* the supplier's, "" none */
    int64_t amount;                                    /* fen the line says */
    int64_t time;                                      /* ms; -1 not given */
    int charged;                                       /* 1: the supplier says it charged */
} ph_recon_line;

/* An attempt, by order id and attempt no (order_id 0: none). */
typedef struct ph_recon_ref {
    uint64_t order_id;
    uint32_t no;
} ph_recon_ref;

/* A line's outcome. The values are stored: never renumber. */
enum ph_recon_outcome {
    PH_RECON_MATCHED = 1,               /* their line and our attempt agree */
    PH_RECON_CHARGED_NOT_SUCCEEDED = 2, /* they charged; the attempt did not succeed with us */
    PH_RECON_NOT_BILLED = 3,            /* a success with us no charged line bills */
    PH_RECON_AMOUNT_MISMATCH = 4,       /* both succeeded, at other amounts */
    PH_RECON_UNKNOWN_REF = 5,           /* the line names no attempt of ours at this supplier */
    PH_RECON_DUPLICATE = 6,             /* a second charged line for an attempt already billed */
};
#define PH_RECON_OUTCOMES 6

/* "matched", "charged_not_succeeded", ...; "?" otherwise. Static strings. */
const char *ph_recon_outcome_name(int outcome);

/* Is a line with this outcome supplier truth that contradicts our record (a
 * discrepancy, docs/design.md rule 7)? The one answer for the writer and views. */
int ph_recon_outcome_discrepancy(int outcome);

/* What an attempt cost us: the supplier's charge when it gave one, else the
 * offer's unit cost x quantity. The one answer for the order's cost and
 * reconciliation. */
int64_t ph_attempt_cost(const ph_attempt *a, uint32_t quantity);

/* The outcome of statement line l against our attempt a (NULL: none found) of
 * an order of `quantity` units; billed: an earlier charged line of the same
 * statement already billed a. *ours gets what we hold (fen; -1 when we hold no
 * charge). Pure: the writer decides every stored outcome with it. */
int ph_recon_classify(const ph_recon_line *l, const ph_attempt *a, uint32_t quantity, int billed,
                      int64_t *ours);

/* ---- offer state and sync (store_sync.c; docs/store.md, "Offer state") ---- */

enum { PH_SYNC_CATALOG = 1, PH_SYNC_STOCK = 2 };
/* The values are stored: never renumber. */
enum { PH_PIN_NONE = 0, PH_PIN_LISTED = 1, PH_PIN_DELISTED = 2 };

/* One product as a supplier's catalog or stock check gave it (PH_CMD_SYNC). */
typedef struct ph_sync_item {
    const char *product_id; /* the supplier's id (an offer's supplier_sku) */
    int64_t cost;           /* fen we would pay; -1 unknown */
    int64_t stock;          /* units; -1 unknown or unlimited */
    int on_sale;            /* 1 sold now, 0 not, -1 unknown (a stock check) */
} ph_sync_item;

/* What the store knows of one offer upstream (db offer_state). */
typedef struct ph_offer_state {
    int64_t upstream_cost; /* fen; -1 unknown */
    int64_t stock;         /* units; -1 unknown or unlimited */
    int64_t stock_at;      /* ms the stock was read; 0 never */
    int on_sale;           /* 1, 0 (delisted upstream), -1 unknown */
    int over_max;          /* 1: upstream_cost is above the offer's max cost */
    int64_t synced_at;     /* ms of the last sync that named the offer; 0 never */
} ph_offer_state;

/* An offer may take orders as far as sync knows: not delisted upstream, not
 * over its max cost, not known out of stock. The one answer for routing,
 * auto-delisting and the stock sum. NULL (never synced) is usable. */
int ph_offer_state_usable(const ph_offer_state *st);

/* Is a stored product object listed: configured listed and not delisted by
 * sync or ops (no "delisted" member)? The one answer for orders, the catalog
 * and views. Pure. */
struct json_t;
int ph_product_listed(const struct json_t *product);
/* Why a configured-listed product is delisted, in words for the error an
 * order of it gets ("by ops", "upstream: ..."), or NULL when it is not
 * delisted. Static strings. Pure. */
const char *ph_product_delisted_why(const struct json_t *product);

/* "none", "listed", "delisted"; "?" otherwise; and back (-1 unknown). */
const char *ph_pin_name(int pin);
int ph_pin_parse(const char *name);

/* The offer states of sku at suppliers[0..n) in one snapshot: found[i] 1 and
 * out[i] set when a state is stored, else found[i] 0 and out[i] unknown
 * (cost -1, stock -1, on_sale -1). Plain data. Errors: PH_EIO. Any thread. */
int ph_store_offer_states(ph_store *s, const char *sku, const char *const *suppliers, size_t n,
                          ph_offer_state *out, int *found, ph_err *err);

/* One new webhook delivery of PH_CMD_WH_CREATE. */
typedef struct ph_wh_new {
    uint64_t seq;      /* the event's */
    uint64_t order_id; /* 0: a product event */
    char type[PH_SKU_MAX + 1];
} ph_wh_new;

/* One attempt's answer of PH_CMD_WH_RESULT. */
enum { PH_WH_OUT_DELIVERED = 1, PH_WH_OUT_RETRY, PH_WH_OUT_DEAD, PH_WH_OUT_GONE };
typedef struct ph_wh_answer {
    const char *endpoint;
    const char *error; /* "" or NULL: none; at most 120 bytes (the engine's detail words) */
    uint64_t seq;
    int64_t next_at; /* retry, gone: when to try again (the writer reads no clock) */
    int32_t status;  /* the HTTP status, 0 none */
    int outcome;     /* PH_WH_OUT_* (wh_policy.h's PH_WH_* have the same values) */
} ph_wh_answer;

/* The risk side of a new order (ORDER, SUPPLY_CREATE), decided and written
 * before submission (risk/risk.h, http/api_orders.c): the store acts on the
 * verdict and keeps the record, it never evaluates a rule. */
enum { PH_VERDICT_FULFIL = 0, PH_VERDICT_HOLD = 1, PH_VERDICT_DENY = 2 };
typedef struct ph_order_risk {
    int verdict;        /* PH_VERDICT_*: fulfil as usual; hold (PH_ORDER_HELD, listed in
                           `reviews` until hold_until); deny (PH_ORDER_FAILED at once,
                           reason "denied_by_risk", no code taken, nothing sent) */
    const char *rule;   /* hold, deny: the rule (or list entry) that decided; in the event */
    int64_t hold_until; /* hold: ms the review times out (the default then applies) */
    const char *record; /* the order's risk record, JSON text (docs/store.md, "Order risk"):
                           masked end user, subject keys, tags, amount, decision; the phone
                           only sealed; stored in `order_risk` under the order id */
    size_t record_len;
} ph_order_risk;

/* ---- grants (issue 16; store_grant.c, docs/store.md "Grants") ----------------
 *
 * A grant is an order stored PH_ORDER_GRANTED: its unit reserved for an end
 * user (the holder) until it is claimed, gifted on, extended or expired. Its
 * record (`grants`, keyed by the order id, which is the grant id) keeps the
 * holder as a subject key and a masked id, never the id; its claim token is a
 * secret known only by its keyed hash (`grant_tokens`: hash -> id), computed
 * on the HTTP thread. Every transition is one PH_CMD_GRANT. */
enum ph_grant_state { PH_GRANT_ACTIVE = 1, PH_GRANT_CLAIMED = 2, PH_GRANT_EXPIRED = 3 };
/* "active", "claimed", "expired"; "?" / 0 for anything else. Static strings. */
const char *ph_grant_state_name(int state);
int ph_grant_state_parse(const char *name);

#define PH_GRANT_TTL_MIN_MS    (60LL * 1000)                  /* a grant lasts at least a minute */
#define PH_GRANT_TTL_MAX_MS    (3LL * 366 * 24 * 3600 * 1000) /* and at most about 3 years */
#define PH_GRANT_HOLDER_MASKED 16                             /* bytes of a masked holder id */
#define PH_GRANT_TAGS_MAX      1024 /* bytes of the tags, a JSON array of "key=value" strings */
#define PH_GRANT_RECORD_MAX    16384

/* The holder of a grant: the end user's subject key (risk.h's ph_risk_key of
 * end_user.id), its masked id, and the order's end-user tags. */
typedef struct ph_grant_holder {
    uint64_t key;
    const char *masked; /* 1..PH_GRANT_HOLDER_MASKED-1 printable ASCII bytes */
    const char *tags;   /* JSON array text of "key=value" strings; NULL = [] */
} ph_grant_holder;

/* What ORDER and SUPPLY_CREATE carry to make their new order a grant. */
typedef struct ph_grant_in {
    int64_t expires_at; /* ms, after now */
    uint8_t token_hash[32];
    ph_grant_holder holder;
    uint64_t batch; /* the welfare batch it came with; 0 none */
} ph_grant_in;

/* One line of a welfare batch (PH_CMD_GRANT_BATCH): one grant of one unit. */
#define PH_GRANT_BATCH_MAX    200000 /* lines of one batch */
#define PH_GRANT_BATCH_ID_MAX 100    /* bytes of a batch id: its orders are "<batch id>:<line>" */
typedef struct ph_grant_line {
    uint32_t line; /* in the caller's file: the refusal names it */
    const char *sku;
    int delivery;  /* PH_DELIVERY_* of the product */
    int supply_ok; /* a card-code line may become a supplier grant when the stock is short */
    uint8_t token_hash[32];
    ph_grant_holder holder;
} ph_grant_line;

enum ph_grant_op {
    PH_GRANT_CLAIM = 1,  /* by token: codes issued (succeeded) or the first attempt (processing) */
    PH_GRANT_GIFT = 2,   /* by token: a new holder and token, the old token dead */
    PH_GRANT_EXPIRE = 3, /* the job: due grants expire, reserved codes back to stock */
    PH_GRANT_EXTEND = 4, /* ops: a new expires_at */
};

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
            const ph_order_risk *risk; /* NULL: no end user, no decision (nothing stored) */
            const ph_grant_in *grant;  /* NULL: goods (below, "GRANT") */
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
            const ph_order_risk *risk; /* as for ORDER; a held order gets no attempt */
            const ph_grant_in *grant;  /* as for ORDER: no attempt, no account */
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
            /* 1: the attempt is overdue (the submitter's clock says its
             * stuck_after has passed): if it is still open after this command
             * and not stuck yet, it becomes stuck now (stuck_at = now, the
             * order listed as stuck, one order.stuck event). Ignored when it
             * is stuck already or final, so it may be sent with every check. */
            int mark_stuck;
            /* Amounts (issue 11). Zero-safe: a command that leaves them 0
             * compares nothing and schedules nothing. When the attempt becomes
             * SUCCEEDED, the supplier's charge is compared with unit_cost x
             * quantity (tolerance fen either way) and its delivered value with
             * face_value (per unit) by ph_amount_mismatch; a mismatch still
             * settles the attempt with the supplier's figures and raises a
             * discrepancy (source amount) in the same transaction. */
            int64_t delivered;  /* fen per unit the supplier delivered; <= 0 keeps */
            int64_t tolerance;  /* fen; < 0 is PH_EINVAL */
            int64_t face_value; /* fen per unit, the product's; 0 = not compared */
            /* ms: an attempt that becomes FAILED as not found at the supplier
             * is queried once more at this time (the `late` schedule,
             * ph_store_late_due); 0 = never. */
            int64_t late_check_at;
        } attempt;
        /*
         * FINAL_WORD: what supplier `order_id`/`no` is said to have done by a
         * verified callback or a query after the attempt became final (the
         * late re-query). `state` is the claim (PH_ATTEMPT_SUCCEEDED or
         * _FAILED; 0 = none), `charged` and `delivered` the supplier's
         * figures (-1 unknown). The store compares them with the final
         * attempt (ph_final_word_contradicts) and, when they contradict it,
         * raises a discrepancy of `source` (PH_DISCREP_CALLBACK or _QUERY);
         * an open discrepancy of that attempt saying the same is not raised
         * twice. `late_due` > 0 also removes the attempt's late-check entry
         * due then (the late re-query is done, whatever it said).
         * Nothing else changes: a final attempt never moves by itself.
         * Result: discrepancy_id (0 when none was raised).
         * Refusals: PH_ENOTFOUND (order or attempt), PH_ESTATE (the attempt
         * is still open: a query settles it), PH_EINVAL (source, state).
         */
        struct {
            uint64_t order_id;
            uint32_t no;
            int source;        /* PH_DISCREP_CALLBACK or PH_DISCREP_QUERY */
            int state;         /* PH_ATTEMPT_SUCCEEDED / _FAILED, or 0 */
            int64_t charged;   /* -1 unknown */
            int64_t delivered; /* -1 unknown */
            int64_t tolerance; /* fen, the supplier's amount_tolerance */
            int64_t late_due;  /* ms; 0 = not a late re-query */
        } word;
        /*
         * RESOLVE: ops settle discrepancy `id`. accept = 1 takes the
         * supplier's truth: the attempt gets the state the supplier claimed
         * (when it claimed one) and its charge and delivered value, the order
         * follows (succeeded when any attempt succeeded; cost = the sum over
         * succeeded attempts of the charge, or unit_cost x quantity without
         * one), the discrepancy keeps before and after, and `order.corrected`
         * is emitted — the one move of a final attempt (docs/store.md,
         * "Discrepancies"). accept = 0 disputes it; nothing else changes.
         * Both keep `who` (the token's client) and `note`.
         * Refusals: PH_ENOTFOUND (no such discrepancy), PH_ESTATE (already
         * accepted or disputed: the message names the status; or a state
         * change of a card-code order, whose codes the supplier never gave),
         * PH_EINVAL (who, or note missing for a dispute, or over
         * PH_NOTE_MAX bytes, or not printable).
         */
        struct {
            uint64_t id;
            int accept;
            const char *who;
            const char *note; /* NULL or "" allowed only when accepting */
        } resolve;
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
        /*
         * SETTLE: ops settle a stuck order by hand (POST /v1/orders/{id}/settle):
         * its open attempt moves to `outcome` (PH_ATTEMPT_SUCCEEDED or _FAILED,
         * a forward move) and the order follows as for ATTEMPT — succeeded
         * with cost `charged` (or unit_cost x quantity), or failed with reason
         * "settled_by_ops" — never a fail-over, never a resend. `by` (the
         * token's client name), `note` and now are stored on the attempt
         * (settled_by, settle_note, settled_at). Events: order.attempt, then
         * order.succeeded / order.failed, then order.settled.
         * Refusals (nothing changes): PH_ENOTFOUND no such order; PH_ESTATE
         * the order is not stuck ("order 12 is succeeded, not stuck"), or a
         * card-code order settled succeeded (its codes never reached us);
         * PH_EINVAL naming the field: outcome, by, note (1..PH_NOTE_MAX bytes
         * of UTF-8 without control characters), charged (< -1, or with
         * outcome failed), supplier_order_id (printable ASCII).
         */
        struct {
            uint64_t order_id;
            int outcome;                   /* PH_ATTEMPT_SUCCEEDED or PH_ATTEMPT_FAILED */
            const char *by;                /* client name */
            const char *note;              /* required */
            int64_t charged;               /* fen, -1 keeps the attempt's */
            const char *supplier_order_id; /* NULL keeps */
        } settle;
        /*
         * RECON: one reconciliation run of `supplier`'s statement for the
         * period [from, to) (ms). Idempotent on (supplier, from, to, sha256 of
         * the statement): the same again returns the stored run with replayed
         * = 1 and changes nothing. Otherwise the writer decides every line's
         * outcome itself (ph_recon_classify) from the attempt cand[i] the
         * submitter found for line i (ph_store_recon_prepare; order_id 0 =
         * none), checking that it is an attempt of `supplier` whose reference
         * or supplier order id is the line's (else unknown_ref); then appends a
         * not_billed line for each of `unbilled` that is still an attempt of
         * `supplier` created in the period, succeeded, and named by no line.
         * Writes the run, its lines and recon.completed. Refusals (nothing
         * written): PH_EINVAL supplier not an identifier, from >= to, a line
         * with neither ref nor supplier order id, source or client malformed.
         */
        /*
         * RESEAL: key rotation (store_reseal.c; docs/store.md, "Key rotation").
         * Each item whose stored sealed value is still exactly old_sealed gets
         * new_sealed in its place and nothing else changes (an order that issued
         * the code meanwhile keeps it: the value is the same plaintext); an item
         * that changed or is gone is skipped (counted in reseal_skipped). Then
         * the check values of the key ids in `forget` are dropped from `meta`
         * (the daemon at start: keys the key file no longer has, which the open
         * proved no data needs). No event. Refusals (nothing changes): PH_ESTATE
         * items given and key_id without a recorded check value; PH_EINVAL an
         * item of another kind, a new value not sealed with key_id, forget
         * naming 0 or key_id. Results: resealed, reseal_skipped.
         */
        struct {
            uint16_t key_id; /* the key every new_sealed is sealed with */
            const ph_reseal_item *items;
            size_t n;
            const uint16_t *forget;
            size_t nforget;
        } reseal;
        /*
         * JOB_RAN: a run of the scheduler's job `id` ended (sched/sched.h,
         * the daemon's persist hook): the job's record in `jobs` gets the run
         * (started_at, ended_at, ok, outcome), next_due (0 = on demand only)
         * and its run count + 1; an ask (JOB_ASK) at or before started_at is
         * answered by it and cleared (any ask, when the run was manual). No
         * event (jobs show in GET /v1/jobs, not the feed).
         * JOB_ASK: ops asked for a run of `id` now: asked_at = now until a run
         * answers it (a restart runs it then); the other inputs are unused.
         * Carries the ops action's audit record.
         * Refusals (nothing written): PH_EINVAL naming the field: id (1 to
         * PH_JOB_ID_MAX - 1 bytes of printable ASCII without spaces), outcome
         * (NULL or printable ASCII of at most PH_JOB_OUTCOME_MAX bytes), ok
         * (0 or 1), ended_at before started_at, next_due < 0.
         */
        struct {
            const char *id;
            int64_t started_at, ended_at;
            int ok;
            const char *outcome;
            int manual;       /* 1: the run was asked for */
            int64_t next_due; /* ms; 0 = none */
            uint32_t runs;    /* JOB_RAN: the runs this record stands for: the last one and the
                                 idle runs before it that were not kept (sched.h's
                                 ph_sched_done_idle); 0 counts as 1 */
        } job;
        /*
         * CODE_REDEEMED: the code's supplier says it was redeemed (a customer-
         * service lookup asked it, core/supply/redeem.h). `hash` is the code's
         * keyed hash as the code index holds it (ph_code_hash under its batch's
         * look-alike rule), never the code. An issued code becomes redeemed,
         * with changed_at = redeemed_at when that lies within [the time it was
         * issued, now], else now (0: unknown, or a supplier's clock we cannot
         * believe), and one event code.redeemed {batch_id, sku, code_id} —
         * never the code. A code already redeemed stays as it is: PH_OK,
         * nothing written, code_changed 0 (a second report changes nothing).
         * Results: code_id, code_changed (1 when this command redeemed it).
         * Refusals (nothing changes): PH_ENOTFOUND no code has this hash;
         * PH_ESTATE the code is not issued ("code 12 is voided, not issued").
         */
        struct {
            uint8_t hash[32];
            int64_t redeemed_at; /* ms the supplier gave; 0 unknown */
        } redeem;
        /*
         * BALANCE: supplier's balance as read by the "balance/<supplier>" job
         * at cmd->now: stored in `balance` (the last reading and its time),
         * then judged against `below` (fen; < 0: the supplier has no rule)
         * with the alert discipline (ph_alert_next, margin
         * ph_alert_balance_margin(below)): supplier.balance_low once on
         * crossing below, supplier.balance_recovered when it re-arms.
         * Refusals: PH_EINVAL supplier not an identifier, balance < 0.
         */
        struct {
            const char *supplier;
            int64_t balance; /* fen */
            int64_t below;   /* fen; -1 = no rule */
        } balance;
        /*
         * ALERT_ACK: ops acknowledge alert `id` (open -> acknowledged) with
         * `by` (the token's client) and an optional note; event
         * alert.acknowledged {alert_id, by}. Refusals (nothing changes):
         * PH_ENOTFOUND no such alert; PH_ESTATE the alert is cleared or already
         * acknowledged (the message says which); PH_EINVAL by, or note over
         * PH_NOTE_MAX bytes or with control characters.
         */
        struct {
            uint64_t id;
            const char *by;
            const char *note; /* NULL or "" = none */
        } alert_ack;
        /*
         * REPLENISH: start a replenishment of `sku` (store_replenish.c; docs/store.md,
         * "Replenishment"). The writer reads the product's issuable stock at now,
         * whether a replenishment of sku is in flight and what was spent on sku
         * the business day of now, and decides with ph_replenish_decide among
         * `offers` (the usable offers of the rule's suppliers, as the submitter
         * found them; the cheapest within max_unit_cost is taken, the first on a
         * tie). A buy creates, in the same transaction, the replenishment (in
         * flight), its spend on the day (quantity x unit_cost), and a supplier
         * card order of client PH_REPLENISH_CLIENT (client order id
         * "replenish-<id>", attempt 1 SENDING at the offer) as PH_CMD_SUPPLY_CREATE
         * would; events order.accepted and replenish.started. The order goes
         * through fulfil like any other; its codes land in stock
         * (PH_CMD_ATTEMPT), and its end ends the replenishment.
         * Results: replenish_id, order (to hand to fulfil), repl_why.
         * Refusals (nothing changes; repl_why says which): PH_ESTATE stock
         * not below `below`, or a replenishment in flight; PH_ENOTFOUND no
         * offer within the cap; PH_ELIMIT the day's budget does not fit one
         * unit; PH_EINVAL a malformed rule or offer; PH_ESKU the product is
         * not a listed card-code product.
         */
        struct {
            const char *sku;
            uint32_t below, to;
            int64_t max_unit_cost, max_per_day; /* fen */
            const ph_attempt_target *offers;
            size_t noffers;
        } replenish;
        /*
         * WH_*: webhook deliveries (store_webhooks.c). `endpoint` is the
         * endpoint id (WH_RESULT: NULL, each answer names its own). CREATE and
         * RESULT, one per delivery pass, carry their arguments as structs (no
         * text for the writer to parse); ENABLE and REPLAY, rare ops actions,
         * `json`:
         *   WH_CREATE cursor_from a, cursor_to b, dels[ndels]: refused with
         *     PH_ECONFLICT unless the endpoint's stored cursor is a (0 for an
         *     endpoint never seen: its record is created); each seq in (a, b],
         *     ascending. Each delivery is stored pending with `previous` = the
         *     seq of the endpoint's last delivery of the same order (0 none),
         *     due now. The cursor becomes b. wh_count: deliveries created.
         *   WH_RESULT answers[nanswers]: one attempt each, appended to the
         *     attempt log; the delivery moves as the outcome says (gone: the
         *     endpoint is disabled, the delivery stays pending). An answer for
         *     a delivery that is not pending is skipped (a replay or a
         *     duplicate). wh_count: answers applied.
         *   WH_ENABLE (json NULL): the endpoint is enabled again.
         *     PH_ENOTFOUND when the store has no such endpoint.
         *   WH_REPLAY {"seq": n} or {"from_seq": a, "to_seq": b}: each
         *     delivered or dead delivery in the range is pending again, due
         *     now, its retry window restarting now (at most 10000 per command).
         *     wh_count: deliveries replayed. PH_ENOTFOUND: no such endpoint,
         *     or (seq) no such delivery.
         * ENABLE and REPLAY bump the endpoint's `gen`, which tells the
         * delivery thread to read its pending deliveries again. The arrays and
         * strings stay the submitter's until the command completes.
         */
        /*
         * RISK_RULE (store_risk_rules.c): `json` is a rule object
         * (ph_risk_rule_json) without version and times: the writer gives it
         * version (stored + 1, or 1), created_at (kept, or now) and
         * updated_at = now, stores it in `risk_rules` and a copy in
         * `risk_rule_hist` under (id, version); remove = 1 deletes it from
         * `risk_rules` (the history stays). expect_version > 0: PH_ECONFLICT
         * unless that is the stored version. Event risk.rule_changed {rule,
         * version, change: created|updated|removed}; the audit record.
         * Results: rule_version. Refusals: PH_ENOTFOUND (remove of no rule),
         * PH_ECONFLICT, PH_EINVAL (id, json not an object or its id another).
         * RISK_LIST: add (or replace) / remove the entry (list, var, key) in
         * `risk_lists`; event risk.list_changed {list, variable, masked,
         * expires_at, change}. PH_ENOTFOUND removing no entry; PH_EINVAL.
         */
        struct {
            const char *id;
            const char *json; /* NULL with remove */
            int remove;
            uint32_t expect_version;
            int create;  /* 1: PH_ECONFLICT when the rule exists (POST) */
            int replace; /* 1: PH_ENOTFOUND when it does not (PUT) */
        } risk_rule;
        struct {
            int remove;
            int list, var; /* risk.h's PH_RISK_BLOCK / _ALLOWLIST, PH_RISK_* variable */
            uint64_t key;  /* the subject key (ph_risk_key) */
            int64_t expires_at;
            const char *masked, *note;
        } risk_list;
        /*
         * REVIEW (store_review.c): held order `order_id` is released
         * (release = 1) or blocked. Block: FAILED, reason "blocked_by_review",
         * event order.blocked then order.failed. Release: event
         * order.released, then what ORDER or SUPPLY_CREATE would have done
         * for it: a card order takes its codes from stock (succeeded), or,
         * short of stock, goes to `first` as a supplier order (attempt 1
         * SENDING, PROCESSING); a recharge goes to `first`; first.supplier
         * NULL there: FAILED with fail_reason. A held bundle is bought as a
         * new bundle would be (store_bundle.c: its held components, with
         * `targets`, all or none; one a new order would refuse fails it
         * whole, out_of_stock), or reserved when it is a grant; blocked,
         * every component fails with it. Either way it leaves
         * `reviews`, and its risk record gets the outcome and `who`.
         * Results: order (to hand to fulfil when it became PROCESSING).
         * Refusals: PH_ENOTFOUND, PH_ESTATE (not held: "order 12 is
         * succeeded, not held"), PH_EINVAL (who, note).
         */
        struct {
            uint64_t order_id;
            int release;
            const char *who;  /* the token's client, or "timeout" */
            const char *note; /* NULL or "" = none */
            ph_attempt_target first;
            const char *fail_reason;
            /* a held bundle (codec version 5): component j's supplier, or none
             * (supplier NULL), routed as for a new bundle; ntargets 0: none */
            ph_attempt_target targets[PH_CMD_TARGETS_MAX];
            uint32_t ntargets;
        } review;
        /*
         * ORDER, SUPPLY_CREATE: `grant` (in.order.grant / in.supply.grant,
         * NULL none) makes the new order a grant: stored GRANTED with its
         * `grants` record, token hash and expiry entry; a card order from
         * stock reserves its codes (available -> reserved), a supplier order
         * gets no attempt (a recharge no account). A held order keeps its
         * grant active until released (granted then) or blocked (expired).
         * Events order.accepted (supplier orders), order.granted.
         *
         * GRANT (store_grant.c): `op` on the grant the token hash names
         * (CLAIM, GIFT: client must be the order's, else PH_ENOTFOUND like
         * an unknown token) or `grant_id` (EXTEND). `key` is the keyed hash
         * of the caller's request_id (all zero: none): a CLAIM, GIFT or
         * EXTEND whose key the grant already applied is a replay (replayed =
         * 1, nothing changes).
         *   CLAIM: codes reserved -> issued, order SUCCEEDED (booked like a
         *     stock order); a supplier grant gets the account (recharge) and
         *     its next attempt at `first` (PROCESSING), or FAILED with
         *     fail_reason. grant.claimed. Refusals: PH_ECONFLICT already
         *     claimed (another key), PH_ESTATE expired (grant_state says so)
         *     or the order held. A supplier grant's order that then fails for
         *     good, every attempt failed (ATTEMPT, SETTLE), gives the grant back
         *     in that command's transaction: the order GRANTED again (its
         *     failed attempts kept, no order.failed), the grant active with
         *     the same token (or expired, when its time passed), the return
         *     in the record's "returns"; grant.returned. A claim again is its
         *     next attempt.
         *   GIFT: holder and token replaced (the old token's entry deleted),
         *     the chain gets {at, from, to}; grant.gifted. PH_ESTATE, PH_ECONFLICT.
         *   EXPIRE: at most `limit` grants due at now (0 = PH_EXPIRE_LIMIT):
         *     reserved codes back to stock (or expired, when their own expiry
         *     passed), order FAILED "grant_expired"; grant.expired, then
         *     order.failed. Results: expired_codes (grants), more.
         *   EXTEND: expires_at (after now, within PH_GRANT_TTL_MAX_MS) of an
         *     active grant; who; grant.extended. PH_ESTATE.
         * Results: order (the grant's, with codes), record (the grant's
         * record, JSON text), replayed, grant_state (also on a refusal: the
         * state the grant was found in, 0 none found).
         */
        struct {
            int op; /* PH_GRANT_* op */
            uint64_t grant_id;
            uint8_t token_hash[32];
            uint8_t key[32];
            const char *client;
            ph_grant_holder to; /* GIFT */
            uint8_t new_token_hash[32];
            const uint8_t *account_sealed; /* CLAIM of a recharge */
            uint32_t account_sealed_len;
            const char *account_masked;
            ph_attempt_target first; /* CLAIM of a supplier grant */
            const char *fail_reason;
            int64_t expires_at; /* EXTEND */
            const char *who;    /* EXTEND: the token's client */
            uint32_t limit;     /* EXPIRE */
            /* CLAIM of a bundle grant (codec version 5): component j's
             * supplier when it goes to one (supplier NULL: it fails
             * no_supplier_available, the others are delivered) */
            ph_attempt_target targets[PH_CMD_TARGETS_MAX];
            uint32_t ntargets;
        } grant;
        /*
         * GRANT_BATCH: a welfare batch of `client`, idempotent on (client,
         * batch_id): the same again with the same fingerprint is replayed
         * (replayed = 1, grant_ids from the stored orders), another is
         * PH_ECONFLICT. Else every line becomes a grant order of one unit,
         * client order id "<batch_id>:<line>" (1-based), as ORDER (card codes
         * from stock, reserved) or SUPPLY_CREATE (a recharge, or a card line
         * with supply_ok when its stock is short) would store it, all in this
         * command's transaction: one line refused (a short stock, a delisted
         * sku, its client order id taken) refuses the batch, the message
         * naming the line, and nothing is stored. The batch's record goes to
         * `grant_batches`. Results: grant_ids (ngrant_ids = n), record.
         */
        struct {
            const char *client, *batch_id;
            uint8_t fingerprint[32];
            int64_t expires_at;
            const ph_grant_line *lines;
            size_t n;
        } grant_batch;
        /*
         * BUNDLE (store_bundle.c; docs/store.md, "Bundles"). retry_of 0: a new
         * bundle order of `sku` (a listed product whose stored delivery is
         * bundle), idempotent on (client, client_order_id) like ORDER. The
         * writer reads the components from the stored product; component j
         * is bought as its own order ("component order", client order id
         * "#<parent id>.<j>", same client): a card-code component with
         * quantity codes available is taken from stock, else it goes to
         * targets[j] (supplier NULL: none); a recharge component goes to
         * targets[j] with the sealed account. If any component can be
         * neither, nothing is written: PH_ENOSTOCK naming components[j] (short
         * of stock, or no supplier for it). Else the parent
         * (no codes, no money of its own), every component, the bundle
         * record and the events are written in this one transaction, the
         * parent's state ph_bundle_state of its components'.
         * retry_of = parent id: retry `retry_no` of that bundle (the
         * client's): each component whose latest order failed is bought again
         * as a new component order "#<parent>.<j>.<retry_no>" (stock, else
         * targets[j]; a recharge reuses the failed order's sealed account);
         * delivered and open components never. retry_no at or below the
         * retries done: the parent as it is, replayed = 1. Refusals (nothing
         * changes): PH_ENOTFOUND (no such bundle of the client), PH_ECONFLICT
         * (retry_no not the next), PH_ESTATE (the bundle is not partial),
         * PH_ENOSTOCK as above, PH_EINVAL (inputs). No targets at all
         * (ntargets 0, targets NULL): no component goes to a supplier (a
         * welfare batch's bundle line). With `risk` hold: the parent and
         * every component order held, no plan, nothing taken; deny: the
         * parent alone, failed denied_by_risk, no record. With `grant`:
         * every component reserved (granted; a recharge component needs no
         * target), the parent granted with the one grant (store_grant_new).
         * Results: order (the parent), replayed; record (a grant's).
         */
        struct {
            const char *client, *client_order_id, *sku;
            uint32_t quantity;
            uint8_t fingerprint[32];
            uint64_t retry_of;
            uint32_t retry_no;
            const ph_attempt_target *targets; /* one per component of the bundle */
            size_t ntargets;
            const uint8_t *account_sealed; /* recharge components (new bundle), else NULL */
            uint32_t account_sealed_len;
            const char *account_masked;
            /* new bundle: as for ORDER (hold: the parent and every component
             * order held, nothing taken or bought; deny: the parent failed
             * denied_by_risk, no component); the record is stored under the
             * parent's id */
            const ph_order_risk *risk;
            /* new bundle as a grant (codec version 5; NULL goods): every
             * component reserved (stock codes reserved, supplier components
             * the right only), the parent granted with the one grant record
             * and token */
            const ph_grant_in *grant;
        } bundle;
        struct {
            const char *endpoint;
            const char *json; /* REPLAY */
            uint64_t cursor_from, cursor_to;
            const ph_wh_new *dels;
            size_t ndels;
            const ph_wh_answer *answers;
            size_t nanswers;
        } wh;
        struct {
            const char *supplier, *client; /* client: the token's name, who imported it */
            const char *source;            /* "csv" or "plugin" */
            int64_t from, to;
            uint8_t sha256[32];
            const ph_recon_line *lines;
            const ph_recon_ref *cand; /* nlines of them */
            size_t nlines;
            const ph_recon_ref *unbilled;
            size_t nunbilled;
        } recon;
        /*
         * SYNC: what one supplier said about its products (store_sync.c;
         * docs/store.md, "Offer state"), applied in one transaction. `kind`
         * PH_SYNC_CATALOG is a whole catalog: every offer of `supplier` whose
         * supplier_sku is not among the items is delisted upstream;
         * PH_SYNC_STOCK answers for the items given only. For every offer of
         * a stored product at `supplier`, the offer state (upstream cost,
         * stock and its time, on sale, over max cost) is compared with the
         * stored one and events are written: offer.price_changed,
         * offer.out_of_stock, offer.back_in_stock, offer.delisted_upstream,
         * offer.relisted_upstream, offer.over_max_cost. Then each product
         * touched is delisted (product.delisted, reason upstream) when it has
         * no usable offer and no local stock, or relisted when it is
         * auto-delisted and has one again (product.relisted) — unless ops
         * pinned it. Items are sorted by the writer's copy: any order.
         * Refusals (nothing changes): PH_EINVAL supplier not an identifier,
         * kind unknown, an item without product_id or with a product_id over
         * PH_SKU_MAX bytes, a duplicate product_id.
         */
        struct {
            const char *supplier;
            int kind; /* PH_SYNC_CATALOG or PH_SYNC_STOCK */
            const ph_sync_item *items;
            size_t n;
        } sync;
        /*
         * PIN: ops pin product `sku` listed (never auto-delisted) or delisted
         * (delisted whatever its offers say), or unpin it (`pin`
         * PH_PIN_NONE: sync decides again, at once). Writes product.delisted
         * / product.relisted (reason ops) when its listing changes.
         * Refusals: PH_ESKU no such product, PH_EINVAL pin.
         */
        struct {
            const char *sku;
            int pin; /* PH_PIN_* */
        } pin;
    } in;
    /* The ops action this command is (ph_audit above), or NULL for none: the
     * writer appends its record when the command applies; a malformed one
     * refuses the command (PH_EINVAL naming `audit.<field>`). Orders never
     * carry one. Borrowed until completion. */
    const ph_audit *audit;

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
    /* SUPPLY_CREATE, ATTEMPT and SETTLE also set `order` (with its attempts, and its codes
     * once succeeded) and SUPPLY_CREATE sets `replayed`. */
    uint64_t discrepancy_id; /* FINAL_WORD: raised (0 none); ATTEMPT: an amount one raised */
    char *record; /* RESOLVE: the discrepancy after it (JSON text, as listed); ph_cmd_clear */
    uint64_t expired_codes;  /* EXPIRE: codes that became expired */
    int more;                /* EXPIRE: due entries remain after this step */
    uint64_t recon_run;      /* RECON: the run (new, or the stored one with replayed = 1) */
    uint64_t resealed;       /* RESEAL: items moved to key_id */
    uint64_t alert_id;       /* BALANCE: an alert fired by it (0 none) */
    uint64_t reseal_skipped; /* RESEAL: items changed or gone since they were read */
    uint64_t code_id;        /* CODE_REDEEMED: the code the hash names */
    int code_changed;        /* CODE_REDEEMED: 1 when this command redeemed it */
    uint32_t sync_changes;   /* SYNC: offer events written; PIN: 1 when the listing changed */
    uint32_t sync_offers;    /* SYNC: offers of the supplier the items were matched against */
    uint64_t replenish_id;   /* REPLENISH: the replenishment started (0 none) */
    int repl_why;            /* REPLENISH: PH_REPL_* the decision */
    uint64_t wh_count;       /* WH_*: deliveries created, results applied, deliveries replayed */
    uint32_t rule_version;   /* RISK_RULE: the version stored (removed: the last one) */
    /* REVIEW sets `order` (after the release or block). */
    uint64_t *grant_ids; /* GRANT_BATCH: the grant (order) id of each line; ph_cmd_clear */
    size_t ngrant_ids;
    int grant_state; /* GRANT: PH_GRANT_* the grant was found in (0: none); ORDER and
                        SUPPLY_CREATE with a grant set `record` to the grant's record */

    /* ---- completion ---- */
    ph_cmd_done_fn
        done;     /* called once, on the writer thread, after the durable commit; may be NULL */
    void *arg;    /* for the submitter */
    ph_cmd *next; /* private to the store */
    /* private to the store: the length of a list queued by
     * ph_store_submit_list, on its first command (0 on every other) */
    unsigned list_n;
};

/* Queues cmd for the writer; returns at once. cmd->done runs later on the
 * writer thread (keep it short: signal and return). Returns PH_OK, or
 * PH_ESHUTDOWN when the store is closing (done is then not called). */
int ph_store_submit(ph_store *s, ph_cmd *cmd);

/* Queues cmd, cmd->next, ... (a list the caller linked) at once, so the writer
 * takes them together (up to max_batch) and alone: no other command joins
 * their batch (how a replay or a standby applies a recorded batch as one; the
 * replication hook passes a stream's batch only whole and unmixed). As
 * ph_store_submit for each; on PH_ESHUTDOWN none is queued. */
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

/* A bundle's record (issue 16, store_bundle.c): JSON text {"retries": n,
 * "components": [{"sku", "quantity", "orders": [order ids, oldest first]}]}
 * for parent order id, the caller's (free). Errors: PH_ENOTFOUND (not a
 * bundle), PH_EIO, PH_ENOMEM. */
int ph_store_bundle_get(ph_store *s, uint64_t id, char **json, ph_err *err);

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

/* Lists batches with id > after, ascending, at most limit (no code counts:
 * each batch's count is in it). On PH_OK *out is an array of *n batches
 * (possibly 0) the caller frees with ph_batch_list_free. Errors: PH_EIO,
 * PH_ENOMEM. Any thread. */
int ph_store_batch_list(ph_store *s, uint64_t after, size_t limit, ph_batch ***out, size_t *n,
                        ph_err *err);
void ph_batch_list_free(ph_batch **list, size_t n);

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

/* Events with seq > after, ascending, at most limit, as ph_store_event_list;
 * with client non-NULL only the events about an order of that client (an
 * "order_id" and that "client"), never an event about no order. At most `scan`
 * events are examined per call (0 = 10000), so a client paging through a store
 * full of other clients' events answers in bounded time: *next_after is where
 * the next page starts (the last event examined), *more is 1 when events after
 * it were not examined. The texts are the stored events whole: a reader that
 * shows them to a client picks the fields it may see. On PH_OK the caller
 * frees the array of *n with ph_store_event_list_free. Errors: PH_EIO,
 * PH_ENOMEM. Any thread. */
int ph_store_event_scan(ph_store *s, const char *client, uint64_t after, size_t limit, size_t scan,
                        char ***out, size_t *n, uint64_t *next_after, int *more, ph_err *err);

/* Audit records (docs/store.md, "Audit"), ascending by id, with id > after,
 * that match every filter given (from/to: `at` within [from, to] in ms, 0 =
 * open; client: that client name exactly; action: that action exactly; NULL =
 * any), at most limit of them, each as its JSON text (with "id"). At most
 * `scan` records are examined per call (0 = 10000), so a narrow filter over a
 * long trail answers in bounded time: *next_after is where the next page
 * starts (the last record examined), and *more is 1 when records after it were
 * not examined. On PH_OK the caller frees the array of *n with
 * ph_store_event_list_free. Errors: PH_EIO, PH_ENOMEM. Any thread. */
typedef struct ph_audit_filter {
    int64_t from, to;
    const char *client, *action;
} ph_audit_filter;
int ph_store_audit_list(ph_store *s, const ph_audit_filter *f, uint64_t after, size_t limit,
                        size_t scan, char ***out, size_t *n, uint64_t *next_after, int *more,
                        ph_err *err);

/* Orders with an attempt not final (SENDING, PROCESSING, UNKNOWN), ascending
 * by id, with id > after, at most limit, with their attempts (no codes): what
 * the core must resume after a restart. Kept in the `pending` database, written
 * in the same transaction as the attempt. On PH_OK the caller frees the list
 * (ph_order_list_free). Errors: PH_EIO, PH_ENOMEM. */
int ph_store_pending_list(ph_store *s, uint64_t after, size_t limit, ph_order ***out, size_t *n,
                          ph_err *err);

/* Stuck orders: those whose open attempt was escalated (ph_order_stuck_since),
 * ascending by id, with id > after, at most limit, with their attempts (no
 * codes); only client's when client is non-NULL. Read from the `pending`
 * index (its value marks a stuck order), so the cost is the open orders', not
 * the store's. On PH_OK the caller frees the list (ph_order_list_free).
 * Errors: PH_EIO, PH_ENOMEM. */
int ph_store_stuck_list(ph_store *s, const char *client, uint64_t after, size_t limit,
                        ph_order ***out, size_t *n, ph_err *err);

/* How many orders are stuck now (one pass over `pending`, no order loaded).
 * PH_OK with *n, or PH_EIO. Any thread. */
int ph_store_stuck_count(ph_store *s, uint64_t *n, ph_err *err);
/* Orders counted by state and by SKU (store_tally.c), for the ops page. */
#define PH_ORDER_TALLY_STATES 9 /* by_state slots: index PH_ORDER_* (0, 1 unused; 8 partial) */
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

/* ---- scheduled jobs (store_jobs.c; docs/store.md, "Jobs") ---- */

#define PH_JOB_ID_MAX      96  /* bytes of a job id, NUL included (sched.h's PH_SCHED_ID_MAX) */
#define PH_JOB_OUTCOME_MAX 159 /* bytes of a run's outcome */

/* What `jobs` holds of one job: its last run, next due time, runs, pending ask. */
typedef struct ph_job_record {
    int64_t last_started_at, last_ended_at; /* 0 = never ran */
    int last_ok;                            /* -1 = never ran */
    char last_outcome[PH_JOB_OUTCOME_MAX + 1];
    int64_t next_due; /* ms; 0 = none */
    uint64_t runs;    /* JOB_RAN commands applied */
    int64_t asked_at; /* ms of an ask no run answered yet; 0 = none */
} ph_job_record;

/* The record of job id. PH_OK, PH_ENOTFOUND (none stored), PH_EIO (a
 * malformed record, named), PH_ENOMEM. One read; any thread. */
int ph_store_job_get(ph_store *s, const char *id, ph_job_record *out, ph_err *err);

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
 * states still holds; now <= 0 counts the states as stored. SKUs come in the
 * order of their first batch. Reads the counts the writer keeps (docs/store.md,
 * "Code counts"): O(SKUs) plus each SKU's due expiry entries the sweep has not
 * reached, never every code, so the snapshot is short whatever the store holds.
 * On PH_OK the caller clears *out (ph_store_stats_clear). Errors: PH_EIO (a
 * malformed count record, or counts that exceed imported, named), PH_ENOMEM.
 * Any thread. */
int ph_store_stats_at(ph_store *s, int64_t now, ph_store_stats *out, ph_err *err);
/* ph_store_stats_at at the wall clock. */
int ph_store_stats_get(ph_store *s, ph_store_stats *out, ph_err *err);
void ph_store_stats_clear(ph_store_stats *st);

/* Checks every invariant of the data (docs/store.md, "Invariants"): each code in
 * exactly one state and indexed accordingly (stock list, expiry index),
 * imported = sum over states, no code
 * in two orders, every order's codes issued to it, the idempotency index and the
 * event sequence whole, a key check for every key id the data is sealed with,
 * the counts the writer keeps for ph_store_stats_at equal to what the codes
 * say. When the store was opened with keys, also: every code unseals and its
 * index entry is the hash of its normalized form under its batch's rule. PH_OK
 * (stats, when non-NULL, filled from the scan of every code, as stored: the
 * caller clears it), or PH_EIO with the first
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
/* ---- reconciliation reads (store_recon.c) ---- */

/* For a RECON command: in one snapshot, the attempt of `supplier` each line
 * names — by reference first, else by supplier order id — into cand[i]
 * (order_id 0: none), and the attempts of `supplier` created in [from, to)
 * that succeeded and that no line names, into *unbilled (*nunbilled; the
 * caller frees it). Reads only the orders the lines name and the attempts of
 * the period (the supplier attempt index, `supply_att`), never the rest of
 * the store. Errors: PH_EIO, PH_ENOMEM. */
int ph_store_recon_prepare(ph_store *s, const char *supplier, int64_t from, int64_t to,
                           const ph_recon_line *lines, size_t n, ph_recon_ref *cand,
                           ph_recon_ref **unbilled, size_t *nunbilled, ph_err *err);

/* The run stored for this statement, if any: *run 0 when none. Errors: PH_EIO. */
int ph_store_recon_find(ph_store *s, const char *supplier, int64_t from, int64_t to,
                        const uint8_t sha256[32], uint64_t *run, ph_err *err);

/* Runs with id > after (or, with before > 0, id < before, newest first), at
 * most limit, as JSON texts (docs/store.md); freed with
 * ph_store_event_list_free. Errors: PH_EIO, PH_ENOMEM. */
int ph_store_recon_list(ph_store *s, uint64_t after, size_t limit, char ***out, size_t *n,
                        ph_err *err);

/* One run's JSON text (the caller frees it). Errors: PH_ENOTFOUND, PH_EIO, PH_ENOMEM. */
int ph_store_recon_get(ph_store *s, uint64_t id, char **out, ph_err *err);

/* The lines of run id with index > after, ascending, at most limit, as JSON
 * texts (each has "index"); freed with ph_store_event_list_free. Errors:
 * PH_ENOTFOUND (no such run), PH_EIO, PH_ENOMEM. */
int ph_store_recon_lines(ph_store *s, uint64_t id, uint64_t after, size_t limit, char ***out,
                         size_t *n, ph_err *err);

int ph_store_check_watched(ph_store *s, ph_store_stats *stats, ph_check_progress *progress,
                           ph_err *err);

/* ---- the ledger and the daily reports (store_ledger.c, store_report.c) ----
 *
 * The ledger is derived, never written by a command of its own: every write
 * of an order record (store_put_order, whatever command makes it) runs one
 * booking function that computes the order's money facts — the supplier cost
 * of each succeeded attempt (its `charged`, else unit_cost x quantity), the
 * issued codes' unit costs for an order from local stock, and the sale (the
 * client's unit price x quantity, captured when the order was first stored,
 * once the order succeeded; 0 otherwise) — compares them with the order's
 * summary and appends an immutable entry for each difference, in the same
 * transaction. The same function keeps the daily aggregates the reports read.
 * docs/store.md, "The ledger", is the prose version.
 */

/* The values are stored: never renumber. */
enum ph_ledger_kind {
    PH_LEDGER_SALE = 1,            /* the client's price for the order (revenue) */
    PH_LEDGER_SUPPLIER_COST = 2,   /* what a supplier charged, or the codes' cost */
    PH_LEDGER_SALE_CORRECTION = 3, /* a later change of a sale already booked (signed) */
    PH_LEDGER_COST_CORRECTION = 4, /* a later change of a cost already booked (signed) */
};
/* "sale", "supplier_cost", ...; "?" otherwise. Static strings. */
const char *ph_ledger_kind_name(int kind);
/* 1 when entries of this kind move revenue (sale and its corrections), 0 when
 * they move cost: the one answer behind the reports' columns. */
int ph_ledger_kind_revenue(int kind);

typedef struct ph_ledger_entry {
    uint64_t seq; /* 1, 2, ...: the order entries were written in */
    int64_t at;   /* ms: the time of the command that wrote it */
    uint64_t order_id;
    uint32_t attempt;  /* the attempt a supplier cost belongs to; 0 for a sale and
                          for the cost of codes from local stock */
    int kind;          /* PH_LEDGER_* */
    int command;       /* PH_CMD_* that caused it (0: the schema 4 migration) */
    uint32_t quantity; /* units the amount is for */
    int64_t amount;    /* fen, signed */
    char supplier[PH_SKU_MAX + 1];
    char client[PH_SKU_MAX + 1];
    char sku[PH_SKU_MAX + 1];
} ph_ledger_entry;

/* What ph_store_ledger_list keeps; zero/NULL members do not filter. */
typedef struct ph_ledger_filter {
    int64_t from, to; /* ms: from <= at < to; 0 = unbounded */
    const char *supplier, *client, *sku;
} ph_ledger_filter;

/* Entries with seq > after that pass f, ascending, at most limit, in one
 * snapshot. On PH_OK *out is an array of *n (possibly 0) the caller frees
 * (free). Reads entries in seq order until the page is full: a narrow filter
 * walks the ledger from `after`. Errors: PH_EIO, PH_ENOMEM. */
int ph_store_ledger_list(ph_store *s, const ph_ledger_filter *f, uint64_t after, size_t limit,
                         ph_ledger_entry **out, size_t *n, ph_err *err);

/* What the ledger booked for one order so far (its summary): sums by kind's
 * side, and the unit price captured (-1: none configured). PH_ENOTFOUND when
 * nothing was booked for it (an order written before the ledger cannot be: the
 * migration books every order). */
typedef struct ph_ledger_order {
    int64_t revenue, cost; /* fen: the sums of its entries */
    int64_t unit_price;    /* fen, -1 when the product had no price for the client */
    uint32_t entries;
} ph_ledger_order;
int ph_store_ledger_order(ph_store *s, uint64_t order_id, ph_ledger_order *out, ph_err *err);

/* One row of a report: day (YYYY-MM-DD in the store's business time zone),
 * and supplier, client, sku ("" where the grouping left them out). */
typedef struct ph_report_row {
    char day[11];
    char supplier[PH_SKU_MAX + 1];
    char client[PH_SKU_MAX + 1];
    char sku[PH_SKU_MAX + 1];
    int64_t revenue, cost; /* fen: sums of the ledger entries booked that day */
    /* orders created that day, by their outcome now; unpriced: succeeded
     * orders whose product had no price for the client (their sale is 0) */
    uint64_t succeeded, failed, unknown, unpriced;
} ph_report_row;

enum { PH_REPORT_BY_DAY = 1, PH_REPORT_BY_SUPPLIER, PH_REPORT_BY_CLIENT, PH_REPORT_BY_SKU };

/* Days since 1970-01-01 for "YYYY-MM-DD" (a real date); -1 otherwise. */
int32_t ph_report_day_parse(const char *text);

/* The report for days from_day..to_day (inclusive, ph_report_day_parse) from
 * the daily aggregates, one snapshot, grouped by `by` (PH_REPORT_BY_*): one
 * row per day, supplier, client or sku, in that key's order, with the other
 * keys "". On PH_OK *rows (possibly 0 of them) is the caller's (free).
 * Reads only the aggregates of those days: its cost is the number of (day,
 * supplier, client, sku) that had money or orders, not the number of orders.
 * Errors: PH_EINVAL (by, or from > to), PH_EIO, PH_ENOMEM. */
int ph_store_report(ph_store *s, int32_t from_day, int32_t to_day, int by, ph_report_row **rows,
                    size_t *n, ph_err *err);

/* The business day's offset from UTC in minutes (-720..840) the daily
 * aggregates are kept in: fixed in `meta` (store_opts.report_utc_offset_min
 * at the store's first open, or a later open that changed it and rebuilt the
 * aggregates). */
int ph_store_report_offset(ph_store *s);
/* ---- analytics (issue 16; store_agg.c, docs/store.md "Analytics") -------
 *
 * Read from aggregates the writer keeps in the transaction of every order
 * and grant change (never a scan of orders), by UTC day (days since
 * 1970-01-01, ph_report_day_parse): the cost of a read is the number of
 * (day, key) rows in its range, not the number of orders. Any thread; each
 * read is one snapshot. client NULL: every client's; else that client's only.
 */
#define PH_AGG_RANGE_DAYS 366 /* the widest from..to a read takes */
#define PH_AGG_CO_DAYS    30  /* co-redemption looks back this many days at most */

/* One SKU's figures in one period (the period's first day). */
typedef struct ph_agg_top_row {
    int32_t period;
    char sku[PH_SKU_MAX + 1];
    uint64_t orders, units, unpriced; /* succeeded orders created in the period */
    int64_t value;                    /* fen: the ledger's sale price x quantity */
} ph_agg_top_row;
enum { PH_AGG_BY_ORDERS = 1, PH_AGG_BY_VALUE };
/* Weeks start on Monday: the first day of the week holding `day`. */
int32_t ph_agg_week_start(int32_t day);
/* The top n SKUs of each period (period_days 1: days; 7: weeks, Monday
 * first, the first and last clipped to from..to but named by their Monday;
 * 0: the whole range as one period, named by from_day)
 * from_day..to_day by `by` (PH_AGG_BY_*; ties by the other figure, then the
 * sku), periods ascending, each period's rows best first; periods without
 * orders have no rows. On PH_OK *rows is the caller's (free). Errors:
 * PH_EINVAL (from > to, a range over PH_AGG_RANGE_DAYS, n 0 or over 100,
 * period or by), PH_EIO, PH_ENOMEM. */
int ph_store_agg_top(ph_store *s, int32_t from_day, int32_t to_day, int period_days, int by,
                     size_t n, const char *client, ph_agg_top_row **rows, size_t *nrows,
                     ph_err *err);
/* Orders created from_day..to_day by the UTC hour of day of their creation
 * (every order but replenishments, whatever its outcome). Errors as above. */
int ph_store_agg_hours(ph_store *s, int32_t from_day, int32_t to_day, const char *client,
                       uint64_t out[24], ph_err *err);
/* Grant transitions from_day..to_day, each on the day it happened, by client,
 * end-user tag ("key=value", summed over clients unless client is given) or
 * sku (every client's: client must be NULL). */
typedef struct ph_agg_claim_row {
    char name[80]; /* a client, sku or tag (tags are at most 64 bytes) */
    uint64_t granted, claimed, expired, gifted;
} ph_agg_claim_row;
enum { PH_AGG_BY_CLIENT = 1, PH_AGG_BY_TAG, PH_AGG_BY_SKU };
/* Rows by name ascending; *rows the caller's (free). Errors as above, PH_EINVAL
 * also for a client given with PH_AGG_BY_SKU. */
int ph_store_agg_claims(ph_store *s, int32_t from_day, int32_t to_day, int by, const char *client,
                        ph_agg_claim_row **rows, size_t *nrows, ph_err *err);
/* Co-redemption of skus a and b (store_agg.c says exactly what is counted):
 * claims of b made from_day..to_day by holders who claimed a at most
 * within_d days before (0..30), the same with a and b swapped, and the claims
 * of each in the range (every client's). */
typedef struct ph_agg_co {
    uint64_t a_then_b, b_then_a, claims_a, claims_b;
} ph_agg_co;
int ph_store_agg_co(ph_store *s, int32_t from_day, int32_t to_day, const char *a, const char *b,
                    int within_d, ph_agg_co *out, ph_err *err);

/* ---- discrepancies (issue 11; docs/store.md, "Discrepancies") -----------
 *
 * Supplier truth that contradicts what we stored is never dropped: each case
 * is a record in the `discrep` sub-database, raised inside the writer by one
 * function (store_int.h, store_raise_discrepancy) in the same transaction as
 * its cause, with an `order.discrepancy` event, and counted while open. The
 * sources: a verified callback or a late re-query about a final attempt
 * (PH_CMD_FINAL_WORD), an amount that is not the agreed one when an attempt
 * succeeds (PH_CMD_ATTEMPT), a statement line (reconciliation). Ops resolve
 * each one (PH_CMD_RESOLVE).
 */
enum ph_discrep_source {
    PH_DISCREP_CALLBACK = 1,
    PH_DISCREP_QUERY = 2,
    PH_DISCREP_STATEMENT = 3,
    PH_DISCREP_AMOUNT = 4,
};
enum ph_discrep_status {
    PH_DISCREP_OPEN = 1,
    PH_DISCREP_ACCEPTED = 2,
    PH_DISCREP_DISPUTED = 3,
};
/* "callback", "query", "statement", "amount" / "open", "accepted",
 * "disputed"; "?" otherwise. Static strings. The parse functions return the
 * value, or 0 for a name that is none. */
const char *ph_discrep_source_name(int source);
const char *ph_discrep_status_name(int status);
int ph_discrep_status_parse(const char *name);

/* What the supplier says, as the raiser gives it (store_raise_discrepancy):
 * the store adds what we hold (the attempt's state and charge), the supplier,
 * client, SKU, time and status itself. */
typedef struct ph_discrepancy {
    uint64_t order_id;
    uint32_t attempt;        /* the attempt's no */
    int source;              /* PH_DISCREP_* */
    int their_state;         /* PH_ATTEMPT_SUCCEEDED / _FAILED; 0 = said nothing of it */
    int64_t their_charged;   /* fen; -1 unknown */
    int64_t their_delivered; /* fen per unit; -1 unknown */
} ph_discrepancy;

/* The comparison of a supplier's figures with what we agreed, the one answer
 * for every path (order answer, query, callback, statement). Bits:
 * PH_AMOUNT_CHARGE when charged (>= 0) differs from unit_cost x quantity by
 * more than tolerance (fen, >= 0) either way; PH_AMOUNT_DELIVERED when
 * delivered (> 0) differs from face_value (> 0) per unit. 0 when they agree
 * or are unknown. Pure; any thread. */
#define PH_AMOUNT_CHARGE    1u
#define PH_AMOUNT_DELIVERED 2u
unsigned ph_amount_mismatch(int64_t unit_cost, uint32_t quantity, int64_t charged,
                            int64_t tolerance, int64_t face_value, int64_t delivered);

/* Does a supplier's word about final attempt a (of an order of `quantity`
 * units) contradict it? 1 when claim (PH_ATTEMPT_SUCCEEDED / _FAILED) is
 * another final state, or the claim is the same success with a charge beyond
 * tolerance from the one we hold (ours: charged, else unit_cost x quantity);
 * else 0. Pure; any thread. */
int ph_final_word_contradicts(const ph_attempt *a, uint32_t quantity, int claim, int64_t charged,
                              int64_t tolerance);

/* Discrepancies with id > after, ascending, at most limit, as JSON texts
 * (docs/api.md, "Discrepancies", the store's fields); status (PH_DISCREP_*,
 * 0 = any) and supplier (NULL = any) filter. On PH_OK the caller frees the
 * list with ph_store_event_list_free; *next_after is the id to continue from
 * (0 when the end was reached). Scans at most 10,000 records per call, so a
 * filter that matches little still answers quickly: fewer results than limit
 * with *next_after set mean "go on". Errors: PH_EIO, PH_ENOMEM. */
int ph_store_discrep_list(ph_store *s, int status, const char *supplier, uint64_t after,
                          size_t limit, char ***out, size_t *n, uint64_t *next_after, ph_err *err);

/* One discrepancy as JSON text (the caller frees it). Errors: PH_ENOTFOUND,
 * PH_EIO, PH_ENOMEM. */
int ph_store_discrep_get(ph_store *s, uint64_t id, char **json, ph_err *err);

/* Discrepancies still open (one read of a counter the writer keeps): health
 * and /metrics. 0 on a read error. Any thread. */
uint64_t ph_store_discrep_open(ph_store *s);

/* The late re-query schedule: attempts failed as not found at the supplier,
 * to be queried once more (PH_CMD_ATTEMPT's late_check_at). Fills up to max
 * due at `now` (order id and attempt no, earliest first) and returns how many;
 * *next gets the earliest due time left after them (0 when none). 0 on a read
 * error. Any thread. */
typedef struct ph_late_check {
    uint64_t order_id;
    uint32_t no;
    int64_t due;
} ph_late_check;
size_t ph_store_late_due(ph_store *s, int64_t now, ph_late_check *out, size_t max, int64_t *next);
/* The same, passing over the entries skip(arg, entry) says 1 for (they fill
 * no place of max and are not *next): the caller's entries waiting out a
 * backoff, so entries it cannot finish never hide the ones behind them
 * (supply/late_defer.h). skip runs inside the read, on the caller's thread. */
typedef int (*ph_late_skip_fn)(void *arg, const ph_late_check *lc);
size_t ph_store_late_due_skip(ph_store *s, int64_t now, ph_late_skip_fn skip, void *arg,
                              ph_late_check *out, size_t max, int64_t *next);

/* ---- alerts (store_alerts.c; docs/store.md, "Alerts") --------------------------
 *
 * Low stock and low balance. A product's rule (its stored `low_stock`
 * {below, margin}) is judged by the writer inside the transaction of every
 * command that changes the product's stock (ORDER, IMPORT, VOID_BATCH,
 * EXPIRE, PUT_PRODUCTS), a supplier's in BALANCE, so no path can forget it.
 * Per (kind, subject) an alert is armed or fired: it fires once when the
 * value falls below its threshold and re-arms only once the value is back at
 * threshold + margin (hysteresis), clearing the alert it fired. */

enum ph_alert_kind {
    PH_ALERT_STOCK_LOW = 1,   /* subject: sku; value: local issuable + supplier stock */
    PH_ALERT_STOCK_OUT = 2,   /* subject: sku; value 0 */
    PH_ALERT_BALANCE_LOW = 3, /* subject: supplier; value: balance in fen */
};
#define PH_ALERT_KINDS 3
enum ph_alert_state { PH_ALERT_OPEN = 1, PH_ALERT_ACKED = 2, PH_ALERT_CLEARED = 3 };

/* "stock.low", "stock.out", "supplier.balance_low"; "?" otherwise. Static. */
const char *ph_alert_kind_name(int kind);
/* "open", "acknowledged", "cleared"; "?" otherwise; parse: 0 when unknown. */
const char *ph_alert_state_name(int state);
int ph_alert_state_parse(const char *name);

/* What the arm/fire discipline does with a new value: */
enum { PH_ALERT_KEEP = 0, PH_ALERT_FIRE = 1, PH_ALERT_REARM = 2 };
/* Armed (fired 0): FIRE when value < below. Fired: REARM when value >=
 * below + margin (margin >= 1). Else KEEP. Pure; the one answer for every
 * alert kind. */
int ph_alert_next(int fired, int64_t value, int64_t below, int64_t margin);
/* The default hysteresis of a threshold: max(1, below / 10). */
int64_t ph_alert_default_margin(int64_t below);

/* Milliseconds before its expiry at which a code of a product with this
 * min_validity_days stops being issuable (the expiry index retires it then). */
#define PH_MIN_VALIDITY_DAYS_MAX 3650
int64_t ph_min_validity_ms(int64_t days);
/* 1 when a code expiring at expires_at (0 = never) may no longer be issued
 * at now, min_validity_ms before its expiry. Pure; the one answer for the
 * order path, the sweep and the stock counts. */
int ph_code_retire_due(int64_t expires_at, int64_t min_validity_ms, int64_t now);

/* Alerts with id > after, ascending, at most limit, as JSON texts (docs/store.md,
 * "Alerts"); state PH_ALERT_* filters (0 = any). Frees and paging as
 * ph_store_discrep_list. Errors: PH_EIO, PH_ENOMEM. Any thread. */
int ph_store_alert_list(ph_store *s, int state, uint64_t after, size_t limit, char ***out,
                        size_t *n, uint64_t *next_after, ph_err *err);
/* Open alerts (not acknowledged, not cleared) per kind: out[kind - 1] (one
 * read of counters the writer keeps). Zeros on a read error. Any thread. */
void ph_store_alerts_open(ph_store *s, uint64_t out[PH_ALERT_KINDS]);
/* The last balance reading of a supplier (fen) and its time (ms).
 * PH_ENOTFOUND when none was stored; PH_EIO. Any thread. */
int ph_store_balance_get(ph_store *s, const char *supplier, int64_t *balance, int64_t *at,
                         ph_err *err);
/* A product's local stock at now: codes in stock (available) and those of
 * them that can be issued (not expiring within the product's
 * min_validity_days). PH_ENOTFOUND, PH_EIO. Any thread. */
typedef struct ph_local_stock {
    uint64_t available, issuable;
} ph_local_stock;
int ph_store_product_local(ph_store *s, const char *sku, int64_t now, ph_local_stock *out,
                           ph_err *err);
/* ---- replenishment (issue 12; store_replenish.c, docs/store.md "Replenishment") ----
 *
 * A replenishment buys codes of a card-code product from a supplier into a
 * new batch of local stock. It is an ordinary supplier card order of the
 * internal client PH_REPLENISH_CLIENT (so fulfil sends it once, queries an
 * ambiguous one and resumes it after a restart), started by PH_CMD_REPLENISH
 * and ended by its order's final state: succeeded (its codes are available in
 * a batch of the supplier at the purchase's unit cost) or failed (no
 * fail-over to another supplier; the spend it held on its day is given back).
 */
#define PH_REPLENISH_CLIENT "perkhub:replenish"

/* Is o a replenishment's order (client PH_REPLENISH_CLIENT)? The one answer
 * for the store (codes to stock, no sale), fulfil (no fail-over) and views. */
int ph_order_is_replenish(const ph_order *o);

/* What ph_replenish_decide decided; the values are stored in no record. */
enum ph_repl_why {
    PH_REPL_BUY = 1,   /* buy quantity from offers[offer] */
    PH_REPL_STOCK_OK,  /* available >= below */
    PH_REPL_IN_FLIGHT, /* a replenishment of the product is in flight */
    PH_REPL_NO_OFFER,  /* no offer at or under max_unit_cost */
    PH_REPL_BUDGET,    /* not one unit fits the day's budget */
    PH_REPL_INVALID,   /* the rule: to <= below, or a negative amount */
};
/* "buy", "stock_ok", "in_flight", "no_offer", "budget", "invalid"; "?". */
const char *ph_repl_why_name(int why);

typedef struct ph_replenish_rule {
    uint32_t below, to;
    int64_t max_unit_cost, max_per_day; /* fen */
} ph_replenish_rule;

typedef struct ph_replenish_decision {
    int why;           /* PH_REPL_* */
    uint32_t quantity; /* BUY: to - available, less when the budget allows less */
    size_t offer;      /* BUY: index into offers */
} ph_replenish_decision;

/* The decision behind PH_CMD_REPLENISH, pure (no clock, no store): with
 * `available` codes in stock, `spent` fen spent on the product today and a
 * replenishment in flight or not, buy to - available units of the cheapest
 * offer whose unit_cost <= max_unit_cost (the first such on a tie), as many
 * of them as keep spent + quantity x unit_cost <= max_per_day; or not, and
 * why (checked in the order of enum ph_repl_why). Any thread. */
void ph_replenish_decide(uint64_t available, const ph_replenish_rule *r, int64_t spent,
                         int in_flight, const ph_attempt_target *offers, size_t noffers,
                         ph_replenish_decision *out);

enum ph_repl_state { PH_RS_IN_FLIGHT = 1, PH_RS_SUCCEEDED = 2, PH_RS_FAILED = 3 };
/* "in_flight", "succeeded", "failed"; "?". Parse: 0 for none of them. */
const char *ph_repl_state_name(int state);
int ph_repl_state_parse(const char *name);

/* Replenishments with id > after, ascending, at most limit, as JSON texts
 * (docs/api.md, "Replenishments"); sku (NULL = any) and state (0 = any)
 * filter. On PH_OK the caller frees the list with ph_store_event_list_free;
 * *next_after is the id to continue from (0 at the end). Scans at most
 * 10,000 records per call (fewer results than limit with *next_after set
 * mean "go on"). Errors: PH_EIO, PH_ENOMEM. */
int ph_store_replenish_list(ph_store *s, const char *sku, int state, uint64_t after, size_t limit,
                            char ***out, size_t *n, uint64_t *next_after, ph_err *err);

/* What was spent on replenishing sku on the business day of `at` (fen), and
 * whether a replenishment of it is in flight (*in_flight gets its id, 0 none).
 * Errors: PH_EIO. */
int ph_store_replenish_state(ph_store *s, const char *sku, int64_t at, int64_t *spent,
                             uint64_t *in_flight, ph_err *err);

/* ---- webhooks (store_webhooks.c; docs/store.md, "Webhooks") ---- */

enum { PH_WH_PENDING = 1, PH_WH_DELIVERED_STATE = 2, PH_WH_DEAD_STATE = 3 };
/* "pending", "delivered", "dead"; "?" otherwise / the value, 0 for another name. */
const char *ph_wh_state_name(int state);
int ph_wh_state_parse(const char *name);

#define PH_WH_ID_MAX 96 /* bytes of a delivery id, NUL included */
/* A delivery's id, the same across retries and replays: "wh_<endpoint>_<seq>". */
void ph_wh_delivery_id(const char *endpoint, uint64_t seq, char out[PH_WH_ID_MAX]);
/* The seq of delivery id `id` of `endpoint`; 0 when id is not one of its ids. */
uint64_t ph_wh_delivery_seq(const char *endpoint, const char *id);

/* What the store keeps of one endpoint. */
typedef struct ph_wh_endpoint_state {
    uint64_t cursor; /* the last event seq deliveries were created for */
    int disabled;    /* 1: a 410 disabled it (until WH_ENABLE) */
    int64_t disabled_at;
    uint64_t gen; /* bumped by WH_ENABLE and WH_REPLAY */
    uint64_t pending, failing, dead, delivered;
    int64_t last_success_at, last_failure_at; /* ms; 0 never */
} ph_wh_endpoint_state;

/* Errors: PH_ENOTFOUND (never seen), PH_EIO. Any thread. */
int ph_store_wh_endpoint_get(ph_store *s, const char *endpoint, ph_wh_endpoint_state *out,
                             ph_err *err);

typedef struct ph_wh_delivery {
    uint64_t seq; /* the event's */
    char type[PH_SKU_MAX + 1];
    uint64_t order_id; /* 0: a product event */
    uint64_t previous; /* seq of the endpoint's previous delivery of the order; 0 none */
    int state;         /* PH_WH_* */
    uint32_t attempts;
    int64_t next_at, created_at, delivered_at, retry_from; /* ms */
    int last_status;                                       /* 0: none or no reply */
    char last_error[128];
} ph_wh_delivery;

/* The endpoint's pending deliveries with seq > after, ascending, at most
 * limit (the `wh_pending` index). On PH_OK *out (*n of them) is the caller's
 * (free). Errors: PH_EIO, PH_ENOMEM. Any thread. */
int ph_store_wh_pending(ph_store *s, const char *endpoint, uint64_t after, size_t limit,
                        ph_wh_delivery **out, size_t *n, ph_err *err);

/* The endpoint's deliveries with seq > after in state `state` (0 any),
 * ascending, at most limit; at most 10000 examined per call (*next_after, *more
 * as ph_store_event_scan). On PH_OK *out is the caller's (free). Errors:
 * PH_EIO, PH_ENOMEM. Any thread. */
int ph_store_wh_deliveries(ph_store *s, const char *endpoint, int state, uint64_t after,
                           size_t limit, ph_wh_delivery **out, size_t *n, uint64_t *next_after,
                           int *more, ph_err *err);

/* The newest event's seq (0: none). 0 on a read error. Any thread. */
uint64_t ph_store_event_last(ph_store *s);

/* ---- order risk and reviews (store_review.c; docs/store.md, "Order risk") ---- */

#define PH_RISK_RECORD_MAX 8192 /* bytes of an order's risk record */

/* Order id's risk record, JSON text (docs/store.md, "Order risk"): *json is
 * the caller's (free), NUL-terminated. PH_ENOTFOUND when the order has none;
 * PH_EIO, PH_ENOMEM. Any thread. */
int ph_store_order_risk_get(ph_store *s, uint64_t order_id, char **json, ph_err *err);

/* One held order in the review queue. */
typedef struct ph_review_row {
    uint64_t order_id;
    int64_t hold_until; /* ms: its review times out then */
} ph_review_row;

/* The held orders with id > after, oldest first, at most limit; *next_after
 * the last one given when more follow, else 0. On PH_OK *out (*n) is the
 * caller's (free). PH_EIO, PH_ENOMEM. Any thread. */
int ph_store_review_list(ph_store *s, uint64_t after, size_t limit, ph_review_row **out, size_t *n,
                         uint64_t *next_after, ph_err *err);

/* The held orders whose hold_until <= now, oldest first, at most max (the
 * timeout job's work; the queue is read whole, it holds what ops have not
 * looked at yet). ids[] has room for max. PH_EIO. Any thread. */
int ph_store_review_due(ph_store *s, int64_t now, uint64_t *ids, size_t max, size_t *n,
                        ph_err *err);

/* Calls fn for every risk record whose "at" is >= since, oldest first (the
 * counter rebuild at start, risk.h's ph_risk_replay), in one snapshot; json
 * is borrowed for the call and fn must not call the store. A non-zero return
 * from fn stops the scan and is returned. Cost: the records since then plus a
 * minute's worth (an order's time may lag its id by as long as its command
 * waited for the writer). PH_EIO, PH_ENOMEM. Any thread. */
typedef int (*ph_order_risk_fn)(void *arg, uint64_t order_id, const char *json, size_t len);
int ph_store_order_risk_scan(ph_store *s, int64_t since, ph_order_risk_fn fn, void *arg,
                             ph_err *err);

/* ---- risk rules (store_risk_rules.c; docs/store.md, "Risk rules") ---- */

struct ph_risk_rule;
struct ph_risk_entry;

/* Everything the risk engine needs put in force, from one snapshot: the
 * stored rules (enabled or not) sorted by id, every list entry (expired ones
 * too: the engine ignores them), and the snapshot's newest event seq as the
 * set's generation (RISK_RULE and RISK_LIST each write an event, so a later
 * change always reads a higher one). *rules and *entries are malloc'd arrays
 * the caller frees (NULL when empty). PH_OK, PH_EIO (a malformed record,
 * named), PH_ENOMEM. Any thread. */
int ph_store_risk_load(ph_store *s, struct ph_risk_rule **rules, size_t *nrules,
                       struct ph_risk_entry **entries, size_t *nentries, uint64_t *gen,
                       ph_err *err);

/* One rule as stored (PH_ENOTFOUND: none; a removed rule is none). */
int ph_store_risk_rule_get(ph_store *s, const char *id, struct ph_risk_rule *out, ph_err *err);

/* Every version of rule id kept in `risk_rule_hist`, oldest first (a removed
 * rule's too), as a malloc'd array the caller frees. PH_ENOTFOUND when there
 * is none; PH_EIO, PH_ENOMEM. Any thread. */
int ph_store_risk_rule_versions(ph_store *s, const char *id, struct ph_risk_rule **out, size_t *n,
                                ph_err *err);

/* ---- grants: reads (store_grant.c) ---- */

/* Grant id's record as JSON text (docs/store.md, "Grants": never a token; the
 * holder masked): *json is the caller's (free). PH_ENOTFOUND, PH_EIO,
 * PH_ENOMEM. Any thread. */
int ph_store_grant_get(ph_store *s, uint64_t id, char **json, ph_err *err);
/* Grants with id > after, ascending, at most limit, of `client` (NULL any)
 * in `state` (0 any), as JSON texts; paging, scan budget and freeing as
 * ph_store_discrep_list. PH_EIO, PH_ENOMEM. Any thread. */
int ph_store_grant_list(ph_store *s, const char *client, int state, uint64_t after, size_t limit,
                        char ***out, size_t *n, uint64_t *next_after, ph_err *err);
/* The grant a token's keyed hash names. PH_ENOTFOUND, PH_EIO. Any thread. */
int ph_store_grant_by_token(ph_store *s, const uint8_t hash[32], uint64_t *id, ph_err *err);
/* A welfare batch's record (JSON text: batch_id, client, count, created_at,
 * expires_at), *json the caller's (free). PH_ENOTFOUND, PH_EIO, PH_ENOMEM. */
int ph_store_grant_batch_get(ph_store *s, const char *client, const char *batch_id, char **json,
                             ph_err *err);
/* The earliest expiry among active grants (ms), 0 when none. Any thread. */
int64_t ph_store_grant_next_due(ph_store *s);

#endif
