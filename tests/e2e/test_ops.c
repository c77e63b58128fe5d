/*
 * Operating perkhubd end to end: health and readiness, request ids, the events
 * feed, suppliers and stats, reloading the config on SIGHUP (good, invalid,
 * a supplier disabled) and a graceful SIGTERM in the middle of a large import.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static h_daemon D;

static void demo_kill(void);

static void teardown(void)
{
    demo_kill();
    h_leftover(&D);
}

TestSuite(ops, .fini = teardown);

static void start(const char *extra)
{
    h_setup(&D, extra);
    cr_assert_eq(h_start(&D), 0);
}

static void finish(void)
{
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    h_cleanup(&D);
}

/* ---- health, readiness, request ids --------------------------------------- */

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    FILE *f = arg;
    return fwrite(p, size, n, f);
}

/* GET path with an X-Request-Id header; returns the status, the response's
 * X-Request-Id in rid, and the body (caller frees). */
static long get_with_reqid(const char *path, const char *token, const char *sent, char *rid,
                           size_t rid_len, char **body)
{
    char url[256], auth[128], hdr[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", D.port, path);
    struct curl_slist *h = NULL;
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    snprintf(hdr, sizeof hdr, "X-Request-Id: %s", sent);
    h = curl_slist_append(h, hdr);
    char *b = NULL, *hd = NULL;
    size_t bn = 0, hn = 0;
    FILE *bf = open_memstream(&b, &bn), *hf = open_memstream(&hd, &hn);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, bf);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, hf);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    cr_assert_eq(curl_easy_perform(c), CURLE_OK, "GET %s failed", path);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    fclose(bf);
    fclose(hf);
    h_resp r = {.headers = hd};
    cr_assert(h_header(&r, "X-Request-Id", rid, rid_len), "no X-Request-Id on %s", path);
    free(hd);
    *body = b;
    return status;
}

Test(ops, health_ready_and_request_ids)
{
    start(NULL);
    h_resp r = h_get(&D, "/v1/health", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(h_str(r.json, "status"), "ok");
    h_resp_free(&r);
    r = h_get(&D, "/v1/ready", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(h_str(r.json, "status"), "ready");
    h_resp_free(&r);

    /* every response carries an id; generated ones differ */
    const char *paths[][2] = {
        {"/v1/health", NULL},           {"/v1/products", "mall-token"}, {"/v1/products", NULL},
        {"/v1/nope", "mall-token"},     {"/v1/events", "mall-token"},   {"/v1/stats", "ops-token"},
        {"/v1/orders/1", "mall-token"},
    };
    char seen[8][64];
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        r = h_get(&D, paths[i][0], paths[i][1]);
        cr_assert(h_header(&r, "X-Request-Id", seen[i], sizeof seen[i]),
                  "no X-Request-Id on %s (%ld)", paths[i][0], r.status);
        cr_assert_gt(strlen(seen[i]), 0);
        if (r.status >= 400)
            cr_assert_str_eq(h_str(r.json, "request_id"), seen[i], "body and header agree");
        for (size_t k = 0; k < i; k++)
            cr_assert_str_neq(seen[k], seen[i], "request ids repeat");
        h_resp_free(&r);
    }
    r = h_import(&D, "test.card", "code\nRID-1\n", 201);
    cr_assert(h_header(&r, "X-Request-Id", seen[0], sizeof seen[0]));
    h_resp_free(&r);

    /* a valid id from the client is used, in the answer and in the log */
    char rid[64], *body;
    long st = get_with_reqid("/v1/orders/999", "mall-token", "trace-2026.11:abc_1", rid, sizeof rid,
                             &body);
    cr_assert_eq(st, 404);
    cr_assert_str_eq(rid, "trace-2026.11:abc_1");
    cr_assert(strstr(body, "\"request_id\":\"trace-2026.11:abc_1\""), "%s", body);
    free(body);
    cr_assert_eq(h_log_wait(&D, "req=trace-2026.11:abc_1 msg=http.request", 1, 5000), 0,
                 "the log line of the request carries the client's id");
    st = get_with_reqid("/v1/health", NULL, "mine-1", rid, sizeof rid, &body);
    cr_assert_eq(st, 200);
    cr_assert_str_eq(rid, "mine-1");
    free(body);

    /* an unusable one (spaces, too long) is replaced, never echoed */
    const char *bad[] = {"has space", "0123456789012345678901234567890123456789X", "quote\"d"};
    for (size_t i = 0; i < 3; i++) {
        st = get_with_reqid("/v1/health", NULL, bad[i], rid, sizeof rid, &body);
        cr_assert_eq(st, 200);
        cr_assert_str_neq(rid, bad[i]);
        cr_assert_gt(strlen(rid), 0);
        free(body);
    }
    finish();
}

/* ---- events, suppliers, stats ----------------------------------------------- */

static json_t *events(const char *query, long long *next_after)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/events%s", query);
    h_resp r = h_get(&D, path, "ops-token");
    cr_assert_eq(r.status, 200, "%s: %s", path, r.body);
    json_t *ev = json_incref(json_object_get(r.json, "events"));
    cr_assert(json_is_array(ev), "%s", r.body);
    *next_after = h_int(r.json, "next_after");
    h_resp_free(&r);
    return ev;
}

