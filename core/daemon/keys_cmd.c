/*
 * keys_cmd.c — `perkhubd keys create|add|list|retire ID` (keys.h): key
 * rotation as ops run it (docs/operations.md, "Rotating the master key").
 *
 * The store is only read here (read-only open, no keys: nothing is unsealed),
 * so these commands run beside a running daemon; the key file is edited under
 * its lock (crypto.h, "key file editing"). A daemon reads its keys at start:
 * `add` takes effect at the next restart, which also starts moving old data to
 * the new key, and a retired key is forgotten by the store at the first start
 * without it.
 */
#include "daemon/keys.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "config/config.h"

static const char USAGE[] = "usage: perkhubd [-c FILE] keys create | add | list | retire ID\n";

/* Counts per key id (n = 0 and *no_store = 1 when there is no store yet) and
 * the newest key id the store has a check value for (0: none). */
static int store_counts(const ph_config *cfg, ph_key_use *use, size_t *n, int *no_store,
                        uint16_t *newest_check, FILE *errf)
{
    ph_store *s;
    ph_err err = {0};
    ph_store_opts o = {.dir = cfg->data_dir, .read_only = 1};
    *n = 0;
    *no_store = 0;
    *newest_check = 0;
    int rc = ph_store_open(&o, &s, &err);
    if (rc == PH_ENOTFOUND) {
        *no_store = 1;
        return PH_OK;
    }
    if (rc != PH_OK) {
        fprintf(errf, "perkhubd: keys: %s: cannot open the store: %s\n", cfg->data_dir, err.msg);
        return rc;
    }
    uint16_t ids[64];
    size_t m = ph_store_key_ids(s, ids, 64);
    for (size_t i = 0; i < m && i < 64; i++)
        if (ids[i] > *newest_check)
            *newest_check = ids[i];
    rc = ph_store_key_use(s, use, n, &err);
    ph_store_close(s);
    if (rc != PH_OK)
        fprintf(errf, "perkhubd: keys: %s: %s\n", cfg->data_dir, err.msg);
    return rc;
}

static const ph_key_use *use_of(const ph_key_use *use, size_t n, uint16_t id)
{
    for (size_t i = 0; i < n; i++)
        if (use[i].id == id)
            return &use[i];
    return NULL;
}

static int keys_list(const ph_config *cfg, FILE *out, FILE *errf)
{
    ph_keyring *kr;
    ph_err err = {0};
    if (ph_keyring_load(cfg->master_key_file, 0, &kr, &err) != PH_OK) {
        fprintf(errf, "perkhubd: keys: %s\n", err.msg);
        return 1;
    }
    ph_key_use use[PH_KEY_USE_MAX];
    size_t n, nk;
    int no_store;
    uint16_t newest_check, ids[PH_KEY_USE_MAX];
    if (store_counts(cfg, use, &n, &no_store, &newest_check, errf) != PH_OK) {
        ph_keyring_free(kr);
        return 1;
    }
    nk = ph_keyring_ids(kr, ids, PH_KEY_USE_MAX);
    uint16_t active = ph_keyring_active_id(kr);
    fprintf(out, "key file %s, store %s%s\n", cfg->master_key_file, cfg->data_dir,
            no_store ? " (no store yet)" : "");
    fprintf(out, "%-5s %10s %10s  %s\n", "KEY", "CODES", "ACCOUNTS", "NOTE");
    for (size_t i = 0; i < nk && i < PH_KEY_USE_MAX; i++) {
        const ph_key_use *u = use_of(use, n, ids[i]);
        uint64_t c = u ? u->codes : 0, a = u ? u->accounts : 0;
        char note[160];
        if (ids[i] == active && newest_check < active && !no_store)
            snprintf(note, sizeof note, "newest: seals new data once perkhubd restarts");
        else if (ids[i] == active)
            snprintf(note, sizeof note, "newest: seals new data");
        else if (c + a)
            snprintf(note, sizeof note, "older: perkhubd moves its data to key %u",
                     (unsigned)active);
        else
            snprintf(note, sizeof note, "older, protects nothing: `perkhubd keys retire %u`",
                     (unsigned)ids[i]);
        fprintf(out, "%-5u %10llu %10llu  %s\n", (unsigned)ids[i], (unsigned long long)c,
                (unsigned long long)a, note);
    }
    int missing = 0;
    for (size_t i = 0; i < n; i++)
        if (!ph_keyring_has(kr, use[i].id)) {
            fprintf(out, "%-5u %10llu %10llu  NOT IN THE KEY FILE: this data cannot be read\n",
                    (unsigned)use[i].id, (unsigned long long)use[i].codes,
                    (unsigned long long)use[i].accounts);
            missing = 1;
        }
    fprintf(out, "index key: keys the code index; never rotates\n");
    ph_keyring_free(kr);
    return missing;
}

