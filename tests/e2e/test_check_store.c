/*
 * `perkhubd --check-store` on damaged and read-only copies (issue 10, defect 5).
 *
 * A real store (batches, orders of two clients, their events) is copied, and
 * each copy damaged deterministically: seeded bit flips, truncation, the pages
 * holding a given event or order zeroed, and records deleted through LMDB
 * itself (the tail of the events, which leaves their numbering whole; a
 * client_orders entry; a stock entry; a code index entry) or rewritten through
 * it (a SKU's voided code count, which GET /v1/stats answers from: invariant
 * 38). The checker must
 * never die by a signal (LMDB aborts or faults on some damage: the check runs
 * in a child process), must exit 1 with a message for every copy whose damage
 * is targeted, and for a random flip either exit 1 with a message or say "ok"
 * with exactly the clean copy's counts (a flip in a free page or slack space
 * changes nothing). The clean copy passes; so does a copy in a directory the
 * checker cannot write (no lock file is created).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static h_daemon D;
static char ro_dir[64]; /* the read-only copy's directory, outside D.dir */

static void teardown(void)
{
    h_leftover(&D);
    if (ro_dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", ro_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", ro_dir);
        ro_dir[0] = 0;
    }
}

TestSuite(check_store, .fini = teardown, .timeout = 120);

#define NCODES  1200
#define NORDERS 160

/* A store with something in every database: two batches, orders of two
 * clients (one of them voided upstream later), their events. Stops the daemon. */
static void make_store(void)
{
    h_setup(&D, NULL);
    cr_assert_eq(h_start(&D), 0);
    char *csv = h_codes_csv("CS", NCODES);
    h_resp r = h_import(&D, "test.card", csv, 201);
    h_resp_free(&r);
    free(csv);
    r = h_import(&D, "test.card2", "code\nCS2-1\nCS2-2\nCS2-3\nCS2-4\n", 201);
    h_resp_free(&r);
    for (int i = 0; i < NORDERS; i++) {
        char coid[32];
        snprintf(coid, sizeof coid, "CS-O-%d", i);
        r = h_order(&D, i % 4 ? "mall-token" : "other-token", coid, "test.card", 1 + i % 3);
        cr_assert_eq(r.status, 201, "%s", r.body);
        h_resp_free(&r);
    }
    r = h_order(&D, "mall-token", "CS-O2-1", "test.card2", 2);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
}

/* Copies D's data.mdb (only: no lock file) into dir, created. */
static void copy_store(const char *dir, size_t truncate_to)
{
    char src[400], dst[400];
    cr_assert(mkdir(dir, 0700) == 0 || errno == EEXIST, "%s", dir);
    snprintf(src, sizeof src, "%s/data.mdb", D.data);
    snprintf(dst, sizeof dst, "%s/data.mdb", dir);
    size_t n = 0;
    char *b = h_read_file(src, &n);
    cr_assert_not_null(b);
    FILE *f = fopen(dst, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(b, 1, truncate_to && truncate_to < n ? truncate_to : n, f),
                 truncate_to && truncate_to < n ? truncate_to : n);
    fclose(f);
    free(b);
}

/* Runs perkhubd --check-store dir [--key-file D's key] (as `nobody` when
 * as_nobody): the exit status, or 128 + signal; stdout and stderr in *out. */
