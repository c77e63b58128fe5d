/*
 * plugin_ops.c — setting up and releasing the SDK's operation structs.
 */
#include "supply/plugin_ops.h"

#include <string.h>

#include "crypto/crypto.h"
#include "store/store.h"
#include "supply/sup_text.h"

void ph_op_result_init(struct perkhub_result *res)
{
    memset(res, 0, sizeof *res);
    res->quantity = -1;
    res->amount = -1;
    res->stock = -1;
    res->price = -1;
    res->balance = -1;
    res->timestamp_ms = -1;
    res->delivered_value = -1; /* ABI 1.2 */
    res->redeemed = -1;        /* ABI 1.3 */
}

/* A code's plaintext must not linger in freed heap memory. */
static void free_secret(const struct perkhub_host *host, char *s)
{
    if (!s)
        return;
    ph_wipe(s, strlen(s));
    host->mem_free(host, s);
}

void ph_op_result_clear(const struct perkhub_host *host, struct perkhub_result *res)
{
    for (size_t i = 0; res->codes && i < res->ncodes; i++) {
        free_secret(host, res->codes[i].code);
        free_secret(host, res->codes[i].card_no);
    }
    host->mem_free(host, res->codes);
    for (size_t i = 0; res->items && i < res->nitems; i++) {
        host->mem_free(host, res->items[i].product_id);
        host->mem_free(host, res->items[i].name);
    }
    host->mem_free(host, res->items);
    for (size_t i = 0; res->statement && i < res->nstatement; i++) {
        host->mem_free(host, res->statement[i].order_ref);
        host->mem_free(host, res->statement[i].supplier_order_id);
    }
    host->mem_free(host, res->statement);
    host->mem_free(host, res->reason);
    host->mem_free(host, res->order_ref);
    host->mem_free(host, res->supplier_order_id);
    host->mem_free(host, res->product_id);
    host->mem_free(host, res->next_state);
    host->mem_free(host, res->reply_body);
    ph_op_result_init(res);
}

#define REPLY_BODY_MAX 1024
#define CTYPE_MAX      100
#define ITEM_NAME_MAX  128

/* Drops *s unless it is an identifier of at most max bytes without the
 * account. 1 when it was dropped. */
static unsigned keep_id(const struct perkhub_host *host, char **s, size_t max, const char *account)
{
    if (!*s || (ph_suptext_id_ok(*s, max) && !ph_suptext_has_account(*s, account)))
        return 0;
    host->mem_free(host, *s);
    *s = NULL;
    return 1;
}

unsigned ph_op_result_clean(const struct perkhub_host *host, struct perkhub_result *res,
                            const char *account)
{
    unsigned n = 0;
    if (res->reason && !*res->reason) { /* "" is no reason */
        host->mem_free(host, res->reason);
        res->reason = NULL;
    }
    if (res->reason &&
        (!ph_suptext_reason_ok(res->reason) || ph_suptext_has_account(res->reason, account))) {
        host->mem_free(host, res->reason);
        res->reason = host->mem_strdup(host, PH_SUPTEXT_REFUSED); /* NULL: no reason */
        n++;
    }
    n += keep_id(host, &res->order_ref, PH_REF_MAX, account);
    n += keep_id(host, &res->supplier_order_id, PH_SUPPLIER_ORDER_MAX, account);
    n += keep_id(host, &res->product_id, PH_SUPPLIER_ORDER_MAX, account);
    if (keep_id(host, &res->next_state, PH_REASON_MAX, account)) {
        res->next = 0;
        n++;
    }
    if (res->reply_body && (!ph_suptext_text_ok(res->reply_body, REPLY_BODY_MAX) ||
                            ph_suptext_has_account(res->reply_body, account))) {
        host->mem_free(host, res->reply_body);
        res->reply_body = NULL;
        n++;
    }
    if (res->reply_content_type &&
        (!*res->reply_content_type || !ph_suptext_text_ok(res->reply_content_type, CTYPE_MAX))) {
        res->reply_content_type = "text/plain"; /* a literal of the plugin: not freed */
        n++;
    }
    size_t kept = 0;
    for (size_t i = 0; res->items && i < res->nitems; i++) {
        struct perkhub_item *it = &res->items[i];
        if (it->name && (!ph_suptext_text_ok(it->name, ITEM_NAME_MAX) ||
                         ph_suptext_has_account(it->name, account))) {
            host->mem_free(host, it->name);
            it->name = NULL;
            n++;
        }
        if (!it->product_id || keep_id(host, &it->product_id, PH_SUPPLIER_ORDER_MAX, account)) {
            host->mem_free(host, it->name); /* an item without a usable id goes */
            n++;
            continue;
        }
        res->items[kept++] = *it;
    }
    for (size_t i = kept; res->items && i < res->nitems; i++)
        memset(&res->items[i], 0, sizeof res->items[i]); /* moved or freed */
    if (res->items)
        res->nitems = kept;
    /* a statement line keeps only identifiers; money/recon.h refuses a line
     * left naming nothing */
    for (size_t i = 0; res->statement && i < res->nstatement; i++) {
        n += keep_id(host, &res->statement[i].order_ref, PH_REF_MAX, account);
        n += keep_id(host, &res->statement[i].supplier_order_id, PH_SUPPLIER_ORDER_MAX, account);
    }
    /* 0 means "never expires": a date before 1970 must not read as that */
    for (size_t i = 0; res->codes && i < res->ncodes; i++)
        if (res->codes[i].expires_at_ms < 0) {
            res->codes[i].expires_at_ms = PH_EXPIRED_LONG_AGO;
            n++;
        }
    return n;
}

void ph_op_request_clear(const struct perkhub_host *host, struct perkhub_request *req)
{
    host->mem_free(host, req->url);
    for (size_t i = 0; i < req->nheaders && i < PERKHUB_MAX_HEADERS; i++)
        host->mem_free(host, req->headers[i]);
    /* A request body may carry an account number (recharge). */
    if (req->body) {
        ph_wipe(req->body, req->body_len);
        host->mem_free(host, req->body);
    }
    memset(req, 0, sizeof *req);
}

void ph_op_reply_clear(const struct perkhub_host *host, struct perkhub_local_reply *reply)
{
    if (reply->body) {
        ph_wipe(reply->body, reply->body_len);
        host->mem_free(host, reply->body);
    }
    memset(reply, 0, sizeof *reply);
}

const char *ph_op_kind_name(int kind)
{
    static const char *const names[] = {"?",          "catalog",   "stock_check",
                                        "card_order", "recharge",  "order_query",
                                        "balance",    "statement", "redemption"};
    return kind >= 1 && kind <= PERKHUB_OP_REDEMPTION ? names[kind] : "?";
}

const char *ph_op_status_name(int status)
{
    switch (status) {
    case PERKHUB_OK:
        return "ok";
    case PERKHUB_RETRYABLE:
        return "retryable";
    case PERKHUB_DEFINITE_FAILURE:
        return "definite_failure";
    case PERKHUB_AMBIGUOUS:
        return "ambiguous";
    case PERKHUB_ERR_CONFIG:
        return "config";
    case PERKHUB_ERR_NOMEM:
        return "nomem";
    case PERKHUB_ERR_NOT_FOUND:
        return "not_found";
    case PERKHUB_ERR_UNSUPPORTED:
        return "unsupported";
    case PERKHUB_ERR_INTERNAL:
        return "internal";
    default:
        return "unknown";
    }
}
