/*
 * netaddr.h — IP addresses and CIDR networks as plain values: what a peer's
 * socket address is, parsing "10.0.0.0/8" or "2001:db8::/32" from the
 * configuration, and whether an address falls in a network.
 *
 * One form for both families: an IPv4 address, and an IPv4-mapped IPv6 one
 * (::ffff:a.b.c.d, what a dual-stack socket reports for an IPv4 peer), are the
 * same ph_ipaddr of family 4, so a network written in IPv4 matches either.
 *
 * Pure functions on caller-owned values: no allocation, no state, any thread.
 */
#ifndef PH_NETADDR_H
#define PH_NETADDR_H

#include <stddef.h>
#include <stdint.h>

struct sockaddr;

/* An address: family 4 (b[0..3], the rest zero) or 6 (b[0..15]); 0 = none.
 * Compare with memcmp over the whole struct (padding-free: 17 bytes). */
typedef struct ph_ipaddr {
    uint8_t family;
    uint8_t b[16];
} ph_ipaddr;

/* A network: the address with every bit past prefix zero, and the prefix
 * (0..32 for family 4, 0..128 for 6). */
typedef struct ph_cidr {
    ph_ipaddr net;
    uint8_t prefix;
} ph_cidr;

/* The longest text ph_ipaddr_format writes, NUL included (INET6_ADDRSTRLEN). */
#define PH_IPADDR_TEXT 46

/* The address of sa (AF_INET, or AF_INET6 with a v4-mapped address turned into
 * family 4) into *out. Returns 0, or -1 for NULL or another family (*out then
 * zeroed). */
int ph_ipaddr_from_sockaddr(const struct sockaddr *sa, ph_ipaddr *out);

/* Writes a as text ("203.0.113.9", "2001:db8::1") into buf (at least
 * PH_IPADDR_TEXT bytes; "-" for family 0). Returns buf. */
char *ph_ipaddr_format(const ph_ipaddr *a, char *buf, size_t n);

/* Parses "ADDR" (one host: /32 or /128) or "ADDR/PREFIX" into *out. Returns
 * NULL, or why it is not a network (a static phrase to put after the text in
 * a message, e.g. "prefix above 32 for an IPv4 address"; *out then zeroed).
 * Bits set past the prefix are refused ("10.0.0.1/8": did you mean a host or
 * 10.0.0.0/8?) rather than silently cleared. ::ffff:a.b.c.d/p with p >= 96 is
 * the IPv4 network a.b.c.d/(p-96). */
const char *ph_cidr_parse(const char *s, ph_cidr *out);

/* 1 when a is inside c (same family after the v4-mapped rule), else 0. */
int ph_cidr_contains(const ph_cidr *c, const ph_ipaddr *a);

#endif
