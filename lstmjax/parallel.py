"""Data parallelism: a mesh of devices along the batch axis, on one host or several.

A run places its arrays on a one-axis :class:`jax.sharding.Mesh` (axis ``"data"``) of N devices
(:class:`Placement`): the parameters, optimizer state, step and PRNG key are replicated on every
device; the token windows ``int32[B, T]`` and the carried state ``[B, H]`` are split along B, so
each device runs B / N streams. The jitted train step takes and returns these sharded arrays, and
XLA's SPMD partitioner inserts the gradient all-reduce; its dropout masks are drawn for the global
batch (``jax_threefry_partitionable``), so N devices compute the one-device step up to the order
of float32 sums. With one device nothing changes but the array's sharding type.

Several processes (hosts): :func:`initialize` calls ``jax.distributed.initialize`` before any
device is used; then ``jax.devices()`` lists the devices of every process, the mesh spans them
all, each process feeds only the rows of the batch that its own devices hold
(:meth:`Placement.shard_batch`, with ``jax.make_array_from_process_local_data``), and every
process runs the same program step by step. Arrays that are the same on every process (a fresh
state, the zero carry) are placed with :meth:`Placement.put`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "data"
"""The mesh axis that the batch is split along."""

ENVIRONMENT = {"coordinator_address": "LSTMJAX_COORDINATOR_ADDRESS",
               "num_processes": "LSTMJAX_NUM_PROCESSES", "process_id": "LSTMJAX_PROCESS_ID"}
"""The environment variables that :func:`initialize` reads for arguments it is not given."""


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a run's arrays live: ``mesh``, one axis :data:`AXIS` of N devices."""

    mesh: Mesh

    @property
    def num_devices(self) -> int:
        return self.mesh.size

    @property
    def replicated(self) -> NamedSharding:
        """A whole copy on every device (parameters, optimizer state, scalars)."""
        return NamedSharding(self.mesh, PartitionSpec())

    @property
    def batch_sharded(self) -> NamedSharding:
        """Leading (batch) axis split into N equal parts, one per device, in mesh order."""
        return NamedSharding(self.mesh, PartitionSpec(AXIS))

    def batch(self, batch_size: int) -> NamedSharding:
        """The sharding of ``[batch_size, ...]`` arrays: split when N divides ``batch_size``,
        else replicated (an evaluation batch of 1 stream runs whole on every device)."""
        return self.batch_sharded if batch_size % self.num_devices == 0 else self.replicated

    def check_batch(self, batch_size: int, name: str = "train.batch_size") -> None:
        """Raise a ValueError naming both numbers unless N divides ``batch_size``."""
        if batch_size % self.num_devices:
            divisors = [n for n in range(1, self.num_devices + 1) if batch_size % n == 0]
            raise ValueError(
                f"{name}={batch_size} does not split over the {self.num_devices} devices of the "
                f"mesh (train.num_devices): each device needs the same number of streams. Use a "
                f"multiple of {self.num_devices} for {name}, or train.num_devices "
                f"{divisors[-1]} (a divisor of {batch_size})")

    def put(self, tree: Any, sharding: NamedSharding) -> Any:
        """``tree`` (arrays with the same values in every process) placed with ``sharding``.
        Typed PRNG keys are placed through their key data."""

        def place(leaf):
            if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
                data = jax.device_put(jax.random.key_data(leaf), sharding)
                return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
            return jax.device_put(leaf, sharding)

        return jax.tree.map(place, tree)

    def shard_batch(self, rows: np.ndarray) -> np.ndarray | jax.Array:
        """A batch ``[B, ...]`` that every process can compute in full, as the jitted steps take
        it. In one process: ``rows`` itself, which jit places by its shardings (declared, or
        inferred from the other arguments) several times faster than an explicit transfer
        (benchmarks/NOTES.md). Across processes: the global array, of which this process
        transfers only the rows that its own devices hold (all of them when the batch is
        replicated, see :meth:`batch`)."""
        if not self.mesh.is_multi_process:
            return rows
        sharding = self.batch(rows.shape[0])
        starts, stops = zip(*((index[0].start or 0, rows.shape[0] if index[0].stop is None
                               else index[0].stop)
                              for index in sharding.addressable_devices_indices_map(
                                  rows.shape).values()))
        local = rows[min(starts):max(stops)]  # a process's devices hold consecutive rows
        return jax.make_array_from_process_local_data(sharding, local, rows.shape)

    def describe(self) -> str:
        """``"8 cpu devices"``, ``"2 processes x 4 gpu devices"``."""
        kind = self.mesh.devices.flat[0].platform
        processes = len({device.process_index for device in self.mesh.devices.flat})
        each = self.num_devices // processes
        devices = f"{each} {kind} device{'s' * (each > 1)}"
        return f"{processes} processes x {devices}" if processes > 1 else devices


