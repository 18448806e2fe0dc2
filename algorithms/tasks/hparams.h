/* hparams.h - the three algorithms and their hyperparameter tables, exactly as the algorithms guide gives
 * them (name, type, default, valid range). Used by `lathe train`, the scheduler's submission check and the
 * worker, so a value is judged the same way everywhere. */
#ifndef LT_HPARAMS_H
#define LT_HPARAMS_H

#include "core/status.h"

#include <cjson/cJSON.h>

typedef enum {
    LT_ALGO_IMAGE_CLASSIFICATION = 0,
    LT_ALGO_SEMANTIC_SEGMENTATION,
    LT_ALGO_OBJECT_DETECTION,
    LT_ALGO_COUNT
} lt_algorithm;

/* "image-classification", "semantic-segmentation", "object-detection". */
const char *lt_algorithm_name(lt_algorithm a);
/* Parses an algorithm name (also accepting '_' for '-'); LT_ERR_ARG listing the valid names otherwise. */
lt_status lt_algorithm_parse(const char *name, lt_algorithm *out, lt_err *err);

typedef enum { LT_HP_INT = 0, LT_HP_FLOAT, LT_HP_TYPE_COUNT } lt_hp_type;

typedef struct {
    const char *name;
    lt_hp_type type;
    double def;        /* default */
    double min, max;   /* inclusive bounds; max = INFINITY when open */
    const char *description;
} lt_hp_spec;

#define LT_HP_MAX 8

typedef struct {
    lt_algorithm algorithm;
    const lt_hp_spec *specs; /* (n) the algorithm's table */
    int n;
    double value[LT_HP_MAX]; /* current values, by table position */
    int set[LT_HP_MAX];      /* 1 where the user gave a value */
} lt_hparams;

/* Fills hp with the algorithm's defaults. Can't fail for a valid algorithm. */
void lt_hparams_defaults(lt_hparams *hp, lt_algorithm a);

/* Sets NAME from text ("--hp NAME=VALUE"). Unknown names, wrong types (3.5 for an int, "abc"), non-finite
 * values and out-of-range values are LT_ERR_ARG errors naming the hyperparameter, its type and range, and
 * (for unknown names) listing the valid names. hp is unchanged on error. */
lt_status lt_hparams_set_str(lt_hparams *hp, const char *name, const char *value, lt_err *err);
/* Parses "NAME=VALUE". */
lt_status lt_hparams_set_assignment(lt_hparams *hp, const char *assignment, lt_err *err);
/* Sets every member of a JSON object; values may be JSON numbers or numeric strings. NULL obj is a no-op. */
lt_status lt_hparams_set_json(lt_hparams *hp, const cJSON *obj, lt_err *err);

/* The value of a hyperparameter of this algorithm's table; name must exist (a programming error otherwise:
 * returns NaN). */
double lt_hparams_get(const lt_hparams *hp, const char *name);
int lt_hparams_get_int(const lt_hparams *hp, const char *name);

/* A JSON object of every hyperparameter's value (ints as integers). Caller frees with cJSON_Delete. */
cJSON *lt_hparams_to_json(const lt_hparams *hp);

/* The table of an algorithm and its size. */
const lt_hp_spec *lt_hparams_table(lt_algorithm a, int *n);

#endif
