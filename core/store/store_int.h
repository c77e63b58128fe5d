/*
 * store_int.h — what the files of core/store share: the database handles,
 * the binary record layouts and their codecs, the apply helpers. Not for use
 * outside the store. docs/store.md is the prose version of this file.
 */
#ifndef PH_STORE_INT_H
#define PH_STORE_INT_H

/* meta's key of the stream sequence of the last replicated batch (u64, host
 * order; store.c writes it, store_check.c checks it: invariants 36, 37) */
#define PH_META_REPL_SEQ "repl_seq"

#include <jansson.h>
#include <lmdb.h>
#include <pthread.h>

#include "store/store.h"

/* 3: the expiry index (store_expiry.c); the code index hashes normalized codes
 * (crypto/code.h) and `meta` holds key checks (store_keys.c). A store of version
 * 2 is migrated at its first open with keys (store.c, check_schema). */
/* 4: the ledger, the order summaries and the daily aggregates (store_ledger.c), a
 * version 3 store migrated by booking every order (ph_ledger_migrate); and the
 * audit, reconciliation, discrepancy and late re-query databases, created empty. */
#define PH_SCHEMA_VERSION                                                                          \
    9 /* 5: scheduled jobs, offer and product state (sync), alerts and balances,                   \
        replenishments and the webhook databases; 6: risk rules, lists, order risk                 \
        records and the review queue; 7: the analytics aggregates (store_agg.c),                   \
        back-filled from the orders of a version 3..6 store at its open (store_agg_migrate);       \
        grants, their tokens and expiry index, bundles (issue 16), created empty; all the others   \
        created empty too: a version 4 to 6 store is migrated by the open that creates them;       \
        8: the code counts (store_tally.c), built from the codes of a version 3..7 store at its    \
        open (store_code_counts_build); 9: the supplier attempt index (store_supply_att.c),        \
        back-filled from `supply` at the open of a version 4..8 store (store_satt_migrate) */

/* Named databases. Integer keys are native uint64_t (MDB_INTEGERKEY), so ids
 * sort numerically and new ids always append at the right edge of the tree. */
enum {
    DB_META,          /* "schema" -> uint32 version, "uid" -> 8 hex chars,
                         "keycheck:index", "keycheck:<key id>" -> 32-byte check value,
                         "keychecks" -> "complete" once every key id the data uses
                         has one (store_keys.c), "rule:<look-alike rule>" -> "" for
                         every rule a batch was hashed with */
    DB_PRODUCTS,      /* sku -> product JSON */
    DB_BATCHES,       /* batch id -> batch JSON */
    DB_CODES,         /* code id -> code record (below) */
    DB_AVAIL,         /* sku -> dup sorted code ids that are available (per-SKU FIFO) */
    DB_CODE_HASH,     /* HMAC-SHA256(code) -> code id */
    DB_ORDERS,        /* order id -> order record (below) */
    DB_ORDER_REF,     /* client "\0" client_order_id -> order id */
    DB_CLIENT_ORDERS, /* client -> dup sorted order ids */
    DB_EVENTS,        /* seq -> event JSON */
    DB_SUPPLY,        /* order id -> supply record (below), supplier orders only */
    DB_PENDING,       /* order id -> "" while the order has an attempt not final;
                         PH_PENDING_STUCK once that attempt is stuck (store_stuck.c) */
    DB_EXPIRY,        /* sku NUL be64(expires_at) -> dup sorted code ids (store_expiry.c) */
    DB_AUDIT,         /* audit id -> audit record JSON (store_audit.c) */
    DB_LEDGER,        /* entry seq -> ledger entry record (store_ledger.c) */
    DB_LEDGER_ORDERS, /* order id -> the order's ledger summary (store_ledger.c) */
    DB_REPORT_DAYS,   /* be32(day) supplier NUL client NUL sku -> daily aggregate */
    DB_RECON_RUNS,    /* run id -> reconciliation run JSON (store_recon.c) */
    DB_RECON_LINES,   /* be64(run id) be64(index) -> line outcome JSON */
    DB_RECON_DIGEST,  /* supplier NUL be64(from) be64(to) sha256 -> run id (idempotency) */
    DB_DISCREP,       /* discrepancy id -> discrepancy JSON (store_discrep.c) */
    DB_DISCREP_ATT,   /* be64(order id) be32(attempt no) -> dup sorted discrepancy ids */
    DB_LATE,          /* be64(due ms) be64(order id) be32(attempt no) -> "": late re-queries */
    DB_JOBS,          /* job id -> the job's record JSON (store_jobs.c) */
    DB_OFFER_STATE,   /* sku NUL supplier -> ph_offer_state_rec (store_sync.c) */
    DB_PRODUCT_STATE, /* sku -> ph_product_state_rec: pin and auto-delisting (store_sync.c) */
    DB_ALERTS,        /* alert id -> alert JSON (store_alerts.c) */
    DB_ALERT_STATE, /* kind byte, subject -> ph_alert_state_rec: the alert fired (absent: armed) */
    DB_BALANCE,     /* supplier -> ph_balance_rec: its last balance reading */
    DB_REPLENISH,   /* replenishment id -> replenishment JSON (store_replenish.c) */
    DB_REPLENISH_SKU,  /* sku -> uint64 id of its replenishment in flight (none: no key) */
    DB_REPLENISH_DAY,  /* sku NUL be32(day) -> int64 fen spent replenishing it that day */
    DB_WH_ENDPOINTS,   /* endpoint id -> endpoint state JSON (store_webhooks.c) */
    DB_WH_DELIVERIES,  /* endpoint NUL be64(seq) -> delivery JSON */
    DB_WH_PENDING,     /* endpoint NUL be64(seq) -> "" while the delivery is pending */
    DB_WH_LAST,        /* endpoint NUL be64(order id) -> be64(seq): the order's last delivery */
    DB_WH_ATTEMPTS,    /* endpoint NUL be64(seq) be32(attempt no) -> attempt JSON */
    DB_RISK_RULES,     /* rule id -> rule JSON (store_risk_rules.c) */
    DB_RISK_RULE_HIST, /* rule id NUL be32(version) -> rule JSON as it was */
    DB_RISK_LISTS,     /* list byte, var byte, be64(key) -> entry JSON */
    DB_ORDER_RISK,     /* order id -> the order's risk record JSON (store_review.c) */
    DB_REVIEWS,        /* order id -> int64 hold_until: held orders (store_review.c) */
    /* analytics (store_agg.c); day = UTC day (ms / 86400000), be32(day ^ 2^31) */
    DB_AGG_SKU,    /* be32(day) 'a' sku, and be32(day) 'c' client NUL sku -> ph_agg_sku_rec:
                      succeeded orders by creation day, of all clients / of one */
    DB_AGG_HOURS,  /* be32(day) 'a' hour byte, be32(day) 'c' client NUL hour byte -> uint64
                      orders created in that UTC hour */
    DB_AGG_CLAIMS, /* be32(day) kind byte name -> ph_agg_claim_rec: grant transitions that day;
                      kind 'c' name client, 't' client NUL tag, 'g' tag (all clients), 's' sku */
    DB_AGG_CO,     /* be32(day) sku a NUL sku b NUL gap byte -> uint64: claims of b that day by a
                      holder who claimed a gap days before (store_agg.c, "co-redemption") */
    DB_AGG_USERS,  /* holder key (8 bytes) -> the holder's last claims (store_agg.c) */
    /* grants (store_grant.c) */
    DB_GRANTS,        /* grant (order) id -> grant record JSON */
    DB_GRANT_TOKENS,  /* keyed hash of the claim token (32) -> uint64 grant id */
    DB_GRANT_EXPIRY,  /* be64(expires_at) be64(grant id) -> "": active grants */
    DB_GRANT_BATCHES, /* client NUL batch id -> welfare batch record JSON */
    DB_BUNDLES,       /* parent order id -> bundle record JSON: its components' orders
                         (store_bundle.c) */
    DB_CODE_COUNTS,   /* sku -> ph_code_count_rec: its codes by state (store_tally.c) */
    DB_SUPPLY_ATT,    /* 't' supplier NUL be64(created_at) be64(order) be32(no), 'o' supplier
                         NUL supplier order id NUL be64(order) be32(no) -> "": every attempt
                         (store_supply_att.c) */
    DB_COUNT
};

