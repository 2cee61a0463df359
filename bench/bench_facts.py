"""Fact-check benchmark: how many reports per second `FactChecker.check` judges on one core (it runs on every report).
Reports wall-clock and CPU-time rates (they differ when other processes share the core). Checks the bundled test split's references and, as harder cases, the same reports with a swapped id, an invented
vendor and a wrong severity. Warms up, repeats (min/median/max), prints figures and saves a JSON result. Asserts nothing.

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/bench_facts.py [--repeats 5] [--copies 8]
"""
import argparse, json, os, platform, statistics, subprocess, sys, time
from pathlib import Path

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--copies", type=int, default=8, help="times the 4 x 662 reports are checked per repeat")
    ap.add_argument("--out", default="bench/results")
    a = ap.parse_args()
    if hasattr(os, "sched_setaffinity"): os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    import claim_t5
    from claim_t5.data import generate_dataset
    from claim_t5.facts import FactChecker
    ds = generate_dataset()
    t0 = time.perf_counter()
    checker = FactChecker.learn([r["input"] for r in ds["train"]], [r["output"] for r in ds["train"]])
    learn_s = time.perf_counter() - t0
    pairs = []
    for r in ds["test"]:
        out = r["output"]
        pairs += [(r["input"], out), (r["input"], out.replace("SHP-", "SHP-9")),
                  (r["input"], out.replace("Shipment", "Shipment from Globex")), (r["input"], out.replace("high", "low"))]
    work = pairs * a.copies
    for i, o in pairs: checker.check(i, o)  # warm-up
    rates, cpu_rates = [], []
    for _ in range(a.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for i, o in work: checker.check(i, o)
        rates.append(len(work) / (time.perf_counter() - t0)); cpu_rates.append(len(work) / (time.process_time() - c0))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    res = dict(reports_per_repeat=len(work), repeats=a.repeats, reports_per_s=dict(min=round(min(rates)),
               median=round(statistics.median(rates)), max=round(max(rates))),
               reports_per_cpu_s=dict(min=round(min(cpu_rates)), median=round(statistics.median(cpu_rates)), max=round(max(cpu_rates))),
               load_average=os.getloadavg()[0], target_reports_per_s=5000,
               learn_from_train_s=round(learn_s, 2), cores_used=1,
               machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", python=platform.python_version(),
               claim_t5_commit=commit, date=time.strftime("%Y-%m-%d %H:%M"))
    print(f"fact check, one core: {res['reports_per_s']['median']:,} reports/s median "
          f"(min {res['reports_per_s']['min']:,}, max {res['reports_per_s']['max']:,}; {a.repeats} x {len(work)} reports); "
          f"learning from 5289 training pairs {learn_s:.1f} s; per CPU-second {res['reports_per_cpu_s']['median']:,} "
          f"(load average {res['load_average']:.1f}: other processes share the core when it is above the core count)")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out)/"bench_facts.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
