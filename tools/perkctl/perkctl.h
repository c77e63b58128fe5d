/*
 * perkctl.h — what perkctl's subcommands share: the run context, the command
 * descriptor, exit statuses, and the helpers every command uses to parse its
 * options, call the server and print answers.
 *
 * Output rules every command follows:
 *  - stdout carries the answer (human format, or the server's JSON with
 *    --json); stderr carries diagnostics, always starting with "perkctl".
 *  - Card codes are printed to stdout only, and only when the server returned
 *    them (to the client that owns the order). They never go to stderr.
 *  - The token is never printed.
 *  - Text that comes from the server passes through pk_put_clean() so a broken
 *    or hostile server cannot send escape sequences to the operator's terminal.
 *
 * perkctl is single-threaded; none of these functions keeps state between
 * calls.
 */
#ifndef PK_PERKCTL_H
#define PK_PERKCTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "crypto/wipe_alloc.h" /* ph_json_free: what json_dumps returns */
#include "http.h"

/* Exit statuses. Scripts and the e2e tests rely on them: keep them stable. */
enum {
    PK_EXIT_OK = 0,            /* the server did what was asked */
    PK_EXIT_REFUSED = 1,       /* the server answered no (or answered nonsense) */
    PK_EXIT_USAGE = 2,         /* bad command line or unreadable local file; nothing sent */
    PK_EXIT_UNREACHABLE = 3,   /* no answer: connect failure, timeout, reset */
    PK_EXIT_INTERRUPTED = 130, /* SIGINT during a request (128 + SIGINT, as shells do) */
};

/* The run context main.c builds from the global options. Read-only for the
 * commands. */
typedef struct pk_ctx {
    pkh_conf http;         /* server URL, token, timeout */
    const char *url_shown; /* base URL with any user:password@ removed, for messages */
    int json;              /* --json: print the server's JSON instead of the human format */
} pk_ctx;

typedef struct pk_cmd pk_cmd;

/* A subcommand. argv[0] is the command name; options follow. Returns a
 * PK_EXIT_* status. */
typedef int pk_cmd_fn(const pk_ctx *ctx, const pk_cmd *cmd, int argc, char **argv);

struct pk_cmd {
    const char *name;    /* "import" */
    pk_cmd_fn *run;      /* the handler */
    const char *summary; /* one line for `perkctl help` */
    const char *usage;   /* the full text of `perkctl NAME --help` */
};

/* ---- the subcommands (one function each) -------------------------------- */
pk_cmd_fn pk_cmd_audit;         /* cmd_audit.c */
pk_cmd_fn pk_cmd_settle;        /* cmd_settle.c */
pk_cmd_fn pk_cmd_ledger;        /* cmd_ledger.c */
pk_cmd_fn pk_cmd_report;        /* cmd_ledger.c */
pk_cmd_fn pk_cmd_reconcile;     /* cmd_recon.c */
pk_cmd_fn pk_cmd_import;        /* cmd_batches.c */
pk_cmd_fn pk_cmd_void;          /* cmd_batches.c */
pk_cmd_fn pk_cmd_order;         /* cmd_orders.c */
pk_cmd_fn pk_cmd_orders;        /* cmd_orders.c */
pk_cmd_fn pk_cmd_order_get;     /* cmd_orders.c */
pk_cmd_fn pk_cmd_lookup;        /* cmd_lookup.c */
pk_cmd_fn pk_cmd_events;        /* cmd_events.c */
pk_cmd_fn pk_cmd_status;        /* cmd_status.c */
pk_cmd_fn pk_cmd_suppliers;     /* cmd_status.c */
pk_cmd_fn pk_cmd_products;      /* cmd_products.c */
pk_cmd_fn pk_cmd_discrepancies; /* cmd_discrep.c */
pk_cmd_fn pk_cmd_alerts;        /* cmd_alerts.c */
pk_cmd_fn pk_cmd_reviews;       /* cmd_reviews.c */
pk_cmd_fn pk_cmd_grants;        /* cmd_grants.c */
pk_cmd_fn pk_cmd_batches;       /* cmd_ops.c */
pk_cmd_fn pk_cmd_stats;         /* cmd_ops.c */
pk_cmd_fn pk_cmd_supplier;      /* cmd_ops.c */
pk_cmd_fn pk_cmd_discrepancy;   /* cmd_discrep.c */
pk_cmd_fn pk_cmd_webhooks;      /* cmd_webhooks.c */
pk_cmd_fn pk_cmd_jobs;          /* cmd_jobs.c */
pk_cmd_fn pk_cmd_sync;          /* cmd_sync.c */
pk_cmd_fn pk_cmd_pin;           /* cmd_sync.c */
pk_cmd_fn pk_cmd_risk;          /* cmd_risk.c */
pk_cmd_fn pk_cmd_snapshot;      /* cmd_snapshot.c */

