"""What the test suite and the benchmarks share: real services started on demand, the
product as a process tree whose parts can be broken (``fault_stack``, ``chaos_proxy``,
``fault_checks``, ``soak``), the pipeline in one process (``live``), git repositories,
and per-area harnesses. Not part of the product: extension authors get the contract
suites from :mod:`stovepipe.testing.contracts`.
"""
