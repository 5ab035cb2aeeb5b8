"""Persistence: an object must be seen (or missed) in K of the last N passes that saw the ground.

A pass that did not see the ground under an object (outside its footprint, nodata, a cloud
mask) says nothing about it and is skipped, so the sequences here hold only the passes that
could see the object, newest first. A one-pass artefact (a cloud edge, a grid shift that
breaks an outline) then never reaches K, and an object that one pass missed does not come
back as new.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

__all__ = ["persistent_change"]

When = Literal["new", "present", "gone"]


def persistent_change(seen: Sequence[bool], when: When, passes: int, of: int) -> bool:
    """Whether an object's sightings make a persistent ``when`` change now.

    Args:
        seen: for each pass that saw the ground under the object, newest (the current pass)
            first, whether the object was there.
        when: ``present``: there now and in at least ``passes`` of the last ``of`` passes.
            ``new``: there now, and it appeared (absent, then present) within the last ``of``
            passes, present in at least ``passes`` of them since, and absent in at least
            ``passes`` of the ``of`` passes before it appeared (in all of them when fewer were
            seen). ``gone``: the same with present and absent swapped.
        passes: K.
        of: N.

    Returns:
        True when the change holds.

    Without persistence (1 of 1) ``new`` is "there now, absent in the previous pass":

    >>> persistent_change([True, False], "new", 1, 1)
    True
    >>> persistent_change([True], "new", 1, 1)  # the first pass: nothing to compare with
    False

    With 2 of 3, a one-pass artefact does not alert, and neither does one missed pass:

    >>> persistent_change([True, False, False], "new", 2, 3)
    False
    >>> persistent_change([True, True, False], "new", 2, 3)
    True
    >>> persistent_change([True, False, True, True], "new", 2, 3)  # missed once, back again
    False
    >>> persistent_change([False, False, True, True], "gone", 2, 3)
    True
    >>> persistent_change([True, False, True], "present", 2, 3)
    True
    """
    if not seen or passes < 1 or of < passes:
        return False
    if when == "present":
        return bool(seen[0]) and sum(bool(s) for s in seen[:of]) >= passes
    target = when == "new"  # the state the object changed into
    if bool(seen[0]) != target:
        return False
    for onset in range(min(of, len(seen) - 1)):
        if bool(seen[onset]) != target or bool(seen[onset + 1]) == target:
            continue
        after = seen[: onset + 1]
        before = seen[onset + 1 : onset + 1 + of]
        if sum(bool(s) == target for s in after) < passes:
            continue
        if sum(bool(s) != target for s in before) >= min(passes, len(before)):
            return True
    return False
