/*
 * plugin_host.c — the host side of a running plugin (plugin_loader.c opens
 * plugins and resolves their config): the host function table (logging,
 * tracked memory, config, crypto and encoding services, ABI 1.0 and 1.1) and
 * the instances that own it, started and stopped.
 */
#include "supply/plugin_loader.h"
#include "supply/loader_int.h"
#include "supply/plugin_ops.h"
#include "supply/sup_text.h"

#include <assert.h>
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <curl/curl.h>

#include "crypto/crypto.h"
#include "base/util.h"

/* ---- the host table ---------------------------------------------------------- */

static ph_plugin_instance *inst_of(const struct perkhub_host *host)
{
    /* host is the first member of a mutable instance; the cast only undoes that.
     */
    ph_plugin_instance *inst = (ph_plugin_instance *)(uintptr_t)host;
    assert(inst && inst->magic == INSTANCE_MAGIC);
    return inst;
}

static void host_log_msg(const struct perkhub_host *host, int level, const char *event,
                         const char *fmt, ...)
{
    ph_plugin_instance *inst = inst_of(host);
    if (level < PERKHUB_LOG_DEBUG)
        level = PERKHUB_LOG_DEBUG;
    if (level > PERKHUB_LOG_ERROR)
        level = PERKHUB_LOG_ERROR;
    if (!ph_log_enabled(inst->lg, level))
        return;
    char ev[80] = "plugin.";
    size_t n = strlen(ev);
    for (const char *e = event ? event : ""; *e && n < sizeof ev - 1; e++) {
        char ch = *e;
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '.' || ch == '_' || ch == '-';
        ev[n++] = ok ? ch : '_';
    }
    if (n == strlen("plugin."))
        memcpy(ev + n, "log", 4);
    else
        ev[n] = '\0';
    /* the plugin's fields through log.h's escaping formatter, after ours */
    char tail[1536];
    size_t n0 = ph_log_format(tail, sizeof tail, "supplier=%s plugin=%s", inst->supplier_id,
                              inst->plugin->name);
    if (fmt && n0 + 1 < sizeof tail) {
        tail[n0++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        ph_log_vformat(tail + n0, sizeof tail - n0, fmt, ap);
        va_end(ap);
        if (!tail[n0])
            tail[n0 - 1] = 0; /* an empty plugin tail leaves no trailing space */
    }
    /* A plugin's line may carry what its supplier wrote, and the core cannot
     * refuse a log line: runs of digits as long as a phone, ID or card number
     * are masked (sup_text.h) */
    ph_suptext_mask_runs(ev);
    ph_suptext_mask_runs(tail);
    ph_log_tail(inst->lg, level, NULL, ev, tail);
}

static void *host_mem_alloc(const struct perkhub_host *host, size_t size)
{
    ph_plugin_instance *inst = inst_of(host);
    if (size == 0 || size > SIZE_MAX - sizeof(block))
        return NULL;
    block *b = calloc(1, sizeof(block) + size);
    if (!b)
        return NULL;
    b->h.magic = BLOCK_MAGIC;
    b->h.size = size;
    b->h.owner = inst;
    pthread_mutex_lock(&inst->mem_mu);
    b->h.next = inst->blocks;
    if (inst->blocks)
        inst->blocks->h.prev = b;
    inst->blocks = b;
    inst->nblocks++;
    inst->nbytes += size;
    pthread_mutex_unlock(&inst->mem_mu);
    return b + 1;
}

/* Returns the block header of ptr when it is a live block of inst, else NULL
 * (after logging: a foreign pointer is leaked rather than freed). */
static block *block_of(ph_plugin_instance *inst, void *ptr, const char *what)
{
    block *b = (block *)ptr - 1;
    if (b->h.magic == BLOCK_MAGIC && b->h.owner == inst)
        return b;
    ph_log(inst->lg, PH_LOG_ERROR, NULL, "plugin.bad_free",
           "supplier=%s plugin=%s call=%s reason=%s", inst->supplier_id, inst->plugin->name, what,
           b->h.magic == BLOCK_MAGIC  ? "block_of_another_instance"
           : b->h.magic == BLOCK_DEAD ? "double_free"
                                      : "not_from_host_allocator");
    return NULL;
}

static void block_unlink(ph_plugin_instance *inst, block *b)
{
    if (b->h.prev)
        b->h.prev->h.next = b->h.next;
    else
        inst->blocks = b->h.next;
    if (b->h.next)
        b->h.next->h.prev = b->h.prev;
    inst->nblocks--;
    inst->nbytes -= b->h.size;
    b->h.magic = BLOCK_DEAD;
}

static void host_mem_free(const struct perkhub_host *host, void *ptr)
{
    ph_plugin_instance *inst = inst_of(host);
    if (!ptr)
        return;
    block *b = block_of(inst, ptr, "mem_free");
    if (!b)
        return;
    pthread_mutex_lock(&inst->mem_mu);
    block_unlink(inst, b);
    pthread_mutex_unlock(&inst->mem_mu);
    free(b);
}

static void *host_mem_realloc(const struct perkhub_host *host, void *ptr, size_t size)
{
    ph_plugin_instance *inst = inst_of(host);
    if (!ptr)
        return host_mem_alloc(host, size);
    block *b = block_of(inst, ptr, "mem_realloc");
    if (!b || size == 0)
        return NULL;
    void *n = host_mem_alloc(host, size);
    if (!n)
        return NULL;
    memcpy(n, ptr, b->h.size < size ? b->h.size : size);
    host_mem_free(host, ptr);
    return n;
}

static char *host_mem_strdup(const struct perkhub_host *host, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = host_mem_alloc(host, n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static int64_t host_now_ms(const struct perkhub_host *host)
{
    int64_t fixed = atomic_load(&inst_of(host)->fixed_now_ms);
    return fixed ? fixed : ph_now_ms();
}

static const char *host_config_string(const struct perkhub_host *host,
                                      const struct perkhub_config *config, const char *key)
{
    (void)host;
    const conf_value *v = ldr_conf_find(config, key);
    return v ? v->value : NULL;
}

static int host_config_int(const struct perkhub_host *host, const struct perkhub_config *config,
                           const char *key, int64_t *out)
{
    (void)host;
    const conf_value *v = ldr_conf_find(config, key);
    if (!v)
        return PERKHUB_ERR_NOT_FOUND;
    if (v->schema->type != PERKHUB_CONF_INT)
        return PERKHUB_ERR_CONFIG;
    if (!v->value)
        return PERKHUB_ERR_NOT_FOUND;
    return ldr_parse_int(v->value, out) == 0 ? PERKHUB_OK : PERKHUB_ERR_CONFIG;
}

static int host_config_bool(const struct perkhub_host *host, const struct perkhub_config *config,
                            const char *key, int *out)
{
    (void)host;
    const conf_value *v = ldr_conf_find(config, key);
    if (!v)
        return PERKHUB_ERR_NOT_FOUND;
    if (v->schema->type != PERKHUB_CONF_BOOL)
        return PERKHUB_ERR_CONFIG;
    if (!v->value)
        return PERKHUB_ERR_NOT_FOUND;
    return ldr_parse_bool(v->value, out) == 0 ? PERKHUB_OK : PERKHUB_ERR_CONFIG;
}

static void host_sha256(const struct perkhub_host *host, const void *data, size_t len,
                        uint8_t out[32])
{
    (void)host;
    ph_sha256(data, len, out);
}

/* HMAC() fetches OpenSSL's MAC and digest by name on every call (~4 us, more
 * with the HTTP threads verifying callbacks at once); the instance keeps its
 * first key prepared (crypto.h, ph_hmac_key), which a plugin verifying
 * callbacks uses every time. Same bytes either way. */
static void host_hmac_sha256(const struct perkhub_host *host, const void *key, size_t keylen,
                             const void *data, size_t len, uint8_t out[32])
{
    ph_plugin_instance *inst = inst_of(host);
    ph_hmac_key *k = atomic_load_explicit(&inst->mac, memory_order_acquire);
    if (!k) {
        pthread_mutex_lock(&inst->mac_mu);
        k = atomic_load_explicit(&inst->mac, memory_order_relaxed);
        if (!k && ph_hmac_key_new(key, keylen, &k) == PH_OK)
            atomic_store_explicit(&inst->mac, k, memory_order_release);
        pthread_mutex_unlock(&inst->mac_mu);
    }
    if (k && ph_hmac_key_is(k, key, keylen))
        ph_hmac_key_sign(k, data, len, out);
    else
        ph_hmac_sha256(key, keylen, data, len, out);
}

/* ---- the host table, ABI 1.1 ------------------------------------------------- */

static void host_md5(const struct perkhub_host *host, const void *data, size_t len, uint8_t out[16])
{
    (void)host;
    ph_md5(data, len, out);
}

static int host_cipher(const struct perkhub_host *host, const char *name, int encrypt,
                       const uint8_t *key, size_t keylen, const uint8_t *iv, size_t ivlen,
                       const uint8_t *in, size_t inlen, uint8_t **out, size_t *outlen)
{
    if (!out || !outlen || (inlen && !in))
        return PERKHUB_ERR_INTERNAL;
    *out = NULL;
    *outlen = 0;
    if (inlen > SIZE_MAX - PH_CIPHER_BLOCK_MAX - 1)
        return PERKHUB_ERR_NOMEM;
    /* Room for one more block than the input (padding) and the promised NUL. */
    size_t cap = inlen + PH_CIPHER_BLOCK_MAX;
    uint8_t *buf = host_mem_alloc(host, cap + 1);
    if (!buf)
        return PERKHUB_ERR_NOMEM;
    size_t n = 0;
    int rc = ph_cipher(name, encrypt, key, keylen, iv, ivlen, in, inlen, buf, cap, &n);
    if (rc != PH_OK) {
        host_mem_free(host, buf); /* ph_cipher left zeros in it */
        return rc == PH_ENOTFOUND ? PERKHUB_ERR_UNSUPPORTED
               : rc == PH_EINVAL  ? PERKHUB_ERR_CONFIG
               : rc == PH_ECRYPTO ? PERKHUB_DEFINITE_FAILURE
                                  : PERKHUB_ERR_NOMEM;
    }
    buf[n] = '\0';
    *out = buf;
    *outlen = n;
    return PERKHUB_OK;
}

static char *host_base64_encode(const struct perkhub_host *host, const void *data, size_t len)
{
    size_t n = ph_base64_encoded_len(len);
    if (n == SIZE_MAX || (len && !data))
        return NULL;
    char *s = host_mem_alloc(host, n + 1);
    if (s)
        ph_base64_encode(data, len, s);
    return s;
}

static int host_base64_decode(const struct perkhub_host *host, const char *text, size_t len,
                              uint8_t **out, size_t *outlen)
{
    if (!out || !outlen)
        return PERKHUB_ERR_INTERNAL;
    *out = NULL;
    *outlen = 0;
    if (len && !text)
        return PERKHUB_DEFINITE_FAILURE;
    size_t cap = ph_base64_decoded_max(len);
    uint8_t *buf = host_mem_alloc(host, cap + 1);
    if (!buf)
        return PERKHUB_ERR_NOMEM;
    size_t n = 0;
    if (ph_base64_decode(text ? text : "", len, buf, &n) != PH_OK) {
        host_mem_free(host, buf);
        return PERKHUB_DEFINITE_FAILURE;
    }
    buf[n] = '\0';
    *out = buf;
    *outlen = n;
    return PERKHUB_OK;
}

static int host_ct_equal(const struct perkhub_host *host, const void *a, const void *b, size_t len)
{
    (void)host;
    return ph_ct_equal(a, b, len);
}

static char *host_url_encode(const struct perkhub_host *host, const char *s)
{
    size_t len = s ? strlen(s) : 0;
    if (!s || len > INT_MAX)
        return NULL;
    if (len == 0)
        return host_mem_strdup(host, "");
    /* Since curl 7.82 the handle argument is unused; libcurl escapes all but
     * RFC 3986 unreserved characters, which is what suppliers sign over. */
    char *e = curl_easy_escape(NULL, s, (int)len);
    if (!e)
        return NULL;
    char *copy = host_mem_strdup(host, e);
    curl_free(e);
    return copy;
}

static int host_random(const struct perkhub_host *host, void *buf, size_t len)
{
    (void)host;
    if (len == 0)
        return PERKHUB_OK;
    return buf && ph_random_bytes(buf, len) == PH_OK ? PERKHUB_OK : PERKHUB_ERR_INTERNAL;
}

/* ---- instances --------------------------------------------------------------- */

/* Frees every block the plugin left behind, logging them as a leak. */
static void blocks_reclaim(ph_plugin_instance *inst, const char *when)
{
    pthread_mutex_lock(&inst->mem_mu);
    if (inst->nblocks)
        ph_log(inst->lg, PH_LOG_WARN, NULL, "plugin.leak",
               "supplier=%s plugin=%s after=%s blocks=%zu bytes=%zu", inst->supplier_id,
               inst->plugin->name, when, inst->nblocks, inst->nbytes);
    while (inst->blocks) {
        block *b = inst->blocks;
        block_unlink(inst, b);
        free(b);
    }
    pthread_mutex_unlock(&inst->mem_mu);
}

static void instance_free(ph_plugin_instance *inst)
{
    blocks_reclaim(inst, "shutdown");
    pthread_mutex_destroy(&inst->mem_mu);
    pthread_mutex_destroy(&inst->mac_mu);
    ph_hmac_key_free(atomic_load(&inst->mac));
    ph_plugin_conf_free(inst->conf);
    free(inst->supplier_id);
    inst->magic = 0;
    free(inst);
}

int ph_plugin_start(ph_plugin *p, const char *supplier_id, ph_plugin_conf *conf,
                    const ph_logger *lg, ph_plugin_instance **out, ph_err *err)
{
    const char *sid = supplier_id ? supplier_id : "?";
    ph_plugin_instance *inst = calloc(1, sizeof *inst);
    if (!inst || !(inst->supplier_id = strdup(sid))) {
        free(inst);
        ph_plugin_conf_free(conf);
        return ph_err_set(err, PH_ENOMEM, "supplier '%s': out of memory", sid);
    }
    inst->host = (struct perkhub_host){
        .struct_size = sizeof(struct perkhub_host),
        .abi_major = PERKHUB_ABI_MAJOR,
        .abi_minor = PERKHUB_ABI_MINOR,
        .log_msg = host_log_msg,
        .mem_alloc = host_mem_alloc,
        .mem_realloc = host_mem_realloc,
        .mem_free = host_mem_free,
        .mem_strdup = host_mem_strdup,
        .now_ms = host_now_ms,
        .config_string = host_config_string,
        .config_int = host_config_int,
        .config_bool = host_config_bool,
        .sha256 = host_sha256,
        .hmac_sha256 = host_hmac_sha256,
        .status_str = ph_op_status_name,
        .md5 = host_md5,
        .cipher = host_cipher,
        .base64_encode = host_base64_encode,
        .base64_decode = host_base64_decode,
        .ct_equal = host_ct_equal,
        .url_encode = host_url_encode,
        .random = host_random,
        .form_encode = ph_host_form_encode,
        .kv_parse = ph_host_kv_parse,
        .url_decode = ph_host_url_decode,
        .hex_encode = ph_host_hex_encode,
        .hex_decode = ph_host_hex_decode,
    };
    inst->magic = INSTANCE_MAGIC;
    inst->lg = lg;
    inst->plugin = p;
    inst->conf = conf;
    pthread_mutex_init(&inst->mem_mu, NULL);
    pthread_mutex_init(&inst->mac_mu, NULL);

    char errbuf[PERKHUB_ERRBUF_SIZE] = "";
    void *data = NULL;
    int st = p->desc.init(&inst->host, conf, &data, errbuf, sizeof errbuf);
    if (st != PERKHUB_OK) {
        errbuf[sizeof errbuf - 1] = '\0';
        for (char *c = errbuf; *c; c++)
            if (*c == '\n' || *c == '\r')
                *c = ' ';
        int rc = ph_err_set(err, st == PERKHUB_ERR_NOMEM ? PH_ENOMEM : PH_EINVAL,
                            "supplier '%s': plugin '%s' init failed (%s): %s", sid, p->name,
                            ph_op_status_name(st), errbuf[0] ? errbuf : "no reason given");
        blocks_reclaim(inst, "failed_init");
        instance_free(inst);
        return rc;
    }
    inst->data = data;
    *out = inst;
    return PH_OK;
}

void ph_plugin_stop(ph_plugin_instance *inst)
{
    if (!inst)
        return;
    inst->plugin->desc.shutdown(inst->data);
    instance_free(inst);
}

void *ph_plugin_instance_data(const ph_plugin_instance *inst)
{
    return inst->data;
}

const struct perkhub_host *ph_plugin_instance_host(const ph_plugin_instance *inst)
{
    return &inst->host;
}

const ph_plugin_conf *ph_plugin_instance_conf(const ph_plugin_instance *inst)
{
    return inst->conf;
}

void ph_plugin_instance_set_now(ph_plugin_instance *inst, int64_t now_ms)
{
    atomic_store(&inst->fixed_now_ms, now_ms);
}

size_t ph_plugin_instance_blocks(const ph_plugin_instance *inst)
{
    ph_plugin_instance *m = (ph_plugin_instance *)(uintptr_t)inst;
    pthread_mutex_lock(&m->mem_mu);
    size_t n = m->nblocks;
    pthread_mutex_unlock(&m->mem_mu);
    return n;
}
