/*
 * crypto.h — the keyring, sealing of secrets at rest, and keyed lookup hashes.
 *
 * Rule 3 of docs/design.md lives here. Card codes (and later recharge accounts) are
 * stored only as AES-256-GCM ciphertexts that carry the id of the key that
 * sealed them, so keys can rotate: new data is sealed with the newest key,
 * old data stays readable while its key stays in the file. Codes are found by
 * HMAC-SHA256 under a separate index key, never by plaintext, so the lookup
 * index reveals nothing without the key file.
 *
 * Key file (text, mode 0600 or stricter, refused otherwise):
 *
 *   # perkhub master keys
 *   index 64-hex-digits          one HMAC index key (never rotates: it keys the index)
 *   key 1 64-hex-digits          AES-256 keys by id 1..65535; the highest id seals
 *   key 2 64-hex-digits
 *
 * All functions are thread-safe on a loaded (read-only) keyring. Key material is
 * wiped (OPENSSL_cleanse) before it is freed.
 */
#ifndef PH_CRYPTO_H
#define PH_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "crypto/wipe_alloc.h"

#define PH_KEY_LEN  32
#define PH_HASH_LEN 32
/* A sealed blob is: key id (2 bytes, big-endian) | nonce (12) | ciphertext | tag (16). */
#define PH_SEAL_OVERHEAD (2 + 12 + 16)

typedef struct ph_keyring ph_keyring;

/* Loads the key file at path. When it does not exist and `create` is non-zero,
 * generates a new one (index key and key 1 from the OS RNG), writes it with mode
 * 0600 and loads it. On success *out is owned by the caller (ph_keyring_free).
 * Errors: PH_EIO (unreadable, cannot create), PH_EINVAL (syntax: the message
 * names the line; permissions too open), PH_ECRYPTO (RNG failure).
 *
 * The file must have exactly one `index` line and at least one `key` line; key
 * ids are unique; blank lines and lines starting with `#` are ignored; CRLF is
 * fine. Messages name the path and line but never quote a line (it may hold a
 * key). Creation makes missing directories (mode 0700), writes a temp file
 * (O_EXCL, 0600), fsyncs it and moves it into place without replacing anything:
 * if another process created the file meanwhile, that file is loaded instead,
 * so two daemons racing on first start end up with the same keys.
 * @note Thread-safe; touches no global state. */
int ph_keyring_load(const char *path, int create, ph_keyring **out, ph_err *err);

/* ---- key file editing (keyfile.c): `perkhubd keys` --------------------------
 * Each edit locks the file (flock) for its read-modify-write and replaces it by
 * rename after an fsync (mode 0600, directory synced), so a starting daemon
 * reads the old file or the new one. The file must load (ph_keyring_load)
 * before it is edited; comments and other lines are kept as they are.
 * @note Any thread; never called by the running daemon (it reads keys at start). */

/* Writes a new key file (index key and key 1, as ph_keyring_load's create).
 * PH_EDUP when a file exists at path (never overwritten), else as
 * ph_keyring_load. */
int ph_keyfile_create(const char *path, ph_err *err);

/* Appends `key N <64 random hex>` with N one above the highest id; *new_id
 * gets N. Errors: as ph_keyring_load, PH_ELIMIT (65535 taken), PH_EIO. */
int ph_keyfile_add(const char *path, uint16_t *new_id, ph_err *err);

/* Removes the line of key id. Refuses (file unchanged): PH_ENOTFOUND (no such
 * key), PH_ESTATE (the newest key: it seals new data). Whether the data still
 * needs the key is the caller's question (the store's). */
int ph_keyfile_remove(const char *path, uint16_t id, ph_err *err);

/* Builds a keyring from raw keys, for tests and tools: one index key and one
 * sealing key with id key_id (1..65535, else PH_EINVAL). Caller owns *out. */
int ph_keyring_from_raw(const uint8_t index_key[PH_KEY_LEN], uint16_t key_id,
                        const uint8_t key[PH_KEY_LEN], ph_keyring **out, ph_err *err);

/* Wipes and frees. NULL is a no-op. */
void ph_keyring_free(ph_keyring *kr);

/* The id of the key that seals new data. */
uint16_t ph_keyring_active_id(const ph_keyring *kr);

/* The key file this keyring was loaded from ("<raw keys>" for
 * ph_keyring_from_raw), for messages. Valid while kr lives. */
const char *ph_keyring_path(const ph_keyring *kr);

/* The sealing key ids of the keyring, ascending: the first max into out;
 * returns how many there are. */
