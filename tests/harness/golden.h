/* golden.h - reads the reference tensors that the scripts in tools/golden/ compute with PyTorch.
 *
 * Format (text, one tensor per line): `name ndim d0 ... d{ndim-1} v0 v1 ...` with values printed as %.9g,
 * so float32 round-trips exactly. Files live in $LATHE_GOLDEN_DIR (tests/golden/ under ctest). */
#ifndef LT_GOLDEN_H
#define LT_GOLDEN_H

#include <stdint.h>

typedef struct {
    char name[96];
    int ndim;
    int64_t shape[5];
    int64_t numel;
    float *data; /* (numel) */
} golden_tensor;

typedef struct {
    golden_tensor *t; /* (n) */
    int n;
} golden_file;

/* Loads file (a name inside $LATHE_GOLDEN_DIR, or a path). Returns 0 on success; on failure prints why
 * and returns -1 (f is then empty and safe to free). */
int golden_load(golden_file *f, const char *file);
/* The tensor named name, or NULL (and a printed message). */
golden_tensor *golden_get(golden_file *f, const char *name);
void golden_free(golden_file *f);

/* Copies tensor `name` into dst (n floats). A missing tensor or one of another size is a test failure
 * (check.h), and dst is then left as it was. Returns 1 on success. */
int golden_put(golden_file *f, const char *name, float *dst, int64_t n);
/* Compares n floats with tensor `name` (|got - want| <= atol + rtol |want|), reporting failures under
 * `what` (NULL: the name). A missing tensor or another size is a failure. Returns 1 when all are close. */
int golden_expect(golden_file *f, const char *what, const char *name, const float *got, int64_t n, double atol,
                  double rtol);

#endif
