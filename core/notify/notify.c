/*
 * notify.c — webhook delivery: the thread, its endpoints and deliveries
 * (notify.h). The decisions are wh_policy.c's; this file reads, submits and
 * keeps the books.
 */
#include "notify/notify.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "base/lockcheck.h"
#include "base/util.h"
#include "crypto/wipe_alloc.h"
#include "notify/wh_policy.h"
#include "store/event_view.h"
#include "supply/supplier_io.h"

#define NOTIFY_EVENTS_PAGE 512    /* events read per endpoint and pass */
#define NOTIFY_PENDING_MAX 200000 /* pending deliveries an endpoint holds in memory */
#define NOTIFY_HEADERS     6

_Static_assert((int)PH_WH_DELIVERED == (int)PH_WH_OUT_DELIVERED &&
                   (int)PH_WH_RETRY == (int)PH_WH_OUT_RETRY &&
                   (int)PH_WH_DEAD == (int)PH_WH_OUT_DEAD && (int)PH_WH_GONE == (int)PH_WH_OUT_GONE,
               "an answer's outcome goes to the store as it is");

/* One delivery in memory (notify thread only). */
typedef struct wh_del {
    uint64_t seq, order_id, previous;
    char type[PH_SKU_MAX + 1];
    uint32_t attempts;
    int64_t next_at, retry_from;
    int on_wire;
    int settled; /* delivered or dead: dropped at the next compaction */
} wh_del;

typedef struct wh_key {
    uint8_t key[PH_WH_KEY_MAX];
    size_t len;
} wh_key;

/* One endpoint (notify thread only, except the counters under n->mu). */
typedef struct wh_ep {
    struct wh_ep *next;
    char id[PH_SKU_MAX + 1];
    char client[PH_SKU_MAX + 1];
    char *url;
    char **events;
    size_t nevents;
    wh_key keys[2];
    size_t nkeys;
    ph_wh_signer *signers[2]; /* of keys[], made at the first send; cleared with them */
    int configured, enabled;  /* in the running configuration, and enabled there */
    int loaded;               /* pending read from the store */
    uint64_t gen;             /* the store's gen when pending was read */
    int disabled;             /* a 410 (the store's) */
    uint64_t cursor;
    wh_del *del;
    size_t ndel, cap;
    size_t nsettled; /* of del[]: dropped in bulk (del_compact) */
    unsigned in_flight;
    int more; /* events were left after the last page */
} wh_ep;

/* One exchange on the wire. */
typedef struct wh_job {
    ph_sio_job job;
    ph_sio_raw raw;
    struct wh_job *next_done;
    struct ph_notify *n;
    char ep[PH_SKU_MAX + 1];
    char key[PH_SKU_MAX + 16];
    char *url;
    uint64_t seq;
    char *body;
    size_t body_len;
    char *hdr[NOTIFY_HEADERS];
    const char *hdrc[NOTIFY_HEADERS];
} wh_job;

typedef struct wh_stat_ent {
    ph_notify_stat st;
} wh_stat_ent;

