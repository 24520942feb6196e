"""The loss of xent's golden values in torch ops, shared by gen.py and
linear/gen.py: F.cross_entropy with the soft cap (z <- c*tanh(z/c) first),
then the temperature (z <- z/tau), and z-loss (+ lambda*logsumexp(z)^2 per counted row) built around it."""
import torch
import torch.nn.functional as F


def transform(z, o):
    """The logits the loss sees: the soft cap, then the temperature."""
    if o.get("softcap", 0) > 0:
        c = o["softcap"]
        z = c * torch.tanh(z / c)
    if o.get("temperature", 1) != 1:  # after the cap: softmax(cap(z)/tau), the gradient z's
        z = z / o["temperature"]
    return z


def ece(z, t, o, bins=15):
    """The expected calibration error over equal-width bins of the confidence
    max softmax(z) of the counted rows (Guo et al. 2017): sum over bins of
    |sum of confidences - correct rows| / rows binned; rows whose confidence
    is NaN are in no bin; NaN when none is binned."""
    z = transform(z.detach(), o)
    mask = t != o.get("ignore_index", -100)
    p = torch.softmax(z[mask], dim=1)
    conf, arg = p.max(dim=1)
    ok = ~torch.isnan(conf)
    conf, correct = conf[ok], (arg == t[mask])[ok]
    if conf.numel() == 0:
        return float("nan")
    k = torch.clamp((conf * bins).floor().long(), 0, bins - 1)
    e = 0.0
    for b in range(bins):
        sel = k == b
        e += abs(float(conf[sel].sum()) - float(correct[sel].sum()))
    return e / conf.numel()


def loss_fn(z, t, o, reduction):
    z = transform(z, o)
    w = torch.tensor(o["weights"], dtype=torch.float64) if o.get("weights") is not None else None
    ii = o.get("ignore_index", -100)
    l = F.cross_entropy(z, t, weight=w, ignore_index=ii, reduction="none",
                        label_smoothing=o.get("label_smoothing", 0.0))
    lam = o.get("z_loss", 0.0)
    if lam > 0:
        lse = torch.logsumexp(z, dim=1)
        l = l + torch.where(t != ii, lam * lse * lse, torch.zeros_like(lse))
    if reduction == "none":
        return l
    if reduction == "sum":
        return l.sum()
    # mean: PyTorch's denominator (counted rows, or the sum of target weights)
    mask = t != ii
    den = mask.sum().to(torch.float64) if w is None else w[t[mask]].sum()
    return l.sum() / den
