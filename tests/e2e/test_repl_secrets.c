/*
 * test_repl_secrets.c — rule 3 across nodes (docs/design.md, issue 19): what
 * a leader publishes to the replication stream carries no secret in clear.
 * The stream is kept on the NATS servers' disks, which are not perkhub's: a
 * card code, a recharge account, an end user's id, phone, device or address,
 * a claim token or a client's bearer token must reach them sealed or hashed,
 * as they reach the store.
 *
 * One nats-server with JetStream (the stream R1) and one leader on loopback,
 * the supplier simulator for the recharge; every secret is a known string the
 * test sends, and every file of the server's JetStream store is searched for
 * it, byte for byte, after the server stopped (its blocks flushed). The
 * search is shown able to find what is there: the SKUs and the client order
 * ids, not secrets, are in the same files in clear.
 */
#define _XOPEN_SOURCE 700
#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"

#define WAIT_MS 20000

static h_nats N;
static h_sim S;
static h_daemon D;

static void teardown(void)
{
    h_leftover(&D);
    h_nats_stop(&N);
    if (S.pid > 0)
        h_sim_stop(&S);
}

TestSuite(repl_secrets, .fini = teardown, .timeout = 120);

/* The strings searched for; a NULL ends the list. */
static const char *SECRET[16];
static const char *CLEAR[8];
static int FOUND_SECRET[16], FOUND_CLEAR[8], FILES;

static void search(const char *buf, size_t len, const char *const *needles, int *found)
{
    for (int i = 0; needles[i]; i++)
        if (memmem(buf, len, needles[i], strlen(needles[i])))
            found[i]++;
}

static int visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag != FTW_F)
        return 0;
    size_t len;
    char *buf = h_read_file(path, &len);
    if (!buf)
        return 0;
    FILES++;
    search(buf, len, SECRET, FOUND_SECRET);
    search(buf, len, CLEAR, FOUND_CLEAR);
    free(buf);
    return 0;
}

static int is_final(json_t *o, void *arg)
{
    (void)arg;
    return !strcmp(h_str(o, "state"), "succeeded") || !strcmp(h_str(o, "state"), "failed");
}

