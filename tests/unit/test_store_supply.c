/*
 * test_store_supply.c — supplier-fulfilled orders in the LMDB store
 * (core/store/store.h: PH_CMD_SUPPLY_CREATE, PH_CMD_ATTEMPT, ph_store_pending_list,
 * ph_store_uid).
 *
 * Every command goes through the real writer into a fresh environment under
 * /tmp; each test ends with ph_store_check, and the corruption tests plant a
 * violation with raw LMDB to prove the checker sees it.
 *
 * Codes are stored as the opaque blobs "sealed-<n>" with keyed hashes
 * SHA-256("CODE-<n>"); the recharge account as the blob "sealed-account" with
 * the mask "138****8000". No event may contain any of them.
 */

#include <sched.h>
#include <semaphore.h>

#include "config/config.h"
#include "store/store.h"
#include "store_fixture.h"   /* criterion, lmdb, jansson, the catalog, setup */
#include "store/store_int.h" /* record layouts, for the corruption tests only */

#define ACCOUNT_SEALED "sealed-account"
#define ACCOUNT_MASKED "138****8000"

/* ---- fixture ------------------------------------------------------------------ */

TestSuite(supply, .init = fixture_setup, .fini = fixture_teardown);

/* Opens the store with the catalog: a card SKU, a recharge SKU, a delisted one. */
static void start(void)
{
    g_s = open_at(g_dir, 0);
    const char *const all[] = {P_IQ, P_TOPUP, P_OLD};
    ph_err err = {0};
    cr_assert_eq(put_products(all, 3, &err), PH_OK, "put products: %s", err.msg);
}

/* ---- commands ------------------------------------------------------------------- */

/* A SUPPLY_CREATE for a card order (or a recharge one for TOPUP) at supplier
 * (NULL: no offer). The strings must outlive the command. */
static void create_cmd(ph_cmd *c, const char *coid, const char *sku, uint32_t qty,
                       const char *supplier)
{
    memset(c, 0, sizeof *c);
    c->type = PH_CMD_SUPPLY_CREATE;
    c->now = NOW;
    c->in.supply.client = "mall";
    c->in.supply.client_order_id = coid;
    c->in.supply.sku = sku;
    c->in.supply.quantity = qty;
    fingerprint(sku, qty, c->in.supply.fingerprint);
    int recharge = strcmp(sku, TOPUP) == 0;
    c->in.supply.delivery = recharge ? PH_DELIVERY_RECHARGE : PH_DELIVERY_CARD_CODE;
    if (recharge) {
        c->in.supply.account_sealed = (const uint8_t *)ACCOUNT_SEALED;
        c->in.supply.account_sealed_len = (uint32_t)strlen(ACCOUNT_SEALED);
        c->in.supply.account_masked = ACCOUNT_MASKED;
    }
    c->in.supply.first = (ph_attempt_target){supplier, supplier ? "P-100" : NULL, 1500};
    c->in.supply.fail_reason = supplier ? NULL : "no_offer";
}

/* Creates an order that must be accepted; returns its id. */
static uint64_t create_ok(const char *coid, const char *sku, uint32_t qty, const char *supplier)
{
    ph_cmd c;
    create_cmd(&c, coid, sku, qty, supplier);
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "create %s: %s", coid, c.err.msg);
    cr_assert_not_null(c.order);
    cr_assert_eq(c.replayed, 0);
    uint64_t id = c.order->id;
    ph_cmd_clear(&c);
    return id;
}

/* An ATTEMPT that keeps everything but the state. */
static void attempt_cmd(ph_cmd *c, uint64_t order, uint32_t no, int state)
{
    memset(c, 0, sizeof *c);
    c->type = PH_CMD_ATTEMPT;
    c->now = NOW + 1000;
    c->in.attempt.order_id = order;
    c->in.attempt.no = no;
    c->in.attempt.state = state;
    c->in.attempt.step = -1;
    c->in.attempt.charged = -1;
    c->in.attempt.next_check_at = -1;
}

static int attempt(uint64_t order, uint32_t no, int state, const char *reason)
{
    ph_cmd c;
    attempt_cmd(&c, order, no, state);
    c.in.attempt.reason = reason;
    int rc = ph_store_exec(g_s, &c);
    ph_cmd_clear(&c);
    return rc;
}

/* Supplied codes numbered nums[0..n): blobs "sealed-<n>", hashes of "CODE-<n>". */
typedef struct supplied {
    ph_supplied_code codes[8];
    char blobs[8][24];
} supplied;

static void supply_codes(supplied *s, const unsigned *nums, size_t n)
{
    cr_assert_leq(n, 8);
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(s->blobs[i], sizeof s->blobs[i], "sealed-%u", nums[i]);
        s->codes[i] =
            (ph_supplied_code){.sealed_len = (uint32_t)len, .sealed = (const uint8_t *)s->blobs[i]};
        code_hash(nums[i], s->codes[i].hash);
    }
}

static int succeed_with(uint64_t order, uint32_t no, const unsigned *nums, size_t n, ph_cmd *out)
{
    supplied s;
    supply_codes(&s, nums, n);
    ph_cmd c;
    attempt_cmd(&c, order, no, PH_ATTEMPT_SUCCEEDED);
    c.in.attempt.codes = s.codes;
    c.in.attempt.ncodes = n;
    c.in.attempt.supplier_order_id = "SUP-77";
    int rc = ph_store_exec(g_s, &c);
    if (out)
        *out = c;
    else
        ph_cmd_clear(&c);
    return rc;
}

static int import_code(unsigned num)
{
    ph_import_code ic = {.line = 1, .sealed_len = 0};
    char blob[24];
    ic.sealed_len = (uint32_t)snprintf(blob, sizeof blob, "sealed-%u", num);
    ic.sealed = (const uint8_t *)blob;
    code_hash(num, ic.hash);
    uint32_t by_hash = 0;
    ph_cmd c = {.type = PH_CMD_IMPORT, .now = NOW};
    c.in.import.supplier = "sup-a";
    c.in.import.sku = IQ;
    c.in.import.note = "stock";
    c.in.import.unit_cost = 1000;
    c.in.import.codes = &ic;
    c.in.import.ncodes = 1;
    c.in.import.by_hash = &by_hash;
    int rc = ph_store_exec(g_s, &c);
    ph_cmd_clear(&c);
    return rc;
}

/* ---- reads ------------------------------------------------------------------------ */

static ph_order *get_order(uint64_t id, int with_codes)
{
    ph_order *o = NULL;
    ph_err err = {0};
    cr_assert_eq(ph_store_order_get(g_s, id, with_codes, &o, &err), PH_OK, "order %llu: %s",
                 (unsigned long long)id, err.msg);
    return o;
}

/* Events after seq, parsed; asserts none holds a code or the account in any form
 * (its mask's digits "8000", the word "account"). */
static json_t *events_after(uint64_t after)
{
    static const char *const account[] = {"8000", "account", NULL};
    return events_after_without(after, account);
}

