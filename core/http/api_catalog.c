/*
 * api_catalog.c — products (read) and batches of card codes (import, read, void).
 */
#include <string.h>

#include "http/api.h"
#include "codes/import.h"
#include "supply/suppliers.h"
#include "base/util.h"
#include "http/views.h"

/* ---- products ------------------------------------------------------------- */

static int has_tag(json_t *p, const char *tag)
{
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(p, "tags"), i, t)
    {
        if (json_is_string(t) && strcmp(json_string_value(t), tag) == 0)
            return 1;
    }
    return 0;
}

static int field_is(json_t *p, const char *key, const char *want)
{
    const char *v = json_string_value(json_object_get(p, key));
    return !want || (v && strcmp(v, want) == 0);
}

/* stock.local (issue 12): what is in stock here and what of it can be issued */
static void add_local(ph_req *r, json_t *p)
{
    const char *sku = json_string_value(json_object_get(p, "sku"));
    ph_local_stock l;
    ph_err err = {0};
    if (sku && ph_store_product_local(r->env->store, sku, ph_now_ms(), &l, &err) == PH_OK)
        ph_view_product_local(p, &l);
}

int ph_api_products_list(ph_req *r)
{
    const char *brand = ph_req_query(r, "brand"), *tag = ph_req_query(r, "tag"),
               *category = ph_req_query(r, "category");
    int ops = ph_req_has_scope(r, PH_SCOPE_OPS);
    char **json;
    uint64_t *avail;
    size_t n;
    ph_err err = {0};
    int rc = ph_store_product_list(r->env->store, &json, &avail, &n, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *p = ph_view_product(json[i], avail[i], ops);
        add_local(r, p);
        if (p && (ops || json_is_true(json_object_get(p, "listed"))) &&
            field_is(p, "brand", brand) && field_is(p, "category", category) &&
            (!tag || has_tag(p, tag)))
            json_array_append_new(arr, p);
        else
            json_decref(p);
    }
    ph_store_product_list_free(json, avail, n);
    return ph_req_json(r, 200, json_pack("{s:o}", "products", arr));
}

int ph_api_product_get(ph_req *r)
{
    char *json;
    uint64_t avail;
    ph_err err = {0};
    int rc = ph_store_product_get(r->env->store, r->seg[0], &json, &avail, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    int ops = ph_req_has_scope(r, PH_SCOPE_OPS);
    json_t *p = ph_view_product(json, avail, ops);
    free(json);
    add_local(r, p);
    if (!p || (!ops && !json_is_true(json_object_get(p, "listed")))) {
        json_decref(p);
        return ph_req_error(r, 404, "not_found", "sku: no such product");
    }
    return ph_req_json(r, 200, json_pack("{s:o}", "product", p));
}

/* ---- batches ---------------------------------------------------------------- */

static int supplier_known(const ph_config *cfg, const char *id)
{
    return id && ph_config_supplier(cfg, id) != NULL;
}

/* Checks the import's query arguments; sets a 4xx and returns -1 on the first bad one. */
static int import_args(ph_req *r, ph_import_req *q)
{
    const ph_config *cfg = r->cfg->cfg;
    q->supplier = ph_req_query(r, "supplier");
    q->sku = ph_req_query(r, "sku");
    q->note = ph_req_query(r, "note");
    const char *cost = ph_req_query(r, "unit_cost");
    if (!supplier_known(cfg, q->supplier))
        return ph_req_error(r, 400, "invalid_request",
                            "supplier: expected a configured supplier id"),
               -1;
    if (!q->sku || !ph_config_product(cfg, q->sku))
        return ph_req_error(r, 422, "unknown_sku", "sku: expected a configured product SKU"), -1;
    if (ph_config_product(cfg, q->sku)->delivery != PH_DELIVERY_CARD_CODE)
        return ph_req_error(r, 422, "unknown_sku", "sku: '%s' is not delivered by card code",
                            q->sku),
               -1;
    q->lookalikes = ph_config_product(cfg, q->sku)->code_lookalikes;
    if (!cost || ph_money_parse(cost, &q->unit_cost))
        return ph_req_error(r, 400, "invalid_request",
                            "unit_cost: expected a decimal amount such as 19.80"),
               -1;
    if (q->note && strlen(q->note) > PH_NOTE_MAX)
        return ph_req_error(r, 400, "invalid_request", "note: longer than %d bytes", PH_NOTE_MAX),
               -1;
    return 0;
}

static json_t *error_lines(const ph_import_result *res)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < res->nerrors; i++)
        json_array_append_new(arr, json_pack("{s:I,s:s}", "line", (json_int_t)res->errors[i].line,
                                             "reason", res->errors[i].reason));
    return arr;
}

