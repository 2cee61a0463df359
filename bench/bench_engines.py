"""Engine benchmark: transformers against CTranslate2 float32 and int8, greedy, same inputs, same threads, on (1) the
trained tiny model (the bundled test split; identical reports and fact accuracy per engine; transformers with the
LoRA adapter merged in memory, the generator's default, and unmerged) and (2) a randomly
initialised model of flan-t5-base's exact shape (d_model 768, 12+12 layers, 12 heads, d_ff 2048, gated-gelu, untied
LM head, vocabulary 32128; identical outputs and the speed ratio). Warm-up, then repeats (min/median/max). Asserts
nothing; prints figures and writes bench/results/bench_engines.json. Needs `pip install 'claim_t5[fast]'`.

Run: .venv/bin/python bench/bench_engines.py --model_dir runs/tiny/model_training/fine_tuned_model
     [--threads 1] [--repeats 3] [--base_n 64] [--base_new_tokens 60] [--skip_base]
"""
import argparse, json, os, statistics, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT/"bench"))


def spread(xs): return dict(min=round(min(xs), 3), median=round(statistics.median(xs), 3), max=round(max(xs), 3))


def timed(fn, n_items, repeats):
    "Warm up once, then `repeats` timed runs: (last outputs, reports/s spread)."
    fn()
    speeds = []
    for _ in range(repeats):
        t0 = time.perf_counter(); out = fn(); speeds.append(n_items / (time.perf_counter() - t0))
    return out, spread(speeds)


def tiny_model(a, test_inputs):
    from claim_t5.facts import fact_accuracy
    from claim_t5.inference import ClaimReportGenerator
    res, outs = {}, {}
    ct2_dir = Path(tempfile.mkdtemp())/"ct2_tiny"
    # transformers: the generator's default (the LoRA adapter merged in memory); transformers_adapter: merge=False
    for name, kw in [("transformers", {}), ("transformers_adapter", dict(merge=False)),
                     ("ct2_float32", dict(engine="ct2", compute_type="float32", ct2_dir=ct2_dir)),
                     ("ct2_int8", dict(engine="ct2", compute_type="int8", ct2_dir=ct2_dir))]:
        gen = ClaimReportGenerator(a.model_dir, device="cpu", batch_size=64, **kw)
        outs[name], speed = timed(lambda: gen(test_inputs), len(test_inputs), a.repeats)
        fa = fact_accuracy(test_inputs, outs[name], gen.checker)  # the checker saved with the model
        res[name] = dict(reports_per_s=speed, fact_accuracy=round(fa["overall"], 4), all_facts_correct=round(fa["all_facts_correct"], 4),
                         per_field={k: None if v is None else round(v, 4) for k, v in fa["per_field"].items()},
                         identical_to_transformers=f"{sum(x == y for x, y in zip(outs[name], outs['transformers']))}/{len(test_inputs)}")
        res[name]["speed_ratio"] = round(speed["median"] / res["transformers"]["reports_per_s"]["median"], 2)
        print(f"  tiny {name:13s} {speed['median']:7.1f} reports/s (min {speed['min']:.1f}, max {speed['max']:.1f}) "
              f"x{res[name]['speed_ratio']:.2f}, identical {res[name]['identical_to_transformers']}, "
              f"fact accuracy {res[name]['fact_accuracy']:.3f}, all facts correct {res[name]['all_facts_correct']:.3f}")
        del gen
    return res


def base_shape(a, test_inputs, tok_dir):
    "A random model of flan-t5-base's shape; a tokenizer padded to its vocabulary so that every id decodes."
    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration
    from claim_t5.engines import convert_ct2, CT2Engine
    from claim_t5.generate import generate_reports
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    vocab = 32128
    tok.add_tokens([f"<pad_piece_{i}>" for i in range(vocab - len(tok))])
    cfg = T5Config(vocab_size=vocab, d_model=768, d_ff=2048, d_kv=64, num_layers=12, num_decoder_layers=12, num_heads=12,
                   feed_forward_proj="gated-gelu", tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(cfg).eval()
    model.lm_head.weight = torch.nn.Parameter(torch.randn(vocab, 768) * 768 ** -0.5)  # untied, as in FLAN-T5
    inputs = test_inputs[:a.base_n]
    kw = dict(max_new_tokens=a.base_new_tokens, num_beams=1, do_sample=False)
    n_tok = statistics.mean(len(x) for x in tok(inputs)["input_ids"])
    print(f"  flan-t5-base shape: {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters, {len(inputs)} inputs "
          f"of {n_tok:.0f} tokens on average, {a.base_new_tokens} new tokens, batch {a.base_batch}")
    res, outs = {}, {}
    outs["transformers"], res["transformers"] = timed(
        lambda: generate_reports(model, tok, inputs, batch_size=a.base_batch, max_input_length=512, **kw), len(inputs), a.repeats)
    d = convert_ct2(model, tok, Path(tempfile.mkdtemp())/"ct2_base")
    for ct in ("float32", "int8"):
        eng = CT2Engine(d, tok, compute_type=ct, threads=a.threads)
        outs[f"ct2_{ct}"], res[f"ct2_{ct}"] = timed(lambda: eng.generate(inputs, batch_size=a.base_batch, max_input_length=512, **kw),
                                                    len(inputs), a.repeats)
        del eng
    out = {}
    for name, speed in res.items():
        out[name] = dict(reports_per_s=speed, speed_ratio=round(speed["median"] / res["transformers"]["median"], 2),
                         identical_to_transformers=f"{sum(x == y for x, y in zip(outs[name], outs['transformers']))}/{len(inputs)}")
        print(f"  base-shape {name:13s} {speed['median']:6.2f} reports/s (min {speed['min']:.2f}, max {speed['max']:.2f}) "
              f"x{out[name]['speed_ratio']:.2f}, identical {out[name]['identical_to_transformers']}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model_dir", required=True, help="a trained tiny model folder")
    ap.add_argument("--threads", type=int, default=1, help="torch and CTranslate2 threads (1: on a shared 2-core machine 2 threads spin while another process is busy)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tiny_n", type=int, default=662, help="test inputs for the tiny model")
    ap.add_argument("--base_n", type=int, default=64, help="inputs for the flan-t5-base-shaped model")
    ap.add_argument("--base_new_tokens", type=int, default=60)
    ap.add_argument("--base_batch", type=int, default=16)
    ap.add_argument("--skip_base", action="store_true", help="only the tiny model")
    ap.add_argument("--out", default=str(ROOT/"bench"/"results"/"bench_engines.json"))
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    torch.set_num_threads(a.threads)
    from bench_serve import env_info
    from claim_t5.data import load_claim_data
    test_inputs = list(load_claim_data()["test"]["input"])
    info = env_info(a.threads)
    print("environment:", json.dumps(info))
    res = dict(benchmark="bench_engines", environment=info, repeats=a.repeats, generation="greedy")
    print(f"tiny model ({a.model_dir}), {len(test_inputs[:a.tiny_n])} test inputs, batch 64:")
    res["tiny"] = tiny_model(a, test_inputs[:a.tiny_n])
    res["tiny_settings"] = dict(n=len(test_inputs[:a.tiny_n]), batch_size=64)
    if not a.skip_base:
        res["flan_t5_base_shape"] = base_shape(a, test_inputs, a.model_dir)
        res["flan_t5_base_shape_settings"] = dict(n=a.base_n, max_new_tokens=a.base_new_tokens, batch_size=a.base_batch)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
