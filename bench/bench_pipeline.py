"""A preset through the notebooks, as a user runs it: `claim_t5_run --config NAME [--data_dir DATA --set ...]` (papermill,
all five stages, one run folder). Records each stage's wall time, the epochs training ran (the scratch preset stops
early), the test scores the run printed (ROUGE, all facts correct), and the load averages sampled while it ran (other
processes may share the cores), and writes bench/results/bench_pipeline-<data>-<config>-<date>.json. Asserts nothing.

Run: python bench/bench_pipeline.py bundled --config scratch
     python bench/bench_pipeline.py ../shared/datasets/rnnlg_tv --config scratch --set fields=auto [--keep runs/tv]
"""
import argparse, json, os, re, shutil, subprocess, sys, tempfile
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, Timer, environment, save_result
from bench_presets import LoadSampler

BIN = Path(sys.executable).parent

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="a data folder, or 'bundled'")
    ap.add_argument("--config", default="scratch", help="preset name or YAML")
    ap.add_argument("--set", default=None, help="config overrides as for claim_t5_run --set")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS (torch threads) for every stage")
    ap.add_argument("--keep", default=None, help="the run folder to keep (default: a temporary folder, removed)")
    a = ap.parse_args()
    bundled = a.data == "bundled"
    run_dir = Path(a.keep).resolve() if a.keep else Path(tempfile.mkdtemp(prefix="bench_pipeline-"))/"run"
    if run_dir.exists(): raise SystemExit(f"{run_dir} exists: choose another --keep folder")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(a.threads)}
    cmd = [str(BIN/"claim_t5_run"), "--config", a.config, "--run_dir", str(run_dir),
           *([] if bundled else ["--data_dir", str(Path(a.data).resolve())]), *(["--set", a.set] if a.set else [])]
    env_info = environment(); env_info["torch_threads"] = a.threads
    sampler = LoadSampler(); sampler.start()
    print(" ".join(cmd[1:]), flush=True)
    with Timer() as t:
        p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, errors="replace")
    sampler.stop.set()
    print(p.stdout[-2500:])
    if p.returncode: raise SystemExit(f"claim_t5_run failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    model_dir = run_dir/"model_training"/"fine_tuned_model"
    res = json.loads((model_dir/"test_results.json").read_text())
    hist = json.loads((model_dir/"history.json").read_text())
    stages = {m[0]: float(m[1]) for m in re.findall(r"(\d\d_\w+) done in ([\d.]+) s", p.stdout)}
    fa = res["fact_accuracy"]
    result = dict(benchmark="bench_pipeline", data=a.data if not bundled else "bundled", config=a.config, set=a.set,
                  model=res.get("base_model"), wall_s=round(t.s, 1), stage_s=stages, epochs_run=len(hist),
                  best_epoch=max(hist, key=lambda r: r.get("rougeL") or 0).get("epoch") if hist else None,
                  test_examples=res["examples"], rouge={k: round(v, 4) for k, v in res["rouge"].items()},
                  all_facts_correct=round(fa["all_facts_correct"], 4), fact_accuracy=round(fa["overall"], 4),
                  any_invented=round(fa["any_invented"], 4), summary_line=[l for l in p.stdout.splitlines() if l.startswith("test scores")],
                  load_average_samples=[round(x, 2) for x in sampler.values], environment=env_info)
    name = f"bench_pipeline-{Path(a.data).name if not bundled else 'bundled'}-{Path(a.config).stem}"
    print(f"saved {save_result(name, result)}")
    if not a.keep: shutil.rmtree(run_dir.parent, ignore_errors=True)

if __name__ == "__main__": main()
