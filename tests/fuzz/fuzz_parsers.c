/*
 * fuzz_parsers.c — the small parsers every surface leans on: money in fen
 * (ph_money_parse, the API's and the config's "19.80"), times (ph_time_parse:
 * CSV expiries, API filters), identifiers (ph_ident_valid: SKUs, supplier ids,
 * client order ids), unsigned numbers (ph_u64_parse: ids in paths and queries),
 * hex (ph_hex_decode: key files), plugin config values (ldr_parse_int,
 * ldr_parse_bool: a supplier's `config:`), look-alike rules
 * (ph_code_lookalikes_parse), and the JSON string writer of the hand-made
 * event and view texts (ph_json_str) against jansson's own.
 *
 * Input: one byte choosing the parser, then the text (NUL-terminated copy; the
 * parsers that take a length get the exact bytes, NULs included).
 *
 * Invariants: a value parsed is in its documented range and round-trips
 * (format then parse gives it back; for money and times also parse(format(x))
 * == x for the x just parsed); what is accepted has the documented shape
 * (digits only, [A-Za-z0-9._:-], canonical look-alike pairs); ph_json_str
 * writes byte for byte what json_dumps writes, and refuses exactly what
 * jansson refuses.
 */
#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "config/config.h"
#include "crypto/code.h"
#include "fuzz.h"
#include "supply/loader_int.h"

static void fz_money(const char *s)
{
    int64_t fen = -7, again = -7;
    if (ph_money_parse(s, &fen) != 0) {
        FZ_CHECK(fen == -7, "refused money changed *fen");
        return;
    }
    FZ_CHECK(fen >= 0 && fen <= PH_MONEY_MAX_YUAN * 100, "money %" PRId64 " out of range", fen);
    FZ_CHECK(strspn(s, "0123456789.") == strlen(s), "money with other bytes accepted");
    char buf[32];
    ph_money_format(fen, buf, sizeof buf);
    FZ_CHECK(ph_money_parse(buf, &again) == 0 && again == fen,
             "money %" PRId64 " -> %s -> %" PRId64, fen, buf, again);
}

static void fz_time(const char *s, size_t len)
{
    int64_t ms = -7, again = -7;
    if (ph_time_parse(s, len, &ms) != 0) {
        FZ_CHECK(ms == -7, "refused time changed *ms");
        return;
    }
    /* at or before the epoch is allowed (the callers refuse it); after year 9999 is not:
     * such an instant cannot be written back as RFC 3339 */
    FZ_CHECK(ms > -86400000 && ms <= PH_TIME_MAX_MS, "time %" PRId64 " out of range", ms);
    if (ms < 0)
        return;
    char buf[40];
    ph_time_format(ms, buf, sizeof buf);
    FZ_CHECK(ph_time_parse(buf, strlen(buf), &again) == 0 && again == ms,
             "time %" PRId64 " -> %s -> %" PRId64, ms, buf, again);
}

static int fz_ident_char(char c)
{
    return isalnum((unsigned char)c) || c == '.' || c == '_' || c == ':' || c == '-';
}

static void fz_ident(const char *s, size_t max)
{
    size_t n = strlen(s), good = 0;
    while (good < n && fz_ident_char(s[good]))
        good++;
    int want = n >= 1 && n <= max && good == n;
    FZ_CHECK(ph_ident_valid(s, max) == want, "ident of %zu bytes (max %zu): %d", n, max, !want);
}

static void fz_u64(const char *s)
{
    uint64_t v = 7;
    if (ph_u64_parse(s, &v) != 0)
        return;
    FZ_CHECK(*s && strspn(s, "0123456789") == strlen(s), "u64 with other bytes accepted");
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    const char *digits = s + strspn(s, "0");
    FZ_CHECK(strcmp(buf, *digits ? digits : "0") == 0, "u64 %s read as %s", s, buf);
}

static void fz_hex(const char *s)
{
    uint8_t bin[64];
    size_t n = strlen(s) / 2;
    if (n > sizeof bin || ph_hex_decode(s, bin, n) != 0)
        return;
    char back[2 * sizeof bin + 1];
    ph_hex_encode(bin, n, back);
    for (size_t i = 0; i < 2 * n; i++)
        FZ_CHECK(back[i] == tolower((unsigned char)s[i]), "hex round trip differs at %zu", i);
}

