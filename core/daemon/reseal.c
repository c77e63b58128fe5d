/*
 * reseal.c — the re-sealer: one thread owned by the daemon that, while a key
 * older than the newest still seals data, moves that data to the newest key
 * (keys.h). It follows the expiry sweep's pattern (daemon.c): a thread that
 * only submits commands and waits on a condition variable between them, so a
 * stop is prompt. Pacing: after each batch it waits four times as long as the
 * batch took (at least PH_RESEAL_PAUSE_MS), so it takes at most a fifth of
 * the writer's time and less when the writer is busy: orders keep flowing.
 */
#include "daemon/keys.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/util.h"

#define PH_RESEAL_PAUSE_MS 50
#define PH_RESEAL_RETRY_MS 10000

typedef struct ph_resealer {
    ph_daemon *d;
    pthread_t thread;
    pthread_mutex_t mu; /* guards stop */
    pthread_cond_t cv;  /* signalled to stop; on CLOCK_MONOTONIC */
    int stop;
    ph_reseal_status st; /* this thread's; published copies go to the store */
} ph_resealer;

/* Waits ms or until stopped; 1 when stopping. */
static int pause_ms(ph_resealer *rs, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&rs->mu);
    while (!rs->stop && pthread_cond_timedwait(&rs->cv, &rs->mu, &ts) != ETIMEDOUT)
        ;
    int stop = rs->stop;
    pthread_mutex_unlock(&rs->mu);
    return stop;
}

static void publish(ph_resealer *rs)
{
    ph_store_reseal_status_set(rs->d->store, &rs->st);
}

static void fail(ph_resealer *rs, const char *what, const ph_err *err)
{
    rs->st.state = PH_RESEAL_FAILED;
    snprintf(rs->st.detail, sizeof rs->st.detail, "%.40s: %.150s", what, err->msg);
    publish(rs);
    ph_log(&rs->d->log, PH_LOG_ERROR, NULL, "keys.reseal_failed",
           "detail=\"%s\" effect=\"retried in 10 s\"", rs->st.detail);
}

/* The check values of key ids the key file no longer has: the open refused
 * the start if any data still needed one, so they can go (keys retire). */
static int forget_retired(ph_resealer *rs)
{
    ph_daemon *d = rs->d;
    uint16_t ids[64], gone[64];
    size_t n = ph_store_key_ids(d->store, ids, 64), ngone = 0;
    for (size_t i = 0; i < n && i < 64; i++)
        if (!ph_keyring_has(d->keys, ids[i]))
            gone[ngone++] = ids[i];
    if (!ngone)
        return PH_OK;
    json_t *list = json_array();
    for (size_t i = 0; i < ngone; i++)
        json_array_append_new(list, json_integer(gone[i]));
    json_t *what = json_pack("{s:o}", "key_ids", list); /* ids only: fits audit.what */
    char *txt = what ? json_dumps(what, JSON_COMPACT) : NULL;
    json_decref(what);
    /* the retirement was done by `perkhubd keys retire`; this start is where
     * the store learns of it (via: cli) */
    ph_audit audit = {.action = "keys.retire", .via = "cli", .what = txt ? txt : "{}"};
    ph_cmd cmd = {.type = PH_CMD_RESEAL, .now = ph_now_ms(), .audit = &audit};
    cmd.in.reseal.key_id = ph_keyring_active_id(d->keys);
    cmd.in.reseal.forget = gone;
    cmd.in.reseal.nforget = ngone;
    int rc = ph_store_exec(d->store, &cmd);
    if (rc == PH_OK)
        ph_log(&d->log, PH_LOG_INFO, NULL, "keys.retired",
               "key_ids=%s detail=\"no data needs them: their check values are dropped\"",
               txt ? txt : "");
    else
        fail(rs, "dropping retired key checks", &cmd.err);
    ph_cmd_clear(&cmd);
    ph_json_free(txt);
    return rc;
}