Test(ops, events_feed_pages_and_carries_no_code)
{
    start(NULL);
    long long base = h_last_event(&D); /* the catalog's product events at start */
    h_resp r = h_import(&D, "test.card", "code\nEVC-1\nEVC-2\nEVC-3\n", 201);
    h_resp_free(&r);
    const char *coids[] = {"EV-1", "EV-2", "EV-3"};
    for (int i = 0; i < 3; i++) {
        r = h_order(&D, "mall-token", coids[i], "test.card", 1);
        cr_assert_eq(r.status, 201, "%s", r.body);
        h_resp_free(&r);
    }
    cr_assert_eq(h_last_event(&D), base + 4, "one event per import and per order");

    /* walk the feed two at a time from the import on */
    char q[64];
    long long after = base, next, seq = base;
    const char *types[] = {"batch.imported", "order.succeeded", "order.succeeded",
                           "order.succeeded"};
    for (int page = 0; page < 2; page++) {
        snprintf(q, sizeof q, "?after=%lld&limit=2", after);
        json_t *ev = events(q, &next);
        cr_assert_eq(json_array_size(ev), 2, "page %d", page);
        size_t i;
        json_t *e;
        json_array_foreach(ev, i, e)
        {
            cr_assert_eq(h_int(e, "seq"), ++seq, "events are numbered without gaps");
            cr_assert_str_eq(h_str(e, "type"), types[seq - base - 1]);
            cr_assert_gt(strlen(h_str(e, "at")), 19);
            cr_assert_null(json_object_get(e, "code"));
            cr_assert_null(json_object_get(e, "codes_plain"));
            char *txt = json_dumps(e, 0);
            cr_assert_null(strstr(txt, "EVC-"), "an event carries a code: %s", txt);
            free(txt);
        }
        cr_assert_eq(next, seq, "next_after is the last seq of the page");
        json_decref(ev);
        after = next;
    }
    json_t *ev = events(q, &next); /* the same query again: same page, not consumed */
    cr_assert_eq(h_int(json_array_get(ev, 0), "seq"), base + 3);
    json_decref(ev);
    snprintf(q, sizeof q, "?after=%lld", after);
    ev = events(q, &next);
    cr_assert_eq(json_array_size(ev), 0, "nothing after the last event");
    cr_assert_eq(next, after, "next_after stays put on an empty page");
    json_decref(ev);

    /* the order event says who and what, for reconciliation */
    snprintf(q, sizeof q, "?after=%lld&limit=1", base + 1);
    ev = events(q, &next);
    json_t *e = json_array_get(ev, 0);
    cr_assert_str_eq(h_str(e, "client"), "mall");
    cr_assert_str_eq(h_str(e, "client_order_id"), "EV-1");
    cr_assert_str_eq(h_str(e, "sku"), "test.card");
    cr_assert_eq(h_int(e, "quantity"), 1);
    json_decref(ev);

    /* the whole feed, every event, no code anywhere */
    r = h_get(&D, "/v1/events?limit=1000", "ops-token");
    cr_assert_eq(r.status, 200);
    cr_assert_eq(json_array_size(json_object_get(r.json, "events")), (size_t)base + 4);
    cr_assert_null(strstr(r.body, "EVC-"), "%s", r.body);
    h_resp_free(&r);
    r = h_get(&D, "/v1/events", "support-token");
    cr_assert_eq(r.status, 403, "%s", r.body);
    h_resp_free(&r);
    finish();
}

