/* core.h - the scheduler without its transports: the job table, the HTTP API's handlers, event folding and
 * the counters behind /metrics. Kafka is reached through lt_sched_bus (kafka_bus.c in the service, a fake in
 * tests), HTTP through lt_sched_handle (http.c feeds it libmicrohttpd's requests).
 *
 * Ordering: a job's records reach <p>jobs.state in the order they changed because every change and the
 * enqueue of its record happen under the table lock (bus.persist only enqueues); waiting for the delivery
 * happens after the lock is released. */
#ifndef LT_SCHED_CORE_H
#define LT_SCHED_CORE_H

#include "messaging/messages.h"
#include "submit.h"
#include "table.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    void *ctx;
    /* Enqueues a job record (key id, value json; json NULL = a tombstone) for <p>jobs.state and returns at
     * once. With ticket non-NULL, *ticket receives a handle for wait (which the caller must then call). */
    lt_status (*persist)(void *ctx, const char *id, const char *json, void **ticket, lt_err *err);
    /* Waits for a persist's delivery and frees the ticket: LT_OK once the brokers have it. */
    lt_status (*wait)(void *ctx, void *ticket, lt_err *err);
    /* Enqueues a job message for <p>jobs (key id); *ticket as for persist (wait must be called on it). */
    lt_status (*publish_job)(void *ctx, const char *id, const char *json, void **ticket, lt_err *err);
    /* Publishes {"type":"cancel","id"} on <p>control and waits for its delivery. */
    lt_status (*publish_cancel)(void *ctx, const char *id, lt_err *err);
    /* 1 while Kafka is usable (for /v1/health); NULL: always. */
    int (*healthy)(void *ctx);
} lt_sched_bus;

/* Routes of the API, for the request counters. */
typedef enum {
    LT_ROUTE_SUBMIT = 0,   /* POST /v1/trainings */
    LT_ROUTE_LIST,         /* GET /v1/trainings */
    LT_ROUTE_GET,          /* GET /v1/trainings/{id} */
    LT_ROUTE_CANCEL,       /* POST /v1/trainings/{id}/cancel */
    LT_ROUTE_HEALTH,       /* GET /v1/health */
    LT_ROUTE_METRICS,      /* GET /metrics */
    LT_ROUTE_MODELS,       /* /v1/models... (registry.h) */
    LT_ROUTE_ENDPOINTS,    /* /v1/endpoints... but inference */
    LT_ROUTE_INFERENCE,    /* POST /v1/endpoints/{name}[/stages/{stage}]/inference */
    LT_ROUTE_BATCH_SUBMIT, /* POST /v1/batch-inferences */
    LT_ROUTE_BATCH_LIST,   /* GET /v1/batch-inferences */
    LT_ROUTE_BATCH_GET,    /* GET /v1/batch-inferences/{id} */
    LT_ROUTE_BATCH_CANCEL, /* POST /v1/batch-inferences/{id}/cancel */
    LT_ROUTE_OTHER,        /* anything else (404/405) */
    LT_ROUTE_COUNT
} lt_sched_route;

#define LT_SCHED_CODES 13 /* status codes counted: see the table in core.c */

typedef struct {
    atomic_llong requests[LT_ROUTE_COUNT][LT_SCHED_CODES]; /* by route and status code */
    atomic_llong request_us[LT_ROUTE_COUNT];               /* time spent answering, microseconds */
    atomic_llong submitted;                                /* jobs accepted (201) */
    atomic_llong events;                                   /* events folded */
    atomic_llong events_ignored;                           /* stale or after a final state */
    atomic_llong events_malformed;                         /* sent to the dead-letter topic */
    atomic_llong events_unknown_job; /* events for a job this scheduler never saw (record made from them) */
    atomic_llong persist_failures;   /* job records that could not be written to <p>jobs.state */
    atomic_llong records_loaded;     /* records read back from <p>jobs.state at start */
} lt_sched_metrics;

struct lt_registry; /* registry.h */

typedef struct {
    lt_table *table;       /* owned */
    lt_sched_bus bus;      /* borrowed context */
    lt_submit_opts submit; /* storage_root and storage_opts borrowed */
    char *api_token;       /* owned; NULL or "" = no auth */
    size_t list_limit;     /* most records GET /v1/trainings (and /v1/batch-inferences) returns (default 100,
                              ?limit= up to 1000) */
    atomic_int ready;      /* 1 once the state has been rebuilt (health says "starting" before) */
    int64_t started_ms;    /* wall clock at create, for uptime */
    lt_sched_metrics m;

    /* models and endpoints (registry.h, borrowed); NULL: those routes answer 404 */
    struct lt_registry *registry;
} lt_sched;

/* Fills s; api_token is copied. LT_ERR_NOMEM. Free with lt_sched_free (safe on a zeroed or failed s). */
lt_status lt_sched_init(lt_sched *s, const lt_sched_bus *bus, const lt_submit_opts *submit,
                        const char *api_token, lt_err *err);
void lt_sched_free(lt_sched *s);

/* One HTTP request as the transport received it. */
typedef struct {
    const char *method;          /* "GET", "POST", ... */
    const char *path;            /* without the query string */
    const char *state;           /* ?state= (NULL when absent) */
    const char *limit;           /* ?limit= */
    const char *authorization;   /* Authorization header or NULL */
    const char *idempotency_key; /* Idempotency-Key header or NULL */
    const char *body;            /* (body_len) request body, not NUL-terminated */
    size_t body_len;
} lt_sched_request;

typedef struct {
    int status; /* HTTP status */
    char *body; /* malloc'd; the caller frees */
    size_t body_len;
    const char *content_type; /* static string */
    const char *allow;        /* Allow header for 405, else NULL */
    const char *www_auth;     /* WWW-Authenticate for 401, else NULL */
    lt_sched_route route;
} lt_sched_response;

/* Answers one request (never fails: an internal problem is a 500/503 with {"error"}) and counts it. */
void lt_sched_handle(lt_sched *s, const lt_sched_request *rq, lt_sched_response *rs);

/* Answers status with body (taken; NULL or unprintable -> 500 "out of memory"), as application/json. */
void lt_sched_respond_json(lt_sched_response *rs, int status, cJSON *body);
/* Answers status with {"error": <printf of fmt>}. */
void lt_sched_respond_error(lt_sched_response *rs, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Counts a finished request's time (the transport measures it). */
void lt_sched_count_time(lt_sched *s, lt_sched_route route, int64_t us);

/* Folds one <p>events message into the table and enqueues the changed record. *ticket (may be NULL to not
 * wait) is set when a record was enqueued; the caller waits on it with bus.wait before committing the
 * event's offset. LT_ERR_FORMAT (err says why) for a malformed event: the caller dead-letters it. */
lt_status lt_sched_fold_event(lt_sched *s, const void *data, size_t len, void **ticket, lt_err *err);

/* Loads one <p>jobs.state record at start (len 0 / data NULL: a tombstone for key). LT_ERR_FORMAT for a
 * record that is not one (the caller logs and skips it). */
lt_status lt_sched_load_record(lt_sched *s, const char *key, const void *data, size_t len, lt_err *err);

/* The Prometheus text exposition of the counters and job gauges; malloc'd, NULL on OOM. */
char *lt_sched_metrics_text(lt_sched *s, size_t *len);

#endif
