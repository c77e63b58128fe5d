/*
 * example.c — a complete adapter for a form-encoded, MD5-signed protocol (docs/sdk.md, §0):
 * recharges, card codes, order queries, the balance, callbacks by POST or GET. Copy it, or
 * run tools/new-plugin NAME (it turns each "PROTOCOL:" mark into a TODO).
 *
 * POST <base_url>/<recharge|card|query|balance>, a form body with sign = MD5(the non-empty
 * fields but sign, sorted by key, "k=v&k=v", then "&key=<key>") in UPPER-case hex. Replies:
 * forms signed the same way; code=0 done (state=success|processing|failed, cards="no=pw;..."),
 * 4004 no such order, 1001 bad signature, 2001 out of stock, 2002 invalid account, 2003 low
 * balance, 3001 busy. Callbacks: signed forms with a Unix timestamp, answered "success".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <perkhub/plugin.h>

struct example {
    const struct perkhub_host *host;
    const char *base_url, *merchant, *key; /* the config's strings: valid until shutdown */
    int64_t stale_ms;
};

/* PROTOCOL: the keys your supplier needs (schema: perkhub/plugin.h). */
static const struct perkhub_config_key example_config[] = {
    {"base_url", PERKHUB_CONF_STRING, NULL, "The supplier's API root, without a trailing '/'.", 1},
    {"merchant_id", PERKHUB_CONF_STRING, NULL, "Our merchant id at the supplier.", 1},
    {"key", PERKHUB_CONF_SECRET, NULL, "The MD5 signing key (env:NAME or file:PATH).", 1},
    {"callback_stale_s", PERKHUB_CONF_INT, "300",
     "Refuse callbacks signed more than this many seconds away from our clock.", 0},
    {NULL, 0, NULL, NULL, 0},
};

static int example_init(const struct perkhub_host *host, const struct perkhub_config *config,
                        void **instance, char *errbuf, size_t errlen)
{
    int64_t stale_s = 0;
    if (host->config_int(host, config, "callback_stale_s", &stale_s) != PERKHUB_OK || stale_s < 1) {
        snprintf(errbuf, errlen, "config key 'callback_stale_s' must be at least 1");
        return PERKHUB_ERR_CONFIG;
    }
    struct example *ex = host->mem_alloc(host, sizeof *ex);
    if (!ex)
        return PERKHUB_ERR_NOMEM;
    *ex = (struct example){host, host->config_string(host, config, "base_url"),
                           host->config_string(host, config, "merchant_id"),
                           host->config_string(host, config, "key"), stale_s * 1000};
    host->log_msg(host, PERKHUB_LOG_INFO, "init", "callback_stale_s=%lld", (long long)stale_s);
    *instance = ex;
    return PERKHUB_OK;
}

static void example_shutdown(void *instance)
{
    const struct perkhub_host *h = ((struct example *)instance)->host;
    h->mem_free(h, instance);
}

/* PROTOCOL: the signature of kv (without sign); here upper-case hex MD5. */
static char *sign_of(struct example *ex, const char *const *kv)
{
    const struct perkhub_host *h = ex->host;
    char *text =
        h->form_encode(h, kv, PERKHUB_FORM_SORTED | PERKHUB_FORM_RAW | PERKHUB_FORM_SKIP_EMPTY);
    size_t n = text ? strlen(text) + strlen(ex->key) + 6 : 0;
    char *keyed = text ? h->mem_alloc(h, n) : NULL;
    char *hex = NULL;
    if (keyed) {
        snprintf(keyed, n, "%s&key=%s", text, ex->key);
        uint8_t md[16];
        h->md5(h, keyed, strlen(keyed), md);
        hex = h->hex_encode(h, md, sizeof md, 1); /* the protocol wants upper case */
        memset(keyed, 0, n);                      /* it holds the key */
    }
    h->mem_free(h, keyed);
    h->mem_free(h, text);
    return hex;
}

