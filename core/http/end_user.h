/*
 * end_user.h — who an order is for (issue 15): the `end_user` object of
 * POST /v1/orders read, checked and normalized; its values masked, turned
 * into subject keys (risk.h's ph_risk_key) and the phone sealed; and the
 * order's risk record written (docs/store.md, "Order risk").
 *
 * Personal data. The plaintext values live only in a ph_end_user on the
 * request, from ph_end_user_parse until ph_end_user_wipe (api_orders.c wipes
 * it before the command is submitted): no message, log line, record or event
 * ever carries one. Error messages name the member, never its value.
 *
 * Ownership: a ph_end_user is a plain value the caller owns (no heap); the
 * record is the caller's (free). Thread: any (pure given the keyring).
 */
#ifndef PH_END_USER_H
#define PH_END_USER_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "risk/risk.h"

struct json_t;

#define PH_EU_ID_MAX    128 /* bytes of end_user.id and end_user.device_id */
#define PH_EU_PHONE_MAX 20  /* digits of end_user.phone */
#define PH_EU_IP_MAX    46  /* INET6_ADDRSTRLEN */
#define PH_EU_MSG_MAX   160

typedef struct ph_end_user {
    int given; /* the order carried an end_user object */
    /* plaintext, normalized; "" not given. Wiped by ph_end_user_wipe. */
    char id[PH_EU_ID_MAX + 1], device[PH_EU_ID_MAX + 1], phone[PH_EU_PHONE_MAX + 1];
    char ip[PH_EU_IP_MAX], ip24[PH_EU_IP_MAX + 4]; /* canonical; ip24: "203.0.113.0/24" */
    /* masked forms (shown, stored) */
    char id_m[16], device_m[16], phone_m[16], ip_m[PH_EU_IP_MAX + 4];
    /* the mall's tags, "key=value", kept as given */
    size_t ntags;
    char tags[PH_RISK_TAGS_MAX][PH_RISK_TAG_MAX + 1];
    const char *tagp[PH_RISK_TAGS_MAX];
    /* the phone sealed (ph_crypto_seal), base64; "" none */
    char phone_sealed[128];
} ph_end_user;

/* Reads `end_user` (j NULL: none given, *out zeroed, PH_OK). A malformed
 * member: PH_EINVAL with msg "end_user.<member>: expected ..." (never the
 * value); out is wiped. */
int ph_end_user_parse(const struct json_t *j, ph_end_user *out, char msg[PH_EU_MSG_MAX]);

/* The subject of an order: eu's keys, plus the recharge account (NULL none)
 * and the client, which every order has. sku, brand (NULL none) and the tags
 * are borrowed from eu and the caller for the subject's life. */
void ph_end_user_subject(const ph_end_user *eu, const ph_keyring *kr, const char *client,
                         const char *account, const char *sku, const char *brand, int64_t amount,
                         int64_t now, ph_risk_subject *out);

/* Seals eu->phone into eu->phone_sealed (nothing without a phone).
 * PH_ECRYPTO. */
int ph_end_user_seal_phone(ph_end_user *eu, const ph_keyring *kr);

/* The order's risk record, JSON text with members in a fixed order starting
 * {"v":1,"at":<ms>, ... (docs/store.md, "Order risk"): masked values, keys as
 * 16 hex digits, the sealed phone, the decision (d NULL: allow, no hits).
 * NULL without memory; *len its length. Free with free(). */
char *ph_end_user_record(const ph_end_user *eu, const ph_risk_subject *s, const ph_risk_decision *d,
                         size_t *len);

/* A stored risk record read back (the counter rebuild, a blocked order's
 * subjects): the subject as the check had it (keys, sku, brand, tags, amount,
 * now = "at"), the decision's action, and the review's outcome. Strings are
 * borrowed from the parsed record until ph_risk_record_clear. */
typedef struct ph_risk_record {
    struct json_t *json;
    const char *tagp[PH_RISK_TAGS_MAX];
    ph_risk_subject subject;
    int action;         /* PH_RISK_ALLOW / _REVIEW / _DENY */
    int blocked;        /* 1: the review blocked it */
    int64_t blocked_at; /* ms: when (the review's time), else 0 */
} ph_risk_record;

/* PH_OK, or PH_EINVAL for a record that is not one (nothing to clear). */
int ph_risk_record_read(const char *txt, size_t len, ph_risk_record *out);
void ph_risk_record_clear(ph_risk_record *rec);

/* Zeroes the plaintext values (the masks, tags and keys stay). */
void ph_end_user_wipe(ph_end_user *eu);

#endif
