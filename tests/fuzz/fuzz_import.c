/*
 * fuzz_import.c — a code file through the whole import (core/codes/import.c):
 * CSV, seal and hash, the checks for expired, repeated and already stored
 * codes, and the store's IMPORT command, on a real store in a temporary
 * directory (/dev/shm when there is one, so a commit costs no disk). fuzz_csv
 * covers the parser alone at a higher rate; this one covers what the import
 * decides with it.
 *
 * Input: the file's bytes. The first byte also picks a look-alike rule (none,
 * or "I1L1O0"), so duplicates by look-alike are reachable.
 *
 * Invariants, from import.h's contract and checked against a model built from
 * the parser and ph_code_hash alone (not from the import's own code):
 *   - the import stores the batch exactly when the file is clean: it parses
 *     without a bad line, has 1..max_codes rows, no row expired, no two rows
 *     with one lookup hash, and none of them stored before;
 *   - a stored batch holds every row: importing the same file again refuses
 *     every one of its lines as already imported;
 *   - a refused file stores nothing: no row the store did not have before is
 *     findable after;
 *   - bad lines are listed in line order, at most max_errors of them, never
 *     more listed than counted, and no reason quotes a code of the file.
 */
#include <ftw.h>
#include <unistd.h>

#include "codes/csv.h"
#include "codes/import.h"
#include "crypto/code.h"
#include "crypto/crypto.h"
#include "fuzz.h"
#include "store/store.h"

#define FZ_NOW        INT64_C(1700000000000) /* 2023-11-14: expiries before it are expired */
#define FZ_MAX_CODES  64
#define FZ_MAX_ERRORS 8
#define FZ_SKU        "iqiyi.gold.1m"

static char fz_dir[128];
static ph_store *fz_store;
static ph_keyring *fz_keys;

