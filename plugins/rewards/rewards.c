/*
 * rewards.c — the adapter for REST rewards APIs (Tango Card RaaS, Tremendous and
 * the like), speaking docs/protocols/rewards.md. It is the worked example of
 * docs/sdk.md: a complete ABI 1.1 plugin with every operation, so read it in
 * order after plugins/example/example.c.
 *
 * What it shows, in order:
 *   1. the instance: ALL state lives here, read-only after init (calls on one
 *      instance come from several threads at once);
 *   2. the config schema, and init/shutdown validating it: every refusal names
 *      the key, none quotes a secret;
 *   3. small helpers: strings from the host allocator, reading JSON defensively;
 *   4. build_request: one normalized operation -> one HTTP request description;
 *   5. parse_response: what came back -> an outcome class and a result. The rule
 *      that shapes it: when in doubt, AMBIGUOUS (it costs an order query; a
 *      wrong DEFINITE_FAILURE can cost a double recharge, docs/design.md rule 2);
 *   6. verify_callback: signature first, then freshness, then the claim;
 *   7. the ops table, the descriptor and the one exported entry symbol.
 *
 * Like every plugin it performs no I/O: the core sends what build_request
 * describes and hands back what came back (docs/design.md rule 5). Codes (卡密),
 * recharge accounts, keys and bodies never reach a log line or a reason string.
 */
#include <assert.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <perkhub/plugin.h>

/* ===================== (1) THE INSTANCE ================================== */

/* One per configured supplier. Written by init only: afterwards every call
 * reads it, possibly from several threads at once, so it needs no lock. */
struct rewards {
    const struct perkhub_host *host; /* valid until shutdown returns */
    char *base_url;                  /* "http(s)://host[:port][/path]", no trailing '/' */
    char *auth_header;               /* the whole "Authorization: ..." line, built once.
                                        Holds the API key: wiped at shutdown, never logged */
    const char *webhook_secret;      /* the config's string (valid until shutdown) */
    size_t webhook_secret_len;
    int64_t webhook_tolerance_ms; /* a webhook signed longer ago than this is refused */
};

/* ===================== (2) CONFIG, INIT, SHUTDOWN ======================== */

/* The core validates a supplier's `config:` against this table before init
 * (unknown keys, wrong types, missing required keys), applies the defaults and
 * resolves SECRET references (env:NAME, file:PATH). What the schema cannot say
 * (api_key is required only for bearer auth) init checks itself. */
static const struct perkhub_config_key rewards_config[] = {
    {
        .key = "base_url",
        .type = PERKHUB_CONF_STRING,
        .description = "The API's base URL, http:// or https://, e.g. "
                       "https://api.example.com/rewards (a trailing '/' is ignored).",
        .required = 1,
    },
    {
        .key = "auth",
        .type = PERKHUB_CONF_STRING,
        .default_value = "bearer",
        .description = "How requests authenticate: bearer (api_key) or basic "
                       "(username and password).",
    },
    {
        .key = "api_key",
        .type = PERKHUB_CONF_SECRET,
        .description = "The API key sent as 'Authorization: Bearer'; required when auth is bearer.",
    },
    {
        .key = "username",
        .type = PERKHUB_CONF_STRING,
        .description = "The platform user for basic auth; required when auth is basic.",
    },
    {
        .key = "password",
        .type = PERKHUB_CONF_SECRET,
        .description = "The password for basic auth; required when auth is basic.",
    },
    {
        .key = "webhook_secret",
        .type = PERKHUB_CONF_SECRET,
        .description = "The shared secret of the X-Rewards-Signature HMAC on webhooks.",
        .required = 1,
    },
    {
        .key = "webhook_tolerance_s",
        .type = PERKHUB_CONF_INT,
        .default_value = "300",
        .description = "Webhooks signed more than this many seconds away from our clock "
                       "are refused as stale (replays).",
    },
    {.key = NULL}, /* end of the table */
};

/* A header value must be one line of visible ASCII: a CR or LF in a key would
 * let a config value inject headers. Spaces are allowed only where asked. */
static int is_header_safe(const char *s, int allow_space)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c > 0x7e || (c == ' ' && !allow_space))
            return 0;
    }
    return 1;
}

/* A new string from the host allocator, printf-style; NULL when out of memory.
 * The caller owns it (host->mem_free). */
