/*
 * test_example.c — the example plugin tested alone, the way every plugin is:
 * its entry function called directly (example.c is compiled into this binary),
 * against a recording mock of the host table. No daemon, no dlopen, no network.
 *
 * Copy the MOCK HOST section into a new plugin's test: it records log lines,
 * counts live allocations (so a leak fails the test), can fail the n-th
 * allocation, and serves config the way the core does (schema defaults applied).
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <perkhub/plugin.h>

/* ======================= MOCK HOST (copy me) ============================== */

/* The config the plugin sees is opaque to it; each host defines its own. Ours
 * is a NULL-terminated list of key, value pairs plus the plugin's schema, from
 * which defaults are applied exactly as the core does. */
struct perkhub_config {
    const char *const *kv; /* "key", "value", ..., NULL */
    const struct perkhub_config_key *schema;
};

#define MOCK_MAX_LINES 32

struct mock_host {
    struct perkhub_host host;        /* first member: host functions get the mock back */
    char lines[MOCK_MAX_LINES][256]; /* "<level> <event> <tail>" */
    size_t nlines;
    long live_blocks;   /* mem_alloc minus mem_free: 0 after shutdown */
    long allocs;        /* successful allocations so far */
    long fail_alloc_at; /* the allocation number that returns NULL; -1: none */
};

static struct mock_host *mock_of(const struct perkhub_host *h)
{
    return (struct mock_host *)(void *)(uintptr_t)h;
}

static void mock_log_msg(const struct perkhub_host *h, int level, const char *event,
                         const char *fmt, ...)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    struct mock_host *m = mock_of(h);
    cr_assert(level >= 0 && level <= 3, "log level %d out of range", level);
    cr_assert(event && !strchr(event, ' '), "log event must be a word");
    cr_assert(m->nlines < MOCK_MAX_LINES, "too many log lines");
    char tail[200] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(tail, sizeof tail, fmt, ap);
        va_end(ap);
    }
    snprintf(m->lines[m->nlines++], sizeof m->lines[0], "%s %s%s%s", names[level], event,
             tail[0] ? " " : "", tail);
}

/* Blocks carry their size in a header so mem_realloc can copy. */
typedef union mock_block {
    size_t size;
    max_align_t align;
} mock_block;

static void *mock_mem_alloc(const struct perkhub_host *h, size_t size)
{
    struct mock_host *m = mock_of(h);
    cr_assert(size > 0, "mem_alloc(0)");
    if (m->allocs == m->fail_alloc_at) {
        m->fail_alloc_at = -1; /* fail once */
        return NULL;
    }
    mock_block *b = calloc(1, sizeof *b + size);
    cr_assert(b);
    b->size = size;
    m->allocs++;
    m->live_blocks++;
    return b + 1;
}

static void mock_mem_free(const struct perkhub_host *h, void *p)
{
    if (!p)
        return;
    mock_of(h)->live_blocks--;
    free((mock_block *)p - 1);
}

static void *mock_mem_realloc(const struct perkhub_host *h, void *p, size_t size)
{
    if (!p)
        return mock_mem_alloc(h, size);
    size_t old = ((mock_block *)p - 1)->size;
    void *n = mock_mem_alloc(h, size);
    if (n) {
        memcpy(n, p, old < size ? old : size);
        mock_mem_free(h, p);
    }
    return n;
}

static char *mock_mem_strdup(const struct perkhub_host *h, const char *s)
{
    char *d = s ? mock_mem_alloc(h, strlen(s) + 1) : NULL;
    if (d)
        strcpy(d, s);
    return d;
}

static int64_t mock_now_ms(const struct perkhub_host *h)
{
    (void)h;
    return INT64_C(1795000000000); /* a fixed clock: tests are reproducible */
}

static const char *mock_config_string(const struct perkhub_host *h, const struct perkhub_config *c,
                                      const char *key)
{
    (void)h;
    for (size_t i = 0; c->kv && c->kv[i]; i += 2)
        if (strcmp(c->kv[i], key) == 0)
            return c->kv[i + 1];
    for (size_t i = 0; c->schema && c->schema[i].key; i++)
        if (strcmp(c->schema[i].key, key) == 0)
            return c->schema[i].default_value;
    return NULL;
}

