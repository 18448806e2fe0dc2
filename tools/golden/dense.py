"""Reference values for tests/test_{linear,attention,resize,shape}.c: nn.Linear, batched matmul with every
transpose combination, per-head scaled dot-product attention, nn.MultiheadAttention(batch_first=True),
bilinear interpolate (forward and backward), permute.

Run: /usr/bin/python3 tools/golden/dense.py  (writes tests/golden/dense.txt). Inputs are stored next to
the outputs, so the C tests copy them into their graph inputs."""
import math

import torch
import torch.nn.functional as F

from golden_io import write_golden

torch.manual_seed(0)
out = {}


def linear_cases():
    x = torch.randn(2, 3, 5)
    w = torch.randn(4, 5)
    b = torch.randn(4)
    out.update(lin1_x=x, lin1_w=w, lin1_b=b, lin1_y=F.linear(x, w, b))
    x = torch.randn(7, 6)
    w = torch.randn(3, 6)
    out.update(lin2_x=x, lin2_w=w, lin2_y=F.linear(x, w))


def matmul_cases():
    # batched (2, 3) with every transpose combination, and one plain 2-D product
    M, K, N = 4, 5, 3
    for ta in (0, 1):
        for tb in (0, 1):
            a = torch.randn(2, 3, *((K, M) if ta else (M, K)))
            b = torch.randn(2, 3, *((N, K) if tb else (K, N)))
            y = (a.transpose(-1, -2) if ta else a) @ (b.transpose(-1, -2) if tb else b)
            p = "mm%d%d_" % (ta, tb)
            out.update({p + "a": a, p + "b": b, p + "y": y})
    a = torch.randn(6, 9)
    b = torch.randn(9, 7)
    out.update(mm2d_a=a, mm2d_b=b, mm2d_y=a @ b)


def attention_ref(q, k, v, mask, heads):
    """softmax(q_h k_h^T / sqrt(D) + mask) v_h per head, from plain torch ops."""
    B, TQ, C = q.shape
    TK = k.shape[1]
    D = C // heads
    qh = q.reshape(B, TQ, heads, D).transpose(1, 2)
    kh = k.reshape(B, TK, heads, D).transpose(1, 2)
    vh = v.reshape(B, TK, heads, D).transpose(1, 2)
    s = qh @ kh.transpose(-1, -2) / math.sqrt(D)
    if mask is not None:
        s = s + mask[:, None, None, :]
    return (torch.softmax(s, dim=-1) @ vh).transpose(1, 2).reshape(B, TQ, C)


def attention_cases():
    # name, B, TQ, TK, C, heads, mask kind
    cases = [("att1", 2, 3, 5, 6, 3, "inf"), ("att2", 2, 4, 3, 6, 1, None), ("att3", 3, 5, 4, 8, 2, "big")]
    for name, B, TQ, TK, C, heads, kind in cases:
        q = torch.randn(B, TQ, C, requires_grad=True)
        k = torch.randn(B, TK, C, requires_grad=True)
        v = torch.randn(B, TK, C, requires_grad=True)
        mask = None
        if kind is not None:
            # mask the last key of every batch but the first, and one more in the last batch; no row is fully masked
            keep = torch.ones(B, TK, dtype=torch.bool)
            keep[1:, TK - 1] = False
            keep[B - 1, 0] = False
            mask = torch.zeros(B, TK).masked_fill(~keep, -math.inf if kind == "inf" else -1e4)
        y = attention_ref(q, k, v, mask, heads)
        dy = torch.randn_like(y)
        y.backward(dy)
        p = name + "_"
        out.update({p + "q": q, p + "k": k, p + "v": v, p + "y": y, p + "dy": dy, p + "dq": q.grad,
                    p + "dk": k.grad, p + "dv": v.grad, p + "heads": torch.tensor([heads])})
        if mask is not None:
            out[p + "mask"] = mask


def mha_case():
    B, TQ, TK, E, heads = 2, 3, 4, 8, 2
    mha = torch.nn.MultiheadAttention(E, heads, batch_first=True)
    with torch.no_grad():
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    q = torch.randn(B, TQ, E, requires_grad=True)
    k = torch.randn(B, TK, E, requires_grad=True)
    v = torch.randn(B, TK, E, requires_grad=True)
    pad = torch.zeros(B, TK, dtype=torch.bool)
    pad[1, 2:] = True  # batch 1 has two padded keys
    y, _ = mha(q, k, v, key_padding_mask=pad)
    dy = torch.randn_like(y)
    y.backward(dy)
    wq, wk, wv = mha.in_proj_weight.chunk(3)
    bq, bk, bv = mha.in_proj_bias.chunk(3)
    dwq, dwk, dwv = mha.in_proj_weight.grad.chunk(3)
    dbq, dbk, dbv = mha.in_proj_bias.grad.chunk(3)
    out.update(mha_q=q, mha_k=k, mha_v=v, mha_mask=torch.zeros(B, TK).masked_fill(pad, -math.inf),
               mha_wq=wq, mha_bq=bq, mha_wk=wk, mha_bk=bk, mha_wv=wv, mha_bv=bv,
               mha_wo=mha.out_proj.weight, mha_bo=mha.out_proj.bias, mha_y=y, mha_dy=dy,
               mha_dq=q.grad, mha_dk=k.grad, mha_dv=v.grad, mha_dwq=dwq, mha_dbq=dbq, mha_dwk=dwk, mha_dbk=dbk,
               mha_dwv=dwv, mha_dbv=dbv, mha_dwo=mha.out_proj.weight.grad, mha_dbo=mha.out_proj.bias.grad)


def resize_cases():
    # (input shape, output size): non-integer up and down scales, an identity, 1x1 in and out
    cases = [((1, 2, 5, 7), (3, 11)), ((1, 1, 7, 7), (2, 2)), ((2, 3, 4, 4), (16, 16)), ((1, 2, 6, 5), (4, 9)),
             ((1, 1, 3, 8), (3, 8)), ((1, 1, 1, 1), (3, 2)), ((1, 1, 2, 3), (1, 1)), ((1, 1, 9, 13), (4, 5))]
    for i, (shape, size) in enumerate(cases):
        x = torch.randn(*shape, requires_grad=True)
        y = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        dy = torch.randn_like(y)
        y.backward(dy)
        p = "rs%d_" % i
        out.update({p + "x": x, p + "y": y, p + "dy": dy, p + "dx": x.grad})


def permute_cases():
    cases = [((2, 3, 4, 5), (0, 2, 3, 1)), ((2, 3, 4, 5), (0, 3, 1, 2)), ((2, 3, 4, 5), (3, 1, 0, 2)),
             ((2, 3, 4, 5), (1, 0, 2, 3)), ((2, 1, 3, 2, 4), (4, 2, 0, 3, 1)), ((3, 7, 5), (0, 2, 1))]
    for i, (shape, perm) in enumerate(cases):
        x = torch.randn(*shape)
        p = "pm%d_" % i
        out.update({p + "x": x, p + "perm": torch.tensor(perm), p + "y": x.permute(*perm)})


linear_cases()
matmul_cases()
attention_cases()
mha_case()
resize_cases()
permute_cases()
write_golden("dense.txt", out)
