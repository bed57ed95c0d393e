"""The one place Kafka clients get their connection and security options from."""

import ssl

import pytest

from platformkit.envelope import SourceMismatch, new_event, source_allowed, verify_source
from platformkit.kafka import KafkaSettings, connection, kafka_settings
from platformkit.settings import ServiceSettings

SASL_ENV = {
    "GPUCLOUD_KAFKA_BOOTSTRAP": "k1:9093,k2:9093",
    "GPUCLOUD_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
    "GPUCLOUD_KAFKA_SASL_USERNAME": "billing",
    "GPUCLOUD_KAFKA_SASL_PASSWORD": "s3cret",
}


class TestKafkaSettings:
    def test_from_env_and_back(self):
        kafka = KafkaSettings.from_env(SASL_ENV)
        assert (kafka.bootstrap, kafka.security_protocol, kafka.sasl_mechanism) == (
            "k1:9093,k2:9093",
            "SASL_SSL",
            "SCRAM-SHA-512",
        )
        assert KafkaSettings.from_env(kafka.as_env()) == kafka
        assert "s3cret" not in repr(kafka)
        assert "s3cret" not in repr(ServiceSettings("billing", kafka=kafka))

    def test_defaults_are_a_plaintext_local_broker(self):
        assert connection(KafkaSettings.from_env({})) == {
            "bootstrap_servers": "127.0.0.1:19092",
            "security_protocol": "PLAINTEXT",
        }

    def test_sasl_ssl_options(self):
        kafka = KafkaSettings.from_env(SASL_ENV)
        options = connection(ServiceSettings("billing", kafka=kafka))  # or its settings
        assert options["sasl_mechanism"] == "SCRAM-SHA-512"
        assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
            "billing",
            "s3cret",
        )
        assert isinstance(options["ssl_context"], ssl.SSLContext)
        assert kafka_settings(ServiceSettings("billing", kafka=kafka)) is kafka

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            ({"GPUCLOUD_KAFKA_SECURITY_PROTOCOL": "TLS"}, "expected one of"),
            ({"GPUCLOUD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs GPUCLOUD_KAFKA_SASL"),
            ({**SASL_ENV, "GPUCLOUD_KAFKA_SASL_MECHANISM": "GSSAPI"}, "SASL_MECHANISM"),
        ],
    )
    def test_a_bad_setting_fails_at_start(self, env, message):
        with pytest.raises(ValueError, match=message):
            KafkaSettings.from_env(env)


class TestSourceCheck:
    def test_only_the_owning_service_publishes_on_a_family(self):
        usage = new_event(type="metering.usage.recorded", source="gpuaas", subject="a", payload={})
        assert verify_source("metering.usage.v1", usage) is usage
        forged = new_event(
            type="metering.usage.recorded", source="billing", subject="a", payload={}
        )
        with pytest.raises(SourceMismatch, match="only gpuaas publish"):
            verify_source("metering.usage.v1", forged)

    def test_every_service_sends_heartbeats_and_scratch_topics_are_unchecked(self):
        assert source_allowed("platform.heartbeat.v1", "terminal-gateway")
        assert not source_allowed("platform.heartbeat.v1", "someone-else")
        assert not source_allowed("iam.tenant.v1", None)
        assert source_allowed("test.abc.v1", "tests")  # no service owns `test`