/* The writer's memo of facts it would otherwise re-parse from JSON for every
 * order: how each recently ordered listed SKU is delivered (card codes, orderable
 * from stock or a supplier, or recharge) and what a batch's codes cost.
 * Derived only from the database, so applying stays deterministic. Cleared
 * when the catalog changes (PUT_PRODUCTS) and when a batch fails to commit
 * (its rolled-back ids may be handed out again). Writer thread only. */
#define PH_MEMO_SKUS  16
#define PH_MEMO_COSTS 64
typedef struct ph_memo {
    char sku[PH_MEMO_SKUS][PH_SKU_MAX + 1]; /* listed products only */
    int delivery[PH_MEMO_SKUS];             /* PH_DELIVERY_* of sku[i] */
    unsigned next_sku;                      /* round-robin replacement */
    uint64_t cost_batch[PH_MEMO_COSTS];     /* direct-mapped by batch id; 0 = empty */
    int64_t cost[PH_MEMO_COSTS];
    char cost_supplier[PH_MEMO_COSTS][PH_SKU_MAX + 1]; /* the batch's supplier */
    uint8_t cost_booked[PH_MEMO_COSTS];                /* 1: a replenishment's batch, whose supplier
                                                          cost its purchase booked (store_replenish.c) */
    /* sale prices (store_ledger.c): price_state 0 empty, 1 no price, 2 one
     * price for every client, 3 per-client prices (read from the product) */
    char price_sku[PH_MEMO_SKUS][PH_SKU_MAX + 1];
    uint8_t price_state[PH_MEMO_SKUS];
    int64_t price[PH_MEMO_SKUS];
    unsigned next_price;
    int rules_ok; /* ph_store.rules is built from the committed catalog */
} ph_memo;

/* Batch records decoded for readers (store_read.c's batch_load): a lookup by code
 * decodes its batch's JSON record (its own batch, or a decoy's, so a hit and a miss cost
 * the same), which was ~14 % of a lookup's CPU; batches are few and mostly unchanged.
 * An entry is used only when the record's bytes are identical to those it was decoded
 * from (a void rewrites the record, and then decodes afresh): the memo changes no
 * answer, only how often the same bytes are parsed. Direct-mapped by batch id; records
 * longer than PH_BATCH_MEMO_RAW are decoded each time. mu guards e; any reader thread. */
#define PH_BATCH_MEMO     16
#define PH_BATCH_MEMO_RAW 768
typedef struct ph_batch_memo {
    pthread_mutex_t mu;
    struct {
        size_t len; /* 0 = empty */
        uint8_t raw[PH_BATCH_MEMO_RAW];
        ph_batch batch;
    } e[PH_BATCH_MEMO];
} ph_batch_memo;

struct ph_store {
    MDB_env *env;
    MDB_dbi dbi[DB_COUNT];
    /* Readers hold it shared for the life of a read transaction; the writer takes
     * it exclusively only to grow the map, which LMDB allows only when no
     * transaction of this process is open. */
    pthread_rwlock_t maplock;
    uint64_t map_size;

    pthread_mutex_t mu; /* guards the queue and `stopping` */
    pthread_cond_t cv;
    ph_cmd *head, *tail;
    int stopping;
    unsigned max_batch;
    pthread_t writer;
    int writer_started;
    _Atomic uint64_t commits, commands, map_grows; /* ph_writer_stats */
    char *dir;                 /* the environment's directory: its free space after a failure */
    pthread_mutex_t health_mu; /* guards health: set by the writer, read by any thread */
    ph_store_health health;
    ph_reseal_status reseal; /* also under health_mu: set by the re-sealer, read by any thread */
    ph_memo memo;
    ph_batch_memo batch_memo;
    /* The writer's table of the products' alert and validity rules, built
     * from `products` when memo.rules_ok is 0 (store_alerts.c). Writer only. */
    struct ph_rules *rules;
    /* The writer's last formatted event time: a batch's commands mostly share
     * their millisecond. Writer thread only. */
    int64_t at_ms;
    int at_set;
    char at[32];
    char uid[9];            /* ph_store_uid: read from `meta` at open, never changes */
    const ph_keyring *keys; /* borrowed; NULL: sealed blobs are opaque */
    /* opts.metrics: the writer observes each committed batch; NULL = none */
    struct ph_metrics *metrics;
    int read_only;
    int lockless;           /* ph_store_lockless */
    uint32_t migrated_from; /* ph_store_migrated_from: set at open */
    int report_offset;      /* ph_store_report_offset: minutes, from `meta` at open */
    /* opts.journal_file; the writer's only, opened and closed around it */
    struct ph_journal *journal;
    /* opts.repl_hook and its argument: the writer calls it before each commit */
    int (*repl_hook)(void *arg, const struct ph_cmd *batch, uint64_t prev_seq, uint64_t *seq,
                     ph_err *err);
    void *repl_arg;
};

/* Next ids, derived from the last key of each database when the writer starts
 * and carried from command to command; a failed command gives its ids back. */
typedef struct ph_ids {
    uint64_t code, order, batch, event, ledger, audit;
} ph_ids;

/* The writer's view while applying one command. `wrote` is set before the
 * command's first write by the commands the writer applies without a nested
 * transaction (PH_CMD_ORDER, PH_CMD_SUPPLY_CREATE, PH_CMD_ATTEMPT; see
 * run_batch): one that fails with it set has left changes behind (as may one
 * that fails with PH_EIO), and the whole batch is redone with nested
 * transactions. */
typedef struct ph_wtxn {
    ph_store *s;
    MDB_txn *txn;
    ph_ids ids;
    int wrote;
    /* The command being applied (its time and type go into ledger entries);
     * NULL only in the migration, which books with the order's own time. */
    const ph_cmd *cmd;
    /* A bundle whose grant is being given back (store_bundle_takes_back said
     * so, store_bundle_grant_back does it, both in one call of the command):
     * while set, its parent does not follow its components to failed. 0 else. */
    uint64_t bundle_back;
} ph_wtxn;

/* Positive, never returned to callers: the map is full, grow it and redo the batch. */
#define PH_STORE_MAPFULL 1

/* Code record: a fixed header followed by the sealed blob. Native byte order. */
typedef struct ph_code_rec {
    uint8_t version; /* 1 */
    uint8_t state;
    uint16_t reserved;
    uint32_t sealed_len;
    uint64_t batch_id;
    uint64_t order_id;
    int64_t expires_at;
    int64_t changed_at;
} ph_code_rec;

/* Order record: this header, then client, client order id and sku (no NULs),
 * then ncodes uint64 code ids. Read with memcpy: values are not aligned. */
typedef struct ph_order_rec {
    uint8_t version; /* 1 */
    uint8_t state;
    uint8_t delivery;
    uint8_t client_len;
    uint32_t quantity;
    int64_t created_at;
    int64_t updated_at;
    int64_t cost;
    uint8_t fingerprint[32];
    uint8_t sku_len;
    uint8_t flags; /* PH_ORDER_F_* */
    uint16_t coid_len;
    uint32_t ncodes;
} ph_order_rec;

/* The order is fulfilled by a supplier: `delivery` is PH_DELIVERY_* and the
 * order has a record in DB_SUPPLY. Without it the order came from local stock
 * (delivery 1) and nothing else is read. */
