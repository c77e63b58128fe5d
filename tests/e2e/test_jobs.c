/*
 * The scheduler's jobs against a real perkhubd (issue 12, item 1):
 *   - GET /v1/jobs (ops only) lists codes.expire with its period, last run
 *     and next run; POST /v1/jobs/{id}/run runs it now (202), audited, and the
 *     run retires codes that expired; an unknown id is a 404 naming it (a
 *     malformed one is not quoted), and nothing is audited for it;
 *   - a restart between two runs neither skips nor doubles: the next run and
 *     the stored run count are what they were; a job whose due time passed
 *     while the daemon was down (several periods) runs once at start.
 * The expiry job's period comes from expiry.every_s: an hour, so that only
 * what the test does makes it run. Every wait polls a condition.
 */
#include <criterion/criterion.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

static h_daemon D;

static void teardown(void)
{
    h_leftover(&D);
}

TestSuite(jobs, .fini = teardown, .timeout = 240);

#define HOURLY "expiry:\n  every_s: 3600\n"
#define JOB    "codes.expire"

/* RFC 3339 UTC with milliseconds ("2026-12-06T18:40:00.123Z") to ms. */
static int64_t ms_of(const char *t)
{
    struct tm tm = {0};
    int ms = 0;
    cr_assert_eq(sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                        &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms),
                 7, "not a time: %s", t);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

