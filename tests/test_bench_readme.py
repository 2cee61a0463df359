"""bench/README.md and the README's headline figures are written from bench/results/*.json by bench/write_readme.py
(issue 30): a figure and its file cannot drift apart, and README.md is what `make readme` writes from nbs/index.ipynb."""
import importlib.util, json, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def writer():
    spec = importlib.util.spec_from_file_location("write_readme", ROOT/"bench"/"write_readme.py")
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    return m


def test_bench_readme_and_headline_match_the_result_files():
    r = subprocess.run([sys.executable, str(ROOT/"bench"/"write_readme.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert writer().headline() in (ROOT/"README.md").read_text()  # README.md carries the same table


def test_a_changed_result_file_is_caught(tmp_path, capsys):
    w = writer()
    shutil.copytree(w.RESULTS, tmp_path/"results")
    f = tmp_path/"results"/w.FRESH_CLONE_FILE
    d = json.loads(f.read_text()); d["test_results"]["rouge"]["rougeL"] = 0.5; f.write_text(json.dumps(d))
    w.RESULTS = tmp_path/"results"
    assert "ROUGE-L 0.500" in w.headline()
    assert w.main(["--check"]) == 1
    assert "bench/README.md" in capsys.readouterr().err
    (tmp_path/"results"/w.BATCH_FILE).unlink()  # a file the headline reads
    try: w.headline(); raise AssertionError("a missing result file was not reported")
    except SystemExit as e: assert f"{w.BATCH_FILE} not found" in str(e)


def test_readme_is_what_make_readme_writes(tmp_path):
    out = tmp_path/"README.md"
    subprocess.run([str(Path(sys.executable).parent/"jupytext"), "--quiet", "--to", "markdown", "--opt",
                    "notebook_metadata_filter=-all", "--opt", "cell_metadata_filter=-all", "-o", str(out),
                    str(ROOT/"nbs"/"index.ipynb")], check=True)
    assert out.read_text() == (ROOT/"README.md").read_text(), "README.md is out of date: run `make readme`"
    assert len(out.read_bytes()) <= 12 * 1024, f"README.md is {len(out.read_bytes())} bytes: keep it to 12 KB (issue 30)"
