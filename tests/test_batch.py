"""Batch generation of large files (claim_t5.inference: `generate_file`, `generate_file_ray`, `claim_t5_generate --batch`):
bad lines named before anything is generated or listed with --skip_bad, durable shards and --resume after kill -9
(one process and Ray), and the same reports and verdicts from one call, the streaming path and 2 Ray workers."""
import json, os, signal, subprocess, time
from pathlib import Path

import pytest
from conftest import BIN, cli_env, cli_subprocess, copy_model, no_warnings, run_cli

from claim_t5.schema import MetadataError
from claim_t5.data import load_claim_data
from claim_t5.inference import BatchError, ClaimReportGenerator, generate_file, generate_file_ray, problems_file


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    "A private copy of the tiny model folder (the CLI's engine auto caches a CTranslate2 conversion in it)."
    return copy_model(tiny_model_dir, tmp_path_factory.mktemp("batch")/"fine_tuned_model")


@pytest.fixture(scope="module")
def inputs() -> list:
    "Real metadata lines from the bundled test split, varied in length."
    return list(load_claim_data()["test"].select(range(40))["input"])


@pytest.fixture(scope="module")
def gen(model_dir) -> ClaimReportGenerator:
    return ClaimReportGenerator(model_dir, device="cpu", engine="transformers")


def write_input(path:Path, inputs:list, bad:dict|None=None) -> Path:
    "A JSONL file with an id per line; `bad` maps a 1-based line number to a bad line put there."
    lines = [json.dumps({"input": x, "id": k}) for k, x in enumerate(inputs)]
    for n, text in sorted((bad or {}).items()): lines.insert(n - 1, text)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rows_of(path:Path) -> list:
    return [json.loads(l) for l in Path(path).read_text(encoding="utf-8").splitlines()]


def same(rows:list, reports:list) -> bool:
    "The rows carry exactly these reports and verdicts, in order."
    return [(r["report"], r["facts"]) for r in rows] == [(str(r), r.facts) for r in reports]


# ---------------------------------------------------------------- bad lines

def test_bad_line_named_before_anything_is_generated(gen, tmp_path, inputs, monkeypatch):
    src = write_input(tmp_path/"in.jsonl", inputs[:6], bad={4: '{"input": "shipment_id=SHP-9; damage_type=dent"}'})
    calls = []
    monkeypatch.setattr(gen, "generate", lambda texts, **kw: calls.append(texts) or [])
    with pytest.raises(MetadataError) as e:
        generate_file(gen, src, tmp_path/"out.jsonl", progress=False, shard_size=2)
    assert f"{src}:4:" in str(e.value) and "severity" in str(e.value)
    assert calls == []                                             # checked before the first shard
    assert not list(tmp_path.glob("out.jsonl*"))                  # no output, no parts folder


