"""The explore page and report.html in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``; ``make test`` installs them where missing).

The page is started with the real CLI on a loopback port, on a small NegWorld export with two
models; the images it shows for a negated query must be the ones the Python API ranks first.
Set ``NEGATIONCLIP_SAVE_SCREENSHOT=docs/explore.png`` to keep the screenshot (the README's).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import negationclip
from negationclip.utils import NegationClipError

REPO = Path(__file__).resolve().parents[2]
SRC = Path(negationclip.__file__).resolve().parents[1]


def _browser_paths() -> tuple[str, str]:
    chrome = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                   if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    if not chrome or not driver:
        pytest.skip("headless Chromium is not installed (chromium + chromedriver; `make test` installs "
                    "Debian's chromium and chromium-driver with apt-get when run as root)")
    return chrome, driver


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("selenium", reason="selenium is in the [test] extra")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chrome, driver = _browser_paths()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1280,1300", "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(driver), options=opts)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def world_setup(tmp_path_factory):
    """A 60-scene NegWorld export (its images plus one broken file) and two saved models: the
    shipped NegWorld base CLIP and a random tiny CLIP."""
    import torch

    from negationclip.data.negworld import WorldConfig, build_world
    from negationclip.demo import BASE_MODEL_DIR
    from negationclip.models import save, tiny_clip_bundle

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("explore")
    build_world(d / "world", WorldConfig(images=60, seed=3), show_progress=False)
    images = d / "images"
    shutil.copytree(d / "world" / "images", images)
    (images / "zz-broken.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    save(tiny_clip_bundle(seed=1), d / "random")
    pairs = json.loads((d / "world" / "negation_pairs.json").read_text())
    query = next(p["text"] for p in (pairs["pairs"] if isinstance(pairs, dict) else pairs)
                 if " without " in p["text"])
    return {"dir": d, "images": images, "models": {"base": BASE_MODEL_DIR, "random": d / "random"},
            "query": query}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ranking(models: dict, images: Path, query: str, k: int) -> dict[str, list[str]]:
    """The Python API's top-k (encode_images / encode_text, cosine, descending)."""
    from negationclip.models import encode_images, encode_text, load_clip, open_image

    paths = []
    for p in sorted(images.iterdir()):
        try:
            open_image(p)
            paths.append(p)
        except NegationClipError:
            pass
    out = {}
    for name, src in models.items():
        b = load_clip(src)
        s = (encode_images(b, paths, show_progress=False) @ encode_text(b, [query], show_progress=False)[0]).tolist()
        out[name] = [paths[i].name for i in sorted(range(len(paths)), key=lambda i: -s[i])[:k]]
    return out


def _shown(d, kind: str) -> dict[str, list[str]]:
    from selenium.webdriver.common.by import By

    out: dict[str, list[str]] = {}
    for f in d.find_elements(By.CSS_SELECTOR, f"#hits figure.nc-hit[data-kind={kind}]"):
        out.setdefault(f.get_attribute("data-model"), []).append(f.get_attribute("data-image"))
    return out


def _save_screenshot(d, path: Path) -> None:
    """The screenshot as a palette PNG (small enough to commit)."""
    from PIL import Image

    raw = path.with_suffix(".raw.png")
    d.save_screenshot(str(raw))
    Image.open(raw).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    raw.unlink()


