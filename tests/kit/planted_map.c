/*
 * planted_map.c — the example adapter with the second bug of issue 17
 * planted: an answer it does not understand (an unknown reply code, a body
 * cut short) read as a definite failure, and a query's "no such order" read
 * as FAILED. Both tell the core the order was not performed when it may have
 * been: a failover then recharges twice. The suite's ambiguity sweep and its
 * required not-found fixture must catch it.
 */
#define perkhub_plugin_entry example_plugin_entry
#include "example.c"
#undef perkhub_plugin_entry

const char *const planted_expect[] = {"ambiguity: recharge #0 unknown-code reply",
                                      "queries: the not-found reply read as failed", NULL};

static int planted_parse(void *instance, const struct perkhub_op *op,
                         const struct perkhub_response *resp, struct perkhub_result *res)
{
    int st = example_parse(instance, op, resp, res);
    if (st == PERKHUB_AMBIGUOUS)
        st = PERKHUB_DEFINITE_FAILURE;
    if (st == PERKHUB_OK && res->state == PERKHUB_STATE_NOT_FOUND)
        res->state = PERKHUB_STATE_FAILED;
    return st;
}

static const struct perkhub_ops planted_ops = {
    .struct_size = sizeof(struct perkhub_ops),
    .build_request = example_build,
    .parse_response = planted_parse,
    .verify_callback = example_verify,
};

static const struct perkhub_plugin planted_plugin = {
    .struct_size = sizeof(struct perkhub_plugin),
    .abi_major = PERKHUB_ABI_MAJOR,
    .abi_minor = PERKHUB_ABI_MINOR,
    .name = "example",
    .version = "0.0.1",
    .description = "The example adapter mapping unknown answers to failures (a planted bug).",
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
