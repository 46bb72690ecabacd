"""The release artifacts in ``dist/``, as a user gets them (``make dist`` then ``make test-dist``).

- The set is complete: one abi3 wheel (CPython 3.10+) for each of manylinux2014 and
  musllinux_1_2 on x86_64 and aarch64, plus the sdist.
- Every wheel is inspected: tags, the extension's ELF machine, no debug symbols, only
  ``PyInit__ferrosio`` exported, glibc symbol versions within 2.17 (manylinux2014), and
  ``auditwheel show`` agreeing with the tag.
- Every wheel this machine can execute (x86_64 manylinux) is installed into a fresh virtual
  environment of each CPython >= 3.10 found, with no Rust on ``PATH``, and a server and a client
  from the installed package exchange an event and its ack on 127.0.0.1, over WebSocket and
  over long-polling; then ``ferrosio.run`` logs where it listens and stops cleanly on SIGTERM.
  Wheels for other architectures or libcs are inspected only; the test
  says so in its skip reasons.

Not part of ``pytest tests`` (pytest does not recurse into directories named ``dist``). Without
wheels in ``dist/`` the tests skip, unless ``FERROSIO_REQUIRE_DIST=1`` (set by ``make
test-dist``), which turns a missing artifact into a failure.
"""

from __future__ import annotations

import email.parser
import os
import platform
import re
import select
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DIST = Path(os.environ.get("FERROSIO_DIST", REPO / "dist"))
REQUIRE = os.environ.get("FERROSIO_REQUIRE_DIST") == "1"

# platform tag -> (ELF e_machine, libc)
PLATFORMS = {
    "manylinux_2_17_x86_64.manylinux2014_x86_64": ("EM_X86_64", "glibc"),
    "manylinux_2_17_aarch64.manylinux2014_aarch64": ("EM_AARCH64", "glibc"),
    "musllinux_1_2_x86_64": ("EM_X86_64", "musl"),
    "musllinux_1_2_aarch64": ("EM_AARCH64", "musl"),
}
PYTHON_TAG = "cp310-abi3"
MAX_GLIBC = (2, 17)
INSTALL_TIMEOUT = 300  # seconds for one venv + pip install (PyPI for orjson and uvloop)
RUN_TIMEOUT = 60  # seconds for the server + client script


def _wheels() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for whl in sorted(DIST.glob("ferrosio-*.whl")):
        # name-version-pythontag-abitag-platformtag.whl
        parts = whl.name[: -len(".whl")].split("-")
        found[_key(f"{parts[2]}-{parts[3]}", parts[4])] = whl
    return found


def _key(python_tag: str, platform_tag: str) -> str:
    # the order of compressed platform tags is not fixed (maturin puts manylinux2014 first)
    return f"{python_tag}|{'.'.join(sorted(platform_tag.split('.')))}"


def _wheel(platform_tag: str) -> Path:
    whl = _wheels().get(_key(PYTHON_TAG, platform_tag))
    if whl is None:
        message = f"no {PYTHON_TAG} {platform_tag} wheel in {DIST} (run `make dist`)"
        if REQUIRE:
            pytest.fail(message)
        pytest.skip(message)
    return whl


def test_dist_holds_exactly_the_release_set() -> None:
    wheels = _wheels()
    sdists = sorted(DIST.glob("ferrosio-*.tar.gz"))
    if not wheels and not sdists and not REQUIRE:
        pytest.skip(f"{DIST} holds no artifacts (run `make dist`)")
    assert sorted(wheels) == sorted(_key(PYTHON_TAG, p) for p in PLATFORMS), wheels
    assert len(sdists) == 1, sdists


def _extension(whl: Path, into: Path) -> tuple[Path, zipfile.ZipFile]:
    zf = zipfile.ZipFile(whl)
    names = [n for n in zf.namelist() if n.endswith(".so")]
    # abi3: one file for every CPython >= 3.10, named without a version
    assert names == ["ferrosio/_ferrosio.abi3.so"], names
    return Path(zf.extract(names[0], into)), zf


