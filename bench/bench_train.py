"""Training benchmarks for the tiny preset on the bundled data (CPU). Prints its figures and writes a JSON result to
bench/results/bench_train-<date>.json; asserts nothing.

1. Dynamic padding (the training collator: DataCollatorForSeq2Seq, pad to the batch's longest, labels padded with
   -100) against padding every example to max_input_length/max_target_length (128/256, as the reference script does),
   labels padded with -100 on both sides so both compute the same loss (checked: the first batch's loss on each side).
   Same model, data and batches; a warm-up, then `--repeats` measurements per side, each in a fresh process (so its
   peak RSS is its own), sides in alternating order. Figures: training examples/s, min/median/max.
2. The tiny preset end to end (3 epochs with per-epoch evaluation, then test-split evaluation), `--full_repeats` times,
   each in a fresh process after a short warm-up run: wall time, peak RSS, test ROUGE-L and fact accuracy.

Run: python bench/bench_train.py [--repeats 3] [--pad_steps 10] [--full_repeats 3] [--threads 1] [--skip_full] [--keep_model DIR]
"""
import argparse, json, shutil, statistics, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Timer, environment, in_fresh_process, job_main, save_result, spread

# ---------------------------------------------------------------- jobs (each runs in its own process)

def padding_job(side:str, steps:int, warmup_steps:int, threads:int) -> dict:
    "Training steps/s with the `side` collator ('dynamic' or 'max_length') on the tiny preset's model and batch size."
    import torch
    torch.set_num_threads(threads)
    from transformers import DataCollatorForSeq2Seq
    from claim_t5.config import make_config
    from claim_t5.data import load_claim_data, tokenize_splits
    from claim_t5.model import load_base_model, add_lora
    cfg = make_config("tiny")
    dsd = load_claim_data()
    model, tok, _ = load_base_model(cfg, list(dsd["train"]["input"]) + list(dsd["train"]["output"]))
    model = add_lora(model, cfg)
    bs, n = cfg.batch_size, warmup_steps + steps
    data = tokenize_splits(dsd, tok, cfg)["train"].select(range(n * bs))
    feats = [data[i] for i in range(len(data))]
    if side == "dynamic":  # exactly the collator build_trainer gives the Trainer (on a CPU: no pad_to_multiple_of)
        collate = DataCollatorForSeq2Seq(tok, model=model, label_pad_token_id=-100)
    else:
        def collate(batch):
            pad = lambda key, length, value: torch.tensor([f[key] + [value] * (length - len(f[key])) for f in batch])
            return dict(input_ids=pad("input_ids", cfg.max_input_length, tok.pad_token_id),
                        attention_mask=pad("attention_mask", cfg.max_input_length, 0),
                        labels=pad("labels", cfg.max_target_length, -100))
    batches = [collate(feats[i*bs:(i+1)*bs]) for i in range(n)]
    model.eval()
    with torch.no_grad(): first_loss = model(**batches[0]).loss.item()  # no dropout: comparable across sides
    model.train(); torch.manual_seed(0)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate)
    def step(b):
        model(**b).loss.backward(); opt.step(); opt.zero_grad()
    for b in batches[:warmup_steps]: step(b)
    with Timer() as t:
        for b in batches[warmup_steps:]: step(b)
    tokens = sum(b["input_ids"].numel() + b["labels"].numel() for b in batches[warmup_steps:])
    return dict(side=side, examples_per_s=steps * bs / t.s, seconds=t.s, padded_tokens_per_example=tokens / (steps * bs),
                first_batch_loss=first_loss, torch_threads=torch.get_num_threads())

def full_job(out_dir:str, keep_model:str|None, threads:int) -> dict:
    "The tiny preset end to end after a short warm-up run in the same process."
    import torch
    torch.set_num_threads(threads)
    from claim_t5.config import make_config
    from claim_t5.train import train
    from claim_t5.evaluation import evaluate_model
    out = Path(out_dir)
    train(make_config("tiny", output_dir=str(out/"warmup"), num_epochs=1, max_train_samples=64, max_eval_samples=8), verbose=False)
    cfg = make_config("tiny", output_dir=str(out/"model_training"))
    with Timer() as t: res = train(cfg, verbose=False)
    with Timer() as e: ev = evaluate_model(res.model_dir, progress=False)
    if keep_model:
        shutil.rmtree(keep_model, ignore_errors=True); shutil.copytree(res.model_dir, keep_model)
    return dict(train_and_epoch_eval_s=t.s, test_eval_s=e.s, epochs=len(res.history),
                val_rougeL_per_epoch=[round(h["rougeL"], 4) for h in res.history],
                test_rougeL=ev["rouge"]["rougeL"], test_fact_accuracy=ev["fact_accuracy"]["overall"],
                test_all_facts_correct=ev["fact_accuracy"]["all_facts_correct"])

JOBS = dict(padding=padding_job, full=full_job)

# ---------------------------------------------------------------- the benchmark

