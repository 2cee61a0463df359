"Generation-time repairs (issue 20): no placeholder of a copy field the input lacks, and reranking beam candidates by the fact check."
import pytest, torch
from claim_t5.facts import placeholders
from claim_t5.fine_tuned import load_fine_tuned
from claim_t5.generate import generate_reports

FULL = "shipment_id=SHP-51045; damage_type=dent; severity=high; image_id=IMG-7781; vendor=Acme Freight; stage=transit"
NO_VENDOR = "shipment_id=SHP-51046; damage_type=dent; severity=high; image_id=IMG-7782; stage=transit"

@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    ft = load_fine_tuned(tiny_model_dir, device="cpu")
    assert ft.config.copy_placeholders and "vendor" in placeholders(ft.config.fields)
    return ft

def test_a_placeholder_of_an_absent_field_is_never_generated(tiny):
    "A model pushed to write the vendor placeholder everywhere: it is filled where the input has a vendor, never written where it has none."
    model, tok, cfg = tiny.model, tiny.tokenizer, tiny.config
    vid = tok.convert_tokens_to_ids(placeholders(cfg.fields)["vendor"])
    bump = torch.zeros(model.config.vocab_size); bump[vid] = 100.0
    h = model.lm_head.register_forward_hook(lambda m, i, out: out + bump)  # the placeholder wins every step it is allowed
    try:
        reps = tiny.reports([FULL, NO_VENDOR, FULL, NO_VENDOR], batch_size=4, rerank=0, max_new_tokens=12, num_beams=1)
        beam = tiny.reports([NO_VENDOR, FULL], batch_size=2, rerank=0, max_new_tokens=12, num_beams=3)
    finally: h.remove()
    assert "Acme Freight" in reps[0] and "Acme Freight" in beam[1]  # the push works: where it can be filled it is written
    for r in (reps[1], reps[3], beam[0]):
        assert "[vendor]" not in r and "extra_id" not in r, r

def test_rerank_returns_the_first_candidate_that_passes(tiny):
    "With a check that passes only the third candidate, that one is returned; with none passing, the top beam."
    model, tok, cfg = tiny.model, tiny.tokenizer, tiny.config
    seen = {}
    class ThirdPasses:
        def check(self, inp, report):
            seen.setdefault(inp, []).append(str(report))
            return {"ok": len(seen[inp]) == 3, "fields": {}, "problems": [] if len(seen[inp]) == 3 else ["stub"]}
    class NonePass:
        def check(self, inp, report): return {"ok": False, "fields": {}, "problems": ["stub"]}
    inputs = [FULL, NO_VENDOR]
    out = generate_reports(model, tok, inputs, cfg=cfg, checker=ThirdPasses(), rerank=4, max_new_tokens=20, num_beams=1)
    for inp, r in zip(inputs, out):
        assert len(seen[inp]) == 3 and r == seen[inp][2] and r.ok
    top = generate_reports(model, tok, inputs, cfg=cfg, checker=NonePass(), rerank=4, max_new_tokens=20, num_beams=1)
    plain = generate_reports(model, tok, inputs, cfg=cfg, checker=NonePass(), rerank=0, max_new_tokens=20, num_beams=4, early_stopping=True)
    assert list(map(str, top)) == list(map(str, plain)) and not any(r.ok for r in top)
    off = generate_reports(model, tok, inputs, cfg=cfg, checker=ThirdPasses(), rerank=0, max_new_tokens=20, num_beams=1)
    assert len(off) == 2  # off: one candidate per input, as before

def test_ct2_forbids_as_transformers_does_and_auto_keeps_transformers_for_rerank(tiny_model_dir, tmp_path):
    "CTranslate2 gets the same per-input ban (grouped calls): the same greedy reports. Its beam search ranks candidates its own way, so `auto` with rerank uses transformers."
    pytest.importorskip("ctranslate2")
    from claim_t5.data import load_claim_data
    from claim_t5.inference import ClaimReportGenerator
    rows = list(load_claim_data()["test"].select(range(16))["input"])
    rows = [r if i % 2 else "; ".join(p for p in r.split("; ") if not p.startswith("vendor=")) for i, r in enumerate(rows)]
    assert sum("vendor=" not in r for r in rows) >= 8
    hf = ClaimReportGenerator(tiny_model_dir, device="cpu", engine="transformers", rerank=0)
    ct2 = ClaimReportGenerator(tiny_model_dir, device="cpu", engine="ct2", ct2_dir=tmp_path/"ct2", rerank=0)
    assert ct2.engine == "ct2"
    a, b = hf(rows), ct2(rows)
    assert list(map(str, a)) == list(map(str, b))
    assert not any("[vendor]" in r or "extra_id" in r for r in a)
    assert ClaimReportGenerator(tiny_model_dir, device="cpu", engine="auto", ct2_dir=tmp_path/"ct2", rerank=4).engine == "transformers"
    with pytest.warns(UserWarning, match="rerank 4"):
        r = ClaimReportGenerator(tiny_model_dir, device="cpu", engine="ct2", ct2_dir=tmp_path/"ct2", rerank=4)(rows[:4])
    assert len(r) == 4 and not any("[vendor]" in x or "extra_id" in x for x in r)

def test_scratch_preset_reranks_at_delivery_only():
    "The scratch preset reranks 32 beam candidates where reports are delivered; its per-epoch validation stays greedy."
    from claim_t5.config import make_config, generation_kwargs
    cfg = make_config("scratch")
    assert cfg.gen_rerank == 32 and cfg.gen_num_beams == 1
    assert generation_kwargs(cfg)["num_beams"] == 1 and "num_return_sequences" not in generation_kwargs(cfg)  # what training's evaluation uses

def test_the_best_checkpoint_can_be_chosen_by_the_fact_check(tmp_path):
    "metric_for_best_model: all_facts_correct trains, evaluates the facts each epoch and keeps the checkpoint they rank best."
    from claim_t5.config import quick_config
    from claim_t5.train import train
    res = train(quick_config(tmp_path/"mt", metric_for_best_model="all_facts_correct"), verbose=False)
    facts = [h["all_facts_correct"] for h in res.history]
    assert len(facts) >= 2 and all(f is not None for f in facts)
    best = max(range(len(facts)), key=lambda i: (facts[i], -i))  # transformers keeps the first of equal bests
    assert res.best_checkpoint and str(res.best_checkpoint).endswith(f"-{res.history[best]['step']}")
