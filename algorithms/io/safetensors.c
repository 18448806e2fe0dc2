/* safetensors.c - the safetensors reader (mmap + cJSON + validation) and float32 writer. */
#define _POSIX_C_SOURCE 200809L
#include "io/safetensors.h"

#include "core/tensor.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "safetensors data is little-endian; add byte swaps");

/* Shape dimensions and offsets arrive as JSON doubles: above 2^53 they are no longer exact integers. */
#define ST_MAX_EXACT 9007199254740992.0

/* Long names are cut in messages so the file and the field at fault still fit in lt_err. */
#define NAME_FMT "'%.200s'"

static const struct {
    const char *name;
    int size;
} dtypes[LT_ST_DTYPE_COUNT] = {
    [LT_ST_BOOL] = {"BOOL", 1},       [LT_ST_U8] = {"U8", 1},           [LT_ST_I8] = {"I8", 1},
    [LT_ST_F8_E5M2] = {"F8_E5M2", 1}, [LT_ST_F8_E4M3] = {"F8_E4M3", 1}, [LT_ST_I16] = {"I16", 2},
    [LT_ST_U16] = {"U16", 2},         [LT_ST_F16] = {"F16", 2},         [LT_ST_BF16] = {"BF16", 2},
    [LT_ST_I32] = {"I32", 4},         [LT_ST_U32] = {"U32", 4},         [LT_ST_F32] = {"F32", 4},
    [LT_ST_F64] = {"F64", 8},         [LT_ST_I64] = {"I64", 8},         [LT_ST_U64] = {"U64", 8},
};

const char *lt_st_dtype_name(lt_st_dtype d) {
    return (unsigned)d < LT_ST_DTYPE_COUNT ? dtypes[d].name : "?";
}

int lt_st_dtype_size(lt_st_dtype d) {
    return (unsigned)d < LT_ST_DTYPE_COUNT ? dtypes[d].size : 0;
}

struct lt_st_file {
    char *what;         /* the path (or caller's label) used in error messages */
    const uint8_t *buf; /* (len) the whole image: length, header, data */
    size_t len;
    void *map;           /* mmap base when opened from a path; NULL when buf is borrowed */
    const uint8_t *data; /* (data_len) the data buffer, buf + 8 + header length */
    uint64_t data_len;
    cJSON *root;          /* the parsed header; entry names and metadata strings point into it */
    lt_st_entry *entries; /* (n) sorted by offset */
    int n;
    int *by_name;      /* (n) entry indices sorted by name, for lt_st_find */
    int64_t *dims;     /* every entry's shape, back to back */
    const char **meta; /* (2 * n_meta) key, value, key, value, ... */
    int n_meta;
};

/* ---- validation helpers ---- */

/* 1 when s (n bytes) is well-formed UTF-8 as Rust's str::from_utf8 defines it: no overlong forms, no
 * surrogates, nothing above U+10FFFF. */
static int utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int len;
        uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF)
            len = 2;
        else if (c == 0xE0)
            len = 3, lo = 0xA0;
        else if (c >= 0xE1 && c <= 0xEC)
            len = 3;
        else if (c == 0xED)
            len = 3, hi = 0x9F;
        else if (c >= 0xEE && c <= 0xEF)
            len = 3;
        else if (c == 0xF0)
            len = 4, lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3)
            len = 4;
        else if (c == 0xF4)
            len = 4, hi = 0x8F;
        else
            return 0;
        if (n - i < (size_t)len) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (int k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return 0;
        i += (size_t)len;
    }
    return 1;
}

/* A JSON number that is an exact non-negative integer below 2^53. */
static int json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return 0;
    double d = item->valuedouble;
    if (!(d >= 0.0 && d <= ST_MAX_EXACT) || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static int dtype_from_name(const char *s, lt_st_dtype *out) {
    for (int d = 0; d < LT_ST_DTYPE_COUNT; d++)
        if (strcmp(s, dtypes[d].name) == 0) {
            *out = (lt_st_dtype)d;
            return 1;
        }
    return 0;
}

static int cmp_offsets(const void *a, const void *b) {
    const lt_st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name); /* ties (zero-size tensors, overlaps) in a fixed order */
}

