/*
 * event_view.c — what of a stored event a mall may see (event_view.h).
 */
#include "store/event_view.h"

#include <stddef.h>
#include <string.h>

static const char *const mall_event_keys[] = {
    "seq", "at", "type", "order_id", "client", "client_order_id", "sku", "quantity", "delivery",
    "state", "reason", "attempt", "outcome", "by", "codes", "checks", "rule", "hold_until",
    /* grants (issue 16): ids, counts and times only */
    "grant_id", "expires_at", "gifts", "from", "order_state", "returns",
    /* bundles (issue 16): the parent's id, the retry number, component counts */
    "parent", "retry", "components"};

static const char *const product_event_keys[] = {"seq",       "at",    "type",  "sku",
                                                 "available", "below", "reason"};

static json_t *cut(json_t *ev, const char *const *keys, size_t n)
{
    json_t *out = json_object();
    for (size_t i = 0; out && ev && i < n; i++) {
        json_t *v = json_object_get(ev, keys[i]);
        if (v)
            json_object_set(out, keys[i], v);
    }
    json_decref(ev);
    return out;
}

json_t *ph_event_mall_cut(json_t *ev)
{
    return cut(ev, mall_event_keys, sizeof mall_event_keys / sizeof *mall_event_keys);
}

json_t *ph_event_product_cut(json_t *ev)
{
    return cut(ev, product_event_keys, sizeof product_event_keys / sizeof *product_event_keys);
}

/* ---- the cuts from the stored text -------------------------------------------------- */

#define EV_MEMBERS_MAX 64 /* members of one event the scanner indexes */

static const char *ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* The end of the JSON string starting at p (its opening quote), past its
 * closing quote; NULL when it does not close. */
static const char *str_end(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

/* The end of the value starting at p; NULL when it does not end inside
 * [p, end) or is not a value. Nested containers are skipped by their
 * brackets (strings inside them included); a scalar runs to the next
 * delimiter. What it copies is the store's jansson-written text, so this
 * only has to find where a value ends, not validate it. */
static const char *value_end(const char *p, const char *end)
{
    if (p >= end)
        return NULL;
    if (*p == '"')
        return str_end(p, end);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < end) {
            if (*p == '"') {
                if (!(p = str_end(p, end)))
                    return NULL;
                continue;
            }
            if (*p == '{' || *p == '[')
                depth++;
            else if ((*p == '}' || *p == ']') && --depth == 0)
                return p + 1;
            p++;
        }
        return NULL;
    }
    const char *q = p;
    while (q < end && *q != ',' && *q != '}' && *q != ']' && *q != ' ' && *q != '\t' &&
           *q != '\n' && *q != '\r' && *q != '"' && *q != '{' && *q != '[' && *q != ':')
        q++;
    return q > p ? q : NULL;
}

typedef struct ev_member {
    const char *key, *val; /* key without its quotes */
    size_t klen, vlen;
} ev_member;

/* Indexes the top-level members of ev (at most max); their count, or -1
 * when ev is not one object. */
static int members(const char *ev, size_t len, ev_member *m, size_t max)
{
    const char *p = ws(ev, ev + len), *end = ev + len;
    size_t n = 0;
    if (p == end || *p++ != '{')
        return -1;
    p = ws(p, end);
    if (p < end && *p == '}')
        return ws(p + 1, end) == end ? 0 : -1;
    for (;;) {
        if (p == end || *p != '"')
            return -1;
        const char *ke = str_end(p, end);
        if (!ke)
            return -1;
        const char *k = p + 1;
        size_t kl = (size_t)(ke - 1 - k);
        p = ws(ke, end);
        if (p == end || *p++ != ':')
            return -1;
        p = ws(p, end);
        const char *ve = value_end(p, end);
        if (!ve)
            return -1;
        if (n < max)
            m[n++] = (ev_member){k, p, kl, (size_t)(ve - p)};
        else
            return -1; /* more members than any event has: not one of ours */
        p = ws(ve, end);
        if (p < end && *p == ',') {
            p = ws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}')
            return ws(p + 1, end) == end ? (int)n : -1;
        return -1;
    }
}

/* The last member named key (jansson keeps the last of duplicates), or NULL. */
static const ev_member *member_named(const ev_member *m, int n, const char *key)
{
    size_t kl = strlen(key);
    for (int i = n - 1; i >= 0; i--)
        if (m[i].klen == kl && !memcmp(m[i].key, key, kl))
            return &m[i];
    return NULL;
}

static int cut_text(const char *ev, size_t len, const char *const *keys, size_t nkeys,
                    void (*put)(void *sink, const char *p, size_t n), void *sink)
{
    ev_member m[EV_MEMBERS_MAX];
    int n = members(ev, len, m, EV_MEMBERS_MAX);
    if (n < 0)
        return -1;
    int first = 1;
    put(sink, "{", 1);
    for (size_t i = 0; i < nkeys; i++) {
        const ev_member *x = member_named(m, n, keys[i]);
        if (!x)
            continue;
        put(sink, first ? "\"" : ",\"", first ? 1 : 2);
        put(sink, keys[i], strlen(keys[i]));
        put(sink, "\":", 2);
        put(sink, x->val, x->vlen);
        first = 0;
    }
    put(sink, "}", 1);
    return 0;
}

int ph_event_mall_cut_text(const char *ev, size_t len,
                           void (*put)(void *sink, const char *p, size_t n), void *sink)
{
    return cut_text(ev, len, mall_event_keys, sizeof mall_event_keys / sizeof *mall_event_keys, put,
                    sink);
}

int ph_event_product_cut_text(const char *ev, size_t len,
                              void (*put)(void *sink, const char *p, size_t n), void *sink)
{
    return cut_text(ev, len, product_event_keys,
                    sizeof product_event_keys / sizeof *product_event_keys, put, sink);
}

int ph_event_members(const char *ev, size_t len, const char *const *keys, size_t nkeys,
                     const char **vals, size_t *vlens)
{
    ev_member m[EV_MEMBERS_MAX];
    int n = members(ev, len, m, EV_MEMBERS_MAX);
    if (n < 0)
        return -1;
    for (size_t i = 0; i < nkeys; i++) {
        const ev_member *x = member_named(m, n, keys[i]);
        vals[i] = x ? x->val : NULL;
        vlens[i] = x ? x->vlen : 0;
    }
    return 0;
}
