"""The reference recipe's path, run on a miniature of the hub's google/flan-t5-base folder (issue 23).

No hub is reachable here, so the `flan-t5-base` preset's code path runs on `hub_model_dir` (conftest): the hub's files
(`generation_config.json` with token ids only, a SentencePiece tokenizer with T5's sentinels, an untied LM head,
28 vocabulary rows past the tokenizer) at a tiny size, with random weights whose EOS and padding rows are zero, so every
report runs to the length limit and the limit shows. What these tests check is what differs from the tiny preset's path:
generation lengths, the untied head, the tokenizer loaded from the folder, and no library warnings."""
import json, signal, subprocess, time, warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import pytest
from conftest import BIN, cli_env, cli_subprocess, free_port, no_warnings, serve_and_ask

META = dict(shipment_id="SHP-12345", image_id="img_0042.png", damage_type="dent", severity="high", vendor="TestCo",
            shipment_stage="transit")
META_STR = "; ".join(f"{k}={v}" for k, v in META.items())
# the files the README's `hf download google/flan-t5-base ...` fetches (/work/notes/issue23-readme.md), and all a run reads
HUB_FILES = ["config.json", "generation_config.json", "model.safetensors", "spiece.model", "tokenizer.json",
             "tokenizer_config.json", "special_tokens_map.json"]
SIZES = dict(max_train_samples=16, max_eval_samples=4, batch_size=8, eval_batch_size=4, logging_steps=1, warmup_steps=0)


def hub_config(model_dir, out, **kw):
    "The flan-t5-base preset with model_name pointing to the miniature, sized to run in seconds."
    from claim_t5.config import make_config
    return make_config("flan-t5-base", model_name=str(model_dir), output_dir=str(out), **{**SIZES, **kw})

# ---------------------------------------------------------------- the fixture is shaped as the hub's folder

def test_fixture_is_shaped_like_the_hub(hub_model_dir):
    from transformers import AutoTokenizer
    names = sorted(p.name for p in hub_model_dir.iterdir())
    assert names == sorted(HUB_FILES)
    gen = json.loads((hub_model_dir/"generation_config.json").read_text())
    assert sorted(gen) == ["decoder_start_token_id", "eos_token_id", "pad_token_id", "transformers_version"]  # no lengths
    config = json.loads((hub_model_dir/"config.json").read_text())
    assert (config["feed_forward_proj"], config["tie_word_embeddings"], config["is_gated_act"]) == ("gated-gelu", False, True)
    tok = AutoTokenizer.from_pretrained(str(hub_model_dir))
    assert type(tok).__name__ == "T5Tokenizer" and config["vocab_size"] == len(tok) + 28  # as 32128 is to 32100
    assert tok.convert_tokens_to_ids(["<extra_id_0>", "<extra_id_99>"]) == [len(tok) - 1, len(tok) - 100]

def test_a_small_hub_like_folder_loads_as_the_preset_loads_it(tmp_path):
    "Moved from nbs/01b_model (issue 30: the hub-like folder is a test helper): a miniature at vocab 100 loads through load_base_model."
    import shutil
    from claim_t5.config import ClaimT5Config
    from claim_t5.folders import MODEL_FILES
    from claim_t5.model import load_base_model
    from hub_like import HUB_TOKENIZER_FILES, build_hub_like_model
    MODEL_CONFIG, GENERATION_CONFIG, MODEL_WEIGHTS = (MODEL_FILES[k] for k in ("model_config", "generation_config", "weights"))
    _hub_texts = ["shipment_id=SHP-12345; damage_type=dent; severity=high; vendor=TestCo",
                  "Shipment SHP-12345 arrived with a dent during transit; severity is high. Vendor: TestCo."] * 20
    _hub = build_hub_like_model(tmp_path/"flan-t5-mini", _hub_texts, vocab_size=100)
    assert sorted(p.name for p in _hub.iterdir()) == sorted([MODEL_CONFIG, GENERATION_CONFIG, MODEL_WEIGHTS, *HUB_TOKENIZER_FILES])
    assert sorted(json.loads((_hub/GENERATION_CONFIG).read_text())) == ["decoder_start_token_id", "eos_token_id", "pad_token_id", "transformers_version"]
    _hc = json.loads((_hub/MODEL_CONFIG).read_text())
    assert (_hc["feed_forward_proj"], _hc["tie_word_embeddings"]) == ("gated-gelu", False)
    _hm, _ht, _hp = load_base_model(ClaimT5Config(model_name=str(_hub)))  # as the flan-t5-base preset loads it
    assert (type(_ht).__name__, _hc["vocab_size"], _ht.convert_tokens_to_ids("<extra_id_0>")) == ("T5Tokenizer", len(_ht) + 28, len(_ht) - 1)
    assert _ht.decode(_ht("Shipment SHP-12345 has a dent.").input_ids, skip_special_tokens=True) == "Shipment SHP-12345 has a dent."
    assert _hm.lm_head.weight.data_ptr() != _hm.shared.weight.data_ptr()  # the head loads separate
    assert _hm.generation_config.max_new_tokens == ClaimT5Config().gen_max_new_tokens  # the config's, not transformers' 20
    shutil.rmtree(_hub)

