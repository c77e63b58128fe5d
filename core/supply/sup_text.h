/*
 * sup_text.h — the rules for text a supplier chose: what of it the core may
 * store, event, log or show (issue 10, defect 2; docs/design.md rule 3).
 *
 * A supplier's answer reaches the core only through its plugin, and a plugin
 * may pass on whatever the supplier wrote: a reason such as
 * "account_13971234567_suspended", an order id that is the account, a
 * product name with a phone number in it. The core does not trust the plugin
 * to have checked: every string of a plugin's result is held to one rule per
 * kind of string, here, and ph_op_result_clean (plugin_ops.h) applies them
 * where plugin output enters the core (the I/O engine after parse_response,
 * callbacks.c after verify_callback). Nothing else decides.
 *
 *   kind         rule                                          otherwise
 *   -----------  --------------------------------------------  ----------------------
 *   reason       1..PH_SUPTEXT_REASON_WORDS words of [a-z]+,   "supplier_refused"
 *                joined by single '_', at most
 *                PH_SUPTEXT_REASON_MAX bytes; no digit at all
 *   identifier   1..max bytes of [A-Za-z0-9] and "._:-/+="     dropped (NULL)
 *   text         valid UTF-8 without control characters, at    dropped (NULL)
 *                most max bytes, no digit run (ph_suptext_
 *                digit_run) of PH_SUPTEXT_DIGIT_RUN or more
 *   all kinds    does not contain the recharge account of the  as above
 *                exchange (ph_suptext_has_account), when known
 *
 * Why no digit at all in a reason: a reason is a word a program and a person
 * act on ("out_of_stock"); a digit adds nothing to that meaning, but digits are
 * what personal data is made of (phone numbers, ID cards, bank cards). Allowing
 * single digits would let a number through split over words ("acct_1_3_9_..."),
 * allowing no run of two would still let "a1b3c9..." through; no digit is the
 * one rule with no such gap. The bound on words keeps a reason a word, not a
 * sentence that could spell a number out.
 *
 * Identifiers (order ids, product ids) are digits by nature, so they are held
 * to their characters and length, and to not containing the account. Free text
 * (a catalog item's name) may hold short numbers ("50 CNY", "12 months") but no
 * run as long as a phone, ID or card number.
 *
 * All functions are pure and thread-safe: no state, no allocation.
 */
#ifndef PH_SUP_TEXT_H
#define PH_SUP_TEXT_H

#include <stddef.h>

#define PH_SUPTEXT_REASON_MAX   48                 /* bytes of a reason */
#define PH_SUPTEXT_REASON_WORDS 6                  /* words of a reason */
#define PH_SUPTEXT_REFUSED      "supplier_refused" /* what replaces any other reason */
#define PH_SUPTEXT_DIGIT_RUN    7                  /* digits in a run that free text may not hold */
#define PH_SUPTEXT_ACCOUNT_MIN  6                  /* account digits (or bytes) worth looking for */

/* 1 when s is a reason by the rule above; 0 otherwise (NULL included). */
int ph_suptext_reason_ok(const char *s);

/* 1 when s is an identifier of 1..max bytes by the rule above; 0 otherwise. */
int ph_suptext_id_ok(const char *s, size_t max);

/* 1 when s is free text of at most max bytes by the rule above; 0 otherwise. */
int ph_suptext_text_ok(const char *s, size_t max);

/* The longest digit run of s: digits, where a single space, '-', '.' or '/'
 * between two digits does not end the run ("139-7123-4567" is one run of 11).
 * Returns its count of digits. */
size_t ph_suptext_digit_run(const char *s);

/* 1 when s contains the account: its digits (when it has at least
 * PH_SUPTEXT_ACCOUNT_MIN) among the digits of s with everything else left out
 * ("G139x7123 4567" holds 13971234567), or the account itself, ASCII case
 * ignored (when it is at least PH_SUPTEXT_ACCOUNT_MIN bytes). 0 when s or
 * account is NULL, or the account is shorter: too short to tell apart from
 * ordinary digits. */
int ph_suptext_has_account(const char *s, const char *account);

/* Replaces, in place, every digit of each digit run (as ph_suptext_digit_run
 * counts them) of PH_SUPTEXT_DIGIT_RUN digits or more with '*'. For text the
 * core logs but cannot refuse: a plugin's own log lines. */
void ph_suptext_mask_runs(char *s);

#endif
