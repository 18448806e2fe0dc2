/* cls_train.h - image classification: train a ResNet-50 on a data set folder, evaluate, predict. */
#ifndef LT_CLS_TRAIN_H
#define LT_CLS_TRAIN_H

#include "tasks/hparams.h"
#include "tasks/train_common.h"

#include <cjson/cJSON.h>
#include <stdint.h>

typedef struct {
    const char *dataset;      /* data set folder (the guide's layout) */
    const char *output;       /* output folder: model directory, tensorboard/, checkpoints/ */
    const char *pretrained;   /* optional transformers ResNet directory to start from */
    int resume;               /* continue from output's latest checkpoint */
    lt_hparams hp;            /* image-classification hyperparameters */
    uint64_t seed;            /* weight init and data order (42, as the Trainer) */
    int64_t checkpoint_steps; /* also checkpoint every N steps (0: at epoch ends only) */
    int64_t max_steps;        /* stop after this many steps in all (0: no limit; for tests and benchmarks) */
    int64_t cache_bytes;      /* decoded-image cache budget (0: 4 GiB) */
    int quiet;                /* no console output */
    lt_train_hooks hooks;
} lt_cls_train_opts;

/* Trains and writes the output folder. A bad data set or option fails before the first step, naming
 * every bad file or the field. LT_ERR_CANCELLED when hooks.should_stop asked (a checkpoint is written
 * first). *metrics_out (may be NULL) receives metrics.json's content. */
lt_status lt_cls_train(const lt_cls_train_opts *o, cJSON **metrics_out, lt_err *err);

/* Evaluates a model directory on a split ("validation" or "test") of a data set: accuracy, precision,
 * recall, f1, loss, per_class, confusion_matrix. */
lt_status lt_cls_evaluate(const char *model_dir, const char *dataset, const char *split, int batch_size,
                          cJSON **metrics, lt_err *err);

#endif