# ---------------------------------------------------------------- each epoch's evaluation generates the configured length

def test_epoch_evaluation_generates_the_configured_length(hub_model_dir, tmp_path):
    """The model Seq2SeqTrainer evaluates with generates `gen_max_new_tokens` (128), not transformers' default 20,
    whatever the folder's generation_config.json holds; on a CPU the preset's fp16 is not used."""
    import torch
    from claim_t5.data import load_claim_data
    from claim_t5.model import load_base_model, add_lora
    from claim_t5.train import build_trainer
    cfg = hub_config(hub_model_dir, tmp_path/"run")
    assert (cfg.mixed_precision, cfg.gen_max_new_tokens, cfg.gen_num_beams) == ("fp16", 128, 4)  # the preset's
    from datasets import DatasetDict
    full = load_claim_data(None, cfg=cfg, progress=False)
    dsd = DatasetDict({s: full[s].select(range(16)) for s in ("train", "validation")})  # tokenised in a moment
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, tok, _ = load_base_model(cfg)
        trainer = build_trainer(cfg, add_lora(model, cfg), tok, dsd)
        if not torch.cuda.is_available(): assert not (trainer.args.fp16 or trainer.args.bf16)  # a CPU: fp32, whatever mixed_precision says
        enc = tok(["shipment_id=SHP-1; damage_type=dent", "severity=high"], return_tensors="pt", padding=True)
        with torch.inference_mode(): out = trainer.model.generate(**enc, min_new_tokens=cfg.gen_max_new_tokens)
        assert out.shape[-1] == cfg.gen_max_new_tokens + 1  # the decoder start and 128 new tokens (was 20)
        metrics = trainer.evaluate()  # what every epoch runs: generation on the validation rows, ROUGE, facts
    assert metrics["eval_gen_len"] == cfg.gen_max_new_tokens
    assert not [f"{w.category.__name__}: {w.message}" for w in caught]  # e.g. "model-agnostic default `max_length`" before

# ---------------------------------------------------------------- every command, end to end, in fresh processes


def serve(model_dir, cwd, *args, timeout=120) -> dict:
    "Start `claim_t5_serve` (its default: a generation process), ask for one report and the status, stop it."
    import httpx
    def ask(url):
        r = httpx.post(f"{url}/generate_claim", json=META, timeout=60)
        return dict(status=r.status_code, body=r.json(), health=httpx.get(f"{url}/status", timeout=5).json())
    return serve_and_ask(model_dir, cwd, ask, *args, timeout=timeout)

@pytest.fixture(scope="module")
def hub_runs(hub_model_dir, tmp_path_factory):
    """`claim_t5_train --config flan-t5-base --model_name <the miniature>` (2 epochs, a model_name relative to where it
    ran), then at once, each from another directory: `claim_t5_eval`, `claim_t5_generate --merge_to` with the CTranslate2
    engine, and `claim_t5_serve` with transformers. Each is a fresh process (imports and library warnings included)."""
    base = tmp_path_factory.mktemp("hub_runs")
    elsewhere = base/"elsewhere"; elsewhere.mkdir()
    t0 = time.monotonic()
    sets = " ".join(f"{k}={v}" for k, v in SIZES.items() if k not in ("max_train_samples", "max_eval_samples", "batch_size"))
    train = cli_subprocess("claim_t5_train", "--config", "flan-t5-base", "--model_name", hub_model_dir.name,
                           "--output_dir", base/"run", "--num_epochs", "2", "--max_train_samples", SIZES["max_train_samples"],
                           "--max_eval_samples", SIZES["max_eval_samples"], "--batch_size", SIZES["batch_size"], "--set", sets,
                           cwd=hub_model_dir.parent)
    assert train.returncode == 0, train.stderr[-3000:]
    model = base/"run"/"fine_tuned_model"
    calls = dict(
        eval=lambda: cli_subprocess("claim_t5_eval", "--model_dir", model, "--max_samples", "4", "--batch_size", "4", cwd=elsewhere),
        merge_ct2=lambda: cli_subprocess("claim_t5_generate", "--model_dir", model, "--merge_to", base/"merged", "--input", META_STR,
                                         "--engine", "ct2", cwd=elsewhere),
        serve=lambda: serve(model, elsewhere, "--engine", "transformers"))
    with ThreadPoolExecutor(max_workers=3) as ex:  # mostly importing torch and transformers; the service waits on its child
        futures = {k: ex.submit(f) for k, f in calls.items()}
        runs = {k: f.result() for k, f in futures.items()}
    seconds = time.monotonic() - t0
    print(f"hub path commands: {seconds:.1f} s")  # shown with -s; the budget is 60 s on an idle 2-core machine
    return dict(train=train, model=model, merged=base/"merged", seconds=seconds, **runs)

