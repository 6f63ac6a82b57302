"""make bench: every benchmark figure measured side by side in one run.

Writes results.json and results.md to the output folder (default .ecomm_home/bench) and prints
the table. --quick runs small sizes and skips the fresh-clone figure, as a smoke run.
"""

import argparse
import json
import tempfile
from pathlib import Path

from ecomm_assets_tests.benchmarks import extract_bench, history_bench, pipeline_bench


def markdown(figures) -> str:
    lines = ["| figure | ours | baseline | ratio | target | met | runs | note |",
             "|---|---|---|---|---|---|---|---|"]
    for f in figures:
        baseline = f"{f.baseline_label}: {f.baseline:.2f} {f.unit}"
        ratio = "–" if f.target == "report" else f"{f.ratio:.2f}"
        lines.append(f"| {f.name} | {f.ours_label}: {f.ours:.2f} {f.unit} | {baseline} | {ratio} "
                     f"| {f.target} | {'yes' if f.met else '**no**'} | {f.runs} | {f.note} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=pipeline_bench.environment.ecomm_home() / "bench")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ecomm-bench-") as workdir:
        figures = (extract_bench.run(Path(workdir), args.quick) + pipeline_bench.run(Path(workdir), args.quick)
                   + history_bench.run(Path(workdir), args.quick))
    (args.out / "results.json").write_text(json.dumps([f.as_dict() for f in figures], indent=2))
    table = markdown(figures)
    (args.out / "results.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
