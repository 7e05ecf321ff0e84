"""The simulated robot (the embedded default): franky-sim in a server process of its own, the real `franky`
driver talking to it on loopback, simulated cameras, tasks, a scripted expert and a scripted operator.

    env = lastr1.robot.factory.make_env(configs.load("sim_insert_hex"))   # or sim_lift_bar (two arms)

- server.py / client.py the sim server process (franky-sim 1.0.4 + MuJoCo scene + EGL renders) and its
                        client `SimServer`
- scene.py              the task's MuJoCo scene (franky-sim's Panda, objects, conditions, cameras): built the
                        same for both simulated robots
- lockstep.py           `robot.kind: lockstep`: the same scene stepped in process by the caller (an impedance
                        controller in place of franky, simulated time, no wall clock, deterministic per seed)
- patches.py            franky-sim's bugs fixed in the server (pose by value, gains, squeezing grasp, errors)
- camera.py             `Camera`s over the server's renders (stale-frame checks like a RealSense)
- tasks.py              sim_insert_hex, sim_lift_bar: objects, randomisation by seed, success, expert waypoints
- expert.py             ScriptedExpert, ScriptedOperator (a `Teleop`), ScriptedKeys (a `KeySource`)
- world.py              `SimScene`, all of it behind `RobotEnv` (`env.scene`; built by robot/factory.py)

Fault injection (franky-sim never raises errors itself), so error paths run in tests and in RL:
`env.scene.server.fault("reflex", arm=i)` aborts arm i's motion as a cartesian_reflex would (libfranka raises
"motion aborted by reflex", later moves are rejected until `recover()`); `fault("camera_drop", camera=name,
seconds=s)` stops one camera's frames; `fault("stall", seconds=s)` freezes physics and the FCI state stream.
`robot.sim.fault_{reflex,camera_drop,stall}_p` rolls them per env step.

Nothing here imports MuJoCo or franky-sim at import time; only the server process and a lockstep env do.
"""
