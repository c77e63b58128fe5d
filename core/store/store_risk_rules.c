/*
 * store_risk_rules.c — risk rules and lists as data (store.h, RISK_RULE and
 * RISK_LIST; "risk rules" reads; docs/store.md, "Risk rules").
 *
 *   risk_rules:     rule id -> the rule's JSON (ph_risk_rule_json: fixed member
 *                   order, with version, created_at, updated_at)
 *   risk_rule_hist: rule id NUL be32(version) -> the rule's JSON as it was
 *   risk_lists:     list byte, var byte, be64(key) -> the entry's JSON
 *
 * The writer parses what it is given with the engine's own parser
 * (risk/rule.c, pure) and writes the parsed rule back, so a stored rule is
 * always one the engine reads and its bytes depend only on the command.
 * Ops change these a few times a day: nothing here is on an order's path.
 */
#include "store/store_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/wipe_alloc.h"
#include "risk/risk.h"

static const char *list_name(int list)
{
    return list == PH_RISK_BLOCK ? "block" : list == PH_RISK_ALLOWLIST ? "allow" : "?";
}

static int id_ok(const char *id)
{
    if (!id)
        return 0;
    size_t n = strlen(id);
    if (!n || n > PH_RISK_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

static void hist_key(uint8_t *buf, size_t *len, const char *id, uint32_t version)
{
    size_t n = strlen(id);
    memcpy(buf, id, n);
    buf[n] = 0;
    for (int i = 0; i < 4; i++)
        buf[n + 1 + i] = (uint8_t)(version >> (24 - 8 * i));
    *len = n + 5;
}

static void list_key(uint8_t k[10], int list, int var, uint64_t key)
{
    k[0] = (uint8_t)list;
    k[1] = (uint8_t)var;
    for (int i = 0; i < 8; i++)
        k[2 + i] = (uint8_t)(key >> (56 - 8 * i));
}

/* A stored rule back (PH_EIO naming it when it is not one). */
static int rule_decode(const MDB_val *v, const char *what, ph_risk_rule *out, ph_err *err)
{
    json_t *j = json_loadb(v->mv_data, v->mv_size, JSON_REJECT_DUPLICATES, NULL);
    ph_err e2 = {0};
    int rc = j ? ph_risk_rule_parse(j, out, &e2) : PH_EINVAL;
    json_decref(j);
    if (rc || !out->version)
        return ph_err_set(err, PH_EIO, "store: risk rule %s: malformed record", what);
    return PH_OK;
}

/* ---- RISK_RULE -------------------------------------------------------------- */

static int put_rule(ph_wtxn *w, ph_cmd *c, const ph_risk_rule *r)
{
    json_t *j = ph_risk_rule_json(r);
    char *txt = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (!txt)
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    MDB_val k = {strlen(r->id), (void *)r->id}, v = {strlen(txt), txt};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_RISK_RULES], &k, &v, 0);
    if (!mrc) {
        uint8_t hk[PH_RISK_ID_MAX + 5];
        size_t hl;
        hist_key(hk, &hl, r->id, r->version);
        MDB_val h = {hl, hk};
        mrc = mdb_put(w->txn, w->s->dbi[DB_RISK_RULE_HIST], &h, &v, 0);
    }
    ph_json_free(txt);
    return mrc ? ph_store_lmdb_err(&c->err, mrc, "put risk rule") : PH_OK;
}

/* The last version kept in the history (0: none), for a rule created again
 * after a removal: its versions go on from there, never reused. */
static uint32_t hist_last(ph_wtxn *w, const char *id)
{
    MDB_cursor *cur;
    if (mdb_cursor_open(w->txn, w->s->dbi[DB_RISK_RULE_HIST], &cur))
        return 0;
    uint8_t hk[PH_RISK_ID_MAX + 5];
    size_t hl;
    hist_key(hk, &hl, id, UINT32_MAX);
    MDB_val k = {hl, hk}, v;
    uint32_t last = 0;
    size_t n = strlen(id);
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    /* SET_RANGE lands past id's last version (or on exactly UINT32_MAX): step back */
    if (mrc == 0 && !(k.mv_size == hl && !memcmp(k.mv_data, hk, hl)))
        mrc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    else if (mrc == MDB_NOTFOUND)
        mrc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (mrc == 0 && k.mv_size == n + 5 && !memcmp(k.mv_data, id, n + 1)) {
        const uint8_t *b = (const uint8_t *)k.mv_data + n + 1;
        last = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    }
    mdb_cursor_close(cur);
    return last;
}