struct ph_notify {
    ph_store *store;
    ph_sio *sio;
    const ph_logger *log;
    ph_cfg_current *cfg;
    ph_notify_render_fn render;
    void *render_arg;
    unsigned poll_ms;
    pthread_t thread;
    int started;
    /* notify thread only */
    wh_ep *eps;
    ph_wh_new *newbuf; /* NOTIFY_EVENTS_PAGE: a pass's WH_CREATE arguments */
    char *dumpbuf;     /* a body's text as it is written (build_body) */
    size_t dumpcap;
    /* the events of this endpoint's pass that it took, parsed once for
     * creating their deliveries and kept for their bodies (seq ascending) */
    uint64_t pass_seq[NOTIFY_EVENTS_PAGE];
    json_t *pass_ev[NOTIFY_EVENTS_PAGE];
    size_t npass;
    const ph_config *applied; /* the snapshot the endpoints were built from (pointer only) */
    int64_t retry_for_ms, base_ms, max_ms;
    unsigned timeout_ms, max_in_flight;
    /* guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping, kicked;
    wh_job *done_head;
    wh_stat_ent *stats;
    size_t nstats, capstats;
};

/* ---- secrets ------------------------------------------------------------------- */

/* Resolves a secret reference into its key. The message names the reference's
 * kind and name, never what it holds. */
static int resolve_secret(const char *ref, wh_key *out, ph_err *err)
{
    char buf[1024];
    const char *val = NULL;
    if (!strncmp(ref, "env:", 4) && ref[4]) {
        val = getenv(ref + 4);
        if (!val || !*val)
            return ph_err_set(err, PH_EINVAL, "secret %s: the environment variable is not set",
                              ref);
    } else if (!strncmp(ref, "file:", 5) && ref[5]) {
        int fd = open(ref + 5, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return ph_err_set(err, PH_EINVAL, "secret %s: cannot read the file: %s", ref,
                              strerror(errno));
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n < 0)
            return ph_err_set(err, PH_EINVAL, "secret %s: cannot read the file", ref);
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
            n--;
        buf[n] = 0;
        if (!n)
            return ph_err_set(err, PH_EINVAL, "secret %s: the file is empty", ref);
        val = buf;
    } else {
        return ph_err_set(err, PH_EINVAL, "expected a secret reference env:NAME or file:PATH");
    }
    ph_err kerr = {0};
    int rc = ph_wh_secret_key(val, out->key, &out->len, &kerr);
    OPENSSL_cleanse(buf, sizeof buf);
    if (rc)
        return ph_err_set(err, PH_EINVAL, "secret %s: %s", ref, kerr.msg);
    return PH_OK;
}

int ph_notify_check(const ph_config *cfg, ph_err *err)
{
    for (size_t i = 0; i < cfg->nclients; i++)
        for (size_t j = 0; j < cfg->clients[i].nwebhooks; j++) {
            const ph_webhook_conf *w = &cfg->clients[i].webhooks[j];
            for (size_t k = 0; k < w->nevents; k++)
                if (!ph_wh_event_known(w->events[k]))
                    return ph_err_set(
                        err, PH_EINVAL,
                        "%s:%u:%u: clients[%zu].webhooks[%zu].events[%zu]: expected an event "
                        "type a webhook carries (order.* and its types, stock.low, stock.out, "
                        "product.delisted, product.relisted; docs/api.md), got \"%.64s\"",
                        cfg->source, w->event_mark[k].line, w->event_mark[k].col, i, j, k,
                        w->events[k]);
            for (size_t k = 0; k < w->nsecrets && k < 2; k++) {
                wh_key key;
                ph_err e = {0};
                int rc = resolve_secret(w->secrets[k], &key, &e);
                OPENSSL_cleanse(&key, sizeof key);
                if (rc)
                    return ph_err_set(
                        err, PH_EINVAL, "%s:%u:%u: clients[%zu].webhooks[%zu].secrets[%zu]: %s",
                        cfg->source, w->secret_mark[k].line, w->secret_mark[k].col, i, j, k, e.msg);
            }
        }
    return PH_OK;
}

/* ---- endpoints ------------------------------------------------------------------ */

static void stat_of(ph_notify *n, const char *id, uint64_t pending, uint64_t d_del,
                    uint64_t d_retry, uint64_t d_dead, uint64_t d_gone)
{
    pthread_mutex_lock(&n->mu);
    wh_stat_ent *e = NULL;
    for (size_t i = 0; i < n->nstats; i++)
        if (!strcmp(n->stats[i].st.id, id))
            e = &n->stats[i];
    if (!e) {
        wh_stat_ent *g =
            n->nstats == n->capstats ? ph_grow(n->stats, &n->capstats, sizeof *g, 8) : n->stats;
        if (g) {
            n->stats = g;
            e = &n->stats[n->nstats++];
            memset(e, 0, sizeof *e);
            snprintf(e->st.id, sizeof e->st.id, "%s", id);
        }
    }
    if (e) {
        if (pending != UINT64_MAX)
            e->st.pending = pending;
        e->st.delivered += d_del;
        e->st.retried += d_retry;
        e->st.dead += d_dead;
        e->st.gone += d_gone;
    }
    pthread_mutex_unlock(&n->mu);
}

static uint64_t ep_pending(const wh_ep *e)
{
    return e->ndel - e->nsettled;
}

static void ep_conf_clear(wh_ep *e)
{
    free(e->url);
    e->url = NULL;
    for (size_t i = 0; i < e->nevents; i++)
        free(e->events[i]);
    free(e->events);
    e->events = NULL;
    e->nevents = 0;
    for (size_t k = 0; k < 2; k++) {
        ph_wh_signer_free(e->signers[k]);
        e->signers[k] = NULL;
    }
    OPENSSL_cleanse(e->keys, sizeof e->keys);
    e->nkeys = 0;
}

static void ep_free(wh_ep *e)
{
    ep_conf_clear(e);
    free(e->del);
    free(e);
}

static wh_ep *ep_find(ph_notify *n, const char *id)
{
    for (wh_ep *e = n->eps; e; e = e->next)
        if (!strcmp(e->id, id))
            return e;
    return NULL;
}

/* Takes one configured endpoint's settings; a secret that no longer
 * resolves keeps the endpoint's previous keys (logged), or leaves it without
 * keys (not sent) when it had none. */
static void ep_configure(ph_notify *n, wh_ep *e, const ph_client_conf *cc, const ph_webhook_conf *w)
{
    wh_key keys[2];
    size_t nkeys = 0;
    int ok = 1;
    for (size_t k = 0; k < w->nsecrets && k < 2; k++) {
        ph_err err = {0};
        if (resolve_secret(w->secrets[k], &keys[nkeys], &err) == PH_OK)
            nkeys++;
        else {
            ok = 0;
            ph_log(n->log, PH_LOG_ERROR, NULL, "webhook.secret",
                   "endpoint=%s detail=\"%s\" effect=\"the endpoint keeps its previous keys\"",
                   w->id, err.msg);
        }
    }
    char *url = strdup(w->url);
    char **ev = calloc(w->nevents ? w->nevents : 1, sizeof *ev);
    for (size_t k = 0; ev && k < w->nevents; k++)
        if (!(ev[k] = strdup(w->events[k])))
            ok = 0;
    if (!url || !ev) {
        free(url);
        for (size_t k = 0; ev && k < w->nevents; k++)
            free(ev[k]);
        free(ev);
        OPENSSL_cleanse(keys, sizeof keys);
        return;
    }
    wh_key oldkeys[2];
    size_t noldkeys = e->nkeys;
    memcpy(oldkeys, e->keys, sizeof oldkeys);
    ep_conf_clear(e);
    e->url = url;
    e->events = ev;
    e->nevents = w->nevents;
    if (ok) {
        memcpy(e->keys, keys, sizeof keys);
        e->nkeys = nkeys;
    } else {
        memcpy(e->keys, oldkeys, sizeof oldkeys);
        e->nkeys = noldkeys;
    }
    OPENSSL_cleanse(keys, sizeof keys);
    OPENSSL_cleanse(oldkeys, sizeof oldkeys);
    snprintf(e->client, sizeof e->client, "%s", cc->name);
    e->enabled = w->enabled;
    e->configured = 1;
}

/* A new snapshot: endpoints added, changed, removed (their state stays in the
 * store; a removed endpoint keeps its in-memory deliveries only while answers
 * are on the wire). */
static void apply_config(ph_notify *n, const ph_config *cfg)
{
    n->retry_for_ms = (int64_t)cfg->webhook_retry_for_s * 1000;
    n->base_ms = cfg->webhook_retry_base_ms;
    n->max_ms = cfg->webhook_retry_max_ms;
    n->timeout_ms = cfg->webhook_timeout_ms;
    n->max_in_flight = cfg->webhook_max_in_flight;
    for (wh_ep *e = n->eps; e; e = e->next)
        e->configured = 0;
    for (size_t i = 0; i < cfg->nclients; i++)
        for (size_t j = 0; j < cfg->clients[i].nwebhooks; j++) {
            const ph_webhook_conf *w = &cfg->clients[i].webhooks[j];
            wh_ep *e = ep_find(n, w->id);
            if (!e) {
                if (!(e = calloc(1, sizeof *e)))
                    continue;
                snprintf(e->id, sizeof e->id, "%s", w->id);
                e->next = n->eps;
                n->eps = e;
                ph_log(n->log, PH_LOG_INFO, NULL, "webhook.endpoint", "endpoint=%s client=%s",
                       w->id, cfg->clients[i].name);
            }
            ep_configure(n, e, &cfg->clients[i], w);
        }
    /* endpoints gone from the config are dropped once nothing of theirs is out */
    for (wh_ep **pp = &n->eps; *pp;) {
        wh_ep *e = *pp;
        if (!e->configured && !e->in_flight) {
            *pp = e->next;
            ep_free(e);
        } else
            pp = &e->next;
    }
}

/* ---- deliveries in memory ----------------------------------------------------- */

static wh_del *del_find(wh_ep *e, uint64_t seq)
{
    size_t lo = 0, hi = e->ndel;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (e->del[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < e->ndel && e->del[lo].seq == seq ? &e->del[lo] : NULL;
}

static int del_cmp(const void *a, const void *b)
{
    uint64_t x = ((const wh_del *)a)->seq, y = ((const wh_del *)b)->seq;
    return x < y ? -1 : x > y;
}

static int del_push(wh_ep *e, const ph_wh_delivery *d)
{
    if (e->ndel >= NOTIFY_PENDING_MAX)
        return PH_ENOMEM;
    if (e->ndel == e->cap) {
        wh_del *g = ph_grow(e->del, &e->cap, sizeof *g, 64);
        if (!g)
            return PH_ENOMEM;
        e->del = g;
    }
    wh_del *x = &e->del[e->ndel++];
    memset(x, 0, sizeof *x);
    x->seq = d->seq;
    x->order_id = d->order_id;
    x->previous = d->previous;
    snprintf(x->type, sizeof x->type, "%s", d->type);
    x->attempts = d->attempts;
    x->next_at = d->next_at;
    x->retry_from = d->retry_from ? d->retry_from : d->created_at;
    return PH_OK;
}

/* Appends d unless it is known already (seqs only grow at the end). */
static int del_append(wh_ep *e, const ph_wh_delivery *d)
{
    if (e->ndel && e->del[e->ndel - 1].seq >= d->seq)
        return PH_OK;
    return del_push(e, d);
}

/* Drops settled deliveries once they are a good part of the array, so a
 * pass does not move the whole backlog for each one delivered. */
static void del_compact(wh_ep *e)
{
    if (!e->nsettled || (e->nsettled < 1024 && e->nsettled * 2 < e->ndel))
        return;
    size_t k = 0;
    for (size_t i = 0; i < e->ndel; i++)
        if (!e->del[i].settled || e->del[i].on_wire)
            e->del[k++] = e->del[i];
    e->ndel = k;
    e->nsettled = 0;
}

/* The store's pending deliveries of e after `after`, appended. */
static int load_pending(ph_notify *n, wh_ep *e, uint64_t after)
{
    for (;;) {
        ph_wh_delivery *list;
        size_t cnt;
        ph_err err = {0};
        int rc = ph_store_wh_pending(n->store, e->id, after, 4096, &list, &cnt, &err);
        if (rc) {
            ph_log(n->log, PH_LOG_ERROR, NULL, "webhook.read", "endpoint=%s detail=\"%s\"", e->id,
                   err.msg);
            return rc;
        }
        for (size_t i = 0; i < cnt; i++)
            if (!del_find(e, list[i].seq))
                del_append(e, &list[i]);
        if (cnt)
            after = list[cnt - 1].seq;
        free(list);
        if (cnt < 4096)
            return PH_OK;
    }
}

/* ---- creating deliveries ----------------------------------------------------- */

static int ep_wants(const wh_ep *e, const char *type)
{
    for (size_t i = 0; i < e->nevents; i++)
        if (ph_wh_event_match(e->events[i], type))
            return 1;
    return 0;
}

static void pass_clear(ph_notify *n)
{
    for (size_t i = 0; i < n->npass; i++)
        json_decref(n->pass_ev[i]);
    n->npass = 0;
}

/* This pass's parsed event seq (borrowed), or NULL. */
static json_t *pass_find(const ph_notify *n, uint64_t seq)
{
    size_t lo = 0, hi = n->npass;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (n->pass_seq[mid] < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n->npass && n->pass_seq[lo] == seq ? n->pass_ev[lo] : NULL;
}

/* Reads the events after e's cursor and creates the deliveries of those it
 * takes, moving the cursor over every event read (one command). The events
 * taken stay parsed for this pass's bodies (pass_find). */
static void create_deliveries(ph_notify *n, wh_ep *e)
{
    char **list;
    size_t cnt;
    ph_err err = {0};
    e->more = 0;
    pass_clear(n);
    if (ph_store_event_list(n->store, e->cursor, NOTIFY_EVENTS_PAGE, &list, &cnt, &err)) {
        ph_log(n->log, PH_LOG_ERROR, NULL, "webhook.read", "endpoint=%s detail=\"%s\"", e->id,
               err.msg);
        return;
    }
    if (!cnt) {
        ph_store_event_list_free(list, cnt);
        return;
    }
    size_t nd = 0;
    uint64_t to = e->cursor;
    for (size_t i = 0; i < cnt && i < NOTIFY_EVENTS_PAGE; i++) {
        json_t *ev = json_loads(list[i], JSON_DISABLE_EOF_CHECK, NULL);
        json_int_t seq = json_integer_value(json_object_get(ev, "seq"));
        const char *type = json_string_value(json_object_get(ev, "type"));
        const char *client = json_string_value(json_object_get(ev, "client"));
        json_t *oid = json_object_get(ev, "order_id");
        if (seq > 0)
            to = (uint64_t)seq;
        int product = type && ph_wh_product_event(type);
        int take = type && strlen(type) <= PH_SKU_MAX && seq > 0 && ep_wants(e, type) &&
                   (product || (json_is_integer(oid) && json_integer_value(oid) >= 0 && client &&
                                !strcmp(client, e->client)));
        if (take) {
            ph_wh_new *d = &n->newbuf[nd++];
            d->seq = (uint64_t)seq;
            d->order_id = product ? 0 : (uint64_t)json_integer_value(oid);
            snprintf(d->type, sizeof d->type, "%s", type);
            n->pass_seq[n->npass] = (uint64_t)seq;
            n->pass_ev[n->npass++] = ev;
        } else
            json_decref(ev);
    }
    e->more = cnt == NOTIFY_EVENTS_PAGE;
    ph_store_event_list_free(list, cnt);
    ph_cmd cmd = {.type = PH_CMD_WH_CREATE, .now = ph_now_ms()};
    cmd.in.wh.endpoint = e->id;
    cmd.in.wh.cursor_from = e->cursor;
    cmd.in.wh.cursor_to = to;
    cmd.in.wh.dels = n->newbuf;
    cmd.in.wh.ndels = nd;
    int rc = ph_store_exec(n->store, &cmd);
    uint64_t from = e->cursor;
    if (rc == PH_OK) {
        e->cursor = to;
        if (cmd.wh_count)
            load_pending(n, e, from);
    } else {
        ph_log(n->log, PH_LOG_ERROR, NULL, "webhook.create", "endpoint=%s detail=\"%s\"", e->id,
               cmd.err.msg);
        e->loaded = 0; /* read the store's state again */
        pass_clear(n);
    }
    ph_cmd_clear(&cmd);
}

/* The endpoint's stored state: created when never seen (its cursor starts at
 * the newest event: an endpoint added later gets what happens from then on),
 * pending read again when ops replayed or re-enabled. */
static int sync_state(ph_notify *n, wh_ep *e)
{
    ph_wh_endpoint_state st;
    ph_err err = {0};
    int rc = ph_store_wh_endpoint_get(n->store, e->id, &st, &err);
    if (rc == PH_ENOTFOUND) {
        ph_cmd cmd = {.type = PH_CMD_WH_CREATE, .now = ph_now_ms()};
        cmd.in.wh.endpoint = e->id;
        cmd.in.wh.cursor_to = ph_store_event_last(n->store);
        rc = ph_store_exec(n->store, &cmd);
        if (rc)
            ph_log(n->log, PH_LOG_ERROR, NULL, "webhook.create", "endpoint=%s detail=\"%s\"", e->id,
                   cmd.err.msg);
        ph_cmd_clear(&cmd);
        if (rc)
            return rc;
        rc = ph_store_wh_endpoint_get(n->store, e->id, &st, &err);
    }
    if (rc) {
        ph_log(n->log, PH_LOG_ERROR, NULL, "webhook.read", "endpoint=%s detail=\"%s\"", e->id,
               err.msg);
        return rc;
    }
    e->disabled = st.disabled;
    if (!e->loaded || st.gen != e->gen) {
        /* everything on the wire stays known; the rest is read again */
        size_t k = 0;
        for (size_t i = 0; i < e->ndel; i++)
            if (e->del[i].on_wire)
                e->del[k++] = e->del[i];
        e->ndel = k;
        ph_wh_delivery *list;
        size_t cnt;
        uint64_t after = 0;
        for (;;) {
            if (ph_store_wh_pending(n->store, e->id, after, 4096, &list, &cnt, &err))
                return PH_EIO;
            for (size_t i = 0; i < cnt; i++) {
                wh_del *x = NULL;
                for (size_t w = 0; w < k && !x; w++)
                    if (e->del[w].seq == list[i].seq)
                        x = &e->del[w];
                if (x) {
                    x->attempts = list[i].attempts;
                    x->retry_from = list[i].retry_from;
                    x->settled = 0;
                    continue;
                }
                del_push(e, &list[i]); /* after the on-wire ones: sorted below */
            }
            if (cnt)
                after = list[cnt - 1].seq;
            free(list);
            if (cnt < 4096)
                break;
        }
        if (e->ndel > 1)
            qsort(e->del, e->ndel, sizeof *e->del, del_cmp);
        e->nsettled = 0;
        for (size_t i = 0; i < e->ndel; i++)
            e->nsettled += e->del[i].settled;
        e->gen = st.gen;
        e->cursor = st.cursor;
        e->loaded = 1;
    }
    return PH_OK;
}

/* ---- sending ----------------------------------------------------------------------- */

static void on_job_done(ph_sio_job *job)
{
    wh_job *j = job->arg;
    ph_notify *n = j->n;
    pthread_mutex_lock(&n->mu);
    j->next_done = n->done_head;
    n->done_head = j;
    pthread_cond_signal(&n->cv);
    pthread_mutex_unlock(&n->mu);
}

static void job_free(wh_job *j)
{
    if (!j)
        return;
    for (int i = 0; i < NOTIFY_HEADERS; i++)
        free(j->hdr[i]);
    free(j->url);
    free(j->body);
    free(j);
}

/* The body: the event cut for a mall and the order's view without codes. */
static char *build_body(ph_notify *n, const wh_ep *e, const wh_del *d, const ph_config *cfg)
{
    ph_err err = {0};
    json_t *ev = pass_find(n, d->seq);
    if (ev)
        json_incref(ev);
    else {
        char **list;
        size_t cnt;
        if (ph_store_event_list(n->store, d->seq - 1, 1, &list, &cnt, &err))
            return NULL;
        if (cnt != 1) {
            ph_store_event_list_free(list, cnt);
            return NULL;
        }
        ev = json_loads(list[0], JSON_DISABLE_EOF_CHECK, NULL);
        ph_store_event_list_free(list, cnt);
        if (!ev)
            return NULL;
    }
    const char *at = json_string_value(json_object_get(ev, "at"));
    json_t *ts = json_string(at ? at : "");
    int product = ph_wh_product_event(d->type);
    json_t *cut = product ? ph_event_product_cut(ev) : ph_event_mall_cut(ev);
    json_t *view = json_null();
    if (!product && d->order_id) {
        ph_order *o = NULL;
        if (ph_store_order_get(n->store, d->order_id, 0, &o, &err) == PH_OK && o &&
            !strcmp(o->client, e->client)) {
            json_t *v = n->render(n->render_arg, o, cfg);
            if (v) {
                json_decref(view);
                view = v;
            }
        }
        ph_order_free(o);
    }
    json_t *body = json_pack("{s:s,s:o,s:{s:I,s:o,s:o,s:o}}", "type", d->type, "timestamp", ts,
                             "data", "seq", (json_int_t)d->seq, "previous",
                             d->previous ? json_integer((json_int_t)d->previous) : json_null(),
                             "event", cut, "order", view);
    char *txt = NULL;
    if (body) {
        /* into the thread's buffer, then one exact copy: json_dumps would grow
         * its own by doubling, each step through the wiping allocator */
        size_t need = json_dumpb(body, n->dumpbuf, n->dumpcap, JSON_COMPACT);
        if (need > n->dumpcap) {
            char *g = malloc(need * 2);
            if (g) {
                free(n->dumpbuf);
                n->dumpbuf = g;
                n->dumpcap = need * 2;
                need = json_dumpb(body, n->dumpbuf, n->dumpcap, JSON_COMPACT);
            }
        }
        if (need && need <= n->dumpcap && (txt = malloc(need + 1))) {
            memcpy(txt, n->dumpbuf, need);
            txt[need] = 0;
        }
    }
    json_decref(body);
    return txt;
}

/* Builds, signs and submits one delivery. 0 when it went out. */
static int send_one(ph_notify *n, wh_ep *e, wh_del *d, const ph_config *cfg, int64_t now)
{
    for (size_t k = 0; k < e->nkeys; k++)
        if (!e->signers[k] && !(e->signers[k] = ph_wh_signer_new(e->keys[k].key, e->keys[k].len)))
            return -1;
    wh_job *j = calloc(1, sizeof *j);
    if (!j)
        return -1;
    j->n = n;
    snprintf(j->ep, sizeof j->ep, "%s", e->id);
    snprintf(j->key, sizeof j->key, "webhook:%s", e->id);
    j->seq = d->seq;
    j->body = build_body(n, e, d, cfg);
    j->url = strdup(e->url);
    if (!j->body || !j->url) {
        job_free(j);
        return -1;
    }
    j->body_len = strlen(j->body);
    char id[PH_WH_ID_MAX], sigs[2 * PH_WH_SIG_MAX + 2] = "";
    ph_wh_delivery_id(e->id, d->seq, id);
    int64_t ts = now / 1000;
    for (size_t k = 0; k < e->nkeys; k++) {
        char sig[PH_WH_SIG_MAX];
        if (ph_wh_sign_with(e->signers[k], id, ts, j->body, j->body_len, sig)) {
            job_free(j);
            return -1;
        }
        if (k)
            strcat(sigs, " ");
        strcat(sigs, sig);
    }
    const char *fmt[NOTIFY_HEADERS] = {
        "Content-Type: application/json", "User-Agent: perkhub-webhooks", NULL, NULL, NULL, NULL};
    j->hdr[0] = strdup(fmt[0]);
    j->hdr[1] = strdup(fmt[1]);
    size_t need = strlen(id) + 16;
    if ((j->hdr[2] = malloc(need)))
        snprintf(j->hdr[2], need, "webhook-id: %s", id);
    if ((j->hdr[3] = malloc(48)))
        snprintf(j->hdr[3], 48, "webhook-timestamp: %lld", (long long)ts);
    need = strlen(sigs) + 24;
    if ((j->hdr[4] = malloc(need)))
        snprintf(j->hdr[4], need, "webhook-signature: %s", sigs);
    for (int i = 0; i < 5; i++) {
        if (!j->hdr[i]) {
            job_free(j);
            return -1;
        }
        j->hdrc[i] = j->hdr[i];
    }
    j->raw = (ph_sio_raw){.key = j->key,
                          .url = j->url,
                          .method = "POST",
                          .headers = j->hdrc,
                          .nheaders = 5,
                          .body = j->body,
                          .body_len = j->body_len};
    j->job.raw = &j->raw;
    j->job.done = on_job_done;
    j->job.arg = j;
    j->job.limits = (ph_sio_limits){.max_in_flight = n->max_in_flight,
                                    .timeout_ms = n->timeout_ms,
                                    .connect_timeout_ms = n->timeout_ms,
                                    .tls_verify = 1};
    if (ph_sio_submit(n->sio, &j->job) != PH_OK) {
        job_free(j);
        return -1;
    }
    d->on_wire = 1;
    e->in_flight++;
    return 0;
}

/* Sends what may go now (wh_policy.h, ph_wh_may_send); returns the earliest
 * due time of what waits for its time (0 none). */
static int64_t send_due(ph_notify *n, wh_ep *e, const ph_config *cfg, int64_t now)
{
    int64_t next = 0;
    if (!e->nkeys || e->disabled || !e->enabled || !e->configured)
        return 0;
    for (size_t i = 0; i < e->ndel && e->in_flight < n->max_in_flight; i++) {
        wh_del *d = &e->del[i];
        if (d->settled || d->on_wire)
            continue;
        int prev = PH_WH_PREV_NONE;
        if (d->previous) {
            wh_del *p = del_find(e, d->previous);
            prev = p && !p->settled ? PH_WH_PREV_OPEN : PH_WH_PREV_SETTLED;
        }
        if (!ph_wh_may_send(d->on_wire, d->next_at, now, prev, e->disabled, e->in_flight,
                            n->max_in_flight)) {
            if (prev != PH_WH_PREV_OPEN && d->next_at > now && (!next || d->next_at < next))
                next = d->next_at;
            continue;
        }
        if (send_one(n, e, d, cfg, now)) {
            d->next_at = now + 1000; /* out of memory or the engine stopping: later */
            if (!next || d->next_at < next)
                next = d->next_at;
        }
    }
    return next;
}

/* ---- answers ------------------------------------------------------------------------ */

/* Every answer that came back, recorded in one command, then applied to the
 * deliveries in memory. */
static void take_answers(ph_notify *n)
{
    pthread_mutex_lock(&n->mu);
    wh_job *list = n->done_head;
    n->done_head = NULL;
    pthread_mutex_unlock(&n->mu);
    if (!list)
        return;
    int64_t now = ph_now_ms();
    typedef struct {
        wh_ep *e;
        uint64_t seq;
        int outcome;
        int64_t next_at;
    } ans;
    size_t cnt = 0;
    for (wh_job *j = list; j; j = j->next_done)
        cnt++;
    ans *a = calloc(cnt ? cnt : 1, sizeof *a);
    ph_wh_answer *rs = calloc(cnt ? cnt : 1, sizeof *rs);
    if (!rs) {
        free(a);
        a = NULL;
    }
    size_t k = 0;
    for (wh_job *j = list; j && a; j = j->next_done, k++) {
        wh_ep *e = ep_find(n, j->ep);
        wh_del *d = e ? del_find(e, j->seq) : NULL;
        int status = j->job.http_status;
        const char *why = status ? "" : j->job.detail;
        int64_t retry_from = d ? d->retry_from : now;
        uint32_t attempt = d ? d->attempts + 1 : 1;
        char id[PH_WH_ID_MAX];
        ph_wh_delivery_id(j->ep, j->seq, id);
        int64_t delay = ph_wh_backoff_ms(id, attempt, n->base_ms, n->max_ms);
        int64_t next_at;
        int outcome = ph_wh_outcome(status, now, retry_from, delay, n->retry_for_ms, &next_at);
        if (outcome == PH_WH_GONE)
            next_at = now;
        a[k] = (ans){e, j->seq, outcome, next_at};
        rs[k] = (ph_wh_answer){.endpoint = j->ep,
                               .error = why,
                               .seq = j->seq,
                               .next_at = next_at,
                               .status = status,
                               .outcome = outcome};
        if (outcome != PH_WH_DELIVERED)
            ph_log(n->log, PH_LOG_INFO, NULL, "webhook.attempt",
                   "endpoint=%s delivery=%s attempt=%u status=%d outcome=%s detail=\"%s\"", j->ep,
                   id, attempt, status, ph_wh_outcome_name(outcome), j->job.detail);
    }
    int rc = PH_ENOMEM;
    if (a) {
        ph_cmd cmd = {.type = PH_CMD_WH_RESULT, .now = now};
        cmd.in.wh.answers = rs;
        cmd.in.wh.nanswers = cnt;
        rc = ph_store_exec(n->store, &cmd);
        if (rc)
            ph_log(n->log, PH_LOG_ERROR, NULL, "webhook.result",
                   "detail=\"%s\" effect=\"the deliveries are sent again\"", cmd.err.msg);
        ph_cmd_clear(&cmd);
    }
    free(rs);
    k = 0;
    for (wh_job *j = list; j; k++) {
        wh_job *nx = j->next_done;
        wh_ep *e = a ? a[k].e : ep_find(n, j->ep);
        wh_del *d = e ? del_find(e, j->seq) : NULL;
        if (e && e->in_flight)
            e->in_flight--;
        if (d) {
            d->on_wire = 0;
            if (rc != PH_OK) {
                d->next_at = now + 1000;
            } else {
                int o = a[k].outcome;
                d->attempts++;
                if (o == PH_WH_DELIVERED || o == PH_WH_DEAD) {
                    d->settled = 1;
                    e->nsettled++;
                } else
                    d->next_at = a[k].next_at;
                if (o == PH_WH_GONE)
                    e->disabled = 1;
                stat_of(n, e->id, UINT64_MAX, o == PH_WH_DELIVERED, o == PH_WH_RETRY,
                        o == PH_WH_DEAD, o == PH_WH_GONE);
            }
        }
        job_free(j);
        j = nx;
    }
    free(a);
}

/* ---- the thread ---------------------------------------------------------------------- */

static void *notify_main(void *arg)
{
    ph_notify *n = arg;
    for (;;) {
        pthread_mutex_lock(&n->mu);
        int stop = n->stopping;
        n->kicked = 0;
        pthread_mutex_unlock(&n->mu);
        if (stop)
            break;
        take_answers(n);
        ph_cfg_ref *ref = ph_cfg_acquire(n->cfg);
        if (ref->cfg != n->applied) {
            apply_config(n, ref->cfg);
            n->applied = ref->cfg;
            for (wh_ep *e = n->eps; e; e = e->next)
                e->loaded = 0; /* a reload: the store's word again */
        }
        int64_t now = ph_now_ms(), due = 0;
        int busy = 0;
        for (wh_ep *e = n->eps; e; e = e->next) {
            if (!e->configured || !e->enabled)
                continue;
            if (sync_state(n, e) != PH_OK)
                continue;
            create_deliveries(n, e);
            busy |= e->more;
            del_compact(e);
            /* the deliveries just created are due at the command's time: sent
             * in this pass, while their events are still parsed */
            now = ph_now_ms();
            int64_t next = send_due(n, e, ref->cfg, now);
            pass_clear(n);
            if (next && (!due || next < due))
                due = next;
            stat_of(n, e->id, ep_pending(e), 0, 0, 0, 0);
        }
        ph_cfg_release(ref);
        if (busy)
            continue;
        int64_t wait = n->poll_ms;
        now = ph_now_ms();
        if (due && due - now < wait)
            wait = due > now ? due - now : 0;
        pthread_mutex_lock(&n->mu);
        if (!n->stopping && !n->kicked && !n->done_head && wait > 0) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += wait / 1000;
            ts.tv_nsec += (long)(wait % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&n->cv, &n->mu, &ts);
        }
        pthread_mutex_unlock(&n->mu);
    }
    return NULL;
}

int ph_notify_create(const ph_notify_opts *opts, ph_notify **out, ph_err *err)
{
    if (!opts || !opts->store || !opts->sio || !opts->log || !opts->cfg || !opts->render)
        return ph_err_set(err, PH_EINVAL, "notify: missing options");
    ph_notify *n = calloc(1, sizeof *n);
    if (!n)
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    n->store = opts->store;
    n->sio = opts->sio;
    n->log = opts->log;
    n->cfg = opts->cfg;
    n->render = opts->render;
    n->render_arg = opts->render_arg;
    n->poll_ms = opts->poll_ms ? opts->poll_ms : 50;
    if (!(n->newbuf = calloc(NOTIFY_EVENTS_PAGE, sizeof *n->newbuf))) {
        free(n);
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&n->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&n->mu, NULL);
    if (pthread_create(&n->thread, NULL, notify_main, n)) {
        pthread_cond_destroy(&n->cv);
        pthread_mutex_destroy(&n->mu);
        free(n->newbuf);
        free(n);
        return ph_err_set(err, PH_EIO, "notify: cannot start the delivery thread");
    }
    n->started = 1;
    *out = n;
    return PH_OK;
}

void ph_notify_kick(ph_notify *n)
{
    if (!n)
        return;
    pthread_mutex_lock(&n->mu);
    n->kicked = 1;
    pthread_cond_signal(&n->cv);
    pthread_mutex_unlock(&n->mu);
}

size_t ph_notify_stats(ph_notify *n, ph_notify_stat *out, size_t max)
{
    if (!n)
        return 0;
    pthread_mutex_lock(&n->mu);
    size_t cnt = n->nstats;
    for (size_t i = 0; i < cnt && i < max; i++)
        out[i] = n->stats[i].st;
    pthread_mutex_unlock(&n->mu);
    return cnt;
}

void ph_notify_stop(ph_notify *n)
{
    if (!n || !n->started)
        return;
    pthread_mutex_lock(&n->mu);
    n->stopping = 1;
    pthread_cond_signal(&n->cv);
    pthread_mutex_unlock(&n->mu);
    pthread_join(n->thread, NULL);
    n->started = 0;
}

void ph_notify_destroy(ph_notify *n)
{
    if (!n)
        return;
    ph_notify_stop(n);
    /* answers that came after the stop: unrecorded (pending in the store) */
    wh_job *j = n->done_head;
    while (j) {
        wh_job *nx = j->next_done;
        job_free(j);
        j = nx;
    }
    while (n->eps) {
        wh_ep *e = n->eps;
        n->eps = e->next;
        ep_free(e);
    }
    free(n->stats);
    pass_clear(n);
    free(n->newbuf);
    free(n->dumpbuf);
    pthread_cond_destroy(&n->cv);
    pthread_mutex_destroy(&n->mu);
    free(n);
}
