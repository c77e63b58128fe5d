/*
 * repl.c — the replicator (repl.h): the NATS connection, the stream and the
 * lease, the writer's hook, and the thread that renews the lease or applies
 * the stream.
 */
#include "repl/repl.h"

#include <assert.h>
#include <inttypes.h>
#include <jansson.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/util.h"
#include "crypto/wipe_alloc.h"
#include "repl/retain.h"
#include "store/cmd_codec.h"

#define LEASE_KEY      "leader"
#define HDR_UID        "Ph-Uid"
#define HDR_EXPECT     "Nats-Expected-Last-Sequence"
#define HDR_GENESIS    "Ph-Genesis"
#define IDLE_WAIT_MS   20  /* a standby's next look at the stream when it had nothing new */
#define TAKE_OVER_STEP 256 /* batches a new leader applies between two renewals at most */

struct ph_repl {
    /* the replication section, copied at create */
    char node[128], url[512], stream[128], subject[256], bucket[128];
    char **servers;
    int nservers;
    int64_t ttl_ms, ack_wait_ms;
    int replicas;
    const ph_logger *log;
    void (*on_change)(void *arg);
    void *arg;
    /* libnats handles: thread-safe; created and destroyed on the main thread */
    natsConnection *nc;
    jsCtx *js;
    kvStore *kv;
    char uid[9]; /* the stream's store uid, then (start) this store's */
    int have_uid;
    ph_store *store; /* borrowed from start to stop */
    pthread_t thread;
    int started;
    pthread_mutex_t mu; /* a leaf: nothing is called while it is held */
    pthread_cond_t cv;  /* CLOCK_MONOTONIC: the thread's waits, cut short by stop and resync */
    /* guarded by mu */
    int role;
    int stopping;
    int64_t lease_until; /* monotonic ms: writes stop here unless the lease was renewed */
    uint64_t lease_rev;
    char leader_url[512];
    const ph_cmd *applying; /* the batch of the stream the writer is applying for us */
    size_t applying_n;
    uint64_t applying_seq;
    const ph_cmd *marker; /* the epoch marker being published while PROMOTING */
    int broken;           /* the stream cannot be applied here: stop trying, say why once */
    uint64_t epoch;       /* how many times this node became the leader */
    /* any thread */
    _Atomic uint64_t applied, stream_last;
    /* retention by snapshots (retain.h, repl-snap): this node's reports, the
     * leader's trims; the replicator's thread only after create */
    ph_retain retain;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What libnats said, for a message: its status text, and the JetStream code. */
static const char *nats_why(natsStatus s, jsErrCode jerr, char *buf, size_t n)
{
    const char *last = nats_GetLastError(NULL);
    if (jerr)
        snprintf(buf, n, "%s (jetstream error %d)", last && *last ? last : natsStatus_GetText(s),
                 (int)jerr);
    else
        snprintf(buf, n, "%s", last && *last ? last : natsStatus_GetText(s));
    return buf;
}

static void set_role(ph_repl *r, int role, const char *why)
{
    pthread_mutex_lock(&r->mu);
    int was = r->role;
    r->role = role;
    if (role == PH_REPL_LEADER && was != PH_REPL_LEADER)
        r->epoch++;
    if (role == PH_REPL_STANDBY) {
        r->lease_until = 0;
        if (!strcmp(r->leader_url, r->url))
            r->leader_url[0] = 0; /* no longer us; the next look at the lease says who */
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (was == role)
        return;
    static const char *const names[] = {"?", "standby", "promoting", "leader"};
    ph_log(r->log, role == PH_REPL_STANDBY && was == PH_REPL_LEADER ? PH_LOG_WARN : PH_LOG_INFO,
           NULL, "repl.role", "node=%s role=%s was=%s why=\"%s\" applied=%llu", r->node,
           names[role], names[was], why, (unsigned long long)atomic_load(&r->applied));
    if (r->on_change)
        r->on_change(r->arg);
}

/* ---- creating ------------------------------------------------------------ */

static int copy_cfg(ph_repl *r, const ph_config *c, ph_err *err)
{
    snprintf(r->node, sizeof r->node, "%s", c->repl_node_id ? c->repl_node_id : "");
    snprintf(r->url, sizeof r->url, "%s", c->repl_advertise_url ? c->repl_advertise_url : "");
    snprintf(r->stream, sizeof r->stream, "%s", c->repl_stream);
    snprintf(r->subject, sizeof r->subject, "%s", c->repl_subject);
    snprintf(r->bucket, sizeof r->bucket, "%s", c->repl_lease_bucket);
    r->ttl_ms = c->repl_lease_ttl_ms;
    r->ack_wait_ms = c->repl_ack_wait_ms;
    r->replicas = (int)c->repl_replicas;
    if (!(r->servers = calloc(c->nrepl_urls ? c->nrepl_urls : 1, sizeof *r->servers)))
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    for (size_t i = 0; i < c->nrepl_urls; i++, r->nservers++)
        if (!(r->servers[i] = strdup(c->repl_urls[i])))
            return ph_err_set(err, PH_ENOMEM, "out of memory");
    return PH_OK;
}

static int connect_nats(ph_repl *r, ph_err *err)
{
    natsOptions *no = NULL;
    char why[256];
    natsStatus s = natsOptions_Create(&no);
    if (s == NATS_OK)
        s = natsOptions_SetServers(no, (const char **)r->servers, r->nservers);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(no, -1); /* a server restarting is not our end */
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(no, 100);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(no, r->ack_wait_ms);
    if (s == NATS_OK)
        s = natsConnection_Connect(&r->nc, no);
    natsOptions_Destroy(no);
    if (s != NATS_OK)
        return ph_err_set(err, PH_EUNAVAIL, "replication: cannot reach NATS at %s%s: %s",
                          r->servers[0], r->nservers > 1 ? " (and the others)" : "",
                          nats_why(s, 0, why, sizeof why));
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = r->ack_wait_ms;
    if ((s = natsConnection_JetStream(&r->js, r->nc, &jo)) != NATS_OK)
        return ph_err_set(err, PH_EUNAVAIL, "replication: JetStream: %s",
                          nats_why(s, 0, why, sizeof why));
    return PH_OK;
}

/* The stream of batches, made when absent; an existing one must take our
 * subject. Also reads the store uid of its first batch. */
static int ensure_stream(ph_repl *r, ph_err *err)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    char why[256];
    natsStatus s = js_GetStreamInfo(&si, r->js, r->stream, NULL, &jerr);
    if (s == NATS_NOT_FOUND) {
        jsStreamConfig sc;
        jsStreamConfig_Init(&sc);
        const char *subjects[1] = {r->subject};
        sc.Name = r->stream;
        sc.Subjects = subjects;
        sc.SubjectsLen = 1;
        sc.Storage = js_FileStorage;
        sc.Replicas = r->replicas;
        jerr = 0;
        s = js_AddStream(&si, r->js, &sc, NULL, &jerr);
    }
    if (s != NATS_OK)
        return ph_err_set(err, PH_EUNAVAIL, "replication: stream %s: %s", r->stream,
                          nats_why(s, jerr, why, sizeof why));
    int ok = 0;
    for (int i = 0; si->Config && i < si->Config->SubjectsLen; i++)
        ok |= !strcmp(si->Config->Subjects[i], r->subject);
    uint64_t first = si->State.Msgs ? si->State.FirstSeq : 0;
    atomic_store(&r->stream_last, si->State.LastSeq);
    jsStreamInfo_Destroy(si);
    if (!ok)
        return ph_err_set(err, PH_EINVAL,
                          "replication: stream %s exists without the subject %s: another "
                          "subject, or another application's stream",
                          r->stream, r->subject);
    if (!first)
        return PH_OK;
    natsMsg *m = NULL;
    const char *uid = NULL;
    jerr = 0;
    if ((s = js_GetMsg(&m, r->js, r->stream, first, NULL, &jerr)) != NATS_OK)
        return ph_err_set(err, PH_EUNAVAIL, "replication: stream %s: batch %llu: %s", r->stream,
                          (unsigned long long)first, nats_why(s, jerr, why, sizeof why));
    if (natsMsgHeader_Get(m, HDR_UID, &uid) == NATS_OK && uid && strlen(uid) == 8) {
        memcpy(r->uid, uid, 9);
        r->have_uid = 1;
    }
    natsMsg_Destroy(m);
    return r->have_uid ? PH_OK
                       : ph_err_set(err, PH_EINVAL,
                                    "replication: stream %s: batch %llu carries no store uid: "
                                    "not a perkhub stream",
                                    r->stream, (unsigned long long)first);
}

static int ensure_bucket(ph_repl *r, ph_err *err)
{
    char why[256];
    natsStatus s = js_KeyValue(&r->kv, r->js, r->bucket);
    if (s == NATS_NOT_FOUND) {
        kvConfig kc;
        kvConfig_Init(&kc);
        kc.Bucket = r->bucket;
        kc.History = 1;
        kc.TTL = r->ttl_ms * 1000000; /* nanoseconds: the stream's max age */
        kc.Replicas = r->replicas;
        kc.StorageType = js_FileStorage;
        s = js_CreateKeyValue(&r->kv, r->js, &kc);
    }
    return s == NATS_OK ? PH_OK
                        : ph_err_set(err, PH_EUNAVAIL, "replication: lease bucket %s: %s",
                                     r->bucket, nats_why(s, 0, why, sizeof why));
}

int ph_repl_create(const ph_repl_opts *o, ph_repl **out, ph_err *err)
{
    ph_repl *r = calloc(1, sizeof *r);
    if (!r)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    r->log = o->log;
    r->on_change = o->on_change;
    r->arg = o->arg;
    r->role = PH_REPL_STANDBY;
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = copy_cfg(r, o->cfg, err);
    if (rc == PH_OK)
        rc = connect_nats(r, err);
    if (rc == PH_OK)
        rc = ensure_stream(r, err);
    if (rc == PH_OK)
        rc = ensure_bucket(r, err);
    if (rc == PH_OK) /* retention by snapshots (retain.h) */
        rc = ph_retain_init(&r->retain, r->js, o->cfg, o->snaps, o->log, err);
    if (rc != PH_OK) {
        ph_repl_free(r);
        return rc;
    }
    *out = r;
    return PH_OK;
}

const char *ph_repl_uid(const ph_repl *r)
{
    return r->have_uid ? r->uid : NULL;
}

/* ---- the writer's hook --------------------------------------------------- */

static size_t batch_len(const ph_cmd *c)
{
    size_t n = 0;
    for (; c; c = c->next)
        n++;
    return n;
}

/* The leader's publish of one batch at prev_seq + 1, fenced by the stream. */
static int publish(ph_repl *r, const ph_cmd *batch, uint64_t prev, ph_err *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    ph_err e = {0};
    char why[256], num[24];
    if (ph_cmd_batch_encode(batch, &buf, &len, &e) != PH_OK)
        return ph_err_set(err, PH_EUNAVAIL, "replication: not stored: %s", e.msg);
    int64_t max = natsConnection_GetMaxPayload(r->nc);
    if (len > INT32_MAX || (max > 0 && len + 256 > (size_t)max)) {
        /* nothing was sent: the stream is as it was, this node stays the leader */
        free(buf);
        return ph_err_set(err, PH_EUNAVAIL,
                          "replication: not stored: the batch is %zu bytes, over the NATS "
                          "servers' max_payload (%lld): send less at once (fewer codes in an "
                          "import) or raise max_payload",
                          len, (long long)max);
    }
    natsMsg *m = NULL;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    snprintf(num, sizeof num, "%llu", (unsigned long long)prev);
    natsStatus s = natsMsg_Create(&m, r->subject, NULL, (const char *)buf, (int)len);
    free(buf);
    /* the header itself, not jsPubOptions.ExpectLastSeq, which cannot say 0:
     * the first batch of a stream is fenced too */
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, HDR_EXPECT, num);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, HDR_UID, r->uid);
    /* the stream's first batch says whether the history starts from an empty
     * store: one that held data (a single node turned leader) cannot be
     * followed from an empty store, only from a copy of it (apply_one) */
    if (s == NATS_OK && prev == 0)
        s = natsMsgHeader_Set(m, HDR_GENESIS, ph_store_event_last(r->store) ? "data" : "empty");
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = r->ack_wait_ms;
    if (s == NATS_OK)
        s = js_PublishMsg(&pa, r->js, m, &po, &jerr);
    uint64_t got = s == NATS_OK && pa ? pa->Sequence : 0;
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
    if (s == NATS_OK && got == prev + 1) {
        atomic_store(&r->stream_last, got);
        return PH_OK;
    }
    /* the stream holds what this store lacks (another leader wrote, or a
     * commit after a publish failed), or may hold this batch (no answer):
     * either way the leader catches up from the stream before writing again */
    pthread_mutex_lock(&r->mu);
    int resync = r->role == PH_REPL_LEADER;
    if (resync)
        r->role = PH_REPL_PROMOTING;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (resync)
        ph_log(r->log, PH_LOG_WARN, NULL, "repl.resync",
               "node=%s after=%llu detail=\"%s\" effect=\"writes wait until this leader applied "
               "the stream to its end\"",
               r->node, (unsigned long long)prev,
               s == NATS_OK ? "the stream put the batch elsewhere"
                            : nats_why(s, jerr, why, sizeof why));
    if (s == NATS_OK)
        return ph_err_set(err, PH_EUNAVAIL,
                          "replication: not stored: the stream put the batch at %llu, not %llu",
                          (unsigned long long)got, (unsigned long long)prev + 1);
    if (jerr == JSStreamWrongLastSequenceErr)
        return ph_err_set(err, PH_EUNAVAIL,
                          "replication: not stored: the stream holds batches this node has not "
                          "applied (another leader wrote after %llu); this node catches up",
                          (unsigned long long)prev);
    return ph_err_set(err, PH_EUNAVAIL,
                      "replication: not stored: the stream did not take the batch (%s); if it "
                      "did after all, the batch is applied from the stream: retry with the same "
                      "order id",
                      nats_why(s, jerr, why, sizeof why));
}

