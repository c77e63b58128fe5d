/*
 * callbacks.c — a supplier's notification, from the HTTP body to a confirming
 * order query (fulfil.h, ph_fulfil_callback).
 *
 * A callback is a hint, never the truth: after the plugin has verified its
 * signature and we have checked that it describes one of our attempts at this
 * supplier, the only thing it does is make the attempt's next order query
 * happen now. The query's answer moves the attempt, through the same path as
 * every other exchange, so a callback that lies (tampered, replayed, stale)
 * cannot move an order anywhere the supplier's own query would not.
 *
 * About an attempt already final there is nothing to confirm: a verified word
 * that contradicts it (a success after we failed it, a failure after it
 * succeeded, another charge) is kept as a discrepancy for ops before the
 * supplier is answered, and the attempt stays as it is (issue 11, Found 1).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supply/attempt.h"
#include "supply/fulfil.h"
#include "supply/plugin_ops.h"
#include "supply/sup_text.h"
#include "base/util.h"
#include "config/config.h"

/* a plugin's refusal reason is answered whole as the error */
_Static_assert(sizeof(((ph_callback_reply *)0)->error) > PH_SUPTEXT_REASON_MAX,
               "a reason fits a refusal's error");

static int refuse(ph_callback_reply *out, unsigned status, const char *error, const char *fmt,
                  const char *arg)
{
    out->status = status;
    snprintf(out->error, sizeof out->error, "%s", error);
    snprintf(out->message, sizeof out->message, fmt, arg ? arg : "");
    return PH_OK;
}

/* "<store uid>-<order id>-<attempt no>" -> id, no. */
static int parse_ref(const char *ref, const char *uid, uint64_t *id, uint32_t *no)
{
    size_t ul = strlen(uid);
    if (!ref || strncmp(ref, uid, ul) || ref[ul] != '-')
        return -1;
    char buf[PH_REF_MAX + 1];
    snprintf(buf, sizeof buf, "%s", ref + ul + 1);
    char *dash = strchr(buf, '-');
    if (!dash)
        return -1;
    *dash = 0;
    uint64_t n;
    if (ph_u64_parse(buf, id) || ph_u64_parse(dash + 1, &n) || !n || n > UINT32_MAX)
        return -1;
    *no = (uint32_t)n;
    return 0;
}

/* Does what the callback claims fit attempt a of order o? NULL when it does,
 * else what differs (a field name, for the refusal). */
static const char *mismatch(const ph_order *o, const ph_attempt *a, const char *supplier,
                            const struct perkhub_result *res)
{
    if (strcmp(a->supplier, supplier))
        return "supplier";
    char soid[PH_SUPPLIER_ORDER_MAX + 1]; /* stored cleaned, so compare cleaned */
    ph_text_clean(soid, sizeof soid, res->supplier_order_id);
    if (soid[0] && a->supplier_order_id[0] && strcmp(soid, a->supplier_order_id))
        return "supplier_order_id";
    if (res->product_id && *res->product_id && strcmp(res->product_id, a->product_id))
        return "product";
    uint32_t qty = o->delivery == PH_DELIVERY_RECHARGE ? 1 : o->quantity;
    if (res->quantity >= 0 && (uint64_t)res->quantity != qty)
        return "quantity";
    /* the amount is no reason to refuse: another charge is the supplier's
     * word, compared by the store on every path (ph_amount_mismatch) */
    return NULL;
}

/* The supplier's tolerance for another charge (fen), from the current config. */
static int64_t tolerance_of(ph_fulfil *f, const char *supplier)
{
    const ph_fulfil_opts *fo = ph_fulfil_options(f);
    void *ref;
    const ph_config *cfg = fo->cfg.acquire(fo->cfg.ctx, &ref);
    const ph_supplier_conf *sc = ph_config_supplier(cfg, supplier);
    int64_t tol = sc && sc->amount_tolerance > 0 ? sc->amount_tolerance : 0;
    fo->cfg.release(ref);
    return tol;
}

/* A verified word about a final attempt that contradicts it (a late success
 * after we failed it, a failure after it succeeded, another charge) is kept:
 * a discrepancy, recorded before the supplier gets its answer. The attempt
 * itself does not move (store.h, PH_CMD_FINAL_WORD). */
static void keep_final_word(ph_fulfil *f, ph_store *store, uint64_t id, uint32_t no,
                            const struct perkhub_result *res, int64_t tolerance)
{
    ph_cmd c = {.type = PH_CMD_FINAL_WORD, .now = ph_now_ms()};
    c.in.word.order_id = id;
    c.in.word.no = no;
    c.in.word.source = PH_DISCREP_CALLBACK;
    c.in.word.state = ph_attempt_claim(res->state);
    c.in.word.charged = res->amount >= 0 ? res->amount : -1;
    c.in.word.delivered = res->delivered_value > 0 ? res->delivered_value : -1;
    c.in.word.tolerance = tolerance;
    int rc = ph_store_exec(store, &c);
    const ph_logger *log = ph_fulfil_options(f)->log;
    if (rc != PH_OK)
        ph_log(log, PH_LOG_ERROR, NULL, "callback.discrepancy_failed",
               "order=%llu attempt=%u rc=%s", (unsigned long long)id, no, ph_strerror(rc));
    else if (c.discrepancy_id)
        ph_log(log, PH_LOG_WARN, NULL, "callback.discrepancy",
               "order=%llu attempt=%u discrepancy=%llu", (unsigned long long)id, no,
               (unsigned long long)c.discrepancy_id);
    ph_cmd_clear(&c);
}