Test(repl_secrets, the_stream_holds_no_secret_in_clear)
{
    cr_assert_eq(h_nats_start(&N, 1), 0, "nats-server did not start");
    cr_assert_eq(h_sim_start(&S, NULL), 0, "supsim did not start");
    char sup[1024], urls[128], body[4096];
    h_sim_supplier_yaml(&S, "gwa", "gateway",
                        "    priority: 20\n    timeout_ms: 1500\n    connect_timeout_ms: 1000\n",
                        NULL, sup, sizeof sup);
    snprintf(body, sizeof body,
             "suppliers:\n%s"
             "  - id: acme\n    plugin: manual\n"
             "products:\n"
             "  - sku: sec.card\n    name: Card\n    brand: b\n    category: c\n"
             "    delivery: card_code\n    face_value: \"30.00\"\n"
             "  - sku: sec.topup\n    name: Top-up\n    brand: sim\n    category: telecom\n"
             "    delivery: recharge\n    face_value: \"50.00\"\n    offers:\n"
             "      - {supplier: gwa, supplier_sku: \"20001\", cost: \"49.00\"}\n"
             "replication:\n  enabled: true\n  node_id: solo\n  urls: %s\n  replicas: 1\n"
             "  lease_ttl_ms: 3000\n  advertise_url: http://127.0.0.1:1\n",
             sup, h_nats_urls(&N, urls, sizeof urls));
    h_setup_custom(&D, body, NULL);
    cr_assert_eq(h_start(&D), 0, "perkhubd did not start");

    /* card codes, imported and issued */
    h_resp r = h_import(&D, "sec.card",
                        "code\nCODE-SECRET-7Q2XK9\nCODE-SECRET-M4P8ZT\nCODE-SECRET-W1N6RB\n", 201);
    h_resp_free(&r);
    r = h_order(&D, "mall-token", "sec-card-1", "sec.card", 2);
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert(strstr(r.body, "CODE-SECRET-"), "the order answers its codes: %s", r.body);
    h_resp_free(&r);

    /* a recharge to an account, for an end user with every personal member */
    const char *rc_body = "{\"client_order_id\":\"sec-top-1\",\"sku\":\"sec.topup\","
                          "\"account\":\"13912345678\",\"wait\":10,"
                          "\"end_user\":{\"id\":\"emp-secret-4242\",\"device_id\":"
                          "\"dev-secret-9911\",\"ip\":\"198.51.100.77\",\"phone\":"
                          "\"13800138000\"}}";
    cr_assert_eq(h_http(&D, "POST", "/v1/orders", "mall-token", "application/json", rc_body,
                        strlen(rc_body), &r),
                 0);
    cr_assert(r.status == 201 || r.status == 202, "%d %s", r.status, r.body);
    long long top = h_int(h_order_of(&r), "id");
    h_resp_free(&r);
    json_t *o = h_order_poll(&D, top, "mall-token", is_final, NULL, WAIT_MS, "recharge");
    cr_assert_str_eq(h_str(o, "state"), "succeeded");
    json_decref(o);

    /* a grant: its claim token is shown once, to the caller only */
    const char *g_body = "{\"client_order_id\":\"sec-grant-1\",\"sku\":\"sec.card\","
                         "\"deliver\":\"grant\",\"grant\":{\"ttl_s\":3600},"
                         "\"end_user\":{\"id\":\"holder-secret-5150\"}}";
    cr_assert_eq(h_http(&D, "POST", "/v1/orders", "mall-token", "application/json", g_body,
                        strlen(g_body), &r),
                 0);
    cr_assert_eq(r.status, 201, "%s", r.body);
    char *token = strdup(h_str(json_object_get(r.json, "grant"), "token"));
    cr_assert(token && !strncmp(token, "pg_", 3), "a claim token: %s", r.body);
    h_resp_free(&r);

    h_stop_clean(&D);
    long long last = h_nats_stream_last(&N, 0, "PERKHUB");
    cr_assert_gt(last, 3, "the leader published its batches (the stream's last: %lld)", last);
    /* a clean stop flushes the server's blocks to its files; they stay until
     * teardown removes the directory */
    kill(N.pid[0], SIGTERM);
    while (waitpid(N.pid[0], NULL, 0) < 0 && errno == EINTR)
        ;
    N.pid[0] = 0;

    const char *secret[] = {"CODE-SECRET-7Q2XK9",
                            "CODE-SECRET-M4P8ZT",
                            "CODE-SECRET-W1N6RB",
                            "13912345678",
                            "emp-secret-4242",
                            "dev-secret-9911",
                            "198.51.100.77",
                            "13800138000",
                            "holder-secret-5150",
                            "mall-token",
                            token,
                            token + 3,
                            NULL};
    const char *clear[] = {"sec.card", "sec.topup", "sec-card-1", "sec-top-1", "sec-grant-1", NULL};
    memcpy(SECRET, secret, sizeof secret);
    memcpy(CLEAR, clear, sizeof clear);
    char js[300];
    snprintf(js, sizeof js, "%s/js0", N.dir);
    cr_assert_eq(nftw(js, visit, 16, FTW_PHYS), 0, "cannot walk %s", js);
    cr_assert_gt(FILES, 0, "no file under %s", js);
    for (int i = 0; CLEAR[i]; i++)
        cr_assert_gt(FOUND_CLEAR[i], 0,
                     "the search finds nothing: \"%s\" (no secret, sent in clear) is in no file "
                     "of %s",
                     CLEAR[i], js);
    for (int i = 0; SECRET[i]; i++)
        cr_expect_eq(FOUND_SECRET[i], 0, "secret #%d (%.6s...) is in %d file(s) of the stream", i,
                     SECRET[i], FOUND_SECRET[i]);
    free(token);
}
