/*
 * test_repl.c — replication through NATS JetStream (issue 19,
 * docs/replication.md): three nats-server processes as a JetStream cluster
 * (the stream R3) and three perkhubd nodes on loopback, all started here.
 *
 * Replicated commit: the first node takes the lease and leads, two standbys
 * follow; concurrent card-code orders and recharges (at the simulator) go to
 * the leader; standbys serve reads, refuse writes naming the leader and hand
 * supplier callbacks to it; at the end every node's store is the same under
 * `mdb_dump -a`, and its applied sequence (meta repl_seq) is the stream's last.
 *
 * Then: kill -9 of the leader under orders (a standby leads within ~2 s, no
 * code issued twice, no recharge sent twice, the killed node comes back as a
 * standby); a leader SIGSTOP'd past its lease (its write refused, nothing of
 * it stored, it restarts as a standby); a NATS server killed under orders
 * (R3 goes on); a leader stopped cleanly (the lease handed on at once); a
 * node bootstrapped from an mdb_copy snapshot on a trimmed stream; a single
 * node turned leader (its standbys need a copy); the risk rules and counts of
 * the old leader enforced by the new one; a node started while every NATS
 * server is down (reads answer, writes 503, it catches up once NATS is back;
 * an empty store refuses naming the URLs); a batch over a small max_payload
 * in parts; parts of a batch never completed ignored on every node alike.
 */
#include <criterion/criterion.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define WAIT_MS 20000
#define NODES   3
#define STREAM  "PERKHUB"

static h_nats N;
static h_sim S;
static h_daemon D[NODES];
static uint16_t PORT[NODES];
static char BODY[NODES][4096];

static h_daemon E; /* a node that joins later, from a snapshot */

static const char *REPL_EXTRA;

static void teardown(void)
{
    REPL_EXTRA = ""; /* a test's own keys (the TSan tree runs every test in one process) */
    for (int i = 0; i < NODES; i++)
        h_leftover(&D[i]);
    h_leftover(&E);
    h_nats_stop(&N);
    if (S.pid > 0)
        h_sim_stop(&S);
}

TestSuite(repl, .fini = teardown, .timeout = 180);

/* more keys of the replication section, for the test that sets them */
static const char *REPL_EXTRA = "";

#define TIMEOUTS "    timeout_ms: 1500\n    connect_timeout_ms: 1000\n    query_max_delay_ms: 500\n"

/* Node i's configuration: the simulator's gateway supplier, a card product
 * from local stock and a recharge; replication on, with its own HTTP port. */
static void setup_node(int i, const char *ttl_ms)
{
    char sup[1024], urls[256], text_port[32], want_port[32];
    h_sim_supplier_yaml(&S, "gwa", "gateway",
                        "    priority: 20\n    processing_window_s: 2\n" TIMEOUTS, NULL, sup,
                        sizeof sup);
    PORT[i] = h_free_port();
    snprintf(BODY[i], sizeof BODY[i],
             "suppliers:\n%s"
             "  - id: acme\n    plugin: manual\n"
             "products:\n"
             "  - sku: rp.card\n    name: Stock card\n    brand: b\n    category: c\n"
             "    delivery: card_code\n    face_value: \"30.00\"\n"
             "  - sku: rp.topup\n    name: Top-up\n    brand: sim\n    category: telecom\n"
             "    delivery: recharge\n    face_value: \"50.00\"\n    offers:\n"
             "      - {supplier: gwa, supplier_sku: \"20001\", cost: \"49.00\"}\n"
             "replication:\n  enabled: true\n  node_id: node%d\n  urls: %s\n"
             "  lease_ttl_ms: %s\n%s  advertise_url: http://127.0.0.1:%u\n",
             sup, i, h_nats_urls(&N, urls, sizeof urls), ttl_ms, REPL_EXTRA, PORT[i]);
    h_setup_custom(&D[i], BODY[i], NULL);
    char *text = h_config_text(&D[i], NULL);
    snprintf(text_port, sizeof text_port, "  port: 0\n");
    snprintf(want_port, sizeof want_port, "  port: %u\n", PORT[i]);
    char *fixed = h_replace(text, text_port, want_port);
    h_write_config_text(&D[i], fixed);
    free(fixed);
    free(text);
}

/* Starts d again on its fixed port (its advertise_url names it). The port
 * was free when the test chose it, but while d was down another process on
 * this shared box may have held it for a moment (an outgoing connection's
 * ephemeral port): a start refused for that is tried again, a few times. */
static int restart(h_daemon *d)
{
    for (int tries = 0;; tries++) {
        if (h_start(d) == 0)
            return 0;
        h_stop(d, SIGKILL); /* reaps the process that could not listen */
        if (tries == 9 || h_file_count(d->log, "cannot listen on") == 0)
            return -1;
        usleep(300 * 1000);
    }
}

typedef struct role_want {
    h_daemon *d;
    const char *role;
} role_want;

static int has_role(void *arg)
{
    role_want *w = arg;
    /* no answer yet (starting, restarting as a standby): not yet */
    return h_repl_role_is(w->d, w->role);
}

static void wait_role(h_daemon *d, const char *role)
{
    role_want w = {d, role};
    cr_assert_eq(h_wait_for(has_role, &w, WAIT_MS), 0, "node %s never became %s", d->dir, role);
}

/* The standby applied the stream to its end (the stream as NATS reports it). */
static long long SEEN_LAST, SEEN_APPLIED; /* for the failure message */
static int JSZ; /* the NATS server whose /jsz the test reads (a live one) */

static int caught_up(void *arg)
{
    h_daemon *d = arg;
    long long last = SEEN_LAST = h_nats_stream_last(&N, JSZ, STREAM);
    SEEN_APPLIED = h_repl_applied(d); /* -1, no answer: restarting (a deposed leader), not yet */
    return last > 0 && SEEN_APPLIED == last;
}

static void wait_caught_up(int i)
{
    cr_assert_eq(h_wait_for(caught_up, &D[i], WAIT_MS), 0,
                 "node%d did not catch up: applied %lld, the stream's last %lld", i, SEEN_APPLIED,
                 SEEN_LAST);
}

/* One client: `n` orders on its own connection, card codes or recharges. */
typedef struct client {
    int no, n, recharge, ok, other;
    long long ids[32];
    h_conn *c;
} client;

