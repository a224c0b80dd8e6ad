"""The real sentiment data: fetch (checksums, atomic extraction), parsing, splits and the SST-2 opt-in.

Everything here runs on small synthetic files of the same layout as the real ones, so the tests need no network
and no fetched data; the real files are checked by their sha256 at fetch time.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from course_lib.data import vader
from course_lib.data.sentiment import (FINE_NAMES, label_of, load_sentiment, load_sst2, sentiment_report)


def ratings_text(n: int, start: float = -3.9) -> str:
    """n lines of id<TAB>rating<TAB>sentence with ratings spread over [-3.9, 3.9]."""
    step = 7.8 / max(1, n - 1)
    return "\r\n".join(f"{i + 1}\t{start + i * step:.3f}\tsentence number {i} is here ." for i in range(n))


def write_data(root: Path, n: int = 200, extra: str = "") -> Path:
    """A data folder with all four domains, as fetch_vader leaves it."""
    folder = root / vader.FOLDER
    folder.mkdir(parents=True)
    for name, _, _ in vader.FILES.values():
        (folder / name).write_text(ratings_text(n) + extra, encoding="utf-8")
    return root


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def fake_sdist(tmp_path: Path, corrupt: str | None = None) -> tuple[Path, str, dict]:
    """An sdist laid out like vaderSentiment-3.3.2's, with its checksums (optionally one file altered after)."""
    contents = {name: ratings_text(30).encode() for name, _, _ in vader.FILES.values()}
    files = {domain: (name, hashlib.sha256(contents[name]).hexdigest(), 30)
             for domain, (name, _, _) in vader.FILES.items()}
    if corrupt:
        contents[corrupt] = contents[corrupt] + b"\r\n999\t0.0\tflipped"
    inner = tar_gz({f"hutto_ICWSM_2014/{name}": data for name, data in contents.items()})
    outer = tar_gz({vader.INNER_TAR: inner, "vaderSentiment-3.3.2/setup.py": b""})
    path = tmp_path / vader.SDIST_FILE
    path.write_bytes(outer)
    return path, hashlib.sha256(outer).hexdigest(), files


def test_extract_checks_and_writes_the_four_files(tmp_path):
    sdist, digest, files = fake_sdist(tmp_path)
    target = vader.extract_vader(sdist, tmp_path / "data", sdist_sha256=digest, files=files)
    assert sorted(p.name for p in target.iterdir()) == sorted(name for name, _, _ in files.values())
    ratings = vader.read_ratings("movie", tmp_path / "data")
    assert len(ratings.texts) == 30 and ratings.malformed == 0
    assert not list((tmp_path / "data").glob("*.tmp*")), "no temporary folder left behind"


def test_extract_refuses_a_wrong_archive_or_an_altered_file(tmp_path):
    sdist, digest, files = fake_sdist(tmp_path)
    with pytest.raises(ValueError, match=f"{vader.SDIST_FILE}: sha256 .* is not the expected"):
        vader.extract_vader(sdist, tmp_path / "data", sdist_sha256="0" * 64, files=files)
    (tmp_path / "altered").mkdir()
    bad, bad_digest, _ = fake_sdist(tmp_path / "altered", corrupt="tweets_GroundTruth.txt")
    with pytest.raises(ValueError, match="tweets_GroundTruth.txt in .*: sha256"):
        vader.extract_vader(bad, tmp_path / "data", sdist_sha256=bad_digest, files=files)
    assert not (tmp_path / "data" / vader.FOLDER).exists(), "a failed check writes nothing"


def test_the_real_checksums_are_pinned():
    assert len(vader.SDIST_SHA256) == 64 and all(len(d) == 64 for _, d, _ in vader.FILES.values())
    assert sum(n for _, _, n in vader.FILES.values()) == 10605 + 3708 + 5190 + 4200


def test_missing_data_names_the_fetch_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m course_lib.data.vader"):
        vader.read_ratings("movie", tmp_path)
    with pytest.raises(ValueError, match="allowed: movie, amazon, nyt, tweets"):
        vader.read_ratings("imdb", tmp_path)


