/*
 * api_suppliers.c — asking a supplier directly, for ops: its catalog next to
 * our offers, and our prepaid balance with it.
 *
 * Both go through the supplier I/O engine like every other exchange (the
 * plugin builds the request, the engine sends it with the supplier's limits,
 * the plugin parses the answer); the HTTP request is suspended meanwhile and
 * woken by the exchange's completion on the I/O thread.
 */
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "supply/supplier_io.h"
#include "supply/suppliers.h"
#include "base/util.h"
#include "http/views.h"

typedef struct ask {
    ph_sio_job job;
    ph_req *r;
    json_t *items; /* catalog: the items of the pages so far */
    char *state;   /* catalog: the next page's op.state */
} ask;

#define CATALOG_PAGES_MAX 10000 /* a plugin that never stops paging gets an error */

static void ask_free(void *p)
{
    ask *a = p;
    if (!a)
        return;
    ph_sio_job_clear(&a->job);
    ph_supplier_release(a->job.sup);
    json_decref(a->items);
    free(a->state);
    free(a);
}

static void ask_done(ph_sio_job *job)
{
    ask *a = job->arg;
    ph_req_wake(a->r);
}

static json_t *money_or_null(int64_t fen)
{
    char buf[32];
    return fen < 0 ? json_null() : json_string(ph_money_format(fen, buf, sizeof buf));
}

/* The exchange failed: say how, as the engine classified it. */
static int exchange_failed(ph_req *r, const ph_sio_job *job)
{
    return ph_req_error(r, 502, "supplier_error", "supplier '%.64s': %s (%s)", r->seg[0],
                        job->detail[0] ? job->detail : "no answer",
                        ph_supplier_host(job->sup)->status_str(job->outcome));
}

/* Our offers of this supplier product: [{sku, cost, price_above_cost}]. A price
 * above our configured cost means the config's cost is stale: the supplier
 * would refuse a price ceiling, or the ledger would be wrong. */
static json_t *our_offers(const ph_config *cfg, const char *supplier, const struct perkhub_item *it)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < cfg->nproducts; i++)
        for (size_t j = 0; j < cfg->products[i].noffers; j++) {
            const ph_offer_conf *o = &cfg->products[i].offers[j];
            if (strcmp(o->supplier, supplier) || strcmp(o->supplier_sku, it->product_id))
                continue;
            json_array_append_new(arr, json_pack("{s:s,s:o,s:b}", "sku", cfg->products[i].sku,
                                                 "cost", money_or_null(o->cost), "price_above_cost",
                                                 it->price > o->cost));
        }
    return arr;
}

static int catalog_done(ph_req *r)
{
    ask *a = r->ext;
    const struct perkhub_result *res = &a->job.res;
    if (a->job.outcome != PERKHUB_OK || !a->job.parsed)
        return exchange_failed(r, &a->job);
    if (!a->items && !(a->items = json_array()))
        return ph_req_fail(r, PH_ENOMEM, NULL);
    json_t *items = a->items;
    for (size_t i = 0; i < res->nitems; i++) {
        const struct perkhub_item *it = &res->items[i];
        json_t *j = json_pack(
            "{s:s,s:s?,s:s,s:o,s:o,s:o,s:b}", "supplier_sku", it->product_id, "name", it->name,
            "delivery",
            ph_delivery_name(it->kind == PERKHUB_OP_RECHARGE ? PH_DELIVERY_RECHARGE
                                                             : PH_DELIVERY_CARD_CODE),
            "face_value", money_or_null(it->face_value), "price", money_or_null(it->price), "stock",
            it->stock < 0 ? json_null() : json_integer(it->stock), "on_sale", it->on_sale);
        json_object_set_new(j, "offers", our_offers(r->cfg->cfg, r->seg[0], it));
        json_array_append_new(items, j);
    }
    if (res->next) { /* a multi-step exchange: the next page */
        int step = a->job.op.step + 1;
        if (step >= CATALOG_PAGES_MAX)
            return ph_req_error(r, 502, "supplier_error",
                                "supplier '%.64s': its catalog did not end after %d pages",
                                r->seg[0], CATALOG_PAGES_MAX);
        char *st = res->next_state ? strdup(res->next_state) : NULL;
        if (res->next_state && !st)
            return ph_req_fail(r, PH_ENOMEM, NULL);
        ph_sio_job_clear(&a->job);
        free(a->state);
        a->state = st;
        ph_sio_job next = {.sup = a->job.sup, .limits = a->job.limits, .done = ask_done, .arg = a};
        next.op.kind = PERKHUB_OP_CATALOG;
        next.op.step = step;
        next.op.state = a->state;
        a->job = next;
        ph_req_suspend(r, catalog_done);
        if (ph_sio_submit(r->env->sio, &a->job) != PH_OK) {
            a->job.outcome = PERKHUB_DEFINITE_FAILURE;
            snprintf(a->job.detail, sizeof a->job.detail, "shutting down");
            ph_req_wake(r);
        }
        return PH_REQ_SUSPENDED;
    }
    a->items = NULL;
    return ph_req_json(r, 200, json_pack("{s:s,s:o}", "supplier", r->seg[0], "items", items));
}

static int balance_done(ph_req *r)
{
    ask *a = r->ext;
    if (a->job.outcome != PERKHUB_OK || !a->job.parsed)
        return exchange_failed(r, &a->job);
    return ph_req_json(r, 200,
                       json_pack("{s:s,s:o}", "supplier", r->seg[0], "balance",
                                 money_or_null(a->job.res.balance)));
}

/* Starts one exchange of `kind` with supplier seg[0]; resume builds the answer. */
static int ask_supplier(ph_req *r, int kind, uint64_t cap, ph_handler_fn resume)
{
    const ph_supplier_conf *sc = ph_config_supplier(r->cfg->cfg, r->seg[0]);
    ph_supplier *sup;
    if (!sc || ph_suppliers_acquire(r->env->suppliers, r->seg[0], &sup) != PH_OK)
        return ph_req_error(r, 404, "not_found", "supplier: no such running supplier");
    if (!(ph_supplier_plugin(sup)->capabilities & cap)) {
        ph_supplier_release(sup);
        return ph_req_error(r, 422, "unsupported", "supplier: its plugin cannot do this");
    }
    ask *a = calloc(1, sizeof *a);
    if (!a) {
        ph_supplier_release(sup);
        return ph_req_fail(r, PH_ENOMEM, NULL);
    }
    a->r = r;
    a->job.sup = sup;
    a->job.op.kind = kind;
    a->job.limits = ph_sio_limits_of(sc);
    a->job.done = ask_done;
    a->job.arg = a;
    r->ext = a;
    r->ext_free = ask_free;
    ph_req_suspend(r, resume);
    if (ph_sio_submit(r->env->sio, &a->job) != PH_OK) {
        a->job.outcome = PERKHUB_DEFINITE_FAILURE;
        snprintf(a->job.detail, sizeof a->job.detail, "shutting down");
        ph_req_wake(r);
    }
    return PH_REQ_SUSPENDED;
}

int ph_api_supplier_catalog(ph_req *r)
{
    return ask_supplier(r, PERKHUB_OP_CATALOG, PERKHUB_CAP_CATALOG, catalog_done);
}

int ph_api_supplier_balance(ph_req *r)
{
    return ask_supplier(r, PERKHUB_OP_BALANCE, PERKHUB_CAP_BALANCE, balance_done);
}
