"""Reliability of claim_t5: kill and resume, determinism, every entry point under bad input, safe loading, NaN guard.

The training tests run the `tiny` preset for real (a few steps on a CPU, seconds each); the kill-and-resume test (three
training runs in subprocesses) is marked `slow`. No tolerance here was loosened to make a failure go away: a failing
test is a bug report.
"""
import ast
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import run_cli

import claim_t5
from claim_t5.config import ConfigError, make_config, step_plan
from claim_t5.data import DataValidationError, load_claim_data, validate_splits
from claim_t5.schema import MetadataError
from claim_t5.train import (NonFiniteLossError, checkpoint_complete, latest_checkpoint, prepare_resume, train)

BIN = Path(sys.executable).parent
PKG = Path(claim_t5.__file__).parent

# ================================================================ helpers

def tree_snapshot(root: Path) -> dict:
    "Relative path -> sha256 of every file (and 'dir' for every folder) under `root`."
    root = Path(root)
    if not root.exists(): return {}
    return {str(p.relative_to(root)): ("dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*"))}


def load_adapter(path: Path) -> dict:
    from safetensors.torch import load_file
    return load_file(str(path))


def assert_same_tensors(a: Path, b: Path, atol: float, exact: bool = False):
    "Every tensor of two safetensors files is equal (exact) or allclose(atol, rtol=0); names the first that is not."
    import torch
    ta, tb = load_adapter(a), load_adapter(b)
    assert sorted(ta) == sorted(tb), f"{a} and {b} hold different tensors"
    assert ta, f"{a} holds no tensors"
    for k in ta:
        assert ta[k].shape == tb[k].shape, f"{k}: shape {ta[k].shape} vs {tb[k].shape}"
        if exact: ok = torch.equal(ta[k], tb[k])
        else: ok = torch.allclose(ta[k], tb[k], atol=atol, rtol=0)
        assert ok, f"{k} differs between {a} and {b}: max abs diff {(ta[k] - tb[k]).abs().max().item():.3g}"


def global_step(checkpoint: Path) -> int:
    return json.loads((Path(checkpoint)/"trainer_state.json").read_text())["global_step"]


_VOLATILE = ("runtime", "per_second")  # wall-clock fields of the Trainer's log: never compared


def stable_log(checkpoint: Path) -> list:
    "The checkpoint's per-step log history without the wall-clock fields."
    log = json.loads((Path(checkpoint)/"trainer_state.json").read_text())["log_history"]
    return [{k: v for k, v in e.items() if not any(s in k for s in _VOLATILE)} for e in log]


def assert_close_records(got: list, want: list, atol: float, what: str):
    "Two lists of dicts with the same keys; floats within `atol`, everything else equal."
    assert len(got) == len(want), f"{what}: {len(got)} rows vs {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert sorted(g) == sorted(w), f"{what} row {i}: keys {sorted(g)} vs {sorted(w)}"
        for k in w:
            if isinstance(w[k], float) or isinstance(g[k], float):
                assert g[k] is not None and w[k] is not None and math.isclose(g[k], w[k], rel_tol=0, abs_tol=atol), \
                    f"{what} row {i} ({k}): {g[k]} vs {w[k]}"
            else:
                assert g[k] == w[k], f"{what} row {i} ({k}): {g[k]!r} vs {w[k]!r}"


# ================================================================ 1. kill and resume

# The run the issue describes: 64 examples at batch 32 (the tiny preset) = 2 steps per epoch, 3 epochs = 6 steps.
KILL_RUN = dict(num_epochs=3, max_train_samples=64, max_eval_samples=8, logging_steps=1, seed=42)

TRAIN_SCRIPT = """
import json, sys
from transformers import TrainerCallback
from claim_t5.config import make_config
from claim_t5.train import train
out, mode, settings, result = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
steps = []  # the optimizer steps this process ran: a resumed run must not redo the ones before the kill
class Steps(TrainerCallback):
    def on_step_end(self, args, state, control, **kw): steps.append(state.global_step)
cfg = make_config("tiny", output_dir=out, **settings)
res = train(cfg, resume_from_checkpoint=True if mode == "resume" else None, callbacks=[Steps()], verbose=False)
with open(result, "w") as f:
    json.dump(dict(model_dir=str(res.model_dir), best_checkpoint=res.best_checkpoint, history=res.history, steps=steps), f)
"""


def _script(folder: Path) -> Path:
    p = Path(folder)/"train_script.py"
    if not p.exists(): p.write_text(TRAIN_SCRIPT)
    return p


def _start(folder: Path, out: Path, mode: str, tag: str) -> tuple:
    "Start a training subprocess; its output goes to a log file (a full pipe would block it)."
    log = open(Path(folder)/f"{tag}.log", "wb")
    result = Path(folder)/f"{tag}.result.json"
    p = subprocess.Popen([sys.executable, str(_script(folder)), str(out), mode, json.dumps(KILL_RUN), str(result)],
                         stdout=log, stderr=subprocess.STDOUT)
    return p, log, result


