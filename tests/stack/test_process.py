"""stack.process.write_file: a process reading a config never sees it half written."""

from __future__ import annotations

import threading

from stack import process


def test_unchanged_content_is_not_rewritten(tmp_path):
    path = tmp_path / "alertmanager.yml"
    process.write_file(path, "route: {}\n")
    inode = path.stat().st_ino
    process.write_file(path, "route: {}\n")
    assert path.stat().st_ino == inode


def test_new_content_replaces_the_file_with_its_mode(tmp_path):
    path = tmp_path / "secret"
    process.write_file(path, "old\n", 0o600)
    process.write_file(path, "new\n", 0o600)
    assert path.read_text() == "new\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_a_reader_sees_the_old_or_the_new_content_never_a_truncated_file(tmp_path):
    # Three Alertmanagers share one rendered config: the third's start rewrote it while the first
    # was reading it, and the first exited with "no route provided in config".
    path = tmp_path / "alertmanager.yml"
    versions = ["route: {receiver: a}\n" * 2000, "route: {receiver: b}\n" * 2000]
    process.write_file(path, versions[0])
    seen: set[str] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(path.read_text())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(300):
            process.write_file(path, versions[i % 2])
    finally:
        stop.set()
        reader.join()
    assert seen <= set(versions)
