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


def ranks(z, t, o, ks=(1, 5)):
    """The rank metrics of the counted rows: top-k accuracy for each k of
    ks (fewer than k logits strictly greater than the target's: ties go the
    target's way), the mean reciprocal rank 1/(1 + greater) and the mean
    entropy -sum p log p of the softmax (nats). A row whose loss is NaN is
    in no top k, has a reciprocal rank of 0 and a NaN entropy; the means
    are NaN when no row counts."""
    rows = loss_fn(z.detach(), t, o, "none")
    z = transform(z.detach(), o)
    mask = t != o.get("ignore_index", -100)
    z, tt, nan = z[mask], t[mask], torch.isnan(rows[mask])
    n = z.shape[0]
    if n == 0:
        return dict(topk={str(k): float("nan") for k in ks}, mrr=float("nan"), entropy=float("nan"))
    zt = z.gather(1, tt.unsqueeze(1))
    greater = (z > zt).sum(dim=1)
    ent = torch.special.entr(torch.softmax(z, dim=1)).sum(dim=1)
    ent = torch.where(nan, torch.full_like(ent, float("nan")), ent)
    rr = torch.where(nan, torch.zeros_like(ent), 1.0 / (1.0 + greater.to(torch.float64)))
    topk = {str(k): float(((greater < k) & ~nan).sum()) / n for k in ks}
    return dict(topk=topk, mrr=float(rr.sum()) / n, entropy=float(ent.sum()) / n)


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


def randn(r, c, sd=3.0):
    """r x c draws of N(0, sd^2) (torch's generator, float64, as numpy)."""
    return (torch.randn(r, c, dtype=torch.float64) * sd).numpy()


def randt(r, c, ignore_every=0, ii=-100):
    """r targets in [0, c), about one in ignore_every set to ii (0: none)."""
    t = torch.randint(0, c, (r,)).numpy()
    if ignore_every:
        t[torch.rand(r).numpy() < 1.0 / ignore_every] = ii
    return t
