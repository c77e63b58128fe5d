/*
 * test_sync_store.c — the writer's side of sync (core/store/store_sync.c):
 * PH_CMD_SYNC compared with the stored offer state, its events, the
 * auto-delisting and relisting of products, pins, the stock sum readers see,
 * refusals that change nothing, and the journal encoding of both commands.
 */
#include "store_fixture.h"

#include "store/cmd_codec.h"

#define CARD "sync.card" /* offers gw 10001 (max_cost 30.00) and rw U1 */
#define SOLO "sync.solo" /* offers gw 10001 only; sale price 29.00 */
#define BARE "sync.bare" /* no offers */

static const char *const P_CARD =
    "{\"sku\":\"" CARD "\",\"name\":\"C\",\"delivery\":\"card_code\",\"listed\":true,"
    "\"offers\":[{\"supplier\":\"gw\",\"supplier_sku\":\"10001\",\"cost_fen\":2850,"
    "\"max_cost_fen\":3000},{\"supplier\":\"rw\",\"supplier_sku\":\"U1\",\"cost_fen\":2850}]}";
static const char *const P_SOLO =
    "{\"sku\":\"" SOLO "\",\"name\":\"S\",\"delivery\":\"card_code\",\"listed\":true,"
    "\"price_fen\":2900,"
    "\"offers\":[{\"supplier\":\"gw\",\"supplier_sku\":\"10001\",\"cost_fen\":2850}]}";
static const char *const P_BARE =
    "{\"sku\":\"" BARE "\",\"name\":\"B\",\"delivery\":\"card_code\",\"listed\":true}";

static void setup(void)
{
    fixture_setup();
    g_s = open_at(g_dir, 0);
    const char *const all[] = {P_CARD, P_SOLO, P_BARE};
    ph_err err = {0};
    cr_assert_eq(put_products(all, 3, &err), PH_OK, "%s", err.msg);
}

TestSuite(sync_store, .init = setup, .fini = fixture_teardown);

static int sync_cmd(const char *sup, int kind, const ph_sync_item *items, size_t n, int64_t now,
                    ph_cmd *out)
{
    ph_cmd c = {.type = PH_CMD_SYNC, .now = now};
    c.in.sync.supplier = sup;
    c.in.sync.kind = kind;
    c.in.sync.items = items;
    c.in.sync.n = n;
    int rc = ph_store_exec(g_s, &c);
    if (out)
        *out = c;
    else
        ph_cmd_clear(&c);
    return rc;
}

static int pin_cmd(const char *sku, int pin)
{
    ph_cmd c = {.type = PH_CMD_PIN, .now = NOW};
    c.in.pin.sku = sku;
    c.in.pin.pin = pin;
    int rc = ph_store_exec(g_s, &c);
    ph_cmd_clear(&c);
    return rc;
}

/* Events after seq of type (and sku), counted; the last into *last (new ref). */
static int count(uint64_t after, const char *type, const char *sku, json_t **last)
{
    json_t *evs = events_after_without(after, NULL), *e;
    size_t i;
    int n = 0;
    if (last)
        *last = NULL;
    json_array_foreach(evs, i, e)
    {
        if (strcmp(ev_str(e, "type"), type) ||
            (sku && strcmp(json_string_value(json_object_get(e, "sku")), sku)))
            continue;
        n++;
        if (last) {
            json_decref(*last);
            *last = json_incref(e);
        }
    }
    json_decref(evs);
    return n;
}

static ph_offer_state state(const char *sku, const char *sup, int *found)
{
    ph_offer_state st;
    int f;
    ph_err err = {0};
    const char *sups[] = {sup};
    cr_assert_eq(ph_store_offer_states(g_s, sku, sups, 1, &st, &f, &err), PH_OK, "%s", err.msg);
    if (found)
        *found = f;
    return st;
}

/* The product as readers get it (decorated by the store's read), parsed. */
static json_t *product(const char *sku)
{
    char *json;
    uint64_t avail;
    ph_err err = {0};
    cr_assert_eq(ph_store_product_get(g_s, sku, &json, &avail, &err), PH_OK, "%s", err.msg);
    json_t *p = json_loads(json, 0, NULL);
    free(json);
    cr_assert_not_null(p);
    return p;
}

static const ph_sync_item ITEM_OK = {"10001", 2850, 100, 1};