static json_t *supplier(const char *id)
{
    h_resp r = h_get(&D, "/v1/suppliers", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *found = NULL, *s;
    size_t i;
    json_array_foreach(json_object_get(r.json, "suppliers"), i, s)
    {
        if (strcmp(h_str(s, "id"), id) == 0)
            found = json_incref(s);
    }
    h_resp_free(&r);
    return found;
}

Test(ops, suppliers_and_stats)
{
    start(NULL);
    json_t *s = supplier("acme");
    cr_assert_not_null(s, "acme is listed");
    cr_assert_str_eq(h_str(s, "plugin"), "manual");
    cr_assert_str_eq(h_str(s, "state"), "ready");
    cr_assert(json_is_true(json_object_get(s, "enabled")));
    cr_assert_eq(h_int(s, "priority"), 10);
    cr_assert_gt(strlen(h_str(s, "plugin_version")), 0);
    cr_assert(strncmp(h_str(s, "abi"), "1.", 2) == 0, "abi %s", h_str(s, "abi"));
    json_t *err = json_object_get(s, "error");
    cr_assert(!err || json_is_null(err), "a ready supplier has no error");
    json_decref(s);
    h_resp r = h_get(&D, "/v1/suppliers", "mall-token");
    cr_assert_eq(r.status, 403);
    h_resp_free(&r);

    r = h_import(&D, "test.card", "code\nST-1\nST-2\nST-3\n", 201);
    h_resp_free(&r);
    r = h_import(&D, "test.card2", "code\nST2-1\n", 201);
    h_resp_free(&r);
    r = h_order(&D, "mall-token", "ST-O1", "test.card", 2);
    cr_assert_eq(r.status, 201);
    h_resp_free(&r);
    json_t *st = h_stats(&D);
    cr_assert_eq(h_int(st, "orders"), 1);
    size_t i;
    json_t *k;
    int seen = 0;
    json_array_foreach(json_object_get(st, "skus"), i, k)
    {
        if (strcmp(h_str(k, "sku"), "test.card") == 0) {
            cr_assert_eq(h_int(k, "imported"), 3);
            cr_assert_eq(h_int(k, "available"), 1);
            cr_assert_eq(h_int(k, "issued"), 2);
            cr_assert_eq(h_int(k, "voided"), 0);
            cr_assert_eq(h_int(k, "expired"), 0);
            seen++;
        } else if (strcmp(h_str(k, "sku"), "test.card2") == 0) {
            cr_assert_eq(h_int(k, "imported"), 1);
            cr_assert_eq(h_int(k, "available"), 1);
            seen++;
        }
    }
    cr_assert_eq(seen, 2, "both SKUs with stock are in the stats");
    json_decref(st);

    /* the catalog agrees */
    r = h_get(&D, "/v1/products/test.card", "mall-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *p = json_object_get(r.json, "product");
    cr_assert_eq(h_int(json_object_get(p, "stock"), "available"), 1);
    cr_assert_str_eq(h_str(p, "face_value"), "30.00");
    cr_assert_null(json_object_get(p, "offers"), "offers (costs) are for ops");
    h_resp_free(&r);
    finish();
}

/* ---- reloading ------------------------------------------------------------- */

struct sku_wait {
    const char *sku;
    int want; /* 1: listed, 0: not listed */
};

static int catalog_has(void *arg)
{
    struct sku_wait *w = arg;
    h_resp r = h_get(&D, "/v1/products", "mall-token");
    int found = 0;
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(r.json, "products"), i, p)
    {
        found |= strcmp(json_string_value(json_object_get(p, "sku")), w->sku) == 0;
    }
    int ok = r.status == 200 && found == w->want;
    h_resp_free(&r);
    return ok;
}

static int catalog_lists(const char *sku)
{
    struct sku_wait w = {sku, 1};
    return catalog_has(&w);
}

static const char *new_product =
    "  - sku: test.new\n    name: New card\n    brand: newbrand\n    category: games\n"
    "    delivery: card_code\n    face_value: \"20.00\"\n";

Test(ops, sighup_adds_a_product)
{
    start(NULL);
    cr_assert(!catalog_lists("test.new"));
    h_resp r = h_order(&D, "mall-token", "NEW-0", "test.new", 1);
    cr_assert_eq(r.status, 422, "%s", r.body);
    h_resp_free(&r);

    char *base = h_config_text(&D, NULL), *text;
    /* products is the last list of the standard file: append one */
    size_t n = strlen(base) + strlen(new_product) + 1;
    text = malloc(n);
    snprintf(text, n, "%s%s", base, new_product);
    h_write_config_text(&D, text);
    free(text);
    free(base);
    cr_assert_eq(kill(D.pid, SIGHUP), 0);
    struct sku_wait w = {"test.new", 1};
    cr_assert_eq(h_wait_for(catalog_has, &w, 10000), 0, "test.new never appeared");
    cr_assert_eq(h_log_wait(&D, "msg=config.reloaded", 1, 5000), 0);

    r = h_get(&D, "/v1/products/test.new", "mall-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(h_str(json_object_get(r.json, "product"), "name"), "New card");
    h_resp_free(&r);
    /* the running daemon now imports and sells it */
    r = h_import(&D, "test.new", "code\nNEWC-1\n", 201);
    h_resp_free(&r);
    r = h_order(&D, "mall-token", "NEW-1", "test.new", 1);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    finish();
}

static size_t snapshots_listed(void)
{
    h_resp r = h_get(&D, "/v1/snapshots", "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    size_t n = json_array_size(json_object_get(r.json, "snapshots"));
    h_resp_free(&r);
    return n;
}

static int snapshots_at_least(void *arg)
{
    return snapshots_listed() >= *(size_t *)arg;
}

/* Settings made at start (the listener, the snapshot directory, ...) are not
 * changed by a reload: the daemon says so, and the running value stays. */
Test(ops, sighup_says_which_settings_need_a_restart)
{
    start(NULL);
    char *base = h_config_text(&D, NULL);
    char dir[400], extra[500];
    snprintf(dir, sizeof dir, "%s/other-snaps", D.dir);
    snprintf(extra, sizeof extra, "snapshots:\n  dir: %s\n", dir);
    size_t n = strlen(base) + strlen(extra) + 1;
    char *text = malloc(n);
    snprintf(text, n, "%s%s", base, extra);
    h_write_config_text(&D, text);
    free(text);
    free(base);
    cr_assert_eq(kill(D.pid, SIGHUP), 0);
    cr_assert_eq(h_log_wait(&D, "msg=config.reloaded", 1, 10000), 0);
    cr_assert_eq(h_log_wait(&D, "msg=config.restart_needed setting=snapshots.dir", 1, 5000), 0,
                 "no restart_needed line for snapshots.dir");
    /* the running directory stays: a snapshot taken now is not in the new one */
    size_t before = snapshots_listed();
    h_resp r;
    cr_assert_eq(h_http(&D, "POST", "/v1/jobs/snapshots.take/run", "ops-token", NULL, NULL, 0, &r),
                 0);
    cr_assert_eq(r.status, 202, "%s", r.body);
    h_resp_free(&r);
    size_t want = before + 1;
    cr_assert_eq(h_wait_for(snapshots_at_least, &want, 10000), 0, "no new snapshot listed");
    struct stat st;
    cr_assert(stat(dir, &st) != 0, "%s was made by a reload", dir);
    finish();
}

Test(ops, sighup_with_an_invalid_file_keeps_the_running_config)
{
    start(NULL);
    h_resp r = h_import(&D, "test.card", "code\nINV-1\nINV-2\n", 201);
    h_resp_free(&r);

    /* a new product (which must not appear) and a typo further down */
    char *base = h_config_text(&D, NULL);
    size_t n = strlen(base) + strlen(new_product) + 64;
    char *with = malloc(n);
    snprintf(with, n, "%s%slimits:\n  max_order_quantty: 5\n", base, new_product);
    h_write_config_text(&D, with);
    int line = 1;
    for (const char *p = with; p < strstr(with, "max_order_quantty"); p++)
        line += *p == '\n';
    free(with);
    free(base);

    cr_assert_eq(kill(D.pid, SIGHUP), 0);
    cr_assert_eq(h_log_wait(&D, "msg=config.reload_failed", 1, 10000), 0,
                 "no config.reload_failed in the log");
    size_t len;
    char *log = h_read_file(D.log, &len);
    char *at = strstr(log, "msg=config.reload_failed");
    char *eol = strchr(at, '\n');
    if (eol)
        *eol = 0;
    char want[400];
    snprintf(want, sizeof want, "%s:%d:3: ", D.config, line);
    cr_assert(strstr(at, want), "'%s' does not name %s", at, want);
    cr_assert(strstr(at, "max_order_quantty"), "%s", at);
    free(log);

    /* the running configuration stays: old catalog, orders work, old limits */
    cr_assert(!catalog_lists("test.new"));
    cr_assert(catalog_lists("test.card"));
    r = h_order(&D, "mall-token", "INV-O1", "test.card", 2);
    cr_assert_eq(r.status, 201, "%s", r.body);
    h_resp_free(&r);
    json_t *s = supplier("acme");
    cr_assert_str_eq(h_str(s, "state"), "ready");
    json_decref(s);

    /* once fixed, the next SIGHUP applies it */
    base = h_config_text(&D, NULL);
    n = strlen(base) + strlen(new_product) + 1;
    with = malloc(n);
    snprintf(with, n, "%s%s", base, new_product);
    h_write_config_text(&D, with);
    free(with);
    free(base);
    cr_assert_eq(kill(D.pid, SIGHUP), 0);
    struct sku_wait w = {"test.new", 1};
    cr_assert_eq(h_wait_for(catalog_has, &w, 10000), 0);
    finish();
}

struct sup_wait {
    const char *state;
    int enabled;
};

static int acme_is(void *arg)
{
    struct sup_wait *w = arg;
    json_t *s = supplier("acme");
    int ok = s && strcmp(h_str(s, "state"), w->state) == 0 &&
             json_is_true(json_object_get(s, "enabled")) == w->enabled;
    json_decref(s);
    return ok;
}

Test(ops, sighup_disables_and_reenables_a_supplier)
{
    start(NULL);
    const char *on = "  - id: acme\n    plugin: manual\n    priority: 10\n";
    const char *off = "  - id: acme\n    plugin: manual\n    priority: 10\n    enabled: false\n";
    char *base = h_config_text(&D, NULL), *text = h_replace(base, on, off);
    h_write_config_text(&D, text);
    free(text);
    cr_assert_eq(kill(D.pid, SIGHUP), 0);
    struct sup_wait w = {"disabled", 0};
    cr_assert_eq(h_wait_for(acme_is, &w, 10000), 0, "acme never showed as disabled");

    h_write_config_text(&D, base);
    free(base);
    cr_assert_eq(kill(D.pid, SIGHUP), 0);
    w = (struct sup_wait){"ready", 1};
    cr_assert_eq(h_wait_for(acme_is, &w, 10000), 0, "acme never came back");
    cr_assert_eq(h_log_wait(&D, "msg=config.reloaded", 2, 5000), 0);
    finish();
}

/* ---- SIGTERM during a large import ------------------------------------------- */

struct upload {
    uint16_t port;
    const char *body;
    size_t len;
    atomic_int continued; /* the server answered "100 Continue": it holds the request */
    atomic_int sent;      /* the whole body is handed to the kernel */
    CURLcode rc;
    long status;
    char *resp;
    size_t resp_len;
};

static size_t upload_header(char *p, size_t size, size_t n, void *arg)
{
    struct upload *u = arg;
    if (size * n >= 12 && strncmp(p, "HTTP/1.1 100", 12) == 0)
        atomic_store(&u->continued, 1);
    return size * n;
}

static int upload_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                           curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow;
    struct upload *u = arg;
    if (ultotal > 0 && ulnow == ultotal)
        atomic_store(&u->sent, 1);
    return 0;
}

static void *upload_main(void *arg)
{
    struct upload *u = arg;
    char url[128];
    snprintf(url, sizeof url,
             "http://127.0.0.1:%u/v1/batches?supplier=acme&sku=test.card&unit_cost=1.00&note=big",
             u->port);
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer ops-token");
    h = curl_slist_append(h, "Content-Type: text/csv");
    h = curl_slist_append(h, "Expect: 100-continue");
    FILE *out = open_memstream(&u->resp, &u->resp_len);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, u->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)u->len);
    curl_easy_setopt(c, CURLOPT_EXPECT_100_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, upload_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, u);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, upload_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, u);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    u->rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &u->status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    fclose(out);
    return NULL;
}

