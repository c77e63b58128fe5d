/*
 * config_lookup.c — reading a loaded ph_config: clients by token hash,
 * products and suppliers by id, delivery kinds by name; and the embedded
 * default configuration. Any thread, on a snapshot the caller holds.
 */
#include "config/config.h"
#include "config/config_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

#include "crypto/code.h"
#include "crypto/crypto.h"
#include "base/log.h"
#include "base/util.h"

/* ---- lookups --------------------------------------------------------------- */

const ph_client_conf *ph_config_client_by_hash(const ph_config *cfg, const uint8_t hash[32])
{
    const ph_client_conf *hit = NULL;
    if (!cfg || !hash)
        return NULL;
    /* every client is compared, so the time taken says nothing about which
     * configured hash shares a prefix with the presented one */
    for (size_t i = 0; i < cfg->nclients; i++) {
        int eq = ph_ct_equal(hash, cfg->clients[i].token_hash, PH_HASH_LEN);
        if (eq && !hit)
            hit = &cfg->clients[i];
    }
    return hit;
}

const ph_client_conf *ph_config_client_by_token(const ph_config *cfg, const char *token, size_t len)
{
    uint8_t h[PH_HASH_LEN];
    if (!cfg || !token || !len)
        return NULL;
    ph_sha256(token, len, h);
    const ph_client_conf *hit = ph_config_client_by_hash(cfg, h);
    ph_wipe(h, sizeof h);
    return hit;
}

const char *ph_delivery_name(int delivery)
{
    for (size_t i = 0; cfg_delivery_names[i]; i++)
        if (cfg_delivery_values[i] == delivery)
            return cfg_delivery_names[i];
    return NULL;
}

int ph_delivery_parse(const char *name)
{
    for (size_t i = 0; name && cfg_delivery_names[i]; i++)
        if (strcmp(cfg_delivery_names[i], name) == 0)
            return cfg_delivery_values[i];
    return 0;
}

const ph_product_conf *ph_config_product(const ph_config *cfg, const char *sku)
{
    for (size_t i = 0; cfg && sku && i < cfg->nproducts; i++)
        if (!strcmp(cfg->products[i].sku, sku))
            return &cfg->products[i];
    return NULL;
}

const ph_supplier_conf *ph_config_supplier(const ph_config *cfg, const char *id)
{
    for (size_t i = 0; cfg && id && i < cfg->nsuppliers; i++)
        if (!strcmp(cfg->suppliers[i].id, id))
            return &cfg->suppliers[i];
    return NULL;
}

/* ---- the embedded default -------------------------------------------------- */

/* Kept as YAML text rather than built as a struct so that it goes through the
 * same validation as any file (a test loads it) and can be shown verbatim as a
 * starting point. The tokens are demo tokens for loopback: see inside. */