#define PH_ORDER_F_SUPPLY 1
/* A local order's reason (it has no supply record to keep one: issue 15's
 * held-then-failed and denied orders, issue 16's expired grants), bits 1-3:
 * an index into ph_order_local_reason's names ("", denied_by_risk,
 * blocked_by_review, out_of_stock, grant_expired). Bit 3 was always 0 before
 * schema 7, so older records read the same. 0 for a supplier order, whose
 * reason is in DB_SUPPLY. */
#define PH_ORDER_F_REASON_SHIFT 1
#define PH_ORDER_F_REASON_MASK  14
/* A bundle's parent order (issue 16; its record's delivery byte is
 * PH_DELIVERY_BUNDLE): no codes, no supply record, its components in
 * DB_BUNDLES. Decoded as delivery PH_DELIVERY_BUNDLE. */
#define PH_ORDER_F_BUNDLE 16
/* store_records.c: the reason's index (0: none or not one of them) / its name. */
unsigned ph_order_local_reason(const char *reason);
const char *ph_order_local_reason_name(unsigned ix);

/* Supply record (DB_SUPPLY): this header, then the order's reason, the masked
 * and the sealed account, then nattempts attempts, each a ph_attempt_rec
 * followed by its strings in the order of their lengths below; from version 2
 * on, by a ph_attempt_tail and its strings (stuck and settled by hand); from
 * version 3 on, by its int64 delivered value (fen per unit, -1 unknown).
 * Older records still decode: no tail reads zero, no delivered value -1;
 * every write is PH_SUPPLY_VERSION. */
#define PH_SUPPLY_VERSION 3
typedef struct ph_supply_rec {
    uint8_t version; /* 1 ..PH_SUPPLY_VERSION */
    uint8_t reason_len;
    uint8_t masked_len;
    uint8_t reserved; /* 0 */
    uint16_t nattempts;
    uint16_t reserved2; /* 0 */
    uint32_t sealed_len;
} ph_supply_rec;

/* Every byte is a named field, so equal attempts encode to equal bytes. */
typedef struct ph_attempt_rec {
    int64_t unit_cost;
    int64_t charged;
    int64_t created_at;
    int64_t updated_at;
    int64_t next_check_at;
    uint32_t no;
    uint32_t checks;
    uint32_t step;
    uint8_t state;
    uint8_t supplier_len, product_len, ref_len, sorder_len, reason_len, step_state_len;
    uint8_t reserved[5]; /* 0 */
} ph_attempt_rec;

/* What version 2 appends to each attempt (after its six strings): this, then
 * settled_by and settle_note. Every byte a named field. */
typedef struct ph_attempt_tail {
    int64_t stuck_at;
    int64_t settled_at;
    uint16_t note_len;
    uint8_t by_len;
    uint8_t reserved[5]; /* 0 */
} ph_attempt_tail;

/* The `pending` value of an order whose open attempt is stuck (one byte);
 * an open attempt that is not stuck has the empty value. */
#define PH_PENDING_STUCK 's'

/* Maps an LMDB return code to PH_STORE_MAPFULL or PH_EIO with a message. */
int ph_store_lmdb_err(ph_err *err, int mrc, const char *what);
/* meta "repl_seq" in txn (0 when absent; *mrc an LMDB error or 0): the one
 * reading of it, for the store and for a snapshot's file (store_snapshot.c). */
uint64_t ph_store_meta_repl_seq(MDB_txn *txn, MDB_dbi meta, int *mrc);

/* Record codecs (store_records.c). Decoders return PH_OK or PH_EIO on a malformed value. */
int ph_code_decode(const MDB_val *v, uint64_t id, int copy_sealed, ph_code *out);
int ph_order_decode(const MDB_val *v, uint64_t id, ph_order *out, const uint8_t **ids);
/* order_id (may be NULL) gets the order a supplier batch came with, 0 for imports. */
int ph_batch_decode(const MDB_val *v, uint64_t id, ph_batch *out, uint64_t *order_id);

/* Supply records: *o gets reason, accounts and attempts (owned by o, freed by
 * ph_order_free); PH_EIO (malformed) or PH_ENOMEM leave none of them allocated
 * (account_sealed and attempts NULL, their counts 0). ph_supply_encode returns a malloc'd buffer of
 * *len bytes, or NULL when out of memory. */
int ph_supply_decode(const MDB_val *v, ph_order *o);
uint8_t *ph_supply_encode(const ph_order *o, size_t *len);

/* A named database's name and its LMDB flags (DB_*). */
const char *ph_store_db_name(int db);
unsigned ph_store_db_flags(int db);

/* The last key of a database keyed by native uint64 ids (0 when it is empty). */
uint64_t ph_store_last_key(MDB_txn *txn, MDB_dbi dbi);

/* Loads an order inside any transaction (with its codes when asked). */
int ph_order_load(ph_store *s, MDB_txn *txn, uint64_t id, int with_codes, ph_order **out,
                  ph_err *err);

/* The order_ref key: client NUL client_order_id; buf >= PH_SKU_MAX + PH_ORDER_ID_MAX + 2. */
size_t ph_store_ref_key(const char *client, const char *coid, char *buf);

/* Read transactions: shared map lock + MDB_RDONLY txn; always paired. */
int ph_store_read_begin(ph_store *s, MDB_txn **txn, ph_err *err);
void ph_store_read_end(ph_store *s, MDB_txn *txn);
/* The value under k in database db, read in a transaction of its own, as a
 * NUL-terminated copy in *text (malloc'd; the caller frees). PH_OK;
 * PH_ENOTFOUND when absent (the caller names what is missing); PH_EIO naming
 * `what`; PH_ENOMEM. Any thread. */
int store_read_text(ph_store *s, int db, const MDB_val *k, const char *what, char **text,
                    ph_err *err);

/* ---- the code counts (store_tally.c; docs/store.md, "Code counts") ----
 * What GET /v1/stats answers without reading every code. Kept by the writer in
 * the transaction of every change: a new batch adds its count (store_put_batch),
 * a code record rewritten into or out of a counted state moves one count
 * (store_put_code). `available` and `issued` are not counted here, so the hot
 * path (a code issued from stock) writes no page for them: available is the
 * SKU's `avail` list's count (LMDB keeps it), issued what is left of imported. */

/* DB_CODE_COUNTS value. Native byte order; every byte a named field. */
typedef struct ph_code_count_rec {
    uint8_t version;      /* 1 */
    uint8_t zero[7];      /* 0 */
    uint64_t first_batch; /* the SKU's first batch: stats list SKUs in this order */
    uint64_t imported;    /* the sum of its batches' counts */
    uint64_t reserved, redeemed, voided, expired;
} ph_code_count_rec;

/* A new batch b was just written: its SKU's imported += b->count (the SKU's
 * record made, first_batch b->id, when it has none). Writer only, in w->txn.
 * Errors: PH_EIO, PH_STORE_MAPFULL. */
int store_code_counts_batch(ph_wtxn *w, const ph_batch *b, ph_err *err);
/* A code of batch batch_id went from state `from` (0: a new code) to `to`:
 * the counts of its SKU follow (nothing when neither state is counted, as
 * available -> issued). Writer only, in w->txn. Errors: PH_EIO (the batch or
 * the SKU's record missing, a count that would go below 0), PH_STORE_MAPFULL. */
int store_code_counted(ph_wtxn *w, uint64_t batch_id, int from, int to, ph_err *err);
/* The stats of ph_store_stats_at from the counts in txn (any transaction):
 * O(SKUs) plus the SKUs' due expiry entries when now > 0. */
int store_code_counts_read(ph_store *s, MDB_txn *txn, int64_t now, ph_store_stats *out,
                           ph_err *err);
/* At open, in its transaction: the counts of a version 3..7 store, from every
 * code (store_check_count), and the schema version written. */