/* 1 when kv (from kv_parse) carries its own good sign; blanks sign in kv. */
static int signed_ok(struct example *ex, char **kv)
{
    const char *sign = perkhub_kv_get((const char *const *)kv, "sign");
    for (size_t i = 0; kv[i]; i += 2) /* signed: every field but sign */
        if (strcmp(kv[i], "sign") == 0)
            kv[i + 1] = "";
    char *want = sign ? sign_of(ex, (const char *const *)kv) : NULL;
    int ok = want && strlen(sign) == 32 && ex->host->ct_equal(ex->host, sign, want, 32);
    ex->host->mem_free(ex->host, want);
    return ok;
}

/* PROTOCOL: the URL, the fields and their names per operation. */
static int example_build(void *instance, const struct perkhub_op *op, struct perkhub_request *req)
{
    struct example *ex = instance;
    const struct perkhub_host *h = ex->host;
    /* by op->kind: 3 card order, 4 recharge, 5 order query, 6 balance */
    static const char *const paths[] = {NULL, NULL, NULL, "card", "recharge", "query", "balance"};
    if (op->kind < 0 || op->kind > PERKHUB_OP_BALANCE || !paths[op->kind])
        return PERKHUB_ERR_UNSUPPORTED;
    char qty[24], ts[24];
    snprintf(qty, sizeof qty, "%u", (unsigned)op->quantity);
    snprintf(ts, sizeof ts, "%lld", (long long)(h->now_ms(h) / 1000));
    const char *kv[20] = {"merchant_id", ex->merchant, "timestamp", ts};
    size_t n = 4;
#define ADD(k, v) (kv[n++] = (k), kv[n] = (v), kv[n] = kv[n] ? kv[n] : "", n++)
    if (op->kind != PERKHUB_OP_BALANCE)
        ADD("order_no", op->order_ref);
    if (op->kind == PERKHUB_OP_CARD_ORDER || op->kind == PERKHUB_OP_RECHARGE)
        ADD("product_id", op->product_id);
    if (op->kind == PERKHUB_OP_CARD_ORDER)
        ADD("quantity", qty);
    if (op->kind == PERKHUB_OP_RECHARGE) {
        ADD("account", op->account);
        ADD("notify_url", op->callback_url);
    }
    char *sign = sign_of(ex, kv);
    ADD("sign", sign);
#undef ADD
    req->method = "POST";
    req->body = sign ? h->form_encode(h, kv, 0) : NULL;
    h->mem_free(h, sign);
    size_t ul = strlen(ex->base_url) + 16;
    req->url = h->mem_alloc(h, ul);
    req->headers[0] = h->mem_strdup(h, "Content-Type: application/x-www-form-urlencoded");
    req->nheaders = 1;
    if (!req->body || !req->url || !req->headers[0])
        return PERKHUB_ERR_NOMEM;
    snprintf(req->url, ul, "%s/%s", ex->base_url, paths[op->kind]);
    req->body_len = strlen(req->body);
    return PERKHUB_OK;
}

/* Yuan with at most two decimals ("12.30") in fen; -1 when it is not that. */
static int64_t fen_of(const char *s)
{
    int64_t f = 0;
    int dec = -1;
    for (; s && *s; s++) {
        if (*s == '.' && dec < 0)
            dec = 0;
        else if (*s >= '0' && *s <= '9' && dec < 2 && f < INT64_MAX / 100)
            f = f * 10 + (*s - '0'), dec += dec >= 0;
        else
            return -1;
    }
    return s ? f * (dec <= 0 ? 100 : dec == 1 ? 10 : 1) : -1;
}

static int outcome(struct example *ex, struct perkhub_result *res, int st, const char *reason)
{
    res->reason = reason ? ex->host->mem_strdup(ex->host, reason) : NULL;
    ex->host->log_msg(ex->host, PERKHUB_LOG_INFO, "outcome", "status=%s reason=%s",
                      ex->host->status_str(st), reason ? reason : "-");
    return st;
}

