/*
 * Key rotation end to end (issue 14, item 4): a store sealed with key 1 (codes
 * and recharge accounts); `perkhubd keys add` and a restart; orders flowing
 * while the re-sealer moves every item to key 2, every code readable
 * throughout (issued by orders, read back through their orders); `keys list`
 * reaching 0 for key 1; `keys retire 1` refused while data remains (naming
 * the count) and accepted at 0; a restart without key 1, everything still
 * readable, and the audit trail of it all.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static h_daemon D;

static void teardown(void)
{
    h_leftover(&D);
}

TestSuite(rotation, .fini = teardown, .timeout = 240);

#define NCODES 20000
#define NKEPT  40 /* orders placed under key 1 whose codes are read back later */
#define NTOPUP 5

/* perkhubd -c config keys ARGS...: exit status, output and errors (caller frees). */
static int keys_cmd(const char *a1, const char *a2, char **out, char **err)
{
    const char *argv[] = {h_bin("PH_PERKHUBD"), "-c", D.config, "keys", a1, a2, NULL};
    return h_run(argv, NULL, NULL, 0, out, err);
}

/* The CODES and ACCOUNTS columns of key id's row of `keys list`; -1 when absent. */
static void list_row(const char *out, unsigned id, long long *codes, long long *accounts)
{
    *codes = *accounts = -1;
    for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        unsigned k;
        long long c, a;
        if (sscanf(l, "%u %lld %lld", &k, &c, &a) == 3 && k == id) {
            *codes = c;
            *accounts = a;
        }
    }
}

