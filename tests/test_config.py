"""Configuration: one module, every variable documented in .env.template, clear errors."""
from __future__ import annotations

import dataclasses
import re

import pytest

from api import ROOT
from api.platform import settings_doc
from api.platform.config import Config, ConfigError, load_config
from api.platform.registry import load_demo, load_demos, module_name
from api.sdk import Demo, Setting


def template_variables(demo_block: bool | None = None) -> dict[str, str]:
    """`NAME=value` lines of .env.template: all, only the generated demo block, or all but it."""
    text = (ROOT / ".env.template").read_text()
    head, _, rest = text.partition(settings_doc.BEGIN)
    block, _, tail = rest.partition(settings_doc.END)
    chosen = text if demo_block is None else block if demo_block else head + tail
    return dict(re.findall(r"^([A-Z_]+)=(.*)$", chosen, re.MULTILINE))


def test_every_setting_is_documented_in_the_template_and_nothing_else():
    fields = {f.name.upper() for f in dataclasses.fields(Config)} - {"DEMO_SETTINGS"}
    assert set(template_variables(demo_block=False)) == fields


def test_the_demo_settings_block_is_generated_from_the_declarations():
    """`python -m api settings --write` wrote it; a demo that declares a setting (or changes one)
    without rewriting the block fails here."""
    expected = settings_doc.render((load_demo(name), module_name(name)) for name in settings_doc.bundled_demos())
    text = (ROOT / ".env.template").read_text()
    assert settings_doc.replace_block(text, expected) == text, "run: python -m api settings --write"
    declared = {demo.setting_key(name): settings_doc.env_value(setting.default)
                for demo in (load_demo(n) for n in settings_doc.bundled_demos())
                for name, setting in demo.settings.items()}
    assert template_variables(demo_block=True) == declared


class Echo(Demo):
    """A demo whose name differs from its module's (tests.test_config): settings follow the name."""

    name = "echo"
    settings = {"model": Setting(str, "base", help="model id"),
                "batch_size": Setting(int, 0, min=0, max=64, help="images per batch"),
                "fast": Setting(bool, False, help="skip the slow part")}


def test_demo_settings_are_declared_typed_and_keyed_by_the_demo_name():
    cfg = load_config({"ENV_FILE": "/nonexistent", "INSTALLED_APPS": "tests.test_config",
                       "ECHO_MODEL": "v2", "ECHO_BATCH_SIZE": "8", "ECHO_FAST": "yes", "OTHER_MODEL": "x",
                       "ECHO_EMPTY": ""})
    echo = Echo()
    echo.configure(cfg)
    assert (echo.setting("model"), echo.setting("batch_size"), echo.setting("fast")) == ("v2", 8, True)
    assert "ECHO_EMPTY" not in cfg.demo_settings
    with pytest.raises(KeyError):
        echo.setting("undeclared")
    defaults = Echo()
    defaults.configure(load_config({"ENV_FILE": "/nonexistent"}))
    assert (defaults.setting("model"), defaults.setting("batch_size"), defaults.setting("fast")) == ("base", 0, False)


@pytest.mark.parametrize(("value", "message"), [("many", "must be an integer"), ("100", "must be at most 64")])
def test_a_bad_demo_setting_stops_start_up_naming_the_variable(value, message):
    cfg = load_config({"ENV_FILE": "/nonexistent", "ECHO_BATCH_SIZE": value})
    with pytest.raises(ConfigError, match=f"ECHO_BATCH_SIZE='{value}': {message}"):
        Echo().configure(cfg)


def test_the_dummy_demo_reads_its_declared_setting():
    cfg = load_config({"ENV_FILE": "/nonexistent", "INSTALLED_APPS": "tests.demos.dummy", "DUMMY_MODEL": "v2"})
    demo = load_demos(cfg.installed_apps, cfg)["dummy"]
    assert demo.setting("model") == "v2" and demo.model_id(demo.validate({})) == "v2"
    assert demo.model_id(demo.validate({"model": "v3"})) == "v3"
    assert demo.models_folder == cfg.models_folder / "dummy"
    assert demo.exports_folder == cfg.models_folder / ".cache" / "dummy"


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
        load_demos(["tests.support.httpserver"])
    assert list(load_demos(["tests.demos.dummy"])) == ["dummy"]
