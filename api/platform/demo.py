"""The demo contract: what a demo folder declares, and nothing more.

A demo is a package (`api/demos/<name>/`) whose `__init__.py` holds `demo = MyDemo()`, an instance
of a `Demo` subclass, and imports only `api.sdk`. It declares its name, its parameters and settings,
which model a job needs; its worker side (`job.py`: loading a model, running a job) is imported by
`load_model`/`run` in workers only. The platform does the rest: ids, state, queues, inputs,
callbacks, result files, zips and serving. README's "Writing a demo" has a complete example.
"""
from __future__ import annotations

import builtins
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from .catalog import ModelEntry, check_catalog
from .clientjson import loads
from .config import ConfigError
from .devices import pick_device
from .errors import InputError
from .inputs.documents import Document
from .inputs.names import SAFE_NAME, is_image_name
from .jobs import FinishedJob, read_finished
from .storage import is_tracking_id

if TYPE_CHECKING:  # pragma: no cover
    from flask import Blueprint

    from .config import Config
    from .context import JobContext

TRUE_STRINGS = {"true", "1", "yes", "on"}
FALSE_STRINGS = {"false", "0", "no", "off"}
TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}


@dataclass(frozen=True)
class Param:
    """One parameter of a demo. `type` is str, int, float, bool, list (of `items`) or dict (a JSON
    object). `parse`, when given, turns the checked value into what the job uses (e.g. a dict into
    a dataclass); a ValueError it raises becomes a 400 naming the field."""

    type: type
    default: Any = None
    help: str = ""
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    items: builtins.type = str
    nullable: bool = False  # JSON null accepted (as None); otherwise null is a 400 naming the field
    parse: Callable[[Any], Any] | None = None

    def coerce(self, name: str, value: Any) -> Any:
        """The value as `type`, or InputError naming the field. Strings are accepted for every
        type because multipart forms carry only strings."""
        kind = self.type
        if value is None:
            if self.nullable:
                return None
            raise InputError(f"parameters.{name}", f"must be {_article(TYPE_NAMES[kind])}, not null")
        try:
            if kind is list:
                if isinstance(value, str):
                    value = loads(value, f"parameters.{name}") if value.strip().startswith("[") else \
                        [v.strip() for v in value.split(",") if v.strip()]
                if not isinstance(value, list):
                    raise TypeError
                item = Param(self.items)
                value = [item.coerce(f"{name}[{i}]", v) for i, v in enumerate(value)]
            elif kind is dict:
                if isinstance(value, str):
                    value = loads(value, f"parameters.{name}") if value.strip() else {}
                if not isinstance(value, dict):
                    raise TypeError
            elif kind is bool:
                if isinstance(value, str) and value.lower() in TRUE_STRINGS | FALSE_STRINGS:
                    value = value.lower() in TRUE_STRINGS
                elif not isinstance(value, bool):
                    raise TypeError
            elif kind in (int, float):
                if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                    raise TypeError
                if kind is int and isinstance(value, float) and not value.is_integer():
                    raise TypeError
                value = kind(value)
                if not math.isfinite(value):
                    raise ValueError
            elif kind is str:
                if not isinstance(value, str):
                    raise TypeError
            else:  # pragma: no cover - a demo declared an unsupported type
                raise RuntimeError(f"unsupported parameter type {kind!r}")
        except (TypeError, ValueError):
            raise InputError(f"parameters.{name}", f"must be {_article(TYPE_NAMES[kind])}") from None
        if self.choices is not None and value not in self.choices:
            raise InputError(f"parameters.{name}", f"must be one of {', '.join(map(str, self.choices))}")
        if self.min is not None and value < self.min:
            raise InputError(f"parameters.{name}", f"must be at least {self.min}")
        if self.max is not None and value > self.max:
            raise InputError(f"parameters.{name}", f"must be at most {self.max}")
        if self.parse is not None:
            try:
                value = self.parse(value)
            except ValueError as exc:
                raise InputError(f"parameters.{name}", str(exc)) from None
        return value

    def json_schema(self) -> dict:
        kind = TYPE_NAMES[self.type]
        schema: dict[str, Any] = {"type": [kind, "null"] if self.nullable else kind}
        if self.type is list:
            schema["items"] = {"type": TYPE_NAMES[self.items]}
        if self.default is not None and self.parse is None:
            schema["default"] = self.default
        if self.help:
            schema["description"] = self.help
        if self.choices is not None:
            schema["enum"] = list(self.choices)
        if self.min is not None:
            schema["minimum"] = self.min
        if self.max is not None:
            schema["maximum"] = self.max
        return schema