/* qsort has no context argument; the name index sorts (index, name) pairs instead. */
typedef struct {
    const char *name;
    int idx;
} name_idx;

static int cmp_name_idx(const void *a, const void *b) {
    return strcmp(((const name_idx *)a)->name, ((const name_idx *)b)->name);
}

/* ---- header parsing ---- */

/* Fills e (and the next e's dims in *dims_at) from one tensor object of the header. */
static lt_status parse_entry(lt_st_file *f, const cJSON *obj, lt_st_entry *e, int64_t **dims_at,
                             lt_err *err) {
    const char *w = f->what, *name = obj->string;
    if (!cJSON_IsObject(obj))
        return lt_errorf(err, LT_ERR_FORMAT, "%s: tensor " NAME_FMT ": entry is not a JSON object", w, name);
    const cJSON *dt = NULL, *shape = NULL, *offs = NULL;
    for (const cJSON *c = obj->child; c; c = c->next) {
        const cJSON **slot = strcmp(c->string, "dtype") == 0          ? &dt
                             : strcmp(c->string, "shape") == 0        ? &shape
                             : strcmp(c->string, "data_offsets") == 0 ? &offs
                                                                      : NULL;
        if (!slot) continue; /* unknown fields are ignored, as serde does by default */
        if (*slot)
            return lt_errorf(err, LT_ERR_FORMAT, "%s: tensor " NAME_FMT ": field '%s' appears twice", w, name,
                             c->string);
        *slot = c;
    }
    if (!dt || !shape || !offs)
        return lt_errorf(err, LT_ERR_FORMAT, "%s: tensor " NAME_FMT ": missing field '%s'", w, name,
                         !dt      ? "dtype"
                         : !shape ? "shape"
                                  : "data_offsets");
    if (!cJSON_IsString(dt) || !dtype_from_name(dt->valuestring, &e->dtype))
        return lt_errorf(err, LT_ERR_FORMAT, "%s: tensor " NAME_FMT ": unknown dtype %.40s%s%s", w, name,
                         cJSON_IsString(dt) ? "'" : "",
                         cJSON_IsString(dt) ? dt->valuestring : "(not a string)",
                         cJSON_IsString(dt) ? "'" : "");
    if (!cJSON_IsArray(shape))
        return lt_errorf(err, LT_ERR_FORMAT, "%s: tensor " NAME_FMT ": shape is not a list", w, name);
    e->name = name;
    e->shape = *dims_at;
    e->ndim = 0;
    int64_t numel = 1;
    for (const cJSON *c = shape->child; c; c = c->next) {
        uint64_t d;
        if (!json_uint(c, &d))
            return lt_errorf(err, LT_ERR_FORMAT,
                             "%s: tensor " NAME_FMT ": shape[%d] is not a non-negative integer", w, name,
                             e->ndim);
        if (__builtin_mul_overflow(numel, (int64_t)d, &numel))
            return lt_errorf(err, LT_ERR_FORMAT, "%s: tensor " NAME_FMT ": shape's element count overflows",
                             w, name);
        (*dims_at)[e->ndim++] = (int64_t)d;
    }
    *dims_at += e->ndim;
    e->numel = numel;
    int64_t nbytes;
    if (__builtin_mul_overflow(numel, (int64_t)dtypes[e->dtype].size, &nbytes))
        return lt_errorf(err, LT_ERR_FORMAT, "%s: tensor " NAME_FMT ": byte size overflows", w, name);
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_uint(offs->child, &e->begin) ||
        !json_uint(offs->child->next, &e->end))
        return lt_errorf(err, LT_ERR_FORMAT, "%s: tensor " NAME_FMT ": data_offsets is not [begin, end]", w,
                         name);
    if (e->end < e->begin)
        return lt_errorf(err, LT_ERR_FORMAT,
                         "%s: tensor " NAME_FMT ": data_offsets [%llu, %llu] end before they begin", w, name,
                         (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end > f->data_len)
        return lt_errorf(
            err, LT_ERR_FORMAT,
            "%s: tensor " NAME_FMT ": data_offsets [%llu, %llu] run past the %llu-byte data buffer", w, name,
            (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)f->data_len);
    if (e->end - e->begin != (uint64_t)nbytes) {
        char sb[160];
        return lt_errorf(err, LT_ERR_FORMAT,
                         "%s: tensor " NAME_FMT
                         ": dtype %s and shape %s need %lld bytes, data_offsets give %llu",
                         w, name, dtypes[e->dtype].name, lt_shape_str(e->shape, e->ndim, sb, sizeof sb),
                         (long long)nbytes, (unsigned long long)(e->end - e->begin));
    }
    return LT_OK;
}

