/*
 * fulfil_decide.c — fulfil's decisions (fulfil.c has the tracks and the
 * thread): from a finished exchange to the store command that records it
 * (sealed codes, fail-over target), and from a durable command to what comes
 * next (the next attempt, done, a refusal). Fulfil's thread only.
 */
#include "supply/fulfil.h"
#include "supply/fulfil_int.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supply/attempt.h"
#include "codes/import.h"
#include "supply/plugin_ops.h"
#include "supply/route.h"
#include "base/lockcheck.h"
#include "base/util.h"
#include "crypto/wipe_alloc.h"

/* ---- from an exchange to a store command --------------------------------------- */

/* Seals the delivered codes exactly like imported ones, into the command. */
static int seal_codes(ph_fulfil *f, track_cmd *b, const struct perkhub_result *res)
{
    size_t n = res->ncodes, total = 0;
    for (size_t i = 0; i < n; i++) {
        const struct perkhub_code *c = &res->codes[i];
        size_t cl = c->code ? strlen(c->code) : 0, kl = c->card_no ? strlen(c->card_no) : 0;
        if (!cl || cl > PH_CODE_MAX || kl > PH_CODE_MAX)
            return PH_EINVAL;
        total += 1 + cl + kl + PH_SEAL_OVERHEAD;
    }
    b->codes = calloc(n, sizeof *b->codes);
    b->blobs = malloc(total ? total : 1);
    if (!b->codes || !b->blobs)
        return PH_ENOMEM;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const struct perkhub_code *c = &res->codes[i];
        size_t len = 0;
        int rc = ph_code_seal(f->o.keys, c->code, strlen(c->code), c->card_no,
                              c->card_no ? strlen(c->card_no) : 0, b->blobs + off, &len,
                              b->codes[i].hash);
        if (rc)
            return rc;
        b->codes[i].sealed = b->blobs + off;
        b->codes[i].sealed_len = (uint32_t)len;
        b->codes[i].expires_at = c->expires_at_ms > 0 ? c->expires_at_ms : 0;
        off += len;
    }
    return PH_OK;
}

/* Picks the next offer for a fail-over, skipping every supplier tried (at most
 * as many as the track remembers). A replenishment never fails over: its
 * supplier was chosen within its rule's suppliers and cost cap, and a failed
 * purchase waits for the next check (supply/replenish.h). */
static int failover_target(ph_fulfil *f, track *t, ph_attempt_target *out, void **ref)
{
    const ph_config *cfg = f->o.cfg.acquire(f->o.cfg.ctx, ref);
    const ph_product_conf *p = ph_config_product(cfg, t->sku);
    const char *tried[TRIED_MAX];
    const char *name = t->tried;
    for (size_t i = 0; i < t->ntried; i++, name += strlen(name) + 1)
        tried[i] = name;
    return p && !t->replenish && t->ntried < TRIED_MAX &&
           ful_pick_target(f, cfg, p, tried, t->ntried, out) == PH_OK;
}

/* The track's command, zeroed; NULL when out of memory. */
track_cmd *ful_cmd_new(track *t)
{
    track_cmd *b = calloc(1, sizeof *b);
    if (b)
        b->t = t;
    return b;
}