static int run_check(const char *dir, int with_key, int as_nobody, char **out)
{
    char key[400];
    snprintf(key, sizeof key, "%s/master.key", D.dir);
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        if (as_nobody && (setgid(65534) || setuid(65534)))
            _exit(99);
        const char *perkhubd = h_bin("PH_PERKHUBD");
        if (with_key)
            execl(perkhubd, perkhubd, "--check-store", dir, "--key-file", key, (char *)NULL);
        else
            execl(perkhubd, perkhubd, "--check-store", dir, (char *)NULL);
        _exit(98);
    }
    close(p[1]);
    h_buf b = {0};
    char chunk[4096];
    ssize_t n;
    while ((n = read(p[0], chunk, sizeof chunk)) > 0)
        h_buf_append(chunk, 1, (size_t)n, &b);
    close(p[0]);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    *out = b.p ? b.p : strdup("");
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The "ok: N codes, M orders, E events" line of a passing check, or "". */
static void ok_line(const char *out, char *line, size_t n)
{
    const char *p = strstr(out, ": ok: ");
    line[0] = 0;
    if (p)
        snprintf(line, n, "%.*s", (int)strcspn(p, "\n"), p);
}

/* A damaged copy: never a signal; exit 1 with a message naming the directory
 * and what is wrong, or (only when may_pass) "ok" with the clean counts.
 * Returns 1 when it was reported damaged. */
static int expect_reported(const char *dir, int may_pass, const char *clean_ok, const char *what)
{
    char *out = NULL, line[256];
    int rc = run_check(dir, 1, 0, &out);
    cr_assert_lt(rc, 128, "%s: --check-store died by signal %d:\n%s", what, rc - 128, out);
    if (rc == 0) {
        ok_line(out, line, sizeof line);
        cr_assert(may_pass, "%s: --check-store passed a damaged copy:\n%s", what, out);
        cr_assert_str_eq(line, clean_ok, "%s: passed with other counts than the clean copy", what);
    } else {
        cr_assert_eq(rc, 1, "%s: exit %d:\n%s", what, rc, out);
        cr_assert(strstr(out, dir), "%s: the message does not name the directory:\n%s", what, out);
        cr_assert(strstr(out, "CORRUPTED") || strstr(out, "INCONSISTENT") ||
                      strstr(out, "cannot open"),
                  "%s: no verdict in:\n%s", what, out);
    }
    free(out);
    return rc != 0;
}

/* Every page of file holding needle, zeroed. Returns how many. */
static int zero_pages_with(const char *file, const char *needle)
{
    size_t n = 0;
    char *b = h_read_file(file, &n);
    cr_assert_not_null(b);
    long psz = sysconf(_SC_PAGESIZE);
    int zeroed = 0;
    size_t nl = strlen(needle);
    for (size_t pg = 2 * (size_t)psz; pg + (size_t)psz <= n; pg += (size_t)psz) {
        if (h_mem_count(b + pg, (size_t)psz, needle) == 0 &&
            (pg + nl > n || memmem(b + pg + psz - nl, nl, needle, nl) == NULL))
            continue;
        memset(b + pg, 0, (size_t)psz);
        zeroed++;
    }
    FILE *f = fopen(file, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(b, 1, n, f), n);
    fclose(f);
    free(b);
    return zeroed;
}

/* Deletes through LMDB, in the copy at dir: what `del` says. */
typedef enum { DEL_EVENT_TAIL, DEL_CLIENT_ORDER, DEL_STOCK, DEL_CODE_INDEX } del_kind;

