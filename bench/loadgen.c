/*
 * loadgen.c — the supplier-I/O load generator of bench/supplier_io.sh (issue 4,
 * point 6). One run per invocation against a running perkhubd whose recharge
 * products go to suppliers answering after --latency-ms; prints one JSON object
 * with what it measured on stdout, diagnostics on stderr, exits non-zero when
 * the run itself went wrong (a refused order, a transport error, orders left
 * non-final after --settle-s).
 *
 *   loadgen --url URL --token T --ops-token O --skus a,b --prefix P
 *           --mode burst  --orders N --conns C --latency-ms L [--pid PID]
 *   loadgen ... --mode steady --target T --duration S --warmup W ...
 *           [--cpu NAME=PID]... [--settle-s 120] [--account 13800000001]
 *
 * Two threads, then one pass over the feed:
 *   submitter (main): libcurl multi, --conns keep-alive connections, each
 *     POST /v1/orders {"client_order_id":"<prefix>-<n>","sku":..,"account":..}
 *     (SKUs round robin), expecting 202 (or 201);
 *   watcher: GET /v1/suppliers (ops) every 10 ms: the sum over suppliers of
 *     health.in_flight, queued and finished exchanges (sent + not_sent, both
 *     counted when an exchange ends); VmRSS/VmHWM of --pid; a series every 100 ms;
 *   afterwards the event feed is read once (GET /v1/events, no load during the
 *     run): every order.succeeded / order.failed event carries its commit time
 *     ("at", ms), which gives the exact completion time of every order.
 *
 * burst: submit --orders as fast as --conns connections allow. completion rate
 *   = orders / (first submission -> last order final); ideal = peak supplier
 *   in_flight / latency.
 * steady (closed loop on outstanding orders): a new order is submitted whenever
 *   submitted - finished exchanges < --target, for --duration seconds. Over the
 *   window [warmup, duration]: completion rate = orders whose final event falls
 *   in the window / window length; ideal(target) = target / latency and
 *   ideal(sustained) = time-averaged supplier in_flight / latency.
 * --latency-ms 0 (the script's ceiling run): no ideal; ideals and ratios are 0.
 * The account goes only into request bodies, never into output or errors.
 *
 * Build: gcc -O2 -std=c11 -D_GNU_SOURCE -o loadgen bench/loadgen.c -lcurl -ljansson -lpthread
 */
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_SKUS      16
#define MAX_CPU       16
#define MAX_CONNS     4096
#define MAX_THREADS   512
#define WATCH_MS      10
#define SERIES_MS     100
#define EVENTS_PAGE   1000
#define REQ_TIMEOUT_S 30L

/* ---- settings ------------------------------------------------------------------ */

typedef struct cpu_target {
    char name[32];
    int pid;
} cpu_target;

typedef struct opts {
    const char *url, *token, *ops_token, *prefix, *account, *mode;
    char *skus[MAX_SKUS];
    int nskus;
    long orders, target, conns, latency_ms, settle_s;
    double duration_s, warmup_s;
    int pid;
    cpu_target cpu[MAX_CPU];
    int ncpu;
} opts;

