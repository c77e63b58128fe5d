/*
 * config.c — the YAML configuration: a declarative schema applied to libyaml's
 * document tree.
 *
 * Every key is declared once, in a field table (name, kind, range, default,
 * offset into the struct), in the manner of nginx directives and Fluent Bit
 * config maps. The same tables drive parsing, defaults, "did you mean" hints
 * and freeing, so a key cannot be parsed and then leaked, and a default cannot
 * be written in a different syntax from the one the file uses: defaults are
 * YAML scalar text, run through the same parser as the file.
 *
 * Loading builds a fresh, zeroed ph_config and fills it; on any error the half
 * built struct is freed with the same table-driven free, so every error path is
 * one `goto fail`. Nothing here keeps state between calls: thread-safe.
 *
 * This file holds the tables, the checks across the document and the loading;
 * the tree walk is in config_parse.c, the lookups and the embedded default in
 * config_lookup.c.
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
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "crypto/code.h"
#include "crypto/crypto.h"
#include "base/log.h"
#include "base/util.h"

/* ---- the schema ------------------------------------------------------------ */

#define STR(T, m, key, fl, d)                                                                      \
    {                                                                                              \
        .name = (key), .kind = K_STR, .flags = (fl), .off = offsetof(T, m), .def = (d)             \
    }
#define IDENT(T, m, key)                                                                           \
    {                                                                                              \
        .name = (key), .kind = K_IDENT, .flags = F_REQUIRED, .off = offsetof(T, m)                 \
    }
/* 4-byte members take ranges inside int32: the value is stored via int32_t. */
#define INT(T, m, key, lo, hi, sc, d)                                                              \
    {                                                                                              \
        .name = (key), .kind = K_INT, .off = offsetof(T, m), .size = MEMBER_SIZE(T, m),            \
        .min = (lo), .max = (hi), .scale = (sc), .def = (d)                                        \
    }
#define BOOL(T, m, key, d)                                                                         \
    {                                                                                              \
        .name = (key), .kind = K_BOOL, .off = offsetof(T, m), .def = (d)                           \
    }
#define MONEY(T, m, key)                                                                           \
    {                                                                                              \
        .name = (key), .kind = K_MONEY, .flags = F_REQUIRED, .off = offsetof(T, m)                 \
    }
#define ENUM(T, m, key, fl, names, vals, d)                                                        \
    {                                                                                              \
        .name = (key), .kind = K_ENUM, .flags = (fl), .off = offsetof(T, m), .choices = (names),   \
        .values = (vals), .def = (d)                                                               \
    }
#define ARRAY(k, T, m, n, key)                                                                     \
    {                                                                                              \
        .name = (key), .kind = (k), .off = offsetof(T, m), .off2 = offsetof(T, n)                  \
    }
#define SECTION(key, tab)                                                                          \
    {                                                                                              \
        .name = (key), .kind = K_SECTION, .sub = (tab), .nsub = NELEM(tab)                         \
    }
#define LIST(T, m, n, key, E, tab, uniq, what)                                                     \
    {                                                                                              \
        .name = (key), .kind = K_LIST, .off = offsetof(T, m), .off2 = offsetof(T, n),              \
        .size = sizeof(E), .sub = (tab), .nsub = NELEM(tab), .unique = (uniq),                     \
        .unique_what = (what)                                                                      \
    }

static const char *const log_names[] = {"debug", "info", "warn", "error", NULL};
static const int log_values[] = {PH_LOG_DEBUG, PH_LOG_INFO, PH_LOG_WARN, PH_LOG_ERROR};
static const char *const log_format_names[] = {"text", "json", NULL};
static const int log_format_values[] = {PH_LOG_FORMAT_TEXT, PH_LOG_FORMAT_JSON};
const char *const cfg_delivery_names[] = {"card_code", "recharge", "bundle", NULL};
const int cfg_delivery_values[] = {PH_DELIVERY_CARD_CODE, PH_DELIVERY_RECHARGE, PH_DELIVERY_BUNDLE};
static const char *const scope_names[] = {"fulfill", "support", "ops", NULL};
static const int scope_values[] = {PH_SCOPE_FULFILL, PH_SCOPE_SUPPORT, PH_SCOPE_OPS};

static const field tls_fields[] = {
    STR(ph_config, tls_cert, "cert", 0, NULL),
    STR(ph_config, tls_key, "key", 0, NULL),
    STR(ph_config, tls_client_ca, "client_ca", 0, NULL),
};
static const field listen_fields[] = {
    STR(ph_config, listen_address, "address", 0, "127.0.0.1"),
    INT(ph_config, port, "port", 0, 65535, 1, "8080"),
    STR(ph_config, port_file, "port_file", 0, NULL),
    SECTION("tls", tls_fields),
};
static const field log_fields[] = {
    ENUM(ph_config, log_level, "level", 0, log_names, log_values, "info"),
    ENUM(ph_config, log_format, "format", 0, log_format_names, log_format_values, "text"),
    STR(ph_config, log_file, "file", 0, NULL),
};
#define AF(m) offsetof(ph_config, auth_failures) + offsetof(ph_auth_failures_conf, m)
#define AF_INT(m, key, lo, hi, d)                                                                  \
    {                                                                                              \
        .name = (key), .kind = K_INT, .off = AF(m), .size = MEMBER_SIZE(ph_auth_failures_conf, m), \
        .min = (lo), .max = (hi), .scale = 1, .def = (d)                                           \
    }
