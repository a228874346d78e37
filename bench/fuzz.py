"""Schema fuzz: schemathesis against the API's own /openapi.json, on a real stack.

Starts a redis-server (EmbeddedRedis), gunicorn serving `api:create_app()` on 127.0.0.1 with an
API token, and a dramatiq worker for the test-only `dummy` demo; makes real jobs in every state
(SUCCESS, FAILURE, STARTED, PENDING, CANCELLED); then kills that worker and starts an idle one
on another queue: no fuzzed job runs (its documents may name any host, and nothing may leave the
loopback interface; ALLOW_PRIVATE_URLS keeps the API from resolving names at submit time), and
`/ready` still has a live worker to count. Then it sends a bounded number of generated
requests: schemathesis' coverage cases (boundaries, missing and ill-typed fields, wrong media
types), then Hypothesis-generated valid and invalid ones, each operation also with the real jobs'
ids, result paths and dataset names in its path parameters. Every response is checked: no 5xx,
status code, content type, headers and body as the document says, invalid data refused.

    .venv/bin/python -m bench.fuzz [--requests 3000] [--seed 0]

Prints requests sent, statuses, 5xx (with the server's traceback line), violations by check and
per operation, each with a curl reproduction; exits 1 on any 5xx or violation.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import requests

from api.platform.embedded import EmbeddedRedis, free_port
from tests.support import ROOT
from tests.support.platform import wait_for

TOKEN = "fuzz-token"
DUMMY = "tests.demos.dummy"
JOBS_QUEUE = "fuzz"  # the API's queue for the dummy demo (DEMO_QUEUES): only the first worker reads it
IDLE_QUEUE = "idle"  # the idle worker's: nothing is ever sent there
DEFAULT_REQUESTS = 3000
COVERAGE_SHARE = 0.3  # of the budget, for schemathesis' deterministic coverage cases
BODY_WEIGHT = 4  # an operation with a request body gets this many shares of the budget, others one
# The checks that say "the response is what the document promises" (and "no 5xx", "bad input refused").
CHECK_NAMES = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
               "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
               "ignored_auth")
# Operations that change jobs run last, so the read-only ones see every state first.
DESTRUCTIVE = ("/cancel", "/monitor/clear")


# -- the stack -------------------------------------------------------------------------------------
class Stack:
    """redis-server, gunicorn (loopback, token) and one dummy worker, all stopped by `stop()`."""

    def __init__(self, folder: Path, token: str = TOKEN):
        self.folder = folder
        self.token = token
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.data_folder = folder / "data"
        self.redis = EmbeddedRedis(folder / "redis", appendonly=False, port=0)
        self.procs: list[subprocess.Popen] = []
        self.worker: subprocess.Popen | None = None
        self.server_log = folder / "gunicorn.log"
        self.env: dict[str, str] = {}

    def start(self) -> Stack:
        self.redis.start()
        self.env = {**os.environ, "ENV_FILE": "/nonexistent", "DATA_FOLDER": str(self.data_folder),
                    "REDIS_URL": self.redis.url, "INSTALLED_APPS": DUMMY, "API_TOKEN": self.token,
                    "ALLOW_PRIVATE_URLS": "1", "MAX_QUEUE_LENGTH": "1000000", "WORKER_HEARTBEAT_S": "0.5",
                    "DEMO_QUEUES": f"dummy={JOBS_QUEUE}", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        self._spawn("gunicorn", "-m", "gunicorn", "--workers", "2", "--worker-class", "gthread", "--threads", "4",
                    "--bind", f"127.0.0.1:{self.port}", "api:create_app()")
        self.worker = self._worker(JOBS_QUEUE)
        wait_until(lambda: self._get("/ready").status_code == 200, 60, "gunicorn and the worker", self)
        return self

    def _worker(self, queue: str) -> subprocess.Popen:
        return self._spawn("worker", "-m", "dramatiq", "api.worker", "-p", "1", "-t", "1", "-Q", queue,
                           env={"DEMO_QUEUES": f"dummy={queue}"})

    def _spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        with open(self.folder / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env={**self.env, **(env or {})}, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def _get(self, path: str) -> requests.Response:
        try:
            return requests.get(self.base_url + path, headers=self.auth, timeout=5)
        except requests.ConnectionError:
            return requests.Response()  # status_code None: not up yet

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def idle_worker(self) -> None:
        """Kill the jobs' worker (SIGKILL: a job it runs stays STARTED; a TERM would wait for the
        job to end), and start one on a queue the API never sends to, so `/ready` is true."""
        import redis

        if self.worker and self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGKILL)
            self.worker.wait()
        client = redis.Redis.from_url(self.redis.url)
        before = set(client.hkeys("workers:info"))
        self.worker = self._worker(IDLE_QUEUE)
        wait_until(lambda: set(client.hkeys("workers:info")) - before, 60, "the idle worker's heartbeat", self)
        client.close()

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.folder.glob("*.log"))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.redis.stop()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_until(predicate, timeout: float, what: str, stack: Stack | None = None):
    """The tests' wait_for, with the stack's logs when it times out."""
    try:
        return wait_for(predicate, timeout, message=what)
    except AssertionError as exc:
        raise RuntimeError(f"{exc}\n{stack.logs() if stack else ''}") from None


# -- real jobs -------------------------------------------------------------------------------------
@dataclass
class RealIds:
    """What the path parameters get besides generated values: ids and names that exist."""

    jobs: dict[str, str] = field(default_factory=dict)  # state -> tracking id
    result_paths: list[str] = field(default_factory=list)  # of the SUCCESS job
    documents: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (type, uid, image names)

    def path_parameters(self, path: str) -> list[dict[str, str]]:
        """Real values for the path parameters of `path` (each dict fixes some, the rest is generated)."""
        ids = list(self.jobs.values())
        if path.startswith("/datasets/document/"):
            found = [{"type": t, "uid": u} for t, u, _ in self.documents]
            if "{name}" in path:
                found = [{"type": t, "uid": u, "name": n} for t, u, names in self.documents for n in names]
            return found
        if path.startswith("/datasets/"):
            return [{"uid": i} for i in ids]
        if path.endswith("/result/{path}"):
            success = self.jobs.get("SUCCESS")
            return [{"tracking_id": success, "path": p} for p in self.result_paths] + [{"tracking_id": i} for i in ids]
        if "{tracking_id}" in path:
            return [{"tracking_id": i} for i in ids]
        return []


def png_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (24, 16), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def make_jobs(stack: Stack) -> RealIds:
    """One job in each state, by the API's own routes; the worker is gone at the end."""
    session = requests.Session()
    session.headers.update(stack.auth)

    def start(**parameters) -> str:
        files = [("files", ("page.png", png_bytes(), "image/png"))]
        data = {"parameters": json.dumps(parameters), "experiment_id": "fuzz"}
        response = session.post(f"{stack.base_url}/dummy/start", files=files, data=data, timeout=10)
        assert response.status_code == 202, response.text
        return response.json()["tracking_id"]

    def state(tracking_id: str) -> str:
        return session.get(f"{stack.base_url}/dummy/{tracking_id}/status", timeout=10).json()["state"]

    real = RealIds()
    real.jobs["SUCCESS"] = start()
    real.jobs["FAILURE"] = start(fail=True)
    for name in ("SUCCESS", "FAILURE"):
        wait_until(lambda n=name: state(real.jobs[n]) == n, 60, f"the {name} job", stack)
    real.jobs["STARTED"] = start(delay=60)
    wait_until(lambda: state(real.jobs["STARTED"]) == "STARTED", 60, "the STARTED job", stack)
    stack.idle_worker()
    real.jobs["PENDING"] = start()
    real.jobs["CANCELLED"] = start()
    response = session.post(f"{stack.base_url}/dummy/{real.jobs['CANCELLED']}/cancel", timeout=10)
    assert response.status_code == 202 and state(real.jobs["CANCELLED"]) == "CANCELLED", response.text

    success = real.jobs["SUCCESS"]
    archive = session.get(f"{stack.base_url}/dummy/{success}/result", timeout=10)
    names = ["result.zip", "job.json", *zipfile.ZipFile(io.BytesIO(archive.content)).namelist()]
    real.result_paths = list(dict.fromkeys(names))
    dataset = session.get(f"{stack.base_url}/datasets/{success}", timeout=10).json()
    for doc in dataset.get("documents", []):
        listed = session.get(f"{stack.base_url}/datasets/document/{doc['type']}/{doc['uid']}", timeout=10).json()
        real.documents.append((doc["type"], doc["uid"], [str(i["name"]) for i in listed.get("images", [])]))
    return real