/* `perkctl --version`: perkctl's version, then the server's when it answers
 * GET /v1/health (else says it is not reachable). Returns PK_EXIT_OK.
 * cmd_ops.c. */
int pk_print_version(const pk_ctx *ctx);
pk_cmd_fn pk_cmd_discrepancy;    /* cmd_discrep.c */
pk_cmd_fn pk_cmd_replenishments; /* cmd_replenish.c */

/* ---- option parsing (common.c) ------------------------------------------- */

/* Prints cmd->usage to stdout; returns PK_EXIT_OK. */
int pk_help(const pk_cmd *cmd);

/* One option of a command, declared in its table for pk_parse: `--NAME VALUE`
 * (the value, checked as below, into *value or, a whole number, into *num; the
 * last one given wins) or, with neither, a flag (*flag = 1). A table ends with
 * a NULL name. */
typedef struct pk_opt {
    const char *name;           /* without the dashes: "after" */
    const char **value;         /* where its text goes */
    long long *num;             /* where its number goes (expect set) */
    int *flag;                  /* a flag's 1 (value and num NULL) */
    const char *expect;         /* non-NULL: the value is a whole number in [min, max] and this */
    long long min, max;         /*   says what it stands for in the error ("an order id") */
    const char *const *choices; /* non-NULL (NULL-terminated): the value is one of them */
} pk_opt;

/* A table's rows: text, a whole number in [lo, hi] (what: "an order id") kept
 * as text or as a number, one of a NULL-terminated list, a flag; the two rows
 * of a paged list (--after: an id, what it names; --limit: 1 to 1000, the
 * API's page limit; both kept as text for the query); and the table's end. */
// clang-format off
#define PK_OPT_TEXT(n, v)              {.name = (n), .value = (v)}
#define PK_OPT_INT(n, v, what, lo, hi) {.name = (n), .value = (v), .expect = (what), .min = (lo), .max = (hi)}
#define PK_OPT_NUM(n, v, what, lo, hi) {.name = (n), .num = (v), .expect = (what), .min = (lo), .max = (hi)}
#define PK_OPT_CHOICE(n, v, list)      {.name = (n), .value = (v), .choices = (list)}
#define PK_OPT_FLAG(n, f)              {.name = (n), .flag = (f)}
#define PK_OPT_PAGE(after, limit, what) \
    PK_OPT_INT("after", (after), (what), 0, INT64_MAX), PK_OPT_INT("limit", (limit), "1 to 1000", 1, 1000)
#define PK_OPT_END                     {.name = NULL}
// clang-format on

/* Where pk_parse puts positional arguments: the first max in order into
 * args[0..max) (the others NULL); one more is a usage error, `extra` its
 * message (a format with one %s for the argument; NULL: "unexpected argument
 * '%s'"). */
typedef struct pk_pos {
    const char **args;
    size_t max;
    const char *extra;
} pk_pos;

/* Parses a command's argv (argv[0] its name) by its option table (NULL: only
 * --help) and pos (NULL: no positional argument). -1 when the command goes on,
 * else the exit status it ends with: --help printed, or a usage error that
 * names the option (unknown, without its value, or with a value that is not
 * what it expects: "--limit: expected 1 to 1000, got '0'") or the unexpected
 * argument. Never echoes an unknown option's value. */
int pk_parse(const pk_cmd *cmd, int argc, char **argv, const pk_opt *opts, const pk_pos *pos);

/* The arguments of a command whose only option is --help: pk_parse with no
 * option table and up to max positional arguments into args[0..max). */
int pk_args(const pk_cmd *cmd, int argc, char **argv, const char **args, size_t max);

/* Prints "perkctl CMD: <message>" and a pointer to --help on stderr;
 * returns PK_EXIT_USAGE. */
