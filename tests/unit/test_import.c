/*
 * test_import.c — a CSV file of codes into one stored batch or nothing
 * (core/codes/import.c), against a real store: codes sealed and findable by
 * their keyed hash; duplicates inside the file and against stock, bad lines,
 * expired codes and limits reported by line and field, never quoting a code;
 * and after any refusal the store unchanged.
 */
#include "store_fixture.h"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include "codes/import.h"
#include "crypto/crypto.h"

static ph_keyring *g_kr;

static void setup(void)
{
    fixture_setup();
    g_s = open_at(g_dir, 0);
    uint8_t ik[PH_KEY_LEN], k[PH_KEY_LEN];
    memset(ik, 7, sizeof ik);
    memset(k, 9, sizeof k);
    ph_err err = {0};
    cr_assert_eq(ph_keyring_from_raw(ik, 1, k, &g_kr, &err), PH_OK, "%s", err.msg);
    const char *const products[] = {P_IQ, P_TOPUP};
    cr_assert_eq(put_products(products, 2, &err), PH_OK, "%s", err.msg);
}

static void teardown(void)
{
    ph_keyring_free(g_kr);
    g_kr = NULL;
    fixture_teardown();
}

TestSuite(import, .init = setup, .fini = teardown);

/* Runs an import of csv into IQ (or sku) with generous limits. */
static int run_sku(const char *sku, const char *csv, size_t max_codes, size_t max_errors,
                   ph_import_result *out, ph_err *err)
{
    ph_import_req req = {.supplier = "acme",
                         .sku = sku,
                         .note = "test",
                         .unit_cost = 1980,
                         .csv = csv,
                         .csv_len = strlen(csv),
                         .max_codes = max_codes,
                         .max_errors = max_errors,
                         .now = NOW};
    return ph_import_run(g_s, g_kr, &req, out, err);
}

/* A file of n code lines after a header: line i + 2 holds code "CODE-<i % distinct>",
 * so every code from the distinct-th line on repeats an earlier one. Caller frees. */
static char *repeating_file(size_t n, size_t distinct, size_t *len)
{
    size_t cap = 8 + n * 24;
    char *text = malloc(cap);
    cr_assert_not_null(text);
    memcpy(text, "code\n", 5);
    char *p = text + 5;
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "CODE-%zu\n", i % distinct);
    *len = (size_t)(p - text);
    return text;
}

/* Under valgrind (tools/valgrind.sh sets PH_SLOW_RUN) everything runs some 50
 * times slower: a large file is cut to a fiftieth, which still checks memory. */
static size_t scaled(size_t n)
{
    return getenv("PH_SLOW_RUN") ? n / 50 : n;
}

/* For a test whose point is that it finishes: the duplicate search of 1,000,000
 * identical lines used to take some 11 minutes of CPU (quadratic), and ctest
 * would wait 600 s before saying only "timeout". A CPU-time limit ends the
 * test first (SIGXCPU), with a message that says why. CPU time, not wall time,
 * so a loaded machine cannot trip it: it is a bound, not a measurement, some
 * 25 times what the test uses in the normal build (about 5 s for its two
 * million-line files) and 4 times what it uses under TSan. */
static void watchdog_fired(int sig)
{
    (void)sig;
    static const char msg[] = "watchdog: the import used up its CPU-time bound "
                              "(quadratic duplicate search?)\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(3);
}

static void watchdog_arm(rlim_t cpu_seconds)
{
    struct rusage ru;
    struct rlimit rl;
    cr_assert_eq(getrusage(RUSAGE_SELF, &ru), 0);
    cr_assert_eq(getrlimit(RLIMIT_CPU, &rl), 0);
    rlim_t limit = (rlim_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1 + cpu_seconds;
    if (rl.rlim_max != RLIM_INFINITY && limit > rl.rlim_max)
        limit = rl.rlim_max;
    rl.rlim_cur = limit;
    signal(SIGXCPU, watchdog_fired);
    cr_assert_eq(setrlimit(RLIMIT_CPU, &rl), 0);
}

static void watchdog_disarm(void)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_CPU, &rl), 0);
    rl.rlim_cur = rl.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_CPU, &rl), 0);
}

