/*
 * test_callbacks.c — a supplier's callback against our record
 * (core/supply/callbacks.c, ph_fulfil_callback): what is refused and why
 * (unknown supplier, a supplier without callbacks, the plugin's refusal, a
 * reference that is not ours, no such order or attempt, another supplier,
 * supplier order id, product, quantity or a higher amount), what is
 * acknowledged (a match, a duplicate for a settled attempt), and that no
 * callback changes the store by itself.
 *
 * The plugin is the cb_echo fixture, which believes whatever the body claims,
 * so every claim reaches the core's matching. fulfil runs with no I/O engine
 * and holds no attempt in flight.
 *
 * What an accepted callback makes fulfil do (the confirming order query, when
 * and how often) needs an attempt fulfil tracks, begun through its I/O
 * engine: test_fulfil.c's fulfil_callbacks suite sees it through a fake one.
 */
#include "store_fixture.h"

#include "base/log.h"
#include "config/config.h"
#include "supply/fulfil.h"
#include "supply/suppliers.h"

static ph_logger g_log = {.level = PH_LOG_ERROR + 1, .fd = 2};
static ph_suppliers *g_sups;
static ph_fulfil *g_f;
static uint64_t g_recharge, g_card, g_settled; /* order ids */

static void cfg_release(void *ref)
{
    (void)ref;
}

static const ph_config *cfg_acquire(void *ctx, void **ref)
{
    *ref = NULL;
    return ctx;
}

static ph_config g_cfg;

/* A supplier order of sku at supplier "cb" (product P-1, 49.00 a unit). */
static uint64_t supply_order(const char *coid, const char *sku, int delivery, uint32_t qty)
{
    static const uint8_t sealed[] = {1, 2, 3};
    ph_cmd c = {.type = PH_CMD_SUPPLY_CREATE, .now = NOW};
    c.in.supply.client = "mall";
    c.in.supply.client_order_id = coid;
    c.in.supply.sku = sku;
    c.in.supply.quantity = qty;
    fingerprint(sku, qty, c.in.supply.fingerprint);
    c.in.supply.delivery = delivery;
    if (delivery == PH_DELIVERY_RECHARGE) {
        c.in.supply.account_sealed = sealed;
        c.in.supply.account_sealed_len = sizeof sealed;
        c.in.supply.account_masked = "138****0001";
    }
    c.in.supply.first =
        (ph_attempt_target){.supplier = "cb", .product_id = "P-1", .unit_cost = 4900};
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    uint64_t id = c.order->id;
    ph_cmd_clear(&c);
    return id;
}

/* Attempt 1 of order id moves to state, with the supplier's order id. */
static void attempt(uint64_t id, int state, const char *soid)
{
    ph_cmd c = {.type = PH_CMD_ATTEMPT, .now = NOW + 1};
    c.in.attempt.order_id = id;
    c.in.attempt.no = 1;
    c.in.attempt.state = state;
    c.in.attempt.supplier_order_id = soid;
    c.in.attempt.step = -1;
    c.in.attempt.charged = state == PH_ATTEMPT_SUCCEEDED ? 4900 : -1;
    c.in.attempt.next_check_at = -1;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
}

