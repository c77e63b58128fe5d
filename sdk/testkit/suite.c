/*
 * suite.c — the conformance suite of the test kit (perkhub/testkit.h,
 * "THE CONFORMANCE SUITE"). Every check drives the plugin through the kit's
 * own calls, so it sees the core's real host table; each run is followed by
 * the canary scan and the allocator check.
 */
#include <perkhub/testkit.h>

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SUITE_MAX_CANARIES    64
#define SUITE_DAY_MS          INT64_C(86400000)
#define SUITE_LINES_PER_CHECK 5 /* a report lists this many failures of one check */
#define SUITE_CHECKS          8

typedef struct {
    const struct phtk_suite *s;
    phtk *tk;
    char *rep;
    size_t cap, len;
    int failed;
    const char *canary[SUITE_MAX_CANARIES];
    size_t ncanary;
    size_t blocks;   /* the instance's host blocks between calls */
    size_t log_seen; /* bytes of the log already scanned */
    struct {
        char name[16]; /* the check: the report line's text before ':' */
        int failed;
    } checks[SUITE_CHECKS];
} suite;

/* The failures counted so far for the check a line of fmt names (its text
 * before ':'), this one included: so one check failing everywhere does not
 * hide the others. */
static int check_count(suite *su, const char *fmt)
{
    size_t n = strcspn(fmt, ":");
    for (size_t i = 0; i < SUITE_CHECKS; i++) {
        if (!su->checks[i].name[0] && n < sizeof su->checks[i].name)
            memcpy(su->checks[i].name, fmt, n);
        if (strlen(su->checks[i].name) == n && strncmp(su->checks[i].name, fmt, n) == 0)
            return ++su->checks[i].failed;
    }
    return 0;
}

