"""The composition root: how a Bulletproof cluster is assembled and run (``bootstrap``),
and the ``bulletproof`` operator CLI. The top layer: it may import every other package."""

__all__: list[str] = []
