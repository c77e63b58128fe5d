/*
 * api_replenish.c — replenishments (docs/api.md, "Replenishments"): the list
 * for ops, filtered by SKU and state and paged by id, each record as the store
 * keeps it (store.h, ph_store_replenish_list).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "base/util.h"
#include "store/store.h"

int ph_api_replenish_list(ph_req *r)
{
    const char *sku = ph_req_query(r, "sku"), *st = ph_req_query(r, "state");
    uint64_t after = 0, limit = 100;
    int state = 0;
    if (st && !(state = ph_repl_state_parse(st)))
        return ph_req_error(r, 400, "invalid_request", "state: in_flight, succeeded or failed");
    if (sku && !ph_ident_valid(sku, PH_SKU_MAX))
        return ph_req_error(r, 400, "invalid_request", "sku: not a SKU");
    if (ph_req_page(r, &after, &limit, 1000))
        return PH_REQ_DONE;
    char **list;
    size_t n;
    uint64_t next = 0;
    ph_err err = {0};
    int rc = ph_store_replenish_list(r->env->store, sku, state, after, (size_t)limit, &list, &n,
                                     &next, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *rec = json_loads(list[i], 0, NULL);
        /* held_fen is the writer's bookkeeping of the day's budget, not the API's */
        json_object_del(rec, "held_fen");
        json_array_append_new(arr, rec ? rec : json_null());
    }
    ph_store_event_list_free(list, n);
    return ph_req_json(r, 200,
                       json_pack("{s:o,s:o}", "replenishments", arr, "next_after",
                                 next ? json_integer((json_int_t)next) : json_null()));
}
