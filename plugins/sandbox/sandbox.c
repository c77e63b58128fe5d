/*
 * sandbox.c — the built-in sandbox supplier: a plugin that is its own upstream,
 * so a mall (and our demo and end-to-end tests) can integrate against perkhub
 * without any real supplier. docs/sandbox.md lists its magic values.
 *
 * It declares PERKHUB_CAP_LOCAL: the core builds every request as for any
 * supplier, then hands it to serve_local instead of the network, and the
 * reply takes the path a network reply takes (timeouts, classification,
 * parse_response). So the sandbox is written as two halves that only talk
 * through the request and the reply, exactly like a plugin and its supplier:
 *
 *   plugin half    build_request, parse_response   (what any adapter does)
 *   supplier half  serve_local                     (what the upstream would do)
 *
 * What it shows, in order:
 *   1. the instance, the products and the magic accounts (constant tables);
 *   2. the config schema, init and shutdown;
 *   3. build_request: a made-up sandbox:// URL and a form body;
 *   4. serve_local: a pure function of (instance, request, host->now_ms). The
 *      sandbox remembers nothing between calls: every order and query request
 *      carries the product, the account, the quantity and the attempt's
 *      creation time, so the answer to a query is computed from (magic value,
 *      created, now), and card codes from HMAC-SHA256(seed, ref ":" index);
 *   5. parse_response: the sandbox's JSON replies -> normalized results
 *      (ABI 1.3: whether a card code was redeemed, decided by the code's
 *      text: a code containing REDEEMED was, UNKNOWN the sandbox cannot
 *      tell, HANG gets no answer; any other code was not);
 *   6. the descriptor and the one exported entry symbol.
 *
 * The account number is personal data, and a card code a secret: each travels
 * in a request body only, never in a reply, a result, a reason or a log line
 * (docs/design.md rule 3).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <perkhub/plugin.h>

/* ======================= (1) INSTANCE AND TABLES ========================== */

/* One instance per configured supplier; read-only after init, so calls from
 * several threads need no lock. */
struct sandbox {
    const struct perkhub_host *host; /* valid until shutdown returns */
    char *seed;                      /* HMAC key of the codes (our copy) */
    size_t seed_len;
    int64_t settle_ms; /* how long the "later" outcomes take */
    int64_t slow_ms;   /* how long slow answers (and dropped connections) take */
    char *statement;   /* the statement it answers for any period ("" none); our copy */
};

#define SBX_URL_PREFIX   "sandbox://local/"
#define SBX_REF_MAX      64                 /* the SDK's bound on op->order_ref */
#define SBX_FIELD_MAX    128                /* longest form value the sandbox reads */
#define SBX_MAX_QUANTITY 100000             /* codes in one order: limits.max_order_quantity */
#define SBX_CODE_LEN     20                 /* "SBX-" + 16 hex digits */
#define SBX_BALANCE      INT64_C(100000000) /* fen: 1,000,000.00 CNY, never spent */
#define SBX_MS_MAX       INT64_C(86400000)  /* one day: a bound for settle_ms, slow_ms */

/* What the sandbox does with an order, and later says about it. */
enum sbx_behaviour {
    SBX_NOW = 1,        /* succeeds at once */
    SBX_SLOW,           /* succeeds, answering after slow_ms */
    SBX_OUT_OF_STOCK,   /* refused: out_of_stock */
    SBX_BAD_ACCOUNT,    /* refused: invalid_account */
    SBX_HANG_THEN_OK,   /* no answer; the query says processing, then succeeded */
    SBX_HANG_THEN_FAIL, /* no answer; the query says processing, then failed */
    SBX_ACCEPT_THEN_OK, /* answers processing; the query says succeeded later */
    SBX_HIDDEN_THEN_OK, /* answers processing; the query says not found, then succeeded */
    SBX_BY_ACCOUNT,     /* recharge: the account decides (sbx_accounts) */
};

struct sbx_product {
    const char *id;
    const char *name;
    int kind;           /* PERKHUB_OP_CARD_ORDER or PERKHUB_OP_RECHARGE */
    int64_t face_value; /* fen */
    int64_t price;      /* fen, what an order costs */
    int64_t stock;      /* -1: unlimited */
    int behaviour;      /* enum sbx_behaviour */
};

/* The catalog. docs/sandbox.md copies this table: change both. */
static const struct sbx_product sbx_products[] = {
    {"sandbox.card", "Sandbox card code (delivered at once)", PERKHUB_OP_CARD_ORDER, 3000, 2800, -1,
     SBX_NOW},
    {"sandbox.card.out", "Sandbox card code (always out of stock)", PERKHUB_OP_CARD_ORDER, 3000,
     2800, 0, SBX_OUT_OF_STOCK},
    {"sandbox.card.timeout", "Sandbox card code (no answer, delivered later)",
     PERKHUB_OP_CARD_ORDER, 3000, 2800, -1, SBX_HANG_THEN_OK},
    {"sandbox.card.timeout.fail", "Sandbox card code (no answer, fails later)",
     PERKHUB_OP_CARD_ORDER, 3000, 2800, -1, SBX_HANG_THEN_FAIL},
    {"sandbox.card.slow", "Sandbox card code (slow answer)", PERKHUB_OP_CARD_ORDER, 3000, 2800, -1,
     SBX_SLOW},
    {"sandbox.recharge", "Sandbox mobile top-up (magic accounts)", PERKHUB_OP_RECHARGE, 5000, 4900,
     -1, SBX_BY_ACCOUNT},
};
#define SBX_NPRODUCTS (sizeof sbx_products / sizeof sbx_products[0])

/* The magic accounts of sandbox.recharge. Any other 11-digit number starting
 * with 1 succeeds at once; anything else is an invalid account. */
static const struct {
    const char *account;
    int behaviour;
} sbx_accounts[] = {
    {"13800000001", SBX_NOW},
    {"13800000002", SBX_BAD_ACCOUNT},
    {"13800000003", SBX_HANG_THEN_OK},
    {"13800000004", SBX_HANG_THEN_FAIL},
    {"13800000005", SBX_SLOW},
    {"13800000006", SBX_ACCEPT_THEN_OK},
    {"13800000007", SBX_HIDDEN_THEN_OK},
};

static const struct sbx_product *sbx_product_find(const char *id)
{
    for (size_t i = 0; i < SBX_NPRODUCTS; i++)
        if (strcmp(sbx_products[i].id, id) == 0)
            return &sbx_products[i];
    return NULL;
}

/* A phone-number-like account: 11 digits, the first one 1. */
static int sbx_account_plausible(const char *account)
{
    if (strlen(account) != 11 || account[0] != '1')
        return 0;
    for (size_t i = 0; i < 11; i++)
        if (account[i] < '0' || account[i] > '9')
            return 0;
    return 1;
}

