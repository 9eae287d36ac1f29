"""Local servers and fixtures for tests, benchmarks and notebooks (never reach the network)."""
