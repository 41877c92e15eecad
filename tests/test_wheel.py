"""docs/ must ship inside the package: `learn show` works from a built wheel, not only a checkout."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_show_works_from_a_built_wheel(tmp_path: Path) -> None:
    pytest.importorskip("hatchling")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=170,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    wheel = next(tmp_path.glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "lessons/_docs/lessons/poll-server.md" in names
        assert "lessons/_docs/zh/lessons/poll-server.md" in names  # the Chinese twins ship too
        assert "capstone/room.py" in names
        assert "lessons/exercises/poll_echo/hints.md" in names  # exercise data files ship too
        assert "lessons/locale/zh/LC_MESSAGES/learn.mo" in names  # the compiled catalog: stdlib gettext reads it
        archive.extractall(tmp_path / "site")
    # Run from an empty directory with only the unpacked wheel on the path: no checkout to fall back on.
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    shown = subprocess.run(
        [sys.executable, "-m", "lessons", "show", "poll-server"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env,
    )
    assert shown.returncode == 0, shown.stderr
    page_title = (ROOT / "docs/lessons/poll-server.md").read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
    assert page_title.split()[0] in shown.stdout
    in_chinese = subprocess.run(
        [sys.executable, "-m", "lessons", "show", "poll-server"],
        capture_output=True, text=True, encoding="utf-8", timeout=60, cwd=tmp_path, env=dict(env, LEARN_LANG="zh"),
    )
    assert in_chinese.returncode == 0, in_chinese.stderr
    chinese_page = (ROOT / "docs/zh/lessons/poll-server.md").read_text(encoding="utf-8").splitlines()
    chinese_title = next(line for line in chinese_page if line.startswith("# ")).removeprefix("# ")
    assert chinese_title in in_chinese.stdout
    located = subprocess.run(
        [sys.executable, "-c", "from lessons import catalog; print(catalog.docs_root())"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env,
    )
    assert located.stdout.strip() == str(tmp_path / "site" / "lessons" / "_docs")


# ---------------------------------------------------------------- the README's editable install

def copy_project(target: Path) -> Path:
    """What a fresh clone holds for the install: the project files, no caches, no venv."""
    target.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, target / name)
    for folder in ("lessons", "capstone", "docs"):
        shutil.copytree(ROOT / folder, target / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def offline_venv(where: Path) -> Path:
    """A fresh venv that borrows this interpreter's packages (typer, rich, hatchling) through a .pth file.

    `--system-site-packages` would give the base interpreter's packages, not this venv's;
    the .pth file gives this one's, so nothing is downloaded.
    """
    venv.create(where, with_pip=False)
    site_packages = next(where.glob("lib/python*/site-packages"))
    borrowed = [path for path in sys.path if path.endswith("site-packages")]
    (site_packages / "borrowed.pth").write_text("\n".join(borrowed) + "\n")
    return where / "bin"


def readme_commands() -> list[str]:
    """The quick start's command lines: `python3 -m venv .venv && .venv/bin/pip install ... && ...`."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^ {4}(python3 -m venv \.venv && .+)$", text, re.MULTILINE)


def readme_install_arguments(clone: Path) -> list[str]:
    """What the README's first command gives `pip install`, with `.` meaning the clone."""
    first = readme_commands()[0]
    arguments = shlex.split(re.search(r"\.venv/bin/pip install (.+?) &&", first).group(1))
    return [str(clone) if argument == "." else argument for argument in arguments]


def test_the_readme_has_its_two_commands_and_ci_runs_the_test_one():
    commands = readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("learn run poll-server --demo")
    assert commands[1].endswith(".venv/bin/python -m pytest")
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert commands[1] in ci_lines  # exactly the README's test command, not a variant of it


def test_an_edit_in_the_clone_changes_what_learn_runs(tmp_path: Path) -> None:
    """Installed the README's way, a learner's edit to a lesson takes effect at the next `learn run`.

    Slower than most tests (a wheel is built with hatchling, offline, with
    --no-build-isolation --no-deps into a venv that borrows ours: about 5 s here), because
    nothing less than a real install shows that the installed `learn` runs the clone's code.
    """
    pytest.importorskip("hatchling")
    clone = copy_project(tmp_path / "clone")
    bin_dir = offline_venv(tmp_path / "venv")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "--quiet",
         "--no-build-isolation", "--no-deps", "--no-index", *readme_install_arguments(clone)],
        capture_output=True, text=True, timeout=100,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PAGER")}
    env.update(NO_COLOR="1", TERM="dumb")

    def learn(*args: str) -> subprocess.CompletedProcess:
        # from an empty directory, with the installed `learn`: nothing but the install can be found
        return subprocess.run([str(bin_dir / "learn"), *args], capture_output=True, text=True,
                              timeout=60, cwd=tmp_path, env=env)

    before = learn("run", "struct-send", "--demo")
    assert before.returncode == 0, before.stderr
    assert "name=b'zhang'" in before.stdout
    record = clone / "lessons" / "toolkit" / "record.py"
    record.write_text(record.read_text(encoding="utf-8").replace('b"zhang"', 'b"edits"'), encoding="utf-8")
    after = learn("run", "struct-send", "--demo")
    assert after.returncode == 0, after.stderr
    assert "name=b'edits'" in after.stdout and "zhang" not in after.stdout

    # `learn show` finds the clone's own docs/ (lessons/_docs exists only inside a built wheel)
    shown = learn("show", "poll-server")
    assert shown.returncode == 0, shown.stderr
    located = subprocess.run([str(bin_dir / "python"), "-c", "from lessons import catalog; print(catalog.docs_root())"],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert located.stdout.strip() == str(clone / "docs")
    source = learn("show", "poll-server", "--source")
    assert source.stdout.startswith(f"# {clone / 'lessons' / 'poll_server.py'}\n")  # the file to edit