static const field auth_failures_fields[] = {
    AF_INT(window_s, "window_s", 1, 86400, "60"),
    AF_INT(slow_after, "slow_after", 0, 10000, "5"),
    AF_INT(delay_ms, "delay_ms", 1, 60000, "250"),
    AF_INT(delay_max_ms, "delay_max_ms", 1, 60000, "2000"),
    AF_INT(block_after, "block_after", 1, 10000, "20"),
    AF_INT(block_s, "block_s", 1, 604800, "300"),
    {.name = "exempt",
     .kind = K_TAGS,
     .flags = F_TEXT_ITEMS,
     .off = AF(exempt),
     .off2 = AF(nexempt)},
};
#undef AF_INT
#undef AF
static const field http_fields[] = {
    INT(ph_config, http_threads, "threads", 1, 256, 1, "4"),
    INT(ph_config, http_max_connections, "max_connections", 16, 1000000, 1, "10000"),
    INT(ph_config, http_max_per_address, "max_connections_per_address", 1, 1000000, 1, "1000"),
    INT(ph_config, http_reserved_connections, "reserved_connections", 0, 100000, 1, "64"),
    INT(ph_config, http_header_timeout_s, "header_timeout_s", 1, 3600, 1, "10"),
    INT(ph_config, http_request_timeout_s, "request_timeout_s", 1, 86400, 1, "120"),
    BOOL(ph_config, http_allow_plain_tokens, "allow_plain_tokens", "false"),
    SECTION("auth_failures", auth_failures_fields),
};
static const field limits_fields[] = {
    INT(ph_config, max_order_quantity, "max_order_quantity", 1, 10000000, 1, "100000"),
    INT(ph_config, max_body_bytes, "max_body_mb", 1, 4096, MIB, "64"),
    INT(ph_config, max_import_codes, "max_import_codes", 1, 100000000, 1, "1000000"),
    INT(ph_config, max_order_wait_s, "max_order_wait_s", 0, 3600, 1, "30"),
};
static const char *const metrics_access_names[] = {"loopback", "ops", "public", NULL};
static const int metrics_access_values[] = {PH_METRICS_LOOPBACK, PH_METRICS_OPS, PH_METRICS_PUBLIC};
static const field metrics_fields[] = {
    ENUM(ph_config, metrics_access, "access", 0, metrics_access_names, metrics_access_values,
         "loopback"),
};
static const field webhook_fields[] = {
    IDENT(ph_webhook_conf, id, "id"),
    STR(ph_webhook_conf, url, "url", F_REQUIRED, NULL),
    {.name = "secrets",
     .kind = K_TAGS,
     .flags = F_TEXT_ITEMS,
     .off = offsetof(ph_webhook_conf, secrets),
     .off2 = offsetof(ph_webhook_conf, nsecrets)},
    {.name = "events",
     .kind = K_TAGS,
     .flags = F_TEXT_ITEMS,
     .off = offsetof(ph_webhook_conf, events),
     .off2 = offsetof(ph_webhook_conf, nevents)},
    BOOL(ph_webhook_conf, enabled, "enabled", "true"),
};
static const field webhooks_fields[] = {
    INT(ph_config, webhook_retry_for_s, "retry_for_s", 1, 31536000, 1, "259200"),
    INT(ph_config, webhook_timeout_ms, "timeout_ms", 1, 600000, 1, "5000"),
    INT(ph_config, webhook_max_in_flight, "max_in_flight", 1, 100000, 1, "32"),
    INT(ph_config, webhook_retry_base_ms, "retry_base_ms", 1, 86400000, 1, "1000"),
    INT(ph_config, webhook_retry_max_ms, "retry_max_ms", 1, 604800000, 1, "3600000"),
    INT(ph_config, webhook_peak_rate, "peak_rate", 0, 1000000, 1, "1000"),
};
static const field client_fields[] = {
    IDENT(ph_client_conf, name, "name"),
    {.name = "token_sha256",
     .kind = K_SHA256,
     .flags = F_REQUIRED,
     .off = offsetof(ph_client_conf, token_hash)},
    {.name = "scopes",
     .kind = K_SCOPES,
     .flags = F_REQUIRED,
     .off = offsetof(ph_client_conf, scopes),
     .choices = scope_names,
     .values = scope_values},
    BOOL(ph_client_conf, loopback_only, "loopback_only", "false"),
    {.name = "cert_sha256", .kind = K_SHA256, .off = offsetof(ph_client_conf, cert_sha256)},
    LIST(ph_client_conf, webhooks, nwebhooks, "webhooks", ph_webhook_conf, webhook_fields, "id",
         "webhook id"),
};
static const char *const amount_unit_names[] = {"yuan", "fen", NULL};
static const int amount_unit_values[] = {PH_STMT_YUAN, PH_STMT_FEN};
static const char *const time_format_names[] = {"rfc3339", "local", "unix_s", "unix_ms", NULL};
static const int time_format_values[] = {PH_STMT_RFC3339, PH_STMT_LOCAL, PH_STMT_UNIX_S,
                                         PH_STMT_UNIX_MS};