def _run_to_end(folder: Path, out: Path, mode: str, tag: str) -> dict:
    p, log, result = _start(folder, out, mode, tag)
    try: rc = p.wait(timeout=600)
    finally: log.close()
    text = (Path(folder)/f"{tag}.log").read_text(errors="replace")
    assert rc == 0, f"{tag} training run failed (exit {rc}):\n{text[-3000:]}"
    return json.loads(result.read_text())


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    "An uninterrupted KILL_RUN in a subprocess: (output_dir, result)."
    folder = tmp_path_factory.mktemp("reference")
    out = folder/"model_training"
    return out, _run_to_end(folder, out, "fresh", "reference")


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted_run(tmp_path, reference_run):
    ref_out, ref = reference_run
    total = step_plan(make_config("tiny", **KILL_RUN), KILL_RUN["max_train_samples"])["total_steps"]
    assert total == 6

    # start, wait (bounded) for the first complete checkpoint, SIGKILL; retry if the run got to its end first
    for attempt in range(3):
        out = tmp_path/f"attempt{attempt}"/"model_training"
        out.parent.mkdir()
        p, log, _ = _start(out.parent, out, "fresh", "killed")
        deadline, ck = time.monotonic() + 420, None
        try:
            while time.monotonic() < deadline and p.poll() is None:
                ck = latest_checkpoint(out/"checkpoints")
                if ck is not None: break
                time.sleep(0.05)
            killed = p.poll() is None
            if killed: p.send_signal(signal.SIGKILL)
            rc = p.wait(timeout=60)
        finally: log.close()
        text = (out.parent/"killed.log").read_text(errors="replace")
        if not killed and rc != 0: pytest.fail(f"training failed before it could be killed (exit {rc}):\n{text[-3000:]}")
        if killed and ck is None: pytest.fail(f"no complete checkpoint within the bounded wait:\n{text[-3000:]}")
        done = latest_checkpoint(out/"checkpoints")
        # the kill must land mid-run: killed by our signal, no final model, the latest complete checkpoint short of the end
        if killed and rc == -signal.SIGKILL and not (out/"fine_tuned_model").exists() and global_step(done) < total: break
    else:
        pytest.fail("the training run reached its end before it could be killed, three times: the kill proved nothing")

    # the killed run left at least one complete checkpoint, short of the end, and no final model
    killed_at = global_step(done)
    assert 0 < killed_at < total

    res = _run_to_end(out.parent, out, "resume", "resumed")
    # it resumed: it ran only the steps after the checkpoint (a restart from step 0 with the same seed would match too)
    assert res["steps"] == list(range(killed_at + 1, total + 1)), res["steps"]
    assert ref["steps"] == list(range(1, total + 1))

    # same final step, same checkpoint chosen as best
    assert global_step(latest_checkpoint(out/"checkpoints")) == global_step(latest_checkpoint(ref_out/"checkpoints")) == total
    assert Path(res["best_checkpoint"]).name == Path(ref["best_checkpoint"]).name

    # same per-epoch metrics (history.json as written to fine_tuned_model/), epoch 1 included, from before the kill
    got = json.loads((out/"fine_tuned_model"/"history.json").read_text())
    want = json.loads((ref_out/"fine_tuned_model"/"history.json").read_text())
    assert len(want) == KILL_RUN["num_epochs"]
    assert_close_records(got, want, atol=1e-4, what="history")
    # ... and the same per-step training losses, learning rates and gradient norms
    assert_close_records(stable_log(latest_checkpoint(out/"checkpoints")),
                         stable_log(latest_checkpoint(ref_out/"checkpoints")), atol=1e-4, what="log_history")

    # same weights: the saved adapter and the last checkpoint's. (The match is exact in practice. It depends on the
    # checkpoint's rng_state.pth being restored: the tiny T5 has dropout 0.1, and deleting rng_state.pth before resuming
    # makes epoch 2's train_loss differ by ~1e-3, which this test reports.)
    assert_same_tensors(out/"fine_tuned_model"/"adapter_model.safetensors",
                        ref_out/"fine_tuned_model"/"adapter_model.safetensors", atol=1e-5)
    assert_same_tensors(latest_checkpoint(out/"checkpoints")/"adapter_model.safetensors",
                        latest_checkpoint(ref_out/"checkpoints")/"adapter_model.safetensors", atol=1e-5)


def _copy_checkpoints(tiny_run, out: Path) -> Path:
    src = Path(tiny_run.config.paths["checkpoints"])
    shutil.copytree(src, out/"checkpoints")
    return out/"checkpoints"