/* The pending order ids, ascending, paged through 2 at a time. */
static size_t pending_ids(uint64_t *ids, size_t cap)
{
    size_t total = 0;
    uint64_t after = 0;
    for (;;) {
        ph_order **list = NULL;
        size_t n = 0;
        ph_err err = {0};
        cr_assert_eq(ph_store_pending_list(g_s, after, 2, &list, &n, &err), PH_OK, "%s", err.msg);
        cr_assert_leq(n, 2);
        for (size_t i = 0; i < n; i++) {
            cr_assert_gt(list[i]->nattempts, 0, "a pending order without attempts");
            cr_assert_null(list[i]->codes);
            cr_assert_lt(total, cap);
            ids[total++] = list[i]->id;
            after = list[i]->id;
        }
        ph_order_list_free(list, n);
        if (!n)
            return total;
    }
}

static void assert_pending(const uint64_t *want, size_t n)
{
    uint64_t got[32];
    size_t m = pending_ids(got, 32);
    cr_assert_eq(m, n, "%zu orders pending, expected %zu", m, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(got[i], want[i], "pending[%zu] = %llu, expected %llu", i,
                     (unsigned long long)got[i], (unsigned long long)want[i]);
}

static void expect_ref(const ph_attempt *a, uint64_t order, uint32_t no)
{
    char want[PH_REF_MAX + 1];
    snprintf(want, sizeof want, "%s-%llu-%u", ph_store_uid(g_s), (unsigned long long)order, no);
    cr_assert_str_eq(a->ref, want);
}

/* Everything an order's reader sees, as one string, for before/after comparisons. */
static char *order_text(uint64_t id)
{
    ph_order *o = get_order(id, 1);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fprintf(f, "%s|%s|%s|%u|%d|%lld|%lld|%lld|%zu|%d|%s|%s|%u|", o->client, o->client_order_id,
            o->sku, o->quantity, o->state, (long long)o->created_at, (long long)o->updated_at,
            (long long)o->cost, o->ncodes, o->delivery, o->reason, o->account_masked,
            o->account_sealed_len);
    for (size_t i = 0; i < o->nattempts; i++) {
        const ph_attempt *a = &o->attempts[i];
        fprintf(f, "[%u %s %s %s %s %d %s %lld %lld %lld %lld %lld %u %s %u]", a->no, a->supplier,
                a->product_id, a->ref, a->supplier_order_id, a->state, a->reason,
                (long long)a->unit_cost, (long long)a->charged, (long long)a->created_at,
                (long long)a->updated_at, (long long)a->next_check_at, a->checks, a->step_state,
                a->step);
    }
    for (size_t i = 0; i < o->ncodes; i++)
        fprintf(f, "{%llu %d}", (unsigned long long)o->codes[i].id, o->codes[i].state);
    fclose(f);
    ph_order_free(o);
    return buf;
}

/* ---- raw LMDB --------------------------------------------------------------------- */

static void assert_check_fails(const char *needle)
{
    g_s = open_at(g_dir, 0);
    ph_err err = {0};
    ph_store_stats st;
    cr_assert_eq(ph_store_check(g_s, &st, &err), PH_EIO, "ph_store_check accepted a corruption");
    cr_assert_not_null(strstr(err.msg, needle), "message lacks '%s': %s", needle, err.msg);
}

/* ================================================================================= */

Test(supply, create_replay_and_conflict)
{
    start();
    uint64_t seq = last_event();
    ph_cmd c;
    create_cmd(&c, "S-1", IQ, 2, "sup-b");
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    ph_order *o = c.order;
    cr_assert_not_null(o);
    cr_assert_eq(c.replayed, 0);
    cr_assert_eq(o->id, 1);
    cr_assert_eq(o->state, PH_ORDER_PROCESSING);
    cr_assert_eq(o->delivery, PH_DELIVERY_CARD_CODE);
    cr_assert_eq(o->quantity, 2);
    cr_assert_eq(o->ncodes, 0);
    cr_assert_eq(o->nattempts, 1);
    const ph_attempt *a = &o->attempts[0];
    cr_assert_eq(a->no, 1);
    cr_assert_eq(a->state, PH_ATTEMPT_SENDING);
    cr_assert_str_eq(a->supplier, "sup-b");
    cr_assert_str_eq(a->product_id, "P-100");
    cr_assert_eq(a->unit_cost, 1500);
    cr_assert_eq(a->charged, -1);
    cr_assert_eq(a->created_at, NOW);
    expect_ref(a, 1, 1);
    ph_cmd_clear(&c);

    json_t *evs = events_after(seq);
    cr_assert_eq(json_array_size(evs), 1);
    json_t *ev = json_array_get(evs, 0);
    cr_assert_str_eq(ev_str(ev, "type"), "order.accepted");
    cr_assert_eq(ev_int(ev, "order_id"), 1);
    cr_assert_str_eq(ev_str(ev, "client"), "mall");
    cr_assert_str_eq(ev_str(ev, "sku"), IQ);
    cr_assert_eq(ev_int(ev, "quantity"), 2);
    cr_assert_str_eq(ev_str(ev, "state"), "processing");
    cr_assert_str_eq(ev_str(ev, "supplier"), "sup-b");
    cr_assert_eq(ev_int(ev, "attempt"), 1);
    json_decref(evs);
    seq = last_event();

    /* the same request again: the same order, nothing written */
    create_cmd(&c, "S-1", IQ, 2, "sup-c");
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.replayed, 1);
    cr_assert_eq(c.order->id, 1);
    cr_assert_eq(c.order->nattempts, 1);
    cr_assert_str_eq(c.order->attempts[0].supplier, "sup-b");
    ph_cmd_clear(&c);
    cr_assert_eq(last_event(), seq);

    /* the same client order id for another quantity: a conflict */
    create_cmd(&c, "S-1", IQ, 3, "sup-b");
    cr_assert_eq(ph_store_exec(g_s, &c), PH_ECONFLICT);
    cr_assert_null(c.order);
    cr_assert_not_null(strstr(c.err.msg, "S-1"), "%s", c.err.msg);
    ph_cmd_clear(&c);
    cr_assert_eq(last_event(), seq);
    uint64_t pend[] = {1};
    assert_pending(pend, 1);

    /* the idempotency index is shared with stock orders */
    ph_order *f = NULL;
    cr_assert_eq(ph_store_order_find(g_s, "mall", "S-1", 0, &f, NULL), PH_OK);
    cr_assert_eq(f->id, 1);
    cr_assert_eq(f->nattempts, 1);
    ph_order_free(f);
    assert_check();
}

