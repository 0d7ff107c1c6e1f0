"""visualize_dataset_html.py: the static site's data, videos and errors, then the pages in a headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lerobot.common.datasets.errors import DatasetExistsError, EpisodeNotFoundError
from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
from lerobot.common.datasets.metadata import load_metadata
from lerobot.common.datasets.video_utils import encode_video_frames, get_video_info
from lerobot.scripts.visualize_dataset import PortInUseError, UnknownKeyError
from lerobot.scripts.visualize_dataset_html import build_dataset_site, main, make_server
from lerobot.scripts.visualize_eval_html import EvalInfoError, build_eval_site
from tests.conftest import require_shared_data

FPS = 10
REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS_SCREENSHOT = REPO_ROOT / "docs" / "images" / "visualize_dataset_html.png"
# Screenshots from the browser tests are kept here after the run (outputs/ is gitignored); CI can upload them.
SCREENSHOT_DIR = Path(os.environ.get("LEROBOT_TEST_SCREENSHOTS", REPO_ROOT / "outputs" / "test_screenshots"))


def keep_screenshot(driver, name: str) -> Path:
    """Saves the browser's current view as SCREENSHOT_DIR/<name>.png (replacing the last run's) and returns it."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    tmp = path.with_suffix(f".{os.getpid()}.tmp.png")
    driver.save_screenshot(str(tmp))
    os.replace(tmp, path)
    return path


def camera_frame(camera: int, episode: int, i: int, size: tuple[int, int]) -> np.ndarray:
    """Red encodes the frame index, green the episode, blue the camera: a wrong frame shows after decoding."""
    img = np.empty((*size, 3), dtype=np.uint8)
    img[..., 0] = (i * 8) % 256
    img[..., 1] = 40 + 70 * episode
    img[..., 2] = 60 + 120 * camera
    return img


def record(root: Path, lengths, *, camera_dtype="video", sizes=((24, 32), (16, 16)), version="v3.0") -> Path:
    features = {
        f"observation.images.cam{c}": {"dtype": camera_dtype, "shape": (*size, 3), "names": None}
        for c, size in enumerate(sizes)
    }
    features |= {
        "observation.state": {"dtype": "float32", "shape": (3,), "names": ["x", "y", "z"]},
        "action": {"dtype": "float32", "shape": (2,), "names": None},
        "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
        "next.success": {"dtype": "bool", "shape": (1,), "names": None},
    }
    writer = LeRobotDataset.create(
        "test/browse", fps=FPS, features=features, root=root, codebase_version=version, image_writer_threads=1
    )
    for ep, n in enumerate(lengths):
        for i in range(n):
            frame = {f"observation.images.cam{c}": camera_frame(c, ep, i, s) for c, s in enumerate(sizes)}
            frame["observation.state"] = np.array([ep, i, np.sin(i / 3)], dtype=np.float32)
            frame["action"] = np.array([i * 0.5, -i], dtype=np.float32)
            frame["next.reward"] = np.float32(i / n)
            frame["next.success"] = i == n - 1
            writer.add_frame(frame)
        writer.save_episode(task=f"Stack <b>block</b> {ep}")
    writer.finalize()
    return root


def page_data(page: Path, script_id: str = "episode-data") -> dict:
    text = page.read_text(encoding="utf-8")
    m = re.search(rf'<script type="application/json" id="{script_id}">(.*?)</script>', text, re.S)
    assert m, f"no {script_id} in {page}"
    return json.loads(m.group(1))


