"""The claims ledger (docs/claims.yaml): every result number in the docs, backed by its file.

Two checks, both pure file reading:

1. Each ledger claim: its `text` is in its document, its `value` is in its `text`, and the
   results file still holds that value at `key` (or `expr`) after the claim's rounding. A doc
   edited, a JSON rerun or a file moved without the other fails here.
2. Each document is scanned for numbers that look like results, and every one must lie inside
   a ledger claim's value or a `not_results` entry's text. What looks like a result (outside
   `inline code` and fenced code blocks except their `# comments`, on whitespace-collapsed
   text):
   - a number, range or list of numbers followed by a unit of time, rate, ratio, share or size
     (UNITS below: `105 s`, `1.49x`, `0.53 / 0.79 / 0.93`-less lists stop at the unit: `66 / 84
     / 100 %`, `640 images/s`, `38 dB`);
   - a number right after a metric word (METRICS: `FID 49`, `quality from 0.944`, `p = 0.11`);
   - a fraction `0/200`;
   - a decimal with two or more fractional digits (`0.845`), not part of a dotted version;
   - every number in a markdown table row (cells carry their units in the header).
   Version strings (`2.13.0`), dates (`2026-12-01`), commit hashes and numbers inside
   identifiers (`mnist-20min`, `GB 45438-2025`, `p50`) are not candidates.
"""

from __future__ import annotations

import json
import math
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LEDGER = REPO / "docs" / "claims.yaml"
# every Markdown file of docs/ is scanned, so a new page cannot slip past the ledger
DOCUMENTS = ("README.md", "benchmarks/README.md",
             *sorted(f"docs/{page.name}" for page in (REPO / "docs").glob("*.md")))

NUM = r"[-−+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
UNITS = (r"%|x|×|s|ms|µs|us|min|minutes?|seconds?|hours?|h|dB|kHz|MB|MiB|GiB|TiB|KB|"
         r"images/s|img/s|samples/s|requests/s|req/s|tokens/s|rows/s|points?")
METRICS = (r"FID|KID|IS|F1|AUC|CRPS|MASE|PSNR|CAS|quality|accuracy|perplexity|loss|coverage|"
           r"score|p|p-value|ratio|throughput|epsilon")
# a run of numbers joined by range/list separators, ending in a unit
JOIN = r"\s*(?:-|–|/|to|and|or|,)\s*"
QUANTITY = re.compile(rf"(?<![\w.^-]){NUM}(?:{JOIN}{NUM})*\s*(?:{UNITS})(?![\w])")
AFTER_METRIC = re.compile(rf"\b(?:{METRICS})\b(?:\s*(?:of|is|at|from|=|≥|≤|<|>|:|~))*\s*({NUM})")
FRACTION = re.compile(r"(?<![\w.,])\d+\s*/\s*\d+(?![\w.]|,\d)")
LONG_DECIMAL = re.compile(r"(?<![\w.])[-−]?\d+\.\d{2,}(?![\w.]|\.\d)")
NUMBER = re.compile(NUM.removeprefix("[-−+]?"))  # inside a range "43-58", "-" is no sign
BARE_NUMBER = re.compile(rf"(?<![\w.^-]){NUM}(?![\w^])")


@cache
def ledger() -> dict[str, Any]:
    return yaml.safe_load(LEDGER.read_text(encoding="utf-8"))


def collapse(text: str) -> str:
    """Whitespace collapsed and `inline code` blanked, as in `prose` (so anchors may hold code)."""
    return re.sub(r"\s+", " ", re.sub(r"`[^`]+`", " ¦ ", text)).strip()


def code_comments(block: re.Match[str]) -> str:
    """A fenced code block reduced to its comments (`cmd  # what it does`): claims hide there."""
    comments = re.findall(r"(?:^|\s)#\s(.*)$", block.group(), flags=re.M)
    return " ¶ " + " ¶ ".join(comments) + " ¶ "