Test(sync_store, first_catalog_is_no_change_then_changes_are_events)
{
    uint64_t seq = last_event();
    ph_cmd c;
    cr_assert_eq(sync_cmd("gw", PH_SYNC_CATALOG, &ITEM_OK, 1, NOW, &c), PH_OK, "%s", c.err.msg);
    cr_assert_eq(c.sync_offers, 2, "10001 is offered by two products");
    cr_assert_eq(c.sync_changes, 0);
    ph_cmd_clear(&c);
    cr_assert_eq(last_event(), seq, "what was unknown is no change");
    int found;
    ph_offer_state st = state(CARD, "gw", &found);
    cr_assert(found);
    cr_assert_eq(st.upstream_cost, 2850);
    cr_assert_eq(st.stock, 100);
    cr_assert_eq(st.stock_at, NOW);
    cr_assert_eq(st.on_sale, 1);
    cr_assert_eq(st.over_max, 0);
    state(CARD, "rw", &found);
    cr_assert_not(found, "another supplier's offer is untouched");

    /* the same answer again: nothing */
    cr_assert_eq(sync_cmd("gw", PH_SYNC_CATALOG, &ITEM_OK, 1, NOW + 1, NULL), PH_OK);
    cr_assert_eq(last_event(), seq);

    /* price up */
    ph_sync_item up = {"10001", 2950, 100, 1};
    cr_assert_eq(sync_cmd("gw", PH_SYNC_CATALOG, &up, 1, NOW + 2, NULL), PH_OK);
    json_t *e;
    cr_assert_eq(count(seq, "offer.price_changed", CARD, &e), 1);
    cr_assert_str_eq(ev_str(e, "old_cost"), "28.50");
    cr_assert_str_eq(ev_str(e, "new_cost"), "29.50");
    cr_assert_str_eq(ev_str(e, "supplier"), "gw");
    json_decref(e);
    /* over SOLO's sale price (no max_cost): over max, not routed to */
    cr_assert_eq(count(seq, "offer.over_max_cost", SOLO, &e), 1);
    cr_assert_str_eq(ev_str(e, "max_cost"), "29.00");
    json_decref(e);
    cr_assert_eq(count(seq, "offer.over_max_cost", CARD, NULL), 0, "within CARD's max_cost");
    cr_assert(state(SOLO, "gw", NULL).over_max);
    /* SOLO has no usable offer and no stock: delisted, reason upstream */
    cr_assert_eq(count(seq, "product.delisted", SOLO, &e), 1);
    cr_assert_str_eq(ev_str(e, "reason"), "upstream");
    json_decref(e);
    json_t *p = product(SOLO);
    cr_assert_not(ph_product_listed(p));
    json_decref(p);
    assert_check();
}

Test(sync_store, out_of_stock_back_and_missing_from_the_catalog)
{
    cr_assert_eq(sync_cmd("gw", PH_SYNC_CATALOG, &ITEM_OK, 1, NOW, NULL), PH_OK);
    uint64_t seq = last_event();
    ph_sync_item out = {"10001", 2850, 0, 1};
    cr_assert_eq(sync_cmd("gw", PH_SYNC_CATALOG, &out, 1, NOW + 1, NULL), PH_OK);
    cr_assert_eq(count(seq, "offer.out_of_stock", CARD, NULL), 1);
    cr_assert_eq(count(seq, "offer.out_of_stock", SOLO, NULL), 1);
    cr_assert_eq(count(seq, "product.delisted", SOLO, NULL), 1);
    cr_assert_eq(count(seq, "product.delisted", CARD, NULL), 0, "rw was never synced: usable");

    seq = last_event();
    ph_sync_item unlimited = {"10001", 2850, -1, 1};
    cr_assert_eq(sync_cmd("gw", PH_SYNC_CATALOG, &unlimited, 1, NOW + 2, NULL), PH_OK);
    cr_assert_eq(count(seq, "offer.back_in_stock", SOLO, NULL), 1);
    json_t *e;
    cr_assert_eq(count(seq, "product.relisted", SOLO, &e), 1);
    cr_assert_str_eq(ev_str(e, "reason"), "upstream");
    json_decref(e);

    /* a whole catalog without 10001: delisted upstream */
    seq = last_event();
    ph_sync_item other = {"99999", 100, 5, 1};
    cr_assert_eq(sync_cmd("gw", PH_SYNC_CATALOG, &other, 1, NOW + 3, NULL), PH_OK);
    cr_assert_eq(count(seq, "offer.delisted_upstream", CARD, NULL), 1);
    cr_assert_eq(count(seq, "offer.delisted_upstream", SOLO, NULL), 1);
    cr_assert_eq(state(SOLO, "gw", NULL).on_sale, 0);
    /* an empty catalog is a whole catalog too: still delisted, no new events */
    seq = last_event();
    cr_assert_eq(sync_cmd("gw", PH_SYNC_CATALOG, NULL, 0, NOW + 4, NULL), PH_OK);
    cr_assert_eq(count(seq, "offer.delisted_upstream", SOLO, NULL), 0);
    /* back */
    cr_assert_eq(sync_cmd("gw", PH_SYNC_CATALOG, &ITEM_OK, 1, NOW + 5, NULL), PH_OK);
    cr_assert_eq(count(seq, "offer.relisted_upstream", SOLO, NULL), 1);
    cr_assert_eq(count(seq, "product.relisted", SOLO, NULL), 1);
    /* an item off sale is delisted upstream as well */
    seq = last_event();
    ph_sync_item off = {"10001", 2850, 100, 0};
    cr_assert_eq(sync_cmd("gw", PH_SYNC_CATALOG, &off, 1, NOW + 6, NULL), PH_OK);
    cr_assert_eq(count(seq, "offer.delisted_upstream", SOLO, NULL), 1);
    assert_check();
}

