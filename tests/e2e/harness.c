#include "harness.h"

#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *h_bin(const char *env_name)
{
    const char *p = getenv(env_name);
    cr_assert(p && *p, "%s is not set (run the tests through ctest)", env_name);
    return p;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Polls cond until it holds or timeout_ms passes: a wait on a condition. */
static int wait_until(int (*cond)(void *), void *arg, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    while (!cond(arg)) {
        if (now_ms() > end)
            return -1;
        usleep(5000);
    }
    return 0;
}

/* The part every config shares: listener, data, key, clients. */
#define STD_HEAD                                                                                   \
    "listen:\n  address: 127.0.0.1\n  port: 0\n  port_file: %s/port\n"                             \
    "data_dir: %s/data\n"                                                                          \
    "map_size_mb: 16\n"                                                                            \
    "master_key_file: %s/master.key\n"                                                             \
    "master_key_create: true\n"                                                                    \
    "plugin_dir: %s\n"                                                                             \
    "log:\n  level: info\n"                                                                        \
    "clients:\n"                                                                                   \
    "  - name: mall\n    token_sha256: %s\n    scopes: [fulfill, support]\n"                       \
    "  - name: othermall\n    token_sha256: %s\n    scopes: [fulfill, support]\n"                  \
    "  - name: ops\n    token_sha256: %s\n    scopes: [ops]\n"                                     \
    "  - name: cs\n    token_sha256: %s\n    scopes: [support]\n"

static const char *std_config = STD_HEAD
    "suppliers:\n"
    "  - id: acme\n    plugin: manual\n    priority: 10\n"
    "  - id: sbx\n    plugin: sandbox\n    priority: 5\n"
    "products:\n"
    "  - sku: test.card\n    name: Test card\n    brand: testbrand\n    category: video\n"
    "    tags: [video, monthly]\n    delivery: card_code\n    face_value: \"30.00\"\n"
    "    redemption_guide: Open the app and enter the code.\n"
    "    offers:\n      - {supplier: acme, supplier_sku: T-1, cost: \"19.80\"}\n"
    "  - sku: test.card2\n    name: Second test card\n    brand: otherbrand\n    category: music\n"
    "    delivery: card_code\n    face_value: \"15.00\"\n"
    "  - sku: test.topup\n    name: Test top-up\n    brand: telco\n    category: telecom\n"
    "    delivery: recharge\n    face_value: \"50.00\"\n"
    "    offers:\n      - {supplier: sbx, supplier_sku: sandbox.recharge, cost: \"49.00\"}\n"
    "  - sku: test.hidden\n    name: Hidden card\n    brand: testbrand\n    category: video\n"
    "    delivery: card_code\n    face_value: \"10.00\"\n    listed: false\n";

static void sha_hex(const char *s, char out[65])
{
    /* sha256sum of the token, computed by the same tool a user would use */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "printf %%s '%s' | sha256sum", s);
    FILE *f = popen(cmd, "r");
    cr_assert(f);
    cr_assert(fread(out, 1, 64, f) == 64);
    out[64] = 0;
    pclose(f);
}

void h_write_config(h_daemon *d, const char *extra)
{
    char *text = h_config_text(d, extra);
    h_write_config_text(d, text);
    free(text);
}

void h_setup_custom(h_daemon *d, const char *body, const char *extra)
{
    h_setup(d, NULL);
    d->custom = body;
    h_write_config(d, extra);
}

void h_setup(h_daemon *d, const char *extra)
{
    memset(d, 0, sizeof *d);
    snprintf(d->dir, sizeof d->dir, "/tmp/perkhub-e2e-XXXXXX");
    cr_assert(mkdtemp(d->dir), "mkdtemp: %s", strerror(errno));
    snprintf(d->config, sizeof d->config, "%s/perkhub.yaml", d->dir);
    snprintf(d->log, sizeof d->log, "%s/perkhubd.log", d->dir);
    snprintf(d->data, sizeof d->data, "%s/data", d->dir);
    snprintf(d->port_file, sizeof d->port_file, "%s/port", d->dir);
    h_write_config(d, extra);
}

/* The port in a port file into *port (0 while there is none yet): 1 once it
 * is known or the process pid has exited (nothing left to wait for). */
static int port_file_read(const char *file, pid_t pid, uint16_t *port)
{
    FILE *f = fopen(file, "r");
    unsigned p = 0;
    if (f) {
        if (fscanf(f, "%u", &p) != 1)
            p = 0;
        fclose(f);
    }
    *port = (uint16_t)p;
    return p != 0 || waitpid(pid, NULL, WNOHANG) == pid;
}

static int port_known(void *arg)
{
    h_daemon *d = arg;
    return port_file_read(d->port_file, d->pid, &d->port);
}

static int healthy(void *arg)
{
    h_resp r;
    if (h_http(arg, "GET", "/v1/health", NULL, NULL, NULL, 0, &r))
        return 0;
    int ok = r.status == 200;
    h_resp_free(&r);
    return ok;
}

int h_start(h_daemon *d)
{
    h_spawn(d);
    if (wait_until(port_known, d, 30000) || d->port == 0 || wait_until(healthy, d, 30000)) {
        size_t n;
        char *log = h_read_file(d->log, &n);
        fprintf(stderr, "perkhubd did not start; its log:\n%s\n", log ? log : "(none)");
        free(log);
        return -1;
    }
    return 0;
}