void ful_fill_cmd(track_cmd *b, const ph_attempt_move *m, const struct perkhub_result *res)
{
    track *t = b->t;
    ph_cmd *c = &b->cmd;
    memset(c, 0, sizeof *c);
    c->type = PH_CMD_ATTEMPT;
    c->now = ph_now_ms();
    c->done = ful_on_cmd_done;
    c->arg = b;
    c->in.attempt.order_id = t->order_id;
    c->in.attempt.no = t->no;
    c->in.attempt.state = m->state;
    ph_text_clean(b->reason, sizeof b->reason, m->reason);
    c->in.attempt.reason = b->reason;
    c->in.attempt.step = -1;
    c->in.attempt.charged = res && res->amount >= 0 ? res->amount : -1;
    c->in.attempt.next_check_at = m->next_check_at;
    c->in.attempt.count_check = m->count_check;
    c->in.attempt.mark_stuck = m->mark_stuck;
    /* amounts are compared by the store when the attempt succeeds (store.h) */
    c->in.attempt.delivered = res && res->delivered_value > 0 ? res->delivered_value : 0;
    c->in.attempt.tolerance = t->tolerance > 0 ? t->tolerance : 0;
    c->in.attempt.face_value = t->face_value > 0 ? t->face_value : 0;
    c->in.attempt.late_check_at =
        m->late_check && t->late_check_ms > 0 ? c->now + t->late_check_ms : 0;
    if (res && res->supplier_order_id && *res->supplier_order_id) {
        ph_text_clean(t->supplier_order_id, sizeof t->supplier_order_id, res->supplier_order_id);
        c->in.attempt.supplier_order_id = t->supplier_order_id;
    }
    if (m->follow_step && res) {
        ph_text_clean(t->step_state, sizeof t->step_state, res->next_state);
        c->in.attempt.step_state = t->step_state;
        c->in.attempt.step = t->step + 1;
    }
}

/* No memory for the command that would record the exchange: nothing durable
 * changed, so the attempt is asked about again later (a query, never the order
 * again: it may have gone out). */
static void record_later(ph_fulfil *f, track *t, const ph_attempt_ctx *a)
{
    ph_log(f->o.log, PH_LOG_ERROR, NULL, "fulfil.record_failed",
           "order=%llu attempt=%u rc=out_of_memory", (unsigned long long)t->order_id, t->no);
    t->send_order = 0;
    t->follow_step = 0;
    ph_sio_job_clear(&t->job);
    int64_t now = ph_now_ms();
    ful_heap_push(f, t, now + ph_attempt_backoff(a, t->checks, now));
}

/* A fail-over target for the command; its strings are copied out of the
 * config snapshot they live in. */
static void set_failover(ph_fulfil *f, track_cmd *b)
{
    void *ref = NULL;
    ph_attempt_target *next = &b->cmd.in.attempt.next;
    if (failover_target(f, b->t, next, &ref)) {
        snprintf(b->next_supplier, sizeof b->next_supplier, "%s", next->supplier);
        snprintf(b->next_product, sizeof b->next_product, "%s", next->product_id);
        next->supplier = b->next_supplier;
        next->product_id = b->next_product;
    }
    if (ref)
        f->o.cfg.release(ref);
}

/* A supplier's credential event (supplier_io.h, "Credentials"): one
 * PH_CMD_NOTE_EVENT of its own, fire and forget — the order's command does
 * not wait for it, and the writer frees it. Its fields are the core's: the
 * supplier id and "http 401" or a reason word of the engine's fixed list. */
typedef struct note_cmd {
    ph_cmd cmd; /* first: note_done gets the note_cmd back */
    char fields[PH_NOTE_FIELDS_MAX + 1];
} note_cmd;

static void note_done(ph_cmd *cmd)
{
    ph_cmd_clear(cmd);
    free(cmd);
}

static void note_auth(ph_fulfil *f, const track *t, const ph_sio_job *job)
{
    int failed = job->auth_change == PH_SIO_AUTH_FAILED;
    note_cmd *n = calloc(1, sizeof *n);
    json_t *j = failed ? json_pack("{s:s,s:s}", "supplier", t->supplier, "why", job->auth_why)
                       : json_pack("{s:s}", "supplier", t->supplier);
    char *txt = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (!n || !txt || strlen(txt) > PH_NOTE_FIELDS_MAX) {
        ph_log(f->o.log, PH_LOG_ERROR, NULL, "fulfil.note_failed", "supplier=%s rc=out_of_memory",
               t->supplier);
        free(n);
        ph_json_free(txt);
        return;
    }
    snprintf(n->fields, sizeof n->fields, "%s", txt);
    ph_json_free(txt);
    n->cmd.type = PH_CMD_NOTE_EVENT;
    n->cmd.now = ph_now_ms();
    n->cmd.in.note.name = failed ? "supplier.auth_failed" : "supplier.auth_restored";
    n->cmd.in.note.fields = n->fields;
    n->cmd.done = note_done;
    if (ph_store_submit(f->o.store, &n->cmd) != PH_OK)
        free(n); /* closing: the mark is in memory only, and so is its event */
}

