"""A client of the demo API for scripts and notebooks: start a job, follow it, fetch its results.

It imports the standard library, `requests` and `tqdm` only, nothing else of this repository:
in a notebook on another machine, `pip install requests tqdm` and copy this one file beside it.

    from client import Client            # `from api.client import Client` inside this repository
    client = Client("http://127.0.0.1:5000")           # token=... when the API has API_TOKEN set
    job = client.start("vectorization", files=["page.png"], tolerance=2)
    job.wait()                                          # progress bar; raises JobFailed unless SUCCESS
    print(job.output)
    job.download("results/")                            # results/vectorization_<id>.zip

Every failure is an `ApiError` whose message is one line saying what failed and what to do; its
subclasses carry the API's answer (`status`, `code`, `field`, `retry_after`). A 429 (queue full) or
503 (the server cannot store now) is retried after the Retry-After the API sends, within a budget.
`job.wait()` follows the job's live events (Server-Sent Events, `GET /<app>/<id>/events`) and
falls back to polling its status where the server has no such route or the stream drops.
"""
from __future__ import annotations

import contextlib
import email.utils
import io
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import requests
from tqdm.auto import tqdm

__all__ = [
    "ApiError", "Client", "Conflict", "ConnectionFailed", "EventsUnavailable", "Gone", "InsufficientStorage",
    "InvalidInput", "Job", "JobFailed", "NotFound", "QueueFull", "TooLarge", "Unauthorized", "Unavailable",
]

DEFAULT_URL = "http://127.0.0.1:5000"
SUCCESS = "SUCCESS"
TERMINAL_STATES = frozenset({"SUCCESS", "FAILURE", "CANCELLED"})
TERMINAL_EVENTS = frozenset({"SUCCESS", "ERROR", "CANCELLED"})
RETRIED_STATUSES = (429, 503)


# -- errors ----------------------------------------------------------------------------------------
class ApiError(Exception):
    """A request that did not do what was asked. `str(error)` is one line for a person; the
    attributes are for code: `status` (None when the API gave no answer), `code` (the API's error
    code, e.g. "invalid_input"), `field` (the invalid input, for 400s), `retry_after` (seconds)."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "", field: str = "",
                 retry_after: float | None = None, url: str = ""):
        super().__init__(message)
        self.message, self.status, self.code, self.field = message, status, code, field
        self.retry_after, self.url = retry_after, url

    def __str__(self) -> str:
        return self.message


class ConnectionFailed(ApiError):
    """No answer: nothing listens at the address, the name does not resolve, or it timed out."""


class InvalidInput(ApiError):
    """400 (the field is named in `field`) or 415."""


class Unauthorized(ApiError):
    """401: the API has API_TOKEN set and this client sent no token or another one."""


class NotFound(ApiError):
    """404: no such demo, or no such job in it."""


class Conflict(ApiError):
    """409: not possible in the job's state (e.g. the zip of a job that has not succeeded)."""


class Gone(ApiError):
    """410: the job's results were deleted after their retention time."""


class TooLarge(ApiError):
    """413: the upload is larger than the server's MAX_UPLOAD_BYTES."""


class QueueFull(ApiError):
    """429: the demo's queue is full; `retry_after` says when to come back."""


class Unavailable(ApiError):
    """503: the server cannot take or store anything now (Redis unreachable, a full disk)."""


class InsufficientStorage(ApiError):
    """507: the server's data disk is at its limit; new jobs are refused until space is freed."""


class JobFailed(ApiError):
    """`Job.wait()` saw the job end FAILURE or CANCELLED; `job_status` is its final status."""

    def __init__(self, message: str, job_status: dict):
        super().__init__(message, code=str(job_status.get("state", "")).lower())
        self.job_status = job_status


class EventsUnavailable(ApiError):
    """The server offers no live events for this job (no SSE route, or the stream keeps dropping)."""


ERRORS: dict[int, type[ApiError]] = {400: InvalidInput, 401: Unauthorized, 404: NotFound, 409: Conflict, 410: Gone,
                                     413: TooLarge, 415: InvalidInput, 429: QueueFull, 503: Unavailable,
                                     507: InsufficientStorage}


