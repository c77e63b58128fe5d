/*
 * risk.h — issuance protection: who an order is for, and the rules that let
 * it through, hold it for review or refuse it (docs/design.md, "Risk").
 *
 * Model. An order may name its end user (`end_user` in POST /v1/orders). The
 * HTTP thread turns each identifying field into a *subject key*: the first 8
 * bytes of a keyed hash (ph_risk_key), never the value itself, so nothing in
 * memory, on disk or in a log lets a reader recover a phone number or an id.
 * Rules count orders (or fen) per subject key in a sliding window; lists block
 * or allow a subject key outright; a "related" rule catches a subject seen on
 * an order that was blocked recently.
 *
 * One decision per order (ph_risk_check):
 *   1. an allow-listed subject: allow, nothing else is evaluated;
 *   2. a block-listed subject: deny, the list entry named as the rule;
 *   3. the enabled rules, by priority then id: a rule *fires* when the order
 *      would take its count (or sum) over the limit within the window (a
 *      related rule: when a subject of its variables was on a blocked order
 *      within the window). A dry-run rule that fires is recorded and changes
 *      nothing. The first enforced rule that fires decides: deny, review, or
 *      allow (an exemption: later rules are not looked at). None: allow.
 *   4. an order that is not denied is counted, in the same critical section
 *      as the checks, in every velocity rule whose scope it matches (dry-run
 *      ones included, exempted or not): 64 requests racing on one subject
 *      with a limit of 5 get exactly 5 through.
 * A denied order counts nowhere; it is noted as blocked for the related
 * rules by the check itself, and the note is taken back with the order
 * (ph_risk_release) when it is not stored. The measure "fen" is the
 * product's face value times the quantity (ph_risk_subject.amount); a fen
 * rule neither fires for nor counts an order of 0 fen (it cannot take a sum
 * anywhere). A rule counts an order whose variable is given (keys[var] != 0)
 * and whose SKU, brand or tags match its scope. An entry at time t is in a
 * window of w ms at `now` while now - t < w.
 *
 * Exactness of the windows. A velocity rule keeps, per subject key, the times
 * (and amounts) of the orders it counted, newest first, and drops an entry
 * only when it lies outside the window or when the newer entries already
 * reach the limit on their own (then any window that holds the old one also
 * holds the newer ones, and the rule fires either way). So a check is exact
 * for any limit, never an estimate, and memory per subject is bounded by the
 * limit. Raising a limit keeps what is held: a review or dry-run rule that
 * already let more than its old limit through counts on from the entries it
 * kept (documented in docs/risk.md). One inexactness is accepted: a release
 * (ph_risk_release) after the released order's entry pushed an older entry
 * out of a review, allow or dry-run rule's counter leaves that counter one
 * short until the older entry would have left the window (a deny rule never
 * holds more than its limit, so it is exact under releases too). Likewise,
 * of two denials of one subject whose requests overlap, only the later's
 * note can be taken back: when both orders go unstored, the earlier's note
 * stands (a related rule may hold an order it would have let through; it
 * never lets one through that it should hold). Amounts: an entry keeps up
 * to 2^48 - 1 fen (2.8 trillion yuan) of an order, and a fen rule's limit is
 * taken as at most 2^48 - 2, so a larger order fires and fills any fen
 * window exactly as its true amount would; only a window whose true sum lies
 * beyond 2^48 - 2 fen is not told apart.
 *
 * Restarts. Counters live in memory; what they count is persisted with the
 * orders themselves (the order's risk record, written in the order's own
 * transaction, group-committed by the writer: no counter row per order). At
 * start the daemon feeds the orders of the longest window back, oldest first,
 * through ph_risk_replay before it takes orders; a rule counts only orders
 * placed at or after its creation, live and on replay alike.
 *
 * Ownership and threads. The daemon owns one ph_risk (ph_risk_new /
 * ph_risk_free). Every other function may be called from any thread: one
 * mutex, a leaf (nothing else is taken or called while it is held), guards
 * the rules in force, the lists, the counters and the recent blocks. Rules
 * and lists change only through ph_risk_rules_set / ph_risk_list_set, which
 * the daemon calls after the store committed the change (PH_CMD_RISK_RULE,
 * PH_CMD_RISK_LIST): the next check sees them. No clock is read here: every
 * time is an argument. The lock is never held for work that grows with the
 * number of subjects on the order path: a counter table that must grow is
 * allocated and its pages faulted in by the calling threads (ph_risk_check,
 * ph_risk_replay, ph_risk_sweep) after they let the lock go, a huge page per
 * call, and its counters move over a few per call (risk.c). So one call in a
 * few thousand while a table grows spends up to a page fault of a huge page
 * outside the lock; ph_risk_sweep and the rule changes still hold it for a
 * pass over every counter, as they always did.
 *
 * Errors: PH_OK, PH_EINVAL (a malformed rule or entry, the message naming the
 * field), PH_ENOMEM. Never exit()s.
 */
