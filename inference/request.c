/* request.c - the guide's {"instances": [{"data": "<base64>"}]} request: JSON, base64 and image checks. */
#include "request.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ---- */

static const char *const class_names[LT_INFER_ERR_COUNT] = {
    "none",          "invalid_json", "invalid_request", "invalid_base64", "not_an_image",
    "corrupt_image", "too_large",    "not_found",       "unavailable",    "internal",
};

const char *lt_infer_error_class_str(lt_infer_error_class c) {
    return (unsigned)c < LT_INFER_ERR_COUNT ? class_names[c] : "unknown";
}

int lt_infer_error_http_status(lt_infer_error_class c) {
    switch (c) {
    case LT_INFER_ERR_NONE:
        return 200;
    case LT_INFER_ERR_TOO_LARGE:
        return 413;
    case LT_INFER_ERR_NOT_FOUND:
        return 404;
    case LT_INFER_ERR_UNAVAILABLE:
        return 503;
    case LT_INFER_ERR_INTERNAL:
        return 500;
    default:
        return 400;
    }
}

int lt_infer_fail(lt_infer_error *e, lt_infer_error_class cls, int instance, const char *fmt, ...) {
    int status = lt_infer_error_http_status(cls);
    if (!e) return status;
    e->http_status = status;
    e->instance = instance;
    e->cls = cls;
    size_t off = 0;
    if (instance >= 0) off = (size_t)snprintf(e->msg, sizeof e->msg, "instance %d: ", instance);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg + off, sizeof e->msg - off, fmt, ap);
    va_end(ap);
    return status;
}

lt_infer_limits lt_infer_limits_resolve(const lt_infer_limits *limits) {
    lt_infer_limits l = limits ? *limits : (lt_infer_limits){0};
    if (l.max_request_bytes == 0) l.max_request_bytes = LT_INFER_DEFAULT_MAX_REQUEST_BYTES;
    if (l.max_instances <= 0) l.max_instances = LT_INFER_DEFAULT_MAX_INSTANCES;
    if (l.max_image_bytes == 0) l.max_image_bytes = LT_IMAGE_DEFAULT_MAX_BYTES;
    if (l.max_pixels <= 0) l.max_pixels = LT_IMAGE_DEFAULT_MAX_PIXELS;
    return l;
}

/* ---- base64 ---- */

/* The 6-bit value of c in either alphabet (standard "+/" or URL-safe "-_"), -1 for anything else. */
static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

static int b64_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

/* Describes character c for a message: 'x' when printable, else its byte value. */
static void describe_char(unsigned char c, char *buf, size_t size) {
    if (c >= 0x20 && c < 0x7f)
        snprintf(buf, size, "'%c'", c);
    else
        snprintf(buf, size, "byte 0x%02X", c);
}

/* Validates s and counts the bytes it decodes to. Returns 0, or the 1-based position of the first problem
 * with a reason in why. */
static long long b64_scan(const char *s, size_t len, size_t *n_out, char *why, size_t why_size) {
    size_t sextets = 0, pad = 0, first_pad = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (b64_space(c)) continue;
        if (c == '=') {
            if (pad == 0) first_pad = i;
            pad++;
            continue;
        }
        char d[16];
        describe_char(c, d, sizeof d);
        if (b64_value(c) < 0) {
            if (why) snprintf(why, why_size, "invalid base64 character %s", d);
            return (long long)i + 1;
        }
        if (pad > 0) {
            if (why) snprintf(why, why_size, "base64 data %s after the '=' padding", d);
            return (long long)i + 1;
        }
        sextets++;
    }
    size_t rem = sextets % 4;
    if (rem == 1) {
        if (why)
            snprintf(why, why_size, "truncated base64: %zu characters leave one dangling character", sextets);
        return (long long)len > 0 ? (long long)len : 1;
    }
    /* padding, when present, completes the last group exactly: "xx==" or "xxx=" */
    if (pad > 0 && (rem == 0 || pad != 4 - rem)) {
        if (why) snprintf(why, why_size, "wrong base64 padding: %zu '=' after %zu characters", pad, sextets);
        return (long long)first_pad + 1;
    }
    *n_out = sextets / 4 * 3 + (rem ? rem - 1 : 0);
    return 0;
}

/* Decodes an already scanned s into out (n_out bytes). */
static void b64_decode_into(const char *s, size_t len, uint8_t *out, size_t n_out) {
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len && o < n_out; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) continue; /* whitespace and padding */
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
}

long long lt_infer_base64_decode(const char *s, size_t len, uint8_t **out, size_t *n_out, char *why,
                                 size_t why_size) {
    *out = NULL;
    *n_out = 0;
    size_t n = 0;
    long long pos = b64_scan(s, len, &n, why, why_size);
    if (pos) return pos;
    if (n == 0) return 0;
    uint8_t *buf = malloc(n);
    if (!buf) {
        if (why) snprintf(why, why_size, "out of memory");
        return -1;
    }
    b64_decode_into(s, len, buf, n);
    *out = buf;
    *n_out = n;
    return 0;
}

/* ---- JSON ---- */