static void *client_main(void *arg)
{
    client *k = arg;
    for (int i = 0; i < k->n; i++) {
        char coid[48], body[256];
        h_resp r;
        if (k->recharge) {
            snprintf(coid, sizeof coid, "top-%d-%d", k->no, i);
            snprintf(body, sizeof body,
                     "{\"client_order_id\":\"%s\",\"sku\":\"rp.topup\","
                     "\"account\":\"1380000%04d\"}",
                     coid, k->no * 100 + i);
            if (h_conn_http(k->c, "POST", "/v1/orders", "mall-token", "application/json", body,
                            strlen(body), &r) != 0)
                continue;
            if ((r.status == 201 || r.status == 202) && r.json)
                k->ids[k->ok++] =
                    json_integer_value(json_object_get(json_object_get(r.json, "order"), "id"));
            else
                k->other++;
        } else {
            snprintf(coid, sizeof coid, "card-%d-%d", k->no, i);
            if (h_conn_order(k->c, "mall-token", coid, "rp.card", 1, &r) != 0)
                continue;
            r.status == 201 ? k->ok++ : k->other++;
        }
        h_resp_free(&r);
    }
    return NULL;
}

static int is_final(json_t *o, void *arg)
{
    (void)arg;
    return !strcmp(h_str(o, "state"), "succeeded") || !strcmp(h_str(o, "state"), "failed");
}

static void assert_same(const char *a, const char *b, int node)
{
    if (!strcmp(a, b))
        return;
    size_t line = 1, i = 0;
    for (; a[i] && a[i] == b[i]; i++)
        line += a[i] == '\n';
    size_t s = i;
    while (s && a[s - 1] != '\n')
        s--;
    cr_assert_fail("node %d's store differs from the leader's at dump line %zu:\n"
                   "  leader: %.200s\n  node%d: %.200s",
                   node, line, a + s, node, b + s);
}

/* Every running node applied the stream to its end and holds the same data:
 * `mdb_dump -a` of each node's store while it runs (a read transaction). The
 * leader may write meanwhile (a job's record), so the dumps are taken again
 * until every node's repl_seq is the stream's last; a lease is never left to
 * lapse, so no standby takes over during the comparison. Returns that
 * sequence. */
static long long compare_live(h_daemon *const *nodes, int n)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        for (int i = 0; i < n; i++)
            cr_assert_eq(h_wait_for(caught_up, nodes[i], WAIT_MS), 0,
                         "%s did not catch up: applied %lld, the stream's last %lld", nodes[i]->dir,
                         SEEN_APPLIED, SEEN_LAST);
        char *d[8];
        long long seq[8];
        int same = 1;
        for (int i = 0; i < n; i++) {
            d[i] = h_mdb_dump(nodes[i]->data);
            seq[i] = h_mdb_dump_repl_seq(d[i]);
            same &= seq[i] == seq[0];
        }
        long long last = h_nats_stream_last(&N, JSZ, STREAM);
        if (same && seq[0] == last)
            for (int i = 1; i < n; i++)
                assert_same(d[0], d[i], i);
        for (int i = 0; i < n; i++)
            free(d[i]);
        if (same && seq[0] == last)
            return last;
    }
    cr_assert_fail("the nodes never stood at the same sequence");
    return -1;
}

/* The end of a test: the nodes compared while they run, then stopped (each
 * cleanly: no sanitizer report) and checked (--check-store). */
static void compare_and_stop(h_daemon *const *nodes, int n)
{
    long long last = compare_live(nodes, n);
    fprintf(stderr, "repl: %lld batches in the stream, the same data on %d nodes\n", last, n);
    for (int i = 0; i < n; i++)
        h_stop_clean(nodes[i]);
    char *out = NULL;
    for (int i = 0; i < n; i++) {
        cr_assert_eq(h_check_store(nodes[i], &out), 0, "%s: %s", nodes[i]->dir, out);
        free(out);
    }
}

/* A callback the leader answered, in its log. */
#define CALLBACK_LINE "path=/v1/callbacks/gwa status=200"

/* Every notify supsim sent (counted when queued) was answered by the leader. */
static int leader_heard_all(void *arg)
{
    (void)arg;
    json_t *t = h_sim_truth(&S);
    long long sent = h_int(json_object_get(t, "counts"), "callbacks_sent");
    json_decref(t);
    return h_file_count(D[0].log, CALLBACK_LINE) >= sent;
}

