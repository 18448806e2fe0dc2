/* response.c - the guide's response bodies per algorithm. */
#include "response.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The list for one instance, built exactly as lt_cls_prediction_json does (so `lathe predict` and the
 * server print the same bytes for the same scores): descending score, ties by label index. */
static cJSON *cls_list_json(char *const *labels, int n_labels, const float *probs) {
    int *order = malloc((size_t)(n_labels > 0 ? n_labels : 1) * sizeof *order);
    cJSON *a = cJSON_CreateArray();
    if (!order || !a) goto oom;
    for (int i = 0; i < n_labels; i++)
        order[i] = i;
    /* insertion sort: stable, and n_labels is small */
    for (int i = 1; i < n_labels; i++) {
        int k = order[i], j = i - 1;
        while (j >= 0 && probs[order[j]] < probs[k]) {
            order[j + 1] = order[j];
            j--;
        }
        order[j + 1] = k;
    }
    for (int i = 0; i < n_labels; i++) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(a, o) ||
            !cJSON_AddNumberToObject(o, "score", (double)probs[order[i]]) ||
            !cJSON_AddStringToObject(o, "label", labels[order[i]])) {
            if (o && !o->prev) cJSON_Delete(o); /* not attached yet */
            goto oom;
        }
    }
    free(order);
    return a;
oom:
    free(order);
    cJSON_Delete(a);
    return NULL;
}

static char *print_and_delete(cJSON *j) {
    char *s = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    return s;
}

char *lt_infer_cls_list(char *const *labels, int n_labels, const float *probs) {
    return print_and_delete(cls_list_json(labels, n_labels, probs));
}

char *lt_infer_cls_response(char *const *labels, int n_labels, const float *probs, int n) {
    if (n == 1) return lt_infer_cls_list(labels, n_labels, probs);
    cJSON *root = cJSON_CreateObject();
    cJSON *preds = root ? cJSON_AddArrayToObject(root, "predictions") : NULL;
    if (!preds) {
        cJSON_Delete(root);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        cJSON *l = cls_list_json(labels, n_labels, probs + (size_t)i * (size_t)n_labels);
        if (!l || !cJSON_AddItemToArray(preds, l)) {
            cJSON_Delete(l);
            cJSON_Delete(root);
            return NULL;
        }
    }
    return print_and_delete(root);
}

/* ---- segmentation: written as text, since a 512 x 512 map as cJSON nodes would take ~17 MB ---- */

typedef struct {
    char *s; /* (cap) text so far, NUL-terminated when ok */
    size_t len, cap;
    int ok; /* 0 after an allocation failed */
} text_buf;

static void buf_put(text_buf *b, const char *s, size_t n) {
    if (!b->ok) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->ok = 0;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void buf_str(text_buf *b, const char *s) {
    buf_put(b, s, strlen(s));
}

char *lt_infer_seg_response(const int32_t *const *maps, const int *heights, const int *widths, int n) {
    text_buf b = {.ok = 1};
    buf_str(&b, "{\"predictions\":[");
    for (int i = 0; i < n; i++) {
        buf_str(&b, i ? ",[" : "[");
        for (int y = 0; y < heights[i]; y++) {
            buf_str(&b, y ? ",[" : "[");
            const int32_t *row = maps[i] + (size_t)y * (size_t)widths[i];
            for (int x = 0; x < widths[i]; x++) {
                char num[16];
                int k = snprintf(num, sizeof num, x ? ",%d" : "%d", (int)row[x]);
                buf_put(&b, num, (size_t)k);
            }
            buf_str(&b, "]");
        }
        buf_str(&b, "]");
    }
    buf_str(&b, "]}");
    if (!b.ok) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

/* ---- detection ---- */

static cJSON *box_json(char *const *labels, int n_labels, const lt_infer_box *bx) {
    char idx[16];
    const char *name = idx;
    if (bx->label >= 0 && bx->label < n_labels)
        name = labels[bx->label];
    else
        snprintf(idx, sizeof idx, "%d", bx->label);
    cJSON *o = cJSON_CreateObject();
    cJSON *c = o ? cJSON_AddObjectToObject(o, name) : NULL;
    if (!c || !cJSON_AddNumberToObject(c, "xmin", round(bx->xmin)) ||
        !cJSON_AddNumberToObject(c, "ymin", round(bx->ymin)) ||
        !cJSON_AddNumberToObject(c, "xmax", round(bx->xmax)) ||
        !cJSON_AddNumberToObject(c, "ymax", round(bx->ymax))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

char *lt_infer_det_response(char *const *labels, int n_labels, const lt_infer_box *const *boxes,
                            const int *n_boxes, int n) {
    cJSON *root = cJSON_CreateObject();
    cJSON *preds = root ? cJSON_AddArrayToObject(root, "predictions") : NULL;
    for (int i = 0; preds && i < n; i++) {
        cJSON *l = cJSON_CreateArray();
        if (!l || !cJSON_AddItemToArray(preds, l)) {
            cJSON_Delete(l);
            preds = NULL;
            break;
        }
        for (int k = 0; k < n_boxes[i]; k++) {
            cJSON *o = box_json(labels, n_labels, &boxes[i][k]);
            if (!o || !cJSON_AddItemToArray(l, o)) {
                cJSON_Delete(o);
                preds = NULL;
                break;
            }
        }
    }
    if (!preds) {
        cJSON_Delete(root);
        return NULL;
    }
    return print_and_delete(root);
}

char *lt_infer_error_response(const char *msg) {
    cJSON *o = cJSON_CreateObject();
    if (o && !cJSON_AddStringToObject(o, "error", msg)) {
        cJSON_Delete(o);
        return NULL;
    }
    return print_and_delete(o);
}
