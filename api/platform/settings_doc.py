"""The demos' part of `.env.template`, written from the settings each demo declares.

A demo's settings are declared in code (`Demo.settings`), so their documentation is generated, not
kept by hand: `python -m api settings --write` rewrites the part between the two marker lines, and a
test fails when the file and the declarations differ.
"""
from __future__ import annotations

import pkgutil
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .demo import Demo, Param

BEGIN = "# === Demo settings: written by `python -m api settings --write` from each demo's `settings` ==="
END = "# === End of demo settings ==="
WIDTH = 100


def bundled_demos() -> list[str]:
    """The demos shipped in `api/demos/`, documented whether installed or not."""
    import api.demos  # noqa: PLC0415 - the package's path, found when asked (it imports nothing)

    return sorted(m.name for m in pkgutil.iter_modules(api.demos.__path__) if m.ispkg)


def env_value(value: Any) -> str:
    """A default as `.env` writes it (what `Param.coerce` reads back)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def section(demo: Demo, module: str) -> str:
    lines = [f"# --- Demo: {demo.name} ({module.replace('.', '/')}) ".ljust(WIDTH, "-")]
    if not demo.settings:
        lines.append("# (no settings)")
    for name, setting in demo.settings.items():
        lines += textwrap.wrap(_describe(setting), WIDTH, initial_indent="# ", subsequent_indent="# ")
        lines.append(f"{demo.setting_key(name)}={env_value(setting.default)}")
    return "\n".join(lines)


def _describe(setting: Param) -> str:
    text = setting.help[:1].upper() + setting.help[1:]
    if setting.choices:
        text += f" One of: {', '.join(map(str, setting.choices))}."
    return text


def render(demos: Iterable[tuple[Demo, str]]) -> str:
    """The marked block for these (demo, module) pairs."""
    return "\n\n".join([BEGIN, *(section(demo, module) for demo, module in demos), END])


def replace_block(text: str, block: str) -> str:
    """`text` with its marked block replaced by `block` (appended when it has none)."""
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        return head + block + tail
    return text.rstrip("\n") + "\n\n" + block + "\n"


def write(path: Path, block: str) -> bool:
    """Rewrite `path`'s block; True when the file changed."""
    old = path.read_text()
    new = replace_block(old, block)
    if new != old:
        path.write_text(new)
    return new != old
