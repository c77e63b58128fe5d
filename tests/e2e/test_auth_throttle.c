/*
 * Failed-authentication throttling end to end (issue 15 item 6): before it,
 * 300 wrong-token requests got 300 plain 401s.
 *
 * - throttle: 30 wrong-token requests from 127.0.0.1 against a daemon with
 *   small thresholds (slow after 3, block at 8 for 2 s): the first three are
 *   401, the next five 401 after at least their configured delay, the rest 429
 *   too_many_failures with Retry-After; a good token from the blocked address
 *   is 429 too, while the probes, another address and an exempt one are
 *   served. One WARN line names the address and never the token. The metrics
 *   count it all. After block_s a good token works — and does not launder the
 *   count: the next wrong token is held back and blocks again. An exempt
 *   address is never throttled, however many wrong tokens it sends.
 * - pool: with one HTTP thread, a 401 held back for seconds does not hold the
 *   thread: a scrape and a good request are answered meanwhile (a sleeping
 *   pool thread would answer them only after it). A reload that exempts the
 *   address applies to its next request.
 *
 * Requests leave from a chosen loopback address (curl's CURLOPT_INTERFACE):
 * 127.0.0.1 is the attacker, 127.0.0.2 an innocent neighbour, 127.0.0.3 the
 * exempt one. Timing is asserted only as a lower bound of a configured delay.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "harness.h"

static h_daemon D;

static void teardown(void)
{
    h_leftover(&D);
}

TestSuite(auth_throttle, .fini = teardown, .timeout = 180);

#define CANARY "wrong-token-canary-7f3a"

typedef struct reply {
    long status;
    char error[48];       /* the body's "error", or "" */
    char retry_after[16]; /* the Retry-After header, or "" */
    int64_t ms;           /* from the request's start to its answer */
} reply;

static size_t header_line(char *p, size_t size, size_t n, void *arg)
{
    reply *r = arg;
    size_t len = size * n;
    if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        size_t i = 12;
        while (i < len && p[i] == ' ')
            i++;
        size_t k = 0;
        while (i < len && p[i] >= '0' && p[i] <= '9' && k + 1 < sizeof r->retry_after)
            r->retry_after[k++] = p[i++];
        r->retry_after[k] = 0;
    }
    return len;
}

/* GET path from the loopback address `from`, with token (NULL: none). */
static reply get_from(const char *from, const char *path, const char *token)
{
    reply r = {0};
    CURL *c = curl_easy_init();
    cr_assert(c);
    char url[256], auth[160];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", D.port, path);
    struct curl_slist *hdr = NULL;
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        hdr = curl_slist_append(NULL, auth);
    }
    h_buf b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_INTERFACE, from);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_buf_append);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_line);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    int64_t t0 = h_now_ms();
    CURLcode rc = curl_easy_perform(c);
    r.ms = h_now_ms() - t0;
    cr_assert_eq(rc, CURLE_OK, "GET %s from %s: %s", path, from, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    json_t *j = b.p ? json_loads(b.p, 0, NULL) : NULL;
    const char *e = json_string_value(json_object_get(j, "error"));
    snprintf(r.error, sizeof r.error, "%s", e ? e : "");
    json_decref(j);
    free(b.p);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    return r;
}

/* The value of one series in a scrape from the exempt address (-1: absent). */
static double metric(const char *series)
{
    char *body = NULL;
    CURL *c = curl_easy_init();
    cr_assert(c);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/metrics", D.port);
    h_buf b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_INTERFACE, "127.0.0.3");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_buf_append);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    cr_assert_eq(curl_easy_perform(c), CURLE_OK);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    body = b.p;
    cr_assert_eq(status, 200, "GET /metrics: %ld %s", status, body ? body : "");
    double v = -1;
    size_t n = strlen(series);
    for (const char *p = body; p && *p;) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            v = strtod(p + n + 1, NULL);
            break;
        }
        const char *nl = strchr(p, '\n');
        p = nl ? nl + 1 : NULL;
    }
    free(body);
    return v;
}

