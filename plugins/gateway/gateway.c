/*
 * gateway.c — the signed-gateway aggregator adapter (福禄 / 卡易信 style).
 *
 * The protocol is docs/protocols/gateway.md, a contract shared with the
 * simulator tools/supsim: one gateway URL, a `method` per operation, JSON bodies
 * whose values are strings, an MD5 signature over the sorted parameters plus the
 * app secret, card codes encrypted with AES-256-CBC under SHA-256(app secret),
 * and async notify callbacks signed like requests.
 *
 * Layout, in the order of plugins/example/example.c:
 *   1. the instance struct: ALL state lives here (read-only after init, so the
 *      core may call us from several threads at once);
 *   2. the config schema;
 *   3. small pure helpers: signing, Beijing time, money in fen, JSON;
 *   4. build_request, parse_response, verify_callback;
 *   5. init / shutdown, the descriptor and the entry symbol.
 *
 * Like every plugin it performs no I/O: the core sends what build_request
 * describes and hands back what came (docs/design.md rule 5).
 *
 * Secrets: the app secret, card codes and recharge accounts are never logged
 * and never put in a reason string. Buffers that held the secret or a code are
 * wiped before they are freed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <perkhub/plugin.h>

#define GW_MD5_HEX          32         /* lowercase hex of an MD5 */
#define GW_UTC8_S           (8 * 3600) /* the gateway's clock is Beijing time */
#define GW_TIME_LEN         19         /* "yyyy-MM-dd HH:mm:ss" */
#define GW_TIME_BUF         32         /* room for it, and for what snprintf fears */
#define GW_CARD_QUERY_DELAY 200        /* ms before asking for the codes of a card order */
#define GW_AES_BLOCK        16
#define GW_MONEY_MAX_FEN    INT64_C(100000000000000) /* 1e12 yuan: beyond any real price */
#define GW_JSON_FLAGS_IN    (JSON_REJECT_DUPLICATES) /* one meaning per key, or refuse */

/* (1) One instance per configured supplier. The config strings belong to the
 * core and stay valid until shutdown returns, so we keep pointers to them. */
struct gateway {
    const struct perkhub_host *host;
    const char *url;     /* gateway_url */
    const char *app_key; /* app_key */
    const char *secret;  /* app_secret: signs everything; never logged */
    size_t secret_len;
    uint8_t card_key[32]; /* SHA-256(app_secret): the card code key, wiped at shutdown */
    int64_t stale_ms;     /* callbacks signed longer ago than this are refused */
};

/* (2) The config schema: checked by the core before init (types, required keys,
 * unknown keys), printed for ops. */
static const struct perkhub_config_key gateway_config[] = {
    {
        .key = "gateway_url",
        .type = PERKHUB_CONF_STRING,
        .description = "The gateway's single endpoint (http:// or https://); every method "
                       "is POSTed here.",
        .required = 1,
    },
    {
        .key = "app_key",
        .type = PERKHUB_CONF_STRING,
        .description = "The merchant app key the aggregator issued.",
        .required = 1,
    },
    {
        .key = "app_secret",
        .type = PERKHUB_CONF_SECRET,
        .description = "The app secret: signs requests, responses and callbacks and "
                       "encrypts card codes (env:NAME or file:PATH).",
        .required = 1,
    },
    {
        .key = "callback_stale_s",
        .type = PERKHUB_CONF_INT,
        .default_value = "600",
        .description = "Refuse notify callbacks signed more than this many seconds before "
                       "or after our clock (replays, forged dates).",
    },
    {.key = NULL}, /* end of the table */
};

/* ======================= (3) helpers ====================================== */

/* A parameter of a signed message; both strings borrowed. */
struct gw_param {
    const char *key;
    const char *value;
};

/* explicit_bzero cannot be optimized away, unlike a memset before free. */
static void gw_wipe(void *p, size_t n)
{
    if (p)
        explicit_bzero(p, n);
}

static void gw_free_secret(const struct perkhub_host *host, char *s)
{
    if (!s)
        return;
    gw_wipe(s, strlen(s));
    host->mem_free(host, s);
}

static void gw_hex(const uint8_t *d, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

/* lower(hex(md5(text + secret))) into hex[33]. The joined buffer holds the
 * secret, so it is wiped. Returns PERKHUB_OK or PERKHUB_ERR_NOMEM. */
static int gw_md5_with_secret(const struct gateway *gw, const char *text, size_t len,
                              char hex[GW_MD5_HEX + 1])
{
    const struct perkhub_host *host = gw->host;
    size_t total = len + gw->secret_len;
    uint8_t *buf = host->mem_alloc(host, total + 1);
    if (!buf)
        return PERKHUB_ERR_NOMEM;
    memcpy(buf, text, len);
    memcpy(buf + len, gw->secret, gw->secret_len);
    uint8_t digest[16];
    host->md5(host, buf, total, digest);
    gw_wipe(buf, total);
    host->mem_free(host, buf);
    gw_hex(digest, sizeof digest, hex);
    return PERKHUB_OK;
}

static int gw_param_cmp(const void *a, const void *b)
{
    /* strcmp compares as unsigned char: the byte order the protocol asks for. */
    return strcmp(((const struct gw_param *)a)->key, ((const struct gw_param *)b)->key);
}

/* The protocol's signature: every param except `sign` with a non-empty value,
 * sorted by key, joined "k=v&k=v", the secret appended, MD5, lowercase hex.
 * Sorts p in place. Returns PERKHUB_OK or PERKHUB_ERR_NOMEM. */
static int gw_sign_params(const struct gateway *gw, struct gw_param *p, size_t n,
                          char hex[GW_MD5_HEX + 1])
{
    const struct perkhub_host *host = gw->host;
    qsort(p, n, sizeof *p, gw_param_cmp);
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(p[i].key) + strlen(p[i].value) + 2;
    char *joined = host->mem_alloc(host, len);
    if (!joined)
        return PERKHUB_ERR_NOMEM;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (!p[i].value[0] || strcmp(p[i].key, "sign") == 0)
            continue;
        at += (size_t)sprintf(joined + at, "%s%s=%s", at ? "&" : "", p[i].key, p[i].value);
    }
    int st = gw_md5_with_secret(gw, joined, at, hex);
    /* A recharge's params carry the account: do not leave it in freed memory. */
    gw_wipe(joined, at);
    host->mem_free(host, joined);
    return st;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm):
 * plain arithmetic, so no timezone database and no global TZ. */