int ph_repl_hook(void *arg, const ph_cmd *batch, uint64_t prev, ph_err *err)
{
    ph_repl *r = arg;
    pthread_mutex_lock(&r->mu);
    int role = r->role, from_stream = batch == r->applying, marker = batch == r->marker;
    size_t want_n = r->applying_n;
    uint64_t seq = r->applying_seq;
    int64_t until = r->lease_until;
    char leader[sizeof r->leader_url];
    snprintf(leader, sizeof leader, "%s", r->leader_url);
    pthread_mutex_unlock(&r->mu);
    if (from_stream) {
        /* exactly the stream's batch, at the next sequence: nothing merged in */
        if (batch_len(batch) == want_n && prev + 1 == seq)
            return PH_OK;
        return ph_err_set(err, PH_EUNAVAIL,
                          "replication: not applied: batch %llu of the stream met this store "
                          "at %llu with %zu commands for %zu",
                          (unsigned long long)seq, (unsigned long long)prev, batch_len(batch),
                          want_n);
    }
    if (role == PH_REPL_STANDBY || (role == PH_REPL_PROMOTING && !marker))
        return ph_err_set(err, PH_EUNAVAIL, "replication: not stored: this node is %s%s%s",
                          role == PH_REPL_STANDBY ? "a standby" : "taking over as leader",
                          leader[0] ? "; the leader is at " : "", leader[0] ? leader : "");
    if (mono_ms() >= until)
        return ph_err_set(err, PH_EUNAVAIL,
                          "replication: not stored: this node's lease as leader was not "
                          "renewed in time");
    return publish(r, batch, prev, err);
}

