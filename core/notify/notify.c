/*
 * notify.c — webhook delivery: the thread, its endpoints and deliveries
 * (notify.h). The decisions are wh_policy.c's; this file reads, submits and
 * keeps the books.
 */
#include "notify/notify.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
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
#define NOTIFY_HEADERS     5
#define NOTIFY_NICE        19   /* the delivery thread's nice value (notify_lower_priority) */
#define NOTIFY_TEXTS_MAX   8192 /* event texts an endpoint keeps for bodies not yet built */

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
    char *ev;    /* the event's stored text, kept from its creation for the body (or NULL:
                    read again); freed once the body is built (del_text_drop) */
    size_t ev_len;
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
    size_t ntexts; /* of del[]: with ev set (at most NOTIFY_TEXTS_MAX) */
    int more;      /* events were left after the last page */
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
    char hdr_id[PH_WH_ID_MAX + 16];
    char hdr_ts[48];
    char hdr_sig[2 * PH_WH_SIG_MAX + 24];
    const char *hdrc[NOTIFY_HEADERS];
} wh_job;

/* A growing text (a body as it is written). */
typedef struct wh_text {
    char *p;
    size_t len, cap;
    int oom;
} wh_text;

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
    wh_text body;      /* a body's text as it is written (build_body) */
    /* the texts of the events this endpoint's pass took (seq ascending),
     * handed to their deliveries once created (create_deliveries) */
    uint64_t pass_seq[NOTIFY_EVENTS_PAGE];
    char *pass_txt[NOTIFY_EVENTS_PAGE];
    size_t pass_len[NOTIFY_EVENTS_PAGE];
    size_t npass;
    const ph_config *applied; /* the snapshot the endpoints were built from (pointer only) */
    /* at peak (wh_policy.h, ph_wh_busy): when an event was last read, this
     * thread's run-queue wait over the last measure, and the budget of
     * deliveries it may still hand over while busy (webhooks.peak_rate a second) */
    int64_t last_event_at, measured_at, budget_at;
    uint64_t event_seen; /* the newest event's seq at the last measure */
    uint64_t sched_wait, sched_wall, sched_wait0;
    double budget;
    unsigned peak_rate; /* webhooks.peak_rate: deliveries a second at peak; 0 = no limit */
    int busy;
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
                        "type a webhook carries (order.* and its types, grant.*, stock.low, "
                        "stock.out, "
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

/* Forgets d's kept event text (its body is built, or d leaves memory). */
static void del_text_drop(wh_ep *e, wh_del *d)
{
    if (!d->ev)
        return;
    free(d->ev);
    d->ev = NULL;
    d->ev_len = 0;
    assert(e->ntexts > 0);
    e->ntexts--;
}

static void ep_free(wh_ep *e)
{
    ep_conf_clear(e);
    for (size_t i = 0; i < e->ndel; i++)
        del_text_drop(e, &e->del[i]);
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
    n->peak_rate = cfg->webhook_peak_rate;
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
        else
            del_text_drop(e, &e->del[i]);
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
        free(n->pass_txt[i]);
    n->npass = 0;
}

/* What create_deliveries needs of an event: its seq (0 when it has none),
 * type and client ("" when absent or not strings) and order id (-1 when not
 * a non-negative integer). */
typedef struct ev_head {
    uint64_t seq;
    char type[PH_SKU_MAX + 2]; /* one byte more: a longer type is refused, not cut */
    char client[PH_SKU_MAX + 2];
    int64_t order_id;
} ev_head;

/* The digits of a stored integer; -1 for anything else (a sign, a fraction). */
static int64_t raw_uint(const char *v, size_t n)
{
    uint64_t x = 0;
    if (!v || !n || n > 19)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    return x > INT64_MAX ? -1 : (int64_t)x;
}

/* A stored string without escapes, into out (cut to its size); -1 when it
 * is not such a string (then the tree reads it). */
static int raw_plain_str(const char *v, size_t n, char *out, size_t size)
{
    if (!v) {
        out[0] = 0;
        return 0;
    }
    if (n < 2 || v[0] != '"' || v[n - 1] != '"' || memchr(v, '\\', n))
        return -1;
    snprintf(out, size, "%.*s", (int)(n - 2), v + 1);
    return 0;
}

/* Reads an event's head from its text without a tree (the store writes the
 * members as plain strings and integers); the rare text that is not in that
 * form (an escaped character) is parsed. */
