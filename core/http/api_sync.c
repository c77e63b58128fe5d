/*
 * api_sync.c — catalog and stock sync for ops: run a supplier's sync now
 * (POST /v1/suppliers/{id}/sync), pin a product listed or delisted
 * (POST /v1/products/{sku}/pin), and the `sync` member of a supplier in
 * GET /v1/suppliers (the last run of each of its sync jobs).
 *
 * A sync runs as a scheduler job (supply/sync.h): asking for one triggers
 * the job, and the request answers 202 with what was queued; the run's
 * outcome shows in GET /v1/jobs and in the supplier's `sync`.
 */
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "crypto/wipe_alloc.h"
#include "http/api.h"
#include "http/views.h"
#include "sched/sched.h"
#include "supply/sync.h"

/* ---- GET /v1/suppliers: sync ------------------------------------------------- */

static const ph_sched_info *find_job(const ph_sched_info *jobs, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(jobs[i].id, id))
            return &jobs[i];
    return NULL;
}

static json_t *job_view(const ph_sched_info *j)
{
    if (!j)
        return json_null();
    json_t *v =
        json_pack("{s:I,s:b}", "every_s", (json_int_t)(j->every_ms / 1000), "running", j->running);
    if (j->last_started_at)
        ph_view_time(v, "last_at", j->last_started_at);
    else
        json_object_set_new(v, "last_at", json_null());
    json_object_set_new(v, "last_ok", j->last_ok < 0 ? json_null() : json_boolean(j->last_ok));
    /* the outcome names the failure; on success it counts what changed */
    json_object_set_new(v, j->last_ok == 0 ? "error" : "outcome",
                        j->last_outcome[0] ? json_string(j->last_outcome) : json_null());
    if (j->next_due)
        ph_view_time(v, "next_at", j->next_due);
    else
        json_object_set_new(v, "next_at", json_null());
    return v;
}

json_t *ph_api_supplier_sync_view(ph_req *r, const char *supplier)
{
    ph_sched_info *jobs = NULL;
    size_t n = 0;
    if (!r->env->sched || ph_sched_list(r->env->sched, &jobs, &n) != PH_OK)
        return json_null();
    char cat[PH_SCHED_ID_MAX], stk[PH_SCHED_ID_MAX];
    ph_sync_job_id(cat, sizeof cat, "catalog", supplier);
    ph_sync_job_id(stk, sizeof stk, "stock", supplier);
    json_t *v = json_pack("{s:o,s:o}", "catalog", job_view(find_job(jobs, n, cat)), "stock",
                          job_view(find_job(jobs, n, stk)));
    free(jobs);
    return v;
}

/* ---- POST /v1/suppliers/{id}/sync ---------------------------------------------- */

static int sync_queued(ph_req *r)
{
    if (r->cmd.rc != PH_OK)
        return ph_req_fail(r, r->cmd.rc, &r->cmd.err);
    json_t *queued = json_array();
    static const char *const what[] = {"catalog", "stock"};
    for (int i = 0; i < 2; i++) {
        if (!(r->arg[1][0] & (1 << i)))
            continue;
        char id[PH_SCHED_ID_MAX];
        ph_err err = {0};
        ph_sync_job_id(id, sizeof id, what[i], r->seg[0]);
        if (ph_sched_trigger(r->env->sched, id, &err) == PH_OK)
            json_array_append_new(queued, json_string(id));
    }
    return ph_req_json(r, 202, json_pack("{s:s,s:o}", "supplier", r->seg[0], "queued", queued));
}

