"""Reference values for core/tests/loss.rs, computed with PyTorch (independent of Rampart).

    python3 bench/reference_losses.py
Prints the values the Rust test embeds; the test's tolerance is 1e-5 absolute.
"""
import torch
import torch.nn.functional as F

torch.set_printoptions(precision=8)
logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-3.0, 4.0, 1.0], [10.0, -10.0, 0.0]], dtype=torch.float64)
targets = torch.tensor([0, 2, 0, 1])

ce = F.cross_entropy(logits, targets, reduction="none")
print("cross_entropy", [round(v, 8) for v in ce.tolist()])


def focal(logits, targets, gamma, alpha=None):
    logp = F.log_softmax(logits, 1).gather(1, targets[:, None]).squeeze(1)
    loss = -((1 - logp.exp()) ** gamma) * logp
    if alpha is not None:
        loss = loss * torch.tensor(alpha, dtype=logits.dtype)[targets]
    return loss


print("focal_g2", [round(v, 8) for v in focal(logits, targets, 2.0).tolist()])
print("focal_g0_5_alpha", [round(v, 8) for v in focal(logits, targets, 0.5, [0.25, 1.0, 2.0]).tolist()])
# Carlini-Wagner margin: max_{j != y} z_j - z_y
other = logits.clone()
other[torch.arange(4), targets] = -float("inf")
print("cw_margin", [round(v, 8) for v in (other.max(1).values - logits[torch.arange(4), targets]).tolist()])
# Class-weighted cross-entropy, PyTorch's mean over the weights of the targets.
w = torch.tensor([0.25, 1.0, 2.0], dtype=torch.float64)
print("weighted_ce", round(F.cross_entropy(logits, targets, weight=w).item(), 8))


# Difference-of-logits-ratio losses (Croce & Hein 2020), as in the AutoAttack release.
def dlr(x, y):
    xs, ind = x.sort(dim=1)
    top_is_y = (ind[:, -1] == y).to(x.dtype)
    u = torch.arange(x.shape[0])
    return -(x[u, y] - xs[:, -2] * top_is_y - xs[:, -1] * (1 - top_is_y)) / (xs[:, -1] - xs[:, -3] + 1e-12)


def dlr_targeted(x, y, t):
    xs, _ = x.sort(dim=1)
    u = torch.arange(x.shape[0])
    return -(x[u, y] - x[u, t]) / (xs[:, -1] - 0.5 * (xs[:, -3] + xs[:, -4]) + 1e-12)


logits4 = torch.tensor([[2.0, -1.0, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4], [-3.0, 4.0, 1.0, 2.0], [10.0, -10.0, 0.0, 5.0]], dtype=torch.float64)
print("dlr", [round(v, 8) for v in dlr(logits4, targets).tolist()])
print("dlr_targeted", [round(v, 8) for v in dlr_targeted(logits4, targets, torch.tensor([3, 0, 1, 2])).tolist()])

# TRADES (Zhang et al. 2019) and MART (Wang et al. 2020) losses, written as in their official
# code, on a natural/adversarial pair of logit batches.
logits_adv = torch.tensor([[0.5, 1.0, -0.5], [0.3, -0.2, 0.9], [1.0, 2.0, 0.0], [2.0, -1.0, 3.0]], dtype=torch.float64)
beta = 6.0
kl = torch.nn.KLDivLoss(reduction="sum")
trades = F.cross_entropy(logits, targets) + beta * kl(F.log_softmax(logits_adv, 1), F.softmax(logits, 1)) / 4
print("trades", round(trades.item(), 8))
adv_probs = F.softmax(logits_adv, dim=1)
tmp1 = torch.argsort(adv_probs, dim=1)[:, -2:]
new_y = torch.where(tmp1[:, -1] == targets, tmp1[:, -2], tmp1[:, -1])
loss_adv = F.cross_entropy(logits_adv, targets) + F.nll_loss(torch.log(1.0001 - adv_probs + 1e-12), new_y)
nat_probs = F.softmax(logits, dim=1)
true_probs = torch.gather(nat_probs, 1, targets.unsqueeze(1).long()).squeeze()
kl_none = torch.nn.KLDivLoss(reduction="none")
loss_robust = (1.0 / 4) * torch.sum(torch.sum(kl_none(torch.log(adv_probs + 1e-12), nat_probs), dim=1) * (1.0000001 - true_probs))
print("mart", round((loss_adv + beta * loss_robust).item(), 8))


# ANCRA's asymmetric negative contrast, from the formula of the official code:
# mean_i 1[argmax p_i = argmax q_i] * sqrt(p_i,c * q_i,c), p the anchor's (stop-gradient)
# and q the negative's softmax, c = argmax p.
def anc(anchor, negative):
    p = F.softmax(anchor, 1).detach()
    q = F.softmax(negative, 1)
    c = p.argmax(1)
    same = (c == q.argmax(1)).to(anchor.dtype)
    u = torch.arange(anchor.shape[0])
    return (same * torch.sqrt(p[u, c] * q[u, c])).mean()


print("anc", round(anc(logits, logits_adv).item(), 8))