Test(sync_store, a_stock_check_answers_for_what_it_names)
{
    cr_assert_eq(sync_cmd("gw", PH_SYNC_CATALOG, &ITEM_OK, 1, NOW, NULL), PH_OK);
    ph_sync_item st = {"10001", -1, 7, -1}; /* no price, no on-sale word */
    cr_assert_eq(sync_cmd("gw", PH_SYNC_STOCK, &st, 1, NOW + 10, NULL), PH_OK);
    ph_offer_state s = state(SOLO, "gw", NULL);
    cr_assert_eq(s.stock, 7);
    cr_assert_eq(s.stock_at, NOW + 10);
    cr_assert_eq(s.upstream_cost, 2850, "an unknown price keeps the known one");
    cr_assert_eq(s.on_sale, 1, "unknown on-sale keeps the known one");
    /* an empty stock answer changes nothing (it is not a whole catalog) */
    uint64_t seq = last_event();
    cr_assert_eq(sync_cmd("gw", PH_SYNC_STOCK, NULL, 0, NOW + 11, NULL), PH_OK);
    cr_assert_eq(last_event(), seq);
    cr_assert_eq(state(SOLO, "gw", NULL).on_sale, 1);
}

Test(sync_store, local_stock_keeps_a_product_listed_and_relists_it)
{
    ph_sync_item out = {"10001", 2850, 0, 1};
    cr_assert_eq(sync_cmd("gw", PH_SYNC_CATALOG, &out, 1, NOW, NULL), PH_OK);
    json_t *p = product(SOLO);
    cr_assert_not(ph_product_listed(p));
    json_decref(p);
    /* codes imported: it has stock again */
    uint64_t seq = last_event();
    ph_import_code code = {.line = 1, .sealed_len = 8, .sealed = (const uint8_t *)"sealed-1"};
    code_hash(1, code.hash);
    uint32_t by = 0;
    ph_cmd c = {.type = PH_CMD_IMPORT, .now = NOW + 1};
    c.in.import.supplier = "gw";
    c.in.import.sku = SOLO;
    c.in.import.note = "n";
    c.in.import.unit_cost = 2850;
    c.in.import.codes = &code;
    c.in.import.ncodes = 1;
    c.in.import.by_hash = &by;
    cr_assert_eq(ph_store_exec(g_s, &c), PH_OK, "%s", c.err.msg);
    ph_cmd_clear(&c);
    json_t *e;
    cr_assert_eq(count(seq, "product.relisted", SOLO, &e), 1);
    cr_assert_str_eq(ev_str(e, "reason"), "stock");
    json_decref(e);
    /* and a sync that finds the offer still out keeps it listed */
    seq = last_event();
    cr_assert_eq(sync_cmd("gw", PH_SYNC_CATALOG, &out, 1, NOW + 2, NULL), PH_OK);
    cr_assert_eq(count(seq, "product.delisted", SOLO, NULL), 0);
    assert_check();
}

