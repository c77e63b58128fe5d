/*
 * cmd_codec.c — store commands as bytes, the journal file, and its replay
 * (cmd_codec.h). Owns nothing shared: the store's writer calls the journal,
 * perkhubd --replay-journal calls the replay; neither touches LMDB here.
 */
#include "store/cmd_codec.h"

#include "base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NIL UINT32_MAX /* the length of a NULL string or blob */

static const char JOURNAL_MAGIC[12] = "PHJOURNAL1\n";

const char *ph_cmd_type_name(int type)
{
    switch (type) {
    case PH_CMD_IMPORT:
        return "import";
    case PH_CMD_ORDER:
        return "order";
    case PH_CMD_VOID_BATCH:
        return "void_batch";
    case PH_CMD_PUT_PRODUCTS:
        return "put_products";
    case PH_CMD_SUPPLY_CREATE:
        return "supply_create";
    case PH_CMD_ATTEMPT:
        return "attempt";
    case PH_CMD_EXPIRE:
        return "expire";
    case PH_CMD_NOTE_EVENT:
        return "note_event";
    case PH_CMD_SETTLE:
        return "settle";
    case PH_CMD_RECON:
        return "recon";
    case PH_CMD_FINAL_WORD:
        return "final_word";
    case PH_CMD_RESOLVE:
        return "resolve";
    case PH_CMD_RESEAL:
        return "reseal";
    case PH_CMD_JOB_RAN:
        return "job_ran";
    case PH_CMD_JOB_ASK:
        return "job_ask";
    case PH_CMD_CODE_REDEEMED:
        return "code_redeemed";
    case PH_CMD_SYNC:
        return "sync";
    case PH_CMD_PIN:
        return "pin";
    case PH_CMD_BALANCE:
        return "balance";
    case PH_CMD_ALERT_ACK:
        return "alert_ack";
    case PH_CMD_REPLENISH:
        return "replenish";
    case PH_CMD_WH_CREATE:
        return "wh_create";
    case PH_CMD_WH_RESULT:
        return "wh_result";
    case PH_CMD_WH_ENABLE:
        return "wh_enable";
    case PH_CMD_WH_REPLAY:
        return "wh_replay";
    case PH_CMD_REVIEW:
        return "review";
    case PH_CMD_RISK_RULE:
        return "risk_rule";
    case PH_CMD_RISK_LIST:
        return "risk_list";
    case PH_CMD_GRANT:
        return "grant";
    case PH_CMD_GRANT_BATCH:
        return "grant_batch";
    case PH_CMD_BUNDLE:
        return "bundle";
    default:
        return "?";
    }
}

/* ---- encoding -------------------------------------------------------------- */

typedef ph_wbuf wbuf; /* crypto.h: it may hold sealed blobs; old blocks are wiped */

static void w_bytes(wbuf *b, const void *src, size_t n)
{
    ph_wbuf_put(b, src, n);
}

static void w_u8(wbuf *b, uint8_t v)
{
    w_bytes(b, &v, 1);
}

static void w_u32(wbuf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    w_bytes(b, x, 4);
}

static void w_u64(wbuf *b, uint64_t v)
{
    w_u32(b, (uint32_t)v);
    w_u32(b, (uint32_t)(v >> 32));
}

static void w_i64(wbuf *b, int64_t v)
{
    w_u64(b, (uint64_t)v);
}

static void w_i32(wbuf *b, int32_t v)
{
    w_u32(b, (uint32_t)v);
}

static void w_blob(wbuf *b, const void *p, size_t n)
{
    if (!p) {
        w_u32(b, NIL);
        return;
    }
    w_u32(b, (uint32_t)n);
    w_bytes(b, p, n);
}

static void w_str(wbuf *b, const char *s)
{
    w_blob(b, s, s ? strlen(s) : 0);
}

static void w_target(wbuf *b, const ph_attempt_target *t)
{
    /* without a supplier the rest means nothing and may point anywhere */
    w_str(b, t->supplier);
    w_str(b, t->supplier ? t->product_id : NULL);
    w_i64(b, t->supplier ? t->unit_cost : 0);
}

/* Version 3: ORDER's and SUPPLY_CREATE's risk input, a flag then its members. */
static void w_risk(wbuf *b, const ph_order_risk *rk)
{
    w_u8(b, rk ? 1 : 0);
    if (!rk)
        return;
    w_i32(b, rk->verdict);
    w_str(b, rk->rule);
    w_i64(b, rk->hold_until);
    w_blob(b, rk->record, rk->record_len);
}

static void w_holder(wbuf *b, const ph_grant_holder *h)
{
    w_u64(b, h->key);
    w_str(b, h->masked);
    w_str(b, h->tags);
}

/* Version 4: ORDER's and SUPPLY_CREATE's grant input (issue 16), a flag then
 * its members; after the risk input. */
static void w_grant(wbuf *b, const ph_grant_in *g)
{
    w_u8(b, g ? 1 : 0);
    if (!g)
        return;
    w_i64(b, g->expires_at);
    w_bytes(b, g->token_hash, 32);
    w_holder(b, &g->holder);
    w_u64(b, g->batch);
}

/* Version 5: a held bundle's or a bundle grant's targets, a count then each. */
static void w_targets(wbuf *b, const ph_attempt_target *t, uint32_t n)
{
    w_u32(b, n);
    for (uint32_t i = 0; i < n && i < PH_CMD_TARGETS_MAX; i++)
        w_target(b, &t[i]);
}

