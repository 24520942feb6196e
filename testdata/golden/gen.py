#!/usr/bin/python3
"""Writes PyTorch golden values for xent's tests.

Run with Debian's python3-torch (apt-get install python3-torch):

    /usr/bin/python3 testdata/golden/gen.py

Each case is a set of .npy files under testdata/golden/ (logits float32,
targets int64, weights float32 when used, the per-row losses of
reduction='none', the gradient of reduction='sum') and one entry of
cases.json with its options, the 'sum' and 'mean' reductions and the
expected calibration error 'ece' (lossfn.ece), and the rank metrics
'topk' (k = 1, 5), 'mrr' and 'entropy' (lossfn.ranks). Z-loss and
the soft cap are not in F.cross_entropy: they are built from torch ops
(z <- c*tanh(z/c) first; + lambda*logsumexp(z)^2 per counted row) and
differentiated by autograd; a temperature divides the capped logits
(z <- cap(z)/tau), the gradient is the raw logits'.
"""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

from lossfn import ece, loss_fn, randn, randt, ranks

HERE = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(20261127)


def case(name, logits, targets, **o):
    x32 = torch.tensor(logits, dtype=torch.float32)
    z = x32.to(torch.float64).requires_grad_(True)
    t = torch.tensor(targets, dtype=torch.int64)
    if "weights" in o:
        o["weights"] = [float(v) for v in np.asarray(o["weights"], dtype=np.float32)]
    rows = loss_fn(z, t, o, "none")
    s = loss_fn(z, t, o, "sum")
    s.backward()
    mean = loss_fn(z.detach(), t, o, "mean")
    np.save(os.path.join(HERE, name + "_logits.npy"), x32.numpy())
    np.save(os.path.join(HERE, name + "_targets.npy"), t.numpy())
    np.save(os.path.join(HERE, name + "_rows.npy"), rows.detach().numpy().astype(np.float64))
    np.save(os.path.join(HERE, name + "_grad.npy"), z.grad.numpy().astype(np.float64))
    entry = dict(name=name, options=o, sum=float(s), mean=float(mean), ece=ece(z, t, o), **ranks(z, t, o))
    if "weights" in o:
        np.save(os.path.join(HERE, name + "_weights.npy"), np.asarray(o["weights"], dtype=np.float32))
    return entry


inf = float("inf")
cases = []
cases.append(case("textbook", np.log(np.array([
    [.05, .10, .60, .20, .05], [.10, .05, .15, .10, .60],
    [.40, .20, .15, .15, .10], [.05, .05, .80, .05, .05]])), [3, 4, 0, 2]))
cases.append(case("normal_37x101", randn(37, 101), randt(37, 101, 6)))
cases.append(case("vocab_5003", randn(8, 5003), randt(8, 5003, 4)))
cases.append(case("smoothing", randn(29, 64), randt(29, 64, 5), label_smoothing=0.1))
w = torch.rand(97).numpy() * 2
cases.append(case("weights", randn(31, 97), randt(31, 97, 5), weights=w))
cases.append(case("weights_smoothing", randn(31, 97), randt(31, 97, 5), weights=w, label_smoothing=0.25))
cases.append(case("ignore_in_range", randn(40, 12), randt(40, 12), ignore_index=2))
cases.append(case("zloss", randn(21, 300), randt(21, 300, 5), z_loss=1e-3))
cases.append(case("softcap", randn(21, 300, 40.0), randt(21, 300, 5), softcap=30.0))
cases.append(case("all_options", randn(17, 129, 20.0), randt(17, 129, 4, 5), weights=torch.rand(129).numpy(),
                  label_smoothing=0.05, z_loss=1e-4, softcap=25.0, ignore_index=5))
cases.append(case("edges", np.array([
    [1, 2, inf, 0, 0], [-inf, -inf, -inf, -inf, -inf], [-inf, 1, 2, -inf, 3],
    [-inf, 1, 2, 3, 4], [1, float("nan"), 2, 3, 4], [0, 0, 0, 0, 60], [-1e30] * 5]),
    [1, 2, 1, 0, 3, 4, 2]))
cases.append(case("all_ignored", randn(4, 9), [-100] * 4))
cases.append(case("temperature", randn(19, 211), randt(19, 211, 5), temperature=0.6))
cases.append(case("temperature_all", randn(17, 129, 20.0), randt(17, 129, 4, 5), weights=torch.rand(129).numpy(),
                  label_smoothing=0.05, z_loss=1e-4, softcap=25.0, temperature=2.5, ignore_index=5))

with open(os.path.join(HERE, "cases.json"), "w") as f:
    json.dump(dict(torch=torch.__version__, cases=cases), f, indent=1, allow_nan=True)
print("wrote", len(cases), "cases with torch", torch.__version__)
