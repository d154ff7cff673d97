"""A local QuickBooks Online emulator, served in-process (httpx transport) or over loopback HTTP."""

from qbo.sandbox.clock import SandboxClock
from qbo.sandbox.engine import Sandbox
from qbo.sandbox.faults import FAULT_KINDS, FaultPlan
from qbo.sandbox.limits import Limits
from qbo.sandbox.response import DELIVER, RESET, TIMEOUT, SandboxError, SandboxResponse
from qbo.sandbox.store import COMPANY_FORMAT

__all__ = [
    "COMPANY_FORMAT",
    "DELIVER",
    "FAULT_KINDS",
    "RESET",
    "TIMEOUT",
    "FaultPlan",
    "Limits",
    "Sandbox",
    "SandboxClock",
    "SandboxError",
    "SandboxResponse",
]
