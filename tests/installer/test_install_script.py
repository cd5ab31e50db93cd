"""installer/install.sh: its syntax, its PyTorch detection and its plan, in --dry-run mode.

Fake `nvidia-smi`, `rocminfo` and `uname` on PATH play the machine; the dry run prints each
step's command without running it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "installer" / "install.sh"
NVIDIA_SMI = """#!/bin/sh
[ "$1" = "-L" ] && { echo "GPU 0: NVIDIA GeForce RTX 4090"; exit 0; }
echo "| NVIDIA-SMI 570.86   Driver Version: 570.86   CUDA Version: 12.8 |"
"""
ROCMINFO = "#!/bin/sh\necho '  Name:                    gfx1100'\n"


def fake_tools(folder: Path, tools: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in tools.items():
        (folder / name).write_text(body)
        (folder / name).chmod(0o755)
    return folder


def dry_run(
    tmp_path: Path,
    *args: str,
    tools: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    fake_bin = fake_tools(tmp_path / "bin", tools or {})
    environment = {
        # The system Python only: version-manager shims on PATH make each probe take seconds.
        "PATH": f"{fake_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        **(env or {}),
    }
    return subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )


def test_the_script_parses() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_cpu_machine_gets_the_cpu_index_and_the_full_plan(tmp_path: Path) -> None:
    result = dry_run(tmp_path, "--no-autostart")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("+ ")]
    venv = tmp_path / "home" / ".local/share/mrflow/venv"
    assert len(lines) == 5
    assert lines[0].endswith(f"-m venv {venv}")
    assert "install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in lines[2]
    assert lines[3].endswith(r"\[tray\]") and str(SCRIPT.parents[1]) in lines[3]
    assert " install --upgrade " in lines[3]  # running it again upgrades MrFlow
    assert lines[4] == f"+ {venv}/bin/mrflow install --no-autostart"
    assert not venv.exists() and "nothing was changed" in result.stdout


def test_nvidia_gpu_gets_the_cuda_build_its_driver_can_run(tmp_path: Path) -> None:
    result = dry_run(tmp_path, tools={"nvidia-smi": NVIDIA_SMI, "rocminfo": ROCMINFO})
    assert "--index-url https://download.pytorch.org/whl/cu128" in result.stdout
    older = NVIDIA_SMI.replace("12.8", "12.6")
    result = dry_run(tmp_path, tools={"nvidia-smi": older})
    assert "--index-url https://download.pytorch.org/whl/cu126" in result.stdout


def test_amd_gpu_gets_the_rocm_build(tmp_path: Path) -> None:
    result = dry_run(tmp_path, tools={"rocminfo": ROCMINFO})
    assert "PyTorch for rocm" in result.stdout
    assert "--index-url https://download.pytorch.org/whl/rocm" in result.stdout


def test_apple_silicon_gets_pypi_torch_with_mps(tmp_path: Path) -> None:
    uname = '#!/bin/sh\ncase "$1" in -s) echo Darwin;; -m) echo arm64;; esac\n'
    result = dry_run(tmp_path, tools={"uname": uname})
    assert "PyTorch for mps" in result.stdout
    torch_line = next(line for line in result.stdout.splitlines() if "install torch" in line)
    assert "--index-url" not in torch_line
    assert "Library/Application\\ Support/mrflow/venv" in result.stdout


@pytest.mark.parametrize("how", ["flag", "env"])
def test_the_choice_can_be_overridden(tmp_path: Path, how: str) -> None:
    args = ("--torch", "cpu") if how == "flag" else ()
    env = {"MRFLOW_TORCH": "cpu"} if how == "env" else {}
    result = dry_run(tmp_path, *args, tools={"nvidia-smi": NVIDIA_SMI}, env=env)
    assert "PyTorch for cpu" in result.stdout and "whl/cpu" in result.stdout


def test_bad_choices_are_refused_with_the_allowed_values(tmp_path: Path) -> None:
    result = dry_run(tmp_path, "--torch", "tpu")
    assert result.returncode == 2
    assert "use cuda, rocm, cpu or mps" in result.stderr
    result = dry_run(tmp_path, "--torch", "mps")  # not a Mac
    assert result.returncode == 2 and "Apple-silicon" in result.stderr
    result = dry_run(tmp_path, "--frobnicate")
    assert result.returncode == 2 and "unknown option '--frobnicate'" in result.stderr


def test_powershell_script_has_the_same_steps() -> None:
    text = (SCRIPT.parent / "install.ps1").read_text()
    for piece in ("nvidia-smi", '-m", "venv"', "--index-url", "[tray]", '"install")', "DryRun"):
        assert piece in text, piece
    if shutil.which("pwsh"):  # parse it where PowerShell exists
        check = (
            f"$null = [ScriptBlock]::Create((Get-Content -Raw '{SCRIPT.parent / 'install.ps1'}'))"
        )
        subprocess.run(["pwsh", "-NoProfile", "-Command", check], check=True, env=dict(os.environ))
