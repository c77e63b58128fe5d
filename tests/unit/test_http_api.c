/*
 * test_http_api.c — the peer check behind a client's `loopback_only` (the
 * demo tokens): which socket addresses count as loopback. The end-to-end side
 * (a real request from a non-loopback address gets 403) is in
 * tests/e2e/test_badinput.c, when the machine has such an address.
 *
 * And ph_http_serve_offline, the seam the HTTP fuzz harness uses
 * (tests/fuzz/fuzz_http.c): real requests through a daemon started in this
 * process — routing, authentication, query parameters (URL-decoded),
 * framing, bodies, a handler that suspends for the group commit and one that
 * waits for a supplier, the response.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "http/http_api.h"

static int v4(const char *addr)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(8080)};
    cr_assert_eq(inet_pton(AF_INET, addr, &sa.sin_addr), 1, "%s", addr);
    return ph_http_peer_is_loopback((const struct sockaddr *)&sa);
}

static int v6(const char *addr)
{
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(8080)};
    cr_assert_eq(inet_pton(AF_INET6, addr, &sa.sin6_addr), 1, "%s", addr);
    return ph_http_peer_is_loopback((const struct sockaddr *)&sa);
}

Test(http_api, loopback_peers)
{
    cr_expect(v4("127.0.0.1"));
    cr_expect(v4("127.0.0.2"), "all of 127.0.0.0/8 is loopback");
    cr_expect(v4("127.255.255.254"));
    cr_expect(v6("::1"));
    cr_expect(v6("::ffff:127.0.0.1"), "an IPv4-mapped loopback address");
}

Test(http_api, other_peers)
{
    cr_expect_not(v4("192.0.2.2"));
    cr_expect_not(v4("10.0.0.1"));
    cr_expect_not(v4("0.0.0.0"));
    cr_expect_not(v4("128.0.0.1"));
    cr_expect_not(v4("126.255.255.255"));
    cr_expect_not(v6("::2"));
    cr_expect_not(v6("::"));
    cr_expect_not(v6("::ffff:10.0.0.1"));
    cr_expect_not(v6("fe80::1"));
    cr_expect_not(v6("::127.0.0.1"), "IPv4-compatible, not mapped: not loopback");
    cr_expect_not(ph_http_peer_is_loopback(NULL));
    struct sockaddr un = {.sa_family = AF_UNIX};
    cr_expect_not(ph_http_peer_is_loopback(&un));
}

/* ---- the offline seam ------------------------------------------------------- */

#include "offline_daemon.h"

Test(http_offline, real_requests_without_a_socket, .init = daemon_up, .fini = daemon_down)
{
    json_t *j;
    cr_expect_eq(serve("GET", "/v1/health", NULL, NULL, NULL), 200);
    cr_expect_eq(serve("GET", "/v1/nowhere", NULL, NULL, NULL), 404);
    /* the import reads its query (URL-decoded: %2E is '.') and its body */
    cr_assert_eq(serve("POST", "/v1/batches?supplier=acme&sku=test%2Ecard&unit_cost=19.80&note=a+b",
                       H(OPS, "Content-Type: text/csv"), "code\nOFF-1\nOFF-2\n", &j),
                 201);
    json_decref(j);
    /* an order: submitted to the writer, suspended until the group commit */
    const char *order = "{\"client_order_id\":\"O-1\",\"sku\":\"test.card\",\"quantity\":1}";
    cr_assert_eq(
        serve("POST", "/v1/orders", H(FULFILL, "Content-Type: application/json"), order, &j), 201);
    cr_expect_str_eq(str_at(j, "order", "state"), "succeeded");
    json_decref(j);
    cr_expect_eq(serve("GET", "/v1/orders?client_order_id=O%2D1", H(FULFILL), NULL, &j), 200);
    json_t *orders = json_object_get(j, "orders");
    cr_expect(json_array_size(orders) == 1 || str_at(j, "order", "client_order_id") != NULL,
              "the decoded client_order_id finds the order");
    json_decref(j);
    /* the router's checks */
    cr_expect_eq(serve("GET", "/v1/orders?bogus=1", H(FULFILL), NULL, &j), 400);
    cr_expect(strstr(str_at(j, "message", NULL), "unknown parameter (the 1st"),
              "says which parameter by position");
    cr_expect(!strstr(str_at(j, "message", NULL), "bogus"), "never quotes the caller's name");
    json_decref(j);
    cr_expect_eq(serve("GET", "/v1/orders?client_order_id=a%00b", H(FULFILL), NULL, &j), 400,
                 "a %%00 is refused offline as on a socket");
    cr_expect(strstr(str_at(j, "message", NULL), "client_order_id"), "names the parameter");
    json_decref(j);
    cr_expect_eq(serve("GET", "/v1/orders", NULL, NULL, NULL), 401);
    /* the feed is a mall's own (fulfill) and ops'; support is refused */
    cr_expect_eq(serve("GET", "/v1/stats", H(FULFILL), NULL, NULL), 403);
    cr_expect_eq(serve("GET", "/v1/events", H("Authorization: Bearer support-token"), NULL, NULL),
                 403);
    cr_expect_eq(serve("GET", "/v1/events", H(FULFILL), NULL, NULL), 200);
    cr_expect_eq(serve("GET", "/v1/events", H("authorization: Bearer ops-token"), NULL, NULL), 200,
                 "header names in any case");
    /* framing is checked offline too */
    cr_expect_eq(serve("POST", "/v1/orders",
                       H(FULFILL, "Content-Length: 10", "Transfer-Encoding: chunked"), order, &j),
                 400);
    cr_expect(strstr(str_at(j, "message", NULL), "Transfer-Encoding"));
    json_decref(j);
    /* a recharge that stays processing: suspended until its wait ends, woken by
     * fulfil's thread */
    cr_assert_eq(serve("POST", "/v1/orders", H(FULFILL),
                       "{\"client_order_id\":\"O-2\",\"sku\":\"test.topup\","
                       "\"account\":\"13800000006\",\"wait\":1}",
                       &j),
                 202);
    cr_expect_str_eq(str_at(j, "order", "state"), "processing");
    json_decref(j);
}

Test(http_offline, a_header_line_without_a_name_serves_nothing, .init = daemon_up,
     .fini = daemon_down)
{
    unsigned status = 0;
    char *out = NULL;
    size_t len = 0;
    cr_expect_eq(ph_http_serve_offline(D.http, "GET", "/v1/health", H("no colon here"), NULL, 0,
                                       &status, &out, &len),
                 PH_EINVAL);
    cr_expect_null(out);
    cr_expect_eq(ph_http_serve_offline(D.http, "GET", "/v1/health", H(": empty name"), NULL, 0,
                                       &status, &out, &len),
                 PH_EINVAL);
}
