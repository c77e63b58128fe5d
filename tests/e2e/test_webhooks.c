/*
 * test_webhooks.c — signed webhooks with durable delivery (issue 13 items
 * 1-4), end to end against tests/e2e/webhook_receiver.py: an independent
 * receiver (Python's hmac) that verifies every signature, checks `previous`
 * continuity per order and writes what it got as JSON lines.
 *
 * A receiver that answers 5xx and recovers; one that times out; 410 disables
 * the endpoint (stored: it survives a restart) until ops enable it; a
 * receiver down while perkhubd is killed with -9 and restarted: every event
 * of every order delivered, none missing per order; dead-lettered deliveries
 * replayed by ops (audited); two secrets both verify; a SIGHUP adds an
 * endpoint; --check-config refuses bad endpoints naming file:line:column.
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static h_daemon D;

/* ---- the receiver ----------------------------------------------------------------- */

typedef struct rx {
    pid_t pid;
    char port_file[400], out[400], log[400];
    unsigned port;
} rx;

static rx R;

static int rx_port_known(void *arg)
{
    rx *r = arg;
    FILE *f = fopen(r->port_file, "r");
    if (!f)
        return 0;
    int ok = fscanf(f, "%u", &r->port) == 1 && r->port > 0;
    fclose(f);
    return ok;
}

/* Starts the receiver in mode, verifying with the secret texts given (NULL
 * ended); port 0 = any, else that one (a restart on the same address). */
static void rx_start(rx *r, const char *mode, const char *const *secrets, unsigned port)
{
    snprintf(r->port_file, sizeof r->port_file, "%s/rx.port", D.dir);
    snprintf(r->out, sizeof r->out, "%s/rx.jsonl", D.dir);
    snprintf(r->log, sizeof r->log, "%s/rx.log", D.dir);
    unlink(r->port_file);
    char script[512], portarg[16];
    snprintf(script, sizeof script, "%s/tests/e2e/webhook_receiver.py", h_bin("PH_SOURCE_DIR"));
    snprintf(portarg, sizeof portarg, "%u", port);
    const char *argv[24] = {"python3", script,   "--port-file", r->port_file, "--out",
                            r->out,    "--mode", mode,          "--port",     portarg};
    size_t n = 10;
    for (size_t i = 0; secrets && secrets[i] && n < 22; i++) {
        argv[n++] = "--secret";
        argv[n++] = secrets[i];
    }
    argv[n] = NULL;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(r->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        /* nothing of the test runner's (its pipes) stays open in the receiver */
        for (int k = 3; k < 1024; k++)
            close(k);
        execvp("python3", (char *const *)argv);
        _exit(127);
    }
    r->pid = pid;
    cr_assert_eq(h_wait_for(rx_port_known, r, 20000), 0, "the receiver did not start (%s)", r->log);
}

