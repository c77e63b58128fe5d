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
#include <sys/stat.h>
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
           "d=%d u=%u lld=%lld llu=%llu zu=%zu x=%08x f=%.2f w=%-*d| p=%.*s pct=100%% l=%ld "
           "nw=%*d|",
           -5, 7u, big, 18446744073709551615ULL, (size_t)42, 0xbeefu, 3.14159, 4, 9, 3, "abcdef",
           -7L, -3, 1);
    cr_expect_str_eq(tail_of(read_back(lg)),
                     "d=-5 u=7 lld=-1234567890123 llu=18446744073709551615 zu=42 x=0000beef "
                     "f=3.14 w=9   | p=abc pct=100% l=-7 nw=1  |\n");
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

/* ---- log.format: json (issue 14, item 2) ------------------------------------ */

#include <jansson.h>
#include <math.h>

static ph_logger *json_logger(void)
{
    ph_logger *lg = logger();
    lg->format = PH_LOG_FORMAT_JSON;
    return lg;
}

/* The line read back parses as one JSON object (duplicate keys refused);
 * owned by the caller. */
static json_t *parse_line(ph_logger *lg)
{
    const char *l = read_back(lg);
    json_error_t je;
    json_t *o = json_loads(l, JSON_REJECT_DUPLICATES, &je);
    cr_assert(o, "not JSON (%s at %d): %s", je.text, je.position, l);
    cr_assert(json_is_object(o), "%s", l);
    lg->format = PH_LOG_FORMAT_TEXT; /* the static logger goes back to text for other tests */
    return o;
}

static const char *str_of(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    cr_assert(json_is_string(v), "%s is not a string", key);
    return json_string_value(v);
}

Test(log_json, head_and_typed_numbers)
{
    ph_logger *lg = json_logger();
    long long big = -1234567890123LL;
    ph_log(lg, PH_LOG_INFO, "7f3a01", "order.created",
           "order=%llu sku=%s quantity=%u state=%s d=%d lld=%lld zu=%zu hh=%hhd f=%.2f x=%08x "
           "w=%5d",
           12ULL, "iqiyi.gold.1m", 3u, "succeeded", -5, big, (size_t)42, (signed char)-3, 3.25,
           0xbeefu, 9);
    json_t *o = parse_line(lg);
    const char *t = str_of(o, "time"); /* RFC 3339, milliseconds, UTC */
    cr_expect_eq(strlen(t), strlen("2026-11-24T19:42:00.123Z"), "%s", t);
    cr_expect(t[4] == '-' && t[10] == 'T' && t[19] == '.' && t[23] == 'Z', "%s", t);
    cr_expect_str_eq(str_of(o, "level"), "info");
    cr_expect_str_eq(str_of(o, "req"), "7f3a01");
    cr_expect_str_eq(str_of(o, "event"), "order.created");
    cr_expect_eq(json_integer_value(json_object_get(o, "order")), 12);
    cr_expect_str_eq(str_of(o, "sku"), "iqiyi.gold.1m");
    cr_expect_str_eq(str_of(o, "state"), "succeeded");
    /* jansson reads integers into json_int_t (long long), so the u64 max is
     * checked as text (u64_max_is_a_number) */
    cr_expect(json_is_integer(json_object_get(o, "quantity")));
    cr_expect_eq(json_integer_value(json_object_get(o, "quantity")), 3);
    cr_expect_eq(json_integer_value(json_object_get(o, "d")), -5);
    cr_expect_eq(json_integer_value(json_object_get(o, "lld")), big);
    cr_expect_eq(json_integer_value(json_object_get(o, "zu")), 42);
    cr_expect_eq(json_integer_value(json_object_get(o, "hh")), -3);
    cr_expect_eq(json_integer_value(json_object_get(o, "w")), 9);
    cr_expect(!strstr(line, "    9"), "no padding in JSON: %s", line);
    cr_expect(json_is_real(json_object_get(o, "f")));
    cr_expect(fabs(json_real_value(json_object_get(o, "f")) - 3.25) < 1e-9);
    cr_expect_str_eq(str_of(o, "x"), "0000beef", "hex stays text as written");
    json_decref(o);
}

Test(log_json, u64_max_is_a_number)
{
    ph_logger *lg = json_logger();
    ph_log(lg, PH_LOG_INFO, NULL, "t.x", "n=%llu", 18446744073709551615ULL);
    const char *l = read_back(lg);
    lg->format = PH_LOG_FORMAT_TEXT;
    cr_expect(strstr(l, ",\"n\":18446744073709551615}\n"), "%s", l);
}

