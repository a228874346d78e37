"""The demo contract: what a demo folder declares, and nothing more.

A demo is a package (`api/demos/<name>/`) whose `__init__.py` holds `demo = MyDemo()`, an instance
of a `Demo` subclass. It declares its name, its parameters, which model a job needs and how to load
it, and how to process a job's images. The platform does the rest: ids, state, queues, inputs,
callbacks, result files, zips and serving.

    class Echo(Demo):
        name = "echo"
        params = {"threshold": Param(float, 0.5, min=0, max=1, help="...")}

        def load_model(self, model_id):        # once per worker process and model id
            return build_model(model_id)

        def run(self, job, model):             # job: api.platform.context.JobContext
            for image in job.images():         # downloaded and decoded ahead, in order
                job.write_json(f"{image.source.doc_uid}/{image.source.name}.json", model(image.image))
                job.advance()
            return {"summary": ...}            # becomes the job's `output`

    demo = Echo()
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .clientjson import loads
from .errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from flask import Blueprint

    from .config import Config
    from .context import JobContext
    from .inputs import Document

TRUE_STRINGS = {"true", "1", "yes", "on"}
FALSE_STRINGS = {"false", "0", "no", "off"}
TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array"}


@dataclass(frozen=True)
class Param:
    """One parameter of a demo. `type` is str, int, float, bool or list (of `items`)."""

    type: type
    default: Any = None
    help: str = ""
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    items: type = str
    nullable: bool = False  # JSON null accepted (as None); otherwise null is a 400 naming the field

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
        return value

    def json_schema(self) -> dict:
        kind = TYPE_NAMES[self.type]
        schema: dict[str, Any] = {"type": [kind, "null"] if self.nullable else kind}
        if self.type is list:
            schema["items"] = {"type": TYPE_NAMES[self.items]}
        if self.default is not None:
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


def _default(name: str, param: Param) -> Any:
    """A parameter the client left out: its default (coerced, so a list default is a fresh copy)."""
    return None if param.default is None else param.coerce(name, param.default)


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


class Demo:
    """Base class of every demo; override what your demo needs."""

    name: str = ""
    title: str = ""
    description: str = ""
    params: Mapping[str, Param] = {}
    cfg: "Config | None" = None

    def configure(self, cfg: "Config") -> None:
        """Called once the configuration is known (in the API and in each worker), before any
        route or job. Override to read settings early; keep calling super()."""
        self.cfg = cfg

    def setting(self, name: str, default: str = "") -> str:
        """The demo's own setting `<DEMO>_<NAME>` (e.g. REGIONS_MODEL) from the environment/.env."""
        settings = self.cfg.demo_settings if self.cfg else {}
        return settings.get(f"{self.name.upper()}_{name.upper()}", default)

    @property
    def models_folder(self) -> Path:
        """DATA_FOLDER/models/<demo>/, where this demo's checkpoints live."""
        if self.cfg is None:
            raise RuntimeError(f"demo {self.name!r} used before configure()")
        return self.cfg.models_folder / self.name

    def validate(self, raw: Any) -> dict:
        """Parameters with defaults filled in; unknown or ill-typed fields → InputError (400)."""
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
        return {name: param.coerce(name, raw[name]) if name in raw else _default(name, param)
                for name, param in self.params.items()}

    def extra_documents(self, params: dict) -> list["Document"]:
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

    def run(self, job: "JobContext", model: Any) -> dict | None:
        """Process the job's images; return a JSON-able summary, kept as the job's `output`."""
        raise NotImplementedError

    def models(self) -> dict[str, dict]:
        """The models this demo can use: {file name: {"updated": ISO date, ...details}}."""
        return {}

    def blueprint(self) -> "Blueprint | None":
        """Optional extra routes, mounted under /<name>/."""
        return None
