"""Issue 11: any key=value dataset trains, evaluates and serves with a config change only.

A schema inferred from the data (`fields: auto`), validation against the user's schema, several references per input,
and a product-returns dataset (another schema, a key with a space) trained, evaluated and served end to end."""
import json
import sys
from pathlib import Path

import pytest

from claim_t5.config import FIELDS_FILE, ConfigError, make_config, quick_config
from claim_t5.data import (RETURN_FIELDS, SPLIT_FILES, DataValidationError, best_reference, field_evidence,
                           infer_fields, load_claim_data, reference_counts, resolve_fields,
                           returns_dataset, rouge_per_example, rouge_scores, validate_splits, write_jsonl)
from claim_t5.serve import request_model  # moved with the service (issue 30)

from conftest import run_cli

CLI = Path(sys.executable).parent/"claim_t5_data"


def write_splits(folder: Path, splits: dict) -> Path:
    for split, rows in splits.items(): write_jsonl(rows, folder/SPLIT_FILES[split])
    return folder


@pytest.fixture(scope="module")
def returns_dir(tmp_path_factory) -> Path:
    "The product-returns dataset (240/40/40 inputs, some validation/test inputs with two references), as files."
    return write_splits(tmp_path_factory.mktemp("returns"), returns_dataset())


# ---------------------------------------------------------------- fields: auto

def test_fields_auto_gives_expected_roles_on_made_up_data():
    # tickets: ticket_no unique (copy), agent a name from 30 (copy), priority 3 values repeated verbatim (copy however
    # few its values), queue reworded in the reports (category), "due date" optional, a key with a space, 2 values
    # repeated verbatim (copy), crm_ref
    # unique but never in the reports (not a copy field: nothing to copy)
    agents = [f"Agent {c}{d}" for c in "ABCDEF" for d in "xyzwv"]
    queue_words = {"billing": "money matters", "tech": "technical help"}
    inputs, outputs = [], []
    for i in range(300):
        meta = {"ticket_no": f"T{i:05d}", "agent": agents[i % 30], "priority": ("low", "mid", "high")[i % 3],
                "queue": ("billing", "tech")[i % 2], "crm_ref": f"CRM-{i * 7919 % 100000}"}
        if i % 4: meta["due date"] = ("Monday", "Friday")[i % 2]
        inputs.append("; ".join(f"{k}={v}" for k, v in meta.items()))
        outputs.append(f"Ticket {meta['ticket_no']} ({meta['priority']} priority) went to {meta['agent']} in "
                       f"{queue_words[meta['queue']]}." + (f" Due {meta['due date']}." if "due date" in meta else ""))
    evidence = {r["name"]: r for r in field_evidence(inputs, outputs, progress=False)}
    assert {k: (r["kind"], r["required"]) for k, r in evidence.items()} == {
        "ticket_no": ("copy", True), "agent": ("copy", True), "priority": ("copy", True),
        "queue": ("category", True), "crm_ref": ("category", True), "due date": ("copy", False)}
    assert evidence["due date"]["given"] == pytest.approx(225 / 300)
    assert evidence["queue"]["verbatim"] == 0.0 and evidence["agent"]["verbatim"] == 1.0
    assert [f["name"] for f in infer_fields(inputs, outputs, progress=False)] == list(evidence)


def test_fields_auto_on_returns_and_bundled_claims(returns_dir):
    cfg, evidence = resolve_fields(make_config("tiny", fields="auto"), returns_dir, progress=False)
    assert cfg.fields == RETURN_FIELDS
    cfg, _ = resolve_fields(make_config("tiny", fields="auto"), None, progress=False)   # the bundled claims: their schema,
    assert cfg.fields == [dict(f, kind="copy") if f["name"] == "severity" else f     # but severity (3 values, every
                          for f in make_config("tiny").fields]                        # report repeats it verbatim) is copied


def test_fields_auto_without_a_field_in_every_input_is_explained():
    with pytest.raises(ConfigError, match="every training input"):
        infer_fields(["a=1", "b=2"], ["x", "y"], progress=False)


