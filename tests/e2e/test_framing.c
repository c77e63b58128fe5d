/*
 * HTTP framing and log injection end to end (issue 10, defects 7 and 8), over
 * raw sockets so that the requests are exactly the bytes written here.
 *
 * Framing: a request whose length is ambiguous — Content-Length with
 * Transfer-Encoding, a transfer coding other than chunked, two Content-Length
 * headers, a malformed one — is answered 400 and the connection closed, and
 * nothing changes (a proxy framing it the other way would otherwise smuggle a
 * second request). A well-framed chunked request still works.
 *
 * Log injection: a URL path carrying " level=error msg=FORGED" gives one
 * access-log line with exactly one level= and one msg=.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static h_daemon D;

static void teardown(void)
{
    h_leftover(&D);
}

TestSuite(framing, .fini = teardown);

static void start(void)
{
    h_setup(&D, NULL);
    cr_assert_eq(h_start(&D), 0);
    h_resp r = h_import(&D, "test.card", "code\nFR-1\nFR-2\nFR-3\n", 201);
    h_resp_free(&r);
}

static void finish(void)
{
    cr_assert_eq(h_stop(&D, SIGTERM), 0);
    h_cleanup(&D);
}

/* What came back on one raw connection. */
typedef struct raw {
    char buf[16384];
    size_t n;
    int closed; /* the server closed the connection (EOF or reset) */
    long status;
    const char *body; /* into buf, after the header */
} raw;

/* Sends req on a new connection and reads until the server closes it or
 * nothing more arrives for wait_ms (a kept-alive connection stays open). */
static void exchange(const char *req, size_t len, int wait_ms, raw *out)
{
    memset(out, 0, sizeof *out);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(D.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0, "connect: %s", strerror(errno));
    for (size_t off = 0; off < len;) {
        ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* the server may refuse before reading everything */
        off += (size_t)w;
    }
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, wait_ms) <= 0)
            break;
        ssize_t n = recv(fd, out->buf + out->n, sizeof out->buf - 1 - out->n, 0);
        if (n <= 0) {
            out->closed = 1;
            break;
        }
        out->n += (size_t)n;
        if (out->n == sizeof out->buf - 1)
            break;
    }
    close(fd);
    out->buf[out->n] = 0;
    if (sscanf(out->buf, "HTTP/1.%*d %ld", &out->status) != 1)
        out->status = 0;
    const char *b = strstr(out->buf, "\r\n\r\n");
    out->body = b ? b + 4 : "";
}

#define ORDER "{\"client_order_id\":\"FR-O1\",\"sku\":\"test.card\",\"quantity\":1}"

/* An order whose framing is `framing` (header lines, each ending \r\n) and
 * whose body bytes are `body`: refused 400 naming `header`, closed, no order. */
static void refused(const char *what, const char *framing, const char *body, const char *header)
{
    json_t *before = h_stats(&D);
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "POST /v1/orders HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Authorization: Bearer mall-token\r\nContent-Type: application/json\r\n"
                     "%s\r\n%s",
                     framing, body);
    raw r;
    exchange(req, (size_t)n, 5000, &r);
    cr_assert_eq(r.status, 400, "%s: expected 400, got: %s", what, r.buf);
    cr_assert(r.closed, "%s: the connection must be closed after the 400: %s", what, r.buf);
    if (header) {
        json_error_t je;
        json_t *j = json_loads(r.body, 0, &je);
        cr_assert(json_is_object(j), "%s: a JSON error body: %s", what, r.buf);
        cr_assert_str_eq(h_str(j, "error"), "invalid_request", "%s", r.buf);
        cr_assert(strstr(h_str(j, "message"), header), "%s: the message names %s: %s", what, header,
                  r.body);
        json_decref(j);
    }
    json_t *after = h_stats(&D);
    cr_assert(json_equal(before, after), "%s changed something", what);
    json_decref(before);
    json_decref(after);
}

static const char chunked_order[] = "3a\r\n" ORDER "\r\n0\r\n\r\n";

Test(framing, content_length_and_chunked)
{
    start();
    _Static_assert(sizeof ORDER - 1 == 0x3a, "the chunk size above");
    refused("CL + TE: chunked", "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
            chunked_order, "Transfer-Encoding");
    refused("TE: chunked + CL", "Transfer-Encoding: chunked\r\nContent-Length: 58\r\n",
            chunked_order, "Content-Length");
    finish();
}

Test(framing, transfer_codings_other_than_chunked)
{
    start();
    refused("TE: gzip", "Transfer-Encoding: gzip\r\n", "x", "Transfer-Encoding");
    refused("TE: gzip, chunked", "Transfer-Encoding: gzip, chunked\r\n", chunked_order,
            "Transfer-Encoding");
    refused("TE twice", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            chunked_order, "Transfer-Encoding");
    finish();
}

Test(framing, two_or_malformed_content_lengths)
{
    start();
    refused("two different CL", "Content-Length: 2\r\nContent-Length: 58\r\n", ORDER,
            "Content-Length");
    refused("CL twice, same value", "Content-Length: 58\r\nContent-Length: 58\r\n", ORDER,
            "Content-Length");
    /* libmicrohttpd answers these itself (its own body), before any handler */
    refused("CL list", "Content-Length: 58, 58\r\n", ORDER, NULL);
    refused("CL not a number", "Content-Length: 5x\r\n", ORDER, NULL);
    finish();
}

Test(framing, well_framed_requests_still_work)
{
    start();
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "POST /v1/orders HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Authorization: Bearer mall-token\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n%s",
                     chunked_order);
    raw r;
    exchange(req, (size_t)n, 500, &r);
    cr_assert_eq(r.status, 201, "a chunked order: %s", r.buf);
    cr_assert_not(r.closed, "kept alive: %s", r.buf);
    n = snprintf(req, sizeof req,
                 "POST /v1/orders HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Authorization: Bearer mall-token\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\n\r\n%s",
                 strlen(ORDER), ORDER);
    exchange(req, (size_t)n, 500, &r);
    cr_assert_eq(r.status, 200, "the same order again (a replay): %s", r.buf);
    finish();
}

/* ---- log injection ------------------------------------------------------- */

static long count(const char *s, size_t n, const char *needle)
{
    return h_mem_count(s, n, needle);
}

Test(framing, a_forged_path_is_one_value_in_the_log)
{
    start();
    static const char req[] =
        "GET /v1/x%20level=error%20msg=FORGED HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    raw r;
    exchange(req, sizeof req - 1, 500, &r);
    cr_assert_eq(r.status, 404, "%s", r.buf);
    cr_assert_eq(h_log_wait(&D, "FORGED", 1, 5000), 0, "the request is logged");
    size_t len;
    char *log = h_read_file(D.log, &len);
    cr_assert(log);
    char *hit = strstr(log, "FORGED");
    char *bol = hit, *eol = strchr(hit, '\n');
    while (bol > log && bol[-1] != '\n')
        bol--;
    cr_assert(eol);
    size_t n = (size_t)(eol - bol);
    cr_expect_eq(count(bol, n, "level="), 1, "one level= in: %.*s", (int)n, bol);
    cr_expect_eq(count(bol, n, "msg="), 1, "one msg= in: %.*s", (int)n, bol);
    cr_expect(count(bol, n, "msg=http.request"), "the access log line: %.*s", (int)n, bol);
    cr_expect_eq(count(log, len, "FORGED"), 1, "no second line either");
    free(log);
    finish();
}
