#include "hparams.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The guide's tables. Where the guide allows a value no run can use (a segmentation batch size of 0) the
 * lower bound is raised to the smallest usable one; the README records each such choice. */
static const lt_hp_spec classification_hp[] = {
    {"input_size", LT_HP_INT, 28, 4, INFINITY, "resolution the images are resized to (square)"},
    {"learning_rate", LT_HP_FLOAT, 0.1, 0, INFINITY, "initial learning rate of AdamW"},
    {"per_device_train_batch_size", LT_HP_INT, 16, 2, INFINITY, "training batch size"},
    {"per_device_eval_batch_size", LT_HP_INT, 16, 1, INFINITY, "evaluation batch size"},
    {"num_train_epochs", LT_HP_INT, 3, 1, INFINITY, "number of passes over the training set"},
    {"logging_steps", LT_HP_INT, 500, 500, INFINITY, "steps between log lines"},
};

static const lt_hp_spec segmentation_hp[] = {
    {"learning_rate", LT_HP_FLOAT, 2e-4, 0, INFINITY, "initial learning rate of AdamW"},
    {"per_device_train_batch_size", LT_HP_INT, 4, 1, INFINITY, "training batch size"},
    {"num_train_epochs", LT_HP_FLOAT, 3.0, 0, INFINITY, "number of passes over the training set"},
    {"logging_steps", LT_HP_INT, 500, 500, INFINITY, "steps between log lines"},
};

static const lt_hp_spec detection_hp[] = {
    {"learning_rate", LT_HP_FLOAT, 2e-4, 0, INFINITY, "initial learning rate of AdamW"},
    {"per_device_train_batch_size", LT_HP_INT, 4, 1, INFINITY, "training batch size"},
    {"per_device_eval_batch_size", LT_HP_INT, 4, 1, INFINITY, "evaluation batch size"},
    {"num_train_epochs", LT_HP_FLOAT, 3.0, 0, INFINITY, "number of passes over the training set"},
    {"threshold", LT_HP_FLOAT, 0.5, 0, 1, "score threshold of reported detections"},
    {"logging_steps", LT_HP_INT, 500, 500, INFINITY, "steps between log lines"},
};

static const char *algo_names[LT_ALGO_COUNT] = {"image-classification", "semantic-segmentation", "object-detection"};

const char *lt_algorithm_name(lt_algorithm a) {
    return a >= 0 && a < LT_ALGO_COUNT ? algo_names[a] : "unknown";
}

lt_status lt_algorithm_parse(const char *name, lt_algorithm *out, lt_err *err) {
    for (int a = 0; name && a < LT_ALGO_COUNT; a++) {
        const char *p = algo_names[a], *q = name;
        while (*p && (*q == *p || (*q == '_' && *p == '-'))) p++, q++;
        if (!*p && !*q) {
            *out = (lt_algorithm)a;
            return LT_OK;
        }
    }
    return lt_errorf(err, LT_ERR_ARG,
                     "unknown algorithm '%s': valid algorithms are image-classification, semantic-segmentation, "
                     "object-detection",
                     name ? name : "(null)");
}

const lt_hp_spec *lt_hparams_table(lt_algorithm a, int *n) {
    switch (a) {
    case LT_ALGO_IMAGE_CLASSIFICATION: *n = (int)(sizeof classification_hp / sizeof *classification_hp); return classification_hp;
    case LT_ALGO_SEMANTIC_SEGMENTATION: *n = (int)(sizeof segmentation_hp / sizeof *segmentation_hp); return segmentation_hp;
    case LT_ALGO_OBJECT_DETECTION: *n = (int)(sizeof detection_hp / sizeof *detection_hp); return detection_hp;
    default: *n = 0; return NULL;
    }
}

void lt_hparams_defaults(lt_hparams *hp, lt_algorithm a) {
    memset(hp, 0, sizeof *hp);
    hp->algorithm = a;
    hp->specs = lt_hparams_table(a, &hp->n);
    for (int i = 0; i < hp->n; i++) hp->value[i] = hp->specs[i].def;
}

static int find(const lt_hparams *hp, const char *name) {
    for (int i = 0; i < hp->n; i++)
        if (strcmp(hp->specs[i].name, name) == 0) return i;
    return -1;
}

static void range_str(const lt_hp_spec *s, char *buf, size_t len) {
    if (isinf(s->max)) snprintf(buf, len, "[%g, inf)", s->min);
    else snprintf(buf, len, "[%g, %g]", s->min, s->max);
}