/* Copies the __metadata__ object's string pairs into f->meta; duplicate keys and non-string values are
 * errors (the reference reads it as a map of str to str). */
static lt_status parse_metadata(lt_st_file *f, const cJSON *md, lt_err *err) {
    const char *w = f->what;
    if (!cJSON_IsObject(md)) return lt_errorf(err, LT_ERR_FORMAT, "%s: __metadata__ is not a JSON object", w);
    int n = cJSON_GetArraySize(md);
    f->meta = calloc((size_t)n * 2 + 1, sizeof *f->meta);
    name_idx *keys = calloc((size_t)n + 1, sizeof *keys);
    if (!f->meta || !keys) {
        free(keys);
        return lt_errorf(err, LT_ERR_NOMEM, "%s: out of memory reading __metadata__", w);
    }
    lt_status st = LT_OK;
    for (const cJSON *c = md->child; c; c = c->next) {
        if (!cJSON_IsString(c)) {
            st = lt_errorf(err, LT_ERR_FORMAT, "%s: __metadata__ value for key " NAME_FMT " is not a string",
                           w, c->string);
            break;
        }
        keys[f->n_meta].name = c->string;
        keys[f->n_meta].idx = f->n_meta;
        f->meta[2 * f->n_meta] = c->string;
        f->meta[2 * f->n_meta + 1] = c->valuestring;
        f->n_meta++;
    }
    if (st == LT_OK) {
        qsort(keys, (size_t)f->n_meta, sizeof *keys, cmp_name_idx);
        for (int i = 1; i < f->n_meta && st == LT_OK; i++)
            if (strcmp(keys[i - 1].name, keys[i].name) == 0)
                st = lt_errorf(err, LT_ERR_FORMAT, "%s: __metadata__ key " NAME_FMT " appears twice", w,
                               keys[i].name);
    }
    free(keys);
    return st;
}

/* An upper bound on the number of JSON values in a header: one more than its ',', '[' and '{' outside
 * strings. cJSON spends ~80 bytes per value, so a 100 MB header of "[0,0,0,..." would take 4 GB. */
static size_t count_json_values(const uint8_t *h, size_t n) {
    size_t count = 1;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = h[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == ',' || c == '[' || c == '{') {
            count++;
        }
    }
    return count;
}

/* Parses the JSON text of the header (n bytes at h) into f->root. */
static lt_status parse_json(lt_st_file *f, const uint8_t *h, uint64_t n, lt_err *err) {
    const char *w = f->what;
    /* The reference rejects a header that doesn't open with '{'; NUL bytes can't appear in valid JSON
     * text and would cut cJSON's C strings short. */
    if (n == 0 || h[0] != '{') return lt_errorf(err, LT_ERR_FORMAT, "%s: header does not start with '{'", w);
    const uint8_t *nul = memchr(h, 0, n);
    if (nul) return lt_errorf(err, LT_ERR_FORMAT, "%s: header has a NUL byte at header byte %td", w, nul - h);
    if (!utf8_valid(h, n)) return lt_errorf(err, LT_ERR_FORMAT, "%s: header is not valid UTF-8", w);
    size_t values = count_json_values(h, n);
    if (values > LT_ST_MAX_JSON_VALUES)
        return lt_errorf(err, LT_ERR_FORMAT,
                         "%s: header holds up to %zu JSON values, over the %d this reader accepts", w, values,
                         LT_ST_MAX_JSON_VALUES);
    /* cJSON gets its own NUL-terminated copy, so it can never read past the header, whatever it does at
     * the end of its input. */
    char *copy = malloc(n + 1);
    if (!copy)
        return lt_errorf(err, LT_ERR_NOMEM, "%s: out of memory for a %llu-byte header", w,
                         (unsigned long long)n);
    memcpy(copy, h, n);
    copy[n] = '\0';
    const char *end = NULL;
    f->root = cJSON_ParseWithLengthOpts(copy, n, &end, 0);
    lt_status st = LT_OK;
    if (!f->root) {
        st = lt_errorf(err, LT_ERR_FORMAT, "%s: header is not valid JSON (error near header byte %td)", w,
                       end ? end - copy : (ptrdiff_t)0);
    } else {
        for (const char *p = end; p < copy + n; p++)
            if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
                st = lt_errorf(err, LT_ERR_FORMAT,
                               "%s: unexpected data after the header's JSON object at byte %td", w, p - copy);
                break;
            }
        if (st == LT_OK && !cJSON_IsObject(f->root))
            st = lt_errorf(err, LT_ERR_FORMAT, "%s: header is not a JSON object", w);
    }
    free(copy); /* cJSON copied every string it keeps */
    return st;
}

