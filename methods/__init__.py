"""Editing method adapters, one self-contained module or folder each.

The harness imports them lazily through `partedit_bench.method_api.METHOD_REGISTRY`.
"""