/* ---- clocks ---------------------------------------------------------------------- */

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/* "2026-11-24T10:00:00.123Z" -> ms since the epoch; -1 when malformed. */
static int64_t parse_at(const char *s)
{
    struct tm tm = {0};
    int ms = 0;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

/* ---- small HTTP GET helper (one keep-alive handle per thread) ------------------- */

typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static size_t buf_write(char *data, size_t sz, size_t nm, void *arg)
{
    buf *b = arg;
    size_t n = sz * nm;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *g = realloc(b->p, cap);
        if (!g)
            return 0;
        b->p = g;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = 0;
    return n;
}

typedef struct getter {
    CURL *easy;
    struct curl_slist *hdrs;
    buf body;
} getter;

static int getter_init(getter *g, const char *token)
{
    char auth[300];
    memset(g, 0, sizeof *g);
    g->easy = curl_easy_init();
    if (!g->easy)
        return -1;
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    g->hdrs = curl_slist_append(NULL, auth);
    curl_easy_setopt(g->easy, CURLOPT_HTTPHEADER, g->hdrs);
    curl_easy_setopt(g->easy, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(g->easy, CURLOPT_WRITEDATA, &g->body);
    curl_easy_setopt(g->easy, CURLOPT_TIMEOUT, REQ_TIMEOUT_S);
    curl_easy_setopt(g->easy, CURLOPT_NOSIGNAL, 1L);
    return 0;
}

static void getter_free(getter *g)
{
    curl_easy_cleanup(g->easy);
    curl_slist_free_all(g->hdrs);
    free(g->body.p);
}

/* GET url into a parsed JSON value (caller json_decref's it); NULL on any failure. */
static json_t *get_json(getter *g, const char *url)
{
    long status = 0;
    g->body.n = 0;
    curl_easy_setopt(g->easy, CURLOPT_URL, url);
    if (curl_easy_perform(g->easy) != CURLE_OK)
        return NULL;
    curl_easy_getinfo(g->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200 || !g->body.p)
        return NULL;
    return json_loadb(g->body.p, g->body.n, 0, NULL);
}

/* ---- /proc: memory and CPU ------------------------------------------------------- */

/* VmRSS counts LMDB's mapped file pages too (clean page cache, growing with the
 * orders stored); RssAnon is the daemon's own memory. The target is judged on
 * VmHWM, the stricter figure; the anonymous peak is reported beside it. */
static void mem_of(int pid, long *rss_kb, long *hwm_kb, long *anon_kb)
{
    char path[64], line[256];
    *rss_kb = *hwm_kb = *anon_kb = 0;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        sscanf(line, "VmRSS: %ld", rss_kb);
        sscanf(line, "VmHWM: %ld", hwm_kb);
        sscanf(line, "RssAnon: %ld", anon_kb);
    }
    fclose(f);
}

/* utime + stime of /proc/<path>/stat, in clock ticks (0 when unreadable). */
static long long ticks_of(const char *statpath)
{
    char line[1024];
    FILE *f = fopen(statpath, "r");
    if (!f)
        return 0;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = 0;
    char *p = strrchr(line, ')'); /* comm may hold spaces */
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (long long)(ut + st);
}

/* A process's CPU ticks in all, and per thread (to find the busy ones). */
typedef struct cpu_snap {
    long long total;
    int ntid;
    int tid[MAX_THREADS];
    long long ticks[MAX_THREADS];
} cpu_snap;

static void cpu_snap_take(int pid, cpu_snap *s)
{
    char path[96];
    memset(s, 0, sizeof *s);
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    s->total = ticks_of(path);
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d)
        return;
    for (struct dirent *e; s->ntid < MAX_THREADS && (e = readdir(d));) {
        int tid = atoi(e->d_name);
        if (tid <= 0)
            continue;
        char tp[128];
        snprintf(tp, sizeof tp, "/proc/%d/task/%d/stat", pid, tid);
        s->tid[s->ntid] = tid;
        s->ticks[s->ntid++] = ticks_of(tp);
    }
    closedir(d);
}

