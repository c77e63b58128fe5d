/*
 * end_user.c — the end_user object of an order: read, normalized, masked,
 * keyed, the phone sealed, the risk record written (end_user.h).
 */
#include "http/end_user.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "crypto/wipe_alloc.h"

#define PHONE_AAD "perkhub end_user.phone v1" /* binds a sealed phone to its use */

static int fail(char msg[PH_EU_MSG_MAX], const char *fmt, const char *member, const char *what)
{
    snprintf(msg, PH_EU_MSG_MAX, fmt, member, what);
    return PH_EINVAL;
}

/* 1..max bytes of printable ASCII (space to tilde). */
static int printable(const char *s, size_t max, int no_eq)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= max || (unsigned char)s[n] < 0x20 || (unsigned char)s[n] > 0x7e ||
            (no_eq && s[n] == '='))
            return 0;
    return n > 0;
}

/* First 2 + "****" + last 2 of 8 or more bytes, else "****". */
static void mask_ident(const char *v, char out[16])
{
    size_t n = strlen(v);
    if (n < 8)
        snprintf(out, 16, "****");
    else
        snprintf(out, 16, "%.2s****%s", v, v + n - 2);
}

static int parse_ip(const char *s, ph_end_user *eu)
{
    unsigned char a[16];
    if (inet_pton(AF_INET, s, a) == 1) {
        inet_ntop(AF_INET, a, eu->ip, sizeof eu->ip);
        snprintf(eu->ip24, sizeof eu->ip24, "%u.%u.%u.0/24", a[0], a[1], a[2]);
        snprintf(eu->ip_m, sizeof eu->ip_m, "%u.%u.%u.*", a[0], a[1], a[2]);
        return 1;
    }
    if (inet_pton(AF_INET6, s, a) != 1)
        return 0;
    inet_ntop(AF_INET6, a, eu->ip, sizeof eu->ip);
    char net[PH_EU_IP_MAX];
    memset(a + 8, 0, 8);
    inet_ntop(AF_INET6, a, net, sizeof net);
    snprintf(eu->ip24, sizeof eu->ip24, "%s/64", net);
    snprintf(eu->ip_m, sizeof eu->ip_m, "%x:%x:%x:%x::*", a[0] << 8 | a[1], a[2] << 8 | a[3],
             a[4] << 8 | a[5], a[6] << 8 | a[7]);
    return 1;
}

/* An optional '+', then 5..20 digits: kept as the digits. */
static int parse_phone(const char *s, ph_end_user *eu)
{
    size_t n = 0;
    if (*s == '+')
        s++;
    for (; s[n]; n++)
        if (n >= PH_EU_PHONE_MAX || s[n] < '0' || s[n] > '9')
            return 0;
    if (n < 5)
        return 0;
    memcpy(eu->phone, s, n);
    eu->phone[n] = 0;
    if (n < 8)
        snprintf(eu->phone_m, sizeof eu->phone_m, "****");
    else
        snprintf(eu->phone_m, sizeof eu->phone_m, "%.3s****%s", s, s + n - 4);
    return 1;
}

static int tag_key_ok(const char *k)
{
    size_t n = strlen(k);
    if (n < 1 || n > 32)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= '0' && k[i] <= '9') || k[i] == '_' ||
              k[i] == '.' || k[i] == '-'))
            return 0;
    return 1;
}

static int parse_tags(json_t *t, ph_end_user *eu, char msg[PH_EU_MSG_MAX])
{
    if (!json_is_object(t) || json_object_size(t) > PH_RISK_TAGS_MAX)
        return fail(msg, "%s: expected an object of at most 16 tags%s", "end_user.tags", "");
    const char *k;
    json_t *v;
    size_t i = 0;
    json_object_foreach(t, k, v)
    {
        if (!tag_key_ok(k))
            return snprintf(msg, PH_EU_MSG_MAX,
                            "end_user.tags: tag %zu: expected a key of 1-32 [a-z0-9_.-]", i + 1),
                   PH_EINVAL;
        const char *s = json_string_value(v);
        size_t kl = strlen(k), sl = s ? strlen(s) : 0;
        /* tags by position too: never the caller's text in a message */
        if (!s || !printable(s, 64, 1))
            return snprintf(msg, PH_EU_MSG_MAX,
                            "end_user.tags: tag %zu: expected a value of 1-64 printable bytes "
                            "without '='",
                            i + 1),
                   PH_EINVAL;
        if (kl + 1 + sl > PH_RISK_TAG_MAX)
            return snprintf(msg, PH_EU_MSG_MAX, "end_user.tags: tag %zu: key=value over %d bytes",
                            i + 1, PH_RISK_TAG_MAX),
                   PH_EINVAL;
        memcpy(eu->tags[i], k, kl);
        eu->tags[i][kl] = '=';
        memcpy(eu->tags[i] + kl + 1, s, sl + 1);
        eu->tagp[i] = eu->tags[i];
        i++;
    }
    eu->ntags = i;
    return PH_OK;
}