static int run(const char *csv, ph_import_result *out, ph_err *err)
{
    return run_sku(IQ, csv, 1000, 100, out, err);
}

/* What a refused import must leave as it was. */
typedef struct snapshot {
    uint64_t codes, last_event;
    size_t nskus;
} snapshot;

static snapshot snap(void)
{
    ph_store_stats st;
    ph_err err = {0};
    cr_assert_eq(ph_store_stats_get(g_s, &st, &err), PH_OK, "%s", err.msg);
    snapshot s = {st.codes, st.last_event, st.nskus};
    ph_store_stats_clear(&st);
    return s;
}

static void assert_unchanged(snapshot before)
{
    snapshot now = snap();
    cr_assert_eq(now.codes, before.codes, "codes: %llu, were %llu", (unsigned long long)now.codes,
                 (unsigned long long)before.codes);
    cr_assert_eq(now.last_event, before.last_event, "an event was written");
    cr_assert_eq(now.nskus, before.nskus);
    assert_check();
}

/* The listed errors are exactly lines[i] with reasons[i], in line order, and
 * none quotes a code of the file (each starts "CODE-"). */
static void expect_errors(const ph_import_result *r, size_t n, const uint32_t *lines,
                          const char *const *reasons)
{
    cr_assert_eq(r->nerrors, n, "%zu errors listed, want %zu (first: line %u %s)", r->nerrors, n,
                 r->nerrors ? r->errors[0].line : 0, r->nerrors ? r->errors[0].reason : "");
    for (size_t i = 0; i < n; i++) {
        cr_expect_eq(r->errors[i].line, lines[i], "error %zu: line %u, want %u (%s)", i,
                     r->errors[i].line, lines[i], r->errors[i].reason);
        cr_expect_str_eq(r->errors[i].reason, reasons[i], "error %zu (line %u)", i, lines[i]);
        cr_expect_null(strstr(r->errors[i].reason, "CODE-"), "a reason quotes a code: %s",
                       r->errors[i].reason);
    }
}

/* The stored code with this text, unsealed: its batch and plaintext card number. */
static void expect_stored(const char *code, uint64_t batch, const char *card, int64_t expires)
{
    uint8_t h[32];
    cr_assert_eq(ph_code_hash(g_kr, code, strlen(code), NULL, h), PH_OK); /* as lookups hash */
    ph_code_info info;
    ph_err err = {0};
    cr_assert_eq(ph_store_code_find(g_s, h, &info, &err), PH_OK, "%s: %s", code, err.msg);
    cr_expect_eq(info.code.batch_id, batch);
    cr_expect_eq(info.code.state, PH_CODE_AVAILABLE);
    cr_expect_eq(info.code.expires_at, expires, "%s", code);
    char plain[PH_CODE_MAX + 1], cardno[PH_CODE_MAX + 1];
    cr_assert_eq(ph_code_unseal(g_kr, info.code.sealed, info.code.sealed_len, plain, cardno),
                 PH_OK);
    cr_expect_str_eq(plain, code);
    cr_expect_str_eq(cardno, card);
    ph_code_info_clear(&info);
}

