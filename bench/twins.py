"""PyTorch twins of Rampart's networks, with the tensor names `rampart export` writes.

    from twins import load_exported
    model = load_exported("W.safetensors")   # torch.nn.Module, inputs in [0, 1]
"""
import json

import torch
import torch.nn as nn
import torch.nn.functional as F


class Cnn(nn.Module):
    """Two image-halving convolutions, fc-hidden, fc-classes. style "madry": conv5x5-c1, pool,
    conv5x5-c2, pool (Madry's MNIST net); "strided": conv4x4/2-c1, conv4x4/2-c2 (Wong et al.)."""

    def __init__(self, in_channels=1, height=28, width=28, conv_channels=(32, 64), hidden=1024,
                 num_classes=10, normalization=None, style="madry", input_quantization=None,
                 reverse_attention=False):
        super().__init__()
        self.quantization = input_quantization
        self.reverse_attention = reverse_attention
        c1, c2 = conv_channels
        self.style = style
        if style == "madry":
            self.conv1 = nn.Conv2d(in_channels, c1, 5, padding=2)
            self.conv2 = nn.Conv2d(c1, c2, 5, padding=2)
        elif style == "strided":
            self.conv1 = nn.Conv2d(in_channels, c1, 4, stride=2, padding=1)
            self.conv2 = nn.Conv2d(c1, c2, 4, stride=2, padding=1)
        else:
            raise ValueError(f"unknown cnn style {style}")
        self.fc1 = nn.Linear(c2 * (height // 4) * (width // 4), hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        norm = normalization or {"mean": [0.0] * in_channels, "std": [1.0] * in_channels}
        self.register_buffer("mean", torch.tensor(norm["mean"]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(norm["std"]).view(1, -1, 1, 1))

    def features(self, x):
        if self.quantization:
            levels = self.quantization - 1
            x = torch.round(x * levels) / levels
        x = (x - self.mean) / self.std
        if self.style == "madry":
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        else:
            x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return F.relu(self.fc1(x.flatten(1)))

    def forward(self, x):
        z = self.features(x)
        if not self.reverse_attention:
            return self.fc2(z)
        # Reverse attention at test time: gate z by the predicted class's classifier row.
        aux = self.fc2(z)
        return self.fc2(z * self.fc2.weight[aux.argmax(1)])


class Block(nn.Module):
    """Pre-activation basic block: BN-ReLU, conv3x3 (stride s), BN-ReLU, conv3x3, plus the
    shortcut (a 1x1 conv on the pre-activated input when the shape changes)."""

    def __init__(self, i, o, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(i)
        self.conv1 = nn.Conv2d(i, o, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(o)
        self.conv2 = nn.Conv2d(o, o, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(i, o, 1, stride, bias=False) if stride != 1 or i != o else None

    def forward(self, x):
        out = F.relu(self.bn1(x))
        short = self.shortcut(out) if self.shortcut is not None else x
        return self.conv2(F.relu(self.bn2(self.conv1(out)))) + short


class PreActResNet18(nn.Module):
    """PreAct ResNet-18 (CIFAR layout). With reverse attention the two last blocks are RA
    blocks: z = ReLU(BN(block(x))), auxiliary logits from GAP(z) through the final linear
    layer, z * W[argmax aux] (channel-wise) feeds the next block."""

    def __init__(self, in_channels=3, height=32, width=32, num_classes=10, base_width=64,
                 normalization=None, reverse_attention=False):
        super().__init__()
        w = base_width
        self.reverse_attention = reverse_attention
        self.stem = nn.Conv2d(in_channels, w, 3, 1, 1, bias=False)
        blocks, c = [], w
        for stage, o in enumerate([w, 2 * w, 4 * w, 8 * w]):
            blocks += [Block(c, o, 1 if stage == 0 else 2), Block(o, o, 1)]
            c = o
        self.blocks = nn.ModuleList(blocks)
        self.final_norms = nn.ModuleList(nn.BatchNorm2d(8 * w) for _ in range(2 if reverse_attention else 1))
        self.linear = nn.Linear(8 * w, num_classes)
        norm = normalization or {"mean": [0.0] * in_channels, "std": [1.0] * in_channels}
        self.register_buffer("mean", torch.tensor(norm["mean"]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(norm["std"]).view(1, -1, 1, 1))

    def forward(self, x):
        x = self.stem((x - self.mean) / self.std)
        plain = len(self.blocks) - (2 if self.reverse_attention else 0)
        for b in self.blocks[:plain]:
            x = b(x)
        if not self.reverse_attention:
            return self.linear(F.relu(self.final_norms[0](x)).mean((2, 3)))
        for b, norm in zip(self.blocks[plain:], self.final_norms):
            z = F.relu(norm(b(x)))
            aux = self.linear(z.mean((2, 3)))
            x = z * self.linear.weight[aux.argmax(1)][:, :, None, None]
        return self.linear(x.mean((2, 3)))


def from_config(cfg):
    arch = cfg.pop("arch")
    if arch == "cnn":
        return Cnn(**cfg)
    if arch == "preact-resnet18":
        return PreActResNet18(**cfg)
    raise ValueError(f"unknown architecture {arch}")


def load_exported(path):
    """A twin with the weights of a `rampart export --format safetensors` file."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, "pt") as f:
        cfg = json.loads(f.metadata()["rampart.model"])
    model = from_config(cfg)
    missing, unexpected = model.load_state_dict(load_file(path), strict=False)
    missing = [m for m in missing if m not in ("mean", "std") and not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"missing {missing}, unexpected {unexpected}")
    return model.eval()
