/*
 * test_cmd_codec.c — store commands as bytes (core/store/cmd_codec.c): every
 * command kind survives a round trip with every input that decides its
 * outcome; truncated, garbage and inconsistent input is refused naming the
 * command and the field; the journal file opens, continues and refuses what
 * it must; and a store's uid can be given (the determinism fix a replay needs).
 */
#include <criterion/criterion.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/cmd_codec.h"
#include "store/store.h"

static char g_base[64];

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void setup(void)
{
    snprintf(g_base, sizeof g_base, "/tmp/ph-codec-test-XXXXXX");
    cr_assert_not_null(mkdtemp(g_base));
}

static void teardown(void)
{
    nftw(g_base, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

TestSuite(codec, .init = setup, .fini = teardown);

/* ---- one command of each kind, every field set to something telling -------- */

static const uint8_t SEALED_A[] = {1, 2, 3, 4, 5, 0, 7};
static const uint8_t SEALED_B[] = {9, 9, 0, 9};
static const char *const PRODUCTS[] = {"{\"sku\":\"a\",\"listed\":true}", "{\"sku\":\"b\"}"};
static ph_import_code IMPORT_CODES[3];
static const uint32_t BY_HASH[3] = {2, 0, 1};
static ph_supplied_code SUPPLIED[2];

/* Audit members: every field set, and the NULLs a signal's record has. */
static const ph_audit AUDIT_FULL = {.action = "batch.void",
                                    .client = "ops",
                                    .peer = "::1",
                                    .request_id = "req-1",
                                    .via = NULL,
                                    .what = "{\"batch_id\":18446744073709551615}"};
static const ph_audit AUDIT_SIGNAL = {.action = "config.reload", .via = "signal", .what = ""};

#define NKINDS 9 /* command kinds: fill() makes one of each */

/* Fills c[0..NKINDS-1], one command of each kind, linked when n > 1. */
static void fill(ph_cmd *c, size_t n)
{
    memset(c, 0, NKINDS * sizeof *c);
    for (int i = 0; i < 3; i++) {
        IMPORT_CODES[i] = (ph_import_code){.line = 10u + (uint32_t)i,
                                           .expires_at = i ? 1800000000000LL : 0,
                                           .sealed_len = sizeof SEALED_A,
                                           .sealed = SEALED_A};
        memset(IMPORT_CODES[i].hash, 0x10 * (i + 1), 32); /* hash order: 2 < 0 < 1 below */
    }
    IMPORT_CODES[2].hash[0] = 0x01;
    for (int i = 0; i < 2; i++) {
        SUPPLIED[i] = (ph_supplied_code){
            .expires_at = -1 - i, .sealed_len = sizeof SEALED_B, .sealed = SEALED_B};
        memset(SUPPLIED[i].hash, 0xA0 + i, 32);
    }
    c[0].type = PH_CMD_IMPORT;
    c[0].now = 1700000000001LL;
    c[0].in.import.supplier = "acme";
    c[0].in.import.sku = "iqiyi.gold.1m";
    c[0].in.import.note = NULL; /* NULL, not "": must stay NULL */
    c[0].in.import.unit_cost = 1980;
    c[0].in.import.codes = IMPORT_CODES;
    c[0].in.import.ncodes = 3;
    c[0].in.import.by_hash = BY_HASH;
    c[0].in.import.lookalikes = "O=0 I=1";
    c[0].rc = PH_EDUP;

    c[1].type = PH_CMD_ORDER;
    c[1].now = 1700000000002LL;
    c[1].in.order.client = "mall";
    c[1].in.order.client_order_id = "A-1";
    c[1].in.order.sku = "iqiyi.gold.1m";
    c[1].in.order.quantity = 7;
    memset(c[1].in.order.fingerprint, 0x5A, 32);

    c[2].type = PH_CMD_VOID_BATCH;
    c[2].now = -5;
    c[2].in.void_batch.batch_id = UINT64_MAX;
    c[2].in.void_batch.reason = "";
    c[2].audit = &AUDIT_FULL;
    c[3].audit = &AUDIT_SIGNAL;

    c[3].type = PH_CMD_PUT_PRODUCTS;
    c[3].now = 3;
    c[3].in.products.json = PRODUCTS;
    c[3].in.products.n = 2;

    c[4].type = PH_CMD_SUPPLY_CREATE;
    c[4].now = 4;
    c[4].in.supply.client = "mall";
    c[4].in.supply.client_order_id = "T-1";
    c[4].in.supply.sku = "topup";
    c[4].in.supply.quantity = 1;
    memset(c[4].in.supply.fingerprint, 0x33, 32);
    c[4].in.supply.delivery = 2;
    c[4].in.supply.account_sealed = SEALED_B;
    c[4].in.supply.account_sealed_len = sizeof SEALED_B;
    c[4].in.supply.account_masked = "138****0001";
    c[4].in.supply.first =
        (ph_attempt_target){.supplier = "gwa", .product_id = "20001", .unit_cost = 4900};
    c[4].in.supply.fail_reason = NULL;

    c[5].type = PH_CMD_ATTEMPT;
    c[5].now = 5;
    c[5].in.attempt.order_id = 42;
    c[5].in.attempt.no = 2;
    c[5].in.attempt.state = PH_ATTEMPT_SUCCEEDED;
    c[5].in.attempt.reason = "";
    c[5].in.attempt.supplier_order_id = "S-9";
    c[5].in.attempt.step_state = NULL;
    c[5].in.attempt.step = -1;
    c[5].in.attempt.charged = 2850;
    c[5].in.attempt.next_check_at = 0;
    c[5].in.attempt.count_check = 1;
    c[5].in.attempt.codes = SUPPLIED;
    c[5].in.attempt.ncodes = 2;
    c[5].in.attempt.next = (ph_attempt_target){.supplier = NULL, .product_id = "ignored"};
    c[5].in.attempt.mark_stuck = 1;
    c[5].rc = PH_ESTATE;

    c[6].type = PH_CMD_EXPIRE;
    c[6].now = 1800000000000LL;
    c[6].in.expire.limit = 17;

    c[7].type = PH_CMD_NOTE_EVENT;
    c[7].now = 1800000000001LL;
    c[7].in.note.name = "supplier.auth_failed";
    c[7].in.note.fields = "{\"supplier\":\"gwa\",\"why\":\"http 401\"}";

    c[8].type = PH_CMD_SETTLE;
    c[8].now = 1800000000002LL;
    c[8].in.settle.order_id = 42;
    c[8].in.settle.outcome = PH_ATTEMPT_SUCCEEDED;
    c[8].in.settle.by = "ops";
    c[8].in.settle.note = "ticket 8812: credited";
    c[8].in.settle.charged = 4940;
    c[8].in.settle.supplier_order_id = NULL;

    for (size_t i = 0; i + 1 < n; i++)
        c[i].next = &c[i + 1];
}

static uint8_t *encode(const ph_cmd *first, size_t *len)
{
    uint8_t *p = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_cmd_batch_encode(first, &p, len, &err), PH_OK, "%s", err.msg);
    return p;
}

static void str_eq(const char *a, const char *b, const char *what)
{
    if (!a || !b)
        cr_assert(a == b, "%s: NULL on one side only", what);
    else
        cr_assert_str_eq(a, b, "%s", what);
}

Test(codec, every_command_kind_survives_a_round_trip)
{
    ph_cmd c[NKINDS];
    fill(c, NKINDS);
    size_t len;
    uint8_t *p = encode(&c[0], &len);
    ph_cmd_batch b;
    ph_err err = {0};
    cr_assert_eq(ph_cmd_batch_decode(p, len, &b, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(b.n, NKINDS);
    for (size_t i = 0; i < NKINDS; i++) {
        cr_assert_eq(b.cmds[i].type, c[i].type);
        cr_assert_eq(b.cmds[i].now, c[i].now);
        cr_assert_eq(b.rcs[i], c[i].rc);
        cr_assert_eq(b.cmds[i].rc, PH_OK, "results start clear");
        cr_assert(b.cmds[i].next == (i + 1 < NKINDS ? &b.cmds[i + 1] : NULL), "linked in order");
        cr_assert_null(b.cmds[i].done);
    }
    const ph_cmd *d = b.cmds;
    str_eq(d[0].in.import.supplier, "acme", "import.supplier");
    str_eq(d[0].in.import.note, NULL, "import.note");
    str_eq(d[0].in.import.lookalikes, "O=0 I=1", "import.lookalikes");
    cr_assert_eq(d[0].in.import.unit_cost, 1980);
    cr_assert_eq(d[0].in.import.ncodes, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(d[0].in.import.codes[i].line, 10u + (uint32_t)i);
        cr_assert_eq(d[0].in.import.codes[i].expires_at, IMPORT_CODES[i].expires_at);
        cr_assert_eq(memcmp(d[0].in.import.codes[i].hash, IMPORT_CODES[i].hash, 32), 0);
        cr_assert_eq(d[0].in.import.codes[i].sealed_len, sizeof SEALED_A);
        cr_assert_eq(memcmp(d[0].in.import.codes[i].sealed, SEALED_A, sizeof SEALED_A), 0);
        cr_assert_eq(d[0].in.import.by_hash[i], BY_HASH[i]);
    }
    str_eq(d[1].in.order.client_order_id, "A-1", "order.client_order_id");
    cr_assert_eq(d[1].in.order.quantity, 7);
    cr_assert_eq(memcmp(d[1].in.order.fingerprint, c[1].in.order.fingerprint, 32), 0);
    cr_assert_eq(d[2].in.void_batch.batch_id, UINT64_MAX);
    str_eq(d[2].in.void_batch.reason, "", "void.reason (empty, not NULL)");
    cr_assert_eq(d[3].in.products.n, 2);
    str_eq(d[3].in.products.json[1], PRODUCTS[1], "products.json[1]");
    cr_assert_eq(d[4].in.supply.delivery, 2);
    cr_assert_eq(d[4].in.supply.account_sealed_len, sizeof SEALED_B);
    cr_assert_eq(memcmp(d[4].in.supply.account_sealed, SEALED_B, sizeof SEALED_B), 0);
    str_eq(d[4].in.supply.account_masked, "138****0001", "supply.account_masked");
    str_eq(d[4].in.supply.first.supplier, "gwa", "supply.first.supplier");
    str_eq(d[4].in.supply.first.product_id, "20001", "supply.first.product_id");
    cr_assert_eq(d[4].in.supply.first.unit_cost, 4900);
    str_eq(d[4].in.supply.fail_reason, NULL, "supply.fail_reason");
    cr_assert_eq(d[5].in.attempt.order_id, 42);
    cr_assert_eq(d[5].in.attempt.no, 2);
    str_eq(d[5].in.attempt.reason, "", "attempt.reason");
    str_eq(d[5].in.attempt.step_state, NULL, "attempt.step_state (keeps)");
    cr_assert_eq(d[5].in.attempt.step, -1);
    cr_assert_eq(d[5].in.attempt.charged, 2850);
    cr_assert_eq(d[5].in.attempt.count_check, 1);
    cr_assert_eq(d[5].in.attempt.ncodes, 2);
    cr_assert_eq(d[5].in.attempt.codes[1].expires_at, -2);
    cr_assert_eq(memcmp(d[5].in.attempt.codes[1].hash, SUPPLIED[1].hash, 32), 0);
    str_eq(d[5].in.attempt.next.supplier, NULL, "attempt.next.supplier");
    str_eq(d[5].in.attempt.next.product_id, NULL, "no supplier, nothing else");
    const ph_audit *a = d[2].audit;
    cr_assert_not_null(a, "void.audit");
    str_eq(a->action, "batch.void", "audit.action");
    str_eq(a->client, "ops", "audit.client");
    str_eq(a->peer, "::1", "audit.peer");
    str_eq(a->request_id, "req-1", "audit.request_id");
    str_eq(a->via, NULL, "audit.via");
    str_eq(a->what, AUDIT_FULL.what, "audit.what");
    a = d[3].audit;
    cr_assert_not_null(a, "put_products.audit");
    str_eq(a->client, NULL, "audit.client (signal)");
    str_eq(a->peer, NULL, "audit.peer (signal)");
    str_eq(a->via, "signal", "audit.via");
    str_eq(a->what, "", "audit.what (empty, not NULL)");
    for (size_t i = 0; i < NKINDS; i++)
        cr_assert(i == 2 || i == 3 || !d[i].audit, "command %zu: no audit in, none out", i);
    cr_assert_eq(d[6].in.expire.limit, 17);
    str_eq(d[7].in.note.name, "supplier.auth_failed", "note.name");
    str_eq(d[7].in.note.fields, c[7].in.note.fields, "note.fields");
    cr_assert_eq(d[5].in.attempt.mark_stuck, 1);
    cr_assert_eq(d[8].in.settle.order_id, 42);
    cr_assert_eq(d[8].in.settle.outcome, PH_ATTEMPT_SUCCEEDED);
    str_eq(d[8].in.settle.by, "ops", "settle.by");
    str_eq(d[8].in.settle.note, "ticket 8812: credited", "settle.note");
    cr_assert_eq(d[8].in.settle.charged, 4940);
    str_eq(d[8].in.settle.supplier_order_id, NULL, "settle.supplier_order_id (keeps)");

    /* encoding the decoded batch gives the same bytes */
    size_t len2;
    for (size_t i = 0; i < NKINDS; i++)
        b.cmds[i].rc = b.rcs[i]; /* as the writer leaves them after applying */
    uint8_t *p2 = encode(&b.cmds[0], &len2);
    cr_assert_eq(len2, len);
    cr_assert_eq(memcmp(p, p2, len), 0, "decode then encode changed the bytes");
    free(p2);
    ph_cmd_batch_free(&b);
    free(p);
}

Test(codec, every_truncation_is_refused_naming_a_field)
{
    ph_cmd c[NKINDS];
    fill(c, NKINDS);
    size_t len;
    uint8_t *p = encode(&c[0], &len);
    for (size_t cut = 0; cut < len; cut++) {
        ph_cmd_batch b;
        ph_err err = {0};
        int rc = ph_cmd_batch_decode(p, cut, &b, &err);
        cr_assert_eq(rc, PH_EINVAL, "%zu of %zu bytes decoded", cut, len);
        cr_assert(strstr(err.msg, "truncated") || strstr(err.msg, "count larger"), "cut at %zu: %s",
                  cut, err.msg);
        cr_assert(!strncmp(err.msg, "batch: ", 7) || !strncmp(err.msg, "command ", 8),
                  "cut at %zu: %s", cut, err.msg);
    }
    free(p);
}

static void expect_refused(const uint8_t *p, size_t len, const char *needle)
{
    ph_cmd_batch b;
    ph_err err = {0};
    cr_assert_eq(ph_cmd_batch_decode(p, len, &b, &err), PH_EINVAL, "decoded; wanted '%s'", needle);
    cr_assert(strstr(err.msg, needle), "'%s' not in: %s", needle, err.msg);
}

Test(codec, garbage_and_inconsistent_input_is_refused)
{
    ph_cmd c[NKINDS];
    fill(c, NKINDS);
    size_t len;
    uint8_t *p = encode(&c[0], &len);
    uint8_t *q = malloc(len + 1);

    memcpy(q, p, len);
    q[0] = PH_CMD_CODEC_VERSION + 1;
    expect_refused(q, len, "version 6");
    memcpy(q, p, len);
    q[0] = 0;
    expect_refused(q, len, "version 0");

    memcpy(q, p, len);
    q[len] = 0;
    expect_refused(q, len + 1, "after the last command");

    /* the first command: version (1) + ncmds (4) + its length (4), then its type */
    memcpy(q, p, len);
    q[9] = 99;
    expect_refused(q, len, "command 0 (?): type: unknown command type");

    /* a NUL inside the import's supplier "acme": type 1, now 8, rc 4, len 4 */
    memcpy(q, p, len);
    q[9 + 1 + 8 + 4 + 4 + 1] = 0;
    expect_refused(q, len, "command 0 (import): supplier: holds a NUL byte");

    /* by_hash out of hash order */
    ph_cmd one[NKINDS];
    fill(one, 1);
    static const uint32_t unsorted[3] = {0, 1, 2};
    one[0].in.import.by_hash = unsorted;
    size_t l1;
    uint8_t *p1 = encode(&one[0], &l1);
    expect_refused(p1, l1, "command 0 (import): by_hash");
    free(p1);

    /* a count that the bytes cannot hold */
    memcpy(q, p, len);
    q[1] = 0xff, q[2] = 0xff, q[3] = 0xff, q[4] = 0x7f;
    expect_refused(q, len, "batch: ncmds: count larger");

    /* fixed-seed noise behind a valid version byte never decodes */
    unsigned seed = 7;
    for (int round = 0; round < 2000; round++) {
        size_t n = 1 + (size_t)(rand_r(&seed) % 200);
        uint8_t noise[200];
        for (size_t i = 0; i < n; i++)
            noise[i] = (uint8_t)rand_r(&seed);
        noise[0] = (uint8_t)(1 + (round & 1)); /* both versions read */
        ph_cmd_batch b;
        ph_err err = {0};
        int rc = ph_cmd_batch_decode(noise, n, &b, &err);
        if (rc == PH_OK)
            ph_cmd_batch_free(&b); /* an empty batch ("1, 0 commands") is valid */
        else
            cr_assert(err.msg[0], "a refusal without a message");
    }
    free(q);
    free(p);
}

/* An EXPIRE command's bytes: type 7, now, rc, limit; then, in version 2, the
 * audit flag byte. */
static size_t expire_bytes(uint8_t *q, uint8_t version, int audit_flag)
{
    size_t n = 0, clen = 1 + 8 + 4 + 4 + (version >= 2 ? 1 : 0);
    q[n++] = version;
    q[n++] = 1, q[n++] = 0, q[n++] = 0, q[n++] = 0; /* one command */
    q[n++] = (uint8_t)clen, q[n++] = 0, q[n++] = 0, q[n++] = 0;
    q[n++] = PH_CMD_EXPIRE;
    for (int i = 0; i < 8; i++)
        q[n++] = i == 0 ? 42 : 0; /* now = 42 */
    for (int i = 0; i < 4; i++)
        q[n++] = 0;                                 /* rc */
    q[n++] = 9, q[n++] = 0, q[n++] = 0, q[n++] = 0; /* limit = 9 */
    if (version >= 2)
        q[n++] = (uint8_t)audit_flag;
    return n;
}

Test(codec, a_version_1_batch_still_decodes_without_an_audit)
{
    uint8_t q[64];
    size_t n = expire_bytes(q, 1, 0);
    ph_cmd_batch b;
    ph_err err = {0};
    cr_assert_eq(ph_cmd_batch_decode(q, n, &b, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(b.n, 1);
    cr_assert_eq(b.cmds[0].now, 42);
    cr_assert_eq(b.cmds[0].in.expire.limit, 9);
    cr_assert_null(b.cmds[0].audit);
    ph_cmd_batch_free(&b);

    /* the same command now: version 3 (an EXPIRE as in version 2), one more
     * byte (no audit) */
    ph_cmd c = {.type = PH_CMD_EXPIRE, .now = 42};
    c.in.expire.limit = 9;
    size_t len;
    uint8_t *p = encode(&c, &len);
    n = expire_bytes(q, PH_CMD_CODEC_VERSION, 0);
    cr_assert_eq(len, n);
    cr_assert_eq(memcmp(p, q, n), 0, "version 3 bytes");
    free(p);

    n = expire_bytes(q, 2, 2);
    expect_refused(q, n, "command 0 (expire): audit: flag neither 0 nor 1");
    n = expire_bytes(q, 2, 1);
    expect_refused(q, n, "command 0 (expire): audit.action: truncated");
}

/* A journal written before issue 11 (version 1) has no mark_stuck at the end
 * of an ATTEMPT, nor an audit flag: it decodes as 0. */
Test(codec, an_attempt_without_mark_stuck_decodes_as_not_marked)
{
    ph_cmd c[NKINDS];
    fill(c, NKINDS);
    c[5].next = NULL;
    size_t len;
    uint8_t *p = encode(&c[5], &len);
    /* u8 version, u32 count, u32 the command's length, the command; version 2
     * ends it with mark_stuck (4 bytes), delivered, tolerance, face_value and
     * late_check_at (8 bytes each) and the audit flag (1 byte, 0 here) */
    uint32_t clen =
        (uint32_t)p[5] | (uint32_t)p[6] << 8 | (uint32_t)p[7] << 16 | (uint32_t)p[8] << 24;
    cr_assert_eq(clen, len - 9);
    cr_assert_eq(p[0], PH_CMD_CODEC_VERSION);
    cr_assert_eq(p[len - 1], 0, "no audit");
    p[0] = 1;
    clen -= 4 + 32 + 1;
    for (int k = 0; k < 4; k++)
        p[5 + k] = (uint8_t)(clen >> (8 * k));
    ph_cmd_batch b;
    ph_err err = {0};
    cr_assert_eq(ph_cmd_batch_decode(p, len - 37, &b, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(b.cmds[0].in.attempt.mark_stuck, 0);
    cr_assert_eq(b.cmds[0].in.attempt.tolerance, 0);
    cr_assert_eq(b.cmds[0].in.attempt.late_check_at, 0);
    cr_assert_eq(b.cmds[0].in.attempt.charged, 2850);
    ph_cmd_batch_free(&b);
    free(p);
}

Test(codec, a_command_without_an_encoding_is_refused_at_encoding)
{
    ph_cmd c = {.type = 99};
    uint8_t *p = NULL;
    size_t len;
    ph_err err = {0};
    cr_assert_eq(ph_cmd_batch_encode(&c, &p, &len, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "type 99 has no encoding"), "%s", err.msg);
    cr_assert_null(p);
}

/* ---- the journal file ----------------------------------------------------------- */

Test(codec, a_journal_continues_after_a_clean_close_and_refuses_otherwise)
{
    char path[128];
    snprintf(path, sizeof path, "%s/j", g_base);
    ph_journal *j;
    ph_err err = {0};
    cr_assert_eq(ph_journal_open(path, "0123abcd", 0, &j, &err), PH_EINVAL,
                 "a new journal on a store with data");
    cr_assert(strstr(err.msg, "already holds data"), "%s", err.msg);
    cr_assert_eq(access(path, F_OK), -1, "nothing created");

    cr_assert_eq(ph_journal_open(path, "0123abcd", 1, &j, &err), PH_OK, "%s", err.msg);
    ph_cmd c[NKINDS];
    fill(c, NKINDS);
    cr_assert_eq(ph_journal_append(j, &c[0], &err), PH_OK, "%s", err.msg);
    ph_journal_close(j);

    cr_assert_eq(ph_journal_open(path, "ffffffff", 0, &j, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "belongs to store 0123abcd"), "%s", err.msg);
    cr_assert_eq(ph_journal_open(path, "0123abcd", 0, &j, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ph_journal_append(j, &c[1], &err), PH_OK, "%s", err.msg);
    ph_journal_close(j);

    /* cut the close record off: what a crash leaves */
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(truncate(path, st.st_size - 12), 0);
    cr_assert_eq(ph_journal_open(path, "0123abcd", 0, &j, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "did not close it"), "%s", err.msg);
    cr_assert_eq(truncate(path, st.st_size - 20), 0);
    cr_assert_eq(ph_journal_open(path, "0123abcd", 0, &j, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "torn record"), "%s", err.msg);
}

/* ---- PH_CMD_NOTE_EVENT: applied, refused, journaled and replayed -------------------- */

static int note(ph_store *s, const char *name, const char *fields, ph_err *err)
{
    ph_cmd c = {.type = PH_CMD_NOTE_EVENT, .now = 1800000000000LL};
    c.in.note.name = name;
    c.in.note.fields = fields;
    int rc = ph_store_exec(s, &c);
    *err = c.err;
    ph_cmd_clear(&c);
    return rc;
}

/* The events of the store in dir, one JSON text per line. */
static char *events_of(ph_store *s)
{
    char **list;
    size_t n;
    ph_err err = {0};
    cr_assert_eq(ph_store_event_list(s, 0, 100, &list, &n, &err), PH_OK, "%s", err.msg);
    size_t cap = 1;
    for (size_t i = 0; i < n; i++)
        cap += strlen(list[i]) + 1;
    char *out = calloc(1, cap);
    for (size_t i = 0; i < n; i++) {
        strcat(out, list[i]);
        strcat(out, "\n");
    }
    ph_store_event_list_free(list, n);
    return out;
}

Test(codec, a_note_event_is_one_event_refused_when_not_ours_and_replayed)
{
    char dir[128], jpath[128], rdir[128];
    snprintf(dir, sizeof dir, "%s/n", g_base);
    snprintf(jpath, sizeof jpath, "%s/n.journal", g_base);
    snprintf(rdir, sizeof rdir, "%s/r", g_base);
    ph_store_opts o = {.dir = dir, .journal_file = jpath};
    ph_store *s = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_store_open(&o, &s, &err), PH_OK, "%s", err.msg);

    cr_assert_eq(
        note(s, "supplier.auth_failed", "{\"supplier\":\"gwa\",\"why\":\"http 401\"}", &err), PH_OK,
        "%s", err.msg);
    /* refusals change nothing and name what was wrong */
    cr_assert_eq(note(s, "order.succeeded", "{}", &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "name"), "%s", err.msg);
    cr_assert_eq(note(s, NULL, "{}", &err), PH_EINVAL);
    cr_assert_eq(note(s, "supplier.auth_restored", "[1]", &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "fields"), "%s", err.msg);
    cr_assert_eq(note(s, "supplier.auth_restored", "{\"seq\":1}", &err), PH_EINVAL);
    cr_assert_eq(note(s, "supplier.auth_restored", "{\"type\":\"x\"}", &err), PH_EINVAL);
    cr_assert_eq(note(s, "supplier.auth_restored", "{nope", &err), PH_EINVAL);
    cr_assert_eq(note(s, "supplier.auth_restored", NULL, &err), PH_EINVAL);
    char big[PH_NOTE_FIELDS_MAX + 16];
    memset(big, ' ', sizeof big - 1);
    big[0] = '{';
    big[sizeof big - 2] = '}';
    big[sizeof big - 1] = 0;
    cr_assert_eq(note(s, "supplier.auth_restored", big, &err), PH_EINVAL);
    cr_assert_eq(note(s, "supplier.auth_restored", "{\"supplier\":\"gwa\"}", &err), PH_OK, "%s",
                 err.msg);

    char *ev = events_of(s);
    cr_assert_str_eq(ev,
                     "{\"seq\":1,\"at\":\"2027-01-15T08:00:00.000Z\",\"type\":"
                     "\"supplier.auth_failed\",\"supplier\":\"gwa\",\"why\":\"http 401\"}\n"
                     "{\"seq\":2,\"at\":\"2027-01-15T08:00:00.000Z\",\"type\":"
                     "\"supplier.auth_restored\",\"supplier\":\"gwa\"}\n",
                     "%s", ev);
    ph_store_close(s);

    /* the journal gives the same feed, refusals refused again */
    ph_replay_stats st = {0};
    cr_assert_eq(ph_journal_replay(jpath, rdir, NULL, &st, &err), PH_OK, "%s", err.msg);
    ph_store_opts ro = {.dir = rdir};
    cr_assert_eq(ph_store_open(&ro, &s, &err), PH_OK, "%s", err.msg);
    char *ev2 = events_of(s);
    cr_assert_str_eq(ev2, ev);
    ph_store_close(s);
    free(ev);
    free(ev2);
}

/* ---- the store uid, given --------------------------------------------------------- */

static ph_store *open_uid(const char *name, const char *uid, int want)
{
    char dir[128];
    snprintf(dir, sizeof dir, "%s/%s", g_base, name);
    ph_store_opts o = {.dir = dir, .uid = uid};
    ph_store *s = NULL;
    ph_err err = {0};
    int rc = ph_store_open(&o, &s, &err);
    cr_assert_eq(rc, want, "open %s uid %s: %s", name, uid ? uid : "(random)", err.msg);
    return s;
}

/* A replay creates its store with the journal's uid: attempt references
 * ("<uid>-<order>-<no>") come out the same, where a random uid made them (and
 * every byte of `meta` and `supply` holding them) differ. */
Test(codec, a_store_takes_the_uid_it_is_given_and_keeps_it)
{
    ph_store *s = open_uid("a", "0badcafe", PH_OK);
    cr_assert_str_eq(ph_store_uid(s), "0badcafe");
    ph_store_close(s);
    s = open_uid("a", NULL, PH_OK);
    cr_assert_str_eq(ph_store_uid(s), "0badcafe", "the stored uid wins when none is asked");
    ph_store_close(s);
    cr_assert_null(open_uid("a", "12345678", PH_EINVAL), "another uid for an existing store");
    cr_assert_null(open_uid("b", "0BADCAFE", PH_EINVAL), "not lowercase hex");
    cr_assert_null(open_uid("b", "0bad", PH_EINVAL), "not 8 characters");
    char dir[128];
    snprintf(dir, sizeof dir, "%s/b", g_base);
    cr_assert_eq(access(dir, F_OK), -1, "a refused uid created nothing");
}

/* WH_CREATE and WH_RESULT carry structs, not text: each field survives the
 * journal, and every truncation of them is refused. */
Test(codec, webhook_commands_round_trip_field_by_field)
{
    static const ph_wh_new dels[] = {{3, 7, "order.accepted"}, {9, 0, "stock.low"}};
    static const ph_wh_answer ans[] = {
        {.endpoint = "mall", .error = "", .seq = 3, .status = 204, .outcome = 1},
        {.endpoint = "other",
         .error = "timeout",
         .seq = 18446744073709551615ULL,
         .next_at = -5,
         .status = 0,
         .outcome = 2}};
    ph_cmd c[3] = {{.type = PH_CMD_WH_CREATE, .now = 11}, {.type = PH_CMD_WH_RESULT, .now = 12}};
    c[0].in.wh.endpoint = "mall";
    c[0].in.wh.cursor_from = 2;
    c[0].in.wh.cursor_to = 10;
    c[0].in.wh.dels = dels;
    c[0].in.wh.ndels = 2;
    c[0].next = &c[1];
    c[1].in.wh.answers = ans;
    c[1].in.wh.nanswers = 2;
    c[1].next = &c[2];
    c[2] = (ph_cmd){.type = PH_CMD_WH_REPLAY, .now = 13};
    c[2].in.wh.endpoint = "mall";
    c[2].in.wh.json = "{\"seq\":3}";
    size_t len;
    uint8_t *p = encode(&c[0], &len);
    ph_cmd_batch b;
    ph_err err = {0};
    cr_assert_eq(ph_cmd_batch_decode(p, len, &b, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(b.n, 3);
    const ph_cmd *x = &b.cmds[0];
    cr_assert_str_eq(x->in.wh.endpoint, "mall");
    cr_assert_eq(x->in.wh.cursor_from, 2);
    cr_assert_eq(x->in.wh.cursor_to, 10);
    cr_assert_eq(x->in.wh.ndels, 2);
    for (size_t i = 0; i < 2; i++) {
        cr_assert_eq(x->in.wh.dels[i].seq, dels[i].seq);
        cr_assert_eq(x->in.wh.dels[i].order_id, dels[i].order_id);
        cr_assert_str_eq(x->in.wh.dels[i].type, dels[i].type);
    }
    x = &b.cmds[1];
    cr_assert_eq(x->in.wh.nanswers, 2);
    for (size_t i = 0; i < 2; i++) {
        const ph_wh_answer *a = &x->in.wh.answers[i];
        cr_assert_str_eq(a->endpoint, ans[i].endpoint);
        cr_assert_str_eq(a->error, ans[i].error);
        cr_assert_eq(a->seq, ans[i].seq);
        cr_assert_eq(a->next_at, ans[i].next_at);
        cr_assert_eq(a->status, ans[i].status);
        cr_assert_eq(a->outcome, ans[i].outcome);
    }
    cr_assert_str_eq(b.cmds[2].in.wh.json, "{\"seq\":3}");
    ph_cmd_batch_free(&b);
    for (size_t cut = 0; cut < len; cut++) {
        ph_err e = {0};
        cr_assert_eq(ph_cmd_batch_decode(p, cut, &b, &e), PH_EINVAL, "%zu of %zu decoded", cut,
                     len);
    }
    free(p);
}

/* Issue 16: an order's grant input (version 4) and PH_CMD_GRANT round-trip. */
Test(codec, a_grant_order_and_a_grant_command_survive_a_round_trip)
{
    static const ph_grant_in gin = {
        .expires_at = 1800000000000LL,
        .token_hash = {1, 2, 3},
        .holder = {.key = 0x0102030405060708ULL, .masked = "em****01", .tags = "[\"dept=eng\"]"},
        .batch = 9};
    ph_cmd c[2];
    memset(c, 0, sizeof c);
    c[0].type = PH_CMD_ORDER;
    c[0].now = 1;
    c[0].in.order.client = "mall";
    c[0].in.order.client_order_id = "G-1";
    c[0].in.order.sku = "iqiyi.gold.1m";
    c[0].in.order.quantity = 1;
    c[0].in.order.grant = &gin;
    c[1].type = PH_CMD_GRANT;
    c[1].now = 2;
    c[1].in.grant.op = PH_GRANT_GIFT;
    c[1].in.grant.grant_id = 77;
    memset(c[1].in.grant.token_hash, 0xAB, 32);
    memset(c[1].in.grant.key, 0xCD, 32);
    memset(c[1].in.grant.new_token_hash, 0xEF, 32);
    c[1].in.grant.client = "mall";
    c[1].in.grant.to = (ph_grant_holder){.key = 42, .masked = "fr****02", .tags = NULL};
    c[1].in.grant.first = (ph_attempt_target){.supplier = "sbx", .product_id = "p", .unit_cost = 5};
    c[1].in.grant.expires_at = 123;
    c[1].in.grant.limit = 7;
    c[0].next = &c[1];
    size_t len;
    uint8_t *p = encode(&c[0], &len);
    ph_cmd_batch b;
    ph_err err = {0};
    cr_assert_eq(ph_cmd_batch_decode(p, len, &b, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(b.n, 2);
    const ph_grant_in *g = b.cmds[0].in.order.grant;
    cr_assert_not_null(g);
    cr_assert_eq(g->expires_at, gin.expires_at);
    cr_assert_eq(memcmp(g->token_hash, gin.token_hash, 32), 0);
    cr_assert_eq(g->holder.key, gin.holder.key);
    str_eq(g->holder.masked, "em****01", "holder.masked");
    str_eq(g->holder.tags, "[\"dept=eng\"]", "holder.tags");
    cr_assert_eq(g->batch, 9);
    const ph_cmd *d = &b.cmds[1];
    cr_assert_eq(d->type, PH_CMD_GRANT);
    cr_assert_eq(d->in.grant.op, PH_GRANT_GIFT);
    cr_assert_eq(d->in.grant.grant_id, 77);
    cr_assert_eq(memcmp(d->in.grant.key, c[1].in.grant.key, 32), 0);
    cr_assert_eq(memcmp(d->in.grant.new_token_hash, c[1].in.grant.new_token_hash, 32), 0);
    cr_assert_eq(d->in.grant.to.key, 42);
    str_eq(d->in.grant.to.tags, NULL, "to.tags");
    str_eq(d->in.grant.first.supplier, "sbx", "first.supplier");
    cr_assert_eq(d->in.grant.expires_at, 123);
    cr_assert_eq(d->in.grant.limit, 7);
    ph_cmd_batch_free(&b);
    free(p);
}

/* Version 5: a bundle grant (BUNDLE's grant input), a held bundle's release
 * (REVIEW's targets) and a bundle grant's claim (GRANT's targets). */
Test(codec, bundle_grants_and_held_bundles_survive_a_round_trip)
{
    static const ph_grant_in gin = {.expires_at = 1800000000000LL,
                                    .token_hash = {7},
                                    .holder = {.key = 5, .masked = "em****01", .tags = NULL}};
    static const ph_attempt_target t[2] = {
        {0}, {.supplier = "rwb", .product_id = "U2", .unit_cost = 49}};
    ph_cmd c[3];
    memset(c, 0, sizeof c);
    c[0].type = PH_CMD_BUNDLE;
    c[0].now = 1;
    c[0].in.bundle.client = "mall";
    c[0].in.bundle.client_order_id = "B-1";
    c[0].in.bundle.sku = "b.pack";
    c[0].in.bundle.quantity = 1;
    c[0].in.bundle.targets = t;
    c[0].in.bundle.ntargets = 2;
    c[0].in.bundle.grant = &gin;
    c[1].type = PH_CMD_REVIEW;
    c[1].now = 2;
    c[1].in.review.order_id = 12;
    c[1].in.review.release = 1;
    c[1].in.review.who = "ops";
    c[1].in.review.targets[1] = t[1];
    c[1].in.review.ntargets = 2;
    c[2].type = PH_CMD_GRANT;
    c[2].now = 3;
    c[2].in.grant.op = PH_GRANT_CLAIM;
    c[2].in.grant.targets[1] = t[1];
    c[2].in.grant.ntargets = 2;
    c[0].next = &c[1];
    c[1].next = &c[2];
    size_t len;
    uint8_t *p = encode(&c[0], &len);
    cr_assert_eq(p[0], 5);
    ph_cmd_batch b;
    ph_err err = {0};
    cr_assert_eq(ph_cmd_batch_decode(p, len, &b, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(b.n, 3);
    const ph_grant_in *g = b.cmds[0].in.bundle.grant;
    cr_assert_not_null(g);
    cr_assert_eq(g->expires_at, gin.expires_at);
    str_eq(g->holder.masked, "em****01", "holder.masked");
    cr_assert_eq(b.cmds[1].in.review.ntargets, 2);
    str_eq(b.cmds[1].in.review.targets[0].supplier, NULL, "targets[0].supplier");
    str_eq(b.cmds[1].in.review.targets[1].supplier, "rwb", "targets[1].supplier");
    cr_assert_eq(b.cmds[1].in.review.targets[1].unit_cost, 49);
    cr_assert_eq(b.cmds[2].in.grant.ntargets, 2);
    str_eq(b.cmds[2].in.grant.targets[1].product_id, "U2", "targets[1].product_id");
    ph_cmd_batch_free(&b);
    /* too many targets is refused on the way in, naming the command */
    c[1].in.review.ntargets = PH_CMD_TARGETS_MAX + 1;
    c[1].next = NULL;
    uint8_t *q = NULL;
    size_t qlen = 0;
    cr_assert_eq(ph_cmd_batch_encode(&c[1], &q, &qlen, &err), PH_EINVAL);
    cr_assert(strstr(err.msg, "targets"), "%s", err.msg);
    free(q);
    free(p);
}
