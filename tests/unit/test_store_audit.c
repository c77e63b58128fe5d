/*
 * test_store_audit.c — the audit trail in the store (store.h, ph_audit;
 * core/store/store_audit.c): a command's audit record is written by the writer
 * in the command's own transaction when, and only when, the command applies;
 * a malformed record refuses the command whole; the trail reads back in pages
 * with its filters; a store written before the trail still opens read-only.
 */
#include <semaphore.h>

#include "store/store.h"
#include "store_fixture.h"
#include "store/store_int.h"

TestSuite(audit, .init = fixture_setup, .fini = fixture_teardown);

static const ph_audit OPS = {.action = "batch.void",
                             .client = "ops",
                             .peer = "127.0.0.1",
                             .request_id = "req-7",
                             .what = "{\"batch_id\":1}"};

static void catalog(void)
{
    const char *const all[] = {P_IQ, P_TOPUP, P_OLD};
    ph_err err = {0};
    cr_assert_eq(put_products(all, 3, &err), PH_OK, "%s", err.msg);
}

/* Imports codes first..first+n-1 into IQ with `audit`; returns the rc and the batch id. */
static int import_codes(unsigned first, size_t n, const ph_audit *audit, uint64_t *batch)
{
    ph_import_code codes[8];
    uint32_t by_hash[8];
    char sealed[8][24];
    cr_assert(n <= 8);
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(sealed[i], sizeof sealed[i], "sealed-%u", first + (unsigned)i);
        codes[i] = (ph_import_code){
            .line = (uint32_t)(i + 1), .sealed_len = (uint32_t)len, .sealed = (uint8_t *)sealed[i]};
        code_hash(first + (unsigned)i, codes[i].hash);
    }
    /* by_hash: indices sorted by hash (n is small: insertion sort) */
    for (size_t i = 0; i < n; i++) {
        size_t j = i;
        while (j && memcmp(codes[by_hash[j - 1]].hash, codes[i].hash, 32) > 0) {
            by_hash[j] = by_hash[j - 1];
            j--;
        }
        by_hash[j] = (uint32_t)i;
    }
    ph_cmd c = {.type = PH_CMD_IMPORT, .now = NOW, .audit = audit};
    c.in.import.supplier = "sup-a";
    c.in.import.sku = IQ;
    c.in.import.codes = codes;
    c.in.import.ncodes = n;
    c.in.import.by_hash = by_hash;
    int rc = ph_store_exec(g_s, &c);
    if (batch)
        *batch = c.batch_id;
    ph_cmd_clear(&c);
    return rc;
}

static int void_batch(uint64_t id, int64_t now, const ph_audit *audit, ph_err *err)
{
    ph_cmd c = {.type = PH_CMD_VOID_BATCH, .now = now, .audit = audit};
    c.in.void_batch.batch_id = id;
    int rc = ph_store_exec(g_s, &c);
    if (err)
        *err = c.err;
    ph_cmd_clear(&c);
    return rc;
}

/* The whole trail (or what matches f), parsed, as a JSON array. */
static json_t *trail(const ph_audit_filter *f)
{
    char **list;
    size_t n;
    uint64_t next;
    int more;
    ph_err err = {0};
    cr_assert_eq(ph_store_audit_list(g_s, f, 0, 1000, 0, &list, &n, &next, &more, &err), PH_OK,
                 "%s", err.msg);
    cr_assert_eq(more, 0);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        cr_assert_null(strstr(list[i], "CODE-"), "audit leaks a code: %s", list[i]);
        cr_assert_null(strstr(list[i], "sealed-"), "audit leaks a sealed blob: %s", list[i]);
        json_t *rec = json_loads(list[i], 0, NULL);
        cr_assert_not_null(rec, "not JSON: %s", list[i]);
        json_array_append_new(arr, rec);
    }
    ph_store_event_list_free(list, n);
    return arr;
}

static size_t trail_len(void)
{
    json_t *t = trail(NULL);
    size_t n = json_array_size(t);
    json_decref(t);
    return n;
}

