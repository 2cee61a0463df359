"""Tests of claim_t5.data: metadata format, bundled dataset, validation of user data, ROUGE and the claim_t5_data CLI."""
import json
import sys
import warnings
from pathlib import Path

import pytest
from conftest import run_cli as conftest_run_cli

from claim_t5.config import ClaimT5Config
from claim_t5.schema import REQUIRED_FIELDS, MetadataError, format_metadata, parse_metadata, unknown_fields
from claim_t5.rouge import ROUGE_KEYS, rouge_per_example, rouge_scores
from claim_t5.data import (SPLIT_FILES, DataValidationError, Problem, check_record, find_split_files,
                           load_claim_data, read_records, validate_splits, write_bundled_dataset, write_jsonl)
from claim_t5.synth import SPLIT_SIZES, generate_dataset

CLI = Path(sys.executable).parent/"claim_t5_data"


# ---------------------------------------------------------------- helpers and fixtures

def good_input(n, damage="dent", severity="low", **extra) -> str:
    "A valid metadata line for shipment SHP-<n>."
    return format_metadata(dict(shipment_id=f"SHP-{n}", damage_type=damage, severity=severity, **extra))


def good_rec(n, output=None) -> dict:
    "A valid {'input', 'output'} pair, different for each n."
    return {"input": good_input(n), "output": output or f"Shipment SHP-{n} was found with a dent. Severity is low."}


def jline(obj) -> bytes:
    return json.dumps(obj).encode("utf-8")


def write_lines(path: Path, lines) -> Path:
    "Write `lines` (dicts/lists become JSON, bytes are written as they are) one per line."
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join((x if isinstance(x, bytes) else jline(x)) + b"\n" for x in lines))
    return path


def count_rows(paths) -> int:
    "Data rows in the files: non-empty lines of JSONL files, lines after the header of CSV files."
    n = 0
    for p in paths:
        lines = [ln for ln in Path(p).read_bytes().splitlines() if ln.strip()]
        n += len(lines) - 1 if Path(p).suffix == ".csv" else len(lines)
    return n


class WordTokenizer:
    "Stand-in for a Hugging Face tokenizer: one token per whitespace-separated word."
    def __call__(self, text, **kw):
        return {"input_ids": text.split()}


@pytest.fixture(scope="module")
def bundled():
    # The bundled dataset for seed 42, generated once for this module (read-only: do not mutate).
    return generate_dataset()


@pytest.fixture(scope="module")
def bundled_dir(tmp_path_factory):
    # The bundled dataset written once as clean_train/val/test.jsonl (read-only: copy before changing a file).
    d = tmp_path_factory.mktemp("bundled")
    write_bundled_dataset(d)
    return d


# ---------------------------------------------------------------- metadata format

def test_format_metadata_standard_order():
    meta = dict(shipment_stage="transit", vendor="TestCo", severity="high", damage_type="dent",
                image_id="img_0042.png", shipment_id="SHP-12345", colour="red")
    assert format_metadata(meta) == ("shipment_id=SHP-12345; image_id=img_0042.png; damage_type=dent; severity=high; "
                                     "vendor=TestCo; shipment_stage=transit; colour=red")


def test_format_metadata_leaves_out_none():
    s = format_metadata(dict(shipment_id="S1", damage_type="dent", severity="low", vendor=None))
    assert s == "shipment_id=S1; damage_type=dent; severity=low"


@pytest.mark.parametrize("value", [
    "Acme; Sons",
    "a=b",
    "back\\slash",
    "ends with backslash\\",
    "\\;=\\=;",
    "x = y; z\\w",
    "=leading",
    ";",
    "\\",
    "Café ünïcode",
])
def test_metadata_round_trip_special_characters(value):
    meta = dict(shipment_id="SHP-1", image_id="img_1.png", damage_type="dent", severity="low",
                vendor=value, shipment_stage=value, notes=value)
    line = format_metadata(meta)
    assert "\n" not in line
    assert parse_metadata(line) == meta


def test_metadata_round_trip_bundled(bundled):
    for row in bundled["train"][:200]:
        assert format_metadata(parse_metadata(row["input"])) == row["input"]


@pytest.mark.parametrize("missing", REQUIRED_FIELDS)
def test_format_metadata_missing_required_field_named(missing):
    meta = dict(shipment_id="S1", damage_type="dent", severity="low", vendor="TestCo")
    del meta[missing]
    with pytest.raises(MetadataError, match=missing):
        format_metadata(meta)
    meta[missing] = "   "                                   # blank counts as missing
    with pytest.raises(MetadataError, match=missing):
        format_metadata(meta)


