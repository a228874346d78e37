"""The start form, generated from the API's OpenAPI description, and read back into the JSON
the API expects.

Each demo's parameters are in `/openapi.json` under `POST /<app>/start` (JSON body → `parameters`):
a JSON schema per parameter with type, default, description, enum, minimum and maximum. The form
asks for exactly those; values left empty are not sent, so the API's defaults apply, and so do
the parameters the catalog pairs with the chosen model (its preset, from `GET /<app>/models?details=1`):
the form shows that preset beside the model, since the placeholders show the API's plain defaults.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# How each demo is introduced on the page; a demo not listed here shows its API name.
TITLES = {
    "regions": "Regions — illustrations and objects in page images",
    "vectorization": "Vectorization — diagrams to lines, circles and arcs",
    "sorter": "Sorter — group the items on a table and plan the moves",
    "dummy": "Mean colour — a test demo that measures each image",
}


class FormError(ValueError):
    """A form value that cannot be sent; `field` is the input's name, for the page to point at."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field, self.message = field_name, message


@dataclass
class ParamField:
    name: str
    kind: str                      # string, integer, number, boolean, array, object
    default: Any = None
    help: str = ""
    choices: list = field(default_factory=list)
    minimum: float | None = None
    maximum: float | None = None
    items: str = "string"

    @property
    def input_id(self) -> str:
        return f"param-{self.name}"

    @property
    def default_text(self) -> str:
        """The default as the input shows it (a placeholder: empty means the API's default)."""
        if self.default is None:
            return ""
        if self.kind == "array":
            return ", ".join(str(v) for v in self.default)
        if self.kind == "object":
            return json.dumps(self.default)
        return str(self.default)

    @property
    def step(self) -> str:
        return "1" if self.kind == "integer" else "any"


@dataclass
class ModelOption:
    """A model file the API offers. From `GET /<app>/models` only `updated` is known; with
    `?details=1`, a file the catalog installed also brings its preset (the job parameters it gets
    unless the job sets them), its catalog name, licence and description."""

    name: str
    updated: str = ""
    preset: dict = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    catalog: str = ""
    licence: str = ""
    description: str = ""

    @property
    def preset_text(self) -> str:
        """e.g. "classes [6] (Picture), imgsz 1024": class ids named where the file says its names."""
        parts = []
        for key, value in self.preset.items():
            if isinstance(value, list):
                text = f"{key} [{', '.join(map(str, value))}]"
                if key == "classes":
                    names = [self.class_names[i] for i in value
                             if isinstance(i, int) and 0 <= i < len(self.class_names)]
                    text += f" ({', '.join(names)})" if names and len(names) == len(value) else ""
                parts.append(text)
            else:
                parts.append(f"{key} {json.dumps(value) if isinstance(value, (dict, bool)) else value}")
        return ", ".join(parts)

    @property
    def hint(self) -> str:
        """What the preset is and how to keep it: its parameters left empty (a filled box replaces it)."""
        if not self.preset:
            return ""
        keys = list(self.preset)
        empty = keys[0] if len(keys) == 1 else f"{', '.join(keys[:-1])} and {keys[-1]}"
        return f"this model's preset: {self.preset_text} — leave {empty} empty to keep it"

    @property
    def label(self) -> str:
        """The option's text in the model list."""
        text = self.name + (f" — {self.updated}" if self.updated else "")
        return text + (f" — preset: {self.preset_text}" if self.preset else "")


def model_options(models: Mapping[str, Any]) -> list[ModelOption]:
    """The API's model listing, plain (name → date) or with details (name → dict), as options."""
    options = []
    for name, info in models.items():
        if not isinstance(info, Mapping):
            options.append(ModelOption(name=str(name), updated=str(info or "")))
            continue
        preset = info.get("preset")
        names = info.get("classes")
        options.append(ModelOption(
            name=str(name), updated=str(info.get("updated") or ""),
            preset=dict(preset) if isinstance(preset, Mapping) else {},
            class_names=[str(n) for n in names] if isinstance(names, list) else [],
            catalog=str(info.get("catalog") or ""), licence=str(info.get("licence") or ""),
            description=str(info.get("description") or "")))
    return options


