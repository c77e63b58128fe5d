/*
 * test_lockcheck.c — the lock and owner asserts of core/base/lockcheck.h: they
 * pass for the holder and the owner, and stop anyone else. The helpers are
 * header-only and on wherever asserts are; this file turns asserts on for
 * itself so every tree tests them.
 */
#undef NDEBUG
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>

#include "base/lockcheck.h"

static ph_mutex m;
static ph_owner owner;

static void *touch_unlocked(void *arg)
{
    (void)arg;
    PH_ASSERT_HELD(&m); /* held, but by the test's thread */
    return NULL;
}

static void *touch_owned(void *arg)
{
    (void)arg;
    PH_ASSERT_OWNER(&owner);
    return NULL;
}

Test(lockcheck, holder_and_owner_pass)
{
    ph_mutex_init(&m);
    ph_mutex_lock(&m);
    PH_ASSERT_HELD(&m);
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    struct timespec ts = {0, 0}; /* already past: returns at once */
    ph_mutex_wait(&m, &cv, &ts);
    PH_ASSERT_HELD(&m); /* held again after the wait */
    ph_mutex_unlock(&m);
    ph_mutex_destroy(&m);
    ph_owner_set(&owner);
    PH_ASSERT_OWNER(&owner);
}

Test(lockcheck, unheld_mutex_stops, .signal = SIGABRT)
{
    ph_mutex_init(&m);
    PH_ASSERT_HELD(&m);
}

Test(lockcheck, mutex_held_by_another_thread_stops, .signal = SIGABRT)
{
    ph_mutex_init(&m);
    ph_mutex_lock(&m);
    pthread_t t;
    pthread_create(&t, NULL, touch_unlocked, NULL);
    pthread_join(t, NULL);
}

Test(lockcheck, state_touched_by_another_thread_stops, .signal = SIGABRT)
{
    ph_owner_set(&owner);
    pthread_t t;
    pthread_create(&t, NULL, touch_owned, NULL);
    pthread_join(t, NULL);
}
