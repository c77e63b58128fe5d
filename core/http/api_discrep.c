/*
 * api_discrep.c — discrepancies (docs/api.md, "Discrepancies"): the list and
 * one record for ops, and their resolution (accept the supplier's truth, or
 * dispute it with a note), each a store command that keeps the token's client
 * name and the note (store.h, PH_CMD_RESOLVE).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "base/util.h"
#include "store/store.h"

/* A stored record (JSON text) as the API shows it: the record itself. NULL
 * when it does not parse (--check-store says more). */
static json_t *record(const char *txt)
{
    return json_loads(txt, 0, NULL);
}

int ph_api_discrep_list(ph_req *r)
{
    const char *st = ph_req_query(r, "status"), *sup = ph_req_query(r, "supplier");
    uint64_t after = 0, limit = 100;
    int status = 0;
    if (st && !(status = ph_discrep_status_parse(st)))
        return ph_req_error(r, 400, "invalid_request", "status: open, accepted or disputed");
    if (sup && !ph_ident_valid(sup, PH_SKU_MAX))
        return ph_req_error(r, 400, "invalid_request", "supplier: not a supplier id");
    if (ph_req_page(r, &after, &limit, 1000))
        return PH_REQ_DONE;
    char **list;
    size_t n;
    uint64_t next = 0;
    ph_err err = {0};
    int rc = ph_store_discrep_list(r->env->store, status, sup, after, (size_t)limit, &list, &n,
                                   &next, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, record(list[i]));
    ph_store_event_list_free(list, n);
    return ph_req_json(r, 200,
                       json_pack("{s:o,s:o,s:I}", "discrepancies", arr, "next_after",
                                 next ? json_integer((json_int_t)next) : json_null(), "open",
                                 (json_int_t)ph_store_discrep_open(r->env->store)));
}

static int id_of(ph_req *r, uint64_t *id)
{
    if (ph_u64_parse(r->seg[0], id) || !*id)
        return ph_req_error(r, 400, "invalid_request", "discrepancy id: expected a number"), -1;
    return 0;
}

int ph_api_discrep_get(ph_req *r)
{
    uint64_t id;
    if (id_of(r, &id))
        return PH_REQ_DONE;
    char *txt = NULL;
    ph_err err = {0};
    int rc = ph_store_discrep_get(r->env->store, id, &txt, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *j = record(txt);
    free(txt);
    return ph_req_json(r, 200, json_pack("{s:o}", "discrepancy", j));
}

static int resolved(ph_req *r)
{
    if (r->cmd.rc)
        return ph_req_fail(r, r->cmd.rc, &r->cmd.err);
    ph_log(r->env->log, PH_LOG_INFO, r->reqid, "discrepancy.resolved", "id=%llu action=%s who=%s",
           (unsigned long long)r->cmd.in.resolve.id,
           r->cmd.in.resolve.accept ? "accept" : "dispute", r->client->name);
    return ph_req_json(r, 200, json_pack("{s:o}", "discrepancy", record(r->cmd.record)));
}

/* accept = 1: POST .../accept; 0: POST .../dispute (a note required). */
static int resolve(ph_req *r, int accept)
{
    uint64_t id;
    if (id_of(r, &id))
        return PH_REQ_DONE;
    json_t *b = NULL;
    if (r->body_len && ph_req_body_fields(r, "note", &b))
        return PH_REQ_DONE;
    json_t *note = json_object_get(b, "note");
    const char *s = json_string_value(note);
    int bad = (note && !json_is_string(note)) || (s && strlen(s) > PH_NOTE_MAX) ||
              (!accept && (!s || !*s));
    if (!bad && s)
        for (const char *p = s; *p && !bad; p++)
            bad = (unsigned char)*p < 0x20 || *p == 0x7f;
    if (!bad)
        snprintf(r->arg[0], sizeof r->arg[0], "%s", s ? s : "");
    json_decref(b);
    if (bad)
        return ph_req_error(r, 400, "invalid_request",
                            "note: %sa string of at most %d bytes without control characters",
                            accept ? "" : "required to dispute: ", PH_NOTE_MAX);
    r->cmd.type = PH_CMD_RESOLVE;
    r->cmd.now = ph_now_ms();
    r->cmd.in.resolve.id = id;
    r->cmd.in.resolve.accept = accept;
    r->cmd.in.resolve.who = r->client->name;
    r->cmd.in.resolve.note = r->arg[0];
    ph_req_audit(r, &r->cmd, accept ? "discrepancy.accept" : "discrepancy.dispute",
                 json_pack("{s:I}", "discrepancy_id", (json_int_t)id));
    return ph_req_submit(r, resolved);
}

int ph_api_discrep_accept(ph_req *r)
{
    return resolve(r, 1);
}

int ph_api_discrep_dispute(ph_req *r)
{
    return resolve(r, 0);
}
