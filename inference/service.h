/* service.h - one model served: request body in, HTTP status and response body out, whatever the transport.
 * `lathe serve` wraps it in HTTP (http.h); a Kafka worker can call lt_infer_service_handle on each message.
 *
 * A request is all or nothing: every instance is parsed, decoded and checked before any is predicted, and
 * the first bad one fails the whole request with its 4xx (naming it); a good request's images go through
 * the service's batcher, so concurrent requests share forward passes. */
#ifndef LT_INFER_SERVICE_H
#define LT_INFER_SERVICE_H

#include "inference/batcher.h"
#include "inference/metrics.h"
#include "inference/model.h"
#include "inference/request.h"

typedef struct {
    lt_infer_limits limits;      /* zero fields: the defaults */
    lt_infer_batcher_opts batch; /* max_batch 0: 8; max_delay_ms as given (0: no wait); max_queue 0: 1024 */
} lt_infer_service_opts;

typedef struct lt_infer_service lt_infer_service;

/* Starts a service for model (not owned: it must outlive the service) with its own batcher and metrics.
 * opts NULL: every default, max_delay_ms 2. */
lt_status lt_infer_service_create(lt_infer_model *model, const lt_infer_service_opts *opts,
                                  lt_infer_service **out, lt_err *err);
/* Answers what is queued, stops the batcher and frees. Call once no handle call is running. NULL: no-op. */
void lt_infer_service_destroy(lt_infer_service *s);

/* Answers one request body (len bytes, need not be NUL-terminated). Returns the HTTP status (200, 4xx,
 * 500, 503) and sets *response to the JSON body (malloc'd, caller frees; NULL only when out of memory).
 * Counted in the metrics. Thread-safe; blocks until the prediction is done. */
int lt_infer_service_handle(lt_infer_service *s, const char *body, size_t len, char **response);

/* Counts a request the transport answered itself (an unknown route, a body over the limit). */
void lt_infer_service_observe(lt_infer_service *s, int http_status, lt_infer_error_class cls);

lt_infer_model *lt_infer_service_model(lt_infer_service *s);
/* The resolved request limits. */
lt_infer_limits lt_infer_service_limits(const lt_infer_service *s);
/* GET /metrics' body (malloc'd; NULL when out of memory). */
char *lt_infer_service_metrics_text(lt_infer_service *s);

#endif
