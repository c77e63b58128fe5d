/*
 * sio_int.h — what the files of the I/O engine share and nobody else sees:
 * its limits, the per-supplier record, the exchange, the engine struct, and
 * the functions one file calls in another (supplier_io.c, the loop and the
 * API; supplier_io_exchange.c; supplier_io_breaker.c). Not for outside supply/.
 */
#ifndef PH_SIO_INT_H
#define PH_SIO_INT_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "base/lockcheck.h"
#include "supply/supplier_io.h"

#define SIO_DEF_MAX_IN_FLIGHT 64u
#define SIO_DEF_CONNECT_MS    3000u
#define SIO_DEF_TIMEOUT_MS    10000u
#define SIO_DEF_BREAKER_FAILS 5u
#define SIO_DEF_BREAKER_MS    10000u
#define SIO_MAX_REPLY         (8u << 20) /* bigger replies are AMBIGUOUS, never parsed */
#define SIO_MAX_HEADER_LINES  100        /* further reply headers are dropped */
#define SIO_MAX_HEADER_BYTES  (64u << 10)
#define SIO_MAX_WAIT_MS       1000 /* wake at least this often (a safety net) */
#define SIO_EVENTS            512  /* epoll events taken per wait */
/* curl's receive buffer per easy handle (default 16 KB), allocated from the
 * heap once the transfer starts, so resident for every exchange on the wire
 * (heaptrack: 4 KB of the ~21 KB each at 4096). Replies are small JSON; a
 * larger one just takes more reads. 1024 is curl's minimum. */
#define SIO_RECV_BUFFER 1024L
#define SIO_POOL_MAX    4096u /* idle exchanges kept for reuse */
/* Multi handles the exchanges are spread over (the least busy takes the next
 * one). libcurl 7.88 walks every connection of its multi handle's cache twice
 * per transfer (looking for an idle connection to reuse, and again in
 * curl_multi_remove_handle), so one multi with N connections costs O(N) per
 * exchange; each shard has its own cache, which divides the walks by SIO_SHARDS. */
#define SIO_SHARDS 16
_Static_assert(SIO_SHARDS <= 256, "a shard index fits sio_sock.shard");
#define SIO_WAKE_TAG UINT64_MAX /* epoll data of the eventfd */
/* Done callbacks run together once a turn has handled its events, not each in
 * the middle of the turn's curl work: a submitter's thread (fulfil's) woken by
 * the first result then finds the turn's others queued with it, instead of
 * waking once per exchange (perf: ~1.3 wake-ups of fulfil's thread per
 * recharge, each a futex wake on this thread and a context switch on that
 * one). A turn with more finished exchanges runs them every SIO_DONE_BATCH, so
 * no result waits long for a long turn. */
#define SIO_DONE_BATCH 32u

enum { T_START = 1, T_LOCAL_REPLY, T_LOCAL_TIMEOUT };
enum { BR_CLOSED = 0, BR_OPEN, BR_HALF_OPEN };
/* How a finished job counts for the breaker (supplier_io.h, PH_SIO_CL_*). */
enum {
    CL_NEUTRAL = PH_SIO_CL_NEUTRAL,
    CL_BUSINESS = PH_SIO_CL_BUSINESS,
    CL_FAILURE = PH_SIO_CL_FAILURE,
    CL_AUTH = PH_SIO_CL_AUTH
};
#define SIO_DEF_AUTH_RETRY_MS     30000u
#define SIO_DEF_AUTH_RETRY_MAX_MS 600000u

/* One supplier id's record. Created at its first submission, freed with the
 * engine (so health survives a reload that re-creates the supplier). */
typedef struct sio_sup {
    struct sio_sup *next;
    char *id;
    /* latest limits seen at submission (defaults applied) */
    unsigned breaker_failures, breaker_open_ms, timeout_ms;
    unsigned auth_retry_ms, auth_retry_max_ms;
    /* breaker */
    int state;
    unsigned failures;
    int64_t opened_mono, opened_wall;
    int probe_out;
    int64_t probe_mono;
    /* credentials (supplier_io.h, "Credentials"): refused or not, why, since
     * when, and the half-open probe that may clear it */
    int auth_failed;
    char auth_why[PH_SIO_WHY_MAX];
    int64_t auth_since_wall;
    int64_t auth_retry_mono; /* a probe may go from then */
    unsigned auth_backoff_ms;
    int auth_probe_out;
    int64_t auth_probe_mono;
    /* health */
    unsigned in_flight, queued;
    uint64_t sent, ok, definite, retryable, ambiguous, not_sent;
    /* jobs waiting for room under max_in_flight, in submission order */
    ph_sio_job *wait_head, *wait_tail;
} sio_sup;

/* What one started exchange needs beyond the job, recycled through the free
 * list (I/O thread only): the easy handle (NULL until a curl exchange needs
 * one; reset while idle), the request header list curl reads (nodes point at
 * the plugin's strings: nothing copied), and the reply. */
typedef struct sio_ex {
    struct sio_ex *next_free;
    CURL *easy;
    struct curl_slist hdr[PERKHUB_MAX_HEADERS + 1];
    int too_large; /* the reply passed SIO_MAX_REPLY */
    char *body;    /* len bytes and a NUL */
    size_t len, cap;
    char *hbuf; /* nh "Name: value" lines, each ended by a NUL */
    size_t hlen, hcap, hbytes, nh;
} sio_ex;

/* One multi handle and what the loop keeps for it (I/O thread only). */
typedef struct sio_shard {
    struct ph_sio *io;
    CURLM *multi;
    unsigned index;   /* in io->shard, for the epoll data of its sockets */
    int64_t curl_due; /* monotonic ms of its curl timer; -1 none */
    unsigned running; /* easy handles added to it */
} sio_shard;

