"""Balance standing and the events each crossing emits."""

from billing.domain.balance import BalanceEvent, Standing, events_for, standing_of


class TestStanding:
    def test_thresholds(self):
        assert standing_of(11, 10) == Standing.OK
        assert standing_of(10, 10) == Standing.LOW
        assert standing_of(0, 10) == Standing.EXHAUSTED
        assert standing_of(-5, 10) == Standing.EXHAUSTED

    def test_low_and_exhausted_fire_once_per_crossing(self):
        assert events_for(Standing.OK, Standing.LOW) == [BalanceEvent.CHANGED, BalanceEvent.LOW]
        assert events_for(Standing.LOW, Standing.LOW) == [BalanceEvent.CHANGED]
        assert events_for(Standing.LOW, Standing.EXHAUSTED) == [
            BalanceEvent.CHANGED,
            BalanceEvent.EXHAUSTED,
        ]
        assert events_for(Standing.OK, Standing.EXHAUSTED)[-1] == BalanceEvent.EXHAUSTED
        assert events_for(Standing.EXHAUSTED, Standing.EXHAUSTED) == [BalanceEvent.CHANGED]
        assert events_for(Standing.EXHAUSTED, Standing.OK) == [BalanceEvent.CHANGED]
