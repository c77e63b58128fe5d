/*
 * The store and its keys, end to end (issue 9, part 1: items 1, 2 and 9):
 *   - a daemon started on existing data with another key file refuses to start
 *     and names the key and the file, instead of issuing unreadable codes;
 *   - `perkhubd --check-store` on a mistyped path creates nothing and says
 *     "no store at PATH"; with --key-file it verifies every code and its index
 *     entry;
 *   - customer-service lookups find a code typed in lower case, with spaces or
 *     without dashes, and with a product's look-alikes (only for that product);
 *     two codes equal once normalized are duplicates at import;
 *   - a lookup of a recharge order, or of one not delivered yet, gets a
 *     diagnosis of the order instead of an empty list.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static h_daemon D;

static void teardown(void)
{
    h_leftover(&D);
}

TestSuite(keys, .fini = teardown, .timeout = 120);

static void finish(h_daemon *d)
{
    cr_assert_eq(h_stop(d, SIGTERM), 0);
    h_cleanup(d);
}

/* POST /v1/codes/lookup with body; asserts 200 and a results array. */
static h_resp lookup(const h_daemon *d, const char *token, const char *body)
{
    h_resp r = h_post_json(d, "/v1/codes/lookup", token, body);
    cr_assert_eq(r.status, 200, "lookup %s: %ld %s", body, r.status, r.body);
    cr_assert(json_is_array(json_object_get(r.json, "results")), "%s", r.body);
    return r;
}

/* The only result's diagnosis. */
static const char *diagnosis(const h_resp *r)
{
    json_t *res = json_object_get(r->json, "results");
    cr_assert_eq(json_array_size(res), 1, "%s", r->body);
    return h_str(json_array_get(res, 0), "diagnosis");
}

static json_t *first(const h_resp *r)
{
    return json_array_get(json_object_get(r->json, "results"), 0);
}

static void lookup_code_is(const h_daemon *d, const char *typed, const char *want)
{
    char body[256];
    snprintf(body, sizeof body, "{\"code\":\"%s\"}", typed);
    h_resp r = lookup(d, "mall-token", body);
    cr_assert_str_eq(diagnosis(&r), want, "code typed as '%s': %s", typed, r.body);
    h_resp_free(&r);
}

/* Writes a key file (mode 0600) with the given index key and key 1. */
static void write_keys(const h_daemon *d, const char *name, const char *index, const char *key1)
{
    char path[2048], text[300];
    snprintf(path, sizeof path, "%s/%s", d->dir, name);
    snprintf(text, sizeof text, "# test keys\nindex %s\nkey 1 %s\n", index, key1);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    cr_assert(fputs(text, f) >= 0);
    cr_assert_eq(fclose(f), 0);
    cr_assert_eq(chmod(path, 0600), 0);
}

/* The hex of the line starting with `prefix` ("index ", "key 1 ") of a key file. */
static void key_hex(const char *file, const char *prefix, char out[65])
{
    size_t n;
    char *text = h_read_file(file, &n);
    cr_assert(text, "no key file %s", file);
    char *p = strstr(text, prefix);
    cr_assert(p, "no '%s' in the key file", prefix);
    memcpy(out, p + strlen(prefix), 64);
    out[64] = 0;
    free(text);
}

/* Starts d expecting perkhubd to refuse; returns its log (caller frees). */
static char *start_refused(h_daemon *d)
{
    cr_assert_neq(h_start(d), 0, "perkhubd started with a wrong key file");
    d->pid = 0; /* reaped by the harness's wait */
    size_t n;
    char *log = h_read_file(d->log, &n);
    cr_assert(log);
    return log;
}

#define HEX_A "1111111111111111111111111111111111111111111111111111111111111111"
#define HEX_B "2222222222222222222222222222222222222222222222222222222222222222"