int store_code_counts_build(ph_store *s, MDB_txn *txn, ph_err *err);
/* store_check.c: every batch and code of txn counted by SKU and state into
 * *out (no invariant checked beyond what counting needs: a code in its
 * batch, a state 1..6), and *first the first batch id of each SKU in out's
 * order (malloc'd, the caller frees it). Errors: PH_EIO, PH_ENOMEM. */
int store_check_count(ph_store *s, MDB_txn *txn, ph_store_stats *out, uint64_t **first,
                      ph_err *err);
/* store_read.c: batch id read in txn (any transaction, the writer's too) and
 * decoded, through the readers' batch memo. PH_ENOTFOUND, PH_EIO. */
int store_batch_load(ph_store *s, MDB_txn *txn, uint64_t id, ph_batch *out, ph_err *err);

/* ---- the expiry index (store_expiry.c) ----
 * DB_EXPIRY: every available code that expires has an entry under its SKU and
 * expiry time; entries of codes that left the stock otherwise (issued, voided)
 * stay until they are due and the sweep removes them, so the order path never
 * writes to this index. */

/* Adds code id of sku expiring at expires_at (> 0); writer only. */
int ph_expiry_add(MDB_txn *txn, MDB_dbi dbi, const char *sku, uint64_t id, int64_t expires_at,
                  ph_err *err);
/* 1 when the index lists code id of sku at expires_at. */
int ph_expiry_has(MDB_txn *txn, MDB_dbi dbi, const char *sku, uint64_t id, int64_t expires_at);
/* A SKU's min_validity_days in ms (store_min_validity, store_product_min_validity):
 * its codes are due that long before their expiry. */
typedef int64_t (*ph_expiry_margin_fn)(void *arg, const char *sku, size_t len);
/* Positions cur at the first entry due at now (ph_code_retire_due with the
 * SKU's margin: expires_at - margin <= now; margin NULL = 0) of the first
 * SKU >= sku[0..len) (len 0: from the start), filling k and v: 0, MDB_NOTFOUND
 * or an LMDB error. */
int ph_expiry_seek_due(MDB_cursor *cur, const char *sku, size_t len, int64_t now,
                       ph_expiry_margin_fn margin, void *arg, MDB_val *k, MDB_val *v);
/* Splits a key: *sku_len bytes of SKU at k->mv_data, *at the expiry. 0, or -1
 * for a malformed key. */
int ph_expiry_key_decode(const MDB_val *k, size_t *sku_len, int64_t *at);
/* Available codes of sku due at now (expires_at <= now: pass now + the SKU's
 * margin), which the sweep will retire. */
uint64_t ph_expiry_due_available(ph_store *s, MDB_txn *txn, const char *sku, size_t len,
                                 int64_t now);
/* Rebuilds the index from the codes (the migration from schema version 2). */
int ph_expiry_rebuild(ph_store *s, MDB_txn *txn, ph_err *err);

/* Open-time work with the keys (store_keys.c), inside the open's transaction
 * (read-only when s->read_only). ph_store_migrate turns a version 2 store into
 * version 3: every code unsealed, the index rebuilt from normalized codes.
 * ph_store_keys_open verifies the recorded key checks and, unless read-only,
 * records the missing ones (deriving them from the data first). Both name the
 * key id and the key file on a mismatch (PH_ECRYPTO). */
int ph_store_migrate(ph_store *s, MDB_txn *txn, const char *dir, ph_err *err);
int ph_store_keys_open(ph_store *s, MDB_txn *txn, const char *dir, ph_err *err);

/* For ph_store_check: PH_OK when every key id the data in txn is sealed with
 * (and the index key, once there are codes) has a recorded check, else PH_EIO
 * naming the first that has none. Needs no keys. Applies to a store whose
 * `meta` says its checks are complete (every store a keyed open has seen and no
 * keyless open wrote to since). */
int ph_store_keys_complete(ph_store *s, MDB_txn *txn, ph_err *err);

/* Meta key of a key id's check value ("keycheck:index" for PH_KEYCHECK_INDEX);
 * buf >= 24 bytes. Returns its length. */
size_t ph_store_keycheck_name(uint16_t id, char *buf);

/* ---- offer state (store_sync.c; docs/store.md, "Offer state") ---- */

/* DB_OFFER_STATE value. Native byte order; every byte a named field. */
typedef struct ph_offer_state_rec {
    uint8_t version; /* 1 */
    int8_t on_sale;  /* 1, 0, -1 unknown */
    uint8_t over_max;
    uint8_t reserved[5]; /* 0 */
    int64_t upstream_cost, stock, stock_at, synced_at;
} ph_offer_state_rec;

/* DB_PRODUCT_STATE value. A product without one is unpinned and not
 * auto-delisted. */
typedef struct ph_product_state_rec {
    uint8_t version;       /* 1 */
    uint8_t pin;           /* PH_PIN_* */
    uint8_t auto_delisted; /* 1: sync delisted it (no usable offer, no local stock) */
    uint8_t reserved[5];   /* 0 */
} ph_product_state_rec;

/* Σ of the last known supplier stock of sku's usable offers (listed upstream, not
 * over max cost); *known 0 when any usable offer's stock is unknown. */
/* store_read.c: the one paged list of an INTEGERKEY database of JSON records
 * (discrepancies, alerts, replenishments): the records with id > after, in id
 * order, at most `limit` of those `keep` accepts (NULL: all; arg is its), each
 * copied NUL-terminated (free the list with ph_store_event_list_free), looking
 * at most PH_LIST_SCAN_MAX records per call; *next_after is the id to go on
 * from (0 when the database was read to its end). `what` names the records in
 * errors ("read alerts"). Errors: PH_EIO, PH_ENOMEM. */
#define PH_LIST_SCAN_MAX 10000
int store_json_list(ph_store *s, int db, uint64_t after, size_t limit,
                    int (*keep)(const MDB_val *v, const void *arg), const void *arg,
                    const char *what, char ***out, size_t *n, uint64_t *next_after, ph_err *err);

int store_offer_stock_sum(ph_wtxn *w, const char *sku, int64_t *sum, int *known);
/* The same for the offers of sku at `suppliers` (n of them), as the caller
 * knows them from the product (the alert check's rule table): no product read. */
int store_offer_stock_sum_of(ph_wtxn *w, const char *sku, const char *const *suppliers, size_t n,
                             int64_t *sum, int *known);

/* PUT_PRODUCTS: marks p (a product object about to be stored) delisted as its
 * product state says ("delisted": {"reason": "upstream"|"ops"}), so a reload
 * keeps a delisting. Writer only. PH_OK, PH_EIO, PH_ENOMEM. */
int store_sync_overlay(ph_wtxn *w, const char *sku, json_t *p, ph_err *err);
/* Reads: adds to the product object text *json (malloc'd; replaced) each
 * offer's upstream state ("upstream" inside offers[i]) and "supplier_stock"
 * (a number, or null when unknown), when sku has any offer state. PH_OK
 * (nothing to add leaves *json as it is), PH_EIO, PH_ENOMEM. */
int store_sync_decorate(ph_store *s, MDB_txn *txn, const char *sku, char **json, ph_err *err);
/* IMPORT: sku got local stock; an auto-delisted product is relisted
 * (product.relisted, reason stock). Writer only. */
int store_sync_stock_added(ph_wtxn *w, ph_cmd *c, const char *sku);
int store_apply_sync(ph_wtxn *w, ph_cmd *c);
int store_apply_pin(ph_wtxn *w, ph_cmd *c);

/* Applies one command inside w->txn (store_apply.c). */
int ph_store_apply(ph_wtxn *w, ph_cmd *cmd);

/* store_audit.c: appends cmd->audit's record (none when it is NULL) after the
 * command applied, in the same transaction; events_from is w->ids.event before
 * the command ran (the record names the events it wrote). PH_EINVAL (a
 * malformed audit, message naming the field), PH_ENOMEM, or an LMDB error. */
