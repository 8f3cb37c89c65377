"""One run: the engine that wires it, run control, accounting, the workers that send items
through the gates, the retry policy, the circuit breaker, and the writer of each item's
single outcome.

May import: ``config``, ``errors``, ``runfiles``, ``vocabulary``, ``input``, ``clients``,
``limits``, ``ledger``.
"""
