"""What ``engine="auto"`` measures and chooses on this machine, per cell and recipe shape.

For every cell of :data:`lstmjax.CELLS` and every recipe shape (``benchmarks.shapes``: its H, B
and T, input size H), runs :func:`lstmjax.engines.auto.choose` with measuring on and an empty
cache of its own: the candidates' forward + backward time per step of one layer and the choice.
The table it prints is what :data:`lstmjax.engines.auto.MEASURED` (the fallback when measuring
is off) is read from: per backend and cell, the engine chosen at each hidden size.

    python -m benchmarks.auto_table                 # results/<backend>/auto_table.json
    python -m benchmarks.auto_table --quick         # two tiny shapes, LSTM only: seconds
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Iterator

import jax

from benchmarks import report
from benchmarks.shapes import QUICK_SHAPES, SHAPES


def measure(cell_name: str, shape, backend: str) -> dict:
    """One row: the candidates' ms per step and the choice, measured now (a fresh cache)."""
    from lstmjax import CELLS, resolve
    from lstmjax.engines import auto

    cell = CELLS[cell_name](shape.hidden_size)
    engine, unroll, reason = resolve(cell, "auto", num_steps=shape.seq_len,
                                     batch_size=shape.batch_size, input_size=shape.hidden_size,
                                     backend=backend)
    entry = next(iter(auto.read_cache(auto.cache_file()).values()), {})
    auto.cache_file().unlink(missing_ok=True)  # the next row measures into an empty cache
    return {"cell": cell_name, "shape": shape.name, "H": shape.hidden_size,
            "B": shape.batch_size, "T": shape.seq_len, "engine": engine, "unroll": unroll,
            "reason": reason,
            "ms_per_step": entry.get("ms_per_step", {}), "measure_s": entry.get("measure_s")}


@contextlib.contextmanager
def measuring() -> Iterator[None]:
    """Within it, ``auto`` measures (``LSTMJAX_AUTO=measure``) into an empty cache of its own
    (``LSTMJAX_CACHE_DIR``, a temporary directory); both variables are restored after it."""
    names = ("LSTMJAX_AUTO", "LSTMJAX_CACHE_DIR")
    before = {name: os.environ.get(name) for name in names}
    with tempfile.TemporaryDirectory() as cache:
        os.environ.update(dict(zip(names, ("measure", cache))))
        try:
            yield
        finally:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def table_rows(rows: list[dict]) -> dict[str, list[tuple[int, str, int]]]:
    """Per cell class, ``[(largest H, engine, unroll), ...]``: the choices by hidden size, runs of
    one choice merged, the last row open-ended (the form of ``auto.MEASURED[backend]``)."""
    from lstmjax import CELLS

    table = {}
    for cell_name in dict.fromkeys(row["cell"] for row in rows):
        choices = sorted((row["H"], row["engine"], row["unroll"]) for row in rows
                         if row["cell"] == cell_name)
        merged: list[tuple[int, str, int]] = []
        for hidden, engine, unroll in choices:
            if merged and merged[-1][1:] == (engine, unroll):
                merged[-1] = (hidden, engine, unroll)
            else:
                merged.append((hidden, engine, unroll))
        merged[-1] = (10**9, *merged[-1][1:])
        table[CELLS[cell_name].__name__] = merged
    return table


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, LSTM only: seconds")
    parser.add_argument("--cells", nargs="+", default=None, help="keys of lstmjax.CELLS")
    parser.add_argument("--out", default=None, help="JSON path (default results/<backend>/)")
    args = parser.parse_args(argv)
    from lstmjax import CELLS

    cells = args.cells or (["lstm"] if args.quick else list(CELLS))
    shapes = QUICK_SHAPES if args.quick else SHAPES
    backend = jax.default_backend()
    rows = []
    with measuring():
        for cell_name in cells:
            for shape in shapes.values():
                rows.append(measure(cell_name, shape, backend))
                row = rows[-1]
                print(f"{cell_name:8s} {shape.name:12s} {row['engine']} unroll={row['unroll']} "
                      f"({row['measure_s']} s)", flush=True)
    return report.save("auto_table", {"rows": rows, "table": table_rows(rows)},
                       quick=args.quick, out=args.out, table=table)


def table(record: dict) -> str:
    """Markdown: per cell and shape, each candidate's ms per step and the choice."""
    labels = list(dict.fromkeys(label for row in record["rows"] for label in row["ms_per_step"]))
    rows = [[row["cell"], row["shape"], *(row["ms_per_step"].get(label) for label in labels),
             f"{row['engine']} unroll={row['unroll']}"] for row in record["rows"]]
    return report.markdown_table(["cell", "shape", *(f"{label} ms/step" for label in labels),
                                  "auto"], rows)


if __name__ == "__main__":
    main()