static void rx_stop(rx *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        while (waitpid(r->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    r->pid = 0;
}

static void rx_mode(const rx *r, const char *mode)
{
    h_daemon fake = {.port = (uint16_t)r->port};
    char body[96];
    snprintf(body, sizeof body, "{\"mode\":\"%s\"}", mode);
    h_resp resp = h_post_json(&fake, "/_mode", NULL, body);
    cr_assert_eq(resp.status, 200);
    h_resp_free(&resp);
}

/* Every line the receiver wrote, as a JSON array. */
static json_t *rx_lines(const rx *r)
{
    json_t *all = json_array();
    size_t n;
    char *txt = h_read_file(r->out, &n);
    for (char *line = txt ? strtok(txt, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        json_t *j = json_loads(line, 0, NULL);
        if (j)
            json_array_append_new(all, j);
    }
    free(txt);
    return all;
}

static void teardown(void)
{
    rx_stop(&R);
    h_leftover(&D);
}

TestSuite(webhooks, .fini = teardown);

/* ---- the daemon ----------------------------------------------------------------------- */

#define SETTINGS_FAST                                                                              \
    "webhooks:\n  retry_for_s: 600\n  timeout_ms: 1000\n  retry_base_ms: 100\n"                    \
    "  retry_max_ms: 400\n"

/* Writes the secret files and the config: client mall with endpoint `id` at
 * the receiver (events order.*), `secrets` the YAML list of references. */
static void write_config(const char *id, unsigned port, const char *secrets, const char *settings,
                         int with_endpoint)
{
    char *text = h_config_text(&D, settings);
    if (with_endpoint) {
        char hook[1600];
        snprintf(hook, sizeof hook,
                 "scopes: [fulfill, support]\n    webhooks:\n      - id: %s\n"
                 "        url: http://127.0.0.1:%u/hook?token=mall-own-token\n"
                 "        secrets: %s\n        events: [\"order.*\"]\n  - name: othermall",
                 id, port, secrets);
        char *t2 = h_replace(text, "scopes: [fulfill, support]\n  - name: othermall", hook);
        free(text);
        text = t2;
    }
    h_write_config_text(&D, text);
    free(text);
}

static void write_secret(const char *name, const char *value)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", D.dir, name);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f, "%s\n", value);
    fclose(f);
}

#define WHSEC "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

/* One endpoint "mallhook" signed with WHSEC, the receiver in `mode`. */
static void start_all(const char *mode, const char *settings)
{
    h_setup(&D, settings);
    write_secret("wh1.secret", WHSEC);
    const char *secrets[] = {WHSEC, NULL};
    rx_start(&R, mode, secrets, 0);
    char refs[700];
    snprintf(refs, sizeof refs, "[\"file:%s/wh1.secret\"]", D.dir);
    write_config("mallhook", R.port, refs, settings, 1);
    cr_assert(h_start(&D) == 0, "perkhubd did not start (%s)", D.log);
}

/* A recharge through the sandbox (several events: accepted, attempt,
 * succeeded); returns the order id. */
static long long recharge(const char *coid)
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"client_order_id\":\"%s\",\"sku\":\"test.topup\",\"quantity\":1,"
             "\"account\":\"13912345678\",\"wait\":5}",
             coid);
    h_resp r = h_post_json(&D, "/v1/orders", "mall-token", body);
    cr_assert(r.status == 200 || r.status == 201 || r.status == 202, "%s: %ld %s", coid, r.status,
              r.body);
    long long id = h_int(h_order_of(&r), "id");
    h_resp_free(&r);
    return id;
}

/* The seqs of every event of order id (ops feed). */
static json_t *order_seqs(long long id)
{
    json_t *seqs = json_array();
    long long after = 0;
    for (;;) {
        char path[96];
        snprintf(path, sizeof path, "/v1/events?after=%lld&limit=1000", after);
        h_resp r = h_get(&D, path, "ops-token");
        cr_assert_eq(r.status, 200, "%s", r.body);
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(r.json, "events"), i, e)
        {
            if (json_integer_value(json_object_get(e, "order_id")) == id)
                json_array_append_new(seqs, json_integer(h_int(e, "seq")));
        }
        after = h_int(r.json, "next_after");
        int more = json_is_true(json_object_get(r.json, "more"));
        h_resp_free(&r);
        if (!more)
            break;
    }
    return seqs;
}

/* 1 when the receiver accepted (2xx) a delivery of event seq. */
static int rx_accepted(json_t *lines, long long seq)
{
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l)
    {
        if (json_integer_value(json_object_get(l, "seq")) == seq && h_int(l, "status") < 300)
            return 1;
    }
    return 0;
}

typedef struct orders_arg {
    long long *ids;
    size_t n;
} orders_arg;

/* Every event of every order reached the receiver and was accepted. */
static int all_delivered(void *arg)
{
    orders_arg *a = arg;
    json_t *lines = rx_lines(&R);
    int ok = 1;
    for (size_t k = 0; ok && k < a->n; k++) {
        json_t *seqs = order_seqs(a->ids[k]);
        ok = json_array_size(seqs) >= 2;
        size_t i;
        json_t *s;
        json_array_foreach(seqs, i, s) ok &= rx_accepted(lines, json_integer_value(s));
        json_decref(seqs);
    }
    json_decref(lines);
    return ok;
}

