/*
 * redeem.c — asking a supplier whether a code was redeemed, within a bounded
 * wait (redeem.h). One ask: an exchange of the I/O engine raced against a
 * deadline on the module's timer thread; a "redeemed" answer becomes
 * PH_CMD_CODE_REDEEMED whenever it comes.
 *
 * An ask has up to three holders (exchange, deadline, command) and one
 * `answered` flag: whoever sets it first calls the asker back, and the last
 * holder to let go frees the ask (wiping the code). All of that happens under
 * the module's mutex, which is never held while anything outside runs.
 */
#include "supply/redeem.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/lockcheck.h"
#include "base/util.h"
#include "crypto/crypto.h"
#include "supply/plugin_ops.h"

typedef struct ask {
    ph_sio_job job;
    ph_redeem *rd;
    ph_cmd cmd;
    ph_redeem_done_fn done;
    void *arg;
    int64_t due;  /* monotonic ms */
    int holds;    /* exchange, deadline, command: freed at 0 (rd->mu) */
    int answered; /* done was (or is being) called (rd->mu) */
    int listed;   /* in the deadline list (rd->mu) */
    struct ask *prev, *next;
    unsigned wait_ms;
    uint8_t hash[32]; /* the command's inputs, kept from the question */
    int64_t now;
    char product_id[PH_SUPPLIER_ORDER_MAX + 1];
    char code[PH_CODE_MAX + 1];
    char card_no[PH_CODE_MAX + 1];
    char request_id[48];
} ask;