/* The job's entry of GET /v1/jobs (caller json_decref's); asserts 200. */
static json_t *job_get(const char *id)
{
    h_resp r = h_get(&D, "/v1/jobs", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *list = json_object_get(r.json, "jobs"), *found = NULL, *j;
    size_t i;
    cr_assert(json_is_array(list), "%s", r.body);
    json_array_foreach(list, i, j)
    {
        if (!strcmp(h_str(j, "id"), id))
            found = json_incref(j);
    }
    cr_assert_not_null(found, "%s not listed: %s", id, r.body);
    h_resp_free(&r);
    return found;
}

static long long runs_of(void)
{
    json_t *j = job_get(JOB);
    long long n = h_int(j, "runs");
    json_decref(j);
    return n;
}

/* The job ran at least *arg times and is between runs (its next run known). */
static int ran_at_least(void *arg)
{
    json_t *j = job_get(JOB);
    int ok =
        h_int(j, "runs") >= *(long long *)arg && json_is_string(json_object_get(j, "next_run_at"));
    json_decref(j);
    return ok;
}

static void wait_runs(long long n)
{
    cr_assert_eq(h_wait_for(ran_at_least, &n, 15000), 0, "%s never reached %lld runs", JOB, n);
}

/* Its last run and next run, as GET /v1/jobs shows them. */
static void last_and_next(int64_t *started, int64_t *next, char *next_text, size_t n)
{
    json_t *j = job_get(JOB);
    json_t *last = json_object_get(j, "last_run");
    cr_assert(json_is_object(last));
    *started = ms_of(h_str(last, "started_at"));
    const char *nt = h_str(j, "next_run_at");
    *next = ms_of(nt);
    if (next_text)
        snprintf(next_text, n, "%s", nt);
    json_decref(j);
}

/* h_wait_for's condition: the wall clock reached g_until. */
static int64_t g_until;
static int wall_passed(void *arg)
{
    (void)arg;
    return h_wall_ms() >= g_until;
}

static json_t *audit_of(const char *action)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/audit?action=%s", action);
    h_resp r = h_get(&D, path, "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *l = json_incref(json_object_get(r.json, "audit"));
    h_resp_free(&r);
    return l;
}

Test(jobs, lists_the_expiry_job_and_runs_it_on_demand_audited)
{
    h_setup(&D, HOURLY);
    cr_assert_eq(h_start(&D), 0);
    wait_runs(1); /* nothing stored: due at start */
    json_t *j = job_get(JOB);
    cr_assert_eq(h_int(j, "every_s"), 3600);
    cr_assert(json_is_false(json_object_get(j, "running")));
    json_t *last = json_object_get(j, "last_run");
    cr_assert(json_is_true(json_object_get(last, "ok")));
    cr_assert_str_eq(h_str(last, "outcome"), "0 codes expired");
    int64_t started = ms_of(h_str(last, "started_at"));
    cr_assert_leq(started, ms_of(h_str(last, "ended_at")));
    cr_assert_eq(ms_of(h_str(j, "next_run_at")), started + 3600000);
    json_decref(j);

    h_resp r = h_get(&D, "/v1/jobs", "mall-token");
    cr_assert_eq(r.status, 403, "ops only: %s", r.body);
    h_resp_free(&r);
    r = h_post_json(&D, "/v1/jobs/" JOB "/run", "mall-token", "{}");
    cr_assert_eq(r.status, 403, "ops only: %s", r.body);
    h_resp_free(&r);

    /* two codes expire; the hourly job is not due, so they stay until asked */
    char when[40], csv[256];
    h_rfc3339(h_wall_ms() + 1000, when, sizeof when);
    snprintf(csv, sizeof csv, "code,expires_at\nJOB-1,%s\nJOB-2,%s\n", when, when);
    h_resp imp = h_import(&D, "test.card2", csv, 201);
    h_resp_free(&imp);
    g_until = ms_of(when) + 50;
    cr_assert_eq(h_wait_for(wall_passed, NULL, 10000), 0);

    cr_assert_eq(h_http(&D, "POST", "/v1/jobs/" JOB "/run", "ops-token", NULL, NULL, 0, &r), 0);
    cr_assert_eq(r.status, 202, "%s", r.body);
    cr_assert_str_eq(h_str(r.json, "queued"), JOB);
    char reqid[64];
    cr_assert_not_null(h_header(&r, "X-Request-Id", reqid, sizeof reqid));
    h_resp_free(&r);
    wait_runs(2);
    j = job_get(JOB);
    last = json_object_get(j, "last_run");
    cr_assert_str_eq(h_str(last, "outcome"), "2 codes expired", "the run retired them");
    cr_assert_eq(ms_of(h_str(j, "next_run_at")), ms_of(h_str(last, "started_at")) + 3600000,
                 "a manual run counts as a run: the period restarts from it");
    cr_assert(json_is_false(json_object_get(j, "queued")));
    json_decref(j);
    h_resp f = h_get(&D, "/v1/events?after=0&limit=1000", "ops-token");
    cr_assert_eq(h_mem_count(f.body, f.len, "\"code.expired\""), 1, "%s", f.body);
    h_resp_free(&f);

    json_t *trail = audit_of("jobs.run");
    cr_assert_eq(json_array_size(trail), 1);
    json_t *rec = json_array_get(trail, 0);
    cr_assert_str_eq(h_str(rec, "client"), "ops");
    cr_assert_str_eq(h_str(rec, "request_id"), reqid);
    cr_assert_str_eq(h_str(json_object_get(rec, "what"), "job"), JOB);
    json_decref(trail);

    /* unknown ids: 404 naming a well-formed one (also with a '/', sent as %2F) */
    const char *unknown[][2] = {{"/v1/jobs/nosuch.job/run", "nosuch.job"},
                                {"/v1/jobs/sync.catalog%2FsimZ/run", "sync.catalog/simZ"},
                                {"/v1/jobs/sync.catalog/simZ/run", "sync.catalog/simZ"}};
    for (size_t i = 0; i < 3; i++) {
        r = h_post_json(&D, unknown[i][0], "ops-token", "{}");
        cr_assert_eq(r.status, 404, "%s: %s", unknown[i][0], r.body);
        cr_assert_str_eq(h_str(r.json, "error"), "not_found");
        cr_assert(strstr(h_str(r.json, "message"), unknown[i][1]), "%s", r.body);
        h_resp_free(&r);
    }
    r = h_post_json(&D, "/v1/jobs/sec%20ret/run", "ops-token", "{}");
    cr_assert_eq(r.status, 404, "%s", r.body);
    cr_assert_null(strstr(r.body, "sec ret"), "a malformed id is not quoted: %s", r.body);
    h_resp_free(&r);
    trail = audit_of("jobs.run");
    cr_assert_eq(json_array_size(trail), 1, "a refused ask leaves no record");
    json_decref(trail);
    cr_assert_eq(runs_of(), 2);

    h_stop_clean(&D);
    char *out = NULL;
    cr_assert_eq(h_check_store(&D, &out), 0, "%s", out);
    free(out);
    h_cleanup(&D);
}

/* The job's record as the stopped daemon left it in the store (`jobs`, read
 * with LMDB itself): caller json_decref's. */
static json_t *stored_job(const char *id)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    cr_assert_eq(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 64);
    cr_assert_eq(mdb_env_open(env, D.data, MDB_RDONLY, 0600), 0, "open %s", D.data);
    cr_assert_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, "jobs", 0, &dbi), 0);
    MDB_val k = {strlen(id), (void *)id}, v;
    cr_assert_eq(mdb_get(txn, dbi, &k, &v), 0, "no record of %s", id);
    json_t *rec = json_loadb(v.mv_data, v.mv_size, 0, NULL);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    cr_assert(json_is_object(rec));
    return rec;
}

