"""svqbench: spatio-temporal / video prediction centred on SVQ inside SimVP.

``svqbench.load_run(PATH)`` (from :mod:`svqbench.api`, imported on first use so that ``import svqbench`` stays
light): a trained run's model, ready to ``forecast(inputs, frames_out)``.
"""

import importlib

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "load_run":  # the engine loads only when asked for
        return importlib.import_module("svqbench.api").load_run
    raise AttributeError(f"module 'svqbench' has no attribute {name!r}")
