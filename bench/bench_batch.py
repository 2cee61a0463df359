"""Batch benchmark: `claim_t5_generate --batch` on a large file of bundled-schema inputs, one process (streaming, one
thread) against Ray with 2 local workers (one thread each), side by side on the same input; then the memory check:
the one-process path on `--memory_lines` lines against `--lines` lines (peak RSS within 10%: memory flat in the number
of lines). Prints its figures and writes bench/results/bench_batch-<date>.json; asserts nothing.

Each run is the real command in a fresh process group; its processes (the command, and Ray's raylet, GCS and actors)
are sampled every 0.2 s with psutil: peak RSS per process and the peak of their sum. reports/s counts the whole command
(model loading and Ray's start included) and, from the progress bar's last figure, generation alone. The two outputs
are compared report by report (reports and fact verdicts).

Run: python bench/bench_batch.py [--model_dir DIR] [--lines 20000] [--memory_lines 200000] [--engine auto]
     python bench/bench_batch.py --lines 600 --memory_lines 3000      # a small try (a few minutes)
Without --model_dir, a tiny model is trained for seconds (claim_t5.config.quick_config: the tiny preset's shape).
"""
import argparse, itertools, json, os, re, signal, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, environment, save_result

def write_inputs(path:Path, n:int) -> Path:
    "`n` JSONL lines cycling over every bundled input (train, validation, test), each with an id."
    from claim_t5.data import load_claim_data
    ds = load_claim_data()
    pool = [x for split in ("train", "validation", "test") if split in ds for x in ds[split]["input"]]
    with open(path, "w", encoding="utf-8") as f:
        for k, x in zip(range(n), itertools.cycle(pool)): f.write(json.dumps({"input": x, "id": k}) + "\n")
    return path