def test_explore_page_shows_what_the_python_api_ranks_first(browser, world_setup, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    pytest.importorskip("gradio", reason="the explore page needs the [app] extra")
    ws, k, port = world_setup, 6, _free_port()
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"results": {"base": {"negworld": {"accuracy": 0.4}},
                                               "random": {"negworld": {"accuracy": 0.5}}}}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "NEGATIONCLIP_NO_PROGRESS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    cmd = [sys.executable, "-m", "negationclip.cli", "explore", "--images", str(ws["images"]),
           "--port", str(port), "--top-k", str(k), "--cache-dir", str(tmp_path / "cache"),
           "--results", str(results), "--threads", "1"]
    for name, src in ws["models"].items():
        cmd += ["--model", f"{name}={src}"]
    log = open(tmp_path / "server.log", "w+")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.time() + 300
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"explore exited with {proc.returncode}:\n{log.read()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                log.seek(0)
                pytest.fail(f"explore did not come up in 300 s:\n{log.read()}")
            time.sleep(1)
        d = browser
        d.get(url)
        wait = WebDriverWait(d, 60)
        box = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#query textarea"))
        notices = d.find_element(By.ID, "notices").text
        assert "76 images" in notices and "models: base, random" in notices
        assert "1 of 77 images skipped (unreadable)" in notices
        # an empty query: a message, not a traceback
        d.find_element(By.CSS_SELECTOR, "#search").click()
        msg = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#hits .nc-msg.nc-error"))
        assert "type a query" in msg[0].text and "Traceback" not in d.page_source
        # the negated query, and the same with its negation removed
        query = ws["query"]
        box.send_keys(query)
        d.find_element(By.CSS_SELECTOR, "#affirmed input").click()
        d.find_element(By.CSS_SELECTOR, "#search").click()
        wait.until(lambda d: len(_shown(d, "affirmed").get("random", [])) == k)
        from negationclip.apps.explore import remove_negation

        affirmed = remove_negation(query)
        assert d.find_elements(By.CSS_SELECTOR, "#hits .nc-qrow[data-kind=affirmed] .nc-qtext")[0].text == affirmed
        assert _shown(d, "query") == _ranking(ws["models"], ws["images"], query, k)
        assert _shown(d, "affirmed") == _ranking(ws["models"], ws["images"], affirmed, k)
        loaded = d.execute_script("return [...document.querySelectorAll('#hits img')]"
                                  ".map(i => i.complete && i.naturalWidth > 0)")
        assert len(loaded) == 4 * k and all(loaded)
        shot = tmp_path / "explore.png"
        _save_screenshot(d, shot)
        assert shot.read_bytes()[:4] == b"\x89PNG"
        keep = os.environ.get("NEGATIONCLIP_SAVE_SCREENSHOT")
        if keep:
            dest = Path(keep) if Path(keep).is_absolute() else REPO / keep
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, dest)
        # the results tab shows the results file given with --results
        next(b for b in d.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text == "Results").click()
        rows = wait.until(lambda d: [r for r in d.find_elements(By.CSS_SELECTOR, "#results-view tr.nc-model-row")
                                     if r.is_displayed()])
        assert [r.get_attribute("data-model") for r in rows] == ["base", "random"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_report_html_renders_offline_with_every_model(browser, world_setup, tmp_path):
    from selenium.webdriver.common.by import By

    from negationclip.data.negworld import load_negation_pairs
    from negationclip.evaluate.html_report import pair_examples, write_html_report

    ws = world_setup
    pairs = load_negation_pairs(ws["dir"] / "world" / "negation_pairs.json")[:3]
    results = {"format": "negationclip-eval/1", "results": {
        "base": {"negation-pairs": {"accuracy": 0.4, "total": 10}, "retrieval": {"headline_metric": "t2i_r5", "t2i_r5": 0.2}},
        "negclip": {"negation-pairs": {"accuracy": 0.7, "total": 10}, "retrieval": {"headline_metric": "t2i_r5", "t2i_r5": 0.19}},
        "third": {"negation-pairs": {"accuracy": 0.55, "total": 10}}},
        "errors": {"broken": {"retrieval": "model failed to load"}}}
    choices = {"base": [False, True, False], "negclip": [True, True, False]}
    path = write_html_report(results, tmp_path / "report.html", title="browser check",
                             images=pair_examples(ws["dir"] / "world", pairs, choices))
    d = browser
    d.get_log("browser")  # drop what earlier pages logged
    d.get(path.as_uri())
    rows = d.find_elements(By.CSS_SELECTOR, "tr.nc-model-row")
    assert [r.get_attribute("data-model") for r in rows] == ["base", "negclip", "third", "broken"]
    assert all(r.is_displayed() for r in rows)
    imgs = d.execute_script("return [...document.images].map(i => i.complete && i.naturalWidth > 0)")
    assert len(imgs) == 6 and all(imgs)
    boxes = d.execute_script("return [...document.querySelectorAll('svg')].map(s => s.getBoundingClientRect().height)")
    assert len(boxes) == 2 and all(h > 40 for h in boxes)
    errors = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]
    assert errors == []
    # nothing was fetched: the page's only resource is the file itself
    fetched = d.execute_script("return performance.getEntriesByType('resource').map(r => r.name)")
    assert fetched == []
