"""Calibration against a simulated MuJoCo scene with a rendered ChArUco board and cameras whose poses are known,
and the SpaceMouse routine against a fake HID device under pyspacemouse (the hidapi C library easyhid calls)."""

import collections
import os
import struct
import time

import numpy as np
import pytest
import yaml

os.environ.setdefault("MUJOCO_GL", "egl")
mujoco = pytest.importorskip("mujoco")
cv = pytest.importorskip("cv2")

from lastr1 import configs  # noqa: E402
from lastr1.calibration.charuco import board_image, make_board  # noqa: E402
from lastr1.calibration.common import CalibrationError, angle_deg, from_rt, inv, matrix_to_quat, pose  # noqa: E402
from lastr1.calibration.handeye import collect_views, load_hand_eye, save_hand_eye, solve_hand_eye, wait_settled  # noqa: E402
from lastr1.calibration.intrinsics import (  # noqa: E402
    calibrate_from_images,
    intrinsics_from_device,
    load_intrinsics,
    save_intrinsics,
)
from lastr1.calibration.workspace import box_from_points, record_corners, save_workspace, write_into  # noqa: E402
from lastr1.cli import main  # noqa: E402
from lastr1.configs.calibration import CharucoConfig  # noqa: E402
from lastr1.robot.arm import Arm, ArmState  # noqa: E402
from lastr1.robot.camera import Camera, Frame  # noqa: E402

W, H, FOVY = 640, 480, 55.0
FY_TRUE = (H / 2) / np.tan(np.radians(FOVY / 2))  # MuJoCo's fovy is vertical; square pixels
K_TRUE = np.array([[FY_TRUE, 0, W / 2 - 0.5], [0, FY_TRUE, H / 2 - 0.5], [0, 0, 1]])
BOARD = CharucoConfig(squares_x=7, squares_y=5, square_m=0.04, marker_m=0.03, dictionary="DICT_5X5_100")
MJ_TO_CV = np.diag([1.0, -1.0, -1.0])  # a MuJoCo camera looks along −z with y up; OpenCV's along +z, y down
FAR = np.array([10.0, 0.0, 0.0])  # the eye-to-hand rig stands here, out of the wrist camera's sight
WRIST_POS, WRIST_RPY = np.array([0.05, -0.03, 0.06]), (np.pi + 0.15, -0.1, 0.3)
FRONT_POS = FAR + np.array([0.6, 0.1, 0.45])
HOLDER_POS, HOLDER_RPY = np.array([0.02, 0.01, 0.05]), (0.2, -0.1, 0.4)


def rpy(r, p, y):
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return (np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]]) @ np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
            @ np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]]))


def wxyz(R):
    x, y, z, w = matrix_to_quat(R)
    return f"{w} {x} {y} {z}"


def look_at(pos, target, roll=0.0):
    """Rotation of a MuJoCo camera at `pos` looking at `target`, rolled about its view axis."""
    f = (target - pos) / np.linalg.norm(target - pos)
    up = np.array([0, 0, 1.0]) if abs(f[2]) < 0.95 else np.array([0, 1.0, 0])
    x = np.cross(f, up)
    x /= np.linalg.norm(x)
    R = np.stack([x, np.cross(x, f), -f], 1)
    return R @ rpy(0, 0, roll)


FRONT_R = look_at(FRONT_POS, FAR + np.array([0, 0, 0.1]))
T_HAND_CAM = from_rt(rpy(*WRIST_RPY) @ MJ_TO_CV, WRIST_POS)  # ground truth, eye-in-hand
T_BASE_FRONT = from_rt(FRONT_R @ MJ_TO_CV, FRONT_POS)  # ground truth, eye-to-hand