Test(repl, a_leader_and_two_standbys_end_with_the_same_data)
{
    cr_assert_eq(h_nats_start(&N, 3), 0, "the NATS cluster did not start");
    cr_assert_eq(h_sim_start(&S, NULL), 0, "supsim did not start");
    for (int i = 0; i < NODES; i++)
        setup_node(i, "6000");
    cr_assert_eq(h_start(&D[0]), 0, "node0 did not start");
    wait_role(&D[0], "leader");
    for (int i = 1; i < NODES; i++) {
        h_share_key(&D[0], &D[i]);
        cr_assert_eq(h_start(&D[i]), 0, "node%d did not start", i);
        wait_role(&D[i], "standby");
    }

    /* stock on the leader, then card orders and recharges at once */
    char *csv = h_codes_csv("RC", 60);
    h_resp r = h_import(&D[0], "rp.card", csv, 201);
    free(csv);
    h_resp_free(&r);
    client k[6];
    pthread_t th[6];
    for (int i = 0; i < 6; i++) {
        k[i] = (client){.no = i, .n = i < 4 ? 12 : 5, .recharge = i >= 4, .c = h_conn_new(&D[0])};
        cr_assert_eq(pthread_create(&th[i], NULL, client_main, &k[i]), 0);
    }
    int cards = 0, tops = 0;
    for (int i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        h_conn_free(k[i].c);
        cr_assert_eq(k[i].other, 0, "client %d: %d orders refused", i, k[i].other);
        if (k[i].recharge)
            tops += k[i].ok;
        else
            cards += k[i].ok;
    }
    cr_assert_eq(cards, 48);
    cr_assert_eq(tops, 10);
    for (int i = 4; i < 6; i++)
        for (int j = 0; j < k[i].ok; j++) {
            json_t *o =
                h_order_poll(&D[0], k[i].ids[j], "mall-token", is_final, NULL, WAIT_MS, "recharge");
            cr_assert_str_eq(h_str(o, "state"), "succeeded");
            json_decref(o);
        }

    /* a standby serves reads of what the leader wrote, and refuses writes */
    for (int i = 1; i < NODES; i++) {
        wait_caught_up(i);
        json_t *o = h_order_get(&D[i], k[4].ids[0], "mall-token");
        cr_assert_str_eq(h_str(o, "state"), "succeeded");
        json_decref(o);
        r = h_order(&D[i], "mall-token", "on-standby", "rp.card", 1);
        cr_assert_eq(r.status, 503, "%s", r.body);
        cr_assert_str_eq(h_str(r.json, "error"), "not_leader", "%s", r.body);
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%u", PORT[0]);
        cr_assert_str_eq(h_str(r.json, "leader"), url, "%s", r.body);
        char hv[128];
        cr_assert(h_header(&r, "X-Perkhub-Leader", hv, sizeof hv), "no X-Perkhub-Leader header");
        cr_assert_str_eq(hv, url);
        h_resp_free(&r);
    }

    /* a supplier callback that reaches a standby is handed to the leader: first
     * every notify supsim sent by itself has reached the leader, then ours does */
    cr_assert_eq(h_wait_for(leader_heard_all, NULL, WAIT_MS), 0, "supsim's own notifies");
    long heard = h_file_count(D[0].log, CALLBACK_LINE);
    json_t *t = h_sim_truth(&S);
    json_t *so = h_sim_truth_find(t, "orders", NULL, k[4].ids[0], NULL);
    cr_assert(so, "supsim has no order %lld", k[4].ids[0]);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/callbacks/gwa", PORT[1]);
    json_t *q = json_pack("{s:s,s:s,s:i,s:s}", "ref", h_str(so, "ref"), "mode", "legit", "copies",
                          1, "url", url);
    char *qs = json_dumps(q, JSON_COMPACT);
    r = h_sim_req(&S, "POST", "/_sim/callback", qs);
    free(qs);
    json_decref(q);
    json_decref(t);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(json_integer_value(json_array_get(json_object_get(r.json, "statuses"), 0)), 200,
                 "%s", r.body);
    h_resp_free(&r);
    cr_assert_eq(h_log_wait(&D[0], CALLBACK_LINE, heard + 1, WAIT_MS), 0,
                 "the leader never got the callback sent to node1");

    h_daemon *all[] = {&D[0], &D[1], &D[2]};
    compare_and_stop(all, NODES);
    for (int i = 0; i < NODES; i++)
        h_cleanup(&D[i]);
}

/* ---- failover -------------------------------------------------------------- */

static atomic_int LIVE[NODES]; /* nodes that answer (not killed, not stopped) */
static atomic_int TARGET;      /* where the clients send orders now */
static atomic_int PLACED;      /* orders answered so far */

/* The node that says it leads, -1 when none does. Any thread (no asserts). */
static int leader_now(void)
{
    for (int i = 0; i < NODES; i++) {
        if (!atomic_load(&LIVE[i]))
            continue;
        if (h_repl_role_is(&D[i], "leader"))
            return i;
    }
    return -1;
}

/* One order wherever the leader is: a refusal (503), a dead or stopped node
 * sends it again, with the same client order id, to the node that leads now.
 * The answer's status (-1: none within 30 s); *out the answer. */
static long roam_order(const char *body, h_resp *out)
{
    int64_t t0 = h_now_ms();
    memset(out, 0, sizeof *out);
    while (h_now_ms() - t0 < 30000) {
        int t = atomic_load(&TARGET);
        if (atomic_load(&LIVE[t]) &&
            h_http(&D[t], "POST", "/v1/orders", "mall-token", "application/json", body,
                   strlen(body), out) == 0 &&
            out->status != 503)
            return out->status;
        h_resp_free(out);
        int l = leader_now();
        if (l >= 0)
            atomic_store(&TARGET, l);
        usleep(50 * 1000); /* a client's pause before asking again, not a test sleep */
    }
    return -1;
}

typedef struct roamer {
    int no, n, recharge, ok, bad;
    long long ids[32];
    char codes[32][48];
    char what[256];
} roamer;

static void *roamer_main(void *arg)
{
    roamer *k = arg;
    for (int i = 0; i < k->n; i++) {
        char body[256];
        if (k->recharge)
            snprintf(body, sizeof body,
                     "{\"client_order_id\":\"rt-%d-%d\",\"sku\":\"rp.topup\","
                     "\"account\":\"1390000%04d\"}",
                     k->no, i, k->no * 100 + i);
        else
            snprintf(body, sizeof body,
                     "{\"client_order_id\":\"rc-%d-%d\",\"sku\":\"rp.card\",\"quantity\":1}", k->no,
                     i);
        h_resp r;
        long st = roam_order(body, &r);
        json_t *o = json_object_get(r.json, "order");
        json_t *codes = json_object_get(o, "codes");
        /* 200: the same order again, stored before its node died (an idempotent replay) */
        if ((st == 201 || st == 200 || (k->recharge && st == 202)) && o) {
            k->ids[k->ok] = json_integer_value(json_object_get(o, "id"));
            if (!k->recharge && json_array_size(codes) == 1)
                snprintf(k->codes[k->ok], sizeof k->codes[0], "%s",
                         json_string_value(json_object_get(json_array_get(codes, 0), "code")));
            k->ok++;
        } else if (!k->bad++) {
            snprintf(k->what, sizeof k->what, "%.60s: %ld %.120s", body, st, r.body ? r.body : "");
        }
        h_resp_free(&r);
        atomic_fetch_add(&PLACED, 1);
    }
    return NULL;
}

static int placed_some(void *arg)
{
    return atomic_load(&PLACED) >= *(int *)arg;
}

static int some_leader(void *arg)
{
    int *out = arg;
    return (*out = leader_now()) >= 0;
}

