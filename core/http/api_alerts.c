/*
 * api_alerts.c — alerts (docs/api.md, "Alerts"): the list for ops and the
 * acknowledgement (store.h, PH_CMD_ALERT_ACK, audited); what the rest of the
 * API shows of them: the open count (health, /metrics), a supplier's last
 * balance (GET /v1/suppliers) and a product's local stock.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "http/views.h"
#include "base/util.h"
#include "store/store.h"

/* A stored alert as the API shows it: times as RFC 3339, the rest as stored. */
static json_t *alert_view(const char *txt)
{
    json_t *j = json_loads(txt, 0, NULL);
    static const char *const times[] = {"fired_at", "cleared_at", "acked_at"};
    for (size_t i = 0; j && i < sizeof times / sizeof *times; i++) {
        json_t *t = json_object_get(j, times[i]);
        if (!json_is_integer(t))
            continue;
        int64_t ms = json_integer_value(t);
        json_object_del(j, times[i]);
        ph_view_time(j, times[i], ms);
    }
    return j;
}

int ph_api_alert_list(ph_req *r)
{
    const char *st = ph_req_query(r, "state");
    int state = PH_ALERT_OPEN; /* what ops must look at, unless asked otherwise */
    if (st && strcmp(st, "all") == 0)
        state = 0;
    else if (st && (!(state = ph_alert_state_parse(st)) || state == PH_ALERT_CLEARED))
        return ph_req_error(r, 400, "invalid_request", "state: open, acknowledged or all");
    uint64_t after = 0, limit = 100;
    if (ph_req_page(r, &after, &limit, 1000))
        return PH_REQ_DONE;
    char **list;
    size_t n;
    uint64_t next = 0;
    ph_err err = {0};
    int rc =
        ph_store_alert_list(r->env->store, state, after, (size_t)limit, &list, &n, &next, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, alert_view(list[i]));
    ph_store_event_list_free(list, n);
    uint64_t open[PH_ALERT_KINDS], total = 0;
    ph_store_alerts_open(r->env->store, open);
    for (int i = 0; i < PH_ALERT_KINDS; i++)
        total += open[i];
    return ph_req_json(r, 200,
                       json_pack("{s:o,s:o,s:b,s:I}", "alerts", arr, "next_after",
                                 next ? json_integer((json_int_t)next) : json_null(), "more",
                                 next != 0, "open", (json_int_t)total));
}

static int acked(ph_req *r)
{
    if (r->cmd.rc)
        return ph_req_fail(r, r->cmd.rc, &r->cmd.err);
    ph_log(r->env->log, PH_LOG_INFO, r->reqid, "alert.acknowledged", "id=%llu by=%s",
           (unsigned long long)r->cmd.in.alert_ack.id, r->client->name);
    return ph_req_json(r, 200,
                       json_pack("{s:I,s:s,s:s}", "id", (json_int_t)r->cmd.in.alert_ack.id, "state",
                                 "acknowledged", "acked_by", r->client->name));
}

int ph_api_alert_ack(ph_req *r)
{
    uint64_t id;
    if (ph_u64_parse(r->seg[0], &id) || !id)
        return ph_req_error(r, 400, "invalid_request", "alert id: expected a number");
    json_t *b = NULL;
    if (r->body_len && ph_req_body_fields(r, "note", &b))
        return PH_REQ_DONE;
    json_t *note = json_object_get(b, "note");
    const char *s = json_string_value(note);
    int bad = (note && !json_is_string(note)) || (s && strlen(s) > PH_NOTE_MAX) ||
              (s && ph_text_invalid(s, strlen(s)));
    for (const char *q = s; q && *q && !bad; q++)
        bad = (unsigned char)*q < 0x20 || *q == 0x7f;
    if (!bad)
        snprintf(r->arg[0], sizeof r->arg[0], "%s", s ? s : "");
    json_decref(b);
    if (bad)
        return ph_req_error(r, 400, "invalid_request",
                            "note: a string of at most %d bytes without control characters",
                            PH_NOTE_MAX);
    r->cmd.type = PH_CMD_ALERT_ACK;
    r->cmd.now = ph_now_ms();
    r->cmd.in.alert_ack.id = id;
    r->cmd.in.alert_ack.by = r->client->name;
    r->cmd.in.alert_ack.note = r->arg[0];
    ph_req_audit(r, &r->cmd, "alert.ack", json_pack("{s:I}", "alert_id", (json_int_t)id));
    return ph_req_submit(r, acked);
}

json_t *ph_api_alerts_open(ph_store *s)
{
    uint64_t open[PH_ALERT_KINDS], total = 0;
    ph_store_alerts_open(s, open);
    json_t *by = json_object();
    for (int i = 0; i < PH_ALERT_KINDS; i++) {
        total += open[i];
        json_object_set_new(by, ph_alert_kind_name(i + 1), json_integer((json_int_t)open[i]));
    }
    return json_pack("{s:I,s:o}", "open", (json_int_t)total, "by_kind", by);
}

json_t *ph_api_supplier_balance_view(ph_store *s, const char *supplier)
{
    int64_t balance, at;
    char buf[32];
    ph_err err = {0};
    if (ph_store_balance_get(s, supplier, &balance, &at, &err) != PH_OK)
        return json_null();
    json_t *j = json_pack("{s:s}", "balance", ph_money_format(balance, buf, sizeof buf));
    ph_view_time(j, "at", at);
    return j;
}
