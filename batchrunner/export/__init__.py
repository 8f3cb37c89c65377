"""Joining results back to their inputs: one row per input line, in input order, with the
request's text, the answer's text (or embedding), its tokens and its outcome.

May import: ``config``, ``errors``, ``runfiles``, ``vocabulary``, ``input``, ``ledger``.
"""