static void lmdb_delete(const char *dir, del_kind del)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *c;
    MDB_val k, v;
    static const struct {
        const char *name;
        unsigned flags;
    } dbs[] = {
        [DEL_EVENT_TAIL] = {"events", MDB_INTEGERKEY},
        [DEL_CLIENT_ORDER] = {"client_orders", MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP},
        [DEL_STOCK] = {"avail", MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP},
        [DEL_CODE_INDEX] = {"code_hash", 0},
    };
    cr_assert_eq(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 32);
    mdb_env_set_mapsize(env, 64u << 20);
    cr_assert_eq(mdb_env_open(env, dir, 0, 0600), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, dbs[del].name, dbs[del].flags, &dbi), 0, "%s", dbs[del].name);
    MDB_stat ms;
    mdb_stat(txn, dbi, &ms);
    cr_assert_gt(ms.ms_entries, 10, "%s has too few entries to damage", dbs[del].name);
    cr_assert_eq(mdb_cursor_open(txn, dbi, &c), 0);
    size_t keep = del == DEL_EVENT_TAIL ? ms.ms_entries * 6 / 10 : ms.ms_entries / 2, i = 0;
    for (int op = MDB_FIRST; mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT, i++) {
        if (i < keep)
            continue;
        cr_assert_eq(mdb_cursor_del(c, 0), 0);
        if (del != DEL_EVENT_TAIL)
            break;            /* one entry */
        op = MDB_GET_CURRENT; /* after a delete the cursor is on the next entry */
        if (mdb_cursor_get(c, &k, &v, op) != 0)
            break;
        cr_assert_eq(mdb_cursor_del(c, 0), 0);
        for (;;) {
            if (mdb_cursor_get(c, &k, &v, MDB_GET_CURRENT) != 0 || mdb_cursor_del(c, 0) != 0)
                break;
        }
        break;
    }
    mdb_cursor_close(c);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* In the copy at dir: sku's count of voided codes in `code_counts` one more
 * than the writer kept (docs/store.md, "Code counts": a 56-byte record, the
 * voided count the u64 at byte 40). */
static void lmdb_bump_voided(const char *dir, const char *sku)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k = {strlen(sku), (void *)sku}, v;
    cr_assert_eq(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 32);
    mdb_env_set_mapsize(env, 64u << 20);
    cr_assert_eq(mdb_env_open(env, dir, 0, 0600), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, "code_counts", 0, &dbi), 0);
    cr_assert_eq(mdb_get(txn, dbi, &k, &v), 0, "no counts for %s", sku);
    cr_assert_eq(v.mv_size, 56);
    uint8_t rec[56];
    uint64_t voided;
    memcpy(rec, v.mv_data, sizeof rec);
    memcpy(&voided, rec + 40, 8);
    voided++;
    memcpy(rec + 40, &voided, 8);
    v = (MDB_val){sizeof rec, rec};
    cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

