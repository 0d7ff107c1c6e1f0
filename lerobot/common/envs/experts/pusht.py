"""A scripted PushT expert: plan pushes on a private copy of the scene, then carry out the best one.

The task: a circular pusher (radius 15) must push a T-shaped block onto a fixed target pose (x, y, angle) until
95% of the target is covered. Contacts are frictionless (gym-pusht gives its shapes no friction) and the block
loses its velocity every physics step (space damping 0), so the block moves only while it is pushed, and only
along the contact normal.

Each decision samples contact points along the T's outline (its 8 edges, every few pixels), and for each one
simulates a straight push into the block, in a pymunk scene built like the env's (same shapes, same PD control
of the pusher), reading the block pose after every control step of the push. The candidate (point, number of
push steps) with the best error reduction per control step spent (travel there + push) wins. The pusher then
travels to the start of that push around the block (along an outline inflated by a safety margin, so as not to
touch it on the way), pushes, and plans again. The error is the mean distance between the T's 8 outline
vertices and their target positions: it is zero exactly when the block is on the target.

Privileged state used: the block pose and the pusher's position and velocity, read from the env's pymunk bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pymunk
import shapely.geometry as sg
from gym_pusht.envs.pusht import PushTEnv

from lerobot.common.envs.experts.base import Expert

AGENT_RADIUS = 15.0
# The T's outline in the block frame, counter-clockwise (pymunk's y-up frame): bar y in [0, 30], stem on top.
OUTLINE = np.array(
    [(-60, 0), (60, 0), (60, 30), (15, 30), (15, 120), (-15, 120), (-15, 30), (-60, 30)], float
)
CONTACT_SPACING = 6.0  # pixels between sampled contact points
PUSH_SPEED = 9.0  # pixels per control step the push target advances
MAX_PUSH_STEPS = 10
APPROACH_GAP = 3.0  # distance between the pusher and the block at the start of a push
TRAVEL_MARGIN = 10.0  # clearance kept around the block while travelling
TRAVEL_LOOKAHEAD = 50.0  # how far ahead along the path the pusher is aimed (its PD control lags)
TRAVEL_SPEED = 9.0  # observed pixels per control step with that lookahead, to estimate travel time
ARRIVED_DIST, ARRIVED_SPEED = 4.0, 40.0  # pixels, pixels per second
MAX_TRAVEL_STEPS = 60


def rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def outline_points(pose: np.ndarray) -> np.ndarray:
    """The 8 outline vertices of the T at pose (x, y, angle), world frame."""
    return OUTLINE @ rotation(pose[2]).T + pose[:2]


def pose_error(pose: np.ndarray, goal: np.ndarray) -> float:
    """Mean distance (pixels) between the outline vertices at `pose` and at `goal`."""
    return float(np.linalg.norm(outline_points(pose) - outline_points(goal), axis=1).mean())


def _contact_candidates() -> tuple[np.ndarray, np.ndarray]:
    """Contact points on the outline (block frame) and their outward normals, skipping the stretches near the two
    concave corners where the pusher cannot touch the edge without touching the other one."""
    points, normals = [], []
    for i in range(len(OUTLINE)):
        a, b = OUTLINE[i], OUTLINE[(i + 1) % len(OUTLINE)]
        length = np.linalg.norm(b - a)
        direction = (b - a) / length
        normal = np.array([direction[1], -direction[0]])
        for s in np.arange(CONTACT_SPACING / 2, length, CONTACT_SPACING):
            points.append(a + direction * s)
            normals.append(normal)
    return np.array(points), np.array(normals)


CONTACT_POINTS, CONTACT_NORMALS = _contact_candidates()


class PushSimulator:
    """A pymunk scene like the env's (walls, pusher, T, same PD control), to try pushes before making them."""

    def __init__(self, env: PushTEnv):
        self.k_p, self.k_v, self.dt = env.k_p, env.k_v, env.dt
        self.substeps = int(1 / (env.dt * env.control_hz))
        self.space = pymunk.Space()
        self.space.gravity = 0, 0
        self.space.damping = env.damping if env.damping is not None else 0.0
        walls = [((5, 506), (5, 5)), ((5, 5), (506, 5)), ((506, 5), (506, 506)), ((5, 506), (506, 506))]
        self.space.add(*(PushTEnv.add_segment(self.space, a, b, 2) for a, b in walls))
        self.agent = PushTEnv.add_circle(self.space, (256, 400), AGENT_RADIUS)
        self.block, _ = PushTEnv.add_tee(self.space, (256, 300), 0)
        if env.block_cog is not None:
            self.block.center_of_gravity = env.block_cog

    def push(
        self, block_pose: np.ndarray, start: np.ndarray, direction: np.ndarray, steps: int
    ) -> np.ndarray:
        """Block poses (steps, 3) after each control step of a push from `start` (pusher at rest) along
        `direction`, the target advancing PUSH_SPEED per step."""
        # Angle first: pymunk rotates a body about its centre of gravity, so setting the position first would
        # leave the body origin elsewhere than block_pose says.
        self.block.angle = float(block_pose[2])
        self.block.position = tuple(block_pose[:2])
        self.block.velocity, self.block.angular_velocity = (0, 0), 0.0
        self.agent.position = tuple(start)
        self.agent.velocity = (0, 0)
        self.space.reindex_shapes_for_body(self.block)
        self.space.reindex_shapes_for_body(self.agent)
        poses = np.empty((steps, 3))
        for k in range(steps):
            target = pymunk.Vec2d(*(start + direction * PUSH_SPEED * (k + 1)))
            for _ in range(self.substeps):
                acceleration = self.k_p * (target - self.agent.position) - self.k_v * self.agent.velocity
                self.agent.velocity += acceleration * self.dt
                self.space.step(self.dt)
            poses[k] = (*self.block.position, self.block.angle)
        return poses


