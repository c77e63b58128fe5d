/*
 * test_config.c — the YAML configuration: defaults, the embedded default and
 * the example file, and one table row per kind of error, asserting the whole
 * message (file:line:column: path: expected ..., got ...), since the message is
 * the feature.
 */
#include <criterion/criterion.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "crypto/crypto.h"
#include "base/log.h"

/* The two required keys; rows append to it, so their own lines start at 3. */
#define BASE "data_dir: var/data\nmaster_key_file: var/master.key\n"

/* A valid product whose lines are 3 (products) to 9 (face_value); rows add from 10. */
#define PRODUCT                                                                                    \
    "products:\n"                                                                                  \
    "  - sku: iqiyi.gold.1m\n"                                                                     \
    "    name: iQiyi Gold\n"                                                                       \
    "    brand: iqiyi\n"                                                                           \
    "    category: video\n"                                                                        \
    "    delivery: card_code\n"                                                                    \
    "    face_value: \"30.00\"\n"

/* A valid supplier on lines 3 to 5. */
#define SUPPLIER                                                                                   \
    "suppliers:\n"                                                                                 \
    "  - id: acme\n"                                                                               \
    "    plugin: manual\n"

#define HASH_A "c8e0aa386ce8862223ef2a674bf01fac0afeb83fcf4738400864098d6b80a0fd"
#define HASH_B "51ea3e5c2e2f4e65850d64341129057991a3e664e2eecf7911e9bd038c595d1f"

static ph_config *load_ok(const char *yaml)
{
    ph_config *cfg = NULL;
    ph_err err = {0};
    int rc = ph_config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, &err);
    cr_assert_eq(rc, PH_OK, "load failed: %s", err.msg);
    cr_assert_not_null(cfg);
    return cfg;
}

/* The repository root: ctest sets PH_SOURCE_DIR; run by hand, __FILE__ (an
 * absolute path under CMake) ends in tests/unit/test_config.c. */
static void source_path(const char *rel, char *buf, size_t len)
{
    const char *root = getenv("PH_SOURCE_DIR");
    if (root) {
        snprintf(buf, len, "%s/%s", root, rel);
        return;
    }
    const char *file = __FILE__, *tail = strstr(file, "tests/unit/test_config.c");
    cr_assert_not_null(tail, "set PH_SOURCE_DIR to the repository root");
    snprintf(buf, len, "%.*s%s", (int)(tail - file), file, rel);
}

/* ---- what loads ------------------------------------------------------------- */

Test(config, defaults_applied)
{
    ph_config *cfg = load_ok(BASE);
    cr_expect_str_eq(cfg->source, "t.yaml");
    cr_expect_str_eq(cfg->listen_address, "127.0.0.1");
    cr_expect_eq(cfg->port, 8080);
    cr_expect_null(cfg->port_file);
    cr_expect_null(cfg->pid_file);
    cr_expect_str_eq(cfg->data_dir, "var/data");
    cr_expect_eq(cfg->map_size, 1024ull << 20);
    cr_expect_str_eq(cfg->master_key_file, "var/master.key");
    cr_expect_eq(cfg->master_key_create, 0);
    cr_expect_str_eq(cfg->plugin_dir, "build/plugins");
    cr_expect_eq(cfg->log_level, PH_LOG_INFO);
    cr_expect_eq(cfg->http_threads, 4);
    cr_expect_eq(cfg->max_order_quantity, 100000);
    cr_expect_eq(cfg->max_body_bytes, 64ull << 20);
    cr_expect_eq(cfg->max_import_codes, 1000000);
    cr_expect_eq(cfg->nclients, 0);
    cr_expect_eq(cfg->nsuppliers, 0);
    cr_expect_eq(cfg->nproducts, 0);
    ph_config_free(cfg);
}

Test(config, empty_sections_take_defaults)
{
    ph_config *cfg = load_ok(BASE "listen:\nlog: ~\nhttp: {}\nlimits: null\nclients: []\n"
                                  "suppliers:\nproducts: []\n");
    cr_expect_str_eq(cfg->listen_address, "127.0.0.1");
    cr_expect_eq(cfg->port, 8080);
    cr_expect_eq(cfg->log_level, PH_LOG_INFO);
    cr_expect_eq(cfg->http_threads, 4);
    cr_expect_eq(cfg->max_import_codes, 1000000);
    ph_config_free(cfg);
}

Test(config, every_value_set)
{
    ph_config *cfg =
        load_ok(BASE "listen: {address: 0.0.0.0, port: 0, port_file: var/port}\n"
                     "map_size_mb: 2\nmaster_key_create: yes\nplugin_dir: /opt/p\n"
                     "pid_file: var/p.pid\n"
                     "log: {level: warn}\nhttp: {threads: 256}\n"
                     "limits: {max_order_quantity: 1, max_body_mb: 4096, max_import_codes: 7}\n"
                     "clients:\n  - {name: a, token_sha256: " HASH_A ", scopes: [ops, fulfill], "
                     "loopback_only: true}\n"
                     "suppliers:\n"
                     "  - id: s1\n    plugin: p\n    enabled: no\n    priority: -5\n"
                     "    auth_retry_ms: 1500\n    auth_retry_max_ms: 90000\n"
                     "    config: {url: \"https://x\", secret: \"env:S1\", n: 5, empty: \"\"}\n"
                     "products:\n"
                     "  - sku: mobile.topup.50\n    name: Top-up\n    brand: mobile\n"
                     "    category: telecom\n    tags: [telecom, topup]\n    delivery: recharge\n"
                     "    face_value: 50\n    redemption_guide: |\n      line one\n      line two\n"
                     "    listed: false\n"
                     "    offers:\n      - {supplier: s1, supplier_sku: 100050, cost: 49.5}\n");
    cr_expect_str_eq(cfg->listen_address, "0.0.0.0");
    cr_expect_eq(cfg->port, 0);
    cr_expect_str_eq(cfg->port_file, "var/port");
    cr_expect_eq(cfg->map_size, 2ull << 20);
    cr_expect_eq(cfg->master_key_create, 1);
    cr_expect_str_eq(cfg->plugin_dir, "/opt/p");
    cr_expect_eq(cfg->log_level, PH_LOG_WARN);
    cr_expect_eq(cfg->http_threads, 256);
    cr_expect_eq(cfg->max_order_quantity, 1);
    cr_expect_eq(cfg->max_body_bytes, 4096ull << 20);
    cr_expect_eq(cfg->max_import_codes, 7);

    cr_assert_eq(cfg->nclients, 1);
    cr_expect_eq(cfg->clients[0].scopes, PH_SCOPE_OPS | PH_SCOPE_FULFILL);
    cr_expect_eq(cfg->clients[0].loopback_only, 1);
    cr_expect_str_eq(cfg->pid_file, "var/p.pid");

    cr_assert_eq(cfg->nsuppliers, 1);
    const ph_supplier_conf *s = &cfg->suppliers[0];
    cr_expect_eq(s->auth_retry_ms, 1500);
    cr_expect_eq(s->auth_retry_max_ms, 90000);
    cr_expect_eq(s->enabled, 0);
    cr_expect_eq(s->priority, -5);
    cr_assert_eq(s->nconfig, 4);
    cr_expect_str_eq(s->config[0].key, "url");
    cr_expect_str_eq(s->config[0].value, "https://x");
    cr_expect_str_eq(s->config[1].value, "env:S1");
    cr_expect_str_eq(s->config[2].value, "5");
    cr_expect_str_eq(s->config[3].value, "");

    cr_assert_eq(cfg->nproducts, 1);
    const ph_product_conf *p = &cfg->products[0];
    cr_expect_eq(p->delivery, PH_DELIVERY_RECHARGE);
    cr_expect_eq(p->face_value, 5000);
    cr_assert_eq(p->ntags, 2);
    cr_expect_str_eq(p->tags[1], "topup");
    cr_expect_str_eq(p->redemption_guide, "line one\nline two\n");
    cr_expect_eq(p->listed, 0);
    cr_assert_eq(p->noffers, 1);
    cr_expect_str_eq(p->offers[0].supplier_sku, "100050");
    cr_expect_eq(p->offers[0].cost, 4950);
    ph_config_free(cfg);
}