static int sbx_account_behaviour(const char *account)
{
    for (size_t i = 0; i < sizeof sbx_accounts / sizeof sbx_accounts[0]; i++)
        if (strcmp(sbx_accounts[i].account, account) == 0)
            return sbx_accounts[i].behaviour;
    return sbx_account_plausible(account) ? SBX_NOW : SBX_BAD_ACCOUNT;
}

/* Our references are [A-Za-z0-9-], 1..64 bytes (perkhub_op.order_ref). */
static int sbx_ref_valid(const char *ref)
{
    size_t n = strlen(ref);
    if (n == 0 || n > SBX_REF_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = ref[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return 0;
    }
    return 1;
}

/* A volatile store the compiler cannot drop: an account must not linger in
 * freed memory or on the stack. */
static void sbx_wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

static void sbx_free_secret(const struct perkhub_host *host, char *s)
{
    if (!s)
        return;
    sbx_wipe(s, strlen(s));
    host->mem_free(host, s);
}

/* ======================= (2) CONFIG, INIT, SHUTDOWN ======================= */

static const struct perkhub_config_key sandbox_config[] = {
    {
        .key = "seed",
        .type = PERKHUB_CONF_STRING,
        .default_value = "sandbox",
        .description = "Key of the HMAC that derives card codes from the order reference: "
                       "the same seed and reference always give the same codes.",
    },
    {
        .key = "settle_ms",
        .type = PERKHUB_CONF_INT,
        .default_value = "3000",
        .description = "Milliseconds after an attempt's creation at which the delayed magic "
                       "outcomes (processing, not found, no answer) settle (0..86400000).",
    },
    {
        .key = "slow_ms",
        .type = PERKHUB_CONF_INT,
        .default_value = "2000",
        .description = "Milliseconds a slow answer takes, and after which an unanswered "
                       "request's connection drops (0..86400000).",
    },
    {
        .key = "statement",
        .type = PERKHUB_CONF_STRING,
        .default_value = "",
        .description = "The statement the sandbox bills for any period (ABI 1.2, "
                       "PERKHUB_OP_STATEMENT): entries REF:FEN or REF:FEN:free separated by "
                       "spaces; each names our reference and the sandbox's order id SBXO-REF.",
    },
    {.key = NULL},
};

static int sbx_config_ms(const struct perkhub_host *host, const struct perkhub_config *config,
                         const char *key, int64_t *out, char *errbuf, size_t errlen)
{
    if (host->config_int(host, config, key, out) != PERKHUB_OK || *out < 0 || *out > SBX_MS_MAX) {
        snprintf(errbuf, errlen, "config key '%s' must be 0..%" PRId64, key, SBX_MS_MAX);
        return PERKHUB_ERR_CONFIG;
    }
    return PERKHUB_OK;
}

static int sandbox_init(const struct perkhub_host *host, const struct perkhub_config *config,
                        void **instance, char *errbuf, size_t errlen)
{
    const char *seed = host->config_string(host, config, "seed");
    if (!seed || !*seed) {
        snprintf(errbuf, errlen, "config key 'seed' must not be empty");
        return PERKHUB_ERR_CONFIG;
    }
    int64_t settle_ms, slow_ms;
    if (sbx_config_ms(host, config, "settle_ms", &settle_ms, errbuf, errlen) != PERKHUB_OK ||
        sbx_config_ms(host, config, "slow_ms", &slow_ms, errbuf, errlen) != PERKHUB_OK)
        return PERKHUB_ERR_CONFIG;

    struct sandbox *sb = host->mem_alloc(host, sizeof *sb);
    if (!sb)
        return PERKHUB_ERR_NOMEM;
    sb->host = host;
    sb->seed = host->mem_strdup(host, seed);
    if (!sb->seed) {
        host->mem_free(host, sb);
        return PERKHUB_ERR_NOMEM;
    }
    const char *st = host->config_string(host, config, "statement");
    sb->statement = host->mem_strdup(host, st ? st : "");
    if (!sb->statement) {
        host->mem_free(host, sb->seed);
        host->mem_free(host, sb);
        return PERKHUB_ERR_NOMEM;
    }
    sb->seed_len = strlen(seed);
    sb->settle_ms = settle_ms;
    sb->slow_ms = slow_ms;
    /* The seed is not a secret, but it is not ops' business either. */
    host->log_msg(host, PERKHUB_LOG_INFO, "init", "settle_ms=%" PRId64 " slow_ms=%" PRId64,
                  settle_ms, slow_ms);
    *instance = sb;
    return PERKHUB_OK;
}

static void sandbox_shutdown(void *instance)
{
    struct sandbox *sb = instance;
    const struct perkhub_host *host = sb->host;
    host->mem_free(host, sb->seed);
    host->mem_free(host, sb->statement);
    host->mem_free(host, sb);
}

/* ======================= (3) BUILD_REQUEST ================================ */

/*
 * The sandbox's wire protocol, as a supplier's would be documented:
 *   GET  sandbox://local/catalog
 *   GET  sandbox://local/stock?product=<id>
 *   GET  sandbox://local/balance
 *   GET  sandbox://local/statement     (ABI 1.2) the configured statement
 *   POST sandbox://local/order   form: kind, product, qty, ref, created[, account]
 *   POST sandbox://local/query   the same form as the order it asks about
 *   POST sandbox://local/redemption  (ABI 1.3) form: code[, card][, product]
 * kind is "card" or "recharge". The account goes in the body, never in the
 * URL: URLs end up in logs, and the core wipes request bodies.
 */

/* GET <path>[?<key>=<value, URL-encoded>]. */
static int sbx_request_get_param(const struct sandbox *sb, struct perkhub_request *req,
                                 const char *path, const char *key, const char *value)
{
    const struct perkhub_host *h = sb->host;
    char *enc = value ? h->url_encode(h, value) : NULL;
    if (value && !enc)
        return PERKHUB_ERR_NOMEM;
    size_t n = sizeof SBX_URL_PREFIX + strlen(path) + (enc ? strlen(enc) + strlen(key) + 4 : 0);
    req->url = h->mem_alloc(h, n);
    if (req->url)
        snprintf(req->url, n, SBX_URL_PREFIX "%s%s%s%s%s", path, enc ? "?" : "", enc ? key : "",
                 enc ? "=" : "", enc ? enc : "");
    h->mem_free(h, enc);
    req->method = "GET";
    return req->url ? PERKHUB_OK : PERKHUB_ERR_NOMEM;
}

static int sbx_request_get(const struct sandbox *sb, struct perkhub_request *req, const char *path,
                           const char *product)
{
    return sbx_request_get_param(sb, req, path, "product", product);
}

/* The order's kind: a query names it in op->order_kind, or leaves it to the
 * product (0). */
static int sbx_op_order_kind(const struct perkhub_op *op)
{
    if (op->kind != PERKHUB_OP_ORDER_QUERY)
        return op->kind;
    if (op->order_kind)
        return op->order_kind;
    const struct sbx_product *p = op->product_id ? sbx_product_find(op->product_id) : NULL;
    return p ? p->kind : PERKHUB_OP_CARD_ORDER;
}

/* The form body of a redemption question: the code (and card number) url-encoded,
 * each copy wiped before it is freed; *out is host memory (the caller's). */
static int sbx_redemption_form(const struct sandbox *sb, const struct perkhub_op *op, char **out,
                               size_t *outlen)
{
    const struct perkhub_host *h = sb->host;
    if (!op->code || !*op->code)
        return PERKHUB_ERR_INTERNAL;
    char *code = h->url_encode(h, op->code);
    char *card = op->card_no ? h->url_encode(h, op->card_no) : NULL;
    char *product = op->product_id ? h->url_encode(h, op->product_id) : NULL;
    int st = PERKHUB_ERR_NOMEM;
    if (code && (card || !op->card_no) && (product || !op->product_id)) {
        size_t n = strlen(code) + (card ? strlen(card) : 0) + (product ? strlen(product) : 0) + 32;
        char *body = h->mem_alloc(h, n);
        if (body) {
            int len =
                snprintf(body, n, "code=%s%s%s%s%s", code, card ? "&card=" : "", card ? card : "",
                         product ? "&product=" : "", product ? product : "");
            *out = body;
            *outlen = (size_t)len;
            st = PERKHUB_OK;
        }
    }
    sbx_free_secret(h, code);
    sbx_free_secret(h, card);
    h->mem_free(h, product);
    return st;
}

/* The form body of an order or a query; *out is host memory (the caller's). */
static int sbx_form_build(const struct sandbox *sb, const struct perkhub_op *op, char **out,
                          size_t *outlen)
{
    const struct perkhub_host *h = sb->host;
    int recharge = sbx_op_order_kind(op) == PERKHUB_OP_RECHARGE;
    char *ref = h->url_encode(h, op->order_ref ? op->order_ref : "");
    char *product = h->url_encode(h, op->product_id ? op->product_id : "");
    char *account = recharge ? h->url_encode(h, op->account ? op->account : "") : NULL;
    int st = PERKHUB_ERR_NOMEM;
    if (ref && product && (account || !recharge)) {
        size_t n = strlen(ref) + strlen(product) + (account ? strlen(account) : 0) + 128;
        char *body = h->mem_alloc(h, n);
        if (body) {
            int len = snprintf(
                body, n, "kind=%s&product=%s&qty=%" PRIu32 "&ref=%s&created=%" PRId64 "%s%s",
                recharge ? "recharge" : "card", product, op->quantity, ref, op->created_at_ms,
                account ? "&account=" : "", account ? account : "");
            *out = body;
            *outlen = (size_t)len;
            st = PERKHUB_OK;
        }
    }
    sbx_free_secret(h, account);
    h->mem_free(h, ref);
    h->mem_free(h, product);
    return st;
}

/* method, URL and content type of a POST to path; the body is the caller's. */
static int sbx_post_head(const struct sandbox *sb, struct perkhub_request *req, const char *path)
{
    const struct perkhub_host *h = sb->host;
    req->method = "POST";
    req->url = h->mem_alloc(h, sizeof SBX_URL_PREFIX + strlen(path));
    req->headers[0] = h->mem_strdup(h, "Content-Type: application/x-www-form-urlencoded");
    if (!req->url || !req->headers[0])
        return PERKHUB_ERR_NOMEM; /* the core frees what we set */
    strcpy(req->url, SBX_URL_PREFIX);
    strcat(req->url, path);
    req->nheaders = 1;
    return PERKHUB_OK;
}

static int sbx_request_post(const struct sandbox *sb, const struct perkhub_op *op,
                            struct perkhub_request *req, const char *path)
{
    int st = sbx_post_head(sb, req, path);
    return st != PERKHUB_OK ? st : sbx_form_build(sb, op, &req->body, &req->body_len);
}

static int sandbox_build_request(void *instance, const struct perkhub_op *op,
                                 struct perkhub_request *req)
{
    const struct sandbox *sb = instance;
    switch (op->kind) {
    case PERKHUB_OP_CATALOG: { /* one page per step: page = step + 1 */
        char page[24];
        snprintf(page, sizeof page, "%d", op->step + 1);
        return sbx_request_get_param(sb, req, "catalog", "page", page);
    }
    case PERKHUB_OP_STOCK_CHECK:
        return sbx_request_get(sb, req, "stock", op->product_id ? op->product_id : "");
    case PERKHUB_OP_BALANCE:
        return sbx_request_get(sb, req, "balance", NULL);
    case PERKHUB_OP_STATEMENT:
        return sbx_request_get(sb, req, "statement", NULL);
    case PERKHUB_OP_CARD_ORDER:
    case PERKHUB_OP_RECHARGE:
        return sbx_request_post(sb, op, req, "order");
    case PERKHUB_OP_ORDER_QUERY:
        return sbx_request_post(sb, op, req, "query");
    case PERKHUB_OP_REDEMPTION: {
        int st = sbx_post_head(sb, req, "redemption");
        return st != PERKHUB_OK ? st : sbx_redemption_form(sb, op, &req->body, &req->body_len);
    }
    default:
        return PERKHUB_ERR_UNSUPPORTED;
    }
}

/* ======================= (4) SERVE_LOCAL: THE SUPPLIER HALF =============== */

/* A request as the sandbox reads it. A value that is too long or badly
 * percent-encoded reads as "!", which no valid value equals. */
struct sbx_form {
    char path[16];
    char kind[16];
    char product[SBX_FIELD_MAX + 1];
    char ref[SBX_FIELD_MAX + 1];
    char account[SBX_FIELD_MAX + 1];
    char qty[24];
    char created[24];
    char code[SBX_FIELD_MAX + 1]; /* redemption: a secret, wiped after serving */
    char card[SBX_FIELD_MAX + 1];
    char page[24]; /* catalog: the page asked for, 1-based; "" = the first */
};

/* What the sandbox answers: a status and a JSON body, after a delay. */
struct sbx_answer {
    int http_status; /* 0: no answer, the connection drops after delay_ms */
    int64_t delay_ms;
    json_t *body; /* owned; NULL with http_status 0 (or out of memory) */
};

static int sbx_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decodes n bytes of src into dst (cap bytes with the NUL). */
static void sbx_decode(const char *src, size_t n, char *dst, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)src[i];
        if (c == '+')
            c = ' ';
        else if (c == '%') {
            int hi = i + 2 < n ? sbx_hexval(src[i + 1]) : -1;
            int lo = i + 2 < n ? sbx_hexval(src[i + 2]) : -1;
            c = hi < 0 || lo < 0 ? 0 : hi * 16 + lo; /* 0: refused below */
            i += 2;
        }
        if (c == 0 || o + 1 >= cap) {
            strcpy(dst, "!");
            return;
        }
        dst[o++] = (char)c;
    }
    dst[o] = '\0';
}

