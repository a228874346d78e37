"""The Debian-package caches (tools/debs.py): a folder appears whole or not at all, however many
fetches run at once (a bench beside the tests, two benches), and an interrupted fetch is redone."""
from __future__ import annotations

import threading
from pathlib import Path

from tools.debs import complete, publish


def _unpacked(work: Path, name: str, files: int = 200) -> Path:
    folder = work / name / "x"
    for i in range(files):
        (folder / "usr" / f"{i:03d}").mkdir(parents=True)
        (folder / "usr" / f"{i:03d}" / "part").write_text(name)
    return folder


def test_fetches_at_once_leave_one_whole_copy(tmp_path: Path):
    root = tmp_path / "cache" / "pkg_1.0"
    root.parent.mkdir()
    folders = [_unpacked(tmp_path, f"w{i}") for i in range(6)]
    start = threading.Barrier(len(folders))
    errors: list[BaseException] = []

    def one(folder: Path) -> None:
        start.wait()
        try:
            publish(folder, root, "d1g")
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(f,)) for f in folders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert complete(root)
    parts = sorted(root.glob("usr/*/part"))
    assert len(parts) == 200
    assert len({p.read_text() for p in parts}) == 1  # one fetch's copy, not a mixture


def test_an_interrupted_fetch_is_replaced_and_a_finished_one_kept(tmp_path: Path):
    root = tmp_path / "pkg_1.0"
    (root / "usr").mkdir(parents=True)  # what a fetch killed halfway left: no marker
    assert not complete(root)
    publish(_unpacked(tmp_path, "first", files=3), root, "d1g")
    assert complete(root) and len(list(root.glob("usr/*/part"))) == 3
    publish(_unpacked(tmp_path, "second", files=3), root, "d1g")
    assert {p.read_text() for p in root.glob("usr/*/part")} == {"first"}