#define FAILURES "perkhub_auth_failures_total"
#define DELAYED  "perkhub_auth_throttled_total{action=\"delayed\"}"
#define REFUSED  "perkhub_auth_throttled_total{action=\"refused\"}"
#define BLOCKED  "perkhub_auth_blocked_addresses"

static int good_token_served(void *arg)
{
    (void)arg;
    return get_from("127.0.0.1", "/v1/products", "mall-token").status == 200;
}

Test(auth_throttle, wrong_tokens_are_slowed_then_refused)
{
    h_setup(&D, "http:\n"
                "  auth_failures:\n"
                "    window_s: 60\n"
                "    slow_after: 3\n"
                "    delay_ms: 200\n"
                "    delay_max_ms: 400\n"
                "    block_after: 8\n"
                "    block_s: 2\n"
                "    exempt: [\"127.0.0.3\"]\n");
    cr_assert_eq(h_start(&D), 0);

    /* the exempt address first: 30 wrong tokens, 30 plain 401s */
    for (int i = 0; i < 30; i++) {
        reply r = get_from("127.0.0.3", "/v1/products", CANARY);
        cr_assert_eq(r.status, 401, "exempt, request %d: %ld", i + 1, r.status);
        cr_assert_str_eq(r.retry_after, "");
    }
    cr_expect_eq(metric(FAILURES), 30, "every failure is counted");
    cr_expect_eq(metric(DELAYED), 0, "none of them throttled");
    cr_expect_eq(metric(REFUSED), 0);
    cr_expect_eq(metric(BLOCKED), 0);

    /* the attacker: 30 wrong tokens */
    static const unsigned delay[] = {0, 0, 0, 200, 400, 400, 400, 400};
    int refused = 0;
    for (int i = 0; i < 30; i++) {
        reply r = get_from("127.0.0.1", "/v1/products", i % 2 ? CANARY : NULL);
        if (i < 8) {
            cr_assert_eq(r.status, 401, "request %d: %ld %s", i + 1, r.status, r.error);
            cr_assert_str_eq(r.error, "unauthorized");
            cr_assert_str_eq(r.retry_after, "", "request %d: a 401 has no Retry-After", i + 1);
            cr_assert_geq(r.ms, delay[i], "request %d answered after %lld ms, held %u", i + 1,
                          (long long)r.ms, delay[i]);
        } else {
            cr_assert_eq(r.status, 429, "request %d: %ld %s", i + 1, r.status, r.error);
            cr_assert_str_eq(r.error, "too_many_failures");
            int ra = atoi(r.retry_after);
            cr_assert(ra >= 1 && ra <= 2, "request %d: Retry-After '%s'", i + 1, r.retry_after);
            refused++;
        }
    }
    /* a good token from the blocked address is refused too: no token is looked at */
    reply r = get_from("127.0.0.1", "/v1/products", "mall-token");
    cr_assert_eq(r.status, 429, "good token while blocked: %ld", r.status);
    cr_assert_str_eq(r.error, "too_many_failures");
    refused++;
    /* the probes answer; a neighbour and the exempt address are served */
    cr_expect_eq(get_from("127.0.0.1", "/v1/health", NULL).status, 200);
    cr_expect_eq(get_from("127.0.0.1", "/v1/ready", NULL).status, 200);
    cr_expect_eq(get_from("127.0.0.2", "/v1/products", "mall-token").status, 200);
    cr_expect_eq(get_from("127.0.0.3", "/v1/products", "mall-token").status, 200);
    cr_expect_eq(metric(FAILURES), 38);
    cr_expect_eq(metric(DELAYED), 5, "requests 4 to 8");
    cr_expect_eq(metric(REFUSED), refused);
    cr_expect_eq(metric(BLOCKED), 1);
    cr_expect_eq(h_log_wait(&D, "msg=http.auth_blocked", 1, 10000), 0);
    cr_expect_eq(h_file_count(D.log, "msg=http.auth_blocked"), 1, "one line per block");
    cr_expect_eq(h_file_count(D.log, "peer=127.0.0.1 failures=8 window_s=60 block_s=2"), 1);

    /* after block_s, a good token works */
    cr_assert_eq(h_wait_for(good_token_served, NULL, 15000), 0, "still refused after the block");
    cr_expect_eq(metric(BLOCKED), 0);
    /* ... and did not reset the count: the window still holds 8 failures, so
     * the next wrong token is held back and blocks the address again */
    r = get_from("127.0.0.1", "/v1/products", CANARY);
    cr_expect_eq(r.status, 401);
    cr_expect_geq(r.ms, 400, "held %lld ms", (long long)r.ms);
    r = get_from("127.0.0.1", "/v1/products", "mall-token");
    cr_expect_eq(r.status, 429, "blocked again: %ld", r.status);
    cr_expect_eq(h_file_count(D.log, "msg=http.auth_blocked"), 2);

    h_stop_clean(&D);
    cr_expect_eq(h_file_count(D.log, CANARY), 0, "the token text is never logged");
    h_cleanup(&D);
}

