"""Generation-time fact repairs on a trained model, without retraining: (a) forbidding the placeholders of the copy
fields an input lacks (always on in generate_reports; "off" here patches it out to show what it changes) and (b)
`gen_rerank: k`, the first of k beam candidates that passes the fact check. Each variant evaluates a copy of the
model folder on a split with claim_t5's own evaluation (ROUGE best of the references, the saved fact check) and
records the generation time, the reports with an unfilled placeholder (`[field]`) and the 1-minute load sampled every
10 s. Writes bench/results/bench_rerank-<data>-<date>.json. Asserts nothing.

Run: OMP_NUM_THREADS=1 python bench/bench_rerank.py MODEL_DIR DATA_DIR [--variants off:0,on:0,on:4,on:8]
"""
import argparse, os, re, shutil, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, save_result, spread
from bench_presets import LoadSampler

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir"); ap.add_argument("data")
    ap.add_argument("--split", default="test")
    ap.add_argument("--variants", default="off:0,on:0,on:4,on:8", help="forbid(on|off):rerank, comma-separated")
    a = ap.parse_args()
    import torch; torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    import claim_t5.generate as cm  # generate_reports reads absent_placeholder_ids from its own module
    from claim_t5.evaluation import evaluate_model
    real = cm.absent_placeholder_ids
    rows = []
    for v in a.variants.split(","):
        forbid, k = v.split(":"); k = int(k)
        cm.absent_placeholder_ids = real if forbid == "on" else (lambda tok, inputs, cfg: [[] for _ in inputs])
        tmp = Path(tempfile.mkdtemp(prefix="bench_rerank-"))/"model"
        shutil.copytree(a.model_dir, tmp)  # evaluation writes its results into the folder: never the original
        sampler = LoadSampler(); sampler.start()
        t0 = time.time()
        res = evaluate_model(tmp, a.data, split=a.split, rerank=k, progress=False)
        wall = time.time() - t0
        sampler.stop.set(); sampler.join()
        preds = list(res["report"]["prediction"])
        fa = res["fact_accuracy"]
        row = dict(forbid_absent_placeholders=forbid == "on", rerank=k, generation=res["generation"], wall_s=round(wall, 1),
                   reports_per_second=res["reports_per_second"], rouge=res["rouge"],
                   all_facts_correct=fa.get("all_facts_correct"), facts_overall=fa.get("overall"),
                   per_field=fa.get("per_field"), unfilled_placeholders=sum(bool(re.search(r"\[[a-z_]+\]", p)) for p in preds),
                   load_average_1min=spread(sampler.values or [os.getloadavg()[0]]))
        print(f"forbid={forbid} rerank={k}: ROUGE-L {res['rouge']['rougeL']:.3f}, all facts correct {row['all_facts_correct']:.3f}, "
              f"unfilled placeholders {row['unfilled_placeholders']}, {wall:.0f} s, load {row['load_average_1min']['median']}", flush=True)
        rows.append(row)
        shutil.rmtree(tmp.parent)
    cm.absent_placeholder_ids = real
    out = dict(benchmark="bench_rerank", model_dir=str(a.model_dir), data=str(a.data), split=a.split, examples=res["examples"],
               environment=environment(), variants=rows)
    print(save_result(f"bench_rerank-{Path(a.data).name}", out))

if __name__ == "__main__": main()
