#include "cls_train.h"

#include "io/fsutil.h"
#include "ops/ops.h"
#include "tasks/cls_dataset.h"
#include "tasks/cls_metrics.h"
#include "tasks/cls_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A graph for one batch size: training (logits + loss) or evaluation (logits). */
typedef struct {
    lt_graph *g;
    lt_tensor *pixels; /* (B, 3, S, S) */
    lt_tensor *labels; /* (B) class ids */
    lt_tensor *logits; /* (B, n_labels) */
    lt_tensor *loss;   /* (1), training only */
    int batch;
} cls_graph;

static lt_status cls_graph_build(cls_graph *cg, lt_cls_model *m, int batch, int train, lt_rng *rng, lt_err *err) {
    memset(cg, 0, sizeof *cg);
    cg->batch = batch;
    cg->g = lt_graph_create(train ? LT_MODE_TRAIN : LT_MODE_EVAL, rng);
    if (!cg->g) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    int64_t xs[4] = {batch, 3, m->input_size, m->input_size}, ls[1] = {batch};
    cg->pixels = lt_graph_input(cg->g, "pixel_values", xs, 4, 0);
    cg->labels = lt_graph_input(cg->g, "labels", ls, 1, 0);
    cg->logits = lt_resnet_forward(&m->net, cg->g, cg->pixels, train ? LT_BN_TRAIN : LT_BN_EVAL, NULL);
    cg->loss = lt_cross_entropy(cg->g, cg->logits, cg->labels, NULL, -100);
    lt_graph_keep(cg->g, cg->logits);
    lt_graph_keep(cg->g, cg->loss);
    return lt_graph_plan(cg->g, err);
}

static void cls_graph_free(cls_graph *cg) {
    lt_graph_destroy(cg->g);
    memset(cg, 0, sizeof *cg);
}

/* Runs the model over a whole split, filling metrics. */
static lt_status evaluate_split(lt_cls_model *m, const lt_cls_images *imgs, cls_graph *full, cls_graph *rest,
                                lt_cls_metrics *met, lt_err *err) {
    lt_cls_metrics_reset(met);
    int64_t n = imgs->split->n;
    int64_t idx[4096];
    for (int64_t start = 0; start < n;) {
        cls_graph *cg = n - start >= full->batch ? full : rest;
        int b = cg->batch;
        for (int i = 0; i < b; i++) idx[i] = start + i;
        lt_status st = lt_cls_images_batch(imgs, idx, b, cg->pixels->data, cg->labels->data, err);
        if (st != LT_OK) return st;
        lt_graph_forward(cg->g);
        met->loss_sum += (double)cg->loss->data[0] * b; /* the graph's cross-entropy is the batch mean */
        for (int i = 0; i < b; i++) {
            const float *row = cg->logits->data + (int64_t)i * m->n_labels;
            int best = 0;
            for (int c = 1; c < m->n_labels; c++)
                if (row[c] > row[best]) best = c;
            lt_cls_metrics_add(met, (int)cg->labels->data[i], best);
        }
        start += b;
    }
    return LT_OK;
}

/* Eval graphs for a split size: full batches of `batch` and one for the remainder (if any). */
static lt_status eval_graphs(lt_cls_model *m, int batch, int64_t n, cls_graph *full, cls_graph *rest, lt_err *err) {
    if (batch > 4096) batch = 4096;
    if (n < batch) batch = (int)(n > 0 ? n : 1);
    lt_status st = cls_graph_build(full, m, batch, 0, NULL, err);
    if (st == LT_OK && n % batch) st = cls_graph_build(rest, m, (int)(n % batch), 0, NULL, err);
    return st;
}