#ifndef PH_RISK_H
#define PH_RISK_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "crypto/crypto.h"

struct json_t;
struct ph_metrics;

/* The variables a rule counts by. The values are stored (order risk records,
 * list entries): never renumber. */
enum ph_risk_var {
    PH_RISK_USER = 0,    /* end_user.id */
    PH_RISK_IP = 1,      /* end_user.ip */
    PH_RISK_IP24 = 2,    /* end_user.ip's /24 (IPv4) or /64 (IPv6) */
    PH_RISK_DEVICE = 3,  /* end_user.device_id */
    PH_RISK_ACCOUNT = 4, /* the recharge account */
    PH_RISK_PHONE = 5,   /* end_user.phone, digits only */
    PH_RISK_CLIENT = 6,  /* the mall client placing the order */
    PH_RISK_VARS = 7,
};

/* Actions, weakest first. The values are stored: never renumber. */
enum ph_risk_action {
    PH_RISK_ALLOW = 1,
    PH_RISK_REVIEW = 2,
    PH_RISK_DENY = 3,
};

enum ph_risk_kind { PH_RISK_VELOCITY = 1, PH_RISK_RELATED = 2 };
enum ph_risk_scope { PH_RISK_ANY = 0, PH_RISK_SKU = 1, PH_RISK_BRAND = 2, PH_RISK_TAG = 3 };
enum ph_risk_measure { PH_RISK_ORDERS = 1, PH_RISK_FEN = 2 };
enum ph_risk_list_kind { PH_RISK_BLOCK = 1, PH_RISK_ALLOWLIST = 2 };

#define PH_RISK_ID_MAX     64      /* bytes of a rule id: [a-z0-9_.-]+ */
#define PH_RISK_SCOPE_MAX  128     /* bytes of a scope value (a SKU, a brand, "key=value") */
#define PH_RISK_NOTE_MAX   256     /* bytes of a rule's or entry's note (ops' words) */
#define PH_RISK_TAGS_MAX   16      /* tags on one order */
#define PH_RISK_TAG_MAX    64      /* bytes of one tag, "key=value" */
#define PH_RISK_HITS_MAX   8       /* fired rules recorded per decision */
#define PH_RISK_WINDOW_MAX 2592000 /* s: 30 days, the longest window */

/* "user", "ip", "ip24", "device", "account", "phone", "client"; and back
 * (-1 unknown). The same names for actions ("allow", "review", "deny"),
 * scopes, measures and lists ("block", "allow"). Static strings; "?" for an
 * unknown value. */
const char *ph_risk_var_name(int var);
int ph_risk_var_parse(const char *name);
const char *ph_risk_action_name(int action);
int ph_risk_action_parse(const char *name);

/* The subject key of one end-user value: the first 8 bytes, little-endian, of
 * ph_crypto_index(kr, "eu\n<var name>\n<value>"), never 0 (0 means "not
 * given"). The value is taken as the caller normalized it (the phone as
 * digits, an IP in its canonical text form). Pure given the keyring; any
 * thread. */
uint64_t ph_risk_key(const ph_keyring *kr, int var, const char *value, size_t len);

/* Normalizes one end-user value of variable var as the subject key takes it
 * (ph_risk_key) and masks it for output, the same way wherever a value comes
 * from (an order's end_user, a list entry typed by ops): user, device: 1..128
 * printable ASCII bytes, as given, masked "ab****yz" (first 2, last 2; "****"
 * under 8 bytes); ip: an IPv4 or IPv6 address in its canonical text
 * (inet_ntop), masked "203.0.113.*" / "2001:db8:1:2::*" (its /64); ip24: an
 * address (or its network, "203.0.113.0/24", "2001:db8::/64") taken as the
 * network's canonical text "203.0.113.0/24" or "2001:db8:1:2::/64", masked
 * like ip; account: 3..64 bytes of [A-Za-z0-9._:-] as given, masked as
 * recharge accounts are ("138****8000"); phone: 5..20 digits with an optional
 * leading '+', kept as digits, masked "138****8000" ("****" under 8 digits);
 * client: a client name (1..64 printable bytes), not personal data, shown as
 * is. Writes norm (NUL-terminated, cap >= 130) and masked; the caller wipes
 * norm after hashing it. PH_EINVAL naming what was expected, never quoting
 * the value. Pure; any thread. */
