"""Tests of claim_t5.inference: ClaimReportGenerator, merging the adapter, JSONL files of inputs, the HTTP service and
the claim_t5_generate CLI."""
import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import pytest
from conftest import cli_env, copy_model, run_cli

from claim_t5.schema import MetadataError, format_metadata
from claim_t5.data import load_claim_data
from claim_t5.inference import ClaimReportGenerator, generate_file
from claim_t5.fine_tuned import merge_adapter

CLI = Path(sys.executable).parent/"claim_t5_generate"

META = dict(shipment_id="SHP-12345", image_id="img_0042.png", damage_type="dent", severity="high", vendor="TestCo",
            shipment_stage="transit")
META_STR = "shipment_id=SHP-12345; image_id=img_0042.png; damage_type=dent; severity=high; vendor=TestCo; shipment_stage=transit"


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    "A private copy of the tiny model folder."
    return copy_model(tiny_model_dir, tmp_path_factory.mktemp("inference")/"fine_tuned_model")


@pytest.fixture(scope="module")
def gen(model_dir) -> ClaimReportGenerator:
    return ClaimReportGenerator(model_dir, device="cpu")


@pytest.fixture(scope="module")
def test_inputs() -> list:
    return list(load_claim_data()["test"].select(range(12))["input"])


@pytest.fixture(scope="module")
def one_by_one(gen, test_inputs) -> list:
    "The adapter's report for each test input, generated alone."
    return [gen(x) for x in test_inputs]


def write_lines(path: Path, lines) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------- ClaimReportGenerator

def test_generator_settings(gen):
    assert gen.cfg.is_tiny
    assert gen.gen_kwargs["do_sample"] is False
    assert "temperature" not in gen.gen_kwargs and "top_p" not in gen.gen_kwargs and "top_k" not in gen.gen_kwargs
    assert gen.gen_kwargs["num_beams"] == gen.cfg.gen_num_beams
    assert not gen.model.training
    assert "NOT flan-t5-base" in repr(gen)


def test_generator_overrides(model_dir):
    g = ClaimReportGenerator(model_dir, device="cpu", num_beams=2, max_new_tokens=7)
    assert g.gen_kwargs["num_beams"] == 2 and g.gen_kwargs["max_new_tokens"] == 7 and g.gen_kwargs["do_sample"] is False
    short = ClaimReportGenerator(model_dir, device="cpu", num_beams=1, max_new_tokens=7)(META)
    full = ClaimReportGenerator(model_dir, device="cpu", num_beams=1)(META)
    # greedy decoding: the first 7 tokens are the start of the full report
    assert short and len(short) <= len(full) and full.startswith(short)


def test_generator_merges_the_adapter_in_memory(model_dir, gen, test_inputs, one_by_one):
    # merged by default (faster); the adapter as loaded with merge=False: the same reports and verdicts
    assert not hasattr(gen.model, "peft_config") and gen.checker is not None  # the check survives the merge
    adapter = ClaimReportGenerator(model_dir, device="cpu", merge=False)
    assert hasattr(adapter.model, "peft_config")
    assert adapter(test_inputs) == one_by_one
    assert [r.facts for r in adapter(test_inputs)] == [r.facts for r in one_by_one]


def test_dict_and_string_give_the_same_report(gen):
    assert format_metadata(META) == META_STR
    report = gen(META)
    assert isinstance(report, str) and report
    assert gen(META_STR) == report
    # the order of the dict's keys and the spacing of the string do not matter
    assert gen(dict(reversed(list(META.items())))) == report
    assert gen(META_STR.replace("; ", ";")) == report


def test_missing_required_field(gen):
    with pytest.raises(MetadataError, match="severity"):
        gen(dict(shipment_id="SHP-1", damage_type="dent"))
    with pytest.raises(MetadataError, match="severity"):
        gen("shipment_id=SHP-1; damage_type=dent")
    with pytest.raises(MetadataError, match="damage_type"):
        gen(dict(shipment_id="SHP-1", severity="low", damage_type="   "))   # blank is missing


