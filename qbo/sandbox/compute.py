"""Fields QBO fills in itself: defaults before the rules run, then metadata, totals and balances (ref §5)."""

from __future__ import annotations

import copy
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from qbo.sandbox.clock import format_meta_time
from qbo.sandbox.entities import ACTIVE_FLAG, PARTIES, TRANSACTIONS
from qbo.sandbox.store import RealmStore
from qbo.sandbox.wire import is_digits, to_decimal

__all__ = [
    "PAYER_OF",
    "applied_amount",
    "apply_defaults",
    "finalize",
    "line_total",
    "name_of",
    "refresh_balances",
]

_NAME_PARTS = ("Title", "GivenName", "MiddleName", "FamilyName", "Suffix")
_FQN_ENTITIES = ("Account", "Item", "Class", "Department", "Customer")
_CURRENCY_NAMES = {
    "USD": "United States Dollar",
    "CAD": "Canadian Dollar",
    "GBP": "British Pound Sterling",
    "EUR": "Euro",
    "AUD": "Australian Dollar",
}
# The payment entity that pays down each kind of open transaction.
PAYER_OF = {"Invoice": "Payment", "Bill": "BillPayment"}
_PAYS = {payer: target for target, payer in PAYER_OF.items()}
_NO_AMOUNT_LINES = ("SubTotalLineDetail", "DescriptionOnly")


def name_of(entity: str, obj: dict[str, Any]) -> str:
    """What QBO puts in a reference's `name`."""
    if entity in PARTIES:
        return str(obj.get("DisplayName") or "")
    return str(obj.get("FullyQualifiedName") or obj.get("Name") or obj.get("DocNumber") or "")


def apply_defaults(store: RealmStore, entity: str, obj: dict[str, Any], *, today: date, creating: bool) -> None:
    """Defaults QBO applies before it validates: DisplayName from name parts, TxnDate, invoice numbers."""
    if entity in PARTIES and not str(obj.get("DisplayName") or "").strip():
        parts = [str(obj[p]).strip() for p in _NAME_PARTS if str(obj.get(p) or "").strip()]
        if parts:
            obj["DisplayName"] = " ".join(parts)
    if entity in TRANSACTIONS and not obj.get("TxnDate"):
        obj["TxnDate"] = today.isoformat()
    if entity == "Invoice" and creating and not str(obj.get("DocNumber") or "").strip():
        # DocNumber is assigned automatically if left out (ref §5, Invoice).
        numbers = [
            int(o["DocNumber"])
            for o in store.objects.get("Invoice", {}).values()
            if is_digits(str(o.get("DocNumber") or ""))
        ]
        obj["DocNumber"] = str(max(numbers) + 1 if numbers else 1001)
    if creating:
        _reply_defaults(store, entity, obj)


# What real replies carry although the request left it out (qbo_api and quickbooks-ruby captures): a Bill gets the
# company's A/P account, an Invoice its print and email status and an empty tax detail, a Payment the account its
# money goes to (Undeposited Funds, value 4 in QBO's sample companies).
_INVOICE_DEFAULTS = {
    "PrintStatus": "NeedToPrint",
    "EmailStatus": "NotSet",
    "ApplyTaxAfterDiscount": False,
}


def _reply_defaults(store: RealmStore, entity: str, obj: dict[str, Any]) -> None:
    if entity == "Bill" and "APAccountRef" not in obj:
        payable = _account(store, lambda a: a.get("AccountType") == "Accounts Payable")
        if payable is not None:
            obj["APAccountRef"] = payable
    if entity == "Invoice":
        for key, value in _INVOICE_DEFAULTS.items():
            obj.setdefault(key, value)
        obj.setdefault("TxnTaxDetail", {"TotalTax": Decimal("0")})
    if entity == "Payment" and "DepositToAccountRef" not in obj:
        undeposited = _account(store, lambda a: str(a.get("Name") or "").casefold() == "undeposited funds")
        if undeposited is not None:
            obj["DepositToAccountRef"] = undeposited


def _account(store: RealmStore, wanted: Any) -> dict[str, str] | None:
    found = [a for a in store.live("Account") if a.get("Active") is not False and wanted(a)]
    if not found:
        return None
    account = min(found, key=lambda a: int(a["Id"]) if is_digits(str(a["Id"])) else 0)
    return {"value": str(account["Id"]), "name": str(account.get("Name") or "")}


def line_total(entity: str, obj: dict[str, Any]) -> Decimal:
    """The sum QBO makes of a transaction's lines: discounts subtract, subtotals do not count, tax adds."""
    total = Decimal("0")
    for line in obj.get("Line") or []:
        if not isinstance(line, dict) or line.get("DetailType") in _NO_AMOUNT_LINES or "Amount" not in line:
            continue
        amount = to_decimal(line["Amount"])
        if entity == "JournalEntry":
            posting = (line.get("JournalEntryLineDetail") or {}).get("PostingType")
            if posting != "Debit":
                continue  # a journal's total is its debit side
        total += -amount if line.get("DetailType") == "DiscountLineDetail" else amount
    tax = (obj.get("TxnTaxDetail") or {}).get("TotalTax")
    if tax is not None and entity in ("Invoice", "Bill", "PurchaseOrder"):
        total += to_decimal(tax)
    return total