static void sbx_form_field(struct sbx_form *f, const char *key, size_t klen, const char *val,
                           size_t vlen)
{
    static const struct {
        const char *key;
        size_t offset;
        size_t size;
    } slots[] = {
        {"kind", offsetof(struct sbx_form, kind), sizeof f->kind},
        {"product", offsetof(struct sbx_form, product), sizeof f->product},
        {"ref", offsetof(struct sbx_form, ref), sizeof f->ref},
        {"account", offsetof(struct sbx_form, account), sizeof f->account},
        {"qty", offsetof(struct sbx_form, qty), sizeof f->qty},
        {"created", offsetof(struct sbx_form, created), sizeof f->created},
        {"code", offsetof(struct sbx_form, code), sizeof f->code},
        {"card", offsetof(struct sbx_form, card), sizeof f->card},
        {"page", offsetof(struct sbx_form, page), sizeof f->page},
    };
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++)
        if (strlen(slots[i].key) == klen && memcmp(slots[i].key, key, klen) == 0)
            sbx_decode(val, vlen, (char *)f + slots[i].offset, slots[i].size);
}

/* "k=v&k=v": unknown keys are ignored, a repeated key keeps its last value. */
static void sbx_form_parse(struct sbx_form *f, const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t end = i, eq;
        while (end < len && s[end] != '&')
            end++;
        for (eq = i; eq < end && s[eq] != '='; eq++)
            ;
        size_t vstart = eq < end ? eq + 1 : end;
        sbx_form_field(f, s + i, eq - i, s + vstart, end - vstart);
        i = end + 1;
    }
}

