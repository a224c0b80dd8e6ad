"""Alpaca-style instruction data: records, templates, tokenization with prompt masking, padding and packing.

An Alpaca record is a dict ``{"instruction", "input", "output"}`` (``input`` may be
empty). A :class:`PromptTemplate` turns it into a prompt, with one wording for records
that have an input and one for records that do not; the response follows the prompt
and ends with the tokenizer's EOS token, so a trained model learns where to stop.

:func:`tokenize_record` tokenizes prompt and response separately, so the boundary is
exact, and sets the labels of the prompt tokens to -100 (``mask_prompt=True``): the
loss then only teaches the response. Two collators turn tokenized examples into
batches: :class:`PaddingCollator` (one example per row, padded) and
:class:`PackingCollator` (several whole examples per row, see its docstring for
what happens at the boundaries).

The course's own instruction set (:func:`make_instruction_set`) is generated offline
from the synthetic world, scored with :func:`exact_match`; real Alpaca data loads from a
local JSON file (:func:`load_alpaca_json`) or, online, from the Hub (:func:`load_alpaca_hub`).
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from .collate import IGNORE_INDEX
from .corpus import check_count
from .world import CELLS, DOMAINS, LEXICON, PEOPLE, REACTIONS, TASK_TEMPLATES

FIELDS: tuple[str, ...] = ("instruction", "input", "output")
ALPACA_HUB_NAME = "tatsu-lab/alpaca"


# --------------------------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------------------------

def validate_record(record: Any, index: int = 0) -> dict:
    """Check one Alpaca record and return it with ``input`` filled in ("" when missing or None).

    ``instruction`` and ``output`` must be non-empty strings, ``input`` a string (empty allowed).
    Errors name the record's index and the field, e.g. ``record 3: field 'output' is missing``.
    """
    if not isinstance(record, Mapping):
        raise ValueError(f"record {index}: expected a dict with fields {list(FIELDS)}, got {type(record).__name__}.")
    out = dict(record)
    for field in ("instruction", "output"):
        if field not in record:
            raise ValueError(f"record {index}: field {field!r} is missing (an Alpaca record needs "
                             f"{list(FIELDS)}; 'input' may be empty).")
        value = record[field]
        if not isinstance(value, str):
            raise ValueError(f"record {index}: field {field!r} must be a string, got {type(value).__name__}.")
        if not value.strip():
            raise ValueError(f"record {index}: field {field!r} is empty; it must contain text.")
    value = record.get("input")
    if value is None:
        out["input"] = ""
    elif not isinstance(value, str):
        raise ValueError(f"record {index}: field 'input' must be a string (\"\" for none), got {type(value).__name__}.")
    return out


def validate_records(records: Iterable[Any]) -> list[dict]:
    """Validate every record (see :func:`validate_record`); return them with ``input`` filled in."""
    checked = [validate_record(r, i) for i, r in enumerate(records)]
    if not checked:
        raise ValueError("No records: give at least one {instruction, input, output} dict.")
    return checked


# --------------------------------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PromptTemplate:
    """Two prompt wordings (with and without an input); the response and EOS follow the prompt."""

    name: str
    with_input: str     # uses {instruction} and {input}
    without_input: str  # uses {instruction}
    headers: tuple[str, ...] = ()  # the section headers, e.g. "### Response:" (see add_header_tokens)
    eos_separator: str = ""        # text between the response and the EOS token when rendering as text

    def prompt(self, record: Mapping) -> str:
        """The prompt for a record: the with-input wording when ``input`` is non-empty."""
        instruction, given = record["instruction"], record.get("input") or ""
        if given.strip():
            return self.with_input.format(instruction=instruction, input=given)
        return self.without_input.format(instruction=instruction)

    def render(self, record: Mapping, eos_token: str = "") -> str:
        """The full training text: prompt, response, then the EOS token."""
        return self.prompt(record) + record["output"] + (self.eos_separator + eos_token if eos_token else "")


ALPACA_TEMPLATE = PromptTemplate(
    name="alpaca",
    with_input=("Here is an instruction that describes a task, together with an input that gives more context. "
                "Write a response that carries out the request.\n\n"
                "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"),
    without_input=("Here is an instruction that describes a task. "
                   "Write a response that carries out the request.\n\n"
                   "### Instruction:\n{instruction}\n\n### Response:\n"),
    headers=("### Instruction:", "### Input:", "### Response:"),
)
"""The Alpaca layout (preamble, then Instruction / Input / Response sections), in the course's own words."""

