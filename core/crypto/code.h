/*
 * code.h — one card code: the plaintext it is sealed as, and the normalized
 * form its lookup hash is made from.
 *
 * Beside the keyring (crypto.h), which is all it calls: the store (which verifies and
 * re-indexes codes at open and never issues one it cannot unseal), import and
 * the HTTP handlers can all use it. Thread-safe: no state.
 *
 * Normalization. People retype codes: in lower case, with spaces, without the
 * dashes, or with an O for a 0. The sealed value keeps the code exactly as it
 * was imported (that is what an owner is shown); only the keyed lookup hash is
 * made from the normalized form, at import and at lookup alike, so two codes
 * that normalize equal are one code to perkhub (a duplicate at import).
 * Every code is normalized by:
 *   - ASCII letters to upper case;
 *   - spaces, tabs and dashes ('-') removed;
 * and, only for a product whose config says so (products[].code_lookalikes,
 * docs/config.md), look-alike characters mapped, e.g. O to 0, I and L to 1.
 * The rule a batch was hashed with is recorded on the batch.
 */
#ifndef PH_CODE_H
#define PH_CODE_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"

#define PH_CODE_MAX 128 /* bytes of a code or card number */

/* The plaintext a code is sealed as: code length (1 byte), code, card number,
 * authenticated with this AAD. */
#define PH_CODE_AAD "perkhub/code/v1"
/* A recharge account is sealed alone, under this AAD (supply/fulfil.c). */
#define PH_ACCOUNT_AAD "perkhub/account/v1"

/* A look-alike rule in canonical form: pairs FROM TO of upper-case letters and
 * digits, sorted by FROM, each FROM once, no FROM that is also a TO
 * ("I1L1O0"); "" (or NULL) maps nothing. Config parses what ops write into
 * this form (ph_code_lookalikes_parse). */
#define PH_LOOKALIKES_MAX 72

/* Parses "O=0 I=1, L=1" (pairs FROM=TO separated by spaces or commas, letters
 * in either case) into canonical form in out (PH_LOOKALIKES_MAX + 1 bytes).
 * PH_OK, or PH_EINVAL with a reason (static text) in *why. */
int ph_code_lookalikes_parse(const char *text, size_t len, char *out, const char **why);

/* Normalizes code (len bytes) under rule (canonical, may be NULL) into out (at
 * least len bytes), setting *outlen. PH_EINVAL when nothing is left (a code
 * of only dashes and spaces). */
int ph_code_normalize(const char *code, size_t len, const char *rule, char *out, size_t *outlen);

/* The lookup hash of a code: ph_crypto_index of its normalized form.
 * PH_OK or PH_EINVAL (ph_code_normalize; len 0 or over PH_CODE_MAX). */
int ph_code_hash(const ph_keyring *kr, const char *code, size_t len, const char *rule,
                 uint8_t hash[32]);

/* Seals one code (and card number; card may be NULL when card_len is 0) the way
 * every code is stored, into out (at least 1 + code_len + card_len +
 * PH_SEAL_OVERHEAD bytes), and computes its lookup hash under rule (may be
 * NULL). code_len and card_len are at most PH_CODE_MAX.
 * PH_OK, PH_EINVAL, PH_ECRYPTO. ph_code_seal is ph_code_seal_rule without
 * look-alikes (supplier deliveries). */
int ph_code_seal_rule(const ph_keyring *kr, const char *rule, const char *code, size_t code_len,
                      const char *card, size_t card_len, uint8_t *out, size_t *outlen,
                      uint8_t hash[32]);
int ph_code_seal(const ph_keyring *kr, const char *code, size_t code_len, const char *card,
                 size_t card_len, uint8_t *out, size_t *outlen, uint8_t hash[32]);

/* Opens a sealed code into code/card (each PH_CODE_MAX + 1 bytes, NUL-terminated;
 * card is "" when there is none). PH_OK or PH_ECRYPTO (unknown key id, wrong
 * key, damaged blob; code and card then hold zeros). The caller wipes both. */
int ph_code_unseal(const ph_keyring *kr, const uint8_t *sealed, size_t len, char *code, char *card);

#endif