static const char *reseal_state(void)
{
    static char state[32];
    h_resp r = h_get(&D, "/v1/stats", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *rs = json_object_get(json_object_get(r.json, "keys"), "reseal");
    snprintf(state, sizeof state, "%s", json_string_value(json_object_get(rs, "state")));
    h_resp_free(&r);
    return state;
}

typedef struct worker {
    h_conn *conn;
    int idx;
    atomic_int *stop;
    int ok, bad;
    char why[256];
} worker;

/* Orders one code at a time, reading each order back: the code it was issued
 * must read the same from the store, whichever key seals it by then. */
static void *order_loop(void *arg)
{
    worker *w = arg;
    for (int n = 0; !atomic_load(w->stop) && n < 3000; n++) {
        char coid[64];
        snprintf(coid, sizeof coid, "R%d-%05d", w->idx, n);
        h_resp r;
        if (h_conn_order(w->conn, "mall-token", coid, "test.card", 1, &r) || r.status != 201) {
            if (!w->bad++)
                snprintf(w->why, sizeof w->why, "order %s: %ld %.150s", coid, r.status, r.body);
            h_resp_free(&r);
            continue;
        }
        json_t *o = json_object_get(r.json, "order");
        const char *code = json_string_value(
            json_object_get(json_array_get(json_object_get(o, "codes"), 0), "code"));
        char path[64], want[64];
        snprintf(want, sizeof want, "%s", code ? code : "");
        snprintf(path, sizeof path, "/v1/orders/%lld",
                 (long long)json_integer_value(json_object_get(o, "id")));
        h_resp_free(&r);
        h_resp g;
        int t = h_conn_http(w->conn, "GET", path, "mall-token", NULL, NULL, 0, &g);
        json_t *c = json_array_get(json_object_get(json_object_get(g.json, "order"), "codes"), 0);
        const char *again = json_string_value(json_object_get(c, "code"));
        if (t || g.status != 200 || !want[0] || !again || strcmp(again, want) != 0) {
            if (!w->bad++)
                snprintf(w->why, sizeof w->why, "%s read back: %ld %.150s", path, g.status, g.body);
        } else
            w->ok++;
        h_resp_free(&g);
    }
    return NULL;
}

/* The code of order id as its owner reads it (caller frees). */
static char *code_of(long long id)
{
    json_t *o = h_order_get(&D, id, "mall-token");
    const char *c =
        json_string_value(json_object_get(json_array_get(json_object_get(o, "codes"), 0), "code"));
    cr_assert(c, "order %lld has no code", id);
    char *copy = strdup(c);
    json_decref(o);
    return copy;
}

static long long audit_count(const char *action, const char *via)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/audit?action=%s", action);
    h_resp r = h_get(&D, path, "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    long long n = 0;
    json_t *rec;
    size_t i;
    json_array_foreach(json_object_get(r.json, "audit"), i, rec)
    {
        const char *v = json_string_value(json_object_get(rec, "via"));
        n += v && strcmp(v, via) == 0;
    }
    h_resp_free(&r);
    return n;
}

Test(rotation, rotate_under_orders_then_retire_and_restart_without_the_old_key)
{
    h_setup(&D, NULL);
    cr_assert_eq(h_start(&D), 0);
    char *csv = h_codes_csv("RK", NCODES);
    h_resp imp = h_import(&D, "test.card", csv, 201);
    h_resp_free(&imp);
    free(csv);
    long long kept[NKEPT], topup[NTOPUP];
    char *kept_code[NKEPT];
    for (int i = 0; i < NKEPT; i++) {
        char coid[32];
        snprintf(coid, sizeof coid, "K1-%03d", i);
        h_resp r = h_order(&D, "mall-token", coid, "test.card", 1);
        cr_assert_eq(r.status, 201, "%s", r.body);
        kept[i] = h_int(h_order_of(&r), "id");
        h_resp_free(&r);
        kept_code[i] = code_of(kept[i]);
    }
    for (int i = 0; i < NTOPUP; i++) {
        char body[256];
        snprintf(body, sizeof body,
                 "{\"client_order_id\":\"T1-%d\",\"sku\":\"test.topup\",\"quantity\":1,"
                 "\"account\":\"13800000001\",\"wait\":5}",
                 i);
        h_resp r = h_post_json(&D, "/v1/orders", "mall-token", body);
        cr_assert(r.status == 201 || r.status == 202, "%s", r.body);
        topup[i] = h_int(h_order_of(&r), "id");
        h_resp_free(&r);
    }
    h_stop_clean(&D);

    /* key 1 holds everything; a second key is added; retiring either is refused */
    char *out = NULL, *err = NULL;
    long long c1, a1, c2, a2;
    cr_assert_eq(keys_cmd("list", NULL, &out, &err), 0, "%s%s", out, err);
    list_row(out, 1, &c1, &a1);
    cr_assert_eq(c1, NCODES, "%s", out);
    cr_assert_eq(a1, NTOPUP, "%s", out);
    free(out), free(err);
    cr_assert_eq(keys_cmd("add", NULL, &out, &err), 0, "%s%s", out, err);
    cr_assert(strstr(out, "added key 2"), "%s", out);
    free(out), free(err);
    cr_assert_eq(keys_cmd("retire", "1", &out, &err), 1, "%s%s", out, err);
    char want[128];
    snprintf(want, sizeof want, "key 1 still seals %d items (%d codes, %d accounts)",
             NCODES + NTOPUP, NCODES, NTOPUP);
    cr_assert(strstr(err, want), "%s", err);
    cr_assert(strstr(err, "master.key is unchanged"), "%s", err);
    free(out), free(err);
    cr_assert_eq(keys_cmd("retire", "2", &out, &err), 1, "%s%s", out, err);
    cr_assert(strstr(err, "key 2 is the newest key"), "%s", err);
    free(out), free(err);
    cr_assert_eq(keys_cmd("retire", "index", &out, &err), 1, "%s%s", out, err);
    cr_assert(strstr(err, "the index key never rotates"), "%s", err);
    free(out), free(err);

    /* restart with keys 1 and 2: the re-seal runs while orders flow */
    cr_assert_eq(h_start(&D), 0);
    atomic_int stop = 0;
    worker w[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        w[i] = (worker){.conn = h_conn_new(&D), .idx = i, .stop = &stop};
        cr_assert_eq(pthread_create(&th[i], NULL, order_loop, &w[i]), 0);
    }
    int saw_running = 0;
    const char *st = "";
    int64_t t0 = h_now_ms(), deadline = t0 + 120000;
    while (h_now_ms() < deadline) {
        st = reseal_state();
        saw_running |= strcmp(st, "running") == 0;
        if (strcmp(st, "done") == 0 || strcmp(st, "failed") == 0)
            break;
        /* every code of the store stays readable meanwhile: `keys list` reads beside it */
        cr_assert_eq(keys_cmd("list", NULL, &out, &err), 0, "%s%s", out, err);
        list_row(out, 1, &c1, &a1);
        list_row(out, 2, &c2, &a2);
        cr_assert(c1 >= 0 && c2 >= 0, "%s", out);
        free(out), free(err);
    }
    int during = w[0].ok + w[1].ok;
    /* a figure for the report, not an assertion */
    fprintf(stderr,
            "rotation: %d items re-sealed in about %lld ms; %d orders (each read back) "
            "completed meanwhile\n",
            NCODES + NTOPUP, (long long)(h_now_ms() - t0), during);
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        h_conn_free(w[i].conn);
        cr_assert_eq(w[i].bad, 0, "worker %d: %s", i, w[i].why);
    }
    cr_assert_str_eq(st, "done");
    cr_assert(saw_running, "the re-seal was never seen running");
    cr_assert_gt(during, 0, "no order completed while the re-seal ran");
    for (int i = 0; i < NKEPT; i++) {
        char *c = code_of(kept[i]);
        cr_assert_str_eq(c, kept_code[i], "order %lld", kept[i]);
        free(c);
    }

    cr_assert_eq(keys_cmd("list", NULL, &out, &err), 0, "%s%s", out, err);
    list_row(out, 1, &c1, &a1);
    list_row(out, 2, &c2, &a2);
    cr_assert(c1 == 0 && a1 == 0, "%s", out);
    cr_assert(c2 == NCODES && a2 == NTOPUP, "%s", out);
    free(out), free(err);
    h_resp m = h_get(&D, "/metrics", "ops-token");
    cr_assert(strstr(m.body, "perkhub_reseal_pending_items{key_id=\"1\"} 0"), "%s", m.body);
    h_resp_free(&m);
    cr_assert_eq(audit_count("keys.reseal_started", "daemon"), 1);
    cr_assert_eq(audit_count("keys.reseal_done", "daemon"), 1);

    /* retired at 0, then a start without key 1: everything still reads */
    cr_assert_eq(keys_cmd("retire", "1", &out, &err), 0, "%s%s", out, err);
    cr_assert(strstr(out, "key 1 removed"), "%s", out);
    free(out), free(err);
    h_stop_clean(&D);
    char path[400];
    snprintf(path, sizeof path, "%s/master.key", D.dir);
    cr_assert_eq(h_file_count(path, "key 1 "), 0, "key 1 is still in the file");
    cr_assert_eq(h_start(&D), 0);
    for (int i = 0; i < NKEPT; i++) {
        char *c = code_of(kept[i]);
        cr_assert_str_eq(c, kept_code[i], "order %lld", kept[i]);
        free(c);
    }
    for (int i = 0; i < NTOPUP; i++) {
        json_t *o = h_order_get(&D, topup[i], "mall-token");
        cr_assert_str_eq(h_str(o, "account"), "138****0001");
        json_decref(o);
    }
    h_resp r = h_order(&D, "mall-token", "AFTER-1", "test.card", 3);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    cr_assert_eq(audit_count("keys.retire", "cli"), 1);
    cr_assert_str_eq(reseal_state(), "idle");
    h_stop_clean(&D);
    char *check = NULL;
    cr_assert_eq(h_check_store(&D, &check), 0, "%s", check);
    free(check);
    /* and once more: the retired key's check value is gone, nothing to drop again */
    cr_assert_eq(h_start(&D), 0);
    cr_assert_eq(audit_count("keys.retire", "cli"), 1);
    h_stop_clean(&D);
    for (int i = 0; i < NKEPT; i++)
        free(kept_code[i]);
    h_cleanup(&D);
}
