/*
 * cmd_codec.h — store commands as bytes, and a journal of the writer's
 * committed batches that can be applied again to an empty store.
 *
 * The write path is a deterministic function of (store, batch of commands)
 * (docs/design.md): everything a command's outcome depends on — its time,
 * fingerprints, keyed hashes, sealed codes and accounts, failover targets —
 * is in the command, so the bytes below carry all of it. A replay of the
 * journal into an empty directory (ph_journal_replay, `perkhubd
 * --replay-journal`) gives the same data, byte for byte (tests/e2e/test_replay.c).
 * Replication will ship exactly these batches to standbys (a later issue):
 * the journal file is the seed of that, a test and debugging hook today.
 *
 * Encoding, version 2. Integers little-endian, fixed width. A string is a u32
 * length then its bytes without NUL (length 0xFFFFFFFF: NULL, which for most
 * fields means "keep" or "none"); a blob is the same for bytes.
 *
 *   batch   = u8 version (2), u32 ncmds, ncmds x (u32 len, command of len bytes)
 *   command = u8 type, i64 now, i32 rc (the outcome the writer gave it),
 *             then the type's inputs in the order of struct ph_cmd's `in`
 *             (store.h); arrays as u32 count then elements;
 *             then the audit member: u8 0 (none), or u8 1 and the strings
 *             action, client, peer, request_id, via, what (store.h, ph_audit)
 *
 * Version 1 is version 2 without the audit member; batches of either version
 * are read (a journal written before the audit trail replays), version 2 is
 * written.
 *
 * Results (order, dup lines, affected orders) are not encoded: applying the
 * command produces them again. Secrets appear only as the store holds them:
 * sealed blobs and keyed hashes, never a plaintext code or account.
 *
 * Journal file: "PHJOURNAL1\n\0" (12 bytes), the store uid (8 hex chars),
 * then records of u32 len, u64 seq, len bytes of batch. seq counts batches
 * from 1 across restarts. A record of len 0 marks a clean close (ph_journal_close);
 * a journal whose last record is not one may lack batches (a crash, or a
 * write that failed) and is refused both by a reopen and by a replay.
 *
 * Threads: encoding and decoding are pure and thread-safe. A ph_journal is
 * used by one thread at a time (the store's writer).
 */
#ifndef PH_CMD_CODEC_H
#define PH_CMD_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "store/store.h"

#define PH_CMD_CODEC_VERSION                                                                       \
    5 /* 2: the audit member; 3: an order's risk input; 4: an order's grant input, GRANT,          \
         GRANT_BATCH and BUNDLE; 5: BUNDLE's grant input, REVIEW's and GRANT's targets */

/* The one name of a command type ("order", "attempt", ...; "?" for another
 * value): the journal's messages and the ledger's `command` field. Static
 * strings; any thread. */
const char *ph_cmd_type_name(int type);

/* Encodes the commands first, first->next, ... (as the writer links a batch)
 * with their results' rc. *out (malloc'd, *len bytes) is the caller's.
 * Errors: PH_EINVAL (a command type without an encoding, a count over
 * UINT32_MAX; err names it), PH_ENOMEM. */
int ph_cmd_batch_encode(const ph_cmd *first, uint8_t **out, size_t *len, ph_err *err);

/* A decoded batch: n commands whose inputs point into memory the batch owns,
 * linked first to last through `next`, each with the rc it was recorded with
 * in rcs[i]. Submit them as they are (ph_store_submit_list); their results
 * are theirs (ph_cmd_clear) and done/arg are NULL. */
typedef struct ph_cmd_batch {
    ph_cmd *cmds;
    int *rcs;
    size_t n;
    void *arena; /* private */
} ph_cmd_batch;

/* Decodes len bytes made by ph_cmd_batch_encode. Refuses anything else —
 * another version, a truncated or oversized field, trailing bytes, an unknown
 * command type, a string with a NUL, an IMPORT whose by_hash is not a
 * permutation in hash order — with PH_EINVAL and a message naming the command
 * index and the field ("command 2 (attempt): reason: truncated"). Nothing is
 * left allocated on failure. */
int ph_cmd_batch_decode(const uint8_t *p, size_t len, ph_cmd_batch *out, ph_err *err);

/* Applies a decoded batch through the store's own writer as one batch
 * (ph_store_exec_list: the same boundaries, the same redo with nested
 * transactions), waits for it, and checks that every command ends with the rc
 * it was recorded with: the one applier of a journal's replay and of a
 * replication standby (core/repl). PH_OK; the submission's rc (PH_ESHUTDOWN);
 * PH_EINVAL when a command's rc differs, or PH_EUNAVAIL when it was refused by
 * the store's repl_hook, err naming the command ("command 2 (order): recorded
 * ok, replay gave out_of_stock"). Not on the writer thread. */
int ph_cmd_batch_apply(ph_store *s, ph_cmd_batch *b, ph_err *err);

/* Frees what decode allocated, and the commands' results. NULL-safe on a
 * zeroed batch. */
void ph_cmd_batch_free(ph_cmd_batch *b);

/* ---- the journal file ---------------------------------------------------- */

typedef struct ph_journal ph_journal;

/* Opens path for appending the batches of the store whose uid is `uid`.
 * A new (missing or empty) file gets its header, and only when store_empty:
 * a journal must start with its store. An existing one must carry the same
 * uid and end with a clean close record, which is then continued.
 * Errors: PH_EIO (the file), PH_EINVAL (header, uid, not closed cleanly, a
 * store that already holds data), PH_ENOMEM. err names the file. */
int ph_journal_open(const char *path, const char *uid, int store_empty, ph_journal **out,
                    ph_err *err);

/* Encodes the committed batch (first, first->next, ...) and appends it as the
 * next record. On failure the journal stops taking records and will not be
 * closed cleanly (a replay then refuses it), and err says why. */
int ph_journal_append(ph_journal *j, const ph_cmd *first, ph_err *err);

/* Writes the close record (unless an append failed) and closes. NULL is a no-op. */
void ph_journal_close(ph_journal *j);

/* What a replay did. */
typedef struct ph_replay_stats {
    uint64_t batches, commands;
} ph_replay_stats;

/* Applies the journal at path to a new store in dir (which must not hold one),
 * created with the journal's uid and opened with keys (borrowed; the key file
 * of the store that wrote the journal, as every node holds it: the key checks
 * the store records at open are then the same; NULL opens without), batch by
 * batch through the store's own
 * writer (ph_store_submit_list), and checks that every command ends with the
 * rc it was recorded with. PH_OK, or PH_EINVAL / PH_EIO with err naming the
 * file and the batch (and command) where it stopped; the store is then left
 * as far as it got. */
int ph_journal_replay(const char *path, const char *dir, const ph_keyring *keys,
                      ph_replay_stats *stats, ph_err *err);

#endif
