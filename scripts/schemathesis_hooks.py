"""Schemathesis hooks for scripts/schemathesis: steer generation onto tenant A's real objects and
check that tenant B can reach none of them.

Loaded by schemathesis through SCHEMATHESIS_HOOKS; scripts/schemathesis_run.py writes the context
file it reads (SCHEMATHESIS_CONTEXT: base URL, tokens, tenant A's seeded ids, which run this is)
and reads back the figures it leaves in SCHEMATHESIS_STATS.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import threading
import uuid

import requests
import schemathesis
from hypothesis import strategies as st

with open(os.environ["SCHEMATHESIS_CONTEXT"]) as f:
    CONTEXT = json.load(f)

MODE = CONTEXT["mode"]  # "authorized" (tenant A's token) or "unauthorized"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

_lock = threading.Lock()
# Every id tenant A owns: the seeded ones, and every uuid in A's successful answers (connections
# schemathesis creates, hook endpoint ids), so B's answers can be searched for any of them.
_a_ids: set[str] = set(CONTEXT["a_ids"])
_stats = {
    "a_calls": 0,
    "a_calls_on_seeded_objects": 0,
    "replayed_object_calls": 0,
    "replayed_object_calls_404_identical": 0,
    "replayed_list_calls": 0,
    "replayed_list_calls_clean": 0,
    "unauthorized_calls": 0,
    "unauthorized_calls_401": 0,
    "leaks": [],
}


def _dump_stats() -> None:
    with _lock, open(os.environ["SCHEMATHESIS_STATS"], "w") as f:
        json.dump({**_stats, "a_ids_known": len(_a_ids)}, f)


atexit.register(_dump_stats)


def _record_leak(what: str) -> None:
    with _lock:
        if len(_stats["leaks"]) < 50:
            _stats["leaks"].append(what)


# --- generation: aim at real objects -------------------------------------------------------------


def _is_mutation(method: str) -> bool:
    return method.upper() in ("PATCH", "DELETE", "PUT", "POST")


@schemathesis.hook
def before_generate_path_parameters(context, strategy):
    """Half of the ids are tenant A's real connections; reads get the live one with data, changes
    and deletions a sacrificial one, so that the live one keeps its data for the whole run."""
    operation = context.operation
    if MODE != "authorized" or operation is None or "{id}" not in operation.path:
        return strategy
    # A path naming an object below the connection is seeded in `map_case`, where the other
    # generated parameters are at hand.
    if operation.path.count("{") > 1:
        return strategy
    seeded = CONTEXT["a_mutable_id"] if _is_mutation(operation.method) else CONTEXT["a_live_id"]
    return st.one_of(strategy, st.just({"id": seeded}))


@schemathesis.hook
def before_generate_query(context, strategy):
    """Filters and cursors that match tenant A's data, so list calls return rows, not just 422s."""
    operation = context.operation
    if MODE != "authorized" or operation is None or operation.method.upper() != "GET":
        return strategy
    names = {p.name for p in operation.query}
    real: dict[str, st.SearchStrategy] = {}
    if "project" in names and CONTEXT["a_project_ids"]:
        real["project"] = st.sampled_from(CONTEXT["a_project_ids"])
    cursors = CONTEXT["a_cursors"].get(operation.path, {})
    for name in ("cursor", "after"):
        if name in names and cursors.get(name):
            real[name] = st.sampled_from(cursors[name])
    if not real:
        return strategy
    return st.one_of(strategy, st.fixed_dictionaries({}, optional=real))


_object_turn = 0