static int64_t gw_days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void gw_civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int64_t gw_floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* Epoch milliseconds as the gateway writes time: "yyyy-MM-dd HH:mm:ss", UTC+8. */
static void gw_format_time(int64_t ms, char out[GW_TIME_BUF])
{
    int64_t s = gw_floor_div(ms, 1000) + GW_UTC8_S;
    int64_t days = gw_floor_div(s, 86400), sod = s - days * 86400, y;
    int m, d;
    gw_civil_from_days(days, &y, &m, &d);
    snprintf(out, GW_TIME_BUF, "%04d-%02d-%02d %02d:%02d:%02d", (int)(y % 10000), m, d,
             (int)(sod / 3600), (int)(sod / 60 % 60), (int)(sod % 60));
}

/* Reads n decimal digits at s; -1 when one is not a digit. */
static int gw_digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* "yyyy-MM-dd HH:mm:ss" in UTC+8 to epoch ms, strictly (a real calendar date,
 * nothing before or after). Returns 0, or -1 for anything else. */
static int gw_parse_time(const char *s, int64_t *ms)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (strlen(s) != GW_TIME_LEN || s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' ||
        s[16] != ':')
        return -1;
    int y = gw_digits(s, 4), mo = gw_digits(s + 5, 2), d = gw_digits(s + 8, 2);
    int h = gw_digits(s + 11, 2), mi = gw_digits(s + 14, 2), se = gw_digits(s + 17, 2);
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h < 0 || h > 23 || mi < 0 ||
        mi > 59 || se < 0 || se > 59)
        return -1;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo == 2 && d == 29 && !leap)
        return -1;
    int64_t secs = gw_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - GW_UTC8_S;
    *ms = secs * 1000;
    return 0;
}

/* Yuan with at most two decimals ("28.50", "28.5", "28") to fen, exactly: no
 * floating point ever touches money. A leading '-' only when allow_negative
 * (a balance may be overdrawn). Returns 0, or -1 for anything malformed. */
static int gw_parse_money(const char *s, int allow_negative, int64_t *fen)
{
    int neg = 0;
    if (allow_negative && *s == '-') {
        neg = 1;
        s++;
    }
    if (*s < '0' || *s > '9')
        return -1;
    int64_t yuan = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        yuan = yuan * 10 + (*s - '0');
        if (yuan * 100 > GW_MONEY_MAX_FEN)
            return -1;
    }
    int64_t cents = 0;
    if (*s == '.') {
        s++;
        int nd = 0;
        for (; *s >= '0' && *s <= '9' && nd < 3; s++, nd++)
            cents = cents * 10 + (*s - '0');
        if (nd == 0 || nd > 2)
            return -1;
        if (nd == 1)
            cents *= 10;
    }
    if (*s)
        return -1;
    *fen = (yuan * 100 + cents) * (neg ? -1 : 1);
    return 0;
}

static void gw_format_money(int64_t fen, char out[32])
{
    snprintf(out, 32, "%lld.%02lld", (long long)(fen / 100), (long long)(fen % 100));
}

/* A string member of obj, or NULL when absent or not a string. */
static const char *gw_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* An integer member given as a JSON integer or a string of digits (notify
 * bodies are all strings). Returns 1 absent, 0 read, -1 malformed. */
static int gw_int(const json_t *obj, const char *key, int64_t *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 1;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    const char *s = json_string_value(v);
    int neg = s && *s == '-';
    if (!s || !s[neg] || strlen(s) > 18)
        return -1;
    int64_t n = 0;
    for (const char *c = s + neg; *c; c++) {
        if (*c < '0' || *c > '9')
            return -1;
        n = n * 10 + (*c - '0');
    }
    *out = neg ? -n : n;
    return 0;
}

/* A money member ("28.50") in fen. Returns 1 absent, 0 read, -1 malformed. */
static int gw_money(const json_t *obj, const char *key, int allow_negative, int64_t *fen)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 1;
    const char *s = json_string_value(v);
    return s && gw_parse_money(s, allow_negative, fen) == 0 ? 0 : -1;
}

/* Serializes j compactly into a new host block (NUL-terminated) without a
 * malloc'd intermediate. NULL when out of memory. */
static char *gw_dump(const struct perkhub_host *host, const json_t *j, size_t *len)
{
    size_t n = json_dumpb(j, NULL, 0, JSON_COMPACT);
    if (n == 0)
        return NULL;
    char *out = host->mem_alloc(host, n + 1);
    if (out && json_dumpb(j, out, n, JSON_COMPACT) != n) {
        host->mem_free(host, out);
        out = NULL;
    }
    if (out && len)
        *len = n;
    return out;
}

/* Stores a copy of s (NULL stays NULL) in *dst; -1 when out of memory. */
static int gw_set(const struct perkhub_host *host, char **dst, const char *s)
{
    if (!s)
        return 0;
    *dst = host->mem_strdup(host, s);
    return *dst ? 0 : -1;
}

/* Sets res->reason and returns status: the class is what matters, so a
 * reason lost to memory pressure does not change it. */
static int gw_outcome(const struct gateway *gw, struct perkhub_result *res, int status,
                      const char *reason)
{
    if (reason && !res->reason)
        res->reason = gw->host->mem_strdup(gw->host, reason);
    return status;
}

#define GW_PAGE_SIZE 500 /* goods per gw.goods.list page */

/* The step of an exchange that asks gw.order.info and reads it as a query. */
static int gw_is_query(const struct perkhub_op *op)
{
    return op->kind == PERKHUB_OP_ORDER_QUERY ||
           (op->kind == PERKHUB_OP_CARD_ORDER && op->step >= 1);
}

/* ======================= (4a) build_request =============================== */

