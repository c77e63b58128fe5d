/*
 * test_grants.c — grants through perkhubd (issue 16 item 1): a grant order
 * reserves its code and answers a token once; gifting chains (each old token
 * dead at once); a claim issues the code, replays on its request_id and
 * refuses a second claimer; expiry returns the stock and fails the order;
 * ops extend (audited); 64 racing claims of one token make one claim; kill -9
 * between reserve and claim loses nothing; a recharge grant is performed at
 * claim time; and no token ever reaches the log, the events or the data files.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static h_daemon *live;

static void kill_leftover(void)
{
    h_leftover(live);
    live = NULL;
}

#define FAST "grants:\n  min_ttl_s: 1\n  expire_every_s: 1\n"

static void start(h_daemon *d, int codes)
{
    h_setup(d, FAST);
    live = d;
    cr_assert_eq(h_start(d), 0);
    if (codes) {
        char *csv = h_codes_csv("GRANT", codes);
        h_resp r = h_import(d, "test.card", csv, 201);
        h_resp_free(&r);
        free(csv);
    }
}

/* Tokens handed out during a test, for the canary scan. */
static char tokens[256][64];
static int ntokens;

static void keep_token(const char *t)
{
    cr_assert(t && !strncmp(t, "pg_", 3) && strlen(t) == 46, "token: %s", t ? t : "(none)");
    if (ntokens < 256)
        snprintf(tokens[ntokens++], sizeof tokens[0], "%s", t);
}

/* Places a grant of sku for end user `user`; returns the response (201). */
static h_resp grant(const h_daemon *d, const char *coid, const char *sku, int qty, const char *user,
                    const char *when)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"client_order_id\":\"%s\",\"sku\":\"%s\",\"quantity\":%d,\"deliver\":\"grant\","
             "\"grant\":%s,\"end_user\":{\"id\":\"%s\",\"tags\":{\"dept\":\"eng\"}}}",
             coid, sku, qty, when ? when : "{\"ttl_s\":3600}", user);
    return h_post_json(d, "/v1/orders", "mall-token", body);
}

static long long granted(const h_daemon *d, const char *coid, const char *sku, int qty,
                         const char *user, const char *when, char token[64])
{
    h_resp r = grant(d, coid, sku, qty, user, when);
    cr_assert_eq(r.status, 201, "%s", r.body);
    json_t *o = json_object_get(r.json, "order"), *g = json_object_get(r.json, "grant");
    cr_assert_str_eq(h_str(o, "state"), "granted", "%s", r.body);
    cr_assert_null(json_object_get(o, "codes"), "reserved codes shown: %s", r.body);
    cr_assert(json_is_true(json_object_get(g, "token_shown")));
    snprintf(token, 64, "%s", h_str(g, "token"));
    keep_token(token);
    long long id = h_int(g, "id");
    cr_assert_eq(id, h_int(o, "id"));
    h_resp_free(&r);
    return id;
}

static h_resp claim(const h_daemon *d, const char *token, const char *request_id,
                    const char *account)
{
    char body[256], rid[96] = "", acc[64] = "";
    if (request_id)
        snprintf(rid, sizeof rid, ",\"request_id\":\"%s\"", request_id);
    if (account)
        snprintf(acc, sizeof acc, ",\"account\":\"%s\"", account);
    snprintf(body, sizeof body, "{\"token\":\"%s\"%s%s}", token, rid, acc);
    return h_post_json(d, "/v1/grants/claim", "mall-token", body);
}

static h_resp gift(const h_daemon *d, long long id, const char *token, const char *to,
                   const char *request_id)
{
    char body[256], path[64], rid[96] = "";
    if (request_id)
        snprintf(rid, sizeof rid, ",\"request_id\":\"%s\"", request_id);
    snprintf(body, sizeof body, "{\"token\":\"%s\",\"to\":{\"id\":\"%s\"}%s}", token, to, rid);
    snprintf(path, sizeof path, "/v1/grants/%lld/gift", id);
    return h_post_json(d, path, "mall-token", body);
}

static long long stock(const h_daemon *d, const char *state)
{
    json_t *st = h_stats(d);
    long long n = h_int(h_stats_sku(st, "test.card"), state);
    json_decref(st);
    return n;
}

static json_t *grant_get(const h_daemon *d, long long id, const char *token, long expect)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/grants/%lld", id);
    h_resp r = h_get(d, path, token);
    cr_assert_eq(r.status, expect, "%s", r.body);
    json_t *g = json_incref(json_object_get(r.json, "grant"));
    h_resp_free(&r);
    return g;
}

