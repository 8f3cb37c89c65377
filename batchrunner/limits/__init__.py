"""When a request may leave: pacing, concurrency slots, tokens per minute, the adaptive
rate, spending, prices and token estimates.

May import: ``config``, ``errors``, ``vocabulary``, ``input``.
"""
