"""Throwaway real services for tests, benchmarks and fault injection."""
