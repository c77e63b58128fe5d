/*
 * api_reviews.c — the review queue of held orders (issue 15): GET /v1/reviews,
 * POST /v1/reviews/{order_id}/release and /block (ops, audited), and the one
 * way a review is applied (reviews.h), shared with the daemon's timeout job.
 *
 * A held order took no code and called no supplier (store.h, PH_ORDER_HELD).
 * Releasing it does what a new order would have done at that moment; blocking
 * it fails it (blocked_by_review). The writer decides whether it is still
 * held: ops racing the timeout, or each other, get 409 for the second.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "http/api.h"
#include "http/bundles.h"
#include "http/end_user.h"
#include "http/reviews.h"
#include "http/views.h"
#include "risk/risk.h"
#include "supply/fulfil.h"

void ph_review_cmd(struct ph_fulfil *f, const ph_config *cfg, ph_store *s, uint64_t id, int release,
                   const char *who, const char *note, int64_t now, ph_cmd *cmd)
{
    memset(cmd, 0, sizeof *cmd);
    cmd->type = PH_CMD_REVIEW;
    cmd->now = now;
    cmd->in.review.order_id = id;
    cmd->in.review.release = release;
    cmd->in.review.who = who;
    cmd->in.review.note = note;
    if (!release)
        return;
    ph_order *o = NULL;
    ph_err err = {0};
    if (ph_store_order_get(s, id, 0, &o, &err) != PH_OK)
        return; /* the writer answers for a missing order */
    const ph_product_conf *p = ph_config_product(cfg, o->sku);
    if (o->delivery == PH_DELIVERY_BUNDLE) {
        /* routed as a new bundle order would be now (a grant's recharge is
         * routed when it is claimed): the store plans each component */
        if (p && p->delivery == PH_DELIVERY_BUNDLE && p->ncomponents <= PH_CMD_TARGETS_MAX) {
            char *txt = NULL;
            int grant = ph_store_grant_get(s, id, &txt, &err) == PH_OK;
            free(txt);
            int only[PH_BUNDLE_COMPONENTS_MAX];
            for (size_t j = 0; j < p->ncomponents; j++) {
                const ph_product_conf *q = ph_config_product(cfg, p->components[j].sku);
                only[j] = !(grant && q && q->delivery == PH_DELIVERY_RECHARGE);
            }
            (void)ph_bundle_route(f, cfg, s, p, o->quantity, only, 1, cmd->in.review.targets);
            cmd->in.review.ntargets = (uint32_t)p->ncomponents;
        }
        ph_order_free(o);
        return;
    }
    int recharge = o->delivery == PH_DELIVERY_RECHARGE;
    ph_attempt_target t = {0};
    if (p && (recharge || p->noffers) && ph_fulfil_route(f, cfg, p, &t) == PH_OK)
        cmd->in.review.first = t;
    else if (recharge || (p && p->noffers))
        cmd->in.review.fail_reason = "no_supplier_available";
    ph_order_free(o);
}

int ph_review_after(struct ph_fulfil *f, struct ph_risk *risk, ph_store *s, const ph_cmd *cmd,
                    ph_err *err)
{
    const ph_order *o = cmd->order;
    if (cmd->rc != PH_OK || !o)
        return PH_OK;
    if (o->state == PH_ORDER_PROCESSING && o->delivery == PH_DELIVERY_BUNDLE) {
        uint64_t failed;
        if (ph_bundle_begin(f, s, o->id, &failed) != PH_OK)
            return ph_err_set(err, PH_ENOMEM, "bundle %llu: component %llu not begun",
                              (unsigned long long)o->id, (unsigned long long)failed);
        return PH_OK;
    }
    if (o->state == PH_ORDER_PROCESSING) /* NULL account: unsealed from the supply record */
        return ph_fulfil_begin(f, o, NULL, err);
    if (!risk || cmd->in.review.release)
        return PH_OK;
    char *txt = NULL;
    ph_err e = {0};
    ph_risk_record rec;
    if (ph_store_order_risk_get(s, o->id, &txt, &e) == PH_OK &&
        ph_risk_record_read(txt, strlen(txt), &rec) == PH_OK) {
        ph_risk_note_blocked(risk, &rec.subject, cmd->now);
        ph_risk_record_clear(&rec);
    }
    free(txt);
    return PH_OK;
}

/* ---- GET /v1/reviews ------------------------------------------------------------ */

