"""LeRobot's own code against our LeRobot v3.0 files, both ways. Prints one JSON line; exits 1 if a check fails.

1. Our demonstrations → `export_lerobot` (v3.0) → LeRobot's `LeRobotDataset` loads the folder; its frames'
   actions, states and intervention flags must equal ours exactly, its episode bounds and tasks too.
2. LeRobot's own writer (`LeRobotDataset.create` / `add_frame` / `save_episode` / `finalize`) records a small
   dataset → `lastr1 warmup --dataset <it>` warms up the tiny policy on it (with the config's field map).

LeRobot ≥ 0.4 pins a torch other than ours, so it runs in its own environment: `--python` names one, else one is
made at `--env` (a venv that sees this Python's site-packages, so our torch, with lerobot 0.4.4 installed
`--no-deps` and its dataset dependencies one by one). The only torchvision wheels the package index has are
CUDA builds that fail to import next to the CPU torch; LeRobot's dataset code imports torchvision only for
`transforms.ToTensor` and video decoding, neither of which these checks use, so where `import torchvision`
fails the environment gets a stand-in with just ToTensor (LeRobot's video decoding is not exercised here; our
own reader checks the mp4 frames).

    python benchmarks/lerobot_check.py [--python PY] [--env /tmp/lastr1-lerobot] [--setup-only]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

DEPS = ["datasets>=4,<5", "huggingface-hub>=0.34.2,<0.36", "av>=15,<16", "jsonlines>=4,<5", "draccus==0.10.0",
        "pandas", "deepdiff>=7,<9", "termcolor>=2.4", "packaging>=24.2,<26", "einops>=0.8,<0.9"]

TORCHVISION_STAND_IN = '''"""A stand-in for torchvision: ToTensor, for LeRobot's dataset code."""
from . import transforms  # noqa: F401
'''
TRANSFORMS_STAND_IN = '''import numpy as np
import torch


class ToTensor:
    def __call__(self, img):
        a = np.asarray(img)
        t = torch.from_numpy(a.copy()).permute(2, 0, 1)
        return t.float().div(255) if t.dtype == torch.uint8 else t.float()
'''

READ = textwrap.dedent('''
    import json, sys
    import numpy as np
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    root, want = sys.argv[1], np.load(sys.argv[2])
    ds = LeRobotDataset("local/lastr1", root=root)
    hf = ds.hf_dataset.with_format("numpy")
    out = dict(episodes=ds.num_episodes, frames=ds.num_frames, fps=ds.fps,
               tasks=sorted(ds.meta.tasks.index.tolist()),
               bounds=[[int(e["dataset_from_index"]), int(e["dataset_to_index"])] for e in ds.meta.episodes],
               action=bool(np.array_equal(np.stack(hf["action"]), want["action"])),
               state=bool(np.array_equal(np.stack(hf["observation.state"]), want["state"])),
               flags=bool(np.array_equal(np.asarray(hf["complementary_info.is_intervention"]).reshape(-1),
                                         want["flags"])),
               camera_keys=ds.meta.camera_keys)
    print(json.dumps(out))
''')

WRITE = textwrap.dedent('''
    import sys
    import numpy as np
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    root = sys.argv[1]
    image = {"dtype": "image", "shape": (128, 128, 3), "names": ["height", "width", "channels"]}
    features = {
        "observation.state": {"dtype": "float32", "shape": (8,), "names": None},
        "action": {"dtype": "float32", "shape": (7,), "names": None},
        "observation.images.front": image, "observation.images.wrist": image,
    }
    ds = LeRobotDataset.create("local/recorded", fps=10, features=features, root=root, robot_type="franka",
                               use_videos=False)
    rng = np.random.default_rng(0)
    for ep in range(2):
        for t in range(12):
            ds.add_frame({"observation.state": rng.normal(size=8).astype(np.float32),
                          "action": rng.uniform(-1, 1, 7).astype(np.float32),
                          "observation.images.front": rng.integers(0, 255, (128, 128, 3), dtype=np.uint8),
                          "observation.images.wrist": rng.integers(0, 255, (128, 128, 3), dtype=np.uint8),
                          "task": "insert the hex peg"})
        ds.save_episode()
    ds.finalize()
