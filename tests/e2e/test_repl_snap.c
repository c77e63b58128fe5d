/*
 * test_repl_snap.c — snapshots and the stream's retention (issue 19 point 4,
 * docs/replication.md "Snapshots"): three nats-server processes (R3), a
 * leader and a standby on loopback, all started here.
 *
 * Replicated: orders on the leader; a snapshot taken on the leader
 * (`perkctl snapshot take`, the job snapshots.take run on demand) and by the
 * standby's own schedule; the leader trims the stream below the newest
 * snapshot (its first sequence, asked of NATS, moves past 1; the trim is
 * logged and evented); a new node bootstraps with `perkctl snapshot pull`
 * from the standby plus the key file, catches up from the stream, and every
 * node's store is the same under `mdb_dump -a`.
 *
 * Single node: a snapshot taken, listed and pulled; a second daemon started
 * on the copy sees the same orders; a pull never lands over a store.
 */
#include <criterion/criterion.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define WAIT_MS 30000
#define STREAM  "PERKHUB"

static h_nats N;
static h_daemon D[3]; /* leader, standby, the new node */
static uint16_t PORT[3];
static char BODY[3][2048];

static void teardown(void)
{
    for (int i = 0; i < 3; i++)
        h_leftover(&D[i]);
    h_nats_stop(&N);
}

TestSuite(repl_snap, .fini = teardown, .timeout = 240);

#define PRODUCTS                                                                                   \
    "suppliers:\n  - id: acme\n    plugin: manual\n"                                               \
    "products:\n"                                                                                  \
    "  - sku: rp.card\n    name: Stock card\n    brand: b\n    category: c\n"                      \
    "    delivery: card_code\n    face_value: \"30.00\"\n"

/* Node i with its own HTTP port (its advertise_url names it) and `snaps`, its
 * snapshots: section. */
static void setup_node(int i, const char *snaps)
{
    char urls[256], want[32];
    PORT[i] = h_free_port();
    snprintf(BODY[i], sizeof BODY[i],
             PRODUCTS "replication:\n  enabled: true\n  node_id: node%d\n  urls: %s\n"
                      "  lease_ttl_ms: 2000\n  trim_margin: 4\n"
                      "  advertise_url: http://127.0.0.1:%u\n%s",
             i, h_nats_urls(&N, urls, sizeof urls), PORT[i], snaps);
    h_setup_custom(&D[i], BODY[i], NULL);
    char *text = h_config_text(&D[i], NULL);
    snprintf(want, sizeof want, "  port: %u\n", PORT[i]);
    char *fixed = h_replace(text, "  port: 0\n", want);
    h_write_config_text(&D[i], fixed);
    free(fixed);
    free(text);
}

/* perkctl against d with the ops token; arguments up to NULL. */
static int pk(const h_daemon *d, char **out, char **err, const char *a1, const char *a2,
              const char *a3, const char *a4)
{
    const char *argv[] = {h_bin("PH_PERKCTL"), a1, a2, a3, a4, NULL};
    char url[64];
    snprintf(url, sizeof url, "PERKHUB_URL=http://127.0.0.1:%u", d->port);
    const char *env[] = {url, "PERKHUB_TOKEN=ops-token", NULL};
    return h_run(argv, env, NULL, 0, out, err);
}

typedef struct role_want {
    const h_daemon *d;
    const char *role;
} role_want;

static int has_role(void *arg)
{
    role_want *w = arg;
    return h_repl_role_is(w->d, w->role);
}

/* The stream's first and last sequence, asked of NATS (server 0). */
static void stream_state(uint64_t *first, uint64_t *last)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%u", N.port[0]);
    cr_assert_eq(natsConnection_ConnectTo(&nc, url), NATS_OK);
    cr_assert_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    cr_assert_eq(js_GetStreamInfo(&si, js, STREAM, NULL, NULL), NATS_OK);
    *first = si->State.FirstSeq;
    *last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

static int trimmed(void *arg)
{
    uint64_t first, last;
    stream_state(&first, &last);
    return first > *(uint64_t *)arg;
}

static int all_caught_up(void *arg)
{
    int n = *(int *)arg;
    uint64_t first, last;
    stream_state(&first, &last);
    for (int i = 0; i < n; i++)
        if (h_repl_applied(&D[i]) != (long long)last)
            return 0;
    return 1;
}

/* Every node's store the same under mdb_dump -a, at the same sequence (the
 * dumps are taken again while a job's record or a trim's note moves it). */
static void same_everywhere(int n)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        cr_assert_eq(h_wait_for(all_caught_up, &n, WAIT_MS), 0, "the nodes did not catch up");
        char *d[3];
        int same = 1;
        for (int i = 0; i < n; i++) {
            d[i] = h_mdb_dump(D[i].data);
            same &= h_mdb_dump_repl_seq(d[i]) == h_mdb_dump_repl_seq(d[0]);
        }
        if (same)
            for (int i = 1; i < n; i++)
                cr_assert(!strcmp(d[0], d[i]), "node%d's store differs from the leader's", i);
        for (int i = 0; i < n; i++)
            free(d[i]);
        if (same)
            return;
    }
    cr_assert_fail("the nodes never stood at the same sequence");
}

