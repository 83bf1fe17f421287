"""Seeds the live service for scripts/schemathesis, runs schemathesis twice against it (with tenant
A's token, and as an unauthorized client) and prints what was tried and what held.

Exits non-zero when schemathesis found a failure, or when a run exercised too little to mean
anything (no call on a real object, no replay by tenant B, no 401 checked).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
SIM_TOKEN = "glpat-sim-owner-api-0001"
# Tenant A: a Premium group (group hook) that stays live with its data for the whole run, and a
# Free-group project (project hook) that schemathesis may change and delete. Tenant B: other
# projects of the Free group, so nothing of B's is also A's.
A_LIVE = {"groups_list": "1"}
A_MUTABLE = {"groups_list": "4", "projects_list": "4"}
B_CONNECTION = {"groups_list": "4", "projects_list": "2,6"}
DATA_LISTS = ["projects", "commits", "merge_requests", "issues", "notes", "pipelines"]
# The checks schemathesis runs with A's token. Left out: positive_data_acceptance (the schema
# cannot say which cursors a list returned, nor that a group id must exist in GitLab, so some
# schema-valid input is rightly refused), use_after_free (DELETE answers 202 and disconnects in
# the background: the connection stays readable, `deleting`, until our hooks are gone from
# GitLab) and object_level_authorization (it needs several identities configured in
# schemathesis; tenant_b_gets_nothing_of_a is that check, with tenant B's token).
AUTHORIZED_CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "ignored_auth",
    "ensure_resource_availability",
    "tenant_b_gets_nothing_of_a",
]
# /metrics is Prometheus' text for scrapers, not an API call: fuzzing it proves nothing.
EXCLUDED_PATHS = ["/metrics"]
UNAUTHORIZED_CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "unauthorized_is_401",
]


def log(message: str) -> None:
    print(f"schemathesis: {message}", flush=True)


def hs256(claims: dict, secret: str) -> str:
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(signature)


def expired_like(token: str, secret: str) -> str:
    """Tenant A's token with its times an hour in the past, signed with the right key."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    now = int(time.time())
    claims.update(iat=now - 7200, nbf=now - 7200, exp=now - 3600)
    return hs256(claims, secret)


