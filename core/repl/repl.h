/*
 * repl.h — replication of the write path through NATS JetStream
 * (docs/replication.md): one leader publishes every batch of its writer to a
 * stream before committing it; standbys apply the stream's batches, in order,
 * through their own writer; a lease in a NATS KV bucket says who leads.
 *
 * The store knows none of this: its one seam is ph_store_opts.repl_hook
 * (store.h), which the daemon points at ph_repl_hook. The invariant the hook
 * keeps: meta "repl_seq" of a store is the stream sequence of the last batch
 * it committed, and batch N of the stream is what every node committed as its
 * N-th replicated batch. Fencing is the stream's own: a leader publishes with
 * the expected last sequence its store holds, so a batch of a leader that
 * missed anything (deposed, or its commit failed after the publish) is
 * refused by the stream and aborted here.
 *
 * Roles: STANDBY (applies the stream; every local write is refused with
 * PH_EUNAVAIL naming the leader), PROMOTING (holds the lease, applying the
 * stream to its end before its epoch marker, a `repl.leader` note event,
 * takes the stream's next sequence), LEADER (publishes; writes stop when the
 * lease was not renewed within half its TTL).
 *
 * Threads: one thread of its own (lease, applying); ph_repl_hook runs on the
 * store's writer; ph_repl_role and _leader_url on any thread; the rest on the
 * daemon's main thread.
 *
 * Reading: a standby reads the stream through an ordered consumer (pushed by
 * the server, in order, from its store's repl_seq + 1), not one request per
 * batch. A batch over the servers' max_payload travels as parts, each its own
 * stream message fenced by the one before (header Ph-Part "i/k"); it is
 * applied when its last part is read, and its sequence is that part's. Parts
 * whose batch never got its last part (the leader died or lost the lease in
 * between; the next message is not their continuation) are ignored on every
 * node alike: no node ever committed that batch.
 */
#ifndef PH_REPL_H
#define PH_REPL_H

#include <stddef.h>
#include <stdint.h>

#include "base/log.h"
#include "base/status.h"
#include "config/config.h"
#include "store/store.h"

typedef struct ph_repl ph_repl;

enum { PH_REPL_STANDBY = 1, PH_REPL_PROMOTING = 2, PH_REPL_LEADER = 3 };

typedef struct ph_repl_opts {
    const ph_config *cfg; /* the replication section is copied; borrowed for the call */
    const ph_logger *log; /* borrowed: must outlive the replicator */
    /* Called on the replicator's thread after the role changed (wake the main
     * thread, which reads ph_repl_role); NULL = none. Must not block. */
    void (*on_change)(void *arg);
    void *arg;
    /* the node's snapshots (snap.h), reported for the stream's retention
     * (retain.h); borrowed, outlives the replicator; NULL = none */
    struct ph_snaps *snaps;
} ph_repl_opts;

/* Connects to the NATS servers, makes the stream (file storage, cfg's
 * replicas) and the lease bucket (history 1, TTL lease_ttl_ms) when absent,
 * and reads the store uid the stream's first batch carries. *out is the
 * caller's (ph_repl_free). Main thread. When no server answers at all, it
 * still succeeds, not online (ph_repl_online 0, ph_repl_uid NULL): libnats
 * keeps trying and the replicator's thread finishes the rest once connected
 * (docs/replication.md, "Starting without NATS"); until then the node is a
 * standby whose writes are refused "no NATS server is reachable".
 * Errors: PH_EUNAVAIL (JetStream off, the stream or bucket cannot be made:
 * err names the server list or the object), PH_EINVAL (a stream that exists
 * with other subjects), PH_ENOMEM. Nothing is left open. */
int ph_repl_create(const ph_repl_opts *o, ph_repl **out, ph_err *err);

/* 1 when the stream and bucket were reached and the connection is up now
 * (GET /v1/health "connected"). Any thread. */
int ph_repl_online(ph_repl *r);

/* PH_OK when this node may start on a NEW store: the replicator reached the
 * stream at create (so ph_repl_uid is the uid to take). Else PH_EUNAVAIL
 * naming the NATS URLs: a new store started without NATS would take a uid
 * the stream's is not; the node must start once NATS answers. Main thread,
 * before the store opens. */
int ph_repl_needs_nats(ph_repl *r, ph_err *err);

/* The store uid of the stream's first batch (8 hex), or NULL when the stream
 * is empty: what a new store of this node must be created with
 * (ph_store_opts.uid). Valid while r lives. */
const char *ph_repl_uid(const ph_repl *r);

/* ph_store_opts.repl_hook, with arg = the ph_repl. Writer thread. A batch the
 * replicator is applying from the stream passes when prev_seq is the store's
 * sequence the reader found (*seq = the batch's last message); any other
 * batch is published (LEADER, or PROMOTING for the epoch marker) expecting
 * the stream's last sequence to be prev_seq (or, for a new leader's marker,
 * the last of the parts never completed that follow prev_seq), in parts when
 * over max_payload, and passes when the stream acknowledged every part in
 * turn (*seq = the last part's sequence). Else PH_EUNAVAIL, err "replication:
 * not stored: <why>" (a standby names the leader's URL, a node without NATS
 * says so); a stream that refused or did not answer makes the leader catch up
 * again before its next write. */
