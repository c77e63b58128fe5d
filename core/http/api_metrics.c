/*
 * api_metrics.c — GET /metrics: the registry's counters and histograms, and
 * the gauges read at scrape time, in the Prometheus text format 0.0.4.
 *
 * Who may scrape is the router's business (config metrics.access, http_api.c).
 * What a scrape costs: the registry is read with relaxed loads (no lock an
 * order takes); the gauges are one supplier-set listing, one health read per
 * supplier (the I/O engine's lock, briefly), one store snapshot for stock
 * (a count per SKU kept by LMDB, no scan of the codes) and the pending index
 * (orders with an attempt not final, at most PENDING_SCAN of them).
 * No label is ever a code, an account or a token: route patterns, status
 * classes, supplier ids, client names and SKUs (configured names).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "metrics/metrics.h"
#include "risk/risk.h"
#include "supply/supplier_io.h"
#include "supply/suppliers.h"

#define US           1e-6  /* microseconds to seconds */
#define PENDING_SCAN 1000u /* unfinished orders a scrape reads at most (each loaded whole) */

static void put_requests(ph_mx *mx, ph_metrics *m)
{
    static const char *const classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    ph_mx_family(mx, "perkhub_http_request_duration_seconds", "histogram",
                 "HTTP requests by route pattern and status class, from a complete request "
                 "header to the end of the answer (suspensions included)");
    const char *route, *method;
    for (size_t i = 0; i < PH_METRICS_ROUTES && (route = ph_http_route_name(i, &method)); i++)
        for (unsigned c = 0; c < PH_MX_STATUS_CLASSES; c++) {
            ph_label l[] = {{"method", method}, {"route", route}, {"code", classes[c]}};
            ph_mx_hist(mx, "perkhub_http_request_duration_seconds", l, 3, &m->http[i][c], US, 1);
        }
}

static void put_orders(ph_mx *mx, ph_metrics *m)
{
    static const char *const outcomes[] = {"succeeded", "failed"};
    static const char *const sources[] = {"stock", "supplier"};
    ph_mx_family(mx, "perkhub_orders_total", "counter",
                 "Orders that became succeeded or failed since start, by client and source: "
                 "counted when the command that makes them so commits (replays and refused "
                 "requests count nothing)");
    for (unsigned s = 0; s <= PH_METRICS_SLOTS; s++) {
        const char *client = "_other";
        if (s < PH_METRICS_SLOTS) {
            if (atomic_load_explicit(&m->client_slot[s].state, memory_order_acquire) != 2)
                continue;
            client = m->client_slot[s].name;
        }
        for (unsigned src = 0; src < PH_MX_SRC_COUNT; src++)
            for (unsigned o = 0; o < PH_MX_OUT_COUNT; o++) {
                uint64_t v = atomic_load_explicit(&m->orders[s][src][o], memory_order_relaxed);
                if (!v && s == PH_METRICS_SLOTS)
                    continue;
                ph_label l[] = {
                    {"client", client}, {"source", sources[src]}, {"outcome", outcomes[o]}};
                ph_mx_sample(mx, "perkhub_orders_total", l, 3, (double)v);
            }
    }
}

static void put_open_orders(ph_mx *mx, ph_req *r)
{
    uint64_t unknown = 0, processing = 0, after = 0;
    size_t seen = 0;
    for (;;) {
        ph_order **list = NULL;
        size_t n = 0;
        ph_err err = {0};
        size_t want = PENDING_SCAN - seen < 256 ? PENDING_SCAN - seen : 256;
        if (ph_store_pending_list(r->env->store, after, want, &list, &n, &err) != PH_OK)
            break;
        for (size_t i = 0; i < n; i++) {
            unknown += list[i]->state == PH_ORDER_UNKNOWN;
            processing += list[i]->state == PH_ORDER_PROCESSING;
            after = list[i]->id;
        }
        ph_order_list_free(list, n);
        seen += n;
        if (n < want || seen >= PENDING_SCAN)
            break;
    }
    ph_mx_family(mx, "perkhub_orders_open", "gauge",
                 "Supplier orders not final now, by state, from the pending index; a scrape "
                 "reads at most the first 1000 of them (a sum of 1000 means at least that)");
    ph_mx_sample(mx, "perkhub_orders_open", (ph_label[]){{"state", "unknown"}}, 1, (double)unknown);
    ph_mx_sample(mx, "perkhub_orders_open", (ph_label[]){{"state", "processing"}}, 1,
                 (double)processing);
    uint64_t stuck;
    ph_err err = {0};
    if (ph_store_stuck_count(r->env->store, &stuck, &err) == PH_OK) {
        ph_mx_family(mx, "perkhub_orders_stuck", "gauge",
                     "Supplier orders escalated as stuck (open past the supplier's "
                     "stuck_after_s) and not settled yet, all of them");
        ph_mx_sample(mx, "perkhub_orders_stuck", NULL, 0, (double)stuck);
    }
}

