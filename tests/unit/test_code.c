/*
 * crypto/code.h: the normalized form a code's lookup hash is made from, the
 * look-alike rules ops write in the config, and sealing that keeps the code as
 * it was imported.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "crypto/code.h"

static const char *norm(const char *code, const char *rule)
{
    static char out[PH_CODE_MAX + 1];
    size_t n = 0;
    cr_assert_eq(ph_code_normalize(code, strlen(code), rule, out, &n), PH_OK, "%s", code);
    out[n] = 0;
    return out;
}

Test(code, normalizes_case_spaces_and_dashes)
{
    cr_assert_str_eq(norm("iqy-15d7-2d61-c76f", NULL), "IQY15D72D61C76F");
    cr_assert_str_eq(norm(" IQY 15D7\t2D61-C76F ", NULL), "IQY15D72D61C76F");
    cr_assert_str_eq(norm("a_b.c/9", ""), "A_B.C/9");
    /* without a rule, look-alikes stay apart */
    cr_assert_str_eq(norm("O0Il1", NULL), "O0IL1");
    size_t n = 1;
    char out[8];
    cr_assert_eq(ph_code_normalize("- -", 3, NULL, out, &n), PH_EINVAL);
    cr_assert_eq(n, 0);
}

Test(code, lookalikes_map_after_upper_casing)
{
    char rule[PH_LOOKALIKES_MAX + 1];
    const char *why = NULL;
    cr_assert_eq(ph_code_lookalikes_parse("o=0 I=1, l=1", 12, rule, &why), PH_OK, "%s", why);
    cr_assert_str_eq(rule, "I1L1O0", "canonical: sorted by FROM, upper case");
    cr_assert_str_eq(norm("lko-il", rule), "1K011");
    cr_assert_str_eq(norm("LK0-11", rule), "1K011");
    cr_assert_eq(ph_code_lookalikes_parse("", 0, rule, &why), PH_OK);
    cr_assert_str_eq(rule, "");
}

Test(code, bad_lookalike_rules_are_refused_with_a_reason)
{
    static const char *const bad[] = {"O0",  "O=0=1",   "O=",      "=0",   "O=O",
                                      "O=-", "O=0 O=Q", "O=0 0=Q", "OO=0", "O=0I=1"};
    char rule[PH_LOOKALIKES_MAX + 1];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = NULL;
        cr_assert_eq(ph_code_lookalikes_parse(bad[i], strlen(bad[i]), rule, &why), PH_EINVAL,
                     "accepted '%s'", bad[i]);
        cr_assert_not_null(why);
    }
}

Test(code, the_hash_is_of_the_normalized_code_and_the_seal_keeps_it_as_imported)
{
    uint8_t ik[PH_KEY_LEN], k1[PH_KEY_LEN], h1[32], h2[32], blob[256];
    memset(ik, 7, sizeof ik);
    memset(k1, 8, sizeof k1);
    ph_keyring *kr = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_keyring_from_raw(ik, 1, k1, &kr, &err), PH_OK, "%s", err.msg);
    size_t len = 0;
    cr_assert_eq(ph_code_seal(kr, "abc-12", 6, "CARD-1", 6, blob, &len, h1), PH_OK);
    cr_assert_eq(ph_code_hash(kr, "ABC12", 5, NULL, h2), PH_OK);
    cr_assert(memcmp(h1, h2, 32) == 0, "the hash is not of the normalized code");
    ph_crypto_index(kr, "ABC12", 5, h2);
    cr_assert(memcmp(h1, h2, 32) == 0);
    char code[PH_CODE_MAX + 1], card[PH_CODE_MAX + 1];
    cr_assert_eq(ph_code_unseal(kr, blob, len, code, card), PH_OK);
    cr_assert_str_eq(code, "abc-12");
    cr_assert_str_eq(card, "CARD-1");
    cr_assert_eq(ph_code_seal(kr, "--", 2, NULL, 0, blob, &len, h1), PH_EINVAL);
    uint8_t k2[PH_KEY_LEN];
    memset(k2, 9, sizeof k2);
    ph_keyring *other = NULL;
    cr_assert_eq(ph_keyring_from_raw(ik, 1, k2, &other, &err), PH_OK);
    cr_assert_eq(ph_code_seal(kr, "abc-12", 6, NULL, 0, blob, &len, h1), PH_OK);
    cr_assert_eq(ph_code_unseal(other, blob, len, code, card), PH_ECRYPTO);
    cr_assert_str_eq(code, "", "a failed unseal leaves text behind");
    ph_keyring_free(kr);
    ph_keyring_free(other);
}