def offscreen_renderer(model):
    """A MuJoCo renderer, or a skip where this machine cannot render headless. Only the renderer's OpenGL
    start-up is excused (mujoco raises ImportError or RuntimeError without an EGL device or context, FatalError
    when the GL context is unusable): a failure anywhere else in the scene is a bug and fails the tests."""
    try:
        return mujoco.Renderer(model, H, W)
    except (ImportError, RuntimeError, mujoco.FatalError) as e:
        pytest.skip(f"MuJoCo offscreen rendering unavailable: {e}")


class Sim:
    """A board on the table, a mocap "hand" carrying the wrist camera, a mocap "holder" carrying a second board
    in front of a fixed front camera."""

    def __init__(self, tmp):
        board = make_board(BOARD)
        cv.imwrite(str(tmp / "board.png"), np.stack([board_image(board, 160)] * 3, -1))
        hw, hh = (BOARD.squares_x + 1) * BOARD.square_m / 2, (BOARD.squares_y + 1) * BOARD.square_m / 2
        xml = f"""
<mujoco>
 <compiler texturedir="{tmp}"/>
 <visual><global offwidth="{W}" offheight="{H}"/><quality shadowsize="0"/>
  <headlight ambient="1 1 1" diffuse="0 0 0" specular="0 0 0"/></visual>
 <asset><texture name="board" type="2d" file="board.png"/>
  <material name="board" texture="board" specular="0" shininess="0"/></asset>
 <worldbody>
  <geom type="plane" size="{hw} {hh} 0.01" material="board"/>
  <body name="hand" mocap="true" pos="0 0 0.5">
   <camera name="wrist" pos="{' '.join(map(str, WRIST_POS))}" quat="{wxyz(rpy(*WRIST_RPY))}" fovy="{FOVY}"/>
  </body>
  <body name="holder" mocap="true" pos="{' '.join(map(str, FAR))}">
   <geom type="plane" size="{hw} {hh} 0.01" material="board" pos="{' '.join(map(str, HOLDER_POS))}"
         quat="{wxyz(rpy(*HOLDER_RPY))}"/>
  </body>
  <camera name="front" pos="{' '.join(map(str, FRONT_POS))}" quat="{wxyz(FRONT_R)}" fovy="{FOVY}"/>
 </worldbody>
</mujoco>"""
        self.board = board
        self.m = mujoco.MjModel.from_xml_string(xml)
        self.d = mujoco.MjData(self.m)
        self.r = offscreen_renderer(self.m)

    def set_body(self, name, T):
        i = self.m.body(name).mocapid[0]
        self.d.mocap_pos[i] = T[:3, 3]
        x, y, z, w = matrix_to_quat(T[:3, :3])
        self.d.mocap_quat[i] = [w, x, y, z]
        mujoco.mj_forward(self.m, self.d)

    def get_body(self, name):
        i = self.m.body(name).mocapid[0]
        w, x, y, z = self.d.mocap_quat[i]
        return pose(self.d.mocap_pos[i].copy(), [x, y, z, w])

    def render(self, camera):
        self.r.update_scene(self.d, camera)
        return self.r.render().copy()


class SimArm(Arm):
    """An Arm whose hand is a MuJoCo mocap body: move_to puts it there, state reads it back."""

    def __init__(self, sim, body="hand"):
        self.sim, self.body, self.moves = sim, body, 0

    def connect(self):
        pass

    def close(self):
        pass

    def state(self):
        T = self.sim.get_body(self.body)
        return [ArmState(T[:3, 3], matrix_to_quat(T[:3, :3]), np.zeros(7), 0.04, np.zeros(6))]

    def move_to(self, positions, quaternions, grippers):
        self.moves += 1
        self.sim.set_body(self.body, pose(positions[0], quaternions[0]))

    def stop(self):
        pass

    def recover(self):
        pass

    def reset(self, rng=None):
        pass


class SimCamera(Camera):
    def __init__(self, sim, name):
        self.sim, self.name, self.n = sim, name, 0

    def connect(self):
        pass

    def close(self):
        pass

    def read_latest(self, max_age_ms=None):
        self.n += 1
        return Frame(self.sim.render(self.name), time.time() * 1000, self.n, time.monotonic())


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return Sim(tmp_path_factory.mktemp("scene"))


