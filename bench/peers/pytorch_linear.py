#!/usr/bin/python3
"""PyTorch CPU peer for `xent bench --ops linear --peers`.

Times F.cross_entropy(F.linear(h, w), t) on the CPU (float32, h N(0, 1/D)
[batch x hidden], w N(0, 1) [vocab x hidden]): forward under no_grad
("linear-forward") and forward + backward with gradients of h and w
("linear-fused"), which materialise the [batch x vocab] logits; median, min
and max of --repeat runs after one warm-up, and the growth of the process's
peak RSS over the inputs and their gradient buffers (ru_maxrss) during them
(xent bench runs one op per process, so that each starts from its inputs). Prints one JSON object
per line. Needs Debian's python3-torch.
"""
import argparse
import json
import resource
import time

import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--batch", type=int, default=1024)
ap.add_argument("--vocab", type=int, default=50257)
ap.add_argument("--hidden", type=int, default=768)
ap.add_argument("--repeat", type=int, default=3)
ap.add_argument("--threads", type=int, default=torch.get_num_threads())
ap.add_argument("--ops", default="linear-forward,linear-fused", help="run one op per process for a clean RSS baseline")
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(1)
h = torch.randn(a.batch, a.hidden) / a.hidden ** 0.5
w = torch.randn(a.vocab, a.hidden)
t = torch.randint(0, a.vocab, (a.batch,))
w.grad = torch.zeros_like(w)  # the gradient buffers exist before, as ours do
hg = h.clone().requires_grad_(True)
hg.grad = torch.zeros_like(h)
wg = w.requires_grad_(True)


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


for op in a.ops.split(","):
    base = rss_mb()
    secs = []
    for i in range(a.repeat + 1):
        t0 = time.perf_counter()
        if op == "linear-forward":
            with torch.no_grad():
                F.cross_entropy(F.linear(h, w), t)
        else:
            F.cross_entropy(F.linear(hg, wg), t).backward()
        s = time.perf_counter() - t0
        if i > 0:
            secs.append(s)
    secs.sort()
    work = (2 if op == "linear-forward" else 6) * a.batch * a.vocab * a.hidden
    print(json.dumps(dict(device="pytorch-cpu", kernel="torch %s, %d threads" % (torch.__version__, a.threads), op=op,
                          n=a.batch, v=a.vocab, d=a.hidden, seconds_med=secs[len(secs) // 2], seconds_min=secs[0],
                          seconds_max=secs[-1], gflops=work / secs[len(secs) // 2] / 1e9, extra_mb=rss_mb() - base)))