typedef struct held_req {
    reply r;
    atomic_int done;
} held_req;

static void *send_wrong(void *arg)
{
    held_req *h = arg;
    h->r = get_from("127.0.0.5", "/v1/products", CANARY);
    atomic_store(&h->done, 1);
    return NULL;
}

static int one_delayed(void *arg)
{
    (void)arg;
    return metric(DELAYED) >= 1;
}

Test(auth_throttle, a_held_401_does_not_hold_the_pool_thread)
{
    const char *conf = "http:\n"
                       "  threads: 1\n"
                       "  auth_failures:\n"
                       "    slow_after: 0\n"
                       "    delay_ms: 4000\n"
                       "    delay_max_ms: 4000\n"
                       "    block_after: 2\n"
                       "    block_s: 300\n"
                       "    exempt: [\"127.0.0.3\"%s]\n";
    char extra[512];
    snprintf(extra, sizeof extra, conf, "");
    h_setup(&D, extra);
    cr_assert_eq(h_start(&D), 0);
    held_req h = {0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, send_wrong, &h), 0);
    /* the scrape that sees the hold, and a good request, are served by the
     * only pool thread while the 401 is held */
    cr_assert_eq(h_wait_for(one_delayed, NULL, 30000), 0, "the 401 was never held");
    reply good = get_from("127.0.0.2", "/v1/products", "mall-token");
    cr_expect_eq(good.status, 200);
    cr_expect_eq(atomic_load(&h.done), 0, "the good request waited for the held 401");
    pthread_join(t, NULL);
    cr_expect_eq(h.r.status, 401);
    cr_expect_geq(h.r.ms, 4000, "held %lld ms", (long long)h.r.ms);

    /* a reload that exempts 127.0.0.5 applies to its next request: without
     * it, the second failure would block the address */
    snprintf(extra, sizeof extra, conf, ", \"127.0.0.4/31\"");
    h_write_config(&D, extra);
    cr_assert_eq(kill(D.pid, SIGHUP), 0);
    cr_assert_eq(h_log_wait(&D, "config.reloaded", 1, 10000), 0);
    for (int i = 0; i < 5; i++) {
        reply r = get_from("127.0.0.5", "/v1/products", CANARY);
        cr_expect_eq(r.status, 401, "exempt after the reload, request %d: %ld", i + 1, r.status);
    }
    cr_expect_eq(get_from("127.0.0.5", "/v1/products", "mall-token").status, 200);
    h_resp audit = h_get(&D, "/v1/audit?action=config.reload", "ops-token");
    cr_expect_eq(audit.status, 200);
    cr_expect_not_null(strstr(audit.body, "\"settings\":[\"http.auth_failures\"]"),
                       "the reload's audit names the setting: %s", audit.body);
    h_resp_free(&audit);
    cr_expect_eq(metric(DELAYED), 1);
    cr_expect_eq(metric(REFUSED), 0);
    h_stop_clean(&D);
    h_cleanup(&D);
}
