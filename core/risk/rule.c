/*
 * rule.c — a risk rule's names, its JSON form (parse and write) and the
 * subject key of an end-user value (risk.h). Pure functions: no engine state.
 */
#include "risk/risk.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/wipe_alloc.h"

static const char *const var_names[PH_RISK_VARS] = {"user",    "ip",    "ip24",  "device",
                                                    "account", "phone", "client"};
static const char *const action_names[] = {NULL, "allow", "review", "deny"};

const char *ph_risk_var_name(int var)
{
    return var >= 0 && var < PH_RISK_VARS ? var_names[var] : "?";
}

int ph_risk_var_parse(const char *name)
{
    for (int v = 0; name && v < PH_RISK_VARS; v++)
        if (!strcmp(name, var_names[v]))
            return v;
    return -1;
}

const char *ph_risk_action_name(int action)
{
    return action >= PH_RISK_ALLOW && action <= PH_RISK_DENY ? action_names[action] : "?";
}

int ph_risk_action_parse(const char *name)
{
    for (int a = PH_RISK_ALLOW; name && a <= PH_RISK_DENY; a++)
        if (!strcmp(name, action_names[a]))
            return a;
    return -1;
}

uint64_t ph_risk_key(const ph_keyring *kr, int var, const char *value, size_t len)
{
    const char *vn = ph_risk_var_name(var);
    size_t vl = strlen(vn);
    /* end-user values are at most 128 bytes (http/end_user.c); a longer one
     * would be a caller's bug, hashed cut rather than failing the order */
    uint8_t buf[3 + 8 + 256];
    if (len > 256)
        len = 256;
    size_t n = 0;
    memcpy(buf, "eu\n", 3);
    n = 3;
    memcpy(buf + n, vn, vl);
    n += vl;
    buf[n++] = '\n';
    memcpy(buf + n, value, len);
    n += len;
    uint8_t h[PH_HASH_LEN];
    ph_crypto_index(kr, buf, n, h);
    ph_wipe(buf, sizeof buf); /* it held the value */
    uint64_t k = 0;
    for (int i = 7; i >= 0; i--)
        k = k << 8 | h[i];
    return k ? k : 1;
}

/* ---- end-user values ------------------------------------------------------- */

static void mask_ends(const char *v, size_t n, size_t head, size_t tail, size_t min,
                      char masked[32])
{
    if (n < min || n <= head + tail)
        snprintf(masked, 32, "****");
    else
        snprintf(masked, 32, "%.*s****%s", (int)head, v, v + n - tail);
}

/* The address's canonical text and its /24 (v4) or /64 (v6) network. */
static int ip_parse(const char *v, int *fam, uint8_t a[16])
{
    if (inet_pton(AF_INET, v, a) == 1) {
        *fam = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, v, a) == 1) {
        *fam = AF_INET6;
        return 0;
    }
    return -1;
}

static void net_mask(int fam, const uint8_t a[16], char masked[32])
{
    char t[INET6_ADDRSTRLEN];
    if (fam == AF_INET) {
        snprintf(masked, 32, "%u.%u.%u.*", a[0], a[1], a[2]);
        return;
    }
    uint8_t n[16] = {0};
    memcpy(n, a, 8);
    inet_ntop(AF_INET6, n, t, sizeof t);
    size_t l = strlen(t);
    /* the /64 with its zero host part written "...::": "2001:db8:1:2::*" */
    if (l >= 2 && !strcmp(t + l - 2, "::"))
        snprintf(masked, 32, "%.*s::*", (int)(l - 2), t);
    else
        snprintf(masked, 32, "%.26s*", t);
}