/* ---- applying the stream ------------------------------------------------- */

/* Applies batch seq of the stream through the writer. 1 applied, 0 not there
 * yet (or refused for now: tried again), -1 this store cannot follow the
 * stream (err says why). */
static int apply_one(ph_repl *r, uint64_t seq, ph_err *err)
{
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    char why[256];
    natsStatus s = js_GetMsg(&m, r->js, r->stream, seq, NULL, &jerr);
    if (s == NATS_NOT_FOUND)
        return 0;
    if (s != NATS_OK) {
        ph_err_set(err, PH_EUNAVAIL, "replication: batch %llu: %s", (unsigned long long)seq,
                   nats_why(s, jerr, why, sizeof why));
        return 0;
    }
    const char *uid = NULL;
    if (natsMsgHeader_Get(m, HDR_UID, &uid) != NATS_OK || !uid || strcmp(uid, r->uid)) {
        natsMsg_Destroy(m);
        ph_err_set(err, PH_EINVAL,
                   "replication: batch %llu of stream %s belongs to store %s, this one is %s: "
                   "start this node on an empty data_dir (or a snapshot of the leader's)",
                   (unsigned long long)seq, r->stream, uid ? uid : "(none)", r->uid);
        return -1;
    }
    const char *genesis = NULL;
    if (seq == 1 && natsMsgHeader_Get(m, HDR_GENESIS, &genesis) == NATS_OK && genesis &&
        !strcmp(genesis, "data")) {
        natsMsg_Destroy(m);
        ph_err_set(err, PH_EINVAL,
                   "replication: stream %s began on a store that already held data: an empty "
                   "store cannot follow it; bootstrap this node from a snapshot of a node "
                   "(docs/replication.md)",
                   r->stream);
        return -1;
    }
    ph_cmd_batch b;
    int rc = ph_cmd_batch_decode((const uint8_t *)natsMsg_GetData(m),
                                 (size_t)natsMsg_GetDataLength(m), &b, err);
    natsMsg_Destroy(m);
    if (rc == PH_OK && !b.n) {
        ph_cmd_batch_free(&b);
        rc = ph_err_set(err, PH_EINVAL, "an empty batch");
    }
    if (rc != PH_OK) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        ph_err_set(err, PH_EINVAL, "replication: batch %llu: %s", (unsigned long long)seq, msg);
        return -1;
    }
    pthread_mutex_lock(&r->mu);
    r->applying = &b.cmds[0];
    r->applying_n = b.n;
    r->applying_seq = seq;
    pthread_mutex_unlock(&r->mu);
    rc = ph_cmd_batch_apply(r->store, &b, err);
    pthread_mutex_lock(&r->mu);
    r->applying = NULL;
    pthread_mutex_unlock(&r->mu);
    ph_cmd_batch_free(&b);
    if (rc == PH_OK) {
        atomic_store(&r->applied, seq);
        if (atomic_load(&r->stream_last) < seq)
            atomic_store(&r->stream_last, seq);
        return 1;
    }
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s", err->msg);
    ph_err_set(err, rc, "replication: batch %llu: %s", (unsigned long long)seq, msg);
    return rc == PH_EUNAVAIL || rc == PH_ESHUTDOWN ? 0 : -1;
}

