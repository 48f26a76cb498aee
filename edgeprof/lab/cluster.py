"""The Ray side of the lab, in one place: importing Ray (an optional extra), connecting to a cluster or starting an
embedded one, the device resources, and the checks on where the head listens.

A device is a Ray node that advertises one unit of the custom resource ``edgeprof-device:NAME``; every task that
measures on it asks for that whole unit, so a device runs one measurement at a time whoever submits it. Ray's
usage statistics are switched off before Ray is imported (``RAY_USAGE_STATS_ENABLED=0``) and the dashboard is
never started by edgeprof (``include_dashboard=False``): nothing leaves the machines but the cluster's own traffic.
"""

from __future__ import annotations

import ipaddress
import os
import platform
import re
import socket

from edgeprof.errors import InputError

RESOURCE_PREFIX = "edgeprof-device:"
DEFAULT_PORT = 6379
LAB_EXTRA = "lab"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class RayMissing(InputError):
    """Ray is not installed: the one line names the extra."""


def import_ray():
    """Ray, with its usage statistics off; RayMissing (one line naming the extra) when it is not installed."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # nothing phones home (see the module's docstring)
    try:
        import ray
    except ImportError:
        raise RayMissing(f"edgeprof lab needs Ray: pip install 'edgeprof[{LAB_EXTRA}]'") from None
    return ray


def resource_name(device: str) -> str:
    return RESOURCE_PREFIX + device


def check_device_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise InputError(f"device name {name!r} is not valid: use letters, digits, '.', '_' or '-' (up to 63, "
                         "starting with a letter or digit), e.g. jetson-1")
    return name


def local_device_name() -> str:
    """The name of this machine as the one device of an embedded lab: its host name, made a valid device name."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", platform.node() or "local").strip("-._") or "local"
    return name[:63]


def is_public(address: str) -> bool:
    """Whether ``address`` (an IP or a host name) is reachable from the internet: not private, loopback,
    link-local or otherwise reserved. A name that does not resolve is not called public."""
    host = address.rsplit(":", 1)[0] if address.count(":") == 1 else address
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:
            ip = ipaddress.ip_address(socket.gethostbyname(host))
        except (OSError, ValueError):
            return False
    return ip.is_global


def public_head_warning(address: str) -> str | None:
    """One line when the head listens on a public address (Ray has no authentication)."""
    if not is_public(address):
        return None
    return (f"the Ray head listens on {address}, a public address: Ray has no authentication, so anyone who reaches "
            "it can run code on every device; start the head on a private address (ray start --head "
            "--node-ip-address 10.x.x.x) or behind a firewall or VPN")


def connect(address: str | None = None, on_warning=None) -> bool:
    """Connect to the lab's Ray cluster: ``address`` (HOST:PORT), else $RAY_ADDRESS, else start an embedded Ray
    instance whose one device is this machine. Return whether this call connected (the caller then leaves with
    ``disconnect``); already connected (a Python user's own ``ray.init``, a test's cluster): False, nothing done.
    ``on_warning`` gets one line when the head listens on a public address."""
    ray = import_ray()
    warn = on_warning or (lambda message: None)
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        ray.init(resources={resource_name(local_device_name()): 1}, num_cpus=1, include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR")
        return True
    if ":" not in address and address != "auto":
        address = f"{address}:{DEFAULT_PORT}"
    try:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")  # the head's own flags set its dashboard
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot reach the lab's Ray head at {address}: {first[:200]} (start it with "
                         f"`ray start --head --port {DEFAULT_PORT}`, see the README's Lab section)") from None
    head = head_address()
    message = public_head_warning(head) if head else None
    if message:
        warn(message)
    return True


def disconnect(connected: bool) -> None:
    """Leave the cluster if ``connect`` joined it (an embedded instance stops with it)."""
    ray = import_ray()
    if connected and ray.is_initialized():
        ray.shutdown()


def head_address() -> str | None:
    """The address the head node's raylet listens on."""
    ray = import_ray()
    for node in ray.nodes():
        if node.get("Alive") and "node:__internal_head__" in (node.get("Resources") or {}):
            return node.get("NodeManagerAddress")
    return None


def device_nodes() -> dict[str, dict]:
    """The devices in the cluster, name -> its live node (``ray.nodes()`` entry)."""
    ray = import_ray()
    out = {}
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        for key in node.get("Resources") or {}:
            if key.startswith(RESOURCE_PREFIX):
                out[key[len(RESOURCE_PREFIX):]] = node
    return dict(sorted(out.items()))


def busy_devices(names) -> set[str]:
    """The devices whose unit is taken now (a measurement or a probe runs there)."""
    ray = import_ray()
    available = ray.available_resources()
    return {name for name in names if available.get(resource_name(name), 0.0) < 1.0}


def join_command(head: str, name: str, num_cpus: int = 0) -> list[str]:
    """The `ray start` command that makes this machine device ``name`` of the lab whose head is ``head``."""
    import json
    import shutil
    import sys
    from pathlib import Path

    check_device_name(name)
    if ":" not in head:
        head = f"{head}:{DEFAULT_PORT}"
    ray_cli = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    return [ray_cli, "start", "--address", head, "--resources", json.dumps({resource_name(name): 1}),
            "--num-cpus", str(num_cpus), "--disable-usage-stats"]
