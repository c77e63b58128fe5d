/*
 * test_snapshot.c — snapshots (docs/replication.md, "Snapshots"): the
 * store's consistent copy (ph_store_snapshot: the same data as the source
 * under mdb_dump, the repl_seq the copy holds, no temporary left behind), the
 * snapshot directory (names, keep, leftovers), and the retention arithmetic
 * (ph_retain_purge_seq: reports in, the stream's new start out). The NATS
 * side is tests/e2e/test_repl_snap.c.
 */
#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "repl/retain.h"
#include "repl/snap.h"
#include "store/store.h"
#include "store_fixture.h"

static atomic_int HOOKED;

static int fake_hook(void *arg, const ph_cmd *batch, uint64_t prev, uint64_t *seq, ph_err *err)
{
    (void)arg, (void)batch, (void)err;
    *seq = prev + 1;
    atomic_fetch_add(&HOOKED, 1);
    return PH_OK;
}

/* A store whose batches pass a stream that takes everything (repl_seq grows). */
static void open_hooked(void)
{
    ph_store_opts o = {.dir = g_dir, .repl_hook = fake_hook};
    ph_err err = {0};
    cr_assert_eq(ph_store_open(&o, &g_s, &err), PH_OK, "%s", err.msg);
}

static void note(int i)
{
    char fields[64];
    /* an epoch marker names the sequence before it (--check-store invariant 37) */
    snprintf(fields, sizeof fields, "{\"node\":\"n%d\",\"after_seq\":%llu}", i,
             (unsigned long long)ph_store_repl_seq(g_s));
    ph_cmd c = {.type = PH_CMD_NOTE_EVENT, .now = 1700000000000 + i};
    c.in.note.name = "repl.leader";
    c.in.note.fields = fields;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
}

/* mdb_dump -a of a data_dir, or of a file (-n), without the mapsize and
 * maxreaders lines: the environment's settings (a compacted copy's map is its
 * own, a file opened without its lock file has LMDB's default readers), not
 * the data. */
static char *dump(const char *path, int file)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "/usr/bin/mdb_dump -a %s '%s'", file ? "-n" : "", path);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "popen mdb_dump");
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap), line[4096];
    while (fgets(line, sizeof line, p)) {
        if (!strncmp(line, "mapsize=", 8) || !strncmp(line, "maxreaders=", 11))
            continue;
        size_t l = strlen(line);
        if (n + l + 1 > cap)
            out = realloc(out, cap = (n + l + 1) * 2);
        memcpy(out + n, line, l);
        n += l;
    }
    out[n] = 0;
    cr_assert_eq(pclose(p), 0, "mdb_dump %s failed", path);
    return out;
}

/* How many entries of dir end with suffix. */
static int count_suffix(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    cr_assert(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name), s = strlen(suffix);
        n += l >= s && !strcmp(e->d_name + l - s, suffix);
    }
    closedir(d);
    return n;
}

TestSuite(snapshot, .init = fixture_setup, .fini = fixture_teardown);

