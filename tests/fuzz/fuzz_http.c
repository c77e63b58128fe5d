/*
 * fuzz_http.c — libFuzzer harness for the HTTP request handlers (issue 10),
 * through ph_http_serve_offline: one request at a time through the same path
 * a request from the network takes (framing, routing, tokens and scopes, query
 * parameters, body limits, the handler, its suspensions, the response),
 * against a daemon started in this process on a temporary data directory.
 *
 * An input is a request as on the wire, minus the transport:
 *
 *   METHOD URL [HTTP/1.1]\n      (the URL with its query, %-encoded as sent)
 *   Name: value\n                 (header lines; "\r\n" works too)
 *   \n
 *   body bytes                    (the rest, as is)
 *
 * The configuration has one token per scope ("fulfill-token", "support-token",
 * "ops-token"), the manual supplier (acme: no operations) and the sandbox
 * (sbx: local, answers in milliseconds here), a card product with codes
 * imported at start and a recharge product; corpus/http/ holds realistic
 * requests. limits.max_order_wait_s is 0, so no input holds a worker for
 * seconds. Every FZ_RESTART inputs the daemon is stopped and started again
 * on a fresh directory, so the store (every accepted order and import stays
 * in it) cannot grow without bound over a long run.
 *
 * Checked for every input besides the sanitizers: a response always comes
 * (PH_OK) unless a header line has no name; its status is a real HTTP
 * status; its body is NUL-terminated at the length said; an error body (4xx,
 * 5xx) is a JSON object with "error" and "message".
 *
 * Build (until tests/fuzz/CMakeLists.txt does it): see the report of issue 10;
 * run with PH_PLUGIN_DIR=<build>/plugins, or from the build tree (the plugins
 * are looked for at <exe>/../../plugins and <exe>/../plugins).
 */
#include <dlfcn.h>
#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "http/http_api.h"
#include "supply/suppliers.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_http: invariant broken at %s:%d: %s: ", __FILE__, __LINE__,      \
                    #cond);                                                                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define FZ_RESTART     20000 /* inputs between two fresh daemons */
#define FZ_MAX_HEADERS 64

/* sha256 of "fulfill-token", "support-token", "ops-token" */
static const char config_fmt[] =
    "listen:\n  address: 127.0.0.1\n  port: 0\n"
    "data_dir: %s/data\nmap_size_mb: 16\nmaster_key_file: %s/master.key\n"
    "master_key_create: true\nplugin_dir: %s\nlog:\n  level: error\n"
    "limits:\n  max_body_mb: 1\n  max_order_quantity: 100\n  max_order_wait_s: 0\n"
    "  max_import_codes: 1000\n"
    "clients:\n"
    "  - name: mall\n    token_sha256: "
    "b85d590db0211c10bdcd8c97c7a7df12c576e72c0ff76d67bb5421a078888d39\n"
    "    scopes: [fulfill]\n"
    "  - name: cs\n    token_sha256: "
    "ebca95604276a73fb41ea1ae6556b45bf815fa9733bc6e7a7be1316f9c3e8a89\n"
    "    scopes: [support]\n"
    "  - name: ops\n    token_sha256: "
    "d9310c002af91822beb0b3487d8b04f85bf6bf1f8a5496bff7d35fc7c5a29def\n"
    "    scopes: [ops]\n"
    "suppliers:\n"
    "  - id: acme\n    plugin: manual\n    priority: 10\n"
    "  - id: sbx\n    plugin: sandbox\n    priority: 5\n"
    "    config:\n      slow_ms: 5\n      settle_ms: 20\n"
    "products:\n"
    "  - sku: test.card\n    name: Test card\n    brand: tb\n    category: video\n"
    "    tags: [video]\n    delivery: card_code\n    face_value: \"30.00\"\n"
    "    offers:\n      - {supplier: acme, supplier_sku: T-1, cost: \"19.80\"}\n"
    "  - sku: test.topup\n    name: Top-up\n    brand: telco\n    category: telecom\n"
    "    delivery: recharge\n    face_value: \"50.00\"\n"
    "    offers:\n      - {supplier: sbx, supplier_sku: sandbox.recharge, cost: \"49.00\"}\n";

/* libFuzzer's interface is two plain functions: the daemon they share lives
 * here, built by LLVMFuzzerInitialize and torn down at exit. */
static struct {
    ph_daemon d;
    int up;
    char dir[64];
    char plugins[PATH_MAX];
    unsigned long served;
} fz;

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_http: %s: %s\n", what, detail);
    exit(1);
}

static int has_sandbox(const char *dir)
{
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/sandbox.so", dir);
    return access(p, R_OK) == 0;
}

static void find_plugins(void)
{
    const char *env = getenv("PH_PLUGIN_DIR");
    if (env && *env) {
        snprintf(fz.plugins, sizeof fz.plugins, "%s", env);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        const char *d = dirname(exe);
        static const char *const rel[] = {"../../plugins", "../plugins", "plugins"};
        for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
            snprintf(fz.plugins, sizeof fz.plugins, "%s/%s", d, rel[i]);
            if (has_sandbox(fz.plugins))
                return;
        }
    }
    die("no plugin directory", "set PH_PLUGIN_DIR to <build>/plugins");
}

static void rm_dir(void)
{
    char cmd[128];
    if (fz.dir[0] && snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz.dir) < (int)sizeof cmd &&
        system(cmd) != 0)
        fprintf(stderr, "fuzz_http: could not remove %s\n", fz.dir);
    fz.dir[0] = 0;
}

static unsigned serve(const char *method, const char *url, const char *const *headers,
                      const char *body, size_t len, char **out, size_t *out_len)
{
    unsigned status = 0;
    int rc =
        ph_http_serve_offline(fz.d.http, method, url, headers, body, len, &status, out, out_len);
    return rc == PH_OK ? status : 0;
}

