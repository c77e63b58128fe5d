/*
 * test_crypto.c — keyring, sealing, index hashes and the key file (core/crypto/crypto.c);
 * the allocator that wipes on free, as jansson's (core/crypto/wipe_alloc.c).
 */
#include <criterion/criterion.h>

#include <ftw.h>
#include <jansson.h>
#include <stdalign.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/crypto.h"
#include "base/util.h"

/* ---- helpers ------------------------------------------------------------------ */

static void unhex(const char *hex, uint8_t *out, size_t n)
{
    cr_assert_eq(ph_hex_decode(hex, out, n), 0, "bad test vector %s", hex);
}

static void fill(uint8_t *k, uint8_t seed)
{
    for (int i = 0; i < PH_KEY_LEN; i++)
        k[i] = (uint8_t)(seed * 31 + i);
}

static ph_keyring *ring(uint8_t index_seed, uint16_t id, uint8_t key_seed)
{
    uint8_t ik[PH_KEY_LEN], k[PH_KEY_LEN];
    fill(ik, index_seed);
    fill(k, key_seed);
    ph_keyring *kr = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_keyring_from_raw(ik, id, k, &kr, &err), PH_OK, "%s", err.msg);
    cr_assert_not_null(kr);
    return kr;
}

static char tmpdir[64];

