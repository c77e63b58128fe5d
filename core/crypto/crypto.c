/*
 * crypto.c — keyring, AES-256-GCM sealing, keyed lookup hashes (see crypto.h).
 *
 * Thread model: a keyring is immutable once loaded. Every call that needs an
 * OpenSSL context allocates its own (EVP_CIPHER_CTX, EVP_MD_CTX) and frees it
 * before returning, so nothing mutable is shared between threads. What is
 * expensive in OpenSSL 3 is the algorithm *fetch* (a locked lookup in the
 * provider store) and keying a context, so the keyring fetches AES-256-GCM and
 * SHA-256 once and keeps contexts already keyed: one per AES key for opening,
 * and the index key's HMAC as two SHA-256 states past its inner and outer
 * pads. A call copies the keyed context it needs into its own (the copy only
 * reads its source and is safe to call concurrently).
 */
#include "crypto/crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "base/util.h"

#define NONCE_LEN   12
#define TAG_LEN     16
#define KEYFILE_MAX (1u << 20) /* a key file is a few lines; anything bigger is a mistake */
#define KEYS_MAX    65535

struct ph_key {
    uint16_t id;
    uint8_t key[PH_KEY_LEN];
    /* AES-256-GCM keyed with key for opening, no nonce: set up once in keyring_init and
     * only ever copied (ph_crypto_open), never used itself, so threads share it read-only.
     * Keying a fresh context per open was ~1 % of an order's CPU (two opens an order). */
    EVP_CIPHER_CTX *open;
};

struct ph_keyring {
    EVP_CIPHER *gcm; /* fetched once: AES-256-GCM */
    EVP_MD *sha256;  /* fetched once: SHA-256 (an order fingerprint per order) */
    /* HMAC-SHA256 under the index key as two SHA-256 states that have taken the key's
     * inner and outer pads: copied per hash (ph_crypto_index), never used themselves, so
     * threads share them read-only. Duplicating a keyed EVP_MAC context per hash cost
     * ~2.5 x as much (a lookup hashes its code once per look-alike rule; an import once
     * per code). */
    EVP_MD_CTX *index_in, *index_out;
    struct ph_key *keys; /* sorted by id, ascending; the last one seals */
    size_t nkeys;
    uint8_t index_key[PH_KEY_LEN]; /* only until keyring_init has keyed index_in/out */
    char *path;                    /* the key file, for messages; "<raw keys>" */
};

/* ---- primitives ------------------------------------------------------------ */

int ph_buf_reserve(char **buf, size_t *cap, size_t len, size_t need, size_t first)
{
    if (need <= *cap)
        return 0;
    if (need > SIZE_MAX / 2 || !first)
        return -1; /* the doubling would wrap */
    size_t c = *cap ? *cap : first;
    while (c < need)
        c *= 2;
    char *g = malloc(c);
    if (!g)
        return -1;
    if (*buf) {
        memcpy(g, *buf, len);
        ph_wipe(*buf, *cap);
        free(*buf);
    }
    *buf = g;
    *cap = c;
    return 0;
}

void ph_wbuf_put(ph_wbuf *b, const void *src, size_t n)
{
    if (b->oom)
        return;
    if (n > SIZE_MAX - b->len - 1 || ph_buf_reserve(&b->p, &b->cap, b->len, b->len + n + 1, 1024)) {
        b->oom = 1;
        return;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
    b->p[b->len] = 0;
}

void ph_wbuf_free(ph_wbuf *b)
{
    if (b->p)
        ph_wipe(b->p, b->cap);
    free(b->p);
    *b = (ph_wbuf){0};
}

int ph_ct_equal(const void *a, const void *b, size_t n)
{
    return n == 0 || CRYPTO_memcmp(a, b, n) == 0;
}

int ph_random_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        if (RAND_bytes(p, chunk) != 1)
            return PH_ECRYPTO;
        p += chunk;
        n -= (size_t)chunk;
    }
    return PH_OK;
}

/* The hash functions below return void (they cannot fail short of OpenSSL
 * running out of memory). If that ever happens, the output is made random
 * rather than left as zeros or stale bytes: a failed hash must never compare
 * equal to another one, or a code lookup could match the wrong row and a
 * signature check could pass. */
static void hash_failed(uint8_t out[PH_HASH_LEN])
{
    if (ph_random_bytes(out, PH_HASH_LEN) != PH_OK)
        memset(out, 0xa5, PH_HASH_LEN); /* last resort; RNG and allocator both gone */
}

