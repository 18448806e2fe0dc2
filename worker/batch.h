/* batch.h - a batch inference's body: every image of a local folder through a local model directory, the
 * results written to output storage as JSON Lines, resumable from its own checkpoints.
 *
 * Output (keys under the output storage handle):
 *   predictions.jsonl  one line per image, in sorted relative-path order (bytewise):
 *                        {"path":"<relative path>","response":<the endpoint's body for that one image>}
 *                      or, for an image that does not decode (or that the model refuses):
 *                        {"path":"<relative path>","error":"<why>"}
 *   summary.json       {"total","succeeded","failed","failures":[{"path","error"}...],"model","dataset"}
 *   .lathe/batch/      the checkpoint while the job runs: predictions.part (the lines so far) and state.json
 *                      {"done","bytes","total","list_hash"}; removed once the job is complete.
 * Images are the regular files below the folder whose names end in .png, .jpg or .jpeg (any case); names
 * starting with '.' (files and folders) are skipped; other files are ignored. Nothing else is read.
 *
 * Resume: a run that finds a state.json whose list_hash matches the current image list continues after
 * its `done` images, from the part file cut to `bytes` (a part uploaded after its state is longer, never
 * shorter), so a crash at any point leaves no duplicate and no missing line. */
#ifndef LT_WORKER_BATCH_H
#define LT_WORKER_BATCH_H

#include "core/status.h"
#include "storage/storage.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    void *ctx;
    /* Polled before each batch; non-zero: checkpoint and stop (LT_ERR_CANCELLED). NULL: never. */
    int (*should_stop)(void *ctx);
    /* Once the images are listed and the model loaded: resumed_from is the images already done (-1 when
     * it starts fresh). */
    void (*start)(void *ctx, int64_t resumed_from, int64_t total);
    /* After each batch. */
    void (*progress)(void *ctx, int64_t done, int64_t total);
    /* After each checkpoint is in storage. */
    void (*checkpoint)(void *ctx, int64_t done);
} lt_batch_hooks;

typedef struct {
    const char *model_dir;    /* local model directory (config.json, model.safetensors, ...) */
    const char *images_dir;   /* local folder of images */
    const char *work_dir;     /* local scratch folder (created): the JSON Lines file being written */
    lt_storage *out;          /* output storage */
    const char *model_name;   /* as the job names it, for summary.json */
    const char *dataset_name; /* as the job names it, for summary.json and errors */
    int batch_size;           /* images per forward pass; 0: 8 */
    int checkpoint_images;    /* checkpoint at least every N images; 0: 256 */
    double checkpoint_s;      /* and when S seconds have passed since the last one; 0: 10 */
    lt_batch_hooks hooks;
} lt_batch_opts;

/* Runs (or resumes) the batch inference. LT_OK: complete, predictions.jsonl and summary.json are in
 * storage and *summary (owned by the caller) is {"total","succeeded","failed"}. LT_ERR_CANCELLED: stopped by
 * should_stop after a checkpoint. LT_ERR_ARG: a bad model directory or no image at all (err says which,
 * naming "model" or "dataset"). LT_ERR_IO: storage failed (transient). LT_ERR_NOMEM. */
lt_status lt_batch_run(const lt_batch_opts *o, cJSON **summary, lt_err *err);

/* The images below dir as described above: *paths (n) are malloc'd relative paths in sorted order; free with
 * lt_batch_paths_free. LT_ERR_IO when dir can't be read. */
lt_status lt_batch_list_images(const char *dir, char ***paths, size_t *n, lt_err *err);
void lt_batch_paths_free(char **paths, size_t n);

#endif
