"""RViz config for a node under a namespace and remapped camera topics (used by the launch file).

config/depth_defocus.rviz names the node's topics as they are without namespace or remapping
(``/image``, ``/depth/preview``, ``/points``, ...). :func:`rviz_config_text` rewrites them for
the names the launch file gave: the outputs move into the node's namespace, ``/image`` becomes the
camera topic the node's ``image`` is remapped to.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

__all__ = ["resolve_topic", "rviz_topics", "rviz_config_text", "write_rviz_config"]


def resolve_topic(topic: str, namespace: str = "") -> str:
    """Absolute name of a topic as a node in ``namespace`` resolves it (``~`` is not supported)."""
    if topic.startswith("/"):
        return topic
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return f"{ns}/{topic}"


def _displays(node):
    for d in node or []:
        yield d
        yield from _displays(d.get("Displays"))


def rviz_topics(doc: dict) -> dict:
    """``{display name: topic}`` for every display of a parsed .rviz that has a topic."""
    return {
        d.get("Name"): d["Topic"]["Value"]
        for d in _displays(doc["Visualization Manager"]["Displays"])
        if isinstance(d.get("Topic"), dict) and d["Topic"].get("Value")
    }


def rviz_config_text(
    template: str, namespace: str = "", image_topic: str = "image", fixed_frame: str | None = None
) -> str:
    """The template with its topics resolved for ``namespace`` and the camera on ``image_topic``
    (relative names resolve in ``namespace``, as remappings in the launch file do)."""
    doc = yaml.safe_load(template)
    for d in _displays(doc["Visualization Manager"]["Displays"]):
        topic = d.get("Topic")
        if isinstance(topic, dict) and topic.get("Value"):
            v = str(topic["Value"])
            topic["Value"] = (
                resolve_topic(image_topic, namespace) if v == "/image" else resolve_topic(v.lstrip("/"), namespace)
            )
    if fixed_frame:
        doc["Visualization Manager"]["Global Options"]["Fixed Frame"] = fixed_frame
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def write_rviz_config(
    template_path, namespace: str = "", image_topic: str = "image", fixed_frame: str | None = None, out_dir=None
) -> str:
    """Write :func:`rviz_config_text` of ``template_path`` to a file (temp dir by default); return its path."""
    text = rviz_config_text(Path(template_path).read_text(), namespace, image_topic, fixed_frame)
    out_dir = Path(out_dir or tempfile.gettempdir())
    tag = namespace.strip("/").replace("/", "_") or "root"
    out = out_dir / f"depth_defocus_{tag}_{os.getpid()}.rviz"
    out.write_text(text)
    return str(out)
