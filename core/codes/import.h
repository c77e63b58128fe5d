/*
 * import.h — a CSV file of card codes in, one stored batch out (or nothing).
 *
 * The whole file is checked before anything is written: every bad line, every
 * code that appears twice in the file (compared normalized, code.h: "abc-1" and
 * "ABC1" are the same code) and every code stored before is reported
 * by line number, and a file with any such line imports nothing. Codes are
 * sealed (AES-256-GCM) and hashed (HMAC-SHA256) here, on the caller's thread,
 * so the store's writer only appends.
 */
#ifndef PH_IMPORT_H
#define PH_IMPORT_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/code.h"
#include "crypto/crypto.h"
#include "codes/csv.h"
#include "store/store.h"

typedef struct ph_import_req {
    const char *supplier; /* validated by the caller against the configuration */
    const char *sku;
    const char *note;  /* may be NULL */
    int64_t unit_cost; /* fen */
    const char *csv;   /* the file's bytes; need not be NUL-terminated */
    size_t csv_len;
    size_t max_codes;       /* more rows than this: PH_ELIMIT, nothing imported */
    size_t max_errors;      /* the first bad lines listed (all are counted) */
    int64_t now;            /* ms: the batch's creation time and the expiry cut-off */
    const char *lookalikes; /* the product's look-alike rule (code.h, canonical), or NULL */
    const ph_audit *audit;  /* who imports (store.h), stored with the batch; NULL = none */
} ph_import_req;

typedef struct ph_import_result {
    uint64_t batch_id;    /* on PH_OK */
    size_t count;         /* codes stored */
    ph_csv_error *errors; /* bad lines in line order, never quoting a code */
    size_t nerrors;       /* listed */
    size_t error_count;   /* in all */
} ph_import_result;

/* Runs an import. PH_OK: the batch is stored durably. PH_EINVAL: the file has bad
 * lines (out->errors) or no codes; PH_ELIMIT: too many codes; PH_ESKU: unknown
 * product; PH_EIO/PH_ENOMEM/PH_ECRYPTO. In every failure nothing was stored.
 * out is the caller's: ph_import_result_clear. */
int ph_import_run(ph_store *s, const ph_keyring *kr, const ph_import_req *req,
                  ph_import_result *out, ph_err *err);

void ph_import_result_clear(ph_import_result *r);

#endif