/* The method and biz_content of op, or a status when op cannot be sent. */
static int gw_biz_for(const struct perkhub_op *op, const char **method, json_t *biz)
{
    json_int_t buy = op->quantity ? (json_int_t)op->quantity : 1;
    int bad = 0;
    if (gw_is_query(op)) {
        if (!op->order_ref)
            return PERKHUB_ERR_INTERNAL;
        *method = "gw.order.info";
        return json_object_set_new(biz, "customer_order_no", json_string(op->order_ref))
                   ? PERKHUB_ERR_NOMEM
                   : PERKHUB_OK;
    }
    switch (op->kind) {
    case PERKHUB_OP_CATALOG:
        /* one page per step of the exchange (docs/protocols/gateway.md, paging) */
        *method = "gw.goods.list";
        bad |= json_object_set_new(biz, "page_no", json_integer((json_int_t)op->step + 1));
        bad |= json_object_set_new(biz, "page_size", json_integer(GW_PAGE_SIZE));
        return bad ? PERKHUB_ERR_NOMEM : PERKHUB_OK;
    case PERKHUB_OP_BALANCE:
        *method = "gw.account.info";
        return PERKHUB_OK;
    case PERKHUB_OP_STOCK_CHECK:
        if (!op->product_id)
            return PERKHUB_ERR_INTERNAL;
        *method = "gw.goods.stock";
        bad |= json_object_set_new(biz, "product_id", json_string(op->product_id));
        bad |= json_object_set_new(biz, "buy_num", json_integer(buy));
        return bad ? PERKHUB_ERR_NOMEM : PERKHUB_OK;
    case PERKHUB_OP_CARD_ORDER:
    case PERKHUB_OP_RECHARGE:
        break;
    default:
        return PERKHUB_ERR_UNSUPPORTED;
    }
    if (!op->order_ref || !op->product_id)
        return PERKHUB_ERR_INTERNAL;
    int card = op->kind == PERKHUB_OP_CARD_ORDER;
    /* An account we cannot send is a definite failure: nothing went out. */
    if (!card && (!op->account || !op->account[0]))
        return PERKHUB_DEFINITE_FAILURE;
    *method = card ? "gw.order.card.add" : "gw.order.direct.add";
    bad |= json_object_set_new(biz, "customer_order_no", json_string(op->order_ref));
    bad |= json_object_set_new(biz, "product_id", json_string(op->product_id));
    bad |= json_object_set_new(biz, "buy_num", json_integer(buy));
    if (card && op->unit_price > 0) {
        char price[32];
        gw_format_money(op->unit_price, price);
        bad |= json_object_set_new(biz, "max_price", json_string(price));
    }
    if (!card) {
        bad |= json_object_set_new(biz, "charge_account", json_string(op->account));
        if (op->callback_url && op->callback_url[0])
            bad |= json_object_set_new(biz, "notify_url", json_string(op->callback_url));
    }
    return bad ? PERKHUB_ERR_NOMEM : PERKHUB_OK;
}

/* Encrypts one card field as the gateway's cards come: base64(iv[16] ||
 * AES-256-CBC) under SHA-256(app secret), a fresh random IV each time. On
 * PERKHUB_OK *out is a host block (not a secret: only the key opens it). */
static int gw_card_encrypt(const struct gateway *gw, const char *plain, char **out)
{
    const struct perkhub_host *host = gw->host;
    uint8_t iv[GW_AES_BLOCK], *enc = NULL, *raw = NULL;
    size_t enclen = 0;
    int st = host->random(host, iv, sizeof iv);
    if (st != PERKHUB_OK)
        return st;
    st = host->cipher(host, "aes-256-cbc", 1, gw->card_key, sizeof gw->card_key, iv, sizeof iv,
                      (const uint8_t *)plain, strlen(plain), &enc, &enclen);
    if (st != PERKHUB_OK)
        return st == PERKHUB_ERR_NOMEM ? st : PERKHUB_ERR_INTERNAL;
    raw = host->mem_alloc(host, sizeof iv + enclen);
    if (raw) {
        memcpy(raw, iv, sizeof iv);
        memcpy(raw + sizeof iv, enc, enclen);
        *out = host->base64_encode(host, raw, sizeof iv + enclen);
    }
    host->mem_free(host, enc);
    host->mem_free(host, raw);
    return raw && *out ? PERKHUB_OK : PERKHUB_ERR_NOMEM;
}

/* ABI 1.3: gw.card.status — the code (and card number) encrypted like the
 * cards the gateway delivers, so neither crosses the wire in the clear nor
 * lands in a proxy's log; the product when we know it. */
static int gw_biz_redemption(const struct gateway *gw, const struct perkhub_op *op,
                             const char **method, json_t *biz)
{
    const struct perkhub_host *host = gw->host;
    char *pwd = NULL, *num = NULL;
    if (!op->code || !op->code[0])
        return PERKHUB_ERR_INTERNAL;
    int st = gw_card_encrypt(gw, op->code, &pwd);
    if (st == PERKHUB_OK && op->card_no && op->card_no[0])
        st = gw_card_encrypt(gw, op->card_no, &num);
    int bad = 0;
    if (st == PERKHUB_OK) {
        *method = "gw.card.status";
        bad |= json_object_set_new(biz, "card_pwd", json_string(pwd));
        if (num)
            bad |= json_object_set_new(biz, "card_number", json_string(num));
        if (op->product_id)
            bad |= json_object_set_new(biz, "product_id", json_string(op->product_id));
    }
    host->mem_free(host, pwd);
    host->mem_free(host, num);
    return st != PERKHUB_OK ? st : bad ? PERKHUB_ERR_NOMEM : PERKHUB_OK;
}

/* The signed envelope around biz text, as a new host block in *body. */
static int gw_envelope(const struct gateway *gw, const char *method, const char *biz_text,
                       char **body, size_t *body_len)
{
    char ts[GW_TIME_BUF], sign[GW_MD5_HEX + 1];
    gw_format_time(gw->host->now_ms(gw->host), ts);
    struct gw_param p[] = {
        {"app_key", gw->app_key}, {"method", method},        {"timestamp", ts},
        {"version", "2.0"},       {"format", "json"},        {"charset", "utf-8"},
        {"sign_type", "md5"},     {"biz_content", biz_text},
    };
    size_t n = sizeof p / sizeof p[0];
    int st = gw_sign_params(gw, p, n, sign);
    if (st != PERKHUB_OK)
        return st;
    json_t *env = json_object();
    int bad = !env;
    for (size_t i = 0; !bad && i < n; i++)
        bad |= json_object_set_new(env, p[i].key, json_string(p[i].value));
    if (!bad)
        bad |= json_object_set_new(env, "sign", json_string(sign));
    *body = bad ? NULL : gw_dump(gw->host, env, body_len);
    json_decref(env);
    return *body ? PERKHUB_OK : PERKHUB_ERR_NOMEM;
}

