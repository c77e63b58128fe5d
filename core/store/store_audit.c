/*
 * store_audit.c — the audit trail: who did which ops action, and what
 * (store.h, ph_audit; docs/store.md, "Audit").
 *
 * The writer appends a command's audit record right after the command applied
 * and inside the same transaction (store.c, run_cmd), so the record and the
 * change it describes commit together or not at all: a kill -9 never leaves a
 * change without its record or a record without its change, and a refused
 * command leaves neither. Like every apply step it is a deterministic function
 * of the command (its time is cmd->now, its id follows the last key), so a
 * replay of the journal writes the same bytes.
 */
#include "store/store_int.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "crypto/wipe_alloc.h"

/* [a-z0-9_.]{1,max}: an action or a channel name, fixed by our code. */
static int word_valid(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
              s[i] == '.'))
            return 0;
    return 1;
}

/* The facts only the writer knows once the command applied (the ids it gave
 * out, what it counted), for the commands that have any; NULL otherwise. */
static json_t *audit_result(const ph_cmd *c)
{
    switch (c->type) {
    case PH_CMD_IMPORT:
        return json_pack("{s:I,s:I}", "batch_id", (json_int_t)c->batch_id, "codes",
                         (json_int_t)c->batch.count);
    case PH_CMD_VOID_BATCH:
        return json_pack("{s:I,s:I,s:I}", "batch_id", (json_int_t)c->batch.id, "voided_codes",
                         (json_int_t)c->voided_codes, "affected_orders", (json_int_t)c->naffected);
    default:
        return NULL;
    }
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

int store_audit_append(ph_wtxn *w, ph_cmd *c, uint64_t events_from)
{
    const ph_audit *a = c->audit;
    if (!a)
        return PH_OK;
    if (!word_valid(a->action, PH_AUDIT_ACTION_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "audit.action: expected [a-z0-9_.], 1 to %d bytes",
                          PH_AUDIT_ACTION_MAX);
    if (a->client && !ph_ident_valid(a->client, PH_SKU_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "audit.client: not a client name");
    if (a->peer && !ph_ident_valid(a->peer, PH_AUDIT_PEER_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "audit.peer: not an address");
    if (a->request_id && !ph_ident_valid(a->request_id, PH_AUDIT_REQID_MAX))
        return ph_err_set(&c->err, PH_EINVAL, "audit.request_id: not a request id");
    if (a->via && !word_valid(a->via, 16))
        return ph_err_set(&c->err, PH_EINVAL, "audit.via: expected [a-z0-9_.], 1 to 16 bytes");
    json_t *what = NULL;
    if (a->what && strlen(a->what) <= PH_AUDIT_WHAT_MAX)
        what = json_loads(a->what, JSON_REJECT_DUPLICATES, NULL);
    else if (!a->what)
        what = json_object();
    if (!json_is_object(what)) {
        json_decref(what);
        return ph_err_set(&c->err, PH_EINVAL, "audit.what: not a JSON object of at most %d bytes",
                          PH_AUDIT_WHAT_MAX);
    }
    char at[32];
    uint64_t id = w->ids.audit;
    json_t *rec =
        json_pack("{s:I,s:s,s:s,s:o,s:o,s:o,s:s,s:o}", "id", (json_int_t)id, "at",
                  ph_time_format(c->now, at, sizeof at), "action", a->action, "client",
                  str_or_null(a->client), "peer", str_or_null(a->peer), "request_id",
                  str_or_null(a->request_id), "via", a->via ? a->via : "http", "what", what);
    json_t *result = audit_result(c);
    if (rec && result)
        json_object_set_new(rec, "result", result);
    else
        json_decref(result);
    if (rec && w->ids.event > events_from) /* the events this command wrote, for the feed */
        json_object_set_new(rec, "events",
                            json_pack("{s:I,s:I}", "first", (json_int_t)events_from, "last",
                                      (json_int_t)(w->ids.event - 1)));
    char *txt = rec ? json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(rec);
    if (!txt)
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    MDB_val k = {8, &id}, v = {strlen(txt), txt};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_AUDIT], &k, &v, MDB_APPEND);
    ph_json_free(txt);
    if (mrc)
        return ph_store_lmdb_err(&c->err, mrc, "append audit record");
    w->ids.audit++;
    return PH_OK;
}

/* ---- reading ------------------------------------------------------------------ */

/* Does the record match the filter? A record that does not parse matches
 * nothing but is no reason to fail the page (--check-store names it). */
static int audit_matches(const ph_audit_filter *f, const MDB_val *v)
{
    if (!f || (!f->from && !f->to && !f->client && !f->action))
        return 1;
    json_t *rec = json_loadb(v->mv_data, v->mv_size, 0, NULL);
    const char *at = json_string_value(json_object_get(rec, "at"));
    const char *client = json_string_value(json_object_get(rec, "client"));
    const char *action = json_string_value(json_object_get(rec, "action"));
    int64_t ms = 0;
    int ok = at && ph_time_parse(at, strlen(at), &ms) == 0 && (!f->from || ms >= f->from) &&
             (!f->to || ms <= f->to) && (!f->client || (client && !strcmp(client, f->client))) &&
             (!f->action || (action && !strcmp(action, f->action)));
    json_decref(rec);
    return ok;
}

int ph_store_audit_list(ph_store *s, const ph_audit_filter *f, uint64_t after, size_t limit,
                        size_t scan, char ***out, size_t *n, uint64_t *next_after, int *more,
                        ph_err *err)
{
    *out = NULL;
    *n = 0;
    *next_after = after;
    *more = 0;
    if (!scan)
        scan = 10000;
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    int mrc = mdb_cursor_open(txn, s->dbi[DB_AUDIT], &cur);
    if (mrc) {
        ph_store_read_end(s, txn);
        return ph_err_set(err, PH_EIO, "store: read audit: %s", mdb_strerror(mrc));
    }
    size_t cap = 0, seen = 0;
    char **list = NULL;
    uint64_t from = after + 1;
    MDB_val k = {8, &from}, v;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (*n == limit || seen == scan) {
            *more = 1;
            break;
        }
        uint64_t id;
        if (k.mv_size != 8) {
            rc = ph_err_set(err, PH_EIO, "store: audit: malformed key");
            break;
        }
        memcpy(&id, k.mv_data, 8);
        seen++;
        *next_after = id;
        if (!audit_matches(f, &v))
            continue;
        char **g = *n == cap ? ph_grow(list, &cap, sizeof *g, 16) : list;
        char *txt = g ? strndup(v.mv_data, v.mv_size) : NULL;
        if (g)
            list = g;
        if (!txt) {
            rc = ph_err_set(err, PH_ENOMEM, "out of memory");
            break;
        }
        list[(*n)++] = txt;
    }
    if (rc == PH_OK && mrc && mrc != MDB_NOTFOUND)
        rc = ph_err_set(err, PH_EIO, "store: read audit: %s", mdb_strerror(mrc));
    mdb_cursor_close(cur);
    ph_store_read_end(s, txn);
    if (rc) {
        ph_store_event_list_free(list, *n);
        *n = 0;
        *next_after = after;
        *more = 0;
        return rc;
    }
    *out = list;
    return PH_OK;
}

/* ---- checking ------------------------------------------------------------------- */

int store_audit_check(ph_store *s, MDB_txn *txn, ph_err *err)
{
    MDB_stat es;
    MDB_cursor *cur;
    MDB_val k, v;
    int mrc = mdb_stat(txn, s->dbi[DB_EVENTS], &es);
    if (mrc == 0)
        mrc = mdb_cursor_open(txn, s->dbi[DB_AUDIT], &cur);
    if (mrc)
        return ph_err_set(err, PH_EIO, "store: cannot read audit: %s", mdb_strerror(mrc));
    uint64_t expect = 1, events = es.ms_entries; /* events are 1..n (invariant 9) */
    int rc = PH_OK;
    for (int op = MDB_FIRST; rc == PH_OK && mdb_cursor_get(cur, &k, &v, op) == 0;
         op = MDB_NEXT, expect++) {
        uint64_t id = 0;
        if (k.mv_size == 8)
            memcpy(&id, k.mv_data, 8);
        if (id != expect) {
            rc = ph_err_set(err, PH_EIO, "audit: expected record %llu, found %llu",
                            (unsigned long long)expect, (unsigned long long)id);
            break;
        }
        json_t *rec = json_loadb(v.mv_data, v.mv_size, JSON_REJECT_DUPLICATES, NULL);
        json_t *jid = json_object_get(rec, "id"), *ev = json_object_get(rec, "events");
        const char *at = json_string_value(json_object_get(rec, "at"));
        int64_t ms;
        json_int_t first = json_integer_value(json_object_get(ev, "first")),
                   last = json_integer_value(json_object_get(ev, "last"));
        if (!json_is_integer(jid) || (uint64_t)json_integer_value(jid) != id ||
            !json_is_string(json_object_get(rec, "action")) || !at ||
            ph_time_parse(at, strlen(at), &ms) || !json_is_object(json_object_get(rec, "what")))
            rc = ph_err_set(err, PH_EIO,
                            "corrupted: sub-database audit: record %llu is not an audit record "
                            "(JSON, id, at, action, what)",
                            (unsigned long long)id);
        else if (ev && (first < 1 || last < first || (uint64_t)last > events))
            rc = ph_err_set(err, PH_EIO,
                            "audit record %llu names events %lld to %lld, the store holds 1 to "
                            "%llu",
                            (unsigned long long)id, (long long)first, (long long)last,
                            (unsigned long long)events);
        json_decref(rec);
    }
    mdb_cursor_close(cur);
    return rc;
}
