"The pipeline end to end under papermill on a small sample, parameter overrides, failing stages, restarts."
import json, subprocess, sys
from pathlib import Path
import pytest
from claim_t5.pipeline import run_pipeline, PipelineStageError, STAGES, summary

SMALL = dict(num_epochs=2, max_train_samples=48, max_eval_samples=8, logging_steps=1)
# The end-to-end run itself (all five stages, the files, the overrides reaching the notebooks, the test scores) is checked
# for every preset in test_presets_matrix.py; the tests here share its tiny run (conftest's `preset_runs`).

@pytest.fixture
def small_run(preset_runs):
    "The tiny preset's small `claim_t5_run` (shared: tests that change it keep what the others check)."
    r = preset_runs("tiny")
    assert r["run"].returncode == 0, r["run"].stderr[-3000:]
    return r

@pytest.mark.slow
def test_restart_from_a_stage(small_run):
    before = (Path(small_run["run_dir"])/"config.yaml").stat().st_mtime_ns
    out = run_pipeline("tiny", small_run["run_dir"], start_at="04_inference", log=lambda *a, **k: None)
    assert list(out["timings"]) == ["04_inference"]
    assert "test scores (tiny" in summary(out)  # the in-process door's summary reads the run's test results
    assert (Path(small_run["run_dir"])/"config.yaml").stat().st_mtime_ns == before

@pytest.mark.slow
def test_failing_stage_stops_the_pipeline_with_its_name(tmp_path):
    bad = tmp_path/"bad.jsonl"
    bad.write_text('{"input": "shipment_id=SHP-1; damage_type=dent", "output": "x"}\n')
    with pytest.raises(PipelineStageError) as e:
        run_pipeline("tiny", tmp_path/"run", overrides=SMALL, data_dir=str(bad), log=lambda *a, **k: None)
    assert e.value.stage == "01_data" and "severity" in str(e.value) and "bad.jsonl:1" in str(e.value)
    assert Path(e.value.notebook).exists()
    assert not (tmp_path/"run"/"model_training").exists()  # later stages did not run

def test_restart_needs_the_earlier_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="01_data|clean_train"):
        run_pipeline("tiny", tmp_path/"run", start_at="02_lora_train", log=lambda *a, **k: None)

def test_bad_config_fails_before_any_stage(tmp_path):
    from claim_t5.config import ConfigError
    with pytest.raises(ConfigError, match="lora_rank"):
        run_pipeline("tiny", tmp_path/"run", overrides={"lora_rank": 4}, log=lambda *a, **k: None)
    assert not (tmp_path/"run"/"notebooks"/"00_config.ipynb").exists()

@pytest.mark.slow
def test_cli_reports_the_failing_stage(tmp_path):
    bad = tmp_path/"bad.jsonl"; bad.write_text("{not json\n")
    r = subprocess.run([str(Path(sys.executable).parent/"claim_t5_run"), "--config", "tiny", "--run_dir", str(tmp_path/"run"),
                        "--data_dir", str(bad)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "stage 01_data failed" in r.stderr and "executed notebook" in r.stderr

@pytest.mark.slow
def test_a_second_run_into_the_same_folder_refuses_to_mix_runs(small_run):
    with pytest.raises(FileExistsError, match="resume"):
        run_pipeline("tiny", small_run["run_dir"], overrides=SMALL, log=lambda *a, **k: None)

@pytest.mark.slow
def test_relative_paths_keep_their_meaning(tmp_path, monkeypatch):
    "The stages run inside the run folder; a config or data path relative to the caller must still be found."
    from claim_t5.config import make_config, save_config
    from claim_t5.data import write_bundled_dataset
    monkeypatch.chdir(tmp_path)
    save_config(make_config("tiny", num_epochs=1), "my.yaml")
    write_bundled_dataset("mydata")
    out = run_pipeline("my.yaml", "run", data_dir="mydata", stop_after="01_data", log=lambda *a, **k: None)
    assert (Path(out["run_dir"])/"data"/"clean_val.jsonl").read_text() == (tmp_path/"mydata"/"clean_val.jsonl").read_text()
    assert "num_epochs: 1" in (Path(out["run_dir"])/"config.yaml").read_text()

def test_restart_refuses_overrides_it_would_ignore(tmp_path):
    with pytest.raises(ValueError, match="00_config"):
        run_pipeline("tiny", tmp_path/"run", overrides={"num_epochs": 5}, start_at="03_eval", log=lambda *a, **k: None)
    with pytest.raises(ValueError, match="01_data"):
        run_pipeline("tiny", tmp_path/"run", data_dir=str(tmp_path), start_at="02_lora_train", log=lambda *a, **k: None)

@pytest.mark.slow
def test_cli_into_an_existing_run_says_what_to_do(small_run):
    r = subprocess.run([str(Path(sys.executable).parent/"claim_t5_run"), "--config", "tiny", "--run_dir", str(small_run["run_dir"])],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "--resume" in r.stderr and "Traceback" not in r.stderr
