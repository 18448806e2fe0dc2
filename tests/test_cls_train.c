/* Image classification end to end through the library: a synthetic data set on disk, training with
 * checkpoints, an interrupted run resumed to the same weights bit for bit, metrics, evaluation, prediction
 * and the data set checks. */
#include "check.h"
#include "fixtures.h"
#include "io/fsutil.h"
#include "tasks/cls_model.h"
#include "tasks/cls_train.h"

#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *labels[3] = {"blue", "green", "red"};

/* A 20x20 image whose dominant channel is the class, with noise, so a few steps can learn it. */
static void write_png(const char *path, int cls, unsigned seed) {
    fixture_class_png(path, 20, cls, seed);
}

static void make_split(const char *root, const char *split, int per_class, unsigned seed) {
    char path[1024];
    for (int c = 0; c < 3; c++) {
        snprintf(path, sizeof path, "%s/%s/%s", root, split, labels[c]);
        lt_mkdir_p(path, NULL);
        for (int i = 0; i < per_class; i++) {
            snprintf(path, sizeof path, "%s/%s/%s/img%02d.%s", root, split, labels[c], i, i % 2 ? "PNG" : "png");
            write_png(path, c, seed + (unsigned)(c * 100 + i));
        }
    }
    snprintf(path, sizeof path, "%s/%s/.DS_Store", root, split);
    FILE *f = fopen(path, "w");
    if (f) fclose(f);
}

static lt_cls_train_opts base_opts(const char *dataset, const char *output) {
    lt_cls_train_opts o = {0};
    o.dataset = dataset;
    o.output = output;
    o.seed = 7;
    o.quiet = 1;
    lt_hparams_defaults(&o.hp, LT_ALGO_IMAGE_CLASSIFICATION);
    lt_hparams_set_str(&o.hp, "input_size", "16", NULL);
    lt_hparams_set_str(&o.hp, "per_device_train_batch_size", "8", NULL);
    lt_hparams_set_str(&o.hp, "per_device_eval_batch_size", "5", NULL);
    lt_hparams_set_str(&o.hp, "num_train_epochs", "2", NULL);
    lt_hparams_set_str(&o.hp, "learning_rate", "0.001", NULL);
    return o;
}

static int stop_at;
static int steps_seen;
static int events_checkpoint;
static void on_event(void *ctx, const char *type, const cJSON *payload) {
    if (!strcmp(type, "progress")) steps_seen = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(payload, "step"));
    if (!strcmp(type, "checkpoint")) events_checkpoint++;
}
static int should_stop(void *ctx) {
    return stop_at > 0 && steps_seen >= stop_at;
}

static int files_equal(const char *a, const char *b) {
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    int eq = lt_read_file(a, &x, &nx, (size_t)1 << 30, NULL) == LT_OK && lt_read_file(b, &y, &ny, (size_t)1 << 30, NULL) == LT_OK &&
             nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return eq;
}

