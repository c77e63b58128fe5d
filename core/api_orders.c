/*
 * api_orders.c — POST /v1/orders, GET /v1/orders/{id}, GET /v1/orders.
 *
 * Placing an order is idempotent on (client, client_order_id): the store
 * decides, inside the writer, whether the id is new, a replay of the same
 * request (same order and codes back, 200) or a conflict (409). Codes are
 * rendered only for the client that owns the order.
 */
#include <string.h>

#include "api.h"
#include "util.h"
#include "views.h"

/* The request's defining fields; a replay must match them exactly. */
static void order_fingerprint(const char *sku, uint32_t quantity, uint8_t out[32])
{
    char buf[PH_SKU_MAX + 32];
    int n = snprintf(buf, sizeof buf, "card_code\n%s\n%u", sku, quantity);
    ph_sha256(buf, (size_t)n, out);
}

static int order_created(ph_req *r)
{
    if (r->cmd.rc != PH_OK)
        return ph_req_fail(r, r->cmd.rc, &r->cmd.err);
    json_t *o = ph_view_order(r->cmd.order, r->cfg->cfg, r->d->keys, 1, 0);
    if (r->cmd.replayed)
        r->replay_header = "true";
    ph_log(&r->d->log, PH_LOG_INFO, r->reqid, r->cmd.replayed ? "order.replayed" : "order.created",
           "order=%llu sku=%s quantity=%u", (unsigned long long)r->cmd.order->id, r->cmd.order->sku,
           r->cmd.order->quantity);
    return ph_req_json(r, r->cmd.replayed ? 200 : 201, json_pack("{s:o}", "order", o));
}

/* Reads and checks the body's fields into r->arg / *qty; sets a 4xx on failure. */
static int order_fields(ph_req *r, json_t *b, uint32_t *qty)
{
    const char *key;
    json_t *v;
    json_object_foreach(b, key, v)
    {
        if (strcmp(key, "client_order_id") && strcmp(key, "sku") && strcmp(key, "quantity")) {
            ph_req_error(r, 400, "invalid_request", "body: unknown field '%.40s'", key);
            return -1;
        }
    }
    const char *coid = json_string_value(json_object_get(b, "client_order_id"));
    const char *sku = json_string_value(json_object_get(b, "sku"));
    json_t *q = json_object_get(b, "quantity");
    if (!ph_ident_valid(coid, PH_ORDER_ID_MAX))
        return ph_req_error(r, 400, "invalid_request",
                            "client_order_id: expected a string of 1-128 characters "
                            "[A-Za-z0-9._:-]"),
               -1;
    if (!ph_ident_valid(sku, PH_SKU_MAX))
        return ph_req_error(r, 400, "invalid_request", "sku: expected a product SKU string"), -1;
    if (q && !json_is_integer(q))
        return ph_req_error(r, 400, "invalid_request", "quantity: expected an integer"), -1;
    json_int_t n = q ? json_integer_value(q) : 1;
    if (n < 1)
        return ph_req_error(r, 400, "invalid_request", "quantity: must be at least 1"), -1;
    if (n > (json_int_t)r->cfg->cfg->max_order_quantity)
        return ph_req_error(r, 422, "limit_exceeded", "quantity: over the maximum of %u",
                            r->cfg->cfg->max_order_quantity),
               -1;
    if (!ph_config_product(r->cfg->cfg, sku))
        return ph_req_error(r, 422, "unknown_sku", "sku: no such product in the catalog"), -1;
    snprintf(r->arg[0], sizeof r->arg[0], "%s", coid);
    snprintf(r->arg[1], sizeof r->arg[1], "%s", sku);
    *qty = (uint32_t)n;
    return 0;
}

int ph_api_order_create(ph_req *r)
{
    json_t *b;
    uint32_t qty;
    if (ph_req_body_json(r, &b))
        return PH_REQ_DONE;
    int bad = order_fields(r, b, &qty);
    json_decref(b);
    if (bad)
        return PH_REQ_DONE;
    r->cmd.type = PH_CMD_ORDER;
    r->cmd.now = ph_now_ms();
    r->cmd.in.order.client = r->client->name;
    r->cmd.in.order.client_order_id = r->arg[0];
    r->cmd.in.order.sku = r->arg[1];
    r->cmd.in.order.quantity = qty;
    order_fingerprint(r->arg[1], qty, r->cmd.in.order.fingerprint);
    return ph_req_submit(r, order_created);
}

/* An order the caller may see: its owner sees the codes, ops sees the cost.
 * Anyone else gets the same 404 as for an order that does not exist. */
static int reply_order(ph_req *r, ph_order *o)
{
    int owner = strcmp(o->client, r->client->name) == 0;
    int ops = ph_req_has_scope(r, PH_SCOPE_OPS);
    if (!owner && !ops) {
        ph_order_free(o);
        return ph_req_error(r, 404, "not_found", "order: not found");
    }
    json_t *j = ph_view_order(o, r->cfg->cfg, r->d->keys, owner, ops);
    ph_order_free(o);
    return ph_req_json(r, 200, json_pack("{s:o}", "order", j));
}

int ph_api_order_get(ph_req *r)
{
    uint64_t id;
    ph_order *o;
    ph_err err = {0};
    if (ph_u64_parse(r->seg[0], &id))
        return ph_req_error(r, 400, "invalid_request", "order id: expected a number");
    int rc = ph_store_order_get(r->d->store, id, 1, &o, &err);
    if (rc == PH_ENOTFOUND)
        return ph_req_error(r, 404, "not_found", "order: not found");
    if (rc)
        return ph_req_fail(r, rc, &err);
    return reply_order(r, o);
}

static int parse_paging(ph_req *r, uint64_t *after, uint64_t *limit)
{
    const char *a = ph_req_query(r, "after"), *l = ph_req_query(r, "limit");
    *after = 0;
    *limit = 100;
    if (a && ph_u64_parse(a, after))
        return ph_req_error(r, 400, "invalid_request", "after: expected a number"), -1;
    if (l && (ph_u64_parse(l, limit) || *limit < 1 || *limit > 1000))
        return ph_req_error(r, 400, "invalid_request", "limit: expected 1 to 1000"), -1;
    return 0;
}

int ph_api_order_list(ph_req *r)
{
    ph_err err = {0};
    const char *coid = ph_req_query(r, "client_order_id");
    if (coid) {
        ph_order *o;
        int rc = ph_store_order_find(r->d->store, r->client->name, coid, 1, &o, &err);
        if (rc == PH_ENOTFOUND)
            return ph_req_error(r, 404, "not_found", "client_order_id: no such order");
        return rc ? ph_req_fail(r, rc, &err) : reply_order(r, o);
    }
    uint64_t after, limit;
    if (parse_paging(r, &after, &limit))
        return PH_REQ_DONE;
    int ops = ph_req_has_scope(r, PH_SCOPE_OPS);
    ph_order **list;
    size_t n;
    /* one more than asked tells whether another page exists */
    int rc = ph_store_order_list(r->d->store, ops ? NULL : r->client->name, after, limit + 1, &list,
                                 &n, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *arr = json_array();
    size_t shown = n > limit ? limit : n;
    for (size_t i = 0; i < shown; i++)
        json_array_append_new(arr, ph_view_order(list[i], r->cfg->cfg, r->d->keys, 0, ops));
    json_t *next = n > limit ? json_integer((json_int_t)list[shown - 1]->id) : json_null();
    ph_order_list_free(list, n);
    return ph_req_json(r, 200, json_pack("{s:o,s:o}", "orders", arr, "next_after", next));
}
