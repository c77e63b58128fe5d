/*
 * test_route.c — offer selection (core/supply/route.h): priority, then cost, then
 * config order; disabled, unusable and already-tried suppliers skipped; the
 * usable predicate asked in rank order and no further than the first yes.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "supply/route.h"

static const char *yaml =
    "data_dir: /tmp/x\nmaster_key_file: /tmp/k\n"
    "suppliers:\n"
    "  - {id: a, plugin: p, priority: 10}\n"
    "  - {id: b, plugin: p, priority: 10}\n"
    "  - {id: c, plugin: p, priority: 20}\n"
    "  - {id: d, plugin: p, priority: 30, enabled: false}\n"
    "products:\n"
    "  - sku: s\n    name: S\n    brand: x\n    category: y\n    delivery: recharge\n"
    "    face_value: 50\n"
    "    offers:\n"
    "      - {supplier: a, supplier_sku: A1, cost: \"49.00\"}\n"
    "      - {supplier: b, supplier_sku: B1, cost: \"48.00\"}\n"
    "      - {supplier: c, supplier_sku: C1, cost: \"49.50\"}\n"
    "      - {supplier: d, supplier_sku: D1, cost: \"40.00\"}\n";

typedef struct ask {
    const char *no[4]; /* suppliers that answer no */
    char asked[8][8];
    int nasked;
} ask;

static int usable(void *ctx, const ph_supplier_conf *s)
{
    ask *a = ctx;
    snprintf(a->asked[a->nasked++], 8, "%s", s->id);
    for (int i = 0; i < 4 && a->no[i]; i++)
        if (!strcmp(a->no[i], s->id))
            return 0;
    return 1;
}

static ph_config *load(void)
{
    ph_config *cfg;
    ph_err err = {0};
    cr_assert_eq(ph_config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, &err), PH_OK, "%s",
                 err.msg);
    return cfg;
}

Test(route, highest_priority_wins_over_cost_and_disabled_is_skipped)
{
    ph_config *cfg = load();
    ask a = {0};
    const ph_offer_conf *o =
        ph_route_pick(cfg, ph_config_product(cfg, "s"), NULL, NULL, 0, usable, &a);
    cr_assert_not_null(o);
    cr_expect_str_eq(o->supplier, "c");
    cr_expect_eq(a.nasked, 1, "asked only the winner");
    ph_config_free(cfg);
}

Test(route, equal_priority_goes_to_the_cheaper_offer)
{
    ph_config *cfg = load();
    ask a = {.no = {"c"}};
    const ph_offer_conf *o =
        ph_route_pick(cfg, ph_config_product(cfg, "s"), NULL, NULL, 0, usable, &a);
    cr_assert_not_null(o);
    cr_expect_str_eq(o->supplier, "b");
    cr_expect_eq(a.nasked, 2);
    cr_expect_str_eq(a.asked[0], "c");
    ph_config_free(cfg);
}

Test(route, tried_suppliers_are_never_picked_again)
{
    ph_config *cfg = load();
    ask a = {0};
    const char *tried[] = {"c", "b"};
    const ph_offer_conf *o =
        ph_route_pick(cfg, ph_config_product(cfg, "s"), NULL, tried, 2, usable, &a);
    cr_assert_not_null(o);
    cr_expect_str_eq(o->supplier, "a");
    ph_config_free(cfg);
}

Test(route, nothing_usable_gives_null)
{
    ph_config *cfg = load();
    ask a = {.no = {"a", "b", "c"}};
    cr_expect_null(ph_route_pick(cfg, ph_config_product(cfg, "s"), NULL, NULL, 0, usable, &a));
    cr_expect_eq(a.nasked, 3, "the disabled supplier is not even asked");
    ph_config_free(cfg);
}
