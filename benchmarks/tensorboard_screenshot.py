"""Screenshot of TensorBoard's custom-scalars tab on a log directory.

The README's picture of a run per operating point comes from notebook 02's
logs (`notebooks/logs`, written by `OperatingPointLogger`):

    python benchmarks/tensorboard_screenshot.py notebooks/logs

It starts a TensorBoard server on 127.0.0.1, opens the page in headless
Chromium (Debian's `chromium` package) and writes
`benchmarks/results/tensorboard.png`.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_runs(url, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/data/runs", timeout=5) as response:
                if response.read().strip() not in (b"", b"[]"):
                    return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"TensorBoard at {url} listed no runs within {timeout} s.")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logdir", help="the TensorBoard log directory")
    parser.add_argument("--output", default=os.path.join(RESULTS, "tensorboard.png"))
    parser.add_argument("--tab", default="custom_scalars", help="the dashboard to show")
    parser.add_argument("--size", default="1400,900", help="window width,height in pixels")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        parser.error("needs Chromium: apt-get install chromium")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    tensorboard = [sys.executable, "-m", "tensorboard.main", "--logdir", args.logdir]
    server = subprocess.Popen(
        [*tensorboard, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_runs(url)
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run(
                [
                    chromium,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={profile}",
                    f"--window-size={args.size}",
                    "--virtual-time-budget=20000",
                    f"--screenshot={os.path.abspath(args.output)}",
                    f"{url}/?darkMode=false#{args.tab}&_smoothingWeight=0",
                ],
                check=True,
                capture_output=True,
                timeout=120,
            )
    finally:
        server.terminate()
        server.wait()
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