int h_stop(h_daemon *d, int sig)
{
    int status = 0;
    if (d->pid <= 0)
        return -1;
    kill(d->pid, sig);
    while (waitpid(d->pid, &status, 0) < 0 && errno == EINTR)
        ;
    d->pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void h_cleanup(h_daemon *d)
{
    if (d->pid > 0)
        h_stop(d, SIGKILL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d->dir);
    if (strncmp(d->dir, "/tmp/perkhub-e2e-", 17) == 0 && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", d->dir);
}

/* ---- HTTP ------------------------------------------------------------------ */

typedef h_buf buf;

size_t h_buf_append(char *ptr, size_t size, size_t nmemb, void *arg)
{
    buf *b = arg;
    size_t n = size * nmemb;
    char *g = realloc(b->p, b->n + n + 1);
    if (!g)
        return 0;
    memcpy(g + b->n, ptr, n);
    b->p = g;
    b->n += n;
    b->p[b->n] = 0;
    return n;
}

int h_http(const h_daemon *d, const char *method, const char *path, const char *token,
           const char *content_type, const char *body, size_t len, h_resp *out)
{
    return h_http_hdr(d, method, path, token, content_type, NULL, body, len, out);
}

int h_http_hdr(const h_daemon *d, const char *method, const char *path, const char *token,
               const char *content_type, const char *header, const char *body, size_t len,
               h_resp *out)
{
    memset(out, 0, sizeof *out);
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    char url[512], auth[256], ct[128];
    snprintf(url, sizeof url, "%s://127.0.0.1:%u%s", d->tls_ca ? "https" : "http", d->port, path);
    struct curl_slist *hdr = NULL;
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        hdr = curl_slist_append(hdr, auth);
    }
    snprintf(ct, sizeof ct, "Content-Type: %s", content_type ? content_type : "application/json");
    hdr = curl_slist_append(hdr, ct);
    hdr = curl_slist_append(hdr, "Expect:");
    if (header)
        hdr = curl_slist_append(hdr, header);
    buf b = {0}, h = {0};
    if (d->tls_ca)
        curl_easy_setopt(c, CURLOPT_CAINFO, d->tls_ca);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_buf_append);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, h_buf_append);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    out->body = b.p ? b.p : strdup("");
    out->len = b.n;
    out->headers = h.p ? h.p : strdup("");
    out->json = json_loads(out->body, 0, NULL);
    return rc == CURLE_OK ? 0 : -1;
}

void h_resp_free(h_resp *r)
{
    free(r->body);
    free(r->headers);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

h_resp h_get(const h_daemon *d, const char *path, const char *token)
{
    h_resp r;
    cr_assert(h_http(d, "GET", path, token, NULL, NULL, 0, &r) == 0, "GET %s: no response", path);
    return r;
}

h_resp h_post_json(const h_daemon *d, const char *path, const char *token, const char *json)
{
    h_resp r;
    cr_assert(h_http(d, "POST", path, token, "application/json", json, strlen(json), &r) == 0,
              "POST %s: no response", path);
    return r;
}

h_resp h_order(const h_daemon *d, const char *token, const char *coid, const char *sku, int qty)
{
    char body[512];
    snprintf(body, sizeof body, "{\"client_order_id\":\"%s\",\"sku\":\"%s\",\"quantity\":%d}", coid,
             sku, qty);
    return h_post_json(d, "/v1/orders", token, body);
}

h_resp h_import(const h_daemon *d, const char *sku, const char *csv, long expect_status)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/batches?supplier=acme&sku=%s&unit_cost=19.80&note=e2e", sku);
    h_resp r;
    cr_assert(h_http(d, "POST", path, "ops-token", "text/csv", csv, strlen(csv), &r) == 0);
    cr_assert_eq(r.status, expect_status, "import: status %ld, body %s", r.status, r.body);
    return r;
}

char *h_codes_csv(const char *prefix, int n)
{
    size_t cap = (size_t)n * (strlen(prefix) + 16) + 32;
    char *s = malloc(cap);
    cr_assert(s);
    size_t off = (size_t)snprintf(s, cap, "code\n");
    for (int i = 0; i < n; i++)
        off += (size_t)snprintf(s + off, cap - off, "%s-%07d\n", prefix, i);
    return s;
}

char *h_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) {
        p[n] = 0;
        *len = (size_t)n;
    }
    return p;
}

long h_file_count(const char *path, const char *needle)
{
    size_t n, k = strlen(needle);
    char *p = h_read_file(path, &n);
    if (!p)
        return -1;
    long count = 0;
    for (char *at = p; (at = memmem(at, n - (size_t)(at - p), needle, k)); at += k)
        count++;
    free(p);
    return count;
}

int h_check_store(const h_daemon *d, char **out)
{
    char cmd[1200], keys[400];
    struct stat st_keys;
    /* with the key file, every code is unsealed and its index entry checked too */
    snprintf(keys, sizeof keys, "%s/master.key", d->dir);
    int keyed = stat(keys, &st_keys) == 0;
    snprintf(cmd, sizeof cmd, "'%s' --check-store '%s'%s%s%s 2>&1", h_bin("PH_PERKHUBD"), d->data,
             keyed ? " --key-file '" : "", keyed ? keys : "", keyed ? "'" : "");
    FILE *f = popen(cmd, "r");
    cr_assert(f);
    buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        h_buf_append(chunk, 1, n, &b);
    int st = pclose(f);
    *out = b.p ? b.p : strdup("");
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- for the rules tests (concurrency, crash, secrets) ----------------------- */

int64_t h_now_ms(void)
{
    return now_ms();
}

int64_t h_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_rfc3339(int64_t ms, char *buf, size_t n)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t len = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + len, n - len, ".%03dZ", (int)(ms % 1000));
}

int h_wait_for(int (*cond)(void *), void *arg, int timeout_ms)
{
    return wait_until(cond, arg, timeout_ms);
}

long h_mem_count(const char *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    long count = 0;
    if (!hay || !k)
        return 0;
    for (const char *at = hay; (at = memmem(at, n - (size_t)(at - hay), needle, k)); at += k)
        count++;
    return count;
}

