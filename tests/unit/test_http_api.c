/*
 * test_http_api.c — the peer check behind a client's `loopback_only` (the
 * demo tokens): which socket addresses count as loopback. The end-to-end side
 * (a real request from a non-loopback address gets 403) is in
 * tests/e2e/test_badinput.c, when the machine has such an address.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>

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
