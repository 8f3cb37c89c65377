"""Reading INPUT: one physical line in, one request (or the reason it is bad) out.

May import: ``config``, ``errors``, ``runfiles``, ``vocabulary``.
"""
