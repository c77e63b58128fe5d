/*
 * keyfile.c — editing the master key file for rotation (crypto.h, "Key file
 * editing"): create one, add the next key, remove a retired one.
 *
 * An edit holds an exclusive flock on the file for its whole read-modify-write,
 * so two `perkhubd keys add` never hand out the same id, and replaces the file
 * by rename: a reader (a starting daemon) sees the old file or the new one,
 * never half of one. The new text goes to a private temp file (mkostemp, mode
 * 0600) that is fsync'ed before the rename and the directory after it: a key
 * that seals data must survive a crash as surely as the data does.
 */
#include "crypto/crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"

int ph_keyfile_create(const char *path, ph_err *err)
{
    if (access(path, F_OK) == 0)
        return ph_err_set(err, PH_EDUP,
                          "%s: a key file exists already; refusing to overwrite it (its keys may "
                          "seal data): use `perkhubd keys add` to rotate",
                          path);
    ph_keyring *kr = NULL;
    int rc = ph_keyring_load(path, 1, &kr, err);
    ph_keyring_free(kr);
    return rc;
}

/* The file's text, locked: *fd holds the flock until the caller closes it.
 * The lock is taken on the file at path right now (a concurrent edit may have
 * replaced it while we waited). */
static int locked_read(const char *path, int *fd, char **text, size_t *len, ph_err *err)
{
    for (int tries = 0; tries < 8; tries++) {
        int f = open(path, O_RDONLY | O_CLOEXEC);
        if (f < 0)
            return ph_err_set(err, errno == ENOENT ? PH_ENOTFOUND : PH_EIO,
                              "%s: cannot open key file: %s", path, strerror(errno));
        struct stat a, b;
        if (flock(f, LOCK_EX) != 0 || fstat(f, &a) != 0) {
            close(f);
            return ph_err_set(err, PH_EIO, "%s: cannot lock key file: %s", path, strerror(errno));
        }
        if (stat(path, &b) != 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
            close(f); /* replaced while we waited: lock the new one */
            continue;
        }
        char *buf = malloc((size_t)a.st_size + 1);
        ssize_t n = buf ? pread(f, buf, (size_t)a.st_size, 0) : -1;
        if (n != (ssize_t)a.st_size) {
            if (buf)
                ph_wipe(buf, (size_t)a.st_size + 1);
            free(buf);
            close(f);
            return ph_err_set(err, PH_EIO, "%s: cannot read key file", path);
        }
        buf[n] = 0;
        *fd = f;
        *text = buf;
        *len = (size_t)n;
        return PH_OK;
    }
    return ph_err_set(err, PH_EIO, "%s: key file keeps changing under us", path);
}

/* Replaces path with text: temp file (0600), fsync, rename, fsync directory. */
static int replace_file(const char *path, const char *text, size_t len, ph_err *err)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof ".tmp.XXXXXX");
    if (!tmp)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    int rc = PH_OK, fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = ph_err_set(err, PH_EIO, "%s: cannot write key file: %s", path, strerror(errno));
        free(tmp);
        return rc;
    }
    size_t off = 0;
    int ok = fchmod(fd, 0600) == 0;
    while (ok && off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        ok = w > 0;
        off += ok ? (size_t)w : 0;
    }
    ok = ok && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        rc = ph_err_set(err, PH_EIO, "%s: cannot write key file: %s; it is unchanged", path,
                        strerror(errno));
        unlink(tmp);
        free(tmp);
        return rc;
    }
    free(tmp);
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (dfd < 0 || fsync(dfd) != 0)
        rc = ph_err_set(err, PH_EIO, "%s: written, but its directory could not be synced", path);
    if (dfd >= 0)
        close(dfd);
    free(dir);
    return rc;
}

static void text_free(char *text, size_t len)
{
    if (text)
        ph_wipe(text, len);
    free(text);
}

