/*
 * cmd_snapshot.c — `perkctl snapshot list|take|pull`: the server's snapshots
 * of its store (docs/replication.md, "Snapshots").
 *
 *  list   GET /v1/snapshots
 *  take   POST /v1/jobs/snapshots.take/run (audited), then GET /v1/jobs until
 *         that run ended; prints its outcome
 *  pull   GET /v1/snapshots/latest into DIR/data.mdb: written to a temporary
 *         name in DIR, fsynced, renamed, so DIR/data.mdb is whole or absent;
 *         prints the snapshot's repl_seq (a node started on DIR applies the
 *         stream after it)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "perkctl.h"

#define SNAP_JOB "snapshots.take"

static int snap_list(const pk_ctx *ctx)
{
    static const pk_column cols[] = {{"FILE", "file", NULL},
                                     {"REPL_SEQ", "repl_seq", NULL},
                                     {"BYTES", "bytes", NULL},
                                     {"TAKEN_AT", "taken_at", NULL}};
    pkh_request req = {.method = "GET", .path = "/v1/snapshots"};
    return pk_list(ctx, &req, "snapshots", cols, sizeof cols / sizeof *cols, NULL,
                   "no snapshots (perkctl snapshot take)");
}

/* The job's entry of GET /v1/jobs: its run count, and whether a run is
 * queued or running. 0, or an exit status. */
static int job_state(const pk_ctx *ctx, long long *runs, int *busy, char *outcome, size_t olen,
                     int *ok)
{
    pkh_request req = {.method = "GET", .path = "/v1/jobs"};
    pkh_response resp;
    int rc = pk_call(ctx, &req, &resp);
    json_t *jobs = rc == PK_EXIT_OK ? json_object_get(resp.json, "jobs") : NULL;
    size_t i;
    json_t *j, *found = NULL;
    json_array_foreach(jobs, i, j)
    {
        const char *id = json_string_value(json_object_get(j, "id"));
        if (id && !strcmp(id, SNAP_JOB))
            found = j;
    }
    if (rc == PK_EXIT_OK && !found) {
        fprintf(stderr, "perkctl snapshot: the server has no job " SNAP_JOB "\n");
        rc = PK_EXIT_REFUSED;
    }
    if (rc == PK_EXIT_OK) {
        *runs = (long long)json_integer_value(json_object_get(found, "runs"));
        *busy = json_is_true(json_object_get(found, "running")) ||
                json_is_true(json_object_get(found, "queued"));
        json_t *last = json_object_get(found, "last_run");
        *ok = json_is_true(json_object_get(last, "ok"));
        const char *o = json_string_value(json_object_get(last, "outcome"));
        snprintf(outcome, olen, "%s", o ? o : "-");
    }
    pkh_response_free(&resp);
    return rc;
}

static int snap_take(const pk_ctx *ctx)
{
    long long before, runs;
    int busy, ok;
    char outcome[256];
    int rc = job_state(ctx, &before, &busy, outcome, sizeof outcome, &ok);
    if (rc != PK_EXIT_OK)
        return rc;
    pkh_request req = {.method = "POST", .path = "/v1/jobs/" SNAP_JOB "/run"};
    pkh_response resp;
    rc = pk_call(ctx, &req, &resp);
    pkh_response_free(&resp);
    if (rc != PK_EXIT_OK)
        return rc;
    /* the run is done when the count passed it and nothing is queued (an ask
     * during a run makes one more run after it) */
    for (int i = 0; i < 6000; i++) {
        struct timespec ts = {0, 100 * 1000000L}; /* polling the server, 10 per second */
        nanosleep(&ts, NULL);
        if ((rc = job_state(ctx, &runs, &busy, outcome, sizeof outcome, &ok)) != PK_EXIT_OK)
            return rc;
        if (runs > before && !busy) {
            if (!ok) {
                pk_line(stderr, "perkctl snapshot: take: %s", outcome);
                return PK_EXIT_REFUSED;
            }
            pk_line(stdout, "%s", outcome);
            return PK_EXIT_OK;
        }
    }
    fprintf(stderr, "perkctl snapshot: take: the run did not end within 10 minutes (perkctl "
                    "jobs shows it)\n");
    return PK_EXIT_REFUSED;
}

