#!/usr/bin/python3
"""Writes PyTorch golden values of xent's top-k distillation (batch.Distill).

Run with Debian's python3-torch (apt-get install python3-torch):

    /usr/bin/python3 testdata/golden/distill/gen.py

Each case is a set of .npy files under testdata/golden/distill/: the
student's logits (float32), targets (int64), the teacher's top-k classes
(int64, rows x k) and log-probabilities (float32), the per-row mixed loss
(1 - alpha)*CE + alpha*KL of reduction 'none' and the per-row KL, and the
gradient of reduction 'sum' (autograd, float64); one entry of cases.json
holds the options, alpha, the 'sum', the 'mean' and the summed KL. The KL
is the teacher's top-k plus one tail bin: P = max(0, 1 - sum p), the
student's tail Q a logsumexp over the classes off the teacher's support
(no cancellation); both of the student as the loss sees it (the soft cap,
then the temperature: lossfn.transform). Ignored rows count nothing.

The fused linear's cases (linear_*) are z = F.linear(h, w, b) in float64
from float32 h, w, b, then the same loss; their files are h, w, b,
targets, ids, logprobs, rows, kl and the gradients of the sum dh, dw, db;
their cases.json entries ("linear": true) hold n, d, v too.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from lossfn import loss_fn, randn, randt, transform  # noqa: E402

torch.manual_seed(20261205)


def kl_rows(z, t, ids, lp, o):
    """KL(teacher || student) of each row over the top-k and a tail bin; 0
    for ignored rows."""
    zz = transform(z, o)
    logq = torch.log_softmax(zz, dim=1)
    lq = logq.gather(1, ids)
    p = lp.exp()
    kl = (p * (lp - lq)).sum(dim=1)
    P = (1 - p.sum(dim=1)).clamp(min=0)
    off = torch.ones_like(zz, dtype=torch.bool).scatter(1, ids, False)
    logQ = torch.logsumexp(logq.masked_fill(~off, float("-inf")), dim=1)
    kl = kl + torch.where(P > 0, P * (P.clamp(min=1e-300).log() - logQ), torch.zeros_like(P))
    return torch.where(t != o.get("ignore_index", -100), kl, torch.zeros_like(kl))


def case(name, logits, targets, k, alpha, tsd=1.0, **o):
    x32 = torch.tensor(logits, dtype=torch.float32)
    z = x32.to(torch.float64).requires_grad_(True)
    t = torch.tensor(targets, dtype=torch.int64)
    # The teacher: the student's logits plus noise, its top k, shuffled.
    tz = z.detach() + torch.randn_like(z.detach()) * tsd
    tl = torch.log_softmax(tz, dim=1)
    top = tl.topk(k, dim=1)
    perm = torch.stack([torch.randperm(k) for _ in range(len(targets))])
    ids = top.indices.gather(1, perm)
    lp32 = top.values.gather(1, perm).to(torch.float32)
    lp = lp32.to(torch.float64)
    ce = loss_fn(z, t, o, "none")
    kl = kl_rows(z, t, ids, lp, o)
    rows = (1 - alpha) * ce + alpha * kl
    s = rows.sum()
    s.backward()
    mask = t != o.get("ignore_index", -100)
    mean = float(s) / int(mask.sum()) if int(mask.sum()) else float("nan")
    for suffix, v in (("logits", x32.numpy()), ("targets", t.numpy()), ("ids", ids.numpy()),
                      ("logprobs", lp32.numpy()), ("rows", rows.detach().numpy()),
                      ("kl", kl.detach().numpy()), ("grad", z.grad.numpy())):
        np.save(os.path.join(HERE, name + "_" + suffix + ".npy"), v)
    return dict(name=name, k=k, alpha=alpha, options=o, sum=float(s), mean=mean, kl=float(kl.sum()))


def linear_case(name, n, d, v, targets, k, alpha, **o):
    h32 = (torch.randn(n, d, dtype=torch.float64) * 4 / d ** 0.5).to(torch.float32)
    w32 = torch.randn(v, d, dtype=torch.float64).to(torch.float32)
    b32 = torch.randn(v, dtype=torch.float64).to(torch.float32)
    hh, ww, bb = (a.to(torch.float64).requires_grad_(True) for a in (h32, w32, b32))
    t = torch.tensor(targets, dtype=torch.int64)
    z = F.linear(hh, ww, bb)
    tz = z.detach() + torch.randn_like(z.detach())
    top = torch.log_softmax(tz, dim=1).topk(k, dim=1)
    perm = torch.stack([torch.randperm(k) for _ in range(n)])
    ids = top.indices.gather(1, perm)
    lp32 = top.values.gather(1, perm).to(torch.float32)
    kl = kl_rows(z, t, ids, lp32.to(torch.float64), o)
    rows = (1 - alpha) * loss_fn(z, t, o, "none") + alpha * kl
    s = rows.sum()
    s.backward()
    for suffix, a in (("h", h32.numpy()), ("w", w32.numpy()), ("b", b32.numpy()), ("targets", t.numpy()),
                      ("ids", ids.numpy()), ("logprobs", lp32.numpy()), ("rows", rows.detach().numpy()),
                      ("kl", kl.detach().numpy()), ("dh", hh.grad.numpy()), ("dw", ww.grad.numpy()),
                      ("db", bb.grad.numpy())):
        np.save(os.path.join(HERE, name + "_" + suffix + ".npy"), a)
    return dict(name=name, linear=True, n=n, d=d, v=v, k=k, alpha=alpha, options=o, sum=float(s), kl=float(kl.sum()))


confident = randn(11, 157, 1.0)
confident[np.arange(11), np.arange(11) * 7] += np.linspace(8, 30, 11)  # p_max from .99 to 1 - 1e-12
cases = [
    case("near", randn(23, 97), randt(23, 97, 6), 7, 0.5),
    case("kl_only", randn(19, 211), randt(19, 211), 20, 1.0, tsd=2.0, temperature=2.0),
    case("ce_only", randn(7, 50), randt(7, 50), 3, 0.0),
    case("confident", confident, np.arange(11) * 7, 5, 0.5, tsd=3.0),
    case("options", randn(17, 129, 20.0), randt(17, 129, 4), 10, 0.3, label_smoothing=0.1, z_loss=1e-4,
         softcap=25.0, temperature=0.7),
    case("vocab_5003", randn(6, 5003), randt(6, 5003), 50, 0.6),
    linear_case("linear_plain", 29, 16, 211, randt(29, 211, 6), 7, 0.5),
    linear_case("linear_options", 17, 24, 97, randt(17, 97), 12, 0.8, softcap=10.0, temperature=0.8,
                label_smoothing=0.1),
]
with open(os.path.join(HERE, "cases.json"), "w") as f:
    json.dump(dict(torch=torch.__version__, cases=cases), f, indent=1, allow_nan=True)
print("wrote", len(cases), "cases with torch", torch.__version__)
