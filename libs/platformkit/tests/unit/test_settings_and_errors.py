import msgspec

from platformkit.errors import PROBLEM_BASE, NotFound, Unauthorized, ValidationFailed
from platformkit.settings import ServiceSettings


class TestSettingsNeverShowSecrets:
    def test_repr_hides_database_url_and_operator_token(self, monkeypatch):
        monkeypatch.setenv("GPUCLOUD_DATABASE_URL", "postgresql://iam:s3cret@db:5432/iam")
        monkeypatch.setenv("GPUCLOUD_OPERATOR_TOKEN", "op-s3cret")
        settings = ServiceSettings.from_env("iam")
        assert "s3cret" not in repr(settings)
        assert settings.database_url_masked == "postgresql://iam:***@db:5432/iam"

    def test_defaults_and_overrides(self, monkeypatch):
        monkeypatch.setenv("GPUCLOUD_HTTP_PORT", "9999")
        monkeypatch.delenv("GPUCLOUD_SERVICE_NAME", raising=False)
        settings = ServiceSettings.from_env("billing", "1.2.3")
        assert (settings.service_name, settings.version, settings.http_port) == (
            "billing",
            "1.2.3",
            9999,
        )


class TestProblemDetails:
    def test_validation_error_names_the_field(self):
        problem = ValidationFailed.for_field("slug", "bad").to_problem("/v1/x", "abc")
        data = msgspec.to_builtins(problem)
        assert data["type"] == PROBLEM_BASE + "validation"
        assert data["status"] == 422
        assert data["errors"] == [{"field": "slug", "message": "bad"}]
        assert data["instance"] == "/v1/x"

    def test_optional_members_are_omitted(self):
        data = msgspec.to_builtins(NotFound("gone").to_problem())
        assert data == {
            "type": PROBLEM_BASE + "not-found",
            "title": "Not found",
            "status": 404,
            "detail": "gone",
        }

    def test_unauthorized_carries_a_bearer_challenge(self):
        assert Unauthorized().headers["WWW-Authenticate"].startswith("Bearer")


class TestProductionRequirements:
    def _definition(self, **kw):
        from platformkit.definition import ServiceDefinition

        return ServiceDefinition(name="x", version="0", description="x", route_handlers=[], **kw)

    def test_the_kit_adds_the_database_and_the_kafka_principal(self):
        from platformkit.settings import production_requirements

        names = production_requirements(
            self._definition(migrations="x.m", required_settings=("GPUCLOUD_X",))
        )
        assert names == (
            "GPUCLOUD_DATABASE_URL",
            "GPUCLOUD_KAFKA_BOOTSTRAP",
            "GPUCLOUD_KAFKA_SECURITY_PROTOCOL",
            "GPUCLOUD_KAFKA_SASL_MECHANISM",
            "GPUCLOUD_KAFKA_SASL_USERNAME",
            "GPUCLOUD_KAFKA_SASL_PASSWORD",
            "GPUCLOUD_X",
        )
        assert production_requirements(self._definition(kafka=False)) == ()

    def test_production_refuses_to_start_naming_every_missing_setting(self):
        import pytest

        from platformkit.settings import require_production

        required = ("GPUCLOUD_A", "GPUCLOUD_B", "GPUCLOUD_C")
        with pytest.raises(SystemExit) as refused:
            require_production(
                required,
                {"GPUCLOUD_ENVIRONMENT": "production", "GPUCLOUD_B": "x", "GPUCLOUD_C": ""},
            )
        assert str(refused.value).endswith("not set: GPUCLOUD_A, GPUCLOUD_C")
        require_production(
            required, {"GPUCLOUD_ENVIRONMENT": "production", **dict.fromkeys(required, "v")}
        )
        require_production(required, {})  # development: the defaults stand
