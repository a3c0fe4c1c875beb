"""The Ray runner's overhead (issue 12): a local two-actor Ray run against the
single-process run of the same job.

    python benchmarks/bench_ray.py                                  # shapes model, 2048 samples 64x64, batch 32
    python benchmarks/bench_ray.py --model mobilenetv2 --n 256 --batch 16

Both write a fresh store from the same numpy arrays with lrp.epsilon, and each
is timed end to end from the model file: (a) ``lrpgraph.explain_dataset`` in
this process (load the model, build the analyzer, explain, write); (b)
``lrpgraph.distributed.ray.explain_dataset`` with ``num_workers`` actors on a
local Ray that is already running (``ray.init(num_cpus=...)`` is timed apart):
the driver loads the model and describes the job, the Ray executor starts the
actor pool (each actor imports TensorFlow, loads the model, builds its analyzer) and
the actors compute and write the blocks.  Reported: both times, the overhead
(b) - (a), and (b)'s "busy" time, the seconds its actors spent in blocks (read,
compute, write) divided by the number of actors, which leaves out the start-up.
The two stores are checked equal.  Alternating order over ``--rounds``; medians.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def model_and_data(name, n, tmp):
    import keras

    from lrpgraph.assets import SHAPES_MODEL

    if name == "shapes":
        from lrpgraph.evaluation.synthetic import single_object_dataset

        x, y, _ = single_object_dataset(n, size=64, seed=0)
        return str(SHAPES_MODEL), x.astype("float32"), y
    if name == "mobilenetv2":
        keras.utils.set_random_seed(0)
        path = Path(tmp) / "mobilenetv2.keras"
        keras.applications.MobileNetV2(weights=None).save(path)  # the same weights in every actor
        rng = np.random.default_rng(0)
        x = rng.uniform(-1, 1, (n, 224, 224, 3)).astype("float32")
        return str(path), x, rng.integers(0, 1000, n)
    raise SystemExit(f"unknown --model {name!r}: shapes or mobilenetv2")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="shapes")
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=2, help="ray.init(num_cpus=...)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)

    import keras
    import ray

    import lrpgraph
    import lrpgraph.distributed.ray as lray

    tmp = tempfile.mkdtemp(prefix="bench_ray_")
    try:
        model_path, x, y = model_and_data(args.model, args.n, tmp)
        t = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        t_init = time.perf_counter() - t

        def single(path):
            t = time.perf_counter()
            model = keras.saving.load_model(model_path, compile=False)
            analyzer = lrpgraph.create_analyzer("lrp.epsilon", model)
            att = lrpgraph.explain_dataset(analyzer, (x, y), path, batch_size=args.batch, progress=False)
            return time.perf_counter() - t, att

        def distributed(path):
            t = time.perf_counter()
            att = lray.explain_dataset(model_path, "lrp.epsilon", (x, y), path, batch_size=args.batch,
                                       num_workers=args.workers, progress=False)
            return time.perf_counter() - t, att

        res = {"single": [], "ray": [], "busy": []}
        for r in range(args.rounds):
            order = [("single", single), ("ray", distributed)]
            for name, fn in (order if r % 2 == 0 else order[::-1]):
                path = os.path.join(tmp, f"{name}{r}.zarr")
                secs, att = fn(path)
                res[name].append(secs)
                if name == "ray":
                    res["busy"].append(sum(att.timings.values()) / args.workers)
                    ray_att = att
                else:
                    single_att = att
            rel_a, rel_b = ray_att.relevance[:], single_att.relevance[:]
            assert rel_a.tobytes() == rel_b.tobytes(), "the Ray store differs from the single-process one"
            shutil.rmtree(os.path.join(tmp, f"single{r}.zarr"))
            shutil.rmtree(os.path.join(tmp, f"ray{r}.zarr"))
        ray.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; python {sys.version.split()[0]}; "
          f"ray {ray.__version__}; model {args.model}, n={args.n}, batch {args.batch}, {args.workers} actors, "
          f"ray.init(num_cpus={args.cpus}) {t_init:.1f} s")
    print(f"single process: {med['single']:.1f} s ({args.n / med['single']:.0f} samples/s)")
    print(f"ray, {args.workers} actors: {med['ray']:.1f} s ({args.n / med['ray']:.0f} samples/s); busy "
          f"{med['busy']:.1f} s per actor")
    print(f"overhead: {med['ray'] - med['single']:+.1f} s ({med['ray'] / med['single']:.2f}x the single-process "
          f"time); start-up and scheduling: {med['ray'] - med['busy']:.1f} s")
    print("rounds:", {k: [round(s, 1) for s in v] for k, v in res.items()})


if __name__ == "__main__":
    main()
