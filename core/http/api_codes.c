/*
 * api_codes.c — POST /v1/codes/lookup: "what happened to this code / order?"
 *
 * The code travels in the body, never in a URL (URLs end up in logs and
 * proxies). It is hashed with the index key and looked up by hash. A client
 * sees only codes issued to its own orders; anything else — a code in stock,
 * another client's code, a code that never existed — is the same `not_found`,
 * so the endpoint cannot be used to probe for valid codes — neither by its
 * answer (the same bytes) nor by its time: a miss reads decoy records and
 * builds and drops a result just as a hit it may not see does
 * (ph_store_code_find_typed; bench/lookup_timing.sh measures it). Ops sees the
 * state of every code but never its plaintext.
 *
 * A code is matched the way it was imported: normalized (crypto/code.h: case,
 * spaces, dashes, and a product's look-alikes) before it is hashed; the
 * store tries each rule its batches were hashed with
 * (ph_store_code_find_typed), so a look-alike never matches a product that
 * does not declare it.
 *
 * An order without codes — a recharge, or a supplier order not delivered yet —
 * is answered with a diagnosis of the order itself (recharge_*, order_*),
 * never with an empty list.
 *
 * A lookup by order answers a page of the order's codes, in the order's own
 * order: `after` (the codes already seen, default 0) and `limit` (1 to
 * LOOKUP_PAGE_MAX, the default too), with `next_after`, the `after` of the
 * next page, or null when the page reached the last code. A page, not every
 * code at once: an order holds up to limits.max_order_quantity codes (100,000
 * by default), and each issued code of the page may be a question to its
 * supplier; the cap is stated in the answer (next_after), never a code left
 * out without a word (docs/api.md).
 *
 * Redemption status (issue 12): a lookup of an issued code that the caller
 * may see — by code, or by order for every issued code of the page —
 * whose batch's supplier can say whether a code was redeemed
 * (PERKHUB_CAP_REDEMPTION) asks it (supply/redeem.h) within
 * `redemption.wait_ms` with the connection suspended; a "redeemed" answer is
 * stored (the code becomes redeemed, so the diagnosis is already_redeemed),
 * and the result says `redemption`: "redeemed", "not_redeemed" or "unknown"
 * (the wait ran out, or the supplier could not tell). A code the caller may
 * not see is never asked about: its lookup does exactly the work of a miss.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "codes/csv.h"
#include "codes/import.h"
#include "base/util.h"
#include "http/views.h"
#include "supply/redeem.h"
#include "supply/supplier_io.h"
#include "supply/suppliers.h"

static json_t *not_found(void)
{
    return ph_view_not_found();
}

/* What the caller may see of one code: its plaintext only as `owner_code`. */
static ph_lookup_view lookup_view(ph_req *r, const ph_code *c, const ph_batch *b, const ph_order *o,
                                  const char *owner_code)
{
    return (ph_lookup_view){.code = c,
                            .batch = b,
                            .order = o,
                            .product = ph_config_product(r->cfg->cfg, b->sku),
                            .owner_code = owner_code,
                            .ops = ph_req_has_scope(r, PH_SCOPE_OPS),
                            .now = ph_now_ms()};
}

/* One result; `owner_code` is the plaintext to include (owner only) or NULL. */
static json_t *result(ph_req *r, const ph_code *c, const ph_batch *b, const ph_order *o,
                      const char *owner_code)
{
    ph_lookup_view v = lookup_view(r, c, b, o, owner_code);
    return ph_view_lookup(&v);
}

static int reply(ph_req *r, json_t *results)
{
    return ph_req_json(r, 200, json_pack("{s:o}", "results", results));
}

/* Codes of an order answered per lookup at most (and by default): each issued
 * one may be a question to its supplier, all asked at once. */
#define LOOKUP_PAGE_MAX 100

/* Which codes of an order a lookup answers: positions after .. after+limit-1. */
typedef struct order_page {
    uint64_t after;
    size_t limit;
} order_page;