@pytest.mark.parametrize("missing", REQUIRED_FIELDS)
def test_parse_metadata_missing_required_field_named(missing):
    meta = dict(shipment_id="S1", damage_type="dent", severity="low", vendor="TestCo")
    line = "; ".join(f"{k}={v}" for k, v in meta.items() if k != missing)
    with pytest.raises(MetadataError, match=missing):
        parse_metadata(line)
    assert missing not in parse_metadata(line, require=False)


@pytest.mark.parametrize("missing", REQUIRED_FIELDS)
@pytest.mark.parametrize("blank", ["", "   "])
def test_parse_metadata_empty_required_value_named(missing, blank):
    "`severity=` (the key with no value) is as missing as no key at all: refused, naming the field, in parsing and in data."
    meta = dict(shipment_id="S1", damage_type="dent", severity="low", vendor="TestCo")
    line = "; ".join(f"{k}={blank if k == missing else v}" for k, v in meta.items())
    with pytest.raises(MetadataError, match=f"missing required field.*{missing}"):
        parse_metadata(line)
    assert parse_metadata(line, require=False)[missing] == ""
    assert check_record({"input": line, "output": "A report."}) == ("input", f"missing required field(s): {missing}")


@pytest.mark.parametrize("text,needle", [
    ("shipment_id=S1; damage_type=dent; severity=low; vendor", "vendor"),        # not key=value
    ("shipment_id=S1; damage_type=dent; severity=low; severity=high", "severity"),  # repeated field
    ("shipment_id=S1; damage_type=dent; severity=low; =x", "empty field name"),
])
def test_parse_metadata_bad_segments(text, needle):
    with pytest.raises(MetadataError, match=needle):
        parse_metadata(text)


@pytest.mark.parametrize("meta,needle", [
    (dict(shipment_id="S1", damage_type="dent", severity="low", vendor="two\nlines"), "vendor"),
    (dict(shipment_id="S1", damage_type="dent", severity="low", vendor=["a"]), "vendor"),
    ({"shipment_id": "S1", "damage_type": "dent", "severity": "low", "bad-key": "x"}, "bad-key"),
])
def test_format_metadata_bad_values(meta, needle):
    with pytest.raises(MetadataError, match=needle):
        format_metadata(meta)


def test_unknown_fields():
    assert unknown_fields(parse_metadata("shipment_id=S; damage_type=d; severity=low; colour=red")) == ["colour"]


# ---------------------------------------------------------------- the bundled dataset

def test_generate_dataset_split_sizes(bundled):
    assert {k: len(v) for k, v in bundled.items()} == {"train": 5289, "validation": 661, "test": 662}
    assert SPLIT_SIZES == {"train": 5289, "validation": 661, "test": 662}


def test_generate_dataset_same_seed_same_data(bundled):
    assert generate_dataset(42) == bundled


def test_generate_dataset_other_seed_differs():
    sizes = {"train": 30, "validation": 5, "test": 5}
    a, b = generate_dataset(1, sizes), generate_dataset(2, sizes)
    assert a == generate_dataset(1, sizes)
    assert {k: len(v) for k, v in b.items()} == sizes
    assert a["train"] != b["train"]
    assert {r["input"] for r in a["train"]} != {r["input"] for r in b["train"]}


def test_generate_dataset_no_repeated_pair(bundled):
    pairs = [(r["input"], r["output"]) for rows in bundled.values() for r in rows]
    assert len(set(pairs)) == len(pairs)


def test_generate_dataset_no_input_in_two_splits(bundled):
    inputs = {k: {r["input"] for r in v} for k, v in bundled.items()}
    assert not inputs["train"] & inputs["validation"]
    assert not inputs["train"] & inputs["test"]
    assert not inputs["validation"] & inputs["test"]


def test_generate_dataset_report_length(bundled):
    words = [len(r["output"].split()) for rows in bundled.values() for r in rows]
    assert 20 <= min(words) and max(words) <= 60, (min(words), max(words))


def test_generate_dataset_rows_are_valid_and_consistent(bundled):
    for rows in bundled.values():
        for r in rows[:300]:
            assert set(r) == {"input", "output"}
            assert check_record(r) is None
            meta = parse_metadata(r["input"])
            assert meta["shipment_id"] in r["output"]
            assert meta["severity"] in ("low", "medium", "high")


def test_generate_dataset_covers_every_missing_optional_pattern(bundled):
    "Each optional field is missing alone and together with the others, in every split, often enough to learn from."
    from itertools import combinations
    opt = ("image_id", "vendor", "shipment_stage")
    patterns = {c for k in range(4) for c in combinations(opt, k)}
    for split, rows in bundled.items():
        seen = {}
        for r in rows:
            meta = parse_metadata(r["input"])
            gone = tuple(f for f in opt if f not in meta)
            seen[gone] = seen.get(gone, 0) + 1
        assert set(seen) == patterns, split
        assert min(seen.values()) >= (100 if split == "train" else 10), (split, seen)
        assert 0.6 <= seen[()] / len(rows) <= 0.8, (split, seen[()])


