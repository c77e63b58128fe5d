/*
 * test_webhook_store.c — the store's webhook records (store_webhooks.c):
 * PH_CMD_WH_CREATE moves the cursor with the deliveries (and refuses a stale
 * cursor), `previous` chains an order's deliveries per endpoint, answers move
 * deliveries and counters, 410 disables until WH_ENABLE, replay re-opens
 * delivered and dead ones; a reopen keeps all of it; --check-store agrees.
 * The event seqs are the commands' own (the store does not check that events
 * exist: the delivery thread read them).
 */
#include "store_fixture.h"

#include "crypto/wipe_alloc.h"

TestSuite(webhook_store, .init = fixture_setup, .fini = fixture_teardown);

static int run(ph_cmd *c, uint64_t *count, ph_err *err)
{
    int rc = ph_store_exec(g_s, c);
    if (count)
        *count = c->wh_count;
    if (err)
        *err = c->err;
    ph_cmd_clear(c);
    return rc;
}

static int wh(int type, const char *ep, const char *json, uint64_t *count, ph_err *err)
{
    ph_cmd c = {.type = type, .now = NOW};
    c.in.wh.endpoint = ep;
    c.in.wh.json = json;
    return run(&c, count, err);
}

static int wh_create(const char *ep, uint64_t from, uint64_t to, const ph_wh_new *d, size_t n,
                     uint64_t *count, ph_err *err)
{
    ph_cmd c = {.type = PH_CMD_WH_CREATE, .now = NOW};
    c.in.wh.endpoint = ep;
    c.in.wh.cursor_from = from;
    c.in.wh.cursor_to = to;
    c.in.wh.dels = d;
    c.in.wh.ndels = n;
    return run(&c, count, err);
}

static int wh_result(const ph_wh_answer *a, size_t n, uint64_t *count, ph_err *err)
{
    ph_cmd c = {.type = PH_CMD_WH_RESULT, .now = NOW};
    c.in.wh.answers = a;
    c.in.wh.nanswers = n;
    return run(&c, count, err);
}

static ph_wh_endpoint_state ep_state(const char *ep)
{
    ph_wh_endpoint_state st;
    ph_err err = {0};
    cr_assert_eq(ph_store_wh_endpoint_get(g_s, ep, &st, &err), PH_OK, "%s", err.msg);
    return st;
}

static ph_wh_delivery *pending(const char *ep, size_t *n)
{
    ph_wh_delivery *list;
    ph_err err = {0};
    cr_assert_eq(ph_store_wh_pending(g_s, ep, 0, 1000, &list, n, &err), PH_OK, "%s", err.msg);
    return list;
}

/* Whether the attempt log holds attempt no of ep's delivery seq (closes and
 * reopens g_s). */
static int attempt_logged(const char *ep, uint64_t seq, uint32_t no)
{
    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi dbi = raw_dbi(txn, "wh_attempts", 0);
    uint8_t kb[PH_SKU_MAX + 13];
    size_t el = strlen(ep);
    memcpy(kb, ep, el);
    kb[el] = 0;
    for (int i = 7; i >= 0; i--, seq >>= 8)
        kb[el + 1 + i] = (uint8_t)seq;
    for (int i = 3; i >= 0; i--, no >>= 8)
        kb[el + 9 + i] = (uint8_t)no;
    MDB_val k = {el + 13, kb}, v;
    int found = mdb_get(txn, dbi, &k, &v) == 0;
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
    return found;
}