Test(keys, a_wrong_key_file_is_refused_at_start_naming_key_and_file)
{
    h_daemon *d = &D;
    h_setup(d, NULL);
    cr_assert_eq(h_start(d), 0);
    h_resp imp = h_import(d, "test.card", "code\nWK-0001\nWK-0002\n", 201);
    h_resp_free(&imp);
    cr_assert_eq(h_stop(d, SIGTERM), 0);

    char keyfile[2048], index[65], key1[65];
    snprintf(keyfile, sizeof keyfile, "%s/master.key", d->dir);
    key_hex(keyfile, "index ", index);
    key_hex(keyfile, "key 1 ", key1);

    /* another key 1 (the file of another install, or a regenerated one) */
    write_keys(d, "other.key", index, HEX_A);
    char *cfg = h_config_text(d, NULL), *other = h_replace(cfg, "/master.key", "/other.key");
    h_write_config_text(d, other);
    char *log = start_refused(d);
    cr_assert(strstr(log, "key 1"), "the refusal does not name key 1:\n%s", log);
    cr_assert(strstr(log, "other.key"), "the refusal does not name the key file:\n%s", log);
    free(log);

    /* the right key 1 but another index key: lookups and duplicate checks would be blind */
    write_keys(d, "other.key", HEX_B, key1);
    log = start_refused(d);
    cr_assert(strstr(log, "index key"), "the refusal does not name the index key:\n%s", log);
    cr_assert(strstr(log, "other.key"), "the refusal does not name the key file:\n%s", log);
    free(log);

    /* a key file that does not exist, with master_key_create on (the harness's
     * config): a new key cannot read this store, so none is made */
    char *missing = h_replace(cfg, "/master.key", "/new.key"), newkey[2048];
    snprintf(newkey, sizeof newkey, "%s/new.key", d->dir);
    h_write_config_text(d, missing);
    log = start_refused(d);
    cr_assert(strstr(log, "new.key") && strstr(log, "does not exist"),
              "the refusal does not name the missing key file:\n%s", log);
    cr_assert_neq(access(newkey, F_OK), 0, "a refused start left a new key file behind");
    free(log);
    free(missing);

    /* back to the right file: the codes were never touched */
    h_write_config_text(d, cfg);
    cr_assert_eq(h_start(d), 0);
    h_resp o = h_order(d, "mall-token", "wk-2", "test.card", 1);
    cr_assert_eq(o.status, 201, "%s", o.body);
    json_t *code = json_array_get(json_object_get(h_order_of(&o), "codes"), 0);
    cr_assert_str_eq(h_str(code, "code"), "WK-0001", "%s", o.body);
    h_resp_free(&o);
    free(other);
    free(cfg);
    finish(d);
}

Test(keys, check_store_on_a_missing_path_creates_nothing)
{
    h_daemon *d = &D;
    h_setup(d, NULL);
    char missing[2048], *out = NULL;
    snprintf(missing, sizeof missing, "%s/dtaa", d->dir);
    const char *argv[] = {h_bin("PH_PERKHUBD"), "--check-store", missing, NULL};
    int rc = h_run(argv, NULL, NULL, 0, NULL, &out);
    cr_assert_neq(rc, 0, "--check-store passed on a missing store");
    cr_assert(strstr(out, "no store at"), "%s", out);
    cr_assert(strstr(out, missing), "the error does not name the path: %s", out);
    struct stat st;
    cr_assert_neq(stat(missing, &st), 0, "--check-store created %s", missing);
    free(out);
    h_cleanup(d);
}

Test(keys, check_store_with_the_key_file_verifies_every_code)
{
    h_daemon *d = &D;
    h_setup(d, NULL);
    cr_assert_eq(h_start(d), 0);
    h_resp imp = h_import(d, "test.card", "code\nCK-0001\nck-0002\n", 201);
    h_resp_free(&imp);
    h_resp o = h_order(d, "mall-token", "ck-1", "test.card", 1);
    cr_assert_eq(o.status, 201, "%s", o.body);
    h_resp_free(&o);
    cr_assert_eq(h_stop(d, SIGTERM), 0);

    char keyfile[2048], *out = NULL;
    snprintf(keyfile, sizeof keyfile, "%s/master.key", d->dir);
    const char *argv[] = {h_bin("PH_PERKHUBD"), "--check-store", d->data,
                          "--key-file",         keyfile,         NULL};
    cr_assert_eq(h_run(argv, NULL, NULL, 0, &out, NULL), 0, "%s", out);
    cr_assert(strstr(out, "ok: 2 codes"), "%s", out);
    cr_assert_null(strstr(out, "not verified"), "%s", out);
    free(out);

    /* a wrong key file is refused by the check too, naming the key */
    write_keys(d, "other.key", HEX_B, HEX_A);
    snprintf(keyfile, sizeof keyfile, "%s/other.key", d->dir);
    const char *argv2[] = {h_bin("PH_PERKHUBD"), "--check-store", d->data,
                           "--key-file",         keyfile,         NULL};
    char *err = NULL;
    cr_assert_neq(h_run(argv2, NULL, NULL, 0, NULL, &err), 0);
    cr_assert(strstr(err, "key") && strstr(err, "other.key"), "%s", err);
    free(err);
    h_cleanup(d);
}

