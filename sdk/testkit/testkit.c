/*
 * testkit.c — the plugin test kit (see perkhub/testkit.h): a thin layer over the
 * core's loader, so that everything a plugin's test sees comes from the same
 * code perkhubd runs. Log lines go to a memfd the kit reads back.
 */
#include <perkhub/testkit.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/log.h"
#include "supply/plugin_loader.h"
#include "supply/plugin_ops.h"
#include "base/status.h"

#define PHTK_SUPPLIER "test"

struct phtk {
    ph_logger lg; /* level debug, fd a memfd: every line the instance logs */
    ph_plugin *plugin;
    ph_plugin_instance *inst;
    const struct perkhub_ops *ops; /* the loader's copy; NULL without capabilities */
    char *logbuf;                  /* phtk_log's last answer */
};

static void err_copy(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

/* kv as {"key","value",...,NULL} -> ph_kv[]; *out is malloc'ed (may be NULL
 * when n is 0). The strings are borrowed. */
static int kv_convert(const char *const *kv, ph_kv **out, size_t *n, ph_err *err)
{
    size_t m = 0;
    while (kv && kv[m])
        m++;
    *out = NULL;
    *n = 0;
    if (m % 2)
        return ph_err_set(err, PH_EINVAL,
                          "phtk_open: config key '%.64s' has no value (kv must "
                          "be key, value pairs ended by NULL)",
                          kv[m - 1]);
    if (m == 0)
        return PH_OK;
    ph_kv *a = calloc(m / 2, sizeof *a);
    if (!a)
        return ph_err_set(err, PH_ENOMEM, "phtk_open: out of memory");
    for (size_t i = 0; i < m / 2; i++) {
        a[i].key = (char *)kv[2 * i];
        a[i].value = (char *)kv[2 * i + 1];
    }
    *out = a;
    *n = m / 2;
    return PH_OK;
}

/* Wraps, resolves and starts; on error tk keeps what was made (phtk_close). */
static int kit_start(phtk *tk, const struct perkhub_plugin *desc, const char *const *kv,
                     ph_err *err)
{
    if (!desc)
        return ph_err_set(err, PH_EINVAL, "phtk_open: no descriptor");
    int rc = ph_plugin_wrap(desc, desc->name ? desc->name : "", &tk->plugin, err);
    if (rc != PH_OK)
        return rc;
    tk->ops = ph_plugin_ops(tk->plugin);
    ph_kv *a = NULL;
    size_t n = 0;
    ph_plugin_conf *conf = NULL;
    rc = kv_convert(kv, &a, &n, err);
    if (rc == PH_OK)
        rc = ph_plugin_conf_resolve_plain(tk->plugin, PHTK_SUPPLIER, a, n, &conf, err);
    free(a);
    if (rc == PH_OK)
        rc = ph_plugin_start(tk->plugin, PHTK_SUPPLIER, conf, &tk->lg, &tk->inst, err);
    return rc;
}

phtk *phtk_open(const struct perkhub_plugin *desc, const char *const *kv, char *err, size_t errlen)
{
    ph_err e = {0};
    phtk *tk = calloc(1, sizeof *tk);
    if (!tk) {
        err_copy(err, errlen, "phtk_open: out of memory");
        return NULL;
    }
    tk->lg.level = PH_LOG_DEBUG;
    tk->lg.fd = memfd_create("phtk-log", MFD_CLOEXEC);
    if (tk->lg.fd < 0) {
        err_copy(err, errlen, "phtk_open: cannot create the log buffer (memfd_create)");
        free(tk);
        return NULL;
    }
    if (kit_start(tk, desc, kv, &e) != PH_OK) {
        err_copy(err, errlen, e.msg);
        phtk_close(tk);
        return NULL;
    }
    return tk;
}

void phtk_close(phtk *tk)
{
    if (!tk)
        return;
    ph_plugin_stop(tk->inst);
    ph_plugin_close(tk->plugin);
    if (tk->lg.fd >= 0)
        close(tk->lg.fd);
    free(tk->logbuf);
    free(tk);
}

void phtk_set_now(phtk *tk, int64_t ms)
{
    ph_plugin_instance_set_now(tk->inst, ms);
}

const struct perkhub_host *phtk_host(phtk *tk)
{
    return ph_plugin_instance_host(tk->inst);
}

void *phtk_instance(phtk *tk)
{
    return ph_plugin_instance_data(tk->inst);
}

int phtk_build(phtk *tk, const struct perkhub_op *op, struct perkhub_request *req)
{
    memset(req, 0, sizeof *req);
    if (!tk->ops || !tk->ops->build_request)
        return PERKHUB_ERR_UNSUPPORTED;
    struct perkhub_op o = *op;
    if (o.struct_size == 0)
        o.struct_size = sizeof o;
    return tk->ops->build_request(phtk_instance(tk), &o, req);
}

/* A private NUL-terminated copy of len bytes (malloc). */
static char *body_copy(const char *body, size_t len)
{
    char *c = malloc(len + 1);
    if (!c)
        return NULL;
    if (len)
        memcpy(c, body, len);
    c[len] = '\0';
    return c;
}

int phtk_parse(phtk *tk, const struct perkhub_op *op, int http_status, const char *body, size_t len,
               struct perkhub_result *res)
{
    ph_op_result_init(res);
    if (!tk->ops || !tk->ops->parse_response)
        return PERKHUB_ERR_UNSUPPORTED;
    char *copy = body_copy(body, body ? len : 0); /* a missing fixture reads as empty */
    if (!copy)
        return PERKHUB_ERR_NOMEM;
    struct perkhub_op o = *op;
    if (o.struct_size == 0)
        o.struct_size = sizeof o;
    struct perkhub_response resp = {
        .http_status = http_status, .body = copy, .body_len = body ? len : 0};
    int st = tk->ops->parse_response(phtk_instance(tk), &o, &resp, res);
    free(copy);
    return st;
}

int phtk_verify(phtk *tk, const struct perkhub_callback *cb, struct perkhub_result *res)
{
    ph_op_result_init(res);
    if (!tk->ops || !tk->ops->verify_callback)
        return PERKHUB_ERR_UNSUPPORTED;
    char *copy = body_copy(cb->body ? cb->body : "", cb->body ? cb->body_len : 0);
    if (!copy)
        return PERKHUB_ERR_NOMEM;
    struct perkhub_callback c = *cb;
    c.method = c.method ? c.method : "POST";
    c.query = c.query ? c.query : "";
    c.content_type = c.content_type ? c.content_type : "";
    c.body = copy;
    c.body_len = cb->body ? cb->body_len : 0;
    int st = tk->ops->verify_callback(phtk_instance(tk), &c, res);
    free(copy);
    return st;
}

int phtk_serve(phtk *tk, const struct perkhub_request *req, struct perkhub_local_reply *reply)
{
    memset(reply, 0, sizeof *reply);
    if (!tk->ops || !tk->ops->serve_local)
        return PERKHUB_ERR_UNSUPPORTED;
    return tk->ops->serve_local(phtk_instance(tk), req, reply);
}

void phtk_request_clear(phtk *tk, struct perkhub_request *req)
{
    ph_op_request_clear(phtk_host(tk), req);
}

void phtk_result_clear(phtk *tk, struct perkhub_result *res)
{
    ph_op_result_clear(phtk_host(tk), res);
}

void phtk_reply_clear(phtk *tk, struct perkhub_local_reply *reply)
{
    ph_op_reply_clear(phtk_host(tk), reply);
}

const char *phtk_log(phtk *tk)
{
    off_t size = lseek(tk->lg.fd, 0, SEEK_END);
    size_t n = size > 0 ? (size_t)size : 0;
    char *buf = realloc(tk->logbuf, n + 1);
    if (!buf)
        return tk->logbuf ? tk->logbuf : "";
    tk->logbuf = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(tk->lg.fd, buf + got, n - got, (off_t)got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    return buf;
}

size_t phtk_blocks(phtk *tk)
{
    return ph_plugin_instance_blocks(tk->inst);
}

char *phtk_fixture(const char *path, size_t *len)
{
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 4096) {
            char *b = realloc(buf, cap ? cap * 2 : 8192);
            if (!b)
                goto fail;
            buf = b;
            cap = cap ? cap * 2 : 8192;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    if (ferror(f))
        goto fail;
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
fail:
    free(buf);
    fclose(f);
    return NULL;
}

const char *phtk_header(const struct perkhub_request *req, const char *name)
{
    size_t nl = name ? strlen(name) : 0;
    for (size_t i = 0; nl && i < req->nheaders && i < PERKHUB_MAX_HEADERS; i++) {
        const char *h = req->headers[i];
        if (!h || strncasecmp(h, name, nl) != 0 || h[nl] != ':')
            continue;
        h += nl + 1;
        while (*h == ' ' || *h == '\t')
            h++;
        return h;
    }
    return NULL;
}

int phtk_conformance(const struct perkhub_plugin *desc, char *err, size_t errlen)
{
    ph_err e = {0};
    ph_plugin *p = NULL;
    int rc = desc ? ph_plugin_wrap(desc, desc->name ? desc->name : "", &p, &e)
                  : ph_err_set(&e, PH_EINVAL, "no descriptor");
    if (rc != PH_OK) {
        err_copy(err, errlen, e.msg);
        return rc;
    }
    ph_plugin_close(p);
    err_copy(err, errlen, "");
    return 0;
}

/* Fills err like snprintf and returns -1: the failure value of the expect_*
 * functions. */
__attribute__((format(printf, 3, 4))) static int fail_msg(char *err, size_t errlen, const char *fmt,
                                                          ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int num_compare(const char *what, uint64_t got, uint64_t want, char *err, size_t errlen)
{
    if (got == want)
        return 0;
    return fail_msg(err, errlen, "%s is %" PRIu64 ", want %" PRIu64, what, got, want);
}

/* Set or NULL is all a test can ask of a callback pointer. */
static int ops_compare(const struct perkhub_ops *ops, const struct phtk_descriptor_want *w,
                       char *err, size_t errlen)
{
    const struct {
        const char *name;
        int got, want;
    } cb[] = {
        {"build_request", ops && ops->build_request, w->build_request},
        {"parse_response", ops && ops->parse_response, w->parse_response},
        {"verify_callback", ops && ops->verify_callback, w->verify_callback},
        {"serve_local", ops && ops->serve_local, w->serve_local},
    };
    for (size_t i = 0; i < sizeof cb / sizeof cb[0]; i++)
        if (cb[i].got != !!cb[i].want)
            return fail_msg(err, errlen, "ops->%s is %s, want %s", cb[i].name,
                            cb[i].got ? "set" : "NULL", cb[i].want ? "set" : "NULL");
    return 0;
}

/* d is the loader's copy, so this compares what perkhubd would use. */
static int desc_compare(const struct perkhub_plugin *d, const struct perkhub_ops *ops,
                        const struct phtk_descriptor_want *w, char *err, size_t errlen)
{
    if (!w->name || strcmp(d->name, w->name) != 0)
        return fail_msg(err, errlen, "name is '%s', want '%s'", d->name,
                        w->name ? w->name : "(null)");
    if (num_compare("abi_major", d->abi_major, w->abi_major, err, errlen) ||
        num_compare("abi_minor", d->abi_minor, w->abi_minor, err, errlen))
        return -1;
    if (d->capabilities != w->capabilities)
        return fail_msg(err, errlen, "capabilities are 0x%" PRIx64 ", want 0x%" PRIx64,
                        d->capabilities, w->capabilities);
    if (num_compare("processing_window_s", d->processing_window_s, w->processing_window_s, err,
                    errlen) ||
        num_compare("query_delay_ms", d->query_delay_ms, w->query_delay_ms, err, errlen))
        return -1;
    return ops_compare(ops, w, err, errlen);
}

int phtk_expect_descriptor(const struct perkhub_plugin *desc,
                           const struct phtk_descriptor_want *want, char *err, size_t errlen)
{
    if (!desc || !want)
        return fail_msg(err, errlen, "phtk_expect_descriptor: %s is NULL",
                        desc ? "want" : "the descriptor");
    ph_err e = {0};
    ph_plugin *p = NULL;
    if (ph_plugin_wrap(desc, desc->name ? desc->name : "", &p, &e) != PH_OK)
        return fail_msg(err, errlen, "conformance: %s", e.msg);
    int rc = desc_compare(ph_plugin_descriptor(p), ph_plugin_ops(p), want, err, errlen);
    ph_plugin_close(p);
    if (rc == 0)
        err_copy(err, errlen, "");
    return rc;
}

/* Checks secrets before the needle so that no message that quotes a secret is
 * ever copied into err. */
static int refusal_check(const char *msg, const char *needle, const char *const *secrets, char *err,
                         size_t errlen)
{
    for (size_t i = 0; secrets && secrets[i]; i++)
        if (*secrets[i] && strstr(msg, secrets[i]))
            return fail_msg(err, errlen, "the refusal quotes secret #%zu", i);
    if (!strstr(msg, needle))
        return fail_msg(err, errlen, "the refusal \"%s\" does not name %s", msg, needle);
    err_copy(err, errlen, msg);
    return 0;
}

int phtk_expect_refused(const struct perkhub_plugin *desc, const char *const *kv,
                        const char *needle, const char *const *secrets, char *err, size_t errlen)
{
    if (!needle)
        return fail_msg(err, errlen, "phtk_expect_refused: needle is NULL");
    char msg[1024] = "";
    phtk *tk = phtk_open(desc, kv, msg, sizeof msg);
    if (tk) {
        phtk_close(tk);
        return fail_msg(err, errlen, "the config was accepted, want a refusal naming %s", needle);
    }
    return refusal_check(msg, needle, secrets, err, errlen);
}
