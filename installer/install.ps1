<#
.SYNOPSIS
    MrFlow for Krita: one-step install on Windows.

.DESCRIPTION
    1. creates a Python virtual environment (default: %LOCALAPPDATA%\mrflow\venv),
    2. installs the PyTorch build for this machine: CUDA when nvidia-smi sees an NVIDIA GPU,
       otherwise CPU (override with -Torch or $env:MRFLOW_TORCH; $env:MRFLOW_TORCH_INDEX
       overrides the package index URL),
    3. installs MrFlow into it (from this checkout, or -Source: a path, wheel or "mrflow"),
    4. runs `mrflow install`, which puts the plugin into Krita (%APPDATA%\krita\pykrita).
    -DryRun prints each step's command and runs none of them.

.EXAMPLE
    powershell -ExecutionPolicy Bypass -File installer\install.ps1 -Autostart
#>
[CmdletBinding()]
param(
    [ValidateSet("cuda", "cpu", "")] [string] $Torch = $env:MRFLOW_TORCH,
    [string] $Venv = (Join-Path $env:LOCALAPPDATA "mrflow\venv"),
    [string] $Source = "",
    [string] $KritaDir = "",
    [switch] $Autostart,
    [switch] $NoAutostart,
    [switch] $DryRun
)
$ErrorActionPreference = "Stop"

function Get-TorchKind {
    $smi = Get-Command nvidia-smi -ErrorAction SilentlyContinue
    if ($smi) {
        & $smi.Source -L *> $null
        if ($LASTEXITCODE -eq 0) { return "cuda" }
    }
    return "cpu"
}

# The newest CUDA build the installed driver can run (nvidia-smi reports the driver's maximum).
function Get-CudaIndex {
    $text = (& nvidia-smi 2>$null) -join "`n"
    if ($text -match "CUDA Version:\s*(\d+)\.(\d+)") {
        $version = [version]"$($Matches[1]).$($Matches[2])"
        if ($version -ge [version]"12.8") { return "cu128" }
        if ($version -ge [version]"12.6") { return "cu126" }
        return "cu118"
    }
    return "cu128"
}

if (-not $Torch) { $Torch = Get-TorchKind }
$IndexUrl = if ($Torch -eq "cuda") { "https://download.pytorch.org/whl/$(Get-CudaIndex)" } else { "https://download.pytorch.org/whl/cpu" }
if ($env:MRFLOW_TORCH_INDEX) { $IndexUrl = $env:MRFLOW_TORCH_INDEX }

if (-not $Source) {
    $Checkout = Split-Path -Parent $PSScriptRoot
    $Source = if (Test-Path (Join-Path $Checkout "pyproject.toml")) { $Checkout } else { "mrflow" }
}

# Python 3.10 or newer: the py launcher first, then python on PATH.
$Python = $null
foreach ($candidate in @(@("py", "-3"), @("python"))) {
    $exe = Get-Command $candidate[0] -ErrorAction SilentlyContinue
    if (-not $exe) { continue }
    $arguments = @($candidate | Select-Object -Skip 1) + @("-c", "import sys; sys.exit(sys.version_info < (3, 10))")
    & $exe.Source @arguments 2>$null
    if ($LASTEXITCODE -eq 0) { $Python = @($exe.Source) + @($candidate | Select-Object -Skip 1); break }
}
if (-not $Python) {
    Write-Error "MrFlow needs Python 3.10 or newer: install it from python.org (tick 'Add to PATH') and run this again."
}

function Invoke-Step([string[]] $Command) {
    Write-Host ("+ " + (($Command | ForEach-Object { if ($_ -match "\s") { "`"$_`"" } else { $_ } }) -join " "))
    if ($DryRun) { return }
    $exe, $rest = $Command
    & $exe @rest
    if ($LASTEXITCODE -ne 0) { throw "step failed (exit code $LASTEXITCODE): $($Command -join ' ')" }
}

Write-Host "MrFlow installer: PyTorch for $Torch from $IndexUrl, into $Venv"
$VenvPython = Join-Path $Venv "Scripts\python.exe"
$Mrflow = Join-Path $Venv "Scripts\mrflow.exe"
$InstallArgs = @()
if ($KritaDir) { $InstallArgs += @("--krita-dir", $KritaDir) }
if ($Autostart) { $InstallArgs += "--autostart" }
if ($NoAutostart) { $InstallArgs += "--no-autostart" }

Invoke-Step ($Python + @("-m", "venv", $Venv))
Invoke-Step @($VenvPython, "-m", "pip", "install", "--upgrade", "pip")
Invoke-Step @($VenvPython, "-m", "pip", "install", "torch", "torchvision", "--index-url", $IndexUrl)
Invoke-Step @($VenvPython, "-m", "pip", "install", "--upgrade", "$Source[tray]")  # a re-run upgrades MrFlow
Invoke-Step (@($Mrflow, "install") + $InstallArgs)
if ($DryRun) { Write-Host "(dry run: nothing was changed)" }
else { Write-Host "Next: `"$Mrflow`" models pull  downloads the default model (FLUX.1-schnell, about 34 GB)." }