/* {"cpu_s":..,"cores":..,"top_threads":[{"tid":..,"cpu_s":..},..]} over a..b. */
static json_t *cpu_delta(const cpu_snap *a, const cpu_snap *b, double seconds)
{
    double hz = (double)sysconf(_SC_CLK_TCK);
    double cpu = (double)(b->total - a->total) / hz;
    long long d[MAX_THREADS];
    for (int i = 0; i < b->ntid; i++) {
        d[i] = b->ticks[i];
        for (int j = 0; j < a->ntid; j++)
            if (a->tid[j] == b->tid[i])
                d[i] -= a->ticks[j];
    }
    json_t *top = json_array();
    for (int k = 0; k < 4; k++) { /* the four busiest threads */
        int best = -1;
        for (int i = 0; i < b->ntid; i++)
            if (d[i] > 0 && (best < 0 || d[i] > d[best]))
                best = i;
        if (best < 0)
            break;
        json_array_append_new(
            top, json_pack("{s:i,s:f}", "tid", b->tid[best], "cpu_s", (double)d[best] / hz));
        d[best] = -1;
    }
    return json_pack("{s:f,s:f,s:o}", "cpu_s", cpu, "cores", seconds > 0 ? cpu / seconds : 0.0,
                     "top_threads", top);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

typedef struct cpu_all {
    cpu_snap snap[MAX_CPU];
    long long commits, commands; /* the store writer's, from GET /v1/stats */
    double self_s;
    int64_t at_us;
} cpu_all;

static void cpu_all_take(const opts *o, cpu_all *c, getter *g)
{
    for (int i = 0; i < o->ncpu; i++)
        cpu_snap_take(o->cpu[i].pid, &c->snap[i]);
    c->self_s = self_cpu_s();
    c->at_us = mono_us();
    char url[600];
    snprintf(url, sizeof url, "%s/v1/stats", o->url);
    json_t *j = get_json(g, url), *w = json_object_get(j, "writer");
    c->commits = json_integer_value(json_object_get(w, "commits"));
    c->commands = json_integer_value(json_object_get(w, "commands"));
    json_decref(j);
}

/* ---- shared state ---------------------------------------------------------------- */

typedef struct sample {
    int64_t t_ms; /* since the first submission */
    long in_flight, queued, outstanding, rss_kb;
} sample;

typedef struct run {
    const opts *o;
    _Atomic int64_t t0_us; /* the first submission (0 before: the watcher waits) */
    int64_t t0_wall_ms;
    int64_t win_from_us, win_to_us;
    atomic_long submitted, accepted, finished; /* finished: exchanges since the start */
    atomic_int stop_watch;
    /* CPU of the --cpu processes: at the start, the window's edges and the end
     * (the window's edges taken by the watcher, as the submitter is busy) */
    cpu_all c_start, c_from, c_to, c_end;
    int took_from, took_to;
    long finished_base; /* exchanges finished before the run (catalog probes...) */
    /* watcher results (read after it is joined) */
    long peak_in_flight, peak_queued, peak_outstanding, peak_rss_kb, hwm_kb, peak_anon_kb,
        watch_errors;
    double sum_in_flight, sum_queued, sum_outstanding, sum_dt; /* over the window */
    sample *series;
    size_t nseries, capseries;
    /* submitter results */
    long errors;
    char first_error[512];
    double *lat_ms;
    size_t nlat, caplat;
} run;

/* Sum of health over every supplier; -1 when the answer is unusable. */
static int read_health(getter *g, const char *url, long *in_flight, long *queued, long *finished)
{
    json_t *j = get_json(g, url);
    if (!j)
        return -1;
    *in_flight = *queued = *finished = 0;
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(j, "suppliers"), i, s)
    {
        json_t *h = json_object_get(s, "health"), *x = json_object_get(h, "exchanges");
        *in_flight += (long)json_integer_value(json_object_get(h, "in_flight"));
        *queued += (long)json_integer_value(json_object_get(h, "queued"));
        *finished += (long)(json_integer_value(json_object_get(x, "sent")) +
                            json_integer_value(json_object_get(x, "not_sent")));
    }
    json_decref(j);
    return 0;
}

static void series_add(run *r, const sample *s)
{
    if (r->nseries == r->capseries) {
        size_t cap = r->capseries ? r->capseries * 2 : 1024;
        sample *g = realloc(r->series, cap * sizeof *g);
        if (!g)
            return;
        r->series = g;
        r->capseries = cap;
    }
    r->series[r->nseries++] = *s;
}

static void *watch_main(void *arg)
{
    run *r = arg;
    getter g;
    char url[512];
    if (getter_init(&g, r->o->ops_token))
        return NULL;
    snprintf(url, sizeof url, "%s/v1/suppliers", r->o->url);
    int64_t last_us = mono_us(), next_series_us = 0;
    while (!atomic_load(&r->stop_watch)) {
        long inf, q, fin, rss = 0, hwm = 0, anon = 0;
        if (read_health(&g, url, &inf, &q, &fin)) {
            r->watch_errors++;
            sleep_ms(WATCH_MS);
            continue;
        }
        atomic_store(&r->finished, fin - r->finished_base);
        int64_t now = mono_us();
        long out = atomic_load(&r->submitted) - (fin - r->finished_base);
        if (inf > r->peak_in_flight)
            r->peak_in_flight = inf;
        if (q > r->peak_queued)
            r->peak_queued = q;
        if (out > r->peak_outstanding)
            r->peak_outstanding = out;
        if (r->t0_us && now >= r->win_from_us && now <= r->win_to_us) {
            double dt = (double)(now - last_us) / 1e6;
            r->sum_in_flight += inf * dt;
            r->sum_queued += q * dt;
            r->sum_outstanding += out * dt;
            r->sum_dt += dt;
        }
        last_us = now;
        if (r->t0_us && !r->took_from && now >= r->win_from_us)
            cpu_all_take(r->o, &r->c_from, &g), r->took_from = 1;
        if (r->t0_us && !r->took_to && now >= r->win_to_us)
            cpu_all_take(r->o, &r->c_to, &g), r->took_to = 1;
        if (r->o->pid && now >= next_series_us) {
            mem_of(r->o->pid, &rss, &hwm, &anon);
            if (anon > r->peak_anon_kb)
                r->peak_anon_kb = anon;
            if (rss > r->peak_rss_kb)
                r->peak_rss_kb = rss;
            if (hwm > r->hwm_kb)
                r->hwm_kb = hwm;
            if (r->t0_us) {
                sample s = {(now - r->t0_us) / 1000, inf, q, out, rss};
                series_add(r, &s);
            }
            next_series_us = now + SERIES_MS * 1000;
        }
        sleep_ms(WATCH_MS);
    }
    getter_free(&g);
    return NULL;
}

