"""The entities the sandbox serves: their kinds, URL names, references and line details (ref §5)."""

from __future__ import annotations

import re

__all__ = [
    "ACTIVE_FLAG",
    "ENTITIES",
    "HEADER_REFS",
    "LINE_DETAILS",
    "LINKED_TXN_TYPES",
    "NAME_LISTS",
    "NOT_IN_CDC",
    "PARTIES",
    "READ_ONLY",
    "SINGLETONS",
    "TRANSACTIONS",
    "TXN_LINE_TYPES",
    "canonical",
    "display_label",
    "txn_type_label",
]

PARTIES = ("Vendor", "Customer", "Employee")
# Name lists cannot be deleted, only made inactive (ref §5).
NAME_LISTS = (
    "Account",
    "Vendor",
    "Customer",
    "Item",
    "Class",
    "Department",
    "Term",
    "PaymentMethod",
    "Employee",
    "TaxCode",
)
TRANSACTIONS = ("PurchaseOrder", "Bill", "BillPayment", "Invoice", "Payment", "JournalEntry")
# Read and query only; QBO creates tax codes through /taxservice/taxcode, which is not emulated (ref §5).
READ_ONLY = ("TaxCode", "TaxRate")
SINGLETONS = ("CompanyInfo", "Preferences")
ENTITIES = (
    "Account",
    "TaxCode",
    "TaxRate",
    "PaymentMethod",
    "Class",
    "Department",
    "Term",
    "Vendor",
    "Customer",
    "Employee",
    "Item",
    "PurchaseOrder",
    "Bill",
    "BillPayment",
    "Invoice",
    "Payment",
    "JournalEntry",
    "CompanyInfo",
    "Preferences",
)
# Entities whose rows carry Active and so are hidden from queries unless asked for (ref §6).
ACTIVE_FLAG = frozenset(NAME_LISTS) | {"TaxRate"}
NOT_IN_CDC = frozenset({"TaxCode", "TaxRate"})  # ref §7

_BY_LOWER = {name.lower(): name for name in ENTITIES}

# Header references checked on create and update: dotted path -> the entity it must name.
HEADER_REFS: dict[str, tuple[tuple[str, str], ...]] = {
    "Account": (("ParentRef", "Account"), ("TaxCodeRef", "TaxCode")),
    "Vendor": (("TermRef", "Term"), ("APAccountRef", "Account")),
    "Customer": (
        ("SalesTermRef", "Term"),
        ("PaymentMethodRef", "PaymentMethod"),
        ("ParentRef", "Customer"),
        ("DefaultTaxCodeRef", "TaxCode"),
    ),
    "Item": (
        ("IncomeAccountRef", "Account"),
        ("ExpenseAccountRef", "Account"),
        ("AssetAccountRef", "Account"),
        ("SalesTaxCodeRef", "TaxCode"),
        ("PurchaseTaxCodeRef", "TaxCode"),
        ("ParentRef", "Item"),
        ("ClassRef", "Class"),
    ),
    "Class": (("ParentRef", "Class"),),
    "Department": (("ParentRef", "Department"),),
    "PurchaseOrder": (
        ("VendorRef", "Vendor"),
        ("APAccountRef", "Account"),
        ("SalesTermRef", "Term"),
        ("DepartmentRef", "Department"),
        ("ClassRef", "Class"),
    ),
    "Bill": (
        ("VendorRef", "Vendor"),
        ("APAccountRef", "Account"),
        ("SalesTermRef", "Term"),
        ("DepartmentRef", "Department"),
    ),
    "Invoice": (
        ("CustomerRef", "Customer"),
        ("SalesTermRef", "Term"),
        ("DepartmentRef", "Department"),
        ("ClassRef", "Class"),
        ("DepositToAccountRef", "Account"),
    ),
    "Payment": (
        ("CustomerRef", "Customer"),
        ("PaymentMethodRef", "PaymentMethod"),
        ("DepositToAccountRef", "Account"),
        ("ARAccountRef", "Account"),
    ),
    "BillPayment": (
        ("VendorRef", "Vendor"),
        ("APAccountRef", "Account"),
        ("DepartmentRef", "Department"),
        ("CheckPayment.BankAccountRef", "Account"),
        ("CreditCardPayment.CCAccountRef", "Account"),
    ),
    "JournalEntry": (("DepartmentRef", "Department"),),
}

