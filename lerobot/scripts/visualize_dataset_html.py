"""Write a static website to browse a LeRobot dataset (any format version) or an evaluation run.

    python lerobot/scripts/visualize_dataset_html.py --repo-id lerobot/pusht [--root DIR] [--episodes 0 1 2]
        [--output-dir DIR] [--serve 1 --host 127.0.0.1 --port 9090] [--force-override 0|1]
    python lerobot/scripts/visualize_dataset_html.py --eval-dir outputs/eval/<run> [--serve 1]

The dataset site has an episode list with the dataset's info, and one page per episode where the camera videos
play in sync with plots of every state/action (and reward, done, ...) dimension, a moving time cursor and the
task text. Clicking a plot seeks the videos; space plays/pauses, arrow keys step frames. The eval site shows
`eval.py`'s rollout videos with each episode's reward and success.

Videos the site can play as they are (H.264 4:2:0) are hard-linked or copied; others (AV1, H.264 4:4:4, PNG
frames) are re-encoded per episode to H.264, which every browser plays (`--transcode never` keeps them as
they are). Everything, including the plotting library, is local: open index.html from disk, or --serve 1.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import html
import http.server
import json
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

import numpy as np

from lerobot.common.datasets.errors import DatasetError, DatasetExistsError, MissingFileError
from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
from lerobot.common.datasets.utils import safe_join, validate_repo_id
from lerobot.scripts.visualize_dataset import (
    PortInUseError,
    dimension_names,
    episode_columns,
    iter_camera_frames,
    load_dataset,
    select_keys,
)

STATIC_FILES = {  # template file -> name in the site's static/ folder
    "app.js": "app.js",
    "style.css": "style.css",
    "vendor/uPlot.iife.min.js": "uPlot.iife.min.js",
    "vendor/uPlot.min.css": "uPlot.min.css",
    "vendor/uPlot.LICENSE": "uPlot.LICENSE",
}
TRANSCODE_CHOICES = ("auto", "always", "never")
_SLUG = re.compile(r"[^A-Za-z0-9_.\-]")

if TYPE_CHECKING:
    from importlib.abc import Traversable


# ------------------------------------------------------------------------------------------ rendering


def template_dir() -> Traversable:
    return resources.files("lerobot") / "templates" / "visualize_dataset_html"


def render(name: str, **values: str) -> str:
    """Fill a page template; every value must already be HTML (escape text with `html.escape`)."""
    return Template((template_dir() / name).read_text(encoding="utf-8")).substitute(values)


def to_json(value: Any) -> Any:
    """Plain JSON types, with NaN and infinities as null (JSON has no such numbers)."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def json_script(data: Any) -> str:
    """JSON safe to place inside <script type="application/json">: '<', '>' and '&' are escaped."""
    text = json.dumps(to_json(data), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def round_values(values: np.ndarray) -> list:
    """A float column as a list with 6 significant digits (keeps the pages small), non-finite as None."""
    values = np.asarray(values, dtype=np.float64)
    return [float(f"{v:.6g}") if math.isfinite(v) else None for v in values.tolist()]


def rows_html(rows: Iterable[tuple[str, str]]) -> str:
    return "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)


def slug(text: str) -> str:
    return _SLUG.sub("_", text) or "_"


# ------------------------------------------------------------------------------------ output folders


@contextlib.contextmanager
def staged_output(out: Path, force_override: bool, protected: Sequence[Path] = ()) -> Iterator[Path]:
    """Yield an empty folder next to `out`, renamed onto `out` once the block succeeds (never half a site)."""
    out = Path(out).expanduser()
    resolved = out.resolve()
    for path in protected:
        path = Path(path).resolve()
        if resolved == path or resolved in path.parents:
            raise ValueError(
                f"--output-dir {out} would replace {path}, which is an input. Choose another folder."
            )
    if out.exists() and not out.is_dir():
        raise DatasetExistsError(f"--output-dir {out} exists and is not a folder; choose another path.")
    if out.is_dir() and any(out.iterdir()) and not force_override:
        raise DatasetExistsError(
            f"--output-dir {out} already exists and is not empty; pass --force-override 1 to replace it."
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield stage
        stage.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        stage.rename(out)
    finally:
        if stage.exists():
            shutil.rmtree(stage)


def copy_static(site: Path) -> None:
    static = site / "static"
    static.mkdir(parents=True, exist_ok=True)
    for src, name in STATIC_FILES.items():
        (static / name).write_bytes((template_dir() / src).read_bytes())


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


# ------------------------------------------------------------------------------------------ videos


def plays_everywhere(path: Path) -> bool:
    """H.264 in 4:2:0: the one mp4 flavour every browser (and headless Chromium) decodes."""
    from lerobot.common.datasets.video_utils import get_video_info

    info = get_video_info(path)
    return info["video.codec"] == "h264" and info["video.pix_fmt"] in ("yuv420p", "yuvj420p")


def even_frames(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Pad odd widths/heights by repeating the last row/column (H.264 4:2:0 needs even sizes)."""
    for frame in frames:
        h, w = frame.shape[:2]
        if h % 2 or w % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        yield frame


def encode_h264(frames: Iterable[np.ndarray], path: Path, fps: float) -> None:
    from lerobot.common.datasets.video_utils import encode_video_frames

    path.parent.mkdir(parents=True, exist_ok=True)
    g = max(1, round(fps))  # a keyframe per second keeps seeking in the browser quick
    encode_video_frames(even_frames(frames), path, fps, vcodec="libx264", g=g, crf=23, preset="veryfast")
    path.chmod(0o644)  # written through a private temporary file; a site is meant to be read by others


def episode_videos(
    dataset: LeRobotDataset,
    episode_index: int,
    cameras: Sequence[str],
    timestamps: np.ndarray,
    site: Path,
    transcode: str,
    playable: dict[Path, bool],
) -> list[dict]:
    """Put each camera's video of the episode into the site; return {key, src, offset} per camera."""
    out = []
    for key in cameras:
        segment = dataset.meta.episodes[episode_index].videos.get(key)
        if segment is not None:
            source = safe_join(dataset.root, segment.path)
            if not source.is_file():
                raise MissingFileError(f"Video {source} of episode {episode_index} ({key}) is missing.")
            if source not in playable:
                playable[source] = transcode == "never" or (transcode == "auto" and plays_everywhere(source))
            if playable[source]:
                parts = Path(segment.path).parts
                rel = Path("videos", "source", *(parts[1:] if parts[0] == "videos" else parts))
                if not (site / rel).exists():
                    link_or_copy(source, site / rel)
                out.append({"key": key, "src": rel.as_posix(), "offset": segment.from_timestamp})
                continue
        rel = Path("videos", f"episode_{episode_index:06d}", f"{slug(key)}.mp4")
        frames = iter_camera_frames(dataset, episode_index, key, timestamps)
        encode_h264(frames, site / rel, dataset.fps)
        out.append({"key": key, "src": rel.as_posix(), "offset": -float(timestamps[0])})
    return out


# ---------------------------------------------------------------------------------------- dataset site


def episode_page_name(episode_index: int) -> str:
    return f"episode_{episode_index}.html"


def dataset_info_rows(dataset: LeRobotDataset, shown: int) -> str:
    meta = dataset.meta
    cameras = []
    for key in dataset.camera_keys:
        feature = dataset.features[key]
        h, w = feature["shape"][:2]
        codec = (feature.get("info") or {}).get("video.codec") or feature["dtype"]
        cameras.append(f"{key} ({w}x{h}, {codec})")
    tasks = sorted(set(dataset.tasks.values()))
    return rows_html(
        [
            ("repo id", dataset.repo_id),
            ("format", meta.codebase_version),
            ("robot type", str(meta.robot_type or "unknown")),
            ("fps", f"{dataset.fps:g}"),
            ("episodes", f"{meta.total_episodes} ({shown} shown)"),
            ("frames", str(meta.total_frames)),
            ("cameras", ", ".join(cameras) or "none"),
            (
                "tasks",
                "; ".join(tasks[:10]) + (f" (+{len(tasks) - 10} more)" if len(tasks) > 10 else "") or "none",
            ),
            ("root", str(dataset.root)),
        ]
    )


def feature_rows(dataset: LeRobotDataset) -> str:
    rows = []
    for key, feature in dataset.features.items():
        names = feature.get("names")
        names_text = "" if names is None else json.dumps(names)
        if len(names_text) > 160:
            names_text = names_text[:157] + "..."
        cells = [key, str(feature.get("dtype")), str(list(feature.get("shape", ()))), names_text]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return "\n".join(rows)


def episode_page(
    dataset: LeRobotDataset,
    episode_index: int,
    series: list[str],
    videos: list[dict],
    columns: dict[str, np.ndarray],
    nav: str,
    info: str,
    autoplay: bool,
) -> str:
    episodes = dataset.episodes
    pos = episodes.index(episode_index)
    prev_link = f'<a id="prev" href="{episode_page_name(episodes[pos - 1])}">previous</a>' if pos > 0 else ""
    next_link = (
        f'<a id="next" href="{episode_page_name(episodes[pos + 1])}">next</a>'
        if pos + 1 < len(episodes)
        else ""
    )
    plots = []
    for key in series:
        values = columns[key].astype(np.float64)
        plots.append(
            {
                "key": key,
                "names": dimension_names(dataset.features[key]),
                "values": [round_values(c) for c in values.T],
            }
        )
    video_html = []
    for i, video in enumerate(videos):
        video["id"] = f"video-{i}"
        video_html.append(
            f'<figure><video id="video-{i}" src="{html.escape(video["src"])}" muted playsinline preload="auto">'
            f"</video><figcaption>{html.escape(video['key'])}</figcaption></figure>"
        )
    ts = columns["timestamp"]
    data = {
        "episode_index": episode_index,
        "fps": dataset.fps,
        "timestamps": round_values(ts),
        "plots": plots,
        "videos": videos,
        "autoplay": autoplay,
    }
    tasks = dataset.meta.episodes[episode_index].tasks
    duration = len(ts) / dataset.fps
    return render(
        "episode.html",
        title=html.escape(f"{dataset.repo_id} - episode {episode_index}"),
        repo_id=html.escape(dataset.repo_id),
        episode_index=str(episode_index),
        subtitle=html.escape(f"{len(ts)} frames, {duration:.1f} s at {dataset.fps:g} fps"),
        prev_link=prev_link,
        next_link=next_link,
        episode_links=nav.replace(
            f'href="{episode_page_name(episode_index)}"',
            f'class="current" href="{episode_page_name(episode_index)}"',
        ),
        task=html.escape(" / ".join(tasks)) if tasks else '<span class="muted">no task recorded</span>',
        videos="\n".join(video_html) or '<p class="muted">This dataset has no camera.</p>',
        info_rows=info,
        data=json_script(data),
    )


def build_dataset_site(
    repo_id: str,
    root: str | Path | None = None,
    episodes: Sequence[int] | None = None,
    output_dir: str | Path | None = None,
    *,
    keys: Sequence[str] | None = None,
    transcode: str = "auto",
    force_override: bool = False,
    autoplay: bool = True,
) -> Path:
    """Write the site (index.html, one page per episode, videos, static/) and return its folder."""
    from tqdm import tqdm

    validate_repo_id(repo_id)
    if transcode not in TRANSCODE_CHOICES:
        raise ValueError(f"transcode must be one of {TRANSCODE_CHOICES}, got {transcode!r}.")
    dataset = load_dataset(repo_id, root, episodes)
    cameras, series = select_keys(dataset, keys)
    out = (
        Path(output_dir)
        if output_dir is not None
        else Path("outputs", "visualize_dataset_html", slug(repo_id))
    )
    info = dataset_info_rows(dataset, dataset.num_episodes)
    nav = "\n".join(f'<a href="{episode_page_name(e)}">episode {e}</a>' for e in dataset.episodes)
    index_rows = []
    playable: dict[Path, bool] = {}
    with staged_output(out, force_override, protected=[dataset.root]) as site:
        copy_static(site)
        for ep in tqdm(dataset.episodes, desc=f"{repo_id} episodes", unit="ep"):
            columns = episode_columns(dataset, ep, series)
            videos = episode_videos(dataset, ep, cameras, columns["timestamp"], site, transcode, playable)
            page = episode_page(dataset, ep, series, videos, columns, nav, info, autoplay)
            (site / episode_page_name(ep)).write_text(page, encoding="utf-8")
            n = len(columns["timestamp"])
            task = " / ".join(dataset.meta.episodes[ep].tasks) or "-"
            index_rows.append(
                f'<tr><td class="num"><a href="{episode_page_name(ep)}">{ep}</a></td><td class="num">{n}</td>'
                f'<td class="num">{n / dataset.fps:.1f}</td><td>{html.escape(task)}</td></tr>'
            )
        index = render(
            "index.html",
            title=html.escape(repo_id),
            repo_id=html.escape(repo_id),
            subtitle=html.escape(f"LeRobot dataset, format {dataset.codebase_version}, {dataset.fps:g} fps"),
            episode_rows="\n".join(index_rows),
            info_rows=info,
            feature_rows=feature_rows(dataset),
        )
        (site / "index.html").write_text(index, encoding="utf-8")
    return out


# ------------------------------------------------------------------------------------------------ CLI


_BYTE_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class SiteRequestHandler(http.server.SimpleHTTPRequestHandler):
    """Static files, with HTTP byte ranges: browsers only seek in a video whose server answers them."""

    _remaining: int | None = None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass

    def send_head(self):
        self._remaining = None
        match = _BYTE_RANGE.fullmatch(self.headers.get("Range", "").strip())
        path = self.translate_path(self.path)
        if match is None or match.group(1) + match.group(2) == "" or not os.path.isfile(path):
            return super().send_head()
        try:
            f = open(path, "rb")  # noqa: SIM115 (handed to the caller, which closes it)
        except OSError:
            self.send_error(404, "File not found")
            return None
        size = os.fstat(f.fileno()).st_size
        first, last = match.groups()
        if first == "":  # "bytes=-N": the last N bytes
            start, end = max(0, size - int(last)), size - 1
        else:
            start, end = int(first), min(int(last) if last else size - 1, size - 1)
        if start >= size or start > end:
            f.close()
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.end_headers()
            return None
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        f.seek(start)
        self._remaining = end - start + 1
        return f

    def copyfile(self, source, outputfile) -> None:
        if self._remaining is None:
            return super().copyfile(source, outputfile)
        while self._remaining > 0:
            chunk = source.read(min(1 << 16, self._remaining))
            if not chunk:
                break
            outputfile.write(chunk)
            self._remaining -= len(chunk)


def make_server(host: str, port: int, directory: str | Path) -> http.server.ThreadingHTTPServer:
    """An HTTP server for `directory`, bound now (so a taken port fails before any work is done)."""
    handler = functools.partial(SiteRequestHandler, directory=str(directory))
    try:
        return http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as e:
        raise PortInUseError(
            f"Cannot serve on {host}:{port} ({e.strerror or e}): the port is in use or the host is not an "
            "address of this machine. Pick another with --port N (or --host)."
        ) from e


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo-id", default=None, help="namespace/name of the dataset, e.g. lerobot/pusht")
    parser.add_argument(
        "--root", default=None, help="dataset folder (default: $DATA_DIR/<repo_id>, cache, Hub)"
    )
    parser.add_argument(
        "--episodes", type=int, nargs="*", default=None, help="episodes to include (default all)"
    )
    parser.add_argument("--eval-dir", default=None, help="show an eval.py run (its --out-dir) instead")
    parser.add_argument("--output-dir", default=None, help="where to write the site")
    parser.add_argument("--keys", nargs="*", default=None, help="only these cameras/features (default all)")
    parser.add_argument("--transcode", default="auto", choices=TRANSCODE_CHOICES, help="re-encode to H.264")
    parser.add_argument("--serve", type=int, default=0, choices=[0, 1], help="1: serve the site over HTTP")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=9090, help="port to serve on")
    parser.add_argument(
        "--force-override", type=int, default=0, choices=[0, 1], help="1: replace --output-dir"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.repo_id is None) == (args.eval_dir is None):
        parser.error("pass either --repo-id (a dataset) or --eval-dir (an evaluation run)")
    server = None
    try:
        if args.eval_dir is not None:
            out = Path(args.output_dir) if args.output_dir else Path(args.eval_dir) / "html"
        else:
            out = (
                Path(args.output_dir)
                if args.output_dir
                else Path("outputs", "visualize_dataset_html", slug(args.repo_id))
            )
        if args.serve:
            server = make_server(args.host, args.port, out)
        if args.eval_dir is not None:
            from lerobot.scripts.visualize_eval_html import build_eval_site

            out = build_eval_site(
                args.eval_dir, out, transcode=args.transcode, force_override=bool(args.force_override)
            )
        else:
            out = build_dataset_site(
                args.repo_id,
                args.root,
                args.episodes,
                out,
                keys=args.keys,
                transcode=args.transcode,
                force_override=bool(args.force_override),
            )
    except (DatasetError, PortInUseError, ValueError) as e:  # EvalInfoError is a ValueError
        if server is not None:
            server.server_close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"Wrote {out / 'index.html'}")
    if server is not None:
        host, port = server.server_address[:2]
        print(f"Serving {out} at http://{host}:{port}/ (Ctrl-C to stop)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
