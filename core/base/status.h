/*
 * status.h — status codes and the error buffer every core module reports through.
 *
 * Every fallible core function returns an int: PH_OK (0) on success, or one of
 * the negative PH_E* codes below. When the caller passes a non-NULL ph_err, the
 * function also writes a one-line, human-readable message into it that names
 * what was wrong and where (field, line, supplier). Messages never contain a
 * card code, an account number or a key: they are logged and returned to
 * clients as they are.
 *
 * Library code never calls exit(); only core/daemon/main.c decides to stop the process.
 */
#ifndef PH_STATUS_H
#define PH_STATUS_H

#include <stddef.h>

enum {
    PH_OK = 0,
    PH_EINVAL = -1,    /* malformed or out-of-range input */
    PH_ENOTFOUND = -2, /* no such object (or not visible to this client) */
    PH_ECONFLICT = -3, /* same idempotency key with a different request */
    PH_ENOSTOCK = -4,  /* not enough available codes; nothing was reserved */
    PH_EIO = -5,       /* file system or LMDB failure */
    PH_ENOMEM = -6,    /* allocation failed */
    PH_ECRYPTO = -7,   /* key missing, authentication tag mismatch, RNG failure */
    PH_EVERSION = -8,  /* on-disk schema or plugin ABI not compatible */
    PH_EDUP = -9,      /* duplicate card code */
    PH_ELIMIT = -10,   /* a configured limit was exceeded */
    /* -11 and -12 are unused: authentication (401) and scopes (403) are answered
     * by http_api.c itself, never reported as a status by a module. */
    PH_ESTATE = -13,    /* operation not allowed in the object's current state */
    PH_ESHUTDOWN = -14, /* the component is stopping and takes no new work */
    PH_ESKU = -15,      /* unknown SKU, or one that cannot be ordered this way */
    PH_ENOSPC = -16,    /* the data directory's disk (or quota) is full: nothing was stored */
    PH_EUNAVAIL = -17,  /* replication: this node may not write now (a standby, a lost lease,
                           the stream unreachable): nothing was stored; the leader may take it */
};

/* Message buffer filled by a failing call. Caller-owned; usually on the stack. */
typedef struct ph_err {
    int code;      /* the PH_E* code also returned by the call */
    char msg[512]; /* NUL-terminated, one line, never holds a secret */
} ph_err;

/* Returns a static, never-NULL name for a status code ("not_found", ...).
 * The names are the `error` values of the HTTP API. */
const char *ph_strerror(int code);

/* Fills err (if non-NULL) with code and a printf-style message; returns code,
 * so a failure path reads `return ph_err_set(err, PH_EINVAL, "...", ...);`. */
int ph_err_set(ph_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