/* How one of curl's sockets stands in the epoll set (io->socks, indexed by
 * descriptor; I/O thread only). A socket curl opened through sio_open_socket
 * (a connection's) is "managed": its close comes through sio_close_socket, so
 * it may stay registered while its connection idles in curl's cache, and the
 * next transfer on it that waits for the same events costs no epoll_ctl
 * (curl reports CURL_POLL_REMOVE after every transfer and the socket again for
 * the next: a DEL and an ADD per exchange otherwise). Any other socket (a
 * resolver's) is added and deleted as curl says. */
typedef struct sio_sock {
    uint8_t managed; /* opened by sio_open_socket, not yet closed */
    uint8_t in_ep;   /* registered in io->ep */
    uint8_t watched; /* curl waits for its events (between IN/OUT and REMOVE) */
    uint8_t shard;   /* the shard whose multi handle it belongs to, as registered */
    uint32_t events; /* EPOLLIN/EPOLLOUT as registered */
} sio_sock;

/* The engine's private state of one job (job->priv_). */
typedef struct sio_x {
    sio_sup *ss;
    int admitted;  /* counted in ss->in_flight (else in ss->queued) */
    int timer;     /* T_* while in the heap */
    int on_wire;   /* in the active list: the easy handle is in the multi */
    int set_easy;  /* options of this job were set on the easy handle */
    int64_t start; /* monotonic ms when the exchange started; 0 before */
    struct perkhub_request req;
    struct perkhub_local_reply reply;
    sio_ex *ex;                /* from start to finish */
    sio_shard *sh;             /* while on_wire: the multi handle holding ex->easy */
    int prereqs;               /* times curl was about to send the request */
    struct sio_x *prev, *next; /* the active list (curl exchanges) */
    ph_sio_job *job;
} sio_x;

typedef struct timer_ent {
    int64_t due; /* monotonic ms */
    uint64_t seq;
    ph_sio_job *job;
} timer_ent;

typedef struct job_list {
    ph_sio_job *head, *tail;
} job_list;

struct ph_sio {
    const ph_logger *log;
    _Atomic(struct ph_metrics *) metrics; /* ph_sio_metrics_set; NULL = none */
    sio_shard shard[SIO_SHARDS];
    CURLSH *share; /* DNS and TLS sessions, shared by every shard */
    int ep;        /* epoll set: curl's sockets and wake */
    int wake;      /* eventfd: incoming jobs, stopping */
    pthread_t thread;
    ph_mutex mu;
    /* guarded by mu */
    int stopping;
    job_list incoming;
    sio_sup *sups;
    /* I/O thread only (and ph_sio_destroy after the join) */
    int draining;
    job_list ready;  /* due, not yet admitted */
    job_list launch; /* admitted (slot taken), not yet started */
    timer_ent *heap;
    size_t nheap, capheap;
    uint64_t seq;
    sio_x *active;
    job_list finished; /* finished, their done still to run (sio_run_done) */
    unsigned nfinished;
    sio_ex *pool; /* idle exchanges */
    unsigned npool;
    sio_sock *socks; /* by descriptor, grown on demand (sio_sock) */
    size_t nsocks;
};

/* supplier_io_exchange.c: starting and finishing exchanges (I/O thread) */
void sio_finish(ph_sio *io, ph_sio_job *job, int cls, int outcome, int sent, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* A complete reply (network or local): 5xx and nonsense statuses are the
 * core's AMBIGUOUS; anything else is the plugin's to classify. */
void sio_on_reply(ph_sio *io, ph_sio_job *job, long status);
void sio_on_local_timer(ph_sio *io, ph_sio_job *job, int kind);
void sio_ex_free(sio_ex *ex);
void sio_dispatch(ph_sio *io);
/* Runs the done callbacks of the finished jobs, in the order they finished. */
void sio_run_done(ph_sio *io);

/* supplier_io_breaker.c: per-supplier records (mu held) */
sio_sup *sio_sup_find(ph_sio *io, const char *id);
sio_sup *sio_sup_get(ph_sio *io, const char *id);
/* An open breaker half-opens once breaker_open_ms have passed. */
void sio_breaker_tick(ph_sio *io, sio_sup *ss, int64_t now);
/* Any business answer closes the breaker: the supplier demonstrably answers,
 * whether the job was the probe or an order query submitted while open. */
void sio_breaker_note(ph_sio *io, sio_sup *ss, int cls, int64_t now);
void sio_health_note(sio_sup *ss, const ph_sio_job *job);
/* The credential state after a finished job of a submitter that reports it
 * (job->track_auth): a refusal (CL_AUTH) marks the supplier, a business
 * answer to an order exchange clears it; sets job->auth_change on a transition. */
void sio_auth_note(ph_sio *io, sio_sup *ss, ph_sio_job *job, int cls, int64_t now);

/* supplier_io.c: curl's CURLOPT_OPENSOCKETFUNCTION and CLOSESOCKETFUNCTION,
 * their data the engine (sio_sock) */
curl_socket_t sio_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a);
int sio_close_socket(void *ud, curl_socket_t s);

/* supplier_io.c: small helpers and the timer heap */
const char *sio_breaker_name(int state);
int64_t sio_wall_ms(void);
int64_t sio_mono_ms(void);
unsigned sio_or_default(unsigned v, unsigned d);
void sio_list_push(job_list *l, ph_sio_job *job);
ph_sio_job *sio_list_pop(job_list *l);
int sio_timer_push(ph_sio *io, ph_sio_job *job, int kind, int64_t due);

#endif