int store_apply_risk_rule(ph_wtxn *w, ph_cmd *c)
{
    const char *id = c->in.risk_rule.id;
    if (!id_ok(id))
        return ph_err_set(&c->err, PH_EINVAL, "risk rule: id: expected 1..%d bytes of [a-z0-9_.-]",
                          PH_RISK_ID_MAX);
    ph_risk_rule old;
    int have = 0;
    MDB_val k = {strlen(id), (void *)id}, v;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_RISK_RULES], &k, &v);
    if (mrc == 0) {
        int rc = rule_decode(&v, id, &old, &c->err);
        if (rc)
            return rc;
        have = 1;
    } else if (mrc != MDB_NOTFOUND) {
        return ph_store_lmdb_err(&c->err, mrc, "get risk rule");
    }
    if (c->in.risk_rule.create && have)
        return ph_err_set(&c->err, PH_ECONFLICT, "risk rule %s exists (version %u)", id,
                          old.version);
    if (c->in.risk_rule.replace && !have)
        return ph_err_set(&c->err, PH_ENOTFOUND, "no risk rule %s", id);
    uint32_t expect = c->in.risk_rule.expect_version;
    if (expect && (!have || old.version != expect))
        return have ? ph_err_set(&c->err, PH_ECONFLICT, "risk rule %s is at version %u, not %u", id,
                                 old.version, expect)
                    : ph_err_set(&c->err, PH_ENOTFOUND, "no risk rule %s", id);
    const char *change;
    uint32_t version;
    if (c->in.risk_rule.remove) {
        if (!have)
            return ph_err_set(&c->err, PH_ENOTFOUND, "no risk rule %s", id);
        if ((mrc = mdb_del(w->txn, w->s->dbi[DB_RISK_RULES], &k, NULL)))
            return ph_store_lmdb_err(&c->err, mrc, "delete risk rule");
        change = "removed";
        version = old.version;
    } else {
        json_t *j = c->in.risk_rule.json
                        ? json_loads(c->in.risk_rule.json, JSON_REJECT_DUPLICATES, NULL)
                        : NULL;
        if (!json_is_object(j)) {
            json_decref(j);
            return ph_err_set(&c->err, PH_EINVAL, "risk rule %s: json: not a JSON object", id);
        }
        /* the store gives these: what the caller sent of them is not kept */
        json_object_del(j, "version");
        json_object_del(j, "created_at");
        json_object_del(j, "updated_at");
        ph_risk_rule r;
        ph_err pe = {0};
        int rc = ph_risk_rule_parse(j, &r, &pe);
        json_decref(j);
        if (rc)
            return ph_err_set(&c->err, PH_EINVAL, "risk rule: %s", pe.msg);
        if (strcmp(r.id, id))
            return ph_err_set(&c->err, PH_EINVAL, "risk rule %s: id: the rule names another id",
                              id);
        version = have ? old.version + 1 : hist_last(w, id) + 1;
        r.version = version;
        r.created_at = have ? old.created_at : c->now;
        r.updated_at = c->now;
        if ((rc = put_rule(w, c, &r)))
            return rc;
        change = have ? "updated" : "created";
    }
    c->rule_version = version;
    return store_emit(
        w, c->now, "risk.rule_changed",
        json_pack("{s:s,s:I,s:s}", "rule", id, "version", (json_int_t)version, "change", change),
        &c->err);
}

/* ---- RISK_LIST ---------------------------------------------------------------- */

