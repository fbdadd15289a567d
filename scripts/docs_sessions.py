"""Write the console sessions of the documentation by running them, or check their shape.

A page marks a session with ``<!-- session: NAME -->`` on the line before a ```console block;
each ``$ command`` in it runs (bash, in a scratch folder per NAME, sessions of one NAME in page
order, with ``scripts/`` and ``configs/`` linked in), and its output replaces the lines under
it. A code block marked ``<!-- file: NAME/PATH -->`` is written to that folder first (the page's
own ``make_bars.py``, its ``bars.yaml``). Under each block a line says which commit and CPU
wrote it. A training's epoch lines are shortened to the first and last two.

    python scripts/docs_sessions.py                 # run every session, rewrite the pages
    python scripts/docs_sessions.py --only penguins # one session's blocks
    python scripts/docs_sessions.py --keep /tmp/s   # and keep the runs, to study them
    python scripts/docs_sessions.py --check --quick # run with train.epochs=2 and compare only
                                                    # each output's shape (the tests do this)

The shape of a line is the line with its numbers and run names' timestamps taken out; a check
fails when a command's lines differ in shape from the page's, or in number (in any order: a
law's values are listed most likely first). ``--quick`` trains for 2 epochs, runs chains of 20
moves and scores with 10 importance samples: the lines are the same, the numbers not.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted((REPO / "docs").glob("*.md"))
SESSION = re.compile(r"^<!-- session: ([\w-]+) -->$")
FILE = re.compile(r"^<!-- file: ([\w-]+)/([\w./-]+) -->$")
PROVENANCE = "*Written by `scripts/docs_sessions.py`"
EPOCH = re.compile(r"^epoch +\d+ ")


@dataclass
class Block:
    page: Path
    name: str
    start: int  # the ```console line
    end: int  # the closing ``` line
    commands: list[tuple[str, list[str]]] = field(default_factory=list)  # (command, output lines)


def parse(page: Path) -> tuple[list[str], list[Block], list[tuple[str, str, str]]]:
    """A page's lines, its session blocks and its files (session, path, text)."""
    lines = page.read_text().split("\n")
    blocks, files = [], []
    i = 0
    while i < len(lines):
        session, file = SESSION.match(lines[i].strip()), FILE.match(lines[i].strip())
        if session or file:
            start = i + 1
            ends = [j for j in range(start + 1, len(lines)) if lines[j].startswith("```")]
            if start >= len(lines) or not lines[start].startswith("```") or not ends:
                raise SystemExit(f"{page.name}:{i + 1}: a marker needs a fenced block on the next line")
            end = ends[0]
            body = lines[start + 1 : end]
            if file:
                files.append((file.group(1), file.group(2), "\n".join(body) + "\n"))
            else:
                block = Block(page, session.group(1), start, end)  # type: ignore[union-attr]
                for line in body:
                    if line.startswith("$ "):
                        block.commands.append((line[2:], []))
                    elif block.commands:
                        block.commands[-1][1].append(line)
                blocks.append(block)
            i = end
        i += 1
    return lines, blocks, files


def shorten(output: list[str]) -> list[str]:
    """A training's epoch lines: the first two, "...", the last two."""
    epochs = [i for i, line in enumerate(output) if EPOCH.match(line)]
    if len(epochs) <= 4:
        return output
    keep = set(epochs[:2] + epochs[-2:])
    out, elided = [], False
    for i, line in enumerate(output):
        if i in epochs and i not in keep:
            if not elided:
                out.append("...")
                elided = True
            continue
        out.append(line)
    return out


