import random

import pytest

from registry.domain.semver import InvalidVersion, Version

# semver.org section 11's example, in precedence order
ORDERED = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.1",
    "1.1.0",
    "2.0.0",
    "10.0.0",
]


def test_precedence_follows_the_specification():
    shuffled = ORDERED[:]
    random.Random(7).shuffle(shuffled)
    assert [str(v) for v in sorted(Version.parse(s) for s in shuffled)] == ORDERED


def test_build_metadata_does_not_change_precedence():
    assert Version.parse("1.0.0+build.1") == Version.parse("1.0.0+other")
    assert str(Version.parse("1.0.0-rc.1+sha.abc")) == "1.0.0-rc.1+sha.abc"


@pytest.mark.parametrize(
    "text", ["1.0", "01.0.0", "1.0.0-", "1.0.0-01", "v1.0.0", "1.0.0+", " 1.0.0", "1.0.0-a..b"]
)
def test_invalid_versions_are_refused(text):
    with pytest.raises(InvalidVersion):
        Version.parse(text)
