/*
 * snap.c — the snapshot directory (snap.h).
 */
#include "repl/snap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"

#define SNAP_PREFIX   "snap-"
#define SNAP_SUFFIX   ".mdb"
#define SNAP_NAME_LEN (5 + 13 + 1 + 20 + 4) /* "snap-" time "-" seq ".mdb" */

struct ph_snaps {
    char *dir;
    const ph_logger *log;
    _Atomic unsigned keep;
    pthread_mutex_t take_mu; /* one take (and prune) at a time */
};

static int all_digits(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return 0;
    return 1;
}

int ph_snap_name_parse(const char *name, int64_t *taken_at, uint64_t *seq)
{
    if (strlen(name) != SNAP_NAME_LEN || strncmp(name, SNAP_PREFIX, 5) || name[18] != '-' ||
        strcmp(name + 39, SNAP_SUFFIX) || !all_digits(name + 5, 13) || !all_digits(name + 19, 20))
        return 0;
    if (taken_at)
        *taken_at = (int64_t)strtoll(name + 5, NULL, 10);
    if (seq) {
        errno = 0;
        *seq = (uint64_t)strtoull(name + 19, NULL, 10);
        if (errno)
            return 0;
    }
    return 1;
}

const char *ph_snaps_dir(const ph_snaps *p)
{
    return p->dir;
}

void ph_snaps_set_keep(ph_snaps *p, unsigned keep)
{
    atomic_store(&p->keep, keep ? keep : 1);
}

/* Removes what a take cut short by a crash left: ".tmp" (the copy) and
 * "-copy" (not yet named by its sequence); never a snapshot (snap.h). */
static void remove_leftovers(ph_snaps *p)
{
    DIR *d = opendir(p->dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        int tmp = n > 4 && !strcmp(e->d_name + n - 4, ".tmp");
        int copy = n > 5 && !strcmp(e->d_name + n - 5, "-copy"); /* ph_snaps_take's */
        if (!strncmp(e->d_name, SNAP_PREFIX, 5) && (tmp || copy)) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", p->dir, e->d_name);
            if (unlink(path) == 0)
                ph_log(p->log, PH_LOG_INFO, NULL, "snapshot.leftover_removed", "file=%s", path);
        }
    }
    closedir(d);
}

int ph_snaps_create(const char *dir, unsigned keep, const ph_logger *log, ph_snaps **out,
                    ph_err *err)
{
    char probe[4096];
    if ((size_t)snprintf(probe, sizeof probe, "%s/x", dir) >= sizeof probe)
        return ph_err_set(err, PH_EINVAL, "snapshots.dir: the path is too long");
    int rc = ph_mkdir_parents(probe, err);
    if (rc)
        return rc;
    ph_snaps *p = calloc(1, sizeof *p);
    if (!p || !(p->dir = strdup(dir))) {
        free(p);
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    p->log = log;
    ph_snaps_set_keep(p, keep);
    pthread_mutex_init(&p->take_mu, NULL);
    remove_leftovers(p);
    *out = p;
    return PH_OK;
}

/* Newest first: by time, then sequence. */
static int by_newest(const void *a, const void *b)
{
    const ph_snap_info *x = a, *y = b;
    if (x->taken_at != y->taken_at)
        return x->taken_at < y->taken_at ? 1 : -1;
    if (x->repl_seq != y->repl_seq)
        return x->repl_seq < y->repl_seq ? 1 : -1;
    return 0;
}

int ph_snaps_list(ph_snaps *p, ph_snap_info **v, size_t *n, ph_err *err)
{
    *v = NULL;
    *n = 0;
    DIR *d = opendir(p->dir);
    if (!d)
        return ph_err_set(err, PH_EIO, "snapshots: cannot read %s: %s", p->dir, strerror(errno));
    size_t cap = 0;
    struct dirent *e;
    int rc = PH_OK;
    while (rc == PH_OK && (e = readdir(d))) {
        ph_snap_info s = {0};
        if (!ph_snap_name_parse(e->d_name, &s.taken_at, &s.repl_seq))
            continue;
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", p->dir, e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue; /* pruned meanwhile */
        s.bytes = (uint64_t)st.st_size;
        memcpy(s.file, e->d_name, SNAP_NAME_LEN + 1); /* parse checked the length */
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            ph_snap_info *nv = realloc(*v, nc * sizeof *nv);
            if (!nv) {
                rc = ph_err_set(err, PH_ENOMEM, "out of memory");
                break;
            }
            *v = nv;
            cap = nc;
        }
        (*v)[(*n)++] = s;
    }
    closedir(d);
    if (rc != PH_OK) {
        free(*v);
        *v = NULL;
        *n = 0;
        return rc;
    }
    if (*n)
        qsort(*v, *n, sizeof **v, by_newest);
    return PH_OK;
}