def wrist_hand_poses(n, seed=1, max_tilt_deg=35.0, roll=0.5):
    """Hand poses (base frame) that put the wrist camera 0.35–0.5 m from the board, looking at it."""
    rng = np.random.default_rng(seed)
    T_hand_mjcam = from_rt(rpy(*WRIST_RPY), WRIST_POS)
    out = []
    for _ in range(n):
        th, ph, rad = np.radians(rng.uniform(0, max_tilt_deg)), rng.uniform(0, 2 * np.pi), rng.uniform(0.35, 0.5)
        target = np.array([*rng.uniform(-0.03, 0.03, 2), 0.0])
        pos = target + rad * np.array([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)])
        out.append(from_rt(look_at(pos, target, rng.uniform(-roll, roll)), pos) @ inv(T_hand_mjcam))
    return out


def as_pose_list(Ts):
    return [[*T[:3, 3], *matrix_to_quat(T[:3, :3])] for T in Ts]


def no_wait(arm, xyz, index):
    wait_settled(arm, xyz, index, still_s=0.0, sleep=lambda s: None)


@pytest.fixture(scope="module")
def wrist_views(sim):
    """Views collected the way `lastr1 calibrate handeye` does: collect_views over the Arm/Camera interfaces."""
    arm, cam = SimArm(sim), SimCamera(sim, "wrist")
    hand, images = collect_views(arm, cam, as_pose_list(wrist_hand_poses(12)), say=lambda s: None,
                                 settle=no_wait)
    assert arm.moves == 12 and cam.n == 12
    return hand, images


def err(X, Xt):
    return np.linalg.norm(X[:3, 3] - Xt[:3, 3]) * 1000, angle_deg(X[:3, :3].T @ Xt[:3, :3])


# --- intrinsics ------------------------------------------------------------------------------------------------


def test_intrinsics_from_charuco_within_1_percent(sim, wrist_views, tmp_path):
    res = calibrate_from_images(wrist_views[1], sim.board, min_views=10, progress=False)
    K = np.array(res["K"])
    assert abs(K[0, 0] / FY_TRUE - 1) < 0.01 and abs(K[1, 1] / FY_TRUE - 1) < 0.01
    assert abs(K[0, 2] - K_TRUE[0, 2]) < 0.02 * W and abs(K[1, 2] - K_TRUE[1, 2]) < 0.02 * H
    assert 0 < res["reprojection_error_px"] < 0.5 and res["views_used"] == 12
    K2, dist, size = load_intrinsics(save_intrinsics(tmp_path / "i.yaml", res, "wrist", "0123"))
    np.testing.assert_allclose(K2, K)
    assert size == (W, H) and yaml.safe_load((tmp_path / "i.yaml").read_text())["serial"] == "0123"


def test_intrinsics_refuses_too_few_views_naming_missing_boards(sim, wrist_views):
    blank = [np.full((H, W, 3), 90, np.uint8)] * 3
    with pytest.raises(CalibrationError, match=r"board not found in 3 of 9 images \(#6, #7, #8\); 6 usable"):
        calibrate_from_images(list(wrist_views[1][:6]) + blank, sim.board, min_views=10, progress=False)


