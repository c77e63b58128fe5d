/* sim_notify.c — callbacks: a queue of notifies, sender threads that POST them
 * with libcurl and retry, and the ticker that completes due recharges. */
#include "supsim.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NOTIFY_ATTEMPTS   5
#define NOTIFY_BACKOFF_MS 200
#define NOTIFY_TIMEOUT_MS 3000
#define TICK_MS           10

typedef struct sim_job {
    sim_proto proto;
    char order_id[32];
    char *url, *body, *header;
    int copies, attempt;
    int64_t due_ms;
    struct sim_job *next;
} sim_job;

struct sim_notifier {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sim_job *head; /* sorted by due_ms */
    atomic_int stop;
    pthread_t *senders;
    int nsenders;
    pthread_t ticker;
    int ticker_started;
};

static void job_free(sim_job *j)
{
    if (!j)
        return;
    free(j->url);
    free(j->body);
    free(j->header);
    free(j);
}

/* Inserts j in due order; n->mu held. */
static void job_insert(struct sim_notifier *n, sim_job *j)
{
    sim_job **at = &n->head;
    while (*at && (*at)->due_ms <= j->due_ms)
        at = &(*at)->next;
    j->next = *at;
    *at = j;
    pthread_cond_signal(&n->cv);
}

void sim_notify_queue_locked(sim *s, sim_order *o)
{
    struct sim_notifier *n = s->notifier;
    if (!o->notify_url || !n)
        return;
    sim_job *j = calloc(1, sizeof *j);
    int64_t now = (int64_t)time(NULL);
    if (!j)
        return;
    j->proto = o->proto;
    snprintf(j->order_id, sizeof j->order_id, "%s", o->order_id);
    j->url = strdup(o->notify_url);
    if (o->proto == SIM_GATEWAY)
        j->body = sim_gw_notify_locked(s, o, now, SIM_N_LEGIT);
    else if (sim_rw_notify_locked(s, o, now, SIM_N_LEGIT, &j->body, &j->header))
        j->body = j->header = NULL;
    j->copies = sim_fault_copies_locked(s, o->proto);
    j->due_ms = sim_mono_ms();
    if (!j->url || !j->body) {
        job_free(j);
        return;
    }
    /* what "replay" re-sends: exactly this body (and signature) */
    free(o->last_body);
    free(o->last_header);
    o->last_body = strdup(j->body);
    o->last_header = j->header ? strdup(j->header) : NULL;
    pthread_mutex_lock(&n->mu);
    job_insert(n, j);
    pthread_mutex_unlock(&n->mu);
}

void sim_notify_drop(sim *s)
{
    struct sim_notifier *n = s->notifier;
    if (!n)
        return;
    pthread_mutex_lock(&n->mu);
    while (n->head) {
        sim_job *j = n->head;
        n->head = j->next;
        job_free(j);
    }
    pthread_mutex_unlock(&n->mu);
}

/* ---- one concurrent burst of POSTs ------------------------------------------- */

typedef struct sim_xfer {
    CURL *c;
    struct curl_slist *hdr;
    char *buf;
    size_t n;
    sim *s;
} sim_xfer;

static size_t on_body(char *p, size_t sz, size_t nm, void *arg)
{
    sim_xfer *x = arg;
    size_t k = sz * nm;
    if (x->n > 4096)
        return k; /* a receiver's answer is a word; ignore the rest */
    char *g = realloc(x->buf, x->n + k + 1);
    if (!g)
        return 0;
    memcpy(g + x->n, p, k);
    x->buf = g;
    x->n += k;
    g[x->n] = 0;
    return k;
}

static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    sim_xfer *x = arg;
    /* a held-up receiver must not delay shutdown by the whole timeout */
    return atomic_load(&x->s->stopping);
}