Test(supply, unknown_delisted_or_mismatched_sku_is_refused)
{
    start();
    uint64_t seq = last_event();
    ph_cmd c;
    create_cmd(&c, "S-1", "no.such.sku", 1, "sup-b");
    cr_assert_eq(ph_store_exec(g_s, &c), PH_ESKU);
    ph_cmd_clear(&c);
    create_cmd(&c, "S-1", OLD, 1, "sup-b");
    cr_assert_eq(ph_store_exec(g_s, &c), PH_ESKU);
    cr_assert_not_null(strstr(c.err.msg, "not listed"), "%s", c.err.msg);
    ph_cmd_clear(&c);
    /* a card order for a recharge product */
    create_cmd(&c, "S-1", TOPUP, 1, "sup-b");
    c.in.supply.delivery = PH_DELIVERY_CARD_CODE;
    c.in.supply.account_sealed = NULL;
    c.in.supply.account_masked = NULL;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_ESKU, "%s", c.err.msg);
    ph_cmd_clear(&c);
    /* malformed input */
    create_cmd(&c, "S-1", TOPUP, 1, "sup-b");
    c.in.supply.account_sealed = NULL;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_EINVAL, "a recharge without an account");
    ph_cmd_clear(&c);
    create_cmd(&c, "S-1", IQ, 0, "sup-b");
    cr_assert_eq(ph_store_exec(g_s, &c), PH_EINVAL, "quantity 0");
    ph_cmd_clear(&c);
    create_cmd(&c, "S-1", IQ, 1, "bad supplier");
    cr_assert_eq(ph_store_exec(g_s, &c), PH_EINVAL, "a malformed supplier");
    ph_cmd_clear(&c);
    create_cmd(&c, "S-1", IQ, 1, "sup-b");
    c.in.supply.delivery = 7;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_EINVAL, "an unknown delivery");
    ph_cmd_clear(&c);
    cr_assert_eq(last_event(), seq);
    ph_order **list;
    size_t n;
    cr_assert_eq(ph_store_order_list(g_s, NULL, 0, 10, &list, &n, NULL), PH_OK);
    cr_assert_eq(n, 0);
    ph_order_list_free(list, n);
    /* ids were given back: the next order is 1 */
    cr_assert_eq(create_ok("S-2", IQ, 1, "sup-b"), 1);
    assert_check();
}

/* The writer remembers how a SKU is delivered (the memo); a catalog change must be
 * seen by the next supplier order, and a mismatch refused even when remembered. */
Test(supply, a_catalog_change_is_seen_at_once)
{
    start();
    create_ok("M-1", TOPUP, 1, "sup-b"); /* TOPUP is remembered as a recharge */
    ph_cmd c;
    create_cmd(&c, "M-2", TOPUP, 1, "sup-b");
    c.in.supply.delivery = PH_DELIVERY_CARD_CODE;
    c.in.supply.account_sealed = NULL;
    c.in.supply.account_masked = NULL;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_ESKU, "a card order for a remembered recharge SKU");
    cr_assert_not_null(strstr(c.err.msg, "delivered by recharge"), "%s", c.err.msg);
    ph_cmd_clear(&c);
    static const char *const delisted =
        "{\"sku\":\"" TOPUP "\",\"name\":\"Phone top-up 30\",\"brand\":\"carrier\","
        "\"delivery\":\"recharge\",\"face_value\":\"30.00\",\"listed\":false}";
    const char *const all[] = {P_IQ, delisted};
    ph_err perr = {0};
    cr_assert_eq(put_products(all, 2, &perr), PH_OK, "%s", perr.msg);
    create_cmd(&c, "M-3", TOPUP, 1, "sup-b");
    cr_assert_eq(ph_store_exec(g_s, &c), PH_ESKU, "a delisted SKU the writer remembered");
    cr_assert_not_null(strstr(c.err.msg, "not listed"), "%s", c.err.msg);
    ph_cmd_clear(&c);
    assert_check();
}

Test(supply, without_an_offer_the_order_fails_at_once)
{
    start();
    uint64_t seq = last_event();
    uint64_t id = create_ok("S-1", IQ, 1, NULL);
    ph_order *o = get_order(id, 0);
    cr_assert_eq(o->state, PH_ORDER_FAILED);
    cr_assert_eq(o->nattempts, 0);
    cr_assert_str_eq(o->reason, "no_offer");
    ph_order_free(o);
    json_t *evs = events_after(seq);
    cr_assert_eq(json_array_size(evs), 2);
    cr_assert_str_eq(ev_str(json_array_get(evs, 0), "type"), "order.accepted");
    cr_assert_str_eq(ev_str(json_array_get(evs, 0), "state"), "failed");
    cr_assert_null(json_object_get(json_array_get(evs, 0), "supplier"));
    cr_assert_str_eq(ev_str(json_array_get(evs, 1), "type"), "order.failed");
    cr_assert_str_eq(ev_str(json_array_get(evs, 1), "reason"), "no_offer");
    json_decref(evs);
    assert_pending(NULL, 0);
    assert_check();
}

Test(supply, a_failed_attempt_fails_over_then_the_order_fails)
{
    start();
    uint64_t id = create_ok("S-1", IQ, 1, "sup-b");
    uint64_t seq = last_event();
    ph_cmd c;
    attempt_cmd(&c, id, 1, PH_ATTEMPT_FAILED);
    c.in.attempt.reason = "out_of_stock";
    c.in.attempt.next = (ph_attempt_target){"sup-c", "C-9", 1600};
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    ph_order *o = c.order;
    cr_assert_eq(o->state, PH_ORDER_PROCESSING);
    cr_assert_eq(o->nattempts, 2);
    cr_assert_eq(o->attempts[0].state, PH_ATTEMPT_FAILED);
    cr_assert_str_eq(o->attempts[0].reason, "out_of_stock");
    cr_assert_eq(o->attempts[1].no, 2);
    cr_assert_eq(o->attempts[1].state, PH_ATTEMPT_SENDING);
    cr_assert_str_eq(o->attempts[1].supplier, "sup-c");
    cr_assert_str_eq(o->attempts[1].product_id, "C-9");
    cr_assert_eq(o->attempts[1].unit_cost, 1600);
    cr_assert_eq(o->attempts[1].created_at, NOW + 1000);
    expect_ref(&o->attempts[1], id, 2);
    cr_assert_str_eq(o->reason, "");
    ph_cmd_clear(&c);
    uint64_t pend[] = {id};
    assert_pending(pend, 1);

    json_t *evs = events_after(seq);
    cr_assert_eq(json_array_size(evs), 2);
    json_t *e0 = json_array_get(evs, 0), *e1 = json_array_get(evs, 1);
    cr_assert_str_eq(ev_str(e0, "type"), "order.attempt");
    cr_assert_eq(ev_int(e0, "attempt"), 1);
    cr_assert_str_eq(ev_str(e0, "supplier"), "sup-b");
    cr_assert_str_eq(ev_str(e0, "state"), "failed");
    cr_assert_str_eq(ev_str(e0, "reason"), "out_of_stock");
    cr_assert_str_eq(ev_str(e1, "type"), "order.attempt");
    cr_assert_eq(ev_int(e1, "attempt"), 2);
    cr_assert_str_eq(ev_str(e1, "supplier"), "sup-c");
    cr_assert_str_eq(ev_str(e1, "state"), "sending");
    json_decref(evs);
    seq = last_event();

    /* attempt 1 is final now: a late answer for it is refused */
    cr_assert_eq(attempt(id, 1, PH_ATTEMPT_SUCCEEDED, NULL), PH_ESTATE);
    cr_assert_eq(attempt(id, 2, PH_ATTEMPT_PROCESSING, NULL), PH_OK);
    cr_assert_eq(attempt(id, 2, PH_ATTEMPT_FAILED, "invalid_product"), PH_OK);
    o = get_order(id, 0);
    cr_assert_eq(o->state, PH_ORDER_FAILED);
    cr_assert_str_eq(o->reason, "invalid_product");
    cr_assert_eq(o->cost, 0);
    ph_order_free(o);
    assert_pending(NULL, 0);
    evs = events_after(seq);
    cr_assert_eq(json_array_size(evs), 3);
    cr_assert_str_eq(ev_str(json_array_get(evs, 0), "state"), "processing");
    json_t *last = json_array_get(evs, 2);
    cr_assert_str_eq(ev_str(last, "type"), "order.failed");
    cr_assert_str_eq(ev_str(last, "reason"), "invalid_product");
    cr_assert_str_eq(ev_str(last, "supplier"), "sup-c");
    json_decref(evs);
    assert_check();
}

