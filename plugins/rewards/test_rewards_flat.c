/*
 * test_rewards_flat.c — the rewards plugin's flat reader (rewards.c, flat_read)
 * against jansson, the reader it stands in for: whatever body the flat reader
 * takes, jansson (with the plugin's JSON_REJECT_DUPLICATES) must take too and
 * read member for member alike. Bodies: every fixture, hand-made edge cases,
 * and each of them cut short at every length and with single bytes replaced
 * or inserted at every position. rewards.c is included, not linked, to reach
 * its static reader; no host is needed.
 */
#include "rewards.c"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdlib.h>

/* 1 when the flat object fo reads as the jansson object j (both ways). */
static int same_object(const struct rw_flat *f, const struct rw_fobj *fo, const json_t *j)
{
    if (!json_is_object(j) || json_object_size(j) != fo->n)
        return 0;
    for (size_t i = 0; i < fo->n; i++) {
        const struct rw_member *m = &fo->m[i];
        const json_t *v = json_object_get(j, m->key);
        switch (m->type) {
        case RW_NULL:
            if (!json_is_null(v))
                return 0;
            break;
        case RW_TRUE:
            if (!json_is_true(v))
                return 0;
            break;
        case RW_FALSE:
            if (!json_is_false(v))
                return 0;
            break;
        case RW_INT:
            if (!json_is_integer(v) || json_integer_value(v) != m->num)
                return 0;
            break;
        case RW_STR:
            if (!json_is_string(v) || json_string_length(v) != strlen(m->str) ||
                strcmp(json_string_value(v), m->str) != 0)
                return 0;
            break;
        case RW_OBJ:
            if (m->obj >= f->nobjs || !same_object(f, &f->objs[m->obj], v))
                return 0;
            break;
        default:
            return 0;
        }
    }
    return 1;
}

struct tally {
    size_t bodies, taken;
};

/* One body: if the flat reader takes it, jansson must read the same. */
static void check_body(const char *body, size_t len, struct tally *t)
{
    struct rw_flat f;
    t->bodies++;
    if (flat_read(body, len, &f) != 0)
        return;
    t->taken++;
    json_error_t err;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    cr_assert_not_null(j, "flat took what jansson refuses (%s): %.*s", err.text, (int)len, body);
    cr_assert(same_object(&f, &f.objs[0], j), "flat and jansson differ: %.*s", (int)len, body);
    json_decref(j);
}

/* body, cut at every length, each byte replaced and a byte inserted at every
 * position by each of a set chosen to hit every branch of the grammar. */
static void check_mutations(const char *body, size_t len, struct tally *t)
{
    static const char subst[] = "\"\\{}[],: \t\n0123456789-+.eEnultrfasx\x01\x7f\x80\xc3";
    char *buf = malloc(len + 2);
    cr_assert_not_null(buf);
    check_body(body, len, t);
    for (size_t n = 0; n < len; n++)
        check_body(body, n, t);
    for (size_t i = 0; i < len; i++)
        for (size_t k = 0; k < sizeof subst; k++) { /* the terminating NUL too */
            memcpy(buf, body, len);
            buf[i] = subst[k];
            check_body(buf, len, t);
            memcpy(buf, body, i);
            buf[i] = subst[k];
            memcpy(buf + i + 1, body + i, len - i);
            check_body(buf, len + 1, t);
        }
    free(buf);
}

Test(rewards_flat, fixtures_and_mutations_read_as_jansson)
{
    DIR *d = opendir(FIXTURE_DIR);
    cr_assert_not_null(d);
    struct dirent *e;
    struct tally t = {0};
    size_t files = 0;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 5, ".json") != 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", FIXTURE_DIR, e->d_name);
        FILE *fp = fopen(path, "rb");
        cr_assert_not_null(fp, "%s", path);
        char body[8192];
        size_t len = fread(body, 1, sizeof body, fp);
        fclose(fp);
        cr_assert(len < sizeof body, "%s too long for the test", path);
        check_mutations(body, len, &t);
        files++;
    }
    closedir(d);
    cr_assert_gt(files, 30, "fixtures found: %zu", files);
    cr_assert_gt(t.taken, 1000, "the flat reader took %zu of %zu bodies", t.taken, t.bodies);
}

Test(rewards_flat, edge_cases)
{
    static const char *const bodies[] = {
        "{}",
        " {} ",
        "{\"a\":1,\"a\":2}",
        "{\"a\":{\"a\":1,\"a\":2}}",
        "{\"a\":{\"b\":{}}}",
        "{\"a\":{},\"b\":{}}",
        "{\"a\":-0}",
        "{\"a\":-}",
        "{\"a\":01}",
        "{\"a\":1.0}",
        "{\"a\":1e3}",
        "{\"a\":123456789012345678}",
        "{\"a\":-123456789012345678}",
        "{\"a\":1234567890123456789}",
        "{\"a\":\"\"}",
        "{\"\":1}",
        "{\"a\":nul}",
        "{\"a\":null",
        "{\"a\":true,}",
        "{,}",
        "{\"a\" : 1 , \"b\" :\"x\"}\r\n",
        "[1]",
        "\"s\"",
        "1",
        "",
        "{\"a\":\"\\u0041\"}",
        "{\"a\":\"\xc3\xa9\"}",
        "{\"a\":1}x",
        "{\"a\":1}{}",
        "{\"a\":truex}",
        "{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"i\":9,\"j\":10,"
        "\"k\":11,\"l\":12,\"m\":13,\"n\":14,\"o\":15,\"p\":16}",
        "{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"i\":9,\"j\":10,"
        "\"k\":11,\"l\":12,\"m\":13,\"n\":14,\"o\":15,\"p\":16,\"q\":17}",
    };
    struct tally t = {0};
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++)
        check_mutations(bodies[i], strlen(bodies[i]), &t);
    /* what it must take, and what it must leave to jansson */
    struct rw_flat f;
    cr_assert_eq(flat_read("{\"a\":-0}", 8, &f), 0);
    cr_assert_eq(f.objs[0].m[0].num, 0);
    cr_assert_eq(flat_read("{\"a\":1,\"a\":2}", 13, &f), -1, "a duplicate is jansson's to refuse");
    cr_assert_eq(flat_read("{\"a\":\"\\u0041\"}", 14, &f), -1, "escapes are jansson's");
    cr_assert_eq(flat_read("{\"a\":[]}", 8, &f), -1, "arrays are jansson's");
    cr_assert_eq(flat_read(NULL, 0, &f), -1);
    /* a string longer than the text buffer is declined, not cut */
    char big[RW_FLAT_TEXT + 16];
    memset(big, 'x', sizeof big);
    memcpy(big, "{\"a\":\"", 6);
    memcpy(big + sizeof big - 2, "\"}", 2);
    cr_assert_eq(flat_read(big, sizeof big, &f), -1);
}

/* The recharge path's own bodies must take the flat reader (else the cut is gone). */
Test(rewards_flat, supsim_bodies_are_flat)
{
    static const char *const files[] = {
        "supsim_recharge_created.json", "supsim_recharge_failed.json",
        "supsim_webhook_completed.json", "supsim_webhook_failed.json", "supsim_out_of_stock.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", FIXTURE_DIR, files[i]);
        FILE *fp = fopen(path, "rb");
        cr_assert_not_null(fp, "%s", path);
        char body[4096];
        size_t len = fread(body, 1, sizeof body, fp);
        fclose(fp);
        struct rw_flat f;
        cr_assert_eq(flat_read(body, len, &f), 0, "%s", files[i]);
    }
}