/* Validates the image f->buf (f->len) and fills the entries, name index and metadata. */
static lt_status parse_image(lt_st_file *f, lt_err *err) {
    const char *w = f->what;
    if (f->len < 8)
        return lt_errorf(err, LT_ERR_FORMAT, "%s: file is %zu bytes, too short for the 8-byte header length",
                         w, f->len);
    uint64_t n;
    memcpy(&n, f->buf, 8);
    if (n > LT_ST_MAX_HEADER)
        return lt_errorf(err, LT_ERR_FORMAT, "%s: header length %llu exceeds the %llu-byte limit", w,
                         (unsigned long long)n, LT_ST_MAX_HEADER);
    if (n > f->len - 8)
        return lt_errorf(err, LT_ERR_FORMAT, "%s: header length %llu runs past the end of the %zu-byte file",
                         w, (unsigned long long)n, f->len);
    f->data = f->buf + 8 + n;
    f->data_len = f->len - 8 - n;
    lt_status st = parse_json(f, f->buf + 8, n, err);
    if (st != LT_OK) return st;

    /* count tensors and dimensions first so everything is allocated once */
    size_t n_tensors = 0, n_dims = 0;
    const cJSON *md = NULL;
    for (const cJSON *c = f->root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            if (md) return lt_errorf(err, LT_ERR_FORMAT, "%s: __metadata__ appears twice", w);
            md = c;
            continue;
        }
        n_tensors++;
        /* a duplicated "shape" field is refused later; count every one so the space always suffices */
        if (cJSON_IsObject(c))
            for (const cJSON *s = c->child; s; s = s->next)
                if (strcmp(s->string, "shape") == 0 && cJSON_IsArray(s))
                    n_dims += (size_t)cJSON_GetArraySize(s);
    }
    if (md && (st = parse_metadata(f, md, err)) != LT_OK) return st;
    f->entries = calloc(n_tensors + 1, sizeof *f->entries);
    f->by_name = calloc(n_tensors + 1, sizeof *f->by_name);
    f->dims = calloc(n_dims + 1, sizeof *f->dims);
    name_idx *names = calloc(n_tensors + 1, sizeof *names);
    if (!f->entries || !f->by_name || !f->dims || !names) {
        free(names);
        return lt_errorf(err, LT_ERR_NOMEM, "%s: out of memory for %zu tensor entries", w, n_tensors);
    }
    int64_t *dims_at = f->dims;
    for (const cJSON *c = f->root->child; c && st == LT_OK; c = c->next) {
        if (c == md) continue;
        st = parse_entry(f, c, &f->entries[f->n], &dims_at, err);
        if (st == LT_OK) f->n++;
    }
    if (st != LT_OK) {
        free(names);
        return st;
    }

    qsort(f->entries, (size_t)f->n, sizeof *f->entries, cmp_offsets);
    for (int i = 0; i < f->n; i++)
        names[i] = (name_idx){f->entries[i].name, i};
    qsort(names, (size_t)f->n, sizeof *names, cmp_name_idx);
    for (int i = 0; i < f->n; i++) {
        if (i > 0 && strcmp(names[i - 1].name, names[i].name) == 0) {
            st = lt_errorf(err, LT_ERR_FORMAT, "%s: tensor " NAME_FMT " appears twice", w, names[i].name);
            break;
        }
        f->by_name[i] = names[i].idx;
    }
    free(names);
    if (st != LT_OK) return st;

    /* sorted by offset, the tensors must tile the data buffer exactly */
    uint64_t at = 0;
    for (int i = 0; i < f->n; i++) {
        const lt_st_entry *e = &f->entries[i];
        if (e->begin != at && i == 0)
            return lt_errorf(err, LT_ERR_FORMAT,
                             "%s: tensor " NAME_FMT
                             ": data_offsets [%llu, %llu] leave a gap at the buffer start",
                             w, e->name, (unsigned long long)e->begin, (unsigned long long)e->end);
        if (e->begin != at)
            return lt_errorf(err, LT_ERR_FORMAT,
                             "%s: tensor " NAME_FMT ": data_offsets [%llu, %llu] %s tensor " NAME_FMT
                             " (which ends at byte %llu)",
                             w, e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                             e->begin > at ? "leave a gap after" : "overlap", f->entries[i - 1].name,
                             (unsigned long long)at);
        at = e->end;
    }
    if (at != f->data_len)
        return lt_errorf(err, LT_ERR_FORMAT,
                         "%s: tensors cover %llu bytes but the data buffer after the header holds %llu", w,
                         (unsigned long long)at, (unsigned long long)f->data_len);
    return LT_OK;
}