const char *h_header(const h_resp *r, const char *name, char *buf, size_t len)
{
    size_t k = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        if (n > k && strncasecmp(line, name, k) == 0 && line[k] == ':') {
            const char *v = line + k + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t vn = (size_t)(line + n - v);
            while (vn && (v[vn - 1] == '\r' || v[vn - 1] == ' '))
                vn--;
            snprintf(buf, len, "%.*s", (int)vn, v);
            return buf;
        }
        line = end ? end + 1 : line + n;
    }
    return NULL;
}

struct h_conn {
    CURL *curl;
    uint16_t port;
};

h_conn *h_conn_new(const h_daemon *d)
{
    h_conn *c = calloc(1, sizeof *c);
    cr_assert(c);
    c->curl = curl_easy_init();
    cr_assert(c->curl);
    c->port = d->port;
    return c;
}

void h_conn_free(h_conn *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->curl);
    free(c);
}

int h_conn_http(h_conn *c, const char *method, const char *path, const char *token,
                const char *content_type, const char *body, size_t len, h_resp *out)
{
    memset(out, 0, sizeof *out);
    char url[512], auth[256], ct[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", c->port, path);
    struct curl_slist *hdr = NULL;
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        hdr = curl_slist_append(hdr, auth);
    }
    snprintf(ct, sizeof ct, "Content-Type: %s", content_type ? content_type : "application/json");
    hdr = curl_slist_append(hdr, ct);
    hdr = curl_slist_append(hdr, "Expect:");
    buf b = {0}, h = {0};
    curl_easy_reset(c->curl); /* options only: the live connection stays cached */
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, h_buf_append);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, h_buf_append);
    curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    CURLcode rc = curl_easy_perform(c->curl);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(hdr);
    out->body = b.p ? b.p : strdup("");
    out->len = b.n;
    out->headers = h.p ? h.p : strdup("");
    out->json = rc == CURLE_OK ? json_loads(out->body, 0, NULL) : NULL;
    return rc == CURLE_OK ? 0 : -1;
}

int h_conn_order(h_conn *c, const char *token, const char *coid, const char *sku, int qty,
                 h_resp *out)
{
    char body[512];
    int n = snprintf(body, sizeof body,
                     "{\"client_order_id\":\"%s\",\"sku\":\"%s\",\"quantity\":%d}", coid, sku, qty);
    return h_conn_http(c, "POST", "/v1/orders", token, "application/json", body, (size_t)n, out);
}

/* ---- for the API tests (orders, lookup, bad input, ops, perkctl) ---------------- */

#include <poll.h>

char *h_config_text(const h_daemon *d, const char *extra)
{
    char mall[65], other[65], ops[65], cs[65];
    sha_hex("mall-token", mall);
    sha_hex("other-token", other);
    sha_hex("ops-token", ops);
    sha_hex("support-token", cs);
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    cr_assert(f);
    if (d->custom) {
        fprintf(f, STD_HEAD, d->dir, d->dir, d->dir, h_bin("PH_PLUGIN_DIR"), mall, other, ops, cs);
        fputs(d->custom, f);
    } else {
        fprintf(f, std_config, d->dir, d->dir, d->dir, h_bin("PH_PLUGIN_DIR"), mall, other, ops,
                cs);
    }
    if (extra)
        fputs(extra, f);
    cr_assert(fclose(f) == 0);
    return text;
}

void h_write_config_text(h_daemon *d, const char *text)
{
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s.tmp", d->config);
    FILE *f = fopen(tmp, "w");
    cr_assert(f, "cannot write %s", tmp);
    fputs(text, f);
    cr_assert(fclose(f) == 0);
    cr_assert(rename(tmp, d->config) == 0);
}

char *h_replace(const char *s, const char *from, const char *to)
{
    const char *at = strstr(s, from);
    cr_assert(at, "h_replace: '%s' not found", from);
    size_t head = (size_t)(at - s), fl = strlen(from), tl = strlen(to);
    char *out = malloc(strlen(s) - fl + tl + 1);
    cr_assert(out);
    memcpy(out, s, head);
    memcpy(out + head, to, tl);
    strcpy(out + head + tl, at + fl);
    return out;
}

json_t *h_stats(const h_daemon *d)
{
    h_resp r = h_get(d, "/v1/stats", "ops-token");
    cr_assert_eq(r.status, 200, "GET /v1/stats: %ld %s", r.status, r.body);
    cr_assert(json_is_object(r.json));
    json_t *st = json_incref(r.json);
    json_object_del(st, "map_size"); /* grows by itself */
    json_object_del(st, "writer");   /* the writer's own counters: every command counts */
    h_resp_free(&r);
    return st;
}

long long h_last_event(const h_daemon *d)
{
    json_t *st = h_stats(d);
    json_t *v = json_object_get(st, "last_event");
    cr_assert(json_is_integer(v), "stats without last_event");
    long long n = json_integer_value(v);
    json_decref(st);
    return n;
}

struct log_wait {
    const h_daemon *d;
    const char *needle;
    long count;
};

static int log_has(void *arg)
{
    struct log_wait *w = arg;
    return h_file_count(w->d->log, w->needle) >= w->count;
}

int h_log_wait(const h_daemon *d, const char *needle, long count, int timeout_ms)
{
    struct log_wait w = {d, needle, count};
    return wait_until(log_has, &w, timeout_ms);
}