def test_inferred_schema_written_edited_and_reused(returns_dir, tmp_path):
    out = tmp_path/"fields.yaml"
    r = run_cli("claim_t5_data", "--check", returns_dir, "--fields", "auto", "--fields_out", out)
    assert r.returncode == 0, r.stderr
    assert "return method" in r.stdout and "open set" in r.stdout                       # the table, printed
    assert "40 examples" in r.stdout                                                     # test: 40 inputs, more rows
    text = out.read_text().replace("{name: condition, required: false", "{name: condition, required: true")
    (tmp_path/"edited.yaml").write_text(text)                                            # a user's edit
    (tmp_path/"run.yaml").write_text("model_name: tiny\nfields: edited.yaml\n")
    cfg = make_config(tmp_path/"run.yaml")
    assert [f["required"] for f in cfg.fields if f["name"] == "condition"] == [True]
    with pytest.raises(DataValidationError, match=r"clean_train.jsonl:\d+: field 'input': missing required field\(s\): condition"):
        load_claim_data(returns_dir, cfg=cfg, progress=False)


# ---------------------------------------------------------------- validation against the user's schema

def test_missing_required_field_of_user_schema_named_with_file_and_line(tmp_path):
    rows = returns_dataset(sizes={"train": 6, "validation": 2, "test": 2}, second_reference=0)
    rows["train"][3] = {"input": "item=Blue Kettle; reason=late; refund=full", "output": "A late kettle."}
    rows["validation"][1] = {"input": "order_no=ORD-9; item=Rug; refund=none", "output": "A rug."}
    d = write_splits(tmp_path, rows)
    cfg = make_config("tiny", fields=RETURN_FIELDS)
    good, problems = validate_splits({s: d/f for s, f in SPLIT_FILES.items()}, cfg=cfg, progress=False)
    assert [(Path(p.file).name, p.line, p.field, p.reason) for p in problems] == [
        ("clean_train.jsonl", 4, "input", "missing required field(s): order_no"),
        ("clean_val.jsonl", 2, "input", "missing required field(s): reason")]
    with pytest.raises(DataValidationError, match="clean_train.jsonl:4: field 'input': missing required field"):
        load_claim_data(d, cfg=cfg, progress=False)
    # the claim schema would refuse every row for a shipment_id the returns never have
    assert len(validate_splits({"train": d/SPLIT_FILES["train"]}, progress=False)[1]) == 6


def test_unknown_field_is_warned_with_where(tmp_path):
    rows = returns_dataset(sizes={"train": 4, "validation": 1, "test": 1}, second_reference=0)
    rows["train"][2]["input"] += "; colour=red"
    d = write_splits(tmp_path, rows)
    with pytest.warns(UserWarning, match=r"'colour' \(1 rows, first at clean_train.jsonl:3\)"):
        validate_splits({"train": d/SPLIT_FILES["train"]}, cfg=make_config("tiny", fields=RETURN_FIELDS), progress=False)


# ---------------------------------------------------------------- several references per input

def test_repeated_inputs_in_test_are_one_example_with_all_references(tmp_path):
    inp = "order_no=ORD-1; item=Blue Kettle; reason=late; refund=full"
    train = [{"input": inp.replace("ORD-1", "ORD-2"), "output": "Order ORD-2 came back late; a full refund."}]
    test = [{"input": inp, "output": "The customer kept nothing and we paid nothing back for it."},  # first: far off
            {"input": inp, "output": "Order ORD-1 came back late; a full refund."},               # best: second
            {"input": inp, "output": "Order ORD-1 came back late; a full refund."}]               # same pair: duplicate
    d = write_splits(tmp_path, {"train": train, "test": test})
    good, problems = validate_splits({"train": d/SPLIT_FILES["train"], "test": d/SPLIT_FILES["test"]},
                                     cfg=make_config("tiny", fields=RETURN_FIELDS), progress=False)
    assert [(p.line, p.reason) for p in problems] == [(3, "duplicate of line 2")]
    assert len(good["test"]) == 1 and good["test"][0]["references"] == [test[0]["output"], test[1]["output"]]
    pred = "Order ORD-1 came back late; a full refund."
    refs = good["test"][0]["references"]
    assert rouge_scores([pred], [refs])["rougeL"] == 1.0                      # scored against the best reference
    assert rouge_scores([pred], [refs[0]])["rougeL"] < 0.3                    # the first alone would mark it down
    assert best_reference(pred, refs) == 1
    per = rouge_per_example([pred, pred], [refs, refs[0]])
    assert per[0]["rouge2"] == 1.0 and per[1]["rouge2"] < 0.2
    assert reference_counts([refs, [refs[0]]]) == {"1": 1, "2": 1}


