/* Tests of PNG/JPEG decoding and the resize/normalize preprocessing (algorithms/io/image.c).
 *
 * Fixtures are written here, in memory, with libpng's and libjpeg's own writers, for every PNG kind (gray
 * 1/2/4/8/16-bit, gray+alpha, RGB, RGBA, palette with and without tRNS, 16-bit, interlaced) and for gray,
 * color, progressive and CMYK/YCCK JPEGs; PNG pixels must come back exactly, JPEG pixels within the codec's
 * loss. Broken inputs (every truncation, flipped bytes, wrong magic, huge or zero dimensions) must give
 * LT_ERR_FORMAT, never a crash. Golden values (tools/golden/image_preproc.py) pin the preprocessing to
 * PyTorch and the decoding of PIL-written files (tests/fuzz/corpus_image/) to PIL's convert("RGB"). */
#define _GNU_SOURCE
#include "check.h"
#include "golden.h"
#include "io/image.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <jpeglib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NAME "instance 2"

/* ---- fixture writers ---- */

typedef struct {
    uint8_t *p; /* (cap) */
    size_t n, cap;
} membuf;

static void membuf_put(membuf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void png_write_mem(png_structp png, png_bytep d, size_t n) {
    membuf_put(png_get_io_ptr(png), d, n);
}
static void png_flush_mem(png_structp png) {}

/* A well-mixed deterministic value in [0, maxv]. */
static unsigned mix(unsigned x, unsigned y, unsigned c, unsigned maxv) {
    uint32_t h = x * 2654435761u ^ (y + 0x9e37u) * 40503u ^ (c + 7) * 2246822519u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    return h % (maxv + 1);
}

typedef struct {
    const char *what;
    int color, depth, interlace, trns, w, h;
} png_kind;

/* Writes a PNG of kind k into out and the RGB a decoder must produce into expect (h, w, 3). */
static int write_png(const png_kind *k, membuf *out, uint8_t *expect) {
    int ch = k->color == PNG_COLOR_TYPE_GRAY || k->color == PNG_COLOR_TYPE_PALETTE ? 1
             : k->color == PNG_COLOR_TYPE_GRAY_ALPHA                               ? 2
             : k->color == PNG_COLOR_TYPE_RGB                                      ? 3
                                                                                   : 4;
    unsigned maxv = (1u << k->depth) - 1;
    int npal = k->color == PNG_COLOR_TYPE_PALETTE ? 1 << k->depth : 0;
    png_color pal[256];
    png_byte pal_alpha[256];
    for (int i = 0; i < npal; i++) {
        pal[i].red = (png_byte)mix(i, 1, 0, 255), pal[i].green = (png_byte)mix(i, 1, 1, 255);
        pal[i].blue = (png_byte)mix(i, 1, 2, 255), pal_alpha[i] = (png_byte)mix(i, 2, 3, 255);
    }
    size_t rowbytes = ((size_t)k->w * ch * k->depth + 7) / 8;
    uint8_t *pix = calloc((size_t)k->h * rowbytes, 1);
    png_bytep *rows = malloc((size_t)k->h * sizeof *rows);
    for (int y = 0; y < k->h; y++) {
        rows[y] = pix + (size_t)y * rowbytes;
        for (int x = 0; x < k->w; x++) {
            unsigned v[4];
            for (int c = 0; c < ch; c++) {
                v[c] = mix(x, y, c, npal ? (unsigned)npal - 1 : maxv);
                size_t bit = ((size_t)x * ch + c) * k->depth;
                if (k->depth == 16)
                    rows[y][bit / 8] = (uint8_t)(v[c] >> 8), rows[y][bit / 8 + 1] = (uint8_t)v[c];
                else
                    rows[y][bit / 8] |= (uint8_t)(v[c] << (8 - k->depth - bit % 8));
            }
            uint8_t *e = expect + ((size_t)y * k->w + x) * 3;
            for (int c = 0; c < 3; c++) {
                unsigned s = ch >= 3 ? v[c] : v[0];
                e[c] = k->depth == 16 ? (uint8_t)(s >> 8) : (uint8_t)(s * 255 / maxv);
            }
            if (npal) e[0] = pal[v[0]].red, e[1] = pal[v[0]].green, e[2] = pal[v[0]].blue;
        }
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    int ok = 0;
    if (setjmp(png_jmpbuf(png))) goto done;
    png_set_write_fn(png, out, png_write_mem, png_flush_mem);
    png_set_IHDR(png, info, k->w, k->h, k->depth, k->color,
                 k->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (npal) png_set_PLTE(png, info, pal, npal);
    if (k->trns) {
        png_color_16 tc = {0};
        tc.gray = (png_uint_16)mix(0, 0, 0, maxv);
        tc.red = (png_uint_16)mix(0, 0, 0, maxv), tc.green = (png_uint_16)mix(0, 0, 1, maxv);
        tc.blue = (png_uint_16)mix(0, 0, 2, maxv);
        png_set_tRNS(png, info, npal ? pal_alpha : NULL, npal, npal ? NULL : &tc);
    }
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, info);
    ok = 1;
done:
    png_destroy_write_struct(&png, &info);
    free(rows);
    free(pix);
    return ok;
}

/* Writes a JPEG of w x h pixels with comps components per pixel (in_cs), stored as jpeg_cs. */
static int write_jpeg(const uint8_t *pix, int w, int h, int comps, J_COLOR_SPACE in_cs, J_COLOR_SPACE jpeg_cs,
                      int progressive, int quality, uint8_t **out, unsigned long *outsize) {
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    ci.err = jpeg_std_error(&jerr); /* a writer error would exit: the fixtures are fixed and valid */
    jpeg_create_compress(&ci);
    *out = NULL, *outsize = 0;
    jpeg_mem_dest(&ci, out, outsize);
    ci.image_width = (JDIMENSION)w, ci.image_height = (JDIMENSION)h;
    ci.input_components = comps, ci.in_color_space = in_cs;
    jpeg_set_defaults(&ci);
    jpeg_set_colorspace(&ci, jpeg_cs);
    jpeg_set_quality(&ci, quality, TRUE);
    if (progressive) jpeg_simple_progression(&ci);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(pix + (size_t)ci.next_scanline * w * comps);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    return *outsize > 0;
}

/* A smooth w x h picture with comps channels (JPEG-friendly). */
static uint8_t *smooth(int w, int h, int comps) {
    uint8_t *p = malloc((size_t)w * h * comps);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < comps; c++) {
                int v = c == 0   ? 255 * x / (w - 1)
                        : c == 1 ? 255 * y / (h - 1)
                        : c == 2 ? 255 * (x + y) / (w + h - 2)
                                 : 60 + 100 * x / (w - 1);
                p[((size_t)y * w + x) * comps + c] = (uint8_t)v;
            }
    return p;
}

/* ---- PNG kinds ---- */

static const png_kind png_kinds[] = {
    {"gray1", PNG_COLOR_TYPE_GRAY, 1, 0, 0, 13, 7},
    {"gray2", PNG_COLOR_TYPE_GRAY, 2, 0, 0, 13, 7},
    {"gray4", PNG_COLOR_TYPE_GRAY, 4, 0, 0, 13, 7},
    {"gray8", PNG_COLOR_TYPE_GRAY, 8, 0, 0, 13, 7},
    {"gray16", PNG_COLOR_TYPE_GRAY, 16, 0, 0, 13, 7},
    {"gray8 tRNS", PNG_COLOR_TYPE_GRAY, 8, 0, 1, 13, 7},
    {"gray2 tRNS", PNG_COLOR_TYPE_GRAY, 2, 0, 1, 13, 7},
    {"gray16 tRNS", PNG_COLOR_TYPE_GRAY, 16, 0, 1, 13, 7},
    {"gray+alpha8", PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0, 0, 13, 7},
    {"gray+alpha16", PNG_COLOR_TYPE_GRAY_ALPHA, 16, 0, 0, 13, 7},
    {"rgb8", PNG_COLOR_TYPE_RGB, 8, 0, 0, 13, 7},
    {"rgb16", PNG_COLOR_TYPE_RGB, 16, 0, 0, 13, 7},
    {"rgb8 tRNS", PNG_COLOR_TYPE_RGB, 8, 0, 1, 13, 7},
    {"rgba8", PNG_COLOR_TYPE_RGB_ALPHA, 8, 0, 0, 13, 7},
    {"rgba16", PNG_COLOR_TYPE_RGB_ALPHA, 16, 0, 0, 13, 7},
    {"palette1", PNG_COLOR_TYPE_PALETTE, 1, 0, 0, 13, 7},
    {"palette2", PNG_COLOR_TYPE_PALETTE, 2, 0, 0, 13, 7},
    {"palette4", PNG_COLOR_TYPE_PALETTE, 4, 0, 0, 13, 7},
    {"palette8", PNG_COLOR_TYPE_PALETTE, 8, 0, 0, 13, 7},
    {"palette8 tRNS", PNG_COLOR_TYPE_PALETTE, 8, 0, 1, 13, 7},
    {"palette2 tRNS", PNG_COLOR_TYPE_PALETTE, 2, 0, 1, 13, 7},
    {"interlaced gray1", PNG_COLOR_TYPE_GRAY, 1, 1, 0, 13, 7},
    {"interlaced gray16", PNG_COLOR_TYPE_GRAY, 16, 1, 0, 9, 9},
    {"interlaced gray+alpha8", PNG_COLOR_TYPE_GRAY_ALPHA, 8, 1, 0, 13, 7},
    {"interlaced rgb8", PNG_COLOR_TYPE_RGB, 8, 1, 0, 13, 7},
    {"interlaced rgba16", PNG_COLOR_TYPE_RGB_ALPHA, 16, 1, 0, 17, 11},
    {"interlaced palette4 tRNS", PNG_COLOR_TYPE_PALETTE, 4, 1, 1, 13, 7},
    {"interlaced rgb8 1x1", PNG_COLOR_TYPE_RGB, 8, 1, 0, 1, 1},
    {"interlaced rgb8 3x2", PNG_COLOR_TYPE_RGB, 8, 1, 0, 3, 2},
    {"rgb8 1x1", PNG_COLOR_TYPE_RGB, 8, 0, 0, 1, 1},
    {"gray1 wide", PNG_COLOR_TYPE_GRAY, 1, 0, 0, 301, 2},
};

static void test_png_kinds(void) {
    for (size_t i = 0; i < sizeof png_kinds / sizeof *png_kinds; i++) {
        const png_kind *k = &png_kinds[i];
        membuf b = {0};
        uint8_t *expect = malloc((size_t)k->w * k->h * 3);
        if (!write_png(k, &b, expect)) {
            CHECK_MSG(0, "%s: fixture writer failed", k->what);
            continue;
        }
        lt_err err = {{0}};
        lt_image_info info;
        CHECK_MSG(lt_image_probe(b.p, b.n, NAME, NULL, &info, &err) == LT_OK, "%s: probe: %s", k->what,
                  err.msg);
        CHECK_MSG(info.format == LT_IMAGE_PNG && info.width == k->w && info.height == k->h,
                  "%s: probe %d %dx%d", k->what, info.format, info.width, info.height);
        lt_image img;
        lt_status s = lt_image_decode(b.p, b.n, NAME, NULL, &img, &err);
        CHECK_MSG(s == LT_OK, "%s: %s", k->what, err.msg);
        if (s == LT_OK) {
            CHECK_MSG(img.width == k->w && img.height == k->h, "%s: size %dx%d", k->what, img.width,
                      img.height);
            size_t bad = 0, first = 0;
            for (size_t j = (size_t)k->w * k->h * 3; j-- > 0;)
                if (img.rgb[j] != expect[j]) bad++, first = j;
            CHECK_MSG(bad == 0, "%s: %zu wrong samples, e.g. [%zu] = %d, expected %d", k->what, bad, first,
                      img.rgb[first], expect[first]);
        }
        lt_image_free(&img);
        CHECK(img.rgb == NULL && img.width == 0);
        free(expect);
        free(b.p);
    }
}

/* ---- JPEG kinds ---- */

/* Compares decoded pixels with expect within the codec's loss: max and mean absolute error. */
static void check_lossy(const char *what, const lt_image *img, const uint8_t *expect, int maxerr,
                        double meanerr) {
    size_t n = (size_t)img->width * img->height * 3;
    int worst = 0;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)img->rgb[i] - (int)expect[i]);
        worst = d > worst ? d : worst;
        sum += d;
    }
    CHECK_MSG(worst <= maxerr && sum / (double)n <= meanerr, "%s: max error %d, mean %.2f", what, worst,
              sum / (double)n);
}

