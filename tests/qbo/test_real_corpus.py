"""Every real QuickBooks answer in tests/qbo/real: classified as a finance team needs, and fitting the goldens."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest
from real_corpus import CORPUS, Sample, body_of, check, load
from sandbox.golden_shapes import assert_conforms, golden, xml_shape
from sandbox.sandbox_helpers import Qbo, authorized_client, make_sandbox

from qbo import faults
from qbo.faults import CATALOGUE
from qbo.sandbox import Limits

SAMPLES = load()
# Every code ref §3 names, each of which a real answer in the corpus must carry.
REFERENCE_CODES = {
    "120", "500", "610", "2020", "2170", "2500", "3001", "3100", "3200", "4000", "5010", "6000", "6140", "6190",
    "6210", "6240", "6540", "10000",
}  # fmt: skip


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_every_real_answer_is_classified_as_a_finance_team_needs(sample: Sample) -> None:
    checked = check(sample)
    assert checked.right, "\n".join(checked.problems)


def _golden_for(sample: Sample, body: Any) -> str | None:
    """The golden a real JSON answer must fit, by what it is (None: no golden covers it)."""
    if not isinstance(body, dict):
        return None
    if "Fault" in body:
        return "standard_fault"
    if "fault" in body:
        return "gateway_fault"
    if "BatchItemResponse" in body:
        return "batch_response"
    if "CDCResponse" in body:
        return "cdc_empty" if body["CDCResponse"] == [{"QueryResponse": [{}]}] else "cdc_response"
    if "QueryResponse" in body:
        return "query_response" if body["QueryResponse"] else "query_empty"
    if "error" in body:
        return "invalid_grant"
    if "access_token" in body:
        return "token_response"
    entity = next((v for k, v in body.items() if k != "time"), None)
    if isinstance(entity, dict):
        return "delete_reply" if entity.get("status") == "Deleted" else "entity_envelope"
    return None


JSON_SAMPLES = [s for s in SAMPLES if s.form in ("json", "pylit", "pylit-fault", "pylit-item")]


@pytest.mark.parametrize("sample", JSON_SAMPLES, ids=[s.name for s in JSON_SAMPLES])
def test_every_golden_accepts_every_real_answer_of_its_kind(sample: Sample) -> None:
    # A golden that rejects a real answer is wrong: it would keep the sandbox from answering as QBO does.
    body = json.loads(body_of(sample))
    name = _golden_for(sample, body)
    assert name is not None, f"no golden covers {sample.name}"
    assert_conforms(body, golden(name))


THROTTLES = [s for s in SAMPLES if s.kind == "throttle"]


@pytest.mark.parametrize("sample", THROTTLES, ids=[s.name for s in THROTTLES])
def test_the_sandbox_throttle_has_the_shape_of_every_real_one(sample: Sample) -> None:
    status = sample.status or 429
    sandbox = make_sandbox(limits=Limits(per_minute=0), throttle_status=status)
    with authorized_client(sandbox) as http:
        reply = Qbo(http).read("Vendor", "1")
    assert reply.status_code == status and reply.headers["content-type"] == "application/xml"
    assert xml_shape(reply.content) == xml_shape(sample.raw())
    message = re.search(rb"<Message>(.*?)</Message>", sample.raw())
    assert message is not None and message.group(1) in reply.content


def test_the_manifest_names_every_file_and_every_source() -> None:
    files = {p.name for p in CORPUS.iterdir() if p.name != "manifest.json" and p.name != "README.md"}
    named = {s.entry["file"] for s in SAMPLES if "file" in s.entry}
    assert files == named
    for s in SAMPLES:
        source = s.entry["source"]
        assert ("repo" in source and "path" in source and "commit" in source) or "thread" in source, s.name
        assert s.expect, s.name


def _codes(sample: Sample) -> set[str]:
    if sample.form == "fragment":
        return {str(sample.entry["fields"]["code"])}
    text = body_of(sample).decode("utf-8", "replace")
    found = set(re.findall(r'"code"\s*:\s*"(\w+)"', text)) | set(re.findall(r'code="(\w+)"', text))
    found |= set(re.findall(r"""['"]code['"]: ['"](\w+)['"]""", text))
    return found


def test_the_corpus_carries_every_code_of_the_reference_and_each_is_catalogued() -> None:
    seen = set().union(*(_codes(s) for s in SAMPLES))
    assert REFERENCE_CODES <= seen, sorted(REFERENCE_CODES - seen)
    catalogued = {c for r in CATALOGUE.values() for c in r.codes}
    assert seen <= catalogued, sorted(seen - catalogued)


def test_the_corpus_meets_no_code_the_catalogue_does_not_know() -> None:
    before = faults.unknown_codes()
    for sample in SAMPLES:
        check(sample)
    assert faults.unknown_codes() == before


def test_money_in_a_real_entity_reply_stays_exact() -> None:
    invoice = next(s for s in SAMPLES if s.name == "entity_invoice_read_qboapi.json")
    body = json.loads(body_of(invoice), parse_float=Decimal)
    assert body["Invoice"]["TotalAmt"] == Decimal("100.00")
    assert check(invoice).right