void ph_sha256(const void *data, size_t len, uint8_t out[PH_HASH_LEN])
{
    unsigned int n = 0;
    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != PH_HASH_LEN)
        hash_failed(out);
}

void ph_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                    uint8_t out[PH_HASH_LEN])
{
    /* HMAC() takes an int key length. A key longer than SHA-256's 64-byte block
     * is replaced by its hash anyway (RFC 2104 §2), so do that here and every
     * key fits. */
    uint8_t hk[PH_HASH_LEN];
    if (keylen > 64) {
        ph_sha256(key, keylen, hk);
        key = hk;
        keylen = sizeof hk;
    }
    static const uint8_t empty = 0; /* HMAC() wants a non-NULL data pointer */
    unsigned int n = 0;
    if (!HMAC(EVP_sha256(), key, (int)keylen, len ? data : &empty, len, out, &n) ||
        n != PH_HASH_LEN)
        hash_failed(out);
    ph_wipe(hk, sizeof hk);
}

struct ph_hmac_key {
    EVP_MAC_CTX *ctx; /* keyed, never updated: each signature works on a copy */
    size_t keylen;
    uint8_t key[]; /* to tell whether a caller's key is this one */
};

void ph_hmac_key_free(ph_hmac_key *k)
{
    if (!k)
        return;
    EVP_MAC_CTX_free(k->ctx);
    ph_wipe(k->key, k->keylen);
    free(k);
}

int ph_hmac_key_new(const void *key, size_t keylen, ph_hmac_key **out)
{
    *out = NULL;
    ph_hmac_key *k = calloc(1, sizeof *k + (keylen ? keylen : 1));
    if (!k)
        return PH_ENOMEM;
    static const uint8_t empty = 0; /* a key of no bytes still needs a pointer */
    if (keylen)
        memcpy(k->key, key, keylen);
    k->keylen = keylen;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    k->ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac); /* the context holds its own reference */
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end()};
    if (!k->ctx || EVP_MAC_init(k->ctx, keylen ? key : &empty, keylen, params) != 1) {
        ph_hmac_key_free(k);
        return PH_ECRYPTO;
    }
    *out = k;
    return PH_OK;
}

int ph_hmac_key_is(const ph_hmac_key *k, const void *key, size_t keylen)
{
    return k->keylen == keylen && (!keylen || ph_ct_equal(k->key, key, keylen));
}

void ph_hmac_key_sign(const ph_hmac_key *k, const void *data, size_t len, uint8_t out[PH_HASH_LEN])
{
    static const uint8_t empty = 0;
    size_t n = 0;
    EVP_MAC_CTX *c = EVP_MAC_CTX_dup(k->ctx);
    if (!c || EVP_MAC_update(c, len ? data : &empty, len) != 1 ||
        EVP_MAC_final(c, out, &n, PH_HASH_LEN) != 1 || n != PH_HASH_LEN)
        hash_failed(out);
    EVP_MAC_CTX_free(c);
}

/* ---- keyring ---------------------------------------------------------------- */

void ph_keyring_free(ph_keyring *kr)
{
    if (!kr)
        return;
    EVP_MD_CTX_free(kr->index_in); /* SHA-256 clears its state when freed */
    EVP_MD_CTX_free(kr->index_out);
    EVP_MD_free(kr->sha256);
    EVP_CIPHER_free(kr->gcm);
    if (kr->keys) {
        for (size_t i = 0; i < kr->nkeys; i++)
            EVP_CIPHER_CTX_free(kr->keys[i].open); /* cleanses its key schedule */
        ph_wipe(kr->keys, kr->nkeys * sizeof *kr->keys);
        free(kr->keys);
    }
    free(kr->path);
    ph_wipe(kr, sizeof *kr);
    free(kr);
}

/* Fetches the algorithms, keys each key's opening context and the index HMAC's states;
 * keys (sorted, final) and index_key must be set. */
