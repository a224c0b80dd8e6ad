"""Alpaca records and prompt templates (notebook 10, section 1).

An Alpaca record is a dict ``{"instruction", "input", "output"}`` (``input`` may be
empty). A :class:`PromptTemplate` turns it into a prompt, with one wording for records
that have an input and one for records that do not; the response follows the prompt
and ends with the tokenizer's EOS token, so a trained model learns where to stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

FIELDS: tuple[str, ...] = ("instruction", "input", "output")


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


@dataclass(frozen=True)
class PromptTemplate:
    """Two prompt wordings (with and without an input); the response and EOS follow the prompt."""

    name: str
    with_input: str     # uses {instruction} and {input}
    without_input: str  # uses {instruction}
    headers: tuple[str, ...] = ()  # the section headers, e.g. "### Response:" (see vocab.add_header_tokens)
    eos_separator: str = ""        # text between the response and the EOS token when rendering as text

    def prompt(self, record: Mapping) -> str:
        """The prompt for a record: the with-input wording when ``input`` is non-empty."""
        if not isinstance(record, Mapping) or not isinstance(record.get("instruction"), str):
            raise ValueError(f"An Alpaca record needs an 'instruction' string (and optionally 'input'); got "
                             f"{dict(record) if isinstance(record, Mapping) else record!r}")
        instruction, given = record["instruction"], record.get("input") or ""
        if given.strip():
            return self.with_input.format(instruction=instruction, input=given)
        return self.without_input.format(instruction=instruction)

    def render(self, record: Mapping, eos_token: str = "") -> str:
        """The full training text: prompt, response, then the EOS token."""
        if not isinstance(record.get("output"), str):
            raise ValueError(f"An Alpaca record needs an 'output' string to render a training text; got {dict(record)}")
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