/* Reads req into f: path from the URL, fields from the query string (GET) or
 * the body (POST). Returns 0 when the URL is not the sandbox's. */
static int sbx_request_read(const struct perkhub_request *req, struct sbx_form *f)
{
    memset(f, 0, sizeof *f);
    size_t plen = strlen(SBX_URL_PREFIX);
    if (!req->url || strncmp(req->url, SBX_URL_PREFIX, plen) != 0)
        return 0;
    const char *path = req->url + plen;
    const char *q = strchr(path, '?');
    size_t n = q ? (size_t)(q - path) : strlen(path);
    if (n >= sizeof f->path)
        return 0;
    memcpy(f->path, path, n);
    if (q)
        sbx_form_parse(f, q + 1, strlen(q + 1));
    if (req->body)
        sbx_form_parse(f, req->body, req->body_len);
    return 1;
}

/* A decimal in 0..10^18, digits only. */
static int sbx_parse_i64(const char *s, int64_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 18 || strspn(s, "0123456789") != n)
        return 0;
    errno = 0;
    *out = strtoll(s, NULL, 10);
    return errno == 0;
}

static int sbx_kind_parse(const char *kind)
{
    if (strcmp(kind, "card") == 0)
        return PERKHUB_OP_CARD_ORDER;
    if (strcmp(kind, "recharge") == 0)
        return PERKHUB_OP_RECHARGE;
    return 0;
}

/* One code: "SBX-" + the first 8 bytes of HMAC-SHA256(seed, ref ":" index) in
 * upper-case hex. The ':' cannot occur in a reference, so ("A1", 0) and
 * ("A", 10) never collide. */
static void sbx_code_make(const struct sandbox *sb, const char *ref, uint32_t index,
                          char out[SBX_CODE_LEN + 1])
{
    static const char hex[] = "0123456789ABCDEF";
    char msg[SBX_REF_MAX + 16];
    int n = snprintf(msg, sizeof msg, "%s:%" PRIu32, ref, index);
    uint8_t mac[32];
    sb->host->hmac_sha256(sb->host, sb->seed, sb->seed_len, msg, (size_t)n, mac);
    memcpy(out, "SBX-", 4);
    for (size_t i = 0; i < 8; i++) {
        out[4 + 2 * i] = hex[mac[i] >> 4];
        out[5 + 2 * i] = hex[mac[i] & 15];
    }
    out[SBX_CODE_LEN] = '\0';
}

/* json_object_set_new that remembers a failure (out of memory) in *ok. */
static void sbx_set(json_t *obj, const char *key, json_t *val, int *ok)
{
    if (!val || json_object_set_new(obj, key, val) != 0)
        *ok = 0;
}

static json_t *sbx_error_json(const char *error)
{
    return json_pack("{s:s}", "error", error);
}