static void test_jpeg_kinds(void) {
    const int w = 40, h = 24;
    lt_err err = {{0}};
    uint8_t *rgb = smooth(w, h, 3), *cmyk = smooth(w, h, 4), *gray = smooth(w, h, 1);
    uint8_t *expect = malloc((size_t)w * h * 3);
    struct {
        const char *what;
        const uint8_t *src;
        int comps;
        J_COLOR_SPACE in_cs, jpeg_cs;
        int progressive;
    } kinds[] = {
        {"jpeg gray", gray, 1, JCS_GRAYSCALE, JCS_GRAYSCALE, 0},
        {"jpeg ycbcr", rgb, 3, JCS_RGB, JCS_YCbCr, 0},
        {"jpeg ycbcr progressive", rgb, 3, JCS_RGB, JCS_YCbCr, 1},
        {"jpeg stored rgb", rgb, 3, JCS_RGB, JCS_RGB, 0},
        {"jpeg cmyk", cmyk, 4, JCS_CMYK, JCS_CMYK, 0},
        {"jpeg ycck", cmyk, 4, JCS_CMYK, JCS_YCCK, 1},
    };
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        for (int i = 0; i < w * h; i++) {
            const uint8_t *s = kinds[k].src + (size_t)i * kinds[k].comps;
            for (int c = 0; c < 3; c++) {
                if (kinds[k].comps == 4) /* Adobe-inverted CMYK, as PIL reads it: R = C' * K' / 255 */
                    expect[3 * i + c] = (uint8_t)lround(s[c] * s[3] / 255.0);
                else
                    expect[3 * i + c] = s[kinds[k].comps == 1 ? 0 : c];
            }
        }
        uint8_t *jpg;
        unsigned long n;
        write_jpeg(kinds[k].src, w, h, kinds[k].comps, kinds[k].in_cs, kinds[k].jpeg_cs, kinds[k].progressive,
                   95, &jpg, &n);
        lt_image_info info;
        CHECK_MSG(lt_image_probe(jpg, n, NAME, NULL, &info, &err) == LT_OK, "%s: %s", kinds[k].what, err.msg);
        CHECK(info.format == LT_IMAGE_JPEG && info.width == w && info.height == h);
        lt_image img;
        lt_status s = lt_image_decode(jpg, n, NAME, NULL, &img, &err);
        CHECK_MSG(s == LT_OK, "%s: %s", kinds[k].what, err.msg);
        if (s == LT_OK) {
            CHECK(img.width == w && img.height == h);
            check_lossy(kinds[k].what, &img, expect, 10, 1.5);
            if (kinds[k].comps == 1) {
                int same = 1;
                for (int i = 0; i < w * h; i++)
                    same &= img.rgb[3 * i] == img.rgb[3 * i + 1] && img.rgb[3 * i] == img.rgb[3 * i + 2];
                CHECK_MSG(same, "%s: R, G and B differ", kinds[k].what);
            }
        }
        lt_image_free(&img);
        free(jpg);
    }
    free(expect);
    free(rgb);
    free(cmyk);
    free(gray);
}

