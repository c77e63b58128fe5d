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
 *   2026-12-07  1.4  Text helpers where adapters hand-wrote them: host functions
 *                    form_encode (flags PERKHUB_FORM_SORTED, _RAW,
 *                    _SKIP_EMPTY), kv_parse (form decoding and key=value
 *                    parsing), url_decode, hex_encode, hex_decode; the inline
 *                    perkhub_kv_get. Callbacks by GET and with a query string
 *                    reach verify_callback (perkhub_callback.query). A 1.3
 *                    plugin loads unchanged.
 *   2026-12-07  1.3  Redemption status: capability bit 9
 *                    PERKHUB_CAP_REDEMPTION, operation PERKHUB_OP_REDEMPTION
 *                    (was this card code redeemed at the supplier?),
 *                    perkhub_op.code/card_no, perkhub_result.redeemed and
 *                    redeemed_at_ms. A 1.2 plugin never sets them: they read
 *                    as unknown.
 *   2026-12-07  1.2  Statements (reconciliation): capability bit 8
 *                    PERKHUB_CAP_STATEMENT, operation PERKHUB_OP_STATEMENT,
 *                    perkhub_op.period_from_ms/period_to_ms, struct
 *                    perkhub_statement_line, perkhub_result.statement/nstatement.
 *                    struct perkhub_result gains delivered_value (what the
 *                    supplier says it delivered per unit, "51.00 credited
 *                    for a 50.00 product"), compared with the product's face
 *                    value. A 1.1 plugin never sets it: it reads as unknown.
 *   2026-11-24  1.1  Supplier operations: struct perkhub_ops (build_request,
 *                    parse_response, verify_callback, serve_local), the
 *                    operation/request/response/result structs, capability
 *                    bits 0..7 usable, descriptor fields processing_window_s
 *                    and query_delay_ms, host functions md5, cipher,
 *                    base64_encode/decode, ct_equal, url_encode, random.
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
 *   3. Plugins translate; the core does I/O (docs/design.md rule 5). A plugin opens no
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
#define PERKHUB_ABI_MINOR 4

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
                                     request is never sent again (docs/design.md rule 2). */

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
 * What a plugin can do, as bits in perkhub_plugin.capabilities. Each bit
 * names an operation the plugin's ops table handles (ABI 1.1); the core never
 * asks a plugin for an operation whose bit is clear. An ABI 1.0 plugin has no
 * operations table and must set 0; the core refuses a plugin that claims a
 * capability its ABI version cannot carry, or a bit not defined here (bits
 * 10..63 are reserved).
 * ========================================================================= */
/* The bits stay one per line with their comments beside them: clang-format would turn
 * the comment of PERKHUB_CAP_LOCAL into a macro continuation. */
/* clang-format off */
#define PERKHUB_CAP_CATALOG     (UINT64_C(1) << 0) /* list the supplier's products and prices */
#define PERKHUB_CAP_STOCK_CHECK (UINT64_C(1) << 1) /* ask the stock and price of one product */
#define PERKHUB_CAP_CARD_ORDER  (UINT64_C(1) << 2) /* buy card codes (卡密) */
#define PERKHUB_CAP_RECHARGE    (UINT64_C(1) << 3) /* recharge an account directly (直充) */
#define PERKHUB_CAP_ORDER_QUERY (UINT64_C(1) << 4) /* query an order: settles AMBIGUOUS */
#define PERKHUB_CAP_CALLBACK    (UINT64_C(1) << 5) /* verify and parse async notifications */
#define PERKHUB_CAP_BALANCE     (UINT64_C(1) << 6) /* read our prepaid balance */
#define PERKHUB_CAP_LOCAL       (UINT64_C(1) << 7) /* ABI 1.1: the plugin is its own upstream;
                                                      the core hands each request to
                                                      ops->serve_local instead of the
                                                      network (the built-in sandbox) */
#define PERKHUB_CAP_STATEMENT   (UINT64_C(1) << 8) /* ABI 1.2: fetch our statement for a
                                                      period (PERKHUB_OP_STATEMENT) */
#define PERKHUB_CAP_REDEMPTION  (UINT64_C(1) << 9) /* ABI 1.3: say whether a card code was
                                                      redeemed (PERKHUB_OP_REDEMPTION) */
#define PERKHUB_CAP_DEFINED     (UINT64_C(0x3ff))  /* every bit defined so far */
/* clang-format on */

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

    /* Supplier operations (ABI 1.1; see OPERATIONS). NULL in ABI 1.0, and in a
     * 1.1 plugin that offers no operation (capabilities 0). */
    const struct perkhub_ops *ops;

    /* ---- ABI 1.1 ---- */

    /* How long, in seconds, the supplier may take before an order it accepted
     * shows up in its order query, measured from the attempt's creation (when
     * the core created it, before sending the order). A query answering
     * PERKHUB_STATE_NOT_FOUND within this window keeps the attempt unknown (the
     * order may still be in flight inside the supplier); only after it does the
     * core count the attempt as failed. 0 means 300; a supplier's own
     * processing_window_s in the config overrides it. */
    uint32_t processing_window_s;

    /* The delay before the core's first order query of an attempt left
     * processing or unknown, in milliseconds, measured from the moment the core
     * handled the answer (or timeout) that left it so; later queries back off
     * from it (doubling, up to the supplier's query_max_delay_ms, default 30 s).
     * 0 means 1000. */
    uint32_t query_delay_ms;

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
 * supplier id, memory is accounted per instance). A plugin's tests get the
 * core's own table through the test kit (perkhub/testkit.h).
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
     * card code, an account number or a request body. The host masks runs of
     * 7 or more digits in the line with '*' (they may be a phone, ID or card
     * number a supplier echoed).
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
     * signature most supplier gateways ask for. Ownership: the instance keeps
     * the first key it signs with prepared (a webhook secret is used for every
     * callback) until it stops, and wipes it then; any other key is not kept.
     * Thread-safe. */
    void (*hmac_sha256)(const struct perkhub_host *host, const void *key, size_t keylen,
                        const void *data, size_t len, uint8_t out[32]);

    /* A static, never-NULL name for a perkhub_status ("ok", "retryable",
     * "definite_failure", "ambiguous", "config", ...; "unknown" otherwise), for
     * log lines. Ownership: static storage; do not free. Thread-safe. */
    const char *(*status_str)(int status);

    /* ---- ABI 1.1 ---- */

    /* MD5 of len bytes into out (16 bytes, caller-provided). Only for the
     * signatures of supplier protocols that require it; never as security of
     * our own. Ownership: nothing retained. Thread-safe. */
    void (*md5)(const struct perkhub_host *host, const void *data, size_t len, uint8_t out[16]);

    /* Encrypts (encrypt = 1) or decrypts (0) inlen bytes with an OpenSSL cipher
     * named as in `openssl enc -list` ("aes-128-ecb", "aes-256-cbc", ...), with
     * PKCS#7 padding. keylen and ivlen must be the cipher's (ivlen 0 for ECB).
     * On PERKHUB_OK *out is a new block of *outlen bytes plus a NUL (so
     * decrypted text is a C string), owned by the caller (mem_free).
     * Returns PERKHUB_ERR_UNSUPPORTED (unknown cipher), PERKHUB_ERR_CONFIG
     * (wrong key or iv length), PERKHUB_DEFINITE_FAILURE (the input does not
     * decrypt: bad padding, wrong key), PERKHUB_ERR_NOMEM. Thread-safe. */
    int (*cipher)(const struct perkhub_host *host, const char *name, int encrypt,
                  const uint8_t *key, size_t keylen, const uint8_t *iv, size_t ivlen,
                  const uint8_t *in, size_t inlen, uint8_t **out, size_t *outlen);

    /* Standard base64 (RFC 4648, padded) of len bytes: a new NUL-terminated
     * string the caller owns (mem_free); NULL when out of memory. Thread-safe. */
    char *(*base64_encode)(const struct perkhub_host *host, const void *data, size_t len);

    /* Decodes standard base64 (padding optional, no whitespace). On PERKHUB_OK
     * *out is a new block of *outlen bytes plus a NUL, the caller's (mem_free).
     * Returns PERKHUB_DEFINITE_FAILURE for input that is not base64,
     * PERKHUB_ERR_NOMEM. Thread-safe. */
    int (*base64_decode)(const struct perkhub_host *host, const char *text, size_t len,
                         uint8_t **out, size_t *outlen);

    /* 1 when the len bytes at a and b are equal, else 0, in a time that depends
     * only on len: use it for every signature comparison. Thread-safe. */
    int (*ct_equal)(const struct perkhub_host *host, const void *a, const void *b, size_t len);

    /* Percent-encodes s for a URL query or a form value (RFC 3986 unreserved
     * characters stay as they are): a new string the caller owns (mem_free);
     * NULL when out of memory. Thread-safe. */
    char *(*url_encode)(const struct perkhub_host *host, const char *s);

    /* Fills len bytes with cryptographically strong random bytes (nonces,
     * IVs). Returns PERKHUB_OK or PERKHUB_ERR_INTERNAL. Thread-safe. */
    int (*random)(const struct perkhub_host *host, void *buf, size_t len);

    /* ---- ABI 1.4 ---- */

    /* Joins kv, {"key", "value", ..., NULL}, as "key=value&key=value": a new
     * string the caller owns (mem_free); NULL when out of memory or kv is
     * NULL. flags: PERKHUB_FORM_SORTED orders the pairs by key (bytewise,
     * stable), PERKHUB_FORM_SKIP_EMPTY leaves out pairs whose value is "",
     * PERKHUB_FORM_RAW writes keys and values as they are (the text most
     * MD5 protocols sign), else both are percent-encoded as url_encode does
     * (an application/x-www-form-urlencoded body). Thread-safe. */
    char *(*form_encode)(const struct perkhub_host *host, const char *const *kv, unsigned flags);

    /* Splits len bytes of "k=v<sep>k=v..." (a form body or query string with
     * sep '&', a "k=v;k=v" or "k=v\n" reply) into *kv: one block (mem_free it
     * once) holding {"k", "v", ..., NULL}; *npairs (may be NULL) gets the
     * number of pairs. decode = 1 form-decodes keys and values (percent escapes,
     * '+' as a space). Empty fields (a trailing sep) are skipped; a field
     * without '=' has the value "". Returns PERKHUB_OK; PERKHUB_DEFINITE_FAILURE
     * for an empty key, a bad escape, a %00 or a NUL byte in the text (*kv
     * untouched); PERKHUB_ERR_NOMEM. Look values up with perkhub_kv_get.
     * Thread-safe. */
    int (*kv_parse)(const struct perkhub_host *host, const char *text, size_t len, char sep,
                    int decode, char ***kv, size_t *npairs);

    /* Percent-decodes len bytes of s into *out, a new NUL-terminated string the
     * caller owns (mem_free); plus_space = 1 reads '+' as a space (form
     * encoding). Returns PERKHUB_OK; PERKHUB_DEFINITE_FAILURE for a bad escape
     * ("%4", "%zz"), a %00 or a NUL byte; PERKHUB_ERR_NOMEM. Thread-safe. */
    int (*url_decode)(const struct perkhub_host *host, const char *s, size_t len, int plus_space,
                      char **out);

    /* Hex of len bytes, in upper case when upper is 1 (say which: a protocol
     * that wants "9CFA..." refuses "9cfa..."): a new NUL-terminated string the
     * caller owns (mem_free); NULL when out of memory. Thread-safe. */
    char *(*hex_encode)(const struct perkhub_host *host, const void *data, size_t len, int upper);

    /* Decodes len hex digits (either case) into *out, a new block of *outlen
     * bytes plus a NUL, the caller's (mem_free). Returns PERKHUB_OK;
     * PERKHUB_DEFINITE_FAILURE for an odd length or a non-hex byte;
     * PERKHUB_ERR_NOMEM. Thread-safe. */
    int (*hex_decode)(const struct perkhub_host *host, const char *text, size_t len, uint8_t **out,
                      size_t *outlen);

    /* New functions of later minor versions go here, after a comment naming
     * the version. Never insert above this line. */
};