/* A lookup by order's answer: results, and next_after (null: no more). */
static int reply_page(ph_req *r, json_t *results, uint64_t next_after)
{
    return ph_req_json(r, 200,
                       json_pack("{s:o,s:o}", "results", results, "next_after",
                                 next_after ? json_integer((json_int_t)next_after) : json_null()));
}

typedef struct typed {
    const ph_keyring *kr;
    const char *code;
    size_t len;
} typed;

static int hash_typed(void *arg, const char *rule, uint8_t hash[32])
{
    const typed *t = arg;
    return ph_code_hash(t->kr, t->code, t->len, rule, hash) == PH_OK ? 0 : -1;
}

/* ---- asking the supplier whether an issued code was redeemed ---------------- */

struct redeem_wait;

/* One code asked about. */
typedef struct redeem_slot {
    struct redeem_wait *w;
    uint64_t code_id;
    uint8_t hash[32]; /* its index hash: the command's, and a lookup by code reads it again */
    int redeemed;     /* PH_REDEEM_*: the answer, set before `left` goes down */
} redeem_slot;

/* What a lookup that asked keeps across its suspension (r->ext). */
typedef struct redeem_wait {
    ph_req *r;
    atomic_uint left;   /* answers to come, plus one while the asks are being started */
    uint64_t order_id;  /* by order: the order read again; 0 by code */
    order_page page;    /* by order: the codes answered */
    size_t n;           /* slots in use */
    redeem_slot slot[]; /* 1 by code, page.limit by order */
} redeem_wait;

/* A wait with room for n slots, zeroed; NULL without memory. */
static redeem_wait *redeem_wait_new(size_t n)
{
    return calloc(1, sizeof(redeem_wait) + n * sizeof(redeem_slot));
}

/* What one ask needs between its preparation and its start. */
typedef struct redeem_prep {
    ph_supplier *sup; /* a reference, handed to ph_redeem_ask */
    ph_sio_limits limits;
    const char *product_id; /* in the request's config snapshot */
    char code[PH_CODE_MAX + 1], card[PH_CODE_MAX + 1];
} redeem_prep;

static void redeem_wait_free(void *p)
{
    free(p);
}

/* One answer less to wait for; the last one resumes the request. */
static void redeem_left(redeem_wait *w)
{
    if (atomic_fetch_sub(&w->left, 1) == 1)
        ph_req_wake(w->r); /* w is not touched after this */
}

static void redeem_answered(void *arg, const ph_redeem_answer *a)
{
    redeem_slot *s = arg;
    s->redeemed = a->redeemed;
    redeem_left(s->w);
}

static const char *redemption_name(int redeemed)
{
    return redeemed == PH_REDEEM_YES  ? "redeemed"
           : redeemed == PH_REDEEM_NO ? "not_redeemed"
                                      : "unknown";
}

/* The supplier's product id of sku's offer from `supplier`, or NULL. */
static const char *offer_product_id(const ph_config *cfg, const char *sku, const char *supplier)
{
    const ph_product_conf *p = ph_config_product(cfg, sku);
    for (size_t i = 0; p && i < p->noffers; i++)
        if (strcmp(p->offers[i].supplier, supplier) == 0)
            return p->offers[i].supplier_sku;
    return NULL;
}

static void prep_wipe(redeem_prep *p)
{
    ph_wipe(p->code, sizeof p->code);
    ph_wipe(p->card, sizeof p->card);
}

/* Can issued code c of batch b be asked about? PH_OK with p filled (the
 * supplier acquired, the code unsealed) and s->hash, s->code_id set; -1 when
 * not: no redemption module, its supplier is not running or cannot tell (it is
 * never asked), or the code does not open. */