static void orders(const h_daemon *d, const char *prefix, int n)
{
    for (int i = 0; i < n; i++) {
        char coid[48];
        snprintf(coid, sizeof coid, "%s-%d", prefix, i);
        h_resp r = h_order(d, "mall-token", coid, "rp.card", 1);
        cr_assert_eq(r.status, 201, "%s", r.body);
        h_resp_free(&r);
    }
}

/* The newest snapshot of d as GET /v1/snapshots lists it: its repl_seq, -1 when none. */
static long long newest_snapshot(const h_daemon *d)
{
    h_resp r = h_get(d, "/v1/snapshots", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *first = json_array_get(json_object_get(r.json, "snapshots"), 0);
    long long seq = first ? h_int(first, "repl_seq") : -1;
    h_resp_free(&r);
    return seq;
}

/* The trim's note is in the leader's event feed (written after the purge). */
static int trim_evented(void *arg)
{
    (void)arg;
    h_resp r = h_get(&D[0], "/v1/events?limit=1000", "ops-token");
    int ok = r.status == 200 && strstr(r.body, "\"repl.trimmed\"");
    h_resp_free(&r);
    return ok;
}

typedef struct snap_past {
    const h_daemon *d;
    long long seq;
} snap_past;

static int snapshot_past(void *arg)
{
    snap_past *s = arg;
    return newest_snapshot(s->d) >= s->seq;
}

Test(repl_snap, the_stream_is_trimmed_below_snapshots_and_a_new_node_bootstraps_from_one)
{
    cr_assert_eq(h_nats_start(&N, 3), 0, "the NATS cluster did not start");
    setup_node(0, "snapshots:\n  every_s: 0\n"); /* the leader's: on demand only */
    setup_node(1, "snapshots:\n  every_s: 2\n  keep: 2\n");
    cr_assert_eq(h_start(&D[0]), 0, "node0 did not start");
    role_want w0 = {&D[0], "leader"};
    cr_assert_eq(h_wait_for(has_role, &w0, WAIT_MS), 0, "node0 does not lead");
    h_share_key(&D[0], &D[1]);
    cr_assert_eq(h_start(&D[1]), 0, "node1 did not start");
    role_want w1 = {&D[1], "standby"};
    cr_assert_eq(h_wait_for(has_role, &w1, WAIT_MS), 0, "node1 is not a standby");
    char *csv = h_codes_csv("RS", 60);
    h_resp r = h_import(&D[0], "rp.card", csv, 201);
    free(csv);
    h_resp_free(&r);
    orders(&D[0], "before", 20);

    /* the leader's snapshot, on demand: the job's run, its outcome printed */
    char *out = NULL, *err = NULL;
    cr_assert_eq(pk(&D[0], &out, &err, "snapshot", "take", NULL, NULL), 0, "take: %s", err);
    cr_assert(strstr(out, "repl_seq"), "%s", out);
    free(out);
    free(err);
    cr_assert(newest_snapshot(&D[0]) > 20, "the leader's snapshot misses the orders");
    /* a standby refuses an ask (a write), and says where the leader is */
    cr_assert_neq(pk(&D[1], NULL, &err, "snapshot", "take", NULL, NULL), 0);
    cr_assert(strstr(err, "not_leader"), "%s", err);
    free(err);

    /* the standby's own snapshot past the orders, then the trim: the stream
     * starts after batch 1 now */
    uint64_t first, last;
    stream_state(&first, &last);
    cr_assert_eq(first, 1, "trimmed before any snapshot");
    snap_past sp = {&D[1], (long long)last};
    cr_assert_eq(h_wait_for(snapshot_past, &sp, WAIT_MS), 0, "the standby took no snapshot");
    uint64_t was = 1;
    cr_assert_eq(h_wait_for(trimmed, &was, WAIT_MS), 0, "the leader never trimmed the stream");
    stream_state(&first, &last);
    cr_assert(first > 20, "trimmed only to %llu", (unsigned long long)first);
    cr_assert_eq(h_log_wait(&D[0], "repl.trimmed", 1, WAIT_MS), 0, "the trim is not logged");
    cr_assert_eq(h_wait_for(trim_evented, NULL, WAIT_MS), 0, "the trim is not an event");
    orders(&D[0], "after", 10);

    /* a new node: the standby's newest snapshot and the key file */
    setup_node(2, "snapshots:\n  every_s: 0\n");
    h_share_key(&D[0], &D[2]);
    const char *rm[] = {"/bin/rm", "-rf", D[2].data, NULL};
    cr_assert_eq(h_run(rm, NULL, NULL, 0, NULL, NULL), 0);
    cr_assert_eq(pk(&D[1], &out, &err, "snapshot", "pull", "--out", D[2].data), 0, "pull: %s", err);
    long long pulled = 0;
    char *at = strstr(out, "repl_seq ");
    cr_assert(at && sscanf(at, "repl_seq %lld", &pulled) == 1, "%s", out);
    free(out);
    free(err);
    stream_state(&first, &last);
    cr_assert(pulled + 1 >= (long long)first, "pulled %lld, the stream starts at %llu", pulled,
              (unsigned long long)first);
    cr_assert(pulled > 20);
    fprintf(stderr, "repl_snap: stream %llu..%llu, the new node pulled a snapshot at %lld\n",
            (unsigned long long)first, (unsigned long long)last, pulled);
    cr_assert_eq(h_start(&D[2]), 0, "the new node did not start from the snapshot");
    same_everywhere(3);
    for (int i = 0; i < 3; i++)
        h_stop_clean(&D[i]);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(h_check_store(&D[i], &out), 0, "node%d: %s", i, out);
        free(out);
        h_cleanup(&D[i]);
    }
}