int h_run(const char *const *argv, const char *const *env, const char *in, size_t in_len,
          char **out, char **err)
{
    int pin[2], pout[2], perr[2];
    cr_assert(pipe(pin) == 0 && pipe(pout) == 0 && pipe(perr) == 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(perr[1], 2);
        close(pin[0]), close(pin[1]), close(pout[0]), close(pout[1]), close(perr[0]),
            close(perr[1]);
        for (size_t i = 0; env && env[i]; i++)
            if (putenv((char *)env[i]) != 0)
                _exit(126);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    /* never block on stdin while stdout fills; a child that does not read its
     * stdin must not kill us with SIGPIPE */
    fcntl(pin[1], F_SETFL, O_NONBLOCK);
    signal(SIGPIPE, SIG_IGN);
    buf b[2] = {{0}, {0}};
    struct pollfd fds[3] = {{pout[0], POLLIN, 0}, {perr[0], POLLIN, 0}, {pin[1], POLLOUT, 0}};
    size_t sent = 0;
    if (!in || in_len == 0) {
        close(pin[1]);
        fds[2].fd = -1;
    }
    while (fds[0].fd >= 0 || fds[1].fd >= 0) {
        if (poll(fds, 3, -1) < 0) {
            cr_assert(errno == EINTR);
            continue;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char chunk[8192];
            ssize_t n = read(fds[i].fd, chunk, sizeof chunk);
            if (n > 0) {
                h_buf_append(chunk, 1, (size_t)n, &b[i]);
            } else if (n == 0 || errno != EINTR) {
                close(fds[i].fd);
                fds[i].fd = -1;
            }
        }
        if (fds[2].fd >= 0 && (fds[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t n = write(pin[1], in + sent, in_len - sent);
            if (n > 0)
                sent += (size_t)n;
            if ((n < 0 && errno != EINTR && errno != EAGAIN) || sent == in_len) {
                close(pin[1]);
                fds[2].fd = -1;
            }
        }
    }
    if (fds[2].fd >= 0)
        close(pin[1]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (out)
        *out = b[0].p ? b[0].p : strdup("");
    else
        free(b[0].p);
    if (err)
        *err = b[1].p ? b[1].p : strdup("");
    else
        free(b[1].p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

char *h_mdb_dump(const char *dir)
{
    const char *argv[] = {"/usr/bin/mdb_dump", "-a", dir, NULL};
    char *out = NULL, *err = NULL;
    cr_assert_eq(h_run(argv, NULL, NULL, 0, &out, &err), 0, "mdb_dump -a %s: %s", dir, err);
    free(err);
    char *w = out;
    for (char *line = out; *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line + 1) : strlen(line);
        if (strncmp(line, "mapsize=", 8) != 0) {
            memmove(w, line, n);
            w += n;
        }
        line += n;
    }
    *w = 0;
    return out;
}

long long h_mdb_dump_repl_seq(const char *dump_text)
{
    const char *m = strstr(dump_text, "database=meta");
    const char *k = m ? strstr(m, " 7265706c5f736571\n") : NULL;
    cr_assert(k, "no repl_seq in meta");
    const char *v = k + strlen(" 7265706c5f736571\n") + 1; /* the value line starts with a space */
    unsigned long long seq = 0;
    for (int b = 7; b >= 0; b--) {
        unsigned x;
        cr_assert(sscanf(v + 2 * b, "%2x", &x) == 1);
        seq = seq << 8 | x;
    }
    return (long long)seq;
}

long long h_fs_fill(const char *dir)
{
    char path[400];
    snprintf(path, sizeof path, "%s/filler", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    static char chunk[1 << 16];
    memset(chunk, 0x5a, sizeof chunk);
    long long total = 0;
    for (size_t n = sizeof chunk; n >= 512;) {
        ssize_t w = write(fd, chunk, n);
        if (w > 0)
            total += w;
        else
            n /= 2; /* ENOSPC: finish the last pages with smaller writes */
    }
    close(fd);
    return total;
}

unsigned long long h_fs_free(const char *dir)
{
    struct statvfs fs;
    cr_assert_eq(statvfs(dir, &fs), 0);
    return (unsigned long long)fs.f_bavail * fs.f_frsize;
}

void h_share_key(const h_daemon *from, const h_daemon *to)
{
    char a[400], b[400];
    snprintf(a, sizeof a, "%s/master.key", from->dir);
    snprintf(b, sizeof b, "%s/master.key", to->dir);
    const char *cp[] = {"/bin/cp", "-p", a, b, NULL};
    cr_assert_eq(h_run(cp, NULL, NULL, 0, NULL, NULL), 0, "cannot copy %s", a);
}

json_t *h_health_repl(const h_daemon *d)
{
    h_resp r;
    json_t *out = NULL;
    if (h_http(d, "GET", "/v1/health", NULL, NULL, NULL, 0, &r) == 0 && r.status == 200)
        out = json_incref(json_object_get(r.json, "replication"));
    h_resp_free(&r);
    return out;
}

int h_repl_role_is(const h_daemon *d, const char *role)
{
    json_t *rep = h_health_repl(d);
    const char *now = json_string_value(json_object_get(rep, "role"));
    int is = now && !strcmp(now, role);
    json_decref(rep);
    return is;
}

long long h_repl_applied(const h_daemon *d)
{
    json_t *rep = h_health_repl(d);
    json_t *a = json_object_get(rep, "applied_seq");
    long long v = json_is_integer(a) ? (long long)json_integer_value(a) : -1;
    json_decref(rep);
    return v;
}

/* ---- for the rules tests, continued ---------------------------------------- */

void h_spawn(h_daemon *d)
{
    unlink(d->port_file);
    d->port = 0;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a crashed test leaves no orphan daemon */
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 2);
        dup2(fd, 1);
        /* PH_DAEMON_WRAPPER (e.g. "valgrind --error-exitcode=99") runs the daemon under a tool */
        const char *wrap = getenv("PH_DAEMON_WRAPPER");
        if (wrap && *wrap) {
            char cmd[1024];
            snprintf(cmd, sizeof cmd, "exec %s '%s' -c '%s'", wrap, h_bin("PH_PERKHUBD"),
                     d->config);
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        }
        execl(h_bin("PH_PERKHUBD"), "perkhubd", "-c", d->config, (char *)NULL);
        _exit(127);
    }
    d->pid = pid;
}

const char *h_str(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    cr_assert(s, "'%s' is not a string", key);
    return s;
}

json_t *h_stats_sku(json_t *stats, const char *sku)
{
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(stats, "skus"), i, row)
    {
        if (strcmp(h_str(row, "sku"), sku) == 0)
            return row;
    }
    return NULL;
}

long long h_int(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    cr_assert(json_is_integer(v), "'%s' is not an integer", key);
    return json_integer_value(v);
}

void h_leftover(h_daemon *d)
{
    if (d && d->pid > 0) {
        fprintf(stderr, "killing perkhubd %d left by a failure; its files stay in %s\n",
                (int)d->pid, d->dir);
        h_stop(d, SIGKILL);
    }
}

/* ---- the supplier simulator -------------------------------------------------- */

static int sim_port_known(void *arg)
{
    h_sim *s = arg;
    return port_file_read(s->port_file, s->pid, &s->port);
}

int h_sim_start(h_sim *s, const char *const *args)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "/tmp/perkhub-sim-XXXXXX");
    cr_assert(mkdtemp(s->dir), "mkdtemp: %s", strerror(errno));
    snprintf(s->port_file, sizeof s->port_file, "%s/port", s->dir);
    snprintf(s->log, sizeof s->log, "%s/supsim.log", s->dir);
    const char *argv[32] = {"supsim", "--port", "0", "--port-file", s->port_file, "--seed", "42"};
    size_t n = 7;
    for (size_t i = 0; args && args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 2);
        dup2(fd, 1);
        execv(h_bin("PH_SUPSIM"), (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    if (wait_until(sim_port_known, s, 30000) || !s->port) {
        fprintf(stderr, "supsim did not start (see %s)\n", s->log);
        return -1;
    }
    return 0;
}

int h_sim_stop(h_sim *s)
{
    int rc = -1;
    if (s->pid > 0) {
        int st = 0;
        kill(s->pid, SIGTERM);
        while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR)
            ;
        s->pid = 0;
        rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", s->dir);
    return rc;
}

h_resp h_sim_req(const h_sim *s, const char *method, const char *path, const char *json)
{
    h_daemon fake = {.port = s->port};
    h_resp r;
    cr_assert(h_http(&fake, method, path, NULL, json ? "application/json" : NULL, json,
                     json ? strlen(json) : 0, &r) == 0,
              "supsim did not answer %s %s", method, path);
    return r;
}

json_t *h_sim_truth(const h_sim *s)
{
    h_resp r = h_sim_req(s, "GET", "/_sim/truth", NULL);
    cr_assert(r.status == 200 && r.json, "GET /_sim/truth: %ld %s", r.status, r.body);
    json_t *t = json_incref(r.json);
    h_resp_free(&r);
    return t;
}

long long h_ref_order(const char *ref)
{
    long long id;
    unsigned no;
    char hex[16];
    if (!ref || sscanf(ref, "%15[0-9a-f]-%lld-%u", hex, &id, &no) != 3)
        return -1;
    return id;
}

json_t *h_sim_truth_find(json_t *t, const char *list, const char *protocol, long long id,
                         size_t *count)
{
    json_t *first = NULL, *o;
    size_t n = 0, i;
    json_array_foreach(json_object_get(t, list), i, o)
    {
        if ((protocol && strcmp(h_str(o, "protocol"), protocol)) ||
            (id >= 0 && h_ref_order(h_str(o, "ref")) != id))
            continue;
        if (!first)
            first = o;
        n++;
    }
    if (count)
        *count = n;
    return first;
}

const char *h_sim_supplier_yaml(const h_sim *s, const char *id, const char *protocol,
                                const char *fields, const char *config_extra, char *out, size_t n)
{
    char conf[1024];
    if (!strcmp(protocol, "gateway")) {
        h_write_file(s->dir, "gw.secret", "gw-secret");
        snprintf(conf, sizeof conf,
                 "      gateway_url: http://127.0.0.1:%u/gateway\n      app_key: gw-app\n"
                 "      app_secret: file:%s/gw.secret\n",
                 s->port, s->dir);
    } else {
        cr_assert_str_eq(protocol, "rewards", "h_sim_supplier_yaml: no protocol %s", protocol);
        h_write_file(s->dir, "rw.key", "rw-key");
        h_write_file(s->dir, "rw.whsec", "rw-whsec");
        snprintf(conf, sizeof conf,
                 "      base_url: http://127.0.0.1:%u/rewards\n      api_key: file:%s/rw.key\n"
                 "      webhook_secret: file:%s/rw.whsec\n",
                 s->port, s->dir, s->dir);
    }
    int k = snprintf(out, n, "  - id: %s\n    plugin: %s\n%s    config:\n%s%s", id, protocol,
                     fields ? fields : "", conf, config_extra ? config_extra : "");
    cr_assert(k > 0 && (size_t)k < n, "h_sim_supplier_yaml: %d bytes do not fit in %zu", k, n);
    return out;
}

/* ---- small shared pieces of the supplier tests ------------------------------ */

void h_write_file(const char *dir, const char *name, const char *text)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    /* 0600: a secret file anyone else may read is refused (plugin_loader.h) */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert(fd >= 0 && fchmod(fd, 0600) == 0, "cannot write %s", path);
    FILE *f = fdopen(fd, "w");
    cr_assert(f, "cannot write %s", path);
    fputs(text, f);
    cr_assert(fclose(f) == 0, "cannot write %s", path);
}

const char *h_dump(const json_t *j, char *buf, size_t n)
{
    size_t k = j ? json_dumpb(j, buf, n - 1, JSON_COMPACT) : 0;
    buf[k < n - 1 ? k : n - 1] = 0;
    return buf;
}

void h_stop_clean(h_daemon *d)
{
    int st = h_stop(d, SIGTERM);
    if (st == 0)
        return;
    size_t n = 0;
    char *log = h_read_file(d->log, &n);
    const char *sum = log ? strstr(log, "SUMMARY:") : NULL;
    const char *eol = sum ? strchr(sum, '\n') : NULL;
    int len = sum ? (int)(eol ? eol - sum : (long)strlen(sum)) : 0;
    char line[512];
    snprintf(line, sizeof line, "%.*s", len, sum ? sum : "");
    free(log); /* before the assertion: a failed one ends the test here */
    cr_assert_fail("perkhubd exited with %d (log %s)%s%s", st, d->log, *line ? ": " : "", line);
}

json_t *h_order_of(const h_resp *r)
{
    json_t *o = json_object_get(r->json, "order");
    cr_assert(json_is_object(o), "no order in %ld %s", r->status, r->body);
    return o;
}

int h_events_count(json_t *feed, long long id, const char *type)
{
    size_t i;
    json_t *e;
    int n = 0;
    json_array_foreach(json_object_get(feed, "events"), i, e)
    {
        const char *t = json_string_value(json_object_get(e, "type"));
        if (t && !strcmp(t, type) && json_integer_value(json_object_get(e, "order_id")) == id)
            n++;
    }
    return n;
}

json_t *h_order_get(const h_daemon *d, long long id, const char *token)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/orders/%lld", id);
    h_resp r = h_get(d, path, token);
    cr_assert_eq(r.status, 200, "GET %s: %ld %s", path, r.status, r.body);
    json_t *o = json_incref(json_object_get(r.json, "order"));
    cr_assert(json_is_object(o), "GET %s: %s", path, r.body);
    h_resp_free(&r);
    return o;
}

json_t *h_order_poll(const h_daemon *d, long long id, const char *token,
                     int (*done)(json_t *order, void *arg), void *arg, int timeout_ms,
                     const char *what)
{
    int64_t end = now_ms() + timeout_ms;
    for (;;) {
        json_t *o = h_order_get(d, id, token);
        if (done(o, arg))
            return o;
        char b[2048];
        cr_assert(now_ms() < end, "order %lld: %s did not happen within %d ms: %s", id, what,
                  timeout_ms, h_dump(o, b, sizeof b));
        json_decref(o);
        usleep(10000);
    }
}

int h_non_loopback_ipv4(char *out, size_t n)
{
    struct ifaddrs *ifs, *i;
    int found = 0;
    if (getifaddrs(&ifs) != 0)
        return 0;
    for (i = ifs; i && !found; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET)
            continue;
        const struct sockaddr_in *in = (const struct sockaddr_in *)i->ifa_addr;
        if ((ntohl(in->sin_addr.s_addr) >> 24) == 127)
            continue;
        found = inet_ntop(AF_INET, &in->sin_addr, out, (socklen_t)n) != NULL;
    }
    freeifaddrs(ifs);
    return found;
}