class Api:
    def __init__(self, base: str):
        self.base = base
        self.http = requests.Session()

    def call(self, method: str, path: str, token: str, body: dict | None = None) -> tuple[int, dict]:
        resp = self.http.request(method, self.base + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        return resp.status_code, (resp.json() if resp.content else {})

    def get(self, path: str, token: str) -> dict:
        status, body = self.call("GET", path, token)
        if status != 200:
            raise SystemExit(f"GET {path}: {status} {body}")
        return body

    def wait_ready(self, deadline: float) -> None:
        while True:
            try:
                if self.http.get(self.base + "/readyz", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the service never became ready")
            time.sleep(0.2)

    def connect(self, token: str, fields: dict, sim: str) -> str:
        body = {"access_token": SIM_TOKEN, "start_date": "2024-01-01T00:00:00Z", "gitlab_url": sim, **fields}
        status, created = self.call("POST", "/v1/connections", token, body)
        if status != 201:
            raise SystemExit(f"creating a connection: {status} {created}")
        return created["id"]

    def wait_live(self, token: str, connection: str, deadline: float) -> dict:
        while True:
            detail = self.get(f"/v1/connections/{connection}", token)
            if detail["status"] == "live":
                return detail
            if detail["status"] in ("invalid", "needs_reauth") or time.monotonic() > deadline:
                raise SystemExit(f"connection {connection} did not go live: {detail}")
            time.sleep(0.3)


def seed(api: Api, sim: str, a_token: str, b_token: str) -> dict:
    deadline = time.monotonic() + 120
    api.wait_ready(deadline)
    a_live = api.connect(a_token, A_LIVE, sim)
    a_mutable = api.connect(a_token, A_MUTABLE, sim)
    b = api.connect(b_token, B_CONNECTION, sim)
    details = [api.wait_live(a_token, a_live, deadline), api.wait_live(a_token, a_mutable, deadline), api.wait_live(b_token, b, deadline)]
    records = details[0]["progress"]["records"]
    log(f"seeded: tenant A live with {records}, a second connection of A to change and delete, tenant B live")

    a_ids = {a_live, a_mutable} | {h["id"] for d in details[:2] for h in d.get("hooks", [])}
    projects = [p["id"] for c in (a_live, a_mutable) for p in api.get(f"/v1/connections/{c}/projects?limit=100", a_token)["items"]]
    # Real cursors to page on: the first page's next cursor of every list of the live connection.
    cursors: dict[str, dict[str, list[str]]] = {}
    for name in DATA_LISTS:
        page = api.get(f"/v1/connections/{a_live}/{name}?limit=1", a_token)
        if not page["items"]:
            raise SystemExit(f"tenant A's live connection has no {name}: nothing real to test on")
        if page.get("next_cursor"):
            cursors[f"/v1/connections/{{id}}/{name}"] = {"cursor": [page["next_cursor"]]}
    feed = api.get("/v1/changes?limit=5", a_token)
    cursors["/v1/changes"] = {"after": [c["cursor"] for c in feed["items"]]}
    b_ids = {b} | {h["id"] for h in details[2].get("hooks", [])}
    if a_ids & b_ids:
        raise SystemExit("tenants A and B share an id")
    return {
        "a_live_id": a_live,
        "a_live_records": records,
        "a_mutable_id": a_mutable,
        "a_ids": sorted(a_ids),
        "a_project_ids": sorted(set(projects)),
        "a_cursors": cursors,
    }


def run_schemathesis(args, mode: str, context: dict, max_time: int) -> tuple[int, dict, dict]:
    work = Path(args.work)
    context_file, stats_file = work / f"{mode}-context.json", work / f"{mode}-stats.json"
    report_dir = Path(args.reports).resolve() / mode
    shutil.rmtree(report_dir, ignore_errors=True)
    context_file.write_text(json.dumps({**context, "mode": mode}))
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
        "PYTHONPATH": str(ROOT / "scripts"),
        "SCHEMATHESIS_CONTEXT": str(context_file),
        "SCHEMATHESIS_STATS": str(stats_file),
    }
    checks = AUTHORIZED_CHECKS if mode == "authorized" else UNAUTHORIZED_CHECKS
    command = [
        str(Path(sys.executable).parent / "st"),
        "--config-file",
        str(ROOT / "scripts" / "schemathesis.toml"),
        "run",
        str(ROOT / "openapi.yaml"),
        "--url",
        args.api,
        "--checks",
        ",".join(checks),
        "--max-examples",
        os.environ["SCHEMATHESIS_MAX_EXAMPLES"],
        "--max-time",
        str(max_time),
        "--seed",
        os.environ["SCHEMATHESIS_SEED"],
        # One worker: CPython 3.11 before 3.11.8 can fail ast.parse in concurrent threads, which
        # hypothesis calls while building strategies ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--report",
        "ndjson",
        "--report-dir",
        str(report_dir),
        "--no-color",
    ]
    for path in EXCLUDED_PATHS:
        command += ["--exclude-path", path]
    if mode == "authorized":
        command += ["--header", f"Authorization: Bearer {context['a_token']}"]
    log(f"{mode} run: {' '.join(c if 'Bearer' not in c else 'Authorization: Bearer <token>' for c in command[1:])}")
    status = subprocess.run(command, env=env, cwd=work).returncode
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    return status, stats, summarize_report(report_dir)


def spec_operations() -> set[str]:
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return {f"{m.upper()} {path}" for path, item in spec["paths"].items() for m in item if m in methods and path not in EXCLUDED_PATHS}


def summarize_report(report_dir: Path) -> dict:
    """Operations, calls, checks and failures out of schemathesis' ndjson event stream."""
    operations, calls, checks, failures, statuses = set(), 0, 0, set(), {}
    for path in report_dir.glob("*.ndjson"):
        for line in path.read_text().splitlines():
            scenario = json.loads(line).get("ScenarioFinished")
            if scenario is None:
                continue
            recorder = scenario["recorder"]
            for case in recorder.get("cases", {}).values():
                operations.add(f"{case['value']['method'].upper()} {case['value']['path']}")
            for interaction in recorder.get("interactions", {}).values():
                calls += 1
                code = (interaction.get("response") or {}).get("status_code", "no response")
                statuses[code] = statuses.get(code, 0) + 1
            for results in recorder.get("checks", {}).values():
                for result in results:
                    checks += 1
                    if result["status"] != "success":
                        failures.add(result["name"])
    return {"operations": operations & spec_operations(), "calls": calls, "checks": checks, "statuses": statuses, "failures": sorted(failures)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api", required=True)
    parser.add_argument("--sim", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--reports", required=True)
    args = parser.parse_args()
    max_time = int(os.environ["SCHEMATHESIS_MAX_TIME"])
    log(f"seed {os.environ['SCHEMATHESIS_SEED']}, {max_time}s and at most {os.environ['SCHEMATHESIS_MAX_EXAMPLES']} examples per operation")

    a_token, b_token = os.environ["SCHEMATHESIS_A_TOKEN"], os.environ["SCHEMATHESIS_B_TOKEN"]
    api = Api(args.api)
    context = seed(api, args.sim, a_token, b_token)
    context.update(
        a_token=a_token,
        b_token=b_token,
        wrong_key_token=os.environ["SCHEMATHESIS_WRONG_KEY_TOKEN"],
        expired_token=expired_like(a_token, os.environ["SCHEMATHESIS_JWT_SECRET"]),
    )

    a_status, a_stats, a_report = run_schemathesis(args, "authorized", context, max_time)
    u_status, u_stats, u_report = run_schemathesis(args, "unauthorized", context, max(10, max_time // 3))
    still_status, still = api.call("GET", f"/v1/connections/{context['a_live_id']}", a_token)
    if still_status != 200:
        still = {"status": f"answering {still_status}", "progress": {"records": None}}

    codes = lambda r: ", ".join(f"{c}: {n}" for c, n in sorted(r["statuses"].items(), key=lambda kv: str(kv[0])))
    log(
        f"authorized run (tenant A's token): {len(a_report['operations'])} of {len(spec_operations())} operations, {a_report['calls']} calls ({codes(a_report)}), "
        f"{a_report['checks']} checks, failed: {a_report['failures'] or 'none'}"
    )
    log(
        f"tenant B replayed tenant A's successful calls: {a_stats.get('replayed_object_calls', 0)} on A's objects "
        f"({a_stats.get('a_calls_on_seeded_objects', 0)} of A's calls on the seeded connections), "
        f"{a_stats.get('replayed_object_calls_404_identical', 0)} answered 404 identical to a missing id; "
        f"{a_stats.get('replayed_list_calls', 0)} lists, {a_stats.get('replayed_list_calls_clean', 0)} holding none of A's "
        f"{a_stats.get('a_ids_known', 0)} ids; {len(a_stats.get('leaks', []))} leaks"
    )
    log(
        f"unauthorized run (no, malformed, expired or foreign-key token): {len(u_report['operations'])} of {len(spec_operations())} operations, "
        f"{u_report['calls']} calls ({codes(u_report)}), {u_report['checks']} checks; {u_stats.get('unauthorized_calls_401', 0)} of "
        f"{u_stats.get('unauthorized_calls', 0)} calls to protected operations answered 401; failed: {u_report['failures'] or 'none'}"
    )
    log(f"tenant A's live connection afterwards: {still['status']}, {still['progress']['records']}")

    verdicts = [
        ("no check failed in the authorized run", a_status == 0),
        ("no check failed in the unauthorized run", u_status == 0),
        # Without these the custom checks would pass vacuously.
        (
            "tenant B replayed calls on A's real objects and A's lists",
            a_stats.get("a_calls_on_seeded_objects", 0) > 0 and a_stats.get("replayed_object_calls", 0) > 0 and a_stats.get("replayed_list_calls", 0) > 0,
        ),
        ("the unauthorized run reached protected operations", u_stats.get("unauthorized_calls", 0) > 0),
        ("every operation of openapi.yaml was called in both runs", a_report["operations"] == u_report["operations"] == spec_operations()),
        # A run that changed or deleted it would have had nothing real to aim at for the rest.
        (
            "tenant A's live connection kept its status and data",
            still["status"] == "live" and still["progress"]["records"] == context["a_live_records"],
        ),
    ]
    for what, held in verdicts:
        if not held:
            log(f"FAILED: {what}")
    failed = sum(1 for _, held in verdicts if not held)
    if failed:
        log(f"to run the same cases again: SCHEMATHESIS_SEED={os.environ['SCHEMATHESIS_SEED']} scripts/schemathesis")
    print(f"schemathesis: {len(verdicts) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
