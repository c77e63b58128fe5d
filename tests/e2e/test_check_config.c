/*
 * --check-config checks what start would, and a supplier that cannot start no
 * longer stops the daemon (issue 14, item 6).
 *
 * Four ways a supplier cannot start — its plugin's .so does not exist, its
 * config has a key the plugin does not know, a secret file of mode 0644, an
 * environment variable that is not set — each configured twice: not required
 * and `required: true`. For every config, `perkhubd --check-config` and a real
 * start are run and must agree:
 *   - not required: check-config exits 1 naming file:line:column, the key and
 *     what is wrong; the daemon starts with that supplier in state error and
 *     the very same line as its error in GET /v1/suppliers, `perkctl
 *     suppliers` and /metrics; a recharge it offers at a higher priority goes
 *     to the sandbox instead; the config fixed and SIGHUP brings it up;
 *   - required: check-config says perkhubd would not start, and perkhubd
 *     exits non-zero naming the supplier and the same problem.
 * And a config with nothing wrong: check-config says ok, and the daemon
 * starts with every supplier ready.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"

static h_daemon D;

static void teardown(void)
{
    h_leftover(&D);
}

TestSuite(check_config, .fini = teardown, .timeout = 240);

#define UNSET_VAR "PH_E2E_CHECKCFG_NEVER_SET"
#define FIX_VAR   "PH_E2E_CHECKCFG_FIXED"

typedef struct bad_case {
    const char *name;
    const char *plugin; /* the bad supplier's */
    const char *fixed_plugin;
    const char *config; /* its config: block, lines indented 6; %s is the test dir */
    const char *fixed;  /* the same, fixed */
    const char *where;  /* the path in the problem line */
    const char *says;   /* and what it says */
} bad_case;

static const bad_case cases[] = {
    {"missing_so", "nosuch", "sandbox", "", "", "suppliers[1].plugin",
     "supplier 'bad': plugin 'nosuch' ("},
    {"bad_key", "sandbox", "sandbox", "    config:\n      latency_ms: 5\n", "",
     "suppliers[1].config.latency_ms", "config key 'latency_ms' is not known to plugin 'sandbox'"},
    {"secret_0644", "rewards", "rewards",
     "    config:\n      base_url: http://127.0.0.1:9/rewards\n      api_key: file:%s/open.key\n"
     "      webhook_secret: env:" FIX_VAR "\n",
     "    config:\n      base_url: http://127.0.0.1:9/rewards\n      api_key: file:%s/closed.key\n"
     "      webhook_secret: env:" FIX_VAR "\n",
     "suppliers[1].config.api_key", "is mode 0644: others than its owner may use it; chmod 600 it"},
    {"unset_env", "rewards", "rewards",
     "    config:\n      base_url: http://127.0.0.1:9/rewards\n      api_key: env:" UNSET_VAR "\n"
     "      webhook_secret: env:" FIX_VAR "\n",
     "    config:\n      base_url: http://127.0.0.1:9/rewards\n      api_key: env:" FIX_VAR "\n"
     "      webhook_secret: env:" FIX_VAR "\n",
     "suppliers[1].config.api_key", "environment variable " UNSET_VAR " is not set"},
};

/* The suppliers and products body: sbx (sandbox, priority 5) and bad (priority
 * 20), both offering the recharge. Caller frees. */
static char *body_of(const char *plugin, const char *config, int required)
{
    char conf[512], *s = NULL;
    snprintf(conf, sizeof conf, config, D.dir);
    int n = asprintf(&s,
                     "suppliers:\n"
                     "  - id: sbx\n    plugin: sandbox\n    priority: 5\n"
                     "  - id: bad\n    plugin: %s\n    priority: 20\n    required: %s\n%s"
                     "products:\n"
                     "  - sku: topup\n    name: Top-up\n    brand: telco\n    category: telecom\n"
                     "    delivery: recharge\n    face_value: \"50.00\"\n"
                     "    offers:\n"
                     "      - {supplier: bad, supplier_sku: sandbox.recharge, cost: \"49.00\"}\n"
                     "      - {supplier: sbx, supplier_sku: sandbox.recharge, cost: \"49.00\"}\n",
                     plugin, required ? "true" : "false", conf);
    cr_assert(n > 0);
    return s;
}

/* perkhubd --check-config on D's file: its exit status, stderr in *err. */
static int check(char **err)
{
    const char *argv[] = {h_bin("PH_PERKHUBD"), "--check-config", D.config, NULL};
    char *out = NULL;
    int rc = h_run(argv, NULL, NULL, 0, &out, err);
    free(out);
    return rc;
}

