/*
 * reviews.h — a held order released or blocked (issue 15): what ops do
 * through POST /v1/reviews/{id}/release|block and what the daemon's
 * risk.reviews job does to a review that timed out. One way for both.
 *
 * Ownership: the command's strings borrow from cfg (the route's supplier and
 * product id) and from the caller (who, note): cfg must be held until the
 * command completes. Threads: any (the store and fulfil are thread-safe).
 */
#ifndef PH_REVIEWS_H
#define PH_REVIEWS_H

#include <stdint.h>

#include "base/status.h"
#include "config/config.h"
#include "store/store.h"

struct ph_fulfil;
struct ph_risk;

/* Fills cmd as a PH_CMD_REVIEW of order id at now: a release is routed like a
 * new order (ph_fulfil_route) for a recharge or a card product with offers;
 * without a route the store fails it (no_supplier_available) or serves it from
 * stock. The store refuses what is not held. */
void ph_review_cmd(struct ph_fulfil *f, const ph_config *cfg, ph_store *s, uint64_t id, int release,
                   const char *who, const char *note, int64_t now, ph_cmd *cmd);

/* After the command committed: a released order that went to a supplier is
 * handed to fulfil (its recharge account unsealed from the supply record, as a
 * restart resumes one); a blocked one marks its subjects as blocked for the
 * related rules (risk NULL: none). Returns PH_OK or fulfil's PH_ENOMEM. */
int ph_review_after(struct ph_fulfil *f, struct ph_risk *risk, ph_store *s, const ph_cmd *cmd,
                    ph_err *err);

#endif