def test_factory_intrinsics_through_pyrealsense2_software_device():
    rs = pytest.importorskip("pyrealsense2")
    dev = rs.software_device()
    sensor = dev.add_sensor("RGB Camera")
    intr = rs.intrinsics()
    intr.width, intr.height, intr.fx, intr.fy, intr.ppx, intr.ppy = 640, 480, 610.5, 611.25, 321.1, 243.7
    intr.model, intr.coeffs = rs.distortion.inverse_brown_conrady, [0.1, -0.2, 0.001, 0.002, 0.05]
    for w, h, fps in [(640, 480, 30), (1280, 720, 15)]:
        vs = rs.video_stream()
        vs.type, vs.index, vs.uid, vs.width, vs.height, vs.fps, vs.bpp = rs.stream.color, 0, w, w, h, fps, 3
        vs.fmt, vs.intrinsics = rs.format.rgb8, intr
        sensor.add_video_stream(vs)
    dev.register_info(rs.camera_info.serial_number, "213622070000")
    res = intrinsics_from_device(dev, 640, 480, 30)
    assert res["serial"] == "213622070000" and res["model"] == "inverse_brown_conrady"
    np.testing.assert_allclose(res["K"], [[610.5, 0, 321.1], [0, 611.25, 243.7], [0, 0, 1]], rtol=1e-6)
    np.testing.assert_allclose(res["dist"], [0.1, -0.2, 0.001, 0.002, 0.05], rtol=1e-6)
    with pytest.raises(CalibrationError, match="(?s)no colour stream 848x480@30.*1280x720@15, 640x480@30"):
        intrinsics_from_device(dev, 848, 480, 30)


# --- hand-eye ----------------------------------------------------------------------------------------------------


def test_eye_in_hand_within_2mm_and_half_degree(sim, wrist_views, tmp_path):
    hand, images = wrist_views
    res = solve_hand_eye(hand, images, K_TRUE, None, sim.board, "hand")
    e_mm, e_deg = err(res.T, T_HAND_CAM)
    assert e_mm < 2.0 and e_deg < 0.5, (e_mm, e_deg)
    assert res.residual_mm < 1.0 and res.views_used == 12
    path = save_hand_eye(tmp_path / "he.yaml", res, "wrist", "0123", "172.16.0.2")
    mount, T = load_hand_eye(path)
    assert mount == "hand" and np.allclose(T, res.T, atol=1e-6)
    saved = yaml.safe_load(path.read_text())
    assert saved["serial"] == "0123" and saved["created"] and saved["frame"] == "T_hand_cam"


def test_eye_to_hand_within_2mm_and_half_degree(sim):
    rng = np.random.default_rng(2)
    G = from_rt(rpy(*HOLDER_RPY), HOLDER_POS)  # the board in the hand
    arm, cam, poses = SimArm(sim, "holder"), SimCamera(sim, "front"), []
    for _ in range(10):
        c = FAR + np.array([0, 0, 0.1]) + rng.uniform(-0.05, 0.05, 3)
        B = look_at(c, 2 * c - FRONT_POS) @ rpy(*rng.uniform(-0.5, 0.5, 2), rng.uniform(-0.6, 0.6))
        poses.append(from_rt(B, c) @ inv(G))  # board faces the camera, tilted
    hand, images = collect_views(arm, cam, as_pose_list(poses), say=lambda s: None, settle=no_wait)
    res = solve_hand_eye(hand, images, K_TRUE, None, sim.board, "world")
    e_mm, e_deg = err(res.T, T_BASE_FRONT)
    assert e_mm < 2.0 and e_deg < 0.5, (e_mm, e_deg)


def test_hand_eye_refuses_too_few_views(sim, wrist_views):
    hand, images = wrist_views
    with pytest.raises(CalibrationError, match="too few views: 5 usable, at least 8 needed"):
        solve_hand_eye(hand[:5], images[:5], K_TRUE, None, sim.board, "hand")


def test_hand_eye_refuses_when_board_not_found(sim, wrist_views):
    hand, images = list(wrist_views[0][:10]), list(wrist_views[1][:10])
    away = hand[0] @ from_rt(rpy(np.pi, 0, 0), [0, 0, 0])  # wrist camera turned to the ceiling
    sim.set_body("hand", away)
    ceiling = sim.render("wrist")
    for i in (2, 5, 7):
        hand[i], images[i] = away, ceiling
    with pytest.raises(CalibrationError, match=r"board not found in 3 of 10 images \(#2, #5, #7\); 7 usable"):
        solve_hand_eye(hand, images, K_TRUE, None, sim.board, "hand")