int store_audit_append(ph_wtxn *w, ph_cmd *cmd, uint64_t events_from);
/* For ph_store_check (invariant 21): audit ids are 1..n, each record names its
 * id and has at, action and what, and the events it names exist. PH_OK or
 * PH_EIO naming the record. */
int store_audit_check(ph_store *s, MDB_txn *txn, ph_err *err);

/* ---- shared by the apply files (writer only, inside w->txn) ----
 * store_apply.c: events and the code and product records; */
/* Appends one event's JSON text under the next sequence number. */
int store_append_event(ph_wtxn *w, const char *txt, size_t len, ph_err *err);
/* Appends an event: seq, at and type first, then the fields of `fields` (stolen). */
int store_emit(ph_wtxn *w, int64_t now, const char *type, json_t *fields, ph_err *err);
int store_put_code(ph_wtxn *w, uint64_t id, const ph_code_rec *rec, const uint8_t *sealed,
                   unsigned flags, ph_err *err);
/* Reads a code record into rec and points *sealed at its blob (valid in this txn). */
int store_get_code(ph_wtxn *w, uint64_t id, ph_code_rec *rec, const uint8_t **sealed, ph_err *err);
/* Loads the stored product; PH_ESKU when there is none. *out is the caller's. */
int store_get_product(ph_wtxn *w, const char *sku, json_t **out, ph_err *err);
/* order_id names the order a supplier batch came with; 0 for an imported batch
 * (the key is then left out, so imported batches keep their bytes). */
int store_put_batch(ph_wtxn *w, const ph_batch *b, uint64_t order_id, ph_err *err);
/* store_apply_order.c: card-code orders and the expiry sweep; */
/* The same client order id again: the stored order, or a conflict. */
int store_replay_order(ph_wtxn *w, ph_cmd *c, const MDB_val *ref, const uint8_t fingerprint[32],
                       const char *coid);
/* How a listed product is delivered: *out is PH_DELIVERY_*, or 0 for a kind
 * neither of ours (whose name `kind` then gets, for the caller's message),
 * from the memo or the stored product. PH_ESKU (message set) for a product
 * that is missing or not listed. */
int store_listed_delivery(ph_wtxn *w, ph_cmd *c, const char *sku, int *out, char kind[32]);
/* Writes the order record: put_flags MDB_APPEND for a new order, 0 to rewrite. */
int store_put_order(ph_wtxn *w, const ph_order *o, unsigned put_flags, ph_err *err);
int store_index_order(ph_wtxn *w, const ph_order *o, ph_err *err);
int store_apply_order(ph_wtxn *w, ph_cmd *c);
int store_apply_expire(ph_wtxn *w, ph_cmd *c);
/* store_apply_supply.c: supplier-fulfilled orders and the order events. */
/* 1 when s is 1..max printable ASCII bytes (or empty, when empty_ok). */
int store_text_ok(const char *s, size_t max, int empty_ok);
int store_emit_outcome(ph_wtxn *w, int64_t now, const ph_order *o, uint64_t batch_id, ph_err *err);
int store_apply_supply_create(ph_wtxn *w, ph_cmd *c);
int store_apply_attempt(ph_wtxn *w, ph_cmd *c);
/* What a command that moves attempt `no` compares against to decide what to
 * write and announce (ATTEMPT and SETTLE). */
typedef struct ph_attempt_before {
    int order_state, attempt_state, open;
    int64_t stuck; /* ph_order_stuck_since before */
    size_t nattempts;
    char reason[PH_REASON_MAX + 1];
} ph_attempt_before;
void store_attempt_before(const ph_order *o, uint32_t no, ph_attempt_before *b);
/* The order's state, reason and cost as its attempt a makes them, without a
 * fail-over or codes: the one rule ATTEMPT and SETTLE share. */
void store_order_follow(ph_order *o, const ph_attempt *a);
/* Writes what moved since b (order record, supply record, `pending` with its
 * stuck mark) and the events: order.attempt, order.<outcome>, order.stuck.
 * An order that failed for good whose claimed grant takes it back
 * (store_grant_takes_back) is written granted instead, with no outcome, and
 * its grant given back (store_grant_back). */
int store_write_attempt(ph_wtxn *w, ph_cmd *c, ph_order *o, uint32_t no, const ph_attempt_before *b,
                        uint64_t batch_id);
/* store_stuck.c: the stuck mark and ops settling by hand. */
/* order.stuck for o, whose attempt a was just marked. */
int store_emit_stuck(ph_wtxn *w, int64_t now, const ph_order *o, const ph_attempt *a, ph_err *err);
int store_apply_settle(ph_wtxn *w, ph_cmd *c);

/* ---- the ledger (store_ledger.c) ---- */

/* Ledger entry record (DB_LEDGER): this header, then supplier, client, sku. */
typedef struct ph_ledger_rec {
    uint8_t version; /* 1 */
    uint8_t kind;    /* PH_LEDGER_* */
    uint8_t command; /* PH_CMD_* (0: the migration) */
    uint8_t supplier_len, client_len, sku_len;
    uint16_t reserved; /* 0 */
    uint32_t attempt;
    uint32_t quantity;
    int64_t at;
    uint64_t order_id;
    int64_t amount;
} ph_ledger_rec;

/* Books order o as just written (store.h, "the ledger"): appends an entry
 * for each money fact that moved since its summary, rewrites the summary and
 * the daily aggregates it touched. Called by store_put_order for every order
 * write, so no command can forget it; writes nothing when nothing moved. The
 * time and cause are w->cmd's (the order's updated_at when w->cmd is NULL).
 * Local orders need o->codes. */
int store_ledger_book(ph_wtxn *w, const ph_order *o, ph_err *err);
/* Cost of one code of batch id and the batch's supplier (pointing into the
 * memo: valid until the next call), remembered per batch. */
int store_batch_cost(ph_wtxn *w, uint64_t batch_id, int64_t *cost, const char **supplier,
                     ph_err *err);
/* Day number of ms at the offset (minutes east of UTC). */
int32_t ph_ledger_day(int64_t ms, int offset_min);
/* Decodes an entry record; PH_EIO when malformed. */
int ph_ledger_decode(const MDB_val *k, const MDB_val *v, ph_ledger_entry *out);
/* At open (in the open's write transaction): books every order of a version 3
 * store (schema 4 migration), and (re)records the report offset, rebuilding
 * the aggregates when it changed. */
int ph_ledger_migrate(ph_store *s, MDB_txn *txn, ph_err *err);
int ph_ledger_open(ph_store *s, MDB_txn *txn, const ph_store_opts *opts, ph_err *err);
/* For ph_store_check: every order's summary against its facts and against
 * its entries, and the daily aggregates against the entries and summaries. */
int ph_ledger_check(ph_store *s, MDB_txn *txn, ph_err *err);
/* store_recon.c: reconciliation runs. */
int store_apply_recon(ph_wtxn *w, ph_cmd *c);
/* store_reseal.c: key rotation (PH_CMD_RESEAL). */
int store_apply_reseal(ph_wtxn *w, ph_cmd *c);
/* store_redeem.c: a supplier's word that an issued code was redeemed
 * (PH_CMD_CODE_REDEEMED). */
int store_apply_code_redeemed(ph_wtxn *w, ph_cmd *c);
/* --check-store: every run's lines are its keys 1..lines with known outcomes,
 * every digest names a run and every run has one. PH_EIO naming the first
 * violation. */
int store_check_recon(ph_store *s, MDB_txn *txn, ph_err *err);

/* store_supply_att.c: the supplier attempt index (`supply_att`). Keys: a
 * time key ('t'), or a supplier order id key ('o'); with order_id and no both
 * 0, the key's prefix to seek from (the time's first key; every key of that
 * supplier order id). buf holds SATT_KEY_MAX bytes; returns the length. */
