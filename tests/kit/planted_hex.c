/*
 * planted_hex.c — the example adapter with the first bug of issue 17 planted:
 * its request signature in lower-case hex where the protocol wants upper case.
 * The supplier refuses every order as badly signed (a definite failure), so
 * every order fails over while the supplier still looks healthy. Nothing in
 * the plugin's own unit tests noticed; the suite's request vectors must.
 */
#include <ctype.h>

#define perkhub_plugin_entry example_plugin_entry
#include "example.c"
#undef perkhub_plugin_entry

const char *const planted_expect[] = {"signatures: vector #0 (recharge)", NULL};

static int planted_build(void *instance, const struct perkhub_op *op, struct perkhub_request *req)
{
    int st = example_build(instance, op, req);
    char *s = req->body ? strstr(req->body, "sign=") : NULL;
    for (s = s ? s + 5 : NULL; s && *s && *s != '&'; s++)
        *s = (char)tolower((unsigned char)*s);
    return st;
}

static const struct perkhub_ops planted_ops = {
    .struct_size = sizeof(struct perkhub_ops),
    .build_request = planted_build,
    .parse_response = example_parse,
    .verify_callback = example_verify,
};

static const struct perkhub_plugin planted_plugin = {
    .struct_size = sizeof(struct perkhub_plugin),
    .abi_major = PERKHUB_ABI_MAJOR,
    .abi_minor = PERKHUB_ABI_MINOR,
    .name = "example",
    .version = "0.0.1",
    .description = "The example adapter with lower-case request signatures (a planted bug).",
    .capabilities = PERKHUB_CAP_CARD_ORDER | PERKHUB_CAP_RECHARGE | PERKHUB_CAP_ORDER_QUERY |
                    PERKHUB_CAP_CALLBACK | PERKHUB_CAP_BALANCE,
    .config = example_config,
    .init = example_init,
    .shutdown = example_shutdown,
    .ops = &planted_ops,
};

const struct perkhub_plugin *perkhub_plugin_entry(void)
{
    return &planted_plugin;
}