static void put_store(ph_mx *mx, ph_req *r, ph_metrics *m)
{
    ph_writer_stats ws;
    ph_store_writer_stats(r->env->store, &ws);
    ph_mx_family(mx, "perkhub_store_commits_total", "counter",
                 "Durable group commits of the store's writer since start");
    ph_mx_sample(mx, "perkhub_store_commits_total", NULL, 0, (double)ws.commits);
    ph_mx_family(mx, "perkhub_store_commands_total", "counter",
                 "Commands applied in those commits");
    ph_mx_sample(mx, "perkhub_store_commands_total", NULL, 0, (double)ws.commands);
    ph_mx_family(mx, "perkhub_store_batch_commands", "histogram",
                 "Commands per durable batch (the group-commit factor)");
    ph_mx_hist(mx, "perkhub_store_batch_commands", NULL, 0, &m->batch_size, 1, 0);
    ph_mx_family(mx, "perkhub_store_batch_duration_seconds", "histogram",
                 "Time the writer spends on one batch: applying its commands and the durable "
                 "commit");
    ph_mx_hist(mx, "perkhub_store_batch_duration_seconds", NULL, 0, &m->batch_seconds, US, 0);
    ph_mx_family(mx, "perkhub_store_map_size_bytes", "gauge",
                 "Size of the LMDB map (it doubles when full)");
    ph_mx_sample(mx, "perkhub_store_map_size_bytes", NULL, 0,
                 (double)ph_store_map_size(r->env->store));
    ph_mx_family(mx, "perkhub_store_map_used_bytes", "gauge",
                 "Bytes of the LMDB map in use (pages up to the last one used)");
    ph_mx_sample(mx, "perkhub_store_map_used_bytes", NULL, 0,
                 (double)ph_store_map_used(r->env->store));
    ph_store_health h;
    ph_store_health_get(r->env->store, &h);
    ph_mx_family(mx, "perkhub_store_writable", "gauge",
                 "1 when the last batch committed, 0 while the disk or the map is full");
    ph_mx_sample(mx, "perkhub_store_writable", NULL, 0, h.condition == PH_STORE_WRITABLE);
    ph_mx_family(mx, "perkhub_discrepancies_open", "gauge",
                 "Supplier truth contradicting our records, waiting for ops (one counter read)");
    ph_mx_sample(mx, "perkhub_discrepancies_open", NULL, 0,
                 (double)ph_store_discrep_open(r->env->store));
    uint64_t open[PH_ALERT_KINDS];
    ph_store_alerts_open(r->env->store, open);
    ph_mx_family(mx, "perkhub_alerts_open", "gauge",
                 "Stock and balance alerts fired and not yet acknowledged, by kind");
    for (int i = 0; i < PH_ALERT_KINDS; i++) {
        ph_label l = {"kind", ph_alert_kind_name(i + 1)};
        ph_mx_sample(mx, "perkhub_alerts_open", &l, 1, (double)open[i]);
    }
}

static void put_stock(ph_mx *mx, ph_req *r)
{
    char **json = NULL;
    uint64_t *avail = NULL;
    size_t n = 0;
    ph_err err = {0};
    if (ph_store_product_list(r->env->store, &json, &avail, &n, &err) != PH_OK)
        return;
    ph_mx_family(mx, "perkhub_stock_available", "gauge",
                 "Card codes of the SKU that can be issued now (local stock)");
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_loads(json[i], 0, NULL);
        const char *sku = json_string_value(json_object_get(p, "sku"));
        if (sku)
            ph_mx_sample(mx, "perkhub_stock_available", (ph_label[]){{"sku", sku}}, 1,
                         (double)avail[i]);
        json_decref(p);
    }
    ph_store_product_list_free(json, avail, n);
}