Test(config, log_levels_match_log_h)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < 4; i++) {
        char yaml[128];
        snprintf(yaml, sizeof yaml, BASE "log: {level: %s}\n", names[i]);
        ph_config *cfg = load_ok(yaml);
        cr_expect_eq(cfg->log_level, ph_log_level_parse(names[i]), "%s", names[i]);
        ph_config_free(cfg);
    }
}

Test(config, money_forms)
{
    static const struct {
        const char *text;
        int64_t fen;
    } rows[] = {{"30", 3000}, {"30.00", 3000}, {"\"19.80\"", 1980}, {"19.8", 1980},
                {"0.5", 50},  {"'0'", 0},      {"0.01", 1}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char yaml[512];
        snprintf(yaml, sizeof yaml,
                 BASE SUPPLIER PRODUCT
                 "    offers: [{supplier: acme, supplier_sku: X, cost: %s}]\n",
                 rows[i].text);
        ph_config *cfg = load_ok(yaml);
        cr_expect_eq(cfg->products[0].offers[0].cost, rows[i].fen, "%s", rows[i].text);
        ph_config_free(cfg);
    }
}

Test(config, embedded_default_loads)
{
    const char *y = ph_config_default_yaml();
    ph_config *cfg = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_config_load_string(y, strlen(y), "<embedded>", &cfg, &err), PH_OK, "%s",
                 err.msg);
    cr_expect_str_eq(cfg->source, "<embedded>");
    cr_expect_str_eq(cfg->listen_address, "127.0.0.1");
    cr_expect_eq(cfg->port, 8080);
    cr_expect_str_eq(cfg->data_dir, "var/data");
    cr_expect_str_eq(cfg->master_key_file, "var/master.key");
    cr_expect_eq(cfg->master_key_create, 1);
    cr_expect_str_eq(cfg->plugin_dir, "build/plugins");
    cr_expect_str_eq(cfg->pid_file, "var/perkhubd.pid");

    cr_assert_eq(cfg->nclients, 3);
    static const struct {
        const char *token, *name;
        unsigned scopes;
    } clients[] = {
        {"demo-mall-token", "mall", PH_SCOPE_FULFILL | PH_SCOPE_SUPPORT},
        {"demo-othermall-token", "othermall", PH_SCOPE_FULFILL | PH_SCOPE_SUPPORT},
        {"demo-ops-token", "ops", PH_SCOPE_OPS},
    };
    for (size_t i = 0; i < 3; i++) {
        const ph_client_conf *c =
            ph_config_client_by_token(cfg, clients[i].token, strlen(clients[i].token));
        cr_assert_not_null(c, "%s", clients[i].token);
        cr_expect_str_eq(c->name, clients[i].name);
        cr_expect_eq(c->scopes, clients[i].scopes, "%s", clients[i].name);
        cr_expect_eq(c->loopback_only, 1, "%s: published demo tokens work on loopback only",
                     clients[i].name);
    }

    const ph_supplier_conf *sbx = ph_config_supplier(cfg, "sandbox");
    cr_assert_not_null(sbx);
    cr_expect_str_eq(sbx->plugin, "sandbox");
    cr_expect_eq(sbx->enabled, 1);
    cr_expect_eq(sbx->priority, 10);
    cr_expect_eq(sbx->nconfig, 0);
    cr_expect_eq(sbx->timeout_ms, 10000, "supplier I/O defaults apply");
    cr_expect_eq(sbx->max_in_flight, 256);
    cr_expect_eq(sbx->tls_verify, 1);
    cr_expect_eq(sbx->auth_retry_ms, 30000, "issue 11: auth_failed cool-down default");
    cr_expect_eq(sbx->auth_retry_max_ms, 600000);

    static const struct {
        const char *sku, *category;
        int delivery;
        int64_t face;
        size_t offers;
    } products[] = {
        {"iqiyi.gold.1m", "video", PH_DELIVERY_CARD_CODE, 3000, 1},
        {"tencent.video.1m", "video", PH_DELIVERY_CARD_CODE, 3000, 1},
        {"netease.music.1m", "music", PH_DELIVERY_CARD_CODE, 1500, 0},
        {"meituan.voucher.20", "food", PH_DELIVERY_CARD_CODE, 2000, 0},
        {"mobile.topup.50", "telecom", PH_DELIVERY_RECHARGE, 5000, 1},
    };
    cr_assert_eq(cfg->nproducts, 6, "the five above and the programmer.pack bundle");
    for (size_t i = 0; i < 5; i++) {
        const ph_product_conf *p = ph_config_product(cfg, products[i].sku);
        cr_assert_not_null(p, "%s", products[i].sku);
        cr_expect_str_eq(p->category, products[i].category);
        cr_expect_eq(p->delivery, products[i].delivery, "%s", p->sku);
        cr_expect_eq(p->face_value, products[i].face, "%s", p->sku);
        cr_expect_eq(p->listed, 1);
        cr_expect_gt(strlen(p->redemption_guide), 80, "%s has a real guide", p->sku);
        /* offers the sandbox can fill at no more than the configured cost
         * (the sandbox charges 28.00 a card, 49.00 a top-up: plugins/sandbox),
         * so the demo's catalog check shows no price_above_cost; the cheap
         * products are sold from imported stock only */
        cr_assert_eq(p->noffers, products[i].offers, "%s", p->sku);
        if (!p->noffers)
            continue;
        cr_expect_str_eq(p->offers[0].supplier, "sandbox");
        cr_expect_str_eq(p->offers[0].supplier_sku,
                         p->delivery == PH_DELIVERY_RECHARGE ? "sandbox.recharge" : "sandbox.card");
        cr_expect(p->offers[0].cost >= (p->delivery == PH_DELIVERY_RECHARGE ? 4900 : 2800) &&
                      p->offers[0].cost < p->face_value,
                  "%s", p->sku);
    }
    const ph_product_conf *iq = ph_config_product(cfg, "iqiyi.gold.1m");
    cr_assert_eq(iq->ntags, 2);
    cr_expect_str_eq(iq->tags[0], "video");
    cr_expect_str_eq(iq->tags[1], "monthly");
    cr_expect_str_eq(iq->brand, "iqiyi");
    ph_config_free(cfg);
}

