/*
 * test_tls.c — TLS on the listener (issue 14 item 5): a throwaway CA, a server
 * certificate and client certificates made with the openssl command line in
 * the test's directory; perkhubd with listen.tls on a loopback port.
 *
 * HTTPS works against the CA (and perkctl with --cacert); plain HTTP to the
 * TLS port fails and the daemon goes on serving; a client with cert_sha256 is
 * refused without its certificate (or with another one) and served with it;
 * a bearer token over plain HTTP from a non-loopback peer is refused unless
 * http.allow_plain_tokens says otherwise, while callbacks (no token) are not;
 * --check-config names a missing certificate and a key others can read, and
 * start names a file that is not PEM.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static h_daemon D;

static void teardown(void)
{
    h_leftover(&D);
}

TestSuite(tls, .fini = teardown, .timeout = 120);

/* Runs sh -c cmd in dir; asserts exit 0. */
static void sh(const char *dir, const char *cmd)
{
    char *full;
    cr_assert(asprintf(&full, "cd '%s' && { %s; } >openssl.log 2>&1", dir, cmd) > 0);
    int rc = system(full);
    cr_assert_eq(rc, 0, "failed: %s (see %s/openssl.log)", cmd, dir);
    free(full);
}

/* A CA (ca.crt), a server certificate for 127.0.0.1 and alt_ip (NULL: none)
 * (server.crt, server.key 0600), two client certificates signed by the CA
 * (ops.crt/.key, other.crt/.key) and one self-signed (rogue.crt/.key), in dir. */
static void make_certs(const char *dir, const char *alt_ip)
{
    char san[128];
    snprintf(san, sizeof san, "subjectAltName=IP:127.0.0.1%s%s\\nbasicConstraints=CA:FALSE",
             alt_ip ? ",IP:" : "", alt_ip ? alt_ip : "");
    char cmd[1024];
    sh(dir, "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
            "-keyout ca.key -out ca.crt -days 2 -subj /CN=perkhub-test-ca");
    snprintf(cmd, sizeof cmd,
             "printf '%s\\n' >server.ext && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key "
             "-out server.csr -subj /CN=localhost && "
             "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
             "-out server.crt -days 2 -extfile server.ext && chmod 600 server.key",
             san);
    sh(dir, cmd);
    const char *clients[] = {"ops", "other"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd,
                 "printf 'basicConstraints=CA:FALSE\\n' >client.ext && "
                 "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s.key "
                 "-out %s.csr -subj /CN=%s && "
                 "openssl x509 -req -in %s.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
                 "-out %s.crt -days 2 -extfile client.ext",
                 clients[i], clients[i], clients[i], clients[i], clients[i]);
        sh(dir, cmd);
    }
    sh(dir, "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
            "-keyout rogue.key -out rogue.crt -days 2 -subj /CN=ops");
}

/* The SHA-256 of dir/name's certificate in DER form, as docs/config.md says to
 * compute it, into out[65]. */
static void cert_sha256(const char *dir, const char *name, char out[65])
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "openssl x509 -in '%s/%s' -outform DER | sha256sum", dir, name);
    FILE *f = popen(cmd, "r");
    cr_assert(f);
    cr_assert_eq(fread(out, 1, 64, f), 64);
    out[64] = 0;
    pclose(f);
}

/* The standard config with listen.tls (and client_ca when ca) and, when
 * address is not NULL, that listen address. extra goes at the end; clients_extra
 * after "clients:" (a client of its own). */
static void write_tls_config(const char *tls_yaml, const char *address, const char *extra,
                             const char *client_line)
{
    char *text = h_config_text(&D, extra);
    char repl[1200];
    snprintf(repl, sizeof repl, "  address: %s\n%s", address ? address : "127.0.0.1",
             tls_yaml ? tls_yaml : "");
    char *t1 = h_replace(text, "  address: 127.0.0.1\n", repl);
    char *t2 = client_line ? h_replace(t1, "clients:\n", client_line) : strdup(t1);
    h_write_config_text(&D, t2);
    free(text);
    free(t1);
    free(t2);
}

static char ca_path[320];

/* listen.tls for the files make_certs wrote, with the client CA when asked. */
static const char *tls_yaml(int client_ca, char *buf, size_t n)
{
    snprintf(buf, n, "  tls:\n    cert: %s/server.crt\n    key: %s/server.key\n%s%s%s", D.dir,
             D.dir, client_ca ? "    client_ca: " : "", client_ca ? D.dir : "",
             client_ca ? "/ca.crt\n" : "");
    return buf;
}