__attribute__((format(printf, 2, 3))) static void fail(suite *su, const char *fmt, ...)
{
    su->failed++;
    if (check_count(su, fmt) > SUITE_LINES_PER_CHECK || !su->rep || su->len + 2 >= su->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(su->rep + su->len, su->cap - su->len - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    su->len += (size_t)n < su->cap - su->len - 1 ? (size_t)n : su->cap - su->len - 2;
    su->rep[su->len++] = '\n';
    su->rep[su->len] = '\0';
}

static const char *st_name(suite *su, int st)
{
    return phtk_host(su->tk)->status_str(st);
}

static const char *state_name(int state)
{
    static const char *const names[] = {"none", "processing", "succeeded", "failed", "not_found"};
    return state >= 0 && state <= 4 ? names[state] : "invalid";
}

static const char *kind_name(int kind)
{
    static const char *const names[] = {"?",          "catalog",   "stock_check",
                                        "card_order", "recharge",  "order_query",
                                        "balance",    "statement", "redemption"};
    return kind >= 1 && kind <= 8 ? names[kind] : "?";
}

static void canary_add(suite *su, const char *v)
{
    if (v && strlen(v) >= 4 && su->ncanary < SUITE_MAX_CANARIES)
        su->canary[su->ncanary++] = v;
}

static void canaries_of_op(suite *su, const struct perkhub_op *op)
{
    canary_add(su, op->account);
    canary_add(su, op->code);
    canary_add(su, op->card_no);
}

/* Every SECRET config value, every account and code of the spec's ops and the
 * spec's own canaries. */
static void canaries_collect(suite *su)
{
    const struct phtk_suite *s = su->s;
    for (const struct perkhub_config_key *k = s->desc->config; k && k->key; k++) {
        if (k->type != PERKHUB_CONF_SECRET)
            continue;
        for (size_t i = 0; s->config && s->config[i] && s->config[i + 1]; i += 2)
            if (strcmp(s->config[i], k->key) == 0)
                canary_add(su, s->config[i + 1]);
    }
    for (size_t i = 0; s->canaries && s->canaries[i]; i++)
        canary_add(su, s->canaries[i]);
    for (size_t i = 0; i < s->norders; i++)
        canaries_of_op(su, &s->orders[i].op);
    for (size_t i = 0; i < s->nvectors; i++)
        canaries_of_op(su, &s->vectors[i].op);
    canaries_of_op(su, &s->query);
}

static int has_canary(suite *su, const char *text, const char *extra)
{
    if (!text)
        return 0;
    for (size_t i = 0; i < su->ncanary; i++)
        if (strstr(text, su->canary[i]))
            return 1;
    return extra && strlen(extra) >= 4 && strstr(text, extra);
}

/* The log written since the last scan: no canary, no bad free. */
static void log_check(suite *su, const char *what)
{
    const char *log = phtk_log(su->tk);
    size_t n = strlen(log);
    const char *fresh = su->log_seen <= n ? log + su->log_seen : "";
    if (has_canary(su, fresh, NULL))
        fail(su, "secrets: %s: a log line quotes a secret (a canary)", what);
    if (strstr(fresh, "plugin.bad_free"))
        fail(su,
             "memory: %s: the core was handed memory not from host->mem_alloc "
             "(plugin.bad_free)",
             what);
    su->log_seen = n;
}

/* After a parse or verify: its strings hold no canary nor a delivered code;
 * then the result goes back and the blocks must be as before. */
static void result_done(suite *su, const char *what, struct perkhub_result *res)
{
    for (size_t i = 0; i < res->ncodes && res->codes; i++) {
        const char *code = res->codes[i].code;
        if (has_canary(su, res->reason, code) || has_canary(su, res->next_state, code) ||
            has_canary(su, phtk_log(su->tk) + su->log_seen, code))
            fail(su, "secrets: %s: a delivered code is quoted in reason, next_state or the log",
                 what);
    }
    if (has_canary(su, res->reason, NULL))
        fail(su, "secrets: %s: the reason quotes a secret (a canary)", what);
    if (has_canary(su, res->next_state, NULL))
        fail(su, "secrets: %s: next_state quotes a secret (a canary)", what);
    phtk_result_clear(su->tk, res);
    log_check(su, what);
    size_t b = phtk_blocks(su->tk);
    if (b != su->blocks) {
        fail(su,
             "memory: %s: the instance holds %zu host blocks after the call and its clear, "
             "%zu before (a leak, or memory kept across calls)",
             what, b, su->blocks);
        su->blocks = b;
    }
}

/* A reply's body (malloc'd, NUL-terminated) or NULL after reporting. */
static char *reply_load(suite *su, const struct phtk_reply *r, const char *what, size_t *len)
{
    if (r->fixture) {
        char *b = phtk_fixture(r->fixture, len);
        if (!b)
            fail(su, "spec: %s: cannot read the fixture %s", what, r->fixture);
        return b;
    }
    if (!r->body) {
        fail(su, "spec: %s: the reply has neither fixture nor body", what);
        return NULL;
    }
    *len = strlen(r->body);
    return strdup(r->body);
}

/* len without trailing white space: cutting only that leaves the reply whole. */
static size_t body_len_trimmed(const char *body, size_t len)
{
    while (len && strchr(" \t\r\n", body[len - 1]))
        len--;
    return len;
}

static int reply_status(const struct phtk_reply *r)
{
    return r->http_status ? r->http_status : 200;
}

/* Parses body at status; *state gets the result's state. */
static int parse(suite *su, const struct perkhub_op *op, int64_t now, int status, const char *body,
                 size_t len, const char *what, int *state)
{
    struct perkhub_result res;
    phtk_set_now(su->tk, now);
    int st = phtk_parse(su->tk, op, status, body, len, &res);
    *state = res.state;
    result_done(su, what, &res);
    return st;
}

/* ---- requests: determinism and vectors ---------------------------------- */

static int request_same(const struct perkhub_request *a, const struct perkhub_request *b)
{
    if (!a->method != !b->method || (a->method && strcmp(a->method, b->method)))
        return 0;
    if (!a->url != !b->url || (a->url && strcmp(a->url, b->url)))
        return 0;
    if (a->nheaders != b->nheaders || a->body_len != b->body_len)
        return 0;
    for (size_t i = 0; i < a->nheaders && i < PERKHUB_MAX_HEADERS; i++)
        if (!a->headers[i] != !b->headers[i] ||
            (a->headers[i] && strcmp(a->headers[i], b->headers[i])))
            return 0;
    return !a->body_len || memcmp(a->body, b->body, a->body_len) == 0;
}

static void request_check(suite *su, const struct perkhub_op *op, int64_t now, const char *what)
{
    struct perkhub_request a, b;
    phtk_set_now(su->tk, now);
    int st = phtk_build(su->tk, op, &a);
    int st2 = phtk_build(su->tk, op, &b);
    if (st != PERKHUB_OK)
        fail(su, "requests: %s: build_request returned %s, want ok", what, st_name(su, st));
    else if (st2 != st || !request_same(&a, &b))
        fail(su, "determinism: %s: the same op at the same clock built two different requests",
             what);
    phtk_request_clear(su->tk, &a);
    phtk_request_clear(su->tk, &b);
    struct perkhub_result none = {0};
    result_done(su, what, &none);
}

static int request_contains(const struct perkhub_request *req, const char *want)
{
    size_t n = strlen(want);
    if (req->url && strstr(req->url, want))
        return 1;
    for (size_t i = 0; i < req->nheaders && i < PERKHUB_MAX_HEADERS; i++)
        if (req->headers[i] && strstr(req->headers[i], want))
            return 1;
    return req->body && n <= req->body_len && memmem(req->body, req->body_len, want, n);
}

int phtk_expect_request_text(phtk *tk, const struct perkhub_op *op, int64_t now_ms,
                             const char *want, char *err, size_t errlen)
{
    struct perkhub_request req;
    phtk_set_now(tk, now_ms);
    int st = phtk_build(tk, op, &req);
    int found = st == PERKHUB_OK && want && request_contains(&req, want);
    phtk_request_clear(tk, &req);
    if (err && errlen) {
        if (st != PERKHUB_OK)
            snprintf(err, errlen, "build_request returned %s, want ok",
                     phtk_host(tk)->status_str(st));
        else if (!found)
            snprintf(err, errlen, "the request does not contain \"%s\" verbatim (case included)",
                     want ? want : "(null)");
        else
            err[0] = '\0';
    }
    return found ? 0 : -1;
}

static void vectors_check(suite *su)
{
    const struct phtk_suite *s = su->s;
    /* a plugin with no operation builds no request; a LOCAL one signs nothing */
    if (s->nvectors == 0 && s->desc->capabilities && !(s->desc->capabilities & PERKHUB_CAP_LOCAL))
        fail(su, "spec: no request signature vector (vectors): a signature the plugin computes "
                 "wrongly would pass");
    for (size_t i = 0; i < s->nvectors; i++) {
        const struct phtk_suite_vector *v = &s->vectors[i];
        char what[64];
        snprintf(what, sizeof what, "vector #%zu (%s)", i, kind_name(v->op.kind));
        struct perkhub_request req;
        phtk_set_now(su->tk, v->now_ms);
        int st = phtk_build(su->tk, &v->op, &req);
        if (st != PERKHUB_OK)
            fail(su, "signatures: %s: build_request returned %s, want ok", what, st_name(su, st));
        else if (!v->want || !request_contains(&req, v->want))
            fail(su,
                 "signatures: %s: the request does not contain \"%s\" verbatim (case "
                 "included)",
                 what, v->want ? v->want : "(null)");
        phtk_request_clear(su->tk, &req);
        struct perkhub_result none = {0};
        result_done(su, what, &none);
        request_check(su, &v->op, v->now_ms, what);
    }
}

/* ---- the ambiguity sweep ------------------------------------------------ */

static const char *const garbage[] = {
    "garbage", "<html><body><h1>502 Bad Gateway</h1></body></html>",
    "{}",      "[]",
    "null",    "{\"code\":",
    "ok",      "\xff\xfe\x01",
    "=&=&",    "success",
};

static const int sweep_4xx[] = {400, 401, 403, 404, 405, 409, 418, 422, 429, 451, 499};

static int documented(const int *list, int status)
{
    for (size_t i = 0; list && list[i]; i++)
        if (list[i] == status)
            return 1;
    return 0;
}

/* One answer of the sweep: want AMBIGUOUS. */
static void want_ambiguous(suite *su, const struct phtk_suite_order *o, int status,
                           const char *body, size_t len, const char *what)
{
    int state;
    int st = parse(su, &o->op, o->now_ms, status, body, len, what, &state);
    if (st != PERKHUB_AMBIGUOUS)
        fail(su,
             "ambiguity: %s: %s, want ambiguous (only a reply the plugin understands may "
             "say the order was not performed)",
             what, st == PERKHUB_OK ? state_name(state) : st_name(su, st));
}

static void order_check(suite *su, size_t ix)
{
    const struct phtk_suite_order *o = &su->s->orders[ix];
    const char *k = kind_name(o->op.kind);
    char what[160];
    snprintf(what, sizeof what, "%s #%zu", k, ix);
    request_check(su, &o->op, o->now_ms, what);

    /* The unknown code first: the failure that names the mapping bug itself. */
    size_t len = 0;
    snprintf(what, sizeof what, "%s #%zu unknown-code reply", k, ix);
    if (!o->unknown_code.fixture && !o->unknown_code.body) {
        fail(su, "spec: %s: missing (a reply whose code the protocol does not document)", what);
    } else {
        char *unk = reply_load(su, &o->unknown_code, what, &len);
        if (unk)
            want_ambiguous(su, o, reply_status(&o->unknown_code), unk, len, what);
        free(unk);
    }

    snprintf(what, sizeof what, "%s #%zu good reply", k, ix);
    char *good = reply_load(su, &o->good, what, &len);
    if (good) {
        int state;
        int st = parse(su, &o->op, o->now_ms, reply_status(&o->good), good, len, what, &state);
        if (st != PERKHUB_OK)
            fail(su, "ambiguity: %s: %s, want ok", what, st_name(su, st));
        /* Only the first prefix that fails is reported: the rest say the same. */
        int before = su->failed;
        for (size_t n = 0; n < body_len_trimmed(good, len) && su->failed == before; n++) {
            snprintf(what, sizeof what, "%s #%zu good reply cut to %zu of %zu bytes", k, ix, n,
                     len);
            want_ambiguous(su, o, reply_status(&o->good), good, n, what);
        }
        for (size_t i = 0; i < PHTK_N(sweep_4xx); i++) {
            if (documented(o->documented_4xx, sweep_4xx[i]))
                continue;
            snprintf(what, sizeof what, "%s #%zu good reply under HTTP %d (undocumented)", k, ix,
                     sweep_4xx[i]);
            want_ambiguous(su, o, sweep_4xx[i], good, len, what);
            snprintf(what, sizeof what, "%s #%zu empty reply under HTTP %d (undocumented)", k, ix,
                     sweep_4xx[i]);
            want_ambiguous(su, o, sweep_4xx[i], "", 0, what);
        }
        free(good);
    }
    for (size_t i = 0; i < PHTK_N(garbage); i++) {
        snprintf(what, sizeof what, "%s #%zu garbage body #%zu", k, ix, i);
        want_ambiguous(su, o, 200, garbage[i], strlen(garbage[i]), what);
    }
}

static void orders_check(suite *su)
{
    const struct phtk_suite *s = su->s;
    static const struct {
        uint64_t cap;
        int kind;
    } need[] = {{PERKHUB_CAP_CARD_ORDER, PERKHUB_OP_CARD_ORDER},
                {PERKHUB_CAP_RECHARGE, PERKHUB_OP_RECHARGE}};
    for (size_t i = 0; i < PHTK_N(need); i++) {
        if (!(s->desc->capabilities & need[i].cap))
            continue;
        size_t have = 0;
        for (size_t j = 0; j < s->norders; j++)
            have += s->orders[j].op.kind == need[i].kind;
        if (!have)
            fail(su, "spec: the plugin offers %s but the spec has no such order (orders)",
                 kind_name(need[i].kind));
    }
    for (size_t i = 0; i < s->norders; i++)
        order_check(su, i);
}

/* ---- queries ------------------------------------------------------------ */

/* A query answer that must not settle the attempt. */
static void want_unsettled(suite *su, int status, const char *body, size_t len, int not_found_ok,
                           const char *what)
{
    const struct phtk_suite *s = su->s;
    int state;
    int st = parse(su, &s->query, s->query_now_ms, status, body, len, what, &state);
    if (st == PERKHUB_OK && (state == PERKHUB_STATE_FAILED || state == PERKHUB_STATE_SUCCEEDED ||
                             (!not_found_ok && state == PERKHUB_STATE_NOT_FOUND)))
        fail(su,
             "queries: %s: read as %s, want an unsettled answer (processing, or a "
             "failed query)",
             what, state_name(state));
}

static void query_check(suite *su)
{
    const struct phtk_suite *s = su->s;
    if (!(s->desc->capabilities & PERKHUB_CAP_ORDER_QUERY))
        return;
    if (!s->query.kind) {
        fail(su, "spec: the plugin offers order_query but the spec has no query op");
        return;
    }
    request_check(su, &s->query, s->query_now_ms, "order_query");
    if (!s->query_not_found.fixture && !s->query_not_found.body) {
        fail(su, "spec: query_not_found is missing: the reply for an order the supplier does "
                 "not know must be a fixture");
    } else {
        size_t len = 0;
        char *body = reply_load(su, &s->query_not_found, "query_not_found", &len);
        if (body) {
            int state;
            int status = reply_status(&s->query_not_found);
            int st = parse(su, &s->query, s->query_now_ms, status, body, len,
                           "order_query not-found reply", &state);
            if (st != PERKHUB_OK || state != PERKHUB_STATE_NOT_FOUND)
                fail(su,
                     "queries: the not-found reply read as %s, want ok + not_found (never "
                     "failed: within the processing window the order may still appear)",
                     st == PERKHUB_OK ? state_name(state) : st_name(su, st));
            int before = su->failed;
            char what[96];
            for (size_t n = 0; n < body_len_trimmed(body, len) && su->failed == before; n++) {
                snprintf(what, sizeof what, "order_query not-found reply cut to %zu of %zu bytes",
                         n, len);
                want_unsettled(su, status, body, n, 1, what);
            }
            free(body);
        }
    }
    for (size_t i = 0; i < PHTK_N(garbage); i++) {
        char what[64];
        snprintf(what, sizeof what, "order_query garbage body #%zu", i);
        want_unsettled(su, 200, garbage[i], strlen(garbage[i]), 0, what);
    }
    if (s->query_unknown_code.fixture || s->query_unknown_code.body) {
        size_t len = 0;
        char *body = reply_load(su, &s->query_unknown_code, "query_unknown_code", &len);
        if (body)
            want_unsettled(su, reply_status(&s->query_unknown_code), body, len, 0,
                           "order_query unknown-code reply");
        free(body);
    }
}

/* ---- callbacks ---------------------------------------------------------- */

enum { LOC_BODY, LOC_QUERY, LOC_HEADER };

/* A callback under test: everything owned (malloc). */
typedef struct {
    struct perkhub_callback cb;
    char *body, *query;
    char **headers;
    size_t nheaders;
    int64_t now_ms;
} cbuf;

static void cbuf_free(cbuf *c)
{
    free(c->body);
    free(c->query);
    for (size_t i = 0; i < c->nheaders; i++)
        free(c->headers[i]);
    free(c->headers);
    memset(c, 0, sizeof *c);
}

static void cbuf_wire(cbuf *c)
{
    c->cb.body = c->body;
    c->cb.body_len = strlen(c->body);
    c->cb.query = c->query;
    c->cb.headers = (const char *const *)c->headers;
    c->cb.nheaders = c->nheaders;
}

static int cbuf_load(suite *su, const struct phtk_suite_callback *in, size_t ix, cbuf *c)
{
    memset(c, 0, sizeof *c);
    c->cb = in->cb;
    c->now_ms = in->now_ms;
    size_t len = 0;
    if (in->body_fixture) {
        c->body = phtk_fixture(in->body_fixture, &len);
        if (!c->body)
            fail(su, "spec: callback #%zu: cannot read the fixture %s", ix, in->body_fixture);
    } else {
        c->body = strdup(in->cb.body ? in->cb.body : "");
    }
    c->query = strdup(in->cb.query ? in->cb.query : "");
    c->nheaders = in->cb.nheaders;
    c->headers = calloc(c->nheaders + 1, sizeof *c->headers);
    for (size_t i = 0; c->headers && i < c->nheaders; i++)
        c->headers[i] = strdup(in->cb.headers[i]);
    if (!c->body || !c->query || !c->headers) {
        cbuf_free(c);
        return -1;
    }
    cbuf_wire(c);
    return 0;
}

static int cb_verify(suite *su, const cbuf *c, int64_t now, const char *what, int *has_ref)
{
    struct perkhub_result res;
    phtk_set_now(su->tk, now);
    int st = phtk_verify(su->tk, &c->cb, &res);
    *has_ref = res.order_ref && *res.order_ref;
    result_done(su, what, &res);
    return st;
}

/* The altered form of one value: its last byte changed to another of its
 * class, so a percent escape stays an escape; an empty value becomes "x". */
static char *value_alter(const char *v, size_t n)
{
    char *a = malloc(n + 2);
    if (!a)
        return NULL;
    memcpy(a, v, n);
    a[n] = '\0';
    if (n == 0)
        return strcpy(a, "x");
    char c = a[n - 1];
    if (c >= '0' && c <= '9')
        a[n - 1] = c == '0' ? '1' : '0';
    else if ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))
        a[n - 1] = c == 'a' ? 'b' : c == 'A' ? 'B' : (char)(c - 1);
    else
        a[n - 1] = c == 'x' ? 'y' : 'x';
    return a;
}

