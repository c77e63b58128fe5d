/*
 * test_loader.c — the plugin loader and the supplier set, against the tiny
 * fixture plugins in tests/fixtures/plugins (built into $PH_FIXTURE_PLUGIN_DIR).
 *
 * Log lines go to a memfd so tests can see which instance started and stopped:
 * the good fixture logs `plugin.init supplier=<id> ... label=<label>` and
 * `plugin.shutdown supplier=<id> ... label=<label>`.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "crypto/crypto.h"
#include "base/log.h"
#include "supply/plugin_loader.h"
#include "supply/plugin_ops.h"
#include "base/status.h"
#include "supply/suppliers.h"

/* ---- harness ---------------------------------------------------------------- */

static ph_logger lg;
static char logbuf[1 << 16];

static void setup(void)
{
    lg.level = PH_LOG_DEBUG;
    lg.fd = memfd_create("loader-log", 0);
    cr_assert_geq(lg.fd, 0);
}

static void teardown(void)
{
    close(lg.fd);
}

/* Everything logged so far. */
static const char *log_text(void)
{
    ssize_t n = pread(lg.fd, logbuf, sizeof logbuf - 1, 0);
    cr_assert_geq(n, 0);
    logbuf[n] = '\0';
    return logbuf;
}

/* How many log lines contain every one of the (up to three) needles. */
static int log_count(const char *a, const char *b, const char *c)
{
    int n = 0;
    const char *t = log_text();
    while (*t) {
        const char *eol = strchr(t, '\n');
        size_t len = eol ? (size_t)(eol - t) : strlen(t);
        char line[2048];
        if (len >= sizeof line)
            len = sizeof line - 1;
        memcpy(line, t, len);
        line[len] = '\0';
        if (strstr(line, a) && (!b || strstr(line, b)) && (!c || strstr(line, c)))
            n++;
        t += eol ? len + 1 : len;
    }
    return n;
}

static const char *fixture_dir(void)
{
    const char *d = getenv("PH_FIXTURE_PLUGIN_DIR");
    cr_assert_not_null(d, "PH_FIXTURE_PLUGIN_DIR is not set (run through ctest)");
    return d;
}

#define KV(k, v) ((ph_kv){.key = (char *)(k), .value = (char *)(v)})
#define NKV(a)   (sizeof(a) / sizeof((a)[0]))

static ph_supplier_conf supplier(const char *id, const char *plugin, int enabled, int priority,
                                 ph_kv *kv, size_t nkv)
{
    return (ph_supplier_conf){.id = (char *)id,
                              .plugin = (char *)plugin,
                              .enabled = enabled,
                              .priority = priority,
                              .config = kv,
                              .nconfig = nkv};
}

static ph_config config_of(ph_supplier_conf *sups, size_t n)
{
    return (ph_config){.plugin_dir = (char *)fixture_dir(), .suppliers = sups, .nsuppliers = n};
}

static void *instance_of(ph_suppliers *s, const char *id)
{
    ph_supplier *sup = NULL;
    cr_assert_eq(ph_suppliers_acquire(s, id, &sup), PH_OK, "acquire %s", id);
    void *inst = ph_supplier_instance(sup);
    ph_supplier_release(sup);
    return inst;
}

/* ---- opening plugins --------------------------------------------------------- */

TestSuite(loader, .init = setup, .fini = teardown);

Test(loader, open_good)
{
    ph_plugin *p = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_plugin_open(fixture_dir(), "good", &p, &err), PH_OK, "%s", err.msg);
    const struct perkhub_plugin *d = ph_plugin_descriptor(p);
    cr_assert_str_eq(d->name, "good");
    cr_assert_str_eq(d->version, "1.2.3");
    cr_assert_eq(d->abi_major, 1);
    cr_assert_eq(d->abi_minor, 0);
    cr_assert_str_eq(ph_plugin_name(p), "good");
    char want[4096];
    snprintf(want, sizeof want, "%s/good.so", fixture_dir());
    cr_assert_str_eq(ph_plugin_path(p), want);

    char *doc = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&doc, &len);
    cr_assert_eq(ph_plugin_describe(p, f), PH_OK);
    fclose(f);
    cr_assert(strstr(doc, "plugin: good 1.2.3 (SDK ABI 1.0"), "%s", doc);
    cr_assert(strstr(doc, "  label (string, optional, default \"good\"): Shown in"), "%s", doc);
    cr_assert(strstr(doc, "  token (secret, optional): "), "%s", doc);
    cr_assert(strstr(doc, "capabilities: none\n"), "%s", doc);
    free(doc);
    ph_plugin_close(p);
}

/* Every way a file can fail to be a plugin we accept: the right code and a message
 * naming the plugin (and, for ABI problems, both ABI versions). */
Test(loader, open_refusals)
{
    static const struct {
        const char *plugin;
        int code;
        const char *says[3];
    } cases[] = {
        {"wrong_major",
         PH_EVERSION,
         {"plugin 'wrong_major' (", "is built for SDK ABI 2.0", "this perkhubd provides 1.4"}},
        {"newer_minor",
         PH_EVERSION,
         {"plugin 'newer_minor' (", "is built for SDK ABI 1.99", "this perkhubd provides 1.4"}},
        {"too_small",
         PH_EVERSION,
         {"plugin 'too_small' (", "less than the", "this perkhubd provides 1.4"}},
        {"missing_symbol",
         PH_EINVAL,
         {"plugin 'missing_symbol' (", "does not export perkhub_plugin_entry()",
          "not a perkhub plugin"}},
        {"name_mismatch",
         PH_EINVAL,
         {"plugin file 'name_mismatch' (", "declares the name 'other_name'", "<name>.so"}},
        {"bad_schema",
         PH_EINVAL,
         {"plugin 'bad_schema' (", "config key 'region'", "required and has a default"}},
        {"claims_caps",
         PH_EINVAL,
         {"plugin 'claims_caps' (", "capabilities 0x4 that SDK ABI 1.0 cannot carry",
          "operations come in 1.1"}},
        {"old_sets_ops",
         PH_EINVAL,
         {"plugin 'old_sets_ops' (", "sets ops, which SDK ABI 1.0 does not define", NULL}},
        /* ABI 1.1: the capability rules, each naming the missing piece */
        {"caps_no_ops",
         PH_EINVAL,
         {"plugin 'caps_no_ops' (", "claims capabilities 0x1", "has no ops table"}},
        {"ops_no_caps",
         PH_EINVAL,
         {"plugin 'ops_no_caps' (", "sets ops but claims no capability", NULL}},
        {"ops_too_small",
         PH_EINVAL,
         {"plugin 'ops_too_small' (", "its ops table is 8 bytes",
          "less than the 40 of SDK ABI 1.1"}},
        {"no_parse",
         PH_EINVAL,
         {"plugin 'no_parse' (", "claims stock_check but its ops table lacks parse_response",
          NULL}},
        {"no_verify",
         PH_EINVAL,
         {"plugin 'no_verify' (", "claims callback but its ops table lacks verify_callback", NULL}},
        {"no_serve",
         PH_EINVAL,
         {"plugin 'no_serve' (", "claims local but its ops table lacks serve_local", NULL}},
        {"recharge_no_query",
         PH_EINVAL,
         {"plugin 'recharge_no_query' (", "claims recharge but not order_query",
          "an ambiguous order could never be settled (docs/design.md rule 2)"}},
        {"undefined_cap",
         PH_EINVAL,
         {"plugin 'undefined_cap' (", "claims capability bits 0x400", "bits 10..63 are reserved"}},
        /* ABI 1.2: a 1.1 plugin cannot claim the statement operation */
        {"statement_1_1",
         PH_EINVAL,
         {"plugin 'statement_1_1' (", "claims PERKHUB_CAP_STATEMENT, which SDK ABI 1.1",
          "it came with 1.2"}},
        /* ABI 1.3: a 1.2 plugin cannot claim redemption status */
        {"redemption_1_2",
         PH_EINVAL,
         {"plugin 'redemption_1_2' (", "claims PERKHUB_CAP_REDEMPTION, which SDK ABI 1.2",
          "it came with 1.3"}},
        {"no_such_plugin",
         PH_ENOTFOUND,
         {"plugin 'no_such_plugin' (", "no_such_plugin.so): no such file", NULL}},
        {"../good", PH_EINVAL, {"plugin name '../good' is not valid", NULL, NULL}},
        {"", PH_EINVAL, {"plugin name '' is not valid", NULL, NULL}},
    };
    for (size_t i = 0; i < NKV(cases); i++) {
        ph_plugin *p = NULL;
        ph_err err = {0};
        int rc = ph_plugin_open(fixture_dir(), cases[i].plugin, &p, &err);
        cr_assert_eq(rc, cases[i].code, "%s: rc %d (%s)", cases[i].plugin, rc, err.msg);
        cr_assert_eq(err.code, cases[i].code, "%s", cases[i].plugin);
        cr_assert_null(p, "%s: nothing may be returned", cases[i].plugin);
        for (int j = 0; j < 3 && cases[i].says[j]; j++)
            cr_assert(strstr(err.msg, cases[i].says[j]), "%s: message \"%s\" lacks \"%s\"",
                      cases[i].plugin, err.msg, cases[i].says[j]);
        if (cases[i].code != PH_EINVAL || strncmp(cases[i].says[0], "plugin '", 8) == 0) {
            char path[4096];
            snprintf(path, sizeof path, "(%s/%s.so)", fixture_dir(), cases[i].plugin);
            cr_assert(strstr(err.msg, path), "%s: message \"%s\" lacks the file %s",
                      cases[i].plugin, err.msg, path);
        }
    }
    /* The exact sentence ops will read. */
    ph_plugin *p = NULL;
    ph_err err = {0};
    char want[4096];
    snprintf(want, sizeof want,
             "plugin 'wrong_major' (%s/wrong_major.so) is built for SDK ABI 2.0; this perkhubd "
             "provides 1.4",
             fixture_dir());
    cr_assert_eq(ph_plugin_open(fixture_dir(), "wrong_major", &p, &err), PH_EVERSION);
    cr_assert_eq(strncmp(err.msg, want, strlen(want)), 0, "%s", err.msg);
    cr_assert_eq(ph_plugin_open(NULL, "good", &p, &err), PH_EINVAL);
}

