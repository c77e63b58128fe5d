/*
 * perkhub/plugin.h — the perkhub supplier plugin SDK. The only header a plugin includes.
 *
 * Read it top to bottom: it is the reference documentation. docs/sdk.md walks
 * from an empty folder to a loaded, tested adapter; plugins/example/example.c
 * is the plugin to copy.
 *
 * ABI CHANGELOG (newest first)
 *
 *   The rule (Varnish's): add something -> bump PERKHUB_ABI_MINOR;
 *   remove or change anything -> bump PERKHUB_ABI_MAJOR and reset MINOR to 0.
 *   "Change" includes the meaning of a value, the order of fields and the
 *   type of a parameter. Every struct and table below is append-only within
 *   a major version: new members go at the end, behind a comment naming the
 *   ABI version that added them.
 *
 *   perkhubd loads a plugin built for ABI M.n when M equals its own major and
 *   n is at most its own minor; anything else is refused at load with a
 *   message naming the plugin file, the plugin's ABI and perkhubd's.
 *
 *   2026-11-24  1.0  First version: entry symbol, plugin descriptor, config
 *                    schema, lifecycle (init/shutdown), host table (log,
 *                    memory, clock, config getters, SHA-256/HMAC-SHA256,
 *                    status names), status codes, capability bits reserved.
 *                    Supplier operations (build a request / parse a response)
 *                    are planned for 1.1; see "OPERATIONS" at the end.
 *
 * THE CONTRACT IN SIX LINES
 *
 *   1. A plugin is a shared object exporting one function, perkhub_plugin_entry,
 *      that returns a pointer to a constant descriptor (struct perkhub_plugin).
 *   2. The core validates the supplier's configuration against the descriptor's
 *      schema, then calls init once per configured supplier; every piece of state
 *      lives in the instance init returns. No global or static mutable state.
 *   3. Plugins translate; the core does I/O (DESIGN.md rule 5). A plugin opens no
 *      socket and no file, starts no thread, installs no signal handler.
 *   4. Everything the plugin needs from the process comes through the host table
 *      (struct perkhub_host): logging, memory, the clock, hashing.
 *   5. Memory that crosses the boundary comes from host->mem_alloc and goes back
 *      through host->mem_free, never malloc/free.
 *   6. Secrets (API keys, card codes, account numbers) never reach a log line,
 *      an error message or a status string.
 */
#ifndef PERKHUB_PLUGIN_H
#define PERKHUB_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PERKHUB_ABI_MAJOR 1
#define PERKHUB_ABI_MINOR 0

/* Marks the one symbol a plugin exports. Plugins are built with hidden
 * visibility (ph_add_plugin does that), so only this symbol is visible. */
#define PERKHUB_EXPORT __attribute__((visibility("default")))

#if defined(__GNUC__) || defined(__clang__)
#define PERKHUB_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define PERKHUB_PRINTF(fmt, args)
#endif

struct perkhub_host;
struct perkhub_config;
struct perkhub_ops; /* ABI 1.1; see OPERATIONS below */

/* =========================================================================
 * STATUS CODES
 *
 * Every plugin callback and host function that can fail returns an int that
 * is one of these; 0 is success. host->status_str(status) names them. The
 * outcome classes say what happened upstream; the core, never the plugin,
 * decides what to do about it (retry, fail over, query later).
 * ========================================================================= */
enum perkhub_status {
    PERKHUB_OK = 0,

    /* Outcome classes of a supplier operation (used from ABI 1.1 on). */
    PERKHUB_RETRYABLE = 1,        /* the supplier did NOT perform the operation and says
                                     trying again later may work (rate limit, maintenance,
                                     "system busy"). The core's policy decides when to
                                     resend, and whether to wait or move on. */
    PERKHUB_DEFINITE_FAILURE = 2, /* the supplier definitely did not and will not perform it
                                     (unknown product, out of stock, invalid account). Only
                                     now may the core try another supplier. */
    PERKHUB_AMBIGUOUS = 3,        /* it may or may not have happened (unrecognized answer,
                                     "processing", a body that does not parse). The attempt
                                     stays unknown until an order query settles it; the
                                     request is never sent again (DESIGN.md rule 2). */

