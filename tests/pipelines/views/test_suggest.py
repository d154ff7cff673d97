"""Mapping suggestions: a score behind every proposal, and no proposal where the names do not match."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures import REALM, tiny_snapshot
from world import World

from pipelines.views.suggest import SUGGEST_AT, suggestion, target_scores


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    w = World(Path(tmp_path_factory.mktemp("suggest")), tiny_snapshot())
    w.pull()  # QuickBooks: items Widget (WID-100) and Install (SVC-1), accounts by number, payment method Check
    return w


def test_the_same_sku_or_account_number_scores_one(world: World) -> None:
    item = target_scores(world.store, REALM, "item", "WID-100")
    assert item.row(0, named=True) == {"qbo_entity": "Item", "qbo_id": "1", "name": "Widget", "active": True,
                                       "score": 1.0, "basis": "same SKU"}  # fmt: skip
    account = suggestion(target_scores(world.store, REALM, "account", "5000"))
    assert account is not None and (account["name"], account["basis"]) == ("Cost of Goods", "same account number")


def test_a_similar_name_is_suggested_with_its_score_and_an_unrelated_one_is_not(world: World) -> None:
    widgets = target_scores(world.store, REALM, "item", "Widgets")
    best = suggestion(widgets)
    assert best is not None and best["name"] == "Widget" and SUGGEST_AT <= best["score"] < 0.95
    assert widgets["score"].is_sorted(descending=True)

    crypto = target_scores(world.store, REALM, "payment_method", "Crypto")
    assert crypto["name"].to_list() == ["Check"]  # offered to choose from ...
    assert suggestion(crypto) is None  # ... but never proposed: nothing says Crypto is a cheque
    assert suggestion(target_scores(world.store, REALM, "payment_method", "ACH")) is None


def test_an_inactive_object_is_offered_but_never_suggested(world: World) -> None:
    world.store.execute("UPDATE qbo_objects SET active = false WHERE entity = 'Item' AND qbo_id = '1'")
    try:
        scores = target_scores(world.store, REALM, "item", "WID-100")
        assert scores.filter(scores["qbo_id"] == "1")["score"].to_list() == [1.0]
        assert suggestion(scores) is None
    finally:
        world.store.execute("UPDATE qbo_objects SET active = true WHERE entity = 'Item' AND qbo_id = '1'")


def test_an_unknown_kind_is_refused(world: World) -> None:
    with pytest.raises(ValueError, match="mapping kind must be one of"):
        target_scores(world.store, REALM, "colour", "red")