static lt_status run_eval(lt_cls_model *m, const lt_cls_images *imgs, int batch, cJSON **out, lt_err *err) {
    cls_graph full = {0}, rest = {0};
    lt_cls_metrics met = {0};
    *out = NULL;
    lt_status st = lt_cls_metrics_init(&met, m->n_labels) ? lt_errorf(err, LT_ERR_NOMEM, "out of memory") : LT_OK;
    if (st == LT_OK) st = eval_graphs(m, batch, imgs->split->n, &full, &rest, err);
    if (st == LT_OK) st = evaluate_split(m, imgs, &full, &rest, &met, err);
    if (st == LT_OK) *out = lt_cls_metrics_to_json(&met, (const char *const *)m->labels);
    cls_graph_free(&full);
    cls_graph_free(&rest);
    lt_cls_metrics_free(&met);
    return st;
}

static int64_t cache_budget(const lt_cls_train_opts *o) {
    return o->cache_bytes > 0 ? o->cache_bytes : ((int64_t)4 << 30);
}

static cJSON *trainer_state(int64_t step, double epoch, int64_t total, const lt_cls_train_opts *o, const cJSON *history) {
    cJSON *s = cJSON_CreateObject();
    cJSON_AddNumberToObject(s, "global_step", (double)step);
    cJSON_AddNumberToObject(s, "epoch", epoch);
    cJSON_AddNumberToObject(s, "max_steps", (double)total);
    cJSON_AddNumberToObject(s, "num_train_epochs", lt_hparams_get(&o->hp, "num_train_epochs"));
    cJSON_AddNumberToObject(s, "logging_steps", lt_hparams_get(&o->hp, "logging_steps"));
    cJSON_AddNumberToObject(s, "train_batch_size", lt_hparams_get(&o->hp, "per_device_train_batch_size"));
    cJSON_AddNumberToObject(s, "seed", (double)o->seed);
    cJSON_AddItemToObject(s, "hyperparameters", lt_hparams_to_json(&o->hp));
    cJSON_AddItemToObject(s, "log_history", history ? cJSON_Duplicate(history, 1) : cJSON_CreateArray());
    return s;
}

/* The order of epoch e's images: a permutation fixed by (seed, e), so a resumed run sees the same order. */
static void epoch_order(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch) {
    lt_rng r;
    lt_rng_seed(&r, seed, (uint64_t)epoch + 1000);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    lt_rng_shuffle(&r, perm, n);
}

