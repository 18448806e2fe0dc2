"""Reference values for tests/test_{segformer_blocks,detr_blocks,drop_path}.c: transformers' SegFormer and DETR
building blocks re-implemented in plain PyTorch from modeling_segformer.py / modeling_detr.py (transformers
itself is not needed).

Inputs and weights are not stored: both sides generate them from lathe's PCG32 generator (rng.c, ported
below) seeded with the FNV-1a hash of the tensor's name, as 16-bit values scale * (k / 32768 - 1) + offset
that float32 holds exactly. Dropout and drop_path masks are reproduced too: the C graph draws them from its
rng in build order (lt_dropout: one uniform per element, kept when u >= p and scaled by float(1 / (1 - p));
lt_drop_path: one per sample, floor(keep + u)), and this script makes the same draws in the same order.
So the file holds only results: outputs and the gradients of inputs and of every weight (names are
transformers' state-dict names under a per-case prefix, plus ".grad"), for a fixed upstream gradient.
The reference runs in float64, except the sine position embedding, which follows transformers' float32 steps.

Run: /usr/bin/python3 tools/golden/blocks.py  (writes tests/golden/blocks.txt)."""
import math

import numpy as np
import torch
import torch.nn.functional as F

from golden_io import write_golden

torch.set_default_dtype(torch.float64)
M64 = (1 << 64) - 1
FLT_MAX = 3.4028234663852886e38  # torch.finfo(torch.float32).max


class Pcg32:
    """lathe's lt_rng (PCG32), bit for bit."""

    def __init__(self, seed, stream):
        self.state = 0
        self.inc = ((stream << 1) | 1) & M64
        self.u32()
        self.state = (self.state + seed) & M64
        self.u32()

    def u32(self):
        old = self.state
        self.state = (old * 6364136223846793005 + self.inc) & M64
        xs = ((((old >> 18) ^ old) >> 27)) & 0xFFFFFFFF
        rot = old >> 59
        return ((xs >> rot) | (xs << ((-rot) & 31))) & 0xFFFFFFFF

    def uniform(self):
        return np.float32((self.u32() >> 8) * (1.0 / 16777216.0))


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for c in s.encode():
        h = ((h ^ c) * 0x100000001B3) & M64
    return h


def gen(name, shape, scale, offset=0.0):
    """The test's fill(): 16-bit values, exact in float32 (scale is a power of two)."""
    r = Pcg32(fnv1a64(name), 7)
    n = int(np.prod(shape))
    v = [offset + scale * ((r.u32() >> 16) / 32768.0 - 1.0) for _ in range(n)]
    return torch.tensor(v).reshape(shape)


def param_value(name, shape):
    """Weights by fan-in (scale 2^-k with 4^k <= fan_in < 4^(k+1)), norm weights and running variances around 1,
    biases and running means small. Same rule as param_fill() in the C tests."""
    if len(shape) == 1:
        around_one = ("norm" in name and name.endswith(".weight")) or name.endswith("running_var")
        return gen(name, shape, 0.25, 1.0 if around_one else 0.0)
    fan_in = int(np.prod(shape[1:]))
    k = 0
    while 4 ** (k + 1) <= fan_in:
        k += 1
    return gen(name, shape, 2.0 ** -k)


class Params(dict):
    """name -> float64 leaf tensor requiring grad."""

    def add(self, name, *shape):
        t = param_value(name, shape).requires_grad_(True)
        self[name] = t
        return t

    def lin(self, x, name):
        return F.linear(x, self[name + ".weight"], self[name + ".bias"])

    def ln(self, x, name, eps):
        return F.layer_norm(x, x.shape[-1:], self[name + ".weight"], self[name + ".bias"], eps)

    def grads(self, out):
        for name, t in self.items():
            if t.requires_grad:
                out[name + ".grad"] = t.grad if t.grad is not None else torch.zeros_like(t)


def dropout_mask(rng, shape, p):
    """lt_dropout's mask: per element in memory order, float(1 / (1 - p)) when u >= p else 0."""
    p32 = np.float32(p)
    keep_scale = float(np.float32(1.0) / (np.float32(1.0) - p32))
    n = int(np.prod(shape))
    return torch.tensor([keep_scale if rng.uniform() >= p32 else 0.0 for _ in range(n)]).reshape(shape)