/* ---- broken inputs ---- */

/* Decodes data; the result must be LT_OK (with sane pixels) or LT_ERR_FORMAT naming the source. Returns
 * the status. */
static lt_status decode_any(const uint8_t *data, size_t n, const char *what) {
    lt_err err = {{0}};
    lt_image img;
    lt_image_info info;
    lt_status ps = lt_image_probe(data, n, NAME, NULL, &info, &err);
    lt_status s = lt_image_decode(data, n, NAME, NULL, &img, &err);
    CHECK_MSG(s == LT_OK || s == LT_ERR_FORMAT, "%s: status %d", what, s);
    CHECK_MSG(ps == LT_OK || ps == LT_ERR_FORMAT, "%s: probe status %d", what, ps);
    if (s == LT_OK) {
        CHECK_MSG(ps == LT_OK && img.rgb && img.width == info.width && img.height == info.height, "%s", what);
        unsigned sum = 0;
        for (size_t i = 0; i < (size_t)img.width * img.height * 3; i++)
            sum += img.rgb[i]; /* ASan: all readable */
        (void)sum;
    } else {
        CHECK_MSG(strncmp(err.msg, NAME ": ", strlen(NAME) + 2) == 0 && img.rgb == NULL, "%s: message %s",
                  what, err.msg);
    }
    lt_image_free(&img);
    return s;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Byte offset just past the last IDAT chunk (its CRC included). */
static size_t png_idat_end(const uint8_t *p, size_t n) {
    size_t pos = 8, end = 0;
    while (pos + 12 <= n) {
        size_t len = be32(p + pos);
        if (memcmp(p + pos + 4, "IDAT", 4) == 0) end = pos + 12 + len;
        pos += 12 + len;
    }
    return end;
}

static void test_png_broken(void) {
    static const png_kind kinds[] = {{"rgb8", PNG_COLOR_TYPE_RGB, 8, 0, 0, 13, 7},
                                     {"interlaced palette4 tRNS", PNG_COLOR_TYPE_PALETTE, 4, 1, 1, 13, 7},
                                     {"rgba16", PNG_COLOR_TYPE_RGB_ALPHA, 16, 0, 0, 5, 4}};
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        membuf b = {0};
        uint8_t expect[17 * 11 * 3];
        write_png(&kinds[k], &b, expect);
        size_t idat_end = png_idat_end(b.p, b.n);
        CHECK(idat_end > 8 && idat_end < b.n);
        /* every truncation before the end of the pixel data fails; after it (IEND missing) may decode */
        int truncated_ok = 0;
        for (size_t len = 0; len < b.n; len++) {
            uint8_t *cut = malloc(len ? len : 1);
            memcpy(cut, b.p, len);
            lt_status s = decode_any(cut, len, kinds[k].what);
            if (len < idat_end) truncated_ok += s == LT_OK;
            free(cut);
        }
        CHECK_MSG(truncated_ok == 0, "%s: %d truncations before the end of IDAT decoded", kinds[k].what,
                  truncated_ok);
        /* flipped bits and bytes anywhere */
        uint8_t *m = malloc(b.n);
        for (size_t i = 0; i < b.n; i++) {
            static const uint8_t flips[] = {0x01, 0x10, 0x80, 0xff};
            for (size_t f = 0; f < sizeof flips; f++) {
                memcpy(m, b.p, b.n);
                m[i] ^= flips[f];
                decode_any(m, b.n, kinds[k].what);
            }
        }
        free(m);
        free(b.p);
    }
}

