/*
 * test_sync_route.c — routing with what sync knows upstream (core/supply/route.h):
 * an offer delisted upstream, known out of stock or over its max cost is
 * skipped; unknown states route as before; a known upstream cost ranks the
 * offer instead of the configured one and is the attempt's unit cost.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "config/config.h"
#include "supply/route.h"

static const char *yaml = "data_dir: /tmp/x\nmaster_key_file: /tmp/k\n"
                          "suppliers:\n"
                          "  - {id: a, plugin: p, priority: 10}\n"
                          "  - {id: b, plugin: p, priority: 10}\n"
                          "  - {id: c, plugin: p, priority: 5}\n"
                          "products:\n"
                          "  - sku: s\n    name: S\n    brand: x\n    category: y\n"
                          "    delivery: recharge\n    face_value: 50\n"
                          "    offers:\n"
                          "      - {supplier: a, supplier_sku: A1, cost: \"48.00\"}\n"
                          "      - {supplier: b, supplier_sku: B1, cost: \"49.00\"}\n"
                          "      - {supplier: c, supplier_sku: C1, cost: \"40.00\"}\n";

static int yes(void *ctx, const ph_supplier_conf *s)
{
    (void)ctx, (void)s;
    return 1;
}

static ph_config *cfg;
static const ph_product_conf *p;
static ph_offer_state up[3];

static void setup(void)
{
    ph_err err = {0};
    cr_assert_eq(ph_config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, &err), PH_OK, "%s",
                 err.msg);
    p = ph_config_product(cfg, "s");
    for (int i = 0; i < 3; i++)
        up[i] = (ph_offer_state){.upstream_cost = -1, .stock = -1, .on_sale = -1};
}

static void teardown(void)
{
    ph_config_free(cfg);
}

TestSuite(sync_route, .init = setup, .fini = teardown);

static const char *pick(void)
{
    const ph_offer_conf *o = ph_route_pick(cfg, p, up, NULL, 0, yes, NULL);
    return o ? o->supplier : "none";
}

Test(sync_route, unknown_states_route_as_configured)
{
    cr_assert_str_eq(pick(), "a");
    cr_assert_str_eq(ph_route_pick(cfg, p, NULL, NULL, 0, yes, NULL)->supplier, "a");
}

Test(sync_route, delisted_upstream_is_skipped)
{
    up[0].on_sale = 0;
    cr_assert_str_eq(pick(), "b");
}

Test(sync_route, known_out_of_stock_is_skipped_unknown_or_unlimited_is_not)
{
    up[0].stock = 0;
    cr_assert_str_eq(pick(), "b");
    up[0].stock = -1;
    cr_assert_str_eq(pick(), "a");
    up[0].stock = 3;
    cr_assert_str_eq(pick(), "a");
}

Test(sync_route, over_max_cost_is_skipped)
{
    up[0].over_max = 1;
    up[1].over_max = 1;
    cr_assert_str_eq(pick(), "c", "the lower priority is better than none");
    up[2].over_max = 1;
    cr_assert_str_eq(pick(), "none");
}

Test(sync_route, upstream_cost_ranks_within_a_priority)
{
    up[0].upstream_cost = 4950; /* a's price rose above b's configured 49.00 */
    cr_assert_str_eq(pick(), "b");
    cr_assert_eq(ph_route_cost(&p->offers[0], &up[0]), 4950);
    cr_assert_eq(ph_route_cost(&p->offers[1], &up[1]), 4900, "unknown: the configured cost");
    cr_assert_eq(ph_route_cost(&p->offers[1], NULL), 4900);
    up[1].upstream_cost = 5000;
    cr_assert_str_eq(pick(), "a");
}

Test(sync_route, usable_is_one_predicate)
{
    ph_offer_state st = {.upstream_cost = 100, .stock = 5, .on_sale = 1};
    cr_assert(ph_offer_state_usable(&st));
    cr_assert(ph_offer_state_usable(NULL), "never synced: usable");
    st.on_sale = -1;
    cr_assert(ph_offer_state_usable(&st), "unknown on sale: usable");
    st.stock = 0;
    cr_assert_not(ph_offer_state_usable(&st));
    st.stock = 5;
    st.over_max = 1;
    cr_assert_not(ph_offer_state_usable(&st));
}