def applied_amount(store: RealmStore, target: str, target_id: str) -> Decimal:
    """How much live payments apply to one invoice or bill."""
    payer = PAYER_OF.get(target)
    if payer is None:
        return Decimal("0")
    applied = Decimal("0")
    for payment in store.live(payer):
        for line in payment.get("Line") or []:
            links = line.get("LinkedTxn") or []
            if any(str(link.get("TxnId")) == target_id and link.get("TxnType") == target for link in links):
                applied += to_decimal(line.get("Amount", 0))
    return applied


def finalize(
    store: RealmStore, entity: str, obj: dict[str, Any], *, now: datetime, existing: dict[str, Any] | None
) -> None:
    """Metadata, SyncToken and the computed fields, right before the object is stored."""
    stamp = format_meta_time(now)
    if existing is None:
        obj["SyncToken"] = "0"
        obj["MetaData"] = {"CreateTime": stamp, "LastUpdatedTime": stamp}
    else:
        obj["SyncToken"] = str(int(existing.get("SyncToken") or 0) + 1)
        created = (existing.get("MetaData") or {}).get("CreateTime", stamp)
        obj["MetaData"] = {"CreateTime": created, "LastUpdatedTime": stamp}
    obj["domain"] = "QBO"
    obj["sparse"] = False
    if entity in ACTIVE_FLAG and "Active" not in obj:
        obj["Active"] = True
    if entity in _FQN_ENTITIES:
        obj["FullyQualifiedName"] = str(obj.get("DisplayName") or obj.get("Name") or "")
    if entity in TRANSACTIONS:
        _finalize_transaction(store, entity, obj)


def _finalize_transaction(store: RealmStore, entity: str, obj: dict[str, Any]) -> None:
    for index, line in enumerate(obj.get("Line") or [], start=1):
        if isinstance(line, dict) and entity not in _PAYS:
            line.setdefault("Id", str(index))
            line.setdefault("LineNum", index)
    if entity in ("Payment", "BillPayment"):
        total = to_decimal(obj.get("TotalAmt", 0))
        obj["TotalAmt"] = total
        if entity == "Payment":
            applied = sum((to_decimal(ln.get("Amount", 0)) for ln in obj.get("Line") or []), Decimal("0"))
            obj["UnappliedAmt"] = total - applied
    else:
        obj["TotalAmt"] = line_total(entity, obj)
    if entity in PAYER_OF:
        balance = obj["TotalAmt"] - applied_amount(store, entity, str(obj.get("Id")))
        obj["Balance"] = max(balance, Decimal("0"))
    if "CurrencyRef" not in obj:
        home = store.home_currency()
        obj["CurrencyRef"] = {"value": home, "name": _CURRENCY_NAMES.get(home, home)}
    if entity in ("Bill", "Invoice") and not obj.get("DueDate"):
        obj["DueDate"] = _due_date(store, obj)


def _due_date(store: RealmStore, obj: dict[str, Any]) -> str:
    txn_date = date.fromisoformat(str(obj["TxnDate"])[:10])
    term_id = (obj.get("SalesTermRef") or {}).get("value")
    term = store.get("Term", str(term_id)) if term_id else None
    days = int(term.get("DueDays") or 0) if term else 0
    return (txn_date + timedelta(days=days)).isoformat()


def refresh_balances(
    store: RealmStore,
    entity: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    now: datetime,
) -> list[tuple[str, str]]:
    """After a payment changes, recompute the Balance of each invoice or bill it touches (old and new).

    A changed balance bumps the target's SyncToken and shows it in CDC, so a client holding an old
    SyncToken meets 5010, as in QBO.
    """
    target = _PAYS.get(entity)
    if target is None:
        return []
    ids: set[str] = set()
    for version in (before, after):
        for line in (version or {}).get("Line") or []:
            for link in line.get("LinkedTxn") or []:
                if link.get("TxnType") == target:
                    ids.add(str(link.get("TxnId")))
    touched = []
    for target_id in sorted(ids):
        current = store.get(target, target_id)
        if current is None or store.is_deleted(target, target_id):
            continue
        total = to_decimal(current.get("TotalAmt", 0))
        balance = max(total - applied_amount(store, target, target_id), Decimal("0"))
        if to_decimal(current.get("Balance", total)) == balance:
            continue
        updated = copy.deepcopy(current)
        updated["Balance"] = balance
        updated["SyncToken"] = str(int(current.get("SyncToken") or 0) + 1)
        updated["MetaData"] = {**(current.get("MetaData") or {}), "LastUpdatedTime": format_meta_time(now)}
        store.save(target, updated, now)
        touched.append((target, target_id))
    return touched
