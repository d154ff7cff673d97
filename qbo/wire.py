"""QBO's answers as sent: JSON, XML and HTML bodies sniffed and parsed, every fault shape read, money exact."""

from __future__ import annotations

import html
import json
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

__all__ = [
    "Fault",
    "FaultError",
    "Parsed",
    "dumps",
    "entity_object",
    "fault_from_json",
    "parse_body",
    "parse_time",
    "xml_batch",
]


# Fault parsing (ref §3): every shape the service has been seen to send
@dataclass(frozen=True)
class FaultError:
    code: str | None
    message: str | None = None
    detail: str | None = None
    element: str | None = None


@dataclass(frozen=True)
class Fault:
    """One fault, whatever shape it came in: json (`Fault`), gateway (`fault`), xml, or oauth.

    Every error is kept: a real batch item carried a 6140 and three 2020s, and each is the record's problem.
    """

    shape: str
    type: str | None
    errors: tuple[FaultError, ...]
    time: datetime | None = None

    @property
    def first(self) -> FaultError:
        return self.errors[0] if self.errors else FaultError(None)


@dataclass(frozen=True)
class Parsed:
    """A response body, sniffed: kind is json, xml, html, text, empty or malformed."""

    kind: str
    body: Any = None
    fault: Fault | None = None
    summary: str | None = None


def _pick(mapping: Mapping[str, Any], name: str) -> Any:
    # Standard faults say "Message", gateway faults "message" (ref §3, pqb#250).
    if name in mapping:
        return mapping[name]
    return mapping.get(name.lower(), mapping.get(name[:1].upper() + name[1:]))


_GATEWAY_CODE = re.compile(r"errorCode=0*(\d+)")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _fault_error(item: Any) -> FaultError:
    if not isinstance(item, Mapping):
        return FaultError(None, _text(item))
    message = _text(_pick(item, "Message"))
    code = _text(_pick(item, "code"))
    if not code and message and (m := _GATEWAY_CODE.search(message)):
        code = m.group(1)  # "message=AuthenticationFailed; errorCode=003200; statusCode=401"
    return FaultError(code, message, _text(_pick(item, "Detail")), _text(_pick(item, "element")) or None)


def parse_time(value: Any) -> datetime | None:
    try:
        if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            return datetime.fromtimestamp(float(value) / 1000, UTC)  # gateway: epoch milliseconds (ref §3)
        if isinstance(value, str) and value:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _errors(raw: Any) -> tuple[FaultError, ...]:
    items = raw if isinstance(raw, list) else [raw] if raw else []
    return tuple(_fault_error(i) for i in items)


def fault_from_json(obj: Any) -> Fault | None:
    """The fault in a JSON body or batch item, if any (standard, lowercase gateway, or OAuth error)."""
    if not isinstance(obj, Mapping):
        return None
    if isinstance(obj.get("Fault"), Mapping):
        f = obj["Fault"]
        return Fault("json", _text(f.get("type")), _errors(_pick(f, "Error")), parse_time(obj.get("time")))
    if isinstance(obj.get("fault"), Mapping):
        f = obj["fault"]
        return Fault("gateway", _text(f.get("type")), _errors(_pick(f, "error")), parse_time(obj.get("time")))
    if isinstance(obj.get("error"), str):  # OAuth: {"error": "invalid_grant", "error_description": ...}
        return Fault("oauth", "OAuth", (FaultError(obj["error"], _text(obj.get("error_description"))),))
    return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml_fault(root: ET.Element) -> Fault | None:
    """The response's own fault: the root itself, or a Fault right under it. A fault deeper down belongs to a
    batch item (`<BatchItemResponse bId><Fault>`), and giving it to the whole batch failed every other item."""
    fault = root if _local(root.tag) == "Fault" else next((el for el in root if _local(el.tag) == "Fault"), None)
    if fault is None:
        return None
    return Fault("xml", fault.get("type"), _xml_errors(fault), parse_time(root.get("time")))


def _xml_errors(fault: ET.Element) -> tuple[FaultError, ...]:
    errors = []
    for err in (el for el in fault if _local(el.tag) == "Error"):
        texts = {_local(child.tag): (child.text or "").strip() for child in err}
        errors.append(
            FaultError(err.get("code"), texts.get("Message"), texts.get("Detail"), err.get("element") or None)
        )
    return tuple(errors)


def _xml_value(el: ET.Element) -> Any:
    """An XML element as the JSON QBO would have sent: children become keys (repeated ones a list), a Ref's
    attributes sit beside its `value`. Numbers stay text: XML does not say which text is money."""
    children = list(el)
    if not children:
        text = (el.text or "").strip()
        return {"value": text, **el.attrib} if el.attrib else text
    out: dict[str, Any] = dict(el.attrib)
    for child in children:
        key, value = _local(child.tag), _xml_value(child)
        if key in out:
            out[key] = [*out[key], value] if isinstance(out[key], list) else [out[key], value]
        else:
            out[key] = value
    return out


def xml_batch(root: ET.Element) -> dict[str, Any] | None:
    """`<IntuitResponse><BatchItemResponse bId>...` as the JSON shape (ref §8), each item with its own fault."""
    items = [el for el in root if _local(el.tag) == "BatchItemResponse"]
    if not items:
        return None
    answers = []
    for item in items:
        answer: dict[str, Any] = {"bId": item.get("bId")}
        for child in item:
            if _local(child.tag) == "Fault":
                errors = [
                    {"Message": e.message, "Detail": e.detail, "code": e.code, "element": e.element}
                    for e in _xml_errors(child)
                ]
                answer["Fault"] = {"type": child.get("type"), "Error": errors}
            else:
                answer[_local(child.tag)] = _xml_value(child)
        answers.append(answer)
    return {"BatchItemResponse": answers, "time": root.get("time")}


