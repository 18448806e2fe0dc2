"""Reference values for algorithms/io/image.c, checked by tests/test_image.c.

1. Preprocessing: lt_image_to_tensor must match F.interpolate(x / 255, bilinear, align_corners=False,
   antialias=False) followed by (x - mean) / std, for an upscale, a downscale and a mixed resize.
2. Decoding: writes small images with PIL (an encoder independent of the libpng/libjpeg writers the C test
   uses) into tests/fuzz/corpus_image/ (they double as the fuzzer's seed corpus) and records what
   PIL's Image.open(f).convert("RGB") gives for each, which lt_image_decode must reproduce.

Run with Debian's python3 (torch 1.13, PIL 9.4): /usr/bin/python3 tools/golden/image_preproc.py
Writes tests/golden/image_preproc.txt and the corpus files."""
import io
import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from golden_io import write_golden

CORPUS = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fuzz", "corpus_image")
MEAN = torch.tensor([0.485, 0.456, 0.406])
STD = torch.tensor([0.229, 0.224, 0.225])


def preprocess(img_hwc_u8, size):
    # .contiguous(): a permuted (channels-last) tensor takes PyTorch's channels-last kernel, which sums the four
    # taps in another order; torchvision's to_tensor/read_image give contiguous CHW tensors like this one.
    x = torch.from_numpy(img_hwc_u8).permute(2, 0, 1).contiguous().float() / 255
    y = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=False)[0]
    return (y - MEAN[:, None, None]) / STD[:, None, None]


def pattern(h, w, channels, seed):
    """Smooth gradients plus a little noise: realistic for JPEG, varied enough to catch channel mix-ups."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    planes = []
    for c in range(channels):
        base = (xx * (37 + 11 * c) + yy * (23 + 29 * c) + 40 * c) % 256
        planes.append(np.clip(base + rng.randint(-6, 7, size=(h, w)), 0, 255))
    return np.stack(planes, axis=-1).astype(np.uint8)


def corpus_images():
    """name -> (PIL image, save kwargs, expected RGB override or None)."""
    h, w = 7, 11
    rgb = pattern(h, w, 3, 1)
    rgba = pattern(h, w, 4, 2)
    gray = pattern(h, w, 1, 3)[..., 0]
    gray16 = (gray.astype(np.uint16) * 257 + np.arange(w, dtype=np.uint16)[None, :] * 3)
    pal = Image.fromarray(rgb).quantize(colors=16)
    pal_trns = Image.fromarray(rgb).quantize(colors=40)
    out = {
        "gray1.png": (Image.fromarray(gray > 128), {}, None),
        "gray8.png": (Image.fromarray(gray, "L"), {}, None),
        # PIL opens 16-bit gray as mode "I" and clamps to 255 on convert("RGB"); lt_image keeps the high byte.
        "gray16.png": (Image.fromarray(gray16, "I;16"), {}, np.repeat((gray16 >> 8).astype(np.uint8)[..., None], 3, -1)),
        "gray_alpha.png": (Image.fromarray(np.stack([gray, rgba[..., 3]], -1), "LA"), {}, None),
        "gray_trns.png": (Image.fromarray(gray, "L"), {"transparency": int(gray[0, 0])}, None),
        "rgb.png": (Image.fromarray(rgb, "RGB"), {}, None),
        "rgba.png": (Image.fromarray(rgba, "RGBA"), {}, None),
        "palette4.png": (pal, {"bits": 4}, None),
        "palette_trns.png": (pal_trns, {"transparency": bytes(range(0, 240, 6))}, None),
        "gray.jpg": (Image.fromarray(gray, "L"), {"quality": 90}, None),
        "rgb420.jpg": (Image.fromarray(rgb, "RGB"), {"quality": 90}, None),
        "rgb444_progressive.jpg": (Image.fromarray(rgb, "RGB"), {"quality": 85, "subsampling": 0, "progressive": True}, None),
        "cmyk.jpg": (Image.fromarray(rgba, "CMYK"), {"quality": 95}, None),
    }
    return out


def main():
    torch.manual_seed(0)
    img = torch.randint(0, 256, (13, 17, 3), dtype=torch.uint8).numpy()
    tensors = {
        "pre_img": torch.from_numpy(img),
        "pre_mean": MEAN,
        "pre_std": STD,
        "pre_up": preprocess(img, (24, 31)),
        "pre_down": preprocess(img, (5, 7)),
        "pre_mixed": preprocess(img, (20, 9)),
    }
    os.makedirs(CORPUS, exist_ok=True)
    for name, (im, kwargs, override) in corpus_images().items():
        buf = io.BytesIO()
        im.save(buf, "PNG" if name.endswith(".png") else "JPEG", **kwargs)
        with open(os.path.join(CORPUS, name), "wb") as f:
            f.write(buf.getvalue())
        got = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        want = override if override is not None else got
        tensors["decode:" + name] = torch.from_numpy(np.array(want, dtype=np.uint8))
    write_golden("image_preproc.txt", tensors)


if __name__ == "__main__":
    main()