static void make_tmpdir(void)
{
    strcpy(tmpdir, "/tmp/ph-test-crypto.XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static void remove_tmpdir(void)
{
    if (tmpdir[0])
        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
    cr_assert_eq(chmod(path, mode), 0);
}

/* ---- sealing -------------------------------------------------------------------- */

Test(crypto, seal_open_round_trip)
{
    static const struct {
        const char *pt;
        size_t len;
        const char *aad;
    } cases[] = {
        {"", 0, NULL},
        {"x", 1, NULL},
        {"IQY-GOLD-8F3K-22QZ-M9XW", 23, "iqiyi.gold.1m"},
        {"0123456789abcdef", 16, ""},
        {"with\0nul", 8, "aad"},
    };
    ph_keyring *kr = ring(1, 3, 2);
    cr_assert_eq(ph_keyring_active_id(kr), 3);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const uint8_t *aad = (const uint8_t *)cases[i].aad;
        size_t aadlen = aad ? strlen(cases[i].aad) : 0;
        uint8_t blob[64 + PH_SEAL_OVERHEAD], pt[64];
        size_t bl = 0, pl = 99;
        cr_assert_eq(
            ph_crypto_seal(kr, (const uint8_t *)cases[i].pt, cases[i].len, aad, aadlen, blob, &bl),
            PH_OK, "case %zu", i);
        cr_assert_eq(bl, cases[i].len + PH_SEAL_OVERHEAD, "case %zu", i);
        cr_assert_eq(blob[0], 0);
        cr_assert_eq(blob[1], 3, "key id is stored big-endian in front");
        cr_assert_eq(ph_crypto_open(kr, blob, bl, aad, aadlen, pt, &pl), PH_OK, "case %zu", i);
        cr_assert_eq(pl, cases[i].len, "case %zu", i);
        cr_assert_eq(memcmp(pt, cases[i].pt, pl), 0, "case %zu", i);
    }
    ph_keyring_free(kr);
}

Test(crypto, large_plaintext)
{
    size_t n = 1 << 20;
    uint8_t *pt = malloc(n), *blob = malloc(n + PH_SEAL_OVERHEAD), *back = malloc(n);
    cr_assert(pt && blob && back);
    cr_assert_eq(ph_random_bytes(pt, n), PH_OK);
    ph_keyring *kr = ring(1, 1, 2);
    size_t bl, pl;
    cr_assert_eq(ph_crypto_seal(kr, pt, n, NULL, 0, blob, &bl), PH_OK);
    cr_assert_eq(ph_crypto_open(kr, blob, bl, NULL, 0, back, &pl), PH_OK);
    cr_assert_eq(pl, n);
    cr_assert_eq(memcmp(pt, back, n), 0);
    ph_keyring_free(kr);
    free(pt), free(blob), free(back);
}

Test(crypto, nonce_is_fresh_per_seal)
{
    ph_keyring *kr = ring(1, 1, 2);
    uint8_t a[4 + PH_SEAL_OVERHEAD], b[4 + PH_SEAL_OVERHEAD];
    size_t al, bl;
    cr_assert_eq(ph_crypto_seal(kr, (const uint8_t *)"code", 4, NULL, 0, a, &al), PH_OK);
    cr_assert_eq(ph_crypto_seal(kr, (const uint8_t *)"code", 4, NULL, 0, b, &bl), PH_OK);
    cr_assert_neq(memcmp(a + 2, b + 2, 12), 0, "two seals reused a nonce");
    cr_assert_neq(memcmp(a, b, al), 0);
    ph_keyring_free(kr);
}

/* The blob layout is plain AES-256-GCM: McGrew & Viega test cases 13 and 14
 * (key and IV all zero), wrapped as key id 1 | nonce | ciphertext | tag. */
Test(crypto, open_known_answer)
{
    static const struct {
        const char *blob;
        size_t ptlen;
    } cases[] = {
        {"0001"
         "000000000000000000000000"
         "530f8afbc74536b9a963b4f1c4cb738b",
         0},
        {"0001"
         "000000000000000000000000"
         "cea7403d4d606b6e074ec5d3baf39d18"
         "d0d1c8a799996bf0265b98b5d48ab919",
         16},
    };
    uint8_t zero[PH_KEY_LEN] = {0};
    ph_keyring *kr = NULL;
    cr_assert_eq(ph_keyring_from_raw(zero, 1, zero, &kr, NULL), PH_OK);
    for (size_t i = 0; i < 2; i++) {
        uint8_t blob[64], pt[16];
        size_t n = strlen(cases[i].blob) / 2, pl = 99;
        memset(pt, 0x55, sizeof pt);
        unhex(cases[i].blob, blob, n);
        cr_assert_eq(ph_crypto_open(kr, blob, n, NULL, 0, pt, &pl), PH_OK, "case %zu", i);
        cr_assert_eq(pl, cases[i].ptlen);
        cr_assert_eq(memcmp(pt, zero, pl), 0);
    }
    ph_keyring_free(kr);
}

Test(crypto, tamper_any_byte_fails)
{
    static const char code[] = "TX-9D2K-44PL-ZQ81";
    const uint8_t *aad = (const uint8_t *)"sku";
    ph_keyring *kr = ring(1, 1, 2);
    uint8_t blob[sizeof code + PH_SEAL_OVERHEAD], pt[sizeof code];
    size_t bl, pl;
    cr_assert_eq(ph_crypto_seal(kr, (const uint8_t *)code, sizeof code, aad, 3, blob, &bl), PH_OK);
    for (size_t i = 0; i < bl; i++) {
        for (int bit = 0; bit < 8; bit++) {
            blob[i] ^= (uint8_t)(1u << bit);
            memset(pt, 0, sizeof pt);
            cr_assert_eq(ph_crypto_open(kr, blob, bl, aad, 3, pt, &pl), PH_ECRYPTO,
                         "flipping bit %d of byte %zu went unnoticed", bit, i);
            cr_assert_null(memmem(pt, sizeof pt, "9D2K", 4),
                           "unauthenticated plaintext left in the output");
            blob[i] ^= (uint8_t)(1u << bit);
        }
    }
    /* every truncation, and one extra byte */
    for (size_t n = 0; n < bl; n++)
        cr_assert_eq(ph_crypto_open(kr, blob, n, aad, 3, pt, &pl), PH_ECRYPTO, "length %zu", n);
    uint8_t longer[sizeof blob + 1];
    memcpy(longer, blob, bl);
    longer[bl] = 0;
    cr_assert_eq(ph_crypto_open(kr, longer, bl + 1, aad, 3, pt, &pl), PH_ECRYPTO);
    /* and the untouched blob still opens */
    cr_assert_eq(ph_crypto_open(kr, blob, bl, aad, 3, pt, &pl), PH_OK);
    ph_keyring_free(kr);
}

Test(crypto, wrong_aad_fails)
{
    static const struct {
        const char *seal_aad, *open_aad;
    } cases[] = {
        {"order-1", "order-2"},
        {"order-1", NULL},
        {NULL, "order-1"},
        {"order-1", "order-"},
    };
    ph_keyring *kr = ring(1, 1, 2);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *sa = cases[i].seal_aad, *oa = cases[i].open_aad;
        uint8_t blob[4 + PH_SEAL_OVERHEAD], pt[4];
        size_t bl, pl;
        cr_assert_eq(ph_crypto_seal(kr, (const uint8_t *)"code", 4, (const uint8_t *)sa,
                                    sa ? strlen(sa) : 0, blob, &bl),
                     PH_OK);
        cr_assert_eq(
            ph_crypto_open(kr, blob, bl, (const uint8_t *)oa, oa ? strlen(oa) : 0, pt, &pl),
            PH_ECRYPTO, "case %zu", i);
    }
    ph_keyring_free(kr);
}