Test(keys, a_code_is_found_typed_in_lower_case_with_spaces_or_without_dashes)
{
    h_daemon *d = &D;
    h_setup(d, NULL);
    cr_assert_eq(h_start(d), 0);
    h_resp imp = h_import(d, "test.card", "code\nIQY-15D7-2D61-C76F\n", 201);
    h_resp_free(&imp);
    h_resp o = h_order(d, "mall-token", "norm-1", "test.card", 1);
    cr_assert_eq(o.status, 201, "%s", o.body);
    h_resp_free(&o);

    lookup_code_is(d, "IQY-15D7-2D61-C76F", "issued");
    lookup_code_is(d, "iqy-15d7-2d61-c76f", "issued");
    lookup_code_is(d, " iqy 15d7 2d61 c76f ", "issued");
    lookup_code_is(d, "IQY15D72D61C76F", "issued");
    lookup_code_is(d, "IQY-15D7-2D61-C76E", "not_found");
    lookup_code_is(d, "IQY-15D7-2D61-C76F-", "issued");
    /* no look-alikes for this product: an I for the 1 is another code */
    lookup_code_is(d, "IQY-15D7-2D6I-C76F", "not_found");

    /* the owner is shown the code exactly as it was imported */
    h_resp r = lookup(d, "mall-token", "{\"client_order_id\":\"norm-1\"}");
    cr_assert_str_eq(h_str(first(&r), "code"), "IQY-15D7-2D61-C76F", "%s", r.body);
    h_resp_free(&r);

    /* equal once normalized: a duplicate, named by line, and nothing imported */
    h_resp dup = h_import(d, "test.card2", "code\nAB-CD-01\nzz-1\nabcd01\n", 422);
    json_t *lines = json_object_get(dup.json, "lines");
    cr_assert_eq(json_array_size(lines), 1, "%s", dup.body);
    cr_assert_eq(h_int(json_array_get(lines, 0), "line"), 4, "%s", dup.body);
    cr_assert(strstr(h_str(json_array_get(lines, 0), "reason"), "line 2"), "%s", dup.body);
    h_resp_free(&dup);
    /* and against a stored code */
    dup = h_import(d, "test.card2", "code\niqy15d72d61c76f\n", 422);
    cr_assert(strstr(dup.body, "already imported"), "%s", dup.body);
    h_resp_free(&dup);
    finish(d);
}

static const char *lookalike_body =
    "suppliers:\n"
    "  - id: acme\n    plugin: manual\n"
    "products:\n"
    "  - sku: test.card\n    name: Test card\n    brand: testbrand\n    category: video\n"
    "    delivery: card_code\n    face_value: \"30.00\"\n"
    "  - sku: test.look\n    name: Look-alike card\n    brand: testbrand\n    category: video\n"
    "    delivery: card_code\n    face_value: \"30.00\"\n"
    "    code_lookalikes: \"O=0 I=1 L=1\"\n";

Test(keys, lookalikes_match_only_for_the_product_that_declares_them)
{
    h_daemon *d = &D;
    h_setup_custom(d, lookalike_body, NULL);
    cr_assert_eq(h_start(d), 0);
    h_resp imp = h_import(d, "test.look", "code\nLK0-11\n", 201);
    h_resp_free(&imp);
    imp = h_import(d, "test.card", "code\nPL0-11\n", 201);
    h_resp_free(&imp);
    h_resp o = h_order(d, "mall-token", "look-1", "test.look", 1);
    cr_assert_eq(o.status, 201, "%s", o.body);
    h_resp_free(&o);
    o = h_order(d, "mall-token", "plain-1", "test.card", 1);
    cr_assert_eq(o.status, 201, "%s", o.body);
    h_resp_free(&o);

    lookup_code_is(d, "lko-il", "issued");
    lookup_code_is(d, "LKO 1I", "issued");
    lookup_code_is(d, "pl0-11", "issued");
    lookup_code_is(d, "plo-il", "not_found");

    /* with look-alikes, O and 0 are one code: a duplicate inside the file */
    h_resp dup = h_import(d, "test.look", "code\nQQ-O1\nQQ-0I\n", 422);
    cr_assert(strstr(dup.body, "duplicate of line 2"), "%s", dup.body);
    h_resp_free(&dup);

    /* the product drops its look-alikes: codes imported under them are still found */
    char *cfg = h_config_text(d, NULL);
    char *plain = h_replace(cfg, "    code_lookalikes: \"O=0 I=1 L=1\"\n", "");
    h_write_config_text(d, plain);
    kill(d->pid, SIGHUP);
    cr_assert_eq(h_log_wait(d, "msg=config.reloaded", 1, 10000), 0);
    lookup_code_is(d, "LK0-11", "issued");
    lookup_code_is(d, "lko-il", "issued");
    free(plain);
    free(cfg);
    finish(d);
}