typedef struct req {
    const char *method, *url, *token, *cacert, *cert, *key, *body;
} req;

/* One request with libcurl as given; *status the HTTP status (0 with no
 * answer), the body into *body (caller frees; may be NULL). Returns curl's code. */
static CURLcode fetch(const req *q, long *status, char **body)
{
    CURL *c = curl_easy_init();
    cr_assert(c);
    struct curl_slist *hdr = NULL;
    char auth[256];
    if (q->token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", q->token);
        hdr = curl_slist_append(hdr, auth);
    }
    hdr = curl_slist_append(hdr, "Content-Type: application/json");
    h_buf b = {0};
    curl_easy_setopt(c, CURLOPT_URL, q->url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method ? q->method : "GET");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_buf_append);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (q->body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, q->body);
    if (q->cacert)
        curl_easy_setopt(c, CURLOPT_CAINFO, q->cacert);
    if (q->cert) {
        curl_easy_setopt(c, CURLOPT_SSLCERT, q->cert);
        curl_easy_setopt(c, CURLOPT_SSLKEY, q->key);
    }
    CURLcode rc = curl_easy_perform(c);
    *status = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    if (body)
        *body = b.p ? b.p : strdup("");
    else
        free(b.p);
    return rc;
}

/* The "error" of a JSON body, into buf ("" when none). */
static const char *error_of(const char *body, char *buf, size_t n)
{
    json_t *j = json_loads(body, 0, NULL);
    const char *e = j ? json_string_value(json_object_get(j, "error")) : NULL;
    snprintf(buf, n, "%s", e ? e : "");
    json_decref(j);
    return buf;
}

static void start_tls(int client_ca, const char *client_line)
{
    h_setup(&D, NULL);
    make_certs(D.dir, NULL);
    char y[1024];
    write_tls_config(tls_yaml(client_ca, y, sizeof y), NULL, NULL, client_line);
    snprintf(ca_path, sizeof ca_path, "%s/ca.crt", D.dir);
    D.tls_ca = ca_path;
    cr_assert_eq(h_start(&D), 0);
}

Test(tls, https_with_the_ca_and_plain_http_fails_cleanly)
{
    start_tls(0, NULL);
    char url[128];
    long st;
    /* h_start reached /v1/health over https; an authenticated read too */
    h_resp r = h_get(&D, "/v1/products", "mall-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    /* it is our CA's certificate: without the CA the client refuses it */
    snprintf(url, sizeof url, "https://127.0.0.1:%u/v1/health", D.port);
    cr_assert_neq(fetch(&(req){.url = url}, &st, NULL), CURLE_OK);
    cr_assert_eq(st, 0);

    /* plain HTTP to the TLS port: no HTTP answer, and nothing else breaks */
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/products", D.port);
    CURLcode cc = fetch(&(req){.url = url, .token = "mall-token"}, &st, NULL);
    cr_assert_neq(cc, CURLE_OK, "plain HTTP got an answer: %ld", st);
    r = h_get(&D, "/v1/health", NULL);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);

    /* perkctl over https: with --cacert it works; without, it cannot connect (3) */
    char purl[64];
    snprintf(purl, sizeof purl, "https://127.0.0.1:%u", D.port);
    const char *argv[] = {h_bin("PH_PERKCTL"), "--url", purl, "--cacert", ca_path,
                          "products",          NULL};
    const char *env[] = {"PERKHUB_TOKEN=mall-token", NULL};
    char *out = NULL, *err = NULL;
    int rc = h_run(argv, env, NULL, 0, &out, &err);
    cr_assert_eq(rc, 0, "perkctl: %s %s", out, err);
    cr_assert(strstr(out, "test.card"), "%s", out);
    free(out);
    free(err);
    const char *argv2[] = {h_bin("PH_PERKCTL"), "--url", purl, "products", NULL};
    const char *env2[] = {"PERKHUB_TOKEN=mall-token", "PERKHUB_CACERT=", "SSL_CERT_FILE=/dev/null",
                          NULL};
    rc = h_run(argv2, env2, NULL, 0, &out, &err);
    cr_assert_eq(rc, 3, "perkctl without the CA: %d %s %s", rc, out, err);
    free(out);
    free(err);

    /* an over-the-wire order works as on plain HTTP */
    char *csv = h_codes_csv("TLS", 3);
    h_resp_free((r = h_import(&D, "test.card", csv, 201), &r));
    free(csv);
    r = h_order(&D, "mall-token", "tls-1", "test.card", 2);
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert_eq(json_array_size(json_object_get(h_order_of(&r), "codes")), 2, "%s", r.body);
    h_resp_free(&r);
    h_stop_clean(&D);
    h_cleanup(&D);
}

