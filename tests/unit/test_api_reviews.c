/*
 * test_api_reviews.c — the review queue through real requests (issue 15):
 * held orders listed by GET /v1/reviews, released (from stock, or to the
 * recharge's supplier with the account it was placed with) and blocked by
 * POST /v1/reviews/{id}/release|block, each with its events and its audit
 * record; a second decision is 409, a missing order 404, a mall 403. The
 * daemon runs in this process (ph_http_serve_offline, as test_http_api.c);
 * the held orders are stored directly, as the order path stores them once
 * a rule says review (the engine's side: tests/e2e/test_risk_orders.c).
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "http/http_api.h"
#include "store/store.h"
#include "supply/fulfil.h"

#include "offline_daemon.h"

/* Stores a held order the way the order path does for a review verdict. */
static uint64_t held(const char *coid, const char *sku)
{
    char rec[256];
    int n = snprintf(rec, sizeof rec,
                     "{\"v\":1,\"at\":1,\"sku\":\"%s\",\"tags\":[],\"amount\":3000,\"keys\":{},"
                     "\"end_user\":{\"id\":\"ab****yz\"},\"decision\":{\"action\":\"review\","
                     "\"rule\":\"per-user\",\"hits\":[]}}",
                     sku);
    ph_order_risk rk = {.verdict = PH_VERDICT_HOLD,
                        .rule = "per-user",
                        .hold_until = 4102444800000LL,
                        .record = rec,
                        .record_len = (size_t)n};
    ph_cmd c = {.now = 1765000000000LL};
    int recharge = !strcmp(sku, "test.topup");
    uint8_t sealed[64];
    uint32_t slen = 0;
    char masked[32];
    if (recharge) {
        c.type = PH_CMD_SUPPLY_CREATE;
        c.in.supply.client = "mall";
        c.in.supply.client_order_id = coid;
        c.in.supply.sku = sku;
        c.in.supply.quantity = 1;
        c.in.supply.delivery = 2; /* recharge */
        cr_assert_eq(ph_fulfil_seal_account(D.fulfil, "13800000006", sealed, &slen, masked), PH_OK);
        c.in.supply.account_sealed = sealed;
        c.in.supply.account_sealed_len = slen;
        c.in.supply.account_masked = masked;
        c.in.supply.risk = &rk;
    } else {
        c.type = PH_CMD_ORDER;
        c.in.order.client = "mall";
        c.in.order.client_order_id = coid;
        c.in.order.sku = sku;
        c.in.order.quantity = 1;
        c.in.order.risk = &rk;
    }
    cr_assert_eq(ph_store_exec(D.store, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_HELD);
    uint64_t id = c.order->id;
    ph_cmd_clear(&c);
    return id;
}

/* The events after seq `after`, as ops read them. */
static json_t *events_after(long long after)
{
    char url[64];
    json_t *j;
    snprintf(url, sizeof url, "/v1/events?after=%lld", after);
    cr_assert_eq(serve("GET", url, H(OPS), NULL, &j), 200);
    json_t *evs = json_incref(json_object_get(j, "events"));
    json_decref(j);
    return evs;
}

static long long last_seq(void)
{
    json_t *evs = events_after(0);
    long long seq = (long long)json_integer_value(
        json_object_get(json_array_get(evs, json_array_size(evs) - 1), "seq"));
    json_decref(evs);
    return seq;
}

/* The type of the i-th event about order id (the released recharge's attempt
 * events interleave, from fulfil's thread); "" past the last. */
static const char *type_of(json_t *evs, uint64_t id, size_t i)
{
    json_t *e;
    size_t k;
    json_array_foreach(evs, k, e)
    {
        if (json_integer_value(json_object_get(e, "order_id")) != (json_int_t)id)
            continue;
        if (i-- == 0)
            return json_string_value(json_object_get(e, "type"));
    }
    return "";
}

static int audited(const char *action, uint64_t id)
{
    json_t *j;
    cr_assert_eq(serve("GET", "/v1/audit", H(OPS), NULL, &j), 200);
    json_t *a;
    size_t i;
    int n = 0;
    json_array_foreach(json_object_get(j, "audit"), i, a)
    {
        json_t *what = json_object_get(a, "what");
        n += !strcmp(json_string_value(json_object_get(a, "action")), action) &&
             json_integer_value(json_object_get(what, "order_id")) == (json_int_t)id &&
             !strcmp(json_string_value(json_object_get(a, "client")), "ops");
    }
    json_decref(j);
    return n;
}

Test(api_reviews, held_orders_are_listed_released_and_blocked, .init = daemon_up,
     .fini = daemon_down)
{
    json_t *j;
    cr_assert_eq(serve("POST", "/v1/batches?supplier=acme&sku=test.card&unit_cost=19.80",
                       H(OPS, "Content-Type: text/csv"), "code\nREV-1\n", &j),
                 201);
    json_decref(j);
    uint64_t card = held("R-1", "test.card"), topup = held("R-2", "test.topup"),
             third = held("R-3", "test.card");
    cr_assert_eq(serve("GET", "/v1/reviews", H(OPS), NULL, &j), 200);
    json_t *list = json_object_get(j, "reviews");
    cr_assert_eq(json_array_size(list), 3);
    json_t *first = json_array_get(list, 0);
    cr_assert_eq(json_integer_value(json_object_get(first, "order_id")), (json_int_t)card);
    cr_assert_str_eq(str_at(first, "rule", NULL), "per-user");
    cr_assert_str_eq(str_at(first, "state", NULL), "held");
    cr_assert_str_eq(str_at(first, "end_user", "id"), "ab****yz");
    cr_assert_str_eq(str_at(first, "hold_until", NULL), "2100-01-01T00:00:00.000Z");
    json_decref(j);
    cr_assert_eq(serve("GET", "/v1/reviews", H(FULFILL), NULL, NULL), 403);

    /* release from stock: the one code */
    long long seq = last_seq();
    char url[64];
    snprintf(url, sizeof url, "/v1/reviews/%llu/release", (unsigned long long)card);
    cr_assert_eq(serve("POST", url, H(OPS), "{\"note\":\"known customer\"}", &j), 200);
    cr_assert_str_eq(str_at(j, "order", "state"), "succeeded");
    json_decref(j);
    json_t *evs = events_after(seq);
    cr_assert_str_eq(type_of(evs, card, 0), "order.released");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(evs, 0), "by")), "ops");
    cr_assert_str_eq(type_of(evs, card, 1), "order.succeeded");
    cr_assert_str_eq(type_of(evs, card, 2), "");
    json_decref(evs);
    cr_assert_eq(audited("review.release", card), 1);
    snprintf(url, sizeof url, "/v1/orders/%llu", (unsigned long long)card);
    cr_assert_eq(serve("GET", url, H(OPS), NULL, &j), 200);
    json_t *review =
        json_object_get(json_object_get(json_object_get(j, "order"), "risk"), "review");
    cr_assert_str_eq(str_at(review, "outcome", NULL), "released");
    cr_assert_str_eq(str_at(review, "note", NULL), "known customer");
    json_decref(j);

    /* a second decision is refused, and changes nothing */
    snprintf(url, sizeof url, "/v1/reviews/%llu/block", (unsigned long long)card);
    cr_assert_eq(serve("POST", url, H(OPS), NULL, &j), 409);
    cr_assert_str_eq(str_at(j, "message", NULL), "order 1 is succeeded, not held");
    json_decref(j);
    cr_assert_eq(audited("review.block", card), 0, "a refused action leaves no audit record");
    cr_assert_eq(serve("POST", "/v1/reviews/999/block", H(OPS), NULL, NULL), 404);

    /* release a recharge: to its supplier, with the account it was placed with */
    snprintf(url, sizeof url, "/v1/reviews/%llu/release", (unsigned long long)topup);
    cr_assert_eq(serve("POST", url, H(OPS), NULL, &j), 200);
    cr_assert_str_eq(str_at(j, "order", "state"), "processing");
    cr_assert_str_eq(str_at(j, "order", "account"), "138****0006");
    json_decref(j);

    /* block */
    seq = last_seq();
    snprintf(url, sizeof url, "/v1/reviews/%llu/block", (unsigned long long)third);
    cr_assert_eq(serve("POST", url, H(OPS), "{\"note\":\"farm\"}", &j), 200);
    cr_assert_str_eq(str_at(j, "order", "state"), "failed");
    cr_assert_str_eq(str_at(j, "order", "reason"), "blocked_by_review");
    json_decref(j);
    evs = events_after(seq);
    cr_assert_str_eq(type_of(evs, third, 0), "order.blocked");
    cr_assert_str_eq(type_of(evs, third, 1), "order.failed");
    json_decref(evs);
    cr_assert_eq(audited("review.block", third), 1);
    cr_assert_eq(serve("GET", "/v1/reviews", H(OPS), NULL, &j), 200);
    cr_assert_eq(json_array_size(json_object_get(j, "reviews")), 0);
    json_decref(j);
    /* a bad note is named */
    cr_assert_eq(serve("POST", "/v1/reviews/2/block", H(OPS), "{\"note\":7}", &j), 400);
    cr_assert_str_eq(str_at(j, "message", NULL), "note: expected a string of 1 to 256 bytes");
    json_decref(j);
}