int ph_risk_value(int var, const char *value, char *norm, size_t cap, char masked[32], ph_err *err);

/* One rule, as stored (JSON in `risk_rules`) and as in force. */
typedef struct ph_risk_rule {
    char id[PH_RISK_ID_MAX + 1];
    uint32_t version; /* 1 at creation, +1 per change (the store assigns it) */
    int kind;         /* PH_RISK_VELOCITY or PH_RISK_RELATED */
    int var;          /* velocity: the variable counted by (PH_RISK_*) */
    unsigned related; /* related: bit (1u << var) per variable compared (device, ip, account) */
    int scope;        /* PH_RISK_ANY / _SKU / _BRAND / _TAG */
    char scope_value[PH_RISK_SCOPE_MAX + 1]; /* "" for any; a tag as "key=value" */
    int measure;                             /* velocity: PH_RISK_ORDERS or PH_RISK_FEN */
    int64_t limit;                           /* velocity: orders or fen, >= 0 */
    int64_t window_s;                        /* 1 .. PH_RISK_WINDOW_MAX */
    int action;                              /* PH_RISK_ALLOW / _REVIEW / _DENY */
    int dry_run;                             /* 1: record what it would do, do nothing */
    int enabled;
    int32_t priority;               /* lower first; ties by id */
    int64_t created_at, updated_at; /* ms; counts start at created_at */
    char note[PH_RISK_NOTE_MAX + 1];
} ph_risk_rule;

/* Reads a rule from its JSON object (the API's and the store's form):
 * {"id", "kind"?, "variable" | "variables", "scope"?, "measure"?, "limit",
 *  "window_s", "action", "mode"? ("enforce" | "dry_run"), "enabled"?,
 *  "priority"?, "note"?} plus, from the store, "version", "created_at",
 * "updated_at". Unknown members, an unknown variable, a negative or zero
 * window, a window over PH_RISK_WINDOW_MAX, a negative limit: PH_EINVAL with
 * the member's name first in the message ("window_s: expected 1..2592000
 * seconds"). Pure; any thread. */
int ph_risk_rule_parse(const struct json_t *j, ph_risk_rule *out, ph_err *err);

/* The rule as a new JSON object, members in a fixed order (the store writes
 * it, so the bytes are deterministic). NULL only without memory. */
struct json_t *ph_risk_rule_json(const ph_risk_rule *r);

/* One block or allow list entry. The value itself is never kept: only its
 * subject key and the masked form ops typed it as ("138****8000"). */
typedef struct ph_risk_entry {
    int list; /* PH_RISK_BLOCK or PH_RISK_ALLOWLIST */
    int var;  /* PH_RISK_* */
    uint64_t key;
    int64_t expires_at; /* ms; 0 never */
    int64_t created_at;
    char masked[32];
    char note[PH_RISK_NOTE_MAX + 1];
} ph_risk_entry;

/* What the order is, as the rules see it. Every string is borrowed for the
 * call. keys[v] == 0: variable v not given. */
typedef struct ph_risk_subject {
    uint64_t keys[PH_RISK_VARS];
    const char *sku, *brand; /* brand NULL: none */
    const char *const *tags; /* "key=value", ntags of them */
    size_t ntags;
    int64_t amount; /* fen: face value x quantity */
    int64_t now;    /* ms: the order's time */
} ph_risk_subject;

typedef struct ph_risk_hit {
    char rule[PH_RISK_ID_MAX + 1];
    int action;  /* what the rule says */
    int dry_run; /* 1: recorded only */
} ph_risk_hit;

/* A check's outcome. `rule` names what decided (a rule id, or "block:<var>" /
 * "allow:<var>" for a list entry); the counts of other people never appear.
 * `ticket` identifies what this check counted, for ph_risk_release. */