static int parse_member(const char *k, json_t *v, ph_end_user *eu, char msg[PH_EU_MSG_MAX])
{
    const char *s = json_string_value(v);
    if (!strcmp(k, "id") || !strcmp(k, "device_id")) {
        if (!s || !printable(s, PH_EU_ID_MAX, 0))
            return fail(msg, "end_user.%s: expected 1-128 printable ASCII bytes%s", k, "");
        char *dst = k[0] == 'i' ? eu->id : eu->device;
        snprintf(dst, PH_EU_ID_MAX + 1, "%s", s);
        mask_ident(s, k[0] == 'i' ? eu->id_m : eu->device_m);
        return PH_OK;
    }
    if (!strcmp(k, "ip"))
        return s && strlen(s) < PH_EU_IP_MAX && parse_ip(s, eu)
                   ? PH_OK
                   : fail(msg, "%s: expected an IPv4 or IPv6 address%s", "end_user.ip", "");
    if (!strcmp(k, "phone"))
        return s && parse_phone(s, eu)
                   ? PH_OK
                   : fail(msg, "%s: expected 5-20 digits, optionally after '+'%s", "end_user.phone",
                          "");
    return parse_tags(v, eu, msg);
}

int ph_end_user_parse(const json_t *j, ph_end_user *out, char msg[PH_EU_MSG_MAX])
{
    static const char *const known[] = {"id", "ip", "device_id", "phone", "tags"};
    memset(out, 0, sizeof *out);
    if (!j)
        return PH_OK;
    if (!json_is_object(j))
        return fail(msg, "%s: expected an object%s", "end_user", "");
    out->given = 1;
    const char *k;
    json_t *v;
    size_t pos = 0;
    json_object_foreach((json_t *)j, k, v)
    {
        int ok = 0;
        pos++;
        for (size_t i = 0; i < sizeof known / sizeof *known; i++)
            ok |= !strcmp(k, known[i]);
        if (!ok) {
            /* named by position: a member's name is caller-sent text like any
             * value, and may be one (rule 3; the secrets test sends one) */
            snprintf(msg, PH_EU_MSG_MAX,
                     "end_user: member %zu is unknown (expected id, ip, device_id, phone, tags)",
                     pos);
            ph_end_user_wipe(out);
            return PH_EINVAL;
        }
        if (parse_member(k, v, out, msg) != PH_OK) {
            ph_end_user_wipe(out);
            return PH_EINVAL;
        }
    }
    return PH_OK;
}

void ph_end_user_subject(const ph_end_user *eu, const ph_keyring *kr, const char *client,
                         const char *account, const char *sku, const char *brand, int64_t amount,
                         int64_t now, ph_risk_subject *out)
{
    memset(out, 0, sizeof *out);
    const char *vals[PH_RISK_VARS] = {
        [PH_RISK_USER] = eu->id,       [PH_RISK_IP] = eu->ip,       [PH_RISK_IP24] = eu->ip24,
        [PH_RISK_DEVICE] = eu->device, [PH_RISK_ACCOUNT] = account, [PH_RISK_PHONE] = eu->phone,
        [PH_RISK_CLIENT] = client};
    for (int v = 0; v < PH_RISK_VARS; v++)
        if (vals[v] && vals[v][0])
            out->keys[v] = ph_risk_key(kr, v, vals[v], strlen(vals[v]));
    out->sku = sku;
    out->brand = brand;
    out->tags = eu->tagp;
    out->ntags = eu->ntags;
    out->amount = amount;
    out->now = now;
}

int ph_end_user_seal_phone(ph_end_user *eu, const ph_keyring *kr)
{
    size_t n = strlen(eu->phone), len = 0;
    uint8_t sealed[PH_EU_PHONE_MAX + PH_SEAL_OVERHEAD];
    eu->phone_sealed[0] = 0;
    if (!n)
        return PH_OK;
    if (ph_crypto_seal(kr, (const uint8_t *)eu->phone, n, (const uint8_t *)PHONE_AAD,
                       strlen(PHONE_AAD), sealed, &len) != PH_OK)
        return PH_ECRYPTO;
    _Static_assert((PH_EU_PHONE_MAX + PH_SEAL_OVERHEAD + 2) / 3 * 4 < 128, "sealed phone fits");
    ph_base64_encode(sealed, len, eu->phone_sealed);
    return PH_OK;
}