Test(crypto, unknown_key_id)
{
    ph_keyring *a = ring(1, 3, 2), *b = ring(1, 7, 2); /* same key bytes, other id */
    uint8_t blob[4 + PH_SEAL_OVERHEAD], pt[4];
    size_t bl, pl;
    cr_assert_eq(ph_crypto_seal(a, (const uint8_t *)"code", 4, NULL, 0, blob, &bl), PH_OK);
    cr_assert_eq(ph_crypto_open(b, blob, bl, NULL, 0, pt, &pl), PH_ECRYPTO);
    ph_keyring_free(a);
    ph_keyring_free(b);
}

Test(crypto, from_raw_rejects_key_id_zero)
{
    uint8_t k[PH_KEY_LEN] = {0};
    ph_keyring *kr = (ph_keyring *)1;
    ph_err err = {0};
    cr_assert_eq(ph_keyring_from_raw(k, 0, k, &kr, &err), PH_EINVAL);
    cr_assert_null(kr);
    cr_assert_eq(err.code, PH_EINVAL);
}

/* ---- index hash -------------------------------------------------------------------- */

Test(crypto, index_is_deterministic_and_keyed)
{
    ph_keyring *a = ring(1, 1, 2), *a2 = ring(1, 5, 9), *b = ring(4, 1, 2);
    uint8_t h1[PH_HASH_LEN], h2[PH_HASH_LEN], h3[PH_HASH_LEN], h4[PH_HASH_LEN];
    ph_crypto_index(a, "CODE-1", 6, h1);
    ph_crypto_index(a, "CODE-1", 6, h2);
    cr_assert_eq(memcmp(h1, h2, PH_HASH_LEN), 0, "same input, same key: same index");
    ph_crypto_index(a2, "CODE-1", 6, h2);
    cr_assert_eq(memcmp(h1, h2, PH_HASH_LEN), 0, "the sealing key must not change the index");
    ph_crypto_index(b, "CODE-1", 6, h3);
    cr_assert_neq(memcmp(h1, h3, PH_HASH_LEN), 0, "another index key: another index");
    ph_crypto_index(a, "CODE-2", 6, h4);
    cr_assert_neq(memcmp(h1, h4, PH_HASH_LEN), 0);
    ph_crypto_index(a, "CODE-", 5, h4);
    cr_assert_neq(memcmp(h1, h4, PH_HASH_LEN), 0);

    /* it is exactly HMAC-SHA256 under the index key */
    uint8_t ik[PH_KEY_LEN];
    fill(ik, 1);
    ph_hmac_sha256(ik, sizeof ik, "CODE-1", 6, h4);
    cr_assert_eq(memcmp(h1, h4, PH_HASH_LEN), 0);
    ph_crypto_index(a, NULL, 0, h3);
    ph_hmac_sha256(ik, sizeof ik, "", 0, h4);
    cr_assert_eq(memcmp(h3, h4, PH_HASH_LEN), 0);
    /* every length over and around SHA-256's 64-byte blocks, hashed twice (the keyed
     * states are copied, never used up): the stored index of every code depends on it */
    uint8_t data[300];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 131 + 7);
    for (size_t len = 0; len <= sizeof data; len++) {
        for (int round = 0; round < 2; round++) {
            ph_crypto_index(a, data, len, h3);
            ph_hmac_sha256(ik, sizeof ik, data, len, h4);
            cr_assert_eq(memcmp(h3, h4, PH_HASH_LEN), 0, "length %zu", len);
        }
    }
    ph_keyring_free(a);
    ph_keyring_free(a2);
    ph_keyring_free(b);
}

/* ---- hashes against published vectors ------------------------------------------------- */