int ph_api_batch_import(ph_req *r)
{
    ph_import_req q = {.csv = r->body,
                       .csv_len = r->body_len,
                       .max_errors = 1000,
                       .max_codes = r->cfg->cfg->max_import_codes,
                       .now = ph_now_ms()};
    if (import_args(r, &q))
        return PH_REQ_DONE;
    q.audit = ph_req_audit(r, NULL, "batch.import",
                           json_pack("{s:s,s:s}", "supplier", q.supplier, "sku", q.sku));
    ph_import_result res;
    ph_err err = {0};
    int rc = ph_import_run(r->env->store, r->env->keys, &q, &res, &err);
    if (rc == PH_EINVAL && res.error_count) {
        json_t *body = json_pack("{s:s,s:s,s:I,s:o,s:s}", "error", "invalid_csv", "message",
                                 err.msg, "error_count", (json_int_t)res.error_count, "lines",
                                 error_lines(&res), "request_id", r->reqid);
        ph_import_result_clear(&res);
        return ph_req_json(r, 422, body);
    }
    uint64_t batch_id = res.batch_id;
    ph_import_result_clear(&res);
    if (rc == PH_EINVAL)
        return ph_req_error(r, 422, "invalid_csv", "%s", err.msg);
    if (rc)
        return ph_req_fail(r, rc, &err);
    ph_batch b;
    uint64_t counts[7];
    if ((rc = ph_store_batch_get(r->env->store, batch_id, &b, counts, &err)) != PH_OK)
        return ph_req_fail(r, rc, &err);
    ph_log(r->env->log, PH_LOG_INFO, r->reqid, "batch.imported", "batch=%llu sku=%s codes=%u",
           (unsigned long long)b.id, b.sku, b.count);
    return ph_req_json(r, 201, json_pack("{s:o}", "batch", ph_view_batch(&b, NULL)));
}

/* GET /v1/batches: every batch, oldest first, paged like the orders. */
int ph_api_batch_list(ph_req *r)
{
    uint64_t after = 0, limit = 100;
    ph_err err = {0};
    if (ph_req_page(r, &after, &limit, 1000))
        return PH_REQ_DONE;
    ph_batch **list;
    size_t n;
    int rc = ph_store_batch_list(r->env->store, after, limit + 1, &list, &n, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *arr = json_array();
    size_t shown = n > limit ? limit : n;
    for (size_t i = 0; i < shown; i++)
        json_array_append_new(arr, ph_view_batch(list[i], NULL));
    json_t *next = n > limit ? json_integer((json_int_t)list[shown - 1]->id) : json_null();
    ph_batch_list_free(list, n);
    return ph_req_json(r, 200, json_pack("{s:o,s:o}", "batches", arr, "next_after", next));
}

int ph_api_batch_get(ph_req *r)
{
    uint64_t id, counts[7];
    ph_batch b;
    ph_err err = {0};
    if (ph_u64_parse(r->seg[0], &id))
        return ph_req_error(r, 400, "invalid_request", "batch id: expected a number");
    int rc = ph_store_batch_get(r->env->store, id, &b, counts, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    return ph_req_json(r, 200, json_pack("{s:o}", "batch", ph_view_batch(&b, counts)));
}

static int batch_voided(ph_req *r)
{
    ph_cmd *c = &r->cmd;
    if (c->rc)
        return ph_req_fail(r, c->rc, &c->err);
    json_t *aff = json_array();
    for (size_t i = 0; i < c->naffected; i++)
        json_array_append_new(
            aff, json_pack("{s:I,s:s,s:s,s:I}", "id", (json_int_t)c->affected[i].id, "client",
                           c->affected[i].client, "client_order_id", c->affected[i].client_order_id,
                           "voided_codes", (json_int_t)c->affected[i].voided_codes));
    ph_log(r->env->log, PH_LOG_WARN, r->reqid, "batch.voided", "batch=%llu codes=%u orders=%zu",
           (unsigned long long)c->batch.id, c->voided_codes, c->naffected);
    return ph_req_json(r, 200,
                       json_pack("{s:o,s:I,s:o}", "batch", ph_view_batch(&c->batch, NULL),
                                 "voided_codes", (json_int_t)c->voided_codes, "affected_orders",
                                 aff));
}

int ph_api_batch_void(ph_req *r)
{
    uint64_t id;
    json_t *b = NULL;
    if (ph_u64_parse(r->seg[0], &id))
        return ph_req_error(r, 400, "invalid_request", "batch id: expected a number");
    if (r->body_len && ph_req_body_fields(r, "reason", &b))
        return PH_REQ_DONE;
    json_t *reason = json_object_get(b, "reason");
    if (reason && (!json_is_string(reason) || strlen(json_string_value(reason)) > PH_NOTE_MAX)) {
        json_decref(b);
        return ph_req_error(r, 400, "invalid_request",
                            "reason: expected a string of at most %d "
                            "bytes",
                            PH_NOTE_MAX);
    }
    snprintf(r->arg[0], sizeof r->arg[0], "%s", reason ? json_string_value(reason) : "");
    json_decref(b);
    r->cmd.type = PH_CMD_VOID_BATCH;
    r->cmd.now = ph_now_ms();
    r->cmd.in.void_batch.batch_id = id;
    r->cmd.in.void_batch.reason = r->arg[0];
    ph_req_audit(r, &r->cmd, "batch.void", json_pack("{s:I}", "batch_id", (json_int_t)id));
    return ph_req_submit(r, batch_voided);
}
