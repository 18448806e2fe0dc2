#include "cls_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int lt_cls_metrics_init(lt_cls_metrics *m, int n_classes) {
    memset(m, 0, sizeof *m);
    m->n_classes = n_classes;
    m->confusion = calloc((size_t)n_classes * (size_t)n_classes, sizeof *m->confusion);
    return m->confusion ? 0 : -1;
}

void lt_cls_metrics_free(lt_cls_metrics *m) {
    free(m->confusion);
    memset(m, 0, sizeof *m);
}

void lt_cls_metrics_reset(lt_cls_metrics *m) {
    memset(m->confusion, 0, (size_t)m->n_classes * (size_t)m->n_classes * sizeof *m->confusion);
    m->loss_sum = 0;
    m->count = 0;
}

void lt_cls_metrics_add(lt_cls_metrics *m, int truth, int predicted) {
    if (truth < 0 || truth >= m->n_classes || predicted < 0 || predicted >= m->n_classes) return;
    m->confusion[(size_t)truth * (size_t)m->n_classes + (size_t)predicted]++;
    m->count++;
}

void lt_cls_metrics_per_class(const lt_cls_metrics *m, double *precision, double *recall, double *f1,
                              int64_t *support) {
    int C = m->n_classes;
    for (int c = 0; c < C; c++) {
        int64_t tp = m->confusion[(size_t)c * C + c], pred = 0, truth = 0;
        for (int k = 0; k < C; k++) {
            pred += m->confusion[(size_t)k * C + c];
            truth += m->confusion[(size_t)c * C + k];
        }
        double p = pred ? (double)tp / (double)pred : 0.0, r = truth ? (double)tp / (double)truth : 0.0;
        if (precision) precision[c] = p;
        if (recall) recall[c] = r;
        if (f1) f1[c] = p + r > 0 ? 2 * p * r / (p + r) : 0.0;
        if (support) support[c] = truth;
    }
}

lt_cls_summary lt_cls_metrics_summary(const lt_cls_metrics *m) {
    lt_cls_summary s = {0};
    int C = m->n_classes;
    double *p = calloc((size_t)C * 3 + 1, sizeof *p);
    int64_t *sup = calloc((size_t)C + 1, sizeof *sup);
    if (!p || !sup) {
        free(p);
        free(sup);
        return s;
    }
    double *r = p + C, *f = p + 2 * C;
    lt_cls_metrics_per_class(m, p, r, f, sup);
    int64_t correct = 0, total = 0;
    int present = 0;
    for (int c = 0; c < C; c++) {
        int64_t pred = 0;
        for (int k = 0; k < C; k++) pred += m->confusion[(size_t)k * C + c];
        correct += m->confusion[(size_t)c * C + c];
        total += sup[c];
        if (sup[c] == 0 && pred == 0) continue; /* absent from truth and predictions, as sklearn */
        present++;
        s.precision += p[c];
        s.recall += r[c];
        s.f1 += f[c];
    }
    if (present) {
        s.precision /= present;
        s.recall /= present;
        s.f1 /= present;
    }
    s.accuracy = total ? (double)correct / (double)total : 0.0;
    s.loss = m->count ? m->loss_sum / (double)m->count : 0.0;
    free(p);
    free(sup);
    return s;
}

cJSON *lt_cls_metrics_to_json(const lt_cls_metrics *m, const char *const *labels) {
    int C = m->n_classes;
    lt_cls_summary s = lt_cls_metrics_summary(m);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "accuracy", s.accuracy);
    cJSON_AddNumberToObject(o, "precision", s.precision);
    cJSON_AddNumberToObject(o, "recall", s.recall);
    cJSON_AddNumberToObject(o, "f1", s.f1);
    cJSON_AddNumberToObject(o, "loss", s.loss);
    cJSON_AddNumberToObject(o, "samples", (double)m->count);
    double *p = calloc((size_t)C * 3 + 1, sizeof *p);
    int64_t *sup = calloc((size_t)C + 1, sizeof *sup);
    cJSON *per = cJSON_AddObjectToObject(o, "per_class");
    cJSON *cm = cJSON_AddObjectToObject(o, "confusion_matrix");
    cJSON *names = cJSON_AddArrayToObject(cm, "labels");
    cJSON *rows = cJSON_AddArrayToObject(cm, "matrix");
    if (p && sup) {
        lt_cls_metrics_per_class(m, p, p + C, p + 2 * C, sup);
        for (int c = 0; c < C; c++) {
            char idx[16];
            snprintf(idx, sizeof idx, "%d", c);
            const char *name = labels ? labels[c] : idx;
            cJSON *e = cJSON_AddObjectToObject(per, name);
            cJSON_AddNumberToObject(e, "precision", p[c]);
            cJSON_AddNumberToObject(e, "recall", p[C + c]);
            cJSON_AddNumberToObject(e, "f1", p[2 * C + c]);
            cJSON_AddNumberToObject(e, "support", (double)sup[c]);
            cJSON_AddItemToArray(names, cJSON_CreateString(name));
            cJSON *row = cJSON_CreateArray();
            for (int k = 0; k < C; k++) cJSON_AddItemToArray(row, cJSON_CreateNumber((double)m->confusion[(size_t)c * C + k]));
            cJSON_AddItemToArray(rows, row);
        }
    }
    free(p);
    free(sup);
    return o;
}
