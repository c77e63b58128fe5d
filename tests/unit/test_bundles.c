/*
 * test_bundles.c — bundles (issue 16, item 2) below the HTTP layer: the
 * configuration's checks (each error names products[i].components[j].<field>
 * at its line and column), the one rule of a bundle's state, and the BUNDLE
 * command's wire form.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "store/cmd_codec.h"
#include "store/store.h"

#define BASE "data_dir: var/data\nmaster_key_file: var/master.key\n"

/* Two card products and a recharge on lines 4..18; a bundle (line 19 on)
 * follows, its components from line 25. */
#define PRODUCTS                                                                                   \
    "suppliers:\n  - id: acme\n    plugin: example\n"                                              \
    "products:\n"                                                                                  \
    "  - sku: a.card\n    name: A\n    brand: a\n    category: c\n"                                \
    "    delivery: card_code\n    face_value: \"10.00\"\n"                                         \
    "  - sku: b.card\n    name: B\n    brand: b\n    category: c\n"                                \
    "    delivery: card_code\n    face_value: \"10.00\"\n"                                         \
    "  - sku: c.topup\n    name: C\n    brand: c\n    category: c\n"                               \
    "    delivery: recharge\n    face_value: \"10.00\"\n"                                          \
    "    offers:\n      - {supplier: acme, supplier_sku: \"1\", cost: \"9.00\"}\n"

#define BUNDLE_HEAD                                                                                \
    "  - sku: pack\n    name: Pack\n    brand: p\n    category: c\n"                               \
    "    delivery: bundle\n    face_value: \"20.00\"\n"

static void load_fails(const char *yaml, const char *want)
{
    ph_config *cfg = NULL;
    ph_err err = {0};
    int rc = ph_config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, &err);
    cr_assert_neq(rc, PH_OK, "loaded, wanted: %s", want);
    cr_assert_null(cfg);
    cr_assert_str_eq(err.msg, want);
}

Test(bundles, config_reads_a_bundle_and_its_components)
{
    const char *y = BASE PRODUCTS BUNDLE_HEAD "    components:\n"
                                              "      - {sku: a.card, quantity: 2}\n"
                                              "      - {sku: c.topup}\n";
    ph_config *cfg = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_config_load_string(y, strlen(y), "t.yaml", &cfg, &err), PH_OK, "%s", err.msg);
    const ph_product_conf *p = ph_config_product(cfg, "pack");
    cr_assert_eq(p->delivery, PH_DELIVERY_BUNDLE);
    cr_assert_str_eq(ph_delivery_name(p->delivery), "bundle");
    cr_assert_eq(p->ncomponents, 2);
    cr_assert_str_eq(p->components[0].sku, "a.card");
    cr_assert_eq(p->components[0].quantity, 2);
    cr_assert_eq(p->components[1].quantity, 1, "quantity defaults to 1");
    ph_config_free(cfg);
}

Test(bundles, config_errors_name_the_component)
{
    /* BASE 2 lines + suppliers 3 + products 1 + 3 products of 6, 6, 8 lines:
     * the bundle starts on line 27, its components: on line 33 */
    load_fails(BASE PRODUCTS BUNDLE_HEAD "    components:\n"
                                         "      - {sku: a.card}\n"
                                         "      - {sku: nope}\n",
               "t.yaml:35:15: products[3].components[1].sku: expected the sku of a configured "
               "product, got \"nope\"");
    load_fails(BASE PRODUCTS BUNDLE_HEAD "    components:\n"
                                         "      - {sku: pack}\n",
               "t.yaml:34:15: products[3].components[0].sku: expected a product that is not a "
               "bundle, got bundle \"pack\"");
    load_fails(BASE PRODUCTS BUNDLE_HEAD "    components:\n"
                                         "      - {sku: c.topup, quantity: 2}\n",
               "t.yaml:34:34: products[3].components[0].quantity: expected 1: a recharge is one "
               "unit");
    load_fails(BASE PRODUCTS BUNDLE_HEAD "    components:\n"
                                         "      - {sku: a.card, quantity: 101}\n",
               "t.yaml:34:33: products[3].components[0].quantity: expected an integer 1..100, got "
               "\"101\"");
    load_fails(BASE PRODUCTS BUNDLE_HEAD,
               "t.yaml:27:5: products[3].components: expected 1..16 components for a bundle "
               "(each {sku, quantity})");
    load_fails(BASE PRODUCTS BUNDLE_HEAD "    components:\n"
                                         "      - {sku: a.card}\n"
                                         "      - {sku: a.card}\n",
               "t.yaml:35:15: products[3].components[1].sku: duplicate component sku \"a.card\", "
               "first at 34:15 (products[3].components[0])");
    /* components on a product that is not a bundle */
    load_fails(BASE PRODUCTS "  - sku: d.card\n    name: D\n    brand: d\n    category: c\n"
                             "    delivery: card_code\n    face_value: \"1.00\"\n"
                             "    components:\n      - {sku: a.card}\n",
               "t.yaml:34:7: products[3].components: only a product with delivery: bundle has "
               "components");
}