COMPACT_TEMPLATE = PromptTemplate(
    name="compact",
    with_input="### Instruction: {instruction} ### Input: {input} ### Response: ",
    without_input="### Instruction: {instruction} ### Response: ",
    headers=("### Instruction:", "### Input:", "### Response:"),
    eos_separator=" ",
)
"""The same sections without the preamble, for the course GPT's short context (one token per header)."""


def add_header_tokens(tokenizer, template: PromptTemplate) -> list[int]:
    """Register the template's headers as special tokens (one id each); return their ids.

    A vocabulary trained on another corpus may lack the header's characters ("#", ":");
    a single special token per header also keeps the prompt short. The model's embedding
    matrix must then grow to ``len(tokenizer)`` (see ``course_lib.sft.resize_token_embeddings``).
    """
    from tokenizers import AddedToken

    if not template.headers:
        raise ValueError(f"Template {template.name!r} has no headers to add.")
    new = [h for h in template.headers if h not in tokenizer.get_vocab()]
    if new:
        tokenizer.add_tokens([AddedToken(h, special=True, normalized=False) for h in new], special_tokens=True)
    return tokenizer.convert_tokens_to_ids(list(template.headers))


def unknown_token_share(tokenizer, texts: Iterable[str]) -> float:
    """Share of tokens that are the unknown token (0.0 when the tokenizer has none)."""
    unk = tokenizer.unk_token_id
    total = hits = 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        total += len(ids)
        hits += sum(i == unk for i in ids) if unk is not None else 0
    return hits / max(1, total)


# --------------------------------------------------------------------------------------------------------------------
# Tokenization and prompt masking
# --------------------------------------------------------------------------------------------------------------------