static char *str_printf(const struct perkhub_host *host, const char *fmt, ...) PERKHUB_PRINTF(2, 3);
static char *str_printf(const struct perkhub_host *host, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = host->mem_alloc(host, (size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* Wipes and frees a string that held a secret. */
static void str_free_secret(const struct perkhub_host *host, char *s)
{
    if (!s)
        return;
    explicit_bzero(s, strlen(s));
    host->mem_free(host, s);
}

/* base_url: checked and normalized once here, so every URL below is just
 * "<base_url>/v1/...". Never quoted in errors: it may carry user:password@. */
static int config_base_url(struct rewards *rw, const struct perkhub_config *config, char *errbuf,
                           size_t errlen)
{
    const struct perkhub_host *host = rw->host;
    const char *url = host->config_string(host, config, "base_url");
    size_t scheme = 0;
    if (url && strncmp(url, "http://", 7) == 0)
        scheme = 7;
    else if (url && strncmp(url, "https://", 8) == 0)
        scheme = 8;
    if (!scheme) {
        snprintf(errbuf, errlen, "config key 'base_url' must start with http:// or https://");
        return PERKHUB_ERR_CONFIG;
    }
    size_t len = strlen(url);
    while (len > scheme && url[len - 1] == '/')
        len--;
    if (len == scheme) {
        snprintf(errbuf, errlen, "config key 'base_url' has no host");
        return PERKHUB_ERR_CONFIG;
    }
    /* We append paths and query strings: a '?' or '#' here would swallow them. */
    if (!is_header_safe(url, 0) || strpbrk(url, "?#")) {
        snprintf(errbuf, errlen,
                 "config key 'base_url' must be a URL without spaces, query or fragment");
        return PERKHUB_ERR_CONFIG;
    }
    rw->base_url = host->mem_alloc(host, len + 1);
    if (!rw->base_url)
        return PERKHUB_ERR_NOMEM;
    memcpy(rw->base_url, url, len);
    return PERKHUB_OK;
}

/* auth: bearer. The header line is built once; requests copy it. */
static int config_auth_bearer(struct rewards *rw, const struct perkhub_config *config, char *errbuf,
                              size_t errlen)
{
    const struct perkhub_host *host = rw->host;
    const char *key = host->config_string(host, config, "api_key");
    if (!key || !*key) {
        snprintf(errbuf, errlen, "config key 'api_key' is required when auth is bearer");
        return PERKHUB_ERR_CONFIG;
    }
    if (!is_header_safe(key, 0)) {
        snprintf(errbuf, errlen, "config key 'api_key' must be printable ASCII without spaces");
        return PERKHUB_ERR_CONFIG;
    }
    if (host->config_string(host, config, "username") ||
        host->config_string(host, config, "password"))
        host->log_msg(host, PERKHUB_LOG_WARN, "config.ignored",
                      "keys=username,password reason=auth_is_bearer");
    rw->auth_header = str_printf(host, "Authorization: Bearer %s", key);
    return rw->auth_header ? PERKHUB_OK : PERKHUB_ERR_NOMEM;
}

/* auth: basic, RFC 7617: base64("<username>:<password>"). */
static int config_auth_basic(struct rewards *rw, const struct perkhub_config *config, char *errbuf,
                             size_t errlen)
{
    const struct perkhub_host *host = rw->host;
    const char *user = host->config_string(host, config, "username");
    const char *pass = host->config_string(host, config, "password");
    if (!user || !*user || strchr(user, ':') || !is_header_safe(user, 1)) {
        snprintf(errbuf, errlen,
                 "config key 'username' is required when auth is basic, without ':' "
                 "or control characters");
        return PERKHUB_ERR_CONFIG;
    }
    if (!pass || !*pass || !is_header_safe(pass, 1)) {
        snprintf(errbuf, errlen,
                 "config key 'password' is required when auth is basic, without control "
                 "characters");
        return PERKHUB_ERR_CONFIG;
    }
    if (host->config_string(host, config, "api_key"))
        host->log_msg(host, PERKHUB_LOG_WARN, "config.ignored",
                      "keys=api_key reason=auth_is_basic");
    char *pair = str_printf(host, "%s:%s", user, pass);
    char *b64 = pair ? host->base64_encode(host, pair, strlen(pair)) : NULL;
    rw->auth_header = b64 ? str_printf(host, "Authorization: Basic %s", b64) : NULL;
    str_free_secret(host, pair);
    str_free_secret(host, b64);
    return rw->auth_header ? PERKHUB_OK : PERKHUB_ERR_NOMEM;
}

static int config_auth(struct rewards *rw, const struct perkhub_config *config, char *errbuf,
                       size_t errlen)
{
    const char *auth = rw->host->config_string(rw->host, config, "auth");
    if (auth && strcmp(auth, "bearer") == 0)
        return config_auth_bearer(rw, config, errbuf, errlen);
    if (auth && strcmp(auth, "basic") == 0)
        return config_auth_basic(rw, config, errbuf, errlen);
    /* auth is no secret, so the value may be quoted (truncated: it is one line). */
    snprintf(errbuf, errlen, "config key 'auth' must be bearer or basic, not '%.32s'",
             auth ? auth : "");
    return PERKHUB_ERR_CONFIG;
}

static int config_webhook(struct rewards *rw, const struct perkhub_config *config, char *errbuf,
                          size_t errlen)
{
    const struct perkhub_host *host = rw->host;
    const char *secret = host->config_string(host, config, "webhook_secret");
    if (!secret || !*secret) {
        snprintf(errbuf, errlen, "config key 'webhook_secret' must not be empty");
        return PERKHUB_ERR_CONFIG;
    }
    /* Config strings live until shutdown returns: no need for a copy. */
    rw->webhook_secret = secret;
    rw->webhook_secret_len = strlen(secret);

    int64_t tolerance_s = 0;
    if (host->config_int(host, config, "webhook_tolerance_s", &tolerance_s) != PERKHUB_OK ||
        tolerance_s <= 0 || tolerance_s > 86400) {
        snprintf(errbuf, errlen, "config key 'webhook_tolerance_s' must be between 1 and 86400");
        return PERKHUB_ERR_CONFIG;
    }
    rw->webhook_tolerance_ms = tolerance_s * 1000;
    return PERKHUB_OK;
}

/* Frees an instance, complete or half-built (init's failure path). */
static void rewards_free(struct rewards *rw)
{
    const struct perkhub_host *host = rw->host;
    str_free_secret(host, rw->auth_header);
    host->mem_free(host, rw->base_url);
    host->mem_free(host, rw);
}

static int rewards_init(const struct perkhub_host *host, const struct perkhub_config *config,
                        void **instance, char *errbuf, size_t errlen)
{
    struct rewards *rw = host->mem_alloc(host, sizeof *rw);
    if (!rw)
        return PERKHUB_ERR_NOMEM;
    rw->host = host;
    int st = config_base_url(rw, config, errbuf, errlen);
    if (st == PERKHUB_OK)
        st = config_auth(rw, config, errbuf, errlen);
    if (st == PERKHUB_OK)
        st = config_webhook(rw, config, errbuf, errlen);
    if (st != PERKHUB_OK) {
        rewards_free(rw);
        return st;
    }
    /* Only what ops need to recognize the setup: no URL (it may hold a
     * password), no key. */
    host->log_msg(host, PERKHUB_LOG_INFO, "init", "auth=%s webhook_tolerance_s=%lld",
                  strncmp(rw->auth_header, "Authorization: Basic ", 21) == 0 ? "basic" : "bearer",
                  (long long)(rw->webhook_tolerance_ms / 1000));
    *instance = rw;
    return PERKHUB_OK;
}

static void rewards_shutdown(void *instance)
{
    rewards_free(instance);
}

/* ===================== (3) HELPERS ======================================= */

static const char *op_kind_name(int kind)
{
    static const char *const names[] = {"?",        "catalog",     "stock_check", "card_order",
                                        "recharge", "order_query", "balance"};
    return kind >= PERKHUB_OP_CATALOG && kind <= PERKHUB_OP_BALANCE ? names[kind] : "?";
}

/* Reasons end up in the store, events and API answers, so they are what the
 * core keeps (perkhub/plugin.h, perkhub_result.reason): at most 6 words of
 * [a-z]+ joined by single '_', at most 48 bytes, and no digit at all, since a
 * supplier's "account_13971234567_suspended" carries the account. Anything
 * else the supplier sends is replaced by the caller's fallback. */
static int is_snake_word(const char *s)
{
    size_t n = 0, words = 0;
    for (; s && s[n]; n++) {
        if (s[n] == '_') {
            if (n == 0 || s[n + 1] == '_' || s[n + 1] == '\0')
                return 0;
        } else if (s[n] < 'a' || s[n] > 'z') {
            return 0;
        } else if (n == 0 || s[n - 1] == '_') {
            words++;
        }
    }
    return n >= 1 && n <= 48 && words <= 6;
}

/* Our order references are [A-Za-z0-9-], 1..64 bytes (perkhub_op.order_ref). */
static int is_order_ref(const char *s)
{
    size_t n = 0;
    for (; s && s[n]; n++)
        if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
              (s[n] >= '0' && s[n] <= '9') || s[n] == '-'))
            return 0;
    return n >= 1 && n <= 64;
}

/* Sets res->reason. Best effort on purpose: when the copy fails the outcome
 * class still stands (it is what the core acts on), so callers return it. */
static int result_outcome(struct rewards *rw, struct perkhub_result *res, int outcome,
                          const char *reason)
{
    if (!res->reason)
        res->reason = rw->host->mem_strdup(rw->host, reason);
    return outcome;
}

/* Every answer we do not understand ends here: AMBIGUOUS, with one warn line
 * naming the operation, the HTTP status and why, never the body (it may hold
 * codes). */
static int result_unclear(struct rewards *rw, const struct perkhub_op *op, int http_status,
                          const char *reason, struct perkhub_result *res)
{
    rw->host->log_msg(rw->host, PERKHUB_LOG_WARN, "response.unclear",
                      "op=%s http_status=%d reason=%s", op_kind_name(op->kind), http_status,
                      reason);
    return result_outcome(rw, res, PERKHUB_AMBIGUOUS, reason);
}

/* Parses a body that must be a JSON object; NULL otherwise. Duplicate keys are
 * refused: {"status":"failed","status":"completed"} has no single meaning.
 * jansson's error text quotes the body, so it is never logged. */
static json_t *body_load_object(const char *body, size_t len)
{
    json_error_t err;
    json_t *root = body ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &err) : NULL;
    if (root && !json_is_object(root)) {
        json_decref(root);
        return NULL;
    }
    return root;
}

/* The flat reader. Every recharge brings two bodies (the order's answer and the
 * webhook), both small objects of plain members, and jansson's tree costs
 * more than everything else the plugin does with them (bench/README.md, "The
 * recharge path's CPU"). This reader takes only the plainest JSON: an object of
 * at most RW_FLAT_MEMBERS members, each a string of printable ASCII without
 * escapes, an integer of at most 18 digits, null, true, false, or (once per
 * body) such an object, keys distinct. Anything else - an array, an escape, a
 * fraction, a byte >= 0x7f, a syntax error - it declines, and jansson reads
 * the body as before, so jansson stays the judge of every body the flat
 * reader does not take; unit_test_rewards_flat checks that what it takes
 * jansson reads alike. */