Test(tls, ops_client_certificate_required)
{
    h_setup(&D, NULL);
    make_certs(D.dir, NULL);
    char fp[65], tok[65], c2[512], y[1024];
    cert_sha256(D.dir, "ops.crt", fp);
    FILE *f = popen("printf %s opscert-token | sha256sum", "r");
    cr_assert(f);
    cr_assert_eq(fread(tok, 1, 64, f), 64);
    tok[64] = 0;
    pclose(f);
    /* a second ops client, "opscert", bound to ops.crt */
    snprintf(c2, sizeof c2,
             "clients:\n  - name: opscert\n    token_sha256: %s\n    scopes: [ops]\n"
             "    cert_sha256: %s\n",
             tok, fp);
    write_tls_config(tls_yaml(1, y, sizeof y), NULL, NULL, c2);
    snprintf(ca_path, sizeof ca_path, "%s/ca.crt", D.dir);
    D.tls_ca = ca_path;
    cr_assert_eq(h_start(&D), 0);

    char url[128], crt[320], key[320], ocrt[320], okey[320], rcrt[320], rkey[320], e[64];
    char *body;
    long st;
    snprintf(url, sizeof url, "https://127.0.0.1:%u/v1/suppliers", D.port);
    snprintf(crt, sizeof crt, "%s/ops.crt", D.dir);
    snprintf(key, sizeof key, "%s/ops.key", D.dir);
    snprintf(ocrt, sizeof ocrt, "%s/other.crt", D.dir);
    snprintf(okey, sizeof okey, "%s/other.key", D.dir);
    snprintf(rcrt, sizeof rcrt, "%s/rogue.crt", D.dir);
    snprintf(rkey, sizeof rkey, "%s/rogue.key", D.dir);

    /* without a certificate: refused, saying why */
    cr_assert_eq(fetch(&(req){.url = url, .token = "opscert-token", .cacert = ca_path}, &st, &body),
                 CURLE_OK);
    cr_assert_eq(st, 403, "%s", body);
    cr_assert_str_eq(error_of(body, e, sizeof e), "client_certificate", "%s", body);
    cr_assert(strstr(body, "'opscert'") && strstr(body, "cert_sha256"), "%s", body);
    free(body);
    /* another certificate of the same CA: refused */
    cr_assert_eq(
        fetch(
            &(req){
                .url = url, .token = "opscert-token", .cacert = ca_path, .cert = ocrt, .key = okey},
            &st, &body),
        CURLE_OK);
    cr_assert_eq(st, 403, "%s", body);
    free(body);
    /* a self-signed one (not the CA's): refused, whatever its name */
    CURLcode cc = fetch(
        &(req){.url = url, .token = "opscert-token", .cacert = ca_path, .cert = rcrt, .key = rkey},
        &st, &body);
    cr_assert(cc != CURLE_OK || st == 403, "%d %ld %s", cc, st, body);
    free(body);
    /* with its certificate: served */
    cr_assert_eq(
        fetch(
            &(req){
                .url = url, .token = "opscert-token", .cacert = ca_path, .cert = crt, .key = key},
            &st, &body),
        CURLE_OK);
    cr_assert_eq(st, 200, "%s", body);
    free(body);
    /* a client without cert_sha256 needs none */
    cr_assert_eq(fetch(&(req){.url = url, .token = "ops-token", .cacert = ca_path}, &st, &body),
                 CURLE_OK);
    cr_assert_eq(st, 200, "%s", body);
    free(body);

    /* perkctl presents it with --cert/--key */
    char purl[64];
    snprintf(purl, sizeof purl, "https://127.0.0.1:%u", D.port);
    const char *argv[] = {
        h_bin("PH_PERKCTL"), "--url", purl, "--cacert", ca_path, "--cert", crt, "--key", key,
        "suppliers",         NULL};
    const char *env[] = {"PERKHUB_TOKEN=opscert-token", NULL};
    char *out = NULL, *err = NULL;
    int rc = h_run(argv, env, NULL, 0, &out, &err);
    cr_assert_eq(rc, 0, "perkctl: %s %s", out, err);
    free(out);
    free(err);
    const char *argv2[] = {h_bin("PH_PERKCTL"), "--url", purl, "--cacert", ca_path,
                           "suppliers",         NULL};
    rc = h_run(argv2, env, NULL, 0, &out, &err);
    cr_assert_eq(rc, 1, "perkctl without the certificate: %d %s %s", rc, out, err);
    cr_assert(strstr(err, "client_certificate"), "%s", err);
    free(out);
    free(err);
    h_stop_clean(&D);
    h_cleanup(&D);
}

