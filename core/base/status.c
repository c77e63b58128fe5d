#include "base/status.h"

#include <stdarg.h>
#include <stdio.h>

const char *ph_strerror(int code)
{
    switch (code) {
    case PH_OK:
        return "ok";
    case PH_EINVAL:
        return "invalid_request";
    case PH_ENOTFOUND:
        return "not_found";
    case PH_ECONFLICT:
        return "conflict";
    case PH_ENOSTOCK:
        return "out_of_stock";
    case PH_EIO:
        return "io_error";
    case PH_ENOMEM:
        return "out_of_memory";
    case PH_ECRYPTO:
        return "crypto_error";
    case PH_EVERSION:
        return "version_mismatch";
    case PH_EDUP:
        return "duplicate_code";
    case PH_ELIMIT:
        return "limit_exceeded";
    case PH_ESTATE:
        return "invalid_state";
    case PH_ESHUTDOWN:
        return "shutting_down";
    case PH_ESKU:
        return "unknown_sku";
    case PH_ENOSPC:
        return "disk_full";
    case PH_EUNAVAIL:
        return "not_leader";
    default:
        return "internal_error";
    }
}

int ph_err_set(ph_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}