def _why_unreachable(exc: BaseException) -> str:
    """The root of a requests connection error in a few words ("connection refused")."""
    seen: list[BaseException] = []
    stack = [exc]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.append(current)
        stack += [e for e in (current.__cause__, current.__context__, getattr(current, "reason", None),
                              *getattr(current, "args", ())) if isinstance(e, BaseException)]
    for current in seen:
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, (requests.Timeout, TimeoutError)):
            return "no answer in time"
        if isinstance(current, requests.exceptions.SSLError):
            return "TLS failed"
    for current in seen:
        text = str(current)
        if "Name or service not known" in text or "nodename nor servname" in text or "NameResolution" in text:
            return "unknown host name"
        if "Connection reset" in text or "RemoteDisconnected" in text:
            return "connection closed by the server"
    lines = str(seen[-1] if seen else exc).strip().splitlines()
    return lines[0][:120] if lines else type(exc).__name__


def _retry_after(response: requests.Response) -> float | None:
    """Retry-After in seconds: a number, or an HTTP date."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# -- the client ----------------------------------------------------------------------------------
class Client:
    """One API. `url` defaults to $API_URL, else http://127.0.0.1:5000; `token` to $API_TOKEN.
    `retries` and `max_retry_wait_s` bound how often and how long a 429/503 is retried (after the
    answer's Retry-After, else 1, 2, 4... s); `timeout` is one request's (uploads: `upload_timeout`).
    `hint` ends the message of an unreachable API (the command line names its own flags)."""

    def __init__(self, url: str | None = None, token: str | None = None, *, retries: int = 5,
                 max_retry_wait_s: float = 600.0, timeout: float = 30.0, upload_timeout: float = 600.0,
                 hint: str = "pass Client(url=...) or set API_URL"):
        self.url = (url or os.environ.get("API_URL") or DEFAULT_URL).rstrip("/")
        token = os.environ.get("API_TOKEN", "") if token is None else token
        self.retries, self.max_retry_wait_s = retries, max_retry_wait_s
        self.timeout, self.upload_timeout, self.hint = timeout, upload_timeout, hint
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "demo-api-client/1"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # -- the API's routes --------------------------------------------------------------------
    def apps(self) -> list[str]:
        """The demos this API serves."""
        return list(self.request("GET", "/").json().get("apps", []))

    def models(self, app: str, details: bool = False) -> dict:
        """The demo's models: {file: last update}, or with `details` classes, size, source..."""
        return self.request("GET", f"/{app}/models", params={"details": "1"} if details else None).json()

    def qsizes(self, app: str) -> dict:
        """The demo's queue: waiting, delayed, dead, estimated_wait_s, seconds_per_job."""
        return self.request("GET", f"/{app}/qsizes").json()

    def job(self, app: str, tracking_id: str) -> Job:
        """A job started earlier (e.g. by another process), by its tracking id."""
        return Job(self, app, tracking_id)

    def start(self, app: str, files: Iterable[str | os.PathLike | tuple[str, bytes | IO[bytes]]] = (),
              documents: Iterable[dict] = (), *, parameters: dict | None = None, experiment_id: str = "",
              notify_url: str = "", idempotency_key: str | None = None, **params: Any) -> Job:
        """Start a job of `app` on uploaded `files` (paths, or (name, bytes or binary file)) and/or
        `documents` ({"type": "img"|"iiif"|"pdf"|"zip"|"url_list", "src": URL, "uid": ...}). The
        demo's parameters are keywords (`conf=0.3`) or `parameters={...}`. Each call sends an
        Idempotency-Key (a new one unless given), so its retries after a 429/503 start one job."""
        params = {**(parameters or {}), **params}
        if isinstance(files, (str, os.PathLike)) or (
                isinstance(files, tuple) and len(files) == 2 and isinstance(files[1], (bytes, io.IOBase))):
            files = [files]  # one file given alone
        files = list(files)
        documents = [documents] if isinstance(documents, dict) else list(documents)
        for item in files:
            if isinstance(item, (str, os.PathLike)) and not Path(item).is_file():
                raise InvalidInput(f"no such file: {item}", field="files")
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        fields: dict[str, Any] = {"documents": documents, "parameters": params}
        if experiment_id:
            fields["experiment_id"] = experiment_id
        if notify_url:
            fields["notify_url"] = notify_url

        @contextlib.contextmanager
        def body() -> Iterator[dict]:
            if not files:
                yield {"json": fields}
                return
            with contextlib.ExitStack() as stack:
                parts = []
                for item in files:
                    if isinstance(item, tuple):
                        name, content = item
                        if hasattr(content, "seek"):
                            content.seek(0)
                    else:
                        name, content = Path(item).name, stack.enter_context(open(item, "rb"))
                    parts.append(("files", (name, content)))
                form = {key: value if isinstance(value, str) else json.dumps(value) for key, value in fields.items()}
                yield {"data": form, "files": parts, "timeout": self.upload_timeout}

        try:
            response = self.request("POST", f"/{app}/start", headers=headers, body=body)
        except NotFound as exc:
            raise self._unknown_app(app, exc) from None
        started = response.json()
        return Job(self, app, started["tracking_id"], started)

    # -- plumbing ---------------------------------------------------------------------------
    def request(self, method: str, path: str, *, stream: bool = False, ok: Iterable[int] = (),
                body: Callable[[], contextlib.AbstractContextManager[dict]] | None = None,
                **kwargs: Any) -> requests.Response:
        """One API call, `path` under the API's URL (or an absolute URL). 429 and 503 are retried
        after their Retry-After (within `retries` and `max_retry_wait_s`); any other status of 400
        or more, except those in `ok`, raises the ApiError subclass of its status."""
        url = path if path.startswith(("http://", "https://")) else f"{self.url}{path}"
        kwargs.setdefault("timeout", self.timeout)
        attempt, waited = 0, 0.0
        while True:
            try:
                with body() if body else contextlib.nullcontext({}) as extra:
                    response = self.session.request(method, url, stream=stream, **{**kwargs, **extra})
            except requests.RequestException as exc:
                raise self._unreachable(exc, url) from None
            if response.status_code < 400 or response.status_code in ok:
                return response
            error = self._error(response, method, url)
            if response.status_code in RETRIED_STATUSES and attempt < self.retries:
                delay = error.retry_after if error.retry_after is not None else float(2 ** attempt)
                if waited + delay <= self.max_retry_wait_s:
                    response.close()
                    time.sleep(delay)
                    waited += delay
                    attempt += 1
                    continue
            if attempt:
                error.message += f" (tried {attempt + 1} times over {waited:.0f} s)"
            raise error

    def _unreachable(self, exc: requests.RequestException, url: str) -> ConnectionFailed:
        why = _why_unreachable(exc)
        if isinstance(exc, requests.Timeout) or why == "no answer in time":
            return ConnectionFailed(f"no answer from the API at {self.url} in time ({why}) for {url}; "
                                    f"is it overloaded? {self.hint}", url=url, code="timeout")
        return ConnectionFailed(f"cannot reach the API at {self.url} ({why}): is `bash run.sh serve` running? "
                                f"{self.hint}", url=url, code="unreachable")

    def _error(self, response: requests.Response, method: str, url: str) -> ApiError:
        status = response.status_code
        try:
            error = response.json().get("error") or {}
            if not isinstance(error, dict):
                raise ValueError
        except ValueError:  # not the API's JSON: a proxy's page, or another server at this address
            error = {"message": f"{method} {url} answered {status} {response.reason or ''} (not the API's JSON; "
                                f"is {self.url} the API?)".replace("  ", " ")}
        message = str(error.get("message") or response.reason or status)
        code = str(error.get("code") or "")
        if status == 401:
            message += "; set API_TOKEN to the server's API_TOKEN"
        message = " ".join(f"{message} ({status}{' ' + code if code else ''})".split())
        return ERRORS.get(status, ApiError)(message, status=status, code=code, field=str(error.get("field") or ""),
                                            retry_after=_retry_after(response), url=url)

    def _unknown_app(self, app: str, exc: NotFound) -> ApiError:
        with contextlib.suppress(ApiError):
            apps = self.apps()
            if app not in apps:
                served = ", ".join(apps) or "none"
                return NotFound(f"no demo {app!r} at {self.url} (404); it serves: {served}", status=404,
                                code="not_found", url=exc.url)
        return exc


# -- jobs ------------------------------------------------------------------------------------------
class Job:
    """One job: `status()`, `wait()`, `cancel()`, `download()`, `output`. `last` holds the latest
    status read, `state` its state."""

    def __init__(self, client: Client, app: str, tracking_id: str, started: dict | None = None):
        self.client, self.app, self.tracking_id = client, app, tracking_id
        self.last: dict = dict(started or {})
        self.last_event_id = ""

    def __repr__(self) -> str:
        return f"Job({self.app!r}, {self.tracking_id!r}, state={self.state!r})"

    @property
    def path(self) -> str:
        return f"/{self.app}/{self.tracking_id}"

    @property
    def state(self) -> str:
        return str(self.last.get("state", ""))

    @property
    def status_url(self) -> str:
        return self.last.get("status_url") or f"{self.client.url}{self.path}/status"

    @property
    def result_url(self) -> str:
        return self.last.get("result_url") or f"{self.client.url}{self.path}/result"

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def output(self) -> Any:
        """What the demo returned (None until the job succeeded); reads the status once if the
        last one read was not the end."""
        if not self.finished:
            self.status()
        return self.last.get("output")

    def status(self) -> dict:
        """State, progress {done, total, percent, eta_s}, errors, log tail, timings, output."""
        self.last = self.client.request("GET", f"{self.path}/status").json()
        return self.last

    def cancel(self) -> dict:
        """Cancel: a pending job ends at once, a running one at its next image (409 once ended)."""
        self.last = self.client.request("POST", f"{self.path}/cancel").json()
        return self.last

    def wait(self, progress: bool | Callable[[dict], None] = True, timeout: float | None = None,
             check: bool = True, interval: float = 1.0) -> dict:
        """Follow the job to its end and return its final status. `progress`: a tqdm bar, or a
        function called with each event/status seen. Live events (SSE) when the server offers
        them, else polling every `interval` s. With `check`, a job that did not succeed raises
        JobFailed (its status in `job_status`); `timeout` (s) raises TimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = None
        if progress is True:
            bar = tqdm(total=1, unit="img", desc=f"{self.app} {self.tracking_id[:8]}", leave=True)

        def show(update: dict) -> None:
            if callable(progress):
                progress(update)
            if bar is not None:
                done = update.get("progress") or {}
                bar.total = max(int(done.get("total") or 0), 1)
                bar.n = int(done.get("done") or 0)
                bar.set_postfix_str(str(update.get("state") or update.get("event") or ""), refresh=False)
                bar.refresh()

        try:
            try:
                for event in self.events(deadline=deadline):
                    show(event)
            except (EventsUnavailable, ConnectionFailed):  # polling says so if the API is really gone
                self._poll(show, deadline, interval)
            final = self.status()
            show(final)
        finally:
            if bar is not None:
                bar.close()
        if check and final.get("state") != SUCCESS:
            count = final.get("error_count") or len(final.get("errors") or [])
            raise JobFailed(f"job {self.tracking_id} of {self.app} ended {final.get('state')}: "
                            f"{final.get('error') or 'no reason given'}"
                            + (f" ({count} per-image errors; see job_status['errors'])" if count else ""), final)
        return final

    def _poll(self, show: Callable[[dict], None], deadline: float | None, interval: float) -> None:
        while True:
            status = self.status()
            show(status)
            if self.finished:
                return
            self._check(deadline)
            time.sleep(interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic())))

    def _check(self, deadline: float | None) -> None:
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"job {self.tracking_id} of {self.app} had not ended when wait() timed out")

    def events(self, deadline: float | None = None, read_timeout: float = 60.0) -> Iterator[dict]:
        """The job's events as the API's callbacks carry them (event, state, progress, ...), live,
        until its terminal event (SUCCESS, ERROR, CANCELLED). A dropped stream is resumed with
        Last-Event-ID; raises EventsUnavailable when the server has no event stream (or none free:
        503), or when a resumed stream brings nothing new (then poll `status()`)."""
        while True:
            headers = {"Accept": "text/event-stream"}
            if self.last_event_id:
                headers["Last-Event-ID"] = self.last_event_id
            wait = read_timeout if deadline is None else max(0.1, min(read_timeout, deadline - time.monotonic()))
            response = self.client.request("GET", f"{self.path}/events", stream=True, headers=headers,
                                           timeout=(self.client.timeout, wait), ok=(404, 405, 501, 503))
            with response:
                if response.status_code == 204:  # Last-Event-ID was the terminal event's: nothing more
                    return
                if response.status_code != 200 or not response.headers.get("Content-Type", "").startswith(
                        "text/event-stream"):
                    raise EventsUnavailable(f"no event stream for {self.path} ({response.status_code})",
                                            status=response.status_code)
                fresh = False
                try:
                    for event_id, name, data in _sse(response):
                        if event_id:
                            self.last_event_id = event_id
                        try:
                            event = json.loads(data) if data else {}
                        except ValueError:
                            continue
                        if not isinstance(event, dict):
                            continue
                        event.setdefault("event", name)
                        fresh = True
                        yield event
                        if event.get("event") in TERMINAL_EVENTS or event.get("state") in TERMINAL_STATES:
                            return
                        self._check(deadline)
                except requests.RequestException:
                    self._check(deadline)  # else dropped, or silent past read_timeout: resume below
            if not fresh:
                raise EventsUnavailable(f"the event stream of {self.path} ended without its job's end")

    def download(self, path: str | os.PathLike = ".", file: str | None = None) -> Path:
        """Save the results' zip (or one result `file`, e.g. "page/page.svg") to `path`: a folder
        (existing, or ending with "/") gets it under its own name. Returns the file written."""
        relpath = f"/result/{file.lstrip('/')}" if file else "/result"
        name = Path(file).name if file else f"{self.app}_{self.tracking_id}.zip"
        target = Path(path)
        if target.is_dir() or str(path).endswith(("/", os.sep)):
            target = target / name
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        with self.client.request("GET", f"{self.path}{relpath}", stream=True,
                                 timeout=(self.client.timeout, self.client.upload_timeout)) as response:
            try:
                with open(partial, "wb") as handle:
                    for chunk in response.iter_content(1 << 20):
                        handle.write(chunk)
            except requests.RequestException as exc:
                partial.unlink(missing_ok=True)
                raise self.client._unreachable(exc, response.url) from None
        partial.replace(target)
        return target


def _sse(response: requests.Response) -> Iterator[tuple[str, str, str]]:
    """(id, event, data) of each Server-Sent Event as it arrives (comments and retry: skipped)."""
    # Chunked (HTTP/1.1 servers, nginx): each chunk as it arrives; else a byte at a time, since a
    # larger read would wait for the buffer to fill.
    chunks = response.iter_content(None if getattr(response.raw, "chunked", False) else 1)
    buffer = b""
    event_id, name, data = "", "", list[str]()
    for chunk in chunks:
        buffer += chunk
        held = b"\r" if buffer.endswith(b"\r") else b""  # it may be the first half of a \r\n
        *lines, buffer = buffer[:len(buffer) - len(held)].replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        buffer += held
        for raw_line in lines:
            line = raw_line.decode("utf-8", "replace")
            if not line:
                if data:
                    yield event_id, name or "message", "\n".join(data)
                name, data = "", []
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                data.append(value)
            elif field == "event":
                name = value
            elif field == "id" and "\0" not in value:
                event_id = value