/* What every line must be: signed right, in order per order, no codes, the
 * account masked. */
static void assert_lines_sound(size_t min_sigs)
{
    json_t *lines = rx_lines(&R);
    cr_assert_gt(json_array_size(lines), 0);
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l)
    {
        cr_assert(json_is_true(json_object_get(l, "sig_ok")), "a bad signature: %s",
                  json_dumps(l, 0));
        cr_assert_geq(h_int(l, "sigs"), (long long)min_sigs);
        cr_assert(json_is_true(json_object_get(l, "continuity_ok")), "out of order: %s",
                  json_dumps(l, 0));
        cr_assert(json_is_false(json_object_get(l, "has_codes")), "codes in a webhook");
        const char *acct = json_string_value(json_object_get(l, "account"));
        if (acct)
            cr_assert_null(strstr(acct, "13912345678"), "the account unmasked: %s", acct);
    }
    json_decref(lines);
}

/* Stops the daemon cleanly and runs --check-store (the webhook invariants among them). */
static void stop_and_check(void)
{
    char *out = NULL;
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    cr_assert_eq(h_check_store(&D, &out), 0, "%s", out);
    free(out);
    h_cleanup(&D);
}

static json_t *endpoint(const char *id)
{
    h_resp r = h_get(&D, "/v1/webhooks", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *found = NULL;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(r.json, "endpoints"), i, e)
    {
        if (!strcmp(h_str(e, "id"), id))
            found = json_incref(e);
    }
    h_resp_free(&r);
    return found;
}

typedef struct ep_cond {
    const char *id, *key;
    long long at_least;
} ep_cond;

static int ep_count(void *arg)
{
    ep_cond *c = arg;
    json_t *e = endpoint(c->id);
    int ok = e && h_int(e, c->key) >= c->at_least;
    json_decref(e);
    return ok;
}

static int ep_disabled(void *arg)
{
    json_t *e = endpoint(arg);
    int ok = e && json_is_false(json_object_get(e, "enabled"));
    json_decref(e);
    return ok;
}

static int ep_settled(void *arg)
{
    json_t *e = endpoint(arg);
    int ok = e && h_int(e, "pending") == 0;
    json_decref(e);
    return ok;
}

/* ---- the tests ------------------------------------------------------------------------ */

