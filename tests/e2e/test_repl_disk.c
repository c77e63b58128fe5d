/*
 * test_repl_disk.c — a standby whose disk fills up (issue 19): a batch of the
 * stream it cannot commit changed nothing there, so it is behind, not
 * diverged. It says so (repl.apply_failed), keeps following, and once space
 * is freed it applies the batch and ends with the leader's data — instead of
 * marking itself unable to follow the stream for good.
 *
 * One nats-server (the stream R1), a leader, and a standby whose data
 * directory is a small tmpfs that a filler file fills. Mounting needs root
 * (CI runs as root); otherwise the test is skipped, saying why.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define WAIT_MS 20000

static h_nats N;
static h_daemon A, B; /* the leader; the standby on a small tmpfs */
static int mounted;

static void teardown(void)
{
    h_leftover(&A);
    h_leftover(&B);
    if (mounted)
        umount2(B.data, MNT_DETACH);
    mounted = 0;
    h_nats_stop(&N);
}

TestSuite(repl_disk, .fini = teardown, .timeout = 120);

static void setup(h_daemon *d, const char *name)
{
    char urls[128], body[2048];
    snprintf(body, sizeof body,
             "suppliers:\n  - id: acme\n    plugin: manual\n"
             "products:\n"
             "  - sku: rd.card\n    name: Card\n    brand: b\n    category: c\n"
             "    delivery: card_code\n    face_value: \"30.00\"\n"
             "replication:\n  enabled: true\n  node_id: %s\n  urls: %s\n  replicas: 1\n"
             "  lease_ttl_ms: 3000\n  advertise_url: http://127.0.0.1:1\n",
             name, h_nats_urls(&N, urls, sizeof urls));
    h_setup_custom(d, body, NULL);
}

static int is_role(void *arg)
{
    void **a = arg;
    return h_repl_role_is(a[0], a[1]);
}

/* B applied the stream to its end (the stream as the server reports it). */
static int caught_up(void *arg)
{
    (void)arg;
    long long last = h_nats_stream_last(&N, 0, "PERKHUB");
    return last > 0 && h_repl_applied(&B) == last;
}

Test(repl_disk, a_standby_out_of_disk_falls_behind_and_catches_up_when_freed)
{
    if (geteuid() != 0) {
        fprintf(stderr, "test_repl_disk: SKIPPED: mounting a small tmpfs needs root\n");
        cr_skip_test("needs root to mount a small tmpfs");
    }
    cr_assert_eq(h_nats_start(&N, 1), 0, "nats-server did not start");
    setup(&A, "lead");
    setup(&B, "standby");
    cr_assert_eq(h_start(&A), 0, "the leader did not start");
    cr_assert_eq(h_wait_for(is_role, (void *[]){&A, "leader"}, WAIT_MS), 0, "no leader");
    h_share_key(&A, &B);
    cr_assert_eq(mkdir(B.data, 0700), 0, "%s: %s", B.data, strerror(errno));
    if (mount("tmpfs", B.data, "tmpfs", 0, "size=8m,mode=0700") != 0) {
        fprintf(stderr, "test_repl_disk: SKIPPED: cannot mount a tmpfs on %s: %s\n", B.data,
                strerror(errno));
        cr_skip_test("cannot mount a tmpfs: %s", strerror(errno));
    }
    mounted = 1;
    cr_assert_eq(h_start(&B), 0, "the standby did not start");
    cr_assert_eq(h_wait_for(is_role, (void *[]){&B, "standby"}, WAIT_MS), 0, "no standby");
    h_resp r = h_import(&A, "rd.card", "code\nRD-1\nRD-2\n", 201);
    h_resp_free(&r);
    cr_assert_eq(h_wait_for(caught_up, NULL, WAIT_MS), 0, "the standby did not catch up");

    /* the standby's disk fills up; the leader imports codes that need new pages */
    cr_assert_gt(h_fs_fill(B.data), 0);
    char *csv = h_codes_csv("RDBIG", 20000);
    r = h_import(&A, "rd.card", csv, 201);
    free(csv);
    h_resp_free(&r);
    cr_assert_eq(h_log_wait(&B, "msg=repl.apply_failed", 1, WAIT_MS), 0,
                 "the standby did not say it could not commit the batch");
    cr_assert(!caught_up(NULL), "the standby applied a batch on a full disk");
    cr_assert_eq(h_file_count(B.log, "repl.cannot_apply"), 0,
                 "the standby gave up following the stream");

    /* space again: the same batch is applied, and both stores hold the same */
    char filler[400];
    snprintf(filler, sizeof filler, "%s/filler", B.data);
    cr_assert_eq(unlink(filler), 0);
    cr_assert_eq(h_wait_for(caught_up, NULL, WAIT_MS), 0,
                 "the standby did not catch up once space was freed");
    char *da = h_mdb_dump(A.data), *db = h_mdb_dump(B.data);
    cr_assert_eq(h_mdb_dump_repl_seq(da), h_mdb_dump_repl_seq(db));
    cr_assert(!strcmp(da, db), "the standby's store differs from the leader's");
    free(da);
    free(db);
    h_stop_clean(&B);
    h_stop_clean(&A);
    umount2(B.data, MNT_DETACH);
    mounted = 0;
    h_cleanup(&A);
    h_cleanup(&B);
}