    /* Errors of the plugin itself. */
    PERKHUB_ERR_CONFIG = 4,      /* a configuration value is unusable (init) */
    PERKHUB_ERR_NOMEM = 5,       /* host->mem_alloc returned NULL */
    PERKHUB_ERR_NOT_FOUND = 6,   /* no such key, or the key has no value */
    PERKHUB_ERR_UNSUPPORTED = 7, /* the plugin does not offer this operation */
    PERKHUB_ERR_INTERNAL = 8,    /* a bug in the plugin; the core logs it */
};

/* Log levels for host->log_msg. */
enum perkhub_log_level {
    PERKHUB_LOG_DEBUG = 0,
    PERKHUB_LOG_INFO = 1,
    PERKHUB_LOG_WARN = 2,
    PERKHUB_LOG_ERROR = 3,
};

/* =========================================================================
 * CAPABILITIES
 *
 * What a plugin can do, as bits in perkhub_plugin.capabilities. The values are
 * fixed now so that they never move; each names the operation of ABI 1.1 that
 * carries it. An ABI 1.0 plugin has no operations table, so it sets
 * capabilities to 0: the core refuses a plugin that claims a capability its ABI
 * version cannot carry, and any bit not defined here (bits 7..63 are reserved).
 * ========================================================================= */
#define PERKHUB_CAP_CATALOG     (UINT64_C(1) << 0) /* list the supplier's products and prices */
#define PERKHUB_CAP_STOCK_CHECK (UINT64_C(1) << 1) /* ask the stock of one product */
#define PERKHUB_CAP_CARD_ORDER  (UINT64_C(1) << 2) /* buy card codes (卡密) */
#define PERKHUB_CAP_RECHARGE    (UINT64_C(1) << 3) /* recharge an account directly */
#define PERKHUB_CAP_ORDER_QUERY (UINT64_C(1) << 4) /* query an order: settles AMBIGUOUS */
#define PERKHUB_CAP_CALLBACK    (UINT64_C(1) << 5) /* verify and parse async notifications */
#define PERKHUB_CAP_BALANCE     (UINT64_C(1) << 6) /* read our prepaid balance */
#define PERKHUB_CAP_DEFINED     (UINT64_C(0x7f))   /* every bit defined so far */

/* =========================================================================
 * CONFIG SCHEMA
 *
 * A plugin declares its configuration as a table; the core checks a supplier's
 * `config:` block against it before init and refuses, naming the supplier and
 * the key, any unknown key, any missing required key and any value of the
 * wrong type. So init never sees a typo. The core also prints the table as
 * documentation for ops (ph_plugin_describe), so write descriptions for them.
 *
 * The values a plugin reads at init (through host->config_*) have the schema's
 * defaults applied, and SECRET values resolved: in YAML a secret is written as a
 * reference, "env:NAME" (an environment variable of perkhubd) or "file:PATH"
 * (the file's content, one trailing newline removed); an inline secret is
 * refused. The core never logs a SECRET value.
 *
 * This struct is frozen for the whole major version 1: it is used as an array,
 * so growing it would move every element. Future per-key attributes will come
 * as new descriptor fields, never as new members here.
 * ========================================================================= */
enum perkhub_conf_type {
    PERKHUB_CONF_STRING = 1, /* any text */
    PERKHUB_CONF_INT = 2,    /* decimal int64, optional sign: "30", "-1" */
    PERKHUB_CONF_BOOL = 3,   /* true/false, yes/no, on/off */
    PERKHUB_CONF_SECRET = 4, /* text given by reference (env:NAME, file:PATH), never logged */
};

struct perkhub_config_key {
    const char *key;           /* [a-z0-9_]+, unique within the table; NULL ends the table */
    int type;                  /* enum perkhub_conf_type */
    const char *default_value; /* the value when the key is absent, written as in YAML
                                  ("hello", "30", "true"); NULL = none */
    const char *description;   /* one sentence for ops; never NULL */
    int required;              /* 1: the supplier must set it (then default_value is NULL) */
};

