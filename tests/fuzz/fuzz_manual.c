/*
 * fuzz_manual.c — the manual plugin (plugins/manual, compiled in) has no
 * operations: its only input is a supplier's `config:` block. This harness
 * feeds arbitrary blocks through what perkhubd does at load (the kit runs the
 * loader's checks, resolves the block against the plugin's schema with the
 * core's own value parsers, then calls init), so the core's schema resolution
 * is fuzzed with it, for every plugin alike.
 *
 * Input: up to 8 pairs "key=value", each ended by a NUL byte (a pair without
 * '=' is a key with an empty value); a value may hold any other byte, line
 * breaks included, as a quoted YAML scalar can. Blocks the configuration's parser would refuse
 * before any plugin sees them (a key not of 1..128 bytes of [A-Za-z0-9_.-], a key twice, a NUL in a
 * value: core/config/config_parse.c, parse_setting) are skipped.
 * Checks: a refusal comes with a one-line reason; an accepted block starts an
 * instance that holds host blocks, and every line the instance logs is one log
 * line of the core's format (a config value cannot start a line of its own).
 */
#include "fuzz_plugin.h"

#define FZ_PAIRS 8

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static void fz_check_log(const char *log)
{
    for (const char *line = log; *line;) {
        FZ_CHECK(strncmp(line, "ts=", 3) == 0, "a log line not of the core's format");
        const char *nl = strchr(line, '\n');
        FZ_CHECK(nl, "a log line without its end");
        line = nl + 1;
    }
}

/* What parse_setting lets through to a plugin. */
static int fz_block_possible(const char *const *kv, size_t n, const size_t *vlen)
{
    for (size_t i = 0; i < n; i += 2) {
        size_t klen = strlen(kv[i]);
        if (klen < 1 || klen > 128 ||
            strspn(kv[i], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") !=
                klen ||
            strlen(kv[i + 1]) != vlen[i / 2])
            return 0;
        for (size_t j = 0; j < i; j += 2)
            if (strcmp(kv[i], kv[j]) == 0)
                return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_cursor c = {data, size};
    char *strs[2 * FZ_PAIRS];
    const char *kv[2 * FZ_PAIRS + 1];
    size_t n = 0, vlen[FZ_PAIRS];
    while (c.left && n < 2 * FZ_PAIRS) {
        size_t len;
        const char *line = fz_part(&c, '\0', &len);
        const char *eq = memchr(line, '=', len);
        size_t klen = eq ? (size_t)(eq - line) : len;
        strs[n] = fz_strndup(line, klen);
        strs[n + 1] = eq ? fz_strndup(eq + 1, len - klen - 1) : fz_strndup("", 0);
        vlen[n / 2] = eq ? len - klen - 1 : 0;
        kv[n] = strs[n];
        kv[n + 1] = strs[n + 1];
        n += 2;
    }
    kv[n] = NULL;

    char err[256] = "";
    phtk *tk = NULL;
    if (!fz_block_possible(kv, n, vlen))
        goto done;
    tk = phtk_open(perkhub_plugin_entry(), kv, err, sizeof err);
    if (!tk) {
        FZ_CHECK(err[0] && !strpbrk(err, "\r\n"), "refusal without a one-line reason");
    } else {
        size_t blocks = phtk_blocks(tk);
        FZ_CHECK(blocks >= 1, "an instance that holds no block");
        fz_check_log(phtk_log(tk));
        phtk_close(tk);
    }
done:
    for (size_t i = 0; i < n; i++)
        free(strs[i]);
    return 0;
}
