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

TestSuite(webhook_store, .init = fixture_setup, .fini = fixture_teardown);

static int wh(int type, const char *ep, const char *json, uint64_t *count, ph_err *err)
{
    ph_cmd c = {.type = type, .now = NOW};
    c.in.wh.endpoint = ep;
    c.in.wh.json = json;
    int rc = ph_store_exec(g_s, &c);
    if (count)
        *count = c.wh_count;
    if (err)
        *err = c.err;
    ph_cmd_clear(&c);
    return rc;
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

Test(webhook_store, deliveries_chain_per_order_and_answers_move_them)
{
    g_s = open_at(g_dir, 0);
    ph_err err = {0};
    uint64_t n = 0;
    ph_wh_endpoint_state st0;
    cr_assert_eq(ph_store_wh_endpoint_get(g_s, "a", &st0, &err), PH_ENOTFOUND);
    /* events 1..6: orders 7 and 8 interleaved, one product event */
    cr_assert_eq(wh(PH_CMD_WH_CREATE, "a",
                    "{\"cursor_from\":0,\"cursor_to\":6,\"deliveries\":[[1,\"order.accepted\",7],"
                    "[2,\"order.accepted\",8],[4,\"order.succeeded\",7],[5,\"stock.low\",0],"
                    "[6,\"order.failed\",8]]}",
                    &n, &err),
                 PH_OK, "%s", err.msg);
    cr_assert_eq(n, 5);
    /* a second pass from a stale cursor changes nothing */
    cr_assert_eq(wh(PH_CMD_WH_CREATE, "a",
                    "{\"cursor_from\":0,\"cursor_to\":6,\"deliveries\":[[1,\"order.accepted\",7]]}",
                    NULL, &err),
                 PH_ECONFLICT);
    cr_assert_eq(wh(PH_CMD_WH_CREATE, "a",
                    "{\"cursor_from\":6,\"cursor_to\":9,\"deliveries\":[[9,\"order.x\",7],"
                    "[8,\"order.y\",7]]}",
                    NULL, &err),
                 PH_EINVAL, "seqs must ascend");
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
    cr_assert_eq(
        wh(PH_CMD_WH_CREATE, "b",
           "{\"cursor_from\":0,\"cursor_to\":6,\"deliveries\":[[4,\"order.succeeded\",7]]}", NULL,
           &err),
        PH_OK, "%s", err.msg);
    d = pending("b", &cnt);
    cr_assert_eq(d[0].previous, 0);
    free(d);

    cr_assert_eq(wh(PH_CMD_WH_RESULT, NULL,
                    "{\"results\":[{\"endpoint\":\"a\",\"seq\":1,\"status\":204,\"error\":\"\","
                    "\"outcome\":\"delivered\",\"next_at\":0},"
                    "{\"endpoint\":\"a\",\"seq\":2,\"status\":503,\"error\":\"\","
                    "\"outcome\":\"retry\",\"next_at\":1700000009000},"
                    "{\"endpoint\":\"a\",\"seq\":5,\"status\":0,\"error\":\"connect refused\","
                    "\"outcome\":\"dead\",\"next_at\":0},"
                    "{\"endpoint\":\"a\",\"seq\":1,\"status\":204,\"error\":\"\","
                    "\"outcome\":\"delivered\",\"next_at\":0}]}",
                    &n, &err),
                 PH_OK, "%s", err.msg);
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
    cr_assert_eq(wh(PH_CMD_WH_RESULT, NULL,
                    "{\"results\":[{\"endpoint\":\"a\",\"seq\":4,\"status\":410,\"error\":\"\","
                    "\"outcome\":\"gone\",\"next_at\":0}]}",
                    NULL, &err),
                 PH_OK, "%s", err.msg);
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

    /* replay: delivered 1 and dead 5 pending again; pending ones untouched */
    cr_assert_eq(wh(PH_CMD_WH_REPLAY, "a", "{\"from_seq\":1,\"to_seq\":6}", &n, &err), PH_OK, "%s",
                 err.msg);
    cr_assert_eq(n, 2);
    st = ep_state("a");
    cr_assert_eq(st.pending, 5);
    cr_assert_eq(st.delivered, 0);
    cr_assert_eq(st.dead, 0);
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