static json_t *sbx_codes_json(const struct sandbox *sb, const char *ref, uint32_t qty)
{
    json_t *arr = json_array();
    for (uint32_t i = 0; arr && i < qty; i++) {
        char code[SBX_CODE_LEN + 1];
        sbx_code_make(sb, ref, i, code);
        if (json_array_append_new(arr, json_string(code)) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* What an order or a query says. */
struct sbx_verdict {
    int http_status;
    int64_t delay_ms;
    const char *status; /* "success", "processing", "failed", "not_found"; NULL: no answer */
    const char *error;  /* reason of "failed" and "not_found" */
};

/* The reply body about one order: ref, order_id, product, status, and
 * quantity, amount and codes when it succeeded. Never the account. */
static json_t *sbx_order_json(const struct sandbox *sb, const struct sbx_form *f,
                              const struct sbx_product *p, uint32_t qty,
                              const struct sbx_verdict *v)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int ok = 1;
    char order_id[sizeof f->ref + 8];
    snprintf(order_id, sizeof order_id, "SBXO-%s", f->ref);
    sbx_set(o, "ref", json_string(f->ref), &ok);
    sbx_set(o, "status", json_string(v->status), &ok);
    if (v->error)
        sbx_set(o, "error", json_string(v->error), &ok);
    if (strcmp(v->status, "not_found") != 0) {
        sbx_set(o, "order_id", json_string(order_id), &ok);
        sbx_set(o, "product", json_string(p ? p->id : f->product), &ok);
        sbx_set(o, "quantity", json_integer(qty), &ok);
    }
    if (strcmp(v->status, "success") == 0) {
        sbx_set(o, "amount", json_integer(p->price * qty), &ok);
        if (p->kind == PERKHUB_OP_CARD_ORDER)
            sbx_set(o, "codes", sbx_codes_json(sb, f->ref, qty), &ok);
    }
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* What the order request itself gets. */
static struct sbx_verdict sbx_decide_order(const struct sandbox *sb, int behaviour)
{
    switch (behaviour) {
    case SBX_NOW:
        return (struct sbx_verdict){200, 0, "success", NULL};
    case SBX_SLOW:
        return (struct sbx_verdict){200, sb->slow_ms, "success", NULL};
    case SBX_OUT_OF_STOCK:
        return (struct sbx_verdict){200, 0, "failed", "out_of_stock"};
    case SBX_HANG_THEN_OK:
    case SBX_HANG_THEN_FAIL:
        return (struct sbx_verdict){0, sb->slow_ms, NULL, NULL};
    case SBX_ACCEPT_THEN_OK:
    case SBX_HIDDEN_THEN_OK:
        return (struct sbx_verdict){200, 0, "processing", NULL};
    default:
        return (struct sbx_verdict){200, 0, "failed", "invalid_account"};
    }
}

/* What a query about the order says, settle_ms after the attempt was created
 * or before. */
static struct sbx_verdict sbx_decide_query(int behaviour, int settled)
{
    static const struct sbx_verdict success = {200, 0, "success", NULL};
    static const struct sbx_verdict processing = {200, 0, "processing", NULL};
    switch (behaviour) {
    case SBX_NOW:
    case SBX_SLOW:
        return success;
    case SBX_OUT_OF_STOCK:
        return (struct sbx_verdict){200, 0, "failed", "out_of_stock"};
    case SBX_HANG_THEN_OK:
    case SBX_ACCEPT_THEN_OK:
        return settled ? success : processing;
    case SBX_HANG_THEN_FAIL:
        return settled ? (struct sbx_verdict){200, 0, "failed", "order_failed"} : processing;
    case SBX_HIDDEN_THEN_OK:
        return settled ? success : (struct sbx_verdict){404, 0, "not_found", "order_not_found"};
    default:
        return (struct sbx_verdict){200, 0, "failed", "invalid_account"};
    }
}

/* The order and query endpoints. A query about a reference or product the
 * sandbox cannot know is "not found"; an order it cannot read is refused. */
static void sbx_serve_order(const struct sandbox *sb, const struct sbx_form *f, int query,
                            struct sbx_answer *ans)
{
    const struct sbx_product *p = sbx_product_find(f->product);
    int kind = sbx_kind_parse(f->kind);
    int64_t qty = 0, created = 0;
    int qty_ok = sbx_parse_i64(f->qty, &qty) && qty >= 1 && qty <= SBX_MAX_QUANTITY;
    /* A query without the account cannot say what a recharge did: refusing it
     * (the core repeats it) beats a false "failed" for a recharge performed. */
    if (!kind || (!query && !sbx_ref_valid(f->ref)) ||
        (query && !sbx_parse_i64(f->created, &created)) ||
        (query && kind == PERKHUB_OP_RECHARGE && !f->account[0])) {
        ans->http_status = 400;
        ans->body = sbx_error_json("bad_request");
        return;
    }
    struct sbx_verdict v;
    if (query && (!sbx_ref_valid(f->ref) || !p || p->kind != kind))
        v = (struct sbx_verdict){404, 0, "not_found", "order_not_found"};
    else if (!p || p->kind != kind)
        v = (struct sbx_verdict){200, 0, "failed", "unknown_product"};
    else if (kind == PERKHUB_OP_CARD_ORDER && !qty_ok)
        v = query ? (struct sbx_verdict){400, 0, NULL, NULL}
                  : (struct sbx_verdict){200, 0, "failed", "invalid_quantity"};
    else {
        int b = p->behaviour == SBX_BY_ACCOUNT ? sbx_account_behaviour(f->account) : p->behaviour;
        int64_t now = sb->host->now_ms(sb->host);
        int settled = now >= created && now - created >= sb->settle_ms;
        v = query ? sbx_decide_query(b, settled) : sbx_decide_order(sb, b);
    }
    ans->http_status = v.http_status;
    ans->delay_ms = v.delay_ms;
    if (v.http_status == 400)
        ans->body = sbx_error_json("bad_request");
    else if (v.status)
        ans->body = sbx_order_json(sb, f, p, kind == PERKHUB_OP_RECHARGE ? 1 : (uint32_t)qty, &v);
}

static json_t *sbx_product_json(const struct sbx_product *p)
{
    return json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:b}", "id", p->id, "name", p->name, "kind",
                     p->kind == PERKHUB_OP_RECHARGE ? "recharge" : "card", "face_value",
                     (json_int_t)p->face_value, "price", (json_int_t)p->price, "stock",
                     (json_int_t)p->stock, "on_sale", 1);
}

/* The catalog in pages of SBX_CATALOG_PAGE products, as a large supplier's
 * would come: {"products": [...], "page": n, "pages": m}; a page past the last
 * is empty, one that is not a number 400. */
#define SBX_CATALOG_PAGE 4
static void sbx_serve_catalog(const struct sbx_form *f, struct sbx_answer *ans)
{
    int64_t page = 1;
    if (f->page[0] && (!sbx_parse_i64(f->page, &page) || page < 1)) {
        ans->http_status = 400;
        ans->body = sbx_error_json("bad_request");
        return;
    }
    size_t pages = (SBX_NPRODUCTS + SBX_CATALOG_PAGE - 1) / SBX_CATALOG_PAGE;
    json_t *arr = json_array();
    for (size_t i = (size_t)(page - 1) * SBX_CATALOG_PAGE;
         arr && page <= (int64_t)pages && i < SBX_NPRODUCTS && i < (size_t)page * SBX_CATALOG_PAGE;
         i++)
        if (json_array_append_new(arr, sbx_product_json(&sbx_products[i])) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    ans->http_status = 200;
    ans->body = arr ? json_pack("{s:o,s:I,s:I}", "products", arr, "page", (json_int_t)page, "pages",
                                (json_int_t)pages)
                    : NULL;
}

static void sbx_serve_stock(const struct sbx_form *f, struct sbx_answer *ans)
{
    const struct sbx_product *p = sbx_product_find(f->product);
    ans->http_status = p ? 200 : 404;
    ans->body = p ? json_pack("{s:s, s:I, s:I}", "product", p->id, "stock", (json_int_t)p->stock,
                              "price", (json_int_t)p->price)
                  : sbx_error_json("unknown_product");
}

/* The configured statement as the sandbox's JSON: {"lines": [{ref, order_id,
 * amount, status}]}. An entry that does not read REF:FEN[:free] is skipped. */
static void sbx_serve_statement(const struct sandbox *sb, struct sbx_answer *ans)
{
    json_t *lines = json_array();
    const char *p = sb->statement;
    while (*p) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        char entry[SBX_REF_MAX + 40], order_id[SBX_REF_MAX + 48];
        if (n && n < sizeof entry) {
            memcpy(entry, p, n);
            entry[n] = 0;
            char *amount = strchr(entry, ':'), *flag = NULL;
            if (amount) {
                *amount++ = 0;
                if ((flag = strchr(amount, ':')))
                    *flag++ = 0;
            }
            int64_t fen;
            if (amount && *entry && strlen(entry) <= SBX_REF_MAX && sbx_parse_i64(amount, &fen) &&
                (!flag || !strcmp(flag, "free"))) {
                snprintf(order_id, sizeof order_id, "SBXO-%s", entry);
                json_array_append_new(lines,
                                      json_pack("{s:s,s:s,s:I,s:s}", "ref", entry, "order_id",
                                                order_id, "amount", (json_int_t)fen, "status",
                                                flag ? "free" : "charged"));
            }
        }
        p += n;
    }
    ans->http_status = 200;
    ans->body = json_pack("{s:o}", "lines", lines);
}

/* The documented marker (docs/sandbox.md) in a code, in any case. */
static int sbx_code_says(const char *code, const char *marker)
{
    size_t n = strlen(code), m = strlen(marker);
    for (size_t i = 0; i + m <= n; i++) {
        size_t k = 0;
        while (k < m && (code[i + k] == marker[k] || code[i + k] == marker[k] + ('a' - 'A')))
            k++;
        if (k == m)
            return 1;
    }
    return 0;
}

/* ABI 1.3: whether the code of f was redeemed. The sandbox remembers nothing,
 * so the code's own text decides (docs/sandbox.md): REDEEMED was redeemed (when
 * is not known), UNKNOWN cannot be told, HANG gets no answer (the connection
 * drops after slow_ms); every other code, the sandbox's own SBX- codes
 * included, was not. The answer never echoes the code. */
static void sbx_serve_redemption(const struct sandbox *sb, const struct sbx_form *f,
                                 struct sbx_answer *ans)
{
    if (!f->code[0] || strcmp(f->code, "!") == 0) {
        ans->http_status = 400;
        ans->body = sbx_error_json("bad_request");
    } else if (sbx_code_says(f->code, "HANG")) {
        ans->http_status = 0;
        ans->delay_ms = sb->slow_ms;
    } else {
        const char *status = sbx_code_says(f->code, "REDEEMED")  ? "redeemed"
                             : sbx_code_says(f->code, "UNKNOWN") ? "unknown"
                                                                 : "unused";
        ans->http_status = 200;
        ans->body = json_pack("{s:s,s:n}", "status", status, "redeemed_at");
    }
}

/* Routes f to its endpoint; a path or method the sandbox does not serve is a 404
 * or 405, as any web server would answer. */
static void sbx_serve(const struct sandbox *sb, const struct perkhub_request *req,
                      const struct sbx_form *f, struct sbx_answer *ans)
{
    int post = req->method && strcmp(req->method, "POST") == 0;
    int order = strcmp(f->path, "order") == 0, query = strcmp(f->path, "query") == 0;
    int redemption = strcmp(f->path, "redemption") == 0;
    int get_path = strcmp(f->path, "catalog") == 0 || strcmp(f->path, "stock") == 0 ||
                   strcmp(f->path, "balance") == 0 || strcmp(f->path, "statement") == 0;
    if (!order && !query && !redemption && !get_path) {
        ans->http_status = 404;
        ans->body = sbx_error_json("no_such_endpoint");
    } else if (post != (order || query || redemption)) {
        ans->http_status = 405;
        ans->body = sbx_error_json("method_not_allowed");
    } else if (redemption)
        sbx_serve_redemption(sb, f, ans);
    else if (order || query)
        sbx_serve_order(sb, f, query, ans);
    else if (strcmp(f->path, "catalog") == 0)
        sbx_serve_catalog(f, ans);
    else if (strcmp(f->path, "stock") == 0)
        sbx_serve_stock(f, ans);
    else if (strcmp(f->path, "statement") == 0)
        sbx_serve_statement(sb, ans);
    else {
        ans->http_status = 200;
        ans->body = json_pack("{s:I}", "balance", (json_int_t)SBX_BALANCE);
    }
}

/* Moves ans into reply, the body copied into host memory. */
static int sbx_answer_send(const struct sandbox *sb, struct sbx_answer *ans,
                           struct perkhub_local_reply *reply)
{
    const struct perkhub_host *h = sb->host;
    reply->http_status = ans->http_status;
    reply->delay_ms = ans->delay_ms;
    if (ans->http_status == 0)
        return PERKHUB_OK;
    char *text = ans->body ? json_dumps(ans->body, JSON_COMPACT) : NULL;
    if (!text)
        return PERKHUB_ERR_NOMEM;
    size_t n = strlen(text);
    reply->body = h->mem_alloc(h, n + 1);
    if (reply->body) {
        memcpy(reply->body, text, n + 1);
        reply->body_len = n;
    }
    sbx_wipe(text, n); /* it may hold card codes */
    json_free_t jfree; /* jansson's memory, jansson's free (perkhubd's wipes: free() would crash) */
    json_get_alloc_funcs(NULL, &jfree);
    jfree(text);
    return reply->body ? PERKHUB_OK : PERKHUB_ERR_NOMEM;
}

static int sandbox_serve_local(void *instance, const struct perkhub_request *req,
                               struct perkhub_local_reply *reply)
{
    const struct sandbox *sb = instance;
    struct sbx_form f;
    struct sbx_answer ans = {0};
    if (sbx_request_read(req, &f))
        sbx_serve(sb, req, &f, &ans);
    else {
        ans.http_status = 404;
        ans.body = sbx_error_json("no_such_endpoint");
    }
    sbx_wipe(f.account, sizeof f.account);
    sbx_wipe(f.code, sizeof f.code);
    sbx_wipe(f.card, sizeof f.card);
    int st = sbx_answer_send(sb, &ans, reply);
    json_decref(ans.body);
    sb->host->log_msg(sb->host, PERKHUB_LOG_DEBUG, "serve",
                      "path=%s http_status=%d delay_ms=%" PRId64, f.path[0] ? f.path : "-",
                      reply->http_status, reply->delay_ms);
    return st;
}

/* ======================= (5) PARSE_RESPONSE: THE PLUGIN HALF ============== */

/* A reason we pass on: the sandbox's error word if it is one the core keeps
 * (perkhub/plugin.h, perkhub_result.reason: [a-z]+ words joined by single
 * '_', no digit; the sandbox's are at most 40 bytes), else "failed". Never
 * text we did not check. */
static char *sbx_reason_dup(const struct perkhub_host *h, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 40 || strspn(s, "abcdefghijklmnopqrstuvwxyz_") != n || s[0] == '_' ||
        s[n - 1] == '_' || strstr(s, "__"))
        s = "failed";
    return h->mem_strdup(h, s);
}