int ph_api_supplier_sync(ph_req *r)
{
    json_t *b = NULL;
    if (r->body_len && ph_req_body_fields(r, "what", &b))
        return PH_REQ_DONE;
    json_t *w = b ? json_object_get(b, "what") : NULL;
    const char *what = w ? json_string_value(w) : "all";
    int mask = what && !strcmp(what, "catalog") ? 1
               : what && !strcmp(what, "stock") ? 2
               : what && !strcmp(what, "all")   ? 3
                                                : 0;
    json_decref(b);
    if (!mask)
        return ph_req_error(r, 400, "invalid_request",
                            "what: expected \"catalog\", \"stock\" or \"all\"");
    if (!ph_config_supplier(r->cfg->cfg, r->seg[0]))
        return ph_req_error(r, 404, "not_found", "supplier: no such supplier");
    /* only the jobs that exist: a plugin without a capability has none */
    ph_sched_info *jobs = NULL;
    size_t n = 0;
    if (!r->env->sched || ph_sched_list(r->env->sched, &jobs, &n) != PH_OK)
        return ph_req_fail(r, PH_ENOMEM, NULL);
    char cat[PH_SCHED_ID_MAX], stk[PH_SCHED_ID_MAX];
    ph_sync_job_id(cat, sizeof cat, "catalog", r->seg[0]);
    ph_sync_job_id(stk, sizeof stk, "stock", r->seg[0]);
    int have = (find_job(jobs, n, cat) ? 1 : 0) | (find_job(jobs, n, stk) ? 2 : 0);
    free(jobs);
    if (!(mask & have))
        return ph_req_error(r, 422, "unsupported",
                            "supplier '%.64s': no %s sync (its plugin cannot list a catalog or "
                            "check stock, or the supplier is not running)",
                            r->seg[0],
                            mask == 1   ? "catalog"
                            : mask == 2 ? "stock"
                                        : "catalog or stock");
    r->arg[1][0] = (char)(mask & have);
    /* the request is recorded through the writer (an event and the audit
     * record) before the job runs */
    static const char *const names[] = {"", "catalog", "stock", "all"};
    json_t *f = json_pack("{s:s,s:s}", "supplier", r->seg[0], "what", names[mask & have]);
    char *txt = f ? json_dumps(f, JSON_COMPACT) : NULL;
    json_decref(f);
    if (!txt)
        return ph_req_fail(r, PH_ENOMEM, NULL);
    snprintf(r->arg[0], sizeof r->arg[0], "%s", txt);
    ph_json_free(txt);
    r->cmd.type = PH_CMD_NOTE_EVENT;
    r->cmd.now = ph_now_ms();
    r->cmd.in.note.name = "supplier.sync_requested";
    r->cmd.in.note.fields = r->arg[0];
    ph_req_audit(r, &r->cmd, "supplier.sync",
                 json_pack("{s:s,s:s}", "supplier", r->seg[0], "what", names[mask & have]));
    return ph_req_submit(r, sync_queued);
}

/* ---- POST /v1/products/{sku}/pin ---------------------------------------------- */

static int pinned(ph_req *r)
{
    if (r->cmd.rc != PH_OK)
        return ph_req_fail(r, r->cmd.rc, &r->cmd.err);
    char *json = NULL;
    uint64_t avail = 0;
    ph_err err = {0};
    int rc = ph_store_product_get(r->env->store, r->seg[0], &json, &avail, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *p = json_loads(json, 0, NULL);
    free(json);
    json_t *why = json_object_get(json_object_get(p, "delisted"), "reason");
    json_t *out = json_pack("{s:s,s:s,s:b,s:O?,s:b}", "sku", r->seg[0], "pin",
                            ph_pin_name(r->cmd.in.pin.pin), "listed", ph_product_listed(p),
                            "delisted_reason", why, "changed", r->cmd.sync_changes != 0);
    json_decref(p);
    return ph_req_json(r, 200, out);
}

int ph_api_product_pin(ph_req *r)
{
    json_t *b;
    if (ph_req_body_fields(r, "pin", &b))
        return PH_REQ_DONE;
    int pin = ph_pin_parse(json_string_value(json_object_get(b, "pin")));
    json_decref(b);
    if (pin < 0)
        return ph_req_error(r, 400, "invalid_request",
                            "pin: expected \"listed\", \"delisted\" or \"none\"");
    if (!ph_config_product(r->cfg->cfg, r->seg[0]))
        return ph_req_error(r, 404, "not_found", "sku: no such product");
    r->cmd.type = PH_CMD_PIN;
    r->cmd.now = ph_now_ms();
    r->cmd.in.pin.sku = r->seg[0];
    r->cmd.in.pin.pin = pin;
    ph_req_audit(r, &r->cmd, "product.pin",
                 json_pack("{s:s,s:s}", "sku", r->seg[0], "pin", ph_pin_name(pin)));
    return ph_req_submit(r, pinned);
}
