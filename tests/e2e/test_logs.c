/*
 * test_logs.c — log.format: json and log.file with a reopen on SIGUSR1 (issue
 * 14, item 2): what logrotate does (rename, then signal) against a running
 * daemon taking requests; every line of both files is one JSON object.
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

struct file_count {
    const char *path, *needle;
    long count;
};

static int file_has(void *arg)
{
    struct file_count *f = arg;
    return h_file_count(f->path, f->needle) >= f->count;
}

/* Every line of path parsed (each must be a JSON object with time, level
 * and event); returns the lines as a JSON array (caller json_decref's). */
static json_t *parse_all(const char *path)
{
    size_t n = 0;
    char *text = h_read_file(path, &n);
    cr_assert(text, "%s is missing", path);
    cr_assert(n > 0 && text[n - 1] == '\n', "%s does not end with a whole line", path);
    json_t *lines = json_array();
    for (char *l = text, *e; l < text + n; l = e + 1) {
        e = memchr(l, '\n', (size_t)(text + n - l));
        *e = 0;
        json_error_t je;
        json_t *o = json_loads(l, JSON_REJECT_DUPLICATES, &je);
        cr_assert(o && json_is_object(o), "%s: not a JSON object (%s): %s", path, je.text, l);
        const char *t = json_string_value(json_object_get(o, "time"));
        cr_assert(t && strlen(t) == 24 && t[23] == 'Z', "%s: time: %s", path, l);
        cr_assert(json_is_string(json_object_get(o, "level")), "%s", l);
        cr_assert(json_is_string(json_object_get(o, "event")), "%s", l);
        json_array_append_new(lines, o);
    }
    free(text);
    return lines;
}

static size_t count_event(json_t *lines, const char *event)
{
    size_t i, c = 0;
    json_t *o;
    json_array_foreach(lines, i, o)
    {
        if (strcmp(json_string_value(json_object_get(o, "event")), event) == 0)
            c++;
    }
    return c;
}

static void requests(const char *coid_prefix, int n)
{
    for (int i = 0; i < n; i++) {
        char coid[64];
        snprintf(coid, sizeof coid, "%s-%d", coid_prefix, i);
        h_resp r = h_order(&D, "mall-token", coid, "test.card", 1);
        cr_assert_eq(r.status, 201, "%s", r.body);
        h_resp_free(&r);
        /* a hostile path: it must stay one string value */
        r = h_get(&D, "/v1/nope%22,%22level%22:%22error", "mall-token");
        h_resp_free(&r);
    }
}

Test(logs, json_file_reopened_on_sigusr1, .fini = teardown)
{
    h_setup(&D, NULL);
    char file[400], rotated[400];
    snprintf(file, sizeof file, "%s/json.log", D.dir);
    snprintf(rotated, sizeof rotated, "%s/json.log.1", D.dir);
    char *text = h_config_text(&D, NULL);
    char log_block[600];
    snprintf(log_block, sizeof log_block, "log:\n  level: info\n  format: json\n  file: %s\n",
             file);
    char *edited = h_replace(text, "log:\n  level: info\n", log_block);
    h_write_config_text(&D, edited);
    free(text);
    free(edited);
    cr_assert_eq(h_start(&D), 0);

    char *csv = h_codes_csv("LOGS", 20);
    h_resp r = h_import(&D, "test.card", csv, 201);
    h_resp_free(&r);
    free(csv);
    requests("A", 5);
    struct file_count before = {file, "\"event\":\"http.request\"", 11};
    cr_assert_eq(h_wait_for(file_has, &before, 10000), 0, "request lines in %s", file);
    struct stat st;
    cr_assert_eq(stat(file, &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0640 & ~0022 & 0777, "created 0640 (less the umask)");

    /* logrotate: rename, then the signal; the daemon says where it writes now */
    cr_assert_eq(rename(file, rotated), 0);
    cr_assert_eq(kill(D.pid, SIGUSR1), 0);
    struct file_count reopened = {file, "\"event\":\"log.reopened\"", 1};
    cr_assert_eq(h_wait_for(file_has, &reopened, 10000), 0, "no log.reopened line in a new %s",
                 file);
    requests("B", 5);
    struct file_count after = {file, "\"event\":\"http.request\"", 10};
    cr_assert_eq(h_wait_for(file_has, &after, 10000), 0, "request lines after the reopen");
    cr_assert_eq(h_stop(&D, SIGTERM), 0);

    json_t *old = parse_all(rotated), *neu = parse_all(file);
    cr_expect_eq(count_event(old, "daemon.started"), 1);
    cr_expect_eq(count_event(old, "order.created"), 5);
    cr_expect_eq(count_event(neu, "order.created"), 5, "the orders after the reopen");
    cr_expect_eq(count_event(neu, "daemon.stopping"), 1);
    cr_expect_eq(count_event(old, "log.reopened") + count_event(neu, "log.reopened"), 1);
    /* typed fields and the hostile path as one value */
    size_t i, hostile = 0;
    json_t *o;
    json_array_foreach(neu, i, o)
    {
        const char *ev = json_string_value(json_object_get(o, "event"));
        cr_expect_str_eq(json_string_value(json_object_get(o, "level")),
                         strcmp(ev, "http.request") == 0
                             ? "info"
                             : json_string_value(json_object_get(o, "level")));
        if (strcmp(ev, "order.created") == 0) {
            cr_expect(json_is_integer(json_object_get(o, "order")), "order is a number");
            cr_expect(json_is_integer(json_object_get(o, "quantity")));
            cr_expect_str_eq(json_string_value(json_object_get(o, "sku")), "test.card");
        }
        if (strcmp(ev, "http.request") == 0) {
            cr_expect(json_is_integer(json_object_get(o, "status")));
            cr_expect(json_is_string(json_object_get(o, "req")), "the request id");
            const char *path = json_string_value(json_object_get(o, "path"));
            if (path && strstr(path, "level"))
                hostile++;
        }
    }
    cr_expect_eq(hostile, 5, "the hostile path requests, each one string value");
    json_decref(old);
    json_decref(neu);
    h_cleanup(&D);
}

/* A log.file that cannot be opened stops the start with an error naming it. */
Test(logs, unopenable_file_is_a_clear_error, .fini = teardown)
{
    h_setup(&D, NULL);
    char *text = h_config_text(&D, NULL);
    char *edited = h_replace(text, "log:\n  level: info\n",
                             "log:\n  level: info\n  file: /nonexistent-dir/perkhubd.log\n");
    h_write_config_text(&D, edited);
    free(text);
    free(edited);
    const char *argv[] = {h_bin("PH_PERKHUBD"), "-c", D.config, NULL};
    char *err = NULL;
    int st = h_run(argv, NULL, NULL, 0, NULL, &err);
    cr_expect_neq(st, 0);
    cr_expect(err && strstr(err, "log.file") && strstr(err, "/nonexistent-dir/perkhubd.log"), "%s",
              err ? err : "");
    free(err);
    h_cleanup(&D);
}
