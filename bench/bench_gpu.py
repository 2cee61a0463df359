"""GPU figures of the reference recipe, measured without the hub: a randomly initialised model with exactly
google/flan-t5-base's configuration (same shapes, same FLOPs; untied LM head as in FLAN-T5), LoRA r=8 on q,v
(claim_t5's `add_lora` with the flan-t5-base preset), batch 4, AdamW 2e-5, trained by claim_t5's `ClaimTrainer` (so the
non-finite-loss guard is active) with the training arguments `build_trainer` uses. One script, five sections:

1. train: training samples/s and peak GPU memory in fp16, bf16 and fp32 (each repeat is a fresh model and Trainer; the
   first steps of each run are a warm-up and not timed; the precision order alternates between repeats).
2. eval: one evaluation batch as the Trainer's per-epoch evaluation does it (loss + generation, eval batch 16, beam 4)
   in each precision, and the projected time of 3 epochs of 5,289 examples plus 3 evaluations of 661 examples.
3. batch: batch 32 against batch 4 on the same number of examples (samples/s and peak memory).
4. gen: reports/s on the GPU, batched (length-sorted, batch 64) against one input at a time, greedy and beam 4, fp32
   (what `load_fine_tuned` + `generate_reports` use today).
5. guard: the non-finite-loss guard in fp16. Whether fp16 overflows by itself on the random model is recorded in
   section 1; here a model whose first encoder feed-forward output is scaled past fp16's range (x1e5 on `wo`, the layer
   where FLAN-T5 overflows) is trained in fp16 (must stop with NonFiniteLossError) and in bf16 (must train).

Lengths are realistic, not fixed: each example's token lengths are estimated from the bundled data's characters
(inputs ~2.4 characters per T5 token, reports ~4.0: an estimate, the hub's tokenizer is not reachable), batches are
padded per batch to a multiple of 8 with labels padded by -100, as `build_trainer`'s collator does on CUDA. Generation
lengths are forced (min = max new tokens = the estimated report length) because a random model's own stopping point is
meaningless. Random weights mean losses and reports are meaningless; speed and memory are what is measured.

Prints progress and figures; writes one JSON (machine, versions, commit, every repeat with min/median/max). Asserts
nothing.

Run on a GPU:    PYTHONUNBUFFERED=1 python bench/bench_gpu.py            (about 5 minutes on an H200: 270 s covered sections 1-3 and half of 4)
                 python bench/bench_gpu.py --quick                        (fewer steps and repeats, about half)
Smoke on a CPU:  python bench/bench_gpu.py --smoke                        (a small model, fp32 only: checks the code runs)
"""
import argparse, gc, json, math, os, platform, statistics, subprocess, sys, time
from pathlib import Path

FLAN_T5_BASE = dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_decoder_layers=12, num_heads=12,
                    feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.1,
                    relative_attention_num_buckets=32, relative_attention_max_distance=128, layer_norm_epsilon=1e-6,
                    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
SMOKE = dict(FLAN_T5_BASE, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4)
IN_CHARS_PER_TOKEN, OUT_CHARS_PER_TOKEN = 2.4, 4.0
N_TRAIN, N_VAL, EPOCHS = 5289, 661, 3
T0 = time.time()

def log(msg): print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)

def spread(xs:list) -> dict:
    "min/median/max of the repeats, and the repeats themselves."
    return dict(min=round(min(xs), 3), median=round(statistics.median(xs), 3), max=round(max(xs), 3), repeats=[round(x, 3) for x in xs])

# ---------------------------------------------------------------------------------------------------------------- setup
def lengths(split:str) -> list:
    "Estimated (input tokens, report tokens) of each example of the bundled split, EOS included."
    from claim_t5.synth import generate_dataset
    rows = generate_dataset()[split]
    return [(math.ceil(len(r["input"]) / IN_CHARS_PER_TOKEN) + 1, math.ceil(len(r["output"]) / OUT_CHARS_PER_TOKEN) + 1) for r in rows]