/* PROTOCOL: cards "no=password;..." into res->codes: 0, or -1. */
static int codes_of(struct example *ex, const char *cards, struct perkhub_result *res)
{
    const struct perkhub_host *h = ex->host;
    char **kv = NULL;
    size_t n = 0;
    if (!cards || h->kv_parse(h, cards, strlen(cards), ';', 0, &kv, &n) != PERKHUB_OK)
        return -1;
    res->codes = n ? h->mem_alloc(h, n * sizeof *res->codes) : NULL;
    for (size_t i = 0; res->codes && i < n; i++, res->ncodes++) {
        res->codes[i].card_no = h->mem_strdup(h, kv[2 * i]);
        res->codes[i].code = h->mem_strdup(h, kv[2 * i + 1]);
    }
    h->mem_free(h, kv);
    for (size_t i = 0; i < res->ncodes; i++)
        if (!res->codes[i].code || !*res->codes[i].code)
            return -1;
    return res->codes ? 0 : -1;
}

static int example_parse(void *instance, const struct perkhub_op *op,
                         const struct perkhub_response *resp, struct perkhub_result *res)
{
    struct example *ex = instance;
    const struct perkhub_host *h = ex->host;
    char **kv = NULL;
    if (resp->http_status != 200 ||
        h->kv_parse(h, resp->body, resp->body_len, '&', 1, &kv, NULL) != PERKHUB_OK)
        return outcome(ex, res, PERKHUB_AMBIGUOUS, "unreadable_reply");
    if (!signed_ok(ex, kv)) { /* also what a reply cut short looks like */
        h->mem_free(h, kv);
        return outcome(ex, res, PERKHUB_AMBIGUOUS, "bad_reply_signature");
    }
    const char *const *r = (const char *const *)kv;
    const char *code = perkhub_kv_get(r, "code"), *state = perkhub_kv_get(r, "state");
    const char *ref = perkhub_kv_get(r, "order_no");
    int st = PERKHUB_AMBIGUOUS;
    const char *why = "unknown_reply";
    /* PROTOCOL: the documented refusals; every other code stays AMBIGUOUS. */
    static const char *const refusals[][2] = {{"1001", "bad_request_signature"},
                                              {"2001", "out_of_stock"},
                                              {"2002", "invalid_account"},
                                              {"2003", "insufficient_balance"},
                                              {"3001", "supplier_busy"}};
    int is_order = op->kind == PERKHUB_OP_CARD_ORDER || op->kind == PERKHUB_OP_RECHARGE;
    for (size_t i = 0; is_order && code && i < sizeof refusals / sizeof refusals[0]; i++)
        if (strcmp(code, refusals[i][0]) == 0) /* 3001: busy, may work later */
            st = i == 4 ? PERKHUB_RETRYABLE : PERKHUB_DEFINITE_FAILURE, why = refusals[i][1];
    if (op->kind == PERKHUB_OP_ORDER_QUERY && code && strcmp(code, "4004") == 0) {
        res->state = PERKHUB_STATE_NOT_FOUND;
        st = PERKHUB_OK, why = NULL;
    } else if (op->kind == PERKHUB_OP_BALANCE && code && strcmp(code, "0") == 0) {
        res->balance = fen_of(perkhub_kv_get(r, "balance"));
        st = res->balance >= 0 ? PERKHUB_OK : PERKHUB_AMBIGUOUS;
        why = res->balance >= 0 ? NULL : "bad_balance";
    } else if (code && strcmp(code, "0") == 0 && ref && strcmp(ref, op->order_ref) == 0 && state) {
        res->supplier_order_id = h->mem_strdup(h, perkhub_kv_get(r, "supplier_order_no"));
        int kind = is_order ? op->kind : op->order_kind;
        res->state = strcmp(state, "success") == 0      ? PERKHUB_STATE_SUCCEEDED
                     : strcmp(state, "processing") == 0 ? PERKHUB_STATE_PROCESSING
                     : strcmp(state, "failed") == 0     ? PERKHUB_STATE_FAILED
                                                        : PERKHUB_STATE_NONE;
        if (res->state == PERKHUB_STATE_SUCCEEDED && kind == PERKHUB_OP_CARD_ORDER &&
            (codes_of(ex, perkhub_kv_get(r, "cards"), res) ||
             res->ncodes != (op->quantity ? op->quantity : 1)))
            res->state = PERKHUB_STATE_NONE; /* codes we cannot read: not understood */
        if (res->state == PERKHUB_STATE_NONE)
            why = "unknown_state";
        else if (is_order && res->state == PERKHUB_STATE_FAILED)
            st = PERKHUB_DEFINITE_FAILURE, why = "order_failed";
        else
            st = PERKHUB_OK, why = NULL;
    }
    h->mem_free(h, kv);
    return outcome(ex, res, st, why);
}