@pytest.mark.parametrize("platform_tag", list(PLATFORMS))
def test_wheel_tags_and_symbols(platform_tag: str, tmp_path: Path) -> None:
    from elftools.elf.elffile import ELFFile  # pyelftools, installed with auditwheel

    whl = _wheel(platform_tag)
    machine, libc = PLATFORMS[platform_tag]
    so, zf = _extension(whl, tmp_path)

    dist_info = next(n.split("/")[0] for n in zf.namelist() if ".dist-info/" in n)
    wheel_meta = email.parser.Parser().parsestr(zf.read(f"{dist_info}/WHEEL").decode())
    expected_tags = {f"{PYTHON_TAG}-{p}" for p in platform_tag.split(".")}
    assert set(wheel_meta.get_all("Tag") or []) == expected_tags
    assert wheel_meta["Root-Is-Purelib"] == "false"
    meta = email.parser.Parser().parsestr(zf.read(f"{dist_info}/METADATA").decode())
    assert meta["Requires-Python"] == ">=3.10"
    assert "MIT" in (meta["License-Expression"] or meta["License"] or "")
    assert any(n.startswith(f"{dist_info}/licenses/LICENSE") for n in zf.namelist())
    assert "ferrosio/py.typed" in zf.namelist()
    assert "ferrosio/_ferrosio.pyi" in zf.namelist()

    with so.open("rb") as f:
        elf = ELFFile(f)
        assert elf["e_machine"] == machine
        sections = {s.name for s in elf.iter_sections()}
        assert not {n for n in sections if n.startswith(".debug")}, "not stripped"
        assert ".symtab" not in sections, "not stripped"
        dynsym = elf.get_section_by_name(".dynsym")
        exported = {
            s.name
            for s in dynsym.iter_symbols()
            if s["st_shndx"] != "SHN_UNDEF"
            and s["st_info"]["bind"] == "STB_GLOBAL"
            and s["st_info"]["type"] == "STT_FUNC"
        }
        assert exported == {"PyInit__ferrosio"}, exported
        needed = {
            t.needed
            for t in elf.get_section_by_name(".dynamic").iter_tags()
            if t.entry.d_tag == "DT_NEEDED"
        }
        # the interpreter provides the Python C API: no libpython in DT_NEEDED
        assert not {n for n in needed if "python" in n}, needed
        if libc == "glibc":
            versions = _glibc_versions(elf)
            assert versions, "no GLIBC symbol versions found"
            assert max(versions) <= MAX_GLIBC, sorted(versions)
            assert not {n for n in needed if "musl" in n}, needed
        else:
            # musl's name for itself (PEP 656), not zig's "libc.so": tools/musl_libc_soname.py
            arch = "x86_64" if machine == "EM_X86_64" else "aarch64"
            assert needed == {f"libc.musl-{arch}.so.1"}, needed

    _auditwheel_agrees(whl, platform_tag)
    if libc == "musl":
        _musl_loader_resolves(so, machine)


MUSL_LOADERS = {"EM_X86_64": "/lib/ld-musl-x86_64.so.1", "EM_AARCH64": "/lib/ld-musl-aarch64.so.1"}


def _musl_loader_resolves(so: Path, machine: str) -> None:
    """Without a musl CPython, the closest to running: musl's own loader (Debian's ``musl``
    package) loads the extension and resolves every symbol but the interpreter's."""
    loader = MUSL_LOADERS[machine]
    here = {"x86_64": "EM_X86_64", "aarch64": "EM_AARCH64"}.get(platform.machine().lower())
    if machine != here or not Path(loader).exists():
        return  # another CPU, or no musl loader installed: the ELF checks above stand alone
    out = subprocess.run([loader, "--list", str(so)], capture_output=True, text=True, timeout=60)
    listing = out.stdout + out.stderr
    assert f"=> {loader}" in listing, listing  # libc.musl-<arch>.so.1 is musl itself
    unresolved = re.findall(r"Error relocating [^:]+: (\S+): symbol not found", listing)
    assert unresolved, listing
    assert all(name.startswith(("Py", "_Py")) for name in unresolved), unresolved