def decode_all(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def browse_v3(tmp_path_factory) -> Path:
    return record(tmp_path_factory.mktemp("html") / "browse", lengths=(30, 25, 20))


# ------------------------------------------------------------------------------------------- the site


def test_dataset_site_holds_every_episode_series_and_video(browse_v3, tmp_path):
    site = build_dataset_site("test/browse", browse_v3, output_dir=tmp_path / "site")
    index = (site / "index.html").read_text()
    for ep in range(3):
        assert f'href="episode_{ep}.html"' in index
    assert "Stack &lt;b&gt;block&lt;/b&gt; 1" in index  # task text is escaped, never raw HTML
    assert {p.name for p in (site / "static").iterdir()} >= {"uPlot.iife.min.js", "uPlot.LICENSE", "app.js"}

    data = page_data(site / "episode_1.html")
    assert data["timestamps"] == pytest.approx([i / FPS for i in range(25)])
    plots = {p["key"]: p for p in data["plots"]}
    assert list(plots) == ["observation.state", "action", "next.reward", "next.success"]
    assert plots["observation.state"]["names"] == ["x", "y", "z"]
    assert plots["observation.state"]["values"][2] == pytest.approx(
        [np.sin(i / 3) for i in range(25)], abs=1e-5
    )
    assert plots["action"]["names"] == ["0", "1"]
    assert plots["action"]["values"][1] == [-float(i) for i in range(25)]
    assert plots["next.success"]["values"][0] == [0.0] * 24 + [1.0]

    # AV1 from the writer is re-encoded per episode to H.264 4:2:0, one file per camera, frame for frame.
    assert [v["key"] for v in data["videos"]] == ["observation.images.cam0", "observation.images.cam1"]
    for cam, video in enumerate(data["videos"]):
        path = site / video["src"]
        info = get_video_info(path)
        assert (info["video.codec"], info["video.pix_fmt"]) == ("h264", "yuv420p")
        assert video["offset"] == 0.0
        frames = decode_all(path)
        assert len(frames) == 25
        for i in (0, 12, 24):
            expected = camera_frame(cam, 1, i, frames[i].shape[:2]).astype(int)
            assert np.abs(frames[i].astype(int) - expected).mean(axis=(0, 1)).max() < 6, (cam, i)


def test_transcode_never_links_the_shared_v3_file(browse_v3, tmp_path):
    site = build_dataset_site("test/browse", browse_v3, [1, 2], tmp_path / "site", transcode="never")
    meta = load_metadata(browse_v3)
    assert not (site / "episode_0.html").exists()
    for ep in (1, 2):
        video = page_data(site / f"episode_{ep}.html")["videos"][0]
        segment = meta.episodes[ep].videos["observation.images.cam0"]
        assert video["src"] == "videos/source/observation.images.cam0/chunk-000/file-000.mp4"
        assert video["offset"] == pytest.approx(segment.from_timestamp) and segment.from_timestamp > 0
    assert (site / video["src"]).read_bytes() == (browse_v3 / segment.path).read_bytes()


def test_image_dataset_with_odd_sizes_gets_h264_videos(tmp_path):
    root = record(tmp_path / "img", lengths=(7,), camera_dtype="image", sizes=((23, 31),), version="v2.1")
    site = build_dataset_site(
        "test/browse", root, output_dir=tmp_path / "site", keys=["observation.images.cam0", "action"]
    )
    data = page_data(site / "episode_0.html")
    assert [p["key"] for p in data["plots"]] == ["action"]
    frames = decode_all(site / data["videos"][0]["src"])
    assert len(frames) == 7 and frames[0].shape == (24, 32, 3)  # padded to even sizes for H.264 4:2:0
    assert abs(frames[6][:23, :31, 0].mean() - 48) < 4


def test_output_dir_is_never_silently_replaced(browse_v3, tmp_path):
    out = tmp_path / "site"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(DatasetExistsError, match="--force-override"):
        build_dataset_site("test/browse", browse_v3, [0], out)
    assert (out / "mine.txt").read_text() == "keep"
    build_dataset_site("test/browse", browse_v3, [0], out, force_override=True)
    assert not (out / "mine.txt").exists() and (out / "episode_0.html").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".site.")]  # no staging folder left
    with pytest.raises(ValueError, match="input"):
        build_dataset_site("test/browse", browse_v3, [0], browse_v3.parent, force_override=True)


