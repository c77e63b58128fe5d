/*
 * retain.h — the stream's retention, bounded by snapshots (docs/replication.md,
 * "Snapshots and the stream's retention").
 *
 * Every node reports, on the replicator's thread every quarter lease TTL, what
 * its store applied and the newest snapshot it holds (snap.h), as
 * {"applied":N,"snap":S} under the key "node.<node_id>" of the KV bucket
 * "<lease_bucket>_nodes" (made when absent). The leader, at most once per
 * lease TTL, reads every report and purges the stream below
 * ph_retain_purge_seq: the batches after the newest snapshot any live node
 * holds stay (a new node starts from that snapshot), and so does every batch
 * a live node has not applied yet. A report older than hold_ttls lease TTLs
 * is a node gone: it holds nothing back (it bootstraps from a snapshot when
 * it returns). A trim is logged (repl.trimmed) and evented (the note event
 * repl.trimmed, {"stream", "first_seq"}).
 *
 * Threads: ph_retain_init and _free on the main thread (inside
 * ph_repl_create and ph_repl_free), ph_retain_tick on the replicator's thread
 * only; ph_retain_purge_seq is pure.
 */
#ifndef PH_REPL_RETAIN_H
#define PH_REPL_RETAIN_H

#include <nats/nats.h>
#include <stddef.h>
#include <stdint.h>

#include "base/log.h"
#include "base/status.h"
#include "config/config.h"
#include "repl/snap.h"
#include "store/store.h"

/* One node's report, as the leader read it. */
typedef struct ph_retain_report {
    uint64_t applied;  /* the node store's repl_seq */
    uint64_t snap_seq; /* the repl_seq of its newest snapshot; 0 = none */
    int64_t age_ms;    /* since the report was stored */
} ph_retain_report;

/* Where the stream may start: the sequence to purge below (JetStream's
 * Purge.Sequence: every batch before it goes), or 0 when nothing is to go.
 * Of the live reports (age_ms <= hold_ms): the newest snapshot's sequence + 1
 * less `margin` batches (kept for a node that pulled a snapshot just before
 * a newer one was taken), but never past the first batch a live node has not
 * applied (its applied + 1); 0 when no live node holds a snapshot, or when
 * that is not past `first` (the stream's first sequence now). Pure. */
uint64_t ph_retain_purge_seq(const ph_retain_report *v, size_t n, int64_t hold_ms, uint64_t margin,
                             uint64_t first);

/* The replicator's retention state: a field of struct ph_repl. */
typedef struct ph_retain {
    kvStore *kv; /* the nodes bucket; NULL until ph_retain_open */
    char key[160], stream[128], bucket[160];
    int replicas;
    int64_t ttl_ms, hold_ms;
    uint64_t margin;
    int64_t next_report, next_trim; /* monotonic ms */
    ph_snaps *snaps;                /* borrowed; NULL = this node takes none */
    const ph_logger *log;
    int report_failed; /* a failed report was logged: once until one succeeds */
} ph_retain;

/* Takes what retention needs of cfg's replication section (cfg borrowed for
 * the call; snaps and log borrowed). No NATS yet: a node may start without
 * it. Main thread, inside ph_repl_create. */
void ph_retain_init(ph_retain *t, const ph_config *cfg, ph_snaps *snaps, const ph_logger *log);

/* The nodes bucket opened (made when absent: history 1, the replicas and the
 * hold of the section). Once NATS answers: in ph_repl_create, or on the
 * replicator's thread when the node came online later. Until it is open,
 * ph_retain_tick does nothing. PH_EUNAVAIL (the bucket cannot be made: err
 * names it). */
int ph_retain_open(ph_retain *t, jsCtx *js, ph_err *err);

/* Reports this node (when due), and, on a leader (`leader` 1), trims the
 * stream when due and allowed. s is the replicator's store (the applied
 * sequence; a trim's note event goes through its writer). Never blocks longer
 * than a few NATS requests. Replicator's thread. */
void ph_retain_tick(ph_retain *t, jsCtx *js, ph_store *s, int leader);

/* NULL-safe for a ph_retain never initialised (all zero). */
void ph_retain_free(ph_retain *t);

#endif