/* The verified claim against the store; asks for the confirming query. */
static int match_and_confirm(ph_fulfil *f, ph_store *store, const char *supplier,
                             const struct perkhub_result *res, ph_callback_reply *out)
{
    uint64_t id;
    uint32_t no;
    if (parse_ref(res->order_ref, ph_store_uid(store), &id, &no))
        return refuse(out, 400, "callback_mismatch", "order reference: not one of ours%s", NULL);
    ph_order *o = NULL;
    ph_err err = {0};
    if (ph_store_order_get(store, id, 0, &o, &err) != PH_OK)
        return refuse(out, 400, "callback_mismatch", "order reference: no such order%s", NULL);
    const ph_attempt *a = NULL;
    for (size_t i = 0; i < o->nattempts; i++)
        if (o->attempts[i].no == no)
            a = &o->attempts[i];
    const char *bad = a ? mismatch(o, a, supplier, res) : "attempt";
    int final = a && !ph_attempt_state_open(a->state);
    int sending = a && a->state == PH_ATTEMPT_SENDING;
    int claim = ph_attempt_claim(res->state);
    int64_t tol = final && !bad ? tolerance_of(f, supplier) : 0;
    int contradicts =
        final && !bad && ph_final_word_contradicts(a, o->quantity, claim, res->amount, tol);
    ph_order_free(o);
    if (bad)
        return refuse(out, 400, "callback_mismatch", "callback does not match our order: %s", bad);
    if (!final)
        ph_fulfil_confirm(f, id, no, res->state, sending);
    else if (contradicts)
        keep_final_word(f, store, id, no, res, tol);
    return PH_OK;
}

static int reply_body(ph_callback_reply *out, const struct perkhub_result *res)
{
    out->status = res->reply_status ? (unsigned)res->reply_status : 200;
    out->content_type = res->reply_content_type ? res->reply_content_type : "text/plain";
    out->body = strdup(res->reply_body ? res->reply_body : "ok");
    return out->body ? PH_OK : PH_ENOMEM;
}

int ph_fulfil_callback(ph_fulfil *f, const char *supplier_id, const struct perkhub_callback *cb,
                       ph_callback_reply *out)
{
    const ph_fulfil_opts *o = ph_fulfil_options(f);
    ph_store *store = o->store;
    ph_suppliers *sups = o->suppliers;
    const ph_logger *log = o->log;
    memset(out, 0, sizeof *out);
    ph_supplier *sup;
    if (ph_suppliers_acquire(sups, supplier_id, &sup) != PH_OK)
        return refuse(out, 404, "not_found", "supplier: no such running supplier%s", NULL);
    const struct perkhub_plugin *pl = ph_supplier_plugin(sup);
    const struct perkhub_host *host = ph_supplier_host(sup);
    if (!(pl->capabilities & PERKHUB_CAP_CALLBACK) || !pl->ops || !pl->ops->verify_callback) {
        ph_supplier_release(sup);
        return refuse(out, 404, "not_found", "supplier: takes no callbacks%s", NULL);
    }
    struct perkhub_result res;
    ph_op_result_init(&res);
    int rc = pl->ops->verify_callback(ph_supplier_instance(sup), cb, &res);
    /* the plugin's words enter the core here (sup_text.h): the reason of a
     * refusal is logged and answered, the claim compared. A claimed product or
     * supplier order id that is no identifier cannot be one of ours: that is a
     * mismatch, not a claim without the field. */
    int claimed_ids = !!res.product_id + !!res.supplier_order_id;
    if (ph_op_result_clean(host, &res, NULL))
        ph_log(log, PH_LOG_WARN, NULL, "callback.supplier_text",
               "supplier=%s detail=\"values the callback carried failed the supplier text rules "
               "and were dropped\"",
               supplier_id);
    if (rc != PERKHUB_OK) {
        const char *why = res.reason && *res.reason ? res.reason : "bad_signature";
        refuse(out, strcmp(why, "malformed") ? 401 : 400, why, "callback refused by the plugin%s",
               NULL);
    } else if (!!res.product_id + !!res.supplier_order_id != claimed_ids) {
        refuse(out, 400, "callback_mismatch", "callback does not match our order: %s",
               "an identifier that is none");
    } else {
        match_and_confirm(f, store, supplier_id, &res, out);
        if (!out->error[0])
            rc = reply_body(out, &res);
    }
    if (out->error[0])
        ph_log(log, PH_LOG_WARN, NULL, "callback.refused", "supplier=%s reason=%s", supplier_id,
               out->error);
    else
        ph_log(log, PH_LOG_INFO, NULL, "callback.accepted", "supplier=%s", supplier_id);
    ph_op_result_clear(host, &res);
    ph_supplier_release(sup);
    return rc == PH_ENOMEM ? PH_ENOMEM : PH_OK;
}