class Setting(Param):
    """One setting of a demo, `<DEMO>_<NAME>` in the environment or `.env` (e.g. REGIONS_MODEL):
    declared like a parameter, checked when the demo is configured (a bad value stops start-up),
    and written into `.env.template` by `python -m api settings --write`."""


def _default(name: str, param: Param) -> Any:
    """A parameter the client left out: its default (coerced, so a list default is a fresh copy)."""
    return None if param.default is None else param.coerce(name, param.default)


def _has_images(folder: Path) -> bool:
    return folder.is_dir() and any(is_image_name(p.name) for p in folder.iterdir())


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


class Demo:
    """Base class of every demo; override what your demo needs."""

    name: str = ""
    description: str = ""
    params: Mapping[str, Param] = {}
    settings: Mapping[str, Setting] = {}
    # Models known by name, installable by `python -m api models pull` (and by `serve`: the defaults).
    catalog: Sequence[ModelEntry] = ()
    model_param: str = ""  # the parameter naming a model file, where `default_model` and presets apply
    cfg: Config | None = None

    def configure(self, cfg: Config) -> None:
        """Called once the configuration is known (in the API and in each worker), before any
        route or job: checks the demo's settings, so a bad value stops start-up, not a job.
        Override to read settings early; keep calling super()."""
        self.cfg = cfg
        self._settings = {}
        self._redis: redis.Redis | None = None  # made on first use: to read jobs ended in Redis, not yet on disk
        for name, declared in self.settings.items():
            key = self.setting_key(name)
            raw = cfg.demo_settings.get(key)
            try:
                self._settings[name] = declared.coerce(name, raw) if raw is not None else _default(name, declared)
            except InputError as exc:
                raise ConfigError(f"{key}={raw!r}: {exc.message.split(': ', 1)[-1]}") from None
        try:
            check_catalog(self.catalog)
        except ValueError as exc:
            raise ConfigError(f"{self.name}: {exc}") from None

    def setting_key(self, name: str) -> str:
        """The environment variable of a setting: `<DEMO>_<NAME>`."""
        return f"{self.name.upper()}_{name.upper()}"

    def setting(self, name: str) -> Any:
        """The value of a declared setting, typed (its default when unset)."""
        if name not in self.settings:
            raise KeyError(f"demo {self.name!r} declares no setting {name!r}")
        values = getattr(self, "_settings", None)
        if values is None:
            raise RuntimeError(f"demo {self.name!r} used before configure()")
        return values[name]

    def _configured(self) -> Config:
        if self.cfg is None:
            raise RuntimeError(f"demo {self.name!r} used before configure()")
        return self.cfg

    @property
    def models_folder(self) -> Path:
        """DATA_FOLDER/models/<demo>/, where this demo's checkpoints live."""
        return self._configured().models_folder / self.name

    @property
    def exports_folder(self) -> Path:
        """DATA_FOLDER/models/.cache/<demo>/: this demo's models exported to other runtimes."""
        return self._configured().exports_folder / self.name

    @property
    def device(self) -> str:
        """Where this worker's models run ("cpu", "cuda"): DEVICE, or CUDA when `auto` sees a GPU.
        Finding out imports torch: ask in `load_model`/`run` (workers), never in the API."""
        return pick_device(self._configured().device)

    def finished_job(self, app: str, tracking_id: str) -> FinishedJob | None:
        """An ended job of any demo (state, output, folder), from the record it left beside its
        results; None when there is no such job or it has not ended. For chaining demos."""
        cfg = self._configured()
        if cfg.redis_url and self._redis is None:
            self._redis = redis.Redis.from_url(cfg.redis_url)
        return read_finished(cfg, app, tracking_id, self._redis)

    def documents_of(self, app: str, tracking_id: str, *, field: str, subfolder: str, purpose: str) -> list[Document]:
        """A succeeded `app` job's per-document `subfolder`s (e.g. regions' crops) as `dir` documents,
        for a demo that chains on it; InputError naming `field` when the id is malformed, the job has
        not ended or not succeeded, or it left no image there (`purpose`: what they were wanted for)."""
        if not is_tracking_id(tracking_id):
            raise InputError(field, f"must be the tracking_id of a {app} job (32 hexadecimal characters)")
        earlier = self.finished_job(app, tracking_id)
        if earlier is None:
            raise InputError(field, f"no {app} job with this tracking_id has ended (unknown, or still queued or "
                                    "running: wait for SUCCESS)")
        if not earlier.succeeded:
            raise InputError(field, f"the {app} job has not succeeded (its state is {earlier.state}); "
                                    "start a new one")
        documents = [Document(type="dir", uid=doc.name, path=str((doc / subfolder).resolve()))
                     for doc in sorted(earlier.folder.iterdir())
                     if doc.is_dir() and SAFE_NAME.match(doc.name) and _has_images(doc / subfolder)]
        if not documents:
            raise InputError(field, f"the {app} job found no {purpose}")
        return documents

    def validate(self, raw: Any) -> dict:
        """Parameters with defaults filled in; unknown or ill-typed fields → InputError (400). With
        `model_param`, an empty model becomes `default_model()`, and the catalog's preset for that
        model fills the parameters the client left out."""
        if raw is None or raw == "":
            raw = {}
        if isinstance(raw, str):
            raw = loads(raw, "parameters")
        if not isinstance(raw, dict):
            raise InputError("parameters", "must be a JSON object")
        unknown = sorted(set(raw) - set(self.params))
        if unknown:
            raise InputError(f"parameters.{unknown[0]}",
                             f"unknown parameter; {self.name} accepts {', '.join(self.params) or 'none'}")
        params = {name: param.coerce(name, raw[name]) if name in raw else _default(name, param)
                  for name, param in self.params.items()}
        if self.model_param:
            params[self.model_param] = params[self.model_param] or self.default_model()
            for key, value in self.preset(params[self.model_param]).items():
                if key in self.params and key not in raw:
                    params[key] = self.params[key].coerce(key, value)
        return params

    # -- models -----------------------------------------------------------------------------------
    def default_model(self) -> str:
        """The model file a job gets when it names none (with `model_param`)."""
        return ""

    def preset(self, model_file: str) -> Mapping[str, Any]:
        """Job parameters the catalog pairs with `model_file` (e.g. the classes that are pictures)."""
        return next((entry.preset for entry in self.catalog if entry.file == model_file), {})

    def catalog_entry(self, model_file: str) -> ModelEntry | None:
        return next((entry for entry in self.catalog if entry.file == model_file), None)

    def extra_documents(self, params: dict) -> list[Document]:
        """Documents a job reads besides the client's, from its validated parameters (e.g. the
        crops of an earlier job, as `Document(type="dir", uid=..., path=...)`). Called by the API at
        /start; raise InputError for a parameter that names something unusable."""
        return []

    def model_id(self, params: dict) -> str | None:
        """Which model a job needs; the platform caches `load_model`'s result under this id."""
        return None

    def load_model(self, model_id: str | None) -> Any:
        """Load (and warm) a model. Called once per worker process and model id, never per job."""
        return None

    def run(self, job: JobContext, model: Any) -> dict | None:
        """Process the job's images; return a JSON-able summary, kept as the job's `output`."""
        raise NotImplementedError

    def models(self) -> dict[str, dict]:
        """The models this demo can use: {file name: {"updated": ISO date, ...details}}."""
        return {}

    def blueprint(self) -> Blueprint | None:
        """Optional extra routes, mounted under /<name>/."""
        return None
