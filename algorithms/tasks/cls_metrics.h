/* cls_metrics.h - classification metrics from a confusion matrix.
 *
 * Standard definitions, as scikit-learn's precision_recall_fscore_support(average="macro",
 * zero_division=0): precision of class c = TP / (TP + FP) (over the images *predicted* as c), recall = TP /
 * (TP + FN) (over the images whose true class is c), F1 their harmonic mean; a 0/0 ratio counts as 0; the
 * macro average is the plain mean over classes that occur in the truth or the predictions (sklearn's
 * labels=None default). The guide's table swaps the wording of precision and recall; the README says so. */
#ifndef LT_CLS_METRICS_H
#define LT_CLS_METRICS_H

#include <cjson/cJSON.h>
#include <stdint.h>

typedef struct {
    int n_classes;
    int64_t *confusion; /* (n_classes, n_classes): row = true class, column = predicted class */
    double loss_sum;    /* summed per-image loss, for eval_loss */
    int64_t count;
} lt_cls_metrics;

/* Returns 0 on success, -1 on OOM. */
int lt_cls_metrics_init(lt_cls_metrics *m, int n_classes);
void lt_cls_metrics_free(lt_cls_metrics *m);
void lt_cls_metrics_reset(lt_cls_metrics *m);
/* Adds one prediction; labels outside [0, n_classes) are ignored. */
void lt_cls_metrics_add(lt_cls_metrics *m, int truth, int predicted);

typedef struct {
    double accuracy, precision, recall, f1, loss;
} lt_cls_summary;

lt_cls_summary lt_cls_metrics_summary(const lt_cls_metrics *m);
/* Per class values (arrays of n_classes), any may be NULL. support = number of true images. */
void lt_cls_metrics_per_class(const lt_cls_metrics *m, double *precision, double *recall, double *f1,
                              int64_t *support);

/* {"accuracy", "precision", "recall", "f1", "loss", "per_class": {label: {precision, recall, f1, support}},
 *  "confusion_matrix": {"labels": [...], "matrix": [[...]]}}. labels may be NULL (then "0", "1", ...). */
cJSON *lt_cls_metrics_to_json(const lt_cls_metrics *m, const char *const *labels);

#endif