#define RW_FLAT_MEMBERS 16
#define RW_FLAT_OBJECTS 2    /* the root and one object in it ("order" of a webhook) */
#define RW_FLAT_TEXT    1024 /* the strings, NUL-terminated; a longer body is declined */

enum { RW_NULL = 1, RW_TRUE, RW_FALSE, RW_INT, RW_STR, RW_OBJ };

struct rw_member {
    const char *key; /* in rw_flat.text */
    int type;        /* RW_* */
    const char *str; /* RW_STR: in rw_flat.text */
    int64_t num;     /* RW_INT */
    size_t obj;      /* RW_OBJ: index in rw_flat.objs */
};

struct rw_fobj {
    struct rw_member m[RW_FLAT_MEMBERS];
    size_t n;
};

struct rw_flat {
    struct rw_fobj objs[RW_FLAT_OBJECTS];
    size_t nobjs;
    char text[RW_FLAT_TEXT]; /* may hold an account: wiped by doc_free */
    size_t used;
};

struct rw_scan {
    const char *p, *end;
    struct rw_flat *f;
};

static void scan_ws(struct rw_scan *sc)
{
    while (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\t' || *sc->p == '\n' || *sc->p == '\r'))
        sc->p++;
}

/* A string at sc->p (its opening quote) copied into the text; NULL to decline. */
static const char *scan_string(struct rw_scan *sc)
{
    const char *start = ++sc->p;
    while (sc->p < sc->end && *sc->p != '"') {
        if (*sc->p < 0x20 || *sc->p >= 0x7f || *sc->p == '\\')
            return NULL; /* a control byte, UTF-8 or an escape: jansson's to read */
        sc->p++;
    }
    size_t n = (size_t)(sc->p - start);
    if (sc->p == sc->end || n + 1 > RW_FLAT_TEXT - sc->f->used)
        return NULL;
    sc->p++;
    char *out = sc->f->text + sc->f->used;
    memcpy(out, start, n);
    out[n] = '\0';
    sc->f->used += n + 1;
    return out;
}

/* An integer (JSON's grammar: no leading zero, no '+'); 0, or -1 to decline. */
static int scan_int(struct rw_scan *sc, int64_t *out)
{
    int neg = sc->p < sc->end && *sc->p == '-';
    sc->p += neg;
    const char *start = sc->p;
    int64_t v = 0;
    for (; sc->p < sc->end && *sc->p >= '0' && *sc->p <= '9'; sc->p++)
        if (sc->p - start < 18) /* a 19th digit could overflow: declined below */
            v = v * 10 + (*sc->p - '0');
    size_t n = (size_t)(sc->p - start);
    if (n == 0 || n > 18 || (n > 1 && *start == '0'))
        return -1;
    if (sc->p < sc->end && (*sc->p == '.' || *sc->p == 'e' || *sc->p == 'E'))
        return -1; /* a real: jansson's */
    *out = neg ? -v : v;
    return 0;
}

static int scan_word(struct rw_scan *sc, const char *w, size_t n)
{
    if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, w, n) != 0)
        return -1;
    sc->p += n;
    return 0;
}

/* An object at sc->p into f->objs[*idx]; 0, or -1 to decline. */
static int scan_object(struct rw_scan *sc, size_t *idx)
{
    struct rw_flat *f = sc->f;
    if (f->nobjs == RW_FLAT_OBJECTS || sc->p == sc->end || *sc->p != '{')
        return -1;
    *idx = f->nobjs++;
    sc->p++;
    scan_ws(sc);
    if (sc->p < sc->end && *sc->p == '}') {
        sc->p++;
        return 0;
    }
    for (;;) {
        struct rw_fobj *o = &f->objs[*idx];
        if (o->n == RW_FLAT_MEMBERS || sc->p == sc->end || *sc->p != '"')
            return -1;
        struct rw_member *m = &o->m[o->n];
        if (!(m->key = scan_string(sc)))
            return -1;
        for (size_t i = 0; i < o->n; i++)
            if (strcmp(o->m[i].key, m->key) == 0)
                return -1; /* a duplicate: jansson refuses the body */
        scan_ws(sc);
        if (sc->p == sc->end || *sc->p++ != ':')
            return -1;
        scan_ws(sc);
        if (sc->p == sc->end)
            return -1;
        int st = 0;
        switch (*sc->p) {
        case '"':
            m->type = RW_STR;
            st = (m->str = scan_string(sc)) ? 0 : -1;
            break;
        case '{':
            m->type = RW_OBJ;
            st = *idx == 0 ? scan_object(sc, &m->obj) : -1;
            break;
        case 'n':
            m->type = RW_NULL;
            st = scan_word(sc, "null", 4);
            break;
        case 't':
            m->type = RW_TRUE;
            st = scan_word(sc, "true", 4);
            break;
        case 'f':
            m->type = RW_FALSE;
            st = scan_word(sc, "false", 5);
            break;
        default:
            m->type = RW_INT;
            st = scan_int(sc, &m->num);
        }
        if (st)
            return -1;
        o->n++;
        scan_ws(sc);
        if (sc->p == sc->end)
            return -1;
        if (*sc->p == '}') {
            sc->p++;
            return 0;
        }
        if (*sc->p++ != ',')
            return -1;
        scan_ws(sc);
    }
}

/* The whole body as one flat object; 0, or -1 when the flat reader declines
 * (f is then to be ignored, its text still wiped). */
static int flat_read(const char *body, size_t len, struct rw_flat *f)
{
    f->nobjs = 0;
    f->used = 0;
    for (size_t i = 0; i < RW_FLAT_OBJECTS; i++)
        f->objs[i].n = 0;
    if (!body)
        return -1;
    struct rw_scan sc = {.p = body, .end = body + len, .f = f};
    size_t root;
    scan_ws(&sc);
    if (scan_object(&sc, &root))
        return -1;
    scan_ws(&sc);
    return sc.p == sc.end ? 0 : -1;
}

/* An object of either reader: a jansson object, or one of the flat reader's. */
struct rw_obj {
    const json_t *json;
    const struct rw_flat *flat;
    const struct rw_fobj *fo; /* NULL with flat NULL */
};

/* A body read by the flat reader, else by jansson (doc_load); doc_free. */
struct rw_doc {
    json_t *json;
    struct rw_flat flat;
};

static struct rw_obj obj_json(const json_t *j)
{
    return (struct rw_obj){.json = json_is_object(j) ? j : NULL};
}

static int obj_ok(struct rw_obj o)
{
    return o.json || o.fo;
}

/* The root object of body; obj_ok false when it is not a JSON object. */
static struct rw_obj doc_load(struct rw_doc *d, const char *body, size_t len)
{
    d->json = NULL;
    if (flat_read(body, len, &d->flat) == 0)
        return (struct rw_obj){.flat = &d->flat, .fo = &d->flat.objs[0]};
    d->json = body_load_object(body, len);
    return obj_json(d->json);
}

static void doc_free(struct rw_doc *d)
{
    json_decref(d->json);
    explicit_bzero(d->flat.text, d->flat.used);
}

static const struct rw_member *flat_get(struct rw_obj o, const char *key)
{
    for (size_t i = 0; o.fo && i < o.fo->n; i++)
        if (strcmp(o.fo->m[i].key, key) == 0)
            return &o.fo->m[i];
    return NULL;
}

/* Whether key is absent or null. */
static int field_absent(struct rw_obj o, const char *key)
{
    if (!o.fo) {
        const json_t *v = json_object_get(o.json, key);
        return !v || json_is_null(v);
    }
    const struct rw_member *m = flat_get(o, key);
    return !m || m->type == RW_NULL;
}

