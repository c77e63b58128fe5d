/*
 * event_view.h — what of a stored event a mall may see: the one allow-list
 * behind the mall's event feed (GET /v1/events with the fulfill scope,
 * http/api_ops.c) and the webhooks' bodies (notify/). Events are the store's
 * (docs/store.md, "Events"), so their cut lives beside them.
 *
 * Ownership: each function takes the event (a new reference the caller gives
 * up, NULL allowed) and returns a new object the caller decrefs, or NULL when
 * out of memory. Pure: any thread.
 */
#ifndef PH_EVENT_VIEW_H
#define PH_EVENT_VIEW_H

#include <jansson.h>

/* The members of an order event its client may see: what the order's own view
 * shows a mall (http/views.c), never the supplier, a cost, a batch, a
 * discrepancy's amounts; no event holds an account or a code (store.md). An
 * allow-list, so a member added to an event later stays with ops until it is
 * named here. */
json_t *ph_event_mall_cut(json_t *ev);

/* A product event (stock.low, stock.out, product.delisted, product.relisted)
 * for a mall: its SKU, numbers and reason, never a supplier or a cost. */
json_t *ph_event_product_cut(json_t *ev);

#endif
