"""The evaluation-run page of visualize_dataset_html.py (`--eval-dir`): rollout videos with rewards and success.

    python lerobot/scripts/visualize_dataset_html.py --eval-dir outputs/eval/<run> [--serve 1]

Reads what lerobot/scripts/eval.py writes into its --out-dir: `eval_info.json` (`per_episode`: episode_ix,
sum_reward, max_reward, success, seed; `aggregated`: avg_sum_reward, pc_success, success_beta_posterior, ...)
and `videos/eval_episode_<i>.mp4` for the first rendered episodes.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from lerobot.common.datasets.errors import MissingFileError
from lerobot.scripts.visualize_dataset_html import (
    TRANSCODE_CHOICES,
    copy_static,
    encode_h264,
    json_script,
    link_or_copy,
    plays_everywhere,
    render,
    rows_html,
    staged_output,
    to_json,
)


class EvalInfoError(ValueError):
    """eval_info.json is missing a key or holds a value of the wrong type."""


def load_eval_info(eval_dir: Path) -> dict:
    """Read and check `<eval_dir>/eval_info.json` as written by lerobot/scripts/eval.py."""
    path = Path(eval_dir) / "eval_info.json"
    if not path.is_file():
        raise MissingFileError(
            f"No eval_info.json in {eval_dir}. Point --eval-dir at the --out-dir of lerobot/scripts/eval.py."
        )
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise EvalInfoError(f"{path} is not valid JSON ({e}).") from e
    if not isinstance(info, dict) or not isinstance(info.get("per_episode"), list):
        raise EvalInfoError(f"{path} must hold an object with a 'per_episode' list (eval.py's output).")
    if not isinstance(info.get("aggregated", {}), dict):
        raise EvalInfoError(f"{path}: 'aggregated' must be an object.")
    for i, ep in enumerate(info["per_episode"]):
        if not isinstance(ep, dict):
            raise EvalInfoError(f"{path}: per_episode[{i}] must be an object, got {ep!r}.")
        if not isinstance(ep.get("episode_ix"), int) or isinstance(ep.get("episode_ix"), bool):
            raise EvalInfoError(
                f"{path}: per_episode[{i}] needs an integer 'episode_ix', got {ep.get('episode_ix')!r}."
            )
        for key in ("sum_reward", "max_reward"):
            if not isinstance(ep.get(key), (int, float)) or isinstance(ep.get(key), bool):
                raise EvalInfoError(f"{path}: per_episode[{i}].{key} must be a number, got {ep.get(key)!r}.")
        if not isinstance(ep.get("success"), bool):
            raise EvalInfoError(
                f"{path}: per_episode[{i}].success must be true or false, got {ep.get('success')!r}."
            )
    return info


def aggregated_rows(aggregated: dict) -> str:
    rows = []
    for key, value in aggregated.items():
        if isinstance(value, dict) and {"mean", "low", "high"} <= set(value):
            mass = value.get("mass")
            text = f"{value['mean']:.1f}% ({value['low']:.1f}-{value['high']:.1f}%" + (
                f", {100 * mass:.0f}% credible interval)" if isinstance(mass, (int, float)) else ")"
            )
        elif isinstance(value, float):
            text = (
                f"{value:.4g}" + ("%" if key.startswith("pc_") else "") + (" s" if key.endswith("_s") else "")
            )
        else:
            text = json.dumps(to_json(value))
        rows.append((key, text))
    return rows_html(rows)


def build_eval_site(
    eval_dir: str | Path,
    output_dir: str | Path | None = None,
    *,
    transcode: str = "auto",
    force_override: bool = False,
) -> Path:
    """Write a page with the rollout videos of an eval.py run and each episode's reward and success."""
    eval_dir = Path(eval_dir)
    if transcode not in TRANSCODE_CHOICES:
        raise ValueError(f"transcode must be one of {TRANSCODE_CHOICES}, got {transcode!r}.")
    info = load_eval_info(eval_dir)
    out = Path(output_dir) if output_dir is not None else eval_dir / "html"
    cards, episodes = [], []
    with staged_output(out, force_override, protected=[eval_dir, eval_dir / "videos"]) as site:
        copy_static(site)
        for ep in info["per_episode"]:
            ix = ep["episode_ix"]
            source = eval_dir / "videos" / f"eval_episode_{ix}.mp4"
            video = None
            if source.is_file():
                video = f"videos/eval_episode_{ix}.mp4"
                if transcode == "never" or (transcode == "auto" and plays_everywhere(source)):
                    link_or_copy(source, site / video)
                else:
                    from lerobot.common.datasets.video_decoding import iter_video_frames
                    from lerobot.common.datasets.video_utils import get_video_info

                    fps = get_video_info(source)["video.fps"]
                    encode_h264((frame for _, frame in iter_video_frames(source)), site / video, fps)
            ok = ep["success"]
            media = (
                f'<video src="{video}" controls muted loop autoplay playsinline preload="auto"></video>'
                if video
                else '<div class="novideo">no video recorded</div>'
            )
            seed = ep.get("seed")
            cards.append(
                f'<div class="card" id="card-{ix}" data-success="{str(ok).lower()}">{media}'
                f'<h3><span>episode {ix}</span><span class="badge {"ok" if ok else "bad"}">'
                f"{'success' if ok else 'failure'}</span></h3>"
                f'<div class="muted">sum reward {ep["sum_reward"]:.3f} · max reward {ep["max_reward"]:.3f}'
                f" · seed {html.escape(str(seed))}</div></div>"
            )
            episodes.append(
                {k: ep.get(k) for k in ("episode_ix", "sum_reward", "max_reward", "success", "seed")}
            )
        agg = info.get("aggregated", {})
        n_success = sum(e["success"] for e in episodes)
        page = render(
            "eval.html",
            title=html.escape(f"eval {eval_dir.name}"),
            subtitle=html.escape(f"{eval_dir} - {n_success}/{len(episodes)} successes"),
            aggregated_rows=aggregated_rows(agg),
            cards="\n".join(cards),
            data=json_script({"episodes": episodes, "aggregated": agg}),
        )
        (site / "index.html").write_text(page, encoding="utf-8")
    return out
