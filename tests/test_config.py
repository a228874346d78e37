"""Configuration: one module, every variable documented in .env.template, clear errors."""
from __future__ import annotations

import dataclasses
import re

import pytest

from api.platform.config import Config, ConfigError, load_config
from api.platform.registry import load_demos
from tests.conftest import ROOT


def template_variables() -> dict[str, str]:
    text = (ROOT / ".env.template").read_text()
    return dict(re.findall(r"^([A-Z_]+)=(.*)$", text, re.MULTILINE))


DEMO_PREFIXES = ("REGIONS_", "VECTORIZATION_", "SORTER_")


def test_every_setting_is_documented_in_the_template_and_nothing_else():
    fields = {f.name.upper() for f in dataclasses.fields(Config)} - {"DEMO_SETTINGS"}
    platform = {name for name in template_variables() if not name.startswith(DEMO_PREFIXES)}
    assert platform == fields


def test_every_demo_setting_in_the_template_is_read_by_its_demo():
    for name in template_variables():
        if name.startswith(DEMO_PREFIXES):
            demo, _, key = name.partition("_")
            sources = "".join(p.read_text() for p in (ROOT / "api" / "demos" / demo.lower()).rglob("*.py"))
            assert f'setting("{key}"' in sources, f"{name} is documented but api/demos/{demo.lower()} never reads it"


def test_demo_settings_are_kept_for_installed_demos_only():
    cfg = load_config({"ENV_FILE": "/nonexistent", "INSTALLED_APPS": "tests.demos.dummy",
                       "DUMMY_MODEL": "v2", "OTHER_MODEL": "x", "DUMMY_EMPTY": ""})
    assert cfg.demo_settings == {"DUMMY_MODEL": "v2"}
    demo = load_demos(cfg.installed_apps, cfg)["dummy"]
    assert demo.setting("model") == "v2" and demo.setting("missing", "d") == "d"
    assert demo.models_folder == cfg.models_folder / "dummy"


def test_the_template_as_env_file_gives_the_defaults(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text((ROOT / ".env.template").read_text())
    cfg = load_config({"ENV_FILE": str(env_file)})
    defaults = Config()
    for field in dataclasses.fields(Config):
        if field.name not in ("data_folder", "demo_settings"):
            assert getattr(cfg, field.name) == getattr(defaults, field.name), field.name


def test_environment_wins_over_env_file_and_values_are_typed(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("MAX_QUEUE_LENGTH=5\nUSE_XACCEL=yes\nDEMO_QUEUES=regions=gpu, sorter=gpu\n")
    cfg = load_config({"ENV_FILE": str(env_file), "MAX_QUEUE_LENGTH": "7", "INSTALLED_APPS": "a, b"})
    assert cfg.max_queue_length == 7 and cfg.use_xaccel is True
    assert cfg.installed_apps == ("a", "b")
    assert cfg.queue_for("sorter") == "gpu" and cfg.queue_for("vectorization") == "vectorization"


@pytest.mark.parametrize("env, mentions", [
    ({"MAX_QUEUE_LENGTH": "many"}, "MAX_QUEUE_LENGTH"),
    ({"DEMO_QUEUES": "regions"}, "DEMO_QUEUES"),
])
def test_malformed_values_name_the_variable(env, mentions):
    with pytest.raises(ConfigError, match=mentions):
        load_config({"ENV_FILE": "/nonexistent", **env})


def test_installed_apps_errors_name_the_demo():
    with pytest.raises(ConfigError, match="'nope'"):
        load_demos(["nope"])
    with pytest.raises(ConfigError, match="installed twice"):
        load_demos(["tests.demos.dummy", "tests.demos.dummy"])
    with pytest.raises(ConfigError, match="no `demo"):
        load_demos(["tests.httpserver"])
    assert list(load_demos(["tests.demos.dummy"])) == ["dummy"]