static int keyring_init(ph_keyring *kr, ph_err *err)
{
    kr->gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    kr->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!kr->gcm || !kr->sha256)
        return ph_err_set(err, PH_ECRYPTO, "openssl: AES-256-GCM or SHA-256 not available");
    for (size_t i = 0; i < kr->nkeys; i++) {
        struct ph_key *k = &kr->keys[i];
        if (!(k->open = EVP_CIPHER_CTX_new()) ||
            EVP_DecryptInit_ex2(k->open, kr->gcm, k->key, NULL, NULL) != 1)
            return ph_err_set(err, PH_ECRYPTO, "openssl: cannot set up AES-256-GCM");
    }
    /* RFC 2104 with a key shorter than SHA-256's 64-byte block: the key zero-padded,
     * XORed with 0x36 (inner) and 0x5c (outer) */
    uint8_t ipad[64] = {0}, opad[64] = {0};
    memcpy(ipad, kr->index_key, PH_KEY_LEN);
    memcpy(opad, kr->index_key, PH_KEY_LEN);
    for (size_t i = 0; i < sizeof ipad; i++) {
        ipad[i] ^= 0x36;
        opad[i] ^= 0x5c;
    }
    kr->index_in = EVP_MD_CTX_new();
    kr->index_out = EVP_MD_CTX_new();
    int ok = kr->index_in && kr->index_out &&
             EVP_DigestInit_ex2(kr->index_in, kr->sha256, NULL) == 1 &&
             EVP_DigestUpdate(kr->index_in, ipad, sizeof ipad) == 1 &&
             EVP_DigestInit_ex2(kr->index_out, kr->sha256, NULL) == 1 &&
             EVP_DigestUpdate(kr->index_out, opad, sizeof opad) == 1;
    ph_wipe(ipad, sizeof ipad);
    ph_wipe(opad, sizeof opad);
    ph_wipe(kr->index_key, PH_KEY_LEN); /* the two states hold it now: one copy fewer */
    if (!ok)
        return ph_err_set(err, PH_ECRYPTO, "openssl: cannot set up HMAC-SHA256");
    return PH_OK;
}

int ph_keyring_from_raw(const uint8_t index_key[PH_KEY_LEN], uint16_t key_id,
                        const uint8_t key[PH_KEY_LEN], ph_keyring **out, ph_err *err)
{
    *out = NULL;
    if (key_id == 0)
        return ph_err_set(err, PH_EINVAL, "key id must be 1..65535");
    ph_keyring *kr = calloc(1, sizeof *kr);
    if (!kr || !(kr->keys = calloc(1, sizeof *kr->keys))) {
        free(kr);
        return ph_err_set(err, PH_ENOMEM, "out of memory loading keys");
    }
    kr->nkeys = 1;
    if (!(kr->path = strdup("<raw keys>"))) {
        ph_keyring_free(kr);
        return ph_err_set(err, PH_ENOMEM, "out of memory loading keys");
    }
    kr->keys[0].id = key_id;
    memcpy(kr->keys[0].key, key, PH_KEY_LEN);
    memcpy(kr->index_key, index_key, PH_KEY_LEN);
    int rc = keyring_init(kr, err);
    if (rc != PH_OK) {
        ph_keyring_free(kr);
        return rc;
    }
    *out = kr;
    return PH_OK;
}

uint16_t ph_keyring_active_id(const ph_keyring *kr)
{
    return kr->keys[kr->nkeys - 1].id;
}

static const struct ph_key *key_find(const ph_keyring *kr, uint16_t id);

const char *ph_keyring_path(const ph_keyring *kr)
{
    return kr->path;
}

size_t ph_keyring_ids(const ph_keyring *kr, uint16_t *out, size_t max)
{
    for (size_t i = 0; i < kr->nkeys && i < max; i++)
        out[i] = kr->keys[i].id;
    return kr->nkeys;
}

int ph_keyring_has(const ph_keyring *kr, uint16_t id)
{
    return key_find(kr, id) != NULL;
}

/* A fixed text MACed under the key: equal check values mean equal keys, and
 * the value says nothing about the key (HMAC is a PRF). The key id is part of
 * the text so a key moved to another id does not pass as the old one. */
int ph_keyring_check_value(const ph_keyring *kr, uint16_t id, uint8_t out[PH_HASH_LEN])
{
    char text[48];
    if (id == PH_KEYCHECK_INDEX) {
        int n = snprintf(text, sizeof text, "perkhub key check v1 index");
        ph_crypto_index(kr, text, (size_t)n, out);
        return PH_OK;
    }
    const struct ph_key *k = key_find(kr, id);
    if (!k)
        return PH_ENOTFOUND;
    int n = snprintf(text, sizeof text, "perkhub key check v1 key %u", (unsigned)id);
    ph_hmac_sha256(k->key, PH_KEY_LEN, text, (size_t)n, out);
    return PH_OK;
}

uint16_t ph_sealed_key_id(const uint8_t *sealed, size_t len)
{
    return len < PH_SEAL_OVERHEAD ? 0 : (uint16_t)(sealed[0] << 8 | sealed[1]);
}

