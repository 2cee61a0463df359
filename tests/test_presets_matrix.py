"""Every preset through every door a user has (issue 31).

A preset is any file in `claim_t5/presets/`: one added later joins this matrix with no test to write. Each goes, on a
few dozen bundled pairs and a few test examples, through
- `claim_t5_run` (papermill, all five notebooks, in a fresh process),
- `claim_t5_eval` and `claim_t5_generate` on the model that run saved,
- `claim_t5_serve` (one report from `/generate_claim`, one draft from the desk's `/api/draft`),
- `import claim_t5` from a notebook of the user's own (executed by papermill in another folder),
- `claim_t5_train`, killed (SIGKILL) after its first complete checkpoint, then `--resume_from_checkpoint True`.
The flan-t5-base preset runs on the miniature hub-shaped folder (`hub_model_dir`): no hub here.
"""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest
import claim_t5
from conftest import (BIN, cli_env, cli_subprocess, no_warnings, serve_and_ask, PRESETS, PRESET_SMALL, PRESET_TEST_SAMPLES,
                      preset_sets)

META = dict(shipment_id="SHP-12345", image_id="img_0042.png", damage_type="dent", severity="high", vendor="TestCo",
            shipment_stage="transit")

def test_every_preset_file_is_in_the_matrix():
    assert {"tiny", "scratch", "flan-t5-base"} <= set(PRESETS), PRESETS

@pytest.fixture(scope="module", params=PRESETS)  # module scope: pytest orders the tests preset by preset
def preset_run(request, preset_runs):
    "The small `claim_t5_run` of each preset (conftest's `preset_runs`: one run per preset, shared with test_pipeline)."
    return preset_runs(request.param)

