/*
 * recon.h — a supplier's statement read into checked lines (core/money/README.md).
 *
 * A statement CSV has a header line naming its columns; the supplier's
 * mapping (config.h, ph_statement_conf) says which of them hold our reference,
 * the supplier's order id, the amount, the time and the status. Other columns
 * are ignored, so a supplier's full export imports as is. Every line is
 * checked before anything is stored: a bad line is reported with its line,
 * its column (1-based, as a spreadsheet counts) and our name of the field,
 * and one bad line refuses the whole statement (docs/design.md rule 4). No
 * message quotes a field of the file.
 *
 * Thread safety: every function is pure (no state), any thread.
 */
#ifndef PH_RECON_H
#define PH_RECON_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "config/config.h"
#include "store/store.h"

#define PH_STMT_LINES_MAX 200000 /* lines of one statement */

typedef struct ph_stmt_error {
    uint32_t line;   /* 1-based line of the file */
    uint32_t column; /* 1-based column, 0 for the line as a whole */
    char field[24];  /* "ref", "supplier_order_id", "amount", "time", "status"; "" */
    char reason[96]; /* what is wrong, fixed text */
} ph_stmt_error;

typedef struct ph_statement {
    ph_recon_line *lines; /* in file order */
    size_t nlines;
    ph_stmt_error *errors; /* the first max_errors bad lines */
    size_t nerrors;
    size_t error_count; /* bad lines in all (>= nerrors) */
    uint8_t sha256[32]; /* of the bytes read (CSV), or of the lines (plugin) */
} ph_statement;

/* Reads a statement CSV of len bytes for the period [from, to) (ms) under the
 * mapping st. A line's time, when the mapping has a time column, must fall in
 * the period. On PH_OK *out is the caller's (ph_statement_free), also when
 * lines are bad: check error_count. Errors: PH_EINVAL for a file that cannot
 * be read line by line (not CSV, no header, a configured column missing from
 * the header, more than PH_STMT_LINES_MAX lines: the message names the line),
 * PH_ENOMEM. */
int ph_statement_parse(const ph_statement_conf *st, const char *data, size_t len, int64_t from,
                       int64_t to, size_t max_errors, ph_statement **out, ph_err *err);

/* The statement lines a plugin fetched, checked by the same rules (line
 * numbers are their 1-based positions). The digest covers the lines' canonical
 * form, so the same answer imports once. Ownership as ph_statement_parse;
 * lines holds n entries whose strings the caller owns. */
typedef struct ph_stmt_input {
    const char *ref, *supplier_order_id; /* NULL = none */
    int64_t amount;                      /* fen */
    int64_t time;                        /* ms; -1 none */
    int charged;
} ph_stmt_input;
int ph_statement_from_lines(const ph_stmt_input *lines, size_t n, int64_t from, int64_t to,
                            size_t max_errors, ph_statement **out, ph_err *err);

void ph_statement_free(ph_statement *s);

/* A statement period's bound as a request gives it: an RFC 3339 time, or a
 * date "YYYY-MM-DD" meaning the START of that day at offset_min minutes east
 * of UTC (the supplier's statement.utc_offset: its own business day). 0 with
 * *ms, or -1 for anything else (NULL, an impossible date). Pure. */
int ph_statement_bound(const char *s, int offset_min, int64_t *ms);

#endif