/* Every move not allowed by store.h is PH_ESTATE and changes nothing. */
Test(supply, forbidden_transitions_change_nothing)
{
    start();
    uint64_t sending = create_ok("S-1", IQ, 1, "sup-b");
    uint64_t processing = create_ok("S-2", IQ, 1, "sup-b");
    uint64_t unknown = create_ok("S-3", IQ, 1, "sup-b");
    uint64_t succeeded = create_ok("S-4", TOPUP, 1, "sup-b");
    uint64_t failed = create_ok("S-5", IQ, 1, "sup-b");
    cr_assert_eq(attempt(processing, 1, PH_ATTEMPT_PROCESSING, NULL), PH_OK);
    cr_assert_eq(attempt(unknown, 1, PH_ATTEMPT_UNKNOWN, "timeout"), PH_OK);
    cr_assert_eq(attempt(succeeded, 1, PH_ATTEMPT_SUCCEEDED, NULL), PH_OK);
    cr_assert_eq(attempt(failed, 1, PH_ATTEMPT_FAILED, "refused"), PH_OK);

    struct {
        uint64_t order;
        int to;
    } bad[] = {
        {processing, PH_ATTEMPT_SENDING},
        {unknown, PH_ATTEMPT_SENDING},
        {succeeded, PH_ATTEMPT_SENDING},
        {succeeded, PH_ATTEMPT_PROCESSING},
        {succeeded, PH_ATTEMPT_UNKNOWN},
        {succeeded, PH_ATTEMPT_SUCCEEDED},
        {succeeded, PH_ATTEMPT_FAILED},
        {failed, PH_ATTEMPT_SENDING},
        {failed, PH_ATTEMPT_PROCESSING},
        {failed, PH_ATTEMPT_UNKNOWN},
        {failed, PH_ATTEMPT_SUCCEEDED},
        {failed, PH_ATTEMPT_FAILED},
        {sending, 0},
        {sending, 6},
    };
    uint64_t all[] = {sending, processing, unknown, succeeded, failed};
    char *before[5];
    for (int i = 0; i < 5; i++)
        before[i] = order_text(all[i]);
    uint64_t seq = last_event();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ph_cmd c;
        attempt_cmd(&c, bad[i].order, 1, bad[i].to);
        c.in.attempt.reason = "late";
        c.in.attempt.supplier_order_id = "X";
        c.in.attempt.count_check = 1;
        c.in.attempt.next_check_at = NOW + 99;
        cr_assert_eq(ph_store_exec(g_s, &c), PH_ESTATE, "order %llu -> %d was accepted",
                     (unsigned long long)bad[i].order, bad[i].to);
        cr_assert_null(c.order);
        ph_cmd_clear(&c);
    }
    /* no such attempt, no such order, an order from stock */
    cr_assert_eq(attempt(sending, 2, PH_ATTEMPT_PROCESSING, NULL), PH_ENOTFOUND);
    cr_assert_eq(attempt(sending, 0, PH_ATTEMPT_PROCESSING, NULL), PH_ENOTFOUND);
    cr_assert_eq(attempt(999, 1, PH_ATTEMPT_PROCESSING, NULL), PH_ENOTFOUND);
    cr_assert_eq(import_code(1), PH_OK);
    ph_cmd oc = {.type = PH_CMD_ORDER, .now = NOW};
    oc.in.order.client = "mall";
    oc.in.order.client_order_id = "L-1";
    oc.in.order.sku = IQ;
    oc.in.order.quantity = 1;
    cr_assert_eq(ph_store_exec(g_s, &oc), PH_OK, "%s", oc.err.msg);
    uint64_t local = oc.order->id;
    cr_assert_eq(oc.order->delivery, 0);
    cr_assert_eq(oc.order->nattempts, 0);
    ph_cmd_clear(&oc);
    seq = last_event();
    cr_assert_eq(attempt(local, 1, PH_ATTEMPT_SUCCEEDED, NULL), PH_ENOTFOUND);
    /* malformed fields are refused too */
    cr_assert_eq(attempt(sending, 1, PH_ATTEMPT_UNKNOWN, "bad\nreason"), PH_EINVAL);
    ph_cmd c;
    attempt_cmd(&c, sending, 1, PH_ATTEMPT_PROCESSING);
    c.in.attempt.next = (ph_attempt_target){"sup-c", "C-1", 1};
    cr_assert_eq(ph_store_exec(g_s, &c), PH_EINVAL, "next without a failure");
    ph_cmd_clear(&c);

    cr_assert_eq(last_event(), seq, "a refused command wrote an event");
    for (int i = 0; i < 5; i++) {
        char *after = order_text(all[i]);
        cr_assert_str_eq(after, before[i], "order %llu changed", (unsigned long long)all[i]);
        free(after);
        free(before[i]);
    }
    uint64_t pend[] = {sending, processing, unknown};
    assert_pending(pend, 3);
    assert_check();
}

