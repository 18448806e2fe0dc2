/* model.c - serving models: an algorithm switch over backends, batched prediction, and the model cache. */
#include "model.h"

#include "io/fsutil.h"
#include "ops/ops.h"
#include "tasks/cls_model.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const char *const algo_names[LT_INFER_ALGORITHM_COUNT] = {"image-classification",
                                                                 "semantic-segmentation", "object-detection"};

const char *lt_infer_algorithm_str(lt_infer_algorithm a) {
    return (unsigned)a < LT_INFER_ALGORITHM_COUNT ? algo_names[a] : "unknown";
}

lt_status lt_infer_model_probe(const char *dir, lt_infer_algorithm *algo, lt_err *err) {
    char *path = lt_path_join(dir, "config.json");
    if (!path) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    cJSON *cfg = NULL;
    lt_status st = lt_json_read_file(path, &cfg, err);
    if (st != LT_OK) {
        free(path);
        return st;
    }
    const cJSON *lathe = cJSON_GetObjectItemCaseSensitive(cfg, "lathe");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(lathe, "algorithm");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(cfg, "model_type");
    static const char *const model_types[LT_INFER_ALGORITHM_COUNT] = {"resnet", "segformer", "detr"};
    int found = -1;
    for (int i = 0; i < LT_INFER_ALGORITHM_COUNT && found < 0; i++) {
        if (cJSON_IsString(a) && !strcmp(a->valuestring, algo_names[i])) found = i;
        if (!a && cJSON_IsString(mt) && !strcmp(mt->valuestring, model_types[i])) found = i;
    }
    if (found < 0) {
        if (a)
            st = lt_errorf(err, LT_ERR_ARG,
                           "%s: unknown lathe.algorithm %s (valid: image-classification, "
                           "semantic-segmentation, object-detection)",
                           path, cJSON_IsString(a) ? a->valuestring : "(not a string)");
        else
            st = lt_errorf(err, LT_ERR_ARG,
                           "%s: no lathe.algorithm and model_type %s is not resnet, segformer or detr", path,
                           cJSON_IsString(mt) ? mt->valuestring : "(missing)");
    } else {
        *algo = (lt_infer_algorithm)found;
    }
    cJSON_Delete(cfg);
    free(path);
    return st;
}

void lt_infer_prediction_free(lt_infer_prediction *p) {
    if (!p) return;
    free(p->probs);
    free(p->label_map);
    free(p->boxes);
    memset(p, 0, sizeof *p);
}

/* ---- the model and its backends ---- */

typedef struct backend backend;

struct lt_infer_model {
    lt_infer_algorithm algo;
    const backend *be;   /* the algorithm's functions */
    void *impl;          /* the backend's state, owned */
    char *dir;           /* owned copy */
    int max_batch;       /* images per forward pass */
    char *const *labels; /* (n_labels) owned by impl */
    int n_labels;
    pthread_mutex_t mu; /* serializes predict: graphs are not reentrant */
};

struct backend {
    lt_status (*load)(lt_infer_model *m, const char *dir, lt_err *err); /* sets impl, labels, n_labels */
    lt_status (*predict)(lt_infer_model *m, const lt_image *const *imgs, int n, lt_infer_prediction *out,
                         lt_err *err);
    char *(*respond)(const lt_infer_model *m, const lt_infer_prediction *p, int n);
    void (*free)(void *impl);
};

/* ---- image classification ---- */

#define CLS_MAX_POW 16 /* graphs for batches 1, 2, 4, ... 2^15 */

typedef struct {
    lt_cls_model cls;
    lt_graph *graphs[CLS_MAX_POW]; /* graphs[k]: eval graph of batch 2^k, built on first use */
    lt_tensor *in[CLS_MAX_POW];    /* (2^k, 3, S, S) */
    lt_tensor *out[CLS_MAX_POW];   /* (2^k, n_labels) softmax */
} cls_impl;

static void cls_free(void *p) {
    cls_impl *c = p;
    if (!c) return;
    for (int k = 0; k < CLS_MAX_POW; k++)
        lt_graph_destroy(c->graphs[k]);
    lt_cls_model_free(&c->cls);
    free(c);
}

static lt_status cls_load(lt_infer_model *m, const char *dir, lt_err *err) {
    cls_impl *c = calloc(1, sizeof *c);
    if (!c) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    lt_status st = lt_cls_model_load(&c->cls, dir, NULL, 0, 0, 42, NULL, err);
    if (st != LT_OK) {
        free(c);
        return st;
    }
    m->impl = c;
    m->labels = c->cls.labels;
    m->n_labels = c->cls.n_labels;
    return LT_OK;
}

/* The graph for a batch of 2^k, built on first use (the same ops as lt_cls_model_predict's batch-1 graph,
 * so one image scores the same bytes as `lathe predict`). */