/* ---- the submitter ----------------------------------------------------------------- */

typedef struct slot {
    CURL *easy;
    char body[256];
    char id[96]; /* client_order_id: the only part of the body an error may name */
    char reply[256];
    size_t reply_len;
} slot;

static size_t slot_write(char *data, size_t sz, size_t nm, void *arg)
{
    slot *s = arg;
    size_t n = sz * nm, room = sizeof s->reply - 1 - s->reply_len;
    size_t k = n < room ? n : room;
    memcpy(s->reply + s->reply_len, data, k);
    s->reply_len += k;
    s->reply[s->reply_len] = 0;
    return n;
}

static int may_submit(run *r, long started)
{
    const opts *o = r->o;
    if (!strcmp(o->mode, "burst"))
        return started < o->orders;
    if (mono_us() >= r->win_to_us)
        return 0;
    return started - atomic_load(&r->finished) < o->target;
}

static void slot_start(run *r, CURLM *multi, slot *s, long n)
{
    const opts *o = r->o;
    snprintf(s->id, sizeof s->id, "%s-%ld", o->prefix, n);
    snprintf(s->body, sizeof s->body,
             "{\"client_order_id\":\"%s\",\"sku\":\"%s\",\"account\":\"%s\"}", s->id,
             o->skus[n % o->nskus], o->account);
    s->reply_len = 0;
    s->reply[0] = 0;
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body);
    curl_multi_add_handle(multi, s->easy);
}

static void note_latency(run *r, CURL *easy)
{
    curl_off_t us = 0;
    curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &us);
    if (r->nlat == r->caplat) {
        size_t cap = r->caplat ? r->caplat * 2 : 65536;
        double *g = realloc(r->lat_ms, cap * sizeof *g);
        if (!g)
            return;
        r->lat_ms = g;
        r->caplat = cap;
    }
    r->lat_ms[r->nlat++] = (double)us / 1000.0;
}

/* One finished POST: counted accepted (202/201) or an error (the first kept). */
static void slot_done(run *r, slot *s, CURLcode rc)
{
    long status = 0;
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
    note_latency(r, s->easy);
    if (rc == CURLE_OK && (status == 202 || status == 201)) {
        atomic_fetch_add(&r->accepted, 1);
        return;
    }
    if (!r->errors++)
        snprintf(r->first_error, sizeof r->first_error, "%s: status %ld, %s: %.200s", s->id, status,
                 curl_easy_strerror(rc), s->reply);
}

