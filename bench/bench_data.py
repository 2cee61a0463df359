"""Data benchmark: a 50,000-pair training split (plus validation and test) loaded, validated and summarised, target <= 20 s on 2 cores.

One repeat is what the data stage does with `fields: auto`: read the training split and infer the schema from it
(`resolve_fields`), read and validate every split against it (`load_claim_data`: JSON, metadata, required and unknown
fields, duplicates, leakage, several references per input), and compute the statistics table (`data_stats`, words).
The data are the bundled generator's, 50,000/1,000/1,000 pairs, written once to a temporary folder. Warms up, repeats
(min/median/max), records the load average (the machine is shared), prints figures and saves a JSON result. No
timed asserts (it only checks that every row was loaded).

Run: .venv/bin/python bench/bench_data.py [--train 50000] [--repeats 3]
"""
import argparse, os, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, save_result, spread

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=50000, help="training pairs")
    ap.add_argument("--eval", type=int, default=1000, help="validation and test pairs, each")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench/results")
    a = ap.parse_args()
    import datasets
    from claim_t5.config import make_config
    from claim_t5.data import SPLIT_FILES, WordCounter, data_stats, load_claim_data, resolve_fields, write_jsonl
    from claim_t5.synth import generate_dataset
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as d:
        ds = generate_dataset(sizes={"train": a.train, "validation": a.eval, "test": a.eval})
        for split, rows in ds.items(): write_jsonl(rows, Path(d)/SPLIT_FILES[split])
        size_mb = sum((Path(d)/f).stat().st_size for f in SPLIT_FILES.values()) / 1e6

        def once() -> dict:
            t = {}
            t0 = time.perf_counter(); cfg, evidence = resolve_fields(make_config("tiny", fields="auto"), d, progress=False)
            t["infer_schema_s"] = time.perf_counter() - t0
            t0 = time.perf_counter(); dsd = load_claim_data(d, cfg=cfg, progress=False)
            t["load_and_validate_s"] = time.perf_counter() - t0
            t0 = time.perf_counter(); stats = data_stats(dsd, WordCounter())
            t["statistics_s"] = time.perf_counter() - t0
            t["total_s"] = sum(t.values())
            assert len(dsd["train"]) == a.train and int(stats.loc["train", "examples"]) == a.train  # the work was done
            return t

        once()  # warm-up: imports, file cache
        loads, runs = [], []
        for _ in range(a.repeats):
            loads.append(os.getloadavg()[0]); runs.append(once())
    res = dict(environment=environment(), train_pairs=a.train, eval_pairs_each=a.eval, files_mb=round(size_mb, 1),
               repeats=a.repeats, target_total_s=20, load_average_at_each_repeat=[round(x, 2) for x in loads],
               versions=dict(datasets=datasets.__version__, pyarrow=__import__("pyarrow").__version__),
               seconds={k: spread([r[k] for r in runs]) for k in ("total_s", "infer_schema_s", "load_and_validate_s", "statistics_s")})
    s = res["seconds"]
    print(f"{a.train:,} training pairs (+{a.eval:,} validation, +{a.eval:,} test, {size_mb:.0f} MB): infer schema, load, "
          f"validate and summarise in {s['total_s']['median']} s median (min {s['total_s']['min']}, max {s['total_s']['max']}; "
          f"target <= 20 s): schema {s['infer_schema_s']['median']} s, load+validate {s['load_and_validate_s']['median']} s, "
          f"statistics {s['statistics_s']['median']} s; load average {', '.join(map(str, res['load_average_at_each_repeat']))} "
          f"on {os.cpu_count()} cores")
    print("wrote", save_result("bench_data", res, a.out))
