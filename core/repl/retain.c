/*
 * retain.c — the stream's retention bounded by snapshots (retain.h): each
 * node's report in the nodes bucket, the leader's purge below what every
 * live node still needs.
 */
#include "repl/retain.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/util.h"

uint64_t ph_retain_purge_seq(const ph_retain_report *v, size_t n, int64_t hold_ms, uint64_t margin,
                             uint64_t first)
{
    uint64_t newest_snap = 0, need = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        if (v[i].age_ms > hold_ms)
            continue; /* gone: bootstraps from a snapshot when it returns */
        if (v[i].snap_seq > newest_snap)
            newest_snap = v[i].snap_seq;
        if (v[i].applied + 1 < need)
            need = v[i].applied + 1;
    }
    if (!newest_snap || newest_snap + 1 <= margin)
        return 0;
    uint64_t from_snap = newest_snap + 1 - margin;
    uint64_t keep = from_snap < need ? from_snap : need;
    return keep > first ? keep : 0;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define KEY_PREFIX "node."

void ph_retain_init(ph_retain *t, const ph_config *cfg, ph_snaps *snaps, const ph_logger *log)
{
    snprintf(t->bucket, sizeof t->bucket, "%s_nodes", cfg->repl_lease_bucket);
    snprintf(t->key, sizeof t->key, KEY_PREFIX "%s", cfg->repl_node_id ? cfg->repl_node_id : "");
    snprintf(t->stream, sizeof t->stream, "%s", cfg->repl_stream);
    t->ttl_ms = cfg->repl_lease_ttl_ms;
    t->hold_ms = (int64_t)cfg->repl_hold_ttls * cfg->repl_lease_ttl_ms;
    t->margin = cfg->repl_trim_margin;
    t->replicas = (int)cfg->repl_replicas;
    t->snaps = snaps;
    t->log = log;
}

int ph_retain_open(ph_retain *t, jsCtx *js, ph_err *err)
{
    natsStatus s = js_KeyValue(&t->kv, js, t->bucket);
    if (s == NATS_NOT_FOUND) {
        kvConfig kc;
        kvConfig_Init(&kc);
        kc.Bucket = t->bucket;
        kc.History = 1;
        /* the server forgets a report twice the hold after it was made: the
         * age test (ph_retain_purge_seq) decides, this only clears old keys */
        kc.TTL = t->hold_ms * 2 * 1000000;
        kc.Replicas = t->replicas;
        kc.StorageType = js_FileStorage;
        s = js_CreateKeyValue(&t->kv, js, &kc);
    }
    if (s != NATS_OK) {
        const char *last = nats_GetLastError(NULL);
        t->kv = NULL;
        return ph_err_set(err, PH_EUNAVAIL, "replication: nodes bucket %s: %s", t->bucket,
                          last && *last ? last : natsStatus_GetText(s));
    }
    return PH_OK;
}

static void report(ph_retain *t, ph_store *s)
{
    char val[96];
    uint64_t snap = t->snaps ? ph_snaps_newest_seq(t->snaps) : 0;
    snprintf(val, sizeof val, "{\"applied\":%" PRIu64 ",\"snap\":%" PRIu64 "}",
             ph_store_repl_seq(s), snap);
    uint64_t rev = 0;
    natsStatus st = kvStore_PutString(&rev, t->kv, t->key, val);
    if (st == NATS_OK) {
        t->report_failed = 0;
        return;
    }
    if (!t->report_failed) {
        const char *last = nats_GetLastError(NULL);
        ph_log(t->log, PH_LOG_WARN, NULL, "repl.report_failed",
               "key=%s detail=\"%s\" effect=\"this node's report ages: past the hold it no "
               "longer holds the stream's batches back\"",
               t->key, last && *last ? last : natsStatus_GetText(st));
    }
    t->report_failed = 1;
}