/* The offset of the first SOFn marker's height field in a JPEG. */
static size_t jpeg_sof(const uint8_t *p, size_t n) {
    for (size_t i = 2; i + 9 < n; i++)
        if (p[i] == 0xff && (p[i + 1] == 0xc0 || p[i + 1] == 0xc1 || p[i + 1] == 0xc2)) return i + 5;
    return 0;
}

static void test_jpeg_broken(void) {
    const int w = 40, h = 24;
    uint8_t *rgb = smooth(w, h, 3);
    for (int progressive = 0; progressive < 2; progressive++) {
        uint8_t *jpg;
        unsigned long n;
        write_jpeg(rgb, w, h, 3, JCS_RGB, JCS_YCbCr, progressive, 90, &jpg, &n);
        const char *what = progressive ? "progressive jpeg" : "baseline jpeg";
        int truncated_ok = 0;
        for (size_t len = 0; len < n; len++) {
            uint8_t *cut = malloc(len ? len : 1);
            memcpy(cut, jpg, len);
            lt_status s = decode_any(cut, len, what);
            if (len + 2 < n) truncated_ok += s == LT_OK; /* only a missing EOI marker may be forgiven */
            free(cut);
        }
        CHECK_MSG(truncated_ok == 0, "%s: %d truncated files decoded", what, truncated_ok);
        uint8_t *m = malloc(n);
        for (size_t i = 0; i < n; i++) {
            static const uint8_t flips[] = {0x01, 0x80, 0xff};
            for (size_t f = 0; f < sizeof flips; f++) {
                memcpy(m, jpg, n);
                m[i] ^= flips[f];
                decode_any(m, n, what);
            }
        }
        free(m);
        free(jpg);
    }
    free(rgb);
}