#define SATT_KEY_MAX (3 + PH_SKU_MAX + PH_SUPPLIER_ORDER_MAX + 20)
size_t store_satt_time_key(const char *supplier, int64_t at, uint64_t order_id, uint32_t no,
                           uint8_t *buf);
size_t store_satt_soid_key(const char *supplier, const char *soid, uint64_t order_id, uint32_t no,
                           uint8_t *buf);
/* The attempt a key's last 12 bytes (be64 order id, be32 no) name. */
void store_satt_ref_of(const uint8_t *tail, ph_recon_ref *at);
/* The index follows supplier order o as it was (old; NULL: new) and is now. */
int store_satt_update(ph_wtxn *w, const ph_order *old, const ph_order *o, ph_err *err);
/* The same, with the record as it was read from `supply` (is_new: there is
 * none), before o's record replaces it: put_supply's one call. */
int store_satt_put_supply(ph_wtxn *w, const ph_order *o, int is_new, ph_err *err);
/* At open, in its transaction: the index rebuilt from `supply` (a version
 * 4..7 store), and the schema version written. */
int store_satt_migrate(ph_store *s, MDB_txn *txn, ph_err *err);
/* --check-store (invariant 38): every attempt in `supply` has its keys and
 * the index has no other. PH_EIO naming the first attempt without its key. */
int store_satt_check(ph_store *s, MDB_txn *txn, ph_err *err);
/* The order's cost as its attempts say: for each SUCCEEDED attempt its charge,
 * or unit_cost x quantity when the supplier gave none. */
int64_t store_supply_cost(const ph_order *o);
/* Rewrites a loaded supplier order: its order and supply records, `pending`
 * kept right (was_open: it had an open attempt before the change). */
int store_put_supply_order(ph_wtxn *w, const ph_order *o, int was_open, ph_err *err);

/* ---- order risk and reviews (store_review.c) ---- */

/* Refuses a malformed risk input of ORDER / SUPPLY_CREATE (NULL is none):
 * PH_EINVAL naming the member. Before the command's first write. */
int store_risk_input_ok(ph_cmd *c, const ph_order_risk *risk);
/* A new order the verdict holds or denies: its state and reason (no code, no attempt). */
void store_risk_decide(ph_order *o, const ph_order_risk *risk);
/* After the new order o is written: its risk record (none without one), its
 * `reviews` entry and order.held, or order.denied then order.failed, or
 * order.flagged for an allowed order with hits. NULL risk: nothing. */
int store_risk_record(ph_wtxn *w, ph_cmd *c, const ph_order *o, const ph_order_risk *risk);
int store_apply_review(ph_wtxn *w, ph_cmd *c);
/* --check-store: every `reviews` entry names a held order and every held
 * order has one (held orders counted by check_order into *held). */
int store_check_reviews(ph_store *s, MDB_txn *txn, uint64_t held, ph_err *err);
int store_review_has(ph_store *s, MDB_txn *txn, uint64_t order_id);

/* ---- grants (store_grant.c) ---- */

/* A new order o (ORDER, SUPPLY_CREATE; held or granted) is a grant: its
 * record, token and expiry entry, order.granted (when granted). Before o's
 * first write the caller checked gi with store_grant_input_ok. */
int store_grant_input_ok(ph_cmd *c, const ph_grant_in *gi);
int store_grant_new(ph_wtxn *w, ph_cmd *c, ph_order *o, const ph_grant_in *gi);
/* store_apply_supply.c: order.granted written as text (every grant of a batch
 * writes one): the order's first members, grant_id, quantity, delivery,
 * expires_at (ms). */
int store_emit_granted(ph_wtxn *w, int64_t now, const ph_order *o, int64_t expires_at, ph_err *err);
/* 1 when order id has a grant record. */
int store_grant_exists(ph_wtxn *w, uint64_t id);
/* A held grant order released (store_review.c): granted, its codes reserved
 * (a card order from stock; short of stock: failed out_of_stock and the
 * grant expired) or its right kept (supplier). Blocked: the grant expires. */
int store_grant_release(ph_wtxn *w, ph_cmd *c, ph_order *o);
int store_grant_blocked(ph_wtxn *w, ph_cmd *c, const ph_order *o);
/* One unit of a grant (a granted order that is not a bundle, or a bundle
 * grant's component order) claimed: reserved codes issued (succeeded), or a
 * supplier unit with the claim's account (recharge) to `first` (attempt 1
 * SENDING, processing; supplier NULL: failed with fail_reason). */
int store_grant_unit_claim(ph_wtxn *w, ph_cmd *c, ph_order *o, const ph_attempt_target *first,
                           const char *fail_reason);
/* One unit of a grant or of a held order dies (a granted or held order that
 * is not a bundle, or a bundle's component): reserved codes back to stock,
 * failed with `reason` and its outcome event. Anything else: nothing. */
int store_grant_unit_dies(ph_wtxn *w, ph_cmd *c, ph_order *o, const char *reason);
/* A supplier order whose last attempt just failed for good (o FAILED in
 * memory, not yet written; ATTEMPT and SETTLE through store_write_attempt,
 * RESOLVE when a correction makes a succeeded one failed):
 * *yes = 1 when its claimed grant takes the unit back — o is a grant's own
 * order (not a bundle's component: its bundle is partial and retried), and
 * every attempt failed (nothing delivered, no cost booked). Errors: PH_EIO (a malformed
 * grant record), an LMDB read's. */
int store_grant_takes_back(ph_wtxn *w, const ph_order *o, int *yes, ph_err *err);
/* The grant of o given back, o as just written (granted again, its failed
 * attempts kept; a bundle: its parent granted again, store_bundle_grant_back):
 * active with the same token and its expiry entry, the return appended to
 * the record's "returns" (with `failed`'s last attempt, or its reason when it
 * has none: o itself, or the bundle's component whose failure ended it, then
 * named as order_id), claimed_at gone, the claim taken out of the analytics
 * of its day, grant.returned. When its expiry passed meanwhile it then
 * expires as the job would (grant.expired, the order failed grant_expired; a
 * bundle's every component). c->record is left as it was. */
int store_grant_back(ph_wtxn *w, ph_cmd *c, ph_order *o, const ph_order *failed);
/* At the open that migrates a store of schema < 9 (store.c check_schema, in
 * the open's transaction): every claimed grant the previous release left
 * with its supplier order failed for good (a grant's own order, every
 * attempt failed; a bundle grant's bundle failed with nothing delivered) is
 * given back as the failure would be now (store_grant_takes_back and
 * store_grant_back; store_bundle_takes_back and store_bundle_grant_back), at
 * the time of that failure (the failed order's updated_at), so every node
 * that opens the same data writes the same. *ids: the next ids, carried.
 * Nothing to give back: nothing written. */
int store_grant_migrate(ph_store *s, MDB_txn *txn, ph_ids *ids, ph_err *err);
/* The state (PH_GRANT_*) of grant id into *state, 0 when id has no grant. */
int store_grant_state_of(ph_wtxn *w, uint64_t id, int *state, ph_err *err);
/* A correction (PH_CMD_RESOLVE, store_discrep.c) made o succeeded: when o is
 * a grant's order given back (active, or expired since), the grant is
 * claimed after all (grant.claimed, reason corrected; its expiry entry gone,
 * an expiry counted taken out). Anything else: nothing. */
int store_grant_corrected(ph_wtxn *w, ph_cmd *c, const ph_order *o);
int store_apply_grant(ph_wtxn *w, ph_cmd *c);
int store_apply_grant_batch(ph_wtxn *w, ph_cmd *c);
/* --check-store: every grant agrees with its order, token and expiry entry,
 * and every token and expiry entry names a grant. *granted: granted orders
 * counted by check_order (each must have a grant). */
int store_check_grants(ph_store *s, MDB_txn *txn, uint64_t granted, ph_err *err);
/* ---- bundles (store_bundle.c; issue 16) ---- */

