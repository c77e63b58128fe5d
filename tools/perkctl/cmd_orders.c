/*
 * cmd_orders.c — `perkctl order`, `orders` and `order-get`.
 *
 * Orders are idempotent on the client's order id, so the one thing this file
 * must get right is what it tells the operator after a timeout: the order may
 * exist, and the fix is to repeat the same command, never to invent a new id.
 */
#include "perkctl.h"

#include <stdint.h>
#include <string.h>

/* The order as key/value lines, then its codes one per line (stdout only:
 * they are the customer's goods). */
static void print_order(const json_t *order, int replayed)
{
    char b1[32], b2[32], line[512];
    pk_kv_field(stdout, "order", order, "id");
    pk_kv_field(stdout, "client order", order, "client_order_id");
    snprintf(line, sizeof line, "%s%s", pk_field(order, "state", b1, sizeof b1),
             replayed ? " (replayed: the order already existed)" : "");
    pk_kv(stdout, "state", line);
    if (pk_has(order, "product_name")) {
        snprintf(line, sizeof line, "%s (%s)", pk_field(order, "sku", b1, sizeof b1),
                 pk_field(order, "product_name", b2, sizeof b2));
        pk_kv(stdout, "product", line);
    } else {
        pk_kv_field(stdout, "product", order, "sku");
    }
    pk_kv_field(stdout, "quantity", order, "quantity");
    pk_kv_field(stdout, "delivery", order, "delivery");
    if (pk_has(order, "account")) /* the server masks it (138****0001) */
        pk_kv_field(stdout, "account", order, "account");
    if (pk_has(order, "reason"))
        pk_kv_field(stdout, "reason", order, "reason");
    pk_kv_field(stdout, "created", order, "created_at");
    pk_kv_field(stdout, "updated", order, "updated_at");

    const json_t *codes = json_object_get(order, "codes"), *code;
    size_t i;
    if (json_array_size(codes) == 0)
        return;
    fputs("codes:\n", stdout);
    json_array_foreach(codes, i, code)
    {
        pk_put_clean(stdout, pk_field(code, "code", b1, sizeof b1), 0);
        if (pk_has(code, "card_no")) {
            fputs("  card_no=", stdout);
            pk_put_clean(stdout, pk_field(code, "card_no", b1, sizeof b1), 0);
        }
        if (pk_has(code, "expires_at")) {
            fputs("  expires_at=", stdout);
            pk_put_clean(stdout, pk_field(code, "expires_at", b1, sizeof b1), 0);
        }
        fputc('\n', stdout);
    }
}

/* An order that came back failed is the server saying no (exit 1); one still
 * in flight is not an error, but the operator must know to look again. */
static int order_outcome(const json_t *order)
{
    char id[32];
    const char *state = json_string_value(json_object_get(order, "state"));
    pk_field(order, "id", id, sizeof id);
    if (!state || strcmp(state, "succeeded") == 0)
        return PK_EXIT_OK;
    if (strcmp(state, "failed") == 0) {
        fprintf(stderr, "perkctl: order %s failed\n", id);
        return PK_EXIT_REFUSED;
    }
    pk_line(stderr, "perkctl: order %s is %s; see its result later with 'perkctl order-get %s'", id,
            state, id);
    return PK_EXIT_OK;
}

int pk_cmd_order(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *sku = NULL, *id = NULL, *qty = NULL, *account = NULL, *wait = NULL;
    const pk_opt opts[] = {
        PK_OPT_TEXT("sku", &sku),         PK_OPT_TEXT("id", &id),     PK_OPT_TEXT("qty", &qty),
        PK_OPT_TEXT("account", &account), PK_OPT_TEXT("wait", &wait), PK_OPT_END,
    };
    int rc = pk_parse(cmd, argc, argv, opts, NULL);
    if (rc >= 0)
        return rc;
    if (!sku || !*sku)
        return pk_usage_error(cmd, "--sku is required");
    if (!id || !*id)
        return pk_usage_error(cmd, "--id is required (your order id: it makes retries safe)");
    long long quantity = 1;
    if (qty && pk_parse_int(qty, 1, INT32_MAX, &quantity) != 0)
        return pk_usage_error(cmd, "--qty: expected a whole number of codes >= 1, got '%s'", qty);
    /* the account is the customer's: checked by the server, never echoed here */
    if (account && !*account)
        return pk_usage_error(cmd, "--account: must not be empty");
    /* the server checks the upper bound (limits.max_order_wait_s); the
     * request must outlive the wait, or an order that succeeds in its last
     * second would look unreachable (exit 3) */
    long long wait_s = 0;
    if (wait && pk_parse_int(wait, 0, 3600, &wait_s) != 0)
        return pk_usage_error(cmd, "--wait: expected whole seconds from 0 to 3600, got '%s'", wait);
    if (wait && ctx->http.timeout_s && wait_s >= ctx->http.timeout_s)
        return pk_usage_error(cmd,
                              "--wait %lld: not shorter than --timeout %ld (raise --timeout: "
                              "perkctl would give up while the server waits)",
                              wait_s, ctx->http.timeout_s);

    pkh_response resp;
    json_t *body = json_pack("{s:s, s:s, s:I}", "client_order_id", id, "sku", sku, "quantity",
                             (json_int_t)quantity);
    if (body && account)
        json_object_set_new(body, "account", json_string(account));
    if (body && wait)
        json_object_set_new(body, "wait", json_integer((json_int_t)wait_s));
    rc = pk_call_json(ctx, "POST", "/v1/orders", body, &resp);
    if (ctx->json)
        pk_print_raw(&resp);
    if (rc == PK_EXIT_OK) {
        const json_t *order = json_object_get(resp.json, "order");
        if (!ctx->json)
            print_order(order, resp.replayed);
        rc = order_outcome(order);
    } else if (rc == PK_EXIT_UNREACHABLE) {
        fputs("perkctl: the order may still have been placed: run the same command again, "
              "with the same --id, to get its result\n",
              stderr);
    }
    pkh_response_free(&resp);
    return rc;
}

