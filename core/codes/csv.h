/*
 * csv.h — parsing a card-code file (RFC 4180 CSV) into rows, line by line.
 *
 * Columns: code, then optional card_no, then optional expiry. The first line is a
 * header when its first field is the word "code" (any case, spaces around it
 * ignored); a header may name the columns in any order (code, card_no,
 * expires_at) and unknown, duplicate or unnamed header columns are errors that
 * stop the parse (PH_EINVAL): without the columns no line can be read. Those
 * messages name the column by position ("line 1: header column 3: unknown
 * name (expected code, card_no, expires_at)"), never by the name it has.
 * A line may have fewer fields than there are columns (the rest are empty),
 * never more.
 * Without a header the columns are positional. Quoted fields ("a,b", "a""b")
 * are understood; CRLF and LF both end a line; a UTF-8 BOM is skipped; blank
 * lines are skipped.
 *
 * A code or card number is 1..128 bytes of printable ASCII without spaces
 * (0x21..0x7e). An expiry is empty, "YYYY-MM-DD" (end of that day, UTC+08:00)
 * or RFC 3339 ("2027-01-31T23:59:59+08:00"); it must be after the epoch.
 *
 * Every bad line is reported with its line number (where the record starts) and
 * one reason, and the reason never quotes the field's content (it may be a code):
 * "code: empty", "code: longer than 128 bytes", "code: contains a space or
 * non-printable byte", the same for card_no, "expires_at: not a date (YYYY-MM-DD
 * or RFC 3339)", "4 fields, expected at most 3", "code: quote inside an unquoted
 * field", "card_no: text after a closing quote". Duplicate detection is
 * not done here: the import compares keyed hashes (core/codes/import.c).
 */
#ifndef PH_CSV_H
#define PH_CSV_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "crypto/code.h" /* PH_CODE_MAX */

typedef struct ph_csv_row {
    uint32_t line;    /* 1-based line number in the file */
    const char *code; /* NUL-terminated, points into the parse's buffer */
    uint16_t code_len;
    const char *card_no; /* NULL when absent or empty */
    uint16_t card_len;
    int64_t expires_at; /* ms since epoch; 0 = does not expire */
} ph_csv_row;

typedef struct ph_csv_error {
    uint32_t line;
    char reason[96]; /* e.g. "code: empty", "expires_at: not a date", "3 fields, expected at most 2"
                      */
} ph_csv_error;

typedef struct ph_csv {
    ph_csv_row *rows;
    size_t nrows;
    ph_csv_error *errors; /* the first max_errors bad lines, in file order */
    size_t nerrors;       /* how many of them are listed */
    size_t error_count;   /* how many lines were bad in all (>= nerrors) */
    char *buf;            /* private: unquoted field storage the rows point into */
    size_t buflen;        /* private: bytes of buf written, wiped by ph_csv_free */
} ph_csv;

/* Parses len bytes of data (need not be NUL-terminated). Lists at most
 * max_errors bad lines but counts them all. On PH_OK, *out is owned by the
 * caller (ph_csv_free) — also when some lines are bad: check error_count.
 * Errors: PH_EINVAL for a file that is not CSV at all (e.g. a NUL byte, an
 * unterminated quote at end of file: the message names the line), PH_ENOMEM. */
int ph_csv_parse(const char *data, size_t len, size_t max_errors, ph_csv **out, ph_err *err);

/* Wipes the field buffer (it holds codes) and frees everything. NULL is a no-op. */
void ph_csv_free(ph_csv *csv);

/* ---- the record reader underneath, for CSV files of other shapes ----------
 * (a supplier's statement: core/money/recon.h). The same reading as above —
 * quotes, CRLF or LF, a UTF-8 BOM skipped, blank lines skipped, a NUL byte or
 * an unterminated quote fatal — without any column meaning: each record is
 * handed over as its fields, the header included. */
#define PH_CSV_FIELDS_MAX 32 /* fields of a record that are kept; more are counted */
typedef struct ph_csv_record {
    uint32_t line;  /* 1-based line where the record starts */
    size_t nfields; /* fields in the record, counting those past PH_CSV_FIELDS_MAX */
    const char *field[PH_CSV_FIELDS_MAX]; /* unquoted, NUL-terminated; valid during the call */
    size_t len[PH_CSV_FIELDS_MAX];
    const char *fault;  /* a structural problem of the record ("quote inside an unquoted
                           field", "text after a closing quote"), fixed text; NULL when none */
    size_t fault_field; /* 0-based field where the fault was found */
} ph_csv_record;

/* Called once per record, in file order; a non-PH_OK return stops the read
 * and is returned (with err, which it set). */
typedef int (*ph_csv_record_fn)(void *arg, const ph_csv_record *rec, ph_err *err);

/* Reads len bytes of data record by record, calling fn for each. The field
 * buffer is wiped after each call. Returns PH_OK, fn's error, PH_EINVAL for a
 * file that is not CSV (as ph_csv_parse) or PH_ENOMEM. Any thread; no state. */
int ph_csv_records(const char *data, size_t len, ph_csv_record_fn fn, void *arg, ph_err *err);

#endif