def test_bad_inputs_raise_metadata_errors(gen):
    with pytest.raises(MetadataError, match="input 1"):   # a list names the bad item
        gen([META, dict(shipment_id="SHP-1", damage_type="dent")])
    with pytest.raises(MetadataError):
        gen("just some free text")
    with pytest.raises(MetadataError, match="vendor"):
        gen({**META, "vendor": ["a", "list"]})


def test_unknown_fields_warn(gen):
    with pytest.warns(UserWarning, match="colour") as rec:
        report = gen({**META, "colour": "red"})
    assert any("colour" in str(w.message) for w in rec)
    assert isinstance(report, str)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        gen(META)
    assert not [w for w in rec if "unknown field" in str(w.message)]


def test_list_returns_list(gen):
    out = gen([META, META_STR])
    assert isinstance(out, list) and len(out) == 2
    assert out[0] == out[1] == gen(META)
    assert gen([]) == []
    assert isinstance(gen((META,)), list)


def test_batch_equals_one_by_one(model_dir, test_inputs, one_by_one):
    g = ClaimReportGenerator(model_dir, device="cpu", batch_size=5)   # 3 batches of mixed lengths
    batched = g(test_inputs)
    assert len(batched) == len(test_inputs)
    assert len(set(one_by_one)) > 1, "every input gives the same report: the comparison would show nothing"
    assert batched == one_by_one


# ---------------------------------------------------------------- merge_adapter

@pytest.fixture(scope="module")
def merged(model_dir, tmp_path_factory) -> Path:
    return merge_adapter(model_dir, tmp_path_factory.mktemp("merge")/"merged")


def test_merged_folder_contents(merged):
    names = {p.name for p in merged.iterdir()}
    assert {"model.safetensors", "config.json", "claim_t5_config.yaml"} <= names
    assert not {n for n in names if n.startswith("adapter_")}, names
    assert not {n for n in names if n.endswith(".bin") and n != "training_args.bin"}, names
    assert not merged.with_name(merged.name + ".tmp").exists()


def test_merged_loads_with_plain_transformers(merged, gen):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
    model = AutoModelForSeq2SeqLM.from_pretrained(str(merged)).eval()
    tok = AutoTokenizer.from_pretrained(str(merged))
    assert not hasattr(model, "peft_config")
    from claim_t5.facts import decode_generated, model_inputs  # plain transformers, plus the placeholders in and out
    from claim_t5.generate import ForbidPerRow, absent_placeholder_ids# and the sentinels the input cannot fill banned
    enc = tok(model_inputs([META_STR], gen.cfg), return_tensors="pt")
    out = model.generate(**enc, logits_processor=[ForbidPerRow(absent_placeholder_ids(tok, [META_STR], gen.cfg))], **gen.gen_kwargs)
    assert decode_generated(tok, out, [META_STR], gen.cfg)[0] == gen(META)


def test_merged_gives_the_same_reports(merged, test_inputs, one_by_one):
    g = ClaimReportGenerator(merged, device="cpu")
    assert not hasattr(g.model, "merge_and_unload")   # a plain model, not an adapter
    assert g(test_inputs) == one_by_one


def test_merge_a_merged_model_is_refused(merged, tmp_path):
    with pytest.raises(ValueError, match="not an adapter"):
        merge_adapter(merged, tmp_path/"again")
    assert not (tmp_path/"again").exists()


# ---------------------------------------------------------------- facts: verdicts and strict mode

def test_reports_carry_their_verdict(gen, test_inputs):
    from claim_t5.facts import FactChecker
    reports = gen(test_inputs[:4])
    checker = FactChecker.load(gen.model_dir)
    for inp, r in zip(test_inputs, reports):
        assert isinstance(r, str) and r.facts == checker.check(inp, str(r))