Test(webhooks, a_receiver_that_answers_5xx_gets_everything_once_it_recovers)
{
    start_all("fail:4", SETTINGS_FAST);
    long long ids[3] = {recharge("wh-5xx-1"), recharge("wh-5xx-2"), recharge("wh-5xx-3")};
    orders_arg a = {ids, 3};
    cr_assert_eq(h_wait_for(all_delivered, &a, 60000), 0, "not every event was delivered");
    assert_lines_sound(1);
    json_t *lines = rx_lines(&R);
    size_t fails = 0, i;
    json_t *l;
    json_array_foreach(lines, i, l) fails += h_int(l, "status") == 503;
    cr_assert_eq(fails, 4, "the receiver refused 4 times");
    json_decref(lines);
    /* the store's view: retried deliveries show their attempts and the status */
    h_resp r =
        h_get(&D, "/v1/webhooks/mallhook/deliveries?state=delivered&limit=1000", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    long long retried = 0;
    json_array_foreach(json_object_get(r.json, "deliveries"), i, l) retried +=
        h_int(l, "attempts") > 1;
    cr_assert_geq(retried, 1, "%s", r.body);
    h_resp_free(&r);
    /* the receiver's 2xx is recorded by perkhubd a moment after it was sent */
    cr_assert_eq(h_wait_for(ep_settled, "mallhook", 10000), 0, "deliveries still pending");
    json_t *e = endpoint("mallhook");
    cr_assert_null(strstr(h_str(e, "url"), "mall-own-token"), "the URL's query is shown");
    json_decref(e);
    /* the metrics count the retries */
    r = h_get(&D, "/metrics", NULL);
    cr_assert(strstr(r.body,
                     "perkhub_webhook_deliveries_total{endpoint=\"mallhook\",result=\"retry\"} 4"),
              "%s", r.body);
    cr_assert(strstr(r.body, "perkhub_webhook_pending{endpoint=\"mallhook\"}"));
    h_resp_free(&r);
    /* a mall sees its own endpoint; another mall none */
    r = h_get(&D, "/v1/webhooks", "mall-token");
    cr_assert_eq(json_array_size(json_object_get(r.json, "endpoints")), 1, "%s", r.body);
    h_resp_free(&r);
    r = h_get(&D, "/v1/webhooks", "other-token");
    cr_assert_eq(json_array_size(json_object_get(r.json, "endpoints")), 0, "%s", r.body);
    h_resp_free(&r);
    r = h_get(&D, "/v1/webhooks/mallhook/deliveries", "other-token");
    cr_assert_eq(r.status, 404, "%s", r.body);
    h_resp_free(&r);
    stop_and_check();
}

static int an_id_twice(void *arg)
{
    (void)arg;
    json_t *lines = rx_lines(&R);
    int twice = 0;
    for (size_t i = 0; i < json_array_size(lines) && !twice; i++)
        for (size_t k = i + 1; k < json_array_size(lines) && !twice; k++)
            twice = !strcmp(h_str(json_array_get(lines, i), "id"),
                            h_str(json_array_get(lines, k), "id"));
    json_decref(lines);
    return twice;
}

Test(webhooks, a_timeout_is_retried)
{
    start_all("sleep:1:2.5", SETTINGS_FAST);
    long long ids[1] = {recharge("wh-tmo-1")};
    orders_arg a = {ids, 1};
    cr_assert_eq(h_wait_for(all_delivered, &a, 60000), 0, "not every event was delivered");
    assert_lines_sound(1);
    /* the first delivery went twice under the same id: the first answer came
     * too late (the receiver writes its line when it answers) */
    cr_assert_eq(h_wait_for(an_id_twice, NULL, 20000), 0,
                 "the timed-out delivery was not sent "
                 "again");
    cr_assert_eq(h_wait_for(ep_settled, "mallhook", 10000), 0, "deliveries still pending");
    /* the slept-on delivery is the order's first: it took two attempts or
     * more. Later ones may too on a loaded machine (a second past the
     * timeout is a timeout wherever it comes from), so only the first is
     * pinned down */
    h_resp r = h_get(&D, "/v1/webhooks/mallhook/deliveries?state=delivered", "ops-token");
    json_t *ds = json_object_get(r.json, "deliveries"), *l, *first = NULL;
    size_t i;
    json_array_foreach(ds, i, l) if (!first || h_int(l, "seq") < h_int(first, "seq")) first = l;
    cr_assert(first, "%s", r.body);
    cr_assert_geq(h_int(first, "attempts"), 2, "%s", r.body);
    h_resp_free(&r);
    stop_and_check();
}

Test(webhooks, gone_disables_the_endpoint_until_ops_enable_it)
{
    start_all("gone", SETTINGS_FAST);
    long long ids[2] = {recharge("wh-410-1"), 0};
    cr_assert_eq(h_wait_for(ep_disabled, "mallhook", 30000), 0, "410 did not disable");
    json_t *e = endpoint("mallhook");
    cr_assert_str_eq(h_str(e, "disabled_reason"), "gone");
    json_decref(e);
    ids[1] = recharge("wh-410-2");
    /* the disabled state is stored: a restart keeps it */
    cr_assert_eq(h_stop(&D, SIGKILL), 128 + SIGKILL);
    cr_assert(h_start(&D) == 0, "perkhubd did not restart");
    e = endpoint("mallhook");
    cr_assert(json_is_false(json_object_get(e, "enabled")), "enabled again by a restart");
    json_decref(e);
    json_t *lines = rx_lines(&R);
    size_t sent = json_array_size(lines);
    json_decref(lines);
    cr_assert_eq(sent, 1, "a disabled endpoint was sent to");
    rx_mode(&R, "ok");
    h_resp r = h_post_json(&D, "/v1/webhooks/mallhook/enable", "mall-token", "{}");
    cr_assert_eq(r.status, 403, "a mall enabled its endpoint: %s", r.body);
    h_resp_free(&r);
    r = h_post_json(&D, "/v1/webhooks/mallhook/enable", "ops-token", "{}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    orders_arg a = {ids, 2};
    cr_assert_eq(h_wait_for(all_delivered, &a, 60000), 0, "not delivered after enable");
    assert_lines_sound(1);
    r = h_get(&D, "/v1/audit?action=webhooks.enable", "ops-token");
    cr_assert(strstr(r.body, "mallhook"), "enable not audited: %s", r.body);
    h_resp_free(&r);
    stop_and_check();
}

Test(webhooks, receiver_down_across_kill9_loses_nothing)
{
    start_all("ok", SETTINGS_FAST);
    unsigned port = R.port;
    rx_stop(&R); /* down: connections refused */
    long long ids[10];
    char coid[32];
    for (int i = 0; i < 5; i++) {
        snprintf(coid, sizeof coid, "wh-k9-%d", i);
        ids[i] = recharge(coid);
    }
    ep_cond c = {"mallhook", "failing", 1};
    cr_assert_eq(h_wait_for(ep_count, &c, 30000), 0, "nothing was tried");
    cr_assert_eq(h_stop(&D, SIGKILL), 128 + SIGKILL);
    cr_assert(h_start(&D) == 0, "perkhubd did not restart");
    for (int i = 5; i < 10; i++) {
        snprintf(coid, sizeof coid, "wh-k9-%d", i);
        ids[i] = recharge(coid);
    }
    cr_assert_eq(h_stop(&D, SIGKILL), 128 + SIGKILL);
    cr_assert(h_start(&D) == 0, "perkhubd did not restart");
    const char *secrets[] = {WHSEC, NULL};
    rx_start(&R, "ok", secrets, port);
    orders_arg a = {ids, 10};
    cr_assert_eq(h_wait_for(all_delivered, &a, 90000), 0, "an event is missing");
    assert_lines_sound(1);
    char *out = NULL;
    h_stop(&D, SIGTERM);
    cr_assert_eq(h_check_store(&D, &out), 0, "%s", out);
    free(out);
    h_cleanup(&D);
}

/* Runs perkctl with the ops token against D, arguments up to NULL; its exit
 * status, stdout in *out (caller frees). */
static int perkctl_ops(char **out, ...)
{
    const char *argv[16] = {h_bin("PH_PERKCTL")};
    size_t n = 1;
    va_list ap;
    va_start(ap, out);
    for (const char *a; (a = va_arg(ap, const char *));) {
        cr_assert_lt(n, 15);
        argv[n++] = a;
    }
    va_end(ap);
    char env_url[128];
    snprintf(env_url, sizeof env_url, "PERKHUB_URL=http://127.0.0.1:%u", D.port);
    const char *env[] = {env_url, "PERKHUB_TOKEN=ops-token", NULL};
    return h_run(argv, env, NULL, 0, out, NULL);
}

Test(webhooks, dead_letters_are_replayed_by_ops_and_audited)
{
    start_all("fail:100000",
              "webhooks:\n  retry_for_s: 1\n  timeout_ms: 1000\n  retry_base_ms: 300\n"
              "  retry_max_ms: 600\n");
    long long ids[1] = {recharge("wh-dead-1")};
    json_t *seqs = order_seqs(ids[0]);
    ep_cond c = {"mallhook", "dead", (long long)json_array_size(seqs)};
    json_decref(seqs);
    cr_assert_eq(h_wait_for(ep_count, &c, 30000), 0, "not dead-lettered");
    h_resp r = h_get(&D, "/v1/webhooks/mallhook/deliveries?state=dead", "ops-token");
    json_t *d0 = json_array_get(json_object_get(r.json, "deliveries"), 0);
    cr_assert_eq(h_int(d0, "last_status"), 503, "%s", r.body);
    char first_id[128];
    snprintf(first_id, sizeof first_id, "%s", h_str(d0, "id"));
    h_resp_free(&r);
    /* what ops see from a shell: the endpoint with its dead count, the failures */
    char *out;
    cr_assert_eq(perkctl_ops(&out, "webhooks", NULL), 0, "%s", out);
    cr_assert(strstr(out, "mallhook") && strstr(out, "DEAD"), "%s", out);
    free(out);
    cr_assert_eq(perkctl_ops(&out, "webhooks", "failures", "mallhook", NULL), 0, "%s", out);
    cr_assert(strstr(out, first_id) && strstr(out, "dead") && strstr(out, "http 503"), "%s", out);
    free(out);
    cr_assert_eq(perkctl_ops(&out, "webhooks", "replay", "mallhook", NULL), 2, "%s", out);
    free(out);
    rx_mode(&R, "ok");
    cr_assert_eq(
        perkctl_ops(&out, "webhooks", "replay", "mallhook", "--from", "1", "--to", "1000000", NULL),
        0, "%s", out);
    char want[64];
    snprintf(want, sizeof want, "replayed %lld deliveries to mallhook", c.at_least);
    cr_assert(strstr(out, want), "%s", out);
    free(out);
    orders_arg a = {ids, 1};
    cr_assert_eq(h_wait_for(all_delivered, &a, 30000), 0, "the replay was not delivered");
    assert_lines_sound(1);
    /* one delivery again, by its id: the same id reaches the receiver */
    char body[200];
    snprintf(body, sizeof body, "{\"delivery\":\"%s\"}", first_id);
    r = h_post_json(&D, "/v1/webhooks/mallhook/replay", "ops-token", body);
    cr_assert_eq(r.status, 202, "%s", r.body);
    cr_assert_eq(h_int(r.json, "replayed"), 1, "%s", r.body);
    h_resp_free(&r);
    r = h_post_json(&D, "/v1/webhooks/mallhook/replay", "ops-token", "{\"delivery\":\"nope\"}");
    cr_assert_eq(r.status, 400, "%s", r.body);
    h_resp_free(&r);
    r = h_get(&D, "/v1/audit?action=webhooks.replay", "ops-token");
    cr_assert_eq(json_array_size(json_object_get(r.json, "records")) +
                     json_array_size(json_object_get(r.json, "audit")),
                 2, "replays not audited: %s", r.body);
    h_resp_free(&r);
    stop_and_check();
}

Test(webhooks, two_secrets_both_sign)
{
    h_setup(&D, SETTINGS_FAST);
    write_secret("wh1.secret", WHSEC);
    write_secret("wh2.secret", "a-raw-second-secret");
    const char *secrets[] = {WHSEC, "a-raw-second-secret", NULL};
    rx_start(&R, "ok", secrets, 0);
    char refs[700];
    snprintf(refs, sizeof refs, "[\"file:%s/wh1.secret\", \"file:%s/wh2.secret\"]", D.dir, D.dir);
    write_config("mallhook", R.port, refs, SETTINGS_FAST, 1);
    cr_assert(h_start(&D) == 0, "perkhubd did not start (%s)", D.log);
    long long ids[1] = {recharge("wh-2s-1")};
    orders_arg a = {ids, 1};
    cr_assert_eq(h_wait_for(all_delivered, &a, 30000), 0, "not delivered");
    assert_lines_sound(2);
    stop_and_check();
}

Test(webhooks, a_reload_adds_an_endpoint)
{
    h_setup(&D, SETTINGS_FAST);
    write_secret("wh1.secret", WHSEC);
    const char *secrets[] = {WHSEC, NULL};
    rx_start(&R, "ok", secrets, 0);
    write_config("mallhook", R.port, NULL, SETTINGS_FAST, 0);
    cr_assert(h_start(&D) == 0, "perkhubd did not start (%s)", D.log);
    recharge("wh-hup-0");
    json_t *e = endpoint("mallhook");
    cr_assert_null(e);
    char refs[700];
    snprintf(refs, sizeof refs, "[\"file:%s/wh1.secret\"]", D.dir);
    write_config("mallhook", R.port, refs, SETTINGS_FAST, 1);
    cr_assert_eq(kill(D.pid, SIGHUP), 0);
    cr_assert_eq(h_log_wait(&D, "config.reloaded", 1, 10000), 0, "no reload (%s)", D.log);
    ep_cond c = {"mallhook", "cursor", 1};
    cr_assert_eq(h_wait_for(ep_count, &c, 10000), 0, "the endpoint did not start");
    long long ids[1] = {recharge("wh-hup-1")};
    orders_arg a = {ids, 1};
    cr_assert_eq(h_wait_for(all_delivered, &a, 30000), 0, "not delivered after the reload");
    assert_lines_sound(1);
    stop_and_check();
}

/* --check-config with one bad endpoint: exit 1, file:line:column and what. */
static void check_refused(const char *secrets, const char *url, const char *events,
                          const char *extra_hook, const char *expect)
{
    char *text = h_config_text(&D, NULL);
    char hook[1200];
    snprintf(hook, sizeof hook,
             "scopes: [fulfill, support]\n    webhooks:\n      - id: one\n"
             "        url: %s\n        secrets: %s\n        events: %s\n%s  - name: othermall",
             url, secrets, events, extra_hook);
    char *t2 = h_replace(text, "scopes: [fulfill, support]\n  - name: othermall", hook);
    h_write_config_text(&D, t2);
    free(text);
    free(t2);
    const char *argv[] = {h_bin("PH_PERKHUBD"), "--check-config", D.config, NULL};
    char *out = NULL, *err = NULL;
    int rc = h_run(argv, NULL, NULL, 0, &out, &err);
    cr_assert_eq(rc, 1, "accepted: %s %s", out, err);
    char where[400];
    snprintf(where, sizeof where, "%s:", D.config);
    cr_assert(strstr(err, where) && strstr(err, expect), "expected '%s' at a position: %s", expect,
              err);
    cr_assert_null(strstr(err, "s3cret"), "the message quotes a secret: %s", err);
    free(out);
    free(err);
}

Test(webhooks, check_config_refuses_bad_endpoints_with_their_position)
{
    h_setup(&D, NULL);
    write_secret("ok.secret", WHSEC);
    char ok[700], missing[700];
    snprintf(ok, sizeof ok, "[\"file:%s/ok.secret\"]", D.dir);
    snprintf(missing, sizeof missing, "[\"file:%s/missing.secret\"]", D.dir);
    check_refused(ok, "ftp://user:s3cret@127.0.0.1/x", "[\"order.*\"]", "",
                  "webhooks[0].url: expected an http:// or https:// URL");
    check_refused(missing, "http://127.0.0.1:9/x", "[\"order.*\"]", "", "webhooks[0].secrets[0]");
    check_refused("[\"env:PH_TEST_NO_SUCH_VARIABLE\"]", "http://127.0.0.1:9/x", "[\"order.*\"]", "",
                  "the environment variable is not set");
    check_refused(ok, "http://127.0.0.1:9/x", "[\"order.finished\"]", "",
                  "webhooks[0].events[0]: expected an event type");
    check_refused(
        ok, "http://127.0.0.1:9/x", "[\"order.*\"]",
        "      - id: one\n        url: http://127.0.0.1:9/y\n        secrets: [\"env:X\"]\n"
        "        events: [\"order.*\"]\n",
        "duplicate webhook id");
    h_cleanup(&D);
}