Test(log_json, hostile_values_stay_one_string)
{
    ph_logger *lg = json_logger();
    const char *evil = "\",\"level\":\"error\",\"x\":\"";
    ph_log(lg, PH_LOG_INFO, "a\"b", "x\"y\n", "path=%s ctl=%s uni=%s bad=%s eq=%s", evil,
           "x\ny\rz\x01\x7f", "caf\xc3\xa9 \xe4\xb8\xad", "\xff\xc0\xaf\xed\xa0\x80z", "a=b c");
    json_t *o = parse_line(lg);
    cr_expect_str_eq(str_of(o, "level"), "info");
    cr_expect_eq(json_object_size(o), 9, "time level req event path ctl uni bad eq");
    cr_expect_str_eq(str_of(o, "req"), "a\"b");
    cr_expect_str_eq(str_of(o, "event"), "x\"y\n");
    cr_expect_str_eq(str_of(o, "path"), evil);
    cr_expect_str_eq(str_of(o, "ctl"), "x\ny\rz\x01\x7f");
    cr_expect_str_eq(str_of(o, "uni"), "caf\xc3\xa9 \xe4\xb8\xad", "valid UTF-8 kept");
    /* a stray byte, an overlong '/', a surrogate: each byte one U+FFFD */
    cr_expect_str_eq(str_of(o, "bad"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf"
                                       "\xbd\xef\xbf\xbdz");
    cr_expect_str_eq(str_of(o, "eq"), "a=b c");
    json_decref(o);
}

Test(log_json, values_built_by_the_format)
{
    ph_logger *lg = json_logger();
    ph_log(lg, PH_LOG_ERROR, NULL, "config.reload_failed",
           "detail=\"%s\" effect=\"the running configuration stays in force\" rc=out_of_memory "
           "ms=%lld aborted=1 pct=100%% mixed=%d/%d word",
           "a \"b\"\nc=d", 12LL, 1, 2);
    json_t *o = parse_line(lg);
    cr_expect_str_eq(str_of(o, "detail"), "a \"b\"\nc=d");
    cr_expect_str_eq(str_of(o, "effect"), "the running configuration stays in force");
    cr_expect_str_eq(str_of(o, "rc"), "out_of_memory");
    cr_expect_eq(json_integer_value(json_object_get(o, "ms")), 12);
    cr_expect_str_eq(str_of(o, "aborted"), "1", "literal text in the format stays text");
    cr_expect_str_eq(str_of(o, "pct"), "100%");
    cr_expect_str_eq(str_of(o, "mixed"), "1/2");
    cr_expect_str_eq(str_of(o, "text"), "word");
    json_decref(o);
}

Test(log_json, a_field_cannot_pass_for_the_head)
{
    ph_logger *lg = json_logger();
    ph_log(lg, PH_LOG_INFO, "r1", "t.x", "level=%s event=%s req=%s time=%d truncated=%s", "error",
           "forged", "r2", 5, "no");
    json_t *o = parse_line(lg); /* duplicate keys refused */
    cr_expect_str_eq(str_of(o, "level"), "info");
    cr_expect_str_eq(str_of(o, "event"), "t.x");
    cr_expect_str_eq(str_of(o, "req"), "r1");
    cr_expect_str_eq(str_of(o, "_level"), "error");
    cr_expect_str_eq(str_of(o, "_event"), "forged");
    cr_expect_str_eq(str_of(o, "_req"), "r2");
    cr_expect_eq(json_integer_value(json_object_get(o, "_time")), 5);
    cr_expect_str_eq(str_of(o, "_truncated"), "no");
    json_decref(o);
    char tail[128];
    ph_log_format(tail, sizeof tail, "level=%s", "error");
    lg = json_logger();
    ph_log_tail(lg, PH_LOG_WARN, NULL, "plugin.x", tail);
    o = parse_line(lg);
    cr_expect_str_eq(str_of(o, "level"), "warn");
    cr_expect_str_eq(str_of(o, "_level"), "error");
    json_decref(o);
}

Test(log_json, non_finite_is_null_and_null_string)
{
    ph_logger *lg = json_logger();
    const char *volatile none = NULL;
    ph_log(lg, PH_LOG_INFO, NULL, "t.x", "inf=%f nan=%g e=%e s=%s empty=%s", INFINITY, NAN, 1.5e300,
           none, "");
    json_t *o = parse_line(lg);
    cr_expect(json_is_null(json_object_get(o, "inf")));
    cr_expect(json_is_null(json_object_get(o, "nan")));
    cr_expect(json_is_real(json_object_get(o, "e")));
    cr_expect_str_eq(str_of(o, "s"), "(null)");
    cr_expect_str_eq(str_of(o, "empty"), "");
    json_decref(o);
}

Test(log_json, a_long_line_is_cut_and_still_parses)
{
    for (int pass = 0; pass < 3; pass++) {
        ph_logger *lg = json_logger();
        char *v = malloc(10000);
        memset(v, pass == 0 ? '\n' : pass == 1 ? 'a' : '"', 9999);
        v[9999] = 0;
        ph_log(lg, PH_LOG_INFO, NULL, "t.x", "a=%d v=%s b=%d", 1, v, 2);
        free(v);
        off_t n = lseek(lg->fd, 0, SEEK_CUR);
        cr_expect(n <= 2048, "%lld bytes", (long long)n);
        json_t *o = parse_line(lg);
        cr_expect_eq(json_object_get(o, "truncated"), json_true());
        cr_expect_eq(json_integer_value(json_object_get(o, "a")), 1);
        cr_expect(json_string_length(json_object_get(o, "v")) > 100, "the value is cut, not gone");
        cr_expect_null(json_object_get(o, "b"));
        json_decref(o);
    }
}

Test(log_json, a_preformatted_tail_reads_back)
{
    char tail[512];
    ph_log_format(tail, sizeof tail, "supplier=%s plugin=%s reason=%s n=%d", "sup-1", "x y",
                  "caf\xc3\xa9 \"q\" a=b\n\xff", 7);
    ph_logger *lg = json_logger();
    ph_log_tail(lg, PH_LOG_WARN, NULL, "plugin.note", tail);
    json_t *o = parse_line(lg);
    cr_expect_str_eq(str_of(o, "event"), "plugin.note");
    cr_expect_str_eq(str_of(o, "supplier"), "sup-1");
    cr_expect_str_eq(str_of(o, "plugin"), "x y");
    cr_expect_str_eq(str_of(o, "reason"), "caf\xc3\xa9 \"q\" a=b\n\xef\xbf\xbd");
    cr_expect_str_eq(str_of(o, "n"), "7", "a preformatted tail has lost its types");
    json_decref(o);
}

Test(log_json, a_long_preformatted_tail_is_cut_not_misread)
{
    size_t n = 5000;
    char *tail = malloc(n + 32);
    memcpy(tail, "v=\"", 3);
    for (size_t i = 0; i < n; i += 5)
        memcpy(tail + 3 + i, "a x=1", 5); /* inside quotes: one value */
    strcpy(tail + 3 + n, "\" after=2");
    ph_logger *lg = json_logger();
    ph_log_tail(lg, PH_LOG_INFO, NULL, "t.x", tail);
    free(tail);
    json_t *o = parse_line(lg);
    cr_expect_eq(json_object_get(o, "truncated"), json_true());
    cr_expect_null(json_object_get(o, "x"), "no field read from inside the long value");
    json_decref(o);
}

Test(log_json, format_names)
{
    cr_expect_eq(ph_log_format_parse("json"), PH_LOG_FORMAT_JSON);
    cr_expect_eq(ph_log_format_parse("text"), PH_LOG_FORMAT_TEXT);
    cr_expect_eq(ph_log_format_parse("JSON"), -1);
    cr_expect_eq(ph_log_format_parse(NULL), -1);
}

/* log.file: appended to, created 0640, and reopened at the same descriptor
 * after a rename (what logrotate does before it signals). */
Test(log_file, open_append_and_reopen_after_rename)
{
    char dir[] = "/tmp/ph-logtest-XXXXXX";
    cr_assert(mkdtemp(dir));
    char path[256], moved[256];
    snprintf(path, sizeof path, "%s/perkhubd.log", dir);
    snprintf(moved, sizeof moved, "%s/perkhubd.log.1", dir);
    ph_logger lg = {.fd = 2};
    ph_log_set_level(&lg, PH_LOG_INFO);
    ph_err err = {0};
    mode_t old = umask(0);
    cr_assert_eq(ph_log_open_file(&lg, path, &err), PH_OK, "%s", err.msg);
    umask(old);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0640);
    int fd = lg.fd;
    ph_log(&lg, PH_LOG_INFO, NULL, "one", NULL);
    cr_assert_eq(rename(path, moved), 0);
    ph_log(&lg, PH_LOG_INFO, NULL, "two", NULL); /* still the old file */
    cr_assert_eq(ph_log_reopen(&lg, &err), PH_OK, "%s", err.msg);
    cr_expect_eq(lg.fd, fd, "the descriptor number stays");
    ph_log(&lg, PH_LOG_INFO, NULL, "three", NULL);
    ph_log_close(&lg);
    cr_expect_eq(lg.fd, 2);
    char buf[512];
    FILE *f = fopen(moved, "r");
    cr_assert(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    cr_expect(strstr(buf, "msg=one\n") && strstr(buf, "msg=two\n") && !strstr(buf, "three"), "%s",
              buf);
    f = fopen(path, "r");
    cr_assert(f, "reopen created the file again");
    n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    cr_expect(strstr(buf, "msg=three\n") && !strstr(buf, "msg=two"), "%s", buf);
    /* a directory that does not exist: an error naming the setting and file */
    ph_logger bad = {.fd = 2};
    snprintf(path, sizeof path, "%s/no/such.log", dir);
    cr_expect_eq(ph_log_open_file(&bad, path, &err), PH_EIO);
    cr_expect(strstr(err.msg, "log.file") && strstr(err.msg, "no/such.log"), "%s", err.msg);
    cr_expect_eq(bad.fd, 2);
    unlink(moved);
    unlink(dir);
    rmdir(dir);
    char rm[300];
    snprintf(rm, sizeof rm, "%s/perkhubd.log", dir);
    unlink(rm);
}
