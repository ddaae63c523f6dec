"""Benchmark data: the sample schema, suites and their builders."""
