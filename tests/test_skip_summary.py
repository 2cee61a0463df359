"""`make test` names what it skipped, why, and the command that installs what those tests need (issue 30: a fresh
machine said only "23 skipped")."""
import subprocess, sys, textwrap
from pathlib import Path

from conftest import skip_summary

HERE = Path(__file__).resolve().parent
# the reasons the suite's own skips give (tests/test_desk_browser.py, test_reviews.py, test_checker_human.py, importorskip)
REASONS = {
    "chromium": "needs the playwright package and /usr/bin/chromium (apt-get install chromium; .ci/run installs both)",
    "postgres": "PostgreSQL's initdb/pg_ctl are not installed (Debian package `postgresql`; .ci/run installs it)",
    "shared": "/x/shared/datasets/rnnlg_tv not found: the shared human-written datasets sit beside the repo",
    "ct2": "could not import 'ctranslate2': No module named 'ctranslate2'",
}


def test_skip_summary_groups_reasons_with_the_install_command():
    lines = skip_summary([REASONS["chromium"]] * 3 + [REASONS["postgres"]] * 2 + [REASONS["shared"], "something else"])
    text = "\n".join(lines)
    assert lines[0].startswith("   3 skipped: no /usr/bin/chromium") and "apt-get install -y chromium" in lines[0]
    assert "   2 skipped: no PostgreSQL" in text and "apt-get install -y postgresql" in text
    assert "   1 skipped: no ../shared/datasets beside the clone" in text
    assert "   1 skipped: something else" in text  # a reason it does not know is shown as it is
    assert "sudo apt-get install -y chromium postgresql" in lines[-1]


def test_pytest_run_names_what_it_skipped(tmp_path):
    "A real pytest run (two xdist workers, as `make test`) ends with the grouped reasons, not only 'N skipped'."
    (tmp_path/"conftest.py").write_text(textwrap.dedent(f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("claim_t5_tests_conftest", {str(HERE/'conftest.py')!r})
        m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
        pytest_terminal_summary = m.pytest_terminal_summary
        """))
    (tmp_path/"test_skips.py").write_text(textwrap.dedent(f"""
        import pytest
        @pytest.mark.parametrize("i", range(3))
        def test_browser(i): pytest.skip({REASONS['chromium']!r})
        def test_pg(): pytest.skip({REASONS['postgres']!r})
        def test_ct2(): pytest.importorskip("some_module_not_installed_here")
        def test_ok(): pass
        """))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider", str(tmp_path)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert "what was skipped, and how to run it" in out
    assert "3 skipped: no /usr/bin/chromium" in out and "apt-get install -y chromium" in out
    assert "1 skipped: no PostgreSQL" in out and "apt-get install -y postgresql" in out
    assert "some_module_not_installed_here" in out
