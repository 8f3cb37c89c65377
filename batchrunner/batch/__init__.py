"""``--via batch``: a run sent as Mistral Batch API jobs, their outcomes brought home into the
same results and dead-letter files. Preparing the upload files (``prepare``), the ids each
job covers (``ids``), sending what is still to send (``submit``), the durable record of the
jobs (``jobs``), the API calls with our retries (``api``), bringing outcomes home
(``home``), the run that ties them (``run``).

May import: ``config``, ``errors``, ``vocabulary``, ``runfiles``, ``input``, ``clients``,
``limits``, ``ledger``, ``engine``.
"""
