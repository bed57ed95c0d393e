from gpucloud_cli.progress import NOT_RUNNING_ANY_MORE, Follow
from gpucloud_cli.sdk.models import Allocation


def _allocation(state: str, reason: str | None = None) -> Allocation:
    return Allocation(
        "a1",
        "t1",
        "p1",
        "h100-80gb",
        None,
        1,
        state,
        "gpu:h100-80gb",
        "2026-12-03T12:00:00Z",
        "2026-12-03T12:00:00Z",
        [],
        reason=reason,
    )


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _follow(states: list[Allocation], time: FakeTime, timeout_s: float = 60) -> Follow:
    feed = iter(states)
    return Follow(
        lambda: next(feed),
        until=frozenset({"running"}),
        gives_up=NOT_RUNNING_ANY_MORE,
        timeout_s=timeout_s,
        display=False,
        label="a1",
        clock=time.clock,
        sleep=time.sleep,
    )


def test_follows_to_running_recording_each_state_once() -> None:
    time = FakeTime()
    states = ["provisioning", "provisioning", "running"]
    follow = _follow([_allocation(s) for s in states], time)
    last, reached = follow.run(_allocation("scheduled"))
    assert reached and last.state == "running"
    assert [h["state"] for h in follow.history] == ["scheduled", "provisioning", "running"]
    assert follow.history[-1]["seconds"] == 0.75


def test_gives_up_when_it_can_no_longer_run() -> None:
    time = FakeTime()
    follow = _follow([_allocation("failed", "provision_error")], time)
    last, reached = follow.run(_allocation("provisioning"))
    assert not reached and last.reason == "provision_error"


def test_an_allocation_already_there_needs_no_request() -> None:
    follow = _follow([], FakeTime())
    assert follow.run(_allocation("running"))[1] is True


def test_stops_at_the_timeout() -> None:
    time = FakeTime()
    follow = _follow([_allocation("provisioning")] * 100, time, timeout_s=2)
    last, reached = follow.run(_allocation("scheduled"))
    assert not reached and last.state == "provisioning" and time.now <= 2.5
