"""A bar chart of throughput per path per backend (matplotlib, from the bench extra)."""

from __future__ import annotations

from pathlib import Path

from bench.harness import Measurement, console


def chart(results: list[Measurement], out: Path) -> None:
    """One panel per workload, a group of bars per path, one bar per backend."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        console.print("matplotlib is not installed (pip install -e '.[bench]'): no chart")
        return
    workloads = list(dict.fromkeys(m.workload for m in results))
    backends = list(dict.fromkeys(m.backend for m in results))
    figure, axes = plt.subplots(
        len(workloads), 1, figsize=(11, 3.2 * len(workloads)), squeeze=False
    )
    for axis, workload in zip(axes[:, 0], workloads, strict=True):
        measured = [m for m in results if m.workload == workload]
        paths = list(dict.fromkeys(m.path for m in measured))
        width = 0.8 / max(len(backends), 1)
        for i, backend in enumerate(backends):
            rates = {m.path: m.rate for m in measured if m.backend == backend}
            positions = [p + i * width for p in range(len(paths))]
            axis.bar(positions, [rates.get(path, 0) for path in paths], width, label=backend)
        axis.set_xticks([p + width * (len(backends) - 1) / 2 for p in range(len(paths))], paths)
        axis.set_title(workload)
        axis.set_ylabel(f"{measured[0].unit}/s")
        axis.legend()
        axis.tick_params(axis="x", labelsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    console.print(f"wrote {out}")
