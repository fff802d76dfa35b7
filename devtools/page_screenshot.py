"""The docs' pictures of the page at `GET /`: the shipped attention model served beside the other shipped
models, a test digit uploaded, scored and reconstructed, in headless Chromium.

    python -m devtools.page_screenshot --out docs/serve-page.png --reconstruction docs/reconstruct-digit.gif

It starts its own local Ray cluster and stops it at the end; MNIST comes from DRAW_DATA_ROOT (as for training).
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
from pathlib import Path

SHOWN = "mnist-attention"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--out", default="docs/serve-page.png", help="the page's screenshot (.png)")
    parser.add_argument("--reconstruction", default=None, help="also save the page's reconstruction GIF here")
    parser.add_argument("--digit", type=int, default=0, help="which MNIST test image to upload")
    args = parser.parse_args(argv)
    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser_path is None:
        print("page_screenshot: no Chromium on this machine (apt-get install chromium)", file=sys.stderr)
        return 2

    import ray
    import requests
    from PIL import Image
    from playwright.sync_api import sync_playwright
    from ray import serve

    from draw_service.data.sources import load_source
    from draw_service.serve.config import SHIPPED, SHIPPED_ROOT, ServeConfig
    from draw_service.serve.launch import deploy

    from .s3_server import free_port_pairs

    digit = load_source("mnist").test[args.digit, 0]  # (28, 28) uint8
    upload = Path(tempfile.mkdtemp()) / "digit.png"
    Image.fromarray(digit).save(upload)
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        url = deploy(ServeConfig(checkpoint=str(SHIPPED_ROOT / SHOWN), models=SHIPPED, port=free_port_pairs(1)[0]))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(url + "/")
            page.wait_for_function("document.getElementById('samples').naturalWidth > 0", timeout=120_000)
            page.wait_for_function("[...document.querySelectorAll('.card img')].every(i => i.naturalWidth > 0)",
                                   timeout=120_000)  # each model's thumbnail
            page.set_input_files("#file", str(upload))
            page.click("#upload-form button")
            page.wait_for_function("document.getElementById('reconstruction').naturalWidth > 0", timeout=120_000)
            Path(args.out).write_bytes(page.screenshot(full_page=True))
            if args.reconstruction:
                gif = page.evaluate("fetch(document.getElementById('reconstruction').src).then(r => r.arrayBuffer())"
                                    ".then(b => Array.from(new Uint8Array(b)))")
                Path(args.reconstruction).write_bytes(bytes(gif))
            browser.close()
        offered = [m["name"] for m in requests.get(url + "/models", timeout=30).json()["models"]]
        print(f"{args.out}: the page drawing with {SHOWN}; its cards offer {', '.join(offered)}")
        Image.open(io.BytesIO(Path(args.out).read_bytes())).verify()
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