/* form_encode flags (ABI 1.4). */
#define PERKHUB_FORM_SORTED     1u /* pairs in bytewise key order */
#define PERKHUB_FORM_RAW        2u /* no percent-encoding */
#define PERKHUB_FORM_SKIP_EMPTY 4u /* leave out pairs whose value is "" */

/* The value of the first pair named key in kv ({"k", "v", ..., NULL}, as
 * kv_parse makes it), or NULL. Points into kv. (ABI 1.4; inline: no host call.) */
static inline const char *perkhub_kv_get(const char *const *kv, const char *key)
{
    for (size_t i = 0; kv && key && kv[i] && kv[i + 1]; i += 2) {
        const char *a = kv[i], *b = key;
        while (*a && *a == *b)
            a++, b++;
        if (*a == *b)
            return kv[i + 1];
    }
    return NULL;
}

/* =========================================================================
 * OPERATIONS (ABI 1.1)
 *
 * A plugin is a translator. For every operation the core
 *
 *   1. fills a struct perkhub_op (what to do, normalized),
 *   2. calls ops->build_request: the plugin describes ONE HTTP request,
 *   3. sends it itself (libcurl, one I/O thread, its timeouts, TLS, limits),
 *   4. calls ops->parse_response with what came back: the plugin fills a
 *      struct perkhub_result and returns an outcome class.
 *
 * When the exchange takes several requests (order, then query for the codes),
 * parse_response sets result->next: the core persists what it learned, then
 * calls build_request again with op->step + 1 and op->state = result->next_state.
 *
 * The core, never the plugin, handles what the network does: a request that
 * could not be sent (connection refused, DNS) is a definite failure; a timeout
 * after sending, a reset, an empty or truncated reply and any 5xx are
 * AMBIGUOUS and never reach parse_response. The attempt then stays unknown until
 * an order query (or a verified callback confirmed by a query) settles it; the
 * order request is never sent again (docs/design.md rule 2).
 *
 * Every callback is a pure function of (instance, input) -> output: no I/O, no
 * global state, no clock other than host->now_ms. That is what makes a plugin
 * testable from recorded request/response pairs alone (sdk/testkit).
 *
 * OWNERSHIP. Structs passed in `const` are the core's and valid only during
 * the call. Every pointer the plugin stores into a struct perkhub_request or
 * struct perkhub_result must come from host->mem_alloc / mem_strdup (or, for
 * perkhub_request.method and perkhub_result.reply_content_type only, be a
 * string literal); the core frees them with host->mem_free after the call's
 * result has been used, also when the call failed. Fields left NULL/0 mean
 * "not given".
 *
 * THREADS. Calls on one instance may come from several threads at once (the
 * I/O thread, HTTP threads for callbacks): treat the instance as read-only
 * after init, or guard what you change.
 * ========================================================================= */

