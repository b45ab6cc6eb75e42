"""svqbench: spatio-temporal / video prediction centred on SVQ inside SimVP."""

__version__ = "0.1.0"