def drop_path_factors(rng, B, p):
    """lt_drop_path's per-sample factor floor(keep + u) in float32, as transformers' drop_path."""
    keep = np.float32(1.0) - np.float32(p)
    return [float(np.floor(np.float32(keep + rng.uniform()))) for _ in range(B)], float(keep)


def drop_path(x, factors, keep):
    """transformers' drop_path with the random tensor given: x / keep * floor(keep + u)."""
    f = torch.tensor(factors).reshape((-1,) + (1,) * (x.dim() - 1))
    return x / keep * f


def pixel_mask(B, H, W, valid):
    """1 inside the top-left valid[b] = (rows, cols) block of image b, 0 in the padding (same in C)."""
    m = torch.zeros(B, H, W)
    for b, (vh, vw) in enumerate(valid):
        m[b, :vh, :vw] = 1.0
    return m


# ---------------- SegFormer (modeling_segformer.py) ----------------

SEG_EPS = 1e-5  # every SegFormer LayerNorm is nn.LayerNorm(hidden_size): config.layer_norm_eps is never read


def seg_declare_attention(P, pre, C, sr):
    for n in ("query", "key", "value"):
        P.add(pre + ".attention.self.%s.weight" % n, C, C)
        P.add(pre + ".attention.self.%s.bias" % n, C)
    if sr > 1:
        P.add(pre + ".attention.self.sr.weight", C, C, sr, sr)
        P.add(pre + ".attention.self.sr.bias", C)
        P.add(pre + ".attention.self.layer_norm.weight", C)
        P.add(pre + ".attention.self.layer_norm.bias", C)
    P.add(pre + ".attention.output.dense.weight", C, C)
    P.add(pre + ".attention.output.dense.bias", C)


def seg_declare_ffn(P, pre, C, Fh):
    P.add(pre + ".mlp.dense1.weight", Fh, C)
    P.add(pre + ".mlp.dense1.bias", Fh)
    P.add(pre + ".mlp.dwconv.dwconv.weight", Fh, 1, 3, 3)
    P.add(pre + ".mlp.dwconv.dwconv.bias", Fh)
    P.add(pre + ".mlp.dense2.weight", C, Fh)
    P.add(pre + ".mlp.dense2.bias", C)


def seg_attention(P, pre, x, H, W, heads, sr):
    """SegformerEfficientSelfAttention + SegformerSelfOutput (dropouts 0)."""
    B, N, C = x.shape
    D = C // heads
    a = pre + ".attention.self"
    q = P.lin(x, a + ".query")
    m = x
    if sr > 1:
        m = x.permute(0, 2, 1).reshape(B, C, H, W)
        m = F.conv2d(m, P[a + ".sr.weight"], P[a + ".sr.bias"], stride=sr)
        m = m.reshape(B, C, -1).permute(0, 2, 1)
        m = P.ln(m, a + ".layer_norm", SEG_EPS)
    k = P.lin(m, a + ".key")
    v = P.lin(m, a + ".value")

    def heads_of(t):
        return t.view(B, -1, heads, D).permute(0, 2, 1, 3)

    s = heads_of(q) @ heads_of(k).transpose(-1, -2) / math.sqrt(D)
    ctx = (torch.softmax(s, dim=-1) @ heads_of(v)).permute(0, 2, 1, 3).reshape(B, N, C)
    return P.lin(ctx, pre + ".attention.output.dense")


def seg_mix_ffn(P, pre, x, H, W):
    """SegformerMixFFN with SegformerDWConv (dropouts 0)."""
    B, N, _ = x.shape
    h = P.lin(x, pre + ".mlp.dense1")
    Fh = h.shape[-1]
    h = h.transpose(1, 2).reshape(B, Fh, H, W)
    h = F.conv2d(h, P[pre + ".mlp.dwconv.dwconv.weight"], P[pre + ".mlp.dwconv.dwconv.bias"], padding=1, groups=Fh)
    h = F.gelu(h.flatten(2).transpose(1, 2))
    return P.lin(h, pre + ".mlp.dense2")


