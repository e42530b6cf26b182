"""Summarise a device_check.sh run: status of each step and the benchmark ratios, as JSON and a table."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(out: Path) -> None:
    status = {}
    for line in (out / "status.txt").read_text().splitlines():
        name, _, rest = line.partition(" ")
        status[name] = rest
    ratios = json.loads((out / "ratios.json").read_text()) if (out / "ratios.json").exists() else []
    log = out / "device_check.log"
    # The training runs' one-line results ("done: N iterations in S s; validation PSNR ...").
    runs = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("done:")] if log.exists() else []
    summary = {"steps": status, "ratios": ratios, "train_runs": runs}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print("\n==== device check summary ====")
    for name, st in sorted(status.items()):
        print(f"{name:<14} {st}")
    for line in runs:
        print(line)
    if ratios:
        print(f"{'group':<44} {'ours ms':>9} {'tv ms':>9} {'conv ms':>9} {'tv/ours':>8} {'ours/conv':>9}")
        groups: dict[str, dict] = {}
        for r in ratios:
            groups.setdefault(r["group"], {})[r["impl"]] = r["median_ms"]
        for g, d in groups.items():
            o, t, c = d.get("ours"), d.get("torchvision"), d.get("conv2d")
            fmt = lambda v: f"{v:9.4f}" if v is not None else f"{'-':>9}"  # noqa: E731
            tv_ratio = f"{t / o:8.2f}" if o and t else f"{'-':>8}"
            conv_ratio = f"{o / c:9.2f}" if o and c else f"{'-':>9}"
            print(f"{g:<44} {fmt(o)} {fmt(t)} {fmt(c)} {tv_ratio} {conv_ratio}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