static int gw_build_request(void *instance, const struct perkhub_op *op,
                            struct perkhub_request *req)
{
    struct gateway *gw = instance;
    const struct perkhub_host *host = gw->host;
    const char *method = NULL;
    char *biz_text = NULL, *body = NULL, *url = NULL, *ctype = NULL;
    size_t biz_len = 0, body_len = 0;
    json_t *biz = json_object();
    int st = !biz                                ? PERKHUB_ERR_NOMEM
             : op->kind == PERKHUB_OP_REDEMPTION ? gw_biz_redemption(gw, op, &method, biz)
                                                 : gw_biz_for(op, &method, biz);
    if (st != PERKHUB_OK)
        goto done;
    st = PERKHUB_ERR_NOMEM;
    if (!(biz_text = gw_dump(host, biz, &biz_len)))
        goto done;
    if ((st = gw_envelope(gw, method, biz_text, &body, &body_len)) != PERKHUB_OK)
        goto done;
    st = PERKHUB_ERR_NOMEM;
    if (!(url = host->mem_strdup(host, gw->url)) ||
        !(ctype = host->mem_strdup(host, "Content-Type: application/json")))
        goto done;
    req->method = "POST";
    req->url = url;
    req->headers[0] = ctype;
    req->nheaders = 1;
    req->body = body;
    req->body_len = body_len;
    url = ctype = body = NULL; /* the core's now */
    st = PERKHUB_OK;
done:
    json_decref(biz);
    if (biz_text) /* holds a recharge account */
        gw_wipe(biz_text, biz_len);
    host->mem_free(host, biz_text);
    if (body)
        gw_wipe(body, body_len);
    host->mem_free(host, body);
    host->mem_free(host, url);
    host->mem_free(host, ctype);
    return st;
}

/* ======================= (4b) parse_response ============================== */

/* The table of docs/protocols/gateway.md for a non-zero code (2005 aside). */
static int gw_code_class(long long code, const char **reason)
{
    static const struct {
        long long code;
        int status;
        const char *reason;
    } table[] = {
        {1001, PERKHUB_DEFINITE_FAILURE, "bad_request_signature"},
        {1002, PERKHUB_DEFINITE_FAILURE, "clock_skew"},
        {1003, PERKHUB_DEFINITE_FAILURE, "unknown_app_key"},
        {2001, PERKHUB_DEFINITE_FAILURE, "unknown_product"},
        {2002, PERKHUB_DEFINITE_FAILURE, "out_of_stock"},
        {2003, PERKHUB_DEFINITE_FAILURE, "invalid_account"},
        {2004, PERKHUB_AMBIGUOUS, "duplicate_order"}, /* we never resend: it exists */
        {2006, PERKHUB_DEFINITE_FAILURE, "insufficient_balance"},
        {2007, PERKHUB_DEFINITE_FAILURE, "price_above_max"},
        {2008, PERKHUB_DEFINITE_FAILURE, "unknown_card"}, /* card.status: not a card of ours */
        {4000, PERKHUB_DEFINITE_FAILURE, "bad_request"},  /* envelope refused unread */
        {4004, PERKHUB_DEFINITE_FAILURE, "unknown_method"},
        {5000, PERKHUB_RETRYABLE, "supplier_busy"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].code == code) {
            *reason = table[i].reason;
            return table[i].status;
        }
    *reason = "unexpected_code";
    return PERKHUB_AMBIGUOUS;
}

/* Decrypts one card field: base64(iv[16] || AES-256-CBC). On PERKHUB_OK *out is
 * the plaintext, a host block the result may own; PERKHUB_AMBIGUOUS when it
 * does not decode or decrypt to a non-empty C string. */
static int gw_card_decrypt(const struct gateway *gw, const char *text, char **out)
{
    const struct perkhub_host *host = gw->host;
    uint8_t *raw = NULL, *plain = NULL;
    size_t rawlen = 0, plainlen = 0;
    int st = host->base64_decode(host, text, strlen(text), &raw, &rawlen);
    if (st != PERKHUB_OK)
        return st == PERKHUB_ERR_NOMEM ? st : PERKHUB_AMBIGUOUS;
    if (rawlen <= GW_AES_BLOCK || (rawlen - GW_AES_BLOCK) % GW_AES_BLOCK != 0) {
        host->mem_free(host, raw);
        return PERKHUB_AMBIGUOUS;
    }
    st = host->cipher(host, "aes-256-cbc", 0, gw->card_key, sizeof gw->card_key, raw, GW_AES_BLOCK,
                      raw + GW_AES_BLOCK, rawlen - GW_AES_BLOCK, &plain, &plainlen);
    host->mem_free(host, raw);
    if (st != PERKHUB_OK)
        return st == PERKHUB_ERR_NOMEM ? st : PERKHUB_AMBIGUOUS;
    if (plainlen == 0 || strlen((char *)plain) != plainlen) {
        gw_wipe(plain, plainlen);
        host->mem_free(host, plain);
        return PERKHUB_AMBIGUOUS;
    }
    *out = (char *)plain;
    return PERKHUB_OK;
}

/* One element of `cards` into c. PERKHUB_OK, _AMBIGUOUS or _ERR_NOMEM; on
 * failure c may hold partial strings (the caller wipes them). */
static int gw_card_read(const struct gateway *gw, const json_t *card, struct perkhub_code *c)
{
    if (!json_is_object(card))
        return PERKHUB_AMBIGUOUS;
    const json_t *jnum = json_object_get(card, "card_number");
    const json_t *jdl = json_object_get(card, "card_deadline");
    const char *pwd = gw_str(card, "card_pwd");
    const char *num = json_string_value(jnum), *deadline = json_string_value(jdl);
    /* Absent or null is "none"; any other non-string is a shape we do not know. */
    if (!pwd || !pwd[0] || (jnum && !json_is_null(jnum) && !num) ||
        (jdl && !json_is_null(jdl) && !deadline))
        return PERKHUB_AMBIGUOUS;
    if (deadline && deadline[0] && gw_parse_time(deadline, &c->expires_at_ms) != 0)
        return PERKHUB_AMBIGUOUS;
    int st = gw_card_decrypt(gw, pwd, &c->code);
    if (st == PERKHUB_OK && num && num[0]) /* "" or absent: the product has no card number */
        st = gw_card_decrypt(gw, num, &c->card_no);
    return st;
}

static void gw_codes_free(const struct perkhub_host *host, struct perkhub_code *codes, size_t n)
{
    for (size_t i = 0; codes && i < n; i++) {
        gw_free_secret(host, codes[i].code);
        gw_free_secret(host, codes[i].card_no);
    }
    host->mem_free(host, codes);
}