def seg_layer(P, pre, x, H, W, heads, sr, dp=None):
    """SegformerLayer; dp = (factors1, factors2, keep) in training, None in eval (drop_path is identity)."""
    a = seg_attention(P, pre, P.ln(x, pre + ".layer_norm_1", SEG_EPS), H, W, heads, sr)
    if dp:
        a = drop_path(a, dp[0], dp[2])
    x = a + x
    m = seg_mix_ffn(P, pre, P.ln(x, pre + ".layer_norm_2", SEG_EPS), H, W)
    if dp:
        m = drop_path(m, dp[1], dp[2])
    return m + x


def case_seg_attention(out, pre, B, H, W, C, heads, sr):
    P = Params()
    seg_declare_attention(P, pre, C, sr)
    x = gen(pre + ".hidden", (B, H * W, C), 1.0).requires_grad_(True)
    y = seg_attention(P, pre, x, H, W, heads, sr)
    y.backward(gen(pre + ".dy", y.shape, 1.0))
    out[pre + ".y"] = y
    out[pre + ".hidden.grad"] = x.grad
    P.grads(out)


def case_seg_ffn(out, pre, B, H, W, C, Fh):
    P = Params()
    seg_declare_ffn(P, pre, C, Fh)
    x = gen(pre + ".hidden", (B, H * W, C), 1.0).requires_grad_(True)
    y = seg_mix_ffn(P, pre, x, H, W)
    y.backward(gen(pre + ".dy", y.shape, 1.0))
    out[pre + ".y"] = y
    out[pre + ".hidden.grad"] = x.grad
    P.grads(out)


def case_seg_layer(out, pre, B, H, W, C, heads, sr, Fh, p, seed):
    P = Params()
    P.add(pre + ".layer_norm_1.weight", C)
    P.add(pre + ".layer_norm_1.bias", C)
    seg_declare_attention(P, pre, C, sr)
    P.add(pre + ".layer_norm_2.weight", C)
    P.add(pre + ".layer_norm_2.bias", C)
    seg_declare_ffn(P, pre, C, Fh)
    # small inputs: layer_norm_1's eps (1e-5) then matters at the percent level
    x = gen(pre + ".hidden", (B, H * W, C), 2.0 ** -6).requires_grad_(True)
    rng = Pcg32(seed, 1)
    f1, keep = drop_path_factors(rng, B, p)
    f2, _ = drop_path_factors(rng, B, p)
    print(pre, "drop_path factors", f1, f2)
    y = seg_layer(P, pre, x, H, W, heads, sr, (f1, f2, keep))
    y.backward(gen(pre + ".dy", y.shape, 1.0))
    out[pre + ".factors"] = torch.tensor(f1 + f2)
    out[pre + ".y"] = y
    out[pre + ".hidden.grad"] = x.grad
    P.grads(out)
    with torch.no_grad():
        out[pre + ".y_eval"] = seg_layer(P, pre, x, H, W, heads, sr)


