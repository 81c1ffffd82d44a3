"""ganterm: train GANs and watch them train, in any terminal."""

__version__ = "0.1.0"