Test(supply, a_succeeded_card_order_gets_the_supplied_codes)
{
    start();
    cr_assert_eq(import_code(900), PH_OK); /* batch 1: local stock, untouched */
    uint64_t id = create_ok("S-1", IQ, 2, "sup-b");
    cr_assert_eq(attempt(id, 1, PH_ATTEMPT_PROCESSING, NULL), PH_OK);
    uint64_t seq = last_event();
    unsigned nums[] = {7, 3};
    ph_cmd c;
    cr_assert_eq(succeed_with(id, 1, nums, 2, &c), PH_OK, "%s", c.err.msg);
    ph_order *o = c.order;
    cr_assert_eq(o->state, PH_ORDER_SUCCEEDED);
    cr_assert_eq(o->cost, 3000, "unit cost x quantity");
    cr_assert_eq(o->ncodes, 2);
    cr_assert_not_null(o->codes);
    cr_assert_eq(o->codes[0].id, 2);
    cr_assert_eq(o->codes[1].id, 3);
    cr_assert_eq(o->codes[0].state, PH_CODE_ISSUED);
    cr_assert(memcmp(o->codes[0].sealed, "sealed-7", 8) == 0);
    cr_assert_str_eq(o->attempts[0].supplier_order_id, "SUP-77");
    cr_assert_eq(o->attempts[0].state, PH_ATTEMPT_SUCCEEDED);
    ph_cmd_clear(&c);

    /* read back with codes */
    o = get_order(id, 1);
    cr_assert_eq(o->ncodes, 2);
    cr_assert(memcmp(o->codes[1].sealed, "sealed-3", 8) == 0);
    uint64_t batch = o->codes[0].batch_id;
    ph_order_free(o);

    /* the codes are findable by hash, issued to the order, in a batch of their own */
    for (int i = 0; i < 2; i++) {
        uint8_t h[32];
        ph_code_info info;
        ph_err err = {0};
        code_hash(nums[i], h);
        cr_assert_eq(ph_store_code_find(g_s, h, &info, &err), PH_OK, "%s", err.msg);
        cr_assert_eq(info.code.state, PH_CODE_ISSUED);
        cr_assert_eq(info.code.order_id, id);
        cr_assert_not_null(info.order);
        cr_assert_str_eq(info.order->client_order_id, "S-1");
        cr_assert_eq(info.batch.id, batch);
        cr_assert_str_eq(info.batch.supplier, "sup-b");
        cr_assert_str_eq(info.batch.sku, IQ);
        cr_assert_str_eq(info.batch.note, "order 1 attempt 1");
        cr_assert_eq(info.batch.unit_cost, 1500);
        cr_assert_eq(info.batch.count, 2);
        ph_code_info_clear(&info);
    }
    ph_batch b;
    uint64_t counts[7];
    cr_assert_eq(ph_store_batch_get(g_s, batch, &b, counts, NULL), PH_OK);
    cr_assert_eq(batch, 2);
    cr_assert_eq(counts[PH_CODE_ISSUED], 2);
    cr_assert_eq(counts[PH_CODE_AVAILABLE], 0);
    char *json;
    uint64_t avail = 0;
    cr_assert_eq(ph_store_product_get(g_s, IQ, &json, &avail, NULL), PH_OK);
    free(json);
    cr_assert_eq(avail, 1, "the supplier's codes never enter the stock");

    json_t *evs = events_after(seq);
    cr_assert_eq(json_array_size(evs), 2);
    cr_assert_str_eq(ev_str(json_array_get(evs, 0), "type"), "order.attempt");
    cr_assert_str_eq(ev_str(json_array_get(evs, 0), "state"), "succeeded");
    json_t *ev = json_array_get(evs, 1);
    cr_assert_str_eq(ev_str(ev, "type"), "order.succeeded");
    cr_assert_eq(ev_int(ev, "order_id"), (json_int_t)id);
    cr_assert_str_eq(ev_str(ev, "supplier"), "sup-b");
    cr_assert_eq(ev_int(ev, "cost_fen"), 3000);
    cr_assert_eq(ev_int(ev, "batch_id"), (json_int_t)batch);
    json_decref(evs);
    assert_pending(NULL, 0);
    assert_check();

    /* the supplier voids its delivery: the order is named */
    ph_cmd v = {.type = PH_CMD_VOID_BATCH, .now = NOW + 5000};
    v.in.void_batch.batch_id = batch;
    v.in.void_batch.reason = "upstream";
    cr_assert_eq(ph_store_exec(g_s, &v), PH_OK, "%s", v.err.msg);
    cr_assert_eq(v.voided_codes, 2);
    cr_assert_eq(v.naffected, 1);
    cr_assert_eq(v.affected[0].id, id);
    ph_cmd_clear(&v);
    assert_check();
}

Test(supply, a_code_stored_before_is_refused_and_nothing_changes)
{
    start();
    cr_assert_eq(import_code(5), PH_OK);
    uint64_t id = create_ok("S-1", IQ, 2, "sup-b");
    char *before = order_text(id);
    uint64_t seq = last_event();
    ph_cmd c;
    unsigned stored[] = {6, 5};
    cr_assert_eq(succeed_with(id, 1, stored, 2, &c), PH_EDUP);
    cr_assert_null(c.order);
    ph_cmd_clear(&c);
    unsigned twice[] = {8, 8};
    cr_assert_eq(succeed_with(id, 1, twice, 2, NULL), PH_EDUP, "the same code twice");
    cr_assert_eq(last_event(), seq);
    char *after = order_text(id);
    cr_assert_str_eq(after, before);
    free(after);
    free(before);
    uint8_t h[32];
    ph_code_info info;
    code_hash(6, h);
    cr_assert_eq(ph_store_code_find(g_s, h, &info, NULL), PH_ENOTFOUND);
    ph_store_stats st;
    cr_assert_eq(ph_store_check(g_s, &st, NULL), PH_OK);
    cr_assert_eq(st.codes, 1);
    ph_store_stats_clear(&st);
    /* ids were given back: the retry's codes start at 2 */
    unsigned good[] = {6, 9};
    cr_assert_eq(succeed_with(id, 1, good, 2, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->codes[0].id, 2);
    ph_cmd_clear(&c);
    assert_check();
}

Test(supply, codes_must_match_the_order)
{
    start();
    uint64_t card = create_ok("S-1", IQ, 2, "sup-b");
    uint64_t topup = create_ok("S-2", TOPUP, 1, "sup-b");
    uint64_t seq = last_event();
    unsigned one[] = {1}, three[] = {1, 2, 3};
    cr_assert_eq(succeed_with(card, 1, one, 1, NULL), PH_EINVAL, "1 code for 2");
    cr_assert_eq(succeed_with(card, 1, three, 3, NULL), PH_EINVAL, "3 codes for 2");
    cr_assert_eq(succeed_with(card, 1, NULL, 0, NULL), PH_EINVAL, "no codes for 2");
    cr_assert_eq(succeed_with(topup, 1, one, 1, NULL), PH_EINVAL, "codes for a recharge");
    supplied s;
    supply_codes(&s, one, 1);
    ph_cmd c;
    attempt_cmd(&c, card, 1, PH_ATTEMPT_PROCESSING);
    c.in.attempt.codes = s.codes;
    c.in.attempt.ncodes = 1;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_EINVAL, "codes without success");
    ph_cmd_clear(&c);
    cr_assert_eq(last_event(), seq);
    ph_order *o = get_order(card, 0);
    cr_assert_eq(o->state, PH_ORDER_PROCESSING);
    cr_assert_eq(o->attempts[0].state, PH_ATTEMPT_SENDING);
    ph_order_free(o);
    assert_check();
}

