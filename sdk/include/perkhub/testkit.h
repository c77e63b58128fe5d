/*
 * testkit.h — the perkhub plugin test kit: run a plugin's callbacks in a unit
 * test against the core's REAL host table, from recorded exchanges.
 *
 * A plugin's test compiles the plugin's sources into the test binary and hands
 * the kit the descriptor. The kit does what perkhubd does at load and start:
 * the loader's descriptor checks (ph_plugin_wrap: ABI, capabilities, ops,
 * schema), config validation against the schema (ph_plugin_conf_resolve),
 * init with the per-instance host table (ph_plugin_start). So the host
 * functions, the allocator's accounting, the log format and the config
 * refusals a test sees are exactly those of the daemon. No network, no daemon,
 * no dlopen.
 *
 *     static const char *const kv[] = {"merchant_id", "m1", "api_key", "k3y", NULL};
 *     char err[256];
 *     phtk *tk = phtk_open(perkhub_plugin_entry(), kv, err, sizeof err);
 *     struct perkhub_op op = {.kind = PERKHUB_OP_RECHARGE, .order_ref = "A1", ...};
 *     struct perkhub_request req;
 *     cr_assert_eq(phtk_build(tk, &op, &req), PERKHUB_OK);
 *     size_t len;
 *     char *body = phtk_fixture(FIXTURE_DIR "/recharge_ok.json", &len);
 *     struct perkhub_result res;
 *     cr_assert_eq(phtk_parse(tk, &op, 200, body, len, &res), PERKHUB_OK);
 *     ...
 *     phtk_result_clear(tk, &res);
 *     phtk_request_clear(tk, &req);
 *     free(body);
 *     phtk_close(tk);
 *
 * OWNERSHIP. A phtk is the caller's until phtk_close. Requests, results and
 * replies the plugin filled hold blocks of the instance's host allocator: give
 * them back with phtk_request_clear / phtk_result_clear / phtk_reply_clear
 * (never free(3)); blocks still held at phtk_close are reclaimed and logged as
 * plugin.leak, and phtk_blocks counts them for leak assertions. Strings the
 * kit returns belong to the kit unless the comment says "caller frees".
 *
 * THREADS. A phtk is used from one thread at a time; several phtk may live side
 * by side (one per plugin instance), as suppliers do in the daemon.
 *
 * RETURN VALUES. Functions that call the plugin return what the plugin
 * returned (enum perkhub_status); PERKHUB_ERR_UNSUPPORTED when the plugin has
 * no such callback.
 */
#ifndef PERKHUB_TESTKIT_H
#define PERKHUB_TESTKIT_H

#include <stddef.h>
#include <stdint.h>

#include <perkhub/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct phtk phtk;

/* Checks desc as the loader does, resolves the config kv against its schema
 * and calls init. kv is {"key", "value", ..., NULL} (NULL or {NULL} for no
 * config); values of SECRET keys are given in plain text (test only: the kit
 * passes them as resolved secrets; perkhubd itself takes only env:/file:
 * references). The supplier id in log lines is "test".
 * Returns a new kit the caller owns (phtk_close), or NULL with a one-line
 * reason in err (errlen bytes, may be NULL/0): a refused descriptor, a config
 * the schema refuses, init's own error, or out of memory. */
phtk *phtk_open(const struct perkhub_plugin *desc, const char *const *kv, char *err, size_t errlen);

/* Calls the plugin's shutdown, reclaims what it leaked (logged as
 * plugin.leak) and frees the kit. NULL is a no-op. */
void phtk_close(phtk *tk);

/* host->now_ms returns ms from now on (0 = the real clock again). */
void phtk_set_now(phtk *tk, int64_t ms);

/* The instance's host table, as the plugin received it at init. Owned by tk,
 * valid until phtk_close. Use it to call host functions directly. */
const struct perkhub_host *phtk_host(phtk *tk);

/* What init put in *instance (may be NULL). Owned by the plugin. */
void *phtk_instance(phtk *tk);

