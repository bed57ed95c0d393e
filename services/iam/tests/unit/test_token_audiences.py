"""The `aud` iam mints: its own audience, or every service's when services verify their own
(GPUCLOUD_IAM_TOKEN_AUDIENCES, which the Helm chart derives from services.<name>.tokenAudience)."""

from iam.settings import IamSettings


def test_one_audience_is_a_string():
    assert IamSettings().audience_claim("gpucloud") == "gpucloud"
    assert IamSettings(token_audiences=("gpucloud",)).audience_claim("gpucloud") == "gpucloud"


def test_service_audiences_are_listed_with_iams_own(monkeypatch):
    monkeypatch.setenv("GPUCLOUD_IAM_TOKEN_AUDIENCES", "gpucloud-billing, gpucloud ,")
    settings = IamSettings.from_env()
    assert settings.token_audiences == ("gpucloud-billing", "gpucloud")
    assert settings.audience_claim("gpucloud-iam") == [
        "gpucloud",
        "gpucloud-billing",
        "gpucloud-iam",
    ]
