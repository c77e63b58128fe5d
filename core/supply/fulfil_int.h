/*
 * fulfil_int.h — what fulfil.c and fulfil_decide.c share and nobody else sees:
 * the track, its command, the event queue's nodes, the fulfil struct, and the
 * functions one file calls in the other. Not for outside supply/.
 */
#ifndef PH_FULFIL_INT_H
#define PH_FULFIL_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "base/lockcheck.h"
#include "supply/attempt.h"
#include "supply/fulfil.h"
#include "supply/late_defer.h"

#define ACCOUNT_AAD "perkhub/account/v1"
#define NBUCKETS    4096

enum { T_IDLE = 1, T_JOB, T_CMD };

/* What other threads tell fulfil's thread (the queue). A node is embedded in
 * what it carries, so posting never allocates, except a confirm's. */
enum { EV_BEGIN = 1, EV_RESUME, EV_JOB_DONE, EV_CMD_DONE, EV_WAIT, EV_CONFIRM, EV_FORGET };
typedef struct fev {
    int kind;
    struct fev *next;
} fev;

#define EV_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

typedef struct track track;
struct track {
    ph_fulfil *f;
    uint64_t order_id;
    uint32_t no;
    int card;      /* 1 card codes, 0 recharge */
    int replenish; /* a replenishment's order (ph_order_is_replenish): never fails over */
    int state;     /* PH_ATTEMPT_* as last stored */
    int phase;
    int send_order;  /* 1 until the order request itself has been sent */
    int follow_step; /* 1: the next exchange is the plugin's follow-up step */
    int confirm;     /* a verified callback asked for a query as soon as possible,
                        not started yet (ful_track_run starts it) */
    unsigned asked;  /* claims (1 << PERKHUB_STATE_*) a confirming query was asked
                        for: a callback repeating one asks for nothing */
    uint64_t gen;    /* heap entries with another gen are stale */
    ph_supplier *sup;
    ph_sio_limits limits;
    int64_t window_ms, query_delay_ms, query_max_ms;
    int64_t stuck_after_ms, stuck_max_ms; /* the supplier's stuck_after_s and its ceiling */
    int64_t stuck_at;                     /* as last stored: 0 until escalated */
    char supplier[PH_SKU_MAX + 1];
    char sku[PH_SKU_MAX + 1];
    char product_id[PH_SUPPLIER_ORDER_MAX + 1];
    char ref[PH_REF_MAX + 1];
    char supplier_order_id[PH_SUPPLIER_ORDER_MAX + 1];
    char step_state[PH_REASON_MAX + 1];
    char *account; /* plaintext recharge account; wiped */
    uint32_t quantity, step, checks;
    int64_t unit_cost, face_value, created_at;
    int64_t tolerance;     /* fen: the supplier's amount_tolerance */
    int64_t late_check_ms; /* the supplier's late_check_s in ms; 0 = never */
    int late;              /* a late re-query of a final attempt (not in the registry) */
    int64_t late_due;      /* late: the schedule entry it answers */
    char *tried;           /* suppliers of the current claim's stored attempts (all of an order
                              that is not a grant given back), each NUL-ended (ful_tried_refresh) */
    size_t ntried, tried_len;
    char *callback_url; /* for the exchange's op; rebuilt when the base changes */
    ph_sio_job job;
    struct track_cmd *cmd; /* T_CMD only */
    track *hnext;          /* registry chain */
    int64_t resume_due;    /* EV_RESUME: when to query */
    fev ev;                /* EV_BEGIN, EV_RESUME, then EV_JOB_DONE: one at a time */
};

/* A track's store command and what only the command reads (T_CMD). */
typedef struct track_cmd {
    ph_cmd cmd; /* first: ful_on_cmd_done gets the track_cmd back */
    track *t;
    char reason[PH_REASON_MAX + 1];
    char next_supplier[PH_SKU_MAX + 1]; /* a fail-over target */
    char next_product[PH_SUPPLIER_ORDER_MAX + 1];
    ph_supplied_code *codes; /* sealed codes the command stores */
    uint8_t *blobs;
    fev ev; /* EV_CMD_DONE */
} track_cmd;

#define TRIED_MAX 8 /* suppliers a track remembers (fail-over skips them) */

/* A due time for attempt (order_id, no). It names the attempt rather than
 * pointing at its track: a track can end (and be freed) while an older entry
 * for it still waits in the heap, e.g. after a callback asked for an early
 * query. Entries whose gen is not the track's current one are stale. */
typedef struct heap_ent {
    int64_t due;
    uint64_t gen;
    uint64_t order_id;
    uint32_t no;
} heap_ent;

typedef struct waiter {
    uint64_t id;
    int64_t deadline;
    void (*cb)(void *);
    void *arg;
    struct waiter *next;
    fev ev; /* EV_WAIT */
} waiter;