Test(config, example_file_loads)
{
    char path[PATH_MAX];
    source_path("conf/perkhub.example.yaml", path, sizeof path);
    ph_config *cfg = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_config_load_file(path, &cfg, &err), PH_OK, "%s", err.msg);
    cr_expect_str_eq(cfg->source, path);
    cr_expect_str_eq(cfg->port_file, "var/perkhub.port");
    cr_expect_eq(cfg->nclients, 3);
    cr_expect_eq(cfg->nsuppliers, 3);
    cr_expect_eq(cfg->nproducts, 4); /* with the perks.pack.video bundle */
    cr_expect_str_eq(cfg->public_url, "https://perkhub.example.com");
    const ph_supplier_conf *fulu = ph_config_supplier(cfg, "fulu");
    cr_assert_not_null(fulu);
    cr_expect_str_eq(fulu->plugin, "gateway");
    cr_expect_eq(fulu->breaker_failures, 5);
    cr_expect_eq(fulu->query_max_delay_ms, 30000);
    cr_expect_eq(fulu->stuck_after_s, 3600);
    cr_expect_eq(fulu->stuck_query_max_delay_s, 3600);
    const ph_supplier_conf *tango = ph_config_supplier(cfg, "tango");
    cr_assert_not_null(tango);
    cr_expect_eq(tango->stuck_after_s, 3600, "the default");
    cr_expect_eq(tango->stuck_query_max_delay_s, 3600, "the default");
    cr_expect_eq(ph_config_product(cfg, "meituan.voucher.20")->listed, 0);
    ph_config_free(cfg);
}

Test(config, fixture_minimal_loads)
{
    char path[PATH_MAX];
    source_path("tests/fixtures/config/minimal.yaml", path, sizeof path);
    ph_config *cfg = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_config_load_file(path, &cfg, &err), PH_OK, "%s", err.msg);
    cr_expect_eq(cfg->port, 8080);
    ph_config_free(cfg);
}

/* ---- what does not, and what it says ------------------------------------------ */

typedef struct error_case {
    const char *what;
    const char *yaml;
    const char *msg; /* the whole message */
} error_case;

