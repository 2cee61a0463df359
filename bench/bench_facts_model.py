"""Facts of a trained model (issue 10's Must-reach): trains the tiny preset on the bundled data (placeholders on, as the
preset says), then generates for the 662 test inputs and for a set of inputs the bundled generator cannot produce
(tests/test_facts.py's `unseen_inputs`: 7-digit ids, other id prefixes, vendors with `&`, accents and digits, damage
words outside its lists). Prints and saves: test ROUGE, all facts correct, per field, invented share; on the unseen set
copy facts verbatim and how many unseen category values were flagged. Asserts nothing.

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/bench_facts_model.py [--out_dir runs/bench_facts] [--set "num_epochs=3"]
"""
import argparse, json, os, platform, subprocess, sys, time
from pathlib import Path

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out_dir", default="runs/bench_facts")
    ap.add_argument("--set", default="", help='config overrides, e.g. "copy_placeholders=false"')
    ap.add_argument("--out", default="bench/results")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from claim_t5.config import make_config, parse_set, generation_kwargs
    from claim_t5.synth import generate_dataset
    from claim_t5.schema import parse_metadata
    from claim_t5.rouge import rouge_scores
    from claim_t5.facts import fact_accuracy
    from claim_t5.fine_tuned import load_fine_tuned
    from claim_t5.train import train
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent/"tests"))
    from test_facts import unseen_inputs
    cfg = make_config("tiny", output_dir=str(Path(a.out_dir)/"model_training"), **parse_set(a.set))
    t0 = time.time(); res = train(cfg, verbose=False); train_s = time.time() - t0
    ft = load_fine_tuned(res.model_dir, device="cpu")
    mcfg, checker = ft.config, ft.checker
    gen = generation_kwargs(mcfg)
    test = generate_dataset()["test"]
    inputs, refs = [r["input"] for r in test], [r["output"] for r in test]
    t0 = time.time(); preds = ft.reports(inputs, batch_size=64, **gen); gen_s = time.time() - t0
    fa = fact_accuracy(inputs, preds, checker)
    u = unseen_inputs()
    up = ft.reports(u, batch_size=64, **gen)
    fu = fact_accuracy(u, up, checker)
    copy = [r["fields"][f] == "ok" for r in fu["rows"] for f in ("shipment_id", "image_id", "vendor") if r["fields"][f] is not None]
    expect = [bool(checker.unseen(parse_metadata(i))) for i in u]
    flagged = [bool(r["unseen"]) for r in fu["rows"]]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = dict(model=mcfg.model_label, copy_placeholders=mcfg.copy_placeholders, train_s=round(train_s),
               val_per_epoch=[{k: (round(v, 4) if isinstance(v, float) else v) for k, v in h.items()
                               if k in ("epoch", "rougeL", "all_facts_correct", "invented")} for h in res.history],
               test_rouge={k: round(v, 4) for k, v in rouge_scores(preds, refs).items()},
               test_all_facts_correct=round(fa["all_facts_correct"], 4), test_any_invented=round(fa["any_invented"], 4),
               test_per_field={k: (round(v, 4) if v is not None else None) for k, v in fa["per_field"].items()},
               test_reports_per_s=round(len(inputs) / gen_s, 1),
               unseen_inputs=len(u), unseen_copy_verbatim=round(sum(copy) / len(copy), 4),
               unseen_values_flagged=f"{sum(f and e for f, e in zip(flagged, expect))}/{sum(expect)}",
               unseen_all_facts_correct_where_all_values_seen=round(
                   sum(r["ok"] for r, e in zip(fu["rows"], expect) if not e) / max(1, sum(not e for e in expect)), 4),
               test_failing_examples=[(i, str(p), r["problems"]) for i, p, r in zip(inputs, preds, fa["rows"]) if not r["ok"]][:10],
               machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
               torch=torch.__version__, claim_t5_commit=commit, date=time.strftime("%Y-%m-%d %H:%M"))
    print(json.dumps(out, indent=2, default=str))
    Path(a.out).mkdir(parents=True, exist_ok=True)
    name = "bench_facts_model.json" if mcfg.copy_placeholders else "bench_facts_model_off.json"
    (Path(a.out)/name).write_text(json.dumps(out, indent=2, default=str) + "\n")