static void put_suppliers(ph_mx *mx, ph_req *r, ph_metrics *m)
{
    size_t n = ph_suppliers_list(r->env->suppliers, NULL, 0);
    ph_supplier_info *info = calloc(n + 1, sizeof *info);
    ph_sio_health *hs = calloc(n + 1, sizeof *hs);
    if (!info || !hs) {
        free(info);
        free(hs);
        mx->oom = 1;
        return;
    }
    n = ph_suppliers_list(r->env->suppliers, info, n);
    for (size_t i = 0; i < n; i++)
        ph_sio_health_get(r->env->sio, info[i].id, &hs[i]);

    static const char *const sup_states[] = {PH_SUPPLIER_READY, PH_SUPPLIER_DISABLED,
                                             PH_SUPPLIER_ERROR, PH_SUPPLIER_AUTH_FAILED};
    ph_mx_family(mx, "perkhub_supplier_state", "gauge",
                 "1 for the supplier's current state (error: it could not start; "
                 "GET /v1/suppliers says why)");
    for (size_t i = 0; i < n; i++) {
        const char *st = ph_api_supplier_state(&info[i], &hs[i]);
        for (unsigned k = 0; k < 4; k++)
            ph_mx_sample(mx, "perkhub_supplier_state",
                         (ph_label[]){{"supplier", info[i].id}, {"state", sup_states[k]}}, 2,
                         strcmp(st, sup_states[k]) == 0);
    }
    static const char *const states[] = {"closed", "open", "half_open"};
    ph_mx_family(mx, "perkhub_supplier_breaker_state", "gauge",
                 "1 for the circuit breaker's current state, per supplier");
    for (size_t i = 0; i < n; i++)
        for (unsigned k = 0; k < 3; k++)
            ph_mx_sample(mx, "perkhub_supplier_breaker_state",
                         (ph_label[]){{"supplier", info[i].id}, {"state", states[k]}}, 2,
                         strcmp(hs[i].breaker, states[k]) == 0);
    ph_mx_family(mx, "perkhub_supplier_in_flight", "gauge", "Exchanges on the wire now");
    for (size_t i = 0; i < n; i++)
        ph_mx_sample(mx, "perkhub_supplier_in_flight", (ph_label[]){{"supplier", info[i].id}}, 1,
                     hs[i].in_flight);
    ph_mx_family(mx, "perkhub_supplier_queued", "gauge",
                 "Exchanges waiting for the in-flight limit or their start time");
    for (size_t i = 0; i < n; i++)
        ph_mx_sample(mx, "perkhub_supplier_queued", (ph_label[]){{"supplier", info[i].id}}, 1,
                     hs[i].queued);
    ph_mx_family(mx, "perkhub_supplier_exchanges_total", "counter",
                 "Finished supplier exchanges since start, by outcome class");
    for (size_t i = 0; i < n; i++) {
        const struct {
            const char *name;
            uint64_t v;
        } o[] = {{"ok", hs[i].ok},
                 {"definite_failure", hs[i].definite},
                 {"retryable", hs[i].retryable},
                 {"ambiguous", hs[i].ambiguous},
                 {"not_sent", hs[i].not_sent}};
        for (size_t k = 0; k < sizeof o / sizeof o[0]; k++)
            ph_mx_sample(mx, "perkhub_supplier_exchanges_total",
                         (ph_label[]){{"supplier", info[i].id}, {"outcome", o[k].name}}, 2,
                         (double)o[k].v);
    }
    free(info);
    free(hs);

    ph_mx_family(mx, "perkhub_supplier_exchange_duration_seconds", "histogram",
                 "Supplier exchanges from their start to their outcome");
    for (unsigned s = 0; s <= PH_METRICS_SLOTS; s++) {
        const char *id = "_other";
        if (s < PH_METRICS_SLOTS) {
            if (atomic_load_explicit(&m->sup_slot[s].state, memory_order_acquire) != 2)
                continue;
            id = m->sup_slot[s].name;
        }
        ph_mx_hist(mx, "perkhub_supplier_exchange_duration_seconds", (ph_label[]){{"supplier", id}},
                   1, &m->sup_seconds[s], US, 1);
    }
}

