/*
 * criterion.h — the part of Criterion's API our unit tests use, for the
 * ThreadSanitizer tree only.
 *
 * Criterion cannot start in a process that has the TSan runtime: its BoxFort
 * arena is mapped where TSan keeps its shadow memory, and the runner aborts
 * ("Could not initialize inheritable arena", Criterion issue #274). So the TSan
 * tree compiles the same test sources against this header instead (it comes
 * first on their include path): Test and TestSuite register functions, the
 * runner (runner.c) forks one child per test like Criterion does, so a test
 * that crashes, aborts, or has TSan report a race (exit code 66 under
 * halt_on_error) fails alone, and `.signal` death tests work.
 *
 * Supported: Test(suite, name, .init, .fini, .signal, .timeout (ignored: ctest
 * times the whole program)), TestSuite(suite, .init, .fini), cr_assert*,
 * cr_expect* for the comparisons below, each with an optional printf-style
 * message. Anything else fails to compile here, on purpose: add it to this
 * header rather than to a test.
 */
#ifndef PH_TSAN_CRITERION_SHIM_H
#define PH_TSAN_CRITERION_SHIM_H

#include <stddef.h>
#include <string.h>

struct pht_test {
    const char *suite, *name;
    void (*fn)(void);
    void (*init)(void);
    void (*fini)(void);
    int signal;  /* the signal the test must die of; 0 = must pass */
    int timeout; /* ignored */
    int disabled;
    struct pht_test *next;
};

struct pht_suite {
    const char *name;
    void (*init)(void);
    void (*fini)(void);
    int timeout;
    struct pht_suite *next;
};

void pht_register(struct pht_test *t);
void pht_register_suite(struct pht_suite *s);
/* A failed check: prints file:line and the message; a fatal one ends the test. */
void pht_fail(const char *file, int line, int fatal, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#define PHT_NAME(s, n, x) pht_##s##_##n##x

#define Test(S_, N_, ...)                                                                          \
    static void PHT_NAME(S_, N_, _fn)(void);                                                       \
    static struct pht_test PHT_NAME(S_, N_, _t) = {                                                \
        .suite = #S_, .name = #N_, .fn = PHT_NAME(S_, N_, _fn), __VA_ARGS__};                      \
    __attribute__((constructor)) static void PHT_NAME(S_, N_, _reg)(void)                          \
    {                                                                                              \
        pht_register(&PHT_NAME(S_, N_, _t));                                                       \
    }                                                                                              \
    static void PHT_NAME(S_, N_, _fn)(void)

#define TestSuite(S_, ...)                                                                         \
    static struct pht_suite pht_suite_##S_ = {.name = #S_, __VA_ARGS__};                           \
    __attribute__((constructor)) static void pht_suite_reg_##S_(void)                              \
    {                                                                                              \
        pht_register_suite(&pht_suite_##S_);                                                       \
    }

/* The message is optional: " " keeps the format a non-empty literal either way. */
#define PHT_CHECK(fatal, cond, expr, ...)                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            pht_fail(__FILE__, __LINE__, fatal, expr, " " __VA_ARGS__);                            \
    } while (0)

#define cr_assert(c, ...)        PHT_CHECK(1, (c), #c, __VA_ARGS__)
#define cr_expect(c, ...)        PHT_CHECK(0, (c), #c, __VA_ARGS__)
#define cr_assert_not(c, ...)    PHT_CHECK(1, !(c), "!(" #c ")", __VA_ARGS__)
#define cr_expect_not(c, ...)    PHT_CHECK(0, !(c), "!(" #c ")", __VA_ARGS__)
#define cr_assert_eq(a, b, ...)  PHT_CHECK(1, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_expect_eq(a, b, ...)  PHT_CHECK(0, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) PHT_CHECK(1, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...) PHT_CHECK(0, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...)  PHT_CHECK(1, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) PHT_CHECK(1, (a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...)  PHT_CHECK(1, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...)  PHT_CHECK(0, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) PHT_CHECK(1, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_expect_lt(a, b, ...)  PHT_CHECK(0, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_expect_leq(a, b, ...) PHT_CHECK(0, (a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...) PHT_CHECK(0, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_assert_arr_eq(a, b, n, ...)                                                             \
    PHT_CHECK(1, !memcmp((a), (b), (n)), #a " eq " #b, __VA_ARGS__)
#define cr_expect_arr_eq(a, b, n, ...)                                                             \
    PHT_CHECK(0, !memcmp((a), (b), (n)), #a " eq " #b, __VA_ARGS__)
#define cr_assert_null(p, ...)       PHT_CHECK(1, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_expect_null(p, ...)       PHT_CHECK(0, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...)   PHT_CHECK(1, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_expect_not_null(p, ...)   PHT_CHECK(0, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...)  PHT_CHECK(1, !strcmp((a), (b)), #a " eq " #b, __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...)  PHT_CHECK(0, !strcmp((a), (b)), #a " eq " #b, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) PHT_CHECK(1, strcmp((a), (b)), #a " ne " #b, __VA_ARGS__)
#define cr_expect_str_neq(a, b, ...) PHT_CHECK(0, strcmp((a), (b)), #a " ne " #b, __VA_ARGS__)
#define cr_assert_fail(...)          PHT_CHECK(1, 0, "cr_assert_fail", __VA_ARGS__)

#endif
