"""A miniature of a hub folder, for the tests only (moved from claim_t5.model, issue 30).

The reference recipe starts from the hub's `google/flan-t5-base`, which cannot be downloaded here, so nothing would
run the path it takes: a folder of hub files, a SentencePiece tokenizer with T5's sentinels, an untied LM head, a
`generation_config.json` with token ids only. `build_hub_like_model` writes such a folder at a tiny size: the hub's
file names and config keys (gated-gelu, `tie_word_embeddings: false`, `vocab_size` 28 rows larger than the tokenizer,
as 32128 is to 32100), its tokenizer files as the hub has them (`spiece.model`, `tokenizer.json`, `tokenizer_config.json`,
`special_tokens_map.json`), and random weights. The EOS and padding rows of its LM head are zero, so a report never
ends early and its length shows the generation settings. The tests run the `flan-t5-base` preset on it with
`--model_name` pointing to it (`tests/test_hub_path.py`); it is not FLAN-T5, and its reports are nonsense.
"""
from __future__ import annotations
import json
from pathlib import Path
from claim_t5.config import atomic_folder
from claim_t5.folders import MODEL_FILES
from claim_t5.model import _no_progress_bars

HUB_TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

def _hub_t5_config(n_vocab:int, d_model:int, d_ff:int, d_kv:int, num_heads:int, num_layers:int) -> dict:
    "google/flan-t5-base's config.json with other sizes."
    tasks = {"summarization": {"early_stopping": True, "length_penalty": 2.0, "max_length": 200, "min_length": 30,
                               "no_repeat_ngram_size": 3, "num_beams": 4, "prefix": "summarize: "}}
    tasks.update({f"translation_en_to_{l}": {"early_stopping": True, "max_length": 300, "num_beams": 4,
                                             "prefix": f"translate English to {name}: "}
                  for l, name in (("de", "German"), ("fr", "French"), ("ro", "Romanian"))})
    return dict(architectures=["T5ForConditionalGeneration"], d_ff=d_ff, d_kv=d_kv, d_model=d_model, decoder_start_token_id=0,
                dense_act_fn="gelu_new", dropout_rate=0.1, eos_token_id=1, feed_forward_proj="gated-gelu",
                initializer_factor=1.0, is_encoder_decoder=True, is_gated_act=True, layer_norm_epsilon=1e-06, model_type="t5",
                n_positions=512, num_decoder_layers=num_layers, num_heads=num_heads, num_layers=num_layers, output_past=True,
                pad_token_id=0, relative_attention_max_distance=128, relative_attention_num_buckets=32,
                task_specific_params=tasks, tie_word_embeddings=False, torch_dtype="float32", transformers_version="4.23.1",
                use_cache=True, vocab_size=n_vocab)

def build_hub_like_model(folder:str|Path, # the folder to write (replaced if it exists)
                         texts:list, # texts the SentencePiece vocabulary is learned from
                         vocab_size:int=800, # most SentencePiece pieces, before T5's 100 sentinels
                         d_model:int=32, d_ff:int=64, d_kv:int=16, num_heads:int=2, # flan-t5-base: 768, 2048, 64, 12
                         num_layers:int=1, # encoder layers, and decoder layers (flan-t5-base: 12)
                         seed:int=0, # fixes the random weights
                        ) -> Path:
    "Write a miniature of the hub's google/flan-t5-base folder (its files, config keys and tokenizer; tiny, random weights)."
    import io, sentencepiece as spm, torch
    from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer
    buf = io.BytesIO()  # T5's SentencePiece settings: unigram, <pad> 0, </s> 1, <unk> 2, no <s>
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=buf, vocab_size=vocab_size, model_type="unigram",
                                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False, character_coverage=1.0,
                                   num_threads=1, minloglevel=2)
    with atomic_folder(folder) as tmp:
        (tmp/"spiece.model").write_bytes(buf.getvalue())
        tok = T5Tokenizer.from_pretrained(str(tmp), extra_ids=100)  # from spiece.model alone: sentinels laid out as T5's
        tok.save_pretrained(str(tmp))  # tokenizer.json; the two small files are rewritten below as the hub has them
        special = dict(additional_special_tokens=[f"<extra_id_{i}>" for i in range(100)], eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
        (tmp/"special_tokens_map.json").write_text(json.dumps(special, indent=2))
        (tmp/"tokenizer_config.json").write_text(json.dumps(dict(special, extra_ids=100, model_max_length=512, name_or_path="google/t5-v1_1-base",
                                                                 sp_model_kwargs={}, tokenizer_class="T5Tokenizer"), indent=2, sort_keys=True))
        config = _hub_t5_config(len(tok) + 28, d_model, d_ff, d_kv, num_heads, num_layers)
        skip = ("architectures", "torch_dtype", "transformers_version")
        with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
            torch.manual_seed(seed)
            model = T5ForConditionalGeneration(T5Config(**{k: v for k, v in config.items() if k not in skip}))
            head = torch.randn(config["vocab_size"], d_model) * d_model ** -0.5  # its own matrix, as FLAN-T5's
            head[[0, 1]] = 0  # <pad> and </s> never win: every report runs to the length limit
            model.lm_head.weight = torch.nn.Parameter(head)
        model.config.tie_word_embeddings = False
        with _no_progress_bars(): model.save_pretrained(str(tmp))
        (tmp/MODEL_FILES["model_config"]).write_text(json.dumps(config, indent=2, sort_keys=True))  # the hub's files, not transformers 5's
        (tmp/MODEL_FILES["generation_config"]).write_text(json.dumps(dict(decoder_start_token_id=0, eos_token_id=1, pad_token_id=0,
                                                           transformers_version="4.27.0.dev0"), indent=2))
    return Path(folder)