static int mock_config_int(const struct perkhub_host *h, const struct perkhub_config *c,
                           const char *key, int64_t *out)
{
    const char *v = mock_config_string(h, c, key);
    if (!v)
        return PERKHUB_ERR_NOT_FOUND;
    *out = strtoll(v, NULL, 10);
    return PERKHUB_OK;
}

static int mock_config_bool(const struct perkhub_host *h, const struct perkhub_config *c,
                            const char *key, int *out)
{
    const char *v = mock_config_string(h, c, key);
    if (!v)
        return PERKHUB_ERR_NOT_FOUND;
    *out = strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "on") == 0;
    return PERKHUB_OK;
}

static void mock_sha256(const struct perkhub_host *h, const void *d, size_t n, uint8_t out[32])
{
    (void)h, (void)d, (void)n;
    memset(out, 0xab, 32); /* not needed by the example; a real test links OpenSSL */
}

static void mock_hmac_sha256(const struct perkhub_host *h, const void *k, size_t kn, const void *d,
                             size_t n, uint8_t out[32])
{
    (void)h, (void)k, (void)kn, (void)d, (void)n;
    memset(out, 0xcd, 32);
}

static const char *mock_status_str(int status)
{
    return status == PERKHUB_OK ? "ok" : "error";
}

static void mock_init(struct mock_host *m)
{
    memset(m, 0, sizeof *m);
    m->host = (struct perkhub_host){
        .struct_size = sizeof(struct perkhub_host),
        .abi_major = PERKHUB_ABI_MAJOR,
        .abi_minor = PERKHUB_ABI_MINOR,
        .log_msg = mock_log_msg,
        .mem_alloc = mock_mem_alloc,
        .mem_realloc = mock_mem_realloc,
        .mem_free = mock_mem_free,
        .mem_strdup = mock_mem_strdup,
        .now_ms = mock_now_ms,
        .config_string = mock_config_string,
        .config_int = mock_config_int,
        .config_bool = mock_config_bool,
        .sha256 = mock_sha256,
        .hmac_sha256 = mock_hmac_sha256,
        .status_str = mock_status_str,
    };
    m->fail_alloc_at = -1;
}

/* ======================= THE TESTS ======================================== */

Test(example, descriptor)
{
    const struct perkhub_plugin *d = perkhub_plugin_entry();
    cr_assert_not_null(d);
    cr_assert_eq(perkhub_plugin_entry(), d, "entry must return the same descriptor every time");
    cr_assert_eq(d->struct_size, sizeof(struct perkhub_plugin));
    cr_assert_eq(d->abi_major, PERKHUB_ABI_MAJOR);
    cr_assert_eq(d->abi_minor, PERKHUB_ABI_MINOR);
    cr_assert_str_eq(d->name, "example");
    cr_assert_str_eq(d->version, "1.0.0");
    cr_assert_not_null(d->description);
    cr_assert_eq(d->capabilities, 0, "ABI 1.0 carries no operations");
    cr_assert_null(d->ops);
    cr_assert_not_null(d->init);
    cr_assert_not_null(d->shutdown);

    /* The schema: exactly one key, greeting, a string defaulting to "hello". */
    const struct perkhub_config_key *k = d->config;
    cr_assert_not_null(k);
    cr_assert_str_eq(k[0].key, "greeting");
    cr_assert_eq(k[0].type, PERKHUB_CONF_STRING);
    cr_assert_str_eq(k[0].default_value, "hello");
    cr_assert_eq(k[0].required, 0);
    cr_assert_not_null(k[0].description);
    cr_assert_null(k[1].key, "the schema ends after greeting");
}

