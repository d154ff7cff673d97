"""Business rules QBO applies on create and update, each raising the fault QBO would (ref §3, §5, §10)."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from qbo.sandbox import shapes
from qbo.sandbox.compute import PAYER_OF, applied_amount, line_total, name_of
from qbo.sandbox.entities import (
    HEADER_REFS,
    LINE_DETAILS,
    LINKED_TXN_TYPES,
    PARTIES,
    TRANSACTIONS,
    TXN_LINE_TYPES,
    display_label,
    txn_type_label,
)
from qbo.sandbox.store import RealmStore
from qbo.sandbox.wire import to_decimal

__all__ = ["check_closed_books", "check_sync_token", "txn_date", "validate"]

_CENT = Decimal("0.01")
_ITEM_TYPES = ("Service", "NonInventory", "Inventory", "Category", "Group")
_ACCOUNT_TYPES = (
    "Bank",
    "Other Current Asset",
    "Fixed Asset",
    "Other Asset",
    "Accounts Receivable",
    "Equity",
    "Expense",
    "Other Expense",
    "Cost of Goods Sold",
    "Accounts Payable",
    "Credit Card",
    "Long Term Liability",
    "Other Current Liability",
    "Income",
    "Other Income",
)
_REQUIRED = {
    "Account": ("Name",),
    "Item": ("Name", "Type"),
    "Class": ("Name",),
    "Department": ("Name",),
    "PaymentMethod": ("Name",),
    "Term": ("Name",),
    "Bill": ("VendorRef", "Line"),
    # Which PurchaseOrder fields are strictly required is unconfirmed (ref §5); APAccountRef is optional here.
    "PurchaseOrder": ("VendorRef", "Line"),
    "Invoice": ("CustomerRef", "Line"),
    "Payment": ("CustomerRef", "TotalAmt"),
    "BillPayment": ("VendorRef", "PayType", "TotalAmt", "Line"),
    "JournalEntry": ("Line",),
}
_UNIQUE_NAME = ("Account", "Item", "Class", "Department", "Term", "PaymentMethod")


def validate(
    store: RealmStore,
    entity: str,
    obj: dict[str, Any],
    *,
    existing: dict[str, Any] | None,
    allow_duplicate_docnumber: bool,
) -> None:
    """Raise the first QboFault QBO would give for `obj` (the full object about to be stored).

    For an update `obj` is the merged result, so a sparse update is checked as a whole; whether QBO
    wants the required header refs inside the sparse body itself is unconfirmed (ref §5), we do not.
    """
    _required(entity, obj)
    _enumerations(entity, obj)
    _references(store, entity, obj)
    _currency(store, obj)
    _names(store, entity, obj)
    _amounts(store, entity, obj)
    check_closed_books(store, entity, obj, existing)
    if not allow_duplicate_docnumber:
        _doc_number(store, entity, obj, existing)


def _present(value: Any) -> bool:
    if isinstance(value, dict) and ("value" in value or not value):
        return str(value.get("value") or "").strip() != ""
    return value not in (None, "", [], {})


def _dig(obj: dict[str, Any], path: str) -> Any:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _required(entity: str, obj: dict[str, Any]) -> None:
    if entity in PARTIES and not _present(obj.get("DisplayName")):
        # DisplayName, or one of Title/GivenName/MiddleName/FamilyName/Suffix it is built from (ref §5).
        raise shapes.required("DisplayName")
    for name in _REQUIRED.get(entity, ()):
        if not _present(obj.get(name)):
            raise shapes.required(name)
    if entity == "Account" and not (_present(obj.get("AccountType")) or _present(obj.get("AccountSubType"))):
        raise shapes.required("AccountType")
    if entity == "Term" and not (_present(obj.get("DueDays")) or _present(obj.get("DayOfMonthDue"))):
        raise shapes.required("DueDays")
    if entity == "Item":
        _required_item(obj)
    if entity == "BillPayment":
        # Reported: a bill payment without its bank or card account gives a 6000 (ref §5).
        pay_type = obj.get("PayType")
        if pay_type == "Check" and not _present(_dig(obj, "CheckPayment.BankAccountRef")):
            raise shapes.business(
                "A check bill payment needs CheckPayment.BankAccountRef.", "CheckPayment.BankAccountRef"
            )
        if pay_type == "CreditCard" and not _present(_dig(obj, "CreditCardPayment.CCAccountRef")):
            raise shapes.business(
                "A credit card bill payment needs CreditCardPayment.CCAccountRef.",
                "CreditCardPayment.CCAccountRef",
            )
    if entity in TRANSACTIONS:
        _required_lines(entity, obj)


def _required_item(obj: dict[str, Any]) -> None:
    item_type = obj.get("Type")
    if item_type in ("Service", "NonInventory") and not (
        _present(obj.get("IncomeAccountRef")) or _present(obj.get("ExpenseAccountRef"))
    ):
        raise shapes.required("IncomeAccountRef")
    if item_type == "Inventory":
        for name in (
            "IncomeAccountRef",
            "ExpenseAccountRef",
            "AssetAccountRef",
            "TrackQtyOnHand",
            "QtyOnHand",
            "InvStartDate",
        ):
            if obj.get(name) in (None, "", {}) or (name.endswith("Ref") and not _present(obj.get(name))):
                raise shapes.required(name)


def _required_lines(entity: str, obj: dict[str, Any]) -> None:
    lines = obj.get("Line")
    if lines is None:
        return
    if not isinstance(lines, list):
        raise shapes.bad_request("Line must be a list", "Line")
    for line in lines:
        if not isinstance(line, dict):
            raise shapes.bad_request("Each Line must be an object", "Line")
        if entity in ("Payment", "BillPayment"):
            _required_payment_line(entity, line)
            continue
        detail_type = line.get("DetailType")
        if not _present(detail_type):
            raise shapes.required("Line.DetailType")
        if detail_type not in TXN_LINE_TYPES[entity]:
            raise shapes.invalid_enum("Line.DetailType", detail_type)
        if detail_type in ("DescriptionOnly", "SubTotalLineDetail"):
            continue
        if line.get("Amount") is None:
            raise shapes.required("Line.Amount")
        detail = line.get(detail_type)
        if not isinstance(detail, dict):
            raise shapes.required(f"Line.{detail_type}")
        for key in LINE_DETAILS[detail_type][1]:
            if not _present(detail.get(key)):
                raise shapes.required(f"Line.{detail_type}.{key}")
        if detail_type == "JournalEntryLineDetail":
            _journal_line(detail)
        for link in line.get("LinkedTxn") or []:
            _required_link(entity, link)


def _journal_line(detail: dict[str, Any]) -> None:
    if detail.get("PostingType") not in ("Debit", "Credit"):
        raise shapes.invalid_enum("Line.JournalEntryLineDetail.PostingType", detail.get("PostingType"))
    party = detail.get("Entity")
    if party is not None:
        if not isinstance(party, dict) or party.get("Type") not in PARTIES:
            raise shapes.invalid_enum("Line.JournalEntryLineDetail.Entity.Type", (party or {}).get("Type"))
        if not _present(party.get("EntityRef")):
            raise shapes.required("Line.JournalEntryLineDetail.Entity.EntityRef")


def _required_payment_line(entity: str, line: dict[str, Any]) -> None:
    if line.get("Amount") is None:
        raise shapes.required("Line.Amount")
    links = line.get("LinkedTxn")
    if not links or not isinstance(links, list):
        raise shapes.required("Line.LinkedTxn")
    for link in links:
        _required_link(entity, link)


def _required_link(entity: str, link: Any) -> None:
    if not isinstance(link, dict) or not _present(link.get("TxnId")):
        raise shapes.required("Line.LinkedTxn.TxnId")
    if link.get("TxnType") not in LINKED_TXN_TYPES.get(entity, {}):
        raise shapes.invalid_enum("Line.LinkedTxn.TxnType", link.get("TxnType"))


def _enumerations(entity: str, obj: dict[str, Any]) -> None:
    if entity == "Item" and obj.get("Type") not in _ITEM_TYPES:
        raise shapes.invalid_enum("Type", obj.get("Type"))
    if entity == "Account" and obj.get("AccountType") not in (None, *_ACCOUNT_TYPES):
        raise shapes.invalid_enum("AccountType", obj.get("AccountType"))
    if entity == "BillPayment" and obj.get("PayType") not in ("Check", "CreditCard"):
        raise shapes.invalid_enum("PayType", obj.get("PayType"))
    # CREDIT_CARD / NON_CREDIT_CARD is unconfirmed (ref §5); we accept those two when Type is sent.
    if entity == "PaymentMethod" and obj.get("Type") not in (None, "CREDIT_CARD", "NON_CREDIT_CARD"):
        raise shapes.invalid_enum("Type", obj.get("Type"))


def _references(store: RealmStore, entity: str, obj: dict[str, Any]) -> None:
    for path, target in HEADER_REFS.get(entity, ()):
        ref = _dig(obj, path)
        if ref is not None:
            _resolve(store, path, ref, target)
    for line in obj.get("Line") or []:
        detail_type = line.get("DetailType")
        detail = line.get(detail_type) if detail_type in LINE_DETAILS else None
        if isinstance(detail, dict):
            for key, target in LINE_DETAILS[detail_type][0]:
                if detail.get(key) is not None:
                    _resolve(store, f"Line.{detail_type}.{key}", detail[key], target)
            party = detail.get("Entity")
            if detail_type == "JournalEntryLineDetail" and isinstance(party, dict):
                _resolve(store, "Line.JournalEntryLineDetail.Entity.EntityRef", party["EntityRef"], party["Type"])
        for link in line.get("LinkedTxn") or []:
            _resolve_link(store, entity, link)


def _resolve(store: RealmStore, element: str, ref: Any, target: str) -> None:
    value = str(ref.get("value") or "").strip() if isinstance(ref, dict) else ""
    if not value:
        raise shapes.required(element)
    obj = store.get(target, value)
    if obj is None or (target, value) in store.hidden:
        raise shapes.invalid_reference(element, f"{display_label(target)} element id {value} not found")
    if store.is_deleted(target, value):
        raise shapes.not_found("Another user has deleted this transaction.", element)
    if obj.get("Active") is False:
        raise shapes.invalid_reference(
            element,
            f"{target} {name_of(target, obj)!r} (Id {value}) named in {element} has been made inactive",
        )
    ref["name"] = name_of(target, obj)


def _resolve_link(store: RealmStore, entity: str, link: dict[str, Any]) -> None:
    target = LINKED_TXN_TYPES[entity][link["TxnType"]]
    txn_id = str(link["TxnId"]).strip()
    if store.get(target, txn_id) is None or (target, txn_id) in store.hidden:
        raise shapes.invalid_reference("Line.LinkedTxn.TxnId", f"{target} element id {txn_id} not found")
    if store.is_deleted(target, txn_id):
        raise shapes.not_found("Another user has deleted this transaction.", "Line.LinkedTxn.TxnId")


def _currency(store: RealmStore, obj: dict[str, Any]) -> None:
    code = (obj.get("CurrencyRef") or {}).get("value")
    if code and not store.multicurrency() and code != store.home_currency():
        raise shapes.business(
            f"Multicurrency is off for this company, so CurrencyRef {code} cannot be used; the home currency "
            f"is {store.home_currency()}.",
            "CurrencyRef",
        )


def _fold(text: Any) -> str:
    return " ".join(str(text or "").split()).casefold()


def _names(store: RealmStore, entity: str, obj: dict[str, Any]) -> None:
    own_id = str(obj.get("Id") or "")
    if entity in PARTIES:
        name = str(obj["DisplayName"])
        if any(ch in name for ch in ":\t\n"):
            # Ref §5 forbids these characters; the fault code for them is unconfirmed, we use 6000.
            raise shapes.business("DisplayName cannot contain ':', a tab or a new line.", "DisplayName")
        email = str((obj.get("PrimaryEmailAddr") or {}).get("Address") or "")
        if email and ("@" not in email or "." not in email):
            raise shapes.business(f"Invalid email address format: {email}", "PrimaryEmailAddr.Address")
        wanted = _fold(name)
        # Unique across Customer, Vendor and Employee, inactive ones included (ref §10).
        for other_entity in PARTIES:
            for other in store.objects.get(other_entity, {}).values():
                same = other_entity == entity and str(other["Id"]) == own_id
                if not same and _fold(other.get("DisplayName")) == wanted:
                    raise shapes.duplicate_name()
    elif entity in _UNIQUE_NAME:
        wanted = _fold(obj.get("Name"))
        for other in store.objects.get(entity, {}).values():
            if str(other["Id"]) != own_id and _fold(other.get("Name")) == wanted:
                raise shapes.duplicate_name(f"Another {entity} is already using this name: {obj.get('Name')}")


def _money(value: Any, element: str) -> Decimal:
    try:
        return to_decimal(value)
    except ValueError:
        raise shapes.bad_request(f"{element} is not a number: {value!r}", element) from None


def _cents(value: Decimal) -> Decimal:
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


def _amounts(store: RealmStore, entity: str, obj: dict[str, Any]) -> None:
    if entity not in TRANSACTIONS:
        return
    for line in obj.get("Line") or []:
        if "Amount" in line:
            _money(line["Amount"], "Line.Amount")
        detail_type = line.get("DetailType")
        if detail_type in ("SalesItemLineDetail", "ItemBasedExpenseLineDetail"):
            _item_line(line, detail_type)
    if obj.get("TotalAmt") is not None:
        _money(obj["TotalAmt"], "TotalAmt")
    if entity in ("Bill", "Invoice", "PurchaseOrder") and obj.get("TotalAmt") is not None:
        sent, computed = _money(obj["TotalAmt"], "TotalAmt"), line_total(entity, obj)
        if _cents(sent) != _cents(computed):
            raise shapes.business(f"TotalAmt {sent} does not equal the sum of the line amounts {computed}.", "TotalAmt")
    if entity == "JournalEntry":
        _balanced(obj)
    if entity in ("Payment", "BillPayment"):
        _payment_amounts(store, entity, obj)


def _item_line(line: dict[str, Any], detail_type: str) -> None:
    detail = line.get(detail_type) or {}
    if detail.get("Qty") is None or detail.get("UnitPrice") is None:
        return
    qty = _money(detail["Qty"], f"Line.{detail_type}.Qty")
    price = _money(detail["UnitPrice"], f"Line.{detail_type}.UnitPrice")
    amount = _money(line["Amount"], "Line.Amount")
    # Real QBO refuses Amount != Qty x UnitPrice with 6070 (Intuit's error code list); to the cent here.
    if _cents(qty * price) != _cents(amount):
        raise shapes.amount_mismatch(amount)


def _balanced(obj: dict[str, Any]) -> None:
    debits = credits = Decimal("0")
    for line in obj.get("Line") or []:
        amount = _money(line.get("Amount", 0), "Line.Amount")
        if (line.get("JournalEntryLineDetail") or {}).get("PostingType") == "Debit":
            debits += amount
        else:
            credits += amount
    if _cents(debits) != _cents(credits):
        # The real text for an unbalanced journal is unconfirmed (ref §5); this one names the imbalance.
        raise shapes.business(
            f"Journal entry is out of balance: debits {debits} and credits {credits} differ by "
            f"{abs(debits - credits)}. Debits must equal credits.",
            "Line",
        )


def _payment_amounts(store: RealmStore, entity: str, obj: dict[str, Any]) -> None:
    total = _money(obj["TotalAmt"], "TotalAmt")
    lines = obj.get("Line") or []
    applied = sum((_money(line["Amount"], "Line.Amount") for line in lines), Decimal("0"))
    if _cents(applied) > _cents(total):
        raise shapes.business(f"The line amounts {applied} are more than TotalAmt {total}.", "TotalAmt")
    own_id = str(obj.get("Id") or "")
    for line in lines:
        for link in line["LinkedTxn"]:
            target = link["TxnType"]
            if PAYER_OF.get(target) != entity:
                continue
            txn = store.get(target, str(link["TxnId"]))
            assert txn is not None  # references were resolved before
            open_balance = to_decimal(txn.get("TotalAmt", 0)) - applied_amount(store, target, str(link["TxnId"]))
            if own_id:
                open_balance += _own_application(store, entity, own_id, target, str(link["TxnId"]))
            amount = _money(line["Amount"], "Line.Amount")
            if _cents(amount) > _cents(open_balance):
                raise shapes.business(
                    f"Line amount {amount} is more than the open balance {open_balance} of {target} {link['TxnId']}.",
                    "Line.Amount",
                )


def _own_application(store: RealmStore, entity: str, own_id: str, target: str, target_id: str) -> Decimal:
    """What the stored version of this payment already applies to the target (an update replaces it)."""
    current = store.get(entity, own_id)
    if current is None or store.is_deleted(entity, own_id):
        return Decimal("0")
    total = Decimal("0")
    for line in current.get("Line") or []:
        if any(str(k.get("TxnId")) == target_id and k.get("TxnType") == target for k in line.get("LinkedTxn") or []):
            total += to_decimal(line.get("Amount", 0))
    return total


def txn_date(obj: dict[str, Any]) -> date:
    try:
        return date.fromisoformat(str(obj.get("TxnDate"))[:10])
    except ValueError:
        raise shapes.bad_request(f"TxnDate is not a date (YYYY-MM-DD): {obj.get('TxnDate')!r}", "TxnDate") from None


def check_closed_books(
    store: RealmStore, entity: str, obj: dict[str, Any] | None, existing: dict[str, Any] | None
) -> None:
    """6000 when the new or the stored TxnDate is on or before the books' close date."""
    close = store.book_close_date()
    if close is None or entity not in TRANSACTIONS:
        return
    for version in (obj, existing):
        if version is not None and version.get("TxnDate") and txn_date(version) <= close:
            raise shapes.business(
                "You can't save this transaction because the transaction date is on or before the closing "
                f"date of the books ({close.isoformat()}); TxnDate {txn_date(version).isoformat()}.",
                "TxnDate",
            )


def _doc_number(store: RealmStore, entity: str, obj: dict[str, Any], existing: dict[str, Any] | None) -> None:
    if entity not in TRANSACTIONS or not store.duplicate_docnumber_check():
        return
    doc = str(obj.get("DocNumber") or "").strip()
    if not doc or (existing is not None and str(existing.get("DocNumber") or "").strip() == doc):
        return
    own_id = str(obj.get("Id") or "")
    for other in store.live(entity):
        if str(other["Id"]) != own_id and str(other.get("DocNumber") or "").strip() == doc:
            raise shapes.duplicate_docnumber(doc, txn_type_label(entity), str(other["Id"]))


def check_sync_token(body: dict[str, Any], existing: dict[str, Any]) -> None:
    """2020 without a SyncToken, 5010 when it is not the current one (ref §3)."""
    if body.get("SyncToken") in (None, ""):
        raise shapes.required("SyncToken")
    if str(body["SyncToken"]) != str(existing.get("SyncToken")):
        raise shapes.stale_object()