static const error_case errors[] = {
    /* syntax and shape */
    {"syntax error", BASE "listen: [\n",
     "t.yaml:4:1: invalid YAML: did not find expected node content (while parsing a flow node at "
     "4:1)"},
    {"bad indentation", BASE "listen:\n  port: 8080\n bad: 9\n",
     "t.yaml:5:2: invalid YAML: did not find expected key (while parsing a block mapping at 1:1)"},
    {"invalid utf-8", BASE "plugin_dir: \xff\n",
     "t.yaml:3:13: invalid YAML: invalid leading UTF-8 octet (byte 0xff)"},
    {"empty document", "# nothing\n",
     "t.yaml:1:1: expected a mapping of settings, got an empty document"},
    {"root is a list", "- a\n- b\n", "t.yaml:1:1: expected a mapping, got a list"},
    {"two documents", BASE "---\n" BASE,
     "t.yaml:4:1: expected a single YAML document, got a second one"},
    {"section is a scalar", BASE "listen: 8080\n",
     "t.yaml:3:9: listen: expected a mapping, got \"8080\""},
    {"list is a mapping", BASE "clients: {name: a}\n",
     "t.yaml:3:10: clients: expected a list of mappings, got a mapping"},
    {"list item not a mapping", BASE "suppliers:\n  - acme\n",
     "t.yaml:4:5: suppliers[0]: expected a mapping, got \"acme\""},
    {"key not a scalar", BASE "? [a]\n: 1\n", "t.yaml:3:3: expected a key name, got a list"},

    /* keys */
    {"unknown key with hint", BASE "listen:\n  prot: 1\n",
     "t.yaml:4:3: listen: unknown key \"prot\", did you mean \"port\"?"},
    {"transposed letters", BASE SUPPLIER PRODUCT "    delviery: card_code\n",
     "t.yaml:13:5: products[0]: unknown key \"delviery\", did you mean \"delivery\"?"},
    {"key one level too high", BASE "port: 8080\n",
     "t.yaml:3:1: unknown key \"port\", did you mean \"listen.port\"?"},
    {"unknown key, no hint", BASE "log:\n  colour: red\n",
     "t.yaml:4:3: log: unknown key \"colour\", expected one of level, format, file"},
    {"log format not one of the names", BASE "log:\n  format: xml\n",
     "t.yaml:4:11: log.format: expected text or json, got \"xml\""},
    {"duplicate key", BASE "listen:\n  port: 8080\n  port: 9090\n",
     "t.yaml:5:3: listen: duplicate key \"port\", first at 4:3"},
    {"duplicate top-level key", BASE "data_dir: other\n",
     "t.yaml:3:1: duplicate key \"data_dir\", first at 1:1"},
    {"missing data_dir", "master_key_file: k\n", "t.yaml:1:1: missing required key \"data_dir\""},
    {"missing field names the parent", BASE "clients:\n  - name: mall\n    scopes: [ops]\n",
     "t.yaml:4:5: clients[0]: missing required key \"token_sha256\""},
    {"required field null",
     BASE SUPPLIER PRODUCT "    offers:\n      - supplier: acme\n"
                           "        supplier_sku:\n        cost: 1\n",
     "t.yaml:15:22: products[0].offers[0].supplier_sku: expected a non-empty string, got "
     "nothing"},

    /* integers and booleans */
    {"auth_retry_ms zero", BASE "suppliers:\n  - {id: a, plugin: p, auth_retry_ms: 0}\n",
     "t.yaml:4:39: suppliers[0].auth_retry_ms: expected an integer 1..86400000, got \"0\""},
    {"stuck_after_s zero", BASE "suppliers:\n  - {id: a, plugin: p, stuck_after_s: 0}\n",
     "t.yaml:4:39: suppliers[0].stuck_after_s: expected an integer 1..2592000, got \"0\""},
    {"port out of range", BASE "listen: {port: 65536}\n",
     "t.yaml:3:16: listen.port: expected an integer 0..65535, got \"65536\""},
    {"negative port", BASE "listen: {port: -1}\n",
     "t.yaml:3:16: listen.port: expected an integer 0..65535, got \"-1\""},
    {"trailing junk", BASE "listen: {port: 80a}\n",
     "t.yaml:3:16: listen.port: expected an integer 0..65535, got \"80a\""},
    {"hex integer", BASE "listen: {port: 0x50}\n",
     "t.yaml:3:16: listen.port: expected an integer 0..65535, got \"0x50\""},
    {"exponent", BASE "limits: {max_order_quantity: 1e3}\n",
     "t.yaml:3:30: limits.max_order_quantity: expected an integer 1..10000000, got \"1e3\""},
    {"quoted integer", BASE "listen: {port: \"8080\"}\n",
     "t.yaml:3:16: listen.port: expected an integer 0..65535, got the string \"8080\" (write "
     "numbers and booleans without quotes)"},
    {"zero threads", BASE "http:\n  threads: 0\n",
     "t.yaml:4:12: http.threads: expected an integer 1..256, got \"0\""},
    {"too many threads", BASE "http:\n  threads: 257\n",
     "t.yaml:4:12: http.threads: expected an integer 1..256, got \"257\""},
    {"zero map size", BASE "map_size_mb: 0\n",
     "t.yaml:3:14: map_size_mb: expected an integer 1..16777216, got \"0\""},
    {"huge body limit", BASE "limits: {max_body_mb: 99999999999999999999}\n",
     "t.yaml:3:23: limits.max_body_mb: expected an integer 1..4096, got \"99999999999999999999\""},
    {"bad boolean", BASE "master_key_create: maybe\n",
     "t.yaml:3:20: master_key_create: expected true or false, got \"maybe\""},
    {"quoted boolean", BASE "master_key_create: 'true'\n",
     "t.yaml:3:20: master_key_create: expected true or false, got the string \"true\" (write "
     "numbers and booleans without quotes)"},
    {"bad log level", BASE "log: {level: verbose}\n",
     "t.yaml:3:14: log.level: expected debug, info, warn or error, got \"verbose\""},

    /* strings and identifiers */
    {"empty path", BASE "plugin_dir: \"\"\n",
     "t.yaml:3:13: plugin_dir: expected a non-empty string, got \"\""},
    {"NUL in a string", BASE "plugin_dir: \"a\\0b\"\n",
     "t.yaml:3:13: plugin_dir: expected a non-empty string, got \"a\\x00b\""},
    {"string given a list", BASE "plugin_dir: [a]\n",
     "t.yaml:3:13: plugin_dir: expected a non-empty string, got a list"},
    {"sku with a space", BASE "products:\n  - sku: iqiyi gold\n",
     "t.yaml:4:10: products[0].sku: expected an identifier (1-64 characters of A-Z a-z 0-9 . _ "
     ": -), got \"iqiyi gold\""},
    {"sku too long",
     BASE "products:\n  - sku: "
          "a123456789b123456789c123456789d123456789e123456789f123456789g1234\n",
     "t.yaml:4:10: products[0].sku: expected an identifier (1-64 characters of A-Z a-z 0-9 . _ "
     ": -), got \"a123456789b123456789c123456789d123456789e1234567...\""},
    {"tag not an identifier", BASE SUPPLIER PRODUCT "    tags: [video, \"not ok\"]\n",
     "t.yaml:13:19: products[0].tags[1]: expected an identifier (1-64 characters of A-Z a-z 0-9 "
     ". _ : -), got \"not ok\""},
    {"null tag", BASE SUPPLIER PRODUCT "    tags: [video, ~]\n",
     "t.yaml:13:19: products[0].tags[1]: expected an identifier (1-64 characters of A-Z a-z 0-9 "
     ". _ : -), got null"},
    {"key twice in a list item", BASE PRODUCT "    delivery: cardcode\n",
     "t.yaml:10:5: products[0]: duplicate key \"delivery\", first at 8:5"},
    {"delivery typo",
     BASE "products:\n  - sku: a\n    name: A\n    brand: a\n"
          "    category: c\n    delivery: cardcode\n",
     "t.yaml:8:15: products[0].delivery: expected card_code, recharge or bundle, got \"cardcode\""},

    /* money */
    {"three decimals",
     BASE SUPPLIER PRODUCT "    offers: [{supplier: acme, supplier_sku: X, cost: \"19.999\"}]\n",
     "t.yaml:13:54: products[0].offers[0].cost: expected an amount in CNY like 30 or 19.80 (at "
     "most two decimals, not negative), got \"19.999\""},
    {"tolerance with three decimals", BASE SUPPLIER "    amount_tolerance: \"0.005\"\n",
     "t.yaml:6:23: suppliers[0].amount_tolerance: expected an amount in CNY like 30 or 19.80 (at "
     "most two decimals, not negative), got \"0.005\""},
    {"negative",
     BASE SUPPLIER PRODUCT "    offers: [{supplier: acme, supplier_sku: X, cost: -1}]\n",
     "t.yaml:13:54: products[0].offers[0].cost: expected an amount in CNY like 30 or 19.80 (at "
     "most two decimals, not negative), got \"-1\""},
    {"not a number",
     BASE "products:\n  - sku: a\n    name: A\n    brand: a\n"
          "    category: c\n    delivery: recharge\n    face_value: abc\n",
     "t.yaml:9:17: products[0].face_value: expected an amount in CNY like 30 or 19.80 (at most "
     "two decimals, not negative), got \"abc\""},

    /* clients */
    {"bad scope",
     BASE "clients:\n  - name: a\n    token_sha256: " HASH_A "\n"
          "    scopes: [fulfill, admin]\n",
     "t.yaml:6:23: clients[0].scopes[1]: expected fulfill, support or ops, got \"admin\""},
    {"no scopes", BASE "clients:\n  - name: a\n    token_sha256: " HASH_A "\n    scopes: []\n",
     "t.yaml:6:13: clients[0].scopes: expected a non-empty list of fulfill, support or ops, got "
     "an empty list"},
    {"scope not in a list",
     BASE "clients:\n  - name: a\n    token_sha256: " HASH_A "\n"
          "    scopes: ops\n",
     "t.yaml:6:13: clients[0].scopes: expected a non-empty list of fulfill, support or ops, got "
     "\"ops\""},
    {"token instead of its hash: not echoed",
     BASE "clients:\n  - name: a\n    token_sha256: demo-mall-token\n    scopes: [ops]\n",
     "t.yaml:5:19: clients[0].token_sha256: expected 64 hex digits (the SHA-256 of the token, "
     "never the token itself), got 15 characters"},
    {"duplicate client",
     BASE "clients:\n"
          "  - {name: mall, token_sha256: " HASH_A ", scopes: [ops]}\n"
          "  - {name: mall, token_sha256: " HASH_B ", scopes: [ops]}\n",
     "t.yaml:5:12: clients[1].name: duplicate client name \"mall\", first at 4:12 (clients[0])"},
    {"same token twice",
     BASE "clients:\n"
          "  - {name: a, token_sha256: " HASH_A ", scopes: [ops]}\n"
          "  - {name: b, token_sha256: " HASH_A ", scopes: [ops]}\n",
     "t.yaml:5:29: clients[1].token_sha256: expected a token of its own, got the same token as "
     "clients[0] (a)"},

    /* suppliers */
    {"duplicate supplier", BASE SUPPLIER "  - id: acme\n    plugin: other\n",
     "t.yaml:6:9: suppliers[1].id: duplicate supplier id \"acme\", first at 4:9 (suppliers[0])"},
    {"nested plugin config", BASE SUPPLIER "    config:\n      auth: {user: u}\n",
     "t.yaml:7:13: suppliers[0].config.auth: expected a scalar value (plugin settings are flat), "
     "got a mapping"},
    {"bad plugin config key", BASE SUPPLIER "    config:\n      \"api key\": x\n",
     "t.yaml:7:7: suppliers[0].config: expected a setting name (1-128 characters of A-Z a-z 0-9 _ "
     ". -), got \"api key\""},
    {"duplicate plugin config key", BASE SUPPLIER "    config:\n      url: a\n      url: b\n",
     "t.yaml:8:7: suppliers[0].config: duplicate key \"url\", first at 7:7"},
    {"config is a list", BASE SUPPLIER "    config: [a]\n",
     "t.yaml:6:13: suppliers[0].config: expected a mapping of plugin settings, got a list"},

    /* products and offers */
    {"duplicate sku",
     BASE PRODUCT "  - sku: tencent.video.1m\n    name: T\n    brand: t\n"
                  "    category: video\n    delivery: card_code\n"
                  "    face_value: 30\n"
                  "  - sku: iqiyi.gold.1m\n    name: I\n    brand: i\n"
                  "    category: video\n    delivery: card_code\n"
                  "    face_value: 30\n",
     "t.yaml:16:10: products[2].sku: duplicate sku \"iqiyi.gold.1m\", first at 4:10 "
     "(products[0])"},
    {"offer from an unknown supplier",
     BASE SUPPLIER PRODUCT
     "    offers:\n      - supplier: acem\n        supplier_sku: X\n        cost: 1\n",
     "t.yaml:14:19: products[0].offers[0].supplier: expected the id of a configured supplier, got "
     "\"acem\", did you mean \"acme\"?"},
    {"offer with no suppliers at all",
     BASE PRODUCT "    offers:\n      - supplier: acme\n        supplier_sku: X\n        cost: 1\n",
     "t.yaml:11:19: products[0].offers[0].supplier: expected the id of a configured supplier, got "
     "\"acme\" (no suppliers are configured)"},
    {"offer, far from any supplier",
     BASE SUPPLIER PRODUCT
     "    offers:\n      - supplier: zzz\n        supplier_sku: X\n        cost: 1\n",
     "t.yaml:14:19: products[0].offers[0].supplier: expected the id of a configured supplier, got "
     "\"zzz\""},
    {"two offers from one supplier",
     BASE SUPPLIER PRODUCT "    offers:\n      - {supplier: acme, supplier_sku: X, cost: 1}\n"
                           "      - {supplier: acme, supplier_sku: Y, cost: 2}\n",
     "t.yaml:15:20: products[0].offers[1].supplier: duplicate offer from supplier \"acme\", "
     "first at 14:20 (products[0].offers[0])"},
    /* issue 10 item 11: a repeated key and an integer out of range name the key
     * path and the place, however deep and in whichever YAML form */
    {"huge negative integer", BASE "listen: {port: -99999999999999999999}\n",
     "t.yaml:3:16: listen.port: expected an integer 0..65535, got \"-99999999999999999999\""},
    {"integer just past int64", BASE "map_size_mb: 9223372036854775808\n",
     "t.yaml:3:14: map_size_mb: expected an integer 1..16777216, got \"9223372036854775808\""},
    {"duplicate key in a flow mapping", BASE "limits: {max_body_mb: 1, max_body_mb: 2}\n",
     "t.yaml:3:26: limits: duplicate key \"max_body_mb\", first at 3:10"},
    {"duplicate key in an offer",
     BASE SUPPLIER PRODUCT "    offers:\n      - {supplier: acme, cost: 1, cost: 2}\n",
     "t.yaml:14:35: products[0].offers[0]: duplicate key \"cost\", first at 14:26"},
    {"huge money",
     BASE SUPPLIER PRODUCT
     "    offers: [{supplier: acme, supplier_sku: X, cost: 99999999999999999999}]\n",
     "t.yaml:13:54: products[0].offers[0].cost: expected an amount in CNY like 30 or 19.80 (at "
     "most two decimals, not negative), got \"99999999999999999999\""},
};

