"""GPU path of the reference recipe, measured without the hub: a randomly initialised model with exactly
google/flan-t5-base's configuration (same shapes, same FLOPs), LoRA r=8 on q,v, batch 4, AdamW 2e-5, trained for a few
hundred steps by claim_t5's ClaimTrainer (non-finite-loss guard active) in fp16 and in bf16. Prints samples/s, peak GPU
memory and the projected time for 3 epochs of 5289 examples. Asserts nothing.

Random weights mean the losses are not meaningful; the speed and memory are. Sequence lengths follow the bundled data
(about 48 input and 64 label tokens per example).

Run on a GPU: python bench/bench_gpu.py --steps 300
Smoke check on a CPU: python bench/bench_gpu.py --steps 2 --precisions no
"""
import argparse, json, math, time
from pathlib import Path

FLAN_T5_BASE = dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_decoder_layers=12, num_heads=12,
                    feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.1,
                    relative_attention_num_buckets=32, relative_attention_max_distance=128, layer_norm_epsilon=1e-6,
                    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)

def run(precision: str, steps: int, in_len: int, out_len: int, out_dir: Path) -> dict:
    import torch
    from datasets import Dataset
    from transformers import T5Config, T5ForConditionalGeneration, Seq2SeqTrainingArguments, DataCollatorForSeq2Seq, set_seed
    from claim_t5.config import make_config
    from claim_t5.model import add_lora, count_parameters
    from claim_t5.train import ClaimTrainer
    set_seed(42)
    cfg = make_config("flan-t5-base")
    model = T5ForConditionalGeneration(T5Config(**FLAN_T5_BASE))
    model = add_lora(model, cfg)
    g = torch.Generator().manual_seed(0)
    n = steps * cfg.batch_size
    ids = torch.randint(3, 32000, (n, in_len), generator=g); labels = torch.randint(3, 32000, (n, out_len), generator=g)
    ids[:, -1] = 1; labels[:, -1] = 1
    ds = Dataset.from_dict(dict(input_ids=ids.tolist(), attention_mask=torch.ones_like(ids).tolist(), labels=labels.tolist()))
    cuda = torch.cuda.is_available()
    args = Seq2SeqTrainingArguments(output_dir=str(out_dir/precision), per_device_train_batch_size=cfg.batch_size, max_steps=steps,
                                    learning_rate=cfg.learning_rate, warmup_steps=min(cfg.warmup_steps, steps // 3),
                                    weight_decay=cfg.weight_decay, optim=cfg.optimizer, lr_scheduler_type=cfg.lr_scheduler,
                                    fp16=precision == "fp16", bf16=precision == "bf16", use_cpu=not cuda, save_strategy="no",
                                    eval_strategy="no", logging_steps=max(1, steps // 10), report_to=[], seed=42,
                                    dataloader_num_workers=2 if cuda else 0, disable_tqdm=True)
    class _Pad:  # fixed lengths already; the collator only stacks
        def __call__(self, feats): return {k: torch.tensor([f[k] for f in feats]) for k in feats[0]}
    trainer = ClaimTrainer(model=model, args=args, train_dataset=ds, data_collator=_Pad())
    if cuda: torch.cuda.reset_peak_memory_stats(); torch.cuda.synchronize()
    t0 = time.time(); out = trainer.train(); wall = time.time() - t0
    sps = out.metrics["train_samples_per_second"]
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return dict(precision=precision, steps=steps, samples_per_s=round(sps, 2), wall_s=round(wall, 1),
                peak_gpu_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
                projected_3_epochs_5289_min=round(3 * 5289 / sps / 60, 1), first_last_loss=[losses[0], losses[-1]] if losses else None,
                parameters=count_parameters(model))

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300); ap.add_argument("--precisions", default="fp16,bf16")
    ap.add_argument("--in_len", type=int, default=48); ap.add_argument("--out_len", type=int, default=64)
    ap.add_argument("--out", default="bench/results")
    a = ap.parse_args()
    import torch, tempfile
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (no GPU: figures are not GPU figures)"
    print(f"device: {dev}; torch {torch.__version__}; model: random init, google/flan-t5-base config; LoRA r=8 q,v; batch 4")
    res = dict(device=dev, results=[])
    for p in a.precisions.split(","):
        if p == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported(including_emulation=False):
            print("bf16: not supported natively on this GPU, skipped"); continue
        try: r = run(p, a.steps, a.in_len, a.out_len, Path(tempfile.mkdtemp()))
        except Exception as e: r = dict(precision=p, error=f"{type(e).__name__}: {e}")
        print(json.dumps(r)); res["results"].append(r)
    Path(a.out).mkdir(parents=True, exist_ok=True); (Path(a.out)/"bench_gpu.json").write_text(json.dumps(res, indent=2))
