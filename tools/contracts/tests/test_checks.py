"""The contract checks `just lint` runs (tools/contracts/generate.py --check) refuse what they
must: a subscription to a channel the service's document does not receive, seed rows that
differ from the GPU catalog."""

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "generate.py"
_spec = importlib.util.spec_from_file_location("contracts_generate", _PATH)
generate = importlib.util.module_from_spec(_spec)
sys.modules["contracts_generate"] = generate
_spec.loader.exec_module(generate)


def test_every_service_receives_what_it_subscribes_to():
    from audit.bootstrap import DEFINITION as audit
    from billing.bootstrap import DEFINITION as billing
    from gpuaas.bootstrap import DEFINITION as gpuaas

    docs = generate.Documents()
    for definition in (audit, billing, gpuaas):
        generate.check_receives(docs, definition.name, frozenset(definition.consumed_topics))
    generate.check_kit_receives(docs)
    generate.check_seed_rows()


def test_a_subscription_without_a_receive_operation_is_refused():
    docs = generate.Documents()
    with pytest.raises(generate.ContractError, match=r"gpuaas\.node\.v1"):
        generate.check_receives(docs, "billing", frozenset({"gpuaas.node.v1"}))
    with pytest.raises(generate.ContractError, match=r"registry\.yaml"):
        generate.check_receives(docs, "registry", frozenset({"iam.tenant.v1"}))


def test_seed_rows_that_differ_from_the_catalog_are_refused(tmp_path, monkeypatch):
    seed = tmp_path / "0004.sql"
    text = generate.PRICE_SEED.read_text().replace("'gpu:h100-80gb', 3600000", "'gpu:h100-80gb', 1")
    seed.write_text(text)
    monkeypatch.setattr(generate, "PRICE_SEED", seed)
    with pytest.raises(generate.ContractError, match="gpu:h100-80gb"):
        generate.check_seed_rows()