/* What to do: perkhub_op.kind. */
enum perkhub_op_kind {
    PERKHUB_OP_CATALOG = 1,     /* list products: result->items */
    PERKHUB_OP_STOCK_CHECK = 2, /* one product (op->product_id): result->stock, ->price */
    PERKHUB_OP_CARD_ORDER = 3,  /* buy op->quantity codes of op->product_id */
    PERKHUB_OP_RECHARGE = 4,    /* recharge op->account with op->product_id */
    PERKHUB_OP_ORDER_QUERY = 5, /* the state of the order op->order_ref / ->supplier_order_id */
    PERKHUB_OP_BALANCE = 6,     /* our prepaid balance: result->balance */
    PERKHUB_OP_STATEMENT = 7,   /* ABI 1.2: what the supplier billed us in
                                   [op->period_from_ms, op->period_to_ms):
                                   result->statement */
    PERKHUB_OP_REDEMPTION = 8,  /* ABI 1.3: was the card code op->code (op->card_no)
                                   of op->product_id redeemed? result->redeemed,
                                   result->redeemed_at_ms. One exchange: result->next
                                   is not followed. */
};

/* The state of an order at the supplier: perkhub_result.state. */
enum perkhub_order_state {
    PERKHUB_STATE_NONE = 0,       /* not about an order (catalog, balance, ...) */
    PERKHUB_STATE_PROCESSING = 1, /* accepted, not finished ("untreated", "pending") */
    PERKHUB_STATE_SUCCEEDED = 2,  /* delivered: codes in result->codes, or recharged */
    PERKHUB_STATE_FAILED = 3,     /* finished without delivering; nothing was charged */
    PERKHUB_STATE_NOT_FOUND = 4,  /* the supplier has no order with this reference */
};

