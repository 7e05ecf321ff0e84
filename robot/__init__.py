"""Hardware behind small interfaces (Arm, Camera, Teleop, operator keys), the safety layer and the simulated robot.

Knows nothing of policies or the network; hardware libraries are imported lazily.
"""
