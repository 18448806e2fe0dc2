/* safetensors.h - reads and writes the safetensors format (Hugging Face's tensor file), no library.
 *
 * Layout: an 8-byte little-endian u64 N, N bytes of UTF-8 JSON, then the data buffer:
 *   {"__metadata__": {"format": "pt"},
 *    "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
 * Offsets are relative to the buffer start; sorted by offset the tensors must tile the buffer exactly,
 * from 0 to its end, without gaps or overlaps (the reference reader rejects anything else).
 *
 * Reading validates the whole header before anything is returned: a malformed file gives LT_ERR_FORMAT
 * with a message naming the file and the tensor/field at fault; it never reads outside the file. Every
 * reference dtype is accepted in the header; lt_st_read_f32 converts float and integer dtypes to float32
 * (F8 types are refused). Writing produces float32 tensors only, laid out exactly as the reference writer
 * (safetensors.torch.save_file) lays them out: tensors sorted by name, header padded with spaces to a
 * multiple of 8 bytes so every tensor starts 8-byte aligned in the file.
 *
 * Limits: the header is at most 100 MB (as the reference) and holds at most LT_ST_MAX_JSON_VALUES JSON
 * values (the reference has no such bound); shape dimensions and offsets must be integers
 * below 2^53 (JSON numbers are doubles in cJSON; no real file comes near), and a dimension written "2.0"
 * reads as 2 where the reference refuses it. Little-endian hosts only. Accessors need an open file. */
#ifndef LT_SAFETENSORS_H
#define LT_SAFETENSORS_H

#include "core/status.h"

#include <stddef.h>
#include <stdint.h>

#define LT_ST_MAX_HEADER 100000000ULL
/* Bounds the parsed header's memory (cJSON takes ~80 bytes per JSON value) to under 1 GB; a tensor takes
 * about 10 values, so this allows ~800,000 tensors where real checkpoints hold a few thousand. */
#define LT_ST_MAX_JSON_VALUES 8000000

/* In the reference's order (increasing alignment); append-only. */
typedef enum {
    LT_ST_BOOL = 0,
    LT_ST_U8,
    LT_ST_I8,
    LT_ST_F8_E5M2,
    LT_ST_F8_E4M3,
    LT_ST_I16,
    LT_ST_U16,
    LT_ST_F16,
    LT_ST_BF16,
    LT_ST_I32,
    LT_ST_U32,
    LT_ST_F32,
    LT_ST_F64,
    LT_ST_I64,
    LT_ST_U64,
    LT_ST_DTYPE_COUNT
} lt_st_dtype;

/* "F32", ... ; "?" for an out-of-range value. */
const char *lt_st_dtype_name(lt_st_dtype d);
/* Bytes per element (1, 2, 4 or 8); 0 for an out-of-range value. */
int lt_st_dtype_size(lt_st_dtype d);

/* One tensor of an open file. Everything points into the file object and lives until lt_st_close. */
typedef struct {
    const char *name; /* UTF-8, NUL-terminated */
    lt_st_dtype dtype;
    const int64_t *shape; /* (ndim) */
    int ndim;             /* 0 for a scalar */
    int64_t numel;        /* product of shape (1 for a scalar) */
    uint64_t begin, end;  /* byte range inside the data buffer */
} lt_st_entry;

typedef struct lt_st_file lt_st_file;

/* Maps path read-only, validates it and sets *out (NULL on failure). Returns LT_ERR_IO when the file can't
 * be opened or mapped, LT_ERR_FORMAT when it is malformed, LT_ERR_NOMEM; err names the file and the
 * tensor/field at fault. Close with lt_st_close. */
lt_status lt_st_open(const char *path, lt_st_file **out, lt_err *err);
/* Validates an in-memory file image buf (len), as lt_st_open does. The file BORROWS buf: keep buf alive and
 * unchanged until lt_st_close. what names the image in error messages (NULL: "<memory>"). */
lt_status lt_st_parse(const uint8_t *buf, size_t len, const char *what, lt_st_file **out, lt_err *err);
/* Frees the file and unmaps it; a no-op on NULL. Entries and names become invalid. */
void lt_st_close(lt_st_file *f);

/* Tensors in file (offset) order. lt_st_entry_at returns NULL when i is out of range. */
int lt_st_count(const lt_st_file *f);
const lt_st_entry *lt_st_entry_at(const lt_st_file *f, int i);
/* The entry named name, or NULL. O(log n). */
const lt_st_entry *lt_st_find(const lt_st_file *f, const char *name);
/* The raw little-endian bytes of an entry (entry->end - entry->begin of them). */
const uint8_t *lt_st_entry_bytes(const lt_st_file *f, const lt_st_entry *e);

/* The __metadata__ key/value pairs in header order (none when the file has no __metadata__). */
int lt_st_metadata_count(const lt_st_file *f);
/* Sets *key and *value for pair i; returns 0, or -1 (outputs untouched) when i is out of range. */
int lt_st_metadata_at(const lt_st_file *f, int i, const char **key, const char **value);
/* The value for key, or NULL. */
const char *lt_st_metadata_get(const lt_st_file *f, const char *key);

/* Converts entry e to float32 into dst (n values); n must equal e->numel (LT_ERR_SHAPE otherwise).
 * F32 is copied bit-exactly; F16/BF16 convert exactly (subnormals, inf, nan and -0 kept); F64 rounds to
 * nearest (out-of-range values become +-inf); integer and BOOL dtypes round to the nearest float (exact
 * below 2^24, e.g. BatchNorm's I64 num_batches_tracked). F8_E5M2/F8_E4M3 give LT_ERR_FORMAT. */
lt_status lt_st_read_f32(const lt_st_file *f, const lt_st_entry *e, float *dst, int64_t n, lt_err *err);

/* A tensor to write: float32 from data, or int64 from i64 when that is set (PyTorch's batch-norm
 * num_batches_tracked buffers are I64 scalars, and transformers reports them missing when they are absent). */
typedef struct {
    const char *name;     /* UTF-8, unique, not "__metadata__" */
    const float *data;    /* (numel) may be NULL only when numel is 0 or i64 is set */
    const int64_t *shape; /* (ndim) non-negative */
    int ndim;             /* 0 for a scalar */
    const int64_t *i64;   /* (numel) when non-NULL, the tensor is written as I64 from these values */
} lt_st_tensor_ref;

/* Writes n tensors (F32, or I64 where i64 is set) to path atomically: the bytes go to "<path>.tmp", which is flushed, fsync'd and
 * renamed over path, so a reader sees the old file or the new one, never half of one. meta_kv holds
 * n_meta key/value pairs (meta_kv[2i] = key, meta_kv[2i+1] = value; transformers expects
 * {"format": "pt"}); n_meta 0 writes no __metadata__. Tensors are written sorted by name, as the
 * reference does; the caller's array is not reordered. On failure nothing is left at path.tmp and path is
 * untouched. */
lt_status lt_st_write(const char *path, const lt_st_tensor_ref *tensors, int n, const char *const *meta_kv,
                      int n_meta, lt_err *err);

#endif
