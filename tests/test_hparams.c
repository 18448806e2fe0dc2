/* The guide's hyperparameter tables: defaults, types, ranges and error messages. */
#include "check.h"
#include "tasks/hparams.h"

#include <math.h>
#include <string.h>

static void test_defaults(void) {
    lt_hparams hp;
    lt_hparams_defaults(&hp, LT_ALGO_IMAGE_CLASSIFICATION);
    CHECK(hp.n == 6);
    CHECK(lt_hparams_get_int(&hp, "input_size") == 28);
    CHECK_NEAR(lt_hparams_get(&hp, "learning_rate"), 0.1, 0, 0);
    CHECK(lt_hparams_get_int(&hp, "per_device_train_batch_size") == 16);
    CHECK(lt_hparams_get_int(&hp, "per_device_eval_batch_size") == 16);
    CHECK(lt_hparams_get_int(&hp, "num_train_epochs") == 3);
    CHECK(lt_hparams_get_int(&hp, "logging_steps") == 500);
    lt_hparams_defaults(&hp, LT_ALGO_SEMANTIC_SEGMENTATION);
    CHECK(hp.n == 4);
    CHECK_NEAR(lt_hparams_get(&hp, "learning_rate"), 2e-4, 0, 0);
    CHECK(lt_hparams_get_int(&hp, "per_device_train_batch_size") == 4);
    CHECK_NEAR(lt_hparams_get(&hp, "num_train_epochs"), 3.0, 0, 0);
    lt_hparams_defaults(&hp, LT_ALGO_OBJECT_DETECTION);
    CHECK(hp.n == 6);
    CHECK_NEAR(lt_hparams_get(&hp, "threshold"), 0.5, 0, 0);
    CHECK(lt_hparams_get_int(&hp, "per_device_eval_batch_size") == 4);
}

static void expect_error(lt_algorithm a, const char *assignment, const char *needle) {
    lt_hparams hp;
    lt_hparams_defaults(&hp, a);
    lt_hparams before = hp;
    lt_err err = {{0}};
    lt_status st = lt_hparams_set_assignment(&hp, assignment, &err);
    CHECK_MSG(st == LT_ERR_ARG, "'%s' should be rejected", assignment);
    CHECK_MSG(strstr(err.msg, needle) != NULL, "'%s': message '%s' lacks '%s'", assignment, err.msg, needle);
    CHECK_MSG(memcmp(&hp, &before, sizeof hp) == 0, "'%s' changed the values", assignment);
}

static void test_errors(void) {
    expect_error(LT_ALGO_IMAGE_CLASSIFICATION, "input_size=3", "input_size");
    expect_error(LT_ALGO_IMAGE_CLASSIFICATION, "input_size=28.5", "integer");
    expect_error(LT_ALGO_IMAGE_CLASSIFICATION, "input_size=abc", "input_size");
    expect_error(LT_ALGO_IMAGE_CLASSIFICATION, "learning_rate=-0.1", "[0, inf)");
    expect_error(LT_ALGO_IMAGE_CLASSIFICATION, "learning_rate=nan", "finite");
    expect_error(LT_ALGO_IMAGE_CLASSIFICATION, "per_device_train_batch_size=1", "per_device_train_batch_size");
    expect_error(LT_ALGO_IMAGE_CLASSIFICATION, "logging_steps=499", "[500, inf)");
    expect_error(LT_ALGO_IMAGE_CLASSIFICATION, "num_train_epochs=0", "num_train_epochs");
    expect_error(LT_ALGO_IMAGE_CLASSIFICATION, "threshold=0.3", "valid names are input_size, learning_rate");
    expect_error(LT_ALGO_IMAGE_CLASSIFICATION, "=3", "NAME=VALUE");
    expect_error(LT_ALGO_IMAGE_CLASSIFICATION, "input_size", "NAME=VALUE");
    expect_error(LT_ALGO_OBJECT_DETECTION, "threshold=1.5", "[0, 1]");
    expect_error(LT_ALGO_SEMANTIC_SEGMENTATION, "per_device_train_batch_size=0", "per_device_train_batch_size");
}

static void test_set_and_json(void) {
    lt_hparams hp;
    lt_err err = {{0}};
    lt_hparams_defaults(&hp, LT_ALGO_OBJECT_DETECTION);
    CHECK(lt_hparams_set_assignment(&hp, "num_train_epochs=0.5", &err) == LT_OK);
    CHECK_NEAR(lt_hparams_get(&hp, "num_train_epochs"), 0.5, 0, 0);
    CHECK(lt_hparams_set_assignment(&hp, "threshold=1", &err) == LT_OK);
    cJSON *j = cJSON_Parse("{\"learning_rate\": \"1e-3\", \"per_device_train_batch_size\": 8}");
    CHECK(lt_hparams_set_json(&hp, j, &err) == LT_OK);
    CHECK_NEAR(lt_hparams_get(&hp, "learning_rate"), 1e-3, 0, 0);
    CHECK(lt_hparams_get_int(&hp, "per_device_train_batch_size") == 8);
    cJSON_Delete(j);
    /* a bad member leaves every value as it was, even those listed before it */
    j = cJSON_Parse("{\"learning_rate\": 0.5, \"per_device_eval_batch_size\": true}");
    CHECK(lt_hparams_set_json(&hp, j, &err) == LT_ERR_ARG);
    CHECK(strstr(err.msg, "per_device_eval_batch_size") != NULL);
    CHECK_NEAR(lt_hparams_get(&hp, "learning_rate"), 1e-3, 0, 0);
    cJSON_Delete(j);
    cJSON *out = lt_hparams_to_json(&hp);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(out, "threshold")) == 1.0);
    cJSON_Delete(out);
    lt_algorithm a;
    CHECK(lt_algorithm_parse("object_detection", &a, &err) == LT_OK && a == LT_ALGO_OBJECT_DETECTION);
    CHECK(lt_algorithm_parse("detection", &a, &err) == LT_ERR_ARG && strstr(err.msg, "image-classification"));
}

int main(void) {
    test_defaults();
    test_errors();
    test_set_and_json();
    return check_summary("test_hparams");
}
