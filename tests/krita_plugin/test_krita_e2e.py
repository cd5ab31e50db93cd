"""The plugin in a real Krita: Debian's krita under Xvfb, installed by `mrflow install`.

A real daemon runs the built-in tiny model on loopback. The driver plugin
(e2e_driver/, installed beside MrFlow in the temporary profile) opens a document, selects a
rectangle, runs *Fill selection*, waits for the result, presses Apply and writes a report.
Krita may crash while exiting, so the test judges the report, never Krita's exit code.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DOCS_SCREENSHOT = REPO / "docs" / "images" / "krita-docker.png"
KRITA_TIMEOUT_S = 150


def _missing_tools() -> list[str]:
    # xvfb-run needs xauth, which Debian's xvfb only recommends.
    tools = ("krita", "xvfb-run", "xauth")
    missing = [tool for tool in tools if shutil.which(tool, path="/usr/bin:/bin") is None]
    if not Path("/usr/lib/python3/dist-packages/PyQt5").is_dir():  # Krita's Python plugins
        missing.append("python3-pyqt5")
    return missing


_MISSING = _missing_tools()
pytestmark = [
    pytest.mark.krita,
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(_MISSING),
        reason=f"{', '.join(_MISSING)} not installed: apt-get install --no-install-recommends "
        "krita python3-pyqt5 xvfb xauth",
    ),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, daemon: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise AssertionError(f"mrflow serve exited with {daemon.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"mrflow serve did not listen on port {port} within {timeout} s")


def _profile_env(root: Path) -> dict[str, str]:
    """A whole temporary user: Krita and MrFlow read and write nothing of the real one."""
    env = {
        "HOME": str(root / "home"),
        "XDG_CONFIG_HOME": str(root / "home" / ".config"),
        "XDG_DATA_HOME": str(root / "home" / ".local" / "share"),
        "XDG_CACHE_HOME": str(root / "home" / ".cache"),
        "XDG_RUNTIME_DIR": str(root / "runtime"),
        "MRFLOW_HOME": str(root / "mrflow"),
    }
    for key in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    Path(env["XDG_RUNTIME_DIR"]).chmod(0o700)
    return env


def _run_krita(env: dict[str, str]) -> str:
    """Run Krita under a fresh Xvfb; what it printed (it ends itself once the driver is done)."""
    output = ""
    for attempt in range(2):  # a display number taken by a concurrent Xvfb: try another once
        server = 100 + (os.getpid() * 7 + attempt * 131) % 800
        command = [
            "xvfb-run",
            "-a",
            "-n",
            str(server),
            "-s",
            "-screen 0 1600x1000x24",
            "krita",
            "--nosplash",
        ]
        try:
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=KRITA_TIMEOUT_S
            )
            output = done.stdout[-4000:] + done.stderr[-4000:]
        except subprocess.TimeoutExpired as expired:
            return f"krita still running after {KRITA_TIMEOUT_S} s: {expired}"
        if "could not connect to display" not in output:
            break
    return output


def _mrflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "mrflow_daemon.cli", *args]


@pytest.fixture
def daemon(tmp_path: Path) -> tuple[int, dict[str, str]]:
    env = _profile_env(tmp_path)
    port = _free_port()
    log = (tmp_path / "daemon.log").open("w")
    process = subprocess.Popen(
        _mrflow("serve", "--port", str(port)),
        env={**os.environ, **env, "OMP_WAIT_POLICY": "PASSIVE"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(port, process)
        yield port, env
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_fill_selection_in_real_krita(tmp_path: Path, daemon: tuple[int, dict[str, str]]) -> None:
    port, env = daemon
    resource_dir = Path(env["XDG_DATA_HOME"]) / "krita"

    # The profile is made by the real installer, as an artist's would be.
    install = subprocess.run(
        _mrflow("install", "--krita-dir", str(resource_dir), "--no-autostart"),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    pykrita = resource_dir / "pykrita"
    assert (pykrita / "mrflow_krita.desktop").is_file()
    assert (pykrita / "mrflow_krita" / "vendor" / "msgpack").is_dir()
    kritarc = Path(env["XDG_CONFIG_HOME"]) / "kritarc"
    assert "enable_mrflow_krita=true" in kritarc.read_text()

    # The test's own driver plugin, and the daemon's address for MrFlow.
    shutil.copytree(HERE / "e2e_driver" / "mrflow_e2e_driver", pykrita / "mrflow_e2e_driver")
    shutil.copy(HERE / "e2e_driver" / "mrflow_e2e_driver.desktop", pykrita)
    text = kritarc.read_text().replace(
        "enable_mrflow_krita=true", "enable_mrflow_krita=true\nenable_mrflow_e2e_driver=true"
    )
    text += f"\n[mrflow]\ndaemon_url=ws://127.0.0.1:{port}\nmax_side=256\n"
    kritarc.write_text(text)

    out = tmp_path / "e2e"
    krita_env = {**env, "PATH": "/usr/bin:/bin", "MRFLOW_E2E_DIR": str(out), "LANG": "C.UTF-8"}
    started = time.monotonic()
    krita_output = _run_krita(krita_env)
    seconds = time.monotonic() - started
    out.mkdir(exist_ok=True)
    (out / "krita-output.txt").write_text(krita_output)

    report_file = out / "report.json"
    assert report_file.is_file(), (
        f"the driver wrote no report ({seconds:.0f} s). Krita said:\n{krita_output}"
    )
    report = json.loads(report_file.read_text())
    assert report.get("finished") and "error" not in report, json.dumps(report, indent=1)
    assert report["layers"][0] == "Background"
    assert report["layers"][-1].startswith("[MrFlow] a lighthouse on a cliff at dusk (")
    assert not [name for name in report["layers"] if name.startswith("[MrFlow preview]")]
    assert report["layers_after_undo"] == report["layers"][:-1], "Apply must be one undo step"
    assert not [n for n in report["layers_after_second_undo"] if n.startswith("[MrFlow")], (
        "a second Ctrl+Z after Apply brought a MrFlow layer back"
    )
    assert report["layers_after_redo"] == report["layers"], "redo must bring the result back"
    assert report["result_layer"]["locked"] is False
    assert report["alpha_inside_min"] == 255, "the result must cover the middle of the selection"
    assert report["alpha_outside_max"] == 0, "nothing may be painted far outside the selection"
    assert report["background_untouched"] is True
    assert report["history"] == 1
    # Select All + Refine: opaque up to the canvas edge (no feathered fade where it ends).
    assert report["select_all_layer"].startswith("[MrFlow]")
    assert report["select_all_edge_alpha_min"] == 255
    preview = next(step for step in report["steps"] if step["step"] == "preview")
    assert preview["locked"] is True and preview["active"] == "Background"

    screenshot = out / "krita-docker.png"
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000
    if os.environ.get("MRFLOW_UPDATE_DOCS") == "1":  # refresh the user guide's picture on demand
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, DOCS_SCREENSHOT)
