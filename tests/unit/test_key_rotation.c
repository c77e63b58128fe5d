/*
 * test_key_rotation.c — key rotation below the daemon: the key file edits of
 * `perkhubd keys` (crypto/keyfile.c), the store's counting and re-seal step
 * and its PH_CMD_RESEAL command (store/store_reseal.c), and the command line
 * itself (daemon/keys_cmd.c) on a temporary config.
 */
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/code.h"
#include "store/cmd_codec.h"
#include "daemon/keys.h"
#include "store_fixture.h"

TestSuite(rotation, .init = fixture_setup, .fini = fixture_teardown);

static char g_keys[160];

static void keyfile_new(void)
{
    snprintf(g_keys, sizeof g_keys, "%s/master.key", g_base);
    ph_err err = {0};
    cr_assert_eq(ph_keyfile_create(g_keys, &err), PH_OK, "%s", err.msg);
}

static ph_keyring *load(void)
{
    ph_keyring *kr = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_keyring_load(g_keys, 0, &kr, &err), PH_OK, "%s", err.msg);
    return kr;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s", path);
    static char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* ---- the key file -------------------------------------------------------------- */

Test(rotation, create_refuses_to_overwrite)
{
    keyfile_new();
    struct stat st;
    cr_assert_eq(stat(g_keys, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    char before[4096];
    snprintf(before, sizeof before, "%s", slurp(g_keys));
    ph_err err = {0};
    cr_assert_eq(ph_keyfile_create(g_keys, &err), PH_EDUP);
    cr_assert(strstr(err.msg, "refusing to overwrite"), "%s", err.msg);
    cr_assert_str_eq(slurp(g_keys), before);
}

Test(rotation, add_appends_the_next_id_and_keeps_the_rest)
{
    keyfile_new();
    FILE *f = fopen(g_keys, "a");
    fputs("# a note of ours\n", f);
    fclose(f);
    uint16_t id = 0;
    ph_err err = {0};
    cr_assert_eq(ph_keyfile_add(g_keys, &id, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(id, 2);
    cr_assert(strstr(slurp(g_keys), "# a note of ours\nkey 2 "));
    struct stat st;
    cr_assert_eq(stat(g_keys, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    ph_keyring *kr = load();
    cr_assert_eq(ph_keyring_active_id(kr), 2);
    cr_assert(ph_keyring_has(kr, 1));
    ph_keyring_free(kr);
}

Test(rotation, add_refuses_a_file_others_can_read_and_changes_nothing)
{
    keyfile_new();
    cr_assert_eq(chmod(g_keys, 0644), 0);
    uint16_t id = 0;
    ph_err err = {0};
    cr_assert_eq(ph_keyfile_add(g_keys, &id, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "chmod 600"), "%s", err.msg);
    cr_assert_null(strstr(slurp(g_keys), "key 2"));
}

/* A failed add leaves its id 0 (asserted on the test's thread). */
static void *adder(void *arg)
{
    uint16_t *id = arg;
    ph_err err = {0};
    if (ph_keyfile_add(g_keys, id, &err) != PH_OK)
        *id = 0;
    return NULL;
}

/* The flock: concurrent adds never hand out one id twice or lose a key. */
Test(rotation, concurrent_adds_get_distinct_ids)
{
    keyfile_new();
    pthread_t t[8];
    uint16_t ids[8] = {0};
    for (int i = 0; i < 8; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, adder, &ids[i]), 0);
    int seen[16] = {0};
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        cr_assert(ids[i] >= 2 && ids[i] <= 9, "id %u", ids[i]);
        cr_assert_eq(seen[ids[i]]++, 0, "id %u twice", ids[i]);
    }
    ph_keyring *kr = load();
    cr_assert_eq(ph_keyring_active_id(kr), 9);
    for (uint16_t k = 1; k <= 9; k++)
        cr_assert(ph_keyring_has(kr, k), "key %u lost", k);
    ph_keyring_free(kr);
}

Test(rotation, remove_takes_one_line_never_the_newest)
{
    keyfile_new();
    uint16_t id;
    ph_err err = {0};
    cr_assert_eq(ph_keyfile_add(g_keys, &id, &err), PH_OK);
    cr_assert_eq(ph_keyfile_remove(g_keys, 2, &err), PH_ESTATE);
    cr_assert(strstr(err.msg, "key 2 is the newest key"), "%s", err.msg);
    cr_assert_eq(ph_keyfile_remove(g_keys, 7, &err), PH_ENOTFOUND);
    cr_assert(strstr(err.msg, "no key 7"), "%s", err.msg);
    cr_assert_eq(ph_keyfile_remove(g_keys, 1, &err), PH_OK, "%s", err.msg);
    const char *t = slurp(g_keys);
    cr_assert_null(strstr(t, "key 1 "));
    cr_assert(strstr(t, "index ") && strstr(t, "key 2 ") && strstr(t, "# perkhub master keys"));
    ph_keyring *kr = load();
    cr_assert(!ph_keyring_has(kr, 1));
    ph_keyring_free(kr);
}

/* ---- the store ------------------------------------------------------------------ */

/* Imports n codes "RC-<i>" sealed with kr into IQ. */
static void import_sealed(const ph_keyring *kr, int n)
{
    ph_import_code *codes = calloc((size_t)n, sizeof *codes);
    uint32_t *by_hash = calloc((size_t)n, sizeof *by_hash);
    uint8_t(*blob)[64] = calloc((size_t)n, sizeof *blob);
    for (int i = 0; i < n; i++) {
        char code[32];
        size_t len;
        int cl = snprintf(code, sizeof code, "RC-%d", i);
        cr_assert_eq(ph_code_seal(kr, code, (size_t)cl, NULL, 0, blob[i], &len, codes[i].hash),
                     PH_OK);
        codes[i] = (ph_import_code){.line = (uint32_t)i + 1,
                                    .sealed = blob[i],
                                    .sealed_len = (uint32_t)len,
                                    .expires_at = 0};
        cr_assert_eq(ph_code_hash(kr, code, (size_t)cl, NULL, codes[i].hash), PH_OK);
    }
    for (int i = 0; i < n; i++)
        by_hash[i] = (uint32_t)i;
    for (int i = 1; i < n; i++) /* insertion sort by hash */
        for (int j = i; j > 0 && memcmp(codes[by_hash[j - 1]].hash, codes[by_hash[j]].hash, 32) > 0;
             j--) {
            uint32_t t = by_hash[j];
            by_hash[j] = by_hash[j - 1];
            by_hash[j - 1] = t;
        }
    ph_cmd c = {.type = PH_CMD_IMPORT, .now = NOW};
    c.in.import.supplier = "sup-a";
    c.in.import.sku = IQ;
    c.in.import.note = "rotation";
    c.in.import.unit_cost = 100;
    c.in.import.codes = codes;
    c.in.import.ncodes = (size_t)n;
    c.in.import.by_hash = by_hash;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    free(codes);
    free(by_hash);
    free(blob);
}

static ph_store *open_keyed(const ph_keyring *kr)
{
    ph_store_opts o = {.dir = g_dir, .keys = kr};
    ph_store *s = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_store_open(&o, &s, &err), PH_OK, "%s", err.msg);
    return s;
}

static uint64_t codes_under(uint16_t id)
{
    ph_key_use use[PH_KEY_USE_MAX];
    size_t n = 0;
    ph_err err = {0};
    cr_assert_eq(ph_store_key_use(g_s, use, &n, &err), PH_OK, "%s", err.msg);
    for (size_t i = 0; i < n; i++)
        if (use[i].id == id)
            return use[i].codes;
    return 0;
}

/* Code RC-i reads back as itself under kr. */
static void assert_reads(const ph_keyring *kr, int i, uint16_t sealed_with)
{
    char code[32], got[PH_CODE_MAX + 1], card[PH_CODE_MAX + 1];
    int cl = snprintf(code, sizeof code, "RC-%d", i);
    uint8_t hash[32];
    cr_assert_eq(ph_code_hash(kr, code, (size_t)cl, NULL, hash), PH_OK);
    ph_code_info info = {0};
    ph_err err = {0};
    cr_assert_eq(ph_store_code_find(g_s, hash, &info, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ph_sealed_key_id(info.code.sealed, info.code.sealed_len), sealed_with);
    cr_assert_eq(ph_code_unseal(kr, info.code.sealed, info.code.sealed_len, got, card), PH_OK);
    cr_assert_str_eq(got, code);
    ph_code_info_clear(&info);
}

Test(rotation, reseal_moves_codes_skips_changed_items_and_forgets_retired_checks)
{
    keyfile_new();
    ph_keyring *k1 = load();
    g_s = open_keyed(k1);
    const char *const all[] = {P_IQ};
    cr_assert_eq(put_products(all, 1, NULL), PH_OK);
    import_sealed(k1, 30);
    ph_store_close(g_s);
    uint16_t id;
    ph_err err = {0};
    cr_assert_eq(ph_keyfile_add(g_keys, &id, &err), PH_OK);
    ph_keyring *k2 = load();
    g_s = open_keyed(k2);
    cr_assert_eq(codes_under(1), 30);

    /* an item whose stored value is not the one read is skipped, untouched */
    ph_code_info info = {0};
    uint8_t hash[32], neu[64];
    cr_assert_eq(ph_code_hash(k2, "RC-0", 4, NULL, hash), PH_OK);
    cr_assert_eq(ph_store_code_find(g_s, hash, &info, &err), PH_OK);
    uint8_t stale[64];
    memcpy(stale, info.code.sealed, info.code.sealed_len);
    stale[5] ^= 1;
    memcpy(neu, info.code.sealed, info.code.sealed_len);
    neu[0] = 0, neu[1] = 2;
    ph_reseal_item it = {PH_SEALED_CODE, info.code.id, info.code.sealed_len, stale, neu};
    ph_cmd c = {.type = PH_CMD_RESEAL, .now = NOW};
    c.in.reseal.key_id = 2;
    c.in.reseal.items = &it;
    c.in.reseal.n = 1;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.resealed, 0);
    cr_assert_eq(c.reseal_skipped, 1);
    ph_cmd_clear(&c);
    /* a new value not sealed with key_id, and a key without a check value, are refused */
    it.old_sealed = info.code.sealed;
    neu[1] = 1;
    c = (ph_cmd){.type = PH_CMD_RESEAL, .now = NOW};
    c.in.reseal.key_id = 2;
    c.in.reseal.items = &it;
    c.in.reseal.n = 1;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_EINVAL);
    ph_cmd_clear(&c);
    c = (ph_cmd){.type = PH_CMD_RESEAL, .now = NOW};
    c.in.reseal.key_id = 9;
    c.in.reseal.items = &it;
    c.in.reseal.n = 1;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_ESTATE);
    cr_assert(strstr(c.err.msg, "key 9"), "%s", c.err.msg);
    ph_cmd_clear(&c);
    ph_code_info_clear(&info);
    assert_reads(k2, 0, 1);

    /* steps of 8: everything moves, every code reads the same */
    ph_reseal_pos pos = {0};
    uint64_t moved = 0;
    int steps = 0;
    while (pos.phase < 2) {
        ph_reseal_step_result res;
        cr_assert_eq(ph_store_reseal_step(g_s, 1, &pos, 8, NULL, &res, &err), PH_OK, "%s", err.msg);
        cr_assert_leq(res.moved, 8);
        cr_assert_eq(res.skipped + res.unreadable, 0);
        moved += res.moved;
        steps++;
    }
    cr_assert_eq(moved, 30);
    cr_assert_geq(steps, 4);
    cr_assert_eq(codes_under(1), 0);
    cr_assert_eq(codes_under(2), 30);
    for (int i = 0; i < 30; i++)
        assert_reads(k2, i, 2);
    assert_check();

    /* key 1's check value can go now; never the key data moves to */
    uint16_t forget = 2;
    c = (ph_cmd){.type = PH_CMD_RESEAL, .now = NOW};
    c.in.reseal.key_id = 2;
    c.in.reseal.forget = &forget;
    c.in.reseal.nforget = 1;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_EINVAL);
    ph_cmd_clear(&c);
    forget = 1;
    c = (ph_cmd){.type = PH_CMD_RESEAL, .now = NOW};
    c.in.reseal.key_id = 2;
    c.in.reseal.forget = &forget;
    c.in.reseal.nforget = 1;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    uint16_t ids[8];
    size_t n = ph_store_key_ids(g_s, ids, 8);
    cr_assert_eq(n, 1);
    cr_assert_eq(ids[0], 2);
    ph_store_close(g_s);
    g_s = NULL;

    /* without key 1 in the file the store opens and every code reads */
    cr_assert_eq(ph_keyfile_remove(g_keys, 1, &err), PH_OK, "%s", err.msg);
    ph_keyring *k3 = load();
    g_s = open_keyed(k3);
    for (int i = 0; i < 30; i++)
        assert_reads(k3, i, 2);
    assert_check();
    ph_store_close(g_s);
    g_s = NULL;
    ph_keyring_free(k1);
    ph_keyring_free(k2);
    ph_keyring_free(k3);
}