def case_seg_patch(out, pre, B, Cin, Hi, Wi, C, k, stride):
    P = Params()
    P.add(pre + ".proj.weight", C, Cin, k, k)
    P.add(pre + ".proj.bias", C)
    P.add(pre + ".layer_norm.weight", C)
    P.add(pre + ".layer_norm.bias", C)
    x = gen(pre + ".pixels", (B, Cin, Hi, Wi), 2.0 ** -6).requires_grad_(True)  # LayerNorm eps matters
    m = F.conv2d(x, P[pre + ".proj.weight"], P[pre + ".proj.bias"], stride=stride, padding=k // 2)
    y = P.ln(m.flatten(2).transpose(1, 2), pre + ".layer_norm", SEG_EPS)
    y.backward(gen(pre + ".dy", y.shape, 1.0))
    out[pre + ".y"] = y
    out[pre + ".pixels.grad"] = x.grad
    P.grads(out)


def case_seg_head(out, pre, B, sizes, hws, Cd, L, p, seed):
    P = Params()
    for i, c in enumerate(sizes):
        P.add(pre + ".linear_c.%d.proj.weight" % i, Cd, c)
        P.add(pre + ".linear_c.%d.proj.bias" % i, Cd)
    P.add(pre + ".linear_fuse.weight", Cd, Cd * len(sizes), 1, 1)
    P.add(pre + ".batch_norm.weight", Cd)
    P.add(pre + ".batch_norm.bias", Cd)
    rm = param_value(pre + ".batch_norm.running_mean", (Cd,))
    rv = param_value(pre + ".batch_norm.running_var", (Cd,))
    P.add(pre + ".classifier.weight", L, Cd, 1, 1)
    P.add(pre + ".classifier.bias", L)
    feats = [gen(pre + ".feature%d" % i, (B, c, h, w), 1.0).requires_grad_(True) for i, (c, (h, w)) in
             enumerate(zip(sizes, hws))]
    h0, w0 = hws[0]
    ups = []
    for i, f in enumerate(feats):
        h, w = f.shape[2:]
        t = P.lin(f.flatten(2).transpose(1, 2), pre + ".linear_c.%d.proj" % i)  # SegformerMLP
        t = t.permute(0, 2, 1).reshape(B, -1, h, w)
        ups.append(F.interpolate(t, size=(h0, w0), mode="bilinear", align_corners=False))
    y = F.conv2d(torch.cat(ups[::-1], dim=1), P[pre + ".linear_fuse.weight"])
    y = F.batch_norm(y, rm.clone(), rv.clone(), P[pre + ".batch_norm.weight"], P[pre + ".batch_norm.bias"],
                     training=True, momentum=0.1, eps=1e-5)
    y = torch.relu(y) * dropout_mask(Pcg32(seed, 1), y.shape, p)
    y = F.conv2d(y, P[pre + ".classifier.weight"], P[pre + ".classifier.bias"])
    y.backward(gen(pre + ".dy", y.shape, 1.0))
    out[pre + ".y"] = y
    for i, f in enumerate(feats):
        out[pre + ".feature%d.grad" % i] = f.grad
    P.grads(out)


def case_drop_path(out, pre, shape, p, seed):
    x = gen(pre + ".x", shape, 1.0).requires_grad_(True)
    f, keep = drop_path_factors(Pcg32(seed, 1), shape[0], p)
    y = drop_path(x, f, keep)
    y.backward(gen(pre + ".dy", shape, 1.0))
    out[pre + ".factors"] = torch.tensor(f)
    out[pre + ".y"] = y
    out[pre + ".x.grad"] = x.grad
    print(pre, "factors", f)


# ---------------- DETR (modeling_detr.py) ----------------

DETR_EPS = 1e-5  # nn.LayerNorm default


def detr_declare_attention(P, pre, C):
    for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
        P.add(pre + ".%s.weight" % n, C, C)
        P.add(pre + ".%s.bias" % n, C)


def detr_attention(P, pre, hq, pos_q, hkv, pos_k, mask, heads):
    """DetrAttention: positions on queries and keys, not values; q scaled by head_dim^-0.5 after q_proj."""
    B, TQ, C = hq.shape
    D = C // heads
    q = P.lin(hq if pos_q is None else hq + pos_q, pre + ".q_proj") * D ** -0.5
    k = P.lin(hkv if pos_k is None else hkv + pos_k, pre + ".k_proj")
    v = P.lin(hkv, pre + ".v_proj")

    def heads_of(t):
        return t.view(B, -1, heads, D).transpose(1, 2)

    w = heads_of(q) @ heads_of(k).transpose(-1, -2)
    if mask is not None:
        w = w + mask[:, None, None, :]
    o = (torch.softmax(w, dim=-1) @ heads_of(v)).transpose(1, 2).reshape(B, TQ, C)
    return P.lin(o, pre + ".out_proj")


def detr_ffn_declare(P, pre, C, Fh):
    P.add(pre + ".fc1.weight", Fh, C)
    P.add(pre + ".fc1.bias", Fh)
    P.add(pre + ".fc2.weight", C, Fh)
    P.add(pre + ".fc2.bias", C)


def ln_declare(P, name, C):
    P.add(name + ".weight", C)
    P.add(name + ".bias", C)


def drop(x, rng, p):
    return x if rng is None or p == 0 else x * dropout_mask(rng, x.shape, p)


def detr_encoder_layer(P, pre, x, pos, mask, heads, rng, p, p_act):
    """DetrEncoderLayer (post-norm). rng None: eval (dropout off)."""
    h = detr_attention(P, pre + ".self_attn", x, pos, x, pos, mask, heads)
    x = P.ln(x + drop(h, rng, p), pre + ".self_attn_layer_norm", DETR_EPS)
    h = drop(torch.relu(P.lin(x, pre + ".fc1")), rng, p_act)
    h = drop(P.lin(h, pre + ".fc2"), rng, p)
    return P.ln(x + h, pre + ".final_layer_norm", DETR_EPS)


def detr_decoder_layer(P, pre, x, qpos, mem, mpos, mmask, heads, rng, p, p_act):
    """DetrDecoderLayer (post-norm)."""
    h = detr_attention(P, pre + ".self_attn", x, qpos, x, qpos, None, heads)
    x = P.ln(x + drop(h, rng, p), pre + ".self_attn_layer_norm", DETR_EPS)
    h = detr_attention(P, pre + ".encoder_attn", x, qpos, mem, mpos, mmask, heads)
    x = P.ln(x + drop(h, rng, p), pre + ".encoder_attn_layer_norm", DETR_EPS)
    h = drop(torch.relu(P.lin(x, pre + ".fc1")), rng, p_act)
    h = drop(P.lin(h, pre + ".fc2"), rng, p)
    return P.ln(x + h, pre + ".final_layer_norm", DETR_EPS)


def sine_embedding(mask, npf, temperature=10000):
    """DetrSinePositionEmbedding(npf, normalize=True) in float32 as transformers, token layout (B, H*W, 2 npf)."""
    mask = mask.to(torch.float32)
    y = mask.cumsum(1, dtype=torch.float32)
    x = mask.cumsum(2, dtype=torch.float32)
    scale = 2 * math.pi
    y = y / (y[:, -1:, :] + 1e-6) * scale
    x = x / (x[:, :, -1:] + 1e-6) * scale
    dim_t = torch.arange(npf, dtype=torch.int64).float()
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / npf)
    px = x[:, :, :, None] / dim_t
    py = y[:, :, :, None] / dim_t
    px = torch.stack((px[:, :, :, 0::2].sin(), px[:, :, :, 1::2].cos()), dim=4).flatten(3)
    py = torch.stack((py[:, :, :, 0::2].sin(), py[:, :, :, 1::2].cos()), dim=4).flatten(3)
    pos = torch.cat((py, px), dim=3)  # (B, H, W, 2 npf); transformers permutes it to (B, 2 npf, H, W)
    B, H, W, C = pos.shape
    return pos.reshape(B, H * W, C)