@schemathesis.hook
def map_case(context, case):
    """Whatever link or example chose it, a change or deletion never hits the live connection.
    Every other read of one object asks for it in tenant A's live connection and one of its
    projects, so that some calls reach real objects."""
    global _object_turn
    params = case.path_parameters or {}
    if MODE == "authorized" and _is_mutation(case.method) and params.get("id") == CONTEXT["a_live_id"]:
        case.path_parameters = {**params, "id": CONTEXT["a_mutable_id"]}
    elif MODE == "authorized" and "project_id" in params and CONTEXT["a_project_ids"]:
        _object_turn += 1
        if _object_turn % 2 == 0:
            project = CONTEXT["a_project_ids"][_object_turn // 2 % len(CONTEXT["a_project_ids"])]
            case.path_parameters = {**params, "id": CONTEXT["a_live_id"], "project_id": project}
    return case


# --- the unauthorized client ---------------------------------------------------------------------

# No header, a token of the right shape signed with another key, an expired token of the right
# key, and two malformed headers; cycled so that every operation meets each of them.
_UNAUTHORIZED = [
    None,
    "Bearer " + CONTEXT["wrong_key_token"],
    "Bearer " + CONTEXT["expired_token"],
    "Bearer not-a-jwt",
    "Basic " + "dXNlcjpwYXNz",
]
_unauthorized_turn = 0


# Message framing is the HTTP client's: a generated `content-length: ]z` makes a request that is
# not HTTP, which the server's HTTP parser (hyper) refuses with a bare 400 before any route,
# authentication or API contract is reached. Such headers are left to the client.
_FRAMING_HEADERS = ("content-length", "transfer-encoding", "host", "connection")


@schemathesis.hook
def before_call(context, case, kwargs):
    global _unauthorized_turn
    if case.headers and any(k.lower() in _FRAMING_HEADERS for k in case.headers):
        for name in [k for k in case.headers if k.lower() in _FRAMING_HEADERS]:
            del case.headers[name]
    if MODE != "unauthorized":
        return
    with _lock:
        choice = _UNAUTHORIZED[_unauthorized_turn % len(_UNAUTHORIZED)]
        _unauthorized_turn += 1
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    if choice is not None:
        headers["Authorization"] = choice
    case.headers = headers


def _requires_auth(case) -> bool:
    security = case.operation.definition.raw.get("security")
    return bool(security)


@schemathesis.check
def unauthorized_is_401(ctx, response, case):
    """Without a valid token every protected operation answers 401, whatever else is wrong with
    the request, and the answer is the documented error body."""
    # The coverage phase also sends methods a route does not have (TRACE, ...): 405 before any
    # authentication is right for those, so only the operation's own method is held to 401.
    if MODE != "unauthorized" or not _requires_auth(case) or case.method.upper() != case.operation.method.upper():
        return None
    with _lock:
        _stats["unauthorized_calls"] += 1
    if response.status_code != 401:
        raise AssertionError(f"{case.method} {case.formatted_path} without a valid token answered {response.status_code}, not 401")
    body = response.json()
    if body.get("error", {}).get("code") != "unauthorized":
        raise AssertionError(f"401 body is not the unauthorized error: {response.text[:200]}")
    with _lock:
        _stats["unauthorized_calls_401"] += 1
    return None


# --- tenant B replays tenant A's successful calls ------------------------------------------------


def _replay(response, authorization: str, url: str | None = None) -> requests.Response:
    request = response.request
    headers = {k: v for k, v in request.headers.items() if k.lower() not in ("authorization", "content-length")}
    headers["Authorization"] = authorization
    return requests.request(request.method, url or request.url, headers=headers, data=request.body, timeout=30)


@schemathesis.check
def tenant_b_gets_nothing_of_a(ctx, response, case):
    """Every successful call of tenant A, replayed with tenant B's token: on one of A's objects
    B gets exactly the 404 a missing id gets; on a list B's answer holds none of A's ids."""
    if MODE != "authorized":
        return None
    status = response.status_code
    with _lock:
        _stats["a_calls"] += 1
    if not 200 <= status < 300:
        return None
    path_id = (case.path_parameters or {}).get("id")
    with _lock:
        if path_id in (CONTEXT["a_live_id"], CONTEXT["a_mutable_id"]):
            _stats["a_calls_on_seeded_objects"] += 1
        if response.request.method != "DELETE" and response.content:
            _a_ids.update(UUID_RE.findall(response.text))
    b_auth = "Bearer " + CONTEXT["b_token"]
    method = response.request.method

    if "{id}" in case.operation.path:
        theirs = _replay(response, b_auth)
        missing_url = response.request.url.replace(str(path_id), str(uuid.uuid4()), 1)
        missing = _replay(response, b_auth, missing_url)
        with _lock:
            _stats["replayed_object_calls"] += 1
        if theirs.status_code != 404:
            _record_leak(f"{method} {response.request.url} with B's token: {theirs.status_code} {theirs.text[:200]}")
            raise AssertionError(f"tenant B's {method} on tenant A's object answered {theirs.status_code}, not 404: {theirs.text[:300]}")
        if (missing.status_code, missing.text, missing.headers.get("content-type")) != (
            theirs.status_code,
            theirs.text,
            theirs.headers.get("content-type"),
        ):
            _record_leak(f"{method} {response.request.url}: B's 404 differs from a missing id's")
            raise AssertionError(
                f"tenant B's 404 on A's object differs from the 404 of a missing id:\n{theirs.text[:300]}\n{missing.text[:300]}"
            )
        with _lock:
            _stats["replayed_object_calls_404_identical"] += 1
        return None

    if method == "GET" and case.operation.path.startswith("/v1/"):
        theirs = _replay(response, b_auth)
        with _lock:
            _stats["replayed_list_calls"] += 1
            known = set(_a_ids)
        found = sorted(known & set(UUID_RE.findall(theirs.text)))
        if found:
            _record_leak(f"GET {response.request.url} with B's token shows A's ids {found[:5]}")
            raise AssertionError(f"tenant B's list holds tenant A's ids {found[:5]}: {theirs.text[:300]}")
        if theirs.status_code >= 500:
            raise AssertionError(f"tenant B's replay of a list call answered {theirs.status_code}")
        with _lock:
            _stats["replayed_list_calls_clean"] += 1
    return None