int ph_keyfile_add(const char *path, uint16_t *new_id, ph_err *err)
{
    int fd = -1;
    char *text = NULL, *neu = NULL;
    size_t len = 0, cap = 0;
    ph_keyring *kr = NULL;
    uint8_t raw[PH_KEY_LEN];
    char hex[2 * PH_KEY_LEN + 1];
    int rc = locked_read(path, &fd, &text, &len, err);
    /* the whole file must load as it is now (mode, syntax) before we add to it */
    if (rc == PH_OK)
        rc = ph_keyring_load(path, 0, &kr, err);
    uint16_t id = kr ? ph_keyring_active_id(kr) : 0;
    if (rc == PH_OK && id == 65535)
        rc = ph_err_set(err, PH_ELIMIT, "%s: key 65535 is the last id; no key can follow it", path);
    if (rc == PH_OK && ph_random_bytes(raw, sizeof raw) != PH_OK)
        rc = ph_err_set(err, PH_ECRYPTO, "%s: the OS random generator failed", path);
    if (rc == PH_OK) {
        ph_hex_encode(raw, PH_KEY_LEN, hex);
        cap = len + 96;
        if (!(neu = malloc(cap)))
            rc = ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    if (rc == PH_OK) {
        int sep = len && text[len - 1] != '\n';
        int n = snprintf(neu, cap, "%s%skey %u %s\n", text, sep ? "\n" : "", (unsigned)id + 1, hex);
        if ((rc = replace_file(path, neu, (size_t)n, err)) == PH_OK)
            *new_id = (uint16_t)(id + 1);
    }
    ph_wipe(raw, sizeof raw);
    ph_wipe(hex, sizeof hex);
    text_free(neu, cap);
    text_free(text, len);
    ph_keyring_free(kr);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* 1 when line[0..n) is a `key <id> ...` line of this id. */
static int is_key_line(const char *line, size_t n, uint16_t id)
{
    size_t i = 0;
    while (i < n && (line[i] == ' ' || line[i] == '\t'))
        i++;
    if (n - i < 4 || memcmp(line + i, "key", 3) != 0 || (line[i + 3] != ' ' && line[i + 3] != '\t'))
        return 0;
    i += 3;
    while (i < n && (line[i] == ' ' || line[i] == '\t'))
        i++;
    unsigned long v = 0;
    size_t digits = 0;
    for (; i < n && line[i] >= '0' && line[i] <= '9' && digits < 6; i++, digits++)
        v = v * 10 + (unsigned long)(line[i] - '0');
    return digits && v == id && i < n && (line[i] == ' ' || line[i] == '\t');
}

int ph_keyfile_remove(const char *path, uint16_t id, ph_err *err)
{
    int fd = -1;
    char *text = NULL, *neu = NULL;
    size_t len = 0, out = 0;
    ph_keyring *kr = NULL;
    int rc = locked_read(path, &fd, &text, &len, err);
    if (rc == PH_OK)
        rc = ph_keyring_load(path, 0, &kr, err);
    if (rc == PH_OK && !ph_keyring_has(kr, id))
        rc = ph_err_set(err, PH_ENOTFOUND, "%s: no key %u in the file", path, (unsigned)id);
    else if (rc == PH_OK && ph_keyring_active_id(kr) == id)
        rc = ph_err_set(err, PH_ESTATE,
                        "%s: key %u is the newest key, the one new data is sealed with; add a "
                        "key and let the data move to it first",
                        path, (unsigned)id);
    if (rc == PH_OK && !(neu = malloc(len + 1)))
        rc = ph_err_set(err, PH_ENOMEM, "out of memory");
    for (size_t at = 0; rc == PH_OK && at < len;) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t n = nl ? (size_t)(nl - (text + at)) + 1 : len - at;
        if (!is_key_line(text + at, n, id)) {
            memcpy(neu + out, text + at, n);
            out += n;
        }
        at += n;
    }
    if (rc == PH_OK)
        rc = replace_file(path, neu, out, err);
    text_free(neu, len + 1);
    text_free(text, len);
    ph_keyring_free(kr);
    if (fd >= 0)
        close(fd);
    return rc;
}
