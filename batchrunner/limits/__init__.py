"""When a request may leave: the gates (concurrency slots, tokens per minute, pacing) behind
one enter/leave, the adaptive rate, spending, prices and token estimates.

May import: ``config``, ``errors``, ``runfiles``, ``vocabulary``, ``input``.
"""