def test_hand_eye_refuses_too_little_rotation(sim):
    # Pure translations: the camera looks straight down from 8 places.
    base = wrist_hand_poses(1, seed=3, max_tilt_deg=0, roll=0)[0]
    hand, images = [], []
    for dx, dy, dz in np.random.default_rng(4).uniform(-0.05, 0.05, (8, 3)):
        T = base.copy()
        T[:3, 3] += [dx, dy, dz]
        sim.set_body("hand", T)
        hand.append(T)
        images.append(sim.render("wrist"))
    with pytest.raises(CalibrationError, match=r"too little rotation: the hand turned at most 0\.0°"):
        solve_hand_eye(hand, images, K_TRUE, None, sim.board, "hand")
    # Rotations about one axis only (spinning about the view axis) are refused too.
    T_hand_mjcam = from_rt(rpy(*WRIST_RPY), WRIST_POS)
    hand, images = [], []
    for a in np.radians([-60, -40, -20, 0, 20, 40, 60, 80]):
        T = from_rt(look_at(np.array([0, 0, 0.45]), np.zeros(3), a), [0, 0, 0.45]) @ inv(T_hand_mjcam)
        sim.set_body("hand", T)
        hand.append(T)
        images.append(sim.render("wrist"))
    with pytest.raises(CalibrationError, match="about the same axis"):
        solve_hand_eye(hand, images, K_TRUE, None, sim.board, "hand")


def test_hand_eye_refuses_large_residual(sim, wrist_views):
    rng = np.random.default_rng(5)
    hand = [T @ from_rt(rpy(*rng.normal(0, 0.03, 3)), rng.normal(0, 0.01, 3)) for T in wrist_views[0]]
    with pytest.raises(CalibrationError, match=r"hand-eye residual .* over the limit \(5.0 mm / 1.0°\); not saved"):
        solve_hand_eye(hand, wrist_views[1], K_TRUE, None, sim.board, "hand")


def test_cli_handeye_offline_from_saved_views(sim, wrist_views, tmp_path, capsys):
    from lastr1.calibration.cli import _save_views

    _save_views(tmp_path / "views", *wrist_views)
    res = dict(width=W, height=H, K=K_TRUE.tolist(), dist=[0.0] * 5, model="opencv", source="charuco")
    save_intrinsics(tmp_path / "wrist_K.yaml", res, "wrist")
    cfg = tmp_path / "lab.yaml"
    cfg.write_text(yaml.safe_dump({
        "base": ["sim_insert_hex"],
        "robot": {"cameras": [{"name": "wrist", "serial": "0123", "intrinsics_file": str(tmp_path / "wrist_K.yaml")}]},
        "calibration": {"board": vars(BOARD), "out_dir": str(tmp_path / "calib")},
    }))
    assert main(["calibrate", "handeye", "--config", str(cfg), "--camera", "wrist",
                 "--views-dir", str(tmp_path / "views")]) == 0
    assert "T_hand_cam" in capsys.readouterr().out
    mount, T = load_hand_eye(tmp_path / "calib" / "handeye_wrist.yaml")
    assert mount == "hand" and err(T, T_HAND_CAM)[0] < 2.0


