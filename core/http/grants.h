/*
 * grants.h — what the order handler and the grant handlers (api_grants.c)
 * share about grants (issue 16): claim tokens, holders, request keys and the
 * grant's view.
 *
 * A claim token is a secret like a code (docs/design.md rule 3): 32 random
 * bytes, base64url, prefixed "pg_"; it lives in plaintext only on the request
 * that creates it (shown once in the answer) or presents it, and reaches the
 * store only as its keyed hash (ph_crypto_index). Thread: any; no state.
 */
#ifndef PH_HTTP_GRANTS_H
#define PH_HTTP_GRANTS_H

#include <stdint.h>

#include "crypto/crypto.h"
#include "http/end_user.h"
#include "store/store.h"

#define PH_GRANT_TOKEN_LEN 46 /* "pg_" + 43 base64url characters */

/* A new token into out (NUL-terminated) and its keyed hash. PH_OK or
 * PH_ECRYPTO (no randomness: out and hash zeroed). */
int ph_grant_token_new(const ph_keyring *kr, char out[PH_GRANT_TOKEN_LEN + 1], uint8_t hash[32]);

/* The keyed hash of a token a caller sent: PH_OK, or PH_EINVAL when it is not
 * shaped like one (the message to send names the field, never the value). */
int ph_grant_token_hash(const ph_keyring *kr, const char *token, uint8_t hash[32]);

/* The store's key of a caller's request_id (NULL: none, key zeroed): a keyed
 * hash of client and id, so one mall's ids never match another's. */
void ph_grant_request_key(const ph_keyring *kr, const char *client, const char *request_id,
                          uint8_t key[32]);

/* The holder an end user makes: its subject key (ph_risk_key of end_user.id),
 * masked id into masked, tags as a JSON array text into tags (size bytes);
 * h's strings point at masked and tags. PH_OK, PH_ELIMIT (tags too long). */
int ph_grant_holder_of(const ph_end_user *eu, const ph_keyring *kr, ph_grant_holder *h,
                       char masked[PH_GRANT_HOLDER_MASKED], char *tags, size_t size);

/* The view of a grant's stored record (docs/api.md, "Grants"): times in RFC
 * 3339, the holder masked, the gift chain; never a token, a key or a subject
 * key. NULL when the record does not parse. The caller owns the result. */
struct json_t *ph_grant_view(const char *record);

#endif
