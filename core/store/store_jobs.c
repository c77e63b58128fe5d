/*
 * store_jobs.c — what the scheduler keeps across restarts (store.h, "scheduled
 * jobs"; docs/store.md, "Jobs"): one record per job id in `jobs`, written by
 * PH_CMD_JOB_RAN when a run ends and PH_CMD_JOB_ASK when ops ask for one, and
 * read back by the daemon when it adds the job at start.
 *
 * The record is a small JSON object (a write a second at most per job, read
 * once per start): its last run, its next due time, its run count and a
 * pending ask. Applying is a deterministic function of the record and the
 * command: the times are the command's.
 */
#include "store/store_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/wipe_alloc.h"

/* A key we can keep and name in messages: printable ASCII without spaces. */
static int job_id_ok(const char *id)
{
    if (!id || !store_text_ok(id, PH_JOB_ID_MAX - 1, 0))
        return 0;
    return strchr(id, ' ') == NULL;
}

static int64_t int_of(json_t *o, const char *key, int *bad)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v)) {
        *bad = 1;
        return 0;
    }
    return (int64_t)json_integer_value(v);
}

/* Decodes a stored record; PH_EIO naming the job when malformed. */
static int job_decode(const char *id, const MDB_val *v, ph_job_record *out, ph_err *err)
{
    json_t *o = json_loadb(v->mv_data, v->mv_size, JSON_REJECT_DUPLICATES, NULL);
    int bad = !json_is_object(o);
    memset(out, 0, sizeof *out);
    if (!bad) {
        out->last_started_at = int_of(o, "last_started_at", &bad);
        out->last_ended_at = int_of(o, "last_ended_at", &bad);
        out->last_ok = (int)int_of(o, "last_ok", &bad);
        out->next_due = int_of(o, "next_due", &bad);
        out->runs = (uint64_t)int_of(o, "runs", &bad);
        out->asked_at = int_of(o, "asked_at", &bad);
        const char *t = json_string_value(json_object_get(o, "last_outcome"));
        if (!t || strlen(t) > PH_JOB_OUTCOME_MAX)
            bad = 1;
        else
            snprintf(out->last_outcome, sizeof out->last_outcome, "%s", t);
    }
    json_decref(o);
    return bad ? ph_err_set(err, PH_EIO, "store: jobs: the record of job %s is malformed", id)
               : PH_OK;
}

static int job_put(ph_wtxn *w, ph_cmd *c, const ph_job_record *r)
{
    json_t *o = json_pack("{s:I,s:I,s:i,s:s,s:I,s:I,s:I}", "last_started_at",
                          (json_int_t)r->last_started_at, "last_ended_at",
                          (json_int_t)r->last_ended_at, "last_ok", r->last_ok, "last_outcome",
                          r->last_outcome, "next_due", (json_int_t)r->next_due, "runs",
                          (json_int_t)r->runs, "asked_at", (json_int_t)r->asked_at);
    char *txt = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!txt)
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    MDB_val k = {strlen(c->in.job.id), (void *)c->in.job.id}, v = {strlen(txt), txt};
    int mrc = mdb_put(w->txn, w->s->dbi[DB_JOBS], &k, &v, 0);
    ph_json_free(txt);
    return mrc ? ph_store_lmdb_err(&c->err, mrc, "put job") : PH_OK;
}