# Line DetailType -> (references inside the detail, the one reference the line cannot do without).
LINE_DETAILS: dict[str, tuple[tuple[tuple[str, str], ...], tuple[str, ...]]] = {
    "AccountBasedExpenseLineDetail": (
        (
            ("AccountRef", "Account"),
            ("CustomerRef", "Customer"),
            ("ClassRef", "Class"),
            ("TaxCodeRef", "TaxCode"),
        ),
        ("AccountRef",),
    ),
    "ItemBasedExpenseLineDetail": (
        (("ItemRef", "Item"), ("CustomerRef", "Customer"), ("ClassRef", "Class"), ("TaxCodeRef", "TaxCode")),
        ("ItemRef",),
    ),
    "SalesItemLineDetail": (
        (("ItemRef", "Item"), ("ClassRef", "Class"), ("TaxCodeRef", "TaxCode")),
        ("ItemRef",),
    ),
    "JournalEntryLineDetail": (
        (
            ("AccountRef", "Account"),
            ("ClassRef", "Class"),
            ("DepartmentRef", "Department"),
            ("TaxCodeRef", "TaxCode"),
        ),
        ("PostingType", "AccountRef"),
    ),
    "DiscountLineDetail": ((("DiscountAccountRef", "Account"),), ()),
    "SubTotalLineDetail": ((), ()),
    "DescriptionOnly": ((), ()),
}

# Which line DetailTypes each transaction accepts; payments' lines have no DetailType.
TXN_LINE_TYPES: dict[str, frozenset[str]] = {
    "Bill": frozenset({"AccountBasedExpenseLineDetail", "ItemBasedExpenseLineDetail", "DescriptionOnly"}),
    "PurchaseOrder": frozenset({"AccountBasedExpenseLineDetail", "ItemBasedExpenseLineDetail", "DescriptionOnly"}),
    "Invoice": frozenset({"SalesItemLineDetail", "SubTotalLineDetail", "DiscountLineDetail", "DescriptionOnly"}),
    "JournalEntry": frozenset({"JournalEntryLineDetail"}),
}

# What a payment line may link to (ref §5): the transaction type -> the entity holding it.
LINKED_TXN_TYPES: dict[str, dict[str, str]] = {
    "Payment": {"Invoice": "Invoice", "JournalEntry": "JournalEntry"},
    "BillPayment": {"Bill": "Bill", "JournalEntry": "JournalEntry"},
    "Bill": {"PurchaseOrder": "PurchaseOrder"},
    "Invoice": {},
    "PurchaseOrder": {},
}

# How QBO names a kind of reference in "Invalid Reference Id : Names element id 99 not found".
_LABELS = {
    "Vendor": "Names",
    "Customer": "Names",
    "Employee": "Names",
    "Account": "Accounts",
    "Item": "Items",
    "Term": "Terms",
    "Class": "Classes",
    "Department": "Departments",
    "TaxCode": "TaxCodes",
    "PaymentMethod": "PaymentMethods",
}


def canonical(name: str) -> str | None:
    """The entity's proper name for any spelling of it (`journalentry`, `JournalEntry`), else None.

    Ref §6 calls entity names case-sensitive, yet lowercase works in practice; we accept any case.
    """
    return _BY_LOWER.get(name.strip().lower())


def display_label(entity: str) -> str:
    return _LABELS.get(entity, entity)


def txn_type_label(entity: str) -> str:
    """The TxnType QBO names in fault details: words, not the API name ("DocNumber=... is assigned to TxnType=
    Journal Entry" in a production fault, finoptimal/fo_qbo; "TxnType=Invoice", ref §3)."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", entity)
