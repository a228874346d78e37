"""The front's only door to the API: every call carries the bearer token server-side, so the
token never reaches a browser, and every failure becomes an `ApiProblem` with words a person
can act on (the API's own message for 4xx, "cannot reach the API" when the tunnel is down)."""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import IO, Any

import requests

from .config import FrontConfig

EVENTS_READ_TIMEOUT_S = 90.0


class ApiProblem(Exception):
    """The API refused a request or could not be reached. `field` is the input the API named."""

    def __init__(self, message: str, status: int = 502, code: str = "api_unreachable", field: str = ""):
        super().__init__(message)
        self.message, self.status, self.code, self.field = message, status, code, field


class ApiClient:
    def __init__(self, cfg: FrontConfig):
        self.cfg = cfg
        self.session = requests.Session()
        self.session.trust_env = False  # the API is reached directly (the tunnel's local end), never via a proxy
        if cfg.api_token:
            self.session.headers["Authorization"] = f"Bearer {cfg.api_token}"

    def _request(self, method: str, path: str, *, stream: bool = False, timeout: Any = None,
                 **kwargs: Any) -> requests.Response:
        url = f"{self.cfg.api_url}{path}"
        try:
            response = self.session.request(method, url, timeout=timeout or self.cfg.api_timeout_s, stream=stream,
                                            allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise ApiProblem(f"cannot reach the API at {self.cfg.api_url} ({type(exc).__name__}); "
                             "is it running, and is the tunnel up?") from None
        if response.status_code >= 400:
            raise problem_of(response)
        return response

    def get_json(self, path: str, **kwargs: Any) -> Any:
        response = self._request("GET", path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ApiProblem(f"the API answered {path} with something that is not JSON") from None

    def apps(self) -> list[str]:
        return list(self.get_json("/").get("apps", []))

    def openapi(self) -> dict:
        return self.get_json("/openapi.json")

    def models(self, app: str, details: bool = False) -> dict:
        """The demo's models: {file: updated date}, or with `details` {file: {classes, preset, licence, ...}}."""
        return self.get_json(f"/{app}/models" + ("?details=1" if details else ""))

    def status(self, app: str, tracking_id: str) -> dict:
        return self.get_json(f"/{app}/{tracking_id}/status")

    def cancel(self, app: str, tracking_id: str) -> dict:
        return self._request("POST", f"/{app}/{tracking_id}/cancel").json()

    def start(self, app: str, *, files: Iterable[tuple[str, IO[bytes], str]], documents: list[dict],
              parameters: dict, notify_url: str = "", experiment_id: str = "") -> dict:
        """POST /<app>/start as multipart: `files` are (file name, stream, content type)."""
        form = {"documents": json.dumps(documents), "parameters": json.dumps(parameters)}
        if notify_url:
            form["notify_url"] = notify_url
        if experiment_id:
            form["experiment_id"] = experiment_id
        parts = [("files", (name, stream, ctype or "application/octet-stream")) for name, stream, ctype in files]
        if not parts:  # nothing uploaded: the same fields as JSON
            body = {**form, "documents": documents, "parameters": parameters}
            return self._request("POST", f"/{app}/start", json=body).json()
        return self._request("POST", f"/{app}/start", data=form, files=parts).json()

    def events(self, app: str, tracking_id: str, last_event_id: str = "") -> requests.Response:
        """The job's live events (Server-Sent Events), streamed; 204 when there are no more (the
        caller closes it). The API sends a keep-alive at least every EVENTS_KEEPALIVE_S (15 s), so
        a read waiting longer than EVENTS_READ_TIMEOUT_S means the API or the tunnel is gone."""
        headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_event_id} if last_event_id else {})}
        return self._request("GET", f"/{app}/{tracking_id}/events", stream=True, headers=headers,
                             timeout=(self.cfg.api_timeout_s, EVENTS_READ_TIMEOUT_S))

    def result(self, app: str, tracking_id: str, relpath: str = "") -> requests.Response:
        """A streamed result file (or the whole zip with an empty `relpath`); the caller closes it."""
        path = f"/{app}/{tracking_id}/result" + (f"/{relpath}" if relpath else "")
        return self._request("GET", path, stream=True)


def problem_of(response: requests.Response) -> ApiProblem:
    """The API's JSON error (`{"error": {"code", "message", "field"?}}`) as an ApiProblem."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    message = str(error.get("message") or f"the API answered HTTP {response.status_code}")
    field = str(error.get("field") or "")
    return ApiProblem(message, response.status_code, str(error.get("code") or "api_error"), field)
