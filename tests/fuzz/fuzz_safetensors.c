/* libFuzzer target for the safetensors reader: any input must parse or fail with a message, never crash
 * or read out of bounds; an accepted file must convert every convertible tensor and find every name.
 * Build: cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DLATHE_FUZZ=ON && cmake --build build-fuzz
 * Run:   build-fuzz/tests/fuzz/fuzz_safetensors -max_total_time=60 tests/fuzz/corpus */
#include "io/safetensors.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lt_err err = {{0}};
    lt_st_file *f = NULL;
    if (lt_st_parse(data, size, "fuzz", &f, &err) != LT_OK) {
        if (f || !err.msg[0]) __builtin_trap();
        return 0;
    }
    for (int i = 0; i < lt_st_count(f); i++) {
        const lt_st_entry *e = lt_st_entry_at(f, i);
        if (lt_st_find(f, e->name) != e || e->end > size) __builtin_trap();
        if (e->numel > (1 << 20))
            continue; /* can't happen for inputs libFuzzer makes; bounds memory anyway */
        float *dst = malloc((size_t)(e->numel ? e->numel : 1) * sizeof *dst);
        lt_status st = lt_st_read_f32(f, e, dst, e->numel, &err);
        if (st != LT_OK && e->dtype != LT_ST_F8_E4M3 && e->dtype != LT_ST_F8_E5M2) __builtin_trap();
        free(dst);
    }
    for (int i = 0; i < lt_st_metadata_count(f); i++) {
        const char *k, *v;
        if (lt_st_metadata_at(f, i, &k, &v) != 0 || !lt_st_metadata_get(f, k)) __builtin_trap();
    }
    lt_st_close(f);
    return 0;
}