def run(command: str, folder: Path, quick: bool) -> list[str]:
    if quick:  # shorter trainings and chains, fewer importance samples: the same lines
        if command.startswith("made train ") and "--resume" not in command:
            command += QUICK
        elif (command.startswith(("made complete ", "made sample ")) and "--given" in command) or (
            command.startswith("made complete ") and ".csv" in command
        ):
            command += " --steps 20"
        elif command.startswith(("made score ", "made density ")):
            command += " --draws 10"
    if command.startswith("made ") and not re.search(r"[|<>*$;&'\"]", command):
        return shorten(_made_here(command.split()[1:], folder))
    env = {**os.environ, **TERMINAL}  # this Python's tools first (python, made)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("FORCE_COLOR", None)
    done = subprocess.run(
        ["bash", "-c", command], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    return shorten(done.stdout.rstrip("\n").split("\n")) if done.stdout.strip() else []


QUICK = " train.epochs=2"  # what --quick adds to a training's command
TERMINAL = {"COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb", "NO_MKDOCS_2_WARNING": "1"}


def _made_here(args: list[str], folder: Path) -> list[str]:
    """A ``made`` command run in this process as the console command runs it (torch imported
    once, not per command): its stdout and stderr together, as a terminal shows them."""
    from made_cli.cli import main as made

    here, argv, out = Path.cwd(), sys.argv, io.StringIO()
    os.chdir(folder)
    sys.argv = ["made", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                made()
            except SystemExit:
                pass
            except Exception as e:  # shown in the output, where a check sees it
                print(f"internal error: {e!r}")
    finally:
        sys.argv = argv
        os.chdir(here)
    text = out.getvalue().rstrip("\n")
    return text.split("\n") if text.strip() else []


def shape(line: str) -> str:
    line = re.sub(r"\d{8}-\d{6}", "TIME", line.replace(QUICK, ""))
    line = re.sub(r"\b[0-9a-f]{12}\b", "COMMIT", line)
    line = re.sub(r"-?\b(nan|inf)\b", "#", line)  # a number all the same, e.g. an ESS of no moves
    return re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "#", " ".join(line.split()))


def comparable(lines: list[str]) -> list[str]:
    """What a check compares: no epoch lines, no "..." and no early-stop line (both depend on
    how long it trained), no table borders' widths."""
    skip = ("...", "early stop:", f"  trained overrides:{QUICK}", "  trained with:")  # the machine's
    out = [shape(line) for line in lines if not EPOCH.match(line) and not line.startswith(skip)]
    return sorted(re.sub(r"[━─]+", "-", line) for line in out)  # a law's values come most likely first


def cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def commit() -> str:
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True
    )  # -dirty: written from code that was not committed
    return done.stdout.strip() or "unknown"


def main() -> int:
    os.environ.update(TERMINAL)  # before the CLI's console is made: 80 columns, no colour
    os.environ.pop("FORCE_COLOR", None)
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--check", action="store_true", help="compare shapes, write nothing")
    parser.add_argument("--quick", action="store_true", help="train for 2 epochs")
    parser.add_argument("--only", action="append", default=[], help="only these sessions")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (its runs, files)")
    args = parser.parse_args()
    if args.quick and not args.check:
        parser.error("--quick numbers are not for the pages: use it with --check")
    written_at = f"{PROVENANCE} at commit {commit()} on {cpu()} ({os.cpu_count()} cores).*"  # before any page
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="made-sessions-"))
    scratch.mkdir(parents=True, exist_ok=True)
    failures = []
    try:
        parsed = {page: parse(page) for page in PAGES}
        for _, _, files in parsed.values():
            for name, path, text in files:
                target = scratch / name / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
        for page, (lines, blocks, _) in parsed.items():
            changed = False
            for block in blocks:
                if args.only and block.name not in args.only:
                    continue
                folder = scratch / block.name
                folder.mkdir(exist_ok=True)
                for link in ("scripts", "configs"):
                    if not (folder / link).exists():
                        (folder / link).symlink_to(REPO / link)
                outputs = []
                for command, before in block.commands:
                    after = run(command, folder, args.quick)
                    outputs.append((command, after))
                    if comparable(before) != comparable(after):
                        failures.append(
                            f"{page.name} [{block.name}] $ {command}:\n  page: "
                            + "\n        ".join(before)
                            + "\n  now:  "
                            + "\n        ".join(after)
                        )
                block.commands = outputs
                changed = True
            if changed and not args.check:
                out = list(lines)
                for block in reversed(blocks):  # from the end: earlier line numbers stay valid
                    if args.only and block.name not in args.only:
                        continue
                    body = [line for command, output in block.commands for line in (f"$ {command}", *output)]
                    tail = block.end + 1
                    rest = out[tail:]
                    while rest and (not rest[0].strip() or rest[0].startswith(PROVENANCE)):
                        rest = rest[1:]  # the blank lines and the note of the last writing
                    out = [*out[: block.start + 1], *body, "```", "", written_at, "", *rest]
                page.write_text("\n".join(out))
                print(f"wrote {page.relative_to(REPO)}")
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    if failures:
        print("sessions whose output changed shape:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    if args.check:
        print("every session keeps its shape")
    return 0


if __name__ == "__main__":
    sys.exit(main())
