"""Pure model definitions: nn.Modules with typed configs, no I/O."""

from ganlab.models.discriminator import PatchGANConfig, PatchGANDiscriminator
from ganlab.models.generator import GeneratorConfig, ResnetGenerator
from ganlab.models.registry import preset_config, preset_names, register_preset

__all__ = [
    "GeneratorConfig",
    "PatchGANConfig",
    "PatchGANDiscriminator",
    "ResnetGenerator",
    "preset_config",
    "preset_names",
    "register_preset",
]