/* The n-th '&' field of form text replaced: by `value` when given, else
 * altered. *key gets the field's name (malloc). NULL when there is none. */
static char *form_edit(const char *text, size_t nth, const char *value, char **key)
{
    size_t i = 0;
    for (const char *p = text; *p; i++) {
        const char *end = strchr(p, '&');
        size_t seg = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', seg);
        if (i == nth) {
            if (!eq || eq == p)
                return NULL;
            *key = strndup(p, (size_t)(eq - p));
            char *v = value ? strdup(value) : value_alter(eq + 1, seg - (size_t)(eq + 1 - p));
            size_t head = (size_t)(eq + 1 - text), tail = strlen(p + seg);
            char *out = v && *key ? malloc(head + strlen(v) + tail + 1) : NULL;
            if (out) {
                memcpy(out, text, head);
                strcpy(out + head, v);
                strcat(out, p + seg);
            }
            free(v);
            return out;
        }
        if (!end)
            break;
        p = end + 1;
    }
    return NULL;
}

/* The n-th string or integer leaf of a JSON tree (objects in key order),
 * altered or set to value; *path gets its dotted path. 1 when done. */
static int json_edit(json_t *j, size_t *nth, const char *prefix, const char *value, char **path)
{
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v)
        {
            char p[256];
            snprintf(p, sizeof p, "%s%s%s", prefix, *prefix ? "." : "", k);
            if (json_is_string(v) || json_is_integer(v)) {
                if ((*nth)-- > 0)
                    continue;
                *path = strdup(p);
                json_t *nv;
                if (value)
                    nv = json_string(value);
                else if (json_is_integer(v))
                    nv = json_integer(json_integer_value(v) + 1);
                else {
                    char *a = value_alter(json_string_value(v), json_string_length(v));
                    nv = a ? json_string(a) : NULL;
                    free(a);
                }
                return nv && json_object_set_new(j, k, nv) == 0;
            }
            if (json_is_object(v) && json_edit(v, nth, p, value, path))
                return 1;
            if (*path)
                return 0;
        }
    }
    return 0;
}

