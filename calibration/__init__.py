"""Camera intrinsics, hand-eye, workspace bounds, SpaceMouse axes: writes the files configs point to."""