def test_unseen_category_value_is_flagged(gen):
    r = gen({**META, "severity": "banana"})
    assert r.facts["unseen"] == ["severity=banana"] and r.facts["fields"]["severity"] == "unseen" and not r.facts["ok"]


def test_strict_never_returns_a_failing_report(gen, test_inputs, monkeypatch):
    "Strict: a failing report is retried once with beam search; one still failing raises an error naming its facts."
    import claim_t5.inference as inf
    from claim_t5.facts import FactCheckError
    beams, real = [], inf.generate_reports
    def spy(*a, **kw): beams.append(kw["num_beams"]); return real(*a, **kw)
    monkeypatch.setattr(inf, "generate_reports", spy)
    inputs = test_inputs + [{**META, "severity": "banana"}]
    loose = gen(inputs)
    assert not all(r.facts["ok"] for r in loose)            # the seconds-trained model fails some: strict has work to do
    beams.clear()
    try:
        strict = gen(inputs, strict=True)
        assert all(r.facts["ok"] for r in strict)
    except FactCheckError as e:
        assert e.failures and all(problems for _, _, problems in e.failures)
        assert any("banana" in " ".join(problems) for _, _, problems in e.failures)
        for _, _, problems in e.failures[:10]: assert "; ".join(problems) in str(e)   # the message names the facts
    assert beams[0] == gen.gen_kwargs["num_beams"] and beams[1] >= 4   # greedy first, then the beam-search retry
    with pytest.raises(FactCheckError, match="severity"):
        gen({**META, "severity": "banana"}, strict=True)


# ---------------------------------------------------------------- generate_file