Test(supply, a_recharge_keeps_its_sealed_account_and_settles_through_unknown)
{
    start();
    uint64_t seq = last_event();
    uint64_t id = create_ok("T-1", TOPUP, 1, "sup-b");
    ph_order *o = get_order(id, 1);
    cr_assert_eq(o->delivery, PH_DELIVERY_RECHARGE);
    cr_assert_str_eq(o->account_masked, ACCOUNT_MASKED);
    cr_assert_eq(o->account_sealed_len, strlen(ACCOUNT_SEALED));
    cr_assert(memcmp(o->account_sealed, ACCOUNT_SEALED, o->account_sealed_len) == 0);
    ph_order_free(o);

    /* a timeout: the order is unknown until the supplier is asked */
    ph_cmd c;
    attempt_cmd(&c, id, 1, PH_ATTEMPT_UNKNOWN);
    c.in.attempt.reason = "timeout";
    c.in.attempt.next_check_at = NOW + 30000;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->state, PH_ORDER_UNKNOWN);
    cr_assert_str_eq(c.order->reason, "timeout");
    cr_assert_eq(c.order->attempts[0].next_check_at, NOW + 30000);
    ph_cmd_clear(&c);
    uint64_t pend[] = {id};
    assert_pending(pend, 1);

    /* a query that learns nothing new: recorded, no event */
    uint64_t mid = last_event();
    attempt_cmd(&c, id, 1, PH_ATTEMPT_UNKNOWN);
    c.in.attempt.count_check = 1;
    c.in.attempt.next_check_at = NOW + 90000;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->attempts[0].checks, 1);
    cr_assert_eq(c.order->attempts[0].next_check_at, NOW + 90000);
    ph_cmd_clear(&c);
    cr_assert_eq(last_event(), mid);

    attempt_cmd(&c, id, 1, PH_ATTEMPT_SUCCEEDED);
    c.in.attempt.charged = 2990;
    c.in.attempt.count_check = 1;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    o = c.order;
    cr_assert_eq(o->state, PH_ORDER_SUCCEEDED);
    cr_assert_eq(o->cost, 2990, "what the supplier charged");
    cr_assert_eq(o->ncodes, 0);
    cr_assert_str_eq(o->reason, "");
    cr_assert_eq(o->attempts[0].checks, 2);
    cr_assert_eq(o->attempts[0].next_check_at, 0, "a settled attempt is not checked");
    cr_assert_eq(o->attempts[0].charged, 2990);
    ph_cmd_clear(&c);
    assert_pending(NULL, 0);

    json_t *evs = events_after(seq); /* asserts no event holds the account */
    /* 29.90 charged against the offer's 15.00: the supplier's charge is the
     * cost, and a discrepancy says so (issue 11) */
    const char *types[] = {"order.accepted", "order.attempt",   "order.unknown",
                           "order.attempt",  "order.succeeded", "order.discrepancy"};
    cr_assert_eq(json_array_size(evs), 6);
    for (size_t i = 0; i < 6; i++)
        cr_assert_str_eq(ev_str(json_array_get(evs, i), "type"), types[i]);
    cr_assert_str_eq(ev_str(json_array_get(evs, 0), "delivery"), "recharge");
    cr_assert_str_eq(ev_str(json_array_get(evs, 2), "reason"), "timeout");
    json_decref(evs);
    assert_check();
}

Test(supply, pending_follows_the_attempts)
{
    start();
    uint64_t a = create_ok("S-1", IQ, 1, "sup-b");
    uint64_t b = create_ok("S-2", IQ, 1, NULL); /* failed at once */
    uint64_t c = create_ok("S-3", TOPUP, 1, "sup-b");
    uint64_t d = create_ok("S-4", TOPUP, 1, "sup-b");
    uint64_t e = create_ok("S-5", TOPUP, 1, "sup-b");
    (void)b;
    uint64_t p1[] = {a, c, d, e};
    assert_pending(p1, 4);
    cr_assert_eq(attempt(c, 1, PH_ATTEMPT_SUCCEEDED, NULL), PH_OK);
    cr_assert_eq(attempt(d, 1, PH_ATTEMPT_UNKNOWN, "reset"), PH_OK);
    uint64_t p2[] = {a, d, e};
    assert_pending(p2, 3);
    cr_assert_eq(attempt(a, 1, PH_ATTEMPT_FAILED, "no"), PH_OK);
    cr_assert_eq(attempt(e, 1, PH_ATTEMPT_PROCESSING, NULL), PH_OK);
    uint64_t p3[] = {d, e};
    assert_pending(p3, 2);
    ph_order **list;
    size_t n;
    cr_assert_eq(ph_store_pending_list(g_s, d, 10, &list, &n, NULL), PH_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(list[0]->id, e);
    cr_assert_eq(list[0]->attempts[0].state, PH_ATTEMPT_PROCESSING);
    ph_order_list_free(list, n);
    cr_assert_eq(ph_store_pending_list(g_s, 0, 0, &list, &n, NULL), PH_OK);
    cr_assert_eq(n, 0);
    ph_order_list_free(list, n);
    assert_check();
}

Test(supply, a_step_is_recorded_while_sending)
{
    start();
    uint64_t id = create_ok("S-1", IQ, 1, "sup-b");
    uint64_t seq = last_event();
    ph_cmd c;
    attempt_cmd(&c, id, 1, PH_ATTEMPT_SENDING);
    c.in.attempt.step = 1;
    c.in.attempt.step_state = "token:abc";
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.order->attempts[0].step, 1);
    cr_assert_str_eq(c.order->attempts[0].step_state, "token:abc");
    cr_assert_eq(c.order->attempts[0].state, PH_ATTEMPT_SENDING);
    cr_assert_eq(c.order->updated_at, NOW, "a step does not change the order");
    ph_cmd_clear(&c);
    cr_assert_eq(last_event(), seq);
    assert_check();
}

Test(supply, close_and_reopen_keep_everything)
{
    start();
    const char *uid = ph_store_uid(g_s);
    char saved[16];
    snprintf(saved, sizeof saved, "%s", uid);
    cr_assert_eq(strlen(saved), 8);
    cr_assert_eq(strspn(saved, "0123456789abcdef"), 8, "uid '%s' is not lowercase hex", saved);

    uint64_t sending = create_ok("S-1", IQ, 1, "sup-b");
    uint64_t checked = create_ok("S-2", TOPUP, 1, "sup-b");
    ph_cmd c;
    attempt_cmd(&c, checked, 1, PH_ATTEMPT_PROCESSING);
    c.in.attempt.supplier_order_id = "SUP-1";
    c.in.attempt.next_check_at = NOW + 60000;
    c.in.attempt.count_check = 1;
    c.in.attempt.step = 2;
    c.in.attempt.step_state = "poll";
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    uint64_t done = create_ok("S-3", IQ, 1, "sup-b");
    unsigned nums[] = {4};
    cr_assert_eq(succeed_with(done, 1, nums, 1, NULL), PH_OK);
    char *before[3] = {order_text(sending), order_text(checked), order_text(done)};
    uint64_t seq = last_event();

    reopen();
    cr_assert_str_eq(ph_store_uid(g_s), saved, "the uid changed across a restart");
    uint64_t ids[] = {sending, checked, done};
    for (int i = 0; i < 3; i++) {
        char *after = order_text(ids[i]);
        cr_assert_str_eq(after, before[i]);
        free(after);
        free(before[i]);
    }
    ph_order *o = get_order(sending, 0);
    cr_assert_eq(o->attempts[0].state, PH_ATTEMPT_SENDING, "the store never resolves SENDING");
    ph_order_free(o);
    uint64_t pend[] = {sending, checked};
    assert_pending(pend, 2);
    cr_assert_eq(last_event(), seq);
    /* ids carry on */
    uint64_t next = create_ok("S-4", IQ, 1, "sup-b");
    cr_assert_eq(next, done + 1);
    o = get_order(next, 0);
    expect_ref(&o->attempts[0], next, 1);
    ph_order_free(o);
    assert_check();

    /* another store has its own uid */
    char other[128];
    snprintf(other, sizeof other, "%s/other", g_base);
    ph_store *s2 = open_at(other, 0);
    cr_assert_str_neq(ph_store_uid(s2), saved);
    ph_store_close(s2);
}