/* Counts what each key id protects; the older ones go to st.old. With
 * `again`, the older keys listed stay listed (at 0 once moved). */
static int count(ph_resealer *rs, int again)
{
    ph_key_use use[PH_KEY_USE_MAX];
    size_t n = 0;
    ph_err err = {0};
    int rc = ph_store_key_use(rs->d->store, use, &n, &err);
    if (rc != PH_OK) {
        fail(rs, "counting sealed items", &err);
        return rc;
    }
    if (again) {
        for (size_t j = 0; j < rs->st.nold; j++) {
            rs->st.old[j].codes = rs->st.old[j].accounts = 0;
            for (size_t i = 0; i < n; i++)
                if (use[i].id == rs->st.old[j].id)
                    rs->st.old[j] = use[i];
        }
        return PH_OK;
    }
    rs->st.nold = 0;
    for (size_t i = 0; i < n; i++)
        if (use[i].id != rs->st.key_id && rs->st.nold < 8)
            rs->st.old[rs->st.nold++] = use[i];
    return PH_OK;
}

/* Moves everything sealed with old->id; 1 when stopping, -1 after a failure. */
static int move_key(ph_resealer *rs, ph_key_use *old, int *first)
{
    ph_daemon *d = rs->d;
    char what[160];
    snprintf(what, sizeof what,
             "{\"key_id\":%u,\"from_key_id\":%u,\"codes\":%llu,\"accounts\":%llu}",
             (unsigned)rs->st.key_id, (unsigned)old->id, (unsigned long long)old->codes,
             (unsigned long long)old->accounts);
    ph_audit started = {.action = "keys.reseal_started", .via = "daemon", .what = what};
    for (;;) { /* passes: a pass that skipped nothing leaves nothing under old->id */
        ph_reseal_pos pos = {0};
        uint64_t skipped = 0, unreadable = 0;
        while (pos.phase < 2) {
            ph_reseal_step_result res;
            ph_err err = {0};
            int64_t t0 = ph_now_ms();
            int rc = ph_store_reseal_step(d->store, old->id, &pos, PH_RESEAL_BATCH,
                                          *first ? &started : NULL, &res, &err);
            if (rc != PH_OK) {
                fail(rs, "re-sealing", &err);
                return -1;
            }
            *first = 0;
            skipped += res.skipped;
            unreadable += res.unreadable;
            rs->st.moved += res.moved;
            rs->st.skipped += res.skipped;
            uint64_t left = old->codes + old->accounts;
            uint64_t m = res.moved > left ? left : res.moved;
            uint64_t mc = m > old->codes ? old->codes : m;
            old->codes -= mc; /* codes come first in the walk */
            old->accounts -= m - mc;
            publish(rs);
            int64_t took = ph_now_ms() - t0;
            if (pause_ms(rs, took * 4 > PH_RESEAL_PAUSE_MS ? took * 4 : PH_RESEAL_PAUSE_MS))
                return 1;
        }
        if (!skipped) {
            rs->st.unreadable += unreadable;
            if (unreadable)
                ph_log(&d->log, PH_LOG_ERROR, NULL, "keys.reseal_unreadable",
                       "key_id=%u items=%llu detail=\"items sealed with this key do not open "
                       "(damaged); run --check-store\"",
                       (unsigned)old->id, (unsigned long long)unreadable);
            old->codes = old->accounts = 0; /* the exact count below proves it */
            publish(rs);
            return 0;
        }
    }
}