/* One normalized operation. All strings are the core's, valid during the call. */
struct perkhub_op {
    uint32_t struct_size; /* sizeof(struct perkhub_op) as the core was compiled */
    int kind;             /* enum perkhub_op_kind */
    int step;             /* 0 for the first request of the exchange; n for the n-th
                             follow-up asked for by result->next */
    const char *state;    /* step > 0: the previous step's result->next_state, else NULL */

    /* Our reference for this attempt: [A-Za-z0-9-], at most 64 bytes, unique
     * forever. Send it as the supplier's "customer order number" / "external
     * reference": it is how queries and callbacks find the order again. */
    const char *order_ref;
    const char *supplier_order_id; /* the supplier's own order id once known, else NULL */
    int order_kind;                /* ORDER_QUERY: PERKHUB_OP_CARD_ORDER or _RECHARGE */

    const char *product_id;   /* the supplier's product id (the offer), for orders,
                                 stock checks and queries */
    uint32_t quantity;        /* codes to buy (CARD_ORDER); 1 for RECHARGE */
    const char *account;      /* RECHARGE: the account to credit (a phone number, a
                                 user id). Personal data: put it in the request
                                 only, never in a log line or a result string. */
    int64_t unit_price;       /* fen: the offer's cost in our config, for suppliers
                                 that take a price ceiling; 0 unknown */
    int64_t face_value;       /* fen: the product's face value; 0 unknown */
    int64_t created_at_ms;    /* when the attempt was created (ms since the epoch) */
    const char *callback_url; /* where this supplier should send notifications,
                                 or NULL when perkhubd has no public URL configured */