/* Every report in the bucket into *v (the caller frees). 0, or -1. */
static int read_reports(ph_retain *t, ph_retain_report **v, size_t *n)
{
    kvKeysList keys = {0};
    *v = NULL;
    *n = 0;
    natsStatus s = kvStore_Keys(&keys, t->kv, NULL);
    if (s == NATS_NOT_FOUND)
        return 0;
    if (s != NATS_OK)
        return -1;
    if (keys.Count && !(*v = calloc((size_t)keys.Count, sizeof **v))) {
        kvKeysList_Destroy(&keys);
        return -1;
    }
    int64_t now = ph_now_ms();
    int rc = 0;
    for (int i = 0; i < keys.Count && rc == 0; i++) {
        kvEntry *e = NULL;
        if (strncmp(keys.Keys[i], KEY_PREFIX, strlen(KEY_PREFIX)))
            continue;
        /* a report that cannot be read now may be a live, lagging node's: no
         * trim this round (gone since the listing: nothing to hold back) */
        natsStatus g = kvStore_Get(&e, t->kv, keys.Keys[i]);
        if (g == NATS_NOT_FOUND)
            continue;
        if (g != NATS_OK) {
            rc = -1;
            continue;
        }
        json_t *j = json_loadb(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), 0, NULL);
        json_t *a = json_object_get(j, "applied"), *sn = json_object_get(j, "snap");
        if (json_is_integer(a) && json_is_integer(sn) && json_integer_value(a) >= 0 &&
            json_integer_value(sn) >= 0) {
            ph_retain_report *r = &(*v)[(*n)++];
            r->applied = (uint64_t)json_integer_value(a);
            r->snap_seq = (uint64_t)json_integer_value(sn);
            r->age_ms = now - kvEntry_Created(e) / 1000000;
        }
        json_decref(j);
        kvEntry_Destroy(e);
    }
    kvKeysList_Destroy(&keys);
    if (rc) {
        free(*v);
        *v = NULL;
        *n = 0;
    }
    return rc;
}

typedef struct trim_note {
    ph_cmd cmd;
    const ph_logger *log;
    char fields[256];
} trim_note;

/* The writer thread, after the commit: the command is ours to free. */
static void trim_note_done(ph_cmd *c)
{
    trim_note *n = c->arg;
    if (c->rc != PH_OK)
        ph_log(n->log, PH_LOG_WARN, NULL, "repl.trim_event_failed", "detail=\"%s\"", c->err.msg);
    ph_cmd_clear(c);
    free(n);
}

/* The note event of a trim, through the writer (published as any batch);
 * submitted, not waited for: this thread renews the lease. */
static void trim_event(ph_retain *t, ph_store *s, uint64_t first)
{
    trim_note *n = calloc(1, sizeof *n);
    if (!n)
        return;
    snprintf(n->fields, sizeof n->fields, "{\"stream\":\"%s\",\"first_seq\":%" PRIu64 "}",
             t->stream, first);
    n->log = t->log;
    n->cmd.type = PH_CMD_NOTE_EVENT;
    n->cmd.now = ph_now_ms();
    n->cmd.in.note.name = "repl.trimmed";
    n->cmd.in.note.fields = n->fields;
    n->cmd.done = trim_note_done;
    n->cmd.arg = n;
    if (ph_store_submit(s, &n->cmd) != PH_OK) /* closing: done will not run */
        free(n);
}

static void trim(ph_retain *t, jsCtx *js, ph_store *s)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    if (js_GetStreamInfo(&si, js, t->stream, NULL, &jerr) != NATS_OK)
        return; /* the next look */
    uint64_t first = si->State.Msgs ? si->State.FirstSeq : si->State.LastSeq + 1;
    uint64_t last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    /* no snapshot can hold more than the stream's last batch: within the
     * margin nothing can go, and the reports need not be read */
    if (last + 1 <= t->margin || last + 1 - t->margin <= first)
        return;
    ph_retain_report *v;
    size_t n;
    if (read_reports(t, &v, &n) != 0)
        return;
    uint64_t keep = ph_retain_purge_seq(v, n, t->hold_ms, t->margin, first);
    free(v);
    if (!keep)
        return;
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Purge.Sequence = keep;
    jerr = 0;
    natsStatus st = js_PurgeStream(js, t->stream, &o, &jerr);
    if (st != NATS_OK) {
        const char *last = nats_GetLastError(NULL);
        ph_log(t->log, PH_LOG_WARN, NULL, "repl.trim_failed",
               "stream=%s before=%llu detail=\"%s\" effect=\"tried again later\"", t->stream,
               (unsigned long long)keep, last && *last ? last : natsStatus_GetText(st));
        return;
    }
    ph_log(t->log, PH_LOG_INFO, NULL, "repl.trimmed",
           "stream=%s first_seq=%llu was=%llu nodes=%zu detail=\"batches before the newest "
           "snapshot every live node passed\"",
           t->stream, (unsigned long long)keep, (unsigned long long)first, n);
    trim_event(t, s, keep);
}

void ph_retain_tick(ph_retain *t, jsCtx *js, ph_store *s, int leader)
{
    if (!t->kv || !s)
        return;
    int64_t now = mono_ms();
    if (now >= t->next_report) {
        report(t, s);
        t->next_report = now + (t->ttl_ms / 4 > 0 ? t->ttl_ms / 4 : 1);
    }
    if (leader && now >= t->next_trim) {
        trim(t, js, s);
        t->next_trim = mono_ms() + t->ttl_ms;
    }
}

void ph_retain_free(ph_retain *t)
{
    if (t && t->kv) {
        kvStore_Destroy(t->kv);
        t->kv = NULL;
    }
}
