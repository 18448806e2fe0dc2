#include "status.h"

#include <stdarg.h>
#include <stdio.h>

const char *lt_status_str(lt_status s) {
    switch (s) {
    case LT_OK: return "ok";
    case LT_ERR_NOMEM: return "out of memory";
    case LT_ERR_ARG: return "invalid argument";
    case LT_ERR_SHAPE: return "shape mismatch";
    case LT_ERR_IO: return "input/output error";
    case LT_ERR_FORMAT: return "malformed data";
    case LT_ERR_STATE: return "invalid state";
    case LT_ERR_CANCELLED: return "cancelled";
    case LT_ERR_TIMEOUT: return "timed out";
    case LT_ERR_COUNT: break;
    }
    return "unknown status";
}

lt_status lt_errorf(lt_err *err, lt_status s, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return s;
}

void lt_err_clear(lt_err *err) {
    if (err) err->msg[0] = '\0';
}

int lt_mul_ok(long long a, long long b, long long *out) {
    long long r;
    if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r)) return 0;
    *out = r;
    return 1;
}
