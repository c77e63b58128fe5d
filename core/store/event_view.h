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

/* The same cuts from an event's stored text, without a tree: what
 * json_dumps(JSON_COMPACT) prints of ph_event_mall_cut / ph_event_product_cut
 * of that event, written through put (the webhook thread builds a body per
 * delivery from it; parsing the event and dumping the cut cost more than the
 * rest of the body). The members' values are copied as stored, which is
 * byte for byte jansson's printing of them: the store writes events with
 * jansson or ph_json_str (util.h). 0, or -1 when the text is not one JSON
 * object (part of the cut may have been written then). Pure: any thread. */
int ph_event_mall_cut_text(const char *ev, size_t len,
                           void (*put)(void *sink, const char *p, size_t n), void *sink);
int ph_event_product_cut_text(const char *ev, size_t len,
                              void (*put)(void *sink, const char *p, size_t n), void *sink);

/* The stored texts of the event's top-level members keys[0..nkeys): vals[i]
 * points into ev at the value of keys[i] as written (a string with its
 * quotes), vlens[i] its length; vals[i] NULL when the event has no such
 * member (a key written with escapes does not match). 0, or -1 when ev is not
 * one JSON object. Pure: any thread. */
int ph_event_members(const char *ev, size_t len, const char *const *keys, size_t nkeys,
                     const char **vals, size_t *vlens);

#endif