Test(supply, state_names)
{
    cr_assert_str_eq(ph_attempt_state_name(PH_ATTEMPT_SENDING), "sending");
    cr_assert_str_eq(ph_attempt_state_name(PH_ATTEMPT_PROCESSING), "processing");
    cr_assert_str_eq(ph_attempt_state_name(PH_ATTEMPT_UNKNOWN), "unknown");
    cr_assert_str_eq(ph_attempt_state_name(PH_ATTEMPT_SUCCEEDED), "succeeded");
    cr_assert_str_eq(ph_attempt_state_name(PH_ATTEMPT_FAILED), "failed");
    cr_assert_str_eq(ph_attempt_state_name(0), "?");
    cr_assert_str_eq(ph_attempt_state_name(6), "?");
}

/* ---- supplier commands apply without a nested transaction (docs/store.md, "Orders
 * skip the nested transaction"): a batch mixing commands that succeed, fail before
 * writing and fail after writing commits whole, the failures change nothing. ---- */

static uint64_t writer_commits(void)
{
    ph_writer_stats w;
    ph_store_writer_stats(g_s, &w);
    return w.commits;
}

Test(supply, a_batch_with_failed_supplier_commands_commits_the_rest_and_nothing_else)
{
    start();
    cr_assert_eq(import_code(5), PH_OK);
    uint64_t card = create_ok("S-A", IQ, 2, "sup-b");
    uint64_t topup = create_ok("S-B", TOPUP, 1, "sup-b");
    uint64_t done = create_ok("S-C", TOPUP, 1, "sup-b");
    char *card_before = order_text(card);
    uint64_t seq = last_event();

    sem_t gate;
    sem_init(&gate, 0, 0);
    static held_cmd blk, mv, dup, n1, fin, late, clash, n2;
    create_cmd(&blk.c, "BLK", TOPUP, 1, "sup-b");
    uint64_t commits = writer_commits();
    submit_held(&blk, &gate);
    while (writer_commits() == commits) /* blk committed; the writer waits in its done */
        sched_yield();
    ph_writer_stats w0, w1;
    ph_store_writer_stats(g_s, &w0);
    attempt_cmd(&mv.c, topup, 1, PH_ATTEMPT_PROCESSING);
    submit_held(&mv, NULL);
    supplied s; /* code 5 is in stock already: refused after code 6 was written */
    supply_codes(&s, (unsigned[]){6, 5}, 2);
    attempt_cmd(&dup.c, card, 1, PH_ATTEMPT_SUCCEEDED);
    dup.c.in.attempt.codes = s.codes;
    dup.c.in.attempt.ncodes = 2;
    submit_held(&dup, NULL);
    create_cmd(&n1.c, "N-1", TOPUP, 1, "sup-b");
    submit_held(&n1, NULL);
    attempt_cmd(&fin.c, done, 1, PH_ATTEMPT_SUCCEEDED);
    submit_held(&fin, NULL);
    attempt_cmd(&late.c, done, 1, PH_ATTEMPT_PROCESSING); /* after fin: not forward */
    submit_held(&late, NULL);
    create_cmd(&clash.c, "N-1", IQ, 1, "sup-b"); /* n1's id, another request */
    submit_held(&clash, NULL);
    create_cmd(&n2.c, "N-2", TOPUP, 1, "sup-b");
    submit_held(&n2, NULL);
    sem_post(&gate);
    held_cmd *all[] = {&blk, &mv, &dup, &n1, &fin, &late, &clash, &n2};
    for (size_t i = 0; i < 8; i++)
        sem_wait(&all[i]->done);
    ph_store_writer_stats(g_s, &w1);
    cr_expect_eq(w1.commits - w0.commits, 1, "one batch");
    cr_expect_eq(w1.commands - w0.commands, 7);

    cr_assert_eq(mv.c.rc, PH_OK, "%s", mv.c.err.msg);
    cr_assert_eq(dup.c.rc, PH_EDUP, "%s", dup.c.err.msg);
    cr_assert_null(dup.c.order);
    cr_assert_eq(n1.c.rc, PH_OK, "%s", n1.c.err.msg);
    cr_assert_eq(fin.c.rc, PH_OK, "%s", fin.c.err.msg);
    cr_assert_eq(late.c.rc, PH_ESTATE);
    cr_assert_eq(clash.c.rc, PH_ECONFLICT);
    cr_assert_eq(n2.c.rc, PH_OK, "%s", n2.c.err.msg);
    cr_assert_eq(n1.c.order->id, blk.c.order->id + 1, "ids stay contiguous");
    cr_assert_eq(n2.c.order->id, blk.c.order->id + 2);
    uint64_t blk_id = blk.c.order->id;
    for (size_t i = 0; i < 8; i++)
        ph_cmd_clear(&all[i]->c);
    sem_destroy(&gate);

    /* the refused delivery left nothing: not its order, its codes, its ids */
    char *card_after = order_text(card);
    cr_assert_str_eq(card_after, card_before);
    free(card_after);
    free(card_before);
    uint8_t h[32];
    ph_code_info info;
    code_hash(6, h);
    cr_assert_eq(ph_store_code_find(g_s, h, &info, NULL), PH_ENOTFOUND);
    ph_order *o = get_order(topup, 0);
    cr_assert_eq(o->attempts[0].state, PH_ATTEMPT_PROCESSING);
    ph_order_free(o);
    o = get_order(done, 0);
    cr_assert_eq(o->state, PH_ORDER_SUCCEEDED);
    ph_order_free(o);
    /* events of blk, mv, n1, fin (attempt and outcome), n2: numbered without a gap */
    json_t *evs = events_after(seq);
    const char *want[] = {"order.accepted", "order.attempt",   "order.accepted",
                          "order.attempt",  "order.succeeded", "order.accepted"};
    cr_assert_eq(json_array_size(evs), 6);
    for (size_t i = 0; i < 6; i++) {
        json_t *ev = json_array_get(evs, i);
        cr_assert_str_eq(ev_str(ev, "type"), want[i]);
        cr_assert_eq(ev_int(ev, "seq"), (json_int_t)(seq + 1 + i));
    }
    json_decref(evs);
    assert_pending((uint64_t[]){card, topup, blk_id, blk_id + 1, blk_id + 2}, 5);
    assert_check();
    reopen();
    assert_check();
    cr_assert_eq(create_ok("N-3", TOPUP, 1, "sup-b"), blk_id + 3, "ids follow on after a reopen");
}