static lt_status st_new(const char *what, lt_st_file **out, lt_err *err) {
    lt_st_file *f = calloc(1, sizeof *f);
    if (f) f->what = strdup(what);
    if (!f || !f->what) {
        free(f);
        return lt_errorf(err, LT_ERR_NOMEM, "%s: out of memory", what);
    }
    *out = f;
    return LT_OK;
}

lt_status lt_st_parse(const uint8_t *buf, size_t len, const char *what, lt_st_file **out, lt_err *err) {
    lt_st_file *f = NULL;
    *out = NULL;
    lt_status st = st_new(what ? what : "<memory>", &f, err);
    if (st != LT_OK) return st;
    f->buf = buf;
    f->len = buf ? len : 0;
    if ((st = parse_image(f, err)) != LT_OK) {
        lt_st_close(f);
        return st;
    }
    *out = f;
    return LT_OK;
}

/* A mapping of a file that is truncated by another process while mapped raises SIGBUS on access; lathe
 * writes checkpoints by rename (lt_st_write), which never truncates a file a reader has open. */
lt_status lt_st_open(const char *path, lt_st_file **out, lt_err *err) {
    lt_st_file *f = NULL;
    *out = NULL;
    lt_status st = st_new(path, &f, err);
    if (st != LT_OK) return st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        st = lt_errorf(err, LT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = lt_errorf(err, LT_ERR_IO, "%s: not a regular file", path);
        goto fail;
    }
    f->len = (size_t)sb.st_size;
    if (f->len >= 8) { /* shorter files fail validation; mmap refuses length 0 */
        f->map = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (f->map == MAP_FAILED) {
            f->map = NULL;
            st = lt_errorf(err, LT_ERR_IO, "%s: cannot map %zu bytes: %s", path, f->len, strerror(errno));
            goto fail;
        }
        f->buf = f->map;
    }
    close(fd);
    fd = -1;
    if ((st = parse_image(f, err)) != LT_OK) goto fail;
    *out = f;
    return LT_OK;
fail:
    if (fd >= 0) close(fd);
    lt_st_close(f);
    return st;
}

void lt_st_close(lt_st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->len);
    cJSON_Delete(f->root);
    free(f->entries);
    free(f->by_name);
    free(f->dims);
    free(f->meta);
    free(f->what);
    free(f);
}

/* ---- accessors ---- */

int lt_st_count(const lt_st_file *f) {
    return f->n;
}

const lt_st_entry *lt_st_entry_at(const lt_st_file *f, int i) {
    return i >= 0 && i < f->n ? &f->entries[i] : NULL;
}