Test(audit, an_applied_command_writes_one_record_with_who_what_and_its_events)
{
    g_s = open_at(g_dir, 0);
    catalog();
    uint64_t batch;
    cr_assert_eq(import_codes(1, 3, NULL, &batch), PH_OK);
    cr_assert_eq(trail_len(), 0, "no audit member, no record");
    uint64_t before = last_event();
    ph_err err = {0};
    cr_assert_eq(void_batch(batch, NOW + 5, &OPS, &err), PH_OK, "%s", err.msg);
    uint64_t after = last_event();
    cr_assert_gt(after, before);

    json_t *t = trail(NULL);
    cr_assert_eq(json_array_size(t), 1);
    json_t *r = json_array_get(t, 0);
    cr_assert_eq(ev_int(r, "id"), 1);
    cr_assert_str_eq(ev_str(r, "at"), "2023-11-14T22:13:20.005Z", "the command's now");
    cr_assert_str_eq(ev_str(r, "action"), "batch.void");
    cr_assert_str_eq(ev_str(r, "client"), "ops");
    cr_assert_str_eq(ev_str(r, "peer"), "127.0.0.1");
    cr_assert_str_eq(ev_str(r, "request_id"), "req-7");
    cr_assert_str_eq(ev_str(r, "via"), "http");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(r, "what"), "batch_id")), 1);
    json_t *res = json_object_get(r, "result");
    cr_assert_eq(ev_int(res, "batch_id"), (json_int_t)batch);
    cr_assert_eq(ev_int(res, "voided_codes"), 3);
    cr_assert_eq(ev_int(res, "affected_orders"), 0);
    json_t *ev = json_object_get(r, "events");
    cr_assert_eq(ev_int(ev, "first"), (json_int_t)before + 1);
    cr_assert_eq(ev_int(ev, "last"), (json_int_t)after);
    json_decref(t);

    /* a signal's record: no client, peer or request id; via as given; what {} */
    ph_audit sig = {.action = "config.reload", .via = "signal"};
    ph_cmd c = {.type = PH_CMD_PUT_PRODUCTS, .now = NOW + 6, .audit = &sig};
    const char *const all[] = {P_IQ, P_TOPUP, P_OLD};
    c.in.products.json = all;
    c.in.products.n = 3;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    t = trail(NULL);
    r = json_array_get(t, 1);
    cr_assert_eq(ev_int(r, "id"), 2);
    cr_assert(json_is_null(json_object_get(r, "client")));
    cr_assert(json_is_null(json_object_get(r, "peer")));
    cr_assert(json_is_null(json_object_get(r, "request_id")));
    cr_assert_str_eq(ev_str(r, "via"), "signal");
    cr_assert_eq(json_object_size(json_object_get(r, "what")), 0);
    cr_assert_null(json_object_get(r, "events"), "an unchanged catalog wrote no event");
    cr_assert_null(json_object_get(r, "result"));
    json_decref(t);

    /* ids continue after a restart, and the checker walks the trail */
    reopen();
    ph_audit imp = {.action = "batch.import", .client = "ops", .what = "{\"sku\":\"" IQ "\"}"};
    cr_assert_eq(import_codes(10, 2, &imp, &batch), PH_OK);
    t = trail(NULL);
    cr_assert_eq(json_array_size(t), 3);
    r = json_array_get(t, 2);
    cr_assert_eq(ev_int(r, "id"), 3);
    cr_assert_eq(ev_int(json_object_get(r, "result"), "batch_id"), (json_int_t)batch);
    cr_assert_eq(ev_int(json_object_get(r, "result"), "codes"), 2);
    json_decref(t);
    assert_check();
}

Test(audit, a_refused_command_writes_no_record)
{
    g_s = open_at(g_dir, 0);
    catalog();
    uint64_t batch;
    cr_assert_eq(import_codes(1, 2, NULL, &batch), PH_OK);
    cr_assert_eq(void_batch(batch + 1, NOW, &OPS, NULL), PH_ENOTFOUND);
    cr_assert_eq(trail_len(), 0);
    cr_assert_eq(void_batch(batch, NOW, &OPS, NULL), PH_OK);
    cr_assert_eq(void_batch(batch, NOW, &OPS, NULL), PH_ESTATE, "voided twice");
    cr_assert_eq(import_codes(1, 2, &OPS, NULL), PH_EDUP);
    json_t *t = trail(NULL);
    cr_assert_eq(json_array_size(t), 1, "only the void that applied");
    cr_assert_eq(ev_int(json_array_get(t, 0), "id"), 1, "refusals took no id");
    json_decref(t);
    assert_check();
}