static void ev_head_read(const char *txt, size_t len, ev_head *h)
{
    static const char *const keys[] = {"seq", "type", "client", "order_id"};
    const char *v[4];
    size_t vl[4];
    memset(h, 0, sizeof *h);
    h->order_id = -1;
    if (ph_event_members(txt, len, keys, 4, v, vl) == 0 &&
        !raw_plain_str(v[1], vl[1], h->type, sizeof h->type) &&
        !raw_plain_str(v[2], vl[2], h->client, sizeof h->client)) {
        int64_t seq = raw_uint(v[0], vl[0]);
        h->seq = seq > 0 ? (uint64_t)seq : 0;
        h->order_id = raw_uint(v[3], vl[3]);
        return;
    }
    json_t *ev = json_loadb(txt, len, 0, NULL);
    json_int_t seq = json_integer_value(json_object_get(ev, "seq"));
    const char *type = json_string_value(json_object_get(ev, "type"));
    const char *client = json_string_value(json_object_get(ev, "client"));
    json_t *oid = json_object_get(ev, "order_id");
    h->seq = seq > 0 ? (uint64_t)seq : 0;
    snprintf(h->type, sizeof h->type, "%s", type ? type : "");
    snprintf(h->client, sizeof h->client, "%s", client ? client : "");
    if (json_is_integer(oid) && json_integer_value(oid) >= 0)
        h->order_id = json_integer_value(oid);
    json_decref(ev);
}

/* Hands the pass's event texts to their new deliveries (up to
 * NOTIFY_TEXTS_MAX kept per endpoint; the others are read again when sent). */
static void pass_to_deliveries(ph_notify *n, wh_ep *e)
{
    for (size_t i = 0; i < n->npass && e->ntexts < NOTIFY_TEXTS_MAX; i++) {
        wh_del *d = del_find(e, n->pass_seq[i]);
        if (!d || d->ev || d->settled)
            continue;
        d->ev = n->pass_txt[i];
        d->ev_len = n->pass_len[i];
        n->pass_txt[i] = NULL;
        e->ntexts++;
    }
    pass_clear(n);
}

/* Reads the events after e's cursor and creates the deliveries of those it
 * takes, moving the cursor over every event read (one command). The texts of
 * the events taken stay with their deliveries for the bodies. */
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
    n->last_event_at = ph_now_ms();
    size_t nd = 0;
    uint64_t to = e->cursor;
    for (size_t i = 0; i < cnt && i < NOTIFY_EVENTS_PAGE; i++) {
        size_t len = strlen(list[i]);
        ev_head h;
        ev_head_read(list[i], len, &h);
        if (h.seq)
            to = h.seq;
        int product = h.type[0] && ph_wh_product_event(h.type);
        int take = h.type[0] && strlen(h.type) <= PH_SKU_MAX && h.seq && ep_wants(e, h.type) &&
                   (product || (h.order_id >= 0 && h.client[0] && !strcmp(h.client, e->client)));
        if (!take)
            continue;
        ph_wh_new *d = &n->newbuf[nd++];
        d->seq = h.seq;
        d->order_id = product ? 0 : (uint64_t)h.order_id;
        memcpy(d->type, h.type, strlen(h.type) + 1); /* at most PH_SKU_MAX: take */
        n->pass_seq[n->npass] = h.seq;
        n->pass_len[n->npass] = len;
        n->pass_txt[n->npass++] = list[i];
        list[i] = NULL; /* the pass's now */
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
        pass_to_deliveries(n, e);
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
            else
                del_text_drop(e, &e->del[i]);
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
    free(j->url);
    free(j->body);
    free(j);
}

static void text_put(void *sink, const char *p, size_t len)
{
    wh_text *t = sink;
    if (t->oom)
        return;
    if (t->len + len + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 2048;
        while (cap < t->len + len + 1)
            cap *= 2;
        char *g = realloc(t->p, cap);
        if (!g) {
            t->oom = 1;
            return;
        }
        t->p = g;
        t->cap = cap;
    }
    memcpy(t->p + t->len, p, len);
    t->len += len;
    t->p[t->len] = 0;
}

static void text_lit(wh_text *t, const char *s)
{
    text_put(t, s, strlen(s));
}

/* The body into n->body: the event cut for a mall and the order's view
 * without codes, written as text (byte for byte what jansson would print of
 * {"type", "timestamp", "data": {"seq", "previous", "event", "order"}}).
 * The event's text is the one kept since its delivery was created, else read
 * again. 0, or -1 (the event is gone or unreadable, out of memory). */