@pytest.mark.slow
def test_pipeline_runs_all_five_stages(preset_run):
    from claim_t5.folders import load_model_config, missing_model_files
    from claim_t5.pipeline import STAGES
    r, run_dir, model_dir = preset_run["run"], preset_run["run_dir"], preset_run["model_dir"]
    assert r.returncode == 0, f"{preset_run['preset']}: {r.stderr[-3000:]}"
    for s in STAGES: assert (run_dir/"notebooks"/f"{s}.ipynb").exists(), s
    assert missing_model_files(model_dir, load_model_config(model_dir)) == []  # the model folder's own rule
    res = json.loads((model_dir/"test_results.json").read_text())
    assert res["examples"] == PRESET_TEST_SAMPLES and "all_facts_correct" in res["fact_accuracy"]  # --max_test_samples reached 03_eval
    assert f"test scores ({res['base_model']}, {PRESET_TEST_SAMPLES} examples)" in r.stdout and "all facts correct" in r.stdout
    assert len(json.loads((model_dir/"history.json").read_text())) == PRESET_SMALL["num_epochs"]  # the presets say 3 or more: --set reached 02
    nb = json.loads((run_dir/"notebooks"/"00_config.ipynb").read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    assert injected and "max_train_samples" in "".join(injected[0]["source"])  # the overrides went in as papermill parameters
    for f in ("config.yaml", "data/clean_train.jsonl", "data/clean_val.jsonl", "data/clean_test.jsonl", "data/data_stats.csv"):
        assert (run_dir/f).exists(), f
    for f in ("test_results.json", "evaluation_report.csv", "training_curves.png", "README.md"):
        assert (model_dir/f).exists(), f
    lines = (run_dir/"sample_reports.jsonl").read_text().splitlines()
    assert len(lines) == 10 and {"input", "report", "generated_at"} <= set(json.loads(lines[0]))  # at most 10 in a short run

@pytest.mark.slow
def test_eval_and_generate_commands(preset_run):
    model_dir, elsewhere = preset_run["model_dir"], preset_run["elsewhere"]
    ev = cli_subprocess("claim_t5_eval", "--model_dir", model_dir, "--max_samples", "3", "--batch_size", "4", cwd=elsewhere)
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert "all facts correct" in ev.stdout.lower() or "all_facts_correct" in ev.stdout
    no_warnings(ev.stderr)
    line = "; ".join(f"{k}={v}" for k, v in META.items())
    gen = cli_subprocess("claim_t5_generate", "--model_dir", model_dir, "--input", line, "--engine", "transformers", cwd=elsewhere)
    assert gen.returncode == 0, gen.stderr[-3000:]
    assert gen.stdout.strip(), "no report printed"
    no_warnings(gen.stderr)

BATCH_CSV = "shipment_id,damage_type,severity,vendor\n" + "".join(f"SHP-6{i},dent,high,Acme\n" for i in range(3))

def _ask(url:str) -> dict:
    "One report from /generate_claim, one desk draft from /api/draft, and a 3-row desk batch job (its own generation process)."
    import httpx
    out = dict(claim=httpx.post(f"{url}/generate_claim", json=META, timeout=60),
               draft=httpx.post(f"{url}/api/draft", json={"meta": META}, timeout=60))
    job = httpx.post(f"{url}/api/batch?filename=day.csv", content=BATCH_CSV.encode(), headers={"content-type": "text/csv"}, timeout=60).json()["job"]
    end = time.monotonic() + 120
    while time.monotonic() < end and (s := httpx.get(f"{url}/api/batch/{job}", timeout=10).json())["rows"] is None: time.sleep(0.2)
    status = httpx.get(f"{url}/status", timeout=10).json()
    return dict(out, job=s, status=status, batch_niceness=os.getpriority(os.PRIO_PROCESS, status["batch_jobs"]["pid"]))

@pytest.mark.slow
def test_service_and_desk_draft(preset_run):
    r = serve_and_ask(preset_run["model_dir"], preset_run["elsewhere"], _ask, "--engine", "transformers")
    assert "claim" in r, f"the service never became ready:\n{r['stderr'][-3000:]}"
    assert r["claim"].status_code == 200, r["claim"].text
    assert r["claim"].json()["report"]
    assert r["draft"].status_code == 200, r["draft"].text
    d = r["draft"].json()
    assert d["report"] and "facts" in d and "<" in d["html"]
    assert r["job"]["done"] == 3 and r["job"]["error"] is None, r["job"]
    b = r["status"]["batch_jobs"]  # the batch ran in a generation process of its own, at the lowest CPU priority
    assert b["process"] == "own" and b["ready"] and b["pid"] not in (None, r["status"]["pid"]) and b["nice"] == 19, r["status"]
    assert r["batch_niceness"] == min(19, os.nice(0) + 19)  # the child's own priority, as the kernel has it

NOTEBOOK = """import claim_t5
from claim_t5.inference import ClaimReportGenerator
gen = ClaimReportGenerator({model_dir!r})
report = gen({meta!r})
print("REPORT:", report)
print("FACTS OK:", report.facts["ok"])"""

@pytest.mark.slow
def test_import_from_a_users_notebook(preset_run):
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(NOTEBOOK.format(model_dir=str(preset_run["model_dir"]), meta=META))])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src, out = preset_run["elsewhere"]/"mine.ipynb", preset_run["elsewhere"]/"mine.out.ipynb"
    nbformat.write(nb, src)
    r = subprocess.run([sys.executable, "-m", "papermill", str(src), str(out), "--no-progress-bar"], cwd=preset_run["elsewhere"],
                       env=cli_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    text = "".join(o.get("text", "") for o in nbformat.read(out, 4).cells[0].outputs)
    assert "REPORT:" in text and "FACTS OK:" in text, text

@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_train_killed_then_resumed(preset, tmp_path, hub_model_dir):
    "claim_t5_train killed after its first complete checkpoint, then resumed: it ends with a complete model folder."
    from claim_t5.folders import load_model_config, missing_model_files
    from claim_t5.train import checkpoint_complete
    out = tmp_path/"model_training"
    args = ["--config", preset, "--output_dir", out, "--set", preset_sets(preset, hub_model_dir, num_epochs=4)]
    for attempt in range(3):  # the kill must land mid-run; a machine fast enough to finish first gets another try
        p = subprocess.Popen([str(BIN/"claim_t5_train"), *map(str, args)], env=cli_env(), cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace")
        end = time.monotonic() + 600
        while time.monotonic() < end and p.poll() is None:
            if any(checkpoint_complete(c) for c in (out/"checkpoints").glob("checkpoint-*")): break
            time.sleep(0.05)
        killed = p.poll() is None
        if killed: p.send_signal(signal.SIGKILL)
        err = p.communicate(timeout=60)[1]
        if killed and not (out/"fine_tuned_model").exists(): break
        assert killed or p.returncode == 0, err[-3000:]
        import shutil; shutil.rmtree(out, ignore_errors=True)
    else: pytest.fail("training reached its end before it could be killed, three times")
    resumed = cli_subprocess("claim_t5_train", *args, "--resume_from_checkpoint", "True", cwd=tmp_path, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    model_dir = out/"fine_tuned_model"
    assert missing_model_files(model_dir, load_model_config(model_dir)) == []
    epochs = [r["epoch"] for r in json.loads((model_dir/"history.json").read_text())]
    assert epochs == [float(e) for e in range(1, len(epochs) + 1)] and 2 <= len(epochs) <= 4, epochs  # none lost, none twice
    no_warnings(resumed.stderr)