size_t ph_keyring_ids(const ph_keyring *kr, uint16_t *out, size_t max);

/* 1 when the keyring holds a sealing key with this id. */
int ph_keyring_has(const ph_keyring *kr, uint16_t id);

/* A key's check value: HMAC-SHA256 under the key of a fixed text naming its id
 * (for id PH_KEYCHECK_INDEX, under the index key). The store keeps one per key
 * it depends on, so a wrong key file is refused at start instead of turning
 * codes unreadable (store.h, "keys"). Deterministic; reveals nothing about the
 * key. PH_OK, or PH_ENOTFOUND when the keyring has no key with that id. */
#define PH_KEYCHECK_INDEX 0
int ph_keyring_check_value(const ph_keyring *kr, uint16_t id, uint8_t out[PH_HASH_LEN]);

/* The key id a sealed blob names (its first two bytes); 0 for a blob too short
 * to be one. Key ids are never 0. */
uint16_t ph_sealed_key_id(const uint8_t *sealed, size_t len);

/* Seals pt (ptlen bytes) with the active key and a fresh random nonce; aad
 * (may be NULL/0) is authenticated but not stored. Writes ptlen +
 * PH_SEAL_OVERHEAD bytes to out (caller-provided, at least that large) and sets
 * *outlen. Returns PH_OK or PH_ECRYPTO. */
int ph_crypto_seal(const ph_keyring *kr, const uint8_t *pt, size_t ptlen, const uint8_t *aad,
                   size_t aadlen, uint8_t *out, size_t *outlen);

/* Opens a sealed blob (inlen bytes) into out (at least inlen - PH_SEAL_OVERHEAD
 * bytes), setting *outlen. Returns PH_OK, or PH_ECRYPTO when the key id is
 * unknown, the blob is short, or the tag does not verify (tampered or wrong aad).
 * On PH_ECRYPTO, out holds zeros, never unauthenticated plaintext.
 * The caller wipes out when done with the plaintext. */
int ph_crypto_open(const ph_keyring *kr, const uint8_t *in, size_t inlen, const uint8_t *aad,
                   size_t aadlen, uint8_t *out, size_t *outlen);

/* HMAC-SHA256 of data under the index key: the lookup key for a card code.
 * The three hash functions cannot fail short of OpenSSL running out of memory;
 * then out is filled with random bytes, so it equals no real hash (a failed
 * hash must never match another row or pass a signature check). */
void ph_crypto_index(const ph_keyring *kr, const void *data, size_t len, uint8_t out[PH_HASH_LEN]);

/* Plain SHA-256 (API tokens, request fingerprints). Fetches the digest from
 * OpenSSL's provider store on every call (a locked lookup): on a hot path use
 * ph_crypto_sha256, which uses the keyring's digest fetched once. */
void ph_sha256(const void *data, size_t len, uint8_t out[PH_HASH_LEN]);

/* The same SHA-256 as ph_sha256 (same output), with the digest the keyring
 * fetched when it was loaded. Thread-safe on a loaded keyring; fails only as
 * the hashes above (out random). */
void ph_crypto_sha256(const ph_keyring *kr, const void *data, size_t len, uint8_t out[PH_HASH_LEN]);

/* HMAC-SHA256 under an arbitrary key (webhook signatures, plugin host service). */
void ph_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                    uint8_t out[PH_HASH_LEN]);

/* A key prepared for HMAC-SHA256: OpenSSL's MAC fetched and keyed once, so a
 * signature costs a copy of the keyed state, where ph_hmac_sha256 (HMAC())
 * fetches the MAC and the digest by name on every call (a supplier callback's
 * signature: ~4 us of perkhubd's CPU per recharge, bench/README.md "The
 * recharge path's CPU"). Owned by the caller; ph_hmac_key_free wipes its copy
 * of the key. Immutable once made: ph_hmac_key_sign may run on any number of
 * threads at once. ph_hmac_key_new: PH_OK, PH_ENOMEM or PH_ECRYPTO (out NULL). */
typedef struct ph_hmac_key ph_hmac_key;
int ph_hmac_key_new(const void *key, size_t keylen, ph_hmac_key **out);
void ph_hmac_key_free(ph_hmac_key *k);
/* 1 when k was made from exactly these key bytes (compared in constant time). */
int ph_hmac_key_is(const ph_hmac_key *k, const void *key, size_t keylen);
/* The same bytes as ph_hmac_sha256 under k's key; on a failure out is random,
 * as there. Any thread. */