def test_generate_dataset_references_never_mention_an_absent_fact(bundled):
    "Without a vendor, photo id or stage in the input, the reference names none: no vendor, no image id, no stage or liable party."
    import re
    from claim_t5.synth import SHIPMENT_STAGES, VENDORS
    stage_words = [w for where, party in SHIPMENT_STAGES.values() for w in (where, party)]
    checked = {"vendor": 0, "image_id": 0, "shipment_stage": 0}
    for rows in bundled.values():
        for r in rows:
            meta, out = parse_metadata(r["input"]), r["output"]
            if "vendor" not in meta:
                checked["vendor"] += 1
                assert not [v for v in VENDORS if v in out] and " from " not in out, out
            if "image_id" not in meta:
                checked["image_id"] += 1
                assert not re.search(r"img_\d+", out) and "attached" not in out and "documents" not in out, out
            if "shipment_stage" not in meta:
                checked["shipment_stage"] += 1
                assert not [w for w in stage_words if w in out], out
            for f in ("vendor", "image_id"):  # and present facts are stated verbatim
                if f in meta: assert meta[f] in out, (f, out)
    assert min(checked.values()) > 500, checked


def test_write_bundled_dataset_files(tmp_path, bundled):
    paths = write_bundled_dataset(tmp_path/"data")
    assert {k: Path(p).name for k, p in paths.items()} == SPLIT_FILES
    for split, p in paths.items():
        lines = Path(p).read_text(encoding="utf-8").splitlines()
        assert len(lines) == SPLIT_SIZES[split]
        assert json.loads(lines[0]) == bundled[split][0]
    assert not list((tmp_path/"data").glob("*.tmp"))


def test_load_claim_data_from_written_files(bundled_dir, bundled):
    from datasets import DatasetDict
    dsd = load_claim_data(bundled_dir)
    assert isinstance(dsd, DatasetDict)
    assert set(dsd) == {"train", "validation", "test"}
    assert {k: len(v) for k, v in dsd.items()} == SPLIT_SIZES
    for split in dsd:
        assert dsd[split].column_names == (["input", "output"] if split == "train" else ["input", "output", "references"])
    assert dsd["validation"][0] == {**bundled["validation"][0], "references": [bundled["validation"][0]["output"]]}
    assert dsd["test"][-1] == {**bundled["test"][-1], "references": [bundled["test"][-1]["output"]]}


def test_load_claim_data_default_is_bundled():
    dsd = load_claim_data()
    assert {k: len(v) for k, v in dsd.items()} == SPLIT_SIZES


def test_bundled_files_validate_clean(bundled_dir):
    good, problems = validate_splits(find_split_files(bundled_dir))
    assert problems == []
    assert {k: len(v) for k, v in good.items()} == SPLIT_SIZES


# ---------------------------------------------------------------- bad data: one problem each, with file, line, field

LONG_INPUT = good_input(9, notes="x" * 1000)      # valid metadata, longer than max_input_chars=1000

BAD_LINES = {  # case -> (line 2 of a train file, expected field, expected substring of reason)
    "malformed_json": (b'{"input": "shipment_id=S; damage_type=dent; severity=low", "output": ', None, "malformed JSON"),
    "input_missing": (jline({"output": "A dent."}), "input", "missing"),
    "output_not_string": (jline({"input": good_input(9), "output": 42}), "output", "expected a string"),
    "output_empty": (jline({"input": good_input(9), "output": "   "}), "output", "empty text"),
    "input_missing_severity": (jline({"input": "shipment_id=SHP-9; damage_type=dent", "output": "A dent."}),
                               "input", "severity"),
    "input_too_long": (jline({"input": LONG_INPUT, "output": "A dent."}), "input", "too long"),
    "duplicate_pair": (jline(good_rec(1)), None, "duplicate of line 1"),
    "non_utf8": (b'{"input": "shipment_id=SHP-9; damage_type=dent; severity=low", "output": "caf\xe9"}', None, "UTF-8"),
    "json_list": (jline(["shipment_id=SHP-9; damage_type=dent; severity=low", "A dent."]), None, "JSON object"),
}


@pytest.fixture(params=sorted(BAD_LINES))
def bad_file(request, tmp_path):
    # A train file whose line 2 is one bad case and lines 1 and 3 are good; yields (path, field, reason substring).
    line, fld, reason = BAD_LINES[request.param]
    path = write_lines(tmp_path/"train.jsonl", [good_rec(1), line, good_rec(3)])
    return path, fld, reason


