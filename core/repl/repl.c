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
#define HDR_PART       "Ph-Part" /* "i/k": part i of a batch in k stream messages */
#define PART_ROOM      4096      /* headers and protocol under max_payload */
#define READ_WAIT_MS   100 /* a standby's longest wait for the consumer: how soon it sees a stop */
#define TAKE_OVER_STEP 256 /* messages a new leader reads between two renewals at most */

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
    kvStore *kv; /* made at create, or by the thread once NATS answers (then read after join) */
    char uid[9]; /* the stream's store uid, then (start) this store's */
    int have_uid;
    ph_store *store; /* borrowed from start to stop */
    /* the reader: the replicator thread's own (ph_repl_start's before it runs) */
    natsSubscription *sub; /* the ordered consumer; NULL when not reading (a leader) */
    uint64_t pos;          /* the last stream sequence read through sub */
    uint64_t stall_at;     /* where the reader stood at the last look at the stream's end */
    ph_repl_parts parts;   /* the parts of a batch read so far */
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
    uint64_t applying_prev, applying_seq; /* the store's sequence before it, the batch's last */
    /* parts of a batch never completed follow the store's gap_from in the
     * stream, up to gap_to: a new leader's marker expects gap_to */
    uint64_t gap_from, gap_to;
    int online; /* the stream and the bucket were reached (at create, or later by the thread) */
    const ph_cmd *marker; /* the epoch marker being published while PROMOTING */
    int broken;           /* the stream cannot be applied here: stop trying, say why once */
    uint64_t epoch;       /* how many times this node became the leader */
    /* any thread */
    _Atomic uint64_t applied, stream_last;
    /* staleness (ph_repl_staleness_ms): the monotonic ms at which this node
     * last held every batch the stream held (0 = never since it started). A
     * look at the stream's end made at probe_at answered probe_last: once the
     * reader passed probe_last, the node held all of the stream as of
     * probe_at (the stream's end then was at most probe_last). probe_* are
     * the replicator's thread's (or the main thread's before it starts). */
    _Atomic int64_t fresh_at;
    int64_t probe_at;
    uint64_t probe_last;
    /* retention by snapshots (retain.h): this node's reports, the leader's
     * trims; the replicator's thread only after create */
    ph_retain retain;
    atomic_int
        reconnected; /* libnats reconnected: the reader's consumer may be gone with its server */
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

/* libnats's thread, once a connection that could not be made at create is
 * made: the replicator's thread finishes what create could not. */
