"""Finding a dataset on disk or on the Hugging Face Hub, and publishing one.

Where a dataset is looked for, in order:
  1. `root` given by the caller: that folder, or `root/<repo_id>`;
  2. `$DATA_DIR/<repo_id>` (the variable the LeRobot README uses for local datasets);
  3. `$HF_LEROBOT_HOME/<repo_id>` (default ~/.cache/huggingface/lerobot/<repo_id>), where downloads go;
  4. the Hub cache (`~/.cache/huggingface/hub`), which is all that is consulted offline (HF_HUB_OFFLINE=1);
  5. a download from the Hub, at the revision matching the dataset's format (a `v3.0` tag or branch, ...,
     falling back to `main`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from packaging.version import Version

from lerobot.common.datasets.errors import DatasetNotFoundError
from lerobot.common.datasets.metadata import find_info_file, load_metadata
from lerobot.common.datasets.utils import CODEBASE_VERSION, default_lerobot_home, validate_repo_id
from lerobot.common.utils.utils import env_flag

logger = logging.getLogger(__name__)

METADATA_PATTERNS = ["meta/*", "meta/**/*", "meta_data/*", "README.md"]
_VERSION_REF = re.compile(r"^v(\d+)\.(\d+)$")


def hub_offline() -> bool:
    return env_flag("HF_HUB_OFFLINE", default=False)


def local_candidates(repo_id: str, root: str | Path | None) -> list[Path]:
    if root is not None:
        root = Path(root).expanduser()
        return [root, root / repo_id]
    out = []
    if os.environ.get("DATA_DIR"):
        out.append(Path(os.environ["DATA_DIR"]).expanduser() / repo_id)
    out.append(default_lerobot_home() / repo_id)
    return out


def candidate_revisions(refs: Sequence[str] = ()) -> list[str]:
    """Revisions to try, best first: the newest version ref we can read, then older ones, then main."""
    versions = []
    for ref in refs:
        m = _VERSION_REF.match(ref)
        if m and Version(ref[1:]) <= Version(CODEBASE_VERSION[1:]):
            versions.append(ref)
    if not refs:  # offline: we cannot list refs, so try the usual ones
        versions = ["v3.0", "v2.1", "v2.0", "v1.6"]
    versions.sort(key=lambda r: Version(r[1:]), reverse=True)
    return versions + ["main"]


def choose_revision(repo_id: str) -> str:
    from huggingface_hub import HfApi

    refs = HfApi().list_repo_refs(repo_id, repo_type="dataset")
    names = [b.name for b in refs.branches] + [t.name for t in refs.tags]
    return candidate_revisions(names)[0]


def from_hub_cache(repo_id: str, revision: str | None) -> Path | None:
    """A snapshot already in the Hugging Face Hub cache, found without any network call."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    for rev in [revision] if revision else candidate_revisions():
        try:
            path = Path(snapshot_download(repo_id, repo_type="dataset", revision=rev, local_files_only=True))
        except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
            continue
        if find_info_file(path) is not None:
            return path
    return None


def episode_file_patterns(
    root: Path, episodes: Sequence[int] | None, download_videos: bool
) -> list[str] | None:
    """Files to download for a subset of episodes (None means everything)."""
    meta = load_metadata(root)
    if meta.codebase_version.startswith("v1."):
        return None if download_videos else [p for p in ["train/*", "data/*", *METADATA_PATTERNS]]
    chosen = (
        meta.episodes.values()
        if episodes is None
        else [meta.episodes[e] for e in episodes if e in meta.episodes]
    )
    patterns = set(METADATA_PATTERNS)
    for ep in chosen:
        patterns.add(ep.data_path)
        if download_videos:
            patterns.update(seg.path for seg in ep.videos.values())
    return sorted(patterns)


def download(repo_id: str, local_dir: Path, revision: str, patterns: list[str] | None) -> None:
    from huggingface_hub import snapshot_download

    snapshot_download(
        repo_id, repo_type="dataset", revision=revision, local_dir=local_dir, allow_patterns=patterns
    )


