"""ganlab: GAN experiments on images (CycleGAN-style translation, SRGAN super-resolution)."""

from ganlab.core.version import VERSION as __version__

__all__ = ["__version__"]