#define ST(m) offsetof(ph_supplier_conf, statement) + offsetof(ph_statement_conf, m)
static const field statement_column_fields[] = {
    {.name = "ref", .kind = K_STR, .off = ST(ref)},
    {.name = "supplier_order_id", .kind = K_STR, .off = ST(supplier_order_id)},
    {.name = "amount", .kind = K_STR, .off = ST(amount)},
    {.name = "time", .kind = K_STR, .off = ST(time)},
    {.name = "status", .kind = K_STR, .off = ST(status)},
};
static const field statement_fields[] = {
    SECTION("columns", statement_column_fields),
    {.name = "success_values",
     .kind = K_TAGS,
     .off = ST(success_values),
     .off2 = ST(nsuccess_values)},
    {.name = "amount_unit",
     .kind = K_ENUM,
     .off = ST(amount_unit),
     .choices = amount_unit_names,
     .values = amount_unit_values,
     .def = "yuan"},
    {.name = "time_format",
     .kind = K_ENUM,
     .off = ST(time_format),
     .choices = time_format_names,
     .values = time_format_values,
     .def = "rfc3339"},
    {.name = "utc_offset", .kind = K_UTCOFF, .off = ST(utc_offset_min), .def = "+08:00"},
};
#undef ST
static const field sync_fields[] = {
    INT(ph_supplier_conf, sync_catalog_every_s, "catalog_every_s", 0, 31536000, 1, "0"),
    INT(ph_supplier_conf, sync_stock_every_s, "stock_every_s", 0, 31536000, 1, "0"),
};
static const field supplier_fields[] = {
    IDENT(ph_supplier_conf, id, "id"),
    IDENT(ph_supplier_conf, plugin, "plugin"),
    BOOL(ph_supplier_conf, enabled, "enabled", "true"),
    INT(ph_supplier_conf, priority, "priority", -1000000, 1000000, 1, "0"),
    BOOL(ph_supplier_conf, required, "required", "false"),
    ARRAY(K_KV, ph_supplier_conf, config, nconfig, "config"),
    INT(ph_supplier_conf, max_in_flight, "max_in_flight", 1, 100000, 1, "256"),
    INT(ph_supplier_conf, connect_timeout_ms, "connect_timeout_ms", 1, 600000, 1, "3000"),
    INT(ph_supplier_conf, timeout_ms, "timeout_ms", 1, 3600000, 1, "10000"),
    BOOL(ph_supplier_conf, tls_verify, "tls_verify", "true"),
    INT(ph_supplier_conf, breaker_failures, "breaker_failures", 1, 1000000, 1, "5"),
    INT(ph_supplier_conf, breaker_open_ms, "breaker_open_ms", 1, 86400000, 1, "10000"),
    INT(ph_supplier_conf, auth_retry_ms, "auth_retry_ms", 1, 86400000, 1, "30000"),
    INT(ph_supplier_conf, auth_retry_max_ms, "auth_retry_max_ms", 1, 86400000, 1, "600000"),
    INT(ph_supplier_conf, query_max_delay_ms, "query_max_delay_ms", 1, 3600000, 1, "30000"),
    INT(ph_supplier_conf, processing_window_s, "processing_window_s", 0, 604800, 1, "0"),
    INT(ph_supplier_conf, stuck_after_s, "stuck_after_s", 1, 2592000, 1, "3600"),
    INT(ph_supplier_conf, stuck_query_max_delay_s, "stuck_query_max_delay_s", 1, 86400, 1, "3600"),
    SECTION("statement", statement_fields),
    {.name = "amount_tolerance",
     .kind = K_MONEY,
     .off = offsetof(ph_supplier_conf, amount_tolerance),
     .def = "0"},
    INT(ph_supplier_conf, late_check_s, "late_check_s", 0, 2592000, 1, "86400"),
    SECTION("sync", sync_fields),
    {.name = "balance_below", .kind = K_MONEY, .off = offsetof(ph_supplier_conf, balance_below)},
    INT(ph_supplier_conf, balance_every_s, "balance_every_s", 1, 86400, 1, NULL),
};
static const field offer_fields[] = {
    IDENT(ph_offer_conf, supplier, "supplier"),
    STR(ph_offer_conf, supplier_sku, "supplier_sku", F_REQUIRED, NULL),
    MONEY(ph_offer_conf, cost, "cost"),
    {.name = "max_cost", .kind = K_MONEY, .off = offsetof(ph_offer_conf, max_cost)},
};
static const field price_fields[] = {
    IDENT(ph_price_conf, client, "client"),
    MONEY(ph_price_conf, price, "price"),
};
static const field low_stock_fields[] = {
    INT(ph_product_conf, low_below, "below", 1, 1000000000, 1, NULL),
    INT(ph_product_conf, low_margin, "margin", 1, 1000000000, 1, NULL),
};
#define RP(m) offsetof(ph_product_conf, replenish) + offsetof(ph_replenish_conf, m)
static const field replenish_fields[] = {
    {.name = "below",
     .kind = K_INT,
     .flags = F_REQUIRED,
     .off = RP(below),
     .size = MEMBER_SIZE(ph_replenish_conf, below),
     .min = 1,
     .max = 10000000,
     .scale = 1},
    {.name = "to",
     .kind = K_INT,
     .flags = F_REQUIRED,
     .off = RP(to),
     .size = MEMBER_SIZE(ph_replenish_conf, to),
     .min = 1,
     .max = 10000000,
     .scale = 1},
    {.name = "suppliers",
     .kind = K_TAGS,
     .flags = F_REQUIRED,
     .off = RP(suppliers),
     .off2 = RP(nsuppliers)},
    {.name = "max_unit_cost", .kind = K_MONEY, .flags = F_REQUIRED, .off = RP(max_unit_cost)},
    {.name = "max_per_day", .kind = K_MONEY, .flags = F_REQUIRED, .off = RP(max_per_day)},
};
#undef RP
static const field component_fields[] = {
    IDENT(ph_component_conf, sku, "sku"),
    INT(ph_component_conf, quantity, "quantity", 1, PH_BUNDLE_QUANTITY_MAX, 1, "1"),
};
static const field product_fields[] = {
    IDENT(ph_product_conf, sku, "sku"),
    STR(ph_product_conf, name, "name", F_REQUIRED, NULL),
    IDENT(ph_product_conf, brand, "brand"),
    IDENT(ph_product_conf, category, "category"),
    ARRAY(K_TAGS, ph_product_conf, tags, ntags, "tags"),
    ENUM(ph_product_conf, delivery, "delivery", F_REQUIRED, cfg_delivery_names, cfg_delivery_values,
         NULL),
    MONEY(ph_product_conf, face_value, "face_value"),
    STR(ph_product_conf, redemption_guide, "redemption_guide", F_EMPTY_OK, ""),
    {.name = "code_lookalikes",
     .kind = K_RULE,
     .off = offsetof(ph_product_conf, code_lookalikes),
     .def = ""},
    BOOL(ph_product_conf, listed, "listed", "true"),
    LIST(ph_product_conf, offers, noffers, "offers", ph_offer_conf, offer_fields, "supplier",
         "offer from supplier"),
    {.name = "price", .kind = K_MONEY, .off = offsetof(ph_product_conf, price)},
    LIST(ph_product_conf, prices, nprices, "prices", ph_price_conf, price_fields, "client",
         "price for client"),
    INT(ph_product_conf, min_validity_days, "min_validity_days", 0,
        3650 /* PH_MIN_VALIDITY_DAYS_MAX */, 1, "0"),
    SECTION("low_stock", low_stock_fields),
    SECTION("replenish", replenish_fields),
    LIST(ph_product_conf, components, ncomponents, "components", ph_component_conf,
         component_fields, "sku", "component sku"),
};
static const field reports_fields[] = {
    {.name = "utc_offset",
     .kind = K_UTCOFF,
     .off = offsetof(ph_config, report_utc_offset_min),
     .def = "+08:00"},
};
static const field expiry_fields[] = {
    INT(ph_config, expiry_every_s, "every_s", 1, 86400, 1, "1"),
};
static const char *const review_default_names[] = {"block", "release", NULL};
static const int review_default_values[] = {PH_REVIEW_BLOCK, PH_REVIEW_RELEASE};
static const field risk_fields[] = {
    INT(ph_config, risk_review_timeout_s, "review_timeout_s", 1, 2592000, 1, "3600"),
    ENUM(ph_config, risk_review_default, "review_default", 0, review_default_names,
         review_default_values, "block"),
    INT(ph_config, risk_review_check_s, "review_check_s", 1, 3600, 1, "5"),
};
static const field grants_fields[] = {
    INT(ph_config, grant_min_ttl_s, "min_ttl_s", 1, 86400, 1, "60"),
    INT(ph_config, grant_expire_every_s, "expire_every_s", 1, 3600, 1, "5"),
};
static const field redemption_fields[] = {
    INT(ph_config, redemption_wait_ms, "wait_ms", 1, 60000, 1, "1500"),
};
static const field replication_fields[] = {
    BOOL(ph_config, repl_enabled, "enabled", "false"),
    {.name = "node_id", .kind = K_IDENT, .off = offsetof(ph_config, repl_node_id)},
    {.name = "urls",
     .kind = K_TAGS,
     .flags = F_TEXT_ITEMS,
     .off = offsetof(ph_config, repl_urls),
     .off2 = offsetof(ph_config, nrepl_urls)},
    STR(ph_config, repl_stream, "stream", 0, "PERKHUB"),
    STR(ph_config, repl_subject, "subject", 0, "perkhub.batches"),
    STR(ph_config, repl_lease_bucket, "lease_bucket", 0, "perkhub_lease"),
    INT(ph_config, repl_lease_ttl_ms, "lease_ttl_ms", 500, 600000, 1, "3000"),
    INT(ph_config, repl_replicas, "replicas", 1, 5, 1, "3"),
    INT(ph_config, repl_ack_wait_ms, "ack_wait_ms", 50, 60000, 1, "2000"),
    STR(ph_config, repl_advertise_url, "advertise_url", 0, NULL),
    INT(ph_config, repl_hold_ttls, "hold_ttls", 2, 100000, 1, "20"),
    INT(ph_config, repl_trim_margin, "trim_margin", 0, 100000000, 1, "1000"),
    INT(ph_config, repl_max_staleness_ms, "max_staleness_ms", 0, 86400000, 1, "30000"),
};
static const field snapshots_fields[] = {
    STR(ph_config, snap_dir, "dir", 0, NULL),
    INT(ph_config, snap_every_s, "every_s", 0, 2592000, 1, "3600"),
    INT(ph_config, snap_keep, "keep", 1, 1000, 1, "3"),
};
static const field top_fields[] = {
    SECTION("listen", listen_fields),
    STR(ph_config, data_dir, "data_dir", F_REQUIRED, NULL),
    INT(ph_config, map_size, "map_size_mb", 1, 16777216, MIB, "1024"),
    STR(ph_config, master_key_file, "master_key_file", F_REQUIRED, NULL),
    BOOL(ph_config, master_key_create, "master_key_create", "false"),
    STR(ph_config, plugin_dir, "plugin_dir", 0, "build/plugins"),
    STR(ph_config, public_url, "public_url", 0, NULL),
    STR(ph_config, pid_file, "pid_file", 0, NULL),
    SECTION("log", log_fields),
    SECTION("http", http_fields),
    SECTION("limits", limits_fields),
    SECTION("metrics", metrics_fields),
    SECTION("reports", reports_fields),
    SECTION("expiry", expiry_fields),
    INT(ph_config, replenish_check_s, "replenish_check_s", 1, 86400, 1, "5"),
    SECTION("webhooks", webhooks_fields),
    LIST(ph_config, clients, nclients, "clients", ph_client_conf, client_fields, "name",
         "client name"),
    LIST(ph_config, suppliers, nsuppliers, "suppliers", ph_supplier_conf, supplier_fields, "id",
         "supplier id"),
    LIST(ph_config, products, nproducts, "products", ph_product_conf, product_fields, "sku", "sku"),
    SECTION("redemption", redemption_fields),
    SECTION("risk", risk_fields),
    SECTION("grants", grants_fields),
    SECTION("replication", replication_fields),
    SECTION("snapshots", snapshots_fields),
};

