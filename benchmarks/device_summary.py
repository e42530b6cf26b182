"""Summarise a device_check.sh run: each step's status and every benchmark row's ratios, as JSON and a table.

Rows: each of our kernels per group (`ours` = the default kernel, `nhwc` = the opt-in NHWC kernel, ...), with
ours/conv2d (conv2d or conv-floor: the same-shape convolution) and torchvision/ours (> 1: ours faster).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TORCHVISION = ("torchvision",)
CONV = ("conv2d", "conv-floor")
BASELINES = TORCHVISION + CONV + ("fallback",)


def read_status(out: Path) -> dict[str, str]:
    status = {}
    path = out / "status.txt"
    for line in path.read_text().splitlines() if path.exists() else []:
        name, _, rest = line.partition(" ")
        status[name] = rest
    return status


def read_ratios(out: Path) -> list[dict]:
    rows = []
    for path in sorted(out.glob("ratios*.json")):
        rows += json.loads(path.read_text())
    return rows


def table(ratios: list[dict]) -> list[str]:
    """One line per (group, our kernel): its ms, the baselines' ms, torchvision/ours and ours/conv."""
    groups: dict[str, dict[str, float]] = {}
    for r in ratios:
        groups.setdefault(r["group"], {})[r["impl"]] = r["median_ms"]
    lines = [f"{'group':<44} {'kernel':<12} {'ms':>9} {'tv ms':>9} {'conv ms':>9} {'tv/ours':>8} {'ours/conv':>9}"]

    def fmt(v, width=9, spec=".4f"):
        return f"{v:{width}{spec}}" if v is not None else f"{'-':>{width}}"

    for g, d in groups.items():
        tv = next((d[k] for k in TORCHVISION if k in d), None)
        conv = next((d[k] for k in CONV if k in d), None)
        for impl, ms in d.items():
            if impl in BASELINES:
                continue
            lines.append(f"{g:<44} {impl:<12} {fmt(ms)} {fmt(tv)} {fmt(conv)} "
                         f"{fmt(tv / ms if tv and ms else None, 8, '.2f')} "
                         f"{fmt(ms / conv if conv and ms else None, 9, '.2f')}")
    return lines


def main(out: Path) -> None:
    status = read_status(out)
    ratios = read_ratios(out)
    log = out / "device_check.log"
    # The training runs' one-line results ("done: N iterations in S s; validation PSNR ...").
    runs = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("done:")] if log.exists() else []
    summary = {"steps": status, "ratios": ratios, "train_runs": runs}
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    tmp.replace(out / "summary.json")
    print("\n==== device check summary ====")
    for name, st in status.items():
        print(f"{name:<14} {st}")
    for line in runs:
        print(line)
    if ratios:
        print("\n".join(table(ratios)))
    else:
        print("(no benchmark timings: dry run without a GPU, or the benchmarks did not run)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
