"""One run: the workers that send items through the limits, the retry policy, the circuit
breaker, and the writer of each item's single outcome.

May import: every package but ``cli``, ``dlq`` and ``mock``.
"""