static int cmp_code(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Three nodes up, node0 leading with 80 codes in stock; the NATS servers
 * with their max_payload. */
static void cluster_up_with(const char *ttl_ms, const char *max_payload)
{
    JSZ = 0;
    cr_assert_eq(h_nats_start_with(&N, 3, max_payload), 0, "the NATS cluster did not start");
    cr_assert_eq(h_sim_start(&S, NULL), 0, "supsim did not start");
    for (int i = 0; i < NODES; i++)
        setup_node(i, ttl_ms);
    cr_assert_eq(h_start(&D[0]), 0, "node0 did not start");
    wait_role(&D[0], "leader");
    for (int i = 1; i < NODES; i++) {
        h_share_key(&D[0], &D[i]);
        cr_assert_eq(h_start(&D[i]), 0, "node%d did not start", i);
        wait_role(&D[i], "standby");
    }
    for (int i = 0; i < NODES; i++)
        atomic_store(&LIVE[i], 1);
    atomic_store(&TARGET, 0);
    atomic_store(&PLACED, 0);
    char *csv = h_codes_csv("FO", 80);
    h_resp r = h_import(&D[0], "rp.card", csv, 201);
    free(csv);
    h_resp_free(&r);
}

static void cluster_up(const char *ttl_ms)
{
    cluster_up_with(ttl_ms, "8MB");
}

/* The end of a failover test: every card code issued once, every recharge
 * final and sent at most once (the simulator's own count), the ledger equal to
 * the simulator's charges; then the leader stops, the others catch up, and
 * every node holds the same data. */
static void check_and_compare(roamer *k, int nk, int lead, int extra_cards)
{
    char codes[128][48];
    int nc = 0, tops = 0;
    for (int i = 0; i < nk; i++) {
        cr_assert_eq(k[i].bad, 0, "client %d: %d orders failed; first: %s", i, k[i].bad, k[i].what);
        for (int j = 0; j < k[i].ok; j++) {
            if (k[i].recharge) {
                json_t *o = h_order_poll(&D[lead], k[i].ids[j], "mall-token", is_final, NULL,
                                         WAIT_MS, "recharge after failover");
                json_decref(o);
                tops++;
            } else {
                cr_assert(nc < 128);
                memcpy(codes[nc++], k[i].codes[j], sizeof codes[0]);
            }
        }
    }
    qsort(codes, (size_t)nc, sizeof codes[0], cmp_code);
    for (int i = 1; i < nc; i++)
        cr_assert_str_neq(codes[i - 1], codes[i], "code %s was issued twice", codes[i]);
    json_t *st = h_stats(&D[lead]);
    json_t *row = h_stats_sku(st, "rp.card");
    cr_assert(row);
    cr_assert_eq(h_int(row, "issued"), nc + extra_cards,
                 "%d card orders succeeded, %lld codes issued", nc + extra_cards,
                 h_int(row, "issued"));
    json_decref(st);
    /* rule 2 across nodes: the simulator saw each recharge's request at most once */
    json_t *t = h_sim_truth(&S);
    for (int i = 0; i < nk; i++)
        for (int j = 0; k[i].recharge && j < k[i].ok; j++) {
            size_t n = 0;
            h_sim_truth_find(t, "orders", NULL, k[i].ids[j], &n);
            cr_assert(n <= 1, "order %lld was sent to the supplier %zu times", k[i].ids[j], n);
        }
    json_decref(t);
    h_ledger_matches_sim(&D[lead], &S);
    fprintf(stderr, "repl: %d card orders, %d recharges across the failover\n", nc, tops);

    h_daemon *all[] = {&D[0], &D[1], &D[2]};
    compare_and_stop(all, NODES);
}

static void roamers_start(roamer *k, pthread_t *th, int nk, int per_card, int per_top)
{
    for (int i = 0; i < nk; i++) {
        k[i] = (roamer){.no = i, .n = i < nk - 2 ? per_card : per_top, .recharge = i >= nk - 2};
        cr_assert_eq(pthread_create(&th[i], NULL, roamer_main, &k[i]), 0);
    }
}

Test(repl, kill_9_the_leader_under_orders_and_a_standby_takes_over)
{
    cluster_up("2000");
    roamer k[6];
    pthread_t th[6];
    roamers_start(k, th, 6, 15, 6);
    int some = 12;
    cr_assert_eq(h_wait_for(placed_some, &some, WAIT_MS), 0, "no orders placed");
    int64_t t0 = h_now_ms();
    atomic_store(&LIVE[0], 0);
    cr_assert_eq(h_stop(&D[0], SIGKILL), 128 + SIGKILL);
    int lead = -1;
    cr_assert_eq(h_wait_for(some_leader, &lead, WAIT_MS), 0, "no standby took over");
    int64_t took = h_now_ms() - t0;
    fprintf(stderr, "repl: node%d leads %lld ms after the leader was killed\n", lead,
            (long long)took);
    cr_assert(took < 8000, "the take-over took %lld ms", (long long)took);
    for (int i = 0; i < 6; i++)
        pthread_join(th[i], NULL);
    /* the killed node comes back as a standby and catches up from its own sequence */
    cr_assert_eq(restart(&D[0]), 0, "node0 did not restart");
    atomic_store(&LIVE[0], 1);
    wait_role(&D[0], "standby");
    check_and_compare(k, 6, lead, 0);
    for (int i = 0; i < NODES; i++)
        h_cleanup(&D[i]);
}

/* SIGSTOP'd past its lease, the old leader wakes up deposed: the order it
 * was handed while stopped is refused, and nothing of it is stored anywhere. */
typedef struct late_order {
    h_resp r;
    int rc;
} late_order;

static void *late_main(void *arg)
{
    late_order *l = arg;
    const char *body = "{\"client_order_id\":\"while-stopped\",\"sku\":\"rp.card\"}";
    l->rc = h_http(&D[0], "POST", "/v1/orders", "mall-token", "application/json", body,
                   strlen(body), &l->r);
    return NULL;
}

Test(repl, a_deposed_leader_is_refused_and_changes_nothing)
{
    cluster_up("2000");
    h_resp r = h_order(&D[0], "mall-token", "before-stop", "rp.card", 1);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    atomic_store(&LIVE[0], 0);
    cr_assert_eq(kill(D[0].pid, SIGSTOP), 0);
    int lead = -1;
    cr_assert_eq(h_wait_for(some_leader, &lead, WAIT_MS), 0, "no standby took over");
    late_order l = {0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, late_main, &l), 0);
    usleep(200 * 1000); /* lets the request reach the stopped daemon's socket; not asserted on */
    cr_assert_eq(kill(D[0].pid, SIGCONT), 0);
    pthread_join(th, NULL);
    cr_assert_eq(l.rc, 0, "no answer from the deposed leader");
    cr_assert_eq(l.r.status, 503, "the deposed leader took a write: %s", l.r.body);
    cr_assert_str_eq(h_str(l.r.json, "error"), "not_leader", "%s", l.r.body);
    h_resp_free(&l.r);
    atomic_store(&LIVE[0], 1);
    /* it starts again as a standby: its leader's state (attempts, jobs) is gone */
    cr_assert_eq(h_log_wait(&D[0], "msg=repl.deposed", 1, WAIT_MS), 0, "node0 did not restart");
    wait_role(&D[0], "standby");
    /* nothing of it anywhere: the same client order id is a new order on the leader */
    r = h_order(&D[lead], "mall-token", "while-stopped", "rp.card", 1);
    cr_assert_eq(r.status, 201, "%s", r.body);
    char hv[16];
    cr_assert(!h_header(&r, "Idempotent-Replay", hv, sizeof hv), "the refused order was stored");
    h_resp_free(&r);
    check_and_compare(NULL, 0, lead, 2);
    for (int i = 0; i < NODES; i++)
        h_cleanup(&D[i]);
}

