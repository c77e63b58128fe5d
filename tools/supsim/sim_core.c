/* sim_core.c — the simulator's state: catalog, orders, generator, counts, truth. */
#include "supsim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const sim_product sim_catalog[SIM_NPRODUCTS] = {
    {SIM_GATEWAY, "10001", "iQiyi Gold 1 month", "iqiyi", 1, 3000, 2850, 1000000},
    {SIM_GATEWAY, "10002", "Tencent Video VIP 1 month", "tencent", 1, 3000, 2800, 0},
    {SIM_GATEWAY, "20001", "Mobile top-up 50 CNY", "telco", 0, 5000, 4900, -1},
    {SIM_REWARDS, "U10001", "iQiyi Gold 1 month", "iqiyi", 1, 3000, 2850, 1000000},
    {SIM_REWARDS, "U10002", "Tencent Video VIP 1 month", "tencent", 1, 3000, 2800, 0},
    {SIM_REWARDS, "U20001", "Mobile top-up 50 CNY", "telco", 0, 5000, 4900, -1},
};

#define SIM_BALANCE0     100000000LL /* 1,000,000.00 yuan */
#define SIM_FAIL_ACCOUNT "13900000002"
/* A recharge to it stays processing for ever, until POST /_sim/complete
 * (issue 11: the supplier that never answers an order's fate). */
#define SIM_STUCK_ACCOUNT "13900000003"

/* ---- a small string-keyed hash map ------------------------------------------ */

typedef struct sim_ent {
    char *key;
    void *val;
    struct sim_ent *next;
} sim_ent;

struct sim_map {
    sim_ent **b;
    size_t nb, n;
};

typedef struct sim_refrec {
    sim_proto proto;
    char ref[128];
    long creates;
    sim_order *order;
} sim_refrec;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static sim_map *map_new(void)
{
    sim_map *m = calloc(1, sizeof *m);
    if (m && !(m->b = calloc(m->nb = 1024, sizeof *m->b))) {
        free(m);
        return NULL;
    }
    return m;
}

static void *map_get(const sim_map *m, const char *key)
{
    for (sim_ent *e = m->b[hash_str(key) % m->nb]; e; e = e->next)
        if (strcmp(e->key, key) == 0)
            return e->val;
    return NULL;
}

static void map_grow(sim_map *m)
{
    size_t nb = m->nb * 2;
    sim_ent **b = calloc(nb, sizeof *b);
    if (!b)
        return; /* a longer chain is slower, not wrong */
    for (size_t i = 0; i < m->nb; i++)
        for (sim_ent *e = m->b[i], *next; e; e = next) {
            next = e->next;
            size_t h = hash_str(e->key) % nb;
            e->next = b[h];
            b[h] = e;
        }
    free(m->b);
    m->b = b;
    m->nb = nb;
}

/* Inserts a new key (the caller checked it is absent). 0 or -1. */
static int map_put(sim_map *m, const char *key, void *val)
{
    if (m->n > m->nb)
        map_grow(m);
    sim_ent *e = malloc(sizeof *e);
    if (!e || !(e->key = strdup(key))) {
        free(e);
        return -1;
    }
    size_t h = hash_str(key) % m->nb;
    e->val = val;
    e->next = m->b[h];
    m->b[h] = e;
    m->n++;
    return 0;
}

/* Removes everything, freeing values with free_val (may be NULL). */
static void map_clear(sim_map *m, void (*free_val)(void *))
{
    for (size_t i = 0; i < m->nb; i++) {
        for (sim_ent *e = m->b[i], *next; e; e = next) {
            next = e->next;
            if (free_val)
                free_val(e->val);
            free(e->key);
            free(e);
        }
        m->b[i] = NULL;
    }
    m->n = 0;
}

static void map_free(sim_map *m, void (*free_val)(void *))
{
    if (!m)
        return;
    map_clear(m, free_val);
    free(m->b);
    free(m);
}

/* ---- time, money, randomness ------------------------------------------------ */