int store_apply_risk_list(ph_wtxn *w, ph_cmd *c)
{
    int list = c->in.risk_list.list, var = c->in.risk_list.var;
    uint64_t key = c->in.risk_list.key;
    if (list != PH_RISK_BLOCK && list != PH_RISK_ALLOWLIST)
        return ph_err_set(&c->err, PH_EINVAL, "risk list: list: expected block or allow");
    if (var < 0 || var >= PH_RISK_VARS)
        return ph_err_set(&c->err, PH_EINVAL, "risk list: variable: unknown");
    if (!key)
        return ph_err_set(&c->err, PH_EINVAL, "risk list: key: 0 is no subject");
    uint8_t kb[10];
    list_key(kb, list, var, key);
    MDB_val k = {sizeof kb, kb}, v;
    const char *masked = c->in.risk_list.masked ? c->in.risk_list.masked : "";
    int64_t expires_at = c->in.risk_list.expires_at;
    const char *change;
    if (c->in.risk_list.remove) {
        int mrc = mdb_get(w->txn, w->s->dbi[DB_RISK_LISTS], &k, &v);
        if (mrc == MDB_NOTFOUND)
            return ph_err_set(&c->err, PH_ENOTFOUND, "no %s list entry for %s %016llx",
                              list_name(list), ph_risk_var_name(var), (unsigned long long)key);
        if (mrc)
            return ph_store_lmdb_err(&c->err, mrc, "get risk list entry");
        /* the event names what was removed by its masked form */
        json_t *e = json_loadb(v.mv_data, v.mv_size, 0, NULL);
        char mbuf[32];
        snprintf(mbuf, sizeof mbuf, "%s",
                 json_string_value(json_object_get(e, "masked"))
                     ? json_string_value(json_object_get(e, "masked"))
                     : "");
        expires_at = json_integer_value(json_object_get(e, "expires_at"));
        json_decref(e);
        if ((mrc = mdb_del(w->txn, w->s->dbi[DB_RISK_LISTS], &k, NULL)))
            return ph_store_lmdb_err(&c->err, mrc, "delete risk list entry");
        change = "removed";
        return store_emit(w, c->now, "risk.list_changed",
                          json_pack("{s:s,s:s,s:s,s:I,s:s}", "list", list_name(list), "variable",
                                    ph_risk_var_name(var), "masked", mbuf, "expires_at",
                                    (json_int_t)expires_at, "change", change),
                          &c->err);
    }
    const char *note = c->in.risk_list.note ? c->in.risk_list.note : "";
    if (!store_text_ok(masked, 31, 0))
        return ph_err_set(&c->err, PH_EINVAL, "risk list: masked: expected 1..31 printable bytes");
    if (!store_text_ok(note, PH_RISK_NOTE_MAX, 1))
        return ph_err_set(&c->err, PH_EINVAL,
                          "risk list: note: expected at most %d printable bytes", PH_RISK_NOTE_MAX);
    if (expires_at < 0)
        return ph_err_set(&c->err, PH_EINVAL, "risk list: expires_at: negative");
    int had = mdb_get(w->txn, w->s->dbi[DB_RISK_LISTS], &k, &v) == 0;
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)key);
    json_t *e = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "list", list_name(list), "variable",
                          ph_risk_var_name(var), "key", hex, "masked", masked, "note", note,
                          "expires_at", (json_int_t)expires_at, "created_at", (json_int_t)c->now);
    char *txt = e ? json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(e);
    if (!txt)
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    v = (MDB_val){strlen(txt), txt};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_RISK_LISTS], &k, &v, 0);
    ph_json_free(txt);
    if (mrc)
        return ph_store_lmdb_err(&c->err, mrc, "put risk list entry");
    change = had ? "replaced" : "added";
    return store_emit(w, c->now, "risk.list_changed",
                      json_pack("{s:s,s:s,s:s,s:I,s:s}", "list", list_name(list), "variable",
                                ph_risk_var_name(var), "masked", masked, "expires_at",
                                (json_int_t)expires_at, "change", change),
                      &c->err);
}

/* ---- reads -------------------------------------------------------------------- */

static int entry_decode(const MDB_val *k, const MDB_val *v, ph_risk_entry *out, ph_err *err)
{
    memset(out, 0, sizeof *out);
    if (k->mv_size != 10)
        return ph_err_set(err, PH_EIO, "store: risk_lists: a key of %zu bytes", k->mv_size);
    const uint8_t *b = k->mv_data;
    out->list = b[0];
    out->var = b[1];
    for (int i = 0; i < 8; i++)
        out->key = out->key << 8 | b[2 + i];
    json_t *j = json_loadb(v->mv_data, v->mv_size, JSON_REJECT_DUPLICATES, NULL);
    const char *m = json_string_value(json_object_get(j, "masked"));
    const char *n = json_string_value(json_object_get(j, "note"));
    json_t *ex = json_object_get(j, "expires_at"), *ca = json_object_get(j, "created_at");
    int bad = !m || !n || !json_is_integer(ex) || !json_is_integer(ca) || strlen(m) > 31 ||
              strlen(n) > PH_RISK_NOTE_MAX ||
              (out->list != PH_RISK_BLOCK && out->list != PH_RISK_ALLOWLIST) ||
              out->var >= PH_RISK_VARS || !out->key;
    if (!bad) {
        snprintf(out->masked, sizeof out->masked, "%s", m);
        snprintf(out->note, sizeof out->note, "%s", n);
        out->expires_at = json_integer_value(ex);
        out->created_at = json_integer_value(ca);
    }
    json_decref(j);
    return bad ? ph_err_set(err, PH_EIO, "store: risk_lists: a malformed entry") : PH_OK;
}

/* Appends to a growing array (n items of size sz); PH_ENOMEM. */
static int push(void **arr, size_t *n, size_t *cap, size_t sz, const void *item)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        void *g = realloc(*arr, nc * sz);
        if (!g)
            return PH_ENOMEM;
        *arr = g;
        *cap = nc;
    }
    memcpy((char *)*arr + *n * sz, item, sz);
    (*n)++;
    return PH_OK;
}

