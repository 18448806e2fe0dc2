/* params_io.h - saves a parameter store to safetensors and loads one from it, by Hugging Face name.
 *
 * Loading follows transformers' from_pretrained: tensors are matched by name; names only in the store are
 * "missing" (they keep their current, freshly initialized values), names only in the file are
 * "unexpected" (ignored); the report lists both so the caller can warn. A shape mismatch is an error unless
 * the name starts with one of the caller's skip_mismatched_prefixes (a classifier head re-initialized for a
 * different label count): such a tensor keeps its current values and is listed in report->mismatched.
 *
 * BatchNorm's I64 "*.num_batches_tracked" entries that the store doesn't declare are skipped without being
 * reported as unexpected (lathe's batch norm uses a fixed momentum and never reads the counter; counted in
 * report->n_ignored). A store that does declare one loads it converted to float. */
#ifndef LT_PARAMS_IO_H
#define LT_PARAMS_IO_H

#include "core/params.h"
#include "core/status.h"

typedef struct {
    const char *const *skip_mismatched_prefixes; /* (n_skip_mismatched_prefixes) e.g. {"classifier."} */
    int n_skip_mismatched_prefixes;
} lt_load_opts;

typedef struct {
    char *name;   /* the tensor's name */
    char *detail; /* "file (1000, 2048), model (10, 2048)" */
} lt_load_mismatch;

typedef struct {
    char **missing; /* (n_missing) in the store, not in the file; kept as initialized */
    int n_missing;
    char **unexpected; /* (n_unexpected) in the file, not in the store; ignored */
    int n_unexpected;
    lt_load_mismatch *mismatched; /* (n_mismatched) shape differs, allowed by a prefix; kept as initialized */
    int n_mismatched;
    int n_loaded;  /* tensors copied from the file */
    int n_ignored; /* num_batches_tracked entries skipped (see above) */
} lt_load_report;

/* Writes every trainable and frozen tensor, plus the buffers (BN running statistics) when include_buffers,
 * to path as F32 with __metadata__ {"format": "pt"}, atomically (see lt_st_write). The store must be
 * allocated. */
lt_status lt_params_save_safetensors(const lt_params *p, const char *path, int include_buffers, lt_err *err);

/* Loads path into the allocated store p with no shape mismatch allowed. report (may be NULL) is
 * overwritten, not freed: pass a zeroed or lt_load_report_free'd one, and free it after, even on failure.
 * Every name and shape is checked before any value is written, so on failure the store is unchanged. */
lt_status lt_params_load_safetensors(lt_params *p, const char *path, lt_load_report *report, lt_err *err);
/* Same, with options (opts may be NULL). */
lt_status lt_params_load_safetensors_opts(lt_params *p, const char *path, const lt_load_opts *opts,
                                          lt_load_report *report, lt_err *err);

/* Frees the report's lists and zeroes it; a no-op on NULL. */
void lt_load_report_free(lt_load_report *report);

#endif
