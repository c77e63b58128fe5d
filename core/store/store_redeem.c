/*
 * store_redeem.c — PH_CMD_CODE_REDEEMED: a supplier's word that a code we
 * issued was redeemed (store.h; docs/store.md, "Redemption").
 *
 * The code is named by its keyed hash as the code index holds it, so the
 * command (and the journal that replays it) never carries the code. The
 * move is issued -> redeemed, once: redeemed is final like voided and
 * expired, and a second report of the same redemption changes nothing. The
 * time is the command's: the supplier's redeemed_at is kept only when it is
 * believable (not before the code was issued, not after the command's now),
 * so the write stays a deterministic function of the command.
 *
 * Not a hot path (a customer-service lookup's answer): it runs in the
 * writer's nested transaction like every command but orders, and rewrites one
 * code record in place.
 */
#include "store/store_int.h"

#include <stdlib.h>
#include <string.h>

/* The code id the index names for hash; PH_ENOTFOUND when none. */
static int code_by_hash(ph_wtxn *w, ph_cmd *c, uint64_t *id)
{
    MDB_val k = {32, c->in.redeem.hash}, v;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_CODE_HASH], &k, &v);
    if (mrc == MDB_NOTFOUND)
        return ph_err_set(&c->err, PH_ENOTFOUND, "code_redeemed: no code has this hash");
    if (mrc)
        return ph_store_lmdb_err(&c->err, mrc, "read code index");
    if (v.mv_size != 8)
        return ph_err_set(&c->err, PH_EIO, "code index: malformed entry");
    memcpy(id, v.mv_data, 8);
    return PH_OK;
}

/* The batch's SKU for the event; PH_EIO when the batch is unreadable. */
static int batch_sku(ph_wtxn *w, ph_cmd *c, uint64_t batch_id, ph_batch *b)
{
    MDB_val k = {8, &batch_id}, v;
    int mrc = mdb_get(w->txn, w->s->dbi[DB_BATCHES], &k, &v);
    if (mrc)
        return ph_store_lmdb_err(&c->err, mrc, "read batch");
    if (ph_batch_decode(&v, batch_id, b, NULL))
        return ph_err_set(&c->err, PH_EIO, "batch %llu: malformed record",
                          (unsigned long long)batch_id);
    return PH_OK;
}

int store_apply_code_redeemed(ph_wtxn *w, ph_cmd *c)
{
    uint64_t id = 0;
    int rc = code_by_hash(w, c, &id);
    if (rc)
        return rc;
    ph_code_rec rec;
    const uint8_t *sealed;
    if ((rc = store_get_code(w, id, &rec, &sealed, &c->err)) != PH_OK)
        return rc;
    c->code_id = id;
    if (rec.state == PH_CODE_REDEEMED)
        return PH_OK; /* idempotent: the first report stands */
    if (rec.state != PH_CODE_ISSUED)
        return ph_err_set(&c->err, PH_ESTATE, "code %llu is %s, not issued", (unsigned long long)id,
                          ph_code_state_name(rec.state));
    ph_batch b;
    if ((rc = batch_sku(w, c, rec.batch_id, &b)) != PH_OK)
        return rc;
    int64_t at = c->in.redeem.redeemed_at;
    rec.changed_at = at >= rec.changed_at && at <= c->now && at > 0 ? at : c->now;
    rec.state = PH_CODE_REDEEMED;
    /* store_put_code reserves the record again: copy the blob out of the page first */
    uint8_t *blob = malloc(rec.sealed_len ? rec.sealed_len : 1);
    if (!blob)
        return ph_err_set(&c->err, PH_ENOMEM, "out of memory");
    memcpy(blob, sealed, rec.sealed_len);
    rc = store_put_code(w, id, &rec, blob, 0, &c->err);
    free(blob);
    if (rc)
        return rc;
    c->code_changed = 1;
    return store_emit(w, c->now, "code.redeemed",
                      json_pack("{s:I,s:s,s:I}", "batch_id", (json_int_t)rec.batch_id, "sku", b.sku,
                                "code_id", (json_int_t)id),
                      &c->err);
}