_Static_assert(NELEM(top_fields) <= MAX_FIELDS, "raise MAX_FIELDS");
_Static_assert(NELEM(product_fields) <= MAX_FIELDS, "raise MAX_FIELDS");
_Static_assert(NELEM(supplier_fields) <= MAX_FIELDS, "raise MAX_FIELDS");

/* ---- checks across the document -------------------------------------------- */

/* An offer naming a supplier that is not configured, at its position, with a
 * hint when the name is a likely typo of a configured one. */
static int unknown_supplier(ctx *c, const ph_config *cfg, const yaml_node_t *root, size_t i,
                            size_t j)
{
    const char *id = cfg->products[i].offers[j].supplier, *best = NULL;
    const yaml_node_t *pn = cfg_seq_item(c, cfg_map_find(c, root, "products"), i);
    const yaml_node_t *sn =
        cfg_map_find(c, cfg_seq_item(c, cfg_map_find(c, pn, "offers"), j), "supplier");
    size_t bestd = SIZE_MAX;
    char hint[96] = "";
    for (size_t k = 0; k < cfg->nsuppliers; k++)
        cfg_hint_consider(id, cfg->suppliers[k].id, &best, &bestd);
    if (!cfg->nsuppliers)
        snprintf(hint, sizeof hint, " (no suppliers are configured)");
    else if (best)
        snprintf(hint, sizeof hint, ", did you mean \"%s\"?", best);
    cfg_path_push(c, "products[%zu].offers[%zu].supplier", i, j);
    return cfg_fail(c, sn->start_mark, "expected the id of a configured supplier, got \"%s\"%s", id,
                    hint);
}

/* A per-client price must name a configured client; `price_set` says
 * whether the product has a price at all (absent is not 0). */
static int check_prices(ctx *c, ph_config *cfg, const yaml_node_t *root)
{
    for (size_t i = 0; i < cfg->nproducts; i++) {
        ph_product_conf *p = &cfg->products[i];
        const yaml_node_t *pn = cfg_seq_item(c, cfg_map_find(c, root, "products"), i);
        const yaml_node_t *price = cfg_map_find(c, pn, "price");
        p->price_set = price && !cfg_node_null(price); /* price: ~ is no price, not 0 */
        for (size_t j = 0; j < p->noffers; j++) {      /* max_cost: 0 is "none", so not written */
            const yaml_node_t *mn =
                cfg_map_find(c, cfg_seq_item(c, cfg_map_find(c, pn, "offers"), j), "max_cost");
            if (mn && !cfg_node_null(mn) && p->offers[j].max_cost == 0) {
                cfg_path_push(c, "products[%zu].offers[%zu].max_cost", i, j);
                return cfg_fail(c, mn->start_mark,
                                "expected an amount above 0 (the most the supplier's cost may be "
                                "for an order to go to this offer)");
            }
        }
        for (size_t j = 0; j < p->nprices; j++) {
            const char *name = p->prices[j].client, *best = NULL;
            int found = 0;
            size_t bestd = SIZE_MAX;
            for (size_t k = 0; k < cfg->nclients; k++) {
                found |= !strcmp(cfg->clients[k].name, name);
                cfg_hint_consider(name, cfg->clients[k].name, &best, &bestd);
            }
            if (found)
                continue;
            const yaml_node_t *cn =
                cfg_map_find(c, cfg_seq_item(c, cfg_map_find(c, pn, "prices"), j), "client");
            char hint[96] = "";
            if (best)
                snprintf(hint, sizeof hint, ", did you mean \"%s\"?", best);
            cfg_path_push(c, "products[%zu].prices[%zu].client", i, j);
            return cfg_fail(c, cn->start_mark,
                            "expected the name of a configured client, got "
                            "\"%s\"%s",
                            name, hint);
        }
    }
    return PH_OK;
}

/* products[].components (issue 16): a bundle has 1..PH_BUNDLE_COMPONENTS_MAX
 * of them, each naming another product of this file that is not a bundle; a
 * bundle has no offers (its components have theirs); any other product has
 * no components. Errors name products[i].components[j].sku. */
static int check_bundles(ctx *c, const ph_config *cfg, const yaml_node_t *root)
{
    for (size_t i = 0; i < cfg->nproducts; i++) {
        const ph_product_conf *p = &cfg->products[i];
        const yaml_node_t *pn = cfg_seq_item(c, cfg_map_find(c, root, "products"), i);
        const yaml_node_t *cl = cfg_map_find(c, pn, "components");
        if (p->delivery != PH_DELIVERY_BUNDLE) {
            if (!cl)
                continue;
            cfg_path_push(c, "products[%zu].components", i);
            return cfg_fail(c, cl->start_mark,
                            "only a product with delivery: bundle has components");
        }
        if (p->ncomponents < 1 || p->ncomponents > PH_BUNDLE_COMPONENTS_MAX) {
            cfg_path_push(c, "products[%zu].components", i);
            return cfg_fail(c, (cl ? cl : pn)->start_mark,
                            "expected 1..%d components for a bundle (each {sku, quantity})",
                            PH_BUNDLE_COMPONENTS_MAX);
        }
        if (p->noffers) {
            const yaml_node_t *on = cfg_map_find(c, pn, "offers");
            cfg_path_push(c, "products[%zu].offers", i);
            return cfg_fail(c, (on ? on : pn)->start_mark,
                            "a bundle has no offers of its own: its components are bought");
        }
        for (size_t j = 0; j < p->ncomponents; j++) {
            const char *sku = p->components[j].sku;
            const ph_product_conf *q = ph_config_product(cfg, sku);
            if (q && q->delivery == PH_DELIVERY_RECHARGE && p->components[j].quantity != 1) {
                const yaml_node_t *qn = cfg_map_find(c, cfg_seq_item(c, cl, j), "quantity");
                cfg_path_push(c, "products[%zu].components[%zu].quantity", i, j);
                return cfg_fail(c, qn->start_mark, "expected 1: a recharge is one unit");
            }
            if (q && q->delivery != PH_DELIVERY_BUNDLE)
                continue;
            const yaml_node_t *sn = cfg_map_find(c, cfg_seq_item(c, cl, j), "sku");
            cfg_path_push(c, "products[%zu].components[%zu].sku", i, j);
            return cfg_fail(c, sn->start_mark,
                            q ? "expected a product that is not a bundle, got bundle \"%s\""
                              : "expected the sku of a configured product, got \"%s\"",
                            sku);
        }
    }
    return PH_OK;
}

