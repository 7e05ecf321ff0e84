"""The ChArUco board: its definition from config, a printable image, detection and pose in one image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lastr1.calibration.common import CalibrationError, cv2, from_rt

# Fewer corners than this give an unreliable pose (and OpenCV refuses < 4); 6 also rules out the collinear case
# of a single row.
MIN_CORNERS = 6


def make_board(board_cfg):
    """`cv2.aruco.CharucoBoard` from a `configs.calibration.CharucoConfig`."""
    cv = cv2()
    name = board_cfg.dictionary
    if not hasattr(cv.aruco, name):
        raise CalibrationError(f"unknown ArUco dictionary {name!r}", hint="use e.g. DICT_5X5_100 or DICT_4X4_50")
    if not 0 < board_cfg.marker_m < board_cfg.square_m:
        raise CalibrationError(
            f"calibration.board: marker_m ({board_cfg.marker_m}) must be positive and smaller than square_m "
            f"({board_cfg.square_m})"
        )
    dictionary = cv.aruco.getPredefinedDictionary(getattr(cv.aruco, name))
    return cv.aruco.CharucoBoard(
        (board_cfg.squares_x, board_cfg.squares_y), board_cfg.square_m, board_cfg.marker_m, dictionary
    )


def board_image(board, px_per_square: int = 200, margin_squares: float = 0.5) -> np.ndarray:
    """A uint8 image of the board with a white margin (markers need a quiet zone to be found)."""
    nx, ny = board.getChessboardSize()
    img = board.generateImage((nx * px_per_square, ny * px_per_square), marginSize=0)
    m = int(round(margin_squares * px_per_square))
    return np.pad(img, m, constant_values=255)


@dataclass
class Detection:
    ids: np.ndarray  # (n,) ChArUco corner ids
    image_points: np.ndarray  # (n, 2) float32 pixels
    object_points: np.ndarray  # (n, 3) float32 metres, board frame

    def __len__(self) -> int:
        return len(self.ids)


def detect(image: np.ndarray, board, min_corners: int = MIN_CORNERS) -> Detection | None:
    """The board's inner corners in an RGB or grey image; None when fewer than `min_corners` are seen."""
    cv = cv2()
    gray = image if image.ndim == 2 else cv.cvtColor(np.ascontiguousarray(image), cv.COLOR_RGB2GRAY)
    corners, ids, _, _ = cv.aruco.CharucoDetector(board).detectBoard(gray)
    if ids is None or len(ids) < min_corners:
        return None
    obj, img = board.matchImagePoints(corners, ids)
    if obj is None or len(obj) < min_corners:
        return None
    return Detection(np.ravel(ids).astype(np.int32), img.reshape(-1, 2).astype(np.float32),
                     obj.reshape(-1, 3).astype(np.float32))


def board_pose(det: Detection, K: np.ndarray, dist: np.ndarray | None) -> tuple[np.ndarray, float]:
    """T_cam_board (4 × 4) and the RMS reprojection error (px) of the fit."""
    cv = cv2()
    dist = np.zeros(5) if dist is None else np.asarray(dist, np.float64)
    ok, rvec, tvec = cv.solvePnP(det.object_points, det.image_points, K, dist, flags=cv.SOLVEPNP_IPPE)
    if not ok:
        raise CalibrationError("solvePnP failed on a board detection")
    rvec, tvec = cv.solvePnPRefineLM(det.object_points, det.image_points, K, dist, rvec, tvec)
    proj, _ = cv.projectPoints(det.object_points, rvec, tvec, K, dist)
    err = float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - det.image_points) ** 2, axis=1))))
    return from_rt(cv.Rodrigues(rvec)[0], tvec), err
