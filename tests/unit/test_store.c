/*
 * test_store.c — the LMDB store (core/store/store.h).
 *
 * Every command goes through the real group-commit writer (ph_store_exec /
 * ph_store_submit) into a fresh environment under /tmp; reads run in their own
 * snapshots. Each test ends with ph_store_check, and the corruption tests poke
 * the on-disk layout (docs/store.md) with raw LMDB to prove the checker sees it.
 *
 * Sealed blobs are opaque to the store, so codes are stored as "sealed-<n>";
 * their keyed hashes are SHA-256("CODE-<n>"). No test output may ever contain
 * either form of a code except where a code is read back on purpose.
 */
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stddef.h>

#include "store/store.h"
#include "store_fixture.h"   /* criterion, lmdb, jansson, the catalog, setup */
#include "store/store_int.h" /* record layouts, for the corruption tests only */

#define DAY_MS 86400000LL

#define TX "tencent.video.1m"

static const char *const P_TX =
    "{\"sku\":\"" TX "\",\"name\":\"Tencent Video VIP, 1 month\",\"brand\":\"tencent\","
    "\"delivery\":\"card_code\",\"face_value\":\"30.00\",\"listed\":true}";

/* ---- fixture: one temporary directory per test ----------------------------- */

TestSuite(store, .init = fixture_setup, .fini = fixture_teardown);

static void open_store(void)
{
    g_s = open_at(g_dir, 0);
}

/* ---- command helpers --------------------------------------------------------- */

/* The four test products: two card-code SKUs, a recharge SKU and a delisted one. */
static void catalog(void)
{
    const char *const all[] = {P_IQ, P_TX, P_TOPUP, P_OLD};
    ph_err err = {0};
    cr_assert_eq(put_products(all, 4, &err), PH_OK, "put products: %s", err.msg);
}

static int cmp_by_hash(const void *a, const void *b, void *arg)
{
    const ph_import_code *codes = arg;
    return memcmp(codes[*(const uint32_t *)a].hash, codes[*(const uint32_t *)b].hash, 32);
}

/*
 * Imports the codes numbered nums[0..n) (file lines 1..n) into sku, each
 * expiring at expires_at. Returns the command's rc; *out (if non-NULL) gets the
 * completed command, whose results the caller releases with ph_cmd_clear.
 */
static int import_nums_rule(const char *sku, const unsigned *nums, size_t n, int64_t unit_cost,
                            int64_t expires_at, const char *rule, ph_cmd *out)
{
    ph_import_code *codes = calloc(n ? n : 1, sizeof *codes);
    uint32_t *by_hash = calloc(n ? n : 1, sizeof *by_hash);
    char(*sealed)[24] = calloc(n ? n : 1, sizeof *sealed);
    cr_assert(codes && by_hash && sealed);
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(sealed[i], sizeof sealed[i], "sealed-%u", nums[i]);
        codes[i] = (ph_import_code){.line = (uint32_t)(i + 1),
                                    .expires_at = expires_at,
                                    .sealed_len = (uint32_t)len,
                                    .sealed = (uint8_t *)sealed[i]};
        code_hash(nums[i], codes[i].hash);
        by_hash[i] = (uint32_t)i;
    }
    qsort_r(by_hash, n, sizeof *by_hash, cmp_by_hash, codes);
    ph_cmd c = {.type = PH_CMD_IMPORT, .now = NOW};
    c.in.import.supplier = "sup-a";
    c.in.import.sku = sku;
    c.in.import.note = "test batch";
    c.in.import.unit_cost = unit_cost;
    c.in.import.codes = codes;
    c.in.import.ncodes = n;
    c.in.import.by_hash = by_hash;
    c.in.import.lookalikes = rule;
    int rc = ph_store_exec(g_s, &c);
    free(codes);
    free(by_hash);
    free(sealed);
    if (out)
        *out = c;
    else
        ph_cmd_clear(&c);
    return rc;
}

/* import_nums_rule without a look-alike rule. */
static int import_nums(const char *sku, const unsigned *nums, size_t n, int64_t unit_cost,
                       int64_t expires_at, ph_cmd *out)
{
    return import_nums_rule(sku, nums, n, unit_cost, expires_at, NULL, out);
}

/* Imports codes first..first+n-1 and asserts success; returns the batch id. */
static uint64_t import_range(const char *sku, unsigned first, size_t n, int64_t unit_cost,
                             int64_t expires_at)
{
    unsigned *nums = malloc((n ? n : 1) * sizeof *nums);
    cr_assert_not_null(nums);
    for (size_t i = 0; i < n; i++)
        nums[i] = first + (unsigned)i;
    ph_cmd c;
    int rc = import_nums(sku, nums, n, unit_cost, expires_at, &c);
    free(nums);
    cr_assert_eq(rc, PH_OK, "import into %s: %s", sku, c.err.msg);
    uint64_t id = c.batch_id;
    ph_cmd_clear(&c);
    return id;
}

/* Builds an ORDER command (the strings must outlive it). */
static void order_cmd(ph_cmd *c, const char *client, const char *coid, const char *sku,
                      uint32_t qty, int64_t now)
{
    memset(c, 0, sizeof *c);
    c->type = PH_CMD_ORDER;
    c->now = now;
    c->in.order.client = client;
    c->in.order.client_order_id = coid;
    c->in.order.sku = sku;
    c->in.order.quantity = qty;
    fingerprint(sku, qty, c->in.order.fingerprint);
}

/* Places an order; returns rc with the completed command in *c (ph_cmd_clear it). */
static int order(ph_cmd *c, const char *client, const char *coid, const char *sku, uint32_t qty)
{
    order_cmd(c, client, coid, sku, qty, NOW);
    return ph_store_exec(g_s, c);
}

/* Places an order that must succeed; returns its id. */
static uint64_t order_ok(const char *client, const char *coid, const char *sku, uint32_t qty)
{
    ph_cmd c;
    int rc = order(&c, client, coid, sku, qty);
    cr_assert_eq(rc, PH_OK, "order %s/%s: %s", client, coid, c.err.msg);
    cr_assert_not_null(c.order);
    uint64_t id = c.order->id;
    ph_cmd_clear(&c);
    return id;
}

static int void_batch(ph_cmd *c, uint64_t batch, const char *reason)
{
    memset(c, 0, sizeof *c);
    c->type = PH_CMD_VOID_BATCH;
    c->now = NOW + 1000;
    c->in.void_batch.batch_id = batch;
    c->in.void_batch.reason = reason;
    return ph_store_exec(g_s, c);
}

/* ---- read helpers ---------------------------------------------------------------- */

static uint64_t stock(const char *sku)
{
    char *json = NULL;
    uint64_t n = 0;
    ph_err err = {0};
    int rc = ph_store_product_get_at(g_s, sku, NOW, &json, &n, &err);
    cr_assert_eq(rc, PH_OK, "product %s: %s", sku, err.msg);
    free(json);
    return n;
}

/* The stored product object, parsed. */
static json_t *product(const char *sku)
{
    char *json = NULL;
    uint64_t n = 0;
    ph_err err = {0};
    cr_assert_eq(ph_store_product_get(g_s, sku, &json, &n, &err), PH_OK, "%s", err.msg);
    json_t *o = json_loads(json, 0, NULL);
    free(json);
    cr_assert_not_null(o);
    return o;
}

/* Every event with seq > after, parsed, as a JSON array; asserts none leaks a code. */
static json_t *events_after(uint64_t after)
{
    return events_after_without(after, NULL);
}

static size_t count_type(json_t *evs, const char *type)
{
    size_t n = 0, i;
    json_t *ev;
    json_array_foreach(evs, i, ev)
    {
        const char *t = json_string_value(json_object_get(ev, "type"));
        n += t && strcmp(t, type) == 0;
    }
    return n;
}

static ph_sku_stats sku_stats(const char *sku)
{
    ph_store_stats st;
    ph_err err = {0};
    ph_sku_stats out = {0};
    cr_assert_eq(ph_store_stats_at(g_s, NOW, &st, &err), PH_OK, "%s", err.msg);
    for (size_t i = 0; i < st.nskus; i++)
        if (strcmp(st.skus[i].sku, sku) == 0)
            out = st.skus[i];
    ph_store_stats_clear(&st);
    return out;
}

static void assert_stats_equal(const ph_store_stats *a, const ph_store_stats *b)
{
    cr_assert_eq(a->nskus, b->nskus);
    cr_assert_eq(a->orders, b->orders);
    cr_assert_eq(a->last_event, b->last_event);
    cr_assert_eq(a->codes, b->codes);
    for (size_t i = 0; i < a->nskus; i++) {
        cr_assert_str_eq(a->skus[i].sku, b->skus[i].sku);
        cr_assert_eq(a->skus[i].imported, b->skus[i].imported);
        for (int s = 0; s < 7; s++)
            cr_assert_eq(a->skus[i].by_state[s], b->skus[i].by_state[s], "%s state %d",
                         a->skus[i].sku, s);
    }
}

static void assert_sealed(const ph_code *c, unsigned num)
{
    char want[24];
    int len = snprintf(want, sizeof want, "sealed-%u", num);
    cr_assert_eq(c->sealed_len, (uint32_t)len, "code %llu: sealed length",
                 (unsigned long long)c->id);
    cr_assert_not_null(c->sealed);
    cr_assert(memcmp(c->sealed, want, (size_t)len) == 0, "code %llu: sealed blob differs",
              (unsigned long long)c->id);
}

static int find_code(unsigned num, ph_code_info *info, ph_err *err)
{
    uint8_t h[32];
    code_hash(num, h);
    return ph_store_code_find(g_s, h, info, err);
}

/* What a typed lookup did: the test code it hashes, how often it was asked to. */
typedef struct typed_probe {
    unsigned num;
    int calls;
} typed_probe;

static int typed_hash(void *arg, const char *rule, uint8_t hash[32])
{
    typed_probe *p = arg;
    (void)rule; /* the test hashes ignore rules: every rule finds the code, only its own counts */
    p->calls++;
    code_hash(p->num, hash);
    return 0;
}

/* ---- raw LMDB, for writing what the store never would -------------------------- */

/* Runs ph_store_check on the reopened store and returns its failure message. */
static void assert_check_fails(char *msg, size_t cap)
{
    g_s = open_at(g_dir, 0);
    ph_err err = {0};
    ph_store_stats st;
    int rc = ph_store_check(g_s, &st, &err);
    cr_assert_eq(rc, PH_EIO, "ph_store_check accepted a corrupted store");
    cr_assert_eq(err.code, PH_EIO);
    snprintf(msg, cap, "%s", err.msg);
}

/* ================================================================================= */
/* opening                                                                            */
/* ================================================================================= */