static void check_store(const h_daemon *d)
{
    char *out = NULL;
    cr_assert_eq(h_check_store(d, &out), 0, "%s", out);
    free(out);
}

static int count_events(const h_daemon *d, const char *type, long long id)
{
    h_resp r = h_get(d, "/v1/events?limit=1000", "ops-token");
    int n = h_events_count(r.json, id, type);
    h_resp_free(&r);
    return n;
}

Test(grants, lifecycle_with_a_gifting_chain, .fini = kill_leftover)
{
    static h_daemon d;
    start(&d, 5);
    char t1[64], t2[64], t3[64];
    long long id = granted(&d, "G-1", "test.card", 1, "emp-0001", NULL, t1);
    cr_assert_eq(stock(&d, "available"), 4);
    /* a reserved code is nobody's to see before the claim: not its order's owner either */
    json_t *o0 = h_order_get(&d, id, "mall-token");
    cr_assert_null(json_object_get(o0, "codes"));
    json_decref(o0);
    h_resp lk = h_post_json(&d, "/v1/codes/lookup", "mall-token", "{\"client_order_id\":\"G-1\"}");
    cr_assert_eq(lk.status, 200, "%s", lk.body);
    json_t *res0 = json_array_get(json_object_get(lk.json, "results"), 0);
    cr_assert_str_eq(h_str(res0, "diagnosis"), "order_granted", "%s", lk.body);
    cr_assert_null(json_object_get(res0, "code"));
    cr_assert_eq(json_array_size(json_object_get(lk.json, "results")), 1);
    h_resp_free(&lk);
    cr_assert_eq(stock(&d, "reserved"), 1);
    /* a replay answers the grant without its token */
    h_resp r = grant(&d, "G-1", "test.card", 1, "emp-0001", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *g = json_object_get(r.json, "grant");
    cr_assert(json_is_false(json_object_get(g, "token_shown")));
    cr_assert_null(json_object_get(g, "token"));
    cr_assert_eq(h_mem_count(r.body, r.len, t1), 0);
    h_resp_free(&r);
    /* the owner and ops see it, another mall does not; the holder masked */
    g = grant_get(&d, id, "mall-token", 200);
    cr_assert_str_eq(h_str(g, "state"), "active");
    cr_assert_str_eq(h_str(g, "holder"), "em****01");
    json_decref(g);
    json_decref(grant_get(&d, id, "ops-token", 200));
    json_decref(grant_get(&d, id, "other-token", 404));
    /* gifted twice: each old token dead at once */
    r = gift(&d, id, t1, "friend-0002", "gift-1");
    cr_assert_eq(r.status, 200, "%s", r.body);
    snprintf(t2, sizeof t2, "%s", h_str(r.json, "token"));
    keep_token(t2);
    h_resp_free(&r);
    r = gift(&d, id, t1, "friend-0002", "gift-1"); /* the same gift again: a replay */
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(json_is_false(json_object_get(r.json, "token_shown")), "%s", r.body);
    cr_assert_null(json_object_get(r.json, "token"));
    h_resp_free(&r);
    r = claim(&d, t1, NULL, NULL);
    cr_assert_eq(r.status, 404, "the gifted-away token claims nothing: %s", r.body);
    h_resp_free(&r);
    r = gift(&d, id, t2, "third-0003", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    snprintf(t3, sizeof t3, "%s", h_str(r.json, "token"));
    keep_token(t3);
    g = json_object_get(r.json, "grant");
    cr_assert_eq(h_int(g, "gifted"), 2);
    cr_assert_str_eq(h_str(g, "holder"), "th****03");
    h_resp_free(&r);
    r = claim(&d, t2, NULL, NULL);
    cr_assert_eq(r.status, 404, "%s", r.body);
    h_resp_free(&r);
    /* the holder claims: the code is shown, the order succeeds */
    r = claim(&d, t3, "claim-1", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *o = json_object_get(r.json, "order");
    cr_assert_str_eq(h_str(o, "state"), "succeeded", "%s", r.body);
    cr_assert_eq(json_array_size(json_object_get(o, "codes")), 1, "%s", r.body);
    cr_assert_str_eq(h_str(json_object_get(r.json, "grant"), "state"), "claimed");
    h_resp_free(&r);
    r = claim(&d, t3, "claim-1", NULL); /* the same claim again */
    cr_assert_eq(r.status, 200, "%s", r.body);
    char hv[16];
    cr_assert_str_eq(h_header(&r, "Idempotent-Replay", hv, sizeof hv), "true");
    h_resp_free(&r);
    r = claim(&d, t3, "claim-2", NULL); /* another claimer */
    cr_assert_eq(r.status, 409, "%s", r.body);
    cr_assert_str_eq(h_str(r.json, "error"), "already_claimed");
    h_resp_free(&r);
    cr_assert_eq(stock(&d, "issued"), 1);
    cr_assert_eq(stock(&d, "reserved"), 0);
    cr_assert_eq(count_events(&d, "order.granted", id), 1);
    cr_assert_eq(count_events(&d, "grant.gifted", id), 2);
    cr_assert_eq(count_events(&d, "grant.claimed", id), 1);
    cr_assert_eq(count_events(&d, "order.succeeded", id), 1);
    /* the analytics counted each transition once under the grant's own tag */
    r = h_get(&d, "/v1/analytics/claims?by=tag", "mall-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *row = json_array_get(json_object_get(r.json, "rows"), 0);
    cr_assert_str_eq(h_str(row, "tag"), "dept=eng", "%s", r.body);
    cr_assert_eq(h_int(row, "granted"), 1, "%s", r.body);
    cr_assert_eq(h_int(row, "gifted"), 2, "%s", r.body);
    cr_assert_eq(h_int(row, "claimed"), 1, "%s", r.body);
    h_resp_free(&r);
    /* its owner's feed carries the grant events too */
    r = h_get(&d, "/v1/events?limit=1000", "mall-token");
    cr_assert_eq(h_events_count(r.json, id, "grant.claimed"), 1);
    h_resp_free(&r);
    check_store(&d);
    h_stop(&d, SIGTERM);
    h_cleanup(&d);
}

static int perkctl(const h_daemon *d, char **out, ...)
{
    const char *argv[16] = {h_bin("PH_PERKCTL")};
    size_t n = 1;
    va_list ap;
    va_start(ap, out);
    for (const char *a; n < 15 && (a = va_arg(ap, const char *)) != NULL;)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    char env_url[128];
    snprintf(env_url, sizeof env_url, "PERKHUB_URL=http://127.0.0.1:%u", d->port);
    const char *env[] = {env_url, "PERKHUB_TOKEN=ops-token", NULL};
    return h_run(argv, env, NULL, 0, out, NULL);
}

typedef struct grant_wait {
    const h_daemon *d;
    long long id;
} grant_wait;

static int grant_expired(void *arg)
{
    grant_wait *w = arg;
    char path[64];
    snprintf(path, sizeof path, "/v1/grants/%lld", w->id);
    h_resp r = h_get(w->d, path, "mall-token");
    int done =
        r.status == 200 && !strcmp(h_str(json_object_get(r.json, "grant"), "state"), "expired");
    h_resp_free(&r);
    return done;
}

Test(grants, expiry_returns_the_stock_and_extend_keeps_a_grant, .fini = kill_leftover)
{
    static h_daemon d;
    start(&d, 5);
    char ta[64], tb[64];
    long long a = granted(&d, "E-1", "test.card", 2, "emp-0001", "{\"ttl_s\":2}", ta);
    long long b = granted(&d, "E-2", "test.card", 1, "emp-0002", "{\"ttl_s\":2}", tb);
    cr_assert_eq(stock(&d, "available"), 2);
    /* ops extend b by an hour, audited */
    char body[128], path[64], at[40];
    h_rfc3339(h_wall_ms() + 3600 * 1000, at, sizeof at);
    snprintf(body, sizeof body, "{\"expires_at\":\"%s\"}", at);
    snprintf(path, sizeof path, "/v1/grants/%lld/extend", b);
    h_resp r = h_post_json(&d, path, "mall-token", body);
    cr_assert_eq(r.status, 403, "a mall does not extend: %s", r.body);
    h_resp_free(&r);
    r = h_post_json(&d, path, "ops-token", body);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(json_array_size(json_object_get(json_object_get(r.json, "grant"), "extended")), 1);
    h_resp_free(&r);
    /* a expires by the job: its codes back in stock, its order failed */
    grant_wait w = {&d, a};
    cr_assert_eq(h_wait_for(grant_expired, &w, 15000), 0, "grant %lld never expired", a);
    cr_assert_eq(stock(&d, "available"), 4);
    cr_assert_eq(stock(&d, "reserved"), 1);
    json_t *o = h_order_get(&d, a, "mall-token");
    cr_assert_str_eq(h_str(o, "state"), "failed");
    cr_assert_str_eq(h_str(o, "reason"), "grant_expired");
    json_decref(o);
    /* b, due at the same time, was extended: the run that expired a left it */
    json_t *g = grant_get(&d, b, "mall-token", 200);
    cr_assert_str_eq(h_str(g, "state"), "active");
    json_decref(g);
    r = claim(&d, ta, NULL, NULL);
    cr_assert_eq(r.status, 410, "%s", r.body);
    cr_assert_str_eq(h_str(r.json, "error"), "grant_expired");
    h_resp_free(&r);
    /* perkctl lists and shows them, never a token */
    char *out = NULL, idtxt[24];
    cr_assert_eq(perkctl(&d, &out, "grants", "--state", "expired", NULL), 0, "%s", out);
    cr_assert(strstr(out, "STATE") && strstr(out, "expired") && !strstr(out, "active"), "%s", out);
    cr_assert(!strstr(out, ta + 3), "a token in perkctl's output");
    free(out);
    snprintf(idtxt, sizeof idtxt, "%lld", b);
    cr_assert_eq(perkctl(&d, &out, "grants", "show", idtxt, NULL), 0, "%s", out);
    cr_assert(strstr(out, "active") && strstr(out, "em****02"), "%s", out);
    free(out);
    h_rfc3339(h_wall_ms() + 7200 * 1000, at, sizeof at);
    cr_assert_eq(perkctl(&d, &out, "grants", "extend", idtxt, at, NULL), 0, "%s", out);
    cr_assert(strstr(out, "now expires"), "%s", out);
    free(out);
    cr_assert_eq(count_events(&d, "grant.expired", a), 1);
    cr_assert_eq(count_events(&d, "grant.extended", b), 2);
    r = h_get(&d, "/v1/audit?action=grant.extend", "ops-token");
    cr_assert_eq(json_array_size(json_object_get(r.json, "audit")), 2, "%s", r.body);
    h_resp_free(&r);
    /* the returned codes can be ordered again */
    r = h_order(&d, "mall-token", "AFTER-1", "test.card", 4);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    check_store(&d);
    h_stop(&d, SIGTERM);
    h_cleanup(&d);
}

#define RACERS 64

typedef struct racer {
    h_conn *conn;
    pthread_barrier_t *go;
    const char *token;
    int no;
    long status;
} racer;

static void *race_main(void *arg)
{
    racer *w = arg;
    char body[160];
    snprintf(body, sizeof body, "{\"token\":\"%s\",\"request_id\":\"racer-%d\"}", w->token, w->no);
    pthread_barrier_wait(w->go);
    h_resp r;
    if (h_conn_http(w->conn, "POST", "/v1/grants/claim", "mall-token", "application/json", body,
                    strlen(body), &r) == 0)
        w->status = r.status;
    h_resp_free(&r);
    return NULL;
}

Test(grants, sixty_four_racing_claims_make_one_claim, .fini = kill_leftover)
{
    static h_daemon d;
    start(&d, 3);
    char t[64];
    long long id = granted(&d, "R-1", "test.card", 1, "emp-0001", NULL, t);
    racer w[RACERS];
    pthread_t th[RACERS];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, RACERS);
    for (int i = 0; i < RACERS; i++) {
        w[i] = (racer){.conn = h_conn_new(&d), .go = &go, .token = t, .no = i};
        cr_assert_eq(pthread_create(&th[i], NULL, race_main, &w[i]), 0);
    }
    int won = 0, lost = 0;
    for (int i = 0; i < RACERS; i++) {
        pthread_join(th[i], NULL);
        h_conn_free(w[i].conn);
        won += w[i].status == 200;
        lost += w[i].status == 409;
    }
    pthread_barrier_destroy(&go);
    cr_assert_eq(won, 1, "claims that won: %d", won);
    cr_assert_eq(lost, RACERS - 1);
    cr_assert_eq(stock(&d, "issued"), 1);
    cr_assert_eq(count_events(&d, "grant.claimed", id), 1);
    check_store(&d);
    h_stop(&d, SIGTERM);
    h_cleanup(&d);
}

Test(grants, kill_9_between_reserve_and_claim_loses_nothing, .fini = kill_leftover)
{
    static h_daemon d;
    start(&d, 4);
    char t[64];
    granted(&d, "K-1", "test.card", 2, "emp-0001", NULL, t);
    h_stop(&d, SIGKILL);
    check_store(&d);
    cr_assert_eq(h_start(&d), 0);
    cr_assert_eq(stock(&d, "available"), 2);
    cr_assert_eq(stock(&d, "reserved"), 2);
    h_resp r = claim(&d, t, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(json_array_size(json_object_get(json_object_get(r.json, "order"), "codes")), 2);
    h_resp_free(&r);
    cr_assert_eq(stock(&d, "issued"), 2);
    cr_assert_eq(stock(&d, "available"), 2);
    h_stop(&d, SIGKILL);
    check_store(&d);
    h_cleanup(&d);
}

typedef struct order_wait {
    const h_daemon *d;
    long long id;
} order_wait;

static int order_final(void *arg)
{
    order_wait *w = arg;
    json_t *o = h_order_get(w->d, w->id, "mall-token");
    int done = o && !strcmp(h_str(o, "state"), "succeeded");
    json_decref(o);
    return done;
}

Test(grants, a_recharge_grant_is_performed_at_claim, .fini = kill_leftover)
{
    static h_daemon d;
    start(&d, 0);
    char t[64];
    long long id = granted(&d, "T-1", "test.topup", 1, "emp-0001", NULL, t);
    h_resp r = claim(&d, t, NULL, NULL);
    cr_assert_eq(r.status, 400, "a recharge claim names its account: %s", r.body);
    h_resp_free(&r);
    r = claim(&d, t, "c-1", "13800000001");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(h_mem_count(r.body, r.len, "13800000001"), 0, "the account shown: %s", r.body);
    h_resp_free(&r);
    order_wait w = {&d, id};
    cr_assert_eq(h_wait_for(order_final, &w, 15000), 0);
    json_t *o = h_order_get(&d, id, "mall-token");
    cr_assert_str_eq(h_str(o, "account"), "138****0001");
    json_decref(o);
    cr_assert_eq(count_events(&d, "order.accepted", id), 1, "sent once, at the claim");
    cr_assert_eq(count_events(&d, "order.succeeded", id), 1);
    cr_assert_eq(count_events(&d, "grant.claimed", id), 1);
    check_store(&d);
    h_stop(&d, SIGTERM);
    h_cleanup(&d);
}

/* 1 when the file holds the needle. */
static int file_has(const char *path, const char *needle)
{
    size_t len = 0;
    char *buf = h_read_file(path, &len);
    long n = buf ? h_mem_count(buf, len, needle) : 0;
    free(buf);
    return n > 0;
}

Test(grants, tokens_never_reach_the_log_events_or_data_files, .fini = kill_leftover)
{
    static h_daemon d;
    ntokens = 0;
    start(&d, 10);
    char t[64], n1[64];
    long long id = granted(&d, "C-1", "test.card", 1, "emp-0001", NULL, t);
    h_resp r = gift(&d, id, t, "friend-0002", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    snprintf(n1, sizeof n1, "%s", h_str(r.json, "token"));
    keep_token(n1);
    h_resp_free(&r);
    granted(&d, "C-2", "test.card", 1, "emp-0003", "{\"ttl_s\":1}", t);
    granted(&d, "C-3", "test.card", 1, "emp-0004", NULL, t);
    r = claim(&d, n1, "canary-claim", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    r = claim(&d, t, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    h_resp ev = h_get(&d, "/v1/events?limit=1000", "ops-token");
    h_stop(&d, SIGTERM);
    char data[400];
    snprintf(data, sizeof data, "%s/data.mdb", d.data);
    for (int i = 0; i < ntokens; i++) {
        cr_assert_eq(h_mem_count(ev.body, ev.len, tokens[i]), 0, "a token in the events");
        cr_assert_eq(h_mem_count(ev.body, ev.len, tokens[i] + 3), 0);
        cr_assert(!file_has(d.log, tokens[i] + 3), "a token in the log");
        cr_assert(!file_has(data, tokens[i] + 3), "a token in data.mdb");
    }
    h_resp_free(&ev);
    h_cleanup(&d);
}

/* A grant order a risk rule holds: its token is answered at once but claims
 * nothing until ops release it (then its code is reserved); a blocked one's
 * grant expires with it. */
Test(grants, a_held_grant_is_granted_on_release_and_dies_on_block, .fini = kill_leftover)
{
    static h_daemon d;
    start(&d, 4);
    const char *rule = "{\"id\":\"look-first\",\"variable\":\"user\",\"measure\":\"orders\","
                       "\"limit\":0,\"window_s\":3600,\"action\":\"review\"}";
    h_resp r;
    cr_assert_eq(h_http(&d, "POST", "/v1/risk/rules", "ops-token", "application/json", rule,
                        strlen(rule), &r),
                 0);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    char t[2][64];
    long long id[2];
    for (int i = 0; i < 2; i++) {
        char coid[16];
        snprintf(coid, sizeof coid, "H-%d", i);
        r = grant(&d, coid, "test.card", 1, "held-user", NULL);
        cr_assert_eq(r.status, 201, "%s", r.body);
        cr_assert_str_eq(h_str(json_object_get(r.json, "order"), "state"), "held");
        snprintf(t[i], sizeof t[i], "%s", h_str(json_object_get(r.json, "grant"), "token"));
        keep_token(t[i]);
        id[i] = h_int(json_object_get(r.json, "order"), "id");
        h_resp_free(&r);
    }
    cr_assert_eq(stock(&d, "available"), 4, "a held grant reserves nothing yet");
    r = claim(&d, t[0], NULL, NULL);
    cr_assert_eq(r.status, 409, "%s", r.body);
    cr_assert_str_eq(h_str(r.json, "error"), "grant_held");
    h_resp_free(&r);
    char path[64];
    snprintf(path, sizeof path, "/v1/reviews/%lld/release", id[0]);
    r = h_post_json(&d, path, "ops-token", "{}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(h_str(json_object_get(r.json, "order"), "state"), "granted", "%s", r.body);
    h_resp_free(&r);
    cr_assert_eq(stock(&d, "reserved"), 1);
    snprintf(path, sizeof path, "/v1/reviews/%lld/block", id[1]);
    r = h_post_json(&d, path, "ops-token", "{}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    json_t *g = grant_get(&d, id[1], "mall-token", 200);
    cr_assert_str_eq(h_str(g, "state"), "expired");
    json_decref(g);
    r = claim(&d, t[1], NULL, NULL);
    cr_assert_eq(r.status, 410, "%s", r.body);
    h_resp_free(&r);
    r = claim(&d, t[0], NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    cr_assert_eq(stock(&d, "issued"), 1);
    cr_assert_eq(stock(&d, "available"), 3);
    check_store(&d);
    h_stop(&d, SIGTERM);
    h_cleanup(&d);
}

static h_resp batch_post(const h_daemon *d, const char *query, const char *csv)
{
    char path[160];
    h_resp r;
    snprintf(path, sizeof path, "/v1/batches/grants?%s", query);
    cr_assert_eq(h_http(d, "POST", path, "mall-token", "text/csv", csv, strlen(csv), &r), 0);
    return r;
}

/* The token of line `line` of a batch answer (line,user_id,grant_id,token). */
static void batch_token(const char *csv, int line, char out[64], long long *grant)
{
    char prefix[24];
    snprintf(prefix, sizeof prefix, "\n%d,", line);
    const char *p = strstr(csv, prefix);
    cr_assert(p, "line %d missing in %s", line, csv);
    p = strchr(p + 1, ',') + 1; /* user_id */
    p = strchr(p, ',') + 1;     /* grant id */
    *grant = atoll(p);
    p = strchr(p, ',') + 1;
    size_t n = strcspn(p, "\n");
    snprintf(out, 64, "%.*s", (int)n, p);
}

Test(grants, a_welfare_batch_is_all_or_nothing_idempotent_and_exported, .fini = kill_leftover)
{
    static h_daemon d;
    ntokens = 0;
    start(&d, 3);
    /* bad lines: each named, nothing created */
    h_resp r = batch_post(&d, "batch_id=HR-1&ttl_s=3600",
                          "user_id,department,sku\nemp-1,eng,test.card\n,eng,test.card\n"
                          "emp-3,eng,no.such.sku\nemp-4,a=b,test.card\n");
    cr_assert_eq(r.status, 400, "%s", r.body);
    json_t *errs = json_object_get(r.json, "errors");
    cr_assert_eq(json_array_size(errs), 3, "%s", r.body);
    cr_assert_eq(h_int(json_array_get(errs, 0), "line"), 3);
    cr_assert_str_eq(h_str(json_array_get(errs, 0), "field"), "user_id");
    cr_assert_eq(h_int(json_array_get(errs, 1), "line"), 4);
    cr_assert_str_eq(h_str(json_array_get(errs, 1), "field"), "sku");
    cr_assert_eq(h_int(json_array_get(errs, 2), "line"), 5);
    cr_assert_eq(h_mem_count(r.body, r.len, "no.such.sku"), 0, "a value quoted: %s", r.body);
    h_resp_free(&r);
    cr_assert_eq(stock(&d, "available"), 3);
    /* a line no stock and no supplier can serve (test.card2 has no offer): refused whole */
    r = batch_post(&d, "batch_id=HR-1&ttl_s=3600",
                   "user_id,tag,sku\nemp-1,dept=eng,test.card\nemp-2,dept=eng,test.card2\n");
    cr_assert_eq(r.status, 409, "%s", r.body);
    cr_assert(strstr(h_str(r.json, "message"), "line 3: "), "%s", r.body);
    h_resp_free(&r);
    cr_assert_eq(stock(&d, "available"), 3);
    /* three lines: three grants, a token each; a replay the same ids, no token */
    const char *csv = "user_id,tag,sku\nemp-1,dept=eng,test.card\nemp-2,dept=eng,test.card\n"
                      "emp-3,dept=ops,test.topup\n";
    r = batch_post(&d, "batch_id=HR-2&ttl_s=3600", csv);
    cr_assert_eq(r.status, 201, "%s", r.body);
    char t1[64], t3[64];
    long long g1, g3;
    batch_token(r.body, 2, t1, &g1);
    batch_token(r.body, 4, t3, &g3);
    keep_token(t1);
    keep_token(t3);
    h_resp_free(&r);
    cr_assert_eq(stock(&d, "reserved"), 2);
    r = batch_post(&d, "batch_id=HR-2&ttl_s=3600", csv);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(h_mem_count(r.body, r.len, "pg_"), 0, "a replay shows no token: %s", r.body);
    char again[64];
    long long g1b;
    batch_token(r.body, 2, again, &g1b);
    cr_assert_eq(g1b, g1);
    h_resp_free(&r);
    r = batch_post(&d, "batch_id=HR-2&ttl_s=3600", "user_id,tag,sku\nemp-9,dept=eng,test.card\n");
    cr_assert_eq(r.status, 409, "another batch under the same id: %s", r.body);
    h_resp_free(&r);
    /* line 2 claimed, line 3 gifted: the export says so, without tokens */
    r = claim(&d, t1, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    r = gift(&d, g3, t3, "friend-9", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    keep_token(h_str(r.json, "token"));
    h_resp_free(&r);
    r = h_get(&d, "/v1/batches/grants/HR-2.csv", "mall-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(!strncmp(r.body, "row,grant_id,", 13) && strstr(r.body, "\n1,") &&
                  strstr(r.body, ",claimed,"),
              "%s", r.body);
    cr_assert(strstr(r.body, "\n3,") && strstr(r.body, ",active,fr****-9,1,"), "%s", r.body);
    cr_assert_eq(h_mem_count(r.body, r.len, "pg_"), 0);
    h_resp_free(&r);
    r = h_get(&d, "/v1/batches/grants/HR-2.csv", "other-token");
    cr_assert_eq(r.status, 404, "another mall's batch: %s", r.body);
    h_resp_free(&r);
    check_store(&d);
    h_stop(&d, SIGTERM);
    h_cleanup(&d);
}

/* Issue 16 item 4 through the real transitions: the claim figures of
 * GET /v1/analytics/claims (by tag and by client) equal a brute-force count
 * over GET /v1/grants of the same grants — granted, claimed, gifted — after
 * claims, gifts and claims of gifted grants. */
Test(grants, analytics_claims_agree_with_the_grants, .fini = kill_leftover)
{
    h_daemon d;
    start(&d, 40);
    static const char *const depts[] = {"eng", "hr", "ops"};
    char tok[30][64];
    long long ids[30];
    for (int i = 0; i < 30; i++) {
        char coid[32], user[32], body[512];
        snprintf(coid, sizeof coid, "an-%02d", i);
        snprintf(user, sizeof user, "employee-%02d", i);
        snprintf(body, sizeof body,
                 "{\"client_order_id\":\"%s\",\"sku\":\"test.card\",\"quantity\":1,"
                 "\"deliver\":\"grant\",\"grant\":{\"ttl_s\":3600},\"end_user\":{\"id\":\"%s\","
                 "\"tags\":{\"dept\":\"%s\"}}}",
                 coid, user, depts[i % 3]);
        h_resp r = h_post_json(&d, "/v1/orders", "mall-token", body);
        cr_assert_eq(r.status, 201, "%s", r.body);
        json_t *g = json_object_get(r.json, "grant");
        snprintf(tok[i], sizeof tok[i], "%s", h_str(g, "token"));
        keep_token(tok[i]);
        ids[i] = h_int(g, "id");
        h_resp_free(&r);
    }
    for (int i = 0; i < 30; i++) {
        if (i % 5 == 0) { /* gifted, and every other gift claimed by its new holder */
            char to[32];
            snprintf(to, sizeof to, "friend-%02d", i);
            h_resp r = gift(&d, ids[i], tok[i], to, NULL);
            cr_assert_eq(r.status, 200, "%s", r.body);
            snprintf(tok[i], sizeof tok[i], "%s", h_str(r.json, "token"));
            keep_token(tok[i]);
            h_resp_free(&r);
            if (i % 10)
                continue;
        } else if (i % 2) {
            continue; /* kept for later */
        }
        h_resp r = claim(&d, tok[i], NULL, NULL);
        cr_assert_eq(r.status, 200, "%s", r.body);
        h_resp_free(&r);
    }

    /* brute force over the grants themselves */
    long long want_granted[3] = {0}, want_claimed[3] = {0}, want_gifted[3] = {0};
    long long all_granted = 0, all_claimed = 0, all_gifted = 0;
    h_resp l = h_get(&d, "/v1/grants?limit=1000", "ops-token");
    cr_assert_eq(l.status, 200, "%s", l.body);
    size_t k;
    json_t *g;
    json_array_foreach(json_object_get(l.json, "grants"), k, g)
    {
        const char *tag = json_string_value(json_array_get(json_object_get(g, "tags"), 0));
        int t = -1;
        for (int j = 0; j < 3 && tag; j++)
            if (!strcmp(tag + strlen("dept="), depts[j]) && !strncmp(tag, "dept=", 5))
                t = j;
        cr_assert_geq(t, 0, "grant without its dept tag: %s", json_dumps(g, 0));
        int claimed = !strcmp(h_str(g, "state"), "claimed");
        long long gifted = h_int(g, "gifted");
        want_granted[t]++, all_granted++;
        want_claimed[t] += claimed, all_claimed += claimed;
        want_gifted[t] += gifted, all_gifted += gifted;
    }
    h_resp_free(&l);
    cr_assert_eq(all_granted, 30);
    cr_assert_eq(all_claimed, 3 + 12); /* 0, 10, 20 (gifted then claimed) + the other evens */
    cr_assert_eq(all_gifted, 6);

    h_resp a = h_get(&d, "/v1/analytics/claims?by=tag", "ops-token");
    cr_assert_eq(a.status, 200, "%s", a.body);
    int seen = 0;
    json_array_foreach(json_object_get(a.json, "rows"), k, g)
    {
        for (int j = 0; j < 3; j++) {
            char tag[32];
            snprintf(tag, sizeof tag, "dept=%s", depts[j]);
            if (strcmp(h_str(g, "tag"), tag))
                continue;
            seen++;
            cr_assert_eq(h_int(g, "granted"), want_granted[j], "%s: %s", tag, a.body);
            cr_assert_eq(h_int(g, "claimed"), want_claimed[j], "%s: %s", tag, a.body);
            cr_assert_eq(h_int(g, "gifted"), want_gifted[j], "%s: %s", tag, a.body);
            cr_assert_eq(h_int(g, "expired"), 0, "%s: %s", tag, a.body);
        }
    }
    cr_assert_eq(seen, 3, "%s", a.body);
    h_resp_free(&a);

    a = h_get(&d, "/v1/analytics/claims?by=client", "mall-token");
    cr_assert_eq(a.status, 200, "%s", a.body);
    json_t *row = json_array_get(json_object_get(a.json, "rows"), 0);
    cr_assert_eq(json_array_size(json_object_get(a.json, "rows")), 1, "%s", a.body);
    cr_assert_eq(h_int(row, "granted"), all_granted, "%s", a.body);
    cr_assert_eq(h_int(row, "claimed"), all_claimed, "%s", a.body);
    cr_assert_eq(h_int(row, "gifted"), all_gifted, "%s", a.body);
    h_resp_free(&a);
    check_store(&d);
    h_stop(&d, SIGTERM);
    live = NULL;
}