def test_cli_intrinsics_from_images(sim, wrist_views, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(wrist_views[1]):
        cv.imwrite(str(folder / f"{i:02d}.png"), cv.cvtColor(img, cv.COLOR_RGB2BGR))
    board = yaml.safe_dump(vars(BOARD), default_flow_style=True)
    args = ["calibrate", "intrinsics", "--config", "sim_insert_hex", "--images", str(folder),
            "--calibration.out_dir", str(tmp_path), "--calibration.board", board]
    assert main(args) == 2 and "name it with --camera" in capsys.readouterr().err
    assert main(args + ["--camera", "wrist"]) == 0
    out = capsys.readouterr().out
    assert "reprojection error" in out and "set robot.cameras[1].intrinsics_file" in out
    K, _, _ = load_intrinsics(tmp_path / "intrinsics_wrist.yaml")
    assert abs(K[0, 0] / FY_TRUE - 1) < 0.01


# --- workspace ---------------------------------------------------------------------------------------------------


def test_workspace_from_guided_corners_saved_for_the_task_config(sim, tmp_path):
    arm = SimArm(sim)
    corners = iter([[0.3, -0.2, 0.05], [0.62, 0.25, 0.4], [0.5, 0.0, 0.2]])

    def operator(prompt):  # moves the arm to the next corner, then presses Enter; q at the end
        nxt = next(corners, None)
        if nxt is None:
            return "q"
        arm.move_to(np.array([nxt]), np.array([[1.0, 0, 0, 0]]), np.zeros(1))
        return ""

    pts = record_corners(arm, ask=operator, say=lambda s: None)
    lo, hi = box_from_points(pts, margin_m=0.01)
    np.testing.assert_allclose(lo, [0.29, -0.21, 0.04], atol=1e-9)
    np.testing.assert_allclose(hi, [0.63, 0.26, 0.41], atol=1e-9)
    frag = save_workspace(tmp_path / "workspace.yaml", lo, hi, arm="172.16.0.2", points=pts)
    task = tmp_path / "task.yaml"
    task.write_text(yaml.safe_dump({"base": ["sim_insert_hex", str(frag)], "task": {"name": "mine"}}))
    cfg = configs.load(task)
    assert cfg.robot.safety.box_min == [0.29, -0.21, 0.04] and cfg.robot.safety.box_max == [0.63, 0.26, 0.41]
    assert cfg.task.name == "mine" and "172.16.0.2" in frag.read_text()

    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"base": ["sim_insert_hex"], "robot": {"safety": {"max_force_n": 20.0}},
                                     "task": {"max_episode_steps": 77}}))
    write_into(other, lo, hi)
    cfg = configs.load(other)
    assert cfg.robot.safety.box_max == [0.63, 0.26, 0.41] and cfg.robot.safety.max_force_n == 20.0
    assert cfg.task.max_episode_steps == 77


def test_cli_workspace_from_points(tmp_path, capsys):
    assert main(["calibrate", "workspace", "--config", "sim_insert_hex", "--points", "0.3,-0.2,0.05; 0.6,0.25,0.4",
                 "--out", str(tmp_path / "ws.yaml")]) == 0
    assert "y -0.200 .. +0.250  (45.0 cm)" in capsys.readouterr().out
    assert yaml.safe_load((tmp_path / "ws.yaml").read_text())["robot"]["safety"]["box_max"] == [0.6, 0.25, 0.4]
    assert main(["calibrate", "workspace", "--config", "sim_insert_hex"]) == 2  # live needs the real robot
    assert "robot.kind: sim" in capsys.readouterr().err


def test_workspace_refuses_a_flat_box():
    with pytest.raises(CalibrationError, match="thinner than 2 cm along z"):
        box_from_points([[0.3, -0.2, 0.1], [0.6, 0.2, 0.1]])


# --- SpaceMouse: fake HID device under pyspacemouse ------------------------------------------------------------


class FakeSpaceMouse:
    """A SpaceMouse Compact as the hidapi library sees it: a path, a serial, and HID reports that become readable
    one after another in time, as a real device streams them (here every `dt` seconds)."""

    def __init__(self, path, serial, vid=0x256F, pid=0xC635, dt=0.0005):
        self.path, self.serial, self.vid, self.pid, self.dt = path, serial, vid, pid, dt
        self.reports, self.is_open, self._due = collections.deque(), False, 0.0

    def report(self, trans=(0, 0, 0), rot=(0, 0, 0)):
        """Raw HID axes (±350 at the stop): report 1 = translation, report 2 = rotation, int16 little-endian."""
        for data in (bytes([1]) + struct.pack("<hhh", *trans), bytes([2]) + struct.pack("<hhh", *rot)):
            self._due = max(self._due, time.monotonic()) + self.dt
            self.reports.append((self._due, data))

    def next_report(self):
        if self.reports and self.reports[0][0] <= time.monotonic():
            return self.reports.popleft()[1]
        return None


