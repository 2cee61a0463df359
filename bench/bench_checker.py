"""The fact check on any data: how many correct references it accepts, how many errors it catches, how fast it is.

Learns the check on the train split (`fields: auto` unless --fields is given; the checker tunes itself on the
validation split where it has something to tune) and measures on the test split:
- accepted: the share of the test references, untouched, that the checker calls correct;
- caught: among the references accepted untouched, the share flagged after one error is put into the *input* (the text
  stays as written), per error type: `swap_category` (a category value replaced by another value of that field seen in
  training), `swap_copy` (a copy value replaced by another seen in training), `missing` (a fact field the input lacked
  is added, so the report now leaves it out), `invented` (an optional fact field the input had is removed, so the
  report now invents it). Every eligible field of every accepted reference is tried once, with a seeded choice of value.
- speed: reports checked per second on one core (the test references, checked one at a time; wall clock and per
  CPU-second, which differ when other processes share the core), and the time to learn the check on 50,000 training
  pairs (the train split repeated or cut to that size; validation as it is).
- not checked: the same swaps in the fields the schema calls context (not facts): the errors the check cannot see.
- --noise P: one field of P of the training and validation inputs is replaced by another value seen for it (the texts
  stay), as in a company's old reports that disagree with their metadata; accepted and caught are still measured on the
  clean test split (compare with a run without --noise).
Saves a JSON result under bench/results/ and prints the figures. Asserts nothing.

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/bench_checker.py [DATA_DIR] [--repeats 3] [--no_learn_50k] [--noise 0.2]
(DATA_DIR: a folder of clean_train/val/test.jsonl, e.g. ../shared/datasets/rnnlg_tv; default: the bundled data)
"""
import argparse, os, random, sys, time
from collections import Counter
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, save_result, spread

ERRORS = ("swap_category", "swap_copy", "missing", "invented")


def load(data_dir):
    "(schema, train pairs, validation pairs, test pairs, evidence rows or None) as a user's run would see them."
    from claim_t5.config import make_config
    from claim_t5.data import as_pairs, load_claim_data, resolve_fields
    cfg, evidence = resolve_fields(make_config(None, fields="auto" if data_dir else None), data_dir, progress=False)
    dsd = load_claim_data(data_dir, cfg=cfg, progress=False)
    pairs = {s: [(r["input"], r["output"]) for r in as_pairs(dsd[s])] for s in dsd}
    return cfg.fields, pairs["train"], pairs.get("validation", []), pairs["test"], evidence


def corruptions(meta:dict, fields:list, seen:dict, rng:random.Random):
    "(error type, field, corrupted fields) for each eligible field of one input: one error each."
    from claim_t5.schema import parse_metadata# noqa (kept for symmetry with the checker's reading)
    for f in fields:
        name, kind, v = f["name"], f["kind"], meta.get(f["name"])
        if kind not in ("copy", "category"):  # fields the schema does not call facts are not checked: counted apart
            others = sorted(x for x in seen.get(name, ()) if x != v) if v else []
            if others: yield "not_checked", name, {**meta, name: rng.choice(others)}
            continue
        if v:
            others = sorted(x for x in seen.get(name, ()) if x != v and x.lower() != v.lower())
            if others: yield ("swap_category" if kind == "category" else "swap_copy"), name, {**meta, name: rng.choice(others)}
            if not f["required"]: yield "invented", name, {k: x for k, x in meta.items() if k != name}
        elif not f["required"] and seen.get(name):
            yield "missing", name, {**meta, name: rng.choice(sorted(seen[name]))}


def add_noise(pairs:list, fields:list, seen:dict, share:float, rng:random.Random) -> tuple:
    "(pairs, how many changed): one field of `share` of the pairs' inputs replaced by another value seen for it; the texts stay."
    from claim_t5.schema import format_metadata, parse_metadata
    out, changed, lenient = [], 0, [{**f, "required": False} for f in fields]
    for inp, txt in pairs:
        meta = parse_metadata(inp, require=False, fields=fields)
        names = [k for k, v in meta.items() if v and len(seen.get(k, ())) > 1]
        if names and rng.random() < share:
            k = rng.choice(names); meta[k] = rng.choice(sorted(x for x in seen[k] if x != meta[k])); changed += 1
            inp = format_metadata(meta, fields=lenient)
        out.append((inp, txt))
    return out, changed


