/* Tests of core/big_alloc.c: zeroed memory of every size, 2 MiB aligned when it comes from mmap, released
 * by lt_free_big with the same size. */
#include "check.h"
#include "core/big_alloc.h"

#include <stdint.h>
#include <string.h>

static void check_size(size_t n) {
    unsigned char *q = lt_alloc_big(n);
    CHECK_MSG(q != NULL, "lt_alloc_big(%zu) failed", n);
    if (!q) return;
    size_t nonzero = 0;
    for (size_t i = 0; i < (n ? n : 1); i += 997)
        nonzero += q[i] != 0;
    CHECK_MSG(nonzero == 0 && (n == 0 || q[n - 1] == 0), "lt_alloc_big(%zu) is not zeroed", n);
#if !defined(__SANITIZE_ADDRESS__)
    if (n >= ((size_t)2 << 20))
        CHECK_MSG((uintptr_t)q % ((size_t)2 << 20) == 0, "%zu bytes not 2 MiB aligned", n);
#endif
    memset(q, 0xab, n ? n : 1); /* every byte is writable */
    lt_free_big(q, n);
}

int main(void) {
    size_t sizes[] = {
        0, 1, 4096, ((size_t)2 << 20) - 4, (size_t)2 << 20, ((size_t)2 << 20) + 4, (size_t)37 << 20};
    for (int round = 0; round < 2; round++) /* a second round reuses what the first released */
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
            check_size(sizes[i]);
    lt_free_big(NULL, 100); /* a no-op */
    return check_summary("test_big_alloc");
}