const lt_st_entry *lt_st_find(const lt_st_file *f, const char *name) {
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const lt_st_entry *e = &f->entries[f->by_name[mid]];
        int c = strcmp(name, e->name);
        if (c == 0) return e;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

const uint8_t *lt_st_entry_bytes(const lt_st_file *f, const lt_st_entry *e) {
    return f->data + e->begin;
}

int lt_st_metadata_count(const lt_st_file *f) {
    return f->n_meta;
}

int lt_st_metadata_at(const lt_st_file *f, int i, const char **key, const char **value) {
    if (i < 0 || i >= f->n_meta) return -1;
    *key = f->meta[2 * i];
    *value = f->meta[2 * i + 1];
    return 0;
}

const char *lt_st_metadata_get(const lt_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[2 * i], key) == 0) return f->meta[2 * i + 1];
    return NULL;
}

/* ---- conversion to float32 ---- */

/* IEEE half to float, exactly: subnormal halves are man * 2^-24, which float holds exactly. */
static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0x1f)
        bits = sign | 0x7f800000u | (man << 13); /* inf, nan (payload kept) */
    else if (exp != 0)
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    else {
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

static float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

/* Each converter reads n little-endian values from src (which may be unaligned) into dst. */
#define ST_CONVERT(fn, ctype, expr)                                                                          \
    static void fn(float *dst, const uint8_t *src, int64_t n) {                                              \
        _Pragma("omp parallel for if (n > 65536)") for (int64_t i = 0; i < n; i++) {                         \
            ctype v;                                                                                         \
            memcpy(&v, src + i * (int64_t)sizeof v, sizeof v);                                               \
            dst[i] = (expr);                                                                                 \
        }                                                                                                    \
    }
ST_CONVERT(cvt_f16, uint16_t, f16_to_f32(v))
ST_CONVERT(cvt_bf16, uint16_t, bf16_to_f32(v))
ST_CONVERT(cvt_f64, double, (float)v) /* IEEE rounding: out-of-range values become +-inf */
ST_CONVERT(cvt_bool, uint8_t, v ? 1.0f : 0.0f)
ST_CONVERT(cvt_u8, uint8_t, (float)v)
ST_CONVERT(cvt_i8, int8_t, (float)v)
ST_CONVERT(cvt_i16, int16_t, (float)v)
ST_CONVERT(cvt_u16, uint16_t, (float)v)
ST_CONVERT(cvt_i32, int32_t, (float)v)
ST_CONVERT(cvt_u32, uint32_t, (float)v)
ST_CONVERT(cvt_i64, int64_t, (float)v)
ST_CONVERT(cvt_u64, uint64_t, (float)v)

lt_status lt_st_read_f32(const lt_st_file *f, const lt_st_entry *e, float *dst, int64_t n, lt_err *err) {
    if (!f || !e || e < f->entries || e >= f->entries + f->n || (!dst && n > 0))
        return lt_errorf(err, LT_ERR_ARG,
                         "lt_st_read_f32: missing file, destination, or an entry of another file");
    if (n != e->numel)
        return lt_errorf(err, LT_ERR_SHAPE,
                         "%s: tensor " NAME_FMT " has %lld elements, the destination holds %lld", f->what,
                         e->name, (long long)e->numel, (long long)n);
    const uint8_t *src = f->data + e->begin;
    switch (e->dtype) {
    case LT_ST_F32:
        if (n) memcpy(dst, src, (size_t)n * sizeof(float));
        break;
    case LT_ST_F16:
        cvt_f16(dst, src, n);
        break;
    case LT_ST_BF16:
        cvt_bf16(dst, src, n);
        break;
    case LT_ST_F64:
        cvt_f64(dst, src, n);
        break;
    case LT_ST_BOOL:
        cvt_bool(dst, src, n);
        break;
    case LT_ST_U8:
        cvt_u8(dst, src, n);
        break;
    case LT_ST_I8:
        cvt_i8(dst, src, n);
        break;
    case LT_ST_I16:
        cvt_i16(dst, src, n);
        break;
    case LT_ST_U16:
        cvt_u16(dst, src, n);
        break;
    case LT_ST_I32:
        cvt_i32(dst, src, n);
        break;
    case LT_ST_U32:
        cvt_u32(dst, src, n);
        break;
    case LT_ST_I64:
        cvt_i64(dst, src, n);
        break;
    case LT_ST_U64:
        cvt_u64(dst, src, n);
        break;
    default:
        return lt_errorf(err, LT_ERR_FORMAT,
                         "%s: tensor " NAME_FMT ": dtype %s can't be converted to float32", f->what, e->name,
                         lt_st_dtype_name(e->dtype));
    }
    return LT_OK;
}

/* ---- writing ---- */

/* A growing byte string for the header; oom sticks so callers check once at the end. */
typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(strbuf *b, const char *s) {
    sb_put(b, s, strlen(s));
}

static void sb_int(strbuf *b, long long v) {
    char tmp[24];
    int k = snprintf(tmp, sizeof tmp, "%lld", v);
    sb_put(b, tmp, (size_t)k);
}

/* A JSON string escaped as serde_json (the reference) escapes it: '"', '\\', the short forms \b \f \n \r
 * \t, other control bytes as \u00xx; everything else (UTF-8 included) verbatim. */
static void sb_json_str(strbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const char *esc = NULL;
        char tmp[8];
        switch (*p) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        default:
            if (*p < 0x20) {
                snprintf(tmp, sizeof tmp, "\\u%04x", *p);
                esc = tmp;
            }
        }
        if (esc)
            sb_str(b, esc);
        else
            sb_put(b, (const char *)p, 1);
    }
    sb_put(b, "\"", 1);
}

