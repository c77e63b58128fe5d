/*
 * test_plugin_text.c — the host table's text helpers of ABI 1.4 (form_encode,
 * kv_parse, url_decode, hex_encode, hex_decode, perkhub_kv_get), called as a
 * plugin calls them: through the host table of a started instance, so their
 * blocks are the instance's (every test ends with no block held).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/status.h"
#include "supply/plugin_loader.h"

static int text_init(const struct perkhub_host *host, const struct perkhub_config *config,
                     void **instance, char *errbuf, size_t errlen)
{
    (void)host, (void)config, (void)errbuf, (void)errlen;
    *instance = NULL;
    return PERKHUB_OK;
}

static void text_shutdown(void *instance)
{
    (void)instance;
}

static ph_logger lg;
static ph_plugin *plugin;
static ph_plugin_instance *inst;
static const struct perkhub_host *h;

static void setup(void)
{
    static const struct perkhub_plugin d = {.struct_size = sizeof d,
                                            .abi_major = PERKHUB_ABI_MAJOR,
                                            .abi_minor = PERKHUB_ABI_MINOR,
                                            .name = "text",
                                            .version = "0.0.1",
                                            .init = text_init,
                                            .shutdown = text_shutdown};
    ph_err err = {0};
    lg.level = PH_LOG_DEBUG;
    lg.fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    cr_assert_eq(ph_plugin_wrap(&d, "text", &plugin, &err), PH_OK, "%s", err.msg);
    ph_plugin_conf *conf = NULL;
    cr_assert_eq(ph_plugin_conf_resolve_plain(plugin, "t", NULL, 0, &conf, &err), PH_OK, "%s",
                 err.msg);
    cr_assert_eq(ph_plugin_start(plugin, "t", conf, &lg, &inst, &err), PH_OK, "%s", err.msg);
    h = ph_plugin_instance_host(inst);
}

static void teardown(void)
{
    cr_assert_eq(ph_plugin_instance_blocks(inst), 0, "a helper left a block behind");
    ph_plugin_stop(inst);
    ph_plugin_close(plugin);
    close(lg.fd);
}

TestSuite(plugin_text, .init = setup, .fini = teardown);

Test(plugin_text, the_table_is_1_4)
{
    cr_assert_eq(h->abi_minor, 4);
    cr_assert(h->form_encode && h->kv_parse && h->url_decode && h->hex_encode && h->hex_decode);
}

Test(plugin_text, form_encode)
{
    static const char *const kv[] = {"b", "2 +/", "a", "x&y=z", "c", "", "a", "first?", NULL};
    static const struct {
        unsigned flags;
        const char *want;
    } cases[] = {
        {0, "b=2%20%2B%2F&a=x%26y%3Dz&c=&a=first%3F"},
        {PERKHUB_FORM_SORTED, "a=x%26y%3Dz&a=first%3F&b=2%20%2B%2F&c="},
        {PERKHUB_FORM_SORTED | PERKHUB_FORM_RAW | PERKHUB_FORM_SKIP_EMPTY,
         "a=x&y=z&a=first?&b=2 +/"},
        {PERKHUB_FORM_RAW, "b=2 +/&a=x&y=z&c=&a=first?"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *s = h->form_encode(h, kv, cases[i].flags);
        cr_assert_str_eq(s, cases[i].want, "flags %u", cases[i].flags);
        h->mem_free(h, s);
    }
    static const char *const none[] = {NULL};
    char *s = h->form_encode(h, none, PERKHUB_FORM_SORTED);
    cr_assert_str_eq(s, "");
    h->mem_free(h, s);
    cr_assert_null(h->form_encode(h, NULL, 0));
}

Test(plugin_text, kv_parse_form_and_plain)
{
    char **kv = NULL;
    size_t n = 0;
    const char *form = "a=1&b=x%20y+z&&empty=&flag&c=%E4%B8%AD&";
    cr_assert_eq(h->kv_parse(h, form, strlen(form), '&', 1, &kv, &n), PERKHUB_OK);
    cr_assert_eq(n, 5);
    const char *const *r = (const char *const *)kv;
    cr_assert_str_eq(perkhub_kv_get(r, "a"), "1");
    cr_assert_str_eq(perkhub_kv_get(r, "b"), "x y z");
    cr_assert_str_eq(perkhub_kv_get(r, "empty"), "");
    cr_assert_str_eq(perkhub_kv_get(r, "flag"), "");
    cr_assert_str_eq(perkhub_kv_get(r, "c"), "\xe4\xb8\xad");
    cr_assert_null(perkhub_kv_get(r, "missing"));
    cr_assert_null(kv[10]);
    h->mem_free(h, kv);

    /* raw, another separator, only len bytes read */
    const char *plain = "k=a+b%41;v=2;rest=ignored";
    cr_assert_eq(h->kv_parse(h, plain, 7, ';', 0, &kv, &n), PERKHUB_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(perkhub_kv_get((const char *const *)kv, "k"), "a+b%4");
    h->mem_free(h, kv);
}