static void fz_plugin_value(const char *s)
{
    int64_t v;
    if (ldr_parse_int(s, &v) == 0) {
        /* the schema's "decimal int64, optional sign": nothing else */
        const char *d = s + (*s == '-');
        FZ_CHECK(*d && strspn(d, "0123456789") == strlen(d), "int value with other bytes");
        char buf[32];
        snprintf(buf, sizeof buf, "%" PRId64, v);
        int64_t again;
        FZ_CHECK(ldr_parse_int(buf, &again) == 0 && again == v, "int round trip");
    }
    int b = 7;
    if (ldr_parse_bool(s, &b) == 0)
        FZ_CHECK(b == 0 || b == 1, "bool %d", b);
    int level = ph_log_level_parse(s);
    FZ_CHECK(level == -1 || (level >= PH_LOG_DEBUG && level <= PH_LOG_ERROR), "log level %d",
             level);
    int d = ph_delivery_parse(s);
    FZ_CHECK(d == 0 || strcmp(ph_delivery_name(d), s) == 0, "delivery round trip");
}

static void fz_lookalikes(const char *s, size_t len)
{
    char out[PH_LOOKALIKES_MAX + 1];
    const char *why = NULL;
    if (ph_code_lookalikes_parse(s, len, out, &why) != PH_OK) {
        FZ_CHECK(why && *why, "refusal without a reason");
        return;
    }
    size_t n = strlen(out);
    FZ_CHECK(n % 2 == 0 && n <= PH_LOOKALIKES_MAX, "rule of %zu bytes", n);
    for (size_t i = 0; i < n; i += 2) {
        FZ_CHECK(isupper((unsigned char)out[i]) || isdigit((unsigned char)out[i]), "FROM byte");
        FZ_CHECK(isupper((unsigned char)out[i + 1]) || isdigit((unsigned char)out[i + 1]),
                 "TO byte");
        FZ_CHECK(i == 0 || out[i] > out[i - 2], "FROMs not sorted and unique");
        for (size_t j = 0; j < n; j += 2)
            FZ_CHECK(out[i + 1] != out[j], "a TO is also a FROM");
    }
}

typedef struct fz_buf {
    char *p;
    size_t len, cap;
} fz_buf;

static void fz_put(void *sink, const char *p, size_t n)
{
    fz_buf *b = sink;
    if (b->len + n + 1 > b->cap) {
        b->cap = 2 * (b->len + n + 1);
        if (!(b->p = realloc(b->p, b->cap)))
            abort();
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void fz_json_str(const char *s)
{
    fz_buf ours = {0};
    int rc = ph_json_str(s, fz_put, &ours);
    json_t *j = json_string(s); /* NULL: not UTF-8 as jansson checks it */
    FZ_CHECK((rc == 0) == (j != NULL), "ph_json_str says %d, jansson %s", rc,
             j ? "accepts" : "refuses");
    if (j) {
        char *theirs = json_dumps(j, JSON_ENCODE_ANY);
        FZ_CHECK(theirs && strcmp(ours.p, theirs) == 0, "ph_json_str differs from json_dumps");
        free(theirs);
        json_decref(j);
    }
    free(ours.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_cursor c = {data, size};
    unsigned mode = fz_byte(&c);
    char *s = fz_strndup((const char *)c.p, c.left);
    switch (mode % 9) {
    case 0:
        fz_money(s);
        break;
    case 1:
        fz_time((const char *)c.p, c.left);
        break;
    case 2:
        fz_ident(s, 64);
        break;
    case 3:
        fz_ident(s, 1 + mode / 9);
        break;
    case 4:
        fz_u64(s);
        break;
    case 5:
        fz_hex(s);
        break;
    case 6:
        fz_plugin_value(s);
        break;
    case 7:
        fz_lookalikes((const char *)c.p, c.left);
        break;
    default:
        fz_json_str(s);
        break;
    }
    free(s);
    return 0;
}