/* The object at key; obj_ok false when absent or not an object. */
static struct rw_obj field_obj(struct rw_obj o, const char *key)
{
    if (!o.fo)
        return obj_json(json_object_get(o.json, key));
    const struct rw_member *m = flat_get(o, key);
    return m && m->type == RW_OBJ ? (struct rw_obj){.flat = o.flat, .fo = &o.flat->objs[m->obj]}
                                  : (struct rw_obj){0};
}

/* The non-empty string at key, or NULL (absent, null, another type, ""). */
static const char *field_str(struct rw_obj o, const char *key)
{
    const char *s;
    if (o.fo) {
        const struct rw_member *m = flat_get(o, key);
        s = m && m->type == RW_STR ? m->str : NULL;
    } else {
        s = json_string_value(json_object_get(o.json, key));
    }
    return s && *s ? s : NULL;
}

/* An integer >= 0 at key into *out. Absent or null gives -1 ("unknown") when
 * optional. Returns 0, or -1 for a missing required value, another type, a
 * negative number. */
static int field_count(struct rw_obj o, const char *key, int optional, int64_t *out)
{
    if (field_absent(o, key)) {
        *out = -1;
        return optional ? 0 : -1;
    }
    int64_t v;
    if (o.fo) {
        const struct rw_member *m = flat_get(o, key);
        if (m->type != RW_INT)
            return -1;
        v = m->num;
    } else {
        const json_t *j = json_object_get(o.json, key);
        if (!json_is_integer(j))
            return -1;
        v = json_integer_value(j);
    }
    if (v < 0)
        return -1;
    *out = v;
    return 0;
}

/* The "error" code of an error body ({"error":"out_of_stock",...}), when it is
 * a snake_case word; NULL otherwise. Borrowed from root. */
