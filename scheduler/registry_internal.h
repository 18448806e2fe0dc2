/* registry_internal.h - the registry's records and helpers shared by registry.c (records, persistence,
 * background work) and routes_registry.c (the HTTP routes). Not for other modules. */
#ifndef LT_SCHED_REGISTRY_INTERNAL_H
#define LT_SCHED_REGISTRY_INTERNAL_H

#include "registry.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

typedef enum {
    LT_EP_CREATING = 0,
    LT_EP_ACTIVE,
    LT_EP_FAILED,
    LT_EP_DELETING,
    LT_EP_STATE_COUNT
} lt_ep_state;
typedef enum { LT_STAGE_LOADING = 0, LT_STAGE_ACTIVE, LT_STAGE_FAILED, LT_STAGE_STATE_COUNT } lt_stage_state;

typedef struct {
    char name[LT_REG_NAME_MAX];
    char *uri;         /* storage URI of the model directory */
    char *training_id; /* the training it came from; NULL for a URI */
    char created_at[LT_JOB_TIME_MAX];
} lt_reg_model;

typedef struct {
    char name[LT_REG_NAME_MAX];
    char model[LT_REG_NAME_MAX];
    char *model_uri; /* copied from the model when the stage was made: what the workers load */
    lt_stage_state state;
    char *error;  /* why FAILED; NULL otherwise */
    uint64_t seq; /* in memory only: tells a background load whether this is still the stage it loads */
} lt_reg_stage;

typedef struct {
    char name[LT_REG_NAME_MAX];
    lt_ep_state state;
    char default_stage[LT_REG_NAME_MAX];
    char pending_default[LT_REG_NAME_MAX]; /* a stage added with "default": true, made default once loaded */
    lt_reg_stage *stages;                  /* (n_stages) in the order they were added */
    size_t n_stages;
    int replicas;
    char *error; /* why FAILED; NULL otherwise */
    char created_at[LT_JOB_TIME_MAX];
    char updated_at[LT_JOB_TIME_MAX];
    uint64_t seq; /* in memory only, as lt_reg_stage.seq */
} lt_reg_endpoint;

struct lt_registry {
    lt_registry_opts o; /* storage_root points at root below */
    char *root;
    pthread_mutex_t mu; /* guards everything below but the atomics */
    lt_reg_model **models;
    size_t n_models, cap_models;
    lt_reg_endpoint **endpoints;
    size_t n_endpoints, cap_endpoints;
    uint64_t next_seq;
    int tasks; /* background threads running */
    pthread_cond_t tasks_cv;
    atomic_llong infer_ok, infer_timeout, infer_unavailable, loads_failed, persist_failures;
};

const char *lt_reg_ep_state_name(lt_ep_state s);
const char *lt_reg_stage_state_name(lt_stage_state s);

/* 1 when name matches [a-z0-9][a-z0-9._-]{0,62}. */
int lt_reg_valid_name(const char *name);

/* Lookups and changes; the caller holds r->mu. */
lt_reg_model *lt_reg_find_model(lt_registry *r, const char *name);
lt_reg_endpoint *lt_reg_find_endpoint(lt_registry *r, const char *name);
lt_reg_stage *lt_reg_find_stage(lt_reg_endpoint *e, const char *name);
/* Name of an endpoint (and its stage) using model; NULL when none. */
const lt_reg_endpoint *lt_reg_model_user(lt_registry *r, const char *model, const char **stage);
/* Takes ownership (freed on failure); LT_ERR_NOMEM. */
lt_status lt_reg_add_model(lt_registry *r, lt_reg_model *m);
lt_status lt_reg_add_endpoint(lt_registry *r, lt_reg_endpoint *e);
/* Removes and frees; a missing name is a no-op. */
void lt_reg_remove_model(lt_registry *r, const char *name);
void lt_reg_remove_endpoint(lt_registry *r, const char *name);
/* Appends a LOADING stage; NULL on OOM. */
lt_reg_stage *lt_reg_add_stage(lt_registry *r, lt_reg_endpoint *e, const char *name, const lt_reg_model *m);
void lt_reg_remove_stage(lt_reg_endpoint *e, const char *name);

void lt_reg_model_free(lt_reg_model *m);
void lt_reg_endpoint_free(lt_reg_endpoint *e);

cJSON *lt_reg_model_to_json(const lt_reg_model *m);
cJSON *lt_reg_endpoint_to_json(const lt_reg_endpoint *e);

/* Enqueues the record of a model/endpoint (NULL record: a tombstone for kind/name) under r->mu; *ticket for
 * lt_reg_wait after unlocking. */
lt_status lt_reg_persist_model(lt_registry *r, const char *name, const lt_reg_model *m, void **ticket,
                               lt_err *err);
lt_status lt_reg_persist_endpoint(lt_registry *r, const char *name, const lt_reg_endpoint *e, void **ticket,
                                  lt_err *err);
/* Waits for a ticket (NULL: LT_OK); counts a failure. */
lt_status lt_reg_wait(lt_registry *r, void *ticket, lt_err *err);

/* Background work on an endpoint (started with r->mu held or not; the thread takes it itself). */
typedef enum {
    LT_REG_TASK_CREATE, /* create the topic, load the first stage: CREATING -> ACTIVE | FAILED */
    LT_REG_TASK_LOAD,   /* load one stage: LOADING -> ACTIVE | FAILED */
    LT_REG_TASK_DELETE, /* delete the topic, then the record */
    LT_REG_TASK_REVIVE  /* after a restart: topic and ACTIVE stages again, states unchanged */
} lt_reg_task_kind;
/* Starts a thread for kind on endpoint/stage (stage NULL for CREATE/DELETE/REVIVE) whose records carry
 * seq. LT_ERR_NOMEM when no thread could be started. Caller holds r->mu. */
lt_status lt_reg_start_task(lt_registry *r, lt_reg_task_kind kind, const lt_reg_endpoint *e,
                            const lt_reg_stage *st, lt_err *err);

#endif
