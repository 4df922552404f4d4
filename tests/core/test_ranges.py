"""curate/core/ranges.py: ranges open at the top (a held-out share) and the seed range."""

import pytest

from curate.core.errors import ConfigError
from curate.core.ranges import RATIO, SEED, SHARE, Range, check_value


def test_a_range_open_at_the_top_excludes_its_end():
    assert SHARE.allows(0.0) and SHARE.allows(0.999) and not SHARE.allows(1.0) and not SHARE.allows(float("nan"))
    assert RATIO.allows(1.0)  # closed, as before
    assert SHARE.describe() == "a number in [0, 1)" and SHARE.short() == "[0, 1)"
    assert Range(high=2, high_open=True).describe() == "a number < 2" and Range(high=2, high_open=True).short() == "< 2"
    with pytest.raises(ConfigError, match=r"^cfg: val_fraction = 1.0 is out of range; allowed: a number in \[0, 1\)$"):
        check_value("cfg", "val_fraction", 1.0, SHARE)


def test_seeds_are_what_every_generator_accepts():
    assert SEED.allows(0) and SEED.allows(2**32 - 1)
    assert not SEED.allows(-1) and not SEED.allows(2**32)