typedef struct {
    const lt_st_tensor_ref *t;
    int64_t nbytes;
} write_item;

static int cmp_write_item(const void *a, const void *b) {
    return strcmp(((const write_item *)a)->t->name, ((const write_item *)b)->t->name);
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Checks the caller's tensors and metadata and sorts them into items (n) by name. */
static lt_status check_write_args(const char *path, const lt_st_tensor_ref *tensors, int n,
                                  const char *const *meta_kv, int n_meta, write_item *items, lt_err *err) {
    for (int i = 0; i < n; i++) {
        const lt_st_tensor_ref *t = &tensors[i];
        if (!t->name || !utf8_valid((const uint8_t *)t->name, strlen(t->name)) ||
            strcmp(t->name, "__metadata__") == 0)
            return lt_errorf(err, LT_ERR_ARG,
                             "%s: tensor %d has no name, a name that is not UTF-8, or '__metadata__'", path,
                             i);
        int64_t numel = t->ndim >= 0 && (t->shape || t->ndim == 0) ? lt_shape_numel(t->shape, t->ndim) : -1;
        int64_t esize = t->i64 ? (int64_t)sizeof(int64_t) : (int64_t)sizeof(float);
        if (numel < 0 || __builtin_mul_overflow(numel, esize, &items[i].nbytes))
            return lt_errorf(err, LT_ERR_ARG,
                             "%s: tensor " NAME_FMT ": bad shape (negative, or size overflows)", path,
                             t->name);
        if (numel > 0 && !t->data && !t->i64)
            return lt_errorf(err, LT_ERR_ARG, "%s: tensor " NAME_FMT ": data is NULL", path, t->name);
        items[i].t = t;
    }
    qsort(items, (size_t)n, sizeof *items, cmp_write_item);
    for (int i = 1; i < n; i++)
        if (strcmp(items[i - 1].t->name, items[i].t->name) == 0)
            return lt_errorf(err, LT_ERR_ARG, "%s: tensor " NAME_FMT " given twice", path, items[i].t->name);
    if (n_meta < 0 || (n_meta > 0 && !meta_kv))
        return lt_errorf(err, LT_ERR_ARG, "%s: bad metadata list", path);
    const char **keys = calloc((size_t)n_meta + 1, sizeof *keys);
    if (!keys) return lt_errorf(err, LT_ERR_NOMEM, "%s: out of memory", path);
    lt_status st = LT_OK;
    for (int i = 0; i < 2 * n_meta && st == LT_OK; i++)
        if (!meta_kv[i] || !utf8_valid((const uint8_t *)meta_kv[i], strlen(meta_kv[i])))
            st = lt_errorf(err, LT_ERR_ARG, "%s: metadata %s %d is NULL or not UTF-8", path,
                           i % 2 ? "value" : "key", i / 2);
        else if (i % 2 == 0)
            keys[i / 2] = meta_kv[i];
    if (st == LT_OK) {
        qsort(keys, (size_t)n_meta, sizeof *keys, cmp_str_ptr);
        for (int i = 1; i < n_meta && st == LT_OK; i++)
            if (strcmp(keys[i - 1], keys[i]) == 0)
                st = lt_errorf(err, LT_ERR_ARG, "%s: metadata key " NAME_FMT " given twice", path, keys[i]);
    }
    free(keys);
    return st;
}

/* The header JSON, padded with spaces to a multiple of 8 bytes, as the reference writes it. */
static void build_header(strbuf *b, const write_item *items, int n, const char *const *meta_kv, int n_meta) {
    sb_str(b, "{");
    if (n_meta > 0) {
        sb_str(b, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) sb_str(b, ",");
            sb_json_str(b, meta_kv[2 * i]);
            sb_str(b, ":");
            sb_json_str(b, meta_kv[2 * i + 1]);
        }
        sb_str(b, "}");
    }
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        const lt_st_tensor_ref *t = items[i].t;
        if (i || n_meta > 0) sb_str(b, ",");
        sb_json_str(b, t->name);
        sb_str(b, t->i64 ? ":{\"dtype\":\"I64\",\"shape\":[" : ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d) sb_str(b, ",");
            sb_int(b, t->shape[d]);
        }
        sb_str(b, "],\"data_offsets\":[");
        sb_int(b, off);
        sb_str(b, ",");
        sb_int(b, off + items[i].nbytes);
        sb_str(b, "]}");
        off += items[i].nbytes;
    }
    sb_str(b, "}");
    while (b->len % 8)
        sb_str(b, " ");
}

