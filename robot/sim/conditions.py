"""Evaluation conditions of the paper's Table 2, in the simulated scene: what the cameras see changes, the
physics does not (the policy must generalise; the task must stay the same task).

    original           the scene as built
    unseen_object      each task object looks different: its own geoms hidden, a visual-only cylinder of the
                       object's size in another colour shown instead (collisions still use the real shape)
    unseen_background  floor and table get another texture and colour
    unseen_lighting    dimmer, bluish key light from the other side, weaker fill, warmer ambient

`build()` adds the extra assets/geoms to the scene XML before it is compiled; `Appearance` remembers the
defaults of the compiled model and switches between conditions (called from the simulation thread).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

CONDITIONS = ("original", "unseen_object", "unseen_background", "unseen_lighting")
_OBJECT_RGBA = (0.2, 0.7, 0.35, 1.0)  # the objects are warm colours in the original scene: green is unseen
_TABLE_RGBA = (0.42, 0.36, 0.52, 1.0)


def build(asset: ET.Element, worldbody: ET.Element, objects: tuple[str, ...]) -> None:
    ET.SubElement(asset, "texture", name="cond_background", type="2d", builtin="checker", rgb1="0.55 0.38 0.22",
                  rgb2="0.82 0.74 0.58", width="256", height="256", mark="edge", markrgb="0.3 0.2 0.1")
    ET.SubElement(asset, "material", name="cond_background", texture="cond_background", texrepeat="14 14",
                  texuniform="true")
    for obj in objects:
        body = next((b for b in worldbody.iter("body") if b.get("name") == obj), None)
        if body is None:
            continue
        # Visual only: no contacts, no mass; sized from the object's own geoms once compiled.
        ET.SubElement(body, "geom", name=f"{obj}_unseen", type="cylinder", size="0.01 0.01", contype="0",
                      conaffinity="0", density="0", rgba="0 0 0 0")


class Appearance:
    def __init__(self, mj, model, objects: tuple[str, ...]):
        self.m = model
        geom = lambda name: mj.mj_name2id(model, mj.mjtObj.mjOBJ_GEOM, name)  # noqa: E731
        light = lambda name: mj.mj_name2id(model, mj.mjtObj.mjOBJ_LIGHT, name)  # noqa: E731
        self.alt, self.own = [], []
        for obj in objects:
            g = geom(f"{obj}_unseen")
            if g < 0:
                continue
            body = model.geom_bodyid[g]
            own = [i for i in range(model.ngeom) if model.geom_bodyid[i] == body and i != g]
            self.alt.append(g)
            self.own += own
            # The cylinder covers the object's own geoms (their boxes in the body frame).
            lo = np.min([model.geom_pos[i] + 0 - model.geom_aabb[i, 3:] for i in own], axis=0)
            hi = np.max([model.geom_pos[i] + model.geom_aabb[i, 3:] for i in own], axis=0)
            half = (hi - lo) / 2
            model.geom_pos[g] = (hi + lo) / 2
            model.geom_size[g, :2] = [max(half[0], half[1]), half[2]]
            model.geom_rbound[g] = float(np.hypot(max(half[0], half[1]), half[2]))
        self.background = [g for g in (geom("ground"), geom("table")) if g >= 0]
        self.bg_material = mj.mj_name2id(model, mj.mjtObj.mjOBJ_MATERIAL, "cond_background")
        self.lights = [x for x in (light("key_light"), light("fill_light")) if x >= 0]
        self.default = dict(
            rgba=model.geom_rgba.copy(), matid=model.geom_matid.copy(),
            diffuse=model.light_diffuse.copy(), ambient=model.light_ambient.copy(), dir=model.light_dir.copy(),
            head_diffuse=model.vis.headlight.diffuse.copy(), head_ambient=model.vis.headlight.ambient.copy(),
        )
        self.current = "original"

    def apply(self, condition: str) -> None:
        if condition not in CONDITIONS:
            raise ValueError(f"unknown condition {condition!r}: one of {', '.join(CONDITIONS)}")
        m, d = self.m, self.default
        m.geom_rgba[:] = d["rgba"]
        m.geom_matid[:] = d["matid"]
        m.light_diffuse[:] = d["diffuse"]
        m.light_ambient[:] = d["ambient"]
        m.light_dir[:] = d["dir"]
        m.vis.headlight.diffuse[:] = d["head_diffuse"]
        m.vis.headlight.ambient[:] = d["head_ambient"]
        if condition == "unseen_object":
            for g in self.own:
                m.geom_rgba[g, 3] = 0.0
            for g in self.alt:
                m.geom_rgba[g] = _OBJECT_RGBA
        elif condition == "unseen_background":
            for g in self.background:
                m.geom_matid[g] = self.bg_material
                m.geom_rgba[g] = (1, 1, 1, 1) if g == self.background[0] else _TABLE_RGBA
        elif condition == "unseen_lighting":
            if self.lights:
                key = self.lights[0]
                m.light_diffuse[key] = (0.22, 0.27, 0.42)
                m.light_dir[key] = d["dir"][key] * (-1.0, -1.0, 1.0)  # from the other side of the table
                for x in self.lights[1:]:
                    m.light_diffuse[x] = d["diffuse"][x] * 0.4
            m.vis.headlight.diffuse[:] = (0.08, 0.08, 0.08)
            m.vis.headlight.ambient[:] = (0.16, 0.12, 0.07)
        self.current = condition
