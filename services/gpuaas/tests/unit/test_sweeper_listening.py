"""Silent nodes are judged only after a whole heartbeat timeout of listening (since the start,
or since the database was last unreachable): a control-plane outage is not a node's silence.
Regression for the chaos run's finding (every running allocation released as node_lost when
gpuaas came back from a restart longer than the heartbeat timeout)."""

from gpuaas.app.sweeper import Listening


def test_not_right_after_start() -> None:
    listening = Listening(since=100.0)
    assert not listening.long_enough(100.0, 15.0)
    assert not listening.long_enough(114.9, 15.0)
    assert listening.long_enough(115.0, 15.0)


def test_an_outage_restarts_the_wait() -> None:
    listening = Listening(since=0.0)
    assert listening.long_enough(60.0, 15.0)
    listening.interrupted(60.0)  # the database was unreachable at 60 s
    assert not listening.long_enough(70.0, 15.0)
    assert listening.long_enough(75.0, 15.0)