int pk_cmd_orders(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    /* the filters go to the server as they are: it checks them and says what
     * is wrong (GET /v1/orders), one answer for every client */
    const char *after = NULL, *limit = NULL, *state = NULL, *client = NULL, *sku = NULL,
               *since = NULL;
    const pk_opt opts[] = {
        PK_OPT_INT("after", &after, "an order id", 0, INT64_MAX),
        PK_OPT_INT("limit", &limit, "a number >= 1", 1, INT32_MAX),
        PK_OPT_TEXT("state", &state),
        PK_OPT_TEXT("client", &client),
        PK_OPT_TEXT("sku", &sku),
        PK_OPT_TEXT("since", &since),
        PK_OPT_END,
    };
    int rc = pk_parse(cmd, argc, argv, opts, NULL);
    if (rc >= 0)
        return rc;

    const pkh_param query[] = {{"after", after},   {"limit", limit}, {"state", state},
                               {"client", client}, {"sku", sku},     {"since", since}};
    pkh_request req = {.method = "GET", .path = "/v1/orders", .query = query, .nquery = 6};
    static const pk_column cols[] = {{"ID", "id", NULL},
                                     {"CLIENT", "client", NULL},
                                     {"CLIENT_ORDER_ID", "client_order_id", NULL},
                                     {"SKU", "sku", NULL},
                                     {"QTY", "quantity", NULL},
                                     {"STATE", "state", NULL},
                                     {"CREATED", "created_at", NULL}};
    return pk_list(ctx, &req, "orders", cols, sizeof cols / sizeof *cols, NULL, "no orders");
}

int pk_cmd_order_get(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv)
{
    const char *id, *client_order_id = NULL, *client = NULL;
    const pk_opt opts[] = {
        PK_OPT_TEXT("client-order-id", &client_order_id),
        PK_OPT_TEXT("client", &client),
        PK_OPT_END,
    };
    int rc =
        pk_parse(cmd, argc, argv, opts, &(pk_pos){&id, 1, "unexpected argument '%s': give one ID"});
    if (rc >= 0)
        return rc;
    if (!id == !client_order_id)
        return pk_usage_error(cmd, "give either an order ID or --client-order-id");
    if (client && !client_order_id)
        return pk_usage_error(cmd, "--client goes with --client-order-id");

    char path[64] = "/v1/orders";
    long long order_id;
    if (id) {
        if (pk_parse_int(id, 1, INT64_MAX, &order_id) != 0)
            return pk_usage_error(cmd, "ID: expected an order number, got '%s'", id);
        snprintf(path, sizeof path, "/v1/orders/%lld", order_id);
    } else if (!*client_order_id) {
        return pk_usage_error(cmd, "--client-order-id: must not be empty");
    }
    const pkh_param query[] = {{"client_order_id", client_order_id}, {"client", client}};
    pkh_request req = {.method = "GET", .path = path, .query = query, .nquery = 2};
    pkh_response resp;
    rc = pk_call(ctx, &req, &resp);
    if (ctx->json)
        pk_print_raw(&resp);
    if (rc == PK_EXIT_OK && !ctx->json) {
        const json_t *order = json_object_get(resp.json, "order");
        if (!order) /* tolerate a list-shaped answer to ?client_order_id= */
            order = json_array_get(json_object_get(resp.json, "orders"), 0);
        if (order) {
            print_order(order, 0);
        } else {
            fputs("perkctl: bad_response: no order in the answer", stderr);
            pk_print_request_id(stderr, &resp);
            fputc('\n', stderr);
            rc = PK_EXIT_REFUSED;
        }
    }
    pkh_response_free(&resp);
    return rc;
}
