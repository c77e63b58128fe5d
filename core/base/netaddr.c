/*
 * netaddr.c — IP addresses and CIDR networks (netaddr.h).
 */
#include "base/netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* An IPv6 address as ph_ipaddr: family 4 when it is v4-mapped. */
static void from_in6(const uint8_t b[16], ph_ipaddr *out)
{
    memset(out, 0, sizeof *out);
    if (memcmp(b, v4_mapped_prefix, sizeof v4_mapped_prefix) == 0) {
        out->family = 4;
        memcpy(out->b, b + 12, 4);
    } else {
        out->family = 6;
        memcpy(out->b, b, 16);
    }
}

int ph_ipaddr_from_sockaddr(const struct sockaddr *sa, ph_ipaddr *out)
{
    memset(out, 0, sizeof *out);
    if (sa && sa->sa_family == AF_INET) {
        out->family = 4;
        memcpy(out->b, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa && sa->sa_family == AF_INET6) {
        from_in6(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr, out);
        return 0;
    }
    return -1;
}

char *ph_ipaddr_format(const ph_ipaddr *a, char *buf, size_t n)
{
    if (!n)
        return buf;
    if (a->family != 4 && a->family != 6) {
        snprintf(buf, n, "-");
        return buf;
    }
    char t[INET6_ADDRSTRLEN];
    if (!inet_ntop(a->family == 4 ? AF_INET : AF_INET6, a->b, t, sizeof t))
        snprintf(t, sizeof t, "-");
    snprintf(buf, n, "%s", t);
    return buf;
}

/* Bits of the address past `prefix` all zero? */
static int host_bits_clear(const ph_ipaddr *a, unsigned prefix)
{
    unsigned bits = a->family == 4 ? 32 : 128;
    for (unsigned i = prefix; i < bits; i++)
        if (a->b[i / 8] & (0x80u >> (i % 8)))
            return 0;
    return 1;
}

const char *ph_cidr_parse(const char *s, ph_cidr *out)
{
    memset(out, 0, sizeof *out);
    char text[INET6_ADDRSTRLEN + 8];
    size_t len = strlen(s);
    if (!len)
        return "empty";
    if (len >= sizeof text)
        return "too long for an address";
    memcpy(text, s, len + 1);
    char *slash = strchr(text, '/');
    unsigned prefix = 0;
    int has_prefix = slash != NULL;
    if (slash) {
        *slash = 0;
        const char *p = slash + 1;
        if (!*p || strspn(p, "0123456789") != strlen(p) || strlen(p) > 3)
            return "the prefix after '/' is not a number";
        for (; *p; p++)
            prefix = prefix * 10 + (unsigned)(*p - '0');
    }
    ph_ipaddr a = {0};
    uint8_t b6[16];
    int six = strchr(text, ':') != NULL;
    if (!six && inet_pton(AF_INET, text, a.b) == 1) {
        a.family = 4;
    } else if (six && inet_pton(AF_INET6, text, b6) == 1) {
        from_in6(b6, &a);
        if (a.family == 4) { /* ::ffff:a.b.c.d/p counts its prefix over 128 bits */
            if (has_prefix && prefix < 96)
                return "a prefix below 96 for an IPv4-mapped address (::ffff:a.b.c.d)";
            if (has_prefix)
                prefix -= 96;
        }
    } else {
        return six ? "not an IPv6 address" : "not an IPv4 address";
    }
    unsigned bits = a.family == 4 ? 32 : 128;
    if (!has_prefix)
        prefix = bits;
    if (prefix > bits)
        return a.family == 4 ? "prefix above 32 for an IPv4 address"
                             : "prefix above 128 for an IPv6 address";
    if (!host_bits_clear(&a, prefix))
        return "bits set past the prefix (write the network's first address, or a host "
               "without a prefix)";
    out->net = a;
    out->prefix = (uint8_t)prefix;
    return NULL;
}

int ph_cidr_contains(const ph_cidr *c, const ph_ipaddr *a)
{
    if (c->net.family != a->family || !a->family)
        return 0;
    unsigned full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(c->net.b, a->b, full) != 0)
        return 0;
    if (!rest)
        return 1;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (c->net.b[full] & mask) == (a->b[full] & mask);
}