/* Called by store_put_order after every write of a component order: the
 * parent's state follows (ph_bundle_state) in the same transaction, with
 * its event when it changed. A no-op while the bundle is being created (no
 * bundle record yet: its creator sets the state). */
int store_bundle_follow(ph_wtxn *w, const ph_order *o, ph_err *err);
int store_apply_bundle(ph_wtxn *w, ph_cmd *c);
/* A held bundle p released (store_review.c, store_grant.c): its held
 * component orders bought as a new bundle's would be (all or none, in a
 * nested transaction) with c->in.review.targets; grant: reserved instead
 * (the parent granted). When a new bundle would be refused (a component
 * short of stock without a supplier, or a delisted one), every component
 * fails out_of_stock and nothing is taken. *p becomes the parent as written. */
int store_bundle_release(ph_wtxn *w, ph_cmd *c, ph_order *p, int grant);
/* A bundle grant p claimed (store_grant.c): every component unit claimed
 * (store_grant_unit_claim with c->in.grant.targets[j]); *p becomes the
 * parent as written (its state what its components make). */
int store_bundle_grant_claim(ph_wtxn *w, ph_cmd *c, ph_order *p);
/* A held or granted bundle p dies (expired, blocked): the parent failed with
 * `reason`, every held or granted component with it (store_grant_unit_dies:
 * reserved codes back to stock); *p becomes the parent as written. */
int store_bundle_dies(ph_wtxn *w, ph_cmd *c, ph_order *p, const char *reason);
/* Component o is about to be written failed for good (o in memory: ATTEMPT
 * and SETTLE through store_write_attempt, RESOLVE's correction): *parent =
 * its bundle's id when its bundle is a claimed grant and, o failed, nothing
 * of the bundle was delivered (store_bundle_undelivered); else 0. The caller
 * then sets w->bundle_back, writes o and its events, and calls
 * store_bundle_grant_back. */
int store_bundle_takes_back(ph_wtxn *w, const ph_order *o, uint64_t *parent, ph_err *err);
/* The claimed bundle grant `parent`, every component of which failed with
 * nothing delivered (o: the component whose failure ended it, as written),
 * given back in the failure's transaction: each component gets a new order
 * (client order id #<parent>.<j>.r<k> for the bundle's k-th return), a
 * granted supplier unit of the same kind with no attempt and no account
 * (its claim brings them, as the first did; no stock is touched: none was
 * reserved for it), the failed orders kept as its history; the bundle
 * record's "returns" = k; w->bundle_back cleared; the parent follows to
 * granted (no order.failed); then store_grant_back. */
int store_bundle_grant_back(ph_wtxn *w, ph_cmd *c, uint64_t parent, const ph_order *o);
/* *yes = 1 when bundle id (its record) has orders and every one of them
 * failed with no code and no attempt but failed ones (supplier units: nothing
 * reached the holder); `fresh` (may be NULL) is an order read from memory.
 * For the writer and the checker (any transaction). */
int store_bundle_undelivered(ph_store *s, MDB_txn *txn, uint64_t id, const ph_order *fresh,
                             int *yes, ph_err *err);
/* The latest order of bundle id's components that was written last (the one
 * whose failure ended a bundle failed as a whole) into *out, the caller's. */
int store_bundle_last_component(ph_store *s, MDB_txn *txn, uint64_t id, ph_order **out,
                                ph_err *err);
/* The bundle record's "returns" (store_bundle_grant_back) into *n. */
int store_bundle_returns(ph_store *s, MDB_txn *txn, uint64_t id, size_t *n, ph_err *err);
/* --check-store: every bundle record names a bundle parent and component
 * orders that name it back and exist, no order is a component of two, every
 * component order is in one record, and each parent's state is
 * ph_bundle_state of its components'. PH_OK or PH_EIO naming the first. */
int store_check_bundles(ph_store *s, MDB_txn *txn, ph_err *err);

/* store_apply_order.c: takes o->quantity codes of sku from stock into o
 * (o->codes, o->cost), retiring expired codes met (one code.expired event).
 * PH_ENOSTOCK (named) when short: codes may have been taken already, the
 * caller's transaction must be thrown away. */
int store_take_codes(ph_wtxn *w, ph_cmd *c, const char *sku, ph_order *o);
/* Codes taken for a GRANTED order are reserved to it instead of issued. */
/* store_apply_supply.c: a held order released to a supplier: attempt 1 at
 * first, or FAILED with fail_reason when first.supplier is NULL; order,
 * supply record, pending and events (order.accepted, outcome) as
 * SUPPLY_CREATE writes them. o->delivery set by the caller. */
int store_supply_release(ph_wtxn *w, ph_cmd *c, ph_order *o, const ph_attempt_target *first,
                         const char *fail_reason);
/* store_stuck.c: a note ops wrote: 1..PH_NOTE_MAX bytes of UTF-8, no control characters. */
int store_note_ok(const char *s);

/* store_discrep.c: discrepancies (store.h, "discrepancies").
 *
 * store_raise_discrepancy — the one way a discrepancy comes to be. Inside the
 * writer's transaction of command c (its `now` is the time; its err gets the
 * message): writes the record (what we hold is read from the attempt of `o`,
 * the order as the command leaves it, or loaded when o is NULL), indexes it
 * under its attempt, counts it open and emits `order.discrepancy`. An open
 * discrepancy of the same attempt saying the same (their_state, charged,
 * delivered) is not raised twice: *id (may be NULL) gets 0 then, else the new
 * id. Errors: PH_ENOTFOUND (order or attempt), PH_EINVAL (source or state out
 * of range), PH_EIO, PH_ENOMEM; on an error the caller fails its command. */
int store_raise_discrepancy(ph_wtxn *w, ph_cmd *c, const ph_order *o, const ph_discrepancy *d,
                            uint64_t *id);
int store_apply_final_word(ph_wtxn *w, ph_cmd *c);
/* --check-store: every discrepancy record well-formed, naming an order that
 * exists, listed in discrep_att; `discrep_open` equal to the open records.
 * PH_OK or PH_EIO naming the first violation. */
int store_check_discrep(ph_store *s, MDB_txn *txn, ph_err *err);
int store_apply_resolve(ph_wtxn *w, ph_cmd *c);
/* store_jobs.c: scheduled jobs' records (PH_CMD_JOB_RAN, PH_CMD_JOB_ASK). */
int store_apply_job(ph_wtxn *w, ph_cmd *c);
/* --check-store: every `jobs` key a job id, every record well-formed (its
 * times not before 0, a run's end not before its start, last_ok -1..1 and -1
 * exactly when it never ran). PH_OK or PH_EIO naming the job. */
int store_check_jobs(ph_store *s, MDB_txn *txn, ph_err *err);
/* store_replenish.c: replenishments (store.h, "replenishment"). */
int store_apply_replenish(ph_wtxn *w, ph_cmd *c);
/* Order o, a replenishment's (ph_order_is_replenish), just became final in
 * command c: its replenishment ends (succeeded with batch_id, or failed with
 * the order's reason), the in-flight mark goes, a failure gives its day's
 * spend back, a success keeps what the supplier charged; one event
 * replenish.succeeded / replenish.failed. Writer only. */
int store_replenish_end(ph_wtxn *w, ph_cmd *c, const ph_order *o, uint64_t batch_id);
/* Marks batch_id as bought by replenishment order order_id ("replenishment_order"
 * in its JSON): its purchase booked its supplier cost, so the ledger books none
 * again when its codes are sold from stock. Writer only. */
int store_replenish_mark_batch(ph_wtxn *w, uint64_t batch_id, uint64_t order_id, ph_err *err);
/* --check-store: every replenishment agrees with its order (the purchase,
 * in flight exactly while the order is not final) and with the in-flight
 * mark, and each (sku, day)'s spend is what its replenishments hold. PH_OK or
 * PH_EIO naming the first violation. */
