"""A bar chart of throughput per path per backend (matplotlib, from the bench extra)."""

from __future__ import annotations

from pathlib import Path

from bench.harness import Measurement, console

_ROW_INCHES = 0.32  # one path's group of bars; its label sits on its own row, never over another


def chart(results: list[Measurement], out: Path) -> None:
    """One panel per workload and unit, a group of horizontal bars per path (its label on the
    left), one bar per backend."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        console.print("matplotlib is not installed (pip install -e '.[bench]'): no chart")
        return
    panels = list(dict.fromkeys((m.workload, m.unit) for m in results))
    backends = list(dict.fromkeys(m.backend for m in results))
    paths_of = {
        panel: list(dict.fromkeys(m.path for m in results if (m.workload, m.unit) == panel))
        for panel in panels
    }
    heights = [1.2 + _ROW_INCHES * len(paths_of[panel]) for panel in panels]
    figure, axes = plt.subplots(
        len(panels), 1, figsize=(11, sum(heights)), squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )  # fmt: skip
    for axis, panel in zip(axes[:, 0], panels, strict=True):
        workload, unit = panel
        paths = paths_of[panel]
        height = 0.8 / max(len(backends), 1)
        for i, backend in enumerate(backends):
            rates = {
                m.path: m.rate
                for m in results
                if (m.workload, m.unit) == panel and m.backend == backend
            }
            positions = [p + i * height for p in range(len(paths))]
            axis.barh(positions, [rates.get(path, 0) for path in paths], height, label=backend)
        axis.set_yticks([p + height * (len(backends) - 1) / 2 for p in range(len(paths))], paths)
        axis.invert_yaxis()  # the first path on top, as the tables list them
        axis.set_title(workload)
        axis.set_xlabel(f"{unit}/s")
        axis.legend(fontsize=8)
        axis.tick_params(axis="y", labelsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    console.print(f"wrote {out}")
