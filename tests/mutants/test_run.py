"""`make mutants` breaks each invariant's code by replacing a line it names: when the code
moves and the line is gone, the mutant cannot be made. Caught here, not the next time
somebody runs the mutants."""

from __future__ import annotations

import pytest

from tests.mutants.run import MUTANTS, ROOT, Mutant


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_each_mutant_s_lines_are_found_once(mutant: Mutant) -> None:
    for patch in mutant.patches:
        assert (ROOT / patch.path).read_text().count(patch.old) == 1, patch.path
