"""QBO's fault shapes (standard, lowercase gateway, XML, HTML 503) and the faults the rules raise (ref §3)."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape, quoteattr

__all__ = [
    "QboFault",
    "amount_mismatch",
    "bad_request",
    "business",
    "duplicate_docnumber",
    "duplicate_name",
    "gateway_fault",
    "html_404",
    "html_503",
    "no_resource",
    "invalid_enum",
    "invalid_reference",
    "not_found",
    "query_parse",
    "required",
    "stale_object",
    "standard_fault",
    "system_failure",
    "try_again",
    "unsupported",
    "xml_fault",
]


class QboFault(Exception):
    """One QBO `Error` inside a `Fault`; raised by the rules and turned into the standard shape."""

    def __init__(
        self,
        code: str,
        message: str,
        detail: str,
        element: str = "",
        *,
        status: int = 400,
        fault_type: str = "ValidationFault",
    ) -> None:
        super().__init__(f"{code} {message}: {detail}")
        self.code = code
        self.message = message
        self.detail = detail
        self.element = element
        self.status = status
        self.fault_type = fault_type

    def error(self) -> dict[str, str]:
        # Key order and string `code` as in ref §3.
        return {"Message": self.message, "Detail": self.detail, "code": self.code, "element": self.element}

    def fault(self) -> dict[str, Any]:
        """The `Fault` object alone, as a batch item carries it (ref §8)."""
        return {"Error": [self.error()], "type": self.fault_type}


def standard_fault(fault: QboFault, time: str) -> dict[str, Any]:
    """`{"Fault":{"Error":[...],"type":..},"time":..}` (ref §3)."""
    return {"Fault": fault.fault(), "time": time}


def gateway_fault(
    status: int, code: str, name: str, detail: str | None, fault_type: str, epoch_ms: int
) -> dict[str, Any]:
    """The gateway's lowercase shape with epoch-millisecond `time` (ref §3, pqb#250).

    `name` is the `message=` part, e.g. AuthenticationFailed; the code is zero-padded to six digits there.
    """
    message = f"message={name}; errorCode={int(code):06d}; statusCode={status}"
    return {
        "warnings": None,
        "intuitObject": None,
        "fault": {
            "error": [{"message": message, "detail": detail, "code": code, "element": None}],
            "type": fault_type,
        },
        "report": None,
        "queryResponse": None,
        "batchItemResponse": [],
        "attachableResponse": [],
        "syncErrorResponse": None,
        "requestId": None,
        "time": epoch_ms,
        "status": None,
        "cdcresponse": [],
    }


def xml_fault(code: str, message: str, detail: str, fault_type: str, time: str, element: str = "") -> bytes:
    """`<IntuitResponse><Fault type><Error code element><Message/><Detail/>` (ref §3)."""
    element_attr = f" element={quoteattr(element)}" if element else ""
    text = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time={quoteattr(time)}>'
        f"<Fault type={quoteattr(fault_type)}>"
        f"<Error code={quoteattr(code)}{element_attr}>"
        f"<Message>{escape(message)}</Message><Detail>{escape(detail)}</Detail>"
        "</Error></Fault></IntuitResponse>"
    )
    return text.encode("utf-8")


def html_404(path: str) -> bytes:
    """The web server's page for a URL that is no API resource, as QBO's front end sent it (qbo_api cassette
    irregular_char.yml); a client must read it as a wrong address, not as a missing object."""
    text = (
        '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n<title>404 Not Found</title>\n'
        f"</head><body>\n<h1>Not Found</h1>\n<p>The requested URL {escape(path)} was not found on this server.</p>\n"
        "</body></html>\n"
    )
    return text.encode("utf-8")


def html_503() -> bytes:
    """The nginx page a 503 can arrive as, instead of JSON (ref §3, qbo_api#81)."""
    return (
        b"<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
        b"<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n"
        b"</body>\r\n</html>\r\n"
    )


def required(element: str) -> QboFault:
    """2020 with the Detail pqb PR#257 quotes (ref §3)."""
    return QboFault(
        "2020",
        "Required param missing, need to supply the required value for the API",
        f"Required parameter {element} is missing in the request",
        element,
    )


def invalid_reference(element: str, detail: str) -> QboFault:
    """2500: a reference to a missing or inactive object; `element` names the field (ref §3)."""
    return QboFault("2500", "Invalid Reference Id", f"Invalid Reference Id : {detail}", element)


def not_found(detail: str, element: str = "") -> QboFault:
    """610 Object Not Found (ref §3; node-quickbooks#21 for deleted transactions)."""
    return QboFault("610", "Object Not Found", f"Object Not Found : {detail}", element)


def invalid_enum(element: str, value: object) -> QboFault:
    return QboFault("2170", "Invalid Enumeration", f"Invalid Enumeration : {value}", element)


def business(detail: str, element: str = "") -> QboFault:
    """6000, the catch-all business validation error; the Detail says what to fix (ref §3)."""
    return QboFault(
        "6000",
        "A business validation error has occurred while processing your request",
        f"Business Validation Error: {detail}",
        element,
    )


def duplicate_name(detail: str | None = None) -> QboFault:
    """6240 (ref §3, §10)."""
    text = detail or "Another customer, vendor or employee is already using this name. Please use a different name."
    return QboFault("6240", "Duplicate Name Exists Error", f"The name supplied already exists. : {text}")


def duplicate_docnumber(doc_number: str, txn_type: str, txn_id: str) -> QboFault:
    """6140 with the Detail of real faults: `txn_type` is the name QBO shows, e.g. "Journal Entry" with a space
    (finoptimal/fo_qbo capture), "Invoice" (ref §3)."""
    return QboFault(
        "6140",
        "Duplicate Document Number Error",
        "Duplicate Document Number Error : You must specify a different number. This number has already "
        f"been used. DocNumber={doc_number} is assigned to TxnType={txn_type} with TxnId={txn_id}",
    )


def stale_object() -> QboFault:
    """5010 for a stale SyncToken (ref §3, pqb#127)."""
    return QboFault(
        "5010",
        "Stale Object Error",
        "Stale Object Error : You and root were working on this at the same time. root finished before "
        "you did, so your work was not saved.",
    )


def query_parse(detail: str) -> QboFault:
    """4000 QueryParserError (ref §6)."""
    return QboFault("4000", "Error parsing query", f"QueryParserError: {detail}")


def unsupported(detail: str) -> QboFault:
    """Code 500 "Unsupported Operation", HTTP 400 (ref §3: unknown resource, non-UTF-8 body)."""
    return QboFault("500", "Unsupported Operation", f"Operation {detail} is not supported.")


def bad_request(detail: str, element: str = "") -> QboFault:
    """A malformed request (bad JSON, over-long requestid, batch over 30 items, CDC look-back).

    Ref §3 names no code for these; 2010 is QBO's "invalid or unsupported property" code, which sits
    in the validation range that clients treat as "fix the request, do not retry".
    """
    return QboFault("2010", "Request has invalid or unsupported property", detail, element)


def system_failure() -> QboFault:
    """The 500 a flaky QBO returns: code 10000, SystemFault, a Java exception in the Detail (quickbooks-ruby#224
    and #285; 10000 has also come with HTTP 400, the status is QBO's to choose)."""
    return QboFault(
        "10000",
        "An application error has occurred while processing your request",
        "System Failure Error: java.lang.NullPointerException",
        status=500,
        fault_type="SystemFault",
    )


def try_again() -> QboFault:
    """The 6000 real QBO answers some writes with, although the record is often saved anyway: Message and Detail
    as a production integration kept them (finoptimal/fo_qbo). Its HTTP status was not kept; a ValidationFault
    comes with 400 (ref §3)."""
    return QboFault(
        "6000",
        "A business validation error has occurred while processing your request",
        "Business Validation Error: An unexpected error occurred while accessing or saving your data. Please wait "
        "a few minutes and try again. If the problem persists, contact customer support.",
    )


def amount_mismatch(amount: object) -> QboFault:
    """6070, which real QBO sends for a line whose Amount is not Qty x UnitPrice (Intuit's error code list:
    "Amount calculation incorrect in the request"; the detail "Amount is not equal to Qty * UnitPrice. Supplied
    value:" ends with the amount sent, written where Intuit's list shows a placeholder)."""
    return QboFault(
        "6070",
        "Amount calculation incorrect in the request",
        f"Amount is not equal to Qty * UnitPrice. Supplied value:{amount}",
        "Line.Amount",
    )


def no_resource(relative: str, full: str) -> QboFault:
    """Code 500 for a path under the company that names no resource, word for word as QBO answered GET
    customer/1/5 (qbo_api cassette error/500.yml)."""
    return QboFault(
        "500",
        "Unsupported Operation",
        f"Operation Could not find resource for relative : {relative} of full path: {full} is not supported.",
    )
