"""Where the agent finds appplatform's app-proxy keys: devstack and compose name the JWKS,
Helm gives each caller of appplatform GPUCLOUD_APPPLATFORM_URL (deploy/helm `calls`)."""

from node_agent.bootstrap import DEFINITION, apps_jwks_url


def test_the_jwks_url_wins_then_appplatforms_url_then_none():
    jwks = "http://apps:8000/v1/apps/.well-known/jwks.json"
    assert apps_jwks_url({"GPUCLOUD_APPS_JWKS_URL": jwks, "GPUCLOUD_APPPLATFORM_URL": "x"}) == jwks
    assert (
        apps_jwks_url({"GPUCLOUD_APPPLATFORM_URL": "http://gpucloud-appplatform:8000/"})
        == "http://gpucloud-appplatform:8000/v1/apps/.well-known/jwks.json"
    )
    # no key source: every proxied request is refused (app_proxy), never let through
    assert apps_jwks_url({}) is None


def test_production_requires_where_appplatform_is():
    assert "GPUCLOUD_APPPLATFORM_URL" in DEFINITION.required_settings