# ---------------------------------------------------------------- the request model

def test_request_model_has_the_schema_fields():
    from pydantic import ValidationError
    Req = request_model(RETURN_FIELDS)
    props = Req.model_json_schema()["properties"]
    assert list(props) == [f["name"] for f in RETURN_FIELDS] and "shipment_id" not in props
    ok = Req.model_validate({"order_no": "ORD-1", "item": "Rug", "reason": "late", "refund": "full", "return method": "mail"})
    assert ok.model_dump(by_alias=True, exclude_none=True)["return method"] == "mail"
    with pytest.raises(ValidationError, match="order_no"):
        Req.model_validate({"item": "Rug", "reason": "late", "refund": "full"})


# ---------------------------------------------------------------- another schema, end to end

@pytest.fixture(scope="module")
def returns_run(returns_dir, tmp_path_factory):
    "A seconds-long tiny training run on the returns data with `fields: auto`."
    from claim_t5.train import train
    cfg = quick_config(tmp_path_factory.mktemp("returns_run")/"model_training", data_dir=str(returns_dir), fields="auto",
                       max_eval_samples=16)
    return train(cfg, verbose=False)


def test_other_schema_trains_with_its_schema_saved(returns_run):
    from claim_t5.config import load_fields
    from claim_t5.model import RUN_CONFIG
    d = Path(returns_run.model_dir)
    assert returns_run.config.fields == RETURN_FIELDS
    assert make_config(d/RUN_CONFIG).fields == RETURN_FIELDS                # with the model: the config it trained with
    assert load_fields(d/FIELDS_FILE) == RETURN_FIELDS                      # and the schema on its own
    assert "given in" in (d/FIELDS_FILE).read_text()                        # with the evidence it was inferred from
    assert json.loads((d/"facts.json").read_text())["fields"] == RETURN_FIELDS
    assert returns_run.history and "all_facts_correct" in returns_run.history[-1]


def test_other_schema_evaluates_with_its_own_facts_and_references(returns_run, returns_dir):
    from claim_t5.evaluation import evaluate_model
    res = evaluate_model(returns_run.model_dir, returns_dir, progress=False)     # 40 test inputs, 4 with two reports
    assert sorted(res["fact_accuracy"]["per_field"]) == sorted(f["name"] for f in RETURN_FIELDS)  # copy fields first
    assert all(0 <= v <= 1 for v in res["fact_accuracy"]["per_field"].values() if v is not None)
    saved = json.loads((Path(returns_run.model_dir)/"test_results.json").read_text())
    counts = saved["references"]["per_example"]
    assert counts == {"1": 36, "2": 4}                                          # 44 rows, 40 examples
    assert saved["references"]["total"] == 44
    assert "references" in res["report"].columns


def test_other_schema_generates_and_serves(returns_run):
    from fastapi.testclient import TestClient
    from claim_t5.inference import ClaimReportGenerator
    from claim_t5.serve import create_app
    gen = ClaimReportGenerator(returns_run.model_dir, device="cpu")
    meta = {"order_no": "ORD-7654321", "item": "Walnut Rug", "reason": "damaged", "refund": "partial", "return method": "mail"}
    report = gen(meta)
    assert isinstance(report, str) and report.strip()
    assert sorted(report.facts["fields"]) == sorted(f["name"] for f in RETURN_FIELDS)    # checked against its own schema (copy fields first)
    assert "shipment_id" not in report                                             # (a few-step model: no promise of quality)
    with pytest.raises(Exception, match="order_no"):
        gen({"item": "Walnut Rug", "reason": "damaged", "refund": "partial"})
    with TestClient(create_app(gen), base_url="http://127.0.0.1") as c:
        schema = c.get("/openapi.json").json()["components"]["schemas"]["ClaimRequest"]
        assert list(schema["properties"]) == [f["name"] for f in RETURN_FIELDS]    # /docs shows the user's fields
        r = c.post("/generate_claim", json=meta)
        assert r.status_code == 200, r.text
        assert r.json()["input"] == "order_no=ORD-7654321; item=Walnut Rug; reason=damaged; refund=partial; return method=mail"
        assert c.post("/generate_claim", json={"item": "Rug", "reason": "late", "refund": "full"}).status_code == 422