struct ph_redeem {
    ph_redeem_opts opts;
    ph_mutex mu;
    pthread_cond_t cv;
    pthread_t thread;
    int stopping;     /* mu */
    ask *head, *tail; /* the deadline list, by due (mu) */
    unsigned pending; /* asks not freed (mu) */
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the deadline list (rd->mu held) --------------------------------------- */

static void list_insert(ph_redeem *rd, ask *a)
{
    PH_ASSERT_HELD(&rd->mu);
    /* waits are mostly equal: the new deadline is nearly always the latest */
    ask *after = rd->tail;
    while (after && after->due > a->due)
        after = after->prev;
    a->prev = after;
    a->next = after ? after->next : rd->head;
    if (a->next)
        a->next->prev = a;
    else
        rd->tail = a;
    if (after)
        after->next = a;
    else
        rd->head = a;
    a->listed = 1;
}

static void list_remove(ph_redeem *rd, ask *a)
{
    PH_ASSERT_HELD(&rd->mu);
    if (!a->listed)
        return;
    if (a->prev)
        a->prev->next = a->next;
    else
        rd->head = a->next;
    if (a->next)
        a->next->prev = a->prev;
    else
        rd->tail = a->prev;
    a->prev = a->next = NULL;
    a->listed = 0;
}

/* ---- holders ------------------------------------------------------------------ */

static void ask_free(ask *a)
{
    ph_sio_job_clear(&a->job); /* with the plugin's allocator: before the release */
    ph_supplier_release(a->job.sup);
    ph_cmd_clear(&a->cmd);
    ph_wipe(a->code, sizeof a->code);
    ph_wipe(a->card_no, sizeof a->card_no);
    free(a);
}

/* Lets go of one hold; frees a when it was the last. */
static void ask_release(ask *a)
{
    ph_redeem *rd = a->rd;
    ph_mutex_lock(&rd->mu);
    assert(a->holds > 0);
    int last = --a->holds == 0;
    if (last) {
        assert(!a->listed && a->answered);
        rd->pending--;
        pthread_cond_broadcast(&rd->cv); /* destroy may wait for the count */
    }
    ph_mutex_unlock(&rd->mu);
    if (last)
        ask_free(a);
}

/* Calls the asker back unless someone did already; the caller holds a. */
static void ask_answer(ask *a, int redeemed, const char *why)
{
    ph_redeem *rd = a->rd;
    ph_mutex_lock(&rd->mu);
    int first = !a->answered;
    a->answered = 1;
    if (first && a->listed) { /* the deadline's hold goes with its entry */
        list_remove(rd, a);
        a->holds--;
        assert(a->holds > 0);
    }
    ph_mutex_unlock(&rd->mu);
    if (!first)
        return;
    ph_redeem_answer ans = {.redeemed = redeemed};
    snprintf(ans.why, sizeof ans.why, "%s", why);
    ph_log(rd->opts.log, PH_LOG_INFO, a->request_id[0] ? a->request_id : NULL, "redeem.answer",
           "supplier=%s redeemed=%d why=\"%s\"", ph_supplier_id(a->job.sup), redeemed, ans.why);
    a->done(a->arg, &ans);
}

/* ---- the command: a "redeemed" answer is stored whenever it comes ------------- */

static void cmd_done(ph_cmd *cmd)
{
    ask *a = cmd->arg;
    if (cmd->rc != PH_OK)
        ph_log(a->rd->opts.log, PH_LOG_WARN, a->request_id[0] ? a->request_id : NULL,
               "redeem.not_stored", "supplier=%s rc=%s detail=\"%s\"", ph_supplier_id(a->job.sup),
               ph_strerror(cmd->rc), cmd->err.msg);
    ask_answer(a, PH_REDEEM_YES, cmd->rc == PH_OK ? "redeemed" : "redeemed; the store refused");
    ask_release(a);
}

/* The exchange is over (I/O thread). */
static void io_done(ph_sio_job *job)
{
    ask *a = job->arg;
    char why[96];
    int r = PH_REDEEM_UNKNOWN;
    if (job->outcome == PERKHUB_OK && job->parsed) {
        r = job->res.redeemed == 1   ? PH_REDEEM_YES
            : job->res.redeemed == 0 ? PH_REDEEM_NO
                                     : PH_REDEEM_UNKNOWN;
        snprintf(why, sizeof why, "%s",
                 r == PH_REDEEM_YES  ? "redeemed"
                 : r == PH_REDEEM_NO ? "not redeemed"
                                     : "the supplier cannot tell");
    } else {
        /* job->detail never holds a secret (supplier_io.h) */
        snprintf(why, sizeof why, "%s: %.64s", ph_op_status_name(job->outcome),
                 job->detail[0] ? job->detail : "no answer");
    }
    if (r == PH_REDEEM_YES) {
        memset(&a->cmd, 0, sizeof a->cmd);
        a->cmd.type = PH_CMD_CODE_REDEEMED;
        a->cmd.now = a->now;
        a->cmd.done = cmd_done;
        a->cmd.arg = a;
        memcpy(a->cmd.in.redeem.hash, a->hash, sizeof a->hash);
        a->cmd.in.redeem.redeemed_at = job->res.redeemed_at_ms > 0 ? job->res.redeemed_at_ms : 0;
        ph_mutex_lock(&a->rd->mu);
        a->holds++; /* the command's */
        ph_mutex_unlock(&a->rd->mu);
        if (ph_store_submit(a->rd->opts.store, &a->cmd) != PH_OK) {
            ask_answer(a, PH_REDEEM_UNKNOWN, "redeemed, but the store is closing");
            ask_release(a); /* the command's hold: it will not complete */
        }
    } else {
        ask_answer(a, r, why);
    }
    ask_release(a); /* the exchange's */
}

/* ---- the deadline thread ----------------------------------------------------- */

static void *deadline_main(void *p)
{
    ph_redeem *rd = p;
    ph_mutex_lock(&rd->mu);
    for (;;) {
        int64_t now = mono_ms();
        ask *a = rd->head;
        if (a && (a->due <= now || rd->stopping)) {
            /* the entry's hold passes to this thread until the asker is told */
            list_remove(rd, a);
            int first = !a->answered;
            a->answered = 1;
            ph_mutex_unlock(&rd->mu);
            if (first) {
                char why[96];
                snprintf(why, sizeof why, "timeout after %u ms", a->wait_ms);
                ph_redeem_answer ans = {.redeemed = PH_REDEEM_UNKNOWN};
                snprintf(ans.why, sizeof ans.why, "%s", why);
                ph_log(rd->opts.log, PH_LOG_INFO, a->request_id[0] ? a->request_id : NULL,
                       "redeem.answer", "supplier=%s redeemed=-1 why=\"%s\"",
                       ph_supplier_id(a->job.sup), why);
                a->done(a->arg, &ans);
            }
            ask_release(a);
            ph_mutex_lock(&rd->mu);
            continue;
        }
        if (rd->stopping)
            break;
        if (!a) {
            ph_mutex_wait(&rd->mu, &rd->cv, NULL);
            continue;
        }
        int64_t due = a->due;
        struct timespec ts = {.tv_sec = (time_t)(due / 1000),
                              .tv_nsec = (long)(due % 1000) * 1000000};
        ph_mutex_wait(&rd->mu, &rd->cv, &ts);
    }
    ph_mutex_unlock(&rd->mu);
    return NULL;
}

int ph_redeem_create(const ph_redeem_opts *opts, ph_redeem **out, ph_err *err)
{
    if (!opts || !opts->sio || !opts->store || !opts->log)
        return ph_err_set(err, PH_EINVAL, "redeem: sio, store and log are required");
    ph_redeem *rd = calloc(1, sizeof *rd);
    if (!rd)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    rd->opts = *opts;
    ph_mutex_init(&rd->mu);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rd->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&rd->thread, NULL, deadline_main, rd) != 0) {
        pthread_cond_destroy(&rd->cv);
        ph_mutex_destroy(&rd->mu);
        free(rd);
        return ph_err_set(err, PH_EIO, "redeem: cannot start its thread");
    }
    *out = rd;
    return PH_OK;
}