/* ABI 1.3 is append-only: a plugin built for 1.2 still loads and runs, with
 * its capabilities as it declared them, and a result it fills leaves the 1.3
 * fields at "unknown" (the core initializes them). */
Test(loader, open_abi_1_2)
{
    ph_plugin *p = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_plugin_open(fixture_dir(), "abi_1_2", &p, &err), PH_OK, "%s", err.msg);
    const struct perkhub_plugin *d = ph_plugin_descriptor(p);
    cr_assert_eq(d->abi_minor, 2);
    cr_assert_eq(d->capabilities, PERKHUB_CAP_STOCK_CHECK | PERKHUB_CAP_STATEMENT);
    cr_assert_eq(d->capabilities & PERKHUB_CAP_REDEMPTION, 0, "never asked about redemption");
    char *doc = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&doc, &len);
    cr_assert_eq(ph_plugin_describe(p, f), PH_OK);
    fclose(f);
    cr_assert(strstr(doc, "plugin: abi_1_2 1.2.0 (SDK ABI 1.2"), "%s", doc);
    cr_assert(strstr(doc, "capabilities: stock_check statement\n"), "%s", doc);
    free(doc);

    ph_plugin_conf *conf = NULL;
    ph_plugin_instance *inst = NULL;
    cr_assert_eq(ph_plugin_conf_resolve(p, "s12", NULL, 0, &conf, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ph_plugin_start(p, "s12", conf, &lg, &inst, &err), PH_OK, "%s", err.msg);
    const struct perkhub_ops *ops = ph_plugin_ops(p);
    struct perkhub_op op = {.struct_size = sizeof op, .kind = PERKHUB_OP_STOCK_CHECK};
    struct perkhub_result res;
    ph_op_result_init(&res);
    struct perkhub_response resp = {.http_status = 200, .body = "", .body_len = 0};
    cr_assert_eq(ops->parse_response(ph_plugin_instance_data(inst), &op, &resp, &res), PERKHUB_OK);
    cr_assert_eq(res.stock, 7);
    cr_assert_eq(res.redeemed, -1, "a 1.2 plugin leaves redeemed unknown");
    cr_assert_eq(res.redeemed_at_ms, 0);
    ph_op_result_clear(ph_plugin_instance_host(inst), &res);
    ph_plugin_stop(inst);
    ph_plugin_close(p);
}

/* A correct 1.1 plugin: the core keeps its own copy of the ops table, the
 * tuning fields are read, and the callbacks work through the copy with the 1.1
 * host functions (url_encode, base64_decode). */
Test(loader, open_ops_good)
{
    ph_plugin *p = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_plugin_open(fixture_dir(), "ops_good", &p, &err), PH_OK, "%s", err.msg);
    const struct perkhub_plugin *d = ph_plugin_descriptor(p);
    const struct perkhub_ops *ops = ph_plugin_ops(p);
    cr_assert_eq(d->abi_minor, 1); /* built for 1.1, loaded by 1.2 */
    cr_assert_not_null(ops);
    cr_assert_eq(d->ops, ops, "the descriptor copy points at the core's ops copy");
    cr_assert_eq(ops->struct_size, sizeof(struct perkhub_ops));
    cr_assert_not_null(ops->build_request);
    cr_assert_not_null(ops->parse_response);
    cr_assert_not_null(ops->verify_callback);
    cr_assert_null(ops->serve_local);
    cr_assert_eq(d->processing_window_s, 120);
    cr_assert_eq(d->query_delay_ms, 250);

    char *doc = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&doc, &len);
    cr_assert_eq(ph_plugin_describe(p, f), PH_OK);
    fclose(f);
    cr_assert(strstr(doc, "plugin: ops_good 1.1.0 (SDK ABI 1.1"), "%s", doc);
    cr_assert(strstr(doc, "capabilities: stock_check card_order order_query callback\n"), "%s",
              doc);
    cr_assert(strstr(doc, "order queries: first after 250 ms, not_found settles after 120 s"), "%s",
              doc);
    free(doc);

    ph_plugin_conf *conf = NULL;
    ph_plugin_instance *inst = NULL;
    cr_assert_eq(ph_plugin_conf_resolve(p, "s1", NULL, 0, &conf, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ph_plugin_start(p, "s1", conf, &lg, &inst, &err), PH_OK, "%s", err.msg);
    const struct perkhub_host *h = ph_plugin_instance_host(inst);
    void *data = ph_plugin_instance_data(inst);
    size_t base = ph_plugin_instance_blocks(inst);

    struct perkhub_op op = {
        .struct_size = sizeof op, .kind = PERKHUB_OP_STOCK_CHECK, .product_id = "gold/1m&x"};
    struct perkhub_request req = {0};
    cr_assert_eq(ops->build_request(data, &op, &req), PERKHUB_OK);
    cr_assert_str_eq(req.method, "GET");
    cr_assert_str_eq(req.url, "https://sup.example/stock?sku=gold%2F1m%26x");
    ph_op_request_clear(h, &req);

    struct perkhub_result res;
    ph_op_result_init(&res);
    struct perkhub_response resp = {.http_status = 200, .body = "NDI=", .body_len = 4};
    cr_assert_eq(ops->parse_response(data, &op, &resp, &res), PERKHUB_OK);
    cr_assert_eq(res.stock, 42);
    ph_op_result_clear(h, &res);
    resp.body = "NDI";
    resp.body_len = 3;
    cr_assert_eq(ops->parse_response(data, &op, &resp, &res), PERKHUB_OK, "padding is optional");
    ph_op_result_clear(h, &res);
    resp.body = "N D I";
    resp.body_len = 5;
    cr_assert_eq(ops->parse_response(data, &op, &resp, &res), PERKHUB_AMBIGUOUS);
    ph_op_result_clear(h, &res);

    struct perkhub_callback cb = {.method = "POST", .query = "", .content_type = "", .body = ""};
    cr_assert_eq(ops->verify_callback(data, &cb, &res), PERKHUB_DEFINITE_FAILURE);
    cr_assert_str_eq(res.reason, "bad_signature");
    ph_op_result_clear(h, &res);
    cr_assert_eq(ph_plugin_instance_blocks(inst), base, "every result block given back");

    ph_plugin_stop(inst);
    cr_assert_eq(log_count("plugin.leak", NULL, NULL), 0, "%s", log_text());
    ph_plugin_close(p);
}

