#define _GNU_SOURCE
#include "cls_model.h"

#include "io/fsutil.h"
#include "io/params_io.h"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const float lt_imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
const float lt_imagenet_std[3] = {0.229f, 0.224f, 0.225f};

static lt_status set_labels(lt_cls_model *m, char *const *labels, int n, lt_err *err) {
    m->labels = calloc((size_t)n, sizeof *m->labels);
    if (!m->labels) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    m->n_labels = n;
    for (int i = 0; i < n; i++)
        if (!(m->labels[i] = strdup(labels[i]))) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    return LT_OK;
}

static lt_status build(lt_cls_model *m, const lt_resnet_config *cfg, uint64_t seed, lt_err *err) {
    lt_params_init(&m->params);
    lt_status st = lt_resnet_declare(&m->net, cfg, &m->params, err);
    if (st == LT_OK) st = lt_params_alloc(&m->params, err);
    if (st != LT_OK) return st;
    lt_rng_seed(&m->rng, seed, 0);
    lt_resnet_init(&m->net, &m->rng);
    return LT_OK;
}

lt_status lt_cls_model_create(lt_cls_model *m, char *const *labels, int n_labels, int input_size, uint64_t seed,
                              lt_err *err) {
    memset(m, 0, sizeof *m);
    m->input_size = input_size;
    memcpy(m->mean, lt_imagenet_mean, sizeof m->mean);
    memcpy(m->std, lt_imagenet_std, sizeof m->std);
    lt_resnet_config cfg = lt_resnet50_config(n_labels);
    lt_status st = set_labels(m, labels, n_labels, err);
    if (st == LT_OK) st = build(m, &cfg, seed, err);
    if (st != LT_OK) lt_cls_model_free(m);
    return st;
}

/* ---- config.json ---- */

static int json_int_array(const cJSON *a, int *out, int max) {
    if (!cJSON_IsArray(a)) return -1;
    int n = cJSON_GetArraySize(a);
    if (n > max) return -1;
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsNumber(v)) return -1;
        out[i] = v->valueint;
    }
    return n;
}

static lt_status parse_config(const cJSON *c, const char *path, lt_resnet_config *cfg, char ***labels, int *n_labels,
                              lt_err *err) {
    memset(cfg, 0, sizeof *cfg);
    const cJSON *mt = cJSON_GetObjectItem(c, "model_type");
    if (mt && (!cJSON_IsString(mt) || strcmp(mt->valuestring, "resnet") != 0))
        return lt_errorf(err, LT_ERR_FORMAT, "%s: model_type must be \"resnet\" for image classification", path);
    *cfg = lt_resnet50_config(0);
    const cJSON *v;
    if ((v = cJSON_GetObjectItem(c, "num_channels")) && cJSON_IsNumber(v)) cfg->num_channels = v->valueint;
    if ((v = cJSON_GetObjectItem(c, "embedding_size")) && cJSON_IsNumber(v)) cfg->embedding_size = v->valueint;
    if ((v = cJSON_GetObjectItem(c, "hidden_sizes"))) {
        int n = json_int_array(v, cfg->hidden_sizes, LT_RESNET_MAX_STAGES);
        if (n < 1) return lt_errorf(err, LT_ERR_FORMAT, "%s: hidden_sizes must be a list of 1 to 4 integers", path);
        cfg->n_stages = n;
    }
    if ((v = cJSON_GetObjectItem(c, "depths"))) {
        int n = json_int_array(v, cfg->depths, LT_RESNET_MAX_STAGES);
        if (n != cfg->n_stages) return lt_errorf(err, LT_ERR_FORMAT, "%s: depths must have as many entries as hidden_sizes", path);
    }
    if ((v = cJSON_GetObjectItem(c, "layer_type"))) {
        if (cJSON_IsString(v) && !strcmp(v->valuestring, "basic")) cfg->layer_type = LT_RESNET_BASIC;
        else if (!cJSON_IsString(v) || strcmp(v->valuestring, "bottleneck"))
            return lt_errorf(err, LT_ERR_FORMAT, "%s: layer_type must be \"bottleneck\" or \"basic\"", path);
    }
    if ((v = cJSON_GetObjectItem(c, "hidden_act")) && (!cJSON_IsString(v) || strcmp(v->valuestring, "relu")))
        return lt_errorf(err, LT_ERR_FORMAT, "%s: only hidden_act \"relu\" is supported", path);
    cfg->downsample_in_first_stage = cJSON_IsTrue(cJSON_GetObjectItem(c, "downsample_in_first_stage"));
    cfg->downsample_in_bottleneck = cJSON_IsTrue(cJSON_GetObjectItem(c, "downsample_in_bottleneck"));
    /* id2label: {"0": "cat", ...}; dense ids 0..n-1 required */
    const cJSON *id2 = cJSON_GetObjectItem(c, "id2label");
    int n = id2 ? cJSON_GetArraySize(id2) : 0;
    if (id2 && !cJSON_IsObject(id2)) return lt_errorf(err, LT_ERR_FORMAT, "%s: id2label must be an object", path);
    if (n < 1) return lt_errorf(err, LT_ERR_FORMAT, "%s: id2label is missing or empty", path);
    char **names = calloc((size_t)n, sizeof *names);
    if (!names) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    const cJSON *e;
    lt_status st = LT_OK;
    cJSON_ArrayForEach(e, id2) {
        char *end;
        long id = strtol(e->string, &end, 10);
        if (*end || id < 0 || id >= n || !cJSON_IsString(e) || names[id]) {
            st = lt_errorf(err, LT_ERR_FORMAT, "%s: id2label must map the ids 0..%d to names once each (bad key '%s')",
                           path, n - 1, e->string);
            break;
        }
        if (!(names[id] = strdup(e->valuestring))) st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    }
    if (st != LT_OK) {
        for (int i = 0; i < n; i++) free(names[i]);
        free(names);
        return st;
    }
    *labels = names;
    *n_labels = n;
    cfg->num_labels = n;
    return lt_resnet_config_check(cfg, err);
}

