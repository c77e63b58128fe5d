/*
 * api_risk.c — risk rules and lists (docs/api.md, "Risk rules"; docs/risk.md):
 * ops read, create, replace and remove rules (PH_CMD_RISK_RULE, versioned,
 * audited) and add or remove block and allow list entries (PH_CMD_RISK_LIST).
 *
 * A change is in force for the next order: once its command committed, the
 * handler (not the writer's done, which must stay short) reads every rule and
 * entry from one store snapshot and hands them to the engine with the
 * snapshot's generation (ph_risk_load), so two changes racing never leave the
 * older set in force. A list value is normalized, masked and hashed here
 * (ph_risk_value, ph_risk_key) and wiped: only its subject key and masked form
 * reach the store, a log or an answer.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "crypto/wipe_alloc.h"
#include "http/api.h"
#include "http/http_api.h"
#include "http/views.h"
#include "risk/risk.h"
#include "store/store.h"

#define RULE_FIELDS                                                                                \
    "id kind variable variables scope measure limit window_s action mode enabled priority note "   \
    "version created_at updated_at"

/* A rule as the API shows it: the stored form, its times as RFC 3339. */
static json_t *rule_view(const ph_risk_rule *rule)
{
    ph_risk_rule r = *rule;
    int64_t ca = r.created_at, ua = r.updated_at;
    r.created_at = r.updated_at = 0;
    json_t *j = ph_risk_rule_json(&r);
    if (j && ca)
        ph_view_time(j, "created_at", ca);
    if (j && ua)
        ph_view_time(j, "updated_at", ua);
    return j;
}

/* Puts what the store now holds in force (see the top). A failure is logged:
 * the change is stored, and the next change, or a restart, loads it. */
static void reload(ph_req *r)
{
    if (!r->env->risk)
        return;
    ph_risk_rule *rules;
    ph_risk_entry *entries;
    size_t nr, ne;
    uint64_t gen;
    ph_err err = {0};
    int rc = ph_store_risk_load(r->env->store, &rules, &nr, &entries, &ne, &gen, &err);
    if (rc == PH_OK) {
        rc = ph_risk_load(r->env->risk, gen, rules, nr, entries, ne, &err);
        free(rules);
        free(entries);
    }
    if (rc < 0)
        ph_log(r->env->log, PH_LOG_ERROR, r->reqid, "risk.load_failed", "error=\"%s\"", err.msg);
}

/* ---- rules ------------------------------------------------------------------ */