Test(crypto, hmac_sha256_rfc4231)
{
    /* RFC 4231 test cases 1, 2, 3, 4, 6, 7 (5 is truncated output) */
    uint8_t k3[20], d3[50], k4[25], d4[50], k6[131];
    memset(k3, 0xaa, sizeof k3);
    memset(d3, 0xdd, sizeof d3);
    for (int i = 0; i < 25; i++)
        k4[i] = (uint8_t)(i + 1);
    memset(d4, 0xcd, sizeof d4);
    memset(k6, 0xaa, sizeof k6);
    uint8_t k1[20];
    memset(k1, 0x0b, sizeof k1);
    static const char d7[] = "This is a test using a larger than block-size key and a larger "
                             "than block-size data. The key needs to be hashed before being "
                             "used by the HMAC algorithm.";
    const struct {
        const void *key;
        size_t keylen;
        const void *data;
        size_t len;
        const char *mac;
    } cases[] = {
        {k1, 20, "Hi There", 8, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        {"Jefe", 4, "what do ya want for nothing?", 28,
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        {k3, 20, d3, 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
        {k4, 25, d4, 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
        {k6, 131, "Test Using Larger Than Block-Size Key - Hash Key First", 54,
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
        {k6, 131, d7, sizeof d7 - 1,
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t mac[PH_HASH_LEN];
        char hex[2 * PH_HASH_LEN + 1];
        ph_hmac_sha256(cases[i].key, cases[i].keylen, cases[i].data, cases[i].len, mac);
        ph_hex_encode(mac, sizeof mac, hex);
        cr_expect_str_eq(hex, cases[i].mac, "RFC 4231 case index %zu", i);
        /* a prepared key gives the same bytes, signing twice (its keyed state
         * is copied, never used up) */
        ph_hmac_key *k = NULL;
        cr_assert_eq(ph_hmac_key_new(cases[i].key, cases[i].keylen, &k), PH_OK);
        cr_expect(ph_hmac_key_is(k, cases[i].key, cases[i].keylen));
        cr_expect_not(ph_hmac_key_is(k, cases[i].key, cases[i].keylen - 1));
        for (int round = 0; round < 2; round++) {
            memset(mac, 0, sizeof mac);
            ph_hmac_key_sign(k, cases[i].data, cases[i].len, mac);
            ph_hex_encode(mac, sizeof mac, hex);
            cr_expect_str_eq(hex, cases[i].mac, "prepared key, RFC 4231 case index %zu", i);
        }
        ph_hmac_key_free(k);
    }
}

Test(crypto, hmac_key_empty_key_and_data)
{
    uint8_t want[PH_HASH_LEN], got[PH_HASH_LEN];
    ph_hmac_key *k = NULL;
    cr_assert_eq(ph_hmac_key_new("", 0, &k), PH_OK);
    cr_expect(ph_hmac_key_is(k, "", 0));
    cr_expect_not(ph_hmac_key_is(k, "x", 1));
    ph_hmac_sha256("", 0, "", 0, want);
    ph_hmac_key_sign(k, "", 0, got);
    cr_expect_arr_eq(got, want, sizeof want);
    ph_hmac_sha256("", 0, "body", 4, want);
    ph_hmac_key_sign(k, "body", 4, got);
    cr_expect_arr_eq(got, want, sizeof want);
    ph_hmac_key_free(k);
}

Test(crypto, sha256_nist)
{
    char *million = malloc(1000000);
    cr_assert_not_null(million);
    memset(million, 'a', 1000000);
    const struct {
        const void *data;
        size_t len;
        const char *hash;
    } cases[] = {
        {"", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {million, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
    };
    /* ph_crypto_sha256 (the keyring's digest, fetched once) must give the same
     * hashes: request fingerprints stored before it existed must still match */
    ph_keyring *kr = ring(1, 1, 2);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t h[PH_HASH_LEN], hk[PH_HASH_LEN];
        char hex[2 * PH_HASH_LEN + 1];
        ph_sha256(cases[i].data, cases[i].len, h);
        ph_hex_encode(h, sizeof h, hex);
        cr_expect_str_eq(hex, cases[i].hash, "case %zu", i);
        ph_crypto_sha256(kr, cases[i].data, cases[i].len, hk);
        ph_hex_encode(hk, sizeof hk, hex);
        cr_expect_str_eq(hex, cases[i].hash, "ph_crypto_sha256, case %zu", i);
    }
    ph_keyring_free(kr);
    free(million);
}

Test(crypto, small_helpers)
{
    cr_assert(ph_ct_equal("abc", "abc", 3));
    cr_assert_not(ph_ct_equal("abc", "abd", 3));
    cr_assert(ph_ct_equal("x", "y", 0));

    uint8_t a[64] = {0}, b[64] = {0}, zero[64] = {0};
    cr_assert_eq(ph_random_bytes(a, sizeof a), PH_OK);
    cr_assert_eq(ph_random_bytes(b, sizeof b), PH_OK);
    cr_assert_neq(memcmp(a, b, sizeof a), 0);
    cr_assert_neq(memcmp(a, zero, sizeof a), 0);
    cr_assert_eq(ph_random_bytes(a, 0), PH_OK);

    ph_wipe(a, sizeof a);
    cr_assert_eq(memcmp(a, zero, sizeof a), 0);
    ph_wipe(NULL, 0);
    ph_keyring_free(NULL);
}

/* Many threads on one keyring: nothing in it may be mutated by a call. */
struct worker {
    ph_keyring *kr;
    int failures;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 2000; i++) {
        char code[32];
        int n = snprintf(code, sizeof code, "CODE-%d-%p", i, (void *)w);
        uint8_t blob[32 + PH_SEAL_OVERHEAD], pt[32], h1[PH_HASH_LEN], h2[PH_HASH_LEN];
        size_t bl, pl;
        if (ph_crypto_seal(w->kr, (uint8_t *)code, (size_t)n, NULL, 0, blob, &bl) != PH_OK ||
            ph_crypto_open(w->kr, blob, bl, NULL, 0, pt, &pl) != PH_OK || pl != (size_t)n ||
            memcmp(pt, code, pl) != 0)
            w->failures++;
        ph_crypto_index(w->kr, code, (size_t)n, h1);
        ph_crypto_index(w->kr, code, (size_t)n, h2);
        if (memcmp(h1, h2, sizeof h1) != 0)
            w->failures++;
    }
    return NULL;
}

Test(crypto, concurrent_use_of_one_keyring)
{
    ph_keyring *kr = ring(1, 1, 2);
    pthread_t t[8];
    struct worker w[8];
    for (int i = 0; i < 8; i++) {
        w[i] = (struct worker){kr, 0};
        cr_assert_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        cr_expect_eq(w[i].failures, 0, "thread %d", i);
    }
    ph_keyring_free(kr);
}

/* ---- the key file -------------------------------------------------------------------- */

TestSuite(keyfile, .init = make_tmpdir, .fini = remove_tmpdir);

Test(keyfile, create_then_load_gives_same_keys)
{
    char path[128];
    snprintf(path, sizeof path, "%s/var/keys/master.key", tmpdir); /* two missing levels */
    ph_keyring *a = NULL, *b = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_keyring_load(path, 1, &a, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ph_keyring_active_id(a), 1);

    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
    char dir[128];
    snprintf(dir, sizeof dir, "%s/var/keys", tmpdir);
    cr_assert_eq(stat(dir, &st), 0);
    cr_assert_eq(st.st_mode & 077, 0, "key directory is group/other accessible");

    /* nothing left behind but the key file */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "test $(ls -A %s | wc -l) -eq 1", dir);
    cr_assert_eq(system(cmd), 0, "temporary file left next to the key file");

    /* load again (create=1 must not regenerate an existing file) */
    cr_assert_eq(ph_keyring_load(path, 1, &b, &err), PH_OK, "%s", err.msg);
    uint8_t ha[PH_HASH_LEN], hb[PH_HASH_LEN];
    ph_crypto_index(a, "CODE", 4, ha);
    ph_crypto_index(b, "CODE", 4, hb);
    cr_assert_eq(memcmp(ha, hb, sizeof ha), 0, "reloaded key file gives another index");

    uint8_t blob[4 + PH_SEAL_OVERHEAD], pt[4];
    size_t bl, pl;
    cr_assert_eq(ph_crypto_seal(a, (const uint8_t *)"CODE", 4, NULL, 0, blob, &bl), PH_OK);
    cr_assert_eq(ph_crypto_open(b, blob, bl, NULL, 0, pt, &pl), PH_OK);
    ph_keyring_free(a);
    ph_keyring_free(b);

    /* a fresh file elsewhere has other keys */
    char other[128];
    ph_keyring *c = NULL;
    snprintf(other, sizeof other, "%s/other.key", tmpdir);
    cr_assert_eq(ph_keyring_load(other, 1, &c, &err), PH_OK, "%s", err.msg);
    ph_crypto_index(c, "CODE", 4, hb);
    cr_assert_neq(memcmp(ha, hb, sizeof ha), 0);
    ph_keyring_free(c);
}

Test(keyfile, missing_without_create)
{
    char path[128];
    snprintf(path, sizeof path, "%s/none.key", tmpdir);
    ph_keyring *kr = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_keyring_load(path, 0, &kr, &err), PH_EIO);
    cr_assert_null(kr);
    cr_assert_not_null(strstr(err.msg, path), "%s", err.msg);
    cr_assert_eq(access(path, F_OK), -1, "create=0 created a file");
}

#define IDX "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define K1  "1111111111111111111111111111111111111111111111111111111111111111"
#define K2  "a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2"

/* No error message may carry key material, whole or in part. */
static void assert_no_key_material(const char *msg)
{
    static const char *const keys[] = {IDX, K1, K2};
    for (size_t i = 0; i < 3; i++)
        for (size_t off = 0; off + 8 <= 64; off += 8) {
            char part[9];
            memcpy(part, keys[i] + off, 8);
            part[8] = 0;
            cr_assert_null(strstr(msg, part), "key material in message: %s", msg);
        }
}

Test(keyfile, rotation_and_comments)
{
    char path[128];
    snprintf(path, sizeof path, "%s/master.key", tmpdir);
    /* keys in any order, comments, blank lines, CRLF, tabs: the highest id seals */
    write_file(path,
               "# perkhub master keys\r\n"
               "\r\n"
               "index " IDX "\r\n"
               "  key\t2 " K2 "\n"
               "key 1 " K1 "\n"
               "   # old key above\n",
               0600);
    ph_keyring *kr = NULL, *old = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_keyring_load(path, 0, &kr, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ph_keyring_active_id(kr), 2);

    uint8_t ik[PH_KEY_LEN], k1[PH_KEY_LEN];
    unhex(IDX, ik, sizeof ik);
    unhex(K1, k1, sizeof k1);
    cr_assert_eq(ph_keyring_from_raw(ik, 1, k1, &old, &err), PH_OK);

    /* a blob sealed before the rotation (key 1) still opens */
    uint8_t blob[4 + PH_SEAL_OVERHEAD], pt[4];
    size_t bl, pl;
    cr_assert_eq(ph_crypto_seal(old, (const uint8_t *)"OLD1", 4, NULL, 0, blob, &bl), PH_OK);
    cr_assert_eq(ph_crypto_open(kr, blob, bl, NULL, 0, pt, &pl), PH_OK);
    cr_assert_eq(memcmp(pt, "OLD1", 4), 0);

    /* new blobs are sealed with key 2, which the old ring cannot open */
    cr_assert_eq(ph_crypto_seal(kr, (const uint8_t *)"NEW2", 4, NULL, 0, blob, &bl), PH_OK);
    cr_assert_eq(blob[0] << 8 | blob[1], 2);
    cr_assert_eq(ph_crypto_open(kr, blob, bl, NULL, 0, pt, &pl), PH_OK);
    cr_assert_eq(ph_crypto_open(old, blob, bl, NULL, 0, pt, &pl), PH_ECRYPTO);

    /* the index did not change with the rotation */
    uint8_t h1[PH_HASH_LEN], h2[PH_HASH_LEN];
    ph_crypto_index(kr, "CODE", 4, h1);
    ph_crypto_index(old, "CODE", 4, h2);
    cr_assert_eq(memcmp(h1, h2, sizeof h1), 0);
    ph_keyring_free(kr);
    ph_keyring_free(old);
}

Test(keyfile, open_modes_refused)
{
    static const mode_t modes[] = {0644, 0640, 0604, 0660, 0601};
    char path[128];
    snprintf(path, sizeof path, "%s/master.key", tmpdir);
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        write_file(path, "index " IDX "\nkey 1 " K1 "\n", modes[i]);
        ph_keyring *kr = NULL;
        ph_err err = {0};
        cr_assert_eq(ph_keyring_load(path, 1, &kr, &err), PH_EINVAL, "mode %o", modes[i]);
        cr_assert_null(kr);
        cr_assert_not_null(strstr(err.msg, path), "%s", err.msg);
        cr_assert_not_null(strstr(err.msg, "chmod 600"), "%s", err.msg);
        assert_no_key_material(err.msg);
    }
    /* 0400 is stricter than 0600 and fine */
    write_file(path, "index " IDX "\nkey 1 " K1 "\n", 0400);
    ph_keyring *kr = NULL;
    cr_assert_eq(ph_keyring_load(path, 0, &kr, NULL), PH_OK);
    ph_keyring_free(kr);
}

Test(keyfile, bad_files_name_the_line)
{
    static const struct {
        const char *text;
        const char *want; /* substring of the message, after "<path>" */
    } cases[] = {
        {"index " IDX "\nkey 1 " K1 "\nkey x " K2 "\n", ":3: expected `key <id> <64 hex digits>`"},
        {"index " IDX "\nkey 0 " K1 "\n", ":2: expected `key <id> <64 hex digits>`"},
        {"index " IDX "\nkey 65536 " K1 "\n", ":2: expected `key <id> <64 hex digits>`"},
        {"index " IDX "\nkey -1 " K1 "\n", ":2: expected `key <id>"},
        {"index " IDX "\nkey 1 " K1 "0\n", ":2: expected `key <id> <64 hex digits>`"},
        {"index " IDX "\nkey 1 1" K1 "\n", ":2: expected `key <id>"},
        {"index " IDX "\nkey 1 " K1 " extra\n", ":2: expected `key <id>"},
        {"index " IDX "\nkey 1\n", ":2: expected `key <id>"},
        {"index " IDX "\nkey 1 zz" K1 "\n", ":2: expected `key <id>"},
        {"index " IDX "\n\n# c\nkey 2 " K2 "\nkey 2 " K1 "\n",
         ":5: duplicate key id 2 (first on line 4)"},
        {"index " IDX "\nkey 1 " K1 "\nindex " K2 "\n", ":3: second `index` line"},
        {"index " IDX " " K1 "\nkey 1 " K1 "\n", ":1: expected `index <64 hex digits>`"},
        {"index\nkey 1 " K1 "\n", ":1: expected `index <64 hex digits>`"},
        {"index " IDX "\nsecret " K1 "\n", ":2: expected `index <64 hex digits>` or `key"},
        {K1 "\n", ":1: expected"},
        {"key 1 " K1 "\n", ": no `index"},
        {"index " IDX "\n# no keys\n", ": no `key"},
        {"", ": no `index"},
    };
    char path[128];
    snprintf(path, sizeof path, "%s/master.key", tmpdir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(path, cases[i].text, 0600);
        ph_keyring *kr = NULL;
        ph_err err = {0};
        cr_assert_eq(ph_keyring_load(path, 1, &kr, &err), PH_EINVAL, "case %zu: %s", i, err.msg);
        cr_assert_null(kr);
        cr_assert_eq(err.code, PH_EINVAL);
        char want[256];
        snprintf(want, sizeof want, "%s%s", path, cases[i].want);
        cr_expect_not_null(strstr(err.msg, want), "case %zu: got \"%s\", want \"%s\"", i, err.msg,
                           want);
        assert_no_key_material(err.msg);
    }
}

Test(keyfile, not_a_regular_file)
{
    ph_keyring *kr = NULL;
    ph_err err = {0};
    cr_assert_eq(chmod(tmpdir, 0700), 0);
    cr_assert_neq(ph_keyring_load(tmpdir, 1, &kr, &err), PH_OK);
    cr_assert_null(kr);
    cr_assert_not_null(strstr(err.msg, tmpdir), "%s", err.msg);
}

/* ph_buf_reserve: the growth every buffer that may hold codes goes through
 * (request bodies, supplier replies, order views): contents kept, doubling
 * from the first size, no growth when there is room, and a request the
 * doubling could not reach refused with the buffer untouched. */
Test(buf, reserve_keeps_contents_and_doubles)
{
    char *b = NULL;
    size_t cap = 0;
    cr_assert_eq(ph_buf_reserve(&b, &cap, 0, 10, 16), 0);
    cr_assert_eq(cap, 16);
    memcpy(b, "0123456789", 10);
    char *before = b;
    cr_assert_eq(ph_buf_reserve(&b, &cap, 10, 16, 16), 0);
    cr_assert_eq(b, before, "room enough: no new block");
    cr_assert_eq(ph_buf_reserve(&b, &cap, 10, 100, 16), 0);
    cr_assert_eq(cap, 128);
    cr_assert_eq(memcmp(b, "0123456789", 10), 0);
    cr_assert_eq(ph_buf_reserve(&b, &cap, 10, SIZE_MAX - 8, 16), -1);
    cr_assert_eq(cap, 128);
    cr_assert_eq(memcmp(b, "0123456789", 10), 0);
    free(b);
}

/* Key checks (store.h, "Keys"): equal for equal keys, different for another key
 * under the same id or another index key; an absent id is PH_ENOTFOUND. */
Test(crypto, key_check_values_tell_keys_apart)
{
    uint8_t ik[PH_KEY_LEN], k1[PH_KEY_LEN], a[32], b[32];
    ph_keyring *x, *y, *z;
    ph_err err = {0};
    memset(ik, 1, sizeof ik);
    memset(k1, 2, sizeof k1);
    cr_assert_eq(ph_keyring_from_raw(ik, 1, k1, &x, &err), PH_OK);
    cr_assert_eq(ph_keyring_from_raw(ik, 1, k1, &y, &err), PH_OK);
    k1[0] ^= 1;
    cr_assert_eq(ph_keyring_from_raw(ik, 1, k1, &z, &err), PH_OK);
    cr_assert_eq(ph_keyring_check_value(x, 1, a), PH_OK);
    cr_assert_eq(ph_keyring_check_value(y, 1, b), PH_OK);
    cr_assert(memcmp(a, b, 32) == 0);
    cr_assert_eq(ph_keyring_check_value(z, 1, b), PH_OK);
    cr_assert(memcmp(a, b, 32) != 0, "another key 1 has the same check value");
    cr_assert_eq(ph_keyring_check_value(x, PH_KEYCHECK_INDEX, a), PH_OK);
    cr_assert_eq(ph_keyring_check_value(z, PH_KEYCHECK_INDEX, b), PH_OK);
    cr_assert(memcmp(a, b, 32) == 0, "same index key, same check");
    cr_assert_eq(ph_keyring_check_value(x, 2, a), PH_ENOTFOUND);
    cr_assert(ph_keyring_has(x, 1) && !ph_keyring_has(x, 2));
    cr_assert_str_eq(ph_keyring_path(x), "<raw keys>");
    uint8_t blob[64];
    size_t len;
    cr_assert_eq(ph_crypto_seal(x, (const uint8_t *)"p", 1, NULL, 0, blob, &len), PH_OK);
    cr_assert_eq(ph_sealed_key_id(blob, len), 1);
    cr_assert_eq(ph_sealed_key_id(blob, 3), 0);
    ph_keyring_free(x);
    ph_keyring_free(y);
    ph_keyring_free(z);
}

/* ---- the allocator that wipes (wipe_alloc.h) ------------------------------------- */

#define SECRET "IQY-SECRET-CODE-0001"

/* What recording_free saw. Each test runs in a child process of its own, so
 * this is the one test's. */
static struct {
    size_t frees;       /* blocks jansson freed */
    size_t held_secret; /* of them, blocks that held SECRET just before */
    size_t nonzero;     /* bytes not zero once wiped, over all blocks */
} seen;

/* Stands in for free() under ph_wipe_free_to: the block is wiped and still
 * allocated here, so it can be read without touching freed memory. */
static void release_checked(void *base, size_t len)
{
    const unsigned char *b = base;
    for (size_t i = 0; i < len; i++)
        seen.nonzero += b[i] != 0;
    free(base);
}

/* jansson's malloc during the test: ph_wipe_malloc, the block zeroed so that
 * recording_free may search all of it (jansson leaves parts of some blocks
 * unwritten: valgrind would call the search a use of uninitialised bytes). */
static void *zeroed_malloc(size_t n)
{
    void *p = ph_wipe_malloc(n);
    if (p)
        memset(p, 0, n);
    return p;
}

/* jansson's free during the test: ph_wipe_free, with a look before and after. */
static void recording_free(void *p)
{
    if (!p)
        return;
    seen.frees++;
    if (memmem(p, ph_wipe_size(p), SECRET, strlen(SECRET)))
        seen.held_secret++;
    ph_wipe_free_to(p, release_checked);
}

/* Issue 10 (11): a core dump held codes from jansson's freed blocks. */
Test(wipe_alloc, every_block_jansson_frees_is_wiped_the_printed_text_too)
{
    json_malloc_t old_malloc;
    json_free_t old_free;
    json_get_alloc_funcs(&old_malloc, &old_free);
    json_set_alloc_funcs(zeroed_malloc, recording_free);

    json_error_t je;
    json_t *o = json_loads("{\"code\":\"" SECRET "\",\"card_no\":\"8801\",\"n\":[1,2,3]}", 0, &je);
    cr_assert_not_null(o, "%s", je.text);
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    cr_assert_not_null(text);
    cr_assert_not_null(strstr(text, SECRET));
    json_decref(o);
    ph_json_free(text); /* through jansson's free: recording_free */

    json_set_alloc_funcs(old_malloc, old_free);
    cr_assert_gt(seen.frees, 5, "jansson freed %zu blocks", seen.frees);
    /* the parsed string and the printed text at least; the lexer's buffers too */
    cr_assert_geq(seen.held_secret, 2, "%zu blocks held the secret", seen.held_secret);
    cr_assert_eq(seen.nonzero, 0, "%zu bytes left after wiping", seen.nonzero);
}

Test(wipe_alloc, blocks_are_aligned_sized_and_installable)
{
    for (size_t n = 0; n < 100; n += 7) {
        unsigned char *p = ph_wipe_malloc(n);
        cr_assert_not_null(p);
        cr_assert_eq((uintptr_t)p % alignof(max_align_t), 0, "size %zu: misaligned", n);
        cr_assert_eq(ph_wipe_size(p), n);
        memset(p, 0xa5, n); /* every byte is the caller's (ASan checks the bounds) */
        ph_wipe_free(p);
    }
    cr_assert_null(ph_wipe_malloc(SIZE_MAX));
    cr_assert_null(ph_wipe_malloc(SIZE_MAX - 8));
    ph_wipe_free(NULL);
    ph_wipe_free_to(NULL, release_checked);
    ph_json_free(NULL);

    /* before the install json_dumps' text is malloc's, after it ours: ph_json_free
     * frees both right (a mismatch is an invalid free under ASan and valgrind) */
    json_t *o = json_pack("{s:s}", "code", SECRET);
    char *text = json_dumps(o, 0);
    json_decref(o);
    ph_json_free(text);

    ph_json_alloc_install();
    json_malloc_t m;
    json_free_t f;
    json_get_alloc_funcs(&m, &f);
    cr_assert_eq(m, ph_wipe_malloc);
    cr_assert_eq(f, ph_wipe_free);
    o = json_pack("{s:s}", "code", SECRET);
    text = json_dumps(o, 0);
    cr_assert_not_null(text);
    cr_assert_eq(ph_wipe_size(text), strlen(text) + 1);
    json_decref(o);
    ph_json_free(text);
}