def bench_padding(repeats:int, steps:int, warmup_steps:int, threads:int) -> dict:
    runs = {"dynamic": [], "max_length": []}
    for r in range(repeats):
        for side in (("dynamic", "max_length") if r % 2 == 0 else ("max_length", "dynamic")):  # neither side always first
            res = in_fresh_process(__file__, "padding", side=side, steps=steps, warmup_steps=warmup_steps, threads=threads)
            runs[side].append(res)
            print(f"  repeat {r+1} {side:10s} {res['examples_per_s']:7.1f} examples/s, peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
    ratios = [d["examples_per_s"] / m["examples_per_s"] for d, m in zip(runs["dynamic"], runs["max_length"])]
    loss = {side: runs[side][0]["first_batch_loss"] for side in runs}
    med = {side: statistics.median(x["examples_per_s"] for x in runs[side]) for side in runs}
    return dict(steps_per_measurement=steps, warmup_steps=warmup_steps, torch_threads=runs["dynamic"][0]["torch_threads"],
                **{side: dict(examples_per_s=spread([x["examples_per_s"] for x in runs[side]], 1),
                              peak_rss_mb=spread([x["peak_rss_mb"] for x in runs[side]], 0),
                              padded_tokens_per_example=round(runs[side][0]["padded_tokens_per_example"], 1))
                   for side in runs},
                speedup_of_medians=round(med["dynamic"] / med["max_length"], 2), speedup_per_repeat=spread(ratios),
                same_loss_check=dict(first_batch_loss=loss, abs_diff=abs(loss["dynamic"] - loss["max_length"])))

def bench_full(repeats:int, keep_model:str|None, threads:int) -> dict:
    runs = []
    for r in range(repeats):
        tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
        try: res = in_fresh_process(__file__, "full", out_dir=str(tmp), keep_model=keep_model if r == repeats - 1 else None,
                                     threads=threads)
        finally: shutil.rmtree(tmp, ignore_errors=True)
        runs.append(res)
        print(f"  repeat {r+1}: train {res['train_and_epoch_eval_s']:.0f} s, test eval {res['test_eval_s']:.0f} s, "
              f"test ROUGE-L {res['test_rougeL']:.4f}, fact accuracy {res['test_fact_accuracy']:.4f}, "
              f"peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
    return dict(train_and_epoch_eval_s=spread([x["train_and_epoch_eval_s"] for x in runs], 1),
                test_eval_s=spread([x["test_eval_s"] for x in runs], 1),
                peak_rss_mb=spread([x["peak_rss_mb"] for x in runs], 0),
                test_rougeL=spread([x["test_rougeL"] for x in runs], 4),
                test_fact_accuracy=spread([x["test_fact_accuracy"] for x in runs], 4),
                val_rougeL_per_epoch=[x["val_rougeL_per_epoch"] for x in runs], kept_model=keep_model)

if __name__ == "__main__":
    if job_main(JOBS): sys.exit(0)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="padding measurements per side (after a warm-up)")
    ap.add_argument("--pad_steps", type=int, default=10, help="timed training steps per padding measurement")
    ap.add_argument("--pad_warmup_steps", type=int, default=2, help="untimed steps before each padding measurement")
    ap.add_argument("--full_repeats", type=int, default=3, help="end-to-end runs of the tiny preset")
    ap.add_argument("--skip_full", action="store_true", help="only the padding comparison")
    ap.add_argument("--keep_model", default=None, help="copy the last end-to-end run's fine_tuned_model here (for bench_generate)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steady figures on a shared machine)")
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    a = ap.parse_args()
    import torch; torch.set_num_threads(a.threads)
    from claim_t5.config import make_config
    res = dict(benchmark="bench_train", **environment(), model=make_config("tiny").model_label, data="bundled 5289/661/662")
    print(f"machine: {res['machine']}; torch threads {res['torch_threads']}; load {res['load_average_at_start']}; commit {res['git_commit']}")
    print(f"model: {res['model']}; data: {res['data']}")
    print(f"dynamic padding vs padding to 128/256 (labels -100 on both sides), {a.repeats} repeats:")
    res["padding"] = bench_padding(a.repeats, a.pad_steps, a.pad_warmup_steps, a.threads)
    p = res["padding"]
    print(f"  examples/s median (min-max): dynamic {p['dynamic']['examples_per_s']['median']} "
          f"({p['dynamic']['examples_per_s']['min']}-{p['dynamic']['examples_per_s']['max']}), max_length "
          f"{p['max_length']['examples_per_s']['median']} ({p['max_length']['examples_per_s']['min']}-"
          f"{p['max_length']['examples_per_s']['max']}); speedup {p['speedup_of_medians']}x (per repeat "
          f"{p['speedup_per_repeat']['min']}-{p['speedup_per_repeat']['max']}); first-batch loss differs by "
          f"{p['same_loss_check']['abs_diff']:.2e}")
    if not a.skip_full:
        print(f"tiny preset end to end (3 epochs + per-epoch eval, then the test split), {a.full_repeats} repeats:")
        res["tiny_full"] = bench_full(a.full_repeats, a.keep_model, a.threads)
        f = res["tiny_full"]
        print(f"  train median {f['train_and_epoch_eval_s']['median']} s ({f['train_and_epoch_eval_s']['min']}-"
              f"{f['train_and_epoch_eval_s']['max']}); peak RSS median {f['peak_rss_mb']['median']} MB; test ROUGE-L "
              f"median {f['test_rougeL']['median']}; fact accuracy median {f['test_fact_accuracy']['median']}")
    print("saved", save_result("bench_train", res, *( [a.out] if a.out else [])))