Test(bundles, state_follows_the_components)
{
    enum {
        P = PH_ORDER_PROCESSING,
        S = PH_ORDER_SUCCEEDED,
        F = PH_ORDER_FAILED,
        U = PH_ORDER_UNKNOWN,
        H = PH_ORDER_HELD,
        G = PH_ORDER_GRANTED
    };
    struct {
        int st[3];
        size_t n;
        int want;
    } rows[] = {
        {{S, S, S}, 3, S},
        {{S, F, F}, 3, PH_ORDER_PARTIAL},
        {{F, F}, 2, F},
        {{S, P}, 2, P},
        {{F, P}, 2, P},
        {{S, U, P}, 3, U},
        {{U}, 1, U},
        {{0}, 0, F},
        /* held or granted only all together; a mixture is a command's middle */
        {{H, H}, 2, H},
        {{G, G, G}, 3, G},
        {{S, G}, 2, P},
        {{F, H}, 2, P},
        {{H, G}, 2, P},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
        cr_assert_eq(ph_bundle_state(rows[i].st, rows[i].n), rows[i].want, "row %zu", i);
    cr_assert_str_eq(ph_order_state_name(PH_ORDER_PARTIAL), "partial");
    cr_assert(!ph_order_state_final(PH_ORDER_PARTIAL), "a partial bundle can be retried");
}

Test(bundles, command_round_trip)
{
    static const uint8_t SEALED[] = {1, 0, 9, 9, 9};
    ph_attempt_target t[3] = {{.supplier = "rwb", .product_id = "U20001", .unit_cost = 4900},
                              {.supplier = NULL},
                              {.supplier = "gwa", .product_id = "10001", .unit_cost = 2850}};
    ph_cmd c = {.type = PH_CMD_BUNDLE, .now = 1800000000000LL};
    c.in.bundle.client = "mall";
    c.in.bundle.client_order_id = "pack-1";
    c.in.bundle.sku = "pack";
    c.in.bundle.quantity = 2;
    memset(c.in.bundle.fingerprint, 0x77, 32);
    c.in.bundle.retry_of = 41;
    c.in.bundle.retry_no = 3;
    c.in.bundle.targets = t;
    c.in.bundle.ntargets = 3;
    c.in.bundle.account_sealed = SEALED;
    c.in.bundle.account_sealed_len = sizeof SEALED;
    c.in.bundle.account_masked = "138****0001";
    uint8_t *p = NULL;
    size_t len;
    ph_err err = {0};
    cr_assert_eq(ph_cmd_batch_encode(&c, &p, &len, &err), PH_OK, "%s", err.msg);
    ph_cmd_batch b;
    cr_assert_eq(ph_cmd_batch_decode(p, len, &b, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(b.n, 1);
    const ph_cmd *d = &b.cmds[0];
    cr_assert_eq(d->type, PH_CMD_BUNDLE);
    cr_assert_str_eq(ph_cmd_type_name(d->type), "bundle");
    cr_assert_str_eq(d->in.bundle.client_order_id, "pack-1");
    cr_assert_eq(d->in.bundle.quantity, 2);
    cr_assert_eq(memcmp(d->in.bundle.fingerprint, c.in.bundle.fingerprint, 32), 0);
    cr_assert_eq(d->in.bundle.retry_of, 41);
    cr_assert_eq(d->in.bundle.retry_no, 3);
    cr_assert_eq(d->in.bundle.ntargets, 3);
    cr_assert_str_eq(d->in.bundle.targets[0].product_id, "U20001");
    cr_assert_null(d->in.bundle.targets[1].supplier);
    cr_assert_eq(d->in.bundle.targets[2].unit_cost, 2850);
    cr_assert_eq(d->in.bundle.account_sealed_len, sizeof SEALED);
    cr_assert_eq(memcmp(d->in.bundle.account_sealed, SEALED, sizeof SEALED), 0);
    cr_assert_str_eq(d->in.bundle.account_masked, "138****0001");
    ph_cmd_batch_free(&b);
    /* every cut is refused, naming the command */
    for (size_t cut = 10; cut < len; cut++) {
        ph_cmd_batch x;
        cr_assert_neq(ph_cmd_batch_decode(p, cut, &x, &err), PH_OK, "cut at %zu", cut);
    }
    free(p);
}