Test(jobs, a_restart_neither_skips_nor_doubles_a_run)
{
    h_setup(&D, HOURLY);
    cr_assert_eq(h_start(&D), 0);
    wait_runs(1);
    int64_t s1, n1, s, n;
    char n1_text[40], text[40];
    last_and_next(&s1, &n1, n1_text, sizeof n1_text);
    cr_assert_eq(n1, s1 + 3600000);

    /* a restart before the next run: the same next run, no run at start */
    h_stop_clean(&D);
    json_t *rec = stored_job(JOB);
    cr_assert_eq(h_int(rec, "runs"), 1);
    cr_assert_eq(h_int(rec, "next_due"), n1, "the next run is stored with the run");
    json_decref(rec);
    cr_assert_eq(h_start(&D), 0);
    json_t *j = job_get(JOB);
    cr_assert_str_eq(h_str(j, "next_run_at"), n1_text, "the stored next run is kept");
    cr_assert_eq(h_int(j, "runs"), 1, "the stored run count, not one more");
    cr_assert_eq(ms_of(h_str(json_object_get(j, "last_run"), "started_at")), s1);
    json_decref(j);

    /* every second (a reload applies it at once), then down for three periods */
    h_write_config(&D, "expiry:\n  every_s: 1\n");
    cr_assert_eq(kill(D.pid, SIGHUP), 0);
    wait_runs(3);
    h_write_config(&D, HOURLY); /* read at the next start */
    h_stop_clean(&D);
    rec = stored_job(JOB);
    long long before = h_int(rec, "runs");
    g_until = h_int(rec, "next_due") + 3000; /* three periods of a second missed */
    json_decref(rec);
    cr_assert_geq(before, 3);
    cr_assert_eq(h_wait_for(wall_passed, NULL, 10000), 0);
    int64_t restart = h_wall_ms();
    cr_assert_eq(h_start(&D), 0);
    /* the stored due time passed: one run at start, then an hour */
    wait_runs(before + 1);
    last_and_next(&s, &n, text, sizeof text);
    cr_assert_geq(s, restart, "the run after the restart");
    cr_assert_eq(n, s + 3600000, "the next run one period after it");
    cr_assert_eq(runs_of(), before + 1, "once at start, not once per missed period");
    h_stop_clean(&D);
    rec = stored_job(JOB);
    cr_assert_eq(h_int(rec, "runs"), before + 1, "and so the store says");
    cr_assert_eq(h_int(rec, "next_due"), n);
    json_decref(rec);
    h_cleanup(&D);
}

/* perkctl with this daemon's URL and token; arguments up to NULL. */
static int perkctl(const char *token, char **out, char **err, const char *a1, const char *a2,
                   const char *a3)
{
    const char *argv[] = {h_bin("PH_PERKCTL"), a1, a2, a3, NULL};
    char env_url[128], env_token[128];
    snprintf(env_url, sizeof env_url, "PERKHUB_URL=http://127.0.0.1:%u", D.port);
    snprintf(env_token, sizeof env_token, "PERKHUB_TOKEN=%s", token);
    const char *env[] = {env_url, env_token, NULL};
    return h_run(argv, env, NULL, 0, out, err);
}

