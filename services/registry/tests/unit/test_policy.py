import pytest

from registry.domain.channels import Channel, IllegalTransition, ReleaseState
from registry.domain.policy import InvalidPolicy, Policy, evaluate


def test_channels_are_promoted_in_order_and_never_skipped():
    state = ReleaseState()
    with pytest.raises(IllegalTransition) as caught:
        state.promote(Channel.STAGING)
    assert caught.value.reason == "skipped-channel"
    state = state.promote(Channel.DEV).promote(Channel.STAGING)
    with pytest.raises(IllegalTransition) as caught:
        state.promote(Channel.STAGING)
    assert caught.value.reason == "already-promoted"
    assert state.promote(Channel.STABLE).channels == (Channel.DEV, Channel.STAGING, Channel.STABLE)


def test_a_yanked_release_is_on_no_channel_and_never_promoted_again():
    state = ReleaseState().promote(Channel.DEV).yank()
    assert state.live_channels == ()
    with pytest.raises(IllegalTransition) as caught:
        state.promote(Channel.STAGING)
    assert caught.value.reason == "yanked"
    with pytest.raises(IllegalTransition):
        state.yank()


def test_threshold_counts_only_required_keys_and_their_successors():
    policy = Policy(Channel.STABLE, threshold=2, required_key_ids=("a", "b"))
    assert evaluate(policy, {"a", "c"}, set()).reasons == ("below-threshold",)
    assert evaluate(policy, {"a", "b2"}, set(), successors={"b": "b1", "b1": "b2"}).passed
    assert evaluate(policy, {"a", "b"}, set()).counted_key_ids == ("a", "b")


def test_unsigned_and_missing_evidence_are_named():
    policy = Policy(Channel.STAGING, required_evidence=("uat", "security-scan"))
    result = evaluate(policy, set(), {"uat"})
    assert result.reasons == ("unsigned", "missing-evidence")
    assert evaluate(policy, {"k"}, {"uat", "security-scan", "extra"}).passed


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"threshold": 0}, "threshold"),
        ({"threshold": 3, "required_key_ids": ("a", "b")}, "threshold"),
        ({"required_evidence": ("Not A Kind",)}, "required_evidence"),
    ],
)
def test_invalid_policies_name_the_field(kwargs, field):
    with pytest.raises(InvalidPolicy) as caught:
        Policy(Channel.DEV, **kwargs)
    assert caught.value.field == field
