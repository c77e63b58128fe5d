/*
 * race.c — the TSan tree's proof that its unit-test runner (tests/tsan) fails
 * on a data race: two threads increment one plain int. Registered with
 * WILL_FAIL, so this "test" passes only when the runner reports the race as a
 * failure (TSan's halt_on_error exit in the child).
 */
#include <criterion/criterion.h>
#include <pthread.h>

static int shared;

static void *bump(void *arg)
{
    for (int i = 0; i < 1000; i++)
        shared++;
    return arg;
}

Test(selftest, a_data_race_fails_the_test)
{
    pthread_t a, b;
    pthread_create(&a, NULL, bump, NULL);
    pthread_create(&b, NULL, bump, NULL);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    cr_assert_gt(shared, 0);
}
