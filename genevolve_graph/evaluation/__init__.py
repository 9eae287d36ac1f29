"""Evaluation: the KScore judge, the WISE (original) judge, the program-sufficiency judge,
summaries, and side-by-side reports with charts.

Import from the submodules (``judge_client``, ``kscore``, ``sufficiency``, ``wise``,
``aggregate``, ``report``); this package imports nothing heavy on its own. The CLI commands
live in ``commands.register(app)``.
"""
