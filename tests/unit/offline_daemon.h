/*
 * offline_daemon.h — a whole daemon in the test's process, driven through
 * ph_http_serve_offline (real requests, no socket): what test_http_api.c and
 * test_api_reviews.c share. The configuration has three clients (a mall with
 * scope fulfill, cs with support, ops), a card product at the example plugin
 * and a recharge at the sandbox; each test starts it (daemon_up) and stops it
 * (daemon_down) in a fresh directory under /tmp.
 *
 * Every unit test is its own executable built from one file, so this header
 * holds the definitions and is included once per test. Every helper fails the
 * test (Criterion assertion) instead of returning an error.
 */
#ifndef PH_OFFLINE_DAEMON_H
#define PH_OFFLINE_DAEMON_H

#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "http/http_api.h"

/* sha256 of "fulfill-token", "support-token", "ops-token" */
#define CONFIG                                                                                     \
    "listen:\n  address: 127.0.0.1\n  port: 0\n"                                                   \
    "data_dir: %s/data\nmap_size_mb: 16\nmaster_key_file: %s/master.key\n"                         \
    "master_key_create: true\nplugin_dir: %s\nlog:\n  level: warn\n"                               \
    "clients:\n"                                                                                   \
    "  - name: mall\n    token_sha256: "                                                           \
    "b85d590db0211c10bdcd8c97c7a7df12c576e72c0ff76d67bb5421a078888d39\n"                           \
    "    scopes: [fulfill]\n"                                                                      \
    "  - name: cs\n    token_sha256: "                                                             \
    "ebca95604276a73fb41ea1ae6556b45bf815fa9733bc6e7a7be1316f9c3e8a89\n"                           \
    "    scopes: [support]\n"                                                                      \
    "  - name: ops\n    token_sha256: "                                                            \
    "d9310c002af91822beb0b3487d8b04f85bf6bf1f8a5496bff7d35fc7c5a29def\n"                           \
    "    scopes: [ops]\n"                                                                          \
    "suppliers:\n  - id: acme\n    plugin: manual\n  - id: sbx\n    plugin: sandbox\n"             \
    "products:\n"                                                                                  \
    "  - sku: test.card\n    name: Test card\n    brand: tb\n    category: video\n"                \
    "    delivery: card_code\n    face_value: \"30.00\"\n"                                         \
    "    offers:\n      - {supplier: acme, supplier_sku: T-1, cost: \"19.80\"}\n"                  \
    "  - sku: test.topup\n    name: Top-up\n    brand: telco\n    category: telecom\n"             \
    "    delivery: recharge\n    face_value: \"50.00\"\n"                                          \
    "    offers:\n      - {supplier: sbx, supplier_sku: sandbox.recharge, cost: \"49.00\"}\n"

static ph_daemon D;
static char dir[64];

static void daemon_up(void)
{
    const char *plugins = getenv("PH_PLUGIN_DIR");
    cr_assert(plugins, "PH_PLUGIN_DIR is not set (run through ctest)");
    snprintf(dir, sizeof dir, "/tmp/ph-offline-XXXXXX");
    cr_assert(mkdtemp(dir));
    char yaml[4096];
    int n = snprintf(yaml, sizeof yaml, CONFIG, dir, dir, plugins);
    cr_assert(n > 0 && (size_t)n < sizeof yaml);
    ph_config *cfg;
    ph_err err = {0};
    cr_assert_eq(ph_config_load_string(yaml, (size_t)n, "offline", &cfg, &err), PH_OK, "%s",
                 err.msg);
    /* the daemon wakes its starting thread with PH_SIGNAL_WAKE to reap a supplier
     * (main.c's sigwait); here they are reaped when it stops */
    signal(PH_SIGNAL_WAKE, SIG_IGN);
    cr_assert_eq(ph_daemon_start(&D, cfg, NULL, &err), PH_OK, "%s", err.msg);
}

static void daemon_down(void)
{
    ph_daemon_stop(&D, 5000);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* One offline request; returns the status and, in *j, the body parsed (caller
 * decrefs; NULL when not JSON). */
static unsigned serve(const char *method, const char *url, const char *const *headers,
                      const char *body, json_t **j)
{
    unsigned status = 0;
    char *out = NULL;
    size_t len = 0;
    int rc = ph_http_serve_offline(D.http, method, url, headers, body, body ? strlen(body) : 0,
                                   &status, &out, &len);
    cr_assert_eq(rc, PH_OK, "%s %s: %s", method, url, ph_strerror(rc));
    cr_assert(out);
    cr_assert_eq(strlen(out), len);
    if (j)
        *j = json_loads(out, 0, NULL);
    free(out);
    return status;
}

#define H(...)  ((const char *const[]){__VA_ARGS__, NULL})
#define FULFILL "Authorization: Bearer fulfill-token"
#define OPS     "Authorization: Bearer ops-token"

static const char *str_at(json_t *j, const char *path1, const char *path2)
{
    json_t *o = json_object_get(j, path1);
    return json_string_value(path2 ? json_object_get(o, path2) : o);
}

#endif