typedef struct forget_ev {
    fev ev; /* EV_FORGET */
    uint64_t id;
} forget_ev;

typedef struct confirm_ev {
    fev ev; /* EV_CONFIRM */
    uint64_t id;
    uint32_t no;
    int claim; /* PERKHUB_STATE_* the callback claimed */
} confirm_ev;

struct ph_fulfil {
    ph_fulfil_opts o;
    pthread_t thread;

    /* shared, under mu (a leaf: nothing is called with it held) */
    ph_mutex mu;
    pthread_cond_t cv;      /* fulfil's thread sleeps on it: an event, stop, exit */
    pthread_cond_t idle_cv; /* ph_fulfil_flush and ph_fulfil_stop wait on it */
    fev *qhead, *qtail;
    uint64_t posted, handled; /* events queued / handled so far (flush) */
    int stopping;             /* ph_fulfil_stop: no new exchanges */
    int stop_seen;            /* the thread has seen stopping: it calls the I/O engine no more */
    int exiting;              /* ph_fulfil_destroy: drain the queue and end */
    char callback_base[256];

    /* fulfil's thread only (owner) */
    ph_owner owner;
    track *buckets[NBUCKETS];
    heap_ent *heap;
    size_t nheap, capheap;
    waiter *waiters;
    atomic_size_t active; /* written by the owner, read by anyone (stats) */
    /* the late re-query (issue 11): the schedule is the store's (`late`);
     * fulfil only remembers when to look at it next, and which entries it
     * could not finish wait out a backoff (late_defer.h) */
    int64_t late_next;      /* ms; 0 = at once */
    size_t late_inflight;   /* late tracks whose query or command is running */
    int late_retry;         /* one that failed could not be deferred: look again later */
    ph_late_defer late_bad; /* entries that could not be finished, waiting out a backoff */
};

/* fulfil_decide.c (fulfil's thread, but where said) */
/* I/O thread: the exchange is over; everything else happens on fulfil's. */
void ful_on_job_done(ph_sio_job *job);
/* An exchange ended: decide (attempt.h) and record the move in the store. */
void ful_job_done(ph_fulfil *f, track *t, int stopping);
/* The track's command, zeroed; NULL when out of memory. */
track_cmd *ful_cmd_new(track *t);
void ful_fill_cmd(track_cmd *b, const ph_attempt_move *m, const struct perkhub_result *res);
/* Writer thread: the command is durable (or refused); fulfil's thread goes on. */
void ful_on_cmd_done(ph_cmd *cmd);
/* A track's command completed: the track follows the stored order (final,
 * fail-over, next check). When stopping, nothing new goes to the store or the
 * I/O engine: the store may be closing. */
void ful_cmd_done(ph_fulfil *f, track_cmd *b, int stopping);

/* A late track's query ended (fulfil_decide.c): its word goes to the store. */
void ful_late_job_done(ph_fulfil *f, track *t, int stopping);
/* A late track is over (its command completed, or it got no answer). */
void ful_late_end(ph_fulfil *f, track *t, int retry);

/* fulfil.c: the queue, registry, heap, waiters and tracks (fulfil's thread, but post) */
/* Hands an event to fulfil's thread. Never fails: the node is the caller's. */
void ful_post(ph_fulfil *f, fev *e, int kind);
void ful_reg_del(ph_fulfil *f, track *t);
int ful_heap_push(ph_fulfil *f, track *t, int64_t due);
/* Detaches the waiters of order id (every one when id is 0), or with now > 0
 * those whose deadline passed, into a list the caller fires. */
waiter *ful_waiters_take(ph_fulfil *f, uint64_t id, int64_t now);
void ful_waiters_fire(waiter *w);
void ful_cmd_free(track_cmd *b);
void ful_track_free(track *t);
/* The suppliers order o went to, as the stored order lists them (its
 * attempts, up to TRIED_MAX; beyond, fail-over stops): the track's copy is a
 * cache of the store, refreshed from the order every durable command returns,
 * never kept apart from it. A grant's order given back counts only the
 * attempts of its current claim (after the last return's attempt, read from
 * the grant record): a claim again fails over afresh. */
void ful_tried_refresh(track *t, const ph_order *o);
/* The supplier settings of the current config (defaults if it is gone). */
void ful_track_limits(ph_fulfil *f, track *t);
/* The attempt as attempt.h's decisions see it; is_order from the track. */
ph_attempt_ctx ful_track_ctx(const track *t);
/* Starts the track's next exchange. Fulfil's thread. */
void ful_track_run(ph_fulfil *f, track *t);
/* The best usable offer of p for its kind of delivery (route.h), as a target
 * whose strings point into cfg. */
int ful_pick_target(ph_fulfil *f, const ph_config *cfg, const ph_product_conf *p,
                    const char *const *tried, size_t ntried, ph_attempt_target *out);

#endif