static void on_connected(natsConnection *nc, void *arg)
{
    (void)nc;
    ph_repl *r = arg;
    atomic_store(&r->reconnected, 1);
    pthread_mutex_lock(&r->mu);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* The server list for a message: the first, and how many more. A URL's
 * user, password or token (nats://user:pass@host, nats://token@host) is left
 * out: these messages reach logs and every client's 503 (design.md rule 3). */
static const char *servers_text(const ph_repl *r, char *buf, size_t n)
{
    const char *u = r->servers[0], *host = strstr(u, "://");
    host = host ? host + 3 : u;
    size_t auth = strcspn(host, "/?#"); /* the authority: [userinfo@]host[:port] */
    const char *at = NULL;
    for (const char *p = host; p < host + auth; p++)
        if (*p == '@')
            at = p;
    snprintf(buf, n, "%.*s%s%s", (int)(host - u), u, at ? at + 1 : host,
             r->nservers > 1 ? " (and the others)" : "");
    return buf;
}

/* Connects, or (no server answers) leaves libnats trying in the background
 * (*later = 1): a node whose store exists starts without NATS. */
static int connect_nats(ph_repl *r, int *later, ph_err *err)
{
    natsOptions *no = NULL;
    char why[256], where[600];
    *later = 0;
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
        s = natsOptions_SetRetryOnFailedConnect(no, true, on_connected, r);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(no, on_connected, r);
    if (s == NATS_OK)
        s = natsConnection_Connect(&r->nc, no);
    natsOptions_Destroy(no);
    if (s == NATS_NOT_YET_CONNECTED && r->nc) {
        *later = 1;
        s = NATS_OK;
    }
    if (s != NATS_OK)
        return ph_err_set(err, PH_EUNAVAIL, "replication: cannot reach NATS at %s: %s",
                          servers_text(r, where, sizeof where), nats_why(s, 0, why, sizeof why));
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
    int later = 0, rc = copy_cfg(r, o->cfg, err);
    if (rc == PH_OK)
        rc = connect_nats(r, &later, err);
    if (rc == PH_OK && !later)
        rc = ensure_stream(r, err);
    if (rc == PH_OK && !later)
        rc = ensure_bucket(r, err);
    ph_retain_init(&r->retain, o->cfg, o->snaps, o->log); /* retention by snapshots */
    if (rc == PH_OK && !later)
        rc = ph_retain_open(&r->retain, r->js, err);
    /* connected, but JetStream does not answer yet (servers starting again,
     * electing): the same as no server, tried again by the thread */
    if (rc == PH_EUNAVAIL && r->nc && !later) {
        later = 1;
        r->have_uid = 0;
        rc = PH_OK;
    }
    if (rc != PH_OK) {
        ph_repl_free(r);
        return rc;
    }
    if (later) {
        char where[600];
        ph_log(r->log, PH_LOG_WARN, NULL, "repl.no_nats",
               "node=%s urls=\"%s\" detail=\"%s\" effect=\"this node starts as a standby that "
               "serves reads and refuses writes; it keeps trying to connect\"",
               r->node, servers_text(r, where, sizeof where),
               err->msg[0] ? err->msg : "no server answers");
        memset(err, 0, sizeof *err);
    }
    r->online = !later;
    *out = r;
    return PH_OK;
}

const char *ph_repl_uid(const ph_repl *r)
{
    return r->have_uid ? r->uid : NULL;
}

int ph_repl_online(ph_repl *r)
{
    pthread_mutex_lock(&r->mu);
    int on = r->online;
    pthread_mutex_unlock(&r->mu);
    return on && natsConnection_Status(r->nc) == NATS_CONN_STATUS_CONNECTED;
}

int ph_repl_needs_nats(ph_repl *r, ph_err *err)
{
    char where[600];
    pthread_mutex_lock(&r->mu);
    int on = r->online;
    pthread_mutex_unlock(&r->mu);
    if (on)
        return PH_OK;
    return ph_err_set(err, PH_EUNAVAIL,
                      "replication: no NATS server reachable at %s, and this node's store is "
                      "new: it cannot learn the stream's store uid; start it once NATS answers",
                      servers_text(r, where, sizeof where));
}

/* ---- the writer's hook --------------------------------------------------- */

static size_t batch_len(const ph_cmd *c)
{
    size_t n = 0;
    for (; c; c = c->next)
        n++;
    return n;
}

/* The leader lost its footing: it catches up from the stream before it
 * writes again (the stream holds what this store lacks, or may hold this
 * batch: no answer). */
static void resync(ph_repl *r, uint64_t after, const char *why)
{
    pthread_mutex_lock(&r->mu);
    int was = r->role == PH_REPL_LEADER;
    if (was)
        r->role = PH_REPL_PROMOTING;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (was)
        ph_log(r->log, PH_LOG_WARN, NULL, "repl.resync",
               "node=%s after=%llu detail=\"%s\" effect=\"writes wait until this leader applied "
               "the stream to its end\"",
               r->node, (unsigned long long)after, why);
}

/* The leader's publish of one batch after the stream's sequence `expect`,
 * fenced by the stream: one message, or parts of at most max_payload each
 * (docs/replication.md, "Large batches"), each fenced by the one before.
 * *seq = the sequence of its last message. */
static int publish(ph_repl *r, const ph_cmd *batch, uint64_t expect, uint64_t *seq, ph_err *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    ph_err e = {0};
    char why[256], num[24], part[48];
    if (ph_cmd_batch_encode(batch, &buf, &len, &e) != PH_OK)
        return ph_err_set(err, PH_EUNAVAIL, "replication: not stored: %s", e.msg);
    int64_t max = natsConnection_GetMaxPayload(r->nc);
    size_t room = max > 2 * PART_ROOM ? (size_t)max - PART_ROOM : len;
    if (room > INT32_MAX)
        room = INT32_MAX;
    size_t k = len ? (len + room - 1) / room : 1;
    if (k > 1)
        ph_log(r->log, PH_LOG_INFO, NULL, "repl.parts",
               "node=%s bytes=%zu parts=%zu max_payload=%lld", r->node, len, k, (long long)max);
    natsStatus s = NATS_OK;
    jsErrCode jerr = 0;
    uint64_t got = 0;
    size_t i = 0;
    for (; i < k && s == NATS_OK; i++) {
        size_t off = i * room, n = len - off < room ? len - off : room;
        /* a part after the lease ran out would be a write of a node that may
         * no longer lead: the parts before it stay uncompleted (ignored) */
        if (i > 0 && !ph_repl_may_send(r)) {
            free(buf);
            resync(r, expect, "the lease ran out between two parts of a batch");
            return ph_err_set(err, PH_EUNAVAIL,
                              "replication: not stored: this node's lease as leader ran out "
                              "while it published a large batch");
        }
        natsMsg *m = NULL;
        jsPubAck *pa = NULL;
        jerr = 0;
        snprintf(num, sizeof num, "%llu", (unsigned long long)expect);
        s = natsMsg_Create(&m, r->subject, NULL, (const char *)buf + off, (int)n);
        /* the header itself, not jsPubOptions.ExpectLastSeq, which cannot say 0:
         * the first batch of a stream is fenced too */
        if (s == NATS_OK)
            s = natsMsgHeader_Set(m, HDR_EXPECT, num);
        if (s == NATS_OK)
            s = natsMsgHeader_Set(m, HDR_UID, r->uid);
        if (s == NATS_OK && k > 1) {
            snprintf(part, sizeof part, "%zu/%zu", i + 1, k);
            s = natsMsgHeader_Set(m, HDR_PART, part);
        }
        /* the stream's first message says whether the history starts from an
         * empty store: one that held data (a single node turned leader) cannot
         * be followed from an empty store, only from a copy of it (read_one) */
        if (s == NATS_OK && expect == 0)
            s = natsMsgHeader_Set(m, HDR_GENESIS, ph_store_event_last(r->store) ? "data" : "empty");
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = r->ack_wait_ms;
        if (s == NATS_OK)
            s = js_PublishMsg(&pa, r->js, m, &po, &jerr);
        got = s == NATS_OK && pa ? pa->Sequence : 0;
        jsPubAck_Destroy(pa);
        natsMsg_Destroy(m);
        if (s == NATS_OK && got != expect + 1)
            break;
        if (s == NATS_OK)
            expect = got;
    }
    free(buf);
    if (s == NATS_OK && i == k && got == expect) {
        atomic_store(&r->stream_last, got);
        *seq = got;
        return PH_OK;
    }
    resync(r, expect,
           s == NATS_OK ? "the stream put the batch elsewhere"
                        : nats_why(s, jerr, why, sizeof why));
    if (s == NATS_OK)
        return ph_err_set(err, PH_EUNAVAIL,
                          "replication: not stored: the stream put the batch at %llu, not %llu",
                          (unsigned long long)got, (unsigned long long)expect + 1);
    if (jerr == JSStreamWrongLastSequenceErr)
        return ph_err_set(err, PH_EUNAVAIL,
                          "replication: not stored: the stream holds batches this node has not "
                          "applied (another leader wrote after %llu); this node catches up",
                          (unsigned long long)expect);
    return ph_err_set(err, PH_EUNAVAIL,
                      "replication: not stored: the stream did not take the batch (%s); if it "
                      "did after all, the batch is applied from the stream: retry with the same "
                      "order id",
                      nats_why(s, jerr, why, sizeof why));
}

int ph_repl_hook(void *arg, const ph_cmd *batch, uint64_t prev, uint64_t *seq, ph_err *err)
{
    ph_repl *r = arg;
    pthread_mutex_lock(&r->mu);
    int role = r->role, from_stream = batch == r->applying, marker = batch == r->marker;
    int online = r->online;
    size_t want_n = r->applying_n;
    uint64_t want_prev = r->applying_prev, last = r->applying_seq;
    /* parts never completed after this store's last batch: the stream is past them */
    uint64_t expect = prev == r->gap_from ? r->gap_to : prev;
    int64_t until = r->lease_until;
    char leader[sizeof r->leader_url];
    snprintf(leader, sizeof leader, "%s", r->leader_url);
    pthread_mutex_unlock(&r->mu);
    if (from_stream) {
        /* exactly the stream's batch, where the reader found this store: nothing merged in */
        if (batch_len(batch) == want_n && prev == want_prev && last > prev) {
            *seq = last;
            return PH_OK;
        }
        return ph_err_set(err, PH_EUNAVAIL,
                          "replication: not applied: batch %llu of the stream met this store "
                          "at %llu (not %llu) with %zu commands for %zu",
                          (unsigned long long)last, (unsigned long long)prev,
                          (unsigned long long)want_prev, batch_len(batch), want_n);
    }
    if (!online) {
        char where[600];
        return ph_err_set(err, PH_EUNAVAIL,
                          "replication: not stored: no NATS server is reachable (%s): this node "
                          "serves reads only until one answers",
                          servers_text(r, where, sizeof where));
    }
    if (role == PH_REPL_STANDBY || (role == PH_REPL_PROMOTING && !marker))
        return ph_err_set(err, PH_EUNAVAIL, "replication: not stored: this node is %s%s%s",
                          role == PH_REPL_STANDBY ? "a standby" : "taking over as leader",
                          leader[0] ? "; the leader is at " : "", leader[0] ? leader : "");
    if (mono_ms() >= until)
        return ph_err_set(err, PH_EUNAVAIL,
                          "replication: not stored: this node's lease as leader was not "
                          "renewed in time");
    return publish(r, batch, expect, seq, err);
}

/* ---- the parts of a large batch ------------------------------------------ */

void ph_repl_parts_clear(ph_repl_parts *p)
{
    free(p->buf);
    memset(p, 0, sizeof *p);
}

/* "i/k" with 1 <= i <= k and k >= 2, nothing else. */
static int part_parse(const char *h, unsigned *i, unsigned *k)
{
    char *end;
    unsigned long a = strtoul(h, &end, 10);
    if (end == h || *end != '/' || !(h[0] >= '0' && h[0] <= '9'))
        return -1;
    const char *b = end + 1;
    unsigned long c = strtoul(b, &end, 10);
    if (end == b || *end || !(b[0] >= '0' && b[0] <= '9') || c < 2 || c > 1000000 || a < 1 || a > c)
        return -1;
    *i = (unsigned)a;
    *k = (unsigned)c;
    return 0;
}

int ph_repl_parts_feed(ph_repl_parts *p, uint64_t seq, const char *part, const void *data,
                       size_t len, const uint8_t **out, size_t *n, unsigned *dropped)
{
    unsigned i = 0, k = 0;
    *dropped = 0;
    if (part && part_parse(part, &i, &k))
        return PH_EINVAL;
    int cont = part && i > 1 && p->next == i && p->of == k && seq == p->last + 1;
    if (!cont && p->next) {
        /* the message does not continue the held parts: their leader never
         * published the last one, so the batch was never committed anywhere */
        *dropped = p->next - 1;
        p->next = p->of = 0;
        p->len = 0;
    }
    if (!part) {
        *out = data;
        *n = len;
        return PH_REPL_PARTS_WHOLE;
    }
    if (i > 1 && !cont) {
        (*dropped)++; /* a part without the ones before it: ignored the same way */
        return PH_REPL_PARTS_HELD;
    }
    if (p->len + len > p->cap) {
        size_t cap = p->cap ? p->cap : 1 << 16;
        while (cap < p->len + len)
            cap *= 2;
        uint8_t *nb = realloc(p->buf, cap);
        if (!nb)
            return PH_ENOMEM;
        p->buf = nb;
        p->cap = cap;
    }
    memcpy(p->buf + p->len, data, len);
    p->len += len;
    p->last = seq;
    if (i == 1)
        p->first = seq;
    p->of = k;
    p->next = i + 1;
    if (i < k)
        return PH_REPL_PARTS_HELD;
    p->next = p->of = 0; /* whole: the caller reads buf[0..len) before the next feed */
    *out = p->buf;
    *n = p->len;
    p->len = 0;
    return PH_REPL_PARTS_WHOLE;
}

/* ---- applying the stream ------------------------------------------------- */

int ph_repl_may_send(void *arg);

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

/* Stops reading (a leader, an error, the end): the consumer is gone and the
 * parts held with it; the next read starts again after the store's sequence. */
static void reader_close(ph_repl *r)
{
    if (r->sub) {
        natsSubscription_Unsubscribe(r->sub); /* the ephemeral consumer goes with it */
        natsSubscription_Destroy(r->sub);
        r->sub = NULL;
    }
    ph_repl_parts_clear(&r->parts);
    pthread_mutex_lock(&r->mu);
    r->gap_from = r->gap_to = 0; /* known again once read again */
    pthread_mutex_unlock(&r->mu);
}

/* The stream sequence this node has read up to: the store's, or further on
 * over parts held or ignored. */
static uint64_t reader_pos(ph_repl *r)
{
    uint64_t have = ph_store_repl_seq(r->store);
    return r->sub && r->pos > have ? r->pos : have;
}

/* An ordered consumer from the store's sequence + 1: the server pushes the
 * stream in order (no request per batch), and libnats makes it again from
 * where it was when a message went missing. */
static int reader_open(ph_repl *r, ph_err *err)
{
    uint64_t have = ph_store_repl_seq(r->store);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = r->stream;
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = have + 1;
    jsErrCode jerr = 0;
    char why[256];
    natsStatus s = js_SubscribeSync(&r->sub, r->js, r->subject, NULL, &so, &jerr);
    if (s != NATS_OK) {
        r->sub = NULL;
        return ph_err_set(err, PH_EUNAVAIL, "replication: stream %s: a consumer from %llu: %s",
                          r->stream, (unsigned long long)have + 1,
                          nats_why(s, jerr, why, sizeof why));
    }
    /* a batch may be a message of max_payload: room for a few of them */
    natsSubscription_SetPendingLimits(r->sub, 65536, 256 * 1024 * 1024);
    r->pos = have;
    ph_repl_parts_clear(&r->parts);
    return PH_OK;
}

/* What the reader knows of parts never completed after this store's batch
 * (ph_repl_hook: a new leader's marker expects the stream's sequence). */
static void reader_note_gap(ph_repl *r)
{
    uint64_t have = ph_store_repl_seq(r->store);
    pthread_mutex_lock(&r->mu);
    r->gap_from = have;
    r->gap_to = r->pos > have ? r->pos : have;
    pthread_mutex_unlock(&r->mu);
}

/* Applies one decoded batch that ends at stream sequence seq. */
static int apply_batch(ph_repl *r, const uint8_t *p, size_t n, uint64_t seq, ph_err *err)
{
    ph_cmd_batch b;
    int rc = ph_cmd_batch_decode(p, n, &b, err);
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
    r->applying_prev = ph_store_repl_seq(r->store);
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
    /* a batch that could not be committed here (the disk or the map full)
     * changed nothing: this node is behind, not diverged; it reads the batch
     * again once the store writes (a full disk that stays full keeps it
     * behind, as GET /v1/health says, rather than broken for good) */
    ph_store_health h;
    ph_store_health_get(r->store, &h);
    if (h.condition != PH_STORE_WRITABLE && ph_store_repl_seq(r->store) == r->applying_prev) {
        ph_log(r->log, PH_LOG_WARN, NULL, "repl.apply_failed",
               "node=%s batch=%llu detail=\"%s\" effect=\"nothing committed; this node reads the "
               "batch again\"",
               r->node, (unsigned long long)seq, h.detail);
        return 0;
    }
    return rc == PH_EUNAVAIL || rc == PH_ESHUTDOWN ? 0 : -1;
}

/* The reader passed `pos`: the node holds the stream as of the last look
 * whose end it reached (see fresh_at). */
static void fresh_note(ph_repl *r, uint64_t pos)
{
    if (r->probe_at && pos >= r->probe_last) {
        if (atomic_load(&r->fresh_at) < r->probe_at)
            atomic_store(&r->fresh_at, r->probe_at);
        r->probe_at = 0;
    }
}

/* Reads the stream's next message through the consumer, waiting up to
 * wait_ms, and applies it (a whole batch, or the last part of one) or holds
 * it (a part before the last). 1 read one, 0 nothing yet (or not applied for
 * now: read again from the store's sequence), -1 this store cannot follow
 * the stream (err says why). */
static int read_one(ph_repl *r, int64_t wait_ms, ph_err *err)
{
    /* an ordered consumer lives on one server: after a reconnect it may be
     * gone with it, and nothing would come; make it again from the store */
    if (atomic_exchange(&r->reconnected, 0))
        reader_close(r);
    if (!r->sub && reader_open(r, err) != PH_OK)
        return 0;
    natsMsg *m = NULL;
    char why[256];
    natsStatus s = natsSubscription_NextMsg(&m, r->sub, wait_ms > 0 ? wait_ms : 1);
    if (s == NATS_TIMEOUT)
        return 0;
    jsMsgMetaData *meta = NULL;
    if (s == NATS_OK)
        s = natsMsg_GetMetaData(&meta, m);
    if (s != NATS_OK) {
        ph_err_set(err, PH_EUNAVAIL, "replication: reading stream %s: %s", r->stream,
                   nats_why(s, 0, why, sizeof why));
        natsMsg_Destroy(m);
        reader_close(r);
        return 0;
    }
    uint64_t seq = meta->Sequence.Stream;
    jsMsgMetaData_Destroy(meta);
    if (seq != r->pos + 1) {
        /* not the next one (the stream trimmed past this store is caught by
         * stream_last): read again from the store's sequence */
        ph_err_set(err, PH_EUNAVAIL, "replication: stream %s: %llu read after %llu", r->stream,
                   (unsigned long long)seq, (unsigned long long)r->pos);
        natsMsg_Destroy(m);
        reader_close(r);
        return 0;
    }
    const char *uid = NULL, *genesis = NULL, *part = NULL;
    if (natsMsgHeader_Get(m, HDR_UID, &uid) != NATS_OK || !uid || strcmp(uid, r->uid)) {
        ph_err_set(err, PH_EINVAL,
                   "replication: batch %llu of stream %s belongs to store %s, this one is %s: "
                   "start this node on an empty data_dir (or a snapshot of the leader's)",
                   (unsigned long long)seq, r->stream, uid ? uid : "(none)", r->uid);
        natsMsg_Destroy(m);
        return -1;
    }
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
    if (natsMsgHeader_Get(m, HDR_PART, &part) != NATS_OK)
        part = NULL;
    const uint8_t *whole = NULL;
    size_t n = 0;
    unsigned dropped = 0;
    int k = ph_repl_parts_feed(&r->parts, seq, part, natsMsg_GetData(m),
                               (size_t)natsMsg_GetDataLength(m), &whole, &n, &dropped);
    if (dropped)
        ph_log(r->log, PH_LOG_WARN, NULL, "repl.parts_ignored",
               "node=%s parts=%u before=%llu detail=\"a batch whose leader never published its "
               "last part: never committed anywhere\"",
               r->node, dropped, (unsigned long long)seq);
    int rc = 1;
    if (k == PH_EINVAL) {
        ph_err_set(err, PH_EINVAL,
                   "replication: batch %llu of stream %s: a malformed %s header: not a perkhub "
                   "stream",
                   (unsigned long long)seq, r->stream, HDR_PART);
        rc = -1;
    } else if (k == PH_ENOMEM) {
        ph_err_set(err, PH_ENOMEM, "out of memory");
        rc = 0;
    } else if (k == PH_REPL_PARTS_WHOLE) {
        rc = apply_batch(r, whole, n, seq, err);
    }
    natsMsg_Destroy(m);
    if (rc == 1) {
        r->pos = seq;
        reader_note_gap(r);
        fresh_note(r, seq);
    } else {
        reader_close(r); /* read it again from the store's sequence */
    }
    return rc;
}

/* Reads the stream up to `upto` (0 = whatever comes within wait_ms, at most
 * `max` messages). PH_OK when upto was reached (or, for 0, the stream had
 * nothing more); PH_EUNAVAIL (not yet), PH_EINVAL (broken). */
static int apply_upto(ph_repl *r, uint64_t upto, size_t max, size_t *done, ph_err *err)
{
    *done = 0;
    for (;;) {
        uint64_t at = reader_pos(r);
        atomic_store(&r->applied, ph_store_repl_seq(r->store));
        if ((upto && at >= upto) || *done >= max || stopping(r))
            return upto && at < upto ? ph_err_set(err, PH_EUNAVAIL,
                                                  "replication: the stream applied up to %llu "
                                                  "of %llu so far",
                                                  (unsigned long long)at, (unsigned long long)upto)
                                     : PH_OK;
        int k = read_one(r, upto ? r->ack_wait_ms : READ_WAIT_MS, err);
        if (k < 0) {
            mark_broken(r, err);
            reader_close(r);
            return PH_EINVAL;
        }
        if (k == 0)
            return upto ? (err->code ? err->code
                                     : ph_err_set(err, PH_EUNAVAIL,
                                                  "replication: batch %llu of the stream is not "
                                                  "readable yet",
                                                  (unsigned long long)at + 1))
                        : PH_OK;
        (*done)++;
    }
}

/* The stream's last sequence, asked now. 0 with err on failure. */
static int stream_last(ph_repl *r, uint64_t *last, ph_err *err)
{
    int64_t asked = mono_ms(); /* the answer's end was the stream's, or beyond, at this time */
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
    if (!r->probe_at || *last > r->probe_last) { /* an older look not reached yet stays */
        r->probe_at = asked;
        r->probe_last = *last;
    }
    fresh_note(r, reader_pos(r));
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
    /* a list of one: a batch of its own (store.h), which no client write
     * queued meanwhile joins (the hook would publish it with the marker) or
     * precedes (the hook would refuse the marker with it) */
    int rc = ph_store_exec_list(r->store, &c);
    if (rc == PH_OK)
        rc = c.rc;
    pthread_mutex_lock(&r->mu);
    r->marker = NULL;
    still = r->role == PH_REPL_PROMOTING;
    pthread_mutex_unlock(&r->mu);
    ph_cmd_clear(&c);
    if (rc == PH_OK && still) {
        reader_close(r); /* a leader writes the stream; it reads it again if it steps down */
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

/* PH_OK unless the stream (its first batch's uid, when known) belongs to
 * another store than this one, whose uid is `own`: PH_EINVAL, err saying so. */
static int uid_check(const ph_repl *r, const char *own, ph_err *err)
{
    if (!r->have_uid || !strcmp(own, r->uid))
        return PH_OK;
    return ph_err_set(err, PH_EINVAL,
                      "replication: this store has uid %s, the stream %s holds the batches of "
                      "store %s: start this node on an empty data_dir (or a snapshot of the "
                      "leader's)",
                      own, r->stream, r->uid);
}

/* A node started without NATS: once the connection is made, what create
 * could not do (the stream, its store uid against this store's, the bucket).
 * 1 when done. Only the replicator's thread; r->online says it to others. */
static int come_online(ph_repl *r)
{
    if (natsConnection_Status(r->nc) != NATS_CONN_STATUS_CONNECTED)
        return 0;
    ph_err err = {0};
    char own[9];
    snprintf(own, sizeof own, "%s", r->uid); /* this store's, set by ph_repl_start */
    r->have_uid = 0;
    int rc = ensure_stream(r, &err);
    if (rc == PH_OK)
        rc = uid_check(r, own, &err);
    snprintf(r->uid, sizeof r->uid, "%s", own);
    r->have_uid = 1;
    if (rc == PH_OK && !r->kv)
        rc = ensure_bucket(r, &err);
    if (rc == PH_OK && !r->retain.kv)
        rc = ph_retain_open(&r->retain, r->js, &err);
    if (rc == PH_EINVAL) {
        mark_broken(r, &err);
    } else if (rc != PH_OK) {
        ph_log(r->log, PH_LOG_WARN, NULL, "repl.not_online",
               "node=%s detail=\"%s\" effect=\"trying again\"", r->node, err.msg);
        return 0;
    }
    pthread_mutex_lock(&r->mu);
    r->online = 1;
    pthread_mutex_unlock(&r->mu);
    ph_log(r->log, PH_LOG_INFO, NULL, "repl.online", "node=%s stream=%s applied=%llu", r->node,
           r->stream, (unsigned long long)ph_store_repl_seq(r->store));
    if (r->on_change)
        r->on_change(r->arg); /* GET /v1/health says so; the role follows as usual */
    return 1;
}

static void *repl_main(void *arg)
{
    ph_repl *r = arg;
    int64_t next_lease = 0, period = r->ttl_ms / 4 > 0 ? r->ttl_ms / 4 : 1;
    while (!stopping(r)) {
        pthread_mutex_lock(&r->mu);
        int role = r->role, broken = r->broken, online = r->online;
        pthread_mutex_unlock(&r->mu);
        if (!online) {
            if (!come_online(r))
                wait_ms(r, period); /* or sooner: on_connected */
            continue;
        }
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
                    wait_ms(r, 20); /* the stream or the writer: again soon */
                continue;
            }
            int64_t left = next_lease - mono_ms();
            if (left > 0 && ph_repl_role(r) == PH_REPL_LEADER)
                wait_ms(r, left);
            continue;
        }
        ph_err err = {0};
        size_t done = 0;
        /* the consumer's wait is the standby's idle time: a batch is applied as
         * soon as the server pushes it */
        if (!broken)
            apply_upto(r, 0, 256, &done, &err);
        ph_retain_tick(&r->retain, r->js, r->store, 0); /* a standby's report (retain.h) */
        if (!broken && !r->sub)
            wait_ms(r, READ_WAIT_MS); /* no consumer (NATS away): again, not at once */
        if (!broken && mono_ms() >= next_lease) {
            uint64_t last;
            ph_err e = {0};
            /* what GET /v1/health reports as the stream's end; a stream
             * trimmed past this store cannot be followed */
            int rc = stream_last(r, &last, &e);
            if (rc == PH_EINVAL)
                mark_broken(r, &e);
            /* the stream is ahead and nothing came since the last look: the
             * consumer is stuck (its server gone unnoticed): make it again */
            uint64_t at = reader_pos(r);
            if (rc == PH_OK && last > at && at == r->stall_at)
                reader_close(r);
            r->stall_at = at;
            lease_check(r);
            next_lease = mono_ms() + period;
        }
        if (broken && ph_repl_role(r) == PH_REPL_STANDBY)
            wait_ms(r, period);
    }
    reader_close(r);
    return NULL;
}

int ph_repl_start(ph_repl *r, ph_store *s, ph_err *err)
{
    assert(!r->started);
    r->store = s;
    const char *uid = ph_store_uid(s);
    int bad = uid_check(r, uid, err);
    if (bad != PH_OK)
        return bad;
    snprintf(r->uid, sizeof r->uid, "%s", uid);
    r->have_uid = 1;
    if (ph_repl_online(r)) {
        /* reported before catching up (retain.h): the leader trims nothing
         * this node still has to apply, from its first batch on */
        ph_retain_tick(&r->retain, r->js, s, 0);
        uint64_t last = 0;
        size_t done;
        int rc = stream_last(r, &last, err);
        if (rc == PH_OK)
            rc = apply_upto(r, last, SIZE_MAX, &done, err);
        if (rc == PH_EUNAVAIL) {
            /* JetStream slow to answer (servers starting again, electing): a
             * standby that catches up on its thread, as one started without
             * NATS, not a start refused (a deposed leader would exit) */
            reader_close(r);
            ph_log(r->log, PH_LOG_WARN, NULL, "repl.catch_up_later",
                   "node=%s applied=%llu detail=\"%s\" effect=\"this node starts as a standby "
                   "and applies the stream once it answers\"",
                   r->node, (unsigned long long)ph_store_repl_seq(s), err->msg);
            memset(err, 0, sizeof *err);
        } else if (rc != PH_OK) {
            reader_close(r);
            return rc;
        } else {
            ph_log(r->log, PH_LOG_INFO, NULL, "repl.caught_up", "node=%s stream=%s applied=%llu",
                   r->node, r->stream, (unsigned long long)ph_store_repl_seq(s));
            /* one look at the lease now, so a node that finds it free starts as leader */
            lease_check(r);
            for (int i = 0; i < 100 && ph_repl_role(r) == PH_REPL_PROMOTING; i++)
                take_over(r);
        }
    }
    if (pthread_create(&r->thread, NULL, repl_main, r)) {
        reader_close(r);
        return ph_err_set(err, PH_ENOMEM, "replication: cannot start its thread");
    }
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

int64_t ph_repl_staleness_ms(ph_repl *r)
{
    if (ph_repl_role(r) == PH_REPL_LEADER)
        return 0;
    int64_t at = atomic_load(&r->fresh_at);
    return at ? mono_ms() - at : -1;
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
