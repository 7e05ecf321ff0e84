"""What the robot and the policy see, in rerun: live (`--view`) and afterwards (`lastr1 view PATH`).

    view = View.open(cfg, "web")            # or "spawn" (a local viewer window), or "run.rrd" (a file)
    rt = Runtime(cfg, env, sink=tee(sink, view), ...)
    ...
    view.close()

A `View` is a Sink: the loop hands it each step as it hands the learner's sink, and the step goes into a
bounded queue; a background thread turns it into rerun entities. The control thread therefore never waits
on rerun (encoding, sockets, disk): a full queue drops the step for the view and counts it (`dropped`).

Entities, on the `step` timeline (steps of this view, counted from 0) and `episode` (the episode number):

    camera/<name>            every camera image
    arm/state                proprio (per arm position, quaternion xyzw, gripper width)
    world/box                the safety box (static)
    world/ee/<arm>           end-effector position; world/path/<arm>: its path this episode
    world/plan/<arm>         the planned chunk as a ghost path from the end effector
    action/executed          the executed action (normalised)
    policy/latent_len        reasoning length chosen; policy/exit_prob: p(<latent_end>) at each candidate
    policy/latents           the latent chain projected to 2-D (a fixed random projection: comparable over time)
    policy/version           adapter version in use; policy/reload: a line at each hot reload
    critic/value             the value head on the executed prefix (where the policy has one)
    episode/intervention     1 when a person (or the scripted expert) chose the action
    episode/reward, episode/index, episode/outcome (a line when the episode ends)
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np

from lastr1.actor.episode import EpisodeSummary, Sink, StepRecord
from lastr1.errors import Lastr1Error, require

if TYPE_CHECKING:
    from lastr1.configs.schema import Config

log = logging.getLogger(__name__)

STEP_STREAMS = ("arm/state", "action/executed", "episode/intervention", "episode/reward", "episode/index")
POLICY_STREAMS = ("policy/latent_len", "policy/exit_prob", "policy/latents", "policy/version", "critic/value")
WEB_PORT = 9090
GRPC_PORT = 9876


class ViewError(Lastr1Error):
    pass


class Tee(Sink):
    """Every step to several sinks, in order."""

    def __init__(self, *sinks: Sink):
        self.sinks = sinks

    def episode_start(self, episode: int, seed: int | None, obs) -> None:
        for s in self.sinks:
            s.episode_start(episode, seed, obs)

    def step(self, s: StepRecord) -> None:
        for k in self.sinks:
            k.step(s)

    def episode_end(self, summary: EpisodeSummary) -> None:
        for s in self.sinks:
            s.episode_end(summary)


def tee(sink: Sink, view: View | None) -> Sink:
    return sink if view is None else Tee(sink, view)


class Layout:
    """Logs steps into a rerun recording in the layout above; used by the live view's thread and by replays."""

    def __init__(self, rec, *, box: tuple[list[float], list[float]] | None, step_m: float, n_arms: int = 1,
                 compress: bool = False):
        rr = require("rerun", "view", "the rerun view")
        self.rr, self.rec, self.step_m, self.n_arms, self.compress = rr, rec, step_m, n_arms, compress
        self.t = 0
        self.path: list[list[np.ndarray]] = [[] for _ in range(n_arms)]
        self.version: int | None = None
        self._proj: np.ndarray | None = None
        if box is not None:
            lo, hi = np.asarray(box[0], np.float32), np.asarray(box[1], np.float32)
            box3d = rr.Boxes3D(centers=[(lo + hi) / 2], half_sizes=[(hi - lo) / 2], colors=[(255, 80, 80)])
            rec.log("world/box", box3d, static=True)

    def episode_start(self, episode: int) -> None:
        self.path = [[] for _ in range(self.n_arms)]
        self.rec.log("episode/outcome", self.rr.TextLog(f"episode {episode} starts", level="INFO"))

    def step(self, episode: int, images: dict[str, np.ndarray], proprio, action, human: bool, reward: float,
             decision=None) -> None:
        rr, rec = self.rr, self.rec
        rec.set_time("step", sequence=self.t)
        rec.set_time("episode", sequence=int(episode))
        self.t += 1
        for name, img in images.items():
            im = rr.Image(np.asarray(img))
            rec.log(f"camera/{name}", im.compress(jpeg_quality=85) if self.compress else im)
        proprio = np.asarray(proprio, np.float32)
        action = np.asarray(action, np.float32)
        rec.log("arm/state", rr.Scalars(proprio))
        rec.log("action/executed", rr.Scalars(action))
        rec.log("episode/intervention", rr.Scalars([float(human)]))
        rec.log("episode/reward", rr.Scalars([float(reward)]))
        rec.log("episode/index", rr.Scalars([float(episode)]))
        ee = proprio.reshape(self.n_arms, -1)[:, :3]
        for a in range(self.n_arms):
            self.path[a].append(ee[a])
            rec.log(f"world/ee/{a}", rr.Points3D([ee[a]], radii=0.008, colors=[(40, 160, 255)]))
            if len(self.path[a]) > 1:
                rec.log(f"world/path/{a}", rr.LineStrips3D([np.stack(self.path[a])], colors=[(40, 160, 255)]))
        if decision is not None:
            self._decision(decision, ee)

    def _decision(self, d, ee: np.ndarray) -> None:
        rr, rec = self.rr, self.rec
        chunk = np.asarray(d.chunk, np.float32).reshape(len(d.chunk), self.n_arms, -1)
        for a in range(self.n_arms):
            # A normalised ±1 moves `step_m` per control step: the chunk's translations, summed, are its path.
            ghost = ee[a] + np.cumsum(chunk[:, a, :3] * self.step_m, axis=0)
            rec.log(f"world/plan/{a}", rr.LineStrips3D([np.vstack([ee[a], ghost])], colors=[(255, 200, 0, 120)]))
        rec.log("policy/latent_len", rr.Scalars([float(d.latent_len)]))
        probs = d.exit_probs if getattr(d, "exit_probs", None) is not None else np.zeros(0, np.float32)
        rec.log("policy/exit_prob", rr.BarChart(np.asarray(probs, np.float32)))
        rec.log("policy/latents", rr.Points2D(self._project(np.asarray(d.latents, np.float32)[: d.latent_len])))
        # A replayed rollout row keeps no version or value: what is not there is not drawn.
        if getattr(d, "value", None) is not None:
            rec.log("critic/value", rr.Scalars([float(d.value)]))
        if getattr(d, "version", None) is None:
            return
        rec.log("policy/version", rr.Scalars([float(d.version)]))
        if self.version is not None and d.version != self.version:
            rec.log("policy/reload", rr.TextLog(f"adapter v{self.version} -> v{d.version}", level="INFO"))
        self.version = int(d.version)

    def _project(self, z: np.ndarray) -> np.ndarray:
        if self._proj is None or self._proj.shape[0] != z.shape[1]:
            q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(z.shape[1], 2)))
            self._proj = q.astype(np.float32)
        return z @ self._proj

    def episode_end(self, episode: int, outcome: str, ret: float, steps: int) -> None:
        level = "INFO" if outcome == "success" else "WARN"
        self.rec.log("episode/outcome", self.rr.TextLog(f"episode {episode}: {outcome} after {steps} steps, "
                                                        f"return {ret:.2f}", level=level))