long h_get_via(const char *host, uint16_t port, const char *path, const char *token, char **body)
{
    CURL *c = curl_easy_init();
    cr_assert(c);
    char url[256], auth[128];
    snprintf(url, sizeof url, "http://%s:%u%s", host, port, path);
    struct curl_slist *hdr = NULL;
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        hdr = curl_slist_append(NULL, auth);
    }
    h_buf b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_buf_append);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    CURLcode rc = curl_easy_perform(c);
    cr_assert_eq(rc, CURLE_OK, "GET %s: %s", url, curl_easy_strerror(rc));
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    if (body)
        *body = b.p ? b.p : strdup("");
    else
        free(b.p);
    return status;
}

/* ---- the ledger against the simulator's charges ------------------------------ */

/* json_object keyed by the order id's decimal text, values integers: adds v. */
static void lm_add(json_t *tab, long long id, long long v)
{
    char key[24];
    snprintf(key, sizeof key, "%lld", id);
    json_t *cur = json_object_get(tab, key);
    json_object_set_new(tab, key, json_integer((cur ? json_integer_value(cur) : 0) + v));
}

/* The store's reference prefix (what precedes "-<order id>-<attempt>") when
 * order id's attempts at this daemon include ref, into uid; else 0. */
static int lm_ref_is_ours(const h_daemon *d, long long id, const char *ref, char *uid, size_t n)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/orders/%lld", id);
    h_resp r = h_get(d, path, "ops-token");
    int ours = 0;
    json_t *atts =
        r.status == 200 ? json_object_get(json_object_get(r.json, "order"), "attempts") : NULL;
    size_t i;
    json_t *a;
    json_array_foreach(atts, i, a)
    {
        const char *aref = json_string_value(json_object_get(a, "ref"));
        if (aref && !strcmp(aref, ref)) {
            size_t len = strcspn(ref, "-");
            cr_assert_lt(len, n, "attempt reference %s", ref);
            memcpy(uid, ref, len);
            uid[len] = 0;
            ours = 1;
        }
    }
    h_resp_free(&r);
    return ours;
}

