/*
 * test_store_redeem.c — PH_CMD_CODE_REDEEMED through the real writer
 * (store_redeem.c): an issued code becomes redeemed once, with one event that
 * never holds the code; a second report changes nothing; a code that is not
 * issued, or no code at all, is refused and nothing changes; the supplier's
 * time is kept only when believable; the command survives its journal
 * encoding; --check-store stays clean.
 */
#include "store_fixture.h"

#include "store/cmd_codec.h"

TestSuite(store_redeem, .init = fixture_setup, .fini = fixture_teardown);

/* Imports codes 1..n of IQ (hash: code_hash) and issues codes 1..issued to one
 * order of client mall. */
static void stock_and_issue(unsigned n, unsigned issued)
{
    g_s = open_at(g_dir, 0);
    const char *const all[] = {P_IQ};
    ph_err err = {0};
    cr_assert_eq(put_products(all, 1, &err), PH_OK, "%s", err.msg);
    ph_import_code codes[8];
    uint32_t by_hash[8];
    char sealed[8][16];
    cr_assert_leq(n, 8);
    for (unsigned i = 0; i < n; i++) {
        int len = snprintf(sealed[i], sizeof sealed[i], "sealed-%u", i + 1);
        codes[i] = (ph_import_code){
            .line = i + 1, .sealed_len = (uint32_t)len, .sealed = (uint8_t *)sealed[i]};
        code_hash(i + 1, codes[i].hash);
        by_hash[i] = i;
    }
    /* insertion sort by hash: the import wants its permutation in hash order */
    for (unsigned i = 1; i < n; i++)
        for (unsigned j = i;
             j > 0 && memcmp(codes[by_hash[j - 1]].hash, codes[by_hash[j]].hash, 32) > 0; j--) {
            uint32_t t = by_hash[j];
            by_hash[j] = by_hash[j - 1];
            by_hash[j - 1] = t;
        }
    ph_cmd c = {.type = PH_CMD_IMPORT, .now = NOW};
    c.in.import.supplier = "sup-a";
    c.in.import.sku = IQ;
    c.in.import.unit_cost = 2800;
    c.in.import.codes = codes;
    c.in.import.ncodes = n;
    c.in.import.by_hash = by_hash;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    if (!issued)
        return;
    ph_cmd o = {.type = PH_CMD_ORDER, .now = NOW + 1000};
    o.in.order.client = "mall";
    o.in.order.client_order_id = "A-1";
    o.in.order.sku = IQ;
    o.in.order.quantity = issued;
    fingerprint(IQ, issued, o.in.order.fingerprint);
    cr_assert_eq(ph_store_exec(g_s, &o), PH_OK, "%s", o.err.msg);
    ph_cmd_clear(&o);
}

static int redeem(unsigned code, int64_t now, int64_t at, ph_cmd *out)
{
    ph_cmd c = {.type = PH_CMD_CODE_REDEEMED, .now = now};
    code_hash(code, c.in.redeem.hash);
    c.in.redeem.redeemed_at = at;
    int rc = ph_store_exec(g_s, &c);
    *out = c;
    return rc;
}

static ph_code_info find(unsigned code)
{
    uint8_t h[32];
    code_hash(code, h);
    ph_code_info info;
    ph_err err = {0};
    cr_assert_eq(ph_store_code_find(g_s, h, &info, &err), PH_OK, "%s", err.msg);
    return info;
}

