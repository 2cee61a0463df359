"""Tests of claim_t5.reviews and the service's review endpoints: the store on SQLite (WAL) and on a real PostgreSQL
server the tests start, `claim_t5_data --from_reviews` end to end, the `review_data` config key in a training run,
the API key, and durability: reviewers approving at once while the service is killed with SIGKILL."""
import contextlib, glob, io, json, os, shutil, signal, subprocess, sys, tempfile, threading, time, uuid, warnings
from pathlib import Path

import pytest

from claim_t5.synth import generate_dataset
from claim_t5.reviews import (ReviewConflict, ReviewError, ReviewStore, StoreUnavailable, data_main, export_reviews,
                              reviews_table)
from conftest import BIN, cli_env, cli_subprocess, free_port

ROOT = Path(__file__).resolve().parent.parent
INP = "shipment_id=SHP-10001; damage_type=dent; severity=high"
KEY = "test-key-0123456789-abcdefghijklmnop"  # 32+ characters: shorter keys are refused
LEAK = generate_dataset()["test"][0]["input"]  # an input of the bundled test split


# ---------------------------------------------------------------- a real PostgreSQL, started by the tests

def _pg_bindir() -> Path | None:
    hits = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if hits: return Path(hits[-1]).parent
    return Path(shutil.which("initdb")).parent if shutil.which("initdb") else None




