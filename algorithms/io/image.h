/* image.h - decodes PNG and JPEG into 8-bit RGB, and turns an image into a normalized CHW float tensor.
 *
 * The format comes from the magic bytes, never from the file name. Every decoded image is 8-bit RGB,
 * converted the way PIL's Image.open(f).convert("RGB") does, so a data set that trains in PyTorch gives the
 * same pixels here:
 *   PNG  gray 1/2/4/8-bit  -> replicated into R=G=B (low depths scaled: 1-bit 0/255, 2-bit x85, 4-bit x17)
 *        16-bit samples    -> the high byte (libpng's strip_16). Differs from PIL only for 16-bit gray
 *                             without alpha, which PIL opens as mode "I" and clamps to 255 (saturating
 *                             almost every pixel); the high byte is what such a picture looks like.
 *        alpha (gray+alpha, RGBA, palette or gray/RGB tRNS) -> dropped, not composited, like convert("RGB")
 *        palette           -> looked up; interlaced (Adam7) images are deinterlaced
 *        gamma, ICC profiles, sBIT -> ignored, as PIL does
 *   JPEG grayscale -> R=G=B; YCbCr/RGB -> RGB by libjpeg-turbo (default islow DCT, fancy upsampling, like
 *        PIL); CMYK/YCCK -> inverted ("Adobe" convention, as PIL assumes for every CMYK JPEG) and converted
 *        with PIL's formula R = (255-K) - C*(255-K)/255 (rounded as PIL does); 12-bit JPEGs are rejected.
 *        EXIF orientation is not applied (neither convert("RGB") nor the Hugging Face processors do).
 * Trailing chunks after a PNG's image data are not read (a PNG cut after its pixels decodes, as in PIL); a
 * JPEG whose data ends early is an error (PIL says "image file is truncated"). Other recoverable JPEG
 * data warnings (e.g. extraneous bytes before a marker) are tolerated, as in PIL.
 *
 * Errors never abort: libpng's and libjpeg's fatal errors are caught (setjmp/longjmp) and returned as
 * LT_ERR_FORMAT with a message "<name>: <format>: <what is wrong>", name being a string the caller passes
 * (a file path, "instance 2", ...). Size limits are checked from the header before any pixel memory is
 * allocated. Thread-safe: no shared state; decode different images from different threads freely. */
#ifndef LT_IMAGE_H
#define LT_IMAGE_H

#include "core/status.h"

#include <stddef.h>
#include <stdint.h>

typedef enum { LT_IMAGE_UNKNOWN = 0, LT_IMAGE_PNG, LT_IMAGE_JPEG, LT_IMAGE_FORMAT_COUNT } lt_image_format;

/* A decoded image. Empty ({0}) before decoding and after lt_image_free. */
typedef struct {
    int width, height; /* pixels, both >= 1 once decoded */
    uint8_t *rgb;      /* (height, width, 3) row-major, 8-bit R, G, B; owned, free with lt_image_free */
} lt_image;

/* What a header says, from lt_image_probe. */
typedef struct {
    lt_image_format format;
    int width, height;
} lt_image_info;

#define LT_IMAGE_DEFAULT_MAX_BYTES ((size_t)20 * 1000 * 1000)   /* 20 MB of encoded data */
#define LT_IMAGE_DEFAULT_MAX_PIXELS ((int64_t)50 * 1000 * 1000) /* 50 megapixels */

/* Limits on what a decode may accept. A zero field means its default; pass NULL for all defaults. */
typedef struct {
    size_t max_bytes;   /* largest encoded size accepted */
    int64_t max_pixels; /* largest width * height accepted */
} lt_image_limits;

/* Short name of a format ("PNG", "JPEG", "unknown"). Can't fail. */
const char *lt_image_format_str(lt_image_format f);

/* The format the first bytes announce (PNG signature, or JPEG's FF D8 FF), LT_IMAGE_UNKNOWN otherwise.
 * Can't fail. */
lt_image_format lt_image_detect(const uint8_t *data, size_t size);

/* Reads only the header of an encoded image and fills info: fast, for validating a data set. Applies the
 * same checks as lt_image_decode on the header (format known, non-zero size, limits), but a probe that
 * succeeds does not prove the pixel data is intact. name (may be NULL) names the image in messages.
 * Returns LT_OK, LT_ERR_FORMAT (unknown format, corrupt header, zero size, over a limit) or LT_ERR_NOMEM. */
lt_status lt_image_probe(const uint8_t *data, size_t size, const char *name, const lt_image_limits *limits,
                         lt_image_info *info, lt_err *err);

/* Decodes an encoded PNG or JPEG in memory into img (overwritten; it owns nothing on failure). name (may be
 * NULL) names the image in messages. Returns LT_OK, LT_ERR_FORMAT (corrupt/truncated data, unsupported
 * kind, over a limit), or LT_ERR_NOMEM. */
lt_status lt_image_decode(const uint8_t *data, size_t size, const char *name, const lt_image_limits *limits,
                          lt_image *img, lt_err *err);

/* Reads the file at path (checking its size against limits->max_bytes first) and decodes it; messages name
 * the path. Returns what lt_image_decode returns, or LT_ERR_IO when the file can't be read. */
lt_status lt_image_load(const char *path, const lt_image_limits *limits, lt_image *img, lt_err *err);

/* Frees img's pixels and empties it. NULL and empty images are fine. */
void lt_image_free(lt_image *img);

/* The preprocessing every task uses: dst = (resize(img / 255) - mean) / std, in CHW order.
 * The resize is bilinear and matches PyTorch's F.interpolate(x, size=(out_h, out_w), mode="bilinear",
 * align_corners=False, antialias=False) on the float image x = img / 255 (converted to float before
 * resizing) as a contiguous CHW tensor: bit for bit against torch 1.13's CPU kernel. (A channels-last tensor
 * takes another torch kernel that rounds differently, within a few ulps.) Note: Hugging Face image
 * processors resize the uint8 image with PIL's resampling instead (antialiased when shrinking, rounded to
 * uint8), so their tensors differ slightly from these, mostly on downscales; training and serving here both
 * use this function, so they agree with each other.
 * mean/std: per channel R, G, B (e.g. ImageNet's 0.485 0.456 0.406 / 0.229 0.224 0.225); std must be
 * non-zero. Single-threaded: parallelize across images. Returns LT_ERR_ARG for an empty image or a
 * non-positive output size (dst untouched), LT_OK otherwise. */
lt_status lt_image_to_tensor(const lt_image *img, int out_h, int out_w, const float mean[3],
                             const float std[3], float *dst /* (3, out_h, out_w) */);

#endif
