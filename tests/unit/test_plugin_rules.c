/*
 * test_plugin_rules.c — docs/design.md rule 5 ("plugins translate; the core does
 * I/O"), checked on the built plugins themselves: no plugin imports a function
 * that opens a socket or a file, starts a thread or a process, sleeps,
 * installs a signal handler or allocates behind the host's back, and each
 * exports exactly one symbol, the entry.
 * A plugin that called connect() or pthread_create() would fail here even if
 * its own tests passed.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const forbidden[] = {
    "socket",
    "connect",
    "bind",
    "listen",
    "accept",
    "send",
    "sendto",
    "recv",
    "recvfrom",
    "getaddrinfo",
    "gethostbyname",
    "open",
    "open64",
    "openat",
    "fopen",
    "fopen64",
    "creat",
    "pthread_create",
    "fork",
    "vfork",
    "execve",
    "execv",
    "execvp",
    "system",
    "popen",
    "sleep",
    "usleep",
    "nanosleep",
    "signal",
    "sigaction",
    "curl_easy_init",
    "curl_multi_init",
    "dlopen",
    /* memory comes from the host (accounted per instance); what jansson returns
     * (json_dumps) goes back through jansson's own free (json_get_alloc_funcs):
     * perkhubd gives jansson an allocator that wipes, and free() on its blocks
     * is an invalid free */
    "malloc",
    "calloc",
    "realloc",
    "strdup",
    "free",
    NULL,
};

/* Runs nm on path with args; returns its output (caller frees). */
static char *nm(const char *args, const char *path)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "nm -D %s '%s' 2>&1", args, path);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "cannot run nm");
    char *out = NULL;
    size_t cap = 0, len = 0;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            out = realloc(out, cap);
            cr_assert(out);
        }
        memcpy(out + len, buf, n);
        len += n;
    }
    cr_assert_eq(pclose(p), 0, "nm failed on %s", path);
    if (!out)
        out = calloc(1, 1);
    out[len] = 0;
    return out;
}

/* 1 when the nm listing names symbol `sym` (possibly versioned: sym@GLIBC_2.2.5). */
static int lists(const char *listing, const char *sym)
{
    size_t n = strlen(sym);
    for (const char *line = listing; line && *line;) {
        const char *end = strchr(line, '\n');
        const char *name = end ? end : line + strlen(line);
        while (name > line && name[-1] != ' ')
            name--;
        if (!strncmp(name, sym, n) && (name[n] == '\n' || name[n] == '@' || name[n] == 0))
            return 1;
        line = end ? end + 1 : NULL;
    }
    return 0;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

Test(plugin_rules, plugins_do_no_io_and_export_only_the_entry)
{
    const char *dir = getenv("PH_PLUGIN_DIR");
    cr_assert(dir, "PH_PLUGIN_DIR is not set (run through ctest)");
    DIR *dh = opendir(dir);
    cr_assert(dh, "cannot open %s", dir);
    int checked = 0;
    struct dirent *e;
    while ((e = readdir(dh))) {
        size_t l = strlen(e->d_name);
        if (l < 4 || strcmp(e->d_name + l - 3, ".so"))
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        char *undef = nm("--undefined-only", path);
        for (size_t i = 0; forbidden[i]; i++)
            cr_expect(!lists(undef, forbidden[i]), "%s imports %s()", e->d_name, forbidden[i]);
        free(undef);
        char *defs = nm("--defined-only --extern-only", path);
        cr_expect(lists(defs, "perkhub_plugin_entry"), "%s lacks the entry symbol", e->d_name);
        cr_expect_eq(count_lines(defs), 1, "%s exports more than its entry:\n%s", e->d_name, defs);
        free(defs);
        checked++;
    }
    closedir(dh);
    cr_assert_geq(checked, 4, "expected the gateway, rewards, sandbox, example and manual plugins");
}