Test(sync_store, pins_override_sync_and_survive_a_reload)
{
    uint64_t seq = last_event();
    cr_assert_eq(pin_cmd(CARD, PH_PIN_DELISTED), PH_OK);
    json_t *e;
    cr_assert_eq(count(seq, "product.delisted", CARD, &e), 1);
    cr_assert_str_eq(ev_str(e, "reason"), "ops");
    json_decref(e);
    /* PUT_PRODUCTS (a reload) keeps it delisted */
    const char *const all[] = {P_CARD, P_SOLO, P_BARE};
    cr_assert_eq(put_products(all, 3, NULL), PH_OK);
    json_t *p = product(CARD);
    cr_assert_not(ph_product_listed(p));
    cr_assert_str_eq(json_string_value(json_object_get(p, "pin")), "delisted");
    json_decref(p);
    /* pinned listed: a sync that leaves no usable offer does not delist it */
    cr_assert_eq(pin_cmd(SOLO, PH_PIN_LISTED), PH_OK);
    ph_sync_item out = {"10001", 2850, 0, 1};
    seq = last_event();
    cr_assert_eq(sync_cmd("gw", PH_SYNC_CATALOG, &out, 1, NOW, NULL), PH_OK);
    cr_assert_eq(count(seq, "product.delisted", SOLO, NULL), 0);
    /* unpinned: the sync's verdict applies at once */
    cr_assert_eq(pin_cmd(SOLO, PH_PIN_NONE), PH_OK);
    cr_assert_eq(count(seq, "product.delisted", SOLO, &e), 1);
    cr_assert_str_eq(ev_str(e, "reason"), "upstream");
    json_decref(e);
    /* refusals */
    cr_assert_eq(pin_cmd("no.such", PH_PIN_LISTED), PH_ESKU);
    cr_assert_eq(pin_cmd(SOLO, 7), PH_EINVAL);
    assert_check();
}

Test(sync_store, refusals_change_nothing)
{
    cr_assert_eq(sync_cmd("gw", PH_SYNC_CATALOG, &ITEM_OK, 1, NOW, NULL), PH_OK);
    uint64_t seq = last_event();
    ph_sync_item dup[] = {{"10001", 1, 0, 1}, {"10001", 2, 0, 1}};
    ph_cmd c;
    cr_assert_eq(sync_cmd("gw", PH_SYNC_CATALOG, dup, 2, NOW + 1, &c), PH_EINVAL);
    cr_assert(strstr(c.err.msg, "twice"), "%s", c.err.msg);
    ph_cmd_clear(&c);
    ph_sync_item noid = {NULL, 1, 0, 1};
    cr_assert_eq(sync_cmd("gw", PH_SYNC_CATALOG, &noid, 1, NOW + 1, NULL), PH_EINVAL);
    cr_assert_eq(sync_cmd("g w", PH_SYNC_CATALOG, &ITEM_OK, 1, NOW + 1, NULL), PH_EINVAL);
    cr_assert_eq(sync_cmd("gw", 9, &ITEM_OK, 1, NOW + 1, NULL), PH_EINVAL);
    cr_assert_eq(last_event(), seq);
    ph_offer_state st = state(SOLO, "gw", NULL);
    cr_assert_eq(st.upstream_cost, 2850);
    cr_assert_eq(st.stock, 100);
}

Test(sync_store, readers_see_the_supplier_stock_or_null)
{
    json_t *p = product(CARD);
    cr_assert_null(json_object_get(p, "supplier_stock"), "nothing synced: no state at all");
    json_decref(p);
    cr_assert_eq(sync_cmd("gw", PH_SYNC_CATALOG, &ITEM_OK, 1, NOW, NULL), PH_OK);
    p = product(SOLO);
    cr_assert_eq(json_integer_value(json_object_get(p, "supplier_stock")), 100);
    json_t *up = json_object_get(json_array_get(json_object_get(p, "offers"), 0), "upstream");
    cr_assert_eq(json_integer_value(json_object_get(up, "cost_fen")), 2850);
    json_decref(p);
    p = product(CARD); /* rw's stock unknown: the sum is unknown */
    cr_assert(json_is_null(json_object_get(p, "supplier_stock")));
    json_decref(p);
    ph_sync_item rw = {"U1", 2800, 5, 1};
    cr_assert_eq(sync_cmd("rw", PH_SYNC_CATALOG, &rw, 1, NOW, NULL), PH_OK);
    p = product(CARD);
    cr_assert_eq(json_integer_value(json_object_get(p, "supplier_stock")), 105);
    json_decref(p);
    /* an offer delisted upstream does not count */
    ph_sync_item off = {"U1", 2800, 5, 0};
    cr_assert_eq(sync_cmd("rw", PH_SYNC_CATALOG, &off, 1, NOW, NULL), PH_OK);
    p = product(CARD);
    cr_assert_eq(json_integer_value(json_object_get(p, "supplier_stock")), 100);
    json_decref(p);
}