def resolve_dataset_root(
    repo_id: str,
    root: str | Path | None,
    *,
    revision: str | None = None,
    episodes: Sequence[int] | None = None,
    download_videos: bool = True,
    local_files_only: bool = False,
) -> Path:
    """Return the folder of `repo_id`, downloading the needed files from the Hub if allowed and needed."""
    validate_repo_id(repo_id)
    looked = local_candidates(repo_id, root)
    for path in looked:
        if find_info_file(path) is not None:
            return path
    offline = local_files_only or hub_offline()
    cached = from_hub_cache(repo_id, revision) if root is None else None
    if cached is not None:
        return cached
    if offline:
        raise DatasetNotFoundError(
            f"Dataset {repo_id!r} is not on this machine (looked in: {', '.join(str(p) for p in looked)}, and the "
            "Hugging Face Hub cache) and downloads are disabled (HF_HUB_OFFLINE=1 or local_files_only=True). "
            "Pass root=<folder holding meta/info.json>, set DATA_DIR, or allow downloads."
        )
    target = Path(root).expanduser() if root is not None else default_lerobot_home() / repo_id
    try:
        rev = revision or choose_revision(repo_id)
        logger.info("Downloading %s (revision %s) to %s", repo_id, rev, target)
        download(repo_id, target, rev, METADATA_PATTERNS)
    except Exception as e:  # network errors come from several libraries (httpx, requests, huggingface_hub)
        if isinstance(e, DatasetNotFoundError):
            raise
        raise DatasetNotFoundError(
            f"Dataset {repo_id!r} is not on this machine (looked in: {', '.join(str(p) for p in looked)}, and the "
            f"Hugging Face Hub cache) and downloading it failed: {type(e).__name__}: {e}. For a local dataset, "
            "pass root=<folder holding meta/info.json> (or set DATA_DIR); set HF_HUB_OFFLINE=1 to never try the Hub."
        ) from e
    if find_info_file(target) is None:
        raise DatasetNotFoundError(
            f"{repo_id}@{rev} on the Hub has no meta/info.json: it is not a LeRobot dataset."
        )
    download(repo_id, target, rev, episode_file_patterns(target, episodes, download_videos))
    return target


# ----------------------------------------------------------------------------- publishing


def dataset_card(root: Path, repo_id: str, tags: Sequence[str] = (), license: str = "apache-2.0") -> str:
    """The README.md shown on the Hub: YAML front matter (so the Hub lists it under robotics) and the layout."""
    meta = load_metadata(root)
    data_glob = "data/*/*.parquet" if not meta.codebase_version.startswith("v1.") else "data/*.parquet"
    all_tags = ["LeRobot", *[t for t in tags if t != "LeRobot"]]
    lines = [
        "---",
        f"license: {license}",
        "task_categories:",
        "- robotics",
        "tags:",
        *[f"- {t}" for t in all_tags],
        "configs:",
        "- config_name: default",
        "  data_files:",
        f"  - split: train\n    path: {data_glob}",
        "---",
        "",
        f"# {repo_id}",
        "",
        "A robot-learning dataset in the LeRobot format, readable with:",
        "",
        "```python",
        "from lerobot.common.datasets.lerobot_dataset import LeRobotDataset",
        f'dataset = LeRobotDataset("{repo_id}")',
        "```",
        "",
        f"- format: {meta.codebase_version}",
        f"- robot: {meta.robot_type or 'unknown'}",
        f"- episodes: {meta.total_episodes}, frames: {meta.total_frames}, fps: {meta.fps}",
        f"- cameras: {', '.join(meta.camera_keys) or 'none'}",
    ]
    if meta.tasks:
        lines += ["- tasks:", *[f"  - {t}" for t in list(meta.tasks.values())[:20]]]
    info = {k: v for k, v in meta.info.items() if k != "data_files"}
    lines += ["", "## meta/info.json", "", "```json", json.dumps(info, indent=2, default=str), "```", ""]
    return "\n".join(lines)


def push_dataset_to_hub(
    root: str | Path,
    repo_id: str,
    *,
    branch: str | None = None,
    tags: Sequence[str] = (),
    license: str = "apache-2.0",
    private: bool = False,
    push_videos: bool = True,
    token: str | None = None,
) -> str:
    """Upload a dataset folder, its card, and tag the commit with the format version (e.g. `v3.0`).

    The version tag is what loaders use to pick a revision they can read. Temporary files of an unfinished
    recording (`images/`, dot-files) are never uploaded. Returns the URL of the dataset repo.
    """
    from huggingface_hub import HfApi

    validate_repo_id(repo_id)
    root = Path(root)
    meta = load_metadata(root)
    if hub_offline():
        raise DatasetNotFoundError(
            "Cannot push to the Hugging Face Hub while HF_HUB_OFFLINE=1; unset it and run `huggingface-cli login`."
        )
    ignore = ["images/*", "images/**", ".*", "**/.*"]
    if not push_videos:
        ignore += ["videos/*", "videos/**"]
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    if branch:
        api.create_branch(repo_id, repo_type="dataset", branch=branch, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id, repo_type="dataset", folder_path=str(root), revision=branch, ignore_patterns=ignore
    )
    card = dataset_card(root, repo_id, tags=tags, license=license)
    api.upload_file(
        path_or_fileobj=card.encode(),
        path_in_repo="README.md",
        repo_id=repo_id,
        repo_type="dataset",
        revision=branch,
    )
    api.create_tag(repo_id, tag=meta.codebase_version, revision=branch, repo_type="dataset", exist_ok=True)
    return f"https://huggingface.co/datasets/{repo_id}"
