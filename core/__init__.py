"""The pure rules of Bulletproof: the bottom layer, imported by every other server package.

Domain errors (``errors``), settings as a value (``settings``), the envelope and BP1 header
rules (``envelope``), the policy DSL and redundancy classes with their quorum (``policy``,
``quorum``), placement and compliance (``placement``), erasure-code maths (``erasure``: the
only importer of zfec), ETag comparison (``etags``) and the master-key recipe for secrets at
rest (``sealing``). Nothing here does I/O, talks to Ray, PostgreSQL, Redis or a backend, or
imports another package of ours; it is tested without services.
"""

__all__: list[str] = []
