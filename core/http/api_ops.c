/*
 * api_ops.c — health, readiness, the events feed, suppliers and stats.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "base/version.h"
#include "http/api.h"
#include "repl/repl.h"
#include "supply/supplier_io.h"
#include "supply/suppliers.h"
#include "base/util.h"
#include "http/views.h"
#include "store/event_view.h"

/* The process is up (200 whatever the store says: restarting would not free
 * the disk); `status` says "ok" or why the store cannot write now, and `store`
 * the detail, cleared by the next commit that succeeds (store.h,
 * ph_store_health). */
int ph_api_health(ph_req *r)
{
    static const char *const names[] = {"ok", "disk_full", "map_full"};
    ph_store_health h;
    ph_store_health_get(r->env->store, &h);
    const char *name =
        h.condition >= 0 && h.condition <= PH_STORE_MAP_FULL ? names[h.condition] : "store_error";
    json_t *store = json_pack("{s:b}", "writable", h.condition == PH_STORE_WRITABLE);
    if (h.condition != PH_STORE_WRITABLE) {
        json_object_set_new(store, "condition", json_string(name));
        json_object_set_new(store, "detail", json_string(h.detail));
        json_object_set_new(store, "failed_commits", json_integer((json_int_t)h.failed_batches));
        if (h.condition == PH_STORE_DISK_FULL)
            json_object_set_new(store, "free_bytes", json_integer((json_int_t)h.free_bytes));
    }
    json_t *body =
        json_pack("{s:s,s:s,s:o}", "status", name, "version", PH_VERSION, "store", store);
    uint64_t stuck;
    ph_err err = {0};
    if (body && ph_store_stuck_count(r->env->store, &stuck, &err) == PH_OK) /* issue 11 */
        json_object_set_new(body, "orders", json_pack("{s:I}", "stuck", (json_int_t)stuck));
    /* supplier truth waiting for ops (issue 11): a count, never what they say */
    if (body)
        json_object_set_new(
            body, "discrepancies",
            json_pack("{s:I}", "open", (json_int_t)ph_store_discrep_open(r->env->store)));
    /* stock and balance alerts not yet acknowledged (issue 12): counts only */
    if (body)
        json_object_set_new(body, "alerts", ph_api_alerts_open(r->env->store));
    if (body && r->env->repl) { /* issue 19: this node's role and how far it applied the stream */
        static const char *const roles[] = {"?", "standby", "promoting", "leader"};
        char leader[512];
        uint64_t applied, last;
        int role = ph_repl_role(r->env->repl);
        ph_repl_leader_url(r->env->repl, leader, sizeof leader);
        ph_repl_seqs(r->env->repl, &applied, &last);
        int64_t stale = ph_repl_staleness_ms(r->env->repl);
        json_t *rep =
            json_pack("{s:s,s:s,s:I,s:I,s:b,s:I}", "role", roles[role >= 1 && role <= 3 ? role : 0],
                      "leader", leader, "applied_seq", (json_int_t)applied, "stream_last_seq",
                      (json_int_t)last, "connected", ph_repl_online(r->env->repl),
                      "max_staleness_ms", (json_int_t)r->cfg->cfg->repl_max_staleness_ms);
        /* how old this node's data may be: null when unknown (ph_repl_staleness_ms) */
        if (rep)
            json_object_set_new(rep, "staleness_ms",
                                stale >= 0 ? json_integer((json_int_t)stale) : json_null());
        json_object_set_new(body, "replication", rep);
    }
    return ph_req_json(r, 200, body);
}

int ph_api_ready(ph_req *r)
{
    int ready = atomic_load(r->env->ready);
    return ph_req_json(r, ready ? 200 : 503,
                       json_pack("{s:s}", "status", ready ? "ready" : "stopping"));
}

/* Ops see every event; a client with the fulfill scope only the events about
 * its own orders, each cut to the mall's allow-list (store/event_view.h). That filter examines at
 * most PH_EVENTS_SCAN events per request: next_after is the last one examined and `more` says
 * whether to ask again, even after an empty page. */
#define PH_EVENTS_SCAN 10000
int ph_api_events(ph_req *r)
{
    uint64_t after = 0, limit = 100;
    if (ph_req_page(r, &after, &limit, 1000))
        return PH_REQ_DONE;
    int ops = ph_req_has_scope(r, PH_SCOPE_OPS);
    assert(ops || ph_req_has_scope(r, PH_SCOPE_FULFILL)); /* the route's scopes */
    char **list;
    size_t n;
    uint64_t next;
    int more;
    ph_err err = {0};
    int rc = ph_store_event_scan(r->env->store, ops ? NULL : r->client->name, after, limit,
                                 PH_EVENTS_SCAN, &list, &n, &next, &more, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *ev = json_loads(list[i], JSON_DISABLE_EOF_CHECK, NULL);
        if (ev)
            json_array_append_new(arr, ops ? ev : ph_event_mall_cut(ev));
    }
    ph_store_event_list_free(list, n);
    return ph_req_json(
        r, 200,
        json_pack("{s:o,s:I,s:b}", "events", arr, "next_after", (json_int_t)next, "more", more));
}

/* The I/O engine's view of a supplier: circuit breaker, credentials and
 * exchange counts. */