typedef struct ph_risk_decision {
    int action;                     /* PH_RISK_ALLOW when nothing fired */
    char rule[PH_RISK_ID_MAX + 16]; /* "" when nothing decided */
    size_t nhits;                   /* fired rules, in evaluation order, dry-run included */
    ph_risk_hit hits[PH_RISK_HITS_MAX];
    uint64_t ticket; /* 0: nothing counted (denied, or no rule matched) */
    uint64_t noted;  /* a denial: its note for the related rules, which ph_risk_release
                        takes back (0: none) */
} ph_risk_decision;

typedef struct ph_risk ph_risk;

/* A new engine with no rules and no lists; metrics may be NULL (else the
 * checks, decisions per action and dry-run hits are counted into it). Owned
 * by the caller. PH_ENOMEM. */
int ph_risk_new(struct ph_metrics *metrics, ph_risk **out, ph_err *err);
void ph_risk_free(ph_risk *rk);

/* Puts rules[0..n) in force, replacing the set (copied); disabled rules are
 * not in force. Counters of a rule whose id stays are kept when it counts the
 * same thing (kind, variable, scope, measure); those of a removed, disabled
 * or re-scoped rule are dropped. PH_EINVAL (an id given twice, a field out of
 * range: the set in force is kept), PH_ENOMEM. Any thread. */
int ph_risk_rules_set(ph_risk *rk, const ph_risk_rule *rules, size_t n, ph_err *err);

/* Puts the list entries in force, replacing both lists (copied). Any thread. */
int ph_risk_list_set(ph_risk *rk, const ph_risk_entry *entries, size_t n, ph_err *err);

/* Puts a whole set read from the store in force — rules and list entries as
 * ph_risk_rules_set and ph_risk_list_set would, at once — unless a set of a
 * later generation is already in force: `gen` is the store's newest event seq
 * in the snapshot the set was read from (ph_store_risk_load), so of two rule
 * changes racing to load their sets, the older never replaces the newer.
 * Returns 1 (put in force), 0 (older than what is in force: nothing changed),
 * or PH_EINVAL / PH_ENOMEM (nothing changed). Any thread. */
int ph_risk_load(ph_risk *rk, uint64_t gen, const ph_risk_rule *rules, size_t nrules,
                 const ph_risk_entry *entries, size_t nentries, ph_err *err);

/* Decides for one order and counts it unless denied (above). Never fails:
 * without memory for a counter it decides as if the counter were full
 * (fail closed) and says so in the metrics. Any thread. */
void ph_risk_check(ph_risk *rk, const ph_risk_subject *s, ph_risk_decision *d);

/* Takes back what the check did when its order is not stored (a replay of
 * an order already placed, a conflict, an error): what it counted, or, for a
 * denial, its note of the subject as blocked (the stored decision is what
 * counts: a retry denied afresh must not make the subject a suspect of the
 * related rules). s must be the subject the check got. A no-op when the
 * check counted and noted nothing (ticket and noted 0). */
void ph_risk_release(ph_risk *rk, const ph_risk_subject *s, const ph_risk_decision *d);

/* Counts a stored order at start, as its check did (action: what was decided;
 * a denied order counts nowhere), for rules created at or before s->now.
 * Feed orders oldest first. Any thread. */
void ph_risk_replay(ph_risk *rk, const ph_risk_subject *s, int action);

/* An order of this subject was blocked at review at `at` (a denied order is
 * noted by ph_risk_check and ph_risk_replay themselves): related rules see
 * its variables (all but client) for their window, if the block is not older
 * than the rule. */
void ph_risk_note_blocked(ph_risk *rk, const ph_risk_subject *s, int64_t at);

/* Drops windows, blocks and list entries that ended before now. The daemon
 * runs it from a scheduled job; checks never depend on it for correctness. */
void ph_risk_sweep(ph_risk *rk, int64_t now);

/* The longest window of the rules in force, ms (the replay's reach). */
int64_t ph_risk_reach_ms(ph_risk *rk);

typedef struct ph_risk_stats {
    size_t rules, entries, counters; /* in force / live subject windows */
    uint64_t checks, by_action[4];   /* index PH_RISK_* (0 unused) */
    uint64_t dry_run_hits, fail_closed;
    size_t moving;         /* groups whose counters are moving to a new table now */
    uint64_t grown_locked; /* tables that had to grow at once under the lock (their new
                              table was not ready in time): 0 in a healthy run */
} ph_risk_stats;
void ph_risk_stats_get(ph_risk *rk, ph_risk_stats *out);

#endif