static int encode_cmd(wbuf *b, const ph_cmd *c, size_t idx, ph_err *err)
{
    w_u8(b, (uint8_t)c->type);
    w_i64(b, c->now);
    w_i32(b, c->rc);
    switch (c->type) {
    case PH_CMD_IMPORT: {
        size_t n = c->in.import.ncodes;
        if (n > UINT32_MAX)
            return ph_err_set(err, PH_EINVAL, "command %zu (import): codes: too many", idx);
        w_str(b, c->in.import.supplier);
        w_str(b, c->in.import.sku);
        w_str(b, c->in.import.note);
        w_i64(b, c->in.import.unit_cost);
        w_u32(b, (uint32_t)n);
        for (size_t i = 0; i < n; i++) {
            const ph_import_code *ic = &c->in.import.codes[i];
            w_u32(b, ic->line);
            w_bytes(b, ic->hash, 32);
            w_i64(b, ic->expires_at);
            w_blob(b, ic->sealed, ic->sealed_len);
        }
        for (size_t i = 0; i < n; i++)
            w_u32(b, c->in.import.by_hash[i]);
        w_str(b, c->in.import.lookalikes);
        break;
    }
    case PH_CMD_ORDER:
        w_str(b, c->in.order.client);
        w_str(b, c->in.order.client_order_id);
        w_str(b, c->in.order.sku);
        w_u32(b, c->in.order.quantity);
        w_bytes(b, c->in.order.fingerprint, 32);
        w_risk(b, c->in.order.risk);
        w_grant(b, c->in.order.grant);
        break;
    case PH_CMD_VOID_BATCH:
        w_u64(b, c->in.void_batch.batch_id);
        w_str(b, c->in.void_batch.reason);
        break;
    case PH_CMD_PUT_PRODUCTS:
        if (c->in.products.n > UINT32_MAX)
            return ph_err_set(err, PH_EINVAL, "command %zu (put_products): json: too many", idx);
        w_u32(b, (uint32_t)c->in.products.n);
        for (size_t i = 0; i < c->in.products.n; i++)
            w_str(b, c->in.products.json[i]);
        break;
    case PH_CMD_SUPPLY_CREATE:
        w_str(b, c->in.supply.client);
        w_str(b, c->in.supply.client_order_id);
        w_str(b, c->in.supply.sku);
        w_u32(b, c->in.supply.quantity);
        w_bytes(b, c->in.supply.fingerprint, 32);
        w_i32(b, c->in.supply.delivery);
        w_blob(b, c->in.supply.account_sealed, c->in.supply.account_sealed_len);
        w_str(b, c->in.supply.account_masked);
        w_target(b, &c->in.supply.first);
        w_str(b, c->in.supply.fail_reason);
        w_risk(b, c->in.supply.risk);
        w_grant(b, c->in.supply.grant);
        break;
    case PH_CMD_ATTEMPT:
        if (c->in.attempt.ncodes > UINT32_MAX)
            return ph_err_set(err, PH_EINVAL, "command %zu (attempt): codes: too many", idx);
        w_u64(b, c->in.attempt.order_id);
        w_u32(b, c->in.attempt.no);
        w_i32(b, c->in.attempt.state);
        w_str(b, c->in.attempt.reason);
        w_str(b, c->in.attempt.supplier_order_id);
        w_str(b, c->in.attempt.step_state);
        w_i64(b, c->in.attempt.step);
        w_i64(b, c->in.attempt.charged);
        w_i64(b, c->in.attempt.next_check_at);
        w_i32(b, c->in.attempt.count_check);
        w_u32(b, (uint32_t)c->in.attempt.ncodes);
        for (size_t i = 0; i < c->in.attempt.ncodes; i++) {
            const ph_supplied_code *sc = &c->in.attempt.codes[i];
            w_bytes(b, sc->hash, 32);
            w_i64(b, sc->expires_at);
            w_blob(b, sc->sealed, sc->sealed_len);
        }
        w_target(b, &c->in.attempt.next);
        w_i32(b, c->in.attempt.mark_stuck); /* version 2 (issue 11) */
        w_i64(b, c->in.attempt.delivered);
        w_i64(b, c->in.attempt.tolerance);
        w_i64(b, c->in.attempt.face_value);
        w_i64(b, c->in.attempt.late_check_at);
        break;
    case PH_CMD_FINAL_WORD:
        w_u64(b, c->in.word.order_id);
        w_u32(b, c->in.word.no);
        w_i32(b, c->in.word.source);
        w_i32(b, c->in.word.state);
        w_i64(b, c->in.word.charged);
        w_i64(b, c->in.word.delivered);
        w_i64(b, c->in.word.tolerance);
        w_i64(b, c->in.word.late_due);
        break;
    case PH_CMD_RESOLVE:
        w_u64(b, c->in.resolve.id);
        w_i32(b, c->in.resolve.accept);
        w_str(b, c->in.resolve.who);
        w_str(b, c->in.resolve.note);
        break;
    case PH_CMD_EXPIRE:
        w_u32(b, c->in.expire.limit);
        break;
    case PH_CMD_JOB_RAN:
    case PH_CMD_JOB_ASK:
        w_str(b, c->in.job.id);
        w_i64(b, c->in.job.started_at);
        w_i64(b, c->in.job.ended_at);
        w_i32(b, c->in.job.ok);
        w_str(b, c->in.job.outcome);
        w_i32(b, c->in.job.manual);
        w_i64(b, c->in.job.next_due);
        w_u32(b, c->in.job.runs);
        break;
    case PH_CMD_BALANCE:
        w_str(b, c->in.balance.supplier);
        w_i64(b, c->in.balance.balance);
        w_i64(b, c->in.balance.below);
        break;
    case PH_CMD_ALERT_ACK:
        w_u64(b, c->in.alert_ack.id);
        w_str(b, c->in.alert_ack.by);
        w_str(b, c->in.alert_ack.note);
        break;
    case PH_CMD_NOTE_EVENT:
        w_str(b, c->in.note.name);
        w_str(b, c->in.note.fields);
        break;
    case PH_CMD_REPLENISH:
        if (c->in.replenish.noffers > UINT32_MAX)
            return ph_err_set(err, PH_EINVAL, "command %zu (replenish): offers: too many", idx);
        w_str(b, c->in.replenish.sku);
        w_u32(b, c->in.replenish.below);
        w_u32(b, c->in.replenish.to);
        w_i64(b, c->in.replenish.max_unit_cost);
        w_i64(b, c->in.replenish.max_per_day);
        w_u32(b, (uint32_t)c->in.replenish.noffers);
        for (size_t i = 0; i < c->in.replenish.noffers; i++)
            w_target(b, &c->in.replenish.offers[i]);
        break;
    case PH_CMD_WH_CREATE:
        if (c->in.wh.ndels > UINT32_MAX)
            return ph_err_set(err, PH_EINVAL, "command %zu (wh_create): dels: too many", idx);
        w_str(b, c->in.wh.endpoint);
        w_u64(b, c->in.wh.cursor_from);
        w_u64(b, c->in.wh.cursor_to);
        w_u32(b, (uint32_t)c->in.wh.ndels);
        for (size_t i = 0; i < c->in.wh.ndels; i++) {
            w_u64(b, c->in.wh.dels[i].seq);
            w_u64(b, c->in.wh.dels[i].order_id);
            w_str(b, c->in.wh.dels[i].type);
        }
        break;
    case PH_CMD_WH_RESULT:
        if (c->in.wh.nanswers > UINT32_MAX)
            return ph_err_set(err, PH_EINVAL, "command %zu (wh_result): answers: too many", idx);
        w_u32(b, (uint32_t)c->in.wh.nanswers);
        for (size_t i = 0; i < c->in.wh.nanswers; i++) {
            const ph_wh_answer *a = &c->in.wh.answers[i];
            w_str(b, a->endpoint);
            w_str(b, a->error);
            w_u64(b, a->seq);
            w_i64(b, a->next_at);
            w_i32(b, a->status);
            w_i32(b, a->outcome);
        }
        break;
    case PH_CMD_WH_ENABLE:
    case PH_CMD_WH_REPLAY:
        w_str(b, c->in.wh.endpoint);
        w_str(b, c->in.wh.json);
        break;
    case PH_CMD_SETTLE:
        w_u64(b, c->in.settle.order_id);
        w_i32(b, c->in.settle.outcome);
        w_str(b, c->in.settle.by);
        w_str(b, c->in.settle.note);
        w_i64(b, c->in.settle.charged);
        w_str(b, c->in.settle.supplier_order_id);
        break;
    case PH_CMD_RECON:
        if (c->in.recon.nlines > UINT32_MAX || c->in.recon.nunbilled > UINT32_MAX)
            return ph_err_set(err, PH_EINVAL, "command %zu (recon): lines: too many", idx);
        w_str(b, c->in.recon.supplier);
        w_str(b, c->in.recon.client);
        w_str(b, c->in.recon.source);
        w_i64(b, c->in.recon.from);
        w_i64(b, c->in.recon.to);
        w_bytes(b, c->in.recon.sha256, 32);
        w_u32(b, (uint32_t)c->in.recon.nlines);
        for (size_t i = 0; i < c->in.recon.nlines; i++) {
            const ph_recon_line *l = &c->in.recon.lines[i];
            w_u32(b, l->line);
            w_str(b, l->ref);
            w_str(b, l->supplier_order_id);
            w_i64(b, l->amount);
            w_i64(b, l->time);
            w_i32(b, l->charged);
            w_u64(b, c->in.recon.cand[i].order_id);
            w_u32(b, c->in.recon.cand[i].no);
        }
        w_u32(b, (uint32_t)c->in.recon.nunbilled);
        for (size_t i = 0; i < c->in.recon.nunbilled; i++) {
            w_u64(b, c->in.recon.unbilled[i].order_id);
            w_u32(b, c->in.recon.unbilled[i].no);
        }
        break;
    case PH_CMD_RESEAL:
        if (c->in.reseal.n > UINT32_MAX || c->in.reseal.nforget > UINT32_MAX)
            return ph_err_set(err, PH_EINVAL, "command %zu (reseal): items: too many", idx);
        w_u32(b, c->in.reseal.key_id);
        w_u32(b, (uint32_t)c->in.reseal.n);
        for (size_t i = 0; i < c->in.reseal.n; i++) {
            const ph_reseal_item *it = &c->in.reseal.items[i];
            w_i32(b, it->kind);
            w_u64(b, it->id);
            w_blob(b, it->old_sealed, it->len);
            w_blob(b, it->new_sealed, it->len);
        }
        w_u32(b, (uint32_t)c->in.reseal.nforget);
        for (size_t i = 0; i < c->in.reseal.nforget; i++)
            w_u32(b, c->in.reseal.forget[i]);
        break;
    case PH_CMD_CODE_REDEEMED:
        w_bytes(b, c->in.redeem.hash, 32);
        w_i64(b, c->in.redeem.redeemed_at);
        break;
    case PH_CMD_SYNC:
        if (c->in.sync.n > UINT32_MAX)
            return ph_err_set(err, PH_EINVAL, "command %zu (sync): items: too many", idx);
        w_str(b, c->in.sync.supplier);
        w_i32(b, c->in.sync.kind);
        w_u32(b, (uint32_t)c->in.sync.n);
        for (size_t i = 0; i < c->in.sync.n; i++) {
            const ph_sync_item *it = &c->in.sync.items[i];
            w_str(b, it->product_id);
            w_i64(b, it->cost);
            w_i64(b, it->stock);
            w_i32(b, it->on_sale);
        }
        break;
    case PH_CMD_PIN:
        w_str(b, c->in.pin.sku);
        w_i32(b, c->in.pin.pin);
        break;
    case PH_CMD_REVIEW:
        w_u64(b, c->in.review.order_id);
        w_i32(b, c->in.review.release);
        w_str(b, c->in.review.who);
        w_str(b, c->in.review.note);
        w_target(b, &c->in.review.first);
        w_str(b, c->in.review.fail_reason);
        if (c->in.review.ntargets > PH_CMD_TARGETS_MAX)
            return ph_err_set(err, PH_EINVAL, "command %zu (review): targets: too many", idx);
        w_targets(b, c->in.review.targets, c->in.review.ntargets); /* version 5 */
        break;
    case PH_CMD_RISK_RULE:
        w_str(b, c->in.risk_rule.id);
        w_str(b, c->in.risk_rule.json);
        w_i32(b, c->in.risk_rule.remove);
        w_u32(b, c->in.risk_rule.expect_version);
        w_i32(b, c->in.risk_rule.create);
        w_i32(b, c->in.risk_rule.replace);
        break;
    case PH_CMD_RISK_LIST:
        w_i32(b, c->in.risk_list.remove);
        w_i32(b, c->in.risk_list.list);
        w_i32(b, c->in.risk_list.var);
        w_u64(b, c->in.risk_list.key);
        w_i64(b, c->in.risk_list.expires_at);
        w_str(b, c->in.risk_list.masked);
        w_str(b, c->in.risk_list.note);
        break;
    case PH_CMD_GRANT:
        w_i32(b, c->in.grant.op);
        w_u64(b, c->in.grant.grant_id);
        w_bytes(b, c->in.grant.token_hash, 32);
        w_bytes(b, c->in.grant.key, 32);
        w_str(b, c->in.grant.client);
        w_holder(b, &c->in.grant.to);
        w_bytes(b, c->in.grant.new_token_hash, 32);
        w_blob(b, c->in.grant.account_sealed, c->in.grant.account_sealed_len);
        w_str(b, c->in.grant.account_masked);
        w_target(b, &c->in.grant.first);
        w_str(b, c->in.grant.fail_reason);
        w_i64(b, c->in.grant.expires_at);
        w_str(b, c->in.grant.who);
        w_u32(b, c->in.grant.limit);
        if (c->in.grant.ntargets > PH_CMD_TARGETS_MAX)
            return ph_err_set(err, PH_EINVAL, "command %zu (grant): targets: too many", idx);
        w_targets(b, c->in.grant.targets, c->in.grant.ntargets); /* version 5 */
        break;
    case PH_CMD_GRANT_BATCH:
        if (c->in.grant_batch.n > UINT32_MAX)
            return ph_err_set(err, PH_EINVAL, "command %zu (grant_batch): lines: too many", idx);
        w_str(b, c->in.grant_batch.client);
        w_str(b, c->in.grant_batch.batch_id);
        w_bytes(b, c->in.grant_batch.fingerprint, 32);
        w_i64(b, c->in.grant_batch.expires_at);
        w_u32(b, (uint32_t)c->in.grant_batch.n);
        for (size_t i = 0; i < c->in.grant_batch.n; i++) {
            const ph_grant_line *l = &c->in.grant_batch.lines[i];
            w_u32(b, l->line);
            w_str(b, l->sku);
            w_i32(b, l->delivery);
            w_i32(b, l->supply_ok);
            w_bytes(b, l->token_hash, 32);
            w_holder(b, &l->holder);
        }
        break;
    case PH_CMD_BUNDLE: /* version 4 */
        if (c->in.bundle.ntargets > 64)
            return ph_err_set(err, PH_EINVAL, "command %zu (bundle): targets: too many", idx);
        w_str(b, c->in.bundle.client);
        w_str(b, c->in.bundle.client_order_id);
        w_str(b, c->in.bundle.sku);
        w_u32(b, c->in.bundle.quantity);
        w_bytes(b, c->in.bundle.fingerprint, 32);
        w_u64(b, c->in.bundle.retry_of);
        w_u32(b, c->in.bundle.retry_no);
        w_u32(b, (uint32_t)c->in.bundle.ntargets);
        for (size_t i = 0; i < c->in.bundle.ntargets; i++)
            w_target(b, &c->in.bundle.targets[i]);
        w_blob(b, c->in.bundle.account_sealed, c->in.bundle.account_sealed_len);
        w_str(b, c->in.bundle.account_masked);
        w_risk(b, c->in.bundle.risk);
        w_grant(b, c->in.bundle.grant); /* version 5 */
        break;
    default:
        /* a new command kind must be given an encoding here, or replication
         * would silently drop it */
        return ph_err_set(err, PH_EINVAL, "command %zu: type %d has no encoding", idx, c->type);
    }
    /* version 2: the audit record the command carries, after its inputs */
    const ph_audit *a = c->audit;
    w_u8(b, a ? 1 : 0);
    if (a) {
        w_str(b, a->action);
        w_str(b, a->client);
        w_str(b, a->peer);
        w_str(b, a->request_id);
        w_str(b, a->via);
        w_str(b, a->what);
    }
    return PH_OK;
}