Test(repl, writes_go_on_when_one_nats_server_dies)
{
    cluster_up("3000");
    roamer k[6];
    pthread_t th[6];
    roamers_start(k, th, 6, 15, 6);
    int some = 12;
    cr_assert_eq(h_wait_for(placed_some, &some, WAIT_MS), 0, "no orders placed");
    h_nats_kill(&N, 0); /* R3 keeps going on the other two */
    for (int i = 0; i < 6; i++)
        pthread_join(th[i], NULL);
    int lead = leader_now();
    cr_assert(lead >= 0, "no leader after a NATS server died");
    JSZ = 1; /* the stream as a surviving server reports it */
    check_and_compare(k, 6, lead, 0);
    for (int i = 0; i < NODES; i++)
        h_cleanup(&D[i]);
}

/* ---- bootstrap ---------------------------------------------------------------- */

/* Drops the stream's batches before `keep` (what retention bounded by
 * snapshots will do), through server 0. */
static void stream_trim(uint64_t keep)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%u", N.port[0]);
    cr_assert_eq(natsConnection_ConnectTo(&nc, url), NATS_OK);
    cr_assert_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Purge.Sequence = keep;
    jsErrCode jerr = 0;
    cr_assert_eq(js_PurgeStream(js, STREAM, &o, &jerr), NATS_OK, "purge: %d", (int)jerr);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

static int e_caught_up(void *arg)
{
    (void)arg;
    return h_repl_applied(&E) == h_nats_stream_last(&N, JSZ, STREAM);
}

/* E: a fourth node, node9, configured like node1 on a port of its own,
 * with an empty data_dir and the first node's key file. */
static void setup_e(void)
{
    char body[4096];
    uint16_t port = h_free_port();
    snprintf(body, sizeof body, "%s", BODY[1]);
    char *at = strstr(body, "node_id: node1");
    cr_assert(at);
    at[13] = '9'; /* node9 */
    h_setup_custom(&E, body, NULL);
    char *text = h_config_text(&E, NULL), want[32];
    snprintf(want, sizeof want, "  port: %u\n", port);
    char *fixed = h_replace(text, "  port: 0\n", want);
    char adv_from[64], adv_to[64];
    snprintf(adv_from, sizeof adv_from, "http://127.0.0.1:%u\n", PORT[1]);
    snprintf(adv_to, sizeof adv_to, "http://127.0.0.1:%u\n", port);
    char *fixed2 = h_replace(fixed, adv_from, adv_to);
    h_write_config_text(&E, fixed2);
    free(fixed2);
    free(fixed);
    free(text);
    h_share_key(&D[0], &E);
}

Test(repl, a_new_node_bootstraps_from_a_snapshot_and_catches_up)
{
    cluster_up("3000");
    for (int i = 0; i < 10; i++) {
        char coid[32];
        snprintf(coid, sizeof coid, "pre-snap-%d", i);
        h_resp r = h_order(&D[0], "mall-token", coid, "rp.card", 1);
        cr_assert_eq(r.status, 201, "%s", r.body);
        h_resp_free(&r);
    }
    wait_caught_up(1);
    /* a snapshot of a running standby: mdb_copy, its repl_seq inside */
    char snap[400];
    snprintf(snap, sizeof snap, "%s/snap", D[1].dir);
    cr_assert_eq(mkdir(snap, 0700), 0);
    const char *argv[] = {"/usr/bin/mdb_copy", D[1].data, snap, NULL};
    char *out = NULL, *err = NULL;
    cr_assert_eq(h_run(argv, NULL, NULL, 0, &out, &err), 0, "mdb_copy: %s", err);
    free(out);
    free(err);
    char *d = h_mdb_dump(snap);
    long long seq = h_mdb_dump_repl_seq(d);
    free(d);
    cr_assert(seq > 0);
    for (int i = 0; i < 10; i++) {
        char coid[32];
        snprintf(coid, sizeof coid, "post-snap-%d", i);
        h_resp r = h_order(&D[0], "mall-token", coid, "rp.card", 1);
        cr_assert_eq(r.status, 201, "%s", r.body);
        h_resp_free(&r);
    }
    stream_trim((uint64_t)seq + 1); /* the batches the snapshot holds are gone from the stream */

    /* a new node with an empty store cannot follow a stream that lost its start */
    setup_e();
    h_spawn(&E);
    int st = 0;
    while (waitpid(E.pid, &st, 0) < 0)
        ;
    E.pid = 0;
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0, "an empty node started on a trimmed stream");
    cr_assert(h_file_count(E.log, "bootstrap this node from a snapshot") >= 1,
              "the refusal does not say what to do");
    /* from the snapshot it starts, applies the rest, and ends with the others' data */
    const char *rm[] = {"/bin/rm", "-rf", E.data, NULL};
    cr_assert_eq(h_run(rm, NULL, NULL, 0, NULL, NULL), 0);
    cr_assert_eq(rename(snap, E.data), 0);
    cr_assert_eq(h_start(&E), 0, "the node did not start from the snapshot");
    cr_assert_eq(h_wait_for(e_caught_up, NULL, WAIT_MS), 0, "the new node did not catch up");
    h_daemon *all[] = {&D[0], &D[1], &D[2], &E};
    compare_and_stop(all, 4);
    for (int i = 0; i < NODES; i++)
        h_cleanup(&D[i]);
    h_cleanup(&E);
}

/* A single node with data turned into a replicated leader: its stream does
 * not hold that data, so a standby with an empty store refuses to follow it;
 * from a copy of the leader's store it follows. */