Test(import, a_clean_file_is_one_batch_of_sealed_findable_codes)
{
    ph_import_result r;
    ph_err err = {0};
    int rc = run("code,card_no,expires_at\n"
                 "CODE-1,8801,2027-01-31\n"
                 "CODE-2,,\n"
                 "\"CODE-3\",8803,2027-01-31T00:00:00Z\n",
                 &r, &err);
    cr_assert_eq(rc, PH_OK, "%s", err.msg);
    cr_assert_eq(r.count, 3);
    cr_assert_eq(r.error_count, 0);
    expect_stored("CODE-1", r.batch_id, "8801", 1801411199999LL);
    expect_stored("CODE-2", r.batch_id, "", 0);
    expect_stored("CODE-3", r.batch_id, "8803", 1801353600000LL);
    /* the file's bytes never reach data.mdb in the clear */
    ph_import_result_clear(&r);
    ph_store_close(g_s);
    g_s = NULL;
    char path[128];
    snprintf(path, sizeof path, "%s/data.mdb", g_dir);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    static char data[1 << 22];
    size_t n = fread(data, 1, sizeof data, f);
    fclose(f);
    for (size_t i = 0; i + 6 <= n; i++)
        cr_assert(memcmp(data + i, "CODE-", 5) != 0, "a code in plain text at byte %zu", i);
    g_s = open_at(g_dir, 0);
}

Test(import, duplicates_inside_the_file_name_their_first_line_and_store_nothing)
{
    snapshot before = snap();
    ph_import_result r;
    ph_err err = {0};
    int rc = run("code\n"
                 "CODE-1\n" /* line 2 */
                 "CODE-2\n" /* line 3 */
                 "CODE-1\n" /* line 4: a repeat of line 2 */
                 "CODE-3\n" /* line 5 */
                 "CODE-1\n" /* line 6: again */
                 "CODE-3\n" /* line 7 */
                 "code2\n", /* line 8: line 3 in other case, without its dash (crypto/code.h) */
                 &r, &err);
    cr_assert_eq(rc, PH_EINVAL);
    cr_assert_str_eq(err.msg, "4 bad lines, nothing imported");
    cr_assert_eq(r.error_count, 4);
    static const uint32_t lines[] = {4, 6, 7, 8};
    static const char *const reasons[] = {"duplicate of line 2", "duplicate of line 2",
                                          "duplicate of line 5", "duplicate of line 3"};
    expect_errors(&r, 4, lines, reasons);
    ph_import_result_clear(&r);
    assert_unchanged(before);
}

Test(import, repeats_are_listed_in_file_order_against_their_first_line)
{
    snapshot before = snap();
    ph_import_result r;
    ph_err err = {0};
    /* CODE-0, CODE-1, CODE-2 three times over (lines 2..10), capped at 4 listed */
    size_t len;
    char *text = repeating_file(9, 3, &len);
    ph_import_req req = {.supplier = "acme",
                         .sku = IQ,
                         .csv = text,
                         .csv_len = len,
                         .max_codes = 100,
                         .max_errors = 4,
                         .now = NOW};
    int rc = ph_import_run(g_s, g_kr, &req, &r, &err);
    free(text);
    cr_assert_eq(rc, PH_EINVAL);
    cr_assert_str_eq(err.msg, "6 bad lines, nothing imported");
    cr_assert_eq(r.error_count, 6);
    /* the first four repeats in the file, not four in hash order */
    static const uint32_t lines[] = {5, 6, 7, 8};
    static const char *const reasons[] = {"duplicate of line 2", "duplicate of line 3",
                                          "duplicate of line 4", "duplicate of line 2"};
    expect_errors(&r, 4, lines, reasons);
    ph_import_result_clear(&r);
    assert_unchanged(before);
}

Test(import, an_expired_repeat_is_one_bad_line_with_one_reason)
{
    snapshot before = snap();
    ph_import_result r;
    ph_err err = {0};
    int rc = run("code,card_no,expires_at\n"
                 "CODE-1\n"             /* line 2 */
                 "CODE-1,,2020-01-01\n" /* line 3: expired, and a repeat of 2 */
                 "CODE-2,,2020-01-01\n" /* line 4: expired */
                 "CODE-2\n",            /* line 5: a repeat of 4 */
                 &r, &err);
    cr_assert_eq(rc, PH_EINVAL);
    cr_assert_str_eq(err.msg, "3 bad lines, nothing imported");
    static const uint32_t lines[] = {3, 4, 5};
    static const char *const reasons[] = {"expires_at: already expired",
                                          "expires_at: already expired", "duplicate of line 4"};
    expect_errors(&r, 3, lines, reasons);
    ph_import_result_clear(&r);
    assert_unchanged(before);
}