static void test_garbage(void) {
    lt_err err = {{0}};
    lt_image img;
    /* wrong magic */
    static const uint8_t gif[] = "GIF89a\x01\x00\x01\x00\x00\x00\x00;";
    CHECK(lt_image_decode(gif, sizeof gif, NAME, NULL, &img, &err) == LT_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, NAME ": not a PNG or JPEG image (starts with bytes 47 49 46 38") != NULL,
              "message: %s", err.msg);
    CHECK(lt_image_detect(gif, sizeof gif) == LT_IMAGE_UNKNOWN);
    CHECK(lt_image_decode(NULL, 0, NAME, NULL, &img, &err) == LT_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "empty") != NULL, "message: %s", err.msg);
    membuf b = {0};
    uint8_t expect[13 * 7 * 3];
    write_png(&png_kinds[10], &b, expect);
    b.p[1] = 'Q'; /* "\x89QNG": not a PNG any more */
    CHECK(lt_image_decode(b.p, b.n, NULL, NULL, &img, &err) == LT_ERR_FORMAT);
    CHECK_MSG(strncmp(err.msg, "image: not a PNG", 16) == 0, "message: %s", err.msg);
    free(b.p);
    /* random bytes behind each magic */
    uint32_t st = 12345;
    uint8_t junk[600];
    for (int rep = 0; rep < 300; rep++) {
        for (size_t i = 0; i < sizeof junk; i++)
            st = st * 1664525u + 1013904223u, junk[i] = (uint8_t)(st >> 24);
        size_t len = 8 + (st >> 8) % (sizeof junk - 8);
        if (rep % 2)
            memcpy(junk, "\x89PNG\r\n\x1a\n", 8);
        else
            memcpy(junk, "\xff\xd8\xff", 3);
        if (rep % 4 == 1)
            memcpy(junk + 8, "\0\0\0\x0dIHDR\0\0\0\x10\0\0\0\x10\x08\x02\0\0\0", 21); /* no CRC */
        if (rep % 4 == 0) memcpy(junk + 3, "\xe0\0\x10JFIF\0", 9);
        decode_any(junk, len, "random bytes");
    }
}