# -- the fuzz --------------------------------------------------------------------------------------
@dataclass
class Violation:
    check: str
    operation: str
    title: str
    status: int | None
    reproduction: str  # curl
    server_line: str = ""  # the last line of the server's traceback, for a 5xx
    scenario: str = ""  # what a coverage case tried ("Missing `documents`", ...)


@dataclass
class Report:
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    per_operation: Counter = field(default_factory=Counter)
    violations: list[Violation] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # operations/modes schemathesis could not generate for

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def clean(self) -> bool:
        return self.server_errors == 0 and not self.violations

    def distinct(self) -> dict[tuple[str, str, str, int | None], list[Violation]]:
        """Violations grouped by (check, operation, title, status); the shortest reproduction first."""
        groups: dict[tuple[str, str, str, int | None], list[Violation]] = {}
        for v in self.violations:
            groups.setdefault((v.check, v.operation, v.title, v.status), []).append(v)
        return {k: sorted(vs, key=lambda v: len(v.reproduction)) for k, vs in sorted(groups.items(), key=str)}

    def summary(self) -> str:
        lines = [f"requests sent: {self.requests}",
                 "statuses: " + ", ".join(f"{s}×{n}" for s, n in sorted(self.statuses.items())),
                 f"5xx: {self.server_errors}", f"spec violations: {len(self.violations)}"]
        by_check = Counter(v.check for v in self.violations)
        for check, n in sorted(by_check.items()):
            lines.append(f"  {check}: {n}")
        lines.append("per operation (requests, violations):")
        bad = Counter(v.operation for v in self.violations)
        for op, n in sorted(self.per_operation.items()):
            lines.append(f"  {op:55} {n:5} {bad.get(op, 0):5}")
        for (check, op, title, status), vs in self.distinct().items():
            first = vs[0]
            lines.append(f"\n[{check}] {op} → {status} ×{len(vs)}: {title}")
            lines.append(f"    {first.reproduction}")
            if first.scenario:
                lines.append(f"    case: {first.scenario}")
            if first.server_line:
                lines.append(f"    server: {first.server_line}")
        for item in self.skipped:
            lines.append(f"skipped: {item}")
        return "\n".join(lines)