/* One comparison: 0 when every order's ledger supplier cost at a simulated
 * supplier equals what supsim charged for it, else -1 with why in msg.
 * *charged gets how many of this daemon's orders supsim charged. */
static int lm_compare(const h_daemon *d, const h_sim *s, char *msg, size_t n, int *charged)
{
    json_t *truth = h_sim_truth(s), *sim = json_object(), *led = json_object();
    json_t *sims = json_object(), *o;
    char uid[16] = "";
    size_t i;
    /* supsim may hold orders of an earlier daemon of the same test: only refs
     * with this store's prefix are ours (learnt from the first ref one of our
     * orders carries) */
    json_array_foreach(json_object_get(truth, "orders"), i, o)
    {
        const char *ref = h_str(o, "ref");
        long long id = h_ref_order(ref);
        if (id < 0)
            continue;
        if (!uid[0] && !lm_ref_is_ours(d, id, ref, uid, sizeof uid))
            continue;
        if (strncmp(ref, uid, strlen(uid)) || ref[strlen(uid)] != '-')
            continue;
        lm_add(sim, id, h_int(o, "charged_fen"));
    }
    json_decref(truth);

    /* the suppliers speaking supsim's protocols: their costs are its charges */
    h_resp r = h_get(d, "/v1/suppliers", "ops-token");
    cr_assert_eq(r.status, 200, "GET /v1/suppliers: %ld %s", r.status, r.body);
    json_array_foreach(json_object_get(r.json, "suppliers"), i, o)
    {
        const char *plugin = h_str(o, "plugin");
        if (!strcmp(plugin, "gateway") || !strcmp(plugin, "rewards"))
            json_object_set_new(sims, h_str(o, "id"), json_true());
    }
    h_resp_free(&r);

    /* the ledger, every page: supplier costs and their corrections of an
     * attempt (attempt 0 is a code from local stock, not a supplier's charge) */
    long long after = 0;
    for (;;) {
        char path[96];
        snprintf(path, sizeof path, "/v1/ledger?limit=1000&after=%lld", after);
        r = h_get(d, path, "ops-token");
        cr_assert_eq(r.status, 200, "GET %s: %ld %s", path, r.status, r.body);
        json_array_foreach(json_object_get(r.json, "entries"), i, o)
        {
            const char *kind = h_str(o, "kind");
            if (strcmp(kind, "supplier_cost") && strcmp(kind, "cost_correction"))
                continue;
            if (h_int(o, "attempt") == 0 || !json_object_get(sims, h_str(o, "supplier")))
                continue;
            lm_add(led, h_int(o, "order_id"), h_int(o, "amount_fen"));
        }
        json_t *next = json_object_get(r.json, "next_after");
        int more = json_is_integer(next);
        if (more)
            after = json_integer_value(next);
        h_resp_free(&r);
        if (!more)
            break;
    }

    int rc = 0, bad = 0;
    size_t used = 0;
    const char *key;
    json_t *v;
    *charged = 0;
    msg[0] = 0;
    for (int pass = 0; pass < 2; pass++) {
        json_t *a = pass ? led : sim, *b = pass ? sim : led;
        json_object_foreach(a, key, v)
        {
            long long mine = json_integer_value(v),
                      other = json_integer_value(json_object_get(b, key));
            if (!pass && mine > 0)
                (*charged)++;
            if (mine == other || (pass && json_object_get(b, key)))
                continue; /* the second pass looks only at orders supsim never saw */
            rc = -1;
            if (bad++ < 8 && used < n) {
                long long sc = pass ? other : mine, lc = pass ? mine : other;
                int w = snprintf(msg + used, n - used,
                                 "order %s: ledger supplier cost %lld fen, supsim charged %lld; ",
                                 key, lc, sc);
                used += w > 0 ? (size_t)w : 0;
            }
        }
    }
    json_decref(sim);
    json_decref(led);
    json_decref(sims);
    return rc;
}