int store_replenish_check(ph_store *s, MDB_txn *txn, ph_err *err);
/* store_webhooks.c: PH_CMD_WH_* */
int store_apply_webhook(ph_wtxn *w, ph_cmd *c);
/* --check-store: every delivery well-formed and listed in wh_pending exactly
 * when pending, every wh_pending key a delivery's, each endpoint's pending,
 * dead and delivered counters equal to its deliveries, no delivery past its
 * endpoint's cursor, every `previous` a delivery of the same order before it.
 * PH_OK or PH_EIO naming the first violation. */
int store_check_webhooks(ph_store *s, MDB_txn *txn, ph_err *err);
/* store_risk_rules.c: PH_CMD_RISK_RULE and PH_CMD_RISK_LIST (store.h). */
int store_apply_risk_rule(ph_wtxn *w, ph_cmd *c);
int store_apply_risk_list(ph_wtxn *w, ph_cmd *c);

/* ---- analytics (store_agg.c; store.h, "analytics") ---- */

/* Aggregate values, native byte order. */
typedef struct ph_agg_sku_rec {
    uint64_t orders, units; /* succeeded orders created that day, and their quantity */
    int64_t value;          /* fen: the ledger's unit sale price x quantity (priced orders) */
    uint64_t unpriced;      /* of `orders`, those without a price (value 0) */
} ph_agg_sku_rec;
typedef struct ph_agg_claim_rec {
    uint64_t granted, claimed, expired, gifted;
} ph_agg_claim_rec;

/* A grant's transition (store_agg_grant's `what`). */
enum { PH_AGG_GRANTED = 1, PH_AGG_CLAIMED, PH_AGG_EXPIRED, PH_AGG_GIFTED };
/* Co-redemption looks back this many days; a holder's list keeps this many skus. */
#define PH_AGG_CO_DAYS 30
#define PH_AGG_CO_SKUS 16
/* The end-user tags a grant carries (core/risk's PH_RISK_TAGS_MAX, _TAG_MAX). */
#define PH_AGG_TAGS_MAX 16
#define PH_AGG_TAG_MAX  64

/* store_agg_grant — counts one grant transition, inside the writer's
 * transaction of the command that made it (call it once per transition):
 * +1 to `what` on the UTC day of `at` (ms) for the client, for each of the
 * ntags tags ("key=value", at most PH_AGG_TAGS_MAX of at most
 * PH_AGG_TAG_MAX bytes, the end user's: pass the tags the grant was made with, so a
 * department keeps its grants when they are gifted) and for the sku. On
 * PH_AGG_CLAIMED, user_key (the claiming holder's ph_risk_key) also feeds the
 * co-redemption pairs; it is ignored (may be NULL) for the other transitions.
 * Errors (err set): PH_EINVAL (what, an empty or over-long client, sku or
 * tag: named by position, never quoted), PH_EIO, PH_STORE_MAPFULL; the
 * caller fails its command. */
int store_agg_grant(ph_wtxn *w, int what, const char *client, const char *const *tags, size_t ntags,
                    const uint8_t user_key[8], const char *sku, int64_t at, ph_err *err);
/* store_agg_grant_add — `delta` (+1 or -1) to `what` on the UTC day of `at`
 * under the same rows as store_agg_grant, and nothing to the co-redemption
 * pairs: a claim given back when its supplier order failed for good is taken
 * out of the day it was counted on (-1), and the claim again of a grant given
 * back counts (+1) without counting its pairs a second time (store_grant.c).
 * Errors as store_agg_grant's (PH_EINVAL also for a delta that is neither). */
int store_agg_grant_add(ph_wtxn *w, int what, int delta, const char *client,
                        const char *const *tags, size_t ntags, const char *sku, int64_t at,
                        ph_err *err);
/* 1 when order o is one of the mall's orders, which analytics and the
 * order stats count: not a replenishment, not a bundle's component (its
 * bundle counts once). The one answer for the hook, the migration, the
 * checker and ph_store_order_tally. */
int store_agg_counts(const ph_order *o);
/* store_agg_order — counts order o as just written; called by store_put_order
 * for every order write BEFORE the ledger books it (it reads what the ledger
 * counted the order as so far): a new order +1 in its creation hour; an
 * order that became succeeded (or stopped being) +1 (-1) in its sku's day of
 * creation. Replenishment orders are not counted. Errors: PH_EIO,
 * PH_STORE_MAPFULL, PH_ENOMEM. */
int store_agg_order(ph_wtxn *w, const ph_order *o, ph_err *err);
/* At open, in its transaction: back-fills the order aggregates from every
 * order of a version 3..6 store (after the ledger's migration) and writes the
 * schema version. */
int store_agg_migrate(ph_store *s, MDB_txn *txn, ph_err *err);

/* --check-store: agg_sku and agg_hours equal, row for row, the figures
 * recomputed from every order and its ledger summary; agg_claims and agg_co
 * rows well-formed and not all zeros; every agg_users record decodes. PH_OK
 * or PH_EIO naming the database and the day. Any transaction. */
int store_agg_check(ph_store *s, MDB_txn *txn, ph_err *err);
/* What the ledger counted order id as (store_ledger.c): *counted the state
 * its daily aggregates hold it in (0 none yet) and its unit sale price (-1
 * unpriced). PH_ENOTFOUND when the order was never booked (a new order). */
int store_ledger_counted(ph_wtxn *w, uint64_t id, int *counted, int64_t *unit_price, ph_err *err);
/* The unit sale price the ledger books a new order o at (-1 none): the
 * product's (per client when it has one); a bundle without a price of its
 * own: the sum of its components' prices x their quantities per bundle
 * (-1 when one of them has none). A bundle books no money (its components
 * do): its price is what analytics count it at. */
int store_ledger_price(ph_wtxn *w, const ph_order *o, int64_t *price, ph_err *err);

/* Adds (add = 1) or removes the late re-query of attempt no of order id at due. */
int store_late_set(ph_wtxn *w, uint64_t id, uint32_t no, int64_t due, int add, ph_err *err);

/* ---- alerts (store_alerts.c) ---- */

/* DB_ALERT_STATE value: the alert a (kind, subject) fired, while fired. */
typedef struct ph_alert_state_rec {
    uint8_t version; /* 1 */
    uint8_t reserved[7];
    uint64_t alert_id;
} ph_alert_state_rec;

/* DB_BALANCE value. */
typedef struct ph_balance_rec {
    int64_t balance; /* fen */
    int64_t at;      /* ms, the reading's time */
} ph_balance_rec;

/* The alert check of a product's stock (store.h, "alerts"): called once by
 * every command that changed sku's local stock, after its change, in its
 * transaction. Does nothing for a product without a low_stock rule (one
 * lookup in the writer's rule table). Errors: PH_EIO, PH_ENOMEM. */
int store_alerts_stock(ph_wtxn *w, const char *sku, ph_err *err);
/* PUT_PRODUCTS: the rules may have changed; judge every product that has one. */
int store_alerts_catalog(ph_wtxn *w, ph_err *err);
/* The product's min_validity_days in ms, from the writer's rule table (0 none). */
int64_t store_min_validity(ph_wtxn *w, const char *sku, size_t len);
/* The same read from a stored product (readers): 0 when it has none. */
int64_t store_product_min_validity(const MDB_val *product_json);
int store_apply_balance(ph_wtxn *w, ph_cmd *c);
int store_apply_alert_ack(ph_wtxn *w, ph_cmd *c);
/* Frees the rule table (at close). */
void store_alerts_free(ph_store *s);
/* --check-store: every alert well-formed, every fired state naming an alert
 * of its kind that is not cleared, the open counters equal to the open
 * alerts. PH_OK or PH_EIO naming the first violation. */
int store_check_alerts(ph_store *s, MDB_txn *txn, ph_err *err);

#endif
