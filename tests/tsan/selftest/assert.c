/*
 * assert.c — the TSan tree's proof that its unit-test runner fails a test whose
 * assertion fails, and one whose expectation fails (registered WILL_FAIL: a
 * runner that ignored either would make this "test" fail).
 */
#include <criterion/criterion.h>

Test(selftest, a_failed_assertion_fails_the_test)
{
    cr_assert_eq(1, 2, "one is not two");
}

Test(selftest, a_failed_expectation_fails_the_test)
{
    cr_expect_str_eq("a", "b");
}