    /* ---- ABI 1.2 (read them only when struct_size covers them) ---- */
    int64_t period_from_ms; /* STATEMENT: the period's first instant (ms since the epoch) */
    int64_t period_to_ms;   /* STATEMENT: the instant after its last one */

    /* ---- ABI 1.3 (read them only when struct_size covers them) ---- */
    /* REDEMPTION: the card code (卡密) and its card number (卡号, NULL when the
     * code has none), as the supplier delivered them. SECRETS, like an account:
     * send them to this supplier only, in the request body (never in the URL or
     * a header the core may log), and never put them, or anything derived from
     * them, in a log line, a reason, next_state or any other result string (the
     * core drops a result string that contains the code). The core wipes the
     * request body after sending it. NULL for other operations. */
    const char *code;
    const char *card_no;
};

/* The request the plugin describes; zeroed by the core before build_request. */
#define PERKHUB_MAX_HEADERS 16
struct perkhub_request {
    const char *method;                 /* "GET", "POST", ...: a string literal */
    char *url;                          /* absolute http:// or https:// URL (any scheme
                                           for a PERKHUB_CAP_LOCAL plugin: it never
                                           leaves the process) */
    char *headers[PERKHUB_MAX_HEADERS]; /* "Name: value" lines, without CRLF */
    size_t nheaders;
    char *body; /* NULL for none */
    size_t body_len;
};

/* What came back, as the core received it in full (never truncated: a
 * truncated reply is AMBIGUOUS and never reaches the plugin). */
struct perkhub_response {
    int http_status;  /* 100..599; never 5xx (the core's case) */
    const char *body; /* body_len bytes, followed by a NUL */
    size_t body_len;
    const char *const *headers; /* "Name: value" lines, as received */
    size_t nheaders;
};

/* One card code a supplier delivered. code and card_no are secrets: the core
 * seals them at once (AES-256-GCM) and wipes the plugin's copies. */
struct perkhub_code {
    char *code;            /* the code or card password (卡密); required */
    char *card_no;         /* the card number (卡号) where the product has one, else NULL */
    int64_t expires_at_ms; /* 0 = never or unknown; negative: read as long expired */
};

/* One product of a supplier's catalog. */
struct perkhub_item {
    char *product_id; /* the supplier's id; required */
    char *name;
    int kind;           /* PERKHUB_OP_CARD_ORDER or PERKHUB_OP_RECHARGE */
    int64_t face_value; /* fen; -1 unknown */
    int64_t price;      /* fen, what we pay; -1 unknown */
    int64_t stock;      /* units; -1 unknown or unlimited */
    int on_sale;        /* 1 when the supplier sells it now */
};

