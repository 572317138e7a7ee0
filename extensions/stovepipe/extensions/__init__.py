"""Extension contracts' typed clients, in-process fakes and reference servers.

Layout: ``<kind>/client.py`` is the typed client core uses, ``<kind>/fake.py`` an
in-process fake for unit tests, and ``<kind>/<impl>/`` a reference server run
as its own process by ``stovepipe ext <impl>``.
"""
