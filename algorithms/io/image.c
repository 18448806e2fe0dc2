/* image.c - PNG (libpng) and JPEG (libjpeg-turbo) decoding to 8-bit RGB, and the resize/normalize step.
 *
 * Both libraries report fatal errors through a callback that must not return; ours longjmp back into the
 * function that called setjmp. To keep that well-defined, each decoder keeps every value it changes after
 * setjmp in a context struct owned by its caller (png_run/jpg_run get a pointer to it), never in a local
 * of the function that holds the setjmp. */
#define _POSIX_C_SOURCE 200809L
#include "image.h"

#include <png.h>
#include <errno.h>
#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <jpeglib.h>
#include <jerror.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Progressive JPEGs can hold any number of scans, each one a pass over the whole image; a crafted file can
 * make decoding take minutes. Real encoders write about 10. (libjpeg-turbo's own advice, as in djpeg
 * -maxscans.) */
#define JPG_MAX_SCANS 1000

static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

const char *lt_image_format_str(lt_image_format f) {
    switch (f) {
    case LT_IMAGE_PNG:
        return "PNG";
    case LT_IMAGE_JPEG:
        return "JPEG";
    case LT_IMAGE_UNKNOWN:
    case LT_IMAGE_FORMAT_COUNT:
        break;
    }
    return "unknown";
}

lt_image_format lt_image_detect(const uint8_t *data, size_t size) {
    if (size >= 8 && memcmp(data, png_magic, 8) == 0) return LT_IMAGE_PNG;
    if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) return LT_IMAGE_JPEG;
    return LT_IMAGE_UNKNOWN;
}

void lt_image_free(lt_image *img) {
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
    img->width = img->height = 0;
}

/* ---- limits, shared by both formats ---- */

typedef struct {
    const char *name; /* for messages, never NULL */
    size_t max_bytes; /* resolved limits (defaults filled in) */
    int64_t max_pixels;
} img_job;

static img_job img_job_make(const char *name, const lt_image_limits *limits) {
    img_job j = {name && *name ? name : "image", LT_IMAGE_DEFAULT_MAX_BYTES, LT_IMAGE_DEFAULT_MAX_PIXELS};
    if (limits && limits->max_bytes > 0) j.max_bytes = limits->max_bytes;
    if (limits && limits->max_pixels > 0) j.max_pixels = limits->max_pixels;
    return j;
}

/* Checks header dimensions; on success *rgb_bytes is the size of the (h, w, 3) pixel buffer. */
static lt_status img_check_dims(const img_job *j, const char *fmt, long long w, long long h,
                                size_t *rgb_bytes, lt_err *err) {
    long long pixels = 0, bytes = 0;
    if (w <= 0 || h <= 0)
        return lt_errorf(err, LT_ERR_FORMAT, "%s: %s image has zero size (%lld x %lld)", j->name, fmt, w, h);
    if (w > INT32_MAX || h > INT32_MAX || !lt_mul_ok(w, h, &pixels) || pixels > j->max_pixels)
        return lt_errorf(err, LT_ERR_FORMAT,
                         "%s: %s image is %lld x %lld pixels, over the limit of %lld pixels", j->name, fmt, w,
                         h, (long long)j->max_pixels);
    if (!lt_mul_ok(pixels, 3, &bytes) || (unsigned long long)bytes > SIZE_MAX)
        return lt_errorf(err, LT_ERR_NOMEM, "%s: %lld x %lld pixels do not fit in memory", j->name, w, h);
    *rgb_bytes = (size_t)bytes;
    return LT_OK;
}

/* ---- PNG ---- */

typedef struct {
    jmp_buf jmp;
    const img_job *job;
    const uint8_t *data; /* (size) the encoded file */
    size_t size, pos;    /* bytes at data, bytes consumed by libpng */
    png_structp png;
    png_infop info;
    uint8_t *rgb;    /* (height, width, 3) result, owned until handed to the caller */
    png_bytep *rows; /* (height) pointers into rgb, for png_read_image */
    char msg[256];   /* libpng's error message, copied before the longjmp */
} png_ctx;

