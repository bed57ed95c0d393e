import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpucloud_terminal import protocol
from gpucloud_terminal.protocol import Control, FlowControl, ProtocolError, Reattach


def _size(text: str) -> tuple[int, int] | None:
    try:
        return protocol.window_size(protocol.decode(text))
    except ProtocolError:
        return None


class TestControlMessages:
    def test_round_trip(self):
        control = protocol.decode(protocol.encode("closing", reason="revoked", message=None))
        assert control == Control("closing", {"reason": "revoked"})

    def test_resize(self):
        assert _size(protocol.resize(120, 40)) == (120, 40)

    @pytest.mark.parametrize(
        "text",
        [
            '{"type": "resize", "cols": 0, "rows": 40}',
            '{"type": "resize", "cols": 120}',
            '{"type": "resize", "cols": true, "rows": 40}',
            '{"type": "resize", "cols": "120", "rows": 40}',
            '{"type": "signal", "name": "INT"}',
        ],
    )
    def test_anything_else_is_no_window_size(self, text):
        assert _size(text) is None

    @pytest.mark.parametrize("text", ["not json", "[]", '{"kind": "resize"}', '{"type": 7}'])
    def test_a_frame_that_is_no_control_message_is_refused(self, text):
        with pytest.raises(ProtocolError):
            protocol.decode(text)

    @given(st.text())
    def test_decoding_never_fails_otherwise(self, text):
        try:
            size = protocol.window_size(protocol.decode(text))
        except ProtocolError:
            return
        assert size is None or all(1 <= v <= 1000 for v in size)

    def test_exec_frames_keep_their_stream(self):
        assert protocol.split_exec_frame(protocol.exec_frame(protocol.STDERR, b"x")) == (2, b"x")
        with pytest.raises(ProtocolError):
            protocol.split_exec_frame(b"\x07x")

    def test_a_browser_offers_its_token_as_a_subprotocol(self):
        offered = [protocol.SUBPROTOCOL, protocol.bearer_subprotocol("a.b.c")]
        assert protocol.token_from_subprotocols(offered) == "a.b.c"
        assert protocol.token_from_subprotocols([protocol.SUBPROTOCOL, "bearer."]) is None


class TestFlowControl:
    def test_pauses_above_high_and_resumes_below_low(self):
        flow = FlowControl(high=100, low=10)
        assert flow.received(60) is None
        assert protocol.decode(flow.received(60)).type == "pause"
        assert flow.received(60) is None  # already paused: said once
        assert flow.consumed(100) is None  # 80 waiting: still above low
        assert protocol.decode(flow.consumed(75)).type == "resume"
        assert flow.consumed(5) is None

    @given(st.lists(st.tuples(st.booleans(), st.integers(0, 1000)), max_size=100))
    def test_pause_and_resume_alternate(self, steps):
        flow, said = FlowControl(high=500, low=50), []
        for arrived, n in steps:
            message = flow.received(n) if arrived else flow.consumed(n)
            if message:
                said.append(protocol.decode(message).type)
        assert all(a != b for a, b in itertools.pairwise(said))
        assert not said or said[0] == "pause"


class TestReattach:
    def test_a_drop_is_worth_a_reattach_an_ending_is_not(self):
        policy = Reattach()
        assert policy.worth_it(1006, None)
        assert policy.worth_it(None, None)
        assert policy.worth_it(1000, Control("closing", {"reason": "node_lost", "reattach": True}))
        assert not policy.worth_it(1000, None)
        assert not policy.worth_it(4403, None)
        assert not policy.worth_it(1006, Control("closing", {"reason": "revoked"}))

    def test_the_pauses_grow_and_stay_inside_the_grace_window(self):
        delays = Reattach(give_up_after_s=10, first_delay_s=0.5, max_delay_s=2).delays()
        assert delays[:4] == [0.5, 1.0, 2.0, 2.0]
        assert sum(delays) <= 10
