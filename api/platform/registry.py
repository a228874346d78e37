"""Finding the installed demos: the names in `INSTALLED_APPS`, nothing else.

A bare name (`regions`) is the package `api.demos.regions`; a dotted path (`tests.demos.dummy`)
names a demo package kept elsewhere, such as the test-only demo. Either way the package holds
`demo`, an instance of `api.platform.demo.Demo`.
"""
from __future__ import annotations

import importlib

from .config import Config, ConfigError
from .demo import Demo
from .storage import APP_NAME


def module_name(entry: str) -> str:
    return entry if "." in entry else f"api.demos.{entry}"


def load_demo(entry: str) -> Demo:
    name = module_name(entry)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise ConfigError(f"INSTALLED_APPS: unknown demo {entry!r} (no module {name})") from None
        raise ConfigError(f"INSTALLED_APPS: demo {entry!r} cannot be imported: {exc}") from None
    demo = getattr(module, "demo", None)
    if not isinstance(demo, Demo):
        raise ConfigError(f"INSTALLED_APPS: {name} has no `demo = <Demo subclass>()`")
    if not APP_NAME.match(demo.name or ""):
        raise ConfigError(f"INSTALLED_APPS: {name}: demo name {demo.name!r} must match {APP_NAME.pattern}")
    return demo


def load_demos(entries: tuple[str, ...] | list[str], cfg: Config | None = None) -> dict[str, Demo]:
    """The demos by name, in `INSTALLED_APPS` order, configured with `cfg` when given; an unknown
    or duplicate name stops start-up."""
    demos: dict[str, Demo] = {}
    for entry in entries:
        demo = load_demo(entry)
        if cfg is not None:
            demo.configure(cfg)
        if demo.name in demos:
            raise ConfigError(f"INSTALLED_APPS: demo {demo.name!r} is installed twice")
        demos[demo.name] = demo
    return demos