def test_errors_name_the_problem(browse_v3, tmp_path, capsys):
    with pytest.raises(EpisodeNotFoundError, match=r"\[5\]"):
        build_dataset_site("test/browse", browse_v3, [1, 5], tmp_path / "a")
    with pytest.raises(UnknownKeyError, match="observation.velocity"):
        build_dataset_site("test/browse", browse_v3, [0], tmp_path / "b", keys=["observation.velocity"])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"{port}.*--port"):
            make_server("127.0.0.1", port, tmp_path)
        args = ["--repo-id", "test/browse", "--root", str(browse_v3), "--output-dir", str(tmp_path / "c")]
        assert main([*args, "--serve", "1", "--port", str(port)]) == 2
        assert "in use" in capsys.readouterr().err
        assert not (tmp_path / "c").exists()  # the port is checked before any work
    assert main([*args, "--episodes", "0"]) == 0
    assert (tmp_path / "c" / "episode_0.html").exists()
    assert main([*args, "--episodes", "0"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_server_answers_byte_ranges(tmp_path, serve):
    """Browsers only seek in videos whose server answers Range requests (http.server alone does not)."""
    import urllib.error
    import urllib.request

    payload = bytes(range(256)) * 40
    (tmp_path / "v.mp4").write_bytes(payload)
    base = serve(tmp_path)

    def get(byte_range: str | None):
        request = urllib.request.Request(f"{base}/v.mp4", headers={"Range": byte_range} if byte_range else {})
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, response.read()

    status, headers, body = get("bytes=100-199")
    assert (status, body, headers["Content-Range"]) == (
        206,
        payload[100:200],
        f"bytes 100-199/{len(payload)}",
    )
    assert get("bytes=10000-")[2] == payload[10000:]
    assert get("bytes=-5")[2] == payload[-5:]
    assert get(None)[:1] == (200,) and get(None)[2] == payload
    with pytest.raises(urllib.error.HTTPError, match="416"):
        get(f"bytes={len(payload)}-")


# ------------------------------------------------------------------------------------------ eval runs


def write_eval_run(out: Path, codec: str = "libx264") -> Path:
    """What lerobot/scripts/eval.py leaves in its --out-dir: eval_info.json and videos/eval_episode_<i>.mp4."""
    per_episode = [
        {"episode_ix": 0, "sum_reward": 12.5, "max_reward": 1.0, "success": True, "seed": 1000},
        {"episode_ix": 1, "sum_reward": 3.25, "max_reward": 0.4, "success": False, "seed": 1001},
        {"episode_ix": 2, "sum_reward": 0.0, "max_reward": float("-inf"), "success": False, "seed": 1002},
    ]
    info = {
        "per_episode": per_episode,
        "aggregated": {
            "avg_sum_reward": 5.25,
            "avg_max_reward": float("-inf"),
            "pc_success": 100 / 3,
            "n_episodes": 3,
            "success_beta_posterior": {"mean": 40.0, "low": 19.0, "high": 61.0, "mass": 0.68},
            "eval_s": 4.2,
            "eval_ep_s": 1.4,
        },
        "video_paths": [],
    }
    for ix in (0, 1):  # eval.py renders only the first max_episodes_rendered episodes
        frames = [camera_frame(0, ix, i, (48, 64)) for i in range(20)]
        path = out / "videos" / f"eval_episode_{ix}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        encode_video_frames(frames, path, FPS, vcodec=codec, g=20)
        info["video_paths"].append(str(path))
    (out / "eval_info.json").write_text(json.dumps(info, indent=2))  # -inf becomes -Infinity, as in eval.py
    return out


def test_eval_site(tmp_path):
    run = write_eval_run(tmp_path / "run")
    site = build_eval_site(run)
    assert site == run / "html"
    page = (site / "index.html").read_text()
    assert page.count('class="card"') == 3 and "no video recorded" in page
    assert "1/3 successes" in page and "40.0% (19.0-61.0%, 68% credible interval)" in page
    data = page_data(site / "index.html", "eval-data")
    assert [e["max_reward"] for e in data["episodes"]] == [1.0, 0.4, None]  # -Infinity is not JSON
    assert data["episodes"][0]["success"] is True
    assert (site / "videos" / "eval_episode_1.mp4").read_bytes() == (
        run / "videos" / "eval_episode_1.mp4"
    ).read_bytes()

    av1_run = write_eval_run(tmp_path / "av1", codec="libsvtav1")
    assert (
        main(["--eval-dir", str(av1_run), "--output-dir", str(tmp_path / "av1_site")]) == 0
    )  # the CLI route
    assert get_video_info(tmp_path / "av1_site" / "videos" / "eval_episode_0.mp4")["video.codec"] == "h264"
    with pytest.raises(SystemExit):  # a dataset or an eval run, not both
        main(["--eval-dir", str(av1_run), "--repo-id", "test/browse"])

    (run / "eval_info.json").write_text(json.dumps({"per_episode": [{"episode_ix": 0, "sum_reward": "a"}]}))
    with pytest.raises(EvalInfoError, match=r"per_episode\[0\].sum_reward"):
        build_eval_site(run, tmp_path / "bad")


def test_real_pusht_v13_and_converted(tmp_path):
    source = require_shared_data("lerobot_v1.3", "datasets", "pusht")
    from lerobot.common.datasets.convert import convert_dataset

    converted = convert_dataset("lerobot/pusht", source, tmp_path / "pusht_v30", progress=False)
    sites = [
        build_dataset_site("lerobot/pusht", root, output_dir=tmp_path / name)
        for name, root in [("a", source), ("b", converted)]
    ]
    original, again = (page_data(s / "episode_0.html") for s in sites)
    assert original["plots"] == again["plots"] and len(original["timestamps"]) == 161
    assert [p["key"] for p in original["plots"]] == [
        "observation.state",
        "action",
        "next.reward",
        "next.done",
        "next.success",
    ]
    for site, data in zip(sites, (original, again)):
        info = get_video_info(site / data["videos"][0]["src"])
        assert (info["video.codec"], info["video.pix_fmt"]) == ("h264", "yuv420p")  # from H.264 4:4:4
        assert len(decode_all(site / data["videos"][0]["src"])) == 161


# ------------------------------------------------------------------------------------- in a browser


def find_browser() -> tuple[str, str] | None:
    browser = next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
    )
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("selenium")
    found = find_browser()
    if found is None:
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(found[1]))
    yield driver
    driver.quit()