def run_measured(args:list, every:float=0.2) -> dict:
    "Run claim_t5_generate with `args`; wall time, peak RSS per process (MB) and of their sum, the bar's last reports/s."
    import psutil
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    err = tempfile.TemporaryFile(mode="w+")
    t0 = time.perf_counter()
    p = subprocess.Popen([str(Path(sys.executable).parent/"claim_t5_generate"), *map(str, args)], env=env,
                         stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
    root, peaks, peak_sum = psutil.Process(p.pid), {}, 0.0
    while p.poll() is None:
        total = 0.0
        try: procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess: break
        for q in procs:
            try: mb, name = q.memory_info().rss / 2**20, q.name()
            except psutil.Error: continue
            total += mb
            if mb >= peaks.get(q.pid, ("", 0.0))[1]: peaks[q.pid] = (name, mb)  # Ray renames a worker as it works: keep its name at its peak
        peak_sum = max(peak_sum, total)
        time.sleep(every)
    out = p.communicate()[0]
    wall = time.perf_counter() - t0
    err.seek(0); stderr = err.read()
    if p.returncode != 0: raise RuntimeError(f"claim_t5_generate {' '.join(map(str, args))} failed ({p.returncode}):\n{stderr[-3000:]}")
    rates = re.findall(r"([\d.]+) reports/s", stderr)
    return dict(wall_s=round(wall, 2), bar_reports_per_s=float(rates[-1]) if rates else None, peak_rss_sum_mb=round(peak_sum, 1),
                peak_rss_mb={f"{n}[{pid}]": round(mb, 1) for pid, (n, mb) in sorted(peaks.items(), key=lambda kv: -kv[1][1])}, stdout=out.strip(),
                stderr_lines_other_than_the_bar=[l for l in stderr.replace("\r", "\n").splitlines() if l.strip() and "reports/s" not in l and "reports]" not in l][:20])

def same_reports(a:Path, b:Path) -> str:
    "How many lines of two outputs hold the same id, report and verdict."
    n = same = 0
    with open(a, encoding="utf-8") as fa, open(b, encoding="utf-8") as fb:
        for la, lb in itertools.zip_longest(fa, fb):
            n += 1
            if la and lb:
                ra, rb = json.loads(la), json.loads(lb)
                same += (ra["id"], ra["report"], ra["facts"]) == (rb["id"], rb["report"], rb["facts"])
    return f"{same}/{n}"

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model_dir", default=None, help="a fine_tuned_model/ folder; default: a tiny model trained here for seconds")
    ap.add_argument("--lines", type=int, default=20000, help="input lines for the side-by-side runs")
    ap.add_argument("--memory_lines", type=int, default=200000, help="lines for the memory check (one process); 0 skips it")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--engine", default="auto", help="the command's --engine on both sides (auto: CTranslate2 float32 when installed)")
    ap.add_argument("--shard_size", type=int, default=1000)
    ap.add_argument("--out", default=None, help="results folder (default bench/results)")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_batch-"))
    model_dir = a.model_dir
    if model_dir is None:
        from claim_t5.config import quick_config
        from claim_t5.train import train
        model_dir = str(train(quick_config(work/"model_training"), verbose=False).model_dir)
    res = dict(benchmark="bench_batch", **environment(), model_dir=str(model_dir), model_trained_here=a.model_dir is None,
               lines=a.lines, memory_lines=a.memory_lines, workers=a.workers, engine=a.engine, shard_size=a.shard_size, threads_per_process=1)
    print(f"machine: {res['machine']}; load {res['load_average_at_start']}; commit {res['git_commit']}; model {model_dir}")
    src = write_inputs(work/"in.jsonl", a.lines)
    common = ["--model_dir", model_dir, "--batch", src, "--engine", a.engine, "--shard_size", a.shard_size]
    subprocess.run([str(Path(sys.executable).parent/"claim_t5_generate"), "--model_dir", model_dir, "--engine", a.engine,
                    "--input", json.loads(src.open().readline())["input"]], capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})  # converts for CTranslate2 once, outside the timings
    one = run_measured([*common, "--output", work/"one.jsonl"])
    print(f"one process: {a.lines / one['wall_s']:.1f} reports/s ({one['wall_s']} s; bar {one['bar_reports_per_s']}/s), peak RSS sum {one['peak_rss_sum_mb']} MB", flush=True)
    ray = run_measured([*common, "--output", work/"ray.jsonl", "--workers", a.workers, "--threads_per_worker", 1])
    print(f"Ray {a.workers} workers: {a.lines / ray['wall_s']:.1f} reports/s ({ray['wall_s']} s; bar {ray['bar_reports_per_s']}/s), peak RSS sum {ray['peak_rss_sum_mb']} MB", flush=True)
    res.update(one_process=dict(**one, reports_per_s=round(a.lines / one["wall_s"], 2)), ray=dict(**ray, reports_per_s=round(a.lines / ray["wall_s"], 2)),
               ratio_ray_over_one=round(one["wall_s"] / ray["wall_s"], 2),
               ratio_generation_only=round(ray["bar_reports_per_s"] / one["bar_reports_per_s"], 2) if one["bar_reports_per_s"] and ray["bar_reports_per_s"] else None,
               identical_reports=same_reports(work/"one.jsonl", work/"ray.jsonl"))
    print(f"ratio Ray/one process: {res['ratio_ray_over_one']}x whole command, {res['ratio_generation_only']}x generation; identical reports {res['identical_reports']}")
    if a.memory_lines:
        big = run_measured(["--model_dir", model_dir, "--batch", write_inputs(work/"big.jsonl", a.memory_lines), "--engine", a.engine,
                            "--shard_size", a.shard_size, "--output", work/"big.jsonl.out"])
        peak = lambda r: max(r["peak_rss_mb"].values())
        res.update(memory=dict(lines=a.memory_lines, run=big, peak_rss_mb_at_lines=peak(one), peak_rss_mb_at_memory_lines=peak(big),
                               ratio=round(peak(big) / peak(one), 3), flat_within_10_percent=peak(big) <= 1.10 * peak(one)))
        print(f"memory: peak RSS {peak(one)} MB at {a.lines} lines, {peak(big)} MB at {a.memory_lines} lines (x{res['memory']['ratio']})")
    res["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"saved {save_result('bench_batch', res, a.out or ROOT/'bench'/'results')}")
    import shutil; shutil.rmtree(work, ignore_errors=True)  # the inputs and outputs (hundreds of MB at 200,000 lines)