int ph_redeem_ask(ph_redeem *rd, const ph_redeem_question *q, unsigned wait_ms,
                  ph_redeem_done_fn done, void *arg)
{
    if (!q || !q->sup)
        return PH_EINVAL;
    size_t clen = q->code ? strlen(q->code) : 0;
    if (!rd || !done || !wait_ms || !clen || clen > PH_CODE_MAX ||
        (q->card_no && strlen(q->card_no) > PH_CODE_MAX)) {
        ph_supplier_release(q->sup);
        return PH_EINVAL;
    }
    ask *a = calloc(1, sizeof *a);
    if (!a) {
        ph_supplier_release(q->sup);
        return PH_ENOMEM;
    }
    a->rd = rd;
    a->done = done;
    a->arg = arg;
    a->wait_ms = wait_ms;
    a->now = q->now;
    memcpy(a->hash, q->hash, sizeof a->hash);
    memcpy(a->code, q->code, clen);
    if (q->card_no)
        snprintf(a->card_no, sizeof a->card_no, "%s", q->card_no);
    if (q->product_id)
        snprintf(a->product_id, sizeof a->product_id, "%s", q->product_id);
    if (q->request_id)
        snprintf(a->request_id, sizeof a->request_id, "%s", q->request_id);
    a->job.sup = q->sup;
    a->job.limits = q->limits;
    a->job.op.kind = PERKHUB_OP_REDEMPTION;
    a->job.op.code = a->code;
    a->job.op.card_no = a->card_no[0] ? a->card_no : NULL;
    a->job.op.product_id = a->product_id[0] ? a->product_id : NULL;
    a->job.op.created_at_ms = q->now;
    a->job.done = io_done;
    a->job.arg = a;
    a->due = mono_ms() + wait_ms;
    a->holds = 2; /* the exchange's and the deadline's */

    ph_mutex_lock(&rd->mu);
    if (rd->stopping) {
        ph_mutex_unlock(&rd->mu);
        ask_free(a);
        return PH_ESHUTDOWN;
    }
    list_insert(rd, a);
    rd->pending++;
    if (rd->head == a)
        pthread_cond_broadcast(&rd->cv); /* a nearer deadline than the thread waits for */
    ph_mutex_unlock(&rd->mu);

    int rc = ph_sio_submit(rd->opts.sio, &a->job);
    if (rc != PH_OK) {
        /* nothing was sent and done will not run: take the ask back whole */
        ph_mutex_lock(&rd->mu);
        int mine = !a->answered;
        if (mine) {
            list_remove(rd, a);
            rd->pending--;
        }
        a->answered = 1;
        ph_mutex_unlock(&rd->mu);
        if (mine) {
            ask_free(a);
            return rc;
        }
        /* the deadline fired first (an absurdly short wait): its thread told the
         * asker and holds the entry; the exchange's hold goes now */
        ask_release(a);
        return PH_OK;
    }
    return PH_OK;
}

unsigned ph_redeem_pending(ph_redeem *rd)
{
    ph_mutex_lock(&rd->mu);
    unsigned n = rd->pending;
    ph_mutex_unlock(&rd->mu);
    return n;
}

void ph_redeem_destroy(ph_redeem *rd)
{
    if (!rd)
        return;
    ph_mutex_lock(&rd->mu);
    rd->stopping = 1;
    pthread_cond_broadcast(&rd->cv);
    ph_mutex_unlock(&rd->mu);
    pthread_join(rd->thread, NULL);
    /* the engine and the writer are gone (redeem.h): every hold was let go */
    assert(rd->pending == 0 && !rd->head);
    pthread_cond_destroy(&rd->cv);
    ph_mutex_destroy(&rd->mu);
    free(rd);
}