static const struct ph_key *key_find(const ph_keyring *kr, uint16_t id)
{
    size_t lo = 0, hi = kr->nkeys;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (kr->keys[mid].id == id)
            return &kr->keys[mid];
        if (kr->keys[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- key file parsing --------------------------------------------------------- */

#define KEY_SYNTAX   "`key <id> <64 hex digits>`"
#define INDEX_SYNTAX "`index <64 hex digits>`"

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Splits the NUL-terminated line in place into at most max tokens; returns how
 * many there were (max + 1 when there were more). */
static int tokenize(char *line, char **tok, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        while (is_blank(*p))
            p++;
        if (!*p)
            return n;
        if (n == max)
            return max + 1;
        tok[n++] = p;
        while (*p && !is_blank(*p))
            p++;
        if (*p)
            *p++ = 0;
    }
}

static int parse_id(const char *s, uint16_t *id)
{
    unsigned long v = 0;
    if (!*s || strlen(s) > 5)
        return -1;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v < 1 || v > KEYS_MAX)
        return -1;
    *id = (uint16_t)v;
    return 0;
}

static int key_cmp(const void *a, const void *b)
{
    const struct ph_key *x = a, *y = b;
    return (int)x->id - (int)y->id;
}

/* Parses the key file text (NUL-terminated, modified in place) into kr. Messages
 * name the path and the line but never quote a line: any of them may hold a key. */
static int keyfile_parse(const char *path, char *text, ph_keyring *kr, ph_err *err)
{
    size_t cap = 0;
    unsigned index_line = 0;
    unsigned lineno = 0;
    /* line number where each key id was first seen, for the duplicate message */
    unsigned *first = NULL;
    int rc = PH_OK;

    for (char *line = text; line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        char *next = nl ? nl + 1 : NULL;
        lineno++;
        size_t ll = strlen(line);
        if (ll && line[ll - 1] == '\r')
            line[--ll] = 0;

        char *tok[3];
        int nt = tokenize(line, tok, 3);
        if (nt == 0 || tok[0][0] == '#') {
            line = next;
            continue;
        }
        if (strcmp(tok[0], "index") == 0) {
            if (nt != 2 || ph_hex_decode(tok[1], kr->index_key, PH_KEY_LEN) != 0) {
                rc = ph_err_set(err, PH_EINVAL, "%s:%u: expected " INDEX_SYNTAX, path, lineno);
                goto out;
            }
            if (index_line) {
                rc = ph_err_set(err, PH_EINVAL,
                                "%s:%u: second `index` line (first on line %u); the index key "
                                "never rotates",
                                path, lineno, index_line);
                goto out;
            }
            index_line = lineno;
        } else if (strcmp(tok[0], "key") == 0) {
            uint16_t id;
            if (nt != 3 || parse_id(tok[1], &id) != 0) {
                rc = ph_err_set(err, PH_EINVAL, "%s:%u: expected " KEY_SYNTAX ", id 1..65535", path,
                                lineno);
                goto out;
            }
            if (!first && !(first = calloc(KEYS_MAX + 1, sizeof *first))) {
                rc = ph_err_set(err, PH_ENOMEM, "out of memory loading keys");
                goto out;
            }
            if (first[id]) {
                rc = ph_err_set(err, PH_EINVAL, "%s:%u: duplicate key id %u (first on line %u)",
                                path, lineno, (unsigned)id, first[id]);
                goto out;
            }
            if (kr->nkeys == cap) {
                size_t ncap = cap ? cap * 2 : 4;
                struct ph_key *nk = calloc(ncap, sizeof *nk);
                if (!nk) {
                    rc = ph_err_set(err, PH_ENOMEM, "out of memory loading keys");
                    goto out;
                }
                /* no realloc: the old array holds keys and must be wiped, not abandoned */
                if (kr->keys) {
                    memcpy(nk, kr->keys, kr->nkeys * sizeof *nk);
                    ph_wipe(kr->keys, kr->nkeys * sizeof *nk);
                    free(kr->keys);
                }
                kr->keys = nk;
                cap = ncap;
            }
            struct ph_key *k = &kr->keys[kr->nkeys];
            if (ph_hex_decode(tok[2], k->key, PH_KEY_LEN) != 0) {
                ph_wipe(k, sizeof *k);
                rc = ph_err_set(err, PH_EINVAL, "%s:%u: expected " KEY_SYNTAX, path, lineno);
                goto out;
            }
            k->id = id;
            kr->nkeys++;
            first[id] = lineno;
        } else {
            rc = ph_err_set(err, PH_EINVAL, "%s:%u: expected " INDEX_SYNTAX " or " KEY_SYNTAX, path,
                            lineno);
            goto out;
        }
        line = next;
    }
    if (!index_line) {
        rc = ph_err_set(err, PH_EINVAL, "%s: no `index <64 hex digits>` line", path);
        goto out;
    }
    if (kr->nkeys == 0) {
        rc = ph_err_set(err, PH_EINVAL, "%s: no `key <id> <64 hex digits>` line", path);
        goto out;
    }
    qsort(kr->keys, kr->nkeys, sizeof *kr->keys, key_cmp);
out:
    free(first);
    return rc;
}

/* keyfile_read's "no such file" result: not an error when the caller may create it. */
#define KEYFILE_MISSING 1

/* Reads the whole key file into a NUL-terminated buffer that the caller wipes
 * and frees. Returns PH_OK, KEYFILE_MISSING, or a PH_E* code with err set. */
static int keyfile_read(const char *path, char **text, ph_err *err)
{
    *text = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return KEYFILE_MISSING;
        return ph_err_set(err, PH_EIO, "%s: cannot open key file: %s", path, strerror(errno));
    }
    int rc = PH_OK;
    char *buf = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = ph_err_set(err, PH_EIO, "%s: cannot stat key file: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = ph_err_set(err, PH_EINVAL, "%s: key file is not a regular file", path);
        goto out;
    }
    if (st.st_mode & 077) {
        rc = ph_err_set(err, PH_EINVAL,
                        "%s: key file mode %04o lets group or others read it; run `chmod 600 %s`",
                        path, (unsigned)(st.st_mode & 07777), path);
        goto out;
    }
    if (st.st_size > (off_t)KEYFILE_MAX) {
        rc = ph_err_set(err, PH_EINVAL, "%s: key file larger than %u bytes", path, KEYFILE_MAX);
        goto out;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    if (!(buf = malloc(cap))) {
        rc = ph_err_set(err, PH_ENOMEM, "out of memory loading keys");
        goto out;
    }
    for (;;) {
        /* read until EOF even if the file grew since fstat; never past cap - 1 */
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = ph_err_set(err, PH_EIO, "%s: cannot read key file: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0 || (n += (size_t)r) == cap - 1)
            break;
    }
    buf[n] = 0;
    if (memchr(buf, 0, n)) {
        rc = ph_err_set(err, PH_EINVAL, "%s: key file holds a NUL byte; not a text file", path);
        goto out;
    }
    *text = buf;
    buf = NULL;
out:
    if (buf) {
        ph_wipe(buf, cap);
        free(buf);
    }
    close(fd);
    return rc;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Makes a new directory entry in path's directory durable: without it, a crash
 * could lose the key file while codes sealed under it are already committed. */
static int fsync_dir(const char *path, ph_err *err)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir)
        return ph_err_set(err, PH_ENOMEM, "out of memory creating key file");
    int rc = PH_OK;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0)
        rc =
            ph_err_set(err, PH_EIO, "%s: cannot sync directory %s: %s", path, dir, strerror(errno));
    if (dfd >= 0)
        close(dfd);
    free(dir);
    return rc;
}