def _glibc_versions(elf: object) -> set[tuple[int, ...]]:
    versions: set[tuple[int, ...]] = set()
    gnu_version_r = elf.get_section_by_name(".gnu.version_r")  # type: ignore[attr-defined]
    for _verneed, aux_iter in gnu_version_r.iter_versions():
        for aux in aux_iter:
            m = re.fullmatch(r"GLIBC_(\d+(?:\.\d+)*)", aux.name)
            if m:
                versions.add(tuple(int(x) for x in m.group(1).split(".")))
    return versions


def _auditwheel_agrees(whl: Path, platform_tag: str) -> None:
    auditwheel = shutil.which("auditwheel", path=str(Path(sys.executable).parent))
    if auditwheel is None:
        auditwheel = shutil.which("auditwheel")
    if auditwheel is None:
        if REQUIRE:
            pytest.fail("auditwheel is not installed (requirements-dist.txt)")
        return
    out = subprocess.run(
        [auditwheel, "show", str(whl)], capture_output=True, text=True, timeout=120
    )
    text = " ".join((out.stdout + out.stderr).split())
    assert out.returncode == 0, text
    # "is consistent with the following platform tag: "manylinux_2_17_x86_64"" (or musllinux)
    first_tag = platform_tag.split(".")[0]
    assert f'platform tag: "{first_tag}"' in text, text


def test_sdist_contents() -> None:
    sdists = sorted(DIST.glob("ferrosio-*.tar.gz"))
    if not sdists:
        if REQUIRE:
            pytest.fail(f"no sdist in {DIST}")
        pytest.skip(f"no sdist in {DIST} (run `make dist`)")
    with tarfile.open(sdists[0]) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
        pkg_info = tf.extractfile(next(m for m in tf.getmembers() if m.name.endswith("PKG-INFO")))
        assert pkg_info is not None
        meta = email.parser.Parser().parsestr(pkg_info.read().decode())
    for required in (
        "LICENSE",
        "README.md",
        "pyproject.toml",
        "Cargo.toml",
        "Cargo.lock",
        "rust/ferrosio-core/Cargo.toml",
        "rust/ferrosio-core/src/lib.rs",
        "rust/ferrosio-py/Cargo.toml",
        "rust/ferrosio-py/src/lib.rs",
        "python/ferrosio/__init__.py",
        "python/ferrosio/_ferrosio.pyi",
        "python/ferrosio/py.typed",
    ):
        assert required in names, f"{required} missing from {sdists[0].name}"
    assert "MIT" in (meta["License-Expression"] or meta["License"] or "")


# ------------------------------------------------------------------ install and run ----

ROUND_TRIP = r"""
import asyncio, sys
import ferrosio
from ferrosio import _ferrosio

assert "site-packages" in ferrosio.__file__, ferrosio.__file__
assert _ferrosio.__file__.endswith("_ferrosio.abi3.so"), _ferrosio.__file__

async def main() -> None:
    sio = ferrosio.AsyncServer()

    @sio.event
    async def echo(sid, data):
        return {"echoed": data, "sid": sid}

    port = await sio.start("127.0.0.1", 0)
    try:
        for transports in (["websocket"], ["polling"]):
            client = ferrosio.AsyncClient(reconnection=False)
            await asyncio.wait_for(
                client.connect(f"http://127.0.0.1:{port}", transports=transports), 20
            )
            try:
                ack = await client.call("echo", {"n": 1, "t": transports[0]}, timeout=20)
                assert ack == {"echoed": {"n": 1, "t": transports[0]}, "sid": client.sid}, ack
            finally:
                await client.disconnect()
            print("ack over", transports[0], "ok")
    finally:
        await sio.shutdown(5)

asyncio.run(asyncio.wait_for(main(), 45))
print("ferrosio", ferrosio.__version__, "on", sys.version.split()[0], "ok")
"""