static void test_train_resume_evaluate(const char *root) {
    char data[512], out_a[512], out_b[512], path[1024], path2[1200];
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(out_a, sizeof out_a, "%s/run_a", root);
    snprintf(out_b, sizeof out_b, "%s/run_b", root);
    make_split(data, "train", 7, 1);      /* 21 images: batches of 8, 8 and 5 */
    make_split(data, "validation", 2, 2); /* 6 images: eval batches of 5 and 1 */
    make_split(data, "test", 2, 3);
    lt_err err = {{0}};

    /* uninterrupted */
    lt_cls_train_opts o = base_opts(data, out_a);
    o.hooks = (lt_train_hooks){on_event, should_stop, NULL};
    cJSON *metrics = NULL;
    lt_status st = lt_cls_train(&o, &metrics, &err);
    CHECK_MSG(st == LT_OK, "train: %s", err.msg);
    CHECK(steps_seen == 6);
    CHECK(events_checkpoint == 2); /* one per epoch */
    const char *files[] = {"config.json", "preprocessor_config.json", "model.safetensors", "metrics.json",
                           "trainer_state.json", "checkpoints/latest", "checkpoints/step-6/optimizer.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", out_a, files[i]);
        CHECK_MSG(lt_path_exists(path), "missing %s", path);
    }
    cJSON *test = cJSON_GetObjectItem(metrics, "test");
    CHECK(test && cJSON_IsNumber(cJSON_GetObjectItem(test, "accuracy")));
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(test, "per_class"), "red") != NULL);
    cJSON_Delete(metrics);

    cJSON *cfg = NULL;
    snprintf(path, sizeof path, "%s/config.json", out_a);
    CHECK(lt_json_read_file(path, &cfg, &err) == LT_OK);
    CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(cfg, "id2label"), "2")), "red"));
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(cfg, "label2id"), "blue")) == 0);
    CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItem(cfg, "architectures"), 0)),
                  "ResNetForImageClassification"));
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(cfg, "lathe"), "input_size")) == 16);
    cJSON_Delete(cfg);

    cJSON *state = NULL;
    snprintf(path, sizeof path, "%s/trainer_state.json", out_a);
    CHECK(lt_json_read_file(path, &state, &err) == LT_OK);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(state, "global_step")) == 6);
    int evals = 0, logs = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(state, "log_history")) {
        evals += cJSON_GetObjectItem(e, "eval_accuracy") != NULL;
        logs += cJSON_GetObjectItem(e, "loss") != NULL;
    }
    CHECK(evals == 2 && logs == 2); /* logging_steps 500: an entry at each epoch end */
    cJSON_Delete(state);

    /* interrupted after step 4 (mid-epoch: checkpoint on stop), then resumed */
    steps_seen = 0;
    stop_at = 4;
    o = base_opts(data, out_b);
    o.hooks = (lt_train_hooks){on_event, should_stop, NULL};
    st = lt_cls_train(&o, NULL, &err);
    CHECK_MSG(st == LT_ERR_CANCELLED, "stop: %d %s", st, err.msg);
    snprintf(path, sizeof path, "%s/checkpoints/step-4/model.safetensors", out_b);
    CHECK_MSG(lt_path_exists(path), "no checkpoint at the stop");
    stop_at = 0;
    o.resume = 1;
    st = lt_cls_train(&o, NULL, &err);
    CHECK_MSG(st == LT_OK, "resume: %s", err.msg);
    snprintf(path, sizeof path, "%s/model.safetensors", out_a);
    snprintf(path2, sizeof path2, "%s/model.safetensors", out_b);
    CHECK_MSG(files_equal(path, path2), "resumed weights differ from the uninterrupted run's");
    snprintf(path, sizeof path, "%s/checkpoints/step-6/optimizer.safetensors", out_a);
    snprintf(path2, sizeof path2, "%s/checkpoints/step-6/optimizer.safetensors", out_b);
    CHECK_MSG(files_equal(path, path2), "resumed optimizer state differs");

    /* evaluate and predict from the saved directory */
    cJSON *m = NULL;
    st = lt_cls_evaluate(out_a, data, "test", 4, &m, &err);
    CHECK_MSG(st == LT_OK, "evaluate: %s", err.msg);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(m, "samples")) == 6);
    cJSON_Delete(m);
    CHECK(lt_cls_evaluate(out_a, data, "train", 4, &m, &err) == LT_ERR_ARG);

    lt_cls_model model;
    CHECK(lt_cls_model_load(&model, out_a, NULL, 0, 0, 1, NULL, &err) == LT_OK);
    lt_image img = {0};
    snprintf(path, sizeof path, "%s/test/red/img00.png", data);
    CHECK(lt_image_load(path, NULL, &img, &err) == LT_OK);
    float probs[3];
    CHECK(lt_cls_model_predict(&model, &img, probs, &err) == LT_OK);
    cJSON *pred = lt_cls_prediction_json(&model, probs);
    CHECK(cJSON_GetArraySize(pred) == 3);
    double sum = 0, prev = 2;
    cJSON_ArrayForEach(e, pred) {
        double s = cJSON_GetNumberValue(cJSON_GetObjectItem(e, "score"));
        CHECK(s <= prev);
        prev = s;
        sum += s;
    }
    CHECK_NEAR(sum, 1.0, 1e-5, 0);
    cJSON_Delete(pred);
    lt_image_free(&img);
    lt_cls_model_free(&model);

    /* fine-tuning from the saved directory with another label set: the classifier is re-initialized with a
     * warning, every other weight is the pretrained one */
    char *two[2] = {"cat", "dog"};
    lt_cls_model tuned;
    char *warning = NULL;
    CHECK(lt_cls_model_load(&tuned, out_a, two, 2, 0, 1, &warning, &err) == LT_OK);
    CHECK_MSG(warning && strstr(warning, "re-initialized"), "warning: %s", warning ? warning : "(none)");
    free(warning);
    CHECK(lt_cls_model_load(&model, out_a, NULL, 0, 0, 1, NULL, &err) == LT_OK);
    CHECK(tuned.net.classifier_weight->shape[0] == 2 && tuned.input_size == 16);
    lt_tensor *a_stem = lt_params_find(&model.params, "resnet.embedder.embedder.convolution.weight");
    lt_tensor *b_stem = lt_params_find(&tuned.params, "resnet.embedder.embedder.convolution.weight");
    CHECK(memcmp(a_stem->data, b_stem->data, (size_t)a_stem->numel * sizeof(float)) == 0);
    lt_tensor *a_var = lt_params_find(&model.params, "resnet.encoder.stages.3.layers.2.layer.2.normalization.running_var");
    lt_tensor *b_var = lt_params_find(&tuned.params, "resnet.encoder.stages.3.layers.2.layer.2.normalization.running_var");
    CHECK(memcmp(a_var->data, b_var->data, (size_t)a_var->numel * sizeof(float)) == 0);
    lt_cls_model_free(&tuned);
    lt_cls_model_free(&model);

    /* --pretrained through the trainer on a two-label data set */
    char data2[512], out_c[512];
    snprintf(data2, sizeof data2, "%s/data2", root);
    snprintf(out_c, sizeof out_c, "%s/run_c", root);
    for (int split = 0; split < 2; split++)
        for (int c = 0; c < 2; c++) {
            snprintf(path, sizeof path, "%s/%s/%s", data2, split ? "validation" : "train", c ? "dog" : "cat");
            lt_mkdir_p(path, NULL);
            for (int i = 0; i < 3; i++) {
                snprintf(path2, sizeof path2, "%s/%d.png", path, i);
                write_png(path2, c, (unsigned)(split * 50 + c * 10 + i));
            }
        }
    o = base_opts(data2, out_c);
    o.pretrained = out_a;
    o.max_steps = 1;
    st = lt_cls_train(&o, NULL, &err);
    CHECK_MSG(st == LT_OK, "fine-tune: %s", err.msg);
    CHECK(lt_cls_model_load(&model, out_c, NULL, 0, 0, 1, NULL, &err) == LT_OK);
    CHECK(model.n_labels == 2 && !strcmp(model.labels[1], "dog"));
    lt_cls_model_free(&model);

    /* --resume with nothing to resume is refused */
    o = base_opts(data, root);
    o.resume = 1;
    CHECK(lt_cls_train(&o, NULL, &err) == LT_ERR_ARG && strstr(err.msg, "no checkpoint"));
}