/* One held order as ops see it in the queue; NULL when it left meanwhile. */
static json_t *review_item(ph_req *r, const ph_review_row *row)
{
    ph_order *o = NULL;
    ph_err err = {0};
    if (ph_store_order_get(r->env->store, row->order_id, 0, &o, &err) != PH_OK)
        return NULL;
    json_t *j =
        json_pack("{s:I,s:s,s:s,s:s,s:I,s:s}", "order_id", (json_int_t)o->id, "client", o->client,
                  "client_order_id", o->client_order_id, "sku", o->sku, "quantity",
                  (json_int_t)o->quantity, "state", ph_order_state_name(o->state));
    ph_order_free(o);
    if (!j)
        return NULL;
    ph_view_time(j, "hold_until", row->hold_until);
    char *txt = NULL;
    if (ph_store_order_risk_get(r->env->store, row->order_id, &txt, &err) == PH_OK) {
        json_t *rec = json_loads(txt, 0, NULL);
        json_t *dec = json_object_get(rec, "decision");
        json_object_set(j, "rule", json_object_get(dec, "rule"));
        json_object_set(j, "hits", json_object_get(dec, "hits"));
        json_t *eu = json_object_get(rec, "end_user");
        if (eu && json_object_size(eu))
            json_object_set(j, "end_user", eu);
        json_decref(rec);
        free(txt);
    }
    return j;
}

int ph_api_review_list(ph_req *r)
{
    uint64_t after = 0, limit = 100, next = 0;
    if (ph_req_page(r, &after, &limit, 1000))
        return PH_REQ_DONE;
    ph_review_row *rows;
    size_t n;
    ph_err err = {0};
    int rc = ph_store_review_list(r->env->store, after, limit, &rows, &n, &next, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *item = review_item(r, &rows[i]);
        if (item)
            json_array_append_new(arr, item);
    }
    free(rows);
    return ph_req_json(r, 200,
                       json_pack("{s:o,s:o}", "reviews", arr, "next_after",
                                 next ? json_integer((json_int_t)next) : json_null()));
}

/* ---- POST /v1/reviews/{id}/release | block ---------------------------------------- */

static int reviewed(ph_req *r)
{
    if (r->cmd.rc != PH_OK)
        return ph_req_fail(r, r->cmd.rc, &r->cmd.err);
    const ph_order *o = r->cmd.order;
    ph_err err = {0};
    if (ph_review_after(r->env->fulfil, r->env->risk, r->env->store, &r->cmd, &err) != PH_OK)
        return ph_req_fail(r, PH_ENOMEM, &err);
    ph_log(r->env->log, PH_LOG_INFO, r->reqid,
           r->cmd.in.review.release ? "review.released" : "review.blocked",
           "order=%llu state=%s by=%s", (unsigned long long)o->id, ph_order_state_name(o->state),
           r->client->name);
    return ph_req_json(
        r, 200, json_pack("{s:o}", "order", ph_view_order(o, r->cfg->cfg, r->env->keys, 0, 1)));
}

static int review_act(ph_req *r, int release)
{
    uint64_t id;
    json_t *b = NULL;
    if (ph_u64_parse(r->seg[0], &id))
        return ph_req_error(r, 400, "invalid_request", "order id: expected a number");
    if (r->body_len && ph_req_body_fields(r, "note", &b)) /* the body is optional */
        return PH_REQ_DONE;
    json_t *nv = json_object_get(b, "note");
    const char *note = json_string_value(nv);
    if (nv && (!note || !*note || strlen(note) > PH_NOTE_MAX || strlen(note) >= sizeof r->arg[0])) {
        json_decref(b);
        return ph_req_error(r, 400, "invalid_request", "note: expected a string of 1 to %d bytes",
                            PH_NOTE_MAX);
    }
    snprintf(r->arg[0], sizeof r->arg[0], "%s", note ? note : "");
    json_decref(b);
    ph_review_cmd(r->env->fulfil, r->cfg->cfg, r->env->store, id, release, r->client->name,
                  r->arg[0][0] ? r->arg[0] : NULL, ph_now_ms(), &r->cmd);
    ph_req_audit(r, &r->cmd, release ? "review.release" : "review.block",
                 json_pack("{s:I}", "order_id", (json_int_t)id));
    return ph_req_submit(r, reviewed);
}

int ph_api_review_release(ph_req *r)
{
    return review_act(r, 1);
}

int ph_api_review_block(ph_req *r)
{
    return review_act(r, 0);
}
