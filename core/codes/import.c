/*
 * import.c — CSV → sealed, hashed codes → one IMPORT command.
 */
#include "codes/import.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

/* Working state of one import; every buffer here is freed (and wiped) at the end. */
typedef struct import_job {
    const ph_import_req *req;
    ph_csv *csv;
    ph_import_code *codes;
    uint32_t *by_hash;
    uint32_t *first_of; /* row -> the first row (in file order) with its hash */
    uint8_t *stored;    /* row -> 1 when its code was stored before; NULL: not looked up */
    uint8_t *blobs;
    size_t blobs_len;
    ph_import_result *out;
    size_t cap;
    size_t source_from; /* out->errors from here on came from the current source */
} import_job;

/* The bad lines come from up to three sources (the parser, the sealing, the
 * rows' checks), each in line order: each source lists its first max_errors
 * and finish_errors keeps the first max_errors of them all, whichever source
 * they came from. */
static int add_error(import_job *j, uint32_t line, const char *reason)
{
    ph_import_result *o = j->out;
    o->error_count++;
    if (o->nerrors - j->source_from >= j->req->max_errors)
        return PH_OK;
    if (o->nerrors == j->cap) {
        ph_csv_error *g = ph_grow(o->errors, &j->cap, sizeof *g, 64);
        if (!g)
            return PH_ENOMEM;
        o->errors = g;
    }
    o->errors[o->nerrors].line = line;
    snprintf(o->errors[o->nerrors].reason, sizeof o->errors[0].reason, "%s", reason);
    o->nerrors++;
    return PH_OK;
}

static void next_source(import_job *j)
{
    j->source_from = j->out->nerrors;
}

static int cmp_error(const void *a, const void *b)
{
    const ph_csv_error *x = a, *y = b;
    return x->line < y->line ? -1 : x->line > y->line;
}

/* The listed bad lines in line order, the first max_errors of them. */
static void finish_errors(import_job *j)
{
    ph_import_result *o = j->out;
    qsort(o->errors, o->nerrors, sizeof *o->errors, cmp_error);
    if (o->nerrors > j->req->max_errors)
        o->nerrors = j->req->max_errors;
}

/* qsort_r comparator: indices by hash, then by line so the first line comes first. */
static int cmp_hash(const void *a, const void *b, void *arg)
{
    const ph_import_code *codes = arg;
    const ph_import_code *x = &codes[*(const uint32_t *)a], *y = &codes[*(const uint32_t *)b];
    int c = memcmp(x->hash, y->hash, 32);
    return c ? c : (x->line < y->line ? -1 : x->line > y->line);
}

static int seal_rows(import_job *j, const ph_keyring *kr)
{
    const ph_csv *csv = j->csv;
    size_t total = 0;
    for (size_t i = 0; i < csv->nrows; i++)
        total += 1 + csv->rows[i].code_len + csv->rows[i].card_len + PH_SEAL_OVERHEAD;
    j->codes = calloc(csv->nrows, sizeof *j->codes);
    j->by_hash = malloc(csv->nrows * sizeof *j->by_hash);
    j->first_of = malloc(csv->nrows * sizeof *j->first_of);
    j->blobs = malloc(total);
    j->blobs_len = total;
    if (!j->codes || !j->by_hash || !j->first_of || !j->blobs)
        return PH_ENOMEM;
    size_t off = 0;
    for (size_t i = 0; i < csv->nrows; i++) {
        const ph_csv_row *r = &csv->rows[i];
        ph_import_code *ic = &j->codes[i];
        ic->line = r->line;
        ic->expires_at = r->expires_at;
        size_t n = 0;
        int rc = ph_code_seal_rule(kr, j->req->lookalikes, r->code, r->code_len, r->card_no,
                                   r->card_len, j->blobs + off, &n, ic->hash);
        if (rc == PH_EINVAL) {
            /* only dashes: a bad line; a hash no other line has keeps it out of
             * the duplicate search (the file is refused anyway) */
            if (add_error(j, r->line, "code: nothing left once dashes are removed"))
                return PH_ENOMEM;
            memset(ic->hash, 0xff, sizeof ic->hash);
            memcpy(ic->hash, &i, sizeof i);
            rc = PH_OK;
        }
        if (rc)
            return rc;
        ic->sealed = j->blobs + off;
        ic->sealed_len = (uint32_t)n;
        off += n;
        j->by_hash[i] = (uint32_t)i;
    }
    return PH_OK;
}

/* Is row i's code past its expiry at the import's time? */
static int row_expired(const import_job *j, size_t i)
{
    return j->codes[i].expires_at && j->codes[i].expires_at <= j->req->now;
}

/* Finds the codes repeated inside the file in one pass over the rows sorted
 * by hash (then by line): each run of equal hashes is one code, its first row
 * the line every later repeat is reported against (first_of). O(n log n) for
 * the sort, linear after it, whatever the number of repeats (a scan back over
 * a run per repeat made a file of one code repeated n times cost n^2/2). Only
 * keyed hashes are compared: no plaintext is copied. Returns the number of
 * rows that are bad for a reason of their own: expired, or a repeat. */
static size_t sort_rows(import_job *j)
{
    size_t n = j->csv->nrows, bad = 0;
    const ph_import_code *codes = j->codes;
    qsort_r(j->by_hash, n, sizeof *j->by_hash, cmp_hash, j->codes);
    for (size_t i = 0, run = 0; i < n; i++) {
        if (i > 0 && memcmp(codes[j->by_hash[i - 1]].hash, codes[j->by_hash[i]].hash, 32) != 0)
            run = i;
        j->first_of[j->by_hash[i]] = j->by_hash[run];
    }
    for (size_t i = 0; i < n; i++)
        bad += row_expired(j, i) || j->first_of[i] != i;
    return bad;
}