static int submit_all(run *r)
{
    const opts *o = r->o;
    char auth[300];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->token);
    struct curl_slist *hdrs = curl_slist_append(NULL, auth);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    char url[512];
    snprintf(url, sizeof url, "%s/v1/orders", o->url);
    CURLM *multi = curl_multi_init();
    slot *slots = calloc((size_t)o->conns, sizeof *slots);
    slot **idle = calloc((size_t)o->conns, sizeof *idle);
    if (!multi || !slots || !idle || !hdrs)
        return -1;
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, o->conns);
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, o->conns);
    int nidle = 0;
    for (long i = 0; i < o->conns; i++) {
        slot *s = &slots[i];
        s->easy = curl_easy_init();
        curl_easy_setopt(s->easy, CURLOPT_URL, url);
        curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, slot_write);
        curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
        curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
        curl_easy_setopt(s->easy, CURLOPT_TIMEOUT, REQ_TIMEOUT_S);
        curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
        idle[nidle++] = s;
    }
    long started = 0;
    int running = 0;
    for (;;) {
        while (nidle && may_submit(r, started))
            slot_start(r, multi, idle[--nidle], started++), atomic_store(&r->submitted, started);
        if (nidle == o->conns && !may_submit(r, started)) {
            if (!strcmp(o->mode, "burst") || mono_us() >= r->win_to_us)
                break;
        }
        curl_multi_perform(multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            slot *s;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            CURLcode rc = m->data.result;
            curl_multi_remove_handle(multi, s->easy);
            slot_done(r, s, rc);
            idle[nidle++] = s;
        }
        if (nidle && may_submit(r, started))
            continue;
        /* all connections busy, or held back by the target: wait for an answer
         * (short, so the watcher's newer count is seen soon) */
        curl_multi_poll(multi, NULL, 0, 2, NULL);
    }
    for (long i = 0; i < o->conns; i++)
        curl_easy_cleanup(slots[i].easy);
    curl_multi_cleanup(multi);
    curl_slist_free_all(hdrs);
    free(slots);
    free(idle);
    return 0;
}

/* ---- after the run: the event feed ------------------------------------------------ */

typedef struct finals {
    long succeeded, failed, duplicates;
    int64_t *at; /* commit time of each final event, wall ms */
    size_t n, cap;
    unsigned char *seen; /* by order id */
    size_t seen_cap;
    int64_t last_seq;
} finals;

static int finals_note(finals *f, json_int_t order_id, int64_t at, int ok)
{
    if (order_id <= 0)
        return 0;
    if ((size_t)order_id >= f->seen_cap) {
        size_t cap = ((size_t)order_id + 1) * 2;
        unsigned char *g = realloc(f->seen, cap);
        if (!g)
            return -1;
        memset(g + f->seen_cap, 0, cap - f->seen_cap);
        f->seen = g;
        f->seen_cap = cap;
    }
    if (f->seen[order_id]) {
        f->duplicates++;
        return 0;
    }
    f->seen[order_id] = 1;
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 65536;
        int64_t *g = realloc(f->at, cap * sizeof *g);
        if (!g)
            return -1;
        f->at = g;
        f->cap = cap;
    }
    f->at[f->n++] = at;
    if (ok)
        f->succeeded++;
    else
        f->failed++;
    return 0;
}

/* Reads the feed from f->last_seq to its end. */
static int finals_read(getter *g, const char *base, finals *f)
{
    for (;;) {
        char url[600];
        snprintf(url, sizeof url, "%s/v1/events?after=%lld&limit=%d", base, (long long)f->last_seq,
                 EVENTS_PAGE);
        json_t *j = get_json(g, url);
        if (!j)
            return -1;
        json_t *evs = json_object_get(j, "events"), *e;
        size_t i, n = json_array_size(evs);
        json_array_foreach(evs, i, e)
        {
            const char *type = json_string_value(json_object_get(e, "type"));
            f->last_seq = json_integer_value(json_object_get(e, "seq"));
            int ok = type && !strcmp(type, "order.succeeded");
            if (ok || (type && !strcmp(type, "order.failed")))
                finals_note(f, json_integer_value(json_object_get(e, "order_id")),
                            parse_at(json_string_value(json_object_get(e, "at"))), ok);
        }
        json_decref(j);
        if (n < EVENTS_PAGE)
            return 0;
    }
}

/* x per latency, and a over b, both 0 where undefined (latency 0, nothing measured) */
static double per(double x, double secs)
{
    return secs > 0 ? x / secs : 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
    if (!n)
        return 0;
    size_t k = (size_t)(p * (double)(n - 1) + 0.5);
    return v[k];
}