static int stopping(ph_repl *r)
{
    pthread_mutex_lock(&r->mu);
    int s = r->stopping;
    pthread_mutex_unlock(&r->mu);
    return s;
}

static void mark_broken(ph_repl *r, const ph_err *err)
{
    pthread_mutex_lock(&r->mu);
    int was = r->broken;
    r->broken = 1;
    pthread_mutex_unlock(&r->mu);
    if (!was)
        ph_log(r->log, PH_LOG_ERROR, NULL, "repl.cannot_apply",
               "node=%s detail=\"%s\" effect=\"this node stops following the stream: it serves "
               "reads as they are and never leads\"",
               r->node, err->msg);
}

/* Applies what follows the store's sequence, up to `upto` (0 = whatever is
 * there, at most `max` batches). PH_OK when upto was reached (or, for 0, the
 * stream had nothing more); PH_EUNAVAIL (not yet), PH_EINVAL (broken). */
static int apply_upto(ph_repl *r, uint64_t upto, size_t max, size_t *done, ph_err *err)
{
    *done = 0;
    for (;;) {
        uint64_t have = ph_store_repl_seq(r->store);
        atomic_store(&r->applied, have);
        if ((upto && have >= upto) || *done >= max || stopping(r))
            return upto && have < upto ? PH_EUNAVAIL : PH_OK;
        int k = apply_one(r, have + 1, err);
        if (k < 0) {
            mark_broken(r, err);
            return PH_EINVAL;
        }
        if (k == 0)
            return upto ? ph_err_set(err, PH_EUNAVAIL,
                                     "replication: batch %llu of the stream is not readable yet",
                                     (unsigned long long)have + 1)
                        : PH_OK;
        (*done)++;
    }
}