@cache
def prose(doc: str) -> str:
    """A document's text, code blocks reduced to their comments, whitespace collapsed."""
    text = (REPO / doc).read_text(encoding="utf-8")
    return collapse(re.sub(r"^```.*?^```[^\n]*$", code_comments, text, flags=re.S | re.M))


@cache
def table_rows(doc: str) -> tuple[str, ...]:
    """The data rows of the document's markdown tables (not headers or separators), collapsed."""
    lines = (REPO / doc).read_text(encoding="utf-8").splitlines()
    rows, in_table = [], False
    for i, line in enumerate(lines):
        if not line.startswith("|"):
            in_table = False
            continue
        separator = i + 1 < len(lines) and re.match(r"^\|[\s|:-]+\|$", lines[i + 1])
        if separator or re.match(r"^\|[\s|:-]+\|$", line):
            in_table = True
            continue
        if in_table:
            rows.append(collapse(line))
    return tuple(rows)


def resolve(data: Any, path: str) -> Any:
    """Walk `a/b/[k=v,k2=v2]/c`: dict keys, list indices, or the one list item matching k=v."""
    node = data
    for part in path.split("/"):
        if isinstance(node, list):
            if part.startswith("[") and part.endswith("]"):
                wanted = dict(p.split("=", 1) for p in part[1:-1].split(","))
                found = [x for x in node if all(json.dumps(x.get(k)).strip('"') == v
                                                for k, v in wanted.items())]
                if len(found) != 1:
                    raise KeyError(f"{part} matches {len(found)} items, not 1")
                node = found[0]
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if part not in node:
                raise KeyError(f"no key {part!r} (keys: {', '.join(map(str, node))})")
            node = node[part]
        else:
            raise KeyError(f"{part!r} under a {type(node).__name__}")
    return node


def file_value(claim: dict[str, Any]) -> Any:
    """The claim's value from its results file: `key`, or `expr` over `v(path[, file])`."""
    path = REPO / claim["file"]
    data = json.loads(path.read_text(encoding="utf-8"))
    if "key" in claim:
        return resolve(data, claim["key"])

    def v(key: str, other: str | None = None) -> Any:
        source = data if other is None else json.loads((REPO / other).read_text("utf-8"))
        return resolve(source, key)

    # globals, not locals, so that comprehensions in the expression see them too
    names = {"__builtins__": {}, "v": v, "abs": abs, "min": min, "max": max, "sum": sum,
             "len": len, "sorted": sorted, "round": round, "list": list, "range": range,
             "int": int, "str": str}
    return eval(claim["expr"], names)