/* Creates a fresh key file at path: written to a private temp file (mkostemp:
 * O_EXCL, mode 0600), fsync'ed, then moved into place without replacing
 * anything. If another process created the file meanwhile, its file wins and
 * ours is discarded: two daemons racing on first start must end up with the
 * same keys, or codes sealed by the loser would become unreadable. */
static int keyfile_create(const char *path, ph_err *err)
{
    int rc = ph_mkdir_parents(path, err);
    if (rc != PH_OK)
        return rc;

    uint8_t raw[2][PH_KEY_LEN];
    char hex[2][2 * PH_KEY_LEN + 1];
    char text[512];
    size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof ".tmp.XXXXXX");
    int fd = -1;
    if (!tmp)
        return ph_err_set(err, PH_ENOMEM, "out of memory creating key file");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");

    if (ph_random_bytes(raw, sizeof raw) != PH_OK) {
        rc = ph_err_set(err, PH_ECRYPTO, "%s: the OS random generator failed", path);
        goto out_notmp;
    }
    ph_hex_encode(raw[0], PH_KEY_LEN, hex[0]);
    ph_hex_encode(raw[1], PH_KEY_LEN, hex[1]);
    int tlen = snprintf(text, sizeof text,
                        "# perkhub master keys. Keep this file (mode 0600) and back it up:\n"
                        "# codes sealed with a key can never be read without it.\n"
                        "# Rotate by adding `key <next id> <64 hex digits>`; keep the old lines.\n"
                        "index %s\n"
                        "key 1 %s\n",
                        hex[0], hex[1]);

    if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
        rc = ph_err_set(err, PH_EIO, "%s: cannot create key file: %s", path, strerror(errno));
        goto out_notmp;
    }
    if (fchmod(fd, 0600) != 0 || write_all(fd, text, (size_t)tlen) != 0 || fsync(fd) != 0) {
        rc = ph_err_set(err, PH_EIO, "%s: cannot write key file: %s", path, strerror(errno));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = ph_err_set(err, PH_EIO, "%s: cannot write key file: %s", path, strerror(errno));
        goto out;
    }
    fd = -1;
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0) {
        rc = fsync_dir(path, err);
        goto out_notmp; /* tmp is gone: it is the key file now */
    }
    /* A file system without RENAME_NOREPLACE: link() refuses to replace too. */
    if ((errno == EINVAL || errno == ENOSYS) && link(tmp, path) == 0)
        rc = fsync_dir(path, err);
    else if (errno != EEXIST) /* EEXIST: another process's file won; the caller loads it */
        rc = ph_err_set(err, PH_EIO, "%s: cannot create key file: %s", path, strerror(errno));
out:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
out_notmp:
    free(tmp);
    ph_wipe(raw, sizeof raw);
    ph_wipe(hex, sizeof hex);
    ph_wipe(text, sizeof text);
    return rc;
}

int ph_keyring_load(const char *path, int create, ph_keyring **out, ph_err *err)
{
    *out = NULL;
    char *text = NULL;
    int rc = keyfile_read(path, &text, err);
    if (rc == KEYFILE_MISSING) {
        if (!create)
            return ph_err_set(err, PH_EIO, "%s: key file does not exist", path);
        if ((rc = keyfile_create(path, err)) != PH_OK)
            return rc;
        rc = keyfile_read(path, &text, err);
        if (rc == KEYFILE_MISSING)
            return ph_err_set(err, PH_EIO, "%s: key file vanished right after creation", path);
    }
    if (rc != PH_OK)
        return rc;

    ph_keyring *kr = calloc(1, sizeof *kr);
    if (!kr) {
        rc = ph_err_set(err, PH_ENOMEM, "out of memory loading keys");
        goto out;
    }
    if (!(kr->path = strdup(path))) {
        ph_keyring_free(kr);
        rc = ph_err_set(err, PH_ENOMEM, "out of memory loading keys");
        goto out;
    }
    if ((rc = keyfile_parse(path, text, kr, err)) != PH_OK ||
        (rc = keyring_init(kr, err)) != PH_OK) {
        ph_keyring_free(kr);
        goto out;
    }
    *out = kr;
out:
    ph_wipe(text, strlen(text));
    free(text);
    return rc;
}

/* ---- sealing ------------------------------------------------------------------ */

int ph_crypto_seal(const ph_keyring *kr, const uint8_t *pt, size_t ptlen, const uint8_t *aad,
                   size_t aadlen, uint8_t *out, size_t *outlen)
{
    if (ptlen > INT_MAX - PH_SEAL_OVERHEAD || aadlen > INT_MAX)
        return PH_ECRYPTO;
    const struct ph_key *k = &kr->keys[kr->nkeys - 1];
    uint8_t *nonce = out + 2, *ct = out + 2 + NONCE_LEN, *tag = ct + ptlen;
    out[0] = (uint8_t)(k->id >> 8);
    out[1] = (uint8_t)(k->id & 0xff);
    /* Random 96-bit nonces: safe for about 2^32 seals per key (NIST SP 800-38D
     * §8.3), far beyond the codes one key will see; rotate keys long before. */
    if (RAND_bytes(nonce, NONCE_LEN) != 1)
        return PH_ECRYPTO;

    int rc = PH_ECRYPTO, n;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx || EVP_EncryptInit_ex2(ctx, kr->gcm, k->key, nonce, NULL) != 1)
        goto out;
    if (aadlen && EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)aadlen) != 1)
        goto out;
    if (ptlen && EVP_EncryptUpdate(ctx, ct, &n, pt, (int)ptlen) != 1)
        goto out;
    if (EVP_EncryptFinal_ex(ctx, ct + ptlen, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, tag) != 1)
        goto out;
    *outlen = ptlen + PH_SEAL_OVERHEAD;
    rc = PH_OK;