Test(jobs, perkctl_lists_and_runs_jobs)
{
    h_setup(&D, HOURLY);
    cr_assert_eq(h_start(&D), 0);
    wait_runs(1);
    char *out = NULL, *err = NULL;
    cr_assert_eq(perkctl("ops-token", &out, &err, "jobs", NULL, NULL), 0, "%s", err);
    cr_assert(strstr(out, "EVERY_S") && strstr(out, JOB) && strstr(out, "3600") &&
                  strstr(out, "0 codes expired"),
              "%s", out);
    free(out), free(err);
    cr_assert_eq(perkctl("ops-token", &out, &err, "jobs", "run", JOB), 0, "%s", err);
    cr_assert_str_eq(out, "queued " JOB "\n");
    free(out), free(err);
    wait_runs(2);
    cr_assert_eq(perkctl("ops-token", &out, &err, "jobs", "run", "nosuch.job"), 1, "%s", out);
    cr_assert(strstr(err, "not_found") && strstr(err, "nosuch.job"), "%s", err);
    free(out), free(err);
    cr_assert_eq(perkctl("ops-token", &out, &err, "jobs", "run", "a b"), 2, "%s", out);
    free(out), free(err);
    cr_assert_eq(perkctl("ops-token", &out, &err, "jobs", "run", NULL), 2, "%s", out);
    free(out), free(err);
    cr_assert_eq(perkctl("mall-token", &out, &err, "jobs", NULL, NULL), 1, "%s", out);
    free(out), free(err);
    cr_assert_eq(runs_of(), 2, "only the one ask ran");
    h_stop_clean(&D);
    h_cleanup(&D);
}

Test(jobs, a_period_below_one_second_is_refused_at_its_position)
{
    h_setup(&D, "expiry:\n  every_s: 0\n");
    size_t len;
    char *text = h_read_file(D.config, &len);
    cr_assert_not_null(text);
    const char *at = strstr(text, "  every_s: 0");
    cr_assert_not_null(at);
    int line = 1;
    for (const char *p = text; p < at; p++)
        line += *p == '\n';
    free(text);
    char want[512];
    snprintf(want, sizeof want, "%s:%d:12: expiry.every_s: expected an integer 1..86400, got \"0\"",
             D.config, line);
    const char *argv[] = {h_bin("PH_PERKHUBD"), "--check-config", D.config, NULL};
    char *out = NULL, *err = NULL;
    cr_assert_eq(h_run(argv, NULL, NULL, 0, &out, &err), 1, "%s%s", out, err);
    cr_assert(strstr(out, want) || strstr(err, want), "expected %s in:\n%s%s", want, out, err);
    free(out), free(err);
    cr_assert_neq(h_start(&D), 0, "a start refuses it too");
    h_cleanup(&D);
}

/* perkhub_store_commits_total from GET /metrics. */
static long long commits_now(void)
{
    h_resp r = h_get(&D, "/metrics", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    const char *p = strstr(r.body, "\nperkhub_store_commits_total ");
    cr_assert_not_null(p, "no commit counter: %s", r.body);
    long long n = atoll(p + strlen("\nperkhub_store_commits_total "));
    h_resp_free(&r);
    return n;
}

/* An expiry sweep every second that finds nothing due costs no commit: idle
 * runs are kept in memory (GET /v1/jobs counts them) and stored at the
 * interval or at a clean stop, which stores their count. */
Test(jobs, idle_sweeps_cost_no_commit_and_a_clean_stop_keeps_their_count)
{
    h_setup(&D, "expiry:\n  every_s: 1\n");
    cr_assert_eq(h_start(&D), 0);
    wait_runs(2);
    long long c0 = commits_now(), r0 = runs_of();
    wait_runs(r0 + 3);
    long long c1 = commits_now(), r1 = runs_of();
    cr_assert_geq(r1 - r0, 3);
    cr_assert_eq(c1 - c0, 0, "%lld commits for %lld idle runs", c1 - c0, r1 - r0);
    h_stop_clean(&D);
    json_t *rec = stored_job(JOB);
    cr_assert_geq(h_int(rec, "runs"), r1, "the stored count holds every run");
    json_decref(rec);
}