static int sbx_fail(const struct perkhub_host *h, struct perkhub_result *res, int status,
                    const char *reason)
{
    res->reason = sbx_reason_dup(h, reason);
    return res->reason ? status : PERKHUB_ERR_NOMEM;
}

static int sbx_dup(const struct perkhub_host *h, char **dst, const char *s)
{
    if (!s)
        return PERKHUB_OK;
    *dst = h->mem_strdup(h, s);
    return *dst ? PERKHUB_OK : PERKHUB_ERR_NOMEM;
}

/* Exactly `want` non-empty code strings, or AMBIGUOUS: a delivery we cannot
 * read in full must be settled by a query, never taken in part. */
static int sbx_codes_take(const struct perkhub_host *h, json_t *codes, size_t want,
                          struct perkhub_result *res)
{
    if (!json_is_array(codes) || want == 0 || json_array_size(codes) != want)
        return PERKHUB_AMBIGUOUS;
    res->codes = h->mem_alloc(h, want * sizeof *res->codes);
    if (!res->codes)
        return PERKHUB_ERR_NOMEM;
    res->ncodes = want; /* the core frees the entries set so far, whatever we return */
    for (size_t i = 0; i < want; i++) {
        const char *s = json_string_value(json_array_get(codes, i));
        if (!s || !*s)
            return PERKHUB_AMBIGUOUS;
        res->codes[i].code = h->mem_strdup(h, s);
        if (!res->codes[i].code)
            return PERKHUB_ERR_NOMEM;
    }
    return PERKHUB_OK;
}