static int check_offer_suppliers(ctx *c, const ph_config *cfg, const yaml_node_t *root)
{
    for (size_t i = 0; i < cfg->nproducts; i++)
        for (size_t j = 0; j < cfg->products[i].noffers; j++)
            if (!ph_config_supplier(cfg, cfg->products[i].offers[j].supplier))
                return unknown_supplier(c, cfg, root, i, j);
    return PH_OK;
}

int ph_statement_configured(const ph_statement_conf *st)
{
    return st->ref || st->supplier_order_id || st->amount || st->time || st->status ||
           st->nsuccess_values;
}

/* A statement mapping must say where a line's amount is and how it names an
 * order; a status column needs the values that mean "charged". */
static int check_statements(ctx *c, const ph_config *cfg, const yaml_node_t *root)
{
    for (size_t i = 0; i < cfg->nsuppliers; i++) {
        const ph_statement_conf *st = &cfg->suppliers[i].statement;
        if (!ph_statement_configured(st))
            continue;
        const char *what = NULL;
        if (!st->amount)
            what = "expected columns.amount: the column of what the supplier charged";
        else if (!st->ref && !st->supplier_order_id)
            what = "expected columns.ref or columns.supplier_order_id: how a line names an order";
        else if (st->status && !st->nsuccess_values)
            what = "expected success_values with columns.status: the status values that mean "
                   "charged";
        else if (!st->status && st->nsuccess_values)
            what = "expected columns.status with success_values";
        if (!what)
            continue;
        const yaml_node_t *sn = cfg_seq_item(c, cfg_map_find(c, root, "suppliers"), i);
        const yaml_node_t *tn = cfg_map_find(c, sn, "statement");
        cfg_path_push(c, "suppliers[%zu].statement", i);
        return cfg_fail(c, (tn ? tn : sn)->start_mark, "%s", what);
    }
    return PH_OK;
}

static ph_conf_mark mark_of(const yaml_node_t *n)
{
    return (ph_conf_mark){(unsigned)n->start_mark.line + 1, (unsigned)n->start_mark.column + 1};
}

/* One replenish rule (supply/replenish.h): what the file alone can tell.
 * Whether each supplier's plugin takes card orders is known only once it is
 * loaded: --check-config checks that (ph_replenish_check_plugins). */
static int check_replenish_rule(ctx *c, ph_config *cfg, size_t i, const yaml_node_t *rn)
{
    ph_product_conf *p = &cfg->products[i];
    ph_replenish_conf *r = &p->replenish;
    r->set = 1;
    r->mark = mark_of(rn);
    if (p->delivery != PH_DELIVERY_CARD_CODE) {
        cfg_path_push(c, "products[%zu].replenish", i);
        return cfg_fail(c, rn->start_mark,
                        "a replenish rule buys card codes into stock: product %s is delivered "
                        "by %s",
                        p->sku, ph_delivery_name(p->delivery));
    }
    if (r->to <= r->below) {
        cfg_path_push(c, "products[%zu].replenish.to", i);
        return cfg_fail(c, cfg_map_find(c, rn, "to")->start_mark,
                        "expected a number above below (%u), got %u", r->below, r->to);
    }
    const yaml_node_t *sn = cfg_map_find(c, rn, "suppliers");
    if (!r->nsuppliers || r->nsuppliers > PH_REPLENISH_SUPPLIERS_MAX) {
        cfg_path_push(c, "products[%zu].replenish.suppliers", i);
        return cfg_fail(c, sn->start_mark, "expected 1 to %d supplier ids, got %zu",
                        PH_REPLENISH_SUPPLIERS_MAX, r->nsuppliers);
    }
    for (size_t j = 0; j < r->nsuppliers; j++) {
        const char *id = r->suppliers[j];
        const yaml_node_t *en = cfg_seq_item(c, sn, j);
        r->supplier_marks[j] = mark_of(en ? en : sn);
        int offered = 0;
        for (size_t k = 0; k < p->noffers; k++)
            offered |= strcmp(p->offers[k].supplier, id) == 0;
        const char *why = !ph_config_supplier(cfg, id) ? "is not a configured supplier"
                          : !offered ? "has no offer of this product (products[].offers)"
                                     : NULL;
        for (size_t k = 0; k < j && !why; k++)
            if (strcmp(r->suppliers[k], id) == 0)
                why = "is named twice";
        if (!why)
            continue;
        cfg_path_push(c, "products[%zu].replenish.suppliers[%zu]", i, j);
        return cfg_fail(c, (en ? en : sn)->start_mark, "\"%s\" %s", id, why);
    }
    return PH_OK;
}

static int check_replenish(ctx *c, ph_config *cfg, const yaml_node_t *root)
{
    for (size_t i = 0; i < cfg->nproducts; i++) {
        const yaml_node_t *pn = cfg_seq_item(c, cfg_map_find(c, root, "products"), i);
        const yaml_node_t *rn = pn ? cfg_map_find(c, pn, "replenish") : NULL;
        int rc = rn && !cfg_node_null(rn) ? check_replenish_rule(c, cfg, i, rn) : PH_OK;
        if (rc)
            return rc;
    }
    return PH_OK;
}

/* Remembers where each supplier, its plugin key and each of its config keys
 * are, for the problems only starting it finds (suppliers.h). parse_kv fills
 * kv[i] from the mapping's i-th pair, so pairs and entries line up. */
static int mark_suppliers(ctx *c, ph_config *cfg, const yaml_node_t *root)
{
    for (size_t i = 0; i < cfg->nsuppliers; i++) {
        ph_supplier_conf *sc = &cfg->suppliers[i];
        const yaml_node_t *sn = cfg_seq_item(c, cfg_map_find(c, root, "suppliers"), i);
        if (!sn)
            continue;
        const yaml_node_t *pn = cfg_map_find(c, sn, "plugin"), *kn = cfg_map_find(c, sn, "config");
        sc->mark = mark_of(sn);
        const yaml_node_t *yn = cfg_map_find(c, sn, "sync");
        const yaml_node_t *cn = cfg_map_find(c, yn, "catalog_every_s"),
                          *tn = cfg_map_find(c, yn, "stock_every_s");
        if (cn)
            sc->sync_catalog_mark = mark_of(cn);
        if (tn)
            sc->sync_stock_mark = mark_of(tn);
        sc->plugin_mark = pn ? mark_of(pn) : sc->mark;
        sc->config_mark = kn && kn->type == YAML_MAPPING_NODE ? mark_of(kn) : sc->mark;
        if (!kn || kn->type != YAML_MAPPING_NODE)
            continue;
        yaml_node_pair_t *pairs = kn->data.mapping.pairs.start;
        for (size_t j = 0; j < sc->nconfig && pairs + j < kn->data.mapping.pairs.top; j++) {
            const yaml_node_t *k = yaml_document_get_node(c->doc, pairs[j].key);
            if (k)
                sc->config[j].mark = mark_of(k);
        }
    }
    return PH_OK;
}

