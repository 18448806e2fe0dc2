/* fuzz_image.c - libFuzzer target for algorithms/io/image.c: any byte string must decode or be rejected
 * with LT_ERR_FORMAT, never crash, leak or read out of bounds. Seeds: tests/fuzz/corpus_image/ (written by
 * tools/golden/image_preproc.py). Build instructions: tests/fuzz/CMakeLists.txt. */
#include "io/image.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Small limits keep each run fast while still reaching every code path. */
    lt_image_limits lim = {.max_bytes = 1 << 20, .max_pixels = 1 << 20};
    lt_err err = {{0}};
    lt_image_info info;
    lt_status ps = lt_image_probe(data, size, "fuzz", &lim, &info, &err);
    if (ps != LT_OK && ps != LT_ERR_FORMAT && ps != LT_ERR_NOMEM) abort();
    lt_image img;
    lt_status s = lt_image_decode(data, size, "fuzz", &lim, &img, &err);
    if (s == LT_OK) {
        /* A decode that succeeds agrees with the probe, and every pixel is readable. */
        if (ps != LT_OK || info.width != img.width || info.height != img.height) abort();
        unsigned sum = 0;
        for (size_t i = 0; i < (size_t)img.width * img.height * 3; i++)
            sum += img.rgb[i];
        float dst[3 * 4 * 5], mean[3] = {0.5f, 0.5f, 0.5f}, std[3] = {0.25f, 0.25f, 0.25f};
        if (lt_image_to_tensor(&img, 4, 5, mean, std, dst) != LT_OK) abort();
        (void)sum;
    } else if (s != LT_ERR_FORMAT && s != LT_ERR_NOMEM) {
        abort();
    } else if (strncmp(err.msg, "fuzz: ", 6) != 0) {
        abort(); /* every message names its source */
    }
    lt_image_free(&img);
    return 0;
}