/* A reply about an order: the state it says, codes included. */
static int sbx_take_order(const struct perkhub_host *h, const struct perkhub_op *op, json_t *root,
                          struct perkhub_result *res)
{
    const char *status = json_string_value(json_object_get(root, "status"));
    const char *ref = json_string_value(json_object_get(root, "ref"));
    if (!status || !ref || !op->order_ref || strcmp(ref, op->order_ref) != 0)
        return PERKHUB_AMBIGUOUS; /* not an answer about this order */
    if (sbx_dup(h, &res->supplier_order_id, json_string_value(json_object_get(root, "order_id"))) !=
        PERKHUB_OK)
        return PERKHUB_ERR_NOMEM;
    json_t *amount = json_object_get(root, "amount");
    if (json_is_integer(amount))
        res->amount = json_integer_value(amount);
    if (strcmp(status, "processing") == 0) {
        res->state = PERKHUB_STATE_PROCESSING;
        return PERKHUB_OK;
    }
    if (strcmp(status, "failed") == 0) {
        res->state = PERKHUB_STATE_FAILED;
        return sbx_fail(h, res, PERKHUB_DEFINITE_FAILURE,
                        json_string_value(json_object_get(root, "error")));
    }
    if (strcmp(status, "success") != 0)
        return PERKHUB_AMBIGUOUS;
    res->state = PERKHUB_STATE_SUCCEEDED;
    if (sbx_op_order_kind(op) != PERKHUB_OP_CARD_ORDER)
        return PERKHUB_OK;
    return sbx_codes_take(h, json_object_get(root, "codes"), op->quantity, res);
}

static int sbx_parse_order(const struct perkhub_host *h, const struct perkhub_op *op,
                           int http_status, json_t *root, struct perkhub_result *res)
{
    if (http_status == 400)
        return sbx_fail(h, res, PERKHUB_DEFINITE_FAILURE, "bad_request");
    if (http_status != 200 || !root)
        return PERKHUB_AMBIGUOUS;
    return sbx_take_order(h, op, root, res);
}

/* A query: any state the sandbox states is PERKHUB_OK; "failed" is a state
 * here, not a failure of the query. */
static int sbx_parse_query(const struct perkhub_host *h, const struct perkhub_op *op,
                           int http_status, json_t *root, struct perkhub_result *res)
{
    const char *error = json_string_value(json_object_get(root, "error"));
    if (http_status == 404 && error && strcmp(error, "order_not_found") == 0) {
        res->state = PERKHUB_STATE_NOT_FOUND;
        return sbx_dup(h, &res->order_ref, op->order_ref);
    }
    int st = sbx_parse_order(h, op, http_status, root, res);
    if (st == PERKHUB_DEFINITE_FAILURE && res->state == PERKHUB_STATE_FAILED)
        st = PERKHUB_OK;
    if (st != PERKHUB_OK)
        return st;
    json_t *qty = json_object_get(root, "quantity");
    if (json_is_integer(qty))
        res->quantity = json_integer_value(qty);
    if (sbx_dup(h, &res->order_ref, op->order_ref) != PERKHUB_OK ||
        sbx_dup(h, &res->product_id, json_string_value(json_object_get(root, "product"))) !=
            PERKHUB_OK)
        return PERKHUB_ERR_NOMEM;
    return PERKHUB_OK;
}

static int sbx_item_take(const struct perkhub_host *h, json_t *o, struct perkhub_item *it)
{
    const char *id = json_string_value(json_object_get(o, "id"));
    const char *kind = json_string_value(json_object_get(o, "kind"));
    json_t *fv = json_object_get(o, "face_value"), *price = json_object_get(o, "price");
    json_t *stock = json_object_get(o, "stock");
    if (!id || !kind)
        return PERKHUB_AMBIGUOUS;
    it->kind = strcmp(kind, "recharge") == 0 ? PERKHUB_OP_RECHARGE : PERKHUB_OP_CARD_ORDER;
    it->face_value = json_is_integer(fv) ? json_integer_value(fv) : -1;
    it->price = json_is_integer(price) ? json_integer_value(price) : -1;
    it->stock = json_is_integer(stock) ? json_integer_value(stock) : -1;
    it->on_sale = json_is_true(json_object_get(o, "on_sale"));
    if (sbx_dup(h, &it->product_id, id) != PERKHUB_OK ||
        sbx_dup(h, &it->name, json_string_value(json_object_get(o, "name"))) != PERKHUB_OK)
        return PERKHUB_ERR_NOMEM;
    return PERKHUB_OK;
}

static int sbx_parse_catalog(const struct perkhub_host *h, const struct perkhub_op *op,
                             json_t *root, struct perkhub_result *res)
{
    json_t *arr = json_object_get(root, "products");
    json_t *page = json_object_get(root, "page"), *pages = json_object_get(root, "pages");
    size_t n = json_array_size(arr);
    if (!json_is_array(arr) || !json_is_integer(page) || !json_is_integer(pages) ||
        json_integer_value(page) != op->step + 1)
        return PERKHUB_AMBIGUOUS;
    if (json_integer_value(page) < json_integer_value(pages)) { /* more pages follow */
        res->next = 1;
        if (sbx_dup(h, &res->next_state, "next_page") != PERKHUB_OK)
            return PERKHUB_ERR_NOMEM;
    }
    if (n == 0)
        return PERKHUB_OK;
    res->items = h->mem_alloc(h, n * sizeof *res->items);
    if (!res->items)
        return PERKHUB_ERR_NOMEM;
    res->nitems = n;
    for (size_t i = 0; i < n; i++) {
        int st = sbx_item_take(h, json_array_get(arr, i), &res->items[i]);
        if (st != PERKHUB_OK)
            return st;
    }
    return PERKHUB_OK;
}