Test(keys, a_bad_lookalike_setting_names_file_line_and_column)
{
    h_daemon *d = &D;
    char *body = h_replace(lookalike_body, "O=0 I=1 L=1", "O=0 0=Q");
    h_setup_custom(d, body, NULL);
    const char *argv[] = {h_bin("PH_PERKHUBD"), "--check-config", d->config, NULL};
    char *err = NULL;
    cr_assert_neq(h_run(argv, NULL, NULL, 0, NULL, &err), 0);
    cr_assert(strstr(err, "products[1].code_lookalikes"), "%s", err);
    cr_assert(strstr(err, "perkhub.yaml:"), "%s", err);
    free(err);
    h_cleanup(d);
    free(body);
}

/* POST a recharge of test.topup for account, waiting up to 5 s. */
static void recharge(const h_daemon *d, const char *coid, const char *account)
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"client_order_id\":\"%s\",\"sku\":\"test.topup\",\"account\":\"%s\",\"wait\":5}",
             coid, account);
    h_resp r = h_post_json(d, "/v1/orders", "mall-token", body);
    cr_assert(r.status == 201 || r.status == 202, "%s", r.body);
    h_resp_free(&r);
}

Test(keys, a_recharge_or_undelivered_order_gets_a_diagnosis)
{
    h_daemon *d = &D;
    h_setup(d, NULL);
    cr_assert_eq(h_start(d), 0);
    recharge(d, "rc-ok", "13800000001");
    recharge(d, "rc-fail", "13800000002");

    h_resp r = lookup(d, "mall-token", "{\"client_order_id\":\"rc-ok\"}");
    cr_assert_str_eq(diagnosis(&r), "recharge_succeeded", "%s", r.body);
    cr_assert_str_eq(h_str(first(&r), "state"), "succeeded", "%s", r.body);
    cr_assert_str_eq(h_str(first(&r), "account"), "138****0001", "%s", r.body);
    cr_assert_str_eq(h_str(first(&r), "client_order_id"), "rc-ok", "%s", r.body);
    cr_assert_null(strstr(r.body, "13800000001"), "the account in clear: %s", r.body);
    h_resp_free(&r);

    r = lookup(d, "mall-token", "{\"client_order_id\":\"rc-fail\"}");
    cr_assert_str_eq(diagnosis(&r), "recharge_failed", "%s", r.body);
    cr_assert_str_eq(h_str(first(&r), "reason"), "invalid_account", "%s", r.body);
    h_resp_free(&r);

    /* another client still learns nothing */
    r = lookup(d, "other-token", "{\"client_order_id\":\"rc-ok\"}");
    cr_assert_str_eq(diagnosis(&r), "not_found", "%s", r.body);
    h_resp_free(&r);
    finish(d);
}

/* A sandbox whose "later" never comes within the test: orders stay with it. */
static const char *slow_body =
    "suppliers:\n"
    "  - id: sbx\n    plugin: sandbox\n    timeout_ms: 600000\n"
    "    config:\n      settle_ms: 600000\n      slow_ms: 600000\n"
    "products:\n"
    "  - sku: test.topup\n    name: Test top-up\n    brand: telco\n    category: telecom\n"
    "    delivery: recharge\n    face_value: \"50.00\"\n"
    "    offers:\n      - {supplier: sbx, supplier_sku: sandbox.recharge, cost: \"49.00\"}\n"
    "  - sku: test.slowcard\n    name: Slow card\n    brand: testbrand\n    category: video\n"
    "    delivery: card_code\n    face_value: \"30.00\"\n"
    "    offers:\n      - {supplier: sbx, supplier_sku: sandbox.card.timeout, cost: \"28.00\"}\n";