def test_fetch_is_a_no_op_when_present(tmp_path, monkeypatch):
    write_data(tmp_path)
    monkeypatch.setattr(vader.subprocess, "run", lambda *a, **k: pytest.fail("must not download"))
    assert vader.fetch_vader(tmp_path) == tmp_path / vader.FOLDER


def test_malformed_lines_are_counted_not_hidden():
    text = "1\t2.5\tgood film\n2\tnot-a-number\tbroken\n3\t-1.0\n4\t9.0\tout of range\n\n5\t-2.0\tbad film"
    parsed = vader.parse_ratings(text)
    assert parsed.texts == ["good film", "bad film"] and parsed.ratings == [2.5, -2.0]
    assert parsed.malformed == 3 and parsed.malformed_examples[0] == "2\tnot-a-number\tbroken"


def test_labels_polarity_band_and_fine_bins():
    assert [label_of(r, "polarity") for r in (-1.0, -0.5, 0.0, 0.5, 0.51)] == [0, None, None, None, 1]
    assert [label_of(r, "fine") for r in (-2.1, -2.0, -0.51, -0.5, 0.5, 0.51, 2.0, 2.01)] == [0, 1, 1, 2, 2, 3, 3, 4]
    assert len(FINE_NAMES) == 5


def test_splits_are_fixed_disjoint_and_sized(tmp_path):
    write_data(tmp_path)
    small = load_sentiment("movie", "polarity", n_train=20, n_val=10, n_test=30, root=tmp_path)
    large = load_sentiment("movie", "polarity", n_train=60, n_val=10, n_test=30, root=tmp_path)
    assert {k: len(v) for k, v in small.items()} == {"train": 20, "validation": 10, "test": 30}
    assert small["test"]["text"] == large["test"]["text"], "more training data never moves the test set"
    assert set(small["train"]["text"]) <= set(large["train"]["text"])
    texts = [set(small[s]["text"]) for s in ("train", "validation", "test")]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert small["train"].features["label"].names == ["negative", "positive"]


def test_bad_split_requests_are_clear(tmp_path):
    write_data(tmp_path)
    with pytest.raises(ValueError, match="Unknown sentiment task 'sst'; allowed: polarity, fine"):
        load_sentiment("movie", "sst", root=tmp_path)
    with pytest.raises(ValueError, match=r"n_train must be an int from 1 to \d+ for movie/polarity"):
        load_sentiment("movie", "polarity", n_train=10_000, n_val=10, n_test=10, root=tmp_path)
    with pytest.raises(ValueError, match="n_val must be a positive int"):
        load_sentiment("movie", "polarity", n_val=0, root=tmp_path)
    with pytest.raises(ValueError, match=r"band must be in \[0, 4\)"):
        load_sentiment("movie", "polarity", band=-1, root=tmp_path)


def test_report_counts_dropped_and_classes(tmp_path):
    write_data(tmp_path, n=200, extra="\r\nbroken line")
    report = sentiment_report("amazon", "polarity", root=tmp_path)
    assert report["sentences"] == 200 and report["malformed lines"] == 1
    assert report["kept"] + report["dropped as neutral"] == 200
    assert report["class negative"] + report["class positive"] == report["kept"]
    fine = sentiment_report("amazon", "fine", root=tmp_path)
    assert sum(fine[f"class {n}"] for n in FINE_NAMES) == 200


def test_sst2_from_local_files_of_its_schema(tmp_path):
    rows = "sentence,label,idx\n" + "\n".join(f"a {'good' if i % 2 else 'bad'} film {i},{i % 2},{i}" for i in range(40))
    (tmp_path / "train.csv").write_text(rows)
    (tmp_path / "validation.csv").write_text(rows.replace("film", "movie"))
    splits = load_sst2({"train": str(tmp_path / "train.csv"), "validation": str(tmp_path / "validation.csv")},
                       n_val=8)
    assert {k: len(v) for k, v in splits.items()} == {"train": 32, "validation": 8, "test": 40}
    assert splits["test"].column_names == ["text", "label"]
    with pytest.raises(ValueError, match="needs 'train' and 'validation'"):
        load_sst2({"train": str(tmp_path / "train.csv")})