static uint32_t crc32_png(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0xedb88320u : c >> 1;
    }
    return ~c;
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* A PNG of just a header with the given size, an empty IDAT and IEND: valid up to the pixel data. */
static size_t png_header_only(uint8_t *out, uint32_t w, uint32_t h) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(out, sig, 8);
    uint8_t *c = out + 8;
    put_be32(c, 13);
    memcpy(c + 4, "IHDR", 4);
    put_be32(c + 8, w);
    put_be32(c + 12, h);
    memcpy(c + 16, "\x08\x02\x00\x00\x00", 5);
    put_be32(c + 21, crc32_png(c + 4, 17));
    c += 25;
    const char *tail[2] = {"IDAT", "IEND"};
    for (int i = 0; i < 2; i++, c += 12) {
        put_be32(c, 0);
        memcpy(c + 4, tail[i], 4);
        put_be32(c + 8, crc32_png(c + 4, 4));
    }
    return (size_t)(c - out);
}

static void test_limits(void) {
    lt_err err = {{0}};
    lt_image img;
    lt_image_info info;
    uint8_t hdr[64];
    /* a sane header passes the probe (the pixel data is absent, so decoding fails) */
    size_t n = png_header_only(hdr, 640, 480);
    CHECK_MSG(lt_image_probe(hdr, n, NAME, NULL, &info, &err) == LT_OK, "%s", err.msg);
    CHECK(info.width == 640 && info.height == 480);
    CHECK(lt_image_decode(hdr, n, NAME, NULL, &img, &err) == LT_ERR_FORMAT);
    /* huge declared dimensions are refused from the header, before any pixel allocation */
    n = png_header_only(hdr, 100000, 100000);
    CHECK(lt_image_probe(hdr, n, NAME, NULL, &info, &err) == LT_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, NAME ": PNG image is 100000 x 100000 pixels, over the limit of 50000000") !=
                  NULL,
              "message: %s", err.msg);
    CHECK(lt_image_decode(hdr, n, NAME, NULL, &img, &err) == LT_ERR_FORMAT && img.rgb == NULL);
    CHECK_MSG(strstr(err.msg, "over the limit") != NULL, "message: %s", err.msg);
    n = png_header_only(hdr, 0x7fffffff, 0x7fffffff);
    CHECK(lt_image_decode(hdr, n, NAME, NULL, &img, &err) == LT_ERR_FORMAT);
    /* zero size */
    n = png_header_only(hdr, 0, 10);
    CHECK(lt_image_decode(hdr, n, NAME, NULL, &img, &err) == LT_ERR_FORMAT);
    CHECK_MSG(strncmp(err.msg, NAME ": ", strlen(NAME) + 2) == 0, "message: %s", err.msg);

    /* JPEG: patch the frame header's dimensions */
    const int w = 40, h = 24;
    uint8_t *rgb = smooth(w, h, 3), *jpg;
    unsigned long jn;
    write_jpeg(rgb, w, h, 3, JCS_RGB, JCS_YCbCr, 0, 90, &jpg, &jn);
    size_t sof = jpeg_sof(jpg, jn);
    CHECK(sof > 0 && jpg[sof] == 0 && jpg[sof + 1] == h);
    uint8_t *m = malloc(jn);
    memcpy(m, jpg, jn);
    m[sof] = 0xea, m[sof + 1] = 0x60, m[sof + 2] = 0xea, m[sof + 3] = 0x60; /* 60000 x 60000 */
    CHECK(lt_image_probe(m, jn, NAME, NULL, &info, &err) == LT_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "JPEG image is 60000 x 60000 pixels, over the limit") != NULL, "message: %s",
              err.msg);
    CHECK(lt_image_decode(m, jn, NAME, NULL, &img, &err) == LT_ERR_FORMAT);
    memcpy(m, jpg, jn);
    m[sof] = 0, m[sof + 1] = 0; /* height 0 */
    CHECK(lt_image_decode(m, jn, NAME, NULL, &img, &err) == LT_ERR_FORMAT);
    CHECK_MSG(strncmp(err.msg, NAME ": ", strlen(NAME) + 2) == 0, "message: %s", err.msg);
    free(m);

    /* caller limits: exactly at the limit passes, one under fails */
    lt_image_limits lim = {.max_bytes = jn, .max_pixels = (int64_t)w * h};
    CHECK(lt_image_decode(jpg, jn, NAME, &lim, &img, &err) == LT_OK);
    lt_image_free(&img);
    lim.max_pixels--;
    CHECK(lt_image_decode(jpg, jn, NAME, &lim, &img, &err) == LT_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "over the limit of 959 pixels") != NULL, "message: %s", err.msg);
    lim.max_pixels++, lim.max_bytes--;
    CHECK(lt_image_probe(jpg, jn, NAME, &lim, &info, &err) == LT_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "bytes, over the limit of") != NULL, "message: %s", err.msg);
    free(jpg);
    free(rgb);
}

