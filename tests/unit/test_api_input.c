/*
 * test_api_input.c — what the request-body parser says about a body it refuses
 * (core/http/http_api.c, ph_req_body_fields and ph_req_body_json): the field
 * when it is one the endpoint takes, else only the position; never a key or a
 * value the caller sent (issue 10 item 11). One row per body, asserting the
 * whole message. The URL side (query values, path segments) needs a live
 * server: tests/e2e/test_badinput.c.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "http/api.h"

#define ORDER "client_order_id sku quantity account wait"

typedef struct body_row {
    const char *body;
    const char *fields; /* NULL: ph_req_body_json */
    const char *msg;    /* NULL: accepted */
} body_row;

static const body_row ROWS[] = {
    {"{\"sku\":\"a\",\"quantity\":2}", ORDER, NULL},
    {"{}", ORDER, NULL},
    {"{\"anything\":1}", NULL, NULL},
    /* unknown keys: by position */
    {"{\"sku\":\"a\",\"SECRET\":1}", ORDER,
     "body: unknown field (key 2 of the object; this endpoint takes client_order_id, sku, "
     "quantity, account, wait)"},
    {"{\"SECRET\":1}", "reason",
     "body: unknown field (key 1 of the object; this endpoint takes reason)"},
    {"{\"Sku\":1}", ORDER,
     "body: unknown field (key 1 of the object; this endpoint takes client_order_id, sku, "
     "quantity, account, wait)"},
    /* repeated keys: ours named, in any spacing; theirs not */
    {"{\"sku\":\"a\",\"sku\":\"SECRET\"}", ORDER, "sku: given more than once (line 1, column 16)"},
    {"{\"sku\" : \"a\",\n\t\"quantity\":1, \"quantity\":2}", ORDER,
     "quantity: given more than once (line 2, column 25)"},
    {"{\"SECRET\":1,\"SECRET\":2}", ORDER, "body: a key given more than once at line 1, column 20"},
    {"{\"sku\":\"a\",\"sku\":\"b\"}", NULL,
     "body: a key given more than once at line 1, column 16"},
    {"{\"sku\":\"a\",\"sk\\u0075\":\"b\"}", ORDER,
     "body: a key given more than once at line 1, column 21"}, /* escaped: not matched, not quoted
                                                                */
    {"{\"x\":{\"wait\":1,\"wait\":2}}", ORDER, "wait: given more than once (line 1, column 21)"},
    /* numbers out of range */
    {"{\"quantity\":99999999999999999999}", ORDER,
     "quantity: number out of range (line 1, column 32)"},
    {"{\"quantity\" :\r\n -99999999999999999999 }", ORDER,
     "quantity: number out of range (line 2, column 22)"},
    {"{\"wait\":1e999}", ORDER, "wait: number out of range (line 1, column 13)"},
    {"{\"SECRET\":99999999999999999999}", ORDER, "body: number out of range at line 1, column 30"},
    {"{\"quantity\":[1,99999999999999999999]}", ORDER,
     "body: number out of range at line 1, column 35"}, /* in an array: no field to name */
    {"{\"quantity\":99999999999999999999}", NULL, "body: number out of range at line 1, column 32"},
    /* the rest */
    {"{\"sku\":\"\xff\"}", ORDER, "body: not valid UTF-8 at line 1, column 8"},
    {"{\"sku\":\"a\\u0000SECRET\"}", ORDER, "body: a NUL (\\u0000) at line 1, column 22"},
    {"{\"sku\":\"SECRET\"", ORDER, "body: malformed JSON at line 1, column 15"},
    {"[\"SECRET\"]", ORDER, "body: expected a JSON object"},
    {"", ORDER, "body: malformed JSON at line 1, column 0"},
};

static const char *message_of(const ph_req *r)
{
    return json_string_value(json_object_get(r->resp, "message"));
}

Test(api_input, body_errors_name_our_fields_and_never_the_callers_text)
{
    for (size_t i = 0; i < sizeof ROWS / sizeof ROWS[0]; i++) {
        const body_row *row = &ROWS[i];
        ph_req r = {0};
        char *body = strdup(row->body);
        r.body = body;
        r.body_len = strlen(body);
        json_t *out = NULL;
        int rc =
            row->fields ? ph_req_body_fields(&r, row->fields, &out) : ph_req_body_json(&r, &out);
        if (!row->msg) {
            cr_expect_eq(rc, 0, "row %zu: refused: %s", i, message_of(&r));
            cr_expect(json_is_object(out), "row %zu", i);
        } else {
            cr_expect_eq(rc, -1, "row %zu: accepted", i);
            cr_expect_null(out, "row %zu: *out set on failure", i);
            cr_expect_eq(r.status, 400, "row %zu", i);
            cr_expect_str_eq(json_string_value(json_object_get(r.resp, "error")), "invalid_request",
                             "row %zu", i);
            const char *msg = message_of(&r);
            cr_expect(msg && strcmp(msg, row->msg) == 0, "row %zu:\n  got  %s\n  want %s", i,
                      msg ? msg : "(none)", row->msg);
            cr_expect(!msg || !strstr(msg, "SECRET"), "row %zu quotes the caller: %s", i, msg);
        }
        json_decref(out);
        json_decref(r.resp);
        free(body);
    }
}