def key_mask(pm):
    """transformers' inverted 4-D mask reduced to (B, T): 0 keep, finfo(float32).min drop."""
    return (1.0 - pm.reshape(pm.shape[0], -1).to(torch.float64)) * -FLT_MAX


def case_detr_attention(out, pre, B, TQ, H, W, C, heads, valid):
    P = Params()
    detr_declare_attention(P, pre + ".self_attn", C)
    hq = gen(pre + ".hidden_q", (B, TQ, C), 1.0).requires_grad_(True)
    pq = gen(pre + ".pos_q", (B, TQ, C), 1.0).requires_grad_(True)
    hkv = gen(pre + ".hidden_kv", (B, H * W, C), 1.0).requires_grad_(True)
    pk = gen(pre + ".pos_k", (B, H * W, C), 1.0)
    mask = key_mask(pixel_mask(B, H, W, valid))
    y = detr_attention(P, pre + ".self_attn", hq, pq, hkv, pk, mask, heads)
    y.backward(gen(pre + ".dy", y.shape, 1.0))
    out[pre + ".y"] = y
    out[pre + ".hidden_q.grad"] = hq.grad
    out[pre + ".pos_q.grad"] = pq.grad
    out[pre + ".hidden_kv.grad"] = hkv.grad
    P.grads(out)