static ph_conf_mark mark_of(const yaml_node_t *n);

/* Alert rules (docs/config.md, "Alerts"): low_stock needs its `below`, the
 * margin defaults to max(1, below / 10); balance_below starts a balance job
 * every balance_every_s (default 300), which alone needs balance_below. */
static int check_alert_rules(ctx *c, ph_config *cfg, const yaml_node_t *root)
{
    for (size_t i = 0; i < cfg->nproducts; i++) {
        ph_product_conf *p = &cfg->products[i];
        const yaml_node_t *pn = cfg_seq_item(c, cfg_map_find(c, root, "products"), i);
        const yaml_node_t *ls = cfg_map_find(c, pn, "low_stock");
        if (ls && !cfg_node_null(ls) && !p->low_below) {
            cfg_path_push(c, "products[%zu].low_stock", i);
            return cfg_fail(c, ls->start_mark,
                            "below: required (the stock under which "
                            "stock.low fires)");
        }
        if (p->low_below && !p->low_margin)
            p->low_margin = p->low_below / 10 > 1 ? p->low_below / 10 : 1;
    }
    for (size_t i = 0; i < cfg->nsuppliers; i++) {
        ph_supplier_conf *sc = &cfg->suppliers[i];
        const yaml_node_t *sn = cfg_seq_item(c, cfg_map_find(c, root, "suppliers"), i);
        const yaml_node_t *bn = cfg_map_find(c, sn, "balance_below"),
                          *en = cfg_map_find(c, sn, "balance_every_s");
        sc->balance_below_set = bn && !cfg_node_null(bn);
        if (sc->balance_below_set && sc->balance_below < 0) {
            cfg_path_push(c, "suppliers[%zu].balance_below", i);
            return cfg_fail(c, bn->start_mark, "expected an amount of at least 0");
        }
        if (en && !cfg_node_null(en) && !sc->balance_below_set) {
            cfg_path_push(c, "suppliers[%zu].balance_every_s", i);
            return cfg_fail(c, en->start_mark, "needs balance_below (the balance job judges it)");
        }
        if (sc->balance_below_set && !sc->balance_every_s)
            sc->balance_every_s = 300;
        if (bn)
            sc->balance_mark = mark_of(bn);
    }
    return PH_OK;
}

/* Two clients with one token would make authentication ambiguous. */
static int check_tokens(ctx *c, const ph_config *cfg, const yaml_node_t *root)
{
    for (size_t i = 1; i < cfg->nclients; i++) {
        for (size_t j = 0; j < i; j++) {
            if (memcmp(cfg->clients[i].token_hash, cfg->clients[j].token_hash, 32))
                continue;
            const yaml_node_t *cn = cfg_seq_item(c, cfg_map_find(c, root, "clients"), i);
            const yaml_node_t *tn = cfg_map_find(c, cn, "token_sha256");
            cfg_path_push(c, "clients[%zu].token_sha256", i);
            return cfg_fail(c, tn->start_mark,
                            "expected a token of its own, got the same token as clients[%zu] (%s)",
                            j, cfg->clients[j].name);
        }
    }
    return PH_OK;
}

/* clients[].webhooks: an http(s) URL with a host, 1 or 2 secrets, 1 ..
 * PH_WEBHOOK_EVENTS_MAX event patterns, an id no other endpoint has (the
 * store keys its state by id); and where each value is, for what only the
 * delivery module checks (notify.h, ph_notify_check: event types, secrets). */
static int check_webhooks(ctx *c, ph_config *cfg, const yaml_node_t *root)
{
    const yaml_node_t *cl = cfg_map_find(c, root, "clients");
    for (size_t i = 0; i < cfg->nclients; i++) {
        const yaml_node_t *cn = cfg_seq_item(c, cl, i);
        const yaml_node_t *wl = cfg_map_find(c, cn, "webhooks");
        for (size_t j = 0; j < cfg->clients[i].nwebhooks; j++) {
            ph_webhook_conf *w = &cfg->clients[i].webhooks[j];
            const yaml_node_t *wn = cfg_seq_item(c, wl, j);
            const yaml_node_t *un = cfg_map_find(c, wn, "url");
            const yaml_node_t *sn = cfg_map_find(c, wn, "secrets");
            const yaml_node_t *en = cfg_map_find(c, wn, "events");
            w->mark = mark_of(wn);
            w->url_mark = un ? mark_of(un) : w->mark;
            for (size_t k = 0; k < w->nsecrets && k < 2; k++)
                w->secret_mark[k] = mark_of(cfg_seq_item(c, sn, k));
            for (size_t k = 0; k < w->nevents && k < PH_WEBHOOK_EVENTS_MAX; k++)
                w->event_mark[k] = mark_of(cfg_seq_item(c, en, k));
            const char *u = w->url, *host = NULL;
            if (!strncasecmp(u, "http://", 7))
                host = u + 7;
            else if (!strncasecmp(u, "https://", 8))
                host = u + 8;
            if (!host || !*host || *host == '/' || strpbrk(u, " \t\r\n")) {
                /* the URL itself is not repeated: it may carry credentials */
                char scheme[16] = "";
                size_t sl = strcspn(u, ":/");
                if (u[sl] == ':' && sl > 0 && sl < sizeof scheme)
                    snprintf(scheme, sizeof scheme, "%.*s", (int)sl, u);
                for (size_t q = 0; scheme[q]; q++)
                    if (!((scheme[q] >= 'a' && scheme[q] <= 'z') ||
                          (scheme[q] >= 'A' && scheme[q] <= 'Z')))
                        scheme[0] = 0;
                cfg_path_push(c, "clients[%zu].webhooks[%zu].url", i, j);
                return cfg_fail(c, un->start_mark,
                                "expected an http:// or https:// URL with a host, got %s%s%s",
                                host        ? "no host"
                                : scheme[0] ? "scheme \""
                                            : "no scheme",
                                !host && scheme[0] ? scheme : "", !host && scheme[0] ? "\"" : "");
            }
            if (w->nsecrets < 1 || w->nsecrets > 2) {
                cfg_path_push(c, "clients[%zu].webhooks[%zu].secrets", i, j);
                return cfg_fail(c, (sn ? sn : wn)->start_mark,
                                "expected 1 or 2 secret references (two while rotating)");
            }
            if (w->nevents < 1 || w->nevents > PH_WEBHOOK_EVENTS_MAX) {
                cfg_path_push(c, "clients[%zu].webhooks[%zu].events", i, j);
                return cfg_fail(c, (en ? en : wn)->start_mark,
                                "expected 1..%d event types (\"order.*\" for every order event)",
                                PH_WEBHOOK_EVENTS_MAX);
            }
            for (size_t a = 0; a <= i; a++)
                for (size_t b = 0; b < (a == i ? j : cfg->clients[a].nwebhooks); b++) {
                    if (strcmp(cfg->clients[a].webhooks[b].id, w->id))
                        continue;
                    const yaml_node_t *in = cfg_map_find(c, wn, "id");
                    cfg_path_push(c, "clients[%zu].webhooks[%zu].id", i, j);
                    return cfg_fail(c, in->start_mark,
                                    "duplicate webhook id \"%s\", first at %u:%u "
                                    "(clients[%zu].webhooks[%zu])",
                                    w->id, cfg->clients[a].webhooks[b].mark.line,
                                    cfg->clients[a].webhooks[b].mark.col, a, b);
                }
        }
    }
    return PH_OK;
}