/* Supplier order events are formatted as text (store_apply.c): each must be the
 * canonical compact JSON jansson would write, keys in the documented order, with
 * quotes and backslashes in a reason escaped. */
static void expect_keys(const char *text, const char *const *keys)
{
    json_t *ev = json_loads(text, 0, NULL);
    cr_assert_not_null(ev, "not JSON: %s", text);
    char *again = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
    cr_assert_str_eq(again, text, "not canonical");
    free(again);
    size_t i = 0;
    const char *key;
    json_t *v;
    json_object_foreach(ev, key, v)
    {
        cr_assert_not_null(keys[i], "extra key %s in %s", key, text);
        cr_assert_str_eq(key, keys[i], "key %zu of %s", i, text);
        i++;
    }
    cr_assert_null(keys[i], "missing key %s in %s", keys[i], text);
    json_decref(ev);
}

Test(supply, events_are_canonical_json_with_keys_in_order)
{
    start();
    uint64_t seq = last_event();
    uint64_t card = create_ok("E-1", IQ, 1, "sup-b");
    create_ok("E-2", TOPUP, 1, NULL); /* failed at once */
    cr_assert_eq(attempt(card, 1, PH_ATTEMPT_UNKNOWN, "said \"maybe\" \\ twice"), PH_OK);
    unsigned one[] = {1};
    cr_assert_eq(succeed_with(card, 1, one, 1, NULL), PH_OK);
#define BASE "seq", "at", "type", "order_id", "client", "client_order_id", "sku"
    static const char *const accepted[] = {BASE,       "quantity", "delivery", "state",
                                           "supplier", "attempt",  NULL};
    static const char *const accepted_failed[] = {BASE, "quantity", "delivery", "state", NULL};
    static const char *const failed[] = {BASE, "quantity", "reason", NULL};
    static const char *const attempted[] = {BASE, "attempt", "supplier", "state", "reason", NULL};
    static const char *const unknown[] = {BASE, "quantity", "reason", "supplier", "attempt", NULL};
    static const char *const succeeded[] = {BASE,      "quantity", "cost_fen", "supplier",
                                            "attempt", "batch_id", NULL};
#undef BASE
    const char *const *want[] = {accepted, accepted_failed, failed,   attempted,
                                 unknown,  attempted,       succeeded};
    char **list;
    size_t n;
    ph_err err = {0};
    cr_assert_eq(ph_store_event_list(g_s, seq, 100, &list, &n, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(n, 7);
    for (size_t i = 0; i < n; i++)
        expect_keys(list[i], want[i]);
    cr_assert_not_null(strstr(list[3], "\"reason\":\"said \\\"maybe\\\" \\\\ twice\""), "%s",
                       list[3]);
    ph_store_event_list_free(list, n);
}

/* ---- the checker sees planted violations ------------------------------------------- */

/* Order 1 SENDING (pending), order 2 a succeeded card order (codes 1, 2 in batch 1). */
static void damaged_base(void)
{
    start();
    create_ok("S-1", IQ, 1, "sup-b");
    uint64_t done = create_ok("S-2", IQ, 2, "sup-b");
    unsigned nums[] = {1, 2};
    cr_assert_eq(succeed_with(done, 1, nums, 2, NULL), PH_OK);
    assert_check();
    ph_store_close(g_s);
    g_s = NULL;
}

/* Damages the pending index of the damaged_base store: deletes (del) or adds
 * the entry of order id; the checker must then fail naming `needle`. */
static void pending_damaged(uint64_t id, int del, const char *needle)
{
    damaged_base();
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi pending = raw_dbi(txn, "pending", MDB_INTEGERKEY);
    MDB_val k = {8, &id}, v = {0, ""};
    if (del)
        cr_assert_eq(mdb_del(txn, pending, &k, NULL), 0);
    else
        cr_assert_eq(mdb_put(txn, pending, &k, &v, 0), 0);
    raw_commit(env, txn);
    assert_check_fails(needle);
}

Test(supply, check_detects_a_lost_pending_entry)
{
    pending_damaged(1, 1, "order 1");
}

Test(supply, check_detects_a_settled_order_still_pending)
{
    pending_damaged(2, 0, "order 2");
}

Test(supply, check_detects_a_pending_entry_for_no_order)
{
    pending_damaged(77, 0, "pending");
}

/* A supplier's code turned available (and listed in stock) would be sold twice. */
Test(supply, check_detects_a_supplied_code_made_available)
{
    damaged_base();
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi codes = raw_dbi(txn, "codes", MDB_INTEGERKEY);
    MDB_dbi avail = raw_dbi(txn, "avail", MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP);
    uint64_t id = 2;
    size_t len;
    uint8_t *rec = raw_copy(txn, codes, id, &len);
    rec[offsetof(ph_code_rec, state)] = PH_CODE_AVAILABLE;
    memset(rec + offsetof(ph_code_rec, order_id), 0, 8);
    raw_put_free(txn, codes, id, rec, len);
    MDB_val sk = {strlen(IQ), IQ}, sv = {8, &id};
    cr_assert_eq(mdb_put(txn, avail, &sk, &sv, 0), 0);
    raw_commit(env, txn);
    assert_check_fails("code 2");
}

/* Attempt numbers must run 1, 2, ...: renumber attempt 1 of order 1 to 3. */
Test(supply, check_detects_a_renumbered_attempt)
{
    damaged_base();
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi supply = raw_dbi(txn, "supply", MDB_INTEGERKEY);
    uint64_t id = 1;
    size_t len;
    uint8_t *rec = raw_copy(txn, supply, id, &len);
    ph_supply_rec h;
    memcpy(&h, rec, sizeof h);
    cr_assert_eq(h.nattempts, 1);
    size_t at = sizeof h + h.reason_len + h.masked_len + h.sealed_len;
    uint32_t no = 3;
    memcpy(rec + at + offsetof(ph_attempt_rec, no), &no, 4);
    raw_put_free(txn, supply, id, rec, len);
    raw_commit(env, txn);
    assert_check_fails("order 1");
}

/* A succeeded card order that lost one of its codes. */
Test(supply, check_detects_a_succeeded_order_short_of_codes)
{
    damaged_base();
    MDB_txn *txn;
    MDB_env *env = raw_open(&txn);
    MDB_dbi orders = raw_dbi(txn, "orders", MDB_INTEGERKEY);
    uint64_t id = 2;
    size_t len;
    uint8_t *rec = raw_copy(txn, orders, id, &len);
    uint32_t ncodes = 1;
    memcpy(rec + offsetof(ph_order_rec, ncodes), &ncodes, 4);
    raw_put_free(txn, orders, id, rec, len - 8);
    raw_commit(env, txn);
    assert_check_fails("order 2");
}
