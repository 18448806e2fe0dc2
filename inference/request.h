/* request.h - the guide's real-time inference request, parsed and checked:
 *
 *     {"instances": [{"data": "<base64 of a PNG or JPEG file>"}, ...]}
 *
 * exactly as the guide's conversion script writes it (standard base64 with padding, json.dump(indent=4,
 * sort_keys=True)). Users paste base64 by hand, so the decoder also takes unpadded and URL-safe base64 and
 * ignores whitespace (spaces, tabs, CR, LF) anywhere in the string. Other keys in the request and in each
 * instance are ignored.
 *
 * Nothing a client sends can crash the parser: every failure is an lt_infer_error with the HTTP status to
 * answer (400, or 413 for a request over a size limit), the index of the instance at fault and a message
 * naming it, e.g. "instance 2: invalid base64 at character 17 ('*')". Thread-safe: no shared state. */
#ifndef LT_INFER_REQUEST_H
#define LT_INFER_REQUEST_H

#include "io/image.h"

#include <stddef.h>
#include <stdint.h>

/* What is wrong with a request; also the label of lathe_inference_errors_total in /metrics.
 * Append-only: the names are part of the metrics. */
typedef enum {
    LT_INFER_ERR_NONE = 0,
    LT_INFER_ERR_INVALID_JSON,    /* the body is not JSON */
    LT_INFER_ERR_INVALID_REQUEST, /* JSON of the wrong shape: no "instances", an instance without "data", ...
                                   */
    LT_INFER_ERR_INVALID_BASE64,  /* "data" is not base64 */
    LT_INFER_ERR_NOT_AN_IMAGE,    /* the bytes are neither PNG nor JPEG */
    LT_INFER_ERR_CORRUPT_IMAGE,   /* a PNG or JPEG that does not decode */
    LT_INFER_ERR_TOO_LARGE,       /* over a limit: request bytes, instances, image bytes or pixels (413) */
    LT_INFER_ERR_NOT_FOUND,       /* no such route (HTTP only, 404/405) */
    LT_INFER_ERR_UNAVAILABLE,     /* the server is overloaded or stopping (503) */
    LT_INFER_ERR_INTERNAL,        /* out of memory, a model failure (500) */
    LT_INFER_ERR_COUNT
} lt_infer_error_class;

/* Short snake_case name of a class ("invalid_json", ...). Can't fail. */
const char *lt_infer_error_class_str(lt_infer_error_class c);

/* A failed request: what to answer and why. */
typedef struct {
    int http_status;          /* 400, 413, 500, 503 (0 while there is no error) */
    int instance;             /* index of the instance at fault, -1 for the request as a whole */
    lt_infer_error_class cls; /* for the metrics */
    char msg[LT_ERR_MSG_MAX]; /* one line, names the instance ("instance 2: ...") when there is one */
} lt_infer_error;

/* Records an error and returns its HTTP status, so callers can write `return lt_infer_fail(e, ...)`.
 * e may be NULL. instance < 0: the request as a whole. The status follows from cls. */
int lt_infer_fail(lt_infer_error *e, lt_infer_error_class cls, int instance, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The HTTP status for a class (400, 404, 413, 500, 503). Can't fail. */
int lt_infer_error_http_status(lt_infer_error_class c);

#define LT_INFER_DEFAULT_MAX_REQUEST_BYTES ((size_t)64 * 1000 * 1000) /* 64 MB of JSON */
#define LT_INFER_DEFAULT_MAX_INSTANCES 64

/* Limits on a request. A zero field means its default. */
typedef struct {
    size_t max_request_bytes; /* the JSON body (default 64 MB) */
    int max_instances;        /* instances in one request (default 64) */
    size_t max_image_bytes;   /* one decoded (still encoded PNG/JPEG) image (default 20 MB) */
    int64_t max_pixels;       /* width * height of one image (default 50 megapixels) */
} lt_infer_limits;

/* limits with every zero field replaced by its default (limits may be NULL). Can't fail. */
lt_infer_limits lt_infer_limits_resolve(const lt_infer_limits *limits);

/* One instance: the image file the client sent, then (after lt_infer_request_decode) its pixels. */
typedef struct {
    uint8_t *bytes; /* (n_bytes) the decoded base64: a PNG or JPEG file; owned */
    size_t n_bytes;
    lt_image image; /* decoded pixels; empty until lt_infer_request_decode */
} lt_infer_instance;

/* A parsed request. Empty ({0}) before parsing and after lt_infer_request_free. */
typedef struct {
    lt_infer_instance *instances; /* (n_instances) owned */
    int n_instances;
} lt_infer_request;

/* Decodes base64 (standard or URL-safe alphabet, padding optional, whitespace ignored) into a malloc'd
 * buffer *out of *n_out bytes (caller frees; NULL with *n_out 0 for an empty input). Returns 0 on success;
 * otherwise -1 for OOM or the 1-based character position of the first problem (*out NULL), with a reason
 * in why (may be NULL, at least 96 bytes). Thread-safe. */
long long lt_infer_base64_decode(const char *s, size_t len, uint8_t **out, size_t *n_out, char *why,
                                 size_t why_size);

/* Parses body (len bytes, need not be NUL-terminated) and decodes every instance's base64, checking the
 * request's shape, the request and image byte limits and that each instance's bytes start like a PNG or
 * JPEG. Pixels are not decoded yet (see lt_infer_request_decode). On success req holds the instances and 0
 * is returned; otherwise req is empty and the HTTP status to answer is returned with e filled. */
int lt_infer_request_parse(const char *body, size_t len, const lt_infer_limits *limits, lt_infer_request *req,
                           lt_infer_error *e);

/* Decodes every instance's image into RGB pixels, checking the pixel limit from the header before any
 * pixel memory is allocated. Returns 0, or the HTTP status with e filled (the request keeps whatever did
 * decode; free it as usual). */
int lt_infer_request_decode(lt_infer_request *req, const lt_infer_limits *limits, lt_infer_error *e);

/* Frees every instance and empties req. NULL and empty requests are fine. */
void lt_infer_request_free(lt_infer_request *req);

#endif
