/*
 * planted_sloppy.c — the example adapter with three more classic mistakes
 * planted, one per remaining check of the suite: it logs its signing key
 * (secrets), keeps a host block per reply it reads (memory), and takes a
 * notify's signature without checking it (it re-signs whatever came, as a
 * plugin comparing against a signature computed over the wrong text would
 * accept anything). The suite's canary scan, allocator check and single-field
 * alterations must catch each.
 */
#define perkhub_plugin_entry example_plugin_entry
#include "example.c"
#undef perkhub_plugin_entry

const char *const planted_expect[] = {
    "secrets: recharge #0 unknown-code reply: a log line quotes a secret",
    "memory: recharge #0 unknown-code reply: the instance holds 2 host blocks",
    "signatures: callback #0 with body field 'state' altered: verified", NULL};

static int planted_parse(void *instance, const struct perkhub_op *op,
                         const struct perkhub_response *resp, struct perkhub_result *res)
{
    struct example *ex = instance;
    ex->host->log_msg(ex->host, PERKHUB_LOG_DEBUG, "debug", "key=%s", ex->key);
    (void)ex->host->mem_strdup(ex->host, "kept across calls");
    return example_parse(instance, op, resp, res);
}

static int planted_verify(void *instance, const struct perkhub_callback *cb,
                          struct perkhub_result *res)
{
    struct example *ex = instance;
    const struct perkhub_host *h = ex->host;
    char **kv = NULL;
    if (h->kv_parse(h, cb->body, cb->body_len, '&', 1, &kv, NULL) != PERKHUB_OK)
        return example_verify(instance, cb, res);
    for (size_t i = 0; kv[i]; i += 2)
        if (strcmp(kv[i], "sign") == 0)
            kv[i + 1] = "";
    char *sign = sign_of(ex, (const char *const *)kv);
    for (size_t i = 0; kv[i]; i += 2)
        if (strcmp(kv[i], "sign") == 0)
            kv[i + 1] = sign;
    char *body = h->form_encode(h, (const char *const *)kv, 0);
    struct perkhub_callback c = *cb;
    c.body = body ? body : "";
    c.body_len = body ? strlen(body) : 0;
    int st = example_verify(instance, &c, res);
    h->mem_free(h, body);
    h->mem_free(h, sign);
    h->mem_free(h, kv);
    return st;
}

static const struct perkhub_ops planted_ops = {
    .struct_size = sizeof(struct perkhub_ops),
    .build_request = example_build,
    .parse_response = planted_parse,
    .verify_callback = planted_verify,
};

static const struct perkhub_plugin planted_plugin = {
    .struct_size = sizeof(struct perkhub_plugin),
    .abi_major = PERKHUB_ABI_MAJOR,
    .abi_minor = PERKHUB_ABI_MINOR,
    .name = "example",
    .version = "0.0.1",
    .description = "The example adapter logging its key, leaking, not checking signatures.",
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
