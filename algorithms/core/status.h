/* status.h - status codes and a user-facing error buffer shared by every lathe module.
 *
 * Library code never exits: it returns an lt_status and, where it can say more, fills an lt_err with a
 * message a user can act on (naming the file, field or shape at fault). Only main() exits. */
#ifndef LT_STATUS_H
#define LT_STATUS_H

#include <stddef.h>

typedef enum {
    LT_OK = 0,
    LT_ERR_NOMEM,   /* an allocation failed or a size overflowed */
    LT_ERR_ARG,     /* a bad argument: out-of-range hyperparameter, unknown name, ... */
    LT_ERR_SHAPE,   /* tensor shapes that do not fit together */
    LT_ERR_IO,      /* a file or network read/write failed */
    LT_ERR_FORMAT,  /* malformed data: a corrupt image, bad JSON, a bad safetensors header */
    LT_ERR_STATE,   /* a call made in the wrong order (e.g. running a graph before planning it) */
    LT_ERR_CANCELLED, /* the caller asked the work to stop */
    LT_ERR_TIMEOUT,   /* no answer in the time allowed (e.g. no worker replied to an inference request) */
    LT_ERR_COUNT
} lt_status;

#define LT_ERR_MSG_MAX 1024

/* An error message; msg is "" while no error has been recorded. */
typedef struct {
    char msg[LT_ERR_MSG_MAX];
} lt_err;

/* Short English name of a status ("out of memory", ...). Can't fail; unknown values give "unknown status". */
const char *lt_status_str(lt_status s);

/* Records a printf-style message in err (when err is non-NULL) and returns s, so callers can write
 * `return lt_errorf(err, LT_ERR_ARG, "learning_rate must be >= 0, got %g", lr);`. */
lt_status lt_errorf(lt_err *err, lt_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Clears err (no-op on NULL). */
void lt_err_clear(lt_err *err);

/* Multiplies two sizes, returning 0 and leaving *out untouched when the product would overflow int64. */
int lt_mul_ok(long long a, long long b, long long *out);

#endif
