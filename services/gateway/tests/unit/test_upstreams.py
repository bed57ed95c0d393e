import pytest

from gateway.upstreams import parse_upstreams


class TestUpstreams:
    def test_parses_route_to_url_pairs(self):
        assert parse_upstreams("iam=http://a:1, audit=https://b:2/") == {
            "iam": "http://a:1",
            "audit": "https://b:2",
        }

    def test_empty_means_none(self):
        assert parse_upstreams("") == {}

    @pytest.mark.parametrize("bad", ["iam", "iam=ftp://x", "=http://x"])
    def test_malformed_entries_are_refused_with_the_entry_named(self, bad):
        with pytest.raises(ValueError, match="GPUCLOUD_UPSTREAMS"):
            parse_upstreams(bad)