static void read_preprocessor(lt_cls_model *m, const char *dir) {
    char *path = lt_path_join(dir, "preprocessor_config.json");
    cJSON *p = NULL;
    lt_err e;
    if (path && lt_json_read_file(path, &p, &e) == LT_OK) {
        const cJSON *mean = cJSON_GetObjectItem(p, "image_mean"), *std = cJSON_GetObjectItem(p, "image_std");
        if (cJSON_GetArraySize(mean) == 3 && cJSON_GetArraySize(std) == 3)
            for (int i = 0; i < 3; i++) {
                double s = cJSON_GetNumberValue(cJSON_GetArrayItem(std, i));
                if (s > 0 && isfinite(s)) {
                    m->mean[i] = (float)cJSON_GetNumberValue(cJSON_GetArrayItem(mean, i));
                    m->std[i] = (float)s;
                }
            }
        const cJSON *size = cJSON_GetObjectItem(p, "size");
        const cJSON *h = cJSON_GetObjectItem(size, "height"), *se = cJSON_GetObjectItem(size, "shortest_edge");
        if (m->input_size <= 0 && cJSON_IsNumber(h) && h->valueint > 0) m->input_size = h->valueint;
        if (m->input_size <= 0 && cJSON_IsNumber(se) && se->valueint > 0) m->input_size = se->valueint;
        if (m->input_size <= 0 && cJSON_IsNumber(size) && size->valueint > 0) m->input_size = size->valueint;
    }
    cJSON_Delete(p);
    free(path);
}

