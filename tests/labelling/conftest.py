"""Fixtures of the labelling tests: the shared real Label Studio (``lsfixtures.ls``)."""

from lsfixtures import ls  # noqa: F401  (a pytest fixture)