/* The codes of a successful card order: exactly buy_num of them, each one
 * decrypting, or nothing at all (AMBIGUOUS "bad_cards": we paid for codes we
 * cannot read, so only a person or a later query may settle it). */
static int gw_cards_parse(const struct gateway *gw, const struct perkhub_op *op,
                          const json_t *result, struct perkhub_result *res)
{
    const struct perkhub_host *host = gw->host;
    const json_t *cards = json_object_get(result, "cards");
    int64_t buy = 0;
    size_t n = json_array_size(cards);
    if (!json_is_array(cards) || n == 0 || gw_int(result, "buy_num", &buy) != 0 ||
        (int64_t)n != buy ||
        (op->kind == PERKHUB_OP_CARD_ORDER && op->quantity && buy != (int64_t)op->quantity))
        goto bad;
    struct perkhub_code *codes = host->mem_alloc(host, n * sizeof *codes);
    if (!codes)
        return gw_outcome(gw, res, PERKHUB_AMBIGUOUS, "out_of_memory");
    for (size_t i = 0; i < n; i++) {
        int st = gw_card_read(gw, json_array_get(cards, i), &codes[i]);
        if (st != PERKHUB_OK) {
            gw_codes_free(host, codes, n);
            if (st == PERKHUB_ERR_NOMEM)
                return gw_outcome(gw, res, PERKHUB_AMBIGUOUS, "out_of_memory");
            goto bad;
        }
    }
    res->codes = codes;
    res->ncodes = n;
    res->state = PERKHUB_STATE_SUCCEEDED;
    return PERKHUB_OK;
bad:
    host->log_msg(host, PERKHUB_LOG_WARN, "cards.unreadable", "cards=%zu", n);
    return gw_outcome(gw, res, PERKHUB_AMBIGUOUS, "bad_cards");
}

/* Whether this order result is about card codes. */
static int gw_is_card(const struct perkhub_op *op, const json_t *result)
{
    if (op->kind == PERKHUB_OP_CARD_ORDER)
        return 1;
    if (op->order_kind == PERKHUB_OP_CARD_ORDER || op->order_kind == PERKHUB_OP_RECHARGE)
        return op->order_kind == PERKHUB_OP_CARD_ORDER;
    const char *type = gw_str(result, "order_type");
    return type ? strcmp(type, "card") == 0 : json_array_size(json_object_get(result, "cards")) > 0;
}

/* The fields every order answer carries into res. -1: malformed. */
static int gw_order_fields(const struct gateway *gw, const json_t *result,
                           struct perkhub_result *res)
{
    const struct perkhub_host *host = gw->host;
    int64_t v;
    int r = gw_int(result, "buy_num", &v);
    if (r < 0 || (r == 0 && v < 0)) /* a count; the core reads a negative one as unknown */
        return -1;
    if (r == 0)
        res->quantity = v;
    if ((r = gw_money(result, "order_price", 0, &v)) < 0)
        return -1;
    if (r == 0)
        res->amount = v;
    if ((r = gw_money(result, "delivered_value", 0, &v)) < 0) /* optional (ABI 1.2) */
        return -1;
    if (r == 0)
        res->delivered_value = v;
    if (gw_set(host, &res->supplier_order_id, gw_str(result, "order_id")) ||
        gw_set(host, &res->order_ref, gw_str(result, "customer_order_no")) ||
        gw_set(host, &res->product_id, gw_str(result, "product_id")))
        return -2;
    return 0;
}

/* order_state as PERKHUB_STATE_*, or -1 when it is none we know. */
static int gw_order_state(const char *s)
{
    if (!s)
        return -1;
    if (!strcmp(s, "untreated") || !strcmp(s, "processing"))
        return PERKHUB_STATE_PROCESSING;
    if (!strcmp(s, "success"))
        return PERKHUB_STATE_SUCCEEDED;
    if (!strcmp(s, "failed"))
        return PERKHUB_STATE_FAILED;
    return -1;
}

/* Asks the core for step 1 of a card order: gw.order.info, where the codes are. */
static int gw_ask_codes(const struct gateway *gw, struct perkhub_result *res)
{
    res->state = PERKHUB_STATE_PROCESSING;
    res->next = 1;
    res->next_delay_ms = GW_CARD_QUERY_DELAY;
    res->next_state = gw->host->mem_strdup(gw->host, "query");
    /* Without next_state the step is still PROCESSING: the core's query finds the codes. */
    if (!res->next_state)
        res->next = 0;
    return PERKHUB_OK;
}

/* An order answer (order.card.add, order.direct.add, order.info) into res. */
static int gw_order_parse(const struct gateway *gw, const struct perkhub_op *op,
                          const json_t *result, struct perkhub_result *res)
{
    if (!json_is_object(result))
        return gw_outcome(gw, res, PERKHUB_AMBIGUOUS, "malformed_result");
    int state = gw_order_state(gw_str(result, "order_state"));
    if (state < 0)
        return gw_outcome(gw, res, PERKHUB_AMBIGUOUS, "unknown_order_state");
    const char *ref = gw_str(result, "customer_order_no");
    if (ref && op->order_ref && strcmp(ref, op->order_ref) != 0)
        return gw_outcome(gw, res, PERKHUB_AMBIGUOUS, "order_mismatch");
    int r = gw_order_fields(gw, result, res);
    if (r != 0)
        return gw_outcome(gw, res, PERKHUB_AMBIGUOUS,
                          r == -2 ? "out_of_memory" : "malformed_result");
    int card = gw_is_card(op, result);
    int query = gw_is_query(op);
    if (state == PERKHUB_STATE_FAILED) {
        res->state = PERKHUB_STATE_FAILED;
        return query ? PERKHUB_OK
                     : gw_outcome(gw, res, PERKHUB_DEFINITE_FAILURE, "supplier_failed");
    }
    if (state == PERKHUB_STATE_SUCCEEDED && card) {
        /* card.add never carries codes (the contract); they come with order.info. */
        if (!query && json_array_size(json_object_get(result, "cards")) == 0)
            return gw_ask_codes(gw, res);
        return gw_cards_parse(gw, op, result, res);
    }
    if (state == PERKHUB_STATE_PROCESSING && card && !query)
        return gw_ask_codes(gw, res);
    res->state = state;
    return PERKHUB_OK;
}