out:
    EVP_CIPHER_CTX_free(ctx); /* cleanses the key schedule */
    return rc;
}

int ph_crypto_open(const ph_keyring *kr, const uint8_t *in, size_t inlen, const uint8_t *aad,
                   size_t aadlen, uint8_t *out, size_t *outlen)
{
    if (inlen < PH_SEAL_OVERHEAD || inlen > INT_MAX || aadlen > INT_MAX)
        return PH_ECRYPTO;
    const struct ph_key *k = key_find(kr, (uint16_t)(in[0] << 8 | in[1]));
    if (!k)
        return PH_ECRYPTO;
    const uint8_t *nonce = in + 2, *ct = in + 2 + NONCE_LEN;
    size_t ctlen = inlen - PH_SEAL_OVERHEAD;
    uint8_t tag[TAG_LEN];
    memcpy(tag, ct + ctlen, TAG_LEN); /* SET_TAG takes a non-const pointer */

    int rc = PH_ECRYPTO, n;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new(); /* the key's context, copied: keyed already */
    if (!ctx || EVP_CIPHER_CTX_copy(ctx, k->open) != 1 ||
        EVP_DecryptInit_ex2(ctx, NULL, NULL, nonce, NULL) != 1)
        goto out;
    if (aadlen && EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aadlen) != 1)
        goto out;
    if (ctlen && EVP_DecryptUpdate(ctx, out, &n, ct, (int)ctlen) != 1)
        goto out;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, tag) != 1 ||
        EVP_DecryptFinal_ex(ctx, out + ctlen, &n) != 1)
        goto out;
    *outlen = ctlen;
    rc = PH_OK;
out:
    /* GCM decrypts before it verifies: never leave unauthenticated plaintext behind */
    if (rc != PH_OK && ctlen)
        ph_wipe(out, ctlen);
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

void ph_crypto_index(const ph_keyring *kr, const void *data, size_t len, uint8_t out[PH_HASH_LEN])
{
    uint8_t inner[PH_HASH_LEN];
    unsigned int n = 0, m = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_MD_CTX_copy_ex(ctx, kr->index_in) != 1 ||
        EVP_DigestUpdate(ctx, data, len) != 1 || EVP_DigestFinal_ex(ctx, inner, &n) != 1 ||
        n != PH_HASH_LEN || EVP_MD_CTX_copy_ex(ctx, kr->index_out) != 1 ||
        EVP_DigestUpdate(ctx, inner, n) != 1 || EVP_DigestFinal_ex(ctx, out, &m) != 1 ||
        m != PH_HASH_LEN)
        hash_failed(out);
    ph_wipe(inner, sizeof inner);
    EVP_MD_CTX_free(ctx);
}

void ph_crypto_sha256(const ph_keyring *kr, const void *data, size_t len, uint8_t out[PH_HASH_LEN])
{
    unsigned int n = 0;
    if (EVP_Digest(data, len, out, &n, kr->sha256, NULL) != 1 || n != PH_HASH_LEN)
        hash_failed(out);
}

/* ---- encodings and ciphers for the plugin host table ---------------------------- */

void ph_md5(const void *data, size_t len, uint8_t out[16])
{
    unsigned int n = 0;
    if (EVP_Digest(data, len, out, &n, EVP_md5(), NULL) != 1 || n != 16) {
        if (ph_random_bytes(out, 16) != PH_OK)
            memset(out, 0xa5, 16);
    }
}

/* Modes whose security depends on what this plain interface does not carry (a
 * tag, a tweak, a wrapped key): refused rather than run unauthenticated. */
static int cipher_mode_usable(const EVP_CIPHER *c)
{
    int mode = EVP_CIPHER_get_mode(c);
    return !(EVP_CIPHER_get_flags(c) & EVP_CIPH_FLAG_AEAD_CIPHER) && mode != EVP_CIPH_WRAP_MODE &&
           mode != EVP_CIPH_XTS_MODE && mode != EVP_CIPH_GCM_MODE && mode != EVP_CIPH_CCM_MODE &&
           mode != EVP_CIPH_OCB_MODE && mode != EVP_CIPH_SIV_MODE;
}

