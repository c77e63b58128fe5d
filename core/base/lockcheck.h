/*
 * lockcheck.h — who holds a mutex, who owns a piece of state: asserted, not
 * written in comments.
 *
 * A ph_mutex is a pthread mutex that remembers the thread holding it, so a
 * function whose contract is "mu held" says PH_ASSERT_HELD(&mu) and a caller
 * that forgot the lock stops at the assert instead of racing. A ph_owner names
 * the one thread allowed to touch a piece of state (fulfil's tracks: its own
 * thread); PH_ASSERT_OWNER checks the caller is that thread.
 *
 * The bookkeeping is on when asserts are (builds without NDEBUG: Debug, the
 * ASan tree, the TSan tree); otherwise the macros compile to nothing and a
 * ph_mutex is a bare pthread mutex. The owner field is a
 * relaxed atomic: only the holder writes it while holding the lock, and the
 * asserting thread only compares it with its own id, so a stale value can
 * never equal the reader's id unless it really holds the lock.
 *
 * Threads: every call may be made from any thread; the rules are the
 * mutex's.
 */
#ifndef PH_LOCKCHECK_H
#define PH_LOCKCHECK_H

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#if !defined(NDEBUG)
#define PH_LOCKCHECK_ON 1
#else
#define PH_LOCKCHECK_ON 0
#endif

typedef struct ph_mutex {
    pthread_mutex_t mu;
#if PH_LOCKCHECK_ON
    atomic_uintptr_t holder; /* (uintptr_t)pthread_self() of the holder, 0 when free */
#endif
} ph_mutex;

/* The thread a piece of state belongs to (set once that thread runs). */
typedef struct ph_owner {
#if PH_LOCKCHECK_ON
    atomic_uintptr_t id;
#else
    char unused;
#endif
} ph_owner;

static inline uintptr_t ph_thread_tag(void)
{
    return (uintptr_t)pthread_self();
}

static inline void ph_mutex_init(ph_mutex *m)
{
    pthread_mutex_init(&m->mu, NULL);
#if PH_LOCKCHECK_ON
    atomic_init(&m->holder, 0);
#endif
}

static inline void ph_mutex_destroy(ph_mutex *m)
{
    pthread_mutex_destroy(&m->mu);
}

static inline void ph_mutex_lock(ph_mutex *m)
{
    pthread_mutex_lock(&m->mu);
#if PH_LOCKCHECK_ON
    atomic_store_explicit(&m->holder, ph_thread_tag(), memory_order_relaxed);
#endif
}

static inline void ph_mutex_unlock(ph_mutex *m)
{
#if PH_LOCKCHECK_ON
    assert(atomic_load_explicit(&m->holder, memory_order_relaxed) == ph_thread_tag());
    atomic_store_explicit(&m->holder, 0, memory_order_relaxed);
#endif
    pthread_mutex_unlock(&m->mu);
}

/* pthread_cond_(timed)wait on a ph_mutex: the lock is given up while waiting,
 * so is the record of holding it. abstime NULL waits without a deadline. */
static inline int ph_mutex_wait(ph_mutex *m, pthread_cond_t *cv, const struct timespec *abstime)
{
#if PH_LOCKCHECK_ON
    atomic_store_explicit(&m->holder, 0, memory_order_relaxed);
#endif
    int rc = abstime ? pthread_cond_timedwait(cv, &m->mu, abstime) : pthread_cond_wait(cv, &m->mu);
#if PH_LOCKCHECK_ON
    atomic_store_explicit(&m->holder, ph_thread_tag(), memory_order_relaxed);
#endif
    return rc;
}

static inline void ph_owner_set(ph_owner *o)
{
#if PH_LOCKCHECK_ON
    atomic_store_explicit(&o->id, ph_thread_tag(), memory_order_relaxed);
#else
    (void)o;
#endif
}

#if PH_LOCKCHECK_ON
#define PH_ASSERT_HELD(m)                                                                          \
    assert(atomic_load_explicit(&(m)->holder, memory_order_relaxed) == ph_thread_tag() &&          \
           "mutex not held by this thread")
#define PH_ASSERT_OWNER(o)                                                                         \
    assert(atomic_load_explicit(&(o)->id, memory_order_relaxed) == ph_thread_tag() &&              \
           "state touched outside its owning thread")
#else
#define PH_ASSERT_HELD(m)  ((void)0)
#define PH_ASSERT_OWNER(o) ((void)0)
#endif

#endif