/* One goods object of gw.goods.list into it. -1: malformed. */
static int gw_item_read(const struct perkhub_host *host, const json_t *g, struct perkhub_item *it)
{
    const char *id = gw_str(g, "product_id"), *type = gw_str(g, "product_type");
    const char *status = gw_str(g, "sales_status");
    if (!json_is_object(g) || !id || !id[0] || !type)
        return -1;
    if (!strcmp(type, "card"))
        it->kind = PERKHUB_OP_CARD_ORDER;
    else if (!strcmp(type, "direct"))
        it->kind = PERKHUB_OP_RECHARGE;
    else
        return -1;
    it->face_value = it->price = it->stock = -1;
    if (gw_money(g, "face_value", 0, &it->face_value) < 0 ||
        gw_money(g, "purchase_price", 0, &it->price) < 0 || gw_int(g, "stock", &it->stock) < 0)
        return -1;
    if (it->stock < -1)
        return -1;
    it->on_sale = status && !strcmp(status, "on");
    if (gw_set(host, &it->product_id, id) || gw_set(host, &it->name, gw_str(g, "product_name")))
        return -2;
    return 0;
}

static int gw_catalog_parse(const struct gateway *gw, const struct perkhub_op *op,
                            const json_t *result, struct perkhub_result *res)
{
    const struct perkhub_host *host = gw->host;
    if (json_is_object(result)) {
        /* a page: {"page_no", "page_size", "total", "goods"}; more pages follow
         * while page_no x page_size is below total */
        json_t *no = json_object_get(result, "page_no"),
               *size = json_object_get(result, "page_size");
        json_t *total = json_object_get(result, "total");
        if (!json_is_integer(no) || !json_is_integer(size) || !json_is_integer(total) ||
            json_integer_value(no) != op->step + 1 || json_integer_value(size) < 1 ||
            json_integer_value(total) < 0)
            return gw_outcome(gw, res, PERKHUB_AMBIGUOUS, "malformed_result");
        if (json_integer_value(no) * json_integer_value(size) < json_integer_value(total)) {
            res->next = 1;
            if (!(res->next_state = host->mem_strdup(host, "next_page")))
                return gw_outcome(gw, res, PERKHUB_AMBIGUOUS, "out_of_memory");
        }
        result = json_object_get(result, "goods");
    }
    if (!json_is_array(result))
        return gw_outcome(gw, res, PERKHUB_AMBIGUOUS, "malformed_result");
    size_t n = json_array_size(result);
    if (n == 0)
        return PERKHUB_OK;
    /* Handed to the core at once: it frees items (and their strings) in any case. */
    res->items = host->mem_alloc(host, n * sizeof *res->items);
    if (!res->items)
        return gw_outcome(gw, res, PERKHUB_AMBIGUOUS, "out_of_memory");
    res->nitems = n;
    for (size_t i = 0; i < n; i++) {
        int r = gw_item_read(host, json_array_get(result, i), &res->items[i]);
        if (r != 0)
            return gw_outcome(gw, res, PERKHUB_AMBIGUOUS,
                              r == -2 ? "out_of_memory" : "malformed_result");
    }
    return PERKHUB_OK;
}

static int gw_stock_parse(const struct gateway *gw, const json_t *result,
                          struct perkhub_result *res)
{
    const char *status = gw_str(result, "stock_status");
    int64_t stock = -1, price = -1;
    if (!json_is_object(result) || !status || gw_int(result, "stock", &stock) < 0 ||
        gw_money(result, "purchase_price", 0, &price) < 0 || stock < -1)
        return gw_outcome(gw, res, PERKHUB_AMBIGUOUS, "malformed_result");
    /* "insufficient" with no count: none we can buy. */
    if (!strcmp(status, "insufficient") && stock < 0)
        stock = 0;
    res->stock = stock;
    res->price = price;
    return PERKHUB_OK;
}

static int gw_balance_parse(const struct gateway *gw, const json_t *result,
                            struct perkhub_result *res)
{
    if (!json_is_object(result) || gw_money(result, "balance", 1, &res->balance) != 0) {
        res->balance = -1;
        return gw_outcome(gw, res, PERKHUB_AMBIGUOUS, "malformed_result");
    }
    return PERKHUB_OK;
}

/* ABI 1.3: gw.card.status's result. "used" with its used_time (UTC+8; absent
 * or empty: when is unknown), "unused", or "unknown" (the gateway cannot tell);
 * anything else is AMBIGUOUS (the core then reads "cannot tell"). */
static int gw_card_status_parse(const struct gateway *gw, const json_t *result,
                                struct perkhub_result *res)
{
    const char *status = gw_str(result, "card_status"), *used = gw_str(result, "used_time");
    if (!json_is_object(result) || !status)
        return gw_outcome(gw, res, PERKHUB_AMBIGUOUS, "malformed_result");
    if (!strcmp(status, "used")) {
        int64_t at = 0;
        if (used && used[0] && gw_parse_time(used, &at) != 0)
            return gw_outcome(gw, res, PERKHUB_AMBIGUOUS, "malformed_result");
        res->redeemed = 1;
        res->redeemed_at_ms = at;
    } else if (!strcmp(status, "unused")) {
        res->redeemed = 0;
    } else if (!strcmp(status, "unknown")) {
        res->redeemed = -1;
    } else {
        return gw_outcome(gw, res, PERKHUB_AMBIGUOUS, "unknown_card_status");
    }
    return PERKHUB_OK;
}

/* A code-0 answer: its `sign` must be md5(result + secret) before anything in
 * `result` counts. */