int ph_store_risk_load(ph_store *s, ph_risk_rule **rules, size_t *nrules, ph_risk_entry **entries,
                       size_t *nentries, uint64_t *gen, ph_err *err)
{
    *rules = NULL;
    *entries = NULL;
    *nrules = *nentries = 0;
    *gen = 0;
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    void *ra = NULL, *ea = NULL;
    size_t rn = 0, rcap = 0, en = 0, ecap = 0;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int mrc = mdb_cursor_open(txn, s->dbi[DB_RISK_RULES], &cur);
    for (mrc = mrc ? mrc : mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == PH_OK;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        ph_risk_rule r;
        if ((rc = rule_decode(&v, "in risk_rules", &r, err)) == PH_OK &&
            push(&ra, &rn, &rcap, sizeof r, &r))
            rc = ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    if (cur)
        mdb_cursor_close(cur);
    cur = NULL;
    if (rc == PH_OK && mrc != MDB_NOTFOUND)
        rc = ph_err_set(err, PH_EIO, "store: read risk_rules: %s", mdb_strerror(mrc));
    if (rc == PH_OK) {
        mrc = mdb_cursor_open(txn, s->dbi[DB_RISK_LISTS], &cur);
        for (mrc = mrc ? mrc : mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == PH_OK;
             mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            ph_risk_entry e;
            if ((rc = entry_decode(&k, &v, &e, err)) == PH_OK &&
                push(&ea, &en, &ecap, sizeof e, &e))
                rc = ph_err_set(err, PH_ENOMEM, "out of memory");
        }
        if (cur)
            mdb_cursor_close(cur);
        if (rc == PH_OK && mrc != MDB_NOTFOUND)
            rc = ph_err_set(err, PH_EIO, "store: read risk_lists: %s", mdb_strerror(mrc));
    }
    if (rc == PH_OK)
        *gen = ph_store_last_key(txn, s->dbi[DB_EVENTS]);
    ph_store_read_end(s, txn);
    if (rc) {
        free(ra);
        free(ea);
        return rc;
    }
    *rules = ra;
    *nrules = rn;
    *entries = ea;
    *nentries = en;
    return PH_OK;
}

int ph_store_risk_rule_get(ph_store *s, const char *id, ph_risk_rule *out, ph_err *err)
{
    if (!id_ok(id))
        return ph_err_set(err, PH_ENOTFOUND, "no such risk rule");
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    MDB_val k = {strlen(id), (void *)id}, v;
    int mrc = mdb_get(txn, s->dbi[DB_RISK_RULES], &k, &v);
    if (mrc == MDB_NOTFOUND)
        rc = ph_err_set(err, PH_ENOTFOUND, "no risk rule %s", id);
    else if (mrc)
        rc = ph_err_set(err, PH_EIO, "store: read risk rule %s: %s", id, mdb_strerror(mrc));
    else
        rc = rule_decode(&v, id, out, err);
    ph_store_read_end(s, txn);
    return rc;
}

int ph_store_risk_rule_versions(ph_store *s, const char *id, ph_risk_rule **out, size_t *n,
                                ph_err *err)
{
    *out = NULL;
    *n = 0;
    if (!id_ok(id))
        return ph_err_set(err, PH_ENOTFOUND, "no such risk rule");
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(txn, s->dbi[DB_RISK_RULE_HIST], &cur);
    if (mrc) {
        ph_store_read_end(s, txn);
        return ph_err_set(err, PH_EIO, "store: read risk_rule_hist: %s", mdb_strerror(mrc));
    }
    uint8_t hk[PH_RISK_ID_MAX + 5];
    size_t hl, idn = strlen(id);
    hist_key(hk, &hl, id, 0);
    MDB_val k = {hl, hk}, v;
    void *arr = NULL;
    size_t cnt = 0, cap = 0;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); mrc == 0 && rc == PH_OK;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != idn + 5 || memcmp(k.mv_data, id, idn + 1))
            break;
        ph_risk_rule r;
        if ((rc = rule_decode(&v, id, &r, err)) == PH_OK && push(&arr, &cnt, &cap, sizeof r, &r))
            rc = ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    mdb_cursor_close(cur);
    ph_store_read_end(s, txn);
    if (rc == PH_OK && !cnt)
        rc = ph_err_set(err, PH_ENOTFOUND, "no risk rule %s", id);
    if (rc) {
        free(arr);
        return rc;
    }
    *out = arr;
    *n = cnt;
    return PH_OK;
}