static int redeem_prepare(ph_req *r, const ph_batch *b, const ph_code *c, redeem_slot *s,
                          redeem_prep *p)
{
    const ph_supplier_conf *sc = ph_config_supplier(r->cfg->cfg, b->supplier);
    if (!r->env->redeem || !sc ||
        ph_suppliers_acquire(r->env->suppliers, b->supplier, &p->sup) != PH_OK)
        return -1;
    /* the supplier gets the code as it delivered it, not as the caller typed it */
    if (!(ph_supplier_plugin(p->sup)->capabilities & PERKHUB_CAP_REDEMPTION) ||
        ph_code_unseal(r->env->keys, c->sealed, c->sealed_len, p->code, p->card) != PH_OK ||
        ph_code_hash(r->env->keys, p->code, strlen(p->code), b->lookalikes, s->hash) != PH_OK) {
        ph_supplier_release(p->sup);
        prep_wipe(p);
        return -1;
    }
    p->limits = ph_sio_limits_of(sc);
    p->product_id = offer_product_id(r->cfg->cfg, b->sku, b->supplier);
    s->code_id = c->id;
    s->redeemed = PH_REDEEM_UNKNOWN;
    return PH_OK;
}

/* Starts one prepared ask (the request is suspended); an ask refused counts
 * as answered "unknown" at once. Wipes p. */
static void redeem_start(ph_req *r, redeem_slot *s, redeem_prep *p)
{
    ph_redeem_question q = {.sup = p->sup,
                            .limits = p->limits,
                            .product_id = p->product_id,
                            .code = p->code,
                            .card_no = p->card[0] ? p->card : NULL,
                            .now = ph_now_ms(),
                            .request_id = r->reqid};
    memcpy(q.hash, s->hash, sizeof q.hash);
    int rc = ph_redeem_ask(r->env->redeem, &q, r->cfg->cfg->redemption_wait_ms, redeem_answered,
                           s); /* takes sup in every case; copies code and card */
    prep_wipe(p);
    if (rc != PH_OK)
        redeem_left(s->w); /* never the last: the starter's own count is still held */
}

/* Suspends r and starts the n prepared asks of w; the last answer resumes it
 * with `resume`. Returns PH_REQ_SUSPENDED. */
static int redeem_run(ph_req *r, redeem_wait *w, redeem_prep *prep, ph_handler_fn resume)
{
    w->r = r;
    atomic_init(&w->left, (unsigned)w->n + 1);
    r->ext = w;
    r->ext_free = redeem_wait_free;
    ph_req_suspend(r, resume);
    for (size_t i = 0; i < w->n; i++) {
        w->slot[i].w = w;
        redeem_start(r, &w->slot[i], &prep[i]);
    }
    redeem_left(w); /* the starter's count: the wake may come now */
    return PH_REQ_SUSPENDED;
}

/* The asked code read again (the answer may have redeemed it): one result with
 * `redemption`, or not_found when it is gone from the caller's view. */
static int redeem_resume_code(ph_req *r)
{
    redeem_wait *w = r->ext;
    ph_code_info info;
    ph_err err = {0};
    int rc = ph_store_code_find(r->env->store, w->slot[0].hash, &info, &err);
    if (rc == PH_ENOTFOUND)
        return reply(r, json_pack("[o]", not_found()));
    if (rc)
        return ph_req_fail(r, rc, &err);
    int visible = info.order && (strcmp(info.order->client, r->client->name) == 0 ||
                                 ph_req_has_scope(r, PH_SCOPE_OPS));
    json_t *res = visible ? result(r, &info.code, &info.batch, info.order, NULL) : not_found();
    if (visible)
        json_object_set_new(res, "redemption", json_string(redemption_name(w->slot[0].redeemed)));
    ph_code_info_clear(&info);
    return reply(r, json_pack("[o]", res));
}

/* A lookup by code of an issued code the caller may see: asks its supplier
 * when it can tell, PH_REQ_SUSPENDED (redeem_resume_code answers), or -1 when
 * nothing was asked (the caller answers from info). */
static int ask_code(ph_req *r, const ph_code_info *info)
{
    redeem_wait *w = redeem_wait_new(1);
    redeem_prep prep;
    if (!w || redeem_prepare(r, &info->batch, &info->code, &w->slot[0], &prep) != PH_OK) {
        free(w);
        return -1;
    }
    w->n = 1;
    return redeem_run(r, w, &prep, redeem_resume_code);
}