''')


def ensure_env(env: Path) -> Path:
    py = env / "bin" / "python"
    if not py.exists():
        base = Path(sys.base_prefix) / "bin" / "python3"
        subprocess.run([str(base), "-m", "venv", "--system-site-packages", str(env)], check=True)
        pip = [str(py), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "--no-deps", "lerobot==0.4.4"], check=True)
        subprocess.run([*pip, *DEPS], check=True)
    if subprocess.run([str(py), "-c", "import torchvision"], capture_output=True).returncode:
        site = subprocess.run([str(py), "-c", "import site; print(site.getsitepackages()[0])"], check=True,
                              capture_output=True, text=True).stdout.strip()
        tv = Path(site) / "torchvision"
        (tv / "transforms").mkdir(parents=True, exist_ok=True)
        (tv / "__init__.py").write_text(TORCHVISION_STAND_IN)
        (tv / "transforms" / "__init__.py").write_text(TRANSFORMS_STAND_IN)
    return py


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default=os.environ.get("LASTR1_LEROBOT_PYTHON"), help="a Python with lerobot")
    ap.add_argument("--env", default="/tmp/lastr1-lerobot", help="where to make one when --python is not given")
    ap.add_argument("--setup-only", action="store_true", help="make the environment, print its Python, stop")
    args = ap.parse_args()
    if args.setup_only:
        print(ensure_env(Path(args.env)))
        return 0
    import numpy as np

    from lastr1 import configs
    from lastr1.actor.lerobot_export import export_lerobot
    from lastr1.policy.warmup import warmup
    from lastr1.transport.demo_store import EpisodeWriter, load_dataset

    t0 = time.monotonic()
    py = Path(args.python) if args.python else ensure_env(Path(args.env))
    env_s = time.monotonic() - t0
    tmp = Path(tempfile.mkdtemp(prefix="lastr1-lerobot-"))
    rng = np.random.default_rng(1)
    for n, T in enumerate((6, 9)):
        w = EpisodeWriter(tmp / "demos", "t", f"task {n}", fps=10)
        for t in range(T):
            w.add({"front": rng.integers(0, 255, (32, 32, 3))}, rng.normal(size=8), rng.uniform(-1, 1, 7),
                  -0.05, intervention=(t + n) % 2 == 0)
        w.finish(True)
    ours = load_dataset(tmp / "demos")
    out = export_lerobot(tmp / "demos", tmp / "export")
    np.savez(tmp / "want.npz", action=np.concatenate([e.action for e in ours]),
             state=np.concatenate([e.proprio for e in ours]),
             flags=np.concatenate([e.intervention for e in ours]))
    read = subprocess.run([str(py), "-c", READ, str(out), str(tmp / "want.npz")], capture_output=True, text=True)
    if read.returncode:
        print(read.stderr[-3000:], file=sys.stderr)
        return 1
    got = json.loads(read.stdout.strip().splitlines()[-1])
    ok_read = (got["episodes"] == 2 and got["frames"] == 15 and got["bounds"] == [[0, 6], [6, 15]]
               and got["tasks"] == ["task 0", "task 1"] and got["action"] and got["state"] and got["flags"])

    rec = tmp / "recorded"
    write = subprocess.run([str(py), "-c", WRITE, str(rec)], capture_output=True, text=True)
    if write.returncode:
        print(write.stderr[-3000:], file=sys.stderr)
        return 1
    cfg = configs.load("sim_insert_hex", ["--run_dir", str(tmp / "run")])
    cfg.policy = configs.load("policy/tiny_cpu").policy
    cfg.policy.warmup.steps = 20
    res = warmup(cfg, dataset=rec, out=tmp / "run" / "warm", no_latent_loss=True, progress=False)
    ok_warm = res.n_samples == 24 and (res.checkpoint / "policy.json").is_file()
    print(json.dumps(dict(lerobot_reads_our_v30=ok_read, **{f"lerobot_{k}": v for k, v in got.items()},
                          lastr1_warmup_on_lerobot_recording=ok_warm, warmup_samples=res.n_samples,
                          warmup_final_loss=round(res.final_loss, 4), env_setup_s=round(env_s, 1),
                          seconds=round(time.monotonic() - t0, 1))))
    return 0 if ok_read and ok_warm else 1


if __name__ == "__main__":
    sys.exit(main())