static char *json_body_edit(const char *body, size_t nth, const char *value, char **path)
{
    json_t *j = json_loads(body, JSON_DECODE_ANY, NULL);
    if (!j)
        return NULL;
    char *dump = json_edit(j, &nth, "", value, path)
                     ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER)
                     : NULL;
    json_decref(j);
    /* json_dumps' block goes back through jansson's own free function */
    char *out = dump ? strdup(dump) : NULL;
    json_free_t jfree;
    json_get_alloc_funcs(NULL, &jfree);
    if (dump)
        jfree(dump);
    return out;
}

/* The body is JSON when it starts with '{', else form text. */
static int body_is_json(const char *body)
{
    while (*body == ' ' || *body == '\n' || *body == '\r' || *body == '\t')
        body++;
    return *body == '{';
}

/* Applies edit #nth at loc to a copy of base (value: set; NULL: alter). 0 and
 * *name (malloc) when there was such a field; -1 past the last one. */
static int cb_edit(const cbuf *base, int loc, size_t nth, const char *header, const char *value,
                   cbuf *out, char **name)
{
    *name = NULL;
    char *edited = NULL;
    if (loc == LOC_BODY)
        edited = body_is_json(base->body) ? json_body_edit(base->body, nth, value, name)
                                          : form_edit(base->body, nth, value, name);
    else if (loc == LOC_QUERY)
        edited = form_edit(base->query, nth, value, name);
    if (loc != LOC_HEADER && !edited) {
        free(*name);
        *name = NULL;
        return -1;
    }
    memset(out, 0, sizeof *out);
    out->cb = base->cb;
    out->now_ms = base->now_ms;
    out->body = loc == LOC_BODY ? edited : strdup(base->body);
    out->query = loc == LOC_QUERY ? edited : strdup(base->query);
    out->nheaders = base->nheaders;
    out->headers = calloc(base->nheaders + 1, sizeof *out->headers);
    int found = loc != LOC_HEADER;
    size_t hl = header ? strlen(header) : 0;
    for (size_t i = 0; out->headers && i < base->nheaders; i++) {
        const char *h = base->headers[i];
        if (loc == LOC_HEADER && nth == 0 && !found && strncasecmp(h, header, hl) == 0 &&
            h[hl] == ':') {
            const char *v = h + hl + 1;
            while (*v == ' ')
                v++;
            char *nv = value ? strdup(value) : value_alter(v, strlen(v));
            size_t need = hl + 3 + (nv ? strlen(nv) : 0);
            out->headers[i] = nv ? malloc(need) : NULL;
            if (out->headers[i])
                snprintf(out->headers[i], need, "%.*s: %s", (int)hl, h, nv);
            free(nv);
            found = 1;
            *name = strdup(header);
        } else {
            out->headers[i] = strdup(h);
        }
    }
    if (!found) {
        cbuf_free(out);
        return -1;
    }
    cbuf_wire(out);
    return 0;
}