Test(check_store, damaged_copies_are_reported_and_never_crash_the_checker)
{
    make_store();
    char dir[512], file[560], *out = NULL, clean_ok[256];

    /* the clean copy passes, with the key file (every code unsealed) */
    snprintf(dir, sizeof dir, "%s/clean", D.dir);
    copy_store(dir, 0);
    int rc = run_check(dir, 1, 0, &out);
    cr_assert_eq(rc, 0, "%s", out);
    ok_line(out, clean_ok, sizeof clean_ok);
    cr_assert(strstr(clean_ok, " orders, ") && clean_ok[0], "%s", out);
    free(out);

    /* targeted damage: each must be reported */
    size_t size = 0;
    snprintf(file, sizeof file, "%s/data.mdb", D.data);
    free(h_read_file(file, &size));
    const size_t cuts[] = {size / 2, size / 4, size / 4 * 3};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        snprintf(dir, sizeof dir, "%s/cut%zu", D.dir, i);
        copy_store(dir, cuts[i]);
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu of %zu bytes", cuts[i], size);
        expect_reported(dir, 0, clean_ok, what);
    }
    const char *needles[] = {"{\"seq\":50,", "\"client_order_id\":\"CS-O-77\"", "CS-O-120"};
    for (size_t i = 0; i < sizeof needles / sizeof needles[0]; i++) {
        snprintf(dir, sizeof dir, "%s/zero%zu", D.dir, i);
        copy_store(dir, 0);
        snprintf(file, sizeof file, "%s/data.mdb", dir);
        cr_assert_gt(zero_pages_with(file, needles[i]), 0, "no page holds %s", needles[i]);
        char what[96];
        snprintf(what, sizeof what, "the pages holding %s zeroed", needles[i]);
        expect_reported(dir, 0, clean_ok, what);
    }
    struct {
        del_kind del;
        const char *says;
    } dels[] = {
        {DEL_EVENT_TAIL, "has no event"},
        {DEL_CLIENT_ORDER, "client_orders"},
        {DEL_STOCK, "stock"},
        {DEL_CODE_INDEX, "code index"},
    };
    for (size_t i = 0; i < sizeof dels / sizeof dels[0]; i++) {
        snprintf(dir, sizeof dir, "%s/del%zu", D.dir, i);
        copy_store(dir, 0);
        lmdb_delete(dir, dels[i].del);
        rc = run_check(dir, 1, 0, &out);
        cr_assert_eq(rc, 1, "deletion %zu passed or crashed (%d):\n%s", i, rc, out);
        cr_assert(strstr(out, dels[i].says), "deletion %zu: expected '%s' in:\n%s", i, dels[i].says,
                  out);
        free(out);
    }
    snprintf(dir, sizeof dir, "%s/counts", D.dir);
    copy_store(dir, 0);
    lmdb_bump_voided(dir, "test.card");
    rc = run_check(dir, 1, 0, &out);
    cr_assert_eq(rc, 1, "a drifted code count passed or crashed (%d):\n%s", rc, out);
    cr_assert(strstr(out, "INCONSISTENT") && strstr(out, "code_counts: sku test.card: 1 voided, "
                                                         "but the codes say 0"),
              "a drifted code count: expected it named in:\n%s", out);
    free(out);

    /* seeded bit flips anywhere in the file: reported, or harmless */
    unsigned seed = 20261206;
    int reported = 0, copies = 120;
    for (int i = 0; i < copies; i++) {
        snprintf(dir, sizeof dir, "%s/flip", D.dir);
        copy_store(dir, 0);
        snprintf(file, sizeof file, "%s/data.mdb", dir);
        int fd = open(file, O_RDWR);
        cr_assert_geq(fd, 0);
        for (int b = 0; b < 4; b++) {
            off_t at = (off_t)(rand_r(&seed) % size);
            unsigned char byte;
            cr_assert_eq(pread(fd, &byte, 1, at), 1);
            byte ^= (unsigned char)(1u << (rand_r(&seed) % 8));
            cr_assert_eq(pwrite(fd, &byte, 1, at), 1);
        }
        close(fd);
        char what[64];
        snprintf(what, sizeof what, "flip copy %d (seed 20261206)", i);
        reported += expect_reported(dir, 1, clean_ok, what);
    }
    fprintf(stderr,
            "test_check_store: %d of %d bit-flipped copies reported damaged, the others "
            "passed with the clean counts; none crashed the checker\n",
            reported, copies);
    cr_assert_gt(reported, 0);
    h_cleanup(&D);
}

/* A copy in a directory the checker may not write: checked without LMDB's
 * lock file, which it does not create. As root the check runs as `nobody`. */
Test(check_store, a_read_only_copy_is_checked_without_writing_to_it)
{
    make_store();
    snprintf(ro_dir, sizeof ro_dir, "/tmp/perkhub-ro-XXXXXX");
    cr_assert_not_null(mkdtemp(ro_dir));
    char dir[128], file[160];
    snprintf(dir, sizeof dir, "%s/data", ro_dir);
    copy_store(dir, 0);
    snprintf(file, sizeof file, "%s/data.mdb", dir);
    int root = geteuid() == 0;
    cr_assert_eq(chmod(file, 0444), 0);
    cr_assert_eq(chmod(dir, 0555), 0);
    cr_assert_eq(chmod(ro_dir, 0755), 0);
    char *out = NULL;
    int rc = run_check(dir, 0, root, &out);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, ": ok: "), "%s", out);
    cr_assert(strstr(out, "read-only directory"), "%s", out);
    free(out);
    snprintf(file, sizeof file, "%s/lock.mdb", dir);
    struct stat st;
    cr_assert_neq(stat(file, &st), 0, "the check wrote %s", file);
    h_cleanup(&D);
}
