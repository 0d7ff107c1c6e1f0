"""visualize_dataset.py: an episode saved as .rrd holds every camera frame and series, read back with rerun's API."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lerobot.common.datasets.errors import DatasetExistsError, EpisodeNotFoundError
from lerobot.scripts.visualize_dataset import (
    PortInUseError,
    UnknownKeyError,
    dimension_names,
    main,
    visualize_dataset,
)
from tests.conftest import require_shared_data
from tests.datasets.helpers import FPS, frame_image, record

rr = pytest.importorskip("rerun")

REPO_ROOT = Path(__file__).resolve().parents[2]


def read_rrd(path: Path, index: str = "frame_index") -> dict[str, dict[Any, object]]:
    """{entity path: {index value: component value}} of the non-static data of an .rrd, with rerun's readers."""
    try:
        from rerun.chunk import RrdReader  # rerun >= 0.3x
    except ImportError:
        return read_rrd_dataframe(path, index)
    out: dict[str, dict[Any, object]] = {}
    for chunk in RrdReader(path).stream():
        if index not in chunk.timeline_names:
            continue  # static data (the task text) and recording properties
        batch = chunk.to_record_batch()
        value_column = next(n for n in batch.schema.names if ":" in n and not n.endswith("media_type"))
        entity = out.setdefault(chunk.entity_path, {})
        for key, value in zip(batch.column(index).to_pylist(), batch.column(value_column).to_pylist()):
            entity[key] = value
    return out


def read_rrd_dataframe(path: Path, index: str) -> dict[str, dict[Any, object]]:
    """The same through `rerun.dataframe`, the reader of the releases before `rerun.chunk` (0.21 ...)."""
    from rerun import dataframe

    recording = dataframe.load_recording(str(path))
    static = {c.entity_path for c in recording.schema().component_columns() if c.is_static}
    table = recording.view(index=index, contents="/**").select().read_all()
    keys = table.column(index).to_pylist()
    out: dict[str, dict[Any, object]] = {}
    for name in table.column_names:
        entity, _, component = name.partition(":")
        if not component or entity in static or component.endswith(("Indicator", "MediaType", "media_type")):
            continue
        values = out.setdefault(entity, {})
        for key, value in zip(keys, table.column(name).to_pylist()):
            if value is not None:
                values[key] = value
    return out


def seconds(value) -> float:
    """A timeline value (pandas Timedelta or Timestamp since the epoch, both in ns) in seconds."""
    return value.value / 1e9 if hasattr(value, "value") else value.total_seconds()


def scalar(value) -> float:
    while isinstance(value, list):
        value = value[0]
    return float(value)


def decode_jpeg(value) -> np.ndarray:
    from PIL import Image

    while isinstance(value, list) and len(value) == 1 and isinstance(value[0], (list, bytes)):
        value = value[0]  # one blob per row, nested or not depending on the rerun release
    data = bytes(value) if not isinstance(value, list) else bytes(np.asarray(value, dtype=np.uint8))
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


@pytest.fixture(scope="module")
def tiny_v3(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("viz") / "tiny"
    record(root, lengths=(6, 8), version="v3.0", image_writer_threads=1)
    return root


def test_saved_rrd_holds_every_frame_and_series(tiny_v3, tmp_path):
    out = visualize_dataset("test/tiny", 1, tiny_v3, save=True, output_dir=tmp_path)
    assert out == tmp_path / "test_tiny_episode_1.rrd"
    data = read_rrd(out)
    n = 8  # episode 1 of the recording

    # Named dimensions get their names, unnamed ones their index; scalars their key.
    for entity in (
        "/observation.state/x",
        "/observation.state/y",
        "/observation.state/z",
        "/action/0",
        "/action/1",
    ):
        assert sorted(data[entity]) == list(range(n)), entity
    assert [scalar(data["/observation.state/z"][i]) for i in range(n)] == [100.0 + i for i in range(n)]
    assert [scalar(data["/action/1"][i]) for i in range(n)] == [-float(i) for i in range(n)]
    assert scalar(data["/next.reward"][3]) == pytest.approx(3 / n)
    assert [scalar(data["/next.done"][i]) for i in range(n)] == [0.0] * (n - 1) + [1.0]

    # Camera frames: the red channel encodes the frame index (JPEG is lossy, AV1 too: compare loosely).
    assert sorted(data["/observation.image"]) == list(range(n))
    for i in (0, 5):
        image = decode_jpeg(data["/observation.image"][i])
        assert image.shape == (24, 32, 3)
        assert abs(float(image[..., 0].mean()) - frame_image(1, i)[..., 0].mean()) < 6

    # The episode's task, as a static text document.
    try:
        from rerun.chunk import RrdReader
    except ImportError:
        RrdReader = None
    if RrdReader is not None:
        texts = [
            c.to_record_batch() for c in RrdReader(out).stream() if c.entity_path == "/task" and c.is_static
        ]
        assert texts and texts[0].column("TextDocument:text").to_pylist() == [["task 1"]]

    # The timestamp timeline is there too (seconds, frame_index / fps).
    by_time = read_rrd(out, index="timestamp")["/action/0"]
    assert sorted(seconds(t) for t in by_time) == pytest.approx([i / FPS for i in range(n)])


def test_keys_filter_and_image_dataset_v21(tmp_path):
    root = tmp_path / "img"
    record(root, lengths=(5,), version="v2.1", camera_dtype="image", image_writer_threads=1)
    out = visualize_dataset(
        "test/img", 0, root, save=True, output_dir=tmp_path / "rrd", keys=["action", "observation.image"]
    )
    data = read_rrd(out)
    assert set(data) == {"/action/0", "/action/1", "/observation.image"}
    image = decode_jpeg(data["/observation.image"][4])
    assert abs(float(image[..., 0].mean()) - 48) < 4  # PNG frames are exact; only JPEG loses a little


def test_errors_name_the_problem(tiny_v3, tmp_path):
    with pytest.raises(EpisodeNotFoundError, match=r"\[7\]"):
        visualize_dataset("test/tiny", 7, tiny_v3, save=True, output_dir=tmp_path)
    with pytest.raises(UnknownKeyError, match="observation.velocity"):
        visualize_dataset(
            "test/tiny", 0, tiny_v3, save=True, output_dir=tmp_path, keys=["observation.velocity"]
        )
    with pytest.raises(ValueError, match="--output-dir"):
        visualize_dataset("test/tiny", 0, tiny_v3, save=True)

    first = visualize_dataset("test/tiny", 0, tiny_v3, save=True, output_dir=tmp_path)
    with pytest.raises(DatasetExistsError, match="--force-override"):
        visualize_dataset("test/tiny", 0, tiny_v3, save=True, output_dir=tmp_path)
    first.write_bytes(b"stale")
    visualize_dataset("test/tiny", 0, tiny_v3, save=True, output_dir=tmp_path, force_override=True)
    assert sorted(read_rrd(first)["/action/0"]) == list(range(6))

    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"{port}.*--web-port"):
            visualize_dataset("test/tiny", 0, tiny_v3, mode="distant", web_port=port, ws_port=free_port())