/* The one problem line check-config printed about `where`. Caller frees. */
static char *problem_line(const char *err, const char *where)
{
    const char *at = strstr(err, where);
    cr_assert(at, "no problem about %s in:\n%s", where, err);
    const char *start = at;
    while (start > err && start[-1] != '\n')
        start--;
    return strndup(start, strcspn(start, "\n"));
}

static json_t *supplier_view(const char *id)
{
    h_resp r = h_get(&D, "/v1/suppliers", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *s, *found = NULL;
    size_t i;
    json_array_foreach(json_object_get(r.json, "suppliers"), i, s) if (!strcmp(h_str(s, "id"), id))
        found = json_incref(s);
    h_resp_free(&r);
    cr_assert(found, "supplier %s not listed", id);
    return found;
}

static int bad_ready(void *arg)
{
    (void)arg;
    json_t *s = supplier_view("bad");
    int ok = !strcmp(h_str(s, "state"), "ready");
    json_decref(s);
    return ok;
}

static void write_secret(const char *name, mode_t mode)
{
    h_write_file(D.dir, name, "k3y-material");
    char path[400];
    snprintf(path, sizeof path, "%s/%s", D.dir, name);
    cr_assert(chmod(path, mode) == 0);
}

static void not_required(const bad_case *c)
{
    char *err = NULL;
    cr_assert_eq(check(&err), 1, "%s: check-config exit status; stderr:\n%s", c->name, err);
    char *line = problem_line(err, c->where);
    char pos[400];
    snprintf(pos, sizeof pos, "%s:", D.config);
    cr_assert(!strncmp(line, pos, strlen(pos)), "%s: names the file: %s", c->name, line);
    unsigned ln = 0, col = 0;
    cr_assert(sscanf(line + strlen(pos), "%u:%u:", &ln, &col) == 2 && ln > 0 && col > 0,
              "%s: line:column: %s", c->name, line);
    cr_assert(strstr(line, c->says), "%s: %s", c->name, line);
    cr_assert(strstr(err, "perkhubd would start with 1 supplier in state error"), "%s: %s", c->name,
              err);
    free(err);

    /* start agrees: running, bad in state error with the same line */
    cr_assert_eq(h_start(&D), 0, "%s: a supplier that is not required stops no start", c->name);
    json_t *s = supplier_view("bad");
    cr_assert_str_eq(h_str(s, "state"), "error", "%s", c->name);
    cr_assert_str_eq(h_str(s, "error"), line, "%s: the API says what check-config said", c->name);
    json_decref(s);
    s = supplier_view("sbx");
    cr_assert_str_eq(h_str(s, "state"), "ready");
    json_decref(s);

    h_resp m = h_get(&D, "/metrics", NULL);
    cr_assert_eq(m.status, 200);
    cr_assert(strstr(m.body, "perkhub_supplier_state{supplier=\"bad\",state=\"error\"} 1"), "%s",
              c->name);
    cr_assert(strstr(m.body, "perkhub_supplier_state{supplier=\"sbx\",state=\"ready\"} 1"));
    h_resp_free(&m);

    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", D.port);
    const char *argv[] = {h_bin("PH_PERKCTL"), "--url", url, "suppliers", NULL};
    const char *env[] = {"PERKHUB_TOKEN=ops-token", NULL};
    char *out = NULL, *perr = NULL;
    cr_assert_eq(h_run(argv, env, NULL, 0, &out, &perr), 0, "%s", perr);
    cr_assert(strstr(out, "error") && strstr(out, c->says), "%s: perkctl suppliers:\n%s", c->name,
              out);
    free(out);
    free(perr);

    /* orders route around it: the higher-priority offer is bad's */
    char coid[64], body[256];
    snprintf(coid, sizeof coid, "route-%s", c->name);
    snprintf(body, sizeof body,
             "{\"client_order_id\":\"%s\",\"sku\":\"topup\",\"quantity\":1,"
             "\"account\":\"13800000001\",\"wait\":10}",
             coid);
    h_resp r = h_post_json(&D, "/v1/orders", "mall-token", body);
    cr_assert_str_eq(h_str(h_order_of(&r), "state"), "succeeded", "%s: %s", c->name, r.body);
    long long id = h_int(h_order_of(&r), "id");
    h_resp_free(&r);
    snprintf(body, sizeof body, "/v1/orders/%lld", id);
    r = h_get(&D, body, "ops-token"); /* ops sees the attempts */
    json_t *attempts = json_object_get(h_order_of(&r), "attempts");
    cr_assert_eq(json_array_size(attempts), 1, "%s", r.body);
    cr_assert_str_eq(h_str(json_array_get(attempts, 0), "supplier"), "sbx");
    h_resp_free(&r);

    /* fixed and reloaded: it comes up */
    char *fixed = body_of(c->fixed_plugin, c->fixed, 0);
    D.custom = fixed;
    h_write_config(&D, NULL);
    kill(D.pid, SIGHUP);
    cr_assert_eq(h_wait_for(bad_ready, NULL, 10000), 0, "%s: a reload that fixes it starts it",
                 c->name);
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    free(fixed);
    free(line);
}

static void required(const bad_case *c)
{
    char *err = NULL;
    cr_assert_eq(check(&err), 1, "%s: check-config exit status; stderr:\n%s", c->name, err);
    char *line = problem_line(err, c->where);
    cr_assert(strstr(err, "perkhubd would not start: supplier 'bad' is required and cannot start"),
              "%s: %s", c->name, err);
    free(err);

    /* start agrees: it refuses, naming the supplier and the same problem */
    h_spawn(&D);
    int status = h_stop(&D, 0); /* signal 0: only wait for it */
    cr_assert_neq(status, 0, "%s: a required supplier that cannot start stops the start", c->name);
    size_t n;
    char *log = h_read_file(D.log, &n);
    cr_assert(strstr(log, "supplier 'bad' is required and cannot start"), "%s: %s", c->name, log);
    cr_assert(strstr(log, line), "%s: the log names the same problem as check-config:\n%s\n%s",
              c->name, line, log);
    free(log);
    free(line);
}

static void run_case(const bad_case *c, int req)
{
    h_setup_custom(&D, "", NULL); /* the directory first: the config names files in it */
    char *body = body_of(c->plugin, c->config, req);
    D.custom = body;
    h_write_config(&D, NULL);
    write_secret("open.key", 0644);
    write_secret("closed.key", 0600);
    setenv(FIX_VAR, "k3y-material", 1);
    unsetenv(UNSET_VAR);
    if (req)
        required(c);
    else
        not_required(c);
    h_cleanup(&D);
    free(body);
}

Test(check_config, missing_plugin)
{
    run_case(&cases[0], 0);
    run_case(&cases[0], 1);
}

Test(check_config, bad_config_key)
{
    run_case(&cases[1], 0);
    run_case(&cases[1], 1);
}

Test(check_config, secret_file_0644)
{
    run_case(&cases[2], 0);
    run_case(&cases[2], 1);
}

Test(check_config, unset_env_var)
{
    run_case(&cases[3], 0);
    run_case(&cases[3], 1);
}

/* Every problem of a config in one run, and nothing wrong means ok and a start. */
Test(check_config, all_problems_then_ok)
{
    static const char body[] = "suppliers:\n"
                               "  - id: sbx\n    plugin: sandbox\n"
                               "  - id: gone\n    plugin: nosuch\n"
                               "  - id: rw\n    plugin: rewards\n    config:\n"
                               "      base_url: http://127.0.0.1:9/rewards\n      api_kye: x\n"
                               "      webhook_secret: env:" UNSET_VAR "\n"
                               "products:\n"
                               "  - sku: c\n    name: C\n    brand: b\n    category: video\n"
                               "    delivery: card_code\n    face_value: \"1.00\"\n";
    h_setup_custom(&D, body, NULL);
    unsetenv(UNSET_VAR);
    char *err = NULL;
    cr_assert_eq(check(&err), 1);
    cr_assert(strstr(err, "suppliers[1].plugin: supplier 'gone'"), "%s", err);
    cr_assert(strstr(err, "suppliers[2].config.api_kye: supplier 'rw'"), "%s", err);
    cr_assert(strstr(err, "suppliers[2].config.webhook_secret: supplier 'rw'"), "%s", err);
    cr_assert(strstr(err, "3 problems: perkhubd would start with 2 suppliers in state error"), "%s",
              err);
    free(err);
    h_cleanup(&D);

    static const char good[] = "suppliers:\n"
                               "  - id: sbx\n    plugin: sandbox\n"
                               "products:\n"
                               "  - sku: c\n    name: C\n    brand: b\n    category: video\n"
                               "    delivery: card_code\n    face_value: \"1.00\"\n";
    h_setup_custom(&D, good, NULL);
    const char *argv[] = {h_bin("PH_PERKHUBD"), "--check-config", D.config, NULL};
    char *out = NULL;
    cr_assert_eq(h_run(argv, NULL, NULL, 0, &out, &err), 0, "%s", err);
    cr_assert(strstr(out, ": ok (4 clients, 1 suppliers, 1 products)"), "%s", out);
    free(out);
    free(err);
    cr_assert_eq(h_start(&D), 0);
    json_t *s = supplier_view("sbx");
    cr_assert_str_eq(h_str(s, "state"), "ready");
    json_decref(s);
    h_stop_clean(&D);
}