static lt_status unknown(const lt_hparams *hp, const char *name, lt_err *err) {
    char names[512] = "";
    for (int i = 0; i < hp->n; i++) {
        strncat(names, hp->specs[i].name, sizeof names - strlen(names) - 1);
        if (i + 1 < hp->n) strncat(names, ", ", sizeof names - strlen(names) - 1);
    }
    return lt_errorf(err, LT_ERR_ARG, "unknown hyperparameter '%s' for %s: valid names are %s", name,
                     lt_algorithm_name(hp->algorithm), names);
}

static lt_status set_value(lt_hparams *hp, int i, double v, const char *text, lt_err *err) {
    const lt_hp_spec *s = &hp->specs[i];
    char range[64];
    range_str(s, range, sizeof range);
    if (!isfinite(v))
        return lt_errorf(err, LT_ERR_ARG, "hyperparameter '%s' must be a finite number, got '%s'", s->name, text);
    if (s->type == LT_HP_INT && (v != floor(v) || fabs(v) > 2147483647.0))
        return lt_errorf(err, LT_ERR_ARG, "hyperparameter '%s' must be an integer in %s, got '%s'", s->name, range, text);
    if (v < s->min || v > s->max)
        return lt_errorf(err, LT_ERR_ARG, "hyperparameter '%s' must be in %s, got %s", s->name, range, text);
    hp->value[i] = v;
    hp->set[i] = 1;
    return LT_OK;
}

lt_status lt_hparams_set_str(lt_hparams *hp, const char *name, const char *value, lt_err *err) {
    int i = find(hp, name);
    if (i < 0) return unknown(hp, name, err);
    const lt_hp_spec *s = &hp->specs[i];
    char *end = NULL;
    errno = 0;
    double v = strtod(value, &end);
    while (end && (*end == ' ' || *end == '\t')) end++;
    if (!*value || end == value || *end || errno == ERANGE)
        return lt_errorf(err, LT_ERR_ARG, "hyperparameter '%s' must be %s, got '%s'", s->name,
                         s->type == LT_HP_INT ? "an integer" : "a number", value);
    return set_value(hp, i, v, value, err);
}

lt_status lt_hparams_set_assignment(lt_hparams *hp, const char *a, lt_err *err) {
    const char *eq = strchr(a, '=');
    if (!eq || eq == a) return lt_errorf(err, LT_ERR_ARG, "expected NAME=VALUE, got '%s'", a);
    char name[128];
    size_t n = (size_t)(eq - a);
    if (n >= sizeof name) return lt_errorf(err, LT_ERR_ARG, "hyperparameter name too long in '%s'", a);
    memcpy(name, a, n);
    name[n] = '\0';
    return lt_hparams_set_str(hp, name, eq + 1, err);
}

lt_status lt_hparams_set_json(lt_hparams *hp, const cJSON *obj, lt_err *err) {
    if (!obj || cJSON_IsNull(obj)) return LT_OK;
    if (!cJSON_IsObject(obj)) return lt_errorf(err, LT_ERR_ARG, "hyperparameters must be a JSON object");
    lt_hparams tmp = *hp;
    const cJSON *item;
    cJSON_ArrayForEach(item, obj) {
        lt_status st;
        if (cJSON_IsNumber(item)) {
            int i = find(&tmp, item->string);
            if (i < 0) return unknown(&tmp, item->string, err);
            char text[64];
            snprintf(text, sizeof text, "%.17g", item->valuedouble);
            st = set_value(&tmp, i, item->valuedouble, text, err);
        } else if (cJSON_IsString(item)) {
            st = lt_hparams_set_str(&tmp, item->string, item->valuestring, err);
        } else {
            if (find(&tmp, item->string) < 0) return unknown(&tmp, item->string, err);
            st = lt_errorf(err, LT_ERR_ARG, "hyperparameter '%s' must be a number", item->string);
        }
        if (st != LT_OK) return st;
    }
    *hp = tmp;
    return LT_OK;
}

double lt_hparams_get(const lt_hparams *hp, const char *name) {
    int i = find(hp, name);
    return i < 0 ? NAN : hp->value[i];
}

int lt_hparams_get_int(const lt_hparams *hp, const char *name) {
    double v = lt_hparams_get(hp, name);
    return isnan(v) ? 0 : (int)v;
}

cJSON *lt_hparams_to_json(const lt_hparams *hp) {
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; o && i < hp->n; i++) cJSON_AddNumberToObject(o, hp->specs[i].name, hp->value[i]);
    return o;
}
