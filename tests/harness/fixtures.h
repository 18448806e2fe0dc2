/* fixtures.h - small data files the tests write for themselves. */
#ifndef LT_FIXTURES_H
#define LT_FIXTURES_H

/* Writes a size x size RGB PNG (size <= 64) at path whose strongest channel is given by cls (0 blue,
 * 1 green, 2 red: the classes of the synthetic classification data sets), over low noise from seed, so a
 * few training steps can learn it. Returns 1 on success. */
int fixture_class_png(const char *path, int size, int cls, unsigned seed);

#endif