lt_status lt_cls_model_load(lt_cls_model *m, const char *dir, char *const *labels, int n_labels, int input_size,
                            uint64_t seed, char **warning, lt_err *err) {
    memset(m, 0, sizeof *m);
    if (warning) *warning = NULL;
    memcpy(m->mean, lt_imagenet_mean, sizeof m->mean);
    memcpy(m->std, lt_imagenet_std, sizeof m->std);
    char *cpath = lt_path_join(dir, "config.json"), *wpath = lt_path_join(dir, "model.safetensors");
    cJSON *config = NULL;
    char **dir_labels = NULL;
    int n_dir = 0;
    lt_resnet_config cfg;
    lt_load_report rep = {0};
    lt_status st = cpath && wpath ? lt_json_read_file(cpath, &config, err) : lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    if (st == LT_OK) st = parse_config(config, cpath, &cfg, &dir_labels, &n_dir, err);
    if (st != LT_OK) goto done;
    const cJSON *lathe = cJSON_GetObjectItem(config, "lathe");
    const cJSON *isz = cJSON_GetObjectItem(lathe, "input_size");
    m->input_size = input_size > 0 ? input_size : (cJSON_IsNumber(isz) ? isz->valueint : 0);
    read_preprocessor(m, dir);
    if (m->input_size <= 0) m->input_size = 224;
    if (labels) {
        cfg.num_labels = n_labels;
        st = set_labels(m, labels, n_labels, err);
    } else {
        st = set_labels(m, dir_labels, n_dir, err);
    }
    if (st == LT_OK) st = build(m, &cfg, seed, err);
    if (st != LT_OK) goto done;
    const char *skip[] = {"classifier."};
    lt_load_opts opts = {skip, labels ? 1 : 0};
    st = lt_params_load_safetensors_opts(&m->params, wpath, &opts, &rep, err);
    if (st != LT_OK) goto done;
    int relabeled = labels && n_labels == n_dir;
    for (int i = 0; relabeled && i < n_dir; i++) relabeled = strcmp(labels[i], dir_labels[i]) != 0;
    if (warning && (rep.n_mismatched || rep.n_missing || relabeled)) {
        char *w = NULL;
        if (rep.n_mismatched)
            w = strdup("the pretrained classifier has another label count: it was re-initialized for this data set");
        else if (relabeled)
            w = strdup("the data set's labels differ from the pretrained model's: the classifier keeps its weights "
                       "but the labels are the data set's");
        else if (rep.n_missing && asprintf(&w, "%d weights missing from %s were initialized fresh (first: %s)",
                                            rep.n_missing, wpath, rep.missing[0]) < 0)
            w = NULL;
        *warning = w;
    }
done:
    if (dir_labels) {
        for (int i = 0; i < n_dir; i++) free(dir_labels[i]);
        free(dir_labels);
    }
    lt_load_report_free(&rep);
    cJSON_Delete(config);
    free(cpath);
    free(wpath);
    if (st != LT_OK) lt_cls_model_free(m);
    return st;
}

static cJSON *int_array(const int *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static cJSON *float3(const float *v) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < 3; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[i]));
    return a;
}