/* ---- the command line ------------------------------------------------------------- */

static int run_keys(const char *a1, const char *a2, char *out, size_t outn, char *errb, size_t errn)
{
    char cfg[200];
    snprintf(cfg, sizeof cfg, "%s/perkhub.yaml", g_base);
    snprintf(g_keys, sizeof g_keys, "%s/master.key", g_base);
    char *yaml = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&yaml, &len);
    fprintf(m, "data_dir: %s\nmaster_key_file: %s/master.key\n", g_dir, g_base);
    fclose(m);
    FILE *f = fopen(cfg, "w");
    fputs(yaml, f);
    fclose(f);
    free(yaml);
    char *argv[] = {(char *)"keys", (char *)a1, (char *)a2, NULL};
    FILE *o = fmemopen(out, outn, "w"), *e = fmemopen(errb, errn, "w");
    int rc = ph_keys_main(cfg, a2 ? 2 : 1, argv + 1, o, e);
    fclose(o);
    fclose(e);
    return rc;
}

Test(rotation, the_command_line)
{
    char out[4096], err[4096];
    cr_assert_eq(run_keys("create", NULL, out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(out, "created (mode 0600)"), "%s", out);
    cr_assert_eq(run_keys("create", NULL, out, sizeof out, err, sizeof err), 1);
    cr_assert(strstr(err, "refusing to overwrite"), "%s", err);
    cr_assert_eq(run_keys("list", NULL, out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(out, "(no store yet)") && strstr(out, "newest: seals new data"), "%s", out);
    cr_assert_eq(run_keys("add", NULL, out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(out, "added key 2"), "%s", out);
    cr_assert_eq(run_keys("retire", "0", out, sizeof out, err, sizeof err), 2);
    cr_assert(strstr(err, "ID: expected a key id 1..65535"), "%s", err);
    cr_assert_eq(run_keys("retire", "index", out, sizeof out, err, sizeof err), 1);
    cr_assert_eq(run_keys("retire", "2", out, sizeof out, err, sizeof err), 1);
    cr_assert(strstr(err, "key 2 is the newest key"), "%s", err);
    cr_assert_eq(run_keys("rotate", NULL, out, sizeof out, err, sizeof err), 2);
    /* no store yet: nothing is sealed with key 1 */
    cr_assert_eq(run_keys("retire", "1", out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(out, "key 1 removed"), "%s", out);
    cr_assert_eq(run_keys("retire", "1", out, sizeof out, err, sizeof err), 1);
    cr_assert(strstr(err, "has no key 1"), "%s", err);
}

/* A store last opened with key 1 as its newest: a daemon started before `keys
 * add` may still seal with key 1, so retiring it waits for a restart. */
Test(rotation, retire_waits_for_a_restart_with_the_new_key)
{
    char out[4096], err[4096];
    cr_assert_eq(run_keys("create", NULL, out, sizeof out, err, sizeof err), 0, "%s", err);
    ph_keyring *k1 = load();
    g_s = open_keyed(k1); /* records key 1's check: "the running daemon" */
    ph_store_close(g_s);
    g_s = NULL;
    cr_assert_eq(run_keys("add", NULL, out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert_eq(run_keys("retire", "1", out, sizeof out, err, sizeof err), 1);
    cr_assert(strstr(err, "has not been opened with a key newer than 1"), "%s", err);
    ph_keyring *k2 = load();
    g_s = open_keyed(k2);
    ph_store_close(g_s);
    g_s = NULL;
    cr_assert_eq(run_keys("retire", "1", out, sizeof out, err, sizeof err), 0, "%s", err);
    ph_keyring_free(k1);
    ph_keyring_free(k2);
}

/* ---- the journal's encoding of PH_CMD_RESEAL ------------------------------------------- */

Test(rotation, a_reseal_command_survives_the_codec_and_truncation_is_refused)
{
    static const uint8_t oldv[34] = {0, 1, 9}, newv[34] = {0, 2, 7};
    ph_reseal_item items[2] = {{PH_SEALED_CODE, 7, sizeof oldv, oldv, newv},
                               {PH_SEALED_ACCOUNT, 1ull << 40, sizeof oldv, oldv, newv}};
    uint16_t forget[1] = {1};
    ph_audit audit = {.action = "keys.reseal_started", .via = "daemon", .what = "{}"};
    ph_cmd c = {.type = PH_CMD_RESEAL, .now = NOW, .audit = &audit};
    c.in.reseal.key_id = 2;
    c.in.reseal.items = items;
    c.in.reseal.n = 2;
    c.in.reseal.forget = forget;
    c.in.reseal.nforget = 1;
    uint8_t *p = NULL;
    size_t len = 0;
    ph_err err = {0};
    cr_assert_eq(ph_cmd_batch_encode(&c, &p, &len, &err), PH_OK, "%s", err.msg);
    ph_cmd_batch b;
    cr_assert_eq(ph_cmd_batch_decode(p, len, &b, &err), PH_OK, "%s", err.msg);
    const ph_cmd *d = &b.cmds[0];
    cr_assert_eq(d->type, PH_CMD_RESEAL);
    cr_assert_eq(d->in.reseal.key_id, 2);
    cr_assert_eq(d->in.reseal.n, 2);
    cr_assert_eq(d->in.reseal.items[1].kind, PH_SEALED_ACCOUNT);
    cr_assert_eq(d->in.reseal.items[1].id, 1ull << 40);
    cr_assert_eq(d->in.reseal.items[0].len, sizeof oldv);
    cr_assert_eq(memcmp(d->in.reseal.items[0].new_sealed, newv, sizeof newv), 0);
    cr_assert_eq(memcmp(d->in.reseal.items[0].old_sealed, oldv, sizeof oldv), 0);
    cr_assert_eq(d->in.reseal.nforget, 1);
    cr_assert_eq(d->in.reseal.forget[0], 1);
    cr_assert_str_eq(d->audit->action, "keys.reseal_started");
    ph_cmd_batch_free(&b);
    for (size_t cut = 1; cut < len; cut++)
        cr_assert_eq(ph_cmd_batch_decode(p, cut, &b, &err), PH_EINVAL, "cut at %zu", cut);
    free(p);
}