def case_detr_encoder(out, pre, B, H, W, C, heads, Fh, valid, p, p_act, seed):
    P = Params()
    detr_declare_attention(P, pre + ".self_attn", C)
    ln_declare(P, pre + ".self_attn_layer_norm", C)
    detr_ffn_declare(P, pre, C, Fh)
    ln_declare(P, pre + ".final_layer_norm", C)
    pm = pixel_mask(B, H, W, valid)
    pos = sine_embedding(pm, C // 2).to(torch.float64)
    mask = key_mask(pm)
    x = gen(pre + ".hidden", (B, H * W, C), 1.0).requires_grad_(True)
    y = detr_encoder_layer(P, pre, x, pos, mask, heads, Pcg32(seed, 1), p, p_act)
    y.backward(gen(pre + ".dy", y.shape, 1.0))
    out[pre + ".y"] = y
    out[pre + ".hidden.grad"] = x.grad
    P.grads(out)
    with torch.no_grad():
        out[pre + ".y_eval"] = detr_encoder_layer(P, pre, x, pos, mask, heads, None, p, p_act)


def case_detr_decoder(out, pre, B, Q, H, W, C, heads, Fh, valid, p, p_act, seed):
    P = Params()
    detr_declare_attention(P, pre + ".self_attn", C)
    ln_declare(P, pre + ".self_attn_layer_norm", C)
    detr_declare_attention(P, pre + ".encoder_attn", C)
    ln_declare(P, pre + ".encoder_attn_layer_norm", C)
    detr_ffn_declare(P, pre, C, Fh)
    ln_declare(P, pre + ".final_layer_norm", C)
    pm = pixel_mask(B, H, W, valid)
    mpos = sine_embedding(pm, C // 2).to(torch.float64)
    mmask = key_mask(pm)
    x = gen(pre + ".hidden", (B, Q, C), 1.0).requires_grad_(True)
    qpos = gen(pre + ".query_pos", (Q, C), 1.0).requires_grad_(True)  # shared by the batch, as the learned one
    mem = gen(pre + ".memory", (B, H * W, C), 1.0).requires_grad_(True)
    y = detr_decoder_layer(P, pre, x, qpos.expand(B, Q, C), mem, mpos, mmask, heads, Pcg32(seed, 1), p, p_act)
    y.backward(gen(pre + ".dy", y.shape, 1.0))
    out[pre + ".y"] = y
    out[pre + ".hidden.grad"] = x.grad
    out[pre + ".query_pos.grad"] = qpos.grad
    out[pre + ".memory.grad"] = mem.grad
    P.grads(out)
    with torch.no_grad():
        out[pre + ".y_eval"] = detr_decoder_layer(P, pre, x, qpos.expand(B, Q, C), mem, mpos, mmask, heads, None,
                                                  p, p_act)


def case_sine(out, pre, B, H, W, npf, valid):
    out[pre + ".pos"] = sine_embedding(pixel_mask(B, H, W, valid), npf)


def case_nearest(out, pre, B, H, W, valid, sizes):
    pm = pixel_mask(B, H, W, valid)
    for h, w in sizes:
        out["%s.%dx%d" % (pre, h, w)] = F.interpolate(pm[None].float(), size=(h, w))[0]


def main():
    out = {}
    # SegFormer: C=16 heads 2 with sr 2 on a 5x7 grid (keys from the 2x3 reduced grid), C=8 with sr 1
    case_seg_attention(out, "sa2", 2, 5, 7, 16, 2, 2)
    case_seg_attention(out, "sa1", 2, 3, 5, 8, 2, 1)
    case_seg_ffn(out, "sf", 2, 3, 5, 8, 32)
    # seed 32 drops sample 0 of the attention branch and sample 1 of the FFN branch
    case_seg_layer(out, "sl", 2, 5, 7, 8, 2, 2, 32, 0.3, 32)
    case_seg_patch(out, "pe", 2, 3, 7, 9, 8, 3, 2)
    case_seg_head(out, "dh", 2, (4, 6, 8, 10), ((6, 7), (3, 4), (2, 2), (1, 1)), 8, 3, 0.1, 11)
    case_drop_path(out, "dp", (6, 3, 4), 0.4, 3)
    # DETR: 6 queries over a 5x7 map with C=16, 4 heads, image 1 padded to 4x5 valid pixels
    case_detr_attention(out, "da", 2, 6, 5, 7, 16, 4, ((5, 7), (4, 5)))
    case_detr_encoder(out, "de", 2, 3, 5, 16, 4, 16, ((3, 5), (2, 4)), 0.1, 0.2, 21)
    case_detr_decoder(out, "dd", 2, 6, 3, 5, 16, 4, 16, ((3, 5), (3, 3)), 0.1, 0.0, 23)
    case_sine(out, "sine", 2, 3, 5, 8, ((3, 5), (2, 3)))
    case_nearest(out, "nearest", 2, 13, 17, ((13, 17), (9, 11)), ((4, 6), (26, 34), (13, 17), (5, 3)))
    write_golden("blocks.txt", out)


if __name__ == "__main__":
    main()