/* ABI 1.2: one line of a supplier's statement (PERKHUB_OP_STATEMENT). Each
 * line names the order by our reference, the supplier's order id or both. */
struct perkhub_statement_line {
    char *order_ref;         /* our reference as we sent it, or NULL */
    char *supplier_order_id; /* the supplier's order id, or NULL */
    int64_t amount;          /* fen the line says */
    int64_t time_ms;         /* when, ms since the epoch; -1 unknown */
    int charged;             /* 1: the supplier charged us for it; 0: a line that did
                                not charge (a failed or refunded order) */
};

/* The normalized result. Zeroed by the core, except the int64 fields that have
 * an "unknown" value: those start at -1. */
struct perkhub_result {
    int state;                  /* enum perkhub_order_state, for order operations,
                                   queries and callbacks */
    char *reason;               /* why a failure: 1..6 words of [a-z]+ joined by
                                   single '_', at most 48 bytes, no digit, no secret
                                   ("out_of_stock", "invalid_account", "bad_signature").
                                   The core replaces any other text with
                                   "supplier_refused": map the supplier's words to
                                   yours, never pass its text on. Every other string
                                   here is checked too, and dropped when it fails
                                   (docs/sdk.md, "What the core keeps of your
                                   strings"). */
    char *order_ref;            /* callbacks (required) and queries: our reference */
    char *supplier_order_id;    /* the supplier's order id, as soon as it is known */
    char *product_id;           /* callbacks and queries: the product the supplier names */
    int64_t quantity;           /* callbacks and queries: units; -1 unknown */
    int64_t amount;             /* fen the supplier charged in total; -1 unknown */
    struct perkhub_code *codes; /* SUCCEEDED card orders: the codes (array from mem_alloc,
                                   each string too) */
    size_t ncodes;
    struct perkhub_item *items; /* CATALOG */
    size_t nitems;
    int64_t stock;        /* STOCK_CHECK: units; -1 unknown */
    int64_t price;        /* STOCK_CHECK: fen; -1 unknown */
    int64_t balance;      /* BALANCE: fen; -1 unknown */
    int64_t timestamp_ms; /* callbacks: when the supplier signed it; -1 unknown */

    int next;         /* 1: the exchange goes on; build_request is called
                         with step + 1 after next_delay_ms */
    char *next_state; /* handed back as op->state; no secret (it is stored) */
    int64_t next_delay_ms;

    int reply_status;               /* callbacks: the HTTP status to answer; 0 = 200 */
    char *reply_body;               /* callbacks: the body the supplier expects ("success") */
    const char *reply_content_type; /* callbacks: a string literal; NULL = text/plain */

    /* ---- ABI 1.2 ---- */
    struct perkhub_statement_line *statement; /* STATEMENT: the lines (array from
                                                 mem_alloc, each string too) */
    size_t nstatement;
    int64_t delivered_value; /* order operations, queries and callbacks: the face value
                                in fen the supplier says it delivered per unit (a
                                recharge credited 51.00 for a 50.00 product), where
                                its protocol reports one; -1 unknown (the core
                                initializes it; a 1.1 plugin leaves it so). The core
                                compares it with the product's face value and keeps
                                a difference as a discrepancy, never as an error. */

    /* ---- ABI 1.3 ---- */
    int redeemed;           /* REDEMPTION: 1 the supplier says the code was redeemed, 0 it
                               says it was not, -1 it cannot tell (the core initializes
                               it to -1; a 1.2 plugin leaves it so). Only a PERKHUB_OK
                               result counts: any other outcome reads as -1. */
    int64_t redeemed_at_ms; /* REDEMPTION with redeemed 1: when, ms since the epoch;
                               0 unknown (the core then takes the time it asked). */
};

/* A callback as received on POST or GET /v1/callbacks/{supplier}. */
struct perkhub_callback {
    const char *method;       /* "POST", or "GET" for suppliers that notify so */
    const char *query;        /* the query string without '?', or "": its parameters in
                                 the order received, each key and value percent-encoded
                                 again from its decoded text (RFC 3986 unreserved
                                 characters as they are; "k" for a key without '=').
                                 Read it with host->kv_parse(..., '&', 1, ...): the
                                 values are exactly what the supplier sent. */
    const char *content_type; /* or "" */
    const char *body;         /* body_len bytes, followed by a NUL */
    size_t body_len;
    const char *const *headers; /* "Name: value" lines */
    size_t nheaders;
};