static void test_load_file(void) {
    lt_err err = {{0}};
    lt_image img;
    membuf b = {0};
    uint8_t expect[13 * 7 * 3];
    write_png(&png_kinds[10], &b, expect);
    char path[] = "/tmp/lathe_image_XXXXXX.jpg"; /* a PNG named .jpg: the content decides */
    int fd = mkstemps(path, 4);
    CHECK(fd >= 0);
    if (fd < 0) return;
    CHECK(write(fd, b.p, b.n) == (ssize_t)b.n);
    close(fd);
    CHECK_MSG(lt_image_load(path, NULL, &img, &err) == LT_OK, "%s", err.msg);
    CHECK(img.width == 13 && img.height == 7 && memcmp(img.rgb, expect, sizeof expect) == 0);
    lt_image_free(&img);
    lt_image_limits lim = {.max_bytes = b.n - 1};
    CHECK(lt_image_load(path, &lim, &img, &err) == LT_ERR_FORMAT);
    CHECK_MSG(strncmp(err.msg, path, strlen(path)) == 0, "message: %s", err.msg);
    CHECK(truncate(path, (off_t)b.n / 2) == 0);
    CHECK(lt_image_load(path, NULL, &img, &err) == LT_ERR_FORMAT);
    CHECK_MSG(strncmp(err.msg, path, strlen(path)) == 0 && strstr(err.msg, "corrupt PNG"), "message: %s",
              err.msg);
    unlink(path);
    CHECK(lt_image_load(path, NULL, &img, &err) == LT_ERR_IO);
    CHECK_MSG(strstr(err.msg, path) != NULL, "message: %s", err.msg);
    CHECK(lt_image_load("/tmp", NULL, &img, &err) == LT_ERR_IO);
    free(b.p);
}

/* ---- golden: PIL's decoding and PyTorch's preprocessing ---- */