static int gw_success_parse(const struct gateway *gw, const struct perkhub_op *op,
                            const json_t *root, struct perkhub_result *res)
{
    const struct perkhub_host *host = gw->host;
    const json_t *jr = json_object_get(root, "result");
    const char *sign = gw_str(root, "sign");
    char want[GW_MD5_HEX + 1];
    if (!json_is_string(jr))
        return gw_outcome(gw, res, PERKHUB_AMBIGUOUS, "malformed_response");
    const char *text = json_string_value(jr);
    size_t len = json_string_length(jr);
    if (gw_md5_with_secret(gw, text, len, want) != PERKHUB_OK)
        return gw_outcome(gw, res, PERKHUB_AMBIGUOUS, "out_of_memory");
    if (!sign || strlen(sign) != GW_MD5_HEX || !host->ct_equal(host, sign, want, GW_MD5_HEX)) {
        host->log_msg(host, PERKHUB_LOG_WARN, "response.bad_sign", "op=%d step=%d", op->kind,
                      op->step);
        return gw_outcome(gw, res, PERKHUB_AMBIGUOUS, "bad_response_signature");
    }
    json_t *result = json_loadb(text, len, GW_JSON_FLAGS_IN | JSON_DECODE_ANY, NULL);
    if (!result)
        return gw_outcome(gw, res, PERKHUB_AMBIGUOUS, "malformed_result");
    int st;
    if (gw_is_query(op) || op->kind == PERKHUB_OP_CARD_ORDER || op->kind == PERKHUB_OP_RECHARGE)
        st = gw_order_parse(gw, op, result, res);
    else if (op->kind == PERKHUB_OP_CATALOG)
        st = gw_catalog_parse(gw, op, result, res);
    else if (op->kind == PERKHUB_OP_STOCK_CHECK)
        st = gw_stock_parse(gw, result, res);
    else if (op->kind == PERKHUB_OP_BALANCE)
        st = gw_balance_parse(gw, result, res);
    else if (op->kind == PERKHUB_OP_REDEMPTION)
        st = gw_card_status_parse(gw, result, res);
    else
        st = PERKHUB_ERR_UNSUPPORTED;
    json_decref(result);
    return st;
}

static int gw_parse_body(const struct gateway *gw, const struct perkhub_op *op,
                         const struct perkhub_response *resp, struct perkhub_result *res)
{
    /* The gateway always answers 200; anything else did not come from its logic. */
    if (resp->http_status != 200)
        return gw_outcome(gw, res, PERKHUB_AMBIGUOUS, "unexpected_http_status");
    json_t *root = json_loadb(resp->body, resp->body_len, GW_JSON_FLAGS_IN, NULL);
    const json_t *jcode = json_object_get(root, "code");
    int st;
    if (!json_is_object(root) || !json_is_integer(jcode)) {
        st = gw_outcome(gw, res, PERKHUB_AMBIGUOUS, "malformed_response");
    } else if (json_integer_value(jcode) == 0) {
        st = gw_success_parse(gw, op, root, res);
    } else if (json_integer_value(jcode) == 2005 && gw_is_query(op)) {
        res->state = PERKHUB_STATE_NOT_FOUND;
        st = PERKHUB_OK;
    } else {
        const char *reason;
        long long code = (long long)json_integer_value(jcode);
        int cls = gw_code_class(code, &reason); /* before reason is read */
        st = gw_outcome(gw, res, cls, reason);
        /* A code outside the protocol's table is as good as the supplier's free text
         * (its digits could be an account): logged as the protocol's codes only. */
        if (strcmp(reason, "unexpected_code") != 0)
            gw->host->log_msg(gw->host, PERKHUB_LOG_INFO, "response.refused", "op=%d code=%lld",
                              op->kind, code);
        else
            gw->host->log_msg(gw->host, PERKHUB_LOG_INFO, "response.refused",
                              "op=%d code=unexpected", op->kind);
    }
    json_decref(root);
    return st;
}

static int gw_parse_response(void *instance, const struct perkhub_op *op,
                             const struct perkhub_response *resp, struct perkhub_result *res)
{
    const struct gateway *gw = instance;
    int st = gw_parse_body(gw, op, resp, res);
    /* A card order's later steps only read an order the supplier already
     * accepted: whatever goes wrong there, the order exists, so never let a
     * refusal of the query pass for a refusal of the order (no failover). */
    if (op->kind == PERKHUB_OP_CARD_ORDER && op->step >= 1 && st != PERKHUB_OK)
        st = PERKHUB_AMBIGUOUS;
    return st;
}

/* ======================= (4c) verify_callback ============================= */

/* Recomputes the notify's sign over its own params. 1: it verifies. */
static int gw_callback_signed(const struct gateway *gw, const json_t *body, int *nomem)
{
    const struct perkhub_host *host = gw->host;
    size_t n = json_object_size(body);
    const char *sign = gw_str(body, "sign");
    char want[GW_MD5_HEX + 1];
    if (!sign || strlen(sign) != GW_MD5_HEX || n == 0)
        return 0;
    struct gw_param *p = host->mem_alloc(host, n * sizeof *p);
    if (!p) {
        *nomem = 1;
        return 0;
    }
    size_t i = 0;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        p[i].key = key;
        p[i++].value = json_string_value(v);
    }
    int st = gw_sign_params(gw, p, n, want);
    host->mem_free(host, p);
    if (st != PERKHUB_OK) {
        *nomem = 1;
        return 0;
    }
    return host->ct_equal(host, sign, want, GW_MD5_HEX);
}

/* Our reference format ([A-Za-z0-9-], 1..64): anything else is not ours. */
static int gw_ref_valid(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return 0;
    }
    return n >= 1 && n <= 64;
}

/* What a verified notify claims, into res. */
static int gw_callback_claims(const struct gateway *gw, const json_t *body,
                              struct perkhub_result *res)
{
    const struct perkhub_host *host = gw->host;
    const char *ref = gw_str(body, "customer_order_no"), *ts = gw_str(body, "timestamp");
    const char *state = gw_str(body, "order_state");
    int64_t ts_ms, qty = -1, amount = -1;
    int qr = gw_int(body, "buy_num", &qty); /* a count: a negative one is malformed */
    if (!ref || !gw_ref_valid(ref) || !ts || gw_parse_time(ts, &ts_ms) != 0 || qr < 0 ||
        (qr == 0 && qty < 0) || gw_money(body, "order_price", 0, &amount) < 0)
        return gw_outcome(gw, res, PERKHUB_DEFINITE_FAILURE, "malformed");
    /* One window both ways: a notify dated ahead of our clock is as suspect as
     * an old one (a signature made for a future replay), and clock skew
     * between honest hosts is seconds, far inside the window. */
    int64_t skew_ms = host->now_ms(host) - ts_ms;
    if (skew_ms > gw->stale_ms || skew_ms < -gw->stale_ms) {
        host->log_msg(host, PERKHUB_LOG_WARN, "callback.refused", "reason=stale");
        return gw_outcome(gw, res, PERKHUB_DEFINITE_FAILURE, "stale");
    }
    int st = gw_order_state(state);
    res->state =
        st == PERKHUB_STATE_SUCCEEDED || st == PERKHUB_STATE_FAILED ? st : PERKHUB_STATE_PROCESSING;
    res->quantity = qty;
    res->amount = amount;
    res->timestamp_ms = ts_ms;
    int64_t dv;
    int dr = gw_money(body, "delivered_value", 0, &dv); /* optional (ABI 1.2) */
    if (dr < 0)
        return gw_outcome(gw, res, PERKHUB_DEFINITE_FAILURE, "malformed");
    if (dr == 0)
        res->delivered_value = dv;
    res->reply_content_type = "text/plain";
    if (gw_set(host, &res->order_ref, ref) ||
        gw_set(host, &res->supplier_order_id, gw_str(body, "order_id")) ||
        gw_set(host, &res->product_id, gw_str(body, "product_id")) ||
        gw_set(host, &res->reply_body, "success"))
        return PERKHUB_ERR_NOMEM;
    return PERKHUB_OK;
}