def make_examples(lens:list, n:int, seed:int) -> list:
    "n examples (random token ids) whose lengths are drawn, in a seeded order, from `lens`."
    import random, torch
    rng = random.Random(seed); g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        li, lo = lens[rng.randrange(len(lens))]
        ids = torch.randint(3, 32000, (li,), generator=g); ids[-1] = 1
        lab = torch.randint(3, 32000, (lo,), generator=g); lab[-1] = 1
        out.append(dict(input_ids=ids.tolist(), labels=lab.tolist()))
    return out

class PadCollator:
    "Dynamic padding as build_trainer's DataCollatorForSeq2Seq: pad id 0, labels -100, to a multiple of 8 on CUDA."
    def __init__(self, multiple:int|None): self.m = multiple
    def _len(self, n): return n if not self.m else -(-n // self.m) * self.m
    def __call__(self, feats):
        import torch
        li = self._len(max(len(f["input_ids"]) for f in feats)); lo = self._len(max(len(f["labels"]) for f in feats))
        ids = torch.zeros(len(feats), li, dtype=torch.long); att = torch.zeros_like(ids)
        lab = torch.full((len(feats), lo), -100, dtype=torch.long)
        for i, f in enumerate(feats):
            ids[i, :len(f["input_ids"])] = torch.tensor(f["input_ids"]); att[i, :len(f["input_ids"])] = 1
            lab[i, :len(f["labels"])] = torch.tensor(f["labels"])
        return dict(input_ids=ids, attention_mask=att, labels=lab)

def build_model(model_cfg:dict, device:str, lora:bool=True):
    "The random flan-t5-base-shaped model (same seed each time), LM head untied as in FLAN-T5, with the recipe's LoRA."
    import torch
    from transformers import T5Config, T5ForConditionalGeneration
    from claim_t5.config import make_config
    from claim_t5.model import add_lora
    torch.manual_seed(0)
    with torch.device(device): model = T5ForConditionalGeneration(T5Config(**model_cfg))
    if model.lm_head.weight.data_ptr() == model.shared.weight.data_ptr():  # transformers 5 ties it anyway: untie
        d = model_cfg["d_model"]
        model.lm_head.weight = torch.nn.Parameter(torch.randn(model_cfg["vocab_size"], d, device=device) * d ** -0.5)
    return add_lora(model, make_config("flan-t5-base")) if lora else model

def free():
    import torch
    gc.collect()
    if torch.cuda.is_available(): torch.cuda.empty_cache()

def autocast(prec:str):
    import contextlib, torch
    if prec == "fp32": return contextlib.nullcontext()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.autocast(dev, dtype=torch.float16 if prec == "fp16" else torch.bfloat16)

# ---------------------------------------------------------------------------------------------------------------- train
def train_run(model_cfg:dict, prec:str, batch_size:int, warm:int, timed:int, lens:list, seed:int, scale_wo:float=0.) -> dict:
    "One fresh model + ClaimTrainer run of warm+timed steps; samples/s over the timed steps, peak memory, losses."
    import torch
    from transformers import Seq2SeqTrainingArguments, TrainerCallback, PrinterCallback
    from claim_t5.config import make_config
    from claim_t5.train import ClaimTrainer, NonFiniteLossError
    import tempfile
    cuda = torch.cuda.is_available(); dev = "cuda" if cuda else "cpu"
    cfg = make_config("flan-t5-base")
    model = build_model(model_cfg, dev)
    if scale_wo:  # push the first encoder feed-forward output past fp16's largest value (65504), as FLAN-T5's wo does
        with torch.no_grad(): model.get_base_model().encoder.block[0].layer[-1].DenseReluDense.wo.weight.mul_(scale_wo)
    steps = warm + timed
    data = make_examples(lens, steps * batch_size, seed)
    class Timer(TrainerCallback):
        def __init__(self): self.t = []
        def on_step_end(self, args, state, control, **kw):
            if cuda: torch.cuda.synchronize()
            self.t.append(time.perf_counter())
    timer = Timer()
    out_dir = tempfile.mkdtemp(prefix="bench_gpu_")
    args = Seq2SeqTrainingArguments(  # the recipe's arguments as build_trainer passes them; no eval/save inside the timing
        output_dir=out_dir, seed=cfg.seed, data_seed=cfg.seed, learning_rate=cfg.learning_rate,
        per_device_train_batch_size=batch_size, max_steps=steps, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay,
        optim=cfg.optimizer, lr_scheduler_type=cfg.lr_scheduler, max_grad_norm=cfg.max_grad_norm,
        fp16=prec == "fp16", bf16=prec == "bf16", use_cpu=not cuda, save_strategy="no", eval_strategy="no",
        logging_strategy="steps", logging_steps=max(1, steps // 4), report_to=[], dataloader_num_workers=0, disable_tqdm=True,
        remove_unused_columns=False, label_names=["labels"])
    trainer = ClaimTrainer(model=model, args=args, train_dataset=data, data_collator=PadCollator(8 if cuda else None),
                           callbacks=[timer])
    trainer.remove_callback(PrinterCallback)  # no per-log dict prints: this script prints its own figures
    if cuda: torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    r = dict(precision=prec, batch_size=batch_size, warmup_steps_untimed=warm, timed_steps=timed)
    try: trainer.train()
    except NonFiniteLossError as e: r["non_finite_loss_error"] = str(e)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    r["steps_done"] = trainer.state.global_step
    if warm > 0 and len(timer.t) > warm:
        r["samples_per_s"] = (len(timer.t) - warm) * batch_size / (timer.t[-1] - timer.t[warm - 1])
        r["ms_per_step"] = 1000 * (timer.t[-1] - timer.t[warm - 1]) / (len(timer.t) - warm)
    if cuda:
        r["peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        r["peak_gpu_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    r["losses_logged"] = len(losses); r["first_last_loss"] = [losses[0], losses[-1]] if losses else None
    r["all_losses_finite"] = all(math.isfinite(x) for x in losses) if losses and "non_finite_loss_error" not in r else None if not losses else False
    scaler = getattr(trainer.accelerator, "scaler", None)
    if scaler is not None and prec == "fp16": r["fp16_grad_scale_end"] = float(scaler.get_scale())
    del trainer, model; free()
    import shutil; shutil.rmtree(out_dir, ignore_errors=True)
    return r

# ----------------------------------------------------------------------------------------------------------------- eval
def eval_batches(lens:list, n_batches:int, bs:int, seed:int, device:str) -> list:
    "Evaluation batches in dataset order (the Trainer does not sort them), with each batch's generation length."
    ex = make_examples(lens, n_batches * bs, seed)
    col = PadCollator(8 if device == "cuda" else None)
    out = []
    for i in range(n_batches):
        feats = ex[i*bs:(i+1)*bs]
        b = {k: v.to(device) for k, v in col(feats).items()}
        out.append((b, min(128, max(len(f["labels"]) for f in feats))))
    return out

def time_eval(model, prec:str, batches:list, beams:int) -> float:
    "Seconds per evaluation batch: the loss forward and beam generation, as Seq2SeqTrainer's prediction_step does."
    import torch
    cuda = torch.cuda.is_available()
    if cuda: torch.cuda.synchronize()
    t = time.perf_counter()
    with torch.inference_mode(), autocast(prec):
        for b, L in batches:
            model(**b)
            model.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"], num_beams=beams, do_sample=False,
                           early_stopping=beams > 1, min_new_tokens=L, max_new_tokens=L,
                           decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    if cuda: torch.cuda.synchronize()
    return (time.perf_counter() - t) / len(batches)

# ------------------------------------------------------------------------------------------------------------------ gen
def time_generation(model, lens:list, n:int, batch_size:int|None, beams:int, seed:int, device:str) -> float:
    "Reports/s on n inputs: batched (length-sorted, as generate_reports) or one at a time (batch_size None)."
    import torch
    ex = make_examples(lens, n, seed)
    gen = dict(num_beams=beams, do_sample=False, early_stopping=beams > 1, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    if batch_size: order = sorted(range(n), key=lambda i: -len(ex[i]["input_ids"])); groups = [order[i:i+batch_size] for i in range(0, n, batch_size)]
    else: groups = [[i] for i in range(n)]
    col = PadCollator(None)
    if device == "cuda": torch.cuda.synchronize()
    t = time.perf_counter()
    with torch.inference_mode():
        for g in groups:
            feats = [ex[i] for i in g]; b = col(feats)
            L = min(128, max(len(f["labels"]) for f in feats))  # a batch runs until its longest report is done
            model.generate(input_ids=b["input_ids"].to(device), attention_mask=b["attention_mask"].to(device),
                           min_new_tokens=L, max_new_tokens=L, **gen)
    if device == "cuda": torch.cuda.synchronize()
    return n / (time.perf_counter() - t)

# ----------------------------------------------------------------------------------------------------------------- main
def machine() -> dict:
    import torch, transformers, peft, accelerate
    m = dict(python=platform.python_version(), platform=platform.platform(), cpu_count=os.cpu_count(),
             torch_threads=torch.get_num_threads(), torch=torch.__version__, cuda=torch.version.cuda,
             transformers=transformers.__version__, peft=peft.__version__, accelerate=accelerate.__version__)
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        m.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gib=round(p.total_memory / 2**30, 1),
                 compute_capability=f"{p.major}.{p.minor}", bf16_native=torch.cuda.is_bf16_supported(including_emulation=False))
        try: m["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                          capture_output=True, text=True, timeout=20).stdout.strip()
        except Exception: pass
    else: m["gpu"] = None
    return m

def commit() -> str|None:
    if os.environ.get("CLAIM_T5_COMMIT"): return os.environ["CLAIM_T5_COMMIT"]
    try: return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip() or None
    except Exception: return None

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats (about half the time)")
    ap.add_argument("--smoke", action="store_true", help="a small model and a few steps: checks the code runs (CPU)")
    ap.add_argument("--sections", default="train,eval,batch,gen,guard", help="which sections to run")
    ap.add_argument("--gen_modes", default="greedy,beam4", help="generation modes to time (greedy, beam4)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (default 3)")
    ap.add_argument("--out", default="bench/results/bench_gpu.json")
    a = ap.parse_args()
    import torch
    cuda = torch.cuda.is_available(); dev = "cuda" if cuda else "cpu"
    sections = a.sections.split(",")
    R = a.repeats or (2 if a.smoke else 3)
    # steps: warm-up (untimed) + timed; generation sizes
    if a.smoke: W, S4, S32, EVB, NB, N1 = 2, 4, 1, 1, 8, 2
    elif a.quick: W, S4, S32, EVB, NB, N1 = 5, 32, 4, 1, 64, 4
    else: W, S4, S32, EVB, NB, N1 = 5, 64, 8, 2, 128, 8
    model_cfg = SMOKE if a.smoke else FLAN_T5_BASE
    precs = ["fp16", "bf16", "fp32"] if cuda else ["fp32"]
    if cuda and not torch.cuda.is_bf16_supported(including_emulation=False): precs.remove("bf16")
    res = dict(bench="bench_gpu", started=time.strftime("%Y-%m-%d %H:%M:%S %Z"), commit=commit(), machine=machine(),
               args=vars(a), mode="smoke" if a.smoke else "quick" if a.quick else "full",
               model="random init, google/flan-t5-base config (untied LM head)" if not a.smoke else "SMOKE: small T5, not flan-t5-base",
               recipe="LoRA r=8 alpha 32 dropout 0.1 on q,v; AdamW lr 2e-5, warmup 100, wd 0.01, linear; max_grad_norm 1; "
                      "batch 4; max lengths 128/256; eval batch 16, beam 4, 128 new tokens max",
               lengths=dict(in_chars_per_token=IN_CHARS_PER_TOKEN, out_chars_per_token=OUT_CHARS_PER_TOKEN,
                            note="token lengths estimated from the bundled data's characters (no hub tokenizer)"),
               repeats=R, warmup_steps_untimed=W, sections={})
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    def save(): out.write_text(json.dumps(res, indent=2))
    log(f"device: {res['machine']['gpu'] or 'CPU (no GPU: not GPU figures)'}; torch {torch.__version__}; "
        f"transformers {res['machine']['transformers']}; mode {res['mode']}; sections {sections}")
    tr_lens, va_lens, te_lens = lengths("train"), lengths("validation"), lengths("test")
    mean = lambda xs: round(statistics.mean(xs), 1)
    res["lengths"].update(train_mean_in_out=[mean([x for x, _ in tr_lens]), mean([y for _, y in tr_lens])],
                          train_max_in_out=[max(x for x, _ in tr_lens), max(y for _, y in tr_lens)])
    from claim_t5.model import count_parameters
    res["parameters"] = count_parameters(build_model(model_cfg, "meta"))  # shapes only, no memory
    log(f"estimated tokens per example (train): input {res['lengths']['train_mean_in_out'][0]}, report {res['lengths']['train_mean_in_out'][1]} (mean)")
    save()

    sps = {}
    if "train" in sections:
        sec = res["sections"]["train"] = dict(runs=[])
        if not a.smoke:  # one untimed short run per precision first: CUDA context, cuBLAS handles, kernels
            for p in precs:
                log(f"train warm-up run {p}"); train_run(model_cfg, p, 4, 2, 3, tr_lens, seed=99)
        for rep in range(R):
            for p in (precs if rep % 2 == 0 else precs[::-1]):
                r = train_run(model_cfg, p, 4, W, S4, tr_lens, seed=rep); r["repeat"] = rep; sec["runs"].append(r)
                log(f"train {p} bs4 repeat {rep}: {r.get('samples_per_s', float('nan')):.1f} samples/s, "
                    f"{r.get('ms_per_step', float('nan')):.1f} ms/step, peak {r.get('peak_gpu_mem_gib', 0):.2f} GiB, "
                    f"losses finite {r['all_losses_finite']}" + (f", ERROR {r['non_finite_loss_error'][:80]}" if 'non_finite_loss_error' in r else ""))
                save()
        sec["summary"] = {}
        for p in precs:
            rs = [r for r in sec["runs"] if r["precision"] == p]
            ok = [r["samples_per_s"] for r in rs if "samples_per_s" in r and "non_finite_loss_error" not in r]
            s = dict(samples_per_s=spread(ok) if ok else None,
                     peak_gpu_mem_gib=spread([r["peak_gpu_mem_gib"] for r in rs]) if cuda else None,
                     non_finite_loss_runs=sum("non_finite_loss_error" in r for r in rs), all_losses_finite=all(r["all_losses_finite"] is not False for r in rs))
            if p == "fp16": s["fp16_grad_scale_end"] = [r.get("fp16_grad_scale_end") for r in rs]
            sec["summary"][p] = s
            if ok: sps[p] = statistics.median(ok)
        save()

    if "eval" in sections:
        sec = res["sections"]["eval"] = dict(eval_batch_size=16, num_beams=4, batches_per_repeat=EVB, per_batch_s={})
        model = build_model(model_cfg, dev).eval()
        batches = eval_batches(va_lens, EVB, 16, seed=7, device=dev)
        for p in precs: time_eval(model, p, batches[:1], 4)  # warm-up
        per = {p: [] for p in precs}
        for rep in range(R):
            for p in (precs if rep % 2 == 0 else precs[::-1]):
                per[p].append(time_eval(model, p, batches, 4)); log(f"eval {p} repeat {rep}: {per[p][-1]:.2f} s per batch of 16 (beam 4)")
        n_eval_batches = math.ceil(N_VAL / 16)
        sec["eval_batches_per_epoch"] = n_eval_batches
        sec["projection"] = {}
        for p in precs:
            sec["per_batch_s"][p] = spread(per[p])
            eval_s = statistics.median(per[p]) * n_eval_batches
            pj = dict(eval_per_epoch_s=round(eval_s, 1))
            if p in sps:
                train_s = EPOCHS * N_TRAIN / sps[p]
                pj.update(train_3_epochs_s=round(train_s, 1), total_3_epochs_with_eval_s=round(train_s + EPOCHS * eval_s, 1),
                          total_min=round((train_s + EPOCHS * eval_s) / 60, 2))
            sec["projection"][p] = pj
            log(f"projection {p}: {pj}")
        del model; free(); save()

    if "batch" in sections:
        bprecs = [p for p in (["fp16", "bf16"] if cuda else ["fp32"]) if p in precs]
        sec = res["sections"]["batch"] = dict(examples_timed=S32 * 32, bs4_examples_timed=S4 * 4, runs=[], summary={})
        for rep in range(R):
            for p in (bprecs if rep % 2 == 0 else bprecs[::-1]):
                r = train_run(model_cfg, p, 32, 2, S32, tr_lens, seed=100 + rep); r["repeat"] = rep; sec["runs"].append(r)
                log(f"train {p} bs32 repeat {rep}: {r.get('samples_per_s', float('nan')):.1f} samples/s, peak {r.get('peak_gpu_mem_gib', 0):.2f} GiB")
                save()
        for p in bprecs:
            rs = [r["samples_per_s"] for r in sec["runs"] if r["precision"] == p and "samples_per_s" in r]
            s = dict(bs32_samples_per_s=spread(rs), bs32_peak_gpu_mem_gib=spread([r["peak_gpu_mem_gib"] for r in sec["runs"] if r["precision"] == p]) if cuda else None)
            if p in sps:
                s["bs4_samples_per_s_median"] = round(sps[p], 2); s["speedup_bs32_vs_bs4"] = round(statistics.median(rs) / sps[p], 2)
                s["train_3_epochs_bs32_s"] = round(EPOCHS * N_TRAIN / statistics.median(rs), 1)
                ev = res["sections"].get("eval", {}).get("projection", {}).get(p, {}).get("eval_per_epoch_s")
                if ev: s["total_3_epochs_with_eval_bs32_min"] = round((EPOCHS * N_TRAIN / statistics.median(rs) + EPOCHS * ev) / 60, 2)
            sec["summary"][p] = s; log(f"batch 32 vs 4, {p}: {s}")
        sec["note"] = ("same learning rate (2e-5) and warmup (100 steps): with batch 32 an epoch is 166 optimizer steps "
                       "instead of 1323 (3969 -> 498 in 3 epochs, warmup 2.5% -> 20% of them), so the recipe's results "
                       "would change; random weights cannot show by how much")
        save()

    if "gen" in sections:
        sec = res["sections"]["gen"] = dict(precision="fp32 (as load_fine_tuned loads the model)", batched_n=NB,
                                            batch_size=64, one_at_a_time_n=N1, results={})
        model = build_model(model_cfg, dev).eval()
        for beams, name in [m for m in ((1, "greedy"), (4, "beam4")) if m[1] in a.gen_modes.split(",")]:
            time_generation(model, te_lens, 2, 2, beams, 0, dev); time_generation(model, te_lens, 1, None, beams, 0, dev)  # warm-up
            b, s = [], []
            for rep in range(R):
                pair = [("batched", b, 64), ("single", s, None)]
                for kind, acc, bs in (pair if rep % 2 == 0 else pair[::-1]):
                    acc.append(time_generation(model, te_lens, NB if bs else N1, bs, beams, seed=rep, device=dev))
                    log(f"gen {name} {kind} repeat {rep}: {acc[-1]:.1f} reports/s")
            sec["results"][name] = dict(batched_reports_per_s=spread(b), one_at_a_time_reports_per_s=spread(s),
                                        speedup=round(statistics.median(b) / statistics.median(s), 1))
            save()
        del model; free()

    if "guard" in sections:
        sec = res["sections"]["guard"] = dict(scale_wo=1e5, layer="encoder.block[0].layer[-1].DenseReluDense.wo", runs=[])
        if cuda:
            for p in [q for q in ("fp16", "bf16") if q in precs]:
                r = train_run(model_cfg, p, 4, 0, 5, tr_lens, seed=5, scale_wo=1e5); sec["runs"].append(r)
                log(f"guard {p} (wo x1e5): steps done {r['steps_done']}, " +
                    (f"NonFiniteLossError: {r['non_finite_loss_error']}" if "non_finite_loss_error" in r else
                     f"no error, losses finite {r['all_losses_finite']} {r['first_last_loss']}"))
        else:  # CPU: the Trainer has no fp16 here; check the overflow itself with CPU autocast
            import torch
            m = build_model(model_cfg, "cpu")
            with torch.no_grad(): m.get_base_model().encoder.block[0].layer[-1].DenseReluDense.wo.weight.mul_(1e5)
            b, _ = eval_batches(tr_lens, 1, 4, 0, "cpu")[0]
            for p in ("fp16", "bf16", "fp32"):
                with torch.no_grad(), autocast(p): loss = m(**b).loss.item()
                sec["runs"].append(dict(precision=p, forward_loss=loss)); log(f"guard (CPU forward only) {p}: loss {loss}")
        save()
    res["wall_s"] = round(time.time() - T0, 1); save()
    log(f"done in {res['wall_s']} s; wrote {out}")
