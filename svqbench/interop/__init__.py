"""Weights from other toolkits: OpenSTL checkpoints read, mapped onto svqbench's models, written as run folders.

``openstl_keys`` holds, for every model OpenSTL also has, the renaming of OpenSTL's state-dict keys to
svqbench's (a table of rules, no torch); ``openstl`` reads a checkpoint (a v0.3 ``.pth`` state dict or a
Lightning ``.ckpt``), applies the rules, checks every key and shape, and writes the run folder that ``eval``,
``render``, ``predict``, ``compare`` and ``report`` use like any trained run.

May import: ``svqbench.config``, ``svqbench.data``, ``svqbench.models``, ``svqbench.engine`` (the run folder)
and the leaves (errors, fileio). Never ``flows`` or ``cli``.
"""
