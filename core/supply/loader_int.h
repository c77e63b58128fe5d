/*
 * loader_int.h — what plugin_loader.c and plugin_host.c share and nobody else
 * sees: the loaded plugin, its resolved config, the instance with its host
 * table and memory blocks, and the functions one file calls in the other.
 * Not for outside supply/.
 */
#ifndef PH_LOADER_INT_H
#define PH_LOADER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "supply/plugin_loader.h"

/* Limits. SCHEMA_MAX entries mean a missing NULL terminator; a secret file
 * larger than SECRET_FILE_MAX is a mistake. */
#define NAME_MAX_LEN    64
#define SCHEMA_MAX      256
#define SECRET_FILE_MAX 65536
#define INSTANCE_MAGIC  0x50484931u                  /* "PHI1" */
#define BLOCK_MAGIC     UINT64_C(0x706b68626c6f636b) /* "pkhblock" */
#define BLOCK_DEAD      UINT64_C(0x64656164626c6f63) /* freed */

/* The size of the 1.1 operations table: the smallest ops->struct_size accepted. */
#define OPS_SIZE_1_1 (offsetof(struct perkhub_ops, serve_local) + sizeof(void (*)(void)))

/* The capabilities that are answered through build_request/parse_response:
 * every operation the core sends over the I/O engine (docs/sdk.md, the table of
 * capability bits). Each ABI minor that adds such an operation adds its bit
 * here, or a plugin claiming it without those callbacks would load and fail
 * only at its first use (the engine refuses the exchange) instead of being
 * refused at load, naming what it lacks (1.2 STATEMENT, 1.3 REDEMPTION).
 * CALLBACK and LOCAL are served by their own callbacks, checked apart. */
#define CAPS_EXCHANGE                                                                              \
    (PERKHUB_CAP_CATALOG | PERKHUB_CAP_STOCK_CHECK | PERKHUB_CAP_CARD_ORDER |                      \
     PERKHUB_CAP_RECHARGE | PERKHUB_CAP_ORDER_QUERY | PERKHUB_CAP_BALANCE |                        \
     PERKHUB_CAP_STATEMENT | PERKHUB_CAP_REDEMPTION)

struct ph_plugin {
    void *handle;               /* dlopen reference; NULL for a linked-in descriptor */
    char *name;                 /* as requested, equal to desc.name */
    char *path;                 /* "<dir>/<name>.so", or "linked in" (ph_plugin_wrap) */
    struct perkhub_plugin desc; /* the plugin's first struct_size bytes, the rest zero;
                                   desc.ops points at `ops` below when the plugin has one */
    struct perkhub_ops ops;     /* the plugin's first ops->struct_size bytes, the rest zero */
    size_t nkeys;               /* schema entries before the NULL key */
};

typedef struct conf_value {
    const struct perkhub_config_key *schema; /* points into the plugin */
    char *value;                             /* resolved; NULL = unset, no default */
} conf_value;

struct perkhub_config {
    size_t n; /* one value per schema key, in schema order */
    conf_value *v;
};

/* A host allocation: this header, then the plugin's bytes (aligned as malloc's). */
typedef union block {
    struct {
        uint64_t magic;
        union block *prev, *next;
        size_t size;
        struct ph_plugin_instance *owner;
    } h;
    max_align_t align;
} block;

struct ph_plugin_instance {
    struct perkhub_host host; /* must stay first */
    uint32_t magic;
    const ph_logger *lg;
    char *supplier_id;
    const ph_plugin *plugin;
    ph_plugin_conf *conf;
    void *data;
    pthread_mutex_t mem_mu; /* guards the block list and the counters */
    block *blocks;
    size_t nblocks;
    size_t nbytes;
    _Atomic int64_t fixed_now_ms; /* 0: now_ms is the real clock (tests set it) */
    /* hmac_sha256's prepared key: the first key the plugin signs with (its
     * webhook secret, on every callback), made once under mac_mu and then
     * read-only; another key takes ph_hmac_sha256's slower path */
    pthread_mutex_t mac_mu;
    _Atomic(struct ph_hmac_key *) mac;
};

/* plugin_loader.c: the config value parsers and lookup the host's config calls use */
int ldr_parse_int(const char *s, int64_t *out);
int ldr_parse_bool(const char *s, int *out);
const conf_value *ldr_conf_find(const struct perkhub_config *c, const char *key);

/* plugin_text.c: the host table's text helpers (ABI 1.4), documented in perkhub/plugin.h */
char *ph_host_form_encode(const struct perkhub_host *host, const char *const *kv, unsigned flags);
int ph_host_kv_parse(const struct perkhub_host *host, const char *text, size_t len, char sep,
                     int decode, char ***kv, size_t *npairs);
int ph_host_url_decode(const struct perkhub_host *host, const char *s, size_t len, int plus_space,
                       char **out);
char *ph_host_hex_encode(const struct perkhub_host *host, const void *data, size_t len, int upper);
int ph_host_hex_decode(const struct perkhub_host *host, const char *text, size_t len, uint8_t **out,
                       size_t *outlen);

#endif