/* The headroom is part of the connection budget: with reserved_connections
 * not below max_connections nothing but probes and ops would ever be served. */
static int check_http(ctx *c, const ph_config *cfg, const yaml_node_t *root)
{
    if (cfg->http_reserved_connections < cfg->http_max_connections)
        return PH_OK;
    const yaml_node_t *hn = cfg_map_find(c, root, "http");
    const yaml_node_t *rn = cfg_map_find(c, hn, "reserved_connections");
    const yaml_node_t *mn = cfg_map_find(c, hn, "max_connections");
    const yaml_node_t *at = rn ? rn : mn ? mn : hn ? hn : root;
    cfg_path_push(c, "http.%s", rn ? "reserved_connections" : "max_connections");
    return cfg_fail(c, at->start_mark,
                    "expected reserved_connections (%u) below max_connections (%u): the "
                    "reserve is the part of the connection budget kept for health probes "
                    "and ops",
                    cfg->http_reserved_connections, cfg->http_max_connections);
}

/* Where two settings of http.auth_failures (an) disagree: `first`'s node when
 * it is written, else `second`'s, else `at` (the section, or what holds it);
 * the path named is the one pointed at. */
static const yaml_node_t *pair_at(ctx *c, const yaml_node_t *an, const yaml_node_t *at,
                                  const char *first, const char *second)
{
    const yaml_node_t *fn = cfg_map_find(c, an, first), *sn = cfg_map_find(c, an, second);
    cfg_path_push(c, "http.auth_failures.%s", fn || !sn ? first : second);
    return fn ? fn : sn ? sn : at;
}

/* http.auth_failures: blocking must come after slowing (else no failure is
 * ever delayed), the delay's ceiling not below its start, and each exempt
 * entry a network, parsed here once for every request that checks it. */
static int check_auth_failures(ctx *c, ph_config *cfg, const yaml_node_t *root)
{
    ph_auth_failures_conf *af = &cfg->auth_failures;
    const yaml_node_t *hn = cfg_map_find(c, root, "http");
    const yaml_node_t *an = cfg_map_find(c, hn, "auth_failures");
    const yaml_node_t *at = an ? an : hn ? hn : root;
    if (af->block_after <= af->slow_after)
        return cfg_fail(c, pair_at(c, an, at, "block_after", "slow_after")->start_mark,
                        "expected block_after (%u) above slow_after (%u): failures past "
                        "slow_after are delayed, and at block_after the address is refused",
                        af->block_after, af->slow_after);
    if (af->delay_max_ms < af->delay_ms)
        return cfg_fail(c, pair_at(c, an, at, "delay_max_ms", "delay_ms")->start_mark,
                        "expected delay_max_ms (%u) at least delay_ms (%u): the delay doubles "
                        "from delay_ms up to delay_max_ms",
                        af->delay_max_ms, af->delay_ms);
    const yaml_node_t *en = cfg_map_find(c, an, "exempt");
    if (af->nexempt > PH_AUTH_EXEMPT_MAX) {
        cfg_path_push(c, "http.auth_failures.exempt");
        return cfg_fail(c, en->start_mark, "expected at most %d networks, got %zu",
                        PH_AUTH_EXEMPT_MAX, af->nexempt);
    }
    for (size_t i = 0; i < af->nexempt; i++) {
        const char *why = ph_cidr_parse(af->exempt[i], &af->exempt_nets[i]);
        if (!why)
            continue;
        const yaml_node_t *item = cfg_seq_item(c, en, i);
        char shown[SHOWN_MAX + 1];
        ph_text_clean(shown, sizeof shown, af->exempt[i]); /* printable, cut */
        cfg_path_push(c, "http.auth_failures.exempt[%zu]", i);
        return cfg_fail(c, (item ? item : en)->start_mark,
                        "expected an address or a network like 10.0.0.0/8 or 2001:db8::/32, got "
                        "\"%s\": %s",
                        shown, why);
    }
    return PH_OK;
}

/* listen.tls: cert and key together, client_ca only with them, and the files
 * there, regular, the key readable by its owner only (as the master key file);
 * they are read at start (http/tls.h), which says when one is not PEM. A
 * client's cert_sha256 needs a client_ca to verify the certificate against. */
static int check_tls(ctx *c, ph_config *cfg, const yaml_node_t *root)
{
    const yaml_node_t *ln = cfg_map_find(c, root, "listen");
    const yaml_node_t *tn = cfg_map_find(c, ln, "tls");
    if ((cfg->tls_cert != NULL) != (cfg->tls_key != NULL) ||
        (cfg->tls_client_ca && !cfg->tls_cert)) {
        cfg_path_push(c, "listen.tls");
        return cfg_fail(c, tn->start_mark, "expected both cert and key (client_ca goes with them)");
    }
    static const char *const keys[] = {"cert", "key", "client_ca"};
    const char *paths[] = {cfg->tls_cert, cfg->tls_key, cfg->tls_client_ca};
    for (size_t i = 0; i < NELEM(keys); i++) {
        if (!paths[i])
            continue;
        const yaml_node_t *fn = cfg_map_find(c, tn, keys[i]);
        struct stat st;
        char ebuf[128];
        size_t saved = cfg_path_push(c, "listen.tls.%s", keys[i]);
        if (stat(paths[i], &st) != 0)
            return cfg_fail(c, fn->start_mark, "cannot read %s: %s", paths[i],
                            strerror_r(errno, ebuf, sizeof ebuf));
        if (!S_ISREG(st.st_mode))
            return cfg_fail(c, fn->start_mark, "%s is not a regular file", paths[i]);
        if (i == 1 && (st.st_mode & 077))
            return cfg_fail(c, fn->start_mark,
                            "%s: key file mode %04o lets group or others read it; run `chmod 600 "
                            "%s`",
                            paths[i], (unsigned)(st.st_mode & 07777), paths[i]);
        c->plen = saved;
        c->path[saved] = 0;
    }
    for (size_t i = 0; i < cfg->nclients; i++) {
        const yaml_node_t *cn = cfg_seq_item(c, cfg_map_find(c, root, "clients"), i);
        const yaml_node_t *hn = cfg_map_find(c, cn, "cert_sha256");
        cfg->clients[i].cert_required = hn && !cfg_node_null(hn);
        if (cfg->clients[i].cert_required && !cfg->tls_client_ca) {
            cfg_path_push(c, "clients[%zu].cert_sha256", i);
            return cfg_fail(c, hn->start_mark,
                            "needs listen.tls.client_ca: the CA a client certificate is "
                            "verified against");
        }
    }
    return PH_OK;
}

/* ---- loading --------------------------------------------------------------- */

/* libyaml reports reader errors (bad UTF-8, control characters) as a byte
 * offset, the others as a mark; both become file:line:column. */