int ph_api_risk_rules(ph_req *r)
{
    ph_risk_rule *rules;
    ph_risk_entry *entries;
    size_t nr, ne;
    uint64_t gen;
    ph_err err = {0};
    int rc = ph_store_risk_load(r->env->store, &rules, &nr, &entries, &ne, &gen, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    free(entries);
    json_t *arr = json_array();
    for (size_t i = 0; i < nr; i++)
        json_array_append_new(arr, rule_view(&rules[i]));
    free(rules);
    return ph_req_json(r, 200, json_pack("{s:o}", "rules", arr));
}

/* What a rule change keeps across its suspension. */
typedef struct rule_change {
    char id[PH_RISK_ID_MAX + 1];
    char *json; /* the rule as the writer gets it (jansson's allocator) */
} rule_change;

static void rule_change_free(void *p)
{
    rule_change *c = p;
    if (c)
        ph_json_free(c->json);
    free(c);
}

static int rule_done(ph_req *r)
{
    rule_change *c = r->ext;
    if (r->cmd.rc)
        return ph_req_fail(r, r->cmd.rc, &r->cmd.err);
    reload(r);
    const char *what = r->cmd.in.risk_rule.remove   ? "removed"
                       : r->cmd.in.risk_rule.create ? "created"
                                                    : "updated";
    ph_log(r->env->log, PH_LOG_INFO, r->reqid, "risk.rule_changed", "rule=%s version=%u change=%s",
           c->id, r->cmd.rule_version, what);
    if (r->cmd.in.risk_rule.remove)
        return ph_req_json(r, 200,
                           json_pack("{s:s,s:I,s:b}", "rule", c->id, "version",
                                     (json_int_t)r->cmd.rule_version, "removed", 1));
    ph_risk_rule stored;
    ph_err err = {0};
    int rc = ph_store_risk_rule_get(r->env->store, c->id, &stored, &err);
    if (rc) /* changed again meanwhile, or removed: say what this change did */
        return ph_req_json(r, r->cmd.in.risk_rule.create ? 201 : 200,
                           json_pack("{s:{s:s,s:I}}", "rule", "id", c->id, "version",
                                     (json_int_t)r->cmd.rule_version));
    return ph_req_json(r, r->cmd.in.risk_rule.create ? 201 : 200,
                       json_pack("{s:o}", "rule", rule_view(&stored)));
}

/* POST (create) and PUT (replace): the body is a rule; PUT's id may be left
 * out (the path names it) and its "version" is the version it replaces. */
static int rule_put(ph_req *r, int create)
{
    json_t *b = NULL;
    if (ph_req_body_fields(r, RULE_FIELDS, &b))
        return PH_REQ_DONE;
    uint32_t expect = 0;
    json_t *ver = json_object_get(b, "version");
    if (ver) {
        if (create) {
            json_decref(b);
            return ph_req_error(r, 400, "invalid_request",
                                "version: only when replacing a rule (PUT /v1/risk/rules/{id})");
        }
        if (!json_is_integer(ver) || json_integer_value(ver) < 1 ||
            json_integer_value(ver) > UINT32_MAX) {
            json_decref(b);
            return ph_req_error(r, 400, "invalid_request",
                                "version: expected the version being replaced (an integer >= 1)");
        }
        expect = (uint32_t)json_integer_value(ver);
    }
    /* the store gives these; a rule read back from GET may carry them */
    json_object_del(b, "version");
    json_object_del(b, "created_at");
    json_object_del(b, "updated_at");
    if (!create) {
        json_t *id = json_object_get(b, "id");
        if (!id)
            json_object_set_new(b, "id", json_string(r->seg[0]));
        else if (!json_is_string(id) || strcmp(json_string_value(id), r->seg[0])) {
            json_decref(b);
            return ph_req_error(r, 400, "invalid_request",
                                "id: the body names another rule than the path");
        }
    }
    ph_risk_rule rule;
    ph_err err = {0};
    int rc = ph_risk_rule_parse(b, &rule, &err);
    json_decref(b);
    if (rc)
        return ph_req_error(r, 400, "invalid_request", "%s", err.msg);
    rule_change *c = calloc(1, sizeof *c);
    json_t *j = c ? ph_risk_rule_json(&rule) : NULL;
    if (c)
        c->json = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (!c || !c->json) {
        rule_change_free(c);
        return ph_req_fail(r, PH_ENOMEM, NULL);
    }
    snprintf(c->id, sizeof c->id, "%s", rule.id);
    r->ext = c;
    r->ext_free = rule_change_free;
    r->cmd.type = PH_CMD_RISK_RULE;
    r->cmd.now = ph_now_ms();
    r->cmd.in.risk_rule.id = c->id;
    r->cmd.in.risk_rule.json = c->json;
    r->cmd.in.risk_rule.expect_version = expect;
    r->cmd.in.risk_rule.create = create;
    r->cmd.in.risk_rule.replace = !create;
    ph_req_audit(r, &r->cmd, create ? "risk.rule_create" : "risk.rule_update",
                 json_pack("{s:s,s:s,s:s}", "rule", c->id, "action",
                           ph_risk_action_name(rule.action), "mode",
                           rule.dry_run ? "dry_run" : "enforce"));
    return ph_req_submit(r, rule_done);
}

int ph_api_risk_rule_create(ph_req *r)
{
    return rule_put(r, 1);
}

int ph_api_risk_rule_replace(ph_req *r)
{
    return rule_put(r, 0);
}

/* A rule id from the path, as the store would take it. */
static int path_rule_id(ph_req *r, char *out, size_t cap)
{
    const char *id = r->seg[0];
    size_t n = strlen(id);
    int ok = n >= 1 && n <= PH_RISK_ID_MAX && n < cap;
    for (size_t i = 0; ok && i < n; i++)
        ok = (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9') ||
             strchr("_.-", id[i]);
    if (ok)
        memcpy(out, id, n + 1);
    return ok ? 0 : -1;
}

int ph_api_risk_rule_remove(ph_req *r)
{
    rule_change *c = calloc(1, sizeof *c);
    if (!c)
        return ph_req_fail(r, PH_ENOMEM, NULL);
    r->ext = c;
    r->ext_free = rule_change_free;
    if (path_rule_id(r, c->id, sizeof c->id))
        return ph_req_error(r, 404, "not_found", "no such risk rule");
    uint64_t expect = 0;
    const char *v = ph_req_query(r, "version");
    if (v && (ph_u64_parse(v, &expect) || !expect || expect > UINT32_MAX))
        return ph_req_error(r, 400, "invalid_request",
                            "version: expected the version being removed (an integer >= 1)");
    r->cmd.type = PH_CMD_RISK_RULE;
    r->cmd.now = ph_now_ms();
    r->cmd.in.risk_rule.id = c->id;
    r->cmd.in.risk_rule.remove = 1;
    r->cmd.in.risk_rule.expect_version = (uint32_t)expect;
    ph_req_audit(r, &r->cmd, "risk.rule_remove", json_pack("{s:s}", "rule", c->id));
    return ph_req_submit(r, rule_done);
}

int ph_api_risk_rule_versions(ph_req *r)
{
    char id[PH_RISK_ID_MAX + 1];
    if (path_rule_id(r, id, sizeof id))
        return ph_req_error(r, 404, "not_found", "no such risk rule");
    ph_risk_rule *vs;
    size_t n;
    ph_err err = {0};
    int rc = ph_store_risk_rule_versions(r->env->store, id, &vs, &n, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, rule_view(&vs[i]));
    free(vs);
    /* whether the newest version is in force, or the rule was removed since */
    ph_risk_rule cur;
    int live = ph_store_risk_rule_get(r->env->store, id, &cur, &err) == PH_OK;
    return ph_req_json(r, 200,
                       json_pack("{s:s,s:b,s:o}", "rule", id, "removed", !live, "versions", arr));
}

/* ---- lists -------------------------------------------------------------------- */

static int list_parse(const char *s)
{
    if (s && !strcmp(s, "block"))
        return PH_RISK_BLOCK;
    if (s && !strcmp(s, "allow"))
        return PH_RISK_ALLOWLIST;
    return -1;
}

static json_t *entry_view(const ph_risk_entry *e, int64_t now)
{
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)e->key);
    json_t *j = json_pack(
        "{s:s,s:s,s:s,s:s,s:s}", "list", e->list == PH_RISK_BLOCK ? "block" : "allow", "variable",
        ph_risk_var_name(e->var), "key", hex, "masked", e->masked, "note", e->note);
    if (!j)
        return NULL;
    if (e->expires_at)
        ph_view_time(j, "expires_at", e->expires_at);
    else
        json_object_set_new(j, "expires_at", json_null());
    json_object_set_new(j, "active", json_boolean(!e->expires_at || e->expires_at > now));
    ph_view_time(j, "created_at", e->created_at);
    return j;
}