/* I/O thread: the exchange is over; everything else happens on fulfil's. */
void ful_on_job_done(ph_sio_job *job)
{
    track *t = job->arg;
    ful_post(t->f, &t->ev, EV_JOB_DONE);
}

/* An exchange ended: decide (attempt.h) and record the move in the store. */
void ful_job_done(ph_fulfil *f, track *t, int stopping)
{
    PH_ASSERT_OWNER(&f->owner);
    ph_sio_job *job = &t->job;
    ph_attempt_ctx a = ful_track_ctx(t);
    ph_exchange x = {job->outcome, job->parsed, &job->res, job->detail};
    if (job->auth_change)
        note_auth(f, t, job);
    if (t->late)
        return ful_late_job_done(f, t, stopping);
    ph_attempt_move m;
    int64_t now = ph_now_ms(); /* the decision's and the command's: next_check_at - updated_at
                                  is the delay decided */
    ph_attempt_decide(&a, &x, now, &m);
    track_cmd *b = ful_cmd_new(t);
    if (!b)
        return record_later(f, t, &a);
    if (m.take_codes && seal_codes(f, b, &job->res) != PH_OK) {
        m.state = PH_ATTEMPT_UNKNOWN;
        m.take_codes = 0;
        snprintf(m.reason, sizeof m.reason, "codes_not_storable");
        m.next_check_at = now + ph_attempt_backoff(&a, t->checks, now);
    }
    ful_fill_cmd(b, &m, job->parsed ? &job->res : NULL);
    b->cmd.now = now;
    if (m.take_codes) {
        b->cmd.in.attempt.codes = b->codes;
        b->cmd.in.attempt.ncodes = job->res.ncodes;
    }
    if (m.failover && !stopping)
        set_failover(f, b);
    ph_log(f->o.log, PH_LOG_INFO, NULL, "fulfil.exchange",
           "order=%llu attempt=%u supplier=%s op=%s outcome=%s state=%s reason=%s",
           (unsigned long long)t->order_id, t->no, t->supplier, ph_op_kind_name(job->op.kind),
           ph_supplier_host(t->sup)->status_str(job->outcome), ph_attempt_state_name(m.state),
           m.reason[0] ? m.reason : "-");
    t->send_order = 0;
    t->follow_step = m.follow_step;
    if (m.follow_step)
        t->step++;
    ph_sio_job_clear(job);
    t->phase = T_CMD;
    t->cmd = b;
    if (ph_store_submit(f->o.store, &b->cmd) != PH_OK) {
        t->phase = T_IDLE; /* closing: the store keeps the last durable state */
        t->cmd = NULL;
        ful_cmd_free(b);
    }
}

/* ---- the late re-query of a final attempt ---------------------------------------- */

/* What the supplier now says about an attempt we failed as not found goes to
 * the store as its word (PH_CMD_FINAL_WORD, source query): a success raises a
 * discrepancy there, never a move of the order. Not found again (or failed)
 * ends the re-query; no answer leaves the schedule entry for a later round. */
void ful_late_job_done(ph_fulfil *f, track *t, int stopping)
{
    ph_sio_job *job = &t->job;
    const struct perkhub_result *res = &job->res;
    int answered = job->outcome == PERKHUB_OK && job->parsed &&
                   (res->state == PERKHUB_STATE_SUCCEEDED || res->state == PERKHUB_STATE_FAILED ||
                    res->state == PERKHUB_STATE_NOT_FOUND);
    track_cmd *b = answered && !stopping ? ful_cmd_new(t) : NULL;
    ph_log(f->o.log, PH_LOG_INFO, NULL, "fulfil.late_check",
           "order=%llu attempt=%u supplier=%s outcome=%s answered=%d",
           (unsigned long long)t->order_id, t->no, t->supplier, ph_op_status_name(job->outcome),
           answered);
    if (!b) {
        ph_sio_job_clear(job);
        return ful_late_end(f, t, 1);
    }
    ph_cmd *c = &b->cmd;
    c->type = PH_CMD_FINAL_WORD;
    c->now = ph_now_ms();
    c->done = ful_on_cmd_done;
    c->arg = b;
    c->in.word.order_id = t->order_id;
    c->in.word.no = t->no;
    c->in.word.source = PH_DISCREP_QUERY;
    c->in.word.state = ph_attempt_claim(res->state);
    c->in.word.charged = res->amount >= 0 ? res->amount : -1;
    c->in.word.delivered = res->delivered_value > 0 ? res->delivered_value : -1;
    c->in.word.tolerance = t->tolerance > 0 ? t->tolerance : 0;
    c->in.word.late_due = t->late_due;
    ph_sio_job_clear(job);
    t->phase = T_CMD;
    t->cmd = b;
    if (ph_store_submit(f->o.store, c) != PH_OK) {
        t->cmd = NULL;
        ful_cmd_free(b);
        ful_late_end(f, t, 1);
    }
}

