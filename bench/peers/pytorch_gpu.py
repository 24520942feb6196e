#!/usr/bin/env python3
"""PyTorch on a CUDA GPU, the peer of xent's GPU benchmarks (bench/gpu/run.sh).

Logits already on the GPU, as xent's kernel-only figures:
  forward  F.cross_entropy(x, t)
  fused    F.cross_entropy(x, t).backward() (the gradient into x.grad)
at each --sizes (B x V) in each --dtypes; and the fused linear, as xent's
`bench --ops linear`: F.cross_entropy(F.linear(h, w), t).backward() at each
--linear (N x V x D), in float32 with TF32 off and in bfloat16. Times are
CUDA-event medians of --repeat runs after a warm-up; "extra_mb" is the
device memory the call allocated beyond its inputs (peak less before). The
device's own probes of the same run: y.copy_(x) (read + write) and x.sum()
(read), in GB/s. Liger-Kernel and Cut Cross-Entropy run too where they
import (a user's install, or PYTHONPATH), and PyTorch's own fused linear
where this torch has it (2.13 and later, by its documentation): the
chunked path of F.linear_cross_entropy, which never holds the whole
logits, with options=torch.nn.LinearCrossEntropyOptions() ("pytorch-lce",
in both types; without options it is the reference, "pytorch"'s
F.linear + F.cross_entropy). One JSON object a line on stdout; what is left out, and why, on
stderr.
"""
import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F


def timed(f, repeat):
    """Median seconds of f() over repeat runs after a warm-up, CUDA events."""
    f()
    torch.cuda.synchronize()
    secs = []
    for _ in range(repeat):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        f()
        b.record()
        b.synchronize()
        secs.append(a.elapsed_time(b) / 1e3)
    secs.sort()
    return secs[len(secs) // 2], secs[0], secs[-1]


def extra_mb(f):
    """Device memory f() allocates beyond what is held before it, in MB."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    f()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 1e6


def emit(**kw):
    print(json.dumps(kw), flush=True)


def peers_of_logits():
    """The optional peers for logits: name -> f(x, t) giving the loss."""
    out = {}
    try:
        from liger_kernel.transformers.functional import liger_cross_entropy
        out["liger"] = lambda x, t: liger_cross_entropy(x, t)
    except Exception as e:  # not installed here
        print(f"pytorch_gpu.py: Liger-Kernel not run: {e}", file=sys.stderr)
    return out


def peers_of_linear():
    """The optional fused-linear peers: name -> f(h, w, t) giving the loss."""
    out = {}
    try:
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy
        out["liger-flce"] = lambda h, w, t: liger_fused_linear_cross_entropy(h, w, t)
    except Exception as e:
        print(f"pytorch_gpu.py: Liger-Kernel's fused linear not run: {e}", file=sys.stderr)
    try:
        from cut_cross_entropy import linear_cross_entropy
        out["cce"] = lambda h, w, t: linear_cross_entropy(h, w, t)
    except Exception as e:
        print(f"pytorch_gpu.py: Cut Cross-Entropy not run: {e}", file=sys.stderr)
    return out


def torch_linear():
    """PyTorch's own fused linear, where this torch has it: name -> f(h, w, t)."""
    if not hasattr(F, "linear_cross_entropy") or not hasattr(torch.nn, "LinearCrossEntropyOptions"):
        print(f"pytorch_gpu.py: F.linear_cross_entropy's chunked path not run: not in torch {torch.__version__}", file=sys.stderr)
        return {}
    opts = torch.nn.LinearCrossEntropyOptions()
    return {"pytorch-lce": lambda h, w, t: F.linear_cross_entropy(h, w, t, options=opts)}


def logits(args, dev):
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    extra = peers_of_logits()
    for size in args.sizes.split(","):
        b, v = (int(s) for s in size.split("x"))
        t = torch.randint(0, v, (b,), device=dev)
        for name in args.dtypes.split(","):
            dt = dtypes[name]
            x = torch.randn(b, v, device=dev, dtype=torch.float32).to(dt)
            nbytes = x.numel() * x.element_size()
            y = torch.empty_like(x)
            med, _, _ = timed(lambda: y.copy_(x), args.repeat)
            emit(probe="torch copy_", kind="copy", type=name, batch=b, vocab=v, gbps=2 * nbytes / med / 1e9)
            med, _, _ = timed(lambda: x.sum(), args.repeat)
            emit(probe="torch sum", kind="read", type=name, batch=b, vocab=v, gbps=nbytes / med / 1e9)
            del y
            runs = {"pytorch": lambda x, t: F.cross_entropy(x, t)}
            runs.update(extra)
            for peer, ce in runs.items():
                med, lo, hi = timed(lambda: ce(x, t), args.repeat)
                emit(peer=peer, op="forward", type=name, batch=b, vocab=v, seconds_median=med, seconds_min=lo,
                     seconds_max=hi, gbps=nbytes / med / 1e9)
                xg = x.detach().clone().requires_grad_(True)

                def fused():
                    xg.grad = None
                    ce(xg, t).backward()

                med, lo, hi = timed(fused, args.repeat)
                mb = extra_mb(fused)
                emit(peer=peer, op="fused", type=name, batch=b, vocab=v, seconds_median=med, seconds_min=lo,
                     seconds_max=hi, gbps=nbytes / med / 1e9, extra_mb=mb)
                del xg
            del x
            torch.cuda.empty_cache()


def linear(args, dev):
    extra, own = peers_of_linear(), torch_linear()
    for shape in args.linear.split(","):
        if not shape:
            continue
        n, v, d = (int(s) for s in shape.split("x"))
        t = torch.randint(0, v, (n,), device=dev)
        for name, dt in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
            h = (torch.randn(n, d, device=dev) / d ** 0.5).to(dt).requires_grad_(True)
            w = torch.randn(v, d, device=dev).to(dt).requires_grad_(True)
            runs = {"pytorch": lambda h, w, t: F.cross_entropy(F.linear(h, w), t)}
            runs.update(own)
            runs.update(extra if name == "bfloat16" or args.peers_fp32 else {})
            for peer, f in runs.items():
                def fused():
                    h.grad, w.grad = None, None
                    f(h, w, t).backward()

                try:
                    med, lo, hi = timed(fused, args.linear_repeat)
                    mb = extra_mb(fused)
                except Exception as e:  # out of memory, or a peer that does not take this
                    print(f"pytorch_gpu.py: {peer} {name} {shape}: {e}", file=sys.stderr)
                    torch.cuda.empty_cache()
                    continue
                emit(peer=peer, op="linear-fused", type=name, tf32=torch.backends.cuda.matmul.allow_tf32, n=n, v=v, d=d,
                     seconds_median=med, seconds_min=lo, seconds_max=hi, tflops=6 * n * v * d / med / 1e12, extra_mb=mb)
            del h, w
            torch.cuda.empty_cache()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="1024x50257")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--linear", default="")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--linear-repeat", type=int, default=3)
    p.add_argument("--peers-fp32", action="store_true", help="run Liger/CCE in float32 too")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("pytorch_gpu.py: no CUDA device", file=sys.stderr)
        sys.exit(1)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 products in fp32, as xent's
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    emit(machine=torch.cuda.get_device_name(0), torch=torch.__version__, cuda=torch.version.cuda,
         date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    logits(args, dev)
    linear(args, dev)


if __name__ == "__main__":
    main()
