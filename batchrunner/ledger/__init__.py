"""The files are the state: append-only outcome files, their line shapes, what they say is
decided, the run manifest, and ``status`` read from them.

May import: ``config``, ``errors``, ``vocabulary``, ``input``.
"""