int ph_risk_value(int var, const char *v, char *norm, size_t cap, char masked[32], ph_err *err)
{
    const char *name = ph_risk_var_name(var);
    size_t n = v ? strlen(v) : 0;
    if (cap < 130)
        return ph_err_set(err, PH_EINVAL, "%s: no room", name);
    norm[0] = 0;
    switch (var) {
    case PH_RISK_USER:
    case PH_RISK_DEVICE:
    case PH_RISK_CLIENT: {
        size_t max = var == PH_RISK_CLIENT ? 64 : 128;
        int ok = n >= 1 && n <= max;
        for (size_t i = 0; ok && i < n; i++)
            ok = v[i] >= 0x20 && v[i] < 0x7f;
        if (!ok)
            return ph_err_set(err, PH_EINVAL, "%s: expected 1..%zu bytes of printable ASCII", name,
                              max);
        memcpy(norm, v, n + 1);
        if (var == PH_RISK_CLIENT)
            snprintf(masked, 32, "%.31s", v);
        else
            mask_ends(v, n, 2, 2, 8, masked);
        return PH_OK;
    }
    case PH_RISK_ACCOUNT: {
        int ok = n >= 3 && n <= 64;
        for (size_t i = 0; ok && i < n; i++)
            ok = (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
                 (v[i] >= '0' && v[i] <= '9') || strchr("._:-", v[i]);
        if (!ok)
            return ph_err_set(err, PH_EINVAL, "account: expected 3-64 characters [A-Za-z0-9._:-]");
        memcpy(norm, v, n + 1);
        /* as recharge accounts are masked (supply/fulfil.c) */
        if (n >= 11)
            mask_ends(v, n, 3, 4, 0, masked);
        else
            mask_ends(v, n, 1, n > 2 ? 1 : 0, 0, masked);
        return PH_OK;
    }
    case PH_RISK_PHONE: {
        const char *d = v && v[0] == '+' ? v + 1 : v;
        size_t dn = d ? strlen(d) : 0;
        int ok = dn >= 5 && dn <= 20;
        for (size_t i = 0; ok && i < dn; i++)
            ok = d[i] >= '0' && d[i] <= '9';
        if (!ok)
            return ph_err_set(err, PH_EINVAL,
                              "phone: expected 5-20 digits with an optional leading '+'");
        memcpy(norm, d, dn + 1);
        mask_ends(d, dn, 3, 4, 8, masked);
        return PH_OK;
    }
    case PH_RISK_IP:
    case PH_RISK_IP24: {
        char buf[64];
        uint8_t a[16];
        int fam = 0, prefix = -1;
        if (n == 0 || n >= sizeof buf)
            return ph_err_set(err, PH_EINVAL, "%s: expected an IPv4 or IPv6 address", name);
        memcpy(buf, v, n + 1);
        char *slash = var == PH_RISK_IP24 ? strchr(buf, '/') : NULL;
        if (slash) {
            *slash = 0;
            prefix = atoi(slash + 1);
        }
        if (ip_parse(buf, &fam, a) || (slash && prefix != (fam == AF_INET ? 24 : 64)))
            return ph_err_set(err, PH_EINVAL, "%s: expected an IPv4 or IPv6 address%s", name,
                              var == PH_RISK_IP24 ? " (or its /24, IPv6 its /64)" : "");
        ph_wipe(buf, sizeof buf);
        char t[INET6_ADDRSTRLEN];
        if (var == PH_RISK_IP) {
            inet_ntop(fam, a, t, sizeof t);
            snprintf(norm, cap, "%s", t);
        } else {
            uint8_t netw[16] = {0};
            memcpy(netw, a, fam == AF_INET ? 3 : 8);
            inet_ntop(fam, netw, t, sizeof t);
            snprintf(norm, cap, "%s/%d", t, fam == AF_INET ? 24 : 64);
        }
        net_mask(fam, a, masked);
        ph_wipe(a, sizeof a);
        return PH_OK;
    }
    default:
        return ph_err_set(err, PH_EINVAL, "variable: unknown");
    }
}

/* ---- the JSON form ------------------------------------------------------- */

static const char rule_members[] = "id, kind, variable, variables, scope, measure, limit, "
                                   "window_s, action, mode, enabled, priority, note, version, "
                                   "created_at, updated_at";

static int id_ok(const char *s)
{
    size_t n = strlen(s);
    if (!n || n > PH_RISK_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

/* Printable text (no control characters) of 1..max bytes (0..max when
 * empty_ok). */
static int text_ok(const char *s, size_t max, int empty_ok)
{
    size_t n = strlen(s);
    if ((!n && !empty_ok) || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static int want_int(json_t *v, const char *name, int64_t lo, int64_t hi, const char *what,
                    int64_t *out, ph_err *err)
{
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return ph_err_set(err, PH_EINVAL, "%s: expected %s", name, what);
    *out = json_integer_value(v);
    return PH_OK;
}

static int parse_scope(json_t *v, ph_risk_rule *r, ph_err *err)
{
    if (!v || json_is_null(v)) {
        r->scope = PH_RISK_ANY;
        return PH_OK;
    }
    static const char *const names[] = {NULL, "sku", "brand", "tag"};
    if (!json_is_object(v) || json_object_size(v) != 1)
        return ph_err_set(err, PH_EINVAL,
                          "scope: expected an object with one of sku, brand, tag (or no scope)");
    const char *k = json_object_iter_key(json_object_iter(v));
    json_t *sv = json_object_iter_value(json_object_iter(v));
    for (int s = PH_RISK_SKU; s <= PH_RISK_TAG; s++) {
        if (strcmp(k, names[s]))
            continue;
        char field[16];
        snprintf(field, sizeof field, "scope.%s", names[s]);
        const char *t = json_string_value(sv);
        if (!t || !text_ok(t, PH_RISK_SCOPE_MAX, 0))
            return ph_err_set(err, PH_EINVAL, "%s: expected 1..%d printable bytes", field,
                              PH_RISK_SCOPE_MAX);
        if (s == PH_RISK_TAG && (!strchr(t, '=') || t[0] == '='))
            return ph_err_set(err, PH_EINVAL, "scope.tag: expected \"key=value\"");
        r->scope = s;
        snprintf(r->scope_value, sizeof r->scope_value, "%s", t);
        return PH_OK;
    }
    return ph_err_set(err, PH_EINVAL, "scope: unknown member (expected sku, brand or tag)");
}

static int parse_var(json_t *v, const char *field, int *out, ph_err *err)
{
    const char *s = json_string_value(v);
    int var = ph_risk_var_parse(s);
    if (var >= 0) {
        *out = var;
        return PH_OK;
    }
    if (!s)
        return ph_err_set(err, PH_EINVAL,
                          "%s: expected one of user, ip, ip24, device, account, phone, client",
                          field);
    /* a variable name is ops' word, not personal data: quoted, bounded */
    return ph_err_set(err, PH_EINVAL,
                      "%s: unknown '%.32s' (expected user, ip, ip24, device, account, phone, "
                      "client)",
                      field, text_ok(s, 32, 0) ? s : "?");
}

int ph_risk_rule_parse(const json_t *jc, ph_risk_rule *out, ph_err *err)
{
    json_t *j = (json_t *)jc; /* jansson's getters take non-const */
    if (!json_is_object(j))
        return ph_err_set(err, PH_EINVAL, "rule: expected a JSON object");
    size_t pos = 0;
    const char *key;
    json_t *val;
    json_object_foreach(j, key, val)
    {
        pos++;
        /* every known name is a whole word of the list, so a substring test
         * would admit "var": compare word by word */
        int known = 0;
        for (const char *p = rule_members; *p;) {
            size_t n = strcspn(p, ",");
            if (n == strlen(key) && !strncmp(p, key, n))
                known = 1;
            p += n;
            while (*p == ',' || *p == ' ')
                p++;
        }
        if (!known)
            /* never quoted: a caller may put anything in a key */
            return ph_err_set(err, PH_EINVAL,
                              "rule: unknown member (member %zu of the object; "
                              "expected %s)",
                              pos, rule_members);
    }
    ph_risk_rule r;
    memset(&r, 0, sizeof r);
    int rc;
    json_t *v;

    v = json_object_get(j, "id");
    if (!json_is_string(v) || !id_ok(json_string_value(v)))
        return ph_err_set(err, PH_EINVAL, "id: expected 1..%d bytes of [a-z0-9_.-]",
                          PH_RISK_ID_MAX);
    snprintf(r.id, sizeof r.id, "%s", json_string_value(v));

    v = json_object_get(j, "kind");
    r.kind = PH_RISK_VELOCITY;
    if (v) {
        const char *k = json_string_value(v);
        if (k && !strcmp(k, "velocity"))
            r.kind = PH_RISK_VELOCITY;
        else if (k && !strcmp(k, "related"))
            r.kind = PH_RISK_RELATED;
        else
            return ph_err_set(err, PH_EINVAL, "kind: expected velocity or related");
    }

    if (r.kind == PH_RISK_VELOCITY) {
        if (json_object_get(j, "variables"))
            return ph_err_set(err, PH_EINVAL,
                              "variables: only for a related rule (a velocity rule has "
                              "variable)");
        v = json_object_get(j, "variable");
        if (!v)
            return ph_err_set(err, PH_EINVAL, "variable: missing");
        if ((rc = parse_var(v, "variable", &r.var, err)))
            return rc;
        r.measure = PH_RISK_ORDERS;
        v = json_object_get(j, "measure");
        if (v) {
            const char *m = json_string_value(v);
            if (m && !strcmp(m, "orders"))
                r.measure = PH_RISK_ORDERS;
            else if (m && !strcmp(m, "fen"))
                r.measure = PH_RISK_FEN;
            else
                return ph_err_set(err, PH_EINVAL, "measure: expected orders or fen");
        }
        v = json_object_get(j, "limit");
        if (!v)
            return ph_err_set(err, PH_EINVAL, "limit: missing");
        if ((rc = want_int(v, "limit", 0, INT64_MAX / 4, "an integer >= 0", &r.limit, err)))
            return rc;
    } else {
        if (json_object_get(j, "variable"))
            return ph_err_set(err, PH_EINVAL,
                              "variable: only for a velocity rule (a related rule has "
                              "variables)");
        if (json_object_get(j, "measure") || json_object_get(j, "limit"))
            return ph_err_set(err, PH_EINVAL, "%s: not used by a related rule",
                              json_object_get(j, "measure") ? "measure" : "limit");
        v = json_object_get(j, "variables");
        if (!json_is_array(v) || !json_array_size(v) || json_array_size(v) > PH_RISK_VARS)
            return ph_err_set(err, PH_EINVAL,
                              "variables: expected an array of 1..%d variables (device, ip, "
                              "account, ...)",
                              PH_RISK_VARS);
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            char field[40];
            snprintf(field, sizeof field, "variables[%zu]", i);
            int var;
            if ((rc = parse_var(e, field, &var, err)))
                return rc;
            if (r.related & (1u << var))
                return ph_err_set(err, PH_EINVAL, "%s: '%s' given twice", field,
                                  ph_risk_var_name(var));
            r.related |= 1u << var;
        }
    }

    if ((rc = parse_scope(json_object_get(j, "scope"), &r, err)))
        return rc;

    v = json_object_get(j, "window_s");
    if (!v)
        return ph_err_set(err, PH_EINVAL, "window_s: missing");
    if ((rc = want_int(v, "window_s", 1, PH_RISK_WINDOW_MAX, "1..2592000 seconds", &r.window_s,
                       err)))
        return rc;

    v = json_object_get(j, "action");
    if (!v)
        return ph_err_set(err, PH_EINVAL, "action: missing");
    if ((r.action = ph_risk_action_parse(json_string_value(v))) < 0)
        return ph_err_set(err, PH_EINVAL, "action: expected allow, review or deny");

    v = json_object_get(j, "mode");
    if (v) {
        const char *m = json_string_value(v);
        if (m && !strcmp(m, "enforce"))
            r.dry_run = 0;
        else if (m && !strcmp(m, "dry_run"))
            r.dry_run = 1;
        else
            return ph_err_set(err, PH_EINVAL, "mode: expected enforce or dry_run");
    }

    v = json_object_get(j, "enabled");
    r.enabled = 1;
    if (v) {
        if (!json_is_boolean(v))
            return ph_err_set(err, PH_EINVAL, "enabled: expected true or false");
        r.enabled = json_is_true(v);
    }

    int64_t x = 100;
    v = json_object_get(j, "priority");
    if (v &&
        (rc = want_int(v, "priority", -1000000, 1000000, "an integer -1000000..1000000", &x, err)))
        return rc;
    r.priority = (int32_t)x;

    v = json_object_get(j, "note");
    if (v) {
        if (!json_is_string(v) || !text_ok(json_string_value(v), PH_RISK_NOTE_MAX, 1))
            return ph_err_set(err, PH_EINVAL,
                              "note: expected at most %d bytes without control characters",
                              PH_RISK_NOTE_MAX);
        snprintf(r.note, sizeof r.note, "%s", json_string_value(v));
    }

    v = json_object_get(j, "version");
    if (v) {
        if ((rc = want_int(v, "version", 1, UINT32_MAX, "an integer >= 1", &x, err)))
            return rc;
        r.version = (uint32_t)x;
    }
    v = json_object_get(j, "created_at");
    if (v && (rc = want_int(v, "created_at", 0, INT64_MAX, "a time in ms", &r.created_at, err)))
        return rc;
    v = json_object_get(j, "updated_at");
    if (v && (rc = want_int(v, "updated_at", 0, INT64_MAX, "a time in ms", &r.updated_at, err)))
        return rc;
    *out = r;
    return PH_OK;
}

json_t *ph_risk_rule_json(const ph_risk_rule *r)
{
    static const char *const scopes[] = {NULL, "sku", "brand", "tag"};
    json_t *j = json_object();
    if (!j)
        return NULL;
    int bad = 0;
    bad |= json_object_set_new(j, "id", json_string(r->id));
    bad |= json_object_set_new(j, "kind",
                               json_string(r->kind == PH_RISK_RELATED ? "related" : "velocity"));
    if (r->kind == PH_RISK_RELATED) {
        json_t *a = json_array();
        for (int v = 0; a && v < PH_RISK_VARS; v++)
            if (r->related & (1u << v))
                bad |= json_array_append_new(a, json_string(ph_risk_var_name(v)));
        bad |= json_object_set_new(j, "variables", a);
    } else {
        bad |= json_object_set_new(j, "variable", json_string(ph_risk_var_name(r->var)));
    }
    if (r->scope >= PH_RISK_SKU && r->scope <= PH_RISK_TAG)
        bad |=
            json_object_set_new(j, "scope", json_pack("{s:s}", scopes[r->scope], r->scope_value));
    if (r->kind != PH_RISK_RELATED) {
        bad |= json_object_set_new(j, "measure",
                                   json_string(r->measure == PH_RISK_FEN ? "fen" : "orders"));
        bad |= json_object_set_new(j, "limit", json_integer(r->limit));
    }
    bad |= json_object_set_new(j, "window_s", json_integer(r->window_s));
    bad |= json_object_set_new(j, "action", json_string(ph_risk_action_name(r->action)));
    bad |= json_object_set_new(j, "mode", json_string(r->dry_run ? "dry_run" : "enforce"));
    bad |= json_object_set_new(j, "enabled", json_boolean(r->enabled));
    bad |= json_object_set_new(j, "priority", json_integer(r->priority));
    if (r->note[0])
        bad |= json_object_set_new(j, "note", json_string(r->note));
    if (r->version)
        bad |= json_object_set_new(j, "version", json_integer(r->version));
    if (r->created_at)
        bad |= json_object_set_new(j, "created_at", json_integer(r->created_at));
    if (r->updated_at)
        bad |= json_object_set_new(j, "updated_at", json_integer(r->updated_at));
    if (bad) {
        json_decref(j);
        return NULL;
    }
    return j;
}
