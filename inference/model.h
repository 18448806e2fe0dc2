/* model.h - a model directory loaded once for serving, predicting batches of images, and a cache of them.
 *
 * The algorithm comes from config.json: "lathe": {"algorithm": ...} when lathe wrote it, else transformers'
 * "model_type" ("resnet" -> image-classification, "segformer" -> semantic-segmentation, "detr" ->
 * object-detection). Each algorithm is a backend (load, predict, respond, free) in a table in model.c;
 * image classification is the one built so far, the others plug in there.
 *
 * Thread-safe: a model's graphs are not reentrant, so lt_infer_model_predict holds a mutex per model; call
 * it from any thread (the batcher calls it from its one inference thread). */
#ifndef LT_INFER_MODEL_H
#define LT_INFER_MODEL_H

#include "inference/response.h"
#include "io/image.h"

typedef enum {
    LT_INFER_CLASSIFICATION = 0, /* "image-classification" */
    LT_INFER_SEGMENTATION,       /* "semantic-segmentation" */
    LT_INFER_DETECTION,          /* "object-detection" */
    LT_INFER_ALGORITHM_COUNT
} lt_infer_algorithm;

/* The guide's name of an algorithm ("image-classification", ...). Can't fail. */
const char *lt_infer_algorithm_str(lt_infer_algorithm a);

/* The algorithm of the model directory dir, from its config.json. LT_ERR_IO (no config.json), LT_ERR_FORMAT
 * (not JSON) or LT_ERR_ARG (no known algorithm or model_type) otherwise. */
lt_status lt_infer_model_probe(const char *dir, lt_infer_algorithm *algo, lt_err *err);

/* One image's prediction, whatever the algorithm; owned buffers, free with lt_infer_prediction_free. */
typedef struct {
    float *probs;       /* classification: (n_labels) softmax scores */
    int32_t *label_map; /* segmentation: (map_h, map_w) label ids */
    int map_h, map_w;
    lt_infer_box *boxes; /* detection: (n_boxes) */
    int n_boxes;
} lt_infer_prediction;

void lt_infer_prediction_free(lt_infer_prediction *p);

typedef struct lt_infer_model lt_infer_model;

/* Loads the model directory dir. max_batch (>= 1) bounds the images one forward pass holds: a larger
 * predict call runs in several passes. Graphs are built on first use, one per power of two up to
 * max_batch, so a batch of 5 runs as 4 + 1 without padding. Returns LT_OK with *out set, or what loading
 * failed with (*out NULL). */
lt_status lt_infer_model_load(const char *dir, int max_batch, lt_infer_model **out, lt_err *err);

/* Frees the model. NULL is a no-op. */
void lt_infer_model_destroy(lt_infer_model *m);

lt_infer_algorithm lt_infer_model_algorithm(const lt_infer_model *m);
/* The label names (n_labels of them); owned by the model. */
char *const *lt_infer_model_labels(const lt_infer_model *m, int *n_labels);
/* The directory it was loaded from. */
const char *lt_infer_model_dir(const lt_infer_model *m);

/* Predicts n images (any n >= 1) into out[0..n-1] (overwritten; free each with lt_infer_prediction_free).
 * Returns LT_OK, or LT_ERR_NOMEM/LT_ERR_ARG with out untouched. Serialized per model. */
lt_status lt_infer_model_predict(lt_infer_model *m, const lt_image *const *imgs, int n,
                                 lt_infer_prediction *out, lt_err *err);

/* The response body for n predictions of one request (response.h's shapes). NULL when out of memory. */
char *lt_infer_model_response(const lt_infer_model *m, const lt_infer_prediction *preds, int n);

/* ---- a cache of loaded models, keyed by directory: for servers that serve several ---- */

typedef struct lt_infer_cache lt_infer_cache;

/* NULL when out of memory. max_batch is passed to every model it loads. */
lt_infer_cache *lt_infer_cache_create(int max_batch);
/* Frees every model. Call once no model from it is in use. NULL is a no-op. */
void lt_infer_cache_destroy(lt_infer_cache *c);

/* The model of dir, loaded on the first call only (callers asking for the same dir meanwhile wait for that
 * one load), with a reference taken: give it back with lt_infer_cache_release. A failed load is not
 * cached: the next call tries again. */
lt_status lt_infer_cache_get(lt_infer_cache *c, const char *dir, lt_infer_model **out, lt_err *err);
void lt_infer_cache_release(lt_infer_cache *c, lt_infer_model *m);
/* Forgets dir: its model is freed now, or when its last reference is released. 0 when dir is not cached. */
int lt_infer_cache_evict(lt_infer_cache *c, const char *dir);
/* How many models are cached. */
int lt_infer_cache_size(lt_infer_cache *c);

#endif
