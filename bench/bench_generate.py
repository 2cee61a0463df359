"""Generation benchmark: the batched, length-sorted generator against one input at a time (the reference approach),
with the same generation settings on both sides, on the bundled test split. Prints reports/s, the ratio, how many
reports are identical, and the tiny model's test ROUGE and fact accuracy. Asserts nothing.

Run: .venv/bin/python bench/bench_generate.py --model_dir runs/tiny/model_training/fine_tuned_model [--n 662] [--num_beams 4]
"""
import argparse, json, os, platform, time
from pathlib import Path

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model_dir", default="runs/tiny/model_training/fine_tuned_model")
    ap.add_argument("--n", type=int, default=662, help="test inputs to generate for")
    ap.add_argument("--num_beams", type=int, default=4, help="beam width on both sides (the reference uses 4)")
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--out", default="bench/results")
    a = ap.parse_args()
    import torch
    from claim_t5.data import load_claim_data, rouge_scores
    from claim_t5.model import load_fine_tuned, generate_reports
    from claim_t5.facts import fact_accuracy, model_inputs, decode_generated
    from claim_t5.config import generation_kwargs
    model, tok, cfg = load_fine_tuned(a.model_dir, device="cpu")
    test = load_claim_data()["test"]
    inputs, refs = list(test["input"])[:a.n], list(test["output"])[:a.n]
    gen = generation_kwargs(cfg, num_beams=a.num_beams)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(f"model: {cfg.model_label} from {a.model_dir}")
    print(f"{len(inputs)} test inputs, generation {gen}")
    t0 = time.time(); batched = generate_reports(model, tok, inputs, batch_size=a.batch_size, max_input_length=cfg.max_input_length, **gen)
    tb = time.time() - t0
    t0 = time.time()
    single = []
    with torch.inference_mode():
        for x in inputs:  # the reference approach: one input at a time
            enc = tok(model_inputs([x], cfg)[0], return_tensors="pt", truncation=True, max_length=cfg.max_input_length)
            single.append(decode_generated(tok, model.generate(**enc, **gen), [x], cfg)[0])  # placeholders restored
    ts = time.time() - t0
    same = sum(str(b) == s for b, s in zip(batched, single))
    res = dict(n=len(inputs), generation=gen, batch_size=a.batch_size,
               batched_reports_per_s=round(len(inputs) / tb, 2), one_at_a_time_reports_per_s=round(len(inputs) / ts, 2),
               speedup=round(ts / tb, 2), identical_reports=f"{same}/{len(inputs)}",
               rouge_batched={k: round(v, 4) for k, v in rouge_scores(batched, refs).items()},
               rouge_one_at_a_time={k: round(v, 4) for k, v in rouge_scores(single, refs).items()},
               all_facts_correct_batched=round(fact_accuracy(inputs, batched, model.claim_t5_facts)["all_facts_correct"], 4),
               all_facts_correct_one_at_a_time=round(fact_accuracy(inputs, single, model.claim_t5_facts)["all_facts_correct"], 4))
    print(json.dumps(res, indent=2))
    Path(a.out).mkdir(parents=True, exist_ok=True); (Path(a.out)/"bench_generate.json").write_text(json.dumps(res, indent=2))