int ph_cmd_batch_encode(const ph_cmd *first, uint8_t **out, size_t *len, ph_err *err)
{
    wbuf b = {0};
    size_t n = 0;
    for (const ph_cmd *c = first; c; c = c->next)
        n++;
    if (n > UINT32_MAX)
        return ph_err_set(err, PH_EINVAL, "batch: too many commands");
    w_u8(&b, PH_CMD_CODEC_VERSION);
    w_u32(&b, (uint32_t)n);
    size_t idx = 0;
    for (const ph_cmd *c = first; c; c = c->next, idx++) {
        size_t at = b.len;
        w_u32(&b, 0); /* the command's length, patched below */
        int rc = encode_cmd(&b, c, idx, err);
        if (rc) {
            ph_wbuf_free(&b);
            return rc;
        }
        if (!b.oom) {
            size_t clen = b.len - at - 4;
            if (clen > UINT32_MAX - 1) {
                ph_wbuf_free(&b);
                return ph_err_set(err, PH_EINVAL, "command %zu (%s): over 4 GiB", idx,
                                  ph_cmd_type_name(c->type));
            }
            for (int k = 0; k < 4; k++)
                b.p[at + (size_t)k] = (char)(uint8_t)(clen >> (8 * k));
        }
    }
    if (b.oom) {
        ph_wbuf_free(&b);
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    *out = (uint8_t *)b.p;
    *len = b.len;
    return PH_OK;
}

/* ---- decoding -------------------------------------------------------------- */

/* Every allocation of a decoded batch, freed together. */
typedef struct arena {
    void **ptrs;
    size_t n, cap;
} arena;

static void *a_alloc(arena *a, size_t n)
{
    if (a->n == a->cap) {
        void **g = ph_grow(a->ptrs, &a->cap, sizeof *g, 64);
        if (!g)
            return NULL;
        a->ptrs = g;
    }
    void *p = calloc(1, n ? n : 1);
    if (p)
        a->ptrs[a->n++] = p;
    return p;
}

static void a_free(arena *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        free(a->ptrs[i]);
    free(a->ptrs);
    free(a);
}

/* The bytes of one command being read, and where to say what was wrong. */
typedef struct rd {
    const uint8_t *p;
    size_t left;
    arena *a;
    ph_err *err;
    size_t idx;
    const char *kind;
    int rc;          /* first failure, sticky */
    uint8_t version; /* of the batch: 1 has no audit member */
} rd;

static int r_fail(rd *r, const char *field, const char *what)
{
    if (r->rc == PH_OK && !r->kind) /* the batch's own fields */
        r->rc = ph_err_set(r->err, what ? PH_EINVAL : PH_ENOMEM, "batch: %s: %s", field,
                           what ? what : "out of memory");
    else if (r->rc == PH_OK)
        r->rc = ph_err_set(r->err, what ? PH_EINVAL : PH_ENOMEM, "command %zu (%s): %s: %s", r->idx,
                           r->kind, field, what ? what : "out of memory");
    return r->rc;
}

static const uint8_t *r_take(rd *r, size_t n, const char *field)
{
    if (r->rc)
        return NULL;
    if (n > r->left) {
        r_fail(r, field, "truncated");
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

static uint32_t r_u32(rd *r, const char *field)
{
    const uint8_t *x = r_take(r, 4, field);
    return x ? (uint32_t)x[0] | (uint32_t)x[1] << 8 | (uint32_t)x[2] << 16 | (uint32_t)x[3] << 24
             : 0;
}

static uint64_t r_u64(rd *r, const char *field)
{
    uint64_t lo = r_u32(r, field);
    return lo | (uint64_t)r_u32(r, field) << 32;
}

static int64_t r_i64(rd *r, const char *field)
{
    return (int64_t)r_u64(r, field);
}

static int32_t r_i32(rd *r, const char *field)
{
    return (int32_t)r_u32(r, field);
}

static void r_bytes32(rd *r, uint8_t out[32], const char *field)
{
    const uint8_t *x = r_take(r, 32, field);
    if (x)
        memcpy(out, x, 32);
}

/* A copy of a blob (NULL for NIL); *len its size. */
static const uint8_t *r_blob(rd *r, uint32_t *len, const char *field)
{
    uint32_t n = r_u32(r, field);
    *len = 0;
    if (r->rc || n == NIL)
        return NULL;
    const uint8_t *x = r_take(r, n, field);
    uint8_t *p = x ? a_alloc(r->a, n) : NULL;
    if (x && !p)
        r_fail(r, field, NULL);
    if (!p)
        return NULL;
    memcpy(p, x, n);
    *len = n;
    return p;
}

/* A NUL-terminated copy of a string (NULL for NIL); one holding a NUL is refused. */
static const char *r_str(rd *r, const char *field)
{
    uint32_t n;
    const uint8_t *b = r_blob(r, &n, field);
    if (!b)
        return NULL;
    if (memchr(b, 0, n)) {
        r_fail(r, field, "holds a NUL byte");
        return NULL;
    }
    char *s = a_alloc(r->a, (size_t)n + 1);
    if (!s) {
        r_fail(r, field, NULL);
        return NULL;
    }
    memcpy(s, b, n);
    return s;
}

/* A count of elements of at least min_size bytes each: never more than the
 * bytes left could hold, so garbage cannot ask for a huge allocation. */
static size_t r_count(rd *r, size_t min_size, const char *field)
{
    uint32_t n = r_u32(r, field);
    if (r->rc)
        return 0;
    if ((uint64_t)n * min_size > r->left) {
        r_fail(r, field, "count larger than the bytes that follow");
        return 0;
    }
    return n;
}

static void r_target(rd *r, ph_attempt_target *t, const char *supplier, const char *product,
                     const char *cost)
{
    t->supplier = r_str(r, supplier);
    t->product_id = r_str(r, product);
    t->unit_cost = r_i64(r, cost);
}

static int cmp_hash(const uint8_t *a, const uint8_t *b)
{
    return memcmp(a, b, 32);
}

static void decode_import(rd *r, ph_cmd *c)
{
    c->in.import.supplier = r_str(r, "supplier");
    c->in.import.sku = r_str(r, "sku");
    c->in.import.note = r_str(r, "note");
    c->in.import.unit_cost = r_i64(r, "unit_cost");
    size_t n = r_count(r, 4 + 32 + 8 + 4 + 4, "codes");
    ph_import_code *codes = a_alloc(r->a, n * sizeof *codes);
    uint32_t *by_hash = a_alloc(r->a, n * sizeof *by_hash);
    uint8_t *seen = a_alloc(r->a, n);
    if (!codes || !by_hash || !seen) {
        r_fail(r, "codes", NULL);
        return;
    }
    for (size_t i = 0; i < n && !r->rc; i++) {
        codes[i].line = r_u32(r, "codes.line");
        r_bytes32(r, codes[i].hash, "codes.hash");
        codes[i].expires_at = r_i64(r, "codes.expires_at");
        codes[i].sealed = r_blob(r, &codes[i].sealed_len, "codes.sealed");
    }
    for (size_t i = 0; i < n && !r->rc; i++) {
        by_hash[i] = r_u32(r, "by_hash");
        if (r->rc)
            break;
        if (by_hash[i] >= n || seen[by_hash[i]] ||
            (i && cmp_hash(codes[by_hash[i - 1]].hash, codes[by_hash[i]].hash) > 0))
            r_fail(r, "by_hash", "not the codes' indices in hash order");
        else
            seen[by_hash[i]] = 1;
    }
    c->in.import.codes = codes;
    c->in.import.ncodes = n;
    c->in.import.by_hash = by_hash;
    c->in.import.lookalikes = r_str(r, "lookalikes");
}

static const ph_order_risk *r_risk(rd *r)
{
    const uint8_t *has = r->version >= 3 ? r_take(r, 1, "risk") : NULL;
    if (!has || !*has)
        return NULL;
    ph_order_risk *rk = a_alloc(r->a, sizeof *rk);
    if (!rk) {
        r_fail(r, "risk", NULL);
        return NULL;
    }
    uint32_t len = 0;
    rk->verdict = r_i32(r, "risk.verdict");
    rk->rule = r_str(r, "risk.rule");
    rk->hold_until = r_i64(r, "risk.hold_until");
    rk->record = (const char *)r_blob(r, &len, "risk.record");
    rk->record_len = len;
    return rk;
}

static void r_holder(rd *r, ph_grant_holder *h)
{
    h->key = r_u64(r, "holder.key");
    h->masked = r_str(r, "holder.masked");
    h->tags = r_str(r, "holder.tags");
}

static const ph_grant_in *r_grant(rd *r)
{
    const uint8_t *has = r->version >= 4 ? r_take(r, 1, "grant") : NULL;
    if (!has || !*has)
        return NULL;
    ph_grant_in *g = a_alloc(r->a, sizeof *g);
    if (!g) {
        r_fail(r, "grant", NULL);
        return NULL;
    }
    g->expires_at = r_i64(r, "grant.expires_at");
    r_bytes32(r, g->token_hash, "grant.token_hash");
    r_holder(r, &g->holder);
    g->batch = r_u64(r, "grant.batch");
    return g;
}

/* Version 5's targets into t (PH_CMD_TARGETS_MAX of them); none before. */
static void r_targets(rd *r, ph_attempt_target *t, uint32_t *n)
{
    *n = r->version >= 5 ? r_u32(r, "targets") : 0;
    if (!r->rc && *n > PH_CMD_TARGETS_MAX) {
        r_fail(r, "targets", "too many");
        *n = 0;
        return;
    }
    for (uint32_t i = 0; !r->rc && i < *n; i++)
        r_target(r, &t[i], "targets.supplier", "targets.product_id", "targets.unit_cost");
}

static void decode_grant(rd *r, ph_cmd *c)
{
    uint32_t len = 0;
    c->in.grant.op = r_i32(r, "op");
    c->in.grant.grant_id = r_u64(r, "grant_id");
    r_bytes32(r, c->in.grant.token_hash, "token_hash");
    r_bytes32(r, c->in.grant.key, "key");
    c->in.grant.client = r_str(r, "client");
    r_holder(r, &c->in.grant.to);
    r_bytes32(r, c->in.grant.new_token_hash, "new_token_hash");
    c->in.grant.account_sealed = r_blob(r, &len, "account_sealed");
    c->in.grant.account_sealed_len = len;
    c->in.grant.account_masked = r_str(r, "account_masked");
    r_target(r, &c->in.grant.first, "first.supplier", "first.product_id", "first.unit_cost");
    c->in.grant.fail_reason = r_str(r, "fail_reason");
    c->in.grant.expires_at = r_i64(r, "expires_at");
    c->in.grant.who = r_str(r, "who");
    c->in.grant.limit = r_u32(r, "limit");
    r_targets(r, c->in.grant.targets, &c->in.grant.ntargets);
}

static void decode_grant_batch(rd *r, ph_cmd *c)
{
    c->in.grant_batch.client = r_str(r, "client");
    c->in.grant_batch.batch_id = r_str(r, "batch_id");
    r_bytes32(r, c->in.grant_batch.fingerprint, "fingerprint");
    c->in.grant_batch.expires_at = r_i64(r, "expires_at");
    size_t n = r_count(r, 4 + 4 + 4 + 4 + 32 + 8 + 4 + 4, "lines");
    ph_grant_line *lines = a_alloc(r->a, (n ? n : 1) * sizeof *lines);
    if (!lines) {
        r_fail(r, "lines", NULL);
        return;
    }
    for (size_t i = 0; i < n && !r->rc; i++) {
        lines[i].line = r_u32(r, "lines.line");
        lines[i].sku = r_str(r, "lines.sku");
        lines[i].delivery = r_i32(r, "lines.delivery");
        lines[i].supply_ok = r_i32(r, "lines.supply_ok");
        r_bytes32(r, lines[i].token_hash, "lines.token_hash");
        r_holder(r, &lines[i].holder);
    }
    c->in.grant_batch.lines = lines;
    c->in.grant_batch.n = n;
}

static void decode_supply(rd *r, ph_cmd *c)
{
    c->in.supply.client = r_str(r, "client");
    c->in.supply.client_order_id = r_str(r, "client_order_id");
    c->in.supply.sku = r_str(r, "sku");
    c->in.supply.quantity = r_u32(r, "quantity");
    r_bytes32(r, c->in.supply.fingerprint, "fingerprint");
    c->in.supply.delivery = r_i32(r, "delivery");
    c->in.supply.account_sealed = r_blob(r, &c->in.supply.account_sealed_len, "account_sealed");
    c->in.supply.account_masked = r_str(r, "account_masked");
    r_target(r, &c->in.supply.first, "first.supplier", "first.product_id", "first.unit_cost");
    c->in.supply.fail_reason = r_str(r, "fail_reason");
    c->in.supply.risk = r_risk(r);
    c->in.supply.grant = r_grant(r);
}

static void decode_bundle(rd *r, ph_cmd *c)
{
    c->in.bundle.client = r_str(r, "client");
    c->in.bundle.client_order_id = r_str(r, "client_order_id");
    c->in.bundle.sku = r_str(r, "sku");
    c->in.bundle.quantity = r_u32(r, "quantity");
    r_bytes32(r, c->in.bundle.fingerprint, "fingerprint");
    c->in.bundle.retry_of = r_u64(r, "retry_of");
    c->in.bundle.retry_no = r_u32(r, "retry_no");
    uint32_t n = r_u32(r, "targets");
    if (!r->rc && n > 64) {
        r_fail(r, "targets", "too many");
        return;
    }
    ph_attempt_target *t = r->rc ? NULL : a_alloc(r->a, n * sizeof *t);
    if (!r->rc && !t) {
        r_fail(r, "targets", NULL);
        return;
    }
    for (uint32_t i = 0; !r->rc && i < n; i++)
        r_target(r, &t[i], "targets.supplier", "targets.product_id", "targets.unit_cost");
    c->in.bundle.targets = t;
    c->in.bundle.ntargets = n;
    c->in.bundle.account_sealed = r_blob(r, &c->in.bundle.account_sealed_len, "account_sealed");
    c->in.bundle.account_masked = r_str(r, "account_masked");
    c->in.bundle.risk = r_risk(r);
    c->in.bundle.grant = r->version >= 5 ? r_grant(r) : NULL;
}

static void decode_attempt(rd *r, ph_cmd *c)
{
    c->in.attempt.order_id = r_u64(r, "order_id");
    c->in.attempt.no = r_u32(r, "no");
    c->in.attempt.state = r_i32(r, "state");
    c->in.attempt.reason = r_str(r, "reason");
    c->in.attempt.supplier_order_id = r_str(r, "supplier_order_id");
    c->in.attempt.step_state = r_str(r, "step_state");
    c->in.attempt.step = r_i64(r, "step");
    c->in.attempt.charged = r_i64(r, "charged");
    c->in.attempt.next_check_at = r_i64(r, "next_check_at");
    c->in.attempt.count_check = r_i32(r, "count_check");
    size_t n = r_count(r, 32 + 8 + 4, "codes");
    ph_supplied_code *codes = a_alloc(r->a, n * sizeof *codes);
    if (!codes) {
        r_fail(r, "codes", NULL);
        return;
    }
    for (size_t i = 0; i < n && !r->rc; i++) {
        r_bytes32(r, codes[i].hash, "codes.hash");
        codes[i].expires_at = r_i64(r, "codes.expires_at");
        codes[i].sealed = r_blob(r, &codes[i].sealed_len, "codes.sealed");
    }
    c->in.attempt.codes = n ? codes : NULL;
    c->in.attempt.ncodes = n;
    r_target(r, &c->in.attempt.next, "next.supplier", "next.product_id", "next.unit_cost");
    /* added with issue 11, in version 2: a version-1 journal has none */
    if (r->version >= 2) {
        c->in.attempt.mark_stuck = r_i32(r, "mark_stuck");
        c->in.attempt.delivered = r_i64(r, "delivered");
        c->in.attempt.tolerance = r_i64(r, "tolerance");
        c->in.attempt.face_value = r_i64(r, "face_value");
        c->in.attempt.late_check_at = r_i64(r, "late_check_at");
    }
}

static void decode_settle(rd *r, ph_cmd *c)
{
    c->in.settle.order_id = r_u64(r, "order_id");
    c->in.settle.outcome = r_i32(r, "outcome");
    c->in.settle.by = r_str(r, "by");
    c->in.settle.note = r_str(r, "note");
    c->in.settle.charged = r_i64(r, "charged");
    c->in.settle.supplier_order_id = r_str(r, "supplier_order_id");
}

/* The audit member (version 2): a flag, then its strings, kept in the arena
 * with the ph_audit they fill. */
static void decode_replenish(rd *r, ph_cmd *c)
{
    c->in.replenish.sku = r_str(r, "sku");
    c->in.replenish.below = r_u32(r, "below");
    c->in.replenish.to = r_u32(r, "to");
    c->in.replenish.max_unit_cost = r_i64(r, "max_unit_cost");
    c->in.replenish.max_per_day = r_i64(r, "max_per_day");
    size_t n = r_count(r, 4 + 4 + 8, "offers"); /* two lengths and a cost at least */
    ph_attempt_target *t = n ? a_alloc(r->a, n * sizeof *t) : NULL;
    if (n && !t) {
        r_fail(r, "offers", NULL);
        return;
    }
    for (size_t i = 0; i < n && !r->rc; i++)
        r_target(r, &t[i], "offers.supplier", "offers.product_id", "offers.unit_cost");
    c->in.replenish.offers = t;
    c->in.replenish.noffers = n;
}

static void decode_audit(rd *r, ph_cmd *c)
{
    const uint8_t *flag = r_take(r, 1, "audit");
    if (!flag || !*flag)
        return;
    if (*flag != 1) {
        r_fail(r, "audit", "flag neither 0 nor 1");
        return;
    }
    ph_audit *a = a_alloc(r->a, sizeof *a);
    if (!a) {
        r_fail(r, "audit", NULL);
        return;
    }
    a->action = r_str(r, "audit.action");
    a->client = r_str(r, "audit.client");
    a->peer = r_str(r, "audit.peer");
    a->request_id = r_str(r, "audit.request_id");
    a->via = r_str(r, "audit.via");
    a->what = r_str(r, "audit.what");
    c->audit = a;
}

/* Copies a string field into a fixed buffer of a line: too long is malformed. */
static void r_fixed(rd *r, char *dst, size_t size, const char *field)
{
    const char *t = r_str(r, field);
    if (!t)
        return;
    if (strlen(t) >= size)
        r_fail(r, field, "too long");
    else
        memcpy(dst, t, strlen(t) + 1);
}

static void decode_wh_create(rd *r, ph_cmd *c)
{
    c->in.wh.endpoint = r_str(r, "endpoint");
    c->in.wh.cursor_from = r_u64(r, "cursor_from");
    c->in.wh.cursor_to = r_u64(r, "cursor_to");
    size_t n = r_count(r, 8 + 8 + 4, "dels");
    ph_wh_new *d = a_alloc(r->a, n * sizeof *d);
    if (!d) {
        r_fail(r, "dels", NULL);
        return;
    }
    for (size_t i = 0; i < n && !r->rc; i++) {
        d[i].seq = r_u64(r, "dels.seq");
        d[i].order_id = r_u64(r, "dels.order_id");
        r_fixed(r, d[i].type, sizeof d[i].type, "dels.type");
    }
    c->in.wh.dels = d;
    c->in.wh.ndels = n;
}

static void decode_wh_result(rd *r, ph_cmd *c)
{
    size_t n = r_count(r, 4 + 4 + 8 + 8 + 4 + 4, "answers");
    ph_wh_answer *a = a_alloc(r->a, n * sizeof *a);
    if (!a) {
        r_fail(r, "answers", NULL);
        return;
    }
    for (size_t i = 0; i < n && !r->rc; i++) {
        a[i].endpoint = r_str(r, "answers.endpoint");
        a[i].error = r_str(r, "answers.error");
        a[i].seq = r_u64(r, "answers.seq");
        a[i].next_at = r_i64(r, "answers.next_at");
        a[i].status = r_i32(r, "answers.status");
        a[i].outcome = r_i32(r, "answers.outcome");
    }
    c->in.wh.answers = a;
    c->in.wh.nanswers = n;
}

static void decode_recon(rd *r, ph_cmd *c)
{
    c->in.recon.supplier = r_str(r, "supplier");
    c->in.recon.client = r_str(r, "client");
    c->in.recon.source = r_str(r, "source");
    c->in.recon.from = r_i64(r, "from");
    c->in.recon.to = r_i64(r, "to");
    r_bytes32(r, c->in.recon.sha256, "sha256");
    size_t n = r_count(r, 4 + 4 + 4 + 8 + 8 + 4 + 8 + 4, "lines");
    ph_recon_line *lines = a_alloc(r->a, n * sizeof *lines);
    ph_recon_ref *cand = a_alloc(r->a, n * sizeof *cand);
    if (!lines || !cand) {
        r_fail(r, "lines", NULL);
        return;
    }
    for (size_t i = 0; i < n && !r->rc; i++) {
        lines[i].line = r_u32(r, "lines.line");
        r_fixed(r, lines[i].ref, sizeof lines[i].ref, "lines.ref");
        r_fixed(r, lines[i].supplier_order_id, sizeof lines[i].supplier_order_id,
                "lines.supplier_order_id");
        lines[i].amount = r_i64(r, "lines.amount");
        lines[i].time = r_i64(r, "lines.time");
        lines[i].charged = r_i32(r, "lines.charged");
        cand[i].order_id = r_u64(r, "lines.order_id");
        cand[i].no = r_u32(r, "lines.no");
    }
    c->in.recon.lines = lines;
    c->in.recon.cand = cand;
    c->in.recon.nlines = n;
    size_t m = r_count(r, 12, "unbilled");
    ph_recon_ref *ub = a_alloc(r->a, m * sizeof *ub);
    if (!ub) {
        r_fail(r, "unbilled", NULL);
        return;
    }
    for (size_t i = 0; i < m && !r->rc; i++) {
        ub[i].order_id = r_u64(r, "unbilled.order_id");
        ub[i].no = r_u32(r, "unbilled.no");
    }
    c->in.recon.unbilled = ub;
    c->in.recon.nunbilled = m;
}

static void decode_reseal(rd *r, ph_cmd *c)
{
    uint32_t key = r_u32(r, "key_id");
    if (!r->rc && key > UINT16_MAX)
        r_fail(r, "key_id", "over 65535");
    c->in.reseal.key_id = (uint16_t)key;
    size_t n = r_count(r, 4 + 8 + 4 + 4, "items");
    ph_reseal_item *items = a_alloc(r->a, n * sizeof *items);
    if (!items) {
        r_fail(r, "items", NULL);
        return;
    }
    for (size_t i = 0; i < n && !r->rc; i++) {
        uint32_t ol = 0, nl = 0;
        items[i].kind = r_i32(r, "items.kind");
        items[i].id = r_u64(r, "items.id");
        items[i].old_sealed = r_blob(r, &ol, "items.old_sealed");
        items[i].new_sealed = r_blob(r, &nl, "items.new_sealed");
        items[i].len = ol;
        if (!r->rc && ol != nl)
            r_fail(r, "items.new_sealed", "not as long as old_sealed");
    }
    c->in.reseal.items = items;
    c->in.reseal.n = n;
    size_t m = r_count(r, 4, "forget");
    uint16_t *forget = a_alloc(r->a, m * sizeof *forget);
    if (!forget) {
        r_fail(r, "forget", NULL);
        return;
    }
    for (size_t i = 0; i < m && !r->rc; i++) {
        uint32_t id = r_u32(r, "forget");
        if (!r->rc && id > UINT16_MAX)
            r_fail(r, "forget", "over 65535");
        forget[i] = (uint16_t)id;
    }
    c->in.reseal.forget = forget;
    c->in.reseal.nforget = m;
}

static void decode_sync(rd *r, ph_cmd *c)
{
    c->in.sync.supplier = r_str(r, "supplier");
    c->in.sync.kind = r_i32(r, "kind");
    size_t n = r_count(r, 24, "items");
    ph_sync_item *items = a_alloc(r->a, n * sizeof *items);
    if (!items) {
        r_fail(r, "items", NULL);
        return;
    }
    for (size_t i = 0; i < n && !r->rc; i++) {
        items[i].product_id = r_str(r, "product_id");
        items[i].cost = r_i64(r, "cost");
        items[i].stock = r_i64(r, "stock");
        items[i].on_sale = r_i32(r, "on_sale");
    }
    c->in.sync.items = items;
    c->in.sync.n = n;
}

static int decode_cmd(rd *r, ph_cmd *c, int *rc_out)
{
    const uint8_t *t = r_take(r, 1, "type");
    if (!t)
        return r->rc;
    c->type = *t;
    r->kind = ph_cmd_type_name(c->type);
    c->now = r_i64(r, "now");
    *rc_out = r_i32(r, "rc");
    switch (c->type) {
    case PH_CMD_IMPORT:
        decode_import(r, c);
        break;
    case PH_CMD_ORDER:
        c->in.order.client = r_str(r, "client");
        c->in.order.client_order_id = r_str(r, "client_order_id");
        c->in.order.sku = r_str(r, "sku");
        c->in.order.quantity = r_u32(r, "quantity");
        r_bytes32(r, c->in.order.fingerprint, "fingerprint");
        c->in.order.risk = r_risk(r);
        c->in.order.grant = r_grant(r);
        break;
    case PH_CMD_VOID_BATCH:
        c->in.void_batch.batch_id = r_u64(r, "batch_id");
        c->in.void_batch.reason = r_str(r, "reason");
        break;
    case PH_CMD_PUT_PRODUCTS: {
        size_t n = r_count(r, 4, "json");
        const char **json = a_alloc(r->a, n * sizeof *json);
        if (!json)
            return r_fail(r, "json", NULL);
        for (size_t i = 0; i < n && !r->rc; i++)
            if (!(json[i] = r_str(r, "json")) && !r->rc)
                r_fail(r, "json", "NULL product");
        c->in.products.json = json;
        c->in.products.n = n;
        break;
    }
    case PH_CMD_SUPPLY_CREATE:
        decode_supply(r, c);
        break;
    case PH_CMD_ATTEMPT:
        decode_attempt(r, c);
        break;
    case PH_CMD_EXPIRE:
        c->in.expire.limit = r_u32(r, "limit");
        break;
    case PH_CMD_JOB_RAN:
    case PH_CMD_JOB_ASK:
        c->in.job.id = r_str(r, "id");
        c->in.job.started_at = r_i64(r, "started_at");
        c->in.job.ended_at = r_i64(r, "ended_at");
        c->in.job.ok = r_i32(r, "ok");
        c->in.job.outcome = r_str(r, "outcome");
        c->in.job.manual = r_i32(r, "manual");
        c->in.job.next_due = r_i64(r, "next_due");
        /* runs came later: a journal written without it reads 0 (one run) */
        c->in.job.runs = r->left >= 4 ? r_u32(r, "runs") : 0;
        break;
    case PH_CMD_BALANCE:
        c->in.balance.supplier = r_str(r, "supplier");
        c->in.balance.balance = r_i64(r, "balance");
        c->in.balance.below = r_i64(r, "below");
        break;
    case PH_CMD_ALERT_ACK:
        c->in.alert_ack.id = r_u64(r, "id");
        c->in.alert_ack.by = r_str(r, "by");
        c->in.alert_ack.note = r_str(r, "note");
        break;
    case PH_CMD_NOTE_EVENT:
        c->in.note.name = r_str(r, "name");
        c->in.note.fields = r_str(r, "fields");
        break;
    case PH_CMD_WH_CREATE:
        decode_wh_create(r, c);
        break;
    case PH_CMD_WH_RESULT:
        decode_wh_result(r, c);
        break;
    case PH_CMD_WH_ENABLE:
    case PH_CMD_WH_REPLAY:
        c->in.wh.endpoint = r_str(r, "endpoint");
        c->in.wh.json = r_str(r, "json");
        break;
    case PH_CMD_SETTLE:
        decode_settle(r, c);
        break;
    case PH_CMD_RECON:
        decode_recon(r, c);
        break;
    case PH_CMD_FINAL_WORD:
        c->in.word.order_id = r_u64(r, "order_id");
        c->in.word.no = r_u32(r, "no");
        c->in.word.source = r_i32(r, "source");
        c->in.word.state = r_i32(r, "state");
        c->in.word.charged = r_i64(r, "charged");
        c->in.word.delivered = r_i64(r, "delivered");
        c->in.word.tolerance = r_i64(r, "tolerance");
        c->in.word.late_due = r_i64(r, "late_due");
        break;
    case PH_CMD_RESOLVE:
        c->in.resolve.id = r_u64(r, "id");
        c->in.resolve.accept = r_i32(r, "accept");
        c->in.resolve.who = r_str(r, "who");
        c->in.resolve.note = r_str(r, "note");
        break;
    case PH_CMD_RESEAL:
        decode_reseal(r, c);
        break;
    case PH_CMD_CODE_REDEEMED:
        r_bytes32(r, c->in.redeem.hash, "hash");
        c->in.redeem.redeemed_at = r_i64(r, "redeemed_at");
        break;
    case PH_CMD_SYNC:
        decode_sync(r, c);
        break;
    case PH_CMD_PIN:
        c->in.pin.sku = r_str(r, "sku");
        c->in.pin.pin = r_i32(r, "pin");
        break;
    case PH_CMD_RISK_RULE:
        c->in.risk_rule.id = r_str(r, "id");
        c->in.risk_rule.json = r_str(r, "json");
        c->in.risk_rule.remove = r_i32(r, "remove");
        c->in.risk_rule.expect_version = r_u32(r, "expect_version");
        c->in.risk_rule.create = r_i32(r, "create");
        c->in.risk_rule.replace = r_i32(r, "replace");
        break;
    case PH_CMD_RISK_LIST:
        c->in.risk_list.remove = r_i32(r, "remove");
        c->in.risk_list.list = r_i32(r, "list");
        c->in.risk_list.var = r_i32(r, "var");
        c->in.risk_list.key = r_u64(r, "key");
        c->in.risk_list.expires_at = r_i64(r, "expires_at");
        c->in.risk_list.masked = r_str(r, "masked");
        c->in.risk_list.note = r_str(r, "note");
        break;
    case PH_CMD_REPLENISH:
        decode_replenish(r, c);
        break;
    case PH_CMD_REVIEW:
        c->in.review.order_id = r_u64(r, "order_id");
        c->in.review.release = r_i32(r, "release");
        c->in.review.who = r_str(r, "who");
        c->in.review.note = r_str(r, "note");
        r_target(r, &c->in.review.first, "first.supplier", "first.product_id", "first.unit_cost");
        c->in.review.fail_reason = r_str(r, "fail_reason");
        r_targets(r, c->in.review.targets, &c->in.review.ntargets);
        break;
    case PH_CMD_GRANT:
        decode_grant(r, c);
        break;
    case PH_CMD_GRANT_BATCH:
        decode_grant_batch(r, c);
        break;
    case PH_CMD_BUNDLE:
        decode_bundle(r, c);
        break;
    default:
        r->kind = "?";
        return r_fail(r, "type", "unknown command type");
    }
    if (r->version >= 2)
        decode_audit(r, c);
    if (!r->rc && r->left)
        r_fail(r, "length", "bytes left after the last field");
    return r->rc;
}

void ph_cmd_batch_free(ph_cmd_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; b->cmds && i < b->n; i++)
        ph_cmd_clear(&b->cmds[i]);
    a_free(b->arena);
    memset(b, 0, sizeof *b);
}

int ph_cmd_batch_decode(const uint8_t *p, size_t len, ph_cmd_batch *out, ph_err *err)
{
    memset(out, 0, sizeof *out);
    arena *a = calloc(1, sizeof *a);
    if (!a)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    out->arena = a;
    rd top = {.p = p, .left = len, .a = a, .err = err, .kind = NULL};
    const uint8_t *ver = r_take(&top, 1, "version");
    if (ver && (*ver < 1 || *ver > PH_CMD_CODEC_VERSION)) {
        ph_err_set(err, PH_EINVAL, "batch: version %u, this perkhubd reads versions 1 to %d", *ver,
                   PH_CMD_CODEC_VERSION);
        ph_cmd_batch_free(out);
        return PH_EINVAL;
    }
    size_t n = r_count(&top, 4 + 13, "ncmds");
    if (top.rc) {
        ph_cmd_batch_free(out);
        return top.rc;
    }
    out->cmds = a_alloc(a, n * sizeof *out->cmds);
    out->rcs = a_alloc(a, n * sizeof *out->rcs);
    if (!out->cmds || !out->rcs) {
        ph_cmd_batch_free(out);
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    int rc = PH_OK;
    for (size_t i = 0; i < n && rc == PH_OK; i++) {
        rd r = {.a = a, .err = err, .idx = i, .kind = "?", .version = *ver};
        uint32_t clen = r_u32(&top, "length");
        r.p = r_take(&top, clen, "length");
        r.left = clen;
        if (top.rc) {
            rc = ph_err_set(err, PH_EINVAL, "command %zu: length: truncated", i);
            break;
        }
        rc = decode_cmd(&r, &out->cmds[i], &out->rcs[i]);
        out->n = i + 1;
    }
    if (rc == PH_OK && top.left)
        rc = ph_err_set(err, PH_EINVAL, "batch: %zu bytes after the last command", top.left);
    if (rc) {
        out->n = n; /* every slot is zeroed or decoded: clear them all */
        ph_cmd_batch_free(out);
        return rc;
    }
    out->n = n;
    for (size_t i = 0; i + 1 < n; i++)
        out->cmds[i].next = &out->cmds[i + 1];
    return PH_OK;
}

/* ---- the journal file -------------------------------------------------------- */

struct ph_journal {
    int fd;
    char path[256];
    uint64_t seq;
    int broken; /* an append failed: never closed cleanly */
};

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
    return get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The whole file into *buf (malloc'd); *len 0 with *buf NULL when missing. */
static int read_file(const char *path, uint8_t **buf, size_t *len, int missing_ok, ph_err *err)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (missing_ok && errno == ENOENT)
            return PH_OK;
        return ph_err_set(err, PH_EIO, "journal %s: %s", path, strerror(errno));
    }
    size_t cap = 0;
    uint8_t *p = NULL;
    for (;;) {
        if (*len == cap) {
            cap = cap ? cap * 2 : 65536;
            uint8_t *g = realloc(p, cap);
            if (!g) {
                free(p);
                fclose(f);
                return ph_err_set(err, PH_ENOMEM, "out of memory");
            }
            p = g;
        }
        size_t n = fread(p + *len, 1, cap - *len, f);
        *len += n;
        if (n == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(p);
        return ph_err_set(err, PH_EIO, "journal %s: read error", path);
    }
    *buf = p;
    return PH_OK;
}

/* One pass over a journal's records: the header's uid, then each record. */
typedef struct jwalk {
    const uint8_t *p;
    size_t len, off;
    uint64_t seq; /* of the last batch record */
    int closed;   /* the last record was a close record */
    const char *path;
} jwalk;

static int walk_header(jwalk *w, char uid[9], ph_err *err)
{
    if (w->len < sizeof JOURNAL_MAGIC + 8 || memcmp(w->p, JOURNAL_MAGIC, sizeof JOURNAL_MAGIC))
        return ph_err_set(err, PH_EINVAL, "journal %s: not a perkhub journal (version 1)", w->path);
    memcpy(uid, w->p + sizeof JOURNAL_MAGIC, 8);
    uid[8] = 0;
    w->off = sizeof JOURNAL_MAGIC + 8;
    w->closed = 1; /* an empty journal is complete */
    return PH_OK;
}

/* The next batch record into *batch and *blen; PH_ENOTFOUND at the end. */
static int walk_next(jwalk *w, const uint8_t **batch, size_t *blen, ph_err *err)
{
    while (w->off < w->len) {
        if (w->len - w->off < 12)
            return ph_err_set(err, PH_EINVAL, "journal %s: torn record at byte %zu", w->path,
                              w->off);
        uint32_t n = get_u32(w->p + w->off);
        uint64_t seq = get_u64(w->p + w->off + 4);
        if (n > w->len - w->off - 12)
            return ph_err_set(err, PH_EINVAL, "journal %s: torn record at byte %zu", w->path,
                              w->off);
        if (seq != w->seq + (n ? 1 : 0))
            return ph_err_set(err, PH_EINVAL,
                              "journal %s: record at byte %zu has seq %llu after %llu", w->path,
                              w->off, (unsigned long long)seq, (unsigned long long)w->seq);
        *batch = w->p + w->off + 12;
        *blen = n;
        w->off += 12 + (size_t)n;
        w->closed = n == 0;
        if (n == 0)
            continue; /* a clean close (and maybe a restart after it) */
        w->seq = seq;
        return PH_OK;
    }
    return PH_ENOTFOUND;
}

int ph_journal_open(const char *path, const char *uid, int store_empty, ph_journal **out,
                    ph_err *err)
{
    uint8_t *buf;
    size_t len;
    int rc = read_file(path, &buf, &len, 1, err);
    if (rc)
        return rc;
    jwalk w = {.p = buf, .len = len, .path = path};
    char juid[9];
    if (len && (rc = walk_header(&w, juid, err)) == PH_OK && strcmp(juid, uid))
        rc = ph_err_set(err, PH_EINVAL, "journal %s: belongs to store %s, this store is %s", path,
                        juid, uid);
    const uint8_t *b;
    size_t bl;
    while (len && rc == PH_OK && (rc = walk_next(&w, &b, &bl, err)) == PH_OK)
        ;
    if (rc == PH_ENOTFOUND)
        rc = PH_OK;
    if (rc == PH_OK && len && !w.closed)
        rc = ph_err_set(err, PH_EINVAL,
                        "journal %s: the last run did not close it, so it may lack batches; "
                        "move it away",
                        path);
    if (rc == PH_OK && !len && !store_empty)
        rc = ph_err_set(err, PH_EINVAL,
                        "journal %s: new, but the store already holds data: a journal must start "
                        "with its store",
                        path);
    free(buf);
    if (rc)
        return rc;
    ph_journal *j = calloc(1, sizeof *j);
    if (!j)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    snprintf(j->path, sizeof j->path, "%s", path);
    j->seq = w.seq;
    j->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (j->fd < 0) {
        free(j);
        return ph_err_set(err, PH_EIO, "journal %s: %s", path, strerror(errno));
    }
    if (!len) {
        uint8_t hdr[sizeof JOURNAL_MAGIC + 8];
        memcpy(hdr, JOURNAL_MAGIC, sizeof JOURNAL_MAGIC);
        memcpy(hdr + sizeof JOURNAL_MAGIC, uid, 8);
        if (write_all(j->fd, hdr, sizeof hdr)) {
            rc = ph_err_set(err, PH_EIO, "journal %s: %s", path, strerror(errno));
            close(j->fd);
            free(j);
            return rc;
        }
    }
    *out = j;
    return PH_OK;
}

static int append_record(ph_journal *j, uint64_t seq, const uint8_t *p, size_t n)
{
    uint8_t hdr[12];
    put_u32(hdr, (uint32_t)n);
    put_u32(hdr + 4, (uint32_t)seq);
    put_u32(hdr + 8, (uint32_t)(seq >> 32));
    return write_all(j->fd, hdr, sizeof hdr) || (n && write_all(j->fd, p, n)) ? -1 : 0;
}

int ph_journal_append(ph_journal *j, const ph_cmd *first, ph_err *err)
{
    if (j->broken)
        return ph_err_set(err, PH_EIO, "journal %s: stopped after an earlier failure", j->path);
    uint8_t *p = NULL;
    size_t n = 0;
    int rc = ph_cmd_batch_encode(first, &p, &n, err);
    if (rc == PH_OK && n > UINT32_MAX)
        rc = ph_err_set(err, PH_EINVAL, "journal %s: a batch over 4 GiB", j->path);
    if (rc == PH_OK && append_record(j, j->seq + 1, p, n))
        rc = ph_err_set(err, PH_EIO, "journal %s: %s", j->path, strerror(errno));
    if (rc == PH_OK)
        j->seq++;
    else
        j->broken = 1;
    free(p);
    return rc;
}

void ph_journal_close(ph_journal *j)
{
    if (!j)
        return;
    if (!j->broken)
        append_record(j, j->seq, NULL, 0);
    close(j->fd);
    free(j);
}

/* ---- replay -------------------------------------------------------------------- */

/* Submits the batch as one list, so the writer takes it as one batch, and
 * waits for every command; then compares each rc with the recorded one. */
int ph_cmd_batch_apply(ph_store *s, ph_cmd_batch *b, ph_err *err)
{
    int rc = b->n ? ph_store_exec_list(s, &b->cmds[0]) : PH_OK;
    if (rc)
        return ph_err_set(err, rc, "%s", b->cmds[0].err.msg);
    for (size_t i = 0; i < b->n; i++)
        if (b->cmds[i].rc != b->rcs[i])
            return ph_err_set(err, b->cmds[i].rc == PH_EUNAVAIL ? PH_EUNAVAIL : PH_EINVAL,
                              "command %zu (%s): recorded %s, replay gave %s%s%s", i,
                              ph_cmd_type_name(b->cmds[i].type), ph_strerror(b->rcs[i]),
                              ph_strerror(b->cmds[i].rc), b->cmds[i].rc ? ": " : "",
                              b->cmds[i].err.msg);
    return PH_OK;
}

static int replay_batch(ph_store *s, ph_cmd_batch *b, uint64_t seq, const char *path, ph_err *err)
{
    int rc = ph_cmd_batch_apply(s, b, err);
    if (rc) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        ph_err_set(err, rc, "journal %s: batch %llu: %s", path, (unsigned long long)seq, msg);
    }
    return rc;
}

int ph_journal_replay(const char *path, const char *dir, const ph_keyring *keys,
                      ph_replay_stats *stats, ph_err *err)
{
    memset(stats, 0, sizeof *stats);
    char mdb[1024];
    struct stat st;
    snprintf(mdb, sizeof mdb, "%s/data.mdb", dir);
    if (stat(mdb, &st) == 0)
        return ph_err_set(err, PH_EINVAL,
                          "replay: %s holds a store already; replay needs an empty directory", dir);
    uint8_t *buf;
    size_t len;
    int rc = read_file(path, &buf, &len, 0, err);
    if (rc)
        return rc;
    jwalk w = {.p = buf, .len = len, .path = path};
    char uid[9];
    ph_store *s = NULL;
    if ((rc = walk_header(&w, uid, err)) == PH_OK) {
        ph_store_opts o = {.dir = dir, .uid = uid, .keys = keys};
        rc = ph_store_open(&o, &s, err);
    }
    const uint8_t *b;
    size_t bl;
    while (rc == PH_OK && (rc = walk_next(&w, &b, &bl, err)) == PH_OK) {
        ph_cmd_batch batch;
        if ((rc = ph_cmd_batch_decode(b, bl, &batch, err)) != PH_OK) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err->msg);
            ph_err_set(err, rc, "journal %s: batch %llu: %s", path, (unsigned long long)w.seq, msg);
            break;
        }
        rc = replay_batch(s, &batch, w.seq, path, err);
        stats->batches++;
        stats->commands += batch.n;
        ph_cmd_batch_free(&batch);
    }
    if (rc == PH_ENOTFOUND)
        rc = w.closed ? PH_OK
                      : ph_err_set(err, PH_EINVAL,
                                   "journal %s: ends without a close record after batch %llu: "
                                   "the daemon did not stop cleanly or a write failed",
                                   path, (unsigned long long)w.seq);
    ph_store_close(s);
    free(buf);
    return rc;
}