Test(store, open_creates_dir_and_reopen_keeps_everything)
{
    struct stat sb;
    cr_assert_neq(stat(g_dir, &sb), 0, "the directory must not exist yet");
    open_store();
    cr_assert_eq(stat(g_dir, &sb), 0, "open did not create %s", g_dir);
    cr_assert(S_ISDIR(sb.st_mode));
    cr_assert_eq(sb.st_mode & 0777, 0700, "the directory is mode %o", sb.st_mode & 0777);

    catalog();
    cr_assert_eq(import_range(IQ, 0, 3, 1980, 0), 1);
    uint64_t o1 = order_ok("mall", "A-1", IQ, 1);
    uint64_t seq = last_event();

    reopen();
    cr_assert_eq(stock(IQ), 2);
    json_t *p = product(IQ);
    cr_assert_str_eq(json_string_value(json_object_get(p, "name")), "iQiyi Gold, 1 month");
    json_decref(p);
    ph_order *o = NULL;
    cr_assert_eq(ph_store_order_find(g_s, "mall", "A-1", 1, &o, NULL), PH_OK);
    cr_assert_eq(o->id, o1);
    cr_assert_eq(o->ncodes, 1);
    assert_sealed(&o->codes[0], 0);
    ph_order_free(o);
    cr_assert_eq(last_event(), seq);

    /* ids carry on after a restart: batch 2, code 4, order 2, the next event seq */
    ph_cmd c;
    unsigned nums[] = {10, 11};
    cr_assert_eq(import_nums(IQ, nums, 2, 1980, 0, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.batch_id, 2);
    ph_cmd_clear(&c);
    ph_batch b;
    uint64_t counts[7];
    cr_assert_eq(ph_store_batch_get(g_s, 2, &b, counts, NULL), PH_OK);
    cr_assert_eq(b.first_code, 4);
    cr_assert_eq(order_ok("mall", "A-2", IQ, 1), o1 + 1);
    json_t *evs = events_after(seq);
    cr_assert_eq(json_array_size(evs), 2);
    cr_assert_eq(ev_int(json_array_get(evs, 0), "seq"), (json_int_t)seq + 1);
    json_decref(evs);
    assert_check();
}

Test(store, open_refuses_another_schema_version)
{
    open_store();
    ph_store_close(g_s);
    g_s = NULL;

    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi meta = raw_dbi(txn, "meta", 0);
    uint32_t ver = PH_SCHEMA_VERSION + 1;
    MDB_val k = {6, "schema"}, v = {sizeof ver, &ver};
    cr_assert_eq(mdb_put(txn, meta, &k, &v, 0), 0);
    raw_commit(env, txn);

    ph_store_opts o = {.dir = g_dir};
    ph_store *s = NULL;
    ph_err err = {0};
    int rc = ph_store_open(&o, &s, &err);
    cr_assert_eq(rc, PH_EVERSION, "open gave %d: %s", rc, err.msg);
    cr_assert_eq(err.code, PH_EVERSION);
    cr_assert_null(s);
    char want[64];
    snprintf(want, sizeof want, "version %u", PH_SCHEMA_VERSION + 1);
    cr_assert_not_null(strstr(err.msg, want), "message lacks the stored version: %s", err.msg);
    snprintf(want, sizeof want, "version %d", PH_SCHEMA_VERSION);
    cr_assert_not_null(strstr(err.msg, want), "message lacks our version: %s", err.msg);
    cr_assert_not_null(strstr(err.msg, g_dir), "message lacks the directory: %s", err.msg);

    /* refusing did not rewrite the stored version */
    env = raw_open(&txn);
    meta = raw_dbi(txn, "meta", 0);
    cr_assert_eq(mdb_get(txn, meta, &k, &v), 0);
    cr_assert_eq(v.mv_size, sizeof ver);
    uint32_t stored;
    memcpy(&stored, v.mv_data, sizeof stored);
    cr_assert_eq(stored, PH_SCHEMA_VERSION + 1);
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

/* ================================================================================= */
/* catalog                                                                            */
/* ================================================================================= */

Test(store, put_products_emits_only_real_changes_and_delists_removed)
{
    open_store();
    const char *const two[] = {P_IQ, P_TX};
    ph_err err = {0};
    cr_assert_eq(put_products(two, 2, &err), PH_OK, "%s", err.msg);
    json_t *evs = events_after(0);
    cr_assert_eq(json_array_size(evs), 2);
    cr_assert_eq(count_type(evs, "product.updated"), 2);
    cr_assert_str_eq(ev_str(json_array_get(evs, 0), "sku"), IQ);
    cr_assert_str_eq(ev_str(json_array_get(evs, 1), "sku"), TX);
    cr_assert_eq(ev_int(json_array_get(evs, 0), "seq"), 1);
    cr_assert_str_eq(ev_str(json_array_get(evs, 0), "at"), "2023-11-14T22:13:20.000Z");
    json_decref(evs);

    /* the same catalog again: nothing to do, no event */
    cr_assert_eq(put_products(two, 2, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(last_event(), 2);

    /* TX no longer configured: kept (codes and orders refer to it) but delisted */
    const char *const one[] = {P_IQ};
    cr_assert_eq(put_products(one, 1, &err), PH_OK, "%s", err.msg);
    evs = events_after(2);
    cr_assert_eq(json_array_size(evs), 1);
    cr_assert_str_eq(ev_str(json_array_get(evs, 0), "type"), "product.delisted");
    cr_assert_str_eq(ev_str(json_array_get(evs, 0), "sku"), TX);
    json_decref(evs);
    json_t *p = product(TX);
    cr_assert(json_is_false(json_object_get(p, "listed")));
    cr_assert_str_eq(json_string_value(json_object_get(p, "name")), "Tencent Video VIP, 1 month");
    json_decref(p);

    /* still gone: already delisted, no second event */
    cr_assert_eq(put_products(one, 1, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(last_event(), 3);

    /* a changed field is an update; TX coming back is an update too */
    const char *const changed[] = {
        "{\"sku\":\"" IQ "\",\"name\":\"iQiyi Gold (1 month)\",\"delivery\":\"card_code\","
        "\"listed\":true}",
        P_TX};
    cr_assert_eq(put_products(changed, 2, &err), PH_OK, "%s", err.msg);
    evs = events_after(3);
    cr_assert_eq(json_array_size(evs), 2);
    cr_assert_eq(count_type(evs, "product.updated"), 2);
    json_decref(evs);
    p = product(TX);
    cr_assert(json_is_true(json_object_get(p, "listed")));
    json_decref(p);

    char **json;
    uint64_t *avail;
    size_t n;
    cr_assert_eq(ph_store_product_list(g_s, &json, &avail, &n, NULL), PH_OK);
    cr_assert_eq(n, 2);
    cr_assert_not_null(strstr(json[0], IQ), "products are listed in SKU order");
    cr_assert_not_null(strstr(json[1], TX));
    cr_assert_eq(avail[0], 0);
    ph_store_product_list_free(json, avail, n);
    assert_check();
}

Test(store, put_products_with_a_bad_entry_changes_nothing)
{
    open_store();
    catalog();
    uint64_t seq = last_event();
    const char *const bad[] = {
        "{\"sku\":\"" IQ "\",\"name\":\"renamed\",\"delivery\":\"card_code\",\"listed\":true}",
        "{\"name\":\"no sku\"}"};
    ph_err err = {0};
    cr_assert_eq(put_products(bad, 2, &err), PH_EINVAL);
    cr_assert_not_null(strstr(err.msg, "products[1]"), "message does not say where: %s", err.msg);
    const char *const garbage[] = {"{not json"};
    cr_assert_eq(put_products(garbage, 1, &err), PH_EINVAL);
    cr_assert_eq(last_event(), seq);
    json_t *p = product(IQ);
    cr_assert_str_eq(json_string_value(json_object_get(p, "name")), "iQiyi Gold, 1 month");
    json_decref(p);
    p = product(TX);
    cr_assert(json_is_true(json_object_get(p, "listed")), "a failed command delisted TX");
    json_decref(p);
    assert_check();
}

/* ================================================================================= */
/* import                                                                             */
/* ================================================================================= */

Test(store, import_stores_codes_available)
{
    open_store();
    catalog();
    uint64_t seq = last_event();
    ph_cmd c;
    unsigned nums[10];
    for (unsigned i = 0; i < 10; i++)
        nums[i] = i;
    cr_assert_eq(import_nums(IQ, nums, 10, 1980, 0, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.batch_id, 1);
    cr_assert_eq(c.ndup, 0);
    ph_cmd_clear(&c);
    cr_assert_eq(stock(IQ), 10);

    ph_batch b;
    uint64_t counts[7];
    ph_err err = {0};
    cr_assert_eq(ph_store_batch_get(g_s, 1, &b, counts, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(b.id, 1);
    cr_assert_str_eq(b.sku, IQ);
    cr_assert_str_eq(b.supplier, "sup-a");
    cr_assert_str_eq(b.note, "test batch");
    cr_assert_eq(b.unit_cost, 1980);
    cr_assert_eq(b.count, 10);
    cr_assert_eq(b.first_code, 1);
    cr_assert_eq(b.created_at, NOW);
    cr_assert_eq(b.voided, 0);
    cr_assert_eq(counts[PH_CODE_AVAILABLE], 10);
    cr_assert_eq(counts[PH_CODE_ISSUED], 0);

    for (unsigned i = 0; i < 10; i++) {
        ph_code_info info;
        cr_assert_eq(find_code(i, &info, &err), PH_OK, "code %u: %s", i, err.msg);
        cr_assert_eq(info.code.id, 1 + i, "codes get ids in file order");
        cr_assert_eq(info.code.state, PH_CODE_AVAILABLE);
        cr_assert_eq(info.code.batch_id, 1);
        cr_assert_eq(info.code.order_id, 0);
        cr_assert_eq(info.code.changed_at, NOW);
        cr_assert_eq(info.batch.id, 1);
        cr_assert_null(info.order);
        assert_sealed(&info.code, i);
        ph_code_info_clear(&info);
    }

    json_t *evs = events_after(seq);
    cr_assert_eq(json_array_size(evs), 1);
    json_t *ev = json_array_get(evs, 0);
    cr_assert_str_eq(ev_str(ev, "type"), "batch.imported");
    cr_assert_eq(ev_int(ev, "batch_id"), 1);
    cr_assert_eq(ev_int(ev, "count"), 10);
    cr_assert_eq(ev_int(ev, "unit_cost_fen"), 1980);
    cr_assert_str_eq(ev_str(ev, "sku"), IQ);
    cr_assert_str_eq(ev_str(ev, "supplier"), "sup-a");
    json_decref(evs);

    /* a second batch, another SKU: its own ids and its own stock */
    cr_assert_eq(import_range(TX, 100, 5, 2500, 0), 2);
    cr_assert_eq(ph_store_batch_get(g_s, 2, &b, counts, NULL), PH_OK);
    cr_assert_eq(b.first_code, 11);
    cr_assert_eq(stock(TX), 5);
    cr_assert_eq(stock(IQ), 10);
    ph_sku_stats st = sku_stats(IQ);
    cr_assert_eq(st.imported, 10);
    cr_assert_eq(st.by_state[PH_CODE_AVAILABLE], 10);
    assert_check();
}

Test(store, import_of_a_stored_code_is_refused_whole)
{
    open_store();
    catalog();
    import_range(IQ, 0, 10, 1980, 0);
    ph_store_stats before, after;
    ph_err err = {0};
    cr_assert_eq(ph_store_stats_get(g_s, &before, &err), PH_OK, "%s", err.msg);

    /* lines 2 and 4 (codes 3 and 7) are already stored; 100..102 are new */
    unsigned nums[] = {100, 3, 101, 7, 102};
    ph_cmd c;
    cr_assert_eq(import_nums(IQ, nums, 5, 1980, 0, &c), PH_EDUP);
    cr_assert_eq(c.rc, PH_EDUP);
    cr_assert_eq(c.ndup, 2);
    cr_assert_not_null(c.dup_lines);
    cr_assert_eq(c.dup_lines[0], 2);
    cr_assert_eq(c.dup_lines[1], 4);
    cr_assert_not_null(strstr(c.err.msg, "line 2"), "message: %s", c.err.msg);
    cr_assert_null(strstr(c.err.msg, "CODE-"));
    cr_assert_eq(c.batch_id, 0);
    ph_cmd_clear(&c);

    cr_assert_eq(ph_store_stats_get(g_s, &after, &err), PH_OK, "%s", err.msg);
    assert_stats_equal(&before, &after);
    ph_store_stats_clear(&before);
    ph_store_stats_clear(&after);
    cr_assert_eq(stock(IQ), 10);
    ph_code_info info;
    cr_assert_eq(find_code(100, &info, NULL), PH_ENOTFOUND);

    /* the refused command gave its ids back */
    unsigned fresh[] = {100, 101, 102};
    cr_assert_eq(import_nums(IQ, fresh, 3, 1980, 0, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.batch_id, 2);
    ph_cmd_clear(&c);
    ph_batch b;
    uint64_t counts[7];
    cr_assert_eq(ph_store_batch_get(g_s, 2, &b, counts, NULL), PH_OK);
    cr_assert_eq(b.first_code, 11);
    assert_check();
}

Test(store, import_with_a_code_twice_in_the_file_changes_nothing)
{
    open_store();
    catalog();
    ph_store_stats before, after;
    cr_assert_eq(ph_store_stats_get(g_s, &before, NULL), PH_OK);
    uint64_t seq = last_event();
    unsigned nums[] = {1, 2, 3, 2};
    ph_cmd c;
    cr_assert_eq(import_nums(IQ, nums, 4, 1980, 0, &c), PH_EDUP);
    ph_cmd_clear(&c);
    cr_assert_eq(ph_store_stats_get(g_s, &after, NULL), PH_OK);
    assert_stats_equal(&before, &after);
    ph_store_stats_clear(&before);
    ph_store_stats_clear(&after);
    cr_assert_eq(stock(IQ), 0);
    cr_assert_eq(last_event(), seq);
    ph_code_info info;
    cr_assert_eq(find_code(1, &info, NULL), PH_ENOTFOUND);
    assert_check();
}

/* ph_store_codes_stored answers every code right whatever the order it is
 * asked in: in hash order (the merge with the index, hashes between two stored
 * ones answered without a seek), in file order (a seek back for each hash
 * smaller than the one before) and backwards, with repeats, past the last
 * stored hash, and for nothing at all. */
Test(store, codes_stored_answers_each_code_in_any_order)
{
    open_store();
    catalog();
    import_range(IQ, 0, 200, 1980, 0);
    import_range(TX, 1000, 50, 1980, 0); /* another SKU's codes are stored codes too */
    enum { N = 400 };
    ph_import_code codes[N];
    uint32_t order[N], backwards[N];
    uint8_t stored[N];
    for (unsigned i = 0; i < N; i++) {
        /* 100..299 (half stored), then 1000..1099 (half stored), then repeats */
        unsigned num = i < 200 ? 100 + i : i < 300 ? 1000 + (i - 200) : 100 + (i - 300) * 2;
        codes[i] = (ph_import_code){.line = i + 2};
        code_hash(num, codes[i].hash);
        order[i] = i;
    }
    qsort_r(order, N, sizeof *order, cmp_by_hash, codes);
    for (unsigned i = 0; i < N; i++)
        backwards[i] = order[N - 1 - i];
    const uint32_t *orders[] = {order, NULL, backwards};
    for (int o = 0; o < 3; o++) {
        memset(stored, 0xaa, sizeof stored);
        ph_err err = {0};
        cr_assert_eq(ph_store_codes_stored(g_s, codes, orders[o], N, stored, &err), PH_OK, "%s",
                     err.msg);
        for (unsigned i = 0; i < N; i++) {
            int want = i < 100 || (i >= 200 && i < 250) || (i >= 300 && i < 350);
            cr_assert_eq(stored[i], want, "order %d, code %u: %d", o, i, stored[i]);
        }
    }
    stored[0] = 0xaa;
    cr_assert_eq(ph_store_codes_stored(g_s, codes, order, 0, stored, NULL), PH_OK);
    cr_assert_eq(stored[0], 0xaa, "nothing asked, nothing written");
}

Test(store, import_for_an_unknown_sku_is_refused)
{
    open_store();
    catalog();
    uint64_t seq = last_event();
    unsigned nums[] = {1, 2};
    ph_cmd c;
    cr_assert_eq(import_nums("no.such.sku", nums, 2, 100, 0, &c), PH_ESKU);
    /* names the field, never echoes an unknown value (it could be a pasted code) */
    cr_assert_not_null(strstr(c.err.msg, "sku"), "message: %s", c.err.msg);
    cr_assert_null(strstr(c.err.msg, "no.such.sku"), "message: %s", c.err.msg);
    ph_cmd_clear(&c);
    cr_assert_eq(last_event(), seq);
    ph_code_info info;
    cr_assert_eq(find_code(1, &info, NULL), PH_ENOTFOUND);
    ph_store_stats st;
    cr_assert_eq(ph_store_stats_get(g_s, &st, NULL), PH_OK);
    cr_assert_eq(st.codes, 0);
    cr_assert_eq(st.nskus, 0);
    ph_store_stats_clear(&st);
    assert_check();
}

/* ================================================================================= */
/* orders                                                                             */
/* ================================================================================= */

Test(store, order_takes_codes_first_in_first_out)
{
    open_store();
    catalog();
    import_range(IQ, 0, 10, 1980, 0);
    uint64_t seq = last_event();

    ph_cmd c;
    cr_assert_eq(order(&c, "mall", "A-1", IQ, 3), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.replayed, 0);
    ph_order *o = c.order;
    cr_assert_not_null(o);
    cr_assert_eq(o->id, 1);
    cr_assert_str_eq(o->client, "mall");
    cr_assert_str_eq(o->client_order_id, "A-1");
    cr_assert_str_eq(o->sku, IQ);
    cr_assert_eq(o->quantity, 3);
    cr_assert_eq(o->state, PH_ORDER_SUCCEEDED);
    cr_assert_eq(o->created_at, NOW);
    cr_assert_eq(o->cost, 3 * 1980);
    cr_assert_eq(o->ncodes, 3);
    for (unsigned i = 0; i < 3; i++) {
        cr_assert_eq(o->codes[i].id, 1 + i, "code %u is not the oldest", i);
        cr_assert_eq(o->codes[i].state, PH_CODE_ISSUED);
        cr_assert_eq(o->codes[i].order_id, 1);
        assert_sealed(&o->codes[i], i);
    }
    ph_cmd_clear(&c);

    cr_assert_eq(order(&c, "mall", "A-2", IQ, 2), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->id, 2);
    cr_assert_eq(c.order->codes[0].id, 4);
    cr_assert_eq(c.order->codes[1].id, 5);
    ph_cmd_clear(&c);
    cr_assert_eq(stock(IQ), 5);

    json_t *evs = events_after(seq);
    cr_assert_eq(json_array_size(evs), 2);
    cr_assert_eq(count_type(evs, "order.succeeded"), 2);
    json_t *ev = json_array_get(evs, 0);
    cr_assert_eq(ev_int(ev, "order_id"), 1);
    cr_assert_eq(ev_int(ev, "cost_fen"), 3 * 1980);
    cr_assert_eq(ev_int(ev, "quantity"), 3);
    cr_assert_str_eq(ev_str(ev, "client_order_id"), "A-1");
    json_decref(evs);

    ph_code_info info;
    cr_assert_eq(find_code(0, &info, NULL), PH_OK);
    cr_assert_eq(info.code.state, PH_CODE_ISSUED);
    cr_assert_eq(info.code.changed_at, NOW);
    cr_assert_not_null(info.order);
    cr_assert_eq(info.order->id, 1);
    ph_code_info_clear(&info);
    ph_sku_stats st = sku_stats(IQ);
    cr_assert_eq(st.by_state[PH_CODE_ISSUED], 5);
    cr_assert_eq(st.by_state[PH_CODE_AVAILABLE], 5);
    assert_check();
}

Test(store, order_replay_returns_the_same_order_and_conflict_is_refused)
{
    open_store();
    catalog();
    import_range(IQ, 0, 5, 1980, 0);
    ph_cmd c;
    cr_assert_eq(order(&c, "mall", "A-1", IQ, 2), PH_OK, "%s", c.err.msg);
    uint64_t id = c.order->id, c0 = c.order->codes[0].id, c1 = c.order->codes[1].id;
    ph_cmd_clear(&c);
    uint64_t seq = last_event();

    cr_assert_eq(order(&c, "mall", "A-1", IQ, 2), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.replayed, 1);
    cr_assert_eq(c.order->id, id);
    cr_assert_eq(c.order->ncodes, 2);
    cr_assert_eq(c.order->codes[0].id, c0);
    cr_assert_eq(c.order->codes[1].id, c1);
    assert_sealed(&c.order->codes[0], 0);
    cr_assert_eq(c.order->cost, 2 * 1980);
    ph_cmd_clear(&c);
    cr_assert_eq(last_event(), seq, "a replay wrote an event");
    cr_assert_eq(stock(IQ), 3);

    /* a replay at a later time is still the same order, unchanged */
    order_cmd(&c, "mall", "A-1", IQ, 2, NOW + DAY_MS);
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.replayed, 1);
    cr_assert_eq(c.order->updated_at, NOW);
    ph_cmd_clear(&c);

    cr_assert_eq(order(&c, "mall", "A-1", IQ, 3), PH_ECONFLICT);
    cr_assert_null(c.order);
    cr_assert_eq(c.replayed, 0);
    cr_assert_not_null(strstr(c.err.msg, "A-1"), "message: %s", c.err.msg);
    ph_cmd_clear(&c);
    cr_assert_eq(order(&c, "mall", "A-1", TX, 2), PH_ECONFLICT);
    ph_cmd_clear(&c);
    cr_assert_eq(last_event(), seq);
    cr_assert_eq(stock(IQ), 3);

    /* client order ids are per client */
    cr_assert_eq(order(&c, "crm", "A-1", IQ, 2), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.replayed, 0);
    cr_assert_neq(c.order->id, id);
    ph_cmd_clear(&c);
    ph_store_stats st;
    cr_assert_eq(ph_store_stats_get(g_s, &st, NULL), PH_OK);
    cr_assert_eq(st.orders, 2);
    ph_store_stats_clear(&st);
    assert_check();
}

Test(store, order_out_of_stock_reserves_nothing)
{
    open_store();
    catalog();
    import_range(IQ, 0, 2, 1980, 0);
    uint64_t seq = last_event();
    ph_cmd c;
    cr_assert_eq(order(&c, "mall", "A-1", IQ, 3), PH_ENOSTOCK);
    cr_assert_null(c.order);
    cr_assert_not_null(strstr(c.err.msg, IQ), "message: %s", c.err.msg);
    ph_cmd_clear(&c);
    cr_assert_eq(stock(IQ), 2);
    cr_assert_eq(last_event(), seq);
    ph_order *o = NULL;
    cr_assert_eq(ph_store_order_find(g_s, "mall", "A-1", 0, &o, NULL), PH_ENOTFOUND);
    ph_sku_stats st = sku_stats(IQ);
    cr_assert_eq(st.by_state[PH_CODE_AVAILABLE], 2);
    cr_assert_eq(st.by_state[PH_CODE_ISSUED], 0);

    /* a SKU that never had stock */
    cr_assert_eq(order(&c, "mall", "A-9", TX, 1), PH_ENOSTOCK);
    ph_cmd_clear(&c);

    /* restocked, the same client order id goes through, oldest codes first */
    import_range(IQ, 10, 5, 1980, 0);
    cr_assert_eq(order(&c, "mall", "A-1", IQ, 3), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.replayed, 0);
    cr_assert_eq(c.order->codes[0].id, 1);
    cr_assert_eq(c.order->codes[1].id, 2);
    cr_assert_eq(c.order->codes[2].id, 3);
    ph_cmd_clear(&c);
    cr_assert_eq(stock(IQ), 4);
    assert_check();
}

Test(store, order_for_an_unorderable_sku_is_refused)
{
    open_store();
    catalog();
    import_range(OLD, 0, 3, 500, 0); /* stock is not the reason */
    uint64_t seq = last_event();
    const char *skus[] = {OLD, TOPUP, "no.such.sku"};
    for (size_t i = 0; i < 3; i++) {
        ph_cmd c;
        cr_assert_eq(order(&c, "mall", "A-1", skus[i], 1), PH_ESKU, "sku %s", skus[i]);
        cr_assert_null(c.order);
        cr_assert_not_null(strstr(c.err.msg, "sku"), "message: %s", c.err.msg);
        if (i == 2) /* an unknown value is never echoed; a catalog SKU may be */
            cr_assert_null(strstr(c.err.msg, skus[i]), "message: %s", c.err.msg);
        ph_cmd_clear(&c);
    }
    cr_assert_eq(stock(OLD), 3);
    cr_assert_eq(last_event(), seq);
    ph_order *o = NULL;
    cr_assert_eq(ph_store_order_find(g_s, "mall", "A-1", 0, &o, NULL), PH_ENOTFOUND);
    assert_check();
}

Test(store, order_skips_and_marks_expired_codes)
{
    open_store();
    catalog();
    import_range(IQ, 0, 3, 1000, NOW - 1);           /* codes 1..3: expired */
    import_range(IQ, 3, 1, 1000, NOW);               /* code 4: expires this instant */
    import_range(IQ, 4, 3, 1200, NOW + 30 * DAY_MS); /* codes 5..7: good */
    cr_assert_eq(stock(IQ), 3, "codes past their expiry are not available");
    uint64_t seq = last_event();

    ph_cmd c;
    cr_assert_eq(order(&c, "mall", "A-1", IQ, 2), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->ncodes, 2);
    cr_assert_eq(c.order->codes[0].id, 5);
    cr_assert_eq(c.order->codes[1].id, 6);
    cr_assert_eq(c.order->codes[0].expires_at, NOW + 30 * DAY_MS);
    cr_assert_eq(c.order->cost, 2 * 1200);
    ph_cmd_clear(&c);
    cr_assert_eq(stock(IQ), 1);

    /* one event for the codes the order retired, with counts per batch and no code ids */
    json_t *evs = events_after(seq);
    cr_assert_eq(json_array_size(evs), 2);
    json_t *ev = json_array_get(evs, 0);
    cr_assert_str_eq(ev_str(ev, "type"), "code.expired");
    cr_assert_eq(ev_int(ev, "count"), 4);
    cr_assert_null(json_object_get(ev, "code_id"));
    json_t *bs = json_object_get(ev, "batches");
    cr_assert_eq(json_array_size(bs), 2);
    cr_assert_eq(ev_int(json_array_get(bs, 0), "batch_id"), 1);
    cr_assert_eq(ev_int(json_array_get(bs, 0), "count"), 3);
    cr_assert_str_eq(ev_str(json_array_get(bs, 0), "sku"), IQ);
    cr_assert_eq(ev_int(json_array_get(bs, 1), "batch_id"), 2);
    cr_assert_eq(ev_int(json_array_get(bs, 1), "count"), 1);
    cr_assert_str_eq(ev_str(json_array_get(evs, 1), "type"), "order.succeeded");
    json_decref(evs);

    ph_code_info info;
    cr_assert_eq(find_code(0, &info, NULL), PH_OK);
    cr_assert_eq(info.code.state, PH_CODE_EXPIRED);
    cr_assert_eq(info.code.order_id, 0);
    cr_assert_null(info.order);
    cr_assert_eq(info.code.changed_at, NOW);
    ph_code_info_clear(&info);
    ph_batch b;
    uint64_t counts[7];
    cr_assert_eq(ph_store_batch_get(g_s, 1, &b, counts, NULL), PH_OK);
    cr_assert_eq(counts[PH_CODE_EXPIRED], 3);
    assert_counts(IQ, 1, 0, 2, 0, 0, 4); /* retired by the order: available -> expired */
}

Test(store, order_out_of_stock_behind_expired_codes_changes_nothing)
{
    open_store();
    catalog();
    import_range(TX, 0, 2, 1000, NOW - 1);
    import_range(TX, 2, 1, 1000, 0);
    uint64_t seq = last_event();
    cr_assert_eq(stock(TX), 1, "the two codes past their expiry are not available");
    ph_cmd c;
    cr_assert_eq(order(&c, "mall", "T-1", TX, 2), PH_ENOSTOCK);
    ph_cmd_clear(&c);
    cr_assert_eq(stock(TX), 1);
    cr_assert_eq(last_event(), seq);
    ph_sku_stats st = sku_stats(TX);
    cr_assert_eq(st.by_state[PH_CODE_AVAILABLE], 1);
    cr_assert_eq(st.by_state[PH_CODE_EXPIRED], 2, "stats count due codes as expired");
    ph_batch b;
    uint64_t counts[7];
    cr_assert_eq(ph_store_batch_get(g_s, 1, &b, counts, NULL), PH_OK);
    cr_assert_eq(counts[PH_CODE_AVAILABLE], 2, "the refused order retired nothing");
    assert_check();
}

/* The writer remembers which SKUs are orderable; a catalog change must be seen at once. */
Test(store, delisting_a_product_stops_orders_at_once)
{
    open_store();
    catalog();
    import_range(IQ, 0, 4, 1980, 0);
    order_ok("mall", "D-1", IQ, 1);
    const char *const without_iq[] = {P_TX, P_TOPUP, P_OLD};
    ph_err err = {0};
    cr_assert_eq(put_products(without_iq, 3, &err), PH_OK, "%s", err.msg);
    ph_cmd c;
    cr_assert_eq(order(&c, "mall", "D-2", IQ, 1), PH_ESKU, "%s", c.err.msg);
    ph_cmd_clear(&c);
    cr_assert_eq(stock(IQ), 3);
    catalog(); /* listed again */
    order_ok("mall", "D-3", IQ, 1);
    cr_assert_eq(stock(IQ), 2);
    assert_check();
}

/* order.succeeded is formatted by hand on the hot path: it must be exactly the
 * canonical compact JSON every other event is (same keys, same order). */
Test(store, order_event_text_is_canonical_json)
{
    open_store();
    catalog();
    import_range(IQ, 0, 2, 1980, 0);
    uint64_t id = order_ok("mall", "EV-1:x_y.z-", IQ, 2);
    char **list;
    size_t n;
    ph_err err = {0};
    cr_assert_eq(ph_store_event_list(g_s, last_event() - 1, 1, &list, &n, &err), PH_OK, "%s",
                 err.msg);
    cr_assert_eq(n, 1);
    json_error_t je;
    json_t *ev = json_loads(list[0], 0, &je);
    cr_assert_not_null(ev, "not JSON: %s (%s)", list[0], je.text);
    char *canon = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
    cr_assert_str_eq(list[0], canon);
    cr_assert_str_eq(json_string_value(json_object_get(ev, "type")), "order.succeeded");
    cr_assert_eq(json_integer_value(json_object_get(ev, "order_id")), (json_int_t)id);
    cr_assert_str_eq(json_string_value(json_object_get(ev, "client_order_id")), "EV-1:x_y.z-");
    cr_assert_eq(json_integer_value(json_object_get(ev, "cost_fen")), 3960);
    cr_assert_eq(json_integer_value(json_object_get(ev, "seq")), (json_int_t)last_event());
    free(canon);
    json_decref(ev);
    ph_store_event_list_free(list, n);
}

Test(store, order_cost_is_the_sum_over_batches)
{
    open_store();
    catalog();
    import_range(IQ, 0, 2, 1000, 0);
    import_range(IQ, 2, 3, 1500, 0);
    ph_cmd c;
    cr_assert_eq(order(&c, "mall", "A-1", IQ, 4), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->cost, 2 * 1000 + 2 * 1500);
    cr_assert_eq(c.order->codes[2].batch_id, 2);
    ph_cmd_clear(&c);
    json_t *evs = events_after(last_event() - 1);
    cr_assert_eq(ev_int(json_array_get(evs, 0), "cost_fen"), 5000);
    json_decref(evs);
    cr_assert_eq(order(&c, "mall", "A-2", IQ, 1), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->cost, 1500);
    ph_cmd_clear(&c);
    ph_order *o = NULL;
    cr_assert_eq(ph_store_order_get(g_s, 1, 0, &o, NULL), PH_OK);
    cr_assert_eq(o->cost, 5000);
    ph_order_free(o);
    assert_check();
}

/* Client order ids are at most PH_ORDER_ID_MAX bytes and client names at most
 * PH_SKU_MAX: a longer one must be refused, not written past a key buffer. */
Test(store, order_with_overlong_ids_is_refused)
{
    open_store();
    catalog();
    import_range(IQ, 0, 3, 1000, 0);
    uint64_t seq = last_event();
    char coid[PH_ORDER_ID_MAX + 200], client[PH_SKU_MAX + 100];
    memset(coid, 'x', sizeof coid - 1);
    coid[sizeof coid - 1] = 0;
    memset(client, 'c', sizeof client - 1);
    client[sizeof client - 1] = 0;
    ph_cmd c;
    int rc = order(&c, "mall", coid, IQ, 1);
    ph_cmd_clear(&c);
    cr_assert_eq(rc, PH_EINVAL, "overlong client_order_id: rc %d", rc);
    rc = order(&c, client, "A-1", IQ, 1);
    ph_cmd_clear(&c);
    cr_assert_eq(rc, PH_EINVAL, "overlong client: rc %d", rc);
    cr_assert_eq(stock(IQ), 3);
    cr_assert_eq(last_event(), seq);
    assert_check();
}

/* ================================================================================= */
/* concurrency and group commit                                                       */
/* ================================================================================= */

#define N_THREADS  16
#define PER_THREAD 500
#define N_CODES    6000

typedef struct worker {
    int idx;
    pthread_barrier_t *start;
    uint64_t *code_ids; /* PER_THREAD slots */
    size_t ncodes;
    int ok, nostock, other, bad_shape;
    char first_error[600];
} worker;

static void *order_worker(void *arg)
{
    worker *w = arg;
    char coid[32];
    pthread_barrier_wait(w->start);
    for (int j = 0; j < PER_THREAD; j++) {
        snprintf(coid, sizeof coid, "T%02d-%04d", w->idx, j);
        ph_cmd c;
        order_cmd(&c, "mall", coid, IQ, 1, NOW);
        int rc = ph_store_exec(g_s, &c);
        if (rc == PH_OK) {
            w->ok++;
            if (!c.order || c.order->ncodes != 1 || c.replayed)
                w->bad_shape++;
            else
                w->code_ids[w->ncodes++] = c.order->codes[0].id;
        } else if (rc == PH_ENOSTOCK) {
            w->nostock++;
            if (c.order)
                w->bad_shape++;
        } else {
            if (!w->other++)
                snprintf(w->first_error, sizeof w->first_error, "%d %s", rc, c.err.msg);
        }
        ph_cmd_clear(&c);
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

Test(store, concurrent_orders_issue_every_code_exactly_once)
{
    open_store();
    catalog();
    import_range(IQ, 0, N_CODES, 1980, 0);
    cr_assert_eq(stock(IQ), N_CODES);

    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N_THREADS);
    worker w[N_THREADS];
    pthread_t th[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        w[i] = (worker){.idx = i, .start = &start};
        w[i].code_ids = calloc(PER_THREAD, sizeof *w[i].code_ids);
        cr_assert_not_null(w[i].code_ids);
        cr_assert_eq(pthread_create(&th[i], NULL, order_worker, &w[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);

    int ok = 0, nostock = 0;
    uint64_t *all = calloc(N_THREADS * PER_THREAD, sizeof *all);
    size_t n = 0;
    for (int i = 0; i < N_THREADS; i++) {
        cr_assert_eq(w[i].other, 0, "thread %d: %s", i, w[i].first_error);
        cr_assert_eq(w[i].bad_shape, 0, "thread %d: malformed results", i);
        ok += w[i].ok;
        nostock += w[i].nostock;
        memcpy(all + n, w[i].code_ids, w[i].ncodes * sizeof *all);
        n += w[i].ncodes;
        free(w[i].code_ids);
    }
    cr_assert_eq(ok, N_CODES);
    cr_assert_eq(nostock, N_THREADS * PER_THREAD - N_CODES);
    cr_assert_eq(n, N_CODES);
    qsort(all, n, sizeof *all, cmp_u64);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(all[i], i + 1, "code %llu issued twice or not at all",
                     (unsigned long long)all[i]);
    free(all);

    cr_assert_eq(stock(IQ), 0);
    /* rule 6: concurrent commands share durable commits (group commit) */
    ph_writer_stats ws;
    ph_store_writer_stats(g_s, &ws);
    cr_assert_geq(ws.commands, N_THREADS * PER_THREAD);
    cr_assert_lt(ws.commits, ws.commands / 2, "%llu commits for %llu commands: no group commit",
                 (unsigned long long)ws.commits, (unsigned long long)ws.commands);
    ph_store_stats st;
    ph_err err = {0};
    cr_assert_eq(ph_store_check(g_s, &st, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(st.orders, N_CODES);
    cr_assert_eq(st.nskus, 1);
    cr_assert_eq(st.skus[0].by_state[PH_CODE_ISSUED], N_CODES);
    /* 4 catalog events, 1 import, one per order */
    cr_assert_eq(st.last_event, 4 + 1 + N_CODES);
    ph_store_stats_clear(&st);
}

#define N_SAME 8

typedef struct same_worker {
    pthread_barrier_t *start;
    int rc, replayed;
    uint64_t order_id, code0, code1;
} same_worker;

static void *same_order_worker(void *arg)
{
    same_worker *w = arg;
    ph_cmd c;
    order_cmd(&c, "mall", "SAME-1", IQ, 2, NOW);
    pthread_barrier_wait(w->start);
    w->rc = ph_store_exec(g_s, &c);
    w->replayed = c.replayed;
    if (c.order && c.order->ncodes == 2) {
        w->order_id = c.order->id;
        w->code0 = c.order->codes[0].id;
        w->code1 = c.order->codes[1].id;
    }
    ph_cmd_clear(&c);
    return NULL;
}

Test(store, concurrent_same_client_order_id_is_one_order)
{
    open_store();
    catalog();
    import_range(IQ, 0, 20, 1980, 0);
    uint64_t seq = last_event();
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N_SAME);
    same_worker w[N_SAME];
    pthread_t th[N_SAME];
    for (int i = 0; i < N_SAME; i++) {
        w[i] = (same_worker){.start = &start};
        cr_assert_eq(pthread_create(&th[i], NULL, same_order_worker, &w[i]), 0);
    }
    for (int i = 0; i < N_SAME; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    int fresh = 0;
    for (int i = 0; i < N_SAME; i++) {
        cr_assert_eq(w[i].rc, PH_OK, "thread %d", i);
        cr_assert_neq(w[i].order_id, 0);
        cr_assert_eq(w[i].order_id, w[0].order_id, "thread %d got another order", i);
        cr_assert_eq(w[i].code0, w[0].code0);
        cr_assert_eq(w[i].code1, w[0].code1);
        fresh += !w[i].replayed;
    }
    cr_assert_eq(fresh, 1, "%d threads created the order", fresh);
    cr_assert_eq(stock(IQ), 18);
    json_t *evs = events_after(seq);
    cr_assert_eq(json_array_size(evs), 1);
    cr_assert_eq(count_type(evs, "order.succeeded"), 1);
    json_decref(evs);
    assert_check();
}

/* ================================================================================= */
/* voiding a batch                                                                    */
/* ================================================================================= */

static const ph_affected_order *affected(const ph_cmd *c, uint64_t id)
{
    for (size_t i = 0; i < c->naffected; i++)
        if (c->affected[i].id == id)
            return &c->affected[i];
    return NULL;
}

Test(store, void_batch_takes_stock_back_and_names_affected_orders)
{
    open_store();
    catalog();
    cr_assert_eq(import_range(IQ, 0, 5, 1000, 0), 1); /* codes 1..5 */
    cr_assert_eq(import_range(IQ, 5, 3, 1000, 0), 2); /* codes 6..8 */
    uint64_t a = order_ok("mall", "A-1", IQ, 2);      /* codes 1, 2 */
    uint64_t b = order_ok("crm", "B-1", IQ, 1);       /* code 3 */
    cr_assert_eq(stock(IQ), 5);
    assert_counts(IQ, 5, 0, 3, 0, 0, 0); /* two batches counted; available -> issued */
    uint64_t seq = last_event();

    ph_cmd c;
    cr_assert_eq(void_batch(&c, 1, "supplier voided"), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.voided_codes, 5);
    cr_assert_eq(c.naffected, 2);
    const ph_affected_order *fa = affected(&c, a), *fb = affected(&c, b);
    cr_assert_not_null(fa);
    cr_assert_not_null(fb);
    cr_assert_eq(fa->voided_codes, 2);
    cr_assert_str_eq(fa->client, "mall");
    cr_assert_str_eq(fa->client_order_id, "A-1");
    cr_assert_eq(fb->voided_codes, 1);
    cr_assert_str_eq(fb->client, "crm");
    cr_assert_str_eq(fb->client_order_id, "B-1");
    cr_assert_eq(c.batch.id, 1);
    cr_assert_eq(c.batch.voided, 1);
    cr_assert_eq(c.batch.voided_at, NOW + 1000);
    cr_assert_str_eq(c.batch.void_reason, "supplier voided");
    ph_cmd_clear(&c);

    cr_assert_eq(stock(IQ), 3, "batch 2 stays in stock, batch 1 leaves it");
    assert_counts(IQ, 3, 0, 0, 0, 5, 0); /* available and issued -> voided */
    ph_batch bt;
    uint64_t counts[7];
    cr_assert_eq(ph_store_batch_get(g_s, 1, &bt, counts, NULL), PH_OK);
    cr_assert_eq(bt.voided, 1);
    cr_assert_str_eq(bt.void_reason, "supplier voided");
    cr_assert_eq(counts[PH_CODE_VOIDED], 5);
    cr_assert_eq(counts[PH_CODE_AVAILABLE] + counts[PH_CODE_ISSUED], 0);
    cr_assert_eq(ph_store_batch_get(g_s, 2, &bt, counts, NULL), PH_OK);
    cr_assert_eq(counts[PH_CODE_AVAILABLE], 3);

    json_t *evs = events_after(seq);
    cr_assert_eq(json_array_size(evs), 3);
    cr_assert_eq(count_type(evs, "order.codes_voided"), 2);
    size_t i;
    json_t *ev;
    json_array_foreach(evs, i, ev)
    {
        if (strcmp(ev_str(ev, "type"), "order.codes_voided"))
            continue;
        cr_assert_eq(ev_int(ev, "batch_id"), 1);
        cr_assert_eq(ev_int(ev, "codes"), ev_int(ev, "order_id") == (json_int_t)a ? 2 : 1);
    }
    ev = json_array_get(evs, 2);
    cr_assert_str_eq(ev_str(ev, "type"), "batch.voided");
    cr_assert_eq(ev_int(ev, "batch_id"), 1);
    cr_assert_eq(ev_int(ev, "voided_codes"), 5);
    cr_assert_eq(ev_int(ev, "affected_orders"), 2);
    json_decref(evs);

    /* issued codes stay with their order, marked voided */
    ph_order *o = NULL;
    cr_assert_eq(ph_store_order_get(g_s, a, 1, &o, NULL), PH_OK);
    cr_assert_eq(o->ncodes, 2);
    for (size_t k = 0; k < 2; k++) {
        cr_assert_eq(o->codes[k].state, PH_CODE_VOIDED);
        cr_assert_eq(o->codes[k].order_id, a);
        cr_assert_eq(o->codes[k].changed_at, NOW + 1000);
    }
    ph_order_free(o);
    ph_code_info info;
    cr_assert_eq(find_code(4, &info, NULL), PH_OK); /* was available */
    cr_assert_eq(info.code.state, PH_CODE_VOIDED);
    cr_assert_null(info.order);
    cr_assert(info.batch.voided);
    ph_code_info_clear(&info);

    /* new orders get batch 2 only */
    ph_cmd oc;
    cr_assert_eq(order(&oc, "mall", "A-2", IQ, 3), PH_OK, "%s", oc.err.msg);
    cr_assert_eq(oc.order->codes[0].id, 6);
    cr_assert_eq(oc.order->codes[2].id, 8);
    ph_cmd_clear(&oc);
    cr_assert_eq(order(&oc, "mall", "A-3", IQ, 1), PH_ENOSTOCK);
    ph_cmd_clear(&oc);

    seq = last_event();
    cr_assert_eq(void_batch(&c, 1, "again"), PH_ESTATE);
    cr_assert_eq(c.naffected, 0);
    ph_cmd_clear(&c);
    cr_assert_eq(void_batch(&c, 99, "none"), PH_ENOTFOUND);
    ph_cmd_clear(&c);
    cr_assert_eq(last_event(), seq);
    cr_assert_eq(ph_store_batch_get(g_s, 1, &bt, counts, NULL), PH_OK);
    cr_assert_str_eq(bt.void_reason, "supplier voided");
    assert_check();
}

/* ================================================================================= */
/* reads                                                                              */
/* ================================================================================= */

static void assert_list(const char *client, uint64_t after, size_t limit, const uint64_t *want,
                        size_t nwant)
{
    ph_order **list = NULL;
    size_t n = 99;
    ph_err err = {0};
    cr_assert_eq(ph_store_order_list(g_s, client, after, limit, &list, &n, &err), PH_OK, "%s",
                 err.msg);
    uint64_t got[16] = {0};
    int shape_ok = 1;
    for (size_t i = 0; i < n; i++) {
        if (i < 16)
            got[i] = list[i]->id;
        shape_ok &= !list[i]->codes && (!client || strcmp(list[i]->client, client) == 0);
    }
    ph_order_list_free(list, n);
    cr_assert_eq(n, nwant, "list(%s, after %llu, limit %zu) gave %zu orders", client ? client : "*",
                 (unsigned long long)after, limit, n);
    cr_assert(shape_ok, "list(%s): codes loaded or another client's order", client ? client : "*");
    for (size_t i = 0; i < n && i < 16; i++)
        cr_assert_eq(got[i], want[i], "list(%s, %llu)[%zu]", client ? client : "*",
                     (unsigned long long)after, i);
}

Test(store, reads_orders_codes_and_events)
{
    open_store();
    catalog();
    import_range(IQ, 0, 20, 1000, 0);
    /* mall: 1 3 5 7 8   crm: 2 4 6 */
    const char *who[] = {"mall", "crm", "mall", "crm", "mall", "crm", "mall", "mall"};
    const char *coids[] = {"M-1", "C-1", "M-2", "C-2", "M-3", "C-3", "M-4", "M-5"};
    for (int i = 0; i < 8; i++)
        cr_assert_eq(order_ok(who[i], coids[i], IQ, 1), (uint64_t)i + 1);

    ph_order *o = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_store_order_get(g_s, 5, 1, &o, &err), PH_OK, "%s", err.msg);
    cr_assert_str_eq(o->client_order_id, "M-3");
    cr_assert_eq(o->ncodes, 1);
    cr_assert_not_null(o->codes);
    cr_assert_eq(o->codes[0].id, 5);
    assert_sealed(&o->codes[0], 4);
    ph_order_free(o);
    cr_assert_eq(ph_store_order_get(g_s, 5, 0, &o, NULL), PH_OK);
    cr_assert_null(o->codes);
    cr_assert_eq(o->ncodes, 1);
    ph_order_free(o);
    o = NULL;
    cr_assert_eq(ph_store_order_get(g_s, 999, 1, &o, &err), PH_ENOTFOUND);
    cr_assert_eq(err.code, PH_ENOTFOUND);
    cr_assert_null(o);

    cr_assert_eq(ph_store_order_find(g_s, "mall", "M-3", 1, &o, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(o->id, 5);
    cr_assert_eq(o->ncodes, 1);
    cr_assert_not_null(o->codes);
    ph_order_free(o);
    o = NULL;
    cr_assert_eq(ph_store_order_find(g_s, "crm", "M-3", 1, &o, NULL), PH_ENOTFOUND,
                 "another client's order id must not be found");
    cr_assert_eq(ph_store_order_find(g_s, "mall", "M-9", 0, &o, NULL), PH_ENOTFOUND);
    cr_assert_eq(ph_store_order_find(g_s, "mall", "", 0, &o, NULL), PH_ENOTFOUND);
    cr_assert_null(o);

    const uint64_t m[] = {1, 3, 5, 7, 8}, cm[] = {2, 4, 6}, all[] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_list("mall", 0, 2, m, 2);
    assert_list("mall", 3, 2, m + 2, 2);
    assert_list("mall", 7, 2, m + 4, 1);
    assert_list("mall", 8, 2, NULL, 0);
    assert_list("mall", 4, 100, m + 2, 3); /* after an id that is not the client's */
    assert_list("crm", 0, 10, cm, 3);
    assert_list("crm", 6, 10, NULL, 0);
    assert_list("nobody", 0, 10, NULL, 0);
    assert_list(NULL, 0, 100, all, 8);
    assert_list(NULL, 4, 3, all + 4, 3);
    assert_list("mall", 0, 0, NULL, 0);

    ph_code_info info;
    cr_assert_eq(find_code(4, &info, &err), PH_OK, "%s", err.msg); /* issued to M-3 */
    cr_assert_eq(info.code.id, 5);
    cr_assert_eq(info.code.state, PH_CODE_ISSUED);
    cr_assert_eq(info.batch.id, 1);
    cr_assert_str_eq(info.batch.supplier, "sup-a");
    cr_assert_not_null(info.order);
    cr_assert_eq(info.order->id, 5);
    cr_assert_str_eq(info.order->client, "mall");
    cr_assert_str_eq(info.order->client_order_id, "M-3");
    assert_sealed(&info.code, 4);
    ph_code_info_clear(&info);
    cr_assert_eq(find_code(15, &info, NULL), PH_OK);
    cr_assert_eq(info.code.state, PH_CODE_AVAILABLE);
    cr_assert_null(info.order);
    ph_code_info_clear(&info);
    cr_assert_eq(find_code(12345, &info, &err), PH_ENOTFOUND);
    cr_assert_null(info.order);
    cr_assert_null(info.code.sealed);

    /* events: 4 catalog + 1 import + 8 orders, paged 3 at a time */
    uint64_t last = last_event();
    cr_assert_eq(last, 13);
    uint64_t after = 0, seen = 0;
    for (;;) {
        char **list;
        size_t n;
        cr_assert_eq(ph_store_event_list(g_s, after, 3, &list, &n, &err), PH_OK, "%s", err.msg);
        cr_assert_leq(n, 3);
        for (size_t i = 0; i < n; i++) {
            json_t *ev = json_loads(list[i], 0, NULL);
            cr_assert_not_null(ev);
            cr_assert_eq(ev_int(ev, "seq"), (json_int_t)(after + i + 1));
            ev_str(ev, "type");
            cr_assert_str_eq(ev_str(ev, "at"), "2023-11-14T22:13:20.000Z");
            json_decref(ev);
        }
        ph_store_event_list_free(list, n);
        if (!n)
            break;
        after += n;
        seen += n;
    }
    cr_assert_eq(seen, last);
    char **list;
    size_t n;
    cr_assert_eq(ph_store_event_list(g_s, 10, 0, &list, &n, NULL), PH_OK);
    cr_assert_eq(n, 0);
    ph_store_event_list_free(list, n);
    assert_check();
}

/* Issue 10, defect 3: whether a typed code exists, is in stock or is issued to
 * someone, the lookup does the same work (every rule hashed and looked up, a
 * code, a batch and an order read), so its time does not tell. */
Test(store, typed_lookup_does_the_same_work_found_or_not)
{
    open_store();
    catalog();
    import_range(IQ, 0, 10, 1980, 0);
    unsigned tx[] = {100, 101};
    ph_cmd c;
    cr_assert_eq(import_nums_rule(TX, tx, 2, 500, 0, "O0", &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    order_ok("othermall", "O-1", IQ, 2); /* CODE-0 and CODE-1 */
    struct {
        unsigned num;
        int found, issued;
    } cases[] = {{0, 1, 1}, {5, 1, 0}, {999, 0, 0}, {100, 1, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        typed_probe p = {cases[i].num, 0};
        ph_code_info info;
        ph_err err = {0};
        cr_assert_eq(ph_store_code_find_typed(g_s, typed_hash, &p, &info, &err), PH_OK, "%s",
                     err.msg);
        cr_assert_eq(info.found, cases[i].found, "CODE-%u", p.num);
        cr_assert_eq(p.calls, 2, "CODE-%u: hashed %d times, not once per rule", p.num, p.calls);
        cr_assert_neq(info.code.id, 0, "CODE-%u: no code record read", p.num);
        cr_assert_neq(info.batch.id, 0, "CODE-%u: no batch read", p.num);
        cr_assert_not_null(info.code.sealed, "CODE-%u: the sealed blob not copied", p.num);
        cr_assert_eq(info.order != NULL, cases[i].issued, "CODE-%u: its own order", p.num);
        cr_assert_eq(info.decoy != NULL, !cases[i].issued, "CODE-%u: no order read", p.num);
        if (cases[i].found)
            assert_sealed(&info.code, p.num);
        ph_code_info_clear(&info);
    }
    assert_check();
}

/* The same commands in the same order give byte-identical data (rule: the write
 * path is a deterministic function, so a replica can replay it). */
Test(store, same_commands_give_the_same_events)
{
    char dir2[128];
    snprintf(dir2, sizeof dir2, "%s/db2", g_base);
    char **ev[2];
    size_t nev[2];
    for (int r = 0; r < 2; r++) {
        g_s = open_at(r ? dir2 : g_dir, 0);
        catalog();
        import_range(IQ, 0, 4, 1000, NOW - 1);
        import_range(IQ, 4, 6, 1200, 0);
        order_ok("mall", "A-1", IQ, 5);
        ph_cmd c;
        cr_assert_eq(void_batch(&c, 2, "upstream"), PH_OK);
        ph_cmd_clear(&c);
        cr_assert_eq(ph_store_event_list(g_s, 0, 1000, &ev[r], &nev[r], NULL), PH_OK);
        ph_store_close(g_s);
        g_s = NULL;
    }
    cr_assert_eq(nev[0], nev[1]);
    for (size_t i = 0; i < nev[0]; i++)
        cr_assert_str_eq(ev[0][i], ev[1][i], "event %zu differs", i + 1);
    ph_store_event_list_free(ev[0], nev[0]);
    ph_store_event_list_free(ev[1], nev[1]);
}

/* ================================================================================= */
/* ph_store_check finds damage                                                        */
/* ================================================================================= */

/* A store with stock and orders: codes 1..6 of IQ, order 1 has codes 1, 2 and
 * order 2 has code 3; codes 4..6 available. */
static void damaged_store_base(void)
{
    open_store();
    catalog();
    import_range(IQ, 0, 6, 1000, 0);
    order_ok("mall", "A-1", IQ, 2);
    order_ok("mall", "A-2", IQ, 1);
    assert_check();
    ph_store_close(g_s);
    g_s = NULL;
}

Test(store, check_detects_a_flipped_code_state)
{
    damaged_store_base();
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi codes = raw_dbi(txn, "codes", MDB_INTEGERKEY);
    uint64_t id = 5;
    size_t len;
    uint8_t *rec = raw_copy(txn, codes, id, &len);
    cr_assert_eq(rec[offsetof(ph_code_rec, state)], PH_CODE_AVAILABLE);
    rec[offsetof(ph_code_rec, state)] = PH_CODE_VOIDED;
    raw_put_free(txn, codes, id, rec, len);
    raw_commit(env, txn);

    char msg[512];
    assert_check_fails(msg, sizeof msg);
    cr_assert_not_null(strstr(msg, "code 5"), "message does not name the code: %s", msg);
}

/* Invariant 38: the counts the writer keeps (what GET /v1/stats answers)
 * against the codes. A count that drifted is named with its SKU and state. */
Test(store, check_detects_a_drifted_code_count)
{
    damaged_store_base();
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi counts = raw_dbi(txn, "code_counts", 0);
    MDB_val k = {strlen(IQ), IQ}, v;
    cr_assert_eq(mdb_get(txn, counts, &k, &v), 0);
    cr_assert_eq(v.mv_size, sizeof(ph_code_count_rec));
    ph_code_count_rec r;
    memcpy(&r, v.mv_data, sizeof r);
    cr_assert_eq(r.imported, 6);
    cr_assert_eq(r.first_batch, 1);
    r.voided++;
    v = (MDB_val){sizeof r, &r};
    cr_assert_eq(mdb_put(txn, counts, &k, &v, 0), 0);
    raw_commit(env, txn);

    char msg[512];
    assert_check_fails(msg, sizeof msg);
    cr_assert_not_null(strstr(msg, "code_counts: sku " IQ), "message: %s", msg);
    cr_assert_not_null(strstr(msg, "voided"), "message does not name the state: %s", msg);
}

/* An issued code flipped to redeemed breaks no other invariant (it keeps its
 * order): the counts are what show it. */
Test(store, check_detects_an_issued_code_flipped_to_redeemed_by_the_counts)
{
    damaged_store_base();
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi codes = raw_dbi(txn, "codes", MDB_INTEGERKEY);
    size_t len;
    uint8_t *rec = raw_copy(txn, codes, 1, &len);
    cr_assert_eq(rec[offsetof(ph_code_rec, state)], PH_CODE_ISSUED);
    rec[offsetof(ph_code_rec, state)] = PH_CODE_REDEEMED;
    raw_put_free(txn, codes, 1, rec, len);
    raw_commit(env, txn);

    char msg[512];
    assert_check_fails(msg, sizeof msg);
    cr_assert_not_null(strstr(msg, "code_counts: sku " IQ ": 0 redeemed, but the codes say 1"),
                       "message: %s", msg);
}

Test(store, check_detects_a_sku_missing_from_the_code_counts)
{
    damaged_store_base();
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi counts = raw_dbi(txn, "code_counts", 0);
    cr_assert_eq(mdb_del(txn, counts, &(MDB_val){strlen(IQ), IQ}, NULL), 0);
    raw_commit(env, txn);

    char msg[512];
    assert_check_fails(msg, sizeof msg);
    cr_assert_not_null(strstr(msg, "code_counts: sku " IQ " has batches"), "message: %s", msg);
}

/* Stats list SKUs in the order of their first batch, as the scan meets them:
 * a record naming another first batch reorders the answer, and is caught. */
Test(store, check_detects_code_counts_that_reorder_the_skus)
{
    open_store();
    catalog();
    import_range(IQ, 0, 2, 1000, 0); /* batch 1 */
    import_range(TX, 2, 2, 1000, 0); /* batch 2 */
    assert_check();
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi counts = raw_dbi(txn, "code_counts", 0);
    MDB_val k = {strlen(IQ), IQ}, v;
    cr_assert_eq(mdb_get(txn, counts, &k, &v), 0);
    ph_code_count_rec r;
    memcpy(&r, v.mv_data, sizeof r);
    r.first_batch = 3;
    v = (MDB_val){sizeof r, &r};
    cr_assert_eq(mdb_put(txn, counts, &k, &v, 0), 0);
    raw_commit(env, txn);

    char msg[512];
    assert_check_fails(msg, sizeof msg);
    cr_assert_not_null(strstr(msg, "code_counts: sku " IQ " is not listed in the order"),
                       "message: %s", msg);
}

/* A version 7 store (no code counts) is counted once at its first writable
 * open, and answers the stats it answered before; read-only it is refused. */
Test(store, a_version_7_store_is_counted_at_open)
{
    open_store();
    catalog();
    import_range(IQ, 0, 6, 1000, 0);                  /* batch 1: codes 1..6 */
    import_range(TX, 6, 2, 1000, 0);                  /* batch 2 */
    import_range(IQ, 8, 3, 1000, NOW - 1);            /* batch 3: expired */
    import_range(IQ, 11, 2, 1000, NOW + 30 * DAY_MS); /* batch 4 */
    order_ok("mall", "A-1", IQ, 2);
    ph_cmd c;
    cr_assert_eq(void_batch(&c, 4, "upstream"), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    ph_store_stats before, after;
    ph_err err = {0};
    cr_assert_eq(ph_store_stats_at(g_s, NOW, &before, &err), PH_OK, "%s", err.msg);
    ph_store_close(g_s);
    g_s = NULL;

    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    cr_assert_eq(mdb_drop(txn, raw_dbi(txn, "code_counts", 0), 1), 0);
    uint32_t seven = 7;
    cr_assert_eq(
        mdb_put(txn, raw_dbi(txn, "meta", 0), &(MDB_val){6, "schema"}, &(MDB_val){4, &seven}, 0),
        0);
    raw_commit(env, txn);

    ph_store_opts ro = {.dir = g_dir, .read_only = 1};
    ph_store *s = NULL;
    cr_assert_eq(ph_store_open(&ro, &s, &err), PH_EVERSION, "read-only: refused, not migrated");
    g_s = open_at(g_dir, 0);
    cr_assert_eq(ph_store_migrated_from(g_s), 7);
    cr_assert_eq(ph_store_stats_at(g_s, NOW, &after, &err), PH_OK, "%s", err.msg);
    assert_stats_equal(&before, &after);
    cr_assert_str_eq(after.skus[0].sku, IQ, "skus in the order of their first batch");
    cr_assert_eq(after.skus[0].by_state[PH_CODE_VOIDED], 2);
    cr_assert_eq(after.skus[0].by_state[PH_CODE_EXPIRED], 3, "due at NOW: counted expired");
    ph_store_stats_clear(&before);
    ph_store_stats_clear(&after);
    assert_counts(IQ, 7, 0, 2, 0, 2, 0); /* as stored: batch 3 is due, not yet retired */
    assert_counts(TX, 2, 0, 0, 0, 0, 0);
}

/* Issue 10, defect 5: the events of the last orders lost with their pages
 * leave a numbering without a gap (1..n); the orders they recorded show it. */
Test(store, check_detects_events_lost_at_the_tail)
{
    damaged_store_base();
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi events = raw_dbi(txn, "events", MDB_INTEGERKEY);
    MDB_cursor *c;
    MDB_val k, v;
    cr_assert_eq(mdb_cursor_open(txn, events, &c), 0);
    cr_assert_eq(mdb_cursor_get(c, &k, &v, MDB_LAST), 0);
    cr_assert_eq(mdb_cursor_del(c, 0), 0); /* order A-2's order.succeeded */
    mdb_cursor_close(c);
    raw_commit(env, txn);

    char msg[512];
    assert_check_fails(msg, sizeof msg);
    cr_assert_not_null(strstr(msg, "order 2 has no event"), "%s", msg);
}

/* Issue 10, defect 5: the per-client index of orders agrees with the orders. */
Test(store, check_detects_an_order_missing_from_its_clients_list)
{
    damaged_store_base();
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi co = raw_dbi(txn, "client_orders", MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP);
    uint64_t id = 1;
    MDB_val ck = {4, "mall"}, cv = {8, &id};
    cr_assert_eq(mdb_del(txn, co, &ck, &cv), 0);
    raw_commit(env, txn);

    char msg[512];
    assert_check_fails(msg, sizeof msg);
    cr_assert_not_null(strstr(msg, "client_orders"), "%s", msg);
}

Test(store, check_detects_an_issued_code_without_order)
{
    damaged_store_base();
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi codes = raw_dbi(txn, "codes", MDB_INTEGERKEY);
    MDB_dbi avail = raw_dbi(txn, "avail", MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP);
    uint64_t id = 4;
    size_t len;
    uint8_t *rec = raw_copy(txn, codes, id, &len);
    rec[offsetof(ph_code_rec, state)] = PH_CODE_ISSUED;
    raw_put_free(txn, codes, id, rec, len);
    MDB_val sk = {strlen(IQ), IQ}, sv = {8, &id};
    cr_assert_eq(mdb_del(txn, avail, &sk, &sv), 0);
    raw_commit(env, txn);

    char msg[512];
    assert_check_fails(msg, sizeof msg);
    cr_assert_not_null(strstr(msg, "code 4"), "message does not name the code: %s", msg);
}

/* An available code missing from its SKU's stock list can never be sold: lost. */
Test(store, check_detects_a_code_missing_from_stock)
{
    damaged_store_base();
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi avail = raw_dbi(txn, "avail", MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP);
    uint64_t id = 5;
    MDB_val sk = {strlen(IQ), IQ}, sv = {8, &id};
    cr_assert_eq(mdb_del(txn, avail, &sk, &sv), 0);
    raw_commit(env, txn);

    char msg[512];
    assert_check_fails(msg, sizeof msg);
    cr_assert_not_null(strstr(msg, "code 5"), "message does not name the code: %s", msg);
}

/* Order 2 made to list order 1's code: one code in two orders. */
Test(store, check_detects_a_code_in_two_orders)
{
    damaged_store_base();
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi orders = raw_dbi(txn, "orders", MDB_INTEGERKEY);
    uint64_t id = 2;
    size_t len;
    uint8_t *rec = raw_copy(txn, orders, id, &len);
    uint64_t code;
    memcpy(&code, rec + len - 8, 8);
    cr_assert_eq(code, 3);
    code = 1;
    memcpy(rec + len - 8, &code, 8);
    raw_put_free(txn, orders, id, rec, len);
    raw_commit(env, txn);

    char msg[512];
    assert_check_fails(msg, sizeof msg);
    cr_assert_not_null(strstr(msg, "code 1"), "message does not name the code: %s", msg);
}

Test(store, check_detects_a_lost_idempotency_key)
{
    damaged_store_base();
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi ref = raw_dbi(txn, "order_ref", 0);
    char key[] = "mall\0A-2";
    MDB_val k = {sizeof key - 1, key};
    cr_assert_eq(mdb_del(txn, ref, &k, NULL), 0);
    raw_commit(env, txn);

    char msg[512];
    assert_check_fails(msg, sizeof msg);
    cr_assert_not_null(strstr(msg, "order 2"), "message does not name the order: %s", msg);
}

Test(store, check_detects_a_gap_in_the_events)
{
    damaged_store_base();
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi events = raw_dbi(txn, "events", MDB_INTEGERKEY);
    uint64_t seq = 3;
    MDB_val k = {8, &seq};
    cr_assert_eq(mdb_del(txn, events, &k, NULL), 0);
    raw_commit(env, txn);

    char msg[512];
    assert_check_fails(msg, sizeof msg);
    cr_assert_not_null(strstr(msg, "seq 3"), "message does not name the gap: %s", msg);
}

/* ================================================================================= */
/* the map grows by itself                                                            */
/* ================================================================================= */

Test(store, map_grows_for_a_big_import)
{
    g_s = open_at(g_dir, 256 << 10);
    uint64_t initial = ph_store_map_size(g_s);
    cr_assert_leq(initial, 1u << 20, "initial map %llu", (unsigned long long)initial);
    catalog();
    cr_assert_eq(import_range(IQ, 0, 20000, 1000, 0), 1);
    uint64_t grown = ph_store_map_size(g_s);
    cr_assert_gt(grown, initial, "map did not grow: %llu", (unsigned long long)grown);
    cr_assert_eq(stock(IQ), 20000);
    ph_code_info info;
    cr_assert_eq(find_code(19999, &info, NULL), PH_OK);
    cr_assert_eq(info.code.id, 20000);
    ph_code_info_clear(&info);
    ph_cmd c;
    cr_assert_eq(order(&c, "mall", "A-1", IQ, 3), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->codes[0].id, 1);
    ph_cmd_clear(&c);
    assert_check();
    reopen();
    cr_assert_eq(stock(IQ), 19997);
    assert_check();
}

/* ================================================================================= */
/* closing                                                                            */
/* ================================================================================= */

#define N_QUEUED 300

static atomic_int g_done_count;

static void count_done(ph_cmd *c)
{
    (void)c;
    atomic_fetch_add(&g_done_count, 1);
}

Test(store, close_completes_queued_commands)
{
    open_store();
    catalog();
    import_range(IQ, 0, N_QUEUED, 1000, 0);
    static ph_cmd cmds[N_QUEUED];
    static char coids[N_QUEUED][16];
    atomic_store(&g_done_count, 0);
    for (int i = 0; i < N_QUEUED; i++) {
        snprintf(coids[i], sizeof coids[i], "Q-%d", i);
        order_cmd(&cmds[i], "mall", coids[i], IQ, 1, NOW);
        cmds[i].done = count_done;
        cr_assert_eq(ph_store_submit(g_s, &cmds[i]), PH_OK);
    }
    ph_store_close(g_s);
    g_s = NULL;
    cr_assert_eq(atomic_load(&g_done_count), N_QUEUED);
    for (int i = 0; i < N_QUEUED; i++) {
        cr_assert_eq(cmds[i].rc, PH_OK, "command %d: %s", i, cmds[i].err.msg);
        cr_assert_not_null(cmds[i].order);
        ph_cmd_clear(&cmds[i]);
    }
    open_store();
    cr_assert_eq(stock(IQ), 0);
    ph_store_stats st;
    cr_assert_eq(ph_store_check(g_s, &st, NULL), PH_OK);
    cr_assert_eq(st.orders, N_QUEUED);
    ph_store_stats_clear(&st);
}

/* ================================================================================= */
/* limits                                                                             */
/* ================================================================================= */

/* "after" is the last id a client saw: after the largest possible id there is
 * nothing, not (after + 1 wrapping to 0) everything again. */
Test(store, paging_after_the_largest_id_is_empty)
{
    open_store();
    catalog();
    import_range(IQ, 0, 3, 1000, 0);
    order_ok("mall", "A-1", IQ, 1);
    assert_list(NULL, UINT64_MAX, 10, NULL, 0);
    assert_list("mall", UINT64_MAX, 10, NULL, 0);
    char **list;
    size_t n;
    cr_assert_eq(ph_store_event_list(g_s, UINT64_MAX, 10, &list, &n, NULL), PH_OK);
    ph_store_event_list_free(list, n);
    cr_assert_eq(n, 0, "event_list(after = UINT64_MAX) returned %zu events", n);
}

/* Batches, orders and stats hold a SKU in PH_SKU_MAX bytes. A product with a
 * longer SKU must either be refused by PUT_PRODUCTS, or work end to end. */
Test(store, a_sku_longer_than_the_maximum_is_refused_or_works)
{
    open_store();
    char sku[PH_SKU_MAX + 20], json[256];
    memset(sku, 's', sizeof sku - 1);
    sku[sizeof sku - 1] = 0;
    snprintf(json, sizeof json,
             "{\"sku\":\"%s\",\"name\":\"long\",\"delivery\":\"card_code\",\"listed\":true}", sku);
    const char *const one[] = {json};
    ph_err err = {0};
    int rc = put_products(one, 1, &err);
    if (rc == PH_EINVAL) {
        cr_assert_eq(last_event(), 0);
        return;
    }
    cr_assert_eq(rc, PH_OK, "%s", err.msg);
    uint64_t b = import_range(sku, 0, 3, 1000, 0);
    ph_cmd c;
    cr_assert_eq(order(&c, "mall", "L-1", sku, 1), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    assert_check();
    cr_assert_eq(void_batch(&c, b, "upstream"), PH_OK, "void: %s", c.err.msg);
    ph_cmd_clear(&c);
    cr_assert_eq(stock(sku), 0);
    assert_check();
}

/* ---- orders apply without a nested transaction; a failure after writing redoes
 * the batch with every command nested (docs/store.md, "Orders skip the nested
 * transaction"). Five orders land in one batch behind a held writer: ok, short of
 * stock, ok, a replay, short of stock. One commit, the right answers, contiguous
 * ids, the replay's same code, and the data whole after a reopen. */

static void submit_held_order(held_cmd *h, const char *coid, uint32_t qty, sem_t *gate)
{
    order_cmd(&h->c, "mall", coid, IQ, qty, NOW);
    submit_held(h, gate);
}

static int writer_committed(void *arg)
{
    const uint64_t *before = arg;
    ph_writer_stats w;
    ph_store_writer_stats(g_s, &w);
    return w.commits > *before;
}

Test(store, a_batch_with_failed_orders_is_redone_nested_and_stays_whole)
{
    open_store();
    catalog();
    import_range(IQ, 0, 4, 1980, 0);
    sem_t gate;
    sem_init(&gate, 0, 0);
    static held_cmd blk, a, b, c, d, e;
    ph_writer_stats w0;
    ph_store_writer_stats(g_s, &w0);
    submit_held_order(&blk, "BLK", 1, &gate);
    /* the writer has committed blk and now sits in its done, waiting on the gate */
    uint64_t commits0 = w0.commits;
    while (!writer_committed(&commits0))
        sched_yield();
    ph_store_writer_stats(g_s, &w0);
    submit_held_order(&a, "A", 1, NULL);
    submit_held_order(&b, "B", 3, NULL); /* 2 left after A: short */
    submit_held_order(&c, "C", 1, NULL);
    submit_held_order(&d, "A", 1, NULL); /* a replay of A */
    submit_held_order(&e, "E", 2, NULL); /* 1 left: short */
    sem_post(&gate);
    held_cmd *all[] = {&blk, &a, &b, &c, &d, &e};
    for (int i = 0; i < 6; i++)
        sem_wait(&all[i]->done);
    ph_writer_stats w1;
    ph_store_writer_stats(g_s, &w1);
    cr_expect_eq(w1.commits - w0.commits, 1, "one batch");
    cr_expect_eq(w1.commands - w0.commands, 5);
    cr_assert_eq(blk.c.rc, PH_OK);
    cr_assert_eq(a.c.rc, PH_OK, "%s", a.c.err.msg);
    cr_assert_eq(b.c.rc, PH_ENOSTOCK, "%s", b.c.err.msg);
    cr_assert_null(b.c.order);
    cr_assert_eq(c.c.rc, PH_OK);
    cr_assert_eq(d.c.rc, PH_OK);
    cr_assert_eq(d.c.replayed, 1);
    cr_assert_eq(e.c.rc, PH_ENOSTOCK);
    cr_assert_eq(a.c.order->id, blk.c.order->id + 1, "ids stay contiguous");
    cr_assert_eq(c.c.order->id, blk.c.order->id + 2);
    cr_assert_eq(d.c.order->codes[0].id, a.c.order->codes[0].id, "the replay's same code");
    cr_assert_eq(stock(IQ), 1);
    cr_assert_eq(sku_stats(IQ).by_state[PH_CODE_ISSUED], 3);
    uint64_t blk_id = blk.c.order->id;
    for (int i = 0; i < 6; i++)
        ph_cmd_clear(&all[i]->c);
    assert_check();
    reopen();
    assert_check();
    ph_cmd o;
    cr_assert_eq(order(&o, "mall", "F", IQ, 1), PH_OK);
    cr_assert_eq(o.order->id, blk_id + 3, "the next id follows on after a reopen");
    ph_cmd_clear(&o);
    sem_destroy(&gate);
}

/* ================================================================================= */
/* expiry: the sweep (PH_CMD_EXPIRE), counts as of a time, the expiry index           */
/* ================================================================================= */

/* One sweep step at now visiting at most limit index entries; asserts success. */
static ph_cmd expire_step(int64_t now, uint32_t limit)
{
    ph_cmd c = {.type = PH_CMD_EXPIRE, .now = now};
    c.in.expire.limit = limit;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "expire: %s", c.err.msg);
    return c;
}

static uint64_t stock_at(const char *sku, int64_t now)
{
    char *json = NULL;
    uint64_t n = 0;
    ph_err err = {0};
    cr_assert_eq(ph_store_product_get_at(g_s, sku, now, &json, &n, &err), PH_OK, "%s", err.msg);
    free(json);
    return n;
}

/* Codes 1..5 of IQ expire at NOW+1000 (code 1 is issued first), 6..8 of TX at
 * NOW+500, 9..10 of IQ at NOW+5000, 11..12 of IQ never. */
static void expiring_store(void)
{
    catalog();
    import_range(IQ, 0, 5, 1000, NOW + 1000);
    import_range(TX, 5, 3, 1000, NOW + 500);
    import_range(IQ, 8, 2, 1000, NOW + 5000);
    import_range(IQ, 10, 2, 1000, 0);
    order_ok("mall", "E-1", IQ, 1); /* code 1: its index entry stays until due */
}

Test(store, available_counts_only_codes_issuable_at_the_time_asked)
{
    open_store();
    expiring_store();
    cr_assert_eq(stock_at(IQ, NOW), 8);
    cr_assert_eq(stock_at(IQ, NOW + 999), 8);
    cr_assert_eq(stock_at(IQ, NOW + 1000), 4, "due at its expiry: not issuable");
    cr_assert_eq(stock_at(TX, NOW + 500), 0);
    cr_assert_eq(stock_at(IQ, NOW + 5000), 2);
    char **json;
    uint64_t *avail;
    size_t n;
    cr_assert_eq(ph_store_product_list_at(g_s, NOW + 2000, &json, &avail, &n, NULL), PH_OK);
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_loads(json[i], 0, NULL);
        const char *sku = json_string_value(json_object_get(p, "sku"));
        if (strcmp(sku, IQ) == 0)
            cr_assert_eq(avail[i], 4);
        if (strcmp(sku, TX) == 0)
            cr_assert_eq(avail[i], 0);
        json_decref(p);
    }
    ph_store_product_list_free(json, avail, n);
    ph_store_stats st;
    cr_assert_eq(ph_store_stats_at(g_s, NOW + 2000, &st, NULL), PH_OK);
    for (size_t i = 0; i < st.nskus; i++) {
        uint64_t *b = st.skus[i].by_state, sum = 0;
        for (int k = 1; k <= 6; k++)
            sum += b[k];
        cr_assert_eq(sum, st.skus[i].imported, "%s: the states add up", st.skus[i].sku);
        if (strcmp(st.skus[i].sku, IQ) == 0) {
            cr_assert_eq(b[PH_CODE_AVAILABLE], 4);
            cr_assert_eq(b[PH_CODE_EXPIRED], 4);
            cr_assert_eq(b[PH_CODE_ISSUED], 1);
        }
    }
    ph_store_stats_clear(&st);
    cr_assert_eq(ph_store_expiry_due(g_s, NOW + 499), 0);
    cr_assert_eq(ph_store_expiry_due(g_s, NOW + 500), 1);

    /* an order at a time when the head of the stock has expired skips it: never issued */
    ph_cmd c;
    order_cmd(&c, "mall", "E-2", IQ, 5, NOW + 1000);
    cr_assert_eq(ph_store_exec(g_s, &c), PH_ENOSTOCK, "only 4 issuable: %s", c.err.msg);
    ph_cmd_clear(&c);
    order_cmd(&c, "mall", "E-3", IQ, 4, NOW + 1000);
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    for (size_t i = 0; i < 4; i++)
        cr_assert(c.order->codes[i].expires_at == 0 || c.order->codes[i].expires_at > NOW + 1000,
                  "code %llu issued past its expiry", (unsigned long long)c.order->codes[i].id);
    ph_cmd_clear(&c);
    cr_assert_eq(stock_at(IQ, NOW + 1000), 0);
    assert_check();
}

Test(store, expire_retires_due_codes_in_bounded_steps_with_one_event_each)
{
    open_store();
    expiring_store();
    uint64_t seq = last_event();

    /* IQ first (SKUs in byte order), oldest first: codes 1 (issued: only its
     * entry goes), 2, 3 */
    ph_cmd c = expire_step(NOW + 2000, 3);
    cr_assert_eq(c.expired_codes, 2);
    cr_assert_eq(c.more, 1);
    ph_cmd_clear(&c);
    c = expire_step(NOW + 2000, 3); /* codes 4, 5 of IQ, then 6 of TX */
    cr_assert_eq(c.expired_codes, 3);
    cr_assert_eq(c.more, 1);
    ph_cmd_clear(&c);
    c = expire_step(NOW + 2000, 3); /* 7, 8; codes 9, 10 are not due */
    cr_assert_eq(c.expired_codes, 2);
    cr_assert_eq(c.more, 0);
    ph_cmd_clear(&c);
    c = expire_step(NOW + 2000, 3); /* nothing left: no change, no event */
    cr_assert_eq(c.expired_codes, 0);
    cr_assert_eq(c.more, 0);
    ph_cmd_clear(&c);
    cr_assert_eq(ph_store_expiry_due(g_s, NOW + 2000), 0);

    const char *const no_ids[] = {"code_id", NULL};
    json_t *evs = events_after_without(seq, no_ids);
    cr_assert_eq(json_array_size(evs), 3, "one event per step that expired codes");
    const json_int_t counts[] = {2, 3, 2};
    for (size_t i = 0; i < 3; i++) {
        json_t *ev = json_array_get(evs, i);
        cr_assert_str_eq(ev_str(ev, "type"), "code.expired");
        cr_assert_eq(ev_int(ev, "count"), counts[i]);
        cr_assert_str_eq(ev_str(ev, "at"), "2023-11-14T22:13:22.000Z", "the command's time");
    }
    json_t *bs = json_object_get(json_array_get(evs, 1), "batches");
    cr_assert_eq(json_array_size(bs), 2);
    cr_assert_eq(ev_int(json_array_get(bs, 0), "batch_id"), 1);
    cr_assert_eq(ev_int(json_array_get(bs, 0), "count"), 2);
    cr_assert_eq(ev_int(json_array_get(bs, 1), "batch_id"), 2);
    cr_assert_str_eq(ev_str(json_array_get(bs, 1), "sku"), TX);
    cr_assert_eq(ev_int(json_array_get(bs, 1), "count"), 1);
    json_decref(evs);

    ph_code_info info;
    cr_assert_eq(find_code(1, &info, NULL), PH_OK); /* code id 2 */
    cr_assert_eq(info.code.state, PH_CODE_EXPIRED);
    cr_assert_eq(info.code.changed_at, NOW + 2000);
    ph_code_info_clear(&info);
    cr_assert_eq(find_code(0, &info, NULL), PH_OK); /* code id 1 stays issued */
    cr_assert_eq(info.code.state, PH_CODE_ISSUED);
    ph_code_info_clear(&info);
    /* the stored states now say it, whatever the time */
    ph_sku_stats st = sku_stats(IQ);
    cr_assert_eq(st.by_state[PH_CODE_EXPIRED], 4);
    cr_assert_eq(st.by_state[PH_CODE_AVAILABLE], 4);
    cr_assert_eq(sku_stats(TX).by_state[PH_CODE_EXPIRED], 3);
    cr_assert_eq(stock_at(IQ, NOW), 4);
    assert_counts(IQ, 4, 0, 1, 0, 0, 4); /* the sweep: available -> expired */
    reopen();
    assert_check();
    c = expire_step(NOW + 5000, 0); /* the default limit: all of what is left */
    cr_assert_eq(c.expired_codes, 2);
    cr_assert_eq(c.more, 0);
    ph_cmd_clear(&c);
    cr_assert_eq(stock_at(IQ, NOW + 5000), 2);
    assert_check();
}

/* Every key and value of every database but `meta` (whose uid is random), in
 * order, as one buffer (*len bytes; caller frees). */
static char *dump_store(const char *dir, size_t *len)
{
    static const char *const dbs[] = {
        "products",      "batches", "codes",  "avail",   "code_hash", "orders",     "order_ref",
        "client_orders", "events",  "supply", "pending", "expiry",    "code_counts"};
    MDB_env *env;
    MDB_txn *txn;
    cr_assert_eq(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 32);
    cr_assert_eq(mdb_env_open(env, dir, MDB_RDONLY, 0600), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    char *buf = NULL;
    FILE *h = open_memstream(&buf, len);
    cr_assert_not_null(h);
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
        MDB_dbi dbi;
        MDB_cursor *c;
        MDB_val k, v;
        cr_assert_eq(mdb_dbi_open(txn, dbs[i], 0, &dbi), 0, "database %s", dbs[i]);
        cr_assert_eq(mdb_cursor_open(txn, dbi, &c), 0);
        fwrite(dbs[i], 1, strlen(dbs[i]) + 1, h);
        for (int op = MDB_FIRST; mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT) {
            fwrite(&k.mv_size, sizeof k.mv_size, 1, h);
            fwrite(k.mv_data, 1, k.mv_size, h);
            fwrite(&v.mv_size, sizeof v.mv_size, 1, h);
            fwrite(v.mv_data, 1, v.mv_size, h);
        }
        mdb_cursor_close(c);
    }
    cr_assert_eq(fclose(h), 0);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return buf;
}

/* The sweep is a deterministic function of (store, command): the same commands
 * on two copies give the same bytes. */
Test(store, expire_gives_the_same_data_on_two_copies)
{
    char dir2[128];
    snprintf(dir2, sizeof dir2, "%s/db2", g_base);
    char *d[2];
    size_t n[2];
    for (int r = 0; r < 2; r++) {
        g_s = open_at(r ? dir2 : g_dir, 0);
        expiring_store();
        ph_cmd c = expire_step(NOW + 2000, 2);
        ph_cmd_clear(&c);
        order_ok("mall", "E-2", IQ, 1);
        c = expire_step(NOW + 6000, 0);
        cr_assert_eq(c.expired_codes, 7); /* 3 + 2 of IQ's first two batches, 2 of TX */
        ph_cmd_clear(&c);
        assert_check();
        ph_store_close(g_s);
        g_s = NULL;
        d[r] = dump_store(r ? dir2 : g_dir, &n[r]);
    }
    cr_assert_eq(n[0], n[1], "the two copies differ in size");
    cr_assert(memcmp(d[0], d[1], n[0]) == 0, "the two copies differ");
    free(d[0]);
    free(d[1]);
}

Test(store, check_detects_an_expiring_code_missing_from_the_expiry_index)
{
    open_store();
    catalog();
    import_range(IQ, 0, 3, 1000, NOW + 1000);
    assert_check();
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi ex = raw_dbi(txn, "expiry", MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP);
    MDB_cursor *c;
    MDB_val k, v;
    cr_assert_eq(mdb_cursor_open(txn, ex, &c), 0);
    cr_assert_eq(mdb_cursor_get(c, &k, &v, MDB_FIRST), 0);
    cr_assert_eq(mdb_cursor_get(c, &k, &v, MDB_NEXT), 0); /* code 2 */
    cr_assert_eq(mdb_cursor_del(c, 0), 0);
    mdb_cursor_close(c);
    raw_commit(env, txn);

    char msg[512];
    assert_check_fails(msg, sizeof msg);
    cr_assert_not_null(strstr(msg, "code 2"), "message does not name the code: %s", msg);
    cr_assert_not_null(strstr(msg, "expiry index"), "%s", msg);
}

/* One client's events (ph_store_event_scan): its orders' only, matched on the
 * whole name ("mall" is inside "othermall"), never an event about no order,
 * in bounded scans that say where to go on. */
Test(store, event_scan_keeps_a_clients_order_events_within_its_budget)
{
    g_s = open_at(g_dir, 0);
    const char *const all[] = {P_IQ, P_TOPUP, P_OLD};
    ph_err err = {0};
    cr_assert_eq(put_products(all, 3, &err), PH_OK, "%s", err.msg);
    import_range(IQ, 1, 6, 1980, 0);
    uint64_t mine[3];
    for (int i = 0; i < 3; i++) {
        char coid[16];
        snprintf(coid, sizeof coid, "M-%d", i);
        mine[i] = order_ok("mall", coid, IQ, 1);
        snprintf(coid, sizeof coid, "O-%d", i);
        order_ok("othermall", coid, IQ, 1);
    }
    char **list;
    size_t n;
    uint64_t next;
    int more;
    cr_assert_eq(ph_store_event_scan(g_s, "mall", 0, 100, 0, &list, &n, &next, &more, &err), PH_OK,
                 "%s", err.msg);
    cr_assert_eq(n, 3);
    cr_assert_eq(more, 0);
    uint64_t last_seq = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *ev = json_loads(list[i], 0, NULL);
        cr_assert_str_eq(ev_str(ev, "client"), "mall", "%s", list[i]);
        cr_assert_eq((uint64_t)ev_int(ev, "order_id"), mine[i], "%s", list[i]);
        last_seq = (uint64_t)ev_int(ev, "seq");
        json_decref(ev);
    }
    ph_store_event_list_free(list, n);
    cr_assert_geq(next, last_seq, "the scan went to the end");

    /* a budget of 2 examines 2 events: the products and the batch come first */
    cr_assert_eq(ph_store_event_scan(g_s, "mall", 0, 100, 2, &list, &n, &next, &more, &err), PH_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(next, 2);
    cr_assert_eq(more, 1);
    ph_store_event_list_free(list, n);
    /* paging on from next_after finds the same three, and ends */
    size_t found = 0, pages = 0;
    uint64_t after = 0;
    do {
        cr_assert_eq(ph_store_event_scan(g_s, "mall", after, 100, 2, &list, &n, &next, &more, &err),
                     PH_OK);
        cr_assert_leq(next - after, 2, "at most the budget examined");
        found += n;
        ph_store_event_list_free(list, n);
        after = next;
        cr_assert_lt(++pages, 100);
    } while (more);
    cr_assert_eq(found, 3);

    /* no client: every event, limit-bounded */
    cr_assert_eq(ph_store_event_scan(g_s, NULL, 0, 3, 0, &list, &n, &next, &more, &err), PH_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(next, 3);
    cr_assert_eq(more, 1);
    ph_store_event_list_free(list, n);
    /* a client with no orders: nothing, to the end */
    cr_assert_eq(ph_store_event_scan(g_s, "nobody", 0, 100, 0, &list, &n, &next, &more, &err),
                 PH_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(more, 0);
    ph_store_event_list_free(list, n);
}
