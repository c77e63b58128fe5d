/*
 * test_log.c — log lines with hostile values (issue 10, defect 8): a value can
 * never end its field, start another or end the line; numbers print as printf
 * prints them. The end-to-end side (a forged URL path in the access log) is in
 * tests/e2e/test_framing.c.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/log.h"

/* One logged line, read back from a memfd. */
static char line[4096];

static ph_logger *logger(void)
{
    static ph_logger lg;
    lg.fd = memfd_create("log-test", 0);
    cr_assert(lg.fd >= 0);
    ph_log_set_level(&lg, PH_LOG_DEBUG);
    return &lg;
}

static const char *read_back(ph_logger *lg)
{
    off_t n = lseek(lg->fd, 0, SEEK_CUR);
    cr_assert(n > 0 && (size_t)n < sizeof line);
    cr_assert_eq(pread(lg->fd, line, (size_t)n, 0), n);
    line[n] = 0;
    close(lg->fd);
    cr_assert_eq(strchr(line, '\n'), line + n - 1, "one line, ended once: %s", line);
    return line;
}

static long count(const char *hay, const char *needle)
{
    long c = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        c++;
    return c;
}

/* The tail of a line: what follows " msg=<msg> ". */
static const char *tail_of(const char *l)
{
    const char *t = strstr(l, " msg=");
    cr_assert(t);
    t = strchr(t + 1, ' ');
    cr_assert(t, "%s", l);
    return t + 1;
}

Test(log, forged_fields_stay_one_value)
{
    ph_logger *lg = logger();
    ph_log(lg, PH_LOG_INFO, "r1", "http.request", "method=%s path=%s status=%u", "GET",
           "/v1/x level=error msg=FORGED", 404u);
    const char *l = read_back(lg);
    cr_expect_eq(count(l, "level="), 1, "%s", l);
    cr_expect_eq(count(l, "msg="), 1, "%s", l);
    cr_expect_str_eq(tail_of(l),
                     "method=GET path=\"/v1/x level\\x3derror msg\\x3dFORGED\" status=404\n");
}

Test(log, control_quote_backslash_and_non_ascii)
{
    ph_logger *lg = logger();
    ph_log(lg, PH_LOG_WARN, NULL, "t.x", "a=%s b=%s c=%s d=%s", "x\ny\rz\x01", "say \"hi\"",
           "back\\slash", "caf\xc3\xa9");
    cr_expect_str_eq(tail_of(read_back(lg)), "a=\"x\\x0ay\\x0dz\\x01\" b=\"say \\\"hi\\\"\" "
                                             "c=\"back\\\\slash\" d=\"caf\\xc3\\xa9\"\n");
}

Test(log, quoted_by_the_format_is_escaped_not_quoted_twice)
{
    ph_logger *lg = logger();
    ph_log(lg, PH_LOG_ERROR, NULL, "t.x", "detail=\"%s\" effect=\"%s %s\"", "a \"b\"\nc=d", "one",
           "two");
    cr_expect_str_eq(tail_of(read_back(lg)),
                     "detail=\"a \\\"b\\\"\\x0ac\\x3dd\" effect=\"one two\"\n");
}

Test(log, bare_empty_and_null_values)
{
    ph_logger *lg = logger();
    const char *volatile none = NULL; /* hidden from the compiler's own check */
    ph_log(lg, PH_LOG_INFO, NULL, "t.x", "sku=%s path=%s empty=%s none=%s ch=%c sp=%c",
           "iqiyi.gold.1m", "/v1/orders/12", "", none, 'k', ' ');
    cr_expect_str_eq(tail_of(read_back(lg)), "sku=iqiyi.gold.1m path=/v1/orders/12 empty=\"\" "
                                             "none=\"(null)\" ch=k sp=\" \"\n");
}

Test(log, numbers_as_printf)
{
    ph_logger *lg = logger();
    long long big = -1234567890123LL;
    ph_log(lg, PH_LOG_INFO, NULL, "t.x",
           "d=%d u=%u lld=%lld llu=%llu zu=%zu x=%08x f=%.2f w=%-*d| p=%.*s pct=100%% l=%ld", -5,
           7u, big, 18446744073709551615ULL, (size_t)42, 0xbeefu, 3.14159, 4, 9, 3, "abcdef", -7L);
    cr_expect_str_eq(tail_of(read_back(lg)),
                     "d=-5 u=7 lld=-1234567890123 llu=18446744073709551615 zu=42 x=0000beef "
                     "f=3.14 w=9   | p=abc pct=100% l=-7\n");
}

Test(log, msg_and_req_are_escaped_too)
{
    ph_logger *lg = logger();
    ph_log(lg, PH_LOG_INFO, "a b", "x level=error", NULL);
    const char *l = read_back(lg);
    cr_expect_eq(count(l, "level="), 1, "%s", l);
    cr_expect(strstr(l, " req=\"a b\" msg=\"x level\\x3derror\"\n"), "%s", l);
}

Test(log, a_long_value_is_cut_to_one_line)
{
    ph_logger *lg = logger();
    char *v = malloc(10000);
    memset(v, '\n', 9999);
    v[9999] = 0;
    ph_log(lg, PH_LOG_INFO, NULL, "t.x", "v=%s", v);
    free(v);
    const char *l = read_back(lg); /* asserts one newline, at the end */
    cr_expect(strlen(l) <= 2048, "%zu bytes", strlen(l));
}

Test(log, format_in_parts)
{
    char buf[15];
    size_t n = ph_log_format(buf, sizeof buf, "k=%s n=%d", "a b", 12345);
    cr_expect_eq(n, strlen("k=\"a b\" n=12345"));
    cr_expect_str_eq(buf, "k=\"a b\" n=1234", "cut to the buffer, NUL-terminated");
    ph_logger *lg = logger();
    ph_log_tail(lg, PH_LOG_INFO, NULL, "t.x", "k=v");
    cr_expect_str_eq(tail_of(read_back(lg)), "k=v\n");
}

Test(log, below_the_level_nothing)
{
    ph_logger *lg = logger();
    ph_log_set_level(lg, PH_LOG_WARN);
    ph_log(lg, PH_LOG_INFO, NULL, "t.x", "k=%s", "v");
    ph_log(lg, PH_LOG_WARN, NULL, "t.y", NULL);
    const char *l = read_back(lg);
    cr_expect_eq(count(l, "msg="), 1);
    cr_expect(strstr(l, "level=warn msg=t.y\n"), "%s", l);
}
