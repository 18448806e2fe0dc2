/* big_alloc.c - memory for the big arrays a training step streams through: weights, gradients, AdamW
 * moments, the graph's activation arena and scratch. */
#include "big_alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#define BIG_PAGE ((size_t)2 << 20)

/* 1 when n bytes go to mmap. Under AddressSanitizer never: it guards calloc's blocks, not mmap's pages. */
static int goes_to_mmap(size_t n) {
#if defined(__SANITIZE_ADDRESS__)
    (void)n;
    return 0;
#else
    return n >= BIG_PAGE;
#endif
}

/* Big arrays streamed every step (weights, gradients, AdamW moments, activations) come from mmap, 2 MiB
 * aligned and marked for transparent huge pages, which the kernel gives only on request (madvise mode,
 * Debian's default). With 4 KiB pages a pass over such an array walks the page tables every 4 KiB:
 * ResNet-50's training step at 28 x 28 took ~6% longer. mmap's pages read as zero and cost no memory until
 * written, like calloc's (an inference graph never touches the store's gradient and moment arrays). */
void *lt_alloc_big(size_t n) {
    if (!goes_to_mmap(n)) return calloc(1, n ? n : 1);
    const size_t len = (n + BIG_PAGE - 1) / BIG_PAGE * BIG_PAGE;
    char *raw = mmap(NULL, len + BIG_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    char *q = (char *)(((uintptr_t)raw + BIG_PAGE - 1) / BIG_PAGE * BIG_PAGE);
    if (q > raw) munmap(raw, (size_t)(q - raw)); /* the unaligned head and tail go back */
    if (q + len < raw + len + BIG_PAGE) munmap(q + len, (size_t)(raw + len + BIG_PAGE - (q + len)));
#ifdef MADV_HUGEPAGE
    madvise(q, len, MADV_HUGEPAGE); /* advice: without huge pages the memory works the same */
#endif
    return q;
}

void lt_free_big(void *q, size_t n) {
    if (!q) return;
    if (!goes_to_mmap(n)) {
        free(q);
        return;
    }
    munmap(q, (n + BIG_PAGE - 1) / BIG_PAGE * BIG_PAGE);
}