def _pythons() -> list[Path]:
    """Every CPython >= 3.10 this machine has, one per minor version (at least this one)."""
    listed = os.environ.get("FERROSIO_DIST_PYTHONS")
    candidates: list[str] = listed.split(os.pathsep) if listed else []
    if not listed:
        candidates.append(getattr(sys, "_base_executable", sys.executable))
        for minor in range(10, 20):
            exe = shutil.which(f"python3.{minor}")
            if exe:
                candidates.append(exe)
        pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
        candidates += [str(p) for p in sorted(Path(pyenv_root).glob("versions/3.*/bin/python3"))]
    by_version: dict[str, Path] = {}
    for exe in candidates:
        try:
            out = subprocess.run(
                [
                    exe,
                    "-c",
                    "import sys; print(sys.implementation.name, *sys.version_info[:2],"
                    " int(not getattr(sys, '_is_gil_enabled', lambda: True)()))",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        fields = out.stdout.split()
        if out.returncode != 0 or len(fields) != 4 or fields[0] != "cpython":
            continue
        major, minor, free_threaded = int(fields[1]), int(fields[2]), fields[3] == "1"
        if (major, minor) >= (3, 10) and not free_threaded:  # abi3 is not for 3.13t
            by_version.setdefault(f"{major}.{minor}", Path(exe))
    return [by_version[v] for v in sorted(by_version, key=lambda v: int(v.split(".")[1]))]


def _path_without_rust() -> str:
    kept = []
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if not entry or shutil.which("cargo", path=entry) or shutil.which("rustc", path=entry):
            continue
        kept.append(entry)
    return os.pathsep.join(kept)


PYTHONS = _pythons()


@pytest.mark.parametrize("python", PYTHONS, ids=lambda p: p.name + "@" + p.parent.parent.name)
@pytest.mark.parametrize("platform_tag", list(PLATFORMS))
def test_installed_wheel_acks(platform_tag: str, python: Path, tmp_path: Path) -> None:
    machine, libc = PLATFORMS[platform_tag]
    here = {"x86_64": "EM_X86_64", "amd64": "EM_X86_64", "aarch64": "EM_AARCH64"}.get(
        platform.machine().lower()
    )
    host_libc = "glibc" if platform.libc_ver()[0] == "glibc" else "musl"
    if machine != here:
        pytest.skip(
            f"{platform_tag} is for another CPU than this {platform.machine()} machine: "
            "inspected only (test_wheel_tags_and_symbols)"
        )
    if libc != host_libc:
        pytest.skip(
            f"{platform_tag} needs a {libc} CPython and this machine has {host_libc} ones only: "
            "inspected only (test_wheel_tags_and_symbols)"
        )
    whl = _wheel(platform_tag)
    path = _path_without_rust()
    env = {
        "PATH": path,
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    assert shutil.which("cargo", path=path) is None and shutil.which("rustc", path=path) is None
    venv = tmp_path / "venv"
    subprocess.run(
        [str(python), "-m", "venv", str(venv)], check=True, env=env, timeout=INSTALL_TIMEOUT
    )
    pip = subprocess.run(
        # --only-binary: a wheel that did not fit would fall back to the sdist and need Rust
        [
            str(venv / "bin/python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--only-binary",
            ":all:",
            str(whl),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=INSTALL_TIMEOUT,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    run = subprocess.run(
        [str(venv / "bin/python"), "-c", ROUND_TRIP],
        capture_output=True,
        text=True,
        env={**env, "PATH": f"{venv / 'bin'}{os.pathsep}{path}"},
        cwd=tmp_path,  # not the repository: python/ferrosio must not shadow the install
        timeout=RUN_TIMEOUT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ack over websocket ok" in run.stdout
    assert "ack over polling ok" in run.stdout
    _run_logs_and_stops(venv / "bin/python", env, tmp_path)


def _run_logs_and_stops(python: Path, env: dict[str, str], cwd: Path) -> None:
    """``ferrosio.run`` says where it listens, and stops cleanly on SIGTERM."""
    proc = subprocess.Popen(
        [str(python), "-c", "import ferrosio; ferrosio.run(ferrosio.AsyncServer(), port=0)"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )
    assert proc.stderr is not None
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        first = ""
        while not first and time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stderr], [], [], 1)
            if ready:
                first = proc.stderr.readline()
        assert "listening on http://127.0.0.1:" in first, first
        assert "transports: polling, websocket" in first, first
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, rest
    assert "stopped" in rest, rest
