import json

from gpucloud_cli.exit_codes import ExitCode
from gpucloud_cli.sdk import errors as e

PROBLEMS = "https://gpucloud.dev/problems/"


def _problem(status: int, slug: str, title: str, **extra) -> bytes:
    body = {"type": PROBLEMS + slug, "title": title, "status": status, **extra}
    return json.dumps(body).encode()


def test_a_validation_problem_keeps_its_fields() -> None:
    body = _problem(
        400,
        "validation",
        "Request validation failed",
        detail="mig_profile: not a MIG profile of h100-80gb",
        errors=[{"field": "mig_profile", "message": "not a MIG profile of h100-80gb"}],
        trace_id="abc123",
    )
    error = e.from_answer(400, {}, body)
    assert isinstance(error, e.ValidationFailed)
    assert error.exit_code == ExitCode.VALIDATION
    assert error.errors == [e.FieldError("mig_profile", "not a MIG profile of h100-80gb")]
    assert error.to_json() | {"hint": None} == {
        "class": "validation",
        "exit_code": 5,
        "title": "Request validation failed",
        "detail": "mig_profile: not a MIG profile of h100-80gb",
        "hint": None,
        "status": 400,
        "type": PROBLEMS + "validation",
        "errors": [{"field": "mig_profile", "message": "not a MIG profile of h100-80gb"}],
        "trace_id": "abc123",
    }


def test_each_status_gets_its_class() -> None:
    cases = {
        401: e.AuthError,
        403: e.AuthError,
        404: e.NotFound,
        409: e.Conflict,
        402: e.PaymentRequired,
        429: e.Throttled,
        500: e.ServerError,
        503: e.ServerError,
    }
    for status, cls in cases.items():
        assert type(e.from_answer(status, {}, _problem(status, "x", "t"))) is cls, status


def test_iam_sign_in_answers_are_auth_problems() -> None:
    mfa = e.from_answer(400, {}, _problem(400, "mfa-required", "mfa_required"))
    assert isinstance(mfa, e.MfaRequired) and mfa.exit_code == ExitCode.AUTH
    grant = e.from_answer(400, {}, _problem(400, "invalid-grant", "invalid_grant"))
    assert isinstance(grant, e.AuthError) and grant.exit_code == ExitCode.AUTH


def test_a_step_up_challenge_says_what_to_do() -> None:
    headers = {"www-authenticate": 'Bearer error="insufficient_user_authentication", max_age=600'}
    error = e.from_answer(401, headers, _problem(401, "unauthorized", "Authentication required"))
    assert isinstance(error, e.StepUpRequired)
    assert "second factor" in (error.hint or "")


def test_an_answer_that_is_not_problem_json_is_still_described() -> None:
    error = e.from_answer(502, {"x-trace-id": "t1"}, b"<html>bad gateway</html>", "Bad Gateway")
    assert isinstance(error, e.ServerError)
    assert (error.title, error.detail, error.trace_id) == (
        "Bad Gateway",
        "<html>bad gateway</html>",
        "t1",
    )
    empty = e.from_answer(404, {}, b"")
    assert (empty.title, empty.detail, empty.exit_code) == ("HTTP 404", None, ExitCode.NOT_FOUND)


def test_local_errors_have_classes_too() -> None:
    assert e.NotSignedIn("x").exit_code == ExitCode.AUTH
    assert e.NetworkError("x").exit_code == ExitCode.NETWORK
    assert e.UnknownName("x").exit_code == ExitCode.NOT_FOUND
    invalid = e.InvalidInput("sku", "unknown SKU")
    assert invalid.exit_code == ExitCode.VALIDATION
    assert invalid.to_json()["errors"] == [{"field": "sku", "message": "unknown SKU"}]
    unfinished = e.Unfinished("ended rejected", document={"allocation": {"state": "rejected"}})
    assert unfinished.exit_code == ExitCode.UNFINISHED
    assert unfinished.to_json()["allocation"] == {"state": "rejected"}
