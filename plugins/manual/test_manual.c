/*
 * test_manual.c — the manual plugin through the SDK test kit
 * (<perkhub/testkit.h>): manual.c is compiled into this binary and runs
 * against the core's real host table, allocator accounting and log format, with
 * no daemon and no dlopen.
 */
#include <criterion/criterion.h>
#include <string.h>

#include <perkhub/plugin.h>
#include <perkhub/testkit.h>

/* The descriptor as perkhubd reads it: the loader's checks pass and it offers
 * no supplier operation, so it needs no ops table. */
Test(manual, descriptor)
{
    const struct perkhub_plugin *d = perkhub_plugin_entry();
    cr_assert_eq(perkhub_plugin_entry(), d, "entry must return the same descriptor every time");
    const struct phtk_descriptor_want want = {
        .name = "manual",
        .abi_major = PERKHUB_ABI_MAJOR,
        .abi_minor = PERKHUB_ABI_MINOR,
        .capabilities = 0,
    };
    char err[256];
    cr_assert_eq(phtk_expect_descriptor(d, &want, err, sizeof err), 0, "%s", err);

    /* The schema: exactly one key, greeting, a string defaulting to "hello". */
    const struct perkhub_config_key *k = d->config;
    cr_assert_str_eq(k[0].key, "greeting");
    cr_assert_eq(k[0].type, PERKHUB_CONF_STRING);
    cr_assert_str_eq(k[0].default_value, "hello");
    cr_assert_eq(k[0].required, 0);
    cr_assert_not_null(k[0].description);
    cr_assert_null(k[1].key, "the schema ends after greeting");
}

/* init and shutdown, table-driven over configs: the log line init writes, and
 * every host block given back by shutdown. */
Test(manual, lifecycle)
{
    static const char *const none[] = {NULL};
    static const char *const hi[] = {"greeting", "hi", NULL};
    static const struct {
        const char *name;
        const char *const *kv;
        const char *logged;
    } cases[] = {
        {"default greeting", none, "msg=plugin.init supplier=test plugin=manual greeting=hello"},
        {"configured greeting", hi, "msg=plugin.init supplier=test plugin=manual greeting=hi"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256] = "";
        phtk *tk = phtk_open(perkhub_plugin_entry(), cases[i].kv, err, sizeof err);
        cr_assert_not_null(tk, "%s: %s", cases[i].name, err);
        cr_assert_not_null(phtk_instance(tk), "%s", cases[i].name);
        cr_assert_gt(phtk_blocks(tk), 0, "%s: the instance lives in host memory", cases[i].name);
        cr_assert(strstr(phtk_log(tk), cases[i].logged), "%s: log \"%s\"", cases[i].name,
                  phtk_log(tk));
        phtk_close(tk); /* a block left behind would be logged as plugin.leak */
    }
}

/* An empty greeting is refused by init, naming the key. */
Test(manual, empty_greeting_refused)
{
    static const char *const empty[] = {"greeting", "", NULL};
    char err[256];
    cr_assert_eq(
        phtk_expect_refused(perkhub_plugin_entry(), empty, "greeting", NULL, err, sizeof err), 0,
        "%s", err);
}

/* Two suppliers on one plugin: two independent instances (no global state),
 * each logging through its own host. */
Test(manual, instances_are_independent)
{
    static const char *const a_kv[] = {"greeting", "a", NULL};
    static const char *const b_kv[] = {"greeting", "b", NULL};
    char err[256] = "";
    phtk *a = phtk_open(perkhub_plugin_entry(), a_kv, err, sizeof err);
    cr_assert_not_null(a, "%s", err);
    phtk *b = phtk_open(perkhub_plugin_entry(), b_kv, err, sizeof err);
    cr_assert_not_null(b, "%s", err);
    cr_assert_neq(phtk_instance(a), phtk_instance(b));
    cr_assert(strstr(phtk_log(a), "greeting=a") && !strstr(phtk_log(a), "greeting=b"));
    cr_assert(strstr(phtk_log(b), "greeting=b") && !strstr(phtk_log(b), "greeting=a"));
    phtk_close(a);
    phtk_close(b);
}

/* The conformance suite has nothing to sweep in a plugin without operations,
 * but still opens it with its config, scans its log for the canary and counts
 * its blocks: it passes. */
static const char *const suite_kv[] = {"greeting", "hello-canary", NULL};
static const char *const suite_canaries[] = {"not-in-any-log", NULL};
PHTK_CONFORMANCE(manual, ((struct phtk_suite){.config = suite_kv, .canaries = suite_canaries}))