/* =========================================================================
 * THE PLUGIN DESCRIPTOR
 *
 * One per plugin, constant, with static storage duration: the core reads it
 * while the shared object is loaded and never writes it. Initialize it with
 * designated initializers; members you do not name are zero, which is the right
 * value for everything not yet in your ABI version.
 *
 * The first three members never move in any major version, so the core can
 * always read them and refuse an incompatible plugin by name. struct_size lets
 * the core know which members exist: it reads only struct_size bytes and takes
 * every member beyond them as zero.
 * ========================================================================= */
struct perkhub_plugin {
    uint32_t struct_size; /* sizeof(struct perkhub_plugin) as the plugin was compiled */
    uint16_t abi_major;   /* PERKHUB_ABI_MAJOR as the plugin was compiled */
    uint16_t abi_minor;   /* PERKHUB_ABI_MINOR as the plugin was compiled */

    /* ---- ABI 1.0 ---- */
    const char *name;        /* [a-z0-9_]+, and the file must be <name>.so */
    const char *version;     /* the plugin's own version ("1.2.0"), listed by the API */
    const char *description; /* one line: which supplier and protocol this adapts */
    uint64_t capabilities;   /* PERKHUB_CAP_* bits; 0 in ABI 1.0 */
    const struct perkhub_config_key *config; /* schema, ended by an entry with key NULL;
                                                NULL means the plugin takes no config */

    /*
     * NAME
     *     init — create one instance for one configured supplier.
     *
     * ARGUMENTS
     *     host      the host table for this instance. Keep the pointer in your
     *               instance: it stays valid until shutdown returns.
     *     config    this supplier's validated configuration; read it with
     *               host->config_string/config_int/config_bool. Valid, like the
     *               strings it returns, until shutdown returns.
     *     instance  out: your instance (allocate it with host->mem_alloc).
     *               May be left NULL by a plugin that needs no state.
     *     errbuf    out: on failure, one line saying what is wrong (name the
     *               config key; never quote a secret). Host-owned, errlen bytes
     *               (at least PERKHUB_ERRBUF_SIZE), zeroed before the call.
     *
     * RETURN VALUE
     *     PERKHUB_OK, or PERKHUB_ERR_CONFIG / PERKHUB_ERR_NOMEM / another
     *     PERKHUB_ERR_*. On failure free everything you allocated; shutdown is
     *     not called and the supplier is not started (the old configuration,
     *     if any, stays in force).
     *
     * NOTES
     *     Called from the core's main thread, once per instance. Several
     *     instances of one plugin (two suppliers using the same adapter with two
     *     accounts) live side by side: that is why state lives in the instance.
     *     Never performs I/O.
     */
    int (*init)(const struct perkhub_host *host, const struct perkhub_config *config,
                void **instance, char *errbuf, size_t errlen);

    /*
     * NAME
     *     shutdown — destroy an instance init created.
     *
     * DESCRIPTION
     *     Free everything the instance owns, with host->mem_free. Cannot fail.
     *     The host table is still usable during the call. Blocks still
     *     allocated when shutdown returns are reclaimed by the host and logged
     *     as a leak (level warn, event plugin.leak).
     *
     * NOTES
     *     Called exactly once per successful init, from any thread, after every
     *     other call on this instance has returned: the core reference-counts
     *     instances, and the last reference runs shutdown. Never called on NULL
     *     unless init left *instance NULL.
     */
    void (*shutdown)(void *instance);

    /* Supplier operations. Must be NULL in ABI 1.0 (the struct is only declared);
     * ABI 1.1 defines struct perkhub_ops, its own struct_size first. */
    const struct perkhub_ops *ops;

    /* New members of later minor versions go here, after a comment naming the
     * version. The core reads them only when struct_size covers them. */
};

/* The size of the 1.0 descriptor: the smallest struct_size perkhubd 1.x accepts. */
#define PERKHUB_PLUGIN_SIZE_1_0                                                                    \
    (offsetof(struct perkhub_plugin, ops) + sizeof(const struct perkhub_ops *))

/* The bytes the host guarantees for init's errbuf. */
#define PERKHUB_ERRBUF_SIZE 256