Test(store_redeem, issued_becomes_redeemed_once)
{
    stock_and_issue(3, 2);
    uint64_t before = last_event();
    ph_cmd c;
    cr_assert_eq(redeem(1, NOW + 5000, NOW + 3000, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.code_changed, 1);
    uint64_t id = c.code_id;
    cr_assert_gt(id, 0);
    ph_cmd_clear(&c);
    ph_code_info info = find(1);
    cr_assert_eq(info.code.state, PH_CODE_REDEEMED);
    cr_assert_eq(info.code.changed_at, NOW + 3000, "the supplier's time, believable");
    cr_assert_not_null(info.order, "a redeemed code keeps its order");
    cr_assert_str_eq(info.order->client, "mall");
    ph_code_info_clear(&info);

    json_t *evs = events_after_without(before, NULL);
    cr_assert_eq(json_array_size(evs), 1);
    json_t *ev = json_array_get(evs, 0);
    cr_assert_str_eq(ev_str(ev, "type"), "code.redeemed");
    cr_assert_str_eq(ev_str(ev, "sku"), IQ);
    cr_assert_eq(ev_int(ev, "code_id"), (json_int_t)id);
    cr_assert_eq(ev_int(ev, "batch_id"), 1);
    json_decref(evs);

    /* a second report: PH_OK, nothing written, the first time stands */
    uint64_t after = last_event();
    cr_assert_eq(redeem(1, NOW + 9000, NOW + 8000, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.code_changed, 0);
    cr_assert_eq(c.code_id, id);
    ph_cmd_clear(&c);
    cr_assert_eq(last_event(), after, "a second report writes no event");
    info = find(1);
    cr_assert_eq(info.code.changed_at, NOW + 3000);
    ph_code_info_clear(&info);
    assert_counts(IQ, 1, 0, 1, 1, 0, 0); /* issued -> redeemed, once */
}

/* The supplier's time is kept only inside [issued, now]; else the command's now. */
Test(store_redeem, unbelievable_times_read_as_now)
{
    stock_and_issue(3, 3);
    static const struct {
        unsigned code;
        int64_t at;
    } cases[] = {{1, 0}, {2, NOW + 999}, {3, NOW + 60000}}; /* unknown, before issue, future */
    for (size_t i = 0; i < 3; i++) {
        ph_cmd c;
        cr_assert_eq(redeem(cases[i].code, NOW + 5000, cases[i].at, &c), PH_OK, "%s", c.err.msg);
        ph_cmd_clear(&c);
        ph_code_info info = find(cases[i].code);
        cr_assert_eq(info.code.changed_at, NOW + 5000, "case %zu", i);
        ph_code_info_clear(&info);
    }
    assert_check();
}

/* Not issued (in stock, voided) or no such code: refused, nothing changes. */
Test(store_redeem, refusals_change_nothing)
{
    stock_and_issue(3, 1);
    uint64_t before = last_event();
    ph_cmd c;
    cr_assert_eq(redeem(3, NOW + 5000, 0, &c), PH_ESTATE);
    cr_assert(strstr(c.err.msg, "is available, not issued"), "%s", c.err.msg);
    cr_assert_null(strstr(c.err.msg, "CODE-"), "the message never holds a code");
    ph_cmd_clear(&c);
    cr_assert_eq(redeem(7, NOW + 5000, 0, &c), PH_ENOTFOUND);
    ph_cmd_clear(&c);
    ph_code_info info = find(3);
    cr_assert_eq(info.code.state, PH_CODE_AVAILABLE);
    ph_code_info_clear(&info);

    ph_cmd v = {.type = PH_CMD_VOID_BATCH, .now = NOW + 2000};
    v.in.void_batch.batch_id = 1;
    v.in.void_batch.reason = "upstream";
    cr_assert_eq(ph_store_exec(g_s, &v), PH_OK, "%s", v.err.msg);
    ph_cmd_clear(&v);
    uint64_t voided = last_event();
    cr_assert_gt(voided, before);
    cr_assert_eq(redeem(1, NOW + 5000, 0, &c), PH_ESTATE);
    cr_assert(strstr(c.err.msg, "is voided, not issued"), "%s", c.err.msg);
    ph_cmd_clear(&c);
    cr_assert_eq(last_event(), voided, "a refused report writes nothing");
    assert_check();
}

/* The journal carries the hash and the time, and decodes to the same command. */
Test(store_redeem, journal_encoding)
{
    ph_cmd c = {.type = PH_CMD_CODE_REDEEMED, .now = NOW + 5};
    code_hash(4, c.in.redeem.hash);
    c.in.redeem.redeemed_at = NOW - 7;
    uint8_t *buf = NULL;
    size_t len = 0;
    ph_err err = {0};
    cr_assert_eq(ph_cmd_batch_encode(&c, &buf, &len, &err), PH_OK, "%s", err.msg);
    cr_assert_null(memmem(buf, len, "CODE-4", 6), "the journal never holds the code");
    ph_cmd_batch b = {0};
    cr_assert_eq(ph_cmd_batch_decode(buf, len, &b, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(b.n, 1);
    cr_assert_eq(b.cmds[0].type, PH_CMD_CODE_REDEEMED);
    cr_assert_eq(b.cmds[0].now, NOW + 5);
    cr_assert_eq(b.cmds[0].in.redeem.redeemed_at, NOW - 7);
    cr_assert_eq(memcmp(b.cmds[0].in.redeem.hash, c.in.redeem.hash, 32), 0);
    cr_assert_str_eq(ph_cmd_type_name(PH_CMD_CODE_REDEEMED), "code_redeemed");
    ph_cmd_batch_free(&b);
    free(buf);
}
