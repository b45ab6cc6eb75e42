"""Results: what evaluations left behind, compared and tabulated, without torch.

Holds per-window metric files (``per_window``), intervals and tests (``stats``), paired run comparisons
(``compare``), which way each metric is better (``directions``), study curves over a swept setting
(``study_axis``), the leaderboard CSV (``leaderboard``) and its Markdown, LaTeX and plot views (``views``).

May import: ``svqbench.config`` and the leaves (errors, fileio). Never torch, and never ``engine``, ``bench``,
``flows`` or ``cli``: ``svqbench leaderboard`` and ``svqbench compare`` start without loading torch
(``tests/test_layout.py`` checks both).
"""
