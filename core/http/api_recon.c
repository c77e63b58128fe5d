/*
 * api_recon.c — reconciliation, for ops: importing a supplier's statement
 * (a CSV body, or the lines its plugin fetches through the I/O engine),
 * matching it against our attempts, and reading the stored runs.
 *
 * An import reads and checks the whole statement first (money/recon.h): one
 * bad line refuses it with every bad line named and nothing stored. Then the
 * attempts each line names are looked up in a read snapshot
 * (ph_store_recon_prepare) and one RECON command stores the run; the writer
 * decides every outcome (store/store_recon.c). The same statement again
 * (supplier, period and content) answers the stored run and writes nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "http/api.h"
#include "money/recon.h"
#include "supply/plugin_ops.h"
#include "supply/supplier_io.h"
#include "supply/suppliers.h"

#define RECON_MAX_ERRORS 1000 /* bad lines listed in one refusal */
#define LINES_PAGE_MAX   1000

/* What an import keeps across its suspensions (r->ext). */
typedef struct import {
    ph_sio_job job; /* plugin fetch only */
    int fetching;
    ph_req *r;
    int64_t from, to;
    ph_statement *st;
    ph_recon_ref *cand, *unbilled;
    size_t nunbilled;
} import;

static void import_free(void *p)
{
    import *im = p;
    if (!im)
        return;
    if (im->fetching) {
        ph_sio_job_clear(&im->job);
        ph_supplier_release(im->job.sup);
    }
    ph_statement_free(im->st);
    free(im->cand);
    free(im->unbilled);
    free(im);
}

/* from and to of a statement request (ph_statement_bound, at the supplier's
 * statement offset). */
static int period_args(ph_req *r, const ph_supplier_conf *sc, int64_t *from, int64_t *to)
{
    int off = sc ? sc->statement.utc_offset_min : 480;
    if (ph_statement_bound(ph_req_query(r, "from"), off, from))
        return ph_req_error(r, 400, "invalid_request",
                            "from: expected a date (YYYY-MM-DD) or an RFC 3339 time"),
               -1;
    if (ph_statement_bound(ph_req_query(r, "to"), off, to))
        return ph_req_error(r, 400, "invalid_request",
                            "to: expected a date (YYYY-MM-DD) or an RFC 3339 time"),
               -1;
    if (*from >= *to)
        return ph_req_error(r, 400, "invalid_request", "to: expected a time after from"), -1;
    return 0;
}

/* The run's JSON, with its lines when asked (page after, limit). */
static int answer_run(ph_req *r, unsigned status, uint64_t id, int with_lines, uint64_t after,
                      size_t limit)
{
    char *txt;
    ph_err err = {0};
    int rc = ph_store_recon_get(r->env->store, id, &txt, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *run = json_loads(txt, 0, NULL);
    free(txt);
    if (!run)
        return ph_req_fail(r, PH_EIO, NULL);
    if (with_lines) {
        char **list;
        size_t n;
        if ((rc = ph_store_recon_lines(r->env->store, id, after, limit, &list, &n, &err))) {
            json_decref(run);
            return ph_req_fail(r, rc, &err);
        }
        json_t *arr = json_array();
        uint64_t last = after;
        for (size_t i = 0; i < n; i++) {
            json_t *l = json_loads(list[i], 0, NULL);
            if (l) {
                last = (uint64_t)json_integer_value(json_object_get(l, "index"));
                json_array_append_new(arr, l);
            }
        }
        ph_store_event_list_free(list, n);
        json_object_set_new(run, "lines_page", arr);
        json_object_set_new(run, "next_after", json_integer((json_int_t)last));
    }
    return ph_req_json(r, status, json_pack("{s:o}", "reconciliation", run));
}

static int import_stored(ph_req *r)
{
    ph_cmd *c = &r->cmd;
    if (c->rc)
        return ph_req_fail(r, c->rc, &c->err);
    if (c->replayed)
        r->replay_header = "true";
    else
        ph_log(r->env->log, PH_LOG_INFO, r->reqid, "recon.completed", "run=%llu supplier=%s",
               (unsigned long long)c->recon_run, r->seg[0]);
    return answer_run(r, c->replayed ? 200 : 201, c->recon_run, 0, 0, 0);
}

static int refuse_lines(ph_req *r, const ph_statement *st)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < st->nerrors; i++) {
        const ph_stmt_error *e = &st->errors[i];
        json_t *j = json_pack("{s:I,s:s}", "line", (json_int_t)e->line, "reason", e->reason);
        if (e->column)
            json_object_set_new(j, "column", json_integer(e->column));
        if (e->field[0])
            json_object_set_new(j, "field", json_string(e->field));
        json_array_append_new(arr, j);
    }
    char msg[96];
    snprintf(msg, sizeof msg, "%zu bad line%s; nothing was stored", st->error_count,
             st->error_count == 1 ? "" : "s");
    return ph_req_json(r, 422,
                       json_pack("{s:s,s:s,s:I,s:o,s:s}", "error", "invalid_csv", "message", msg,
                                 "error_count", (json_int_t)st->error_count, "lines", arr,
                                 "request_id", r->reqid));
}