static int upload_sent(void *arg)
{
    struct upload *u = arg;
    return atomic_load(&u->sent);
}

/* Offset of needle's first occurrence in the log, or -1. */
static long log_offset(const char *needle)
{
    size_t n;
    char *log = h_read_file(D.log, &n);
    cr_assert(log);
    char *at = strstr(log, needle);
    long off = at ? at - log : -1;
    free(log);
    return off;
}

Test(ops, sigterm_lets_an_import_in_flight_finish)
{
    enum { N = 300000 };
    start(NULL);
    char *csv = h_codes_csv("TERM", N);
    struct upload u = {.port = D.port, .body = csv, .len = strlen(csv)};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, upload_main, &u), 0);
    /* The server holds the request once it said 100 Continue; once the body is
     * all sent, the import is being read or already being processed. */
    cr_assert_eq(h_wait_for(upload_sent, &u, 60000), 0, "the upload never completed");
    cr_assert(atomic_load(&u.continued), "the body went without the server's 100 Continue");
    int status = h_stop(&D, SIGTERM);
    pthread_join(t, NULL);
    cr_assert_eq(u.rc, CURLE_OK, "the import's answer was lost: %s", curl_easy_strerror(u.rc));
    cr_assert_eq(u.status, 201, "import answered %ld: %.300s", u.status, u.resp);
    json_t *j = json_loads(u.resp, 0, NULL);
    cr_assert_eq(h_int(json_object_get(j, "batch"), "count"), N);
    long long batch = h_int(json_object_get(j, "batch"), "id");
    json_decref(j);
    free(u.resp);
    free(csv);
    cr_assert_eq(status, 0, "perkhubd exited %d", status);

    /* SIGTERM arrived while the import was in flight, and nothing was cut */
    long sig = log_offset("msg=daemon.signal signal=TERM");
    long imported = log_offset("msg=batch.imported");
    cr_assert_geq(sig, 0);
    cr_assert_geq(imported, 0);
    cr_assert_lt(sig, imported, "the import was already done when SIGTERM came");
    cr_assert_geq(log_offset("msg=daemon.stopping unfinished_requests=0"), 0);

    /* after a restart the batch is there, whole */
    cr_assert_eq(h_start(&D), 0);
    char path[64];
    snprintf(path, sizeof path, "/v1/batches/%lld", batch);
    h_resp r = h_get(&D, path, "ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *b = json_object_get(r.json, "batch");
    cr_assert_eq(h_int(b, "count"), N);
    cr_assert_eq(h_int(json_object_get(b, "codes"), "available"), N);
    h_resp_free(&r);
    r = h_order(&D, "mall-token", "AFTER-TERM", "test.card", 2);
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert(strstr(r.body, "TERM-0000000") && strstr(r.body, "TERM-0000001"), "%s", r.body);
    h_resp_free(&r);
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    char *out;
    cr_assert_eq(h_check_store(&D, &out), 0, "%s", out);
    free(out);
    h_cleanup(&D);
}

