"""VGG19 feature extractor (Simonyan & Zisserman 2014, arXiv 1409.1556) for the SRGAN perceptual loss.

ganlab defines the network itself; its ``state_dict`` keys follow torchvision's ``vgg19`` layout
(``features.0.weight``, ``features.0.bias``, ``features.2.weight``, ...: conv layers at torchvision's
indices in ``features``), so a torchvision ``vgg19`` file the user already has on disk loads as is.
Nothing is ever downloaded: without a weights file there is no perceptual loss.

Only ``features`` up to conv5_4 (index 34) and, by default, its ReLU (index 35) are built: the paper's
phi_5,4 is "the feature map obtained by the 4th convolution (after activation) before the 5th
max-pooling layer" (Ledig et al. 2017, section 2.2.2). ESRGAN (Wang et al. 2018) argues for the
pre-activation features instead; ``after_relu=False`` gives those.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ganlab.core.errors import GanlabError

# torchvision's vgg19 "E" config: conv widths, "M" = 2x2 max-pool.
_VGG19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512]
CONV5_4 = 34  # index of conv5_4 in torchvision's vgg19().features; its ReLU is 35

# ImageNet statistics torchvision's weights expect, for inputs in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGWeightsError(GanlabError, ValueError):
    """A VGG19 weights file is missing, unreadable, or not in torchvision's vgg19 layout."""


class VGG19Features(nn.Module):
    """(N, 3, H, W) RGB in [0, 1] -> conv5_4 features (N, 512, H/16, W/16), after ReLU by default.

    Inputs are normalised with the ImageNet mean/std inside the module. Frozen: parameters have
    ``requires_grad=False`` and the module stays in eval mode, but gradients flow to the input.
    """

    def __init__(self, after_relu: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in _VGG19:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                cin = int(v)
        self.features = nn.Sequential(*layers[: CONV5_4 + (2 if after_relu else 1)])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:
        # A frozen extractor: never switch to train mode (no dropout/BN here, but keep it explicit).
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x - self.mean) / self.std)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict from a ``.safetensors`` file or a torch ``.pth``/``.pt`` file (weights_only load)."""
    path = Path(path)
    if not path.is_file():
        raise VGGWeightsError(f"VGG19 weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure here means "not a usable weights file"
        raise VGGWeightsError(f"{path}: cannot read VGG19 weights ({type(e).__name__}: {e})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise VGGWeightsError(f"{path}: expected a state_dict (name -> tensor)")
    # Checkpoints saved from nn.DataParallel prefix every key with "module.".
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_vgg19_features(path: str | Path, after_relu: bool = True) -> VGG19Features:
    """Build :class:`VGG19Features` and load the ``features.*`` tensors of a torchvision-layout vgg19 file.

    Keys outside ``features`` (the classifier) and feature layers past conv5_4 are ignored; a missing
    tensor or a shape mismatch is a :class:`VGGWeightsError` naming the key.
    """
    model = VGG19Features(after_relu=after_relu)
    sd = read_state_dict(path)
    own = model.state_dict()
    for k, v in own.items():
        if k not in sd:
            feats = sorted(x for x in sd if x.startswith("features."))
            raise VGGWeightsError(
                f"{path}: tensor {k} missing; this does not look like torchvision's vgg19 layout "
                f"(file has {len(sd)} tensors, {len(feats)} under features.: {', '.join(feats[:4])}...)"
            )
        if tuple(sd[k].shape) != tuple(v.shape):
            raise VGGWeightsError(
                f"{path}: {k} has shape {tuple(sd[k].shape)}, expected {tuple(v.shape)} (vgg19)"
            )
    model.load_state_dict({k: sd[k].float() for k in own})
    return model