/* listen.tls and the client certificates (issue 14 item 5): the files are
 * only looked at here; tests/e2e/test_tls.c has real ones, a 0644 key and PEM. */
static const error_case tls_errors[] = {
    {"cert without key", BASE "listen:\n  tls:\n    cert: /etc/hostname\n",
     "t.yaml:5:5: listen.tls: expected both cert and key (client_ca goes with them)"},
    {"client_ca without cert", BASE "listen:\n  tls: {client_ca: /etc/hostname}\n",
     "t.yaml:4:8: listen.tls: expected both cert and key (client_ca goes with them)"},
    {"missing cert", BASE "listen:\n  tls:\n    cert: /nonexistent/s.crt\n    key: /x.key\n",
     "t.yaml:5:11: listen.tls.cert: cannot read /nonexistent/s.crt: No such file or directory"},
    {"a directory as key", BASE "listen:\n  tls:\n    cert: /etc/hostname\n    key: /etc\n",
     "t.yaml:6:10: listen.tls.key: /etc is not a regular file"},
    {"cert_sha256 without client_ca",
     BASE "clients:\n  - {name: a, token_sha256: " HASH_A ", scopes: [ops], cert_sha256: " HASH_B
          "}\n",
     "t.yaml:4:123: clients[0].cert_sha256: needs listen.tls.client_ca: the CA a client "
     "certificate is verified against"},
    {"cert_sha256 not hex",
     BASE "clients:\n  - {name: a, token_sha256: " HASH_A ", scopes: [ops], cert_sha256: zz}\n",
     "t.yaml:4:123: clients[0].cert_sha256: expected 64 hex digits (the SHA-256 of the "
     "certificate in DER form), got 2 characters"},
};

Test(config, tls_errors_name_the_setting)
{
    for (size_t i = 0; i < sizeof tls_errors / sizeof tls_errors[0]; i++) {
        const error_case *e = &tls_errors[i];
        ph_config *cfg = NULL;
        ph_err err = {0};
        int rc = ph_config_load_string(e->yaml, strlen(e->yaml), "t.yaml", &cfg, &err);
        cr_expect_eq(rc, PH_EINVAL, "%s: rc %d", e->what, rc);
        cr_expect(strcmp(err.msg, e->msg) == 0, "%s:\n  got  %s\n  want %s", e->what, err.msg,
                  e->msg);
        if (rc == PH_OK)
            ph_config_free(cfg);
    }
}

