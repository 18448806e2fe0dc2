/* metrics.h - Prometheus counters of an inference server, rendered as the text exposition format for
 * GET /metrics:
 *   lathe_inference_requests_total{code="200"}         inference requests answered, by HTTP status
 *   lathe_inference_errors_total{class="invalid_json"} failed requests, by lt_infer_error_class
 *   lathe_inference_instances_total                    instances predicted
 *   lathe_inference_request_duration_seconds           histogram: body received -> response ready
 *   lathe_inference_batches_total, lathe_inference_batch_images_total, lathe_inference_queued_images
 *                                                      from the batcher (mean batch = images / batches)
 * Thread-safe (one mutex; an observation is a handful of increments). */
#ifndef LT_INFER_METRICS_H
#define LT_INFER_METRICS_H

#include "inference/batcher.h"
#include "inference/request.h"

typedef struct lt_infer_metrics lt_infer_metrics;

/* NULL when out of memory. */
lt_infer_metrics *lt_infer_metrics_create(void);
/* NULL is a no-op. */
void lt_infer_metrics_destroy(lt_infer_metrics *m);

/* Counts one answered request: its status, its error class (LT_INFER_ERR_NONE on success), how long it
 * took (< 0: not timed, e.g. a request the transport refused; kept out of the histogram) and how many
 * instances it predicted. Can't fail. */
void lt_infer_metrics_observe(lt_infer_metrics *m, int http_status, lt_infer_error_class cls, double seconds,
                              int n_instances);

/* The exposition text (malloc'd, caller frees; NULL when out of memory). batcher may be NULL. */
char *lt_infer_metrics_render(lt_infer_metrics *m, const lt_infer_batcher_stats *batcher);

#endif