/* ---- from a durable command to what comes next ---------------------------------- */

/* Moves the track to the failover attempt the command created. Fulfil's
 * thread. */
static void track_next_attempt(ph_fulfil *f, track *t, const ph_order *o)
{
    PH_ASSERT_OWNER(&f->owner);
    const ph_attempt *a = &o->attempts[o->nattempts - 1];
    ph_supplier_release(t->sup);
    t->sup = NULL;
    t->no = a->no;
    t->state = a->state;
    t->created_at = a->created_at;
    t->checks = 0;
    t->unit_cost = a->unit_cost;
    t->step = 0;
    t->follow_step = 0;
    t->confirm = 0; /* callbacks about the failed attempt are not this one's */
    t->asked = 0;
    t->supplier_order_id[0] = 0;
    snprintf(t->supplier, sizeof t->supplier, "%s", a->supplier);
    snprintf(t->product_id, sizeof t->product_id, "%s", a->product_id);
    snprintf(t->ref, sizeof t->ref, "%s", a->ref);
    if (ph_suppliers_acquire(f->o.suppliers, t->supplier, &t->sup) != PH_OK)
        t->sup = NULL;
    ful_track_limits(f, t);
    t->send_order = 1;
}

/* The supplier delivered codes we already hold (PH_EDUP): storing them would
 * issue a code twice (rule 1), and asking again brings the same codes. The
 * supplier acted and charged, so the attempt fails without fail-over, with a
 * reason ops reconcile with the supplier. 1 when the command was resubmitted. */
static int refuse_known_codes(ph_fulfil *f, track_cmd *b)
{
    track *t = b->t;
    if (b->cmd.rc != PH_EDUP || !b->cmd.in.attempt.ncodes)
        return 0;
    ph_log(f->o.log, PH_LOG_ERROR, NULL, "fulfil.known_codes",
           "order=%llu attempt=%u supplier=%s detail=\"the supplier delivered codes already "
           "stored; the attempt fails for reconciliation\"",
           (unsigned long long)t->order_id, t->no, t->supplier);
    ph_attempt_move m = {.state = PH_ATTEMPT_FAILED};
    snprintf(m.reason, sizeof m.reason, "supplier_delivered_known_codes");
    ph_cmd_clear(&b->cmd);
    ful_fill_cmd(b, &m, NULL);
    return ph_store_submit(f->o.store, &b->cmd) == PH_OK;
}

/* The track's command is over: its results and memory go. */
static void cmd_end(track *t, track_cmd *b)
{
    t->cmd = NULL;
    ph_cmd_clear(&b->cmd);
    ful_cmd_free(b);
}

/* Writer thread: the command is durable (or refused); fulfil's thread goes on. */
void ful_on_cmd_done(ph_cmd *cmd)
{
    track_cmd *b = (track_cmd *)cmd;
    ful_post(b->t->f, &b->ev, EV_CMD_DONE);
}

/* A track's command completed: the track follows the stored order (final,
 * fail-over, next check). When stopping, nothing new goes to the store or the
 * I/O engine: the store may be closing. */