/* Zeroes *req, then calls build_request with a copy of *op whose struct_size
 * is set to sizeof(struct perkhub_op) when the test left it 0. On return req
 * holds host blocks: the caller gives them back with phtk_request_clear, also
 * when the plugin failed. */
int phtk_build(phtk *tk, const struct perkhub_op *op, struct perkhub_request *req);

/* Initializes *res (ph_op_result_init: -1 for the "unknown" int64 fields),
 * then calls parse_response with http_status and a NUL-terminated private
 * copy of the len bytes at body (so a plugin reading past len is caught by
 * ASan), without response headers. body is only read; NULL reads as an
 * empty body. The caller gives res
 * back with phtk_result_clear, also when the plugin failed. */
int phtk_parse(phtk *tk, const struct perkhub_op *op, int http_status, const char *body, size_t len,
               struct perkhub_result *res);

/* Initializes *res, then calls verify_callback with a copy of *cb whose body
 * is a NUL-terminated private copy and whose NULL query / content_type /
 * method read as "", "" and "POST" (as the core passes them). cb is only
 * read. The caller gives res back with phtk_result_clear. */
int phtk_verify(phtk *tk, const struct perkhub_callback *cb, struct perkhub_result *res);

/* Zeroes *reply, then calls serve_local. req is only read (typically what
 * phtk_build produced). The caller gives reply back with phtk_reply_clear. */
int phtk_serve(phtk *tk, const struct perkhub_request *req, struct perkhub_local_reply *reply);

/* Give back (host->mem_free, wiping bodies and codes) every block the plugin
 * stored in the struct, and reset it. Safe on an already cleared struct. */
void phtk_request_clear(phtk *tk, struct perkhub_request *req);
void phtk_result_clear(phtk *tk, struct perkhub_result *res);
void phtk_reply_clear(phtk *tk, struct perkhub_local_reply *reply);

/* Every line the instance logged so far (the core's log format, one line per
 * call: "ts=... level=info msg=plugin.<event> supplier=test plugin=<name> ...",
 * leak reports included), NUL-terminated; "" when nothing. Owned by tk, valid
 * until the next phtk_log or phtk_close. Use it to assert that a secret never
 * reached a log line. */
const char *phtk_log(phtk *tk);

/* The number of host blocks the instance holds now: compare before and after a
 * call plus its clear to catch a leak. */
size_t phtk_blocks(phtk *tk);

/* Reads the whole file at path (a recorded response, a callback body) into a
 * new NUL-terminated buffer the caller frees (free(3)); *len (may be NULL) gets
 * its length without the NUL. NULL when the file cannot be read. */
char *phtk_fixture(const char *path, size_t *len);

/* The value of header `name` (case-insensitive, without ':') in req: the text
 * after "Name:" and its leading blanks, pointing into req->headers (valid as
 * long as req is). NULL when req has no such header. */
const char *phtk_header(const struct perkhub_request *req, const char *name);

/* Runs the loader's checks on desc (ABI, name, init/shutdown, capabilities and
 * ops rules, schema) without calling anything of the plugin. Returns 0 when
 * perkhubd would load it, else a negative PH_E* code with the loader's message
 * in err (errlen bytes, may be NULL/0). */
int phtk_conformance(const struct perkhub_plugin *desc, char *err, size_t errlen);

/* What phtk_expect_descriptor wants of a descriptor. The ops flags say
 * whether each callback must be set (1) or must be NULL (0). */
struct phtk_descriptor_want {
    const char *name;
    uint16_t abi_major;
    uint16_t abi_minor;
    uint64_t capabilities; /* exactly these PERKHUB_CAP_* bits */
    uint32_t processing_window_s;
    uint32_t query_delay_ms;
    int build_request;
    int parse_response;
    int verify_callback;
    int serve_local;
};