lt_status lt_cls_model_save(const lt_cls_model *m, const char *dir, const lt_hparams *hp, lt_err *err) {
    lt_status st = lt_mkdir_p(dir, err);
    if (st != LT_OK) return st;
    const lt_resnet_config *c = &m->net.cfg;
    cJSON *cfg = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(cfg, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("ResNetForImageClassification"));
    cJSON_AddStringToObject(cfg, "model_type", "resnet");
    cJSON_AddNumberToObject(cfg, "num_channels", c->num_channels);
    cJSON_AddNumberToObject(cfg, "embedding_size", c->embedding_size);
    cJSON_AddItemToObject(cfg, "hidden_sizes", int_array(c->hidden_sizes, c->n_stages));
    cJSON_AddItemToObject(cfg, "depths", int_array(c->depths, c->n_stages));
    cJSON_AddStringToObject(cfg, "layer_type", c->layer_type == LT_RESNET_BASIC ? "basic" : "bottleneck");
    cJSON_AddStringToObject(cfg, "hidden_act", "relu");
    cJSON_AddBoolToObject(cfg, "downsample_in_first_stage", c->downsample_in_first_stage);
    cJSON_AddBoolToObject(cfg, "downsample_in_bottleneck", c->downsample_in_bottleneck);
    cJSON *id2 = cJSON_AddObjectToObject(cfg, "id2label"), *l2i = cJSON_AddObjectToObject(cfg, "label2id");
    for (int i = 0; i < m->n_labels; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", i);
        cJSON_AddStringToObject(id2, id, m->labels[i]);
        cJSON_AddNumberToObject(l2i, m->labels[i], i);
    }
    cJSON_AddStringToObject(cfg, "problem_type", "single_label_classification");
    cJSON_AddStringToObject(cfg, "torch_dtype", "float32");
    cJSON *lathe = cJSON_AddObjectToObject(cfg, "lathe");
    cJSON_AddStringToObject(lathe, "algorithm", "image-classification");
    cJSON_AddNumberToObject(lathe, "input_size", m->input_size);
    if (hp) cJSON_AddItemToObject(lathe, "hyperparameters", lt_hparams_to_json(hp));

    cJSON *pre = cJSON_CreateObject();
    cJSON_AddStringToObject(pre, "image_processor_type", "ViTImageProcessor");
    cJSON_AddBoolToObject(pre, "do_resize", 1);
    cJSON *size = cJSON_AddObjectToObject(pre, "size");
    cJSON_AddNumberToObject(size, "height", m->input_size);
    cJSON_AddNumberToObject(size, "width", m->input_size);
    cJSON_AddNumberToObject(pre, "resample", 2); /* PIL bilinear */
    cJSON_AddBoolToObject(pre, "do_rescale", 1);
    cJSON_AddNumberToObject(pre, "rescale_factor", 1.0 / 255.0);
    cJSON_AddBoolToObject(pre, "do_normalize", 1);
    cJSON_AddItemToObject(pre, "image_mean", float3(m->mean));
    cJSON_AddItemToObject(pre, "image_std", float3(m->std));

    char *cpath = lt_path_join(dir, "config.json"), *ppath = lt_path_join(dir, "preprocessor_config.json");
    char *wpath = lt_path_join(dir, "model.safetensors");
    if (!cpath || !ppath || !wpath || !cfg || !pre) st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    if (st == LT_OK) st = lt_params_save_safetensors(&m->params, wpath, 1, err);
    if (st == LT_OK) st = lt_json_write_file(cpath, cfg, err);
    if (st == LT_OK) st = lt_json_write_file(ppath, pre, err);
    cJSON_Delete(cfg);
    cJSON_Delete(pre);
    free(cpath);
    free(ppath);
    free(wpath);
    return st;
}

void lt_cls_model_free(lt_cls_model *m) {
    if (!m) return;
    for (int i = 0; m->labels && i < m->n_labels; i++) free(m->labels[i]);
    free(m->labels);
    lt_graph_destroy(m->infer);
    lt_params_free(&m->params);
    memset(m, 0, sizeof *m);
}

lt_status lt_cls_model_predict(lt_cls_model *m, const lt_image *img, float *probs, lt_err *err) {
    if (!m->infer) {
        lt_graph *g = lt_graph_create(LT_MODE_EVAL, NULL);
        if (!g) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        int64_t shape[4] = {1, 3, m->input_size, m->input_size};
        lt_tensor *x = lt_graph_input(g, "pixel_values", shape, 4, 0);
        lt_tensor *y = lt_softmax(g, lt_resnet_forward(&m->net, g, x, LT_BN_EVAL, NULL));
        lt_graph_keep(g, y);
        lt_status st = lt_graph_plan(g, err);
        if (st != LT_OK) {
            lt_graph_destroy(g);
            return st;
        }
        m->infer = g;
        m->infer_in = x;
        m->infer_out = y;
    }
    lt_status st = lt_image_to_tensor(img, m->input_size, m->input_size, m->mean, m->std, m->infer_in->data);
    if (st != LT_OK) return lt_errorf(err, st, "cannot preprocess an empty image");
    lt_graph_forward(m->infer);
    memcpy(probs, m->infer_out->data, (size_t)m->n_labels * sizeof *probs);
    return LT_OK;
}

cJSON *lt_cls_prediction_json(const lt_cls_model *m, const float *probs) {
    int n = m->n_labels;
    int *order = malloc((size_t)n * sizeof *order);
    if (!order) return NULL;
    for (int i = 0; i < n; i++) order[i] = i;
    /* insertion sort by descending score, ties by label id: n is small */
    for (int i = 1; i < n; i++) {
        int k = order[i], j = i - 1;
        while (j >= 0 && probs[order[j]] < probs[k]) {
            order[j + 1] = order[j];
            j--;
        }
        order[j + 1] = k;
    }
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "score", (double)probs[order[i]]);
        cJSON_AddStringToObject(o, "label", m->labels[order[i]]);
        cJSON_AddItemToArray(a, o);
    }
    free(order);
    return a;
}
