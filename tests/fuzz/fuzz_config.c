/*
 * fuzz_config.c — perkhubd's YAML configuration as ops write it (and as SIGHUP
 * reloads it): ph_config_load_string over arbitrary text, valid or not
 * (core/config). The seeds are conf/perkhub.example.yaml and the test fixtures;
 * config.dict holds the schema's keys and words.
 *
 * Invariants beyond "no crash, no leak":
 *   - a refusal is PH_EINVAL (or PH_ENOMEM) with a one-line message that starts
 *     with the file name it was given (every error names where it is);
 *   - an accepted configuration is what config.h promises: every id, SKU and
 *     client name a valid identifier and unique (each lookup finds its own
 *     entry), every offer names a configured supplier, every client found by
 *     its token hash, money non-negative, settings within their declared
 *     ranges, delivery kinds and scopes from their vocabularies, look-alike
 *     rules canonical (even length, pairs of upper-case letters or digits).
 */
#include <ctype.h>
#include <string.h>

#include "base/util.h"
#include "config/config.h"
#include "crypto/code.h"
#include "fuzz.h"

#define FZ_NAME "fuzz.yaml"

static void fz_check_error(int rc, const ph_err *err)
{
    FZ_CHECK(rc == PH_EINVAL || rc == PH_ENOMEM, "refused with %d", rc);
    FZ_CHECK(strncmp(err->msg, FZ_NAME, strlen(FZ_NAME)) == 0 || rc == PH_ENOMEM,
             "message does not name the file: %s", err->msg);
    FZ_CHECK(!strchr(err->msg, '\n') && !strchr(err->msg, '\r'), "message of several lines: %s",
             err->msg);
}

static void fz_check_rule(const char *rule)
{
    size_t n = rule ? strlen(rule) : 0;
    FZ_CHECK(n % 2 == 0 && n <= PH_LOOKALIKES_MAX, "look-alike rule of %zu bytes", n);
    for (size_t i = 0; i < n; i++)
        FZ_CHECK(isupper((unsigned char)rule[i]) || isdigit((unsigned char)rule[i]),
                 "look-alike rule byte 0x%02x", (unsigned char)rule[i]);
}

static void fz_check_config(const ph_config *cfg)
{
    FZ_CHECK(cfg->data_dir && cfg->master_key_file && cfg->listen_address && cfg->plugin_dir,
             "a required or defaulted path is NULL");
    FZ_CHECK(cfg->http_threads >= 1 && cfg->http_threads <= 256, "threads %u", cfg->http_threads);
    FZ_CHECK(cfg->max_order_quantity >= 1 && cfg->max_order_quantity <= 10000000,
             "max_order_quantity %u", cfg->max_order_quantity);
    FZ_CHECK(cfg->max_body_bytes >= (1u << 20) && cfg->max_body_bytes <= (uint64_t)4096 << 20,
             "max_body_bytes %llu", (unsigned long long)cfg->max_body_bytes);
    FZ_CHECK(cfg->max_order_wait_s <= 3600, "max_order_wait_s %u", cfg->max_order_wait_s);
    for (size_t i = 0; i < cfg->nclients; i++) {
        const ph_client_conf *cl = &cfg->clients[i];
        FZ_CHECK(ph_ident_valid(cl->name, 64), "client %zu: name", i);
        FZ_CHECK(cl->scopes && !(cl->scopes & ~7u), "client %zu: scopes %#x", i, cl->scopes);
        FZ_CHECK(ph_config_client_by_hash(cfg, cl->token_hash) == cl,
                 "client %zu: not found by its token hash", i);
    }
    for (size_t i = 0; i < cfg->nsuppliers; i++) {
        const ph_supplier_conf *s = &cfg->suppliers[i];
        FZ_CHECK(ph_ident_valid(s->id, 64) && s->plugin, "supplier %zu: id or plugin", i);
        FZ_CHECK(ph_config_supplier(cfg, s->id) == s, "supplier %zu: lookup finds another", i);
        for (size_t k = 0; k < s->nconfig; k++)
            FZ_CHECK(s->config[k].key && s->config[k].value, "supplier %zu: config %zu", i, k);
    }
    for (size_t i = 0; i < cfg->nproducts; i++) {
        const ph_product_conf *p = &cfg->products[i];
        FZ_CHECK(ph_ident_valid(p->sku, 64), "product %zu: sku", i);
        FZ_CHECK(ph_config_product(cfg, p->sku) == p, "product %zu: lookup finds another", i);
        FZ_CHECK(ph_delivery_name(p->delivery) != NULL, "product %zu: delivery %d", i, p->delivery);
        FZ_CHECK(p->face_value >= 0 && p->face_value <= PH_MONEY_MAX_YUAN * 100,
                 "product %zu: face value", i);
        fz_check_rule(p->code_lookalikes);
        for (size_t t = 0; t < p->ntags; t++)
            FZ_CHECK(p->tags[t], "product %zu: tag %zu NULL", i, t);
        for (size_t o = 0; o < p->noffers; o++) {
            const ph_offer_conf *of = &p->offers[o];
            FZ_CHECK(of->cost >= 0 && of->cost <= PH_MONEY_MAX_YUAN * 100,
                     "product %zu offer %zu: cost", i, o);
            FZ_CHECK(ph_config_supplier(cfg, of->supplier) != NULL,
                     "product %zu offer %zu: names no configured supplier", i, o);
            FZ_CHECK(of->supplier_sku, "product %zu offer %zu: supplier_sku", i, o);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ph_config *cfg = NULL;
    ph_err err = {0};
    int rc = ph_config_load_string((const char *)data, size, FZ_NAME, &cfg, &err);
    if (rc != PH_OK) {
        FZ_CHECK(cfg == NULL, "refused, yet a configuration came out");
        fz_check_error(rc, &err);
        return 0;
    }
    FZ_CHECK(cfg != NULL, "accepted without a configuration");
    fz_check_config(cfg);
    ph_config_free(cfg);
    return 0;
}
