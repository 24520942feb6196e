#!/usr/bin/python3
"""Writes PyTorch golden values for xent's fused linear cross-entropy.

Run with Debian's python3-torch (apt-get install python3-torch):

    /usr/bin/python3 testdata/golden/linear/gen.py

Each case is z = F.linear(h, w, b) followed by the loss of ../gen.py (F.cross_entropy
with soft cap and z-loss built from torch ops), all in float64 from float32
inputs. Files per case, under testdata/golden/linear/: h, w, b (float32;
b only with a bias), targets (int64), weights (float32, when used), rows
(the per-row losses of reduction='none'), and the gradients of
reduction='sum': dh, dw, db (float64). cases.json holds the options, the
sum and the mean.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
torch.manual_seed(20261202)

from lossfn import ece, loss_fn, ranks  # ../lossfn.py, as ../gen.py's


def case(name, h, w, b, targets, **o):
    h32, w32 = torch.tensor(h, dtype=torch.float32), torch.tensor(w, dtype=torch.float32)
    b32 = None if b is None else torch.tensor(b, dtype=torch.float32)
    hh = h32.to(torch.float64).requires_grad_(True)
    ww = w32.to(torch.float64).requires_grad_(True)
    bb = None if b32 is None else b32.to(torch.float64).requires_grad_(True)
    t = torch.tensor(targets, dtype=torch.int64)
    if "weights" in o:
        o["weights"] = [float(v) for v in np.asarray(o["weights"], dtype=np.float32)]
    z = F.linear(hh, ww, bb)
    rows = loss_fn(z, t, o, "none")
    s = loss_fn(z, t, o, "sum")
    s.backward()
    mean = loss_fn(z.detach(), t, o, "mean")
    save = lambda suffix, a: np.save(os.path.join(HERE, name + "_" + suffix + ".npy"), a)
    save("h", h32.numpy())
    save("w", w32.numpy())
    save("targets", t.numpy())
    save("rows", rows.detach().numpy().astype(np.float64))
    save("dh", hh.grad.numpy())
    save("dw", ww.grad.numpy())
    if b32 is not None:
        save("b", b32.numpy())
        save("db", bb.grad.numpy())
    if "weights" in o:
        save("weights", np.asarray(o["weights"], dtype=np.float32))
    return dict(name=name, n=h.shape[0], d=h.shape[1], v=w.shape[0], bias=b is not None,
                options=o, sum=float(s), mean=float(mean), ece=ece(z, t, o), **ranks(z, t, o))


def randn(*shape, sd=1.0):
    return (torch.randn(*shape, dtype=torch.float64) * sd).numpy()


def randt(n, v, ignore_every=0, ii=-100):
    t = torch.randint(0, v, (n,)).numpy()
    if ignore_every:
        t[torch.rand(n).numpy() < 1.0 / ignore_every] = ii
    return t


cases = []
cases.append(case("plain", randn(13, 33), randn(257, 33, sd=0.5), randn(257), randt(13, 257, 4)))
cases.append(case("d1_v4099", randn(9, 1, sd=2), randn(4099, 1, sd=2), None, randt(9, 4099, 5)))
cases.append(case("v1", randn(5, 33), randn(1, 33), randn(1), [0, 0, -100, 0, 0]))
cases.append(case("all_options", randn(17, 7, sd=2), randn(129, 7, sd=2), randn(129), randt(17, 129, 4, 5),
                  weights=torch.rand(129).numpy(), label_smoothing=0.05, z_loss=1e-4, softcap=5.0, ignore_index=5))
cases.append(case("smoothing_weights", randn(23, 12), randn(300, 12), None, randt(23, 300, 6),
                  weights=torch.rand(300).numpy() * 2, label_smoothing=0.2))
# Confident rows: W's target rows (distinct) are 1.5 times the rows'
# hidden states, so p_t is close to 1 and p_t - 1 small (e^-24 or so).
h, w, t = randn(11, 16), randn(300, 16, sd=0.1), torch.randperm(300)[:11].numpy()
for i in range(11):
    w[t[i]] = 1.5 * h[i]
cases.append(case("confident", h, w, None, t))
cases.append(case("all_ignored", randn(4, 3), randn(9, 3), randn(9), [-100] * 4))
cases.append(case("temperature", randn(15, 9, sd=2), randn(301, 9, sd=2), randn(301), randt(15, 301, 5),
                  softcap=6.0, label_smoothing=0.1, temperature=0.7))

with open(os.path.join(HERE, "cases.json"), "w") as f:
    json.dump(dict(torch=torch.__version__, cases=cases), f, indent=1, allow_nan=True)
print("wrote", len(cases), "cases with torch", torch.__version__)