/* The defect of issue 10 (4): each repeat scanned back over the earlier ones. */
Test(import, a_million_identical_lines_are_refused_and_named)
{
    watchdog_arm(120);
    snapshot before = snap();
    const size_t n = scaled(1000000);
    size_t len;
    char *text = repeating_file(n, 1, &len);
    ph_import_req req = {.supplier = "acme",
                         .sku = IQ,
                         .csv = text,
                         .csv_len = len,
                         .max_codes = n,
                         .max_errors = 1000,
                         .now = NOW};
    ph_import_result r;
    ph_err err = {0};
    int rc = ph_import_run(g_s, g_kr, &req, &r, &err);
    free(text);
    cr_assert_eq(rc, PH_EINVAL, "%s", err.msg);
    cr_assert_eq(r.error_count, n - 1);
    cr_assert_eq(r.nerrors, 1000);
    for (size_t i = 0; i < r.nerrors; i++) {
        cr_assert_eq(r.errors[i].line, i + 3, "error %zu: line %u", i, r.errors[i].line);
        cr_assert_str_eq(r.errors[i].reason, "duplicate of line 2", "line %u", r.errors[i].line);
    }
    ph_import_result_clear(&r);
    assert_unchanged(before);

    /* and as many repeats of two codes in turn, each named against its own first line */
    text = repeating_file(n, 2, &len);
    req.csv = text;
    req.csv_len = len;
    rc = ph_import_run(g_s, g_kr, &req, &r, &err);
    free(text);
    cr_assert_eq(rc, PH_EINVAL, "%s", err.msg);
    cr_assert_eq(r.error_count, n - 2);
    for (size_t i = 0; i < r.nerrors; i++) {
        cr_assert_eq(r.errors[i].line, i + 4, "error %zu: line %u", i, r.errors[i].line);
        cr_assert_str_eq(r.errors[i].reason, i % 2 ? "duplicate of line 3" : "duplicate of line 2",
                         "line %u", r.errors[i].line);
    }
    ph_import_result_clear(&r);
    assert_unchanged(before);
    watchdog_disarm();
}

Test(import, codes_already_in_stock_are_bad_lines_and_nothing_is_stored)
{
    ph_import_result r;
    ph_err err = {0};
    cr_assert_eq(run("code\nCODE-1\nCODE-2\n", &r, &err), PH_OK, "%s", err.msg);
    ph_import_result_clear(&r);
    snapshot before = snap();

    /* a file otherwise clean: the writer finds the stored code */
    int rc = run("code\nCODE-9\nCODE-2\nCODE-8\n", &r, &err);
    cr_assert_eq(rc, PH_EINVAL);
    cr_assert_str_eq(err.msg, "1 bad line, nothing imported");
    static const uint32_t lines1[] = {3};
    static const char *const reasons1[] = {"code already imported"};
    expect_errors(&r, 1, lines1, reasons1);
    ph_import_result_clear(&r);
    assert_unchanged(before);

    /* a file refused anyway: the stored code is named beside the other bad lines */
    rc = run("code,card_no,expires_at\n"
             "CODE-1\n"                   /* line 2: stored before */
             ",8801\n"                    /* line 3: no code */
             "CODE-7,,2020-01-01\n"       /* line 4: expired */
             "CODE-6,,someday\n"          /* line 5: not a date */
             "CODE-5,8805,2027-01-31,x\n" /* line 6: too many fields */
             "CODE-9\n"                   /* line 7: fine */
             "CODE-9\n",                  /* line 8: repeat of 7 */
             &r, &err);
    cr_assert_eq(rc, PH_EINVAL);
    cr_assert_str_eq(err.msg, "6 bad lines, nothing imported");
    static const uint32_t lines2[] = {2, 3, 4, 5, 6, 8};
    static const char *const reasons2[] = {
        "code already imported",        "code: empty",
        "expires_at: already expired",  "expires_at: not a date (YYYY-MM-DD or RFC 3339)",
        "4 fields, expected at most 3", "duplicate of line 7"};
    expect_errors(&r, 6, lines2, reasons2);
    ph_import_result_clear(&r);
    assert_unchanged(before);
}

