#include "fixtures.h"

#include <png.h>
#include <stdint.h>
#include <string.h>

int fixture_class_png(const char *path, int size, int cls, unsigned seed) {
    uint8_t px[64 * 64 * 3];
    if (size < 1 || size > 64 || cls < 0 || cls > 2) return 0;
    for (int i = 0; i < size * size; i++) {
        seed = seed * 1103515245u + 12345u;
        for (int c = 0; c < 3; c++) px[i * 3 + c] = (uint8_t)((seed >> (8 + 4 * c)) & 63);
        px[i * 3 + (2 - cls)] = (uint8_t)(160 + ((seed >> 20) & 63));
    }
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = img.height = (png_uint_32)size;
    img.format = PNG_FORMAT_RGB;
    return png_image_write_to_file(&img, path, 0, px, 0, NULL) != 0;
}
