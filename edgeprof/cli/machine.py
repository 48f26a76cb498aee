"""`edgeprof machine`: measure and cache this machine's peak GFLOP/s and memory bandwidth."""

from __future__ import annotations

from typing import Annotated

import typer

from edgeprof.cli.common import boundary, warn_threads
from edgeprof.cli.options import Threads


@boundary
def machine(
    threads: Threads = 1,
    refresh: Annotated[bool, typer.Option("--refresh", help="Measure again even if cached.")] = False,
) -> None:
    """Measure this machine's ceilings with onnxruntime (a large MatMul, a large elementwise op).

    Sweeps use them for the roofline columns. Example: edgeprof machine --threads 2 --refresh
    """
    from edgeprof.measure.machine import cache_path, machine_ceilings

    warn_threads(threads)
    entry = machine_ceilings(threads, refresh=refresh)
    typer.echo(f"host {entry['host_fingerprint']} ({entry['cpu_model']}), onnxruntime {entry['onnxruntime']}, "
               f"{entry['threads']} thread(s), measured {entry['measured_at']}")
    typer.echo(f"peak compute : {entry['peak_gflops']:.1f} GFLOP/s (median {entry['median_gflops']:.1f}; "
               f"fp32 MatMul {entry['matmul_n']}x{entry['matmul_n']})")
    typer.echo(f"bandwidth    : {entry['bandwidth_gbs']:.1f} GB/s (median {entry['median_bandwidth_gbs']:.1f}; "
               f"elementwise over {entry['copy_mib']} MiB, read + write)")
    typer.echo(f"cache        : {cache_path()}")