/* The tuning fields beyond a descriptor's struct_size are never read. */
Test(loader, short_descriptor_reads_no_tuning)
{
    ph_plugin *p = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_plugin_open(fixture_dir(), "ops_short_desc", &p, &err), PH_OK, "%s", err.msg);
    const struct perkhub_plugin *d = ph_plugin_descriptor(p);
    cr_assert_eq(d->processing_window_s, 0, "the fixture's 77 lies beyond its struct_size");
    cr_assert_eq(d->query_delay_ms, 0);
    cr_assert_not_null(ph_plugin_ops(p));
    ph_plugin_close(p);

    /* a 1.0 plugin has no ops copy */
    cr_assert_eq(ph_plugin_open(fixture_dir(), "good", &p, &err), PH_OK, "%s", err.msg);
    cr_assert_null(ph_plugin_ops(p));
    cr_assert_null(ph_plugin_descriptor(p)->ops);
    ph_plugin_close(p);
}

/* ---- linked-in descriptors (ph_plugin_wrap) ---------------------------------- */

static int wrap_init(const struct perkhub_host *host, const struct perkhub_config *config,
                     void **instance, char *errbuf, size_t errlen)
{
    (void)errbuf, (void)errlen;
    host->log_msg(host, PERKHUB_LOG_INFO, "init", "key_len=%zu",
                  strlen(host->config_string(host, config, "key")));
    *instance = NULL;
    return PERKHUB_OK;
}

static void wrap_shutdown(void *instance)
{
    (void)instance;
}

static int wrap_build(void *instance, const struct perkhub_op *op, struct perkhub_request *req)
{
    (void)instance, (void)op, (void)req;
    return PERKHUB_ERR_UNSUPPORTED;
}

static int wrap_parse(void *instance, const struct perkhub_op *op,
                      const struct perkhub_response *resp, struct perkhub_result *res)
{
    (void)instance, (void)op, (void)resp, (void)res;
    return PERKHUB_AMBIGUOUS;
}

static const struct perkhub_config_key wrap_config[] = {
    {.key = "key", .type = PERKHUB_CONF_SECRET, .required = 1, .description = "A secret."},
    {.key = NULL},
};