static void test_decode_matches_pil(golden_file *g) {
    int seen = 0;
    for (int i = 0; i < g->n; i++) {
        golden_tensor *t = &g->t[i];
        if (strncmp(t->name, "decode:", 7) != 0) continue;
        seen++;
        char path[256];
        snprintf(path, sizeof path, "tests/fuzz/corpus_image/%s", t->name + 7);
        lt_err err = {{0}};
        lt_image img;
        if (lt_image_load(path, NULL, &img, &err) != LT_OK) {
            CHECK_MSG(0, "%s", err.msg);
            continue;
        }
        CHECK_MSG(t->ndim == 3 && img.height == t->shape[0] && img.width == t->shape[1], "%s: size", path);
        if (t->ndim != 3 || t->numel != (int64_t)img.width * img.height * 3) continue;
        /* PNG exactly; JPEG within 1 level, in case another libjpeg-turbo rounds differently */
        int jpeg = strstr(path, ".jpg") != NULL, worst = 0;
        for (int64_t j = 0; j < t->numel; j++) {
            int d = abs((int)img.rgb[j] - (int)lrintf(t->data[j]));
            worst = d > worst ? d : worst;
        }
        CHECK_MSG(worst <= (jpeg ? 1 : 0), "%s: differs from PIL by up to %d", path, worst);
        lt_image_free(&img);
    }
    CHECK_MSG(seen >= 13, "only %d decode references", seen);
}

static void test_to_tensor(golden_file *g) {
    golden_tensor *src = golden_get(g, "pre_img"), *mean = golden_get(g, "pre_mean"),
                  *std = golden_get(g, "pre_std");
    if (!src || !mean || !std) {
        CHECK_MSG(0, "golden tensors missing");
        return;
    }
    lt_image img = {(int)src->shape[1], (int)src->shape[0], malloc((size_t)src->numel)};
    for (int64_t i = 0; i < src->numel; i++)
        img.rgb[i] = (uint8_t)src->data[i];
    const char *names[3] = {"pre_up", "pre_down", "pre_mixed"};
    for (int k = 0; k < 3; k++) {
        golden_tensor *want = golden_get(g, names[k]);
        if (!want) continue;
        int oh = (int)want->shape[1], ow = (int)want->shape[2];
        float *dst = malloc(sizeof(float) * 3 * oh * ow);
        CHECK(lt_image_to_tensor(&img, oh, ow, mean->data, std->data, dst) == LT_OK);
        /* bit-exact against torch 1.13; the slack only absorbs another torch's rounding on regeneration */
        CHECK_CLOSE(names[k], dst, want->data, want->numel, 1e-6, 0);
        free(dst);
    }
    /* same size: exactly (v / 255 - mean) / std, CHW */
    float *dst = malloc(sizeof(float) * 3 * img.width * img.height);
    CHECK(lt_image_to_tensor(&img, img.height, img.width, mean->data, std->data, dst) == LT_OK);
    int exact = 1;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < img.height; y++)
            for (int x = 0; x < img.width; x++) {
                float v = (float)img.rgb[(y * img.width + x) * 3 + c] / 255.0f;
                exact &= dst[(c * img.height + y) * img.width + x] == (v - mean->data[c]) / std->data[c];
            }
    CHECK(exact);
    /* bad arguments leave dst alone */
    dst[0] = 42.0f;
    CHECK(lt_image_to_tensor(&img, 0, 5, mean->data, std->data, dst) == LT_ERR_ARG);
    lt_image empty = {0, 0, NULL};
    CHECK(lt_image_to_tensor(&empty, 4, 4, mean->data, std->data, dst) == LT_ERR_ARG);
    CHECK(dst[0] == 42.0f);
    /* a 1x1 image resizes to a constant */
    lt_image one = {1, 1, (uint8_t[3]){10, 128, 250}};
    float m0[3] = {0, 0, 0}, s1[3] = {1, 1, 1};
    CHECK(lt_image_to_tensor(&one, 3, 4, m0, s1, dst) == LT_OK);
    CHECK(dst[0] == 10.0f / 255.0f && dst[11] == 10.0f / 255.0f && dst[12] == 128.0f / 255.0f &&
          dst[35] == 250.0f / 255.0f);
    free(dst);
    lt_image_free(&img);
}

int main(void) {
    test_png_kinds();
    test_jpeg_kinds();
    test_png_broken();
    test_jpeg_broken();
    test_garbage();
    test_limits();
    test_load_file();
    golden_file g;
    if (golden_load(&g, "image_preproc.txt") == 0) {
        test_decode_matches_pil(&g);
        test_to_tensor(&g);
    } else {
        CHECK_MSG(0, "cannot load image_preproc.txt");
    }
    golden_free(&g);
    CHECK(strcmp(lt_image_format_str(LT_IMAGE_JPEG), "JPEG") == 0);
    return check_summary("test_image");
}
