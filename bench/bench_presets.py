"""A preset end to end on a dataset, with config only, as a user would run it: `claim_t5_train --config NAME --data_dir
DATA --set fields=auto`, then `claim_t5_eval` on the test split. Records the training wall time, the epochs trained
(the scratch preset stops early), test ROUGE (best of each example's references) and the fact check, with the load
averages sampled every 10 s while it ran (other processes share this machine's cores), and writes
bench/results/bench_presets-<data>-<config>-<date>.json. Asserts nothing.

Run: python bench/bench_presets.py ../shared/datasets/rnnlg_tv --config scratch [--threads 1] [--set "k=v ..."] [--keep DIR]
     (DATA "bundled" runs on the bundled claims, with their declared schema unless --set says fields=auto)
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, threading, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, Timer, environment, save_result, spread

BIN = Path(sys.executable).parent

class LoadSampler(threading.Thread):
    "Samples the 1-minute load average every `every` seconds while a run goes on."
    def __init__(self, every:float=10.0):
        super().__init__(daemon=True); self.every, self.values, self.stop = every, [], threading.Event()
    def run(self):
        while not self.stop.is_set():
            self.values.append(os.getloadavg()[0]); self.stop.wait(self.every)

def run(cmd:list, env:dict, log:Path) -> float:
    "Run `cmd`, its output to `log`; the wall time in seconds (an error names the log's last lines)."
    with Timer() as t, open(log, "w") as f: r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    if r.returncode: raise SystemExit(f"{cmd[0]} failed (exit {r.returncode}); last lines of {log}:\n" + log.read_text()[-3000:])
    return t.s

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="a data folder, or 'bundled'")
    ap.add_argument("--config", default="scratch", help="preset name or YAML")
    ap.add_argument("--set", default="fields=auto", help="config overrides as for claim_t5_train --set")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS (torch threads) for training and evaluation")
    ap.add_argument("--keep", default=None, help="keep the run's output_dir here (default: a temporary folder, removed)")
    a = ap.parse_args()
    bundled = a.data == "bundled"
    out = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench_presets-"))
    if out.exists() and a.keep: shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": str(a.threads)}
    data_args = [] if bundled else ["--data_dir", a.data]
    env_info = environment(); env_info["torch_threads"] = a.threads  # the subprocesses' setting, not this process's
    sampler = LoadSampler(); sampler.start()
    train_s = run([str(BIN/"claim_t5_train"), "--config", a.config, *data_args, "--output_dir", str(out/"mt"),
                   *(["--set", a.set] if a.set else [])], env, out/"train.log")
    train_load = list(sampler.values)
    model_dir = out/"mt"/"fine_tuned_model"
    eval_s = run([str(BIN/"claim_t5_eval"), "--model_dir", str(model_dir), *data_args], env, out/"eval.log")
    sampler.stop.set()
    res = json.loads((model_dir/"test_results.json").read_text())
    hist = json.loads((model_dir/"history.json").read_text())
    run_cfg = (model_dir/"claim_t5_config.yaml").read_text()
    import yaml
    cfg = yaml.safe_load(run_cfg)
    fa = res["fact_accuracy"]
    result = dict(
        benchmark="bench_presets", data=a.data, config=a.config, overrides=a.set, environment=env_info,
        base_model=res["base_model"], finetune=cfg.get("finetune", "lora"),
        training=dict(wall_s=round(train_s, 1), epochs_trained=len(hist), num_epochs_max=cfg["num_epochs"],
                      early_stopping_patience=cfg.get("early_stopping_patience"),
                      best_val_rougeL=max((h["rougeL"] or 0) for h in hist) if hist else None,
                      history=[{k: h[k] for k in ("epoch", "train_loss", "val_loss", "rougeL", "all_facts_correct")} for h in hist],
                      load_average_1min=spread(train_load) if train_load else None),
        evaluation=dict(wall_s=round(eval_s, 1), split=res["split"], examples=res["examples"], references=res["references"],
                        rouge=res["rouge"], all_facts_correct=fa["all_facts_correct"], facts_overall=fa["overall"],
                        per_field=fa["per_field"], any_invented=fa.get("any_invented"), reports_per_second=res["reports_per_second"],
                        load_average_1min=spread(sampler.values[len(train_load):]) if sampler.values[len(train_load):] else None),
        fields=[dict(f) for f in cfg["fields"]] if isinstance(cfg["fields"], list) else cfg["fields"],
        model_dir=str(model_dir) if a.keep else None)
    name = f"bench_presets-{'bundled' if bundled else Path(a.data).name}-{Path(a.config).stem}"
    path = save_result(name, result)
    print(json.dumps({k: result[k] for k in ("data", "config", "base_model")}, indent=None))
    print(f"training {train_s:.0f} s ({len(hist)} epochs), test ROUGE-L {res['rouge']['rougeL']:.4f}, all facts correct "
          f"{fa['all_facts_correct']}, load (1 min) during training {result['training']['load_average_1min']}")
    print(f"wrote {path}")
    if not a.keep: shutil.rmtree(out, ignore_errors=True)

if __name__ == "__main__":
    main()
