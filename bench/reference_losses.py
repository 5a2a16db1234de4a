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