lt_status lt_cls_train(const lt_cls_train_opts *o, cJSON **metrics_out, lt_err *err) {
    lt_cls_dataset ds = {0};
    lt_cls_images imgs[LT_SPLIT_COUNT] = {{0}};
    lt_cls_model m = {0};
    cls_graph train_full = {0}, train_rest = {0}, eval_full = {0}, eval_rest = {0};
    lt_cls_metrics met = {0};
    lt_train_log log = {0};
    cJSON *state = NULL, *metrics = NULL, *history = NULL;
    int64_t *perm = NULL;
    char *warning = NULL, *ckpt = NULL;
    lt_rng rng;
    lt_rng_seed(&rng, o->seed, 1);
    if (metrics_out) *metrics_out = NULL;

    const int size = lt_hparams_get_int(&o->hp, "input_size");
    const int B = lt_hparams_get_int(&o->hp, "per_device_train_batch_size");
    const int EB = lt_hparams_get_int(&o->hp, "per_device_eval_batch_size");
    const int epochs = lt_hparams_get_int(&o->hp, "num_train_epochs");
    const double base_lr = lt_hparams_get(&o->hp, "learning_rate");
    lt_status st = o->hp.algorithm == LT_ALGO_IMAGE_CLASSIFICATION
                       ? LT_OK
                       : lt_errorf(err, LT_ERR_ARG, "hyperparameters are not image-classification's");
    if (st == LT_OK && o->resume && !lt_checkpoint_exists(o->output))
        st = lt_errorf(err, LT_ERR_ARG, "--resume: %s has no checkpoint to resume from", o->output);
    /* 1. the data set, checked in full before anything else */
    if (st == LT_OK) st = lt_cls_dataset_scan(o->dataset, &ds, err);
    if (st != LT_OK) goto done;
    if (ds.split[LT_SPLIT_TRAIN].n < B && !o->quiet)
        fprintf(stderr, "note: %lld training images is fewer than one batch of %d\n",
                (long long)ds.split[LT_SPLIT_TRAIN].n, B);
    /* 2. the model: pretrained or fresh */
    if (o->pretrained) {
        st = lt_cls_model_load(&m, o->pretrained, ds.labels, ds.n_labels, size, o->seed, &warning, err);
        if (st == LT_OK && warning && !o->quiet) fprintf(stderr, "warning: %s\n", warning);
    } else {
        st = lt_cls_model_create(&m, ds.labels, ds.n_labels, size, o->seed, err);
    }
    if (st != LT_OK) goto done;
    for (int s = 0; s < LT_SPLIT_COUNT && st == LT_OK; s++) {
        if (!ds.split[s].present) continue;
        st = lt_cls_images_prepare(&imgs[s], &ds.split[s], size, m.mean, m.std, cache_budget(o), err);
        if (st != LT_OK && err) {
            /* prefix the split so the user knows where to look */
            char msg[LT_ERR_MSG_MAX + 64];
            snprintf(msg, sizeof msg, "%s split: %s", lt_split_name((lt_split)s), err->msg);
            memcpy(err->msg, msg, sizeof err->msg - 1);
            err->msg[sizeof err->msg - 1] = '\0';
        }
    }
    if (st != LT_OK) goto done;

    /* 3. optimizer state, possibly resumed */
    lt_adamw opt;
    lt_adamw_init(&opt, base_lr, 0.0);
    const int64_t n_train = ds.split[LT_SPLIT_TRAIN].n;
    const int64_t steps_per_epoch = (n_train + B - 1) / B;
    int64_t total = steps_per_epoch * epochs;
    if (o->max_steps > 0 && o->max_steps < total) total = o->max_steps;
    int64_t step = 0;
    if (o->resume) {
        st = lt_checkpoint_load(o->output, &m.params, &opt, &state, err);
        if (st != LT_OK) goto done;
        step = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(state, "global_step"));
        history = cJSON_DetachItemFromObject(state, "log_history");
        if (!o->quiet) fprintf(stderr, "resuming from step %lld of %lld\n", (long long)step, (long long)total);
    }
    if ((st = lt_mkdir_p(o->output, err)) != LT_OK) goto done;

    /* 4. graphs: planned once, reused by every step */
    int first = (int)(n_train < B ? n_train : B);
    if ((st = cls_graph_build(&train_full, &m, first, 1, &rng, err)) != LT_OK) goto done;
    if (n_train % first && (st = cls_graph_build(&train_rest, &m, (int)(n_train % first), 1, &rng, err)) != LT_OK)
        goto done;
    if ((st = eval_graphs(&m, EB, ds.split[LT_SPLIT_VALIDATION].n, &eval_full, &eval_rest, err)) != LT_OK) goto done;
    if (lt_cls_metrics_init(&met, m.n_labels) || !(perm = malloc((size_t)n_train * sizeof *perm))) {
        st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = lt_train_log_open(&log, o->output, total, lt_hparams_get_int(&o->hp, "logging_steps"), first, step,
                                history, o->hooks, err)) != LT_OK)
        goto done;
    history = NULL;
    log.quiet = o->quiet;

    /* 5. the loop */
    double t0 = lt_now();
    int64_t steps_run = 0;
    while (step < total && st == LT_OK) {
        int64_t epoch = step / steps_per_epoch, in_epoch = step % steps_per_epoch;
        if (in_epoch == 0 || steps_run == 0) epoch_order(perm, n_train, o->seed, epoch);
        int64_t start = in_epoch * first;
        cls_graph *cg = n_train - start >= first ? &train_full : &train_rest;
        if ((st = lt_cls_images_batch(&imgs[LT_SPLIT_TRAIN], perm + start, cg->batch, cg->pixels->data,
                                      cg->labels->data, err)) != LT_OK)
            break;
        lt_params_zero_grad(&m.params);
        lt_graph_forward(cg->g);
        lt_graph_backward(cg->g, cg->loss, NULL);
        double loss = cg->loss->data[0];
        double norm = lt_clip_grad_norm(&m.params, 0.0); /* measure; clipping is fused into AdamW */
        double lr = base_lr * lt_linear_schedule(step, 0, total);
        if (!isfinite(loss) || !isfinite(norm)) {
            st = lt_errorf(err, LT_ERR_ARG,
                           "training diverged at step %lld (loss %g, gradient norm %g): lower learning_rate (now %g)",
                           (long long)step + 1, loss, norm, base_lr);
            break;
        }
        if ((st = lt_adamw_step_scaled(&opt, &m.params, lr, lt_clip_coef(norm, 1.0), err)) != LT_OK) break;
        step++;
        steps_run++;
        double ep = (double)step / (double)steps_per_epoch;
        int epoch_end = step % steps_per_epoch == 0 || step == total;
        if ((st = lt_train_log_step(&log, step, ep, loss, lr, norm, epoch_end, err)) != LT_OK) break;
        int stop = o->hooks.should_stop && o->hooks.should_stop(o->hooks.ctx);
        if (epoch_end) {
            cJSON *vm = NULL;
            if ((st = evaluate_split(&m, &imgs[LT_SPLIT_VALIDATION], &eval_full, &eval_rest, &met, err)) != LT_OK) break;
            lt_cls_summary s = lt_cls_metrics_summary(&met);
            vm = cJSON_CreateObject();
            cJSON_AddNumberToObject(vm, "loss", s.loss);
            cJSON_AddNumberToObject(vm, "accuracy", s.accuracy);
            cJSON_AddNumberToObject(vm, "precision", s.precision);
            cJSON_AddNumberToObject(vm, "recall", s.recall);
            cJSON_AddNumberToObject(vm, "f1", s.f1);
            st = lt_train_log_eval(&log, "validation", step, ep, vm, err);
            cJSON_Delete(vm);
            if (st != LT_OK) break;
        }
        if (epoch_end || stop || (o->checkpoint_steps > 0 && step % o->checkpoint_steps == 0)) {
            cJSON_Delete(state);
            state = trainer_state(step, ep, total, o, log.history);
            free(ckpt);
            ckpt = NULL;
            m.params.batches_tracked = step;
            if ((st = lt_checkpoint_save(o->output, &m.params, &opt, state, &ckpt, err)) != LT_OK) break;
            cJSON *ev = cJSON_CreateObject();
            cJSON_AddNumberToObject(ev, "step", (double)step);
            cJSON_AddStringToObject(ev, "path", ckpt);
            lt_train_emit(&log, "checkpoint", ev);
            cJSON_Delete(ev);
        }
        if (stop) st = lt_errorf(err, LT_ERR_CANCELLED, "stopped at step %lld of %lld", (long long)step, (long long)total);
    }
    if (st != LT_OK) goto done;
    double train_seconds = lt_now() - t0;

    /* 6. final metrics and the model directory */
    metrics = cJSON_CreateObject();
    cJSON *tr = cJSON_AddObjectToObject(metrics, "train");
    cJSON_AddNumberToObject(tr, "steps", (double)step);
    cJSON_AddNumberToObject(tr, "epochs", (double)step / (double)steps_per_epoch);
    cJSON_AddNumberToObject(tr, "runtime_seconds", train_seconds);
    cJSON_AddNumberToObject(tr, "images_per_second", train_seconds > 0 ? (double)(steps_run * first) / train_seconds : 0);
    for (int s = LT_SPLIT_VALIDATION; s < LT_SPLIT_COUNT; s++) {
        if (!ds.split[s].present) continue;
        cJSON *sm = NULL;
        if ((st = run_eval(&m, &imgs[s], EB, &sm, err)) != LT_OK) goto done;
        cJSON_AddItemToObject(metrics, lt_split_name((lt_split)s), sm);
        if (s == LT_SPLIT_TEST) {
            cJSON *flat = cJSON_CreateObject();
            const char *keys[] = {"loss", "accuracy", "precision", "recall", "f1"};
            for (int k = 0; k < 5; k++) cJSON_AddNumberToObject(flat, keys[k], cJSON_GetNumberValue(cJSON_GetObjectItem(sm, keys[k])));
            st = lt_train_log_eval(&log, "test", step, (double)step / (double)steps_per_epoch, flat, err);
            cJSON_Delete(flat);
            if (st != LT_OK) goto done;
        }
    }
    m.params.batches_tracked = step;
    if ((st = lt_cls_model_save(&m, o->output, &o->hp, err)) != LT_OK) goto done;
    char *path = lt_path_join(o->output, "metrics.json");
    st = lt_json_write_file(path, metrics, err);
    free(path);
    if (st != LT_OK) goto done;
    cJSON_Delete(state);
    state = trainer_state(step, (double)step / (double)steps_per_epoch, total, o, log.history);
    path = lt_path_join(o->output, "trainer_state.json");
    st = lt_json_write_file(path, state, err);
    free(path);
    if (st == LT_OK && metrics_out) {
        *metrics_out = metrics;
        metrics = NULL;
    }