void ph_hmac_key_sign(const ph_hmac_key *k, const void *data, size_t len, uint8_t out[PH_HASH_LEN]);

/* Constant-time equality of n bytes: 1 when equal. */
int ph_ct_equal(const void *a, const void *b, size_t n);

/* Fills buf with n bytes from the OS CSPRNG. PH_OK or PH_ECRYPTO. */
int ph_random_bytes(void *buf, size_t n);

/* ph_wipe (zeroes n bytes in a way the compiler cannot drop) is in wipe_alloc.h,
 * beside the allocator that wipes on free, which perkctl compiles in too. */

/* Grows *buf (*cap bytes, the first len in use) to hold at least need bytes,
 * doubling from first. Unlike realloc, the old block is wiped before it is
 * freed: request bodies, replies and views may hold codes or accounts.
 * Returns 0, or -1 out of memory with *buf and *cap unchanged. */
int ph_buf_reserve(char **buf, size_t *cap, size_t len, size_t need, size_t first);

/* An append-only byte buffer grown through ph_buf_reserve (from 1 KB, old
 * blocks wiped) that remembers running out of memory instead of failing each
 * call: write everything, then look at oom once. The bytes written are followed
 * by a NUL (p is NULL until something was written). Zero-initialize it; the
 * owner frees it with ph_wbuf_free or takes p (then wipes and frees it). */
typedef struct ph_wbuf {
    char *p;
    size_t len, cap;
    int oom;
} ph_wbuf;
void ph_wbuf_put(ph_wbuf *b, const void *src, size_t n);
/* Wipes and frees the buffer; the struct is zeroed. */
void ph_wbuf_free(ph_wbuf *b);

/* ---- encodings and ciphers for the plugin host table (SDK ABI 1.1) ----------
 *
 * Thin wrappers over OpenSSL: the caller provides the output buffer (sized with
 * the *_max / *_len helpers), so plugin_host.c can allocate it from a
 * plugin's host allocator. All are thread-safe and keep no state. */

/* MD5 of len bytes into out. Only for supplier protocols that sign with it,
 * never as security of our own. Cannot fail short of OpenSSL running out of
 * memory; then out is random (as the SHA-256 functions above). */
void ph_md5(const void *data, size_t len, uint8_t out[16]);

/* The largest block of any cipher: out of ph_cipher needs inlen + this. */
#define PH_CIPHER_BLOCK_MAX 32

/* Encrypts (encrypt != 0) or decrypts inlen bytes with the OpenSSL cipher
 * `name` (as `openssl enc -list` names it: "aes-256-cbc", "aes-128-ecb"), PKCS#7
 * padding for block modes. keylen and ivlen must be exactly the cipher's (ivlen
 * 0 and iv NULL for ECB). out has room for outcap bytes, at least inlen +
 * PH_CIPHER_BLOCK_MAX; *outlen is set on PH_OK.
 * Errors: PH_ENOTFOUND (no such cipher, or an AEAD / key-wrap / XTS mode, which
 * this plain interface cannot use safely), PH_EINVAL (wrong key or iv length),
 * PH_ELIMIT (outcap too small, or inlen beyond INT_MAX), PH_ECRYPTO (input does
 * not decrypt: bad padding, wrong key, a length that is not whole blocks),
 * PH_ENOMEM. On error out holds zeros. */
int ph_cipher(const char *name, int encrypt, const uint8_t *key, size_t keylen, const uint8_t *iv,
              size_t ivlen, const uint8_t *in, size_t inlen, uint8_t *out, size_t outcap,
              size_t *outlen);

/* The length of standard base64 (RFC 4648, padded) of len bytes, without a
 * NUL; SIZE_MAX when it would not fit in a size_t. */
size_t ph_base64_encoded_len(size_t len);

/* Writes standard base64 of len bytes to out (ph_base64_encoded_len(len) + 1
 * bytes, NUL-terminated). Returns the length written, without the NUL. */
size_t ph_base64_encode(const void *data, size_t len, char *out);

/* The most bytes that len characters of base64 decode to. */
size_t ph_base64_decoded_max(size_t len);

/* Decodes standard base64: alphabet A-Z a-z 0-9 + /, padding optional but
 * correct when present, no whitespace. out has room for
 * ph_base64_decoded_max(len) bytes; *outlen is set on PH_OK.
 * Errors: PH_EINVAL (not base64; out holds zeros). */
int ph_base64_decode(const char *text, size_t len, uint8_t *out, size_t *outlen);

#endif