def rendered(claim: dict[str, Any], value: Any) -> str:
    """The value as the document must print it: scale, sign, then the format spec."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"not a finite number: {value!r}")
    value = value * claim.get("scale", 1)
    if claim.get("abs"):
        value = abs(value)
    spec = str(claim.get("format", ""))
    if spec.startswith("sci"):  # sci1: 3e-7, sci2: 1.5e-7 (significant digits, short exponent)
        mantissa, exponent = format(value, f".{int(spec[3:]) - 1}e").split("e")
        return f"{mantissa}e{int(exponent)}"
    return format(value, spec)


def value_spans(text: str, value: str) -> list[tuple[int, int]]:
    """Where `value` stands in `text` as a whole number, not inside a longer one."""
    return [m.span() for m in re.finditer(rf"(?<![\d,])(?<!\d\.){re.escape(value)}(?![\d]|[.,]\d)",
                                          text)]


CLAIMS = ledger()["claims"]
NOT_RESULTS = ledger()["not_results"]


def test_ledger_is_well_formed() -> None:
    ids = [c["id"] for c in CLAIMS]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    for claim in CLAIMS:
        assert {"id", "doc", "text", "value", "file"} <= set(claim), claim
        assert ("key" in claim) != ("expr" in claim), f"{claim['id']}: key or expr, not both"
        assert claim["doc"] in DOCUMENTS, f"{claim['id']}: doc {claim['doc']} is not scanned"
    for entry in NOT_RESULTS:
        assert {"doc", "text", "reason"} <= set(entry) and entry["reason"].strip(), entry


@pytest.mark.parametrize("claim", CLAIMS, ids=[c["id"] for c in CLAIMS])
def test_claim_is_in_its_document(claim: dict[str, Any]) -> None:
    text = collapse(claim["text"])
    assert text in prose(claim["doc"]) or text in table_rows(claim["doc"]) or any(
        text in row for row in table_rows(claim["doc"])), \
        f"{claim['doc']} no longer says: {text!r}"
    found = value_spans(text, str(claim["value"]))
    assert len(found) == 1, f"value {claim['value']!r} is {len(found)} times in {text!r}, not once"


@pytest.mark.parametrize("claim", CLAIMS, ids=[c["id"] for c in CLAIMS])
def test_claim_matches_its_file(claim: dict[str, Any]) -> None:
    assert (REPO / claim["file"]).is_file(), f"{claim['file']} is gone"
    got = rendered(claim, file_value(claim))
    assert got == str(claim["value"]), (
        f"{claim['doc']} says {claim['value']} but {claim['file']} "
        f"{claim.get('key') or claim.get('expr')} gives {got}")


@pytest.mark.parametrize("entry", NOT_RESULTS, ids=[f"{e['doc']}:{e['text'][:40]}"
                                                    for e in NOT_RESULTS])
def test_not_result_entry_is_still_in_its_document(entry: dict[str, Any]) -> None:
    text = collapse(entry["text"])
    assert text in prose(entry["doc"]) or any(text in row for row in table_rows(entry["doc"])), \
        f"stale not_results entry: {entry['doc']} no longer says {text!r}"


def candidates(text: str, whole_rows: bool = False) -> list[tuple[int, int]]:
    """Spans of the numbers in `text` that look like results (see the module docstring)."""
    spans: set[tuple[int, int]] = set()
    for match in QUANTITY.finditer(text):
        for number in NUMBER.finditer(match.group()):
            spans.add((match.start() + number.start(), match.start() + number.end()))
    for match in AFTER_METRIC.finditer(text):
        spans.add(match.span(1))
    for pattern in (FRACTION, LONG_DECIMAL):
        for match in pattern.finditer(text):
            for number in NUMBER.finditer(match.group()):
                spans.add((match.start() + number.start(), match.start() + number.end()))
    if whole_rows:
        spans.update(m.span() for m in BARE_NUMBER.finditer(text))
    return sorted(spans)


def covered_spans(text: str, doc: str) -> list[tuple[int, int]]:
    """Spans of `text` that a claim's value or a not_results entry accounts for."""
    spans = []
    for claim in CLAIMS:
        if claim["doc"] != doc:
            continue
        anchor = collapse(claim["text"])
        inside = value_spans(anchor, str(claim["value"]))[:1]
        for found in re.finditer(re.escape(anchor), text):
            spans += [(found.start() + a, found.start() + b) for a, b in inside]
    for entry in NOT_RESULTS:
        if entry["doc"] == doc:
            anchor = collapse(entry["text"])
            spans += [m.span() for m in re.finditer(re.escape(anchor), text)]
    return spans


def unlisted(text: str, doc: str, whole_rows: bool = False) -> list[str]:
    cover = covered_spans(text, doc)
    out = []
    for start, end in candidates(text, whole_rows):
        if not any(a <= start and end <= b for a, b in cover):
            out.append(f"{text[start:end]!r} in ...{text[max(0, start - 60):end + 30]}...")
    return out


@pytest.mark.parametrize("doc", DOCUMENTS)
def test_every_result_number_is_in_the_ledger(doc: str) -> None:
    found = unlisted(prose(doc), doc)
    for row in table_rows(doc):
        found += unlisted(row, doc, whole_rows=True)
    assert not found, (f"{doc}: {len(found)} result-looking numbers neither in docs/claims.yaml's "
                       "claims nor in its not_results:\n" + "\n".join(found))