@dataclass
class PushPlan:
    start: np.ndarray  # pusher position at the start of the push
    direction: np.ndarray  # unit push direction (into the block)
    steps: int
    path: sg.LineString  # travel path from where the pusher was to `start`


def travel_path(agent: np.ndarray, start: np.ndarray, block: sg.Polygon) -> sg.LineString:
    """A path to `start` that keeps clear of the block: straight when that is clear, else along the block's
    outline inflated by the margin, the shorter way round, then straight in to `start`."""
    keep_out = block.buffer(AGENT_RADIUS + 1.0)
    if not sg.LineString([agent, start]).intersects(keep_out):
        return sg.LineString([agent, start])
    ring = block.buffer(AGENT_RADIUS + TRAVEL_MARGIN, join_style=2).exterior
    a, b = ring.project(sg.Point(agent)), ring.project(sg.Point(start))
    forward = (b - a) % ring.length
    backward = (a - b) % ring.length
    if forward <= backward:
        distances = a + np.linspace(0, forward, max(2, int(forward / 5)))
    else:
        distances = a - np.linspace(0, backward, max(2, int(backward / 5)))
    points = [agent] + [ring.interpolate(d % ring.length).coords[0] for d in distances] + [start]
    return sg.LineString(points)


class PushTExpert(Expert):
    task = "PushT-v0"
    description = "Push the T-shaped block onto the T-shaped target."
    stop_on_success = True

    def __init__(self, env: Any):
        super().__init__(env)
        self.simulator = PushSimulator(self.sim)
        self.plan: PushPlan | None = None
        self._phase = "plan"
        self._step_in_phase = 0

    # ------------------------------------------------------------------ privileged state

    def block_pose(self) -> np.ndarray:
        return np.array([*self.sim.block.position, self.sim.block.angle])

    def environment_state(self) -> np.ndarray:
        # What obs_type environment_state_agent_pos returns: the keypoints of the T's two rectangles.
        return self.sim.get_keypoints(self.sim._block_shapes).flatten()

    # ------------------------------------------------------------------ planning

    def choose_push(self) -> PushPlan:
        pose, goal = self.block_pose(), np.asarray(self.sim.goal_pose, dtype=np.float64)
        agent = np.array(self.sim.agent.position)
        rot = rotation(pose[2])
        points = CONTACT_POINTS @ rot.T + pose[:2]
        normals = CONTACT_NORMALS @ rot.T
        block = sg.Polygon(outline_points(pose))
        error_now = pose_error(pose, goal)
        best, best_rate = None, -np.inf
        for point, normal in zip(points, normals, strict=True):
            start = point + normal * (AGENT_RADIUS + APPROACH_GAP)
            if block.distance(sg.Point(start)) < AGENT_RADIUS + 1.0:
                continue  # a concave corner: the pusher would touch the other edge first
            travel = np.linalg.norm(start - agent)  # optimistic; the path is computed for the winner only
            poses = self.simulator.push(pose, start, -normal, MAX_PUSH_STEPS)
            errors = np.array([pose_error(p, goal) for p in poses])
            k = int(np.argmin(errors))
            rate = (error_now - errors[k]) / (travel / TRAVEL_SPEED + k + 1)
            if np.any(start < AGENT_RADIUS + 6) or np.any(start > 506 - AGENT_RADIUS):
                rate -= 1e6  # the pusher does not fit between the block and a wall: only if nothing else fits
            if rate > best_rate:
                best_rate, best = rate, (start, -normal, k + 1)
        start, direction, steps = best  # never None: the convex corners always leave room for the pusher
        return PushPlan(start, direction, steps, travel_path(agent, start, block))

    # ------------------------------------------------------------------ acting

    def reset(self, seed: int, observation: dict[str, Any]) -> None:
        self.plan = None
        self._phase = "plan"
        self._step_in_phase = 0

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        agent = np.array(self.sim.agent.position)
        if self.plan is None:
            self.plan = self.choose_push()
            self._phase, self._step_in_phase = "travel", 0
        plan = self.plan
        if self._phase == "travel":
            arrived = (
                np.linalg.norm(agent - plan.start) < ARRIVED_DIST
                and self.sim.agent.velocity.length < ARRIVED_SPEED
            )
            if arrived:
                self._phase, self._step_in_phase = "push", 0
            elif self._step_in_phase >= MAX_TRAVEL_STEPS:
                self.plan = self.choose_push()  # blocked or lost: plan again from here
                self._phase, self._step_in_phase = "travel", 0
                plan = self.plan
        if self._phase == "travel":
            self._step_in_phase += 1
            along = plan.path.project(sg.Point(agent)) + TRAVEL_LOOKAHEAD
            target = np.array(plan.path.interpolate(min(along, plan.path.length)).coords[0])
            return np.clip(target, 0, 512).astype(np.float32)
        self._step_in_phase += 1
        target = plan.start + plan.direction * PUSH_SPEED * self._step_in_phase
        if self._step_in_phase >= plan.steps:
            self.plan = None  # plan the next push on the next step
        return np.clip(target, 0, 512).astype(np.float32)
