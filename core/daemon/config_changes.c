/*
 * config_changes.c — what a reload changes, by name, for its audit record
 * (daemon.h, ph_config_changes). Names only: a supplier's plugin settings and
 * a client's token are compared, never written.
 */
#include "daemon/daemon.h"

#include <jansson.h>
#include <string.h>

#include "crypto/wipe_alloc.h"
#include "http/views.h"

static int str_eq(const char *a, const char *b)
{
    return !strcmp(a ? a : "", b ? b : "");
}

/* Everything of a supplier but `enabled`, which is said on its own. */
static int supplier_same(const ph_supplier_conf *a, const ph_supplier_conf *b)
{
    if (!str_eq(a->plugin, b->plugin) || a->priority != b->priority ||
        a->max_in_flight != b->max_in_flight || a->connect_timeout_ms != b->connect_timeout_ms ||
        a->timeout_ms != b->timeout_ms || a->tls_verify != b->tls_verify ||
        a->breaker_failures != b->breaker_failures || a->breaker_open_ms != b->breaker_open_ms ||
        a->auth_retry_ms != b->auth_retry_ms || a->auth_retry_max_ms != b->auth_retry_max_ms ||
        a->query_max_delay_ms != b->query_max_delay_ms ||
        a->processing_window_s != b->processing_window_s || a->nconfig != b->nconfig)
        return 0;
    for (size_t i = 0; i < a->nconfig; i++)
        if (!str_eq(a->config[i].key, b->config[i].key) ||
            !str_eq(a->config[i].value, b->config[i].value))
            return 0;
    return 1;
}

static int client_same(const ph_client_conf *a, const ph_client_conf *b)
{
    return !memcmp(a->token_hash, b->token_hash, sizeof a->token_hash) && a->scopes == b->scopes &&
           a->loopback_only == b->loopback_only && a->cert_required == b->cert_required &&
           !memcmp(a->cert_sha256, b->cert_sha256, sizeof a->cert_sha256);
}

/* The replenish rules (config.h) of two products: equal settings. */
static int replenish_same(const ph_replenish_conf *a, const ph_replenish_conf *b)
{
    int same = a->set == b->set && a->below == b->below && a->to == b->to &&
               a->max_unit_cost == b->max_unit_cost && a->max_per_day == b->max_per_day &&
               a->nsuppliers == b->nsuppliers;
    for (size_t i = 0; same && i < a->nsuppliers; i++)
        same = !strcmp(a->suppliers[i], b->suppliers[i]);
    return same;
}

/* As stored in the catalog (the PUT_PRODUCTS text): what the store compares;
 * and the replenish rule, which the catalog does not hold. */
static int product_same(const ph_product_conf *a, const ph_product_conf *b)
{
    json_t *x = ph_view_product_stored(a), *y = ph_view_product_stored(b);
    int same = x && y && json_equal(x, y) && replenish_same(&a->replenish, &b->replenish);
    json_decref(x);
    json_decref(y);
    return same;
}

/* {"added":[], "removed":[], "changed":[]} (+ "enabled", "disabled" for
 * suppliers), each list only when not empty; NULL when nothing changed. */
typedef struct diff {
    json_t *obj;
} diff;

static void diff_add(diff *d, const char *list, const char *name)
{
    if (!d->obj)
        d->obj = json_object();
    json_t *l = json_object_get(d->obj, list);
    if (!l) {
        l = json_array();
        json_object_set_new(d->obj, list, l);
    }
    json_array_append_new(l, json_string(name));
}

static void put(json_t *out, const char *key, diff *d)
{
    if (d->obj)
        json_object_set_new(out, key, d->obj);
}

static void suppliers_diff(json_t *out, const ph_config *o, const ph_config *n)
{
    diff d = {0};
    for (size_t i = 0; i < n->nsuppliers; i++) {
        const ph_supplier_conf *was = ph_config_supplier(o, n->suppliers[i].id);
        if (!was) {
            diff_add(&d, "added", n->suppliers[i].id);
            continue;
        }
        if (!supplier_same(was, &n->suppliers[i]))
            diff_add(&d, "changed", n->suppliers[i].id);
        if (was->enabled != n->suppliers[i].enabled)
            diff_add(&d, n->suppliers[i].enabled ? "enabled" : "disabled", n->suppliers[i].id);
    }
    for (size_t i = 0; i < o->nsuppliers; i++)
        if (!ph_config_supplier(n, o->suppliers[i].id))
            diff_add(&d, "removed", o->suppliers[i].id);
    put(out, "suppliers", &d);
}