static int keys_retire(const ph_config *cfg, const char *arg, FILE *out, FILE *errf)
{
    const char *file = cfg->master_key_file;
    uint64_t v = 0;
    if (strcmp(arg, "index") == 0) {
        fprintf(errf,
                "perkhubd: keys retire: the index key never rotates: it keys the code "
                "index (lookups by code); %s keeps it\n",
                file);
        return 1;
    }
    if (ph_u64_parse(arg, &v) != 0 || v < 1 || v > 65535) {
        fprintf(errf, "perkhubd: keys retire: ID: expected a key id 1..65535\n%s", USAGE);
        return 2;
    }
    uint16_t id = (uint16_t)v;
    ph_keyring *kr;
    ph_err err = {0};
    if (ph_keyring_load(file, 0, &kr, &err) != PH_OK) {
        fprintf(errf, "perkhubd: keys retire: %s\n", err.msg);
        return 1;
    }
    int has = ph_keyring_has(kr, id);
    uint16_t active = ph_keyring_active_id(kr);
    ph_keyring_free(kr);
    if (!has) {
        fprintf(errf, "perkhubd: keys retire: %s has no key %u\n", file, (unsigned)id);
        return 1;
    }
    if (id == active) {
        fprintf(errf,
                "perkhubd: keys retire: key %u is the newest key of %s: it seals new data; "
                "`perkhubd keys add` first, restart, and retire it once `keys list` shows 0\n",
                (unsigned)id, file);
        return 1;
    }
    ph_key_use use[PH_KEY_USE_MAX];
    size_t n;
    int no_store;
    uint16_t newest_check;
    if (store_counts(cfg, use, &n, &no_store, &newest_check, errf) != PH_OK)
        return 1;
    const ph_key_use *u = use_of(use, n, id);
    if (u && u->codes + u->accounts) {
        fprintf(errf,
                "perkhubd: keys retire: key %u still seals %llu items (%llu codes, %llu "
                "accounts) in store %s; %s is unchanged. perkhubd moves them to key %u while it "
                "runs with this key file: retire when `perkhubd keys list` shows 0\n",
                (unsigned)id, (unsigned long long)(u->codes + u->accounts),
                (unsigned long long)u->codes, (unsigned long long)u->accounts, cfg->data_dir, file,
                (unsigned)active);
        return 1;
    }
    /* a daemon started before `keys add` still seals with this key */
    if (!no_store && newest_check <= id) {
        fprintf(errf,
                "perkhubd: keys retire: store %s has not been opened with a key newer than %u "
                "yet, so a running perkhubd may still seal new data with key %u; restart "
                "perkhubd with %s first; the file is unchanged\n",
                cfg->data_dir, (unsigned)id, (unsigned)id, file);
        return 1;
    }
    if (ph_keyfile_remove(file, id, &err) != PH_OK) {
        fprintf(errf, "perkhubd: keys retire: %s\n", err.msg);
        return 1;
    }
    fprintf(out,
            "%s: key %u removed (store %s holds nothing sealed with it). The store forgets its "
            "check value at the next start of perkhubd.\n",
            file, (unsigned)id, cfg->data_dir);
    return 0;
}

int ph_keys_main(const char *config_path, int argc, char **argv, FILE *out, FILE *errf)
{
    if (argc < 1) {
        fputs(USAGE, errf);
        return 2;
    }
    const char *sub = argv[0];
    int want = strcmp(sub, "retire") == 0 ? 2 : 1;
    if ((strcmp(sub, "create") && strcmp(sub, "add") && strcmp(sub, "list") &&
         strcmp(sub, "retire")) ||
        argc != want) {
        fprintf(errf, "perkhubd: keys: expected create, add, list or retire ID\n%s", USAGE);
        return 2;
    }
    ph_config *cfg;
    ph_err err = {0};
    int rc = config_path
                 ? ph_config_load_file(config_path, &cfg, &err)
                 : ph_config_load_string(ph_config_default_yaml(), strlen(ph_config_default_yaml()),
                                         "<embedded>", &cfg, &err);
    if (rc != PH_OK) {
        fprintf(errf, "perkhubd: %s\n", err.msg);
        return 1;
    }
    int status = 0;
    uint16_t id;
    if (strcmp(sub, "create") == 0) {
        if (ph_keyfile_create(cfg->master_key_file, &err) != PH_OK) {
            fprintf(errf, "perkhubd: keys create: %s\n", err.msg);
            status = 1;
        } else
            fprintf(out,
                    "%s: created (mode 0600) with the index key and key 1; back it up: data "
                    "sealed with it cannot be read without it\n",
                    cfg->master_key_file);
    } else if (strcmp(sub, "add") == 0) {
        if (ph_keyfile_add(cfg->master_key_file, &id, &err) != PH_OK) {
            fprintf(errf, "perkhubd: keys add: %s\n", err.msg);
            status = 1;
        } else
            fprintf(out,
                    "%s: added key %u; back the file up, then restart perkhubd: it seals new data "
                    "with key %u and moves older data to it (`perkhubd keys list` shows how much "
                    "is left)\n",
                    cfg->master_key_file, (unsigned)id, (unsigned)id);
    } else if (strcmp(sub, "list") == 0)
        status = keys_list(cfg, out, errf);
    else
        status = keys_retire(cfg, argv[1], out, errf);
    ph_config_free(cfg);
    return status;
}