/* Line and column (1-based) of byte offset pos in body. */
static void line_col(const char *body, size_t pos, size_t *line, size_t *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < pos; i++) {
        if (body[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static int json_fail(lt_infer_error *e, const char *body, size_t pos, const char *what) {
    size_t line, col;
    line_col(body, pos, &line, &col);
    return lt_infer_fail(e, LT_INFER_ERR_INVALID_JSON, -1,
                         "invalid JSON: %s at byte %zu (line %zu, column %zu)", what, pos, line, col);
}

static const char *json_type(const cJSON *j) {
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "invalid";
}

/* Names a format the magic bytes show that we do not decode, or NULL. */
static const char *unsupported_format(const uint8_t *b, size_t n) {
    if (n >= 4 && !memcmp(b, "GIF8", 4)) return "GIF";
    if (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4)) return "WebP";
    if (n >= 4 && (!memcmp(b, "II*\0", 4) || !memcmp(b, "MM\0*", 4))) return "TIFF";
    if (n >= 12 && !memcmp(b + 4, "ftyp", 4)) return "HEIF/AVIF";
    if (n >= 2 && b[0] == 'B' && b[1] == 'M') return "BMP";
    return NULL;
}

/* Records msg, which already starts with "instance i: " (an image decoder's message), for instance i. */
static int fail_named(lt_infer_error *e, lt_infer_error_class cls, int i, const char *msg) {
    int status = lt_infer_fail(e, cls, -1, "%s", msg);
    if (e) e->instance = i;
    return status;
}

/* Decodes instance i's "data" into inst, checking the byte limit and the magic bytes. */
static int parse_instance(const cJSON *item, int i, const lt_infer_limits *lim, lt_infer_instance *inst,
                          lt_infer_error *e) {
    if (!cJSON_IsObject(item))
        return lt_infer_fail(e, LT_INFER_ERR_INVALID_REQUEST, i,
                             "expected an object {\"data\": \"<base64 image>\"}, got %s", json_type(item));
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(item, "data");
    if (!data)
        return lt_infer_fail(e, LT_INFER_ERR_INVALID_REQUEST, i, "missing \"data\" (the base64 image)");
    if (!cJSON_IsString(data) || !data->valuestring)
        return lt_infer_fail(e, LT_INFER_ERR_INVALID_REQUEST, i, "\"data\" must be a base64 string, got %s",
                             json_type(data));
    const char *s = data->valuestring;
    size_t len = strlen(s);
    char why[160];
    size_t n = 0;
    long long pos = b64_scan(s, len, &n, why, sizeof why);
    if (pos) {
        int data_url = !strncmp(s, "data:", 5) && strstr(s, ";base64,");
        return lt_infer_fail(
            e, LT_INFER_ERR_INVALID_BASE64, i, "%s at character %lld of \"data\"%s", why, pos,
            data_url ? " (send the base64 alone, without the 'data:...;base64,' prefix)" : "");
    }
    if (n == 0) return lt_infer_fail(e, LT_INFER_ERR_INVALID_REQUEST, i, "\"data\" is empty");
    if (n > lim->max_image_bytes)
        return lt_infer_fail(e, LT_INFER_ERR_TOO_LARGE, i,
                             "the image is %zu bytes, over the limit of %zu bytes", n, lim->max_image_bytes);
    inst->bytes = malloc(n);
    if (!inst->bytes) return lt_infer_fail(e, LT_INFER_ERR_INTERNAL, i, "out of memory");
    inst->n_bytes = n;
    b64_decode_into(s, len, inst->bytes, n);
    if (lt_image_detect(inst->bytes, n) == LT_IMAGE_UNKNOWN) {
        const char *other = unsupported_format(inst->bytes, n);
        if (other)
            return lt_infer_fail(e, LT_INFER_ERR_NOT_AN_IMAGE, i,
                                 "a %s image; only PNG and JPEG are supported", other);
        char hex[64] = "";
        for (size_t k = 0, o = 0; k < n && k < 8; k++)
            o += (size_t)snprintf(hex + o, sizeof hex - o, "%s%02x", k ? " " : "", inst->bytes[k]);
        return lt_infer_fail(e, LT_INFER_ERR_NOT_AN_IMAGE, i,
                             "not a PNG or JPEG image (it starts with bytes %s)", hex);
    }
    return 0;
}

int lt_infer_request_parse(const char *body, size_t len, const lt_infer_limits *limits, lt_infer_request *req,
                           lt_infer_error *e) {
    memset(req, 0, sizeof *req);
    lt_infer_limits lim = lt_infer_limits_resolve(limits);
    if (len > lim.max_request_bytes)
        return lt_infer_fail(e, LT_INFER_ERR_TOO_LARGE, -1,
                             "the request is %zu bytes, over the limit of %zu bytes", len,
                             lim.max_request_bytes);
    size_t start = 0;
    if (len >= 3 && !memcmp(body, "\xEF\xBB\xBF", 3))
        start = 3; /* a UTF-8 byte order mark, as some editors write */
    size_t k = start;
    while (k < len && b64_space((unsigned char)body[k]))
        k++;
    if (k == len)
        return lt_infer_fail(
            e, LT_INFER_ERR_INVALID_JSON, -1,
            "empty request body; expected {\"instances\": [{\"data\": \"<base64 image>\"}]}");
    /* JSON has no raw NUL anywhere, and cJSON would take one for whitespace */
    const char *nul = memchr(body, 0, len);
    if (nul) return json_fail(e, body, (size_t)(nul - body), "a NUL byte");
    const char *end = NULL;
    /* require_null_terminated = 0: cJSON 1.7.15 wrongly fails a length-bounded buffer that has no NUL after
     * the value, so trailing bytes are checked here instead. return_parse_end also gives the error offset
     * without cJSON_GetErrorPtr's global state. */
    cJSON *root = cJSON_ParseWithLengthOpts(body + start, len - start, &end, 0);
    size_t pos = end ? (size_t)(end - body) : start;
    if (!root)
        return json_fail(e, body, pos > len ? len : pos,
                         pos + 1 >= len ? "syntax error or truncated input" : "syntax error");
    while (pos < len && b64_space((unsigned char)body[pos]))
        pos++;
    int status = 0;
    if (pos < len) {
        status = json_fail(e, body, pos, "unexpected data after the JSON value");
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        status = lt_infer_fail(e, LT_INFER_ERR_INVALID_REQUEST, -1,
                               "expected an object {\"instances\": [...]}, got %s", json_type(root));
        goto done;
    }
    const cJSON *inst = cJSON_GetObjectItemCaseSensitive(root, "instances");
    if (!inst) {
        status = lt_infer_fail(
            e, LT_INFER_ERR_INVALID_REQUEST, -1,
            "missing \"instances\"; expected {\"instances\": [{\"data\": \"<base64 image>\"}]}");
        goto done;
    }
    if (!cJSON_IsArray(inst)) {
        status = lt_infer_fail(e, LT_INFER_ERR_INVALID_REQUEST, -1, "\"instances\" must be an array, got %s",
                               json_type(inst));
        goto done;
    }
    int n = cJSON_GetArraySize(inst);
    if (n == 0) {
        status = lt_infer_fail(e, LT_INFER_ERR_INVALID_REQUEST, -1, "\"instances\" is empty");
        goto done;
    }
    if (n > lim.max_instances) {
        status = lt_infer_fail(e, LT_INFER_ERR_TOO_LARGE, -1,
                               "%d instances, over the limit of %d per request", n, lim.max_instances);
        goto done;
    }
    req->instances = calloc((size_t)n, sizeof *req->instances);
    if (!req->instances) {
        status = lt_infer_fail(e, LT_INFER_ERR_INTERNAL, -1, "out of memory");
        goto done;
    }
    req->n_instances = n;
    int i = 0;
    for (const cJSON *item = inst->child; item && status == 0; item = item->next, i++)
        status = parse_instance(item, i, &lim, &req->instances[i], e);
done:
    cJSON_Delete(root);
    if (status) lt_infer_request_free(req);
    return status;
}

int lt_infer_request_decode(lt_infer_request *req, const lt_infer_limits *limits, lt_infer_error *e) {
    lt_infer_limits lim = lt_infer_limits_resolve(limits);
    for (int i = 0; i < req->n_instances; i++) {
        lt_infer_instance *in = &req->instances[i];
        char name[32];
        snprintf(name, sizeof name, "instance %d", i);
        lt_err err = {{0}};
        /* probe with no pixel limit, so an image over the limit is told apart (413) from a corrupt one */
        lt_image_limits probe_lim = {.max_bytes = (size_t)-1, .max_pixels = INT64_MAX};
        lt_image_info info;
        lt_status st = lt_image_probe(in->bytes, in->n_bytes, name, &probe_lim, &info, &err);
        if (st == LT_ERR_NOMEM) return lt_infer_fail(e, LT_INFER_ERR_INTERNAL, i, "out of memory");
        if (st != LT_OK) return fail_named(e, LT_INFER_ERR_CORRUPT_IMAGE, i, err.msg);
        if ((int64_t)info.width * info.height > lim.max_pixels)
            return lt_infer_fail(
                e, LT_INFER_ERR_TOO_LARGE, i, "the %s image is %d x %d pixels, over the limit of %lld pixels",
                lt_image_format_str(info.format), info.width, info.height, (long long)lim.max_pixels);
        lt_image_limits dec_lim = {.max_bytes = (size_t)-1, .max_pixels = lim.max_pixels};
        st = lt_image_decode(in->bytes, in->n_bytes, name, &dec_lim, &in->image, &err);
        if (st == LT_ERR_NOMEM) return lt_infer_fail(e, LT_INFER_ERR_INTERNAL, i, "out of memory");
        if (st != LT_OK) return fail_named(e, LT_INFER_ERR_CORRUPT_IMAGE, i, err.msg);
    }
    return 0;
}

void lt_infer_request_free(lt_infer_request *req) {
    if (!req) return;
    for (int i = 0; i < req->n_instances; i++) {
        free(req->instances[i].bytes);
        lt_image_free(&req->instances[i].image);
    }
    free(req->instances);
    memset(req, 0, sizeof *req);
}
