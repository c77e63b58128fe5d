/*
 * api_settle.c — POST /v1/orders/{id}/settle (ops): a stuck order settled by
 * hand with the supplier's evidence (issue 11, item 3).
 *
 * The store decides (PH_CMD_SETTLE, store.h): only a stuck order is settled,
 * its open attempt moves forward to succeeded or failed and the order
 * follows; nothing is ever sent to a supplier, and a failed settle fails the
 * order without a fail-over. Who settled it is the token's client name, kept
 * with the note on the attempt and shown in the order view. A settle racing
 * the supplier's own answer is decided by the writer's order: the second one
 * is refused (PH_ESTATE) and changes nothing.
 */
#include <stdio.h>
#include <string.h>

#include "base/util.h"
#include "http/api.h"
#include "http/views.h"
#include "supply/fulfil.h"

/* The fields the body takes (ph_req_body_fields refuses any other). */
#define SETTLE_FIELDS "outcome note charged supplier_order_id"

static int settled(ph_req *r)
{
    if (r->cmd.rc != PH_OK)
        return ph_req_fail(r, r->cmd.rc, &r->cmd.err);
    const ph_order *o = r->cmd.order;
    /* its attempt is final now: fulfil stops asking the supplier about it */
    ph_fulfil_forget(r->env->fulfil, o->id);
    ph_log(r->env->log, PH_LOG_INFO, r->reqid, "order.settled", "order=%llu state=%s by=%s",
           (unsigned long long)o->id, ph_order_state_name(o->state), r->client->name);
    return ph_req_json(
        r, 200, json_pack("{s:o}", "order", ph_view_order(o, r->cfg->cfg, r->env->keys, 0, 1)));
}

/* A string field of at most max bytes into dst (NULL when absent, when
 * optional); 0, or -1 with a 400 naming it. */
static int text_field(ph_req *r, json_t *b, const char *name, size_t max, int required, char *dst,
                      size_t cap, const char **out)
{
    json_t *v = json_object_get(b, name);
    *out = NULL;
    if (!v && !required)
        return 0;
    const char *s = json_string_value(v);
    if (!s || !*s || strlen(s) > max || strlen(s) >= cap)
        return ph_req_error(r, 400, "invalid_request", "%s: expected a string of 1 to %zu bytes",
                            name, max),
               -1;
    snprintf(dst, cap, "%s", s);
    *out = dst;
    return 0;
}

/* outcome and charged into the command; 0, or -1 with a 400 naming the field. */
static int settle_fields(ph_req *r, json_t *b)
{
    const char *out = json_string_value(json_object_get(b, "outcome"));
    int outcome = out && !strcmp(out, "succeeded") ? PH_ATTEMPT_SUCCEEDED
                  : out && !strcmp(out, "failed")  ? PH_ATTEMPT_FAILED
                                                   : 0;
    if (!outcome)
        return ph_req_error(r, 400, "invalid_request",
                            "outcome: expected \"succeeded\" or \"failed\""),
               -1;
    json_t *ch = json_object_get(b, "charged");
    int64_t fen = -1;
    if (ch && (!json_is_string(ch) || ph_money_parse(json_string_value(ch), &fen)))
        return ph_req_error(r, 400, "invalid_request",
                            "charged: expected an amount in yuan as a string with at most two "
                            "decimals (\"49.40\")"),
               -1;
    r->cmd.in.settle.outcome = outcome;
    r->cmd.in.settle.charged = fen;
    return 0;
}

int ph_api_order_settle(ph_req *r)
{
    uint64_t id;
    json_t *b;
    if (ph_u64_parse(r->seg[0], &id))
        return ph_req_error(r, 400, "invalid_request", "order id: expected a number");
    if (ph_req_body_fields(r, SETTLE_FIELDS, &b))
        return PH_REQ_DONE;
    r->cmd.type = PH_CMD_SETTLE;
    r->cmd.now = ph_now_ms();
    r->cmd.in.settle.order_id = id;
    r->cmd.in.settle.by = r->client->name;
    int bad = settle_fields(r, b) ||
              text_field(r, b, "note", PH_NOTE_MAX, 1, r->arg[0], sizeof r->arg[0],
                         &r->cmd.in.settle.note) ||
              text_field(r, b, "supplier_order_id", PH_SUPPLIER_ORDER_MAX, 0, r->arg[1],
                         sizeof r->arg[1], &r->cmd.in.settle.supplier_order_id);
    json_decref(b);
    if (bad)
        return PH_REQ_DONE;
    ph_req_audit(
        r, &r->cmd, "orders.settle",
        json_pack("{s:I,s:s,s:I}", "order_id", (json_int_t)id, "outcome",
                  r->cmd.in.settle.outcome == PH_ATTEMPT_SUCCEEDED ? "succeeded" : "failed",
                  "charged_fen", (json_int_t)r->cmd.in.settle.charged));
    return ph_req_submit(r, settled);
}