Test(plugin_text, kv_parse_refusals)
{
    static const char *const bad[] = {"=1", "a=%4", "a=%zz", "a=%00", "a=1&=2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char **kv = (char **)bad; /* must stay untouched */
        cr_assert_eq(h->kv_parse(h, bad[i], strlen(bad[i]), '&', 1, &kv, NULL),
                     PERKHUB_DEFINITE_FAILURE, "%s", bad[i]);
        cr_assert_eq(kv, (char **)bad);
    }
    char **kv = NULL;
    cr_assert_eq(h->kv_parse(h, "a=1\0b=2", 7, '&', 0, &kv, NULL), PERKHUB_DEFINITE_FAILURE);
    cr_assert_eq(h->kv_parse(h, "", 0, '&', 1, &kv, NULL), PERKHUB_OK);
    cr_assert_null(kv[0]);
    h->mem_free(h, kv);
}

Test(plugin_text, url_decode)
{
    char *out = NULL;
    cr_assert_eq(h->url_decode(h, "a+b%2Fc%2f", 10, 1, &out), PERKHUB_OK);
    cr_assert_str_eq(out, "a b/c/");
    h->mem_free(h, out);
    cr_assert_eq(h->url_decode(h, "a+b", 3, 0, &out), PERKHUB_OK);
    cr_assert_str_eq(out, "a+b");
    h->mem_free(h, out);
    static const char *const bad[] = {"%", "%4", "%G0", "x%00y"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(h->url_decode(h, bad[i], strlen(bad[i]), 1, &out), PERKHUB_DEFINITE_FAILURE,
                     "%s", bad[i]);
}

Test(plugin_text, hex_both_ways)
{
    static const uint8_t bytes[] = {0x00, 0x9c, 0xfa, 0xff};
    char *up = h->hex_encode(h, bytes, sizeof bytes, 1), *low = h->hex_encode(h, bytes, 4, 0);
    cr_assert_str_eq(up, "009CFAFF");
    cr_assert_str_eq(low, "009cfaff");
    uint8_t *out = NULL;
    size_t n = 0;
    cr_assert_eq(h->hex_decode(h, up, strlen(up), &out, &n), PERKHUB_OK);
    cr_assert_eq(n, 4);
    cr_assert_eq(memcmp(out, bytes, 4), 0);
    h->mem_free(h, out);
    h->mem_free(h, up);
    h->mem_free(h, low);
    cr_assert_eq(h->hex_decode(h, "abc", 3, &out, &n), PERKHUB_DEFINITE_FAILURE);
    cr_assert_eq(h->hex_decode(h, "zz", 2, &out, &n), PERKHUB_DEFINITE_FAILURE);
    char *empty = h->hex_encode(h, NULL, 0, 1);
    cr_assert_str_eq(empty, "");
    h->mem_free(h, empty);
}