/* The text of the signature field in c (malloc), or NULL. */
static char *sign_value(const char *field, const cbuf *c)
{
    if (strncmp(field, "header:", 7) == 0) {
        size_t hl = strlen(field + 7);
        for (size_t i = 0; i < c->nheaders; i++)
            if (strncasecmp(c->headers[i], field + 7, hl) == 0 && c->headers[i][hl] == ':') {
                const char *v = c->headers[i] + hl + 1;
                while (*v == ' ')
                    v++;
                return strdup(v);
            }
        return NULL;
    }
    int q = strncmp(field, "query:", 6) == 0;
    const char *key = q ? field + 6 : field;
    const char *text = q ? c->query : c->body;
    if (!q && body_is_json(text)) {
        json_t *j = json_loads(text, 0, NULL);
        json_t *v = j;
        char path[256];
        snprintf(path, sizeof path, "%s", key);
        for (char *save = NULL, *t = strtok_r(path, ".", &save); v && t;
             t = strtok_r(NULL, ".", &save))
            v = json_object_get(v, t);
        char *out = json_is_string(v) ? strdup(json_string_value(v)) : NULL;
        json_decref(j);
        return out;
    }
    size_t kl = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL)
        if (strncmp(p, key, kl) == 0 && p[kl] == '=')
            return strndup(p + kl + 1, strcspn(p + kl + 1, "&"));
    return NULL;
}