def test_interrupted_checkpoint_is_never_resumed_from(tmp_path, tiny_run):
    out = tmp_path/"model_training"
    cks = _copy_checkpoints(tiny_run, out)
    good = latest_checkpoint(cks)
    step = global_step(good)
    # a checkpoint killed while its trainer_state.json was being written ...
    torn = cks/f"checkpoint-{step + 100}"
    shutil.copytree(good, torn)
    state = (torn/"trainer_state.json").read_bytes()
    (torn/"trainer_state.json").write_bytes(state[: len(state)//2])
    # ... and one killed before its weights were written
    noweights = cks/f"checkpoint-{step + 101}"
    shutil.copytree(good, noweights)
    (noweights/"adapter_model.safetensors").unlink()
    before = {p.name: tree_snapshot(p) for p in (torn, noweights)}

    assert not checkpoint_complete(torn) and not checkpoint_complete(noweights)
    assert latest_checkpoint(cks) == good

    # resuming moves both aside (renamed, not deleted) and continues from the complete one
    cfg = dataclasses.replace(tiny_run.config, output_dir=str(out), num_epochs=tiny_run.config.num_epochs + 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = train(cfg, resume_from_checkpoint=True, verbose=False)
    moved = [str(w.message) for w in caught if "moved to incomplete-" in str(w.message)]
    assert len(moved) == 2, moved
    for p in (torn, noweights):
        assert not p.exists()
        aside = cks/f"incomplete-{p.name}"
        assert tree_snapshot(aside) == before[p.name], f"{aside} was changed"
    per_epoch = step_plan(cfg, cfg.max_train_samples)["steps_per_epoch"]
    assert global_step(latest_checkpoint(cks)) == step + per_epoch
    assert res.history[: len(tiny_run.history)] == tiny_run.history
    assert len(res.history) == cfg.num_epochs


@pytest.mark.parametrize("fresh", [None, False, "false"], ids=["None", "False", "'false'"])
def test_fresh_run_over_checkpoints_refuses_and_changes_nothing(tmp_path, tiny_run, fresh):
    out = tmp_path/"model_training"
    cks = _copy_checkpoints(tiny_run, out)
    before = tree_snapshot(tmp_path)
    cfg = dataclasses.replace(tiny_run.config, output_dir=str(out))
    with pytest.raises(FileExistsError) as ei:
        train(cfg, resume_from_checkpoint=fresh, verbose=False)
    msg = str(ei.value)
    assert str(cks) in msg and latest_checkpoint(cks).name in msg and "resume" in msg
    assert tree_snapshot(tmp_path) == before  # nothing written, moved or deleted (no logs/, no fine_tuned_model/)


# ================================================================ 2. determinism

@pytest.mark.slow
def test_same_seed_same_run(tmp_path, tiny_run):
    "A second run with tiny_run's config (same seed, CPU) gives exactly the same metrics and weights."
    cfg = dataclasses.replace(tiny_run.config, output_dir=str(tmp_path/"model_training"))
    again = train(cfg, verbose=False)
    assert again.history == tiny_run.history  # exact equality of every metric
    assert json.loads((again.model_dir/"history.json").read_text()) == json.loads((tiny_run.model_dir/"history.json").read_text())
    a_cks, b_cks = Path(cfg.paths["checkpoints"]), Path(tiny_run.config.paths["checkpoints"])
    assert sorted(p.name for p in a_cks.glob("checkpoint-*")) == sorted(p.name for p in b_cks.glob("checkpoint-*"))
    for ck in sorted(b_cks.glob("checkpoint-*")):
        assert stable_log(a_cks/ck.name) == stable_log(ck)  # every step's loss, learning rate and gradient norm
        assert_same_tensors(a_cks/ck.name/"adapter_model.safetensors", ck/"adapter_model.safetensors", 0, exact=True)
    assert_same_tensors(again.model_dir/"adapter_model.safetensors", tiny_run.model_dir/"adapter_model.safetensors",
                        0, exact=True)


# ================================================================ 3. bad input, every entry point

GOOD_IN = "shipment_id=SHP-1; damage_type=dent; severity=low"
GOOD = {"shipment_id": "SHP-1", "damage_type": "dent", "severity": "low"}
GOOD_REC = {"input": GOOD_IN, "output": "Shipment SHP-1 was found with a dent. Severity is low."}
MB = 1_000_000


@dataclasses.dataclass
class Raises:
    "Calling `fn` raises `exc` whose message holds every needle."
    fn: object
    exc: type
    needles: list


@dataclasses.dataclass
class Warns:
    "Calling `fn` succeeds with a non-empty report and warns with a message holding `needle` (a documented fallback)."
    fn: object
    needle: str


@dataclasses.dataclass
class Exits:
    "A console script exits with `code`, prints 'error:' and no traceback on stderr, and names every needle."
    script: str
    args: list
    code: int
    needles: list
    stream: str = "stderr"       # where the needles are looked for
    error_prefix: bool = True    # stderr must hold "error:"


@dataclasses.dataclass
class Responds:
    "The HTTP service answers `status` (always a 4xx, never a 500) with a body holding every needle."
    kwargs: dict
    status: int
    needles: list


class Ctx:
    "What a case needs: a temporary folder, and lazily a copy of the tiny model, the generator and the HTTP client."
    def __init__(self, tmp: Path, request):
        self.tmp, self.request = tmp, request
        self.unchanged, self.absent = [], []  # files that must keep their bytes / must not exist after the case

    def file(self, name: str, data) -> Path:
        p = self.tmp/name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str): data = data.encode("utf-8")
        p.write_bytes(data)
        return p

    def jsonl(self, name: str, rows) -> Path:
        return self.file(name, b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows))

    def model(self, damage=None, name="model") -> Path:
        "A copy of the tiny fine-tuned model, optionally damaged by `damage(folder)`."
        d = self.tmp/name
        shutil.copytree(self.request.getfixturevalue("tiny_model_dir"), d)
        if damage: damage(d)
        return d

    @property
    def gen(self): return self.request.getfixturevalue("generator")

    @property
    def client(self): return self.request.getfixturevalue("client")

    def keep(self, p: Path) -> Path: self.unchanged.append(Path(p)); return p
    def never(self, p: Path) -> Path: self.absent.append(Path(p)); return p


@pytest.fixture(scope="module")
def generator(tiny_model_dir):
    from claim_t5.inference import ClaimReportGenerator
    return ClaimReportGenerator(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def client(generator):
    from fastapi.testclient import TestClient
    from claim_t5.serve import create_app
    return TestClient(create_app(generator), raise_server_exceptions=False, base_url="http://127.0.0.1")  # a server error shows as a 500


def _raise_problems(result):
    "validate_splits returns (good, problems); raise them so a case can check their file, line and field."
    good, problems = result
    if problems: raise DataValidationError(problems)
    return good


def _truncate(p: Path, n: int = 1000): p.write_bytes(p.read_bytes()[:n])


def _dmg(rel: str, how):
    "A damage function for ctx.model: apply `how` to the file `rel` of the model folder."
    def damage(d: Path):
        p = d/rel
        if how == "delete": p.unlink()
        elif how == "truncate": _truncate(p)
        elif how == "to_bin": p.rename(p.with_suffix(".bin"))
        else: p.write_bytes(how)
    return damage


def _loader(d: Path):
    from claim_t5.inference import ClaimReportGenerator
    return lambda: ClaimReportGenerator(d, device="cpu")


def _ModelLoadError():
    from claim_t5.fine_tuned import ModelLoadError
    return ModelLoadError


def _chunks(n: int, size: int = 10_000):
    for _ in range(n): yield b"x"*size


def _eval_model(ctx) -> Path:
    "A model copy whose evaluation files already exist: a failed evaluation must leave them as they were."
    d = ctx.model()
    ctx.keep(ctx.file("model/test_results.json", json.dumps({"rouge": {"rougeL": 0.5}, "examples": 662})))
    ctx.keep(ctx.file("model/README.md", "# the model card of a good evaluation\n"))
    ctx.keep(ctx.file("model/evaluation_report.csv", "input,reference,prediction\n"))
    return d


def _batch_case(ctx, bad_line: bool, output_is_dir: bool = False):
    inp = ctx.jsonl("in.jsonl", [{"input": GOOD_IN}, {"input": "shipment_id=SHP-2; damage_type=dent"} if bad_line else GOOD])
    if output_is_dir:
        out = ctx.tmp/"outdir"; out.mkdir()
        ctx.never(ctx.tmp/"outdir.tmp")
    else:
        out = ctx.keep(ctx.file("out.jsonl", json.dumps({"input": GOOD_IN, "report": "an earlier, good report"}) + "\n"))
        ctx.never(ctx.tmp/"out.jsonl.tmp")
    return ctx.model(), inp, out


C = SimpleNamespace  # a case: id, make(ctx) -> Raises | Warns | Exits | Responds

CASES = [
    # ---- data loading: load_claim_data and validate_splits name the file, the line and the field
    C(id="data-jsonl-malformed", make=lambda c: Raises(
        lambda: load_claim_data(c.jsonl("train.jsonl", [GOOD_REC, b"{not json"])), DataValidationError,
        ["train.jsonl:2", "malformed JSON"])),
    C(id="data-jsonl-wrong-type", make=lambda c: Raises(
        lambda: load_claim_data(c.jsonl("train.jsonl", [{"input": 3, "output": "A dent."}])), DataValidationError,
        ["train.jsonl:1", "field 'input'", "expected a string"])),
    C(id="data-jsonl-missing-field", make=lambda c: Raises(
        lambda: load_claim_data(c.jsonl("train.jsonl", [GOOD_REC, {"input": GOOD_IN.replace("1", "2")}])),
        DataValidationError, ["train.jsonl:2", "field 'output'", "missing"])),
    C(id="data-jsonl-missing-required-metadata", make=lambda c: Raises(
        lambda: load_claim_data(c.jsonl("train.jsonl", [{"input": "shipment_id=SHP-1; damage_type=dent", "output": "x"}])),
        DataValidationError, ["train.jsonl:1", "field 'input'", "severity"])),
    C(id="data-jsonl-empty-string", make=lambda c: Raises(
        lambda: _raise_problems(validate_splits({"train": c.jsonl("train.jsonl", [{"input": GOOD_IN, "output": ""}])})),
        DataValidationError, ["train.jsonl:1", "field 'output'", "empty"])),
    C(id="data-jsonl-not-an-object", make=lambda c: Raises(
        lambda: load_claim_data(c.jsonl("train.jsonl", [GOOD_REC, [1, 2]])), DataValidationError,
        ["train.jsonl:2", "expected a JSON object"])),
    C(id="data-jsonl-non-utf8", make=lambda c: Raises(
        lambda: load_claim_data(c.jsonl("train.jsonl", [GOOD_REC, b'{"input": "\xff\xfe"}'])), DataValidationError,
        ["train.jsonl:2", "not UTF-8"])),
    C(id="data-jsonl-huge-1MB-input", make=lambda c: Raises(
        lambda: load_claim_data(c.jsonl("train.jsonl", [{"input": GOOD_IN + "; vendor=" + "x"*MB, "output": "x"}])),
        DataValidationError, ["train.jsonl:1", "field 'input'", "too long"])),
    C(id="data-jsonl-empty-file", make=lambda c: Raises(
        lambda: load_claim_data(c.file("train.jsonl", b"")), DataValidationError, ["train.jsonl", "no usable rows"])),
    C(id="data-csv-malformed", make=lambda c: Raises(
        lambda: _raise_problems(validate_splits({"train": c.file("train.csv", f'input,output\n"{GOOD_IN},A dent.\n')})),
        DataValidationError, ["train.csv:2", "malformed CSV"])),
    C(id="data-csv-missing-column", make=lambda c: Raises(
        lambda: load_claim_data(c.file("train.csv", f'input,report\n"{GOOD_IN}",A dent.\n')), DataValidationError,
        ["train.csv:1", "'output'"])),
    C(id="data-csv-non-utf8", make=lambda c: Raises(
        lambda: load_claim_data(c.file("train.csv", f'input,output\n"{GOOD_IN}",A dent.\n'.encode() + b'"x","\xe9"\n')),
        DataValidationError, ["train.csv:3", "not UTF-8"])),
    C(id="data-missing-path", make=lambda c: Raises(
        lambda: load_claim_data(c.tmp/"nowhere"), FileNotFoundError, ["nowhere"])),

    # ---- configuration: make_config with YAML files names the file and line, or the key
    C(id="config-yaml-malformed", make=lambda c: Raises(
        lambda: make_config(c.file("bad.yaml", "lora_r: 8\n  oops: [\n")), ConfigError, ["bad.yaml", "line 2"])),
    C(id="config-yaml-wrong-type", make=lambda c: Raises(
        lambda: make_config(c.file("run.yaml", "lora_r: eight\n")), ConfigError, ["'lora_r'", "eight"])),
    C(id="config-yaml-unknown-key", make=lambda c: Raises(
        lambda: make_config(c.file("run.yaml", "lora_rank: 16\n")), ConfigError, ["'lora_rank'", "run.yaml", "lora_r"])),
    C(id="config-yaml-non-utf8", make=lambda c: Raises(
        lambda: make_config(c.file("run.yaml", b"model_name: tiny\nvendor: \xff\n")), ConfigError, ["run.yaml", "UTF-8"])),
    C(id="config-yaml-not-a-mapping", make=lambda c: Raises(
        lambda: make_config(c.file("run.yaml", "- lora_r\n- 8\n")), ConfigError, ["run.yaml", "mapping"])),
    C(id="config-yaml-empty-string", make=lambda c: Raises(
        lambda: make_config(c.file("run.yaml", "model_name: ''\n")), ConfigError, ["'model_name'", "empty"])),
    C(id="config-yaml-duplicate-key", make=lambda c: Raises(
        lambda: make_config(c.file("run.yaml", "lora_r: 8\nlora_r: 16\n")), ConfigError, ["run.yaml", "line 2", "'lora_r'"])),
    C(id="config-yaml-python-object-tag", make=lambda c: Raises(  # safe loading: never constructs Python objects
        lambda: make_config(c.file("run.yaml", "model_name: !!python/object/apply:os.system ['echo hi']\n")), ConfigError,
        ["run.yaml", "line 1"])),
    C(id="config-yaml-infinite-number", make=lambda c: Raises(
        lambda: make_config(c.file("run.yaml", "num_epochs: .inf\n")), ConfigError, ["'num_epochs'"])),
    C(id="config-missing-file", make=lambda c: Raises(
        lambda: make_config(c.tmp/"nowhere.yaml"), ConfigError, ["nowhere.yaml"])),
    C(id="config-unknown-override", make=lambda c: Raises(
        lambda: make_config("tiny", lora_rank=16), ConfigError, ["'lora_rank'", "lora_r"])),

    # ---- claim_t5_train: every failure is one "error:" line, exit 1 (argparse: 2), and no output folder
    C(id="cli-train-yaml-malformed", make=lambda c: Exits(
        "claim_t5_train", ["--config", c.file("bad.yaml", "lora_r: 8\n  oops: [\n"), "--output_dir", c.never(c.tmp/"out")],
        1, ["bad.yaml", "line 2"])),
    C(id="cli-train-unknown-key", make=lambda c: Exits(
        "claim_t5_train", ["--config", "tiny", "--set", "lora_rank=16", "--output_dir", c.never(c.tmp/"out")],
        1, ["'lora_rank'", "lora_r"])),
    C(id="cli-train-wrong-type-flag", make=lambda c: Exits(
        "claim_t5_train", ["--config", "tiny", "--num_epochs", "three", "--output_dir", c.never(c.tmp/"out")],
        2, ["--num_epochs", "'three'"])),
    C(id="cli-train-bad-data", make=lambda c: Exits(
        "claim_t5_train", ["--config", "tiny", "--data_dir", c.jsonl("data/train.jsonl", [GOOD_REC, b"{not json"]),
                           "--output_dir", c.never(c.tmp/"out")], 1, ["train.jsonl:2", "malformed JSON"])),
    C(id="cli-train-resume-without-checkpoint", make=lambda c: Exits(
        "claim_t5_train", ["--config", "tiny", "--resume_from_checkpoint", "True", "--output_dir", c.tmp/"out"],
        1, ["no complete checkpoint", str(c.tmp/"out"/"checkpoints")])),

    # ---- claim_t5_data
    C(id="cli-data-check-missing-path", make=lambda c: Exits(
        "claim_t5_data", ["--check", c.tmp/"nowhere"], 1, ["nowhere"])),
    # --check is a report: each problem on stdout as file:line, a count on stderr (a finding, not an "error:")
    C(id="cli-data-check-malformed-csv", make=lambda c: Exits(
        "claim_t5_data", ["--check", c.file("train.csv", f'input,output\n"{GOOD_IN},A dent.\n')], 1,
        ["train.csv:2", "malformed CSV"], stream="stdout", error_prefix=False)),
    C(id="cli-data-out-is-a-file", make=lambda c: Exits(
        "claim_t5_data", ["--out", c.keep(c.file("afile", "not a folder\n"))], 1, ["afile"])),

    # ---- claim_t5_generate
    C(id="cli-generate-no-model-dir", make=lambda c: Exits("claim_t5_generate", ["--input", GOOD_IN], 1, ["--model_dir"])),
    C(id="cli-generate-missing-model", make=lambda c: Exits(
        "claim_t5_generate", ["--model_dir", c.tmp/"nowhere", "--input", GOOD_IN], 1, ["nowhere"])),
    C(id="cli-generate-input-file-malformed-json", make=lambda c: Exits(
        "claim_t5_generate", ["--model_dir", c.model(), "--input_file", c.file("one.json", '{"shipment_id": ')], 1, ["one.json", "line 1"])),
    C(id="cli-generate-input-file-non-utf8", make=lambda c: Exits(
        "claim_t5_generate", ["--model_dir", c.model(), "--input_file", c.file("one.json", b'{"shipment_id": "\xff"}')], 1, ["one.json"])),
    C(id="cli-generate-input-file-wrong-type", make=lambda c: Exits(
        "claim_t5_generate", ["--model_dir", c.model(), "--input_file", c.file("one.json", '{"input": 5}')], 1, ["one.json", "'input'"])),
    C(id="cli-generate-batch-bad-line-keeps-old-output", make=lambda c: (lambda m, i, o: Exits(
        "claim_t5_generate", ["--model_dir", m, "--batch", i, "--output", o], 1, ["in.jsonl:2", "severity"]))(*_batch_case(c, True))),
    C(id="cli-generate-batch-output-is-a-folder", make=lambda c: (lambda m, i, o: Exits(
        "claim_t5_generate", ["--model_dir", m, "--batch", i, "--output", o], 1, ["outdir"]))(*_batch_case(c, False, output_is_dir=True))),
    C(id="cli-generate-batch-size-zero", make=lambda c: Exits(
        "claim_t5_generate", ["--model_dir", c.model(), "--input", GOOD_IN, "--batch_size", "0"], 1, ["batch_size"])),

    C(id="cli-serve-missing-model", make=lambda c: Exits(
        "claim_t5_serve", ["--model_dir", c.tmp/"nowhere", "--port", "0"], 1, ["nowhere"])),
    C(id="cli-serve-batch-timeout-zero", make=lambda c: Exits(
        "claim_t5_serve", ["--model_dir", c.model(), "--port", "0", "--batch_timeout_s", "0"], 1, ["batch_timeout_s must be > 0"])),

    # ---- claim_t5_eval: a failed evaluation leaves the model folder's earlier results as they were
    C(id="cli-eval-no-model-dir", make=lambda c: Exits("claim_t5_eval", [], 2, ["--model_dir"])),
    C(id="cli-eval-missing-model", make=lambda c: Exits("claim_t5_eval", ["--model_dir", c.tmp/"nowhere"], 1, ["nowhere"])),
    C(id="cli-eval-bad-data", make=lambda c: Exits(
        "claim_t5_eval", ["--model_dir", _eval_model(c), "--data_dir", c.jsonl("data/test.jsonl", [GOOD_REC, b"{not json"]),
                          "--max_samples", "2"], 1, ["test.jsonl:2", "malformed JSON"])),
    C(id="cli-eval-max-samples-zero", make=lambda c: Exits(
        "claim_t5_eval", ["--model_dir", _eval_model(c), "--max_samples", "0"], 1, ["max_samples"])),

    # ---- ClaimReportGenerator: inputs
    C(id="gen-missing-required-field", make=lambda c: Raises(
        lambda: c.gen({"shipment_id": "SHP-1", "damage_type": "dent"}), MetadataError, ["severity"])),
    C(id="gen-empty-string", make=lambda c: Raises(
        lambda: c.gen(""), MetadataError, ["shipment_id", "damage_type", "severity"])),
    C(id="gen-wrong-type-value", make=lambda c: Raises(
        lambda: c.gen({**GOOD, "shipment_id": ["SHP-1"]}), MetadataError, ["'shipment_id'", "list"])),
    C(id="gen-wrong-type-input", make=lambda c: Raises(lambda: c.gen(None), MetadataError, ["NoneType"])),
    C(id="gen-malformed-metadata-line", make=lambda c: Raises(
        lambda: c.gen("shipment_id=SHP-1; dent; severity=low"), MetadataError, ["'dent'", "key=value"])),
    C(id="gen-bad-item-in-list", make=lambda c: Raises(
        lambda: c.gen([GOOD, {"shipment_id": "SHP-2", "severity": "low"}]), MetadataError, ["input 1", "damage_type"])),
    # documented: an input over the model's limit is truncated with a warning, not refused
    # a copy field (vendor) reaches the model as a placeholder, so a huge value is restored, not cut: a category is cut
    C(id="gen-huge-1MB-input", make=lambda c: Warns(lambda: c.gen({**GOOD, "damage_type": "x"*MB}), "truncated")),

    # ---- ClaimReportGenerator: a model folder with a missing or damaged file names the file
    C(id="model-missing-folder", make=lambda c: Raises(_loader(c.tmp/"nowhere"), _ModelLoadError(), ["nowhere"])),
    C(id="model-missing-adapter", make=lambda c: Raises(
        _loader(c.model(_dmg("adapter_model.safetensors", "delete"))), _ModelLoadError(),
        ["adapter_model.safetensors", "missing"])),
    C(id="model-truncated-adapter", make=lambda c: Raises(
        _loader(c.model(_dmg("adapter_model.safetensors", "truncate"))), _ModelLoadError(), ["adapter_model.safetensors"])),
    C(id="model-pickled-adapter-only", make=lambda c: Raises(
        _loader(c.model(_dmg("adapter_model.safetensors", "to_bin"))), _ModelLoadError(),
        ["adapter_model.safetensors", "adapter_model.bin"])),
    C(id="model-corrupt-adapter-config", make=lambda c: Raises(
        _loader(c.model(_dmg("adapter_config.json", b"{not json"))), _ModelLoadError(), ["adapter_config.json"])),
    C(id="model-adapter-config-not-an-object", make=lambda c: Raises(
        _loader(c.model(_dmg("adapter_config.json", b"[1, 2]"))), _ModelLoadError(), ["adapter_config.json"])),
    C(id="model-corrupt-tokenizer", make=lambda c: Raises(
        _loader(c.model(_dmg("tokenizer.json", b"{not json"))), _ModelLoadError(), ["tokenizer.json"])),
    C(id="model-corrupt-generation-config", make=lambda c: Raises(
        _loader(c.model(_dmg("generation_config.json", b"{not json"))), _ModelLoadError(), ["generation_config.json"])),
    C(id="model-corrupt-claim-config", make=lambda c: Raises(
        _loader(c.model(_dmg("claim_t5_config.yaml", b"lora_r: [\n"))), _ModelLoadError(), ["claim_t5_config.yaml", "line"])),
    C(id="model-truncated-base-weights", make=lambda c: Raises(
        _loader(c.model(_dmg("base_model/model.safetensors", "truncate"))), _ModelLoadError(),
        ["base_model", "model.safetensors"])),

    # ---- the HTTP service: 4xx with the reason, never a 500
    C(id="http-missing-field", make=lambda c: Responds(
        dict(json={"shipment_id": "SHP-1", "damage_type": "dent"}), 422, ["severity"])),
    C(id="http-wrong-type", make=lambda c: Responds(dict(json={**GOOD, "shipment_id": 123}), 422, ["shipment_id"])),
    C(id="http-nested-object", make=lambda c: Responds(dict(json={**GOOD, "severity": {"a": 1}}), 422, ["severity"])),
    C(id="http-empty-string", make=lambda c: Responds(dict(json={**GOOD, "severity": ""}), 422, ["severity"])),
    C(id="http-malformed-json", make=lambda c: Responds(
        dict(content=b'{"shipment_id": ', headers={"content-type": "application/json"}), 422, ["JSON"])),
    C(id="http-non-utf8-body", make=lambda c: Responds(
        dict(content=b'{"shipment_id": "\xff\xfe", "damage_type": "dent", "severity": "low"}',
             headers={"content-type": "application/json"}), 400, ["body"])),
    C(id="http-array-body", make=lambda c: Responds(dict(json=[GOOD]), 422, ["body"])),
    C(id="http-huge-100kB-body", make=lambda c: Responds(dict(json={**GOOD, "vendor": "x"*100_000}), 413, ["8192"])),
    C(id="http-huge-chunked-body", make=lambda c: Responds(
        dict(content=_chunks(20), headers={"content-type": "application/json"}), 413, ["8192"])),
    C(id="http-overlong-value", make=lambda c: Responds(dict(json={**GOOD, "vendor": "x"*500}), 422, ["vendor"])),
    C(id="http-unknown-field-not-a-string", make=lambda c: Responds(dict(json={**GOOD, "colour": [1, 2]}), 422, ["colour"])),
    # keys may hold letters, digits, _ and spaces (issue 11): a hyphen is still refused
    C(id="http-bad-field-name", make=lambda c: Responds(dict(json={**GOOD, "bad-name": "x"}), 422, ["bad-name"])),
    C(id="http-line-break-in-value", make=lambda c: Responds(dict(json={**GOOD, "vendor": "a\nb"}), 422, ["vendor", "line break"])),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tmp_path, request):
    ctx = Ctx(tmp_path, request)
    what = case.make(ctx)
    before = {p: p.read_bytes() for p in ctx.unchanged}

    if isinstance(what, Raises):
        try: what.fn()
        except Exception as e: err = e
        else: pytest.fail(f"no error raised (expected {what.exc.__name__})")
        assert isinstance(err, what.exc), f"expected {what.exc.__name__}, got {type(err).__module__}.{type(err).__name__}: {err}"
        text = str(err)
    elif isinstance(what, Warns):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = what.fn()
        assert isinstance(out, str) and out.strip(), f"expected a report, got {out!r}"
        msgs = [str(w.message) for w in caught]
        assert any(what.needle in m for m in msgs), f"no warning saying {what.needle!r}: {msgs}"
        text = " ".join(msgs)
    elif isinstance(what, Exits):
        res = run_cli(what.script, *what.args, cwd=tmp_path)
        assert "Traceback" not in res.stderr, f"{what.script} crashed with a traceback:\n{res.stderr[-3000:]}"
        assert res.returncode == what.code, f"exit {res.returncode}, expected {what.code}:\n{res.stderr[-2000:]}"
        if what.error_prefix: assert "error:" in res.stderr, res.stderr[-2000:]
        text = res.stdout if what.stream == "stdout" else res.stderr
    elif isinstance(what, Responds):
        r = ctx.client.post("/generate_claim", **what.kwargs)
        assert r.status_code != 500 and 400 <= r.status_code < 500, f"HTTP {r.status_code}: {r.text[:500]}"
        assert r.status_code == what.status, f"HTTP {r.status_code}, expected {what.status}: {r.text[:500]}"
        text = r.text
    else: raise TypeError(what)

    if not isinstance(what, Warns):
        for needle in what.needles: assert needle in text, f"{needle!r} not in the message: {text[-1500:]}"
    for p in ctx.unchanged: assert p.read_bytes() == before[p], f"{p} was changed"
    for p in ctx.absent: assert not p.exists(), f"{p} was written"


# ================================================================ 4. safe loading

def _dotted(f) -> str:
    if isinstance(f, ast.Name): return f.id
    if isinstance(f, ast.Attribute): return f"{_dotted(f.value)}.{f.attr}"
    return ""


def _kw_true(call: ast.Call, name: str) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is True for k in call.keywords)


PICKLE_LOADERS = {"pickle.load", "pickle.loads", "cPickle.load", "dill.load", "dill.loads", "joblib.load",
                  "cloudpickle.load", "cloudpickle.loads", "pandas.read_pickle", "pd.read_pickle", "numpy.load", "np.load"}


def test_source_never_loads_pickles_or_remote_code():
    files = sorted(PKG.glob("*.py"))
    assert len(files) >= 5
    problems = []
    for p in files:
        text = p.read_text(encoding="utf-8")
        if re.search(r"trust_remote_code['\"]?\s*[=:]\s*True", text): problems.append(f"{p.name}: trust_remote_code=True")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.module in ("pickle", "dill", "cloudpickle", "joblib"):
                problems.append(f"{p.name}:{node.lineno}: from {node.module} import ...")
            if isinstance(node, ast.ImportFrom) and node.module == "torch" and any(a.name == "load" for a in node.names):
                problems.append(f"{p.name}:{node.lineno}: from torch import load")
            if not isinstance(node, ast.Call): continue
            name = _dotted(node.func)
            if name == "torch.load" and not _kw_true(node, "weights_only"):
                problems.append(f"{p.name}:{node.lineno}: torch.load without weights_only=True")
            if name in PICKLE_LOADERS: problems.append(f"{p.name}:{node.lineno}: {name}")
            if re.fullmatch(r"AutoModel\w*\.from_pretrained", name) and not _kw_true(node, "use_safetensors"):
                problems.append(f"{p.name}:{node.lineno}: {name} without use_safetensors=True")
    assert not problems, problems


# Model weights are safetensors only. A checkpoint also holds the Trainer's training state, which is not model weights:
# optimizer.pt, scheduler.pt, rng_state.pth (and scaler.pt with fp16) are read back on resume by transformers with
# torch.load(..., weights_only=True) -- checked in the installed transformers/trainer.py by the next test (transformers
# 5.24.0: 11 torch.load calls, all weights_only=True, each behind check_torch_load_is_safe(), which requires
# torch >= 2.6). training_args.bin (a pickled TrainingArguments that Trainer.save_model writes into every checkpoint) is
# only ever torch.save'd, never loaded, by transformers and by claim_t5; fine_tuned_model/, the folder users share,
# holds no pickle at all.
TRAINING_STATE = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "scaler.pt", "training_args.bin"}
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz"}