/* ---- options ------------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr, "usage: loadgen --url URL --token T --ops-token O --skus a,b --prefix P\n"
                    "               --mode burst|steady [--orders N] [--target T] [--duration S]\n"
                    "               [--warmup W] [--conns C] [--latency-ms L] [--pid PID]\n"
                    "               [--cpu NAME=PID]... [--settle-s S] [--account A]\n");
    exit(2);
}

static void parse_skus(opts *o, char *list)
{
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t && o->nskus < MAX_SKUS;
         t = strtok_r(NULL, ",", &save))
        o->skus[o->nskus++] = t;
}

static void parse_opts(int argc, char **argv, opts *o)
{
    *o = (opts){.account = "13800000001",
                .conns = 256,
                .latency_ms = 200,
                .settle_s = 120,
                .orders = 10000,
                .target = 10000,
                .duration_s = 20,
                .warmup_s = 3};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (i + 1 >= argc)
            usage();
        char *v = argv[++i];
        if (!strcmp(k, "--url"))
            o->url = v;
        else if (!strcmp(k, "--token"))
            o->token = v;
        else if (!strcmp(k, "--ops-token"))
            o->ops_token = v;
        else if (!strcmp(k, "--skus"))
            parse_skus(o, v);
        else if (!strcmp(k, "--prefix"))
            o->prefix = v;
        else if (!strcmp(k, "--account"))
            o->account = v;
        else if (!strcmp(k, "--mode"))
            o->mode = v;
        else if (!strcmp(k, "--orders"))
            o->orders = atol(v);
        else if (!strcmp(k, "--target"))
            o->target = atol(v);
        else if (!strcmp(k, "--conns"))
            o->conns = atol(v);
        else if (!strcmp(k, "--latency-ms"))
            o->latency_ms = atol(v);
        else if (!strcmp(k, "--settle-s"))
            o->settle_s = atol(v);
        else if (!strcmp(k, "--duration"))
            o->duration_s = atof(v);
        else if (!strcmp(k, "--warmup"))
            o->warmup_s = atof(v);
        else if (!strcmp(k, "--pid"))
            o->pid = atoi(v);
        else if (!strcmp(k, "--cpu") && o->ncpu < MAX_CPU) {
            char *eq = strchr(v, '=');
            if (!eq)
                usage();
            *eq = 0;
            snprintf(o->cpu[o->ncpu].name, sizeof o->cpu[o->ncpu].name, "%s", v);
            o->cpu[o->ncpu++].pid = atoi(eq + 1);
        } else
            usage();
    }
    if (!o->url || !o->token || !o->ops_token || !o->nskus || !o->prefix || !o->mode ||
        (strcmp(o->mode, "burst") && strcmp(o->mode, "steady")) || o->conns < 1 ||
        o->conns > MAX_CONNS || o->latency_ms < 0 || o->orders < 1 || o->target < 1 ||
        o->duration_s <= o->warmup_s)
        usage();
}

/* ---- the run ------------------------------------------------------------------------- */

static json_t *cpu_report(const opts *o, const cpu_all *a, const cpu_all *b)
{
    double secs = (double)(b->at_us - a->at_us) / 1e6;
    json_t *j = json_object();
    for (int i = 0; i < o->ncpu; i++)
        json_object_set_new(j, o->cpu[i].name, cpu_delta(&a->snap[i], &b->snap[i], secs));
    json_object_set_new(j, "loadgen",
                        json_pack("{s:f,s:f}", "cpu_s", b->self_s - a->self_s, "cores",
                                  (b->self_s - a->self_s) / secs));
    json_object_set_new(j, "interval_s", json_real(secs));
    long long commits = b->commits - a->commits, cmds = b->commands - a->commands;
    json_object_set_new(j, "writer",
                        json_pack("{s:I,s:I,s:f,s:f}", "commits", (json_int_t)commits, "commands",
                                  (json_int_t)cmds, "commits_per_s", (double)commits / secs,
                                  "commands_per_commit",
                                  commits > 0 ? (double)cmds / (double)commits : 0.0));
    return j;
}

static json_t *series_json(const run *r)
{
    json_t *a = json_array();
    for (size_t i = 0; i < r->nseries; i++) {
        const sample *s = &r->series[i];
        json_array_append_new(a, json_pack("[I,i,i,i,i]", (json_int_t)s->t_ms, (int)s->in_flight,
                                           (int)s->queued, (int)s->outstanding, (int)s->rss_kb));
    }
    return a;
}