/* The stream's last sequence, asked now. 0 with err on failure. */
static int stream_last(ph_repl *r, uint64_t *last, ph_err *err)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    char why[256];
    natsStatus s = js_GetStreamInfo(&si, r->js, r->stream, NULL, &jerr);
    if (s != NATS_OK)
        return ph_err_set(err, PH_EUNAVAIL, "replication: stream %s: %s", r->stream,
                          nats_why(s, jerr, why, sizeof why));
    *last = si->State.LastSeq;
    uint64_t first = si->State.Msgs ? si->State.FirstSeq : *last + 1;
    jsStreamInfo_Destroy(si);
    atomic_store(&r->stream_last, *last);
    uint64_t have = ph_store_repl_seq(r->store);
    if (have + 1 < first && have < *last)
        return ph_err_set(err, PH_EINVAL,
                          "replication: stream %s starts at batch %llu, this store holds up to "
                          "%llu: bootstrap this node from a snapshot (docs/replication.md)",
                          r->stream, (unsigned long long)first, (unsigned long long)have);
    return PH_OK;
}

/* ---- the lease ------------------------------------------------------------ */

static void lease_value(ph_repl *r, char *buf, size_t n)
{
    snprintf(buf, n, "%s %s", r->node, r->url);
}

/* Renews the lease held at lease_rev. A refusal by revision means another
 * node holds it now: step down at once; silence keeps the lease until it
 * runs out (the hook stops writes at lease_until on its own). */