static int lookup_code(ph_req *r, const char *code)
{
    size_t len = strlen(code);
    if (len == 0 || len > PH_CODE_MAX)
        return ph_req_error(r, 400, "invalid_request", "code: expected 1-%d characters",
                            PH_CODE_MAX);
    typed t = {r->env->keys, code, len};
    ph_code_info info;
    ph_err err = {0};
    int rc = ph_store_code_find_typed(r->env->store, hash_typed, &t, &info, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    /* The same steps whether the code was found or not and whoever holds it
     * (the store read decoys on a miss): the result is built from what was
     * read, then dropped for anyone who may not see it, so the time of the
     * answer does not say which `not_found` it is (docs/api.md). */
    const ph_order *o = info.order ? info.order : info.decoy;
    int owner = o && strcmp(o->client, r->client->name) == 0;
    int visible = info.found && ((owner && info.order) || ph_req_has_scope(r, PH_SCOPE_OPS));
    if (visible && info.code.state == PH_CODE_ISSUED) {
        int asked = ask_code(r, &info);
        if (asked == PH_REQ_SUSPENDED) {
            ph_code_info_clear(&info);
            return asked;
        }
    }
    ph_lookup_view v = lookup_view(r, &info.code, &info.batch, visible ? info.order : o, NULL);
    size_t text_len;
    char *text = ph_view_lookup_text(&v, visible, &text_len);
    if (text) {
        ph_code_info_clear(&info);
        return ph_req_text(r, 200, text, text_len, "application/json");
    }
    json_t *res = ph_view_lookup(&v); /* a string the text cannot carry: the tree */
    if (!visible) {
        json_decref(res);
        res = not_found();
    }
    ph_code_info_clear(&info);
    return reply(r, json_pack("[o]", res));
}

/* A bundle (issue 16): its codes are its components'. The answer names the
 * bundle's state and its components' order ids, to look up one by one. */
static json_t *bundle_result(ph_req *r, const ph_order *o)
{
    char name[40], *txt = NULL;
    ph_err err = {0};
    snprintf(name, sizeof name, "bundle_%s", ph_order_state_name(o->state));
    const char *advice =
        o->state == PH_ORDER_SUCCEEDED ? "Every component of the bundle was delivered: look up "
                                         "each component order for its codes or recharge."
        : o->state == PH_ORDER_PARTIAL
            ? "Some components were delivered and some failed: the client may retry the failed "
              "ones (POST /v1/orders/{id}/retry), which never buys a delivered one again."
        : o->state == PH_ORDER_FAILED
            ? "No component was delivered; a new order may be placed."
            : "Components are still with suppliers; check again later; do not place a new order.";
    json_t *ids = json_array(), *rec = NULL;
    if (ph_store_bundle_get(r->env->store, o->id, &txt, &err) == PH_OK) {
        rec = json_loads(txt, 0, NULL);
        free(txt);
    }
    json_t *c;
    size_t i;
    json_array_foreach(json_object_get(rec, "components"), i, c)
    {
        json_t *orders = json_object_get(c, "orders");
        json_array_append(ids, json_array_get(orders, json_array_size(orders) - 1));
    }
    json_decref(rec);
    const ph_product_conf *p = ph_config_product(r->cfg->cfg, o->sku);
    json_t *j =
        json_pack("{s:s,s:s,s:s,s:s?,s:s,s:I,s:s,s:o,s:s}", "diagnosis", name, "state",
                  ph_order_state_name(o->state), "sku", o->sku, "product_name", p ? p->name : NULL,
                  "delivery", "bundle", "order_id", (json_int_t)o->id, "client_order_id",
                  o->client_order_id, "components", ids, "advice", advice);
    ph_view_time(j, "created_at", o->created_at);
    ph_view_time(j, "updated_at", o->updated_at);
    return j;
}

/* An order that has no codes to diagnose: a recharge, or a supplier order
 * that has not delivered (yet). The order's own state is the answer. */
static json_t *order_result(ph_req *r, const ph_order *o)
{
    if (o->delivery == PH_DELIVERY_BUNDLE)
        return bundle_result(r, o);
    int recharge = o->delivery == PH_DELIVERY_RECHARGE;
    const char *acc = o->account_masked[0] ? o->account_masked : "the account";
    const char *why = o->reason[0] ? o->reason : "no reason given";
    char name[32], advice[320];
    const char *kind = recharge ? "recharge" : "order";
    switch (o->state) {
    case PH_ORDER_SUCCEEDED:
        snprintf(name, sizeof name, "%s_succeeded", kind);
        snprintf(advice, sizeof advice,
                 "The recharge of %s succeeded. It can take a few minutes to show on the "
                 "platform; if it does not, escalate with the order id.",
                 acc);
        break;
    case PH_ORDER_FAILED:
        snprintf(name, sizeof name, "%s_failed", kind);
        snprintf(advice, sizeof advice,
                 recharge ? "The recharge of %s failed (%s); the account was not topped up. A "
                            "new order may be placed."
                          : "The order failed (%.0s%s); no code was issued. A new order may be "
                            "placed.",
                 recharge ? acc : "", why);
        break;
    case PH_ORDER_UNKNOWN:
        snprintf(name, sizeof name, "%s_unknown", kind);
        snprintf(advice, sizeof advice,
                 "The supplier's answer about this %s was ambiguous; perkhub asks the supplier "
                 "until it knows and never sends it twice. Check again later; do not place a "
                 "new order.",
                 recharge ? "recharge" : "order");
        break;
    case PH_ORDER_GRANTED:
        snprintf(name, sizeof name, "%s_granted", kind);
        snprintf(advice, sizeof advice,
                 "The %s is granted to an end user and waits for its claim (or its expiry); "
                 "nothing was issued or sent yet. Do not place a new order.",
                 kind);
        break;
    case PH_ORDER_HELD:
        snprintf(name, sizeof name, "%s_held", kind);
        snprintf(advice, sizeof advice,
                 "The %s is held for a review by operations; nothing was issued or sent yet. "
                 "Check again later; do not place a new order.",
                 kind);
        break;
    default:
        snprintf(name, sizeof name, "%s_processing", kind);
        snprintf(advice, sizeof advice,
                 recharge ? "The recharge of %s is still with the supplier; check again in a few "
                            "minutes."
                          : "The order is still with the supplier%.0s; its codes show here once "
                            "delivered.",
                 recharge ? acc : "");
    }
    const ph_product_conf *p = ph_config_product(r->cfg->cfg, o->sku);
    json_t *j = json_pack("{s:s,s:s,s:s,s:s?,s:s,s:I,s:s}", "diagnosis", name, "state",
                          ph_order_state_name(o->state), "sku", o->sku, "product_name",
                          p ? p->name : NULL, "delivery",
                          ph_delivery_name(recharge ? PH_DELIVERY_RECHARGE : PH_DELIVERY_CARD_CODE),
                          "order_id", (json_int_t)o->id, "client_order_id", o->client_order_id);
    uint64_t parent;
    if (j && ph_order_component_of(o, &parent))
        json_object_set_new(j, "parent", json_integer((json_int_t)parent));
    if (o->account_masked[0])
        json_object_set_new(j, "account", json_string(o->account_masked));
    if (o->reason[0])
        json_object_set_new(j, "reason", json_string(o->reason));
    if (ph_req_has_scope(r, PH_SCOPE_OPS) && o->nattempts)
        json_object_set_new(j, "supplier", json_string(o->attempts[o->nattempts - 1].supplier));
    ph_view_time(j, "created_at", o->created_at);
    ph_view_time(j, "updated_at", o->updated_at);
    if (!recharge)
        json_object_set_new(j, "redemption_guide",
                            json_string(p && p->redemption_guide ? p->redemption_guide : ""));
    json_object_set_new(j, "advice", json_string(advice));
    return j;
}

/* The codes of page pg of an order the caller may see, the code itself for
 * its owner, and what the codes' suppliers said about the codes asked (w, or
 * NULL); an order without codes to show is answered about itself. Frees o. */
static int order_results(ph_req *r, ph_order *o, const redeem_wait *w, order_page pg)
{
    int owner = strcmp(o->client, r->client->name) == 0;
    json_t *arr = json_array();
    /* a grant's reserved codes are nobody's to see until it is claimed (issue 16) */
    size_t ncodes = o->state == PH_ORDER_GRANTED ? 0 : o->ncodes;
    if (!ncodes)
        json_array_append_new(arr, order_result(r, o));
    size_t from = pg.after < ncodes ? (size_t)pg.after : ncodes;
    size_t to = ncodes - from > pg.limit ? from + pg.limit : ncodes;
    for (size_t i = from; i < to; i++) {
        ph_batch b;
        uint64_t counts[7];
        ph_err err = {0};
        char code[PH_CODE_MAX + 1], card[PH_CODE_MAX + 1];
        int open = owner && ph_code_unseal(r->env->keys, o->codes[i].sealed, o->codes[i].sealed_len,
                                           code, card) == PH_OK;
        json_t *res = NULL;
        if (ph_store_batch_get(r->env->store, o->codes[i].batch_id, &b, counts, &err) == PH_OK)
            json_array_append_new(arr, res = result(r, &o->codes[i], &b, o, open ? code : NULL));
        for (size_t k = 0; res && w && k < w->n; k++)
            if (w->slot[k].code_id == o->codes[i].id)
                json_object_set_new(res, "redemption",
                                    json_string(redemption_name(w->slot[k].redeemed)));
        ph_wipe(code, sizeof code);
        ph_wipe(card, sizeof card);
    }
    ph_order_free(o);
    return reply_page(r, arr, to < ncodes ? (uint64_t)to : 0);
}

/* The asked order read again, with its codes. */
static int redeem_resume_order(ph_req *r)
{
    redeem_wait *w = r->ext;
    ph_order *o;
    ph_err err = {0};
    int rc = ph_store_order_get(r->env->store, w->order_id, 1, &o, &err);
    return rc ? ph_req_fail(r, rc, &err) : order_results(r, o, w, w->page);
}

/* A lookup by order: asks about every issued code of page pg whose supplier
 * can tell, all at once (the wait is the same for one code or a page);
 * PH_REQ_SUSPENDED (redeem_resume_order answers), or -1 when none is asked. */
static int ask_order(ph_req *r, const ph_order *o, order_page pg)
{
    /* a grant's reserved codes are not shown (order_results): never asked */
    size_t ncodes = o->state == PH_ORDER_GRANTED ? 0 : o->ncodes;
    if (pg.after >= ncodes)
        return -1;
    size_t from = (size_t)pg.after, to = ncodes - from > pg.limit ? from + pg.limit : ncodes;
    redeem_wait *w = redeem_wait_new(to - from);
    redeem_prep *prep = calloc(to - from, sizeof *prep);
    for (size_t i = from; w && prep && i < to; i++) {
        ph_batch b;
        uint64_t counts[7];
        ph_err err = {0};
        if (o->codes[i].state == PH_CODE_ISSUED &&
            ph_store_batch_get(r->env->store, o->codes[i].batch_id, &b, counts, &err) == PH_OK &&
            redeem_prepare(r, &b, &o->codes[i], &w->slot[w->n], &prep[w->n]) == PH_OK)
            w->n++;
    }
    int rc = -1;
    if (w && prep && w->n) {
        w->order_id = o->id;
        w->page = pg;
        rc = redeem_run(r, w, prep, redeem_resume_order);
        w = NULL; /* the request's now */
    }
    free(w);
    free(prep); /* each entry wiped when its ask started */
    return rc;
}

/* A lookup by order the caller may see: asks the suppliers that can tell,
 * else answers with the page's codes as stored. Anyone else gets the answer
 * of an order that does not exist. Frees o. */
static int lookup_order(ph_req *r, ph_order *o, order_page pg)
{
    int owner = strcmp(o->client, r->client->name) == 0;
    if (!owner && !ph_req_has_scope(r, PH_SCOPE_OPS)) {
        ph_order_free(o);
        return reply_page(r, json_pack("[o]", not_found()), 0);
    }
    if (ask_order(r, o, pg) == PH_REQ_SUSPENDED) {
        ph_order_free(o);
        return PH_REQ_SUSPENDED;
    }
    return order_results(r, o, NULL, pg);
}

/* Reads `after` and `limit` of a lookup by order into pg; 400 naming the
 * field and -1 when one is malformed. */
static int page_args(ph_req *r, const json_t *after, const json_t *limit, order_page *pg)
{
    pg->after = 0;
    pg->limit = LOOKUP_PAGE_MAX;
    if (after && (!json_is_integer(after) || json_integer_value(after) < 0))
        return ph_req_error(r, 400, "invalid_request", "after: expected an integer of 0 or more"),
               -1;
    if (limit && (!json_is_integer(limit) || json_integer_value(limit) < 1 ||
                  json_integer_value(limit) > LOOKUP_PAGE_MAX))
        return ph_req_error(r, 400, "invalid_request", "limit: expected an integer from 1 to %d",
                            LOOKUP_PAGE_MAX),
               -1;
    if (after)
        pg->after = (uint64_t)json_integer_value(after);
    if (limit)
        pg->limit = (size_t)json_integer_value(limit);
    return 0;
}

int ph_api_code_lookup(ph_req *r)
{
    json_t *b;
    if (ph_req_body_fields(r, "code order_id client_order_id after limit", &b))
        return PH_REQ_DONE;
    json_t *code = json_object_get(b, "code"), *oid = json_object_get(b, "order_id"),
           *coid = json_object_get(b, "client_order_id"), *after = json_object_get(b, "after"),
           *limit = json_object_get(b, "limit");
    int given = (code != NULL) + (oid != NULL) + (coid != NULL);
    size_t paging = (after != NULL) + (limit != NULL);
    int rc = PH_REQ_DONE;
    ph_err err = {0};
    ph_order *o = NULL;
    order_page pg;
    if (given != 1 || json_object_size(b) != 1 + paging) {
        rc = ph_req_error(r, 400, "invalid_request",
                          "body: expected exactly one of code, order_id, client_order_id");
    } else if (code && paging) {
        rc = ph_req_error(r, 400, "invalid_request",
                          "%s: only with order_id or client_order_id (a code is one result)",
                          after ? "after" : "limit");
    } else if (code) {
        rc = json_is_string(code)
                 ? lookup_code(r, json_string_value(code))
                 : ph_req_error(r, 400, "invalid_request", "code: expected a string");
    } else if (oid && (!json_is_integer(oid) || json_integer_value(oid) < 1)) {
        rc = ph_req_error(r, 400, "invalid_request", "order_id: expected a positive integer");
    } else if (coid && !ph_ident_valid(json_string_value(coid), PH_ORDER_ID_MAX)) {
        rc = ph_req_error(r, 400, "invalid_request", "client_order_id: expected a string");
    } else if (page_args(r, after, limit, &pg) == 0) {
        int found =
            oid ? ph_store_order_get(r->env->store, (uint64_t)json_integer_value(oid), 1, &o, &err)
                : ph_store_order_find(r->env->store, r->client->name, json_string_value(coid), 1,
                                      &o, &err);
        if (found == PH_ENOTFOUND)
            rc = reply_page(r, json_pack("[o]", not_found()), 0);
        else if (found)
            rc = ph_req_fail(r, found, &err);
        else
            rc = lookup_order(r, o, pg);
    }
    json_decref(b);
    return rc;
}