/* ---- pid_file ------------------------------------------------------------- */

/* The pid in a pid file, or 0 when it is missing or empty. */
static long pid_in(const char *path)
{
    size_t n;
    char *t = h_read_file(path, &n);
    long pid = t ? strtol(t, NULL, 10) : 0;
    free(t);
    return pid;
}

static int file_gone(void *path)
{
    return access(path, F_OK) != 0;
}

/* perkhubd writes its pid once listening, refuses to start while another
 * perkhubd holds the same pid_file (naming its pid, changing nothing), takes
 * over a file left by a killed daemon, and removes the file on a clean stop. */
Test(ops, pid_file_names_the_running_daemon_and_only_it)
{
    char extra[400], pidf[340];
    h_setup(&D, NULL);
    /* in directories that do not exist yet (a fresh checkout's var/): made as
     * the key file's are */
    snprintf(pidf, sizeof pidf, "%s/run/perkhub/perkhubd.pid", D.dir);
    snprintf(extra, sizeof extra, "pid_file: %s\n", pidf);
    h_write_config(&D, extra);
    cr_assert_eq(h_start(&D), 0, "perkhubd did not start with its pid file's directory missing");
    cr_assert_eq(pid_in(pidf), (long)D.pid, "the pid file names the daemon");

    /* a second daemon with the same file (on another port: the file, not the
     * port, stops it) refuses before it opens anything */
    const char *argv[] = {h_bin("PH_PERKHUBD"), "-c", D.config, NULL};
    char *out, *err;
    int rc = h_run(argv, NULL, NULL, 0, &out, &err);
    cr_assert_eq(rc, 1, "a second perkhubd on the same pid_file started (exit %d): %s", rc, err);
    char want[64];
    snprintf(want, sizeof want, "pid %ld", (long)D.pid);
    cr_assert(strstr(err, "pid_file") && strstr(err, pidf) && strstr(err, want),
              "the refusal names the file and the running pid: %s", err);
    free(out);
    free(err);
    cr_assert_eq(pid_in(pidf), (long)D.pid, "the refused daemon left the file alone");
    h_resp r = h_get(&D, "/v1/health", NULL);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);

    /* kill -9 leaves the file; the next start takes it over */
    cr_assert_eq(h_stop(&D, SIGKILL), 128 + SIGKILL);
    cr_assert_neq(pid_in(pidf), 0, "a killed daemon cannot remove its file");
    cr_assert_eq(h_start(&D), 0);
    cr_assert_eq(pid_in(pidf), (long)D.pid, "the stale file names the new daemon");

    /* a clean stop removes it */
    h_stop_clean(&D);
    cr_assert(file_gone(pidf), "the pid file outlived a clean stop");
    h_cleanup(&D);
}

