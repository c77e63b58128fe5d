/*
 * cmd_jobs.c — `perkctl jobs`: the server's scheduled jobs (GET /v1/jobs),
 * and `perkctl jobs run ID`: a run now (POST /v1/jobs/ID/run, audited).
 */
#include <stdio.h>
#include <string.h>

#include "perkctl.h"

/* A job id as the server makes them: the only characters put in the path. */
static int job_id_ok(const char *id)
{
    size_t n = strlen(id);
    if (!n || n >= 96)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
              (id[i] >= '0' && id[i] <= '9') || strchr("._/:-", id[i])))
            return 0;
    return 1;
}

int pk_cmd_jobs(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *args[2];
    int stop = pk_args(cmd, argc, argv, args, 2);
    if (stop >= 0)
        return stop;
    pkh_response resp;
    int rc;
    if (!args[0]) {
        static const pk_column cols[] = {{"ID", "id", NULL},
                                         {"EVERY_S", "every_s", NULL},
                                         {"RUNNING", "running", NULL},
                                         {"RUNS", "runs", NULL},
                                         {"LAST_RUN", "last_run.started_at", NULL},
                                         {"OK", "last_run.ok", NULL},
                                         {"NEXT_RUN", "next_run_at", NULL},
                                         {"OUTCOME", "last_run.outcome", NULL}};
        pkh_request req = {.method = "GET", .path = "/v1/jobs"};
        return pk_list(ctx, &req, "jobs", cols, sizeof cols / sizeof *cols, NULL, "no jobs");
    }
    if (strcmp(args[0], "run"))
        return pk_usage_error(cmd, "unknown subcommand '%s': expected run", args[0]);
    if (!args[1])
        return pk_usage_error(cmd, "run: the job's ID is required (perkctl jobs lists them)");
    if (!job_id_ok(args[1]))
        return pk_usage_error(cmd, "run: '%s' is not a job id (letters, digits and ._/:-)",
                              args[1]);
    char path[160];
    snprintf(path, sizeof path, "/v1/jobs/%s/run", args[1]);
    pkh_request req = {.method = "POST", .path = path};
    rc = pk_call(ctx, &req, &resp);
    if (ctx->json)
        pk_print_raw(&resp);
    else if (rc == PK_EXIT_OK) {
        char q[128];
        pk_line(stdout, "queued %s", pk_field(resp.json, "queued", q, sizeof q));
    }
    pkh_response_free(&resp);
    return rc;
}
