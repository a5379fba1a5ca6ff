"""akira: spectral-band neural architectures on Hydra + Lightning."""

__version__ = "0.1.0"