static void lease_renew(ph_repl *r)
{
    char val[700], why[256];
    lease_value(r, val, sizeof val);
    pthread_mutex_lock(&r->mu);
    uint64_t rev = r->lease_rev;
    pthread_mutex_unlock(&r->mu);
    int64_t t0 = mono_ms();
    uint64_t nrev = 0;
    natsStatus s = kvStore_Update(&nrev, r->kv, LEASE_KEY, val, (int)strlen(val), rev);
    if (s == NATS_OK) {
        pthread_mutex_lock(&r->mu);
        r->lease_rev = nrev;
        /* half the TTL from before the request: the bucket forgets the entry a
         * full TTL after the server stored it, later than that */
        r->lease_until = t0 + r->ttl_ms / 2;
        snprintf(r->leader_url, sizeof r->leader_url, "%s", r->url);
        pthread_mutex_unlock(&r->mu);
        return;
    }
    /* Only a refusal by revision says the lease is gone: then it is another
     * node's, or free after it expired. Silence (a NATS server restarting, the
     * bucket electing a leader) keeps the role: the hook and the send gate
     * already stop at lease_until, and a later renewal that the revision still
     * admits proves nobody led in between. */
    const char *last = nats_GetLastError(NULL);
    if (s == NATS_NOT_FOUND || (last && strstr(last, "wrong last sequence")))
        set_role(r, PH_REPL_STANDBY, "the lease is another node's now, or expired");
    else
        ph_log(r->log, PH_LOG_WARN, NULL, "repl.renew_failed",
               "node=%s detail=\"%s\" effect=\"writes stop when the lease runs out; renewing "
               "again\"",
               r->node, nats_why(s, 0, why, sizeof why));
}

/* A standby's look at the lease: learns the leader's URL, takes the lease
 * when nobody holds it (or it is this node's, from before a restart). */
static void lease_check(ph_repl *r)
{
    char val[700];
    lease_value(r, val, sizeof val);
    kvEntry *e = NULL;
    uint64_t rev = 0;
    int64_t t0 = mono_ms();
    natsStatus s = kvStore_Get(&e, r->kv, LEASE_KEY);
    if (s == NATS_OK) {
        const char *v = kvEntry_ValueString(e);
        const char *sp = v ? strchr(v, ' ') : NULL;
        /* this node's from before a restart, or released by a leader that stopped */
        int take = v && (!strcmp(v, val) || !v[0]);
        uint64_t erev = kvEntry_Revision(e);
        pthread_mutex_lock(&r->mu);
        snprintf(r->leader_url, sizeof r->leader_url, "%s", sp ? sp + 1 : "");
        pthread_mutex_unlock(&r->mu);
        kvEntry_Destroy(e);
        if (!take)
            return;
        s = kvStore_Update(&rev, r->kv, LEASE_KEY, val, (int)strlen(val), erev);
    } else if (s == NATS_NOT_FOUND) {
        s = kvStore_Create(&rev, r->kv, LEASE_KEY, val, (int)strlen(val));
    } else {
        return; /* NATS unreachable: nothing to learn, nothing to take */
    }
    if (s != NATS_OK)
        return; /* another node was faster */
    pthread_mutex_lock(&r->mu);
    r->lease_rev = rev;
    r->lease_until = t0 + r->ttl_ms / 2;
    snprintf(r->leader_url, sizeof r->leader_url, "%s", r->url);
    pthread_mutex_unlock(&r->mu);
    set_role(r, PH_REPL_PROMOTING, "the lease was free");
}