/* A malformed record refuses its command whole: the change and its record are
 * one (the same transaction), so neither is written. */
Test(audit, a_malformed_record_refuses_the_command_and_its_change)
{
    g_s = open_at(g_dir, 0);
    catalog();
    uint64_t batch;
    cr_assert_eq(import_codes(1, 2, NULL, &batch), PH_OK);
    uint64_t events = last_event();
    static const struct {
        ph_audit a;
        const char *field;
    } bad[] = {
        {{.action = NULL}, "audit.action"},
        {{.action = "Batch.Void"}, "audit.action"},
        {{.action = "batch.void", .client = "no spaces"}, "audit.client"},
        {{.action = "batch.void", .peer = "1.2.3.4\n"}, "audit.peer"},
        {{.action = "batch.void", .request_id = "a/b"}, "audit.request_id"},
        {{.action = "batch.void", .via = "SIG"}, "audit.via"},
        {{.action = "batch.void", .what = ""}, "audit.what"},
        {{.action = "batch.void", .what = "[1]"}, "audit.what"},
        {{.action = "batch.void", .what = "{\"a\":1,\"a\":2}"}, "audit.what"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ph_err err = {0};
        cr_assert_eq(void_batch(batch, NOW, &bad[i].a, &err), PH_EINVAL, "case %zu", i);
        cr_assert(strstr(err.msg, bad[i].field), "case %zu: %s", i, err.msg);
    }
    ph_batch b;
    uint64_t counts[7];
    ph_err err = {0};
    cr_assert_eq(ph_store_batch_get(g_s, batch, &b, counts, &err), PH_OK);
    cr_assert_eq(b.voided, 0, "the void did not happen");
    cr_assert_eq(counts[PH_CODE_AVAILABLE], 2);
    cr_assert_eq(last_event(), events, "no event either");
    cr_assert_eq(trail_len(), 0);

    /* the same for a command the writer applies without a nested transaction
     * (an order: redone nested once its failure came after its first write) */
    ph_audit oops = {.action = "orders.test", .what = "not json"};
    ph_cmd c = {.type = PH_CMD_ORDER, .now = NOW, .audit = &oops};
    c.in.order.client = "mall";
    c.in.order.client_order_id = "A-1";
    c.in.order.sku = IQ;
    c.in.order.quantity = 1;
    fingerprint(IQ, 1, c.in.order.fingerprint);
    cr_assert_eq(ph_store_exec(g_s, &c), PH_EINVAL);
    cr_assert(strstr(c.err.msg, "audit.what"), "%s", c.err.msg);
    ph_cmd_clear(&c);
    ph_order *o = NULL;
    cr_assert_eq(ph_store_order_find(g_s, "mall", "A-1", 0, &o, &err), PH_ENOTFOUND,
                 "the order was not stored");
    cr_assert_eq(ph_store_batch_get(g_s, batch, &b, counts, &err), PH_OK);
    cr_assert_eq(counts[PH_CODE_AVAILABLE], 2, "no code issued");
    cr_assert_eq(last_event(), events);
    assert_check();
}

/* Commands of one batch: each applied one gets its record, in order, and a
 * refused neighbour neither gets one nor disturbs theirs. */
Test(audit, records_of_one_group_commit_follow_their_commands)
{
    g_s = open_at(g_dir, 0);
    catalog();
    uint64_t b1, b2;
    cr_assert_eq(import_codes(1, 2, NULL, &b1), PH_OK);
    cr_assert_eq(import_codes(3, 2, NULL, &b2), PH_OK);
    sem_t gate;
    sem_init(&gate, 0, 0);
    held_cmd hold = {.c = {.type = PH_CMD_EXPIRE, .now = NOW}};
    submit_held(&hold, &gate); /* the writer stops in its done: the rest queue */
    ph_audit a1 = OPS, a2 = OPS, a3 = OPS;
    a1.request_id = "r1", a2.request_id = "r2", a3.request_id = "r3";
    ph_cmd c[3] = {{.type = PH_CMD_VOID_BATCH, .now = NOW, .audit = &a1},
                   {.type = PH_CMD_VOID_BATCH, .now = NOW, .audit = &a2},
                   {.type = PH_CMD_VOID_BATCH, .now = NOW, .audit = &a3}};
    c[0].in.void_batch.batch_id = b1;
    c[1].in.void_batch.batch_id = 999; /* refused */
    c[2].in.void_batch.batch_id = b2;
    c[0].next = &c[1];
    c[1].next = &c[2];
    cr_assert_eq(ph_store_submit_list(g_s, &c[0]), PH_OK);
    sem_post(&gate);
    sem_wait(&hold.done);
    /* the three complete in one batch; wait for them through exec of a no-op */
    ph_cmd sync = {.type = PH_CMD_EXPIRE, .now = NOW};
    cr_assert_eq(ph_store_exec(g_s, &sync), PH_OK);
    cr_assert_eq(c[0].rc, PH_OK);
    cr_assert_eq(c[1].rc, PH_ENOTFOUND);
    cr_assert_eq(c[2].rc, PH_OK);
    for (int i = 0; i < 3; i++)
        ph_cmd_clear(&c[i]);
    json_t *t = trail(NULL);
    cr_assert_eq(json_array_size(t), 2);
    cr_assert_str_eq(ev_str(json_array_get(t, 0), "request_id"), "r1");
    cr_assert_str_eq(ev_str(json_array_get(t, 1), "request_id"), "r3");
    cr_assert_eq(ev_int(json_array_get(t, 1), "id"), 2);
    json_decref(t);
    sem_destroy(&gate);
    sem_destroy(&hold.done);
    assert_check();
}

Test(audit, the_trail_reads_in_pages_with_filters)
{
    g_s = open_at(g_dir, 0);
    catalog();
    /* five records: clients ops, ops2, ops, ops2, ops at NOW + 0..4 s */
    for (unsigned i = 0; i < 5; i++) {
        ph_audit a = {.action = i == 2 ? "batch.import" : "batch.other",
                      .client = i % 2 ? "ops2" : "ops"};
        ph_cmd c = {.type = PH_CMD_EXPIRE, .now = NOW + 1000 * (int64_t)i, .audit = &a};
        cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    }
    ph_audit_filter f = {.client = "ops2"};
    json_t *t = trail(&f);
    cr_assert_eq(json_array_size(t), 2);
    cr_assert_eq(ev_int(json_array_get(t, 0), "id"), 2);
    cr_assert_eq(ev_int(json_array_get(t, 1), "id"), 4);
    json_decref(t);
    f = (ph_audit_filter){.action = "batch.import"};
    t = trail(&f);
    cr_assert_eq(json_array_size(t), 1);
    cr_assert_eq(ev_int(json_array_get(t, 0), "id"), 3);
    json_decref(t);
    f = (ph_audit_filter){.from = NOW + 1000, .to = NOW + 3000, .client = "ops"};
    t = trail(&f);
    cr_assert_eq(json_array_size(t), 1, "from and to are inclusive");
    cr_assert_eq(ev_int(json_array_get(t, 0), "id"), 3);
    json_decref(t);

    /* pages: limit 2 from the start, then on from next_after */
    char **list;
    size_t n;
    uint64_t next;
    int more;
    ph_err err = {0};
    cr_assert_eq(ph_store_audit_list(g_s, NULL, 0, 2, 0, &list, &n, &next, &more, &err), PH_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(next, 2);
    cr_assert_eq(more, 1);
    ph_store_event_list_free(list, n);
    cr_assert_eq(ph_store_audit_list(g_s, NULL, next, 10, 0, &list, &n, &next, &more, &err), PH_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(next, 5);
    cr_assert_eq(more, 0);
    ph_store_event_list_free(list, n);
    /* a scan budget bounds a narrow filter's work: it says where to go on */
    f = (ph_audit_filter){.action = "batch.import"};
    cr_assert_eq(ph_store_audit_list(g_s, &f, 0, 10, 2, &list, &n, &next, &more, &err), PH_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(next, 2);
    cr_assert_eq(more, 1);
    ph_store_event_list_free(list, n);
    cr_assert_eq(ph_store_audit_list(g_s, &f, next, 10, 2, &list, &n, &next, &more, &err), PH_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(next, 4);
    ph_store_event_list_free(list, n);
}

/* The trail came with schema 4 (with the ledger): a store that lacks the
 * `audit` database is damaged, and a read-only open (--check-store) says so
 * naming it rather than reading an empty trail; a writable open creates it. */
Test(audit, a_store_without_the_trail_is_named_read_only_and_repaired_writable)
{
    g_s = open_at(g_dir, 0);
    catalog();
    cr_assert_eq(import_codes(1, 2, &OPS, NULL), PH_OK);
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi dbi = raw_dbi(txn, "audit", MDB_INTEGERKEY);
    cr_assert_eq(mdb_drop(txn, dbi, 1), 0, "delete the audit database");
    raw_commit(env, txn);

    ph_store_opts o = {.dir = g_dir, .read_only = 1};
    ph_err err = {0};
    cr_assert_eq(ph_store_open(&o, &g_s, &err), PH_EIO);
    cr_assert(strstr(err.msg, "no database audit"), "%s", err.msg);
    g_s = open_at(g_dir, 0); /* writable: the database is created again */
    cr_assert_eq(import_codes(5, 1, &OPS, NULL), PH_OK);
    json_t *t = trail(NULL);
    cr_assert_eq(json_array_size(t), 1);
    cr_assert_eq(ev_int(json_array_get(t, 0), "id"), 1);
    json_decref(t);
    assert_check();
}

/* Invariant 21: the checker finds a record lost or damaged under the store. */
Test(audit, the_checker_finds_a_lost_or_damaged_record)
{
    g_s = open_at(g_dir, 0);
    catalog();
    for (unsigned i = 0; i < 3; i++)
        cr_assert_eq(import_codes(1 + 2 * i, 2, &OPS, NULL), PH_OK);
    assert_check();
    static const struct {
        const char *value; /* NULL: delete record 2 */
        const char *msg;
    } cases[] = {
        {NULL, "audit: expected record 2, found 3"},
        {"not json", "record 2 is not an audit record"},
        {"{\"id\":3,\"at\":\"2023-11-14T22:13:20.000Z\",\"action\":\"a\",\"what\":{}}",
         "record 2 is not an audit record"},
        {"{\"id\":2,\"at\":\"2023-11-14T22:13:20.000Z\",\"action\":\"a\",\"what\":{},"
         "\"events\":{\"first\":1,\"last\":99}}",
         "names events 1 to 99"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ph_store_close(g_s);
        g_s = NULL;
        MDB_txn *txn;
        MDB_env *env = raw_open(&txn);
        MDB_dbi dbi = raw_dbi(txn, "audit", MDB_INTEGERKEY);
        uint64_t id = 2;
        size_t len;
        uint8_t *saved = raw_copy(txn, dbi, id, &len);
        MDB_val k = {8, &id},
                v = {cases[i].value ? strlen(cases[i].value) : 0, (void *)cases[i].value};
        cr_assert_eq(cases[i].value ? mdb_put(txn, dbi, &k, &v, 0) : mdb_del(txn, dbi, &k, NULL),
                     0);
        raw_commit(env, txn);
        g_s = open_at(g_dir, 0);
        ph_err err = {0};
        cr_assert_eq(ph_store_check(g_s, NULL, &err), PH_EIO, "case %zu passed", i);
        cr_assert(strstr(err.msg, cases[i].msg), "case %zu: %s", i, err.msg);
        ph_store_close(g_s);
        g_s = NULL;
        env = raw_open(&txn); /* put the record back for the next case */
        dbi = raw_dbi(txn, "audit", MDB_INTEGERKEY);
        raw_put_free(txn, dbi, id, saved, len);
        raw_commit(env, txn);
        g_s = open_at(g_dir, 0);
        assert_check();
    }
}
