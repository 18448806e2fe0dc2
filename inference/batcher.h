/* batcher.h - micro-batching: requests that arrive together are predicted in one batch.
 *
 * Callers (HTTP connection threads, a Kafka worker's consumer) submit a job of n images and block; one
 * inference thread takes the oldest job, then keeps collecting queued jobs until the batch holds max_batch
 * images or max_delay_ms have passed since that first job was taken, and calls the predict function once
 * for the whole batch. Jobs are never split: a batch holds whole jobs totalling at most max_batch images,
 * except that a single job larger than max_batch runs alone (the predict function splits it into passes).
 * max_delay_ms = 0 takes what is queued at that moment without waiting.
 *
 * The predict function is a parameter so the same batcher serves any model (lt_infer_batcher_model_fn
 * wraps an lt_infer_model) and tests can count batches with a fake one. */
#ifndef LT_INFER_BATCHER_H
#define LT_INFER_BATCHER_H

#include "inference/model.h"

#include <stdint.h>

/* Predicts n images into out[0..n-1]; called from the inference thread only. On failure out is untouched. */
typedef lt_status (*lt_infer_predict_fn)(void *ctx, const lt_image *const *imgs, int n,
                                         lt_infer_prediction *out, lt_err *err);

/* An lt_infer_predict_fn for ctx = an lt_infer_model. */
lt_status lt_infer_batcher_model_fn(void *ctx, const lt_image *const *imgs, int n, lt_infer_prediction *out,
                                    lt_err *err);

typedef struct {
    int max_batch;    /* images per batch, >= 1 (default 8) */
    int max_delay_ms; /* how long a batch waits for more jobs after its first, >= 0 (0: no wait; 2 when opts
                       * is NULL) */
    int max_queue;    /* images waiting beyond which submissions are refused (LT_ERR_STATE), default 1024 */
} lt_infer_batcher_opts;

typedef struct lt_infer_batcher lt_infer_batcher;

/* Starts the inference thread. opts may be NULL for the defaults (fields < 0 are LT_ERR_ARG; max_batch and
 * max_queue 0 mean their defaults). */
lt_status lt_infer_batcher_create(lt_infer_predict_fn fn, void *ctx, const lt_infer_batcher_opts *opts,
                                  lt_infer_batcher **out, lt_err *err);

/* Stops accepting jobs (one racing with it gets LT_ERR_CANCELLED), answers every queued job, joins the
 * thread and frees. Call it once every submitter has returned (e.g. after the HTTP server has stopped).
 * NULL is a no-op. */
void lt_infer_batcher_destroy(lt_infer_batcher *b);

/* Queues n images (n >= 1; the images must stay valid until return) and waits for their predictions in
 * out[0..n-1] (free each with lt_infer_prediction_free). Returns LT_OK; LT_ERR_STATE when the queue is
 * full (server busy: answer 503); LT_ERR_CANCELLED when the batcher is shutting down; or what the predict
 * function failed with. Thread-safe. */
lt_status lt_infer_batcher_submit(lt_infer_batcher *b, const lt_image *const *imgs, int n,
                                  lt_infer_prediction *out, lt_err *err);

/* Counters since creation. */
typedef struct {
    uint64_t batches;  /* predict calls */
    uint64_t images;   /* images predicted */
    uint64_t jobs;     /* jobs answered */
    int queued_jobs;   /* jobs waiting now (not counting the batch being predicted) */
    int queued_images; /* their images */
} lt_infer_batcher_stats;

void lt_infer_batcher_get_stats(lt_infer_batcher *b, lt_infer_batcher_stats *s);

#endif
