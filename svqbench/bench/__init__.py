"""Measurement of the machine and the models: timed training and inference steps (``measure``), their tables
(``tables``), the roofline (``roofline``), one training step's gradients at any world size against float64
(``step_gradients``) and the installation's one-screen check (``doctor``).

May import: ``svqbench.engine`` and everything below it. Never ``flows`` or ``cli``.
"""
