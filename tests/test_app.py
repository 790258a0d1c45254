"""app.py's page in a real browser: headless Chromium (the system's, as CI installs it) driven by
Playwright, against one server for the module started as a user starts it, on the tiny trained
checkpoint of the suite. Set LINEARITYIQA_SCREENSHOT to a path to keep the screenshot there (the
manual's is docs/assets/app.png).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import test_demo
from linearityiqa.data.decoding import ImageSizing
from linearityiqa.data.synthetic import Degradation, degrade, render_scene
from linearityiqa.records.scale import TrainingScale

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")
REPO = Path(__file__).resolve().parents[1]
# three photos of one scene, each worse than the one before, and a file that is no image
PHOTOS = {"harbour.jpg": 0.0, "harbour-blurred.jpg": 0.5, "harbour-noisy.png": 1.0}
BROKEN = "notes.jpg"
NAMES = [*PHOTOS, BROKEN]
# the server's limits, small enough to try: the photos are 160x120, a poster of 300x200 is over the pixel limit
LIMITS = ["--max_files", str(len(NAMES)), "--max_pixels", "40000"]
WAIT_MS = 120_000  # the longest the page may take to show scores: the queue, on a CPU shared with the suite


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name, severity in PHOTOS.items():
        rng = np.random.default_rng(0)
        scene = render_scene(rng, 160, 120)
        degrade(scene, Degradation(blur=severity, noise=severity), rng).save(folder / name)
    (folder / BROKEN).write_text("a shopping list, not a photo")
    render_scene(np.random.default_rng(1), 300, 200).save(folder / "poster.png")
    return folder


@pytest.fixture(scope="module")
def checkpoint(trained_run) -> str:
    return str(trained_run / "model.pth")


def demo_scores(folder: Path, checkpoint: str, names: list[str], *options: str) -> str:
    """The CSV test_demo.py writes for `names`, given as a list on standard input in their folder
    (its main, run in this process: the page's server is the process under test)."""
    argv = ["--img", "-", "--trained_model_file", checkpoint, "-o", "scores.csv", *options]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("\n".join(names).encode())))
        # the script switches Pillow's own pixel limit off for its whole process: undone after it
        patch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
        assert test_demo.main(argv) in (0, 3)  # 3: some images could not be scored
    return (folder / "scores.csv").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def demo_csv(photos, checkpoint) -> str:
    return demo_scores(photos, checkpoint, NAMES)


@pytest.fixture(scope="module")
def url(checkpoint):
    """The page's URL, from what app.py prints; stopped by Ctrl-C at the end, with status 130."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, str(REPO / "app.py"), "--trained_model_file", checkpoint, "--port", str(port), *LIMITS]
    # Ctrl-C as a terminal's: a shell's background job (a CI step, say) starts its commands with it ignored
    restore_sigint = partial(signal.signal, signal.SIGINT, signal.SIG_DFL)
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=restore_sigint
    )
    line = server.stdout.readline()
    assert line.startswith("app.py: the page is at http://127.0.0.1:"), (line, server.poll() and server.stderr.read())
    yield line.split(" at ")[1].split()[0]
    server.send_signal(signal.SIGINT)
    _, err = server.communicate(timeout=60)  # read while it ends: a full pipe would block its last words
    assert server.returncode == 130, err
    assert "app.py: interrupted" in err


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


def rows_of(text: str) -> dict[str, dict[str, str]]:
    """A CSV's rows by image."""
    return {row["image"]: row for row in csv.DictReader(io.StringIO(text))}


def upload(page, folder: Path, names: list[str]) -> list[list[str]]:
    """Drop `names` on the page; the cells of its table's rows, once it shows them."""
    page.locator("input[type=file]").set_input_files([folder / name for name in names])
    table = page.locator("table.ranking")
    table.locator("tr").nth(len(names)).wait_for(timeout=WAIT_MS)
    return [row.locator("td").all_inner_texts() for row in table.locator("tr").all()[1:]]


