"""The engine: what trains, evaluates and serves a model, and the run folder that records it.

Holds the training loop (``train``), streaming evaluation (``evaluate``), prediction on a user's clip
(``predict``), SVQ folding (``fold``), the run folder and its checkpoints (``runs``), training loggers
(``loggers``), the machine a process computes on (``machine``: device, numeric policy, bf16, autocast,
out-of-memory), its place among torchrun's processes (``world``: process group, RNG capture, Ctrl-C), loaders and
batch order (``batches``), losses, BatchNorm over ranks and the allocator switch.

May import: ``svqbench.results``, ``svqbench.config``, ``svqbench.models``, ``svqbench.metrics``,
``svqbench.data`` and the leaves (errors, fileio, registry, progress, keyed, render). Never ``bench``,
``flows`` or ``cli``. This ``__init__`` imports nothing, so ``allocator`` stays torch-free.
"""