static int syntax_error(ctx *c, const yaml_parser_t *ps, const char *buf, size_t len)
{
    if (ps->error == YAML_MEMORY_ERROR)
        return cfg_oom(c);
    if (ps->error == YAML_READER_ERROR) {
        yaml_mark_t m = {0, 0, 0};
        for (size_t i = 0; i < ps->problem_offset && i < len; i++, m.column++)
            if (buf[i] == '\n')
                m.line++, m.column = (size_t)-1;
        if (ps->problem_value != -1)
            return cfg_fail(c, m, "invalid YAML: %s (byte 0x%02x)", ps->problem, ps->problem_value);
        return cfg_fail(c, m, "invalid YAML: %s", ps->problem);
    }
    if (ps->context)
        return cfg_fail(c, ps->problem_mark, "invalid YAML: %s (%s at %zu:%zu)",
                        ps->problem ? ps->problem : "error", ps->context, ps->context_mark.line + 1,
                        ps->context_mark.column + 1);
    return cfg_fail(c, ps->problem_mark, "invalid YAML: %s", ps->problem ? ps->problem : "error");
}

/* A second "---" document would be silently ignored by a plain load: refuse it. */
static int check_single_document(ctx *c, yaml_parser_t *ps, const char *buf, size_t len)
{
    yaml_document_t next;
    if (!yaml_parser_load(ps, &next))
        return syntax_error(c, ps, buf, len);
    yaml_node_t *root = yaml_document_get_root_node(&next);
    int rc = PH_OK;
    if (root)
        rc = cfg_fail(c, root->start_mark, "expected a single YAML document, got a second one");
    yaml_document_delete(&next);
    return rc;
}

/* replication: an enabled section names this node, its NATS servers and its
 * HTTP URL (what a standby tells a client to use instead); names the stream
 * and the bucket can carry; a lease the renewal (a third of it) can keep. */
static int check_replication(ctx *c, const ph_config *cfg, const yaml_node_t *root)
{
    const yaml_node_t *rn = cfg_map_find(c, root, "replication");
    if (!cfg->repl_enabled || !rn)
        return PH_OK;
    const char *missing = !cfg->repl_node_id         ? "node_id"
                          : !cfg->nrepl_urls         ? "urls"
                          : !cfg->repl_advertise_url ? "advertise_url"
                                                     : NULL;
    if (missing) {
        cfg_path_push(c, "replication");
        return cfg_fail(c, rn->start_mark, "expected %s when replication is enabled", missing);
    }
    for (size_t i = 0; i < cfg->nrepl_urls; i++)
        if (strncmp(cfg->repl_urls[i], "nats://", 7) != 0) {
            const yaml_node_t *un = cfg_seq_item(c, cfg_map_find(c, rn, "urls"), i);
            cfg_path_push(c, "replication.urls[%zu]", i);
            return cfg_fail(c, un->start_mark, "expected a nats:// URL");
        }
    const struct {
        const char *key, *val, *ok;
    } names[] = {{"stream", cfg->repl_stream, "-_"},
                 {"subject", cfg->repl_subject, "-_."},
                 {"lease_bucket", cfg->repl_lease_bucket, "-_"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = names[i].val;
        int ok = v[0] && v[0] != '.' && v[strlen(v) - 1] != '.';
        for (const char *p = v; ok && *p; p++)
            ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                 strchr(names[i].ok, *p);
        if (!ok) {
            const yaml_node_t *vn = cfg_map_find(c, rn, names[i].key);
            cfg_path_push(c, "replication.%s", names[i].key);
            return cfg_fail(c, (vn ? vn : rn)->start_mark,
                            "expected letters, digits and %s only, got \"%.48s\"", names[i].ok, v);
        }
    }
    const char *u = cfg->repl_advertise_url;
    if (strncmp(u, "http://", 7) && strncmp(u, "https://", 8)) {
        cfg_path_push(c, "replication.advertise_url");
        return cfg_fail(c, cfg_map_find(c, rn, "advertise_url")->start_mark,
                        "expected an http:// or https:// URL");
    }
    return PH_OK;
}

static int build(ctx *c, const yaml_node_t *root, ph_config **out)
{
    ph_config *cfg = calloc(1, sizeof *cfg);
    int rc = PH_ENOMEM;
    if (!cfg || !(cfg->source = strdup(c->name))) {
        rc = cfg_oom(c);
        goto fail;
    }
    if ((rc = cfg_parse_object(c, top_fields, NELEM(top_fields), root, cfg)) ||
        (rc = check_offer_suppliers(c, cfg, root)) || (rc = check_prices(c, cfg, root)) ||
        (rc = check_tokens(c, cfg, root)) || (rc = check_http(c, cfg, root)) ||
        (rc = check_statements(c, cfg, root)) || (rc = check_tls(c, cfg, root)) ||
        (rc = mark_suppliers(c, cfg, root)) || (rc = check_alert_rules(c, cfg, root)) ||
        (rc = check_replenish(c, cfg, root)) || (rc = check_webhooks(c, cfg, root)) ||
        (rc = check_bundles(c, cfg, root)) || (rc = check_replication(c, cfg, root)))
        goto fail;
    if ((rc = check_auth_failures(c, cfg, root)))
        goto fail;
    *out = cfg;
    return PH_OK;
fail:
    ph_config_free(cfg);
    return rc;
}

int ph_config_load_string(const char *yaml, size_t len, const char *name, ph_config **out,
                          ph_err *err)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    const yaml_node_t *root;
    int have_doc = 0, rc;
    ctx c = {.doc = &doc, .name = name ? name : "<string>", .err = err};

    if (!yaml_parser_initialize(&parser))
        return cfg_oom(&c);
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = syntax_error(&c, &parser, yaml, len);
        goto done;
    }
    have_doc = 1;
    if (!(root = yaml_document_get_root_node(&doc))) {
        rc = cfg_fail(&c, (yaml_mark_t){0, 0, 0},
                      "expected a mapping of settings, got an empty document");
        goto done;
    }
    if ((rc = check_single_document(&c, &parser, yaml, len)))
        goto done;
    rc = build(&c, root, out);
done:
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

static int read_file(const char *path, char **out, size_t *outlen, ph_err *err)
{
    char ebuf[128];
    size_t len = 0, cap = 8192;
    char *buf = NULL;
    int rc, fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        goto io;
    for (;;) {
        if (!buf || len == cap) {
            if (buf && cap >= FILE_MAX) {
                rc = ph_err_set(err, PH_EINVAL, "%s: larger than %d MiB, not a configuration file",
                                path, FILE_MAX / MIB);
                goto fail;
            }
            cap = buf ? cap * 2 : cap;
            char *nb = realloc(buf, cap);
            if (!nb) {
                rc = ph_err_set(err, PH_ENOMEM, "%s: out of memory while reading", path);
                goto fail;
            }
            buf = nb;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto io;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    *out = buf;
    *outlen = len;
    return PH_OK;
io:
    rc = ph_err_set(err, PH_EIO, "%s: cannot read: %s", path, strerror_r(errno, ebuf, sizeof ebuf));
fail:
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

int ph_config_load_file(const char *path, ph_config **out, ph_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = read_file(path, &buf, &len, err);
    if (rc)
        return rc;
    rc = ph_config_load_string(buf, len, path, out, err);
    free(buf);
    return rc;
}

void ph_config_free(ph_config *cfg)
{
    if (!cfg)
        return;
    cfg_free_fields(top_fields, NELEM(top_fields), cfg);
    free(cfg->source);
    free(cfg);
}
