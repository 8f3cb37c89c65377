"""Reading a dead-letter file: what is still dead, summarised, filtered and re-queued.

May import: ``config``, ``errors``, ``runfiles``, ``vocabulary``, ``input``, ``ledger``.
"""