_SALVAGE_FAULT = re.compile(rb"<(?:[\w.-]+:)?Fault\b([^>]*)>(.*?)</(?:[\w.-]+:)?Fault>", re.S)
_SALVAGE_ERROR = re.compile(rb"<(?:[\w.-]+:)?Error\b([^>]*)>(.*?)</(?:[\w.-]+:)?Error>", re.S)
_SALVAGE_ATTR = re.compile(rb'([\w:.-]+)\s*=\s*"([^"]*)"')


def _salvage_text(body: bytes, tag: bytes) -> str | None:
    m = re.search(rb"<(?:[\w.-]+:)?" + tag + rb"\b[^>]*>(.*?)</(?:[\w.-]+:)?" + tag + rb">", body, re.S)
    return html.unescape(m.group(1).decode("utf-8", "replace")).strip() if m else None


def _salvage_fault(content: bytes) -> Fault | None:
    """The fault of XML that does not parse, read from its tags: a gateway 401 whose Detail carried an unescaped
    `<` (qbo_api cassette) lost its code 3200 otherwise. Not for a batch, whose items could not be told apart."""
    m = _SALVAGE_FAULT.search(content)
    if m is None or b"BatchItemResponse" in content:
        return None
    attrs = dict(_SALVAGE_ATTR.findall(m.group(1)))
    errors = []
    for e in _SALVAGE_ERROR.finditer(m.group(2)):
        err_attrs = {k.decode(): v.decode("utf-8", "replace") for k, v in _SALVAGE_ATTR.findall(e.group(1))}
        errors.append(
            FaultError(
                err_attrs.get("code"),
                _salvage_text(e.group(2), b"Message"),
                _salvage_text(e.group(2), b"Detail"),
                err_attrs.get("element") or None,
            )
        )
    fault_type = attrs.get(b"type")
    return Fault("xml", fault_type.decode("utf-8", "replace") if fault_type else None, tuple(errors))


_HTML = re.compile(rb"^\s*(<!doctype\s+html|<html)", re.I)
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)
_XML_LIMIT = 1_000_000


def _html_summary(content: bytes) -> str:
    m = _TITLE.search(content)
    raw = m.group(1) if m else re.sub(rb"<[^>]+>", b" ", content[:2000])
    return " ".join(raw.decode("utf-8", "replace").split())[:200]


def parse_body(content: bytes, content_type: str | None = None) -> Parsed:
    """Sniff and parse a body: the content type is not trusted (throttle faults come as XML, ref §3)."""
    head = content.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head:
        return Parsed("empty")
    if head.startswith((b"{", b"[")):
        try:
            # Amounts stay exact: money is Decimal, never float (ARCHITECTURE.md; pqb PR#356).
            body = json.loads(head.decode("utf-8"), parse_float=Decimal)
        except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting overflows the parser
            return Parsed("malformed", summary=_snippet(head))
        return Parsed("json", body, fault_from_json(body))
    if _HTML.match(head):
        return Parsed("html", summary=_html_summary(head))
    if head.startswith(b"<") and len(head) <= _XML_LIMIT:
        try:
            # ElementTree resolves no external entities; expat caps entity expansion.
            root = ET.fromstring(head)
        except ET.ParseError:
            if "html" in (content_type or "").lower():
                return Parsed("html", summary=_html_summary(head))
            return Parsed("malformed", fault=_salvage_fault(head), summary=_snippet(head))
        return Parsed("xml", root, _xml_fault(root), summary=_local(root.tag))
    return Parsed("text", summary=_snippet(head))


def _snippet(content: bytes) -> str:
    return " ".join(content[:200].decode("utf-8", "replace").split())


# JSON with exact money
def dumps(body: Any) -> bytes:
    """JSON with Decimals written as exact numbers (json.dumps would refuse them or go through float)."""
    marks: dict[str, str] = {}
    nonce = uuid.uuid4().hex

    def swap(value: Any) -> Any:
        if isinstance(value, Decimal):
            if not value.is_finite():
                raise ValueError("amounts must be finite")
            mark = f"@dec{nonce}{len(marks)}@"
            marks[mark] = format(value, "f")
            return mark
        if isinstance(value, Mapping):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [swap(v) for v in value]
        return value

    text = json.dumps(swap(body), ensure_ascii=False, separators=(",", ":"))
    for mark, number in marks.items():
        text = text.replace(f'"{mark}"', number)
    return text.encode("utf-8")  # QBO refuses bodies that are not UTF-8 (code 500, ref §1)


def entity_object(body: Any, name: str, *, needs_id: bool) -> dict[str, Any] | None:
    """The entity of `{"Bill": {...}, "time": ..}` (ref §5), or None when the body names none.

    Creates and updates must also carry the object's Id: a record is marked synced by it.
    """
    if not isinstance(body, dict):
        return None
    obj = body.get(name, next((v for k, v in body.items() if k.lower() == name.lower()), None))
    if not isinstance(obj, dict) or (needs_id and not obj.get("Id")):
        return None
    return obj