int ph_repl_hook(void *arg, const ph_cmd *batch, uint64_t prev_seq, uint64_t *seq, ph_err *err);

/* The parts of a large batch as a reader assembles them (the replicator's
 * own; exposed for tests). Zeroed to start; ph_repl_parts_clear frees. */
typedef struct ph_repl_parts {
    uint8_t *buf;
    size_t len, cap;
    unsigned next, of;    /* the part expected next (1-based) of `of`; 0 = none held */
    uint64_t first, last; /* the stream sequences of the held parts */
} ph_repl_parts;

enum { PH_REPL_PARTS_HELD = 0, PH_REPL_PARTS_WHOLE = 1 };

/* Feeds stream message seq: its Ph-Part header ("i/k"; NULL = a whole batch
 * in one message) and its data. PH_REPL_PARTS_WHOLE: *out, *n are the whole
 * batch's bytes (data itself, or p's buffer until the next feed), ending at
 * seq. PH_REPL_PARTS_HELD: a part before the last (more to come), or a part
 * whose earlier parts were not fed (ignored). *dropped = how many messages
 * this feed threw away: held parts this message does not continue (a part 1,
 * a whole batch, another batch's part: their leader never published their
 * last part) and an orphan part itself; the same on every node, since every
 * node reads the same messages in the same order. PH_EINVAL (a malformed
 * header), PH_ENOMEM. Any thread (p is the caller's). */
int ph_repl_parts_feed(ph_repl_parts *p, uint64_t seq, const char *part, const void *data,
                       size_t len, const uint8_t **out, size_t *n, unsigned *dropped);
void ph_repl_parts_clear(ph_repl_parts *p);

/* Applies the stream from the store's repl_seq + 1 to its end, then takes the
 * lease if nobody holds it (PROMOTING, the epoch marker, LEADER), and starts
 * the thread that renews the lease or applies what the leader publishes and
 * takes over when the lease lapses. Not online (no NATS at create): only the
 * thread starts, and does all this once connected (a store of another uid
 * than the stream's is then reported as repl.cannot_apply, and the node stays
 * a standby serving reads). s is borrowed until ph_repl_stop. Main
 * thread, once, after the store is open with ph_repl_hook.
 * Errors: PH_EUNAVAIL (the stream), PH_EINVAL (a batch of the stream that does
 * not decode, carries another store uid, or ends otherwise than recorded: this
 * store is not a copy of the stream's; or the stream no longer holds the
 * batches after this store's sequence: bootstrap from a snapshot), PH_ENOMEM. */
int ph_repl_start(ph_repl *r, ph_store *s, ph_err *err);

/* 1 when this node may talk to suppliers now: it leads and its lease was
 * renewed within half its TTL (the same test the writer's hook makes). A
 * node that is not sure it leads holds its exchanges back: the next leader
 * takes their attempts up by query (ph_fulfil_opts.may_send; arg = the
 * ph_repl). Any thread. */
int ph_repl_may_send(void *arg);

/* How many times this node became the leader (PROMOTING to LEADER): a
 * leader whose publish failed leads anew once it caught up from the stream,
 * and the batches it applied there may hold supplier orders nobody tracks
 * here (ph_fulfil_resume again). Any thread. */
uint64_t ph_repl_epoch(ph_repl *r);

/* PH_REPL_STANDBY, _PROMOTING or _LEADER, as now. Any thread. */
int ph_repl_role(ph_repl *r);

/* The leader's advertised URL as its lease says ("" when none is known, or
 * when it is this node's and this node may not write now), into buf
 * (NUL-terminated, truncated to n). Any thread. */
void ph_repl_leader_url(ph_repl *r, char *buf, size_t n);

/* How old this node's data may be, in ms: 0 on the leader (it writes);
 * on a standby, the time since it last held every batch the stream held, as
 * a look at the stream's end (every quarter lease TTL) followed by applying
 * up to that end shows it; -1 when it has not held the stream's end since
 * it started (no NATS yet, or still catching up). What a standby's reads
 * state (X-Perkhub-Staleness-Ms) and what replication.max_staleness_ms
 * bounds. Any thread. */
int64_t ph_repl_staleness_ms(ph_repl *r);

/* The stream sequence this node's store holds, and the stream's last one as
 * last seen (for health and the tests). Any thread. */
void ph_repl_seqs(ph_repl *r, uint64_t *applied, uint64_t *stream_last);

/* Stops the thread (a leader stops renewing: its lease lapses after its TTL).
 * Before the store closes. NULL-safe. Main thread. */
void ph_repl_stop(ph_repl *r);

/* Closes the connection and frees. After the store closed. NULL-safe. */
void ph_repl_free(ph_repl *r);

#endif