static int gw_verify_callback(void *instance, const struct perkhub_callback *cb,
                              struct perkhub_result *res)
{
    const struct gateway *gw = instance;
    const struct perkhub_host *host = gw->host;
    json_t *body = cb->body ? json_loadb(cb->body, cb->body_len, GW_JSON_FLAGS_IN, NULL) : NULL;
    int st = PERKHUB_OK, nomem = 0;
    const char *key;
    json_t *v;
    if (!json_is_object(body)) {
        st = gw_outcome(gw, res, PERKHUB_DEFINITE_FAILURE, "malformed");
        goto done;
    }
    /* The contract: every value a string. Anything else is not a notify we sign-check. */
    json_object_foreach(body, key, v)
    {
        if (!json_is_string(v)) {
            st = gw_outcome(gw, res, PERKHUB_DEFINITE_FAILURE, "malformed");
            goto done;
        }
    }
    if (!gw_callback_signed(gw, body, &nomem)) {
        if (nomem) {
            st = PERKHUB_ERR_NOMEM;
            goto done;
        }
        host->log_msg(host, PERKHUB_LOG_WARN, "callback.refused", "reason=bad_signature");
        st = gw_outcome(gw, res, PERKHUB_DEFINITE_FAILURE, "bad_signature");
        goto done;
    }
    st = gw_callback_claims(gw, body, res);
done:
    json_decref(body);
    return st;
}

/* ======================= (5) lifecycle and descriptor ===================== */

/* A config string that must be set and non-empty; errbuf names the key. */
static const char *gw_conf_nonempty(const struct perkhub_host *host,
                                    const struct perkhub_config *config, const char *key,
                                    char *errbuf, size_t errlen)
{
    const char *v = host->config_string(host, config, key);
    if (!v || !*v)
        snprintf(errbuf, errlen, "config key '%s' must not be empty", key);
    return v && *v ? v : NULL;
}

static int gateway_init(const struct perkhub_host *host, const struct perkhub_config *config,
                        void **instance, char *errbuf, size_t errlen)
{
    const char *url = gw_conf_nonempty(host, config, "gateway_url", errbuf, errlen);
    const char *key = url ? gw_conf_nonempty(host, config, "app_key", errbuf, errlen) : NULL;
    const char *secret = key ? gw_conf_nonempty(host, config, "app_secret", errbuf, errlen) : NULL;
    int64_t stale_s = 0;
    if (!secret)
        return PERKHUB_ERR_CONFIG;
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        snprintf(errbuf, errlen, "config key 'gateway_url' must start with http:// or https://");
        return PERKHUB_ERR_CONFIG;
    }
    if (host->config_int(host, config, "callback_stale_s", &stale_s) != PERKHUB_OK ||
        stale_s <= 0 || stale_s > INT64_C(86400) * 365) {
        snprintf(errbuf, errlen, "config key 'callback_stale_s' must be 1..31536000 seconds");
        return PERKHUB_ERR_CONFIG;
    }
    struct gateway *gw = host->mem_alloc(host, sizeof *gw);
    if (!gw)
        return PERKHUB_ERR_NOMEM;
    gw->host = host;
    gw->url = url;
    gw->app_key = key;
    gw->secret = secret;
    gw->secret_len = strlen(secret);
    gw->stale_ms = stale_s * 1000;
    host->sha256(host, secret, gw->secret_len, gw->card_key);
    /* Not the URL's query, the key or the secret: only what helps ops. */
    host->log_msg(host, PERKHUB_LOG_INFO, "init", "callback_stale_s=%lld", (long long)stale_s);
    *instance = gw;
    return PERKHUB_OK;
}

static void gateway_shutdown(void *instance)
{
    struct gateway *gw = instance;
    const struct perkhub_host *host = gw->host;
    gw_wipe(gw->card_key, sizeof gw->card_key);
    host->mem_free(host, gw);
}

static const struct perkhub_ops gateway_ops = {
    .struct_size = sizeof(struct perkhub_ops),
    .build_request = gw_build_request,
    .parse_response = gw_parse_response,
    .verify_callback = gw_verify_callback,
    .serve_local = NULL, /* a real upstream: the core sends our requests */
};

static const struct perkhub_plugin gateway_plugin = {
    .struct_size = sizeof(struct perkhub_plugin),
    .abi_major = PERKHUB_ABI_MAJOR,
    .abi_minor = PERKHUB_ABI_MINOR,
    .name = "gateway",  /* the file must be gateway.so */
    .version = "1.1.0", /* 1.1: redemption status (gw.card.status, ABI 1.3) */
    .description = "Signed-gateway aggregator (MD5 over sorted params, AES card codes, "
                   "async notify): docs/protocols/gateway.md.",
    .capabilities = PERKHUB_CAP_CATALOG | PERKHUB_CAP_STOCK_CHECK | PERKHUB_CAP_CARD_ORDER |
                    PERKHUB_CAP_RECHARGE | PERKHUB_CAP_ORDER_QUERY | PERKHUB_CAP_CALLBACK |
                    PERKHUB_CAP_BALANCE | PERKHUB_CAP_REDEMPTION,
    .config = gateway_config,
    .init = gateway_init,
    .shutdown = gateway_shutdown,
    .ops = &gateway_ops,
    .processing_window_s = 120,
    .query_delay_ms = 500,
};

/* The one exported symbol. No side effects: it only returns the descriptor. */
PERKHUB_EXPORT const struct perkhub_plugin *perkhub_plugin_entry(void)
{
    return &gateway_plugin;
}