/* PROMOTING: the stream applied to its end, then the epoch marker published
 * with that end as the expected last sequence. A leader that wrote after we
 * looked makes the marker fail: look again. */
static void take_over(ph_repl *r)
{
    ph_err err = {0};
    uint64_t last = 0;
    size_t done;
    if (stream_last(r, &last, &err) != PH_OK) {
        if (err.code == PH_EINVAL)
            mark_broken(r, &err);
        return;
    }
    /* in steps, so the thread renews the lease between them on a long way */
    if (apply_upto(r, last, TAKE_OVER_STEP, &done, &err) != PH_OK)
        return;
    char fields[300];
    snprintf(fields, sizeof fields, "{\"node\":\"%s\",\"after_seq\":%llu}", r->node,
             (unsigned long long)last);
    ph_cmd c = {.type = PH_CMD_NOTE_EVENT, .now = ph_now_ms()};
    c.in.note.name = "repl.leader";
    c.in.note.fields = fields;
    pthread_mutex_lock(&r->mu);
    int still = r->role == PH_REPL_PROMOTING;
    r->marker = still ? &c : NULL;
    pthread_mutex_unlock(&r->mu);
    if (!still)
        return;
    int rc = ph_store_exec(r->store, &c);
    pthread_mutex_lock(&r->mu);
    r->marker = NULL;
    still = r->role == PH_REPL_PROMOTING;
    pthread_mutex_unlock(&r->mu);
    ph_cmd_clear(&c);
    if (rc == PH_OK && still) {
        atomic_store(&r->applied, ph_store_repl_seq(r->store));
        set_role(r, PH_REPL_LEADER, "the stream applied to its end and the epoch marker taken");
    }
}

/* ---- the thread ----------------------------------------------------------- */

static void wait_ms(ph_repl *r, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&r->mu);
    if (!r->stopping)
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    pthread_mutex_unlock(&r->mu);
}

static void *repl_main(void *arg)
{
    ph_repl *r = arg;
    int64_t next_lease = 0, period = r->ttl_ms / 4 > 0 ? r->ttl_ms / 4 : 1;
    while (!stopping(r)) {
        pthread_mutex_lock(&r->mu);
        int role = r->role, broken = r->broken;
        pthread_mutex_unlock(&r->mu);
        int64_t now = mono_ms();
        if (role != PH_REPL_STANDBY) {
            if (now >= next_lease) {
                lease_renew(r);
                next_lease = now + period;
            }
            /* retention (retain.h): report, and trim as the leader; after a renewal */
            ph_retain_tick(&r->retain, r->js, r->store, ph_repl_role(r) == PH_REPL_LEADER);
            if (role == PH_REPL_PROMOTING && ph_repl_role(r) == PH_REPL_PROMOTING) {
                take_over(r);
                if (ph_repl_role(r) == PH_REPL_PROMOTING)
                    wait_ms(r, IDLE_WAIT_MS); /* the stream or the writer: again soon */
                continue;
            }
            int64_t left = next_lease - mono_ms();
            if (left > 0 && ph_repl_role(r) == PH_REPL_LEADER)
                wait_ms(r, left);
            continue;
        }
        ph_err err = {0};
        size_t done = 0;
        if (!broken)
            apply_upto(r, 0, 256, &done, &err);
        ph_retain_tick(&r->retain, r->js, r->store, 0); /* a standby's report (retain.h) */
        if (!broken && mono_ms() >= next_lease) {
            uint64_t last;
            ph_err e = {0};
            stream_last(r, &last, &e); /* what GET /v1/health reports as the stream's end */
            lease_check(r);
            next_lease = mono_ms() + period;
        }
        if (!done && ph_repl_role(r) == PH_REPL_STANDBY)
            wait_ms(r, broken ? period : IDLE_WAIT_MS);
    }
    return NULL;
}