int h_ledger_matches_sim(const h_daemon *d, const h_sim *s)
{
    char msg[1024];
    int charged = 0;
    /* a recharge supsim completes late (--complete-ms) is charged when its
     * truth is read; perkhub books it once its query or callback lands */
    int64_t until = h_now_ms() + 10000;
    while (lm_compare(d, s, msg, sizeof msg, &charged) != 0) {
        cr_assert_lt(h_now_ms(), until, "the ledger disagrees with supsim's charges: %s", msg);
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return charged;
}

const char *h_ledger_words(const h_daemon *d, long long id, char *out, size_t n)
{
    size_t i, used = 0;
    json_t *e;
    long long after = 0;
    out[0] = 0;
    for (;;) {
        char path[96];
        snprintf(path, sizeof path, "/v1/ledger?limit=1000&after=%lld", after);
        h_resp r = h_get(d, path, "ops-token");
        cr_assert_eq(r.status, 200, "GET %s: %ld %s", path, r.status, r.body);
        json_array_foreach(json_object_get(r.json, "entries"), i, e)
        {
            if (h_int(e, "order_id") != id)
                continue;
            int w = snprintf(out + used, n - used, "%s:%lld ", h_str(e, "kind"),
                             h_int(e, "amount_fen"));
            cr_assert(w > 0 && (size_t)w < n - used, "the ledger of order %lld: too long", id);
            used += (size_t)w;
        }
        json_t *next = json_object_get(r.json, "next_after");
        int more = json_is_integer(next);
        if (more)
            after = json_integer_value(next);
        h_resp_free(&r);
        if (!more)
            return out;
    }
}

/* ---- NATS servers for replication -------------------------------------------- */

uint16_t h_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
              getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

static int nats_healthy(void *arg)
{
    const h_nats *ns = arg;
    for (int i = 0; i < ns->n; i++) {
        if (ns->pid[i] <= 0)
            continue;
        if (waitpid(ns->pid[i], NULL, WNOHANG) == ns->pid[i])
            return 1; /* died: nothing to wait for */
        CURL *c = curl_easy_init();
        char url[128];
        snprintf(url, sizeof url, "http://127.0.0.1:%u/healthz", ns->http[i]);
        h_buf b = {0};
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_buf_append);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 2L);
        long status = 0;
        if (curl_easy_perform(c) == CURLE_OK)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(c);
        free(b.p);
        if (status != 200)
            return 0;
    }
    return 1;
}

/* Server i from its configuration in ns->dir (same ports, same JetStream store). */
static void nats_spawn(h_nats *ns, int i)
{
    char path[320], log[320];
    snprintf(path, sizeof path, "%s/n%d.conf", ns->dir, i);
    snprintf(log, sizeof log, "%s/n%d.log", ns->dir, i);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 2);
        dup2(fd, 1);
        execl("/usr/sbin/nats-server", "nats-server", "-c", path, (char *)NULL);
        _exit(127);
    }
    ns->pid[i] = pid;
}