static void expect_dataset_error(const char *data, const char *output, lt_status want, const char *needle) {
    lt_cls_train_opts o = base_opts(data, output);
    lt_err err = {{0}};
    lt_status st = lt_cls_train(&o, NULL, &err);
    CHECK_MSG(st == want && strstr(err.msg, needle), "want status %d with '%s', got %d: %s", want, needle, st, err.msg);
    CHECK_MSG(!lt_path_exists(output), "%s was created although the data set is bad", output);
}

static void test_bad_datasets(const char *root) {
    char data[512], out[512], path[1024];
    snprintf(out, sizeof out, "%s/never", root);
    snprintf(data, sizeof data, "%s/bad1", root);
    make_split(data, "train", 2, 1);
    expect_dataset_error(data, out, LT_ERR_ARG, "no 'validation' folder");

    make_split(data, "validation", 1, 1);
    snprintf(path, sizeof path, "%s/train/red/broken.png", data);
    FILE *f = fopen(path, "w");
    fputs("not an image at all", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/train/green/empty.jpg", data);
    fclose(fopen(path, "w"));
    expect_dataset_error(data, out, LT_ERR_FORMAT, "broken.png");
    expect_dataset_error(data, out, LT_ERR_FORMAT, "empty.jpg");
    expect_dataset_error(data, out, LT_ERR_FORMAT, "2 of 8 images");

    snprintf(data, sizeof data, "%s/bad2", root);
    make_split(data, "train", 2, 1);
    make_split(data, "validation", 1, 1);
    snprintf(path, sizeof path, "%s/validation/purple", data);
    lt_mkdir_p(path, NULL);
    write_png(strcat(path, "/a.png"), 0, 1);
    expect_dataset_error(data, out, LT_ERR_ARG, "label 'purple'");

    snprintf(data, sizeof data, "%s/bad3", root);
    make_split(data, "train", 2, 1);
    make_split(data, "validation", 1, 1);
    snprintf(path, sizeof path, "%s/train/yellow", data);
    lt_mkdir_p(path, NULL);
    expect_dataset_error(data, out, LT_ERR_ARG, "train/yellow holds no images");

    expect_dataset_error("/nonexistent/lathe-data", out, LT_ERR_ARG, "does not exist");
}

int main(void) {
    char root[] = "/tmp/lathe-test-cls-XXXXXX";
    if (!mkdtemp(root)) return 1;
    test_train_resume_evaluate(root);
    test_bad_datasets(root);
    lt_remove_tree(root, NULL);
    return check_summary("test_cls_train");
}