Test(snapshot, the_copy_holds_the_source_and_its_sequence)
{
    open_hooked();
    const char *p[] = {P_IQ, P_TOPUP};
    ph_err err = {0};
    cr_assert_eq(put_products(p, 2, &err), PH_OK, "%s", err.msg);
    for (int i = 0; i < 5; i++)
        note(i);
    uint64_t want = ph_store_repl_seq(g_s);
    cr_assert_eq(want, 6);
    char snap[160];
    snprintf(snap, sizeof snap, "%s/snap.mdb", g_base);
    uint64_t seq = 0, bytes = 0;
    cr_assert_eq(ph_store_snapshot(g_s, snap, &seq, &bytes, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(seq, want, "the copy says %llu, the store %llu", (unsigned long long)seq,
                 (unsigned long long)want);
    struct stat st;
    cr_assert_eq(stat(snap, &st), 0);
    cr_assert_eq((uint64_t)st.st_size, bytes);
    cr_assert_eq(count_suffix(g_base, ".tmp"), 0, "a temporary file was left");
    uint64_t again = 0;
    cr_assert_eq(ph_store_file_repl_seq(snap, &again, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(again, want);
    char *a = dump(g_dir, 0), *b = dump(snap, 1);
    cr_assert_str_eq(a, b, "the snapshot's data differs from the store's");
    free(a);
    free(b);
    /* the copy opens as a store of its own: what a node started on it sees */
    ph_store_close(g_s);
    g_s = NULL;
    char dir2[160], mdb2[200];
    snprintf(dir2, sizeof dir2, "%s/node2", g_base);
    snprintf(mdb2, sizeof mdb2, "%s/data.mdb", dir2);
    cr_assert_eq(mkdir(dir2, 0700), 0);
    cr_assert_eq(rename(snap, mdb2), 0);
    g_s = open_at(dir2, 0);
    cr_assert_eq(ph_store_repl_seq(g_s), want);
    assert_check();
}

Test(snapshot, a_failed_copy_leaves_no_temporary_and_no_snapshot)
{
    open_hooked();
    note(1);
    ph_err err = {0};
    /* the rename cannot replace a directory that holds something */
    char snap[160], inner[200];
    snprintf(snap, sizeof snap, "%s/taken", g_base);
    snprintf(inner, sizeof inner, "%s/x", snap);
    cr_assert_eq(mkdir(snap, 0700), 0);
    cr_assert_eq(mkdir(inner, 0700), 0);
    cr_assert_eq(ph_store_snapshot(g_s, snap, NULL, NULL, &err), PH_EIO);
    cr_assert(strstr(err.msg, "snapshot: rename to"), "%s", err.msg);
    cr_assert_eq(count_suffix(g_base, ".tmp"), 0, "a temporary file was left");
    /* a directory that does not exist: refused before anything is written */
    snprintf(snap, sizeof snap, "%s/none/snap.mdb", g_base);
    cr_assert_eq(ph_store_snapshot(g_s, snap, NULL, NULL, &err), PH_EIO);
    cr_assert(strstr(err.msg, "snapshot: create"), "%s", err.msg);
    /* a leftover of a crash under the same name is not kept */
    snprintf(snap, sizeof snap, "%s/ok.mdb", g_base);
    char tmp[200];
    snprintf(tmp, sizeof tmp, "%s.tmp", snap);
    FILE *f = fopen(tmp, "w");
    fputs("half a copy", f);
    fclose(f);
    cr_assert_eq(ph_store_snapshot(g_s, snap, NULL, NULL, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(count_suffix(g_base, ".tmp"), 0);
}

Test(snapshot, the_directory_keeps_the_newest_and_clears_leftovers)
{
    open_hooked();
    char dir[160], path[400];
    snprintf(dir, sizeof dir, "%s/snaps", g_base);
    cr_assert_eq(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/snap-0000000000001-copy", dir);
    FILE *f = fopen(path, "w");
    fclose(f);
    snprintf(path, sizeof path, "%s/snap-0000000000002-copy.tmp", dir);
    f = fopen(path, "w");
    fclose(f);
    ph_logger log = {.fd = -1};
    ph_snaps *p = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_snaps_create(dir, 2, &log, &p, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(count_suffix(dir, "-copy") + count_suffix(dir, ".tmp"), 0, "leftovers kept");
    cr_assert_eq(ph_snaps_newest_seq(p), 0);
    int fd;
    ph_snap_info info;
    cr_assert_eq(ph_snaps_open_latest(p, &fd, &info, &err), PH_ENOTFOUND);
    ph_snap_info t[3];
    for (int i = 0; i < 3; i++) {
        note(i);
        cr_assert_eq(ph_snaps_take(p, g_s, 1796544000000 + i * 1000, &t[i], &err), PH_OK, "%s",
                     err.msg);
        cr_assert_eq(t[i].repl_seq, (uint64_t)i + 1);
    }
    cr_assert_str_eq(t[2].file, "snap-1796544002000-00000000000000000003.mdb");
    int64_t at;
    uint64_t seq;
    cr_assert(ph_snap_name_parse(t[2].file, &at, &seq));
    cr_assert_eq(at, 1796544002000);
    cr_assert_eq(seq, 3);
    cr_assert_not(ph_snap_name_parse("snap-1796544002000-0000000000000000000x.mdb", NULL, NULL));
    cr_assert_not(ph_snap_name_parse("snap-1796544002000-copy", NULL, NULL));
    ph_snap_info *v;
    size_t n;
    cr_assert_eq(ph_snaps_list(p, &v, &n, &err), PH_OK);
    cr_assert_eq(n, 2, "keep 2, %zu held", n);
    cr_assert_str_eq(v[0].file, t[2].file);
    cr_assert_str_eq(v[1].file, t[1].file);
    free(v);
    cr_assert_eq(ph_snaps_newest_seq(p), 3);
    cr_assert_eq(ph_snaps_open_latest(p, &fd, &info, &err), PH_OK, "%s", err.msg);
    cr_assert_str_eq(info.file, t[2].file);
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    cr_assert_eq((uint64_t)st.st_size, info.bytes);
    close(fd);
    ph_snaps_set_keep(p, 1);
    note(9);
    cr_assert_eq(ph_snaps_take(p, g_s, 1796544009000, NULL, &err), PH_OK);
    cr_assert_eq(ph_snaps_list(p, &v, &n, &err), PH_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(v[0].repl_seq, 4);
    free(v);
    ph_snaps_free(p);
}

/* ---- the retention arithmetic --------------------------------------------- */

#define HOLD 60000

Test(retain, the_stream_starts_after_the_newest_snapshot_of_a_live_node)
{
    /* a leader at 100, two standbys; the newest snapshot is at 80 */
    ph_retain_report v[] = {{.applied = 100, .snap_seq = 50, .age_ms = 10},
                            {.applied = 99, .snap_seq = 80, .age_ms = 500},
                            {.applied = 100, .snap_seq = 0, .age_ms = 0}};
    cr_assert_eq(ph_retain_purge_seq(v, 3, HOLD, 0, 1), 81);
    /* a margin keeps batches before it */
    cr_assert_eq(ph_retain_purge_seq(v, 3, HOLD, 10, 1), 71);
    cr_assert_eq(ph_retain_purge_seq(v, 3, HOLD, 80, 1), 0, "the margin covers the whole start");
    cr_assert_eq(ph_retain_purge_seq(v, 3, HOLD, 81, 1), 0);
    /* already trimmed that far: nothing to do */
    cr_assert_eq(ph_retain_purge_seq(v, 3, HOLD, 0, 81), 0);
    cr_assert_eq(ph_retain_purge_seq(v, 3, HOLD, 0, 90), 0);
    cr_assert_eq(ph_retain_purge_seq(v, 3, HOLD, 0, 80), 81);
}

Test(retain, never_past_a_batch_a_live_node_has_not_applied)
{
    /* a lagging standby at 60: batches 61.. stay, whatever the snapshots */
    ph_retain_report v[] = {{.applied = 100, .snap_seq = 90, .age_ms = 0},
                            {.applied = 60, .snap_seq = 40, .age_ms = HOLD}};
    cr_assert_eq(ph_retain_purge_seq(v, 2, HOLD, 0, 1), 61);
    /* a node that applied nothing yet holds everything */
    ph_retain_report w[] = {{.applied = 100, .snap_seq = 90, .age_ms = 0},
                            {.applied = 0, .snap_seq = 0, .age_ms = 0}};
    cr_assert_eq(ph_retain_purge_seq(w, 2, HOLD, 0, 1), 0);
}

Test(retain, a_node_not_heard_from_holds_nothing_back)
{
    ph_retain_report v[] = {{.applied = 100, .snap_seq = 90, .age_ms = 0},
                            {.applied = 10, .snap_seq = 95, .age_ms = HOLD + 1}};
    /* the silent node's lag and its snapshot both count for nothing */
    cr_assert_eq(ph_retain_purge_seq(v, 2, HOLD, 0, 1), 91);
    /* nobody live holds a snapshot: nothing is trimmed */
    ph_retain_report w[] = {{.applied = 100, .snap_seq = 0, .age_ms = 0},
                            {.applied = 100, .snap_seq = 95, .age_ms = HOLD * 3}};
    cr_assert_eq(ph_retain_purge_seq(w, 2, HOLD, 0, 1), 0);
    cr_assert_eq(ph_retain_purge_seq(NULL, 0, HOLD, 0, 1), 0);
}

Test(retain, the_config_keys_and_their_defaults)
{
    const char *y = "data_dir: var/data\nmaster_key_file: var/master.key\n";
    ph_config *cfg = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_config_load_string(y, strlen(y), "t.yaml", &cfg, &err), PH_OK, "%s", err.msg);
    cr_assert_null(cfg->snap_dir);
    cr_assert_eq(cfg->snap_every_s, 3600);
    cr_assert_eq(cfg->snap_keep, 3);
    cr_assert_eq(cfg->repl_hold_ttls, 20);
    cr_assert_eq(cfg->repl_trim_margin, 1000);
    ph_config_free(cfg);
    const char *bad = "data_dir: var/data\nmaster_key_file: var/master.key\n"
                      "snapshots:\n  keep: 0\n";
    cr_assert_eq(ph_config_load_string(bad, strlen(bad), "t.yaml", &cfg, &err), PH_EINVAL);
    cr_assert_str_eq(err.msg, "t.yaml:4:9: snapshots.keep: expected an integer 1..1000, got \"0\"");
}