static const char *body_error_code(struct rw_obj root)
{
    const char *code = field_str(root, "error");
    return is_snake_word(code) ? code : NULL;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (Howard
 * Hinnant's days_from_civil): pure arithmetic, no TZ, no libc time state. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Reads exactly n digits at *p into *v and advances *p. Returns 0, or -1. */
static int read_digits(const char **p, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (**p < '0' || **p > '9')
            return -1;
        *v = *v * 10 + (**p - '0');
    }
    return 0;
}

/* An RFC 3339 date-time ("2027-12-31T15:59:59Z", "...59.5+08:00") as ms since
 * the epoch. Fractions beyond milliseconds are dropped. Returns 0, or -1 for
 * anything that is not one. */
static int rfc3339_to_ms(const char *s, int64_t *out)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec, ms = 0, oh = 0, om = 0, sign = 0;
    const char *p = s;
    if (read_digits(&p, 4, &y) || *p++ != '-' || read_digits(&p, 2, &mo) || *p++ != '-' ||
        read_digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
        return -1;
    p++;
    if (read_digits(&p, 2, &h) || *p++ != ':' || read_digits(&p, 2, &mi) || *p++ != ':' ||
        read_digits(&p, 2, &sec))
        return -1;
    if (*p == '.') {
        int scale = 100;
        if (*++p < '0' || *p > '9')
            return -1;
        for (; *p >= '0' && *p <= '9'; p++, scale /= 10)
            ms += (*p - '0') * scale;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p++ == '+' ? 1 : -1;
        if (read_digits(&p, 2, &oh) || *p++ != ':' || read_digits(&p, 2, &om) || oh > 23 || om > 59)
            return -1;
    } else {
        return -1;
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60)
        return -1;
    if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
        return -1;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    secs -= sign * (oh * 3600 + om * 60);
    *out = secs * 1000 + ms;
    return 0;
}

/* ===================== (4) BUILD_REQUEST ================================= */

/* Appends one header line; the core frees it with the request. */
static int request_header(const struct perkhub_host *host, struct perkhub_request *req, char *line)
{
    if (!line)
        return PERKHUB_ERR_NOMEM;
    if (req->nheaders == PERKHUB_MAX_HEADERS) {
        host->mem_free(host, line);
        return PERKHUB_ERR_INTERNAL;
    }
    req->headers[req->nheaders++] = line;
    return PERKHUB_OK;
}

/* Method, URL (taken over: NULL means out of memory) and the headers every
 * request carries. On failure what is already in req is the core's to free. */
static int request_start(struct rewards *rw, struct perkhub_request *req, const char *method,
                         char *url)
{
    const struct perkhub_host *host = rw->host;
    if (!url)
        return PERKHUB_ERR_NOMEM;
    req->method = method;
    req->url = url;
    int st = request_header(host, req, host->mem_strdup(host, rw->auth_header));
    if (st == PERKHUB_OK)
        st = request_header(host, req, host->mem_strdup(host, "Accept: application/json"));
    return st;
}

/* A GET of "<base_url><path><escaped arg>"; arg may be NULL. */
static int build_get(struct rewards *rw, struct perkhub_request *req, const char *path,
                     const char *arg)
{
    const struct perkhub_host *host = rw->host;
    char *escaped = arg ? host->url_encode(host, arg) : NULL;
    if (arg && !escaped)
        return PERKHUB_ERR_NOMEM;
    char *url = str_printf(host, "%s%s%s", rw->base_url, path, escaped ? escaped : "");
    host->mem_free(host, escaped);
    return request_start(rw, req, "GET", url);
}

/* A recharge account goes into the body as a JSON string. We refuse what no
 * account looks like (empty, control characters, absurd length) before
 * anything is sent: DEFINITE_FAILURE, and the core may try another supplier. */
static int is_plausible_account(const char *account)
{
    size_t n = account ? strlen(account) : 0;
    return n >= 1 && n <= 128 && is_header_safe(account, 0);
}

/* A JSON string as jansson's JSON_COMPACT dump writes it (quotes, '\\', the
 * short escapes, other control characters as \u00XX, everything else as is),
 * into out when out is not NULL. Returns its length, or 0 when s is not valid
 * UTF-8 (jansson refuses such a string too). Written by hand because the order
 * body is built once per recharge and jansson's tree, dump and allocations cost
 * more than the whole body (bench/README.md, "The recharge path's CPU"). */
static size_t json_str_put(char *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
#define PUT(c)                                                                                     \
    do {                                                                                           \
        if (out)                                                                                   \
            out[n] = (c);                                                                          \
        n++;                                                                                       \
    } while (0)
    PUT('"');
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        unsigned char c = *p;
        if (c >= 0x80) { /* one UTF-8 sequence, checked as jansson's utf8_check does */
            size_t len = c >= 0xc2 && c <= 0xdf   ? 2
                         : c >= 0xe0 && c <= 0xef ? 3
                         : c >= 0xf0 && c <= 0xf4 ? 4
                                                  : 0;
            uint32_t cp = len == 2 ? c & 0x1fu : len == 3 ? c & 0x0fu : c & 0x07u;
            if (!len)
                return 0;
            for (size_t i = 1; i < len; i++) {
                if ((p[i] & 0xc0) != 0x80)
                    return 0;
                cp = cp << 6 | (p[i] & 0x3fu);
            }
            if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
                (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
                return 0; /* overlong, a surrogate, beyond Unicode */
            for (size_t i = 0; i < len; i++)
                PUT((char)p[i]);
            p += len;
            continue;
        }
        const char *esc = c == '"'    ? "\\\""
                          : c == '\\' ? "\\\\"
                          : c == '\b' ? "\\b"
                          : c == '\f' ? "\\f"
                          : c == '\n' ? "\\n"
                          : c == '\r' ? "\\r"
                          : c == '\t' ? "\\t"
                                      : NULL;
        if (esc) {
            PUT(esc[0]);
            PUT(esc[1]);
        } else if (c < 0x20) {
            const char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            for (size_t i = 0; i < sizeof u; i++)
                PUT(u[i]);
        } else {
            PUT((char)c);
        }
        p++;
    }
    PUT('"');
#undef PUT
    return n;
}

/* The body of POST /v1/orders, byte for byte what jansson printed of
 * {"external_ref_id","utid","quantity","max_unit_cost","recipient":{"account"},
 * "notify_url"} (test_rewards.c compares them), written straight into host
 * memory so the recharge account never sits in a block we cannot wipe. Two
 * passes: the first (out NULL) measures. Returns the length, 0 when a string
 * is not UTF-8. */
static size_t order_body_put(char *out, const struct perkhub_op *op)
{
    char num[48];
    size_t n = 0, k;
#define LIT(lit)                                                                                   \
    do {                                                                                           \
        if (out)                                                                                   \
            memcpy(out + n, lit, sizeof lit - 1);                                                  \
        n += sizeof lit - 1;                                                                       \
    } while (0)
#define STR(s)                                                                                     \
    do {                                                                                           \
        if (!(k = json_str_put(out ? out + n : NULL, s)))                                          \
            return 0;                                                                              \
        n += k;                                                                                    \
    } while (0)
#define NUM(v)                                                                                     \
    do {                                                                                           \
        k = (size_t)snprintf(num, sizeof num, "%lld", (long long)(v));                             \
        if (out)                                                                                   \
            memcpy(out + n, num, k);                                                               \
        n += k;                                                                                    \
    } while (0)
    LIT("{\"external_ref_id\":");
    STR(op->order_ref);
    LIT(",\"utid\":");
    STR(op->product_id);
    LIT(",\"quantity\":");
    NUM(op->quantity);
    /* A price ceiling makes the supplier refuse (422 price_above_max) rather
     * than charge more than our offer says. */
    if (op->unit_price > 0) {
        LIT(",\"max_unit_cost\":");
        NUM(op->unit_price);
    }
    if (op->kind == PERKHUB_OP_RECHARGE) {
        LIT(",\"recipient\":{\"account\":");
        STR(op->account);
        LIT("}");
    }
    if (op->callback_url && *op->callback_url) {
        LIT(",\"notify_url\":");
        STR(op->callback_url);
    }
    LIT("}");
#undef LIT
#undef STR
#undef NUM
    return n;
}

/* CARD_ORDER and RECHARGE: POST /v1/orders. external_ref_id is what makes a
 * resend harmless upstream (the supplier answers 200 with the existing order),
 * though the core never resends an order anyway. */
static int build_order(struct rewards *rw, const struct perkhub_op *op, struct perkhub_request *req)
{
    const struct perkhub_host *host = rw->host;
    if (!is_order_ref(op->order_ref) || !op->product_id || !*op->product_id || op->quantity == 0)
        return PERKHUB_ERR_INTERNAL; /* the core's duty; never guess an order */
    if (op->kind == PERKHUB_OP_RECHARGE && !is_plausible_account(op->account))
        return PERKHUB_DEFINITE_FAILURE;
    /* every string is checked ASCII (order_ref, account) or comes from our own
     * config (utid, notify_url: UTF-8 YAML), so this fails only on a core bug */
    size_t n = order_body_put(NULL, op);
    if (n == 0)
        return PERKHUB_ERR_INTERNAL;
    size_t blen = strlen(rw->base_url);
    char *url = host->mem_alloc(host, blen + sizeof "/v1/orders");
    if (url) {
        memcpy(url, rw->base_url, blen);
        memcpy(url + blen, "/v1/orders", sizeof "/v1/orders");
    }
    int st = request_start(rw, req, "POST", url);
    if (st == PERKHUB_OK)
        st = request_header(host, req, host->mem_strdup(host, "Content-Type: application/json"));
    if (st == PERKHUB_OK && !(req->body = host->mem_alloc(host, n + 1)))
        st = PERKHUB_ERR_NOMEM;
    if (st == PERKHUB_OK)
        req->body_len = order_body_put(req->body, op);
    assert(st != PERKHUB_OK || req->body_len == n);
    return st;
}

/* A query must say what it looks for: a card order's answer without its codes
 * would read as "succeeded, nothing to deliver". */
static int is_order_kind(int kind)
{
    return kind == PERKHUB_OP_CARD_ORDER || kind == PERKHUB_OP_RECHARGE;
}

/* ORDER_QUERY: by our reference (always known: it is how we find an order
 * whose creation answer we never saw), else by the supplier's id. */
static int build_query(struct rewards *rw, const struct perkhub_op *op, struct perkhub_request *req)
{
    if (!is_order_kind(op->order_kind))
        return PERKHUB_ERR_INTERNAL;
    if (op->order_ref && *op->order_ref)
        return build_get(rw, req, "/v1/orders?external_ref_id=", op->order_ref);
    if (op->supplier_order_id && *op->supplier_order_id)
        return build_get(rw, req, "/v1/orders/", op->supplier_order_id);
    return PERKHUB_ERR_INTERNAL;
}

static int rewards_build_request(void *instance, const struct perkhub_op *op,
                                 struct perkhub_request *req)
{
    struct rewards *rw = instance;
    switch (op->kind) {
    case PERKHUB_OP_CATALOG:
        return build_get(rw, req, "/v1/catalog", NULL);
    case PERKHUB_OP_STOCK_CHECK:
        if (!op->product_id || !*op->product_id)
            return PERKHUB_ERR_INTERNAL;
        /* url_encode escapes '/', so a utid stays one path segment. */
        return build_get(rw, req, "/v1/catalog/", op->product_id);
    case PERKHUB_OP_CARD_ORDER:
    case PERKHUB_OP_RECHARGE:
        return build_order(rw, op, req);
    case PERKHUB_OP_ORDER_QUERY:
        return build_query(rw, op, req);
    case PERKHUB_OP_BALANCE:
        return build_get(rw, req, "/v1/account", NULL);
    default:
        return PERKHUB_ERR_UNSUPPORTED;
    }
}

/* ===================== (5) PARSE_RESPONSE ================================ */

/* The order object of docs/protocols/rewards.md, read but not yet trusted.
 * Strings are borrowed from the JSON tree. */
struct rw_order {
    const char *order_id;        /* the supplier's id */
    const char *external_ref_id; /* our reference, echoed back */
    const char *utid;
    int state;          /* PERKHUB_STATE_PROCESSING / _SUCCEEDED / _FAILED */
    const char *reason; /* failed orders: the supplier's reason, or NULL */
    int64_t quantity;
    int64_t amount;  /* amount_charged, fen; -1 when null or absent */
    json_t *rewards; /* the codes; NULL when absent or null */
};

/* Reads an order object. Returns 0, or -1 when a required field is missing or
 * mistyped, or the status is one we do not know (we never guess a state). */
static int order_read(struct rw_obj obj, struct rw_order *o)
{
    memset(o, 0, sizeof *o);
    o->order_id = field_str(obj, "order_id");
    o->external_ref_id = field_str(obj, "external_ref_id");
    o->utid = field_str(obj, "utid");
    const char *status = field_str(obj, "status");
    if (!o->order_id || !o->external_ref_id || !o->utid || !status)
        return -1;
    if (field_count(obj, "quantity", 0, &o->quantity) || o->quantity == 0 ||
        field_count(obj, "amount_charged", 1, &o->amount))
        return -1;
    if (strcmp(status, "pending") == 0)
        o->state = PERKHUB_STATE_PROCESSING;
    else if (strcmp(status, "completed") == 0)
        o->state = PERKHUB_STATE_SUCCEEDED;
    else if (strcmp(status, "failed") == 0)
        o->state = PERKHUB_STATE_FAILED;
    else
        return -1;
    o->reason = field_str(obj, "reason");
    if (field_absent(obj, "rewards"))
        return 0;
    /* the flat reader takes no array: present and not null is no list there */
    o->rewards = obj.json ? json_object_get(obj.json, "rewards") : NULL;
    return json_is_array(o->rewards) ? 0 : -1;
}

/* One reward: {"code":..., "card_number":...|null, "expires_at":...|null}.
 * Returns 0 with the strings borrowed, or -1. */
static int reward_read(const json_t *r, const char **code, const char **card_no,
                       int64_t *expires_at_ms)
{
    const json_t *card = json_object_get(r, "card_number");
    const json_t *exp = json_object_get(r, "expires_at");
    *code = field_str(obj_json(r), "code");
    *card_no = field_str(obj_json(r), "card_number");
    *expires_at_ms = 0; /* never or unknown */
    if (!*code || (card && !json_is_null(card) && !*card_no))
        return -1;
    if (exp && !json_is_null(exp))
        return json_is_string(exp) ? rfc3339_to_ms(json_string_value(exp), expires_at_ms) : -1;
    return 0;
}

/* Copies the codes of a completed card order into res: exactly `want` of
 * them, all well-formed, or none (AMBIGUOUS: the order happened, but we cannot
 * tell which codes we own; a query will look again). Validates everything
 * before copying anything, so no half-filled list ever leaves the plugin. */
static int result_codes(struct rewards *rw, const json_t *rewards, int64_t want,
                        struct perkhub_result *res)
{
    const struct perkhub_host *host = rw->host;
    const char *code, *card_no;
    int64_t exp;
    size_t n = json_array_size(rewards);
    if (!json_is_array(rewards) || want <= 0 || n != (size_t)want)
        return PERKHUB_AMBIGUOUS;
    for (size_t i = 0; i < n; i++)
        if (reward_read(json_array_get(rewards, i), &code, &card_no, &exp))
            return PERKHUB_AMBIGUOUS;
    res->codes = host->mem_alloc(host, n * sizeof *res->codes);
    if (!res->codes)
        return PERKHUB_ERR_NOMEM;
    res->ncodes = n; /* set now: on failure the core frees (and wipes) what we copied */
    for (size_t i = 0; i < n; i++) {
        reward_read(json_array_get(rewards, i), &code, &card_no, &exp);
        res->codes[i].code = host->mem_strdup(host, code);
        res->codes[i].card_no = card_no ? host->mem_strdup(host, card_no) : NULL;
        res->codes[i].expires_at_ms = exp;
        if (!res->codes[i].code || (card_no && !res->codes[i].card_no))
            return PERKHUB_ERR_NOMEM;
    }
    return PERKHUB_OK;
}

/* The fields every order answer (and webhook) carries, copied into res.
 * Returns PERKHUB_OK or PERKHUB_ERR_NOMEM. */
static int result_order_fields(struct rewards *rw, const struct rw_order *o,
                               struct perkhub_result *res)
{
    const struct perkhub_host *host = rw->host;
    res->state = o->state;
    res->quantity = o->quantity;
    res->amount = o->amount;
    res->order_ref = host->mem_strdup(host, o->external_ref_id);
    res->supplier_order_id = host->mem_strdup(host, o->order_id);
    res->product_id = host->mem_strdup(host, o->utid);
    if (!res->order_ref || !res->supplier_order_id || !res->product_id)
        return PERKHUB_ERR_NOMEM;
    if (o->state == PERKHUB_STATE_FAILED) {
        res->reason =
            host->mem_strdup(host, is_snake_word(o->reason) ? o->reason : "supplier_failed");
        if (!res->reason)
            return PERKHUB_ERR_NOMEM;
    }
    return PERKHUB_OK;
}

/* res from an order we have checked is ours. want_codes: how many codes a
 * completed order must carry (0: a recharge, no codes). */
static int result_order(struct rewards *rw, const struct perkhub_op *op, int http_status,
                        const struct rw_order *o, int64_t want_codes, struct perkhub_result *res)
{
    int st = result_order_fields(rw, o, res);
    if (st != PERKHUB_OK || o->state != PERKHUB_STATE_SUCCEEDED || want_codes == 0)
        return st;
    /* "rewards present (and complete) only when completed": the order's own
     * quantity must agree too, or some of the codes are not in this answer. */
    st = want_codes == o->quantity ? result_codes(rw, o->rewards, want_codes, res)
                                   : PERKHUB_AMBIGUOUS;
    if (st != PERKHUB_AMBIGUOUS)
        return st;
    res->state = PERKHUB_STATE_NONE; /* no half-truths next to an AMBIGUOUS */
    return result_unclear(rw, op, http_status, "bad_rewards", res);
}

/* A refusal (non-2xx) of an operation. Only statuses the protocol lists as
 * refusals, with the protocol's error body, count as definite: a 404 page
 * from a proxy in front of a wrong base_url proves nothing about an order. */
static int result_refused(struct rewards *rw, const struct perkhub_op *op,
                          const struct perkhub_response *resp, struct perkhub_result *res)
{
    int status = resp->http_status;
    switch (status) {
    case 429:
        return result_outcome(rw, res, PERKHUB_RETRYABLE, "rate_limited");
    case 401:
    case 403:
        rw->host->log_msg(rw->host, PERKHUB_LOG_ERROR, "auth.refused", "op=%s http_status=%d",
                          op_kind_name(op->kind), status);
        return result_outcome(rw, res, PERKHUB_DEFINITE_FAILURE, "unauthorized");
    case 400:
    case 402:
    case 404:
    case 409:
    case 422: {
        struct rw_doc doc;
        const char *code = body_error_code(doc_load(&doc, resp->body, resp->body_len));
        int st = code ? result_outcome(rw, res, PERKHUB_DEFINITE_FAILURE, code)
                      : result_unclear(rw, op, status, "bad_error_body", res);
        doc_free(&doc);
        return st;
    }
    default:
        return result_unclear(rw, op, status, "unexpected_status", res);
    }
}

/* CARD_ORDER and RECHARGE. 201 (created) and 200 (an order with our
 * external_ref_id already existed: the replay of an earlier send) mean the
 * same: here is the order, as it stands. */
static int parse_order(struct rewards *rw, const struct perkhub_op *op,
                       const struct perkhub_response *resp, struct perkhub_result *res)
{
    if (resp->http_status != 200 && resp->http_status != 201)
        return result_refused(rw, op, resp, res);
    struct rw_doc doc;
    struct rw_obj root = doc_load(&doc, resp->body, resp->body_len);
    struct rw_order o;
    int st;
    if (!obj_ok(root) || order_read(root, &o))
        st = result_unclear(rw, op, resp->http_status, "bad_response", res);
    else if (!op->order_ref || strcmp(o.external_ref_id, op->order_ref) != 0)
        /* Somebody else's order (a supplier bug, a misrouted cache): taking its
         * codes or its failure as ours would be wrong either way. */
        st = result_unclear(rw, op, resp->http_status, "ref_mismatch", res);
    else
        st = result_order(rw, op, resp->http_status, &o,
                          op->kind == PERKHUB_OP_CARD_ORDER ? op->quantity : 0, res);
    doc_free(&doc);
    /* A failed order did not and will not happen: only now may the core try
     * another supplier. */
    if (st == PERKHUB_OK && res->state == PERKHUB_STATE_FAILED)
        st = PERKHUB_DEFINITE_FAILURE;
    return st;
}

/* ORDER_QUERY. Any return but PERKHUB_OK means "the query failed, ask again",
 * so everything we do not understand is simply AMBIGUOUS. */
static int parse_query(struct rewards *rw, const struct perkhub_op *op,
                       const struct perkhub_response *resp, struct perkhub_result *res)
{
    int status = resp->http_status;
    struct rw_order o;
    int by_ref = op->order_ref && *op->order_ref;
    int st;
    if (!is_order_kind(op->order_kind) || (!by_ref && !op->supplier_order_id))
        return PERKHUB_ERR_INTERNAL;
    struct rw_doc doc;
    struct rw_obj root = doc_load(&doc, resp->body, resp->body_len);
    const char *error = body_error_code(root);
    if (status == 404 && error && strcmp(error, "not_found") == 0) {
        /* The core keeps the attempt unknown within processing_window_s. */
        res->state = PERKHUB_STATE_NOT_FOUND;
        st = PERKHUB_OK;
    } else if (status != 200) {
        st = result_unclear(rw, op, status,
                            status == 429                    ? "rate_limited"
                            : status == 401 || status == 403 ? "unauthorized"
                                                             : "unexpected_status",
                            res);
    } else if (!obj_ok(root) || order_read(root, &o)) {
        st = result_unclear(rw, op, status, "bad_response", res);
    } else if (by_ref ? strcmp(o.external_ref_id, op->order_ref) != 0
                      : strcmp(o.order_id, op->supplier_order_id) != 0) {
        st = result_unclear(rw, op, status, "ref_mismatch", res);
    } else {
        int64_t want = 0;
        if (op->order_kind == PERKHUB_OP_CARD_ORDER)
            want = op->quantity ? (int64_t)op->quantity : o.quantity;
        st = result_order(rw, op, status, &o, want, res);
    }
    doc_free(&doc);
    return st;
}

/* A catalog item, read but not trusted. kind 0: a type we do not sell. */
struct rw_item {
    const char *utid, *name;
    int kind;
    int64_t value, cost, stock;
    int on_sale;
};

/* Returns 0, or -1 when a required field is missing or mistyped. */
static int item_read(const json_t *json, struct rw_item *it)
{
    struct rw_obj obj = obj_json(json);
    memset(it, 0, sizeof *it);
    it->utid = field_str(obj, "utid");
    it->name = field_str(obj, "name");
    const char *type = field_str(obj, "type");
    const char *status = field_str(obj, "status");
    if (!it->utid || !type || !status || field_count(obj, "value", 1, &it->value) ||
        field_count(obj, "cost", 1, &it->cost) || field_count(obj, "stock", 1, &it->stock))
        return -1; /* stock null stays -1: unknown or unlimited */
    if (strcmp(type, "code") == 0)
        it->kind = PERKHUB_OP_CARD_ORDER;
    else if (strcmp(type, "recharge") == 0)
        it->kind = PERKHUB_OP_RECHARGE;
    it->on_sale = strcmp(status, "active") == 0; /* anything else: not orderable */
    return 0;
}

static int item_to_result(const struct perkhub_host *host, const struct rw_item *it,
                          struct perkhub_item *out)
{
    out->product_id = host->mem_strdup(host, it->utid);
    out->name = it->name ? host->mem_strdup(host, it->name) : NULL;
    out->kind = it->kind;
    out->face_value = it->value;
    out->price = it->cost;
    out->stock = it->stock;
    out->on_sale = it->on_sale;
    return out->product_id && (out->name || !it->name) ? PERKHUB_OK : PERKHUB_ERR_NOMEM;
}

/* CATALOG. A malformed item fails the whole answer: a sync acting on half a
 * catalog could delist what is still sold. An item of a type we do not know is
 * skipped (and counted in a log line): the platform may sell more than we buy. */
static int parse_catalog(struct rewards *rw, const struct perkhub_op *op,
                         const struct perkhub_response *resp, struct perkhub_result *res)
{
    const struct perkhub_host *host = rw->host;
    if (resp->http_status != 200)
        return result_refused(rw, op, resp, res);
    json_t *root = body_load_object(resp->body, resp->body_len);
    json_t *items = json_object_get(root, "items");
    struct rw_item it;
    size_t n = json_array_size(items), known = 0;
    int st = json_is_array(items) ? PERKHUB_OK : PERKHUB_AMBIGUOUS;
    for (size_t i = 0; st == PERKHUB_OK && i < n; i++) {
        if (item_read(json_array_get(items, i), &it))
            st = PERKHUB_AMBIGUOUS;
        known += it.kind != 0;
    }
    if (st != PERKHUB_OK) {
        json_decref(root);
        return result_unclear(rw, op, resp->http_status, "bad_response", res);
    }
    if (known < n)
        host->log_msg(host, PERKHUB_LOG_INFO, "catalog.skipped", "items=%zu reason=unknown_type",
                      n - known);
    if (known > 0) {
        res->items = host->mem_alloc(host, known * sizeof *res->items);
        st = res->items ? PERKHUB_OK : PERKHUB_ERR_NOMEM;
    }
    for (size_t i = 0; st == PERKHUB_OK && i < n; i++) {
        item_read(json_array_get(items, i), &it);
        if (it.kind != 0)
            st = item_to_result(host, &it, &res->items[res->nitems++]);
    }
    json_decref(root);
    return st;
}

/* STOCK_CHECK. An inactive item reports stock 0: the result has no on_sale
 * field, and the supplier would refuse an order for it anyway. */
static int parse_stock(struct rewards *rw, const struct perkhub_op *op,
                       const struct perkhub_response *resp, struct perkhub_result *res)
{
    if (resp->http_status != 200)
        return result_refused(rw, op, resp, res);
    json_t *root = body_load_object(resp->body, resp->body_len);
    struct rw_item it;
    int st = PERKHUB_OK;
    if (!root || item_read(root, &it))
        st = result_unclear(rw, op, resp->http_status, "bad_response", res);
    else if (!op->product_id || strcmp(it.utid, op->product_id) != 0)
        st = result_unclear(rw, op, resp->http_status, "ref_mismatch", res);
    else {
        res->stock = it.on_sale ? it.stock : 0;
        res->price = it.cost;
    }
    json_decref(root);
    return st;
}

/* BALANCE. Money is fen only if the currency is CNY. */
static int parse_balance(struct rewards *rw, const struct perkhub_op *op,
                         const struct perkhub_response *resp, struct perkhub_result *res)
{
    if (resp->http_status != 200)
        return result_refused(rw, op, resp, res);
    json_t *root = body_load_object(resp->body, resp->body_len);
    json_t *balance = json_object_get(root, "balance");
    const char *currency = field_str(obj_json(root), "currency");
    int st = PERKHUB_OK;
    if (!json_is_integer(balance))
        st = result_unclear(rw, op, resp->http_status, "bad_response", res);
    else if (currency && strcmp(currency, "CNY") != 0)
        st = result_unclear(rw, op, resp->http_status, "bad_currency", res);
    else
        res->balance = json_integer_value(balance);
    json_decref(root);
    return st;
}

static int rewards_parse_response(void *instance, const struct perkhub_op *op,
                                  const struct perkhub_response *resp, struct perkhub_result *res)
{
    struct rewards *rw = instance;
    switch (op->kind) {
    case PERKHUB_OP_CARD_ORDER:
    case PERKHUB_OP_RECHARGE:
        return parse_order(rw, op, resp, res);
    case PERKHUB_OP_ORDER_QUERY:
        return parse_query(rw, op, resp, res);
    case PERKHUB_OP_CATALOG:
        return parse_catalog(rw, op, resp, res);
    case PERKHUB_OP_STOCK_CHECK:
        return parse_stock(rw, op, resp, res);
    case PERKHUB_OP_BALANCE:
        return parse_balance(rw, op, resp, res);
    default:
        return PERKHUB_ERR_UNSUPPORTED;
    }
}

/* ===================== (6) VERIFY_CALLBACK =============================== */

#define RW_MAX_V1 4 /* signatures per header: room for a secret rotation */

/* X-Rewards-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=...] */
struct rw_signature {
    const char *t_text; /* the timestamp exactly as sent: it is what was signed */
    size_t t_len;
    int64_t t;
    uint8_t v1[RW_MAX_V1][32];
    size_t nv1;
};

/* The value of header `name` in "Name: value" lines, without surrounding
 * blanks, as a pointer into the line and a length; NULL when absent. */
static const char *header_value(const struct perkhub_callback *cb, const char *name, size_t *len)
{
    size_t nlen = strlen(name);
    for (size_t i = 0; i < cb->nheaders; i++) {
        const char *h = cb->headers[i];
        if (!h || strncasecmp(h, name, nlen) != 0 || h[nlen] != ':')
            continue;
        const char *v = h + nlen + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t n = strlen(v);
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            n--;
        *len = n;
        return v;
    }
    return NULL;
}

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* One "key=value" element of the header into sig. Returns 0, or -1. Unknown
 * keys are ignored (a future v2 must not break v1 receivers). */
static int signature_element(const char *e, size_t n, struct rw_signature *sig)
{
    if (n > 2 && e[0] == 't' && e[1] == '=') {
        if (sig->t_text || n - 2 > 12) /* 12 digits: beyond year 30000 */
            return -1;
        sig->t_text = e + 2;
        sig->t_len = n - 2;
        sig->t = 0;
        for (size_t i = 2; i < n; i++) {
            if (e[i] < '0' || e[i] > '9')
                return -1;
            sig->t = sig->t * 10 + (e[i] - '0');
        }
        return 0;
    }
    if (n > 3 && strncmp(e, "v1=", 3) == 0) {
        if (n != 3 + 64 || sig->nv1 == RW_MAX_V1)
            return -1;
        for (size_t i = 0; i < 32; i++) {
            int hi = hex_nibble(e[3 + 2 * i]), lo = hex_nibble(e[4 + 2 * i]);
            if (hi < 0 || lo < 0)
                return -1;
            sig->v1[sig->nv1][i] = (uint8_t)(hi << 4 | lo);
        }
        sig->nv1++;
    }
    return 0;
}

/* Parses the signature header. Returns 0, or -1 when it is missing or
 * malformed, or lacks t or v1. */
static int signature_parse(const struct perkhub_callback *cb, struct rw_signature *sig)
{
    size_t len = 0;
    const char *v = header_value(cb, "X-Rewards-Signature", &len);
    memset(sig, 0, sizeof *sig);
    while (v && len > 0) {
        const char *comma = memchr(v, ',', len);
        size_t n = comma ? (size_t)(comma - v) : len;
        size_t skip = 0;
        while (skip < n && v[skip] == ' ')
            skip++;
        if (signature_element(v + skip, n - skip, sig))
            return -1;
        v += comma ? n + 1 : n;
        len -= comma ? n + 1 : n;
    }
    return v && sig->t_text && sig->nv1 > 0 ? 0 : -1;
}

/* HMAC-SHA256(webhook_secret, "<t>." + body) against every v1, in constant
 * time. Returns 1 (one matches), 0 (none), or -1 (out of memory). */
static int signature_matches(struct rewards *rw, const struct rw_signature *sig,
                             const struct perkhub_callback *cb)
{
    const struct perkhub_host *host = rw->host;
    size_t n = sig->t_len + 1 + cb->body_len;
    char *signed_text = host->mem_alloc(host, n + 1);
    if (!signed_text)
        return -1;
    memcpy(signed_text, sig->t_text, sig->t_len);
    signed_text[sig->t_len] = '.';
    if (cb->body_len)
        memcpy(signed_text + sig->t_len + 1, cb->body, cb->body_len);
    uint8_t mac[32];
    host->hmac_sha256(host, rw->webhook_secret, rw->webhook_secret_len, signed_text, n, mac);
    host->mem_free(host, signed_text);
    int match = 0;
    for (size_t i = 0; i < sig->nv1; i++)
        match |= host->ct_equal(host, mac, sig->v1[i], sizeof mac);
    return match;
}

/* A refused callback: the core answers 401/400 and changes nothing; the
 * supplier sends it again later if it was genuine. */
static int callback_refuse(struct rewards *rw, struct perkhub_result *res, const char *reason)
{
    rw->host->log_msg(rw->host, PERKHUB_LOG_WARN, "callback.refused", "reason=%s", reason);
    return result_outcome(rw, res, PERKHUB_DEFINITE_FAILURE, reason);
}

/* The claim of a verified webhook: {"event":"order.completed","order":{...}}.
 * Codes are never taken from a webhook (it carries none, and it is a hint the
 * core confirms with an order query). */
static int callback_claim(struct rewards *rw, const struct perkhub_callback *cb,
                          const struct rw_signature *sig, struct perkhub_result *res)
{
    struct rw_doc doc;
    struct rw_obj root = doc_load(&doc, cb->body, cb->body_len);
    struct rw_obj order = field_obj(root, "order");
    struct rw_order o;
    int st;
    if (!field_str(root, "event") || !obj_ok(order) || order_read(order, &o) ||
        !is_order_ref(o.external_ref_id)) {
        st = callback_refuse(rw, res, "malformed");
    } else {
        st = result_order_fields(rw, &o, res);
        res->timestamp_ms = sig->t * 1000;
        res->reply_body = st == PERKHUB_OK ? rw->host->mem_strdup(rw->host, "ok") : NULL;
        if (st == PERKHUB_OK && !res->reply_body)
            st = PERKHUB_ERR_NOMEM;
    }
    doc_free(&doc);
    return st;
}

/* Signature first, before the body is even parsed; then freshness (a genuine
 * but replayed webhook); only then what it claims. */
static int rewards_verify_callback(void *instance, const struct perkhub_callback *cb,
                                   struct perkhub_result *res)
{
    struct rewards *rw = instance;
    struct rw_signature sig;
    if (signature_parse(cb, &sig))
        return callback_refuse(rw, res, "bad_signature");
    int match = signature_matches(rw, &sig, cb);
    if (match < 0)
        return PERKHUB_ERR_NOMEM;
    if (!match)
        return callback_refuse(rw, res, "bad_signature");
    /* Both directions: a timestamp far in the future is as suspect as an old one. */
    int64_t skew_ms = rw->host->now_ms(rw->host) - sig.t * 1000;
    if (skew_ms > rw->webhook_tolerance_ms || skew_ms < -rw->webhook_tolerance_ms)
        return callback_refuse(rw, res, "stale");
    return callback_claim(rw, cb, &sig, res);
}

/* ===================== (7) OPS, DESCRIPTOR, ENTRY ======================== */

static const struct perkhub_ops rewards_ops = {
    .struct_size = sizeof(struct perkhub_ops),
    .build_request = rewards_build_request,
    .parse_response = rewards_parse_response,
    .verify_callback = rewards_verify_callback,
    .serve_local = NULL, /* a real upstream: the core does the I/O */
};

static const struct perkhub_plugin rewards_plugin = {
    .struct_size = sizeof(struct perkhub_plugin),
    .abi_major = PERKHUB_ABI_MAJOR,
    .abi_minor = 1,    /* needs nothing of 1.2: loads in every perkhubd 1.1 on */
    .name = "rewards", /* the file must be rewards.so */
    .version = "1.0.0",
    .description = "REST rewards API (Tango Card / Tremendous style): bearer or basic auth, "
                   "idempotent external_ref_id, HMAC-signed webhooks.",
    .capabilities = PERKHUB_CAP_CATALOG | PERKHUB_CAP_STOCK_CHECK | PERKHUB_CAP_CARD_ORDER |
                    PERKHUB_CAP_RECHARGE | PERKHUB_CAP_ORDER_QUERY | PERKHUB_CAP_CALLBACK |
                    PERKHUB_CAP_BALANCE,
    .config = rewards_config,
    .init = rewards_init,
    .shutdown = rewards_shutdown,
    .ops = &rewards_ops,
    /* The API answers the order POST only once the order exists, so a query
     * finds it at once; a minute covers a reply lost mid-commit. */
    .processing_window_s = 60,
    .query_delay_ms = 500,
};

/* The one exported symbol. No side effects: it only returns the descriptor. */
PERKHUB_EXPORT const struct perkhub_plugin *perkhub_plugin_entry(void)
{
    return &rewards_plugin;
}