/* Catalog, stock and balance: 200 with the numbers, or a failure class. */
static int sbx_parse_info(const struct perkhub_host *h, const struct perkhub_op *op,
                          int http_status, json_t *root, struct perkhub_result *res)
{
    const char *error = json_string_value(json_object_get(root, "error"));
    if (http_status == 400 || (http_status == 404 && error && op->kind == PERKHUB_OP_STOCK_CHECK &&
                               strcmp(error, "unknown_product") == 0))
        return sbx_fail(h, res, PERKHUB_DEFINITE_FAILURE, error);
    if (http_status != 200 || !root)
        return PERKHUB_AMBIGUOUS;
    if (op->kind == PERKHUB_OP_CATALOG)
        return sbx_parse_catalog(h, op, root, res);
    json_t *stock = json_object_get(root, "stock"), *price = json_object_get(root, "price");
    json_t *balance = json_object_get(root, "balance");
    if (op->kind == PERKHUB_OP_STOCK_CHECK && json_is_integer(stock) && json_is_integer(price)) {
        res->stock = json_integer_value(stock);
        res->price = json_integer_value(price);
        return PERKHUB_OK;
    }
    if (op->kind == PERKHUB_OP_BALANCE && json_is_integer(balance)) {
        res->balance = json_integer_value(balance);
        return PERKHUB_OK;
    }
    return PERKHUB_AMBIGUOUS;
}

/* The statement's lines; a reply we cannot read in full is not taken in part. */
static int sbx_parse_statement(const struct perkhub_host *h, int http_status, json_t *root,
                               struct perkhub_result *res)
{
    json_t *lines = root ? json_object_get(root, "lines") : NULL;
    if (http_status != 200 || !json_is_array(lines))
        return PERKHUB_AMBIGUOUS;
    size_t n = json_array_size(lines);
    res->statement = h->mem_alloc(h, (n ? n : 1) * sizeof *res->statement);
    if (!res->statement)
        return PERKHUB_ERR_NOMEM;
    memset(res->statement, 0, (n ? n : 1) * sizeof *res->statement);
    for (size_t i = 0; i < n; i++) {
        json_t *l = json_array_get(lines, i);
        struct perkhub_statement_line *out = &res->statement[i];
        json_t *amount = json_object_get(l, "amount");
        const char *status = json_string_value(json_object_get(l, "status"));
        res->nstatement = i + 1; /* what is set is freed by the core */
        if (!json_is_integer(amount) || !status)
            return PERKHUB_AMBIGUOUS;
        out->amount = json_integer_value(amount);
        out->time_ms = -1;
        out->charged = strcmp(status, "charged") == 0;
        if (sbx_dup(h, &out->order_ref, json_string_value(json_object_get(l, "ref"))) ||
            sbx_dup(h, &out->supplier_order_id, json_string_value(json_object_get(l, "order_id"))))
            return PERKHUB_ERR_NOMEM;
    }
    return PERKHUB_OK;
}

/* ABI 1.3: "redeemed" / "unused" / "unknown", and when, if the sandbox says. */
static int sbx_parse_redemption(int http_status, json_t *root, struct perkhub_result *res)
{
    const char *status = json_string_value(json_object_get(root, "status"));
    json_t *at = json_object_get(root, "redeemed_at");
    if (http_status != 200 || !status)
        return PERKHUB_AMBIGUOUS;
    if (strcmp(status, "redeemed") == 0) {
        res->redeemed = 1;
        res->redeemed_at_ms =
            json_is_integer(at) && json_integer_value(at) > 0 ? json_integer_value(at) : 0;
    } else if (strcmp(status, "unused") == 0) {
        res->redeemed = 0;
    } else if (strcmp(status, "unknown") == 0) {
        res->redeemed = -1;
    } else {
        return PERKHUB_AMBIGUOUS;
    }
    return PERKHUB_OK;
}

static int sandbox_parse_response(void *instance, const struct perkhub_op *op,
                                  const struct perkhub_response *resp, struct perkhub_result *res)
{
    const struct sandbox *sb = instance;
    json_error_t jerr;
    json_t *root = json_loadb(resp->body ? resp->body : "", resp->body_len, 0, &jerr);
    if (root && !json_is_object(root)) {
        json_decref(root);
        root = NULL; /* a reply of ours is always an object */
    }
    int st;
    switch (op->kind) {
    case PERKHUB_OP_CARD_ORDER:
    case PERKHUB_OP_RECHARGE:
        st = sbx_parse_order(sb->host, op, resp->http_status, root, res);
        break;
    case PERKHUB_OP_ORDER_QUERY:
        st = sbx_parse_query(sb->host, op, resp->http_status, root, res);
        break;
    case PERKHUB_OP_CATALOG:
    case PERKHUB_OP_STOCK_CHECK:
    case PERKHUB_OP_BALANCE:
        st = sbx_parse_info(sb->host, op, resp->http_status, root, res);
        break;
    case PERKHUB_OP_STATEMENT:
        st = sbx_parse_statement(sb->host, resp->http_status, root, res);
        break;
    case PERKHUB_OP_REDEMPTION:
        st = sbx_parse_redemption(resp->http_status, root, res);
        break;
    default:
        st = PERKHUB_ERR_UNSUPPORTED;
    }
    json_decref(root);
    return st;
}

/* ======================= (6) DESCRIPTOR AND ENTRY ========================= */

static const struct perkhub_ops sandbox_ops = {
    .struct_size = sizeof(struct perkhub_ops),
    .build_request = sandbox_build_request,
    .parse_response = sandbox_parse_response,
    .verify_callback = NULL, /* the sandbox never calls back */
    .serve_local = sandbox_serve_local,
};

static const struct perkhub_plugin sandbox_plugin = {
    .struct_size = sizeof(struct perkhub_plugin),
    .abi_major = PERKHUB_ABI_MAJOR,
    .abi_minor = 3,    /* 1.3: redemption status (PERKHUB_CAP_REDEMPTION) */
    .name = "sandbox", /* the file must be sandbox.so */
    .version = "1.2.0",
    .description = "Built-in sandbox supplier: magic products and accounts that succeed, fail, "
                   "time out or stay ambiguous, with no upstream.",
    .capabilities = PERKHUB_CAP_CATALOG | PERKHUB_CAP_STOCK_CHECK | PERKHUB_CAP_CARD_ORDER |
                    PERKHUB_CAP_RECHARGE | PERKHUB_CAP_ORDER_QUERY | PERKHUB_CAP_BALANCE |
                    PERKHUB_CAP_LOCAL | PERKHUB_CAP_STATEMENT | PERKHUB_CAP_REDEMPTION,
    .config = sandbox_config,
    .init = sandbox_init,
    .shutdown = sandbox_shutdown,
    .ops = &sandbox_ops,
    .processing_window_s = 30,
    .query_delay_ms = 200,
};

/* The one exported symbol. No side effects: it only returns the descriptor. */
PERKHUB_EXPORT const struct perkhub_plugin *perkhub_plugin_entry(void)
{
    return &sandbox_plugin;
}