done:
    lt_train_log_close(&log);
    cls_graph_free(&train_full);
    cls_graph_free(&train_rest);
    cls_graph_free(&eval_full);
    cls_graph_free(&eval_rest);
    lt_cls_metrics_free(&met);
    for (int s = 0; s < LT_SPLIT_COUNT; s++) lt_cls_images_free(&imgs[s]);
    lt_cls_model_free(&m);
    lt_cls_dataset_free(&ds);
    cJSON_Delete(state);
    cJSON_Delete(metrics);
    cJSON_Delete(history);
    free(perm);
    free(warning);
    free(ckpt);
    return st;
}

lt_status lt_cls_evaluate(const char *model_dir, const char *dataset, const char *split, int batch_size,
                          cJSON **metrics, lt_err *err) {
    lt_cls_dataset ds = {0};
    lt_cls_images imgs = {0};
    lt_cls_model m = {0};
    *metrics = NULL;
    int s = strcmp(split, "test") == 0 ? LT_SPLIT_TEST : strcmp(split, "validation") == 0 ? LT_SPLIT_VALIDATION : -1;
    if (s < 0) return lt_errorf(err, LT_ERR_ARG, "--split must be 'test' or 'validation', got '%s'", split);
    lt_status st = lt_cls_model_load(&m, model_dir, NULL, 0, 0, 42, NULL, err);
    if (st == LT_OK) st = lt_cls_dataset_scan(dataset, &ds, err);
    if (st == LT_OK && !ds.split[s].present)
        st = lt_errorf(err, LT_ERR_ARG, "data set %s has no %s split", dataset, split);
    /* the data set's labels must be the model's, by name */
    for (int i = 0; st == LT_OK && i < ds.n_labels; i++) {
        int found = i < m.n_labels && strcmp(ds.labels[i], m.labels[i]) == 0;
        if (!found)
            st = lt_errorf(err, LT_ERR_ARG, "label '%s' of %s is not the model's label %d ('%s')", ds.labels[i], dataset,
                           i, i < m.n_labels ? m.labels[i] : "none");
    }
    if (st == LT_OK) st = lt_cls_images_prepare(&imgs, &ds.split[s], m.input_size, m.mean, m.std, (int64_t)4 << 30, err);
    if (st == LT_OK) st = run_eval(&m, &imgs, batch_size > 0 ? batch_size : 16, metrics, err);
    lt_cls_images_free(&imgs);
    lt_cls_dataset_free(&ds);
    lt_cls_model_free(&m);
    return st;
}