class LogTail:
    """The server log since the last call: requests are sent one at a time, so the traceback a 5xx
    left is in the part written while it was handled."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def last_error(self) -> str:
        time.sleep(0.05)  # the worker writes its log line just after answering
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            text = handle.read().decode(errors="replace")
        frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', text)
        ours = [f for f in frames if str(ROOT / "api") in f[0]]
        errors = [line for line in text.splitlines() if re.match(r"^\w[\w.]*(Error|Exception)\b", line)]
        where = f"{ours[-1][0].replace(str(ROOT) + '/', '')}:{ours[-1][1]} in {ours[-1][2]}" if ours else ""
        return " — ".join(x for x in (where, errors[-1] if errors else "") if x)


def scenario(case) -> str:
    """What a case was made to test, as schemathesis says it (coverage cases only), and how."""
    meta = case.meta
    phase = getattr(meta, "phase", None)
    data = getattr(phase, "data", None) if getattr(getattr(phase, "name", None), "value", "") == "coverage" else None
    mode = getattr(getattr(meta, "generation", None), "mode", None)
    parts = [getattr(mode, "value", ""), getattr(data, "description", "") or "", getattr(data, "parameter", "") or ""]
    return " / ".join(p for p in parts if p)


class Fuzzer:
    """Sends the cases of one operation at a time and records every check's verdict."""

    def __init__(self, base_url: str, token: str, server_log: Path, seed: int, echo=print):
        from schemathesis import checks as core_checks
        from schemathesis.checks import load_all_checks
        from schemathesis.specs.openapi import checks as openapi_checks

        load_all_checks()

        def find(name: str):
            return getattr(openapi_checks, name, None) or getattr(core_checks, name)

        self.checks = [find(name) for name in CHECK_NAMES]
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.seed = seed
        self.echo = echo
        self.report = Report()
        self.log = LogTail(server_log)
        self.session = requests.Session()
        self.token = token
        self.load(requests.get(f"{base_url}/openapi.json", headers=self.headers, timeout=10).json())

    def load(self, document: dict) -> None:
        """Fuzz by `document` (the API's own, or, for a test of the checks, an altered copy)."""
        import schemathesis

        self.document = document
        # OpenAPI-aware auth: schemathesis sends the token, except in the cases made to go without it.
        config = schemathesis.Config.from_dict({"auth": {"openapi": {"bearer": {"bearer": self.token}}}})
        self.schema = schemathesis.openapi.from_dict(document, config=config)
        self.schema.config.update(base_url=self.base_url)

    def operations(self) -> list:
        from schemathesis.core.result import Ok

        found = [r.ok() for r in self.schema.get_all_operations() if isinstance(r, Ok)]
        return sorted(found, key=lambda op: (any(d in op.path for d in DESTRUCTIVE), "{" in op.path, op.path))

    def send(self, case) -> None:
        """One request, every check; a failure is recorded, not raised, so the run goes on."""
        from schemathesis.core.failures import FailureGroup

        label = f"{case.method.upper()} {case.operation.path}"
        self.log.mark()
        self.report.requests += 1
        self.report.per_operation[label] += 1
        try:
            response = case.call(base_url=self.base_url, session=self.session, timeout=30)
        except requests.RequestException as exc:
            self.report.violations.append(Violation("transport", label, f"{type(exc).__name__}: {exc}", None,
                                                    case.as_curl_command()))
            return
        self.report.statuses[response.status_code] += 1
        server_line = self.log.last_error() if response.status_code >= 500 else ""
        try:
            case.validate_response(response, checks=self.checks,
                                   transport_kwargs={"base_url": self.base_url, "session": self.session, "timeout": 30})
        except FailureGroup as group:
            for failure in group.exceptions:
                self._record(failure, label, response, case, server_line)
        except AssertionError as failure:  # a single Failure
            self._record(failure, label, response, case, server_line)
        else:
            if response.status_code >= 500:  # not_a_server_error is off for some statuses by config
                self.report.violations.append(Violation("not_a_server_error", label, "5xx", response.status_code,
                                                        case.as_curl_command(), server_line))

    def _record(self, failure: AssertionError, label: str, response, case, server_line: str) -> None:
        checks = getattr(failure, "checks", ()) or ("custom",)
        title = getattr(failure, "title", "") or str(failure).splitlines()[0]
        message = getattr(failure, "message", "")
        if message:
            title = f"{title}: {message.splitlines()[0][:200]}"
        self.report.violations.append(Violation(checks[0], label, title, response.status_code,
                                                case.as_curl_command(), server_line,
                                                scenario(case)))

    def coverage(self, operation, budget: int, fixed: list[dict[str, str]]) -> None:
        """schemathesis' coverage cases, in order, up to `budget`; real path values rotated into the
        cases that do not test the path itself."""
        from schemathesis.auths import AuthContext, set_on_case
        from schemathesis.generation import GenerationMode
        from schemathesis.generation.meta import ParameterLocation

        cases = self.schema.iter_coverage_cases(
            operation, generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
            generation_config=self.schema.config.generation_for(operation=operation))
        for index, case in enumerate(cases):
            if index >= budget:
                break
            if fixed and (case.meta is None or not case.meta.is_negative_at(ParameterLocation.PATH)):
                case.path_parameters = {**(case.path_parameters or {}), **fixed[index % len(fixed)]}
            set_on_case(case, AuthContext(operation=operation, app=None), None)  # as Hypothesis cases get it
            self.send(case)

    def generate(self, operation, budget: int, fixed: dict[str, str] | None, mode) -> None:
        """Up to `budget` Hypothesis cases of one kind (valid or invalid), seeded."""
        import hypothesis
        from hypothesis import HealthCheck, Phase
        from hypothesis.errors import HypothesisException

        strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed or None)
        if mode.value == "negative":  # the coverage cases go without the token already, once each way
            strategy = strategy.filter(lambda case: not self.schema.is_security_param_negated(case))

        @hypothesis.seed(self.seed)
        @hypothesis.settings(max_examples=budget, database=None, deadline=None, phases=[Phase.generate],
                             suppress_health_check=list(HealthCheck), verbosity=hypothesis.Verbosity.quiet)
        @hypothesis.given(strategy)
        def run(case) -> None:
            self.send(case)

        try:
            run()
        except HypothesisException as exc:  # Unsatisfiable: nothing of this kind can be made here
            self.report.skipped.append(f"{operation.method.upper()} {operation.path} {mode.value} "
                                       f"{fixed or ''}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")

    def negatable(self, operation, fixed: dict[str, str] | None) -> bool:
        """Whether invalid data can be made for `operation` with `fixed` path values, besides
        leaving out the token (which the coverage cases do, and Hypothesis would then pick often)."""
        definition = self.document["paths"][operation.path][operation.method]
        free = [p for p in definition.get("parameters", [])
                if p["name"] not in (fixed or {}) and p["schema"] != {"type": "string"}]  # any string is valid
        return bool(free or "requestBody" in definition)

    def weight(self, operation) -> int:
        """Operations with a body have more to get wrong: they get a larger share of the budget."""
        return BODY_WEIGHT if "requestBody" in self.document["paths"][operation.path][operation.method] else 1

    def run(self, total: int, real: RealIds) -> Report:
        """Coverage cases first (COVERAGE_SHARE of `total`), then generated ones with what is left,
        each share by weight, an operation's share split evenly between its targets: generated or
        real path values, valid or invalid data."""
        from schemathesis.generation import GenerationMode

        operations = self.operations()
        weights = sum(self.weight(op) for op in operations)
        for op in operations:
            self.coverage(op, max(1, int(total * COVERAGE_SHARE * self.weight(op) / weights)),
                          real.path_parameters(op.path))
        left = max(0, total - self.report.requests)
        for op in operations:
            start = self.report.requests
            targets = [(fixed, mode) for fixed in [None, *real.path_parameters(op.path)]
                       for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
                       if mode == GenerationMode.POSITIVE or self.negatable(op, fixed)]
            each = max(1, round(left * self.weight(op) / weights / len(targets)))
            for fixed, mode in targets:
                self.generate(op, each, fixed, mode)
            self.echo(f"  {op.method.upper():5} {op.path:50} {self.report.requests - start:5} generated requests")
        return self.report


def fuzz(requests_total: int = DEFAULT_REQUESTS, seed: int = 0, folder: Path | None = None,
         echo=print) -> Report:
    """The whole run: stack, real jobs, fuzz, stop. `folder` keeps the logs (a temp folder otherwise)."""
    folder = Path(folder or tempfile.mkdtemp(prefix="fuzz-"))
    with Stack(folder) as stack:
        real = make_jobs(stack)
        echo(f"real jobs: {real.jobs}\nresult paths: {real.result_paths}\ndataset documents: {real.documents}")
        report = Fuzzer(stack.base_url, stack.token, stack.server_log, seed, echo).run(requests_total, real)
        if report.server_errors:
            echo(f"server log: {stack.folder / 'gunicorn.log'}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS, help="about how many requests to send")
    parser.add_argument("--seed", type=int, default=0, help="Hypothesis seed (same seed, same requests)")
    parser.add_argument("--keep", type=Path, default=None, help="folder for the logs and data (kept)")
    args = parser.parse_args(argv)
    report = fuzz(args.requests, args.seed, args.keep)
    print(report.summary())
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