/* ---- make demo (tools/demo.sh) --------------------------------------------- */

/* tools/demo.sh works in the checkout it lives in (var/ next to tools/): a copy
 * under dir runs the real script without touching the checkout's var/. */
static void demo_install(const char *dir)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/tools' && cp '%s/tools/demo.sh' '%s/tools/'", dir,
             getenv("PH_SOURCE_DIR"), dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/* Runs the demo copy in dir with PORT=port; output in *out and *err. */
static int demo_run(const char *dir, const char *port, char **out, char **err)
{
    char script[400], portv[32];
    snprintf(script, sizeof script, "%s/tools/demo.sh", dir);
    snprintf(portv, sizeof portv, "PORT=%s", port);
    const char *argv[] = {script, getenv("PH_BUILD_DIR"), NULL};
    const char *env[] = {portv, NULL};
    return h_run(argv, env, NULL, 0, out, err);
}

/* The demo's daemon is not our child: stop it through its pid file and wait
 * for a clean stop (the file goes). */
static void demo_stop(const char *dir)
{
    char pidf[440];
    snprintf(pidf, sizeof pidf, "%s/var/perkhubd.pid", dir);
    long pid = pid_in(pidf);
    if (pid > 0) {
        kill((pid_t)pid, SIGTERM);
        cr_assert_eq(h_wait_for(file_gone, pidf, 60000), 0, "the demo's perkhubd did not stop");
    }
}