/* =========================================================================
 * THE ENTRY SYMBOL
 *
 * The only symbol the core looks up (dlsym) in a plugin file. It takes nothing
 * and returns the descriptor. It may be called more than once (once per load)
 * and must return the same pointer with no side effect: no allocation, no
 * logging, no global initialization (and no __attribute__((constructor))).
 * Called from the core's main thread, right after dlopen.
 * Define it exactly as
 *
 *     PERKHUB_EXPORT const struct perkhub_plugin *perkhub_plugin_entry(void)
 *     {
 *         return &my_plugin;
 *     }
 * ========================================================================= */
#define PERKHUB_ENTRY_SYMBOL "perkhub_plugin_entry"
typedef const struct perkhub_plugin *(*perkhub_plugin_entry_fn)(void);
PERKHUB_EXPORT const struct perkhub_plugin *perkhub_plugin_entry(void);

/* =========================================================================
 * THE HOST TABLE
 *
 * What the core offers a plugin: one table of function pointers per instance,
 * passed to init. Like SQLite's sqlite3_api_routines it is append-only: new
 * functions are added at the end only, each block tagged with the ABI version
 * that added it. Every function of the plugin's ABI version is non-NULL (the
 * core never loads a plugin built for a newer minor than its own).
 *
 * Every function takes the host pointer init received as its first argument:
 * that is how the core knows which supplier is calling (log lines carry the
 * supplier id, memory is accounted per instance). Test harnesses supply their
 * own table (see plugins/example/test_example.c).
 * ========================================================================= */
struct perkhub_host {
    uint32_t struct_size; /* sizeof(struct perkhub_host) as the host was compiled */
    uint16_t abi_major;   /* the host's PERKHUB_ABI_MAJOR */
    uint16_t abi_minor;   /* the host's PERKHUB_ABI_MINOR (>= the plugin's) */

    /* ---- ABI 1.0 ---- */

    /* Writes one log line, attributed to this supplier and plugin:
     *   level=info msg=plugin.<event> supplier=<id> plugin=<name> <formatted tail>
     * `event` is a short dotted name without spaces ("init", "sign.fail");
     * `fmt` formats a key=value tail and may be NULL. Never pass a secret, a
     * card code, an account number or a request body.
     * Ownership: nothing is retained after the call.
     * Thread-safe; lines from threads never interleave. */
    void (*log_msg)(const struct perkhub_host *host, int level, const char *event, const char *fmt,
                    ...) PERKHUB_PRINTF(4, 5);

    /* Returns `size` (> 0) zeroed bytes aligned for any type, or NULL when out of
     * memory. Ownership: the caller owns the block until it passes it to
     * mem_free (or, for results handed to the core in ABI 1.1, until the core
     * takes it); never release it with free(3). Blocks are accounted to this
     * instance; those left at shutdown are reclaimed and logged.
     * Thread-safe. */
    void *(*mem_alloc)(const struct perkhub_host *host, size_t size);

    /* Resizes a block from mem_alloc/mem_realloc/mem_strdup (or allocates when
     * ptr is NULL) to `size` (> 0) bytes; bytes beyond the old size are zeroed.
     * Returns the new block, or NULL when out of memory, in which case ptr is
     * untouched and still owned by the caller. Ownership: as mem_alloc; ptr is
     * invalid after a successful call.
     * Thread-safe. */
    void *(*mem_realloc)(const struct perkhub_host *host, void *ptr, size_t size);

    /* Releases a block of this host's allocator; NULL is a no-op. Ownership:
     * the block is gone. Passing memory from malloc(3) or from another
     * instance's host is a bug the core detects and logs (it then leaks the
     * block rather than corrupt the heap).
     * Thread-safe. */
    void (*mem_free)(const struct perkhub_host *host, void *ptr);

    /* Copies a NUL-terminated string into a new block; NULL when out of memory
     * (or when s is NULL). Ownership: the caller owns the copy (mem_free).
     * Thread-safe. */
    char *(*mem_strdup)(const struct perkhub_host *host, const char *s);