Test(sync_store, commands_round_trip_through_the_journal_encoding)
{
    ph_sync_item items[] = {{"10001", 2850, 100, 1}, {"E00002", -1, -1, -1}};
    ph_cmd s = {.type = PH_CMD_SYNC, .now = NOW};
    s.in.sync.supplier = "gw";
    s.in.sync.kind = PH_SYNC_STOCK;
    s.in.sync.items = items;
    s.in.sync.n = 2;
    ph_cmd p = {.type = PH_CMD_PIN, .now = NOW + 1};
    p.in.pin.sku = SOLO;
    p.in.pin.pin = PH_PIN_DELISTED;
    s.next = &p;
    uint8_t *buf;
    size_t len;
    ph_err err = {0};
    cr_assert_eq(ph_cmd_batch_encode(&s, &buf, &len, &err), PH_OK, "%s", err.msg);
    ph_cmd_batch b = {0};
    cr_assert_eq(ph_cmd_batch_decode(buf, len, &b, &err), PH_OK, "%s", err.msg);
    cr_assert_eq(b.n, 2);
    const ph_cmd *d = &b.cmds[0];
    cr_assert_eq(d->type, PH_CMD_SYNC);
    cr_assert_str_eq(d->in.sync.supplier, "gw");
    cr_assert_eq(d->in.sync.kind, PH_SYNC_STOCK);
    cr_assert_eq(d->in.sync.n, 2);
    cr_assert_str_eq(d->in.sync.items[1].product_id, "E00002");
    cr_assert_eq(d->in.sync.items[0].cost, 2850);
    cr_assert_eq(d->in.sync.items[0].stock, 100);
    cr_assert_eq(d->in.sync.items[1].on_sale, -1);
    cr_assert_eq(b.cmds[1].type, PH_CMD_PIN);
    cr_assert_str_eq(b.cmds[1].in.pin.sku, SOLO);
    cr_assert_eq(b.cmds[1].in.pin.pin, PH_PIN_DELISTED);
    ph_cmd_batch_free(&b);
    /* a truncated batch is refused naming the field */
    cr_assert_neq(ph_cmd_batch_decode(buf, len - 3, &b, &err), PH_OK);
    free(buf);
}

/* The alert check (store_alerts.c) judges local plus supplier stock: a product
 * with a low_stock rule and no local code stays quiet while its offer's
 * synced stock covers the threshold, and stock.low fires in the SYNC that
 * takes the stock away (the check runs after every SYNC, reading the offer
 * states through the rule table's supplier list, not the product). */
Test(sync_store, alerts_count_the_supplier_stock_sync_reports)
{
    static const char *const ruled =
        "{\"sku\":\"sync.ruled\",\"name\":\"R\",\"delivery\":\"card_code\",\"listed\":true,"
        "\"low_stock\":{\"below\":10,\"margin\":2},"
        "\"offers\":[{\"supplier\":\"gw\",\"supplier_sku\":\"10001\",\"cost_fen\":2850}]}";
    const char *const all[] = {P_CARD, P_SOLO, P_BARE, ruled};
    ph_err err = {0};
    uint64_t seq0 = last_event();
    cr_assert_eq(put_products(all, 4, &err), PH_OK, "%s", err.msg);
    json_t *ev;
    cr_assert_eq(count(seq0, "stock.low", "sync.ruled", &ev), 1,
                 "never synced: judged on its local stock alone (0)");
    cr_assert(json_is_true(json_object_get(ev, "local_only")));
    json_decref(ev);
    cr_assert_eq(sync_cmd("gw", PH_SYNC_CATALOG, &ITEM_OK, 1, NOW, NULL), PH_OK);
    cr_assert_eq(count(seq0, "stock.recovered", "sync.ruled", NULL), 2,
                 "100 units at the supplier: stock.low and stock.out re-armed by the SYNC itself");
    ph_sync_item few = {"10001", 2850, 3, 1};
    cr_assert_eq(sync_cmd("gw", PH_SYNC_STOCK, &few, 1, NOW + 1, NULL), PH_OK);
    cr_assert_eq(count(seq0, "stock.low", "sync.ruled", &ev), 2, "3 units: below 10 again");
    cr_assert_eq(json_integer_value(json_object_get(ev, "suppliers")), 3);
    cr_assert_eq(json_integer_value(json_object_get(ev, "local")), 0);
    cr_assert(!json_is_true(json_object_get(ev, "local_only")));
    json_decref(ev);
    assert_check();
}