def test_cli_exit_codes(tiny_v3, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tiny_v3.parent))  # the dataset is found as $DATA_DIR/<repo_id>
    args = ["--repo-id", "viz/tiny", "--episode-index", "0", "--save", "1", "--output-dir", str(tmp_path)]
    (tiny_v3.parent / "viz").mkdir(exist_ok=True)
    (tiny_v3.parent / "viz" / "tiny").symlink_to(tiny_v3)
    assert main(args) == 0
    assert (tmp_path / "viz_tiny_episode_0.rrd").stat().st_size > 0
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--keys", "nope", "--force-override", "1"]) == 2
    assert "Unknown key" in capsys.readouterr().err


def test_dimension_names():
    assert dimension_names({"shape": (2,), "names": {"motors": ["a", "b"]}}) == ["a", "b"]
    assert dimension_names({"shape": (3,), "names": ["a", "a", "b"]}) == ["0", "1", "2"]
    assert dimension_names({"shape": (2, 2), "names": None}) == ["0", "1", "2", "3"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distant_mode_serves_a_web_viewer(tiny_v3):
    web_port, grpc_port = free_port(), free_port()
    cmd = [
        sys.executable,
        str(REPO_ROOT / "lerobot" / "scripts" / "visualize_dataset.py"),
        *("--repo-id", "test/tiny", "--root", str(tiny_v3), "--episode-index", "0", "--mode", "distant"),
        *("--web-port", str(web_port), "--ws-port", str(grpc_port)),
    ]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 40
        page = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/", timeout=2) as response:
                    page = response.read()
                    break
            except OSError:
                time.sleep(0.5)
        assert page is not None, f"no web viewer on port {web_port}; exit code {proc.poll()}"
        assert b"<html" in page.lower() or b"<!doctype" in page.lower()
        # The data server accepts connections too; it may start listening a moment after the web viewer.
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", grpc_port), timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.5)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_real_pusht_v13_and_converted(tmp_path):
    source = require_shared_data("lerobot_v1.3", "datasets", "pusht")
    from lerobot.common.datasets.convert import convert_dataset

    original = read_rrd(visualize_dataset("lerobot/pusht", 0, source, save=True, output_dir=tmp_path / "v13"))
    converted_root = convert_dataset("lerobot/pusht", source, tmp_path / "pusht_v30")
    converted = read_rrd(
        visualize_dataset("lerobot/pusht", 0, converted_root, save=True, output_dir=tmp_path / "v30")
    )
    assert set(original) == set(converted)  # the same entities (v3.0 adds a static task text, not read here)
    for entity in (
        "/observation.image",
        "/observation.state/0",
        "/action/1",
        "/next.reward",
        "/next.success",
    ):
        assert sorted(original[entity]) == list(range(161)), entity
    for i in (0, 80, 160):
        assert scalar(original["/action/1"][i]) == scalar(converted["/action/1"][i])
        assert (
            np.abs(
                decode_jpeg(original["/observation.image"][i]).astype(int)
                - decode_jpeg(converted["/observation.image"][i])
            ).max()
            <= 2
        )