static const char default_yaml[] =
    "# perkhub embedded default configuration: what `perkhubd` runs without "
    "-c, and\n"
    "# what `make demo` starts. Everything lives under var/ in the working "
    "directory.\n"
    "listen:\n"
    "  address: 127.0.0.1\n"
    "  port: 8080\n"
    "data_dir: var/data\n"
    "map_size_mb: 1024\n"
    "master_key_file: var/master.key\n"
    "master_key_create: true   # demo only: a production key file is "
    "provisioned, never generated\n"
    "plugin_dir: build/plugins\n"
    "pid_file: var/perkhubd.pid   # kill -HUP $(cat var/perkhubd.pid) reloads\n"
    "log:\n"
    "  level: info\n"
    "http:\n"
    "  threads: 4\n"
    "limits:\n"
    "  max_order_quantity: 100000\n"
    "  max_body_mb: 64\n"
    "  max_import_codes: 1000000\n"
    "\n"
    "# These are DEMO tokens: their plaintexts are published in the README's "
    "curl\n"
    "# walkthrough, so they are loopback_only: refused (403) from any other "
    "address.\n"
    "#   mall       demo-mall-token\n"
    "#   othermall  demo-othermall-token\n"
    "#   ops        demo-ops-token\n"
    "# Only the SHA-256 of a token is configured: printf %s \"$TOKEN\" | "
    "sha256sum\n"
    "clients:\n"
    "  - name: mall\n"
    "    token_sha256: "
    "c8e0aa386ce8862223ef2a674bf01fac0afeb83fcf4738400864098d6b80a0fd\n"
    "    scopes: [fulfill, support]\n"
    "    loopback_only: true\n"
    "  - name: othermall\n"
    "    token_sha256: "
    "51ea3e5c2e2f4e65850d64341129057991a3e664e2eecf7911e9bd038c595d1f\n"
    "    scopes: [fulfill, support]\n"
    "    loopback_only: true\n"
    "  - name: ops\n"
    "    token_sha256: "
    "4db91eab0281403a94ae3ed61e1e1baf7528d2dc264eb786f64c43d7697d3177\n"
    "    scopes: [ops]\n"
    "    loopback_only: true\n"
    "\n"
    "suppliers:\n"
    "  # The built-in sandbox supplier: no network, magic values in "
    "docs/sandbox.md.\n"
    "  - id: sandbox\n"
    "    plugin: sandbox\n"
    "    enabled: true\n"
    "    priority: 10\n"
    "    # How its statement CSV reads (reconciliation, docs/config.md).\n"
    "    statement:\n"
    "      columns: {ref: our_ref, amount: amount, status: status}\n"
    "      success_values: [SUCCESS]\n"
    "\n"
    "products:\n"
    "  - sku: iqiyi.gold.1m\n"
    "    name: iQiyi Gold monthly membership\n"
    "    brand: iqiyi\n"
    "    category: video\n"
    "    tags: [video, monthly]\n"
    "    delivery: card_code\n"
    "    face_value: \"30.00\"\n"
    "    price: \"29.90\"   # what the mall pays per unit: the ledger's sale\n"
    "    redemption_guide: >-\n"
    "      Open the iQiyi (爱奇艺) app and sign in to the account to upgrade, "
    "then go to\n"
    "      我的 → 兑换VIP, enter the code and tap 立即兑换. Gold membership "
    "starts at once\n"
    "      and lasts 30 days from activation. Redeem before the code's expiry "
    "date; a\n"
    "      redeemed code cannot be refunded or moved to another account.\n"
    "    offers:\n"
    "      - supplier: sandbox\n"
    "        supplier_sku: sandbox.card\n"
    "        cost: \"28.00\"   # the sandbox's price for sandbox.card\n"
    "  - sku: tencent.video.1m\n"
    "    name: Tencent Video VIP monthly membership\n"
    "    brand: tencent\n"
    "    category: video\n"
    "    tags: [video, monthly]\n"
    "    delivery: card_code\n"
    "    face_value: \"30.00\"\n"
    "    redemption_guide: >-\n"
    "      Open the Tencent Video (腾讯视频) app and sign in with the QQ or "
    "WeChat account\n"
    "      to upgrade, then go to 我的 → 兑换中心, enter the code and confirm. "
    "VIP lasts\n"
    "      31 days from activation. Codes expire if not redeemed by the date "
    "shown.\n"
    "    offers:\n"
    "      - supplier: sandbox\n"
    "        supplier_sku: sandbox.card\n"
    "        cost: \"28.00\"\n"
    "  - sku: netease.music.1m\n"
    "    name: NetEase Cloud Music Black Vinyl VIP monthly\n"
    "    brand: netease\n"
    "    category: music\n"
    "    tags: [music, monthly]\n"
    "    delivery: card_code\n"
    "    face_value: \"15.00\"\n"
    "    redemption_guide: >-\n"
    "      Open NetEase Cloud Music (网易云音乐) and sign in, then go to 我的 "
    "→ 设置 →\n"
    "      兑换码 (or 会员中心 → 兑换), enter the code and confirm. Black "
    "Vinyl VIP\n"
    "      (黑胶VIP) lasts 31 days from activation and stacks on an existing "
    "membership.\n"
    "    # no offer: sold from imported stock only\n"
    "  - sku: meituan.voucher.20\n"
    "    name: Meituan 20 CNY voucher\n"
    "    brand: meituan\n"
    "    category: food\n"
    "    tags: [food, voucher]\n"
    "    delivery: card_code\n"
    "    face_value: \"20.00\"\n"
    "    redemption_guide: >-\n"
    "      Open the Meituan (美团) app, go to 我的 → 红包卡券 → 兑换, and "
    "enter the code.\n"
    "      The 20 CNY voucher is added to the account and applies to one "
    "food-delivery\n"
    "      order; it must be used within 30 days of redemption.\n"
    "    # no offer: sold from imported stock only\n"
    "  - sku: mobile.topup.50\n"
    "    name: Mobile top-up 50 CNY\n"
    "    brand: mobile\n"
    "    category: telecom\n"
    "    tags: [telecom, topup]\n"
    "    delivery: recharge\n"
    "    face_value: \"50.00\"\n"
    "    price: \"50.00\"\n"
    "    redemption_guide: >-\n"
    "      Nothing to redeem: 50 CNY is credited directly to the phone number "
    "given\n"
    "      with the order, usually within 10 minutes. China Mobile, China "
    "Unicom and\n"
    "      China Telecom numbers are supported.\n"
    "    offers:\n"
    "      - supplier: sandbox\n"
    "        supplier_sku: sandbox.recharge\n"
    "        cost: \"49.00\"\n" /* the sandbox's price: no amount discrepancy per order */
    "  - sku: programmer.pack\n"
    "    name: Programmer pack (iQiyi Gold month and a 50 CNY top-up)\n"
    "    brand: pack\n"
    "    category: bundle\n"
    "    tags: [bundle]\n"
    "    delivery: bundle\n"
    "    face_value: \"80.00\"\n"
    "    # one order delivers both (issue 16); each is booked at its own price\n"
    "    components:\n"
    "      - {sku: iqiyi.gold.1m, quantity: 1}\n"
    "      - {sku: mobile.topup.50, quantity: 1}\n";

const char *ph_config_default_yaml(void)
{
    return default_yaml;
}