static int xfer_setup(sim_xfer *x, const char *url, const char *body, const char *header)
{
    if (!(x->c = curl_easy_init()))
        return -1;
    x->hdr = curl_slist_append(NULL, "Content-Type: application/json");
    if (header)
        x->hdr = curl_slist_append(x->hdr, header);
    curl_easy_setopt(x->c, CURLOPT_URL, url);
    curl_easy_setopt(x->c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(x->c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(x->c, CURLOPT_HTTPHEADER, x->hdr);
    curl_easy_setopt(x->c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->c, CURLOPT_TIMEOUT_MS, (long)NOTIFY_TIMEOUT_MS);
    curl_easy_setopt(x->c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(x->c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(x->c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(x->c, CURLOPT_XFERINFODATA, x);
    /* each copy on its own connection, so copies really arrive concurrently */
    curl_easy_setopt(x->c, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(x->c, CURLOPT_FORBID_REUSE, 1L);
    return 0;
}

static int answer_ok(sim_proto p, long status, const char *body)
{
    if (p == SIM_REWARDS)
        return status >= 200 && status < 300;
    if (status != 200 || !body)
        return 0;
    while (*body == ' ' || *body == '\n' || *body == '\r' || *body == '\t')
        body++;
    size_t n = strlen(body);
    while (n && (body[n - 1] == ' ' || body[n - 1] == '\n' || body[n - 1] == '\r'))
        n--;
    return n == 7 && !strncmp(body, "success", 7);
}

static void count_sent(sim *s, const char *order_id, int copies)
{
    pthread_mutex_lock(&s->mu);
    s->counts.callbacks_sent += copies;
    sim_order *o = order_id ? sim_order_by_id_locked(s, order_id) : NULL;
    if (o)
        o->callbacks += copies;
    pthread_mutex_unlock(&s->mu);
}

int sim_notify_send_now(sim *s, sim_proto p, const char *order_id, const char *url,
                        const char *body, const char *header, int copies, long *statuses,
                        char **bodies)
{
    sim_xfer *x = calloc((size_t)copies, sizeof *x);
    CURLM *m = curl_multi_init();
    int ok = 0, running = 0;
    if (!x || !m)
        goto done;
    for (int i = 0; i < copies; i++) {
        x[i].s = s;
        if (xfer_setup(&x[i], url, body, header) == 0)
            curl_multi_add_handle(m, x[i].c);
    }
    count_sent(s, order_id, copies);
    do {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 50, NULL);
    } while (running);
    for (int i = 0; i < copies; i++) {
        statuses[i] = 0;
        if (x[i].c)
            curl_easy_getinfo(x[i].c, CURLINFO_RESPONSE_CODE, &statuses[i]);
        ok += answer_ok(p, statuses[i], x[i].buf);
        if (bodies)
            bodies[i] = x[i].buf ? x[i].buf : strdup("");
        else
            free(x[i].buf);
    }
done:
    for (int i = 0; x && i < copies; i++) {
        if (x[i].c)
            curl_multi_remove_handle(m, x[i].c);
        curl_easy_cleanup(x[i].c);
        curl_slist_free_all(x[i].hdr);
    }
    curl_multi_cleanup(m);
    free(x);
    return ok;
}

/* ---- threads ------------------------------------------------------------------ */

/* Waits for the first due job; NULL when stopping. */
static sim_job *job_next(struct sim_notifier *n)
{
    pthread_mutex_lock(&n->mu);
    for (;;) {
        if (atomic_load(&n->stop)) {
            pthread_mutex_unlock(&n->mu);
            return NULL;
        }
        int64_t now = sim_mono_ms();
        if (n->head && n->head->due_ms <= now) {
            sim_job *j = n->head;
            n->head = j->next;
            pthread_mutex_unlock(&n->mu);
            return j;
        }
        int64_t wait = n->head ? n->head->due_ms - now : 1000;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t)(wait / 1000);
        ts.tv_nsec += (long)(wait % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&n->cv, &n->mu, &ts);
    }
}

static void *sender_main(void *arg)
{
    sim *s = arg;
    struct sim_notifier *n = s->notifier;
    sim_job *j;
    while ((j = job_next(n))) {
        if (j->attempt > 0 && j->proto == SIM_REWARDS) {
            /* a retry is signed anew, as a real sender would */
            char *h = sim_rw_header(s->cfg.rw_whsec, j->body, (int64_t)time(NULL));
            if (h) {
                free(j->header);
                j->header = h;
            }
        }
        long st[64];
        int copies = j->copies > 64 ? 64 : j->copies;
        int ok = sim_notify_send_now(s, j->proto, j->order_id, j->url, j->body, j->header, copies,
                                     st, NULL);
        if (ok || ++j->attempt >= NOTIFY_ATTEMPTS || atomic_load(&n->stop)) {
            job_free(j);
            continue;
        }
        j->due_ms = sim_mono_ms() + ((int64_t)NOTIFY_BACKOFF_MS << (j->attempt - 1));
        pthread_mutex_lock(&n->mu);
        job_insert(n, j);
        pthread_mutex_unlock(&n->mu);
    }
    return NULL;
}

static void *ticker_main(void *arg)
{
    sim *s = arg;
    struct timespec ts = {0, TICK_MS * 1000000L};
    while (!atomic_load(&s->notifier->stop)) {
        pthread_mutex_lock(&s->mu);
        sim_tick_locked(s);
        pthread_mutex_unlock(&s->mu);
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int sim_notifier_start(sim *s)
{
    struct sim_notifier *n = calloc(1, sizeof *n);
    int want = s->cfg.threads > 0 ? s->cfg.threads : 2;
    if (!n || !(n->senders = calloc((size_t)want, sizeof *n->senders))) {
        free(n);
        return -1;
    }
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cv, NULL);
    s->notifier = n;
    for (; n->nsenders < want; n->nsenders++)
        if (pthread_create(&n->senders[n->nsenders], NULL, sender_main, s))
            break;
    n->ticker_started = pthread_create(&n->ticker, NULL, ticker_main, s) == 0;
    if (n->nsenders == 0 || !n->ticker_started) {
        sim_notifier_stop(s);
        return -1;
    }
    return 0;
}

void sim_notifier_stop(sim *s)
{
    struct sim_notifier *n = s->notifier;
    if (!n)
        return;
    pthread_mutex_lock(&n->mu);
    atomic_store(&n->stop, 1);
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
    for (int i = 0; i < n->nsenders; i++)
        pthread_join(n->senders[i], NULL);
    if (n->ticker_started)
        pthread_join(n->ticker, NULL);
    pthread_mutex_lock(&s->mu);
    sim_notify_drop(s);
    s->notifier = NULL;
    pthread_mutex_unlock(&s->mu);
    pthread_cond_destroy(&n->cv);
    pthread_mutex_destroy(&n->mu);
    free(n->senders);
    free(n);
}