static int nats_wait_ready(h_nats *ns)
{
    if (wait_until(nats_healthy, ns, 30000) == 0) {
        int alive = 1;
        for (int i = 0; i < ns->n; i++)
            alive &= ns->pid[i] <= 0 || waitpid(ns->pid[i], NULL, WNOHANG) == 0;
        if (alive)
            return 0;
    }
    for (int i = 0; i < ns->n; i++) {
        char log[320];
        snprintf(log, sizeof log, "%s/n%d.log", ns->dir, i);
        size_t len;
        char *t = h_read_file(log, &len);
        fprintf(stderr, "nats-server n%d did not become ready; its log:\n%s\n", i, t ? t : "");
        free(t);
    }
    return -1;
}

int h_nats_start(h_nats *ns, int n)
{
    return h_nats_start_with(ns, n, "8MB");
}

/* One try of h_nats_start_with: fresh ports, fresh directory. */
static int nats_start_once(h_nats *ns, int n, const char *max_payload)
{
    memset(ns, 0, sizeof *ns);
    ns->n = n;
    snprintf(ns->dir, sizeof ns->dir, "/tmp/perkhub-nats-XXXXXX");
    cr_assert(mkdtemp(ns->dir), "mkdtemp: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
        ns->port[i] = h_free_port();
        ns->cluster[i] = h_free_port();
        ns->http[i] = h_free_port();
    }
    for (int i = 0; i < n; i++) {
        char conf[2048], name[32], routes[512] = "";
        for (int j = 0; j < n; j++) {
            char r[64];
            snprintf(r, sizeof r, "%snats-route://127.0.0.1:%u", routes[0] ? ", " : "",
                     ns->cluster[j]);
            strncat(routes, r, sizeof routes - strlen(routes) - 1);
        }
        snprintf(conf, sizeof conf,
                 "server_name: n%d\nlisten: 127.0.0.1:%u\nhttp: 127.0.0.1:%u\n"
                 "max_payload: %s\n"
                 "jetstream {\n  store_dir: \"%s/js%d\"\n  max_memory_store: 64MB\n"
                 "  max_file_store: 1GB\n}\n",
                 i, ns->port[i], ns->http[i], max_payload, ns->dir, i);
        if (n > 1) {
            size_t k = strlen(conf);
            snprintf(conf + k, sizeof conf - k,
                     "cluster {\n  name: phc\n  listen: 127.0.0.1:%u\n  routes: [%s]\n}\n",
                     ns->cluster[i], routes);
        }
        snprintf(name, sizeof name, "n%d.conf", i);
        h_write_file(ns->dir, name, conf);
        nats_spawn(ns, i);
    }
    return nats_wait_ready(ns);
}

int h_nats_start_with(h_nats *ns, int n, const char *max_payload)
{
    cr_assert(n >= 1 && n <= H_NATS_MAX);
    /* h_free_port's ports are free when picked, not when nats-server binds
     * them: on a box running other tests one may be taken meanwhile, and the
     * server exits at once. Such a start is tried again on new ports. */
    for (int attempt = 0;; attempt++) {
        if (nats_start_once(ns, n, max_payload) == 0)
            return 0;
        h_nats_stop(ns);
        if (attempt == 2)
            return -1;
        fprintf(stderr, "nats: trying again on other ports\n");
    }
}

int h_nats_restart(h_nats *ns)
{
    for (int i = 0; i < ns->n; i++)
        if (ns->pid[i] <= 0)
            nats_spawn(ns, i);
    return nats_wait_ready(ns);
}

void h_nats_kill(h_nats *ns, int i)
{
    if (ns->pid[i] <= 0)
        return;
    kill(ns->pid[i], SIGKILL);
    while (waitpid(ns->pid[i], NULL, 0) < 0 && errno == EINTR)
        ;
    ns->pid[i] = 0;
}

void h_nats_stop(h_nats *ns)
{
    for (int i = 0; i < ns->n; i++)
        h_nats_kill(ns, i);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", ns->dir);
    if (strncmp(ns->dir, "/tmp/perkhub-nats-", 18) == 0 && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", ns->dir);
    ns->n = 0;
    ns->dir[0] = 0;
}

const char *h_nats_urls(const h_nats *ns, char *out, size_t n)
{
    size_t k = (size_t)snprintf(out, n, "[");
    for (int i = 0; i < ns->n; i++)
        k += (size_t)snprintf(out + k, n - k, "%snats://127.0.0.1:%u", i ? ", " : "", ns->port[i]);
    snprintf(out + k, n - k, "]");
    cr_assert(strlen(out) + 1 < n);
    return out;
}

long long h_nats_stream_last(const h_nats *ns, int i, const char *stream)
{
    char *body = NULL;
    long st = h_get_via("127.0.0.1", ns->http[i], "/jsz?accounts=true&streams=true", NULL, &body);
    long long last = -1;
    /* as reals: jsz reports unlimited reservations as 2^64 - 1, beyond json_int_t */
    json_t *j = st == 200 ? json_loads(body, JSON_DECODE_INT_AS_REAL, NULL) : NULL;
    size_t a, k;
    json_t *acc, *sd;
    json_array_foreach(json_object_get(j, "account_details"), a, acc)
    {
        json_array_foreach(json_object_get(acc, "stream_detail"), k, sd)
        {
            if (!strcmp(json_string_value(json_object_get(sd, "name")) ?: "", stream))
                last = (long long)json_number_value(
                    json_object_get(json_object_get(sd, "state"), "last_seq"));
        }
    }
    json_decref(j);
    free(body);
    return last;
}