Test(loader, wrap_linked_descriptor)
{
    struct perkhub_ops ops = {
        .struct_size = sizeof ops, .build_request = wrap_build, .parse_response = wrap_parse};
    struct perkhub_plugin d = {.struct_size = sizeof d,
                               .abi_major = PERKHUB_ABI_MAJOR,
                               .abi_minor = PERKHUB_ABI_MINOR,
                               .name = "linked",
                               .version = "0.0.1",
                               .capabilities = PERKHUB_CAP_BALANCE,
                               .config = wrap_config,
                               .init = wrap_init,
                               .shutdown = wrap_shutdown,
                               .ops = &ops};
    ph_plugin *p = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_plugin_wrap(&d, "linked", &p, &err), PH_OK, "%s", err.msg);
    cr_assert_str_eq(ph_plugin_path(p), "linked in");
    cr_assert_neq(ph_plugin_ops(p), &ops, "a copy, not the plugin's table");
    cr_assert_eq(ph_plugin_ops(p)->build_request, wrap_build);

    /* inline secrets only through the test-harness resolver */
    ph_kv kv[] = {KV("key", "plain-s3cret")};
    ph_plugin_conf *conf = NULL;
    cr_assert_eq(ph_plugin_conf_resolve(p, "w", kv, 1, &conf, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "is a secret: write it as env:NAME or file:PATH"), "%s", err.msg);
    cr_assert_eq(ph_plugin_conf_resolve_plain(p, "w", kv, 1, &conf, &err), PH_OK, "%s", err.msg);
    ph_plugin_instance *inst = NULL;
    cr_assert_eq(ph_plugin_start(p, "w", conf, &lg, &inst, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(log_count("msg=plugin.init supplier=w plugin=linked key_len=12", NULL, NULL), 1,
                 "%s", log_text());
    cr_assert_null(strstr(log_text(), "plain-s3cret"));

    /* a frozen clock for tests, then the real one */
    const struct perkhub_host *h = ph_plugin_instance_host(inst);
    ph_plugin_instance_set_now(inst, 1234);
    cr_assert_eq(h->now_ms(h), 1234);
    ph_plugin_instance_set_now(inst, 0);
    cr_assert_gt(h->now_ms(h), INT64_C(1700000000000));
    ph_plugin_stop(inst);
    ph_plugin_close(p);

    /* the same checks as a file: name, capability rules */
    cr_assert_eq(ph_plugin_wrap(&d, "other", &p, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "plugin file 'other' (linked in) declares the name 'linked'"), "%s",
              err.msg);
    d.capabilities |= PERKHUB_CAP_RECHARGE;
    cr_assert_eq(ph_plugin_wrap(&d, "linked", &p, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "plugin 'linked' (linked in) claims recharge but not order_query"),
              "%s", err.msg);
    cr_assert_eq(ph_plugin_wrap(NULL, "linked", &p, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "returned no descriptor"), "%s", err.msg);
}

/* Every operation the core sends through the engine needs build_request and
 * parse_response: a plugin claiming only one of them, without either callback,
 * is refused at load naming both, never found out at its first use. The
 * operations added after 1.1 (1.2 statement, 1.3 redemption) included. */
Test(loader, exchange_caps_need_build_and_parse)
{
    static const struct {
        uint64_t cap;
        const char *name;
    } caps[] = {
        {PERKHUB_CAP_CATALOG, "catalog"},         {PERKHUB_CAP_STOCK_CHECK, "stock_check"},
        {PERKHUB_CAP_ORDER_QUERY, "order_query"}, {PERKHUB_CAP_BALANCE, "balance"},
        {PERKHUB_CAP_STATEMENT, "statement"},     {PERKHUB_CAP_REDEMPTION, "redemption"},
    };
    struct perkhub_ops full = {
        .struct_size = sizeof full, .build_request = wrap_build, .parse_response = wrap_parse};
    struct perkhub_ops no_build = {.struct_size = sizeof no_build, .parse_response = wrap_parse};
    struct perkhub_ops no_parse = {.struct_size = sizeof no_parse, .build_request = wrap_build};
    struct {
        struct perkhub_ops *ops;
        const char *lacks;
    } tables[] = {{&no_build, "build_request"}, {&no_parse, "parse_response"}};
    for (size_t i = 0; i < NKV(caps); i++) {
        struct perkhub_plugin d = {.struct_size = sizeof d,
                                   .abi_major = PERKHUB_ABI_MAJOR,
                                   .abi_minor = PERKHUB_ABI_MINOR,
                                   .name = "linked",
                                   .version = "0.0.1",
                                   .capabilities = caps[i].cap,
                                   .config = wrap_config,
                                   .init = wrap_init,
                                   .shutdown = wrap_shutdown,
                                   .ops = &full};
        ph_plugin *p = NULL;
        ph_err err = {0};
        cr_assert_eq(ph_plugin_wrap(&d, "linked", &p, &err), PH_OK, "%s: %s", caps[i].name,
                     err.msg);
        ph_plugin_close(p);
        for (size_t t = 0; t < NKV(tables); t++) {
            char want[128];
            snprintf(want, sizeof want, "claims %s but its ops table lacks %s", caps[i].name,
                     tables[t].lacks);
            d.ops = tables[t].ops;
            p = NULL;
            cr_assert_eq(ph_plugin_wrap(&d, "linked", &p, &err), PH_EINVAL,
                         "%s without %s was accepted", caps[i].name, tables[t].lacks);
            cr_assert_null(p);
            cr_assert(strstr(err.msg, want), "%s: message \"%s\" lacks \"%s\"", caps[i].name,
                      err.msg, want);
        }
    }
}

/* ---- lifecycle and host services --------------------------------------------- */

static ph_plugin_instance *start(ph_plugin **p, const char *plugin, const char *sid, ph_kv *kv,
                                 size_t nkv)
{
    ph_err err = {0};
    ph_plugin_conf *conf = NULL;
    ph_plugin_instance *inst = NULL;
    cr_assert_eq(ph_plugin_open(fixture_dir(), plugin, p, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ph_plugin_conf_resolve(*p, sid, kv, nkv, &conf, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ph_plugin_start(*p, sid, conf, &lg, &inst, &err), PH_OK, "%s", err.msg);
    return inst;
}

Test(loader, good_lifecycle)
{
    ph_plugin *p = NULL;
    ph_plugin_instance *inst = start(&p, "good", "s1", NULL, 0);
    cr_assert_not_null(ph_plugin_instance_data(inst));
    cr_assert_eq(ph_plugin_instance_blocks(inst), 2, "instance + label");
    cr_assert_eq(log_count("msg=plugin.init supplier=s1 plugin=good label=good limit=10 "
                           "verbose=0 token=unset",
                           NULL, NULL),
                 1, "%s", log_text());
    const struct perkhub_host *h = ph_plugin_instance_host(inst);
    cr_assert_eq(h->struct_size, sizeof(struct perkhub_host));
    cr_assert_eq(h->abi_major, PERKHUB_ABI_MAJOR);
    cr_assert_eq(h->abi_minor, PERKHUB_ABI_MINOR);

    ph_plugin_stop(inst);
    cr_assert_eq(log_count("msg=plugin.shutdown supplier=s1 plugin=good label=good", NULL, NULL),
                 1);
    cr_assert_eq(log_count("plugin.leak", NULL, NULL), 0);
    ph_plugin_close(p);
}

Test(loader, init_fails)
{
    ph_plugin *p = NULL;
    ph_err err = {0};
    ph_plugin_conf *conf = NULL;
    ph_plugin_instance *inst = NULL;
    cr_assert_eq(ph_plugin_open(fixture_dir(), "init_fails", &p, &err), PH_OK, "%s", err.msg);
    ph_kv kv[] = {KV("merchant_id", "m-42")};
    cr_assert_eq(ph_plugin_conf_resolve(p, "acme", kv, NKV(kv), &conf, &err), PH_OK);
    cr_assert_eq(ph_plugin_start(p, "acme", conf, &lg, &inst, &err), PH_EINVAL);
    cr_assert_null(inst);
    cr_assert_str_eq(err.msg, "supplier 'acme': plugin 'init_fails' init failed (config): "
                              "config key 'merchant_id': merchant m-42 is suspended");
    cr_assert_eq(log_count("plugin.leak", NULL, NULL), 0, "the fixture frees its scratch");
    ph_plugin_close(p);
}

Test(loader, host_reclaims_leaks)
{
    ph_plugin *p = NULL;
    ph_plugin_instance *inst = start(&p, "leaky", "s9", NULL, 0);
    cr_assert_eq(ph_plugin_instance_blocks(inst), 2);
    ph_plugin_stop(inst); /* ASan would report the forgotten block if the host did not */
    cr_assert_eq(
        log_count("level=warn", "msg=plugin.leak supplier=s9 plugin=leaky", "blocks=1 bytes=100"),
        1, "%s", log_text());
    ph_plugin_close(p);
}

Test(loader, host_services)
{
    ph_plugin *p = NULL;
    ph_kv kv[] = {KV("limit", "-7"), KV("verbose", "on")};
    ph_plugin_instance *inst = start(&p, "good", "s1", kv, NKV(kv));
    const struct perkhub_host *h = ph_plugin_instance_host(inst);
    const struct perkhub_config *c = ph_plugin_instance_conf(inst);

    /* config getters: typed, defaults applied, wrong type and unknown keys refused */
    int64_t iv = 0;
    int bv = 0;
    cr_assert_str_eq(h->config_string(h, c, "label"), "good");
    cr_assert_str_eq(h->config_string(h, c, "limit"), "-7");
    cr_assert_eq(h->config_int(h, c, "limit", &iv), PERKHUB_OK);
    cr_assert_eq(iv, -7);
    cr_assert_eq(h->config_bool(h, c, "verbose", &bv), PERKHUB_OK);
    cr_assert_eq(bv, 1);
    cr_assert_eq(h->config_int(h, c, "label", &iv), PERKHUB_ERR_CONFIG);
    cr_assert_eq(h->config_bool(h, c, "limit", &bv), PERKHUB_ERR_CONFIG);
    cr_assert_eq(h->config_int(h, c, "nope", &iv), PERKHUB_ERR_NOT_FOUND);
    cr_assert_null(h->config_string(h, c, "nope"));
    cr_assert_null(h->config_string(h, c, "token"), "optional, unset, no default");

    /* memory: zeroed, accounted, realloc keeps the bytes */
    size_t before = ph_plugin_instance_blocks(inst);
    unsigned char *m = h->mem_alloc(h, 16);
    for (int i = 0; i < 16; i++)
        cr_assert_eq(m[i], 0);
    memcpy(m, "0123456789abcdef", 16);
    m = h->mem_realloc(h, m, 64);
    cr_assert_not_null(m);
    cr_assert_eq(memcmp(m, "0123456789abcdef", 16), 0);
    cr_assert_eq(m[63], 0);
    char *s = h->mem_strdup(h, "copy");
    cr_assert_str_eq(s, "copy");
    cr_assert_eq(ph_plugin_instance_blocks(inst), before + 2);
    h->mem_free(h, m);
    h->mem_free(h, s);
    h->mem_free(h, NULL);
    cr_assert_null(h->mem_alloc(h, 0));
    cr_assert_eq(ph_plugin_instance_blocks(inst), before);

    /* clock, hashes (RFC 4231 case 2; FIPS 180-2 "abc"), status names */
    int64_t now = h->now_ms(h);
    cr_assert(now > INT64_C(1700000000000) && now - (int64_t)time(NULL) * 1000 < 5000);
    uint8_t mac[32], dig[32];
    h->hmac_sha256(h, "Jefe", 4, "what do ya want for nothing?", 28, mac);
    static const uint8_t want_mac[32] = {0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e,
                                         0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75, 0xc7,
                                         0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83,
                                         0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};
    cr_assert_eq(memcmp(mac, want_mac, 32), 0);
    /* again (the instance's prepared key now), then under another key (the
     * unprepared path), then the first key again: the same bytes as the core's */
    h->hmac_sha256(h, "Jefe", 4, "what do ya want for nothing?", 28, mac);
    cr_assert_eq(memcmp(mac, want_mac, 32), 0);
    uint8_t other[32], want_other[32];
    h->hmac_sha256(h, "another key", 11, "body", 4, other);
    ph_hmac_sha256("another key", 11, "body", 4, want_other);
    cr_assert_eq(memcmp(other, want_other, 32), 0);
    h->hmac_sha256(h, "Jefe", 4, "what do ya want for nothing?", 28, mac);
    cr_assert_eq(memcmp(mac, want_mac, 32), 0);
    h->sha256(h, "abc", 3, dig);
    cr_assert_eq(dig[0], 0xba);
    cr_assert_eq(dig[31], 0xad);
    cr_assert_str_eq(h->status_str(PERKHUB_OK), "ok");
    cr_assert_str_eq(h->status_str(PERKHUB_AMBIGUOUS), "ambiguous");
    cr_assert_str_eq(h->status_str(PERKHUB_DEFINITE_FAILURE), "definite_failure");
    cr_assert_str_eq(h->status_str(12345), "unknown");

    /* log: attributed to the supplier; a malformed event name is made safe */
    h->log_msg(h, PERKHUB_LOG_WARN, "sign fail\n", "k=%d", 3);
    h->log_msg(h, 99, NULL, NULL);
    cr_assert_eq(log_count("level=warn", "msg=plugin.sign_fail_ supplier=s1 plugin=good k=3", NULL),
                 1, "%s", log_text());
    cr_assert_eq(log_count("level=error", "msg=plugin.log supplier=s1 plugin=good", NULL), 1);

    ph_plugin_stop(inst);
    ph_plugin_close(p);
}

/* ---- config validation -------------------------------------------------------- */

Test(loader, config_validation)
{
    setenv("PH_TEST_API_KEY", "sk_env_secret_value", 1);
    unsetenv("PH_TEST_UNSET_VAR");
    static const struct {
        const char *name;
        ph_kv kv[3];
        size_t nkv;
        int code;
        const char *says;
    } cases[] = {
        {"missing required",
         {{0}},
         0,
         PH_EINVAL,
         "supplier 'acme': config key 'api_key' is required by plugin 'needs_config'"},
        {"unknown key",
         {KV("api_key", "env:PH_TEST_API_KEY"), KV("timeout", "5")},
         2,
         PH_EINVAL,
         "supplier 'acme': config key 'timeout' is not known to plugin 'needs_config' (known: "
         "api_key, timeout_ms, sandbox)"},
        {"not an integer",
         {KV("api_key", "env:PH_TEST_API_KEY"), KV("timeout_ms", "3s")},
         2,
         PH_EINVAL,
         "supplier 'acme': config key 'timeout_ms': expected an integer (int64)"},
        {"integer overflow",
         {KV("api_key", "env:PH_TEST_API_KEY"), KV("timeout_ms", "99999999999999999999")},
         2,
         PH_EINVAL,
         "config key 'timeout_ms': expected an integer"},
        {"not a bool",
         {KV("api_key", "env:PH_TEST_API_KEY"), KV("sandbox", "maybe")},
         2,
         PH_EINVAL,
         "supplier 'acme': config key 'sandbox': expected true or false"},
        {"inline secret",
         {KV("api_key", "sk_live_inline_secret")},
         1,
         PH_EINVAL,
         "supplier 'acme': config key 'api_key' is a secret: write it as env:NAME or file:PATH"},
        {"unset env",
         {KV("api_key", "env:PH_TEST_UNSET_VAR")},
         1,
         PH_EINVAL,
         "supplier 'acme': config key 'api_key': environment variable PH_TEST_UNSET_VAR is not "
         "set"},
        {"missing file",
         {KV("api_key", "file:/nonexistent/ph-secret")},
         1,
         PH_EIO,
         "supplier 'acme': config key 'api_key': cannot read secret file /nonexistent/ph-secret"},
        {"duplicate",
         {KV("api_key", "env:PH_TEST_API_KEY"), KV("api_key", "env:PH_TEST_API_KEY")},
         2,
         PH_EINVAL,
         "supplier 'acme': config key 'api_key' is set twice"},
    };
    ph_plugin *p = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_plugin_open(fixture_dir(), "needs_config", &p, &err), PH_OK, "%s", err.msg);
    for (size_t i = 0; i < NKV(cases); i++) {
        ph_plugin_conf *conf = NULL;
        memset(&err, 0, sizeof err);
        int rc = ph_plugin_conf_resolve(p, "acme", cases[i].kv, cases[i].nkv, &conf, &err);
        cr_assert_eq(rc, cases[i].code, "%s: rc %d (%s)", cases[i].name, rc, err.msg);
        cr_assert_null(conf);
        cr_assert(strstr(err.msg, cases[i].says), "%s: \"%s\"", cases[i].name, err.msg);
        cr_assert_null(strstr(err.msg, "secret_value"), "%s: leaks a secret", cases[i].name);
        cr_assert_null(strstr(err.msg, "sk_live"), "%s: leaks a secret", cases[i].name);
        cr_assert_null(strstr(err.msg, "3s"), "%s: quotes a value", cases[i].name);
        cr_assert_null(strstr(err.msg, "maybe"), "%s: quotes a value", cases[i].name);
    }
    ph_plugin_close(p);
}

Test(loader, config_resolved)
{
    char path[] = "/tmp/ph-test-secret-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "s3cr3t-from-file\n", 17), 17);
    close(fd);
    char ref[64];
    snprintf(ref, sizeof ref, "file:%s", path);
    setenv("PH_TEST_API_KEY", "0123456789", 1);

    ph_plugin *p = NULL;
    ph_kv a[] = {KV("api_key", "env:PH_TEST_API_KEY")};
    ph_plugin_instance *inst = start(&p, "needs_config", "acme", a, NKV(a));
    cr_assert_null(ph_plugin_instance_data(inst), "a stateless plugin may keep no instance");
    cr_assert_eq(log_count("msg=plugin.init supplier=acme plugin=needs_config timeout_ms=3000 "
                           "sandbox=0 api_key_len=10",
                           NULL, NULL),
                 1, "%s", log_text());
    ph_plugin_stop(inst);
    ph_plugin_close(p);

    ph_kv b[] = {KV("sandbox", "yes"), KV("api_key", ref), KV("timeout_ms", "250")};
    inst = start(&p, "needs_config", "acme", b, NKV(b));
    cr_assert_eq(log_count("timeout_ms=250 sandbox=1 api_key_len=16", NULL, NULL), 1, "%s",
                 log_text());
    cr_assert_null(strstr(log_text(), "s3cr3t"), "never log a secret");

    /* equality is on resolved values: same value from another reference is equal */
    ph_err err = {0};
    ph_plugin_conf *same = NULL, *other = NULL;
    ph_kv b2[] = {KV("api_key", ref), KV("timeout_ms", "250"), KV("sandbox", "on")};
    ph_kv c[] = {KV("api_key", ref), KV("timeout_ms", "251"), KV("sandbox", "yes")};
    cr_assert_eq(ph_plugin_conf_resolve(p, "acme", b2, NKV(b2), &same, &err), PH_OK);
    cr_assert_eq(ph_plugin_conf_resolve(p, "acme", c, NKV(c), &other, &err), PH_OK);
    cr_assert_eq(ph_plugin_conf_equal(same, ph_plugin_instance_conf(inst)), 0,
                 "\"on\" and \"yes\" are different text; a different text restarts");
    cr_assert_eq(ph_plugin_conf_equal(other, ph_plugin_instance_conf(inst)), 0);
    cr_assert_eq(ph_plugin_conf_equal(same, same), 1);
    ph_plugin_conf_free(same);
    ph_plugin_conf_free(other);
    ph_plugin_stop(inst);
    ph_plugin_close(p);
    unlink(path);
}

/* ---- the supplier set ----------------------------------------------------------- */

TestSuite(suppliers, .init = setup, .fini = teardown);

Test(suppliers, add_list_keep_remove_disable)
{
    ph_suppliers *s = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_suppliers_create(&lg, &s, &err), PH_OK);
    cr_assert_eq(ph_suppliers_list(s, NULL, 0), 0);

    /* add: two instances of one plugin, and a disabled supplier whose plugin is
     * broken (disabled means not loaded, so it does not matter) */
    ph_kv two[] = {KV("label", "two")};
    ph_supplier_conf v1[] = {
        supplier("s1", "good", 1, 0, NULL, 0),
        supplier("s2", "good", 1, 5, two, NKV(two)),
        supplier("off", "wrong_major", 0, 9, NULL, 0),
    };
    ph_config c1 = config_of(v1, NKV(v1));
    cr_assert_eq(ph_suppliers_apply(s, &c1, &err), PH_OK, "%s", err.msg);

    ph_supplier_info info[8];
    cr_assert_eq(ph_suppliers_list(s, info, 8), 3);
    cr_assert_str_eq(info[0].id, "off", "highest priority first");
    cr_assert_str_eq(info[0].state, "disabled");
    cr_assert_str_eq(info[0].plugin, "wrong_major");
    cr_assert_eq(info[0].enabled, 0);
    cr_assert_str_eq(info[0].plugin_version, "");
    cr_assert_str_eq(info[1].id, "s2");
    cr_assert_str_eq(info[1].state, "ready");
    cr_assert_eq(info[1].priority, 5);
    cr_assert_str_eq(info[2].id, "s1");
    cr_assert_str_eq(info[2].plugin, "good");
    cr_assert_str_eq(info[2].plugin_version, "1.2.3");
    cr_assert_eq(info[2].abi_major, 1);
    cr_assert_eq(info[2].abi_minor, 0);
    cr_assert_eq(info[2].enabled, 1);
    cr_assert_str_eq(info[2].error, "");
    cr_assert_eq(ph_suppliers_list(s, info, 1), 3, "returns the total even when max is smaller");

    void *i1 = instance_of(s, "s1"), *i2 = instance_of(s, "s2");
    cr_assert_neq(i1, i2, "one instance per supplier");
    ph_supplier *sup = NULL;
    cr_assert_eq(ph_suppliers_acquire(s, "off", &sup), PH_ESTATE);
    cr_assert_eq(ph_suppliers_acquire(s, "nope", &sup), PH_ENOTFOUND);

    /* keep: the same config again restarts nothing; a priority change neither */
    v1[0].priority = 7;
    cr_assert_eq(ph_suppliers_apply(s, &c1, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(instance_of(s, "s1"), i1);
    cr_assert_eq(instance_of(s, "s2"), i2);
    cr_assert_eq(log_count("msg=plugin.init", NULL, NULL), 2);
    cr_assert_eq(log_count("msg=plugin.shutdown", NULL, NULL), 0);
    cr_assert_eq(log_count("suppliers.applied", "started=0 kept=2 stopped=0 disabled=1", NULL), 1);
    ph_suppliers_list(s, info, 8);
    cr_assert_str_eq(info[1].id, "s1", "priority 7 now sorts s1 before s2");
    cr_assert_eq(info[1].priority, 7);

    /* change s2's config, remove s1, add a disabled s3; off now names a working plugin */
    ph_kv three[] = {KV("label", "three")};
    ph_supplier_conf v2[] = {
        supplier("s2", "good", 1, 5, three, NKV(three)),
        supplier("off", "good", 0, 9, NULL, 0),
        supplier("s3", "needs_config", 0, 1, NULL, 0),
    };
    ph_config c2 = config_of(v2, NKV(v2));
    cr_assert_eq(ph_suppliers_apply(s, &c2, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(log_count("msg=plugin.shutdown supplier=s1", NULL, NULL), 1, "s1 removed");
    cr_assert_eq(log_count("msg=plugin.shutdown supplier=s2", "label=two", NULL), 1,
                 "old s2 stopped");
    cr_assert_eq(log_count("msg=plugin.init supplier=s2", "label=three", NULL), 1,
                 "new s2 started");
    cr_assert_eq(ph_suppliers_acquire(s, "s1", &sup), PH_ENOTFOUND);
    cr_assert_eq(ph_suppliers_list(s, info, 8), 3);

    /* disable s2: listed as disabled, instance shut down */
    v2[0].enabled = 0;
    cr_assert_eq(ph_suppliers_apply(s, &c2, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(log_count("msg=plugin.shutdown supplier=s2", "label=three", NULL), 1);
    ph_suppliers_list(s, info, 8);
    cr_assert_str_eq(info[1].id, "s2");
    cr_assert_str_eq(info[1].state, "disabled");
    cr_assert_eq(ph_suppliers_acquire(s, "s2", &sup), PH_ESTATE);

    /* enable it again: a fresh instance */
    v2[0].enabled = 1;
    cr_assert_eq(ph_suppliers_apply(s, &c2, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(log_count("msg=plugin.init supplier=s2", "label=three", NULL), 2);

    ph_suppliers_destroy(s);
    cr_assert_eq(log_count("msg=plugin.init", NULL, NULL),
                 log_count("msg=plugin.shutdown", NULL, NULL), "every instance shut down");
}

/* A new config that fails anywhere changes nothing: every failure kind, with a
 * valid change (s1 relabelled), a removal (s2) and an addition (s3) before it. */
Test(suppliers, apply_is_all_or_nothing)
{
    ph_suppliers *s = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_suppliers_create(&lg, &s, &err), PH_OK);
    ph_kv orig[] = {KV("label", "original")};
    ph_supplier_conf v1[] = {
        supplier("s1", "good", 1, 0, orig, NKV(orig)),
        supplier("s2", "good", 1, 0, NULL, 0),
    };
    ph_config c1 = config_of(v1, NKV(v1));
    cr_assert_eq(ph_suppliers_apply(s, &c1, &err), PH_OK, "%s", err.msg);
    void *i1 = instance_of(s, "s1"), *i2 = instance_of(s, "s2");
    ph_supplier_info before[4], after[4];
    cr_assert_eq(ph_suppliers_list(s, before, 4), 2);

    ph_kv changed[] = {KV("label", "changed")};
    ph_kv badkey[] = {KV("lable", "x")};
    ph_kv badint[] = {KV("limit", "ten")};
    static const struct {
        const char *plugin; /* of the failing supplier s4 */
        int bad_config;     /* 0: none, 1: unknown key, 2: bad int */
        int code;
        const char *says;
    } cases[] = {
        {"wrong_major", 0, PH_EVERSION, "supplier 's4': plugin 'wrong_major' ("},
        {"newer_minor", 0, PH_EVERSION, "is built for SDK ABI 1.99; this perkhubd provides 1.4"},
        {"recharge_no_query", 0, PH_EINVAL, "supplier 's4': plugin 'recharge_no_query' ("},
        {"missing_symbol", 0, PH_EINVAL, "supplier 's4': plugin 'missing_symbol' ("},
        {"init_fails", 0, PH_EINVAL, "supplier 's4': plugin 'init_fails' init failed (config): "},
        {"name_mismatch", 0, PH_EINVAL, "supplier 's4': plugin file 'name_mismatch'"},
        {"no_such_plugin", 0, PH_ENOTFOUND, "supplier 's4': plugin 'no_such_plugin' ("},
        {"needs_config", 0, PH_EINVAL, "supplier 's4': config key 'api_key' is required"},
        {"good", 1, PH_EINVAL, "supplier 's4': config key 'lable' is not known to plugin 'good'"},
        {"good", 2, PH_EINVAL, "supplier 's4': config key 'limit': expected an integer"},
    };
    for (size_t i = 0; i < NKV(cases); i++) {
        ph_kv *kv = cases[i].bad_config == 1 ? badkey : cases[i].bad_config == 2 ? badint : NULL;
        ph_supplier_conf v2[] = {
            supplier("s1", "good", 1, 0, changed, NKV(changed)),
            supplier("s3", "good", 1, 0, NULL, 0),
            supplier("s4", cases[i].plugin, 1, 0, kv, kv ? 1 : 0),
        };
        v2[2].required = 1; /* a required supplier that cannot start fails the apply */
        ph_config c2 = config_of(v2, NKV(v2));
        memset(&err, 0, sizeof err);
        int rc = ph_suppliers_apply(s, &c2, &err);
        cr_assert_eq(rc, cases[i].code, "%s: rc %d (%s)", cases[i].plugin, rc, err.msg);
        cr_assert(strstr(err.msg, cases[i].says), "%s: \"%s\"", cases[i].plugin, err.msg);

        /* the old set is fully in force */
        cr_assert_eq(ph_suppliers_list(s, after, 4), 2);
        cr_assert_eq(memcmp(before, after, sizeof(ph_supplier_info) * 2), 0);
        cr_assert_eq(instance_of(s, "s1"), i1);
        cr_assert_eq(instance_of(s, "s2"), i2);
        ph_supplier *sup = NULL;
        cr_assert_eq(ph_suppliers_acquire(s, "s3", &sup), PH_ENOTFOUND);
    }
    /* the running instances never stopped; what the failed applies started, they stopped */
    cr_assert_eq(log_count("msg=plugin.shutdown", "label=original", NULL), 0, "%s", log_text());
    cr_assert_eq(log_count("msg=plugin.shutdown supplier=s2", NULL, NULL), 0);
    cr_assert_eq(log_count("msg=plugin.init supplier=s1", "label=changed", NULL), NKV(cases));
    cr_assert_eq(log_count("msg=plugin.shutdown supplier=s1", "label=changed", NULL), NKV(cases));
    cr_assert_eq(log_count("msg=plugin.init supplier=s3", NULL, NULL),
                 log_count("msg=plugin.shutdown supplier=s3", NULL, NULL));
    cr_assert_eq(log_count("suppliers.apply_failed", NULL, NULL), NKV(cases));

    /* and the same change without the bad supplier goes through */
    ph_supplier_conf v3[] = {
        supplier("s1", "good", 1, 0, changed, NKV(changed)),
        supplier("s3", "good", 1, 0, NULL, 0),
    };
    ph_config c3 = config_of(v3, NKV(v3));
    cr_assert_eq(ph_suppliers_apply(s, &c3, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(log_count("msg=plugin.shutdown supplier=s1", "label=original", NULL), 1);
    cr_assert_eq(log_count("msg=plugin.shutdown supplier=s2", NULL, NULL), 1);
    cr_assert_eq(log_count("suppliers.applied", "started=2 kept=0 stopped=2", NULL), 1, "%s",
                 log_text());
    ph_suppliers_destroy(s);
}

Test(suppliers, duplicate_id_and_no_plugin_dir)
{
    ph_suppliers *s = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_suppliers_create(&lg, &s, &err), PH_OK);
    ph_supplier_conf v[] = {
        supplier("s1", "good", 1, 0, NULL, 0),
        supplier("s1", "good", 1, 0, NULL, 0),
    };
    ph_config c = config_of(v, NKV(v));
    cr_assert_eq(ph_suppliers_apply(s, &c, &err), PH_EINVAL);
    cr_assert_str_eq(err.msg, "supplier 's1' is configured twice");
    c.nsuppliers = 1;
    c.plugin_dir = NULL;
    v[0].required = 1;
    cr_assert_eq(ph_suppliers_apply(s, &c, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "supplier 's1': plugin 'good': no plugin directory configured"), "%s",
              err.msg);
    cr_assert_eq(ph_suppliers_list(s, NULL, 0), 0);
    cr_assert_eq(log_count("msg=plugin.init", NULL, NULL), 0);
    ph_suppliers_destroy(s);
}

/* A supplier that cannot start and is not required: the apply goes through
 * with it in state error (why in its listing; acquire refuses it, so routing
 * skips it), and the next apply that fixes it starts it. A running supplier
 * whose new config cannot start is not taken down: that apply fails. */
Test(suppliers, failing_supplier_is_error_not_fatal)
{
    ph_suppliers *s = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_suppliers_create(&lg, &s, &err), PH_OK);
    ph_kv badkey[] = {KV("lable", "x")}, unset[] = {KV("api_key", "env:PH_TEST_UNSET_VAR_9")};
    unsetenv("PH_TEST_UNSET_VAR_9");
    ph_supplier_conf v[] = {
        supplier("ok", "good", 1, 0, NULL, 0),
        supplier("nofile", "no_such_plugin", 1, 0, NULL, 0),
        supplier("typo", "good", 1, 0, badkey, NKV(badkey)),
        supplier("env", "needs_config", 1, 0, unset, NKV(unset)),
    };
    ph_config c = config_of(v, NKV(v));
    cr_assert_eq(ph_suppliers_apply(s, &c, &err), PH_OK, "%s", err.msg);
    ph_supplier_info info[4];
    cr_assert_eq(ph_suppliers_list(s, info, 4), 4);
    static const char *const says[] = {"", "plugin 'no_such_plugin' (",
                                       "config key 'lable' is not known",
                                       "environment variable PH_TEST_UNSET_VAR_9 is not set"};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_str_eq(info[i].id, v[i].id);
        cr_assert_str_eq(info[i].state, i ? PH_SUPPLIER_ERROR : PH_SUPPLIER_READY, "%s",
                         info[i].id);
        cr_assert(strstr(info[i].error, says[i]), "%s: \"%s\"", info[i].id, info[i].error);
        ph_supplier *sup = NULL;
        cr_assert_eq(ph_suppliers_acquire(s, v[i].id, &sup), i ? PH_ESTATE : PH_OK);
        ph_supplier_release(sup);
    }
    cr_assert_eq(log_count("supplier.start_failed", NULL, NULL), 3, "%s", log_text());
    cr_assert_eq(log_count("suppliers.applied", "failed=3", NULL), 1, "%s", log_text());

    /* fixed: the next apply starts it */
    setenv("PH_TEST_UNSET_VAR_9", "0123456789", 1);
    cr_assert_eq(ph_suppliers_apply(s, &c, &err), PH_OK, "%s", err.msg);
    ph_supplier *sup = NULL;
    cr_assert_eq(ph_suppliers_acquire(s, "env", &sup), PH_OK);
    ph_supplier_release(sup);

    /* a running supplier broken by a reload keeps running: the apply fails */
    unsetenv("PH_TEST_UNSET_VAR_9");
    void *before = instance_of(s, "env");
    cr_assert_eq(ph_suppliers_apply(s, &c, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "supplier 'env' runs, and its new configuration cannot start"), "%s",
              err.msg);
    cr_assert_eq(instance_of(s, "env"), before);
    ph_suppliers_destroy(s);
}

/* --check-config's path: every problem of every supplier, several per supplier. */
static void collect(void *arg, const ph_supplier_conf *sc, const char *problem)
{
    (void)sc;
    char *buf = arg;
    strncat(buf, problem, 4096 - strlen(buf) - 2);
    strcat(buf, "\n");
}

Test(suppliers, check_reports_every_problem)
{
    ph_kv bad[] = {KV("lable", "x"), KV("limit", "ten")};
    ph_supplier_conf v[] = {
        supplier("ok", "good", 1, 0, NULL, 0),
        supplier("typo", "good", 1, 0, bad, NKV(bad)),
        supplier("nofile", "no_such_plugin", 1, 0, NULL, 0),
    };
    ph_config c = config_of(v, NKV(v));
    char got[4096] = "";
    size_t failed = 0;
    ph_err err = {0};
    cr_assert_eq(ph_suppliers_check(&c, &lg, collect, got, &failed, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(failed, 2);
    cr_assert(strstr(got, "suppliers[1].config.lable: supplier 'typo': config key 'lable'"), "%s",
              got);
    cr_assert(strstr(got, "suppliers[1].config.limit: supplier 'typo': config key 'limit'"), "%s",
              got);
    cr_assert(strstr(got, "suppliers[2].plugin: supplier 'nofile': plugin 'no_such_plugin'"), "%s",
              got);
    /* what it started, it stopped */
    cr_assert_eq(log_count("msg=plugin.init supplier=ok", NULL, NULL),
                 log_count("msg=plugin.shutdown supplier=ok", NULL, NULL));
    v[2].required = 1;
    got[0] = 0;
    cr_assert_eq(ph_suppliers_check(&c, &lg, collect, got, &failed, &err), PH_ENOTFOUND);
    cr_assert(strstr(err.msg, "supplier 'nofile' is required and cannot start"), "%s", err.msg);
    cr_assert(strstr(got, "config key 'limit'"), "every problem still reported: %s", got);
}

/* A secret file is read only when it is a regular file of mode 0600 or
 * stricter: group- or world-readable, or a directory, is refused naming the
 * file and its mode, never its content. */
Test(loader, secret_file_mode_and_kind)
{
    char path[] = "/tmp/ph-test-secret-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "s3cr3t\n", 7), 7);
    close(fd);
    char ref[64];
    snprintf(ref, sizeof ref, "file:%s", path);
    ph_plugin *p = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_plugin_open(fixture_dir(), "needs_config", &p, &err), PH_OK, "%s", err.msg);
    ph_kv kv[] = {KV("api_key", ref)};
    ph_plugin_conf *conf = NULL;
    static const struct {
        mode_t mode;
        int rc;
    } cases[] = {{0600, PH_OK},     {0400, PH_OK},     {0640, PH_EINVAL},
                 {0644, PH_EINVAL}, {0604, PH_EINVAL}, {0620, PH_EINVAL}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(chmod(path, cases[i].mode), 0);
        int rc = ph_plugin_conf_resolve(p, "acme", kv, NKV(kv), &conf, &err);
        cr_assert_eq(rc, cases[i].rc, "mode %04o: %s", (unsigned)cases[i].mode, err.msg);
        if (rc == PH_OK) {
            ph_plugin_conf_free(conf);
            continue;
        }
        char says[64];
        snprintf(says, sizeof says, "is mode %04o: others than its owner", (unsigned)cases[i].mode);
        cr_assert(strstr(err.msg, says) && strstr(err.msg, path), "%s", err.msg);
        cr_assert_null(strstr(err.msg, "s3cr3t"));
    }
    unlink(path);
    ph_kv dir[] = {KV("api_key", "file:/tmp")};
    cr_assert_eq(ph_plugin_conf_resolve(p, "acme", dir, NKV(dir), &conf, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "secret file /tmp is not a regular file"), "%s", err.msg);
    ph_plugin_close(p);
}

/* A reference taken before a reload keeps the instance alive after it. */
Test(suppliers, references_outlive_reload)
{
    ph_suppliers *s = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_suppliers_create(&lg, &s, &err), PH_OK);
    ph_supplier_conf v[] = {supplier("s1", "good", 1, 0, NULL, 0)};
    ph_config c = config_of(v, NKV(v));
    cr_assert_eq(ph_suppliers_apply(s, &c, &err), PH_OK, "%s", err.msg);
    ph_supplier *sup = NULL;
    cr_assert_eq(ph_suppliers_acquire(s, "s1", &sup), PH_OK);
    cr_assert_str_eq(ph_supplier_id(sup), "s1");
    cr_assert_str_eq(ph_supplier_plugin(sup)->name, "good");

    c.nsuppliers = 0; /* remove s1 */
    cr_assert_eq(ph_suppliers_apply(s, &c, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ph_suppliers_list(s, NULL, 0), 0);
    cr_assert_eq(log_count("msg=plugin.shutdown", NULL, NULL), 0, "still referenced");
    const struct perkhub_host *h = ph_supplier_host(sup);
    void *blk = h->mem_alloc(h, 8); /* the instance is still fully usable */
    cr_assert_not_null(blk);
    h->mem_free(h, blk);
    ph_suppliers_destroy(s);
    cr_assert_eq(log_count("msg=plugin.shutdown", NULL, NULL), 0, "destroy keeps it too");
    ph_supplier_release(sup);
    cr_assert_eq(log_count("msg=plugin.shutdown supplier=s1", NULL, NULL), 1);
    cr_assert_eq(log_count("msg=supplier.stopped supplier=s1", NULL, NULL), 1);
}

/* HTTP threads list and acquire while the main thread reloads. Criterion asserts
 * belong to the test's thread, so readers count anomalies for it to check. */
static atomic_int stop_readers;
static atomic_int reader_anomalies;

static void *reader(void *arg)
{
    ph_suppliers *s = arg;
    ph_supplier_info info[4];
    long rounds = 0;
    while (!atomic_load(&stop_readers) || rounds < 100) {
        size_t n = ph_suppliers_list(s, info, 4);
        if (n > 2)
            atomic_fetch_add(&reader_anomalies, 1);
        for (size_t i = 0; i < n && i < 4; i++)
            if (strcmp(info[i].state, "ready") != 0 && strcmp(info[i].state, "disabled") != 0)
                atomic_fetch_add(&reader_anomalies, 1);
        ph_supplier *sup = NULL;
        if (ph_suppliers_acquire(s, "s1", &sup) == PH_OK) {
            if (strcmp(ph_supplier_id(sup), "s1") != 0 || !ph_supplier_instance(sup))
                atomic_fetch_add(&reader_anomalies, 1);
            ph_supplier_release(sup);
        }
        rounds++;
    }
    return NULL;
}

Test(suppliers, concurrent_list_during_apply)
{
    ph_suppliers *s = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_suppliers_create(&lg, &s, &err), PH_OK);
    lg.level = PH_LOG_ERROR; /* keep the memfd small */
    pthread_t t[2];
    atomic_store(&stop_readers, 0);
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, reader, s);
    ph_kv a[] = {KV("label", "a")}, b[] = {KV("label", "b")};
    for (int round = 0; round < 200; round++) {
        ph_supplier_conf v[] = {
            supplier("s1", "good", round % 3 != 2, 0, round % 2 ? a : b, 1),
            supplier("s2", "good", 1, round % 5, NULL, 0),
        };
        ph_config c = config_of(v, NKV(v));
        cr_assert_eq(ph_suppliers_apply(s, &c, &err), PH_OK, "%s", err.msg);
    }
    atomic_store(&stop_readers, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(atomic_load(&reader_anomalies), 0);
    ph_suppliers_destroy(s);
}

/* The last reference dropped on another thread (the writer finishing an
 * attempt, the I/O thread, an HTTP thread) must not run the plugin's shutdown
 * and dlclose there: the plugin waits for the main thread's reap, and the wake
 * function says so. */
static atomic_int wakes;

static void count_wake(void *arg)
{
    (void)arg;
    atomic_fetch_add(&wakes, 1);
}

static void *release_elsewhere(void *sup)
{
    ph_supplier_release(sup);
    return NULL;
}

/* s1 running, referenced only by the returned reference (the set dropped it). */
static ph_supplier *orphan_s1(ph_suppliers **s)
{
    ph_err err = {0};
    cr_assert_eq(ph_suppliers_create(&lg, s, &err), PH_OK);
    ph_supplier_conf v[] = {supplier("s1", "good", 1, 0, NULL, 0)};
    ph_config c = config_of(v, NKV(v));
    cr_assert_eq(ph_suppliers_apply(*s, &c, &err), PH_OK, "%s", err.msg);
    ph_supplier *sup = NULL;
    cr_assert_eq(ph_suppliers_acquire(*s, "s1", &sup), PH_OK);
    c.nsuppliers = 0;
    cr_assert_eq(ph_suppliers_apply(*s, &c, &err), PH_OK, "%s", err.msg);
    return sup;
}

Test(suppliers, last_release_off_main_thread_waits_for_reap)
{
    ph_suppliers *s = NULL;
    ph_supplier *sup = orphan_s1(&s);
    atomic_store(&wakes, 0);
    ph_suppliers_set_wake(s, count_wake, NULL);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, release_elsewhere, sup), 0);
    pthread_join(t, NULL);
    cr_assert_eq(log_count("msg=plugin.shutdown supplier=s1", NULL, NULL), 0,
                 "the plugin was shut down on the releasing thread");
    cr_assert_eq(atomic_load(&wakes), 1, "the main thread was not told");
    cr_assert_eq(ph_suppliers_reap(s), 1);
    cr_assert_eq(log_count("msg=plugin.shutdown supplier=s1", NULL, NULL), 1);
    cr_assert_eq(log_count("msg=supplier.stopped supplier=s1", NULL, NULL), 1);
    cr_assert_eq(ph_suppliers_reap(s), 0, "reaped twice");
    ph_suppliers_destroy(s);
    cr_assert_eq(log_count("msg=plugin.shutdown supplier=s1", NULL, NULL), 1);
}

/* Without a wake function, destroy still stops what waits for the reaper. */
Test(suppliers, destroy_reaps_what_waits)
{
    ph_suppliers *s = NULL;
    ph_supplier *sup = orphan_s1(&s);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, release_elsewhere, sup), 0);
    pthread_join(t, NULL);
    cr_assert_eq(log_count("msg=plugin.shutdown supplier=s1", NULL, NULL), 0);
    ph_suppliers_destroy(s);
    cr_assert_eq(log_count("msg=plugin.shutdown supplier=s1", NULL, NULL), 1);
    cr_assert_eq(log_count("msg=supplier.stopped supplier=s1", NULL, NULL), 1);
}