static void products_diff(json_t *out, const ph_config *o, const ph_config *n)
{
    diff d = {0};
    for (size_t i = 0; i < n->nproducts; i++) {
        const ph_product_conf *was = ph_config_product(o, n->products[i].sku);
        if (!was)
            diff_add(&d, "added", n->products[i].sku);
        else if (!product_same(was, &n->products[i]))
            diff_add(&d, "changed", n->products[i].sku);
    }
    for (size_t i = 0; i < o->nproducts; i++)
        if (!ph_config_product(n, o->products[i].sku))
            diff_add(&d, "removed", o->products[i].sku);
    put(out, "products", &d);
}

static const ph_client_conf *client_named(const ph_config *c, const char *name)
{
    for (size_t i = 0; i < c->nclients; i++)
        if (!strcmp(c->clients[i].name, name))
            return &c->clients[i];
    return NULL;
}

static void clients_diff(json_t *out, const ph_config *o, const ph_config *n)
{
    diff d = {0};
    for (size_t i = 0; i < n->nclients; i++) {
        const ph_client_conf *was = client_named(o, n->clients[i].name);
        if (!was)
            diff_add(&d, "added", n->clients[i].name);
        else if (!client_same(was, &n->clients[i]))
            diff_add(&d, "changed", n->clients[i].name);
    }
    for (size_t i = 0; i < o->nclients; i++)
        if (!client_named(n, o->clients[i].name))
            diff_add(&d, "removed", o->clients[i].name);
    put(out, "clients", &d);
}

/* http.auth_failures as configured (the exempt networks as written). */
static int auth_failures_same(const ph_auth_failures_conf *a, const ph_auth_failures_conf *b)
{
    if (a->window_s != b->window_s || a->slow_after != b->slow_after ||
        a->delay_ms != b->delay_ms || a->delay_max_ms != b->delay_max_ms ||
        a->block_after != b->block_after || a->block_s != b->block_s || a->nexempt != b->nexempt)
        return 0;
    for (size_t i = 0; i < a->nexempt; i++)
        if (strcmp(a->exempt[i], b->exempt[i]) != 0)
            return 0;
    return 1;
}

/* The settings a reload applies (docs/config.md, "Reloading"), by their keys. */
static void settings_diff(json_t *out, const ph_config *o, const ph_config *n)
{
    json_t *l = json_array();
    if (o->log_level != n->log_level)
        json_array_append_new(l, json_string("log.level"));
    if (o->max_order_quantity != n->max_order_quantity)
        json_array_append_new(l, json_string("limits.max_order_quantity"));
    if (o->max_body_bytes != n->max_body_bytes)
        json_array_append_new(l, json_string("limits.max_body_mb"));
    if (o->max_import_codes != n->max_import_codes)
        json_array_append_new(l, json_string("limits.max_import_codes"));
    if (o->max_order_wait_s != n->max_order_wait_s)
        json_array_append_new(l, json_string("limits.max_order_wait_s"));
    if (o->metrics_access != n->metrics_access)
        json_array_append_new(l, json_string("metrics.access"));
    if (o->redemption_wait_ms != n->redemption_wait_ms)
        json_array_append_new(l, json_string("redemption.wait_ms"));
    if (!str_eq(o->public_url, n->public_url))
        json_array_append_new(l, json_string("public_url"));
    if (o->expiry_every_s != n->expiry_every_s)
        json_array_append_new(l, json_string("expiry.every_s"));
    if (o->replenish_check_s != n->replenish_check_s)
        json_array_append_new(l, json_string("replenish_check_s"));
    if (o->snap_every_s != n->snap_every_s)
        json_array_append_new(l, json_string("snapshots.every_s"));
    if (o->snap_keep != n->snap_keep)
        json_array_append_new(l, json_string("snapshots.keep"));
    if (!auth_failures_same(&o->auth_failures, &n->auth_failures))
        json_array_append_new(l, json_string("http.auth_failures"));
    if (json_array_size(l))
        json_object_set_new(out, "settings", l);
    else
        json_decref(l);
}

/* Every list replaced by its length: the record stays within its size. */
static void to_counts(json_t *v)
{
    const char *key;
    json_t *x;
    json_object_foreach(v, key, x)
    {
        if (json_is_array(x))
            json_object_set_new(v, key, json_integer((json_int_t)json_array_size(x)));
        else if (json_is_object(x))
            to_counts(x);
    }
}

json_t *ph_config_changes(const ph_config *old, const ph_config *neu)
{
    json_t *out = json_object();
    if (!out)
        return NULL;
    suppliers_diff(out, old, neu);
    products_diff(out, old, neu);
    clients_diff(out, old, neu);
    settings_diff(out, old, neu);
    char *txt = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
    size_t len = txt ? strlen(txt) : 0;
    ph_json_free(txt);
    if (!txt) {
        json_decref(out);
        return NULL;
    }
    if (len > PH_AUDIT_WHAT_MAX) {
        to_counts(out);
        json_object_set_new(out, "counts_only", json_true());
    }
    return out;
}
