"""A small in-memory QBO (an httpx MockTransport handler), a fake clock, and the fault shapes of ref §3."""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx

from pipelines.config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

__all__ = [
    "AUTH_CODE",
    "BASE",
    "HTML_503",
    "REALM",
    "START",
    "FakeClock",
    "FakeQbo",
    "fault_in_200",
    "gateway_401",
    "html_503",
    "invalid_grant",
    "standard_fault",
    "truncated_json",
    "xml_throttle",
]

BASE = "http://qbo.test"
REALM = "9341453050298461"
AUTH_CODE = "AB11-auth-code"
START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


# the fault shapes of ref §3, byte for byte
def standard_fault(
    code: str = "6240",
    message: str = "Duplicate Name Exists Error",
    detail: str = "The name supplied already exists. : Another customer, vendor or employee is already using this name",
    element: str = "",
    *,
    status: int = 400,
    fault_type: str = "ValidationFault",
    tid: str = "1-6a1f-standard",
) -> httpx.Response:
    error = f'{{"Message":"{message}","Detail":"{detail}","code":"{code}","element":"{element}"}}'
    body = f'{{"Fault":{{"Error":[{error}],"type":"{fault_type}"}},"time":"2017-09-29T09:17:31.892-07:00"}}'
    return httpx.Response(
        status, content=body.encode(), headers={"content-type": "application/json", "intuit_tid": tid}
    )


def fault_in_200(code: str = "6000", detail: str = "Business Validation Error: tax code missing") -> httpx.Response:
    """A 200 that carries a Fault (ref §3: always check the body)."""
    return standard_fault(
        code,
        "A business validation error has occurred while processing your request",
        detail,
        status=200,
        tid="1-6a1f-200fault",
    )


GATEWAY_401 = (
    b'{"warnings":null,"intuitObject":null,"fault":{"error":[{"message":"message=AuthenticationFailed; '
    b'errorCode=003200; statusCode=401","detail":"Malformed bearer token: too short or too long",'
    b'"code":"3200",'
    b'"element":null}],"type":"AUTHENTICATION"},"queryResponse":null,"batchItemResponse":[],"time":1633520295688}'
)


def gateway_401() -> httpx.Response:
    """The gateway's lowercase `fault` with epoch-millisecond time (ref §3, pqb#250)."""
    return httpx.Response(
        401, content=GATEWAY_401, headers={"content-type": "application/json", "intuit_tid": "1-6a1f-gateway"}
    )


XML_THROTTLE = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="2017-09-29T09:17:31.892-07:00">'
    b'<Fault type="SERVICE"><Error code="3001"><Message>message=ThrottleExceeded; errorCode=003001; '
    b"statusCode=429</Message><Detail>The request limit was reached. Try again later</Detail></Error></Fault>"
    b"</IntuitResponse>"
)


