/* registry.h - models, endpoints and their stages (docs/api.md "Models", "Endpoints"), and the routes of
 * real-time inference, which hand each request to the gateway (gateway.h).
 *
 * A model is a name for a model directory in storage (a SUCCEEDED training's output, or a URI). An endpoint
 * serves one or more stages, each a model; one stage is the default. States:
 *
 *     endpoint: CREATING -> ACTIVE | FAILED;  any -> DELETING -> (gone)
 *     stage:    LOADING -> ACTIVE | FAILED
 *
 * CREATING/LOADING are left by a background thread that calls lt_gateway_create_endpoint and
 * lt_gateway_load. An inference request picks its stage and that stage's model URI under the registry lock
 * when it starts and passes both to the gateway, so switching the default stage (one string swap under the
 * lock) never moves a request in flight.
 *
 * Every record is written through the store (the scheduler's compacted <p>registry topic, key "model/<name>"
 * or "endpoint/<name>", a tombstone on delete) in the order it changed, and read back at start with
 * lt_registry_load_record; lt_registry_resume then restarts what a previous scheduler left half done. */
#ifndef LT_SCHED_REGISTRY_H
#define LT_SCHED_REGISTRY_H

#include "core.h"
#include "gateway.h"

#include <stddef.h>

#define LT_REG_NAME_MAX 64 /* names: [a-z0-9][a-z0-9._-]{0,62} */

typedef struct lt_registry lt_registry;

/* Where records go; the same two-step enqueue/wait as lt_sched_bus.persist, for the same ordering reason. */
typedef struct {
    void *ctx;
    /* Enqueues a record (json NULL: a tombstone) for key; *ticket as lt_sched_bus.persist. */
    lt_status (*put)(void *ctx, const char *key, const char *json, void **ticket, lt_err *err);
    /* Waits for a put's delivery and frees the ticket. */
    lt_status (*wait)(void *ctx, void *ticket, lt_err *err);
} lt_registry_store;

typedef struct {
    lt_gateway *gateway;                 /* borrowed; must outlive the registry; may be set later */
    lt_registry_store store;             /* borrowed context */
    const char *storage_root;            /* relative model URIs are joined to it (copied) */
    const lt_storage_opts *storage_opts; /* for checking model directories; NULL: defaults (borrowed) */
    int inference_timeout_ms;            /* per request (0: 10000) */
    int load_timeout_ms;                 /* per lt_gateway_load (0: 120000) */
    size_t max_inference_body;           /* inference request bodies (0: lathe serve's 64 MB default) */
    int max_replicas;                    /* upper bound of "replicas" (0: 64) */
    int quiet;                           /* no informational lines on stderr */
} lt_registry_opts;

/* NULL and err (LT_ERR_NOMEM) on failure. */
lt_registry *lt_registry_new(const lt_registry_opts *o, lt_err *err);
/* Waits for the background threads (each ends by its gateway call's timeout at worst), then frees. Call it
 * after the HTTP server has stopped. NULL is a no-op. */
void lt_registry_free(lt_registry *r);

/* Sets the gateway when it could not be given to lt_registry_new (the scheduler makes it once Kafka answers).
 * Call it before lt_registry_resume and before any request reaches lt_registry_handle. */
void lt_registry_set_gateway(lt_registry *r, lt_gateway *gw);

/* Loads one <p>registry record at start (data NULL / len 0: a tombstone). LT_ERR_FORMAT naming the key or
 * field for a record that is not one. */
lt_status lt_registry_load_record(lt_registry *r, const char *key, const void *data, size_t len, lt_err *err);
/* Loads the records mirrored in dir as <kind>.<name>.json (see lt_registry_mirror_name); a missing dir is
 * nothing to load. *n receives the number loaded. */
lt_status lt_registry_load_dir(lt_registry *r, const char *dir, size_t *n, lt_err *err);
/* The file name (without ".json") a record key is mirrored under: "model/x" -> "model.x". */
void lt_registry_mirror_name(const char *key, char *buf, size_t size);

/* After loading: endpoints left CREATING or DELETING and stages left LOADING go on in the background;
 * ACTIVE endpoints get their topic and stages again (idempotent; a fresh in-memory cluster lost them). */
void lt_registry_resume(lt_registry *r);

/* 1 when path is one of the registry's (/v1/models..., /v1/endpoints...); *route receives its counter. */
int lt_registry_owns(const char *path, lt_sched_route *route);
/* The body limit for path: max_inference_body for inference routes, else fallback. */
size_t lt_registry_max_body(const lt_registry *r, const char *path, size_t fallback);
/* Answers one request on a path lt_registry_owns (auth and readiness already checked by the caller). s is
 * the scheduler core, for looking trainings up. */
void lt_registry_handle(lt_registry *r, lt_sched *s, const lt_sched_request *rq, lt_sched_response *rs);

/* Prometheus lines (gauges of models and endpoints by state, inference outcomes); malloc'd, NULL on OOM. */
char *lt_registry_metrics_text(lt_registry *r);

/* The batch-inference submission's model-name resolver (submit.h's lt_submit_opts.resolve_model; ctx is the
 * registry): 1 with the model directory's URI in uri, 0 when no model has that name, -1 with err set when the
 * URI does not fit in cap. */
int lt_registry_resolve_model(void *ctx, const char *name, char *uri, size_t cap, lt_err *err);

#endif
