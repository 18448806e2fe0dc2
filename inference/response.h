/* response.h - the guide's response bodies, built from predictions already computed.
 *
 * Image classification, one instance: the guide's bare list over every label, highest score first
 *     [{"score": 0.9992493987083435, "label": "dog"}, {"score": 0.0007505337707698345, "label": "cat"}]
 * Image classification, n > 1 instances: one such list per instance, in request order, under "predictions"
 *     {"predictions": [[{"score", "label"}, ...], [...], ...]}
 * (the guide shows only the one-instance body; this keeps it unchanged and uses the wrapper the other
 * algorithms use for more). Semantic segmentation (any n): one label map per instance, rows of label ids
 *     {"predictions": [[[1, 1, 27, ...], [27, 27, 1, ...], ...], ...]}
 * Object detection (any n): one list of boxes per instance, each {label: {xmin, ymin, xmax, ymax}} in
 * integer pixels of the request's image
 *     {"predictions": [[{"balloon": {"xmin": 293, "ymin": 325, "xmax": 361, "ymax": 375}}, ...], ...]}
 *
 * Every builder returns compact JSON text (malloc'd, caller frees) or NULL when out of memory. */
#ifndef LT_INFER_RESPONSE_H
#define LT_INFER_RESPONSE_H

#include <stddef.h>
#include <stdint.h>

/* One detected object. */
typedef struct {
    int label;                    /* index into the labels */
    float score;                  /* confidence in [0, 1]; not in the guide's response, kept for callers */
    float xmin, ymin, xmax, ymax; /* pixels of the request's image; rounded to integers in the response */
} lt_infer_box;

/* probs: (n, n_labels) row i is instance i's scores; labels: (n_labels) names. One instance gives the bare
 * list, several give {"predictions": [...]}. Ties keep label order. */
char *lt_infer_cls_response(char *const *labels, int n_labels, const float *probs, int n);

/* The bare list for one instance (the n == 1 body), for callers that assemble their own. */
char *lt_infer_cls_list(char *const *labels, int n_labels, const float *probs);

/* maps[i]: (heights[i], widths[i]) label ids of instance i, row-major. */
char *lt_infer_seg_response(const int32_t *const *maps, const int *heights, const int *widths, int n);

/* boxes[i]: (n_boxes[i]) objects of instance i, in the order given; labels: (n_labels) names. A box whose
 * label is out of range is named by its index. */
char *lt_infer_det_response(char *const *labels, int n_labels, const lt_infer_box *const *boxes,
                            const int *n_boxes, int n);

/* {"error": msg}: the body of every 4xx/5xx answer. */
char *lt_infer_error_response(const char *msg);

#endif