def test_cli_bad_line_named_and_skip_bad(model_dir, tmp_path, inputs, gen):
    src = write_input(tmp_path/"in.jsonl", inputs[:5], bad={3: "{not json"})
    r = run_cli("claim_t5_generate", "--model_dir", model_dir, "--batch", src, "--output", tmp_path/"out.jsonl", "--engine", "transformers")
    assert r.returncode == 1 and f"{src}:3: malformed JSON" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path/"out.jsonl").exists()
    r = run_cli("claim_t5_generate", "--model_dir", model_dir, "--batch", src, "--output", tmp_path/"out.jsonl", "--engine", "transformers",
                "--skip_bad", "--shard_size", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"skipped 1 bad line(s): listed in {problems_file(tmp_path/'out.jsonl')}" in r.stderr
    assert [p["line"] for p in rows_of(problems_file(tmp_path/"out.jsonl"))] == [3]   # listed, not dropped silently
    rows = rows_of(tmp_path/"out.jsonl")
    assert [x["id"] for x in rows] == [0, 1, 2, 3, 4] and same(rows, gen(inputs[:5]))


# ---------------------------------------------------------------- resume rules

def test_rerun_needs_resume_and_the_same_settings(gen, model_dir, tmp_path, inputs):
    src = write_input(tmp_path/"in.jsonl", inputs[:6])
    parts = tmp_path/"out.jsonl.parts"
    class Dies:
        def __init__(self, g): self.g, self.n = g, 0
        def __getattr__(self, k): return getattr(self.g, k)
        def generate(self, texts):
            self.n += 1
            if self.n == 2: raise KeyboardInterrupt
            return self.g.generate(texts)
    with pytest.raises(KeyboardInterrupt): generate_file(Dies(gen), src, tmp_path/"out.jsonl", progress=False, shard_size=2)
    assert sorted(p.name for p in parts.glob("part-*")) == ["part-00000.jsonl"]
    with pytest.raises(BatchError, match="--resume"): generate_file(gen, src, tmp_path/"out.jsonl", progress=False, shard_size=2)
    beams = ClaimReportGenerator(model_dir, device="cpu", engine="transformers", num_beams=gen.gen_kwargs["num_beams"] + 1)
    with pytest.raises(BatchError, match="cannot resume.*num_beams"): generate_file(beams, src, tmp_path/"out.jsonl", progress=False, shard_size=2, resume=True)
    with pytest.raises(BatchError, match="cannot resume.*shard_size"): generate_file(gen, src, tmp_path/"out.jsonl", progress=False, shard_size=3, resume=True)
    (tmp_path/"in.jsonl").write_text(src.read_text() + json.dumps({"input": inputs[7], "id": 6}) + "\n")
    with pytest.raises(BatchError, match="cannot resume.*input_digest"): generate_file(gen, src, tmp_path/"out.jsonl", progress=False, shard_size=2, resume=True)


def test_csv_and_parquet_in_and_out(gen, tmp_path, inputs):
    import csv, pyarrow as pa, pyarrow.parquet as pq
    with open(tmp_path/"in.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f); w.writerow(["id", "input"]); w.writerows([[k, x] for k, x in enumerate(inputs[:7])])
    pq.write_table(pa.table({"id": list(range(7)), "input": inputs[:7]}), tmp_path/"in.parquet", row_group_size=3)
    want = gen(inputs[:7])
    rows = rows_of(generate_file(gen, tmp_path/"in.csv", tmp_path/"csv.jsonl", progress=False, shard_size=2))
    assert [r["id"] for r in rows] == [str(k) for k in range(7)] and same(rows, want)   # CSV cells are strings
    out = pq.read_table(generate_file(gen, tmp_path/"in.parquet", tmp_path/"out.parquet", progress=False, shard_size=2)).to_pylist()
    assert [r["line"] for r in out] == list(range(1, 8)) and [r["report"] for r in out] == [str(r) for r in want]
    assert [json.loads(r["facts"]) for r in out] == [r.facts for r in want] and [json.loads(r["record"])["id"] for r in out] == list(range(7))
    shards = generate_file(gen, tmp_path/"in.parquet", str(tmp_path/"shards") + "/", progress=False, shard_size=2, fmt="parquet")
    assert sorted(p.name for p in shards.glob("part-*")) == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]  # row groups of 3


# ---------------------------------------------------------------- kill -9, then --resume

def kill_after_shards(args:list, parts:Path, n:int, timeout:float=240) -> int:
    "Start claim_t5_generate, SIGKILL its whole process group (the command and any Ray it started) once `n` shards exist; the shards then."
    p = subprocess.Popen([str(BIN/"claim_t5_generate"), *map(str, args)], env=cli_env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    try:
        while time.time() - t0 < timeout and p.poll() is None:
            if len(list(parts.glob("part-*"))) >= n: break
            time.sleep(0.05)
    finally:
        if p.poll() is None: os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    return len(list(parts.glob("part-*")))


@pytest.mark.slow
@pytest.mark.parametrize("workers", [None, 2], ids=["streaming", "ray"])
def test_kill9_then_resume_every_line_once_in_order(model_dir, gen, tmp_path, inputs, workers):
    pytest.importorskip("ray") if workers else None
    src, out = write_input(tmp_path/"in.jsonl", inputs), tmp_path/"out.jsonl"
    args = ["--model_dir", model_dir, "--batch", src, "--output", out, "--engine", "transformers", "--shard_size", "3", "--batch_size", "1",
            *(["--workers", workers] if workers else [])]
    done = kill_after_shards(args, tmp_path/"out.jsonl.parts", 2)
    assert 2 <= done < 14 and not out.exists(), f"{done} shards: the run was not killed mid-way"
    (tmp_path/"out.jsonl.parts"/".part-00013.jsonl.999.tmp").write_text('{"report": "half a sha')  # a shard cut by the kill
    r = cli_subprocess("claim_t5_generate", *args, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    no_warnings(r.stderr)                                   # Ray's own logs stay out of the command's output
    assert r.stdout == f"wrote {out}\n"
    rows = rows_of(out)
    assert [x["id"] for x in rows] == list(range(len(inputs)))   # every line once, in input order
    assert same(rows, gen(inputs))
    assert not (tmp_path/"out.jsonl.parts").exists()


# ---------------------------------------------------------------- the same reports on every path

@pytest.mark.slow
@pytest.mark.parametrize("num_beams", [1, 4], ids=["greedy", "beam4"])
def test_one_process_streaming_and_ray_give_the_same_reports(model_dir, tmp_path, inputs, local_ray, num_beams):
    g = ClaimReportGenerator(model_dir, device="cpu", engine="transformers", num_beams=num_beams)
    one = g(inputs)                                                             # one call, one process
    src = write_input(tmp_path/"in.jsonl", inputs)
    streamed = rows_of(generate_file(g, src, tmp_path/"s.jsonl", progress=False, shard_size=7))
    on_ray = rows_of(generate_file_ray(model_dir, src, tmp_path/"r.jsonl", workers=2, progress=False, shard_size=7,
                                       engine="transformers", num_beams=num_beams))
    assert [x["id"] for x in streamed] == [x["id"] for x in on_ray] == list(range(len(inputs)))
    assert same(streamed, one) and same(on_ray, one)
