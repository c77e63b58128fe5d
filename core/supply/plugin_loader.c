/*
 * plugin_loader.c — the one file of perkhub that calls dlopen. See plugin_loader.h.
 * This file opens a plugin and resolves a supplier's config against its
 * schema; the host table and the instances are in plugin_host.c.
 *
 * A running instance owns:
 *   host    its struct perkhub_host, as the FIRST member: the plugin gets
 *           &inst->host, and each host function gets the instance back from it;
 *   conf    the resolved config the plugin reads;
 *   blocks  every live mem_alloc block, listed, so that the host can reclaim
 *           what a plugin forgot at shutdown.
 */
#include "supply/plugin_loader.h"
#include "supply/loader_int.h"
#include "supply/plugin_ops.h"

#include <assert.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "crypto/crypto.h"
#include "base/util.h"

/* ---- small helpers ----------------------------------------------------------- */

static int name_valid(const char *s)
{
    size_t n = 0;
    if (!s)
        return 0;
    for (; s[n]; n++)
        if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '_'))
            return 0;
    return n > 0 && n <= NAME_MAX_LEN;
}

int ldr_parse_int(const char *s, int64_t *out)
{
    /* strtoll skips any leading white space (\n, \f, \v too): a value must
     * start with its sign or its first digit */
    if (!s || !(*s == '-' || (*s >= '0' && *s <= '9')))
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

int ldr_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (size_t i = 0; s && i < 3; i++) {
        if (strcmp(s, yes[i]) == 0)
            return *out = 1, 0;
        if (strcmp(s, no[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

static const char *type_name(int type)
{
    switch (type) {
    case PERKHUB_CONF_STRING:
        return "string";
    case PERKHUB_CONF_INT:
        return "int";
    case PERKHUB_CONF_BOOL:
        return "bool";
    case PERKHUB_CONF_SECRET:
        return "secret";
    default:
        return "unknown";
    }
}

static int is_secret_ref(const char *s)
{
    return s && ((strncmp(s, "env:", 4) == 0 && s[4]) || (strncmp(s, "file:", 5) == 0 && s[5]));
}

/* The names of capability bits 0..9, as ops read them in ph_plugin_describe. */
static const char *const cap_names[] = {"catalog",     "stock_check", "card_order", "recharge",
                                        "order_query", "callback",    "balance",    "local",
                                        "statement",   "redemption"};

/* The name of the lowest capability bit set in caps. */
static const char *cap_first(uint64_t caps)
{
    for (unsigned i = 0; i < sizeof cap_names / sizeof cap_names[0]; i++)
        if (caps & (UINT64_C(1) << i))
            return cap_names[i];
    return "?";
}

/* ---- opening a plugin -------------------------------------------------------- */

/* Checks the schema a plugin declares; a bad schema is a bug in the plugin. */
static int schema_check(ph_plugin *p, ph_err *err)
{
    const struct perkhub_config_key *k = p->desc.config;
    size_t n = 0;
    if (!k)
        return PH_OK;
    for (; n < SCHEMA_MAX && k[n].key; n++) {
        const struct perkhub_config_key *e = &k[n];
        int64_t iv;
        int bv;
        if (!name_valid(e->key))
            return ph_err_set(err, PH_EINVAL,
                              "plugin '%s' (%s): config schema entry %zu: key '%.64s' is not "
                              "1..64 of [a-z0-9_]",
                              p->name, p->path, n, e->key);
        for (size_t j = 0; j < n; j++)
            if (strcmp(k[j].key, e->key) == 0)
                return ph_err_set(err, PH_EINVAL,
                                  "plugin '%s' (%s): config schema declares key '%s' twice",
                                  p->name, p->path, e->key);
        if (e->type < PERKHUB_CONF_STRING || e->type > PERKHUB_CONF_SECRET)
            return ph_err_set(err, PH_EINVAL,
                              "plugin '%s' (%s): config key '%s' has unknown type %d", p->name,
                              p->path, e->key, e->type);
        if (!e->description)
            return ph_err_set(err, PH_EINVAL,
                              "plugin '%s' (%s): config key '%s' has no description", p->name,
                              p->path, e->key);
        if (e->required && e->default_value)
            return ph_err_set(err, PH_EINVAL,
                              "plugin '%s' (%s): config key '%s' is required and has a default; "
                              "choose one",
                              p->name, p->path, e->key);
        const char *d = e->default_value;
        if (d && ((e->type == PERKHUB_CONF_INT && ldr_parse_int(d, &iv) != 0) ||
                  (e->type == PERKHUB_CONF_BOOL && ldr_parse_bool(d, &bv) != 0) ||
                  (e->type == PERKHUB_CONF_SECRET && !is_secret_ref(d))))
            return ph_err_set(err, PH_EINVAL,
                              "plugin '%s' (%s): config key '%s': default is not a valid %s",
                              p->name, p->path, e->key, type_name(e->type));
    }
    if (n == SCHEMA_MAX)
        return ph_err_set(err, PH_EINVAL,
                          "plugin '%s' (%s): config schema has no end (an entry with key NULL)",
                          p->name, p->path);
    p->nkeys = n;
    return PH_OK;
}

/* ABI 1.0 has no operations: no capability can be honoured, no ops table read. */
static int caps_check_1_0(const ph_plugin *p, ph_err *err)
{
    if (p->desc.capabilities != 0)
        return ph_err_set(err, PH_EINVAL,
                          "plugin '%s' (%s) claims capabilities 0x%" PRIx64
                          " that SDK ABI %u.%u cannot carry (operations come in 1.1)",
                          p->name, p->path, p->desc.capabilities, (unsigned)p->desc.abi_major,
                          (unsigned)p->desc.abi_minor);
    if (p->desc.ops)
        return ph_err_set(err, PH_EINVAL,
                          "plugin '%s' (%s) sets ops, which SDK ABI %u.%u does not define", p->name,
                          p->path, (unsigned)p->desc.abi_major, (unsigned)p->desc.abi_minor);
    return PH_OK;
}

/* Checks that every capability p claims has the callbacks that serve it. The
 * core would otherwise find out at the first order, with money at stake. */
static int ops_callbacks_check(const ph_plugin *p, ph_err *err)
{
    const struct perkhub_ops *o = &p->ops;
    uint64_t caps = p->desc.capabilities;
    if ((caps & CAPS_EXCHANGE) && (!o->build_request || !o->parse_response))
        return ph_err_set(err, PH_EINVAL, "plugin '%s' (%s) claims %s but its ops table lacks %s",
                          p->name, p->path, cap_first(caps & CAPS_EXCHANGE),
                          !o->build_request && !o->parse_response ? "build_request and "
                                                                    "parse_response"
                          : !o->build_request                     ? "build_request"
                                                                  : "parse_response");
    if ((caps & PERKHUB_CAP_CALLBACK) && !o->verify_callback)
        return ph_err_set(err, PH_EINVAL,
                          "plugin '%s' (%s) claims callback but its ops table lacks "
                          "verify_callback",
                          p->name, p->path);
    if ((caps & PERKHUB_CAP_LOCAL) && !o->serve_local)
        return ph_err_set(err, PH_EINVAL,
                          "plugin '%s' (%s) claims local but its ops table lacks serve_local",
                          p->name, p->path);
    /* docs/design.md rule 2: an ambiguous order is settled only by a query. */
    uint64_t orders = caps & (PERKHUB_CAP_CARD_ORDER | PERKHUB_CAP_RECHARGE);
    if (orders && !(caps & PERKHUB_CAP_ORDER_QUERY))
        return ph_err_set(err, PH_EINVAL,
                          "plugin '%s' (%s) claims %s but not order_query: an ambiguous order "
                          "could never be settled (docs/design.md rule 2); add "
                          "PERKHUB_CAP_ORDER_QUERY",
                          p->name, p->path, cap_first(orders));
    return PH_OK;
}

/* ABI 1.1: capabilities need an ops table large enough for 1.1, copied like the
 * descriptor (only ops->struct_size bytes) into p->ops. */
static int ops_check(ph_plugin *p, ph_err *err)
{
    const struct perkhub_ops *o = p->desc.ops;
    uint64_t caps = p->desc.capabilities;
    p->desc.ops = NULL; /* until the copy below is made: never the plugin's table */
    if (!caps && o)
        return ph_err_set(err, PH_EINVAL,
                          "plugin '%s' (%s) sets ops but claims no capability; set capabilities "
                          "to the operations ops handles",
                          p->name, p->path);
    if (!caps)
        return PH_OK;
    if (!o)
        return ph_err_set(err, PH_EINVAL,
                          "plugin '%s' (%s) claims capabilities 0x%" PRIx64
                          " but its descriptor has no ops table",
                          p->name, p->path, caps);
    if (o->struct_size < OPS_SIZE_1_1)
        return ph_err_set(err, PH_EINVAL,
                          "plugin '%s' (%s): its ops table is %" PRIu32
                          " bytes, less than the %zu of SDK ABI 1.1",
                          p->name, p->path, o->struct_size, (size_t)OPS_SIZE_1_1);
    size_t n = o->struct_size < sizeof p->ops ? o->struct_size : sizeof p->ops;
    memset(&p->ops, 0, sizeof p->ops);
    memcpy(&p->ops, o, n);
    p->desc.ops = &p->ops;
    return ops_callbacks_check(p, err);
}

/* Checks a descriptor d returned by the entry function and copies it into p. */
static int descriptor_check(ph_plugin *p, const struct perkhub_plugin *d, ph_err *err)
{
    const char *nm = p->name, *path = p->path;
    if (!d)
        return ph_err_set(err, PH_EINVAL, "plugin '%s' (%s): %s() returned no descriptor", nm, path,
                          PERKHUB_ENTRY_SYMBOL);
    /* The first three members never move: they are safe to read at any ABI. */
    if (d->struct_size < offsetof(struct perkhub_plugin, name))
        return ph_err_set(err, PH_EINVAL,
                          "plugin '%s' (%s): descriptor size %" PRIu32
                          " is too small to be a perkhub descriptor",
                          nm, path, d->struct_size);
    if (d->abi_major != PERKHUB_ABI_MAJOR || d->abi_minor > PERKHUB_ABI_MINOR)
        return ph_err_set(err, PH_EVERSION,
                          "plugin '%s' (%s) is built for SDK ABI %u.%u; this perkhubd provides "
                          "%d.%d (%s)",
                          nm, path, (unsigned)d->abi_major, (unsigned)d->abi_minor,
                          PERKHUB_ABI_MAJOR, PERKHUB_ABI_MINOR,
                          d->abi_major != PERKHUB_ABI_MAJOR
                              ? "another major version: rebuild the plugin against this SDK"
                              : "newer than this perkhubd: upgrade perkhubd or rebuild the "
                                "plugin");
    if (d->struct_size < PERKHUB_PLUGIN_SIZE_1_0)
        return ph_err_set(err, PH_EVERSION,
                          "plugin '%s' (%s) is built for SDK ABI %u.%u but its descriptor is "
                          "%" PRIu32 " bytes, less than the %zu of ABI 1.0; this perkhubd "
                          "provides %d.%d",
                          nm, path, (unsigned)d->abi_major, (unsigned)d->abi_minor, d->struct_size,
                          (size_t)PERKHUB_PLUGIN_SIZE_1_0, PERKHUB_ABI_MAJOR, PERKHUB_ABI_MINOR);
    /* Never copy by our sizeof: only what the plugin says it has. */
    size_t n = d->struct_size < sizeof p->desc ? d->struct_size : sizeof p->desc;
    if (d->abi_minor == 0 && n > PERKHUB_PLUGIN_SIZE_1_0)
        n = PERKHUB_PLUGIN_SIZE_1_0; /* a 1.0 plugin has nothing beyond; never read it */
    memset(&p->desc, 0, sizeof p->desc);
    memcpy(&p->desc, d, n);

    if (!p->desc.name)
        return ph_err_set(err, PH_EINVAL, "plugin '%s' (%s): descriptor has no name", nm, path);
    if (strcmp(p->desc.name, nm) != 0)
        return ph_err_set(err, PH_EINVAL,
                          "plugin file '%s' (%s) declares the name '%.64s'; a plugin's file must "
                          "be named <name>.so",
                          nm, path, p->desc.name);
    if (!p->desc.version || !*p->desc.version)
        return ph_err_set(err, PH_EINVAL, "plugin '%s' (%s): descriptor has no version", nm, path);
    if (!p->desc.init || !p->desc.shutdown)
        return ph_err_set(err, PH_EINVAL, "plugin '%s' (%s): descriptor lacks %s", nm, path,
                          !p->desc.init ? "init" : "shutdown");
    if (p->desc.capabilities & ~PERKHUB_CAP_DEFINED)
        return ph_err_set(err, PH_EINVAL,
                          "plugin '%s' (%s) claims capability bits 0x%" PRIx64
                          " that SDK ABI %d.%d does not define (bits 10..63 are reserved)",
                          nm, path, p->desc.capabilities & ~PERKHUB_CAP_DEFINED, PERKHUB_ABI_MAJOR,
                          PERKHUB_ABI_MINOR);
    if ((p->desc.capabilities & PERKHUB_CAP_STATEMENT) && d->abi_minor < 2)
        return ph_err_set(err, PH_EINVAL,
                          "plugin '%s' (%s) claims PERKHUB_CAP_STATEMENT, which SDK ABI %u.%u "
                          "does not have (it came with 1.2)",
                          nm, path, (unsigned)d->abi_major, (unsigned)d->abi_minor);
    if ((p->desc.capabilities & PERKHUB_CAP_REDEMPTION) && d->abi_minor < 3)
        return ph_err_set(err, PH_EINVAL,
                          "plugin '%s' (%s) claims PERKHUB_CAP_REDEMPTION, which SDK ABI %u.%u "
                          "does not have (it came with 1.3)",
                          nm, path, (unsigned)d->abi_major, (unsigned)d->abi_minor);
    int rc = d->abi_minor == 0 ? caps_check_1_0(p, err) : ops_check(p, err);
    return rc != PH_OK ? rc : schema_check(p, err);
}

int ph_plugin_open(const char *dir, const char *name, ph_plugin **out, ph_err *err)
{
    ph_plugin *p = NULL;
    int rc;
    if (!dir || !*dir)
        return ph_err_set(err, PH_EINVAL, "plugin '%.64s': no plugin directory configured",
                          name ? name : "");
    if (!name_valid(name))
        return ph_err_set(err, PH_EINVAL,
                          "plugin name '%.64s' is not valid: expected 1..%d of [a-z0-9_]",
                          name ? name : "", NAME_MAX_LEN);
    p = calloc(1, sizeof *p);
    if (!p || !(p->name = strdup(name)) || asprintf(&p->path, "%s/%s.so", dir, name) < 0) {
        if (p)
            p->path = NULL;
        rc = ph_err_set(err, PH_ENOMEM, "plugin '%s': out of memory", name);
        goto fail;
    }
    struct stat st;
    if (stat(p->path, &st) != 0) {
        rc = ph_err_set(err, errno == ENOENT ? PH_ENOTFOUND : PH_EIO, "plugin '%s' (%s): %s", name,
                        p->path, errno == ENOENT ? "no such file" : strerror(errno));
        goto fail;
    }
    dlerror();
    p->handle = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
    if (!p->handle) {
        const char *why = dlerror();
        rc = ph_err_set(err, PH_EINVAL, "plugin '%s' (%s): cannot load: %s", name, p->path,
                        why ? why : "unknown dlopen error");
        goto fail;
    }
    dlerror();
    void *sym = dlsym(p->handle, PERKHUB_ENTRY_SYMBOL);
    if (!sym) {
        rc = ph_err_set(err, PH_EINVAL,
                        "plugin '%s' (%s) does not export %s(): not a perkhub plugin "
                        "(define the entry with PERKHUB_EXPORT)",
                        name, p->path, PERKHUB_ENTRY_SYMBOL);
        goto fail;
    }
    perkhub_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry); /* POSIX: object to function pointer */
    rc = descriptor_check(p, entry(), err);
    if (rc != PH_OK)
        goto fail;
    *out = p;
    return PH_OK;
fail:
    ph_plugin_close(p);
    return rc;
}

int ph_plugin_wrap(const struct perkhub_plugin *desc, const char *name, ph_plugin **out,
                   ph_err *err)
{
    if (!name_valid(name))
        return ph_err_set(err, PH_EINVAL,
                          "plugin name '%.64s' is not valid: expected 1..%d of [a-z0-9_]",
                          name ? name : "", NAME_MAX_LEN);
    ph_plugin *p = calloc(1, sizeof *p);
    if (!p || !(p->name = strdup(name)) || !(p->path = strdup("linked in"))) {
        ph_plugin_close(p);
        return ph_err_set(err, PH_ENOMEM, "plugin '%s': out of memory", name);
    }
    int rc = descriptor_check(p, desc, err);
    if (rc != PH_OK) {
        ph_plugin_close(p);
        return rc;
    }
    *out = p;
    return PH_OK;
}

void ph_plugin_close(ph_plugin *p)
{
    if (!p)
        return;
    if (p->handle)
        dlclose(p->handle);
    free(p->name);
    free(p->path);
    free(p);
}

const struct perkhub_plugin *ph_plugin_descriptor(const ph_plugin *p)
{
    return &p->desc;
}

const struct perkhub_ops *ph_plugin_ops(const ph_plugin *p)
{
    return p->desc.ops;
}

const char *ph_plugin_name(const ph_plugin *p)
{
    return p->name;
}

const char *ph_plugin_path(const ph_plugin *p)
{
    return p->path;
}

int ph_plugin_describe(const ph_plugin *p, FILE *out)
{
    const struct perkhub_plugin *d = &p->desc;
    fprintf(out, "plugin: %s %s (SDK ABI %u.%u, %s)\n", d->name, d->version, (unsigned)d->abi_major,
            (unsigned)d->abi_minor, p->path);
    if (d->description)
        fprintf(out, "description: %s\n", d->description);
    fprintf(out, "capabilities:%s", d->capabilities ? "" : " none");
    for (unsigned i = 0; i < 64; i++)
        if (d->capabilities & (UINT64_C(1) << i)) {
            if (i < sizeof cap_names / sizeof cap_names[0])
                fprintf(out, " %s", cap_names[i]);
            else
                fprintf(out, " bit%u", i);
        }
    fputc('\n', out);
    if (d->capabilities & PERKHUB_CAP_ORDER_QUERY)
        fprintf(out,
                "order queries: first after %" PRIu32 " ms, not_found settles after %" PRIu32
                " s\n",
                d->query_delay_ms ? d->query_delay_ms : 1000,
                d->processing_window_s ? d->processing_window_s : 300);
    fprintf(out, "config:%s\n", p->nkeys ? "" : " none");
    for (size_t i = 0; i < p->nkeys; i++) {
        const struct perkhub_config_key *k = &d->config[i];
        fprintf(out, "  %s (%s, %s", k->key, type_name(k->type),
                k->required ? "required" : "optional");
        if (k->default_value)
            fprintf(out, ", default \"%s\"", k->default_value);
        fprintf(out, "): %s\n", k->description);
    }
    return ferror(out) ? PH_EIO : PH_OK;
}

/* ---- resolving a supplier's config ------------------------------------------- */

/* A secret file is read only when it is a regular file no one but its owner
 * may read or write (mode 0600 or stricter): a key other users can read is a
 * key that leaked. Checked on the descriptor read from, so the file checked
 * is the file read (a symlink is followed to its target, as open follows it). */
static int secret_from_file(const char *sid, const char *key, const char *path, char **out,
                            ph_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return ph_err_set(err, PH_EIO,
                          "supplier '%s': config key '%s': cannot read secret file %s: %s", sid,
                          key, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ph_err_set(err, PH_EINVAL,
                          "supplier '%s': config key '%s': secret file %s is not a regular file",
                          sid, key, path);
    }
    if (st.st_mode & 077) {
        close(fd);
        return ph_err_set(err, PH_EINVAL,
                          "supplier '%s': config key '%s': secret file %s is mode %04o: others "
                          "than its owner may use it; chmod 600 it",
                          sid, key, path, (unsigned)(st.st_mode & 07777));
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return ph_err_set(err, PH_ENOMEM, "supplier '%s': out of memory", sid);
    }
    char *buf = malloc(SECRET_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, SECRET_FILE_MAX + 1, f) : 0;
    int bad = buf ? ferror(f) : 0;
    fclose(f);
    int rc = PH_OK;
    if (!buf)
        return ph_err_set(err, PH_ENOMEM, "supplier '%s': out of memory", sid);
    if (bad)
        rc = ph_err_set(err, PH_EIO, "supplier '%s': config key '%s': cannot read secret file %s",
                        sid, key, path);
    else if (n > SECRET_FILE_MAX)
        rc = ph_err_set(err, PH_EINVAL,
                        "supplier '%s': config key '%s': secret file %s is larger "
                        "than %d bytes",
                        sid, key, path, SECRET_FILE_MAX);
    if (rc == PH_OK) {
        if (n > 0 && buf[n - 1] == '\n')
            n--;
        if (n > 0 && buf[n - 1] == '\r')
            n--;
        buf[n] = '\0';
        if (n == 0 || memchr(buf, '\0', n))
            rc = ph_err_set(err, PH_EINVAL, "supplier '%s': config key '%s': secret file %s is %s",
                            sid, key, path, n == 0 ? "empty" : "not text");
    }
    if (rc != PH_OK) {
        ph_wipe(buf, SECRET_FILE_MAX + 1);
        free(buf);
        return rc;
    }
    *out = strdup(buf);
    ph_wipe(buf, SECRET_FILE_MAX + 1);
    free(buf);
    return *out ? PH_OK : ph_err_set(err, PH_ENOMEM, "supplier '%s': out of memory", sid);
}

/* Resolves a SECRET reference. Messages name the variable or file, never a
 * value. */
static int secret_resolve(const char *sid, const char *key, const char *ref, char **out,
                          ph_err *err)
{
    if (!is_secret_ref(ref))
        return ph_err_set(err, PH_EINVAL,
                          "supplier '%s': config key '%s' is a secret: write it as env:NAME or "
                          "file:PATH, not inline",
                          sid, key);
    if (ref[0] == 'f')
        return secret_from_file(sid, key, ref + 5, out, err);
    const char *v = getenv(ref + 4);
    if (!v || !*v)
        return ph_err_set(err, PH_EINVAL,
                          "supplier '%s': config key '%s': environment variable %.64s is %s", sid,
                          key, ref + 4, v ? "empty" : "not set");
    *out = strdup(v);
    return *out ? PH_OK : ph_err_set(err, PH_ENOMEM, "supplier '%s': out of memory", sid);
}

/* Checks value against its schema entry and stores the resolved text in *out.
 * `plain`: a SECRET value is the secret itself (test harnesses only). */
static int value_resolve(const char *sid, const struct perkhub_config_key *k, const char *value,
                         int plain, char **out, ph_err *err)
{
    int64_t iv;
    int bv;
    switch (k->type) {
    case PERKHUB_CONF_SECRET:
        if (!plain)
            return secret_resolve(sid, k->key, value, out, err);
        if (!*value)
            return ph_err_set(err, PH_EINVAL, "supplier '%s': config key '%s': secret is empty",
                              sid, k->key);
        break;
    case PERKHUB_CONF_INT:
        /* Values are never quoted back: one may be a secret pasted into the wrong key. */
        if (ldr_parse_int(value, &iv) != 0)
            return ph_err_set(err, PH_EINVAL,
                              "supplier '%s': config key '%s': expected an integer (int64)", sid,
                              k->key);
        break;
    case PERKHUB_CONF_BOOL:
        if (ldr_parse_bool(value, &bv) != 0)
            return ph_err_set(err, PH_EINVAL,
                              "supplier '%s': config key '%s': expected true or false (also "
                              "yes/no, on/off)",
                              sid, k->key);
        break;
    default:
        break;
    }
    *out = strdup(value);
    return *out ? PH_OK : ph_err_set(err, PH_ENOMEM, "supplier '%s': out of memory", sid);
}

/* 1 when kv sets key (then a problem with its value was reported already). */
static int ldr_kv_has(const ph_kv *kv, size_t nkv, const char *key)
{
    for (size_t j = 0; j < nkv; j++)
        if (kv[j].key && strcmp(kv[j].key, key) == 0)
            return 1;
    return 0;
}

static int unknown_key(const ph_plugin *p, const char *sid, const char *key, ph_err *err)
{
    char known[256] = "";
    size_t len = 0;
    for (size_t i = 0; i < p->nkeys && len < sizeof known; i++)
        len += (size_t)snprintf(known + len, sizeof known - len, "%s%s", i ? ", " : "",
                                p->desc.config[i].key);
    if (p->nkeys == 0)
        return ph_err_set(err, PH_EINVAL,
                          "supplier '%s': config key '%.64s' is not known to plugin '%s' (it "
                          "takes no config)",
                          sid, key, p->name);
    return ph_err_set(err, PH_EINVAL,
                      "supplier '%s': config key '%.64s' is not known to plugin "
                      "'%s' (known: %s)",
                      sid, key, p->name, known);
}

/* A problem with kv[at] (PH_CONF_NO_KEY: with the mapping). Without a report
 * function the first problem ends the resolution (returns 1); with one, each
 * is reported, the first is kept in err and *first, and resolution goes on. */
static int conf_problem(ph_conf_report_fn report, void *arg, size_t at, int rc, ph_err *err,
                        int *first, ph_err *first_err)
{
    if (*first == PH_OK) {
        *first = rc;
        if (err)
            *first_err = *err;
    }
    if (!report || rc == PH_ENOMEM)
        return 1;
    report(arg, at, err);
    return 0;
}

static int conf_resolve(const ph_plugin *p, const char *supplier_id, const ph_kv *kv, size_t nkv,
                        int plain, ph_conf_report_fn report, void *arg, ph_plugin_conf **out,
                        ph_err *err)
{
    const char *sid = supplier_id ? supplier_id : "?";
    int rc = PH_OK, first = PH_OK;
    ph_err one = {0}, first_err = {0};
    ph_plugin_conf *c = calloc(1, sizeof *c);
    if (!c || (p->nkeys && !(c->v = calloc(p->nkeys, sizeof *c->v)))) {
        rc = ph_err_set(err, PH_ENOMEM, "supplier '%s': out of memory", sid);
        goto fail;
    }
    c->n = p->nkeys;
    for (size_t i = 0; i < c->n; i++)
        c->v[i].schema = &p->desc.config[i];
    for (size_t j = 0; j < nkv; j++) {
        const char *key = kv[j].key ? kv[j].key : "";
        size_t i = 0, dup = 0;
        while (i < c->n && strcmp(c->v[i].schema->key, key) != 0)
            i++;
        for (size_t m = 0; m < j; m++)
            dup |= kv[m].key && strcmp(kv[m].key, key) == 0;
        if (i == c->n)
            rc = unknown_key(p, sid, key, &one);
        else if (dup)
            rc = ph_err_set(&one, PH_EINVAL, "supplier '%s': config key '%s' is set twice", sid,
                            key);
        else
            rc = value_resolve(sid, c->v[i].schema, kv[j].value ? kv[j].value : "", plain,
                               &c->v[i].value, &one);
        if (rc != PH_OK && conf_problem(report, arg, j, rc, &one, &first, &first_err))
            goto fail;
    }
    for (size_t i = 0; i < c->n; i++) {
        const struct perkhub_config_key *k = c->v[i].schema;
        if (c->v[i].value)
            continue;
        rc = PH_OK;
        if (k->required && !ldr_kv_has(kv, nkv, k->key))
            rc = ph_err_set(&one, PH_EINVAL,
                            "supplier '%s': config key '%s' is required by plugin '%s'", sid,
                            k->key, p->name);
        else if (!k->required && k->default_value)
            rc = value_resolve(sid, k, k->default_value, 0, &c->v[i].value, &one);
        if (rc != PH_OK && conf_problem(report, arg, PH_CONF_NO_KEY, rc, &one, &first, &first_err))
            goto fail;
    }
    if (first != PH_OK) {
        rc = first;
        goto fail;
    }
    *out = c;
    return PH_OK;
fail:
    if (first != PH_OK && err) {
        *err = first_err;
        rc = first;
    } else if (rc != PH_OK && err && rc != PH_ENOMEM) {
        *err = one;
    }
    ph_plugin_conf_free(c);
    return rc;
}

int ph_plugin_conf_resolve(const ph_plugin *p, const char *supplier_id, const ph_kv *kv, size_t nkv,
                           ph_plugin_conf **out, ph_err *err)
{
    return conf_resolve(p, supplier_id, kv, nkv, 0, NULL, NULL, out, err);
}

int ph_plugin_conf_resolve_all(const ph_plugin *p, const char *supplier_id, const ph_kv *kv,
                               size_t nkv, ph_conf_report_fn report, void *arg,
                               ph_plugin_conf **out, ph_err *err)
{
    return conf_resolve(p, supplier_id, kv, nkv, 0, report, arg, out, err);
}

int ph_plugin_conf_resolve_plain(const ph_plugin *p, const char *supplier_id, const ph_kv *kv,
                                 size_t nkv, ph_plugin_conf **out, ph_err *err)
{
    return conf_resolve(p, supplier_id, kv, nkv, 1, NULL, NULL, out, err);
}

int ph_plugin_conf_equal(const ph_plugin_conf *a, const ph_plugin_conf *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++) {
        const char *x = a->v[i].value, *y = b->v[i].value;
        if (strcmp(a->v[i].schema->key, b->v[i].schema->key) != 0 || (!x != !y) ||
            (x && strcmp(x, y) != 0))
            return 0;
    }
    return 1;
}

void ph_plugin_conf_free(ph_plugin_conf *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i].value) {
            ph_wipe(c->v[i].value, strlen(c->v[i].value));
            free(c->v[i].value);
        }
    free(c->v);
    free(c);
}

const conf_value *ldr_conf_find(const struct perkhub_config *c, const char *key)
{
    for (size_t i = 0; c && key && i < c->n; i++)
        if (strcmp(c->v[i].schema->key, key) == 0)
            return &c->v[i];
    return NULL;
}