int ph_repl_start(ph_repl *r, ph_store *s, ph_err *err)
{
    assert(!r->started);
    r->store = s;
    const char *uid = ph_store_uid(s);
    if (r->have_uid && strcmp(uid, r->uid))
        return ph_err_set(err, PH_EINVAL,
                          "replication: this store has uid %s, the stream %s holds the batches "
                          "of store %s: start this node on an empty data_dir (or a snapshot of "
                          "the leader's)",
                          uid, r->stream, r->uid);
    snprintf(r->uid, sizeof r->uid, "%s", uid);
    r->have_uid = 1;
    /* reported before catching up (retain.h): the leader trims nothing this
     * node still has to apply, from its first batch on */
    ph_retain_tick(&r->retain, r->js, s, 0);
    uint64_t last = 0;
    size_t done;
    int rc = stream_last(r, &last, err);
    if (rc == PH_OK)
        rc = apply_upto(r, last, SIZE_MAX, &done, err);
    if (rc != PH_OK)
        return rc;
    ph_log(r->log, PH_LOG_INFO, NULL, "repl.caught_up", "node=%s stream=%s applied=%llu", r->node,
           r->stream, (unsigned long long)ph_store_repl_seq(s));
    /* one look at the lease now, so a node that finds it free starts as leader */
    lease_check(r);
    for (int i = 0; i < 100 && ph_repl_role(r) == PH_REPL_PROMOTING; i++)
        take_over(r);
    if (pthread_create(&r->thread, NULL, repl_main, r))
        return ph_err_set(err, PH_ENOMEM, "replication: cannot start its thread");
    r->started = 1;
    return PH_OK;
}

/* ---- queries and the end ------------------------------------------------- */

int ph_repl_may_send(void *arg)
{
    ph_repl *r = arg;
    pthread_mutex_lock(&r->mu);
    int ok = r->role == PH_REPL_LEADER && mono_ms() < r->lease_until;
    pthread_mutex_unlock(&r->mu);
    return ok;
}

uint64_t ph_repl_epoch(ph_repl *r)
{
    pthread_mutex_lock(&r->mu);
    uint64_t e = r->epoch;
    pthread_mutex_unlock(&r->mu);
    return e;
}

int ph_repl_role(ph_repl *r)
{
    pthread_mutex_lock(&r->mu);
    int role = r->role;
    pthread_mutex_unlock(&r->mu);
    return role;
}

void ph_repl_leader_url(ph_repl *r, char *buf, size_t n)
{
    pthread_mutex_lock(&r->mu);
    /* this node, unless it may write now: a lapsed lease names nobody yet */
    int self = !strcmp(r->leader_url, r->url);
    int valid = r->role == PH_REPL_LEADER && mono_ms() < r->lease_until;
    snprintf(buf, n, "%s", self && !valid ? "" : r->leader_url);
    pthread_mutex_unlock(&r->mu);
}

void ph_repl_seqs(ph_repl *r, uint64_t *applied, uint64_t *last)
{
    /* the store's own word while it is ours (a leader commits without us) */
    *applied = r->store ? ph_store_repl_seq(r->store) : atomic_load(&r->applied);
    *last = atomic_load(&r->stream_last);
    if (*last < *applied)
        *last = *applied;
}

void ph_repl_stop(ph_repl *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stopping = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (r->started)
        pthread_join(r->thread, NULL);
    r->started = 0;
    /* the role stays: the writer's last commands (the I/O engine's ends at a
     * stop) are still published while the lease lasts, refused after */
    r->store = NULL;
}

/* A leader that stops hands the lease on at once: its store is closed, it
 * writes nothing more, so the value is emptied (by revision: only if it is
 * still ours) and a standby takes it without waiting for the TTL. */
static void lease_release(ph_repl *r)
{
    pthread_mutex_lock(&r->mu);
    int held = r->role != PH_REPL_STANDBY && r->lease_rev;
    uint64_t rev = r->lease_rev;
    pthread_mutex_unlock(&r->mu);
    uint64_t nrev = 0;
    if (held && r->kv && kvStore_Update(&nrev, r->kv, LEASE_KEY, "", 0, rev) == NATS_OK)
        ph_log(r->log, PH_LOG_INFO, NULL, "repl.lease_released", "node=%s", r->node);
}

void ph_repl_free(ph_repl *r)
{
    if (!r)
        return;
    ph_repl_stop(r);
    lease_release(r);
    ph_retain_free(&r->retain);
    kvStore_Destroy(r->kv);
    jsCtx_Destroy(r->js);
    if (r->nc) {
        natsConnection_Close(r->nc);
        natsConnection_Destroy(r->nc);
    }
    for (int i = 0; i < r->nservers; i++)
        free(r->servers[i]);
    free(r->servers);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
