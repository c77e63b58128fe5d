/*
 * views.h — the JSON shapes of the API (docs/api.md), built from store objects.
 * One place decides what each audience sees: an order's codes are rendered only
 * when the caller says the reader owns the order; costs only for ops.
 *
 * Ownership: every json_t function returns a new reference the caller decrefs,
 * or NULL when the object itself cannot be built (out of memory); a member that
 * cannot be allocated is left out. Inputs are only read and not retained.
 * Threads: pure functions of their arguments; any thread, given a configuration
 * snapshot the caller holds and a loaded keyring (both read-only).
 * Errors: none beyond NULL; a code that cannot be unsealed is rendered, never
 * guessed (below).
 */
#ifndef PH_VIEWS_H
#define PH_VIEWS_H

#include <jansson.h>

#include "config/config.h"
#include "crypto/crypto.h"
#include "store/store.h"

/* An order. cfg gives the product's name (null when the SKU has left the
 * configuration). with_codes: unseal and include the codes (the owner only; o
 * must have been loaded with its codes); with_cost: include the cost and the
 * attempts (ops). A code that fails to unseal is rendered as
 * {"error":"unreadable"}: the start refuses another key file and the writer
 * never issues a code that does not unseal, so this shows only data damaged
 * after issue, which `perkhubd --check-store DIR --key-file FILE` finds. The
 * result holds plaintext codes when with_codes: never log it. */
json_t *ph_view_order(const ph_order *o, const ph_config *cfg, const ph_keyring *kr, int with_codes,
                      int with_cost);

/* Sets view's `end_user` (issue 15) from an order's risk record (parsed, docs/
 * store.md "Order risk"): its masked members only (id, ip, device, phone,
 * tags), as the record keeps them: a clear value is never stored, so never
 * shown. Nothing when record is NULL or has no end user. For the order's owner
 * and ops, in every reply that shows the order (GET and POST alike). */
void ph_view_end_user(json_t *view, const json_t *record);

/* A batch, with per-state counts (indexed by PH_CODE_*, 7 slots, as
 * ph_store_batch_get fills them) when counts is non-NULL. */
json_t *ph_view_batch(const ph_batch *b, const uint64_t *counts);

/* A stored product object (JSON text from the store) for the API, with stock;
 * offers (with costs) only when with_offers. NULL if the text does not parse.
 * available is the local count of codes issuable now (ph_store_product_get);
 * stock.available shows it, or null where perkhub does not know the stock: a
 * recharge product, or a card-code product with supplier offers and no code
 * issuable locally. */
json_t *ph_view_product(const char *stored_json, uint64_t available, int with_offers);

/* The stored form of a configured product (what PH_CMD_PUT_PRODUCTS stores,
 * docs/store.md "Product JSON"). */
json_t *ph_view_product_stored(const ph_product_conf *p);

/* Sets o[key] to ms (since the epoch) as RFC 3339 text, unless ms is 0. */
void ph_view_time(json_t *o, const char *key, int64_t ms);

/* The response of a new stock order, {"order": ph_view_order(o, cfg, kr, 1, 0)},
 * as compact JSON text, byte for byte what jansson would print, without building
 * the tree (the hot path). NULL when o is not a plain stock order, a string in
 * it is not valid UTF-8, or memory runs out: render the tree then. The text
 * holds codes: it is the caller's, to wipe and free (*len bytes,
 * NUL-terminated; ph_req_text does both). */
char *ph_view_stock_order_text(const ph_order *o, const ph_config *cfg, const ph_keyring *kr,
                               size_t *len);

/* What a code lookup (POST /v1/codes/lookup, docs/api.md) shows of one code. */
typedef struct ph_lookup_view {
    const ph_code *code;
    const ph_batch *batch;
    const ph_order *order; /* the order holding it, or NULL */
    const ph_product_conf
        *product;           /* its SKU's product, NULL when the SKU left the configuration */
    const char *owner_code; /* the plaintext, for its owner only; NULL: left out */
    int ops;                /* ops also sees the supplier */
    int64_t now;            /* what "expired" is judged against */
} ph_lookup_view;

/* A code's diagnosis for a support agent: its name ("issued", "expired",
 * "voided_upstream", ...) returned, the advice written into advice (len bytes). */
const char *ph_view_diagnose(const ph_code *c, const ph_batch *b, int64_t now, char *advice,
                             size_t len);

/* One lookup result: diagnosis, state, sku, product_name, batch_id, then code
 * (owner), supplier (ops), the order's ids and times, redemption_guide, advice. */
json_t *ph_view_lookup(const ph_lookup_view *v);

/* The answer to a lookup by code, {"results":[ph_view_lookup(v)]}, or with
 * `shown` 0 the answer for a code the caller may not see, {"results":[not
 * found]}: as compact JSON text, byte for byte what jansson would print of the
 * tree, without building it. The result is rendered either way and dropped
 * when not shown, so both answers cost the same (the endpoint's timing rule,
 * api_codes.c). NULL when a string is not valid UTF-8 or memory runs out:
 * render the tree then. The text may hold a code: wipe and free it (*len
 * bytes, NUL-terminated; ph_req_text does both). */
char *ph_view_lookup_text(const ph_lookup_view *v, int shown, size_t *len);

/* The result for a code the caller may not see (or that does not exist):
 * {"diagnosis":"not_found","advice":PH_VIEW_NOT_FOUND_ADVICE}. */
json_t *ph_view_not_found(void);
#define PH_VIEW_NOT_FOUND_ADVICE                                                                   \
    "No code issued to your orders matches. Check for typos (0/O, 1/I) and that the code came "    \
    "from this mall."

/* Adds stock.local {available: codes in stock, issuable: those not expiring
 * within the product's min_validity_days} to a ph_view_product object
 * (docs/api.md, "stock"). */
void ph_view_product_local(json_t *product, const ph_local_stock *l);

#endif