char *ph_end_user_record(const ph_end_user *eu, const ph_risk_subject *s, const ph_risk_decision *d,
                         size_t *len)
{
    json_t *rec = json_pack("{s:i,s:I,s:s,s:s?}", "v", 1, "at", (json_int_t)s->now, "sku", s->sku,
                            "brand", s->brand);
    json_t *tags = json_array(), *keys = json_object(), *who = json_object(),
           *tagmap = json_object(), *hits = json_array();
    if (!rec || !tags || !keys || !who || !tagmap || !hits)
        goto nomem;
    for (size_t i = 0; i < eu->ntags; i++)
        json_array_append_new(tags, json_string(eu->tags[i]));
    json_object_set_new(rec, "tags", tags);
    tags = NULL;
    json_object_set_new(rec, "amount", json_integer(s->amount));
    for (int v = 0; v < PH_RISK_VARS; v++)
        if (s->keys[v]) {
            char hex[17];
            snprintf(hex, sizeof hex, "%016llx", (unsigned long long)s->keys[v]);
            json_object_set_new(keys, ph_risk_var_name(v), json_string(hex));
        }
    json_object_set_new(rec, "keys", keys);
    keys = NULL;
    if (eu->id_m[0])
        json_object_set_new(who, "id", json_string(eu->id_m));
    if (eu->ip_m[0])
        json_object_set_new(who, "ip", json_string(eu->ip_m));
    if (eu->device_m[0])
        json_object_set_new(who, "device", json_string(eu->device_m));
    if (eu->phone_m[0])
        json_object_set_new(who, "phone", json_string(eu->phone_m));
    for (size_t i = 0; i < eu->ntags; i++) {
        const char *eq = strchr(eu->tags[i], '=');
        char key[PH_RISK_TAG_MAX + 1];
        snprintf(key, sizeof key, "%.*s", (int)(eq - eu->tags[i]), eu->tags[i]);
        json_object_set_new(tagmap, key, json_string(eq + 1));
    }
    if (eu->ntags)
        json_object_set_new(who, "tags", tagmap);
    else
        json_decref(tagmap);
    tagmap = NULL;
    json_object_set_new(rec, "end_user", who);
    who = NULL;
    if (eu->phone_sealed[0])
        json_object_set_new(rec, "phone_sealed", json_string(eu->phone_sealed));
    int action = d ? d->action : PH_RISK_ALLOW;
    for (size_t i = 0; d && i < d->nhits; i++)
        json_array_append_new(hits, json_pack("{s:s,s:s,s:b}", "rule", d->hits[i].rule, "action",
                                              ph_risk_action_name(d->hits[i].action), "dry_run",
                                              d->hits[i].dry_run));
    json_t *dec = json_pack("{s:s,s:s,s:o}", "action", ph_risk_action_name(action), "rule",
                            d ? d->rule : "", "hits", hits);
    hits = NULL;
    if (!dec)
        goto nomem;
    json_object_set_new(rec, "decision", dec);
    char *txt = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(rec);
    if (!txt)
        return NULL;
    /* a plain malloc'd copy: the caller frees with free() */
    size_t n = strlen(txt);
    char *out = malloc(n + 1);
    if (out)
        memcpy(out, txt, n + 1);
    ph_json_free(txt);
    *len = n;
    return out;
nomem:
    json_decref(rec);
    json_decref(tags);
    json_decref(keys);
    json_decref(who);
    json_decref(tagmap);
    json_decref(hits);
    return NULL;
}

int ph_risk_record_read(const char *txt, size_t len, ph_risk_record *out)
{
    memset(out, 0, sizeof *out);
    json_t *j = json_loadb(txt, len, 0, NULL);
    json_t *keys = json_object_get(j, "keys"), *tags = json_object_get(j, "tags");
    json_t *at = json_object_get(j, "at"), *amount = json_object_get(j, "amount");
    const char *sku = json_string_value(json_object_get(j, "sku"));
    const char *action =
        json_string_value(json_object_get(json_object_get(j, "decision"), "action"));
    if (!json_is_object(keys) || !json_is_integer(at) || !sku || !action ||
        json_array_size(tags) > PH_RISK_TAGS_MAX) {
        json_decref(j);
        return PH_EINVAL;
    }
    ph_risk_subject *s = &out->subject;
    for (int v = 0; v < PH_RISK_VARS; v++) {
        const char *hex = json_string_value(json_object_get(keys, ph_risk_var_name(v)));
        s->keys[v] = hex ? strtoull(hex, NULL, 16) : 0;
    }
    for (size_t i = 0; i < json_array_size(tags); i++)
        if ((out->tagp[s->ntags] = json_string_value(json_array_get(tags, i))))
            s->ntags++;
    s->tags = out->tagp;
    s->sku = sku;
    s->brand = json_string_value(json_object_get(j, "brand"));
    s->amount = json_integer_value(amount);
    s->now = json_integer_value(at);
    int a = ph_risk_action_parse(action);
    out->action = a > 0 ? a : PH_RISK_ALLOW;
    const char *outcome =
        json_string_value(json_object_get(json_object_get(j, "review"), "outcome"));
    out->blocked = outcome && !strcmp(outcome, "blocked");
    if (out->blocked)
        out->blocked_at = json_integer_value(json_object_get(json_object_get(j, "review"), "at"));
    out->json = j;
    return PH_OK;
}

void ph_risk_record_clear(ph_risk_record *rec)
{
    json_decref(rec->json);
    memset(rec, 0, sizeof *rec);
}

void ph_end_user_wipe(ph_end_user *eu)
{
    ph_wipe(eu->id, sizeof eu->id);
    ph_wipe(eu->device, sizeof eu->device);
    ph_wipe(eu->phone, sizeof eu->phone);
    ph_wipe(eu->ip, sizeof eu->ip);
    ph_wipe(eu->ip24, sizeof eu->ip24);
}