/* mkdir -p, new directories 0700 (a store's). 0, or -1 with errno. */
static int mkdir_parents(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", dir);
    for (char *c = p + 1; *c; c++) {
        if (*c != '/')
            continue;
        *c = 0;
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            return -1;
        *c = '/';
    }
    return mkdir(p, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

static int snap_pull(const pk_ctx *ctx, const pk_cmd *cmd, const char *dir)
{
    char final[4096], tmp[4200];
    if (!dir)
        return pk_usage_error(cmd, "pull: --out DIR is required (the new node's data_dir)");
    if ((size_t)snprintf(final, sizeof final, "%s/data.mdb", dir) >= sizeof final)
        return pk_usage_error(cmd, "pull: --out: the path is too long");
    if (mkdir_parents(dir) != 0) {
        fprintf(stderr, "perkctl snapshot: pull: cannot make '%s': %s\n", dir, strerror(errno));
        return PK_EXIT_USAGE;
    }
    if (access(final, F_OK) == 0) {
        fprintf(stderr,
                "perkctl snapshot: pull: '%s' exists: a store is there already; pull into an "
                "empty directory\n",
                final);
        return PK_EXIT_USAGE;
    }
    snprintf(tmp, sizeof tmp, "%s/.data.mdb.pull.%ld", dir, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        fprintf(stderr, "perkctl snapshot: pull: cannot create '%s': %s\n", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        unlink(tmp);
        return PK_EXIT_USAGE;
    }
    /* a whole store: an hour, not the default timeout of one answer */
    pk_ctx big = *ctx;
    if (big.http.timeout_s && big.http.timeout_s < 3600)
        big.http.timeout_s = 3600;
    pkh_request req = {.method = "GET", .path = "/v1/snapshots/latest", .out_file = f};
    pkh_response resp;
    int rc = pk_call(&big, &req, &resp);
    int werr = 0;
    if (rc == PK_EXIT_OK && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        werr = errno;
    if (fclose(f) != 0 && !werr)
        werr = errno;
    if (rc == PK_EXIT_OK && werr) {
        fprintf(stderr, "perkctl snapshot: pull: cannot write '%s': %s\n", tmp, strerror(werr));
        rc = PK_EXIT_REFUSED;
    }
    if (rc == PK_EXIT_OK && rename(tmp, final) != 0) {
        fprintf(stderr, "perkctl snapshot: pull: cannot rename to '%s': %s\n", final,
                strerror(errno));
        rc = PK_EXIT_REFUSED;
    }
    if (rc != PK_EXIT_OK) {
        unlink(tmp);
    } else {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd); /* the rename, durable */
            close(dfd);
        }
        if (ctx->json)
            printf("{\"file\":\"data.mdb\",\"repl_seq\":%s,\"bytes\":%lld}\n",
                   resp.repl_seq[0] ? resp.repl_seq : "0", resp.out_bytes);
        else
            pk_line(stdout, "%s: repl_seq %s, %lld bytes", final,
                    resp.repl_seq[0] ? resp.repl_seq : "0", resp.out_bytes);
    }
    pkh_response_free(&resp);
    return rc;
}

int pk_cmd_snapshot(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *args[1], *out = NULL;
    const pk_opt opts[] = {PK_OPT_TEXT("out", &out), PK_OPT_END};
    int rc = pk_parse(cmd, argc, argv, opts, &(pk_pos){args, 1, NULL});
    if (rc >= 0)
        return rc;
    if (!args[0])
        return pk_usage_error(cmd, "expected list, take or pull");
    if (strcmp(args[0], "pull") && out)
        return pk_usage_error(cmd, "--out: only for pull");
    if (!strcmp(args[0], "list"))
        return snap_list(ctx);
    if (!strcmp(args[0], "take"))
        return snap_take(ctx);
    if (!strcmp(args[0], "pull"))
        return snap_pull(ctx, cmd, out);
    return pk_usage_error(cmd, "unknown subcommand '%s': expected list, take or pull", args[0]);
}