static lt_status cls_graph(cls_impl *c, int k, lt_err *err) {
    if (c->graphs[k]) return LT_OK;
    lt_graph *g = lt_graph_create(LT_MODE_EVAL, NULL);
    if (!g) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    int64_t shape[4] = {(int64_t)1 << k, 3, c->cls.input_size, c->cls.input_size};
    lt_tensor *x = lt_graph_input(g, "pixel_values", shape, 4, 0);
    lt_tensor *y = lt_softmax(g, lt_resnet_forward(&c->cls.net, g, x, LT_BN_EVAL, NULL));
    lt_graph_keep(g, y);
    lt_status st = lt_graph_plan(g, err);
    if (st != LT_OK) {
        lt_graph_destroy(g);
        return st;
    }
    c->graphs[k] = g;
    c->in[k] = x;
    c->out[k] = y;
    return LT_OK;
}

static lt_status cls_predict(lt_infer_model *m, const lt_image *const *imgs, int n, lt_infer_prediction *out,
                             lt_err *err) {
    cls_impl *c = m->impl;
    int kmax = 0;
    while (kmax + 1 < CLS_MAX_POW && (2 << kmax) <= m->max_batch)
        kmax++;
    size_t nl = (size_t)c->cls.n_labels, s = (size_t)c->cls.input_size;
    for (int i = 0; i < n; i++) {
        out[i] = (lt_infer_prediction){0};
        out[i].probs = malloc(nl * sizeof *out[i].probs);
        if (!out[i].probs) {
            for (int j = 0; j <= i; j++)
                lt_infer_prediction_free(&out[j]);
            return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        }
    }
    lt_status st = LT_OK;
    for (int done = 0; done < n && st == LT_OK;) {
        int k = kmax;
        while (((int64_t)1 << k) > n - done)
            k--;
        int b = 1 << k;
        st = cls_graph(c, k, err);
        if (st != LT_OK) break;
        float *x = c->in[k]->data; /* (b, 3, s, s) */
        int bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad)
        for (int j = 0; j < b; j++)
            bad += lt_image_to_tensor(imgs[done + j], (int)s, (int)s, c->cls.mean, c->cls.std,
                                      x + (size_t)j * 3 * s * s) != LT_OK;
        if (bad) {
            st = lt_errorf(err, LT_ERR_ARG, "cannot preprocess an empty image");
            break;
        }
        lt_graph_forward(c->graphs[k]);
        const float *y = c->out[k]->data; /* (b, n_labels) */
        for (int j = 0; j < b; j++)
            memcpy(out[done + j].probs, y + (size_t)j * nl, nl * sizeof *y);
        done += b;
    }
    if (st != LT_OK)
        for (int i = 0; i < n; i++)
            lt_infer_prediction_free(&out[i]);
    return st;
}

static char *cls_respond(const lt_infer_model *m, const lt_infer_prediction *p, int n) {
    size_t nl = (size_t)m->n_labels;
    float *probs = malloc((size_t)n * nl * sizeof *probs + 1);
    if (!probs) return NULL;
    for (int i = 0; i < n; i++)
        memcpy(probs + (size_t)i * nl, p[i].probs, nl * sizeof *probs);
    char *s = lt_infer_cls_response(m->labels, m->n_labels, probs, n);
    free(probs);
    return s;
}

/* ---- the algorithm switch: segmentation and detection plug in here ---- */

static const backend cls_backend = {cls_load, cls_predict, cls_respond, cls_free};
static const backend *const backends[LT_INFER_ALGORITHM_COUNT] = {&cls_backend, NULL, NULL};

lt_status lt_infer_model_load(const char *dir, int max_batch, lt_infer_model **out, lt_err *err) {
    *out = NULL;
    if (max_batch < 1) return lt_errorf(err, LT_ERR_ARG, "max_batch must be >= 1, got %d", max_batch);
    lt_infer_algorithm algo;
    lt_status st = lt_infer_model_probe(dir, &algo, err);
    if (st != LT_OK) return st;
    if (!backends[algo])
        return lt_errorf(err, LT_ERR_ARG, "%s: serving %s models is not supported yet", dir,
                         algo_names[algo]);
    lt_infer_model *m = calloc(1, sizeof *m);
    if (!m || !(m->dir = strdup(dir))) {
        free(m);
        return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    }
    m->algo = algo;
    m->be = backends[algo];
    m->max_batch = max_batch;
    st = m->be->load(m, dir, err);
    if (st != LT_OK) {
        free(m->dir);
        free(m);
        return st;
    }
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return LT_OK;
}

void lt_infer_model_destroy(lt_infer_model *m) {
    if (!m) return;
    m->be->free(m->impl);
    pthread_mutex_destroy(&m->mu);
    free(m->dir);
    free(m);
}

lt_infer_algorithm lt_infer_model_algorithm(const lt_infer_model *m) {
    return m->algo;
}