def recording(target: str | None, save: str | Path | None = None, *, app: str = "lastr1",
              web_port: int = WEB_PORT, grpc_port: int = GRPC_PORT):
    """A rerun recording streaming to `target` ("web": a web viewer served on `web_port`, "spawn": a local
    viewer window, a path ending in .rrd: that file, None: nowhere) and, with `save`, to that .rrd file too."""
    rr = require("rerun", "view", "the rerun view")
    rec = rr.RecordingStream(app)
    sinks: list[Any] = []
    url = None
    if target == "web":
        sinks.append(rr.GrpcServerSink(port=grpc_port))
        url = f"rerun+http://127.0.0.1:{grpc_port}/proxy"
    elif target == "spawn":
        rec.spawn(port=grpc_port, connect=False)
        sinks.append(rr.GrpcSink(f"rerun+http://127.0.0.1:{grpc_port}/proxy"))
    elif target is not None:
        if not str(target).endswith(".rrd"):
            raise ViewError(f"--view {target!r}: not a viewer or an .rrd file",
                            hint="use --view web, --view spawn or --view FILE.rrd")
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        sinks.append(rr.FileSink(str(target)))
    if save is not None:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        sinks.append(rr.FileSink(str(save)))
    rec.set_sinks(*sinks)
    if url is not None:
        rr.serve_web_viewer(web_port=web_port, open_browser=False, connect_to=url)
        log.warning("live view: open http://HOST:%d/?url=%s with HOST this machine's address (here: "
                    "http://127.0.0.1:%d/?url=%s)", web_port, quote(f"rerun+http://HOST:{grpc_port}/proxy", safe=""),
                    web_port, quote(url, safe=""))
    return rec