int64_t sim_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sim_beijing_time(int64_t t, char *out, size_t n)
{
    time_t bj = (time_t)(t + 8 * 3600);
    struct tm tm;
    gmtime_r(&bj, &tm);
    strftime(out, n, "%Y-%m-%d %H:%M:%S", &tm);
}

int sim_parse_beijing(const char *s, int64_t *t)
{
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
    if (!end || *end)
        return -1;
    *t = (int64_t)timegm(&tm) - 8 * 3600;
    return 0;
}

void sim_iso_time(int64_t t, char *out, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void sim_yuan(long long fen, char *out, size_t n)
{
    snprintf(out, n, "%lld.%02lld", fen / 100, fen % 100);
}

/* splitmix64: one seeded stream for ids, codes, IVs and jitter. */
uint64_t sim_rand_locked(sim *s)
{
    uint64_t z = (s->rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

int sim_product_find(sim_proto p, const char *id)
{
    for (int i = 0; i < SIM_NPRODUCTS; i++)
        if (sim_catalog[i].proto == p && strcmp(sim_catalog[i].id, id) == 0)
            return i;
    return -1;
}

/* ---- lifecycle ----------------------------------------------------------- */

static void reset_fields_locked(sim *s)
{
    s->rng = s->cfg.seed;
    for (int i = 0; i < SIM_NPRODUCTS; i++) {
        s->stock[i] = sim_catalog[i].stock0;
        s->price_fen[i] = sim_catalog[i].price_fen;
        s->listed[i] = s->on_sale[i] = 1;
    }
    s->extra_items = 0;
    s->balance_fen = s->cfg.balance_fen > 0 ? s->cfg.balance_fen : SIM_BALANCE0;
    s->seq[0] = s->seq[1] = 0;
    memset(&s->counts, 0, sizeof s->counts);
}

int sim_init(sim *s, const sim_config *cfg)
{
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    pthread_mutex_init(&s->mu, NULL);
    s->refs = map_new();
    s->ids = map_new();
    if (!s->refs || !s->ids) {
        sim_free(s);
        return -1;
    }
    s->next_fault_id = 1;
    reset_fields_locked(s);
    return 0;
}

static void order_free(sim_order *o)
{
    free(o->notify_url);
    free(o->codes);
    free(o->last_body);
    free(o->last_header);
    free(o);
}

/* A late_record request: a copy of what arrived, handled at due_ms. */
typedef struct sim_deferred {
    sim_proto proto;
    int64_t due_ms; /* monotonic */
    char *method, *path, *body, *authorization, *arg_ref;
    size_t len;
    struct sim_deferred *next;
} sim_deferred;

static void deferred_free(sim_deferred *d)
{
    while (d) {
        sim_deferred *n = d->next;
        free(d->method);
        free(d->path);
        free(d->body);
        free(d->authorization);
        free(d->arg_ref);
        free(d);
        d = n;
    }
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

int sim_defer(sim *s, sim_proto p, const sim_request *rq, long delay_ms)
{
    sim_deferred *d = calloc(1, sizeof *d);
    if (!d)
        return -1;
    d->proto = p;
    d->due_ms = sim_mono_ms() + delay_ms;
    d->method = dup_or_null(rq->method);
    d->path = dup_or_null(rq->path);
    d->authorization = dup_or_null(rq->authorization);
    d->arg_ref = dup_or_null(rq->arg_ref);
    d->body = malloc(rq->len + 1);
    if (!d->method || !d->path || !d->body || (rq->authorization && !d->authorization) ||
        (rq->arg_ref && !d->arg_ref)) {
        deferred_free(d);
        return -1;
    }
    memcpy(d->body, rq->body ? rq->body : "", rq->len);
    d->body[rq->len] = 0;
    d->len = rq->len;
    pthread_mutex_lock(&s->mu);
    d->next = s->deferred;
    s->deferred = d;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void sim_deferred_run(sim *s)
{
    int64_t now = sim_mono_ms();
    sim_deferred *due = NULL;
    pthread_mutex_lock(&s->mu);
    for (sim_deferred **pp = &s->deferred; *pp;) {
        sim_deferred *d = *pp;
        if (d->due_ms <= now) {
            *pp = d->next;
            d->next = due;
            due = d;
        } else {
            pp = &d->next;
        }
    }
    pthread_mutex_unlock(&s->mu);
    for (sim_deferred *d = due; d; d = d->next) {
        sim_request rq = {.method = d->method,
                          .path = d->path,
                          .body = d->body,
                          .len = d->len,
                          .authorization = d->authorization,
                          .arg_ref = d->arg_ref};
        sim_reply r = {0};
        if (d->proto == SIM_GATEWAY)
            sim_gw_handle(s, &rq, SIM_F_NONE, &r);
        else
            sim_rw_handle(s, &rq, SIM_F_NONE, &r);
        fprintf(stderr, "supsim: late_record acted on %s %s: %u\n", d->method, d->path, r.status);
        sim_reply_free(&r);
    }
    deferred_free(due);
}

void sim_order_shape(sim *s, sim_proto p, const char *ref, const sim_fault *f)
{
    pthread_mutex_lock(&s->mu);
    s->shape = *f;
    s->shape_proto = (int)p;
    snprintf(s->shape_ref, sizeof s->shape_ref, "%s", ref ? ref : "");
    pthread_mutex_unlock(&s->mu);
}

/* The shape set for this order's ref, taken once. */
static void shape_take_locked(sim *s, sim_order *o)
{
    if (!s->shape_ref[0] || s->shape_proto != (int)o->proto || strcmp(s->shape_ref, o->ref))
        return;
    if (s->shape.kind == SIM_F_OTHER_CHARGE)
        o->amount_fen = s->shape.value_fen;
    else if (s->shape.kind == SIM_F_OTHER_DELIVERED)
        o->delivered_fen = s->shape.value_fen;
    s->shape_ref[0] = 0;
}

static void free_orders_locked(sim *s)
{
    for (size_t i = 0; i < s->norders; i++)
        order_free(s->orders[i]);
    s->norders = 0;
    s->npending = 0;
    map_clear(s->refs, free);
    map_clear(s->ids, NULL);
}

void sim_free(sim *s)
{
    if (s->refs && s->ids)
        free_orders_locked(s);
    map_free(s->refs, free);
    map_free(s->ids, NULL);
    free(s->orders);
    free(s->pending);
    free(s->faults);
    deferred_free(s->deferred);
    pthread_mutex_destroy(&s->mu);
}

void sim_reset(sim *s)
{
    pthread_mutex_lock(&s->mu);
    free_orders_locked(s);
    reset_fields_locked(s);
    deferred_free(s->deferred);
    s->deferred = NULL;
    sim_notify_drop(s);
    pthread_mutex_unlock(&s->mu);
}

/* ---- requests and orders -------------------------------------------------- */

static void ref_key(sim_proto p, const char *ref, char *out, size_t n)
{
    snprintf(out, n, "%c:%s", p == SIM_GATEWAY ? 'g' : 'r', ref);
}

static sim_refrec *refrec_get_locked(sim *s, sim_proto p, const char *ref, int create)
{
    char key[160];
    ref_key(p, ref, key, sizeof key);
    sim_refrec *r = map_get(s->refs, key);
    if (r || !create)
        return r;
    if (!(r = calloc(1, sizeof *r)))
        return NULL;
    r->proto = p;
    snprintf(r->ref, sizeof r->ref, "%s", ref);
    if (map_put(s->refs, key, r)) {
        free(r);
        return NULL;
    }
    return r;
}

static void note_create_locked(sim *s, sim_proto p, const char *ref)
{
    sim_refrec *r = ref[0] ? refrec_get_locked(s, p, ref, 1) : NULL;
    if (r)
        r->creates++;
}

static void note_request_locked(sim *s, sim_op op)
{
    if (op == SIM_OP_ORDER)
        s->counts.order_requests++;
    else if (op == SIM_OP_QUERY)
        s->counts.query_requests++;
    else if (op == SIM_OP_CATALOG)
        s->counts.catalog_requests++;
    else if (op == SIM_OP_REDEEM)
        s->counts.redeem_requests++;
}

sim_code *sim_code_find_locked(sim *s, sim_proto p, const char *c, sim_order **order)
{
    for (size_t i = 0; i < s->norders; i++) {
        sim_order *o = s->orders[i];
        for (int k = 0; o->proto == p && o->codes && k < o->quantity; k++)
            if (strcmp(o->codes[k].code, c) == 0) {
                if (order)
                    *order = o;
                return &o->codes[k];
            }
    }
    return NULL;
}

sim_order *sim_order_find_locked(sim *s, sim_proto p, const char *ref)
{
    sim_refrec *r = refrec_get_locked(s, p, ref, 0);
    return r ? r->order : NULL;
}

sim_order *sim_order_by_id_locked(sim *s, const char *order_id)
{
    return map_get(s->ids, order_id);
}

static void make_codes_locked(sim *s, sim_order *o)
{
    for (int i = 0; i < o->quantity; i++) {
        uint64_t a = sim_rand_locked(s), b = sim_rand_locked(s);
        snprintf(o->codes[i].code, sizeof o->codes[i].code, "SIM-%016llx", (unsigned long long)a);
        snprintf(o->codes[i].card_number, sizeof o->codes[i].card_number, "62%014llu",
                 (unsigned long long)(b % 100000000000000ULL));
    }
}

static void complete_locked(sim *s, sim_order *o)
{
    if (o->echo || strcmp(o->account, SIM_FAIL_ACCOUNT) == 0) {
        o->state = SIM_FAILED;
        s->balance_fen += o->amount_fen; /* a failed recharge is refunded */
    } else {
        o->state = SIM_SUCCESS;
        s->counts.recharges_performed++;
    }
    sim_notify_queue_locked(s, o);
}

/* Makes room for one more pointer in *v (size *n, capacity *cap). 0 or -1. */
static int vec_reserve(sim_order ***v, size_t n, size_t *cap)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 256;
    sim_order **g = realloc(*v, c * sizeof *g);
    if (!g)
        return -1;
    *v = g;
    *cap = c;
    return 0;
}

static int order_store_locked(sim *s, sim_order *o)
{
    if (vec_reserve(&s->orders, s->norders, &s->cap_orders) ||
        vec_reserve(&s->pending, s->npending, &s->cap_pending))
        return -1;
    sim_refrec *r = refrec_get_locked(s, o->proto, o->ref, 1);
    if (!r || map_put(s->ids, o->order_id, o))
        return -1;
    r->order = o;
    s->orders[s->norders++] = o;
    return 0;
}

static void order_id_locked(sim *s, sim_proto p, int64_t now, char *out, size_t n)
{
    long seq = ++s->seq[p];
    if (p == SIM_REWARDS) {
        snprintf(out, n, "R%08ld", seq);
        return;
    }
    char bj[24];
    sim_beijing_time(now, bj, sizeof bj);
    snprintf(out, n, "G%.4s%.2s%.2s%08ld", bj, bj + 5, bj + 8, seq);
}

sim_order *sim_order_create_locked(sim *s, sim_proto p, const char *ref, int product, int qty,
                                   const char *account, const char *notify_url, int echo)
{
    const sim_product *pr = &sim_catalog[product];
    sim_order *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->proto = p;
    snprintf(o->ref, sizeof o->ref, "%s", ref);
    o->product = product;
    o->quantity = qty;
    snprintf(o->account, sizeof o->account, "%s", account ? account : "");
    o->echo = echo && o->account[0]; /* a recharge refused at once, echoing */
    o->created_unix = (int64_t)time(NULL);
    o->created_ms = sim_mono_ms();
    o->complete_at_ms = o->created_ms + s->cfg.complete_ms;
    if (account && !strcmp(account, SIM_STUCK_ACCOUNT))
        o->complete_at_ms = INT64_MAX; /* only sim_order_complete_locked ends it */
    o->amount_fen = (long long)s->price_fen[product] * qty;
    shape_take_locked(s, o);
    order_id_locked(s, p, o->created_unix, o->order_id, sizeof o->order_id);
    if ((notify_url && !(o->notify_url = strdup(notify_url))) ||
        (pr->is_card && !(o->codes = calloc((size_t)qty, sizeof *o->codes))) ||
        order_store_locked(s, o)) {
        order_free(o);
        return NULL;
    }
    if (s->stock[product] > 0)
        s->stock[product] -= qty;
    s->balance_fen -= o->amount_fen;
    o->state = SIM_PROCESSING;
    if (pr->is_card) {
        make_codes_locked(s, o);
        o->state = SIM_SUCCESS;
        s->counts.card_orders++;
        s->counts.codes_issued += qty;
        sim_notify_queue_locked(s, o);
    } else if ((s->cfg.complete_ms <= 0 && o->complete_at_ms != INT64_MAX) || o->echo) {
        complete_locked(s, o);
    } else {
        s->pending[s->npending++] = o; /* room reserved by order_store_locked */
    }
    return o;
}

void sim_order_settle_locked(sim *s, sim_order *o)
{
    if (o->state == SIM_PROCESSING && o->complete_at_ms <= sim_mono_ms())
        complete_locked(s, o);
}

int sim_order_complete_locked(sim *s, sim_order *o, int success)
{
    if (o->state != SIM_PROCESSING)
        return -1;
    if (success) {
        o->state = SIM_SUCCESS;
        s->counts.recharges_performed++;
    } else {
        o->state = SIM_FAILED;
        s->balance_fen += o->amount_fen; /* a failed recharge is refunded */
    }
    sim_notify_queue_locked(s, o);
    return 0;
}

void sim_tick_locked(sim *s)
{
    size_t keep = 0;
    for (size_t i = 0; i < s->npending; i++) {
        sim_order *o = s->pending[i];
        sim_order_settle_locked(s, o);
        if (o->state == SIM_PROCESSING)
            s->pending[keep++] = o;
    }
    s->npending = keep;
}

/* ---- faults ------------------------------------------------------------------ */

static const char *const fault_names[] = {
    [SIM_F_NONE] = "none",
    [SIM_F_LATENCY] = "latency",
    [SIM_F_HTTP_500] = "http_500",
    [SIM_F_HTTP_502_AFTER] = "http_502_after",
    [SIM_F_RESET_BEFORE] = "reset_before",
    [SIM_F_RESET_AFTER] = "reset_after",
    [SIM_F_TIMEOUT_AFTER] = "timeout_after",
    [SIM_F_TRUNCATED] = "truncated",
    [SIM_F_MALFORMED] = "malformed",
    [SIM_F_BAD_SIGNATURE] = "bad_signature",
    [SIM_F_NOT_FOUND] = "not_found",
    [SIM_F_DUP_CALLBACK] = "dup_callback",
    [SIM_F_BUSY] = "busy",
    [SIM_F_ECHO_ACCOUNT] = "echo_account",
    [SIM_F_UNAUTHORIZED] = "unauthorized",
    [SIM_F_LATE_RECORD] = "late_record",
    [SIM_F_OTHER_CHARGE] = "other_charge",
    [SIM_F_OTHER_DELIVERED] = "other_delivered",
};
static const char *const op_names[] = {"order", "query", "catalog", "redeem"};

int sim_fault_log_due(const sim_fault *f)
{
    return f->hits <= SIM_FAULT_LOG_ALL || f->hits % 1000 == 0;
}

const char *sim_fault_name(sim_fault_kind k)
{
    return fault_names[k];
}

static int lookup_name(const char *v, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (names[i] && strcmp(v, names[i]) == 0)
            return i;
    return -1;
}

/* Reads the selector and the numbers of a fault description. 0 or -1 with msg. */
static int fault_parse(json_t *d, sim_fault *f, char *msg, size_t ml)
{
    const char *proto = json_string_value(json_object_get(d, "protocol"));
    const char *op = json_string_value(json_object_get(d, "op"));
    const char *kind = json_string_value(json_object_get(d, "fault"));
    int k = kind ? lookup_name(kind, fault_names, SIM_F_LAST + 1) : -1;
    if (k <= 0)
        return snprintf(msg, ml, "field fault: missing or unknown"), -1;
    f->kind = (sim_fault_kind)k;
    f->proto = !proto || !strcmp(proto, "*") ? -1
               : !strcmp(proto, "gateway")   ? SIM_GATEWAY
               : !strcmp(proto, "rewards")   ? SIM_REWARDS
                                             : -2;
    f->op = !op || !strcmp(op, "*") ? -1 : lookup_name(op, op_names, 4);
    if (f->proto == -2 || (op && strcmp(op, "*") && f->op < 0))
        return snprintf(msg, ml, "field %s: unknown value", f->proto == -2 ? "protocol" : "op"), -1;
    json_t *c = json_object_get(d, "count");
    f->count = json_is_integer(c) ? (long)json_integer_value(c) : k == SIM_F_DUP_CALLBACK ? 2 : 1;
    f->latency_ms = (long)json_integer_value(json_object_get(d, "latency_ms"));
    f->jitter_ms = (long)json_integer_value(json_object_get(d, "jitter_ms"));
    f->duration_ms = (long)json_integer_value(json_object_get(d, "duration_ms"));
    f->value_fen = (long long)json_integer_value(json_object_get(d, "value_fen"));
    if ((k == SIM_F_OTHER_CHARGE && f->value_fen < 0) ||
        (k == SIM_F_OTHER_DELIVERED && f->value_fen <= 0))
        return snprintf(msg, ml, "value_fen: out of range"), -1;
    if (f->count == 0 || f->count < -1 || f->latency_ms < 0 || f->jitter_ms < 0 ||
        f->duration_ms < 0)
        return snprintf(msg, ml, "count, latency_ms, jitter_ms, duration_ms: out of range"), -1;
    /* not_found's duration is the age of the orders it hides, not its own life */
    if (f->duration_ms > 0 && k != SIM_F_NOT_FOUND)
        f->expires_ms = sim_mono_ms() + f->duration_ms;
    return 0;
}

int sim_fault_add(sim *s, json_t *desc, int *id, char *msg, size_t msglen)
{
    sim_fault f = {0};
    if (!json_is_object(desc)) {
        snprintf(msg, msglen, "body: a JSON object expected");
        return -1;
    }
    if (fault_parse(desc, &f, msg, msglen))
        return -1;
    pthread_mutex_lock(&s->mu);
    if (s->nfaults == s->cap_faults) {
        size_t cap = s->cap_faults ? s->cap_faults * 2 : 16;
        sim_fault *g = realloc(s->faults, cap * sizeof *g);
        if (!g) {
            pthread_mutex_unlock(&s->mu);
            snprintf(msg, msglen, "out of memory");
            return -1;
        }
        s->faults = g;
        s->cap_faults = cap;
    }
    f.id = *id = s->next_fault_id++;
    s->faults[s->nfaults++] = f;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int sim_fault_clear(sim *s)
{
    pthread_mutex_lock(&s->mu);
    int n = (int)s->nfaults;
    s->nfaults = 0;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void fault_remove_locked(sim *s, size_t i)
{
    memmove(&s->faults[i], &s->faults[i + 1], (s->nfaults - i - 1) * sizeof *s->faults);
    s->nfaults--;
}

/* Drops expired faults. */
static void faults_expire_locked(sim *s)
{
    int64_t now = sim_mono_ms();
    for (size_t i = 0; i < s->nfaults;)
        if (s->faults[i].expires_ms && s->faults[i].expires_ms <= now)
            fault_remove_locked(s, i);
        else
            i++;
}

/* Uses one hit of fault i (removing it when spent) and returns a copy. */
static sim_fault fault_hit_locked(sim *s, size_t i)
{
    s->faults[i].hits++;
    sim_fault f = s->faults[i];
    s->counts.faults_hit++;
    if (s->faults[i].count > 0 && --s->faults[i].count == 0)
        fault_remove_locked(s, i);
    return f;
}

/* The fault that hits this request now (consumed), or kind NONE. */
static sim_fault fault_take_locked(sim *s, sim_proto p, sim_op op)
{
    sim_fault none = {0};
    faults_expire_locked(s);
    for (size_t i = 0; i < s->nfaults; i++) {
        const sim_fault *f = &s->faults[i];
        if ((f->proto >= 0 && f->proto != (int)p) || (f->op >= 0 && f->op != (int)op) ||
            f->kind == SIM_F_NOT_FOUND || f->kind == SIM_F_DUP_CALLBACK ||
            (f->kind == SIM_F_BAD_SIGNATURE && p != SIM_GATEWAY) ||
            (f->kind == SIM_F_ECHO_ACCOUNT && p != SIM_REWARDS))
            continue;
        sim_fault hit = fault_hit_locked(s, i);
        if (hit.kind == SIM_F_LATENCY) {
            long j = hit.jitter_ms;
            long d = hit.latency_ms - j + (long)(sim_rand_locked(s) % (uint64_t)(2 * j + 1));
            hit.latency_ms = d < 0 ? 0 : d;
        }
        return hit;
    }
    return none;
}

sim_fault sim_request_begin(sim *s, sim_proto p, const sim_class *cl)
{
    /* one hold of the lock, not three: every HTTP thread takes it per request */
    pthread_mutex_lock(&s->mu);
    note_request_locked(s, cl->op);
    if (cl->is_create)
        note_create_locked(s, p, cl->ref);
    sim_fault f = fault_take_locked(s, p, cl->op);
    pthread_mutex_unlock(&s->mu);
    return f;
}

int sim_fault_hides_locked(sim *s, const sim_order *o)
{
    faults_expire_locked(s);
    int64_t age = sim_mono_ms() - o->created_ms;
    for (size_t i = 0; i < s->nfaults; i++) {
        const sim_fault *f = &s->faults[i];
        if (f->kind != SIM_F_NOT_FOUND || (f->proto >= 0 && f->proto != (int)o->proto) ||
            (f->op >= 0 && f->op != SIM_OP_QUERY) || age >= f->duration_ms)
            continue;
        fault_hit_locked(s, i);
        return 1;
    }
    return 0;
}

int sim_fault_copies_locked(sim *s, sim_proto p)
{
    faults_expire_locked(s);
    for (size_t i = 0; i < s->nfaults; i++) {
        const sim_fault *f = &s->faults[i];
        if (f->kind == SIM_F_DUP_CALLBACK && (f->proto < 0 || f->proto == (int)p)) {
            s->counts.faults_hit++;
            return f->count < 2 ? 2 : (int)f->count;
        }
    }
    return 1;
}

json_t *sim_faults_json(sim *s)
{
    json_t *a = json_array();
    pthread_mutex_lock(&s->mu);
    faults_expire_locked(s);
    for (size_t i = 0; i < s->nfaults; i++) {
        const sim_fault *f = &s->faults[i];
        json_array_append_new(
            a, json_pack("{s:i,s:s,s:s,s:s,s:I,s:I,s:I,s:I}", "id", f->id, "protocol",
                         f->proto < 0              ? "*"
                         : f->proto == SIM_GATEWAY ? "gateway"
                                                   : "rewards",
                         "op", f->op < 0 ? "*" : op_names[f->op], "fault", fault_names[f->kind],
                         "count", (json_int_t)f->count, "latency_ms", (json_int_t)f->latency_ms,
                         "jitter_ms", (json_int_t)f->jitter_ms, "duration_ms",
                         (json_int_t)f->duration_ms));
    }
    pthread_mutex_unlock(&s->mu);
    return json_pack("{s:o}", "faults", a);
}

/* ---- truth ------------------------------------------------------------------ */

const char *sim_state_name(sim_state st)
{
    return st == SIM_SUCCESS ? "success" : st == SIM_FAILED ? "failed" : "processing";
}

static json_t *order_truth_locked(sim *s, const sim_order *o)
{
    const sim_product *pr = &sim_catalog[o->product];
    sim_refrec *r = refrec_get_locked(s, o->proto, o->ref, 0);
    json_t *codes = json_array();
    for (int i = 0; o->codes && i < o->quantity; i++)
        json_array_append_new(codes, json_string(o->codes[i].code));
    /* charged_fen: what the supplier kept for the order (a failed one is
     * refunded, one still processing is held: counted once it succeeds) — what
     * the ledger's supplier cost must add up to (tests/e2e/test_ledger.c) */
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:I,s:o,s:i,s:I}", "protocol",
                     o->proto == SIM_GATEWAY ? "gateway" : "rewards", "ref", o->ref,
                     "supplier_order_id", o->order_id, "kind", pr->is_card ? "card" : "recharge",
                     "product", pr->id, "quantity", o->quantity, "state", sim_state_name(o->state),
                     "creates", (json_int_t)(r ? r->creates : 0), "codes", codes, "callbacks",
                     o->callbacks, "charged_fen",
                     (json_int_t)(o->state == SIM_SUCCESS ? o->amount_fen : 0));
}

/* Refs that were asked for but hold no order, and how many refs were created twice. */
static json_t *refs_truth_locked(sim *s, long long *doubles)
{
    json_t *a = json_array();
    *doubles = 0;
    for (size_t i = 0; i < s->refs->nb; i++)
        for (sim_ent *e = s->refs->b[i]; e; e = e->next) {
            const sim_refrec *r = e->val;
            if (r->creates > 1)
                (*doubles)++;
            if (!r->order && r->creates > 0)
                json_array_append_new(a,
                                      json_pack("{s:s,s:s,s:I}", "protocol",
                                                r->proto == SIM_GATEWAY ? "gateway" : "rewards",
                                                "ref", r->ref, "creates", (json_int_t)r->creates));
        }
    return a;
}

json_t *sim_truth(sim *s)
{
    pthread_mutex_lock(&s->mu);
    sim_tick_locked(s);
    json_t *orders = json_array();
    for (size_t i = 0; i < s->norders; i++)
        json_array_append_new(orders, order_truth_locked(s, s->orders[i]));
    long long doubles = 0;
    json_t *rejected = refs_truth_locked(s, &doubles);
    const sim_counts *c = &s->counts;
    json_t *counts = json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "recharges_performed",
        (json_int_t)c->recharges_performed, "card_orders", (json_int_t)c->card_orders,
        "codes_issued", (json_int_t)c->codes_issued, "order_requests",
        (json_int_t)c->order_requests, "query_requests", (json_int_t)c->query_requests,
        "catalog_requests", (json_int_t)c->catalog_requests, "callbacks_sent",
        (json_int_t)c->callbacks_sent, "double_creates", (json_int_t)doubles, "faults_hit",
        (json_int_t)c->faults_hit, "redeem_requests", (json_int_t)c->redeem_requests);
    pthread_mutex_unlock(&s->mu);
    return json_pack("{s:o,s:o,s:o}", "orders", orders, "refs_without_order", rejected, "counts",
                     counts);
}

/* ---- replies ------------------------------------------------------------------ */

void sim_reply_text(sim_reply *r, unsigned status, const char *ctype, const char *text)
{
    free(r->body);
    r->status = status;
    r->ctype = ctype;
    r->body = strdup(text);
    r->len = r->body ? strlen(r->body) : 0;
}

void sim_reply_json(sim_reply *r, unsigned status, json_t *j)
{
    char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    sim_reply_text(r, txt ? status : 500, "application/json",
                   txt ? txt : "{\"error\":\"internal\"}");
    free(txt);
}

void sim_reply_free(sim_reply *r)
{
    free(r->body);
    free(r->extra_header);
    memset(r, 0, sizeof *r);
}
