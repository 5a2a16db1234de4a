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


def from_config(cfg):
    arch = cfg.pop("arch")
    if arch == "cnn":
        return Cnn(**cfg)
    raise ValueError(f"unknown architecture {arch}")


def load_exported(path):
    """A twin with the weights of a `rampart export --format safetensors` file."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, "pt") as f:
        cfg = json.loads(f.metadata()["rampart.model"])
    model = from_config(cfg)
    missing, unexpected = model.load_state_dict(load_file(path), strict=False)
    missing = [m for m in missing if m not in ("mean", "std")]
    if missing or unexpected:
        raise ValueError(f"missing {missing}, unexpected {unexpected}")
    return model.eval()
