"""Builders and helpers shared by several test modules (``tests/`` is on ``sys.path`` through pytest's
``pythonpath`` setting, so this package imports as ``support``)."""