static void setup(void)
{
    fixture_setup();
    g_s = open_at(g_dir, 0);
    const char *const products[] = {P_IQ, P_TOPUP};
    ph_err err = {0};
    cr_assert_eq(put_products(products, 2, &err), PH_OK, "%s", err.msg);

    const char *dir = getenv("PH_FIXTURE_PLUGIN_DIR");
    cr_assert_not_null(dir, "PH_FIXTURE_PLUGIN_DIR is not set (run through ctest)");
    static ph_supplier_conf sc[3];
    sc[0] = (ph_supplier_conf){.id = "cb", .plugin = "cb_echo", .enabled = 1};
    sc[1] = (ph_supplier_conf){.id = "cb2", .plugin = "cb_echo", .enabled = 1};
    sc[2] = (ph_supplier_conf){.id = "plain", .plugin = "good", .enabled = 1};
    g_cfg = (ph_config){.plugin_dir = (char *)dir, .suppliers = sc, .nsuppliers = 3};
    cr_assert_eq(ph_suppliers_create(&g_log, &g_sups, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(ph_suppliers_apply(g_sups, &g_cfg, &err), PH_OK, "%s", err.msg);
    ph_fulfil_opts fo = {.store = g_s,
                         .suppliers = g_sups,
                         .log = &g_log,
                         .cfg = {.ctx = &g_cfg, .acquire = cfg_acquire, .release = cfg_release}};
    cr_assert_eq(ph_fulfil_create(&fo, &g_f, &err), PH_OK, "%s", err.msg);

    g_recharge = supply_order("R-1", TOPUP, PH_DELIVERY_RECHARGE, 1);
    attempt(g_recharge, PH_ATTEMPT_PROCESSING, "S-1");
    g_card = supply_order("C-1", IQ, PH_DELIVERY_CARD_CODE, 3);
    g_settled = supply_order("R-2", TOPUP, PH_DELIVERY_RECHARGE, 1);
    attempt(g_settled, PH_ATTEMPT_SUCCEEDED, "S-2");
}

static void teardown(void)
{
    ph_fulfil_stop(g_f);
    ph_store_close(g_s);
    g_s = NULL;
    ph_fulfil_destroy(g_f);
    g_f = NULL;
    ph_suppliers_destroy(g_sups);
    g_sups = NULL;
    fixture_teardown();
}

TestSuite(callbacks, .init = setup, .fini = teardown);

/* One claim: the supplier it arrives at, the body (with "$uid" replaced by
 * the store uid), and what the core answers. */
typedef struct claim {
    const char *supplier;
    const char *body;
    unsigned status;
    const char *error;   /* "" for an acknowledgement */
    const char *message; /* a substring of the refusal's message, or the reply body */
} claim;

static void expect_claim(const claim *c)
{
    char body[512];
    const char *mark = strstr(c->body, "$uid");
    if (mark)
        snprintf(body, sizeof body, "%.*s%s%s", (int)(mark - c->body), c->body, ph_store_uid(g_s),
                 mark + 4);
    else
        snprintf(body, sizeof body, "%s", c->body);
    struct perkhub_callback cb = {.method = "POST",
                                  .query = "",
                                  .content_type = "application/x-www-form-urlencoded",
                                  .body = body,
                                  .body_len = strlen(body)};
    uint64_t before = last_event();
    ph_callback_reply out;
    int rc = ph_fulfil_callback(g_f, c->supplier, &cb, &out);
    cr_assert_eq(rc, PH_OK, "%s %s", c->supplier, body);
    cr_expect_eq(out.status, c->status, "%s %s: status %u (%s %s)", c->supplier, body, out.status,
                 out.error, out.message);
    cr_expect_str_eq(out.error, c->error, "%s %s: %s", c->supplier, body, out.message);
    if (c->error[0])
        cr_expect(strstr(out.message, c->message), "%s %s: message '%s' lacks '%s'", c->supplier,
                  body, out.message, c->message);
    else
        cr_expect(out.body && !strcmp(out.body, c->message), "%s %s: reply '%s'", c->supplier, body,
                  out.body ? out.body : "(none)");
    free(out.body);
    cr_expect_eq(last_event(), before, "%s %s: a callback changed the store", c->supplier, body);
}

Test(callbacks, refusals_name_what_does_not_match)
{
    static const claim rows[] = {
        {"nope", "ref=$uid-1-1", 404, "not_found", "no such running supplier"},
        {"plain", "ref=$uid-1-1", 404, "not_found", "takes no callbacks"},
        {"cb", "sig=bad&ref=$uid-1-1", 401, "bad_signature", "refused by the plugin"},
        {"cb", "sig=malformed", 400, "malformed", "refused by the plugin"},
        /* references that are not ours */
        {"cb", "qty=1", 400, "callback_mismatch", "not one of ours"},
        {"cb", "ref=", 400, "callback_mismatch", "not one of ours"},
        {"cb", "ref=0badcafe-1-1", 400, "callback_mismatch", "not one of ours"},
        {"cb", "ref=$uid1-1", 400, "callback_mismatch", "not one of ours"},
        {"cb", "ref=$uid-1", 400, "callback_mismatch", "not one of ours"},
        {"cb", "ref=$uid-x-1", 400, "callback_mismatch", "not one of ours"},
        {"cb", "ref=$uid-1-0", 400, "callback_mismatch", "not one of ours"},
        {"cb", "ref=$uid-1--1", 400, "callback_mismatch", "not one of ours"},
        {"cb", "ref=$uid-1-4294967296", 400, "callback_mismatch", "not one of ours"},
        {"cb", "ref=$uid--1-1", 400, "callback_mismatch", "not one of ours"},
        /* ours in form, not in fact */
        {"cb", "ref=$uid-999-1", 400, "callback_mismatch", "no such order"},
        {"cb", "ref=$uid-1-2", 400, "callback_mismatch", "does not match our order: attempt"},
        /* order 1: a recharge at cb, product P-1, 49.00, supplier order S-1 */
        {"cb2", "ref=$uid-1-1", 400, "callback_mismatch", "does not match our order: supplier"},
        {"cb", "ref=$uid-1-1&soid=S-9", 400, "callback_mismatch",
         "does not match our order: supplier_order_id"},
        {"cb", "ref=$uid-1-1&product=P-2", 400, "callback_mismatch",
         "does not match our order: product"},
        {"cb", "ref=$uid-1-1&qty=2", 400, "callback_mismatch",
         "does not match our order: quantity"},
        {"cb", "ref=$uid-1-1&qty=0", 400, "callback_mismatch",
         "does not match our order: quantity"},
        /* another amount is no refusal (issue 11): the confirming query's
         * charge is compared on every path, and a mismatch is a discrepancy */
        {"cb", "ref=$uid-1-1&amount=4901", 200, "", "success"},
        /* ids no supplier text rule keeps (core/supply/sup_text.h) are no claim
         * of ours; a refusal's reason with digits is not passed on */
        {"cb", "ref=$uid-1-1&product=P 1", 400, "callback_mismatch", "an identifier that is none"},
        {"cb", "ref=$uid-1-1&soid=S\"1", 400, "callback_mismatch", "an identifier that is none"},
        {"cb", "ref=$uid 1 1", 400, "callback_mismatch", "not one of ours"},
        /* order 2: three card codes at 49.00 each */
        {"cb", "ref=$uid-2-1&qty=2", 400, "callback_mismatch",
         "does not match our order: quantity"},
        {"cb", "ref=$uid-2-1&qty=3&amount=14701", 200, "", "success"},
    };
    cr_assert_eq(g_recharge, 1);
    cr_assert_eq(g_card, 2);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        expect_claim(&rows[i]);
}

Test(callbacks, matches_and_duplicates_are_acknowledged_with_the_plugins_reply)
{
    static const claim rows[] = {
        /* every field the supplier may leave out, left out */
        {"cb", "ref=$uid-1-1", 200, "", "success"},
        /* every field given, and right */
        {"cb", "ref=$uid-1-1&soid=S-1&product=P-1&qty=1&amount=4900&reply=OK", 200, "", "OK"},
        /* a lower charge is the supplier's business, not a mismatch */
        {"cb", "ref=$uid-1-1&amount=4000", 200, "", "success"},
        /* no supplier order id stored yet: any is taken */
        {"cb", "ref=$uid-2-1&soid=X-7&qty=3&amount=14700", 200, "", "success"},
        /* a settled attempt: acknowledged, nothing to do */
        {"cb", "ref=$uid-3-1&soid=S-2", 200, "", "success"},
        /* a reply body the rules drop (a run of digits): the default answer */
        {"cb", "ref=$uid-1-1&reply=ok 13971234567", 200, "", "ok"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        expect_claim(&rows[i]);
}