Test(webhook_store, deliveries_chain_per_order_and_answers_move_them)
{
    g_s = open_at(g_dir, 0);
    ph_err err = {0};
    uint64_t n = 0;
    ph_wh_endpoint_state st0;
    cr_assert_eq(ph_store_wh_endpoint_get(g_s, "a", &st0, &err), PH_ENOTFOUND);
    /* events 1..6: orders 7 and 8 interleaved, one product event */
    const ph_wh_new d6[] = {{1, 7, "order.accepted"},
                            {2, 8, "order.accepted"},
                            {4, 7, "order.succeeded"},
                            {5, 0, "stock.low"},
                            {6, 8, "order.failed"}};
    cr_assert_eq(wh_create("a", 0, 6, d6, 5, &n, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(n, 5);
    /* a second pass from a stale cursor changes nothing */
    cr_assert_eq(wh_create("a", 0, 6, d6, 1, NULL, &err), PH_ECONFLICT);
    const ph_wh_new bad[] = {{9, 7, "order.x"}, {8, 7, "order.y"}};
    cr_assert_eq(wh_create("a", 6, 9, bad, 2, NULL, &err), PH_EINVAL, "seqs must ascend");
    const ph_wh_new notype[] = {{7, 7, ""}};
    cr_assert_eq(wh_create("a", 6, 9, notype, 1, NULL, &err), PH_EINVAL, "a type is needed");
    cr_assert_eq(wh_create("a", 9, 6, NULL, 0, NULL, &err), PH_EINVAL, "cursors backwards");
    size_t cnt;
    ph_wh_delivery *d = pending("a", &cnt);
    cr_assert_eq(cnt, 5);
    uint64_t prev[] = {0, 0, 1, 0, 2}; /* 4 follows 1 (order 7), 6 follows 2 (order 8) */
    for (size_t i = 0; i < cnt; i++)
        cr_assert_eq(d[i].previous, prev[i], "seq %llu", (unsigned long long)d[i].seq);
    free(d);
    ph_wh_endpoint_state st = ep_state("a");
    cr_assert_eq(st.cursor, 6);
    cr_assert_eq(st.pending, 5);
    /* the same events for another endpoint chain on their own */
    cr_assert_eq(wh_create("b", 0, 6, &d6[2], 1, NULL, &err), PH_OK, "%s", err.msg);
    d = pending("b", &cnt);
    cr_assert_eq(d[0].previous, 0);
    free(d);

    const ph_wh_answer ans[] = {
        {.endpoint = "a", .error = "", .seq = 1, .status = 204, .outcome = PH_WH_OUT_DELIVERED},
        {.endpoint = "a",
         .error = "",
         .seq = 2,
         .status = 503,
         .outcome = PH_WH_OUT_RETRY,
         .next_at = 1700000009000},
        {.endpoint = "a", .error = "connect refused", .seq = 5, .outcome = PH_WH_OUT_DEAD},
        {.endpoint = "a", .error = "", .seq = 1, .status = 204, .outcome = PH_WH_OUT_DELIVERED}};
    cr_assert_eq(wh_result(ans, 4, &n, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(n, 3, "the duplicate answer is skipped");
    st = ep_state("a");
    cr_assert_eq(st.pending, 3);
    cr_assert_eq(st.delivered, 1);
    cr_assert_eq(st.dead, 1);
    cr_assert_eq(st.failing, 1);
    d = pending("a", &cnt);
    cr_assert_eq(cnt, 3);
    cr_assert_eq(d[0].seq, 2);
    cr_assert_eq(d[0].attempts, 1);
    cr_assert_eq(d[0].next_at, 1700000009000LL);
    cr_assert_eq(d[0].last_status, 503);
    free(d);

    /* 410: the endpoint is disabled, the delivery stays pending; a restart keeps it */
    const ph_wh_answer gone = {.endpoint = "a", .seq = 4, .status = 410, .outcome = PH_WH_OUT_GONE};
    cr_assert_eq(wh_result(&gone, 1, NULL, &err), PH_OK, "%s", err.msg);
    const ph_wh_answer junk[] = {{.endpoint = "a", .seq = 4, .outcome = 9},
                                 {.endpoint = NULL, .seq = 4, .outcome = PH_WH_OUT_RETRY}};
    cr_assert_eq(wh_result(&junk[0], 1, NULL, &err), PH_EINVAL, "an unknown outcome");
    cr_assert_eq(wh_result(&junk[1], 1, NULL, &err), PH_EINVAL, "no endpoint");
    reopen();
    st = ep_state("a");
    cr_assert_eq(st.disabled, 1);
    cr_assert_eq(st.pending, 3);
    uint64_t gen = st.gen;
    cr_assert_eq(wh(PH_CMD_WH_ENABLE, "a", NULL, NULL, &err), PH_OK, "%s", err.msg);
    st = ep_state("a");
    cr_assert_eq(st.disabled, 0);
    cr_assert_gt(st.gen, gen, "the delivery thread must read the endpoint again");
    cr_assert_eq(wh(PH_CMD_WH_ENABLE, "nope", NULL, NULL, &err), PH_ENOTFOUND);

    /* a first attempt that delivered is its delivery's record alone; any
     * other attempt has its row */
    cr_assert(!attempt_logged("a", 1, 1));
    cr_assert(attempt_logged("a", 2, 1));
    cr_assert(attempt_logged("a", 5, 1));
    /* replay: delivered 1 and dead 5 pending again; pending ones untouched */
    cr_assert_eq(wh(PH_CMD_WH_REPLAY, "a", "{\"from_seq\":1,\"to_seq\":6}", &n, &err), PH_OK, "%s",
                 err.msg);
    cr_assert_eq(n, 2);
    st = ep_state("a");
    cr_assert_eq(st.pending, 5);
    cr_assert_eq(st.delivered, 0);
    cr_assert_eq(st.dead, 0);
    cr_assert(attempt_logged("a", 1, 1),
              "the replay wrote the first attempt's row from the record");
    cr_assert_eq(wh(PH_CMD_WH_REPLAY, "a", "{\"seq\":3}", &n, &err), PH_ENOTFOUND);
    cr_assert_eq(wh(PH_CMD_WH_REPLAY, "a", "{\"from_seq\":5,\"to_seq\":1}", &n, &err), PH_EINVAL);
    assert_check();

    /* what the deliveries list shows */
    ph_wh_delivery *all;
    uint64_t next;
    int more;
    cr_assert_eq(
        ph_store_wh_deliveries(g_s, "a", PH_WH_PENDING, 0, 2, &all, &cnt, &next, &more, &err),
        PH_OK);
    cr_assert_eq(cnt, 2);
    cr_assert_eq(more, 1);
    cr_assert_eq(next, 2);
    free(all);
}

Test(webhook_store, delivery_ids_round_trip)
{
    char id[PH_WH_ID_MAX];
    ph_wh_delivery_id("mall-orders", 977, id);
    cr_assert_str_eq(id, "wh_mall-orders_977");
    cr_assert_eq(ph_wh_delivery_seq("mall-orders", id), 977);
    cr_assert_eq(ph_wh_delivery_seq("mall", id), 0, "another endpoint's id");
    cr_assert_eq(ph_wh_delivery_seq("mall-orders", "wh_mall-orders_"), 0);
    cr_assert_eq(ph_wh_delivery_seq("mall-orders", "wh_mall-orders_01"), 0);
    cr_assert_eq(ph_wh_delivery_seq("mall-orders", "wh_mall-orders_9x"), 0);
}

/* The endpoint record is printed and scanned by hand on the writer's path: its
 * text stays what jansson writes (compact, the documented keys in order), and
 * a record in any other JSON form still reads the same. */
Test(webhook_store, endpoint_record_is_canonical_json_and_any_form_reads)
{
    g_s = open_at(g_dir, 0);
    ph_err err = {0};
    const ph_wh_new d[] = {{1, 7, "order.accepted"}, {2, 8, "order.accepted"}};
    cr_assert_eq(wh_create("a", 0, 3, d, 2, NULL, &err), PH_OK, "%s", err.msg);
    const ph_wh_answer ans[] = {
        {.endpoint = "a", .seq = 1, .status = 503, .outcome = PH_WH_OUT_RETRY, .next_at = NOW + 5},
        {.endpoint = "a", .seq = 2, .status = 204, .outcome = PH_WH_OUT_DELIVERED},
        {.endpoint = "a", .seq = 1, .status = 410, .outcome = PH_WH_OUT_GONE}};
    cr_assert_eq(wh_result(ans, 3, NULL, &err), PH_OK, "%s", err.msg);
    ph_wh_endpoint_state st = ep_state("a");
    cr_assert(st.disabled && st.cursor == 3 && st.pending == 1 && st.failing == 1 &&
              st.delivered == 1 && st.last_success_at == NOW && st.disabled_at == NOW);

    ph_store_close(g_s);
    g_s = NULL;
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi dbi = raw_dbi(txn, "wh_endpoints", 0);
    MDB_val k = {1, "a"}, v;
    cr_assert_eq(mdb_get(txn, dbi, &k, &v), 0);
    json_t *j = json_loadb(v.mv_data, v.mv_size, 0, NULL);
    cr_assert(json_is_object(j));
    char *canon = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    cr_assert_eq(strlen(canon), v.mv_size);
    cr_assert(!memcmp(canon, v.mv_data, v.mv_size), "%.*s", (int)v.mv_size, (char *)v.mv_data);
    ph_json_free(canon);
    char *other = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    v = (MDB_val){strlen(other), other};
    cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    ph_json_free(other);
    raw_commit(env, txn);
    g_s = open_at(g_dir, 0);
    ph_wh_endpoint_state st2 = ep_state("a");
    cr_assert(st.cursor == st2.cursor && st.disabled == st2.disabled &&
                  st.disabled_at == st2.disabled_at && st.gen == st2.gen &&
                  st.pending == st2.pending && st.failing == st2.failing && st.dead == st2.dead &&
                  st.delivered == st2.delivered && st.last_success_at == st2.last_success_at &&
                  st.last_failure_at == st2.last_failure_at,
              "another form of the record reads differently");
    /* and the writer reads it too (a further answer moves it) */
    const ph_wh_answer more = {.endpoint = "a", .seq = 1, .status = 503, .outcome = PH_WH_OUT_DEAD};
    cr_assert_eq(wh_result(&more, 1, NULL, &err), PH_OK, "%s", err.msg);
    st2 = ep_state("a");
    cr_assert_eq(st2.dead, 1);
    cr_assert_eq(st2.pending, 0);
    assert_check();
}