Test(config, tls_off_and_plain_tokens_refused_by_default)
{
    ph_config *cfg =
        load_ok(BASE "clients:\n  - {name: a, token_sha256: " HASH_A ", scopes: [ops]}\n");
    cr_assert_null(cfg->tls_cert);
    cr_assert_null(cfg->tls_key);
    cr_assert_null(cfg->tls_client_ca);
    cr_assert_eq(cfg->http_allow_plain_tokens, 0);
    cr_assert_eq(cfg->clients[0].cert_required, 0);
    ph_config_free(cfg);
    cfg = load_ok(BASE "http:\n  allow_plain_tokens: true\n");
    cr_assert_eq(cfg->http_allow_plain_tokens, 1);
    ph_config_free(cfg);
}

/* Sale prices and the business day (the ledger, issue 11): their own cases,
 * kept apart from the table above so each names what it proves. */
#define MALL_CLIENT "clients:\n  - {name: mall, token_sha256: " HASH_A ", scopes: [fulfill]}\n"
static const error_case price_errors[] = {
    {"price for an unknown client",
     BASE MALL_CLIENT PRODUCT "    prices:\n      - {client: mal, price: \"1.00\"}\n",
     "t.yaml:13:18: products[0].prices[0].client: expected the name of a configured client, got "
     "\"mal\", did you mean \"mall\"?"},
    {"two prices for one client",
     BASE MALL_CLIENT PRODUCT "    prices:\n      - {client: mall, price: 1}\n"
                              "      - {client: mall, price: 2}\n",
     "t.yaml:14:18: products[0].prices[1].client: duplicate price for client \"mall\", first at "
     "13:18 (products[0].prices[0])"},
    {"price with three decimals", BASE PRODUCT "    price: \"1.001\"\n",
     "t.yaml:10:12: products[0].price: expected an amount in CNY like 30 or 19.80 (at most two "
     "decimals, not negative), got \"1.001\""},
    {"offset without its leading zero", BASE "reports:\n  utc_offset: \"+8:00\"\n",
     "t.yaml:4:15: reports.utc_offset: expected an offset from UTC like \"+08:00\" or \"-05:30\" "
     "(-12:00..+14:00), got \"+8:00\""},
    {"offset out of range", BASE "reports:\n  utc_offset: \"+14:30\"\n",
     "t.yaml:4:15: reports.utc_offset: expected an offset from UTC like \"+08:00\" or \"-05:30\" "
     "(-12:00..+14:00), got \"+14:30\""},
};

Test(config, price_and_offset_errors_name_the_key)
{
    for (size_t i = 0; i < sizeof price_errors / sizeof price_errors[0]; i++) {
        const error_case *e = &price_errors[i];
        ph_config *cfg = NULL;
        ph_err err = {0};
        int rc = ph_config_load_string(e->yaml, strlen(e->yaml), "t.yaml", &cfg, &err);
        cr_expect_eq(rc, PH_EINVAL, "%s: rc %d", e->what, rc);
        cr_expect(strcmp(err.msg, e->msg) == 0, "%s:\n  got  %s\n  want %s", e->what, err.msg,
                  e->msg);
        if (rc == PH_OK)
            ph_config_free(cfg);
    }
}

Test(config, sale_prices_and_offset)
{
    ph_config *cfg = load_ok(BASE MALL_CLIENT PRODUCT "    price: \"29.90\"\n"
                                                      "    prices:\n"
                                                      "      - {client: mall, price: \"28.50\"}\n"
                                                      "  - sku: b\n    name: B\n    brand: x\n"
                                                      "    category: y\n    delivery: recharge\n"
                                                      "    face_value: 1\n    price: ~\n"
                                                      "reports: {utc_offset: \"-05:30\"}\n");
    cr_assert_eq(cfg->products[0].price, 2990);
    cr_assert_eq(cfg->products[0].price_set, 1);
    cr_assert_eq(cfg->products[0].nprices, 1);
    cr_assert_str_eq(cfg->products[0].prices[0].client, "mall");
    cr_assert_eq(cfg->products[0].prices[0].price, 2850);
    cr_assert_eq(cfg->products[1].price_set, 0, "price: ~ is no price, not a price of 0");
    cr_assert_eq(cfg->report_utc_offset_min, -330);
    ph_config_free(cfg);
    cfg = load_ok(BASE);
    cr_assert_eq(cfg->report_utc_offset_min, 480, "the default business day is UTC+8");
    ph_config_free(cfg);
}

Test(config, errors_name_file_line_column_and_path)
{
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++) {
        const error_case *e = &errors[i];
        ph_config *cfg = (ph_config *)&errors; /* must stay untouched on error */
        ph_err err = {0};
        int rc = ph_config_load_string(e->yaml, strlen(e->yaml), "t.yaml", &cfg, &err);
        cr_expect_eq(rc, PH_EINVAL, "%s: rc %d", e->what, rc);
        cr_expect_eq(err.code, rc, "%s", e->what);
        cr_expect_eq((void *)cfg, (void *)&errors, "%s: *out changed", e->what);
        cr_expect(strcmp(err.msg, e->msg) == 0, "%s:\n  got  %s\n  want %s", e->what, err.msg,
                  e->msg);
        if (rc == PH_OK && (void *)cfg != (void *)&errors)
            ph_config_free(cfg);
    }
}

Test(config, token_is_never_echoed)
{
    const char *yaml = BASE "clients:\n  - name: a\n    token_sha256: s3cret-token\n"
                            "    scopes: [ops]\n";
    ph_config *cfg = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, &err), PH_EINVAL);
    cr_expect_null(strstr(err.msg, "s3cret"), "%s", err.msg);
}

Test(config, plugin_setting_values_are_never_echoed)
{
    const char *yaml = BASE SUPPLIER "    config:\n      secret: \"hunter2\\0\"\n";
    ph_config *cfg = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, &err), PH_EINVAL);
    cr_expect_null(strstr(err.msg, "hunter2"), "%s", err.msg);
}

Test(config, long_values_are_cut_on_a_character_boundary)
{
    /* 20 three-byte characters: the cut at 48 bytes must not split the 17th */
    const char *yaml = BASE "log: {level: 爱奇艺爱奇艺爱奇艺爱奇艺爱奇艺爱奇艺爱奇}\n";
    ph_config *cfg = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_config_load_string(yaml, strlen(yaml), "t.yaml", &cfg, &err), PH_EINVAL);
    cr_expect_str_eq(err.msg, "t.yaml:3:14: log.level: expected debug, info, warn or error, got "
                              "\"爱奇艺爱奇艺爱奇艺爱奇艺爱奇艺爱...\"");
}

Test(config, fixture_file_error_names_the_path)
{
    char path[PATH_MAX], want[PATH_MAX + 128];
    source_path("tests/fixtures/config/bad-delivery.yaml", path, sizeof path);
    ph_config *cfg = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_config_load_file(path, &cfg, &err), PH_EINVAL);
    cr_expect_null(cfg);
    snprintf(
        want, sizeof want,
        "%s:15:15: products[0].delivery: expected card_code, recharge or bundle, got \"cardcode\"",
        path);
    cr_expect_str_eq(err.msg, want);

    source_path("tests/fixtures/config/dup-sku.yaml", path, sizeof path);
    cr_assert_eq(ph_config_load_file(path, &cfg, &err), PH_EINVAL);
    snprintf(want, sizeof want,
             "%s:17:10: products[2].sku: duplicate sku \"netease.music.1m\", first at 5:10 "
             "(products[0])",
             path);
    cr_expect_str_eq(err.msg, want);
}