def n_tokens(hub_model_dir, text:str) -> int:
    from transformers import AutoTokenizer
    return len(AutoTokenizer.from_pretrained(str(hub_model_dir))(text).input_ids)

@pytest.mark.slow
def test_hub_train(hub_runs, hub_model_dir):
    r, model = hub_runs["train"], hub_runs["model"]
    no_warnings(r.stderr)
    import torch
    if not torch.cuda.is_available(): assert "precision: no" in r.stdout  # the preset's fp16 on a CPU: fp32, said, not warned about
    history = json.loads((model/"history.json").read_text())
    assert [h["gen_len"] for h in history] == [128.0, 128.0]  # each epoch's validation reports at full length (was 20)
    gen = json.loads((model/"generation_config.json").read_text())
    assert (gen["max_new_tokens"], gen["num_beams"]) == (128, 4)
    adapter = json.loads((model/"adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(hub_model_dir.resolve())  # found from any directory

@pytest.mark.slow
def test_hub_model_loads_untied_with_the_folders_tokenizer(hub_runs, hub_model_dir):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer
    from claim_t5.fine_tuned import load_fine_tuned
    ft = load_fine_tuned(hub_runs["model"], "cpu")
    model, tok, cfg = ft.model, ft.tokenizer, ft.config
    base = model.get_base_model()
    head = load_file(str(hub_model_dir/"model.safetensors"))["lm_head.weight"]
    assert torch.equal(base.lm_head.weight, head) and base.lm_head.weight.data_ptr() != base.shared.weight.data_ptr()
    assert not base.config.tie_word_embeddings
    hub_tok, text = AutoTokenizer.from_pretrained(str(hub_model_dir)), "Shipment SHP-12345 arrived with a dent <extra_id_0>."
    assert type(tok).__name__ == "T5Tokenizer" and tok(text).input_ids == hub_tok(text).input_ids and len(tok) == len(hub_tok)
    assert base.generation_config.max_new_tokens == 128 and not cfg.is_tiny

@pytest.mark.slow
def test_hub_eval(hub_runs, hub_model_dir):
    r, model = hub_runs["eval"], hub_runs["model"]
    assert r.returncode == 0, r.stderr[-3000:]
    no_warnings(r.stderr)
    res = json.loads((model/"test_results.json").read_text())
    assert res["examples"] == 4 and res["generation"]["max_new_tokens"] == 128 and not res["tiny"]
    import pandas as pd
    preds = pd.read_csv(model/"evaluation_report.csv")["prediction"]
    assert min(n_tokens(hub_model_dir, p) for p in preds) > 40  # 128 generated tokens; a 20-token cut gives fewer

@pytest.mark.slow
def test_hub_generate_merge_and_ct2(hub_runs, hub_model_dir):
    r, merged = hub_runs["merge_ct2"], hub_runs["merged"]
    assert r.returncode == 0, r.stderr[-3000:]
    no_warnings(r.stderr)  # stderr: the fact verdict of a random model's report, and the one conversion line
    assert all(l.startswith(("facts: ", "claim_t5: converting ")) for l in r.stderr.strip().splitlines()), r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and lines[0] == f"merged model saved to {merged}" and n_tokens(hub_model_dir, lines[1]) > 40
    config = json.loads((merged/"config.json").read_text())
    assert config["tie_word_embeddings"] is False and json.loads((merged/"generation_config.json").read_text())["max_new_tokens"] == 128
    from safetensors.torch import load_file
    w = load_file(str(merged/"model.safetensors"))
    assert "lm_head.weight" in w and not (w["lm_head.weight"] == w["shared.weight"]).all()

@pytest.mark.slow
def test_hub_service(hub_runs):
    r = hub_runs["serve"]
    assert r.get("status") == 200, (r.get("body"), r["stderr"][-3000:])
    # transformers in the service, CTranslate2 float32 in the command: the same report (the vocabulary rows past the
    # tokenizer, which this random model picks, included)
    assert r["body"]["report"] == hub_runs["merge_ct2"].stdout.splitlines()[-1]
    assert r["health"]["generation"]["max_new_tokens"] == 128 and r["health"]["tiny"] is False
    no_warnings(r["stderr"])