def tokenize_record(record: Mapping, tokenizer, template: PromptTemplate = ALPACA_TEMPLATE,
                    mask_prompt: bool = True, max_len: int | None = None, add_eos: bool = True) -> dict:
    """Token ids and labels of ``prompt + output + EOS``; prompt labels are -100 when ``mask_prompt``.

    Prompt and response are tokenized separately, so ``prompt_len`` is exact. Sequences
    longer than ``max_len`` are cut at the end (the EOS may be lost); use
    :func:`tokenize_records` to drop them instead. ``add_eos=False`` leaves the EOS out
    (to see what a model trained that way does at generation time).
    """
    eos = tokenizer.eos_token_id
    if eos is None and add_eos:
        raise ValueError("The tokenizer has no EOS token; set tokenizer.eos_token before tokenizing responses.")
    prompt_ids = tokenizer(template.prompt(record), add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(record["output"], add_special_tokens=False)["input_ids"] + ([eos] if add_eos else [])
    input_ids = prompt_ids + response_ids
    labels = ([IGNORE_INDEX] * len(prompt_ids) if mask_prompt else list(prompt_ids)) + response_ids
    if max_len is not None:
        input_ids, labels = input_ids[:max_len], labels[:max_len]
    return {"input_ids": input_ids, "labels": labels, "prompt_len": min(len(prompt_ids), len(input_ids))}


def tokenize_records(records: Iterable[Mapping], tokenizer, template: PromptTemplate = ALPACA_TEMPLATE,
                     mask_prompt: bool = True, max_len: int | None = None, too_long: str = "drop",
                     add_eos: bool = True) -> list[dict]:
    """Tokenize many records; ``too_long`` = 'drop', 'truncate' or 'error' for those over ``max_len``."""
    if too_long not in ("drop", "truncate", "error"):
        raise ValueError(f"too_long must be 'drop', 'truncate' or 'error', got {too_long!r}.")
    out = []
    for i, record in enumerate(validate_records(records)):
        example = tokenize_record(record, tokenizer, template, mask_prompt, add_eos=add_eos)
        if max_len is not None and len(example["input_ids"]) > max_len:
            if too_long == "error":
                raise ValueError(f"record {i}: {len(example['input_ids'])} tokens exceed max_len={max_len}.")
            if too_long == "drop":
                continue
            example = tokenize_record(record, tokenizer, template, mask_prompt, max_len, add_eos)
        out.append(example)
    return out


def _check_examples(examples: Sequence[Mapping]) -> None:
    if not examples:
        raise ValueError("Cannot build a batch from zero examples.")
    for i, ex in enumerate(examples):
        if "input_ids" not in ex or "labels" not in ex:
            raise ValueError(f"example {i}: needs 'input_ids' and 'labels' (from tokenize_record), got {sorted(ex)}.")
        if len(ex["input_ids"]) != len(ex["labels"]):
            raise ValueError(f"example {i}: input_ids and labels differ in length "
                             f"({len(ex['input_ids'])} vs {len(ex['labels'])}).")


@dataclass
class PaddingCollator:
    """One example per row, padded on the right: to the longest row (``pad_to=None``) or to ``pad_to``.

    Padding gets ``attention_mask`` 0 and label -100, so it is neither attended to nor learned.
    """

    pad_token_id: int
    pad_to: int | None = None

    def __call__(self, examples: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        _check_examples(examples)
        longest = max(len(ex["input_ids"]) for ex in examples)
        width = longest if self.pad_to is None else self.pad_to
        if longest > width:
            raise ValueError(f"An example has {longest} tokens, more than pad_to={self.pad_to}; "
                             "tokenize with max_len or raise pad_to.")
        ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        for row, ex in enumerate(examples):
            n = len(ex["input_ids"])
            ids[row, :n] = torch.tensor(ex["input_ids"])
            labels[row, :n] = torch.tensor(ex["labels"])
            mask[row, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


PACKING_STRATEGIES: tuple[str, ...] = ("first_fit", "next_fit")


def pack_examples(examples: Sequence[Mapping], max_len: int, strategy: str = "first_fit") -> list[dict]:
    """Put whole examples into rows of at most ``max_len`` tokens; return the rows.

    ``next_fit`` fills one row in example order and starts a new row when the next
    example does not fit; ``first_fit`` puts each example into the first row with room
    (fewer, fuller rows). Either way no example is split, every token appears exactly
    once, and a row holds its examples in their original order. Each row has
    ``input_ids``, ``labels`` and ``example_ids`` (which example each token came from).
    An example longer than ``max_len`` is an error.
    """
    _check_examples(examples)
    max_len = check_count("max_len", max_len)
    if strategy not in PACKING_STRATEGIES:
        raise ValueError(f"strategy must be one of {PACKING_STRATEGIES}, got {strategy!r}.")
    rows: list[dict] = []
    for i, ex in enumerate(examples):
        n = len(ex["input_ids"])
        if n > max_len:
            raise ValueError(f"example {i} has {n} tokens, more than max_len={max_len}; it cannot be packed whole.")
        candidates = rows if strategy == "first_fit" else rows[-1:]
        row = next((r for r in candidates if len(r["input_ids"]) + n <= max_len), None)
        if row is None:
            row = {"input_ids": [], "labels": [], "example_ids": []}
            rows.append(row)
        row["input_ids"] += list(ex["input_ids"])
        row["labels"] += list(ex["labels"])
        row["example_ids"] += [i] * n
    return rows


@dataclass
class PackingCollator:
    """Several whole examples per row (:func:`pack_examples`), padded on the right.

    It packs the examples of one batch, so a batch of B examples becomes at most B rows,
    padded to the longest row (or to ``max_len`` with ``pad_to_max_len=True``).

    Boundaries: the course GPT's attention takes only a padding mask, so a token can
    attend to earlier examples in its row, and positions keep counting across the
    boundary (cross-contamination, as in simple packing implementations). No *label*
    crosses a boundary when prompts are masked: the first token of every example is a
    prompt token with label -100, so the previous example's EOS is never trained to
    predict it. ``return_example_ids`` adds ``example_ids`` (-1 on padding) for
    inspection; models do not accept that key, so leave it off for training.
    """

    pad_token_id: int
    max_len: int
    strategy: str = "first_fit"
    pad_to_max_len: bool = False
    return_example_ids: bool = False

    def __call__(self, examples: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        rows = pack_examples(examples, self.max_len, self.strategy)
        width = self.max_len if self.pad_to_max_len else max(len(r["input_ids"]) for r in rows)
        shape = (len(rows), width)
        ids = torch.full(shape, self.pad_token_id, dtype=torch.long)
        labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros(shape, dtype=torch.long)
        example_ids = torch.full(shape, -1, dtype=torch.long)
        for r, row in enumerate(rows):
            n = len(row["input_ids"])
            ids[r, :n] = torch.tensor(row["input_ids"])
            labels[r, :n] = torch.tensor(row["labels"])
            mask[r, :n] = 1
            example_ids[r, :n] = torch.tensor(row["example_ids"])
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if self.return_example_ids:
            batch["example_ids"] = example_ids
        return batch


def few_shot_prompt(record: Mapping, demos: Sequence[Mapping], tokenizer, template: PromptTemplate = ALPACA_TEMPLATE,
                    max_tokens: int | None = None) -> tuple[str, int]:
    """In-context learning: ``(prompt, k)``, the record's prompt after the first k demonstrations that fit.

    Each demonstration is rendered in full (prompt, answer, EOS), so the model sees the
    format k times before the query. Demonstrations are added in order while the whole
    prompt stays within ``max_tokens`` (no limit: all of them).
    """
    query = template.prompt(record)
    eos = tokenizer.eos_token or ""
    count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    shots: list[str] = []
    for demo in demos:
        candidate = "".join(shots) + template.render(demo, eos) + template.eos_separator + query
        if max_tokens is not None and count(candidate) > max_tokens:
            break
        shots.append(template.render(demo, eos) + template.eos_separator)
    return "".join(shots) + query, len(shots)


def padding_share(batch: Mapping[str, torch.Tensor]) -> float:
    """Share of the batch's positions that are padding (attention_mask 0)."""
    mask = batch["attention_mask"]
    return 1.0 - float(mask.sum()) / mask.numel()


# --------------------------------------------------------------------------------------------------------------------
# Exact-match scoring
# --------------------------------------------------------------------------------------------------------------------

def normalize_answer(text: str) -> str:
    """Lowercase, trim, collapse whitespace and drop spaces before punctuation ("a , b ." -> "a, b.")."""
    text = " ".join(str(text).lower().split())
    return re.sub(r"\s+([,.!?;:])", r"\1", text)


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of predictions equal to their reference after :func:`normalize_answer`."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references; they must pair up.")
    if not references:
        raise ValueError("exact_match needs at least one (prediction, reference) pair.")
    hits = sum(normalize_answer(p) == normalize_answer(r) for p, r in zip(predictions, references))
    return hits / len(references)


def exact_match_by(predictions: Sequence[str], references: Sequence[str], groups: Sequence[str]) -> dict[str, float]:
    """Exact match per group (e.g. per instruction type), in first-seen group order."""
    if not len(predictions) == len(references) == len(groups):
        raise ValueError("predictions, references and groups must have the same length, got "
                         f"{len(predictions)}, {len(references)} and {len(groups)}.")
    buckets: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        buckets[g].append(i)
    return {g: exact_match([predictions[i] for i in idx], [references[i] for i in idx]) for g, idx in buckets.items()}


# --------------------------------------------------------------------------------------------------------------------
# Loaders for real Alpaca data
# --------------------------------------------------------------------------------------------------------------------

def _as_dataset(records: list[dict]):
    from datasets import Dataset

    return Dataset.from_dict({f: [r[f] for r in records] for f in FIELDS})


def load_alpaca_json(path: str | os.PathLike):
    """A ``datasets.Dataset`` (instruction, input, output) from a local Alpaca JSON file (a list) or JSON Lines."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No Alpaca file at {path}; give a .json list of records or a .jsonl file.")
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        records = json.loads(text)
    else:
        try:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is neither a JSON list nor JSON Lines: {err}") from None
    if not isinstance(records, list):
        raise ValueError(f"{path} must hold a JSON list of records, got {type(records).__name__}.")
    return _as_dataset(validate_records(records))


def load_alpaca_hub(name: str = ALPACA_HUB_NAME, split: str = "train", limit: int | None = None):
    """The Alpaca data set from the Hugging Face Hub by name (online users), validated, as a Dataset."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise RuntimeError(f"{name!r} needs a download, but HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set. Unset it "
                           "to fetch from the Hub, or use load_alpaca_json on a local file of the same schema.")
    from datasets import load_dataset

    data = load_dataset(name, split=split)
    missing = [f for f in FIELDS if f not in data.column_names]
    if missing:
        raise ValueError(f"{name!r} has columns {data.column_names}; an Alpaca set needs {list(FIELDS)} "
                         f"(missing {missing}).")
    if limit is not None:
        data = data.select(range(min(check_count("limit", limit), len(data))))
    return _as_dataset(validate_records(data.select_columns(list(FIELDS))))


def load_alpaca(name_or_path: str | os.PathLike = ALPACA_HUB_NAME, **kwargs):
    """A local Alpaca JSON/JSONL file when the path exists, otherwise a Hub data set by name."""
    if Path(name_or_path).exists():
        return load_alpaca_json(name_or_path)
    return load_alpaca_hub(str(name_or_path), **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# The course's generated instruction set
# --------------------------------------------------------------------------------------------------------------------

NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
ARITH_NOUNS: tuple[str, ...] = ("pie", "pizza", "phone", "camera")  # short plurals keep problems within the context
RATINGS: dict = {("negative", "strong"): "one", ("negative", "mild"): "two",
                 ("positive", "mild"): "three", ("positive", "strong"): "four"}
ALL_NOUNS: tuple[str, ...] = tuple(w for d in DOMAINS for w in LEXICON.nouns[d])
GROUPS: tuple[str, ...] = ("seen", "new wording", "held-out type")


@dataclass(frozen=True)
class InstructionType:
    """One kind of instruction: its phrasings, its family and a generator of (input, output) pairs.

    Training uses all phrasings but the last; the last one (``new wording``) is kept for
    testing. A ``heldout`` type never appears in training at all.
    """

    name: str
    family: str
    phrasings: tuple[str, ...]
    make: Callable[[random.Random], tuple[str, str]]
    heldout: bool = False


def _review(rng: random.Random) -> tuple[str, str, str, str, tuple[str, str], str]:
    """A review sentence from the world: (sentence, name, noun, adjective, cell, domain)."""
    domain, cell = rng.choice(DOMAINS), rng.choice(CELLS)
    name, noun, adj = rng.choice(LEXICON.names), rng.choice(LEXICON.nouns[domain]), rng.choice(LEXICON.adjectives[cell])
    return rng.choice(TASK_TEMPLATES).format(name=name, noun=noun, adj=adj), name, noun, adj, cell, domain


def _items(rng: random.Random) -> list[str]:
    return rng.sample(ALL_NOUNS, rng.randint(2, 4))


def _count(n: int, noun: str) -> str:
    return f"{NUMBER_WORDS[n]} {noun}" + ("" if n == 1 else "s")


def _make_sentiment(rng):
    sentence, *_, cell, _ = _review(rng)
    return sentence, "good" if cell[0] == "positive" else "bad"


def _make_topic(rng):
    sentence, *_, domain = _review(rng)
    return sentence, domain


def _make_strength(rng):
    sentence, *_, cell, _ = _review(rng)
    return sentence, cell[1]


def _make_rating(rng):
    sentence, *_, cell, _ = _review(rng)
    return sentence, RATINGS[cell]


def _make_who(rng):
    sentence, name, *_ = _review(rng)
    return sentence, name


def _make_object(rng):
    sentence, _, noun, *_ = _review(rng)
    return sentence, noun


def _make_first(rng):
    items = _items(rng)
    return " , ".join(items), items[0]


def _make_last(rng):
    items = _items(rng)
    return " , ".join(items), items[-1]


def _make_reverse(rng):
    items = _items(rng)
    return " , ".join(items), " , ".join(reversed(items))


def _make_count(rng):
    items = _items(rng)
    return " , ".join(items), NUMBER_WORDS[len(items)]


def _make_and_list(rng):
    items = _items(rng)
    return " , ".join(items), " and ".join(items)


def _make_addsub(rng):
    name, noun = rng.choice(LEXICON.names), rng.choice(ARITH_NOUNS)
    a = rng.randint(1, 9)
    if rng.random() < 0.5:
        b = rng.randint(1, 10 - a)
        return f"{name} had {_count(a, noun)} and found {NUMBER_WORDS[b]}", NUMBER_WORDS[a + b]
    b = rng.randint(1, a)
    return f"{name} had {_count(a, noun)} and {rng.choice(('sold', 'lost', 'lent'))} {NUMBER_WORDS[b]}", NUMBER_WORDS[a - b]


def _make_two_step(rng):
    name, noun = rng.choice(LEXICON.names), rng.choice(ARITH_NOUNS)
    a = rng.randint(1, 4)
    b = rng.randint(1, 5 - a)
    c = rng.randint(1, a + b)
    return f"{name} had {_count(a, noun)} , found {NUMBER_WORDS[b]} , lent {NUMBER_WORDS[c]}", NUMBER_WORDS[a + b - c]


def _make_to_sentence(rng):
    _, name, noun, adj, *_ = _review(rng)
    return f"{name} , {noun} , {adj}", f"{name} said the {noun} was {adj} ."


def _make_extract(rng):
    sentence, name, noun, adj, *_ = _review(rng)
    return sentence, f"{name} , {noun} , {adj}"


def _make_pronoun(rng):
    name = rng.choice(LEXICON.names)
    return f"{name} {rng.choice(rng.choice(list(REACTIONS.values())))}", PEOPLE[name]


def _make_copy(rng):
    sentence, *_ = _review(rng)
    return sentence, sentence


def _make_domain(rng):
    domain = rng.choice(DOMAINS)
    return rng.choice(LEXICON.nouns[domain]), domain


INSTRUCTION_TYPES: tuple[InstructionType, ...] = (
    # classification phrased as an instruction (the input is a review sentence)
    InstructionType("sentiment", "classify", ("good or bad", "was it liked", "is the review good or bad"),
                    _make_sentiment),
    InstructionType("topic", "classify", ("topic", "name the topic", "which topic is it"), _make_topic),
    InstructionType("strength", "classify", ("mild or strong", "how strong", "is it mild or strong"),
                    _make_strength),
    InstructionType("who", "extract", ("who said it", "name the person", "who is it from"), _make_who),
    InstructionType("object", "extract", ("what was it about", "name the thing", "which thing was rated"),
                    _make_object),
    InstructionType("rating", "classify", ("rate it one to four", "how many stars", "give it one to four stars"),
                    _make_rating, heldout=True),
    # list and string transformations (the input is a list of two to four nouns)
    InstructionType("first", "list", ("first item", "the first one", "which comes first"), _make_first),
    InstructionType("last", "list", ("last item", "the last one", "which comes last"), _make_last, heldout=True),
    InstructionType("reverse", "list", ("reverse the list", "reverse the order", "write it backwards"),
                    _make_reverse),
    InstructionType("count", "list", ("how many items", "count the items", "how long is the list"), _make_count),
    InstructionType("copy", "string", ("repeat it", "copy the text", "say it again"), _make_copy),
    # format conversions
    InstructionType("and_list", "format", ("join with and", "use and", "link them with and"), _make_and_list),
    InstructionType("to_sentence", "format", ("make a sentence", "write a sentence", "as a sentence"),
                    _make_to_sentence),
    InstructionType("extract", "format", ("extract the fields", "list the fields", "pull out the fields"),
                    _make_extract),
    # arithmetic word problems (AddSub: one step; MultiArith: two steps)
    InstructionType("addsub", "arithmetic", ("how many", "how many now", "what is the count"),
                    _make_addsub),
    InstructionType("two_step", "arithmetic", ("how many", "how many now", "what is the count"),
                    _make_two_step, heldout=True),
    # word knowledge from the pretraining corpus
    InstructionType("pronoun", "word", ("he or she", "pick he or she", "which pronoun fits"), _make_pronoun),
    InstructionType("domain", "word", ("which topic is this word", "topic for the word", "what area is it from"),
                    _make_domain, heldout=True),
)


def instruction_types(heldout: bool | None = None) -> list[InstructionType]:
    """All instruction types, or only the held-out (True) or training (False) ones."""
    return [t for t in INSTRUCTION_TYPES if heldout is None or t.heldout == heldout]


def describe_instruction_types() -> str:
    """One line per instruction type: name, family, held out or not, and its first phrasing."""
    return "\n".join(f"{t.name:<12} {t.family:<11} {'held out' if t.heldout else 'train':<9} "
                     f"e.g. {t.phrasings[0]!r}" for t in INSTRUCTION_TYPES)


def _rows(rng: random.Random, itype: InstructionType, phrasings: Sequence[str], n: int, taken: set,
          group: str, max_tries: int = 50) -> list[dict]:
    """Up to n records of one type with new (instruction, input) pairs; adds their keys to ``taken``."""
    rows: list[dict] = []
    tries = 0
    while len(rows) < n and tries < n * max_tries:
        tries += 1
        given, output = itype.make(rng)
        instruction = rng.choice(tuple(phrasings))
        if (instruction, given) in taken:
            continue
        taken.add((instruction, given))
        rows.append({"instruction": instruction, "input": given, "output": output, "type": itype.name,
                     "family": itype.family, "group": group})
    return rows


def make_instruction_set(n_train: int = 2000, n_test_per_type: int = 20, seed: int = 0):
    """The course's Alpaca-format instruction set as a DatasetDict with 'train' and 'test'.

    Columns: ``instruction``, ``input``, ``output`` (the Alpaca fields), ``type``, ``family``
    and ``group``. Training rows cover the non-held-out types with all but the last
    phrasing. Test rows never repeat a training (instruction, input) pair and come in three
    groups: ``seen`` (training types and phrasings, new inputs), ``new wording`` (training
    types, the held-out phrasing) and ``held-out type`` (types never trained on). Types with
    few possible inputs (e.g. ``pronoun``) may contribute fewer rows than asked for.
    """
    from datasets import Dataset, DatasetDict

    n_train, n_test = check_count("n_train", n_train), check_count("n_test_per_type", n_test_per_type)
    rng = random.Random(f"course-instructions:{seed}")
    taken: set = set()
    test: list[dict] = []
    for itype in INSTRUCTION_TYPES:  # test rows first, so training never sees their keys
        if itype.heldout:
            test += _rows(rng, itype, itype.phrasings, n_test, taken, "held-out type")
        else:
            test += _rows(rng, itype, itype.phrasings[:-1], n_test, taken, "seen")
            test += _rows(rng, itype, itype.phrasings[-1:], max(1, n_test // 2), taken, "new wording")
    train_types = instruction_types(heldout=False)
    per_type = -(-n_train // len(train_types))
    train: list[dict] = []
    for itype in train_types:
        train += _rows(rng, itype, itype.phrasings[:-1], per_type, taken, "seen")
    rng.shuffle(train)
    train = train[:n_train]
    columns = (*FIELDS, "type", "family", "group")
    as_ds = lambda rows: Dataset.from_dict({c: [r[c] for r in rows] for c in columns})  # noqa: E731
    return DatasetDict({"train": as_ds(train), "test": as_ds(test)})
