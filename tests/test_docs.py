"""The README documents the contract exactly as the code enforces it, and the CLI commands that exist."""

from __future__ import annotations

import re
from pathlib import Path

from pipelines.cli import build_parser
from pipelines.ingest import REMOVAL_SHARE
from qbo.sandbox.faults import FAULT_KINDS
from schemas.awra import contract_markdown
from schemas.manifest import parse_manifest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_carries_the_contract_as_enforced() -> None:
    block = re.search(r"<!-- contract:start[^>]*-->\n(.*)<!-- contract:end -->", README, re.S)
    assert block, "README lost its contract markers"
    assert block.group(1) == contract_markdown(), "README contract drifted: paste contract_markdown() output"


def test_readme_names_every_cli_command() -> None:
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in commands:
        assert f"synchealth {name}" in README, name


def test_readme_gives_the_two_setup_commands() -> None:
    assert "make run" in README and "make test" in README


def test_readme_manifest_example_is_a_delta_the_app_reads() -> None:
    block = re.search(r"<!-- manifest:example -->\n```json\n(.*?)```", README, re.S)
    assert block, "README lost its manifest example"
    manifest = parse_manifest(block.group(1))
    assert manifest.is_delta and manifest.removed == {"bills": ("BILL-1042",), "vendors": ("VEN-7",)}
    assert f"more than {REMOVAL_SHARE:.0%} of a table's live records" in README


def test_readme_names_every_fault_the_sandbox_can_inject() -> None:
    for kind in FAULT_KINDS:
        assert f"`{kind}`" in README, kind
