"""Generation benchmark: the batched, length-sorted generator against one input at a time (the reference approach),
with the same generation settings on both sides, on the bundled test split. Prints its figures and writes a JSON
result to bench/results/bench_generate-<date>.json; asserts nothing.

Each side is warmed up (a few inputs), then measured `--repeats` times in alternating order (neither side always
first); reports/s as min/median/max, the speed-up as the ratio of the medians (and per repeat). Also: how many reports
the two sides write identically, and the tiny model's test ROUGE and fact accuracy for each.

Run: python bench/bench_generate.py --model_dir runs/<run>/model_training/fine_tuned_model [--n 662] [--num_beams 4] [--repeats 3]
"""
import argparse, statistics, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Timer, environment, peak_rss_mb, save_result, spread

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model_dir", required=True, help="a fine_tuned_model/ folder (e.g. from bench_train.py --keep_model)")
    ap.add_argument("--n", type=int, default=662, help="test inputs to generate for")
    ap.add_argument("--num_beams", type=int, default=4, help="beam width on both sides (the reference uses 4)")
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=8, help="inputs generated on each side before measuring")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steady figures on a shared machine)")
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    from claim_t5.data import load_claim_data
    from claim_t5.rouge import rouge_scores
    from claim_t5.fine_tuned import load_fine_tuned
    from claim_t5.facts import fact_accuracy
    from claim_t5.config import generation_kwargs
    ft = load_fine_tuned(a.model_dir, device="cpu"); cfg = ft.config
    test = load_claim_data()["test"]
    inputs, refs = list(test["input"])[:a.n], list(test["output"])[:a.n]
    gen = generation_kwargs(cfg, num_beams=a.num_beams)
    res = dict(benchmark="bench_generate", **environment(), model=cfg.model_label, model_dir=str(a.model_dir),
               n=len(inputs), generation=gen, batch_size=a.batch_size, warmup_inputs=a.warmup)
    print(f"machine: {res['machine']}; torch threads {res['torch_threads']}; load {res['load_average_at_start']}; commit {res['git_commit']}")
    print(f"model: {cfg.model_label} from {a.model_dir}; {len(inputs)} test inputs; generation {gen}")

    def batched(xs): return ft.reports(xs, batch_size=a.batch_size, max_input_length=cfg.max_input_length, **gen)
    def one_at_a_time(xs):  # the reference approach: one generate() per input (same placeholders and fact check)
        return [ft.reports([x], batch_size=1, max_input_length=cfg.max_input_length, **gen)[0] for x in xs]
    sides = dict(batched=batched, one_at_a_time=one_at_a_time)
    for f in sides.values(): f(inputs[:a.warmup])
    rates, reports = {k: [] for k in sides}, {}
    for r in range(a.repeats):
        for name in (("batched", "one_at_a_time") if r % 2 == 0 else ("one_at_a_time", "batched")):
            with Timer() as t: reports[name] = sides[name](inputs)
            rates[name].append(len(inputs) / t.s)
            print(f"  repeat {r+1} {name:13s} {rates[name][-1]:7.2f} reports/s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    same = sum(b == s for b, s in zip(reports["batched"], reports["one_at_a_time"]))
    res.update(reports_per_s={k: spread(v) for k, v in rates.items()},
               speedup_of_medians=round(med["batched"] / med["one_at_a_time"], 2),
               speedup_per_repeat=spread([b / s for b, s in zip(rates["batched"], rates["one_at_a_time"])]),
               identical_reports=f"{same}/{len(inputs)}",
               rouge={k: {m: round(v, 4) for m, v in rouge_scores(reports[k], refs).items()} for k in sides},
               fact_accuracy={k: round(fact_accuracy(inputs, reports[k], ft.checker)["all_facts_correct"], 4) for k in sides},
               peak_rss_mb_whole_run=peak_rss_mb())  # both sides in one process: not a per-side figure
    b, s = res["reports_per_s"]["batched"], res["reports_per_s"]["one_at_a_time"]
    print(f"reports/s median (min-max): batched {b['median']} ({b['min']}-{b['max']}), one at a time {s['median']} "
          f"({s['min']}-{s['max']}); speedup {res['speedup_of_medians']}x (per repeat {res['speedup_per_repeat']['min']}-"
          f"{res['speedup_per_repeat']['max']}); identical reports {res['identical_reports']}")
    print(f"test ROUGE-L batched {res['rouge']['batched']['rougeL']}, one at a time {res['rouge']['one_at_a_time']['rougeL']}; "
          f"fact accuracy {res['fact_accuracy']}")
    print("saved", save_result("bench_generate", res, *([a.out] if a.out else [])))