static void put_risk(ph_mx *mx, ph_req *r, ph_metrics *m)
{
    ph_mx_family(mx, "perkhub_risk_checks_total", "counter",
                 "Orders the risk engine decided on since start");
    ph_mx_sample(mx, "perkhub_risk_checks_total", NULL, 0,
                 (double)atomic_load_explicit(&m->risk_checks, memory_order_relaxed));
    ph_mx_family(mx, "perkhub_risk_decisions_total", "counter",
                 "Risk decisions since start, by action");
    for (int a = PH_RISK_ALLOW; a <= PH_RISK_DENY; a++)
        ph_mx_sample(mx, "perkhub_risk_decisions_total",
                     (ph_label[]){{"action", ph_risk_action_name(a)}}, 1,
                     (double)atomic_load_explicit(&m->risk_decisions[a], memory_order_relaxed));
    ph_mx_family(mx, "perkhub_risk_dry_run_hits_total", "counter",
                 "Dry-run rules that fired (recorded, nothing done) since start");
    ph_mx_sample(mx, "perkhub_risk_dry_run_hits_total", NULL, 0,
                 (double)atomic_load_explicit(&m->risk_dry_run_hits, memory_order_relaxed));
    ph_mx_family(mx, "perkhub_risk_fail_closed_total", "counter",
                 "Risk checks that found no memory for a counter and took it as full");
    ph_mx_sample(mx, "perkhub_risk_fail_closed_total", NULL, 0,
                 (double)atomic_load_explicit(&m->risk_fail_closed, memory_order_relaxed));
    if (!r->env->risk)
        return;
    ph_risk_stats st;
    ph_risk_stats_get(r->env->risk, &st);
    ph_mx_family(mx, "perkhub_risk_rules", "gauge", "Risk rules in force (enabled)");
    ph_mx_sample(mx, "perkhub_risk_rules", NULL, 0, (double)st.rules);
    ph_mx_family(mx, "perkhub_risk_list_entries", "gauge", "Block and allow list entries held");
    ph_mx_sample(mx, "perkhub_risk_list_entries", NULL, 0, (double)st.entries);
    ph_mx_family(mx, "perkhub_risk_counters", "gauge",
                 "Subject windows the risk rules hold (one per rule and subject)");
    ph_mx_sample(mx, "perkhub_risk_counters", NULL, 0, (double)st.counters);
}

static void put_keys(ph_mx *mx, ph_req *r)
{
    ph_mx_family(mx, "perkhub_keyring_active_key_id", "gauge",
                 "Id of the key new codes and accounts are sealed with");
    ph_mx_sample(mx, "perkhub_keyring_active_key_id", NULL, 0, ph_keyring_active_id(r->env->keys));
    uint16_t ids[64];
    size_t n = ph_store_key_ids(r->env->store, ids, 64);
    ph_mx_family(mx, "perkhub_store_key_id_in_use", "gauge",
                 "1 for each sealing key id the stored data has been sealed with (a key check is "
                 "recorded for it in the store)");
    for (size_t i = 0; i < n && i < 64; i++) {
        char id[8];
        snprintf(id, sizeof id, "%u", (unsigned)ids[i]);
        ph_mx_sample(mx, "perkhub_store_key_id_in_use", (ph_label[]){{"key_id", id}}, 1, 1);
    }
    /* key rotation: what older keys still seal, as the re-sealer last counted it */
    ph_reseal_status st;
    ph_store_reseal_status_get(r->env->store, &st);
    ph_mx_family(mx, "perkhub_reseal_pending_items", "gauge",
                 "Codes and accounts still sealed with an older key, by key id (the re-sealer "
                 "moves them to the active key; retire a key at 0)");
    for (size_t i = 0; i < st.nold && i < sizeof st.old / sizeof st.old[0]; i++) {
        char id[8];
        snprintf(id, sizeof id, "%u", (unsigned)st.old[i].id);
        ph_mx_sample(mx, "perkhub_reseal_pending_items", (ph_label[]){{"key_id", id}}, 1,
                     (double)(st.old[i].codes + st.old[i].accounts));
    }
    ph_mx_family(mx, "perkhub_reseal_moved_items_total", "counter",
                 "Codes and accounts re-sealed under the active key since start");
    ph_mx_sample(mx, "perkhub_reseal_moved_items_total", NULL, 0, (double)st.moved);
}

int ph_api_metrics(ph_req *r)
{
    ph_metrics *m = r->env->metrics;
    if (!m)
        return ph_req_error(r, 404, "not_found", "metrics are not kept by this listener");
    ph_mx mx = {0};
    put_orders(&mx, m);
    put_open_orders(&mx, r);
    put_requests(&mx, m);
    put_store(&mx, r, m);
    put_stock(&mx, r);
    put_suppliers(&mx, r, m);
    put_keys(&mx, r);
    put_risk(&mx, r, m);
    ph_api_webhook_metrics(&mx, r);
    if (mx.oom || !mx.buf) {
        ph_mx_free(&mx);
        return ph_req_fail(r, PH_ENOMEM, NULL);
    }
    /* the text is handed over: ph_req_text frees it with free() */
    return ph_req_text(r, 200, mx.buf, mx.len, "text/plain; version=0.0.4; charset=utf-8");
}