def make_placement(num_devices: int | None = None) -> Placement:
    """A mesh of the first ``num_devices`` devices (None: all of every process), ordered by
    process, so that each process's devices hold consecutive rows of the batch.

    Raises:
      ValueError: more devices asked than there are, or (several processes) fewer than all.
    """
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    if num_devices is not None:
        if num_devices > len(devices):
            raise ValueError(
                f"train.num_devices={num_devices}, but {len(devices)} {devices[0].platform} "
                f"device{'s are' if len(devices) > 1 else ' is'} visible: lower it, or leave it "
                "unset to use every device")
        if jax.process_count() > 1 and num_devices != len(devices):
            raise ValueError(
                f"train.num_devices={num_devices} with {jax.process_count()} processes: a run "
                f"over several processes uses all their {len(devices)} devices; leave it unset")
        devices = devices[:num_devices]
    return Placement(Mesh(np.array(devices), (AXIS,)))


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, **options: Any) -> bool:
    """Connect this process to the others of a multi-process run: ``jax.distributed.initialize``.

    Each argument not given is read from its environment variable (:data:`ENVIRONMENT`:
    ``LSTMJAX_COORDINATOR_ADDRESS``, ``LSTMJAX_NUM_PROCESSES``, ``LSTMJAX_PROCESS_ID``); with
    none of them set, nothing happens (one process) and False is returned. Arguments still
    missing then are left to JAX's cluster detection (SLURM, Open MPI, Kubernetes, Cloud TPU).
    Process 0 hosts the coordinator at ``coordinator_address`` (``host:port``, reachable from
    every process); on CPU the processes exchange gradients through gloo over TCP. Must be
    called before anything touches a device. ``options`` go to ``jax.distributed.initialize``
    (e.g. ``heartbeat_timeout_seconds``).

    Raises:
      ValueError: an environment variable that is not a number, or a ``process_id`` outside
        ``[0, num_processes)``.
    """
    given = {"coordinator_address": coordinator_address, "num_processes": num_processes,
             "process_id": process_id}
    for name, variable in ENVIRONMENT.items():
        if given[name] is None and os.environ.get(variable):
            value = os.environ[variable]
            if name != "coordinator_address":
                if not value.isdigit():
                    raise ValueError(f"{variable}={value!r} must be a non-negative integer")
                value = int(value)
            given[name] = value
    if all(value is None for value in given.values()):
        return False
    if given["num_processes"] is not None and given["process_id"] is not None and not (
            0 <= given["process_id"] < given["num_processes"]):
        raise ValueError(f"process id {given['process_id']} is outside [0, "
                         f"{given['num_processes']}): number the processes 0 to "
                         f"{given['num_processes'] - 1}")
    jax.distributed.initialize(**given, **options)
    return True


def is_primary() -> bool:
    """Whether this process writes the logs and prints (process 0; the only one when alone)."""
    return jax.process_index() == 0


def max_over_processes(value: int) -> int:
    """The largest of the ints that the processes pass (a collective: every process calls it at
    the same point of the run); ``value`` itself with one process."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return int(np.max(multihost_utils.process_allgather(np.array([value], np.int32))))