@pytest.fixture(scope="session")
def postgres_server():
    "The admin URL of a PostgreSQL server in a temporary folder (as the `postgres` user when the tests run as root)."
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl are not installed (Debian package `postgresql`; .ci/run installs it)")
    root = os.geteuid() == 0
    d = Path(tempfile.mkdtemp(prefix="claim_t5_pg_"))
    if root: shutil.chown(d, "postgres", "postgres")  # PostgreSQL refuses to run as root
    def as_pg(*cmd):
        cmd = [str(c) for c in cmd]
        return subprocess.run((["runuser", "-u", "postgres", "--"] if root else []) + cmd, capture_output=True, text=True, timeout=120)
    port = free_port()
    r = as_pg(bindir/"initdb", "-D", d/"data", "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
    assert r.returncode == 0, f"initdb failed: {r.stdout}{r.stderr}"
    r = as_pg(bindir/"pg_ctl", "-D", d/"data", "-l", d/"server.log", "-w", "-t", "60",
              "-o", f"-p {port} -k {d} -c listen_addresses=127.0.0.1", "start")
    assert r.returncode == 0, f"pg_ctl start failed: {r.stdout}{r.stderr}{(d/'server.log').read_text() if (d/'server.log').exists() else ''}"
    try: yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        as_pg(bindir/"pg_ctl", "-D", d/"data", "-m", "fast", "-w", "stop")
        shutil.rmtree(d, ignore_errors=True)


def new_pg_database(server: str) -> str:
    "A fresh, empty database on the server: its URL."
    import sqlalchemy as sa
    name = f"reviews_{uuid.uuid4().hex[:12]}"
    eng = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with eng.connect() as c: c.exec_driver_sql(f"CREATE DATABASE {name}")
    eng.dispose()
    return f"{server}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    "Where a fresh review store lives: a SQLite file, or a new database on the tests' PostgreSQL server."
    if request.param == "sqlite": return str(tmp_path/"reviews.sqlite")
    return new_pg_database(request.getfixturevalue("postgres_server"))


def approve(store, inp=INP, generated="Shipment SHP-10001 has a dent.", final=None, reviewer="Ann", **kw):
    return store.add(inp, generated, generated if final is None else final, kw.pop("decision", "approved"), reviewer, **kw)


# ---------------------------------------------------------------- the store, on both backends

def test_store_round_trip(store_url):
    facts = {"ok": False, "fields": {"severity": "missing"}, "problems": ["severity: high is not stated"]}
    with ReviewStore(store_url) as s:
        r = approve(s, final="Shipment SHP-10001 has a dent; severity high.", note="<script>alert(1)</script>",
                    facts_before=facts, facts_after={"ok": True}, model_fingerprint="f" * 16, request_id="req-00000001")
        assert r["created"] and r["id"] >= 1 and r["created_at"].endswith("Z")
        s.add(INP, "Shipment SHP-10001 is fine.", "", "rejected", "Bob", request_id="req-00000002")
    with ReviewStore(store_url) as s:  # a new connection pool: what a restarted service reads
        rows = s.rows()
        assert [x["request_id"] for x in rows] == ["req-00000002", "req-00000001"]  # newest first
        first = rows[1]
        assert (first["facts_before"], first["facts_after"], first["note"], first["reviewer"]) == (facts, {"ok": True}, "<script>alert(1)</script>", "Ann")
        assert first["final"] == "Shipment SHP-10001 has a dent; severity high." and first["generated"] == "Shipment SHP-10001 has a dent."
        assert (first["decision"], first["model_fingerprint"], s.count()) == ("approved", "f" * 16, 2)
        assert s.describe()["backend"] == ("postgresql" if "://" in store_url else "sqlite")


def test_store_same_request_id_is_one_row_and_a_different_decision_is_a_conflict(store_url):
    with ReviewStore(store_url) as s:
        a = approve(s, request_id="retry-0000001")
        b = approve(s, request_id="retry-0000001")  # the client retried: its answer was lost
        assert (a["created"], b["created"], a["id"]) == (True, False, b["id"])
        with pytest.raises(ReviewConflict, match="already used"):
            approve(s, request_id="retry-0000001", decision="rejected")
        assert s.count() == 1


def test_store_refuses_bad_decisions(store_url):
    with ReviewStore(store_url) as s:
        with pytest.raises(ReviewError, match="approved, rejected"): approve(s, decision="ok")
        with pytest.raises(ReviewError, match="'reviewer'"): approve(s, reviewer="   ")
        with pytest.raises(ReviewError, match="'final'"): approve(s, final=" ")
        with pytest.raises(ReviewError, match="limit of 2000"): approve(s, note="x" * 2001)
        assert s.count() == 0


def test_store_failure_is_not_an_acknowledgement(store_url):
    with ReviewStore(store_url) as s:
        reviews_table.drop(s.engine)  # the database lost its table: the add must fail loudly, not look saved
        with pytest.raises(StoreUnavailable, match="NOT stored"): approve(s)


def test_store_several_writers_at_once(store_url):
    # four reviewers, each with a store of their own (as four service processes would have), adding at once
    stores = [ReviewStore(store_url) for _ in range(4)]
    ids, errors = [], []
    def work(k):
        try:
            for i in range(15): ids.append(approve(stores[k], inp=f"shipment_id=SHP-{k}{i:04d}; damage_type=dent; severity=low",
                                                   request_id=f"w{k}-{i:08d}")["id"])
        except Exception as e: errors.append(e)
    ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in ts: t.start()
    for t in ts: t.join()
    assert not errors, errors
    assert len(ids) == len(set(ids)) == stores[0].count() == 60
    for s in stores: s.close()


def test_sqlite_store_is_wal_with_full_sync(tmp_path):
    with ReviewStore(tmp_path/"r.sqlite") as s:
        approve(s)
        with s.engine.connect() as c:  # every connection the store opens
            assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    import sqlite3
    assert sqlite3.connect(tmp_path/"r.sqlite").execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # kept in the file
    # this SQLite's default may already be FULL: check that the store's own listener sets it on a connection that is not
    import sqlalchemy as sa
    from claim_t5.reviews import _sqlite_pragmas
    raw = sqlite3.connect(tmp_path/"other.sqlite"); raw.execute("PRAGMA synchronous=NORMAL")
    _sqlite_pragmas(raw, None)
    assert raw.execute("PRAGMA synchronous").fetchone()[0] == 2 and raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with ReviewStore(tmp_path/"r.sqlite") as s: assert sa.event.contains(s.engine, "connect", _sqlite_pragmas)


def test_store_errors_name_the_store(tmp_path):
    with pytest.raises(ReviewError, match="no such review store"): ReviewStore(tmp_path/"missing.sqlite", create=False)
    with pytest.raises(ReviewError, match="cannot open the review store"): ReviewStore("postgresql+psycopg://nobody@127.0.0.1:1/none")


# ---------------------------------------------------------------- approved reviews as training pairs

def run_data_main(*args, cwd=None):
    "`claim_t5_data ARGS` through the function the entry point names (claim_t5.reviews.data_main), in this process."
    from fastcore.script import anno_parser
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            kw = vars(anno_parser(data_main.__wrapped__, prog="claim_t5_data").parse_args([str(a) for a in args]))
            kw.pop("pdb", None); kw.pop("xtra", None)
            data_main(**kw)
        except SystemExit as e: code = e.code if isinstance(e.code, int) else 1
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def fill(store):
    "Approved edited, approved unedited, rejected, and approved with a test-split input; the ids in that order."
    edited = approve(store, final="Shipment SHP-10001 has a dent; severity high.")["id"]
    same = approve(store, inp="shipment_id=SHP-10002; damage_type=crack; severity=low", generated="Shipment SHP-10002 has a crack.")["id"]
    rej = store.add("shipment_id=SHP-10003; damage_type=scratch; severity=low", "Rejected draft text.", "Rejected final text.",
                    "rejected", "Bob")["id"]
    leak = approve(store, inp=LEAK, generated="A report for a test input.")["id"]
    return edited, same, rej, leak


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_from_reviews_end_to_end(backend, tmp_path, request):
    url = str(tmp_path/"r.sqlite") if backend == "sqlite" else new_pg_database(request.getfixturevalue("postgres_server"))
    with ReviewStore(url) as s: edited, same, rej, leak = fill(s)
    r = run_data_main("--from_reviews", url, "--out", tmp_path/"pairs")
    assert r.returncode == 0, r.stderr
    assert "wrote 2 training pair(s) from approved reviews (1 edited, 1 unedited)" in r.stdout, r.stdout
    pairs = [json.loads(l) for l in (tmp_path/"pairs"/"train.jsonl").read_text().splitlines()]
    assert [(p["review_id"], p["output"]) for p in pairs] == [(edited, "Shipment SHP-10001 has a dent; severity high."),
                                                              (same, "Shipment SHP-10002 has a crack.")]
    assert not any("Rejected" in p["output"] or p["input"] == LEAK for p in pairs)  # rejected never, leaked never
    assert f":{leak}: field 'input': also in test (bundled) row 1: leakage" in r.stdout, r.stdout  # reported by review id
    held = [json.loads(l) for l in (tmp_path/"pairs"/"held_out.jsonl").read_text().splitlines()]
    assert [(h["line"], h["field"]) for h in held] == [(leak, "input")]
    check = run_data_main("--check", tmp_path/"pairs")  # the usual validation reads them as a train split
    assert check.returncode == 0 and "no problems found" in check.stdout, check.stdout + check.stderr


def test_from_reviews_leakage_against_a_data_folder(tmp_path):
    data = tmp_path/"data"; data.mkdir()
    rows = lambda *ins: "".join(json.dumps({"input": i, "output": f"Report on {i}."}) + "\n" for i in ins)
    (data/"train.jsonl").write_text(rows("shipment_id=SHP-20001; damage_type=dent; severity=low"))
    (data/"val.jsonl").write_text(rows("shipment_id=SHP-20002; damage_type=dent; severity=low"))
    (data/"test.jsonl").write_text(rows("shipment_id=SHP-20003; damage_type=dent; severity=low"))
    with ReviewStore(tmp_path/"r.sqlite") as s:
        # the validation input written with other spacing and field order: still the same input
        leak = approve(s, inp="severity=low;damage_type=dent ;  shipment_id=SHP-20002", generated="Leaked.")["id"]
        ok = approve(s, inp=LEAK, generated="Fine against this folder.")["id"]  # a bundled test input is no leak here
    r = run_data_main("--from_reviews", tmp_path/"r.sqlite", "--out", tmp_path/"out", "--data_dir", data)
    assert r.returncode == 0, r.stderr
    assert f":{leak}: field 'input': also in validation val.jsonl:1: leakage" in r.stdout, r.stdout
    assert [json.loads(l)["review_id"] for l in (tmp_path/"out"/"train.jsonl").read_text().splitlines()] == [ok]


def test_from_reviews_errors(tmp_path):
    r = run_data_main("--from_reviews", tmp_path/"none.sqlite", "--out", tmp_path/"o")
    assert r.returncode == 1 and "no such review store" in r.stderr and not (tmp_path/"none.sqlite").exists()
    r = run_data_main("--from_reviews", tmp_path/"none.sqlite")
    assert r.returncode == 1 and "--from_reviews needs --out" in r.stderr


def test_claim_t5_data_keeps_its_other_commands(tmp_path):
    # the entry point moved to claim_t5.reviews.data_main: it must still be the data command, every option of it
    import inspect
    from claim_t5.data import main as plain
    assert set(inspect.signature(plain.__wrapped__).parameters) <= set(inspect.signature(data_main.__wrapped__).parameters)
    r = run_data_main("--out", tmp_path/"bundled")
    assert r.returncode == 0 and (tmp_path/"bundled"/"clean_train.jsonl").exists(), r.stderr
    settings = (ROOT/"settings.ini").read_text()
    assert "claim_t5_data=claim_t5.reviews:data_main" in settings  # what `pip install` makes the console script run


def test_from_reviews_in_a_fresh_process(tmp_path):
    with ReviewStore(tmp_path/"r.sqlite") as s: fill(s)
    script = tmp_path/"claim_t5_data"  # what pip writes for the entry point in settings.ini
    script.write_text("import sys\nfrom claim_t5.reviews import data_main\nsys.exit(data_main())\n")
    r = subprocess.run([sys.executable, script, "--from_reviews", tmp_path/"r.sqlite", "--out", tmp_path/"o"],
                       capture_output=True, text=True, env={**cli_env(), "PYTHONPATH": str(ROOT)}, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "wrote 2 training pair(s)" in r.stdout and "Warning" not in r.stderr, r.stdout + r.stderr


# ---------------------------------------------------------------- the review_data key in a training run

@pytest.mark.slow  # a seconds-long training run
def test_review_data_key_adds_approved_reviews_to_training(tmp_path):
    from claim_t5.config import make_config, quick_config
    from claim_t5.train import train
    assert make_config("tiny", review_data=str(tmp_path/"r.sqlite")).review_data == str(tmp_path/"r.sqlite")
    with ReviewStore(tmp_path/"r.sqlite") as s:
        approve(s, inp="shipment_id=SHP-30001; damage_type=dent; severity=high; vendor=Zyxwv Freight",
                generated="Shipment SHP-30001 from Acme has a dent.", final="Shipment SHP-30001 from Zyxwv Freight has a dent.")
        s.add("shipment_id=SHP-30002; damage_type=dent; severity=low; vendor=Rejecto Freight", "Shipment SHP-30002 from Rejecto Freight.",
              "Shipment SHP-30002 from Rejecto Freight.", "rejected", "Bob")
        approve(s, inp=LEAK, generated="A leaked report.")
    cfg = quick_config(tmp_path/"model_training", review_data=str(tmp_path/"r.sqlite"), num_epochs=1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train(cfg, verbose=True)
    assert "added 1 approved review(s) to the train split, held out 1" in out.getvalue(), out.getvalue()
    assert "leakage" in out.getvalue()
    # the fact checker is learned from the train split the run used: the approved review's vendor is in it, the rejected one's not
    known = json.loads((Path(res.model_dir)/"facts.json").read_text())["known"]["vendor"]
    assert "Zyxwv Freight" in known and "Rejecto Freight" not in known


# ---------------------------------------------------------------- the service: reviews and the API key

@pytest.fixture(scope="module")
def generator(tiny_model_dir):
    from claim_t5.inference import ClaimReportGenerator
    return ClaimReportGenerator(tiny_model_dir, device="cpu")


def review_body(gen, i=0, **kw):
    meta = dict(shipment_id=f"SHP-{40000 + i}", damage_type="dent", severity="high")
    draft = gen(meta)
    return {"input": gen.prepare(meta), "generated": str(draft), "final": f"Shipment SHP-{40000 + i} has a dent; severity high.",
            "decision": "approved", "reviewer": "Ann", "note": None, "request_id": f"req-{uuid.uuid4().hex}", **kw}


def test_review_endpoint(generator, tmp_path):
    from fastapi.testclient import TestClient
    from claim_t5.serve import create_app
    body = review_body(generator, facts_before={"ok": True, "forged": 1})  # a client's own verdict is ignored
    with TestClient(create_app(generator, reviews=tmp_path/"r.sqlite", user_name="Ann"), base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        r = c.post("/api/reviews", json=body)
        assert r.status_code == 201, r.text
        got = r.json()
        assert got["facts_before"] == generator(dict(shipment_id="SHP-40000", damage_type="dent", severity="high")).facts
        assert got["facts_after"] == generator.check(body["input"], body["final"]) and got["model_fingerprint"] == generator.fingerprint
        again = c.post("/api/reviews", json=body)
        assert (again.status_code, again.json()["id"], again.json()["created"]) == (200, got["id"], False)
        assert c.post("/api/reviews", json={**body, "decision": "rejected"}).status_code == 409
        for bad, needle in [({"decision": "maybe"}, "decision"), ({"input": "damage_type=dent"}, "shipment_id"),
                            ({"request_id": "no spaces allowed"}, "request_id"), ({"final": "a\x00b"}, "NUL")]:
            r = c.post("/api/reviews", json={**body, "request_id": f"req-{uuid.uuid4().hex}", **bad})
            assert r.status_code == 422 and needle in r.text, (bad, r.status_code, r.text)
        assert c.post("/api/reviews", json={**body, "final": "x" * 200_000}).status_code == 413  # over the body limit
        html = {**body, "request_id": "req-html-0001", "final": "<script>alert(1)</script> <b>bold</b>", "note": "<img src=x onerror=alert(1)>"}
        assert c.post("/api/reviews", json=html).status_code == 201
        listed = c.get("/api/reviews?limit=1")
        assert listed.headers["content-type"].startswith("application/json")  # text in JSON: the page shows it as text
        assert listed.json()["reviews"][0]["final"] == html["final"] and listed.json()["total"] == 2
        assert c.get("/api/reviews?limit=0").status_code == 422
    with ReviewStore(tmp_path/"r.sqlite") as s: assert s.count() == 2
    with TestClient(create_app(generator), base_url="http://127.0.0.1", raise_server_exceptions=False) as c:  # no store: refused, never "saved"
        r = c.post("/api/reviews", json=review_body(generator))
        assert r.status_code == 503 and "--reviews" in r.text


def test_api_key_guards_every_endpoint_but_health(generator, tmp_path):
    from fastapi.testclient import TestClient
    from claim_t5.serve import create_app
    app = create_app(generator, reviews=tmp_path/"r.sqlite", api_key=KEY)
    routes = sorted({(m, r.path) for r in app.routes for m in getattr(r, "methods", ()) if m != "HEAD"})
    assert {("GET", "/health"), ("GET", "/metrics"), ("POST", "/api/reviews"), ("GET", "/api/reviews"), ("POST", "/generate_claim")} <= set(routes)
    with TestClient(app, raise_server_exceptions=False, base_url="http://127.0.0.1") as c:
        for method, path in routes:
            if method == "GET" and path in app.state.open_paths: continue  # /health, and the page's own static files (no data in them)
            for headers, needle in [({}, "API key required"), ({"X-API-Key": "wrong-key-000"}, "wrong API key")]:
                r = c.request(method, path, headers=headers)
                assert r.status_code == 401 and needle in r.text, (method, path, r.status_code, r.text)
        assert app.state.open_paths == {"/health", "/", "/desk/desk.js", "/desk/desk.css"}, app.state.open_paths  # nothing else is open
        assert c.get("/health").json() == {"status": "ok"} and c.get("/status", headers={"X-API-Key": KEY}).json()["api_key"] is True
        k = {"X-API-Key": KEY}
        assert c.get("/metrics", headers=k).status_code == 200 and c.get("/ready", headers=k).status_code == 200
        assert c.post("/generate_claim", headers=k, json=dict(shipment_id="SHP-1", damage_type="dent", severity="low")).status_code == 200
        assert c.post("/api/reviews", headers=k, json=review_body(generator)).status_code == 201
        assert c.get("/api/reviews", headers=k).json()["total"] == 1


def test_non_loopback_host_without_a_key_refuses_to_start(tiny_model_dir, tmp_path):
    env = {k: v for k, v in cli_env().items() if k != "CLAIM_T5_API_KEY"}
    r = subprocess.run([str(BIN/"claim_t5_serve"), "--model_dir", str(tiny_model_dir), "--host", "0.0.0.0", "--port", str(free_port()),
                        "--reviews", str(tmp_path/"r.sqlite")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and "not loopback" in r.stderr and "CLAIM_T5_API_KEY" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path/"r.sqlite").exists()  # refused before anything was opened
    r = subprocess.run([str(BIN/"claim_t5_serve"), "--model_dir", str(tiny_model_dir), "--host", "0.0.0.0", "--api_key", "short"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and "32 to 256" in r.stderr, r.stderr


# ---------------------------------------------------------------- durability: 4 reviewers, kill -9 mid-run

class Service:
    "`claim_t5_serve --in_thread` on a free loopback port with an API key from the environment, storing reviews in `db`."
    def __init__(self, model_dir, db, log):
        self.port = free_port(); self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([str(BIN/"claim_t5_serve"), "--model_dir", str(model_dir), "--in_thread", "--port", str(self.port),
                                      "--reviews", str(db), "--threads", "1", "--engine", "transformers"], env={**cli_env(), "CLAIM_T5_API_KEY": KEY},
                                     stdout=log, stderr=subprocess.STDOUT)
        import httpx
        end = time.monotonic() + 180
        while time.monotonic() < end:
            assert self.proc.poll() is None, f"the service exited with {self.proc.returncode}"
            try:
                if httpx.get(self.url + "/ready", headers={"X-API-Key": KEY}, timeout=2).status_code == 200: return
            except httpx.HTTPError: pass
            time.sleep(0.2)
        raise AssertionError("the service did not get ready in 180 s")

    def kill9(self): os.kill(self.proc.pid, signal.SIGKILL); self.proc.wait(10)
    def stop(self):
        if self.proc.poll() is None: self.proc.terminate(); self.proc.wait(30)


def drive(url, seconds, reviewers=4, stop=None):
    "Reviewers approving in closed loops until `seconds` pass (or the service dies): (acknowledged ids, ids whose answer never came)."
    import httpx
    acked, lost, odd, lock = [], [], [], threading.Lock()
    end = time.monotonic() + seconds
    def reviewer(k):
        with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30) as c:
            i = 0
            while time.monotonic() < end and not (stop and stop.is_set()):
                rid = f"r{k}-{uuid.uuid4().hex}"
                body = {"input": f"shipment_id=SHP-{k}{i:05d}; damage_type=dent; severity=high", "generated": f"Shipment SHP-{k}{i:05d} has a dent.",
                        "final": f"Shipment SHP-{k}{i:05d} has a dent; severity high.", "decision": "approved", "reviewer": f"reviewer {k}",
                        "request_id": rid}
                try: r = c.post("/api/reviews", json=body)
                except httpx.HTTPError:  # the service died under this request: saved or not, the client does not know
                    with lock: lost.append((rid, body))
                    return
                with lock: (acked if r.status_code == 201 else odd).append(rid if r.status_code == 201 else (r.status_code, r.text))
                i += 1
    ts = [threading.Thread(target=reviewer, args=(k,)) for k in range(reviewers)]
    for t in ts: t.start()
    return ts, acked, lost, odd


def stored_request_ids(db) -> dict:
    import sqlite3
    con = sqlite3.connect(db)
    try: return dict(con.execute("SELECT request_id, count(*) FROM reviews GROUP BY request_id").fetchall())
    finally: con.close()


@pytest.mark.slow  # starts the service twice (seconds each) and drives it for ~8 s
def test_kill_9_loses_no_acknowledged_review(tiny_model_dir, tmp_path):
    import httpx
    db = tmp_path/"reviews.sqlite"
    with open(tmp_path/"service.log", "w+") as log:
        svc = Service(tiny_model_dir, db, log)
        ts, acked, lost, odd = drive(svc.url, seconds=60)
        time.sleep(4)
        svc.kill9()  # mid-run: requests in flight, commits under way
        for t in ts: t.join(60)
        assert not odd, f"answers other than 201: {odd[:3]}"
        assert len(acked) > 20, f"only {len(acked)} reviews acknowledged before the kill"
        counts = stored_request_ids(db)
        missing = [r for r in acked if counts.get(r) != 1]
        assert not missing, f"{len(missing)} acknowledged review(s) not in the database exactly once: {missing[:5]}"
        # the clients whose answer was lost retry with the same request_id: stored once, whatever the kill left
        svc = Service(tiny_model_dir, db, log)
        try:
            with httpx.Client(base_url=svc.url, headers={"X-API-Key": KEY}, timeout=30) as c:
                for rid, body in lost: assert c.post("/api/reviews", json=body).status_code in (200, 201)
        finally: svc.stop()
    counts = stored_request_ids(db)
    assert all(counts.get(r) == 1 for r in acked + [rid for rid, _ in lost])
    assert sum(counts.values()) == len(acked) + len(lost) == len(counts)  # nothing twice, nothing unknown


def test_review_endpoint_on_postgresql(generator, postgres_server):
    # the service with a database URL: the row is on the server when the 201 comes back
    from fastapi.testclient import TestClient
    from claim_t5.serve import create_app
    url = new_pg_database(postgres_server)
    body = review_body(generator)
    with TestClient(create_app(generator, reviews=url), base_url="http://127.0.0.1") as c:
        r = c.post("/api/reviews", json=body)
        assert r.status_code == 201 and c.get("/status").json()["reviews"] == "postgresql", r.text
        nul = c.post("/api/reviews", json={**review_body(generator), "note": "a\x00b"})  # PostgreSQL refuses NUL in text: a 422, not a 503
        assert nul.status_code == 422 and "NUL" in nul.text, nul.text
    with ReviewStore(url) as s:
        (row,) = s.rows()
        assert (row["request_id"], row["final"], row["facts_after"]) == (body["request_id"], body["final"], r.json()["facts_after"])


# ---------------------------------------------------------------- issue 29: reviewers by name, a second look before training

@pytest.fixture
def team(tmp_path):
    "A users file with two reviewers and an admin: (path, {name: key})."
    from claim_t5.serve import add_user
    path = tmp_path/"users.yaml"
    return path, {n: add_user(path, n, r) for n, r in [("ann", "reviewer"), ("bob", "reviewer"), ("ada", "admin")]}


def test_the_stored_reviewer_is_the_keys_user(generator, team, tmp_path):
    "A POST naming another reviewer is stored under the key's user; a reviewer lists only their own; a retry by another user is 409."
    from fastapi.testclient import TestClient
    from claim_t5.serve import create_app
    path, keys = team
    with TestClient(create_app(generator, reviews=tmp_path/"r.sqlite", users=path), base_url="http://127.0.0.1") as c:
        body = review_body(generator, reviewer="bob")  # Ann's key, Bob's name
        r = c.post("/api/reviews", json=body, headers={"X-API-Key": keys["ann"]})
        assert r.status_code == 201 and r.json()["reviewer"] == "ann", r.text
        assert c.post("/api/reviews", json=body, headers={"X-API-Key": keys["bob"]}).status_code == 409  # Ann's request_id, Bob's key
        assert c.post("/api/reviews", json=review_body(generator, 1), headers={"X-API-Key": keys["bob"]}).json()["reviewer"] == "bob"
        mine = c.get("/api/reviews", headers={"X-API-Key": keys["bob"]}).json()
        assert [x["reviewer"] for x in mine["reviews"]] == ["bob"] and mine["total"] == 1
        assert c.get("/api/reviews", headers={"X-API-Key": keys["ada"]}).json()["total"] == 2  # an admin sees everyone's
        assert c.get("/api/me", headers={"X-API-Key": keys["ann"]}).json() == {"name": "ann", "role": "reviewer", "auth": "users"}
    with ReviewStore(tmp_path/"r.sqlite") as s: assert sorted(r["reviewer"] for r in s.rows()) == ["ann", "bob"]


def test_a_retry_whose_note_differs_is_a_conflict(generator, tmp_path):
    from fastapi.testclient import TestClient
    from claim_t5.serve import create_app
    with TestClient(create_app(generator, reviews=tmp_path/"r.sqlite"), base_url="http://127.0.0.1") as c:
        body = review_body(generator, note="first words")
        assert c.post("/api/reviews", json=body).status_code == 201
        r = c.post("/api/reviews", json={**body, "note": "other words"})
        assert r.status_code == 409 and "already used" in r.text, r.text  # the new note is not dropped silently
    with ReviewStore(tmp_path/"r.sqlite") as s: assert [x["note"] for x in s.rows()] == ["first words"]


def test_keys_under_32_characters_are_refused(generator, tiny_model_dir, tmp_path):
    from claim_t5.serve import create_app
    with pytest.raises(ValueError, match="32 to 256"): create_app(generator, api_key="eight-ch")
    env = {**cli_env(), "CLAIM_T5_API_KEY": "x" * 31}
    r = subprocess.run([str(BIN/"claim_t5_serve"), "--model_dir", str(tiny_model_dir), "--reviews", str(tmp_path/"r.sqlite")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and "32 to 256" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_add_user_prints_the_key_once_and_stores_its_hash(tmp_path):
    path = tmp_path/"users.yaml"
    r = subprocess.run([str(BIN/"claim_t5_serve"), "--users", str(path), "--add_user", "ann", "--role", "admin"],
                       capture_output=True, text=True, env=cli_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip().splitlines()[-1]
    assert len(key) >= 32 and key not in path.read_text() and "scrypt$" in path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    from claim_t5.serve import User, Users
    assert Users.load(path).find(key) == User("ann", "admin")
    again = subprocess.run([str(BIN/"claim_t5_serve"), "--users", str(path), "--add_user", "ann"], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert again.returncode == 1 and "exists already" in again.stderr


def test_from_reviews_holds_back_what_the_fact_check_disagrees_with(generator, team, tmp_path):
    "An approved review whose final text fails the check goes to needs_second_look.jsonl, and into training after an admin confirms it."
    from fastapi.testclient import TestClient
    from claim_t5.serve import create_app
    path, keys = team
    db = tmp_path/"r.sqlite"
    with TestClient(create_app(generator, reviews=db, users=path), base_url="http://127.0.0.1") as c:
        good = c.post("/api/reviews", json=review_body(generator, 7), headers={"X-API-Key": keys["ann"]}).json()
        wrong = review_body(generator, 8, final="Shipment SHP-99999 from Nowhere Inc has a dent; severity low.")  # the check fails
        bad = c.post("/api/reviews", json=wrong, headers={"X-API-Key": keys["ann"]}).json()
        assert good["facts_after"]["ok"] is True and bad["facts_after"]["ok"] is False
        out = tmp_path/"pairs"
        r = run_data_main("--from_reviews", db, "--out", out)
        assert r.returncode == 0, r.stderr
        assert [json.loads(l)["review_id"] for l in (out/"train.jsonl").read_text().splitlines()] == [good["id"]]
        (look,) = [json.loads(l) for l in (out/"needs_second_look.jsonl").read_text().splitlines()]
        assert look["line"] == bad["id"] and "fact check of the final text fails" in look["reason"] and "SHP-99999" in look["reason"], look
        assert "wait for an admin's second look" in r.stdout
        flag = run_data_main("--from_reviews", db, "--out", tmp_path/"flag", "--include_unconfirmed")  # the explicit flag
        assert len((tmp_path/"flag"/"train.jsonl").read_text().splitlines()) == 2
        assert c.post(f"/api/reviews/{bad['id']}/confirm", headers={"X-API-Key": keys["bob"]}).status_code == 403  # a reviewer may not
        ok = c.post(f"/api/reviews/{bad['id']}/confirm", headers={"X-API-Key": keys["ada"]})
        assert ok.status_code == 200 and ok.json()["confirmed_by"] == "ada", ok.text
        assert c.post("/api/reviews/999/confirm", headers={"X-API-Key": keys["ada"]}).status_code == 404
    r = run_data_main("--from_reviews", db, "--out", tmp_path/"after")
    assert [json.loads(l)["review_id"] for l in (tmp_path/"after"/"train.jsonl").read_text().splitlines()] == [good["id"], bad["id"]]
    assert (tmp_path/"after"/"needs_second_look.jsonl").read_text() == ""
