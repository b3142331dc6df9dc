"""ganlab: GAN experiments on images (CycleGAN-style translation, SRGAN super-resolution)."""

__version__ = "0.1.0"