Test(repl_snap, a_single_node_snapshot_starts_a_second_daemon_with_the_same_orders)
{
    h_daemon *a = &D[0], *b = &D[1];
    h_setup(a, "snapshots:\n  every_s: 0\n  keep: 2\n");
    cr_assert_eq(h_start(a), 0);
    char *csv = h_codes_csv("SN", 10);
    h_resp r = h_import(a, "test.card", csv, 201);
    free(csv);
    h_resp_free(&r);
    for (int i = 0; i < 4; i++) {
        char coid[32];
        snprintf(coid, sizeof coid, "single-%d", i);
        r = h_order(a, "mall-token", coid, "test.card", 1);
        cr_assert_eq(r.status, 201, "%s", r.body);
        h_resp_free(&r);
    }
    /* none yet: the download says so */
    r = h_get(a, "/v1/snapshots/latest", "ops-token");
    cr_assert_eq(r.status, 404, "%s", r.body);
    h_resp_free(&r);
    r = h_get(a, "/v1/snapshots", "mall-token");
    cr_assert_eq(r.status, 403, "a fulfil token listed snapshots: %s", r.body);
    h_resp_free(&r);
    char *out = NULL, *err = NULL;
    cr_assert_eq(pk(a, &out, &err, "snapshot", "take", NULL, NULL), 0, "take: %s", err);
    free(out);
    free(err);
    cr_assert_eq(pk(a, &out, &err, "snapshot", "list", NULL, NULL), 0, "list: %s", err);
    cr_assert(strstr(out, "REPL_SEQ") && strstr(out, "snap-"), "%s", out);
    free(out);
    free(err);
    r = h_get(a, "/v1/snapshots", "ops-token");
    json_t *s0 = json_array_get(json_object_get(r.json, "snapshots"), 0);
    cr_assert(s0 && h_int(s0, "repl_seq") == 0 && h_int(s0, "bytes") > 0, "%s", r.body);
    cr_assert(json_is_string(json_object_get(s0, "taken_at")), "%s", r.body);
    h_resp_free(&r);
    /* the job's run is in GET /v1/jobs */
    r = h_get(a, "/v1/jobs", "ops-token");
    cr_assert(strstr(r.body, "\"snapshots.take\""), "%s", r.body);
    h_resp_free(&r);

    /* pulled into a second daemon's data_dir: a store already there is never replaced */
    h_setup(b, "snapshots:\n  every_s: 0\n");
    h_share_key(a, b);
    cr_assert_eq(pk(a, &out, &err, "snapshot", "pull", "--out", a->data), 2,
                 "a pull over a store: %s", out);
    cr_assert(strstr(err, "exists"), "%s", err);
    free(out);
    free(err);
    cr_assert_eq(pk(a, &out, &err, "snapshot", "pull", "--out", b->data), 0, "pull: %s", err);
    cr_assert(strstr(out, "data.mdb: repl_seq 0,"), "%s", out);
    free(out);
    free(err);
    cr_assert_eq(h_start(b), 0, "no daemon on the pulled snapshot");
    h_resp ra = h_get(a, "/v1/orders?limit=100", "mall-token");
    h_resp rb = h_get(b, "/v1/orders?limit=100", "mall-token");
    cr_assert_eq(ra.status, 200);
    cr_assert_eq(rb.status, 200);
    cr_assert_eq(json_array_size(json_object_get(rb.json, "orders")), 4, "%s", rb.body);
    cr_assert_str_eq(ra.body, rb.body, "the copy's orders differ");
    h_resp_free(&ra);
    h_resp_free(&rb);
    h_stop_clean(a);
    h_stop_clean(b);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(h_check_store(&D[i], &out), 0, "%s", out);
        free(out);
        h_cleanup(&D[i]);
    }
}
