/*
 * runner.c — runs the tests registered through the TSan tree's criterion.h
 * shim: one forked child per test (the suite's and the test's init, the test,
 * their fini), so a crash, an abort or a race report (TSan's exit code under
 * halt_on_error) fails that test alone. Prints a Criterion-style synthesis
 * line and exits 1 when any test failed. Arguments are ignored (ctest passes
 * --jobs); the tests run one after the other.
 */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Filled by constructors before main, read by main only: single-threaded. */
static struct pht_test *tests;
static struct pht_suite *suites;
static int failed_checks; /* in the child: non-fatal checks that failed */

void pht_register(struct pht_test *t)
{
    t->next = tests;
    tests = t;
}

void pht_register_suite(struct pht_suite *s)
{
    s->next = suites;
    suites = s;
}

void pht_fail(const char *file, int line, int fatal, const char *expr, const char *fmt, ...)
{
    fprintf(stderr, "[----] %s:%d: %s failed: %s\n[----]  ", file, line,
            fatal ? "Assertion" : "Expectation", expr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    failed_checks++;
    if (fatal) {
        fflush(stderr);
        _exit(1); /* the child ends here; its fini is not run, as in Criterion */
    }
}

static struct pht_suite *suite_of(const char *name)
{
    for (struct pht_suite *s = suites; s; s = s->next)
        if (!strcmp(s->name, name))
            return s;
    return NULL;
}

static void run_child(const struct pht_test *t, const struct pht_suite *s)
{
    if (s && s->init)
        s->init();
    if (t->init)
        t->init();
    t->fn();
    if (t->fini)
        t->fini();
    if (s && s->fini)
        s->fini();
    fflush(NULL);
    _exit(failed_checks ? 1 : 0);
}

/* 1 when the child ended as the test wanted. */
static int run_one(const struct pht_test *t)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 0;
    }
    if (pid == 0)
        run_child(t, suite_of(t->suite));
    int st;
    while (waitpid(pid, &st, 0) < 0)
        ;
    if (t->signal)
        return WIFSIGNALED(st) && WTERMSIG(st) == t->signal;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

int main(int argc, char **argv)
{
    (void)argc, (void)argv;
    /* registration order is reversed by the list: run in source order */
    struct pht_test *rev = NULL;
    while (tests) {
        struct pht_test *t = tests;
        tests = t->next;
        t->next = rev;
        rev = t;
    }
    int n = 0, failed = 0;
    for (struct pht_test *t = rev; t; t = t->next) {
        if (t->disabled)
            continue;
        n++;
        int ok = run_one(t);
        failed += !ok;
        fprintf(stderr, "[%s] %s::%s\n", ok ? "PASS" : "FAIL", t->suite, t->name);
    }
    fprintf(stderr, "[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: 0 \n", n,
            n - failed, failed);
    if (n == 0)
        fprintf(stderr, "[----] no test registered: the shim's Test macro is broken\n");
    return failed || n == 0 ? 1 : 0;
}
