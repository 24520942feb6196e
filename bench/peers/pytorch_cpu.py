#!/usr/bin/python3
"""PyTorch CPU peer for `xent bench --peers`.

Times torch.nn.functional.cross_entropy on [batch x vocab] N(0, 3^2)
logits on the CPU with the given number of threads: forward ("forward"),
forward + backward ("fused"), and torch.logsumexp ("lse"); median, min and
max of --repeat runs after one warm-up, for each of --dtypes (float32,
bfloat16, float16: the same values rounded; a dtype this PyTorch cannot
run on the CPU is said on stderr and left out). Prints one JSON object per
line in the shape of xent bench's results (gbps: bytes of the dtype). Needs
Debian's python3-torch.

With --probes it also prints the bandwidths PyTorch and NumPy reach on the
same matrix, best of 7: x.sum() and a.sum() read it (GB/s of the matrix),
y.copy_(x) and np.copyto(b, a) copy it (read + write bytes counted), as
{"probe": name, "kind": "read"|"copy", "gbps": value}.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--batch", type=int, default=1024)
ap.add_argument("--vocab", type=int, default=50257)
ap.add_argument("--ops", default="lse,forward,fused")
ap.add_argument("--repeat", type=int, default=7)
ap.add_argument("--threads", type=int, default=torch.get_num_threads())
ap.add_argument("--dtypes", default="float32")
ap.add_argument("--probes", action="store_true", help="also print the bandwidth probes (best of 7)")
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(1)
x32 = torch.randn(a.batch, a.vocab) * 3
t = torch.randint(0, a.vocab, (a.batch,))
x = x32


def run(op):
    if op == "lse":
        torch.logsumexp(x, dim=1)
    elif op == "forward":
        with torch.no_grad():
            F.cross_entropy(x, t)
    elif op == "fused":
        z = x.detach().requires_grad_(True)
        F.cross_entropy(z, t).backward()
    else:
        raise SystemExit("unknown op " + op)


import sys

for dtype in a.dtypes.split(","):
    x = x32.to(getattr(torch, dtype))
    for op in a.ops.split(","):
        secs = []
        try:
            for i in range(a.repeat + 1):
                t0 = time.perf_counter()
                run(op)
                s = time.perf_counter() - t0
                if i > 0:
                    secs.append(s)
        except RuntimeError as e:
            print("pytorch_cpu.py: %s %s: %s" % (op, dtype, e), file=sys.stderr)
            continue
        secs.sort()
        med = secs[len(secs) // 2]
        print(json.dumps(dict(device="pytorch-cpu", kernel="torch %s, %d threads" % (torch.__version__, a.threads),
                              op=op, type=dtype, mode="peer", batch=a.batch, vocab=a.vocab, seconds_median=med,
                              seconds_min=secs[0], seconds_max=secs[-1],
                              gbps=x.element_size() * a.batch * a.vocab / med / 1e9)))
x = x32


if a.probes:
    import numpy as np

    y = torch.empty_like(x)
    an, bn = x.numpy(), y.numpy()
    nbytes = 4.0 * a.batch * a.vocab
    for name, kind, f in [
        ("torch x.sum(), %d threads" % a.threads, "read", lambda: x.sum()),
        ("numpy a.sum()", "read", lambda: an.sum()),
        ("torch y.copy_(x), %d threads" % a.threads, "copy", lambda: y.copy_(x)),
        ("numpy np.copyto(b, a)", "copy", lambda: np.copyto(bn, an)),
    ]:
        f()
        best = float("inf")
        for _ in range(7):
            t0 = time.perf_counter()
            f()
            best = min(best, time.perf_counter() - t0)
        gb = nbytes * (2 if kind == "copy" else 1) / best / 1e9
        print(json.dumps(dict(probe=name, kind=kind, gbps=gb)))