Test(config, missing_file_is_eio_naming_the_path)
{
    ph_config *cfg = NULL;
    ph_err err = {0};
    int rc = ph_config_load_file("/nonexistent/perkhub.yaml", &cfg, &err);
    cr_expect_eq(rc, PH_EIO);
    cr_expect_eq(err.code, PH_EIO);
    cr_expect_null(cfg);
    cr_expect_str_eq(err.msg, "/nonexistent/perkhub.yaml: cannot read: No such file or directory");
}

Test(config, directory_is_eio)
{
    ph_config *cfg = NULL;
    ph_err err = {0};
    cr_expect_eq(ph_config_load_file("/", &cfg, &err), PH_EIO);
    cr_expect_null(cfg);
    cr_expect_str_eq(err.msg, "/: cannot read: Is a directory");
}

Test(config, null_err_is_allowed)
{
    ph_config *cfg = NULL;
    cr_expect_eq(ph_config_load_string("x: 1", 4, NULL, &cfg, NULL), PH_EINVAL);
    cr_expect_eq(ph_config_load_file("/nonexistent", &cfg, NULL), PH_EIO);
    cr_expect_null(cfg);
    ph_config_free(NULL);
}

Test(config, unnamed_buffer)
{
    ph_config *cfg = NULL;
    ph_err err = {0};
    cr_expect_eq(ph_config_load_string("x: 1\n", 5, NULL, &cfg, &err), PH_EINVAL);
    cr_expect_str_eq(
        err.msg,
        "<string>:1:1: unknown key \"x\", expected one of listen, data_dir, "
        "map_size_mb, master_key_file, master_key_create, plugin_dir, public_url, pid_file, log, "
        "http, limits, metrics, reports, expiry, replenish_check_s, webhooks, clients, suppliers, "
        "products, redemption, risk, grants, replication, snapshots");
}

/* ---- lookups ------------------------------------------------------------------------ */

Test(config, token_lookup)
{
    ph_config *cfg =
        load_ok(BASE "clients:\n"
                     "  - {name: mall, token_sha256: " HASH_A ", scopes: [fulfill]}\n"
                     "  - {name: other, token_sha256: " HASH_B ", scopes: [support]}\n");
    static const struct {
        const char *token;
        size_t len;
        const char *client; /* NULL: rejected */
    } rows[] = {
        {"demo-mall-token", 15, "mall"},
        {"demo-othermall-token", 20, "other"},
        {"demo-mall-token", 14, NULL},  /* a prefix */
        {"demo-mall-tokenX", 16, NULL}, /* an extension */
        {"DEMO-MALL-TOKEN", 15, NULL},  /* case matters */
        {HASH_A, 64, NULL},             /* the hash is not the token */
        {"", 0, NULL},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const ph_client_conf *c = ph_config_client_by_token(cfg, rows[i].token, rows[i].len);
        if (rows[i].client) {
            cr_assert_not_null(c, "row %zu", i);
            cr_expect_str_eq(c->name, rows[i].client);
        } else {
            cr_expect_null(c, "row %zu accepted", i);
        }
    }
    cr_expect_null(ph_config_client_by_token(cfg, NULL, 0));
    cr_expect_null(ph_config_client_by_token(NULL, "demo-mall-token", 15));

    uint8_t h[PH_HASH_LEN];
    ph_sha256("demo-mall-token", 15, h);
    cr_expect_eq(memcmp(cfg->clients[0].token_hash, h, PH_HASH_LEN), 0);
    ph_config_free(cfg);
}

Test(config, product_and_supplier_lookup)
{
    ph_config *cfg = load_ok(BASE SUPPLIER PRODUCT);
    cr_expect_not_null(ph_config_product(cfg, "iqiyi.gold.1m"));
    cr_expect_null(ph_config_product(cfg, "iqiyi.gold"));
    cr_expect_null(ph_config_product(cfg, NULL));
    cr_expect_eq(ph_config_supplier(cfg, "acme"), &cfg->suppliers[0]);
    cr_expect_null(ph_config_supplier(cfg, "ACME"));
    cr_expect_null(ph_config_product(NULL, "x"));
    ph_config_free(cfg);
}

/* The connection budget (issue 10, defect 1): defaults, values, and the
 * reserve that must stay below the budget, reported where it is written. */
