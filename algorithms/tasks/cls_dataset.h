/* cls_dataset.h - the image-classification data set layout of the algorithms guide, checked and loaded.
 *
 *     folder/train/<label>/<image>        required
 *     folder/validation/<label>/<image>   required
 *     folder/test/<label>/<image>         optional
 *
 * Labels are the train split's folder names in byte order (as Python's sorted()); validation and test may
 * use a subset of them. Hidden entries (names starting with '.') are ignored. Images are PNG or JPEG,
 * recognized by content, whatever the extension. */
#ifndef LT_CLS_DATASET_H
#define LT_CLS_DATASET_H

#include "core/status.h"
#include "io/image.h"

#include <stdint.h>

typedef enum { LT_SPLIT_TRAIN = 0, LT_SPLIT_VALIDATION, LT_SPLIT_TEST, LT_SPLIT_COUNT } lt_split;

const char *lt_split_name(lt_split s); /* "train", "validation", "test" */

typedef struct {
    char *path; /* full path, owned */
    int label;  /* index into lt_cls_dataset.labels */
} lt_cls_item;

typedef struct {
    lt_cls_item *items; /* (n) sorted by label, then file name */
    int64_t n;
    int present;        /* the split's folder exists */
} lt_cls_split;

typedef struct {
    char **labels;      /* (n_labels) owned */
    int n_labels;
    lt_cls_split split[LT_SPLIT_COUNT];
} lt_cls_dataset;

/* The most bad files one error message lists before "... and N more". */
#define LT_DATASET_MAX_LISTED 20

/* Scans root. Fails (LT_ERR_ARG/LT_ERR_IO) on a missing train or validation folder, a label folder with no
 * images, a validation/test label unknown to train, a non-folder entry where label folders belong, or a
 * folder inside a label folder; the message names the path. Images are not opened here. On failure ds is
 * empty and safe to free. */
lt_status lt_cls_dataset_scan(const char *root, lt_cls_dataset *ds, lt_err *err);
void lt_cls_dataset_free(lt_cls_dataset *ds);

/* The images of one split, decoded and preprocessed to (3, size, size) floats:
 * (resize(img / 255) - mean) / std, see lt_image_to_tensor. */
typedef struct {
    const lt_cls_split *split; /* not owned */
    int size;
    float mean[3], std[3];
    float *cache;              /* (n, 3, size, size) every image, or NULL when over the memory budget */
    lt_image_limits limits;
} lt_cls_images;

/* Decodes every image of split once (in parallel), which checks that each is a readable, non-empty image,
 * and keeps the tensors when n * 3 * size^2 floats fit in cache_budget bytes. Every bad file is collected
 * and the error lists them (up to LT_DATASET_MAX_LISTED), so a user fixes all of them in one go. */
lt_status lt_cls_images_prepare(lt_cls_images *ci, const lt_cls_split *split, int size, const float mean[3],
                                const float std[3], int64_t cache_budget, lt_err *err);
void lt_cls_images_free(lt_cls_images *ci);

/* Fills pixels (n, 3, size, size) and labels (n, class ids as floats; may be NULL) for items idx[0..n-1]. */
lt_status lt_cls_images_batch(const lt_cls_images *ci, const int64_t *idx, int n, float *pixels, float *labels,
                              lt_err *err);

#endif