uint64_t ph_snaps_newest_seq(ph_snaps *p)
{
    ph_snap_info *v;
    size_t n;
    ph_err err = {0};
    uint64_t best = 0;
    if (ph_snaps_list(p, &v, &n, &err) != PH_OK)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (v[i].repl_seq > best)
            best = v[i].repl_seq;
    free(v);
    return best;
}

/* The oldest beyond keep removed. Under take_mu. */
static void prune(ph_snaps *p)
{
    ph_snap_info *v;
    size_t n;
    ph_err err = {0};
    unsigned keep = atomic_load(&p->keep);
    if (ph_snaps_list(p, &v, &n, &err) != PH_OK) {
        ph_log(p->log, PH_LOG_WARN, NULL, "snapshot.prune_failed", "detail=\"%s\"", err.msg);
        return;
    }
    for (size_t i = keep; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", p->dir, v[i].file);
        if (unlink(path) != 0 && errno != ENOENT)
            ph_log(p->log, PH_LOG_WARN, NULL, "snapshot.prune_failed", "file=%s detail=\"%s\"",
                   path, strerror(errno));
        else
            ph_log(p->log, PH_LOG_INFO, NULL, "snapshot.removed", "file=%s repl_seq=%llu", path,
                   (unsigned long long)v[i].repl_seq);
    }
    free(v);
}

int ph_snaps_take(ph_snaps *p, ph_store *s, int64_t now, ph_snap_info *out, ph_err *err)
{
    pthread_mutex_lock(&p->take_mu);
    /* the name holds the sequence the copy holds, known only after the copy:
     * written under a provisional name, renamed once known */
    char prov[4096], path[4096];
    snprintf(prov, sizeof prov, "%s/" SNAP_PREFIX "%013" PRId64 "-copy", p->dir, now);
    uint64_t seq = 0, bytes = 0;
    int rc = ph_store_snapshot(s, prov, &seq, &bytes, err);
    ph_snap_info info = {.repl_seq = seq, .bytes = bytes, .taken_at = now};
    snprintf(info.file, sizeof info.file, SNAP_PREFIX "%013" PRId64 "-%020" PRIu64 SNAP_SUFFIX, now,
             seq);
    snprintf(path, sizeof path, "%s/%s", p->dir, info.file);
    if (rc == PH_OK && rename(prov, path) != 0) {
        rc = ph_err_set(err, PH_EIO, "snapshot: rename to %s: %s", path, strerror(errno));
        unlink(prov);
    }
    if (rc == PH_OK) {
        ph_log(p->log, PH_LOG_INFO, NULL, "snapshot.taken", "file=%s repl_seq=%llu bytes=%llu",
               path, (unsigned long long)seq, (unsigned long long)bytes);
        prune(p);
    }
    pthread_mutex_unlock(&p->take_mu);
    if (rc == PH_OK && out)
        *out = info;
    return rc;
}

int ph_snaps_open_latest(ph_snaps *p, int *fd, ph_snap_info *info, ph_err *err)
{
    /* a take's prune may remove the newest we listed only after a newer one
     * was written: look again */
    for (int tries = 0; tries < 5; tries++) {
        ph_snap_info *v;
        size_t n;
        int rc = ph_snaps_list(p, &v, &n, err);
        if (rc)
            return rc;
        if (!n)
            return ph_err_set(err, PH_ENOTFOUND,
                              "snapshots: none taken yet (the job snapshots.take, or perkctl "
                              "snapshot take)");
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", p->dir, v[0].file);
        *info = v[0];
        free(v);
        if ((*fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0)
            return PH_OK;
        if (errno != ENOENT)
            return ph_err_set(err, PH_EIO, "snapshots: cannot open %s: %s", path, strerror(errno));
    }
    return ph_err_set(err, PH_EIO, "snapshots: %s keeps changing under us", p->dir);
}

void ph_snaps_free(ph_snaps *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->take_mu);
    free(p->dir);
    free(p);
}