class View(Sink):
    """The live view as a Sink; see the module doc. Close it to flush what is queued."""

    def __init__(self, rec, layout: Layout, max_queue: int = 256):
        self.rec, self.layout = rec, layout
        self.q: queue.Queue[tuple | None] = queue.Queue(max_queue)
        self.dropped = 0
        self.logged = 0
        self.error: BaseException | None = None
        self._t = threading.Thread(target=self._run, name="rerun-view", daemon=True)
        self._t.start()

    @classmethod
    def open(cls, cfg: Config, target: str | None, save: str | Path | None = None, *, web_port: int = WEB_PORT,
             grpc_port: int = GRPC_PORT) -> View:
        rec = recording(target, save, app=f"lastr1-{cfg.task.name}", web_port=web_port, grpc_port=grpc_port)
        s = cfg.robot.safety
        layout = Layout(rec, box=(list(s.box_min), list(s.box_max)), step_m=s.max_translation_m,
                        n_arms=cfg.task.n_arms, compress=target not in ("web", "spawn"))
        return cls(rec, layout)

    def _put(self, item: tuple) -> None:
        try:
            self.q.put_nowait(item)
        except queue.Full:
            self.dropped += 1  # the viewer fell behind: the control loop never waits for it

    def episode_start(self, episode: int, seed: int | None, obs) -> None:
        self._put(("start", episode))

    def step(self, s: StepRecord) -> None:
        self._put(("step", s))

    def episode_end(self, summary: EpisodeSummary) -> None:
        self._put(("end", summary))

    def _run(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            try:
                kind, x = item
                if kind == "start":
                    self.layout.episode_start(x)
                elif kind == "step":
                    self.layout.step(x.episode, x.obs.images, x.obs.proprio, x.action, x.human, x.reward, x.decision)
                    self.logged += 1
                else:
                    self.layout.episode_end(x.episode, x.outcome, x.ret, x.steps)
            except Exception as e:  # noqa: BLE001 — a broken view must never stop the robot; said once
                if self.error is None:
                    log.error("the rerun view failed: %s (the robot goes on without it)", e)
                self.error = e

    def close(self) -> None:
        self.q.put(None)
        self._t.join(timeout=30.0)
        if self.dropped:
            log.warning("the view dropped %d steps it could not keep up with", self.dropped)
        self.rec.flush()
        self.rec.disconnect()


def replay(path: str | Path, target: str, *, web_port: int = WEB_PORT, grpc_port: int = GRPC_PORT,
           progress=None):
    """Show a recorded run in the live view's layout: an .rrd file, a folder holding view.rrd (`lastr1 eval`
    keeps one), a demonstration folder (`lastr1 record`), one episode of it, a LeRobot v3.0 dataset, or the
    learner's rollout buffer (<run_dir>/learner/rollout_buffer: every episode it holds).
    Returns the recording (the caller keeps a web viewer's alive while someone looks)."""
    from lastr1.configs.robot import SafetyConfig
    from lastr1.transport.demo_store import episode_paths, load_episode
    from lastr1.transport.lerobot_store import is_lerobot, load_demos

    path = Path(path)
    if not path.exists():
        raise ViewError(f"{path} does not exist", hint="pass a .rrd file, an eval output folder, a demo folder, a "
                        "LeRobot v3.0 dataset or <run_dir>/learner/rollout_buffer")
    rrd = path / "view.rrd" if (path / "view.rrd").is_file() else path
    if rrd.suffix == ".rrd":
        if not rrd.is_file():
            raise ViewError(f"no recording at {rrd}", hint="pass a .rrd file, an eval folder, or a demo folder")
        from rerun.chunk import RrdReader

        rec = recording(target, web_port=web_port, grpc_port=grpc_port)
        rec.send_chunks(RrdReader(str(rrd)).stream())
        return rec
    if (path / "gid.npy").is_file():
        return _replay_rollouts(path, target, web_port=web_port, grpc_port=grpc_port, progress=progress)
    if (path / "meta.json").is_file() and not is_lerobot(path):
        episodes = [load_episode(path)]
    elif is_lerobot(path) or episode_paths(path):
        episodes = load_demos(path) if is_lerobot(path) else [load_episode(p) for p in episode_paths(path)]
    else:
        raise ViewError(f"{path} holds no recording, episode or demonstrations",
                        hint="pass a .rrd file, an eval output folder, a demo folder or a LeRobot v3.0 dataset")
    rec = recording(target, app="lastr1-replay", web_port=web_port, grpc_port=grpc_port)
    s = SafetyConfig()
    n_arms = max(1, int(episodes[0].proprio.shape[1]) // 8)
    layout = Layout(rec, box=(s.box_min, s.box_max), step_m=s.max_translation_m, n_arms=n_arms,
                    compress=target not in ("web", "spawn"))
    for n, ep in enumerate(progress(episodes) if progress else episodes):
        layout.episode_start(n)
        for t in range(len(ep)):
            layout.step(n, {c: ep.images[c][t] for c in ep.images}, ep.proprio[t], ep.action[t],
                        bool(ep.intervention[t]), float(ep.reward[t]))
        layout.episode_end(n, "success" if ep.meta.get("success") else "failure", float(np.sum(ep.reward)), len(ep))
    return rec


def _replay_rollouts(path: Path, target: str, *, web_port: int, grpc_port: int, progress=None):
    """The learner's rollout buffer (learner/replay.py's files), read-only while the learner may still run:
    each episode is a chain of rows linked by `next`; a row's action is the chunk, its first action executed."""
    import json
    from types import SimpleNamespace

    from lastr1.configs.robot import SafetyConfig

    meta = json.loads((path / "meta.json").read_text())
    cap, committed = int(meta["capacity"]), int(meta["total"])
    a = {name: np.load(path / (name.replace("/", "__") + ".npy"), mmap_mode="r")
         for name in [*meta["spec"], "gid", "next", "obs_only"]}
    n = min(committed, cap)
    gid, nxt = np.asarray(a["gid"][:n]), np.asarray(a["next"][:n])
    valid = (gid >= max(0, committed - cap)) & (gid < committed)
    rows = valid & ~np.asarray(a["obs_only"][:n], bool)
    linked = set(nxt[valid & (nxt >= 0)].tolist())
    starts = sorted(int(g) for g in gid[rows] if int(g) not in linked)
    cameras = [k[4:] for k in meta["spec"] if k.startswith("img/")]
    rec = recording(target, app="lastr1-rollouts", web_port=web_port, grpc_port=grpc_port)
    s = SafetyConfig()
    layout = Layout(rec, box=(s.box_min, s.box_max), step_m=s.max_translation_m,
                    n_arms=max(1, int(a["proprio"].shape[-1]) // 8), compress=target not in ("web", "spawn"))
    for ep, g in enumerate(progress(starts) if progress else starts):
        layout.episode_start(ep)
        ret, steps, end = 0.0, 0, "cut off (evicted or in progress)"
        while g >= 0 and committed - cap <= g < committed:
            p = g % cap
            if a["obs_only"][p]:
                break
            d = SimpleNamespace(chunk=a["action"][p], latents=a["latents"][p], latent_len=int(a["latent_len"][p]))
            layout.step(ep, {c: a[f"img/{c}"][p] for c in cameras}, a["proprio"][p], a["action"][p][0],
                        bool(a["intervention"][p]), float(a["reward"][p]), d)
            ret, steps = ret + float(a["reward"][p]), steps + 1
            if a["terminated"][p] or a["truncated"][p]:
                end = "terminated" if a["terminated"][p] else "truncated"
                break
            g = int(a["next"][p])
        layout.episode_end(ep, end, ret, steps)
    return rec
