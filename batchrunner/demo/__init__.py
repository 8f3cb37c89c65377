"""The quickstart's files, shipped inside the package so that ``batchrunner demo`` runs from a
wheel as from a clone: ``quickstart.toml`` and its ``prompts.jsonl`` (a copy of
``samples/prompts.jsonl``; a test keeps the two equal).

May import: nothing (it holds data).
"""
