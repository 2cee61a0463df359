"""Fact-check benchmark: how many reports per second `FactChecker.check` judges on one core (it runs on every report).
Reports wall-clock and CPU-time rates (they differ when other processes share the core). Checks the bundled test split's references and, as harder cases, the same reports with a swapped id, an invented
vendor and a wrong severity. Warms up, repeats (min/median/max), prints figures and saves a JSON result. Asserts nothing.

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/bench_facts.py [--repeats 5] [--copies 8]
"""
import argparse, os, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, save_result, spread

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--copies", type=int, default=8, help="times the 4 x 662 reports are checked per repeat")
    ap.add_argument("--out", default="bench/results")
    a = ap.parse_args()
    if hasattr(os, "sched_setaffinity"): os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    import claim_t5
    from claim_t5.synth import generate_dataset
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
    res = dict(environment=environment(), reports_per_repeat=len(work), repeats=a.repeats, cores_used=1,
               reports_per_s=spread(rates, 0), reports_per_cpu_s=spread(cpu_rates, 0), load_average=os.getloadavg()[0],
               target_reports_per_s=5000, learn_from_train_s=round(learn_s, 2))
    print(f"fact check, one core: {res['reports_per_s']['median']:,.0f} reports/s median "
          f"(min {res['reports_per_s']['min']:,.0f}, max {res['reports_per_s']['max']:,.0f}; {a.repeats} x {len(work)} reports); "
          f"learning from 5289 training pairs {learn_s:.1f} s; per CPU-second {res['reports_per_cpu_s']['median']:,.0f} "
          f"(load average {res['load_average']:.1f}: other processes share the core when it is above the core count)")
    print("wrote", save_result("bench_facts", res, a.out))
