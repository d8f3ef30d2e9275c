"""`rvos serve` in a real browser: Debian's headless Chromium driven by selenium against a server started
as a person would (`rvos serve --backend lite`, with a login). Without Chromium these tests skip and
say how to get it; CI (`.ci/run`) turns that skip into a failure."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.backends.lite.tracker import interior_point
from agent.writers import decode_rle, read_palette_png
from conftest import ROOT

USER, PASSWORD = "tester", "not-a-secret"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser_ready():
    if CHROMIUM and CHROMEDRIVER:
        return
    message = ("headless Chromium not found: on Debian run `apt-get install chromium chromium-driver` as root "
               "(`make test` does that when it runs as root)")
    if os.environ.get("RVOS_REQUIRE_BROWSER"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(browser_ready, refdavis, tmp_path_factory):
    """The app on the lite backend, on a free local port, with a login and the shared videos as examples."""
    port, log = free_port(), tmp_path_factory.mktemp("server") / "serve.log"
    workspaces = tmp_path_factory.mktemp("workspaces")  # the server's temporary folder: each browser's files
    command = [sys.executable, "-m", "agent", "serve", "--backend", "lite", "--port", str(port), "--auth", f"{USER}:{PASSWORD}",
               "--examples", str(refdavis.parent), "--concurrency", "2"]
    with open(log, "w") as out:
        # the workspaces live in gradio's upload folder (served from there): the same folder here
        env = os.environ | {"TMPDIR": str(workspaces), "GRADIO_TEMP_DIR": str(workspaces)}
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and "Running on" not in log.read_text():
        if process.poll() is not None:
            pytest.fail(f"rvos serve exited with {process.returncode}:\n{log.read_text()}")
        time.sleep(0.5)
    yield url, workspaces
    process.terminate()
    process.wait(timeout=30)


class Page:
    """One browser (its own profile and downloads folder) on the app."""

    def __init__(self, url: str, downloads: Path, login: bool = True, arguments: tuple[str, ...] = ()):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.support.ui import WebDriverWait

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                         "--autoplay-policy=no-user-gesture-required", *arguments):
            options.add_argument(argument)
        options.add_experimental_option("prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.downloads = downloads
        from selenium.common.exceptions import StaleElementReferenceException

        # a page that re-renders (the live view, every half second) can swap an element between finding and reading it
        self.wait = lambda seconds=120: WebDriverWait(self.driver, seconds, poll_frequency=0.2,
                                                      ignored_exceptions=(StaleElementReferenceException,))
        self.driver.get(url)
        if login:
            self.login(USER, PASSWORD)
            self.wait().until(lambda d: self.find("#upload input[type=file]"))

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        found = self.find(css)
        return found[0].text if found else ""

    def login(self, user: str, password: str) -> None:
        self.wait(60).until(lambda d: self.find("input[type=password]"))
        self.find("input[type=text]")[0].send_keys(user)
        self.find("input[type=password]")[0].send_keys(password)
        next(b for b in self.find("button") if b.text.strip() == "Login").click()

    def status(self) -> str:
        return self.text("#status [data-testid=markdown]")  # the line itself, not the progress shown over it

    def status_after(self, action, done: str) -> str:
        """Do `action`, then wait until the status line says `done` (or shows an error)."""
        before = self.status()
        action()
        self.wait().until(lambda d: (t := self.status()) != before and (done in t or "⚠" in t))
        return self.status()

    def upload(self, path: Path) -> str:
        return self.status_after(lambda: self.find("#upload input[type=file]")[0].send_keys(str(path)), "Opened")

    def ask(self, question: str) -> str:
        box = self.find("#question textarea")[0]
        box.clear()
        box.send_keys(question)
        return self.status_after(lambda: self.find("#ask")[0].click(), "found")

    def click_frame(self, x: float, y: float) -> str:
        """Click the frame viewer at the frame's pixel (x, y)."""
        from selenium.webdriver.common.action_chains import ActionChains

        image = self.find("#frame img")[0]
        natural_w, natural_h, shown_w, shown_h = self.driver.execute_script(
            "const r = arguments[0].getBoundingClientRect(); return [arguments[0].naturalWidth, arguments[0].naturalHeight, r.width, r.height];", image)
        scale = min(shown_w / natural_w, shown_h / natural_h)  # the image is scaled to fit, centred
        dx, dy = (x - natural_w / 2) * scale, (y - natural_h / 2) * scale
        return self.status_after(lambda: ActionChains(self.driver).move_to_element_with_offset(image, round(dx), round(dy)).click().perform(),
                                 "re-tracked")

    def click_image(self, css: str, x: float, y: float) -> None:
        """Click the image shown in `css` at its pixel (x, y) (it is scaled to fit, centred). The live view is
        replaced as new frames come: the image is found again until one is loaded and still there for the click."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.action_chains import ActionChains

        for _ in range(20):
            try:
                image = self.find(f"{css} img")[0]
                natural_w, natural_h, shown_w, shown_h = self.driver.execute_script(
                    "const i = arguments[0], r = i.getBoundingClientRect(); return [i.naturalWidth, i.naturalHeight, r.width, r.height];", image)
                if not natural_w or not shown_w:  # still loading
                    time.sleep(0.1)
                    continue
                scale = min(shown_w / natural_w, shown_h / natural_h)
                ActionChains(self.driver).move_to_element_with_offset(image, round((x - natural_w / 2) * scale),
                                                                      round((y - natural_h / 2) * scale)).click().perform()
                return
            except (StaleElementReferenceException, IndexError):
                time.sleep(0.1)
        raise AssertionError(f"no loaded image in {css} to click")

    def download(self, button: str = "#download") -> Path:
        before = set(self.downloads.glob("*.zip"))
        self.find(button)[0].click()
        self.wait(60).until(lambda d: set(self.downloads.glob("*.zip")) - before and not any(self.downloads.glob("*.crdownload")))
        return (set(self.downloads.glob("*.zip")) - before).pop()

    def video_state(self) -> dict:
        return self.driver.execute_script(
            "const v = document.querySelector('#overlay video'); if (!v) return null; v.muted = true; v.play();"
            "return {duration: v.duration, time: v.currentTime, paused: v.paused, ready: v.readyState, width: v.videoWidth};")

    def close(self) -> None:
        self.driver.quit()


@pytest.fixture
def page(server, tmp_path):
    opened = Page(server[0], tmp_path / "downloads")
    yield opened
    opened.close()


def read_zip(path: Path, into: Path) -> tuple[list[np.ndarray], dict]:
    with zipfile.ZipFile(path) as archive:
        archive.extractall(into)
    masks = [read_palette_png(p) for p in sorted((into / "masks").glob("*.png"))]
    return masks, json.loads((into / "result.json").read_text())


def test_upload_ask_watch_click_download(page, swan_clip, refdavis, tmp_path):
    from selenium.webdriver.common.keys import Keys

    assert "20 frames, 854×480" in page.upload(swan_clip)
    assert "1 object(s) found" in page.ask("a black swan")
    assert "a black swan" in page.text("#chat") and "How (auto)" in page.text("#chat")  # the trace, folded
    assert "#1" in page.text("#objects")

    page.wait(30).until(lambda d: (s := page.video_state()) and s["ready"] >= 1 and s["time"] > 0)
    video = page.video_state()
    assert abs(video["duration"] - 20 / 24) < 1.5 / 24 and video["width"] == 854  # plays, the whole clip

    masks, result = read_zip(page.download(), tmp_path / "before")
    assert len(masks) == 20 and masks[0].dtype == np.uint8
    for mask, frame in zip(masks, result["frames"]):  # the palette PNGs and the RLE say the same
        rle = frame["objects"].get("1")
        assert rle is not None and np.array_equal(decode_rle(rle["rle"]), mask == 1)

    truth = read_palette_png(refdavis / "Annotations" / "blackswan" / "00000.png") == 1
    missed = truth & (masks[0] != 1)  # a part of the swan the first answer left out
    x, y = interior_point(missed)
    image_before = page.find("#frame img")[0].get_attribute("src")
    status = page.click_frame(x, y)
    assert status.startswith("corrected object 1 with clicks +(") and "on frame 0" in status
    clicked = [float(v) for v in status.split("+(")[1].split(")")[0].split(",")]
    assert abs(clicked[0] - x) <= 3 and abs(clicked[1] - y) <= 3  # the click landed where it was aimed
    page.wait(30).until(lambda d: page.find("#frame img")[0].get_attribute("src") != image_before)

    masks_after, _ = read_zip(page.download(), tmp_path / "after")
    assert masks_after[0][int(y), int(x)] == 1 and not np.array_equal(masks_after[0], masks[0])
    page.driver.execute_script("window.scrollTo(0, 0)")
    page.driver.save_screenshot(str(tmp_path / "serve.png"))
    if os.environ.get("RVOS_SCREENSHOT"):  # how the README's picture is made (a .jpg is smaller)
        Image.open(tmp_path / "serve.png").convert("RGB").save(os.environ["RVOS_SCREENSHOT"], quality=85)

    shown = page.find("#frame img")[0].get_attribute("src")
    number = page.find("#frame-slider input[type=number]")[0]  # the slider's own box: frame 12
    number.send_keys(Keys.CONTROL, "a")
    number.send_keys("12", Keys.ENTER)
    page.wait(30).until(lambda d: page.find("#frame img")[0].get_attribute("src") != shown)


def test_two_browsers_keep_their_own_state(server, swan_clip, refdavis, tmp_path):
    first, second = Page(server[0], tmp_path / "a"), Page(server[0], tmp_path / "b")
    try:
        first.upload(swan_clip)
        example = second.find("#example input")[0]
        example.click()
        example.send_keys("car-shadow")
        second.status_after(lambda: second.find("li.item")[0].click(), "Opened")  # the one name that matches
        assert "refdavis-mini3/car-shadow" in second.status()
        for page, question in ((first, "a black swan"), (second, "a silver car")):
            page.find("#question textarea")[0].send_keys(question)
            page.find("#ask")[0].click()  # both at once
        for page in (first, second):
            page.wait().until(lambda d, p=page: "found" in p.status() or "⚠" in p.status())
        assert "a black swan" in first.text("#chat") and "a silver car" not in first.text("#chat")
        assert "a silver car" in second.text("#chat") and "a black swan" not in second.text("#chat")
        first.find("#name textarea")[0].send_keys("my swan")  # the object the answer found is the chosen one
        assert "renamed object 1" in first.status_after(lambda: first.find("#rename")[0].click(), "renamed")
        assert "my swan" in first.text("#objects") and "my swan" not in second.text("#objects")
        first_masks, first_result = read_zip(first.download(), tmp_path / "first")
        assert first_result["objects"] == [{"id": 1, "produced_by": "my swan"}]
        second_masks, _ = read_zip(second.download(), tmp_path / "second")
        assert len(first_masks) == 20 and len(second_masks) == len(list((refdavis / "JPEGImages" / "car-shadow").glob("*.jpg")))
        assert first_masks[0].any() and second_masks[0].any()
        second.status_after(lambda: second.find("#remove")[0].click(), "removed")
        assert second.text("#objects") == "No objects yet." and "#1" in first.text("#objects")
    finally:
        first.close()
        second.close()


def test_a_corrupt_upload_says_so_and_the_page_still_works(page, swan_clip, tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(bytes(range(256)) * 400)
    status = page.upload(corrupt)
    assert "⚠" in status and "cannot read video" in status
    assert "20 frames" in page.upload(swan_clip)


def test_long_work_shows_progress_and_can_be_stopped(page, swan_clip):
    page.upload(swan_clip)
    page.find("#question textarea")[0].send_keys("a black swan")
    page.find("#ask")[0].click()
    page.wait(60).until(lambda d: "track" in page.text("#status") and "frames" in page.text("#status"))  # the bar, over the status line
    status = page.status_after(lambda: page.find("#stop")[0].click(), "stopped")
    assert "nothing changed" in status and page.text("#objects") == "No objects yet."
    assert "1 object(s) found" in page.ask("a black swan")  # and the next question is answered


def test_without_the_password_nothing_opens(server, tmp_path):
    import urllib.error
    import urllib.request

    url = server[0]
    stranger = Page(url, tmp_path / "downloads", login=False)
    try:
        stranger.login(USER, "wrong")
        time.sleep(2)
        assert not stranger.find("#upload") and stranger.find("input[type=password]")
    finally:
        stranger.close()
    for request in (url + "config", urllib.request.Request(url + "gradio_api/call/ask", data=b'{"data": ["a swan", "direct", 0]}',
                                                               headers={"Content-Type": "application/json"})):
        with pytest.raises(urllib.error.HTTPError) as refused:  # nor does the API
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401



def test_closing_the_tab_removes_its_files(server, swan_clip, tmp_path):
    def workspaces() -> set[Path]:
        return set(server[1].glob("rvos-serve-*"))

    before = workspaces()
    visitor = Page(server[0], tmp_path / "downloads")
    visitor.upload(swan_clip)
    (mine,) = workspaces() - before
    assert any(mine.rglob("upload.mp4"))
    visitor.close()
    deadline = time.monotonic() + 30
    while mine.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not mine.exists()


@pytest.fixture(scope="module")
def fake_camera(refdavis, tmp_path_factory) -> Path:
    """blackswan's frames as the Y4M file Chromium's fake camera plays (over and over) at 10 frames/s."""
    import av

    path = tmp_path_factory.mktemp("camera") / "swan.y4m"
    with av.open(str(path), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("rawvideo", rate=10)
        stream.width, stream.height, stream.pix_fmt = 854, 480, "yuv420p"
        for frame in sorted((refdavis / "JPEGImages" / "blackswan").glob("*.jpg")):
            for packet in stream.encode(av.VideoFrame.from_image(Image.open(frame).convert("RGB"))):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def until(camera: Page, seconds: float, condition, what: str) -> None:
    """Wait for `condition` on the live tab; a time-out says what the tab showed then."""
    from selenium.common.exceptions import TimeoutException

    try:
        camera.wait(seconds).until(condition)
    except TimeoutException:
        raise AssertionError(f"{what} in {seconds} s: status {camera.text('#live-status')!r}, "
                             f"counts {camera.text('#live-counts')!r}") from None


def test_the_live_tab_segments_the_camera_as_frames_come_and_takes_a_click(server, fake_camera, refdavis, tmp_path):
    camera = Page(server[0], tmp_path / "downloads", arguments=("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                                                                 f"--use-file-for-fake-video-capture={fake_camera}"))
    try:
        next(t for t in camera.find("button[role=tab]") if t.text == "Live").click()
        assert not camera.find("#live-url") and not camera.find("#live-open")  # no --allow-streams: the camera only
        camera.find("#live-question textarea")[0].send_keys("a black swan")
        camera.wait(30).until(lambda d: any("Access Webcam" in b.text for b in camera.find("#live-camera button")))
        next(b for b in camera.find("#live-camera button") if "Access Webcam" in b.text).click()
        camera.wait(30).until(lambda d: any(b.text == "Record" and b.is_displayed() for b in camera.find("#live-camera button")))
        next(b for b in camera.find("#live-camera button") if b.text == "Record").click()

        def live(handled: int, objects: int):
            def shown(driver) -> bool:
                text = camera.text("#live-counts")
                numbers = text.split(", ")
                return (text.startswith("Live:") and int(numbers[1].split()[0]) >= handled
                        and int(numbers[-1].split()[0]) >= objects and camera.find("#live-view img"))
            return shown

        camera.wait(180).until(live(3, 1))  # the swan found, and shown as the frames come
        before = camera.text("#live-status")
        camera.click_image("#live-view", 40, 40)  # the water in the corner: one more object from the next frame on
        until(camera, 180, lambda d: camera.text("#live-status") != before, "the click was not answered")
        until(camera, 180, live(6, 2), "no second object shown after the click")
        camera.find("#live-stop")[0].click()
        camera.wait(120).until(lambda d: camera.text("#live-status").startswith(("Stopped", "⚠")))
        assert "2 object(s)" in camera.text("#live-status")
        # the camera stopped with the run (its own Record button is back), and no frame started another run
        camera.wait(10).until(lambda d: any(b.text == "Record" and b.is_displayed() for b in camera.find("#live-camera button")))
        time.sleep(4)
        assert camera.text("#live-status").startswith("Stopped")
        archive = camera.download("#live-download")
    finally:
        camera.close()

    with zipfile.ZipFile(archive) as opened:
        opened.extractall(tmp_path / "live")
    result = json.loads((tmp_path / "live" / "result.json").read_text())
    assert result["live"] and result["input"] == "the browser's camera" and result["frame_size"] == [854, 480]
    assert result["frames_handled"] + result["dropped_frames"] == result["frames_received"] >= result["frames_handled"] >= 6
    assert [o["request"] for o in result["objects"]] == [0, 1]
    truth = [read_palette_png(p) > 0 for p in sorted((refdavis / "Annotations" / "blackswan").glob("*.png"))]
    swan = [decode_rle(f["objects"]["1"]["rle"]) for f in result["frames"] if "1" in f["objects"]]
    # which of the looping camera's frames each one was is not known: the best match among the video's frames
    best = [max(np.logical_and(m, t).sum() / max(np.logical_or(m, t).sum(), 1) for t in truth) for m in swan if m.any()]
    assert len(best) >= 3 and np.median(best) > 0.7, best
    clicked = [decode_rle(f["objects"]["2"]["rle"]) for f in result["frames"] if "2" in f["objects"]]
    assert any(m[40, 40] for m in clicked) and not any((m & t).sum() > 0.5 * m.sum() for m in clicked if m.any() for t in truth[:1])
