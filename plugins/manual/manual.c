/*
 * manual.c — the supplier without an API: its card codes reach perkhub by
 * import only (perkctl import, POST /v1/stock/import), so the plugin offers
 * no operation (capabilities 0) and perkhubd never calls it after init. A
 * supplier that emails a CSV of codes is configured with it; so is the
 * standard supplier `acme` of the end-to-end tests and benches. Its one config
 * key, greeting, is logged at start (the config path's smallest real use).
 * To write an adapter for a supplier with an API, start from plugins/example
 * (tools/new-plugin NAME).
 */
#include <stdio.h>
#include <string.h>

#include <perkhub/plugin.h>

/* (1) One instance per configured supplier. Two suppliers using this plugin get
 * two instances: that is why nothing below is `static` and mutable. */
struct manual {
    const struct perkhub_host *host; /* valid until shutdown returns */
    char *greeting;                  /* our own copy, from host->mem_strdup */
};

/* (2) The config schema. The core checks a supplier's config against it before
 * init: unknown keys, missing required keys and wrong types never reach us, and
 * defaults are already applied. Descriptions are printed for ops: write for them. */
static const struct perkhub_config_key manual_config[] = {
    {
        .key = "greeting",
        .type = PERKHUB_CONF_STRING,
        .default_value = "hello",
        .description = "The word the manual plugin logs when it starts.",
    },
    {.key = NULL}, /* end of the table */
};

/* (3) init: one supplier's instance. The host table pointer is ours to keep
 * until shutdown returns. On failure we free what we took and explain in errbuf
 * (naming the key; never quoting a secret). */
static int manual_init(const struct perkhub_host *host, const struct perkhub_config *config,
                       void **instance, char *errbuf, size_t errlen)
{
    /* Config strings belong to the core and live until shutdown, so keeping the
     * pointer would be fine; we copy to show the host allocator at work. */
    const char *greeting = host->config_string(host, config, "greeting");
    if (!greeting || !*greeting) {
        /* Reachable only with `greeting: ""`: the default covers absence. */
        snprintf(errbuf, errlen, "config key 'greeting' must not be empty");
        return PERKHUB_ERR_CONFIG;
    }

    /* Memory that outlives this call comes from the host (zeroed), never malloc. */
    struct manual *ex = host->mem_alloc(host, sizeof *ex);
    if (!ex)
        return PERKHUB_ERR_NOMEM;
    ex->host = host;
    ex->greeting = host->mem_strdup(host, greeting);
    if (!ex->greeting) {
        host->mem_free(host, ex);
        return PERKHUB_ERR_NOMEM;
    }

    /* Logged as: msg=plugin.init supplier=<id> plugin=manual greeting=hello */
    host->log_msg(host, PERKHUB_LOG_INFO, "init", "greeting=%s", ex->greeting);
    *instance = ex;
    return PERKHUB_OK;
}

/* (4) shutdown: free everything the instance owns. The host is still usable.
 * Anything left allocated would be reclaimed by the core, and logged as a leak. */
static void manual_shutdown(void *instance)
{
    struct manual *ex = instance;
    const struct perkhub_host *host = ex->host;
    host->log_msg(host, PERKHUB_LOG_INFO, "shutdown", NULL);
    host->mem_free(host, ex->greeting);
    host->mem_free(host, ex);
}

/* (5) The descriptor: constant, with designated initializers. struct_size and
 * the ABI version come from the header we were compiled against, so the core
 * can tell exactly what we were built for. */
static const struct perkhub_plugin manual_plugin = {
    .struct_size = sizeof(struct perkhub_plugin),
    .abi_major = PERKHUB_ABI_MAJOR,
    .abi_minor = PERKHUB_ABI_MINOR,
    .name = "manual", /* the file must be manual.so */
    .version = "1.0.0",
    .description = "Manual supplier: card codes by import only, no API.",
    .capabilities = 0, /* no operations: codes come by import */
    .config = manual_config,
    .init = manual_init,
    .shutdown = manual_shutdown,
    .ops = NULL, /* ABI 1.1 */
};

/* The one exported symbol. No side effects: it only returns the descriptor. */
PERKHUB_EXPORT const struct perkhub_plugin *perkhub_plugin_entry(void)
{
    return &manual_plugin;
}