int ph_api_risk_lists(ph_req *r)
{
    const char *ls = ph_req_query(r, "list");
    int want = 0;
    if (ls && (want = list_parse(ls)) < 0)
        return ph_req_error(r, 400, "invalid_request", "list: expected block or allow");
    ph_risk_rule *rules;
    ph_risk_entry *entries;
    size_t nr, ne;
    uint64_t gen;
    ph_err err = {0};
    int rc = ph_store_risk_load(r->env->store, &rules, &nr, &entries, &ne, &gen, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    free(rules);
    int64_t now = ph_now_ms();
    json_t *arr = json_array();
    for (size_t i = 0; i < ne; i++)
        if (!want || entries[i].list == want)
            json_array_append_new(arr, entry_view(&entries[i], now));
    free(entries);
    return ph_req_json(r, 200, json_pack("{s:o}", "entries", arr));
}

static int list_done(ph_req *r)
{
    if (r->cmd.rc)
        return ph_req_fail(r, r->cmd.rc, &r->cmd.err);
    reload(r);
    const char *list = r->cmd.in.risk_list.list == PH_RISK_BLOCK ? "block" : "allow";
    const char *var = ph_risk_var_name(r->cmd.in.risk_list.var);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)r->cmd.in.risk_list.key);
    ph_log(r->env->log, PH_LOG_INFO, r->reqid, "risk.list_changed",
           "list=%s variable=%s key=%s change=%s", list, var, hex,
           r->cmd.in.risk_list.remove ? "removed" : "added");
    if (r->cmd.in.risk_list.remove)
        return ph_req_json(r, 200,
                           json_pack("{s:s,s:s,s:s,s:b}", "list", list, "variable", var, "key", hex,
                                     "removed", 1));
    ph_risk_entry e = {.list = r->cmd.in.risk_list.list,
                       .var = r->cmd.in.risk_list.var,
                       .key = r->cmd.in.risk_list.key,
                       .expires_at = r->cmd.in.risk_list.expires_at,
                       .created_at = r->cmd.now};
    snprintf(e.masked, sizeof e.masked, "%s", r->cmd.in.risk_list.masked);
    snprintf(e.note, sizeof e.note, "%s", r->cmd.in.risk_list.note);
    return ph_req_json(r, 201, json_pack("{s:o}", "entry", entry_view(&e, r->cmd.now)));
}

/* What a list change keeps across its suspension: the masked form and the note. */
typedef struct list_change {
    char masked[32];
    char note[PH_RISK_NOTE_MAX + 1];
} list_change;