class FakeHidapi:
    """Stands in for the hidapi C library that easyhid calls through cffi; everything above it — easyhid's
    Enumeration/HIDDevice and all of pyspacemouse — is the real code."""

    def __init__(self, devices):
        import easyhid.easyhid as eh

        self.ffi, self.devices, self._keep = eh.ffi, devices, []

    def hid_enumerate(self, vid, pid):
        head = self.ffi.NULL
        for d in reversed(self.devices):
            if (vid and d.vid != vid) or (pid and d.pid != pid):
                continue
            info = self.ffi.new("struct hid_device_info *")
            strs = [self.ffi.new("char[]", d.path.encode()), self.ffi.new("wchar_t[]", d.serial),
                    self.ffi.new("wchar_t[]", "3Dconnexion"), self.ffi.new("wchar_t[]", "SpaceMouse Compact")]
            info.path, info.serial_number, info.manufacturer_string, info.product_string = strs
            info.vendor_id, info.product_id, info.next = d.vid, d.pid, head
            self._keep += [info, *strs]
            head = info
        return head

    def hid_free_enumeration(self, head):
        pass

    def hid_open_path(self, path):
        p = (path if isinstance(path, bytes) else self.ffi.string(path)).decode()
        for i, d in enumerate(self.devices):
            if d.path == p:
                d.is_open = True
                return self.ffi.cast("hid_device *", i + 1)
        return self.ffi.NULL

    def _dev(self, h):
        return self.devices[int(self.ffi.cast("uintptr_t", h)) - 1]

    def hid_set_nonblocking(self, h, nonblock):
        return 0

    def hid_read(self, h, buf, n):
        r = self._dev(h).next_report()
        if r is None:
            return 0  # non-blocking read, nothing new
        r = r[:n]
        self.ffi.memmove(buf, r, len(r))
        return len(r)

    def hid_read_timeout(self, h, buf, n, ms):
        return self.hid_read(h, buf, n)

    def hid_write(self, h, data, n):
        return n

    def hid_close(self, h):
        self._dev(h).is_open = False


# What pyspacemouse's hid_z_up convention does to raw HID axes (its documented mapping): y, z, pitch, yaw flip.
HID_Z_UP_SIGN = np.array([1, -1, -1, 1, -1, -1])


class Operator:
    """Reads the on-screen guide and moves the fake device: still at rest, then for prompt i a firm push on raw
    HID axis i with the planted sign and strength (plus cross-talk), then lets go."""

    def __init__(self, device, raw_sign, raw_peak, rng, swap=None):
        self.dev, self.sign, self.peak, self.rng, self.swap = device, raw_sign, raw_peak, rng, swap or {}

    def __call__(self, text):
        if "Hands OFF" in text:
            for _ in range(20):
                self.dev.report(*np.split(self.rng.integers(-3, 4, 6), 2))
        elif text.startswith("["):
            i = int(text[1]) - 1
            axis = self.swap.get(i, i)
            for _ in range(200):  # 0.2 s of pushing, longer than the hold
                raw = self.rng.integers(-15, 16, 6)  # cross-talk on the other axes
                raw[axis] = self.sign[i] * self.peak[i] + self.rng.integers(-4, 5)
                self.dev.report(*np.split(raw, 2))
            self.dev.report()  # let go


@pytest.fixture
def fake_hid(monkeypatch):
    import easyhid.easyhid as eh

    devices = [FakeSpaceMouse("/dev/hidraw3", "A1B2"), FakeSpaceMouse("/dev/hidraw4", "C3D4")]
    monkeypatch.setattr(eh, "hidapi", FakeHidapi(devices))
    return devices