/* fsyncs the directory holding path so the rename itself survives a crash; best effort. */
static void sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
    if (!dir) return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

lt_status lt_st_write(const char *path, const lt_st_tensor_ref *tensors, int n, const char *const *meta_kv,
                      int n_meta, lt_err *err) {
    if (!path || n < 0 || (n > 0 && !tensors))
        return lt_errorf(err, LT_ERR_ARG, "lt_st_write: bad arguments");
    write_item *items = calloc((size_t)n + 1, sizeof *items);
    strbuf hdr = {0};
    char *tmp = malloc(strlen(path) + 5);
    FILE *fp = NULL;
    lt_status st = LT_OK;
    if (!items || !tmp) {
        st = lt_errorf(err, LT_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    sprintf(tmp, "%s.tmp", path);
    if ((st = check_write_args(path, tensors, n, meta_kv, n_meta, items, err)) != LT_OK) goto done;
    build_header(&hdr, items, n, meta_kv, n_meta);
    if (hdr.oom) {
        st = lt_errorf(err, LT_ERR_NOMEM, "%s: out of memory building the header", path);
        goto done;
    }
    if (hdr.len > LT_ST_MAX_HEADER) {
        st = lt_errorf(err, LT_ERR_ARG, "%s: header of %zu bytes exceeds the %llu-byte limit readers accept",
                       path, hdr.len, LT_ST_MAX_HEADER);
        goto done;
    }
    fp = fopen(tmp, "wb");
    if (!fp) {
        st = lt_errorf(err, LT_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    uint64_t hlen = hdr.len;
    int ok = fwrite(&hlen, 8, 1, fp) == 1 && fwrite(hdr.p, 1, hdr.len, fp) == hdr.len;
    for (int i = 0; i < n && ok; i++)
        if (items[i].nbytes)
            ok = fwrite(items[i].t->i64 ? (const void *)items[i].t->i64 : (const void *)items[i].t->data, 1,
                        (size_t)items[i].nbytes, fp) == (size_t)items[i].nbytes;
    ok = ok && fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    int saved_errno = errno;
    if (fclose(fp) != 0 && ok) {
        ok = 0;
        saved_errno = errno;
    }
    fp = NULL;
    if (!ok || rename(tmp, path) != 0) {
        if (ok) saved_errno = errno;
        st = lt_errorf(err, LT_ERR_IO, "%s: cannot write: %s", ok ? path : tmp, strerror(saved_errno));
        unlink(tmp);
        goto done;
    }
    sync_parent_dir(path);
done:
    free(items);
    free(hdr.p);
    free(tmp);
    return st;
}
