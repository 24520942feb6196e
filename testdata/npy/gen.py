#!/usr/bin/python3
"""Writes the small .npy fixtures of cmd/xent's tests with NumPy
(/usr/bin/python3 testdata/npy/gen.py): one 13x29 logit matrix in several
dtypes and layouts, its targets as int32 and int64, and the expected mean
loss computed in float64 by PyTorch (expected.json); and a causal language
model's dump, logits [batch x sequence x vocab] with its input ids, and
its loss as Hugging Face's models compute it with labels = ids (expected.json's
"causal"), also as .npz archives, stored and compressed, and as PyTorch
files (torch.save), float32 and bfloat16."""
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

# A causal LM's dump: row t of a sequence predicts token t+1. Hugging Face's
# ForCausalLMLoss pads the labels with the ignore index and shifts them one
# place (labels = F.pad(labels, (0, 1), value=-100)[..., 1:]), so each
# sequence's last row is not counted; the padding of the third sequence is
# labelled -100. Its own generator: the fixtures above stay as they were.
rc = np.random.default_rng(8)
B, T, V = 3, 6, 29
xc = (rc.standard_normal((B, T, V)) * 3).astype(np.float16).astype(np.float32)
ids = rc.integers(0, V, (B, T))
ids[2, 4:] = -100
np.save(os.path.join(HERE, "causal_logits.npy"), xc)
np.save(os.path.join(HERE, "causal_ids.npy"), ids.astype(np.int64))
# The same dump in one .npz archive, the ids as "labels": np.savez stores
# the arrays (read in place), np.savez_compressed deflates them (with an
# attention mask beside them as bools).
np.savez(os.path.join(HERE, "causal.npz"), logits=xc, labels=ids.astype(np.int64))
np.savez_compressed(os.path.join(HERE, "causal_z.npz"), logits=xc, labels=ids.astype(np.int64), mask=ids != -100)
zc = torch.tensor(xc.astype(np.float64)).reshape(-1, V)
labels = F.pad(torch.tensor(ids), (0, 1), value=-100)[..., 1:].reshape(-1)
causal = dict(mean=F.cross_entropy(zc, labels).item(), tokens=int((labels != -100).sum()),
              rows=[float(v) for v in F.cross_entropy(zc, labels, reduction="none").numpy()])
# And as PyTorch writes it (torch.save, the zip format): a dict of the
# logits and the ids (and two entries that are not tensors); the logits in bfloat16 (their loss computed in
# float64 from the bfloat16 values); a view that is not contiguous (an
# error); a state dict of nn.Linear(8, 29) beside its weight as a .npy.
xt = torch.tensor(xc)
torch.save({"logits": xt, "labels": torch.tensor(ids), "seq_len": T, "model": "gen.py"}, os.path.join(HERE, "causal.pt"))
xb = xt.to(torch.bfloat16)
torch.save({"logits": xb, "labels": torch.tensor(ids)}, os.path.join(HERE, "causal_bf16.pt"))
torch.save(xt[:, :-1, :], os.path.join(HERE, "causal_view.pt"))
zb = xb.double().reshape(-1, V)
causal_bf16 = dict(mean=F.cross_entropy(zb, labels).item(), tokens=int((labels != -100).sum()))
torch.manual_seed(9)
lin = torch.nn.Linear(8, V)
torch.save(lin.state_dict(), os.path.join(HERE, "linear.pt"))
np.save(os.path.join(HERE, "linear_weight.npy"), lin.weight.detach().numpy())
# A Hugging Face checkpoint's pytorch_model.bin: its head as lm_head.weight.
torch.save({"model.norm.weight": torch.ones(8), "lm_head.weight": lin.weight.detach()}, os.path.join(HERE, "hf_pytorch_model.bin"))
with open(os.path.join(HERE, "expected.json"), "w") as f:
    json.dump(dict(mean=mean, accuracy=acc, tokens=int((t != -100).sum()), rows=[float(v) for v in rows], causal=causal, causal_bf16=causal_bf16), f, indent=1)