    /* Wall-clock time in milliseconds since the Unix epoch, for timestamps and
     * signatures that suppliers require. Ownership: nothing to free.
     * Thread-safe. */
    int64_t (*now_ms)(const struct perkhub_host *host);

    /* The value of a config key declared in the schema, as text, with the
     * default applied and a SECRET resolved. Returns NULL when the key is not
     * in the schema, or is optional, unset and without a default.
     * Ownership: the string belongs to `config`; valid until shutdown returns;
     * do not free. Thread-safe (config is read-only). */
    const char *(*config_string)(const struct perkhub_host *host,
                                 const struct perkhub_config *config, const char *key);

    /* The value of an INT key in *out. Returns PERKHUB_OK;
     * PERKHUB_ERR_NOT_FOUND (not in the schema, or unset without default; *out
     * untouched); PERKHUB_ERR_CONFIG (the key is not of type INT).
     * Ownership: nothing to free. Thread-safe. */
    int (*config_int)(const struct perkhub_host *host, const struct perkhub_config *config,
                      const char *key, int64_t *out);

    /* The value of a BOOL key in *out (0 or 1). Returns as config_int (with
     * PERKHUB_ERR_CONFIG for a key that is not of type BOOL).
     * Ownership: nothing to free. Thread-safe. */
    int (*config_bool)(const struct perkhub_host *host, const struct perkhub_config *config,
                       const char *key, int *out);

    /* SHA-256 of len bytes into out (32 bytes, caller-provided).
     * Ownership: nothing retained. Thread-safe. */
    void (*sha256)(const struct perkhub_host *host, const void *data, size_t len, uint8_t out[32]);

    /* HMAC-SHA256 of data under key into out (32 bytes, caller-provided): the
     * signature most supplier gateways ask for. Ownership: nothing retained; the
     * host does not keep the key. Thread-safe. */
    void (*hmac_sha256)(const struct perkhub_host *host, const void *key, size_t keylen,
                        const void *data, size_t len, uint8_t out[32]);

    /* A static, never-NULL name for a perkhub_status ("ok", "retryable",
     * "definite_failure", "ambiguous", "config", ...; "unknown" otherwise), for
     * log lines. Ownership: static storage; do not free. Thread-safe. */
    const char *(*status_str)(int status);

    /* New functions of later minor versions go here, after a comment naming
     * the version. Never insert above this line. */
};

/* =========================================================================
 * OPERATIONS (coming in ABI 1.1 — not part of 1.0)
 *
 * The shape, so that 1.0 plugins and the core are ready for it:
 *
 *   - The descriptor's `ops` points to a constant struct perkhub_ops that starts
 *     with its own struct_size and holds, per operation (catalog, stock check,
 *     card order, recharge, order query, callback, balance), a pair:
 *
 *       build_request(instance, const struct perkhub_op *op,
 *                     struct perkhub_request *req)
 *           turns a normalized operation (our order reference, the supplier's
 *           product id, quantity, account, ...) into an HTTP request
 *           description: method, URL, headers, body. No I/O.
 *
 *       parse_response(instance, const struct perkhub_op *op,
 *                      const struct perkhub_response *resp,
 *                      struct perkhub_result *res)
 *           turns the HTTP status, headers and body the core received into a
 *           normalized result (codes bought, recharge accepted, stock, ...) and
 *           an outcome class: PERKHUB_OK, PERKHUB_RETRYABLE,
 *           PERKHUB_DEFINITE_FAILURE or PERKHUB_AMBIGUOUS. It may instead ask for
 *           the next request of a multi-step exchange.
 *
 *   - The core owns sockets, timeouts, retries, routing and persistence. A
 *     timeout or a reset after the request was sent never reaches
 *     parse_response as a failure: the core marks the attempt unknown and
 *     settles it with an order query (or the supplier's callback).
 *   - Result memory is allocated with host->mem_alloc and handed to the core.
 *   - A capability bit is honoured only when its pair of callbacks is set.
 *
 * Because every callback is a pure function of (instance, input) -> output, a
 * plugin is tested from recorded request/response pairs alone.
 * ========================================================================= */

#ifdef __cplusplus
}
#endif

#endif /* PERKHUB_PLUGIN_H */
