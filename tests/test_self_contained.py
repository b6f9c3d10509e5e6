"""The repository stands on its own: no comment or document points a reader at something they
cannot open - design notes kept outside the repository, or the number of a ticket or a work
session of the team that wrote it. Where the reasoning matters it is said in place, or linked
to a public upstream page (an upstream issue is written `owner/repo#N` or as a URL)."""

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

OUTSIDE_REFERENCES = re.compile(
    r"shared/(?:mission|design)"  # the team's planning folder beside the checkout
    r"|\b(?:ARCHITECTURE|CONVENTIONS)\.md\b"  # design notes that live there
    r"|\b[Ss]tops? \d+\b"  # the word "stop" and a number: a work session's number
    r"|(?<![\w/#])[Ii]ssues? \d+\b"  # "issue" and a number: a ticket of ours (owner/repo#N passes)
    r"|\b(?:this|previous|next) (?:stop|issue)\b|\bthe issue's\b"
)

# Recorded benchmark results are data, not prose; this file names the patterns it looks for.
EXEMPT = ("docs/capacity/", "tests/test_self_contained.py")


def tracked_text_files():
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in names.decode().split("\0"):
        if not name or name.startswith(EXEMPT):
            continue
        path = REPO / name
        try:
            yield name, path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary (plots) or removed in the work tree


def test_no_reference_a_reader_cannot_open():
    found = [
        f"{name}:{text.count(chr(10), 0, match.start()) + 1}: {match.group(0)!r}"
        for name, text in tracked_text_files()
        for match in OUTSIDE_REFERENCES.finditer(text)
    ]
    assert not found, "references outside the repository (say the reason in place):\n" + "\n".join(found)


def test_the_pattern_catches_what_it_is_for():
    # Built from parts, so that this file does not itself hold what it forbids.
    for cited in (f"see {'ARCHITECTURE'}.md", f"({'shared'}/mission/PLAN.md)", f"{'issue'} 12", f"at {'stop'} 9",
                  f"{'Issue'} 4:",
                  "what this stop changed",
                  "the issue's goal"):
        assert OUTSIDE_REFERENCES.search(cited), cited
    for fine in ("grafana/grafana#111448", "opentelemetry-collector-contrib#40248",
                 "the stop signal", "an issue with the lease"):
        assert not OUTSIDE_REFERENCES.search(fine), fine
