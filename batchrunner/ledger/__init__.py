"""The files are the state: append-only outcome files, their line shapes, what they say is
decided (in compact tables, for millions of ids), the run manifest, and ``status``.

May import: ``config``, ``errors``, ``runfiles``, ``vocabulary``, ``input``.
"""
