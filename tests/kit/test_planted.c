/*
 * test_planted.c — the conformance suite's own proof: linked with one
 * planted-bug plugin (planted_hex.c, planted_map.c, planted_sloppy.c), the suite the example
 * adapter passes (plugins/example/example_suite.h, same fixtures) must FAIL,
 * and its report must name the check that caught the bug (planted_expect).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include <perkhub/testkit.h>

#include "example_suite.h"

extern const char *const planted_expect[];

Test(planted, the_suite_fails_and_names_the_bug)
{
    struct phtk_suite s = example_suite;
    s.desc = perkhub_plugin_entry();
    static char report[16384];
    int failed = phtk_suite_run(&s, report, sizeof report);
    fprintf(stderr, "the suite's report on the planted bug (%d failed):\n%s", failed, report);
    cr_assert_gt(failed, 0, "the suite passed a plugin with a planted bug");
    for (size_t i = 0; planted_expect[i]; i++)
        cr_assert(strstr(report, planted_expect[i]), "the report does not say \"%s\":\n%s",
                  planted_expect[i], report);
}
