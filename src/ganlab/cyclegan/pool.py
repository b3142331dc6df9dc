"""History pool of generated images (Shrivastava et al. 2017, arXiv 1612.07828): the discriminator sees
a mix of current and past fakes, which damps oscillation."""

from __future__ import annotations

import torch


class ImagePool:
    """Holds up to ``size`` past fakes. Its own RNG makes resume exact (state saved in checkpoints)."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []
        self.gen = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        """images: (N, C, H, W) -> (N, C, H, W); each a stored fake with probability 1/2 once full."""
        if self.size == 0:
            return images
        out = []
        for img in images:
            img = img.detach().unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif torch.rand(1, generator=self.gen).item() < 0.5:
                i = int(torch.randint(0, self.size, (1,), generator=self.gen).item())
                out.append(self.images[i].clone())
                self.images[i] = img.clone()
            else:
                out.append(img)
        return torch.cat(out, 0)

    def state_tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        t = {f"{prefix}/rng": self.gen.get_state()}
        if self.images:
            t[f"{prefix}/images"] = torch.cat(self.images, 0).cpu()
        return t

    def load_state(self, tensors: dict[str, torch.Tensor], prefix: str, device: torch.device) -> None:
        """Restore a saved pool; without one (a data-parallel rank added at resume) keep this fresh one."""
        if f"{prefix}/rng" not in tensors:
            return
        self.gen.set_state(tensors[f"{prefix}/rng"])
        imgs = tensors.get(f"{prefix}/images")
        self.images = [] if imgs is None else [im.unsqueeze(0).to(device) for im in imgs]