/* The file of repeating_file(n, n) with its first code once more in front:
 * line 2 holds CODE-0, line 3 CODE-0 again, line i + 3 CODE-<i> (0 < i < n).
 * Caller frees. */
static char *file_with_a_repeat_in_front(size_t n, size_t *len)
{
    size_t body_len;
    char *body = repeating_file(n, n, &body_len);
    char *text = malloc(body_len + 8);
    cr_assert_not_null(text);
    memcpy(text, "code\nCODE-0\n", 12);
    memcpy(text + 12, body + 5, body_len - 5);
    *len = 12 + body_len - 5;
    free(body);
    return text;
}

/* The follow-up of issue 10 (4): a refused file of codes all stored before
 * looked each one up in a read transaction of its own, with its batch and
 * order (for a million codes some 5 s of the CPU of the HTTP worker that runs
 * it, 0.3 s now: one snapshot, the index only), and listed them in hash order,
 * so that a capped list showed random lines instead of the first ones. The
 * bound is some 25 times what the test uses in the normal build (2.5 s). */
Test(import, codes_imported_again_are_refused_line_by_line_in_file_order)
{
    watchdog_arm(60);
    const size_t n = scaled(200000);
    size_t len;
    char *text = repeating_file(n, n, &len);
    ph_import_req req = {.supplier = "acme",
                         .sku = IQ,
                         .csv = text,
                         .csv_len = len,
                         .max_codes = n + 1,
                         .max_errors = 1000,
                         .now = NOW};
    ph_import_result r;
    ph_err err = {0};
    cr_assert_eq(ph_import_run(g_s, g_kr, &req, &r, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(r.count, n);
    ph_import_result_clear(&r);
    snapshot before = snap();

    /* the same file again: clean but for the stored codes, which the writer names */
    int rc = ph_import_run(g_s, g_kr, &req, &r, &err);
    free(text);
    cr_assert_eq(rc, PH_EINVAL, "%s", err.msg);
    cr_assert_eq(r.error_count, n);
    cr_assert_eq(r.nerrors, 1000);
    for (size_t i = 0; i < r.nerrors; i++) {
        cr_assert_eq(r.errors[i].line, i + 2, "error %zu: line %u", i, r.errors[i].line);
        cr_assert_str_eq(r.errors[i].reason, "code already imported", "line %u", r.errors[i].line);
    }
    ph_import_result_clear(&r);
    assert_unchanged(before);

    /* with a repeat in front it is refused anyway: the import itself names the
     * stored codes, one reason per line */
    text = file_with_a_repeat_in_front(n, &len);
    req.csv = text;
    req.csv_len = len;
    rc = ph_import_run(g_s, g_kr, &req, &r, &err);
    free(text);
    cr_assert_eq(rc, PH_EINVAL, "%s", err.msg);
    cr_assert_eq(r.error_count, n + 1);
    cr_assert_eq(r.nerrors, 1000);
    for (size_t i = 0; i < r.nerrors; i++) {
        cr_assert_eq(r.errors[i].line, i + 2, "error %zu: line %u", i, r.errors[i].line);
        cr_assert_str_eq(r.errors[i].reason,
                         i == 1 ? "duplicate of line 2" : "code already imported", "line %u",
                         r.errors[i].line);
    }
    ph_import_result_clear(&r);
    assert_unchanged(before);
    watchdog_disarm();
}

Test(import, errors_are_listed_up_to_max_errors_and_all_counted)
{
    snapshot before = snap();
    ph_import_result r;
    ph_err err = {0};
    int rc = run_sku(IQ, "code,card_no\n,1\n,2\n,3\n,4\nCODE-1\n", 1000, 2, &r, &err);
    cr_assert_eq(rc, PH_EINVAL);
    cr_assert_eq(r.error_count, 4);
    static const uint32_t lines[] = {2, 3};
    static const char *const reasons[] = {"code: empty", "code: empty"};
    expect_errors(&r, 2, lines, reasons);
    cr_assert_str_eq(err.msg, "4 bad lines, nothing imported");
    ph_import_result_clear(&r);
    assert_unchanged(before);
}

/* The parser's bad lines used to take the capped list's places first, and the
 * checks of the rows got only what was left: a file with bad fields far down
 * listed those instead of its first bad lines. */
Test(import, a_capped_list_shows_the_first_bad_lines_whatever_their_reason)
{
    ph_import_result r;
    ph_err err = {0};
    cr_assert_eq(run("code\nCODE-1\nCODE-2\n", &r, &err), PH_OK, "%s", err.msg);
    ph_import_result_clear(&r);
    snapshot before = snap();
    static const char file[] = "code,card_no\n"
                               "CODE-1\n"      /* line 2: stored before */
                               "CODE-2\n"      /* line 3: stored before */
                               "CODE-3\n"      /* line 4: fine */
                               "CODE-4,1,x\n"  /* line 5: too many fields */
                               "---\n"         /* line 6: only dashes */
                               "CODE-3\n"      /* line 7: repeat of 4 */
                               "CODE-5,2,y\n"; /* line 8: too many fields */
    static const uint32_t lines[] = {2, 3, 5, 6, 7, 8};
    static const char *const reasons[] = {
        "code already imported",        "code already imported",
        "3 fields, expected at most 2", "code: nothing left once dashes are removed",
        "duplicate of line 4",          "3 fields, expected at most 2"};
    for (size_t cap = 1; cap <= 7; cap++) {
        cr_assert_eq(run_sku(IQ, file, 1000, cap, &r, &err), PH_EINVAL);
        cr_assert_str_eq(err.msg, "6 bad lines, nothing imported");
        cr_assert_eq(r.error_count, 6);
        expect_errors(&r, cap < 6 ? cap : 6, lines, reasons);
        ph_import_result_clear(&r);
    }
    assert_unchanged(before);
}

Test(import, limits_empty_files_and_unknown_products_store_nothing)
{
    snapshot before = snap();
    ph_import_result r;
    ph_err err = {0};
    cr_assert_eq(run_sku(IQ, "code\nCODE-1\nCODE-2\nCODE-3\n", 2, 100, &r, &err), PH_ELIMIT);
    cr_assert(strstr(err.msg, "at most 2 codes"), "%s", err.msg);
    ph_import_result_clear(&r);
    cr_assert_eq(run("code\n", &r, &err), PH_EINVAL);
    cr_assert_str_eq(err.msg, "file: no codes in it");
    ph_import_result_clear(&r);
    cr_assert_eq(run("", &r, &err), PH_EINVAL);
    ph_import_result_clear(&r);
    cr_assert_eq(run_sku("no.such.sku", "code\nCODE-1\n", 1000, 100, &r, &err), PH_ESKU);
    cr_assert(strstr(err.msg, "sku"), "%s", err.msg);
    ph_import_result_clear(&r);
    cr_assert_eq(run("code,extra\nCODE-1,x\n", &r, &err), PH_EINVAL, "an unknown column");
    ph_import_result_clear(&r);
    assert_unchanged(before);
}