int ph_api_risk_list_add(ph_req *r)
{
    json_t *b = NULL;
    if (ph_req_body_fields(r, "list variable value ttl_s note", &b))
        return PH_REQ_DONE;
    int list = list_parse(json_string_value(json_object_get(b, "list")));
    int var = ph_risk_var_parse(json_string_value(json_object_get(b, "variable")));
    json_t *ttl = json_object_get(b, "ttl_s"), *note = json_object_get(b, "note");
    const char *value = json_string_value(json_object_get(b, "value"));
    const char *bad = NULL;
    if (list < 0)
        bad = "list: expected block or allow";
    else if (var < 0)
        bad = "variable: expected one of user, ip, ip24, device, account, phone, client";
    else if (!value)
        bad = "value: expected the value as a string (it is hashed, never stored)";
    else if (ttl && (!json_is_integer(ttl) || json_integer_value(ttl) < 1 ||
                     json_integer_value(ttl) > 10LL * 365 * 86400))
        bad = "ttl_s: expected 1..315360000 seconds (absent: no expiry)";
    else if (note && (!json_is_string(note) || strlen(json_string_value(note)) > PH_RISK_NOTE_MAX))
        bad = "note: expected a string of at most 256 bytes";
    for (const char *q = note ? json_string_value(note) : NULL; !bad && q && *q; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f)
            bad = "note: control characters are not allowed";
    if (bad) {
        json_decref(b);
        return ph_req_error(r, 400, "invalid_request", "%s", bad);
    }
    list_change *c = calloc(1, sizeof *c);
    if (!c) {
        json_decref(b);
        return ph_req_fail(r, PH_ENOMEM, NULL);
    }
    r->ext = c;
    r->ext_free = free;
    char norm[160];
    ph_err err = {0};
    int rc = ph_risk_value(var, value, norm, sizeof norm, c->masked, &err);
    uint64_t key = rc ? 0 : ph_risk_key(r->env->keys, var, norm, strlen(norm));
    ph_wipe(norm, sizeof norm);
    snprintf(c->note, sizeof c->note, "%s", note ? json_string_value(note) : "");
    int64_t ttl_s = ttl ? json_integer_value(ttl) : 0;
    json_decref(b); /* the wiping allocator clears the value with it */
    if (rc)
        /* "value" is the field; what was wrong with it is said by its variable */
        return ph_req_error(r, 400, "invalid_request", "value: %s", err.msg);
    r->cmd.type = PH_CMD_RISK_LIST;
    r->cmd.now = ph_now_ms();
    r->cmd.in.risk_list.list = list;
    r->cmd.in.risk_list.var = var;
    r->cmd.in.risk_list.key = key;
    r->cmd.in.risk_list.expires_at = ttl_s ? r->cmd.now + ttl_s * 1000 : 0;
    r->cmd.in.risk_list.masked = c->masked;
    r->cmd.in.risk_list.note = c->note;
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)key);
    ph_req_audit(r, &r->cmd, "risk.list_add",
                 json_pack("{s:s,s:s,s:s,s:s}", "list", list == PH_RISK_BLOCK ? "block" : "allow",
                           "variable", ph_risk_var_name(var), "key", hex, "masked", c->masked));
    return ph_req_submit(r, list_done);
}

int ph_api_risk_list_remove(ph_req *r)
{
    int list = list_parse(r->seg[0]);
    int var = ph_risk_var_parse(r->seg[1]);
    const char *hex = r->seg[2];
    uint64_t key = 0;
    int ok = strlen(hex) == 16;
    for (size_t i = 0; ok && i < 16; i++) {
        char ch = hex[i];
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        ok = d >= 0;
        key = key << 4 | (uint64_t)(d < 0 ? 0 : d);
    }
    if (list < 0)
        return ph_req_error(r, 400, "invalid_request", "list: expected block or allow");
    if (var < 0)
        return ph_req_error(r, 400, "invalid_request",
                            "variable: expected one of user, ip, ip24, device, account, phone, "
                            "client");
    if (!ok || !key)
        return ph_req_error(r, 400, "invalid_request",
                            "key: expected the entry's key, 16 lowercase hex digits");
    r->cmd.type = PH_CMD_RISK_LIST;
    r->cmd.now = ph_now_ms();
    r->cmd.in.risk_list.remove = 1;
    r->cmd.in.risk_list.list = list;
    r->cmd.in.risk_list.var = var;
    r->cmd.in.risk_list.key = key;
    ph_req_audit(r, &r->cmd, "risk.list_remove",
                 json_pack("{s:s,s:s,s:s}", "list", r->seg[0], "variable", r->seg[1], "key", hex));
    return ph_req_submit(r, list_done);
}