static int build_body(ph_notify *n, const wh_ep *e, const wh_del *d, const ph_config *cfg)
{
    ph_err err = {0};
    const char *ev = d->ev;
    size_t evlen = d->ev_len;
    char **list = NULL;
    size_t cnt = 0;
    if (!ev) {
        if (ph_store_event_list(n->store, d->seq - 1, 1, &list, &cnt, &err))
            return -1;
        if (cnt != 1) {
            ph_store_event_list_free(list, cnt);
            return -1;
        }
        ev = list[0];
        evlen = strlen(ev);
    }
    static const char *const at_key[] = {"at"};
    const char *at;
    size_t atlen;
    wh_text *t = &n->body;
    t->len = 0;
    t->oom = 0;
    int product = ph_wh_product_event(d->type), rc = -1;
    if (ph_event_members(ev, evlen, at_key, 1, &at, &atlen))
        goto out;
    text_lit(t, "{\"type\":");
    if (ph_json_str(d->type, text_put, t))
        goto out;
    text_lit(t, ",\"timestamp\":");
    if (at && atlen >= 2 && at[0] == '"')
        text_put(t, at, atlen);
    else
        text_lit(t, "\"\"");
    char num[64];
    snprintf(num, sizeof num, ",\"data\":{\"seq\":%" PRIu64 ",\"previous\":", d->seq);
    text_lit(t, num);
    if (d->previous) {
        snprintf(num, sizeof num, "%" PRIu64, d->previous);
        text_lit(t, num);
    } else
        text_lit(t, "null");
    text_lit(t, ",\"event\":");
    if ((product ? ph_event_product_cut_text : ph_event_mall_cut_text)(ev, evlen, text_put, t))
        goto out;
    text_lit(t, ",\"order\":");
    int view = 0;
    if (!product && d->order_id) {
        ph_order *o = NULL;
        if (ph_store_order_get(n->store, d->order_id, 0, &o, &err) == PH_OK && o &&
            !strcmp(o->client, e->client)) {
            size_t mark = t->len;
            view = n->render(n->render_arg, o, cfg, text_put, t) == 0 && !t->oom;
            if (!view) /* what it wrote is dropped: the body says null */
                t->len = mark, t->oom = 0;
        }
        ph_order_free(o);
    }
    if (!view)
        text_lit(t, "null");
    text_lit(t, "}}");
    rc = t->oom ? -1 : 0;
out:
    ph_store_event_list_free(list, cnt);
    return rc;
}

/* Builds, signs and submits one delivery. 0 when it went out. */
static int send_one(ph_notify *n, wh_ep *e, wh_del *d, const ph_config *cfg, int64_t now)
{
    for (size_t k = 0; k < e->nkeys; k++)
        if (!e->signers[k] && !(e->signers[k] = ph_wh_signer_new(e->keys[k].key, e->keys[k].len)))
            return -1;
    if (build_body(n, e, d, cfg))
        return -1;
    wh_job *j = malloc(sizeof *j);
    if (!j)
        return -1;
    memset(j, 0, offsetof(wh_job, hdr_id)); /* the header texts are written whole below */
    j->n = n;
    snprintf(j->ep, sizeof j->ep, "%s", e->id);
    snprintf(j->key, sizeof j->key, "webhook:%s", e->id);
    j->seq = d->seq;
    j->body_len = n->body.len;
    j->body = malloc(j->body_len + 1);
    j->url = strdup(e->url);
    if (!j->body || !j->url) {
        job_free(j);
        return -1;
    }
    memcpy(j->body, n->body.p, j->body_len + 1);
    char id[PH_WH_ID_MAX];
    ph_wh_delivery_id(e->id, d->seq, id);
    int64_t ts = now / 1000;
    size_t at = (size_t)snprintf(j->hdr_sig, sizeof j->hdr_sig, "webhook-signature: ");
    for (size_t k = 0; k < e->nkeys; k++) {
        char sig[PH_WH_SIG_MAX];
        if (ph_wh_sign_with(e->signers[k], id, ts, j->body, j->body_len, sig)) {
            job_free(j);
            return -1;
        }
        at += (size_t)snprintf(j->hdr_sig + at, sizeof j->hdr_sig - at, "%s%s", k ? " " : "", sig);
    }
    assert(at < sizeof j->hdr_sig);
    snprintf(j->hdr_id, sizeof j->hdr_id, "webhook-id: %s", id);
    snprintf(j->hdr_ts, sizeof j->hdr_ts, "webhook-timestamp: %lld", (long long)ts);
    j->hdrc[0] = "Content-Type: application/json";
    j->hdrc[1] = "User-Agent: perkhub-webhooks";
    j->hdrc[2] = j->hdr_id;
    j->hdrc[3] = j->hdr_ts;
    j->hdrc[4] = j->hdr_sig;
    j->raw = (ph_sio_raw){.key = j->key,
                          .url = j->url,
                          .method = "POST",
                          .headers = j->hdrc,
                          .nheaders = NOTIFY_HEADERS,
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
    del_text_drop(e, d); /* a retry reads it again */
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
        if (n->busy && n->budget < 1) { /* at peak: the rest waits for the budget */
            int64_t at = now + 20;      /* 20 ms: a few deliveries' budget, not a pass each */
            if (!next || at < next)
                next = at;
            break;
        }
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
        } else if (n->busy)
            n->budget -= 1;
    }
    return next;
}

