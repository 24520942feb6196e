#!/usr/bin/python3
"""Writes the small .npy fixtures of cmd/xent's tests with NumPy
(/usr/bin/python3 testdata/npy/gen.py): one 13x29 logit matrix in several
dtypes and layouts, its targets as int32 and int64, and the expected mean
loss computed in float64 by PyTorch (expected.json)."""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(7)
x = (rng.standard_normal((13, 29)) * 3).astype(np.float16)  # exactly representable in every dtype
t = rng.integers(0, 29, 13)
t[[2, 9]] = -100
np.save(os.path.join(HERE, "logits_f16.npy"), x)
np.save(os.path.join(HERE, "logits_f32.npy"), x.astype(np.float32))
np.save(os.path.join(HERE, "logits_f64.npy"), x.astype(np.float64))
np.save(os.path.join(HERE, "logits_f32_fortran.npy"), np.asfortranarray(x.astype(np.float32)))
np.save(os.path.join(HERE, "logits_f32_bigendian.npy"), x.astype(">f4"))
np.save(os.path.join(HERE, "targets_i64.npy"), t.astype(np.int64))
np.save(os.path.join(HERE, "targets_i32.npy"), t.astype(np.int32))
# Hostile inputs: wrong dtypes and ranks.
np.save(os.path.join(HERE, "logits_i8.npy"), x.astype(np.int8))
np.save(os.path.join(HERE, "logits_3d.npy"), x.astype(np.float32).reshape(13, 29, 1))
np.save(os.path.join(HERE, "targets_f32.npy"), t.astype(np.float32))
np.save(os.path.join(HERE, "targets_2d.npy"), t.astype(np.int64).reshape(13, 1))
z = torch.tensor(x.astype(np.float64))
tt = torch.tensor(t)
mean = F.cross_entropy(z, tt).item()
acc = ((z.argmax(1) == tt)[tt != -100]).double().mean().item()
rows = F.cross_entropy(z, tt, reduction="none").numpy()
with open(os.path.join(HERE, "expected.json"), "w") as f:
    json.dump(dict(mean=mean, accuracy=acc, tokens=int((t != -100).sum()), rows=[float(v) for v in rows]), f, indent=1)
