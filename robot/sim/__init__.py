"""The simulated robot (the embedded default): franky-sim in a host process of its own, the real `franky`
driver talking to it on loopback, simulated cameras, tasks, a scripted expert and a scripted operator.

Nothing here imports MuJoCo or franky-sim at import time; only the host process does.
"""