/* After a failed assertion: the demo's daemon is not our child, so nothing
 * else would stop it. */
static void demo_kill(void)
{
    char pidf[440];
    snprintf(pidf, sizeof pidf, "%s/demo/var/perkhubd.pid", D.dir);
    long pid = D.dir[0] ? pid_in(pidf) : 0;
    if (pid > 0)
        kill((pid_t)pid, SIGKILL);
}

/* `make demo` on a port another daemon holds must not claim success (its
 * health check would reach the other one): it names the port and the PORT=
 * knob. On a free port it reports the daemon it started: the pid in
 * var/perkhubd.pid, alive and answering on the port it printed. */
Test(ops, demo_reports_only_its_own_daemon)
{
    start(NULL); /* the other daemon, holding a port */
    char dir[400], port[16];
    snprintf(dir, sizeof dir, "%s/demo", D.dir);
    demo_install(dir);
    snprintf(port, sizeof port, "%u", D.port);
    char *out, *err;
    int rc = demo_run(dir, port, &out, &err);
    cr_assert_neq(rc, 0, "the demo claimed a port another daemon holds:\n%s%s", out, err);
    cr_assert_null(strstr(out, "is running"), "%s", out);
    char want[64];
    snprintf(want, sizeof want, "port %s is taken", port);
    cr_assert(strstr(err, want) && strstr(err, "make demo PORT="), "stderr: %s", err);
    free(out);
    free(err);
    h_resp r = h_get(&D, "/v1/health", NULL);
    cr_assert_eq(r.status, 200, "the other daemon is unharmed");
    h_resp_free(&r);

    /* a free port (0: the kernel's pick) */
    rc = demo_run(dir, "0", &out, &err);
    char pidf[440];
    snprintf(pidf, sizeof pidf, "%s/var/perkhubd.pid", dir);
    long pid = pid_in(pidf);
    cr_assert_eq(rc, 0, "demo failed:\n%s%s", out, err);
    cr_assert_gt(pid, 0, "no pid file:\n%s", out);
    cr_assert_eq(kill((pid_t)pid, 0), 0, "pid %ld from the pid file is not alive", pid);
    char line[128];
    snprintf(line, sizeof line, "(pid %ld,", pid);
    const char *at = strstr(out, "perkhubd is running on http://127.0.0.1:");
    cr_assert(at && strstr(out, line), "the demo names another pid than %ld:\n%s", pid, out);
    unsigned demo_port =
        (unsigned)strtoul(at + strlen("perkhubd is running on http://127.0.0.1:"), NULL, 10);
    cr_assert_neq(demo_port, D.port);
    h_daemon other = D; /* h_get needs only the port */
    other.port = (uint16_t)demo_port;
    r = h_get(&other, "/v1/stats", "demo-ops-token");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(strstr(r.body, "\"imported\":1000"), "the sample batch: %s", r.body);
    h_resp_free(&r);
    free(out);
    free(err);
    demo_stop(dir);
    finish();
}
