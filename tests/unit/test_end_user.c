/*
 * test_end_user.c — an order's end user (issue 15, http/end_user.c): members
 * read and normalized, masks, subject keys (ph_risk_key, never 0, the same
 * value always the same key, a different variable another), the phone sealed
 * and opened back, the risk record's fixed member order and what it never
 * holds, and the record read back for the counters' rebuild.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "http/end_user.h"

static ph_keyring *g_kr;

static void keys_up(void)
{
    uint8_t ik[PH_KEY_LEN], k[PH_KEY_LEN];
    for (int i = 0; i < PH_KEY_LEN; i++) {
        ik[i] = (uint8_t)(i * 7 + 1);
        k[i] = (uint8_t)(i * 3 + 5);
    }
    ph_err err = {0};
    cr_assert_eq(ph_keyring_from_raw(ik, 1, k, &g_kr, &err), PH_OK, "%s", err.msg);
}

static void keys_down(void)
{
    ph_keyring_free(g_kr);
}

TestSuite(end_user, .init = keys_up, .fini = keys_down);

static int parse(const char *txt, ph_end_user *eu, char msg[PH_EU_MSG_MAX])
{
    json_t *j = json_loads(txt, 0, NULL);
    cr_assert_not_null(j, "%s", txt);
    msg[0] = 0;
    int rc = ph_end_user_parse(j, eu, msg);
    json_decref(j);
    return rc;
}

Test(end_user, members_are_normalized_and_masked)
{
    ph_end_user eu;
    char msg[PH_EU_MSG_MAX];
    cr_assert_eq(
        parse("{\"id\":\"user-000123\",\"ip\":\"203.0.113.9\",\"device_id\":\"d-1\","
              "\"phone\":\"+8613800138000\",\"tags\":{\"dept\":\"sales\",\"level\":\"3\"}}",
              &eu, msg),
        PH_OK, "%s", msg);
    cr_assert(eu.given);
    cr_assert_str_eq(eu.id_m, "us****23");
    cr_assert_str_eq(eu.device_m, "****", "under 8 bytes: nothing shown");
    cr_assert_str_eq(eu.phone, "8613800138000", "the phone as digits");
    cr_assert_str_eq(eu.phone_m, "861****8000");
    cr_assert_str_eq(eu.ip, "203.0.113.9");
    cr_assert_str_eq(eu.ip24, "203.0.113.0/24");
    cr_assert_str_eq(eu.ip_m, "203.0.113.*");
    cr_assert_eq(eu.ntags, 2);
    cr_assert_str_eq(eu.tags[0], "dept=sales");
    cr_assert_str_eq(eu.tags[1], "level=3");
    ph_end_user_wipe(&eu);
    cr_assert_str_eq(eu.id, "");
    cr_assert_str_eq(eu.phone, "");
    cr_assert_str_eq(eu.id_m, "us****23", "the masks stay");

    cr_assert_eq(parse("{\"ip\":\"2001:DB8:0:1:0:0:0:7\"}", &eu, msg), PH_OK, "%s", msg);
    cr_assert_str_eq(eu.ip, "2001:db8:0:1::7", "canonical text");
    cr_assert_str_eq(eu.ip24, "2001:db8:0:1::/64");
    cr_assert_str_eq(eu.ip_m, "2001:db8:0:1::*");
    cr_assert_eq(ph_end_user_parse(NULL, &eu, msg), PH_OK);
    cr_assert(!eu.given);
}

Test(end_user, malformed_members_are_named_never_quoted)
{
    static const struct {
        const char *in, *msg;
    } bad[] = {
        {"[]", "end_user: expected an object"},
        {"{\"id\":\"\"}", "end_user.id: expected 1-128 printable ASCII bytes"},
        {"{\"device_id\":\"caf\\u00e9\"}",
         "end_user.device_id: expected 1-128 printable ASCII bytes"},
        {"{\"ip\":\"1.2.3\"}", "end_user.ip: expected an IPv4 or IPv6 address"},
        {"{\"phone\":\"++86138\"}", "end_user.phone: expected 5-20 digits, optionally after '+'"},
        {"{\"phone\":\"123456789012345678901\"}",
         "end_user.phone: expected 5-20 digits, optionally after '+'"},
        {"{\"tags\":{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\",\"d\":\"4\",\"e\":\"5\",\"f\":\"6\","
         "\"g\":\"7\",\"h\":\"8\",\"i\":\"9\",\"j\":\"10\",\"k\":\"11\",\"l\":\"12\",\"m\":\"13\","
         "\"n\":\"14\",\"o\":\"15\",\"p\":\"16\",\"q\":\"17\"}}",
         "end_user.tags: expected an object of at most 16 tags"},
        {"{\"tags\":{\"ok\":\"1\",\"13800138000\":\"x=y\"}}",
         "end_user.tags: tag 2: expected a value of 1-64 printable bytes without '='"},
        {"{\"id\":\"a\",\"13800138000\":1}",
         "end_user: member 2 is unknown (expected id, ip, device_id, phone, tags)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ph_end_user eu;
        char msg[PH_EU_MSG_MAX];
        cr_assert_eq(parse(bad[i].in, &eu, msg), PH_EINVAL, "%s", bad[i].in);
        cr_assert_str_eq(msg, bad[i].msg, "%s", bad[i].in);
        cr_assert_str_eq(eu.id, "", "wiped on refusal");
    }
}

Test(end_user, keys_are_keyed_per_variable_and_the_phone_opens_back)
{
    ph_end_user eu;
    char msg[PH_EU_MSG_MAX];
    cr_assert_eq(
        parse("{\"id\":\"u-1\",\"phone\":\"13800138000\",\"ip\":\"203.0.113.9\"}", &eu, msg),
        PH_OK);
    ph_risk_subject s;
    ph_end_user_subject(&eu, g_kr, "mall", "13900000000", "sku.a", "brand", 3000, 77, &s);
    cr_assert_neq(s.keys[PH_RISK_USER], 0);
    cr_assert_neq(s.keys[PH_RISK_PHONE], 0);
    cr_assert_neq(s.keys[PH_RISK_IP24], 0);
    cr_assert_neq(s.keys[PH_RISK_ACCOUNT], 0);
    cr_assert_neq(s.keys[PH_RISK_CLIENT], 0);
    cr_assert_eq(s.keys[PH_RISK_DEVICE], 0, "not given: no key");
    cr_assert_eq(s.keys[PH_RISK_USER], ph_risk_key(g_kr, PH_RISK_USER, "u-1", 3));
    cr_assert_neq(ph_risk_key(g_kr, PH_RISK_DEVICE, "u-1", 3), s.keys[PH_RISK_USER],
                  "the same value under another variable is another subject");
    cr_assert_eq(s.amount, 3000);
    cr_assert_eq(s.now, 77);

    cr_assert_eq(ph_end_user_seal_phone(&eu, g_kr), PH_OK);
    uint8_t blob[128], out[64];
    size_t n = 0, len = 0;
    cr_assert_eq(ph_base64_decode(eu.phone_sealed, strlen(eu.phone_sealed), blob, &n), PH_OK);
    cr_assert(n > PH_SEAL_OVERHEAD);
    static const char aad[] = "perkhub end_user.phone v1";
    cr_assert_eq(ph_crypto_open(g_kr, blob, n, (const uint8_t *)aad, sizeof aad - 1, out, &len),
                 PH_OK);
    cr_assert_eq(len, 11);
    cr_assert_eq(memcmp(out, "13800138000", 11), 0);
    ph_end_user_wipe(&eu);
}

Test(end_user, the_record_has_a_fixed_order_and_reads_back)
{
    ph_end_user eu;
    char msg[PH_EU_MSG_MAX];
    cr_assert_eq(parse("{\"id\":\"user-000123\",\"phone\":\"13800138000\",\"device_id\":"
                       "\"device-99887766\",\"tags\":{\"campaign\":\"new-user\"}}",
                       &eu, msg),
                 PH_OK);
    ph_risk_subject s;
    ph_end_user_subject(&eu, g_kr, "mall", NULL, "iqiyi.gold.1m", "iqiyi", 3000, 1765000000000LL,
                        &s);
    cr_assert_eq(ph_end_user_seal_phone(&eu, g_kr), PH_OK);
    ph_risk_decision d = {.action = PH_RISK_REVIEW, .rule = "per-user", .nhits = 1};
    snprintf(d.hits[0].rule, sizeof d.hits[0].rule, "per-user");
    d.hits[0].action = PH_RISK_REVIEW;
    size_t len = 0;
    char *rec = ph_end_user_record(&eu, &s, &d, &len);
    cr_assert_not_null(rec);
    cr_assert_eq(strlen(rec), len);
    static const char head[] = "{\"v\":1,\"at\":1765000000000,\"sku\":\"iqiyi.gold.1m\",\"brand\":"
                               "\"iqiyi\",\"tags\":[\"campaign=new-user\"],\"amount\":3000,"
                               "\"keys\":{\"user\":\"";
    cr_assert_eq(strncmp(rec, head, sizeof head - 1), 0, "%s", rec);
    cr_assert_not_null(strstr(rec,
                              "\"end_user\":{\"id\":\"us****23\",\"device\":\"de****66\","
                              "\"phone\":\"138****8000\",\"tags\":{\"campaign\":\"new-user\"}}"),
                       "%s", rec);
    cr_assert_not_null(strstr(rec, "\"decision\":{\"action\":\"review\",\"rule\":\"per-user\","
                                   "\"hits\":[{\"rule\":\"per-user\",\"action\":\"review\","
                                   "\"dry_run\":false}]}}"),
                       "%s", rec);
    cr_assert_null(strstr(rec, "user-000123"));
    cr_assert_null(strstr(rec, "13800138000"));
    cr_assert_null(strstr(rec, "device-99887766"));

    ph_risk_record back;
    cr_assert_eq(ph_risk_record_read(rec, len, &back), PH_OK);
    cr_assert_eq(back.action, PH_RISK_REVIEW);
    cr_assert_eq(back.subject.now, 1765000000000LL);
    cr_assert_eq(back.subject.amount, 3000);
    cr_assert_str_eq(back.subject.sku, "iqiyi.gold.1m");
    cr_assert_str_eq(back.subject.brand, "iqiyi");
    cr_assert_eq(back.subject.ntags, 1);
    cr_assert_str_eq(back.subject.tags[0], "campaign=new-user");
    for (int v = 0; v < PH_RISK_VARS; v++)
        cr_assert_eq(back.subject.keys[v], s.keys[v], "key of %s", ph_risk_var_name(v));
    cr_assert(!back.blocked);
    ph_risk_record_clear(&back);
    cr_assert_eq(ph_risk_record_read("{\"v\":1}", 7, &back), PH_EINVAL);
    free(rec);
    ph_end_user_wipe(&eu);
}
