"""Training benchmarks for the tiny preset on the bundled data (CPU). Prints its figures; asserts nothing.

1. The tiny preset end to end: 3 epochs with per-epoch evaluation, wall time, peak memory (RSS) and test ROUGE-L.
2. Dynamic padding (DataCollatorForSeq2Seq, labels padded with -100) against padding every example to 128/256 tokens
   (as the reference script does), on the same model and data: training examples per second, measured side by side.

Run: .venv/bin/python bench/bench_train.py [--skip_full] [--pad_steps 30]
"""
import argparse, json, os, platform, resource, shutil, tempfile, time
from pathlib import Path

def peak_rss_mb() -> float: return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def machine() -> str:
    import torch
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"

def bench_full(out_dir: Path) -> dict:
    from claim_t5.config import make_config
    from claim_t5.train import train
    from claim_t5.evaluation import evaluate_model
    cfg = make_config("tiny", output_dir=str(out_dir/"model_training"))
    t0 = time.time(); res = train(cfg, verbose=False); train_s = time.time() - t0
    t0 = time.time(); ev = evaluate_model(res.model_dir, progress=False); eval_s = time.time() - t0
    return dict(train_and_epoch_eval_s=round(train_s, 1), test_eval_s=round(eval_s, 1), epochs=len(res.history),
                val_rougeL_per_epoch=[round(h["rougeL"], 4) for h in res.history],
                test_rouge={k: round(v, 4) for k, v in ev["rouge"].items()},
                test_fact_accuracy=round(ev["fact_accuracy"]["overall"], 4),
                test_all_facts_correct=round(ev["fact_accuracy"]["all_facts_correct"], 4), peak_rss_mb=round(peak_rss_mb()))

def bench_padding(steps: int) -> dict:
    "Examples/s of training steps with dynamic padding vs padding to max_length, same model, data and order."
    import torch
    from transformers import DataCollatorForSeq2Seq
    from claim_t5.config import make_config
    from claim_t5.data import load_claim_data, tokenize_splits
    from claim_t5.model import load_base_model, add_lora
    cfg = make_config("tiny")
    dsd = load_claim_data()
    model, tok, _ = load_base_model(cfg, list(dsd["train"]["input"]) + list(dsd["train"]["output"]))
    model = add_lora(model, cfg); model.train()
    data = tokenize_splits(dsd, tok, cfg)["train"].select(range(steps * cfg.batch_size))
    feats = [data[i] for i in range(len(data))]
    dynamic = DataCollatorForSeq2Seq(tok, model=model, label_pad_token_id=-100)
    def fixed(batch):  # the reference script: every example padded to 128/256, labels keep the pad id
        ids = tok.pad([{"input_ids": f["input_ids"]} for f in batch], padding="max_length", max_length=cfg.max_input_length, return_tensors="pt")
        lab = tok.pad([{"input_ids": f["labels"]} for f in batch], padding="max_length", max_length=cfg.max_target_length, return_tensors="pt")
        return dict(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"], labels=lab["input_ids"])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    out = {}
    for name, collate in (("dynamic", dynamic), ("max_length", fixed), ("dynamic_again", dynamic)):
        torch.manual_seed(0); t0 = time.time(); tokens = 0
        for i in range(steps):
            b = collate(feats[i*cfg.batch_size:(i+1)*cfg.batch_size])
            tokens += b["input_ids"].numel() + b["labels"].numel()
            loss = model(**{k: v for k, v in b.items() if k in ("input_ids", "attention_mask", "labels")}).loss
            loss.backward(); opt.step(); opt.zero_grad()
        s = time.time() - t0
        out[name] = dict(examples_per_s=round(steps * cfg.batch_size / s, 1), padded_tokens_per_example=round(tokens / (steps * cfg.batch_size), 1))
    out["speedup_dynamic_vs_max_length"] = round(out["dynamic"]["examples_per_s"] / out["max_length"]["examples_per_s"], 2)
    return out

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip_full", action="store_true"); ap.add_argument("--pad_steps", type=int, default=30)
    ap.add_argument("--out", default="bench/results")
    a = ap.parse_args()
    from claim_t5.config import make_config
    print("machine:", machine()); print(f"model: {make_config('tiny').model_label}; data: bundled 5289/661/662")
    res = {"machine": machine()}
    res["padding"] = bench_padding(a.pad_steps); print("padding:", json.dumps(res["padding"], indent=2))
    if not a.skip_full:
        tmp = Path(tempfile.mkdtemp())
        try: res["tiny_full"] = bench_full(tmp)
        finally: shutil.rmtree(tmp, ignore_errors=True)
        print("tiny preset, 3 epochs + per-epoch eval:", json.dumps(res["tiny_full"], indent=2))
    Path(a.out).mkdir(parents=True, exist_ok=True); (Path(a.out)/"bench_train.json").write_text(json.dumps(res, indent=2))