/* Runs phtk_conformance on desc, then compares the descriptor as the core reads
 * it (the loader's copy: members beyond desc->struct_size read as 0, callbacks
 * beyond ops->struct_size as NULL) with *want: name, abi_major, abi_minor,
 * capabilities, processing_window_s, query_delay_ms and whether build_request,
 * parse_response, verify_callback and serve_local are set. Both are only read.
 * Returns 0 when everything matches (err gets ""), else -1 with a one-line
 * message in err (errlen bytes, may be NULL/0) naming the first difference,
 * or the loader's refusal when desc does not conform (also -1 when desc or
 * want is NULL). */
int phtk_expect_descriptor(const struct perkhub_plugin *desc,
                           const struct phtk_descriptor_want *want, char *err, size_t errlen);

/* Expects phtk_open(desc, kv) to refuse: the refusal must contain needle (the
 * config key it should name) and none of secrets, a NULL-terminated list of
 * strings that must never be quoted (NULL for none; "" entries are skipped).
 * Nothing is kept: an instance that wrongly started is closed at once.
 * Returns 0 when refused as expected, with the refusal message in err (for
 * further checks); else -1 with a one-line reason in err (errlen bytes, may be
 * NULL/0): the config was accepted, the message lacks needle (quoted), or it
 * quotes secret #i (the secret itself is never copied to err). -1 also when
 * needle is NULL. */
int phtk_expect_refused(const struct perkhub_plugin *desc, const char *const *kv,
                        const char *needle, const char *const *secrets, char *err, size_t errlen);

/* =========================================================================
 * THE CONFORMANCE SUITE
 *
 * One call (or one macro, PHTK_CONFORMANCE) runs the checks every adapter must
 * pass over the plugin's own fixtures, the mistakes that cost a double
 * recharge or a silent failover:
 *
 *   ambiguity   for each order operation, every proper prefix of its good
 *               reply, a set of garbage bodies, the author's unknown-code
 *               reply and undocumented 4xx statuses come back AMBIGUOUS
 *               (never FAILED or RETRYABLE: both tell the core "not done").
 *   queries     the required "not found" reply reads PERKHUB_OK +
 *               STATE_NOT_FOUND; prefixes of it, garbage and an unknown code
 *               never read as settled (FAILED or SUCCEEDED).
 *   signatures  each request vector's text (computed by the author outside C,
 *               docs/sdk.md shows a Python one-liner) appears verbatim in the
 *               request; every good callback verifies; each single-field
 *               alteration of a callback (body fields at any depth, query
 *               fields, the signature header), the same callback at a stale
 *               clock, and the second callback carrying the first one's
 *               signature do not.
 *   secrets     no canary (each SECRET config value, each op's account and
 *               code, each delivered code, the spec's own canaries; values
 *               shorter than 4 bytes are skipped) in any reason, next_state or
 *               log line of any run.
 *   memory      after every call and its clear the instance holds as many host
 *               blocks as before, and no plugin.bad_free was logged (a string
 *               from malloc handed to the core).
 *   determinism building a request twice at the same clock gives the same
 *               method, URL, headers and body.
 *
 * A spec that lacks what the plugin's capabilities call for (an order
 * operation per order capability, the query's not-found reply, two good
 * callbacks and sign_field, a request vector unless the plugin is LOCAL or
 * has no operation) fails the suite too: a check
 * that cannot run is a failure, never a pass.
 * ========================================================================= */

/* A recorded reply: the file `fixture` (read with phtk_fixture), or `body`
 * when fixture is NULL. http_status 0 means 200. */
struct phtk_reply {
    int http_status;
    const char *fixture;
    const char *body;
};

/* An order operation (CARD_ORDER or RECHARGE) and its replies. */
struct phtk_suite_order {
    struct perkhub_op op;
    int64_t now_ms;                 /* the clock while building and parsing; 0 real clock */
    struct phtk_reply good;         /* a reply the plugin reads as PERKHUB_OK */
    struct phtk_reply unknown_code; /* required: a well-formed reply (signed, where replies
                                       are) whose status code the protocol does not document */
    const int *documented_4xx;      /* 0-ended HTTP statuses the protocol documents for this
                                       operation (exempt from the 4xx sweep); NULL none */
};

/* A request signature vector: building op at now_ms must give a request whose
 * URL, one header line or body contains `want` verbatim (case included). */
