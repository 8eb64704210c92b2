"""Benchmarks that compare the gateway with direct boto3 against the same backends, in one run.

``python -m bench.run`` (``make bench``); see ``bench/README.md`` for what each figure means.
"""

__all__: list[str] = []