int pk_usage_error(const pk_cmd *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Turns getopt_long's '?' (unknown option) or ':' (missing value) into a
 * usage error naming the option; call it right after getopt_long returned c,
 * with the argv it was given. Returns PK_EXIT_USAGE. */
int pk_getopt_error(const pk_cmd *cmd, int c, char **argv);

/* Parses a whole decimal integer in [min, max] into *out. Returns 0, or -1
 * (empty, trailing junk, out of range). */
int pk_parse_int(const char *s, long long min, long long max, long long *out);

/* True when s is an amount as the API writes money: digits, optionally '.'
 * and one or two more ("19.80", "30", "0.5"), at most 13 integer digits. */
int pk_money_valid(const char *s);

/* ---- calling the server (common.c) --------------------------------------- */

/* Sends req and sorts the outcome into an exit status:
 *  PK_EXIT_OK          2xx with a JSON object body;
 *  PK_EXIT_REFUSED     any other status: prints "perkctl: CODE: MESSAGE
 *                      (request ID)" on stderr from the error body; or a 2xx
 *                      whose body is not a JSON object;
 *  PK_EXIT_UNREACHABLE no response: prints "perkctl: cannot reach URL: ...";
 *  PK_EXIT_INTERRUPTED a blocked SIGINT/SIGTERM arrived (prints nothing).
 * *resp is filled in every case and owned by the caller (pkh_response_free),
 * so a command can still read an error body, e.g. the bad lines of a CSV. */
int pk_call(const pk_ctx *ctx, const pkh_request *req, pkh_response *resp);

/* Serializes body (reference stolen, even on failure) and sends it as
 * application/json through pk_call(). The serialized copy is wiped once sent:
 * a lookup body carries a card code. Same returns and ownership as pk_call(). */
int pk_call_json(const pk_ctx *ctx, const char *method, const char *path, json_t *body,
                 pkh_response *resp);

/* Prints the request id as " (request ID)" when there is one: from the JSON
 * body's "request_id", else the X-Request-Id header. */
void pk_print_request_id(FILE *f, const pkh_response *resp);

/* --json output: writes the body exactly as received, plus a newline when it
 * lacks one. Nothing when there is no body. */
void pk_print_raw(const pkh_response *resp);

/* ---- printing (common.c) ------------------------------------------------- */

/* Writes s with control characters replaced by '?'; newlines are kept when
 * keep_newlines is set (redemption guides have several lines). */
void pk_put_clean(FILE *f, const char *s, int keep_newlines);

/* printf into one line, cleaned as pk_put_clean() does, then '\n'. For lines
 * that mix our words with strings from the server. */
void pk_line(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Renders obj[key] as text: a string as it is (pointer into obj, valid while
 * obj lives), an integer, real or boolean into buf, an array of scalars as
 * "a,b,c" into buf. Missing, null or a nested object gives "-". */
const char *pk_field(const json_t *obj, const char *key, char *buf, size_t len);

/* True when obj[key] exists and is neither null nor "". */
int pk_has(const json_t *obj, const char *key);

/* Prints "label:" padded to a fixed column, then value cleaned, then '\n'. */
void pk_kv(FILE *f, const char *label, const char *value);

/* Same, for obj[key]; prints nothing when the field is absent or null. */
void pk_kv_field(FILE *f, const char *label, const json_t *obj, const char *key);

/* Terminal columns taken by the first len bytes of a UTF-8 string: East
 * Asian wide characters (the Chinese product names) take two; malformed bytes
 * one each. */
size_t pk_display_width(const char *s, size_t len);

/* Prints text word-wrapped to width columns, each line indented, keeping the
 * text's own line breaks; cleaned as pk_put_clean() does. For redemption
 * guides, which arrive as one long paragraph. */
void pk_print_wrapped(FILE *f, const char *text, size_t indent, size_t width);

/* A left-aligned text table. Cells are copied (and cleaned) when added, so the
 * JSON they came from may be freed before printing. */
typedef struct pk_table {
    size_t ncols; /* set by pk_table_init */
    size_t nrows; /* rows added, the header included */
    size_t cap;   /* cells allocated */
    char **cells; /* row-major; owned */
    int failed;   /* an allocation failed: pk_table_print prints nothing */
} pk_table;

/* Starts a table whose first row is the header (ncols names). */
void pk_table_init(pk_table *t, size_t ncols, const char *const *header);
/* Adds a row of t->ncols cells; NULL cells print as "-". */
void pk_table_add(pk_table *t, const char *const *cells);
/* Prints the rows with columns padded to their widest cell; the last column
 * is not padded, so long names and error texts go there. Returns 0, or -1
 * when an earlier allocation failed (nothing printed). */
int pk_table_print(const pk_table *t, FILE *f);
/* Frees the cells; the table may be reused after pk_table_init. */
void pk_table_free(pk_table *t);

/* ---- list commands ---------------------------------------------------------- */

/* One column of a pk_list table: its header and what it shows, the row's
 * member `key` (a dotted path reaches into an object: "stock.available"), or,
 * with fmt, fmt's text (written into buf, or a constant). */
typedef struct pk_column {
    const char *header;
    const char *key;
    const char *(*fmt)(const json_t *row, char *buf, size_t len);
} pk_column;

#define PK_LIST_COLS_MAX 16

/* The one shape of a list command: calls req (a GET), prints the server's JSON
 * as is with --json, else the array `list_key` of the answer as a table of
 * cols (ncols <= PK_LIST_COLS_MAX; rows the keep function refuses are left out
 * when keep is non-NULL), or `empty` when no row is shown; then "more: --after
 * N" when the answer has an integer next_after and does not say more: false.
 * Returns a PK_EXIT_* status. */
int pk_list(const pk_ctx *ctx, const pkh_request *req, const char *list_key, const pk_column *cols,
            size_t ncols, int (*keep)(const json_t *row), const char *empty);

#endif
