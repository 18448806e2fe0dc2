/* crc32c.h - CRC-32C (Castagnoli), the checksum TFRecord framing uses (tbevents.c).
 *
 * Reflected polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF; lt_crc32c(0, "123456789", 9)
 * is the standard check value 0xE3069283. Table-driven, one byte at a time: the records it checks are a
 * few hundred bytes, so a faster (SSE4.2 or slice-by-8) version would not be measurable. */
#ifndef LT_CRC32C_H
#define LT_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C of n bytes at data, continuing from a previous result crc (pass 0 to start). Can't fail. */
uint32_t lt_crc32c(uint32_t crc, const void *data, size_t n);

/* TFRecord's "masked" CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8. Masking keeps a CRC of data that
 * itself holds CRCs from being weak. Can't fail. */
uint32_t lt_crc32c_mask(uint32_t crc);

#endif