int store_apply_job(ph_wtxn *w, ph_cmd *c)
{
    const char *id = c->in.job.id;
    if (!job_id_ok(id))
        return ph_err_set(&c->err, PH_EINVAL,
                          "job: id: expected 1 to %d bytes of printable ASCII without spaces",
                          PH_JOB_ID_MAX - 1);
    ph_job_record r = {.last_ok = -1};
    MDB_val k = {strlen(id), (void *)id}, v;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_JOBS], &k, &v);
    if (mrc == 0) {
        int rc = job_decode(id, &v, &r, &c->err);
        if (rc)
            return rc;
    } else if (mrc != MDB_NOTFOUND) {
        return ph_store_lmdb_err(&c->err, mrc, "get job");
    }
    if (c->type == PH_CMD_JOB_ASK) {
        r.asked_at = c->now;
        return job_put(w, c, &r);
    }
    const char *outcome = c->in.job.outcome ? c->in.job.outcome : "";
    if (!store_text_ok(outcome, PH_JOB_OUTCOME_MAX, 1))
        return ph_err_set(&c->err, PH_EINVAL,
                          "job %s: outcome: expected printable ASCII of at most %d bytes", id,
                          PH_JOB_OUTCOME_MAX);
    if (c->in.job.ok != 0 && c->in.job.ok != 1)
        return ph_err_set(&c->err, PH_EINVAL, "job %s: ok: expected 0 or 1", id);
    if (c->in.job.ended_at < c->in.job.started_at || c->in.job.started_at <= 0)
        return ph_err_set(&c->err, PH_EINVAL,
                          "job %s: started_at, ended_at: expected 0 < started_at <= ended_at", id);
    if (c->in.job.next_due < 0)
        return ph_err_set(&c->err, PH_EINVAL, "job %s: next_due: negative", id);
    r.last_started_at = c->in.job.started_at;
    r.last_ended_at = c->in.job.ended_at;
    r.last_ok = c->in.job.ok;
    snprintf(r.last_outcome, sizeof r.last_outcome, "%s", outcome);
    r.next_due = c->in.job.next_due;
    r.runs += c->in.job.runs ? c->in.job.runs : 1;
    if (r.asked_at && (c->in.job.manual || r.asked_at <= c->in.job.started_at))
        r.asked_at = 0;
    return job_put(w, c, &r);
}

int ph_store_job_get(ph_store *s, const char *id, ph_job_record *out, ph_err *err)
{
    if (!job_id_ok(id))
        return ph_err_set(err, PH_ENOTFOUND, "no job record");
    MDB_txn *txn;
    int rc = ph_store_read_begin(s, &txn, err);
    if (rc)
        return rc;
    MDB_val k = {strlen(id), (void *)id}, v;
    int mrc = mdb_get(txn, s->dbi[DB_JOBS], &k, &v);
    if (mrc == MDB_NOTFOUND)
        rc = ph_err_set(err, PH_ENOTFOUND, "no record of job %s", id);
    else if (mrc)
        rc = ph_err_set(err, PH_EIO, "store: read job %s: %s", id, mdb_strerror(mrc));
    else
        rc = job_decode(id, &v, out, err);
    ph_store_read_end(s, txn);
    return rc;
}

int store_check_jobs(ph_store *s, MDB_txn *txn, ph_err *err)
{
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(txn, s->dbi[DB_JOBS], &cur);
    if (mrc)
        return ph_err_set(err, PH_EIO, "store: read jobs: %s", mdb_strerror(mrc));
    int rc = PH_OK;
    MDB_val k, v;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == PH_OK;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        char id[PH_JOB_ID_MAX];
        ph_job_record r;
        if (k.mv_size == 0 || k.mv_size >= sizeof id || memchr(k.mv_data, 0, k.mv_size)) {
            rc = ph_err_set(err, PH_EIO, "jobs: a key that is not a job id (%zu bytes)", k.mv_size);
            break;
        }
        memcpy(id, k.mv_data, k.mv_size);
        id[k.mv_size] = 0;
        if (!job_id_ok(id)) {
            rc = ph_err_set(err, PH_EIO, "jobs: a key that is not a job id");
            break;
        }
        if ((rc = job_decode(id, &v, &r, err)) != PH_OK)
            break;
        int never = r.last_started_at == 0;
        if (r.last_started_at < 0 || r.last_ended_at < r.last_started_at || r.next_due < 0 ||
            r.asked_at < 0 || r.last_ok < -1 || r.last_ok > 1 || (r.last_ok == -1) != never ||
            (never && (r.last_ended_at || r.runs)))
            rc = ph_err_set(err, PH_EIO,
                            "jobs: the record of job %s is inconsistent (its last run's times, "
                            "ok or run count)",
                            id);
    }
    if (rc == PH_OK && mrc != MDB_NOTFOUND)
        rc = ph_err_set(err, PH_EIO, "store: read jobs: %s", mdb_strerror(mrc));
    mdb_cursor_close(cur);
    return rc;
}
