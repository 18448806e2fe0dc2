/* cls_model.h - an image-classification model directory in the Hugging Face layout, loaded and saved.
 *
 *   config.json               ResNetConfig fields, id2label/label2id, and a "lathe" section (algorithm,
 *                             input_size, hyperparameters)
 *   preprocessor_config.json  ViTImageProcessor-style: resize to input_size square, rescale 1/255, normalize
 *   model.safetensors         transformers' weight names, F32
 *
 * transformers.ResNetForImageClassification.from_pretrained(dir) loads what lt_cls_model_save writes, and
 * a transformers ResNet directory (e.g. a copy of microsoft/resnet-50) loads here. */
#ifndef LT_CLS_MODEL_H
#define LT_CLS_MODEL_H

#include "core/graph.h"
#include "core/params.h"
#include "io/image.h"
#include "models/resnet.h"
#include "tasks/hparams.h"

typedef struct {
    lt_params params;     /* weights and buffers */
    lt_resnet net;
    char **labels;        /* (n_labels) id -> name, owned */
    int n_labels;
    int input_size;       /* square side the images are resized to */
    float mean[3], std[3];
    lt_graph *infer;      /* batch-1 eval graph for lt_cls_model_predict, built on first use... see below */
    lt_tensor *infer_in, *infer_out;
    lt_rng rng;
} lt_cls_model;

/* ImageNet statistics, the default normalization. */
extern const float lt_imagenet_mean[3], lt_imagenet_std[3];

/* A fresh ResNet-50 for labels (copied), initialized from seed. */
lt_status lt_cls_model_create(lt_cls_model *m, char *const *labels, int n_labels, int input_size, uint64_t seed,
                              lt_err *err);

/* Loads a model directory. When labels is non-NULL the model is prepared for those labels instead of the
 * directory's own (fine-tuning): a classifier of another size is re-initialized, and a warning is written
 * to *warning (malloc'd, caller frees; NULL when there is nothing to say). input_size <= 0 keeps the
 * directory's (lathe's own input_size, else the preprocessor's size, else 224). */
lt_status lt_cls_model_load(lt_cls_model *m, const char *dir, char *const *labels, int n_labels, int input_size,
                            uint64_t seed, char **warning, lt_err *err);

/* Writes config.json, preprocessor_config.json and model.safetensors into dir (created). hp may be NULL. */
lt_status lt_cls_model_save(const lt_cls_model *m, const char *dir, const lt_hparams *hp, lt_err *err);

void lt_cls_model_free(lt_cls_model *m);

/* Scores every label for one image: probs (n_labels) softmax probabilities. Builds a batch-1 inference
 * graph on the first call (so a model used only for training never pays for it). */
lt_status lt_cls_model_predict(lt_cls_model *m, const lt_image *img, float *probs, lt_err *err);

/* The guide's response: [{"score": p, "label": name}, ...] over every label, highest score first. */
cJSON *lt_cls_prediction_json(const lt_cls_model *m, const float *probs);

#endif
