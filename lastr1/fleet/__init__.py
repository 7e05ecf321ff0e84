"""`lastr1 fleet --actors N`: N simulated actors and the learner as Ray actors, on a Ray cluster or a local one.

    lastr1 fleet --config demo --actors 4 --minutes 10                 # a local Ray instance on this machine
    lastr1 fleet --config demo --actors 16 --address auto --learner-gpus 1   # an existing cluster

Each actor gets its own sim server (robot.sim.hosts moved up by `i · n_arms` on the last octet, so several share
a node's loopback), its own scene seed, and its own CurveZMQ identity `actor<i>` (the keys `lastr1 keys -n N`
makes; missing ones are added, existing ones kept, so a fleet started again continues its actors' spools).
Transitions and weights cross the ZeroMQ wire exactly as between `lastr1 actor` and `lastr1 learner`; Ray
only places the processes, watches them and stops them (workers.py is what runs inside).

A dead actor (its process killed, its node lost) is reported and the rest go on; `--restarts K` starts a
dead or failed actor again up to K times, and its spool resends what the learner had not acknowledged.
Ctrl-C / SIGTERM stops the actors (each closes its episode and its sim server), then the learner (which saves
its checkpoint); a per-actor table and the learner's totals close the run.

    plan.py       per-actor configs, absolute paths, keys
    supervise.py  `Fleet`: place, watch, restart, stop
    workers.py    what runs inside the Ray workers
    report.py     the members' status records and the closing report
    cli.py        `lastr1 fleet`
"""


from lastr1.fleet.plan import FleetError, actor_config, actor_hosts
from lastr1.fleet.report import FleetReport
from lastr1.fleet.supervise import Fleet

__all__ = ["Fleet", "FleetError", "FleetReport", "actor_config", "actor_hosts"]