Test(keys, an_order_still_with_its_supplier_gets_a_processing_diagnosis)
{
    h_daemon *d = &D;
    h_setup_custom(d, slow_body, NULL);
    cr_assert_eq(h_start(d), 0);
    h_resp r = h_post_json(
        d, "/v1/orders", "mall-token",
        "{\"client_order_id\":\"rc-slow\",\"sku\":\"test.topup\",\"account\":\"13800000006\"}");
    cr_assert_eq(r.status, 202, "%s", r.body);
    h_resp_free(&r);
    r = h_order(d, "mall-token", "card-slow", "test.slowcard", 1);
    cr_assert_eq(r.status, 202, "%s", r.body);
    h_resp_free(&r);

    r = lookup(d, "mall-token", "{\"client_order_id\":\"rc-slow\"}");
    cr_assert_str_eq(diagnosis(&r), "recharge_processing", "%s", r.body);
    cr_assert_str_eq(h_str(first(&r), "account"), "138****0006", "%s", r.body);
    h_resp_free(&r);
    r = lookup(d, "mall-token", "{\"client_order_id\":\"card-slow\"}");
    cr_assert_str_eq(diagnosis(&r), "order_processing", "%s", r.body);
    cr_assert_str_eq(h_str(first(&r), "delivery"), "card_code", "%s", r.body);
    h_resp_free(&r);
    /* ops sees which supplier has it */
    r = lookup(d, "ops-token", "{\"order_id\":1}");
    cr_assert_str_eq(h_str(first(&r), "supplier"), "sbx", "%s", r.body);
    h_resp_free(&r);
    finish(d);
}

/* Copies tests/fixtures/store-v2/<name> to dst (mode 0600). */
static void copy_fixture(const char *name, const char *dst)
{
    char src[1024];
    snprintf(src, sizeof src, "%s/tests/fixtures/store-v2/%s", getenv("PH_SOURCE_DIR"), name);
    size_t n;
    char *bytes = h_read_file(src, &n);
    cr_assert(bytes, "no fixture %s", src);
    FILE *f = fopen(dst, "wb");
    cr_assert(f, "%s", dst);
    cr_assert_eq(fwrite(bytes, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
    cr_assert_eq(chmod(dst, 0600), 0);
    free(bytes);
}

Test(keys, a_store_of_version_2_is_migrated_at_start)
{
    h_daemon *d = &D;
    h_setup(d, NULL);
    char path[2048];
    cr_assert_eq(mkdir(d->data, 0700), 0);
    snprintf(path, sizeof path, "%s/data.mdb", d->data);
    copy_fixture("data.mdb", path);
    snprintf(path, sizeof path, "%s/master.key", d->dir);
    copy_fixture("master.key", path);
    cr_assert_eq(h_start(d), 0);
    cr_assert_eq(h_log_wait(d, "msg=store.migrated", 1, 10000), 0, "no store.migrated line");
    cr_assert_gt(h_file_count(d->log, "from_schema=2"), 0);

    /* found as typed, and shown as imported */
    lookup_code_is(d, "iqy-15d7-2d61-c76f", "issued");
    lookup_code_is(d, "IQY15D72D61C76F", "issued");
    h_resp r = lookup(d, "ops-token", "{\"code\":\"iqy 0000 0002\"}");
    cr_assert_str_eq(diagnosis(&r), "available", "%s", r.body);
    h_resp_free(&r);
    r = lookup(d, "mall-token", "{\"client_order_id\":\"v2-1\"}");
    cr_assert_str_eq(h_str(first(&r), "code"), "IQY-15D7-2D61-C76F", "%s", r.body);
    h_resp_free(&r);
    h_resp o = h_order(d, "mall-token", "v3-1", "test.card", 1);
    cr_assert_eq(o.status, 201, "%s", o.body);
    json_t *code = json_array_get(json_object_get(h_order_of(&o), "codes"), 0);
    cr_assert_str_eq(h_str(code, "code"), "IQY-0000-0002", "%s", o.body);
    h_resp_free(&o);
    /* the rebuilt index sees a stored code typed otherwise as a duplicate */
    h_resp dup = h_import(d, "test.card", "code\nABC0003\n", 422);
    cr_assert(strstr(dup.body, "already imported"), "%s", dup.body);
    h_resp_free(&dup);

    cr_assert_eq(h_stop(d, SIGTERM), 0);
    char *out = NULL;
    cr_assert_eq(h_check_store(d, &out), 0, "%s", out);
    free(out);
    cr_assert_eq(h_start(d), 0);
    lookup_code_is(d, "iqy-15d7-2d61-c76f", "issued");
    cr_assert_eq(h_file_count(d->log, "msg=store.migrated"), 1, "migrated twice");
    finish(d);
}