static void daemon_up(void)
{
    snprintf(fz.dir, sizeof fz.dir, "/tmp/ph-fuzz-http-XXXXXX");
    if (!mkdtemp(fz.dir))
        die("mkdtemp", strerror(errno));
    char yaml[4096];
    int n = snprintf(yaml, sizeof yaml, config_fmt, fz.dir, fz.dir, fz.plugins);
    if (n <= 0 || (size_t)n >= sizeof yaml)
        die("config", "too long");
    ph_config *cfg;
    ph_err err = {0};
    if (ph_config_load_string(yaml, (size_t)n, "fuzz_http", &cfg, &err) != PH_OK)
        die("config", err.msg);
    memset(&fz.d, 0, sizeof fz.d);
    if (ph_daemon_start(&fz.d, cfg, NULL, &err) != PH_OK)
        die("daemon", err.msg);
    /* the daemon would wake this thread with SIGUSR2 (main.c's sigwait), which
     * libFuzzer takes as "stop": suppliers are reaped when it stops instead */
    ph_suppliers_set_wake(fz.d.suppliers, NULL, NULL);
    fz.up = 1;
    /* codes in stock, so that orders reach issuance */
    static const char csv[] = "code\nFZ-0001\nFZ-0002\nFZ-0003\nFZ-0004\nFZ-0005\nFZ-0006\n";
    const char *const hdr[] = {"Authorization: Bearer ops-token", "Content-Type: text/csv", NULL};
    char *out = NULL;
    size_t out_len = 0;
    unsigned st = serve("POST", "/v1/batches?supplier=acme&sku=test.card&unit_cost=19.80", hdr, csv,
                        sizeof csv - 1, &out, &out_len);
    if (st != 201)
        die("import of the seed codes", out ? out : "no answer");
    free(out);
}

static void daemon_down(void)
{
    if (fz.up)
        ph_daemon_stop(&fz.d, 5000);
    fz.up = 0;
    rm_dir();
}

/* The plugins stay mapped for the whole run: libFuzzer keeps pointers to an
 * instrumented module's coverage counters, and a restart's dlclose followed by
 * a dlopen at another address would leave it reading unmapped memory. The
 * daemon's own dlopen then only takes another reference. */
static void pin_plugins(void)
{
    static const char *const names[] = {"manual", "sandbox"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char p[PATH_MAX + 32];
        snprintf(p, sizeof p, "%s/%s.so", fz.plugins, names[i]);
        if (!dlopen(p, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE))
            die("dlopen", dlerror());
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    find_plugins();
    pin_plugins();
    daemon_up();
    atexit(daemon_down);
    return 0;
}

/* The next line of data[*pos..size): its bytes without "\n" or "\r\n", as a
 * NUL-terminated copy (a NUL inside ends it, as it would end a C string
 * anywhere after MHD). NULL at the end of the input. */
static char *next_line(const uint8_t *data, size_t size, size_t *pos)
{
    if (*pos >= size)
        return NULL;
    const uint8_t *s = data + *pos, *nl = memchr(s, '\n', size - *pos);
    size_t n = nl ? (size_t)(nl - s) : size - *pos;
    *pos += n + (nl != NULL);
    if (n && s[n - 1] == '\r')
        n--;
    char *l = malloc(n + 1);
    if (!l)
        abort();
    memcpy(l, s, n);
    l[n] = 0;
    return l;
}

static void check_response(unsigned status, const char *out, size_t len)
{
    FZ_CHECK(status >= 100 && status <= 599, "status %u", status);
    FZ_CHECK(out && strlen(out) == len, "body of %zu bytes, strlen %zu", len,
             out ? strlen(out) : 0);
    if (status < 400)
        return;
    json_t *j = json_loadb(out, len, 0, NULL);
    FZ_CHECK(json_is_object(j) && json_is_string(json_object_get(j, "error")) &&
                 json_is_string(json_object_get(j, "message")),
             "error body without error/message: %.200s", out);
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t pos = 0;
    char *first = next_line(data, size, &pos);
    if (!first)
        return 0;
    char *url = strchr(first, ' ');
    if (!url || url == first) {
        free(first);
        return 0;
    }
    *url++ = 0;
    char *proto = strchr(url, ' ');
    if (proto)
        *proto = 0; /* "METHOD URL HTTP/1.1" as on the wire */
    char *headers[FZ_MAX_HEADERS + 1];
    size_t nh = 0;
    char *l;
    while ((l = next_line(data, size, &pos))) {
        if (!*l || nh == FZ_MAX_HEADERS) {
            free(l);
            break;
        }
        headers[nh++] = l;
    }
    headers[nh] = NULL;
    const char *body = pos < size ? (const char *)data + pos : NULL;
    size_t len = pos < size ? size - pos : 0;

    char *out = NULL;
    size_t out_len = 0;
    unsigned status = 0;
    int rc = ph_http_serve_offline(fz.d.http, first, url, (const char *const *)headers, body, len,
                                   &status, &out, &out_len);
    int nameless = 0;
    for (size_t i = 0; i < nh; i++)
        nameless |= headers[i][0] == ':' || !strchr(headers[i], ':');
    FZ_CHECK(rc == PH_OK || (rc == PH_EINVAL && nameless), "serve_offline: %s", ph_strerror(rc));
    if (rc == PH_OK)
        check_response(status, out, out_len);
    free(out);
    for (size_t i = 0; i < nh; i++)
        free(headers[i]);
    free(first);
    if (++fz.served % FZ_RESTART == 0) {
        daemon_down();
        daemon_up();
    }
    return 0;
}