def xml_throttle(content_type: str = "application/xml", retry_after: str | None = None) -> httpx.Response:
    """429 as XML even though JSON was asked for (ref §3, pqb#43)."""
    headers = {"content-type": content_type, "intuit_tid": "1-6a1f-throttle"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return httpx.Response(429, content=XML_THROTTLE, headers=headers)


HTML_503 = (
    b"<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    b"<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


def html_503() -> httpx.Response:
    """The nginx page a 503 can be (ref §3, qbo_api#81)."""
    return httpx.Response(503, content=HTML_503, headers={"content-type": "text/html"})


def invalid_grant() -> httpx.Response:
    return httpx.Response(
        400,
        content=b'{"error":"invalid_grant","error_description":"Token invalid"}',
        headers={"content-type": "application/json", "intuit_tid": "1-6a1f-oauth"},
    )


def truncated_json() -> httpx.Response:
    return httpx.Response(
        200,
        content=b'{"Vendor":{"Id":"58","SyncToken":"0","DisplayName":"Acme Sup',
        headers={"content-type": "application/json", "intuit_tid": "1-6a1f-truncated"},
    )


# time
class FakeClock:
    """An injected clock whose sleep moves time forward at once and records every wait."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += timedelta(seconds=seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += timedelta(seconds=seconds)


# the in-memory QBO
Reply = httpx.Response | Callable[[httpx.Request], httpx.Response]


def _json(status: int, body: Any, tid: str = "1-6a1f-ok") -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json", "intuit_tid": tid},
    )


class FakeQbo:
    """OAuth token endpoint plus a little of the v3 API over dicts; `script()` queues replies for the API."""

    def __init__(self, clock: FakeClock, realm: str = REALM) -> None:
        self.clock = clock
        self.realm = realm
        self.requests: list[httpx.Request] = []
        self.replies: deque[Reply] = deque()
        self.objects: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.replayed: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self.deleted: dict[str, dict[str, str]] = defaultdict(dict)  # entity -> Id -> when (CDC only)
        self.cdc_keeps_newest = False  # QBO keeps the oldest 1000 (as the local sandbox does) or not?
        self.access = self._token("AT")
        self.refresh = self._token("RT")
        self.rotate = True
        self.token_calls = 0
        self.on_token: Callable[[], None] | None = None
        self.on_api: Callable[[httpx.Request], None] | None = None
        self._lock = threading.Lock()
        self._ids = 100

    @staticmethod
    def _token(prefix: str) -> str:
        # Long and random, like Intuit's, so a grep for it cannot hit anything by chance.
        return f"{prefix}1-{secrets.token_urlsafe(48)}"

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def expire_access(self) -> None:
        """QBO stops accepting the current access token (it expired on Intuit's side)."""
        self.access = self._token("AT")

    @property
    def api_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.startswith("/v3/")]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
        if request.url.path == "/oauth2/v1/tokens/bearer":
            return self._token_endpoint(request)
        if request.url.path == "/oauth2/v1/tokens/revoke":
            return httpx.Response(200)
        prefix = f"/v3/company/{self.realm}/"
        assert request.url.path.startswith(prefix), request.url.path
        if request.headers.get("Authorization") != f"Bearer {self.access}":
            return gateway_401()
        if self.on_api is not None:
            self.on_api(request)
        with self._lock:
            reply = self.replies.popleft() if self.replies else None
        if reply is not None:
            return reply(request) if callable(reply) else reply
        return self._route(request, request.url.path[len(prefix) :])

    # OAuth
    def _token_endpoint(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.token_calls += 1
        if self.on_token is not None:
            self.on_token()
        expected = "Basic " + base64.b64encode(f"{DEMO_CLIENT_ID}:{DEMO_CLIENT_SECRET}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return httpx.Response(401, json={"error": "invalid_client"})
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if form.get("grant_type") == "authorization_code":
            if form.get("code") != AUTH_CODE:
                return invalid_grant()
        elif form.get("grant_type") != "refresh_token" or form.get("refresh_token") != self.refresh:
            return invalid_grant()
        with self._lock:
            self.access = self._token("AT")
            if self.rotate or form.get("grant_type") == "authorization_code":
                self.refresh = self._token("RT")
            body = {
                "access_token": self.access,
                "token_type": "bearer",
                "expires_in": 3600,
                "refresh_token": self.refresh,
                "x_refresh_token_expires_in": 8726400,
            }
        if request.headers.get("x-include-refresh-token-hard-expires-in") == "true":
            body["x_refresh_token_hard_expires_in"] = 156032154
        return _json(200, body, tid="1-6a1f-token")

    # API
    def _route(self, request: httpx.Request, path: str) -> httpx.Response:
        rid = request.url.params.get("requestid")
        if rid and rid in self.replayed:  # ref §1: a repeat returns the original answer, nothing is redone
            status, content, headers = self.replayed[rid]
            return httpx.Response(status, content=content, headers=headers)
        reply = self._dispatch(request, path)
        if rid:
            self.replayed[rid] = (reply.status_code, reply.content, dict(reply.headers))
        return reply

    def _dispatch(self, request: httpx.Request, path: str) -> httpx.Response:
        head, _, rest = path.partition("/")
        if head == "query":
            return self._query(request.url.params["query"])
        if head == "batch":
            return self._batch(json.loads(request.content))
        if head == "cdc":
            return self._cdc(request.url.params["entities"].split(","), request.url.params["changedSince"])
        entity = head
        if request.method == "GET" and entity in ("companyinfo", "preferences"):
            name = "CompanyInfo" if entity == "companyinfo" else "Preferences"
            return _json(200, {name: {"Id": "1", "CompanyName": "Demo Co"}, "time": "2026-11-20T01:00:00.000-08:00"})
        if request.method == "GET":
            obj = self.objects[entity].get(rest)
            if obj is None:
                return standard_fault(
                    "610",
                    "Object Not Found",
                    "Object Not Found : Something you're trying to use has been made inactive.",
                )
            return _json(200, {entity.capitalize(): obj, "time": "2026-11-20T01:00:00.000-08:00"})
        return self._write(entity, json.loads(request.content), request.url.params.get("operation"))

    def _write(self, entity: str, body: dict[str, Any], operation: str | None) -> httpx.Response:
        key = entity.capitalize()
        try:
            obj = self._apply(entity, body, operation)
        except _Fault as fault:
            return standard_fault(fault.code, fault.message, fault.detail)
        return _json(200, {key: obj, "time": "2026-11-20T01:00:00.000-08:00"})

    def _apply(self, entity: str, body: dict[str, Any], operation: str | None) -> dict[str, Any]:
        with self._lock:
            table = self.objects[entity]
            if operation == "delete":
                table.pop(str(body["Id"]), None)
                return {"status": "Deleted", "domain": "QBO", "Id": str(body["Id"])}
            if body.get("Id"):
                current = table[str(body["Id"])]
                if body.get("SyncToken") != current["SyncToken"]:
                    raise _Fault("5010", "Stale Object Error", "Stale Object Error : You and root were working")
                obj = {**current, **body} if body.get("sparse") else dict(body)
                obj["SyncToken"] = str(int(current["SyncToken"]) + 1)
            else:
                name = body.get("DisplayName")
                if name and any(o.get("DisplayName") == name for o in table.values()):
                    raise _Fault("6240", "Duplicate Name Exists Error", "The name supplied already exists. : null")
                self._ids += 1
                obj = {**body, "Id": str(self._ids), "SyncToken": "0"}
            stamp = self.clock().isoformat(timespec="seconds")
            obj["MetaData"] = {"CreateTime": stamp, "LastUpdatedTime": stamp}
            table[obj["Id"]] = obj
            return obj

    def _query(self, sql: str) -> httpx.Response:
        entity = re.search(r"FROM (\w+)", sql, re.I).group(1).lower()  # type: ignore[union-attr]
        rows = sorted(self.objects[entity].values(), key=lambda o: int(o["Id"]))
        if m := re.search(r"MetaData.LastUpdatedTime >= '([^']+)'", sql):
            since = datetime.fromisoformat(m.group(1))
            rows = [r for r in rows if datetime.fromisoformat(r["MetaData"]["LastUpdatedTime"]) >= since]
        if re.match(r"SELECT count", sql, re.I):
            return _json(200, {"QueryResponse": {"totalCount": len(rows)}})
        start = int(m.group(1)) if (m := re.search(r"STARTPOSITION (\d+)", sql)) else 1
        size = int(m.group(1)) if (m := re.search(r"MAXRESULTS (\d+)", sql)) else 100
        page = rows[start - 1 : start - 1 + size]
        found = {entity.capitalize(): page, "startPosition": start, "maxResults": len(page)} if page else {}
        return _json(200, {"QueryResponse": found, "time": "2026-11-20T01:00:00.000-08:00"})

    def _cdc(self, entities: list[str], changed_since: str) -> httpx.Response:
        since = datetime.fromisoformat(changed_since)
        changes = [
            (datetime.fromisoformat(o["MetaData"]["LastUpdatedTime"]), name, o)
            for name in entities
            for o in self.objects[name.lower()].values()
        ] + [
            (
                datetime.fromisoformat(at),
                name,
                {"Id": i, "status": "Deleted", "MetaData": {"LastUpdatedTime": at}},
            )
            for name in entities
            for i, at in self.deleted[name.lower()].items()
        ]
        changes = sorted(
            (c for c in changes if c[0] >= since),
            key=lambda c: (c[0], int(c[2]["Id"])),
            reverse=self.cdc_keeps_newest,
        )[:1000]
        groups = [{name: [o for _, n, o in changes if n == name]} for name in entities]
        return _json(
            200,
            {"CDCResponse": [{"QueryResponse": [g if g[n] else {} for g, n in zip(groups, entities, strict=True)]}]},
        )

    def _batch(self, body: dict[str, Any]) -> httpx.Response:
        answers = []
        for item in body["BatchItemRequest"]:
            if "Query" in item:
                answers.append(
                    {
                        "bId": item["bId"],
                        "QueryResponse": json.loads(self._query(item["Query"]).content)["QueryResponse"],
                    }
                )
                continue
            key = next(k for k in item if k not in ("bId", "operation", "optionsData"))
            try:
                obj = self._apply(key.lower(), item[key], "delete" if item["operation"] == "delete" else None)
                answers.append({"bId": item["bId"], key: obj})
            except _Fault as fault:
                answers.append(
                    {
                        "bId": item["bId"],
                        "Fault": {
                            "type": "ValidationFault",
                            "Error": [
                                {
                                    "Message": fault.message,
                                    "Detail": fault.detail,
                                    "code": fault.code,
                                    "element": "",
                                }
                            ],
                        },
                    }
                )
        # Answer order is not promised (ref §8): reversed here, so matching must go by bId.
        return _json(200, {"BatchItemResponse": answers[::-1], "time": "2026-11-20T01:00:00.000-08:00"})


class _Fault(Exception):
    def __init__(self, code: str, message: str, detail: str) -> None:
        super().__init__(code)
        self.code, self.message, self.detail = code, message, detail