Test(config, http_connection_budget)
{
    ph_config *cfg = load_ok(BASE);
    cr_expect_eq(cfg->http_max_connections, 10000);
    cr_expect_eq(cfg->http_max_per_address, 1000);
    cr_expect_eq(cfg->http_reserved_connections, 64);
    cr_expect_eq(cfg->http_header_timeout_s, 10);
    cr_expect_eq(cfg->http_request_timeout_s, 120);
    ph_config_free(cfg);
    cfg = load_ok(BASE "http:\n  max_connections: 20\n  max_connections_per_address: 4\n"
                       "  reserved_connections: 5\n  header_timeout_s: 1\n"
                       "  request_timeout_s: 2\n");
    cr_expect_eq(cfg->http_max_connections, 20);
    cr_expect_eq(cfg->http_max_per_address, 4);
    cr_expect_eq(cfg->http_reserved_connections, 5);
    cr_expect_eq(cfg->http_header_timeout_s, 1);
    cr_expect_eq(cfg->http_request_timeout_s, 2);
    ph_config_free(cfg);
    static const struct {
        const char *yaml, *msg;
    } bad[] = {
        {BASE "http:\n  max_connections: 20\n  reserved_connections: 20\n",
         "t.yaml:5:25: http.reserved_connections: expected reserved_connections (20) below "
         "max_connections (20): the reserve is the part of the connection budget kept for "
         "health probes and ops"},
        {BASE "http:\n  max_connections: 64\n",
         "t.yaml:4:20: http.max_connections: expected reserved_connections (64) below "
         "max_connections (64): the reserve is the part of the connection budget kept for "
         "health probes and ops"},
        {BASE "http:\n  header_timeout_s: 0\n",
         "t.yaml:4:21: http.header_timeout_s: expected an integer 1..3600, got \"0\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ph_err err = {0};
        cr_expect_eq(ph_config_load_string(bad[i].yaml, strlen(bad[i].yaml), "t.yaml", &cfg, &err),
                     PH_EINVAL, "row %zu", i);
        cr_expect_str_eq(err.msg, bad[i].msg, "row %zu", i);
    }
}

/* http.auth_failures (issue 15 item 6): the defaults, values and exempt
 * networks parsed at load, and each kind of nonsense refused where it is
 * written, the exempt entry named by its index. */
Test(config, http_auth_failures)
{
    ph_config *cfg = load_ok(BASE);
    const ph_auth_failures_conf *af = &cfg->auth_failures;
    cr_expect_eq(af->window_s, 60);
    cr_expect_eq(af->slow_after, 5);
    cr_expect_eq(af->delay_ms, 250);
    cr_expect_eq(af->delay_max_ms, 2000);
    cr_expect_eq(af->block_after, 20);
    cr_expect_eq(af->block_s, 300);
    cr_expect_eq(af->nexempt, 0);
    ph_config_free(cfg);
    cfg = load_ok(BASE "http:\n  auth_failures:\n    window_s: 10\n    slow_after: 0\n"
                       "    delay_ms: 50\n    delay_max_ms: 50\n    block_after: 1\n"
                       "    block_s: 2\n    exempt: [\"10.0.0.0/8\", \"2001:db8::/32\", "
                       "\"203.0.113.9\"]\n");
    af = &cfg->auth_failures;
    cr_expect_eq(af->window_s, 10);
    cr_expect_eq(af->slow_after, 0);
    cr_expect_eq(af->delay_ms, 50);
    cr_expect_eq(af->delay_max_ms, 50);
    cr_expect_eq(af->block_after, 1);
    cr_expect_eq(af->block_s, 2);
    cr_assert_eq(af->nexempt, 3);
    cr_expect_eq(af->exempt_nets[0].net.family, 4);
    cr_expect_eq(af->exempt_nets[0].prefix, 8);
    cr_expect_eq(af->exempt_nets[1].net.family, 6);
    cr_expect_eq(af->exempt_nets[1].prefix, 32);
    cr_expect_eq(af->exempt_nets[2].prefix, 32);
    ph_config_free(cfg);
#define AF BASE "http:\n  auth_failures:\n"
    static const error_case bad[] = {
        {"negative", AF "    window_s: -5\n",
         "t.yaml:5:15: http.auth_failures.window_s: expected an integer 1..86400, got \"-5\""},
        {"zero window", AF "    window_s: 0\n",
         "t.yaml:5:15: http.auth_failures.window_s: expected an integer 1..86400, got \"0\""},
        {"zero delay", AF "    delay_ms: 0\n",
         "t.yaml:5:15: http.auth_failures.delay_ms: expected an integer 1..60000, got \"0\""},
        {"zero block", AF "    block_s: 0\n",
         "t.yaml:5:14: http.auth_failures.block_s: expected an integer 1..604800, got \"0\""},
        {"negative slow_after", AF "    slow_after: -1\n",
         "t.yaml:5:17: http.auth_failures.slow_after: expected an integer 0..10000, got \"-1\""},
        {"block not after slow", AF "    slow_after: 5\n    block_after: 5\n",
         "t.yaml:6:18: http.auth_failures.block_after: expected block_after (5) above "
         "slow_after (5): failures past slow_after are delayed, and at block_after the address "
         "is refused"},
        {"slow past the default block", AF "    slow_after: 30\n",
         "t.yaml:5:17: http.auth_failures.slow_after: expected block_after (20) above "
         "slow_after (30): failures past slow_after are delayed, and at block_after the "
         "address is refused"},
        {"ceiling below the delay", AF "    delay_ms: 500\n    delay_max_ms: 100\n",
         "t.yaml:6:19: http.auth_failures.delay_max_ms: expected delay_max_ms (100) at least "
         "delay_ms (500): the delay doubles from delay_ms up to delay_max_ms"},
        {"prefix too long", AF "    exempt:\n      - 10.0.0.0/8\n      - 192.168.0.0/33\n",
         "t.yaml:7:9: http.auth_failures.exempt[1]: expected an address or a network like "
         "10.0.0.0/8 or 2001:db8::/32, got \"192.168.0.0/33\": prefix above 32 for an IPv4 "
         "address"},
        {"host bits", AF "    exempt: [\"10.1.2.3/8\"]\n",
         "t.yaml:5:14: http.auth_failures.exempt[0]: expected an address or a network like "
         "10.0.0.0/8 or 2001:db8::/32, got \"10.1.2.3/8\": bits set past the prefix (write "
         "the network's first address, or a host without a prefix)"},
        {"a name", AF "    exempt: [mall-nat]\n",
         "t.yaml:5:14: http.auth_failures.exempt[0]: expected an address or a network like "
         "10.0.0.0/8 or 2001:db8::/32, got \"mall-nat\": not an IPv4 address"},
        {"not a list", AF "    exempt: 10.0.0.0/8\n",
         "t.yaml:5:13: http.auth_failures.exempt: expected a list of strings, got "
         "\"10.0.0.0/8\""},
        {"unknown key", AF "    block_after_s: 5\n",
         "t.yaml:5:5: http.auth_failures: unknown key \"block_after_s\", did you mean "
         "\"block_after\"?"},
    };
#undef AF
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ph_config *c = NULL;
        ph_err err = {0};
        int rc = ph_config_load_string(bad[i].yaml, strlen(bad[i].yaml), "t.yaml", &c, &err);
        cr_expect_eq(rc, PH_EINVAL, "%s: rc %d", bad[i].what, rc);
        cr_expect(strcmp(err.msg, bad[i].msg) == 0, "%s:\n  got  %s", bad[i].what, err.msg);
        if (rc == PH_OK)
            ph_config_free(c);
    }
}

/* ---- redemption (issue 12) ------------------------------------------------------ */

Test(config, redemption_wait)
{
    ph_config *cfg = load_ok(BASE);
    cr_assert_eq(cfg->redemption_wait_ms, 1500, "the default");
    ph_config_free(cfg);
    cfg = load_ok(BASE "redemption:\n  wait_ms: 250\n");
    cr_assert_eq(cfg->redemption_wait_ms, 250);
    ph_config_free(cfg);
    static const error_case bad[] = {
        {"zero", BASE "redemption:\n  wait_ms: 0\n",
         "t.yaml:4:12: redemption.wait_ms: expected an integer 1..60000, got \"0\""},
        {"too long", BASE "redemption:\n  wait_ms: 60001\n",
         "t.yaml:4:12: redemption.wait_ms: expected an integer 1..60000, got \"60001\""},
        {"not a number", BASE "redemption:\n  wait_ms: soon\n",
         "t.yaml:4:12: redemption.wait_ms: expected an integer 1..60000, got \"soon\""},
        {"unknown key", BASE "redemption:\n  wait_s: 2\n",
         "t.yaml:4:3: redemption: unknown key \"wait_s\", did you mean \"wait_ms\"?"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ph_config *c = NULL;
        ph_err err = {0};
        int rc = ph_config_load_string(bad[i].yaml, strlen(bad[i].yaml), "t.yaml", &c, &err);
        cr_expect_eq(rc, PH_EINVAL, "%s: rc %d", bad[i].what, rc);
        cr_expect(strcmp(err.msg, bad[i].msg) == 0, "%s:\n  got  %s", bad[i].what, err.msg);
        if (rc == PH_OK)
            ph_config_free(c);
    }
}