/* Waits until every accepted order has its final event (or settle_s passes). */
static int wait_finals(run *r, finals *f, getter *g)
{
    int64_t end = mono_us() + (int64_t)r->o->settle_s * 1000000;
    while (finals_read(g, r->o->url, f) == 0) {
        if ((long)f->n >= atomic_load(&r->accepted))
            return 0;
        if (mono_us() > end)
            return -1;
        sleep_ms(100);
    }
    return -1;
}

static long stats_orders(getter *g, const char *base)
{
    char url[600];
    snprintf(url, sizeof url, "%s/v1/stats", base);
    json_t *j = get_json(g, url);
    long n = j ? (long)json_integer_value(json_object_get(j, "orders")) : -1;
    json_decref(j);
    return n;
}

int main(int argc, char **argv)
{
    opts o;
    parse_opts(argc, argv, &o);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    run r = {.o = &o};
    getter g;
    if (getter_init(&g, o.ops_token))
        return 1;
    char url[600];
    snprintf(url, sizeof url, "%s/v1/suppliers", o.url);
    long inf0, q0, fin0;
    if (read_health(&g, url, &inf0, &q0, &fin0)) {
        fprintf(stderr, "loadgen: GET /v1/suppliers failed\n");
        return 1;
    }
    r.finished_base = fin0;
    long orders_before = stats_orders(&g, o.url);
    finals f = {0};
    if (finals_read(&g, o.url, &f)) { /* skip what is already in the feed */
        fprintf(stderr, "loadgen: GET /v1/events failed\n");
        return 1;
    }
    f.n = 0;
    f.succeeded = f.failed = 0;

    pthread_t watcher;
    pthread_create(&watcher, NULL, watch_main, &r);
    sleep_ms(50);
    cpu_all_take(&o, &r.c_start, &g);
    r.t0_wall_ms = wall_ms();
    int64_t t0 = mono_us();
    int burst = !strcmp(o.mode, "burst");
    r.win_from_us = burst ? t0 : t0 + (int64_t)(o.warmup_s * 1e6);
    r.win_to_us = burst ? INT64_MAX : t0 + (int64_t)(o.duration_s * 1e6);
    r.t0_us = t0;
    submit_all(&r);
    int64_t submitted_us = mono_us();
    /* all exchanges back, then every order final */
    int64_t end = mono_us() + (int64_t)o.settle_s * 1000000;
    while (atomic_load(&r.finished) < atomic_load(&r.accepted) && mono_us() < end)
        sleep_ms(5);
    int64_t exchanges_us = mono_us();
    int settled = wait_finals(&r, &f, &g) == 0;
    cpu_all_take(&o, &r.c_end, &g);
    atomic_store(&r.stop_watch, 1);
    pthread_join(watcher, NULL);
    if (burst || !r.took_to)
        r.c_to = r.c_end;
    if (burst || !r.took_from)
        r.c_from = r.c_start;
    long orders_after = stats_orders(&g, o.url);

    /* figures */
    long accepted = atomic_load(&r.accepted), submitted = atomic_load(&r.submitted);
    qsort(r.lat_ms, r.nlat, sizeof *r.lat_ms, cmp_double);
    int64_t last_at = 0;
    long in_window = 0;
    int64_t wfrom = r.t0_wall_ms + (int64_t)(o.warmup_s * 1000),
            wto = r.t0_wall_ms + (int64_t)(o.duration_s * 1000);
    for (size_t i = 0; i < f.n; i++) {
        if (f.at[i] > last_at)
            last_at = f.at[i];
        in_window += f.at[i] >= wfrom && f.at[i] < wto;
    }
    double L = (double)o.latency_ms / 1000.0; /* 0 in the ceiling run: ideals and ratios 0 */
    json_t *out = json_pack("{s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:b,s:i,s:i,s:i}",
                            "mode", o.mode, "latency_ms", (int)o.latency_ms, "connections",
                            (int)o.conns, "skus", o.nskus, "submitted", (int)submitted, "accepted",
                            (int)accepted, "errors", (int)r.errors, "succeeded", (int)f.succeeded,
                            "failed", (int)f.failed, "final_events_duplicated", (int)f.duplicates,
                            "orders_stored", (int)(orders_after - orders_before), "peak_in_flight",
                            (int)r.peak_in_flight, "peak_queued", (int)r.peak_queued, "settled",
                            settled, "peak_outstanding", (int)r.peak_outstanding, "peak_rss_kb",
                            (int)r.peak_rss_kb, "vm_hwm_kb", (int)r.hwm_kb);
    json_object_set_new(out, "peak_rss_anon_kb", json_integer(r.peak_anon_kb));
    json_object_set_new(out, "intake_ms",
                        json_pack("{s:f,s:f,s:f}", "p50", pct(r.lat_ms, r.nlat, 0.50), "p99",
                                  pct(r.lat_ms, r.nlat, 0.99), "max",
                                  r.nlat ? r.lat_ms[r.nlat - 1] : 0.0));
    json_object_set_new(out, "submit_s", json_real((double)(submitted_us - t0) / 1e6));
    json_object_set_new(out, "exchanges_done_s", json_real((double)(exchanges_us - t0) / 1e6));
    json_object_set_new(out, "intake_per_s",
                        json_real((double)accepted / ((double)(submitted_us - t0) / 1e6)));
    if (burst) {
        double secs = (double)(last_at - r.t0_wall_ms) / 1000.0;
        double rate = per((double)f.n, secs), ideal = per((double)r.peak_in_flight, L);
        json_object_set_new(out, "orders", json_integer(o.orders));
        json_object_set_new(out, "first_to_last_final_s", json_real(secs));
        json_object_set_new(out, "completion_per_s", json_real(rate));
        json_object_set_new(out, "ideal_per_s", json_real(ideal));
        json_object_set_new(out, "ratio", json_real(per(rate, ideal)));
        json_object_set_new(out, "ideal_at_peak_outstanding_per_s",
                            json_real(per((double)r.peak_outstanding, L)));
    } else {
        double win = o.duration_s - o.warmup_s;
        double rate = (double)in_window / win;
        double mean_inf = r.sum_dt > 0 ? r.sum_in_flight / r.sum_dt : 0;
        double mean_out = r.sum_dt > 0 ? r.sum_outstanding / r.sum_dt : 0;
        double mean_q = r.sum_dt > 0 ? r.sum_queued / r.sum_dt : 0;
        json_object_set_new(out, "target_outstanding", json_integer(o.target));
        json_object_set_new(out, "duration_s", json_real(o.duration_s));
        json_object_set_new(out, "warmup_s", json_real(o.warmup_s));
        json_object_set_new(out, "window_completions", json_integer(in_window));
        json_object_set_new(out, "completion_per_s", json_real(rate));
        json_object_set_new(out, "mean_in_flight", json_real(mean_inf));
        json_object_set_new(out, "mean_queued", json_real(mean_q));
        json_object_set_new(out, "mean_outstanding", json_real(mean_out));
        json_object_set_new(out, "ideal_target_per_s", json_real(per((double)o.target, L)));
        json_object_set_new(out, "ideal_sustained_per_s", json_real(per(mean_inf, L)));
        json_object_set_new(out, "ratio_target", json_real(per(rate, per((double)o.target, L))));
        json_object_set_new(out, "ratio_sustained", json_real(per(rate, per(mean_inf, L))));
        json_object_set_new(out, "ratio_outstanding", json_real(per(rate, per(mean_out, L))));
    }
    json_object_set_new(out, "cpu_window", cpu_report(&o, &r.c_from, &r.c_to));
    json_object_set_new(out, "cpu_run", cpu_report(&o, &r.c_start, &r.c_end));
    json_object_set_new(out, "watch_errors", json_integer(r.watch_errors));
    json_object_set_new(
        out, "series_cols",
        json_pack("[s,s,s,s,s]", "t_ms", "in_flight", "queued", "outstanding", "rss_kb"));
    json_object_set_new(out, "series", series_json(&r));
    if (r.errors)
        json_object_set_new(out, "first_error", json_string(r.first_error));
    json_dumpf(out, stdout, JSON_COMPACT);
    fputc('\n', stdout);
    json_decref(out);
    getter_free(&g);
    free(r.series);
    free(r.lat_ms);
    free(f.at);
    free(f.seen);
    curl_global_cleanup();
    int bad = r.errors || !settled || f.duplicates;
    if (bad)
        fprintf(stderr, "loadgen: %ld errors%s%s, %zu of %ld orders final\n", r.errors,
                r.errors ? " (first: " : "", r.errors ? r.first_error : "", f.n, accepted);
    return bad ? 1 : 0;
}