@dataclass
class DemoForm:
    app: str
    title: str
    description: str
    params: list[ParamField]

    def model_options(self, models: Mapping[str, Any]) -> list[ModelOption]:
        return model_options(models)

    def parse(self, form: Mapping[str, str]) -> dict:
        """The `parameters` object for /start from the posted form; FormError on a bad value."""
        out: dict[str, Any] = {}
        for p in self.params:
            raw = form.get(p.input_id)
            if p.kind == "boolean":
                if form.get(f"{p.input_id}-present"):  # the checkbox was on the page: absent means off
                    out[p.name] = raw in ("on", "true", "1")
                continue
            if raw is None or not raw.strip():
                continue
            out[p.name] = convert(p, raw.strip())
        return out


def convert(p: ParamField, raw: str) -> Any:
    if p.kind == "array":
        return [convert_scalar(p.name, p.items, part.strip()) for part in raw.split(",") if part.strip()]
    if p.kind == "object":
        try:
            value = json.loads(raw)
        except ValueError:
            raise FormError(p.name, "must be JSON, e.g. {\"name\": 1}") from None
        if not isinstance(value, dict):
            raise FormError(p.name, "must be a JSON object: {…}")
        return value
    value = convert_scalar(p.name, p.kind, raw)
    if p.choices and value not in p.choices:
        raise FormError(p.name, f"must be one of {', '.join(map(str, p.choices))}")
    if isinstance(value, (int, float)):
        if p.minimum is not None and value < p.minimum:
            raise FormError(p.name, f"must be at least {p.minimum:g}")
        if p.maximum is not None and value > p.maximum:
            raise FormError(p.name, f"must be at most {p.maximum:g}")
    return value


def convert_scalar(name: str, kind: str, raw: str) -> Any:
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
    except ValueError:
        raise FormError(name, f"must be {'a whole number' if kind == 'integer' else 'a number'}, not {raw!r}") from None
    if kind == "boolean":
        return raw.lower() in ("on", "true", "1", "yes")
    return raw


def demo_form(spec: dict, app: str) -> DemoForm:
    """The form of `app` from the API's OpenAPI spec; a demo without parameters gets an empty list."""
    start = spec.get("paths", {}).get(f"/{app}/start", {}).get("post", {})
    body = start.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    properties = body.get("properties", {}).get("parameters", {}).get("properties", {})
    params = []
    for name, schema in properties.items():
        params.append(ParamField(
            name=name, kind=str(schema.get("type", "string")), default=schema.get("default"),
            help=str(schema.get("description", "")), choices=list(schema.get("enum") or []),
            minimum=schema.get("minimum"), maximum=schema.get("maximum"),
            items=str((schema.get("items") or {}).get("type", "string"))))
    return DemoForm(app=app, title=TITLES.get(app, app), description=str(start.get("description", "")),
                    params=params)


def documents_of(image_urls: str, manifest_url: str) -> list[dict]:
    """The API's `documents` from the form's text boxes: one image URL a line, one IIIF manifest.
    Each gets a uid of our own ("url-1", "iiif"), so results are found under a known name."""
    documents: list[dict] = []
    for i, line in enumerate((u.strip() for u in image_urls.splitlines() if u.strip()), 1):
        if not line.startswith(("http://", "https://")):
            raise FormError("image_urls", f"line {i} is not an http(s) URL: {line[:80]!r}")
        documents.append({"type": "img", "src": line, "uid": f"url-{i}"})
    manifest_url = manifest_url.strip()
    if manifest_url:
        if not manifest_url.startswith(("http://", "https://")):
            raise FormError("manifest_url", "must be an http(s) URL of a IIIF manifest")
        documents.append({"type": "iiif", "src": manifest_url, "uid": "iiif"})
    return documents