def test_bad_line_problem_names_file_line_field(bad_file):
    path, fld, reason = bad_file
    good, problems = validate_splits({"train": path})
    assert len(problems) == 1, [str(p) for p in problems]
    p = problems[0]
    assert isinstance(p, Problem)
    assert (p.file, p.line, p.field) == (str(path), 2, fld)
    assert reason in p.reason
    assert good["train"] == [good_rec(1), good_rec(3)]


def test_bad_line_strict_raises_with_file_line(bad_file):
    path, fld, reason = bad_file
    with pytest.raises(DataValidationError) as e:
        load_claim_data(path)
    assert f"{path}:2" in str(e.value)
    assert reason in str(e.value)
    if fld:
        assert f"'{fld}'" in str(e.value)
    assert [(p.file, p.line, p.field) for p in e.value.problems] == [(str(path), 2, fld)]


def test_bad_line_lenient_drops_and_reports(bad_file):
    path, fld, reason = bad_file
    with pytest.warns(UserWarning, match="dropped 1"):
        dsd = load_claim_data(path, strict=False)
    assert dsd["train"].to_list() == [good_rec(1), good_rec(3)]
    report = [json.loads(x) for x in (path.parent/"data_problems.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(report) == 1
    assert (report[0]["file"], report[0]["line"], report[0]["field"]) == (str(path), 2, fld)
    assert reason in report[0]["reason"]


def test_overlong_input_respects_max_input_chars(tmp_path):
    path = write_lines(tmp_path/"train.jsonl", [good_rec(1), {"input": LONG_INPUT, "output": "x"}])
    with pytest.warns(UserWarning, match=r"not in the schema: 'notes' \(1 rows, first at train.jsonl:2\)"):  # LONG_INPUT's filler field
        assert validate_splits({"train": path}, max_input_chars=5000)[1] == []
        probs = validate_splits({"train": path}, max_input_chars=1000)[1]
    assert [(p.line, p.field) for p in probs] == [(2, "input")]
    assert f"{len(LONG_INPUT)} characters > 1000" in probs[0].reason


def test_overlong_output(tmp_path):
    path = write_lines(tmp_path/"train.jsonl", [good_rec(1), {"input": good_input(2), "output": "y" * 2001}])
    probs = validate_splits({"train": path})[1]
    assert [(p.line, p.field) for p in probs] == [(2, "output")]
    assert "too long" in probs[0].reason


def test_leakage_validation_input_in_train(tmp_path):
    d = tmp_path/"data"
    train = write_lines(d/"clean_train.jsonl", [good_rec(1), good_rec(2), good_rec(3)])
    val = write_lines(d/"clean_val.jsonl", [good_rec(10), {"input": good_input(3), "output": "Another report."}])
    test = write_lines(d/"clean_test.jsonl", [good_rec(20)])
    good, problems = validate_splits(find_split_files(d))
    assert len(problems) == 1
    p = problems[0]
    assert (p.file, p.line, p.field) == (str(val), 2, "input")
    assert "leakage" in p.reason
    assert "clean_train.jsonl:3" in p.reason                # points at the train line it leaks from
    assert good["validation"] == [good_rec(10)]
    with pytest.raises(DataValidationError) as e:
        load_claim_data(d)
    assert f"{val}:2" in str(e.value) and "leakage" in str(e.value)
    assert train.exists() and test.exists()


def test_leakage_into_test_split(tmp_path):
    d = tmp_path/"data"
    write_lines(d/"clean_train.jsonl", [good_rec(1), good_rec(2)])
    write_lines(d/"clean_val.jsonl", [good_rec(10)])
    test = write_lines(d/"clean_test.jsonl", [good_rec(20), good_rec(1)])
    problems = validate_splits(find_split_files(d))[1]
    assert [(p.file, p.line, p.field) for p in problems] == [(str(test), 2, "input")]


def test_duplicate_reports_first_line_and_keeps_first(tmp_path):
    path = write_lines(tmp_path/"train.jsonl", [good_rec(1), good_rec(2), b"", good_rec(2), good_rec(2)])
    good, problems = validate_splits({"train": path})
    assert [(p.line, p.reason) for p in problems] == [(4, "duplicate of line 2"), (5, "duplicate of line 2")]
    assert good["train"] == [good_rec(1), good_rec(2)]


def test_duplicate_means_same_input_and_same_output(tmp_path):
    "Only a repeated (input, output) pair is a duplicate: one input with two reports, or one report for two inputs, is kept."
    same_input_other_report = {"input": good_input(1), "output": "Another report of shipment SHP-1."}
    same_report_other_input = {"input": good_input(2), "output": good_rec(1)["output"]}
    path = write_lines(tmp_path/"train.jsonl", [good_rec(1), same_input_other_report, same_report_other_input, good_rec(1)])
    good, problems = validate_splits({"train": path})
    assert [(p.line, p.field, p.reason) for p in problems] == [(4, None, "duplicate of line 1")]
    assert good["train"] == [good_rec(1), same_input_other_report, same_report_other_input]


def test_several_problems_all_reported_in_strict_message(tmp_path):
    path = write_lines(tmp_path/"train.jsonl", [good_rec(1), b"{oops", good_rec(3), {"input": good_input(4)}])
    with pytest.raises(DataValidationError) as e:
        load_claim_data(path)
    msg = str(e.value)
    assert "2 problem(s)" in msg
    assert f"{path}:2" in msg and f"{path}:4" in msg
    assert f"{path}:4: field 'output': missing" in msg


# ---------------------------------------------------------------- CSV files

def write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="")
    return path


def test_csv_happy_path(tmp_path):
    rows = [good_rec(1, "Shipment SHP-1 was dented, badly; see photo."),
            good_rec(2, 'A "quoted" remark, with commas.'),
            {"input": good_input(3, vendor="Acme Logistics"), "output": "Line one.\nLine two."}]
    import csv
    path = tmp_path/"train.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["input", "output", "extra_column"])
        w.writeheader()
        for r in rows: w.writerow({**r, "extra_column": "ignored"})
    good, problems = validate_splits({"train": path})
    assert problems == []
    assert good["train"] == rows
    assert load_claim_data(path)["train"].to_list() == rows


def test_csv_folder_of_splits(tmp_path):
    d = tmp_path/"data"
    for split, stem, start in (("train", "train", 1), ("validation", "val", 100), ("test", "test", 200)):
        write_csv(d/f"{stem}.csv", "input,output\n" +
                  "".join(f'"{good_input(n)}",report {n}\n' for n in range(start, start + 3)))
    dsd = load_claim_data(d)
    assert {k: len(v) for k, v in dsd.items()} == {"train": 3, "validation": 3, "test": 3}
    assert dsd["validation"][0] == {"input": good_input(100), "output": "report 100", "references": ["report 100"]}


def test_csv_missing_output_column(tmp_path):
    path = write_csv(tmp_path/"train.csv", f"input,report\n\"{good_input(1)}\",A dent.\n")
    good, problems = validate_splits({"train": path})
    assert [(p.file, p.line, p.field) for p in problems] == [(str(path), 1, "output")]
    assert "output" in problems[0].reason and "column" in problems[0].reason
    with pytest.raises(DataValidationError, match=f"{path}:1"):
        load_claim_data(path)


def test_csv_wrong_number_of_columns(tmp_path):
    path = write_csv(tmp_path/"train.csv", "input,output\n"
                     f"\"{good_input(1)}\",ok\n"
                     f"\"{good_input(2)}\",too,many\n"
                     f"\"{good_input(3)}\"\n"
                     f"\"{good_input(4)}\",ok\n")
    good, problems = validate_splits({"train": path})
    assert [(p.file, p.line, p.field) for p in problems] == [(str(path), 3, None), (str(path), 4, None)]
    assert all("wrong number of columns" in p.reason for p in problems)
    assert [r["input"] for r in good["train"]] == [good_input(1), good_input(4)]
    with pytest.raises(DataValidationError) as e:
        load_claim_data(path)
    assert f"{path}:3" in str(e.value) and f"{path}:4" in str(e.value)


def test_csv_non_utf8_names_file_and_line(tmp_path):
    path = tmp_path/"train.csv"
    path.write_bytes(f"input,output\n\"{good_input(1)}\",ok\n\"{good_input(2)}\",caf\xe9\n".encode("latin-1"))
    problems = validate_splits({"train": path})[1]
    assert [(p.file, p.line) for p in problems] == [(str(path), 3)]
    assert "UTF-8" in problems[0].reason


def csv_with_bad_line_3(path: Path, case: str) -> Path:
    "A CSV file whose data rows on lines 2 and 4 are good and whose line 3 is bad in the way `case` says."
    if case == "malformed_quote":   # text after a closing quote
        path.write_bytes(f"input,output\n\"{good_input(1)}\",ok\n\"{good_input(2)}\"x,bad\n\"{good_input(3)}\",ok\n"
                         .encode("utf-8"))
    else:                           # a Latin-1 byte
        path.write_bytes(f"input,output\n\"{good_input(1)}\",ok\n\"{good_input(2)}\",caf\xe9\n\"{good_input(3)}\",ok\n"
                         .encode("latin-1"))
    return path


def test_csv_malformed_quote_names_its_line(tmp_path):
    path = csv_with_bad_line_3(tmp_path/"train.csv", "malformed_quote")
    problems = validate_splits({"train": path})[1]
    assert [(p.file, p.line, p.field) for p in problems] == [(str(path), 3, None)]
    assert "malformed CSV" in problems[0].reason


@pytest.mark.parametrize("case", ["malformed_quote", "non_utf8"])
def test_csv_lenient_loses_no_row(tmp_path, case):
    "Lenient mode: each CSV row is either kept or reported; a bad row must not take good rows with it."
    path = csv_with_bad_line_3(tmp_path/"train.csv", case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try: kept = [r["input"] for r in load_claim_data(path, strict=False)["train"]]
        except DataValidationError: kept = []            # "no usable rows": everything was dropped
    report = read_report(tmp_path/"data_problems.jsonl")
    assert len(kept) + len(report) == 3, f"kept {len(kept)} + reported {len(report)} of 3 rows"
    assert kept == [good_input(1), good_input(3)]


# ---------------------------------------------------------------- lenient mode: nothing lost

def make_messy_folder(d: Path) -> dict:
    "Three split files mixing good rows with every kind of bad row; returns the expected bad (file, line) set etc."
    train = write_lines(d/"clean_train.jsonl", [
        good_rec(1),                                                   # 1
        b"{not json",                                                  # 2 bad
        {"output": "x"},                                               # 3 bad
        good_rec(4),                                                   # 4
        {"input": good_input(5), "output": 5},                         # 5 bad
        b"",                                                           # 6 blank: not a row
        {"input": good_input(7), "output": ""},                        # 7 bad
        {"input": "shipment_id=SHP-8; damage_type=dent", "output": "x"},  # 8 bad
        {"input": LONG_INPUT, "output": "x"},                          # 9 bad
        good_rec(4),                                                   # 10 bad: duplicate of 4
        b"\xff\xfe garbage",                                           # 11 bad
        ["a", "list"],                                                 # 12 bad
        good_rec(13),                                                  # 13
    ])
    val = write_lines(d/"clean_val.jsonl", [good_rec(100), {"input": good_input(13), "output": "other"}, good_rec(102)])
    test = write_csv(d/"clean_test.csv", "input,output\n"
                     f"\"{good_input(200)}\",ok\n"
                     f"\"{good_input(201)}\",ok,extra\n"
                     f"\"{good_input(202)}\",ok\n")
    bad = {(str(train), n) for n in (2, 3, 5, 7, 8, 9, 10, 11, 12)} | {(str(val), 2), (str(test), 3)}
    return dict(files=[train, val, test], bad=bad, good={"train": 3, "validation": 2, "test": 2})


def read_report(path: Path) -> list:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_lenient_default_report_nothing_lost(tmp_path):
    d = tmp_path/"data"
    messy = make_messy_folder(d)
    with pytest.raises(DataValidationError) as e:                      # strict: raises, names every problem
        load_claim_data(d)
    assert {(p.file, p.line) for p in e.value.problems} == messy["bad"]
    assert not (d/"data_problems.jsonl").exists()

    with pytest.warns(UserWarning, match=f"dropped {len(messy['bad'])}"):
        dsd = load_claim_data(d, strict=False)
    report = read_report(d/"data_problems.jsonl")
    assert {(r["file"], r["line"]) for r in report} == messy["bad"]
    assert len(report) == len(messy["bad"])
    for r in report:
        assert set(r) >= {"file", "line", "field", "reason", "record"}
        assert r["reason"]
    assert {k: len(v) for k, v in dsd.items()} == messy["good"]
    assert sum(len(v) for v in dsd.values()) + len(report) == count_rows(messy["files"])
    by_line = {(Path(r["file"]).name, r["line"]): r for r in report}
    assert by_line[("clean_train.jsonl", 5)]["record"] == {"input": good_input(5), "output": 5}
    assert by_line[("clean_train.jsonl", 10)]["reason"] == "duplicate of line 4"
    assert "leakage" in by_line[("clean_val.jsonl", 2)]["reason"]


def test_lenient_custom_report_path(tmp_path):
    d = tmp_path/"data"
    messy = make_messy_folder(d)
    report_path = tmp_path/"reports"/"dropped.jsonl"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dsd = load_claim_data(d, strict=False, report_path=report_path)
    assert not (d/"data_problems.jsonl").exists()
    report = read_report(report_path)
    assert {(r["file"], r["line"]) for r in report} == messy["bad"]
    assert sum(len(v) for v in dsd.values()) + len(report) == count_rows(messy["files"])


def test_lenient_single_file_report_next_to_it(tmp_path):
    path = write_lines(tmp_path/"mine.jsonl", [good_rec(1), b"[", good_rec(3)])
    with pytest.warns(UserWarning):
        dsd = load_claim_data(path, strict=False)
    assert len(dsd["train"]) == 2
    assert [r["line"] for r in read_report(tmp_path/"data_problems.jsonl")] == [2]


def test_lenient_no_usable_rows_is_error(tmp_path):
    path = write_lines(tmp_path/"train.jsonl", [b"{", {"output": "x"}])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataValidationError, match="no usable rows"):
            load_claim_data(path, strict=False)


# ---------------------------------------------------------------- token-based length check

def test_token_overlong_input_with_tokenizer(tmp_path):
    long_in = good_input(2, vendor="Acme Logistics Worldwide", shipment_stage="transit")   # 7 words
    path = write_lines(tmp_path/"train.jsonl", [good_rec(1), {"input": long_in, "output": "A dent."}, good_rec(3)])
    cfg = ClaimT5Config(max_input_length=5)
    assert validate_splits({"train": path}, cfg=cfg)[1] == []                  # no tokenizer: no token check
    good, problems = validate_splits({"train": path}, tokenizer=WordTokenizer(), cfg=cfg)
    assert [(p.file, p.line, p.field) for p in problems] == [(str(path), 2, "input")]
    assert "7 tokens > max_input_length 5" in problems[0].reason
    assert len(good["train"]) == 2
    with pytest.raises(DataValidationError, match=f"{path}:2"):
        load_claim_data(path, tokenizer=WordTokenizer(), cfg=cfg)
    assert len(load_claim_data(path, tokenizer=WordTokenizer(), cfg=ClaimT5Config(max_input_length=7))["train"]) == 3


def test_token_overlong_output_with_tokenizer(tmp_path):
    path = write_lines(tmp_path/"train.jsonl", [good_rec(1, "short report"), good_rec(2, "one two three four five")])
    good, problems = validate_splits({"train": path}, tokenizer=WordTokenizer(), cfg=ClaimT5Config(max_target_length=4))
    assert [(p.line, p.field) for p in problems] == [(2, "output")]
    assert "5 tokens > max_target_length 4" in problems[0].reason


class ListWordTokenizer:
    "Stand-in for a Hugging Face tokenizer called on a list of texts (as data_stats does): one token per word."
    def __call__(self, texts, **kw): return {"input_ids": [t.split() for t in texts]}


@pytest.mark.parametrize("n_words,cut", [(6, False), (7, True)])
def test_token_limit_boundary(tmp_path, n_words, cut):
    "A text of exactly max_input_length / max_target_length tokens fits; one token more is too long (no off-by-one)."
    text_in = good_input(1, vendor=" ".join(["V"] * (n_words - 3)))            # good_input(1, vendor=...) has 3 + k words
    assert len(text_in.split()) == n_words
    text_out = " ".join(["word"] * n_words)
    cfg = ClaimT5Config(max_input_length=6, max_target_length=6)
    for rec, fld in (({"input": text_in, "output": "A dent."}, "input"), ({"input": good_input(2), "output": text_out}, "output")):
        path = write_lines(tmp_path/f"{fld}.jsonl", [rec])
        problems = validate_splits({"train": path}, tokenizer=WordTokenizer(), cfg=cfg)[1]
        assert [p.field for p in problems] == ([fld] if cut else []), (fld, problems)
    from datasets import Dataset, DatasetDict
    from claim_t5.data import data_stats
    dsd = DatasetDict({"train": Dataset.from_list([{"input": text_in, "output": text_out},
                                                   {"input": good_input(3), "output": "A dent."}])})
    row = data_stats(dsd, ListWordTokenizer(), cfg).loc["train"]
    assert (row["inputs_truncated"], row["outputs_truncated"]) == ((1, 1) if cut else (0, 0))


# ---------------------------------------------------------------- finding split files

def test_find_split_files(tmp_path):
    write_lines(tmp_path/"train.jsonl", [good_rec(1)])
    write_lines(tmp_path/"dev.jsonl", [good_rec(2)])
    assert find_split_files(tmp_path) == {"train": tmp_path/"train.jsonl", "validation": tmp_path/"dev.jsonl"}
    assert find_split_files(tmp_path/"train.jsonl") == {"train": tmp_path/"train.jsonl"}
    write_lines(tmp_path/"clean_train.jsonl", [good_rec(1)])
    with pytest.raises(ValueError, match="train"):
        find_split_files(tmp_path)


def test_find_split_files_missing(tmp_path):
    with pytest.raises(FileNotFoundError):
        find_split_files(tmp_path/"nowhere")
    with pytest.raises(FileNotFoundError):
        find_split_files(tmp_path)                                             # empty folder
    with pytest.raises(FileNotFoundError):
        read_records(tmp_path/"none.jsonl")


# ---------------------------------------------------------------- ROUGE

def test_rouge_identical_is_one():
    assert rouge_scores(["the cat sat on the mat"], ["the cat sat on the mat"]) == {k: 1.0 for k in ROUGE_KEYS}


def test_rouge_disjoint_is_zero():
    assert rouge_scores(["a b c"], ["x y z"]) == {k: 0.0 for k in ROUGE_KEYS}


def test_rouge_known_values():
    r = rouge_scores(["the cat sat on the mat"], ["the cat lay on the mat"])
    assert r["rouge1"] == pytest.approx(5/6)
    assert r["rouge2"] == pytest.approx(3/5)
    assert r["rougeL"] == pytest.approx(5/6)
    assert r["rougeLsum"] == pytest.approx(5/6)


def test_rouge_is_f_measure():
    # prediction "the cat" against a 6-word reference: precision 1, recall 1/3, F = 2PR/(P+R) = 0.5
    r = rouge_scores(["the cat"], ["the cat sat on the mat"])
    assert r["rouge1"] == pytest.approx(0.5)
    assert r["rouge2"] == pytest.approx(2 * 1 * (1/5) / (1 + 1/5))
    assert r["rougeL"] == pytest.approx(0.5)


def test_rouge_mean_over_examples():
    preds = ["the cat sat on the mat", "a b c", "the cat sat on the mat"]
    refs = ["the cat sat on the mat", "x y z", "the cat lay on the mat"]
    per = rouge_per_example(preds, refs)
    assert [round(x["rouge1"], 6) for x in per] == [1.0, 0.0, round(5/6, 6)]
    r = rouge_scores(preds, refs)
    assert r["rouge1"] == pytest.approx((1 + 0 + 5/6) / 3)
    assert r["rouge2"] == pytest.approx((1 + 0 + 3/5) / 3)


def test_rouge_deterministic(bundled):
    refs = [r["output"] for r in bundled["test"][:50]]
    preds = [r["output"] for r in bundled["validation"][:50]]
    first = rouge_scores(preds, refs)
    assert rouge_scores(preds, refs) == first
    assert rouge_scores(list(reversed(preds)), list(reversed(refs))) == pytest.approx(first)
    assert all(0 < first[k] < 1 for k in ROUGE_KEYS)


def test_rouge_length_mismatch_and_empty():
    with pytest.raises(ValueError):
        rouge_scores(["a"], ["a", "b"])
    assert rouge_scores([], []) == {k: 0.0 for k in ROUGE_KEYS}


# ---------------------------------------------------------------- the claim_t5_data console script

def run_cli(*args):
    return conftest_run_cli("claim_t5_data", *args)


def test_cli_is_installed():
    assert CLI.is_file()


def test_cli_out_writes_three_files(tmp_path):
    res = run_cli("--out", tmp_path/"out")
    assert res.returncode == 0, res.stderr
    for split, name in SPLIT_FILES.items():
        p = tmp_path/"out"/name
        assert len(p.read_text(encoding="utf-8").splitlines()) == SPLIT_SIZES[split]


def test_cli_check_good_data(bundled_dir):
    res = run_cli("--check", bundled_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "no problems found" in res.stdout
    assert "5289 good rows" in res.stdout


def test_cli_check_bad_file(tmp_path):
    path = write_lines(tmp_path/"train.jsonl", [good_rec(1), b"{not json", good_rec(3),
                                                {"input": good_input(4), "output": 4}, good_rec(1)])
    res = run_cli("--check", path)
    assert res.returncode != 0
    for line in (2, 4, 5):
        assert f"{path}:{line}:" in res.stdout
    assert f"{path}:1:" not in res.stdout and f"{path}:3:" not in res.stdout
    assert "field 'output'" in res.stdout
    assert "3 problem(s)" in res.stderr


def test_cli_check_missing_path(tmp_path):
    res = run_cli("--check", tmp_path/"nowhere")
    assert res.returncode != 0
    assert "nowhere" in res.stderr


def test_cli_no_arguments():
    res = run_cli()
    assert res.returncode != 0
    assert "--out" in res.stderr


def test_test_input_also_in_validation_is_leakage(tmp_path):
    rows = generate_dataset(sizes={"train": 3, "validation": 2, "test": 2})
    rows["test"].append(rows["validation"][1])
    for split, name in SPLIT_FILES.items(): write_jsonl(rows[split], tmp_path/name)
    good, problems = validate_splits(find_split_files(tmp_path))
    assert [(Path(p.file).name, p.line, p.field) for p in problems] == [("clean_test.jsonl", 3, "input")]
    assert "clean_val.jsonl:2" in problems[0].reason and len(good["test"]) == 2


def test_csv_blank_line_inside_a_quoted_field_is_kept(tmp_path):
    p = tmp_path/"train.csv"
    p.write_text('input,output\n"shipment_id=SHP-1; damage_type=dent; severity=low","Para one.\n\nPara two."\n\n'
                 '"shipment_id=SHP-2; damage_type=dent; severity=low",Two.\n')
    recs, problems = read_records(p)
    assert problems == [] and [r["output"] for _, r in recs] == ["Para one.\n\nPara two.", "Two."]
    assert [line for line, _ in recs] == [2, 6]