static int fz_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void fz_cleanup(void)
{
    ph_store_close(fz_store);
    ph_keyring_free(fz_keys);
    nftw(fz_dir, fz_rm, 8, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(fz_dir, sizeof fz_dir, "%s/ph-fuzz-import-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    FZ_CHECK(mkdtemp(fz_dir), "mkdtemp %s", fz_dir);
    char db[160];
    snprintf(db, sizeof db, "%s/db", fz_dir);
    uint8_t ik[PH_KEY_LEN], k[PH_KEY_LEN];
    memset(ik, 7, sizeof ik);
    memset(k, 9, sizeof k);
    ph_err err = {0};
    FZ_CHECK(ph_keyring_from_raw(ik, 1, k, &fz_keys, &err) == PH_OK, "keyring: %s", err.msg);
    ph_store_opts o = {.dir = db, .map_size = 64u << 20, .keys = fz_keys};
    FZ_CHECK(ph_store_open(&o, &fz_store, &err) == PH_OK, "store: %s", err.msg);
    const char *const products[] = {
        "{\"sku\":\"" FZ_SKU "\",\"name\":\"iQiyi Gold, 1 month\",\"brand\":\"iqiyi\","
        "\"delivery\":\"card_code\",\"face_value\":\"30.00\",\"listed\":true}"};
    ph_cmd c = {.type = PH_CMD_PUT_PRODUCTS, .now = FZ_NOW};
    c.in.products.json = products;
    c.in.products.n = 1;
    FZ_CHECK(ph_store_exec(fz_store, &c) == PH_OK, "product: %s", c.err.msg);
    ph_cmd_clear(&c);
    atexit(fz_cleanup);
    return 0;
}

static int fz_stored(const uint8_t hash[32])
{
    ph_code_info info;
    ph_err err = {0};
    int rc = ph_store_code_find(fz_store, hash, &info, &err);
    FZ_CHECK(rc == PH_OK || rc == PH_ENOTFOUND, "code_find: %s", err.msg);
    if (rc == PH_OK)
        ph_code_info_clear(&info);
    return rc == PH_OK;
}

static int fz_run(const uint8_t *data, size_t size, const char *rule, ph_import_result *out,
                  ph_err *err)
{
    ph_import_req req = {.supplier = "acme",
                         .sku = FZ_SKU,
                         .note = "fuzz",
                         .unit_cost = 1980,
                         .csv = (const char *)data,
                         .csv_len = size,
                         .max_codes = FZ_MAX_CODES,
                         .max_errors = FZ_MAX_ERRORS,
                         .now = FZ_NOW,
                         .lookalikes = rule};
    return ph_import_run(fz_store, fz_keys, &req, out, err);
}

/* A reason must not quote the file's codes: those long and distinctive enough
 * that no fixed reason text holds them by chance. */
static void fz_check_reasons(const ph_import_result *r, const ph_csv *csv)
{
    for (size_t i = 0; i < r->nerrors; i++) {
        FZ_CHECK(r->errors[i].line >= 1 && (i == 0 || r->errors[i].line >= r->errors[i - 1].line),
                 "bad lines out of order");
        for (size_t k = 0; csv && k < csv->nrows; k++) {
            const char *code = csv->rows[k].code;
            if (csv->rows[k].code_len >= 12 && strpbrk(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") &&
                !strstr("expires_at: not a date (YYYY-MM-DD or RFC 3339)", code))
                FZ_CHECK(!strstr(r->errors[i].reason, code), "a reason quotes a code");
        }
    }
    FZ_CHECK(r->nerrors <= FZ_MAX_ERRORS && r->nerrors <= r->error_count, "%zu listed of %zu",
             r->nerrors, r->error_count);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *rule = size && (data[0] & 1) ? "I1L1O0" : NULL;

    /* the model: what the file holds, by the parser and the lookup hash alone */
    ph_csv *csv = NULL;
    ph_err err = {0};
    int parsed = ph_csv_parse((const char *)data, size, FZ_MAX_ERRORS, &csv, &err) == PH_OK;
    size_t n = parsed ? csv->nrows : 0;
    uint8_t(*hash)[32] = calloc(n ? n : 1, 32);
    int *before = calloc(n ? n : 1, sizeof *before);
    FZ_CHECK(hash && before, "out of memory");
    int clean = parsed && csv->error_count == 0 && n >= 1 && n <= FZ_MAX_CODES;
    for (size_t i = 0; i < n; i++) {
        const ph_csv_row *r = &csv->rows[i];
        if (ph_code_hash(fz_keys, r->code, r->code_len, rule, hash[i]) != PH_OK) {
            clean = 0; /* nothing left once dashes and spaces are removed */
            memset(hash[i], 0, 32);
            continue;
        }
        before[i] = fz_stored(hash[i]);
        if (before[i] || (r->expires_at && r->expires_at <= FZ_NOW))
            clean = 0;
        for (size_t j = 0; j < i; j++)
            if (memcmp(hash[i], hash[j], 32) == 0)
                clean = 0;
    }

    ph_import_result res;
    int rc = fz_run(data, size, rule, &res, &err);
    FZ_CHECK((rc == PH_OK) == clean, "import %s a file the model finds %s (%d: %s)",
             rc == PH_OK ? "stored" : "refused", clean ? "clean" : "bad", rc, err.msg);
    fz_check_reasons(&res, parsed ? csv : NULL);
    if (rc == PH_OK) {
        FZ_CHECK(res.count == n && res.batch_id > 0 && res.error_count == 0, "stored %zu of %zu",
                 res.count, n);
        for (size_t i = 0; i < n; i++)
            FZ_CHECK(fz_stored(hash[i]), "row %zu not findable after its import", i);
        ph_import_result again;
        int rc2 = fz_run(data, size, rule, &again, &err);
        FZ_CHECK(rc2 == PH_EINVAL && again.error_count == n,
                 "re-import of %zu stored rows: %d, %zu bad lines", n, rc2, again.error_count);
        for (size_t i = 0; i < again.nerrors; i++)
            FZ_CHECK(strcmp(again.errors[i].reason, "code already imported") == 0,
                     "re-import reason: %s", again.errors[i].reason);
        ph_import_result_clear(&again);
    } else {
        FZ_CHECK(rc == PH_EINVAL || rc == PH_ELIMIT, "import failed with %d: %s", rc, err.msg);
        FZ_CHECK(res.count == 0, "a refused import counts %zu codes", res.count);
        for (size_t i = 0; i < n; i++)
            FZ_CHECK(before[i] || !fz_stored(hash[i]) || !memcmp(hash[i], (uint8_t[32]){0}, 32),
                     "row %zu stored by a refused import", i);
    }
    ph_import_result_clear(&res);
    free(hash);
    free(before);
    ph_csv_free(csv);
    return 0;
}