struct phtk_suite_vector {
    struct perkhub_op op;
    int64_t now_ms;
    const char *want;
};

/* A good callback, valid at now_ms. The body is the file body_fixture, or
 * cb.body when body_fixture is NULL. */
struct phtk_suite_callback {
    struct perkhub_callback cb;
    const char *body_fixture;
    int64_t now_ms;
};

struct phtk_suite {
    const struct perkhub_plugin *desc; /* PHTK_CONFORMANCE: NULL means perkhub_plugin_entry() */
    const char *const *config;         /* as phtk_open's kv */
    const char *const *canaries;       /* NULL-ended extra secrets to scan for; may be NULL */

    const struct phtk_suite_order *orders; /* one per order capability at least */
    size_t norders;
    const struct phtk_suite_vector *vectors; /* at least one unless the plugin is LOCAL */
    size_t nvectors;

    /* PERKHUB_CAP_ORDER_QUERY: the query op, the required not-found reply and,
     * optionally, a reply with an undocumented code. */
    struct perkhub_op query;
    int64_t query_now_ms;
    struct phtk_reply query_not_found;
    struct phtk_reply query_unknown_code;

    /* PERKHUB_CAP_CALLBACK: at least two good callbacks with different
     * signatures; where the signature travels: "header:Name", "query:key" or a
     * body field's name (a dotted path for a nested JSON field: "data.sign"). */
    const struct phtk_suite_callback *callbacks;
    size_t ncallbacks;
    const char *sign_field;
    const char *const *unsigned_fields; /* NULL-ended fields the protocol does not sign
                                           (altering them may verify); same spelling */
    int64_t stale_ms; /* verifying at now_ms + stale_ms must fail; 0 means one day */
};

/* The request vector check alone, for a unit test: builds op on tk at the
 * clock now_ms (0: the real clock; the kit's clock is left so) and wants
 * `want` verbatim (case included) in the URL, one header line or the body —
 * typically "sign=<what Python's hashlib computed>". Returns 0, or -1 with a
 * one-line reason in err (errlen bytes, may be NULL/0): build_request's
 * status, or the text missing (want quoted; never the request). */
int phtk_expect_request_text(phtk *tk, const struct perkhub_op *op, int64_t now_ms,
                             const char *want, char *err, size_t errlen);

/* Number of elements of an array, for the counts above. */
#define PHTK_N(a) (sizeof(a) / sizeof((a)[0]))

/* Runs every check of the suite on a fresh instance (phtk_open(desc, config)).
 * Returns the number of failed checks (0: the plugin conforms) and writes one
 * line per failure into report (len bytes, may be NULL/0; "" when none): the
 * check, the fixture or field, what came back and what was wanted; never a
 * canary, a request body or a callback body. Returns at least 1 when the
 * instance cannot be opened. Not thread-safe with other uses of the same
 * fixtures; allocates with malloc (test code). */
int phtk_suite_run(const struct phtk_suite *spec, char *report, size_t len);

/* A Criterion test `suite_name.conformance` running phtk_suite_run on spec (a
 * struct phtk_suite; a NULL desc reads as this binary's perkhub_plugin_entry()):
 * include <criterion/criterion.h> before using it. */
#define PHTK_CONFORMANCE(suite_name, spec)                                                         \
    Test(suite_name, conformance)                                                                  \
    {                                                                                              \
        static char phtk_report_[16384];                                                           \
        struct phtk_suite phtk_spec_ = (spec);                                                     \
        if (!phtk_spec_.desc)                                                                      \
            phtk_spec_.desc = perkhub_plugin_entry();                                              \
        int phtk_failed_ = phtk_suite_run(&phtk_spec_, phtk_report_, sizeof phtk_report_);         \
        cr_assert_eq(phtk_failed_, 0, "%d conformance check(s) failed:\n%s", phtk_failed_,         \
                     phtk_report_);                                                                \
    }

#ifdef __cplusplus
}
#endif

#endif /* PERKHUB_TESTKIT_H */