static int reseal_all(ph_resealer *rs)
{
    ph_daemon *d = rs->d;
    if (forget_retired(rs) != PH_OK)
        return -1;
    /* every key id the data uses has a check value (store.h, "Keys"): with none
     * but the newest there is nothing to count, and a start costs no walk */
    uint16_t ids[64];
    size_t n = ph_store_key_ids(d->store, ids, 64), other = 0;
    for (size_t i = 0; i < n && i < 64; i++)
        other += ids[i] != rs->st.key_id && ph_keyring_has(d->keys, ids[i]);
    if (n > 64 || other)
        if (count(rs, 0) != PH_OK)
            return -1;
    if (!rs->st.nold) {
        rs->st.state = PH_RESEAL_IDLE;
        publish(rs);
        return 0;
    }
    rs->st.state = PH_RESEAL_RUNNING;
    rs->st.detail[0] = 0;
    publish(rs);
    ph_log(&d->log, PH_LOG_INFO, NULL, "keys.reseal_started", "key_id=%u older_keys=%zu",
           (unsigned)rs->st.key_id, rs->st.nold);
    int first = 1;
    for (size_t i = 0; i < rs->st.nold; i++) {
        int r = move_key(rs, &rs->st.old[i], &first);
        if (r)
            return r;
    }
    /* recount: what is left now is exact (nothing new is sealed with an old key) */
    if (count(rs, 1) != PH_OK)
        return -1;
    uint64_t left = 0;
    for (size_t i = 0; i < rs->st.nold; i++)
        left += rs->st.old[i].codes + rs->st.old[i].accounts;
    char what[160];
    snprintf(what, sizeof what, "{\"key_id\":%u,\"moved\":%llu,\"left\":%llu}",
             (unsigned)rs->st.key_id, (unsigned long long)rs->st.moved, (unsigned long long)left);
    ph_audit done = {.action = "keys.reseal_done", .via = "daemon", .what = what};
    ph_cmd cmd = {.type = PH_CMD_RESEAL, .now = ph_now_ms(), .audit = &done};
    cmd.in.reseal.key_id = rs->st.key_id;
    int rc = ph_store_exec(d->store, &cmd);
    if (rc != PH_OK) {
        fail(rs, "recording the end", &cmd.err);
        ph_cmd_clear(&cmd);
        return -1;
    }
    ph_cmd_clear(&cmd);
    rs->st.state = PH_RESEAL_DONE;
    publish(rs);
    ph_log(&d->log, PH_LOG_INFO, NULL, "keys.reseal_done", "key_id=%u moved=%llu left=%llu",
           (unsigned)rs->st.key_id, (unsigned long long)rs->st.moved, (unsigned long long)left);
    return 0;
}

static void *reseal_main(void *arg)
{
    ph_resealer *rs = arg;
    for (;;) {
        int r = reseal_all(rs);
        if (r == 1 || (r == 0 && pause_ms(rs, INT64_MAX / 4)))
            break;
        if (r < 0 && pause_ms(rs, PH_RESEAL_RETRY_MS))
            break;
    }
    return NULL;
}

int ph_reseal_start(ph_daemon *d, ph_err *err)
{
    ph_resealer *rs = calloc(1, sizeof *rs);
    if (!rs)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    rs->d = d;
    rs->st.key_id = ph_keyring_active_id(d->keys);
    ph_store_reseal_status_set(d->store, &rs->st);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rs->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&rs->mu, NULL);
    if (pthread_create(&rs->thread, NULL, reseal_main, rs)) {
        pthread_cond_destroy(&rs->cv);
        pthread_mutex_destroy(&rs->mu);
        free(rs);
        return ph_err_set(err, PH_EIO, "daemon: cannot start the re-seal thread");
    }
    d->resealer = rs;
    return PH_OK;
}

void ph_reseal_stop(ph_daemon *d)
{
    ph_resealer *rs = d->resealer;
    if (!rs)
        return;
    pthread_mutex_lock(&rs->mu);
    rs->stop = 1;
    pthread_cond_signal(&rs->cv);
    pthread_mutex_unlock(&rs->mu);
    pthread_join(rs->thread, NULL);
    pthread_cond_destroy(&rs->cv);
    pthread_mutex_destroy(&rs->mu);
    free(rs);
    d->resealer = NULL;
}