/* This thread's time waiting for a core, in ns (/proc/thread-self/schedstat:
 * on CPU, waiting on a run queue, slices); 0 when the kernel does not say. */
static uint64_t sched_wait_ns(void)
{
    char buf[128];
    int fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t got = read(fd, buf, sizeof buf - 1);
    close(fd);
    unsigned long long run, wait;
    if (got <= 0)
        return 0;
    buf[got] = 0;
    return sscanf(buf, "%llu %llu", &run, &wait) == 2 ? (uint64_t)wait : 0;
}

/* Is this pass at peak (ph_wh_busy)? The run-queue wait and whether events
 * are written are measured over windows of PH_WH_BUSY_WINDOW_MS; the budget
 * refills at webhooks.peak_rate a second, up to a tenth of a second's worth. */
static void measure_busy(ph_notify *n, int64_t now)
{
    if (!n->measured_at) {
        n->measured_at = now;
        n->sched_wait0 = sched_wait_ns();
        n->event_seen = ph_store_event_last(n->store);
    } else if (now - n->measured_at >= PH_WH_BUSY_WINDOW_MS) {
        /* events written meanwhile count even when none was read (at peak no
         * new deliveries are made while a backlog waits) */
        uint64_t last = ph_store_event_last(n->store);
        if (last != n->event_seen) {
            n->event_seen = last;
            n->last_event_at = now;
        }
        uint64_t w = sched_wait_ns();
        n->sched_wait = w >= n->sched_wait0 ? w - n->sched_wait0 : 0;
        n->sched_wall = (uint64_t)(now - n->measured_at) * 1000000u;
        n->sched_wait0 = w;
        n->measured_at = now;
    }
    /* peak_rate 0: deliveries never wait for orders */
    int busy =
        n->peak_rate && ph_wh_busy(now, n->last_event_at, n->sched_wait, n->sched_wall, n->busy);
    double rate = n->peak_rate;
    if (busy && !n->busy)
        n->budget = rate / 10.0;
    else if (busy && now > n->budget_at) {
        n->budget += (double)(now - n->budget_at) * rate / 1000.0;
        if (n->budget > rate / 10.0)
            n->budget = rate / 10.0;
    }
    if (busy != n->busy)
        ph_log(n->log, PH_LOG_DEBUG, NULL, "webhook.peak",
               busy ? "state=busy effect=\"deliveries wait for orders: at most %u a second\""
                    : "state=clear effect=\"deliveries at full speed\"",
               n->peak_rate);
    n->busy = busy;
    n->budget_at = now;
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

/* Deliveries yield the CPU to orders: this thread runs at the lowest
 * priority short of SCHED_IDLE (Linux keeps a nice value per thread). That
 * alone is not enough: each delivery costs the I/O thread (curl), the writer
 * and the receiver several times what it costs here, at their own priority,
 * and this thread gets a core whenever the request threads wait for a
 * commit. So at peak (measure_busy) it also hands over at most
 * webhooks.peak_rate deliveries a second (bench/webhooks.sh: with nice alone,
 * orders lost 30 % to 70 % in the rounds where the machine was quiet). Not
 * SCHED_IDLE: this thread takes the module's mutex, which the I/O thread's
 * callbacks take too. */
static void notify_lower_priority(ph_notify *n)
{
    pthread_setname_np(pthread_self(), "ph-notify");
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), NOTIFY_NICE))
        ph_log(n->log, PH_LOG_WARN, NULL, "webhook.priority",
               "detail=\"%s\" effect=\"deliveries run at the orders' priority\"", strerror(errno));
}

static void *notify_main(void *arg)
{
    ph_notify *n = arg;
    notify_lower_priority(n);
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
        int more = 0;
        measure_busy(n, now);
        for (wh_ep *e = n->eps; e; e = e->next) {
            if (!e->configured || !e->enabled)
                continue;
            if (sync_state(n, e) != PH_OK)
                continue;
            /* at peak a backlog already made waits to be sent before more is
             * made: creating costs the writer too */
            if (!n->busy || ep_pending(e) < e->in_flight + NOTIFY_EVENTS_PAGE)
                create_deliveries(n, e);
            else
                e->more = 0;
            more |= e->more;
            del_compact(e);
            /* the deliveries just created are due at the command's time: sent
             * in this pass (unless at peak), with the event texts just read */
            now = ph_now_ms();
            int64_t next = send_due(n, e, ref->cfg, now);
            pass_clear(n);
            if (next && (!due || next < due))
                due = next;
            stat_of(n, e->id, ep_pending(e), 0, 0, 0, 0);
        }
        ph_cfg_release(ref);
        if (more)
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
    free(n->body.p);
    pthread_cond_destroy(&n->cv);
    pthread_mutex_destroy(&n->mu);
    free(n);
}