def test_trained_outputs_hold_weights_only_as_safetensors(tiny_run):
    from safetensors import safe_open
    model_dir = Path(tiny_run.model_dir)
    cks = sorted(Path(tiny_run.config.paths["checkpoints"]).glob("checkpoint-*"))
    assert cks
    for folder, allowed in [(model_dir, set())] + [(ck, TRAINING_STATE) for ck in cks]:
        files = [p for p in folder.rglob("*") if p.is_file()]
        pickled = [str(p.relative_to(folder)) for p in files if p.suffix in PICKLE_SUFFIXES and p.name not in allowed]
        assert not pickled, f"{folder}: pickled files {pickled}"
        weights = [p for p in files if p.suffix == ".safetensors"]
        assert folder/"adapter_model.safetensors" in weights
        for w in weights:
            with safe_open(str(w), framework="pt") as f: assert list(f.keys())
    assert (model_dir/"base_model"/"model.safetensors").is_file()


def test_transformers_trainer_loads_training_state_weights_only():
    import transformers.trainer as tt
    tree = ast.parse(Path(tt.__file__).read_text(encoding="utf-8"))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _dotted(n.func) == "torch.load"]
    assert calls, "found no torch.load in transformers/trainer.py: re-check how it loads optimizer.pt"
    unsafe = [c.lineno for c in calls if not _kw_true(c, "weights_only")]
    assert not unsafe, f"transformers/trainer.py lines {unsafe}: torch.load without weights_only=True"
    # training_args.bin is written (torch.save) but never read back
    names = {n.id for c in calls for n in ast.walk(c) if isinstance(n, ast.Name)}
    assert "TRAINING_ARGS_NAME" not in names