def test_generate_file_keeps_every_key(gen, tmp_path):
    lines = [{"input": META_STR, "id": 7, "customer": {"name": "Ann"}, "tags": ["a", "b"]},
             {"id": "x2", **dict(shipment_id="SHP-2", damage_type="crack", severity="low")},
             {"input": "shipment_id=SHP-3; damage_type=scratch; severity=medium; vendor=Globex"}]
    inp = write_lines(tmp_path/"in.jsonl", lines)
    out = generate_file(gen, inp, tmp_path/"out"/"reports.jsonl", progress=False)
    rows = [json.loads(x) for x in Path(out).read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(lines)
    for src, row in zip(lines, rows):
        for k, v in src.items():
            assert row[k] == v, k
        assert isinstance(row["report"], str) and row["report"]
        assert row["generated_at"]
        assert row["facts"]["ok"] in (True, False) and set(row["facts"]["fields"]) >= {"shipment_id", "severity"}
    assert rows[0]["report"] == gen(META_STR)
    assert rows[1]["report"] == gen("shipment_id=SHP-2; damage_type=crack; severity=low")
    assert rows[2]["report"] == gen("shipment_id=SHP-3; damage_type=scratch; severity=medium; vendor=Globex")
    assert not list((tmp_path/"out").glob("*.tmp"))


@pytest.mark.parametrize("bad,line,needle", [
    ('{"input": "shipment_id=SHP-9; damage_type=dent; severity=low"', 2, "malformed JSON"),
    ('{"input": "shipment_id=SHP-9; damage_type=dent"}', 2, "severity"),
    ('{"shipment_id": "SHP-9", "damage_type": "dent"}', 2, "severity"),
])
def test_generate_file_bad_line_writes_nothing(gen, tmp_path, bad, line, needle):
    inp = write_lines(tmp_path/"in.jsonl", [{"input": META_STR}, bad, {"input": META_STR}])
    out = tmp_path/"reports.jsonl"
    with pytest.raises(MetadataError) as e:
        generate_file(gen, inp, out, progress=False)
    msg = str(e.value)
    assert f"{inp}:{line}" in msg and needle in msg
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_generate_file_bad_line_leaves_existing_output(gen, tmp_path):
    inp = write_lines(tmp_path/"in.jsonl", [{"input": META_STR}, {"input": META_STR}, "{not json"])
    out = tmp_path/"reports.jsonl"
    out.write_text("previous results\n")
    with pytest.raises(MetadataError, match=":3:"):
        generate_file(gen, inp, out, progress=False)
    assert out.read_text() == "previous results\n"


def test_generate_file_missing_input_file(gen, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        generate_file(gen, tmp_path/"nope.jsonl", tmp_path/"out.jsonl", progress=False)
    assert not (tmp_path/"out.jsonl").exists()


# ---------------------------------------------------------------- the claim_t5_generate console script
# The runs go through the console script's `main` in this process (`conftest.run_cli`: same argument parser, exit
# codes and output), once per module; each test then checks one run. tests/test_cli.py starts the real entry points.

INTERACTIVE_LINES = ["shipment_id=SHP-1; damage_type=dent; severity=low",
                     "shipment_id=SHP-2; damage_type=crack",                      # bad: an error, then it goes on
                     "shipment_id=SHP-3; damage_type=scratch; severity=high; vendor=Globex"]


@pytest.fixture(scope="module")
def cli_runs(model_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("generate_cli")
    batch_in = write_lines(base/"in.jsonl", [{"input": META_STR, "id": 1}, {"input": INTERACTIVE_LINES[0], "id": 2},
                                             {"input": INTERACTIVE_LINES[2], "id": 3}])
    d = str(model_dir)
    runs = {
        "input": (["--model_dir", d, "--input", META_STR], None),
        "batch": (["--model_dir", d, "--batch", str(batch_in), "--output", str(base/"out.jsonl")], None),
        "interactive": (["--model_dir", d, "--interactive"], "\n".join(INTERACTIVE_LINES) + "\n\nshipment_id=SHP-4; damage_type=dent; severity=low\n"),
        "missing": (["--model_dir", d, "--input", "shipment_id=SHP-1; damage_type=dent"], None),
        "no_output": (["--model_dir", d, "--batch", str(batch_in)], None),
        "no_model_dir": (["--input", META_STR], None),
    }
    yield dict(batch_in=batch_in, batch_out=base/"out.jsonl",
               **{k: run_cli("claim_t5_generate", *args, input=stdin) for k, (args, stdin) in runs.items()})


def test_cli_input(cli_runs, gen):
    r = cli_runs["input"]
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == gen(META_STR)
    assert len(r.stdout.strip().splitlines()) == 1


def test_cli_batch(cli_runs, gen):
    r = cli_runs["batch"]
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(x) for x in cli_runs["batch_out"].read_text().splitlines()]
    src = [json.loads(x) for x in cli_runs["batch_in"].read_text().splitlines()]
    assert len(rows) == len(src) == 3
    assert [r_["id"] for r_ in rows] == [1, 2, 3]
    reports = gen([s["input"] for s in src])
    assert [r_["report"] for r_ in rows] == reports
    assert [r_["facts"] for r_ in rows] == [r_.facts for r_ in reports]   # a fact verdict per line
    assert all(r_["generated_at"] for r_ in rows)


def test_cli_interactive(cli_runs, gen):
    r = cli_runs["interactive"]
    assert r.returncode == 0, r.stderr[-2000:]
    # one report per good line, up to the empty line (the line after it is not read)
    assert r.stdout.strip().splitlines() == [gen(INTERACTIVE_LINES[0]), gen(INTERACTIVE_LINES[2])]
    assert "error:" in r.stderr and "severity" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_missing_required_field(cli_runs):
    r = cli_runs["missing"]
    assert r.returncode != 0
    assert "error:" in r.stderr and "severity" in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout.strip() == ""


def test_cli_batch_without_output(cli_runs):
    r = cli_runs["no_output"]
    assert r.returncode != 0
    assert "error:" in r.stderr and "--output" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_requires_model_dir(cli_runs):
    r = cli_runs["no_model_dir"]
    assert r.returncode != 0 and "--model_dir" in r.stderr and "Traceback" not in r.stderr
