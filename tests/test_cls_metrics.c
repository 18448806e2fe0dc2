/* Classification metrics against values computed by hand with scikit-learn's definitions. */
#include "check.h"
#include "tasks/cls_metrics.h"

#include <math.h>

int main(void) {
    /* y_true = [0,0,0,1,1,2], y_pred = [0,1,0,1,2,2]; sklearn macro: precision = mean(1, .5, .5) = 2/3,
     * recall = mean(2/3, 1/2, 1) = 13/18, f1 = mean(.8, .5, 2/3) */
    int truth[] = {0, 0, 0, 1, 1, 2}, pred[] = {0, 1, 0, 1, 2, 2};
    lt_cls_metrics m;
    CHECK(lt_cls_metrics_init(&m, 4) == 0); /* class 3 never occurs: excluded from the macro mean */
    for (int i = 0; i < 6; i++) lt_cls_metrics_add(&m, truth[i], pred[i]);
    lt_cls_metrics_add(&m, 7, 0); /* out of range: ignored */
    lt_cls_summary s = lt_cls_metrics_summary(&m);
    CHECK_NEAR(s.accuracy, 4.0 / 6.0, 1e-12, 0);
    CHECK_NEAR(s.precision, 2.0 / 3.0, 1e-12, 0);
    CHECK_NEAR(s.recall, 13.0 / 18.0, 1e-12, 0);
    CHECK_NEAR(s.f1, (0.8 + 0.5 + 2.0 / 3.0) / 3.0, 1e-12, 0);
    double p[4], r[4], f[4];
    int64_t sup[4];
    lt_cls_metrics_per_class(&m, p, r, f, sup);
    CHECK(sup[0] == 3 && sup[1] == 2 && sup[2] == 1 && sup[3] == 0);
    CHECK_NEAR(p[2], 0.5, 1e-12, 0);
    CHECK_NEAR(r[2], 1.0, 1e-12, 0);
    /* zero_division=0: a class predicted but never true has recall 0 and counts in the mean */
    lt_cls_metrics_reset(&m);
    lt_cls_metrics_add(&m, 0, 3);
    lt_cls_metrics_add(&m, 0, 0);
    s = lt_cls_metrics_summary(&m);
    CHECK_NEAR(s.precision, 0.5, 1e-12, 0); /* class 0: 1/1, class 3: 0/1 */
    CHECK_NEAR(s.recall, 0.25, 1e-12, 0);   /* class 0: 1/2, class 3: 0/0 -> 0 */
    const char *labels[] = {"a", "b", "c", "d"};
    cJSON *j = lt_cls_metrics_to_json(&m, labels);
    cJSON *row0 = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "confusion_matrix"), "matrix"), 0);
    CHECK(cJSON_GetNumberValue(cJSON_GetArrayItem(row0, 3)) == 1);
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "per_class"), "d") != NULL);
    cJSON_Delete(j);
    lt_cls_metrics_free(&m);
    return check_summary("test_cls_metrics");
}