/* The signature field set to value: the field's location and edit. */
static int sign_set(const char *field, const cbuf *base, const char *value, cbuf *out)
{
    char *name = NULL;
    int rc = -1;
    if (strncmp(field, "header:", 7) == 0) {
        rc = cb_edit(base, LOC_HEADER, 0, field + 7, value, out, &name);
    } else {
        int loc = strncmp(field, "query:", 6) == 0 ? LOC_QUERY : LOC_BODY;
        const char *key = loc == LOC_QUERY ? field + 6 : field;
        for (size_t n = 0; rc != 0; n++) {
            cbuf tmp;
            if (cb_edit(base, loc, n, NULL, value, &tmp, &name) != 0)
                break;
            if (strcmp(name, key) == 0) {
                *out = tmp;
                cbuf_wire(out);
                rc = 0;
            } else {
                cbuf_free(&tmp);
            }
            free(name);
            name = NULL;
        }
    }
    free(name);
    return rc;
}

static int is_unsigned(const struct phtk_suite *s, const char *name)
{
    for (size_t i = 0; s->unsigned_fields && s->unsigned_fields[i]; i++)
        if (strcasecmp(s->unsigned_fields[i], name) == 0)
            return 1;
    return 0;
}

/* Every single-field alteration of c must be refused. */
static void alterations_check(suite *su, const cbuf *c, size_t ix)
{
    const struct phtk_suite *s = su->s;
    const char *hdr = strncmp(s->sign_field, "header:", 7) == 0 ? s->sign_field + 7 : NULL;
    size_t tried = 0;
    for (int loc = LOC_BODY; loc <= LOC_HEADER; loc++) {
        if (loc == LOC_HEADER && !hdr)
            break;
        for (size_t n = 0;; n++) {
            cbuf alt;
            char *name = NULL;
            if (cb_edit(c, loc, n, hdr, NULL, &alt, &name) != 0)
                break;
            if (!is_unsigned(s, name)) {
                char what[160];
                snprintf(what, sizeof what, "callback #%zu with %s '%s' altered", ix,
                         loc == LOC_BODY    ? "body field"
                         : loc == LOC_QUERY ? "query field"
                                            : "header",
                         name);
                int ref;
                int st = cb_verify(su, &alt, c->now_ms, what, &ref);
                if (st == PERKHUB_OK)
                    fail(su,
                         "signatures: %s: verified, want refused (a field outside the "
                         "signature, or a comparison that ignores a difference)",
                         what);
                tried++;
            }
            free(name);
            cbuf_free(&alt);
            if (loc == LOC_HEADER)
                break;
        }
    }
    if (!tried)
        fail(su, "signatures: callback #%zu has no field the suite can alter", ix);
}