int ph_cipher(const char *name, int encrypt, const uint8_t *key, size_t keylen, const uint8_t *iv,
              size_t ivlen, const uint8_t *in, size_t inlen, uint8_t *out, size_t outcap,
              size_t *outlen)
{
    const EVP_CIPHER *c = name ? EVP_get_cipherbyname(name) : NULL;
    if (!c || !cipher_mode_usable(c))
        return PH_ENOTFOUND;
    if (keylen != (size_t)EVP_CIPHER_get_key_length(c) ||
        ivlen != (size_t)EVP_CIPHER_get_iv_length(c) || (keylen && !key) || (ivlen && !iv))
        return PH_EINVAL;
    if (inlen > INT_MAX - PH_CIPHER_BLOCK_MAX || outcap < inlen + PH_CIPHER_BLOCK_MAX)
        return PH_ELIMIT;
    int rc = PH_ENOMEM, n = 0, fin = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        goto out;
    /* An init that fails with the right lengths means the algorithm is not
     * available here (a legacy-provider cipher such as des-cbc). */
    rc = PH_ENOTFOUND;
    if (EVP_CipherInit_ex(ctx, c, NULL, key, ivlen ? iv : NULL, encrypt ? 1 : 0) != 1)
        goto out;
    rc = PH_ECRYPTO;
    if (inlen && EVP_CipherUpdate(ctx, out, &n, in, (int)inlen) != 1)
        goto out;
    if (EVP_CipherFinal_ex(ctx, out + n, &fin) != 1)
        goto out;
    *outlen = (size_t)n + (size_t)fin;
    rc = PH_OK;
out:
    if (rc != PH_OK)
        ph_wipe(out, outcap);
    EVP_CIPHER_CTX_free(ctx); /* cleanses the key schedule */
    return rc;
}

size_t ph_base64_encoded_len(size_t len)
{
    size_t groups = len / 3 + (len % 3 != 0);
    return groups > (SIZE_MAX - 1) / 4 ? SIZE_MAX : groups * 4;
}

size_t ph_base64_encode(const void *data, size_t len, char *out)
{
    /* EVP_EncodeBlock takes an int length; chunks of whole 3-byte groups encode
     * to text that simply concatenates. */
    const size_t chunk = (size_t)3 << 28;
    const unsigned char *in = data;
    size_t w = 0;
    out[0] = '\0';
    while (len > 0) {
        size_t n = len < chunk ? len : chunk;
        w += (size_t)EVP_EncodeBlock((unsigned char *)out + w, in, (int)n);
        in += n;
        len -= n;
    }
    return w;
}

size_t ph_base64_decoded_max(size_t len)
{
    return len / 4 * 3 + 3;
}

static int b64_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '+' || ch == '/';
}

/* The length of text without its padding, or SIZE_MAX when text is not
 * well-formed base64. EVP_DecodeBlock skips whitespace and wants padding;
 * the SDK promises neither, so the shape is checked here first. */
static size_t b64_body_len(const char *text, size_t len)
{
    size_t pad = 0;
    while (pad < 2 && pad < len && text[len - 1 - pad] == '=')
        pad++;
    size_t m = len - pad;
    for (size_t i = 0; i < m; i++)
        if (!b64_char(text[i]))
            return SIZE_MAX;
    if (m % 4 == 1 || (pad && (len % 4 != 0 || m % 4 + pad != 4)))
        return SIZE_MAX;
    return m;
}

int ph_base64_decode(const char *text, size_t len, uint8_t *out, size_t *outlen)
{
    size_t m = b64_body_len(text, len);
    if (m == SIZE_MAX)
        return PH_EINVAL;
    size_t whole = m / 4 * 4, w = 0;
    const size_t chunk = (size_t)1 << 30; /* whole quads, within EVP_DecodeBlock's int */
    for (size_t at = 0; at < whole;) {
        size_t n = whole - at < chunk ? whole - at : chunk;
        if (EVP_DecodeBlock(out + w, (const unsigned char *)text + at, (int)n) != (int)(n / 4 * 3))
            goto bad;
        w += n / 4 * 3;
        at += n;
    }
    if (m > whole) {
        /* a last group of 2 or 3 characters: pad it, decode, keep its bytes */
        unsigned char quad[4] = {'=', '=', '=', '='}, bytes[3];
        memcpy(quad, text + whole, m - whole);
        if (EVP_DecodeBlock(bytes, quad, 4) != 3)
            goto bad;
        memcpy(out + w, bytes, m - whole - 1);
        w += m - whole - 1;
    }
    *outlen = w;
    return PH_OK;
bad:
    ph_wipe(out, ph_base64_decoded_max(len));
    return PH_EINVAL;
}