static json_t *supplier_health(const ph_sio_health *hp)
{
    const ph_sio_health h = *hp;
    json_t *j = json_pack("{s:s,s:i,s:i,s:i,s:{s:I,s:I,s:I,s:I,s:I,s:I}}", "breaker", h.breaker,
                          "consecutive_failures", (int)h.consecutive_failures, "in_flight",
                          (int)h.in_flight, "queued", (int)h.queued, "exchanges", "sent",
                          (json_int_t)h.sent, "ok", (json_int_t)h.ok, "definite_failure",
                          (json_int_t)h.definite, "retryable", (json_int_t)h.retryable, "ambiguous",
                          (json_int_t)h.ambiguous, "not_sent", (json_int_t)h.not_sent);
    ph_view_time(j, "opened_at", h.opened_at);
    json_t *auth = json_pack("{s:s}", "state", h.auth_failed ? "failed" : "ok");
    if (h.auth_failed) {
        json_object_set_new(auth, "why", json_string(h.auth_why));
        ph_view_time(auth, "since", h.auth_failed_at);
        ph_view_time(auth, "next_probe_at", h.auth_probe_at);
    }
    json_object_set_new(j, "auth", auth);
    return j;
}

const char *ph_api_supplier_state(ph_supplier_info *info, const ph_sio_health *h)
{
    /* a running supplier that refuses our credentials is not ready: it says
     * so, and why (an HTTP status or a reason word, never its text) */
    if (!h->auth_failed || strcmp(info->state, PH_SUPPLIER_READY))
        return info->state;
    snprintf(info->error, sizeof info->error, "%s", h->auth_why);
    return PH_SUPPLIER_AUTH_FAILED;
}

int ph_api_suppliers(ph_req *r)
{
    size_t n = ph_suppliers_list(r->env->suppliers, NULL, 0);
    ph_supplier_info *info = calloc(n + 1, sizeof *info);
    if (!info)
        return ph_req_fail(r, PH_ENOMEM, NULL);
    n = ph_suppliers_list(r->env->suppliers, info, n);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        char abi[16];
        snprintf(abi, sizeof abi, "%u.%u", info[i].abi_major, info[i].abi_minor);
        ph_sio_health h;
        ph_sio_health_get(r->env->sio, info[i].id, &h);
        const char *state = ph_api_supplier_state(&info[i], &h);
        json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:b,s:i,s:s,s:s?}", "id", info[i].id, "plugin",
                              info[i].plugin, "plugin_version", info[i].plugin_version, "abi", abi,
                              "enabled", info[i].enabled, "priority", info[i].priority, "state",
                              state, "error", info[i].error[0] ? info[i].error : NULL);
        json_object_set_new(j, "health", supplier_health(&h));
        json_object_set_new(j, "sync", ph_api_supplier_sync_view(r, info[i].id));
        /* the balance job's last reading (issue 12), null until one */
        json_object_set_new(j, "balance", ph_api_supplier_balance_view(r->env->store, info[i].id));
        json_array_append_new(arr, j);
    }
    free(info);
    return ph_req_json(r, 200, json_pack("{s:o}", "suppliers", arr));
}

/* Key rotation (store.h, "key rotation"): the sealing key and how far the
 * re-seal has moved older data to it. Ids and counts only. */
static json_t *keys_view(ph_req *r)
{
    static const char *const states[] = {"idle", "running", "done", "failed"};
    ph_reseal_status st;
    ph_store_reseal_status_get(r->env->store, &st);
    json_t *older = json_array();
    for (size_t i = 0; i < st.nold && i < sizeof st.old / sizeof st.old[0]; i++)
        json_array_append_new(older, json_pack("{s:i,s:I,s:I}", "key_id", (int)st.old[i].id,
                                               "codes", (json_int_t)st.old[i].codes, "accounts",
                                               (json_int_t)st.old[i].accounts));
    json_t *reseal =
        json_pack("{s:s,s:o,s:I,s:I,s:I}", "state",
                  st.state >= 0 && st.state <= PH_RESEAL_FAILED ? states[st.state] : "?", "older",
                  older, "moved", (json_int_t)st.moved, "skipped", (json_int_t)st.skipped,
                  "unreadable", (json_int_t)st.unreadable);
    if (reseal && st.detail[0])
        json_object_set_new(reseal, "detail", json_string(st.detail));
    return json_pack("{s:i,s:o}", "active_key_id", (int)ph_keyring_active_id(r->env->keys),
                     "reseal", reseal);
}

int ph_api_stats(ph_req *r)
{
    ph_store_stats st;
    ph_err err = {0};
    int rc = ph_store_stats_get(r->env->store, &st, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *skus = json_array();
    for (size_t i = 0; i < st.nskus; i++) {
        const uint64_t *s = st.skus[i].by_state;
        json_array_append_new(
            skus,
            json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "sku", st.skus[i].sku, "imported",
                      (json_int_t)st.skus[i].imported, "available",
                      (json_int_t)s[PH_CODE_AVAILABLE], "reserved", (json_int_t)s[PH_CODE_RESERVED],
                      "issued", (json_int_t)s[PH_CODE_ISSUED], "redeemed",
                      (json_int_t)s[PH_CODE_REDEEMED], "voided", (json_int_t)s[PH_CODE_VOIDED],
                      "expired", (json_int_t)s[PH_CODE_EXPIRED]));
    }
    ph_writer_stats ws;
    ph_store_writer_stats(r->env->store, &ws);
    json_t *body = json_pack(
        "{s:o,s:I,s:I,s:I,s:I,s:{s:I,s:I,s:I}}", "skus", skus, "codes", (json_int_t)st.codes,
        "orders", (json_int_t)st.orders, "last_event", (json_int_t)st.last_event, "map_size",
        (json_int_t)ph_store_map_size(r->env->store), "writer", "commits", (json_int_t)ws.commits,
        "commands", (json_int_t)ws.commands, "map_grows", (json_int_t)ws.map_grows);
    ph_store_stats_clear(&st);
    if (body)
        json_object_set_new(body, "keys", keys_view(r));
    return ph_req_json(r, 200, body);
}