Test(tls, plain_tokens_refused_from_non_loopback_peers)
{
    char addr[INET_ADDRSTRLEN];
    if (!h_non_loopback_ipv4(addr, sizeof addr))
        cr_skip_test("no non-loopback IPv4 address on this machine");
    h_setup(&D, NULL);
    write_tls_config(NULL, "0.0.0.0", NULL, NULL);
    cr_assert_eq(h_start(&D), 0);
    char url[160], *body, e[64];
    long st;

    /* loopback: as before */
    h_resp r = h_get(&D, "/v1/products", "mall-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    h_resp_free(&r);
    /* from elsewhere, over plain HTTP: refused, saying what to do */
    snprintf(url, sizeof url, "http://%s:%u/v1/products", addr, D.port);
    cr_assert_eq(fetch(&(req){.url = url, .token = "mall-token"}, &st, &body), CURLE_OK);
    cr_assert_eq(st, 403, "%s", body);
    cr_assert_str_eq(error_of(body, e, sizeof e), "plain_http_token", "%s", body);
    cr_assert(strstr(body, "bearer tokens over plain HTTP are refused from non-loopback peers: "
                           "enable listen.tls or set http.allow_plain_tokens"),
              "%s", body);
    cr_assert(!strstr(body, "mall-token"), "%s", body);
    free(body);
    /* an unknown token the same: nothing is said about the token */
    cr_assert_eq(fetch(&(req){.url = url, .token = "no-such-token"}, &st, &body), CURLE_OK);
    cr_assert_eq(st, 403, "%s", body);
    free(body);
    /* what needs no token is unaffected: health, and supplier callbacks (signed) */
    snprintf(url, sizeof url, "http://%s:%u/v1/health", addr, D.port);
    cr_assert_eq(fetch(&(req){.url = url}, &st, NULL), CURLE_OK);
    cr_assert_eq(st, 200);
    snprintf(url, sizeof url, "http://%s:%u/v1/callbacks/sbx", addr, D.port);
    cr_assert_eq(fetch(&(req){.method = "POST", .url = url, .body = "{}"}, &st, &body), CURLE_OK);
    cr_assert_str_neq(error_of(body, e, sizeof e), "plain_http_token", "%s", body);
    cr_assert_neq(st, 0);
    free(body);

    /* the config's override, on reload */
    char *text = h_config_text(&D, "http:\n  allow_plain_tokens: true\n");
    char *wide = h_replace(text, "  address: 127.0.0.1\n", "  address: 0.0.0.0\n");
    h_write_config_text(&D, wide);
    free(text);
    free(wide);
    cr_assert_eq(kill(D.pid, SIGHUP), 0);
    cr_assert_eq(h_log_wait(&D, "msg=config.reloaded", 1, 10000), 0, "no reload");
    snprintf(url, sizeof url, "http://%s:%u/v1/products", addr, D.port);
    cr_assert_eq(fetch(&(req){.url = url, .token = "mall-token"}, &st, &body), CURLE_OK);
    cr_assert_eq(st, 200, "%s", body);
    free(body);
    h_stop_clean(&D);
    h_cleanup(&D);

    /* with TLS on, from the same peer: served */
    h_setup(&D, NULL);
    make_certs(D.dir, addr);
    char y[1024];
    write_tls_config(tls_yaml(0, y, sizeof y), "0.0.0.0", NULL, NULL);
    snprintf(ca_path, sizeof ca_path, "%s/ca.crt", D.dir);
    D.tls_ca = ca_path;
    cr_assert_eq(h_start(&D), 0);
    snprintf(url, sizeof url, "https://%s:%u/v1/products", addr, D.port);
    cr_assert_eq(fetch(&(req){.url = url, .token = "mall-token", .cacert = ca_path}, &st, &body),
                 CURLE_OK);
    cr_assert_eq(st, 200, "%s", body);
    free(body);
    h_stop_clean(&D);
    h_cleanup(&D);
}

/* perkhubd --check-config on D.config: its exit status, stderr into *err. */
static int check_config(char **err)
{
    const char *argv[] = {h_bin("PH_PERKHUBD"), "--check-config", D.config, NULL};
    char *out = NULL;
    int rc = h_run(argv, NULL, NULL, 0, &out, err);
    free(out);
    return rc;
}

/* "perkhub.yaml:LINE:COL: what" with what in it. */
static void assert_names(const char *err, const char *what)
{
    char at[400];
    snprintf(at, sizeof at, "%s:", D.config);
    const char *p = strstr(err, at);
    cr_assert(p, "no file:line:column in: %s", err);
    unsigned line, col;
    cr_assert_eq(sscanf(p + strlen(at), "%u:%u:", &line, &col), 2, "%s", err);
    cr_assert(strstr(err, what), "expected '%s' in: %s", what, err);
}

Test(tls, config_errors_name_the_setting_and_the_file)
{
    h_setup(&D, NULL);
    make_certs(D.dir, NULL);
    char y[1024], *err = NULL;

    /* as made: ok */
    write_tls_config(tls_yaml(1, y, sizeof y), NULL, NULL, NULL);
    cr_assert_eq(check_config(&err), 0, "%s", err);
    free(err);

    /* a missing certificate */
    snprintf(y, sizeof y, "  tls:\n    cert: %s/missing.crt\n    key: %s/server.key\n", D.dir,
             D.dir);
    write_tls_config(y, NULL, NULL, NULL);
    cr_assert_eq(check_config(&err), 1, "%s", err);
    assert_names(err, "listen.tls.cert: cannot read");
    cr_assert(strstr(err, "missing.crt"), "%s", err);
    free(err);

    /* a key others can read */
    char key[320];
    snprintf(key, sizeof key, "%s/server.key", D.dir);
    cr_assert_eq(chmod(key, 0644), 0);
    write_tls_config(tls_yaml(0, y, sizeof y), NULL, NULL, NULL);
    cr_assert_eq(check_config(&err), 1, "%s", err);
    assert_names(err, "listen.tls.key:");
    cr_assert(strstr(err, "mode 0644 lets group or others read it"), "%s", err);
    cr_assert(strstr(err, key), "%s", err);
    free(err);
    /* ... and start refuses it the same way */
    cr_assert_neq(h_start(&D), 0);
    D.pid = 0; /* h_start reaped it */
    cr_assert_eq(chmod(key, 0600), 0);

    /* cert without key; cert_sha256 without client_ca */
    snprintf(y, sizeof y, "  tls:\n    cert: %s/server.crt\n", D.dir);
    write_tls_config(y, NULL, NULL, NULL);
    cr_assert_eq(check_config(&err), 1, "%s", err);
    assert_names(err, "listen.tls: expected both cert and key");
    free(err);
    write_tls_config(tls_yaml(0, y, sizeof y), NULL, NULL,
                     "clients:\n  - name: oc\n    token_sha256: "
                     "1111111111111111111111111111111111111111111111111111111111111111\n"
                     "    scopes: [ops]\n    cert_sha256: "
                     "2222222222222222222222222222222222222222222222222222222222222222\n");
    cr_assert_eq(check_config(&err), 1, "%s", err);
    assert_names(err, "clients[0].cert_sha256: needs listen.tls.client_ca");
    free(err);

    /* a key that is not the certificate's: --check-config and start name both files */
    write_tls_config(tls_yaml(0, y, sizeof y), NULL, NULL, NULL);
    {
        size_t len;
        char *cfg = h_read_file(D.config, &len);
        char *other = h_replace(cfg, "/server.key", "/ops.key");
        h_write_config_text(&D, other);
        free(cfg);
        free(other);
    }
    char okey[320];
    snprintf(okey, sizeof okey, "%s/ops.key", D.dir);
    cr_assert_eq(chmod(okey, 0600), 0);
    cr_assert_eq(check_config(&err), 1, "%s", err);
    cr_assert(strstr(err, "listen.tls") && strstr(err, "server.crt") && strstr(err, "ops.key"),
              "%s", err);
    free(err);

    /* a certificate file that is not PEM: --check-config and start name it */
    h_write_file(D.dir, "server.crt", "not a certificate\n");
    write_tls_config(tls_yaml(0, y, sizeof y), NULL, NULL, NULL);
    cr_assert_eq(check_config(&err), 1, "%s", err);
    cr_assert(strstr(err, "listen.tls") && strstr(err, "server.crt"), "%s", err);
    free(err);
    cr_assert_neq(h_start(&D), 0);
    D.pid = 0;
    size_t n;
    char *log = h_read_file(D.log, &n);
    cr_assert(log && strstr(log, "listen.tls") && strstr(log, "server.crt"), "%s", log);
    free(log);
    h_cleanup(&D);
}