static void callbacks_check(suite *su)
{
    const struct phtk_suite *s = su->s;
    if (!(s->desc->capabilities & PERKHUB_CAP_CALLBACK))
        return;
    if (s->ncallbacks < 2 || !s->sign_field) {
        fail(su, "spec: the plugin verifies callbacks: give at least two good callbacks and "
                 "sign_field");
        return;
    }
    cbuf first = {0};
    for (size_t i = 0; i < s->ncallbacks; i++) {
        cbuf c;
        if (cbuf_load(su, &s->callbacks[i], i, &c) != 0)
            continue;
        char what[96];
        int ref;
        snprintf(what, sizeof what, "callback #%zu", i);
        int st = cb_verify(su, &c, c.now_ms, what, &ref);
        if (st != PERKHUB_OK || !ref)
            fail(su, "signatures: %s: %s%s, want ok with order_ref (a good callback)", what,
                 st_name(su, st), st == PERKHUB_OK ? " without order_ref" : "");
        int64_t stale = s->stale_ms ? s->stale_ms : SUITE_DAY_MS;
        snprintf(what, sizeof what, "callback #%zu verified %lld ms late", i, (long long)stale);
        if (cb_verify(su, &c, c.now_ms + stale, what, &ref) == PERKHUB_OK)
            fail(su, "signatures: %s: verified, want refused as stale", what);
        alterations_check(su, &c, i);
        if (i == 0) {
            first = c;
            continue;
        }
        if (!first.body) {
            cbuf_free(&c);
            continue;
        }
        /* The replay: this callback's body with the first one's signature. */
        char *s0 = sign_value(s->sign_field, &first), *si = sign_value(s->sign_field, &c);
        snprintf(what, sizeof what, "callback #%zu carrying callback #0's signature", i);
        cbuf rep;
        if (!s0 || !si)
            fail(su, "spec: %s: no signature at sign_field '%s'", what, s->sign_field);
        else if (strcmp(s0, si) == 0)
            fail(su, "spec: callbacks #0 and #%zu carry the same signature", i);
        else if (sign_set(s->sign_field, &c, s0, &rep) == 0) {
            if (cb_verify(su, &rep, c.now_ms, what, &ref) == PERKHUB_OK)
                fail(su, "signatures: %s: verified, want refused (a replay with another body)",
                     what);
            cbuf_free(&rep);
        }
        free(s0);
        free(si);
        cbuf_free(&c);
    }
    cbuf_free(&first);
}

int phtk_suite_run(const struct phtk_suite *spec, char *report, size_t len)
{
    suite su = {.s = spec, .rep = report, .cap = len};
    if (report && len)
        report[0] = '\0';
    char err[512] = "";
    su.tk = spec && spec->desc ? phtk_open(spec->desc, spec->config, err, sizeof err) : NULL;
    if (!su.tk) {
        fail(&su, "open: %s", spec && spec->desc ? err : "no spec or descriptor");
        return su.failed;
    }
    canaries_collect(&su);
    su.blocks = phtk_blocks(su.tk);
    log_check(&su, "init");
    vectors_check(&su);
    orders_check(&su);
    query_check(&su);
    callbacks_check(&su);
    phtk_close(su.tk);
    for (size_t i = 0; i < SUITE_CHECKS; i++)
        if (su.checks[i].failed > SUITE_LINES_PER_CHECK && report && su.len + 2 < len)
            su.len +=
                (size_t)snprintf(report + su.len, len - su.len, "%s: %d more failures not listed\n",
                                 su.checks[i].name, su.checks[i].failed - SUITE_LINES_PER_CHECK);
    return su.failed;
}