/* PERKHUB_CAP_LOCAL only: the in-process answer to a request. Zeroed by the core. */
struct perkhub_local_reply {
    int http_status; /* 0 = no answer: after delay_ms the connection drops without a
                        reply, as a reset after sending would (ambiguous) */
    char *body;      /* from mem_alloc; the core frees it */
    size_t body_len;
    int64_t delay_ms; /* answer after this long; beyond the supplier's timeout the
                         request times out after being sent (ambiguous) */
};

struct perkhub_ops {
    uint32_t struct_size; /* sizeof(struct perkhub_ops) as the plugin was compiled */

    /*
     * build_request — describe the HTTP request for op.
     *
     * RETURN VALUE
     *     PERKHUB_OK: req is complete and will be sent.
     *     PERKHUB_DEFINITE_FAILURE: nothing will be sent and nothing can be
     *         (an account the supplier's format rejects); set nothing in req.
     *     PERKHUB_ERR_UNSUPPORTED, PERKHUB_ERR_NOMEM, PERKHUB_ERR_INTERNAL: as
     *         their names; the core counts them as not sent.
     */
    int (*build_request)(void *instance, const struct perkhub_op *op, struct perkhub_request *req);

    /*
     * parse_response — turn what came back for op into res.
     *
     * RETURN VALUE, for CARD_ORDER and RECHARGE
     *     PERKHUB_OK with res->state SUCCEEDED (codes in res->codes for card
     *         orders, exactly op->quantity of them) or PROCESSING (accepted;
     *         the core queries later, or follows res->next).
     *     PERKHUB_RETRYABLE: refused, not performed, may work later.
     *     PERKHUB_DEFINITE_FAILURE: refused, not performed; res->reason says why.
     *     PERKHUB_AMBIGUOUS: anything else — an answer you do not understand,
     *         a body that does not parse, a bad response signature. When in
     *         doubt, AMBIGUOUS: it costs a query, never a double recharge.
     * For ORDER_QUERY: PERKHUB_OK with res->state set (NOT_FOUND included);
     * anything else means the query itself failed and will be repeated.
     * For CATALOG, STOCK_CHECK, BALANCE: PERKHUB_OK, or a failure class.
     */
    int (*parse_response)(void *instance, const struct perkhub_op *op,
                          const struct perkhub_response *resp, struct perkhub_result *res);

    /*
     * verify_callback — check a supplier's notification and say what it claims.
     *
     * Check the signature with host->ct_equal before anything else. On
     * PERKHUB_OK fill res->order_ref (required), ->state, ->supplier_order_id,
     * ->amount, ->product_id, ->timestamp_ms where the notification has them,
     * and ->reply_body with what the supplier expects back. The core then
     * checks that the claim matches our attempt and confirms it with an order
     * query before changing anything: a callback is a hint, never the truth.
     *
     * RETURN VALUE
     *     PERKHUB_OK; PERKHUB_DEFINITE_FAILURE with res->reason
     *     ("bad_signature", "malformed", "stale") for a callback to refuse
     *     (the core answers 401 or 400 and changes nothing).
     * NULL when the plugin has no PERKHUB_CAP_CALLBACK.
     */
    int (*verify_callback)(void *instance, const struct perkhub_callback *cb,
                           struct perkhub_result *res);

    /*
     * serve_local — PERKHUB_CAP_LOCAL only: answer req in-process, as the
     * supplier would. Called by the core's I/O thread instead of sending req;
     * the reply then goes through exactly the path a network reply takes
     * (timeouts, classification, parse_response). Must be a pure function of
     * (instance, req, host->now_ms): the sandbox encodes what it needs to
     * remember in the references it hands out. NULL otherwise.
     */
    int (*serve_local)(void *instance, const struct perkhub_request *req,
                       struct perkhub_local_reply *reply);

    /* New callbacks of later minor versions go here, after a comment naming
     * the version. The core reads them only when struct_size covers them. */
};

#ifdef __cplusplus
}
#endif

#endif /* PERKHUB_PLUGIN_H */