Test(repl, a_single_node_made_leader_gives_its_standbys_a_snapshot)
{
    JSZ = 0;
    cr_assert_eq(h_nats_start(&N, 3), 0, "the NATS cluster did not start");
    cr_assert_eq(h_sim_start(&S, NULL), 0, "supsim did not start");
    for (int i = 0; i < 2; i++)
        setup_node(i, "3000");
    /* node0 first as a single node: codes and an order */
    size_t len;
    char *text = h_read_file(D[0].config, &len);
    char *single = h_replace(text, "  enabled: true\n", "  enabled: false\n");
    h_write_config_text(&D[0], single);
    cr_assert_eq(h_start(&D[0]), 0, "node0 did not start as a single node");
    char *csv = h_codes_csv("SN", 10);
    h_resp r = h_import(&D[0], "rp.card", csv, 201);
    free(csv);
    h_resp_free(&r);
    r = h_order(&D[0], "mall-token", "single-1", "rp.card", 1);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    h_stop_clean(&D[0]);
    h_write_config_text(&D[0], text);
    free(single);
    free(text);
    cr_assert_eq(restart(&D[0]), 0, "node0 did not start replicated");
    wait_role(&D[0], "leader");
    /* an empty standby: refused, saying what to do */
    h_share_key(&D[0], &D[1]);
    h_spawn(&D[1]);
    int st = 0;
    while (waitpid(D[1].pid, &st, 0) < 0)
        ;
    D[1].pid = 0;
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0, "an empty standby followed a stream "
                                                     "that began on a store with data");
    cr_assert(h_file_count(D[1].log, "began on a store that already held data") >= 1,
              "the refusal does not say why");
    /* from a copy of the leader's store it follows */
    const char *rm[] = {"/bin/rm", "-rf", D[1].data, NULL};
    cr_assert_eq(h_run(rm, NULL, NULL, 0, NULL, NULL), 0);
    cr_assert_eq(mkdir(D[1].data, 0700), 0);
    const char *cp[] = {"/usr/bin/mdb_copy", D[0].data, D[1].data, NULL};
    char *err = NULL;
    cr_assert_eq(h_run(cp, NULL, NULL, 0, NULL, &err), 0, "mdb_copy: %s", err);
    free(err);
    cr_assert_eq(h_start(&D[1]), 0, "node1 did not start from the copy");
    wait_role(&D[1], "standby");
    r = h_order(&D[0], "mall-token", "replicated-1", "rp.card", 1);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    h_daemon *two[] = {&D[0], &D[1]};
    compare_and_stop(two, 2);
    for (int i = 0; i < 2; i++)
        h_cleanup(&D[i]);
}

/* A leader stopped cleanly hands the lease on: a standby leads well before
 * the lease's TTL (10 s here) would have run out. */
Test(repl, a_leader_that_stops_hands_the_lease_on_at_once)
{
    cluster_up("10000");
    int64_t t0 = h_now_ms();
    h_stop_clean(&D[0]);
    atomic_store(&LIVE[0], 0);
    int lead = -1;
    cr_assert_eq(h_wait_for(some_leader, &lead, WAIT_MS), 0, "no standby took over");
    int64_t took = h_now_ms() - t0;
    fprintf(stderr, "repl: node%d leads %lld ms after the leader stopped\n", lead, (long long)took);
    /* the lease lapsing would take 7.5 s at least: its TTL after the last renewal */
    cr_assert(took < 7000, "the hand-over took %lld ms: the lease was not released",
              (long long)took);
    cr_assert(h_file_count(D[0].log, "msg=repl.lease_released") == 1);
    h_resp r = h_order(&D[lead], "mall-token", "after-handover", "rp.card", 1);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    h_daemon *two[] = {&D[1], &D[2]};
    compare_and_stop(two, 2);
    for (int i = 0; i < NODES; i++)
        h_cleanup(&D[i]);
}

/* An order for end user `user` on node i: its status. */
static long order_for(int i, const char *coid, const char *user)
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"client_order_id\":\"%s\",\"sku\":\"rp.card\",\"end_user\":{\"id\":\"%s\"}}", coid,
             user);
    h_resp r = h_post_json(&D[i], "/v1/orders", "mall-token", body);
    long st = r.status;
    h_resp_free(&r);
    return st;
}

/* A risk rule made on the leader after the standbys started, and the orders
 * it counted there: the standby that takes over enforces both. */
Test(repl, a_new_leader_enforces_the_risk_rules_and_counts_of_the_old)
{
    cluster_up("2000");
    h_resp r = h_post_json(&D[0], "/v1/risk/rules", "ops-token",
                           "{\"id\":\"per-user\",\"variable\":\"user\",\"measure\":\"orders\","
                           "\"limit\":3,\"window_s\":43200,\"action\":\"deny\"}");
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    cr_assert_eq(order_for(0, "u-1", "alice"), 201);
    cr_assert_eq(order_for(0, "u-2", "alice"), 201);
    wait_caught_up(1);
    wait_caught_up(2);
    atomic_store(&LIVE[0], 0);
    cr_assert_eq(h_stop(&D[0], SIGKILL), 128 + SIGKILL);
    int lead = -1;
    cr_assert_eq(h_wait_for(some_leader, &lead, WAIT_MS), 0, "no standby took over");
    /* the leader's work starts on the wake signal: its catalog write is the last of it */
    cr_assert_eq(h_log_wait(&D[lead], "msg=repl.leading", 1, WAIT_MS), 0);
    cr_assert_eq(order_for(lead, "u-3", "alice"), 201, "the third order of the limit");
    cr_assert_eq(order_for(lead, "u-4", "alice"), 403, "the new leader let alice past the limit");
    cr_assert_eq(order_for(lead, "u-5", "bob"), 201);
    h_daemon *two[] = {&D[1], &D[2]};
    compare_and_stop(two, 2);
    for (int i = 0; i < NODES; i++)
        h_cleanup(&D[i]);
}

/* ---- without NATS, and large batches ------------------------------------------ */

/* node2 answers a mall's read of order *arg, stating its data's age. */
static int mall_reads(void *arg)
{
    char path[64], hv[32];
    snprintf(path, sizeof path, "/v1/orders/%lld", *(long long *)arg);
    h_resp r;
    int ok = h_http(&D[2], "GET", path, "mall-token", NULL, NULL, 0, &r) == 0 && r.status == 200 &&
             h_header(&r, "X-Perkhub-Staleness-Ms", hv, sizeof hv) && strcmp(hv, "unknown") &&
             atoll(hv) <= 30000;
    h_resp_free(&r);
    return ok;
}

static int is_connected(void *arg)
{
    json_t *rep = h_health_repl(arg);
    int ok = rep && json_is_true(json_object_get(rep, "connected"));
    json_decref(rep);
    return ok;
}

