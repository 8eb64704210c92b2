"""Ray jobs and tasks: bulk import/migration, repair sweep, scrubber, placement checker,
vacuum, metadata snapshot, audit archiver, erasure-coding tasks (the self-healing, import and
policy issues fill this package; it imports ``actors``/``schema``/``cluster``, never ``gateway``).
"""

__all__: list[str] = []
