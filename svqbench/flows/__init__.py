"""Flows: commands made of many runs. Studies (``sweep``), the quickstart (``quickstart``) and the HTML report
(``report``).

May import: ``svqbench.engine`` and everything below it. Never ``bench`` or ``cli``.
"""