@pytest.fixture
def serve():
    servers = []

    def start(directory: Path) -> str:
        server = make_server("127.0.0.1", 0, directory)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


STATE_JS = """
const vs = [...document.querySelectorAll('video')];
const cursor = document.querySelector('.time-cursor');
return {times: vs.map(v => v.currentTime), paused: vs.map(v => v.paused), errors: vs.map(v => v.error && v.error.code),
        cursor: cursor ? parseFloat(cursor.style.left) : null, t: parseFloat(document.body.dataset.time),
        charts: document.querySelectorAll('.uplot').length, status: (document.getElementById('status') || {}).textContent};
"""


def wait_for(driver, predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        state = driver.execute_script(STATE_JS)
        if predicate(state) or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


def test_episode_page_plays_videos_in_sync_with_a_moving_cursor(browser, serve, browse_v3, tmp_path):
    site = build_dataset_site("test/browse", browse_v3, [0, 1], tmp_path / "site")
    browser.get(f"{serve(site)}/episode_0.html")
    first = wait_for(browser, lambda s: s["times"] and min(s["times"]) > 0.2 and s["cursor"] is not None)
    later = wait_for(
        browser, lambda s: s["times"][0] > first["times"][0] + 0.5 or s["times"][0] < first["times"][0]
    )
    shot = keep_screenshot(browser, "episode_page")
    assert first["errors"] == [None, None] and first["status"] == ""
    assert first["charts"] == 4  # state, action, reward, success
    assert later["times"][0] != first["times"][0] and not any(later["paused"])  # playing (it loops at 3 s)
    assert abs(later["times"][0] - later["times"][1]) < 0.25  # the two cameras stay together
    assert later["cursor"] != first["cursor"] and 0 <= later["t"] <= 3.0
    assert shot.stat().st_size > 10_000

    browser.find_element("id", "play").click()  # pause: time and cursor stop
    wait_for(browser, lambda s: all(s["paused"]))
    time.sleep(0.3)  # let the page draw the frame it paused on
    paused = browser.execute_script(STATE_JS)
    time.sleep(0.5)
    still = browser.execute_script(STATE_JS)
    assert all(paused["paused"]) and still["times"] == paused["times"] and still["cursor"] == paused["cursor"]


def test_linked_shared_video_stays_inside_the_episode(browser, serve, browse_v3, tmp_path):
    site = build_dataset_site("test/browse", browse_v3, [1], tmp_path / "site", transcode="never")
    start = load_metadata(browse_v3).episodes[1].videos["observation.images.cam0"].from_timestamp
    browser.get(f"{serve(site)}/episode_1.html")
    seen = []
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:  # 2.5 s episode: long enough to see it wrap around
        state = browser.execute_script(STATE_JS)
        # Before the page sets data-time, parseFloat gives NaN, which WebDriver returns as null.
        if state["t"] is not None and not np.isnan(state["t"]) and state["times"]:
            seen.append((state["times"][0], state["t"]))
        time.sleep(0.1)
    video_times = [v for v, _ in seen]
    assert seen and max(video_times) > min(video_times)
    assert start - 0.05 <= min(video_times) and max(video_times) <= start + 2.5 + 0.15
    assert all(-0.01 <= t <= 2.51 for _, t in seen)


def test_eval_page_plays_rollouts(browser, serve, tmp_path):
    site = build_eval_site(write_eval_run(tmp_path / "run"))
    browser.get(f"{serve(site)}/index.html")
    state = wait_for(browser, lambda s: len(s["times"]) == 2 and min(s["times"]) > 0.2)
    assert min(state["times"]) > 0.2 and state["errors"] == [None, None] and state["charts"] == 1
    assert keep_screenshot(browser, "eval_page").stat().st_size > 10_000


def test_real_pusht_page_screenshot(browser, serve, tmp_path):
    source = require_shared_data("lerobot_v1.3", "datasets", "pusht")
    site = build_dataset_site("lerobot/pusht", source, output_dir=tmp_path / "site")
    browser.get(f"{serve(site)}/episode_0.html")
    first = wait_for(browser, lambda s: s["times"] and s["times"][0] > 1.0)
    later = wait_for(browser, lambda s: s["times"][0] > first["times"][0] + 1.0)
    assert later["cursor"] > first["cursor"] and later["charts"] == 5
    shot = keep_screenshot(browser, "real_pusht_episode_page")
    if os.environ.get("LEROBOT_UPDATE_DOCS_SCREENSHOT") == "1":  # refresh the README's picture
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)