/* The statement is read and checked: answer a stored run, or match and store. */
static int import_statement(ph_req *r, import *im, const char *source)
{
    ph_statement *st = im->st;
    if (st->error_count)
        return refuse_lines(r, st);
    uint64_t run;
    ph_err err = {0};
    int rc =
        ph_store_recon_find(r->env->store, r->seg[0], im->from, im->to, st->sha256, &run, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    if (run) { /* the same statement again: its run, and nothing written */
        r->replay_header = "true";
        return answer_run(r, 200, run, 0, 0, 0);
    }
    if (!(im->cand = calloc(st->nlines + 1, sizeof *im->cand)))
        return ph_req_fail(r, PH_ENOMEM, NULL);
    rc = ph_store_recon_prepare(r->env->store, r->seg[0], im->from, im->to, st->lines, st->nlines,
                                im->cand, &im->unbilled, &im->nunbilled, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    ph_cmd *c = &r->cmd;
    c->type = PH_CMD_RECON;
    c->now = ph_now_ms();
    c->in.recon.supplier = r->seg[0];
    c->in.recon.client = r->client->name;
    c->in.recon.source = source;
    c->in.recon.from = im->from;
    c->in.recon.to = im->to;
    memcpy(c->in.recon.sha256, st->sha256, 32);
    c->in.recon.lines = st->lines;
    c->in.recon.cand = im->cand;
    c->in.recon.nlines = st->nlines;
    c->in.recon.unbilled = im->unbilled;
    c->in.recon.nunbilled = im->nunbilled;
    ph_req_audit(r, c, strcmp(source, "plugin") ? "statement.import" : "statement.fetch",
                 json_pack("{s:s,s:I,s:I,s:I}", "supplier", r->seg[0], "from", (json_int_t)im->from,
                           "to", (json_int_t)im->to, "lines", (json_int_t)st->nlines));
    return ph_req_submit(r, import_stored);
}

static import *import_new(ph_req *r)
{
    import *im = calloc(1, sizeof *im);
    if (im) {
        im->r = r;
        r->ext = im;
        r->ext_free = import_free;
    }
    return im;
}

int ph_api_statement_import(ph_req *r)
{
    const ph_supplier_conf *sc = ph_config_supplier(r->cfg->cfg, r->seg[0]);
    if (!sc)
        return ph_req_error(r, 404, "not_found", "supplier: not configured");
    if (!ph_statement_configured(&sc->statement))
        return ph_req_error(r, 422, "unsupported",
                            "supplier: no statement mapping (suppliers[].statement)");
    int64_t from, to;
    if (period_args(r, sc, &from, &to))
        return PH_REQ_DONE;
    if (!r->body_len)
        return ph_req_error(r, 400, "invalid_request", "body: expected the statement as CSV");
    import *im = import_new(r);
    if (!im)
        return ph_req_fail(r, PH_ENOMEM, NULL);
    im->from = from;
    im->to = to;
    ph_err err = {0};
    int rc = ph_statement_parse(&sc->statement, r->body, r->body_len, from, to, RECON_MAX_ERRORS,
                                &im->st, &err);
    if (rc == PH_EINVAL)
        return ph_req_error(r, 422, "invalid_csv", "%s; nothing was stored", err.msg);
    if (rc)
        return ph_req_fail(r, rc, &err);
    return import_statement(r, im, "csv");
}

/* ---- fetched by the supplier's plugin (ABI 1.2) ---- */

static void fetch_done(ph_sio_job *job)
{
    import *im = job->arg;
    ph_req_wake(im->r);
}

static int fetch_answered(ph_req *r)
{
    import *im = r->ext;
    const struct perkhub_result *res = &im->job.res;
    if (im->job.outcome != PERKHUB_OK || !im->job.parsed)
        return ph_req_error(r, 502, "supplier_error", "supplier '%.64s': %s (%s)", r->seg[0],
                            im->job.detail[0] ? im->job.detail : "no answer",
                            ph_supplier_host(im->job.sup)->status_str(im->job.outcome));
    ph_stmt_input *in = calloc(res->nstatement + 1, sizeof *in);
    if (!in)
        return ph_req_fail(r, PH_ENOMEM, NULL);
    for (size_t i = 0; i < res->nstatement; i++) {
        const struct perkhub_statement_line *l = &res->statement[i];
        in[i] =
            (ph_stmt_input){l->order_ref, l->supplier_order_id, l->amount, l->time_ms, l->charged};
    }
    ph_err err = {0};
    int rc = ph_statement_from_lines(in, res->nstatement, im->from, im->to, RECON_MAX_ERRORS,
                                     &im->st, &err);
    free(in);
    if (rc)
        return ph_req_fail(r, rc, &err);
    return import_statement(r, im, "plugin");
}

int ph_api_statement_fetch(ph_req *r)
{
    const ph_supplier_conf *sc = ph_config_supplier(r->cfg->cfg, r->seg[0]);
    ph_supplier *sup;
    int64_t from, to;
    if (period_args(r, sc, &from, &to))
        return PH_REQ_DONE;
    if (!sc || ph_suppliers_acquire(r->env->suppliers, r->seg[0], &sup) != PH_OK)
        return ph_req_error(r, 404, "not_found", "supplier: no such running supplier");
    if (!(ph_supplier_plugin(sup)->capabilities & PERKHUB_CAP_STATEMENT)) {
        ph_supplier_release(sup);
        return ph_req_error(r, 422, "unsupported", "supplier: its plugin cannot fetch statements");
    }
    import *im = import_new(r);
    if (!im) {
        ph_supplier_release(sup);
        return ph_req_fail(r, PH_ENOMEM, NULL);
    }
    im->from = from;
    im->to = to;
    im->fetching = 1;
    im->job.sup = sup;
    im->job.op.kind = PERKHUB_OP_STATEMENT;
    im->job.op.period_from_ms = from;
    im->job.op.period_to_ms = to;
    im->job.limits = ph_sio_limits_of(sc);
    im->job.done = fetch_done;
    im->job.arg = im;
    ph_req_suspend(r, fetch_answered);
    if (ph_sio_submit(r->env->sio, &im->job) != PH_OK) {
        im->job.outcome = PERKHUB_DEFINITE_FAILURE;
        snprintf(im->job.detail, sizeof im->job.detail, "shutting down");
        ph_req_wake(r);
    }
    return PH_REQ_SUSPENDED;
}

/* ---- reading runs ---- */

int ph_api_recon_list(ph_req *r)
{
    uint64_t after = 0, limit = 100;
    if (ph_req_page(r, &after, &limit, 1000))
        return PH_REQ_DONE;
    char **list;
    size_t n;
    ph_err err = {0};
    int rc = ph_store_recon_list(r->env->store, after, limit, &list, &n, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *arr = json_array();
    uint64_t last = after;
    for (size_t i = 0; i < n; i++) {
        json_t *j = json_loads(list[i], 0, NULL);
        if (j) {
            last = (uint64_t)json_integer_value(json_object_get(j, "id"));
            json_array_append_new(arr, j);
        }
    }
    ph_store_event_list_free(list, n);
    return ph_req_json(
        r, 200, json_pack("{s:o,s:I}", "reconciliations", arr, "next_after", (json_int_t)last));
}

int ph_api_recon_get(ph_req *r)
{
    uint64_t id, after = 0, limit = 100;
    if (ph_u64_parse(r->seg[0], &id))
        return ph_req_error(r, 400, "invalid_request", "reconciliation id: expected a number");
    if (ph_req_page(r, &after, &limit, LINES_PAGE_MAX))
        return PH_REQ_DONE;
    return answer_run(r, 200, id, 1, after, limit);
}

/* CSV export: one row per line, every line of the run. */
static void csv_put(ph_wbuf *b, const char *s)
{
    /* every value is ours or a checked identifier: no comma, quote or line break */
    ph_wbuf_put(b, s, strlen(s));
}

static const char *jstr(json_t *o, const char *key, char *buf, size_t len)
{
    json_t *v = json_object_get(o, key);
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v))
        snprintf(buf, len, "%lld", (long long)json_integer_value(v));
    else if (json_is_boolean(v))
        snprintf(buf, len, "%s", json_is_true(v) ? "true" : "false");
    else
        buf[0] = 0;
    return buf;
}

int ph_api_recon_csv(ph_req *r)
{
    static const char *const cols[] = {
        "index",  "line", "outcome",  "ref",     "supplier_order_id", "charged",
        "theirs", "ours", "order_id", "attempt", "attempt_state",     NULL};
    uint64_t id;
    if (ph_u64_parse(r->seg[0], &id))
        return ph_req_error(r, 400, "invalid_request", "reconciliation id: expected a number");
    ph_wbuf b = {0};
    for (size_t c = 0; cols[c]; c++) {
        csv_put(&b, c ? "," : "");
        csv_put(&b, cols[c]);
    }
    csv_put(&b, "\n");
    uint64_t after = 0;
    for (;;) {
        char **list;
        size_t n;
        ph_err err = {0};
        int rc = ph_store_recon_lines(r->env->store, id, after, LINES_PAGE_MAX, &list, &n, &err);
        if (rc) {
            ph_wbuf_free(&b);
            return ph_req_fail(r, rc, &err);
        }
        for (size_t i = 0; i < n; i++) {
            json_t *l = json_loads(list[i], 0, NULL);
            if (!l)
                continue;
            after = (uint64_t)json_integer_value(json_object_get(l, "index"));
            for (size_t c = 0; cols[c]; c++) {
                char buf[32];
                csv_put(&b, c ? "," : "");
                csv_put(&b, jstr(l, cols[c], buf, sizeof buf));
            }
            csv_put(&b, "\n");
            json_decref(l);
        }
        ph_store_event_list_free(list, n);
        if (n < LINES_PAGE_MAX)
            break;
    }
    ph_wbuf_put(&b, "", 1);
    if (b.oom) {
        ph_wbuf_free(&b);
        return ph_req_fail(r, PH_ENOMEM, NULL);
    }
    size_t len = b.len - 1;
    char *text = malloc(b.len);
    if (!text) {
        ph_wbuf_free(&b);
        return ph_req_fail(r, PH_ENOMEM, NULL);
    }
    memcpy(text, b.p, b.len);
    ph_wbuf_free(&b);
    return ph_req_text(r, 200, text, len, "text/csv; charset=utf-8");
}