@pytest.mark.slow  # with the server's start and test_demo.py's run: its file is handed out first
def test_the_page_ranks_the_photos_with_test_demos_scores_and_gives_its_csv(browser, url, photos, demo_csv, tmp_path):
    page = browser.new_page()
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(url)
    rows = upload(page, photos, NAMES)
    expected = rows_of(demo_csv)
    best_first = sorted(PHOTOS, key=lambda name: -float(expected[name]["score"]))
    assert [row[:3] for row in rows[:3]] == [
        [str(rank), name, f"{float(expected[name]['score']):.2f}"] for rank, name in enumerate(best_first, start=1)
    ]
    assert rows[3][1:] == [BROKEN, expected[BROKEN]["error"]] and "cannot decode" in rows[3][2]
    assert "resnet18" in page.content() and "KonIQ-10k" in page.content()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the scores").click()
    assert Path(download.value.path()).read_text(encoding="utf-8") == demo_csv
    shot = tmp_path / "app.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.read_bytes().startswith(b"\x89PNG")
    if os.environ.get("LINEARITYIQA_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["LINEARITYIQA_SCREENSHOT"])
    # nothing the page loads comes from anywhere but its server
    assert requested and all(address.startswith((url, "data:", "blob:")) for address in requested), requested


def test_the_heads_are_shown_on_request_and_in_the_csv(browser, url, photos, checkpoint):
    expected = demo_scores(photos, checkpoint, ["harbour.jpg"], "--heads")
    page = browser.new_page()
    page.goto(url)
    page.get_by_label("Show the three heads").check()
    [row] = upload(page, photos, ["harbour.jpg"])
    heads = rows_of(expected)["harbour.jpg"]
    assert row[3:6] == [f"{float(heads[name]):.4f}" for name in ("pq6", "pq7", "pq")]
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the scores").click()
    assert Path(download.value.path()).read_text(encoding="utf-8") == expected


def test_two_browsers_at_once_each_get_their_own_scores(browser, url, photos, demo_csv):
    expected = rows_of(demo_csv)
    wanted = [["harbour.jpg", "harbour-noisy.png"], ["harbour-blurred.jpg"]]
    pages = [browser.new_context().new_page() for _ in wanted]
    for page in pages:
        page.goto(url)
    for page, names in zip(pages, wanted):  # both uploads in flight before either is scored
        page.locator("input[type=file]").set_input_files([photos / name for name in names])
    for page, names in zip(pages, wanted):
        page.locator("table.ranking tr").nth(len(names)).wait_for(timeout=WAIT_MS)
        shown = [row.locator("td").all_inner_texts()[1:3] for row in page.locator("table.ranking tr").all()[1:]]
        assert sorted(shown) == sorted([name, f"{float(expected[name]['score']):.2f}"] for name in names)


def test_a_photo_over_the_pixel_limit_gets_its_error_and_too_many_files_are_refused(browser, url, photos):
    page = browser.new_page()
    page.goto(url)
    rows = upload(page, photos, ["poster.png", "harbour.jpg"])
    assert [row[1] for row in rows] == ["harbour.jpg", "poster.png"]
    assert "declares 300 x 200 pixels" in rows[1][2] and "--max_pixels" in rows[1][2]
    page = browser.new_page()  # a page that holds files adds those dropped next to them
    page.goto(url)
    page.locator("input[type=file]").set_input_files([photos / name for name in [*NAMES, "poster.png"]])
    refusal = page.get_by_text(f"{len(NAMES) + 1} files: this page scores at most {len(NAMES)} at once")
    refusal.wait_for(timeout=WAIT_MS)


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "../../../../../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd", "CHECKPOINT"]
)
def test_the_file_route_serves_nothing_outside_the_upload_folder(url, checkpoint, path):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}gradio_api/file={path.replace('CHECKPOINT', checkpoint)}", timeout=30)
    assert refused.value.code in (403, 404)


def test_a_path_sent_in_place_of_an_upload_is_not_read(url):
    # the page's API call, a file outside the upload folder named where an uploaded one goes
    payload = {"data": [[{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}], False]}
    request = urllib.request.Request(
        f"{url}gradio_api/call/rank", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    event = json.load(urllib.request.urlopen(request, timeout=30))["event_id"]
    stream = urllib.request.urlopen(f"{url}gradio_api/call/rank/{event}", timeout=WAIT_MS / 1000).read().decode()
    assert "event: error" in stream and "root:" not in stream


class MeanBrightness:
    """A backend whose score is an image's mean pixel value, on a scale that `scale` names."""

    where, sizing, batch_size, max_pixels, note = "cpu", ImageSizing(), 1, 10**6, None

    def __init__(self, scale: TrainingScale | None):
        self.scale = scale

    def scores_and_heads(self, images):
        scores = [float(image.mean()) for image in images]
        return scores, [(score, score, score) for score in scores]

    def too_large(self, error):
        return False


@pytest.mark.parametrize("lower_is_better", [False, True])
def test_best_first_follows_the_direction_of_the_scale(photos, tmp_path, lower_is_better):
    from linearityiqa.web import answer

    scale = TrainingScale("DMOS data", 0.0, 255.0, 100.0, higher_is_better=not lower_is_better)
    uploads = [str(photos / name) for name in NAMES]
    gallery, table, csv_path = answer(MeanBrightness(scale), uploads, heads=False, workers=1, folder=str(tmp_path))
    scores = {row["image"]: float(row["score"]) for row in rows_of(Path(csv_path).read_text()).values() if row["score"]}
    best_first = sorted(scores, key=scores.get, reverse=not lower_is_better)
    assert [caption.split(" ")[1].rstrip(":") for _, caption in gallery] == best_first
    assert table.count("<svg") == len(PHOTOS) + 1  # a bar per photo, and the axis's labels


def test_a_model_that_records_no_scale_says_so_and_draws_no_bar(photos, tmp_path):
    from linearityiqa.web import answer

    _, table, _ = answer(
        MeanBrightness(None),
        [str(photos / "harbour.jpg")],
        heads=False,
        workers=1,
        folder=str(tmp_path),
    )
    assert "does not record the scale" in table and "<svg" not in table
