/*
 * store_snapshot.c — a consistent copy of the store while it runs
 * (ph_store_snapshot, store.h): LMDB's compacting copy of one read
 * transaction into a temporary file, made durable and then renamed, so a
 * snapshot's name is only ever seen on a whole file. The replicated sequence
 * the copy holds is read back from the copy, not from the live store: the
 * copy's read transaction is LMDB's own, and the writer may have committed
 * (and moved repl_seq) between any read of ours and it.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "store/store_int.h"

#define SNAP_MIN_ROOM (16ull << 20)

/* The error of a failed write: a full disk is said as such (PH_ENOSPC). */
static int io_err(ph_err *err, int e, const char *what, const char *path)
{
    if (e == ENOSPC || e == EDQUOT)
        return ph_err_set(err, PH_ENOSPC, "snapshot: %s %s: the disk is full (%s)", what, path,
                          strerror(e));
    return ph_err_set(err, PH_EIO, "snapshot: %s %s: %s", what, path, strerror(e));
}

/* The directory holding path, fsynced: the rename is durable too. */
static int sync_parent(const char *path, ph_err *err)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    int fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return io_err(err, errno, "open the directory of", path);
    int rc = fsync(fd) == 0 ? PH_OK : io_err(err, errno, "fsync the directory of", path);
    close(fd);
    return rc;
}

int ph_store_file_repl_seq(const char *path, uint64_t *seq, ph_err *err)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi meta;
    int mrc = mdb_env_create(&env);
    if (!mrc)
        mrc = mdb_env_set_maxdbs(env, DB_COUNT);
    /* a file, not a data_dir; nobody else has it open: no lock file */
    if (!mrc)
        mrc = mdb_env_open(env, path, MDB_NOSUBDIR | MDB_RDONLY | MDB_NOLOCK, 0600);
    if (!mrc)
        mrc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    if (!mrc)
        mrc = mdb_dbi_open(txn, "meta", 0, &meta);
    if (!mrc)
        *seq = ph_store_meta_repl_seq(txn, meta, &mrc);
    if (txn)
        mdb_txn_abort(txn);
    if (env)
        mdb_env_close(env);
    return mrc ? ph_err_set(err, PH_EIO, "snapshot: %s: not a readable store: %s", path,
                            mdb_strerror(mrc))
               : PH_OK;
}

int ph_store_snapshot(ph_store *s, const char *path, uint64_t *repl_seq, uint64_t *bytes,
                      ph_err *err)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return ph_err_set(err, PH_EINVAL, "snapshot: the path is too long");
    unlink(tmp); /* a leftover of a copy cut short (a crash): never a snapshot */
    /* The snapshots usually share the store's file system: a copy that filled
     * it would make the store refuse orders (507). Taken only when the copy
     * (at most the store's used pages) leaves a quarter of that, and at least
     * 16 MiB, free besides. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    struct statvfs fs;
    uint64_t used = ph_store_map_used(s);
    uint64_t room = used / 4 > SNAP_MIN_ROOM ? used / 4 : SNAP_MIN_ROOM;
    if (statvfs(dirname(dir), &fs) == 0 && (uint64_t)fs.f_bavail * fs.f_frsize < used + room)
        return ph_err_set(err, PH_ENOSPC,
                          "snapshot: not taken: %llu bytes free where it goes, and a copy of up "
                          "to %llu bytes must leave %llu for the store to grow",
                          (unsigned long long)fs.f_bavail * fs.f_frsize, (unsigned long long)used,
                          (unsigned long long)room);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return io_err(err, errno, "create", tmp);
    /* as a reader: the writer grows the map only when no transaction of this
     * process is open, and the copy's is one */
    pthread_rwlock_rdlock(&s->maplock);
    int mrc = mdb_env_copyfd2(s->env, fd, MDB_CP_COMPACT);
    pthread_rwlock_unlock(&s->maplock);
    int rc = PH_OK;
    struct stat st;
    if (mrc)
        rc = mrc == ENOSPC || mrc == EDQUOT
                 ? io_err(err, mrc, "write", tmp)
                 : ph_err_set(err, PH_EIO, "snapshot: copy to %s: %s", tmp, mdb_strerror(mrc));
    else if (fsync(fd) != 0)
        rc = io_err(err, errno, "fsync", tmp);
    else if (fstat(fd, &st) != 0)
        rc = io_err(err, errno, "stat", tmp);
    if (close(fd) != 0 && rc == PH_OK)
        rc = io_err(err, errno, "close", tmp);
    uint64_t seq = 0;
    if (rc == PH_OK)
        rc = ph_store_file_repl_seq(tmp, &seq, err);
    if (rc == PH_OK && rename(tmp, path) != 0)
        rc = io_err(err, errno, "rename to", path);
    if (rc != PH_OK) {
        unlink(tmp);
        return rc;
    }
    if ((rc = sync_parent(path, err)) != PH_OK)
        return rc;
    if (repl_seq)
        *repl_seq = seq;
    if (bytes)
        *bytes = (uint64_t)st.st_size;
    return PH_OK;
}