/* init/shutdown, table-driven over configs. */
Test(example, lifecycle)
{
    static const char *const none[] = {NULL};
    static const char *const hi[] = {"greeting", "hi", NULL};
    static const char *const empty[] = {"greeting", "", NULL};
    static const struct {
        const char *name;
        const char *const *kv;
        int status;          /* what init returns */
        const char *logline; /* the init log line, or the errbuf substring */
    } cases[] = {
        {"default greeting", none, PERKHUB_OK, "info init greeting=hello"},
        {"configured greeting", hi, PERKHUB_OK, "info init greeting=hi"},
        {"empty greeting", empty, PERKHUB_ERR_CONFIG, "'greeting' must not be empty"},
    };
    const struct perkhub_plugin *d = perkhub_plugin_entry();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mock_host m;
        mock_init(&m);
        struct perkhub_config cfg = {.kv = cases[i].kv, .schema = d->config};
        char errbuf[PERKHUB_ERRBUF_SIZE] = "";
        void *inst = NULL;
        int st = d->init(&m.host, &cfg, &inst, errbuf, sizeof errbuf);
        cr_assert_eq(st, cases[i].status, "%s: init returned %d", cases[i].name, st);
        if (st != PERKHUB_OK) {
            cr_assert(strstr(errbuf, cases[i].logline), "%s: errbuf \"%s\"", cases[i].name, errbuf);
            cr_assert_eq(m.live_blocks, 0, "%s: failed init must free everything", cases[i].name);
            cr_assert_eq(m.nlines, 0);
            continue;
        }
        cr_assert_not_null(inst, "%s", cases[i].name);
        cr_assert_eq(m.nlines, 1, "%s", cases[i].name);
        cr_assert_str_eq(m.lines[0], cases[i].logline, "%s", cases[i].name);
        cr_assert_gt(m.live_blocks, 0, "the instance lives in host memory");

        d->shutdown(inst);
        cr_assert_eq(m.live_blocks, 0, "%s: shutdown must free everything", cases[i].name);
        cr_assert_eq(m.nlines, 2);
        cr_assert_str_eq(m.lines[1], "info shutdown");
    }
}

/* Every allocation init makes may fail: init must report it and leak nothing. */
Test(example, out_of_memory)
{
    const struct perkhub_plugin *d = perkhub_plugin_entry();
    for (long n = 0; n < 2; n++) {
        struct mock_host m;
        mock_init(&m);
        m.fail_alloc_at = n;
        struct perkhub_config cfg = {.kv = NULL, .schema = d->config};
        char errbuf[PERKHUB_ERRBUF_SIZE] = "";
        void *inst = NULL;
        cr_assert_eq(d->init(&m.host, &cfg, &inst, errbuf, sizeof errbuf), PERKHUB_ERR_NOMEM,
                     "allocation %ld failing", n);
        cr_assert_eq(m.live_blocks, 0, "allocation %ld failing: leak", n);
    }
}

/* Two suppliers on one plugin: two independent instances (no global state). */
Test(example, instances_are_independent)
{
    const struct perkhub_plugin *d = perkhub_plugin_entry();
    static const char *const a_kv[] = {"greeting", "a", NULL};
    static const char *const b_kv[] = {"greeting", "b", NULL};
    struct mock_host ma, mb;
    mock_init(&ma);
    mock_init(&mb);
    struct perkhub_config ca = {.kv = a_kv, .schema = d->config};
    struct perkhub_config cb = {.kv = b_kv, .schema = d->config};
    char errbuf[PERKHUB_ERRBUF_SIZE] = "";
    void *ia = NULL, *ib = NULL;
    cr_assert_eq(d->init(&ma.host, &ca, &ia, errbuf, sizeof errbuf), PERKHUB_OK);
    cr_assert_eq(d->init(&mb.host, &cb, &ib, errbuf, sizeof errbuf), PERKHUB_OK);
    cr_assert_neq(ia, ib);
    d->shutdown(ia); /* logs through a's host, not b's */
    cr_assert_str_eq(ma.lines[1], "info shutdown");
    cr_assert_eq(mb.nlines, 1);
    d->shutdown(ib);
    cr_assert_eq(ma.live_blocks, 0);
    cr_assert_eq(mb.live_blocks, 0);
}