static void png_on_error(png_structp png, png_const_charp msg) {
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    longjmp(c->jmp, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    /* Warnings (bad ancillary chunk CRCs, unknown chunks, ...) don't stop PIL either. */
}

static void png_read_mem(png_structp png, png_bytep out, size_t n) {
    png_ctx *c = png_get_io_ptr(png);
    if (n > c->size - c->pos) png_error(png, "data ends early (truncated file)");
    memcpy(out, c->data + c->pos, n);
    c->pos += n;
}

/* Reads the header (and, unless probe, the pixels) of c->data. On LT_OK, c->rgb holds the pixels (decode)
 * and *w, *h the size. Frees libpng's state before returning either way; c->rgb/c->rows are freed by the
 * caller. */
static lt_status png_run(png_ctx *c, int probe, int *w, int *h, lt_err *err) {
    c->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, png_on_error, png_on_warning);
    if (!c->png)
        return lt_errorf(err, LT_ERR_NOMEM, "%s: out of memory starting the PNG decoder", c->job->name);
    c->info = png_create_info_struct(c->png);
    if (!c->info) {
        png_destroy_read_struct(&c->png, NULL, NULL);
        return lt_errorf(err, LT_ERR_NOMEM, "%s: out of memory starting the PNG decoder", c->job->name);
    }
    if (setjmp(c->jmp)) {
        png_destroy_read_struct(&c->png, &c->info, NULL);
        return lt_errorf(err, LT_ERR_FORMAT, "%s: corrupt PNG: %s", c->job->name, c->msg);
    }
    png_set_read_fn(c->png, c, png_read_mem);
    png_read_info(c->png, c->info);

    png_uint_32 pw, ph;
    int depth, color, interlace;
    png_get_IHDR(c->png, c->info, &pw, &ph, &depth, &color, &interlace, NULL, NULL);
    size_t bytes;
    lt_status s = img_check_dims(c->job, "PNG", pw, ph, &bytes, err);
    if (s != LT_OK || probe) {
        png_destroy_read_struct(&c->png, &c->info, NULL);
        *w = (int)pw, *h = (int)ph;
        return s;
    }

    /* Everything to 8-bit RGB; the order of these calls doesn't matter, libpng applies them in its own. */
    if (depth == 16) png_set_strip_16(c->png);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(c->png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(c->png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(c->png);
    png_set_strip_alpha(c->png);
    png_set_interlace_handling(c->png);
    png_read_update_info(c->png, c->info);
    if (png_get_channels(c->png, c->info) != 3 || png_get_bit_depth(c->png, c->info) != 8 ||
        png_get_rowbytes(c->png, c->info) != (size_t)pw * 3)
        png_error(c->png, "unsupported pixel layout after conversion to RGB");

    c->rgb = malloc(bytes);
    c->rows = malloc((size_t)ph * sizeof *c->rows);
    if (!c->rgb || !c->rows) {
        png_destroy_read_struct(&c->png, &c->info, NULL);
        return lt_errorf(err, LT_ERR_NOMEM, "%s: out of memory for %u x %u PNG pixels", c->job->name, pw, ph);
    }
    for (png_uint_32 y = 0; y < ph; y++)
        c->rows[y] = c->rgb + (size_t)y * pw * 3;
    png_read_image(c->png, c->rows);
    /* No png_read_end: chunks after the image data don't change the pixels, and PIL doesn't insist on them.
     */
    png_destroy_read_struct(&c->png, &c->info, NULL);
    *w = (int)pw, *h = (int)ph;
    return LT_OK;
}

/* ---- JPEG ---- */

typedef struct {
    struct jpeg_error_mgr pub; /* first, so libjpeg's cinfo->err points at the whole struct */
    jmp_buf jmp;
    char msg[JMSG_LENGTH_MAX + 64]; /* the fatal message, formatted before the longjmp */
} jpg_err_mgr;

typedef struct {
    struct jpeg_decompress_struct cinfo;
    jpg_err_mgr err;
    struct jpeg_progress_mgr progress;
    const img_job *job;
    uint8_t *rgb; /* (height, width, 3) result, owned until handed to the caller */
    uint8_t *row; /* (width * 4) one CMYK scanline, for the conversion */
} jpg_ctx;

static void jpg_error_exit(j_common_ptr cinfo) {
    jpg_err_mgr *e = (jpg_err_mgr *)cinfo->err;
    cinfo->err->format_message(cinfo, e->msg);
    longjmp(e->jmp, 1);
}

/* libjpeg reports recoverable problems as warnings (level -1) and goes on. Running out of data is one of
 * them (libjpeg then invents an EOI marker and fills the rest of the image with gray): make that fatal, as
 * PIL does. Other warnings (extraneous bytes, a bad Huffman code) are tolerated, as in PIL. */
static void jpg_emit_message(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        jpg_err_mgr *e = (jpg_err_mgr *)cinfo->err;
        snprintf(e->msg, sizeof e->msg, "data ends early (truncated file)");
        longjmp(e->jmp, 1);
    }
    if (level < 0) cinfo->err->num_warnings++;
}

static void jpg_output_message(j_common_ptr cinfo) {
    /* libjpeg's default prints to stderr; errors reach the caller through lt_err instead. */
}

static void jpg_progress(j_common_ptr cinfo) {
    if (!cinfo->is_decompressor || ((j_decompress_ptr)cinfo)->input_scan_number <= JPG_MAX_SCANS) return;
    jpg_err_mgr *e = (jpg_err_mgr *)cinfo->err;
    snprintf(e->msg, sizeof e->msg, "more than %d progressive scans", JPG_MAX_SCANS);
    longjmp(e->jmp, 1);
}

/* PIL's CMYK -> RGB (Convert.c cmyk2rgb) on Adobe-inverted samples v: C = 255 - v[0], ..., and
 * R = (255 - K) - C * (255 - K) / 255 with PIL's rounding. */
static uint8_t jpg_cmyk_channel(int v, int vk) {
    int c = 255 - v, nk = vk, t = c * nk + 128;
    return (uint8_t)(nk - (((t >> 8) + t) >> 8));
}

static lt_status jpg_run(jpg_ctx *c, const uint8_t *data, size_t size, int probe, int *w, int *h,
                         lt_err *err) {
    c->cinfo.err = jpeg_std_error(&c->err.pub);
    c->err.pub.error_exit = jpg_error_exit;
    c->err.pub.emit_message = jpg_emit_message;
    c->err.pub.output_message = jpg_output_message;
    if (setjmp(c->err.jmp)) {
        jpeg_destroy_decompress(&c->cinfo);
        return lt_errorf(err, LT_ERR_FORMAT, "%s: corrupt JPEG: %s", c->job->name, c->err.msg);
    }
    jpeg_create_decompress(&c->cinfo);
    c->progress.progress_monitor = jpg_progress;
    c->cinfo.progress = &c->progress;
    jpeg_mem_src(&c->cinfo, data, (unsigned long)size);
    jpeg_read_header(&c->cinfo, TRUE);

    size_t bytes;
    lt_status s = img_check_dims(c->job, "JPEG", c->cinfo.image_width, c->cinfo.image_height, &bytes, err);
    *w = (int)c->cinfo.image_width, *h = (int)c->cinfo.image_height;
    if (s != LT_OK || probe) {
        jpeg_destroy_decompress(&c->cinfo);
        return s;
    }
    int cmyk = 0;
    switch (c->cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
    case JCS_YCbCr:
    case JCS_RGB:
        c->cinfo.out_color_space = JCS_RGB;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        c->cinfo.out_color_space = JCS_CMYK, cmyk = 1;
        break;
    default:
        jpeg_destroy_decompress(&c->cinfo);
        return lt_errorf(err, LT_ERR_FORMAT, "%s: unsupported JPEG color space (%d components)", c->job->name,
                         c->cinfo.num_components);
    }
    jpeg_start_decompress(&c->cinfo);
    if (c->cinfo.output_components != (cmyk ? 4 : 3) || c->cinfo.output_width != (JDIMENSION)*w ||
        c->cinfo.output_height != (JDIMENSION)*h) {
        jpeg_destroy_decompress(&c->cinfo);
        return lt_errorf(err, LT_ERR_FORMAT, "%s: unexpected JPEG output layout", c->job->name);
    }
    c->rgb = malloc(bytes);
    c->row = cmyk ? malloc((size_t)*w * 4) : NULL;
    if (!c->rgb || (cmyk && !c->row)) {
        jpeg_destroy_decompress(&c->cinfo);
        return lt_errorf(err, LT_ERR_NOMEM, "%s: out of memory for %d x %d JPEG pixels", c->job->name, *w,
                         *h);
    }
    while (c->cinfo.output_scanline < c->cinfo.output_height) {
        uint8_t *out = c->rgb + (size_t)c->cinfo.output_scanline * (size_t)*w * 3; /* (w, 3) */
        JSAMPROW row = cmyk ? c->row : out;
        if (jpeg_read_scanlines(&c->cinfo, &row, 1) != 1) break; /* can't happen with an in-memory source */
        if (cmyk)
            for (int x = 0; x < *w; x++)
                for (int ch = 0; ch < 3; ch++)
                    out[3 * x + ch] = jpg_cmyk_channel(c->row[4 * x + ch], c->row[4 * x + 3]);
    }
    int complete = c->cinfo.output_scanline == c->cinfo.output_height;
    /* No jpeg_finish_decompress: what follows the last scanline (EOI) doesn't change the pixels. */
    jpeg_destroy_decompress(&c->cinfo);
    if (!complete)
        return lt_errorf(err, LT_ERR_FORMAT, "%s: corrupt JPEG: decoding stopped early", c->job->name);
    return LT_OK;
}

/* ---- dispatch ---- */

/* Decodes (probe == 0) or probes one image; on LT_OK with decode, *rgb receives the pixels. */
static lt_status img_run(const uint8_t *data, size_t size, const img_job *j, int probe, lt_image_format *fmt,
                         int *w, int *h, uint8_t **rgb, lt_err *err) {
    if (!data && size > 0) return lt_errorf(err, LT_ERR_ARG, "%s: NULL data", j->name);
    if (size > j->max_bytes)
        return lt_errorf(err, LT_ERR_FORMAT, "%s: %zu bytes, over the limit of %zu bytes", j->name, size,
                         j->max_bytes);
    *fmt = lt_image_detect(data, size);
    lt_status s;
    if (*fmt == LT_IMAGE_PNG) {
        png_ctx c = {.job = j, .data = data, .size = size};
        s = png_run(&c, probe, w, h, err);
        free(c.rows);
        if (s == LT_OK && !probe) *rgb = c.rgb, c.rgb = NULL;
        free(c.rgb);
    } else if (*fmt == LT_IMAGE_JPEG) {
        jpg_ctx *c =
            calloc(1, sizeof *c); /* libjpeg's structs are a few KB: keep them off small thread stacks */
        if (!c) return lt_errorf(err, LT_ERR_NOMEM, "%s: out of memory starting the JPEG decoder", j->name);
        c->job = j;
        s = jpg_run(c, data, size, probe, w, h, err);
        free(c->row);
        if (s == LT_OK && !probe) *rgb = c->rgb, c->rgb = NULL;
        free(c->rgb);
        free(c);
    } else {
        uint8_t head[4] = {0};
        if (size > 0) memcpy(head, data, size < 4 ? size : 4);
        s = size == 0
                ? lt_errorf(err, LT_ERR_FORMAT, "%s: empty file, not an image", j->name)
                : lt_errorf(err, LT_ERR_FORMAT,
                            "%s: not a PNG or JPEG image (starts with bytes %02x %02x %02x %02x; the format "
                            "is read from the content, not the file name)",
                            j->name, head[0], head[1], head[2], head[3]);
    }
    return s;
}

lt_status lt_image_probe(const uint8_t *data, size_t size, const char *name, const lt_image_limits *limits,
                         lt_image_info *info, lt_err *err) {
    img_job j = img_job_make(name, limits);
    lt_image_info r = {LT_IMAGE_UNKNOWN, 0, 0};
    lt_status s = img_run(data, size, &j, 1, &r.format, &r.width, &r.height, NULL, err);
    *info = s == LT_OK ? r : (lt_image_info){LT_IMAGE_UNKNOWN, 0, 0};
    return s;
}

lt_status lt_image_decode(const uint8_t *data, size_t size, const char *name, const lt_image_limits *limits,
                          lt_image *img, lt_err *err) {
    img_job j = img_job_make(name, limits);
    lt_image_format fmt;
    lt_image r = {0, 0, NULL};
    lt_status s = img_run(data, size, &j, 0, &fmt, &r.width, &r.height, &r.rgb, err);
    *img = s == LT_OK ? r : (lt_image){0, 0, NULL};
    return s;
}

lt_status lt_image_load(const char *path, const lt_image_limits *limits, lt_image *img, lt_err *err) {
    img_job j = img_job_make(path, limits);
    *img = (lt_image){0, 0, NULL};
    FILE *f = fopen(path, "rb");
    if (!f) return lt_errorf(err, LT_ERR_IO, "%s: cannot open: %s", j.name, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return lt_errorf(err, LT_ERR_IO, "%s: not a regular file", j.name);
    }
    if ((unsigned long long)st.st_size > j.max_bytes) {
        fclose(f);
        return lt_errorf(err, LT_ERR_FORMAT, "%s: %lld bytes, over the limit of %zu bytes", j.name,
                         (long long)st.st_size, j.max_bytes);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return lt_errorf(err, LT_ERR_NOMEM, "%s: out of memory reading %zu bytes", j.name, n);
    }
    size_t got = fread(buf, 1, n, f);
    int bad = ferror(f);
    fclose(f);
    lt_status s = got != n || bad
                      ? lt_errorf(err, LT_ERR_IO, "%s: read failed (%zu of %zu bytes)", j.name, got, n)
                      : lt_image_decode(buf, n, path, limits, img, err);
    free(buf);
    return s;
}

/* ---- resize + normalize ---- */

/* Source index and weights of output coordinate i along one axis, exactly as PyTorch's CPU
 * upsample_bilinear2d (align_corners=False) computes them: src = scale * (i + 0.5) - 0.5 in double with scale
 * = float(in) / out in float, clamped at 0; lambda1 = float(src - i0), lambda0 = 1 - lambda1 in float; the
 * second tap is the next pixel except at the last one. Equal sizes copy exactly. (Checked bit for bit against
 * torch 1.13.) */
static void lin_taps(int64_t i, int64_t in, int64_t out, float scale, int64_t *i0, int64_t *i1, float *l0,
                     float *l1) {
    if (in == out) {
        *i0 = *i1 = i, *l0 = 1.0f, *l1 = 0.0f;
        return;
    }
    double src = (double)scale * ((double)i + 0.5) - 0.5;
    if (src < 0.0) src = 0.0;
    *i0 = (int64_t)src;
    *i1 = *i0 + (*i0 < in - 1 ? 1 : 0);
    double lam = src - (double)*i0;
    *l1 = (float)(lam < 0.0 ? 0.0 : lam > 1.0 ? 1.0 : lam);
    *l0 = 1.0f - *l1;
}

lt_status lt_image_to_tensor(const lt_image *img, int out_h, int out_w, const float mean[3],
                             const float std[3], float *dst /* (3, out_h, out_w) */) {
    if (!img || !img->rgb || img->width <= 0 || img->height <= 0 || out_h <= 0 || out_w <= 0)
        return LT_ERR_ARG;
    int64_t ih = img->height, iw = img->width, oh = out_h, ow = out_w;
    /* PyTorch's scale for an explicit output size: float(in) / out, computed in float. */
    float sh = (float)ih / (float)oh, sw = (float)iw / (float)ow;
    float unit[256]; /* v / 255 in float, exactly what uint8_tensor.float() / 255 gives */
    for (int v = 0; v < 256; v++)
        unit[v] = (float)v / 255.0f;
    const uint8_t *px = img->rgb; /* (ih, iw, 3) */
    int64_t plane = oh * ow;
    for (int64_t y = 0; y < oh; y++) {
        int64_t y0, y1, x0, x1;
        float h0, h1, w0, w1;
        lin_taps(y, ih, oh, sh, &y0, &y1, &h0, &h1);
        const uint8_t *r0 = px + y0 * iw * 3, *r1 = px + y1 * iw * 3; /* (iw, 3) */
        for (int64_t x = 0; x < ow; x++) {
            lin_taps(x, iw, ow, sw, &x0, &x1, &w0, &w1);
            for (int c = 0; c < 3; c++) {
                /* PyTorch's CPU kernel (contiguous NCHW) blends along W within each row, then the two rows,
                 * each as a * w0 + b * w1, which its build fuses into fma(a, w0, b * w1): spelled out here so
                 * the result is the same bit for bit whatever this compiler contracts. */
                float t0 = fmaf(unit[r0[3 * x0 + c]], w0, unit[r0[3 * x1 + c]] * w1);
                float t1 = fmaf(unit[r1[3 * x0 + c]], w0, unit[r1[3 * x1 + c]] * w1);
                float v = fmaf(t0, h0, t1 * h1);
                dst[c * plane + y * ow + x] = (v - mean[c]) / std[c];
            }
        }
    }
    return LT_OK;
}
