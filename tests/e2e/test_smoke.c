/* The first flow a mall runs: import codes, place an order, look a code up. */
#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>

#include "harness.h"

Test(smoke, import_order_lookup)
{
    h_daemon d;
    h_setup(&d, NULL);
    cr_assert_eq(h_start(&d), 0);

    h_resp r = h_import(&d, "test.card", "code\nSMOKE-0001\nSMOKE-0002\n", 201);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(r.json, "batch"), "count")), 2);
    h_resp_free(&r);

    r = h_order(&d, "mall-token", "S-1", "test.card", 1);
    cr_assert_eq(r.status, 201, "%s", r.body);
    json_t *codes = json_object_get(json_object_get(r.json, "order"), "codes");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(codes, 0), "code")),
                     "SMOKE-0001");
    h_resp_free(&r);

    r = h_post_json(&d, "/v1/codes/lookup", "mall-token", "{\"code\":\"SMOKE-0001\"}");
    cr_assert_eq(r.status, 200);
    json_t *res = json_array_get(json_object_get(r.json, "results"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(res, "diagnosis")), "issued");
    h_resp_free(&r);

    cr_assert_eq(h_stop(&d, SIGTERM), 0);
    h_cleanup(&d);
}
