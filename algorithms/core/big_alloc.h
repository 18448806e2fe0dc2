/* big_alloc.h - n zeroed bytes for a big array streamed every step, on transparent huge pages where the
 * kernel gives them. */
#ifndef LT_BIG_ALLOC_H
#define LT_BIG_ALLOC_H

#include <stddef.h>

/* n zeroed bytes, NULL when out of memory; lt_free_big(q, n) releases them (the same n). */
void *lt_alloc_big(size_t n);
void lt_free_big(void *q, size_t n);

#endif