FAST = dict(rest_s=0.05, hold_s=0.15, timeout_s=2.0, period=0.001)


def test_spacemouse_routine_recovers_planted_signs_and_scales(fake_hid):
    from lastr1.calibration.spacemouse import SpaceMouseReader, calibrate_axes

    raw_sign = np.array([1, 1, -1, -1, 1, -1])
    raw_peak = np.array([350, 280, 210, 330, 175, 300])
    op = Operator(fake_hid[1], raw_sign, raw_peak, np.random.default_rng(0))
    with SpaceMouseReader(1) as reader:
        assert (reader.path, reader.name) == ("/dev/hidraw4", "SpaceMouseCompact")
        assert reader.serial == "".join(f"{ord(c):02X}" for c in "C3D4")
        res = calibrate_axes(reader.read, say=op, **FAST)
    want = raw_sign * HID_Z_UP_SIGN * 350.0 / raw_peak
    np.testing.assert_allclose(res["axis_scale"], want, rtol=0.03)
    assert np.all(np.sign(res["axis_scale"]) == raw_sign * HID_Z_UP_SIGN)
    # Rest noise ±3 raw → ≤ 3/350 per axis; deadzone = 2 × the largest scaled rest reading, floored at 0.02.
    assert 0.02 <= res["deadzone"] <= 2 * 3 / 175 + 1e-6
    assert not fake_hid[1].is_open and not fake_hid[0].reports


def test_spacemouse_routine_refuses_a_swapped_axis(fake_hid):
    from lastr1.calibration.spacemouse import SpaceMouseReader, calibrate_axes

    op = Operator(fake_hid[0], np.ones(6, int), np.full(6, 300), np.random.default_rng(1), swap={0: 1})
    with SpaceMouseReader(0) as reader, pytest.raises(CalibrationError, match="asked for x, but .* its y axis"):
        calibrate_axes(reader.read, say=op, **FAST)


def test_spacemouse_routine_times_out_without_a_push(fake_hid):
    from lastr1.calibration.spacemouse import SpaceMouseReader, calibrate_axes

    with SpaceMouseReader(0) as reader, pytest.raises(CalibrationError, match="timed out .* waiting for you to push"):
        calibrate_axes(reader.read, say=lambda s: None, **dict(FAST, timeout_s=0.2))


def test_cli_spacemouse_calibrates_every_device(fake_hid, tmp_path, monkeypatch, capsys):
    from lastr1.calibration import spacemouse

    signs = [np.array([1, -1, 1, -1, 1, -1]), np.array([-1, 1, 1, 1, -1, -1])]
    ops = {d.path: Operator(d, s, np.full(6, 300), np.random.default_rng(k))
           for k, (d, s) in enumerate(zip(fake_hid, signs))}
    real = spacemouse.calibrate_axes

    def routed(read, say=print, **kw):  # the operator at each device reads that device's guide
        path = read.__self__.path
        return real(read, say=lambda t: (ops[path](t), print(t)), **dict(kw, period=0.001))

    monkeypatch.setattr(spacemouse, "calibrate_axes", routed)
    out = tmp_path / "calib"
    assert main(["calibrate", "spacemouse", "--config", "sim_insert_hex", "--calibration.out_dir", str(out),
                 "--calibration.spacemouse_rest_s", "0.05", "--calibration.spacemouse_hold_s", "0.15"]) == 0
    for i, s in enumerate(signs):
        saved = spacemouse.load_spacemouse(out / f"spacemouse_spacemouse{i}.yaml")
        assert np.all(np.sign(saved.axis_scale) == s * HID_Z_UP_SIGN)
        assert saved.device_path == fake_hid[i].path
        assert saved.created and saved.device_serial
    assert "set calibration_file" in capsys.readouterr().out