void ful_cmd_done(ph_fulfil *f, track_cmd *b, int stopping)
{
    PH_ASSERT_OWNER(&f->owner);
    ph_cmd *cmd = &b->cmd;
    track *t = b->t;
    free(b->codes);
    free(b->blobs);
    b->codes = NULL;
    b->blobs = NULL;
    if (t->late) { /* the word is stored (or refused: the attempt is gone or open) */
        if (cmd->rc != PH_OK)
            ph_log(f->o.log, PH_LOG_WARN, NULL, "fulfil.late_check_failed",
                   "order=%llu attempt=%u rc=%s", (unsigned long long)t->order_id, t->no,
                   ph_strerror(cmd->rc));
        /* a refused word leaves its schedule entry: look again in a while, never at once */
        int retry = cmd->rc != PH_OK;
        cmd_end(t, b);
        return ful_late_end(f, t, retry);
    }
    if (!stopping && refuse_known_codes(f, b))
        return;
    if (cmd->rc == PH_OK && cmd->in.attempt.late_check_at > 0 && f->late_next &&
        cmd->in.attempt.late_check_at < f->late_next)
        f->late_next = cmd->in.attempt.late_check_at; /* the schedule got an earlier entry */
    if (cmd->discrepancy_id)
        ph_log(f->o.log, PH_LOG_WARN, NULL, "fulfil.amount_mismatch",
               "order=%llu attempt=%u supplier=%s discrepancy=%llu",
               (unsigned long long)t->order_id, t->no, t->supplier,
               (unsigned long long)cmd->discrepancy_id);
    const ph_order *o = cmd->order;
    if (cmd->rc != PH_OK || !o) {
        /* PH_ESTATE: the attempt moved on already (a late duplicate); anything
         * else: keep the durable state and look again later. */
        ph_log(f->o.log, PH_LOG_WARN, NULL, "fulfil.record_failed", "order=%llu attempt=%u rc=%s",
               (unsigned long long)t->order_id, t->no, ph_strerror(cmd->rc));
        if (cmd->rc == PH_ESTATE || stopping) {
            uint64_t id = t->order_id;
            int settled = cmd->rc == PH_ESTATE;
            ful_reg_del(f, t);
            cmd_end(t, b);
            ful_track_free(t);
            /* settled meanwhile (by ops: PH_CMD_SETTLE): whoever waits sees it final */
            if (settled)
                ful_waiters_fire(ful_waiters_take(f, id, 0));
            return;
        }
        ph_attempt_ctx ac = ful_track_ctx(t);
        int64_t now = ph_now_ms();
        cmd_end(t, b);
        ful_heap_push(f, t, now + ph_attempt_backoff(&ac, t->checks, now));
        return;
    }
    const ph_attempt *a = NULL;
    for (size_t i = 0; i < o->nattempts; i++)
        if (o->attempts[i].no == t->no)
            a = &o->attempts[i];
    ful_tried_refresh(t, o); /* the stored attempts are the one list of suppliers tried */
    /* granted: the order of a claimed grant failed for good and the store gave
     * the grant back (store_grant_back); its next claim is a new attempt with
     * its own track, and this one has nothing left to ask */
    if (ph_order_state_final(o->state) || o->state == PH_ORDER_GRANTED) {
        ful_reg_del(f, t);
        ful_waiters_fire(ful_waiters_take(f, o->id, 0));
        cmd_end(t, b);
        ful_track_free(t);
        return;
    }
    if (o->nattempts && o->attempts[o->nattempts - 1].no != t->no) {
        track_next_attempt(f, t, o); /* fail-over: send the new attempt now */
        cmd_end(t, b);
        if (!stopping)
            ful_track_run(f, t);
        else
            t->phase = T_IDLE; /* the store has it SENDING: resumed after the restart */
        return;
    }
    if (a) {
        t->state = a->state;
        t->checks = a->checks;
        t->stuck_at = a->stuck_at;
    }
    int64_t due = a && a->next_check_at ? a->next_check_at : ph_now_ms();
    if (t->confirm && !t->follow_step)
        due = ph_now_ms(); /* the query a callback asked for (ful_track_run clears it) */
    cmd_end(t, b);
    ful_heap_push(f, t, due);
}
