"""The auditor's bound on refused valid tokens (issue 19 item 7): a run of 401s is allowed
while a fault lasts and 5 s after what it hit is ready again, never longer."""

from chaos.audit import Report, check_refusals


def _violations(refusals, faults):
    report = Report()
    check_refusals(report, refusals, faults)
    return [v.detail for v in report.violations], report.figures


def test_refusals_inside_a_fault_and_just_after_it_are_allowed():
    faults = [(100.0, 130.0)]  # iam killed at 100, ready again at 130
    details, figures = _violations(
        [(101.0, 134.0, "GET /v1/billing"), (200.0, 200.4, "GET /v1/gpu")], faults
    )
    assert details == []
    assert figures["longest refusal after a fault (ms)"] == 4000


def test_a_refusal_that_outlasts_its_fault_by_more_than_5_s_is_a_violation():
    details, _ = _violations([(101.0, 190.0, "POST /v1/gpu")], [(100.0, 130.0)])
    assert details == [
        "POST /v1/gpu: refused with 401 for 89.0 s, 60.0 s of it after the faults were over"
        " (bound 5 s)"
    ]


def test_a_refusal_with_no_fault_counts_from_its_start():
    details, _ = _violations([(300.0, 306.5, "GET /v1/audit")], [(100.0, 130.0)])
    assert len(details) == 1 and "6.5 s of it after" in details[0]


def test_a_fault_still_open_allows_the_refusal():
    details, _ = _violations([(101.0, 500.0, "GET /v1/gpu")], [(100.0, float("inf"))])
    assert details == []
