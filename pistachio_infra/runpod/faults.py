"""Turning what RunPod answers into the port's errors, shared by both adapters.

Every message is one line, names the fix, and never contains the API key.
"""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime
from time import time

from .port import (
    AuthError,
    ConflictError,
    InsufficientBalanceError,
    NoCapacityError,
    NotFoundError,
    RateLimitedError,
    RunPodApiError,
    TransientError,
    ValidationError,
)

# RunPod says "no capacity" only in free text (REST v2 400 detail, GraphQL error message).
CAPACITY_RE = re.compile(
    r"capacity|no longer any instances|not enough free gpus|could not be placed|out of stock|"
    r"no (?:available )?(?:machines|instances|gpus) (?:are )?available",
    re.IGNORECASE,
)
BALANCE_RE = re.compile(
    r"insufficient (?:balance|funds|credit)|balance is too low|not have enough funds|add funds", re.IGNORECASE
)
RATE_RE = re.compile(r"rate.?limit|too many requests", re.IGNORECASE)
TRANSIENT_RE = re.compile(r"something went wrong|internal.server.error|try again later|timed? ?out", re.IGNORECASE)
NOT_FOUND_RE = re.compile(r"not found|does not exist|no such", re.IGNORECASE)

FIX_AUTH = "check RUNPOD_API_KEY (RunPod console → Settings → API Keys)"
FIX_FORBIDDEN = "use a key with read/write access, or choose another GPU type or cloud"
FIX_BALANCE = "add credit in the RunPod console (Billing), then retry"
FIX_CAPACITY = "try another GPU class or data center, or retry later"
FIX_VALIDATION = "fix the request as the message says; retrying it unchanged will fail again"
FIX_NOT_FOUND = "check the id (it may have been deleted); `pistachio-infra status` lists what exists"
FIX_CONFLICT = "the resource is not in a state that allows this; read its status and act on that"
FIX_TRANSIENT = "RunPod failed on its side; retry in a minute"


def one_line(text: str, secret: str | None = None, limit: int = 300) -> str:
    """Collapse whitespace, drop the secret, cut to `limit` characters."""
    if secret:
        text = text.replace(secret, "***")
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time())
    except (TypeError, ValueError):
        return None


def error_for_status(
    status: int, what: str, detail: str, retry_after: float | None = None, secret: str | None = None
) -> RunPodApiError:
    """The port error for an HTTP status (REST v2 problem+json semantics). `what` names the call."""
    cause = one_line(f"{what}: HTTP {status}: {detail}" if detail else f"{what}: HTTP {status}", secret)
    if status == 401:
        return AuthError(cause, FIX_AUTH, status)
    if status == 402:
        return InsufficientBalanceError(cause, FIX_BALANCE, status)
    if status == 403:
        return AuthError(cause, FIX_FORBIDDEN, status)
    if status == 404:
        return NotFoundError(cause, FIX_NOT_FOUND, status)
    if status == 409:
        return ConflictError(cause, FIX_CONFLICT, status)
    if status == 429:
        return RateLimitedError(cause, retry_after, status)
    if status == 400 and CAPACITY_RE.search(detail):
        return NoCapacityError(cause, FIX_CAPACITY, status)
    if status in (400, 405, 413, 415, 422):
        return ValidationError(cause, FIX_VALIDATION, status)
    if status >= 500 or status in (408, 425):
        return TransientError(cause, FIX_TRANSIENT, status)
    return RunPodApiError(cause, FIX_VALIDATION, status)


def error_for_message(what: str, message: str, secret: str | None = None) -> RunPodApiError:
    """The port error for a GraphQL error message (the SDK keeps only the first message, no status)."""
    cause = one_line(f"{what}: {message}", secret)
    if CAPACITY_RE.search(message):
        return NoCapacityError(cause, FIX_CAPACITY)
    if BALANCE_RE.search(message):
        return InsufficientBalanceError(cause, FIX_BALANCE)
    if RATE_RE.search(message):
        return RateLimitedError(cause, None)
    if TRANSIENT_RE.search(message):
        return TransientError(cause, FIX_TRANSIENT)
    if NOT_FOUND_RE.search(message):
        return NotFoundError(cause, FIX_NOT_FOUND)
    if re.search(r"unauthori[sz]ed|api key", message, re.IGNORECASE):
        return AuthError(cause, FIX_AUTH)
    if re.search(r"access denied|forbidden|not allowed to|permission", message, re.IGNORECASE):
        return AuthError(cause, FIX_FORBIDDEN)
    return ValidationError(cause, FIX_VALIDATION)
