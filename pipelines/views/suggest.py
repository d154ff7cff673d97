"""Which QuickBooks object an AWRA value should map to, with a score a person can weigh: the Mappings page proposes
a target only when a score stands behind it, and otherwise asks for a choice.

Scores, in one query over the company's QuickBooks objects of the kind (DuckDB's string functions, no Python loop):
- 1.00: the same SKU or account number;
- 0.95: the same name once case, punctuation and company suffixes are set aside;
- otherwise the names' similarity: the mean of Jaro-Winkler (shared prefix, typos) and character Jaccard (shared
  letters), each on the normalised names, against the value and (items, accounts) against its name in AWRA.
A score of SUGGEST_AT or more is a suggestion; an inactive object is never suggested (mapping to it would be stale).
"""

from __future__ import annotations

import polars as pl

from pipelines.duplicates import normalize_name_sql
from pipelines.mappings import KINDS
from pipelines.store import Store, current_view

__all__ = ["CHOICES", "SUGGEST_AT", "suggestion", "target_scores"]

SUGGEST_AT = 0.82  # below it two unrelated short names (Cash, ACH) can look alike: ask instead
CHOICES = 500  # targets a page offers, best first (a chart of accounts or item list larger than this is searched)
_SCHEMA = {"qbo_entity": pl.String, "qbo_id": pl.String, "name": pl.String, "active": pl.Boolean,
           "score": pl.Float64, "basis": pl.String}  # fmt: skip


def target_scores(store: Store, realm_id: str, kind: str, value: str, limit: int = CHOICES) -> pl.DataFrame:
    """Every QuickBooks object `value` of `kind` could map to (deleted ones left out), scored, best first."""
    if kind not in KINDS:
        raise ValueError(f"mapping kind must be one of {', '.join(KINDS)}, not {kind!r}")
    spec = KINDS[kind]
    name_of_value = "CAST(NULL AS VARCHAR)"
    if spec.awra_names:
        view, id_col, name_col = spec.awra_names
        name_of_value = (
            f"(SELECT any_value({name_col}) FROM {current_view(view)} WHERE realm_id = $realm AND {id_col} = $value)"
        )
    key_match = f"coalesce(o.{spec.key_column} = $value, false)" if spec.key_column else "false"
    norm_o = normalize_name_sql("o.name")
    norm_v = normalize_name_sql("a.value")
    norm_n = normalize_name_sql("a.awra_name")

    def similar(left: str, right: str) -> str:
        both = f"coalesce(length({left}), 0) > 0 AND coalesce(length({right}), 0) > 0"
        mean = f"(jaro_winkler_similarity({left}, {right}) + jaccard({left}, {right})) / 2"
        return f"CASE WHEN {both} THEN {mean} ELSE 0 END"

    frame = store.frame(
        f"""WITH a AS (SELECT CAST($value AS VARCHAR) AS value, {name_of_value} AS awra_name),
                 scored AS (
                   SELECT o.entity AS qbo_entity, CAST(o.qbo_id AS VARCHAR) AS qbo_id, o.name, o.active,
                          {key_match} AS same_key,
                          ({norm_o} = {norm_v} OR coalesce({norm_o} = {norm_n}, false)) AS same_name,
                          greatest({similar(norm_o, norm_v)}, {similar(norm_o, f"coalesce({norm_n}, '')")}) AS sim
                   FROM qbo_objects o, a
                   WHERE o.realm_id = $realm AND list_contains($entities, o.entity) AND NOT o.deleted)
            SELECT qbo_entity, qbo_id, name, active,
                   round(CASE WHEN same_key THEN 1.0 WHEN same_name THEN 0.95 ELSE least(sim, 0.94) END, 2)
                     AS score,
                   CASE WHEN same_key THEN 'same {"account number" if kind == "account" else "SKU"}'
                        WHEN same_name THEN 'same name' ELSE 'similar name' END AS basis
            FROM scored
            ORDER BY score DESC, active DESC, name, qbo_id
            LIMIT $limit""",
        {"realm": realm_id, "value": value, "entities": list(spec.qbo_entities), "limit": limit},
    )
    return (
        frame.select([pl.col(c).cast(t) for c, t in _SCHEMA.items()]) if frame.width else pl.DataFrame(schema=_SCHEMA)
    )


def suggestion(scores: pl.DataFrame) -> dict | None:
    """The target to propose: the best active one scoring SUGGEST_AT or more; None asks the person to choose."""
    best = scores.filter(pl.col("active") & (pl.col("score") >= SUGGEST_AT)).head(1)
    return best.row(0, named=True) if best.height else None