char *const *lt_infer_model_labels(const lt_infer_model *m, int *n_labels) {
    if (n_labels) *n_labels = m->n_labels;
    return m->labels;
}

const char *lt_infer_model_dir(const lt_infer_model *m) {
    return m->dir;
}

lt_status lt_infer_model_predict(lt_infer_model *m, const lt_image *const *imgs, int n,
                                 lt_infer_prediction *out, lt_err *err) {
    if (n < 1) return lt_errorf(err, LT_ERR_ARG, "no image to predict");
    pthread_mutex_lock(&m->mu);
    lt_status st = m->be->predict(m, imgs, n, out, err);
    pthread_mutex_unlock(&m->mu);
    return st;
}

char *lt_infer_model_response(const lt_infer_model *m, const lt_infer_prediction *preds, int n) {
    return m->be->respond(m, preds, n);
}

/* ---- the cache ---- */

typedef struct cache_entry {
    char *dir;             /* owned key */
    lt_infer_model *model; /* NULL while loading */
    int refs;              /* references handed out and not released */
    int loading;           /* 1 while one caller loads it (the others wait on c->cond) */
    int evicted;           /* 1: free the model when refs drops to 0 */
    struct cache_entry *next;
} cache_entry;

struct lt_infer_cache {
    pthread_mutex_t mu;   /* guards the list */
    pthread_cond_t cond;  /* signalled when a load ends */
    cache_entry *entries; /* O(N) lookups: a server holds a handful of models */
    int max_batch;
};

lt_infer_cache *lt_infer_cache_create(int max_batch) {
    lt_infer_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->max_batch = max_batch < 1 ? 1 : max_batch;
    return c;
}

static void entry_free(cache_entry *e) {
    lt_infer_model_destroy(e->model);
    free(e->dir);
    free(e);
}

void lt_infer_cache_destroy(lt_infer_cache *c) {
    if (!c) return;
    for (cache_entry *e = c->entries, *next; e; e = next) {
        next = e->next;
        entry_free(e);
    }
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static void unlink_entry(lt_infer_cache *c, cache_entry *e) {
    for (cache_entry **p = &c->entries; *p; p = &(*p)->next)
        if (*p == e) {
            *p = e->next;
            return;
        }
}

lt_status lt_infer_cache_get(lt_infer_cache *c, const char *dir, lt_infer_model **out, lt_err *err) {
    *out = NULL;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        cache_entry *e = c->entries;
        while (e && (e->evicted || strcmp(e->dir, dir)))
            e = e->next;
        if (e && e->loading) {
            pthread_cond_wait(&c->cond, &c->mu);
            continue; /* look again: the load may have failed and the entry gone */
        }
        if (e) {
            e->refs++;
            *out = e->model;
            pthread_mutex_unlock(&c->mu);
            return LT_OK;
        }
        break;
    }
    cache_entry *e = calloc(1, sizeof *e);
    if (!e || !(e->dir = strdup(dir))) {
        free(e);
        pthread_mutex_unlock(&c->mu);
        return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    }
    e->loading = 1;
    e->next = c->entries;
    c->entries = e;
    pthread_mutex_unlock(&c->mu);

    lt_infer_model *m = NULL;
    lt_status st = lt_infer_model_load(dir, c->max_batch, &m, err); /* slow: outside the lock */

    pthread_mutex_lock(&c->mu);
    e->loading = 0;
    if (st != LT_OK) {
        unlink_entry(c, e);
        entry_free(e);
    } else {
        e->model = m;
        e->refs = 1;
        *out = m;
    }
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    return st;
}

void lt_infer_cache_release(lt_infer_cache *c, lt_infer_model *m) {
    if (!m) return;
    pthread_mutex_lock(&c->mu);
    for (cache_entry *e = c->entries; e; e = e->next) {
        if (e->model != m) continue;
        if (--e->refs == 0 && e->evicted) {
            unlink_entry(c, e);
            entry_free(e);
        }
        break;
    }
    pthread_mutex_unlock(&c->mu);
}

int lt_infer_cache_evict(lt_infer_cache *c, const char *dir) {
    pthread_mutex_lock(&c->mu);
    int found = 0;
    for (cache_entry *e = c->entries; e; e = e->next) {
        if (e->evicted || e->loading || strcmp(e->dir, dir)) continue;
        found = 1;
        e->evicted = 1;
        if (e->refs == 0) {
            unlink_entry(c, e);
            entry_free(e);
        }
        break;
    }
    pthread_mutex_unlock(&c->mu);
    return found;
}

int lt_infer_cache_size(lt_infer_cache *c) {
    pthread_mutex_lock(&c->mu);
    int n = 0;
    for (cache_entry *e = c->entries; e; e = e->next)
        n += !e->evicted && !e->loading;
    pthread_mutex_unlock(&c->mu);
    return n;
}
