/*
 * test_event_view.c — the mall's cut of an event (store/event_view.h): the
 * cut taken from the stored text (webhook bodies) prints exactly what the
 * tree's cut dumps (the events feed), and ph_event_members finds what the
 * tree finds.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "store/event_view.h"

typedef struct sbuf {
    char p[4096];
    size_t len;
} sbuf;

static void put(void *sink, const char *p, size_t n)
{
    sbuf *b = sink;
    cr_assert_lt(b->len + n, sizeof b->p);
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = 0;
}

/* The event as the store writes it (jansson, compact), cut both ways. */
static void check_same(const char *event_json, int product)
{
    json_t *ev = json_loads(event_json, 0, NULL);
    cr_assert_not_null(ev, "%s", event_json);
    char *stored = json_dumps(ev, JSON_COMPACT);
    json_t *cut = product ? ph_event_product_cut(ev) : ph_event_mall_cut(ev);
    char *want = json_dumps(cut, JSON_COMPACT);
    sbuf got = {.len = 0};
    int rc = (product ? ph_event_product_cut_text : ph_event_mall_cut_text)(stored, strlen(stored),
                                                                            put, &got);
    cr_assert_eq(rc, 0, "%s", stored);
    cr_assert_str_eq(got.p, want, "stored %s", stored);
    json_decref(cut);
    free(want);
    free(stored);
}

Test(event_view, text_cut_prints_what_the_tree_cut_dumps)
{
    check_same("{\"seq\":7,\"at\":\"2026-12-07T03:04:05.120Z\",\"type\":\"order.succeeded\","
               "\"order_id\":318,\"client\":\"mall\",\"client_order_id\":\"m-77\","
               "\"sku\":\"qq.music.1m\",\"quantity\":1,\"supplier\":\"acme\",\"cost\":1980}",
               0);
    /* escapes, UTF-8, nested values with brackets and quotes in strings, a
     * member the allow-list does not name after one it does */
    check_same(
        "{\"seq\":8,\"at\":\"x\",\"type\":\"order.failed\",\"order_id\":1,"
        "\"client\":\"m\\\"all\",\"reason\":\"no \\\"stock\\\" \\\\ {[\\u0001\\n\",\"batch\":"
        "{\"a\":[1,{\"b\":\"}]\"}]},\"checks\":[{\"rule\":\"x\",\"hit\":true,\"n\":null},"
        "[]],\"client_order_id\":\"\xe4\xb8\xad\xe6\x96\x87\",\"codes\":[\"voided\"],"
        "\"state\":\"failed\",\"outcome\":-1.5e3,\"by\":false}",
        0);
    /* allow-list order, not the event's; an empty cut */
    check_same("{\"state\":\"x\",\"sku\":\"s\",\"type\":\"order.stuck\",\"seq\":9}", 0);
    check_same("{\"supplier\":\"acme\",\"cost\":5}", 0);
    check_same("{\"seq\":10,\"at\":\"t\",\"type\":\"stock.low\",\"sku\":\"s\",\"available\":3,"
               "\"below\":5,\"supplier\":\"acme\",\"reason\":\"r\"}",
               1);
}

Test(event_view, text_that_is_not_one_object_is_refused)
{
    static const char *const bad[] = {"",           "[]",          "{",
                                      "{\"a\":1",   "{\"a\":}",    "{\"a\" 1}",
                                      "{\"a\":1}x", "{\"a\":\"1}", "{\"a\":[1,2}",
                                      "{a:1}",      "{\"a\":1,}",  "\"seq\""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        sbuf got = {.len = 0};
        cr_assert_eq(ph_event_mall_cut_text(bad[i], strlen(bad[i]), put, &got), -1, "%s", bad[i]);
        const char *keys[] = {"a"}, *v;
        size_t vl;
        cr_assert_eq(ph_event_members(bad[i], strlen(bad[i]), keys, 1, &v, &vl), -1, "%s", bad[i]);
    }
}

Test(event_view, members_are_the_stored_texts_of_the_values)
{
    const char *ev = "{\"seq\":12,\"type\":\"order.accepted\",\"x\":{\"seq\":1},\"client\":"
                     "\"mall\",\"seq\":13}";
    const char *keys[] = {"seq", "type", "client", "order_id"}, *v[4];
    size_t vl[4];
    cr_assert_eq(ph_event_members(ev, strlen(ev), keys, 4, v, vl), 0);
    /* the last of two (jansson keeps the last); a nested member is not a top-level one */
    cr_assert_eq(vl[0], 2);
    cr_assert_eq(strncmp(v[0], "13", 2), 0);
    cr_assert_eq(vl[1], strlen("\"order.accepted\""));
    cr_assert_eq(strncmp(v[1], "\"order.accepted\"", vl[1]), 0);
    cr_assert_eq(strncmp(v[2], "\"mall\"", vl[2]), 0);
    cr_assert_null(v[3]);
}
