/*
 * snap.h — the snapshot directory (docs/replication.md, "Snapshots"): whole,
 * compacted copies of the store (ph_store_snapshot) taken by the job
 * snapshots.take or on demand, each a file named by when it was taken and the
 * replicated sequence it holds, the newest `keep` kept. A snapshot is what a
 * new or lagging node starts from (its data.mdb), and an online backup of a
 * single node. With replication, the newest snapshot of every node bounds the
 * stream's retention (retain.h).
 *
 * Names: "snap-<taken_at ms, 13 digits>-<repl_seq, 20 digits>.mdb": the
 * directory alone says what it holds (no index to keep in step), and a name
 * is only ever seen on a whole file (ph_store_snapshot writes "<name>.tmp"
 * first); a ".tmp" left by a crash is removed at create.
 *
 * Threads and ownership: the daemon owns a ph_snaps (created before the
 * replicator, freed after it); takes are serialized by its mutex (the job on
 * the scheduler's thread); listing and opening run on any thread without it
 * (a prune may remove a file meanwhile: it is skipped, an open file stays
 * readable); ph_snaps_newest_seq on any thread.
 */
#ifndef PH_REPL_SNAP_H
#define PH_REPL_SNAP_H

#include <stddef.h>
#include <stdint.h>

#include "base/log.h"
#include "base/status.h"
#include "store/store.h"

typedef struct ph_snap_info {
    char file[64];     /* the name in the directory */
    uint64_t repl_seq; /* meta repl_seq of the copy: the stream batches it holds */
    uint64_t bytes;
    int64_t taken_at; /* ms since the epoch */
} ph_snap_info;

typedef struct ph_snaps ph_snaps;

/* The directory made when absent (mode 0700: a snapshot is the whole store,
 * sealed values included), leftover ".tmp" files removed. dir is copied; log
 * borrowed (outlives *out). Main thread. PH_EIO (naming dir), PH_ENOMEM. */
int ph_snaps_create(const char *dir, unsigned keep, const ph_logger *log, ph_snaps **out,
                    ph_err *err);

/* A reload's new `keep`, applied at the next take. Any thread. */
void ph_snaps_set_keep(ph_snaps *p, unsigned keep);

/* The directory, as given. Valid while p lives. */
const char *ph_snaps_dir(const ph_snaps *p);

/* Takes a snapshot of s now (`now`: its name's time, ms), then removes the
 * oldest beyond `keep`. *out (may be NULL) says what was written. Blocks for
 * the copy (seconds for a large store). Any thread but the store's writer.
 * Errors: those of ph_store_snapshot; PH_EIO when pruning fails is only
 * logged (the snapshot was taken). */
int ph_snaps_take(ph_snaps *p, ph_store *s, int64_t now, ph_snap_info *out, ph_err *err);

/* The snapshots held, newest first (by taken_at, then repl_seq), into *v (the
 * caller frees it; NULL when *n is 0). Any thread. PH_EIO, PH_ENOMEM. */
int ph_snaps_list(ph_snaps *p, ph_snap_info **v, size_t *n, ph_err *err);

/* The newest snapshot opened for reading: *fd the caller's (close), *info
 * what it is. Any thread. PH_ENOTFOUND (none taken yet), PH_EIO. */
int ph_snaps_open_latest(ph_snaps *p, int *fd, ph_snap_info *info, ph_err *err);

/* The highest repl_seq of the snapshots held (0 = none): what this node
 * reports for the stream's retention. Any thread. */
uint64_t ph_snaps_newest_seq(ph_snaps *p);

/* 1 when name is a snapshot's name (as this module writes them), with its
 * time and sequence into *taken_at and *seq (may be NULL). Pure. */
int ph_snap_name_parse(const char *name, int64_t *taken_at, uint64_t *seq);

/* NULL-safe. After every user stopped (the job, the listener, the replicator). */
void ph_snaps_free(ph_snaps *p);

#endif