/* Lists the bad rows, one reason per line, in file order so that a capped
 * list shows the first ones: expired, else a repeat of an earlier line, else
 * (when j->stored was filled) a code stored before. */
static int report_rows(import_job *j)
{
    const ph_import_code *codes = j->codes;
    for (size_t i = 0; i < j->csv->nrows; i++) {
        char reason[64];
        if (row_expired(j, i))
            snprintf(reason, sizeof reason, "expires_at: already expired");
        else if (j->first_of[i] != i)
            snprintf(reason, sizeof reason, "duplicate of line %u", codes[j->first_of[i]].line);
        else if (j->stored && j->stored[i])
            snprintf(reason, sizeof reason, "code already imported");
        else
            continue;
        if (add_error(j, codes[i].line, reason))
            return PH_ENOMEM;
    }
    return PH_OK;
}

/* For a file that is refused anyway: which codes were stored before, so one
 * answer lists every bad line (the writer names them only for a file that is
 * otherwise clean). One read snapshot, the code index only, asked in hash
 * order (a snapshot per row, with the code's batch and order read and decoded,
 * cost a million-line file some 5 s of an HTTP worker's CPU). */
static int find_stored(import_job *j, ph_store *s, ph_err *err)
{
    if (!(j->stored = malloc(j->csv->nrows)))
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    return ph_store_codes_stored(s, j->codes, j->by_hash, j->csv->nrows, j->stored, err);
}

static int store_batch(import_job *j, ph_store *s, ph_err *err)
{
    const ph_import_req *req = j->req;
    ph_cmd cmd = {.type = PH_CMD_IMPORT, .now = req->now};
    cmd.in.import.supplier = req->supplier;
    cmd.in.import.sku = req->sku;
    cmd.in.import.note = req->note;
    cmd.in.import.unit_cost = req->unit_cost;
    cmd.in.import.codes = j->codes;
    cmd.in.import.ncodes = j->csv->nrows;
    cmd.in.import.by_hash = j->by_hash;
    cmd.in.import.lookalikes = req->lookalikes;
    cmd.audit = req->audit;
    int rc = ph_store_exec(s, &cmd);
    if (rc == PH_OK) {
        j->out->batch_id = cmd.batch_id;
        j->out->count = j->csv->nrows;
    } else if (rc == PH_EDUP) {
        for (size_t i = 0; i < cmd.ndup; i++)
            if (add_error(j, cmd.dup_lines[i], "code already imported"))
                break;
        rc = ph_err_set(err, PH_EINVAL, "%zu bad line%s, nothing imported", j->out->error_count,
                        j->out->error_count == 1 ? "" : "s");
    } else if (err) {
        *err = cmd.err;
    }
    ph_cmd_clear(&cmd);
    return rc;
}

static void job_free(import_job *j)
{
    if (j->blobs)
        ph_wipe(j->blobs, j->blobs_len);
    free(j->blobs);
    free(j->codes);
    free(j->by_hash);
    free(j->first_of);
    free(j->stored);
    ph_csv_free(j->csv);
}

int ph_import_run(ph_store *s, const ph_keyring *kr, const ph_import_req *req,
                  ph_import_result *out, ph_err *err)
{
    memset(out, 0, sizeof *out);
    import_job j = {.req = req, .out = out};
    int rc = ph_csv_parse(req->csv, req->csv_len, req->max_errors, &j.csv, err);
    if (rc)
        return rc;
    if (j.csv->nrows + j.csv->error_count > req->max_codes) {
        rc = ph_err_set(err, PH_ELIMIT, "file has %zu lines; at most %zu codes per import",
                        j.csv->nrows + j.csv->error_count, req->max_codes);
        goto done;
    }
    for (size_t i = 0; i < j.csv->nerrors; i++)
        if (add_error(&j, j.csv->errors[i].line, j.csv->errors[i].reason))
            goto nomem;
    out->error_count = j.csv->error_count; /* lines beyond the listed ones still count */
    if (j.csv->nrows == 0 && out->error_count == 0) {
        rc = ph_err_set(err, PH_EINVAL, "file: no codes in it");
        goto done;
    }
    next_source(&j);
    if ((rc = seal_rows(&j, kr)) == PH_ENOMEM)
        goto nomem;
    if (rc) {
        rc = ph_err_set(err, rc, "import: cannot seal codes");
        goto done;
    }
    size_t bad_rows = sort_rows(&j);
    if ((bad_rows || out->error_count) && (rc = find_stored(&j, s, err)) != PH_OK)
        goto done;
    next_source(&j);
    if (report_rows(&j))
        goto nomem;
    if (out->error_count) {
        finish_errors(&j);
        rc = ph_err_set(err, PH_EINVAL, "%zu bad line%s, nothing imported", out->error_count,
                        out->error_count == 1 ? "" : "s");
        goto done;
    }
    rc = store_batch(&j, s, err);
    if (rc == PH_EINVAL)
        finish_errors(&j);
    goto done;
nomem:
    rc = ph_err_set(err, PH_ENOMEM, "out of memory");
done:
    job_free(&j);
    return rc;
}

void ph_import_result_clear(ph_import_result *r)
{
    free(r->errors);
    memset(r, 0, sizeof *r);
}
