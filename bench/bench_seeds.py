"""How much the tiny preset's test scores move with the seed: train + evaluate the tiny preset on the bundled data with
three seeds (each in its own process), and report test ROUGE and fact accuracy per seed with min/median/max.

Run: python bench/bench_seeds.py [--seeds 42,43,44]. Takes ~3-4 minutes per seed on 2 CPU cores. Asserts nothing.
"""
import argparse, json, sys, tempfile
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, spread, in_fresh_process, job_main, save_result

def one_seed(seed:int) -> dict:
    import time
    from claim_t5.config import make_config
    from claim_t5.train import train
    from claim_t5.evaluation import evaluate_model
    out = tempfile.mkdtemp()
    t0 = time.time()
    res = train(make_config("tiny", seed=seed, output_dir=f"{out}/model_training"), verbose=False)
    train_s = time.time() - t0
    ev = evaluate_model(res.model_dir, progress=False)
    fa = {k: v for k, v in ev["fact_accuracy"].items() if not isinstance(v, (list, dict))}
    return dict(seed=seed, train_s=round(train_s, 1), rouge=ev["rouge"], fact_accuracy=fa,
                per_field=ev["fact_accuracy"].get("per_field"), history=res.history)

if __name__ == "__main__":
    if job_main({"one_seed": one_seed}): sys.exit(0)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="42,43,44")
    a = ap.parse_args()
    env = environment()
    print(f"machine: {env['machine']}; torch threads {env['torch_threads']}; model: tiny T5 built locally (NOT flan-t5-base)")
    runs = []
    for s in [int(x) for x in a.seeds.split(",")]:
        print(f"seed {s}: training and evaluating ...", flush=True)
        r = in_fresh_process(__file__, "one_seed", seed=s); runs.append(r)
        print(f"  ROUGE-L {r['rouge']['rougeL']:.4f}  all facts correct {r['fact_accuracy'].get('all_facts_correct')}  ({r['train_s']} s)", flush=True)
    keys = [("rougeL", lambda r: r["rouge"]["rougeL"]), ("rouge1", lambda r: r["rouge"]["rouge1"]), ("rouge2", lambda r: r["rouge"]["rouge2"])]
    keys += [(k, (lambda k: lambda r: r["fact_accuracy"][k])(k)) for k, v in runs[0]["fact_accuracy"].items() if isinstance(v, (int, float))]
    summary = {k: spread([f(r) for r in runs], 4) for k, f in keys}
    for k, v in summary.items(): print(f"{k:28s} min {v['min']:.4f}  median {v['median']:.4f}  max {v['max']:.4f}")
    print("wrote", save_result("bench_seeds", dict(environment=env, seeds=[r["seed"] for r in runs], summary=summary, runs=runs)))