/* An order placed on whichever node leads now (a leader may be deposed and
 * restart after the outage): 1 once one was stored. */
static int placed_on_leader(void *arg)
{
    int lead = leader_now();
    if (lead < 0)
        return 0;
    h_resp r = h_order(&D[lead], "mall-token", arg, "rp.card", 1);
    int ok = r.status == 201;
    h_resp_free(&r);
    return ok;
}

/* A node whose store exists starts while every NATS server is down: it
 * serves reads from its store and refuses writes saying NATS is unreachable;
 * a node with an empty store refuses to start, naming the URLs; once NATS is
 * back the first catches up and ends with the others' data. */
Test(repl, a_node_starts_without_nats_and_catches_up_when_it_answers)
{
    cluster_up("3000");
    h_resp r = h_order(&D[0], "mall-token", "before-outage", "rp.card", 1);
    cr_assert_eq(r.status, 201, "%s", r.body);
    long long id = json_integer_value(json_object_get(json_object_get(r.json, "order"), "id"));
    h_resp_free(&r);
    wait_caught_up(2);
    h_stop_clean(&D[2]);
    atomic_store(&LIVE[2], 0);
    for (int i = 0; i < 3; i++)
        h_nats_kill(&N, i);

    cr_assert_eq(restart(&D[2]), 0, "node2 did not start without NATS");
    atomic_store(&LIVE[2], 1);
    json_t *rep = h_health_repl(&D[2]);
    cr_assert(rep, "no replication object in /v1/health");
    cr_assert(json_is_false(json_object_get(rep, "connected")), "connected is not false");
    cr_assert_str_eq(h_str(rep, "role"), "standby");
    cr_assert(json_is_null(json_object_get(rep, "staleness_ms")), "staleness_ms is not null");
    /* its data is of unknown age: ops read it, stated so; a mall is sent to
     * the leader (none known now) rather than told something maybe old */
    char path[64], hv[64];
    snprintf(path, sizeof path, "/v1/orders/%lld", id);
    cr_assert_eq(h_http(&D[2], "GET", path, "ops-token", NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(h_str(h_order_of(&r), "state"), "succeeded");
    cr_assert(h_header(&r, "X-Perkhub-Staleness-Ms", hv, sizeof hv), "no staleness header");
    cr_assert_str_eq(hv, "unknown");
    cr_assert(h_header(&r, "X-Perkhub-Applied-Seq", hv, sizeof hv), "no applied-seq header");
    cr_assert_gt(atoll(hv), 0);
    h_resp_free(&r);
    cr_assert_eq(h_http(&D[2], "GET", path, "mall-token", NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 503, "%s", r.body);
    cr_assert_str_eq(h_str(r.json, "error"), "stale", "%s", r.body);
    cr_assert(strstr(h_str(r.json, "message"), "of unknown age"), "%s", r.body);
    h_resp_free(&r);
    json_decref(rep);
    r = h_order(&D[2], "mall-token", "during-outage", "rp.card", 1);
    cr_assert_eq(r.status, 503, "%s", r.body);
    cr_assert_str_eq(h_str(r.json, "error"), "not_leader", "%s", r.body);
    cr_assert(strstr(h_str(r.json, "message"), "no NATS server is reachable (nats://127.0.0.1:"),
              "%s", r.body);
    h_resp_free(&r);

    /* an empty store cannot know the stream's uid without NATS */
    setup_e();
    h_spawn(&E);
    int st = 0;
    while (waitpid(E.pid, &st, 0) < 0)
        ;
    E.pid = 0;
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0, "a node with an empty store started");
    cr_assert(h_file_count(E.log, "no NATS server reachable at nats://127.0.0.1:") >= 1,
              "the refusal does not name the URLs");

    cr_assert_eq(h_nats_restart(&N), 0, "the NATS cluster did not start again");
    cr_assert_eq(h_wait_for(is_connected, &D[2], WAIT_MS), 0, "node2 never connected");
    /* caught up: a mall reads it again, told how old it may be */
    cr_assert_eq(h_wait_for(mall_reads, &id, WAIT_MS), 0, "node2 never served a mall's read");
    cr_assert_eq(h_wait_for(placed_on_leader, "after-outage", WAIT_MS), 0,
                 "no leader took an order after the outage");
    h_daemon *all[] = {&D[0], &D[1], &D[2]};
    compare_and_stop(all, NODES);
    for (int i = 0; i < NODES; i++)
        h_cleanup(&D[i]);
    h_cleanup(&E);
}

/* A batch over the servers' max_payload (64 KB here: an import of 5000 codes)
 * travels in parts; every standby applies it whole, at its last part's
 * sequence, and ends with the leader's data. */
Test(repl, a_batch_over_max_payload_travels_in_parts)
{
    cluster_up_with("6000", "64KB");
    long long before = h_nats_stream_last(&N, 0, STREAM);
    char *csv = h_codes_csv("BIG", 5000); /* sealed and indexed: well over 64 KB encoded */
    h_resp r = h_import(&D[0], "rp.card", csv, 201);
    free(csv);
    h_resp_free(&r);
    cr_assert_eq(h_file_count(D[0].log, "msg=repl.parts"), 1, "the import did not go in parts");
    long long after = h_nats_stream_last(&N, 0, STREAM);
    cr_assert(after >= before + 2, "the stream took %lld messages for the import", after - before);
    for (int i = 1; i < NODES; i++)
        wait_caught_up(i);
    r = h_order(&D[0], "mall-token", "after-parts", "rp.card", 1);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    h_daemon *all[] = {&D[0], &D[1], &D[2]};
    compare_and_stop(all, NODES);
    for (int i = 0; i < NODES; i++)
        h_cleanup(&D[i]);
}

/* A leader's first part of a batch whose last part never came (what a leader
 * that died between two parts leaves), put in the stream after `last` with
 * the store uid of the stream's first message. */
static void publish_orphan_part(long long last)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    char url[64], num[24];
    snprintf(url, sizeof url, "nats://127.0.0.1:%u", N.port[0]);
    cr_assert_eq(natsConnection_ConnectTo(&nc, url), NATS_OK);
    cr_assert_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    natsMsg *first = NULL, *m = NULL;
    jsErrCode jerr = 0;
    cr_assert_eq(js_GetMsg(&first, js, STREAM, 1, NULL, &jerr), NATS_OK, "get: %d", (int)jerr);
    const char *uid = NULL;
    cr_assert_eq(natsMsgHeader_Get(first, "Ph-Uid", &uid), NATS_OK);
    snprintf(num, sizeof num, "%lld", last);
    cr_assert_eq(natsMsg_Create(&m, "perkhub.batches", NULL, "not a whole batch", 17), NATS_OK);
    cr_assert_eq(natsMsgHeader_Set(m, "Ph-Uid", uid), NATS_OK);
    cr_assert_eq(natsMsgHeader_Set(m, "Ph-Part", "1/2"), NATS_OK);
    cr_assert_eq(natsMsgHeader_Set(m, "Nats-Expected-Last-Sequence", num), NATS_OK);
    jsPubAck *pa = NULL;
    cr_assert_eq(js_PublishMsg(&pa, js, m, NULL, &jerr), NATS_OK, "publish: %d", (int)jerr);
    cr_assert_eq((long long)pa->Sequence, last + 1);
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
    natsMsg_Destroy(first);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

/* Parts of a batch never completed are ignored on every node alike: the
 * leader's next write finds the stream ahead, it catches up past the part
 * and publishes its epoch marker after it; every standby drops the part when
 * the marker comes, and all end with the same data at the stream's last. */
Test(repl, parts_never_completed_are_ignored_on_every_node)
{
    cluster_up("6000");
    for (int i = 1; i < NODES; i++)
        wait_caught_up(i);
    long long last = h_nats_stream_last(&N, 0, STREAM);
    publish_orphan_part(last);
    cr_assert_eq(h_wait_for(placed_on_leader, "after-orphan", WAIT_MS), 0,
                 "the leader never took an order after the orphan part");
    cr_assert_eq(leader_now(), 0, "the leader changed");
    h_daemon *all[] = {&D[0], &D[1], &D[2]};
    long long end = compare_live(all, NODES);
    cr_assert(end >= last + 3, "the stream ends at %lld: no marker and order after the part", end);
    for (int i = 1; i < NODES; i++)
        cr_assert_eq(h_file_count(D[i].log, "msg=repl.parts_ignored"), 1, "node%d", i);
    compare_and_stop(all, NODES);
    for (int i = 0; i < NODES; i++)
        h_cleanup(&D[i]);
}

/* A standby's GET of order id as `token`: its status, and the staleness it
 * states (-1 "unknown", -2 none). */
static int standby_read(int node, long long id, const char *token, long long *stale, h_resp *keep)
{
    char path[64], hv[32];
    snprintf(path, sizeof path, "/v1/orders/%lld", id);
    h_resp r;
    if (h_http(&D[node], "GET", path, token, NULL, NULL, 0, &r) != 0)
        return -1;
    *stale = !h_header(&r, "X-Perkhub-Staleness-Ms", hv, sizeof hv) ? -2
             : strcmp(hv, "unknown")                                ? atoll(hv)
                                                                    : -1;
    int status = r.status;
    if (keep)
        *keep = r;
    else
        h_resp_free(&r);
    return status;
}

static long long STALE_ID;

static int served_fresh(void *arg)
{
    (void)arg;
    long long stale;
    return standby_read(1, STALE_ID, "mall-token", &stale, NULL) == 200 && stale >= 0 &&
           stale <= 1500;
}

static int refused_stale(void *arg)
{
    (void)arg;
    long long stale;
    return standby_read(1, STALE_ID, "mall-token", &stale, NULL) == 503;
}

/* Standbys state how old their data may be on every answer; past
 * replication.max_staleness_ms (1.5 s here) a mall's read is sent to the
 * leader, while ops still read the standby; in time again, it is served. */
Test(repl, a_standby_states_its_staleness_and_sends_malls_to_the_leader_past_its_bound)
{
    REPL_EXTRA = "  max_staleness_ms: 1500\n";
    cluster_up("3000");
    h_resp r = h_order(&D[0], "mall-token", "stale-1", "rp.card", 1);
    cr_assert_eq(r.status, 201, "%s", r.body);
    STALE_ID = json_integer_value(json_object_get(json_object_get(r.json, "order"), "id"));
    cr_assert(!h_header(&r, "X-Perkhub-Staleness-Ms", (char[8]){0}, 8),
              "the leader states a staleness");
    h_resp_free(&r);
    wait_caught_up(1);
    cr_assert_eq(h_wait_for(served_fresh, NULL, WAIT_MS), 0,
                 "the standby never served a mall's read stating a staleness within 1.5 s");
    json_t *rep = h_health_repl(&D[1]);
    cr_assert(json_is_integer(json_object_get(rep, "staleness_ms")), "health: no staleness_ms");
    cr_assert_eq(h_int(rep, "max_staleness_ms"), 1500);
    json_decref(rep);

    /* the stream out of reach: the standby's data ages past the bound */
    for (int i = 0; i < 3; i++)
        kill(N.pid[i], SIGSTOP);
    int refused = h_wait_for(refused_stale, NULL, 10000);
    long long stale = 0;
    h_resp mall = {0}, ops = {0};
    int ms = standby_read(1, STALE_ID, "mall-token", &stale, &mall);
    int os = standby_read(1, STALE_ID, "ops-token", &stale, &ops);
    for (int i = 0; i < 3; i++)
        kill(N.pid[i], SIGCONT);
    cr_assert_eq(refused, 0, "a mall's read was never refused while NATS was paused");
    cr_assert_eq(ms, 503, "%s", mall.body);
    cr_assert_str_eq(h_str(mall.json, "error"), "stale", "%s", mall.body);
    char url[64], hv[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", PORT[0]);
    cr_assert_str_eq(h_str(mall.json, "leader"), url, "%s", mall.body);
    cr_assert(h_header(&mall, "X-Perkhub-Leader", hv, sizeof hv) && !strcmp(hv, url));
    cr_assert(strstr(h_str(mall.json, "message"), "ms old, over replication.max_staleness_ms"),
              "%s", mall.body);
    cr_assert_eq(os, 200, "ops read the standby as it is: %s", ops.body);
    cr_assert_gt(stale, 1500, "ops are told the staleness");
    h_resp_free(&mall);
    h_resp_free(&ops);

    /* the stream back: the standby reaches its end, and malls read it again */
    cr_assert_eq(h_wait_for(served_fresh, NULL, WAIT_MS), 0,
                 "the standby never served a mall's read again");
    h_daemon *all[] = {&D[0], &D[1], &D[2]};
    compare_and_stop(all, NODES);
    for (int i = 0; i < NODES; i++)
        h_cleanup(&D[i]);
}
