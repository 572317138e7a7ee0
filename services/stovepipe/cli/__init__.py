"""The ``stovepipe`` console script."""