# ================================================================ 5. the non-finite loss guard

POISON_STEP = 4  # the last step of epoch 2 (2 steps per epoch): epoch 1's checkpoint is clean, epoch 2's would not be


@pytest.fixture(scope="module")
def poisoned_run(tmp_path_factory):
    "A tiny run (2 steps per epoch, 3 epochs) whose LoRA weight is set to NaN at the end of step 4; what it raised and saved."
    import torch
    from transformers import TrainerCallback

    class Poison(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step == POISON_STEP:
                p = next(p for n, p in model.named_parameters() if "lora_A" in n and p.requires_grad)
                with torch.no_grad(): p.fill_(float("nan"))

    saved = {}
    class Record(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            ck = Path(args.output_dir)/f"checkpoint-{state.global_step}"
            saved[ck] = tree_snapshot(ck)

    out = tmp_path_factory.mktemp("poisoned")/"model_training"
    cfg = make_config("tiny", output_dir=str(out), num_epochs=3, max_train_samples=64, max_eval_samples=8, logging_steps=1, seed=42)
    assert step_plan(cfg, 64)["steps_per_epoch"] == 2
    try: train(cfg, callbacks=[Poison(), Record()], verbose=False); err = None
    except Exception as e: err = e
    return SimpleNamespace(err=err, saved=saved, out=out, cfg=cfg)


def test_nonfinite_loss_stops_training(poisoned_run):
    r = poisoned_run
    assert r.err is not None, "training with a NaN weight finished without an error"
    assert isinstance(r.err, NonFiniteLossError), f"{type(r.err).__name__}: {r.err}"
    msg = str(r.err)
    # the weight is poisoned after step 4's update, the last of epoch 2: the epoch's validation loss (before its
    # checkpoint is saved) or step 3's training loss is the first non-finite value, and the message names that step
    assert re.search(rf"\bstep ({POISON_STEP}|{POISON_STEP + 1})\b", msg), msg
    assert "bf16" in msg and "'no'" in msg, msg
    assert str(r.cfg.paths["checkpoints"]) in msg
    # nothing half-written is left, and no final model was saved from the poisoned weights
    assert not Path(r.cfg.paths["fine_tuned_model"]).exists()
    assert not Path(str(r.cfg.paths["fine_tuned_model"]) + ".tmp").exists()
    cks = Path(r.cfg.paths["checkpoints"])
    # every checkpoint written before the error is still there, byte for byte, and the latest one is complete
    # epoch 1's checkpoint (step 2) was saved before the poison; epoch 2's (step 4) must never be written
    assert sorted(r.saved) == [cks/"checkpoint-2"], sorted(r.saved)
    for ck, snap in r.saved.items(): assert tree_snapshot(ck) == snap, f"{ck} was changed after it was saved"
    assert sorted(cks.glob("checkpoint-*")) == [cks/"checkpoint-2"]
    assert latest_checkpoint(cks) == cks/"checkpoint-2"


def test_nonfinite_weights_never_reach_a_checkpoint(poisoned_run):
    """The error message sends the user to "the last complete checkpoint": it must hold finite weights.

    Step 4 is the last step of epoch 2, so the epoch's evaluation (eval_loss NaN) and checkpoint follow the poisoned
    update before the next training step trips the guard. The same happens for real when an overflow corrupts the
    weights in the last optimizer step of an epoch (and, in the last epoch, the run ends with no error at all)."""
    import torch
    cks = Path(poisoned_run.cfg.paths["checkpoints"])
    bad, checked = {}, []
    for ck in sorted(cks.glob("checkpoint-*")):
        if not checkpoint_complete(ck): continue
        checked.append(ck.name)
        tensors = load_adapter(ck/"adapter_model.safetensors")
        nonfinite = [k for k, v in tensors.items() if not torch.isfinite(v).all()]
        if nonfinite: bad[ck.name] = nonfinite
    assert not bad, f"complete checkpoints with NaN/inf weights (resume would start from them): {bad}"
    assert checked == ["checkpoint-2"], checked  # epoch 1's, saved before the poison