def measure(data_dir=None, repeats:int=3, learn_50k:bool=True, seed:int=0, limit:int|None=None, dev:bool=False, noise:float=0.0) -> dict:
    import claim_t5.facts as facts
    from claim_t5.schema import format_metadata, parse_metadata
    fields, train, val, test, evidence = load(data_dir)
    seen = {}
    for i, _ in train:
        for k, x in parse_metadata(i, require=False, fields=fields).items():
            if x: seen.setdefault(k, set()).add(x)
    noisy = 0
    if noise:
        nrng = random.Random(seed + 1)
        train, n1 = add_noise(train, fields, seen, noise, nrng); val, n2 = add_noise(val, fields, seen, noise, nrng); noisy = n1 + n2
    if dev:  # developing the design: tune on one half of validation, measure on the other; the test split is not read
        ins = sorted({i for i, _ in val}); half = set(ins[::2])
        test, val = [p for p in val if p[0] not in half], [p for p in val if p[0] in half]
    t0 = time.perf_counter()
    def learn(pairs): return facts.FactChecker.learn([i for i, _ in pairs], [o for _, o in pairs], fields,
                                                   **({} if not has_tune else dict(val_inputs=[i for i, _ in val], val_targets=[o for _, o in val])))
    has_tune = hasattr(facts.FactChecker, "tune")  # the checker of claim_t5 < 0.2 tunes nothing (the baseline)
    checker = learn(train)
    learn_s = time.perf_counter() - t0
    if limit: test = test[:limit]
    verdicts = [checker.check(i, o) for i, o in test]
    accepted = [k for k, v in enumerate(verdicts) if v["ok"]]
    problems = Counter(p.split(":")[0] if ":" in p else p for v in verdicts for p in v["problems"])
    rng, tried, caught, per_field, missed = random.Random(seed), Counter(), Counter(), {}, {}
    for k in accepted:
        inp, out = test[k]
        meta = parse_metadata(inp, require=False, fields=fields)
        for err, name, bad in corruptions(meta, fields, seen, rng):
            hit = not checker.check(format_metadata(bad, fields=[{**f, "required": False} for f in fields]), out)["ok"]
            tried[err] += 1; caught[err] += hit
            pf = per_field.setdefault(err, {}).setdefault(name, [0, 0]); pf[0] += 1; pf[1] += hit
            if not hit and len(missed.setdefault(err, [])) < 5: missed[err].append(dict(field=name, input=format_metadata(bad, fields=[{**f, "required": False} for f in fields]), report=out))
    rates, cpu_rates = [], []
    for i, o in test[:200]: checker.check(i, o)  # warm-up
    work = test * max(1, 2000 // max(len(test), 1))
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for i, o in work: checker.check(i, o)
        rates.append(len(work) / (time.perf_counter() - t0)); cpu_rates.append(len(work) / (time.process_time() - c0))
    res = dict(data=str(data_dir) if data_dir else "bundled", measured_on="half of validation (dev)" if dev else "test", schema=fields,
               not_checked=[f["name"] for f in fields if f["kind"] not in ("copy", "category")],
               references=len(test), accepted=round(len(accepted) / max(len(test), 1), 4), accepted_n=len(accepted),
               caught={e: round(caught[e] / tried[e], 4) if tried[e] else None for e in ERRORS},
               caught_n={e: [caught[e], tried[e]] for e in ERRORS},
               not_checked_errors=tried["not_checked"], not_checked_caught=caught["not_checked"], noise=noise, noisy_pairs=noisy,
               caught_per_field={e: {f: round(h / n, 4) for f, (n, h) in sorted(d.items())} for e, d in per_field.items()},
               missed_examples=missed, rejected_problems=dict(problems.most_common(15)),
               rejected_examples=[dict(input=test[k][0], report=test[k][1], problems=verdicts[k]["problems"])
                                  for k in range(len(test)) if not verdicts[k]["ok"]][:10],
               reports_per_s=spread(rates, 0), reports_per_cpu_s=spread(cpu_rates, 0), learn_train_s=round(learn_s, 2), train_pairs=len(train))
    if learn_50k:
        big = (train * (50000 // len(train) + 1))[:50000]
        t0, c0 = time.perf_counter(), time.process_time()
        learn(big)
        res["learn_50k_s"], res["learn_50k_cpu_s"] = round(time.perf_counter() - t0, 2), round(time.process_time() - c0, 2)
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", nargs="?", default=None, help="folder with clean_train/val/test.jsonl; default: the bundled data")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no_learn_50k", action="store_true", help="skip timing the check learned on 50,000 pairs")
    ap.add_argument("--limit", type=int, default=None, help="only the first N test references (a quick look)")
    ap.add_argument("--dev", action="store_true", help="tune on half of validation and measure on the other half (the test split is not read)")
    ap.add_argument("--noise", type=float, default=0.0, help="replace one field in this share of the training and validation inputs (the texts stay)")
    ap.add_argument("--designed_on", default="", help="the sets the check was designed on, recorded in the result (e.g. rnnlg_tv,viggo)")
    ap.add_argument("--out", default="bench/results")
    a = ap.parse_args()
    if hasattr(os, "sched_setaffinity"): os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    res = measure(a.data_dir, a.repeats, not a.no_learn_50k, limit=a.limit, dev=a.dev, noise=a.noise)
    name = Path(a.data_dir).name if a.data_dir else "bundled"
    designed = [x for x in a.designed_on.split(",") if x]
    res = dict(environment=environment(), **res, load_average=os.getloadavg()[0], cores_used=1, designed_on=designed,
               left_out=bool(designed) and name not in designed)
    print(f"{name}: accepted {res['accepted']:.3f} ({res['accepted_n']}/{res['references']}); caught " +
          ", ".join(f"{e} {c if c is None else round(c, 3)} ({res['caught_n'][e][0]}/{res['caught_n'][e][1]})" for e, c in res["caught"].items()) +
          f"; {res['reports_per_s']['median']:,.0f} reports/s, {res['reports_per_cpu_s']['median']:,.0f} per CPU-second "
          f"(one core, load {res['load_average']:.1f}: other processes share the core when it is above the core count); learned on "
          f"{res['train_pairs']} pairs in {res['learn_train_s']} s" +
          (f", on 50,000 in {res['learn_50k_s']} s ({res['learn_50k_cpu_s']} CPU-s)" if "learn_50k_s" in res else ""))
    if res["not_checked"]: print(f"not checked (not facts): {', '.join(res['not_checked'])}: {res['not_checked_errors']} errors "
                                 f"put there, {res['not_checked_caught']} flagged")
    if a.noise: print(f"noise: one field changed in {res['noisy_pairs']} training/validation inputs ({a.noise:.0%})")
    print("most common problems on untouched references:", res["rejected_problems"])
    print("wrote", save_result(f"bench_checker-{name}" + ("-dev" if a.dev else "") + (f"-noise{a.noise:g}" if a.noise else ""), res, a.out))