static int example_verify(void *instance, const struct perkhub_callback *cb,
                          struct perkhub_result *res)
{
    struct example *ex = instance;
    const struct perkhub_host *h = ex->host;
    /* PROTOCOL: the notify's fields; a GET brings them in the query string. */
    const char *text = cb->body_len ? cb->body : cb->query;
    char **kv = NULL;
    if (h->kv_parse(h, text, strlen(text), '&', 1, &kv, NULL) != PERKHUB_OK)
        return outcome(ex, res, PERKHUB_DEFINITE_FAILURE, "malformed");
    int ok = signed_ok(ex, kv); /* the signature before anything else */
    const char *const *r = (const char *const *)kv;
    const char *ts = perkhub_kv_get(r, "timestamp"), *state = perkhub_kv_get(r, "state");
    int64_t age = ts ? h->now_ms(h) - strtoll(ts, NULL, 10) * 1000 : INT64_MAX;
    int st = PERKHUB_DEFINITE_FAILURE;
    const char *why = !ok                                         ? "bad_signature"
                      : age > ex->stale_ms || age < -ex->stale_ms ? "stale"
                                                                  : NULL;
    if (!why && perkhub_kv_get(r, "order_no") && state) {
        res->order_ref = h->mem_strdup(h, perkhub_kv_get(r, "order_no"));
        res->supplier_order_id = h->mem_strdup(h, perkhub_kv_get(r, "supplier_order_no"));
        res->amount = fen_of(perkhub_kv_get(r, "amount"));
        res->timestamp_ms = strtoll(ts, NULL, 10) * 1000;
        res->state = strcmp(state, "success") == 0  ? PERKHUB_STATE_SUCCEEDED
                     : strcmp(state, "failed") == 0 ? PERKHUB_STATE_FAILED
                                                    : PERKHUB_STATE_PROCESSING;
        res->reply_body = h->mem_strdup(h, "success");
        st = PERKHUB_OK;
    } else if (!why) {
        why = "malformed";
    }
    h->mem_free(h, kv);
    return outcome(ex, res, st, why);
}

static const struct perkhub_ops example_ops = {
    .struct_size = sizeof(struct perkhub_ops),
    .build_request = example_build,
    .parse_response = example_parse,
    .verify_callback = example_verify,
};

/* PROTOCOL: the name, what it offers, the windows (docs/sdk.md). */
static const struct perkhub_plugin example_plugin = {
    .struct_size = sizeof(struct perkhub_plugin),
    .abi_major = PERKHUB_ABI_MAJOR,
    .abi_minor = PERKHUB_ABI_MINOR,
    .name = "example",
    .version = "2.0.0",
    .description = "Example adapter: a form-encoded, MD5-signed supplier protocol.",
    .capabilities = PERKHUB_CAP_CARD_ORDER | PERKHUB_CAP_RECHARGE | PERKHUB_CAP_ORDER_QUERY |
                    PERKHUB_CAP_CALLBACK | PERKHUB_CAP_BALANCE,
    .config = example_config,
    .init = example_init,
    .shutdown = example_shutdown,
    .ops = &example_ops,
    .processing_window_s = 300,
    .query_delay_ms = 2000,
};

PERKHUB_EXPORT const struct perkhub_plugin *perkhub_plugin_entry(void)
{
    return &example_plugin;
}
