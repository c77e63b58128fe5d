/*
 * api_jobs.c — the scheduler's jobs (ops): GET /v1/jobs lists every job with
 * its period, its last run and outcome, its next run and its run count;
 * POST /v1/jobs/{id}/run asks for a run now (202: queued).
 *
 * A job id may hold one '/' ("sync.catalog/simA"), sent as is or as %2F
 * (decoded before routing either way): two routes lead here, and the id is
 * what lies between "/v1/jobs/" and "/run".
 *
 * The ask is an ops action, so it goes through the writer first
 * (PH_CMD_JOB_ASK carries the audit record and keeps the ask in the job's
 * record: a restart before the run still runs it), and the job is triggered
 * once that is durable.
 */
#include <stdio.h>
#include <string.h>

#include "base/util.h"
#include "http/api.h"
#include "http/views.h"
#include "sched/sched.h"

static json_t *job_view(const ph_sched_info *j)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(j->id));
    json_object_set_new(o, "every_s",
                        j->every_ms % 1000 ? json_real((double)j->every_ms / 1000)
                                           : json_integer(j->every_ms / 1000));
    json_object_set_new(o, "running", json_boolean(j->running));
    if (j->last_started_at) {
        json_t *l = json_object();
        ph_view_time(l, "started_at", j->last_started_at);
        ph_view_time(l, "ended_at", j->last_ended_at);
        json_object_set_new(l, "ok", json_boolean(j->last_ok == 1));
        json_object_set_new(l, "outcome", json_string(j->last_outcome));
        json_object_set_new(o, "last_run", l);
    } else {
        json_object_set_new(o, "last_run", json_null());
    }
    ph_view_time(o, "next_run_at", j->next_due);
    if (!j->next_due)
        json_object_set_new(o, "next_run_at", json_null());
    json_object_set_new(o, "queued", json_boolean(j->manual));
    json_object_set_new(o, "runs", json_integer((json_int_t)j->runs));
    return o;
}

int ph_api_jobs(ph_req *r)
{
    ph_sched_info *v = NULL;
    size_t n = 0;
    if (!r->env->sched)
        return ph_req_error(r, 503, "unavailable", "the scheduler is not running");
    if (ph_sched_list(r->env->sched, &v, &n) != PH_OK)
        return ph_req_fail(r, PH_ENOMEM, NULL);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, job_view(&v[i]));
    free(v);
    return ph_req_json(r, 200, json_pack("{s:o}", "jobs", list));
}

/* The id between "/v1/jobs/" and "/run" into r->arg[0]; 0, or -1 with a 404. */
static int job_id(ph_req *r)
{
    const char *p = r->path + strlen("/v1/jobs/");
    size_t n = strlen(p) - strlen("/run"); /* the routes guarantee both ends */
    if (n < sizeof r->arg[0]) {
        memcpy(r->arg[0], p, n);
        r->arg[0][n] = 0;
    } else {
        r->arg[0][0] = 0;
    }
    ph_sched_info info;
    if (r->arg[0][0] && ph_sched_get(r->env->sched, r->arg[0], &info) == PH_OK)
        return 0;
    /* only an id we could have made is named back: the path is the caller's text */
    if (ph_sched_id_valid(r->arg[0]))
        ph_req_error(r, 404, "not_found", "job: no job '%s' (GET /v1/jobs lists them)", r->arg[0]);
    else
        ph_req_error(r, 404, "not_found", "job: no such job (not a job id)");
    return -1;
}

static int job_asked(ph_req *r)
{
    if (r->cmd.rc != PH_OK)
        return ph_req_fail(r, r->cmd.rc, &r->cmd.err);
    ph_err err = {0};
    int rc = ph_sched_trigger(r->env->sched, r->arg[0], &err);
    if (rc == PH_ENOTFOUND) /* removed by a reload meanwhile */
        return ph_req_error(r, 404, "not_found", "job: no job '%s' (GET /v1/jobs lists them)",
                            r->arg[0]);
    if (rc != PH_OK)
        return ph_req_fail(r, rc, &err);
    ph_log(r->env->log, PH_LOG_INFO, r->reqid, "job.asked", "job=%s by=%s", r->arg[0],
           r->client->name);
    return ph_req_json(r, 202, json_pack("{s:s}", "queued", r->arg[0]));
}

int ph_api_job_run(ph_req *r)
{
    if (!r->env->sched)
        return ph_req_error(r, 503, "unavailable", "the scheduler is not running");
    if (job_id(r))
        return PH_REQ_DONE;
    r->cmd.type = PH_CMD_JOB_ASK;
    r->cmd.now = ph_now_ms();
    r->cmd.in.job.id = r->arg[0];
    ph_req_audit(r, &r->cmd, "jobs.run", json_pack("{s:s}", "job", r->arg[0]));
    return ph_req_submit(r, job_asked);
}
